//! A whole template build: hash each COPY step's files, request the build (`POST
//! /v3/templates`), upload the archives the server lacks, start it with the steps, and
//! (unless in the background) follow its status and log every 200 ms until it is ready or
//! failed. The SDK's own log lines are e2b's, so a build reads the same through either SDK.

use super::routes::{self, UploadLink};
use super::{files, LogEntry, TemplateSpec};
use crate::api::Api;
use crate::error::{BuildFailure, Error, Result};
use std::io::{Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

/// How often a build's status is asked for.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// An upload's time limit unless the caller set a request timeout (archives can be large).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// What to build the template as, and where its COPY steps' files are.
#[derive(Clone, Debug, Default)]
pub struct BuildOpts {
    /// `name` or `name:tag`.
    pub name: String,
    pub tags: Option<Vec<String>>,
    pub cpu_count: Option<u32>,
    pub memory_mb: Option<u64>,
    pub min_free_disk_mb: Option<u64>,
    /// Build every step again, cached or not.
    pub skip_cache: bool,
    /// The directory COPY sources are relative to.
    pub context: PathBuf,
    /// Glob patterns of files COPY steps leave out (the context's `.dockerignore` is added).
    pub ignore_patterns: Vec<String>,
    /// The caller's request timeout, which uploads use too; unset: an hour for uploads.
    pub upload_timeout_ms: Option<u64>,
}

/// `BuildInfo`: what was built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// As the caller gave it (with its `:tag`, if any).
    pub name: String,
    /// The tags the server gave the build.
    pub tags: Option<Vec<String>>,
    pub template_id: String,
    pub build_id: String,
}

/// `Template.build`: the build, from request to its end; `log` gets every line on the way.
pub async fn build(
    api: &Api,
    spec: TemplateSpec,
    opts: &BuildOpts,
    log: &mut (dyn FnMut(LogEntry) + Send),
) -> Result<BuildInfo> {
    let info = start_build(api, spec, opts, log).await?;
    log(LogEntry::info("Waiting for logs..."));
    wait_for_build(api, &info.template_id, &info.build_id, log).await?;
    Ok(info)
}

/// `Template.buildInBackground`: requests the build, uploads its files and starts it.
pub async fn start_build(
    api: &Api,
    mut spec: TemplateSpec,
    opts: &BuildOpts,
    log: &mut (dyn FnMut(LogEntry) + Send),
) -> Result<BuildInfo> {
    if opts.name.is_empty() {
        return Err(Error::Template("Name must be provided".into()));
    }
    if opts.skip_cache {
        spec.force = true;
    }
    // Before the request (e2b hashes after it): a missing file then leaves no template behind.
    let ignore = files::ignore_patterns(&opts.context, &opts.ignore_patterns);
    hash_copies(&mut spec, opts, &ignore).await?;
    let tags = opts.tags.as_deref().filter(|t| !t.is_empty());
    let with_tags = tags.map(|t| format!(" with tags {}", t.join(", "))).unwrap_or_default();
    log(LogEntry::info(format!("Requesting build for template: {}{with_tags}", opts.name)));
    let requested = routes::request_build(
        api,
        &opts.name,
        opts.tags.as_deref(),
        opts.cpu_count,
        opts.memory_mb,
        opts.min_free_disk_mb,
    )
    .await?;
    let (template_id, build_id) = (requested.template_id, requested.build_id);
    log(LogEntry::info(format!("Template created with ID: {template_id}, Build ID: {build_id}")));

    let uploads =
        spec.steps.iter().filter(|s| s.kind == "COPY").map(|s| upload_files(api, &template_id, s, opts, &ignore));
    for (src, uploaded) in futures_util::future::try_join_all(uploads).await? {
        log(LogEntry::info(match uploaded {
            true => format!("Uploaded '{src}'"),
            false => format!("Skipping upload of '{src}', already cached"),
        }));
    }
    log(LogEntry::info("All file uploads completed"));
    log(LogEntry::info("Starting building..."));
    routes::trigger_build(api, &template_id, &build_id, &spec).await?;
    Ok(BuildInfo { name: opts.name.clone(), tags: requested.tags, template_id, build_id })
}

/// Sets each COPY step's `filesHash`.
async fn hash_copies(spec: &mut TemplateSpec, opts: &BuildOpts, ignore: &[String]) -> Result<()> {
    for step in spec.steps.iter_mut().filter(|s| s.kind == "COPY") {
        let (Some(src), Some(dest)) = (step.args.first().cloned(), step.args.get(1).cloned()) else {
            return Err(Error::Template(format!("COPY needs a source and a destination, got {:?}", step.args)));
        };
        let (context, ignore, resolve) = (opts.context.clone(), ignore.to_vec(), step.resolve_symlinks == Some(true));
        let hash = tokio::task::spawn_blocking(move || files::hash(&src, &dest, &context, &ignore, resolve))
            .await
            .map_err(|e| Error::Other(format!("hashing files: {e}")))??;
        step.files_hash = Some(hash);
    }
    Ok(())
}

/// Uploads a COPY step's archive if the server lacks it (or the step forces it); returns its
/// source and whether it was uploaded.
async fn upload_files(
    api: &Api,
    template_id: &str,
    step: &super::Step,
    opts: &BuildOpts,
    ignore: &[String],
) -> Result<(String, bool)> {
    let src = step.args[0].clone();
    let hash = step.files_hash.as_deref().expect("hashed before the uploads");
    let link: UploadLink = routes::upload_link(api, template_id, hash).await?;
    if link.url.is_none() || (link.present && step.force_upload != Some(true)) {
        return Ok((src, false));
    }
    let (context, ignore) = (opts.context.clone(), ignore.to_vec());
    let (resolve, gzip) = (step.resolve_symlinks == Some(true), step.gzip != Some(false));
    let source = src.clone();
    // Spooled to an anonymous temporary file: memory stays bounded, and the size is known.
    let (archive, size) = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64)> {
        let io = |e: std::io::Error| Error::FileUpload(format!("Failed to upload file: {e}"));
        let mut out = std::io::BufWriter::new(tempfile::tempfile().map_err(io)?);
        files::archive(&source, &context, &ignore, resolve, gzip, &mut out)?;
        out.flush().map_err(io)?;
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        let size = file.stream_position().map_err(io)?;
        file.rewind().map_err(io)?;
        Ok((file, size))
    })
    .await
    .map_err(|e| Error::Other(format!("packing files: {e}")))??;
    let timeout = opts.upload_timeout_ms.filter(|ms| *ms > 0).map_or(UPLOAD_TIMEOUT, Duration::from_millis);
    routes::upload(api, &link, tokio::fs::File::from_std(archive), size, timeout).await?;
    Ok((src, true))
}

/// Follows a started build until it is ready (`Ok`) or failed (`BuildError` with the reason,
/// the step and its log), passing each log line to `log`. Once it has ended, the rest of the
/// log is read to its end first.
pub async fn wait_for_build(
    api: &Api,
    template_id: &str,
    build_id: &str,
    log: &mut (dyn FnMut(LogEntry) + Send),
) -> Result<()> {
    let mut offset = 0u64;
    let mut seen: Vec<LogEntry> = Vec::new();
    loop {
        let status = routes::build_status(api, template_id, build_id, Some(offset)).await?;
        let mut page = status.log_entries.clone();
        match status.status.as_str() {
            "building" | "waiting" => {}
            "ready" | "error" => {
                while !page.is_empty() {
                    offset += page.len() as u64;
                    for e in page.drain(..) {
                        seen.push(e.clone());
                        log(e);
                    }
                    page = routes::build_status(api, template_id, build_id, Some(offset)).await?.log_entries;
                }
                return match (status.status.as_str(), status.reason) {
                    ("ready", _) => Ok(()),
                    (_, Some(reason)) => Err(Error::Build(reason.into_failure(&seen))),
                    (_, None) => {
                        Err(Error::Build(BuildFailure { message: "Unknown error".into(), ..Default::default() }))
                    }
                };
            }
            _ => return Err(Error::build("Unknown build error occurred.")),
        }
        offset += page.len() as u64;
        for e in page {
            seen.push(e.clone());
            log(e);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
