//! `Sandbox` (`core/sandbox/index.ts`): a connected sandbox with its `commands` and `files`,
//! and the instance forms of the control-plane calls.

use crate::api::{
    Api, SandboxConnectOpts, SandboxConnection, SandboxCreateOpts, SandboxInfo, SnapshotInfo,
    SnapshotListOpts,
};
use crate::commands::Commands;
use crate::config::{Config, ENVD_PORT};
use crate::envd::Envd;
use crate::error::{from_envd_http, from_transport, Result};
use crate::files::Files;
use crate::paginator::SnapshotPaginator;
use std::sync::{Arc, Mutex};

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
}

impl Sandbox {
    /// A handle on a sandbox the API described (create/connect result).
    pub fn from_connection(config: Config, conn: SandboxConnection) -> Self {
        let sandbox_domain = conn
            .sandbox_domain
            .clone()
            .unwrap_or_else(|| config.domain.clone());
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
    pub async fn connect(
        config: Config,
        sandbox_id: &str,
        opts: SandboxConnectOpts,
    ) -> Result<Self> {
        let conn = Api::new(config.clone()).connect(sandbox_id, opts).await?;
        Ok(Self::from_connection(config, conn))
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

    /// `sandbox.getHost(port)`.
    pub fn get_host(&self, port: u16) -> String {
        self.api
            .config()
            .host(&self.sandbox_id, port, Some(&self.sandbox_domain))
    }

    /// `sandbox.connect(opts)`: refreshes the traffic access token.
    pub async fn reconnect(&self, opts: SandboxConnectOpts) -> Result<()> {
        let conn = self.api.connect(&self.sandbox_id, opts).await?;
        *self.traffic_access_token.lock().expect("token") = conn.traffic_access_token;
        Ok(())
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

    /// `sandbox.createSnapshot()`.
    pub async fn create_snapshot(&self) -> Result<SnapshotInfo> {
        self.api.create_snapshot(&self.sandbox_id).await
    }

    /// `sandbox.listSnapshots({limit, nextToken})`: this sandbox's snapshots.
    pub fn list_snapshots(
        &self,
        limit: Option<u32>,
        next_token: Option<String>,
    ) -> Result<SnapshotPaginator> {
        self.api.list_snapshots(SnapshotListOpts {
            sandbox_id: Some(self.sandbox_id.clone()),
            limit,
            next_token,
        })
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
        let empty = status == 204
            || res
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        if empty || res.status().is_success() {
            return Ok(true);
        }
        let body = res.bytes().await.map_err(|e| from_transport(&e))?;
        Err(from_envd_http(status, &body, false))
    }

    /// The envd port (49983).
    pub const ENVD_PORT: u16 = ENVD_PORT;
}
