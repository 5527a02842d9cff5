//! `SandboxPaginator` / `SnapshotPaginator`: `hasNext`, `nextToken`, `nextItems()`.
//!
//! `Sandbox.list()` returns at once, but with nothing configured, which server it lists is known
//! only once the local engine is found (or started): then the client's paginator is made at the
//! first `nextItems()`. With a server configured it is made at once, so its errors (a legacy
//! domain) are thrown by the call that asked for it, as in novita-sandbox.

use crate::config::{config, is_configured, opts, with_local_default, ConnectionOptions};
use crate::errors::IntoNapi;
use crate::info::{SandboxInfoJs, SnapshotInfoJs};
use napi_derive::napi;
use sandbank_client::{Api, Listing, Paginator, SandboxPaginator, Sandboxes, SnapshotPaginator, Snapshots};
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Makes the client's paginator for a control plane.
type Make<L> = Box<dyn Fn(&Api) -> sandbank_client::Result<Paginator<L>> + Send + Sync>;

/// A client paginator, made now or at the first page.
struct Pages<L> {
    made: OnceCell<Paginator<L>>,
    /// Until it is made: the caller's connection options, and how to make it.
    pending: Option<(Option<ConnectionOptions>, Make<L>)>,
    /// `nextToken` before the first page.
    first_token: Option<String>,
}

impl<L: Listing> Pages<L> {
    fn new(conn: Option<ConnectionOptions>, first_token: Option<String>, make: Make<L>) -> napi::Result<Self> {
        let given = opts(conn.clone());
        if is_configured(&given) {
            let p = make(&Api::new(config(&given)?)).napi()?;
            return Ok(Self { made: OnceCell::new_with(Some(p)), pending: None, first_token });
        }
        Ok(Self { made: OnceCell::new(), pending: Some((conn, make)), first_token })
    }

    fn ready(p: Paginator<L>) -> Self {
        let first_token = p.next_token();
        Self { made: OnceCell::new_with(Some(p)), pending: None, first_token }
    }

    async fn get(&self) -> napi::Result<&Paginator<L>> {
        self.made
            .get_or_try_init(|| async {
                let (conn, make) = self.pending.as_ref().expect("an unmade paginator keeps its recipe");
                let api = Api::new(config(&with_local_default(conn.clone()).await?)?);
                make(&api).napi()
            })
            .await
    }

    fn has_next(&self) -> bool {
        self.made.get().is_none_or(|p| p.has_next())
    }

    fn next_token(&self) -> Option<String> {
        match self.made.get() {
            Some(p) => p.next_token(),
            None => self.first_token.clone(),
        }
    }
}

#[napi(js_name = "NativeSandboxPaginator")]
pub struct JsSandboxPaginator {
    pages: Arc<Pages<Sandboxes>>,
}

impl JsSandboxPaginator {
    pub fn new(
        conn: Option<ConnectionOptions>,
        first_token: Option<String>,
        make: impl Fn(&Api) -> SandboxPaginator + Send + Sync + 'static,
    ) -> napi::Result<Self> {
        Ok(Self { pages: Arc::new(Pages::new(conn, first_token, Box::new(move |api| Ok(make(api))))?) })
    }
}

#[napi]
impl JsSandboxPaginator {
    #[napi(getter)]
    pub fn has_next(&self) -> bool {
        self.pages.has_next()
    }

    #[napi(getter)]
    pub fn next_token(&self) -> Option<String> {
        self.pages.next_token()
    }

    #[napi]
    pub async fn next_items(&self) -> napi::Result<Vec<SandboxInfoJs>> {
        let pages = self.pages.clone();
        let items = pages.get().await?.next_items().await.napi()?;
        Ok(items.into_iter().map(SandboxInfoJs::from).collect())
    }
}

#[napi(js_name = "NativeSnapshotPaginator")]
pub struct JsSnapshotPaginator {
    pages: Arc<Pages<Snapshots>>,
}

impl JsSnapshotPaginator {
    pub fn new(
        conn: Option<ConnectionOptions>,
        first_token: Option<String>,
        make: impl Fn(&Api) -> sandbank_client::Result<SnapshotPaginator> + Send + Sync + 'static,
    ) -> napi::Result<Self> {
        Ok(Self { pages: Arc::new(Pages::new(conn, first_token, Box::new(make))?) })
    }

    /// A paginator whose control plane is known (a sandbox's own listing).
    pub fn ready(p: SnapshotPaginator) -> Self {
        Self { pages: Arc::new(Pages::ready(p)) }
    }
}

#[napi]
impl JsSnapshotPaginator {
    #[napi(getter)]
    pub fn has_next(&self) -> bool {
        self.pages.has_next()
    }

    #[napi(getter)]
    pub fn next_token(&self) -> Option<String> {
        self.pages.next_token()
    }

    #[napi]
    pub async fn next_items(&self) -> napi::Result<Vec<SnapshotInfoJs>> {
        let pages = self.pages.clone();
        let items = pages.get().await?.next_items().await.napi()?;
        Ok(items.into_iter().map(SnapshotInfoJs::from).collect())
    }
}
