//! The copy-on-write store: a btrfs filesystem in which a sandbox's writable layer is a
//! subvolume and a snapshot a snapshot of it, which costs the same whatever the sandbox wrote.
//! Where the data directory is on btrfs already, that filesystem; elsewhere a sparse image file
//! in the data directory, formatted once (`mkfs.btrfs`, from btrfs-progs) and mounted on a loop
//! device that goes with the mount (AUTOCLEAR).
//!
//! Disk limits are quota groups: a subvolume's limit bounds the bytes it references, shared
//! with snapshots or not, so that what a sandbox's snapshots keep does not count against it
//! (btrfs's "simple quotas" would: they charge an extent to the subvolume that wrote it for as
//! long as anything holds it). The store turns them on in its own image; on a btrfs data
//! directory, which is the host's filesystem, it uses them only where they are on already.

use crate::sys;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The store: a btrfs filesystem mounted at `root`.
#[derive(Debug)]
pub struct CowStore {
    root: PathBuf,
    /// The image it was mounted from, when the data directory is not btrfs itself.
    image: Option<PathBuf>,
    /// Whether quota groups are on: subvolumes can have a disk limit.
    quota: bool,
}

impl CowStore {
    /// Opens the store at `root`: the directory itself when it is on btrfs; else the filesystem
    /// in `image` mounted on it. The image is made sparse when it does not exist, and grown when
    /// it does, up to `size_bytes` as far as the host's disk can back it (see [`image_size`]).
    pub fn open(root: &Path, image: &Path, size_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        if is_btrfs(root)? {
            // Unknown (the quota tree cannot be read) counts as off.
            let quota = sys::btrfs_quota_enabled(File::open(root)?.as_fd()).unwrap_or(false);
            return Ok(CowStore { root: root.to_path_buf(), image: None, quota });
        }
        let made = !image.exists();
        let free = crate::disk::free_bytes(image.parent().unwrap_or(Path::new("/")))?;
        let grown = if made {
            let needs = "the copy-on-write store needs mkfs.btrfs (btrfs-progs)";
            crate::disk::make_image(image, image_size(size_bytes, free)?, "mkfs.btrfs", &["-q", "-f"], needs)?;
            false
        } else {
            grow(image, size_bytes, free)?
        };
        if let Err(e) = crate::disk::mount_image_as(image, root, "btrfs", &format!("commit={COMMIT_SECS}")) {
            // An image that never held anything (no loop devices here, say) is not kept.
            if made {
                let _ = fs::remove_file(image);
            }
            return Err(e);
        }
        let store = CowStore { root: root.to_path_buf(), image: Some(image.to_path_buf()), quota: true };
        let fs = File::open(root)?;
        if grown {
            if let Err(e) = sys::btrfs_resize_max(fs.as_fd()) {
                tracing::warn!("grow the filesystem in {} to its image: {e}", image.display());
            }
        }
        if let Err(e) = sys::btrfs_quota_enable(fs.as_fd()) {
            drop(fs);
            let _ = store.close();
            return Err(io::Error::new(e.kind(), format!("turn on quota groups in {}: {e}", image.display())));
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether subvolumes can have a disk limit: quota groups are on.
    pub fn has_quota(&self) -> bool {
        self.quota
    }

    /// The image the store is in; `None` when it is the data directory's own filesystem.
    pub fn image(&self) -> Option<&Path> {
        self.image.as_deref()
    }

    /// Limits subvolume `path` to `max_bytes` (0: no limit): past it, writes there fail with
    /// EDQUOT. Without quota groups, nothing.
    pub fn set_limit(&self, path: &Path, max_bytes: u64) -> io::Result<()> {
        if !self.quota {
            return Ok(());
        }
        sys::btrfs_qgroup_limit(File::open(path)?.as_fd(), max_bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("limit {} to {max_bytes} bytes: {e}", path.display())))
    }

    /// Unmounts the store's image, if it mounted one (lazily: its loop device goes once nothing
    /// holds the filesystem).
    pub fn close(self) -> io::Result<()> {
        if self.image.is_some() {
            nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| io::Error::other(format!("unmount {}: {e}", self.root.display())))?;
        }
        Ok(())
    }
}

/// The bytes subvolume `path` references (as of the last commit; a snapshot's, from its
/// making), without reading its files; `None` without quota groups.
pub fn referenced_bytes(path: &Path) -> io::Result<Option<u64>> {
    let dir = File::open(path)?;
    let id = sys::btrfs_subvolume_id(dir.as_fd())?;
    sys::btrfs_referenced_bytes(dir.as_fd(), id)
}

/// Whether `path` is on a btrfs filesystem.
pub fn is_btrfs(path: &Path) -> io::Result<bool> {
    Ok(crate::tree::is_btrfs_magic(&rustix::fs::statfs(path)?))
}

/// How often the store's image commits (btrfs's default: 30 s). btrfs's cleaner, which gives
/// back the space of deleted subvolumes (sandboxes' layers, snapshots), runs after these
/// periodic commits only: a store that is full gets that space back within this time.
const COMMIT_SECS: u32 = 5;

/// The smallest filesystem `mkfs.btrfs` makes, with room to spare.
const MIN_IMAGE: u64 = 256 << 20;

/// The size of a new image: at most `asked`, and at most nine tenths of the host's `free` bytes
/// (the image is sparse: past what the host can give, btrfs would meet write errors, not a full
/// filesystem). An error names both when that leaves too little.
fn image_size(asked: u64, free: u64) -> io::Result<u64> {
    let size = asked.min(free / 10 * 9);
    if size < MIN_IMAGE {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "the copy-on-write store needs at least {} MB for its image; the host has {} MB free (asked for {} MB)",
                MIN_IMAGE >> 20,
                free >> 20,
                asked >> 20
            ),
        ));
    }
    Ok(size)
}

/// Grows `image` (not mounted) towards `asked` bytes, as far as the host can back it: nine tenths
/// of what the image holds and the host has free. Whether it grew (by 64 MB or more; a store
/// never shrinks).
fn grow(image: &Path, asked: u64, free: u64) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(image)?;
    let held = meta.blocks() * 512;
    let target = asked.min((held + free) / 10 * 9);
    if target < meta.len() + (64 << 20) {
        return Ok(false);
    }
    fs::OpenOptions::new().write(true).open(image)?.set_len(target)?;
    tracing::info!("the copy-on-write store's image grows from {} to {} MB", meta.len() >> 20, target >> 20);
    Ok(true)
}

/// The directory `path` is in, open, and `path`'s last component.
fn parent_and_name(path: &Path) -> io::Result<(File, &OsStr)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("no parent or name: {}", path.display()));
    let parent = path.parent().ok_or_else(bad)?;
    let name = path.file_name().ok_or_else(bad)?;
    Ok((File::open(if parent.as_os_str().is_empty() { Path::new(".") } else { parent })?, name))
}

/// A new, empty subvolume at `path` (its parent directory must be on the store).
pub fn create_subvolume(path: &Path) -> io::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    sys::btrfs_subvolume_create(parent.as_fd(), name)
        .map_err(|e| io::Error::new(e.kind(), format!("create subvolume {}: {e}", path.display())))
}

/// A snapshot of subvolume `source` at `dest`: read-only for a snapshot layer. Its cost does
/// not grow with what `source` holds.
pub fn snapshot(source: &Path, dest: &Path, read_only: bool) -> io::Result<()> {
    let src = File::open(source)?;
    let (parent, name) = parent_and_name(dest)?;
    sys::btrfs_snapshot(src.as_fd(), parent.as_fd(), name, read_only)
        .map_err(|e| io::Error::new(e.kind(), format!("snapshot {} as {}: {e}", source.display(), dest.display())))
}

/// Removes subvolume `path` and what is in it. Its space comes back once btrfs's cleaner has
/// dropped it, after the next periodic commit (see [`COMMIT_SECS`]).
pub fn delete_subvolume(path: &Path) -> io::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    sys::btrfs_subvolume_destroy(parent.as_fd(), name)
        .map_err(|e| io::Error::new(e.kind(), format!("delete subvolume {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A store on an image in a temporary directory (root: a loop device and a mount),
    /// unmounted on drop, also when a test fails.
    fn store(dir: &Path) -> Closing {
        Closing(Some(CowStore::open(&dir.join("cow"), &dir.join("cow.img"), 1 << 30).expect("open the store")))
    }

    struct Closing(Option<CowStore>);

    impl Closing {
        fn close(mut self) -> io::Result<()> {
            self.0.take().unwrap().close()
        }
    }

    impl std::ops::Deref for Closing {
        type Target = CowStore;
        fn deref(&self) -> &CowStore {
            self.0.as_ref().unwrap()
        }
    }

    impl Drop for Closing {
        fn drop(&mut self) {
            if let Some(store) = self.0.take() {
                let _ = store.close();
            }
        }
    }

    #[test]
    fn a_snapshot_keeps_what_its_subvolume_held_and_costs_the_same_whatever_that_is() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path());
        assert!(is_btrfs(store.root()).unwrap());
        let layer = store.root().join("layer");
        create_subvolume(&layer).unwrap();
        fs::write(layer.join("a"), "before").unwrap();

        // 10,000 files and a 64 MB one: a snapshot copies none of them.
        let small = Instant::now();
        snapshot(&layer, &store.root().join("s0"), true).unwrap();
        let small = small.elapsed();
        for i in 0..10_000 {
            fs::write(layer.join(format!("f{i}")), i.to_string()).unwrap();
        }
        fs::write(layer.join("big"), vec![7u8; 64 << 20]).unwrap();
        let big = Instant::now();
        snapshot(&layer, &store.root().join("s1"), true).unwrap();
        let big = big.elapsed();
        eprintln!("snapshot of an almost empty subvolume: {small:?}; of 10,000 files and 64 MB: {big:?}");

        fs::write(layer.join("a"), "after").unwrap();
        fs::remove_file(layer.join("f7")).unwrap();
        let s1 = store.root().join("s1");
        assert_eq!(fs::read_to_string(s1.join("a")).unwrap(), "before");
        assert_eq!(fs::read_to_string(s1.join("f7")).unwrap(), "7");
        assert_eq!(fs::metadata(s1.join("big")).unwrap().len(), 64 << 20);
        let usage = crate::tree::disk_usage(&s1);
        assert!(usage >= 64 << 20, "a snapshot's disk usage is what it holds: {usage}");
        assert!(!store.root().join("s0/f7").exists());
        let err = fs::write(s1.join("a"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        // A writable snapshot of a read-only one: a sandbox's layer started from a snapshot.
        let child = store.root().join("child");
        snapshot(&s1, &child, false).unwrap();
        fs::write(child.join("a"), "child").unwrap();
        assert_eq!(fs::read_to_string(s1.join("a")).unwrap(), "before");

        for sub in ["child", "s0"] {
            delete_subvolume(&store.root().join(sub)).unwrap();
        }
        // Removing a tree takes its subvolumes whole, read-only ones too: a sandbox's directory
        // with its layer in it, a snapshot layer.
        let sandbox = store.root().join("sandbox");
        fs::create_dir(&sandbox).unwrap();
        fs::write(sandbox.join("hostname"), "x").unwrap();
        snapshot(&layer, &sandbox.join("layer"), false).unwrap();
        for gone in [&sandbox, &s1, &layer] {
            crate::tree::remove_tree(gone).unwrap();
            assert!(!gone.exists(), "{}", gone.display());
        }
        assert_eq!(fs::read_dir(store.root()).unwrap().count(), 0);
        let err = create_subvolume(&store.root().join("a/b")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(snapshot(&tmp.path().join("nothing"), &store.root().join("x"), true).is_err());
        let root = store.root().to_path_buf();
        store.close().unwrap();
        assert!(!mounted(&root), "unmounted");
    }

    #[test]
    fn a_limit_bounds_what_a_subvolume_holds_not_what_its_snapshots_keep() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path());
        assert!(store.has_quota());
        let layer = store.root().join("layer");
        create_subvolume(&layer).unwrap();
        store.set_limit(&layer, 16 << 20).unwrap();
        // As a process writes: a MB at a time.
        let write = |name: &str, mb: usize| {
            use std::io::Write;
            let mut file = File::create(layer.join(name))?;
            (0..mb).try_for_each(|_| file.write_all(&[1u8; 1 << 20]))
        };
        write("a", 10).unwrap();
        let err = write("b", 10).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
        fs::remove_file(layer.join("b")).unwrap();
        sync_fs(&layer);
        let held = referenced_bytes(&layer).unwrap().unwrap();
        assert!((10 << 20..11 << 20).contains(&held), "the layer references {held} bytes");

        // A snapshot references what its subvolume did, known without reading a file.
        let snap = store.root().join("snap");
        snapshot(&layer, &snap, true).unwrap();
        assert_eq!(referenced_bytes(&snap).unwrap(), Some(held));
        // What only the snapshot keeps no longer counts against the layer: it can write as much
        // again.
        fs::remove_file(layer.join("a")).unwrap();
        sync_fs(&layer);
        write("c", 10).unwrap();
        // No limit: as much as the store holds.
        store.set_limit(&layer, 0).unwrap();
        write("d", 20).unwrap();
        let unknown = tmp.path().join("elsewhere");
        fs::create_dir(&unknown).unwrap();
        assert!(store.set_limit(&unknown, 1 << 20).unwrap_err().to_string().contains("elsewhere"));
        store.close().unwrap();
    }

    /// Commits `path`'s filesystem: quota groups count at commits.
    fn sync_fs(path: &Path) {
        rustix::fs::syncfs(File::open(path).unwrap()).unwrap();
    }

    fn mounted(path: &Path) -> bool {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        info.lines().any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
    }

    #[test]
    fn an_image_fits_what_the_host_has() {
        assert_eq!(image_size(64 << 30, 1 << 40).unwrap(), 64 << 30, "the size asked for");
        assert_eq!(image_size(64 << 30, 10 << 30).unwrap(), 9 << 30, "nine tenths of what is free");
        let err = image_size(64 << 30, 200 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("200 MB free") && err.to_string().contains("65536 MB"), "{err}");
    }

    #[test]
    fn an_image_grows_to_what_is_asked_when_opened_again() {
        let tmp = tempfile::tempdir().unwrap();
        let size = |root: &Path| {
            let s = nix::sys::statvfs::statvfs(root).unwrap();
            s.blocks() * s.fragment_size()
        };
        let open =
            |bytes| Closing(Some(CowStore::open(&tmp.path().join("cow"), &tmp.path().join("cow.img"), bytes).unwrap()));
        let first = open(1 << 30);
        fs::write(first.root().join("kept"), "yes").unwrap();
        let before = size(first.root());
        assert!(before <= 1 << 30, "{before}");
        first.close().unwrap();
        let again = open(2 << 30);
        let after = size(again.root());
        assert!(after > before + (900 << 20), "the filesystem grew with its image: {before} → {after}");
        assert_eq!(fs::metadata(tmp.path().join("cow.img")).unwrap().len(), 2 << 30);
        assert_eq!(fs::read_to_string(again.root().join("kept")).unwrap(), "yes");
        again.close().unwrap();
        // Asked for less: it stays as it is.
        let smaller = open(1 << 30);
        assert_eq!(fs::metadata(tmp.path().join("cow.img")).unwrap().len(), 2 << 30);
        smaller.close().unwrap();
    }

    #[test]
    fn an_image_is_made_once_and_opened_again() {
        let tmp = tempfile::tempdir().unwrap();
        let first = store(tmp.path());
        fs::write(first.root().join("kept"), "yes").unwrap();
        first.close().unwrap();
        let again = store(tmp.path());
        assert_eq!(fs::read_to_string(again.root().join("kept")).unwrap(), "yes");
        // Sparse: the 1 GB image holds only what btrfs wrote.
        use std::os::unix::fs::MetadataExt;
        let blocks = fs::metadata(tmp.path().join("cow.img")).unwrap().blocks() * 512;
        assert!(blocks < 64 << 20, "the image takes {blocks} bytes");
        again.close().unwrap();
    }
}
