//! `sandbox.files`: read (bytes, text, pulled stream), write (single and array form), and the
//! filesystem calls.

use crate::errors::{ms, IntoNapi};
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use sandbank_client::{
    EntryInfo, FileStream, Files, FilesystemEvent, FilesystemOpts, WatchHandle, WatchOpts, WriteData, WriteEntry,
    WriteInfo, WriteOpts,
};
use std::sync::Arc;

#[napi(object)]
#[derive(Default)]
pub struct FsOptions {
    pub user: Option<String>,
    pub request_timeout_ms: Option<f64>,
    pub use_octet_stream: Option<bool>,
}

#[napi(object)]
pub struct WriteInfoJs {
    pub name: String,
    #[napi(js_name = "type")]
    pub file_type: Option<String>,
    pub path: String,
}

impl From<WriteInfo> for WriteInfoJs {
    fn from(w: WriteInfo) -> Self {
        WriteInfoJs { name: w.name, file_type: w.file_type, path: w.path }
    }
}

#[napi(object)]
pub struct EntryInfoJs {
    pub name: String,
    #[napi(js_name = "type")]
    pub file_type: Option<String>,
    pub path: String,
    pub size: f64,
    pub mode: u32,
    pub permissions: String,
    pub owner: String,
    pub group: String,
    /// Epoch milliseconds.
    pub modified_time: Option<f64>,
    pub symlink_target: Option<String>,
}

impl From<EntryInfo> for EntryInfoJs {
    fn from(e: EntryInfo) -> Self {
        EntryInfoJs {
            name: e.name,
            file_type: e.file_type.map(|t| t.as_str().to_string()),
            path: e.path,
            size: e.size as f64,
            mode: e.mode,
            permissions: e.permissions,
            owner: e.owner,
            group: e.group,
            modified_time: e.modified_time.map(|t| t.timestamp_millis() as f64),
            symlink_target: e.symlink_target,
        }
    }
}

/// `WatchOpts` without the callbacks.
#[napi(object)]
#[derive(Default)]
pub struct WatchOptions {
    pub recursive: Option<bool>,
    pub timeout_ms: Option<f64>,
    pub user: Option<String>,
    pub request_timeout_ms: Option<f64>,
}

/// `FilesystemEvent`: `type` is `chmod`, `create`, `remove`, `rename` or `write`.
#[napi(object)]
pub struct FilesystemEventJs {
    pub name: String,
    #[napi(js_name = "type")]
    pub event_type: String,
}

impl From<FilesystemEvent> for FilesystemEventJs {
    fn from(e: FilesystemEvent) -> Self {
        FilesystemEventJs { name: e.name, event_type: e.event_type.as_str().to_string() }
    }
}

#[napi(object)]
pub struct WriteEntryJs {
    pub path: String,
    pub data: Either<String, Buffer>,
}

fn fs_opts(o: &Option<FsOptions>) -> FilesystemOpts {
    let o = o.as_ref();
    FilesystemOpts {
        user: o.and_then(|o| o.user.clone()),
        request_timeout_ms: ms(o.and_then(|o| o.request_timeout_ms)),
    }
}

fn write_opts(o: &Option<FsOptions>) -> WriteOpts {
    let f = fs_opts(o);
    WriteOpts {
        user: f.user,
        request_timeout_ms: f.request_timeout_ms,
        use_octet_stream: o.as_ref().and_then(|o| o.use_octet_stream).unwrap_or(false),
    }
}

fn data(d: Either<String, Buffer>) -> WriteData {
    match d {
        Either::A(s) => WriteData::from(s),
        Either::B(b) => WriteData::from(b.to_vec()),
    }
}

#[napi(js_name = "NativeFiles")]
pub struct JsFiles {
    inner: Arc<Files>,
}

impl JsFiles {
    pub fn new(f: Files) -> Self {
        Self { inner: Arc::new(f) }
    }
}

#[napi]
impl JsFiles {
    #[napi]
    pub async fn read(&self, path: String, opts: Option<FsOptions>) -> napi::Result<Buffer> {
        let f = self.inner.clone();
        let b = f.read(&path, fs_opts(&opts)).await.napi()?;
        Ok(Buffer::from(Vec::from(b)))
    }

    #[napi]
    pub async fn read_text(&self, path: String, opts: Option<FsOptions>) -> napi::Result<String> {
        let f = self.inner.clone();
        f.read_text(&path, fs_opts(&opts)).await.napi()
    }

    #[napi]
    pub async fn read_stream(&self, path: String, opts: Option<FsOptions>) -> napi::Result<JsFileStream> {
        let f = self.inner.clone();
        let s = f.read_stream(&path, fs_opts(&opts)).await.napi()?;
        Ok(JsFileStream { inner: Arc::new(tokio::sync::Mutex::new(s)) })
    }

    #[napi]
    pub async fn write(
        &self,
        path: String,
        data: Either<String, Buffer>,
        opts: Option<FsOptions>,
    ) -> napi::Result<WriteInfoJs> {
        let f = self.inner.clone();
        let d = self::data(data);
        f.write(&path, d, write_opts(&opts)).await.map(WriteInfoJs::from).napi()
    }

    #[napi]
    pub async fn write_files(
        &self,
        files: Vec<WriteEntryJs>,
        opts: Option<FsOptions>,
    ) -> napi::Result<Vec<WriteInfoJs>> {
        let f = self.inner.clone();
        let entries = files.into_iter().map(|e| WriteEntry { path: e.path, data: data(e.data) }).collect();
        f.write_files(entries, write_opts(&opts)).await.map(|v| v.into_iter().map(WriteInfoJs::from).collect()).napi()
    }

    #[napi]
    pub async fn list(
        &self,
        path: String,
        depth: Option<i64>,
        opts: Option<FsOptions>,
    ) -> napi::Result<Vec<EntryInfoJs>> {
        let f = self.inner.clone();
        f.list(&path, depth, fs_opts(&opts)).await.map(|v| v.into_iter().map(EntryInfoJs::from).collect()).napi()
    }

    #[napi]
    pub async fn exists(&self, path: String, opts: Option<FsOptions>) -> napi::Result<bool> {
        let f = self.inner.clone();
        f.exists(&path, fs_opts(&opts)).await.napi()
    }

    #[napi]
    pub async fn get_info(&self, path: String, opts: Option<FsOptions>) -> napi::Result<EntryInfoJs> {
        let f = self.inner.clone();
        f.get_info(&path, fs_opts(&opts)).await.map(EntryInfoJs::from).napi()
    }

    #[napi]
    pub async fn make_dir(&self, path: String, opts: Option<FsOptions>) -> napi::Result<bool> {
        let f = self.inner.clone();
        f.make_dir(&path, fs_opts(&opts)).await.napi()
    }

    #[napi]
    pub async fn rename(
        &self,
        old_path: String,
        new_path: String,
        opts: Option<FsOptions>,
    ) -> napi::Result<EntryInfoJs> {
        let f = self.inner.clone();
        f.rename(&old_path, &new_path, fs_opts(&opts)).await.map(EntryInfoJs::from).napi()
    }

    #[napi]
    pub async fn remove(&self, path: String, opts: Option<FsOptions>) -> napi::Result<()> {
        let f = self.inner.clone();
        f.remove(&path, fs_opts(&opts)).await.napi()
    }

    /// Starts watching a directory; resolves once envd confirmed the watch.
    #[napi]
    pub async fn watch_dir(&self, path: String, opts: Option<WatchOptions>) -> napi::Result<JsWatchHandle> {
        let f = self.inner.clone();
        let o = opts.unwrap_or_default();
        let w = WatchOpts {
            recursive: o.recursive.unwrap_or(false),
            timeout_ms: ms(o.timeout_ms),
            user: o.user,
            request_timeout_ms: ms(o.request_timeout_ms),
        };
        let h = f.watch_dir(&path, w).await.napi()?;
        Ok(JsWatchHandle { inner: Arc::new(h) })
    }
}

/// A running directory watch; JS pulls events into the `onEvent`/`onExit` callbacks.
#[napi(js_name = "NativeWatchHandle")]
pub struct JsWatchHandle {
    inner: Arc<WatchHandle>,
}

#[napi]
impl JsWatchHandle {
    /// The next event; `null` once the watch ended; rejects once when it ended with an error.
    #[napi]
    pub async fn next_event(&self) -> napi::Result<Option<FilesystemEventJs>> {
        let h = self.inner.clone();
        h.next_event().await.map(|e| e.map(FilesystemEventJs::from)).napi()
    }

    /// Stops watching; a pending `nextEvent` finishes.
    #[napi]
    pub fn stop(&self) {
        self.inner.stop()
    }
}

/// A file being downloaded; JS pulls chunks into a `ReadableStream`.
#[napi(js_name = "NativeFileStream")]
pub struct JsFileStream {
    inner: Arc<tokio::sync::Mutex<FileStream>>,
}

#[napi]
impl JsFileStream {
    /// The next chunk, `null` at the end.
    #[napi]
    pub async fn next_chunk(&self) -> napi::Result<Option<Buffer>> {
        let s = self.inner.clone();
        let mut s = s.lock().await;
        Ok(s.next_chunk().await.napi()?.map(|b| Buffer::from(Vec::from(b))))
    }
}
