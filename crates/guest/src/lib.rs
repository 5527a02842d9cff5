//! What runs inside a sandbox: `sandbank guest`, started by the engine in the sandbox's own mount
//! namespace. [`init`] sets the sandbox up (its root, `/dev`, the security walls, its network) and
//! returns in its PID 1, which then serves `envd` on a unix socket the server reaches from
//! outside.
//!
//! The engine never calls into this crate: it execs the `sandbank` binary and speaks to it over
//! stdin and stdout (`sandbank_protocol::guest`: the config, then `net`, `joined`, `ready` or an
//! error). This crate builds on the engine's namespace and mount primitives (`userns`, `mounts`,
//! `tree`), which the engine uses itself.
//!
//! - [`init`]: everything before PID 1 serves envd (`rootfs`, `dev`, `security` and `seccomp`,
//!   `net`).
//! - `envd`: the data plane (processes, files, watches), served by PID 1.
//! - `sys`: the raw system calls, the only `unsafe` here.

#![deny(unsafe_code)]

mod envd;
mod error;
pub mod init;
// The one module with `unsafe`: every raw system call the guest makes.
#[allow(unsafe_code)]
mod sys;

pub use error::InitError;
use std::process::ExitCode;

/// `sandbank guest`: enters the sandbox its config (on stdin) describes; its PID 1 runs envd.
pub fn main() -> ExitCode {
    let Err(e) = init::enter();
    eprintln!("sandbank guest: {e}");
    ExitCode::from(1)
}

/// `sandbank guest --envd`: PID 1 once it has set its sandbox up and run envd from inside it
/// (see `init::handoff`); serves envd until it stops.
pub fn envd_main() -> ExitCode {
    let init = init::become_envd();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match runtime.block_on(envd::serve(init)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbank guest: envd: {e}");
            ExitCode::from(1)
        }
    }
}

/// `sandbank guest --hold-namespaces`: keeps the namespaces the engine started it in (a network
/// made ahead of time, which the next sandbox joins) until stdin closes: the engine drops it, or
/// dies.
pub fn hold_namespaces_main() -> ExitCode {
    use std::io::Read;
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    ExitCode::SUCCESS
}
