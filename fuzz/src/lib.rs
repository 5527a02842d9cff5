//! Shared by the fuzz targets: JSON built from the fuzzer's bytes, shaped like the messages
//! (their field names, nesting, odd numbers and strings), so that the decoders are reached
//! beyond the syntax errors that byte mutation mostly produces.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// Strings that mean something to some decoder: enum names, times, base64, paths, IDs.
const STRINGS: &[&str] = &[
    "",
    "base",
    "abc:default",
    "SIGNAL_SIGKILL",
    "SIGNAL_SIGTERM",
    "FILE_TYPE_FILE",
    "FILE_TYPE_DIRECTORY",
    "EVENT_TYPE_CREATE",
    "not_found",
    "invalid_argument",
    "2026-11-29T10:00:00Z",
    "2026-12-31T23:59:60.5+01:00",
    "9999-12-31T23:59:59.999999999Z",
    "aGVsbG8K",
    "aGk",
    "-_8=",
    "/tmp/a b",
    "/",
    "..",
    "\u{0}",
    "é",
    "running",
    "kill",
    "pause",
    "1",
    "-1",
    "18446744073709551616",
];

fn number(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Value::from(u.arbitrary::<u64>()?),
        1 => Value::from(u.arbitrary::<i64>()?),
        2 => Value::from(u.int_in_range(0u64..=400)?),
        3 => Number::from_f64(u.arbitrary::<f64>()?).map_or(Value::Null, Value::Number),
        4 => Value::from(u.arbitrary::<u32>()?),
        _ => Value::from(-u.int_in_range(0i64..=10)?),
    })
}

/// A JSON value whose object keys come mostly from `keys`.
pub fn value(u: &mut Unstructured, keys: &[&str], depth: u32) -> Result<Value> {
    let pick = if depth == 0 { u.int_in_range(0..=3)? } else { u.int_in_range(0..=6)? };
    Ok(match pick {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 => Value::String(if u.ratio(3, 4)? { u.choose(STRINGS)?.to_string() } else { u.arbitrary::<String>()? }),
        4 => {
            let n = u.int_in_range(0..=3)?;
            Value::Array((0..n).map(|_| value(u, keys, depth - 1)).collect::<Result<_>>()?)
        }
        _ => Value::Object(object(u, keys, depth - 1)?),
    })
}

/// A JSON object whose keys come mostly from `keys`.
pub fn object(u: &mut Unstructured, keys: &[&str], depth: u32) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let k = if u.ratio(7, 8)? { u.choose(keys)?.to_string() } else { u.arbitrary::<String>()? };
        m.insert(k, value(u, keys, depth)?);
    }
    Ok(m)
}
