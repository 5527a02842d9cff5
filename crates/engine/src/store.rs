//! The engine's durable state: one SQLite database in the data directory holding the snapshot
//! catalog and the paused sandboxes. Schema version 3 (version 1 had no `paused` table, version
//! 2 no snapshot `metadata`/`expires_at` columns and no `snapshot_metadata` table; opening an
//! older catalog adds them). A newer server migrates forward from `meta.schema_version`.
//!
//! A snapshot's metadata is kept twice in one transaction: as JSON in its row (what is reported)
//! and as one `snapshot_metadata` row per pair, indexed by (key, value), which a metadata filter
//! reads (`EXISTS` per pair: an index probe per candidate, or the candidates from the index when
//! SQLite judges the pair rare). A JSON column alone could not be indexed for arbitrary keys.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;

const SCHEMA_VERSION: i64 = 3;

/// A snapshot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// 20 characters of `[a-z0-9]`; also the name of the layer it added.
    pub id: String,
    pub name: Option<String>,
    /// The sandbox it was taken from.
    pub origin_sandbox: String,
    /// The snapshot that sandbox was started from, if any.
    pub parent: Option<String>,
    /// The template at the bottom of the layer chain.
    pub template: String,
    /// Layer IDs, topmost first.
    pub layers: Vec<String>,
    pub size_bytes: u64,
    /// Unix time in nanoseconds.
    pub created_at: i64,
    /// The user's labels (string to string).
    pub metadata: BTreeMap<String, String>,
    /// When it expires (Unix time in nanoseconds): from then on it is not listed nor found, and
    /// it is deleted once no sandbox uses it. `None`: never.
    pub expires_at: Option<i64>,
}

/// What a listing keeps: snapshots of one origin sandbox, with one name, with all these
/// metadata pairs (each when given).
#[derive(Clone, Debug, Default)]
pub struct ListFilter<'a> {
    pub origin: Option<&'a str>,
    pub name: Option<&'a str>,
    pub metadata: &'a [(String, String)],
}

/// Why a snapshot was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// A live snapshot has the name already.
    #[error("a snapshot named {0:?} exists already")]
    NameTaken(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

#[derive(Debug)]
pub struct Store {
    db: Connection,
}

impl Store {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS snapshots (
                 id TEXT PRIMARY KEY,
                 name TEXT UNIQUE,
                 origin_sandbox TEXT NOT NULL,
                 parent TEXT,
                 template TEXT NOT NULL,
                 layers TEXT NOT NULL,
                 size_bytes INTEGER NOT NULL,
                 created_at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS snapshots_by_time ON snapshots (created_at DESC, id DESC);
             CREATE INDEX IF NOT EXISTS snapshots_by_origin ON snapshots (origin_sandbox, created_at DESC, id DESC);
             CREATE TABLE IF NOT EXISTS paused (id TEXT PRIMARY KEY, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS snapshot_metadata (
                 snapshot TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value TEXT NOT NULL,
                 PRIMARY KEY (snapshot, key)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS snapshot_metadata_by_pair ON snapshot_metadata (key, value, snapshot);",
        )?;
        // Version 3's columns, on a catalog made by an older server (a new one gets them here
        // too: the table above is version 1's).
        let columns: Vec<String> = db
            .prepare("SELECT name FROM pragma_table_info('snapshots')")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !columns.iter().any(|c| c == "metadata") {
            db.execute_batch("ALTER TABLE snapshots ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'")?;
        }
        if !columns.iter().any(|c| c == "expires_at") {
            db.execute_batch("ALTER TABLE snapshots ADD COLUMN expires_at INTEGER")?;
        }
        db.execute_batch(
            "CREATE INDEX IF NOT EXISTS snapshots_by_expiry ON snapshots (expires_at) WHERE expires_at IS NOT NULL;",
        )?;
        let version: Option<i64> =
            db.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).optional()?;
        match version {
            None => {
                db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?1)", [SCHEMA_VERSION])?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "the snapshot catalog has schema version {v}, newer than this server's {SCHEMA_VERSION}"
                )))
            }
            Some(v) if v < SCHEMA_VERSION => {
                db.execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [SCHEMA_VERSION])?;
            }
            Some(_) => {}
        }
        Ok(Self { db })
    }

    /// Inserts a snapshot. A name it carries is taken from an expired snapshot that had it, and
    /// with `names_move` from any older one (a template build's layers); otherwise a live
    /// snapshot with that name refuses it. `now`: Unix nanoseconds.
    pub fn insert(&mut self, s: &SnapshotRecord, names_move: bool, now: i64) -> Result<(), InsertError> {
        let tx = self.db.transaction()?;
        if let Some(name) = &s.name {
            tx.execute(
                "UPDATE snapshots SET name = NULL
                 WHERE name = ?1 AND (?2 OR (expires_at IS NOT NULL AND expires_at <= ?3))",
                params![name, names_move, now],
            )?;
            let taken: Option<String> =
                tx.query_row("SELECT id FROM snapshots WHERE name = ?1", [name], |r| r.get(0)).optional()?;
            if taken.is_some() {
                return Err(InsertError::NameTaken(name.clone()));
            }
        }
        tx.execute(
            "INSERT INTO snapshots (id, name, origin_sandbox, parent, template, layers, size_bytes, created_at,
                                    metadata, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                s.id,
                s.name,
                s.origin_sandbox,
                s.parent,
                s.template,
                serde_json::to_string(&s.layers).expect("layers serialize"),
                s.size_bytes as i64,
                s.created_at,
                serde_json::to_string(&s.metadata).expect("metadata serializes"),
                s.expires_at,
            ],
        )?;
        {
            let mut pair =
                tx.prepare_cached("INSERT INTO snapshot_metadata (snapshot, key, value) VALUES (?1, ?2, ?3)")?;
            for (k, v) in &s.metadata {
                pair.execute(params![s.id, k, v])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// By ID or by name, expired or not (what sandboxes started from it still need).
    pub fn get(&self, id_or_name: &str) -> rusqlite::Result<Option<SnapshotRecord>> {
        self.db
            .query_row(
                &format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1 OR name = ?1"),
                [id_or_name],
                row_to_record,
            )
            .optional()
    }

    /// By ID or by name, unless it has expired by `now` (Unix nanoseconds): what users see.
    pub fn get_live(&self, id_or_name: &str, now: i64) -> rusqlite::Result<Option<SnapshotRecord>> {
        Ok(self.get(id_or_name)?.filter(|r| r.expires_at.is_none_or(|t| t > now)))
    }

    /// Live snapshots (not expired by `now`), newest first; `after` is the (created_at, id) of
    /// the last item of the previous page.
    ///
    /// With a metadata filter, the rows are found one of two ways. When the rarest pair is
    /// common, by walking the snapshots newest first (the time index) and checking each one's
    /// pairs (an index probe each) until the page is full: few are skipped. When it is rare, by
    /// reading the snapshots that have it (the pair index) and sorting those: walking the time
    /// index would skip nearly every row. The counts come from the pair index.
    pub fn list(
        &self,
        filter: &ListFilter<'_>,
        after: Option<(i64, &str)>,
        limit: u32,
        now: i64,
    ) -> rusqlite::Result<Vec<SnapshotRecord>> {
        let (after_t, after_id) = after.map(|(t, id)| (Some(t), Some(id))).unwrap_or((None, None));
        let mut pairs: Vec<&(String, String)> = filter.metadata.iter().collect();
        let mut drive = false;
        if !pairs.is_empty() {
            let mut count =
                self.db.prepare_cached("SELECT count(*) FROM snapshot_metadata WHERE key = ?1 AND value = ?2")?;
            let mut counts = Vec::with_capacity(pairs.len());
            for (k, v) in &pairs {
                counts.push(count.query_row(params![k, v], |r| r.get::<_, i64>(0))?);
            }
            let (rarest, matches) = counts.iter().copied().enumerate().min_by_key(|&(_, n)| n).expect("a pair");
            if matches == 0 {
                return Ok(Vec::new());
            }
            // Rows in the catalog (rowids only grow: deletions make this an overestimate).
            let total: i64 = self.db.query_row("SELECT coalesce(max(rowid), 0) FROM snapshots", [], |r| r.get(0))?;
            // Sorting `matches` rows against walking about limit × total / matches of them.
            drive = matches <= 1000 || (matches as f64).powi(2) <= f64::from(limit) * total as f64;
            pairs.swap(0, rarest);
        }
        // One EXISTS per metadata pair, its parameters after the fixed six.
        let exists: String = (0..pairs.len())
            .map(|i| {
                format!(
                    " AND EXISTS (SELECT 1 FROM snapshot_metadata m
                                  WHERE m.snapshot = snapshots.id AND m.key = ?{} AND m.value = ?{})",
                    7 + 2 * i,
                    8 + 2 * i
                )
            })
            .collect();
        // CROSS JOIN: SQLite keeps the left table as the outer loop.
        let from = match drive {
            true => {
                "snapshot_metadata d CROSS JOIN snapshots ON snapshots.id = d.snapshot AND d.key = ?7 AND d.value = ?8"
            }
            false => "snapshots",
        };
        // A template build's layers are listed only by their names.
        let mut stmt = self.db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM {from}
             WHERE (?1 IS NULL OR origin_sandbox = ?1)
               AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
               AND (?5 IS NULL OR name = ?5)
               AND (?5 IS NOT NULL OR name IS NULL OR substr(name, 1, {len}) != '{BUILD_SNAPSHOT_PREFIX}')
               AND (expires_at IS NULL OR expires_at > ?6){exists}
             ORDER BY created_at DESC, id DESC LIMIT ?4",
            len = BUILD_SNAPSHOT_PREFIX.len()
        ))?;
        let fixed: [rusqlite::types::Value; 6] = [
            filter.origin.map(str::to_string).into(),
            after_t.into(),
            after_id.map(str::to_string).into(),
            i64::from(limit).into(),
            filter.name.map(str::to_string).into(),
            now.into(),
        ];
        let values = fixed.into_iter().chain(pairs.iter().flat_map(|(k, v)| [k.clone().into(), v.clone().into()]));
        let rows = stmt.query_map(params_from_iter(values), row_to_record)?;
        rows.collect()
    }

    pub fn delete(&mut self, id: &str) -> rusqlite::Result<bool> {
        Ok(self.delete_all(&[id.to_string()])? > 0)
    }

    /// Deletes these snapshots in one transaction (one commit however many); how many were there.
    pub fn delete_all(&mut self, ids: &[String]) -> rusqlite::Result<usize> {
        let tx = self.db.transaction()?;
        let mut n = 0;
        {
            let mut pairs = tx.prepare_cached("DELETE FROM snapshot_metadata WHERE snapshot = ?1")?;
            let mut rows = tx.prepare_cached("DELETE FROM snapshots WHERE id = ?1")?;
            for id in ids {
                pairs.execute([id])?;
                n += rows.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// The snapshots expired by `now` (Unix nanoseconds), still in the catalog.
    pub fn expired(&self, now: i64) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT id FROM snapshots WHERE expires_at IS NOT NULL AND expires_at <= ?1 ORDER BY id")?;
        let rows = stmt.query_map([now], |r| r.get(0))?;
        rows.collect()
    }

    /// Expires, as of `now`, the live snapshots of sandbox `origin` but its newest `keep`
    /// (a template build's layers neither count nor go). Returns how many it expired.
    pub fn expire_all_but_newest(&mut self, origin: &str, keep: u32, now: i64) -> rusqlite::Result<usize> {
        self.db.execute(
            &format!(
                "UPDATE snapshots SET expires_at = ?3 WHERE id IN (
                     SELECT id FROM snapshots
                     WHERE origin_sandbox = ?1
                       AND (expires_at IS NULL OR expires_at > ?3)
                       AND (name IS NULL OR substr(name, 1, {len}) != '{BUILD_SNAPSHOT_PREFIX}')
                     ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?2)",
                len = BUILD_SNAPSHOT_PREFIX.len()
            ),
            params![origin, keep, now],
        )
    }

    /// Every layer any snapshot needs.
    pub fn referenced_layers(&self) -> rusqlite::Result<std::collections::HashSet<String>> {
        let mut stmt = self.db.prepare_cached("SELECT layers FROM snapshots")?;
        let mut set = std::collections::HashSet::new();
        for layers in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let layers: Vec<String> = serde_json::from_str(&layers?).unwrap_or_default();
            set.extend(layers);
        }
        Ok(set)
    }
}

impl Store {
    /// Records a paused sandbox (`record` is the engine's JSON for it), replacing an older record.
    pub fn put_paused(&mut self, id: &str, record: &str) -> rusqlite::Result<()> {
        self.db.execute("INSERT OR REPLACE INTO paused (id, record) VALUES (?1, ?2)", [id, record])?;
        Ok(())
    }

    pub fn delete_paused(&mut self, id: &str) -> rusqlite::Result<bool> {
        Ok(self.db.execute("DELETE FROM paused WHERE id = ?1", [id])? > 0)
    }

    /// Every paused sandbox: (ID, record).
    pub fn all_paused(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.db.prepare_cached("SELECT id, record FROM paused ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }
}

/// The names of a template build's layers (snapshots of its steps) begin with it: they are not
/// listed with the snapshots users took.
pub const BUILD_SNAPSHOT_PREFIX: &str = "build/";

const COLUMNS: &str =
    "id, name, origin_sandbox, parent, template, layers, size_bytes, created_at, metadata, expires_at";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotRecord> {
    let layers: String = r.get(5)?;
    Ok(SnapshotRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        origin_sandbox: r.get(2)?,
        parent: r.get(3)?,
        template: r.get(4)?,
        layers: serde_json::from_str(&layers).unwrap_or_default(),
        size_bytes: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
        metadata: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
        expires_at: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, origin: &str, t: i64) -> SnapshotRecord {
        SnapshotRecord {
            id: id.into(),
            name: None,
            origin_sandbox: origin.into(),
            parent: None,
            template: "base".into(),
            layers: vec![id.into()],
            size_bytes: 1,
            created_at: t,
            metadata: BTreeMap::new(),
            expires_at: None,
        }
    }

    fn by<'a>(origin: Option<&'a str>, name: Option<&'a str>) -> ListFilter<'a> {
        ListFilter { origin, name, metadata: &[] }
    }

    #[test]
    fn lists_newest_first_with_a_keyset_cursor() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Store::open(&tmp.path().join("db")).unwrap();
        for (id, origin, t) in [("a", "x", 1), ("b", "y", 2), ("c", "x", 2), ("d", "x", 3)] {
            s.insert(&rec(id, origin, t), true, 0).unwrap();
        }
        let ids = |v: Vec<SnapshotRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(s.list(&by(None, None), None, 10, 0).unwrap()), ["d", "c", "b", "a"]);
        assert_eq!(ids(s.list(&by(None, None), Some((2, "c")), 10, 0).unwrap()), ["b", "a"]);
        assert_eq!(ids(s.list(&by(Some("x"), None), None, 2, 0).unwrap()), ["d", "c"]);
        assert_eq!(ids(s.list(&by(Some("x"), None), Some((2, "c")), 2, 0).unwrap()), ["a"]);
        assert!(s.delete("b").unwrap());
        assert!(!s.delete("b").unwrap());
        assert_eq!(ids(s.list(&by(None, None), Some((3, "d")), 10, 0).unwrap()), ["c", "a"]);
        // By name: only the snapshot that has it.
        s.insert(&SnapshotRecord { name: Some("prod".into()), ..rec("e", "y", 4) }, true, 0).unwrap();
        assert_eq!(ids(s.list(&by(None, Some("prod")), None, 10, 0).unwrap()), ["e"]);
        assert_eq!(ids(s.list(&by(Some("x"), Some("prod")), None, 10, 0).unwrap()), Vec::<String>::new());
        assert_eq!(ids(s.list(&by(None, Some("nope")), None, 10, 0).unwrap()), Vec::<String>::new());
    }

    #[test]
    fn names_move_to_the_newest_snapshot_and_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db");
        {
            let mut s = Store::open(&path).unwrap();
            s.insert(&SnapshotRecord { name: Some("prod".into()), ..rec("a", "x", 1) }, true, 0).unwrap();
            s.insert(&SnapshotRecord { name: Some("prod".into()), ..rec("b", "x", 2) }, true, 0).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get("prod").unwrap().unwrap().id, "b");
        assert_eq!(s.get("a").unwrap().unwrap().name, None);
        assert_eq!(s.referenced_layers().unwrap().len(), 2);
    }

    #[test]
    fn names_clash_among_live_snapshots_only() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Store::open(&tmp.path().join("db")).unwrap();
        s.insert(&SnapshotRecord { name: Some("prod".into()), expires_at: Some(10), ..rec("a", "x", 1) }, false, 5)
            .unwrap();
        let clash = s.insert(&SnapshotRecord { name: Some("prod".into()), ..rec("b", "x", 2) }, false, 5);
        assert!(matches!(clash, Err(InsertError::NameTaken(n)) if n == "prod"));
        assert!(s.get("b").unwrap().is_none(), "nothing recorded");
        // Once "a" has expired, its name is free; "a" stays until nothing uses it.
        s.insert(&SnapshotRecord { name: Some("prod".into()), ..rec("b", "x", 2) }, false, 10).unwrap();
        assert_eq!(s.get_live("prod", 10).unwrap().unwrap().id, "b");
        assert!(s.get_live("a", 10).unwrap().is_none());
        assert_eq!(s.get("a").unwrap().unwrap().name, None);
        assert_eq!(s.expired(10).unwrap(), ["a"]);
        assert!(s.expired(9).unwrap().is_empty());
    }

    #[test]
    fn metadata_filters_expiry_and_keep_last() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Store::open(&tmp.path().join("db")).unwrap();
        let md = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        s.insert(&SnapshotRecord { metadata: md(&[("env", "prod"), ("team", "a")]), ..rec("a", "x", 1) }, false, 0)
            .unwrap();
        s.insert(&SnapshotRecord { metadata: md(&[("env", "prod")]), ..rec("b", "x", 2) }, false, 0).unwrap();
        s.insert(&SnapshotRecord { metadata: md(&[("env", "dev"), ("team", "a")]), ..rec("c", "y", 3) }, false, 0)
            .unwrap();
        s.insert(
            &SnapshotRecord { expires_at: Some(50), metadata: md(&[("env", "prod")]), ..rec("d", "x", 4) },
            false,
            0,
        )
        .unwrap();
        let ids = |v: Vec<SnapshotRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let list = |s: &Store, m: &[(String, String)], now| {
            ids(s.list(&ListFilter { metadata: m, ..Default::default() }, None, 10, now).unwrap())
        };
        assert_eq!(list(&s, &pairs(&[("env", "prod")]), 0), ["d", "b", "a"]);
        assert_eq!(list(&s, &pairs(&[("env", "prod")]), 50), ["b", "a"], "expired: not listed");
        assert_eq!(list(&s, &pairs(&[("env", "prod"), ("team", "a")]), 0), ["a"]);
        assert_eq!(list(&s, &pairs(&[("team", "a")]), 0), ["c", "a"]);
        assert_eq!(list(&s, &pairs(&[("team", "b")]), 0), Vec::<String>::new());
        assert_eq!(s.get("a").unwrap().unwrap().metadata, md(&[("env", "prod"), ("team", "a")]));
        // Keep x's newest two live ones: "d" (live at 10) and "b"; "a" expires now.
        assert_eq!(s.expire_all_but_newest("x", 2, 10).unwrap(), 1);
        assert_eq!(s.expired(10).unwrap(), ["a"]);
        assert!(s.delete("a").unwrap());
        assert_eq!(list(&s, &pairs(&[("team", "a")]), 10), ["c"]);
    }

    #[test]
    fn common_and_rare_pairs_list_the_same_way() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Store::open(&tmp.path().join("db")).unwrap();
        for i in 0..1500 {
            let mut metadata = BTreeMap::from([("all".to_string(), "yes".to_string())]);
            if i % 500 == 0 {
                metadata.insert("rare".into(), "yes".into());
            }
            let origin = if i % 2 == 0 { "x" } else { "y" };
            s.insert(&SnapshotRecord { metadata, ..rec(&format!("s{i:04}"), origin, i) }, false, 0).unwrap();
        }
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        // Every page, as the API walks them.
        let walk = |m: &[(String, String)], origin: Option<&str>, limit: u32| {
            let mut out = Vec::new();
            let mut after: Option<(i64, String)> = None;
            loop {
                let f = ListFilter { origin, metadata: m, ..Default::default() };
                let page = s.list(&f, after.as_ref().map(|(t, id)| (*t, id.as_str())), limit, 0).unwrap();
                out.extend(page.iter().map(|r| r.id.clone()));
                match page.last() {
                    Some(last) if page.len() == limit as usize => after = Some((last.created_at, last.id.clone())),
                    _ => return out,
                }
            }
        };
        let expect = |keep: &dyn Fn(i64) -> bool| {
            (0..1500).rev().filter(|&i| keep(i)).map(|i| format!("s{i:04}")).collect::<Vec<_>>()
        };
        // 1,500 of 1,500: walked by time; 3: read from the pair index and sorted.
        assert_eq!(walk(&pairs(&[("all", "yes")]), None, 100), expect(&|_| true));
        assert_eq!(walk(&pairs(&[("rare", "yes")]), None, 2), expect(&|i| i % 500 == 0));
        assert_eq!(walk(&pairs(&[("all", "yes"), ("rare", "yes")]), None, 1), expect(&|i| i % 500 == 0));
        assert_eq!(walk(&pairs(&[("all", "yes")]), Some("y"), 100), expect(&|i| i % 2 == 1));
        assert_eq!(walk(&pairs(&[("rare", "yes")]), Some("x"), 100), expect(&|i| i % 500 == 0));
        assert_eq!(walk(&pairs(&[("rare", "yes")]), Some("y"), 100), Vec::<String>::new());
        assert_eq!(walk(&pairs(&[("all", "no")]), None, 100), Vec::<String>::new());
        assert_eq!(walk(&pairs(&[("all", "yes"), ("rare", "no")]), None, 100), Vec::<String>::new());
    }

    #[test]
    fn a_version_2_catalog_gets_the_new_columns() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', 2);
                 CREATE TABLE snapshots (id TEXT PRIMARY KEY, name TEXT UNIQUE, origin_sandbox TEXT NOT NULL,
                     parent TEXT, template TEXT NOT NULL, layers TEXT NOT NULL, size_bytes INTEGER NOT NULL,
                     created_at INTEGER NOT NULL);
                 INSERT INTO snapshots VALUES ('old', 'kept', 'x', NULL, 'base', '[\"old\"]', 1, 1);",
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        let old = s.get_live("kept", 0).unwrap().unwrap();
        assert_eq!((old.id.as_str(), old.expires_at, old.metadata.len()), ("old", None, 0));
        s.insert(&SnapshotRecord { metadata: [("k".into(), "v".into())].into(), ..rec("new", "x", 2) }, false, 0)
            .unwrap();
        let m = [("k".to_string(), "v".to_string())];
        assert_eq!(s.list(&ListFilter { metadata: &m, ..Default::default() }, None, 10, 0).unwrap().len(), 1);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.list(&by(None, None), None, 10, 0).unwrap().len(), 2);
    }

    #[test]
    fn paused_records_survive_reopening_and_replace_older_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db");
        {
            let mut s = Store::open(&path).unwrap();
            s.put_paused("b", "{\"v\":1}").unwrap();
            s.put_paused("a", "{}").unwrap();
            s.put_paused("b", "{\"v\":2}").unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.all_paused().unwrap(), [("a".into(), "{}".into()), ("b".into(), "{\"v\":2}".into())]);
        assert!(s.delete_paused("a").unwrap());
        assert!(!s.delete_paused("a").unwrap());
        assert_eq!(s.all_paused().unwrap().len(), 1);
    }
}
