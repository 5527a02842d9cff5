//! Signed file URLs (`core/sandbox/signature.ts`, `Sandbox.uploadUrl`/`downloadUrl`): a secured
//! sandbox's envd accepts `/files` requests without `X-Access-Token` when the URL carries a
//! `signature` (and `signature_expiration`) made from the access token.

use crate::error::{Error, Result};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// `read` for downloads, `write` for uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOperation {
    Read,
    Write,
}

impl FileOperation {
    /// `read` or `write`; anything else is an error naming it.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "read" => Ok(FileOperation::Read),
            "write" => Ok(FileOperation::Write),
            other => Err(Error::InvalidArgument(format!("Invalid operation: {other:?} (expected 'read' or 'write')"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FileOperation::Read => "read",
            FileOperation::Write => "write",
        }
    }
}

/// A URL signature and its expiration (unix seconds), as `getSignature` returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub signature: String,
    pub expiration: Option<i64>,
}

/// `getSignature`: `"v1_" + base64(sha256("<path>:<operation>:<user>:<token>[:<expiration>]"))`
/// with the trailing `=` removed (standard alphabet). `user` `None` is the empty string (envd's
/// default user); `expiration` is the absolute unix time in seconds.
pub fn sign(
    path: &str,
    operation: FileOperation,
    user: Option<&str>,
    envd_access_token: &str,
    expiration: Option<i64>,
) -> String {
    let user = user.unwrap_or("");
    let op = operation.as_str();
    let raw = match expiration {
        Some(exp) => format!("{path}:{op}:{user}:{envd_access_token}:{exp}"),
        None => format!("{path}:{op}:{user}:{envd_access_token}"),
    };
    let digest = Sha256::digest(raw.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    format!("v1_{}", b64.trim_end_matches('='))
}

/// `getSignature({path, operation, user, expirationInSeconds, envdAccessToken})`: the expiration
/// is `floor(now) + expirationInSeconds` when that is given and not 0.
pub fn get_signature(
    path: &str,
    operation: FileOperation,
    user: Option<&str>,
    expiration_in_seconds: Option<i64>,
    envd_access_token: Option<&str>,
) -> Result<Signature> {
    let Some(token) = envd_access_token.filter(|t| !t.is_empty()) else {
        return Err(Error::Other("Access token is not set and signature cannot be generated!".into()));
    };
    let expiration = expiration_in_seconds.filter(|s| *s != 0).map(|s| chrono::Utc::now().timestamp() + s);
    Ok(Signature { signature: sign(path, operation, user, token, expiration), expiration })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_known_values() {
        // sha256("/tmp/a.txt:read::tok") and sha256("/tmp/a.txt:write:root:tok:1700000000"),
        // base64, '=' stripped; computed with `printf … | openssl dgst -sha256 -binary | base64`.
        assert_eq!(
            sign("/tmp/a.txt", FileOperation::Read, None, "tok", None),
            "v1_tRlsooM2hvGDgtWWsmSPYkbHGF1tnIIlZnLHK/9lpTk"
        );
        assert_eq!(
            sign("/tmp/a.txt", FileOperation::Write, Some("root"), "tok", Some(1_700_000_000)),
            "v1_cPAg3XmgAZxms09SW0Wfh4f1KcLTY2oLgFlDp7VsMrE"
        );
    }

    #[test]
    fn expiration_is_relative_to_now_and_zero_means_none() {
        let now = chrono::Utc::now().timestamp();
        let s = get_signature("/a", FileOperation::Read, None, Some(60), Some("t")).unwrap();
        let exp = s.expiration.unwrap();
        assert!((now + 59..=now + 61).contains(&exp), "{exp}");
        assert_eq!(s.signature, sign("/a", FileOperation::Read, None, "t", Some(exp)));
        let s = get_signature("/a", FileOperation::Read, None, Some(0), Some("t")).unwrap();
        assert_eq!(s.expiration, None);
        let e = get_signature("/a", FileOperation::Read, None, None, None).unwrap_err();
        assert_eq!(e, Error::Other("Access token is not set and signature cannot be generated!".into()));
    }
}
