//! The engine: creates, tracks and destroys sandboxes in one data directory.

use crate::cgroup::Cgroups;
use crate::copy::{copy_tree, sync_dir, sync_filesystem};
use crate::disk;
use crate::egress::{self, Egress};
use crate::guest::GuestConfig;
use crate::guest_exe::GuestExe;
use crate::id;
use crate::layout::{Layout, SandboxDir};
use crate::net::{self, Pasta};
use crate::netpool::{NetPool, ReadyNet};
use crate::spawner::Spawner;
use crate::store::{SnapshotRecord, Store};
use crate::template::{self, remove_all, Template};
use crate::userns::IdMap;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
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
use tokio::sync::watch;

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
    #[error("sandbox {0:?} is already paused")]
    AlreadyPaused(String),
    /// Egress rules that could not be put in force (no nftables, or nft refused them).
    #[error("egress rules of sandbox {id:?}: {reason}")]
    Egress { id: String, reason: String },
    /// A user namespace was asked for and this machine cannot give sandboxes one.
    #[error("sandboxes cannot have a user namespace on this machine ({0}); without one, root in a sandbox is the host's root")]
    NoUserNamespace(String),
}

/// Where the engine keeps its state, and the `sandbank` executable it starts as each guest.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub guest_exe: PathBuf,
    /// Each sandbox gets its own filesystem of this many MB for what it writes (see [`crate::disk`]);
    /// `None`: it writes to the data directory's filesystem.
    pub disk_limit_mb: Option<u64>,
    /// The `pasta` executable that gives sandboxes outbound network ([`net::find_pasta`]);
    /// `None`: sandboxes get loopback only.
    pub pasta: Option<PathBuf>,
    /// Run each sandbox in a user namespace, its root an unprivileged host user
    /// ([`crate::userns`]): checked at open, which fails with [`EngineError::NoUserNamespace`]
    /// where this machine cannot. `false` only when asked for: root inside is the host's root.
    pub user_namespace: bool,
}

/// Resource limits of one sandbox, as enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub pids: u32,
    /// The disk limit when the engine has one, else the free space of the data directory's
    /// filesystem.
    pub disk_mb: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub id: String,
    /// A template name, or a snapshot: its ID (with or without a `:tag`) or its name.
    pub template: String,
    /// Environment variables every process in the sandbox gets.
    pub env_vars: BTreeMap<String, String>,
    pub limits: Limits,
    /// Outbound network through pasta. `None` (not asked): yes when pasta is installed, else
    /// loopback only; `Some(true)` without pasta is an error.
    pub allow_internet_access: Option<bool>,
    /// Where its processes may connect to (in force from its start, and again after a restart).
    #[serde(default)]
    pub egress: Egress,
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
    /// Whether it has outbound network.
    pub internet: bool,
}

/// How [`Engine::resume`] brought a paused sandbox back.
#[derive(Debug)]
pub enum Resumed {
    /// Thawed: its processes carry on where they stopped.
    Thawed,
    /// Started again on its files: it was paused when the server stopped, and processes do not
    /// outlive the server. The handle is the new guest's.
    Restarted(SandboxHandle),
}

/// A paused sandbox, as the catalog keeps it so that it outlives the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PausedRecord {
    spec: SandboxSpec,
    /// The template at the bottom of its layers.
    template: String,
    /// The snapshot it started from, and the layers under its own upper layer, topmost first.
    source: Option<String>,
    layers: Vec<String>,
    /// What it reports as its template: the template's name or the snapshot's ID.
    template_id: String,
    /// What the API keeps of it; opaque to the engine.
    api: String,
}

/// What [`Engine::usage`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxUsage {
    /// CPU time since the sandbox started, in nanoseconds.
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// The page cache charged to it (E2B's `memCache`).
    pub memory_cache_bytes: u64,
    /// Space the files the sandbox wrote take (its own layer; the layers under it are shared).
    pub disk_bytes: u64,
}

/// Bytes allocated to the files under `dir` (not following symlinks; a hard-linked file counts
/// once per link, an upper bound).
fn disk_usage(dir: &Path) -> u64 {
    // The sandbox may be running: a tree it may be changing, walked without following symlinks.
    crate::tree::disk_usage(dir)
}

/// A paused sandbox as [`Engine::paused`] lists it.
#[derive(Clone, Debug)]
pub struct PausedSandbox {
    pub id: String,
    /// What the API stored with [`Engine::pause`].
    pub api: String,
    pub envd_socket: PathBuf,
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
    /// What guests are started from (see [`GuestExe`]).
    guest_exe: GuestExe,
    /// Networks made ahead of time for sandboxes with internet access (with pasta only).
    net_pool: Option<NetPool>,
    /// The id mapping of sandboxes' user namespaces; `None`: they have none.
    userns: Option<IdMap>,
    /// Held for the engine's life: one server per data directory.
    _lock: Flock<fs::File>,
}

#[derive(Debug)]
struct State {
    store: Store,
    sandboxes: HashMap<String, Running>,
    /// Layers moved into place whose record is not committed yet.
    publishing: std::collections::HashSet<String>,
    /// Paused sandboxes, as in the catalog: frozen ones (also in `sandboxes`) and, after a
    /// restart, dormant ones (only files).
    paused: HashMap<String, PausedRecord>,
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
    template_id: String,
    spec: SandboxSpec,
    /// Serialises snapshots, pause, resume and the kill of this sandbox.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// Its network helper, outside its cgroup; killed when this is dropped.
    net: Option<Pasta>,
}

/// What a sandbox is started on: its template and the snapshot layers over it.
struct Launch {
    template: Template,
    source: Option<String>,
    layers: Vec<String>,
    template_id: String,
}

/// A sandbox registered as running, about to be started.
struct Registered {
    template: Template,
    layers: Vec<String>,
    template_id: String,
    exited_tx: watch::Sender<bool>,
    exited_rx: watch::Receiver<bool>,
}

/// Registers a sandbox as running (its launcher pid comes once it is started).
fn register(state: &mut State, spec: &SandboxSpec, launch: Launch) -> Registered {
    let (exited_tx, exited_rx) = watch::channel(false);
    let Launch { template, source, layers, template_id } = launch;
    let running = Running {
        launcher: None,
        exited: exited_rx.clone(),
        source,
        template: template.name.clone(),
        layers: layers.clone(),
        template_id: template_id.clone(),
        spec: spec.clone(),
        busy: Arc::default(),
        net: None,
    };
    state.sandboxes.insert(spec.id.clone(), running);
    Registered { template, layers, template_id, exited_tx, exited_rx }
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
        let guest_exe = GuestExe::open(&config.guest_exe).map_err(EngineError::StartFailed)?;
        let userns = match config.user_namespace {
            true => Some(
                crate::userns::check(&guest_exe.exec_path(), &layout.userns_probe())
                    .map_err(EngineError::NoUserNamespace)?,
            ),
            false => None,
        };

        let data_dir = fs::canonicalize(layout.root()).map_err(io_ctx("resolve the data directory".into()))?;
        let cgroup_name = cgroup_name(&data_dir);
        let cgroups = Cgroups::setup(&cgroup_name).map_err(io_ctx("set up cgroups".into()))?;
        // What a crashed server left: processes in our cgroups, sandbox directories, a layer
        // that was being written.
        cgroups.teardown(KILL_TIMEOUT).map_err(io_ctx("remove leftover cgroups".into()))?;
        let cgroups = Cgroups::setup(&cgroup_name).map_err(io_ctx("set up cgroups".into()))?;
        // And the groups of crashed servers on other data directories, which nothing else removes.
        crate::cgroup::remove_stale_parents(&cgroup_name);
        disk::unmount_all_under(&layout.sandboxes()).map_err(io_ctx("unmount leftover sandbox disks".into()))?;
        remove_or_quarantine(&layout, &layout.staging());
        for dir in [layout.sandboxes(), layout.templates(), layout.layers()] {
            fs::create_dir_all(&dir).map_err(io_ctx(format!("create {}", dir.display())))?;
        }

        let base =
            template::build_base(&layout.template(template::BASE)).map_err(io_ctx("build the base template".into()))?;
        let templates = HashMap::from([(base.name.clone(), base)]);
        let mut store = Store::open(&layout.state_db())?;
        let paused = load_paused(&layout, &mut store)?;
        remove_sandbox_dirs(&layout, &paused).map_err(io_ctx("read the sandboxes directory".into()))?;
        report_quarantine(&layout);
        // The disks of paused sandboxes (those that had one) are mounted again: their files are
        // read for snapshots and metrics, and a resume starts on them.
        for id in paused.keys() {
            let dir = layout.sandbox(id);
            if dir.disk_image().exists() {
                disk::mount_image(&dir.disk_image(), dir.path())
                    .map_err(io_ctx(format!("mount the disk of paused sandbox {id}")))?;
            }
        }
        if let Some(mb) = config.disk_limit_mb {
            disk::prepare_image(&layout.empty_disk(mb), mb).map_err(io_ctx("prepare the sandbox disk image".into()))?;
        }

        let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        let default_limits = Limits { cpu_count: cpus.min(2), memory_mb: 512, pids: 1024, disk_mb: 0 };
        let spawner = Spawner::start();
        let net_pool =
            config.pasta.clone().map(|pasta| NetPool::new(pasta, guest_exe.clone(), userns, spawner.clone()));
        let engine = Self {
            config,
            layout,
            cgroups,
            templates,
            default_limits,
            state: Arc::new(Mutex::new(State {
                store,
                sandboxes: HashMap::new(),
                publishing: Default::default(),
                paused,
            })),
            spawner,
            guest_exe,
            net_pool,
            userns,
            _lock: lock,
        };
        engine.collect_layers();
        Ok(engine)
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// How sandboxes' ids map to the host's; `None`: sandboxes have no user namespace (the
    /// server was told so), and root inside is the host's root.
    pub fn user_namespace(&self) -> Option<IdMap> {
        self.userns
    }

    /// Starts making a network ahead of time for the next sandbox with internet access (see
    /// [`crate::netpool`]), if there is pasta and none is ready. Needs a tokio runtime.
    pub fn prepare_network(&self) {
        if let Some(pool) = &self.net_pool {
            pool.refill();
        }
    }

    /// How many networks made ahead of time are ready.
    pub fn networks_ready(&self) -> usize {
        self.net_pool.as_ref().map_or(0, NetPool::ready)
    }

    /// Whether `name` is a template or a snapshot a sandbox can start from.
    pub fn template_exists(&self, name: &str) -> bool {
        self.resolve(&self.state.lock().unwrap(), name).is_ok()
    }

    /// The limits a sandbox gets when the request names none. The disk figure is the free space
    /// of the data directory's filesystem, which is all a sandbox can fill.
    pub fn default_limits(&self) -> Limits {
        if let Some(disk_mb) = self.config.disk_limit_mb {
            return Limits { disk_mb, ..self.default_limits };
        }
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
        let template = self
            .templates
            .get(&snapshot.template)
            .ok_or_else(|| EngineError::TemplateNotFound(snapshot.template.clone()))?;
        Ok(Source { template, snapshot: Some(snapshot) })
    }

    /// Starts a sandbox; returns once its envd socket accepts connections.
    pub async fn create(&self, spec: SandboxSpec) -> Result<SandboxHandle, EngineError> {
        if !id::is_valid(&spec.id) {
            return Err(EngineError::StartFailed(format!("invalid sandbox id {:?}", spec.id)));
        }
        // Resolve and register at once, so that the snapshot cannot be deleted in between.
        let launch = {
            let mut state = self.state.lock().unwrap();
            if state.sandboxes.contains_key(&spec.id) || state.paused.contains_key(&spec.id) {
                return Err(EngineError::StartFailed(format!("sandbox id {:?} is taken", spec.id)));
            }
            let source = self.resolve(&state, &spec.template)?;
            let launch = Launch {
                template: source.template.clone(),
                layers: source.snapshot.as_ref().map(|s| s.layers.clone()).unwrap_or_default(),
                template_id: source.snapshot.as_ref().map_or_else(|| source.template.name.clone(), |s| s.id.clone()),
                source: source.snapshot.map(|s| s.id),
            };
            register(&mut state, &spec, launch)
        };
        self.start(spec, launch).await
    }

    /// Prepares a registered sandbox and starts its guest; returns once its envd socket accepts
    /// connections (and its network is up).
    async fn start(&self, spec: SandboxSpec, launch: Registered) -> Result<SandboxHandle, EngineError> {
        let dir = self.layout.sandbox(&spec.id);
        let Registered { template, layers, template_id, exited_tx, exited_rx } = launch;
        // The SDKs always ask for internet access; a host without pasta gives loopback only
        // (said at start, by `doctor`, and in the sandbox's `allowInternetAccess`).
        let internet = spec.allow_internet_access != Some(false) && self.config.pasta.is_some();
        if spec.allow_internet_access == Some(true) && !internet {
            tracing::warn!(sandbox = %spec.id, "internet access asked for, but there is no pasta: loopback only");
        }
        // A network made ahead of time, when one is ready: the sandbox joins its namespaces.
        let ready_net = if internet { self.net_pool.as_ref().and_then(NetPool::take) } else { None };
        let (guest_config, cgroup_procs) =
            match self.prepare(&spec, &template, &layers, &dir, internet, ready_net.as_ref().map(ReadyNet::holder_pid))
            {
                Ok(prepared) => prepared,
                Err(e) => {
                    self.forget(&spec.id);
                    return Err(e);
                }
            };

        let mut cmd = self.guest_exe.command();
        // The config goes on stdin: as an argument, its host paths would show in PID 1's
        // /proc/1/cmdline.
        cmd.arg("guest")
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls (setsid, prctl, unshare, close_range) between fork
        // and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                // No descriptor the server inherited (a shell's redirections, a parent's pipes)
                // goes into the sandbox: only stdio survives the exec. (Kernels before 5.11 lack
                // the flag; then inherited descriptors pass, as before.)
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Its own mount namespace, for the sandbox's root; PID 1's namespaces are the
                // guest's to make (see `guest`).
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match self.spawner.spawn(cmd).await {
            Ok(c) => c,
            Err(e) => {
                self.forget(&spec.id);
                return Err(EngineError::StartFailed(format!("start {}: {e}", self.guest_exe.host_path().display())));
            }
        };
        let launcher = child.id() as i32;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take().expect("stdin is piped");
        if let Some(r) = self.state.lock().unwrap().sandboxes.get_mut(&spec.id) {
            r.launcher = Some(launcher);
        }
        self.watch_exit(spec.id.clone(), child, exited_tx)?;

        let handle = SandboxHandle {
            id: spec.id.clone(),
            template_id,
            envd_socket: dir.envd_socket(),
            exited: exited_rx,
            internet,
        };
        // The guest is put in the sandbox's cgroup from here, while it sets up (the first write
        // to a cgroup takes a few ms in the kernel); it waits for `joined` on its stdin before it
        // starts PID 1, which is born in the cgroup.
        let joined = async move {
            let mut stdin = stdin;
            tokio::task::spawn_blocking(move || {
                // A guest that is gone already (ESRCH, EPIPE) says why on stdout: that is the error.
                let gone =
                    |e: &io::Error| e.raw_os_error() == Some(libc::ESRCH) || e.kind() == io::ErrorKind::BrokenPipe;
                match stdin.write_all(&guest_config) {
                    Err(e) if gone(&e) => return Ok(()),
                    Err(e) => return Err(format!("give the guest its config: {e}")),
                    Ok(()) => {}
                }
                for procs in &cgroup_procs {
                    match fs::write(procs, launcher.to_string()) {
                        Err(e) if gone(&e) => return Ok(()),
                        Err(e) => return Err(format!("put the guest in cgroup {}: {e}", procs.display())),
                        Ok(()) => {}
                    }
                }
                match stdin.write_all(b"joined\n") {
                    Err(e) if !gone(&e) => Err(format!("tell the guest it is in its cgroup: {e}")),
                    _ => Ok(()),
                }
            })
            .await
            .map_err(|e| e.to_string())?
        };
        let started = async {
            let mut report = GuestReport::new(stdout)?;
            report.expect("net").await?;
            // The network is set up (through the launcher, which is in the sandbox's network
            // namespace now) while the guest sets up the rest, and is there before it is ready.
            let network = async {
                match (ready_net, self.config.pasta.as_deref().filter(|_| internet)) {
                    // Joined (the guest said `net`): the namespaces are the sandbox's now.
                    (Some(ready), _) => Ok(Some(ready.into_pasta())),
                    (None, Some(pasta)) => {
                        Pasta::start(pasta, launcher, &spec.id, |cmd| self.spawner.spawn(cmd)).await.map(Some)
                    }
                    (None, None) => Ok(None),
                }
            };
            // Its egress rules are in force before it is ready (applied in its network namespace).
            let rules = async {
                if spec.egress.is_open() {
                    return Ok(());
                }
                let (id, rules) = (spec.id.clone(), spec.egress.clone());
                tokio::task::spawn_blocking(move || apply_egress(&id, launcher, &rules))
                    .await
                    .map_err(|e| format!("egress rules: {e}"))?
                    .map_err(|e| e.to_string())
            };
            tokio::try_join!(report.expect("ready"), network, rules).map(|(ready, pasta, ())| (ready, pasta))
        };
        let started = tokio::time::timeout(START_TIMEOUT, async {
            tokio::try_join!(joined, started).map(|((), started)| started)
        })
        .await;
        // The next network is made now that this sandbox has started (see `netpool`).
        if internet {
            self.prepare_network();
        }
        match started {
            Ok(Ok(((), pasta))) => {
                // Gone already (killed meanwhile): its pasta goes now, outside the lock.
                let _orphan = match self.state.lock().unwrap().sandboxes.get_mut(&spec.id) {
                    Some(r) => std::mem::replace(&mut r.net, pasta),
                    None => pasta,
                };
                Ok(handle)
            }
            Ok(Err(reason)) => {
                self.stop(&spec.id, false).await;
                Err(EngineError::StartFailed(reason))
            }
            Err(_) => {
                self.stop(&spec.id, false).await;
                Err(EngineError::StartFailed(format!("not ready after {START_TIMEOUT:?}")))
            }
        }
    }

    /// Makes the sandbox's directories, cgroup and guest config; returns the config (one line of
    /// JSON, for the guest's stdin) and the cgroup's `cgroup.procs` files.
    fn prepare(
        &self,
        spec: &SandboxSpec,
        template: &Template,
        layers: &[String],
        dir: &SandboxDir,
        internet: bool,
        namespaces_of: Option<i32>,
    ) -> Result<(Vec<u8>, Vec<PathBuf>), EngineError> {
        // A paused sandbox started again already has its files (and its disk, mounted at start).
        let resumed = self.state.lock().unwrap().paused.contains_key(&spec.id);
        if let (Some(mb), false) = (self.config.disk_limit_mb, resumed) {
            fs::create_dir_all(dir.path()).map_err(io_ctx(format!("create {}", dir.path().display())))?;
            disk::attach(&self.layout.empty_disk(mb), &dir.disk_image(), dir.path())
                .map_err(io_ctx("attach the sandbox's disk".into()))?;
        }
        for d in [dir.upper_root(), dir.upper_usr(), dir.work_root(), dir.work_usr(), dir.rootfs(), dir.idmapped()] {
            fs::create_dir_all(&d).map_err(io_ctx(format!("create {}", d.display())))?;
        }
        let cgroup_procs = self.cgroups.create(&spec.id, &spec.limits).map_err(io_ctx("create the cgroup".into()))?;
        let id = &spec.id;
        fs::write(dir.hostname(), format!("{id}\n")).map_err(io_ctx("write the hostname file".into()))?;
        let hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{id}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        fs::write(dir.hosts(), hosts).map_err(io_ctx("write the hosts file".into()))?;
        let mut bind_files = vec![(dir.hostname(), "/etc/hostname".into()), (dir.hosts(), "/etc/hosts".into())];
        if internet {
            let resolv = net::host_resolv_conf().unwrap_or_else(|| {
                tracing::warn!(sandbox = %id, "the host's resolv.conf names no nameserver a sandbox can reach: no DNS inside");
                String::new()
            });
            fs::write(dir.resolv_conf(), resolv).map_err(io_ctx("write the resolv.conf file".into()))?;
            bind_files.push((dir.resolv_conf(), "/etc/resolv.conf".into()));
        }
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
            bind_files,
            sandbox_dir: dir.path().to_path_buf(),
            userns: self.userns,
            namespaces_of,
        };
        let mut json = serde_json::to_vec(&config).expect("guest config serializes");
        json.push(b'\n');
        Ok((json, cgroup_procs))
    }

    /// Waits for the launcher to exit, then removes the sandbox's cgroup and directory, drops
    /// layers nothing needs any more and tells the watchers.
    fn watch_exit(
        &self,
        id: String,
        mut child: std::process::Child,
        exited: watch::Sender<bool>,
    ) -> Result<(), EngineError> {
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
                // A paused sandbox whose processes went with the server keeps its files.
                let keep = state.lock().unwrap().paused.contains_key(&id2);
                let files = if keep { Ok(()) } else { remove_sandbox_dir(&layout, &id2) };
                // Dropped outside the lock: it stops the sandbox's pasta and waits for it.
                let running = state.lock().unwrap().sandboxes.remove(&id2);
                drop(running);
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

    /// Undoes a registration whose guest never started. A paused sandbox that failed to start
    /// again keeps its files.
    fn forget(&self, id: &str) {
        let _ = self.cgroups.destroy(id, KILL_TIMEOUT);
        if !self.state.lock().unwrap().paused.contains_key(id) {
            let _ = remove_sandbox_dir(&self.layout, id);
        }
        self.state.lock().unwrap().sandboxes.remove(id);
    }

    /// Kills a sandbox, running or paused, and removes everything it had: processes, cgroup,
    /// directories. `Ok(false)` when there is no such sandbox. Waits for a snapshot of it in
    /// progress.
    pub async fn kill(&self, id: &str) -> Result<bool, EngineError> {
        let Some(busy) = self.state.lock().unwrap().sandboxes.get(id).map(|r| Arc::clone(&r.busy)) else {
            return self.remove_dormant(id).await;
        };
        let _turn = busy.lock().await;
        let was_paused = self.forget_paused(id).await?;
        self.stop(id, was_paused).await;
        Ok(true)
    }

    /// Removes a paused sandbox that has only files (paused when the server last stopped).
    async fn remove_dormant(&self, id: &str) -> Result<bool, EngineError> {
        if self.state.lock().unwrap().sandboxes.contains_key(id) || !self.forget_paused(id).await? {
            return Ok(false);
        }
        let (layout, state, id) = (self.layout.clone(), Arc::clone(&self.state), id.to_string());
        blocking("remove a paused sandbox", move || {
            let removed = remove_sandbox_dir(&layout, &id);
            collect_layers(&layout, &state);
            removed.map_err(io_ctx("remove a paused sandbox".into()))
        })
        .await?;
        Ok(true)
    }

    /// Drops the paused record of a sandbox; whether it had one.
    async fn forget_paused(&self, id: &str) -> Result<bool, EngineError> {
        let (state, id) = (Arc::clone(&self.state), id.to_string());
        blocking("update the catalog", move || {
            let mut state = state.lock().unwrap();
            let had = state.paused.remove(&id).is_some();
            if had {
                state.store.delete_paused(&id)?;
            }
            Ok(had)
        })
        .await
    }

    /// SIGKILLs the sandbox's guest and waits until its cleanup is done. The caller holds its
    /// `busy` lock. A frozen sandbox is thawed so that its processes can die.
    async fn stop(&self, id: &str, frozen: bool) {
        loop {
            let running = {
                let state = self.state.lock().unwrap();
                state.sandboxes.get(id).map(|r| (r.launcher, r.exited.clone()))
            };
            let Some((launcher, mut exited)) = running else { return };
            let Some(launcher) = launcher else {
                // Still being started: its launcher pid is moments away.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            if !*exited.borrow() {
                // SAFETY: the launcher is our unreaped child (the exit watcher reaps it before it
                // marks the sandbox exited), so the pid cannot name another process.
                unsafe { libc::kill(launcher, libc::SIGKILL) };
                if frozen {
                    // A frozen process takes its SIGKILL when thawed.
                    let (cgroups, id2) = (self.cgroups.clone(), id.to_string());
                    let thawed = tokio::task::spawn_blocking(move || cgroups.set_frozen(&id2, false)).await;
                    if let Ok(Err(e)) = thawed {
                        tracing::warn!(sandbox = id, "thawing a paused sandbox to kill it: {e}");
                    }
                }
            }
            let _ = exited.wait_for(|done| *done).await;
            return;
        }
    }

    /// The `busy` lock of a sandbox with processes; one paused before a restart (only files) is
    /// `AlreadyPaused`, an unknown one `SandboxNotFound`. Whether it is frozen is for the caller
    /// to check once it holds the lock.
    fn busy_of_running(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<()>>, EngineError> {
        let state = self.state.lock().unwrap();
        match state.sandboxes.get(id) {
            Some(r) => Ok(Arc::clone(&r.busy)),
            None if state.paused.contains_key(id) => Err(EngineError::AlreadyPaused(id.into())),
            None => Err(EngineError::SandboxNotFound(id.into())),
        }
    }

    /// Pauses a running sandbox: freezes every process in it, with its memory, and records it in
    /// the catalog (with `api`, what the API keeps of it), so that its files outlive a restart.
    /// Without `keep_memory` its processes end once it is recorded: only its files are kept, and
    /// it starts again on them when resumed (as after a restart).
    pub async fn pause(&self, id: &str, api: String, keep_memory: bool) -> Result<(), EngineError> {
        let busy = self.busy_of_running(id)?;
        let _turn = busy.lock().await;
        let record = {
            let state = self.state.lock().unwrap();
            if state.paused.contains_key(id) {
                return Err(EngineError::AlreadyPaused(id.into()));
            }
            let r = state.sandboxes.get(id).ok_or_else(|| EngineError::SandboxNotFound(id.into()))?;
            PausedRecord {
                spec: r.spec.clone(),
                template: r.template.clone(),
                source: r.source.clone(),
                layers: r.layers.clone(),
                template_id: r.template_id.clone(),
                api,
            }
        };
        let (cgroups, state, id2) = (self.cgroups.clone(), Arc::clone(&self.state), id.to_string());
        blocking("pause", move || {
            let id = id2;
            if let Err(e) = cgroups.set_frozen(&id, true) {
                let _ = cgroups.set_frozen(&id, false);
                return Err(io_ctx(format!("freeze sandbox {id}"))(e));
            }
            let json = serde_json::to_string(&record).expect("a paused record serializes");
            let mut state = state.lock().unwrap();
            if let Err(e) = state.store.put_paused(&id, &json) {
                drop(state);
                let _ = cgroups.set_frozen(&id, false);
                return Err(e.into());
            }
            state.paused.insert(id, record);
            Ok(())
        })
        .await?;
        if !keep_memory {
            // Recorded as paused first: its cleanup keeps its files.
            self.stop(id, true).await;
        }
        Ok(())
    }

    /// Resumes a paused sandbox: thaws it, or, if the server stopped while it was paused (or it
    /// was paused without its memory), starts it again on its files. With `reboot`, a frozen
    /// sandbox's processes end and it starts again on its files too. A running sandbox is left as
    /// it is (`Thawed`).
    pub async fn resume(&self, id: &str, reboot: bool) -> Result<Resumed, EngineError> {
        let busy = self.state.lock().unwrap().sandboxes.get(id).map(|r| Arc::clone(&r.busy));
        if let Some(busy) = busy {
            let _turn = busy.lock().await;
            if !self.state.lock().unwrap().paused.contains_key(id) {
                return Ok(Resumed::Thawed);
            }
            if reboot {
                // Still recorded as paused: its cleanup keeps its files; then started below.
                self.stop(id, true).await;
                drop(_turn);
                return Box::pin(self.resume(id, false)).await;
            }
            let (cgroups, id2) = (self.cgroups.clone(), id.to_string());
            blocking("thaw", move || cgroups.set_frozen(&id2, false).map_err(io_ctx(format!("thaw sandbox {id2}"))))
                .await?;
            self.forget_paused(id).await?;
            return Ok(Resumed::Thawed);
        }
        // Started again on its files. Its `busy` lock is held until it is up: a concurrent
        // resume waits for it, then finds it running.
        let (spec, launch, _turn) = {
            let mut state = self.state.lock().unwrap();
            let record = state.paused.get(id).cloned().ok_or_else(|| EngineError::SandboxNotFound(id.into()))?;
            let template = self
                .templates
                .get(&record.template)
                .ok_or_else(|| EngineError::TemplateNotFound(record.template.clone()))?;
            let launch = Launch {
                template: template.clone(),
                source: record.source,
                layers: record.layers,
                template_id: record.template_id,
            };
            let launch = register(&mut state, &record.spec, launch);
            let busy = Arc::clone(&state.sandboxes[id].busy);
            let turn = busy.try_lock_owned().expect("a sandbox registered just now is not busy");
            (record.spec, launch, turn)
        };
        let handle = self.start(spec, launch).await?;
        self.forget_paused(id).await?;
        Ok(Resumed::Restarted(handle))
    }

    /// Replaces a running sandbox's egress rules (kept for its restarts too). A paused sandbox's
    /// cannot change: resume it first.
    pub async fn set_egress(&self, id: &str, rules: Egress) -> Result<(), EngineError> {
        let busy = self.busy_of_running(id)?;
        let _turn = busy.lock().await;
        let launcher = {
            let state = self.state.lock().unwrap();
            if state.paused.contains_key(id) {
                return Err(EngineError::AlreadyPaused(id.into()));
            }
            state.sandboxes.get(id).and_then(|r| r.launcher).ok_or_else(|| EngineError::SandboxNotFound(id.into()))?
        };
        let (id2, rules2) = (id.to_string(), rules.clone());
        blocking("egress rules", move || apply_egress(&id2, launcher, &rules2)).await?;
        if let Some(r) = self.state.lock().unwrap().sandboxes.get_mut(id) {
            r.spec.egress = rules;
        }
        Ok(())
    }

    /// What a sandbox uses now: CPU time and memory from its cgroup (zero for a sandbox paused
    /// before a restart, which has no processes), and the disk space of its own upper layer.
    pub async fn usage(&self, id: &str) -> Result<SandboxUsage, EngineError> {
        let live = {
            let state = self.state.lock().unwrap();
            match (state.sandboxes.contains_key(id), state.paused.contains_key(id)) {
                (false, false) => return Err(EngineError::SandboxNotFound(id.into())),
                (live, _) => live,
            }
        };
        let (cgroups, dir, id) = (self.cgroups.clone(), self.layout.sandbox(id), id.to_string());
        blocking("usage", move || {
            let cg = if live {
                cgroups.usage(&id).map_err(io_ctx(format!("read the cgroup of {id}")))?
            } else {
                Default::default()
            };
            let disk_bytes = disk_usage(&dir.upper_root()) + disk_usage(&dir.upper_usr());
            Ok(SandboxUsage {
                cpu_ns: cg.cpu_ns,
                memory_bytes: cg.memory_bytes,
                memory_cache_bytes: cg.memory_cache_bytes,
                disk_bytes,
            })
        })
        .await
    }

    /// The paused sandboxes, frozen or only files.
    pub fn paused(&self) -> Vec<PausedSandbox> {
        let state = self.state.lock().unwrap();
        state
            .paused
            .iter()
            .map(|(id, p)| PausedSandbox {
                id: id.clone(),
                api: p.api.clone(),
                envd_socket: self.layout.sandbox(id).envd_socket(),
            })
            .collect()
    }

    /// Kills every sandbox and removes the cgroup parent: the server is stopping. Paused
    /// sandboxes keep their files and their place in the catalog.
    pub async fn shutdown(&self) {
        if let Some(pool) = &self.net_pool {
            pool.close();
        }
        let ids = self.running();
        futures_util::future::join_all(ids.iter().map(|id| async move {
            let (busy, paused) = {
                let state = self.state.lock().unwrap();
                (state.sandboxes.get(id).map(|r| Arc::clone(&r.busy)), state.paused.contains_key(id))
            };
            if let Some(busy) = busy {
                let _turn = busy.lock().await;
                self.stop(id, paused).await;
            }
        }))
        .await;
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
        let busy = self.state.lock().unwrap().sandboxes.get(sandbox_id).map(|r| Arc::clone(&r.busy));
        let _turn = match &busy {
            Some(busy) => Some(busy.lock().await),
            None => None,
        };
        // A running sandbox is frozen for the copy; a paused one is frozen already, and one
        // paused before a restart has no processes.
        let (source, template, base_layers, freeze) = {
            let state = self.state.lock().unwrap();
            let paused = state.paused.get(sandbox_id);
            match (state.sandboxes.get(sandbox_id), paused) {
                (Some(r), _) => (r.source.clone(), r.template.clone(), r.layers.clone(), paused.is_none()),
                (None, Some(p)) => (p.source.clone(), p.template.clone(), p.layers.clone(), false),
                (None, None) => return Err(EngineError::SandboxNotFound(sandbox_id.to_string())),
            }
        };
        let id = id::new_id();
        let layout = self.layout.clone();
        let cgroups = self.cgroups.clone();
        let sandbox = sandbox_id.to_string();
        let staged = {
            let id = id.clone();
            tokio::task::spawn_blocking(move || stage_layer(&layout, &cgroups, &sandbox, &id, &base_layers, freeze))
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
        // published, so it never removes one whose record is a moment away. All of it in the
        // blocking task, which runs to its end even when the caller is gone.
        let (layout, state) = (self.layout.clone(), Arc::clone(&self.state));
        let record = tokio::task::spawn_blocking(move || {
            let _publishing = Publishing::start(&state, &id);
            publish(&layout, &state, &record).map(|()| record).inspect_err(|_| {
                let _ = remove_all(&layout.layer(&id));
            })
        })
        .await
        .map_err(|e| EngineError::SnapshotFailed { id: sandbox_id.to_string(), reason: e.to_string() })??;
        Ok(record.into())
    }

    /// A snapshot by ID (with or without a `:tag`) or name.
    pub fn snapshot_info(&self, id_or_name: &str) -> Result<Option<SnapshotInfo>, EngineError> {
        let untagged = id_or_name.rsplit_once(':').map_or(id_or_name, |(base, _)| base);
        Ok(self.state.lock().unwrap().store.get(untagged)?.map(Into::into))
    }

    /// Snapshots newest first, optionally only those of one sandbox; `after` is the
    /// (created_at, id) of the previous page's last item.
    pub fn list_snapshots(
        &self,
        sandbox_id: Option<&str>,
        name: Option<&str>,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<SnapshotInfo>, EngineError> {
        let state = self.state.lock().unwrap();
        Ok(state.store.list(sandbox_id, name, after, limit)?.into_iter().map(Into::into).collect())
    }

    /// Deletes a snapshot (by ID with or without a tag, or by name). `Ok(false)` when there is
    /// no such snapshot; an error while sandboxes started from it still run. Its layers go when
    /// nothing else needs them.
    pub fn delete_snapshot(&self, id_or_name: &str) -> Result<bool, EngineError> {
        let untagged = id_or_name.rsplit_once(':').map_or(id_or_name, |(base, _)| base);
        let mut state = self.state.lock().unwrap();
        let Some(record) = state.store.get(untagged)? else { return Ok(false) };
        let running = state.sandboxes.iter().filter(|(_, r)| r.source.as_deref() == Some(&record.id)).map(|(id, _)| id);
        let paused = state.paused.iter().filter(|(_, p)| p.source.as_deref() == Some(&record.id)).map(|(id, _)| id);
        let mut users: Vec<String> = running.chain(paused).cloned().collect();
        if !users.is_empty() {
            users.sort();
            users.dedup();
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
        let _ = disk::unmount_all_under(&self.layout.sandboxes());
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = remove_sandbox_dirs(&self.layout, &state.paused);
    }
}

/// Removes a sandbox's directory, and its own disk if it has one.
fn remove_sandbox_dir(layout: &Layout, id: &str) -> io::Result<()> {
    let dir = layout.sandbox(id);
    disk::detach(&dir.disk_image(), dir.path())?;
    remove_all(dir.path())
}

/// Reads the paused sandboxes from the catalog; drops the records whose files are gone.
fn load_paused(layout: &Layout, store: &mut Store) -> Result<HashMap<String, PausedRecord>, EngineError> {
    let mut paused = HashMap::new();
    for (id, json) in store.all_paused()? {
        let dir = layout.sandbox(&id);
        match serde_json::from_str::<PausedRecord>(&json) {
            Ok(record) if dir.disk_image().exists() || dir.upper_root().is_dir() => {
                paused.insert(id, record);
            }
            Ok(_) => {
                tracing::warn!(sandbox = id, "the files of a paused sandbox are gone; forgetting it");
                store.delete_paused(&id)?;
            }
            Err(e) => {
                tracing::error!(sandbox = id, "unreadable record of a paused sandbox ({e}); forgetting it");
                store.delete_paused(&id)?;
            }
        }
    }
    Ok(paused)
}

/// Removes every sandbox directory (and disk image) but those of paused sandboxes; one that cannot
/// be removed is quarantined. Fails only when the sandboxes directory cannot be read.
fn remove_sandbox_dirs(layout: &Layout, paused: &HashMap<String, PausedRecord>) -> io::Result<()> {
    let entries = match fs::read_dir(layout.sandboxes()) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let id = name.to_str().map(|n| n.strip_suffix(".img").unwrap_or(n));
        if !id.is_some_and(|id| paused.contains_key(id)) {
            remove_or_quarantine(layout, &entry.path());
        }
    }
    Ok(())
}

/// Removes what a previous server left at `path`; when that fails, moves it into the quarantine
/// directory (and says so), so that a tree the engine cannot remove never stops a start.
fn remove_or_quarantine(layout: &Layout, path: &Path) {
    let Err(e) = remove_all(path) else { return };
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let to = layout.quarantine().join(format!("{name}.{stamp}"));
    let moved = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(layout.quarantine())
        .and_then(|()| fs::rename(path, &to));
    match moved {
        Ok(()) => tracing::error!(
            "cannot remove {} ({e}): moved to {} instead; look, then remove it by hand",
            path.display(),
            to.display()
        ),
        Err(m) => {
            tracing::error!("cannot remove {} ({e}), nor move it to {} ({m}): left there", path.display(), to.display())
        }
    }
}

/// Says what is in quarantine, at each start, until someone removes it.
fn report_quarantine(layout: &Layout) {
    let Ok(entries) = fs::read_dir(layout.quarantine()) else { return };
    let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    if !names.is_empty() {
        tracing::warn!(
            "{} holds {} leftover(s) a start could not remove: {}",
            layout.quarantine().display(),
            names.len(),
            names.join(", ")
        );
    }
}

/// Copies the sandbox's upper layers into `<staging>/<id>` (with the sandbox frozen meanwhile
/// if `freeze`), and makes them durable. Returns the new chain (topmost first) and the bytes
/// copied.
fn stage_layer(
    layout: &Layout,
    cgroups: &Cgroups,
    sandbox: &str,
    id: &str,
    base_layers: &[String],
    freeze: bool,
) -> io::Result<(Vec<String>, u64)> {
    let staging = layout.staging().join(id);
    fs::create_dir_all(&staging)?;
    let dir = layout.sandbox(sandbox);
    if freeze {
        if let Err(e) = cgroups.set_frozen(sandbox, true) {
            // Part of it may be frozen already: never leave it so.
            let _ = cgroups.set_frozen(sandbox, false);
            return Err(e);
        }
    }
    let started = Instant::now();
    let copied = copy_tree(&dir.upper_root(), &staging.join("root")).and_then(|a| {
        copy_tree(&dir.upper_usr(), &staging.join("usr")).map(|b| (a.files + b.files, a.bytes + b.bytes))
    });
    if freeze {
        let frozen_for = started.elapsed();
        let thawed = cgroups.set_frozen(sandbox, false);
        tracing::info!(
            sandbox,
            snapshot = id,
            frozen_ms = frozen_for.as_secs_f64() * 1000.0,
            "sandbox frozen while its layer was copied"
        );
        thawed?;
    }
    let (files, bytes) = copied?;
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
    fs::rename(layout.staging().join(&record.id), layout.layer(&record.id))
        .map_err(io_ctx("publish the layer".into()))?;
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
        keep.extend(state.paused.values().flat_map(|p| p.layers.iter().cloned()));
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

/// Runs blocking work (cgroup files, the catalog, directory trees) off the runtime's threads.
/// Puts `rules` in force in the network namespace of the sandbox whose launcher is `launcher`.
fn apply_egress(id: &str, launcher: i32, rules: &Egress) -> Result<(), EngineError> {
    let fail = |reason: String| EngineError::Egress { id: id.to_string(), reason };
    let nft = egress::find_nft()
        .ok_or_else(|| fail("they need nftables (`nft`; Debian package nftables), which is not installed".into()))?;
    let netns = crate::userns::namespace_of(launcher, "net").map_err(fail)?;
    egress::apply(&nft, &netns, rules).map_err(fail)
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EngineError::Io { context: what.into(), source: io::Error::other(e) })?
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
    // A server that was just killed may still have a child between fork and exec, holding a copy
    // of the lock's descriptor for a moment: while the owner named in the file is dead, wait.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut file = file;
    let mut lock = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((mut back, _)) => {
                let mut pid = String::new();
                let _ = back.read_to_string(&mut pid);
                let _ = std::io::Seek::rewind(&mut back);
                let owner_alive = pid
                    .trim()
                    .parse::<i32>()
                    .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
                if owner_alive || Instant::now() > deadline {
                    return Err(EngineError::Locked { path: layout.root().to_path_buf(), pid: pid.trim().to_string() });
                }
                std::thread::sleep(Duration::from_millis(20));
                file = back;
            }
        }
    };
    lock.set_len(0).map_err(io_ctx("truncate the lock file".into()))?;
    write!(lock, "{}", std::process::id()).map_err(io_ctx("write the lock file".into()))?;
    Ok(lock)
}

/// A layer being published, in `State::publishing` for as long as this lives (however the
/// publishing ends: done, failed or panicked).
struct Publishing<'a> {
    state: &'a Mutex<State>,
    id: &'a str,
}

impl<'a> Publishing<'a> {
    fn start(state: &'a Mutex<State>, id: &'a str) -> Self {
        state.lock().unwrap().publishing.insert(id.to_string());
        Self { state, id }
    }
}

impl Drop for Publishing<'_> {
    fn drop(&mut self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).publishing.remove(self.id);
    }
}

/// What the guest reports on its stdout: `net` (it is in the sandbox's network namespace), then
/// `ready`; or `error <why>` at any point.
struct GuestReport {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::pipe::Receiver>>,
}

impl GuestReport {
    fn new(stdout: std::process::ChildStdout) -> Result<Self, String> {
        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))
            .map_err(|e| format!("guest pipe: {e}"))?;
        Ok(Self { lines: BufReader::new(pipe).lines() })
    }

    async fn next(&mut self) -> Result<String, String> {
        match self.lines.next_line().await {
            Ok(Some(line)) => match line.strip_prefix("error ") {
                Some(why) => Err(why.to_string()),
                None => Ok(line),
            },
            Ok(None) => Err("the guest exited before it was ready (see the server log)".into()),
            Err(e) => Err(format!("reading the guest's report: {e}")),
        }
    }

    /// Waits for `line`.
    async fn expect(&mut self, line: &str) -> Result<(), String> {
        match self.next().await? {
            got if got == line => Ok(()),
            got => Err(format!("unexpected report from the guest: {got:?}, not {line:?}")),
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

#[cfg(test)]
mod tests {
    #[test]
    fn cgroup_names_are_stable_across_builds_and_languages() {
        // The JS tests compute the same name (__test__/helpers.mjs `serverCgroupName`).
        assert_eq!(super::cgroup_name(std::path::Path::new("/tmp")), "sandbank-e39c4bcebddb");
    }
}
