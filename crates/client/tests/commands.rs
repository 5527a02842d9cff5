//! `sandbox.commands` against a real `sandbank serve`.
mod common;

use common::with_server;
use sandbank_client::{CommandConnectOpts, CommandOutput, CommandStartOpts, Error};
use std::time::Duration;

fn opts() -> CommandStartOpts {
    CommandStartOpts::default()
}

#[test]
fn run_output_exit_codes_envs_cwd_users() {
    with_server(|srv| async move {
        let sbx = srv.sandbox().await;
        let c = sbx.commands();

        let r = c.run("echo hello; echo warn >&2", opts()).await.unwrap();
        assert_eq!(
            (r.exit_code, r.error.as_deref(), r.stdout.as_str(), r.stderr.as_str()),
            (0, None, "hello\n", "warn\n")
        );

        let e = c.run("echo out; echo err >&2; exit 3", opts()).await.unwrap_err();
        assert_eq!(e.kind(), "CommandExitError");
        assert_eq!(e.to_string(), "exit status 3");
        let res = e.command_result().unwrap();
        assert_eq!((res.exit_code, res.stdout.as_str(), res.stderr.as_str()), (3, "out\n", "err\n"));

        let r = c
            .run(
                "echo $A-$B; pwd",
                CommandStartOpts {
                    envs: [("A".to_string(), "x y".to_string()), ("B".into(), "2".into())].into(),
                    cwd: Some("/tmp".into()),
                    ..opts()
                },
            )
            .await
            .unwrap();
        assert_eq!(r.stdout, "x y-2\n/tmp\n");

        let root = c.run("whoami; echo $HOME", CommandStartOpts { user: Some("root".into()), ..opts() }).await.unwrap();
        assert_eq!(root.stdout, "root\n/root\n");
        let user = c.run("whoami; pwd", opts()).await.unwrap();
        assert_eq!(user.stdout, "user\n/home/user\n");
        let e = c.run("touch /root/nope", opts()).await.unwrap_err();
        assert_eq!(e.command_result().unwrap().exit_code, 1, "{e:?}");

        // Missing cwd: an error, not a hang.
        let e = c.run("true", CommandStartOpts { cwd: Some("/does/not/exist".into()), ..opts() }).await.unwrap_err();
        assert_ne!(e.kind(), "CommandExitError", "{e:?}");

        // timeoutMs → deadline_exceeded → TimeoutError.
        let t0 = std::time::Instant::now();
        let e = c.run("sleep 5", CommandStartOpts { timeout_ms: Some(700), ..opts() }).await.unwrap_err();
        assert_eq!(e.kind(), "TimeoutError", "{e:?}");
        assert!(e.to_string().contains("[deadline_exceeded]"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());

        // 10 MB of stdout, exact.
        let r = c.run("head -c 10000000 /dev/zero | tr '\\0' a", opts()).await.unwrap();
        assert_eq!(r.stdout.len(), 10_000_000);
        assert!(r.stdout.bytes().all(|b| b == b'a'));

        // UTF-8 split across chunks survives.
        let r = c.run("for i in $(seq 1 20000); do printf 'é€'; done", opts()).await.unwrap();
        assert_eq!(r.stdout, "é€".repeat(20000));
        sbx.kill().await.unwrap();
    });
}

#[test]
fn background_handles_stdin_kill_connect() {
    with_server(|srv| async move {
        let sbx = srv.sandbox().await;
        let c = sbx.commands();

        // Background + streamed output, in order.
        let h = c
            .start(
                "for i in 1 2 3; do echo $i; sleep 0.05; done; echo e >&2",
                CommandStartOpts { stream_output: true, ..opts() },
            )
            .await
            .unwrap();
        assert!(h.pid() > 0);
        let mut out = String::new();
        let mut err = String::new();
        while let Some(chunk) = h.next_output().await {
            match chunk {
                CommandOutput::Stdout(s) => out.push_str(&s),
                CommandOutput::Stderr(s) => err.push_str(&s),
                CommandOutput::Pty(_) => panic!("terminal output from a command started without a terminal"),
            }
        }
        assert_eq!((out.as_str(), err.as_str()), ("1\n2\n3\n", "e\n"));
        let r = h.wait().await.unwrap();
        assert_eq!(r.stdout, "1\n2\n3\n");
        assert_eq!(h.exit_code(), Some(0));

        // A long-running process: listed, killed, its wait reports the signal.
        let h = c.start("sleep 30", opts()).await.unwrap();
        assert_eq!(h.exit_code(), None);
        let list = c.list(None).await.unwrap();
        let p = list.iter().find(|p| p.pid == h.pid()).unwrap_or_else(|| panic!("{list:?}"));
        assert_eq!(p.cmd, "/bin/bash");
        assert_eq!(p.args, vec!["-l", "-c", "sleep 30"]);
        assert!(h.kill().await.unwrap());
        let e = h.wait().await.unwrap_err();
        assert_eq!(e.kind(), "CommandExitError", "{e:?}");
        assert_ne!(e.command_result().unwrap().exit_code, 0);
        assert!(!c.kill(h.pid(), None).await.unwrap());
        assert!(c.list(None).await.unwrap().iter().all(|p| p.pid != h.pid()));

        // stdin.
        let h = c.start("cat", CommandStartOpts { stdin: Some(true), stream_output: true, ..opts() }).await.unwrap();
        c.send_stdin(h.pid(), b"hello stdin\n".to_vec(), None).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), h.next_output()).await.unwrap();
        assert_eq!(first, Some(CommandOutput::Stdout("hello stdin\n".into())));
        assert_eq!(h.stdout(), "hello stdin\n");
        assert!(c.kill(h.pid(), None).await.unwrap());
        assert!(h.wait().await.is_err());
        // stdin to a gone process → NotFound kind.
        let e = c.send_stdin(h.pid(), b"x".to_vec(), None).await.unwrap_err();
        assert_eq!(e.kind(), "NotFoundError", "{e:?}");

        // disconnect keeps the process; connect(pid) picks its output up again.
        let h = c.start("for i in $(seq 1 100); do echo tick$i; sleep 0.1; done", opts()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.disconnect();
        let e = h.wait().await.unwrap_err();
        assert_eq!(e.kind(), "TimeoutError", "{e:?}");
        assert!(c.list(None).await.unwrap().iter().any(|p| p.pid == h.pid()));
        let h2 = c.connect(h.pid(), CommandConnectOpts { stream_output: true, ..Default::default() }).await.unwrap();
        assert_eq!(h2.pid(), h.pid());
        let chunk = tokio::time::timeout(Duration::from_secs(10), h2.next_output()).await.unwrap();
        match chunk {
            Some(CommandOutput::Stdout(s)) => assert!(s.starts_with("tick"), "{s:?}"),
            other => panic!("{other:?}"),
        }
        assert!(h2.kill().await.unwrap());
        assert!(h2.wait().await.is_err());

        // connect to a pid that does not exist.
        let e = c.connect(999_999, CommandConnectOpts::default()).await.unwrap_err();
        assert_eq!(e.kind(), "NotFoundError", "{e:?}");
        assert!(matches!(e, Error::NotFound(ref m) if m.starts_with("[not_found]")), "{e:?}");
        sbx.kill().await.unwrap();
    });
}
