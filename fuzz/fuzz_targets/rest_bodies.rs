//! The control plane's JSON request bodies exactly as the server parses them
//! (`sandbank_protocol::body::parse_object`), and the response bodies the client reads: never
//! panics, and whatever is accepted serializes and parses back to the same value. Each input is
//! tried as it is, and as the seed of a JSON document shaped like these bodies.
#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
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

/// The field names of the bodies, requests and responses.
const KEYS: &[&str] = &[
    "templateID",
    "timeout",
    "autoPause",
    "autoResume",
    "enabled",
    "secure",
    "allow_internet_access",
    "metadata",
    "envVars",
    "memory",
    "name",
    "code",
    "message",
    "sandboxID",
    "clientID",
    "envdVersion",
    "envdAccessToken",
    "trafficAccessToken",
    "domain",
    "alias",
    "startedAt",
    "endAt",
    "state",
    "cpuCount",
    "memoryMB",
    "diskSizeMB",
    "lifecycle",
    "onTimeout",
    "snapshotID",
    "names",
    "parentSnapshotID",
    "createdAt",
    "sizeBytes",
    "mode",
];

fn all(data: &[u8]) {
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
}

fuzz_target!(|data: &[u8]| {
    all(data);
    let mut u = Unstructured::new(data);
    let doc = match u.ratio(1, 4) {
        Ok(true) => sandbank_fuzz::object(&mut u, KEYS, 3).map(|o| serde_json::Value::Array(vec![o.into()])),
        _ => sandbank_fuzz::object(&mut u, KEYS, 3).map(serde_json::Value::Object),
    };
    if let Ok(doc) = doc {
        all(&serde_json::to_vec(&doc).unwrap());
    }
});
