//! The guest's raw system calls, each behind a safe function: the rest of the crate has no
//! `unsafe` (`#![deny(unsafe_code)]` in lib.rs). What rustix or nix wraps is used from them
//! directly; here is only what they lack: bringing an interface up. (`clone3` into PID 1's
//! namespaces is the engine's, which its user-namespace probe makes too.)

use std::ffi::CStr;
use std::io;
use std::os::fd::AsRawFd;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Brings the network interface `name` up (`SIOCGIFFLAGS`, then `SIOCSIFFLAGS` with
/// `IFF_UP | IFF_RUNNING`).
pub fn interface_up(name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: an all-zero ifreq is valid; the name is set below, within IFNAMSIZ with its NUL.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in bytes.iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS on an open socket with a live ifreq naming the interface;
    // `ifru_flags` is the union member these requests use.
    unsafe {
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}
