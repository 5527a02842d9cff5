//! `sandbank serve`: start the engine and the HTTP API; stop both cleanly on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// API key clients must send (X-API-KEY or Authorization: Bearer). Generated and stored in
    /// the data directory when not given.
    #[arg(long, env = "SANDBANK_API_KEY")]
    pub api_key: Option<String>,
    /// Where sandboxes, templates and state live.
    #[arg(long, env = "SANDBANK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

pub fn main(args: ServeArgs) -> ExitCode {
    let _ = args;
    todo!("serve")
}
