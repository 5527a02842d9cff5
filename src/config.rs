//! `ConnectionOpts` from JS → the client's resolved `ConnectionConfig`, through the local default
//! (`sandbank_client::local`) when they configure no server.

use crate::errors::{ms, IntoNapi};
use napi_derive::napi;
use sandbank_client::config::Config;
use sandbank_client::local::{self, Launcher};
use sandbank_client::{ConnectionConfig, ConnectionOpts, SdkIdentity};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Connection options (`ConnectionOpts` of novita-sandbox). Unset fields fall back to the
/// `NOVITA_*`, then `E2B_*` environment variables.
#[napi(object)]
#[derive(Clone, Default)]
pub struct ConnectionOptions {
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    pub domain: Option<String>,
    pub api_url: Option<String>,
    pub sandbox_url: Option<String>,
    pub debug: Option<bool>,
    /// Milliseconds; 0 disables. Default 60 000.
    pub request_timeout_ms: Option<f64>,
    pub headers: Option<HashMap<String, String>>,
}

fn identity() -> SdkIdentity {
    let version = env!("CARGO_PKG_VERSION").to_string();
    SdkIdentity {
        user_agent: format!("sandbank-sdk-js/{version}"),
        name: "sandbank_js".into(),
        version,
        lang: "js".into(),
        lang_version: "unknown".into(),
        runtime: "node".into(),
    }
}

pub fn opts(o: Option<ConnectionOptions>) -> ConnectionOpts {
    let o = o.unwrap_or_default();
    ConnectionOpts {
        api_key: o.api_key,
        access_token: o.access_token,
        domain: o.domain,
        api_url: o.api_url,
        sandbox_url: o.sandbox_url,
        debug: o.debug,
        request_timeout_ms: ms(o.request_timeout_ms),
        headers: o.headers.map(|h| h.into_iter().collect()).unwrap_or_default(),
        sdk: Some(identity()),
        http_client: None,
    }
}

/// Where the `sandbank` binary is, for starting a local daemon: only the JS layer can tell (it
/// resolves the platform package as Node resolves modules).
static LAUNCHER: Mutex<Option<Launcher>> = Mutex::new(None);

/// `useLocalEngine(binary, missingHint)`: the `sandbank` binary to start when nothing is configured
/// and no daemon runs (`SANDBANK_BIN` wins), and what to say when it is missing.
#[napi]
#[cfg_attr(test, allow(dead_code))]
pub fn use_local_engine(binary: String, missing_hint: String) {
    *LAUNCHER.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(Launcher { binary: PathBuf::from(binary), missing_hint });
}

/// `localDataDir()`: the local engine's data directory (`$SANDBANK_DATA_DIR`, else
/// `$XDG_DATA_HOME/sandbank`, else `~/.local/share/sandbank`); `null` with none of them set.
#[napi]
#[cfg_attr(test, allow(dead_code))]
pub fn local_data_dir() -> Option<String> {
    local::data_dir(local::process_env).map(|d| d.to_string_lossy().into_owned())
}

/// The caller's options, or (when they and the environment configure no server) the local engine's.
pub async fn with_local_default(o: Option<ConnectionOptions>) -> napi::Result<ConnectionOpts> {
    let launcher = LAUNCHER.lock().unwrap_or_else(|p| p.into_inner()).clone();
    local::resolve(opts(o), launcher.as_ref()).await.napi()
}

/// Whether `o` (or the environment) configures a server, so that no local default is needed.
pub fn is_configured(o: &ConnectionOpts) -> bool {
    local::is_configured(o, local::process_env)
}

pub fn config(o: &ConnectionOpts) -> napi::Result<Config> {
    ConnectionConfig::new(o).map(Arc::new).napi()
}

/// The configuration of a call: the caller's options with the local default.
pub async fn resolve(o: Option<ConnectionOptions>) -> napi::Result<Config> {
    config(&with_local_default(o).await?)
}
