//! `Template`'s I/O (`sandbank_client::templates`): a build with its log pulled by JS
//! (`NativeTemplateBuild`: `nextLog()` until `null`, then `finish()`), COPY file hashes for
//! `toJSON`, Dockerfile parsing for `fromDockerfile`, build status, names and tags. The builder
//! itself is JS (`js/template.ts`): it hands over the template as the JSON e2b sends.

use crate::config::{config, resolve, with_local_default, ConnectionOptions};
use crate::errors::{to_napi, IntoNapi};
use napi_derive::napi;
use sandbank_client::templates::{
    self, dockerfile, files, BuildInfo, BuildOpts, BuildStatus, Instruction, LogEntry, TemplateSpec,
};
use sandbank_client::{Api, Error};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

/// The build options of `Template.build` (the connection options come apart), with where the
/// builder's COPY sources are.
#[napi(object)]
pub struct TemplateBuildOptions {
    /// `name` or `name:tag`.
    pub name: String,
    pub tags: Option<Vec<String>>,
    pub cpu_count: Option<f64>,
    #[napi(js_name = "memoryMB")]
    pub memory_mb: Option<f64>,
    pub min_free_disk_mb: Option<f64>,
    pub skip_cache: Option<bool>,
    pub file_context_path: String,
    pub file_ignore_patterns: Vec<String>,
}

/// A whole number from JS, or an `InvalidArgumentError` naming the option.
fn whole(name: &str, v: Option<f64>) -> napi::Result<Option<u64>> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => Ok(Some(x as u64)),
        Some(x) => Err(to_napi(Error::InvalidArgument(format!("{name} must be a whole number: got {x}")))),
    }
}

/// One log line; `timestamp` in epoch milliseconds.
#[napi(object)]
pub struct LogEntryJs {
    pub timestamp: f64,
    pub level: String,
    pub message: String,
}

impl From<LogEntry> for LogEntryJs {
    fn from(e: LogEntry) -> Self {
        LogEntryJs { timestamp: e.timestamp.timestamp_millis() as f64, level: e.level, message: e.message }
    }
}

/// `BuildInfo` (without the deprecated `alias`, which JS adds).
#[napi(object)]
pub struct BuildInfoJs {
    pub name: String,
    pub tags: Option<Vec<String>>,
    pub template_id: String,
    pub build_id: String,
}

impl From<BuildInfo> for BuildInfoJs {
    fn from(i: BuildInfo) -> Self {
        BuildInfoJs { name: i.name, tags: i.tags, template_id: i.template_id, build_id: i.build_id }
    }
}

/// A build under way: its log lines, then its outcome.
#[napi(js_name = "NativeTemplateBuild")]
pub struct JsTemplateBuild {
    logs: Arc<Mutex<mpsc::UnboundedReceiver<LogEntry>>>,
    task: Arc<Mutex<Option<JoinHandle<sandbank_client::Result<BuildInfo>>>>>,
}

#[napi]
impl JsTemplateBuild {
    /// Starts `Template.build` (or, with `background`, `buildInBackground`) of `template`, the
    /// builder's JSON.
    #[napi(factory)]
    pub async fn start(
        template: String,
        opts: TemplateBuildOptions,
        background: bool,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<JsTemplateBuild> {
        let spec = TemplateSpec::from_json(&template).napi()?;
        let build_opts = BuildOpts {
            name: opts.name,
            tags: opts.tags,
            cpu_count: whole("cpuCount", opts.cpu_count)?.map(|n| n as u32),
            memory_mb: whole("memoryMB", opts.memory_mb)?,
            min_free_disk_mb: whole("minFreeDiskMb", opts.min_free_disk_mb)?,
            skip_cache: opts.skip_cache.unwrap_or(false),
            context: PathBuf::from(opts.file_context_path),
            ignore_patterns: opts.file_ignore_patterns,
            upload_timeout_ms: None,
        };
        let conn = with_local_default(conn).await?;
        let build_opts = BuildOpts { upload_timeout_ms: conn.request_timeout_ms, ..build_opts };
        let api = Api::new(config(&conn)?);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut log = move |e: LogEntry| {
                let _ = tx.send(e);
            };
            match background {
                true => templates::start_build(&api, spec, &build_opts, &mut log).await,
                false => templates::build(&api, spec, &build_opts, &mut log).await,
            }
        });
        Ok(JsTemplateBuild { logs: Arc::new(Mutex::new(rx)), task: Arc::new(Mutex::new(Some(task))) })
    }

    /// The next log line; `null` once the build call is over.
    #[napi]
    pub async fn next_log(&self) -> Option<LogEntryJs> {
        self.logs.lock().await.recv().await.map(LogEntryJs::from)
    }

    /// What was built, or why not.
    #[napi]
    pub async fn finish(&self) -> napi::Result<BuildInfoJs> {
        let task = self.task.lock().await.take();
        let task = task.ok_or_else(|| to_napi(Error::Other("The build's outcome was already taken".into())))?;
        let result = task.await.map_err(|e| to_napi(Error::Other(format!("The build task failed: {e}"))))?;
        result.map(BuildInfoJs::from).napi()
    }
}

/// The `filesHash` of a COPY of `src` to `dest` from `fileContextPath` (what `toJSON` shows).
#[napi]
pub async fn template_files_hash(
    src: String,
    dest: String,
    file_context_path: String,
    file_ignore_patterns: Vec<String>,
    resolve_symlinks: bool,
) -> napi::Result<String> {
    tokio::task::spawn_blocking(move || {
        let context = PathBuf::from(file_context_path);
        let ignore = files::ignore_patterns(&context, &file_ignore_patterns);
        files::hash(&src, &dest, &context, &ignore, resolve_symlinks)
    })
    .await
    .map_err(|e| to_napi(Error::Other(format!("hashing files: {e}"))))?
    .napi()
}

/// `copy(src, …)`'s check of `src`: relative, inside the context (else a `TemplateError`
/// naming it).
#[napi]
pub fn check_copy_source(src: String) -> napi::Result<()> {
    files::check_source(&src).napi()
}

/// One builder call of a Dockerfile: `kind` is `RUN` `[cmd]`, `COPY` `[src, dest, user?]`,
/// `ENV` `[k1, v1, …]`, `WORKDIR` `[dir]`, `USER` `[user]` or `START` `[cmd, ready]`.
#[napi(object)]
pub struct DockerfileStepJs {
    pub kind: String,
    pub args: Vec<String>,
}

#[napi(object)]
pub struct DockerfileJs {
    pub base_image: String,
    pub steps: Vec<DockerfileStepJs>,
    pub warnings: Vec<String>,
}

fn step(kind: &str, args: Vec<String>) -> DockerfileStepJs {
    DockerfileStepJs { kind: kind.into(), args }
}

/// `fromDockerfile(contentOrPath)`: a path to a file, else the Dockerfile's text.
#[napi]
pub fn parse_dockerfile(content_or_path: String) -> napi::Result<DockerfileJs> {
    let d = dockerfile::read(&content_or_path).napi()?;
    let steps = d
        .instructions
        .into_iter()
        .map(|i| match i {
            Instruction::Run(cmd) => step("RUN", vec![cmd]),
            Instruction::Copy { src, dest, user } => step("COPY", [src, dest].into_iter().chain(user).collect()),
            Instruction::Env(pairs) => step("ENV", pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
            Instruction::Workdir(dir) => step("WORKDIR", vec![dir]),
            Instruction::User(user) => step("USER", vec![user]),
            Instruction::Start { cmd, ready } => step("START", vec![cmd, ready]),
        })
        .collect();
    Ok(DockerfileJs { base_image: d.base_image, steps, warnings: d.warnings })
}

#[napi(object)]
pub struct BuildReasonJs {
    pub message: String,
    pub step: Option<String>,
    pub log_entries: Vec<LogEntryJs>,
}

#[napi(object)]
pub struct BuildStatusJs {
    pub template_id: String,
    pub build_id: String,
    pub status: String,
    pub log_entries: Vec<LogEntryJs>,
    pub logs: Vec<String>,
    pub reason: Option<BuildReasonJs>,
}

impl From<BuildStatus> for BuildStatusJs {
    fn from(s: BuildStatus) -> Self {
        let entries = |v: Vec<LogEntry>| v.into_iter().map(LogEntryJs::from).collect();
        BuildStatusJs {
            template_id: s.template_id,
            build_id: s.build_id,
            status: s.status,
            log_entries: entries(s.log_entries),
            logs: s.logs,
            reason: s.reason.map(|r| BuildReasonJs {
                message: r.message,
                step: r.step,
                log_entries: entries(r.log_entries),
            }),
        }
    }
}

async fn api(conn: Option<ConnectionOptions>) -> napi::Result<Api> {
    Ok(Api::new(resolve(conn).await?))
}

/// `Template.getBuildStatus({templateId, buildId}, {logsOffset})`.
#[napi]
pub async fn get_template_build_status(
    template_id: String,
    build_id: String,
    logs_offset: Option<f64>,
    conn: Option<ConnectionOptions>,
) -> napi::Result<BuildStatusJs> {
    let offset = whole("logsOffset", logs_offset)?;
    let api = api(conn).await?;
    templates::routes::build_status(&api, &template_id, &build_id, offset).await.map(BuildStatusJs::from).napi()
}

/// `Template.exists(name)`.
#[napi]
pub async fn template_exists(name: String, conn: Option<ConnectionOptions>) -> napi::Result<bool> {
    templates::routes::alias_exists(&api(conn).await?, &name).await.napi()
}

#[napi(object)]
pub struct TemplateTagInfoJs {
    pub build_id: String,
    pub tags: Vec<String>,
}

/// `Template.assignTags(target, tags)`.
#[napi]
pub async fn assign_template_tags(
    target: String,
    tags: Vec<String>,
    conn: Option<ConnectionOptions>,
) -> napi::Result<TemplateTagInfoJs> {
    let info = templates::routes::assign_tags(&api(conn).await?, &target, &tags).await.napi()?;
    Ok(TemplateTagInfoJs { build_id: info.build_id, tags: info.tags })
}

/// `Template.removeTags(name, tags)`.
#[napi]
pub async fn remove_template_tags(
    name: String,
    tags: Vec<String>,
    conn: Option<ConnectionOptions>,
) -> napi::Result<()> {
    templates::routes::remove_tags(&api(conn).await?, &name, &tags).await.napi()
}

/// One tag; `createdAt` in epoch milliseconds.
#[napi(object)]
pub struct TemplateTagJs {
    pub tag: String,
    pub build_id: String,
    pub created_at: f64,
}

/// `Template.getTags(templateIdOrName)`.
#[napi]
pub async fn get_template_tags(
    template_id: String,
    conn: Option<ConnectionOptions>,
) -> napi::Result<Vec<TemplateTagJs>> {
    let tags = templates::routes::get_tags(&api(conn).await?, &template_id).await.napi()?;
    Ok(tags
        .into_iter()
        .map(|t| TemplateTagJs { tag: t.tag, build_id: t.build_id, created_at: t.created_at.timestamp_millis() as f64 })
        .collect())
}
