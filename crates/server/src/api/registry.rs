//! The running sandboxes the API knows of, their deadlines, and the keyset pagination over them.
//! The mutex is only ever held for map operations, never across an engine call.

use chrono::{DateTime, Utc};
use sandbank_engine::Limits;
use sandbank_protocol::pagination::PageToken;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Clone, Debug)]
pub struct Entry {
    pub id: String,
    pub template: String,
    pub started_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub limits: Limits,
    pub metadata: HashMap<String, String>,
    pub envd_socket: PathBuf,
    /// Whether the sandbox has outbound network.
    pub internet: bool,
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

    pub fn envd_socket(&self, id: &str) -> Option<PathBuf> {
        self.lock().get(id).map(|e| e.envd_socket.clone())
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

    /// Removes and returns every sandbox whose end time is not after `now`.
    pub fn take_expired(&self, now: DateTime<Utc>) -> Vec<Entry> {
        let mut map = self.lock();
        let expired: Vec<String> = map.values().filter(|e| e.end_at <= now).map(|e| e.id.clone()).collect();
        expired.iter().filter_map(|id| map.remove(id)).collect()
    }

    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.lock().values().map(|e| e.end_at).min()
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
            internet: false,
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
        let gone = r.take_expired(DateTime::from_timestamp(1_700_000_005, 0).unwrap());
        assert_eq!(ids(&gone), ["a"]);
        assert!(r.get("a").is_none() && r.get("b").is_some());
        let later = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        assert_eq!(r.set_end("b", later, true).unwrap().end_at, later);
        assert_eq!(r.set_end("b", DateTime::from_timestamp(1_700_000_050, 0).unwrap(), true).unwrap().end_at, later);
        assert!(r.set_end("zz", later, false).is_none());
    }
}
