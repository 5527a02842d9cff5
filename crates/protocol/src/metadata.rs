//! The metadata filter of `GET /v2/sandboxes`. The SDK encodes each key and value, joins them as
//! a query string, and the query value is encoded again by the HTTP layer: `{'a b':'c&d'}`
//! arrives as `metadata=a%252520b%3Dc%252526d`. Given the value after the HTTP layer's own
//! decoding, this undoes the rest as E2B's server does.

use percent_encoding::percent_decode_str;

fn query_unescape(s: &str) -> Result<String, String> {
    let plus_as_space = s.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| format!("Invalid metadata filter {s:?}: not UTF-8 after decoding"))
}

/// Decodes a metadata filter into key/value pairs; every pair must match.
pub fn decode_filter(value: &str) -> Result<Vec<(String, String)>, String> {
    let whole = query_unescape(value)?;
    let mut pairs = Vec::new();
    for part in whole.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("Invalid metadata filter {value:?}: {part:?} is not key=value"))?;
        pairs.push((query_unescape(k)?, query_unescape(v)?));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undoes_the_sdk_encoding() {
        // The query value `a%252520b%3Dc%252526d` after one decode by the HTTP layer:
        assert_eq!(decode_filter("a%2520b=c%2526d").unwrap(), vec![("a b".into(), "c&d".into())]);
        assert_eq!(
            decode_filter("k1%3Dv1%26k2%3Dv2").unwrap(),
            vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into())]
        );
        assert!(decode_filter("novalue").is_err());
    }
}
