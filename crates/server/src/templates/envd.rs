//! What a template build asks of a build sandbox's envd, in process: run a command to its end
//! (`process.Process/Start`, its output streamed to the build's log) and write a file (`POST
//! /files`). Over the sandbox's envd socket, as the proxy forwards users' requests (the server's
//! own calls need no access token: that is checked before the proxy).

use crate::proxy;
use axum::body::Body;
use axum::http::{header, Request};
use base64::Engine as _;
use http_body_util::BodyExt;
use sandbank_protocol::connect::{encode_envelope, ConnectError, EndStream, EnvelopeDecoder};
use sandbank_protocol::process::{Event, EventResponse, Output, ProcessConfig, StartRequest};
use std::collections::HashMap;
use std::path::Path;

/// How a command ended.
#[derive(Debug)]
pub enum Ran {
    Exited(i32),
    /// envd refused or lost it (an unknown user, a bad working directory): `code: message`.
    Failed(String),
}

/// Runs `cmd` with `bash -l -c` as `user` in `cwd` with `envs`, passing each line of its output
/// (stdout and stderr) to `on_line` as it comes.
pub async fn run(
    socket: &Path,
    user: &str,
    cmd: &str,
    cwd: Option<&str>,
    envs: &HashMap<String, String>,
    mut on_line: impl FnMut(&str),
) -> Result<Ran, String> {
    let start = StartRequest {
        process: Some(ProcessConfig {
            cmd: "/bin/bash".into(),
            args: vec!["-l".into(), "-c".into(), cmd.into()],
            envs: envs.clone(),
            cwd: cwd.map(str::to_string),
        }),
        ..Default::default()
    };
    let body = encode_envelope(0, &serde_json::to_vec(&start).expect("a start request serializes"));
    let req = Request::post("/process.Process/Start")
        .header(header::CONTENT_TYPE, "application/connect+json")
        .header("connect-protocol-version", "1")
        .header(header::AUTHORIZATION, basic_user(user))
        .body(Body::from(body))
        .expect("a valid request");
    let res = proxy::forward(socket, req).await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let err: Option<ConnectError> = serde_json::from_slice(&bytes).ok();
        return Ok(Ran::Failed(
            err.map_or_else(|| format!("envd answered {status}"), |e| format!("{}: {}", e.code.as_str(), e.message)),
        ));
    }
    let mut body = res.into_body();
    let mut decoder = EnvelopeDecoder::default();
    let mut lines = LineSplitter::default();
    let mut exit = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("envd's stream broke: {e}"))?;
        let Ok(data) = frame.into_data() else { continue };
        decoder.push(&data);
        while let Some(env) = decoder.next().map_err(|e| format!("envd's stream: {e}"))? {
            if env.is_end_stream() {
                let end: EndStream = serde_json::from_slice(&env.payload).unwrap_or_default();
                if let Some(e) = end.error {
                    return Ok(Ran::Failed(format!("{}: {}", e.code.as_str(), e.message)));
                }
                continue;
            }
            let msg: EventResponse = serde_json::from_slice(&env.payload).map_err(|e| format!("envd's event: {e}"))?;
            match msg.event.and_then(|e| e.event) {
                Some(Event::Data(d)) => {
                    if let Some(Output::Stdout(b) | Output::Stderr(b) | Output::Pty(b)) = d.output {
                        lines.push(&b, &mut on_line);
                    }
                }
                Some(Event::End(end)) => exit = Some(end.exit_code),
                _ => {}
            }
        }
    }
    lines.finish(&mut on_line);
    exit.map(Ran::Exited).ok_or_else(|| "envd's stream ended before the command did".into())
}

/// Writes `bytes` to `path` in the sandbox as `user` (envd makes the parent directories).
pub async fn write_file(socket: &Path, user: &str, path: &str, bytes: Vec<u8>) -> Result<(), String> {
    const BOUNDARY: &str = "sandbank-template-file";
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let query: String = percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC).to_string();
    let req = Request::post(format!("/files?path={query}"))
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .header(header::AUTHORIZATION, basic_user(user))
        .body(Body::from(body))
        .expect("a valid request");
    let res = proxy::forward(socket, req).await.map_err(|e| e.to_string())?;
    if res.status().is_success() {
        return Ok(());
    }
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Err(format!("writing {path} in the build sandbox: {status} {}", String::from_utf8_lossy(&bytes)))
}

fn basic_user(user: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:")))
}

/// Splits a byte stream into lines (lossy UTF-8); the last, unterminated one at `finish`.
#[derive(Default)]
struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    fn push(&mut self, bytes: &[u8], on_line: &mut impl FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            on_line(String::from_utf8_lossy(&line[..i]).trim_end_matches('\r'));
        }
    }

    fn finish(&mut self, on_line: &mut impl FnMut(&str)) {
        if !self.pending.is_empty() {
            on_line(&String::from_utf8_lossy(&std::mem::take(&mut self.pending)));
        }
    }
}

/// Starts a template's start command in a new sandbox of it, in the background, and waits until
/// its ready command passes (none given: does not wait), within `timeout`: for the sandboxes of
/// a template whose snapshot kept its files only (no CRIU where it was built), which do not
/// start with the command running.
pub async fn start_and_wait(
    socket: &Path,
    user: &str,
    cwd: Option<&str>,
    envs: &HashMap<String, String>,
    start: &str,
    ready: Option<&str>,
    timeout: std::time::Duration,
) -> Result<(), String> {
    match run(socket, user, &super::build::in_background(start), cwd, envs, |_| {}).await? {
        Ran::Exited(0) => {}
        Ran::Exited(code) => return Err(format!("starting the template's start command {start:?} exited with {code}")),
        Ran::Failed(why) => return Err(format!("starting the template's start command {start:?}: {why}")),
    }
    let Some(ready) = ready else { return Ok(()) };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if matches!(run(socket, user, ready, cwd, envs, |_| {}).await?, Ran::Exited(0)) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the template's ready command {ready:?} did not pass within {timeout:?}"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_whole_whatever_the_chunks() {
        let mut seen = Vec::new();
        let mut s = LineSplitter::default();
        s.push(b"one\ntw", &mut |l| seen.push(l.to_string()));
        s.push(b"o\r\nthr", &mut |l| seen.push(l.to_string()));
        s.finish(&mut |l| seen.push(l.to_string()));
        assert_eq!(seen, ["one", "two", "thr"]);
    }
}
