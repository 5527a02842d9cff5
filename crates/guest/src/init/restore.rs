//! A sandbox started from a snapshot with memory: instead of starting a new PID 1, the first
//! process has CRIU restore the snapshot's processes into the sandbox it set up. The root, the
//! `/usr` overlay and the files bound over `/etc` are the new sandbox's (prepared as for any
//! start), and so is its cgroup (CRIU and what it restores are in it already). The namespaces come
//! from the images, made anew: a user namespace CRIU makes cannot enter one made before it. The
//! network namespace is made empty (the checkpoint left the origin's out: its network is the
//! host's pasta's), and CRIU runs `sandbank guest --after-restore` once the namespaces are made,
//! which brings loopback up and gives the copy its own hostname ([`after_restore_main`]). The
//! restored PID 1 is this process's child (`--restore-sibling`), which it then waits for, as it
//! would for a PID 1 of its own.

use crate::error::{During, InitError};
use sandbank_protocol::guest::{FromGuest, GuestConfig, Restore, CHECKPOINT_EXTERNAL_MOUNTS};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, ExitCode};

/// Where CRIU writes the restored PID 1's pid, in the work directory.
const PID_FILE: &str = "restore.pid";
const LOG_FILE: &str = "restore.log";
const ACTION_SCRIPT: &str = "after-restore";
/// Where the action script writes the restored PID 1's pid once its namespaces are there (a file
/// in the sandbox's directory, named to the script by this variable).
const RESTORING_FILE: &str = "restoring.pid";
const RESTORING_ENV: &str = "SANDBANK_RESTORING_FILE";

/// Restores the snapshot's processes into the sandbox; returns the host pid of its PID 1.
pub(super) fn run(c: &GuestConfig, r: &Restore) -> Result<i32, InitError> {
    // CRIU probes the kernel's features on loopback, in this process's network namespace.
    super::net::loopback_up()?;
    let me = std::process::id();
    let _ = fs::remove_file(r.work_dir.join(PID_FILE));
    // CRIU runs an action script by its path, without arguments, at every step of the restore:
    // this binary (the launcher's) for the two steps it has work at, the shell alone for the
    // others (the id is [a-z0-9]).
    let script = r.work_dir.join(ACTION_SCRIPT);
    let text = format!(
        "#!/bin/sh\ncase \"$CRTOOLS_SCRIPT_ACTION\" in\nsetup-namespaces|pre-resume) exec /proc/{me}/exe guest --after-restore {} ;;\nesac\n",
        c.sandbox_id
    );
    fs::write(&script, text)
        .and_then(|()| fs::set_permissions(&script, fs::Permissions::from_mode(0o700)))
        .during(format_args!("write {}", script.display()))?;
    let mut cmd = Command::new(&r.criu);
    cmd.arg("restore")
        .arg("--images-dir")
        .arg(&r.images)
        .arg("--work-dir")
        .arg(&r.work_dir)
        .args(["--log-file", LOG_FILE, "-v2", "--pidfile", PID_FILE])
        .arg("--root")
        .arg(&c.rootfs)
        .args(["--restore-detached", "--restore-sibling", "--tcp-close", "--file-locks"])
        .args(["--ext-mount-map", "auto", "--enable-external-masters", "--manage-cgroups=ignore"])
        .args(["--empty-ns", "net"])
        .arg("--action-script")
        .arg(&script);
    // Its user namespace gets an owner of its own, as a sandbox started afresh does
    // (`userns::Owner`; sandbank's CRIU patch `userns-owner`).
    if c.userns.is_some() {
        cmd.env("CRIU_USERNS_OWNER", sandbank_engine::userns::Owner::fresh().0.to_string());
    }
    for (point, key) in CHECKPOINT_EXTERNAL_MOUNTS {
        let source = match point {
            "/usr" => Some(super::rootfs::usr_mount_point(c)),
            _ => c.bind_files.iter().find(|(_, inside)| inside.as_os_str() == point).map(|(host, _)| host.clone()),
        };
        if let Some(source) = source {
            cmd.arg("--external").arg(format!("mnt[{key}]:{}", source.display()));
        }
    }
    // The action script says when the restored processes' namespaces are there (their memory is
    // restored after): the engine connects their network meanwhile.
    let restoring = r.work_dir.join(RESTORING_FILE);
    let _ = fs::remove_file(&restoring);
    cmd.env(RESTORING_ENV, &restoring);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (done, restoring) = (std::sync::Arc::clone(&done), restoring.clone());
        std::thread::spawn(move || loop {
            // Read once more after CRIU is done: it may have written the file since the last look.
            let finished = done.load(std::sync::atomic::Ordering::Acquire);
            if let Some(pid) = fs::read_to_string(&restoring).ok().and_then(|t| t.trim().parse::<i32>().ok()) {
                super::report(FromGuest::Restoring(pid));
                return;
            }
            if finished {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        })
    };
    let restored = sandbank_engine::criu::run(cmd, &r.work_dir.join(LOG_FILE));
    done.store(true, std::sync::atomic::Ordering::Release);
    // Its report comes before the caller's `ready`.
    let _ = watcher.join();
    restored.map_err(InitError::Restore)?;
    let text = fs::read_to_string(r.work_dir.join(PID_FILE)).during("read the restored PID 1's pid")?;
    text.trim().parse().map_err(|_| InitError::Restore(format!("CRIU wrote {text:?} as the restored pid")))
}

/// `sandbank guest --after-restore HOSTNAME`: CRIU's action script, with `CRTOOLS_INIT_PID` the
/// restored PID 1. Once CRIU has made the namespaces (`setup-namespaces`), before it restores the
/// sockets: loopback up in the new network namespace, and ping allowed there. Before the
/// processes go on (`pre-resume`, after CRIU has restored the UTS namespace's names): the copy's
/// own hostname. Other actions: nothing.
pub fn after_restore_main(hostname: &str) -> ExitCode {
    let done = match std::env::var("CRTOOLS_SCRIPT_ACTION").as_deref() {
        Ok("setup-namespaces") => set_up_network(),
        Ok("pre-resume") => set_hostname(hostname),
        _ => Ok(()),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbank guest --after-restore: {e}");
            ExitCode::from(1)
        }
    }
}

/// The restored PID 1, and into its `kind` namespace.
fn enter(kind: &str, flag: nix::sched::CloneFlags) -> Result<i32, InitError> {
    let pid = std::env::var("CRTOOLS_INIT_PID").ok().and_then(|p| p.parse::<i32>().ok());
    let pid = pid.ok_or_else(|| InitError::Restore("CRTOOLS_INIT_PID is not a pid".into()))?;
    let ns = sandbank_engine::userns::namespace_of(pid, kind)?;
    nix::sched::setns(ns, flag).during(format_args!("enter the {kind} namespace of pid {pid}"))?;
    Ok(pid)
}

fn set_up_network() -> Result<(), InitError> {
    let pid = enter("net", nix::sched::CloneFlags::CLONE_NEWNET)?;
    super::net::loopback_up()?;
    // The groups of its user namespace (all of them without one).
    let gids = fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap_or_default();
    let count = gids.split_whitespace().nth(2).and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
    let last = count.saturating_sub(1).min(u64::from(u32::MAX >> 1));
    let _ = fs::write("/proc/sys/net/ipv4/ping_group_range", format!("0 {last}"));
    // The launcher tells the engine (written aside, then moved: it reads a whole pid or none).
    if let Some(file) = std::env::var_os(RESTORING_ENV).map(std::path::PathBuf::from) {
        let tmp = file.with_extension("tmp");
        fs::write(&tmp, pid.to_string())
            .and_then(|()| fs::rename(&tmp, &file))
            .during(format_args!("write {}", file.display()))?;
    }
    Ok(())
}

fn set_hostname(hostname: &str) -> Result<(), InitError> {
    enter("uts", nix::sched::CloneFlags::CLONE_NEWUTS)?;
    nix::unistd::sethostname(hostname).during("sethostname").map_err(InitError::from)
}
