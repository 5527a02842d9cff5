//! `sandbank serve`: start the engine and the HTTP API; stop both cleanly on SIGTERM/SIGINT.

use crate::api::{self, AppState};
use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use sandbank_engine::{Engine, EngineConfig};
use std::future::IntoFuture as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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

/// How long the engine gets to kill every sandbox once a stop signal arrives.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

pub fn main(args: ServeArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbank serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("sandbank"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither --data-dir, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/sandbank"))
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

fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let _ = std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700));
    let data_dir = data_dir.canonicalize().with_context(|| format!("resolving {}", data_dir.display()))?;
    let guest_exe = std::env::current_exe().context("locating the sandbank executable")?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let result = runtime.block_on(async {
        let config = EngineConfig { data_dir: data_dir.clone(), guest_exe };
        let engine =
            tokio::task::spawn_blocking(move || Engine::open(config)).await.context("opening the engine")??;
        let key = api_key(args.api_key, &data_dir)?;
        serve(Arc::new(engine), &key, args.listen).await
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

async fn serve(engine: Arc<Engine>, key: &str, listen: SocketAddr) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before the "listening" line: a signal right after it is still a clean stop.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let state = AppState::new(engine, key);
    let expiry = state.spawn_expiry();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // Command streams are many small writes: without TCP_NODELAY, Nagle's algorithm holds each
    // one back until the client's delayed ACK (40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, api::router(state.clone()))
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .into_future(),
    );
    tracing::info!(%addr, "serving the Novita/E2B API");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}").context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
    }

    let server_failed = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); None }
        r = server => Some(r),
    };
    // Stop accepting; open streams end when their sandboxes are killed.
    let _ = stop_tx.send(());
    expiry.abort();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.shutdown()).await.is_err() {
        tracing::warn!("the engine did not shut down within {SHUTDOWN_GRACE:?}");
    }
    match server_failed {
        Some(Ok(Ok(()))) | None => Ok(()),
        Some(Ok(Err(e))) => Err(e).context("serving HTTP"),
        Some(Err(e)) => Err(e).context("the HTTP server task"),
    }
}
