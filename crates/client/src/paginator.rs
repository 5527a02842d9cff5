//! `SandboxPaginator` and `SnapshotPaginator` (`BasePaginator` of the JS SDK): built without a
//! request; `has_next` starts true; each `next_items` fetches one page and follows `x-next-token`.

use crate::api::{
    sandbox_list_query, snapshot_list_query, Api, SandboxInfo, SandboxListOpts, SnapshotInfo,
    SnapshotListOpts,
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
        Self {
            state: Mutex::new(PageState {
                has_next: true,
                next_token,
            }),
        }
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

/// Pages of [`SandboxInfo`] from `GET /v2/sandboxes`. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct SandboxPaginator {
    api: Api,
    opts: Arc<SandboxListOpts>,
    pages: Arc<Pages>,
}

impl SandboxPaginator {
    pub(crate) fn new(api: Api, opts: SandboxListOpts) -> Self {
        let pages = Arc::new(Pages::new(opts.next_token.clone()));
        Self {
            api,
            opts: Arc::new(opts),
            pages,
        }
    }

    pub fn has_next(&self) -> bool {
        self.pages.has_next()
    }

    pub fn next_token(&self) -> Option<String> {
        self.pages.next_token()
    }

    pub async fn next_items(&self) -> Result<Vec<SandboxInfo>> {
        let token = self.pages.begin()?;
        let query = sandbox_list_query(
            self.opts.metadata.as_deref(),
            self.opts.state.as_deref(),
            self.opts.limit,
            token.as_deref(),
        );
        let res = self
            .api
            .send(Method::GET, "/v2/sandboxes", &query, None)
            .await?;
        res.check()?;
        self.pages.update(res.next_token());
        if res.body.is_empty() {
            return Ok(Vec::new());
        }
        let items: Option<Vec<rest::ListedSandbox>> = res.json("list sandboxes")?;
        Ok(items
            .unwrap_or_default()
            .into_iter()
            .map(SandboxInfo::from)
            .collect())
    }
}

/// Pages of [`SnapshotInfo`] from `GET /snapshots`. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct SnapshotPaginator {
    api: Api,
    opts: Arc<SnapshotListOpts>,
    pages: Arc<Pages>,
}

impl SnapshotPaginator {
    pub(crate) fn new(api: Api, opts: SnapshotListOpts) -> Self {
        let pages = Arc::new(Pages::new(opts.next_token.clone()));
        Self {
            api,
            opts: Arc::new(opts),
            pages,
        }
    }

    pub fn has_next(&self) -> bool {
        self.pages.has_next()
    }

    pub fn next_token(&self) -> Option<String> {
        self.pages.next_token()
    }

    pub async fn next_items(&self) -> Result<Vec<SnapshotInfo>> {
        let token = self.pages.begin()?;
        let query = snapshot_list_query(
            self.opts.sandbox_id.as_deref(),
            self.opts.limit,
            token.as_deref(),
        );
        let res = self
            .api
            .send(Method::GET, "/snapshots", &query, None)
            .await?;
        res.check()?;
        self.pages.update(res.next_token());
        if res.body.is_empty() {
            return Ok(Vec::new());
        }
        let items: Option<Vec<SnapshotInfo>> = res.json("list snapshots")?;
        Ok(items.unwrap_or_default())
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
        assert_eq!(
            p.begin().unwrap_err(),
            Error::Other("No more items to fetch".into())
        );
        let p = Pages::new(Some("start".into()));
        assert_eq!(p.next_token().as_deref(), Some("start"));
    }
}
