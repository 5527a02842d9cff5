//! The `X-Next-Token` cursor and the `limit` parameter (`sandbank_protocol::pagination`): never
//! panics; a token that decodes re-encodes to one that decodes to the same cursor; a token
//! made from a real time and ID round-trips.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use sandbank_protocol::pagination::{parse_limit, PageToken, MAX_LIMIT};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(t) = PageToken::decode(&text) {
        assert_eq!(PageToken::decode(&t.encode()).as_ref(), Ok(&t), "token {text:?}");
    }
    if let Ok(n) = parse_limit(Some(&text)) {
        assert!((1..=MAX_LIMIT).contains(&n));
    }

    // A cursor the server would make: a time in years 1970–2262 (nanosecond timestamps) and an ID.
    if data.len() >= 12 {
        let secs = i64::from_le_bytes(data[..8].try_into().unwrap()).rem_euclid(9_200_000_000);
        let nanos = u32::from_le_bytes(data[8..12].try_into().unwrap()) % 1_000_000_000;
        let id: String = String::from_utf8_lossy(&data[12..]).chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        if let (Some(time), false) = (DateTime::from_timestamp(secs, nanos), id.is_empty()) {
            let t = PageToken { time, id };
            assert_eq!(PageToken::decode(&t.encode()), Ok(t));
        }
    }
});
