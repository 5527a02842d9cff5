//! A snapshot as one archive file: `GET /snapshots/{id}/export` streamed into a file, and a
//! file streamed into `POST /snapshots/import` (sandbank's routes; the format is the server's,
//! `sandbank_engine::snapshot_archive`). Neither side holds the whole file in memory.

use crate::api::{Api, ApiResponse, SnapshotInfo};
use crate::config::header_map;
use crate::error::{from_transport, Error, Result};
use futures_util::StreamExt as _;
use reqwest::Method;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// The header in which the server names the name an imported snapshot could not keep.
pub const DROPPED_NAME_HEADER: &str = "x-sandbank-dropped-name";

/// A snapshot written to a file.
#[derive(Clone, Debug)]
pub struct ExportedSnapshot {
    pub path: PathBuf,
    pub bytes: u64,
}

/// A snapshot imported: as `GET /snapshots` lists it, and the name it could not keep (a live
/// snapshot on the server has it).
#[derive(Clone, Debug)]
pub struct ImportedSnapshot {
    pub info: SnapshotInfo,
    pub dropped_name: Option<String>,
}

impl Api {
    fn archive_request(
        &self,
        method: Method,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<reqwest::RequestBuilder> {
        let url = format!("{}{}", self.config().api_url, path);
        let mut req = self.config().http.request(method, url).headers(header_map(&self.config().api_headers())?);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        Ok(req)
    }

    /// `Sandbox.exportSnapshot(id, path)`: the snapshot's archive into `path`, streamed. The file
    /// appears whole or not at all (it is written beside, then renamed). `timeout`: the whole
    /// transfer's (`None`: none).
    pub async fn export_snapshot(
        &self,
        snapshot_id: &str,
        path: &Path,
        timeout: Option<Duration>,
    ) -> Result<ExportedSnapshot> {
        let route = format!("/snapshots/{}/export", crate::api::encode_uri_component(snapshot_id));
        let res = self.archive_request(Method::GET, &route, timeout)?.send().await.map_err(|e| from_transport(&e))?;
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            let headers = res.headers().clone();
            let body = res.bytes().await.map_err(|e| from_transport(&e))?;
            let res = ApiResponse { status, headers, body };
            if res.error().and_then(|e| e.code()) == Some(404) {
                return Err(Error::NotFound(format!("Snapshot {snapshot_id} not found")));
            }
            res.check()?;
            return Err(Error::Sandbox(format!("{status}: unexpected answer to the export")));
        }
        let partial = partial_path(path);
        let written = async {
            let mut file = tokio::fs::File::create(&partial).await?;
            let mut body = res.bytes_stream();
            let mut bytes = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| std::io::Error::other(from_transport(&e).to_string()))?;
                bytes += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            tokio::fs::rename(&partial, path).await?;
            Ok::<_, std::io::Error>(bytes)
        }
        .await;
        match written {
            Ok(bytes) => Ok(ExportedSnapshot { path: path.to_path_buf(), bytes }),
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(Error::Other(format!("exporting snapshot {snapshot_id} to {}: {e}", path.display())))
            }
        }
    }

    /// `Sandbox.importSnapshot(path)`: the archive at `path`, streamed to the server, which
    /// checks it whole before it publishes anything. A refused archive is a `Sandbox` error
    /// (`400: the snapshot archive is truncated: …`).
    pub async fn import_snapshot(&self, path: &Path, timeout: Option<Duration>) -> Result<ImportedSnapshot> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", path.display())))?;
        let len = file.metadata().await.map(|m| m.len()).ok();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10));
        let mut req = self
            .archive_request(Method::POST, "/snapshots/import", timeout)?
            .header(reqwest::header::CONTENT_TYPE, "application/zstd")
            .body(body);
        if let Some(len) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let res = req.send().await.map_err(|e| from_transport(&e))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.map_err(|e| from_transport(&e))?;
        let res = ApiResponse { status, headers, body };
        res.check()?;
        let dropped_name = res.headers.get(DROPPED_NAME_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(ImportedSnapshot { info: res.json("import snapshot")?, dropped_name })
    }
}

/// Where an export writes until it is complete: beside `path`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}
