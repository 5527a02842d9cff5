//! `sandbank`: the local engine's server and the guest agent inside each sandbox.

mod api;
mod envd;
mod guest;
mod proxy;
mod serve;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "sandbank", version, about = "Local sandboxes behind the Novita/E2B API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Novita/E2B-compatible API with sandboxes on this machine.
    Serve(serve::ServeArgs),
    /// PID 1 inside a sandbox (started by `serve`, not by hand).
    #[command(hide = true)]
    Guest {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Guest { config } => guest::main(&config),
    }
}
