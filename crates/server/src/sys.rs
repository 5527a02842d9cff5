//! The server's raw system calls, each behind a safe function: the rest of the crate has no
//! `unsafe` (`#![deny(unsafe_code)]` in main.rs). Here is only what rustix and nix lack: a test
//! fork for `doctor` and glibc's heap.

/// Whether a child can `unshare(flag)`: `Ok(())` or its errno. The child makes only raw system
/// calls, so this is sound from any thread.
pub fn child_can_unshare(flag: libc::c_int) -> Result<(), nix::errno::Errno> {
    // SAFETY: the child only calls async-signal-safe functions (unshare, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(nix::errno::Errno::last());
    }
    if pid == 0 {
        // SAFETY: unshare takes flags only; _exit never returns.
        unsafe {
            let code = if libc::unshare(flag) == 0 { 0 } else { *libc::__errno_location() & 0xff };
            libc::_exit(code);
        }
    }
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)? {
        nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
        nix::sys::wait::WaitStatus::Exited(_, code) => Err(nix::errno::Errno::from_raw(code)),
        _ => Err(nix::errno::Errno::UnknownErrno),
    }
}

/// What glibc's malloc holds, in bytes: (in use, freed but kept, mmapped, arenas).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn heap_info() -> (usize, usize, usize, usize) {
    // SAFETY: mallinfo2 has no preconditions; it only reads malloc's own counters.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd, m.fordblks, m.hblkhd, m.arena)
}

/// Gives the memory glibc's malloc keeps free back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}
