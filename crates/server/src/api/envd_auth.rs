//! Every sandbox has an envd access token (whatever `secure` said at creation): envd requests
//! carry it as `X-Access-Token`, or, for `/files`, a URL signature made with it (what `uploadUrl`/`downloadUrl` hand out):
//! `v1_` + base64(sha256("<path>:<read|write>:<username>:<token>[:<expiration>]")), unpadded,
//! with an optional `signature_expiration` (unix seconds) after which it is refused.

use super::error::ApiError;
use super::extract::query_pairs;
use axum::extract::Request;
use axum::http::Method;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A new envd access token: 128 random bits, hex.
pub fn new_access_token() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

/// Reads a stored token; `null` (a sandbox stored before every sandbox had one) gets a new one.
pub fn token_or_new<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let stored: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(stored.filter(|t| !t.is_empty()).unwrap_or_else(new_access_token))
}

/// `Ok` when the request may reach the sandbox whose token is `token`.
pub fn check(req: &Request, token: &str) -> Result<(), ApiError> {
    // envd's health check is open, as the cloud's is.
    if req.uri().path() == "/health" {
        return Ok(());
    }
    if let Some(offered) = req.headers().get("x-access-token") {
        return if super::constant_time_eq(offered.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("Invalid X-Access-Token for this sandbox".into()))
        };
    }
    match Signed::from_request(req)? {
        Some(signed) => signed.verify(token, chrono::Utc::now().timestamp()),
        None => Err(ApiError::Unauthorized(
            "Missing access token: send the sandbox's envdAccessToken as X-Access-Token, or use a signed URL".into(),
        )),
    }
}

/// Whether the request is a `/files` URL signed with `token` (finds the sandbox a signed URL
/// without a sandbox header is for).
pub fn signed_with(req: &Request, token: &str) -> bool {
    matches!(Signed::from_request(req), Ok(Some(s)) if s.verify(token, i64::MIN).is_ok())
}

/// The signature parts of a `/files` request.
struct Signed {
    path: String,
    operation: &'static str,
    username: String,
    signature: String,
    expiration: Option<(String, i64)>,
}

impl Signed {
    fn from_request(req: &Request) -> Result<Option<Self>, ApiError> {
        if req.uri().path() != "/files" {
            return Ok(None);
        }
        let pairs = query_pairs(req.uri().query())?;
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let Some(signature) = get("signature") else { return Ok(None) };
        let operation = if req.method() == Method::GET { "read" } else { "write" };
        let expiration = match get("signature_expiration") {
            None => None,
            Some(raw) => {
                let at = raw.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "Invalid signature_expiration {raw:?}: must be a unix time in seconds"
                    ))
                })?;
                Some((raw, at))
            }
        };
        Ok(Some(Signed {
            path: get("path").unwrap_or_default(),
            operation,
            username: get("username").unwrap_or_default(),
            signature,
            expiration,
        }))
    }

    /// Checks the signature against `token`, and that it has not expired at `now`.
    fn verify(&self, token: &str, now: i64) -> Result<(), ApiError> {
        let expected = sign(
            &self.path,
            self.operation,
            &self.username,
            token,
            self.expiration.as_ref().map(|(raw, _)| raw.as_str()),
        );
        if !super::constant_time_eq(expected.as_bytes(), self.signature.as_bytes()) {
            return Err(ApiError::Unauthorized(format!(
                "Invalid signature for {} of {:?}: it was not made with this sandbox's access token, or for another path, user or operation",
                self.operation, self.path
            )));
        }
        match &self.expiration {
            // envd's words, which the SDKs' users may match on.
            Some((_, at)) if *at < now => Err(ApiError::Unauthorized("signature is already expired".into())),
            _ => Ok(()),
        }
    }
}

/// The SDKs' `getSignature`.
pub fn sign(path: &str, operation: &str, username: &str, token: &str, expiration: Option<&str>) -> String {
    let raw = match expiration {
        Some(exp) => format!("{path}:{operation}:{username}:{token}:{exp}"),
        None => format!("{path}:{operation}:{username}:{token}"),
    };
    let digest = Sha256::digest(raw.as_bytes());
    format!("v1_{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(method: &str, uri: &str, token_header: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().method(method).uri(uri);
        if let Some(t) = token_header {
            b = b.header("x-access-token", t);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn signature_matches_the_sdks_formula() {
        // sha256("/tmp/a.txt:read::tok") in standard base64 without padding, computed with
        // `printf %s '/tmp/a.txt:read::tok' | openssl dgst -sha256 -binary | base64`.
        assert_eq!(sign("/tmp/a.txt", "read", "", "tok", None), "v1_tRlsooM2hvGDgtWWsmSPYkbHGF1tnIIlZnLHK/9lpTk");
    }

    #[test]
    fn tokens_and_signatures_are_checked() {
        assert!(matches!(check(&req("GET", "/files?path=/a", None), "t"), Err(ApiError::Unauthorized(_))));
        assert!(check(&req("GET", "/health", None), "t").is_ok());
        assert!(check(&req("POST", "/process.Process/List", Some("t")), "t").is_ok());
        assert!(matches!(check(&req("POST", "/process.Process/List", Some("u")), "t"), Err(ApiError::Unauthorized(_))));
        assert!(matches!(check(&req("POST", "/process.Process/List", None), "t"), Err(ApiError::Unauthorized(_))));

        let sig = sign("/a b", "read", "root", "t", None);
        let uri = format!("/files?path=%2Fa%20b&username=root&signature={}", urlencode(&sig));
        assert!(check(&req("GET", &uri, None), "t").is_ok());
        assert!(signed_with(&req("GET", &uri, None), "t"));
        assert!(!signed_with(&req("GET", &uri, None), "other"));
        // The same signature does not allow a write, another user or another path.
        assert!(check(&req("POST", &uri, None), "t").is_err());
        assert!(check(&req("GET", &uri.replace("root", "user"), None), "t").is_err());
        assert!(check(&req("GET", &uri.replace("%20b", "%20c"), None), "t").is_err());

        let later = (chrono::Utc::now().timestamp() + 60).to_string();
        let past = (chrono::Utc::now().timestamp() - 60).to_string();
        for (exp, ok) in [(later, true), (past, false)] {
            let sig = sign("/x", "write", "", "t", Some(&exp));
            let uri = format!("/files?path=%2Fx&signature={}&signature_expiration={exp}", urlencode(&sig));
            let r = check(&req("POST", &uri, None), "t");
            assert_eq!(r.is_ok(), ok, "expiration {exp}");
            if !ok {
                assert!(matches!(r, Err(ApiError::Unauthorized(m)) if m == "signature is already expired"));
            }
        }
        let bad = check(&req("GET", "/files?path=/x&signature=v1_x&signature_expiration=soon", None), "t");
        assert!(matches!(bad, Err(ApiError::BadRequest(m)) if m.contains("\"soon\"")));
    }

    fn urlencode(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    }
}
