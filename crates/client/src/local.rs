//! The local default: with no server configured (no API key, access token, domain, URL or debug
//! mode, in the options or the `NOVITA_*`/`E2B_*` variables), calls go to the local engine:
//!   1. `SANDBANK_URL` (+ `SANDBANK_API_KEY`) when set;
//!   2. else the running `sandbank serve` that `<data dir>/daemon.json` names
//!      (`{url, apiKey, pid, dataDir}`, written by every server once it listens, removed when it stops);
//!   3. else, given a [`Launcher`], `sandbank serve --listen 127.0.0.1:0 --idle-exit-secs 300` started
//!      in the background (its own process group, its output in `<data dir>/daemon.log`), awaited
//!      until its `daemon.json` appears. The CLI passes no launcher: it never starts a daemon.
//!
//! The data dir is `$SANDBANK_DATA_DIR`, else `$XDG_DATA_HOME/sandbank`, else `~/.local/share/sandbank`.
//! Two processes starting a daemon at once: the data dir's lock lets one server run; the other exits
//! with [`EXIT_DATA_DIR_IN_USE`] and its client uses the winner's `daemon.json`.

use crate::config::{non_empty, ConnectionOpts};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tells clients where a running server is; see the module doc.
pub const DAEMON_STATE_FILE: &str = "daemon.json";
/// A daemon's stdout and stderr.
pub const DAEMON_LOG_FILE: &str = "daemon.log";
/// `sandbank serve`'s exit status when another server holds the data directory (`EX_TEMPFAIL`:
/// try again, or use that server).
pub const EXIT_DATA_DIR_IN_USE: u8 = 75;
/// How long a started daemon stays up with no sandbox and no request, unless
/// `SANDBANK_IDLE_EXIT_SECS` says otherwise.
pub const DEFAULT_IDLE_EXIT_SECS: u64 = 300;
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a first start may take when it builds the engine's base image (its log says so).
const BASE_IMAGE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// In every line the daemon logs while it builds the base image (`sandbank_engine::base_image`).
const BASE_IMAGE_PROGRESS: &str = "base image";

/// The option and variable names (after `NOVITA_`/`E2B_`) that mean "a server is configured".
const CONFIG_VARS: &[&str] = &["API_KEY", "ACCESS_TOKEN", "API_URL", "SANDBOX_URL", "DOMAIN"];

/// Whether `opts` or the environment configure a server (the cloud, an explicit URL, or debug mode).
pub fn is_configured(opts: &ConnectionOpts, env: impl Fn(&str) -> Option<String>) -> bool {
    let given = [&opts.api_key, &opts.access_token, &opts.domain, &opts.api_url, &opts.sandbox_url];
    if given.iter().any(|v| v.as_deref().is_some_and(|v| !v.is_empty())) || opts.debug == Some(true) {
        return true;
    }
    let var = |name: String| non_empty(env(&name));
    CONFIG_VARS.iter().any(|v| var(format!("NOVITA_{v}")).or_else(|| var(format!("E2B_{v}"))).is_some())
        || ["NOVITA_DEBUG", "E2B_DEBUG"].iter().any(|v| var(v.to_string()).is_some_and(|d| d == "true"))
}

/// The local engine's data directory (`None` with neither `SANDBANK_DATA_DIR`, `XDG_DATA_HOME` nor `HOME`).
pub fn data_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(d) = non_empty(env("SANDBANK_DATA_DIR")) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = non_empty(env("XDG_DATA_HOME")) {
        return Some(PathBuf::from(d).join("sandbank"));
    }
    non_empty(env("HOME")).map(|h| PathBuf::from(h).join(".local/share/sandbank"))
}

/// The process's environment, for the functions here that take one (tests pass their own).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A running server as `daemon.json` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub url: String,
    pub api_key: Option<String>,
    pub pid: i32,
}

/// Connection options that reach the server at `url`.
fn connection(url: &str, api_key: Option<String>) -> ConnectionOpts {
    let url = url.trim_end_matches('/').to_string();
    ConnectionOpts { api_key, api_url: Some(url.clone()), sandbox_url: Some(url), ..Default::default() }
}

/// What `<dir>/daemon.json` says, whether or not its process still runs.
#[derive(Debug, PartialEq, Eq)]
pub enum DaemonState {
    /// No (readable) daemon.json.
    Absent,
    /// daemon.json names a process that is gone (or is not a `sandbank serve`).
    Stale(i32),
    Running(Daemon),
}

/// Whether `pid` is alive and a `sandbank serve`: a recycled PID would not be.
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
    let Ok(text) = std::fs::read_to_string(dir.join(DAEMON_STATE_FILE)) else {
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

/// How to start a daemon when none runs: the `sandbank` binary, and what to tell the user when it
/// is missing (where it should have come from).
#[derive(Debug, Clone)]
pub struct Launcher {
    /// `SANDBANK_BIN` wins over this.
    pub binary: PathBuf,
    /// Completes "the local engine binary <path> is missing (...)".
    pub missing_hint: String,
}

/// The options to use: `opts` when they (or the environment) configure a server, else `opts` with
/// the local server's URL and key (see the module doc).
pub async fn resolve(opts: ConnectionOpts, launcher: Option<&Launcher>) -> Result<ConnectionOpts> {
    if is_configured(&opts, process_env) {
        return Ok(opts);
    }
    let local = local_server(launcher).await?;
    // Empty strings configure nothing, but would win a merge.
    Ok(local.merged(&ConnectionOpts { api_key: None, api_url: None, sandbox_url: None, ..opts }))
}

/// The daemon this process found or started last; calls wait here rather than start two.
static CURRENT: tokio::sync::Mutex<Option<Daemon>> = tokio::sync::Mutex::const_new(None);

/// The options that reach the local server: `SANDBANK_URL`, a running daemon, or (with a
/// launcher) one started now.
pub async fn local_server(launcher: Option<&Launcher>) -> Result<ConnectionOpts> {
    if let Some(url) = non_empty(process_env("SANDBANK_URL")) {
        return Ok(connection(&url, non_empty(process_env("SANDBANK_API_KEY"))));
    }
    let mut current = CURRENT.lock().await;
    if let Some(d) = current.as_ref().filter(|d| pid_is_serve(d.pid)) {
        return Ok(connection(&d.url, d.api_key.clone()));
    }
    let dir = data_dir(process_env).ok_or_else(|| {
        Error::Sandbox(
            "no server configured and no local data directory (set SANDBANK_DATA_DIR, XDG_DATA_HOME or \
             HOME): set SANDBANK_URL and SANDBANK_API_KEY, or NOVITA_API_KEY for the Novita cloud"
                .into(),
        )
    })?;
    let daemon = match (read_daemon(&dir), launcher) {
        (DaemonState::Running(d), _) => d,
        (state, None) => return Err(no_daemon(&dir, state)),
        (_, Some(launcher)) => {
            let launcher = launcher.clone();
            tokio::task::spawn_blocking(move || start_daemon(&dir, &launcher))
                .await
                .map_err(|e| Error::Sandbox(format!("sandbank: starting the local daemon: {e}")))??
        }
    };
    let opts = connection(&daemon.url, daemon.api_key.clone());
    *current = Some(daemon);
    Ok(opts)
}

fn no_daemon(dir: &Path, state: DaemonState) -> Error {
    let file = dir.join(DAEMON_STATE_FILE);
    let why = match state {
        DaemonState::Stale(pid) => format!("{} names pid {pid}, which is not running", file.display()),
        _ => format!("no {}", file.display()),
    };
    Error::Sandbox(format!(
        "no local sandbank server is running ({why}): start one with `sandbank serve` (as root), or set \
         SANDBANK_URL and SANDBANK_API_KEY for another server, or NOVITA_API_KEY for the Novita cloud"
    ))
}

/// Starts `sandbank serve` in the background and waits for its `daemon.json` (blocking).
fn start_daemon(dir: &Path, launcher: &Launcher) -> Result<Daemon> {
    engine_runs_on(std::env::consts::OS, std::env::consts::ARCH)?;
    let bin = non_empty(process_env("SANDBANK_BIN")).map(PathBuf::from).unwrap_or_else(|| launcher.binary.clone());
    if !bin.exists() {
        return Err(Error::Sandbox(format!(
            "sandbank: no server configured and the local engine binary {} is missing ({}): reinstall sandbank, run \
             `npm run build` in a checkout, set SANDBANK_BIN, or configure a server (SANDBANK_URL, or \
             NOVITA_API_KEY for the Novita cloud)",
            bin.display(),
            launcher.missing_hint
        )));
    }
    let fail = |what: String, e: std::io::Error| Error::Sandbox(format!("sandbank: {what}: {e}"));
    create_private_dir(dir).map_err(|e| fail(format!("creating {}", dir.display()), e))?;
    let log_path = dir.join(DAEMON_LOG_FILE);
    let idle = non_empty(process_env("SANDBANK_IDLE_EXIT_SECS")).unwrap_or_else(|| DEFAULT_IDLE_EXIT_SECS.to_string());
    let mut deadline = Instant::now() + START_TIMEOUT;
    let mut building_image = false;
    for _attempt in 0..20 {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--idle-exit-secs", &idle, "--data-dir"])
            .arg(dir)
            .env("NO_COLOR", "1")
            .env_remove("SANDBANK_API_KEY");
        let child = Detached::spawn(cmd, &log_path).map_err(|e| fail(format!("cannot start {}", bin.display()), e))?;
        let mut polls = 0u32;
        let exit = loop {
            polls += 1;
            let exited = child.exit_code();
            if let DaemonState::Running(d) = read_daemon(dir) {
                // Ours, or (once ours has exited) the one that won the data directory.
                if d.pid == child.pid || exited.is_some() {
                    return Ok(d);
                }
            }
            if let Some(code) = exited {
                break code;
            }
            if polls.is_multiple_of(32) {
                wait_for_a_base_image_build(&log_path, &mut building_image, &mut deadline);
            }
            if Instant::now() > deadline {
                child.terminate();
                return Err(Error::Sandbox(format!(
                    "sandbank: the local daemon did not become ready within {} s; its log ({}):\n{}",
                    if building_image { BASE_IMAGE_TIMEOUT } else { START_TIMEOUT }.as_secs(),
                    log_path.display(),
                    log_tail(&log_path)
                )));
            }
            std::thread::sleep(Duration::from_millis(15));
        };
        if exit == Some(i32::from(EXIT_DATA_DIR_IN_USE)) && Instant::now() < deadline {
            // Another server holds the data directory: it is starting (use its daemon.json once it
            // appears; it may be building the base image) or stopping (then start again).
            wait_for_a_base_image_build(&log_path, &mut building_image, &mut deadline);
            let wait = if building_image { BASE_IMAGE_TIMEOUT } else { Duration::from_secs(2) };
            let until = (Instant::now() + wait).min(deadline);
            while Instant::now() < until {
                if let DaemonState::Running(d) = read_daemon(dir) {
                    return Ok(d);
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            continue;
        }
        let tail = log_tail(&log_path);
        let why = tail
            .lines()
            .rfind(|l| l.contains("sandbank serve:") || l.to_ascii_lowercase().contains("error"))
            .unwrap_or(&tail);
        let status = exit.map_or_else(|| "a signal".to_string(), |c| c.to_string());
        return Err(Error::Sandbox(format!(
            "sandbank: the local daemon could not start (exit {status}): {}",
            why.trim_start_matches("sandbank serve: ")
        )));
    }
    Err(Error::Sandbox(format!(
        "sandbank: the local daemon could not start: {} stayed in use by another sandbank serve",
        dir.display()
    )))
}

/// The local engine runs on Linux only; elsewhere the error says what to configure instead.
fn engine_runs_on(os: &str, arch: &str) -> Result<()> {
    if os == "linux" {
        return Ok(());
    }
    Err(Error::Sandbox(format!(
        "sandbank: no server configured, and the local engine needs Linux (this is {os}-{arch}): set \
         NOVITA_API_KEY to use the Novita cloud, or SANDBANK_URL (and SANDBANK_API_KEY) to use a sandbank server \
         running on a Linux machine"
    )))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Whether a server of this data directory is building the base image now: the daemon log's last
/// line is one of the build's.
fn building_base_image(log_path: &Path) -> bool {
    log_tail(log_path).lines().last().is_some_and(|l| l.contains(BASE_IMAGE_PROGRESS))
}

/// Once the daemon log shows a base image build (`building` still false): says so on stderr and
/// moves `deadline` to [`BASE_IMAGE_TIMEOUT`] from now.
fn wait_for_a_base_image_build(log_path: &Path, building: &mut bool, deadline: &mut Instant) {
    if *building || !building_base_image(log_path) {
        return;
    }
    *building = true;
    *deadline = Instant::now() + BASE_IMAGE_TIMEOUT;
    eprintln!(
        "sandbank: the local engine is building its base image (Debian, once: about a minute; log: {})",
        log_path.display()
    );
}

/// The last lines of the daemon's log, without the colour escapes tracing adds on a terminal.
fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        plain.push(c);
    }
    let lines: Vec<&str> = plain.trim_end().lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// A server started in its own process group, so that it outlives this process; a thread waits
/// for it, so that it never lingers as a zombie and its early exit is seen.
struct Detached {
    pid: i32,
    /// `Some(code)` once it exited (`None` inside: killed by a signal).
    exit: Arc<Mutex<Option<Option<i32>>>>,
}

impl Detached {
    fn spawn(mut cmd: std::process::Command, log_path: &Path) -> std::io::Result<Self> {
        let log = append_private(log_path)?;
        cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn()?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let exit = Arc::new(Mutex::new(None));
        let seen = exit.clone();
        std::thread::spawn(move || {
            let code = child.wait().map(|s| s.code()).unwrap_or(None);
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(code);
        });
        Ok(Self { pid, exit })
    }

    fn exit_code(&self) -> Option<Option<i32>> {
        *self.exit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks it to stop (SIGTERM: the server's clean stop), while it still runs.
    fn terminate(&self) {
        #[cfg(unix)]
        if self.exit_code().is_none() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
    }
}

fn append_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn configured_by_options_or_either_prefix_of_variables() {
        let none = ConnectionOpts::default();
        assert!(!is_configured(&none, env(&[])));
        assert!(!is_configured(&none, env(&[("NOVITA_API_KEY", ""), ("NOVITA_DEBUG", "false")])));
        assert!(is_configured(&none, env(&[("E2B_DOMAIN", "example.com")])));
        assert!(is_configured(&none, env(&[("NOVITA_DEBUG", "true")])));
        let key = ConnectionOpts { api_key: Some("k".into()), ..Default::default() };
        assert!(is_configured(&key, env(&[])));
        let empty = ConnectionOpts { api_url: Some(String::new()), ..Default::default() };
        assert!(!is_configured(&empty, env(&[])), "an empty option is no option");
        let debug = ConnectionOpts { debug: Some(true), ..Default::default() };
        assert!(is_configured(&debug, env(&[])));
        let timeout_only = ConnectionOpts { request_timeout_ms: Some(5), ..Default::default() };
        assert!(!is_configured(&timeout_only, env(&[])), "a timeout alone names no server");
    }

    #[test]
    fn off_linux_the_error_says_what_to_configure() {
        assert_eq!(engine_runs_on("linux", "x86_64"), Ok(()));
        let e = engine_runs_on("macos", "aarch64").unwrap_err();
        assert_eq!(e.kind(), "SandboxError");
        let m = e.to_string();
        assert!(m.contains("the local engine needs Linux (this is macos-aarch64)"), "{m}");
        assert!(m.contains("NOVITA_API_KEY") && m.contains("SANDBANK_URL"), "{m}");
    }

    #[test]
    fn data_dir_precedence() {
        assert_eq!(data_dir(env(&[])), None);
        assert_eq!(data_dir(env(&[("HOME", "/h")])), Some(PathBuf::from("/h/.local/share/sandbank")));
        assert_eq!(data_dir(env(&[("HOME", "/h"), ("XDG_DATA_HOME", "/x")])), Some(PathBuf::from("/x/sandbank")));
        let all = [("HOME", "/h"), ("XDG_DATA_HOME", "/x"), ("SANDBANK_DATA_DIR", "/d")];
        assert_eq!(data_dir(env(&all)), Some(PathBuf::from("/d")));
    }

    #[test]
    fn daemon_state_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_daemon(dir.path()), DaemonState::Absent);
        std::fs::write(dir.path().join(DAEMON_STATE_FILE), "not json").unwrap();
        assert_eq!(read_daemon(dir.path()), DaemonState::Absent);
        // A pid that is not a `sandbank serve` (this test process) is stale.
        let me = std::process::id();
        std::fs::write(dir.path().join(DAEMON_STATE_FILE), format!(r#"{{"url":"http://x/","pid":{me}}}"#)).unwrap();
        assert_eq!(read_daemon(dir.path()), DaemonState::Stale(me as i32));
    }

    #[test]
    fn log_tail_strips_colours_and_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let lines: Vec<String> = (0..12).map(|i| format!("\x1b[2mline\x1b[0m {i}")).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert_eq!(log_tail(&path), (4..12).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n"));
        assert_eq!(log_tail(&dir.path().join("absent")), "");
    }

    #[test]
    fn a_base_image_build_is_seen_in_the_logs_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert!(!building_base_image(&path), "no log");
        std::fs::write(&path, "INFO sandbank_engine::base_image: building the base image debian-bookworm-0 (…)\n")
            .unwrap();
        assert!(building_base_image(&path));
        std::fs::write(&path, "INFO base image: installing essential packages...\nINFO listening\n").unwrap();
        assert!(!building_base_image(&path), "built: the server went on");
    }

    #[test]
    fn resolve_keeps_the_callers_other_options() {
        let local = connection("http://127.0.0.1:9/", Some("k".into()));
        let caller = ConnectionOpts {
            request_timeout_ms: Some(7),
            headers: vec![("a".into(), "b".into())],
            ..Default::default()
        };
        let merged = local.merged(&ConnectionOpts { api_key: None, api_url: None, sandbox_url: None, ..caller });
        assert_eq!(merged.api_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(merged.sandbox_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(merged.api_key.as_deref(), Some("k"));
        assert_eq!(merged.request_timeout_ms, Some(7));
        assert_eq!(merged.headers, vec![("a".to_string(), "b".to_string())]);
    }
}
