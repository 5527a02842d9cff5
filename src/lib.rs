//! The Node.js binding of sandbank. It stays thin: the SDK surface arrives with the SDK issue;
//! until then it only reports its version so the build, packaging and loading are exercised.

use napi_derive::napi;

/// The version of the native addon.
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
