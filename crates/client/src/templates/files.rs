//! The files of a COPY step, as e2b's builder finds, hashes and packs them, so that both SDKs
//! send the same `filesHash` (the server's cache key) and the same archive:
//!
//! - **which files**: the entries of the context directory `src` matches (a glob, hidden files
//!   included), each matched directory with everything under it, less what an ignore pattern
//!   matches (the template's `fileIgnorePatterns` and the context's `.dockerignore`; `dir/**`
//!   ignores a whole tree), sorted by path; symlinks are never followed while searching;
//! - **the hash**: SHA-256 of `COPY <src> <dest>`, then per file its path relative to the
//!   context, its mode and size (of the link itself, and its target's text, for a symlink that
//!   is kept as one), and a regular file's bytes;
//! - **the archive**: a tar (gzip-compressed unless the step says `gzip: false`) of exactly
//!   those paths, relative to the context, with modes, owners and times; symlinks stay links
//!   unless `resolveSymlinks` (then an existing target's content is stored under the link's name).

use crate::error::{Error, Result};
use glob::{MatchOptions, Pattern};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Glob rules of e2b's matcher: `*` stays within a path component, hidden files match.
const MATCH: MatchOptions =
    MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// The ignore patterns of a build: the template's, then the context's `.dockerignore` lines
/// (trimmed; blank lines and `#` comments dropped).
pub fn ignore_patterns(context: &Path, template_patterns: &[String]) -> Vec<String> {
    let mut out = template_patterns.to_vec();
    if let Ok(text) = fs::read_to_string(context.join(".dockerignore")) {
        out.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string));
    }
    out
}

/// e2b's check of a COPY source: relative, and inside the context.
pub fn check_source(src: &str) -> Result<()> {
    if src.starts_with('/') {
        return Err(Error::Template(format!(
            "Invalid source path \"{src}\": absolute paths are not allowed. Use a relative path within the context directory."
        )));
    }
    if normalize(src).split('/').next() == Some("..") {
        return Err(Error::Template(format!(
            "Invalid source path \"{src}\": path escapes the context directory. The path must stay within the context directory."
        )));
    }
    Ok(())
}

/// `a/./b/../c/` → `a/c`; `.` → `` (the context itself). A `..` that climbs out stays.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Ignore patterns, compiled.
struct Ignores(Vec<(Pattern, Option<String>)>);

impl Ignores {
    fn new(patterns: &[String]) -> Result<Self> {
        let compiled = patterns
            .iter()
            .map(|p| {
                let norm = normalize(p);
                let pattern =
                    Pattern::new(&norm).map_err(|e| Error::Template(format!("Invalid ignore pattern {p:?}: {e}")))?;
                // `dir/**` ignores `dir` itself and everything under it.
                let tree = norm.strip_suffix("/**").map(str::to_string);
                Ok((pattern, tree))
            })
            .collect::<Result<_>>()?;
        Ok(Self(compiled))
    }

    fn ignored(&self, rel: &str) -> bool {
        !rel.is_empty()
            && self.0.iter().any(|(p, tree)| {
                p.matches_with(rel, MATCH)
                    || tree
                        .as_deref()
                        .is_some_and(|t| rel == t || rel.strip_prefix(t).is_some_and(|r| r.starts_with('/')))
            })
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Every path under `rel` (not itself), at most `depth` levels down; symlinks are not followed.
fn walk(context: &Path, rel: &str, depth: usize, out: &mut Vec<String>) -> Result<()> {
    if depth == 0 {
        return Ok(());
    }
    let dir = context.join(rel);
    let entries = fs::read_dir(&dir).map_err(|e| Error::Other(format!("Cannot list {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Other(format!("Cannot list {}: {e}", dir.display())))?;
        let child = join(rel, &entry.file_name().to_string_lossy());
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        out.push(child.clone());
        if is_dir {
            walk(context, &child, depth - 1, out)?;
        }
    }
    Ok(())
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// The files a COPY of `src` takes from `context`, as paths relative to it (`` for the
/// context itself), in e2b's order. `Err` when nothing matches, naming the path.
pub fn list(src: &str, context: &Path, ignore: &[String]) -> Result<Vec<String>> {
    check_source(src)?;
    let ignores = Ignores::new(ignore)?;
    let pattern = normalize(src);
    let mut matched = Vec::new();
    if !has_magic(&pattern) {
        if fs::symlink_metadata(context.join(&pattern)).is_ok() && !ignores.ignored(&pattern) {
            matched.push(pattern.clone());
        }
    } else {
        let glob = Pattern::new(&pattern).map_err(|e| Error::Template(format!("Invalid source path {src:?}: {e}")))?;
        // Search only under the part without wildcards, and no deeper than the pattern goes.
        let base: Vec<&str> = pattern.split('/').take_while(|p| !has_magic(p)).collect();
        let base = base.join("/");
        let depth = match pattern.contains("**") {
            true => usize::MAX,
            false => pattern.split('/').count() - base.split('/').filter(|p| !p.is_empty()).count(),
        };
        let mut candidates: Vec<String> = Some(base.clone()).filter(|b| !b.is_empty()).into_iter().collect();
        // The part without wildcards is followed even through a symlink, as a path is.
        if context.join(&base).is_dir() {
            walk(context, &base, depth, &mut candidates)?;
        }
        matched.extend(candidates.into_iter().filter(|c| glob.matches_with(c, MATCH) && !ignores.ignored(c)));
    }
    let mut files = BTreeSet::new();
    for m in matched {
        if is_real_dir(&context.join(&m)) {
            let mut under = Vec::new();
            walk(context, &m, usize::MAX, &mut under)?;
            files.extend(under.into_iter().filter(|u| !ignores.ignored(u)));
        }
        files.insert(m);
    }
    if files.is_empty() {
        return Err(Error::Other(format!("No files found in {}", context.join(&pattern).display())));
    }
    // e2b sorts by full path, comparing as JS strings do (UTF-16 code units).
    let mut files: Vec<String> = files.into_iter().collect();
    files.sort_by(|a, b| {
        let key = |s: &str| if s.is_empty() { Vec::new() } else { format!("/{s}").encode_utf16().collect::<Vec<_>>() };
        key(a).cmp(&key(b))
    });
    Ok(files)
}

/// What a path is for hashing and packing: a symlink kept as a link, or what the path leads to.
enum Kind {
    Link { meta: Metadata, target: PathBuf },
    Other(Metadata),
}

fn kind(path: &Path, resolve_symlinks: bool) -> Result<Kind> {
    let io = |e: std::io::Error| Error::Other(format!("Cannot read {}: {e}", path.display()));
    let lmeta = fs::symlink_metadata(path).map_err(io)?;
    if lmeta.file_type().is_symlink() {
        let followed = fs::metadata(path).ok().filter(|m| m.is_file() || m.is_dir());
        match followed {
            Some(meta) if resolve_symlinks => return Ok(Kind::Other(meta)),
            _ => return Ok(Kind::Link { meta: lmeta, target: fs::read_link(path).map_err(io)? }),
        }
    }
    Ok(Kind::Other(lmeta))
}

/// The `filesHash` of a COPY of `src` to `dest` (lowercase hex SHA-256).
pub fn hash(src: &str, dest: &str, context: &Path, ignore: &[String], resolve_symlinks: bool) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("COPY {src} {dest}"));
    for rel in list(src, context, ignore)? {
        let path = context.join(&rel);
        h.update(&rel);
        match kind(&path, resolve_symlinks)? {
            Kind::Link { meta, target } => {
                h.update(meta.mode().to_string());
                h.update(meta.size().to_string());
                h.update(target.as_os_str().as_encoded_bytes());
            }
            Kind::Other(meta) => {
                h.update(meta.mode().to_string());
                h.update(meta.size().to_string());
                if meta.is_file() {
                    let mut file = fs::File::open(&path)
                        .map_err(|e| Error::Other(format!("Cannot read {}: {e}", path.display())))?;
                    std::io::copy(&mut file, &mut h)
                        .map_err(|e| Error::Other(format!("Cannot read {}: {e}", path.display())))?;
                }
            }
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the archive of a COPY of `src` to `out` (gzip-compressed when `gzip`).
pub fn archive(
    src: &str,
    context: &Path,
    ignore: &[String],
    resolve_symlinks: bool,
    gzip: bool,
    out: impl Write,
) -> Result<()> {
    let files = list(src, context, ignore)?;
    let io = |e: std::io::Error| Error::Other(format!("Packing the files of {src}: {e}"));
    if gzip {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        pack(&files, context, resolve_symlinks, gz)?.finish().map_err(io)?;
    } else {
        pack(&files, context, resolve_symlinks, out)?;
    }
    Ok(())
}

fn pack<W: Write>(files: &[String], context: &Path, resolve_symlinks: bool, out: W) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    for rel in files {
        let path = context.join(rel);
        let io = |e: std::io::Error| Error::Other(format!("Packing {}: {e}", path.display()));
        // The context itself is the archive's `./`.
        let name = if rel.is_empty() { "." } else { rel.as_str() };
        let mut header = tar::Header::new_gnu();
        match kind(&path, resolve_symlinks)? {
            Kind::Link { meta, target } => {
                header.set_metadata(&meta);
                header.set_size(0);
                tar.append_link(&mut header, name, &target).map_err(io)?;
            }
            Kind::Other(meta) if meta.is_file() => {
                header.set_metadata(&meta);
                tar.append_data(&mut header, name, fs::File::open(&path).map_err(io)?).map_err(io)?;
            }
            Kind::Other(meta) => {
                header.set_metadata(&meta);
                header.set_size(0);
                tar.append_data(&mut header, name, std::io::empty()).map_err(io)?;
            }
        }
    }
    tar.into_inner().map_err(|e| Error::Other(format!("Packing the files: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// The layout e2b's own tests copy from: files, a nested directory, links that resolve and
    /// one that does not.
    fn context() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::create_dir_all(p.join("folder/sub")).unwrap();
        fs::create_dir_all(p.join("node_modules/x")).unwrap();
        fs::create_dir_all(p.join(".hidden")).unwrap();
        fs::write(p.join("folder/a.txt"), "a\n").unwrap();
        fs::write(p.join("folder/sub/b.txt"), "b\n").unwrap();
        fs::write(p.join("node_modules/x/c.js"), "c\n").unwrap();
        fs::write(p.join(".hidden/h"), "h\n").unwrap();
        fs::write(p.join("top.log"), "t\n").unwrap();
        symlink("a.txt", p.join("folder/link")).unwrap();
        symlink("/nonexistent", p.join("folder/broken")).unwrap();
        d
    }

    fn ls(src: &str, ctx: &Path, ignore: &[&str]) -> Vec<String> {
        list(src, ctx, &ignore.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn files_are_found_as_e2bs_glob_finds_them() {
        // Expected lists: what e2b 2.51's getAllFilesInPath returns for the same layout.
        let d = context();
        let c = d.path();
        let folder = ["folder", "folder/a.txt", "folder/broken", "folder/link", "folder/sub", "folder/sub/b.txt"];
        assert_eq!(
            ls(".", c, &[]),
            [
                &[""][..],
                &[".hidden", ".hidden/h"],
                &folder,
                &["node_modules", "node_modules/x", "node_modules/x/c.js", "top.log"]
            ]
            .concat()
        );
        assert_eq!(ls(".", c, &["node_modules"]).iter().filter(|f| f.starts_with("node_modules")).count(), 2);
        assert!(!ls(".", c, &["node_modules/**"]).iter().any(|f| f.starts_with("node_modules")));
        let l = ls(".", c, &["*.log", "**/b.txt"]);
        assert!(!l.contains(&"top.log".to_string()) && !l.contains(&"folder/sub/b.txt".to_string()), "{l:?}");
        assert_eq!(ls("folder/*", c, &[]), folder[1..]);
        assert_eq!(
            ls("folder", c, &["folder/sub"]),
            ["folder", "folder/a.txt", "folder/broken", "folder/link", "folder/sub/b.txt"]
        );
        assert_eq!(ls("./folder", c, &[]), folder);
        assert_eq!(ls("folder/", c, &[]), folder);
        assert_eq!(ls("folder/../top.log", c, &[]), ["top.log"]);
        assert_eq!(ls("**/*.txt", c, &[]), ["folder/a.txt", "folder/sub/b.txt"]);
        let star = ls("*", c, &[".hidden"]);
        assert!(!star.iter().any(|f| f.starts_with(".hidden")) && star.contains(&"top.log".to_string()), "{star:?}");
    }

    #[test]
    fn bad_sources_name_the_path() {
        let d = context();
        let e = list("missing.txt", d.path(), &[]).unwrap_err();
        assert_eq!(e.to_string(), format!("No files found in {}/missing.txt", d.path().display()));
        assert_eq!(e.kind(), "Error");
        let e = list("/etc/passwd", d.path(), &[]).unwrap_err();
        assert_eq!(e.kind(), "TemplateError");
        assert!(
            e.to_string().starts_with("Invalid source path \"/etc/passwd\": absolute paths are not allowed"),
            "{e}"
        );
        let e = list("folder/../../x", d.path(), &[]).unwrap_err();
        assert!(e.to_string().contains("path escapes the context directory"), "{e}");
    }

    #[test]
    fn the_hash_follows_names_contents_modes_and_links() {
        let d = context();
        let c = d.path();
        let h = |src: &str, resolve: bool| hash(src, "dest", c, &[], resolve).unwrap();
        let first = h("folder", false);
        assert_eq!(first.len(), 64);
        assert_eq!(first, h("folder", false), "stable");
        assert_ne!(first, hash("folder", "other", c, &[], false).unwrap(), "the destination counts");
        assert_ne!(first, h("folder", true), "a resolved link hashes as its target");
        fs::write(c.join("folder/sub/b.txt"), "changed\n").unwrap();
        assert_ne!(first, h("folder", false));
        let before = h("top.log", false);
        fs::set_permissions(c.join("top.log"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert_ne!(before, h("top.log", false), "the mode counts");
    }

    #[test]
    fn the_archive_holds_the_listed_paths() {
        let d = context();
        let c = d.path();
        let mut gz = Vec::new();
        archive("folder", c, &[], false, true, &mut gz).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip");
        let mut plain = Vec::new();
        archive("folder", c, &[], false, false, &mut plain).unwrap();
        let mut entries = Vec::new();
        for e in tar::Archive::new(&plain[..]).entries().unwrap() {
            let e = e.unwrap();
            let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            entries.push((e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type(), link));
        }
        use tar::EntryType::*;
        assert_eq!(
            entries,
            vec![
                ("folder".into(), Directory, None),
                ("folder/a.txt".into(), Regular, None),
                ("folder/broken".into(), Symlink, Some("/nonexistent".into())),
                ("folder/link".into(), Symlink, Some("a.txt".into())),
                ("folder/sub".into(), Directory, None),
                ("folder/sub/b.txt".into(), Regular, None),
            ]
        );
        // Resolved: the link is its target's content; a broken one stays a link.
        let mut resolved = Vec::new();
        archive("folder/*", c, &[], true, false, &mut resolved).unwrap();
        let mut a = tar::Archive::new(&resolved[..]);
        let kinds: Vec<(String, tar::EntryType)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type())
            })
            .filter(|(p, _)| p.contains("link") || p.contains("broken"))
            .collect();
        assert_eq!(kinds, vec![("folder/broken".into(), Symlink), ("folder/link".into(), Regular)]);
    }

    #[test]
    fn dockerignore_lines_add_to_the_patterns() {
        let d = context();
        fs::write(d.path().join(".dockerignore"), "# comment\n\n  *.log  \nnode_modules/**\n").unwrap();
        assert_eq!(ignore_patterns(d.path(), &["x".into()]), vec!["x", "*.log", "node_modules/**"]);
    }
}
