//! `SandboxPaginator` and `SnapshotPaginator` (`BasePaginator` of the JS SDK), one generic
//! [`Paginator`] over a [`Listing`]: built without a request; `has_next` starts true; each `next_items` fetches one page and follows `x-next-token`.

use crate::api::{
    sandbox_list_query, snapshot_list_query, Api, SandboxInfo, SandboxListOpts, SnapshotInfo, SnapshotListOpts,
};
use crate::error::{Error, Result};
use reqwest::Method;
use sandbank_protocol::rest;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct PageState {
    has_next: bool,
    next_token: Option<String>,
}

#[derive(Debug)]
struct Pages {
    state: Mutex<PageState>,
}

impl Pages {
    fn new(next_token: Option<String>) -> Self {
        Self { state: Mutex::new(PageState { has_next: true, next_token }) }
    }

    fn has_next(&self) -> bool {
        self.state.lock().expect("page state").has_next
    }

    fn next_token(&self) -> Option<String> {
        self.state.lock().expect("page state").next_token.clone()
    }

    /// The token to send, or the JS SDK's error once past the end.
    fn begin(&self) -> Result<Option<String>> {
        let s = self.state.lock().expect("page state");
        if !s.has_next {
            return Err(Error::Other("No more items to fetch".into()));
        }
        Ok(s.next_token.clone())
    }

    fn update(&self, token: Option<String>) {
        let mut s = self.state.lock().expect("page state");
        s.has_next = token.is_some();
        s.next_token = token;
    }
}

/// One kind of listing: where its pages come from and what their items are.
pub trait Listing: Send + Sync + 'static {
    /// What a page yields.
    type Item;
    /// The item as the server sends it.
    type Wire: serde::de::DeserializeOwned;
    /// The path of the list endpoint.
    const PATH: &'static str;
    /// For error messages: `"list sandboxes"`.
    const WHAT: &'static str;
    /// The query string for the page after `token`.
    fn query(&self, token: Option<&str>) -> String;
    /// The items of one page, from the response body.
    fn items(body: Option<Vec<Self::Wire>>) -> Vec<Self::Item>;
}

impl Listing for SandboxListOpts {
    type Item = SandboxInfo;
    type Wire = rest::ListedSandbox;
    const PATH: &'static str = "/v2/sandboxes";
    const WHAT: &'static str = "list sandboxes";
    fn query(&self, token: Option<&str>) -> String {
        sandbox_list_query(self.metadata.as_deref(), self.state.as_deref(), self.limit, token)
    }
    fn items(body: Option<Vec<rest::ListedSandbox>>) -> Vec<SandboxInfo> {
        body.unwrap_or_default().into_iter().map(SandboxInfo::from).collect()
    }
}

impl Listing for SnapshotListOpts {
    type Item = SnapshotInfo;
    type Wire = SnapshotInfo;
    const PATH: &'static str = "/snapshots";
    const WHAT: &'static str = "list snapshots";
    fn query(&self, token: Option<&str>) -> String {
        snapshot_list_query(self.sandbox_id.as_deref(), self.limit, token)
    }
    fn items(body: Option<Vec<SnapshotInfo>>) -> Vec<SnapshotInfo> {
        body.unwrap_or_default()
    }
}

/// Pages of a listing. Cheap to clone (shared state).
#[derive(Debug)]
pub struct Paginator<L: Listing> {
    api: Api,
    opts: Arc<L>,
    pages: Arc<Pages>,
}

impl<L: Listing> Clone for Paginator<L> {
    fn clone(&self) -> Self {
        Self { api: self.api.clone(), opts: Arc::clone(&self.opts), pages: Arc::clone(&self.pages) }
    }
}

/// Pages of [`SandboxInfo`] from `GET /v2/sandboxes`.
pub type SandboxPaginator = Paginator<SandboxListOpts>;
/// Pages of [`SnapshotInfo`] from `GET /snapshots`.
pub type SnapshotPaginator = Paginator<SnapshotListOpts>;

impl<L: Listing> Paginator<L> {
    pub(crate) fn new(api: Api, opts: L, next_token: Option<String>) -> Self {
        Self { api, opts: Arc::new(opts), pages: Arc::new(Pages::new(next_token)) }
    }

    pub fn has_next(&self) -> bool {
        self.pages.has_next()
    }

    pub fn next_token(&self) -> Option<String> {
        self.pages.next_token()
    }

    pub async fn next_items(&self) -> Result<Vec<L::Item>> {
        let token = self.pages.begin()?;
        let query = self.opts.query(token.as_deref());
        let res = self.api.send(Method::GET, L::PATH, &query, None).await?;
        res.check()?;
        self.pages.update(res.next_token());
        if res.body.is_empty() {
            return Ok(Vec::new());
        }
        Ok(L::items(res.json(L::WHAT)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_state_follows_the_token() {
        let p = Pages::new(None);
        assert!(p.has_next());
        assert_eq!(p.begin().unwrap(), None);
        p.update(Some("tok2".into()));
        assert!(p.has_next());
        assert_eq!(p.begin().unwrap().as_deref(), Some("tok2"));
        p.update(None);
        assert!(!p.has_next());
        assert_eq!(p.next_token(), None);
        assert_eq!(p.begin().unwrap_err(), Error::Other("No more items to fetch".into()));
        let p = Pages::new(Some("start".into()));
        assert_eq!(p.next_token().as_deref(), Some("start"));
    }
}
