//! What PID 1 takes away once the sandbox is set up, before the seccomp filter ([`super::seccomp`]):
//! the kernel interfaces of `/proc` and `/sys` that show or change the host (masked or read-only,
//! as Docker does, and a `boot_id` of the sandbox's own), every capability outside Docker's set
//! less NET_RAW, and PID 1's own extra capabilities and dumpability.
//!
//! Setuid programs work (`sudo`, as in the cloud's sandboxes, where `user` has it without a
//! password): no `no_new_privs`, as in Docker. What they gain is root's of the sandbox, which
//! any caller of the API can be already, within the same bounding set.

use crate::error::{During, InitError};
use nix::mount::{mount, MsFlags};
use rustix::thread::CapabilitySet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `/proc` and `/sys` files that show or change the host kernel, hidden or made read-only as
/// Docker does.
const MASKED_PATHS: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/sys/firmware",
];
const READ_ONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Docker's default capability set for root, less NET_RAW: what every program started in the
/// sandbox can have at most (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP). Raw packets could carry any
/// address, 127.0.0.1 included, to the host's network helper (see `sandbank_engine::net`); ping
/// works without NET_RAW through ICMP sockets.
const ALLOWED_CAPS: u64 = 0xa804_05fb;

/// The sandbox's own `/proc/sys/kernel/random/boot_id`, new at each start as a VM's is (the
/// host's would say that every sandbox, and every restart of one, is the same boot): a file of
/// the sandbox's `/dev` tmpfs bound over it read-only, then unlinked from `/dev`.
fn own_boot_id() -> Result<(), InitError> {
    let path = Path::new("/proc/sys/kernel/random/boot_id");
    if !path.exists() {
        return Ok(());
    }
    let b: [u8; 16] = rand::random();
    // A version 4 UUID, as the kernel makes.
    let id = format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:x}{:02x}-{:x}{:x}{:02x}-{}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0x0f,
        b[7],
        8 | (b[8] & 0x3),
        b[8] >> 4,
        b[9],
        b[10..].iter().map(|x| format!("{x:02x}")).collect::<String>()
    );
    let source = Path::new("/dev/.boot_id");
    fs::write(source, format!("{id}\n")).during("boot_id: write")?;
    let bound =
        fs::set_permissions(source, fs::Permissions::from_mode(0o444)).during("boot_id: chmod").and_then(|()| {
            mount(Some(source), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .and_then(|()| remount_read_only(path))
                .during("boot_id: bind")
        });
    let _ = fs::remove_file(source);
    bound.map_err(InitError::from)
}

/// Masks [`MASKED_PATHS`] (an empty read-only tmpfs over a directory, `/dev/null` over a file),
/// makes [`READ_ONLY_PATHS`] read-only, and gives the sandbox its own `boot_id`.
pub(super) fn mask_kernel_interfaces() -> Result<(), InitError> {
    for path in MASKED_PATHS.iter().map(Path::new).filter(|p| p.exists()) {
        let result = if path.is_dir() {
            mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
        } else {
            mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        };
        result.during(format_args!("mask {}", path.display()))?;
    }
    for path in READ_ONLY_PATHS.iter().map(Path::new).filter(|p| p.exists()) {
        mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .and_then(|()| remount_read_only(path))
            .during(format_args!("make {} read-only", path.display()))?;
    }
    // After /proc/sys is made read-only (a recursive bind): bound before, its file would be
    // mounted twice, which a checkpoint cannot restore (CRIU re-creates the deleted file once
    // per mount).
    own_boot_id()
}

/// Makes the bind mount at `path` read-only, without setuid, devices or exec.
fn remount_read_only(path: &Path) -> nix::Result<()> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
}

/// Drops every other capability from the bounding set: PID 1 keeps what it holds (until
/// [`restrict_pid1`]); what it starts, a setuid program included, cannot get more.
pub(super) fn restrict_bounding_set() -> Result<(), InitError> {
    let last: u32 =
        fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    // (Capability numbers fit in 64 bits: Linux has 41.)
    for cap in (0..=last.min(63)).filter(|c| ALLOWED_CAPS & (1 << c) == 0) {
        rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap))
            .during(format_args!("drop capability {cap}"))?;
    }
    Ok(())
}

/// PID 1 keeps no more than the processes it starts: envd needs Docker's set (it runs commands
/// as other users, chowns, reads and writes any file) and mounts nothing after setup. With
/// CAP_SYS_ADMIN, envd's own `/proc/self/map_files/*` would open the host files PID 1 has mapped
/// (its executable, the host's libc) for the files API to read or truncate.
///
/// And it is not dumpable ([`not_dumpable`]).
pub(super) fn restrict_pid1() -> Result<(), InitError> {
    let allowed = CapabilitySet::from_bits_retain(ALLOWED_CAPS);
    let sets =
        rustix::thread::CapabilitySets { effective: allowed, permitted: allowed, inheritable: CapabilitySet::empty() };
    rustix::thread::set_capabilities(None, sets).during("drop PID 1's capabilities")?;
    not_dumpable()
}

/// Makes PID 1 non-dumpable, so that no process in the sandbox passes the ptrace checks on
/// `/proc/1/{fd,exe,maps,environ,mem,…}`: until it runs envd from inside the sandbox (`handoff`),
/// its descriptors and executable are the host's (the server's stderr, the `sandbank` binary),
/// as with runc's init (CVE-2019-5736); after, its memory holds what envd serves with.
pub(super) fn not_dumpable() -> Result<(), InitError> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .during("make PID 1 non-dumpable")
        .map_err(InitError::from)
}
