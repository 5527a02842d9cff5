//! `sandbox.pty` (`core/sandbox/commands/pty.ts`): pseudo-terminals over envd's
//! `process.Process` service — `/bin/bash -i -l` started with a terminal size, input through
//! `SendInput` (`input.pty`), resizing through `Update`, output as raw bytes (`data.pty`).

use crate::commands::{pid_selector, CommandHandle, Commands};
use crate::envd::DEFAULT_STREAM_TIMEOUT_MS;
use crate::error::{from_rpc, Error, Result};
use sandbank_protocol::process::{
    Empty, Input, ProcessConfig, Pty as WirePty, PtySize as WireSize, StartRequest, UpdateRequest,
};
use std::collections::HashMap;

/// The largest terminal dimension (`struct winsize` holds 16-bit counts).
pub const MAX_PTY_DIMENSION: u32 = u16::MAX as u32;

/// A terminal size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtySize {
    pub cols: u32,
    pub rows: u32,
}

impl PtySize {
    /// A size from JS numbers: each must be an integer from 1 to 65535; the error names the
    /// offending field and value.
    pub fn from_numbers(cols: f64, rows: f64) -> Result<Self> {
        Ok(PtySize { cols: dimension("cols", cols)?, rows: dimension("rows", rows)? })
    }

    fn wire(self) -> WirePty {
        WirePty { size: Some(WireSize { cols: self.cols, rows: self.rows }) }
    }
}

/// JS's `String(n)` for the numbers an error message quotes.
fn js_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e21 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn dimension(name: &str, v: f64) -> Result<u32> {
    if v.is_finite() && v.fract() == 0.0 && v >= 1.0 && v <= f64::from(MAX_PTY_DIMENSION) {
        Ok(v as u32)
    } else {
        Err(Error::InvalidArgument(format!(
            "Invalid PTY size: {name} must be an integer from 1 to {MAX_PTY_DIMENSION}, got {}",
            js_number(v)
        )))
    }
}

/// `PtyCreateOpts` (without `onData`: pull [`CommandHandle::next_output`], which yields
/// [`crate::CommandOutput::Pty`] chunks).
#[derive(Clone, Debug)]
pub struct PtyCreateOpts {
    pub size: PtySize,
    /// Over the defaults `TERM=xterm-256color`, `LANG=C.UTF-8`, `LC_ALL=C.UTF-8`.
    pub envs: HashMap<String, String>,
    /// Default: the user's home.
    pub cwd: Option<String>,
    /// Default: envd's default user.
    pub user: Option<String>,
    /// Default 60 000; 0 = no limit (`Connect-Timeout-Ms`; envd ends the terminal then).
    pub timeout_ms: Option<u64>,
    /// Time allowed until the start event arrives; default: the config's request timeout.
    pub request_timeout_ms: Option<u64>,
    /// Deliver output through `next_output` (the JS `onData`); without it output is dropped.
    pub stream_output: bool,
}

/// `PtyConnectOpts`: a terminal is reattached to as a command is.
pub type PtyConnectOpts = crate::commands::CommandConnectOpts;

/// The environment a terminal gets: the caller's, over the SDK's defaults.
pub fn pty_envs(mut envs: HashMap<String, String>) -> HashMap<String, String> {
    for (k, v) in [("TERM", "xterm-256color"), ("LANG", "C.UTF-8"), ("LC_ALL", "C.UTF-8")] {
        envs.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    envs
}

/// `sandbox.pty`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Pty {
    commands: Commands,
}

impl Pty {
    pub fn new(commands: Commands) -> Self {
        Self { commands }
    }

    /// `pty.create(opts)`: starts `/bin/bash -i -l` on a new terminal; returns once it started.
    pub async fn create(&self, opts: PtyCreateOpts) -> Result<CommandHandle> {
        let req = StartRequest {
            process: Some(ProcessConfig {
                cmd: "/bin/bash".into(),
                args: vec!["-i".into(), "-l".into()],
                envs: pty_envs(opts.envs),
                cwd: opts.cwd,
            }),
            pty: Some(opts.size.wire()),
            tag: None,
            stdin: None,
        };
        let timeout_ms = opts.timeout_ms.unwrap_or(DEFAULT_STREAM_TIMEOUT_MS);
        let envd = self.commands.envd().clone();
        let user = opts.user;
        let open = async move { envd.open_stream("process.Process/Start", &req, user.as_deref(), timeout_ms).await };
        self.commands.begin(open, opts.request_timeout_ms, opts.stream_output).await
    }

    /// `pty.connect(pid, opts)`: another handle on a running terminal (output from now on).
    pub async fn connect(&self, pid: u32, opts: PtyConnectOpts) -> Result<CommandHandle> {
        self.commands.connect(pid, opts).await
    }

    /// `pty.sendInput(pid, data)`: bytes typed into the terminal.
    pub async fn send_input(&self, pid: u32, data: Vec<u8>, request_timeout_ms: Option<u64>) -> Result<()> {
        self.commands.send_input(pid, Input::Pty(data), request_timeout_ms).await
    }

    /// `pty.resize(pid, {cols, rows})` (`Process/Update`).
    pub async fn resize(&self, pid: u32, size: PtySize, request_timeout_ms: Option<u64>) -> Result<()> {
        let req = UpdateRequest { process: pid_selector(pid), pty: Some(size.wire()) };
        let _: Empty = self
            .commands
            .envd()
            .unary("process.Process/Update", &req, None, request_timeout_ms)
            .await
            .map_err(|e| from_rpc(&e, false))?;
        Ok(())
    }

    /// `pty.kill(pid)`: SIGKILL; `false` when there is no such process.
    pub async fn kill(&self, pid: u32, request_timeout_ms: Option<u64>) -> Result<bool> {
        self.commands.kill(pid, request_timeout_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbank_protocol::process::{ProcessInput, SendInputRequest};

    #[test]
    fn sizes_are_checked_and_errors_name_the_value() {
        assert_eq!(PtySize::from_numbers(80.0, 24.0).unwrap(), PtySize { cols: 80, rows: 24 });
        assert_eq!(PtySize::from_numbers(65535.0, 1.0).unwrap().cols, 65535);
        let e = PtySize::from_numbers(0.0, 24.0).unwrap_err();
        assert_eq!(e.kind(), "InvalidArgumentError");
        assert_eq!(e.to_string(), "Invalid PTY size: cols must be an integer from 1 to 65535, got 0");
        for (rows, shown) in
            [(-3.0, "-3"), (2.5, "2.5"), (f64::NAN, "NaN"), (f64::INFINITY, "Infinity"), (65536.0, "65536")]
        {
            let e = PtySize::from_numbers(80.0, rows).unwrap_err();
            assert!(e.to_string().ends_with(&format!("rows must be an integer from 1 to 65535, got {shown}")), "{e}");
        }
    }

    #[test]
    fn envs_default_to_a_utf8_xterm() {
        let e = pty_envs(HashMap::from([("TERM".to_string(), "dumb".to_string())]));
        assert_eq!(e["TERM"], "dumb");
        assert_eq!(e["LANG"], "C.UTF-8");
        assert_eq!(e["LC_ALL"], "C.UTF-8");
        assert_eq!(pty_envs(HashMap::new())["TERM"], "xterm-256color");
    }

    #[test]
    fn start_request_has_the_sdk_wire_form() {
        let req = StartRequest {
            process: Some(ProcessConfig {
                cmd: "/bin/bash".into(),
                args: vec!["-i".into(), "-l".into()],
                envs: HashMap::new(),
                cwd: None,
            }),
            pty: Some(PtySize { cols: 80, rows: 24 }.wire()),
            tag: None,
            stdin: None,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"process":{"cmd":"/bin/bash","args":["-i","-l"]},"pty":{"size":{"cols":80,"rows":24}}}"#
        );
        let up = UpdateRequest { process: pid_selector(7), pty: Some(PtySize { cols: 100, rows: 40 }.wire()) };
        assert_eq!(
            serde_json::to_string(&up).unwrap(),
            r#"{"process":{"pid":7},"pty":{"size":{"cols":100,"rows":40}}}"#
        );
        let inp = SendInputRequest {
            process: pid_selector(7),
            input: Some(ProcessInput { input: Some(Input::Pty(b"ls\n".to_vec())) }),
        };
        assert_eq!(serde_json::to_string(&inp).unwrap(), r#"{"process":{"pid":7},"input":{"pty":"bHMK"}}"#);
    }
}
