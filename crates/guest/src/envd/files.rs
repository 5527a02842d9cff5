//! `GET /files` (download, gzip when accepted) and `POST /files` (multipart or octet-stream
//! upload, gzip request bodies accepted), streamed to and from disk.
//!
//! Errors are E2B's JSON `{"code": <http status>, "message": "…"}`.

use super::fsutil::{chown_to, create_dirs, is_no_space, open_file, resolve};
use super::metadata::{self, Metadata};
use super::Shared;
use super::{creds, users};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FilesQuery {
    path: Option<String>,
    username: Option<String>,
}

/// envd's `EntryInfo` of the upload API (not the filesystem service's): what an upload wrote.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct WriteInfo {
    pub path: String,
    pub name: String,
    pub r#type: String,
    /// The file's metadata as read back after the upload; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

struct HttpError(StatusCode, String);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"code": self.0.as_u16(), "message": self.1}))).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> HttpError {
    HttpError(StatusCode::BAD_REQUEST, msg.into())
}

fn io_error(op: &str, path: &Path, e: &io::Error) -> HttpError {
    let status = if e.kind() == io::ErrorKind::NotFound {
        StatusCode::NOT_FOUND
    } else if is_no_space(e) {
        StatusCode::INSUFFICIENT_STORAGE
    } else if matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem) {
        // Not the user's to write (a read-only mount, such as /proc/sys, included): the caller's.
        StatusCode::FORBIDDEN
    } else if matches!(
        e.raw_os_error(),
        Some(libc::ENOTDIR) | Some(libc::EISDIR) | Some(libc::ENAMETOOLONG) | Some(libc::ELOOP)
    ) {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    HttpError(status, format!("{op} {:?}: {e}", path.display().to_string()))
}

fn query(req: &Request) -> Result<FilesQuery, HttpError> {
    Query::<FilesQuery>::try_from_uri(req.uri()).map(|q| q.0).map_err(|e| bad_request(format!("invalid query: {e}")))
}

fn user(envd: &Shared, headers: &HeaderMap, q: &FilesQuery) -> Result<users::User, HttpError> {
    users::resolve(headers, q.username.as_deref(), &envd.opts.default_user)
        .map_err(|e| HttpError(StatusCode::UNAUTHORIZED, e.message))
}

/// A request path, resolved for `user` as envd does (relative to the home, `~`).
fn path_arg(path: Option<&str>, user: &users::User) -> Result<PathBuf, HttpError> {
    resolve(path.unwrap_or(""), &user.home).map_err(bad_request)
}

/// Whether `Accept-Encoding` allows gzip (with a non-zero quality).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0);
            name == "gzip" && q > 0.0
        },
    )
}

pub async fn download(State(envd): State<Shared>, req: Request) -> Response {
    match download_inner(&envd, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn download_inner(envd: &Shared, req: Request) -> Result<Response, HttpError> {
    let q = query(&req)?;
    let user = user(envd, req.headers(), &q)?;
    let path = path_arg(q.path.as_deref(), &user)?;
    // Opened as the user: their rights, wherever a symlink leads.
    let file = creds::as_user(&user, || open_file(&path, libc::O_RDONLY, 0))
        .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| io_error("open", &path, &e))?;
    let meta = file.metadata().map_err(|e| io_error("stat", &path, &e))?;
    if meta.is_dir() {
        return Err(bad_request(format!("path {:?} is a directory", path.display().to_string())));
    }
    let octet = (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if accepts_gzip(req.headers()) {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            let mut enc = flate2::read::GzEncoder::new(file, flate2::Compression::fast());
            let mut buf = vec![0u8; CHUNK];
            loop {
                match enc.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        let headers = [octet, (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))];
        return Ok((StatusCode::OK, headers, Body::from_stream(receiver_stream(rx))).into_response());
    }
    let len = HeaderValue::from(meta.len());
    if meta.len() == 0 {
        return Ok((StatusCode::OK, [octet, (header::CONTENT_LENGTH, len)]).into_response());
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), CHUNK);
    Ok((StatusCode::OK, [octet, (header::CONTENT_LENGTH, len)], Body::from_stream(stream)).into_response())
}

fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Decompresses a gzip request body on a blocking thread, chunk by chunk.
fn gunzip(body: Body) -> Body {
    let (in_tx, in_rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let (out_tx, out_rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut data = body.into_data_stream();
        while let Some(chunk) = data.next().await {
            let item = chunk.map_err(io::Error::other);
            let stop = item.is_err();
            if in_tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    struct ChannelReader {
        rx: mpsc::Receiver<io::Result<Bytes>>,
        cur: Bytes,
    }
    impl Read for ChannelReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.cur.is_empty() {
                match self.rx.blocking_recv() {
                    Some(Ok(b)) => self.cur = b,
                    Some(Err(e)) => return Err(e),
                    None => return Ok(0),
                }
            }
            let n = buf.len().min(self.cur.len());
            buf[..n].copy_from_slice(&self.cur.split_to(n));
            Ok(n)
        }
    }
    tokio::task::spawn_blocking(move || {
        let mut dec = flate2::read::MultiGzDecoder::new(ChannelReader { rx: in_rx, cur: Bytes::new() });
        let mut buf = vec![0u8; CHUNK];
        loop {
            match dec.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if out_tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = out_tx.blocking_send(Err(io::Error::new(e.kind(), format!("invalid gzip body: {e}"))));
                    return;
                }
            }
        }
    });
    Body::from_stream(receiver_stream(out_rx))
}

/// Reads and drops the rest of an upload that failed: a response sent before the request is
/// read is a connection reset to most clients (EPIPE), which would never see the error.
async fn drain<S: Stream>(chunks: S) {
    let mut chunks = std::pin::pin!(chunks);
    while chunks.next().await.is_some() {}
}

/// Creates (or truncates) `dest` for writing, and the directories above it, owned by `user`.
fn create_for(dest: &Path, user: &users::User) -> Result<std::fs::File, HttpError> {
    if let Some(parent) = dest.parent() {
        create_dirs(parent, user).map_err(|e| io_error("mkdir", parent, &e))?;
    }
    if dest.is_dir() {
        return Err(bad_request(format!("path {:?} is a directory", dest.display().to_string())));
    }
    let file = open_file(dest, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o666)
        .map_err(|e| io_error("create", dest, &e))?;
    chown_to(dest, user).map_err(|e| io_error("chown", dest, &e))?;
    Ok(file)
}

/// Streams `chunks` into `dest` (parents created and the file owned by `user`), then replaces its
/// metadata with `meta`.
async fn write_file<S, E>(dest: PathBuf, user: &users::User, meta: &Metadata, chunks: S) -> Result<WriteInfo, HttpError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let u = user.clone();
    let d = dest.clone();
    // As the user: the directories and the file are made with their rights, and theirs.
    let opened = tokio::task::spawn_blocking(move || {
        creds::as_user(&u, || create_for(&d, &u))
            .unwrap_or_else(|e| Err(HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
    })
    .await
    .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, format!("upload task failed: {e}")))
    .and_then(|r| r);
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            drain(chunks).await;
            return Err(e);
        }
    };
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
    let mut chunks = std::pin::pin!(chunks);
    let mut failed = None;
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|e| bad_request(format!("reading the upload for {:?}: {e}", dest.display().to_string())))?;
        if failed.is_none() {
            failed = out.write_all(&chunk).await.err();
        }
        // After a failed write (a full disk) the rest of the body is read and dropped, as in
        // `drain`, so that the client sees the 507.
    }
    if failed.is_none() {
        failed = out.flush().await.err();
    }
    if let Some(e) = failed {
        drop(out);
        // A partial file is of no use and would keep the disk full.
        let _ = tokio::fs::remove_file(&dest).await;
        return Err(io_error("write", &dest, &e));
    }
    let file = out.into_inner().into_std().await;
    let (d, meta) = (dest.clone(), meta.clone());
    let persisted = tokio::task::spawn_blocking(move || -> Result<Metadata, HttpError> {
        write_metadata(&file, &d, &meta)?;
        // Read back from the disk, so the answer never claims what was not kept.
        Ok(metadata::read(&d).unwrap_or_else(|e| {
            tracing::warn!(path = %d.display(), "reading back the metadata of an upload: {e}");
            Metadata::new()
        }))
    })
    .await
    .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, format!("upload task failed: {e}")))??;
    Ok(WriteInfo {
        name: dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: dest.to_string_lossy().into_owned(),
        r#type: "file".into(),
        metadata: Some(persisted).filter(|m| !m.is_empty()),
    })
}

/// Replaces the metadata of a file just written, even with none: `O_TRUNC` keeps the xattrs of an
/// earlier upload. As envd: a file system without xattrs keeps the file without metadata (logged);
/// the file stays written when the metadata fails otherwise.
fn write_metadata(file: &std::fs::File, path: &Path, meta: &Metadata) -> Result<(), HttpError> {
    match metadata::write(file, meta) {
        Ok(()) => Ok(()),
        Err(e) if metadata::is_unsupported(&e) => {
            tracing::warn!(path = %path.display(), "the file system does not support xattrs; metadata not kept: {e}");
            Ok(())
        }
        Err(e) if is_no_space(&e) => {
            Err(HttpError(StatusCode::INSUFFICIENT_STORAGE, format!("not enough space for file metadata: {e}")))
        }
        Err(e) => Err(HttpError(StatusCode::INTERNAL_SERVER_ERROR, format!("error writing file metadata: {e}"))),
    }
}

pub async fn upload(State(envd): State<Shared>, req: Request) -> Response {
    match upload_inner(&envd, req).await {
        Ok(infos) => (StatusCode::OK, Json(infos)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn upload_inner(envd: &Shared, req: Request) -> Result<Vec<WriteInfo>, HttpError> {
    let checked = query(&req).and_then(|q| {
        let user = user(envd, req.headers(), &q)?;
        let meta = metadata::from_headers(req.headers()).map_err(|e| bad_request(format!("invalid metadata: {e}")))?;
        match q.path.as_deref() {
            Some(p) if !p.is_empty() => {
                let path = path_arg(Some(p), &user)?;
                Ok((user, meta, Some(path)))
            }
            _ => Ok((user, meta, None)),
        }
    });
    let (user, meta, target) = match checked {
        Ok(c) => c,
        Err(e) => {
            drain(req.into_body().into_data_stream()).await;
            return Err(e);
        }
    };
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let (parts, body) = req.into_parts();
    let body = match encoding.as_str() {
        "" | "identity" => body,
        "gzip" | "x-gzip" => gunzip(body),
        other => {
            drain(body.into_data_stream()).await;
            return Err(bad_request(format!("unsupported Content-Encoding {other:?} (want gzip or identity)")));
        }
    };
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if !content_type.starts_with("multipart/form-data") {
        let Some(dest) = target else {
            drain(body.into_data_stream()).await;
            return Err(bad_request("the path query parameter is required for an application/octet-stream upload"));
        };
        return Ok(vec![write_file(dest, &user, &meta, body.into_data_stream()).await?]);
    }
    let (body, rest) = read_to_end(body);
    let written = upload_parts(Request::from_parts(parts, body), target, &user, &meta).await;
    // Its reader is gone: the rest (at most a chunked body's last chunk, for a well-formed body)
    // is read and dropped before the answer.
    let _ = tokio::time::timeout(Duration::from_secs(5), rest).await;
    written
}

/// `body`, read to its end by a task of its own; the returned body gets what it reads for as long
/// as it is read. multer stops at the closing boundary, and a chunked body's last chunk may come
/// after it: answering before that chunk was read makes hyper close the connection, and the
/// client (the server's proxy) then gets a broken pipe instead of the answer.
fn read_to_end(body: Body) -> (Body, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, axum::Error>>(4);
    let task = tokio::spawn(async move {
        let mut chunks = std::pin::pin!(body.into_data_stream());
        let mut forwarding = true;
        while let Some(chunk) = chunks.next().await {
            forwarding = forwarding && tx.send(chunk).await.is_ok();
        }
    });
    (Body::from_stream(receiver_stream(rx)), task)
}

/// Writes each part named `file` (to `target`, else to its file name), each with `meta`.
async fn upload_parts(
    req: Request,
    target: Option<PathBuf>,
    user: &users::User,
    meta: &Metadata,
) -> Result<Vec<WriteInfo>, HttpError> {
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| bad_request(format!("invalid multipart body: {}", e.body_text())))?;
    let mut written = Vec::new();
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| bad_request(format!("invalid multipart body: {}", e.body_text())))?;
        let Some(field) = field else { break };
        if field.name() != Some("file") {
            continue;
        }
        let dest = match &target {
            Some(t) => Ok(t.clone()),
            None => {
                let name = field.file_name().unwrap_or("").to_string();
                resolve(&name, &user.home)
                    .map_err(|m| bad_request(format!("file part: {m} (give a filename or the path query parameter)")))
            }
        };
        let result = match dest {
            Ok(dest) => write_file(dest, user, meta, field).await,
            Err(e) => {
                drain(field).await;
                Err(e)
            }
        };
        match result {
            Ok(info) => written.push(info),
            Err(e) => {
                // The answer waits for the rest of the body (see `drain`).
                while let Ok(Some(field)) = multipart.next_field().await {
                    drain(field).await;
                }
                return Err(e);
            }
        }
    }
    if written.is_empty() {
        return Err(bad_request("the multipart body has no part named \"file\""));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_parsing() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("deflate, gzip;q=0.5"));
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, identity"));
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn metadata_on_a_file_system_without_xattrs_is_skipped_not_an_error() {
        // procfs has no `user.*` xattrs (EOPNOTSUPP): the upload keeps its file, without metadata.
        let path = Path::new("/proc/self/status");
        let file = std::fs::File::open(path).unwrap();
        let meta = Metadata::from([("k".to_string(), "v".to_string())]);
        assert!(metadata::is_unsupported(&metadata::write(&file, &meta).unwrap_err()));
        assert!(write_metadata(&file, path, &meta).is_ok());
        // Other failures are the upload's: user xattrs are refused on a symlink or device (EPERM).
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        let HttpError(status, message) = write_metadata(&null, Path::new("/dev/null"), &meta).unwrap_err();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(message.starts_with("error writing file metadata: "), "{message}");
    }
}
