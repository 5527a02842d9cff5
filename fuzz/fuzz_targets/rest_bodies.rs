//! The control plane's JSON request bodies exactly as the server parses them
//! (`sandbank_protocol::body::parse_object`), and the response bodies the client reads: never
//! panics, and whatever is accepted serializes and parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandbank_protocol::body::parse_object;
use sandbank_protocol::rest::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A request body: if the server accepts it, its re-serialization is accepted and equal.
fn request<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(v) = parse_object::<T>(data) {
        let json = serde_json::to_vec(&v).expect("an accepted body serializes");
        let again: T = parse_object(&json).unwrap_or_else(|e| panic!("re-parse failed: {e}"));
        assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&v).unwrap());
    }
}

/// A response body, as the client parses it (serde_json directly).
fn response<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let json = serde_json::to_vec(&v).expect("a parsed response serializes");
        let again: T = serde_json::from_slice(&json).unwrap_or_else(|e| panic!("re-parse failed: {e}"));
        assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&v).unwrap());
    }
}

fuzz_target!(|data: &[u8]| {
    request::<NewSandbox>(data);
    request::<ConnectSandbox>(data);
    request::<ConnectSandboxV2>(data);
    request::<TimeoutBody>(data);
    request::<NewSnapshot>(data);
    response::<ErrorBody>(data);
    response::<Sandbox>(data);
    response::<SandboxDetail>(data);
    response::<ListedSandbox>(data);
    response::<Vec<SnapshotInfo>>(data);
});
