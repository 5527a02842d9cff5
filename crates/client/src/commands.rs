//! `sandbox.commands` (`core/sandbox/commands/`): run, background handles, list, kill,
//! stdin, connect — over envd's `process.Process` service.

use crate::envd::{canceled, Envd, RpcStream, DEFAULT_STREAM_TIMEOUT_MS, ENVD_COMMANDS_STDIN};
use crate::error::{from_rpc, CommandResult, Error, Result};
use sandbank_protocol::connect::{Code, ConnectError};
use sandbank_protocol::process::{
    ConnectRequest, Empty, Event, EventResponse, Input, ListResponse, Output, ProcessConfig, ProcessInput,
    ProcessSelector, Selector, SendInputRequest, SendSignalRequest, Signal, StartRequest,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Output chunks a handle buffers for its puller before the reader waits (backpressure).
pub const OUTPUT_CHANNEL_CAPACITY: usize = 64;

/// `CommandStartOpts` (without the callbacks: pull [`CommandHandle::next_output`] instead).
#[derive(Clone, Debug, Default)]
pub struct CommandStartOpts {
    /// Default: the user's home.
    pub cwd: Option<String>,
    /// Default: envd's default user.
    pub user: Option<String>,
    pub envs: HashMap<String, String>,
    /// Keep stdin open for `send_stdin`; default false.
    pub stdin: Option<bool>,
    /// Default 60 000; 0 = no limit (`Connect-Timeout-Ms`).
    pub timeout_ms: Option<u64>,
    /// Time allowed until the start event arrives; default: the config's request timeout.
    pub request_timeout_ms: Option<u64>,
    /// Deliver output chunks through [`CommandHandle::next_output`]. Without it, output is only
    /// accumulated (`stdout()`/`stderr()`, the result).
    pub stream_output: bool,
}

/// `CommandConnectOpts`.
#[derive(Clone, Debug, Default)]
pub struct CommandConnectOpts {
    pub timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub stream_output: bool,
}

/// One chunk of output: stdout and stderr decoded as UTF-8 (sequences split across chunks are
/// kept intact), a terminal's output as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandOutput {
    Stdout(String),
    Stderr(String),
    /// Bytes a pseudo-terminal wrote (`data.pty`); not accumulated in `stdout()`.
    Pty(Vec<u8>),
}

/// `ProcessInfo` of `commands.list()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub tag: Option<String>,
    pub cmd: String,
    pub args: Vec<String>,
    pub envs: HashMap<String, String>,
    pub cwd: Option<String>,
}

/// Incremental UTF-8 decoding: complete characters out, an unfinished tail kept for the next
/// chunk, invalid bytes replaced by U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(bytes);
        let mut out = String::with_capacity(buf.len());
        let mut rest: &[u8] = &buf;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).expect("valid prefix"));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        None => {
                            self.pending = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            "\u{FFFD}".into()
        }
    }
}

#[derive(Debug, Default)]
struct HandleState {
    stdout: String,
    stderr: String,
    out_dec: Utf8Decoder,
    err_dec: Utf8Decoder,
    end: Option<(i32, Option<String>)>,
    error: Option<Error>,
}

/// `sandbox.commands`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Commands {
    envd: Envd,
}

pub(crate) fn pid_selector(pid: u32) -> Option<ProcessSelector> {
    Some(ProcessSelector { selector: Some(Selector::Pid(pid)) })
}

impl Commands {
    pub fn new(envd: Envd) -> Self {
        Self { envd }
    }

    pub(crate) fn envd(&self) -> &Envd {
        &self.envd
    }

    /// `commands.list()`.
    pub async fn list(&self, request_timeout_ms: Option<u64>) -> Result<Vec<ProcessInfo>> {
        let res: ListResponse = self
            .envd
            .unary("process.Process/List", &Empty {}, None, request_timeout_ms)
            .await
            .map_err(|e| from_rpc(&e, false))?;
        Ok(res
            .processes
            .into_iter()
            .map(|p| {
                let c = p.config.unwrap_or_default();
                ProcessInfo {
                    pid: p.pid,
                    tag: p.tag.filter(|t| !t.is_empty()),
                    cmd: c.cmd,
                    args: c.args,
                    envs: c.envs,
                    cwd: c.cwd.filter(|c| !c.is_empty()),
                }
            })
            .collect())
    }

    /// `commands.sendStdin(pid, data)`.
    pub async fn send_stdin(&self, pid: u32, data: Vec<u8>, request_timeout_ms: Option<u64>) -> Result<()> {
        self.send_input(pid, Input::Stdin(data), request_timeout_ms).await
    }

    /// `Process/SendInput`: bytes for a process's stdin or its terminal.
    pub(crate) async fn send_input(&self, pid: u32, input: Input, request_timeout_ms: Option<u64>) -> Result<()> {
        let req = SendInputRequest { process: pid_selector(pid), input: Some(ProcessInput { input: Some(input) }) };
        let _: Empty = self
            .envd
            .unary("process.Process/SendInput", &req, None, request_timeout_ms)
            .await
            .map_err(|e| from_rpc(&e, false))?;
        Ok(())
    }

    /// `commands.kill(pid)`: SIGKILL; `false` when there is no such process.
    pub async fn kill(&self, pid: u32, request_timeout_ms: Option<u64>) -> Result<bool> {
        let req = SendSignalRequest { process: pid_selector(pid), signal: Signal::Sigkill as i32 };
        match self.envd.unary::<_, Empty>("process.Process/SendSignal", &req, None, request_timeout_ms).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == Code::NotFound => Ok(false),
            Err(e) => Err(from_rpc(&e, false)),
        }
    }

    /// `commands.run(cmd)` without `background`: waits; a non-zero exit is `CommandExit`.
    pub async fn run(&self, cmd: &str, opts: CommandStartOpts) -> Result<CommandResult> {
        let opts = CommandStartOpts { stream_output: false, ..opts };
        self.start(cmd, opts).await?.wait().await
    }

    /// `commands.run(cmd, {background: true})`: returns once the process has started.
    pub async fn start(&self, cmd: &str, opts: CommandStartOpts) -> Result<CommandHandle> {
        if opts.stdin == Some(false) && !crate::api::envd_version_at_least(self.envd.version(), ENVD_COMMANDS_STDIN) {
            return Err(Error::Sandbox(format!(
                "Sandbox envd version {} can't specify stdin, it's always turned on. Please rebuild your template if you need this feature.",
                self.envd.version()
            )));
        }
        let req = StartRequest {
            process: Some(ProcessConfig {
                cmd: "/bin/bash".into(),
                args: vec!["-l".into(), "-c".into(), cmd.to_string()],
                envs: opts.envs.clone(),
                cwd: opts.cwd.clone(),
            }),
            pty: None,
            tag: None,
            stdin: Some(opts.stdin.unwrap_or(false)),
        };
        let timeout_ms = opts.timeout_ms.unwrap_or(DEFAULT_STREAM_TIMEOUT_MS);
        let envd = self.envd.clone();
        let user = opts.user.clone();
        let open = async move { envd.open_stream("process.Process/Start", &req, user.as_deref(), timeout_ms).await };
        self.begin(open, opts.request_timeout_ms, opts.stream_output).await
    }

    /// `commands.connect(pid)`: a handle on a running process (output from now on).
    pub async fn connect(&self, pid: u32, opts: CommandConnectOpts) -> Result<CommandHandle> {
        let req = ConnectRequest { process: pid_selector(pid) };
        let timeout_ms = opts.timeout_ms.unwrap_or(DEFAULT_STREAM_TIMEOUT_MS);
        let envd = self.envd.clone();
        let open = async move { envd.open_stream("process.Process/Connect", &req, None, timeout_ms).await };
        self.begin(open, opts.request_timeout_ms, opts.stream_output).await
    }

    /// Opens the stream and reads the `start` event within the request timeout, then hands the
    /// rest of the stream to a reader task.
    pub(crate) async fn begin(
        &self,
        open: impl std::future::Future<Output = Result<RpcStream, ConnectError>> + Send,
        request_timeout_ms: Option<u64>,
        stream_output: bool,
    ) -> Result<CommandHandle> {
        // connect-web sends the request on the first read: a failed request and a failed first
        // read are the same error to the SDK.
        let first = async {
            let mut stream = open.await?;
            let ev = stream.next::<EventResponse>().await?;
            Ok::<_, ConnectError>((stream, ev))
        };
        let first = match self.envd.config().request_timeout(request_timeout_ms) {
            Some(t) => tokio::time::timeout(t, first).await.unwrap_or_else(|_| Err(canceled())),
            None => first.await,
        };
        let (stream, pid) = match first {
            Err(e) if e.code == Code::Unavailable => {
                return Err(Error::SandboxNotFound("Sandbox is probably not running anymore".into()))
            }
            Err(e) => return Err(from_rpc(&e, false)),
            Ok((stream, Some(EventResponse { event: Some(pe) }))) => match pe.event {
                Some(Event::Start(s)) => (stream, s.pid),
                _ => return Err(Error::Other("Expected start event".into())),
            },
            Ok(_) => return Err(Error::Other("Expected start event".into())),
        };
        Ok(CommandHandle::spawn(pid, stream, self.clone(), stream_output))
    }
}

/// A started (or connected) process: `pid`, accumulated output, `wait`, `kill`, `disconnect`,
/// and (with `stream_output`) a pull-based stream of output chunks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CommandHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    pid: u32,
    commands: Commands,
    state: Mutex<HandleState>,
    done: watch::Receiver<bool>,
    cancel: watch::Sender<bool>,
    output: tokio::sync::Mutex<Option<mpsc::Receiver<CommandOutput>>>,
}

impl CommandHandle {
    fn spawn(pid: u32, stream: RpcStream, commands: Commands, stream_output: bool) -> Self {
        let (done_tx, done_rx) = watch::channel(false);
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (out_tx, out_rx) = if stream_output {
            let (tx, rx) = mpsc::channel(OUTPUT_CHANNEL_CAPACITY);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let inner = Arc::new(HandleInner {
            pid,
            commands,
            state: Mutex::new(HandleState::default()),
            done: done_rx,
            cancel: cancel_tx,
            output: tokio::sync::Mutex::new(out_rx),
        });
        let reader = inner.clone();
        tokio::spawn(async move {
            read_events(&reader, stream, out_tx, cancel_rx).await;
            let _ = done_tx.send(true);
        });
        CommandHandle { inner }
    }

    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.inner.state.lock().expect("handle state").stdout.clone()
    }

    pub fn stderr(&self) -> String {
        self.inner.state.lock().expect("handle state").stderr.clone()
    }

    /// `None` while running.
    pub fn exit_code(&self) -> Option<i32> {
        self.inner.state.lock().expect("handle state").end.as_ref().map(|e| e.0)
    }

    pub fn error(&self) -> Option<String> {
        self.inner.state.lock().expect("handle state").end.as_ref().and_then(|e| e.1.clone())
    }

    /// The next output chunk (only with `stream_output`); `None` at the end of the stream.
    pub async fn next_output(&self) -> Option<CommandOutput> {
        let mut rx = self.inner.output.lock().await;
        match rx.as_mut() {
            Some(r) => r.recv().await,
            None => None,
        }
    }

    /// Stops delivering output chunks (the puller is gone); output is still accumulated.
    /// Without this, a `stream_output` handle whose chunks are never pulled stalls after
    /// [`OUTPUT_CHANNEL_CAPACITY`] chunks (backpressure instead of unbounded buffering).
    pub fn close_output(&self) {
        if let Ok(mut rx) = self.inner.output.try_lock() {
            *rx = None;
        }
    }

    /// Waits for the end: the result, `CommandExit` for a non-zero exit code, the stream's
    /// error, or `Process exited without a result`.
    pub async fn wait(&self) -> Result<CommandResult> {
        let mut done = self.inner.done.clone();
        let _ = done.wait_for(|d| *d).await;
        let s = self.inner.state.lock().expect("handle state");
        if let Some(e) = &s.error {
            return Err(e.clone());
        }
        let Some((exit_code, error)) = s.end.clone() else {
            return Err(Error::Sandbox("Process exited without a result".into()));
        };
        let result = CommandResult { exit_code, error, stdout: s.stdout.clone(), stderr: s.stderr.clone() };
        if exit_code != 0 {
            return Err(Error::CommandExit(result));
        }
        Ok(result)
    }

    /// Stops receiving events; the process keeps running.
    pub fn disconnect(&self) {
        let _ = self.inner.cancel.send(true);
    }

    /// Kills the process (SIGKILL); `false` if it was already gone.
    pub async fn kill(&self) -> Result<bool> {
        self.inner.commands.kill(self.inner.pid, None).await
    }

    /// Whether the event stream has ended (process exited, error, or disconnect).
    pub fn is_finished(&self) -> bool {
        *self.inner.done.borrow()
    }
}

async fn read_events(
    inner: &HandleInner,
    mut stream: RpcStream,
    mut out: Option<mpsc::Sender<CommandOutput>>,
    mut cancel: watch::Receiver<bool>,
) {
    let aborted = |inner: &HandleInner| {
        inner.state.lock().expect("handle state").error = Some(from_rpc(&canceled(), false));
    };
    loop {
        let ev = tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => { aborted(inner); return; }
            ev = stream.next::<EventResponse>() => ev,
        };
        let event = match ev {
            Ok(Some(r)) => r.event.and_then(|e| e.event),
            Ok(None) => break,
            Err(e) => {
                inner.state.lock().expect("handle state").error = Some(from_rpc(&e, false));
                break;
            }
        };
        let chunk = match event {
            Some(Event::Data(d)) => {
                let mut s = inner.state.lock().expect("handle state");
                match d.output {
                    Some(Output::Stdout(b)) => {
                        let text = s.out_dec.push(&b);
                        s.stdout.push_str(&text);
                        Some(CommandOutput::Stdout(text))
                    }
                    Some(Output::Stderr(b)) => {
                        let text = s.err_dec.push(&b);
                        s.stderr.push_str(&text);
                        Some(CommandOutput::Stderr(text))
                    }
                    Some(Output::Pty(b)) => Some(CommandOutput::Pty(b)),
                    None => None,
                }
            }
            Some(Event::End(e)) => {
                let mut s = inner.state.lock().expect("handle state");
                let (o, er) = (s.out_dec.finish(), s.err_dec.finish());
                s.stdout.push_str(&o);
                s.stderr.push_str(&er);
                s.end = Some((e.exit_code, e.error));
                None
            }
            _ => None,
        };
        if let (Some(tx), Some(chunk)) = (out.as_ref(), chunk) {
            if chunk_is_empty(&chunk) {
                continue;
            }
            tokio::select! {
                biased;
                _ = cancel.wait_for(|c| *c) => { aborted(inner); return; }
                r = tx.send(chunk) => if r.is_err() { out = None; },
            }
        }
    }
}

fn chunk_is_empty(c: &CommandOutput) -> bool {
    match c {
        CommandOutput::Stdout(s) | CommandOutput::Stderr(s) => s.is_empty(),
        CommandOutput::Pty(b) => b.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_decoding_keeps_split_characters() {
        let mut d = Utf8Decoder::default();
        let s = "héllo €".as_bytes();
        let (a, b) = s.split_at(2); // splits 'é'
        assert_eq!(d.push(a), "h");
        assert_eq!(d.push(b), "éllo €");
        assert_eq!(d.push(&[0xff, b'a']), "\u{FFFD}a");
        assert_eq!(d.push(&[0xe2, 0x82]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
        assert_eq!(d.finish(), "");
    }
}
