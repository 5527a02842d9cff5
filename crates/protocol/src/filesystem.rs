//! envd's `filesystem.Filesystem` service messages (spec/envd/filesystem/filesystem.proto).

use crate::json::{de_enum, i64_str, ser_enum, Timestamp};
use serde::{Deserialize, Serialize};

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FileType {
    Unspecified = 0,
    File = 1,
    Directory = 2,
}

impl FileType {
    pub fn as_str_name(&self) -> &'static str {
        match self {
            FileType::Unspecified => "FILE_TYPE_UNSPECIFIED",
            FileType::File => "FILE_TYPE_FILE",
            FileType::Directory => "FILE_TYPE_DIRECTORY",
        }
    }
    pub fn from_str_name(name: &str) -> Option<Self> {
        match name {
            "FILE_TYPE_UNSPECIFIED" => Some(FileType::Unspecified),
            "FILE_TYPE_FILE" => Some(FileType::File),
            "FILE_TYPE_DIRECTORY" => Some(FileType::Directory),
            _ => None,
        }
    }
}
crate::proto_enum!(FileType);

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EntryInfo {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[prost(enumeration = "FileType", tag = "2")]
    #[serde(
        skip_serializing_if = "is_zero_i32",
        serialize_with = "ser_enum::<FileType, _>",
        deserialize_with = "de_enum::<FileType, _>"
    )]
    pub r#type: i32,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[prost(int64, tag = "4")]
    #[serde(skip_serializing_if = "is_zero_i64", with = "i64_str")]
    pub size: i64,
    #[prost(uint32, tag = "5")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mode: u32,
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub permissions: String,
    #[prost(string, tag = "7")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[prost(string, tag = "8")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none", alias = "modified_time")]
    pub modified_time: Option<Timestamp>,
    #[prost(string, optional, tag = "10")]
    #[serde(skip_serializing_if = "Option::is_none", alias = "symlink_target")]
    pub symlink_target: Option<String>,
}

/// `StatRequest`, `MakeDirRequest`, `RemoveRequest`: a path.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PathRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// `StatResponse`, `MakeDirResponse`, `MoveResponse`: one entry.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EntryResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryInfo>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MoveRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListDirRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub depth: u32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListDirResponse {
    #[prost(message, repeated, tag = "1")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<EntryInfo>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WatchDirRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[prost(bool, tag = "2")]
    pub recursive: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EventType {
    Unspecified = 0,
    Create = 1,
    Write = 2,
    Remove = 3,
    Rename = 4,
    Chmod = 5,
}

impl EventType {
    pub fn as_str_name(&self) -> &'static str {
        match self {
            EventType::Unspecified => "EVENT_TYPE_UNSPECIFIED",
            EventType::Create => "EVENT_TYPE_CREATE",
            EventType::Write => "EVENT_TYPE_WRITE",
            EventType::Remove => "EVENT_TYPE_REMOVE",
            EventType::Rename => "EVENT_TYPE_RENAME",
            EventType::Chmod => "EVENT_TYPE_CHMOD",
        }
    }
    pub fn from_str_name(name: &str) -> Option<Self> {
        match name {
            "EVENT_TYPE_UNSPECIFIED" => Some(EventType::Unspecified),
            "EVENT_TYPE_CREATE" => Some(EventType::Create),
            "EVENT_TYPE_WRITE" => Some(EventType::Write),
            "EVENT_TYPE_REMOVE" => Some(EventType::Remove),
            "EVENT_TYPE_RENAME" => Some(EventType::Rename),
            "EVENT_TYPE_CHMOD" => Some(EventType::Chmod),
            _ => None,
        }
    }
}
crate::proto_enum!(EventType);

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FilesystemEvent {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[prost(enumeration = "EventType", tag = "2")]
    #[serde(
        skip_serializing_if = "is_zero_i32",
        serialize_with = "ser_enum::<EventType, _>",
        deserialize_with = "de_enum::<EventType, _>"
    )]
    pub r#type: i32,
}

/// `WatchDirResponse.StartEvent` and `WatchDirResponse.KeepAlive`: no fields.
#[derive(Clone, Copy, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct WatchEmpty {}

#[derive(Clone, PartialEq, prost::Oneof, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WatchEvent {
    #[prost(message, tag = "1")]
    Start(WatchEmpty),
    #[prost(message, tag = "2")]
    Filesystem(FilesystemEvent),
    #[prost(message, tag = "3")]
    Keepalive(WatchEmpty),
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WatchDirResponse {
    #[prost(oneof = "WatchEvent", tags = "1, 2, 3")]
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub event: Option<WatchEvent>,
}

impl WatchDirResponse {
    pub fn new(event: WatchEvent) -> Self {
        Self { event: Some(event) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_info_writes_the_envd_wire_form() {
        let e = EntryInfo {
            name: "a.txt".into(),
            r#type: FileType::File as i32,
            path: "/tmp/a.txt".into(),
            size: 12,
            mode: 0o644,
            permissions: "-rw-r--r--".into(),
            owner: "user".into(),
            group: "user".into(),
            modified_time: Some(Timestamp { seconds: 0, nanos: 0 }),
            symlink_target: None,
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "FILE_TYPE_FILE");
        assert_eq!(json["size"], "12");
        assert_eq!(json["modifiedTime"], "1970-01-01T00:00:00Z");
        let back: EntryInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn list_dir_reads_depth() {
        let r: ListDirRequest = serde_json::from_str(r#"{"path":"/tmp","depth":2}"#).unwrap();
        assert_eq!((r.path.as_str(), r.depth), ("/tmp", 2));
    }

    #[test]
    fn watch_events_write_the_envd_wire_form() {
        let start = WatchDirResponse::new(WatchEvent::Start(WatchEmpty {}));
        assert_eq!(serde_json::to_string(&start).unwrap(), r#"{"start":{}}"#);
        let ev = WatchDirResponse::new(WatchEvent::Filesystem(FilesystemEvent { name: "a/b.txt".into(), r#type: EventType::Write as i32 }));
        assert_eq!(serde_json::to_string(&ev).unwrap(), r#"{"filesystem":{"name":"a/b.txt","type":"EVENT_TYPE_WRITE"}}"#);
        let back: WatchDirResponse = serde_json::from_str(r#"{"filesystem":{"name":"x","type":"EVENT_TYPE_CHMOD"}}"#).unwrap();
        assert_eq!(back.event, Some(WatchEvent::Filesystem(FilesystemEvent { name: "x".into(), r#type: 5 })));
    }
}
