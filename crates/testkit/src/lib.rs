//! Test support for the integration tests of several crates: starts the real `sandbank serve`
//! (`--listen 127.0.0.1:0`), reads its `listening on` line, keeps its stderr, and stops it with
//! SIGTERM, asserting a clean exit within 5 s as the server promises.

#![deny(unsafe_code)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Opening the engine builds the `base` template on first use.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The server promises to exit this soon after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// `<bin> serve --listen 127.0.0.1:0 --data-dir <dir> [--api-key <key>]`, with the environment
/// cleared of the variables that would override them and `RUST_LOG` defaulting to `log`.
pub fn serve_command(bin: &Path, data_dir: &Path, key: Option<&str>, log: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir);
    if let Some(k) = key {
        cmd.args(["--api-key", k]);
    }
    cmd.env_remove("SANDBANK_API_KEY").env_remove("SANDBANK_DATA_DIR");
    cmd.env("SANDBANK_IMAGES_DIR", images_dir());
    cmd.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| log.into()));
    cmd
}

/// The directory of base images the tests' servers and engines share (`SANDBANK_IMAGES_DIR`,
/// else the machine's cache): one image, built by the first of them, for all.
pub fn images_dir() -> PathBuf {
    std::env::var_os("SANDBANK_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/sandbank/images"))
}

/// A running `sandbank serve`.
#[derive(Debug)]
pub struct ServerProcess {
    pub addr: SocketAddr,
    pub child: Child,
    pub data_dir: PathBuf,
    /// Everything it wrote to stderr so far (also echoed to the test's stderr).
    pub stderr: Arc<Mutex<String>>,
    /// stdout after the `listening on` line: must stay empty.
    pub extra_stdout: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Spawns `cmd` (from [`serve_command`]) and waits for its `listening on` line; `Err` carries
    /// its exit status and stderr when it does not come up.
    pub fn spawn(mut cmd: Command, data_dir: &Path) -> Result<Self, String> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawning sandbank serve: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
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
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let extra_stdout = Arc::new(Mutex::new(Vec::new()));
        let extra = Arc::clone(&extra_stdout);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            for l in lines.map_while(Result::ok) {
                extra.lock().unwrap().push(l);
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => {
                let addr = line
                    .strip_prefix("listening on http://")
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    .ok_or_else(|| format!("first stdout line is not `listening on http://ADDR`: {line:?}"))?;
                assert_ne!(addr.port(), 0, "the real port, not 0");
                Ok(Self { addr, child, data_dir: data_dir.to_path_buf(), stderr, extra_stdout })
            }
            Ok(_) => {
                let status = child.wait().map_err(|e| e.to_string())?;
                std::thread::sleep(Duration::from_millis(100));
                Err(format!("server exited ({status}) before listening; stderr:\n{}", stderr.lock().unwrap()))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("server did not listen within {START_TIMEOUT:?}; stderr:\n{}", stderr.lock().unwrap()))
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("signal the server");
    }

    /// SIGTERM; asserts a clean exit within 5 s and nothing more on stdout.
    pub fn stop(mut self) -> ExitStatus {
        let t0 = Instant::now();
        self.signal(Signal::SIGTERM);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "exit status after SIGTERM: {status}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
                std::thread::sleep(Duration::from_millis(50));
                let extra = self.extra_stdout.lock().unwrap().clone();
                assert!(extra.is_empty(), "stdout after the listening line: {extra:?}");
                return status;
            }
            if t0.elapsed() > STOP_TIMEOUT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("server still running {STOP_TIMEOUT:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    /// A test that panicked before `stop` still leaves no server behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(Signal::SIGTERM);
            let t0 = Instant::now();
            while t0.elapsed() < STOP_TIMEOUT {
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
