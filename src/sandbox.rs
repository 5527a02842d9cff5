//! `NativeSandbox`: create/connect (factories), the static control-plane calls, and the
//! instance calls of one sandbox.

use crate::commands::JsCommands;
use crate::config::{config, opts, resolve, with_local_default, ConnectionOptions};
use crate::errors::{disk_size_mb, ms, tagged, IntoNapi};
use crate::files::JsFiles;
use crate::info::{SandboxInfoJs, SandboxMetricsJs, SnapshotInfoJs};
use crate::paginator::{JsSandboxPaginator, JsSnapshotPaginator};
use crate::pty::JsPty;
use napi_derive::napi;
use sandbank_client::{
    get_signature, Api, ConnectionOpts, CreateSnapshotOpts, FileOperation, Sandbox, SandboxCloneOpts,
    SandboxConnectOpts, SandboxCreateOpts, SandboxForkOpts, SandboxLifecycle, SandboxListOpts, SandboxMetrics,
    SandboxMetricsOpts, SandboxUrlOpts, SnapshotListOpts,
};
use std::collections::HashMap;
use std::sync::Arc;

#[napi(object)]
pub struct LifecycleOptions {
    pub on_timeout: Option<String>,
    pub auto_resume: Option<bool>,
}

/// The sandbox fields of `SandboxOpts`.
#[napi(object)]
#[derive(Default)]
pub struct SandboxOptions {
    pub metadata: Option<HashMap<String, String>>,
    pub envs: Option<HashMap<String, String>>,
    pub timeout_ms: Option<f64>,
    pub secure: Option<bool>,
    pub allow_internet_access: Option<bool>,
    pub lifecycle: Option<LifecycleOptions>,
    pub auto_pause: Option<bool>,
    #[napi(js_name = "diskSizeMB")]
    pub disk_size_mb: Option<f64>,
}

/// `SandboxMetricsOpts`: `start`/`end` as epoch milliseconds (a `Date`'s `getTime()`).
#[napi(object)]
#[derive(Default)]
pub struct MetricsOptions {
    pub start: Option<f64>,
    pub end: Option<f64>,
}

fn metrics_opts(o: Option<MetricsOptions>) -> SandboxMetricsOpts {
    let o = o.unwrap_or_default();
    SandboxMetricsOpts { start_ms: o.start, end_ms: o.end }
}

fn metrics_js(v: Vec<SandboxMetrics>) -> Vec<SandboxMetricsJs> {
    v.into_iter().map(SandboxMetricsJs::from).collect()
}

/// `SandboxUrlOpts`.
#[napi(object)]
#[derive(Default)]
pub struct UrlOptions {
    pub user: Option<String>,
    /// Seconds from now.
    pub use_signature_expiration: Option<i64>,
}

fn url_opts(o: Option<UrlOptions>) -> SandboxUrlOpts {
    let o = o.unwrap_or_default();
    SandboxUrlOpts { user: o.user, use_signature_expiration: o.use_signature_expiration }
}

/// `getSignature`'s result. (Only JS calls these: a test build of the addon cannot link
/// against Node's symbols, so nothing there uses them.)
#[napi(object)]
#[cfg_attr(test, allow(dead_code))]
pub struct SignatureJs {
    pub signature: String,
    /// Unix seconds; `null` without an expiration.
    pub expiration: Option<i64>,
}

/// `getSignature({path, operation, user, expirationInSeconds, envdAccessToken})`.
#[napi]
#[cfg_attr(test, allow(dead_code))]
pub fn get_file_signature(
    path: String,
    operation: String,
    user: Option<String>,
    expiration_in_seconds: Option<i64>,
    envd_access_token: Option<String>,
) -> napi::Result<SignatureJs> {
    let op = FileOperation::parse(&operation).napi()?;
    let s = get_signature(&path, op, user.as_deref(), expiration_in_seconds, envd_access_token.as_deref()).napi()?;
    Ok(SignatureJs { signature: s.signature, expiration: s.expiration })
}

#[napi(object)]
#[derive(Default)]
pub struct SandboxListOptions {
    pub metadata: Option<HashMap<String, String>>,
    pub state: Option<Vec<String>>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

#[napi(object)]
#[derive(Default)]
pub struct SnapshotListOptions {
    pub sandbox_id: Option<String>,
    pub name: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

impl From<SnapshotListOptions> for SnapshotListOpts {
    fn from(o: SnapshotListOptions) -> Self {
        SnapshotListOpts {
            sandbox_id: o.sandbox_id,
            name: o.name,
            // Sorted: the same filter makes the same query.
            metadata: o
                .metadata
                .map(|m| m.into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect()),
            limit: o.limit,
            next_token: o.next_token,
        }
    }
}

/// `CreateSnapshotOpts`: `name`, `metadata`, `ttlMs`.
#[napi(object)]
#[derive(Default)]
pub struct CreateSnapshotOptions {
    pub name: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
    pub ttl_ms: Option<f64>,
}

impl From<CreateSnapshotOptions> for CreateSnapshotOpts {
    fn from(o: CreateSnapshotOptions) -> Self {
        CreateSnapshotOpts { name: o.name, metadata: o.metadata.map(|m| m.into_iter().collect()), ttl_ms: o.ttl_ms }
    }
}

/// The sandbox fields of `SandboxForkOpts`: numbers as JS gave them (see `SandboxForkOpts` of the
/// client: the server checks the count, the client what it converts).
#[napi(object)]
#[derive(Default)]
pub struct ForkOptions {
    pub count: Option<f64>,
    pub timeout_ms: Option<f64>,
}

fn fork_opts(o: Option<ForkOptions>) -> SandboxForkOpts {
    let o = o.unwrap_or_default();
    SandboxForkOpts { count: o.count, timeout_ms: o.timeout_ms }
}

/// The sandbox fields of `SandboxCloneOpts`.
#[napi(object)]
#[derive(Default)]
pub struct CloneOptions {
    pub count: Option<f64>,
    pub strict: Option<bool>,
    pub timeout_ms: Option<f64>,
    pub node_id: Option<String>,
}

/// One copy of a fork: the sandbox, or why it did not start (`[Kind] message`, as a rejection's
/// message says it).
#[napi(object, object_from_js = false)]
pub struct ForkEntry {
    pub sandbox: Option<JsSandbox>,
    pub error: Option<String>,
}

/// `Sandbox.clone`'s answer: the copies, and the snapshot they started from.
#[napi(object, object_from_js = false)]
pub struct CloneResultJs {
    pub sandboxes: Vec<JsSandbox>,
    pub snapshot_template_id: Option<String>,
}

/// The copies of a fork as JS gets them, each with the options it was made with.
fn fork_entries(copies: Vec<sandbank_client::Result<Sandbox>>, opts: &ConnectionOpts) -> Vec<ForkEntry> {
    copies
        .into_iter()
        .map(|copy| match copy {
            Ok(s) => ForkEntry { sandbox: Some(JsSandbox { inner: Arc::new(s), opts: opts.clone() }), error: None },
            Err(e) => ForkEntry { sandbox: None, error: Some(tagged(&e)) },
        })
        .collect()
}

/// One sandbox. Cheap handles: the client's `Sandbox` is shared.
#[napi(js_name = "NativeSandbox")]
pub struct JsSandbox {
    inner: Arc<Sandbox>,
    /// The options it was made with (the local default filled in): a call's own options are
    /// merged over them, as novita-sandbox merges them.
    opts: ConnectionOpts,
}

async fn api(conn: Option<ConnectionOptions>) -> napi::Result<Api> {
    Ok(Api::new(resolve(conn).await?))
}

impl JsSandbox {
    /// This sandbox for one call: with the call's connection options, if it has any.
    fn for_call(&self, conn: Option<ConnectionOptions>) -> napi::Result<Sandbox> {
        match conn {
            None => Ok((*self.inner).clone()),
            Some(c) => Ok(self.inner.with_api_config(config(&self.opts.merged(&opts(Some(c))))?)),
        }
    }

    /// The options of one call: the sandbox's, with the call's over them.
    fn call_opts(&self, conn: Option<ConnectionOptions>) -> ConnectionOpts {
        match conn {
            None => self.opts.clone(),
            Some(c) => self.opts.merged(&opts(Some(c))),
        }
    }
}

#[napi]
impl JsSandbox {
    /// `Sandbox.create(template, opts)`.
    #[napi(factory)]
    pub async fn create(
        template: Option<String>,
        opts: Option<SandboxOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<JsSandbox> {
        let conn = with_local_default(conn).await?;
        let o = opts.unwrap_or_default();
        let create = SandboxCreateOpts {
            template,
            metadata: o.metadata,
            envs: o.envs,
            timeout_ms: ms(o.timeout_ms),
            secure: o.secure,
            allow_internet_access: o.allow_internet_access,
            lifecycle: o.lifecycle.map(|l| SandboxLifecycle { on_timeout: l.on_timeout, auto_resume: l.auto_resume }),
            auto_pause: o.auto_pause,
            disk_size_mb: o.disk_size_mb.map(disk_size_mb).transpose()?,
        };
        let inner = Sandbox::create(config(&conn)?, create).await.napi()?;
        Ok(JsSandbox { inner: Arc::new(inner), opts: conn })
    }

    /// `Sandbox.connect(id, opts)`.
    #[napi(factory)]
    pub async fn connect(
        sandbox_id: String,
        timeout_ms: Option<f64>,
        secure: Option<bool>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<JsSandbox> {
        let conn = with_local_default(conn).await?;
        let connect = SandboxConnectOpts { timeout_ms: ms(timeout_ms), secure };
        let inner = Sandbox::connect(config(&conn)?, &sandbox_id, connect).await.napi()?;
        Ok(JsSandbox { inner: Arc::new(inner), opts: conn })
    }

    /// `Sandbox.kill(id)`: `false` when there is no such sandbox.
    #[napi]
    pub async fn kill_sandbox(sandbox_id: String, conn: Option<ConnectionOptions>) -> napi::Result<bool> {
        api(conn).await?.kill(&sandbox_id).await.napi()
    }

    /// `Sandbox.getInfo(id)`.
    #[napi]
    pub async fn get_sandbox_info(sandbox_id: String, conn: Option<ConnectionOptions>) -> napi::Result<SandboxInfoJs> {
        api(conn).await?.get_info(&sandbox_id).await.map(SandboxInfoJs::from).napi()
    }

    /// `Sandbox.setTimeout(id, ms)`.
    #[napi]
    pub async fn set_sandbox_timeout(
        sandbox_id: String,
        timeout_ms: f64,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<()> {
        api(conn).await?.set_timeout(&sandbox_id, ms(Some(timeout_ms)).unwrap_or(0)).await.napi()
    }

    /// `Sandbox.pause(id)`: `true` when paused, `false` when it already was.
    #[napi]
    pub async fn pause_sandbox(sandbox_id: String, conn: Option<ConnectionOptions>) -> napi::Result<bool> {
        api(conn).await?.pause(&sandbox_id).await.napi()
    }

    /// `Sandbox.restore(id, snapshotId, {force})` (sandbank's own).
    #[napi]
    pub async fn restore_sandbox(
        sandbox_id: String,
        snapshot_id: String,
        force: Option<bool>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<()> {
        api(conn).await?.restore(&sandbox_id, &snapshot_id, force.unwrap_or(false)).await.napi()
    }

    /// `Sandbox.getMetrics(id, {start, end})`.
    #[napi]
    pub async fn get_sandbox_metrics(
        sandbox_id: String,
        opts: Option<MetricsOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<Vec<SandboxMetricsJs>> {
        api(conn).await?.get_metrics(&sandbox_id, metrics_opts(opts)).await.map(metrics_js).napi()
    }

    /// `Sandbox.list(opts)`: no request until `nextItems`.
    #[napi]
    pub fn list_sandboxes(
        opts: Option<SandboxListOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<JsSandboxPaginator> {
        let o = opts.unwrap_or_default();
        let list = SandboxListOpts {
            metadata: o.metadata.map(|m| m.into_iter().collect()),
            state: o.state,
            limit: o.limit,
            next_token: o.next_token,
        };
        JsSandboxPaginator::new(conn, list.next_token.clone(), move |api| api.list(list.clone()))
    }

    /// `Sandbox.createSnapshot(id, opts)`.
    #[napi]
    pub async fn create_snapshot_of(
        sandbox_id: String,
        opts: Option<CreateSnapshotOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<SnapshotInfoJs> {
        let opts = CreateSnapshotOpts::from(opts.unwrap_or_default());
        api(conn).await?.create_snapshot_with(&sandbox_id, &opts).await.map(SnapshotInfoJs::from).napi()
    }

    /// `Sandbox.listSnapshots(opts)`.
    #[napi]
    pub fn list_all_snapshots(
        opts: Option<SnapshotListOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<JsSnapshotPaginator> {
        let list = SnapshotListOpts::from(opts.unwrap_or_default());
        JsSnapshotPaginator::new(conn, list.next_token.clone(), move |api| api.list_snapshots(list.clone()))
    }

    /// `Sandbox.deleteSnapshot(id)`: `false` when there is no such snapshot.
    #[napi]
    pub async fn delete_snapshot(snapshot_id: String, conn: Option<ConnectionOptions>) -> napi::Result<bool> {
        api(conn).await?.delete_snapshot(&snapshot_id).await.napi()
    }

    /// `Sandbox.fork(id, opts)` (e2b): one entry per copy, the sandbox or why it did not start.
    #[napi]
    pub async fn fork_sandbox(
        sandbox_id: String,
        opts: Option<ForkOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<Vec<ForkEntry>> {
        let conn = with_local_default(conn).await?;
        let copies = Sandbox::fork_of(config(&conn)?, &sandbox_id, fork_opts(opts)).await.napi()?;
        Ok(fork_entries(copies, &conn))
    }

    /// `Sandbox.clone(id, opts)` (novita-sandbox): the copies and the snapshot they started from.
    #[napi]
    pub async fn clone_sandboxes(
        sandbox_id: String,
        opts: Option<CloneOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<CloneResultJs> {
        let conn = with_local_default(conn).await?;
        let o = opts.unwrap_or_default();
        let clone = SandboxCloneOpts {
            count: o.count,
            strict: o.strict,
            timeout_ms: o.timeout_ms,
            node_id: o.node_id,
            request_timeout_ms: conn.request_timeout_ms,
        };
        let (copies, snapshot_template_id) = Sandbox::clone_of(config(&conn)?, &sandbox_id, clone).await.napi()?;
        let sandboxes =
            copies.into_iter().map(|s| JsSandbox { inner: Arc::new(s), opts: conn.clone() }).collect::<Vec<_>>();
        Ok(CloneResultJs { sandboxes, snapshot_template_id })
    }

    #[napi(getter)]
    pub fn sandbox_id(&self) -> String {
        self.inner.sandbox_id().to_string()
    }

    #[napi(getter)]
    pub fn sandbox_domain(&self) -> String {
        self.inner.sandbox_domain().to_string()
    }

    #[napi(getter)]
    pub fn envd_version(&self) -> String {
        self.inner.envd_version().to_string()
    }

    #[napi(getter)]
    pub fn traffic_access_token(&self) -> Option<String> {
        self.inner.traffic_access_token()
    }

    #[napi]
    pub fn commands(&self) -> JsCommands {
        JsCommands::new(self.inner.commands().clone())
    }

    #[napi]
    pub fn files(&self) -> JsFiles {
        JsFiles::new(self.inner.files().clone())
    }

    #[napi]
    pub fn pty(&self) -> JsPty {
        JsPty::new(self.inner.pty().clone())
    }

    /// On a local engine, the port published on loopback (a short synchronous request: `getHost`
    /// is synchronous in the SDKs); the name form when that fails, as in the cloud.
    #[napi]
    pub fn get_host(&self, port: u32) -> String {
        let port = port as u16;
        if self.inner.is_local() {
            if let Ok(host) = napi::bindgen_prelude::block_on(self.inner.published_host(port)) {
                return host;
            }
        }
        self.inner.get_host(port)
    }

    /// `sandbox.connect(opts)`; `conn`, the call's connection options, are merged over the
    /// sandbox's (so for every instance call below that takes them).
    #[napi]
    pub async fn reconnect(
        &self,
        timeout_ms: Option<f64>,
        secure: Option<bool>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<()> {
        let s = self.for_call(conn)?;
        s.reconnect(SandboxConnectOpts { timeout_ms: ms(timeout_ms), secure }).await.napi()
    }

    #[napi]
    pub async fn pause(&self, conn: Option<ConnectionOptions>) -> napi::Result<bool> {
        let s = self.for_call(conn)?;
        s.pause().await.napi()
    }

    #[napi]
    pub async fn restore(
        &self,
        snapshot_id: String,
        force: Option<bool>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<()> {
        let s = self.for_call(conn)?;
        s.restore(&snapshot_id, force.unwrap_or(false)).await.napi()
    }

    #[napi]
    pub async fn get_metrics(
        &self,
        opts: Option<MetricsOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<Vec<SandboxMetricsJs>> {
        let s = self.for_call(conn)?;
        s.get_metrics(metrics_opts(opts)).await.map(metrics_js).napi()
    }

    /// `sandbox.uploadUrl(path, opts)`.
    #[napi]
    pub fn upload_url(&self, path: Option<String>, opts: Option<UrlOptions>) -> napi::Result<String> {
        self.inner.upload_url(path.as_deref(), &url_opts(opts)).napi()
    }

    /// `sandbox.downloadUrl(path, opts)`.
    #[napi]
    pub fn download_url(&self, path: String, opts: Option<UrlOptions>) -> napi::Result<String> {
        self.inner.download_url(&path, &url_opts(opts)).napi()
    }

    /// `sandbox.kill(opts)`: nothing in debug mode (this sandbox's).
    #[napi]
    pub async fn kill(&self, conn: Option<ConnectionOptions>) -> napi::Result<()> {
        if self.inner.config().debug {
            return Ok(());
        }
        let s = self.for_call(conn)?;
        s.kill().await.napi()
    }

    /// `sandbox.setTimeout(ms, opts)`: nothing in debug mode (this sandbox's).
    #[napi]
    pub async fn set_timeout(&self, timeout_ms: f64, conn: Option<ConnectionOptions>) -> napi::Result<()> {
        if self.inner.config().debug {
            return Ok(());
        }
        let s = self.for_call(conn)?;
        s.set_timeout(ms(Some(timeout_ms)).unwrap_or(0)).await.napi()
    }

    #[napi]
    pub async fn get_info(&self, conn: Option<ConnectionOptions>) -> napi::Result<SandboxInfoJs> {
        let s = self.for_call(conn)?;
        s.get_info().await.map(SandboxInfoJs::from).napi()
    }

    #[napi]
    pub async fn is_running(&self, request_timeout_ms: Option<f64>) -> napi::Result<bool> {
        let s = self.inner.clone();
        s.is_running(ms(request_timeout_ms)).await.napi()
    }

    #[napi]
    pub async fn create_snapshot(
        &self,
        opts: Option<CreateSnapshotOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<SnapshotInfoJs> {
        let s = self.for_call(conn)?;
        let opts = CreateSnapshotOpts::from(opts.unwrap_or_default());
        s.create_snapshot_with(&opts).await.map(SnapshotInfoJs::from).napi()
    }

    /// `sandbox.fork(opts)` (e2b): the copies have this sandbox's options, with the call's over them.
    #[napi]
    pub async fn fork(
        &self,
        opts: Option<ForkOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<Vec<ForkEntry>> {
        let call_opts = self.call_opts(conn.clone());
        let s = self.for_call(conn)?;
        let copies = s.fork(fork_opts(opts)).await.napi()?;
        Ok(fork_entries(copies, &call_opts))
    }

    /// `sandbox.listSnapshots({name, metadata, limit, nextToken, ...conn})`: this sandbox's
    /// snapshots.
    #[napi]
    pub fn list_snapshots(
        &self,
        opts: Option<SnapshotListOptions>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<JsSnapshotPaginator> {
        let s = self.for_call(conn)?;
        s.list_snapshots_with(SnapshotListOpts::from(opts.unwrap_or_default())).map(JsSnapshotPaginator::ready).napi()
    }
}
