//! `sandbox.pty` and `files.watch_dir` against a real `sandbank serve`.
mod common;

use common::with_server;
use sandbank_client::{
    CommandHandle, CommandOutput, FilesystemEventType, PtyConnectOpts, PtyCreateOpts, PtySize, WatchOpts,
};
use std::collections::HashMap;
use std::time::Duration;

/// Pulls terminal output until `out` contains `needle` (20 s at most).
async fn read_until(h: &CommandHandle, out: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !out.contains(needle) {
        match tokio::time::timeout_at(deadline, h.next_output()).await {
            Ok(Some(CommandOutput::Pty(b))) => out.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(other)) => panic!("a terminal gave {other:?}"),
            Ok(None) => panic!("the terminal ended before {needle:?}; output: {out:?}"),
            Err(_) => panic!("no {needle:?} within 20 s; output: {out:?}"),
        }
    }
}

#[test]
fn pty_create_input_resize_connect_kill() {
    with_server(|srv| async move {
        let sbx = srv.sandbox().await;
        let pty = sbx.pty();
        let h = pty
            .create(PtyCreateOpts {
                size: PtySize { cols: 80, rows: 24 },
                envs: HashMap::from([("FOO".to_string(), "bar".to_string())]),
                cwd: Some("/tmp".into()),
                user: None,
                timeout_ms: Some(0),
                request_timeout_ms: None,
                stream_output: true,
            })
            .await
            .unwrap();
        let mut out = String::new();
        pty.send_input(h.pid(), b"echo \"<$FOO $PWD $TERM $(stty size)>\"\n".to_vec(), None).await.unwrap();
        read_until(&h, &mut out, "<bar /tmp xterm-256color 24 80>").await;
        pty.resize(h.pid(), PtySize { cols: 120, rows: 50 }, None).await.unwrap();
        pty.send_input(h.pid(), b"stty size\n".to_vec(), None).await.unwrap();
        read_until(&h, &mut out, "50 120\r\n").await;
        assert_eq!(h.stdout(), "", "terminal output is not stdout");

        let other = pty.connect(h.pid(), PtyConnectOpts { stream_output: true, ..Default::default() }).await.unwrap();
        pty.send_input(h.pid(), b"echo two-$((1+1))\n".to_vec(), None).await.unwrap();
        let mut seen = String::new();
        read_until(&other, &mut seen, "two-2\r\n").await;

        assert!(pty.kill(h.pid(), None).await.unwrap());
        let e = h.wait().await.unwrap_err();
        assert_eq!(e.command_result().map(|r| r.exit_code), Some(-1), "{e:?}");
        assert!(!pty.kill(h.pid(), None).await.unwrap());
        let e = pty.send_input(h.pid(), b"x".to_vec(), None).await.unwrap_err();
        assert_eq!(e.kind(), "NotFoundError", "{e:?}");
    });
}

#[test]
fn watch_dir_events_stop_and_errors() {
    with_server(|srv| async move {
        let sbx = srv.sandbox().await;
        let f = sbx.files();
        f.make_dir("/tmp/w/sub", Default::default()).await.unwrap();
        let w = f
            .watch_dir("/tmp/w", WatchOpts { recursive: true, timeout_ms: Some(0), ..Default::default() })
            .await
            .unwrap();
        sbx.commands().run("echo x > /tmp/w/sub/a.txt; rm /tmp/w/sub/a.txt", Default::default()).await.unwrap();
        let mut got = Vec::new();
        while !got.contains(&("sub/a.txt".to_string(), FilesystemEventType::Remove)) {
            let ev = tokio::time::timeout(Duration::from_secs(20), w.next_event())
                .await
                .expect("an event within 20 s")
                .unwrap()
                .expect("the watch is running");
            got.push((ev.name, ev.event_type));
        }
        assert!(got.contains(&("sub/a.txt".to_string(), FilesystemEventType::Create)));
        // stop: the pending pull ends with the aborted request's error, then nothing.
        w.stop();
        let e = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match w.next_event().await {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            }
        })
        .await
        .expect("stop ends the watch");
        assert_eq!(e.unwrap_err().kind(), "TimeoutError");
        assert!(w.next_event().await.unwrap().is_none());

        // timeoutMs ends a watch with deadline_exceeded.
        let w = f.watch_dir("/tmp", WatchOpts { timeout_ms: Some(500), ..Default::default() }).await.unwrap();
        let e = w.next_event().await.unwrap_err();
        assert!(e.to_string().starts_with("[deadline_exceeded]"), "{e}");

        let e = f.watch_dir("/tmp/none", Default::default()).await.unwrap_err();
        assert_eq!(e.kind(), "FileNotFoundError");
    });
}
