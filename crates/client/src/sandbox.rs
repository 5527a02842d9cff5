//! `Sandbox` (`core/sandbox/index.ts`): a connected sandbox with its `commands` and `files`,
//! and the instance forms of the control-plane calls.

use crate::api::{
    envd_version_at_least, Api, CreateSnapshotOpts, SandboxCloneOpts, SandboxConnectOpts, SandboxConnection,
    SandboxCreateOpts, SandboxForkOpts, SandboxInfo, SandboxMetrics, SandboxMetricsOpts, SnapshotInfo,
    SnapshotListOpts,
};
use crate::commands::Commands;
use crate::config::{Config, ENVD_PORT};
use crate::envd::{Envd, ENVD_METRICS};
use crate::error::{from_envd_http, from_transport, Error, Result};
use crate::files::Files;
use crate::listings::SnapshotPaginator;
use crate::pty::Pty;
use crate::signature::{get_signature, FileOperation};
use std::sync::{Arc, Mutex};

/// `SandboxUrlOpts` of `uploadUrl` / `downloadUrl`.
#[derive(Clone, Debug, Default)]
pub struct SandboxUrlOpts {
    /// The user whose permissions (and home, for relative paths) apply.
    pub user: Option<String>,
    /// Sign with an expiration this many seconds from now (secured sandboxes only).
    pub use_signature_expiration: Option<i64>,
}

/// The envd version the JS SDK assumes in debug mode.
pub const ENVD_DEBUG_FALLBACK: &str = "99.99.99";

/// A sandbox to work with. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Sandbox {
    sandbox_id: String,
    sandbox_domain: String,
    envd_version: String,
    envd_access_token: Option<String>,
    traffic_access_token: Arc<Mutex<Option<String>>>,
    api: Api,
    envd: Envd,
    commands: Commands,
    files: Files,
    pty: Pty,
}

impl Sandbox {
    /// A handle on a sandbox the API described (create/connect result).
    pub fn from_connection(config: Config, conn: SandboxConnection) -> Self {
        let sandbox_domain = conn.sandbox_domain.clone().unwrap_or_else(|| config.domain.clone());
        let envd = Envd::new(
            config.clone(),
            &conn.sandbox_id,
            Some(&sandbox_domain),
            &conn.envd_version,
            conn.envd_access_token.clone(),
        );
        Sandbox {
            sandbox_id: conn.sandbox_id,
            sandbox_domain,
            envd_version: conn.envd_version,
            envd_access_token: conn.envd_access_token,
            traffic_access_token: Arc::new(Mutex::new(conn.traffic_access_token)),
            api: Api::new(config),
            commands: Commands::new(envd.clone()),
            files: Files::new(envd.clone()),
            pty: Pty::new(Commands::new(envd.clone())),
            envd,
        }
    }

    /// `Sandbox.create(opts)`. In debug mode no API call is made (as the JS SDK does).
    pub async fn create(config: Config, opts: SandboxCreateOpts) -> Result<Self> {
        if config.debug {
            let conn = SandboxConnection {
                sandbox_id: "debug_sandbox_id".into(),
                sandbox_domain: None,
                envd_version: ENVD_DEBUG_FALLBACK.into(),
                envd_access_token: None,
                traffic_access_token: None,
            };
            return Ok(Self::from_connection(config, conn));
        }
        let conn = Api::new(config.clone()).create(opts).await?;
        Ok(Self::from_connection(config, conn))
    }

    /// `Sandbox.connect(id, opts)`: resumes a paused sandbox.
    pub async fn connect(config: Config, sandbox_id: &str, opts: SandboxConnectOpts) -> Result<Self> {
        let conn = Api::new(config.clone()).connect(sandbox_id, opts).await?;
        Ok(Self::from_connection(config, conn))
    }

    /// `Sandbox.fork(id, opts)` (e2b): the sandbox is snapshotted with its memory and goes on;
    /// `count` copies start from that snapshot, each going on where it was. One entry per copy,
    /// the sandbox or why it did not start (`Promise.allSettled`-style).
    pub async fn fork_of(config: Config, sandbox_id: &str, opts: SandboxForkOpts) -> Result<Vec<Result<Self>>> {
        let copies = Api::new(config.clone()).fork_sandbox(sandbox_id, opts).await?;
        Ok(copies.into_iter().map(|c| c.map(|conn| Self::from_connection(config.clone(), conn))).collect())
    }

    /// `sandbox.fork(opts)`: [`Sandbox::fork_of`] this sandbox, with its control-plane settings.
    pub async fn fork(&self, opts: SandboxForkOpts) -> Result<Vec<Result<Self>>> {
        Self::fork_of(self.config().clone(), &self.sandbox_id, opts).await
    }

    /// `Sandbox.clone(id, opts)` (novita-sandbox): like a fork, the copies that started (all or
    /// none with `strict`) and the ID of the snapshot they started from.
    pub async fn clone_of(
        config: Config,
        sandbox_id: &str,
        opts: SandboxCloneOpts,
    ) -> Result<(Vec<Self>, Option<String>)> {
        let result = Api::new(config.clone()).clone_sandboxes(sandbox_id, opts).await?;
        let copies = result.sandboxes.into_iter().map(|conn| Self::from_connection(config.clone(), conn)).collect();
        Ok((copies, result.snapshot_template_id))
    }

    pub fn sandbox_id(&self) -> &str {
        &self.sandbox_id
    }

    pub fn sandbox_domain(&self) -> &str {
        &self.sandbox_domain
    }

    pub fn envd_version(&self) -> &str {
        &self.envd_version
    }

    pub fn envd_access_token(&self) -> Option<&str> {
        self.envd_access_token.as_deref()
    }

    pub fn traffic_access_token(&self) -> Option<String> {
        self.traffic_access_token.lock().expect("token").clone()
    }

    pub fn envd_url(&self) -> &str {
        self.envd.base_url()
    }

    pub fn config(&self) -> &Config {
        self.api.config()
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn commands(&self) -> &Commands {
        &self.commands
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    pub fn pty(&self) -> &Pty {
        &self.pty
    }

    /// `sandbox.getHost(port)` as the cloud SDKs compute it: `<port>-<id>.<domain>`.
    pub fn get_host(&self, port: u16) -> String {
        self.api.config().host(&self.sandbox_id, port, Some(&self.sandbox_domain))
    }

    /// Whether the sandbox is on a local engine: its domain is `localhost[:port]` (what
    /// `sandbank serve` reports), not the debug mode's plain `localhost:<port>` hosts.
    pub fn is_local(&self) -> bool {
        let host = self.sandbox_domain.split_once(':').map_or(self.sandbox_domain.as_str(), |(h, _)| h);
        host == "localhost" && !self.api.config().debug
    }

    /// `getHost` on a local engine: the port published on loopback (`127.0.0.1:<n>`), which every
    /// client reaches without resolving a name.
    pub async fn published_host(&self, port: u16) -> Result<String> {
        self.api.publish_port(&self.sandbox_id, port).await
    }

    /// This sandbox with other control-plane settings: the JS SDK's per-call options
    /// (`sandbox.kill(opts)`, …), merged with the sandbox's own by the caller. Its envd calls and
    /// its traffic access token are this sandbox's.
    pub fn with_api_config(&self, config: Config) -> Sandbox {
        Sandbox { api: Api::new(config), ..self.clone() }
    }

    /// `sandbox.connect(opts)`: resumes the sandbox if paused and refreshes the traffic access
    /// token.
    pub async fn reconnect(&self, opts: SandboxConnectOpts) -> Result<()> {
        let conn = self.api.connect(&self.sandbox_id, opts).await?;
        *self.traffic_access_token.lock().expect("token") = conn.traffic_access_token;
        Ok(())
    }

    /// `sandbox.getMetrics({start, end})`: refuses envd older than 0.1.5, as the SDK does.
    pub async fn get_metrics(&self, opts: SandboxMetricsOpts) -> Result<Vec<SandboxMetrics>> {
        if !envd_version_at_least(&self.envd_version, ENVD_METRICS) {
            return Err(Error::Sandbox(
                "You need to update the template to use the new SDK. You can do this by running `novita-sandbox-cli template build` in the directory with the template.".into(),
            ));
        }
        self.api.get_metrics(&self.sandbox_id, opts).await
    }

    /// `sandbox.uploadUrl(path?, opts)`: where to POST a file (multipart), signed when the
    /// sandbox has an envd access token.
    pub fn upload_url(&self, path: Option<&str>, opts: &SandboxUrlOpts) -> Result<String> {
        self.file_url(path.unwrap_or(""), FileOperation::Write, opts)
    }

    /// `sandbox.downloadUrl(path, opts)`: where to GET a file, signed when the sandbox has an
    /// envd access token.
    pub fn download_url(&self, path: &str, opts: &SandboxUrlOpts) -> Result<String> {
        self.file_url(path, FileOperation::Read, opts)
    }

    /// `<envd origin>/files?[username=]&[path=]&[signature=&signature_expiration=]`, the query
    /// form-encoded as `URLSearchParams` writes it.
    fn file_url(&self, path: &str, op: FileOperation, opts: &SandboxUrlOpts) -> Result<String> {
        let token = self.envd_access_token.as_deref().filter(|t| !t.is_empty());
        if token.is_none() && opts.use_signature_expiration.is_some() {
            return Err(Error::Other(
                "Signature expiration can be used only when sandbox is created as secured.".into(),
            ));
        }
        let user = self.envd.effective_user(opts.user.as_deref());
        let mut url = reqwest::Url::parse(self.envd.base_url())
            .and_then(|u| u.join("/files"))
            .map_err(|e| Error::Other(format!("Invalid sandbox URL {}: {e}", self.envd.base_url())))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(u) = user.as_deref().filter(|u| !u.is_empty()) {
                q.append_pair("username", u);
            }
            if !path.is_empty() {
                q.append_pair("path", path);
            }
            if token.is_some() {
                let sig = get_signature(path, op, user.as_deref(), opts.use_signature_expiration, token)?;
                q.append_pair("signature", &sig.signature);
                if let Some(exp) = sig.expiration {
                    q.append_pair("signature_expiration", &exp.to_string());
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url.into())
    }

    /// `sandbox.kill()` (resolves to nothing, as in novita-sandbox; no-op in debug mode).
    pub async fn kill(&self) -> Result<()> {
        if self.api.config().debug {
            return Ok(());
        }
        self.api.kill(&self.sandbox_id).await.map(|_| ())
    }

    /// `sandbox.setTimeout(ms)` (no-op in debug mode).
    pub async fn set_timeout(&self, timeout_ms: u64) -> Result<()> {
        if self.api.config().debug {
            return Ok(());
        }
        self.api.set_timeout(&self.sandbox_id, timeout_ms).await
    }

    /// `sandbox.getInfo()`.
    pub async fn get_info(&self) -> Result<SandboxInfo> {
        let mut info = self.api.get_info(&self.sandbox_id).await?;
        info.envd_access_token = None;
        info.sandbox_domain = None;
        Ok(info)
    }

    /// `sandbox.pause()`.
    pub async fn pause(&self) -> Result<bool> {
        self.api.pause(&self.sandbox_id).await
    }

    /// sandbank's own `sandbox.restore(snapshotId, {force})`: back to a snapshot in place (same
    /// ID, access token, timeout and network).
    pub async fn restore(&self, snapshot_id: &str, force: bool) -> Result<()> {
        self.api.restore(&self.sandbox_id, snapshot_id, force).await
    }

    /// `sandbox.createSnapshot()`.
    pub async fn create_snapshot(&self) -> Result<SnapshotInfo> {
        self.api.create_snapshot(&self.sandbox_id).await
    }

    /// `sandbox.createSnapshot({name, metadata, ttlMs})`.
    pub async fn create_snapshot_with(&self, opts: &CreateSnapshotOpts) -> Result<SnapshotInfo> {
        self.api.create_snapshot_with(&self.sandbox_id, opts).await
    }

    /// `sandbox.listSnapshots({limit, nextToken})`: this sandbox's snapshots.
    pub fn list_snapshots(&self, limit: Option<u32>, next_token: Option<String>) -> Result<SnapshotPaginator> {
        self.list_snapshots_with(SnapshotListOpts { limit, next_token, ..Default::default() })
    }

    /// `sandbox.listSnapshots({name, metadata, limit, nextToken})`: this sandbox's snapshots
    /// (whatever `opts.sandbox_id` says).
    pub fn list_snapshots_with(&self, opts: SnapshotListOpts) -> Result<SnapshotPaginator> {
        self.api.list_snapshots(SnapshotListOpts { sandbox_id: Some(self.sandbox_id.clone()), ..opts })
    }

    /// `sandbox.isRunning()`: envd `GET /health`; 502 → false.
    pub async fn is_running(&self, request_timeout_ms: Option<u64>) -> Result<bool> {
        let mut rb = self.envd.http(reqwest::Method::GET, "/health");
        if let Some(t) = self.api.config().request_timeout(request_timeout_ms) {
            rb = rb.timeout(t);
        }
        let res = rb.send().await.map_err(|e| from_transport(&e))?;
        let status = res.status().as_u16();
        if status == 502 {
            return Ok(false);
        }
        let empty =
            status == 204 || res.headers().get(reqwest::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0");
        if empty || res.status().is_success() {
            return Ok(true);
        }
        let body = res.bytes().await.map_err(|e| from_transport(&e))?;
        Err(from_envd_http(status, &body, false))
    }

    /// The envd port (49983).
    pub const ENVD_PORT: u16 = ENVD_PORT;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConnectionConfig, ConnectionOpts};
    use crate::signature::sign;

    fn sandbox(token: Option<&str>, envd_version: &str) -> Sandbox {
        let opts = ConnectionOpts { sandbox_url: Some("http://127.0.0.1:3000".into()), ..Default::default() };
        let config = Arc::new(ConnectionConfig::with_env(&opts, |_| None).unwrap());
        let conn = SandboxConnection {
            sandbox_id: "sb1".into(),
            sandbox_domain: None,
            envd_version: envd_version.into(),
            envd_access_token: token.map(str::to_string),
            traffic_access_token: None,
        };
        Sandbox::from_connection(config, conn)
    }

    #[test]
    fn file_urls_are_plain_without_a_token() {
        let s = sandbox(None, "0.6.4");
        let none = SandboxUrlOpts::default();
        assert_eq!(s.download_url("/tmp/a b.txt", &none).unwrap(), "http://127.0.0.1:3000/files?path=%2Ftmp%2Fa+b.txt");
        assert_eq!(s.upload_url(None, &none).unwrap(), "http://127.0.0.1:3000/files");
        let root = SandboxUrlOpts { user: Some("root".into()), ..Default::default() };
        assert_eq!(s.upload_url(Some("/x"), &root).unwrap(), "http://127.0.0.1:3000/files?username=root&path=%2Fx");
        // envd before 0.4.0 has no default user: `user` is named.
        assert_eq!(
            sandbox(None, "0.3.0").download_url("/x", &none).unwrap(),
            "http://127.0.0.1:3000/files?username=user&path=%2Fx"
        );
        let e = s
            .download_url("/x", &SandboxUrlOpts { use_signature_expiration: Some(60), ..Default::default() })
            .unwrap_err();
        assert_eq!(e, Error::Other("Signature expiration can be used only when sandbox is created as secured.".into()));
    }

    #[test]
    fn file_urls_are_signed_with_the_access_token() {
        let s = sandbox(Some("tok"), "0.6.4");
        let url = s.download_url("/tmp/a.txt", &SandboxUrlOpts::default()).unwrap();
        let sig = sign("/tmp/a.txt", FileOperation::Read, None, "tok", None);
        let q: String = url::form_urlencoded_pair("signature", &sig);
        assert_eq!(url, format!("http://127.0.0.1:3000/files?path=%2Ftmp%2Fa.txt&{q}"));
        // uploadUrl without a path signs the empty path.
        let url = s.upload_url(None, &SandboxUrlOpts::default()).unwrap();
        let sig = sign("", FileOperation::Write, None, "tok", None);
        assert_eq!(url, format!("http://127.0.0.1:3000/files?{}", url::form_urlencoded_pair("signature", &sig)));
        let url = s
            .upload_url(Some("/x"), &SandboxUrlOpts { user: Some("root".into()), use_signature_expiration: Some(120) })
            .unwrap();
        let parsed = reqwest::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        let exp: i64 = q["signature_expiration"].parse().unwrap();
        assert!((exp - chrono::Utc::now().timestamp() - 120).abs() <= 1);
        assert_eq!(q["signature"], sign("/x", FileOperation::Write, Some("root"), "tok", Some(exp)));
        assert!(url.starts_with("http://127.0.0.1:3000/files?username=root&path=%2Fx&signature=v1_"));
    }

    mod url {
        /// `name=value` as `URLSearchParams` serializes it.
        pub fn form_urlencoded_pair(name: &str, value: &str) -> String {
            let mut u = reqwest::Url::parse("http://x/").unwrap();
            u.query_pairs_mut().append_pair(name, value);
            u.query().unwrap().to_string()
        }
    }
}
