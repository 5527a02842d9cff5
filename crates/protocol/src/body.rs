//! Parsing a control-plane JSON request body into one of the [`crate::rest`] types, with an
//! error message that names the offending field and value. It lives here, not in the server,
//! so that the fuzz targets (`fuzz/`) run exactly what the server runs.

use serde::de::DeserializeOwned;

/// The longest echo of an offending value (or of serde's message quoting it) in an error.
const SHOWN_VALUE_CHARS: usize = 200;

/// Parses `bytes` as a JSON object into `T`. The error is a message for a 400 response.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("Request body is empty: expected a JSON object".into());
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("Request body is not valid JSON: {e}"))?;
    let serde_json::Value::Object(fields) = &value else {
        return Err(format!("Request body must be a JSON object, not {}", shorten(&value.to_string())));
    };
    let err = match T::deserialize(&value) {
        Ok(v) => return Ok(v),
        Err(e) => e.to_string(),
    };
    // Name the field: the first one that fails on its own (in a one-field object: a type error
    // shows before any "missing field"). One small object per field keeps this linear; removing
    // each field in turn from a copy of the whole object was quadratic, and a 1 MB body of
    // 80 000 fields held a server thread for minutes.
    let culprit = fields.iter().find(|(k, v)| {
        let one: serde_json::Map<String, serde_json::Value> = [((*k).clone(), (*v).clone())].into_iter().collect();
        matches!(T::deserialize(&serde_json::Value::Object(one)), Err(e) if !e.to_string().starts_with("missing field"))
    });
    // serde quotes the offending value in full: cut it, as the value itself.
    let err = shorten(&err);
    Err(match culprit {
        Some((k, v)) if !err.starts_with("missing field") => {
            format!("Invalid request body: field \"{k}\": {err} (got {})", shorten(&v.to_string()))
        }
        _ => format!("Invalid request body: {err}"),
    })
}

/// `s`, cut to [`SHOWN_VALUE_CHARS`] characters (on a character boundary) with `…` appended.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::{NewSandbox, TimeoutBody};

    #[test]
    fn errors_name_field_and_value() {
        let m = parse_object::<NewSandbox>(br#"{"templateID":"base","timeout":"soon"}"#).unwrap_err();
        assert!(m.contains("\"timeout\"") && m.contains("soon"), "{m}");
        assert!(parse_object::<NewSandbox>(br#"{"timeout":3}"#).unwrap_err().contains("templateID"));
        assert!(parse_object::<NewSandbox>(br#"{"templateID":"#).unwrap_err().contains("not valid JSON"));
        assert!(parse_object::<NewSandbox>(b"[1]").unwrap_err().contains("[1]"));
        assert!(parse_object::<NewSandbox>(b" \n").unwrap_err().contains("empty"));
        assert_eq!(parse_object::<NewSandbox>(br#"{"templateID":"t","x":1}"#).unwrap().template_id, "t");
        let m = parse_object::<TimeoutBody>(br#"{"timeout":-5}"#).unwrap_err();
        assert!(m.contains("\"timeout\"") && m.contains("-5"), "{m}");
    }

    /// Regression: a body of many unknown fields and one bad one took minutes (each of the
    /// 80 000 fields was removed in turn from a copy of the whole map).
    #[test]
    fn many_fields_are_cheap_and_long_values_are_cut() {
        let mut body = String::from("{");
        for i in 0..80_000 {
            body.push_str(&format!("\"f{i}\":0,"));
        }
        body.push_str("\"templateID\":5}");
        let t = std::time::Instant::now();
        let m = parse_object::<NewSandbox>(body.as_bytes()).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(m.starts_with("Invalid request body"), "{m}");
        let long = format!(r#"{{"templateID":"base","timeout":"{}"}}"#, "é".repeat(5000));
        let m = parse_object::<NewSandbox>(long.as_bytes()).unwrap_err();
        assert!(m.len() < 1000 && m.contains('…'), "{m}");
    }
}
