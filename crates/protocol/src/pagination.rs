//! The keyset cursor carried in `X-Next-Token`: URL-safe base64 of `"<RFC 3339 nanos>__<id>"`,
//! as E2B's server writes it. It names the last item of a page; the next page starts after it.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageToken {
    pub time: DateTime<Utc>,
    pub id: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid next token {0:?}")]
pub struct InvalidToken(pub String);

impl PageToken {
    pub fn encode(&self) -> String {
        let raw = format!("{}__{}", self.time.to_rfc3339_opts(SecondsFormat::Nanos, true), self.id);
        URL_SAFE.encode(raw)
    }

    pub fn decode(token: &str) -> Result<Self, InvalidToken> {
        let invalid = || InvalidToken(token.to_string());
        let raw = URL_SAFE.decode(token.as_bytes()).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let (time, id) = raw.split_once("__").ok_or_else(invalid)?;
        let time = DateTime::parse_from_rfc3339(time).map_err(|_| invalid())?.with_timezone(&Utc);
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/:".contains(&b)) {
            return Err(invalid());
        }
        Ok(Self { time, id: id.to_string() })
    }
}

/// Parses a `limit` query value: 1–100, default 100.
pub fn parse_limit(raw: Option<&str>) -> Result<u32, String> {
    let Some(raw) = raw else { return Ok(DEFAULT_LIMIT) };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("Invalid limit {raw:?}: must be an integer from 1 to {MAX_LIMIT}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let t = PageToken { time: DateTime::from_timestamp(1_700_000_000, 123).unwrap(), id: "abc123".into() };
        assert_eq!(PageToken::decode(&t.encode()).unwrap(), t);
        assert!(PageToken::decode("garbage!!").is_err());
        assert!(PageToken::decode(&URL_SAFE.encode("no-separator")).is_err());
        assert!(PageToken::decode(&URL_SAFE.encode("yesterday__abc")).is_err());
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None), Ok(100));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("101")).is_err());
        assert!(parse_limit(Some("abc")).unwrap_err().contains("\"abc\""));
    }
}
