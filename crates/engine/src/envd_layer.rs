//! The read-only layer that puts envd in every sandbox: a copy of the `sandbank` binary at
//! `bin/envd`, laid over `/usr` above every other layer, so that PID 1 runs envd from inside the
//! sandbox (`sandbank_protocol::guest::ENVD_EXE`) and holds no host file (see the guest's
//! `init::handoff`). A copy, not a link: a rebuild that rewrites the host binary in place cannot
//! change what sandboxes run. One per binary, named after the host file's identity (device,
//! inode, size, modification time). The images of a sandbox's processes (a full snapshot's, a
//! pause's) name the layer they were taken with ([`record`]): their envd is that binary, so a
//! restore lays that layer, which stays until no images name it ([`remove_unused`]).

use crate::error::{During, SysError};
use crate::layout::Layout;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file in a directory of images that names the envd layer they were taken with.
const RECORD: &str = "sandbank-envd";

/// Makes (once per binary) the layer with `host_exe` as `bin/envd`, and returns its directory.
pub fn install(layout: &Layout, host_exe: &Path) -> Result<PathBuf, SysError> {
    let meta = fs::metadata(host_exe).during(format_args!("stat {}", host_exe.display()))?;
    let name = format!("{:x}-{:x}-{:x}-{:x}", meta.dev(), meta.ino(), meta.size(), meta.mtime_nsec() ^ meta.mtime());
    let layers = layout.envd_layers();
    let layer = layers.join(&name);
    let mut dirs = fs::DirBuilder::new();
    dirs.recursive(true).mode(0o755);
    dirs.create(&layers).during(format_args!("create {}", layers.display()))?;
    let exe = layer.join("bin/envd");
    if fs::metadata(&exe).is_ok_and(|m| m.len() == meta.size()) {
        return Ok(layer);
    }
    // Made aside, then moved into place: a crash halfway leaves no layer with half a binary.
    let staging = layers.join(format!(".{name}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let made = (|| {
        dirs.create(staging.join("bin"))?;
        let copy = staging.join("bin/envd");
        fs::copy(host_exe, &copy)?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
        fs::rename(&staging, &layer)
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    made.during(format_args!("copy {} into {}", host_exe.display(), layer.display()))?;
    Ok(layer)
}

/// Notes in `images` (a directory of CRIU images) that they were taken with envd layer `layer`.
pub fn record(images: &Path, layer: &Path) -> std::io::Result<()> {
    let name = layer.file_name().expect("an envd layer has a name").to_string_lossy();
    fs::write(images.join(RECORD), name.as_bytes())
}

/// The envd layer the images in `images` were taken with (`None` if they name none), if it is
/// still there.
pub fn recorded(layout: &Layout, images: &Path) -> Result<Option<PathBuf>, String> {
    let name = match fs::read_to_string(images.join(RECORD)) {
        Ok(name) => name,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("read {}: {e}", images.join(RECORD).display())),
    };
    let layer = layout.envd_layers().join(name.trim());
    match layer.join("bin/envd").is_file() {
        true => Ok(Some(layer)),
        false => Err(format!("the envd its processes ran ({}) is gone", layer.display())),
    }
}

/// Removes the envd layers but `current` and those that images (of a snapshot or of a paused
/// sandbox) were taken with.
pub fn remove_unused(layout: &Layout, current: &Path) {
    let mut keep: Vec<String> = Vec::new();
    for parent in [layout.layers(), layout.sandboxes()] {
        let Ok(entries) = fs::read_dir(&parent) else { continue };
        for entry in entries.flatten() {
            if let Ok(name) = fs::read_to_string(entry.path().join("memory").join(RECORD)) {
                keep.push(name.trim().to_string());
            }
        }
    }
    let Ok(entries) = fs::read_dir(layout.envd_layers()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path() != current && !keep.contains(&name) {
            tracing::debug!(layer = name, "removing an envd layer nothing uses");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_layer_per_binary_with_an_executable_copy() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path().join("data"));
        let exe = data.path().join("sandbank");
        fs::write(&exe, b"#!/bin/sh\necho one\n").unwrap();
        let first = install(&layout, &exe).unwrap();
        let copy = first.join("bin/envd");
        assert_eq!(fs::read(&copy).unwrap(), fs::read(&exe).unwrap());
        assert_eq!(fs::metadata(&copy).unwrap().permissions().mode() & 0o7777, 0o755);
        assert_eq!(fs::metadata(first.join("bin")).unwrap().permissions().mode() & 0o7777, 0o755);
        // The same binary: the same layer, untouched.
        assert_eq!(install(&layout, &exe).unwrap(), first);
        // Another binary: its own layer; the old one goes once no images name it.
        let images = layout.memory_images("snap1");
        fs::create_dir_all(&images).unwrap();
        record(&images, &first).unwrap();
        fs::remove_file(&exe).unwrap();
        fs::write(&exe, b"#!/bin/sh\necho two, longer\n").unwrap();
        let second = install(&layout, &exe).unwrap();
        assert_ne!(second, first);
        assert_eq!(fs::read(second.join("bin/envd")).unwrap(), fs::read(&exe).unwrap());
        remove_unused(&layout, &second);
        assert_eq!(recorded(&layout, &images).unwrap(), Some(first.clone()), "kept for the snapshot taken with it");
        // Copied elsewhere, the images still name it; once no images do, it goes.
        let copied = layout.sandbox("sb1").paused_memory();
        fs::create_dir_all(&copied).unwrap();
        fs::copy(images.join(RECORD), copied.join(RECORD)).unwrap();
        fs::remove_dir_all(layout.layer("snap1")).unwrap();
        remove_unused(&layout, &second);
        assert!(first.exists(), "kept for the paused sandbox");
        fs::write(copied.join(RECORD), "gone").unwrap();
        assert!(recorded(&layout, &copied).unwrap_err().contains("is gone"));
        fs::remove_dir_all(layout.sandbox("sb1").path()).unwrap();
        remove_unused(&layout, &second);
        assert!(!first.exists());
        assert_eq!(fs::read_dir(layout.envd_layers()).unwrap().count(), 1);
        assert_eq!(recorded(&layout, &copied).unwrap(), None, "images that name no layer");
    }
}
