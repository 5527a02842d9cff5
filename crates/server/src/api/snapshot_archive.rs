//! `GET /snapshots/{id}/export` and `POST /snapshots/import` (sandbank's): a snapshot as one
//! archive ([`sandbank_engine::snapshot_archive`]), streamed both ways: neither the server nor
//! the client holds the whole file. An import answers 201 with the snapshot's API object, as
//! `GET /snapshots` lists it; a name it could not keep (a live snapshot here has it) is said in
//! the `x-sandbank-dropped-name` header.

use super::error::ApiError;
use super::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt as _;
use sandbank_engine::snapshot_archive::{ArchiveError, MEDIA_TYPE};
use std::io::{self, Read, Write};
use tokio::sync::mpsc;

/// The header that names the name an imported snapshot could not keep.
pub const DROPPED_NAME_HEADER: &str = "x-sandbank-dropped-name";
/// How much of the stream waits in memory between the engine's thread and the connection.
const CHUNKS_IN_FLIGHT: usize = 8;
const CHUNK: usize = 256 << 10;

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::NotFound(id) => ApiError::SnapshotNotFound(id),
            ArchiveError::Engine(e) => e.into(),
            ArchiveError::Io { source, .. }
                if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) =>
            {
                ApiError::InsufficientStorage(format!("not enough space for the snapshot: {source}"))
            }
            e if e.is_bad_archive() => ApiError::BadRequest(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

/// `GET /snapshots/{id}/export`: the archive, as it is written. An error once it has begun
/// ends the response early (the client sees a body cut short, and the archive's checks refuse
/// what it got).
pub async fn export(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let job = state.backend.export_snapshot(&raw)?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let id = job.snapshot_id.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = io::BufWriter::with_capacity(CHUNK, ChannelWriter { tx: tx.clone() });
        let written = (job.write)(&mut out).and_then(|digest| {
            out.flush().map_err(ArchiveError::io("send the archive"))?;
            Ok(digest)
        });
        match written {
            Ok(digest) => tracing::info!(snapshot = %id, sha256 = %digest, "snapshot exported"),
            Err(e) => {
                tracing::warn!(snapshot = %id, "snapshot export failed: {e}");
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let disposition = format!("attachment; filename=\"{}.sandbank-snapshot.zst\"", job.snapshot_id);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `POST /snapshots/import`: the body is an archive. 201 with the new snapshot; 400 naming
/// what is wrong with an archive it refuses (foreign, another version, truncated, corrupted,
/// made over a template or base image this server does not have).
pub async fn import(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    // The upload goes on to the engine's thread from a task of its own, which ends with it.
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let failed = chunk.is_err();
            let item =
                chunk.map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, format!("the upload broke off: {e}")));
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let backend = state.backend.clone();
    let reader = ChannelReader { rx, buf: Bytes::new() };
    let imported = tokio::task::spawn_blocking(move || backend.import_snapshot(Box::new(reader)))
        .await
        .map_err(|e| ApiError::Internal(format!("the import failed: {e}")))?
        .inspect_err(|e| tracing::warn!("snapshot import refused: {e}"))?;
    let mut response = (StatusCode::CREATED, Json(super::snapshots::body(&imported.info))).into_response();
    if let Some(v) = imported.dropped_name.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
        response.headers_mut().insert(DROPPED_NAME_HEADER, v);
    }
    Ok(response)
}

/// The response body's side of the export: each buffer written, sent (blocking).
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The request body's side of the import: its chunks, read (blocking).
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.buf = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}
