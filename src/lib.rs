//! The Node.js binding of sandbank: a thin napi-rs layer over `sandbank-client`. Each export
//! converts its arguments, calls the client, and maps the result or the error (errors are tagged
//! `[Kind] message`; `js/errors.ts` turns them into the JS error classes). No logic lives here.

mod commands;
mod config;
mod errors;
mod files;
mod info;
mod paginator;
mod pty;
mod sandbox;
mod snapshot_archive;
// Its exports are all free functions and objects only JS uses (a test build of the addon cannot
// link against Node's symbols, so nothing there uses them).
#[cfg_attr(test, allow(dead_code))]
mod template;

use napi_derive::napi;

/// The version of the native addon.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
