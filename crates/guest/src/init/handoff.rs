//! From the setup to envd. Once the sandbox is set up, PID 1 binds envd's socket in the sandbox's
//! `/dev` and runs envd from inside the sandbox ([`ENVD_EXE`]): the socket as an inherited
//! descriptor, the rest on stdin (a memfd). From then on nothing PID 1 maps or holds is a host
//! file (until then, its executable is the host's binary and its stderr the server's), and its
//! memory belongs to the sandbox's user namespace, so a checkpoint can take it (it stays
//! non-dumpable for root in the sandbox). [`receive`] is envd's side.

use super::GuestInit;
use crate::error::{During, InitError};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use sandbank_protocol::guest::GuestConfig;
use sandbank_protocol::guest::{ENVD_EXE, ENVD_SOCKET, ENVD_SOCKET_DIR};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;

/// What envd is given on stdin.
#[derive(Debug, Serialize, Deserialize)]
struct Handoff {
    sandbox_id: String,
    env_vars: BTreeMap<String, String>,
    #[serde(default)]
    default_user: Option<String>,
    #[serde(default)]
    default_workdir: Option<String>,
    /// The listening socket's descriptor number (inherited).
    listener_fd: i32,
}

/// Binds envd's socket, in a directory only root may enter (envd also refuses connections from
/// inside the sandbox: see `envd::OutsideOnly`).
pub(super) fn bind_socket() -> Result<UnixListener, InitError> {
    fs::DirBuilder::new().mode(0o700).create(ENVD_SOCKET_DIR).during(format_args!("create {ENVD_SOCKET_DIR}"))?;
    UnixListener::bind(ENVD_SOCKET).during(format_args!("bind {ENVD_SOCKET}")).map_err(InitError::from)
}

/// Runs envd from inside the sandbox, handing it `listener` and what it serves. Returns only if
/// the exec fails.
pub(super) fn exec_envd(config: &GuestConfig, listener: UnixListener) -> InitError {
    let handoff = Handoff {
        sandbox_id: config.sandbox_id.clone(),
        env_vars: config.env_vars.clone(),
        default_user: config.default_user.clone(),
        default_workdir: config.default_workdir.clone(),
        listener_fd: listener.as_raw_fd(),
    };
    let stdin = (|| {
        let memfd = rustix::fs::memfd_create("envd-handoff", rustix::fs::MemfdFlags::CLOEXEC)?;
        let mut file = fs::File::from(memfd);
        file.write_all(&serde_json::to_vec(&handoff).expect("the handoff serializes"))?;
        file.rewind()?;
        Ok::<_, std::io::Error>(file)
    })();
    let stdin = match stdin.during("write envd's handoff") {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    // The one descriptor envd inherits besides stdio.
    if let Err(e) = fcntl(&listener, FcntlArg::F_SETFD(FdFlag::empty())).during("hand envd its socket") {
        return e.into();
    }
    let mut cmd = std::process::Command::new(ENVD_EXE);
    cmd.arg0("envd").args(["guest", "--envd"]).stdin(stdin);
    let e = Err::<(), _>(cmd.exec()).during(format_args!("exec {ENVD_EXE}"));
    e.map_or_else(InitError::from, |()| unreachable!("exec returns only on failure"))
}

/// envd's side of [`exec_envd`]: what PID 1 serves, from stdin (then `/dev/null`) and the
/// inherited socket.
pub(crate) fn receive() -> Result<GuestInit, InitError> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).during("read the handoff on stdin")?;
    let handoff: Handoff = serde_json::from_str(&text).map_err(InitError::Config)?;
    let null = fs::File::open("/dev/null").during("open /dev/null")?;
    nix::unistd::dup2_stdin(&null).during("stdin from /dev/null")?;
    let listener = crate::sys::inherited_listener(handoff.listener_fd)
        .during(format_args!("take the socket at descriptor {}", handoff.listener_fd))?;
    Ok(GuestInit {
        sandbox_id: handoff.sandbox_id,
        listener,
        env_vars: handoff.env_vars,
        default_user: handoff.default_user,
        default_workdir: handoff.default_workdir,
    })
}
