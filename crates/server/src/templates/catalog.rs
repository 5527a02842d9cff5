//! The templates this server built, their builds and tags, and the step cache: one JSON file,
//! written whole (aside, then renamed) at each change. A template is a name and its builds; a
//! sandbox started from it starts from the snapshot its build made (tag `default`, or the one
//! named), with the variables its `ENV` steps set.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_TAG: &str = "default";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Waiting,
    Building,
    Ready,
    Error,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reason {
    pub message: String,
    /// E2B's step names: `base`, `finalize`, or the 1-based number of a step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub timestamp: DateTime<Utc>,
    pub level: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Build {
    pub id: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// What a sandbox of this build starts from: a snapshot ID, or `base`.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// The variables its `ENV` steps set: every process of its sandboxes has them.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    /// Its last `USER` and `WORKDIR`: its sandboxes' commands run so by default.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// Its start and ready commands (its own, or those of the template it was built from).
    #[serde(default)]
    pub start_cmd: Option<String>,
    #[serde(default)]
    pub ready_cmd: Option<String>,
    /// Its snapshot holds its files only (no CRIU where it was built): its sandboxes run the
    /// start command when they start, rather than starting with it running.
    #[serde(default)]
    pub start_on_create: bool,
    #[serde(default)]
    pub reason: Option<Reason>,
    pub cpu_count: Option<u32>,
    pub memory_mb: Option<u64>,
    /// The tags it gets once ready.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its log: kept while the server runs.
    #[serde(skip)]
    pub logs: Vec<LogLine>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub builds: Vec<Build>,
    /// Tag → build ID.
    pub tags: BTreeMap<String, String>,
    /// How many sandboxes were started from it, and when the last one was.
    #[serde(default)]
    pub spawn_count: u64,
    #[serde(default)]
    pub last_spawned_at: Option<DateTime<Utc>>,
}

impl Template {
    pub fn build(&self, id: &str) -> Option<&Build> {
        self.builds.iter().find(|b| b.id == id)
    }
    pub fn build_mut(&mut self, id: &str) -> Option<&mut Build> {
        self.builds.iter_mut().find(|b| b.id == id)
    }
    /// The build a tag names, if it is ready.
    pub fn ready_build(&self, tag: &str) -> Option<&Build> {
        self.tags.get(tag).and_then(|b| self.build(b)).filter(|b| b.status == Status::Ready)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub templates: Vec<Template>,
    /// A step's cache key → the snapshot of the files after it.
    pub cache: BTreeMap<String, String>,
    /// Where it is saved; `None`: nowhere (the API's tests).
    #[serde(skip)]
    path: Option<PathBuf>,
}

impl Catalog {
    /// The catalog in `path` (empty if there is none). Builds a stopped server left unfinished
    /// are failed.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut catalog: Catalog = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalog::default(),
            Err(e) => return Err(e),
        };
        catalog.path = Some(path.to_path_buf());
        for b in catalog.templates.iter_mut().flat_map(|t| t.builds.iter_mut()) {
            if matches!(b.status, Status::Waiting | Status::Building) {
                b.status = Status::Error;
                b.reason = Some(Reason { message: "the server stopped during the build".into(), step: None });
            }
        }
        Ok(catalog)
    }

    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let aside = path.with_extension("json.new");
        std::fs::write(&aside, serde_json::to_vec_pretty(self).expect("the catalog serializes"))?;
        std::fs::rename(&aside, path)
    }

    /// A template by its ID or name.
    pub fn find(&self, id_or_name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.id == id_or_name || t.name == id_or_name)
    }
    pub fn find_mut(&mut self, id_or_name: &str) -> Option<&mut Template> {
        self.templates.iter_mut().find(|t| t.id == id_or_name || t.name == id_or_name)
    }

    /// What `name[:tag]` (or a template ID) starts a sandbox from: its ready build.
    pub fn resolve(&self, reference: &str) -> Option<&Build> {
        let (name, tag) = split_tag(reference);
        self.find(name)?.ready_build(tag.unwrap_or(DEFAULT_TAG))
    }
}

/// `name:tag` → (`name`, `Some(tag)`); `name` → (`name`, `None`).
pub fn split_tag(reference: &str) -> (&str, Option<&str>) {
    match reference.rsplit_once(':') {
        Some((name, tag)) => (name, Some(tag)),
        None => (reference, None),
    }
}

/// E2B's rules: a name of `[a-z0-9-_]` (lowercased and trimmed first), optionally with a
/// namespace (`team/name`).
pub fn check_name(name: &str) -> Result<String, String> {
    let n = name.trim().to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.len() <= 128
        && n.split('/').count() <= 2
        && n.split('/')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)));
    match ok {
        true => Ok(n),
        false => Err(format!("Invalid template name {name:?}: use letters, digits, '-' and '_'")),
    }
}

/// E2B's rules: a tag of `[a-z0-9-_.]`, not shaped like a UUID.
pub fn check_tag(tag: &str) -> Result<String, String> {
    let t = tag.trim().to_ascii_lowercase();
    let uuid_like = t.len() == 36 && t.bytes().filter(|b| *b == b'-').count() == 4;
    let ok = !t.is_empty()
        && t.len() <= 128
        && !uuid_like
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    match ok {
        true => Ok(t),
        false => Err(format!("Invalid tag {tag:?}: use letters, digits, '-', '_' and '.'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags_follow_e2bs_rules() {
        assert_eq!(check_name(" My-Tpl_1 ").unwrap(), "my-tpl_1");
        assert_eq!(check_name("team/tpl").unwrap(), "team/tpl");
        for bad in ["", "a b", "a:b", "a/b/c", "é"] {
            assert!(check_name(bad).unwrap_err().contains(&format!("{bad:?}")), "{bad}");
        }
        assert_eq!(check_tag("v1.2").unwrap(), "v1.2");
        for bad in ["", ":invalid-tag", "a b", "123e4567-e89b-12d3-a456-426614174000"] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        assert_eq!(split_tag("a:v1"), ("a", Some("v1")));
        assert_eq!(split_tag("a"), ("a", None));
    }

    #[test]
    fn unfinished_builds_fail_at_open_and_the_catalog_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        let mut c = Catalog::open(&path).unwrap();
        let build = |id: &str, status| Build {
            id: id.into(),
            status,
            created_at: Utc::now(),
            finished_at: None,
            snapshot: Some(format!("snap-{id}")),
            envs: BTreeMap::new(),
            user: None,
            workdir: None,
            start_cmd: None,
            ready_cmd: None,
            start_on_create: false,
            reason: None,
            cpu_count: None,
            memory_mb: None,
            tags: Vec::new(),
            logs: Vec::new(),
        };
        c.templates.push(Template {
            id: "t1".into(),
            name: "mine".into(),
            created_at: Utc::now(),
            builds: vec![build("b1", Status::Ready), build("b2", Status::Building)],
            tags: BTreeMap::from([("default".into(), "b1".into()), ("v2".into(), "b2".into())]),
            spawn_count: 0,
            last_spawned_at: None,
        });
        c.save().unwrap();
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.resolve("mine").and_then(|b| b.snapshot.as_deref()), Some("snap-b1"));
        assert_eq!(c.resolve("t1:default").map(|b| b.id.as_str()), Some("b1"));
        assert!(c.resolve("mine:v2").is_none(), "failed at open: the server stopped during it");
        assert_eq!(c.find("mine").unwrap().build("b2").unwrap().status, Status::Error);
    }
}
