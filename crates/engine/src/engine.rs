//! The engine: creates, tracks and destroys sandboxes in one data directory.

use crate::cgroup::Cgroups;
use crate::guest::GuestConfig;
use crate::id;
use crate::layout::{Layout, SandboxDir};
use crate::copy::{copy_tree, sync_dir, sync_filesystem};
use crate::store::{SnapshotRecord, Store};
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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
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
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    /// Deleting a snapshot that sandboxes were started from and still run.
    #[error("cannot delete template '{id}' because there are running sandboxes using it: {}", sandboxes.join(", "))]
    SnapshotInUse { id: String, sandboxes: Vec<String> },
    #[error("invalid snapshot name: {0}")]
    InvalidName(String),
    #[error("snapshot of sandbox {id:?} failed: {reason}")]
    SnapshotFailed { id: String, reason: String },
    /// A snapshot that did not fit: the data directory's filesystem is full (or over quota).
    #[error("snapshot of sandbox {id:?} failed: {reason}")]
    NoSpace { id: String, reason: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("snapshot catalog: {0}")]
    Catalog(#[from] rusqlite::Error),
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
    /// A template name, or a snapshot: its ID (with or without a `:tag`) or its name.
    pub template: String,
    /// Environment variables every process in the sandbox gets.
    pub env_vars: BTreeMap<String, String>,
    pub limits: Limits,
}

/// A running sandbox.
#[derive(Clone, Debug)]
pub struct SandboxHandle {
    pub id: String,
    /// The template's name, or the ID of the snapshot the sandbox started from.
    pub template_id: String,
    /// envd's unix socket, reachable from the host.
    pub envd_socket: PathBuf,
    /// Becomes `true` when the sandbox's PID 1 has exited (killed, or died on its own).
    pub exited: tokio::sync::watch::Receiver<bool>,
}

/// A snapshot as the engine reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// 20 characters of `[a-z0-9]` (the API adds the `:default` tag).
    pub id: String,
    pub names: Vec<String>,
    /// The sandbox it was taken from.
    pub sandbox_id: String,
    /// The snapshot that sandbox was started from, if any.
    pub parent_id: Option<String>,
    /// Unix time in nanoseconds.
    pub created_at: i64,
    /// Bytes of file data in the layer it added.
    pub size_bytes: u64,
}

impl From<SnapshotRecord> for SnapshotInfo {
    fn from(r: SnapshotRecord) -> Self {
        Self {
            id: r.id,
            names: r.name.into_iter().collect(),
            sandbox_id: r.origin_sandbox,
            parent_id: r.parent,
            created_at: r.created_at,
            size_bytes: r.size_bytes,
        }
    }
}

/// The engine of one data directory. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    layout: Layout,
    cgroups: Cgroups,
    templates: HashMap<String, Template>,
    default_limits: Limits,
    /// The snapshot catalog and the running sandboxes, under one lock: which layers are in use
    /// must be read and changed together.
    state: Arc<Mutex<State>>,
    spawner: Spawner,
    /// Held for the engine's life: one server per data directory.
    _lock: Flock<fs::File>,
}

#[derive(Debug)]
struct State {
    store: Store,
    sandboxes: HashMap<String, Running>,
    /// Layers moved into place whose record is not committed yet.
    publishing: std::collections::HashSet<String>,
}

#[derive(Debug)]
struct Running {
    /// The guest's first process, our child: killing it takes PID 1 and the whole PID
    /// namespace with it. `None` while it is being started.
    launcher: Option<i32>,
    exited: watch::Receiver<bool>,
    /// The snapshot it started from, and the layers under its own upper layer, topmost first.
    source: Option<String>,
    template: String,
    layers: Vec<String>,
    /// Serialises snapshots and the kill of this sandbox.
    busy: Arc<tokio::sync::Mutex<()>>,
}

/// What a sandbox starts from.
struct Source<'a> {
    template: &'a Template,
    snapshot: Option<SnapshotRecord>,
}

/// How long a sandbox may take to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the processes of a killed sandbox may take to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// The most snapshot layers a sandbox stacks; a snapshot that would make a longer chain is
/// flattened into one layer. (overlayfs allows 500 lower layers, and its mount options must fit
/// in one page.)
pub const MAX_CHAIN: usize = 16;

impl Engine {
    /// Takes the data directory's lock, removes what a crashed server left behind, prepares
    /// the templates and the cgroup parent, opens the snapshot catalog.
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
        let cgroup_name = cgroup_name(&data_dir);
        let cgroups = Cgroups::setup(&cgroup_name).map_err(io_ctx("set up cgroups".into()))?;
        // What a crashed server left: processes in our cgroups, sandbox directories, a layer
        // that was being written.
        cgroups.teardown(KILL_TIMEOUT).map_err(io_ctx("remove leftover cgroups".into()))?;
        let cgroups = Cgroups::setup(&cgroup_name).map_err(io_ctx("set up cgroups".into()))?;
        remove_all(&layout.sandboxes()).map_err(io_ctx("remove leftover sandboxes".into()))?;
        remove_all(&layout.staging()).map_err(io_ctx("remove an unfinished snapshot".into()))?;
        for dir in [layout.sandboxes(), layout.templates(), layout.layers()] {
            fs::create_dir_all(&dir).map_err(io_ctx(format!("create {}", dir.display())))?;
        }

        let base = template::build_base(&layout.template(template::BASE))
            .map_err(io_ctx("build the base template".into()))?;
        let templates = HashMap::from([(base.name.clone(), base)]);
        let store = Store::open(&layout.state_db())?;

        let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        let default_limits = Limits { cpu_count: cpus.min(2), memory_mb: 512, pids: 1024, disk_mb: 0 };
        let engine = Self {
            config,
            layout,
            cgroups,
            templates,
            default_limits,
            state: Arc::new(Mutex::new(State { store, sandboxes: HashMap::new(), publishing: Default::default() })),
            spawner: Spawner::start(),
            _lock: lock,
        };
        engine.collect_layers();
        Ok(engine)
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Whether `name` is a template or a snapshot a sandbox can start from.
    pub fn template_exists(&self, name: &str) -> bool {
        self.resolve(&self.state.lock().unwrap(), name).is_ok()
    }

    /// The limits a sandbox gets when the request names none. The disk figure is the free space
    /// of the data directory's filesystem, which is all a sandbox can fill.
    pub fn default_limits(&self) -> Limits {
        let disk_mb = nix::sys::statvfs::statvfs(self.layout.root())
            .map(|s| s.blocks_available() * s.fragment_size() / (1024 * 1024))
            .unwrap_or(0);
        Limits { disk_mb, ..self.default_limits }
    }

    /// IDs of the sandboxes running now.
    pub fn running(&self) -> Vec<String> {
        self.state.lock().unwrap().sandboxes.keys().cloned().collect()
    }

    fn resolve<'a>(&'a self, state: &State, name: &str) -> Result<Source<'a>, EngineError> {
        if let Some(template) = self.templates.get(name) {
            return Ok(Source { template, snapshot: None });
        }
        let untagged = name.rsplit_once(':').map_or(name, |(base, _tag)| base);
        let snapshot = state.store.get(untagged)?.ok_or_else(|| EngineError::TemplateNotFound(name.to_string()))?;
        let template = self.templates.get(&snapshot.template).ok_or_else(|| EngineError::TemplateNotFound(snapshot.template.clone()))?;
        Ok(Source { template, snapshot: Some(snapshot) })
    }

    /// Starts a sandbox; returns once its envd socket accepts connections.
    pub async fn create(&self, spec: SandboxSpec) -> Result<SandboxHandle, EngineError> {
        if !id::is_valid(&spec.id) {
            return Err(EngineError::StartFailed(format!("invalid sandbox id {:?}", spec.id)));
        }
        let dir = self.layout.sandbox(&spec.id);
        let (exited_tx, exited_rx) = watch::channel(false);
        // Resolve and register at once, so that the snapshot cannot be deleted in between.
        let (template, layers, template_id) = {
            let mut state = self.state.lock().unwrap();
            let source = self.resolve(&state, &spec.template)?;
            let layers = source.snapshot.as_ref().map(|s| s.layers.clone()).unwrap_or_default();
            let template_id = source.snapshot.as_ref().map_or_else(|| source.template.name.clone(), |s| s.id.clone());
            let template = source.template.clone();
            let running = Running {
                launcher: None,
                exited: exited_rx.clone(),
                source: source.snapshot.map(|s| s.id),
                template: template.name.clone(),
                layers: layers.clone(),
                busy: Arc::default(),
            };
            state.sandboxes.insert(spec.id.clone(), running);
            (template, layers, template_id)
        };
        let config_path = match self.prepare(&spec, &template, &layers, &dir) {
            Ok(p) => p,
            Err(e) => {
                self.forget(&spec.id);
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
                self.forget(&spec.id);
                return Err(EngineError::StartFailed(format!("start {}: {e}", self.config.guest_exe.display())));
            }
        };
        let launcher = child.id() as i32;
        let stdout = child.stdout.take().expect("stdout is piped");
        if let Some(r) = self.state.lock().unwrap().sandboxes.get_mut(&spec.id) {
            r.launcher = Some(launcher);
        }
        self.watch_exit(spec.id.clone(), child, exited_tx)?;

        let handle = SandboxHandle { id: spec.id.clone(), template_id, envd_socket: dir.envd_socket(), exited: exited_rx };
        match tokio::time::timeout(START_TIMEOUT, read_ready(stdout)).await {
            Ok(Ok(())) => Ok(handle),
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
    fn prepare(&self, spec: &SandboxSpec, template: &Template, layers: &[String], dir: &SandboxDir) -> Result<PathBuf, EngineError> {
        for d in [dir.upper_root(), dir.upper_usr(), dir.work_root(), dir.work_usr(), dir.rootfs()] {
            fs::create_dir_all(&d).map_err(io_ctx(format!("create {}", d.display())))?;
        }
        let cgroup_procs = self.cgroups.create(&spec.id, &spec.limits).map_err(io_ctx("create the cgroup".into()))?;
        let id = &spec.id;
        fs::write(dir.hostname(), format!("{id}\n")).map_err(io_ctx("write the hostname file".into()))?;
        let hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{id}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        fs::write(dir.hosts(), hosts).map_err(io_ctx("write the hosts file".into()))?;
        let snapshot_lowers = |part: &str| layers.iter().map(|l| self.layout.layer(l).join(part)).collect::<Vec<_>>();
        let config = GuestConfig {
            sandbox_id: spec.id.clone(),
            envd_socket: dir.envd_socket(),
            env_vars: spec.env_vars.clone(),
            root_lowers: [snapshot_lowers("root"), template.root_lowers.clone()].concat(),
            usr_lowers: [snapshot_lowers("usr"), template.usr_lowers.clone()].concat(),
            root_upper: dir.upper_root(),
            root_work: dir.work_root(),
            usr_upper: dir.upper_usr(),
            usr_work: dir.work_usr(),
            rootfs: dir.rootfs(),
            cgroup_procs,
            bind_files: vec![(dir.hostname(), "/etc/hostname".into()), (dir.hosts(), "/etc/hosts".into())],
        };
        let json = serde_json::to_vec(&config).expect("guest config serializes");
        fs::write(dir.config(), json).map_err(io_ctx("write the guest config".into()))?;
        Ok(dir.config())
    }

    /// Waits for the launcher to exit, then removes the sandbox's cgroup and directory, drops
    /// layers nothing needs any more and tells the watchers.
    fn watch_exit(&self, id: String, mut child: std::process::Child, exited: watch::Sender<bool>) -> Result<(), EngineError> {
        let pidfd = pidfd_open(child.id() as i32).map_err(io_ctx("pidfd_open".into()))?;
        let cgroups = self.cgroups.clone();
        let layout = self.layout.clone();
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and the same for its life.
            if let Ok(fd) = unsafe { AsyncFd::register(pidfd) } {
                let _ = fd.readable().await;
            }
            let _ = child.wait();
            let id2 = id.clone();
            let cleaned = tokio::task::spawn_blocking(move || {
                let cg = cgroups.destroy(&id2, KILL_TIMEOUT);
                let files = remove_all(layout.sandbox(&id2).path());
                state.lock().unwrap().sandboxes.remove(&id2);
                collect_layers(&layout, &state);
                cg.and(files)
            })
            .await;
            match cleaned {
                Ok(Ok(())) => tracing::debug!(sandbox = %id, "sandbox removed"),
                Ok(Err(e)) => tracing::error!(sandbox = %id, "cleaning up: {e}"),
                Err(e) => tracing::error!(sandbox = %id, "cleaning up: {e}"),
            }
            let _ = exited.send(true);
        });
        Ok(())
    }

    /// Undoes a registration whose guest never started.
    fn forget(&self, id: &str) {
        let _ = self.cgroups.destroy(id, KILL_TIMEOUT);
        let _ = remove_all(self.layout.sandbox(id).path());
        self.state.lock().unwrap().sandboxes.remove(id);
    }

    /// Kills a sandbox and removes everything it had: processes, cgroup, directories.
    /// `Ok(false)` when no such sandbox runs. Waits for a snapshot of it in progress.
    pub async fn kill(&self, id: &str) -> Result<bool, EngineError> {
        let Some(busy) = self.state.lock().unwrap().sandboxes.get(id).map(|r| Arc::clone(&r.busy)) else {
            return Ok(false);
        };
        let _turn = busy.lock().await;
        loop {
            let running = {
                let state = self.state.lock().unwrap();
                state.sandboxes.get(id).map(|r| (r.launcher, r.exited.clone()))
            };
            let Some((launcher, mut exited)) = running else { return Ok(true) };
            let Some(launcher) = launcher else {
                // Still being started: its launcher pid is moments away.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            if !*exited.borrow() {
                // SAFETY: the launcher is our unreaped child (the exit watcher reaps it before it
                // marks the sandbox exited), so the pid cannot name another process.
                unsafe { libc::kill(launcher, libc::SIGKILL) };
            }
            let _ = exited.wait_for(|done| *done).await;
            return Ok(true);
        }
    }

    /// Kills every sandbox and removes the cgroup parent: the server is stopping.
    pub async fn shutdown(&self) {
        let ids = self.running();
        futures_util::future::join_all(ids.iter().map(|id| self.kill(id))).await;
        if let Err(e) = self.cgroups.teardown(KILL_TIMEOUT) {
            tracing::error!("removing cgroups: {e}");
        }
    }

    /// Captures a running sandbox's filesystem as a new snapshot. The sandbox is frozen only
    /// while its upper layers are copied, then carries on.
    pub async fn snapshot(&self, sandbox_id: &str, name: Option<String>) -> Result<SnapshotInfo, EngineError> {
        if let Some(name) = name.as_deref().filter(|n| self.templates.contains_key(*n)) {
            // Templates resolve first: the snapshot could never be started or deleted by that name.
            return Err(EngineError::InvalidName(format!("{name:?}: a template has that name")));
        }
        let Some(busy) = self.state.lock().unwrap().sandboxes.get(sandbox_id).map(|r| Arc::clone(&r.busy)) else {
            return Err(EngineError::SandboxNotFound(sandbox_id.to_string()));
        };
        let _turn = busy.lock().await;
        let (source, template, base_layers) = {
            let state = self.state.lock().unwrap();
            let r = state.sandboxes.get(sandbox_id).ok_or_else(|| EngineError::SandboxNotFound(sandbox_id.to_string()))?;
            (r.source.clone(), r.template.clone(), r.layers.clone())
        };
        let id = id::new_id();
        let layout = self.layout.clone();
        let cgroups = self.cgroups.clone();
        let sandbox = sandbox_id.to_string();
        let staged = {
            let id = id.clone();
            tokio::task::spawn_blocking(move || stage_layer(&layout, &cgroups, &sandbox, &id, &base_layers))
                .await
                .map_err(|e| EngineError::SnapshotFailed { id: sandbox_id.to_string(), reason: e.to_string() })?
        };
        let (layers, size_bytes) = staged.map_err(|e| {
            let _ = remove_all(&self.layout.staging().join(&id));
            let (id, reason) = (sandbox_id.to_string(), e.to_string());
            // Told apart so that the API can say 507, as envd does for a file that does not fit.
            if matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) {
                EngineError::NoSpace { id, reason }
            } else {
                EngineError::SnapshotFailed { id, reason }
            }
        })?;
        let created_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
        let record = SnapshotRecord {
            id: id.clone(),
            name,
            origin_sandbox: sandbox_id.to_string(),
            parent: source,
            template,
            layers,
            size_bytes,
            created_at,
        };
        // Publish: the layer directory first, then its record. Layer collection skips layers being
        // published, so it never removes one whose record is a moment away.
        self.state.lock().unwrap().publishing.insert(id.clone());
        let (layout, state) = (self.layout.clone(), Arc::clone(&self.state));
        let published = tokio::task::spawn_blocking(move || publish(&layout, &state, &record).map(|()| record))
            .await
            .map_err(|e| EngineError::SnapshotFailed { id: sandbox_id.to_string(), reason: e.to_string() })?;
        self.state.lock().unwrap().publishing.remove(&id);
        let record = published.inspect_err(|_| {
            let _ = remove_all(&self.layout.layer(&id));
        })?;
        Ok(record.into())
    }

    /// A snapshot by ID (with or without a `:tag`) or name.
    pub fn snapshot_info(&self, id_or_name: &str) -> Result<Option<SnapshotInfo>, EngineError> {
        let untagged = id_or_name.rsplit_once(':').map_or(id_or_name, |(base, _)| base);
        Ok(self.state.lock().unwrap().store.get(untagged)?.map(Into::into))
    }

    /// Snapshots newest first, optionally only those of one sandbox; `after` is the
    /// (created_at, id) of the previous page's last item.
    pub fn list_snapshots(&self, sandbox_id: Option<&str>, after: Option<(i64, &str)>, limit: u32) -> Result<Vec<SnapshotInfo>, EngineError> {
        let state = self.state.lock().unwrap();
        Ok(state.store.list(sandbox_id, after, limit)?.into_iter().map(Into::into).collect())
    }

    /// Deletes a snapshot (by ID with or without a tag, or by name). `Ok(false)` when there is
    /// no such snapshot; an error while sandboxes started from it still run. Its layers go when
    /// nothing else needs them.
    pub fn delete_snapshot(&self, id_or_name: &str) -> Result<bool, EngineError> {
        let untagged = id_or_name.rsplit_once(':').map_or(id_or_name, |(base, _)| base);
        let mut state = self.state.lock().unwrap();
        let Some(record) = state.store.get(untagged)? else { return Ok(false) };
        let mut users: Vec<String> =
            state.sandboxes.iter().filter(|(_, r)| r.source.as_deref() == Some(&record.id)).map(|(id, _)| id.clone()).collect();
        if !users.is_empty() {
            users.sort();
            return Err(EngineError::SnapshotInUse { id: record.id, sandboxes: users });
        }
        state.store.delete(&record.id)?;
        drop(state);
        collect_layers(&self.layout, &self.state);
        Ok(true)
    }

    /// Removes every layer that no snapshot and no sandbox needs.
    fn collect_layers(&self) {
        collect_layers(&self.layout, &self.state);
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

/// Copies the sandbox's upper layers into `<staging>/<id>` with the sandbox frozen, and makes
/// them durable. Returns the new chain (topmost first) and the bytes copied.
fn stage_layer(layout: &Layout, cgroups: &Cgroups, sandbox: &str, id: &str, base_layers: &[String]) -> io::Result<(Vec<String>, u64)> {
    let staging = layout.staging().join(id);
    fs::create_dir_all(&staging)?;
    let dir = layout.sandbox(sandbox);
    if let Err(e) = cgroups.set_frozen(sandbox, true) {
        // Part of it may be frozen already: never leave it so.
        let _ = cgroups.set_frozen(sandbox, false);
        return Err(e);
    }
    let started = Instant::now();
    let copied = copy_tree(&dir.upper_root(), &staging.join("root")).and_then(|a| {
        copy_tree(&dir.upper_usr(), &staging.join("usr")).map(|b| (a.files + b.files, a.bytes + b.bytes))
    });
    let frozen_for = started.elapsed();
    let thawed = cgroups.set_frozen(sandbox, false);
    tracing::info!(sandbox, snapshot = id, frozen_ms = frozen_for.as_secs_f64() * 1000.0, "sandbox frozen while its layer was copied");
    let (files, bytes) = copied?;
    thawed?;
    tracing::debug!(snapshot = id, files, bytes, "layer copied");

    let mut chain = vec![id.to_string()];
    chain.extend(base_layers.iter().cloned());
    if chain.len() > MAX_CHAIN {
        flatten(layout, &staging, base_layers)?;
        chain.truncate(1);
    }
    sync_filesystem(&staging)?;
    Ok((chain, bytes))
}

/// Moves a staged layer into the layer store and commits its record (blocking: a rename, an
/// fsync and a SQLite commit).
fn publish(layout: &Layout, state: &Mutex<State>, record: &SnapshotRecord) -> Result<(), EngineError> {
    fs::rename(layout.staging().join(&record.id), layout.layer(&record.id)).map_err(io_ctx("publish the layer".into()))?;
    sync_dir(&layout.layers()).map_err(io_ctx("sync the layers directory".into()))?;
    state.lock().unwrap().store.insert(record)?;
    Ok(())
}

/// Folds `below` (topmost first) into the staged layer, so that it alone stands for the whole
/// chain over the template.
fn flatten(layout: &Layout, staging: &Path, below: &[String]) -> io::Result<()> {
    let merged = staging.with_extension("merged");
    remove_all(&merged)?;
    let bottom = layout.layer(below.last().expect("a chain to flatten"));
    copy_tree(&bottom, &merged)?;
    for layer in below.iter().rev().skip(1) {
        crate::merge::apply_layer(&layout.layer(layer), &merged)?;
    }
    crate::merge::apply_layer(staging, &merged)?;
    remove_all(staging)?;
    fs::rename(&merged, staging)
}

/// Removes the layer directories that neither a snapshot nor a running sandbox needs.
fn collect_layers(layout: &Layout, state: &Mutex<State>) {
    let doomed: Vec<PathBuf> = {
        let state = state.lock().unwrap();
        let mut keep = match state.store.referenced_layers() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("reading the snapshot catalog: {e}");
                return;
            }
        };
        keep.extend(state.sandboxes.values().flat_map(|r| r.layers.iter().cloned()));
        keep.extend(state.publishing.iter().cloned());
        let Ok(entries) = fs::read_dir(layout.layers()) else { return };
        entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| !n.starts_with('.') && !keep.contains(n)))
            .map(|e| e.path())
            .collect()
    };
    for dir in doomed {
        tracing::debug!("removing layer {}", dir.display());
        if let Err(e) = remove_all(&dir) {
            tracing::error!("removing layer {}: {e}", dir.display());
        }
    }
}

fn io_ctx(context: String) -> impl FnOnce(io::Error) -> EngineError {
    move |source| EngineError::Io { context, source }
}

/// This server's cgroup parent: `sandbank-` and 48 bits of the FNV-1a hash of the data
/// directory's canonical path, so that a restarted server finds what a crashed one left, and
/// tests can tell this server's groups from another's.
pub fn cgroup_name(data_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data_dir.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sandbank-{:012x}", h & 0xffff_ffff_ffff)
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

#[cfg(test)]
mod tests {
    #[test]
    fn cgroup_names_are_stable_across_builds_and_languages() {
        // The JS tests compute the same name (__test__/helpers.mjs `serverCgroupName`).
        assert_eq!(super::cgroup_name(std::path::Path::new("/tmp")), "sandbank-e39c4bcebddb");
    }
}
