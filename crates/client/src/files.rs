//! `sandbox.files` (`core/sandbox/filesystem/index.ts`): read and write through envd's
//! `/files`, everything else through the `filesystem.Filesystem` Connect service.

use crate::api::encode_uri_component;
use crate::envd::{
    canceled, Envd, RpcStream, DEFAULT_STREAM_TIMEOUT_MS, ENVD_OCTET_STREAM_UPLOAD, ENVD_RECURSIVE_WATCH,
};
use crate::error::{from_envd_http, from_rpc, from_transport, Error, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt as _};
use sandbank_protocol::connect::Code;
use sandbank_protocol::filesystem::{
    EntryResponse, EventType as WireEventType, FileType as WireFileType, ListDirRequest, ListDirResponse, MoveRequest,
    PathRequest, WatchDirRequest, WatchDirResponse, WatchEvent,
};
use sandbank_protocol::process::Empty;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Events a watch buffers for its puller before the reader waits (backpressure).
pub const WATCH_CHANNEL_CAPACITY: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    File,
    Dir,
}

impl FileType {
    /// `file` / `dir`, the JS enum's values.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Dir => "dir",
        }
    }

    fn from_wire(t: i32) -> Option<Self> {
        match t {
            x if x == WireFileType::File as i32 => Some(FileType::File),
            x if x == WireFileType::Directory as i32 => Some(FileType::Dir),
            _ => None,
        }
    }
}

/// `EntryInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub name: String,
    pub file_type: Option<FileType>,
    pub path: String,
    pub size: i64,
    pub mode: u32,
    pub permissions: String,
    pub owner: String,
    pub group: String,
    /// Millisecond precision, as a JS `Date`.
    pub modified_time: Option<DateTime<Utc>>,
    pub symlink_target: Option<String>,
}

impl From<sandbank_protocol::filesystem::EntryInfo> for EntryInfo {
    fn from(e: sandbank_protocol::filesystem::EntryInfo) -> Self {
        EntryInfo {
            name: e.name,
            file_type: FileType::from_wire(e.r#type),
            path: e.path,
            size: e.size,
            mode: e.mode,
            permissions: e.permissions,
            owner: e.owner,
            group: e.group,
            modified_time: e
                .modified_time
                .and_then(|t| DateTime::from_timestamp_millis(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)),
            symlink_target: e.symlink_target,
        }
    }
}

/// `WriteInfo`: what envd reports for a written file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct WriteInfo {
    pub name: String,
    /// `file` / `dir`.
    #[serde(rename = "type", default)]
    pub file_type: Option<String>,
    pub path: String,
}

/// A byte stream to upload.
pub type ByteSource = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// What to write: bytes in memory or a stream (sent chunked, never buffered whole).
pub enum WriteData {
    Bytes(Bytes),
    Stream(ByteSource),
}

impl std::fmt::Debug for WriteData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            WriteData::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl From<Vec<u8>> for WriteData {
    fn from(v: Vec<u8>) -> Self {
        WriteData::Bytes(v.into())
    }
}

impl From<&str> for WriteData {
    fn from(s: &str) -> Self {
        WriteData::Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for WriteData {
    fn from(s: String) -> Self {
        WriteData::Bytes(s.into())
    }
}

impl From<Bytes> for WriteData {
    fn from(b: Bytes) -> Self {
        WriteData::Bytes(b)
    }
}

/// One file of the array form of `write`.
#[derive(Debug)]
pub struct WriteEntry {
    pub path: String,
    pub data: WriteData,
}

/// `FilesystemRequestOpts`.
#[derive(Clone, Debug, Default)]
pub struct FilesystemOpts {
    pub user: Option<String>,
    pub request_timeout_ms: Option<u64>,
}

/// `FilesystemWriteOpts`.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    pub user: Option<String>,
    pub request_timeout_ms: Option<u64>,
    /// One raw `application/octet-stream` POST per file (envd ≥ 0.5.7) instead of multipart.
    pub use_octet_stream: bool,
}

/// A file being downloaded, pulled chunk by chunk.
pub struct FileStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
}

impl std::fmt::Debug for FileStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileStream")
    }
}

impl FileStream {
    /// The next chunk, `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        match self.body.next().await {
            None => Ok(None),
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(e)) => Err(from_transport(&e)),
        }
    }
}

/// `FilesystemEventType`: what happened to a watched filesystem object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilesystemEventType {
    Chmod,
    Create,
    Remove,
    Rename,
    Write,
}

impl FilesystemEventType {
    /// `chmod` / `create` / `remove` / `rename` / `write`, the JS enum's values.
    pub fn as_str(self) -> &'static str {
        match self {
            FilesystemEventType::Chmod => "chmod",
            FilesystemEventType::Create => "create",
            FilesystemEventType::Remove => "remove",
            FilesystemEventType::Rename => "rename",
            FilesystemEventType::Write => "write",
        }
    }

    /// The wire's `EventType`; `None` for `EVENT_TYPE_UNSPECIFIED` or unknown numbers (skipped,
    /// as the JS SDK does).
    pub fn from_wire(t: i32) -> Option<Self> {
        match WireEventType::try_from(t).ok()? {
            WireEventType::Chmod => Some(FilesystemEventType::Chmod),
            WireEventType::Create => Some(FilesystemEventType::Create),
            WireEventType::Remove => Some(FilesystemEventType::Remove),
            WireEventType::Rename => Some(FilesystemEventType::Rename),
            WireEventType::Write => Some(FilesystemEventType::Write),
            WireEventType::Unspecified => None,
        }
    }
}

/// `FilesystemEvent`: `name` is relative to the watched directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesystemEvent {
    pub name: String,
    pub event_type: FilesystemEventType,
}

/// `WatchOpts` (without the callbacks: pull [`WatchHandle::next_event`] instead).
#[derive(Clone, Debug, Default)]
pub struct WatchOpts {
    /// Watch subdirectories too (envd ≥ 0.1.4); default false.
    pub recursive: bool,
    /// Default 60 000; 0 = no limit (`Connect-Timeout-Ms`). The watch ends with a
    /// `TimeoutError` then.
    pub timeout_ms: Option<u64>,
    pub user: Option<String>,
    /// Time allowed until envd confirms the watch; default: the config's request timeout.
    pub request_timeout_ms: Option<u64>,
}

/// A running directory watch: pull events with [`WatchHandle::next_event`], end it with
/// [`WatchHandle::stop`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WatchHandle {
    inner: Arc<WatchInner>,
}

#[derive(Debug)]
struct WatchInner {
    cancel: watch::Sender<bool>,
    events: tokio::sync::Mutex<mpsc::Receiver<Result<FilesystemEvent>>>,
}

impl WatchHandle {
    fn spawn(stream: RpcStream) -> Self {
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        tokio::spawn(read_watch_events(stream, tx, cancel_rx));
        WatchHandle { inner: Arc::new(WatchInner { cancel: cancel_tx, events: tokio::sync::Mutex::new(rx) }) }
    }

    /// The next event; `Ok(None)` once the watch ended cleanly; `Err` once, when it ended with
    /// an error (the JS `onExit(err)`): a `TimeoutError` after `timeoutMs` or after
    /// [`WatchHandle::stop`] (the aborted request, as connect-web reports it), the mapped RPC
    /// error otherwise.
    pub async fn next_event(&self) -> Result<Option<FilesystemEvent>> {
        let mut rx = self.inner.events.lock().await;
        rx.recv().await.transpose()
    }

    /// Stops watching: the request is dropped (envd then closes its watcher); pending and
    /// later `next_event` calls finish.
    pub fn stop(&self) {
        let _ = self.inner.cancel.send(true);
    }
}

async fn read_watch_events(
    mut stream: RpcStream,
    tx: mpsc::Sender<Result<FilesystemEvent>>,
    mut cancel: watch::Receiver<bool>,
) {
    let aborted = || Err(from_rpc(&canceled(), false));
    loop {
        let msg = tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => { let _ = tx.try_send(aborted()); return; }
            m = stream.next::<WatchDirResponse>() => m,
        };
        let item = match msg {
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(from_rpc(&e, false))).await;
                return;
            }
            Ok(Some(WatchDirResponse { event: Some(WatchEvent::Filesystem(ev)) })) => {
                match FilesystemEventType::from_wire(ev.r#type) {
                    Some(event_type) => Ok(FilesystemEvent { name: ev.name, event_type }),
                    None => continue,
                }
            }
            Ok(Some(_)) => continue, // start (again) and keepalives
        };
        tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => { let _ = tx.try_send(aborted()); return; }
            r = tx.send(item) => if r.is_err() { return; },
        }
    }
}

/// `sandbox.files`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Files {
    envd: Envd,
}

/// `filename="…"` as FormData writes it: `"`, CR and LF percent-escaped.
fn escape_filename(name: &str) -> String {
    name.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A")
}

fn boundary() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("----sandbank{:x}{:x}", t as u64, N.fetch_add(1, Ordering::Relaxed))
}

/// The multipart body: a `file` part per entry, filename = its path.
pub(crate) fn multipart_body(files: Vec<(String, WriteData)>, boundary: &str) -> reqwest::Body {
    let all_bytes = files.iter().all(|(_, d)| matches!(d, WriteData::Bytes(_)));
    let head = |path: &str| {
        Bytes::from(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            escape_filename(path)
        ))
    };
    let tail = Bytes::from(format!("--{boundary}--\r\n"));
    if all_bytes {
        let mut out = Vec::new();
        for (path, data) in &files {
            out.extend_from_slice(&head(path));
            if let WriteData::Bytes(b) = data {
                out.extend_from_slice(b);
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&tail);
        return reqwest::Body::from(out);
    }
    let mut parts: Vec<ByteSource> = Vec::new();
    for (path, data) in files {
        parts.push(Box::pin(futures_util::stream::once(futures_util::future::ready(Ok(head(&path))))));
        parts.push(match data {
            WriteData::Bytes(b) => Box::pin(futures_util::stream::once(futures_util::future::ready(Ok(b)))),
            WriteData::Stream(s) => s,
        });
        parts.push(Box::pin(futures_util::stream::once(futures_util::future::ready(Ok(Bytes::from_static(b"\r\n"))))));
    }
    parts.push(Box::pin(futures_util::stream::once(futures_util::future::ready(Ok(tail)))));
    reqwest::Body::wrap_stream(futures_util::stream::iter(parts).flatten())
}

fn files_query(path: Option<&str>, user: Option<&str>) -> String {
    let mut q = Vec::new();
    if let Some(p) = path {
        q.push(format!("path={}", encode_uri_component(p)));
    }
    if let Some(u) = user {
        q.push(format!("username={}", encode_uri_component(u)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// openapi-fetch's view of an envd HTTP response: an error unless 2xx, 204 or empty.
fn is_error(res: &reqwest::Response) -> bool {
    let empty = res.status().as_u16() == 204
        || res.headers().get(reqwest::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0");
    !empty && !res.status().is_success()
}

async fn envd_error(res: reqwest::Response, files: bool) -> Error {
    let status = res.status().as_u16();
    match res.bytes().await {
        Ok(body) => from_envd_http(status, &body, files),
        Err(e) => from_transport(&e),
    }
}

impl Files {
    pub fn new(envd: Envd) -> Self {
        Self { envd }
    }

    async fn get(&self, path: &str, opts: &FilesystemOpts) -> Result<reqwest::Response> {
        let user = self.envd.effective_user(opts.user.as_deref());
        let mut rb =
            self.envd.http(reqwest::Method::GET, &format!("/files{}", files_query(Some(path), user.as_deref())));
        if let Some(t) = self.envd.config().request_timeout(opts.request_timeout_ms) {
            rb = rb.timeout(t);
        }
        let res = rb.send().await.map_err(|e| from_transport(&e))?;
        if is_error(&res) {
            return Err(envd_error(res, true).await);
        }
        Ok(res)
    }

    /// `files.read(path, {format: 'bytes'})`; missing → `FileNotFound`.
    pub async fn read(&self, path: &str, opts: FilesystemOpts) -> Result<Bytes> {
        let res = self.get(path, &opts).await?;
        res.bytes().await.map_err(|e| from_transport(&e))
    }

    /// `files.read(path)` (text; invalid UTF-8 replaced).
    pub async fn read_text(&self, path: &str, opts: FilesystemOpts) -> Result<String> {
        let b = self.read(path, opts).await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// `files.read(path, {format: 'stream'})`.
    pub async fn read_stream(&self, path: &str, opts: FilesystemOpts) -> Result<FileStream> {
        let res = self.get(path, &opts).await?;
        Ok(FileStream { body: Box::pin(res.bytes_stream()) })
    }

    /// `files.write(path, data)`.
    pub async fn write(&self, path: &str, data: WriteData, opts: WriteOpts) -> Result<WriteInfo> {
        let mut infos = self.upload(Some(path), vec![(path.to_string(), data)], &opts).await?;
        Ok(infos.swap_remove(0))
    }

    /// `files.write([{path, data}, …])` / `writeFiles`.
    pub async fn write_files(&self, files: Vec<WriteEntry>, opts: WriteOpts) -> Result<Vec<WriteInfo>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        self.upload(None, files.into_iter().map(|f| (f.path, f.data)).collect(), &opts).await
    }

    async fn upload(
        &self,
        path: Option<&str>,
        files: Vec<(String, WriteData)>,
        opts: &WriteOpts,
    ) -> Result<Vec<WriteInfo>> {
        let user = self.envd.effective_user(opts.user.as_deref());
        let octet =
            opts.use_octet_stream && crate::api::envd_version_at_least(self.envd.version(), ENVD_OCTET_STREAM_UPLOAD);
        if octet {
            let posts = files.into_iter().map(|(p, data)| {
                let body = match data {
                    WriteData::Bytes(b) => reqwest::Body::from(b),
                    WriteData::Stream(s) => reqwest::Body::wrap_stream(s),
                };
                let target = path.map(str::to_string).unwrap_or(p);
                let q = files_query(Some(&target), user.as_deref());
                self.post(q, "application/octet-stream".to_string(), body, opts.request_timeout_ms)
            });
            let all = futures_util::future::try_join_all(posts).await?;
            return Ok(all.into_iter().flatten().collect());
        }
        let b = boundary();
        let body = multipart_body(files, &b);
        let q = files_query(path, user.as_deref());
        self.post(q, format!("multipart/form-data; boundary={b}"), body, opts.request_timeout_ms).await
    }

    async fn post(
        &self,
        query: String,
        content_type: String,
        body: reqwest::Body,
        timeout: Option<u64>,
    ) -> Result<Vec<WriteInfo>> {
        let mut rb = self
            .envd
            .http(reqwest::Method::POST, &format!("/files{query}"))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(t) = self.envd.config().request_timeout(timeout) {
            rb = rb.timeout(t);
        }
        let res = rb.send().await.map_err(|e| from_transport(&e))?;
        if is_error(&res) {
            return Err(envd_error(res, true).await);
        }
        let body = res.bytes().await.map_err(|e| from_transport(&e))?;
        let infos: Vec<WriteInfo> = if body.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(&body).map_err(|e| Error::Sandbox(format!("invalid upload response: {e}")))?
        };
        if infos.is_empty() {
            return Err(Error::Other("Expected to receive information about written file".into()));
        }
        Ok(infos)
    }

    async fn rpc<Req: serde::Serialize, Res: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        opts: &FilesystemOpts,
    ) -> std::result::Result<Res, sandbank_protocol::connect::ConnectError> {
        self.envd.unary(method, req, opts.user.as_deref(), opts.request_timeout_ms).await
    }

    /// `files.list(path, {depth})`: depth default 1, below 1 → `InvalidArgument`.
    pub async fn list(&self, path: &str, depth: Option<i64>, opts: FilesystemOpts) -> Result<Vec<EntryInfo>> {
        let depth = depth.unwrap_or(1);
        if depth < 1 {
            return Err(Error::InvalidArgument("depth should be at least one".into()));
        }
        let req = ListDirRequest { path: path.to_string(), depth: depth.min(u32::MAX as i64) as u32 };
        let res: ListDirResponse =
            self.rpc("filesystem.Filesystem/ListDir", &req, &opts).await.map_err(|e| from_rpc(&e, true))?;
        Ok(res.entries.into_iter().map(EntryInfo::from).filter(|e| e.file_type.is_some()).collect())
    }

    /// `files.exists(path)`.
    pub async fn exists(&self, path: &str, opts: FilesystemOpts) -> Result<bool> {
        match self
            .rpc::<_, EntryResponse>("filesystem.Filesystem/Stat", &PathRequest { path: path.into() }, &opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code == Code::NotFound => Ok(false),
            Err(e) => Err(from_rpc(&e, true)),
        }
    }

    /// `files.getInfo(path)`.
    pub async fn get_info(&self, path: &str, opts: FilesystemOpts) -> Result<EntryInfo> {
        let res: EntryResponse = self
            .rpc("filesystem.Filesystem/Stat", &PathRequest { path: path.into() }, &opts)
            .await
            .map_err(|e| from_rpc(&e, true))?;
        res.entry
            .map(EntryInfo::from)
            .ok_or_else(|| Error::Other("Expected to receive information about the file or directory".into()))
    }

    /// `files.makeDir(path)`: `false` when it already exists.
    pub async fn make_dir(&self, path: &str, opts: FilesystemOpts) -> Result<bool> {
        match self
            .rpc::<_, EntryResponse>("filesystem.Filesystem/MakeDir", &PathRequest { path: path.into() }, &opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code == Code::AlreadyExists => Ok(false),
            Err(e) => Err(from_rpc(&e, true)),
        }
    }

    /// `files.rename(old, new)`.
    pub async fn rename(&self, old_path: &str, new_path: &str, opts: FilesystemOpts) -> Result<EntryInfo> {
        let req = MoveRequest { source: old_path.into(), destination: new_path.into() };
        let res: EntryResponse =
            self.rpc("filesystem.Filesystem/Move", &req, &opts).await.map_err(|e| from_rpc(&e, true))?;
        res.entry
            .map(EntryInfo::from)
            .ok_or_else(|| Error::Other("Expected to receive information about moved object".into()))
    }

    /// `files.watchDir(path, onEvent, opts)`: returns once envd confirmed the watch (its
    /// `start` event). A missing path is `FileNotFound`, a file `InvalidArgument`.
    pub async fn watch_dir(&self, path: &str, opts: WatchOpts) -> Result<WatchHandle> {
        if opts.recursive && !crate::api::envd_version_at_least(self.envd.version(), ENVD_RECURSIVE_WATCH) {
            return Err(Error::Template(
                "You need to update the template to use recursive watching. You can do this by running `novita-sandbox-cli template build` in the directory with the template.".into(),
            ));
        }
        let req = WatchDirRequest { path: path.to_string(), recursive: opts.recursive, ..Default::default() };
        let timeout_ms = opts.timeout_ms.unwrap_or(DEFAULT_STREAM_TIMEOUT_MS);
        let first = async {
            let mut stream =
                self.envd.open_stream("filesystem.Filesystem/WatchDir", &req, opts.user.as_deref(), timeout_ms).await?;
            let ev = stream.next::<WatchDirResponse>().await?;
            Ok::<_, sandbank_protocol::connect::ConnectError>((stream, ev))
        };
        let first = match self.envd.config().request_timeout(opts.request_timeout_ms) {
            Some(t) => tokio::time::timeout(t, first).await.unwrap_or_else(|_| Err(canceled())),
            None => first.await,
        };
        match first {
            Err(e) if e.code == Code::Unavailable => {
                Err(Error::SandboxNotFound("Sandbox is probably not running anymore".into()))
            }
            Err(e) => Err(from_rpc(&e, true)),
            Ok((stream, Some(WatchDirResponse { event: Some(WatchEvent::Start(_)) }))) => {
                Ok(WatchHandle::spawn(stream))
            }
            Ok(_) => Err(Error::Other("Expected start event".into())),
        }
    }

    /// `files.remove(path)`.
    pub async fn remove(&self, path: &str, opts: FilesystemOpts) -> Result<()> {
        let _: Empty = self
            .rpc("filesystem.Filesystem/Remove", &PathRequest { path: path.into() }, &opts)
            .await
            .map_err(|e| from_rpc(&e, true))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multipart_bodies_match_formdata() {
        let expect = "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/tmp/a \\%22q%22.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n--B--\r\n";
        let body = multipart_body(vec![("/tmp/a \\\"q\".txt".into(), "hello".into())], "B");
        assert_eq!(body.as_bytes().unwrap(), expect.as_bytes());
        // A stream produces the same bytes.
        let s: ByteSource = Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from("hel")), Ok(Bytes::from("lo"))]));
        let body = multipart_body(vec![("/tmp/a \\\"q\".txt".into(), WriteData::Stream(s))], "B");
        assert!(body.as_bytes().is_none());
        use http_body_util::BodyExt as _;
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], expect.as_bytes());
    }

    #[test]
    fn watch_event_types_map_like_the_sdk() {
        let all: Vec<_> = (0..=6).map(FilesystemEventType::from_wire).collect();
        assert_eq!(
            all,
            vec![
                None,
                Some(FilesystemEventType::Create),
                Some(FilesystemEventType::Write),
                Some(FilesystemEventType::Remove),
                Some(FilesystemEventType::Rename),
                Some(FilesystemEventType::Chmod),
                None
            ]
        );
        assert_eq!(FilesystemEventType::Chmod.as_str(), "chmod");
    }

    #[test]
    fn files_queries() {
        assert_eq!(files_query(Some("/tmp/a b.txt"), Some("root")), "?path=%2Ftmp%2Fa%20b.txt&username=root");
        assert_eq!(files_query(None, None), "");
        assert_eq!(files_query(None, Some("user")), "?username=user");
    }
}
