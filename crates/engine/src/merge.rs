//! Folding one overlayfs layer onto another, offline, as overlayfs would show them stacked:
//! used to flatten long snapshot chains into one layer.
//!
//! Layers are written with `redirect_dir` and `metacopy` off, so whiteouts (0/0 character
//! devices) and opaque directories (`trusted.overlay.opaque = y`) are all there is to follow.

use crate::copy::{copy_metadata, copy_tree, get_xattr, set_xattr};
use crate::template::remove_all;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Applies the layer at `upper` (with its `root` and `usr` parts) onto the layer at `merged`.
pub fn apply_layer(upper: &Path, merged: &Path) -> io::Result<()> {
    for part in ["root", "usr"] {
        let (src, dst) = (upper.join(part), merged.join(part));
        if !src.exists() {
            continue;
        }
        if !dst.exists() {
            copy_tree(&src, &dst)?;
        } else {
            apply_dir(&src, &dst)?;
        }
    }
    Ok(())
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> io::Result<bool> {
    Ok(get_xattr(dir, OPAQUE_XATTR)?.as_deref() == Some(b"y"))
}

fn apply_dir(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (s, d) = (entry.path(), dst.join(entry.file_name()));
        let meta = fs::symlink_metadata(&s)?;
        let below = fs::symlink_metadata(&d).ok();
        if meta.is_dir() && !is_opaque(&s)? && below.as_ref().is_some_and(|b| b.is_dir()) {
            // A directory over a directory: their contents merge.
            apply_dir(&s, &d)?;
            copy_metadata(&s, &d)?;
            continue;
        }
        // Anything else replaces what was below, whiteouts included (they keep hiding the
        // template under the merged layer).
        remove_all(&d)?;
        copy_tree(&s, &d)?;
        if meta.is_dir() && below.as_ref().is_some_and(is_whiteout) {
            // Over a whiteout, a directory hid everything below it: say so explicitly.
            set_xattr(&d, OPAQUE_XATTR, b"y")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whiteout(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: test: an overlay whiteout is a 0/0 character device.
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) }, 0);
    }

    #[test]
    fn upper_entries_replace_merge_and_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        for d in [&lower, &upper] {
            fs::create_dir_all(d.join("root/tmp")).unwrap();
            fs::create_dir_all(d.join("usr")).unwrap();
        }
        fs::write(lower.join("root/tmp/keep"), "lower").unwrap();
        fs::write(lower.join("root/tmp/change"), "old").unwrap();
        fs::write(lower.join("root/tmp/gone"), "x").unwrap();
        fs::create_dir_all(lower.join("root/opaque/inner")).unwrap();
        fs::write(upper.join("root/tmp/change"), "new").unwrap();
        whiteout(&upper.join("root/tmp/gone"));
        fs::create_dir(upper.join("root/opaque")).unwrap();
        set_xattr(&upper.join("root/opaque"), OPAQUE_XATTR, b"y").unwrap();
        fs::write(upper.join("root/opaque/only"), "u").unwrap();
        fs::write(upper.join("usr/added"), "u").unwrap();

        apply_layer(&upper, &lower).unwrap();

        assert_eq!(fs::read_to_string(lower.join("root/tmp/keep")).unwrap(), "lower");
        assert_eq!(fs::read_to_string(lower.join("root/tmp/change")).unwrap(), "new");
        assert!(is_whiteout(&fs::symlink_metadata(lower.join("root/tmp/gone")).unwrap()));
        assert!(!lower.join("root/opaque/inner").exists());
        assert!(lower.join("root/opaque/only").exists() && is_opaque(&lower.join("root/opaque")).unwrap());
        assert!(lower.join("usr/added").exists());
    }
}
