//! `filesystem.Filesystem/WatchDir`: a server stream of inotify events under a directory.
//!
//! The first message is `start`; then `filesystem{name, type}` events, `name` relative to the
//! watched directory, typed as envd (fsnotify) does: IN_CREATE and IN_MOVED_TO are CREATE,
//! IN_MODIFY is WRITE, IN_DELETE is REMOVE, IN_MOVED_FROM is RENAME (the old name), IN_ATTRIB
//! is CHMOD. A recursive watch adds every subdirectory, including ones created or moved in
//! later (whose existing entries are reported as CREATE, since they may predate the watch).
//! With `include_entry`, a CREATE, WRITE or CHMOD event carries the `EntryInfo` of its path when
//! it can still be read (a REMOVE or RENAME never does: its entry is gone, and whatever is at the
//! path now is another one). A kernel queue overflow ends the watch with an error, as fsnotify's.
//! A directory on a network file system (NFS, CIFS/SMB, FUSE) is refused unless
//! `allow_network_mounts`.
//! Keepalives as for process streams; the stream ends at `Connect-Timeout-Ms` (with
//! `deadline_exceeded`) or when the client goes away, which closes the inotify descriptor.

use super::connect::{self, Codec};
use super::creds;
use super::filesystem::{path_arg, user_of};
use super::fsutil::{entry_info, rpc_error};
use super::process::{deadline, keepalive_interval};
use super::users::{Names, User};
use super::Shared;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use sandbank_protocol::connect::{end_stream_envelope, Code, ConnectError};
use sandbank_protocol::filesystem::*;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

const MASK: u32 = libc::IN_CREATE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ONLYDIR;

/// File systems whose changes may never reach inotify (made by other machines, or by a FUSE
/// server behind the kernel's back), by `statfs` magic number (`include/uapi/linux/magic.h`): NFS,
/// CIFS, SMB, SMB2, FUSE. envd refuses to watch them unless the request allows it.
const NETWORK_FS_MAGIC: [u32; 5] = [0x6969, 0xFF53_4D42, 0x517B, 0xFE53_4D42, 0x6573_5546];

/// Whether `f_type` (a `statfs` magic number; a C long, the magics are 32-bit) is a network file system.
fn is_network_fs(f_type: i64) -> bool {
    u32::try_from(f_type & 0xFFFF_FFFF).is_ok_and(|m| NETWORK_FS_MAGIC.contains(&m))
}

/// The watch a `WatchDir` or `CreateWatcher` request asks for, set up as the request's user: they
/// see what they may read, and nothing a symlink leads to beyond it.
pub(super) fn open_watch(envd: &Shared, headers: &HeaderMap, req: &WatchDirRequest) -> Result<Watcher, ConnectError> {
    let user = user_of(envd, headers)?;
    creds::as_user(&user, || {
        let path = watched_dir(&user, req)?;
        Watcher::new(path.clone(), req.recursive, req.include_entry).map_err(|e| rpc_error("watch", &path, &e))
    })
    .unwrap_or_else(|e| Err(ConnectError::new(Code::Internal, e.to_string())))
}

/// Resolves and checks the directory a `WatchDir` or `CreateWatcher` request names, as envd does:
/// it must exist, be a directory (a symlink to one will do), and not be on a network mount unless
/// the request allows it.
fn watched_dir(user: &User, req: &WatchDirRequest) -> Result<PathBuf, ConnectError> {
    let path = path_arg(&req.path, user)?;
    let meta = std::fs::metadata(&path).map_err(|e| rpc_error("watch", &path, &e))?;
    if !meta.is_dir() {
        return Err(ConnectError::new(Code::InvalidArgument, format!("path {:?} is not a directory", req.path)));
    }
    if !req.allow_network_mounts {
        let fs = rustix::fs::statfs(&path).map_err(|e| {
            ConnectError::new(
                Code::Internal,
                format!("error checking mount status of {:?}: {}", req.path, io::Error::from(e)),
            )
        })?;
        #[allow(clippy::useless_conversion)] // a C long: i64 here, i32 on 32-bit targets
        let f_type = i64::from(fs.f_type);
        if is_network_fs(f_type) {
            return Err(ConnectError::new(
                Code::InvalidArgument,
                format!("cannot watch path on network filesystem: {}", path.display()),
            ));
        }
    }
    Ok(path)
}

type Batch = VecDeque<FilesystemEvent>;

pub(super) struct Watcher {
    fd: AsyncFd<OwnedFd>,
    recursive: bool,
    include_entry: bool,
    /// Watch descriptor → the directory's path relative to the watched root ("" for the root).
    dirs: HashMap<i32, PathBuf>,
    root: PathBuf,
    /// The kernel dropped events (IN_Q_OVERFLOW): the watch ends once what was read is out.
    overflowed: bool,
    /// A batch getting its entries on a blocking thread. Kept here, not in a future, so that
    /// `next_batch` stays cancel-safe: a stream's keepalive tick must not lose the batch.
    entries: Option<tokio::task::JoinHandle<Batch>>,
}

impl Watcher {
    pub(super) fn new(root: PathBuf, recursive: bool, include_entry: bool) -> io::Result<Self> {
        let fd = crate::sys::async_fd(crate::sys::inotify_init()?)?;
        let mut w = Self { fd, recursive, include_entry, dirs: HashMap::new(), root, overflowed: false, entries: None };
        w.add(PathBuf::new())?;
        if recursive {
            let mut found = Vec::new();
            w.add_tree(Path::new(""), &mut found);
        }
        Ok(w)
    }

    fn add(&mut self, rel: PathBuf) -> io::Result<()> {
        let abs = self.root.join(&rel);
        // The root may be a symlink to a directory; below it, symlinks are not followed.
        let mask = if rel.as_os_str().is_empty() { MASK } else { MASK | libc::IN_DONT_FOLLOW };
        let wd = crate::sys::inotify_add_watch(self.fd.get_ref().as_fd(), &abs, mask)?;
        self.dirs.insert(wd, rel);
        Ok(())
    }

    /// Watches every directory below `rel` (not following symlinks); pushes what it finds.
    /// Iterative (directories to visit on the heap): the tree may be as deep as the sandbox likes.
    /// Past PATH_MAX a directory cannot be watched, and what is below it is not visited.
    fn add_tree(&mut self, rel: &Path, found: &mut Vec<PathBuf>) {
        let mut dirs = vec![rel.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(self.root.join(&dir)) else { continue };
            for entry in entries.flatten() {
                let child = dir.join(entry.file_name());
                found.push(child.clone());
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) && self.add(child.clone()).is_ok() {
                    dirs.push(child);
                }
            }
        }
    }

    /// Turns one read of the descriptor into events.
    fn parse(&mut self, buf: &[u8], out: &mut VecDeque<FilesystemEvent>) {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut off = 0;
        while let Some(ev) = crate::sys::inotify_event_at(buf, off) {
            let name_bytes = &buf[off + HEADER..(off + HEADER + ev.len as usize).min(buf.len())];
            off += HEADER + ev.len as usize;
            let name = OsStr::from_bytes(name_bytes.split(|b| *b == 0).next().unwrap_or(&[]));
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                self.overflowed = true;
                continue;
            }
            if ev.mask & libc::IN_IGNORED != 0 {
                self.dirs.remove(&ev.wd);
                continue;
            }
            if name.is_empty() {
                continue; // an event on the directory itself
            }
            let Some(dir) = self.dirs.get(&ev.wd) else { continue };
            let rel = dir.join(name);
            let ty = if ev.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                EventType::Create
            } else if ev.mask & libc::IN_MODIFY != 0 {
                EventType::Write
            } else if ev.mask & libc::IN_DELETE != 0 {
                EventType::Remove
            } else if ev.mask & libc::IN_MOVED_FROM != 0 {
                EventType::Rename
            } else if ev.mask & libc::IN_ATTRIB != 0 {
                EventType::Chmod
            } else {
                continue;
            };
            out.push_back(event(&rel, ty));
            if self.recursive
                && ty == EventType::Create
                && ev.mask & libc::IN_ISDIR != 0
                && self.add(rel.clone()).is_ok()
            {
                // Entries made before the watch existed would go unseen: report them.
                let mut found = Vec::new();
                self.add_tree(&rel, &mut found);
                out.extend(found.iter().map(|p| event(p, EventType::Create)));
            }
        }
    }

    /// Waits for events and appends them to `out` (with their entries when asked). Cancel-safe.
    pub(super) async fn next_batch(&mut self, out: &mut Batch) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(task) = &mut self.entries {
                let batch = task.await.map_err(|e| io::Error::other(format!("reading the entries of events: {e}")));
                self.entries = None;
                out.extend(batch?);
                return Ok(());
            }
            if self.overflowed {
                return Err(io::Error::other("the kernel's event queue overflowed: events were lost"));
            }
            let n = super::fdio::read(&self.fd, &mut buf).await?;
            let mut batch = Batch::new();
            self.parse(&buf[..n], &mut batch);
            if batch.is_empty() {
                continue;
            }
            if !self.include_entry {
                out.extend(batch);
                return Ok(());
            }
            let root = self.root.clone();
            self.entries = Some(tokio::task::spawn_blocking(move || with_entries(&root, batch)));
        }
    }
}

/// Gives each CREATE, WRITE and CHMOD event the entry now at its path, when there is one.
fn with_entries(root: &Path, mut batch: Batch) -> Batch {
    let names = Names::load();
    for ev in batch.iter_mut().filter(|ev| carries_entry(ev.r#type)) {
        let path = root.join(&ev.name);
        match entry_info(&path, &names) {
            Ok(entry) => ev.entry = Some(Box::new(entry)),
            // Removed before it could be read: an ordinary race.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), "entry of a file-system event: {e}"),
        }
    }
    batch
}

/// Whether an event of type `ty` is about an entry still at its path (not a REMOVE or RENAME).
fn carries_entry(ty: i32) -> bool {
    ty == EventType::Create as i32 || ty == EventType::Write as i32 || ty == EventType::Chmod as i32
}

fn event(rel: &Path, ty: EventType) -> FilesystemEvent {
    FilesystemEvent { name: rel.to_string_lossy().into_owned(), r#type: ty as i32, entry: None }
}

struct State_ {
    watcher: Watcher,
    pending: VecDeque<FilesystemEvent>,
    codec: Codec,
    keepalive: Duration,
    deadline: Option<Instant>,
    started: bool,
    done: bool,
}

fn msg(codec: Codec, ev: WatchEvent) -> Bytes {
    connect::envelope(codec, &WatchDirResponse::new(ev))
}

fn event_stream(state: State_) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.started {
            st.started = true;
            return Some((Ok(msg(st.codec, WatchEvent::Start(WatchEmpty {}))), st));
        }
        if let Some(ev) = st.pending.pop_front() {
            return Some((Ok(msg(st.codec, WatchEvent::Filesystem(ev))), st));
        }
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let deadline_at = st.deadline.unwrap_or(far);
        let codec = st.codec;
        let bytes = tokio::select! {
            r = st.watcher.next_batch(&mut st.pending) => match r {
                Ok(()) => match st.pending.pop_front() {
                    Some(ev) => msg(codec, WatchEvent::Filesystem(ev)),
                    None => msg(codec, WatchEvent::Keepalive(WatchEmpty {})),
                },
                Err(e) => {
                    st.done = true;
                    end_stream_envelope(Some(ConnectError::new(Code::Internal, format!("reading file-system events: {e}"))))
                }
            },
            _ = tokio::time::sleep(st.keepalive) => msg(codec, WatchEvent::Keepalive(WatchEmpty {})),
            _ = tokio::time::sleep_until(deadline_at) => {
                st.done = true;
                end_stream_envelope(Some(ConnectError::new(Code::DeadlineExceeded, "the watch's deadline (Connect-Timeout-Ms) was exceeded")))
            }
        };
        Some((Ok(bytes), st))
    })
}

pub async fn watch_dir(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let (codec, req) = match connect::stream_request::<WatchDirRequest>(&headers, body).await {
        Ok(r) => r,
        Err(e) => return connect::early_stream_error(&headers, e),
    };
    let watcher = match open_watch(&envd, &headers, &req) {
        Ok(w) => w,
        Err(e) => return connect::stream_error(codec, e),
    };
    let state = State_ {
        watcher,
        pending: VecDeque::new(),
        codec,
        keepalive: keepalive_interval(&headers),
        deadline: deadline(&headers),
        started: false,
        done: false,
    };
    connect::stream_response(codec, event_stream(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_file_systems_are_told_by_their_magic() {
        for magic in [0x6969_i64, 0xFF53_4D42, 0x517B, 0xFE53_4D42, 0x6573_5546] {
            assert!(is_network_fs(magic), "{magic:#x}");
        }
        // As a 32-bit C long reads CIFS's magic.
        assert!(is_network_fs(i64::from(0xFF53_4D42_u32 as i32)));
        for local in [
            0xEF53_i64,  /* ext4 */
            0x794C_7630, /* overlayfs */
            0x0102_1994, /* tmpfs */
            0x5846_5342, /* xfs */
        ] {
            assert!(!is_network_fs(local), "{local:#x}");
        }
        let here = rustix::fs::statfs(std::env::temp_dir()).unwrap();
        #[allow(clippy::useless_conversion)]
        let f_type = i64::from(here.f_type);
        assert!(!is_network_fs(f_type));
    }

    #[test]
    fn entries_are_given_to_events_about_what_is_still_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("here"), "x").unwrap();
        let ev = |name: &str, ty: EventType| event(Path::new(name), ty);
        let batch = Batch::from([
            ev("here", EventType::Create),
            ev("here", EventType::Write),
            ev("here", EventType::Chmod),
            // A REMOVE or RENAME names an entry that is gone, whatever is at the path now.
            ev("here", EventType::Remove),
            ev("here", EventType::Rename),
            // Gone before the event was handled: none, and no error.
            ev("gone", EventType::Create),
        ]);
        let out = with_entries(dir.path(), batch);
        let with: Vec<bool> = out.iter().map(|e| e.entry.is_some()).collect();
        assert_eq!(with, [true, true, true, false, false, false]);
        let entry = out[0].entry.as_ref().unwrap();
        assert_eq!((entry.name.as_str(), entry.path.as_str()), ("here", dir.path().join("here").to_str().unwrap()));
    }
}
