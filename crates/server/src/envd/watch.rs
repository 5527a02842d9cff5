//! `filesystem.Filesystem/WatchDir`: a server stream of inotify events under a directory.
//!
//! The first message is `start`; then `filesystem{name, type}` events, `name` relative to the
//! watched directory, typed as envd (fsnotify) does: IN_CREATE and IN_MOVED_TO are CREATE,
//! IN_MODIFY is WRITE, IN_DELETE is REMOVE, IN_MOVED_FROM is RENAME (the old name), IN_ATTRIB
//! is CHMOD. A recursive watch adds every subdirectory, including ones created or moved in
//! later (whose existing entries are reported as CREATE, since they may predate the watch).
//! Keepalives as for process streams; the stream ends at `Connect-Timeout-Ms` (with
//! `deadline_exceeded`) or when the client goes away, which closes the inotify descriptor.

use super::connect::{self, Codec};
use super::filesystem::{path_arg, user_of};
use super::fsutil::rpc_error;
use super::process::{deadline, keepalive_interval};
use super::Shared;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use sandbank_protocol::connect::{end_stream_envelope, Code, ConnectError};
use sandbank_protocol::filesystem::*;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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

struct Watcher {
    fd: AsyncFd<OwnedFd>,
    recursive: bool,
    /// Watch descriptor → the directory's path relative to the watched root ("" for the root).
    dirs: HashMap<i32, PathBuf>,
    root: PathBuf,
}

impl Watcher {
    fn new(root: PathBuf, recursive: bool) -> io::Result<Self> {
        // SAFETY: inotify_init1 has no memory-safety preconditions.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the descriptor is owned by the AsyncFd and neither replaced nor closed while registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        let mut w = Self { fd, recursive, dirs: HashMap::new(), root };
        w.add(PathBuf::new())?;
        if recursive {
            let mut found = Vec::new();
            w.add_tree(Path::new(""), &mut found);
        }
        Ok(w)
    }

    fn add(&mut self, rel: PathBuf) -> io::Result<()> {
        let abs = self.root.join(&rel);
        let c = CString::new(abs.into_os_string().into_vec()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // The root may be a symlink to a directory; below it, symlinks are not followed.
        let mask = if rel.as_os_str().is_empty() { MASK } else { MASK | libc::IN_DONT_FOLLOW };
        // SAFETY: c is a valid NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.get_ref().as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.dirs.insert(wd, rel);
        Ok(())
    }

    /// Watches every directory below `rel` (not following symlinks); pushes what it finds.
    fn add_tree(&mut self, rel: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(self.root.join(rel)) else { return };
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            found.push(child.clone());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) && self.add(child.clone()).is_ok() {
                self.add_tree(&child, found);
            }
        }
    }

    /// Turns one read of the descriptor into events.
    fn parse(&mut self, buf: &[u8], out: &mut VecDeque<FilesystemEvent>) {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut off = 0;
        while off + HEADER <= buf.len() {
            // SAFETY: the kernel wrote a whole inotify_event header at `off`; read_unaligned
            // copes with the byte buffer's alignment.
            let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            let name_bytes = &buf[off + HEADER..(off + HEADER + ev.len as usize).min(buf.len())];
            off += HEADER + ev.len as usize;
            let name = OsStr::from_bytes(name_bytes.split(|b| *b == 0).next().unwrap_or(&[]));
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
            if self.recursive && ty == EventType::Create && ev.mask & libc::IN_ISDIR != 0 && self.add(rel.clone()).is_ok() {
                // Entries made before the watch existed would go unseen: report them.
                let mut found = Vec::new();
                self.add_tree(&rel, &mut found);
                out.extend(found.iter().map(|p| event(p, EventType::Create)));
            }
        }
    }

    async fn next_batch(&mut self, out: &mut VecDeque<FilesystemEvent>) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = super::fdio::read(&self.fd, &mut buf).await?;
            self.parse(&buf[..n], out);
            if !out.is_empty() {
                return Ok(());
            }
        }
    }
}

fn event(rel: &Path, ty: EventType) -> FilesystemEvent {
    FilesystemEvent { name: rel.to_string_lossy().into_owned(), r#type: ty as i32 }
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
    let setup = async {
        let path = path_arg(&req.path, &user_of(&envd, &headers)?)?;
        let meta = std::fs::metadata(&path).map_err(|e| rpc_error("watch", &path, &e))?;
        if !meta.is_dir() {
            return Err(ConnectError::new(Code::InvalidArgument, format!("path {:?} is not a directory", req.path)));
        }
        Watcher::new(path.clone(), req.recursive).map_err(|e| rpc_error("watch", &path, &e))
    };
    let watcher = match setup.await {
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
