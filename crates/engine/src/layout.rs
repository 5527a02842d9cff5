//! Where things live inside the data directory. Version 1 of the on-disk layout:
//!
//! ```text
//! <data>/lock                     flock held by the running server (holds its pid)
//! <data>/images/<id>/rootfs       the base template's Debian system ([`crate::base_image`]; `--images-dir`
//!                                 puts the images elsewhere, to share them between data directories)
//! <data>/images/<id>/packages.txt  its packages and their versions; `build.log`, mmdebstrap's output
//! <data>/images/.<id>.building/   an image being built (under `.<id>.lock`); `<id>.failed.log` a failed build's log
//! <data>/images/oci/<hex>/rootfs the images pulled from registries (the template `oci-<hex>`: [`crate::oci`]),
//!                                 by their manifest's digest; `image.json` what they were pulled by
//! <data>/images/oci/.<hex>.pulling/  one being pulled (under `.pull.lock`); `refs.json` what each
//!                                 reference's digest was at its last pull (used when offline)
//! <data>/state.db                 the snapshot catalog (SQLite)
//! <data>/layers/<id>/root, usr    the read-only layer a snapshot added, named by its ID
//! <data>/layers/<id>/memory       a full snapshot's images of the processes (CRIU)
//! <data>/layers/.staging/<id>     a layer being written: a snapshot's, or one being imported from an archive
//!                                 ([`crate::snapshot_archive`]; removed at start: never complete)
//! <data>/layers/.staging/<id>.memory  its images while they are being dumped
//! <data>/envd/<binary>/bin/envd   the layer laid over every sandbox's /usr: envd (a copy of this binary)
//! <data>/userns-probe/           scratch of the start-up check for user namespaces (removed after it)
//! <data>/quarantine/<name>.<time> what a start could not remove of a previous server's (logged; remove by hand)
//! <data>/builds/catalog.json      the server's templates built here, their builds and tags, the step cache
//! <data>/builds/files/<hash>      archives the SDK uploaded for templates' COPY steps (the server's, too)
//! <data>/cow/, <data>/cow.img     the btrfs layer store (the default; not with `--store copy`): a btrfs
//!                                 filesystem, in the image unless the data directory is btrfs, holding
//!                                 `layers/`, `sandboxes/` and `userns-probe/` instead of the data directory
//! <data>/sandboxes/<id>/          one running sandbox:
//!     layer/root, layer/usr       the writable upper layers (/ and /usr); `layer/` a subvolume on the btrfs
//!                                 store, its quota group the sandbox's disk limit
//!     layer/work/root, …/usr      overlayfs work directories (in `layer/`: on btrfs, overlayfs moves files
//!                                 from them into the upper layers, which fails across subvolumes)
//!     rootfs/                     the mount point of the sandbox's root (inside its namespace)
//!     idmapped/                   where the guest mounts idmapped views of the layers (inside its namespace)
//!     usr/                        the mount point of its /usr overlay, when restored from a snapshot with memory
//!     restore.log, restore.pid    CRIU's log and the restored PID 1, when restored from a snapshot with memory
//!     restoring.pid               PID 1's pid once CRIU has made its namespaces (the guest's action script)
//!     after-restore               the action script CRIU runs then (`sandbank guest --after-restore`)
//!     memory/                     its processes' images while it is paused with its memory (CRIU; gone once resumed)
//!     memory.partial/             those images while they are being dumped (removed when found: never complete)
//!     hostname, hosts             bound over /etc/hostname and /etc/hosts inside
//!     resolv.conf                 bound over /etc/resolv.conf (empty without internet access)
//!     envd.sock                   a link to envd's unix socket, in the sandbox's /dev (through /proc/<PID 1>/root)
//! ```

use std::path::{Path, PathBuf};

/// Unix socket paths are limited to 107 bytes.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    /// Where the layers and the sandboxes' directories are: the data directory, or the
    /// copy-on-write store ([`crate::cow`]) when the engine has one.
    layers_root: PathBuf,
    /// Where the base images are: `<data>/images`, or a directory shared by data directories.
    images: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self { layers_root: root.clone(), images: root.join("images"), root }
    }

    /// The same data directory, with its base images in `images`.
    pub fn with_images(self, images: &Path) -> Self {
        Self { images: images.to_path_buf(), ..self }
    }

    /// The same data directory, with the layers and the sandboxes on the copy-on-write store
    /// mounted at `store`.
    pub fn on_store(self, store: &Path) -> Self {
        Self { layers_root: store.to_path_buf(), ..self }
    }

    /// Where the copy-on-write store is mounted (or made, on a data directory on btrfs).
    pub fn cow_store(&self) -> PathBuf {
        self.root.join("cow")
    }

    /// The image of the copy-on-write store's filesystem, when the data directory is not btrfs.
    pub fn cow_image(&self) -> PathBuf {
        self.root.join("cow.img")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The base images ([`crate::base_image`]).
    pub fn images(&self) -> &Path {
        &self.images
    }

    /// The images pulled from registries ([`crate::oci`]).
    pub fn oci_images(&self) -> PathBuf {
        self.images.join("oci")
    }

    /// Where versions before the Debian base kept the host-made `base` template (removed at start).
    pub fn legacy_templates(&self) -> PathBuf {
        self.root.join("templates")
    }

    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    pub fn layers(&self) -> PathBuf {
        self.layers_root.join("layers")
    }

    pub fn layer(&self, id: &str) -> PathBuf {
        self.layers().join(id)
    }

    pub fn staging(&self) -> PathBuf {
        self.layers().join(".staging")
    }

    /// A full snapshot's images of the processes, in its layer.
    pub fn memory_images(&self, id: &str) -> PathBuf {
        self.layer(id).join("memory")
    }

    /// A full snapshot's images while they are being dumped: beside its staged layer until that
    /// is complete (flattening a chain makes the layer anew).
    pub fn staging_memory(&self, id: &str) -> PathBuf {
        self.staging().join(format!("{id}.memory"))
    }

    /// The layers with envd in them (see [`crate::envd_layer`]).
    pub fn envd_layers(&self) -> PathBuf {
        self.root.join("envd")
    }

    pub fn sandboxes(&self) -> PathBuf {
        self.layers_root.join("sandboxes")
    }

    /// Where a start moves the leftovers of a previous server that it cannot remove, so that
    /// they stop nothing (see `Engine::open`).
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Scratch directories of the start-up check for user namespaces ([`crate::userns::probe`]).
    pub fn userns_probe(&self) -> PathBuf {
        self.layers_root.join("userns-probe")
    }

    pub fn sandbox(&self, id: &str) -> SandboxDir {
        SandboxDir(self.sandboxes().join(id))
    }

    /// The longest data directory path that still leaves room for a sandbox's socket path.
    pub fn check_socket_room(&self) -> Result<(), DataDirTooLong> {
        let probe = self.sandbox("aaaaaaaaaaaaaaaaaaaa").envd_socket();
        let needed = probe.as_os_str().len();
        if needed > MAX_SOCKET_PATH {
            return Err(DataDirTooLong { path: self.root.clone(), needed });
        }
        Ok(())
    }
}

/// A data directory so deep that a sandbox's socket path would not fit in `sun_path`.
#[derive(Debug, thiserror::Error)]
#[error(
    "data directory {} is too long: sandbox sockets would need {needed} bytes, the limit is {MAX_SOCKET_PATH}",
    path.display()
)]
pub struct DataDirTooLong {
    pub path: PathBuf,
    pub needed: usize,
}

/// The directory of one sandbox.
#[derive(Clone, Debug)]
pub struct SandboxDir(pub PathBuf);

impl SandboxDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// Its writable layer: `root/` and `usr/` (a subvolume on the copy-on-write store).
    pub fn layer(&self) -> PathBuf {
        self.0.join("layer")
    }
    pub fn upper_root(&self) -> PathBuf {
        self.0.join("layer/root")
    }
    pub fn upper_usr(&self) -> PathBuf {
        self.0.join("layer/usr")
    }
    pub fn work_root(&self) -> PathBuf {
        self.0.join("layer/work/root")
    }
    pub fn work_usr(&self) -> PathBuf {
        self.0.join("layer/work/usr")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }
    pub fn idmapped(&self) -> PathBuf {
        self.0.join("idmapped")
    }
    /// Where a sandbox restored from a snapshot with memory has its `/usr` overlay mounted (not in
    /// its root: CRIU binds it there).
    pub fn restore_usr(&self) -> PathBuf {
        self.0.join("usr")
    }
    /// The images of its processes while it is paused with its memory.
    pub fn paused_memory(&self) -> PathBuf {
        self.0.join("memory")
    }
    /// [`Self::paused_memory`] while it is being dumped.
    pub fn paused_memory_partial(&self) -> PathBuf {
        self.0.join("memory.partial")
    }
    pub fn hostname(&self) -> PathBuf {
        self.0.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.0.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.0.join("resolv.conf")
    }
    pub fn envd_socket(&self) -> PathBuf {
        self.0.join("envd.sock")
    }
}
