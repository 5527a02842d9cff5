//! The `sandbank` CLI beside `serve`: `sandboxes ls|kill`, `snapshots ls|rm`, `snapshot`,
//! `doctor`. Talks to a server through `sandbank-client`, configured like the SDK: `NOVITA_*` /
//! `E2B_*` variables (the cloud, or any URL), else the local engine (`SANDBANK_URL` +
//! `SANDBANK_API_KEY`, else the running daemon's `daemon.json`). Unlike the SDK it never starts a
//! daemon.

pub mod doctor;
pub mod sandboxes;
pub mod snapshots;
pub mod table;

use sandbank_client::{Api, ConnectionConfig, ConnectionOpts};
use std::path::{Path, PathBuf};
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
        /// Machine-readable output: a JSON array of the API's snapshot objects.
        #[arg(long)]
        json: bool,
    },
    /// Delete snapshots.
    Rm {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
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

/// The SDK's variables that mean "a server is configured" (`lib/local.js`'s `isConfigured`).
const CONFIG_VARS: &[&str] = &["API_KEY", "ACCESS_TOKEN", "API_URL", "SANDBOX_URL", "DOMAIN"];

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether `NOVITA_*` / `E2B_*` configure a server (the cloud, or an explicit URL).
pub fn is_configured() -> bool {
    let set = |v: &str| env_nonempty(&format!("NOVITA_{v}")).is_some() || env_nonempty(&format!("E2B_{v}")).is_some();
    CONFIG_VARS.iter().any(|v| set(v))
        || ["NOVITA_DEBUG", "E2B_DEBUG"].iter().any(|v| env_nonempty(v).is_some_and(|d| d.eq_ignore_ascii_case("true")))
}

/// The local engine's data directory: `$SANDBANK_DATA_DIR`, else `$XDG_DATA_HOME/sandbank`,
/// else `~/.local/share/sandbank`.
pub fn data_dir() -> Option<PathBuf> {
    if let Some(d) = env_nonempty("SANDBANK_DATA_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = env_nonempty("XDG_DATA_HOME") {
        return Some(PathBuf::from(d).join("sandbank"));
    }
    env_nonempty("HOME").map(|h| PathBuf::from(h).join(".local/share/sandbank"))
}

/// A running daemon as `daemon.json` names it.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub url: String,
    pub api_key: Option<String>,
    pub pid: i32,
}

/// What `<dir>/daemon.json` says, whether or not its process still runs.
#[derive(Debug)]
pub enum DaemonState {
    /// No (readable) daemon.json.
    Absent,
    /// daemon.json names a process that is gone (or is not a `sandbank serve`).
    Stale(i32),
    Running(Daemon),
}

/// Whether `pid` is alive and (on Linux) a `sandbank serve`: a recycled PID would not be.
pub fn pid_is_serve(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => c.split(|b| *b == 0).any(|a| a == b"serve"),
        Err(_) => false,
    }
}

pub fn read_daemon(dir: &Path) -> DaemonState {
    let Ok(text) = std::fs::read_to_string(dir.join(crate::serve::DAEMON_STATE_FILE)) else {
        return DaemonState::Absent;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return DaemonState::Absent;
    };
    let (Some(url), Some(pid)) = (v["url"].as_str(), v["pid"].as_i64().and_then(|p| i32::try_from(p).ok())) else {
        return DaemonState::Absent;
    };
    if !pid_is_serve(pid) {
        return DaemonState::Stale(pid);
    }
    DaemonState::Running(Daemon {
        url: url.trim_end_matches('/').to_string(),
        api_key: v["apiKey"].as_str().map(str::to_string),
        pid,
    })
}

/// The connection options the CLI uses: the environment's (cloud or explicit URL), else the
/// local engine's, else an error that says how to start one.
pub fn connection_opts() -> CliResult<ConnectionOpts> {
    if is_configured() {
        return Ok(ConnectionOpts::default());
    }
    if let Some(url) = env_nonempty("SANDBANK_URL") {
        let url = url.trim_end_matches('/').to_string();
        return Ok(ConnectionOpts {
            api_key: env_nonempty("SANDBANK_API_KEY"),
            api_url: Some(url.clone()),
            sandbox_url: Some(url),
            ..Default::default()
        });
    }
    let Some(dir) = data_dir() else {
        return Err(CliError(
            "no server configured and no local data directory (set SANDBANK_DATA_DIR, XDG_DATA_HOME or HOME): \
             set SANDBANK_URL and SANDBANK_API_KEY, or NOVITA_API_KEY for the Novita cloud"
                .into(),
        ));
    };
    match read_daemon(&dir) {
        DaemonState::Running(d) => Ok(ConnectionOpts {
            api_key: d.api_key,
            api_url: Some(d.url.clone()),
            sandbox_url: Some(d.url),
            ..Default::default()
        }),
        state => {
            let why = match state {
                DaemonState::Stale(pid) => {
                    format!("{} names pid {pid}, which is not running", dir.join("daemon.json").display())
                }
                _ => format!("no {}", dir.join("daemon.json").display()),
            };
            Err(CliError(format!(
                "no local sandbank server is running ({why}): start one with `sandbank serve` \
                 (as root), or set SANDBANK_URL and SANDBANK_API_KEY for another server, or NOVITA_API_KEY \
                 for the Novita cloud"
            )))
        }
    }
}

/// The control-plane client, with `request_timeout_ms` if given.
pub fn api(request_timeout_ms: Option<u64>) -> CliResult<Api> {
    let mut opts = connection_opts()?;
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
