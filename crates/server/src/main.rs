//! `sandbank`: the local engine's server, the CLI (sandboxes, snapshots, doctor) and the guest
//! inside each sandbox (`sandbank_guest`; its helper modes are started by the engine, not by hand).

#![deny(unsafe_code)]

mod api;
mod cli;
mod http_server;
mod ports;
mod proxy;
mod serve;
mod templates;
// The one module with `unsafe`: every raw system call the server makes.
#[allow(unsafe_code)]
mod sys;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Sandboxes of the configured server: list, kill.
    #[command(subcommand)]
    Sandboxes(cli::SandboxesCmd),
    /// Snapshots of the configured server: list, delete.
    #[command(subcommand)]
    Snapshots(cli::SnapshotsCmd),
    /// Templates on the configured server: build (from a Dockerfile), list, delete.
    #[command(subcommand)]
    Templates(cli::TemplatesCmd),
    /// Snapshot a sandbox; prints the snapshot ID.
    Snapshot {
        #[arg(value_name = "SANDBOX_ID")]
        sandbox_id: String,
        /// Print the snapshot as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        opts: cli::snapshots::CreateArgs,
    },
    /// Build the base template's Debian image (once; `serve` builds it too when it is missing),
    /// and print its directory.
    BaseImage {
        /// The data directory whose `images/` it goes in (default: as for `serve`).
        #[arg(long, env = "SANDBANK_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Another directory of images (`serve --images-dir`).
        #[arg(long, env = "SANDBANK_IMAGES_DIR")]
        images_dir: Option<PathBuf>,
    },
    /// Check what the local engine needs from this machine and say what is missing.
    Doctor {
        /// Machine-readable output: a JSON array of {status, check, detail}.
        #[arg(long)]
        json: bool,
    },
    /// PID 1 inside a sandbox (started by `serve`, not by hand).
    #[command(hide = true)]
    /// With neither flag, its config is the first line on stdin.
    Guest {
        /// Keep this process's namespaces until stdin closes (a network made ahead of time).
        #[arg(long, conflicts_with = "probe_userns")]
        hold_namespaces: bool,
        /// Check whether sandboxes can have a user namespace, on scratch directories here; exit
        /// 0 if so, else say why on stderr.
        #[arg(long, value_name = "SCRATCH_DIR")]
        probe_userns: Option<PathBuf>,
        /// With --probe-userns: a read-only layer of sandboxes to check too (the base image's /usr).
        #[arg(long, value_name = "DIR", requires = "probe_userns")]
        probe_lower: Option<PathBuf>,
        /// PID 1 once the sandbox is set up: serve envd on the socket it hands over.
        #[arg(long, conflicts_with_all = ["probe_userns", "hold_namespaces"])]
        envd: bool,
        /// CRIU's action script while it restores a sandbox: set up its new namespaces.
        #[arg(long, value_name = "HOSTNAME", conflicts_with_all = ["probe_userns", "hold_namespaces", "envd"])]
        after_restore: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Sandboxes(cmd) => cli::run(|| cli::sandboxes::main(cmd)),
        Command::Snapshots(cmd) => cli::run(|| cli::snapshots::main(cmd)),
        Command::Templates(cmd) => cli::run(|| cli::templates::main(cmd)),
        Command::Snapshot { sandbox_id, json, opts } => cli::run(|| cli::snapshots::create(sandbox_id, json, opts)),
        Command::BaseImage { data_dir, images_dir } => cli::base_image::main(data_dir, images_dir),
        Command::Doctor { json } => cli::doctor::main(json),
        Command::Guest { probe_userns: Some(scratch), probe_lower, .. } => {
            sandbank_engine::userns::probe_main(&scratch, probe_lower.as_deref())
        }
        Command::Guest { hold_namespaces: true, .. } => sandbank_guest::hold_namespaces_main(),
        Command::Guest { envd: true, .. } => sandbank_guest::envd_main(),
        Command::Guest { after_restore: Some(hostname), .. } => sandbank_guest::init::after_restore_main(&hostname),
        Command::Guest { .. } => sandbank_guest::main(),
    }
}
