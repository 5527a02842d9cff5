//! Lifecycle and control-plane errors against a real `sandbank serve`.
mod common;

use common::with_server;
use sandbank_client::{
    Api, ConnectionConfig, ConnectionOpts, Error, Sandbox, SandboxConnectOpts, SandboxCreateOpts, SandboxListOpts,
};
use std::collections::HashMap;
use std::sync::Arc;

#[test]
fn create_info_list_timeout_kill() {
    with_server(|srv| async move {
        let config = srv.config();
        let meta: HashMap<String, String> =
            [("a b".to_string(), "c&d".to_string()), ("team".into(), "x".into())].into();
        let opts = SandboxCreateOpts {
            metadata: Some(meta.clone()),
            envs: Some([("SANDBOX_VAR".to_string(), "from-create".to_string())].into()),
            timeout_ms: Some(120_500),
            ..Default::default()
        };
        let sbx = Sandbox::create(config.clone(), opts).await.unwrap();
        let id = sbx.sandbox_id().to_string();
        assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert_eq!(sbx.envd_url(), srv.url);
        assert_eq!(sbx.get_host(8080), format!("8080-{id}.{}", sbx.sandbox_domain()));

        let info = sbx.get_info().await.unwrap();
        assert_eq!(info.sandbox_id, id);
        assert_eq!(info.template_id, "base");
        assert_eq!(info.state, "running");
        assert_eq!(info.metadata, meta);
        // 120 500 ms → 121 s.
        let secs = (info.end_at - info.started_at).num_seconds();
        assert!((119..=122).contains(&secs), "end - start = {secs}s");
        assert!(sbx.is_running(None).await.unwrap());

        // Sandbox-wide envs reach commands.
        let r = sbx.commands().run("echo $SANDBOX_VAR", Default::default()).await.unwrap();
        assert_eq!(r.stdout, "from-create\n");

        // list: metadata filter (triple-encoded), state filter.
        let api = srv.api();
        let p = api.list(SandboxListOpts { metadata: Some(vec![("a b".into(), "c&d".into())]), ..Default::default() });
        assert!(p.has_next());
        let items = p.next_items().await.unwrap();
        assert_eq!(items.iter().map(|s| s.sandbox_id.as_str()).collect::<Vec<_>>(), vec![id.as_str()]);
        assert!(!p.has_next());
        assert_eq!(p.next_items().await.unwrap_err(), Error::Other("No more items to fetch".into()));
        let none = api
            .list(SandboxListOpts { metadata: Some(vec![("a b".into(), "other".into())]), ..Default::default() })
            .next_items()
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
        let paused = api
            .list(SandboxListOpts { state: Some(vec!["paused".into()]), ..Default::default() })
            .next_items()
            .await
            .unwrap();
        assert!(paused.iter().all(|s| s.sandbox_id != id));
        let running = api
            .list(SandboxListOpts { state: Some(vec!["running".into(), "paused".into()]), ..Default::default() })
            .next_items()
            .await
            .unwrap();
        assert!(running.iter().any(|s| s.sandbox_id == id && s.state == "running"));

        // A second sandbox, then pages of one.
        let other = srv.sandbox().await;
        let p = api.list(SandboxListOpts { limit: Some(1), ..Default::default() });
        let mut seen = Vec::new();
        while p.has_next() {
            let page = p.next_items().await.unwrap();
            assert!(page.len() <= 1, "{page:?}");
            seen.extend(page.into_iter().map(|s| s.sandbox_id));
        }
        seen.sort();
        let mut want = vec![id.clone(), other.sandbox_id().to_string()];
        want.sort();
        assert_eq!(seen, want);

        // setTimeout in seconds, rounded up.
        sbx.set_timeout(30_001).await.unwrap();
        let info = sbx.get_info().await.unwrap();
        let left = (info.end_at - chrono::Utc::now()).num_milliseconds();
        assert!((25_000..=31_500).contains(&left), "left {left} ms");

        // connect to a running sandbox returns it.
        let again = Sandbox::connect(config.clone(), &id, SandboxConnectOpts::default()).await.unwrap();
        assert_eq!(again.sandbox_id(), id);
        assert_eq!(again.commands().run("echo hi", Default::default()).await.unwrap().stdout, "hi\n");

        // kill → true, then false; afterwards the sandbox is gone.
        assert!(api.kill(&id).await.unwrap());
        assert!(!api.kill(&id).await.unwrap());
        assert_eq!(sbx.get_info().await.unwrap_err(), Error::SandboxNotFound(format!("Sandbox {id} not found")));
        assert_eq!(sbx.set_timeout(1000).await.unwrap_err(), Error::SandboxNotFound(format!("Sandbox {id} not found")));
        sbx.kill().await.unwrap();
        other.kill().await.unwrap();
        assert!(api.list(Default::default()).next_items().await.unwrap().is_empty());
    });
}

#[test]
fn error_kinds() {
    with_server(|srv| async move {
        // Wrong key → AuthenticationError with the SDK's prefix.
        let bad = ConnectionOpts { api_key: Some("wrong".into()), ..srv.opts() };
        let bad = Arc::new(ConnectionConfig::with_env(&bad, |_| None).unwrap());
        let e = Sandbox::create(bad.clone(), SandboxCreateOpts::default()).await.unwrap_err();
        assert_eq!(e.kind(), "AuthenticationError");
        assert!(e.to_string().starts_with("Unauthorized, please check your credentials. - "), "{e}");
        assert_eq!(Api::new(bad.clone()).kill("whatever").await.unwrap_err().kind(), "AuthenticationError");
        let e = Api::new(bad).list(Default::default()).next_items().await.unwrap_err();
        assert_eq!(e.kind(), "AuthenticationError");
        // No key at all: still the server's 401.
        let none = ConnectionOpts { api_key: None, ..srv.opts() };
        let none = Arc::new(ConnectionConfig::with_env(&none, |_| None).unwrap());
        assert_eq!(Api::new(none).get_info("x").await.unwrap_err().kind(), "AuthenticationError");

        // Unknown sandbox.
        let api = srv.api();
        let e = api.get_info("doesnotexist1234").await.unwrap_err();
        assert_eq!(e, Error::SandboxNotFound("Sandbox doesnotexist1234 not found".into()));
        assert_eq!(e.kind(), "SandboxNotFoundError");
        let e = Sandbox::connect(srv.config(), "doesnotexist1234", SandboxConnectOpts::default()).await.unwrap_err();
        assert_eq!(e, Error::SandboxNotFound("Paused sandbox doesnotexist1234 not found".into()));
        assert!(!api.kill("doesnotexist1234").await.unwrap());
        assert_eq!(api.create_snapshot("doesnotexist1234").await.unwrap_err().kind(), "SandboxNotFoundError");
        // Unknown template → the API's 4xx as SandboxError "<status>: <message>".
        let e = Sandbox::create(
            srv.config(),
            SandboxCreateOpts { template: Some("no-such-template".into()), ..Default::default() },
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), "SandboxError", "{e}");
        assert!(e.to_string().starts_with("404: ") || e.to_string().starts_with("400: "), "{e}");

        // envd of a killed sandbox: commands fail, isRunning reports false or an error kind.
        let sbx = srv.sandbox().await;
        sbx.kill().await.unwrap();
        let e = sbx.commands().run("true", Default::default()).await.unwrap_err();
        assert_eq!(e, Error::SandboxNotFound("Sandbox is probably not running anymore".into()));
        assert!(!sbx.is_running(None).await.unwrap());
        let e = sbx.files().list("/", None, Default::default()).await.unwrap_err();
        assert_eq!(e.kind(), "TimeoutError", "{e:?}");
        assert!(
            e.to_string().starts_with("[unavailable] HTTP 502: This error is likely due to sandbox timeout."),
            "{e}"
        );
    });
}
