//! The engine: creates, tracks and destroys sandboxes in one data directory.

use crate::cgroup::Cgroups;
use crate::guest::GuestConfig;
use crate::id;
use crate::layout::{Layout, SandboxDir};
use crate::template::{self, remove_all, Template};
use nix::fcntl::{Flock, FlockArg};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{oneshot, watch};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("template {0:?} not found")]
    TemplateNotFound(String),
    #[error("sandbox {0:?} not found")]
    SandboxNotFound(String),
    #[error("data directory {path} is in use by another sandbank serve (pid {pid})")]
    Locked { path: PathBuf, pid: String },
    #[error("sandbox failed to start: {0}")]
    StartFailed(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// Where the engine keeps its state, and the `sandbank` executable it starts as each guest.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub guest_exe: PathBuf,
}

/// Resource limits of one sandbox, as enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub pids: u32,
    /// Not enforced yet: the free space of the data directory's filesystem.
    pub disk_mb: u64,
}

#[derive(Clone, Debug)]
pub struct SandboxSpec {
    pub id: String,
    pub template: String,
    /// Environment variables every process in the sandbox gets.
    pub env_vars: BTreeMap<String, String>,
    pub limits: Limits,
}

/// A running sandbox.
#[derive(Clone, Debug)]
pub struct SandboxHandle {
    pub id: String,
    /// envd's unix socket, reachable from the host.
    pub envd_socket: PathBuf,
    /// Becomes `true` when the sandbox's PID 1 has exited (killed, or died on its own).
    pub exited: tokio::sync::watch::Receiver<bool>,
}

/// The engine of one data directory. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    layout: Layout,
    cgroups: Cgroups,
    templates: HashMap<String, Template>,
    default_limits: Limits,
    sandboxes: Arc<Mutex<HashMap<String, Running>>>,
    spawner: Spawner,
    /// Held for the engine's life: one server per data directory.
    _lock: Flock<fs::File>,
}

#[derive(Debug)]
struct Running {
    /// The guest's first process, our child: killing it takes PID 1 and the whole PID
    /// namespace with it.
    launcher: i32,
    exited: watch::Receiver<bool>,
}

/// How long a sandbox may take to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the processes of a killed sandbox may take to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

impl Engine {
    /// Takes the data directory's lock, removes what a crashed server left behind, prepares
    /// the templates and the cgroup parent.
    pub fn open(config: EngineConfig) -> Result<Self, EngineError> {
        let layout = Layout::new(&config.data_dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(layout.root())
            .map_err(io_ctx(format!("create data directory {}", layout.root().display())))?;
        layout.check_socket_room().map_err(EngineError::StartFailed)?;
        let lock = take_lock(&layout)?;

        let data_dir = fs::canonicalize(layout.root()).map_err(io_ctx("resolve the data directory".into()))?;
        let cgroup_name = format!("sandbank-{:012x}", hash(&data_dir) & 0xffff_ffff_ffff);
        let cgroups = Cgroups::setup(&cgroup_name).map_err(io_ctx("set up cgroups".into()))?;
        // What a crashed server left: processes in our cgroups, sandbox directories.
        cgroups.teardown(KILL_TIMEOUT).map_err(io_ctx("remove leftover cgroups".into()))?;
        let cgroups = Cgroups::setup(&cgroup_name).map_err(io_ctx("set up cgroups".into()))?;
        remove_all(&layout.sandboxes()).map_err(io_ctx("remove leftover sandboxes".into()))?;
        fs::create_dir_all(layout.sandboxes()).map_err(io_ctx("create the sandboxes directory".into()))?;
        fs::create_dir_all(layout.templates()).map_err(io_ctx("create the templates directory".into()))?;

        let base = template::build_base(&layout.template(template::BASE))
            .map_err(io_ctx("build the base template".into()))?;
        let templates = HashMap::from([(base.name.clone(), base)]);

        let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        let default_limits = Limits { cpu_count: cpus.min(2), memory_mb: 512, pids: 1024, disk_mb: 0 };
        Ok(Self {
            config,
            layout,
            cgroups,
            templates,
            default_limits,
            sandboxes: Arc::new(Mutex::new(HashMap::new())),
            spawner: Spawner::start(),
            _lock: lock,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    pub fn template_exists(&self, name: &str) -> bool {
        self.templates.contains_key(name)
    }

    /// The limits a sandbox gets when the request names none. The disk figure is the free space
    /// of the data directory's filesystem, which is all a sandbox can fill.
    pub fn default_limits(&self) -> Limits {
        let disk_mb = nix::sys::statvfs::statvfs(self.layout.root())
            .map(|s| s.blocks_available() as u64 * s.fragment_size() as u64 / (1024 * 1024))
            .unwrap_or(0);
        Limits { disk_mb, ..self.default_limits }
    }

    /// IDs of the sandboxes running now.
    pub fn running(&self) -> Vec<String> {
        self.sandboxes.lock().unwrap().keys().cloned().collect()
    }

    /// Starts a sandbox; returns once its envd socket accepts connections.
    pub async fn create(&self, spec: SandboxSpec) -> Result<SandboxHandle, EngineError> {
        if !id::is_valid(&spec.id) {
            return Err(EngineError::StartFailed(format!("invalid sandbox id {:?}", spec.id)));
        }
        let template = self.templates.get(&spec.template).ok_or_else(|| EngineError::TemplateNotFound(spec.template.clone()))?;
        let dir = self.layout.sandbox(&spec.id);
        let prepared = self.prepare(&spec, template, &dir);
        let config_path = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.remove_leftovers(&spec.id);
                return Err(e);
            }
        };

        let mut cmd = std::process::Command::new(&self.config.guest_exe);
        cmd.arg("guest")
            .arg("--config")
            .arg(&config_path)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls (setsid, prctl, unshare) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET;
                if libc::unshare(flags) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match self.spawner.spawn(cmd).await {
            Ok(c) => c,
            Err(e) => {
                self.remove_leftovers(&spec.id);
                return Err(EngineError::StartFailed(format!("start {}: {e}", self.config.guest_exe.display())));
            }
        };
        let launcher = child.id() as i32;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (exited_tx, exited_rx) = watch::channel(false);
        self.sandboxes
            .lock()
            .unwrap()
            .insert(spec.id.clone(), Running { launcher, exited: exited_rx.clone() });
        self.watch_exit(spec.id.clone(), child, exited_tx)?;

        match tokio::time::timeout(START_TIMEOUT, read_ready(stdout)).await {
            Ok(Ok(())) => Ok(SandboxHandle { id: spec.id, envd_socket: dir.envd_socket(), exited: exited_rx }),
            Ok(Err(reason)) => {
                self.kill(&spec.id).await.ok();
                Err(EngineError::StartFailed(reason))
            }
            Err(_) => {
                self.kill(&spec.id).await.ok();
                Err(EngineError::StartFailed(format!("not ready after {START_TIMEOUT:?}")))
            }
        }
    }

    /// Makes the sandbox's directories, cgroup and guest config; returns the config's path.
    fn prepare(&self, spec: &SandboxSpec, template: &Template, dir: &SandboxDir) -> Result<PathBuf, EngineError> {
        for d in [dir.upper_root(), dir.upper_usr(), dir.work_root(), dir.work_usr(), dir.rootfs()] {
            fs::create_dir_all(&d).map_err(io_ctx(format!("create {}", d.display())))?;
        }
        let cgroup_procs = self.cgroups.create(&spec.id, &spec.limits).map_err(io_ctx("create the cgroup".into()))?;
        let config = GuestConfig {
            sandbox_id: spec.id.clone(),
            envd_socket: dir.envd_socket(),
            env_vars: spec.env_vars.clone(),
            root_lowers: template.root_lowers.clone(),
            usr_lowers: template.usr_lowers.clone(),
            root_upper: dir.upper_root(),
            root_work: dir.work_root(),
            usr_upper: dir.upper_usr(),
            usr_work: dir.work_usr(),
            rootfs: dir.rootfs(),
            cgroup_procs,
        };
        let json = serde_json::to_vec(&config).expect("guest config serializes");
        fs::write(dir.config(), json).map_err(io_ctx("write the guest config".into()))?;
        Ok(dir.config())
    }

    /// Waits for the launcher to exit, then removes the sandbox's cgroup and directory and
    /// tells the watchers.
    fn watch_exit(&self, id: String, mut child: std::process::Child, exited: watch::Sender<bool>) -> Result<(), EngineError> {
        let pidfd = pidfd_open(child.id() as i32).map_err(io_ctx("pidfd_open".into()))?;
        let cgroups = self.cgroups.clone();
        let dir = self.layout.sandbox(&id);
        let sandboxes = Arc::clone(&self.sandboxes);
        tokio::spawn(async move {
            // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and the same for its life.
            if let Ok(fd) = unsafe { AsyncFd::register(pidfd) } {
                let _ = fd.readable().await;
            }
            let _ = child.wait();
            let id2 = id.clone();
            let cleaned = tokio::task::spawn_blocking(move || {
                let cg = cgroups.destroy(&id2, KILL_TIMEOUT);
                let files = remove_all(dir.path());
                cg.and(files)
            })
            .await;
            match cleaned {
                Ok(Ok(())) => tracing::debug!(sandbox = %id, "sandbox removed"),
                Ok(Err(e)) => tracing::error!(sandbox = %id, "cleaning up: {e}"),
                Err(e) => tracing::error!(sandbox = %id, "cleaning up: {e}"),
            }
            sandboxes.lock().unwrap().remove(&id);
            let _ = exited.send(true);
        });
        Ok(())
    }

    /// Best effort removal of what `prepare` made, when the guest never started.
    fn remove_leftovers(&self, id: &str) {
        let _ = self.cgroups.destroy(id, KILL_TIMEOUT);
        let _ = remove_all(self.layout.sandbox(id).path());
    }

    /// Kills a sandbox and removes everything it had: processes, cgroup, directories.
    /// `Ok(false)` when no such sandbox runs.
    pub async fn kill(&self, id: &str) -> Result<bool, EngineError> {
        let running = {
            let map = self.sandboxes.lock().unwrap();
            map.get(id).map(|r| (r.launcher, r.exited.clone()))
        };
        let Some((launcher, mut exited)) = running else { return Ok(false) };
        if !*exited.borrow() {
            // SAFETY: the launcher is our unreaped child (the exit watcher reaps it before it
            // marks the sandbox exited), so the pid cannot name another process.
            unsafe { libc::kill(launcher, libc::SIGKILL) };
        }
        let _ = exited.wait_for(|done| *done).await;
        Ok(true)
    }

    /// Kills every sandbox and removes the cgroup parent: the server is stopping.
    pub async fn shutdown(&self) {
        let ids = self.running();
        futures_util::future::join_all(ids.iter().map(|id| self.kill(id))).await;
        if let Err(e) = self.cgroups.teardown(KILL_TIMEOUT) {
            tracing::error!("removing cgroups: {e}");
        }
    }
}

fn io_ctx(context: String) -> impl FnOnce(io::Error) -> EngineError {
    move |source| EngineError::Io { context, source }
}

fn hash(path: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// One server per data directory: an exclusive `flock` on `<data>/lock`, which holds the pid
/// of its owner for the error message of the next one.
fn take_lock(layout: &Layout) -> Result<Flock<fs::File>, EngineError> {
    let path = layout.lock_file();
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_ctx(format!("open {}", path.display())))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(EngineError::Locked { path: layout.root().to_path_buf(), pid: pid.trim().to_string() });
        }
    };
    lock.set_len(0).map_err(io_ctx("truncate the lock file".into()))?;
    write!(lock, "{}", std::process::id()).map_err(io_ctx("write the lock file".into()))?;
    Ok(lock)
}

/// Reads the guest's report: `pid N`, then `ready` or `error <why>`.
async fn read_ready(stdout: std::process::ChildStdout) -> Result<(), String> {
    let fd = OwnedFd::from(stdout);
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).map_err(|e| format!("guest pipe: {e}"))?;
    let mut lines = BufReader::new(pipe).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if line == "ready" => return Ok(()),
            Ok(Some(line)) if line.starts_with("pid ") => continue,
            Ok(Some(line)) => return Err(line.strip_prefix("error ").unwrap_or(&line).to_string()),
            Ok(None) => return Err("the guest exited before it was ready (see the server log)".into()),
            Err(e) => return Err(format!("reading the guest's report: {e}")),
        }
    }
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Starts guests from one long-lived thread: a guest dies with the thread that forked it
/// (`PR_SET_PDEATHSIG`), and runtime threads may come and go.
#[derive(Debug)]
struct Spawner {
    tx: std::sync::mpsc::Sender<(std::process::Command, oneshot::Sender<io::Result<std::process::Child>>)>,
}

impl Spawner {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<(std::process::Command, oneshot::Sender<_>)>();
        std::thread::Builder::new()
            .name("sandbank-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the spawner thread");
        Self { tx }
    }

    async fn spawn(&self, cmd: std::process::Command) -> io::Result<std::process::Child> {
        let (reply, result) = oneshot::channel();
        self.tx.send((cmd, reply)).map_err(|_| io::Error::other("spawner thread is gone"))?;
        result.await.map_err(|_| io::Error::other("spawner thread is gone"))?
    }
}

impl Drop for Engine {
    /// Whatever the engine still holds goes with it: sandbox processes, cgroups, directories.
    fn drop(&mut self) {
        if let Err(e) = self.cgroups.teardown(KILL_TIMEOUT) {
            tracing::error!("removing cgroups: {e}");
        }
        let _ = remove_all(&self.layout.sandboxes());
    }
}
