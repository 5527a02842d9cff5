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

use napi_derive::napi;

/// The version of the native addon.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
