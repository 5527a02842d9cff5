//! Starts a real `sandbank serve` (built beforehand with `cargo build -p sandbank-server`) on
//! 127.0.0.1:0 with a fresh data directory and a random API key; stops it with SIGTERM.
#![allow(dead_code)]

use sandbank_client::{Api, ConnectionConfig, ConnectionOpts, Sandbox, SandboxCreateOpts};
use sandbank_testkit::{serve_command, ServerProcess};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Server {
    pub url: String,
    pub key: String,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SANDBANK_BIN") {
        return p.into();
    }
    // This test runs from <target>/<profile>/deps/; `cargo test --workspace` builds the
    // server's binary into <target>/<profile>/ of the same profile.
    let exe = std::env::current_exe().expect("the test's own path");
    let p = exe.parent().and_then(|deps| deps.parent()).expect("<target>/<profile>").join("sandbank");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p sandbank-server` (same profile) first, or set SANDBANK_BIN",
        p.display()
    );
    p
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let key = format!("sk_test_{:016x}", rand::random::<u64>());
        let cmd = serve_command(&binary(), dir.path(), Some(&key), "warn");
        let process = ServerProcess::spawn(cmd, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        Server { url: process.url(), key, process, _dir: dir }
    }

    /// Connection options for this server: explicit API key, API URL and envd URL.
    pub fn opts(&self) -> ConnectionOpts {
        ConnectionOpts {
            api_key: Some(self.key.clone()),
            api_url: Some(self.url.clone()),
            sandbox_url: Some(self.url.clone()),
            // One client per test runtime (pooled connections belong to a runtime).
            http_client: Some(sandbank_client::config::new_http_client()),
            ..Default::default()
        }
    }

    pub fn config(&self) -> Arc<ConnectionConfig> {
        Arc::new(ConnectionConfig::with_env(&self.opts(), |_| None).unwrap())
    }

    pub fn api(&self) -> Api {
        Api::new(self.config())
    }

    pub async fn sandbox(&self) -> Sandbox {
        Sandbox::create(self.config(), SandboxCreateOpts::default()).await.expect("create sandbox")
    }

    /// SIGTERM; asserts a clean exit within 5 s.
    pub fn stop(self) {
        let Server { process, _dir, .. } = self;
        process.stop();
    }
}

/// Runs `f` on a fresh runtime against a fresh server, then kills every sandbox left and stops
/// the server (asserting a clean exit).
pub fn with_server<F, Fut>(f: F)
where
    F: FnOnce(Arc<Server>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let server = Arc::new(Server::start());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(f(server.clone()));
    // Every sandbox still listed is killed.
    rt.block_on(async {
        let api = server.api();
        let p = api.list(Default::default());
        while p.has_next() {
            for s in p.next_items().await.expect("list for cleanup") {
                let _ = api.kill(&s.sandbox_id).await;
            }
        }
    });
    drop(rt);
    Arc::try_unwrap(server).ok().expect("server still shared").stop();
}
