//! The control plane's two listings as paginators: `Sandbox.list` (`GET /v2/sandboxes`) and
//! `Sandbox.listSnapshots` (`GET /snapshots`), both following `x-next-token`.

use crate::api::{
    sandbox_list_query, snapshot_list_query, Api, SandboxInfo, SandboxListOpts, SnapshotInfo, SnapshotListOpts,
};
use crate::error::Result;
use crate::paginator::{Listing, Paginator};
use reqwest::Method;
use sandbank_protocol::rest;

/// Pages of [`SandboxInfo`] from `GET /v2/sandboxes`.
pub type SandboxPaginator = Paginator<Sandboxes>;
/// Pages of [`SnapshotInfo`] from `GET /snapshots`.
pub type SnapshotPaginator = Paginator<Snapshots>;

#[derive(Debug)]
pub struct Sandboxes {
    api: Api,
    opts: SandboxListOpts,
}

#[derive(Debug)]
pub struct Snapshots {
    api: Api,
    opts: SnapshotListOpts,
}

impl Api {
    /// `Sandbox.list`: a paginator; no request until `next_items`.
    pub fn list(&self, opts: SandboxListOpts) -> SandboxPaginator {
        let token = opts.next_token.clone();
        Paginator::new(Sandboxes { api: self.clone(), opts }, token)
    }

    /// `Sandbox.listSnapshots`: a paginator over `GET /snapshots`.
    pub fn list_snapshots(&self, opts: SnapshotListOpts) -> Result<SnapshotPaginator> {
        self.refuse_legacy("Sandbox.listSnapshots")?;
        let token = opts.next_token.clone();
        Ok(Paginator::new(Snapshots { api: self.clone(), opts }, token))
    }

    /// One page of a list endpoint: its items (none for an empty body) and the next token.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &str,
        what: &str,
    ) -> Result<(Option<Vec<T>>, Option<String>)> {
        let res = self.send(Method::GET, path, query, None).await?;
        res.check()?;
        let next = res.next_token();
        if res.body.is_empty() {
            return Ok((None, next));
        }
        Ok((res.json(what)?, next))
    }
}

impl Listing for Sandboxes {
    type Item = SandboxInfo;
    async fn fetch(&self, token: Option<String>) -> Result<(Vec<SandboxInfo>, Option<String>)> {
        let o = &self.opts;
        let query = sandbox_list_query(o.metadata.as_deref(), o.state.as_deref(), o.limit, token.as_deref());
        let (items, next) = self.api.page::<rest::ListedSandbox>("/v2/sandboxes", &query, "list sandboxes").await?;
        Ok((items.unwrap_or_default().into_iter().map(SandboxInfo::from).collect(), next))
    }
}

impl Listing for Snapshots {
    type Item = SnapshotInfo;
    async fn fetch(&self, token: Option<String>) -> Result<(Vec<SnapshotInfo>, Option<String>)> {
        let query = snapshot_list_query(&self.opts, token.as_deref());
        let (items, next) = self.api.page::<SnapshotInfo>("/snapshots", &query, "list snapshots").await?;
        Ok((items.unwrap_or_default(), next))
    }
}
