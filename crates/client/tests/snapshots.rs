//! Snapshots against a real `sandbank serve`.
mod common;

use common::with_server;
use sandbank_client::{Error, Sandbox, SandboxCreateOpts, SnapshotListOpts, WriteOpts};

#[test]
fn create_use_list_delete() {
    with_server(|srv| async move {
        let api = srv.api();
        let origin = srv.sandbox().await;
        origin.files().write("/home/user/state.txt", "v1".into(), WriteOpts::default()).await.unwrap();

        let snap = origin.create_snapshot().await.unwrap();
        assert!(snap.snapshot_id.ends_with(":default"), "{snap:?}");
        assert_eq!(snap.sandbox_id.as_deref(), Some(origin.sandbox_id()));
        assert!(snap.created_at.is_some(), "{snap:?}");
        // The origin keeps running with its id.
        assert_eq!(origin.commands().run("cat /home/user/state.txt", Default::default()).await.unwrap().stdout, "v1");

        // A sandbox from the snapshot sees the file; a snapshot of it extends the chain.
        let child = Sandbox::create(
            srv.config(),
            SandboxCreateOpts { template: Some(snap.snapshot_id.clone()), ..Default::default() },
        )
        .await
        .unwrap();
        assert_ne!(child.sandbox_id(), origin.sandbox_id());
        assert_eq!(child.files().read_text("/home/user/state.txt", Default::default()).await.unwrap(), "v1");
        let info = child.get_info().await.unwrap();
        assert_eq!(info.template_id, snap.snapshot_id.trim_end_matches(":default"));
        child.files().write("/home/user/state.txt", "v2".into(), WriteOpts::default()).await.unwrap();
        let snap2 = child.create_snapshot().await.unwrap();
        assert_eq!(
            snap2.parent_snapshot_id.as_deref().map(|p| p.trim_end_matches(":default")),
            Some(snap.snapshot_id.trim_end_matches(":default"))
        );

        // list with limit 1 over pages: newest first, both present.
        let p = api.list_snapshots(SnapshotListOpts { limit: Some(1), ..Default::default() }).unwrap();
        let mut all = Vec::new();
        let mut pages = 0;
        while p.has_next() {
            let page = p.next_items().await.unwrap();
            assert!(page.len() <= 1);
            pages += 1;
            all.extend(page);
        }
        assert!(pages >= 2, "{pages}");
        let ids: Vec<_> = all.iter().map(|s| s.snapshot_id.clone()).collect();
        assert_eq!(ids, vec![snap2.snapshot_id.clone(), snap.snapshot_id.clone()]);
        assert_eq!(p.next_items().await.unwrap_err(), Error::Other("No more items to fetch".into()));
        // Filter by origin sandbox; the instance form filters by itself.
        let by_origin = origin.list_snapshots(None, None).unwrap().next_items().await.unwrap();
        assert_eq!(by_origin.iter().map(|s| s.snapshot_id.clone()).collect::<Vec<_>>(), vec![snap.snapshot_id.clone()]);

        // Delete refused while a running sandbox uses it → SandboxError "400: …".
        let e = api.delete_snapshot(&snap.snapshot_id).await.unwrap_err();
        assert_eq!(e.kind(), "SandboxError", "{e:?}");
        assert!(e.to_string().starts_with("400: cannot delete "), "{e}");
        assert!(e.to_string().contains("running sandboxes"), "{e}");

        // Kill the users; then delete → true, again → false.
        child.kill().await.unwrap();
        assert!(api.delete_snapshot(&snap2.snapshot_id).await.unwrap());
        assert!(api.delete_snapshot(&snap.snapshot_id).await.unwrap());
        assert!(!api.delete_snapshot(&snap.snapshot_id).await.unwrap());
        assert!(!api.delete_snapshot(&snap2.snapshot_id).await.unwrap());
        let left = api.list_snapshots(Default::default()).unwrap().next_items().await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        // Using a deleted snapshot fails.
        let e = Sandbox::create(
            srv.config(),
            SandboxCreateOpts { template: Some(snap.snapshot_id.clone()), ..Default::default() },
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), "SandboxError", "{e:?}");
        origin.kill().await.unwrap();
    });
}
