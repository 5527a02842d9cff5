//! Fork (e2b's) and clone (Novita's) against a real `sandbank serve` (with CRIU, as `npm test`
//! provides it): the copies go on with the origin's memory, a counter server's count.
mod common;

use common::with_server;
use sandbank_client::{Error, Sandbox, SandboxCloneOpts, SandboxForkOpts, WriteOpts};

const COUNTER: &str = include_str!("../../../__test__/fixtures/counter.py");
const FETCH: &str =
    r#"python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8000").read().decode())'"#;

/// The next number of the sandbox's counter server.
async fn next(s: &Sandbox) -> String {
    s.commands().run(FETCH, Default::default()).await.expect("the counter answers").stdout.trim().to_string()
}

#[test]
fn copies_go_on_with_the_origin_memory() {
    with_server(|srv| async move {
        let origin = srv.sandbox().await;
        origin.files().write("/home/user/counter.py", COUNTER.into(), WriteOpts::default()).await.unwrap();
        origin
            .commands()
            .run("nohup python3 /home/user/counter.py >/dev/null 2>&1 &", Default::default())
            .await
            .unwrap();
        let mut up = false;
        for _ in 0..50 {
            let r = origin.commands().run(&format!("{FETCH} 2>/dev/null || true"), Default::default()).await.unwrap();
            if r.stdout.trim() == "1" {
                up = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(up, "the counter server did not come up");

        // Fork: one entry per copy, each a sandbox going on from the count.
        let forks = origin.fork(SandboxForkOpts { count: Some(2.0), timeout_ms: Some(120_000.0) }).await.unwrap();
        assert_eq!(forks.len(), 2);
        let forks: Vec<Sandbox> = forks.into_iter().map(|f| f.expect("the copy started")).collect();
        assert_ne!(forks[0].sandbox_id(), forks[1].sandbox_id());
        for f in &forks {
            assert_eq!(next(f).await, "2");
            assert_eq!(f.commands().run("hostname", Default::default()).await.unwrap().stdout.trim(), f.sandbox_id());
        }
        assert_eq!(next(&origin).await, "2", "the origin goes on by itself");

        // Clone: the copies and the snapshot they started from.
        let opts = SandboxCloneOpts { count: Some(1.0), strict: Some(true), ..Default::default() };
        let (clones, snapshot) = Sandbox::clone_of(srv.config(), origin.sandbox_id(), opts).await.unwrap();
        assert_eq!(clones.len(), 1);
        assert!(snapshot.as_deref().is_some_and(|s| s.ends_with(":default")), "{snapshot:?}");
        assert_eq!(next(&clones[0]).await, "3");

        // An unknown sandbox; a count the server refuses.
        let e = Sandbox::fork_of(srv.config(), "abcdefghij0123456789", SandboxForkOpts::default()).await.unwrap_err();
        assert_eq!(e, Error::SandboxNotFound("Sandbox abcdefghij0123456789 not found".into()));
        let opts = SandboxCloneOpts { count: Some(0.0), ..Default::default() };
        let e = Sandbox::clone_of(srv.config(), origin.sandbox_id(), opts).await.unwrap_err();
        assert_eq!(e, Error::Sandbox("400: Invalid count 0: must be between 1 and 100".into()));
    });
}
