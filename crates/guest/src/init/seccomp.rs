//! The sandbox's seccomp profile: Docker's denylist semantics. Every syscall is allowed except
//! those that reach kernel state no sandbox should touch (modules, keyrings, BPF, perf, mounts,
//! new namespaces, the clock, swap, reboot, …); those fail with `EPERM`, as in Docker, so
//! programs see an ordinary permission error instead of being killed.
//!
//! Most of these already fail for want of a capability (the bounding set is Docker's); the
//! filter is the second wall, and the only one for what needs no capability at all: creating a
//! user namespace (which hands out every capability inside it), keyrings, unprivileged BPF,
//! `perf_event_open`, `userfaultfd` and `io_uring`.
//!
//! PID 1 installs it after the sandbox is set up, before envd starts, so envd and everything it
//! starts inherit it; envd mounts nothing after setup and needs none of these calls.
//!
//! `mknod` of character and block devices is denied too: Docker lets it succeed and denies the
//! open in the devices cgroup, which this engine does not set up (see [`super::rootfs`]: the root
//! and `/usr` overlays are also `nodev`).
//!
//! Decisions: `ptrace` and `process_vm_readv`/`writev` are allowed (as Docker on kernels ≥ 4.8):
//! the PID namespace confines them to the sandbox, and PID 1, which holds more capabilities than
//! any other process there, cannot be traced without CAP_SYS_PTRACE, which is not in the bounding
//! set. 32-bit x86 syscalls (`int 0x80`) kill the process (seccompiler checks the architecture);
//! x32 syscalls get `EPERM`.

use crate::error::InitError;
use seccompiler::{
    sock_filter, BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;

/// Syscalls denied whatever their arguments.
const DENIED: &[libc::c_long] = &[
    // Kernel modules.
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    // Keyrings are not namespaced.
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_keyctl,
    // Kernel attack surface reachable without capabilities.
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Mounts: the sandbox's tree is set up once, by PID 1, before this filter.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    // Joining another namespace.
    libc::SYS_setns,
    // The machine.
    libc::SYS_reboot,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_nfsservctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_fanotify_init,
    // The clock is the host's (there is no time namespace here).
    libc::SYS_clock_settime,
    libc::SYS_settimeofday,
    libc::SYS_adjtimex,
    libc::SYS_clock_adjtime,
    // File handles bypass path checks ("shocker").
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
];

#[cfg(target_arch = "x86_64")]
const DENIED_ARCH: &[libc::c_long] = &[libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib, libc::SYS__sysctl];
#[cfg(not(target_arch = "x86_64"))]
const DENIED_ARCH: &[libc::c_long] = &[];

/// Flags of `clone`/`unshare` that make a namespace.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];
/// `unshare` only (for `clone` this bit is part of the exit signal).
const CLONE_NEWTIME: libc::c_int = 0x80;

/// `personality` values Docker allows: Linux, UNAME26, and the query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Bit that marks an x32 syscall number on x86_64.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The compiled profile.
pub(super) fn program() -> Result<BpfProgram, InitError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().chain(DENIED_ARCH).map(|&nr| (nr, vec![])).collect();
    let flag_rules = |flags: &[libc::c_int]| -> Result<Vec<SeccompRule>, InitError> {
        flags.iter().map(|&f| rule(vec![cond(0, SeccompCmpOp::MaskedEq(f as u64), f as u64)?])).collect()
    };
    rules.insert(libc::SYS_clone, flag_rules(NAMESPACE_FLAGS)?);
    rules.insert(libc::SYS_unshare, flag_rules(&[NAMESPACE_FLAGS, &[CLONE_NEWTIME]].concat())?);
    // Device nodes: there is no devices cgroup, so a block device made here would open the
    // host's disk. (FIFOs and sockets are fine; overlayfs makes its own whiteouts in the kernel.)
    let device_rules = |arg: u8| -> Result<Vec<SeccompRule>, InitError> {
        [libc::S_IFCHR, libc::S_IFBLK]
            .iter()
            .map(|&t| rule(vec![cond(arg, SeccompCmpOp::MaskedEq(libc::S_IFMT.into()), t.into())?]))
            .collect()
    };
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_mknod, device_rules(1)?);
    rules.insert(libc::SYS_mknodat, device_rules(2)?);
    // Denied unless the argument is one of the allowed values (conditions of a rule all hold).
    let other_personality = PERSONALITIES.iter().map(|&p| cond(0, SeccompCmpOp::Ne, p)).collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_personality, vec![rule(other_personality)?]);

    let arch = std::env::consts::ARCH.try_into().map_err(failed("seccomp"))?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(failed("seccomp filter"))?;
    let compiled: BpfProgram = filter.try_into().map_err(failed("seccomp filter"))?;

    // Two checks seccompiler has no words for, ahead of its program (its jumps are relative, so
    // it runs unchanged after them): x32 syscall numbers would slip past a denylist keyed by
    // x86_64 numbers, and `clone3` passes its flags in memory a filter cannot read, so it gets
    // ENOSYS, on which the C library falls back to `clone` (as under Docker).
    let ret = |errno: i32| stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | errno as u32);
    let mut prog = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0), // seccomp_data.nr
        jump(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, X32_SYSCALL_BIT, 0, 1),
        ret(libc::EPERM),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, libc::SYS_clone3 as u32, 0, 1),
        ret(libc::ENOSYS),
    ];
    prog.extend(compiled);
    Ok(prog)
}

/// Installs the profile on the calling thread, and so on everything it starts. Call it while
/// the process is single-threaded (threads made before keep no filter) and holds CAP_SYS_ADMIN
/// in its user namespace (or has no_new_privs set, as the tests do).
pub(super) fn install() -> Result<(), InitError> {
    crate::sys::install_seccomp_filter(&program()?).map_err(InitError::SeccompInstall)
}

/// An error of seccompiler's while it builds the filter, at `step`.
fn failed(step: &'static str) -> impl Fn(BackendError) -> InitError {
    move |source| InitError::SeccompFilter { step, source }
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, InitError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(failed("seccomp condition"))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, InitError> {
    SeccompRule::new(conditions).map_err(failed("seccomp rule"))
}

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code: code as u16, jt, jf, k }
}

// The tests fork and make, raw, the system calls the filter must refuse.
#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    /// Runs `f` in a forked child under the profile; returns the child's exit code.
    fn in_child(f: fn() -> i32) -> i32 {
        let prog = program().unwrap();
        // SAFETY: the child only makes raw syscalls and exits; it never returns into the test
        // harness's threads or locks.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: prctl(2) PR_SET_NO_NEW_PRIVS, then the child exits with `f`'s code.
                unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    if seccompiler::apply_filter(&prog).is_err() {
                        libc::_exit(99);
                    }
                    libc::_exit(f())
                }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waitpid(2) on our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "child status {status:#x}");
                libc::WEXITSTATUS(status)
            }
        }
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn denied_calls_get_eperm_and_others_work() {
        // 0: as expected; otherwise the step that failed.
        let code = in_child(|| {
            // SAFETY: raw syscalls with harmless arguments; each is expected to fail or succeed
            // without side effects outside this child.
            unsafe {
                if libc::unshare(libc::CLONE_NEWUSER) != -1 || errno() != libc::EPERM {
                    return 1;
                }
                if libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0) != -1 || errno() != libc::EPERM {
                    return 2;
                }
                if libc::syscall(libc::SYS_clone3, 0, 0) != -1 || errno() != libc::ENOSYS {
                    return 3;
                }
                if libc::personality(0x0040_0000) != -1 || errno() != libc::EPERM {
                    return 4; // READ_IMPLIES_EXEC
                }
                if libc::personality(0xffff_ffff) == -1 {
                    return 5;
                }
                if libc::unshare(libc::CLONE_FILES) != 0 {
                    return 6; // no namespace: allowed
                }
                if libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long) != -1 || errno() != libc::EPERM {
                    return 7;
                }
                let dev = c"/dev/shm/sandbank-seccomp-test-dev".as_ptr();
                if libc::mknodat(libc::AT_FDCWD, dev, libc::S_IFBLK | 0o600, libc::makedev(7, 0)) != -1
                    || errno() != libc::EPERM
                {
                    return 9;
                }
                let pid = libc::fork();
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid < 0 || libc::waitpid(pid, std::ptr::null_mut(), 0) != pid {
                    return 8;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }
}
