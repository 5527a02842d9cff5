//! `sandbox.pty`: pseudo-terminals. Output is pulled by JS (`nextOutput()` on the handle, `pty`
//! chunks), which turns it into the `onData` callback.

use crate::commands::JsCommandHandle;
use crate::errors::{ms, IntoNapi};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use sandbank_client::{Pty, PtyConnectOpts, PtyCreateOpts, PtySize};
use std::collections::HashMap;
use std::sync::Arc;

/// `PtyCreateOpts` without `onData`.
#[napi(object)]
pub struct PtyOptions {
    pub cols: f64,
    pub rows: f64,
    pub envs: Option<HashMap<String, String>>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub timeout_ms: Option<f64>,
    pub request_timeout_ms: Option<f64>,
}

#[napi(js_name = "NativePty")]
pub struct JsPty {
    inner: Arc<Pty>,
}

impl JsPty {
    pub fn new(p: Pty) -> Self {
        Self { inner: Arc::new(p) }
    }
}

#[napi]
impl JsPty {
    /// Starts a terminal; returns once it started. `stream` delivers its output (`pty` chunks).
    #[napi]
    pub async fn create(&self, opts: PtyOptions, stream: bool) -> napi::Result<JsCommandHandle> {
        let p = self.inner.clone();
        let size = PtySize::from_numbers(opts.cols, opts.rows).napi()?;
        let o = PtyCreateOpts {
            size,
            envs: opts.envs.unwrap_or_default(),
            cwd: opts.cwd,
            user: opts.user,
            timeout_ms: ms(opts.timeout_ms),
            request_timeout_ms: ms(opts.request_timeout_ms),
            stream_output: stream,
        };
        p.create(o).await.map(JsCommandHandle::new).napi()
    }

    #[napi]
    pub async fn connect(
        &self,
        pid: u32,
        timeout_ms: Option<f64>,
        request_timeout_ms: Option<f64>,
        stream: bool,
    ) -> napi::Result<JsCommandHandle> {
        let p = self.inner.clone();
        let o = PtyConnectOpts {
            timeout_ms: ms(timeout_ms),
            request_timeout_ms: ms(request_timeout_ms),
            stream_output: stream,
        };
        p.connect(pid, o).await.map(JsCommandHandle::new).napi()
    }

    #[napi]
    pub async fn send_input(&self, pid: u32, data: Buffer, request_timeout_ms: Option<f64>) -> napi::Result<()> {
        let p = self.inner.clone();
        let bytes = data.to_vec();
        p.send_input(pid, bytes, ms(request_timeout_ms)).await.napi()
    }

    #[napi]
    pub async fn resize(&self, pid: u32, cols: f64, rows: f64, request_timeout_ms: Option<f64>) -> napi::Result<()> {
        let p = self.inner.clone();
        let size = PtySize::from_numbers(cols, rows).napi()?;
        p.resize(pid, size, ms(request_timeout_ms)).await.napi()
    }

    #[napi]
    pub async fn kill(&self, pid: u32, request_timeout_ms: Option<f64>) -> napi::Result<bool> {
        let p = self.inner.clone();
        p.kill(pid, ms(request_timeout_ms)).await.napi()
    }
}
