//! The read-only layer that puts envd in every sandbox: a copy of the `sandbank` binary at
//! `bin/envd`, laid over `/usr` above every other layer, so that PID 1 runs envd from inside the
//! sandbox (`sandbank_protocol::guest::ENVD_EXE`) and holds no host file (see the guest's
//! `init::handoff`). A copy, not a link: a rebuild that rewrites the host binary in place cannot
//! change what sandboxes run. One per binary, named after the host file's identity (device,
//! inode, size, modification time); the others are removed when the engine opens.

use crate::error::{During, SysError};
use crate::layout::Layout;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Makes (once per binary) the layer with `host_exe` as `bin/envd`, removes the layers of other
/// binaries, and returns the layer's directory.
pub fn install(layout: &Layout, host_exe: &Path) -> Result<PathBuf, SysError> {
    let meta = fs::metadata(host_exe).during(format_args!("stat {}", host_exe.display()))?;
    let name = format!("{:x}-{:x}-{:x}-{:x}", meta.dev(), meta.ino(), meta.size(), meta.mtime_nsec() ^ meta.mtime());
    let layers = layout.envd_layers();
    let layer = layers.join(&name);
    let mut dirs = fs::DirBuilder::new();
    dirs.recursive(true).mode(0o755);
    dirs.create(&layers).during(format_args!("create {}", layers.display()))?;
    if let Ok(entries) = fs::read_dir(&layers) {
        for entry in entries.flatten().filter(|e| e.file_name() != name.as_str()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
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
        // Another binary: its own layer, and the old one goes.
        fs::remove_file(&exe).unwrap();
        fs::write(&exe, b"#!/bin/sh\necho two, longer\n").unwrap();
        let second = install(&layout, &exe).unwrap();
        assert_ne!(second, first);
        assert!(!first.exists());
        assert_eq!(fs::read(second.join("bin/envd")).unwrap(), fs::read(&exe).unwrap());
        assert_eq!(fs::read_dir(layout.envd_layers()).unwrap().count(), 1);
    }
}
