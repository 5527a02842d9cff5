//! Exporting a snapshot as one archive and importing one ([`crate::snapshot_archive`] is the
//! format).
//!
//! The layers go through GNU tar (a child process), not the `tar` crate: a layer is an overlayfs
//! upper directory, and what makes it one must come through whole: whiteouts (character devices
//! 0:0), opaque directories and redirects (`trusted.overlay.*` extended attributes), numeric
//! owners (the sandboxes' mapped users), modes, symlinks, hardlinks, sparse files. GNU tar keeps
//! all of them in a POSIX archive (`--xattrs`, `--numeric-owner`, `--sparse`) and, unpacking as
//! root, makes the devices and restores the attributes; the `tar` crate writes neither
//! hardlinks nor extended attributes by itself. GNU tar also refuses members with `..` and
//! defers absolute symlinks until the end of the extraction, so that no member is written
//! through a symlink an earlier one made.
//!
//! An import unpacks into `<layers>/.staging/<layer id>` (removed at every start: never
//! complete) and publishes only once the archive's digest matched: the layers renamed into
//! place, then the snapshot's record committed, as a snapshot's own publishing does.

use super::*;
use crate::copy::{sync_dir, sync_filesystem};
use crate::id;
use crate::snapshot_archive::{ArchiveError, ArchiveReader, ArchiveWriter, Manifest, ManifestSnapshot};
use crate::store::SnapshotRecord;
use crate::template::remove_all;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// What an imported snapshot's `origin_sandbox` says.
pub const IMPORTED_ORIGIN: &str = "imported";

/// The extended attributes a layer's tar carries: overlayfs's (whiteouts of directories, opaque
/// directories, redirects), the user's, and file capabilities.
const XATTRS: [&str; 3] =
    ["--xattrs-include=trusted.*", "--xattrs-include=user.*", "--xattrs-include=security.capability"];

/// A snapshot ready to be written as an archive ([`SnapshotExport::write_to`]); its layers are
/// kept from layer collection for as long as it lives.
#[derive(Debug)]
pub struct SnapshotExport {
    manifest: Manifest,
    layers: Vec<PathBuf>,
    _kept: KeptLayers,
}

/// A snapshot imported, and the name it could not keep (a live snapshot here has it).
#[derive(Clone, Debug)]
pub struct ImportedSnapshot {
    pub info: SnapshotInfo,
    pub dropped_name: Option<String>,
}

impl Engine {
    /// Prepares the export of a snapshot (by ID, with or without a tag, or by name).
    pub fn export_snapshot(&self, id_or_name: &str) -> Result<SnapshotExport, ArchiveError> {
        let untagged = id_or_name.rsplit_once(':').map_or(id_or_name, |(base, _)| base);
        let record = self
            .state
            .lock()
            .unwrap()
            .store
            .get_live(untagged, super::snapshot::now_ns())
            .map_err(EngineError::from)?
            .ok_or_else(|| ArchiveError::NotFound(id_or_name.to_string()))?;
        let full = self.layout.memory_images(&record.id).is_dir();
        let base_image = match record.template.as_str() {
            crate::template::BASE => self.base_image_id(),
            // An image pulled from a registry: its template's name is its manifest's digest.
            other => other.to_string(),
        };
        let manifest = Manifest {
            format: crate::snapshot_archive::FORMAT.into(),
            version: crate::snapshot_archive::FORMAT_VERSION,
            snapshot: ManifestSnapshot {
                id: record.id.clone(),
                names: record.name.clone().into_iter().collect(),
                metadata: record.metadata.clone(),
                origin_sandbox: record.origin_sandbox.clone(),
                created_at: record.created_at,
                size_bytes: record.size_bytes,
                mode: "filesystem".into(),
                source_mode: if full { "full" } else { "filesystem" }.into(),
            },
            template: record.template.clone(),
            base_image,
            layers: record.layers.len(),
            exporter: format!("sandbank {}", env!("CARGO_PKG_VERSION")),
            exported_at: super::snapshot::now_ns(),
        };
        let kept = KeptLayers::keep(&self.state, &record.layers);
        let layers = record.layers.iter().map(|l| self.layout.layer(l)).collect();
        Ok(SnapshotExport { manifest, layers, _kept: kept })
    }

    /// Imports a snapshot from an archive read from `input` (blocking: run it off the async
    /// threads). Nothing is published unless the whole archive was read and its digest
    /// matched; whatever went wrong, nothing is left behind.
    pub fn import_snapshot(&self, input: impl Read) -> Result<ImportedSnapshot, ArchiveError> {
        let (mut reader, manifest) = ArchiveReader::open(input)?;
        if self.template(&manifest.template).is_none() {
            return Err(ArchiveError::TemplateMissing(manifest.template.clone()));
        }
        if manifest.template == crate::template::BASE && manifest.base_image != self.base_image_id() {
            return Err(ArchiveError::BaseImageMismatch { archive: manifest.base_image, here: self.base_image_id() });
        }
        let id = id::new_id();
        // The whole chain gets new IDs: the layers of the exporting server's other snapshots may
        // be here under their own (another import of the same lineage, or the server itself).
        let layer_ids: Vec<String> =
            std::iter::once(id.clone()).chain((1..manifest.layers).map(|_| id::new_id())).collect();
        fs::create_dir_all(self.layout.staging()).map_err(ArchiveError::io("create the staging directory"))?;
        let mut staged = Staged { dirs: Vec::new() };
        for (n, layer) in layer_ids.iter().enumerate() {
            let dir = self.layout.staging().join(layer);
            let made = match self.cow.is_some() {
                // A layer on the copy-on-write store is a subvolume, as a snapshot's is.
                true => crate::cow::create_subvolume(&dir),
                false => fs::create_dir(&dir),
            };
            made.map_err(ArchiveError::io(format!("make staging layer {}", dir.display())))?;
            staged.dirs.push(dir.clone());
            let Some(mut tar) = reader.next_layer()? else {
                unreachable!("the reader counts the layers its manifest says")
            };
            unpack(&mut tar, &dir).and_then(|()| no_devices(&dir, &dir)).map_err(|e| match e {
                ArchiveError::Corrupted(why) => ArchiveError::Corrupted(format!("layer {n}: {why}")),
                other => other,
            })?;
        }
        // The digest, and the end of the archive.
        if reader.next_layer()?.is_some() {
            return Err(ArchiveError::Corrupted(format!("more layers than the {} its manifest says", manifest.layers)));
        }
        for dir in &staged.dirs {
            sync_filesystem(dir).map_err(ArchiveError::io("sync the imported layers"))?;
        }

        // A name as the API takes them (an archive is not trusted to have checked).
        let name = manifest.snapshot.names.first().cloned().filter(|n| {
            (1..=128).contains(&n.len())
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !id::is_valid(n)
        });
        let now = super::snapshot::now_ns();
        let name_free = |n: &String| {
            self.template(n).is_none() && self.state.lock().unwrap().store.get_live(n, now).ok().flatten().is_none()
        };
        let dropped_name = name.clone().filter(|n| !name_free(n));
        if let Some(name) = &dropped_name {
            tracing::warn!(snapshot = id, name, "imported without its name: a snapshot here has it");
        }
        let record = SnapshotRecord {
            id: id.clone(),
            name: name.filter(|_| dropped_name.is_none()),
            origin_sandbox: IMPORTED_ORIGIN.into(),
            parent: None,
            template: manifest.template.clone(),
            layers: layer_ids.clone(),
            size_bytes: manifest.snapshot.size_bytes,
            created_at: now,
            metadata: manifest.snapshot.metadata.clone(),
            expires_at: None,
        };
        // Publish: the layers under the chain first, then the top one with the record (which a
        // name taken meanwhile still refuses). Layer collection leaves them all alone meanwhile.
        let _kept = KeptLayers::keep(&self.state, &layer_ids);
        let published = (|| {
            for layer in &layer_ids[1..] {
                fs::rename(self.layout.staging().join(layer), self.layout.layer(layer))
                    .map_err(ArchiveError::io("publish an imported layer"))?;
            }
            sync_dir(&self.layout.layers()).map_err(ArchiveError::io("sync the layers directory"))?;
            super::snapshot::publish(&self.layout, &self.state, &record, false).map_err(ArchiveError::from)
        })();
        if let Err(e) = published {
            for layer in &layer_ids {
                let _ = remove_all(&self.layout.layer(layer));
            }
            return Err(e);
        }
        staged.dirs.clear();
        tracing::info!(snapshot = id, from = manifest.snapshot.id, layers = layer_ids.len(), "snapshot imported");
        let info = SnapshotInfo { mode: SnapshotMode::Filesystem, ..record.into() };
        Ok(ImportedSnapshot { info, dropped_name })
    }
}

impl SnapshotExport {
    /// The snapshot's ID on this server.
    pub fn snapshot_id(&self) -> &str {
        &self.manifest.snapshot.id
    }

    /// Writes the archive into `out` (blocking); returns its content digest (hex SHA-256).
    pub fn write_to<W: Write>(self, out: W) -> Result<String, ArchiveError> {
        let mut w = ArchiveWriter::new(out, &self.manifest).map_err(ArchiveError::io("write the archive"))?;
        for layer in &self.layers {
            let mut section = w.layer().map_err(ArchiveError::io("write the archive"))?;
            pack(layer, &mut section)?;
            section.finish().map_err(ArchiveError::io("write the archive"))?;
        }
        let (mut out, digest) = w.finish().map_err(ArchiveError::io("write the archive"))?;
        out.flush().map_err(ArchiveError::io("write the archive"))?;
        Ok(digest)
    }
}

/// Writes the tar of layer `dir` (its files: not the images of processes nor overlayfs's work
/// directories) into `out`.
fn pack(dir: &Path, out: &mut impl Write) -> Result<(), ArchiveError> {
    let mut cmd = Command::new("tar");
    cmd.args(["--create", "--file=-", "--format=posix", "--numeric-owner", "--sparse", "--xattrs"])
        .args(XATTRS)
        .args(["--anchored", "--exclude=./memory", "--exclude=./work", "--directory"])
        .arg(dir)
        .arg(".")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_tar(cmd)?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Its errors, read aside so that a chatty tar never blocks.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let copied = copy_big(&mut stdout, out);
    drop(stdout);
    if copied.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(ArchiveError::io("wait for tar"))?;
    let errors = errors.join().unwrap_or_default();
    copied.map_err(ArchiveError::io(format!("write the tar of {}", dir.display())))?;
    if !status.success() {
        return Err(ArchiveError::Io {
            step: format!("tar of {}", dir.display()),
            source: io::Error::other(format!("{status}: {}", errors.trim())),
        });
    }
    Ok(())
}

/// Unpacks a layer's tar from `tar` into `dir`.
fn unpack(tar: &mut impl Read, dir: &Path) -> Result<(), ArchiveError> {
    let mut cmd = Command::new("tar");
    cmd.args(["--extract", "--file=-", "--numeric-owner", "--same-owner", "--same-permissions", "--xattrs"])
        .args(XATTRS)
        .arg("--directory")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = spawn_tar(cmd)?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let copied = copy_big(tar, &mut stdin);
    drop(stdin);
    let read_failed = copied.as_ref().is_err_and(|e| e.kind() != io::ErrorKind::BrokenPipe);
    if read_failed {
        // The archive's fault (or the upload's): tar has nothing more to unpack.
        let _ = child.kill();
    }
    let status = child.wait().map_err(ArchiveError::io("wait for tar"))?;
    let errors = errors.join().unwrap_or_default();
    match copied {
        Err(e) if read_failed => return Err(ArchiveError::from_read(e)),
        _ => {}
    }
    if !status.success() {
        return Err(ArchiveError::Corrupted(format!("tar could not unpack it ({status}): {}", errors.trim())));
    }
    // tar stops at its end-of-archive blocks: what follows them must be read (and hashed) too.
    let rest = io::copy(tar, &mut io::sink()).map_err(ArchiveError::from_read)?;
    if rest > 0 {
        tracing::debug!(bytes = rest, "padding after a layer's tar");
    }
    Ok(())
}

/// Refuses device nodes in an unpacked layer but overlayfs's whiteouts (character devices 0:0):
/// a layer is mounted under sandboxes, and an archive is not to hand them a device.
fn no_devices(root: &Path, dir: &Path) -> Result<(), ArchiveError> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let entries = fs::read_dir(dir).map_err(ArchiveError::io(format!("read {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(ArchiveError::io(format!("read {}", dir.display())))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(ArchiveError::io(format!("stat {}", path.display())))?;
        let kind = meta.file_type();
        if (kind.is_char_device() && meta.rdev() != 0) || kind.is_block_device() {
            let inside = path.strip_prefix(root).unwrap_or(&path);
            return Err(ArchiveError::Corrupted(format!(
                "it holds device node /{} (only overlayfs whiteouts, character devices 0:0, may be in a layer)",
                inside.display()
            )));
        }
        if kind.is_dir() {
            no_devices(root, &path)?;
        }
    }
    Ok(())
}

/// Starts a tar child that dies with the thread that waits for it (a server killed in the
/// middle of an import leaves no tar writing into staging after the next start cleared it), and
/// inherits none of the server's descriptors.
fn spawn_tar(mut cmd: Command) -> Result<std::process::Child, ArchiveError> {
    let steps = crate::sys::BeforeExec { close_inherited: true, die_with_parent: true, ..Default::default() };
    crate::sys::before_exec(&mut cmd, steps);
    cmd.spawn().map_err(ArchiveError::io("run tar"))
}

/// `io::copy` with a large buffer: fewer, larger chunks in the archive, and fewer calls into
/// the compressor and the hash (`io::copy`'s buffer is 8 KiB).
fn copy_big(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Staged layers, removed unless they were published.
struct Staged {
    dirs: Vec<PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Err(e) = remove_all(dir) {
                tracing::error!("removing staged layer {}: {e}", dir.display());
            }
        }
    }
}

/// Layers that layer collection must leave alone while this lives (in `State::publishing`):
/// those of a snapshot being exported, or being imported. Only those it added go when it does.
#[derive(Debug)]
struct KeptLayers {
    state: Arc<Mutex<State>>,
    ids: Vec<String>,
}

impl KeptLayers {
    fn keep(state: &Arc<Mutex<State>>, layers: &[String]) -> Self {
        let mut guard = state.lock().unwrap();
        let ids = layers.iter().filter(|l| guard.publishing.insert((*l).clone())).cloned().collect();
        Self { state: Arc::clone(state), ids }
    }
}

impl Drop for KeptLayers {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.ids {
            state.publishing.remove(id);
        }
    }
}
