//! Pause and connect, the timeout lifecycle, metrics, and secure sandboxes (access token, signed
//! URLs) against a real `sandbank serve`.
mod common;

use common::with_server;
use sandbank_client::{
    Sandbox, SandboxConnectOpts, SandboxCreateOpts, SandboxLifecycle, SandboxMetricsOpts, SandboxUrlOpts,
};
use std::time::Duration;

#[test]
fn pause_connect_lifecycle_and_metrics() {
    with_server(|srv| async move {
        let api = srv.api();
        let sbx = srv.sandbox().await;
        let id = sbx.sandbox_id().to_string();
        sbx.files().write("/tmp/kept.txt", "kept".into(), Default::default()).await.unwrap();
        assert!(sbx.pause().await.unwrap());
        assert!(!api.pause(&id).await.unwrap(), "already paused: false");
        assert_eq!(api.get_info(&id).await.unwrap().state, "paused");
        sbx.reconnect(SandboxConnectOpts::default()).await.unwrap();
        assert_eq!(api.get_info(&id).await.unwrap().state, "running");
        assert_eq!(sbx.files().read_text("/tmp/kept.txt", Default::default()).await.unwrap(), "kept");
        let e = api.pause("abcdefghij0123456789").await.unwrap_err();
        assert_eq!(e.kind(), "SandboxNotFoundError");
        let e = api.connect("abcdefghij0123456789", Default::default()).await.unwrap_err();
        assert_eq!(e.to_string(), "Paused sandbox abcdefghij0123456789 not found");

        let m = sbx.get_metrics(Default::default()).await.unwrap();
        assert!(!m.is_empty());
        assert!(m[0].mem_total > 0.0 && m[0].cpu_count >= 1.0, "{m:?}");
        let none =
            api.get_metrics(&id, SandboxMetricsOpts { start_ms: Some(0.0), end_ms: Some(1000.0) }).await.unwrap();
        assert!(none.is_empty());

        // onTimeout 'pause': paused at the end time, reported by getInfo.
        let p = Sandbox::create(
            srv.config(),
            SandboxCreateOpts {
                timeout_ms: Some(1_000),
                lifecycle: Some(SandboxLifecycle { on_timeout: Some("pause".into()), auto_resume: None }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let info = api.get_info(p.sandbox_id()).await.unwrap();
        let lc = info.lifecycle.unwrap();
        assert_eq!((lc.on_timeout.as_str(), lc.auto_resume), ("pause", false));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while api.get_info(p.sandbox_id()).await.unwrap().state != "paused" {
            assert!(tokio::time::Instant::now() < deadline, "not paused after 10 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn secure_sandboxes_send_the_token_and_sign_urls() {
    with_server(|srv| async move {
        let sbx = srv.sandbox().await;
        let token = sbx.envd_access_token().expect("secure by default").to_string();
        assert_eq!(
            srv.api().get_info(sbx.sandbox_id()).await.unwrap().envd_access_token.as_deref(),
            Some(token.as_str())
        );
        // The client's own requests carry the token.
        let r = sbx.commands().run("echo ok", Default::default()).await.unwrap();
        assert_eq!(r.stdout, "ok\n");
        sbx.files().write("/tmp/s.txt", "signed".into(), Default::default()).await.unwrap();
        // A signed URL works without any header.
        let http = reqwest::Client::new();
        let url = sbx.download_url("/tmp/s.txt", &SandboxUrlOpts::default()).unwrap();
        let res = http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "signed");
        let tampered = url.replace("s.txt", "t.txt");
        assert_eq!(http.get(&tampered).send().await.unwrap().status(), 401);
        // `secure: false`: the server gives it a token all the same (a sandbox ID alone opens
        // nothing), so its URLs are signed and may carry an expiration.
        let unflagged = Sandbox::create(srv.config(), SandboxCreateOpts { secure: Some(false), ..Default::default() })
            .await
            .unwrap();
        assert!(unflagged.envd_access_token().is_some_and(|t| t.len() == 32));
        let url = unflagged
            .download_url("/etc/hostname", &SandboxUrlOpts { use_signature_expiration: Some(60), ..Default::default() })
            .unwrap();
        let res = http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap().trim(), unflagged.sandbox_id());
        unflagged.kill().await.unwrap();
    });
}
