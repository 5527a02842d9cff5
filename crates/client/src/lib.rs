//! sandbank's Rust SDK core: the behaviour of the `novita-sandbox` JS SDK (names, defaults,
//! errors, wire) over `reqwest`, shaped so a napi binding stays thin: plain structs in and out,
//! cheap-to-clone handles (`Arc` inside), `Send + 'static` futures once a handle is cloned.
//!
//! - [`config`]: `ConnectionOpts` → [`ConnectionConfig`] (env vars, URLs, header sets);
//!   [`local`]: the local default when nothing is configured (find or start `sandbank serve`).
//! - [`error`]: one [`Error`] enum whose variants are the JS error classes ([`Error::kind`]).
//! - [`api`]: the control plane ([`Api`]): create, connect, kill, getInfo, setTimeout, list,
//!   snapshots, fork and clone; [`paginator`]: the two paginators.
//! - [`envd`]: the Connect/JSON transport to a sandbox's envd; [`commands`], [`pty`], [`files`]
//!   (with directory watches) on top; [`signature`]: signed `/files` URLs.
//! - [`sandbox`]: [`Sandbox`], tying it together.
//! - [`templates`]: template builds as e2b's `Template` drives them (also `sandbank templates
//!   build`): Dockerfiles, COPY files (hash, archive, upload), the build and its log.

#![deny(unsafe_code)]

pub mod api;
mod commands;
pub mod config;
mod envd;
mod error;
pub mod files;
mod listings;
pub mod local;
mod paginator;
mod pty;
mod sandbox;
mod signature;
pub mod snapshot_archive;
pub mod templates;

pub use api::SandboxInfoLifecycle;
pub use api::{
    Api, CloneResult, CreateSnapshotOpts, SandboxCloneOpts, SandboxConnectOpts, SandboxConnection, SandboxCreateOpts,
    SandboxForkOpts, SandboxInfo, SandboxLifecycle, SandboxListOpts, SandboxMetrics, SandboxMetricsOpts, SnapshotInfo,
    SnapshotListOpts,
};
pub use commands::{CommandConnectOpts, CommandHandle, CommandOutput, CommandStartOpts, Commands, ProcessInfo};
pub use config::{ConnectionConfig, ConnectionOpts, SdkIdentity};
pub use error::{BuildFailure, CommandResult, Error, Result};
pub use files::{
    EntryInfo, FileStream, FileType, Files, FilesystemEvent, FilesystemEventType, FilesystemOpts, WatchHandle,
    WatchOpts, WriteData, WriteEntry, WriteInfo, WriteOpts,
};
pub use listings::{SandboxPaginator, Sandboxes, SnapshotPaginator, Snapshots};
pub use paginator::{Listing, Paginator};
pub use pty::{Pty, PtyConnectOpts, PtyCreateOpts, PtySize};
pub use sandbox::{Sandbox, SandboxUrlOpts};
pub use signature::{get_signature, FileOperation, Signature};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn assert_send_static<T: Send + 'static>(_: &T) {}

    /// The binding clones a handle into an `async move` block: those futures must be
    /// `Send + 'static`.
    #[allow(dead_code)]
    fn futures_are_send_and_static(sbx: Sandbox, api: Api, h: CommandHandle, p: SnapshotPaginator) {
        let s = sbx.clone();
        assert_send_static(&async move { s.commands().run("x", CommandStartOpts::default()).await });
        let s = sbx.clone();
        assert_send_static(&async move { s.files().write("/a", WriteData::from("x"), WriteOpts::default()).await });
        let s = sbx.clone();
        assert_send_static(
            &async move { s.files().read_stream("/a", FilesystemOpts::default()).await?.next_chunk().await },
        );
        assert_send_static(&async move { api.create(SandboxCreateOpts::default()).await });
        assert_send_static(&async move { (h.next_output().await, h.wait().await) });
        assert_send_static(&async move { p.next_items().await });
        let c = sbx.config().clone();
        assert_send_static(&async move { Sandbox::create(c, SandboxCreateOpts::default()).await });
    }

    /// A server that accepts connections and never answers.
    async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = l.accept().await {
                held.push(sock);
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn request_timeouts_map_like_the_sdk() {
        let (url, task) = silent_server().await;
        let opts = ConnectionOpts {
            api_key: Some("k".into()),
            api_url: Some(url.clone()),
            sandbox_url: Some(url),
            request_timeout_ms: Some(200),
            http_client: Some(config::new_http_client()),
            ..Default::default()
        };
        let config = Arc::new(ConnectionConfig::with_env(&opts, |_| None).unwrap());
        let t0 = std::time::Instant::now();
        let e = Api::new(config.clone()).kill("x").await.unwrap_err();
        assert_eq!(e, Error::Timeout("The operation was aborted due to timeout".into()));
        assert!(t0.elapsed() < Duration::from_secs(3));
        let conn = SandboxConnection {
            sandbox_id: "sb".into(),
            sandbox_domain: None,
            envd_version: "0.6.4".into(),
            envd_access_token: None,
            traffic_access_token: None,
        };
        let sbx = Sandbox::from_connection(config, conn);
        // requestTimeoutMs until the start event → canceled → TimeoutError.
        let e = sbx.commands().start("true", CommandStartOpts::default()).await.unwrap_err();
        assert_eq!(e.kind(), "TimeoutError");
        assert!(
            e.to_string().starts_with(
                "[canceled] This operation was aborted: This error is likely due to exceeding 'requestTimeoutMs'"
            ),
            "{e}"
        );
        // Unary RPC: the same.
        let e = sbx.files().exists("/x", FilesystemOpts::default()).await.unwrap_err();
        assert!(e.to_string().contains("'requestTimeoutMs'"), "{e}");
        // timeoutMs below the request timeout → deadline_exceeded.
        let e = sbx
            .commands()
            .start("true", CommandStartOpts { timeout_ms: Some(50), request_timeout_ms: Some(0), ..Default::default() })
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("[deadline_exceeded] the operation timed out: "), "{e}");
        task.abort();
    }
}
