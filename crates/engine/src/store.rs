//! The engine's durable state: one SQLite database in the data directory holding the snapshot
//! catalog and the paused sandboxes. Schema version 2 (version 1 had no `paused` table; opening
//! it adds one). A newer server migrates forward from `meta.schema_version`.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

const SCHEMA_VERSION: i64 = 2;

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
             CREATE TABLE IF NOT EXISTS paused (id TEXT PRIMARY KEY, record TEXT NOT NULL);",
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

    /// Inserts a snapshot; a name it carries is taken from any older snapshot that had it.
    pub fn insert(&mut self, s: &SnapshotRecord) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        if let Some(name) = &s.name {
            tx.execute("UPDATE snapshots SET name = NULL WHERE name = ?1", [name])?;
        }
        tx.execute(
            "INSERT INTO snapshots (id, name, origin_sandbox, parent, template, layers, size_bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                s.id,
                s.name,
                s.origin_sandbox,
                s.parent,
                s.template,
                serde_json::to_string(&s.layers).expect("layers serialize"),
                s.size_bytes as i64,
                s.created_at
            ],
        )?;
        tx.commit()
    }

    /// By ID or by name.
    pub fn get(&self, id_or_name: &str) -> rusqlite::Result<Option<SnapshotRecord>> {
        self.db
            .query_row(
                &format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1 OR name = ?1"),
                [id_or_name],
                row_to_record,
            )
            .optional()
    }

    /// Newest first; `after` is the (created_at, id) of the last item of the previous page.
    /// `origin` and `name` filter when given.
    pub fn list(
        &self,
        origin: Option<&str>,
        name: Option<&str>,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> rusqlite::Result<Vec<SnapshotRecord>> {
        let (after_t, after_id) = after.map(|(t, id)| (Some(t), Some(id))).unwrap_or((None, None));
        // A template build's layers are listed only by their names.
        let mut stmt = self.db.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM snapshots
             WHERE (?1 IS NULL OR origin_sandbox = ?1)
               AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
               AND (?5 IS NULL OR name = ?5)
               AND (?5 IS NOT NULL OR name IS NULL OR substr(name, 1, {len}) != '{BUILD_SNAPSHOT_PREFIX}')
             ORDER BY created_at DESC, id DESC LIMIT ?4",
            len = BUILD_SNAPSHOT_PREFIX.len()
        ))?;
        let rows = stmt.query_map(params![origin, after_t, after_id, limit, name], row_to_record)?;
        rows.collect()
    }

    pub fn delete(&mut self, id: &str) -> rusqlite::Result<bool> {
        Ok(self.db.execute("DELETE FROM snapshots WHERE id = ?1", [id])? > 0)
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

const COLUMNS: &str = "id, name, origin_sandbox, parent, template, layers, size_bytes, created_at";

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
        }
    }

    #[test]
    fn lists_newest_first_with_a_keyset_cursor() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Store::open(&tmp.path().join("db")).unwrap();
        for (id, origin, t) in [("a", "x", 1), ("b", "y", 2), ("c", "x", 2), ("d", "x", 3)] {
            s.insert(&rec(id, origin, t)).unwrap();
        }
        let ids = |v: Vec<SnapshotRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(s.list(None, None, None, 10).unwrap()), ["d", "c", "b", "a"]);
        assert_eq!(ids(s.list(None, None, Some((2, "c")), 10).unwrap()), ["b", "a"]);
        assert_eq!(ids(s.list(Some("x"), None, None, 2).unwrap()), ["d", "c"]);
        assert_eq!(ids(s.list(Some("x"), None, Some((2, "c")), 2).unwrap()), ["a"]);
        assert!(s.delete("b").unwrap());
        assert!(!s.delete("b").unwrap());
        assert_eq!(ids(s.list(None, None, Some((3, "d")), 10).unwrap()), ["c", "a"]);
        // By name: only the snapshot that has it.
        s.insert(&SnapshotRecord { name: Some("prod".into()), ..rec("e", "y", 4) }).unwrap();
        assert_eq!(ids(s.list(None, Some("prod"), None, 10).unwrap()), ["e"]);
        assert_eq!(ids(s.list(Some("x"), Some("prod"), None, 10).unwrap()), Vec::<String>::new());
        assert_eq!(ids(s.list(None, Some("nope"), None, 10).unwrap()), Vec::<String>::new());
    }

    #[test]
    fn names_move_to_the_newest_snapshot_and_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db");
        {
            let mut s = Store::open(&path).unwrap();
            s.insert(&SnapshotRecord { name: Some("prod".into()), ..rec("a", "x", 1) }).unwrap();
            s.insert(&SnapshotRecord { name: Some("prod".into()), ..rec("b", "x", 2) }).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get("prod").unwrap().unwrap().id, "b");
        assert_eq!(s.get("a").unwrap().unwrap().name, None);
        assert_eq!(s.referenced_layers().unwrap().len(), 2);
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
