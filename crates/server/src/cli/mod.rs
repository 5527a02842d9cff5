//! The `sandbank` CLI beside `serve`: `sandboxes ls|kill`, `snapshots ls|rm`, `snapshot`,
//! `templates build|ls|rm`, `doctor`, `base-image`. Talks to a server through `sandbank-client`, configured like the SDK: `NOVITA_*` /
//! `E2B_*` variables (the cloud, or any URL), else the local engine (`SANDBANK_URL` +
//! `SANDBANK_API_KEY`, else the running daemon's `daemon.json`). Unlike the SDK it never starts a
//! daemon.

pub mod base_image;
pub mod doctor;
pub mod sandboxes;
pub mod serve_args;
pub mod snapshot_archive;
pub mod snapshots;
pub mod table;
pub mod templates;

use sandbank_client::{local, Api, ConnectionConfig, ConnectionOpts};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Subcommand)]
pub enum SandboxesCmd {
    /// List sandboxes (every page).
    Ls {
        /// Machine-readable output: a JSON array of the API's sandbox objects.
        #[arg(long)]
        json: bool,
    },
    /// Kill sandboxes.
    Kill {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotsCmd {
    /// List snapshots (every page).
    Ls {
        /// Only the snapshots taken from this sandbox.
        #[arg(long, value_name = "ID")]
        sandbox: Option<String>,
        /// Only the snapshot with this name.
        #[arg(long)]
        name: Option<String>,
        /// Only snapshots with this label (repeat it: all must match).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = snapshots::parse_label)]
        metadata: Vec<(String, String)>,
        /// Machine-readable output: a JSON array of the API's snapshot objects (with `names`,
        /// `metadata` and `expiresAt`).
        #[arg(long)]
        json: bool,
    },
    /// Delete snapshots.
    Rm {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// What a snapshot added (A), changed (C) and removed (D) against its parent (the template
    /// when it has none), read from its layer.
    Diff {
        #[arg(value_name = "ID")]
        id: String,
        /// Machine-readable output: `{snapshotID, parentSnapshotID, added, changed, removed}`.
        #[arg(long)]
        json: bool,
    },
    /// Write a snapshot (its files, with the layers under it) to one archive file, to import
    /// on another server.
    Export {
        #[arg(value_name = "ID")]
        id: String,
        /// The file to write (whole or not at all).
        #[arg(long, short, value_name = "FILE")]
        output: std::path::PathBuf,
    },
    /// Import a snapshot from an archive file (checked whole before anything is published);
    /// prints the new snapshot's ID.
    Import {
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
        /// Machine-readable output: the API's snapshot object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TemplatesCmd {
    /// Build a template from a Dockerfile (as `Template().fromDockerfile()` of the SDKs): prints
    /// the build's log on stderr as it comes, then the template's ID on stdout.
    Build {
        /// The template's name (`name` or `name:tag`).
        #[arg(value_name = "NAME")]
        name: String,
        /// The Dockerfile. Default: `Dockerfile` in the context directory.
        #[arg(long, short = 'f', value_name = "PATH")]
        dockerfile: Option<std::path::PathBuf>,
        /// The directory COPY sources are relative to (its `.dockerignore` applies).
        #[arg(long, value_name = "DIR", default_value = ".")]
        context: std::path::PathBuf,
        /// A tag of the build (repeatable).
        #[arg(long = "tag", short = 't', value_name = "TAG")]
        tags: Vec<String>,
        /// Build every step again, cached or not.
        #[arg(long)]
        skip_cache: bool,
        /// CPUs of the template's sandboxes.
        #[arg(long, value_name = "N")]
        cpu_count: Option<u32>,
        /// Memory of the template's sandboxes, in MB.
        #[arg(long, value_name = "MB")]
        memory_mb: Option<u64>,
    },
    /// List the templates built on the server (`Template.build` of the e2b SDK).
    Ls {
        /// Machine-readable output: a JSON array of the API's template objects.
        #[arg(long)]
        json: bool,
    },
    /// Build a template the server knows by itself, ahead of its first use (which would
    /// otherwise build it then): `code-interpreter` (`code-interpreter-v1`, the interpreter
    /// SDKs' default; about 30 s with a fast network, once). Prints its build's log on stderr,
    /// then its ID.
    Prepare {
        /// `code-interpreter` (or `code-interpreter-v1`).
        #[arg(value_name = "NAME")]
        name: String,
        /// Build it again even if it is built (its cached steps are not run again).
        #[arg(long)]
        force: bool,
    },
    /// Delete templates (by name or ID) and the snapshots their builds made.
    Rm {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

/// A failure the CLI reports as one line on stderr (`sandbank: ...`) and exit status 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<sandbank_client::Error> for CliError {
    fn from(e: sandbank_client::Error) -> Self {
        CliError(e.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Runs an async command on a small runtime; prints its error and maps it to the exit status.
pub fn run<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = CliResult<ExitCode>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandbank: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sandbank: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The local engine's data directory (see `sandbank_client::local`).
pub fn data_dir() -> Option<PathBuf> {
    local::data_dir(local::process_env)
}

/// The connection options the CLI uses: the environment's (cloud or explicit URL), else the
/// local engine's, else an error that says how to start one: unlike the SDK, the CLI never
/// starts a daemon.
pub async fn connection_opts() -> CliResult<ConnectionOpts> {
    Ok(local::resolve(ConnectionOpts::default(), None).await?)
}

/// The control-plane client, with `request_timeout_ms` if given.
pub async fn api(request_timeout_ms: Option<u64>) -> CliResult<Api> {
    let mut opts = connection_opts().await?;
    if request_timeout_ms.is_some() {
        opts.request_timeout_ms = request_timeout_ms;
    }
    let config = ConnectionConfig::new(&opts)?;
    Ok(Api::new(Arc::new(config)))
}

/// Writes `s` to stdout; a closed pipe (`| head`) is not an error.
pub fn print_out(s: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

/// Pretty JSON with a trailing newline.
pub fn json_text(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON");
    s.push('\n');
    s
}

/// `2026-01-02 03:04:05Z`: UTC, seconds.
pub fn time_text(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}
