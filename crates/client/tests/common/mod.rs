//! Starts a real `sandbank serve` (built beforehand with `cargo build -p sandbank-server`) on
//! 127.0.0.1:0 with a fresh data directory and a random API key; stops it with SIGTERM.
#![allow(dead_code)]

use sandbank_client::{Api, ConnectionConfig, ConnectionOpts, Sandbox, SandboxCreateOpts};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub url: String,
    pub key: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
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
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--api-key", &key])
            .env_remove("SANDBANK_API_KEY")
            .env_remove("SANDBANK_DATA_DIR")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning sandbank serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut err = child.stderr.take().unwrap();
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let s = String::from_utf8_lossy(&buf[..n]).to_string();
                    eprint!("{s}");
                    sink.lock().unwrap().push_str(&s);
                }
            });
        }
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not come up ({other:?}); stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line {line:?}"));
        Server {
            url: format!("http://{addr}"),
            key,
            child,
            stderr,
            _dir: dir,
        }
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
        Sandbox::create(self.config(), SandboxCreateOpts::default())
            .await
            .expect("create sandbox")
    }

    /// SIGTERM; asserts a clean exit within 10 s.
    pub fn stop(mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc_kill(pid, 15) };
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "exit after SIGTERM: {status}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
                return;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("server still running 10 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc_kill(self.child.id() as i32, 15) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
    Arc::try_unwrap(server)
        .ok()
        .expect("server still shared")
        .stop();
}
