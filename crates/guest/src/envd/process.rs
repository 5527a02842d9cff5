//! The `process.Process` service: starts commands as a user, streams their output to every
//! attached stream (Start and Connect), takes stdin and signals.
//!
//! Each process has one pump task that reads stdout and stderr and sends each chunk to every
//! attached stream through a bounded channel, waiting for room (backpressure: a slow client
//! slows the process down, memory stays bounded). A stream whose client went away is dropped
//! from the list; the process keeps running.

use super::connect::{self, Codec};
use super::pty;
use super::reaper::{status_text, Reaper};
use super::users::{self, User};
use super::Shared;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use sandbank_protocol::connect::{end_stream_envelope, Code, ConnectError};
use sandbank_protocol::process::*;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// `PATH` of started processes (the sandbox env vars or the request may override it).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Default `Keepalive-Ping-Interval`, seconds.
const DEFAULT_KEEPALIVE_SECS: u64 = 50;
/// Events buffered per attached stream before the pump waits.
const STREAM_BUFFER: usize = 16;
/// Size of one output read, so of one data event at most.
const READ_CHUNK: usize = 32 * 1024;
/// After the process exited, how long its pipes may stay silent before the stream ends anyway
/// (a background descendant may hold them open forever).
const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// The most chunks taken from each pipe at the end of a drain (a descendant may keep writing).
const DRAIN_CHUNKS: usize = 64;

pub struct Table {
    reaper: Arc<Reaper>,
    procs: Mutex<HashMap<u32, Arc<Proc>>>,
}

struct Proc {
    pid: u32,
    tag: Option<String>,
    config: ProcessConfig,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    /// The terminal of a PTY process.
    pty: Option<Arc<pty::Master>>,
    /// Attached streams; `None` once the end event was sent.
    subscribers: Mutex<Option<Vec<mpsc::Sender<Event>>>>,
    exited: AtomicBool,
}

impl Proc {
    /// Signals the process group, unless the process is already gone (its pid may be reused).
    fn signal_group(&self, sig: i32) -> Result<(), ConnectError> {
        if self.exited.load(Ordering::SeqCst) {
            return Ok(());
        }
        let signal = nix::sys::signal::Signal::try_from(sig)
            .map_err(|e| ConnectError::new(Code::Internal, format!("signal {sig}: {e}")))?;
        match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(err) => Err(ConnectError::new(Code::Internal, format!("signalling process {}: {err}", self.pid))),
        }
    }

    /// Attaches a new stream; its first event is `start`. `None` if the process has ended.
    fn attach(&self) -> Option<mpsc::Receiver<Event>> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tx.try_send(Event::Start(StartEvent { pid: self.pid })).ok()?;
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.as_mut()?.push(tx);
        Some(rx)
    }

    /// Sends `event` to every attached stream, dropping those whose client went away.
    async fn broadcast(&self, event: Event) {
        let subs: Vec<mpsc::Sender<Event>> = match &*self.subscribers.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(subs) => subs.clone(),
            None => return,
        };
        let mut gone = false;
        for s in &subs {
            if s.send(event.clone()).await.is_err() {
                gone = true;
            }
        }
        if gone {
            if let Some(subs) = &mut *self.subscribers.lock().unwrap_or_else(|e| e.into_inner()) {
                subs.retain(|s| !s.is_closed());
            }
        }
    }

    fn info(&self) -> ProcessInfo {
        ProcessInfo { config: Some(self.config.clone()), pid: self.pid, tag: self.tag.clone() }
    }
}

impl Table {
    pub fn new(reaper: Arc<Reaper>) -> Self {
        Self { reaper, procs: Mutex::new(HashMap::new()) }
    }

    fn find(&self, selector: Option<&ProcessSelector>) -> Result<Arc<Proc>, ConnectError> {
        let selector = selector
            .and_then(|s| s.selector.as_ref())
            .ok_or_else(|| ConnectError::new(Code::InvalidArgument, "process selector (pid or tag) is required"))?;
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let found = match selector {
            Selector::Pid(pid) => procs.get(pid).cloned(),
            Selector::Tag(tag) => procs.values().find(|p| p.tag.as_deref() == Some(tag.as_str())).cloned(),
        };
        found.ok_or_else(|| {
            let what = match selector {
                Selector::Pid(pid) => format!("process with pid {pid} not found"),
                Selector::Tag(tag) => format!("process with tag {tag:?} not found"),
            };
            ConnectError::new(Code::NotFound, what)
        })
    }
}

pub(super) fn keepalive_interval(headers: &HeaderMap) -> Duration {
    let secs = headers
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_KEEPALIVE_SECS);
    Duration::from_secs(secs)
}

pub(super) fn deadline(headers: &HeaderMap) -> Option<Instant> {
    let ms = headers.get("connect-timeout-ms")?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Instant::now() + Duration::from_millis(ms))
}

/// The environment of a started process: the user's basics, then the sandbox's env vars, then
/// the request's.
fn environment(
    user: &User,
    sandbox: &std::collections::BTreeMap<String, String>,
    request: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), user.home.to_string_lossy().into_owned()),
        ("USER".into(), user.name.clone()),
        ("LOGNAME".into(), user.name.clone()),
        ("SHELL".into(), user.shell.clone()),
        ("PATH".into(), DEFAULT_PATH.into()),
    ];
    let mut set = |k: &String, v: &String| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(e) => e.1 = v.clone(),
        None => env.push((k.clone(), v.clone())),
    };
    for (k, v) in sandbox {
        set(k, v);
    }
    let mut req: Vec<_> = request.iter().collect();
    req.sort();
    for (k, v) in req {
        set(k, v);
    }
    env
}

fn spawn_error(cmd: &str, e: std::io::Error) -> ConnectError {
    let code = match e.kind() {
        // InvalidInput: a NUL in the command, an argument or an env var (the request's fault).
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput => {
            Code::InvalidArgument
        }
        _ => Code::Internal,
    };
    ConnectError::new(code, format!("error starting process {cmd:?}: {e}"))
}

/// Starts the process and registers it; returns it with the receiver of its first stream.
fn launch(envd: &Shared, req: StartRequest, user: &User) -> Result<(Arc<Proc>, mpsc::Receiver<Event>), ConnectError> {
    let config = req.process.unwrap_or_default();
    if config.cmd.is_empty() {
        return Err(ConnectError::new(Code::InvalidArgument, "process.cmd is required"));
    }
    // The sandbox's working directory (a template's last WORKDIR), else the user's home; a
    // relative `cwd` is under the home, as envd resolves paths.
    let cwd = match config.cwd.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => super::fsutil::resolve(c, &user.home)
            .map_err(|m| ConnectError::new(Code::InvalidArgument, format!("cwd: {m}")))?,
        None => envd.opts.default_workdir.clone().unwrap_or_else(|| user.home.clone()),
    };
    if !cwd.is_dir() {
        return Err(ConnectError::new(
            Code::InvalidArgument,
            format!("cwd {:?} does not exist or is not a directory", cwd.display().to_string()),
        ));
    }
    let mut env = environment(user, &envd.opts.env_vars, &config.envs);
    let mut cmd = std::process::Command::new(&config.cmd);
    cmd.args(&config.args).current_dir(&cwd);
    let mut steps = crate::sys::CommandChild::default();
    let master = match req.pty {
        Some(p) => {
            // The child gets the slave as its controlling terminal in a new session.
            let size = p.size.unwrap_or_default();
            let (master, slave) = pty::open(size.cols, size.rows)
                .map_err(|e| ConnectError::new(Code::Internal, format!("opening a pseudo-terminal: {e}")))?;
            let dup = |fd: &OwnedFd| {
                fd.try_clone().map_err(|e| ConnectError::new(Code::Internal, format!("duplicating the terminal: {e}")))
            };
            cmd.stdin(Stdio::from(dup(&slave)?)).stdout(Stdio::from(dup(&slave)?)).stderr(Stdio::from(slave));
            steps.terminal = true;
            if !env.iter().any(|(k, _)| k == "TERM") {
                env.push(("TERM".into(), "xterm-256color".into()));
            }
            Some(Arc::new(master))
        }
        None => {
            cmd.stdin(if req.stdin == Some(true) { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            None
        }
    };
    cmd.env_clear().envs(env);
    let euid = rustix::process::geteuid().as_raw();
    if euid == 0 {
        steps.user = Some((user.uid, user.gid, user.groups.clone()));
    } else if euid != user.uid {
        return Err(ConnectError::new(
            Code::PermissionDenied,
            format!("envd runs as uid {euid} and cannot start processes as user {:?}", user.name),
        ));
    }
    crate::sys::command_child(&mut cmd, steps);

    let (mut child, exit) = envd.processes.reaper.spawn(&mut cmd).map_err(|e| spawn_error(&config.cmd, e))?;
    let pid = child.id();
    let to_rx = |fd: Option<OwnedFd>| fd.and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok());
    let stdout = to_rx(child.stdout.take().map(OwnedFd::from));
    let stderr = to_rx(child.stderr.take().map(OwnedFd::from));
    let stdin = child.stdin.take().and_then(|s| pipe::Sender::from_owned_fd(OwnedFd::from(s)).ok());
    drop(child); // never waited on: the reaper owns the exit status
    drop(cmd); // closes the parent's copies of the terminal's slave side

    let proc = Arc::new(Proc {
        pid,
        tag: req.tag,
        config,
        stdin: tokio::sync::Mutex::new(stdin),
        pty: master.clone(),
        subscribers: Mutex::new(Some(Vec::new())),
        exited: AtomicBool::new(false),
    });
    let rx = proc.attach().expect("a new process accepts streams");
    envd.processes.procs.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, proc.clone());
    tokio::spawn(pump(envd.clone(), proc.clone(), stdout, stderr, master, exit));
    Ok((proc, rx))
}

/// What is in a pipe now, without waiting: at most `limit` chunks, read straight from the
/// (non-blocking) descriptor. tokio only knows a pipe is readable once its reactor has run.
fn read_now(pipe: &impl std::os::fd::AsFd, buf: &mut [u8], limit: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < limit {
        match nix::unistd::read(pipe, buf) {
            Ok(n) if n > 0 => out.push(buf[..n].to_vec()),
            Err(nix::errno::Errno::EINTR) => continue,
            _ => break, // end of file, EAGAIN (nothing more now) or an error
        }
    }
    out
}

/// Reads the process's output until it exited and its pipes are drained, then sends `end`.
async fn pump(
    envd: Shared,
    proc: Arc<Proc>,
    mut stdout: Option<pipe::Receiver>,
    mut stderr: Option<pipe::Receiver>,
    mut pty: Option<Arc<pty::Master>>,
    mut exit: oneshot::Receiver<ExitStatus>,
) {
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];
    let mut pty_buf = vec![0u8; READ_CHUNK];
    let mut status: Option<ExitStatus> = None;
    let mut exit_done = false;
    loop {
        if stdout.is_none() && stderr.is_none() && pty.is_none() && status.is_some() {
            break;
        }
        if exit_done && status.is_none() {
            break; // the reaper lost the child; end without a status
        }
        let drain_timer =
            tokio::time::sleep(if status.is_some() { DRAIN_IDLE } else { Duration::from_secs(86400 * 365) });
        // Biased: output that is ready is always read before the drain timer may end the stream
        // (polled at random, a starved thread could let the timer win over the last output).
        tokio::select! {
            biased;
            s = &mut exit, if !exit_done => {
                exit_done = true;
                if let Ok(s) = s {
                    proc.exited.store(true, Ordering::SeqCst);
                    status = Some(s);
                }
            }
            r = async { stdout.as_mut().unwrap().read(&mut out_buf).await }, if stdout.is_some() => match r {
                Ok(n) if n > 0 => proc.broadcast(Event::Data(DataEvent { output: Some(Output::Stdout(out_buf[..n].to_vec())) })).await,
                _ => stdout = None,
            },
            r = async { stderr.as_mut().unwrap().read(&mut err_buf).await }, if stderr.is_some() => match r {
                Ok(n) if n > 0 => proc.broadcast(Event::Data(DataEvent { output: Some(Output::Stderr(err_buf[..n].to_vec())) })).await,
                _ => stderr = None,
            },
            r = async { pty.as_ref().unwrap().read(&mut pty_buf).await }, if pty.is_some() => match r {
                Ok(n) if n > 0 => proc.broadcast(Event::Data(DataEvent { output: Some(Output::Pty(pty_buf[..n].to_vec())) })).await,
                _ => pty = None,
            },
            _ = drain_timer => {
                // Silent for DRAIN_IDLE by the clock. Whatever the process wrote before it exited
                // is in the pipes even if this (starved) thread's reactor has not noticed yet:
                // take it before ending (found by bench/load.mjs: a stream ended without its
                // output under load).
                for (pipe, buf, wrap) in [
                    (&stdout, &mut out_buf, Output::Stdout as fn(Vec<u8>) -> Output),
                    (&stderr, &mut err_buf, Output::Stderr),
                ] {
                    for chunk in pipe.as_ref().map(|p| read_now(p, buf, DRAIN_CHUNKS)).unwrap_or_default() {
                        proc.broadcast(Event::Data(DataEvent { output: Some(wrap(chunk)) })).await;
                    }
                }
                break;
            }
        }
    }
    proc.exited.store(true, Ordering::SeqCst);
    *proc.stdin.lock().await = None;
    let end = match status {
        Some(s) => {
            let text = status_text(s);
            let failed = s.code() != Some(0);
            EndEvent {
                exit_code: s.code().unwrap_or(-1),
                exited: s.code().is_some(),
                error: failed.then(|| text.clone()),
                status: text,
            }
        }
        None => EndEvent {
            exit_code: -1,
            exited: false,
            status: "unknown".into(),
            error: Some("process status unknown".into()),
        },
    };
    envd.processes.procs.lock().unwrap_or_else(|e| e.into_inner()).remove(&proc.pid);
    let subs = proc.subscribers.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
    for s in subs {
        let _ = s.send(Event::End(end.clone())).await;
    }
}

/// What a stream does when its `Connect-Timeout-Ms` deadline passes.
enum OnDeadline {
    /// Start: the deadline is the process's; kill its group.
    Kill(Arc<Proc>),
    /// Connect: only the stream ends.
    EndStream,
}

struct StreamState {
    rx: mpsc::Receiver<Event>,
    codec: Codec,
    keepalive: Duration,
    deadline: Option<(Instant, OnDeadline)>,
    done: bool,
}

fn event_stream(state: StreamState) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let deadline_at = st.deadline.as_ref().map(|d| d.0).unwrap_or(far);
        let bytes = tokio::select! {
            ev = st.rx.recv() => match ev {
                Some(ev) => connect::envelope(st.codec, &EventResponse::new(ev)),
                None => {
                    st.done = true;
                    end_stream_envelope(None)
                }
            },
            _ = tokio::time::sleep(st.keepalive) => connect::envelope(st.codec, &EventResponse::new(Event::Keepalive(KeepAlive {}))),
            _ = tokio::time::sleep_until(deadline_at) => {
                if let Some((_, OnDeadline::Kill(proc))) = &st.deadline {
                    let _ = proc.signal_group(libc::SIGKILL);
                }
                st.done = true;
                end_stream_envelope(Some(ConnectError::new(Code::DeadlineExceeded, "the command's deadline (Connect-Timeout-Ms) was exceeded")))
            }
        };
        Some((Ok(bytes), st))
    })
}

pub async fn start(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let (codec, req) = match connect::stream_request::<StartRequest>(&headers, body).await {
        Ok(r) => r,
        Err(e) => return connect::early_stream_error(&headers, e),
    };
    let user = match users::resolve(&headers, None, &envd.opts.default_user) {
        Ok(u) => u,
        Err(e) => return connect::stream_error(codec, e),
    };
    let (proc, rx) = match launch(&envd, req, &user) {
        Ok(r) => r,
        Err(e) => return connect::stream_error(codec, e),
    };
    let deadline = deadline(&headers).map(|at| {
        // The process's own deadline: it is killed even if the client went away.
        let p = proc.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = p.signal_group(libc::SIGKILL);
        });
        (at, OnDeadline::Kill(proc))
    });
    let state = StreamState { rx, codec, keepalive: keepalive_interval(&headers), deadline, done: false };
    connect::stream_response(codec, event_stream(state))
}

pub async fn connect(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let (codec, req) = match connect::stream_request::<ConnectRequest>(&headers, body).await {
        Ok(r) => r,
        Err(e) => return connect::early_stream_error(&headers, e),
    };
    let proc = match envd.processes.find(req.process.as_ref()) {
        Ok(p) => p,
        Err(e) => return connect::stream_error(codec, e),
    };
    let Some(rx) = proc.attach() else {
        return connect::stream_error(
            codec,
            ConnectError::new(Code::NotFound, format!("process with pid {} not found", proc.pid)),
        );
    };
    let deadline = deadline(&headers).map(|at| (at, OnDeadline::EndStream));
    let state = StreamState { rx, codec, keepalive: keepalive_interval(&headers), deadline, done: false };
    connect::stream_response(codec, event_stream(state))
}

pub async fn list(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    // A malformed or unknown user is refused here too, as by every other call.
    let user = users::resolve(&headers, None, &envd.opts.default_user);
    connect::unary(&headers, body, |_: Empty| async move {
        user?;
        let procs = envd.processes.procs.lock().unwrap_or_else(|e| e.into_inner());
        let mut processes: Vec<ProcessInfo> = procs.values().map(|p| p.info()).collect();
        processes.sort_by_key(|p| p.pid);
        Ok(ListResponse { processes })
    })
    .await
}

pub async fn send_input(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    connect::unary(&headers, body, |req: SendInputRequest| async move {
        let proc = envd.processes.find(req.process.as_ref())?;
        let data = match req.input.and_then(|i| i.input) {
            Some(Input::Stdin(data)) => data,
            Some(Input::Pty(data)) => {
                let Some(master) = &proc.pty else {
                    return Err(ConnectError::new(
                        Code::FailedPrecondition,
                        format!("process {} has no terminal (start it with pty)", proc.pid),
                    ));
                };
                master.write_all(&data).await.map_err(|e| {
                    ConnectError::new(
                        Code::FailedPrecondition,
                        format!("writing to the terminal of process {}: {e}", proc.pid),
                    )
                })?;
                return Ok(Empty {});
            }
            None => return Err(ConnectError::new(Code::InvalidArgument, "input.stdin or input.pty is required")),
        };
        let mut stdin = proc.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(ConnectError::new(
                Code::FailedPrecondition,
                format!("stdin of process {} is not open (start it with stdin: true)", proc.pid),
            ));
        };
        pipe.write_all(&data).await.map_err(|e| {
            ConnectError::new(Code::FailedPrecondition, format!("writing to stdin of process {}: {e}", proc.pid))
        })?;
        Ok(Empty {})
    })
    .await
}

pub async fn send_signal(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    connect::unary(&headers, body, |req: SendSignalRequest| async move {
        let proc = envd.processes.find(req.process.as_ref())?;
        let sig = match Signal::try_from(req.signal) {
            Ok(Signal::Sigkill) => libc::SIGKILL,
            Ok(Signal::Sigterm) => libc::SIGTERM,
            _ => return Err(ConnectError::new(Code::InvalidArgument, format!("unsupported signal {}", req.signal))),
        };
        proc.signal_group(sig)?;
        Ok(Empty {})
    })
    .await
}

pub async fn close_stdin(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    connect::unary(&headers, body, |req: CloseStdinRequest| async move {
        let proc = envd.processes.find(req.process.as_ref())?;
        *proc.stdin.lock().await = None;
        Ok(Empty {})
    })
    .await
}

pub async fn update(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    connect::unary(&headers, body, |req: UpdateRequest| async move {
        let proc = envd.processes.find(req.process.as_ref())?;
        let Some(size) = req.pty.and_then(|p| p.size) else {
            return Ok(Empty {});
        };
        let Some(master) = &proc.pty else {
            return Err(ConnectError::new(
                Code::FailedPrecondition,
                format!("process {} has no terminal to resize", proc.pid),
            ));
        };
        master.resize(size.cols, size.rows).map_err(|e| {
            ConnectError::new(Code::Internal, format!("resizing the terminal of process {}: {e}", proc.pid))
        })?;
        Ok(Empty {})
    })
    .await
}

/// Client streaming: answered at once, without reading the (possibly endless) request body.
/// A wrong content type is the client's error (400), not a 501.
pub async fn stream_input(headers: HeaderMap) -> Response {
    let err =
        ConnectError::new(Code::Unimplemented, "Process/StreamInput is not supported by this envd; use SendInput");
    match Codec::streaming(&headers) {
        Ok(codec) => connect::stream_error(codec, err),
        Err(bad_type) => connect::unary_error(&bad_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_layers_user_sandbox_and_request() {
        let user = User {
            name: "u".into(),
            uid: 1,
            gid: 1,
            home: "/home/u".into(),
            shell: "/bin/bash".into(),
            groups: vec![1],
        };
        let sandbox = [("PATH".to_string(), "/sb".to_string()), ("A".to_string(), "1".to_string())].into();
        let request = [("A".to_string(), "2".to_string()), ("B".to_string(), "3".to_string())].into();
        let env: HashMap<_, _> = environment(&user, &sandbox, &request).into_iter().collect();
        assert_eq!(env["HOME"], "/home/u");
        assert_eq!(env["USER"], "u");
        assert_eq!(env["SHELL"], "/bin/bash");
        assert_eq!(env["PATH"], "/sb");
        assert_eq!(env["A"], "2");
        assert_eq!(env["B"], "3");
    }

    #[test]
    fn read_now_takes_what_is_there_without_waiting() {
        // Regression (found by bench/load.mjs): the final drain must not depend on the reactor.
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        nix::unistd::write(&w, b"84\n").unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(read_now(&r, &mut buf, 64), vec![b"84".to_vec(), b"\n".to_vec()]);
        // A writer still holds the pipe (a background descendant): nothing more, no waiting.
        assert!(read_now(&r, &mut buf, 64).is_empty());
        nix::unistd::write(&w, &[b'x'; 10]).unwrap();
        assert_eq!(read_now(&r, &mut buf, 3).len(), 3, "bounded");
        drop(w);
        assert_eq!(read_now(&r, &mut buf, 64).len(), 2, "the rest, then end of file");
    }

    #[test]
    fn a_nul_in_a_command_is_the_requests_fault() {
        // Regression (found by tests/malformed.rs): it was `internal`.
        let e = std::process::Command::new("/bin/tr\0ue").spawn().unwrap_err();
        assert_eq!(spawn_error("/bin/tr\0ue", e).code, Code::InvalidArgument);
    }

    #[test]
    fn headers_set_keepalive_and_deadline() {
        let mut h = HeaderMap::new();
        assert_eq!(keepalive_interval(&h), Duration::from_secs(50));
        h.insert("keepalive-ping-interval", "2".parse().unwrap());
        h.insert("connect-timeout-ms", "1500".parse().unwrap());
        assert_eq!(keepalive_interval(&h), Duration::from_secs(2));
        let d = deadline(&h).unwrap();
        assert!(d > Instant::now() + Duration::from_millis(1000));
        h.insert("keepalive-ping-interval", "x".parse().unwrap());
        assert_eq!(keepalive_interval(&h), Duration::from_secs(50));
    }
}
