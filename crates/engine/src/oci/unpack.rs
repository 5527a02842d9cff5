//! Applies an image's layers, in order, onto one directory: each layer is a tar archive
//! (plain or gzip) of what it adds or changes, and its whiteouts say what it removes from the
//! layers below (`.wh.<name>`: that name; `.wh..wh..opq`: all that was in the directory).
//!
//! Two passes over each archive: the whiteouts first, then the rest. A whiteout removes only
//! what the layers below made, wherever in the archive it comes (an opaque directory's own
//! files may come before its marker). Every path is resolved within the image's root
//! ([`super::confined`]): a layer's symlink never leads a later write out to the host. Device
//! nodes are left out.

use super::confined;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

const OPAQUE: &str = ".wh..wh..opq";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Applies the layer in `blob` (a tar archive, gzipped or not) onto `root` (canonical).
pub fn apply(root: &Path, blob: &Path) -> io::Result<()> {
    whiteouts(root, blob)?;
    let mut archive = open(blob)?;
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(rel) = confined::plain(&entry.path()?) else { continue };
        let Some(name) = rel.file_name() else { continue };
        // Device nodes are not made: a sandbox's /dev is its own, and a node in its root could
        // open one of the host's devices.
        let kind = entry.header().entry_type();
        if confined::is_whiteout(name) || kind.is_block_special() || kind.is_character_special() {
            continue;
        }
        let dst = make_room(root, &rel, entry.header().entry_type().is_dir())?;
        if entry.header().entry_type().is_hard_link() {
            let target = entry.link_name()?.and_then(|t| confined::plain(&t)).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: a hard link to nothing", rel.display()))
            })?;
            let target = confined::resolve_parent(root, &target)?;
            fs::hard_link(&target, &dst).map_err(|e| {
                io::Error::new(e.kind(), format!("hard link {} to {}: {e}", rel.display(), target.display()))
            })?;
            continue;
        }
        entry.unpack(&dst).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", rel.display())))?;
    }
    Ok(())
}

/// Applies the whiteouts of the layer in `blob`.
fn whiteouts(root: &Path, blob: &Path) -> io::Result<()> {
    for entry in open(blob)?.entries()? {
        let entry = entry?;
        let Some(rel) = confined::plain(&entry.path()?) else { continue };
        let (Some(name), Some(dir)) = (rel.file_name().and_then(|n| n.to_str()), rel.parent()) else { continue };
        if name == OPAQUE {
            let dir = match confined::resolve(root, dir) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                for child in fs::read_dir(&dir)? {
                    crate::tree::remove_tree(&child?.path())?;
                }
            }
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            match confined::resolve_parent(root, &dir.join(hidden)) {
                Ok(path) => crate::tree::remove_tree(&path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Where the entry `rel` goes, its parent directories made, and what is in its way removed
/// (a directory where a file goes, anything but a directory where a directory goes; a file
/// where a file goes is replaced by the unpacking itself).
fn make_room(root: &Path, rel: &Path, is_dir: bool) -> io::Result<PathBuf> {
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        // A layer may list a file before its directory, or never list the directory.
        confined::make_dirs(root, parent)?;
    }
    let dst = confined::resolve_parent(root, rel)?;
    if let Ok(meta) = fs::symlink_metadata(&dst) {
        match (meta.is_dir(), is_dir) {
            (true, false) => crate::tree::remove_tree(&dst)?,
            (false, true) => fs::remove_file(&dst)?,
            _ => {}
        }
    }
    Ok(dst)
}

/// The archive in `blob`, decompressed as its first bytes say.
fn open(blob: &Path) -> io::Result<tar::Archive<Box<dyn Read>>> {
    let mut file = File::open(blob)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    file.rewind()?;
    let reader: Box<dyn Read> = if n >= 2 && magic[..2] == GZIP_MAGIC {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else if n == 4 && magic == ZSTD_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a zstd-compressed layer: this server unpacks plain and gzip layers only",
        ));
    } else {
        Box::new(BufReader::new(file))
    };
    Ok(tar::Archive::new(reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped layer of `(path, Some(contents) | None for a directory)` and symlinks.
    fn layer(dir: &Path, name: &str, files: &[(&str, Option<&str>)], links: &[(&str, &str)]) -> PathBuf {
        let path = dir.join(name);
        let gz = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let header = || {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h
        };
        for (p, contents) in files {
            let mut h = header();
            match contents {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    tar.append_data(&mut h, p, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    tar.append_data(&mut h, p, io::empty()).unwrap();
                }
            }
        }
        for (p, target) in links {
            let mut h = header();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, p, target).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn whiteouts_remove_what_the_layers_below_made() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let one = layer(
            tmp.path(),
            "1",
            &[("etc/", None), ("etc/a", Some("a")), ("etc/b", Some("b")), ("opt/old/x", Some("x")), ("f", Some("f"))],
            &[],
        );
        // The opaque directory's new file comes before its marker.
        let two = layer(
            tmp.path(),
            "2",
            &[("etc/.wh.a", Some("")), ("opt/old/y", Some("y")), ("opt/old/.wh..wh..opq", Some("")), ("f/", None)],
            &[],
        );
        apply(&root, &one).unwrap();
        apply(&root, &two).unwrap();
        assert!(!root.join("etc/a").exists());
        assert_eq!(fs::read_to_string(root.join("etc/b")).unwrap(), "b");
        assert!(!root.join("opt/old/x").exists());
        assert_eq!(fs::read_to_string(root.join("opt/old/y")).unwrap(), "y");
        assert!(root.join("f").is_dir(), "a directory replaces a file");
        assert!(!root.join("etc/.wh.a").exists() && !root.join("opt/old/.wh..wh..opq").exists());
    }

    #[test]
    fn device_nodes_are_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        let path = tmp.path().join("layer");
        let mut tar = tar::Builder::new(File::create(&path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(1).unwrap();
        h.set_mode(0o666);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        tar.append_data(&mut h, "dev/mem", io::empty()).unwrap();
        tar.into_inner().unwrap();
        apply(&root.canonicalize().unwrap(), &path).unwrap();
        assert!(fs::symlink_metadata(root.join("dev/mem")).is_err());
    }

    #[test]
    fn a_layer_symlink_does_not_lead_writes_out_of_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "host").unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let one = layer(tmp.path(), "1", &[], &[("etc", outside.to_str().unwrap()), ("lib", "usr/lib")]);
        let two = layer(
            tmp.path(),
            "2",
            &[("etc/keep", Some("image")), ("etc/.wh.keep", Some("")), ("lib/x", Some("x"))],
            &[],
        );
        apply(&root, &one).unwrap();
        apply(&root, &two).unwrap();
        assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "host", "the host's file is untouched");
        let etc = root.join(outside.strip_prefix("/").unwrap());
        assert_eq!(fs::read_to_string(etc.join("keep")).unwrap(), "image", "written where the image's own link leads");
        assert_eq!(fs::read_to_string(root.join("usr/lib/x")).unwrap(), "x");
        assert!(fs::symlink_metadata(root.join("lib")).unwrap().file_type().is_symlink());
    }
}
