//! Real sandboxes through the engine and the guest's setup, with a stub in place of envd: this
//! test executable is its own guest (`lifecycle guest`, its config on stdin), which sets the
//! sandbox up as `sandbank guest` does ([`sandbank_guest::init`]); its PID 1 runs it again from
//! inside the sandbox (`lifecycle guest --envd`, as it would envd), which answers one shell
//! command per connection on the envd socket. (Here, not in the engine's crate: this crate is the
//! lowest that has both.) Needs root, as the engine does.

use sandbank_engine::userns::IdMap;
use sandbank_engine::{id, Engine, EngineConfig, EngineError, ListFilter, SandboxSpec, SnapshotMode};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("guest") {
        return match args.get(2).map(String::as_str) {
            Some("--hold-namespaces") => sandbank_guest::hold_namespaces_main(),
            Some("--probe-userns") => {
                let lower = (args.get(4).map(String::as_str) == Some("--probe-lower")).then(|| Path::new(&args[5]));
                sandbank_engine::userns::probe_main(Path::new(&args[3]), lower)
            }
            Some("--envd") => stub_envd(),
            Some("--after-restore") => sandbank_guest::init::after_restore_main(&args[3]),
            _ => {
                let Err(e) = sandbank_guest::init::enter();
                eprintln!("stub guest: {e}");
                ExitCode::from(1)
            }
        };
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let tests: &[(&str, fn())] = &[
        ("sandbox_is_isolated_and_leaves_nothing_behind", sandbox_is_isolated_and_leaves_nothing_behind),
        ("limits_are_enforced_by_the_cgroup", limits_are_enforced_by_the_cgroup),
        ("disk_limit_stops_writes_and_keeps_snapshots", disk_limit_stops_writes_and_keeps_snapshots),
        ("second_engine_on_a_data_dir_is_refused", second_engine_on_a_data_dir_is_refused),
        ("unknown_template_is_an_error", unknown_template_is_an_error),
        ("snapshots_capture_files_and_start_new_sandboxes", snapshots_capture_files_and_start_new_sandboxes),
        ("snapshots_with_memory_keep_the_origin_running", snapshots_with_memory_keep_the_origin_running),
        ("snapshots_with_memory_need_criu", snapshots_with_memory_need_criu),
        ("snapshots_with_memory_go_on_in_every_copy", snapshots_with_memory_go_on_in_every_copy),
        ("snapshot_chains_flatten_and_layers_are_collected", snapshot_chains_flatten_and_layers_are_collected),
        ("snapshots_survive_a_restart", snapshots_survive_a_restart),
        ("snapshots_on_the_copy_on_write_store", snapshots_on_the_copy_on_write_store),
        ("snapshots_cross_user_namespace_modes", snapshots_cross_user_namespace_modes),
        ("internet_access_through_pasta", internet_access_through_pasta),
        ("internet_access_without_pasta", internet_access_without_pasta),
        ("internet_access_when_pasta_fails", internet_access_when_pasta_fails),
        ("no_user_namespace_is_refused_unless_asked_for", no_user_namespace_is_refused_unless_asked_for),
        ("leftovers_are_quarantined_and_stale_cgroups_removed", leftovers_are_quarantined_and_stale_cgroups_removed),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let result = std::panic::catch_unwind(test);
        println!("test {name} ... {}", if result.is_ok() { "ok" } else { "FAILED" });
        if result.is_ok() {
            passed += 1
        } else {
            failed += 1
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

/// PID 1 of a test sandbox, once set up: one `sh -c` per connection, its output written back.
fn stub_envd() -> ! {
    let init = sandbank_guest::init::become_envd();
    for conn in init.listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let out = Command::new("/bin/sh").arg("-c").arg(line.trim()).envs(&init.env_vars).output();
        let text = match out {
            Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            Err(e) => format!("spawn failed: {e}"),
        };
        let _ = conn.write_all(text.as_bytes());
    }
    std::process::exit(0)
}

fn run(socket: &Path, cmd: &str) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    writeln!(s, "{cmd}").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn open(dir: &Path) -> Engine {
    // As `sandbank serve` leaves it: only host root may enter.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pasta = sandbank_engine::net::find_pasta().ok();
    Engine::open(EngineConfig {
        data_dir: dir.to_path_buf(),
        guest_exe: std::env::current_exe().unwrap(),
        disk_limit_mb: None,
        pasta,
        user_namespace: true,
        layer_store: Default::default(),
        images_dir: Some(sandbank_testkit::images_dir()),
        registries: Default::default(),
    })
    .unwrap()
}

/// An engine on `dir` with the btrfs layer store (its image in `dir`).
fn open_on_store(dir: &Path) -> Engine {
    open_on_store_with(dir, None)
}

/// The same, with a default disk limit.
fn open_on_store_with(dir: &Path, disk_limit_mb: Option<u64>) -> Engine {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    Engine::open(EngineConfig {
        data_dir: dir.to_path_buf(),
        guest_exe: std::env::current_exe().unwrap(),
        disk_limit_mb,
        pasta: None,
        user_namespace: true,
        layer_store: sandbank_engine::LayerStore::Btrfs { image_bytes: 4 << 30 },
        images_dir: Some(sandbank_testkit::images_dir()),
        registries: Default::default(),
    })
    .unwrap()
}

fn spec(engine: &Engine) -> SandboxSpec {
    SandboxSpec {
        egress: Default::default(),
        id: id::new_id(),
        template: "base".into(),
        env_vars: BTreeMap::from([("GREETING".into(), "hello".into())]),
        default_user: None,
        default_workdir: None,
        limits: engine.default_limits(),
        // Most tests need no network; `internet_access_*` ask for it.
        allow_internet_access: Some(false),
    }
}

fn sandbox_is_isolated_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    let spec = spec(&engine);
    let started = Instant::now();
    let sb = rt.block_on(engine.create(spec.clone())).unwrap();
    eprintln!("created in {:?}", started.elapsed());

    assert_eq!(run(&sb.envd_socket, "hostname").trim(), spec.id);
    assert_eq!(run(&sb.envd_socket, "cat /etc/hostname").trim(), spec.id);
    assert!(
        run(&sb.envd_socket, "getent hosts $(hostname)").starts_with("127.0.1.1"),
        "the sandbox resolves its own name"
    );
    let init = run(&sb.envd_socket, "tr '\\0' ' ' < /proc/1/cmdline");
    assert_eq!(init, "envd guest --envd ", "PID 1 is envd, and no host path is in its command line");
    let exe = run(&sb.envd_socket, "readlink -v /proc/1/exe 2>&1");
    assert!(exe.contains("Permission denied"), "PID 1 is not dumpable: {exe}");
    assert_eq!(run(&sb.envd_socket, "echo $GREETING").trim(), "hello");
    let passwd = run(&sb.envd_socket, "grep ^user: /etc/passwd");
    assert!(passwd.starts_with("user:x:1000:1000:"), "{passwd}");
    assert_eq!(run(&sb.envd_socket, "ls -A /home").trim(), "user", "no host homes");
    assert_eq!(run(&sb.envd_socket, "ls -A /root").split_whitespace().collect::<Vec<_>>(), [".bashrc", ".profile"]);
    // The base is Debian's, not the host's: a file dropped into the host's /usr is not there,
    // and the cloud base's tools are.
    let probe = std::path::PathBuf::from(format!("/usr/share/sandbank-host-probe-{}", std::process::id()));
    std::fs::write(&probe, "host").unwrap();
    let seen = run(&sb.envd_socket, &format!("ls {} 2>&1", probe.display()));
    std::fs::remove_file(&probe).unwrap();
    assert!(seen.contains("No such file"), "{seen}");
    let os = run(&sb.envd_socket, ". /etc/os-release; echo $ID $VERSION_ID");
    assert_eq!(os.trim(), "debian 12", "{os}");
    let tools = "sudo python3 pip3 node npm git curl wget ps bash";
    let found = run(&sb.envd_socket, &format!("for t in {tools}; do command -v $t >/dev/null && echo $t; done"));
    assert_eq!(found.split_whitespace().collect::<Vec<_>>().join(" "), tools);
    assert_eq!(run(&sb.envd_socket, "python3 -m venv /tmp/venv && /tmp/venv/bin/python -c 'print(6*7)'"), "42\n");
    let data_dir = tmp.path().display().to_string();
    assert!(run(&sb.envd_socket, &format!("ls {data_dir} 2>&1")).contains("No such file"));
    let sockets = run(&sb.envd_socket, "cat /proc/net/unix");
    assert!(
        sockets.contains(" /dev/.sandbank/envd.sock\n") && !sockets.contains(&data_dir),
        "the envd socket, in the sandbox's /dev: {sockets}"
    );
    let shadow = run(&sb.envd_socket, "cat /etc/shadow");
    assert!(
        shadow.lines().all(|l| l.split(':').nth(1).is_some_and(|p| p == "*" || p == "!")),
        "no passwords: {shadow}"
    );
    let procs = run(&sb.envd_socket, "ls /proc | grep -c '^[0-9]'");
    assert!(procs.trim().parse::<u32>().unwrap() <= 4, "only the sandbox's processes: {procs}");
    let links = run(&sb.envd_socket, "cat /proc/net/dev | grep -c :");
    assert_eq!(links.trim(), "1", "loopback only");
    assert!(run(&sb.envd_socket, "ls -l /dev/null").starts_with("crw-rw-rw-"));
    assert_eq!(run(&sb.envd_socket, "head -c 4 /dev/zero | od -An -tx1").trim(), "00 00 00 00");
    // Root in the sandbox is host uid 100000 (this machine has idmapped layers: Linux 5.19+).
    assert_eq!(engine.user_namespace(), Some(IdMap::DEFAULT), "this machine supports user namespaces for sandboxes");
    let map = run(&sb.envd_socket, "cat /proc/self/uid_map /proc/self/gid_map");
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536", "0", "100000", "65536"], "{map}");
    run(&sb.envd_socket, "sleep 30 >/dev/null 2>&1 & echo $! > /tmp/sleep.pid");
    let sleeper = host_pids_of(&spec.id, "sleep");
    assert_eq!(sleeper.len(), 1, "one sleep in the sandbox's cgroup: {sleeper:?}");
    assert_eq!(host_ids(sleeper[0]), (100_000, 100_000), "a process of the sandbox's root, seen from the host");
    run(&sb.envd_socket, "install -o 1000 -g 1000 /dev/null /tmp/owned-by-user");
    let upper = tmp.path().join(format!("sandboxes/{}/layer/root/tmp", spec.id));
    use std::os::unix::fs::MetadataExt;
    let owner = |f: &str| std::fs::metadata(upper.join(f)).map(|m| (m.uid(), m.gid())).unwrap();
    assert_eq!(owner("sleep.pid"), (0, 0), "the sandbox's root writes files as uid 0 on disk");
    assert_eq!(owner("owned-by-user"), (1000, 1000));
    let devices = run(&sb.envd_socket, "chmod 600 /dev/null 2>&1; echo x > /dev/null && echo usable; echo extra >> /etc/hosts && stat -c %u /etc/hosts");
    assert!(
        devices.contains("Operation not permitted") && devices.contains("usable\n0\n"),
        "the host's /dev/null cannot be changed; /etc/hosts is root's: {devices}"
    );
    // Root in the sandbox holds Docker's default capabilities less NET_RAW, and cannot gain any;
    // `user` becomes that root through sudo (setuid works: no no_new_privs), and no more.
    let status = run(&sb.envd_socket, "grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status");
    assert!(status.contains("CapBnd:\t00000000a80405fb"), "{status}");
    assert!(status.contains("CapEff:\t00000000a80405fb"), "{status}");
    assert!(status.contains("NoNewPrivs:\t0") && status.contains("Seccomp:\t2"), "{status}");
    let sudo = run(&sb.envd_socket, "su user -c \"sudo -n grep -E '^(Uid|CapEff|Seccomp):' /proc/self/status\" 2>&1");
    assert!(sudo.contains("Uid:\t0\t0") && sudo.contains("CapEff:\t00000000a80405fb"), "{sudo}");
    assert!(sudo.contains("Seccomp:\t2"), "{sudo}");
    assert!(run(&sb.envd_socket, "mount -t tmpfs x /mnt 2>&1; echo rc=$?").contains("rc=32"), "no mounting");
    assert!(run(&sb.envd_socket, "cat /proc/keys | wc -c").trim() == "0", "/proc/keys is masked");
    let write = run(&sb.envd_socket, "echo 1 > /proc/sys/vm/drop_caches 2>&1; echo rc=$?");
    assert!(write.contains("Read-only file system"), "/proc/sys is read-only: {write}");
    assert!(run(&sb.envd_socket, "ls /sys/firmware | wc -l").trim() == "0", "/sys/firmware is masked");
    // The seccomp profile: no new namespaces (not even an unprivileged user namespace), no
    // keyrings; threads and processes still start.
    for cmd in ["unshare -U true", "unshare -m true", "unshare -n true"] {
        let out = run(&sb.envd_socket, &format!("{cmd} 2>&1; echo rc=$?"));
        assert!(out.contains("Operation not permitted") && !out.contains("rc=0"), "{cmd}: {out}");
    }
    let out = run(&sb.envd_socket, "mknod /tmp/blk b 7 0 2>&1; mknod /dev/c c 1 3 2>&1; mkfifo /tmp/fifo && echo fifo");
    assert_eq!(out.matches("Operation not permitted").count(), 2, "no device nodes: {out}");
    assert!(out.contains("fifo"), "{out}");
    let keyctl = format!(
        "python3 -c 'import ctypes,os; r=ctypes.CDLL(None,use_errno=True).syscall({},0,0,0,0,0); print(r, os.strerror(ctypes.get_errno()))'",
        libc::SYS_keyctl
    );
    assert_eq!(run(&sb.envd_socket, &keyctl).trim(), "-1 Operation not permitted", "keyctl");
    let threads =
        "python3 -c 'import threading; t=threading.Thread(target=print,args=(\"thread\",)); t.start(); t.join()'";
    assert_eq!(run(&sb.envd_socket, threads).trim(), "thread");
    assert!(run(&sb.envd_socket, "grep Seccomp: /proc/self/status").contains("Seccomp:\t2"));
    // PID 1 holds no more than that either, and its host descriptors and executable are out of reach.
    assert!(run(&sb.envd_socket, "grep CapEff /proc/1/status").contains("00000000a80405fb"));
    for probe in [
        "ls -l /proc/1/fd/2",
        "cat /proc/1/fd/0",
        "head -c 1 /proc/1/exe",
        "cat /proc/1/environ",
        "ls /proc/1/map_files",
    ] {
        let out = run(&sb.envd_socket, &format!("{probe} 2>&1; echo rc=$?"));
        assert!(out.contains("Permission denied") && !out.contains("rc=0"), "{probe}: {out}");
    }
    run(&sb.envd_socket, "echo data > /tmp/x; echo lib > /usr/local/x");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join(format!("sandboxes/{}/layer/root/tmp/x", spec.id))).unwrap(),
        "data\n"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join(format!("sandboxes/{}/layer/usr/local/x", spec.id))).unwrap(),
        "lib\n"
    );
    assert!(!Path::new("/usr/local/x").exists(), "the host's /usr is untouched");

    let started = Instant::now();
    assert!(rt.block_on(engine.kill(&spec.id)).unwrap());
    eprintln!("killed in {:?}", started.elapsed());
    assert!(!rt.block_on(engine.kill(&spec.id)).unwrap(), "a second kill finds nothing");
    assert!(!tmp.path().join("sandboxes").join(&spec.id).exists());
    assert_no_cgroup(&spec.id);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&data_dir), "{mounts}");
    rt.block_on(engine.shutdown());
}

fn limits_are_enforced_by_the_cgroup() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    let mut spec = spec(&engine);
    spec.limits.memory_mb = 64;
    spec.limits.pids = 50;
    let sb = rt.block_on(engine.create(spec.clone())).unwrap();
    let cgroup = run(&sb.envd_socket, "cat /proc/self/cgroup");
    assert!(cgroup.contains(&spec.id), "{cgroup}");
    // Past the pids limit, fork fails inside the sandbox and nowhere else.
    let out = run(&sb.envd_socket, "(for i in $(seq 80); do sleep 5 & done) 2>&1 | head -2");
    assert!(out.contains("fork"), "fork past pids.max must fail: {out}");
    // Past the memory limit, the allocating process is killed.
    let out = run(&sb.envd_socket, "python3 -c 'b=b\"x\"*(200<<20)' 2>&1; echo rc=$?");
    assert!(out.contains("rc=137") || out.contains("MemoryError"), "allocating 200 MiB must fail under 64 MiB: {out}");
    rt.block_on(engine.shutdown());
    assert_no_cgroup(&spec.id);
}

fn second_engine_on_a_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = open(tmp.path());
    let err = Engine::open(EngineConfig {
        data_dir: tmp.path().to_path_buf(),
        guest_exe: "/bin/true".into(),
        disk_limit_mb: None,
        pasta: None,
        user_namespace: true,
        layer_store: Default::default(),
        images_dir: Some(sandbank_testkit::images_dir()),
        registries: Default::default(),
    })
    .unwrap_err();
    match &err {
        EngineError::Locked { pid, .. } => assert_eq!(pid, &std::process::id().to_string()),
        other => panic!("expected Locked, got {other}"),
    }
    assert!(err.to_string().contains("in use by another sandbank serve"), "{err}");
    drop(engine);
}

/// What a start cannot remove of a crashed server's leftovers goes to quarantine, and the start
/// goes on; the cgroups of servers that are gone go, those of live servers stay.
fn leftovers_are_quarantined_and_stale_cgroups_removed() {
    use sandbank_engine::cgroup::Cgroups;
    let tmp = tempfile::tempdir().unwrap();
    let limits = open(tmp.path()).default_limits();
    // A sandbox directory holding an immutable file: not even root may remove it.
    let bad = tmp.path().join("sandboxes/bad");
    std::fs::create_dir_all(bad.join("sub")).unwrap();
    std::fs::write(bad.join("sub/stuck"), "x").unwrap();
    let chattr =
        |flag: &str, path: &Path| assert!(Command::new("chattr").arg(flag).arg(path).status().unwrap().success());
    chattr("+i", &bad.join("sub/stuck"));
    // The cgroups of a server that is gone (no process holds its data directory's lock), with a
    // sandbox group, and those of a live one (this process holds its lock), with none.
    let (gone_dir, live_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _live_lock = std::fs::File::create(live_dir.path().join("lock")).unwrap();
    let name = |d: &Path| sandbank_engine::engine::cgroup_name(&std::fs::canonicalize(d).unwrap());
    let gone = Cgroups::setup(&name(gone_dir.path())).unwrap();
    gone.create("leftoversandbox00000", &limits).unwrap();
    let live = Cgroups::setup(&name(live_dir.path())).unwrap();
    let parents =
        |cg: &Cgroups| cg.dirs("x").into_iter().map(|d| d.parent().unwrap().to_path_buf()).collect::<Vec<_>>();

    let engine = open(tmp.path());

    assert!(!bad.exists());
    let quarantined: Vec<_> =
        std::fs::read_dir(tmp.path().join("quarantine")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(quarantined[0].file_name().unwrap().to_string_lossy().starts_with("bad."), "{quarantined:?}");
    assert!(parents(&gone).iter().all(|p| !p.exists()), "the groups of a server that is gone are removed");
    assert!(parents(&live).iter().all(|p| p.exists()), "the groups of a live server stay");

    live.teardown(std::time::Duration::from_secs(1)).unwrap();
    chattr("-i", &quarantined[0].join("sub/stuck"));
    drop(engine);
}

fn unknown_template_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    let mut spec = spec(&engine);
    spec.template = "nope".into();
    match rt.block_on(engine.create(spec.clone())) {
        Err(EngineError::TemplateNotFound(t)) => assert_eq!(t, "nope"),
        other => panic!("expected TemplateNotFound, got {other:?}"),
    }
    assert!(!tmp.path().join("sandboxes").join(&spec.id).exists());
}

/// On the btrfs store every sandbox has a disk limit (its layer's quota group): the server's
/// default, or its own. Past it, writes fail inside, for root and `user` alike; a snapshot and a
/// sandbox from it work as ever, the new sandbox with a limit of its own; what a snapshot keeps
/// does not count against its origin.
fn disk_limit_stops_writes_and_keeps_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open_on_store_with(tmp.path(), Some(64));
    assert!(engine.disk_limits());
    assert_eq!(engine.default_limits().disk_mb, 64);
    let sb = rt.block_on(engine.create(spec(&engine))).unwrap();
    let sock = &sb.envd_socket;
    run(sock, "echo kept > /tmp/kept");
    let out = run(sock, "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; echo rc=$?");
    assert!(out.contains("Disk quota exceeded") && out.contains("rc=1"), "{out}");
    let out = run(sock, "su user -c 'head -c 4M /dev/zero > /tmp/user-file' 2>&1; echo rc=$?");
    assert!(out.contains("Disk quota exceeded"), "no reserve for root: {out}");
    // What the snapshot keeps of 40 MB written before it no longer counts once deleted: the
    // sandbox can write 40 MB again.
    run(sock, "rm -f /tmp/fill /tmp/user-file; dd if=/dev/zero of=/tmp/before bs=1M count=40 2>&1");
    let snap = rt.block_on(engine.snapshot(&sb.id, None)).unwrap();
    assert!(snap.size_bytes >= 40 << 20, "the size is the layer's, from its quota group: {snap:?}");
    let out = run(sock, "rm /tmp/before; sync; dd if=/dev/zero of=/tmp/after bs=1M count=40 2>&1; echo rc=$?");
    assert!(out.contains("rc=0"), "{out}");
    // A sandbox from the snapshot: its own limit (asked for), its own writes only.
    let mut child_spec = SandboxSpec { template: snap.id.clone(), ..spec(&engine) };
    child_spec.limits.disk_mb = 16;
    let child = rt.block_on(engine.create(child_spec)).unwrap();
    assert_eq!(run(&child.envd_socket, "cat /tmp/kept; stat -c %s /tmp/before").trim(), "kept\n41943040");
    let out = run(&child.envd_socket, "dd if=/dev/zero of=/tmp/fill bs=1M count=32 2>&1; echo rc=$?");
    assert!(out.contains("Disk quota exceeded") && out.contains("rc=1"), "{out}");
    for id in [&sb.id, &child.id] {
        assert!(rt.block_on(engine.kill(id)).unwrap());
    }
    rt.block_on(engine.shutdown());
}

fn assert_no_cgroup(id: &str) {
    let found = Command::new("find").args(["/sys/fs/cgroup", "-maxdepth", "4", "-name", id]).output().unwrap();
    assert!(found.stdout.is_empty(), "cgroup left: {}", String::from_utf8_lossy(&found.stdout));
}

fn snapshots_capture_files_and_start_new_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    let origin = rt.block_on(engine.create(spec(&engine))).unwrap();
    let sock = &origin.envd_socket;
    run(
        sock,
        "echo ready > /tmp/status.txt; mkdir -p /home/user/empty; ln -s status.txt /tmp/link; \
               ln /tmp/status.txt /tmp/hard; rm /etc/debian_version; echo new > /usr/local/added; \
               chown 1000:1000 /tmp/status.txt; chmod 640 /tmp/status.txt; \
               truncate -s 1G /tmp/sparse; mkfifo /tmp/fifo",
    );
    // A process that keeps running through the snapshot.
    run(sock, "(i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/counter; sleep 0.01; done) >/dev/null 2>&1 &");
    let snap = rt.block_on(engine.snapshot(&origin.id, None)).unwrap();
    assert!(id::is_valid(&snap.id), "{snap:?}");
    assert_eq!(snap.sandbox_id, origin.id);
    assert_eq!(snap.parent_id, None);
    let c1: u64 = run(sock, "sleep 0.2; cat /tmp/counter").trim().parse().unwrap();
    let c2: u64 = run(sock, "sleep 0.2; cat /tmp/counter").trim().parse().unwrap();
    assert!(c2 > c1, "the origin carries on after the snapshot: {c1} then {c2}");

    let mut child_spec = spec(&engine);
    child_spec.template = format!("{}:default", snap.id);
    let child = rt.block_on(engine.create(child_spec)).unwrap();
    assert_eq!(child.template_id, snap.id);
    let s = &child.envd_socket;
    assert_eq!(run(s, "cat /tmp/status.txt"), "ready\n");
    assert_eq!(run(s, "stat -c '%U %a %h' /tmp/status.txt").trim(), "user 640 2");
    assert_eq!(run(s, "readlink /tmp/link").trim(), "status.txt");
    assert_eq!(run(s, "test -d /home/user/empty && echo dir").trim(), "dir");
    assert_eq!(run(s, "test -e /etc/debian_version || echo deleted").trim(), "deleted");
    assert_eq!(run(s, "cat /etc/hostname").trim(), child.id, "the hostname file is the sandbox's own");
    assert_eq!(run(s, "cat /usr/local/added").trim(), "new");
    assert_eq!(run(s, "stat -c %s /tmp/sparse").trim(), "1073741824");
    assert_eq!(run(s, "test -p /tmp/fifo && echo fifo").trim(), "fifo");
    assert!(
        !tmp.path().join("sandboxes").join(&child.id).join("layer/root/tmp").exists(),
        "the child's upper starts empty"
    );

    // Deleting is refused while the child runs, by ID or with the tag.
    match engine.delete_snapshot(&format!("{}:default", snap.id)) {
        Err(EngineError::SnapshotInUse { sandboxes, .. }) => assert_eq!(sandboxes, vec![child.id.clone()]),
        other => panic!("expected SnapshotInUse, got {other:?}"),
    }
    // A snapshot of the child chains onto the first.
    let grandchild_snap = rt.block_on(engine.snapshot(&child.id, Some("second".into()))).unwrap();
    assert_eq!(grandchild_snap.parent_id.as_deref(), Some(snap.id.as_str()));
    assert_eq!(grandchild_snap.names, vec!["second".to_string()]);
    let listed = engine.list_snapshots(&ListFilter::default(), None, 10).unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec![grandchild_snap.id.as_str(), snap.id.as_str()]
    );
    assert_eq!(
        engine.list_snapshots(&ListFilter { origin: Some(&origin.id), ..Default::default() }, None, 10).unwrap().len(),
        1
    );

    rt.block_on(engine.kill(&child.id)).unwrap();
    assert!(engine.delete_snapshot(&snap.id).unwrap());
    assert!(!engine.delete_snapshot(&snap.id).unwrap(), "a second delete finds nothing");
    // Its layer stays: the second snapshot stacks on it.
    assert!(tmp.path().join("layers").join(&snap.id).exists());
    let mut from_named = spec(&engine);
    from_named.template = "second".into();
    let s3 = rt.block_on(engine.create(from_named)).unwrap();
    assert_eq!(run(&s3.envd_socket, "cat /tmp/status.txt"), "ready\n");
    rt.block_on(engine.kill(&s3.id)).unwrap();
    assert!(engine.delete_snapshot("second").unwrap());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("layers"))
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count(),
        0,
        "every layer is collected"
    );
    rt.block_on(engine.shutdown());
}

/// A server on loopback whose only state is a counter in memory: each request gets the next
/// number (shared with the JS tests and bench/fork.mjs).
const COUNTER_SERVER: &str = include_str!("../../../__test__/fixtures/counter.py");

/// A new sandbox running [`COUNTER_SERVER`] (written through base64: the stub envd takes one line
/// per command), once it has answered 1.
fn counter_origin(rt: &tokio::runtime::Runtime, engine: &Engine) -> sandbank_engine::SandboxHandle {
    use base64::Engine as _;
    let origin = rt.block_on(engine.create(spec(engine))).unwrap();
    let script = base64::engine::general_purpose::STANDARD.encode(COUNTER_SERVER);
    let start = format!("echo {script} | base64 -d > /tmp/counter.py; python3 /tmp/counter.py >/dev/null 2>&1 &");
    run(&origin.envd_socket, &start);
    let up = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        next_count(&origin.envd_socket) == "1"
    });
    assert!(up, "the counter server did not come up: {}", next_count(&origin.envd_socket));
    origin
}

/// The counter server's next number.
fn next_count(socket: &Path) -> String {
    let fetch = r#"python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8000").read().decode())' 2>&1"#;
    run(socket, fetch).trim().to_string()
}

/// A snapshot with memory dumps the origin's processes (frozen meanwhile) into the snapshot's
/// layer, beside its files, and the origin goes on. (Starting sandboxes from it: being built, see
/// docs/FULL-SNAPSHOTS.md.)
fn snapshots_with_memory_keep_the_origin_running() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    let origin = counter_origin(&rt, &engine);
    assert_eq!(next_count(&origin.envd_socket), "2");
    run(&origin.envd_socket, "echo kept > /tmp/file");

    let started = Instant::now();
    let snap = rt.block_on(engine.snapshot_as(&origin.id, None, Some(SnapshotMode::Full))).unwrap();
    eprintln!("snapshot with memory in {:?}", started.elapsed());
    assert_eq!(snap.mode, SnapshotMode::Full);
    assert_eq!(engine.snapshot_info(&snap.id).unwrap().unwrap().mode, SnapshotMode::Full);
    assert_eq!(engine.list_snapshots(&ListFilter::default(), None, 10).unwrap()[0].mode, SnapshotMode::Full);
    let layer = tmp.path().join("layers").join(&snap.id);
    assert_eq!(std::fs::read_to_string(layer.join("root/tmp/file")).unwrap(), "kept\n");
    // The images: the processes' memory (the server's among them), and no log.
    let images: Vec<String> = std::fs::read_dir(layer.join("memory"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(images.iter().any(|n| n.starts_with("pages-")), "{images:?}");
    assert!(images.iter().filter(|n| n.starts_with("core-")).count() >= 2, "PID 1 and the server: {images:?}");
    assert!(!images.iter().any(|n| n.ends_with(".log")), "{images:?}");
    assert!(std::fs::read_dir(tmp.path().join("layers/.staging")).unwrap().next().is_none(), "nothing staged is left");
    // The origin goes on, thawed, with its memory.
    assert_eq!(next_count(&origin.envd_socket), "3");
    // A filesystem snapshot says so.
    let files_only = rt.block_on(engine.snapshot(&origin.id, None)).unwrap();
    assert_eq!(files_only.mode, SnapshotMode::Filesystem);

    let servers = host_pids_of(&origin.id, "python3");
    assert_eq!(servers.len(), 1, "the server runs on in the origin");
    rt.block_on(engine.kill(&origin.id)).unwrap();
    assert!(!Path::new(&format!("/proc/{}", servers[0])).exists(), "the server went with the sandbox");
    for id in [&snap.id, &files_only.id] {
        assert!(engine.delete_snapshot(id).unwrap());
    }
    assert!(!layer.exists(), "the layer goes with its images");
    rt.block_on(engine.shutdown());
}

/// Sandboxes started from a snapshot with memory go on where the origin was, each on its own.
fn snapshots_with_memory_go_on_in_every_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    let origin = counter_origin(&rt, &engine);
    run(&origin.envd_socket, "echo kept > /tmp/file");
    let snap = rt.block_on(engine.snapshot_as(&origin.id, None, Some(SnapshotMode::Full))).unwrap();

    // Two copies at once, from one snapshot: each goes on from 2, on its own.
    let specs: Vec<_> = (0..2)
        .map(|_| {
            let mut s = spec(&engine);
            s.template = snap.id.clone();
            s
        })
        .collect();
    let started = Instant::now();
    let made = rt.block_on(futures_util::future::join_all(specs.into_iter().map(|s| engine.create(s))));
    eprintln!("two copies restored in {:?}", started.elapsed());
    let copies: Vec<_> = made.into_iter().map(Result::unwrap).collect();
    for copy in &copies {
        assert_eq!(next_count(&copy.envd_socket), "2", "the copy has the origin's memory");
        assert_eq!(run(&copy.envd_socket, "cat /tmp/file"), "kept\n");
        assert_eq!(run(&copy.envd_socket, "hostname").trim(), copy.id, "the copy has its own hostname");
        assert_eq!(run(&copy.envd_socket, "cat /etc/hostname").trim(), copy.id);
    }
    assert_eq!(next_count(&copies[0].envd_socket), "3");
    assert_eq!(next_count(&copies[1].envd_socket), "3", "the copies are apart");
    assert_eq!(next_count(&origin.envd_socket), "2", "the origin goes on by itself");
    run(&copies[0].envd_socket, "echo changed > /tmp/file");
    assert_eq!(run(&copies[1].envd_socket, "cat /tmp/file"), "kept\n");

    // A copy with internet access (the origin had none): pasta on its new network namespace.
    let mut online = spec(&engine);
    online.template = snap.id.clone();
    online.allow_internet_access = Some(true);
    let online = rt.block_on(engine.create(online)).unwrap();
    assert!(online.internet);
    assert_eq!(next_count(&online.envd_socket), "2", "its memory is the origin's too");
    let links = run(
        &online.envd_socket,
        "grep -c : /proc/net/dev; awk '$2 == \"00000000\" {print \"default via\", $1}' /proc/net/route",
    );
    assert!(links.starts_with("2\n") && links.contains("default via"), "loopback, a tap and a default route: {links}");
    assert!(!run(&online.envd_socket, "getent hosts pypi.org").trim().is_empty(), "DNS works in the copy");
    // A snapshot with memory of that copy, and a copy of it without internet access.
    let again = rt.block_on(engine.snapshot_as(&online.id, None, Some(SnapshotMode::Full))).unwrap();
    assert_eq!(again.parent_id.as_deref(), Some(snap.id.as_str()));
    let mut offline = spec(&engine);
    offline.template = again.id.clone();
    let offline = rt.block_on(engine.create(offline)).unwrap();
    assert!(!offline.internet);
    assert_eq!(next_count(&offline.envd_socket), "3", "a copy of a copy goes on from where that was");
    assert_eq!(run(&offline.envd_socket, "grep -c : /proc/net/dev").trim(), "1", "loopback only");
    for sb in [&online, &offline] {
        rt.block_on(engine.kill(&sb.id)).unwrap();
    }
    assert!(engine.delete_snapshot(&again.id).unwrap());

    for copy in &copies {
        let servers = host_pids_of(&copy.id, "python3");
        assert_eq!(servers.len(), 1, "the copy's server runs in its cgroup");
        rt.block_on(engine.kill(&copy.id)).unwrap();
        assert!(!Path::new(&format!("/proc/{}", servers[0])).exists(), "the copy's server went with it");
    }
    rt.block_on(engine.kill(&origin.id)).unwrap();
    assert!(engine.delete_snapshot(&snap.id).unwrap());
    rt.block_on(engine.shutdown());
}

/// Where CRIU cannot be used, a snapshot with memory is an error that says why; one of files
/// still works.
fn snapshots_with_memory_need_criu() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    let sb = rt.block_on(engine.create(spec(&engine))).unwrap();
    let missing = tmp.path().join("no-criu-here");
    std::env::set_var("SANDBANK_CRIU", &missing);
    let full = rt.block_on(engine.snapshot_as(&sb.id, None, Some(SnapshotMode::Full)));
    std::env::remove_var("SANDBANK_CRIU");
    match full {
        Err(EngineError::NoCriu(why)) => assert!(why.contains(&missing.display().to_string()), "{why}"),
        other => panic!("expected NoCriu, got {other:?}"),
    }
    assert!(engine.list_snapshots(&ListFilter::default(), None, 10).unwrap().is_empty(), "no snapshot was made");
    let files = rt.block_on(engine.snapshot(&sb.id, None)).unwrap();
    assert_eq!(files.mode, SnapshotMode::Filesystem);
    rt.block_on(engine.kill(&sb.id)).unwrap();
    rt.block_on(engine.shutdown());
}

fn snapshot_chains_flatten_and_layers_are_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    let mut sb = rt.block_on(engine.create(spec(&engine))).unwrap();
    let mut snaps = Vec::new();
    for generation in 0..(sandbank_engine::engine::MAX_CHAIN + 3) {
        run(
            &sb.envd_socket,
            &format!("echo {generation} > /tmp/gen{generation}; rm -f /tmp/gen{}", generation.wrapping_sub(2)),
        );
        let snap = rt.block_on(engine.snapshot(&sb.id, None)).unwrap();
        rt.block_on(engine.kill(&sb.id)).unwrap();
        let mut next = spec(&engine);
        next.template = snap.id.clone();
        sb = rt.block_on(engine.create(next)).unwrap();
        snaps.push(snap);
    }
    let n = sandbank_engine::engine::MAX_CHAIN + 2;
    let listing = run(&sb.envd_socket, "ls /tmp | tr '\\n' ' '");
    assert_eq!(listing.trim(), format!("gen{} gen{}", n - 1, n), "only the last two generations remain");
    rt.block_on(engine.kill(&sb.id)).unwrap();
    for s in &snaps {
        assert!(engine.delete_snapshot(&s.id).unwrap());
    }
    let left = std::fs::read_dir(tmp.path().join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(left, 0, "no layer left once every snapshot is gone");
}

/// With the btrfs store, a sandbox's writable layer is a subvolume and a snapshot a snapshot of
/// it: the same files as a copied one, chains and flattening too; everything goes with the
/// sandboxes and snapshots, and the store's mount with the engine.
fn snapshots_on_the_copy_on_write_store() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let engine = open_on_store(tmp.path());
    let store = tmp.path().join("cow");
    use std::os::unix::fs::MetadataExt;
    let is_subvolume = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.ino() == 256);
    let mounted =
        |p: &Path| std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&format!(" {} ", p.display()));
    assert!(mounted(&store) || sandbank_engine::cow::is_btrfs(tmp.path()).unwrap());
    let origin = rt.block_on(engine.create(spec(&engine))).unwrap();
    let sock = &origin.envd_socket;
    assert!(is_subvolume(&store.join("sandboxes").join(&origin.id).join("layer")));
    run(sock, "echo ready > /tmp/status.txt; mkdir -p /home/user/many; for i in $(seq 1 2000); do echo $i > /home/user/many/$i; done; \
               head -c 20000000 /dev/urandom > /home/user/big; rm /etc/debian_version; echo new > /usr/local/added");
    let mut snap = rt.block_on(engine.snapshot(&origin.id, None)).unwrap();
    assert!(is_subvolume(&store.join("layers").join(&snap.id)));
    assert!(snap.size_bytes >= 20_000_000, "{snap:?}");
    run(sock, "echo after > /tmp/status.txt");
    // A chain past MAX_CHAIN: each generation a sandbox from the last snapshot, the last one
    // flattened into a plain directory.
    let mut ids = vec![origin.id.clone()];
    for generation in 0..=sandbank_engine::engine::MAX_CHAIN {
        let mut child_spec = spec(&engine);
        child_spec.template = snap.id.clone();
        let child = rt.block_on(engine.create(child_spec)).unwrap();
        assert_eq!(run(&child.envd_socket, "cat /tmp/status.txt /usr/local/added; cat /home/user/many/1999; stat -c %s /home/user/big; test -e /etc/debian_version || echo deleted"), "ready\nnew\n1999\n20000000\ndeleted\n", "generation {generation}");
        run(&child.envd_socket, &format!("echo {generation} > /home/user/generation"));
        snap = rt.block_on(engine.snapshot(&child.id, None)).unwrap();
        ids.push(child.id);
    }
    let plain: Vec<_> = std::fs::read_dir(store.join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.') && !is_subvolume(&e.path()))
        .collect();
    assert_eq!(plain.len(), 1, "the one flattened layer is a plain directory, the others subvolumes");
    let mut last_spec = spec(&engine);
    last_spec.template = snap.id.clone();
    let last = rt.block_on(engine.create(last_spec)).unwrap();
    assert_eq!(
        run(&last.envd_socket, "cat /home/user/generation /tmp/status.txt").trim(),
        format!("{}\nready", sandbank_engine::engine::MAX_CHAIN)
    );
    ids.push(last.id);
    for id in &ids {
        assert!(rt.block_on(engine.kill(id)).unwrap());
    }
    for s in engine.list_snapshots(&ListFilter::default(), None, 100).unwrap() {
        assert!(engine.delete_snapshot(&s.id).unwrap());
    }
    let left = |dir: &str| {
        std::fs::read_dir(store.join(dir))
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    assert_eq!((left("layers"), left("sandboxes")), (0, 0), "every subvolume and directory went");
    drop(engine);
    assert!(!mounted(&store), "the store's mount goes with the engine");
}

fn snapshots_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let snap = {
        let engine = open(tmp.path());
        let sb = rt.block_on(engine.create(spec(&engine))).unwrap();
        run(&sb.envd_socket, "echo kept > /home/user/file");
        let snap = rt.block_on(engine.snapshot(&sb.id, None)).unwrap();
        rt.block_on(engine.shutdown());
        snap
    };
    // Leftovers of a crash mid-snapshot: a staging layer and an unpublished layer.
    std::fs::create_dir_all(tmp.path().join("layers/.staging/aaaaaaaaaaaaaaaaaaaa/root")).unwrap();
    std::fs::create_dir_all(tmp.path().join("layers/bbbbbbbbbbbbbbbbbbbb/root")).unwrap();
    let engine = open(tmp.path());
    assert!(!tmp.path().join("layers/.staging/aaaaaaaaaaaaaaaaaaaa").exists());
    assert!(!tmp.path().join("layers/bbbbbbbbbbbbbbbbbbbb").exists());
    assert_eq!(engine.snapshot_info(&format!("{}:default", snap.id)).unwrap(), Some(snap.clone()));
    let mut s = spec(&engine);
    s.template = snap.id.clone();
    let sb = rt.block_on(engine.create(s)).unwrap();
    assert_eq!(run(&sb.envd_socket, "cat /home/user/file"), "kept\n");
    rt.block_on(engine.shutdown());
}

/// Host pids of the processes named `comm` in the sandbox's cgroup.
fn host_pids_of(id: &str, comm: &str) -> Vec<u32> {
    let found = Command::new("find").args(["/sys/fs/cgroup/pids", "-maxdepth", "3", "-name", id]).output().unwrap();
    let dir = String::from_utf8_lossy(&found.stdout).lines().next().expect("the sandbox's pids cgroup").to_string();
    std::fs::read_to_string(format!("{dir}/cgroup.procs"))
        .unwrap()
        .lines()
        .filter_map(|p| p.parse().ok())
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

/// The real uid and gid of a host process.
fn host_ids(pid: u32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

/// Without a user namespace (asked for, or where the machine has none) root in a sandbox is the
/// host's root; layers are the same either way, so a snapshot taken in one mode starts in the
/// other with its files and owners.
fn snapshots_cross_user_namespace_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let plain = |userns| {
        let guest_exe = std::env::current_exe().unwrap();
        Engine::open(EngineConfig {
            data_dir: tmp.path().to_path_buf(),
            guest_exe,
            disk_limit_mb: None,
            pasta: None,
            user_namespace: userns,
            layer_store: Default::default(),
            images_dir: Some(sandbank_testkit::images_dir()),
            registries: Default::default(),
        })
        .unwrap()
    };
    let snap = {
        let engine = plain(false);
        assert_eq!(engine.user_namespace(), None);
        let sb = rt.block_on(engine.create(spec(&engine))).unwrap();
        let map = run(&sb.envd_socket, "cat /proc/self/uid_map");
        assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", "0", "4294967295"], "{map}");
        // Its device nodes are its own: root changing them leaves the host's alone.
        assert_eq!(run(&sb.envd_socket, "chmod 600 /dev/null && stat -c %a /dev/null").trim(), "600");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata("/dev/null").unwrap().permissions().mode() & 0o777, 0o666);
        run(&sb.envd_socket, "echo root > /root/r; install -o 1000 -g 1000 /dev/null /home/user/u; rm /etc/debian_version; rm -r /etc/skel; mkdir /etc/skel; touch /etc/skel/only");
        let snap = rt.block_on(engine.snapshot(&sb.id, None)).unwrap();
        rt.block_on(engine.shutdown());
        snap
    };
    let engine = plain(true);
    assert_eq!(engine.user_namespace(), Some(IdMap::DEFAULT));
    let mut s = spec(&engine);
    s.template = snap.id.clone();
    let sb = rt.block_on(engine.create(s)).unwrap();
    let sock = &sb.envd_socket;
    let owners = run(sock, "stat -c '%u %g' /root/r /home/user/u /etc/passwd");
    assert_eq!(owners.split_whitespace().collect::<Vec<_>>(), ["0", "0", "1000", "1000", "0", "0"]);
    assert_eq!(run(sock, "test -e /etc/debian_version || echo deleted").trim(), "deleted", "the whiteout holds");
    assert_eq!(run(sock, "ls -A /etc/skel").trim(), "only", "the opaque directory holds");
    // Root of the namespace changes what the layers below hold (a copy-up), as root.
    run(sock, "echo more >> /root/r; echo x >> /etc/passwd; rm /etc/os-release");
    assert_eq!(run(sock, "cat /root/r"), "root\nmore\n");
    let upper = tmp.path().join(format!("sandboxes/{}/layer/root", sb.id));
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert_eq!(std::fs::metadata(upper.join("etc/passwd")).unwrap().uid(), 0, "copied up as root's");
    let whiteout = std::fs::symlink_metadata(upper.join("etc/os-release")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "a whiteout as a host-mounted overlay makes it"
    );
    // And back: a snapshot of the user-namespace sandbox starts without one.
    let back = rt.block_on(engine.snapshot(&sb.id, None)).unwrap();
    rt.block_on(engine.shutdown());
    drop(engine);
    let engine = plain(false);
    let mut s = spec(&engine);
    s.template = back.id;
    let sb = rt.block_on(engine.create(s)).unwrap();
    assert_eq!(
        run(&sb.envd_socket, "cat /root/r; stat -c %u /root/r; test -e /etc/os-release || echo gone"),
        "root\nmore\n0\ngone\n"
    );
    rt.block_on(engine.shutdown());
}

/// Our children (the test process is the server here) whose command line (arguments joined by
/// spaces) passes `matching`.
fn our_children(matching: impl Fn(&str) -> bool) -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(str::trim);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if ppid == Some(me.as_str()) && matching(cmdline.trim_end()) {
            out.push(pid);
        }
    }
    out
}

/// Our children running pasta.
fn pasta_children() -> Vec<u32> {
    our_children(|cmd| cmd.split(' ').next().is_some_and(|argv0| argv0.ends_with("pasta")))
}

/// Our children holding namespaces for a network made ahead of time.
fn holders() -> Vec<u32> {
    our_children(|cmd| cmd.contains(" --hold-namespaces"))
}

/// The output of a python3 script run inside the sandbox (hex-encoded: the stub guest reads one
/// line per command).
fn python(socket: &Path, code: &str) -> String {
    let hex: String = code.bytes().map(|b| format!("{b:02x}")).collect();
    run(socket, &format!("python3 -c 'exec(bytes.fromhex(\"{hex}\").decode())' 2>&1"))
}

fn internet_access_through_pasta() {
    if let Err(why) = sandbank_engine::net::find_pasta() {
        panic!("{why}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = open(tmp.path());
    // A service on the host's loopback, which no sandbox may reach.
    let host_service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host_service.set_nonblocking(true).unwrap();
    let port = host_service.local_addr().unwrap().port();

    let mut asked = spec(&engine);
    asked.allow_internet_access = Some(true);
    let mut default = spec(&engine);
    default.allow_internet_access = None;
    // A network is made ahead of time: the first sandbox joins it, the second (made before the
    // next is ready) gets its own.
    rt.block_on(async { engine.prepare_network() });
    wait_for_networks(&engine, 1);
    assert_eq!(pasta_children().len(), 1, "the network made ahead of time has its pasta");
    let started = Instant::now();
    let sb = rt.block_on(engine.create(asked.clone())).unwrap();
    eprintln!("created with network made ahead of time in {:?}", started.elapsed());
    let started = Instant::now();
    let other = rt.block_on(engine.create(default.clone())).unwrap();
    eprintln!("created with network in {:?}", started.elapsed());
    assert!(sb.internet && other.internet, "asked for, and by default with pasta installed");
    wait_for_networks(&engine, 1);
    assert_eq!(pasta_children().len(), 3, "one pasta per sandbox, and the next network's");

    // Configured before the sandbox was ready: the first command has its interface and route.
    let links = run(
        &sb.envd_socket,
        "grep -c : /proc/net/dev; awk '$2 == \"00000000\" {print \"default via\", $1}' /proc/net/route",
    );
    assert!(links.starts_with("2\n") && links.contains("default via"), "loopback, a tap and a default route: {links}");
    let resolv = run(&sb.envd_socket, "cat /etc/resolv.conf");
    assert!(resolv.lines().any(|l| l.starts_with("nameserver ") && !l.contains(" 127.")), "{resolv}");
    let dns = run(&sb.envd_socket, "getent hosts pypi.org");
    assert!(!dns.trim().is_empty(), "DNS works inside");

    // Nothing reaches the host's loopback: not 127.0.0.1 (the sandbox's own), not the gateway
    // (the real one), not raw packets (no CAP_NET_RAW).
    let code = format!(
        "import socket\n\
         gw = [l.split()[2] for l in open(\"/proc/net/route\") if l.split()[1] == \"00000000\"][0]\n\
         gw = socket.inet_ntoa(bytes.fromhex(gw)[::-1])\n\
         for host in (\"127.0.0.1\", gw):\n\
         \x20   try:\n\
         \x20       socket.create_connection((host, {port}), timeout=2); print(host, \"reached\")\n\
         \x20   except OSError as e:\n\
         \x20       print(host, \"refused\" if isinstance(e, ConnectionRefusedError) else \"failed\", e)\n\
         try:\n\
         \x20   socket.socket(socket.AF_PACKET, socket.SOCK_RAW); print(\"raw sockets allowed\")\n\
         except PermissionError:\n\
         \x20   print(\"raw sockets refused\")\n"
    );
    let out = python(&sb.envd_socket, &code);
    eprintln!("{}", out.trim());
    assert!(
        !out.contains("reached") && out.contains("127.0.0.1 refused") && out.contains("raw sockets refused"),
        "{out}"
    );
    assert!(host_service.accept().is_err(), "the host's loopback service saw a connection");

    // A snapshot freezes the sandbox, not its pasta: the network still works after it.
    rt.block_on(engine.snapshot(&sb.id, None)).unwrap();
    assert!(!run(&sb.envd_socket, "getent hosts pypi.org").trim().is_empty(), "network after a snapshot");

    // Killing a sandbox stops its pasta (reaped: no zombie); shutdown stops the others.
    for s in [&sb, &other] {
        assert!(!run(&s.envd_socket, "getent hosts pypi.org").trim().is_empty(), "network in both");
    }

    // Killing a sandbox stops its pasta (reaped: no zombie); shutdown stops the others, and the
    // network made ahead of time.
    rt.block_on(engine.kill(&sb.id)).unwrap();
    assert_eq!(pasta_children().len(), 2, "the killed sandbox's pasta is gone");
    rt.block_on(engine.shutdown());
    assert_eq!(pasta_children(), Vec::<u32>::new(), "no pasta left after shutdown");
    assert_eq!(holders(), Vec::<u32>::new(), "no namespace holder left after shutdown");
}

fn wait_for_networks(engine: &Engine, n: usize) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while engine.networks_ready() < n {
        assert!(Instant::now() < deadline, "no network made ahead of time after 10 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn internet_access_without_pasta() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let engine = Engine::open(EngineConfig {
        data_dir: tmp.path().to_path_buf(),
        guest_exe: std::env::current_exe().unwrap(),
        disk_limit_mb: None,
        pasta: None,
        user_namespace: true,
        layer_store: Default::default(),
        images_dir: Some(sandbank_testkit::images_dir()),
        registries: Default::default(),
    })
    .unwrap();
    // Asked for (as the SDKs always do) on a host without pasta: loopback only, reported as such.
    let mut asked = spec(&engine);
    asked.allow_internet_access = Some(true);
    let sb = rt.block_on(engine.create(asked)).unwrap();
    assert!(!sb.internet);
    assert_eq!(run(&sb.envd_socket, "grep -c : /proc/net/dev").trim(), "1", "loopback only");
    rt.block_on(engine.kill(&sb.id)).unwrap();

    // Not asked for: loopback only, and said so.
    let mut default = spec(&engine);
    default.allow_internet_access = None;
    let sb = rt.block_on(engine.create(default)).unwrap();
    assert!(!sb.internet);
    assert_eq!(run(&sb.envd_socket, "grep -c : /proc/net/dev").trim(), "1", "loopback only");
    // No resolver configured: lookups fail at once (127.0.0.1:53 refuses), they do not hang.
    let started = Instant::now();
    assert!(run(&sb.envd_socket, "getent hosts pypi.org; echo rc=$?").contains("rc=2"));
    assert!(started.elapsed().as_secs() < 3, "DNS without network failed in {:?}", started.elapsed());
    rt.block_on(engine.shutdown());
}

/// A machine that cannot give sandboxes a user namespace (here: a guest whose check fails)
/// does not silently run them with root inside as the host's root: that takes asking.
fn no_user_namespace_is_refused_unless_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let config = |user_namespace| EngineConfig {
        data_dir: tmp.path().to_path_buf(),
        guest_exe: "/bin/false".into(),
        disk_limit_mb: None,
        pasta: None,
        user_namespace,
        layer_store: Default::default(),
        images_dir: Some(sandbank_testkit::images_dir()),
        registries: Default::default(),
    };
    match Engine::open(config(true)) {
        Err(e @ EngineError::NoUserNamespace(_)) => {
            assert!(e.to_string().contains("root in a sandbox is the host's root"), "{e}")
        }
        other => panic!("expected NoUserNamespace, got {other:?}"),
    }
    let engine = Engine::open(config(false)).expect("opens when asked to run without one");
    assert_eq!(engine.user_namespace(), None);
}

fn internet_access_when_pasta_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime();
    let broken = EngineConfig {
        data_dir: tmp.path().to_path_buf(),
        guest_exe: std::env::current_exe().unwrap(),
        disk_limit_mb: None,
        pasta: Some("/bin/false".into()),
        user_namespace: true,
        layer_store: Default::default(),
        images_dir: Some(sandbank_testkit::images_dir()),
        registries: Default::default(),
    };
    let engine = Engine::open(broken).unwrap();
    let mut asked = spec(&engine);
    asked.allow_internet_access = Some(true);
    match rt.block_on(engine.create(asked.clone())) {
        Err(EngineError::StartFailed(m)) => assert!(m.contains("pasta could not set up the sandbox's network"), "{m}"),
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(!tmp.path().join("sandboxes").join(&asked.id).exists());
    assert_no_cgroup(&asked.id);
    rt.block_on(engine.shutdown());
}
