//! `Sandbox.exportSnapshot` and `Sandbox.importSnapshot`: a snapshot as one archive file,
//! streamed to and from the server (crates/client/src/snapshot_archive.rs).

use crate::config::{resolve, ConnectionOptions};
use crate::errors::{ms, IntoNapi};
use crate::info::SnapshotInfoJs;
use crate::sandbox::JsSandbox;
use napi_derive::napi;
use sandbank_client::api::Api;
use std::path::Path;
use std::time::Duration;

fn transfer_timeout(timeout_ms: Option<f64>) -> Option<Duration> {
    ms(timeout_ms).filter(|&ms| ms > 0).map(Duration::from_millis)
}

#[napi]
impl JsSandbox {
    /// `Sandbox.exportSnapshot(id, path, opts)`: the archive's size in bytes.
    #[napi]
    pub async fn export_snapshot_to(
        snapshot_id: String,
        path: String,
        timeout_ms: Option<f64>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<f64> {
        let api = Api::new(resolve(conn).await?);
        let done = api.export_snapshot(&snapshot_id, Path::new(&path), transfer_timeout(timeout_ms)).await.napi()?;
        Ok(done.bytes as f64)
    }

    /// `Sandbox.importSnapshot(path, opts)`: the new snapshot.
    #[napi]
    pub async fn import_snapshot_from(
        path: String,
        timeout_ms: Option<f64>,
        conn: Option<ConnectionOptions>,
    ) -> napi::Result<SnapshotInfoJs> {
        let api = Api::new(resolve(conn).await?);
        let imported = api.import_snapshot(Path::new(&path), transfer_timeout(timeout_ms)).await.napi()?;
        Ok(SnapshotInfoJs::from(imported.info))
    }
}
