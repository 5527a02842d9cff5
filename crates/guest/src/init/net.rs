//! The sandbox's network namespace: joined or made by the first process (the engine connects it
//! to the host's network meanwhile, see `sandbank_engine::net`), then loopback and ICMP sockets
//! in PID 1.

use crate::error::{During, InitError};
use sandbank_engine::userns::{self, Namespaces};
use sandbank_protocol::guest::{GuestConfig, IdMap};
use std::fs;

/// Moves this process into the sandbox's network namespace: one owned by the sandbox's user
/// namespace (returned, for the rest of the setup to use) when it has one, else one of its own.
/// Both are made here, or were made ahead of time by the process `namespaces_of`.
pub(super) fn enter_network(c: &GuestConfig) -> Result<Option<Namespaces>, InitError> {
    match (&c.userns, c.namespaces_of) {
        (Some(map), made) => {
            let ns = match made {
                Some(pid) => Namespaces::of(pid),
                None => Namespaces::new(map),
            }?;
            ns.enter_net()?;
            Ok(Some(ns))
        }
        (None, Some(pid)) => {
            let net = userns::namespace_of(pid, "net")?;
            nix::sched::setns(net, nix::sched::CloneFlags::CLONE_NEWNET)
                .during("join the sandbox's network namespace")?;
            Ok(None)
        }
        (None, None) => {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).during("unshare the network namespace")?;
            Ok(None)
        }
    }
}

/// Brings up `lo` in the new network namespace (it starts down).
pub(super) fn loopback_up() -> Result<(), InitError> {
    crate::sys::interface_up(c"lo").during("bring lo up").map_err(InitError::from)
}

/// ICMP echo sockets for every group the sandbox has, as ping needs without NET_RAW (a
/// per-namespace setting; the groups must be mapped in the sandbox's user namespace). Best
/// effort: a sandbox without ping still works.
pub(super) fn allow_ping(userns: Option<&IdMap>) {
    let last_gid = userns.map_or(u32::MAX >> 1, |m| m.count - 1);
    let _ = fs::write("/proc/sys/net/ipv4/ping_group_range", format!("0 {last_gid}"));
}
