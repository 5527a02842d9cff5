//! The JS SDK's `BasePaginator`, generic over a [`Listing`]: built without a request;
//! `has_next` starts true; each `next_items` fetches one page and follows its next-page token.
//! The listings themselves are in [`crate::listings`].

use crate::error::{Error, Result};
use std::future::Future;
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

/// One kind of listing: how a page is fetched.
pub trait Listing: Send + Sync + 'static {
    /// What a page yields.
    type Item;
    /// The page after `token` (the first without one): its items, and the token of the next
    /// page if there is one.
    fn fetch(&self, token: Option<String>) -> impl Future<Output = Result<(Vec<Self::Item>, Option<String>)>> + Send;
}

/// Pages of a listing. Cheap to clone (shared state).
#[derive(Debug)]
pub struct Paginator<L> {
    listing: Arc<L>,
    pages: Arc<Pages>,
}

impl<L> Clone for Paginator<L> {
    fn clone(&self) -> Self {
        Self { listing: Arc::clone(&self.listing), pages: Arc::clone(&self.pages) }
    }
}

impl<L: Listing> Paginator<L> {
    pub(crate) fn new(listing: L, next_token: Option<String>) -> Self {
        Self { listing: Arc::new(listing), pages: Arc::new(Pages::new(next_token)) }
    }

    pub fn has_next(&self) -> bool {
        self.pages.has_next()
    }

    pub fn next_token(&self) -> Option<String> {
        self.pages.next_token()
    }

    pub async fn next_items(&self) -> Result<Vec<L::Item>> {
        let token = self.pages.begin()?;
        let (items, next) = self.listing.fetch(token).await?;
        self.pages.update(next);
        Ok(items)
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
