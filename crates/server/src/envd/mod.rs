//! envd, the data plane inside a sandbox: the `process.Process` and `filesystem.Filesystem`
//! Connect services, `GET/POST /files` and `/health`, served over HTTP on a unix socket.

use sandbank_engine::GuestInit;

pub async fn serve(init: GuestInit) -> anyhow::Result<()> {
    let _ = init;
    todo!("envd")
}
