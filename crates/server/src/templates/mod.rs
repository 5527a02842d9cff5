//! Template builds, as E2B's `Template` builder drives them (`POST /v3/templates`, the files'
//! upload links, the build, its status and logs, tags): the catalog of what was built
//! ([`catalog`]), the steps ([`steps`]), the build itself ([`build`]: a sandbox that runs the
//! steps, a snapshot after each one, cached by the step and what came before), and what it asks
//! of the build sandbox's envd ([`envd`]).
//!
//! Kept in `<data>/builds/`: `catalog.json` and `files/<hash>`, the archives the SDK uploaded
//! for `COPY` steps.

pub mod build;
pub mod builtin;
pub mod catalog;
pub mod envd;
pub mod steps;

use crate::api::backend::Backend;
use crate::api::error::ApiError;
use catalog::{check_name, check_tag, split_tag, Build, Catalog, LogLine, Status, Template, DEFAULT_TAG};
use chrono::Utc;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The most log lines one status call returns.
const LOG_PAGE: usize = 100;

#[derive(Debug)]
pub struct Templates {
    catalog: Mutex<Catalog>,
    /// Where uploaded archives go; `None`: nowhere (the API's tests).
    files: Option<PathBuf>,
    /// Upload token → the files hash it may upload (the SDK's PUT carries no API key).
    upload_tokens: Mutex<HashMap<String, String>>,
}

/// What `POST /v3/templates` made.
#[derive(Debug)]
pub struct Requested {
    pub template_id: String,
    pub build_id: String,
    pub name: String,
    pub tags: Vec<String>,
}

/// What a build's status call shows.
#[derive(Debug)]
pub struct BuildStatus {
    pub status: Status,
    pub logs: Vec<LogLine>,
    pub reason: Option<catalog::Reason>,
}

/// What a sandbox of a template starts from, and what its commands run with by default.
#[derive(Debug)]
pub struct Resolved {
    pub snapshot: String,
    pub envs: BTreeMap<String, String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Its start command and ready command: what a template built from it runs unless it has
    /// its own.
    pub start_cmd: Option<String>,
    pub ready_cmd: Option<String>,
    /// See [`catalog::Build::start_on_create`].
    pub start_on_create: bool,
}

impl Templates {
    /// The catalog in `dir` (made if missing).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let files = dir.join("files");
        std::fs::create_dir_all(&files)?;
        Ok(Self {
            catalog: Mutex::new(Catalog::open(&dir.join("catalog.json"))?),
            files: Some(files),
            upload_tokens: Mutex::default(),
        })
    }

    /// A catalog that keeps nothing on disk and takes no uploads (the API's tests).
    #[cfg(test)]
    pub fn in_memory() -> Self {
        Self { catalog: Mutex::default(), files: None, upload_tokens: Mutex::default() }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Catalog) -> T) -> T {
        f(&mut self.catalog.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn save(catalog: &Catalog) -> Result<(), ApiError> {
        catalog.save().map_err(|e| ApiError::Internal(format!("saving the template catalog: {e}")))
    }

    /// A new build of template `name` (`name:tag` tags it too), the template made if new.
    pub fn request(
        &self,
        name: &str,
        tags: &[String],
        cpu_count: Option<u32>,
        memory_mb: Option<u64>,
    ) -> Result<Requested, ApiError> {
        let (bare, tag) = split_tag(name.trim());
        let name = check_name(bare).map_err(ApiError::BadRequest)?;
        let mut all: Vec<String> = Vec::new();
        for t in tag.into_iter().chain(tags.iter().map(String::as_str)) {
            let t = check_tag(t).map_err(ApiError::BadRequest)?;
            if !all.contains(&t) {
                all.push(t);
            }
        }
        if all.is_empty() {
            all.push(DEFAULT_TAG.into());
        }
        let build = Build {
            id: new_uuid(),
            status: Status::Waiting,
            created_at: Utc::now(),
            finished_at: None,
            snapshot: None,
            envs: BTreeMap::new(),
            user: None,
            workdir: None,
            start_cmd: None,
            ready_cmd: None,
            start_on_create: false,
            reason: None,
            cpu_count,
            memory_mb,
            tags: all.clone(),
            logs: Vec::new(),
        };
        let build_id = build.id.clone();
        self.with(|c| {
            let template_id = match c.find_mut(&name) {
                Some(t) => {
                    t.builds.push(build);
                    t.id.clone()
                }
                None => {
                    let id = sandbank_engine::id::new_id();
                    c.templates.push(Template {
                        id: id.clone(),
                        name: name.clone(),
                        created_at: Utc::now(),
                        builds: vec![build],
                        tags: BTreeMap::new(),
                        spawn_count: 0,
                        last_spawned_at: None,
                    });
                    id
                }
            };
            Self::save(c)?;
            Ok(Requested { template_id, build_id, name, tags: all })
        })
    }

    /// `None` when the archive `hash` is here already; else the token its upload must carry.
    pub fn upload_token(&self, template_id: &str, hash: &str) -> Result<Option<String>, ApiError> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::BadRequest(format!("Invalid files hash {hash:?}")));
        }
        if self.with(|c| c.find(template_id).is_none()) {
            return Err(ApiError::TemplateNotFound(template_id.into()));
        }
        let archive = self.archive(hash).ok_or_else(|| ApiError::Internal("this server keeps no uploads".into()))?;
        if archive.is_file() {
            return Ok(None);
        }
        let token = new_uuid();
        self.upload_tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), hash.to_ascii_lowercase());
        Ok(Some(token))
    }

    /// Takes the token of an upload of `hash`: `false` if it was not given for it.
    pub fn take_upload_token(&self, hash: &str, token: &str) -> bool {
        let mut tokens = self.upload_tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(token) {
            Some(h) if h.eq_ignore_ascii_case(hash) => tokens.remove(token).is_some(),
            _ => false,
        }
    }

    /// Where the archive of files `hash` is kept.
    pub fn archive(&self, hash: &str) -> Option<PathBuf> {
        self.files.as_ref().map(|f| f.join(hash.to_ascii_lowercase()))
    }

    /// Starts build `build_id` of `template_id` with `req` (on its own task).
    pub fn start(
        self: &Arc<Self>,
        backend: Arc<dyn Backend>,
        template_id: &str,
        build_id: &str,
        req: steps::BuildRequest,
    ) -> Result<(), ApiError> {
        self.with(|c| {
            let t = c.find_mut(template_id).ok_or_else(|| ApiError::TemplateNotFound(template_id.into()))?;
            let b =
                t.build_mut(build_id).ok_or_else(|| ApiError::BadRequest(format!("Build {build_id:?} not found")))?;
            if b.status != Status::Waiting {
                return Err(ApiError::Conflict(format!("Build {build_id:?} was started already")));
            }
            b.status = Status::Building;
            Ok(())
        })?;
        let me = Arc::clone(self);
        let (template_id, build_id) = (template_id.to_string(), build_id.to_string());
        tokio::spawn(async move { build::run(me, backend, template_id, build_id, req).await });
        Ok(())
    }

    /// A build's status and its log from `offset`.
    pub fn status(&self, template_id: &str, build_id: &str, offset: usize) -> Result<BuildStatus, ApiError> {
        self.with(|c| {
            let t = c.find(template_id).ok_or_else(|| ApiError::TemplateNotFound(template_id.into()))?;
            let b = t.build(build_id).ok_or_else(|| ApiError::TemplateNotFound(format!("{template_id}/{build_id}")))?;
            let logs = b.logs.iter().skip(offset).take(LOG_PAGE).cloned().collect();
            Ok(BuildStatus { status: b.status, logs, reason: b.reason.clone() })
        })
    }

    /// What a sandbox of template `reference` (`name[:tag]` or ID) starts from.
    pub fn resolve(&self, reference: &str) -> Option<Resolved> {
        self.with(|c| {
            let b = c.resolve(reference)?;
            Some(Resolved {
                snapshot: b.snapshot.clone()?,
                envs: b.envs.clone(),
                user: b.user.clone(),
                workdir: b.workdir.clone(),
                start_cmd: b.start_cmd.clone(),
                ready_cmd: b.ready_cmd.clone(),
                start_on_create: b.start_on_create,
            })
        })
    }

    /// Counts a sandbox started from template `reference` (`spawnCount`, kept at the catalog's
    /// next save).
    pub fn count_start(&self, reference: &str) {
        self.with(|c| {
            if let Some(t) = c.find_mut(split_tag(reference).0) {
                t.spawn_count += 1;
                t.last_spawned_at = Some(Utc::now());
            }
        })
    }

    /// `GET /templates`: every template, as E2B lists them; resources not asked for are the
    /// server's defaults (`limits`).
    pub fn list(&self, limits: &sandbank_engine::Limits) -> Vec<sandbank_protocol::rest::TemplateInfo> {
        self.with(|c| {
            c.templates
                .iter()
                .filter_map(|t| {
                    let last = t.builds.last()?;
                    let shown = t.builds.iter().rev().find(|b| b.status == Status::Ready).unwrap_or(last);
                    Some(sandbank_protocol::rest::TemplateInfo {
                        template_id: t.id.clone(),
                        build_id: shown.id.clone(),
                        build_status: serde_json::to_value(last.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        build_count: t.builds.len() as u32,
                        aliases: vec![t.name.clone()],
                        names: t.tags.keys().map(|tag| format!("{}:{tag}", t.name)).collect(),
                        cpu_count: shown.cpu_count.unwrap_or(limits.cpu_count),
                        memory_mb: shown.memory_mb.unwrap_or(limits.memory_mb),
                        disk_size_mb: limits.disk_mb,
                        public: false,
                        created_at: t.created_at,
                        updated_at: t.builds.iter().filter_map(|b| b.finished_at).max().unwrap_or(t.created_at),
                        created_by: None,
                        last_spawned_at: t.last_spawned_at,
                        spawn_count: t.spawn_count,
                        envd_version: sandbank_protocol::ENVD_VERSION.into(),
                    })
                })
                .collect()
        })
    }

    /// `(template ID, build ID)` of a build of template `name` still under way.
    pub fn building(&self, name: &str) -> Option<(String, String)> {
        self.with(|c| {
            let t = c.find(name)?;
            let b = t.builds.iter().rev().find(|b| b.status == Status::Building)?;
            Some((t.id.clone(), b.id.clone()))
        })
    }

    /// Whether `alias` names a template of this catalog (built or being built).
    pub fn exists(&self, alias: &str) -> bool {
        self.with(|c| c.find(split_tag(alias).0).is_some())
    }

    /// Tags `target`'s (`name:tag`) build with `tags`; returns the build and the tags.
    pub fn assign_tags(&self, target: &str, tags: &[String]) -> Result<(String, Vec<String>), ApiError> {
        let (name, tag) = split_tag(target);
        let tag = check_tag(tag.unwrap_or(DEFAULT_TAG)).map_err(ApiError::BadRequest)?;
        let tags = tags.iter().map(|t| check_tag(t)).collect::<Result<Vec<_>, _>>().map_err(ApiError::BadRequest)?;
        if tags.is_empty() {
            return Err(ApiError::BadRequest("No tags to assign".into()));
        }
        self.with(|c| {
            let t = c.find_mut(name).ok_or_else(|| ApiError::TemplateNotFound(name.into()))?;
            let build = t.tags.get(&tag).cloned().ok_or_else(|| ApiError::TemplateNotFound(format!("{name}:{tag}")))?;
            for tag in &tags {
                t.tags.insert(tag.clone(), build.clone());
            }
            Self::save(c)?;
            Ok((build, tags))
        })
    }

    pub fn remove_tags(&self, name: &str, tags: &[String]) -> Result<(), ApiError> {
        self.with(|c| {
            let t = c.find_mut(name).ok_or_else(|| ApiError::TemplateNotFound(name.into()))?;
            for tag in tags {
                t.tags.remove(tag.as_str());
            }
            Self::save(c)
        })
    }

    /// `(tag, build ID, when the build was made)` of template `id_or_name`.
    pub fn tags(&self, id_or_name: &str) -> Result<Vec<(String, String, chrono::DateTime<Utc>)>, ApiError> {
        self.with(|c| {
            let t = c.find(id_or_name).ok_or_else(|| ApiError::TemplateNotFound(id_or_name.into()))?;
            Ok(t.tags
                .iter()
                .filter_map(|(tag, b)| t.build(b).map(|b| (tag.clone(), b.id.clone(), b.created_at)))
                .collect())
        })
    }

    /// Removes template `id_or_name`; returns the snapshots its builds started sandboxes from
    /// (for the caller to delete), or `None` if there is no such template.
    pub fn delete(&self, id_or_name: &str) -> Result<Option<Vec<String>>, ApiError> {
        self.with(|c| {
            let Some(i) = c.templates.iter().position(|t| t.id == id_or_name || t.name == id_or_name) else {
                return Ok(None);
            };
            let t = c.templates.remove(i);
            Self::save(c)?;
            Ok(Some(t.builds.into_iter().filter_map(|b| b.snapshot).collect()))
        })
    }

    /// Appends a line to a build's log.
    fn log(&self, template_id: &str, build_id: &str, level: &str, message: String, step: Option<String>) {
        self.with(|c| {
            if let Some(b) = c.find_mut(template_id).and_then(|t| t.build_mut(build_id)) {
                b.logs.push(LogLine { timestamp: Utc::now(), level: level.into(), message, step });
            }
        })
    }

    /// Ends a build: ready with what sandboxes start from, and then the tags it was requested
    /// with name it; or failed.
    fn finish(&self, template_id: &str, build_id: &str, result: Result<Resolved, catalog::Reason>) {
        self.with(|c| {
            let Some(t) = c.find_mut(template_id) else { return };
            let Some(b) = t.build_mut(build_id) else { return };
            b.finished_at = Some(Utc::now());
            match result {
                Ok(made) => {
                    b.status = Status::Ready;
                    b.snapshot = Some(made.snapshot);
                    b.envs = made.envs;
                    b.user = made.user;
                    b.workdir = made.workdir;
                    b.start_cmd = made.start_cmd;
                    b.ready_cmd = made.ready_cmd;
                    b.start_on_create = made.start_on_create;
                    for tag in b.tags.clone() {
                        t.tags.insert(tag, build_id.to_string());
                    }
                }
                Err(reason) => {
                    b.status = Status::Error;
                    b.reason = Some(reason);
                }
            }
            save_or_warn(c);
        })
    }

    fn cached(&self, key: &str) -> Option<String> {
        self.with(|c| c.cache.get(key).cloned())
    }

    /// Caches `snapshot` as the layer of `key`; returns the layer it replaces, unless a build
    /// starts sandboxes from that one.
    fn cache(&self, key: String, snapshot: String) -> Option<String> {
        self.with(|c| {
            let old = c.cache.insert(key, snapshot);
            save_or_warn(c);
            let used = |s: &String| c.templates.iter().flat_map(|t| &t.builds).any(|b| b.snapshot.as_ref() == Some(s));
            old.filter(|s| !used(s))
        })
    }

    fn forget(&self, key: &str) {
        self.with(|c| c.cache.remove(key));
    }
}

/// Saves the catalog after a change a build made (no request to fail: a failure is logged).
fn save_or_warn(c: &Catalog) {
    if let Err(e) = c.save() {
        tracing::warn!("saving the template catalog: {e}");
    }
}

/// A version 4 UUID: E2B's build IDs.
fn new_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-4{}-{:x}{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], 8 | (b[8] & 0x3), &hex[17..20], &hex[20..32])
}
