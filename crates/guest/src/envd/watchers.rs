//! The polling watchers of `filesystem.Filesystem` (`CreateWatcher`, `GetWatcherEvents`,
//! `RemoveWatcher`), which E2B's synchronous Python SDK uses instead of the `WatchDir` stream.
//!
//! A watcher is the `WatchDir` watcher ([`super::watch`]) read by a task of its own into a buffer;
//! `GetWatcherEvents` returns the buffer and empties it. An unknown id is `not_found`
//! (`watcher with id <id> not found`), as in envd.
//!
//! The buffer holds at most [`MAX_BUFFERED_EVENTS`] events (envd's grows without bound): past it,
//! the watcher fails as envd's does when the kernel's queue overflows. Its inotify descriptor is
//! closed, the buffered events are dropped, and every `GetWatcherEvents` answers `internal` with
//! what happened until `RemoveWatcher`: a client that syncs from the events learns it missed some
//! instead of silently going wrong. Every watcher ends with the envd that made it (the table's
//! drop aborts their tasks), so nothing outlives the sandbox's envd.

use super::connect;
use super::watch::{open_watch, Watcher};
use super::Shared;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use rand::Rng;
use sandbank_protocol::connect::{Code, ConnectError};
use sandbank_protocol::filesystem::*;
use sandbank_protocol::process::Empty;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Events a watcher keeps between two `GetWatcherEvents`: four times the kernel's default inotify
/// queue (`fs.inotify.max_queued_events`, 16384).
pub const MAX_BUFFERED_EVENTS: usize = 65_536;

/// What a watcher's task has read and not yet handed out, or how it failed.
#[derive(Default)]
struct Buffer {
    events: Vec<FilesystemEvent>,
    error: Option<ConnectError>,
}

struct Polled {
    buffer: Arc<Mutex<Buffer>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Polled {
    fn drop(&mut self) {
        // The task owns the inotify descriptor: aborting it closes the descriptor.
        self.task.abort();
    }
}

/// The polling watchers of one envd, by id.
pub(crate) struct Table {
    watchers: Mutex<HashMap<String, Arc<Polled>>>,
    limit: usize,
}

impl Table {
    pub fn new(limit: usize) -> Self {
        Self { watchers: Mutex::new(HashMap::new()), limit }
    }

    fn get(&self, id: &str) -> Result<Arc<Polled>, ConnectError> {
        self.watchers
            .lock()
            .expect("watchers lock")
            .get(id)
            .cloned()
            .ok_or_else(|| ConnectError::new(Code::NotFound, format!("watcher with id {id} not found")))
    }
}

/// `w` and 20 of `[a-z0-9]`, as envd's watcher ids.
fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz1234567890";
    let mut rng = rand::rng();
    std::iter::once('w').chain((0..20).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))).collect()
}

/// Reads `watcher` into `buffer` until it fails or overflows `limit`; then drops it.
async fn pump(mut watcher: Watcher, buffer: Arc<Mutex<Buffer>>, limit: usize) {
    let mut batch = VecDeque::new();
    loop {
        let read = watcher.next_batch(&mut batch).await;
        let mut buf = buffer.lock().expect("watcher buffer lock");
        match read {
            Ok(()) if buf.events.len() + batch.len() <= limit => buf.events.extend(batch.drain(..)),
            Ok(()) => {
                buf.events = Vec::new();
                buf.error = Some(ConnectError::new(
                    Code::Internal,
                    format!(
                        "watcher error: more than {limit} events since the last GetWatcherEvents; events were lost \
                         (remove the watcher and create another)"
                    ),
                ));
                return;
            }
            Err(e) => {
                buf.events = Vec::new();
                buf.error = Some(ConnectError::new(Code::Internal, format!("watcher error: {e}")));
                return;
            }
        }
    }
}

pub async fn create_watcher(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let hdrs = headers.clone();
    connect::unary(&headers, body, |req: CreateWatcherRequest| async move {
        let watcher = open_watch(&envd, &hdrs, &req)?;
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let task = tokio::spawn(pump(watcher, buffer.clone(), envd.watchers.limit)).abort_handle();
        let id = new_id();
        envd.watchers.watchers.lock().expect("watchers lock").insert(id.clone(), Arc::new(Polled { buffer, task }));
        Ok(WatcherId { watcher_id: id })
    })
    .await
}

pub async fn get_watcher_events(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    connect::unary(&headers, body, |req: WatcherId| async move {
        let polled = envd.watchers.get(&req.watcher_id)?;
        let mut buf = polled.buffer.lock().expect("watcher buffer lock");
        if let Some(e) = &buf.error {
            return Err(e.clone());
        }
        Ok(GetWatcherEventsResponse { events: std::mem::take(&mut buf.events) })
    })
    .await
}

pub async fn remove_watcher(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    connect::unary(&headers, body, |req: WatcherId| async move {
        let removed = envd.watchers.watchers.lock().expect("watchers lock").remove(&req.watcher_id);
        match removed {
            Some(_) => Ok(Empty {}),
            None => Err(ConnectError::new(Code::NotFound, format!("watcher with id {} not found", req.watcher_id))),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_envds() {
        let id = new_id();
        assert_eq!(id.len(), 21);
        assert!(id.starts_with('w') && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{id}");
        assert_ne!(new_id(), id);
    }
}
