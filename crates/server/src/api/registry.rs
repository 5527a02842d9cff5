//! The running sandboxes the API knows of, their deadlines, and the keyset pagination over them.
//! The mutex is only ever held for map operations, never across an engine call.

use chrono::{DateTime, Utc};
use sandbank_engine::Limits;
use sandbank_protocol::pagination::PageToken;
use sandbank_protocol::rest::{SandboxNetwork, SandboxState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// A sandbox as the API knows it. A paused one's entry is kept by the engine with it
/// (serialized), so that it outlives the server; fields added later default when read back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub template: String,
    pub started_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub limits: Limits,
    pub metadata: HashMap<String, String>,
    pub envd_socket: PathBuf,
    pub state: SandboxState,
    /// The timeout it was created with, in seconds: an automatic resume runs for as long.
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// What every envd request must carry as `X-Access-Token` (or sign a URL with), whatever
    /// `secure` said at creation. A paused sandbox kept by a server from before every sandbox had
    /// one (stored without it, or as `null`) gets a new one when read back.
    #[serde(default = "super::envd_auth::new_access_token", deserialize_with = "super::envd_auth::token_or_new")]
    pub access_token: String,
    /// Whether the sandbox has outbound network.
    #[serde(default)]
    pub internet: bool,
    /// Paused with its files only: its processes ended, and it starts again when resumed.
    #[serde(default)]
    pub files_only: bool,
    /// Its network settings as asked for (reported by `GET /sandboxes/{id}`).
    #[serde(default)]
    pub network: Option<SandboxNetwork>,
    /// What a request to one of its ports must carry (`e2b-traffic-access-token`) when its
    /// network is not public (`allowPublicTraffic: false`); `None`: anyone may.
    #[serde(default)]
    pub traffic_token: Option<String>,
    /// How many times it started again under its ID (resumed on its files, restored): the end
    /// of an earlier incarnation's processes must not remove the current one.
    #[serde(skip)]
    pub incarnation: u64,
}

/// See [`Registry::route`].
#[derive(Clone, Debug)]
pub struct Route {
    pub envd_socket: PathBuf,
    pub access_token: String,
    pub paused: bool,
    pub auto_resume: bool,
    pub timeout: u64,
    pub traffic_token: Option<String>,
    /// The Host requests to its ports go with (`maskRequestHost`, `${PORT}` in it the port).
    pub mask_request_host: Option<String>,
}

/// What happens at the end time, and whether envd traffic wakes a paused sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub pause_on_timeout: bool,
    pub auto_resume: bool,
    /// The pause at the end time keeps files only (E2B's `autoPauseMemory: false`).
    #[serde(default)]
    pub files_only_on_timeout: bool,
}

/// What the expiry task does with a sandbox whose end time has come.
#[derive(Debug)]
pub enum Expired {
    Kill(Entry),
    Pause(Entry),
}

#[derive(Debug, Default)]
pub struct Registry {
    sandboxes: Mutex<HashMap<String, Entry>>,
    /// Wakes the expiry task when a deadline may have moved earlier.
    deadlines_changed: Notify,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, entry: Entry) {
        self.lock().insert(entry.id.clone(), entry);
        self.deadlines_changed.notify_one();
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    /// What routing an envd request to the sandbox needs (every command and file call: no
    /// copy of the whole entry).
    pub fn route(&self, id: &str) -> Option<Route> {
        self.lock().get(id).map(|e| Route {
            envd_socket: e.envd_socket.clone(),
            access_token: e.access_token.clone(),
            paused: e.state == SandboxState::Paused,
            auto_resume: e.lifecycle.auto_resume,
            timeout: e.timeout,
            traffic_token: e.traffic_token.clone(),
            mask_request_host: e.network.as_ref().and_then(|n| n.mask_request_host.clone()),
        })
    }

    pub fn remove(&self, id: &str) -> Option<Entry> {
        let removed = self.lock().remove(id);
        if removed.is_some() {
            self.deadlines_changed.notify_one();
        }
        removed
    }

    pub fn drain(&self) -> Vec<Entry> {
        let all: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        self.deadlines_changed.notify_one();
        all
    }

    /// Marks a running sandbox paused (with its files only, or with its memory too): `Err(true)`
    /// if it already is, `Err(false)` if unknown.
    pub fn mark_paused(&self, id: &str, files_only: bool) -> Result<Entry, bool> {
        let mut map = self.lock();
        let entry = map.get_mut(id).ok_or(false)?;
        if entry.state == SandboxState::Paused {
            return Err(true);
        }
        entry.state = SandboxState::Paused;
        entry.files_only = files_only;
        Ok(entry.clone())
    }

    /// Forgets a sandbox if it is running as `incarnation` (a paused one's processes may end: it
    /// keeps its files; a restored one's earlier processes end: it runs on).
    pub fn remove_running(&self, id: &str, incarnation: u64) -> Option<Entry> {
        let mut map = self.lock();
        let entry = map.get(id)?;
        if entry.state != SandboxState::Running || entry.incarnation != incarnation {
            return None;
        }
        let removed = map.remove(id);
        drop(map);
        self.deadlines_changed.notify_one();
        removed
    }

    /// Its current incarnation (see [`Entry::incarnation`]).
    pub fn incarnation(&self, id: &str) -> Option<u64> {
        self.lock().get(id).map(|e| e.incarnation)
    }

    /// Starts a new incarnation of a sandbox whose processes start again; returns it.
    pub fn next_incarnation(&self, id: &str) -> Option<u64> {
        let mut map = self.lock();
        let entry = map.get_mut(id)?;
        entry.incarnation += 1;
        Some(entry.incarnation)
    }

    /// Marks a sandbox running again (with its envd socket, which a restart may have moved),
    /// ending `timeout` seconds from now.
    pub fn mark_running(&self, id: &str, end_at: DateTime<Utc>, envd_socket: PathBuf) -> Option<Entry> {
        let updated = {
            let mut map = self.lock();
            let entry = map.get_mut(id)?;
            entry.state = SandboxState::Running;
            entry.files_only = false;
            entry.end_at = end_at;
            entry.envd_socket = envd_socket;
            entry.clone()
        };
        self.deadlines_changed.notify_one();
        Some(updated)
    }

    /// Records the egress rules a sandbox now has (as asked for).
    pub fn set_network(&self, id: &str, allow_out: Option<Vec<String>>, deny_out: Option<Vec<String>>) {
        if let Some(entry) = self.lock().get_mut(id) {
            let network = entry.network.get_or_insert_with(SandboxNetwork::default);
            network.allow_out = allow_out;
            network.deny_out = deny_out;
        }
    }

    /// Sets the end time; `extend_only` keeps a later one. Returns the entry as updated.
    pub fn set_end(&self, id: &str, end_at: DateTime<Utc>, extend_only: bool) -> Option<Entry> {
        let updated = {
            let mut map = self.lock();
            let entry = map.get_mut(id)?;
            if !extend_only || end_at > entry.end_at {
                entry.end_at = end_at;
            }
            entry.clone()
        };
        self.deadlines_changed.notify_one();
        Some(updated)
    }

    pub fn all(&self) -> Vec<Entry> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Every running sandbox whose end time is not after `now`: removed to be killed, or marked
    /// paused to be paused, as its lifecycle says. Paused sandboxes have no end time.
    pub fn take_expired(&self, now: DateTime<Utc>) -> Vec<Expired> {
        let mut map = self.lock();
        let due: Vec<String> = map
            .values()
            .filter(|e| e.state == SandboxState::Running && e.end_at <= now)
            .map(|e| e.id.clone())
            .collect();
        let mut expired = Vec::new();
        for id in due {
            let Some(entry) = map.get_mut(&id) else { continue };
            if entry.lifecycle.pause_on_timeout {
                entry.state = SandboxState::Paused;
                entry.files_only = entry.lifecycle.files_only_on_timeout;
                expired.push(Expired::Pause(entry.clone()));
            } else if let Some(entry) = map.remove(&id) {
                expired.push(Expired::Kill(entry));
            }
        }
        expired
    }

    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.lock().values().filter(|e| e.state == SandboxState::Running).map(|e| e.end_at).min()
    }

    /// Resolves when a deadline may have changed (permit semantics: a change made before the
    /// call is not lost).
    pub async fn deadlines_changed(&self) {
        self.deadlines_changed.notified().await
    }
}

/// One page of `entries`, newest first (`startedAt` then ID, both descending; both ascending
/// with `oldest_first`), starting after the item `after` names (which need not exist any more).
/// The token is the last item's position, present only when more items follow.
pub fn page(
    mut entries: Vec<Entry>,
    after: Option<&PageToken>,
    limit: usize,
    oldest_first: bool,
) -> (Vec<Entry>, Option<PageToken>) {
    entries.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    if oldest_first {
        entries.reverse();
    }
    if let Some(t) = after {
        let cursor = (t.time, t.id.as_str());
        entries.retain(|e| {
            let key = (e.started_at, e.id.as_str());
            if oldest_first {
                key > cursor
            } else {
                key < cursor
            }
        });
    }
    let more = entries.len() > limit;
    entries.truncate(limit);
    let token = if more { entries.last().map(|e| PageToken { time: e.started_at, id: e.id.clone() }) } else { None };
    (entries, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, secs: i64) -> Entry {
        let t = DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap();
        Entry {
            id: id.into(),
            template: "base".into(),
            started_at: t,
            end_at: t,
            limits: Limits { cpu_count: 1, memory_mb: 1, pids: 1, disk_mb: 1 },
            metadata: HashMap::new(),
            envd_socket: PathBuf::new(),
            state: SandboxState::Running,
            timeout: 300,
            lifecycle: Lifecycle::default(),
            access_token: "t".into(),
            internet: false,
            files_only: false,
            incarnation: 0,
            network: None,
            traffic_token: None,
        }
    }

    fn ids(v: &[Entry]) -> Vec<&str> {
        v.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn pages_are_newest_first_and_keyset_stable() {
        let mut all = vec![entry("a", 1), entry("b", 2), entry("c", 2), entry("d", 3), entry("e", 4)];
        let (p1, t1) = page(all.clone(), None, 2, false);
        assert_eq!(ids(&p1), ["e", "d"]);
        let t1 = t1.unwrap();
        assert_eq!(t1.id, "d");
        // A newer sandbox appears and "c" goes away between pages: no duplicates, no skips.
        all.push(entry("f", 5));
        all.retain(|e| e.id != "c");
        let (p2, t2) = page(all.clone(), Some(&t1), 2, false);
        assert_eq!(ids(&p2), ["b", "a"]);
        assert!(t2.is_none(), "exactly the rest: no token on the last page");
        // The cursor survives its own item being deleted.
        all.retain(|e| e.id != "d");
        let (p2b, _) = page(all.clone(), Some(&t1), 10, false);
        assert_eq!(ids(&p2b), ["b", "a"]);
        // Same startedAt: ordered by ID descending, and split correctly.
        let same = vec![entry("x", 1), entry("y", 1), entry("z", 1)];
        let (q1, qt) = page(same.clone(), None, 1, false);
        assert_eq!(ids(&q1), ["z"]);
        let (q2, qt2) = page(same.clone(), qt.as_ref(), 1, false);
        assert_eq!(ids(&q2), ["y"]);
        let (q3, qt3) = page(same.clone(), qt2.as_ref(), 1, false);
        assert_eq!(ids(&q3), ["x"]);
        assert!(qt3.is_none());
        // Oldest first.
        let (o1, ot) = page(same.clone(), None, 2, true);
        assert_eq!(ids(&o1), ["x", "y"]);
        let (o2, ot2) = page(same, ot.as_ref(), 2, true);
        assert_eq!(ids(&o2), ["z"]);
        assert!(ot2.is_none());
    }

    #[test]
    fn expiry_takes_only_due_sandboxes() {
        let r = Registry::default();
        r.insert(entry("a", 1));
        r.insert(entry("b", 10));
        assert_eq!(r.next_deadline(), Some(DateTime::from_timestamp(1_700_000_001, 0).unwrap()));
        r.insert(Entry { lifecycle: Lifecycle { pause_on_timeout: true, ..Lifecycle::default() }, ..entry("p", 2) });
        let gone = r.take_expired(DateTime::from_timestamp(1_700_000_005, 0).unwrap());
        assert!(
            matches!(&gone[..], [Expired::Kill(k), Expired::Pause(p)] | [Expired::Pause(p), Expired::Kill(k)] if k.id == "a" && p.id == "p")
        );
        // A paused sandbox stays listed, has no deadline, and does not expire again.
        assert_eq!(r.get("p").unwrap().state, SandboxState::Paused);
        assert!(r.take_expired(DateTime::from_timestamp(1_700_000_006, 0).unwrap()).is_empty());
        assert!(r.mark_paused("p", false).unwrap_err(), "already paused");
        assert!(!r.mark_paused("zz", false).unwrap_err(), "unknown");
        assert!(r.remove_running("p", 0).is_none(), "a paused sandbox is kept");
        r.insert(entry("c", 50));
        assert!(r.remove_running("c", 1).is_none(), "another incarnation's end");
        assert!(r.remove_running("c", 0).is_some());
        assert!(r.get("a").is_none() && r.get("b").is_some());
        let later = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        assert_eq!(r.set_end("b", later, true).unwrap().end_at, later);
        assert_eq!(r.set_end("b", DateTime::from_timestamp(1_700_000_050, 0).unwrap(), true).unwrap().end_at, later);
        assert!(r.set_end("zz", later, false).is_none());
    }

    #[test]
    fn a_sandbox_stored_without_a_token_gets_one() {
        let stored = serde_json::to_value(entry("a", 1)).unwrap();
        for token in [None, Some(serde_json::Value::Null), Some("".into())] {
            let mut v = stored.clone();
            match token {
                None => drop(v.as_object_mut().unwrap().remove("access_token")),
                Some(t) => v["access_token"] = t,
            }
            let read: Entry = serde_json::from_value(v).unwrap();
            assert_eq!(read.access_token.len(), 32, "a new 128-bit token");
        }
        let read: Entry = serde_json::from_value(stored).unwrap();
        assert_eq!(read.access_token, "t", "a stored token is kept");
    }
}
