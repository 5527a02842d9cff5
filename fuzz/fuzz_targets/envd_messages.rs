//! envd's messages in both encodings (`sandbank_protocol::{process, filesystem, connect}`):
//! whatever decodes — proto3 JSON or binary protobuf — never panics, re-encodes to something
//! that decodes to the same message, and (as the server's `expect` requires) always serializes.
//! Each input is tried as it is, and as the seed of a JSON document shaped like these messages.
#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use sandbank_protocol::connect::{ConnectError, EndStream};
use sandbank_protocol::filesystem::*;
use sandbank_protocol::process::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

fn json<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) {
    if let Ok(m) = serde_json::from_slice::<T>(data) {
        let out = serde_json::to_vec(&m).expect("a decoded message serializes");
        let again: T = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{:?} does not parse back: {e}", String::from_utf8_lossy(&out)));
        assert_eq!(again, m, "JSON {:?}", String::from_utf8_lossy(&out));
    }
}

fn proto<T: Message + Default + Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(m) = T::decode(data) {
        let again = T::decode(m.encode_to_vec().as_slice()).expect("an encoded message decodes");
        assert_eq!(again, m);
        // The server answers a protobuf request's data in JSON too (List, streams' events).
        let out = serde_json::to_vec(&m).expect("a decoded message serializes");
        serde_json::from_slice::<T>(&out)
            .unwrap_or_else(|e| panic!("{:?} does not parse back: {e}", String::from_utf8_lossy(&out)));
    }
}

fn both<T: Message + Default + Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    json::<T>(data);
    proto::<T>(data);
}

/// The messages' field names (camelCase and the original snake_case the parser also takes).
const KEYS: &[&str] = &[
    "process",
    "cmd",
    "args",
    "envs",
    "cwd",
    "pty",
    "size",
    "cols",
    "rows",
    "tag",
    "stdin",
    "pid",
    "input",
    "signal",
    "path",
    "depth",
    "source",
    "destination",
    "recursive",
    "event",
    "start",
    "data",
    "stdout",
    "stderr",
    "end",
    "exitCode",
    "exit_code",
    "exited",
    "status",
    "error",
    "keepalive",
    "entry",
    "entries",
    "name",
    "type",
    "mode",
    "permissions",
    "owner",
    "group",
    "modifiedTime",
    "modified_time",
    "symlinkTarget",
    "code",
    "message",
    "processes",
    "config",
    "filesystem",
    "metadata",
];

fn all(data: &[u8]) {
    // process.Process
    both::<StartRequest>(data);
    both::<ConnectRequest>(data);
    both::<SendInputRequest>(data);
    both::<SendSignalRequest>(data);
    both::<UpdateRequest>(data);
    both::<CloseStdinRequest>(data);
    both::<EventResponse>(data);
    both::<ListResponse>(data);
    // filesystem.Filesystem
    both::<PathRequest>(data);
    both::<MoveRequest>(data);
    both::<ListDirRequest>(data);
    both::<WatchDirRequest>(data);
    both::<EntryResponse>(data);
    both::<ListDirResponse>(data);
    both::<WatchDirResponse>(data);
    // Connect errors and end-of-stream messages
    json::<ConnectError>(data);
    json::<EndStream>(data);
}

fuzz_target!(|data: &[u8]| {
    all(data);
    if let Ok(doc) = sandbank_fuzz::object(&mut Unstructured::new(data), KEYS, 4) {
        all(&serde_json::to_vec(&serde_json::Value::Object(doc)).unwrap());
    }
});
