//! `ConnectionOpts` from JS → the client's resolved `ConnectionConfig`.

use crate::errors::{ms, IntoNapi};
use napi_derive::napi;
use sandbank_client::config::Config;
use sandbank_client::{ConnectionConfig, ConnectionOpts, SdkIdentity};
use std::collections::HashMap;
use std::sync::Arc;

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

pub fn resolve(o: Option<ConnectionOptions>) -> napi::Result<Config> {
    ConnectionConfig::new(&opts(o)).map(Arc::new).napi()
}
