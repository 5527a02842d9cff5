//! `SandboxPaginator` / `SnapshotPaginator`: `hasNext`, `nextToken`, `nextItems()`.

use crate::errors::IntoNapi;
use crate::info::{SandboxInfoJs, SnapshotInfoJs};
use napi_derive::napi;
use sandbank_client::{SandboxPaginator, SnapshotPaginator};
use std::sync::Arc;

#[napi(js_name = "NativeSandboxPaginator")]
pub struct JsSandboxPaginator {
    inner: Arc<SandboxPaginator>,
}

impl JsSandboxPaginator {
    pub fn new(p: SandboxPaginator) -> Self {
        Self { inner: Arc::new(p) }
    }
}

#[napi]
impl JsSandboxPaginator {
    #[napi(getter)]
    pub fn has_next(&self) -> bool {
        self.inner.has_next()
    }

    #[napi(getter)]
    pub fn next_token(&self) -> Option<String> {
        self.inner.next_token()
    }

    #[napi]
    pub async fn next_items(&self) -> napi::Result<Vec<SandboxInfoJs>> {
        let p = self.inner.clone();
        p.next_items().await.map(|v| v.into_iter().map(SandboxInfoJs::from).collect()).napi()
    }
}

#[napi(js_name = "NativeSnapshotPaginator")]
pub struct JsSnapshotPaginator {
    inner: Arc<SnapshotPaginator>,
}

impl JsSnapshotPaginator {
    pub fn new(p: SnapshotPaginator) -> Self {
        Self { inner: Arc::new(p) }
    }
}

#[napi]
impl JsSnapshotPaginator {
    #[napi(getter)]
    pub fn has_next(&self) -> bool {
        self.inner.has_next()
    }

    #[napi(getter)]
    pub fn next_token(&self) -> Option<String> {
        self.inner.next_token()
    }

    #[napi]
    pub async fn next_items(&self) -> napi::Result<Vec<SnapshotInfoJs>> {
        let p = self.inner.clone();
        p.next_items().await.map(|v| v.into_iter().map(SnapshotInfoJs::from).collect()).napi()
    }
}
