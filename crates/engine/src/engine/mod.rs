//! The engine: creates, tracks and destroys sandboxes in one data directory. One file per kind
//! of operation, all of them `impl Engine`:
//!
//! - `start`: create a sandbox (resolve its template or snapshot, prepare, launch the guest);
//! - `stop`: kill it, or undo a start that failed;
//! - `pause`: freeze or stop it with its files kept, and bring it back;
//! - `running`: what a live sandbox can be asked for (egress rules, usage);
//! - `restore`: roll it back to a snapshot in place, keeping its ID;
//! - `snapshot`: capture a sandbox's files as a layer, list and delete snapshots, collect layers;
//! - `startup`: the data directory's lock and what a crashed server left behind.

mod archive;
mod error;
mod pause;
mod restore;
mod running;
mod snapshot;
mod start;
mod startup;
mod stop;

pub use crate::cgroup::cgroup_name;
pub use crate::spec::{
    Limits, PausedSandbox, Resumed, SandboxHandle, SandboxSpec, SandboxUsage, SnapshotInfo, SnapshotMode,
    SnapshotOptions,
};
pub use archive::{ImportedSnapshot, SnapshotExport, IMPORTED_ORIGIN};
pub use error::EngineError;
pub use restore::{RestoreError, RestoreRefused};

use crate::cgroup::Cgroups;
use crate::disk;
use crate::error::SysError;
use crate::guest_exe::GuestExe;
use crate::layout::Layout;
use crate::net::Pasta;
use crate::netpool::NetPool;
use crate::spawner::Spawner;
use crate::store::Store;
use crate::template::{self, Template};
use crate::userns::IdMap;
use nix::fcntl::Flock;
use pause::load_paused;
use serde::{Deserialize, Serialize};
use startup::{remove_or_quarantine, remove_sandbox_dirs, report_quarantine, take_lock};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Where the engine keeps its state, and the `sandbank` executable it starts as each guest.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub guest_exe: PathBuf,
    /// The disk limit of a sandbox whose request names none, in MB, where the layer store has
    /// quota groups (see [`crate::cow`]); `None`: [`DEFAULT_DISK_MB`].
    pub disk_limit_mb: Option<u64>,
    /// The `pasta` executable that gives sandboxes outbound network ([`net::find_pasta`]);
    /// `None`: sandboxes get loopback only.
    pub pasta: Option<PathBuf>,
    /// Run each sandbox in a user namespace, its root an unprivileged host user
    /// ([`crate::userns`]): checked at open, which fails with [`EngineError::NoUserNamespace`]
    /// where this machine cannot. `false` only when asked for: root inside is the host's root.
    pub user_namespace: bool,
    /// Where the layers live.
    pub layer_store: LayerStore,
    /// Where the base images are built and kept ([`crate::base_image`]); `None`:
    /// `<data_dir>/images`. Data directories may share one.
    pub images_dir: Option<PathBuf>,
    /// Where images named by builds are pulled from ([`crate::oci`]).
    pub registries: crate::oci::Registries,
}

/// A sandbox's disk limit when neither the request nor the server names one: 10 GB, E2B's
/// default sandbox disk.
pub const DEFAULT_DISK_MB: u64 = 10 << 10;

/// Where sandboxes' writable layers and snapshot layers live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayerStore {
    /// Directories of the data directory: a snapshot copies the sandbox's writable layer, and
    /// a sandbox has no disk limit.
    #[default]
    Copy,
    /// The copy-on-write store ([`crate::cow`]; its image, when the data directory is not btrfs,
    /// of at most this many bytes, sparse): a writable layer is a subvolume with a disk limit
    /// and a snapshot a snapshot of it, whatever the sandbox wrote.
    Btrfs { image_bytes: u64 },
    /// `Btrfs` where it can be, else `Copy` (with a warning saying why); a data directory keeps
    /// the store its snapshots are on.
    Auto { image_bytes: u64 },
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
    /// The layer with envd, over every sandbox's `/usr` (see [`crate::envd_layer`]).
    envd_layer: PathBuf,
    /// The image the `base` template is.
    base_image: crate::base_image::BaseImage,
    /// The copy-on-write store, with `LayerStore::Btrfs`.
    cow: Option<crate::cow::CowStore>,
    /// CRIU, looked for at the first snapshot with memory (`criu check` takes a moment).
    criu: std::sync::OnceLock<Result<crate::criu::Criu, String>>,
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
    /// Every sandbox the engine knows: running, starting, frozen, or dormant (only files).
    sandboxes: HashMap<String, Record>,
    /// Layers moved into place whose record is not committed yet.
    publishing: std::collections::HashSet<String>,
}

/// Where a sandbox is in its life; see [`Record::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Its processes run (or are being started).
    Running,
    /// Paused with its memory: its processes are frozen.
    Frozen,
    /// Paused with no processes: its files, and the images of their memory when its pause wrote
    /// them (CRIU); resuming starts it again on them, restoring its processes from the images.
    Dormant,
}

impl Status {
    /// Whether it has processes (and a cgroup to read).
    fn has_processes(self) -> bool {
        matches!(self, Status::Running | Status::Frozen)
    }

    /// Pausing, and changing its network rules, take a running sandbox.
    fn can_pause(self) -> bool {
        self == Status::Running
    }

    /// A snapshot of a running sandbox freezes it for the copy; a paused one is still already.
    fn freezes_for_snapshot(self) -> bool {
        self == Status::Running
    }
}

/// What a sandbox is made of: what it was asked for and the layers it stands on. The same
/// while it runs, while it is paused (kept in the catalog) and when it starts again.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Makeup {
    spec: SandboxSpec,
    /// The template at the bottom of its layers.
    template: String,
    /// The snapshot it started from, if any.
    source: Option<String>,
    /// The snapshot layers under its own upper layer, topmost first.
    layers: Vec<String>,
    /// What it reports as its template: the template's name or the snapshot's ID.
    template_id: String,
}

impl State {
    fn status(&self, id: &str) -> Option<Status> {
        self.sandboxes.get(id).map(Record::status)
    }

    /// The processes of sandbox `id`, if it has any.
    fn processes(&self, id: &str) -> Option<&Processes> {
        self.sandboxes.get(id).and_then(|r| r.processes.as_ref())
    }

    fn processes_mut(&mut self, id: &str) -> Option<&mut Processes> {
        self.sandboxes.get_mut(id).and_then(|r| r.processes.as_mut())
    }

    fn is_paused(&self, id: &str) -> bool {
        self.sandboxes.get(id).is_some_and(|r| r.paused.is_some())
    }
}

/// One sandbox, whatever its status.
#[derive(Debug)]
struct Record {
    makeup: Makeup,
    /// `None` when dormant.
    processes: Option<Processes>,
    /// Set while it is paused (and recorded in the catalog): what the API keeps of it, opaque to
    /// the engine.
    paused: Option<String>,
}

impl Record {
    fn status(&self) -> Status {
        match (&self.processes, &self.paused) {
            (Some(_), None) => Status::Running,
            (Some(_), Some(_)) => Status::Frozen,
            (None, _) => Status::Dormant,
        }
    }
}

/// The processes of a running (or starting, or frozen) sandbox.
#[derive(Debug)]
struct Processes {
    /// The guest's first process, our child: killing it takes PID 1 and the whole PID
    /// namespace with it. `None` while it is being started.
    launcher: Option<i32>,
    exited: watch::Receiver<bool>,
    /// Serialises snapshots, pause, resume and the kill of this sandbox.
    busy: Arc<tokio::sync::Mutex<()>>,
    /// Its network helper, outside its cgroup; killed when this is dropped.
    net: Option<Pasta>,
    /// The envd layer over its `/usr` (a restored sandbox's is the one its images name): what a
    /// dump of it records. `None` until it is prepared.
    envd_layer: Option<PathBuf>,
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
        let layout = match &config.images_dir {
            Some(dir) => layout.with_images(dir),
            None => layout,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(layout.root())
            .map_err(io_ctx(format!("create data directory {}", layout.root().display())))?;
        let lock = take_lock(&layout)?;
        let data_dir = fs::canonicalize(layout.root()).map_err(io_ctx("resolve the data directory".into()))?;
        let cgroup_name = cgroup_name(&data_dir);
        let cgroups = Cgroups::setup(&cgroup_name).map_err(io_ctx("set up cgroups".into()))?;
        // What a crashed server left: processes in our cgroups (first: they may hold the
        // copy-on-write store's filesystem, which is mounted again below), sandbox directories,
        // a layer that was being written.
        cgroups.teardown(KILL_TIMEOUT).map_err(io_ctx("remove leftover cgroups".into()))?;
        let cgroups = Cgroups::setup(&cgroup_name).map_err(io_ctx("set up cgroups".into()))?;
        let (layout, cow) = open_layer_store(layout, config.layer_store)?;
        if cow.as_ref().is_none_or(|cow| !cow.has_quota()) {
            tracing::warn!("sandboxes have no disk limit: {}", no_disk_limit_why(cow.as_ref()));
        }
        layout.check_socket_room()?;
        let guest_exe = GuestExe::open(&config.guest_exe)?;
        let envd_layer = crate::envd_layer::install(&layout, &config.guest_exe)?;
        // Before the user-namespace check, which mounts an idmapped view of the image's /usr.
        let image = crate::base_image::ensure(layout.images())?;
        let base = Template::of_image(template::BASE, &image);
        let userns = match config.user_namespace {
            true => Some(
                crate::userns::check(&guest_exe.exec_path(), &layout.userns_probe(), Some(&base.usr_lowers[0]))
                    .map_err(EngineError::NoUserNamespace)?,
            ),
            false => None,
        };
        // And the groups of crashed servers on other data directories, which nothing else removes.
        crate::cgroup::remove_stale_parents(&cgroup_name);
        remove_or_quarantine(&layout, &layout.staging());
        for dir in [layout.sandboxes(), layout.layers()] {
            fs::create_dir_all(&dir).map_err(io_ctx(format!("create {}", dir.display())))?;
        }
        let _ = template::remove_all(&layout.legacy_templates());

        let templates = HashMap::from([(base.name.clone(), base)]);
        let mut store = Store::open(&layout.state_db())?;
        let paused = load_paused(&layout, &mut store)?;
        remove_sandbox_dirs(&layout, |id| paused.contains_key(id))
            .map_err(io_ctx("read the sandboxes directory".into()))?;
        report_quarantine(&layout);
        // Images a dump did not finish (the server stopped during it) are no use.
        for id in paused.keys() {
            let _ = template::remove_all(&layout.sandbox(id).paused_memory_partial());
        }
        // Kept while images name them: a restore runs the envd the processes ran.
        crate::envd_layer::remove_unused(&layout, &envd_layer);

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
            state: Arc::new(Mutex::new(State { store, sandboxes: paused, publishing: Default::default() })),
            spawner,
            guest_exe,
            envd_layer,
            base_image: image,
            cow,
            criu: std::sync::OnceLock::new(),
            net_pool,
            userns,
            _lock: lock,
        };
        engine.collect_layers();
        Ok(engine)
    }

    /// CRIU, for snapshots with memory; why not when it cannot be used.
    pub fn criu(&self) -> Result<&crate::criu::Criu, EngineError> {
        self.criu
            .get_or_init(|| crate::criu::find().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| EngineError::NoCriu(e.clone()))
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

    /// The limits a sandbox gets when the request names none. The disk figure is the limit
    /// where the store has one, else the free space of the data directory's filesystem, which
    /// is all a sandbox can fill.
    pub fn default_limits(&self) -> Limits {
        let disk_mb = match self.disk_limits() {
            true => self.config.disk_limit_mb.unwrap_or(DEFAULT_DISK_MB),
            false => disk::free_bytes(self.layout.root()).map(|b| b >> 20).unwrap_or(0),
        };
        Limits { disk_mb, ..self.default_limits }
    }

    /// Whether sandboxes' disks are limited (to their `disk_mb`): the layer store has quota
    /// groups.
    pub fn disk_limits(&self) -> bool {
        self.cow.as_ref().is_some_and(crate::cow::CowStore::has_quota)
    }

    /// Pulls the image `reference` (unless it is here) and returns it: its template is
    /// [`crate::oci::OciImage::template_name`]. `progress` gets a line per step.
    pub async fn pull_image(
        &self,
        reference: &str,
        credentials: &crate::oci::Credentials,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<crate::oci::OciImage, EngineError> {
        let oci_dir = self.layout.oci_images();
        Ok(crate::oci::pull(&oci_dir, reference, credentials, &self.config.registries, progress).await?)
    }

    /// The name of the image the `base` template is (its recipe's: see [`crate::base_image`]).
    pub fn base_image_id(&self) -> String {
        self.base_image.id()
    }

    /// Which layer store this engine is on, and why sandboxes have no disk limit when they
    /// have none: for the server's log.
    pub fn store_description(&self) -> String {
        match &self.cow {
            Some(cow) => {
                let on = match cow.image() {
                    Some(image) => format!("an image, {}", image.display()),
                    None => "the data directory's filesystem".into(),
                };
                let limits = match cow.has_quota() {
                    true => "disk limits by quota groups".into(),
                    false => format!("no disk limits: {}", no_disk_limit_why(Some(cow))),
                };
                format!("btrfs, on {on}; {limits}")
            }
            None => format!("copy; no disk limits: {}", no_disk_limit_why(None)),
        }
    }

    /// IDs of the sandboxes with processes now (running or frozen).
    pub fn running(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.sandboxes.iter().filter(|(_, r)| r.processes.is_some()).map(|(id, _)| id.clone()).collect()
    }

    /// Kills every sandbox and removes the cgroup parent: the server is stopping. Paused
    /// sandboxes keep their files and their place in the catalog.
    pub async fn shutdown(&self) {
        if let Some(pool) = &self.net_pool {
            pool.close();
            pool.settled().await;
        }
        let ids = self.running();
        futures_util::future::join_all(ids.iter().map(|id| async move {
            let (busy, frozen) = {
                let state = self.state.lock().unwrap();
                (state.processes(id).map(|p| Arc::clone(&p.busy)), state.status(id) == Some(Status::Frozen))
            };
            if let Some(busy) = busy {
                let _turn = busy.lock().await;
                self.stop(id, frozen).await;
            }
        }))
        .await;
        if let Err(e) = self.cgroups.teardown(KILL_TIMEOUT) {
            tracing::error!("removing cgroups: {e}");
        }
    }
}

impl Drop for Engine {
    /// Whatever the engine still holds goes with it: sandbox processes, cgroups, directories.
    fn drop(&mut self) {
        if let Err(e) = self.cgroups.teardown(KILL_TIMEOUT) {
            tracing::error!("removing cgroups: {e}");
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = remove_sandbox_dirs(&self.layout, |id| state.is_paused(id));
        if let Some(cow) = self.cow.take() {
            if let Err(e) = cow.close() {
                tracing::error!("closing the copy-on-write store: {e}");
            }
        }
    }
}

/// Opens the layer store `kind` says (see [`LayerStore`]): the layout on it, and the
/// copy-on-write store when it is that one.
fn open_layer_store(layout: Layout, kind: LayerStore) -> Result<(Layout, Option<crate::cow::CowStore>), EngineError> {
    let (image_bytes, auto) = match kind {
        LayerStore::Copy => {
            if cow_store_in_use(&layout) {
                let why = format!(
                    "the snapshots in {} are on the btrfs layer store ({}): start without --store copy",
                    layout.root().display(),
                    layout.cow_store().display()
                );
                return Err(EngineError::StartFailed(why));
            }
            return Ok((layout, None));
        }
        LayerStore::Btrfs { image_bytes } => (image_bytes, false),
        LayerStore::Auto { image_bytes } => (image_bytes, true),
    };
    if copy_store_in_use(&layout) {
        if auto {
            tracing::info!("the data directory's layers are on the copy store: it stays on it");
            return Ok((layout, None));
        }
        let why = format!(
            "the snapshots in {} are on the copy layer store ({}): start with --store copy, or use another data directory",
            layout.root().display(),
            layout.layers().display()
        );
        return Err(EngineError::StartFailed(why));
    }
    match crate::cow::CowStore::open(&layout.cow_store(), &layout.cow_image(), image_bytes) {
        Ok(cow) => Ok((layout.clone().on_store(cow.root()), Some(cow))),
        // Not when it holds the data directory's snapshots: they would be lost from sight.
        Err(e) if auto && !cow_store_in_use(&layout) => {
            tracing::warn!(
                "the btrfs layer store cannot be used ({e}): snapshots copy what sandboxes wrote (--store copy)"
            );
            Ok((layout, None))
        }
        Err(e) => Err(io_ctx("open the copy-on-write store".into())(e)),
    }
}

/// Whether the data directory `data_dir` keeps to the copy store, its layers or sandboxes being
/// there (what `auto` goes by; `doctor` says it too).
pub fn on_copy_store(data_dir: &Path) -> bool {
    copy_store_in_use(&Layout::new(data_dir))
}

/// Whether the copy store of `layout`'s data directory holds layers or sandboxes.
fn copy_store_in_use(layout: &Layout) -> bool {
    [layout.layers(), layout.sandboxes()].iter().any(|dir| has_entries(dir))
}

/// Whether the btrfs store of `layout`'s data directory was made.
fn cow_store_in_use(layout: &Layout) -> bool {
    layout.cow_image().exists() || has_entries(&layout.cow_store())
}

/// Whether `dir` holds anything but the engine's own scratch (`.staging`).
fn has_entries(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| entries.flatten().any(|e| !e.file_name().to_string_lossy().starts_with('.')))
}

/// Why sandboxes on `cow` (`None`: the copy store) have no disk limit.
fn no_disk_limit_why(cow: Option<&crate::cow::CowStore>) -> &'static str {
    match cow {
        Some(_) => "quota groups are off on the data directory's btrfs filesystem (`btrfs quota enable` turns them on)",
        None => "they need the btrfs layer store",
    }
}

/// Runs blocking work (cgroup files, the catalog, directory trees) off the runtime's threads.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SysError { step: what.into(), source: io::Error::other(e) })?
}

fn io_ctx(context: String) -> impl FnOnce(io::Error) -> EngineError {
    move |source| SysError { step: context, source }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: u64 = 1 << 30;

    /// A data directory keeps the store its snapshots are on: `auto` picks btrfs for a new one
    /// and copy for one with copied layers; naming the other store is refused, naming the data
    /// directory. Needs root (the store's image is mounted).
    #[test]
    fn a_data_directory_keeps_the_store_its_snapshots_are_on() {
        let fresh = tempfile::tempdir().unwrap();
        let layout = Layout::new(fresh.path());
        let (on_store, cow) = open_layer_store(layout.clone(), LayerStore::Auto { image_bytes: IMAGE }).unwrap();
        let cow = cow.expect("a new data directory gets the btrfs store");
        fs::create_dir_all(on_store.layers().join("snapshot")).unwrap();
        cow.close().unwrap();
        let err = open_layer_store(layout.clone(), LayerStore::Copy).unwrap_err().to_string();
        assert!(err.contains("btrfs layer store") && err.contains(&fresh.path().display().to_string()), "{err}");
        let (_, cow) = open_layer_store(layout, LayerStore::Auto { image_bytes: IMAGE }).unwrap();
        cow.expect("the btrfs store again").close().unwrap();

        // A copy store with no snapshot (its scratch only) has nothing to keep it.
        let scratch = tempfile::tempdir().unwrap();
        let layout = Layout::new(scratch.path());
        fs::create_dir_all(layout.staging()).unwrap();
        let (_, cow) = open_layer_store(layout, LayerStore::Auto { image_bytes: IMAGE }).unwrap();
        cow.expect("the btrfs store").close().unwrap();

        let copied = tempfile::tempdir().unwrap();
        let layout = Layout::new(copied.path());
        fs::create_dir_all(layout.layers().join("snapshot")).unwrap();
        let (_, cow) = open_layer_store(layout.clone(), LayerStore::Auto { image_bytes: IMAGE }).unwrap();
        assert!(cow.is_none(), "copied layers keep the copy store");
        let err = open_layer_store(layout.clone(), LayerStore::Btrfs { image_bytes: IMAGE }).unwrap_err().to_string();
        assert!(err.contains("--store copy") && err.contains(&copied.path().display().to_string()), "{err}");
        assert!(!layout.cow_image().exists(), "no image was made for it");
    }
}
