//! The metadata filter of `GET /v2/sandboxes` (`sandbank_protocol::metadata::decode_filter`):
//! never panics on any value, and undoes exactly what the SDK does to any pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sandbank_protocol::metadata::decode_filter;

/// What JavaScript's `encodeURIComponent` leaves alone: `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');
/// What `URLSearchParams` leaves alone (and a space becomes `+`): `A-Z a-z 0-9 * - . _`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

fn form(s: &str) -> String {
    s.split(' ').map(|part| utf8_percent_encode(part, FORM).to_string()).collect::<Vec<_>>().join("+")
}

/// The SDK: `encodeURIComponent` each key and value, then `new URLSearchParams(pairs)`.
/// (The HTTP layer's own encoding of the whole value is undone before `decode_filter`.)
fn sdk_encode(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let k = utf8_percent_encode(k, URI_COMPONENT).to_string();
            let v = utf8_percent_encode(v, URI_COMPONENT).to_string();
            format!("{}={}", form(&k), form(&v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = decode_filter(&text);

    // Pairs from the input: `\n` separates pairs and `\t` a key from its value.
    let pairs: Vec<(String, String)> = text
        .split('\n')
        .map(|p| {
            let (k, v) = p.split_once('\t').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let encoded = sdk_encode(&pairs);
    let decoded = decode_filter(&encoded).unwrap_or_else(|e| panic!("{encoded:?}: {e}"));
    // A pair with an empty key and value encodes to `=`, which is kept; nothing else is dropped.
    assert_eq!(decoded, pairs, "encoded as {encoded:?}");
});
