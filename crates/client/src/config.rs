//! Connection settings (`core/connectionConfig.ts`): what the caller passes, resolved against
//! the environment, plus the header sets of the control plane and of envd.

use crate::error::{Error, Result};
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const DEFAULT_DOMAIN: &str = "us-phx-1.sandbox.novita.ai";
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
pub const LEGACY_REQUEST_TIMEOUT_MS: u64 = 1_800_000;
pub const DEFAULT_SANDBOX_TIMEOUT_MS: u64 = 300_000;
pub const KEEPALIVE_PING_HEADER: &str = "Keepalive-Ping-Interval";
pub const KEEPALIVE_PING_INTERVAL_SEC: u64 = 50;
pub const ENVD_PORT: u16 = sandbank_protocol::ENVD_PORT;
pub const DEFAULT_USERNAME: &str = "user";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const LEGACY_DOMAINS: &[&str] = &[
    "sandbox.novita.ai",
    "us-01.sandbox.novita.ai",
    "us-ga-01.sandbox.novita.ai",
    "us-ga-1.sandbox.novita.ai",
    "sandbox-dev.novita.ai",
    "us-01.sandbox-dev.novita.ai",
    "us-ga-01.sandbox-dev.novita.ai",
    "us-ca-1.sandbox-dev.novita.ai",
];

pub fn is_legacy_domain(domain: &str) -> bool {
    LEGACY_DOMAINS.contains(&domain)
}

/// `timeoutToSeconds`: `Math.ceil(ms / 1000)`.
pub fn timeout_to_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// How the SDK introduces itself. The defaults name this crate; a binding may present itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdkIdentity {
    /// `User-Agent` on every request.
    pub user_agent: String,
    /// `X-Novita-SDK-Name`.
    pub name: String,
    /// `X-Novita-SDK-Version`, and the `package_version` metadata header.
    pub version: String,
    /// The `lang`, `lang_version` and `sdk_runtime` metadata headers of the control plane.
    pub lang: String,
    pub lang_version: String,
    pub runtime: String,
}

impl Default for SdkIdentity {
    fn default() -> Self {
        Self {
            user_agent: format!("sandbank-sdk-rust/{VERSION}"),
            name: "sandbank_rust".into(),
            version: VERSION.into(),
            lang: "rust".into(),
            lang_version: "unknown".into(),
            runtime: "rust".into(),
        }
    }
}

/// `ConnectionOpts`: everything optional; unset (or empty) fields fall back to the environment.
#[derive(Clone, Debug, Default)]
pub struct ConnectionOpts {
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    pub domain: Option<String>,
    pub api_url: Option<String>,
    pub sandbox_url: Option<String>,
    pub debug: Option<bool>,
    /// Milliseconds; `0` disables. Default 60 000.
    pub request_timeout_ms: Option<u64>,
    /// Extra headers sent with every request (the SDK's own headers win).
    pub headers: Vec<(String, String)>,
    pub sdk: Option<SdkIdentity>,
    /// The HTTP client to use; default: one process-wide client.
    pub http_client: Option<reqwest::Client>,
}

impl ConnectionOpts {
    /// `{...self, ...over}` as the JS SDK merges a client's options with per-call options:
    /// set fields of `over` win, headers are merged.
    pub fn merged(&self, over: &ConnectionOpts) -> ConnectionOpts {
        let mut headers = self.headers.clone();
        headers.extend(over.headers.iter().cloned());
        ConnectionOpts {
            api_key: over.api_key.clone().or_else(|| self.api_key.clone()),
            access_token: over.access_token.clone().or_else(|| self.access_token.clone()),
            domain: over.domain.clone().or_else(|| self.domain.clone()),
            api_url: over.api_url.clone().or_else(|| self.api_url.clone()),
            sandbox_url: over.sandbox_url.clone().or_else(|| self.sandbox_url.clone()),
            debug: over.debug.or(self.debug),
            request_timeout_ms: over.request_timeout_ms.or(self.request_timeout_ms),
            headers,
            sdk: over.sdk.clone().or_else(|| self.sdk.clone()),
            http_client: over.http_client.clone().or_else(|| self.http_client.clone()),
        }
    }
}

/// The process-wide HTTP client: rustls, keep-alive pooling.
pub fn shared_http_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(new_http_client).clone()
}

/// A fresh client configured like the shared one.
pub fn new_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
        .expect("the HTTP client builds (rustls with bundled roots)")
}

/// Resolved settings. Cheap to clone (`Arc` it to share).
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    pub domain: String,
    pub api_url: String,
    pub sandbox_url: Option<String>,
    pub debug: bool,
    pub is_legacy_domain: bool,
    /// Milliseconds; `0` = none.
    pub request_timeout_ms: u64,
    /// User headers followed by the SDK's headers (later entries win).
    pub headers: Vec<(String, String)>,
    pub sdk: SdkIdentity,
    pub http: reqwest::Client,
}

pub(crate) fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

fn normalize_api_url(url: &str) -> Result<String> {
    let v = url.trim();
    if v.is_empty() {
        return Err(Error::Other("API URL cannot be empty".into()));
    }
    let has_scheme = v.split_once("://").is_some_and(|(scheme, _)| {
        let mut c = scheme.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic())
            && c.all(|ch| ch.is_ascii_alphanumeric() || "+.-".contains(ch))
    });
    Ok(if has_scheme { v.to_string() } else { format!("https://{v}") })
}

impl ConnectionConfig {
    /// Resolves against the process environment (`NOVITA_*`, then `E2B_*`).
    pub fn new(opts: &ConnectionOpts) -> Result<Self> {
        Self::with_env(opts, |name| std::env::var(name).ok())
    }

    /// Resolves against the given environment lookup.
    pub fn with_env(opts: &ConnectionOpts, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |suffix: &str| {
            non_empty(env(&format!("NOVITA_{suffix}"))).or_else(|| non_empty(env(&format!("E2B_{suffix}"))))
        };
        let api_key = non_empty(opts.api_key.clone()).or_else(|| var("API_KEY"));
        let debug =
            opts.debug.filter(|d| *d).unwrap_or_else(|| var("DEBUG").is_some_and(|v| v.eq_ignore_ascii_case("true")));
        let domain = non_empty(opts.domain.clone()).or_else(|| var("DOMAIN")).unwrap_or_else(|| DEFAULT_DOMAIN.into());
        if domain.is_empty() {
            return Err(Error::Other("Domain cannot be empty".into()));
        }
        let is_legacy_domain = is_legacy_domain(&domain);
        let access_token = non_empty(opts.access_token.clone()).or_else(|| var("ACCESS_TOKEN"));
        let request_timeout_ms = opts.request_timeout_ms.unwrap_or(if is_legacy_domain {
            LEGACY_REQUEST_TIMEOUT_MS
        } else {
            REQUEST_TIMEOUT_MS
        });
        let sdk = opts.sdk.clone().unwrap_or_default();
        let mut headers = opts.headers.clone();
        headers.push(("User-Agent".into(), sdk.user_agent.clone()));
        headers.push(("X-Novita-SDK-Name".into(), sdk.name.clone()));
        headers.push(("X-Novita-SDK-Version".into(), sdk.version.clone()));
        let api_url = non_empty(opts.api_url.clone()).or_else(|| var("API_URL")).unwrap_or_else(|| {
            if debug {
                "http://localhost:3000".into()
            } else {
                format!("https://api.{domain}")
            }
        });
        let api_url = normalize_api_url(&api_url)?.trim_end_matches('/').to_string();
        let sandbox_url = non_empty(opts.sandbox_url.clone())
            .or_else(|| var("SANDBOX_URL"))
            .map(|u| u.trim_end_matches('/').to_string());
        Ok(Self {
            api_key,
            access_token,
            domain,
            api_url,
            sandbox_url,
            debug,
            is_legacy_domain,
            request_timeout_ms,
            headers,
            sdk,
            http: opts.http_client.clone().unwrap_or_else(shared_http_client),
        })
    }

    /// `getSignal`: the per-request timeout, `override` first; `None` when it is 0.
    pub fn request_timeout(&self, override_ms: Option<u64>) -> Option<Duration> {
        match override_ms.unwrap_or(self.request_timeout_ms) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// `getHost`: `<port>-<id>.<domain>` (`localhost:<port>` in debug mode).
    pub fn host(&self, sandbox_id: &str, port: u16, sandbox_domain: Option<&str>) -> String {
        if self.debug {
            return format!("localhost:{port}");
        }
        format!("{port}-{sandbox_id}.{}", sandbox_domain.unwrap_or(&self.domain))
    }

    /// `getSandboxUrl`: the configured sandbox URL, else `https://49983-<id>.<domain>`.
    pub fn sandbox_url(&self, sandbox_id: &str, sandbox_domain: Option<&str>) -> String {
        if let Some(u) = &self.sandbox_url {
            return u.clone();
        }
        let scheme = if self.debug { "http" } else { "https" };
        format!("{scheme}://{}", self.host(sandbox_id, ENVD_PORT, sandbox_domain))
    }

    /// Control-plane headers: metadata headers, `X-API-KEY`, `Authorization: Bearer`, then
    /// the config headers (user headers and the SDK's own).
    pub fn api_headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("browser".to_string(), "unknown".to_string()),
            ("lang".into(), self.sdk.lang.clone()),
            ("lang_version".into(), self.sdk.lang_version.clone()),
            ("package_version".into(), self.sdk.version.clone()),
            ("publisher".into(), "sandbank".into()),
            ("sdk_runtime".into(), self.sdk.runtime.clone()),
            ("system".into(), system_name().into()),
        ];
        if let Some(k) = &self.api_key {
            h.push(("X-API-KEY".into(), k.clone()));
        }
        if let Some(t) = &self.access_token {
            h.push(("Authorization".into(), format!("Bearer {t}")));
        }
        h.extend(self.headers.iter().cloned());
        h
    }
}

fn system_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "OS X",
        "windows" => "Windows",
        _ => "unknown",
    }
}

/// `Authorization: Basic base64("<user>:")` for envd, or nothing when no user is given.
pub fn basic_auth(user: Option<&str>) -> Option<(String, String)> {
    let user = user.filter(|u| !u.is_empty())?;
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
    Some(("Authorization".into(), format!("Basic {enc}")))
}

/// Builds a header map where later entries replace earlier ones of the same name.
pub fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| Error::InvalidArgument(format!("Invalid header name {k:?}")))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| Error::InvalidArgument(format!("Invalid value for header {k:?}")))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Shared handle used across the crate.
pub type Config = Arc<ConnectionConfig>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let c = ConnectionConfig::with_env(&ConnectionOpts::default(), env(&[])).unwrap();
        assert_eq!(c.domain, "us-phx-1.sandbox.novita.ai");
        assert_eq!(c.api_url, "https://api.us-phx-1.sandbox.novita.ai");
        assert_eq!(c.request_timeout_ms, 60_000);
        assert_eq!(c.api_key, None);
        assert_eq!(c.sandbox_url("abc123", None), "https://49983-abc123.us-phx-1.sandbox.novita.ai");
        assert_eq!(c.sandbox_url("abc123", Some("eu.example.com")), "https://49983-abc123.eu.example.com");
        assert_eq!(c.host("abc", 8080, None), "8080-abc.us-phx-1.sandbox.novita.ai");
        assert_eq!(c.request_timeout(None), Some(Duration::from_secs(60)));
        assert_eq!(c.request_timeout(Some(0)), None);
    }

    #[test]
    fn env_then_e2b_fallback_and_explicit_options_win() {
        let e = env(&[
            ("NOVITA_API_KEY", "nk"),
            ("E2B_API_KEY", "ek"),
            ("E2B_DOMAIN", "e2b.example"),
            ("NOVITA_SANDBOX_URL", "http://127.0.0.1:9/"),
        ]);
        let c = ConnectionConfig::with_env(&ConnectionOpts::default(), &e).unwrap();
        assert_eq!(c.api_key.as_deref(), Some("nk"));
        assert_eq!(c.domain, "e2b.example");
        assert_eq!(c.api_url, "https://api.e2b.example");
        assert_eq!(c.sandbox_url("x", None), "http://127.0.0.1:9");
        let opts = ConnectionOpts {
            api_key: Some("explicit".into()),
            domain: Some("d.example".into()),
            api_url: Some("localhost:3000".into()),
            sandbox_url: Some("http://s".into()),
            request_timeout_ms: Some(0),
            ..Default::default()
        };
        let c = ConnectionConfig::with_env(&opts, &e).unwrap();
        assert_eq!(c.api_key.as_deref(), Some("explicit"));
        assert_eq!(c.domain, "d.example");
        // No scheme → https:// prefixed; http:// is kept.
        assert_eq!(c.api_url, "https://localhost:3000");
        assert_eq!(c.sandbox_url("x", None), "http://s");
        assert_eq!(c.request_timeout(None), None);
        let c = ConnectionConfig::with_env(
            &ConnectionOpts { api_url: Some("http://127.0.0.1:1234".into()), ..Default::default() },
            env(&[("E2B_API_URL", "http://other")]),
        )
        .unwrap();
        assert_eq!(c.api_url, "http://127.0.0.1:1234");
        let c =
            ConnectionConfig::with_env(&ConnectionOpts::default(), env(&[("E2B_API_URL", "http://other")])).unwrap();
        assert_eq!(c.api_url, "http://other");
    }

    #[test]
    fn legacy_domains_and_debug() {
        let c = ConnectionConfig::with_env(
            &ConnectionOpts { domain: Some("sandbox.novita.ai".into()), ..Default::default() },
            env(&[]),
        )
        .unwrap();
        assert!(c.is_legacy_domain);
        assert_eq!(c.request_timeout_ms, 1_800_000);
        let c = ConnectionConfig::with_env(&ConnectionOpts::default(), env(&[("NOVITA_DEBUG", "TRUE")])).unwrap();
        assert!(c.debug);
        assert_eq!(c.api_url, "http://localhost:3000");
        assert_eq!(c.sandbox_url("x", None), "http://localhost:49983");
    }

    #[test]
    fn header_sets() {
        let opts = ConnectionOpts {
            api_key: Some("k".into()),
            access_token: Some("t".into()),
            headers: vec![("X-Custom".into(), "1".into()), ("User-Agent".into(), "mine".into())],
            ..Default::default()
        };
        let c = ConnectionConfig::with_env(&opts, env(&[])).unwrap();
        let h = header_map(&c.api_headers()).unwrap();
        assert_eq!(h["x-api-key"], "k");
        assert_eq!(h["authorization"], "Bearer t");
        assert_eq!(h["x-custom"], "1");
        // The SDK's own headers override the user's.
        assert_eq!(h["user-agent"], format!("sandbank-sdk-rust/{VERSION}"));
        assert_eq!(h["x-novita-sdk-version"], VERSION);
        assert_eq!(h["lang"], "rust");
        assert_eq!(basic_auth(Some("root")), Some(("Authorization".into(), "Basic cm9vdDo=".into())));
        assert_eq!(basic_auth(None), None);
        let no_key = ConnectionConfig::with_env(&ConnectionOpts::default(), env(&[])).unwrap();
        assert!(!header_map(&no_key.api_headers()).unwrap().contains_key("x-api-key"));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(timeout_to_seconds(120_500), 121);
        assert_eq!(timeout_to_seconds(30_001), 31);
        assert_eq!(timeout_to_seconds(300_000), 300);
        assert_eq!(timeout_to_seconds(0), 0);
        assert_eq!(timeout_to_seconds(1), 1);
    }
}
