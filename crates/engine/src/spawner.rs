//! Where the engine starts its long-lived children (guests, pasta, namespace holders).

use std::io;
use tokio::sync::oneshot;

/// Starts guests from one long-lived thread: a guest dies with the thread that forked it
/// (`PR_SET_PDEATHSIG`), and runtime threads may come and go.
#[derive(Clone, Debug)]
pub(crate) struct Spawner {
    tx: std::sync::mpsc::Sender<(std::process::Command, oneshot::Sender<io::Result<std::process::Child>>)>,
}

impl Spawner {
    pub(crate) fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<(std::process::Command, oneshot::Sender<_>)>();
        std::thread::Builder::new()
            .name("sandbank-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the spawner thread");
        Self { tx }
    }

    pub(crate) async fn spawn(&self, cmd: std::process::Command) -> io::Result<std::process::Child> {
        let (reply, result) = oneshot::channel();
        self.tx.send((cmd, reply)).map_err(|_| io::Error::other("spawner thread is gone"))?;
        result.await.map_err(|_| io::Error::other("spawner thread is gone"))?
    }
}
