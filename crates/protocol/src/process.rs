//! envd's `process.Process` service messages (spec/envd/process/process.proto), one definition
//! for both proto3 JSON (serde) and binary protobuf (prost).

use crate::json::{b64, de_enum, ser_enum};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessConfig {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cmd: String,
    #[prost(string, repeated, tag = "2")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[prost(map = "string, string", tag = "3")]
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub envs: HashMap<String, String>,
    #[prost(string, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Clone, Copy, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PtySize {
    #[prost(uint32, tag = "1")]
    pub cols: u32,
    #[prost(uint32, tag = "2")]
    pub rows: u32,
}

#[derive(Clone, Copy, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Pty {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<PtySize>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StartRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessConfig>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pty: Option<Pty>,
    #[prost(string, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[prost(bool, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
}

#[derive(Clone, Copy, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StartEvent {
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub pid: u32,
}

#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Output {
    #[prost(bytes, tag = "1")]
    #[serde(with = "b64")]
    Stdout(Vec<u8>),
    #[prost(bytes, tag = "2")]
    #[serde(with = "b64")]
    Stderr(Vec<u8>),
    #[prost(bytes, tag = "3")]
    #[serde(with = "b64")]
    Pty(Vec<u8>),
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DataEvent {
    #[prost(oneof = "Output", tags = "1, 2, 3")]
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndEvent {
    #[prost(sint32, tag = "1")]
    #[serde(skip_serializing_if = "is_zero_i32", alias = "exit_code")]
    pub exit_code: i32,
    #[prost(bool, tag = "2")]
    #[serde(skip_serializing_if = "is_false")]
    pub exited: bool,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[prost(string, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct KeepAlive {}

#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    #[prost(message, tag = "1")]
    Start(StartEvent),
    #[prost(message, tag = "2")]
    Data(DataEvent),
    #[prost(message, tag = "3")]
    End(EndEvent),
    #[prost(message, tag = "4")]
    Keepalive(KeepAlive),
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessEvent {
    #[prost(oneof = "Event", tags = "1, 2, 3, 4")]
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
}

impl ProcessEvent {
    pub fn new(event: Event) -> Self {
        Self { event: Some(event) }
    }
}

/// `StartResponse` and `ConnectResponse` have the same shape: one `event`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<ProcessEvent>,
}

impl EventResponse {
    pub fn new(event: Event) -> Self {
        Self { event: Some(ProcessEvent::new(event)) }
    }
}

#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Selector {
    #[prost(uint32, tag = "1")]
    Pid(u32),
    #[prost(string, tag = "2")]
    Tag(String),
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessSelector {
    #[prost(oneof = "Selector", tags = "1, 2")]
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConnectRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSelector>,
}

#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Input {
    #[prost(bytes, tag = "1")]
    #[serde(with = "b64")]
    Stdin(Vec<u8>),
    #[prost(bytes, tag = "2")]
    #[serde(with = "b64")]
    Pty(Vec<u8>),
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessInput {
    #[prost(oneof = "Input", tags = "1, 2")]
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SendInputRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSelector>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<ProcessInput>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Signal {
    Unspecified = 0,
    Sigterm = 15,
    Sigkill = 9,
}

impl Signal {
    pub fn as_str_name(&self) -> &'static str {
        match self {
            Signal::Unspecified => "SIGNAL_UNSPECIFIED",
            Signal::Sigterm => "SIGNAL_SIGTERM",
            Signal::Sigkill => "SIGNAL_SIGKILL",
        }
    }
    pub fn from_str_name(name: &str) -> Option<Self> {
        match name {
            "SIGNAL_UNSPECIFIED" => Some(Signal::Unspecified),
            "SIGNAL_SIGTERM" => Some(Signal::Sigterm),
            "SIGNAL_SIGKILL" => Some(Signal::Sigkill),
            _ => None,
        }
    }
}
crate::proto_enum!(Signal);

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SendSignalRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSelector>,
    #[prost(enumeration = "Signal", tag = "2")]
    #[serde(serialize_with = "ser_enum::<Signal, _>", deserialize_with = "de_enum::<Signal, _>")]
    pub signal: i32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UpdateRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSelector>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pty: Option<Pty>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CloseStdinRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSelector>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessInfo {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ProcessConfig>,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub pid: u32,
    #[prost(string, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListResponse {
    #[prost(message, repeated, tag = "1")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessInfo>,
}

/// Every request or response of the service that carries no field (`ListRequest`,
/// `SendInputResponse`, …).
#[derive(Clone, Copy, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn start_request_reads_the_sdk_wire_form() {
        let json = r#"{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],"envs":{"X":"y"},"cwd":"/tmp"},"stdin":false}"#;
        let req: StartRequest = serde_json::from_str(json).unwrap();
        let p = req.process.unwrap();
        assert_eq!(p.cmd, "/bin/bash");
        assert_eq!(p.args, ["-l", "-c", "echo hi"]);
        assert_eq!(p.envs["X"], "y");
        assert_eq!(p.cwd.as_deref(), Some("/tmp"));
        assert_eq!(req.stdin, Some(false));
    }

    #[test]
    fn events_write_the_envd_wire_form() {
        let start = EventResponse::new(Event::Start(StartEvent { pid: 42 }));
        assert_eq!(serde_json::to_string(&start).unwrap(), r#"{"event":{"start":{"pid":42}}}"#);
        let data = EventResponse::new(Event::Data(DataEvent { output: Some(Output::Stdout(b"hello\n".to_vec())) }));
        assert_eq!(serde_json::to_string(&data).unwrap(), r#"{"event":{"data":{"stdout":"aGVsbG8K"}}}"#);
        let end = EventResponse::new(Event::End(EndEvent {
            exit_code: 0,
            exited: true,
            status: "exit status 0".into(),
            error: None,
        }));
        assert_eq!(
            serde_json::to_string(&end).unwrap(),
            r#"{"event":{"end":{"exited":true,"status":"exit status 0"}}}"#
        );
        let ka = EventResponse::new(Event::Keepalive(KeepAlive {}));
        assert_eq!(serde_json::to_string(&ka).unwrap(), r#"{"event":{"keepalive":{}}}"#);
        let back: EventResponse = serde_json::from_str(
            r#"{"event":{"end":{"exit_code":-1,"status":"signal: killed","error":"signal: killed"}}}"#,
        )
        .unwrap();
        match back.event.unwrap().event.unwrap() {
            Event::End(e) => assert_eq!(e.exit_code, -1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn signal_requests_accept_names_and_numbers() {
        let by_name: SendSignalRequest =
            serde_json::from_str(r#"{"process":{"pid":42},"signal":"SIGNAL_SIGKILL"}"#).unwrap();
        assert_eq!(by_name.signal, Signal::Sigkill as i32);
        assert_eq!(by_name.process.clone().unwrap().selector, Some(Selector::Pid(42)));
        let by_number: SendSignalRequest = serde_json::from_str(r#"{"signal":15}"#).unwrap();
        assert_eq!(by_number.signal, 15);
        assert!(serde_json::from_str::<SendSignalRequest>(r#"{"signal":"SIGHUP"}"#).is_err());
        assert_eq!(serde_json::to_string(&by_name).unwrap(), r#"{"process":{"pid":42},"signal":"SIGNAL_SIGKILL"}"#);
    }

    #[test]
    fn send_input_decodes_base64_stdin() {
        let req: SendInputRequest = serde_json::from_str(r#"{"process":{"pid":42},"input":{"stdin":"YWJj"}}"#).unwrap();
        assert_eq!(req.input.unwrap().input, Some(Input::Stdin(b"abc".to_vec())));
    }

    #[test]
    fn binary_protobuf_round_trips() {
        let ev = EventResponse::new(Event::Data(DataEvent { output: Some(Output::Stderr(vec![1, 2, 3])) }));
        let bytes = ev.encode_to_vec();
        assert_eq!(EventResponse::decode(bytes.as_slice()).unwrap(), ev);
    }
}
