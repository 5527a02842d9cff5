//! `sandbank serve`: start the engine and the HTTP API; stop both cleanly on SIGTERM/SIGINT.

use crate::api::{self, AppState};
pub use crate::cli::serve_args::ServeArgs;
use crate::cli::serve_args::StoreKind;
use crate::http_server;
use anyhow::Context as _;
use sandbank_client::local::{self, DAEMON_STATE_FILE, EXIT_DATA_DIR_IN_USE};
use sandbank_engine::{Engine, EngineConfig, EngineError, LayerStore};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long the engine gets to kill every sandbox once a stop signal arrives.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
/// How often expired snapshots that nothing uses are deleted (an index lookup when none are).
const SNAPSHOT_SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Set by the JS launcher (`npx sandbank`, `bin/sandbank.js`) to its own pid: a server it started
/// stops, cleanly, when the launcher dies, however it dies.
const LAUNCHER_PID_ENV: &str = "SANDBANK_LAUNCHER_PID";

pub fn main(args: ServeArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if !stop_with_launcher() {
        tracing::info!("the launcher that started this server is gone: not starting");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbank serve: {e:#}");
            // A client starting a daemon tells "another server has it" from a failure by this.
            match e.downcast_ref::<EngineError>() {
                Some(EngineError::Locked { .. }) => ExitCode::from(EXIT_DATA_DIR_IN_USE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    local::data_dir(local::process_env).context("neither --data-dir, XDG_DATA_HOME nor HOME is set")
}

/// The key given, or the one stored in `<data-dir>/api-key`, or a new one stored there (0600).
fn api_key(given: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(k) = given.map(|k| k.trim().to_string()).filter(|k| !k.is_empty()) {
        return Ok(k);
    }
    let path = data_dir.join("api-key");
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok(k.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let key: String = {
        use rand::Rng as _;
        let mut rng = rand::rng();
        let hex = b"0123456789abcdef";
        "sk_".chars().chain((0..40).map(|_| hex[rng.random_range(0..16)] as char)).collect()
    };
    let tmp = data_dir.join("api-key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(format!("{key}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("creating {}", path.display()))?;
    tracing::info!("generated an API key, stored in {}", path.display());
    Ok(key)
}

/// When the JS launcher started this server, has SIGTERM (the clean stop) sent here when it dies.
/// `false` when it is already gone.
fn stop_with_launcher() -> bool {
    let Some(launcher) = std::env::var(LAUNCHER_PID_ENV).ok().and_then(|p| p.parse::<i32>().ok()) else {
        return true;
    };
    let parent = || nix::unistd::getppid().as_raw();
    if parent() != launcher {
        // Started some other way with the variable inherited; nothing to follow.
        return true;
    }
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM) {
        tracing::warn!("cannot follow the launcher (prctl PR_SET_PDEATHSIG: {e}); stop this server yourself");
    }
    // It may have died before the signal was armed.
    parent() == launcher
}

fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let _ = std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700));
    let data_dir = data_dir.canonicalize().with_context(|| format!("resolving {}", data_dir.display()))?;
    let guest_exe = std::env::current_exe().context("locating the sandbank executable")?;
    check_privileges()?;
    if args.store != StoreKind::Copy {
        own_mount_namespace()?;
    }

    heap_stats_from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let result = runtime.block_on(async {
        let tables = crate::cli::doctor::kernel_tables();
        if tables.status != crate::cli::doctor::Status::Ok {
            tracing::warn!("{}", tables.detail);
        }
        let pasta = sandbank_engine::net::find_pasta()
            .inspect_err(|why| tracing::warn!("{why}: sandboxes get loopback only"))
            .ok();
        let config = EngineConfig {
            data_dir: data_dir.clone(),
            guest_exe,
            disk_limit_mb: Some(args.disk_limit_mb),
            pasta,
            user_namespace: !args.no_userns,
            layer_store: match args.store {
                StoreKind::Copy => LayerStore::Copy,
                StoreKind::Btrfs => LayerStore::Btrfs { image_bytes: args.store_image_gb << 30 },
                StoreKind::Auto => LayerStore::Auto { image_bytes: args.store_image_gb << 30 },
            },
            images_dir: args.images_dir.clone(),
            registries: sandbank_engine::oci::Registries {
                mirror: args.registry_mirror.clone().filter(|m| !m.trim().is_empty()),
                insecure: args.insecure_registry.clone(),
            },
        };
        let engine = tokio::task::spawn_blocking(move || Engine::open(config))
            .await
            .context("opening the engine")?
            .map_err(|e| match e {
                EngineError::NoUserNamespace(_) => {
                    anyhow::anyhow!("{e}: to run them so, start the server with --no-userns (or SANDBANK_NO_USERNS=1)")
                }
                e => e.into(),
            })?;
        tracing::info!("layer store: {}", engine.store_description());
        engine.prepare_network();
        let key = api_key(args.api_key, &data_dir)?;
        let idle = (args.idle_exit_secs > 0).then(|| Duration::from_secs(args.idle_exit_secs));
        let header_timeout = Duration::from_secs(args.header_timeout_secs);
        let policy =
            crate::api::snapshots::SnapshotPolicy { default_ttl: args.snapshot_ttl, keep_last: args.keep_last };
        serve(Arc::new(engine), &key, args.listen, header_timeout, &data_dir, idle, policy).await
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// `SANDBANK_HEAP_STATS=SECS`: every SECS seconds, a log line with what glibc's malloc holds:
/// `in_use` (live allocations), `free` (freed but kept by malloc), `mmapped` (large blocks) and
/// `arena` (what the heaps took from the system), next to the process's anonymous RSS. Live
/// bytes that keep growing under a steady load are a leak; flat live bytes under a growing RSS
/// are the allocator keeping memory. A diagnostic, off by default (`mallinfo2` walks every arena
/// under its lock).
fn heap_stats_from_env() {
    let Some(secs) =
        std::env::var("SANDBANK_HEAP_STATS").ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|&s| s > 0)
    else {
        return;
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("sandbank-heap-stats".into()).spawn(move || loop {
            let (in_use, free, mmapped, arena) = crate::sys::heap_info();
            let rss_anon_kb = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("RssAnon:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
                .unwrap_or(0);
            tracing::info!(
                in_use_kb = in_use / 1024,
                free_kb = free / 1024,
                mmapped_kb = mmapped / 1024,
                arena_kb = arena / 1024,
                rss_anon_kb,
                "heap stats"
            );
            std::thread::sleep(Duration::from_secs(secs));
        });
        if let Err(e) = spawned {
            tracing::warn!("SANDBANK_HEAP_STATS: {e}");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    tracing::warn!("SANDBANK_HEAP_STATS={secs}: only with glibc's malloc");
}

/// The btrfs store's image is mounted by the server: in a mount namespace of its own (the host's
/// mounts still propagate into it, not the reverse), that mount and its loop device go with the
/// server even when it is killed, instead of staying on the host until the next start on the same
/// data directory. Called while the process is still single-threaded.
fn own_mount_namespace() -> anyhow::Result<()> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare the mount namespace")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .context("make the server's mounts its own")?;
    Ok(())
}

/// Sandboxes need namespaces, mounts and cgroups: root, or at least CAP_SYS_ADMIN.
fn check_privileges() -> anyhow::Result<()> {
    let euid = rustix::process::geteuid().as_raw();
    if euid == 0 {
        return Ok(());
    }
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u64 = 21;
    if cap_eff & (1 << CAP_SYS_ADMIN) != 0 {
        return Ok(());
    }
    anyhow::bail!(
        "running sandboxes needs root or CAP_SYS_ADMIN (namespaces, overlay mounts, cgroups), and this process \
         (uid {euid}) has neither: run it as root, or point the SDK at a sandbank server that can \
         (SANDBANK_URL and SANDBANK_API_KEY), or at the Novita cloud (NOVITA_API_KEY)"
    )
}

/// Requests in flight and the time the last one ended, for `--idle-exit-secs` and the trim.
#[derive(Debug)]
struct Activity {
    inflight: std::sync::atomic::AtomicUsize,
    last: std::sync::Mutex<std::time::Instant>,
}

impl Activity {
    /// When the last request ended; `None` while one is in flight.
    fn quiet_since(&self) -> Option<std::time::Instant> {
        if self.inflight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*self.last.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn track_activity(
    axum::extract::State(activity): axum::extract::State<Arc<Activity>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use std::sync::atomic::Ordering;
    activity.inflight.fetch_add(1, Ordering::SeqCst);
    let res = next.run(req).await;
    *activity.last.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
    activity.inflight.fetch_sub(1, Ordering::SeqCst);
    res
}

/// Resolves once there has been no sandbox and no request for `idle`.
async fn idle_for(state: AppState, activity: Arc<Activity>, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    // When a sandbox was last seen (its own clock: the trim goes by requests alone).
    let mut busy_at = std::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        match activity.quiet_since() {
            Some(last) if state.registry.len() == 0 => {
                if last.max(busy_at).elapsed() >= idle {
                    return;
                }
            }
            _ => busy_at = std::time::Instant::now(),
        }
    }
}

/// How long the server must have had no request before the memory freed in malloc's heaps is
/// given back to the system.
const TRIM_WHEN_QUIET_FOR: Duration = Duration::from_secs(10);

/// Under load, glibc's malloc keeps what is freed in its heaps for the next requests: the live
/// heap stays flat while the RSS climbs to a plateau (docs/RELIABILITY.md, "Load"). Once no
/// request has come for [`TRIM_WHEN_QUIET_FOR`], that memory goes back (`malloc_trim`), once per
/// quiet spell.
async fn trim_when_quiet(activity: Arc<Activity>) {
    let mut trimmed_after: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(TRIM_WHEN_QUIET_FOR / 2).await;
        let Some(last) = activity.quiet_since() else { continue };
        if last.elapsed() < TRIM_WHEN_QUIET_FOR || trimmed_after == Some(last) {
            continue;
        }
        trimmed_after = Some(last);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let t0 = std::time::Instant::now();
            let _ = tokio::task::spawn_blocking(crate::sys::trim_heap).await;
            tracing::debug!(took = ?t0.elapsed(), "quiet: freed heap memory given back");
        }
    }
}

/// Writes `daemon.json` atomically (0600).
fn write_daemon_state(data_dir: &Path, url: &str, key: &str) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(DAEMON_STATE_FILE);
    let tmp = data_dir.join(format!(".{DAEMON_STATE_FILE}.{}", std::process::id()));
    let body = serde_json::json!({
        "url": url,
        "apiKey": key,
        "pid": std::process::id(),
        "dataDir": data_dir,
    });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(body.to_string().as_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("creating {}", path.display()))?;
    Ok(path)
}

/// Removes `daemon.json` if it still names this process.
fn remove_daemon_state(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.get("pid").and_then(|p| p.as_u64()))
        == Some(u64::from(std::process::id()));
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

async fn serve(
    engine: Arc<Engine>,
    key: &str,
    listen: SocketAddr,
    header_timeout: Duration,
    data_dir: &Path,
    idle: Option<Duration>,
    snapshot_policy: crate::api::snapshots::SnapshotPolicy,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before the "listening" line: a signal right after it is still a clean stop.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let builds = data_dir.join("builds");
    let templates =
        crate::templates::Templates::open(&builds).with_context(|| format!("opening {}", builds.display()))?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut state = AppState::new(engine, key, templates, Some(format!("localhost:{}", addr.port())));
    state.snapshot_policy = snapshot_policy;
    state.restore_paused();
    let expiry = state.spawn_expiry();
    let sweep = crate::api::snapshots::spawn_sweep(&state, SNAPSHOT_SWEEP_EVERY);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let activity = Arc::new(Activity {
        inflight: std::sync::atomic::AtomicUsize::new(0),
        last: std::sync::Mutex::new(std::time::Instant::now()),
    });
    let app = api::router(state.clone()).layer(axum::middleware::from_fn_with_state(activity.clone(), track_activity));
    let server = tokio::spawn(http_server::serve(listener, app, header_timeout, async {
        let _ = stop_rx.await;
    }));
    let trim = tokio::spawn(trim_when_quiet(activity.clone()));
    tracing::info!(%addr, "serving the Novita/E2B API");
    let state_file = write_daemon_state(data_dir, &format!("http://{addr}"), key)?;
    let idle_exit = {
        let (state, activity) = (state.clone(), activity.clone());
        async move {
            match idle {
                Some(d) => idle_for(state, activity, d).await,
                None => std::future::pending().await,
            }
        }
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}").context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
    }

    let server_failed = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); None }
        _ = idle_exit => { tracing::info!("idle: no sandbox and no request for {:?}, stopping", idle.unwrap_or_default()); None }
        r = server => Some(r),
    };
    // Stop accepting; open streams end when their sandboxes are killed.
    let _ = stop_tx.send(());
    remove_daemon_state(&state_file);
    expiry.abort();
    sweep.abort();
    trim.abort();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.shutdown()).await.is_err() {
        tracing::warn!("the engine did not shut down within {SHUTDOWN_GRACE:?}");
    }
    match server_failed {
        Some(Ok(())) | None => Ok(()),
        Some(Err(e)) => Err(e).context("the HTTP server task"),
    }
}
