//! `sandbox.commands` and command handles. Output is pulled by JS (`nextOutput()`), which
//! turns it into the `onStdout`/`onStderr` callbacks.

use crate::errors::{ms, IntoNapi};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use sandbank_client::{CommandConnectOpts, CommandHandle, CommandOutput, CommandResult, CommandStartOpts, Commands};
use std::collections::HashMap;
use std::sync::Arc;

#[napi(object)]
#[derive(Default)]
pub struct CommandOptions {
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub envs: Option<HashMap<String, String>>,
    pub stdin: Option<bool>,
    pub timeout_ms: Option<f64>,
    pub request_timeout_ms: Option<f64>,
}

#[napi(object)]
pub struct CommandResultJs {
    pub exit_code: i32,
    pub error: Option<String>,
    pub stdout: String,
    pub stderr: String,
}

impl From<CommandResult> for CommandResultJs {
    fn from(r: CommandResult) -> Self {
        CommandResultJs { exit_code: r.exit_code, error: r.error, stdout: r.stdout, stderr: r.stderr }
    }
}

#[napi(object)]
pub struct ProcessInfoJs {
    pub pid: u32,
    pub tag: Option<String>,
    pub cmd: String,
    pub args: Vec<String>,
    pub envs: HashMap<String, String>,
    pub cwd: Option<String>,
}

/// One output chunk: exactly one of the three is set.
#[napi(object)]
pub struct OutputChunk {
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// A terminal's bytes.
    pub pty: Option<Buffer>,
}

fn start_opts(o: Option<CommandOptions>, stream_output: bool) -> CommandStartOpts {
    let o = o.unwrap_or_default();
    CommandStartOpts {
        cwd: o.cwd,
        user: o.user,
        envs: o.envs.unwrap_or_default(),
        stdin: o.stdin,
        timeout_ms: ms(o.timeout_ms),
        request_timeout_ms: ms(o.request_timeout_ms),
        stream_output,
    }
}

#[napi(js_name = "NativeCommands")]
pub struct JsCommands {
    inner: Arc<Commands>,
}

impl JsCommands {
    pub fn new(c: Commands) -> Self {
        Self { inner: Arc::new(c) }
    }
}

#[napi]
impl JsCommands {
    /// Runs to the end; a non-zero exit rejects with `[CommandExitError] <result JSON>`.
    #[napi]
    pub async fn run(&self, cmd: String, opts: Option<CommandOptions>) -> napi::Result<CommandResultJs> {
        let c = self.inner.clone();
        c.run(&cmd, start_opts(opts, false)).await.map(CommandResultJs::from).napi()
    }

    /// Starts and returns once the process has started; `stream` delivers output chunks.
    #[napi]
    pub async fn start(
        &self,
        cmd: String,
        opts: Option<CommandOptions>,
        stream: bool,
    ) -> napi::Result<JsCommandHandle> {
        let c = self.inner.clone();
        c.start(&cmd, start_opts(opts, stream)).await.map(JsCommandHandle::new).napi()
    }

    #[napi]
    pub async fn connect(
        &self,
        pid: u32,
        timeout_ms: Option<f64>,
        request_timeout_ms: Option<f64>,
        stream: bool,
    ) -> napi::Result<JsCommandHandle> {
        let c = self.inner.clone();
        let o = CommandConnectOpts {
            timeout_ms: ms(timeout_ms),
            request_timeout_ms: ms(request_timeout_ms),
            stream_output: stream,
        };
        c.connect(pid, o).await.map(JsCommandHandle::new).napi()
    }

    #[napi]
    pub async fn list(&self, request_timeout_ms: Option<f64>) -> napi::Result<Vec<ProcessInfoJs>> {
        let c = self.inner.clone();
        let list = c.list(ms(request_timeout_ms)).await.napi()?;
        Ok(list
            .into_iter()
            .map(|p| ProcessInfoJs { pid: p.pid, tag: p.tag, cmd: p.cmd, args: p.args, envs: p.envs, cwd: p.cwd })
            .collect())
    }

    #[napi]
    pub async fn kill(&self, pid: u32, request_timeout_ms: Option<f64>) -> napi::Result<bool> {
        let c = self.inner.clone();
        c.kill(pid, ms(request_timeout_ms)).await.napi()
    }

    #[napi]
    pub async fn send_stdin(&self, pid: u32, data: Buffer, request_timeout_ms: Option<f64>) -> napi::Result<()> {
        let c = self.inner.clone();
        let bytes = data.to_vec();
        c.send_stdin(pid, bytes, ms(request_timeout_ms)).await.napi()
    }
}

#[napi(js_name = "NativeCommandHandle")]
pub struct JsCommandHandle {
    inner: Arc<CommandHandle>,
}

impl JsCommandHandle {
    pub fn new(h: CommandHandle) -> Self {
        Self { inner: Arc::new(h) }
    }
}

#[napi]
impl JsCommandHandle {
    #[napi(getter)]
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    #[napi(getter)]
    pub fn stdout(&self) -> String {
        self.inner.stdout()
    }

    #[napi(getter)]
    pub fn stderr(&self) -> String {
        self.inner.stderr()
    }

    #[napi(getter)]
    pub fn exit_code(&self) -> Option<i32> {
        self.inner.exit_code()
    }

    #[napi(getter)]
    pub fn error(&self) -> Option<String> {
        self.inner.error()
    }

    /// The next output chunk; `null` once the stream has ended.
    #[napi]
    pub async fn next_output(&self) -> Option<OutputChunk> {
        let h = self.inner.clone();
        h.next_output().await.map(|c| match c {
            CommandOutput::Stdout(s) => OutputChunk { stdout: Some(s), stderr: None, pty: None },
            CommandOutput::Stderr(s) => OutputChunk { stdout: None, stderr: Some(s), pty: None },
            CommandOutput::Pty(b) => OutputChunk { stdout: None, stderr: None, pty: Some(Buffer::from(b)) },
        })
    }

    #[napi]
    pub async fn wait(&self) -> napi::Result<CommandResultJs> {
        let h = self.inner.clone();
        h.wait().await.map(CommandResultJs::from).napi()
    }

    #[napi]
    pub fn disconnect(&self) {
        self.inner.disconnect()
    }

    #[napi]
    pub async fn kill(&self) -> napi::Result<bool> {
        let h = self.inner.clone();
        h.kill().await.napi()
    }
}
