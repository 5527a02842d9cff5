//! Client errors → JS rejections tagged `[Kind] message` (the JS layer builds the classes).
//! A `CommandExitError` carries its result as JSON after the tag, a `BuildError` its failure
//! (message, step, the step's log).

use napi::{Error, Status};
use sandbank_client::Error as ClientError;

pub fn to_napi(e: ClientError) -> Error {
    Error::new(Status::GenericFailure, tagged(&e))
}

/// `[Kind] message`: what a rejection's message says, for errors handed over as values (a fork's
/// copy that did not start).
pub fn tagged(e: &ClientError) -> String {
    let message = match e {
        ClientError::CommandExit(r) => serde_json::to_string(r).unwrap_or_default(),
        ClientError::Build(f) => serde_json::to_string(f).unwrap_or_default(),
        other => other.message(),
    };
    format!("[{}] {}", e.kind(), message)
}

/// `.napi()` on client results.
pub trait IntoNapi<T> {
    fn napi(self) -> napi::Result<T>;
}

impl<T> IntoNapi<T> for Result<T, ClientError> {
    fn napi(self) -> napi::Result<T> {
        self.map_err(to_napi)
    }
}

/// Milliseconds from JS (numbers are f64) → u64; negative or NaN → 0.
pub fn ms(v: Option<f64>) -> Option<u64> {
    v.map(|x| if x.is_finite() && x > 0.0 { x.ceil() as u64 } else { 0 })
}

/// `diskSizeMB` from JS: a whole number of MB, at least 1; else an `InvalidArgumentError`
/// naming it.
pub fn disk_size_mb(mb: f64) -> napi::Result<u64> {
    if mb.is_finite() && mb >= 1.0 && mb.fract() == 0.0 && mb <= u64::MAX as f64 {
        return Ok(mb as u64);
    }
    Err(to_napi(ClientError::InvalidArgument(format!("diskSizeMB must be a whole number of MB, at least 1: got {mb}"))))
}
