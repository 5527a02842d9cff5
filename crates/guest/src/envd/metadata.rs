//! User-defined file metadata (envd ≥ 0.6.2): extended attributes under `user.e2b.`.
//!
//! An upload's `X-Metadata-<key>: <value>` headers become `user.e2b.<key>` xattrs of each file it
//! writes, replacing the file's whole set (no header: the set is cleared, since `O_TRUNC` keeps
//! xattrs). `EntryInfo.metadata` reads them back, prefix stripped; other `user.*` xattrs are not
//! reported. Limits and messages are envd's (`packages/shared/pkg/filesystem/xattr.go`).

use axum::http::HeaderMap;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

pub type Metadata = BTreeMap<String, String>;

/// The xattr namespace of metadata; `user.` is the one unprivileged processes may write.
pub const XATTR_PREFIX: &str = "user.e2b.";
/// Request headers carrying metadata (matched case-insensitively; the key is lowercased).
const HEADER_PREFIX: &str = "x-metadata-";
/// The VFS limits a whole xattr name to 255 bytes.
pub const MAX_KEY_LEN: usize = 255 - XATTR_PREFIX.len();
/// ext4 keeps an inode's xattrs in one 4 KiB block: names (with the prefix) and values together
/// must stay under it, or the write would fail late with ENOSPC.
pub const MAX_TOTAL_LEN: usize = 4096;

/// The metadata of an upload's headers, validated. The first value of a repeated header wins;
/// `X-Metadata-` alone (an empty key) is ignored. The error is the message after
/// `invalid metadata: `.
pub fn from_headers(headers: &HeaderMap) -> Result<Metadata, String> {
    let mut raw: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for name in headers.keys() {
        // Header names are lowercase here.
        let Some(key) = name.as_str().strip_prefix(HEADER_PREFIX) else { continue };
        if key.is_empty() {
            continue;
        }
        if let Some(value) = headers.get(name) {
            raw.insert(key, value.as_bytes());
        }
    }
    validate(&raw)?;
    Ok(raw.into_iter().map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned())).collect())
}

fn validate(metadata: &BTreeMap<&str, &[u8]>) -> Result<(), String> {
    let mut total = 0;
    for (key, value) in metadata {
        if key.is_empty() {
            return Err("metadata key must not be empty".into());
        }
        if key.len() > MAX_KEY_LEN {
            return Err(format!("metadata key {key:?} exceeds {MAX_KEY_LEN} bytes"));
        }
        printable_ascii("key", key.as_bytes())?;
        printable_ascii(&format!("value for key {key:?}"), value)?;
        total += XATTR_PREFIX.len() + key.len() + value.len();
    }
    if total > MAX_TOTAL_LEN {
        return Err(format!("total metadata size {total} exceeds {MAX_TOTAL_LEN} bytes"));
    }
    Ok(())
}

fn printable_ascii(label: &str, s: &[u8]) -> Result<(), String> {
    match s.iter().position(|c| !(0x20..=0x7e).contains(c)) {
        Some(i) => Err(format!("metadata {label} contains non-printable-ASCII byte 0x{:02x} at offset {i}", s[i])),
        None => Ok(()),
    }
}

/// Whether `e` says the file system has no (user) xattrs: /proc, /sys, an old tmpfs.
pub fn is_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP) // = ENOTSUP on Linux
}

/// Reads a value whose size is asked first, again if it grew in between (ERANGE).
fn sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    fill: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    loop {
        let mut buf = vec![0u8; query()?];
        if buf.is_empty() {
            return Ok(buf);
        }
        match fill(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|b| *b == 0).filter(|n| !n.is_empty())
}

/// Replaces the metadata of the open `file` with `metadata`: `user.e2b.*` xattrs not in it are
/// removed, the others set. Through the descriptor, so a concurrent rename cannot redirect it.
pub fn write(file: &std::fs::File, metadata: &Metadata) -> io::Result<()> {
    use rustix::fs::{fremovexattr, fsetxattr, XattrFlags};
    let existing = sized(|| rustix::fs::flistxattr_query(file), |buf| rustix::fs::flistxattr(file, buf))?;
    for name in names(&existing) {
        let Some(key) = name.strip_prefix(XATTR_PREFIX.as_bytes()) else { continue };
        if std::str::from_utf8(key).is_ok_and(|k| metadata.contains_key(k)) {
            continue;
        }
        match fremovexattr(file, name) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (key, value) in metadata {
        fsetxattr(file, format!("{XATTR_PREFIX}{key}"), value.as_bytes(), XattrFlags::empty())?;
    }
    Ok(())
}

/// The metadata of `path` (a symlink is followed, as envd's `xattr.List` does); empty on a file
/// system without xattrs. A key or value that is not UTF-8 (set by other means than an upload,
/// e.g. `setfattr`) is skipped: the proto map holds strings.
pub fn read(path: &Path) -> io::Result<Metadata> {
    let list = match sized(|| rustix::fs::listxattr_query(path), |buf| rustix::fs::listxattr(path, buf)) {
        Err(e) if is_unsupported(&e) => return Ok(Metadata::new()),
        r => r?,
    };
    let mut out = Metadata::new();
    for name in names(&list) {
        let Some(key) = name.strip_prefix(XATTR_PREFIX.as_bytes()) else { continue };
        let value = sized(|| rustix::fs::getxattr_query(path, name), |buf| rustix::fs::getxattr(path, name, buf));
        let value = match value {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue, // removed meanwhile
            Err(e) => return Err(e),
        };
        if let (Ok(key), Ok(value)) = (std::str::from_utf8(key), String::from_utf8(value)) {
            out.insert(key.to_string(), value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn headers_become_lowercase_keys_and_the_first_value_wins() {
        let h = headers(&[
            ("X-Metadata-Author", b"me"),
            ("x-metadata-author", b"not me"),
            ("X-METADATA-Purpose", b"a b: c"),
            ("X-Metadata-", b"ignored"),
            ("X-Other", b"ignored"),
        ]);
        let m = from_headers(&h).unwrap();
        assert_eq!(m, Metadata::from([("author".into(), "me".into()), ("purpose".into(), "a b: c".into())]));
        assert!(from_headers(&HeaderMap::new()).unwrap().is_empty());
    }

    #[test]
    fn keys_and_values_are_checked_as_envd_does() {
        let err = from_headers(&headers(&[("x-metadata-k", b"caf\xc3\xa9")])).unwrap_err();
        assert_eq!(err, "metadata value for key \"k\" contains non-printable-ASCII byte 0xc3 at offset 3");
        let err = from_headers(&headers(&[("x-metadata-k", b"a\tb")])).unwrap_err();
        assert!(err.contains("byte 0x09 at offset 1"), "{err}");
        let long = format!("x-metadata-{}", "k".repeat(MAX_KEY_LEN + 1));
        let err = from_headers(&headers(&[(&long, b"v")])).unwrap_err();
        assert!(err.ends_with("exceeds 246 bytes"), "{err}");
        let fits = format!("x-metadata-{}", "k".repeat(MAX_KEY_LEN));
        assert!(from_headers(&headers(&[(&fits, b"v")])).is_ok());
        // 9 + 1 + 4086 = 4096 fits; one more byte does not.
        let v = "v".repeat(4086);
        assert!(from_headers(&headers(&[("x-metadata-a", v.as_bytes())])).is_ok());
        let v = "v".repeat(4087);
        let err = from_headers(&headers(&[("x-metadata-a", v.as_bytes())])).unwrap_err();
        assert_eq!(err, "total metadata size 4097 exceeds 4096 bytes");
    }

    #[test]
    fn write_replaces_only_the_e2b_namespace_and_read_strips_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        rustix::fs::setxattr(&path, "user.other", b"kept", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(&path, "user.e2b.stale", b"x", rustix::fs::XattrFlags::empty()).unwrap();
        let m = Metadata::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        write(&file, &m).unwrap();
        assert_eq!(read(&path).unwrap(), m);
        write(&file, &Metadata::new()).unwrap();
        assert!(read(&path).unwrap().is_empty());
        let mut buf = [0u8; 16];
        let n = rustix::fs::getxattr(&path, "user.other", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"kept", "other user.* attributes are left alone");
        // A value that is not UTF-8 is not reported; a symlink reports its target's metadata.
        rustix::fs::setxattr(&path, "user.e2b.bin", b"\xff", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(&path, "user.e2b.ok", b"yes", rustix::fs::XattrFlags::empty()).unwrap();
        std::os::unix::fs::symlink(&path, dir.path().join("l")).unwrap();
        assert_eq!(read(&dir.path().join("l")).unwrap(), Metadata::from([("ok".into(), "yes".into())]));
        // No xattrs on procfs: nothing, not an error.
        assert!(read(Path::new("/proc/self/status")).unwrap().is_empty());
    }
}
