//! envd's `filesystem.Filesystem` service messages (spec/envd/filesystem/filesystem.proto).

use crate::json::{de_enum, i64_str, ser_enum, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// User-defined metadata: the entry's `user.e2b.<key>` extended attributes, prefix stripped
    /// (envd ≥ 0.6.2). Plain `user.*` attributes are not reported.
    #[prost(btree_map = "string, string", tag = "11")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
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

/// `WatchDirRequest` and `CreateWatcherRequest` (the same fields).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WatchDirRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[prost(bool, tag = "2")]
    pub recursive: bool,
    /// Each event carries the `EntryInfo` of its path when it still exists (envd ≥ 0.6.3).
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "std::ops::Not::not", alias = "include_entry")]
    pub include_entry: bool,
    /// Allows watching a directory on a network file system (NFS, CIFS/SMB, FUSE), which envd
    /// otherwise refuses (envd ≥ 0.6.4).
    #[prost(bool, tag = "4")]
    #[serde(skip_serializing_if = "std::ops::Not::not", alias = "allow_network_mounts")]
    pub allow_network_mounts: bool,
}

/// `CreateWatcherRequest`: a polling watcher (`CreateWatcher`, `GetWatcherEvents`,
/// `RemoveWatcher`, used by the synchronous Python SDK) takes what `WatchDir` takes.
pub type CreateWatcherRequest = WatchDirRequest;

/// `CreateWatcherResponse`, `GetWatcherEventsRequest`, `RemoveWatcherRequest`: a watcher id.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WatcherId {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "String::is_empty", alias = "watcher_id")]
    pub watcher_id: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GetWatcherEventsResponse {
    #[prost(message, repeated, tag = "1")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<FilesystemEvent>,
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
    /// The entry at `name` when the watch asked for it (`include_entry`) and the event is a
    /// create, write or chmod whose path could still be read. Boxed: most events have none.
    #[prost(message, optional, boxed, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Box<EntryInfo>>,
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
            metadata: BTreeMap::new(),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "FILE_TYPE_FILE");
        assert_eq!(json["size"], "12");
        assert_eq!(json["modifiedTime"], "1970-01-01T00:00:00Z");
        assert!(json.get("metadata").is_none(), "no metadata, no field: {json}");
        let back: EntryInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn entry_metadata_is_a_map_in_field_11() {
        let e = EntryInfo { name: "a".into(), metadata: [("author".into(), "me".into())].into(), ..Default::default() };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json, serde_json::json!({"name": "a", "metadata": {"author": "me"}}));
        // A map entry is a length-delimited field 11 (tag byte 0x5a) holding key (1) and value (2).
        let bytes = prost::Message::encode_to_vec(&e);
        assert_eq!(&bytes[3..], [0x5a, 0x0c, 0x0a, 0x06, b'a', b'u', b't', b'h', b'o', b'r', 0x12, 0x02, b'm', b'e']);
        assert_eq!(<EntryInfo as prost::Message>::decode(&bytes[..]).unwrap(), e);
    }

    #[test]
    fn watch_requests_read_the_new_flags_and_watcher_ids() {
        let r: WatchDirRequest =
            serde_json::from_str(r#"{"path":"/w","recursive":true,"includeEntry":true,"allowNetworkMounts":true}"#)
                .unwrap();
        assert!(r.recursive && r.include_entry && r.allow_network_mounts);
        let r: CreateWatcherRequest = serde_json::from_str(r#"{"path":"/w","include_entry":true}"#).unwrap();
        assert!(r.include_entry && !r.allow_network_mounts);
        let bytes = prost::Message::encode_to_vec(&WatchDirRequest {
            path: "/w".into(),
            include_entry: true,
            allow_network_mounts: true,
            ..Default::default()
        });
        assert_eq!(&bytes[4..], [0x18, 0x01, 0x20, 0x01], "fields 3 and 4");
        let id = WatcherId { watcher_id: "wabc".into() };
        assert_eq!(serde_json::to_string(&id).unwrap(), r#"{"watcherId":"wabc"}"#);
        let events = GetWatcherEventsResponse {
            events: vec![FilesystemEvent {
                name: "x".into(),
                r#type: EventType::Create as i32,
                entry: Some(Box::new(EntryInfo { name: "x".into(), ..Default::default() })),
            }],
        };
        assert_eq!(
            serde_json::to_string(&events).unwrap(),
            r#"{"events":[{"name":"x","type":"EVENT_TYPE_CREATE","entry":{"name":"x"}}]}"#
        );
        let back =
            <GetWatcherEventsResponse as prost::Message>::decode(&prost::Message::encode_to_vec(&events)[..]).unwrap();
        assert_eq!(back, events);
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
        let ev = WatchDirResponse::new(WatchEvent::Filesystem(FilesystemEvent {
            name: "a/b.txt".into(),
            r#type: EventType::Write as i32,
            entry: None,
        }));
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"filesystem":{"name":"a/b.txt","type":"EVENT_TYPE_WRITE"}}"#
        );
        let back: WatchDirResponse =
            serde_json::from_str(r#"{"filesystem":{"name":"x","type":"EVENT_TYPE_CHMOD"}}"#).unwrap();
        assert_eq!(
            back.event,
            Some(WatchEvent::Filesystem(FilesystemEvent { name: "x".into(), r#type: 5, entry: None }))
        );
    }
}
