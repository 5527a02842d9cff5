//! Creating a sandbox: its template or snapshot resolved and registered at once, its directories,
//! cgroup and guest config prepared, the guest launched and followed until envd is ready.

use super::running::apply_egress;
use super::snapshot::collect_layers;
use super::startup::remove_sandbox_dir;
use super::*;
use crate::error::{During, SysError};
use crate::id;
use crate::layout::SandboxDir;
use crate::net::{self, NetError};
use crate::netpool::ReadyNet;
use crate::store::SnapshotRecord;
use crate::sys;
use sandbank_protocol::guest::{FromEngine, FromGuest, GuestConfig, Restore, ENVD_SOCKET};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What a sandbox is started on: its template, and its makeup (the snapshot layers over it).
pub(super) struct Launch {
    pub(super) template: Template,
    pub(super) makeup: Makeup,
}

/// A sandbox registered as starting: what it starts on, and where its exit is told.
pub(super) struct Registered {
    launch: Launch,
    exited_tx: watch::Sender<bool>,
    exited_rx: watch::Receiver<bool>,
}

/// Registers a sandbox as starting: a new one, or a dormant one started again on its files (its
/// launcher pid comes once it is started).
pub(super) fn register(state: &mut State, launch: Launch) -> Registered {
    let (exited_tx, exited_rx) = watch::channel(false);
    let processes =
        Processes { launcher: None, exited: exited_rx.clone(), busy: Arc::default(), net: None, envd_layer: None };
    let id = launch.makeup.spec.id.clone();
    match state.sandboxes.get_mut(&id) {
        Some(dormant) => dormant.processes = Some(processes),
        None => {
            let record = Record { makeup: launch.makeup.clone(), processes: Some(processes), paused: None };
            state.sandboxes.insert(id, record);
        }
    }
    Registered { launch, exited_tx, exited_rx }
}

/// Takes the processes out of sandbox `id`'s record: it is dormant once they are gone if it is
/// paused, and forgotten if not.
pub(super) fn forget_processes(state: &mut State, id: &str) -> Option<Processes> {
    let record = state.sandboxes.get_mut(id)?;
    if record.paused.is_some() {
        return record.processes.take();
    }
    state.sandboxes.remove(id).and_then(|r| r.processes)
}

/// What a sandbox starts from.
pub(super) struct Source {
    template: Template,
    pub(super) snapshot: Option<SnapshotRecord>,
}

impl Engine {
    /// The template `name`: one of the engine's, or an image pulled from a registry.
    pub(super) fn template(&self, name: &str) -> Option<Template> {
        if let Some(template) = self.templates.get(name) {
            return Some(template.clone());
        }
        let image = crate::oci::find(&self.layout.oci_images(), name)?;
        Some(Template::of_rootfs(name, image.rootfs()))
    }

    pub(super) fn resolve(&self, state: &State, name: &str) -> Result<Source, EngineError> {
        if let Some(template) = self.template(name) {
            return Ok(Source { template, snapshot: None });
        }
        let untagged = name.rsplit_once(':').map_or(name, |(base, _tag)| base);
        let snapshot = state
            .store
            .get_live(untagged, super::snapshot::now_ns())?
            .ok_or_else(|| EngineError::TemplateNotFound(name.to_string()))?;
        let template = self
            .template(&snapshot.template)
            .ok_or_else(|| EngineError::TemplateNotFound(snapshot.template.clone()))?;
        Ok(Source { template, snapshot: Some(snapshot) })
    }

    /// Starts a sandbox; returns once its envd socket accepts connections.
    pub async fn create(&self, spec: SandboxSpec) -> Result<SandboxHandle, EngineError> {
        if !id::is_valid(&spec.id) {
            return Err(EngineError::StartFailed(format!("invalid sandbox id {:?}", spec.id)));
        }
        // Resolve and register at once, so that the snapshot cannot be deleted in between.
        let launch = {
            let mut state = self.state.lock().unwrap();
            if state.status(&spec.id).is_some() {
                return Err(EngineError::StartFailed(format!("sandbox id {:?} is taken", spec.id)));
            }
            let source = self.resolve(&state, &spec.template)?;
            let makeup = Makeup {
                spec: spec.clone(),
                template: source.template.name.clone(),
                layers: source.snapshot.as_ref().map(|s| s.layers.clone()).unwrap_or_default(),
                template_id: source.snapshot.as_ref().map_or_else(|| source.template.name.clone(), |s| s.id.clone()),
                source: source.snapshot.map(|s| s.id),
            };
            register(&mut state, Launch { template: source.template, makeup })
        };
        self.start(spec, launch).await
    }

    /// Prepares a registered sandbox and starts its guest; returns once its envd socket accepts
    /// connections (and its network is up).
    pub(super) async fn start(&self, spec: SandboxSpec, launch: Registered) -> Result<SandboxHandle, EngineError> {
        let dir = self.layout.sandbox(&spec.id);
        let Registered { launch: Launch { template, makeup }, exited_tx, exited_rx } = launch;
        let Makeup { layers, template_id, .. } = makeup;
        // The SDKs always ask for internet access; a host without pasta gives loopback only
        // (said at start, by `doctor`, and in the sandbox's `allowInternetAccess`).
        let internet = spec.allow_internet_access != Some(false) && self.config.pasta.is_some();
        if spec.allow_internet_access == Some(true) && !internet {
            tracing::warn!(sandbox = %spec.id, "internet access asked for, but there is no pasta: loopback only");
        }
        // Restored from a snapshot with memory: its network namespace is CRIU's, made during the
        // restore; pasta and the egress rules go to it once it is there.
        let restoring = self.memory_images(&spec.id, &layers).is_some();
        // A network made ahead of time, when one is ready: the sandbox joins its namespaces.
        let ready_net = if internet && !restoring { self.net_pool.as_ref().and_then(NetPool::take) } else { None };
        let namespaces_of = ready_net.as_ref().map(ReadyNet::holder_pid);
        let (guest_config, cgroup_procs) = match self.prepare(&spec, &template, &layers, &dir, internet, namespaces_of)
        {
            Ok(prepared) => prepared,
            Err(e) => {
                self.forget(&spec.id);
                return Err(e);
            }
        };

        let mut cmd = self.guest_exe.command();
        // The config goes on stdin: as an argument, its host paths would show in PID 1's
        // /proc/1/cmdline.
        cmd.arg("guest")
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // No descriptor the server inherited (a shell's redirections, a parent's pipes) goes into
        // the sandbox: only stdio. Its own mount namespace, for the sandbox's root; PID 1's
        // namespaces are the guest's to make (see the guest crate's `init`).
        let steps = sys::BeforeExec {
            new_session: true,
            close_inherited: true,
            unshare: libc::CLONE_NEWNS,
            die_with_parent: true,
            ..Default::default()
        };
        sys::before_exec(&mut cmd, steps);
        let mut child = match self.spawner.spawn(cmd).await {
            Ok(c) => c,
            Err(e) => {
                self.forget(&spec.id);
                return Err(EngineError::StartFailed(format!("start {}: {e}", self.guest_exe.host_path().display())));
            }
        };
        let launcher = child.id() as i32;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take().expect("stdin is piped");
        if let Some(p) = self.state.lock().unwrap().processes_mut(&spec.id) {
            p.launcher = Some(launcher);
        }
        self.watch_exit(spec.id.clone(), child, exited_tx)?;

        let handle = SandboxHandle {
            id: spec.id.clone(),
            template_id,
            envd_socket: dir.envd_socket(),
            exited: exited_rx,
            internet,
        };
        // The guest is put in the sandbox's cgroup from here, while it sets up (the first write
        // to a cgroup takes a few ms in the kernel); it waits for `joined` on its stdin before it
        // starts PID 1, which is born in the cgroup.
        let joined = async move {
            let mut stdin = stdin;
            tokio::task::spawn_blocking(move || {
                // A guest that is gone already (ESRCH, EPIPE) says why on stdout: that is the error.
                let gone =
                    |e: &io::Error| e.raw_os_error() == Some(libc::ESRCH) || e.kind() == io::ErrorKind::BrokenPipe;
                match stdin.write_all(&guest_config) {
                    Err(e) if gone(&e) => return Ok(()),
                    Err(source) => return Err(SysError { step: "give the guest its config".into(), source }),
                    Ok(()) => {}
                }
                for procs in &cgroup_procs {
                    match fs::write(procs, launcher.to_string()) {
                        Err(e) if gone(&e) => return Ok(()),
                        Err(e) => {
                            return Err(SysError {
                                step: format!("put the guest in cgroup {}", procs.display()),
                                source: e,
                            })
                        }
                        Ok(()) => {}
                    }
                }
                match stdin.write_all(FromEngine::Joined.line().as_bytes()) {
                    Err(source) if !gone(&source) => {
                        Err(SysError { step: "tell the guest it is in its cgroup".into(), source })
                    }
                    _ => Ok(()),
                }
            })
            .await
            .map_err(io::Error::other)
            .during("put the guest in its cgroup")??;
            Ok::<(), StartError>(())
        };
        let started = async {
            let mut report = GuestReport::new(stdout)?;
            report.expect(FromGuest::Net).await?;
            // The network is set up while the guest sets up the rest, and is there before it is
            // ready.
            let spec = &spec;
            // The network of the namespace `pid` is in.
            let network = |pid: i32| async move {
                match (ready_net, self.config.pasta.as_deref().filter(|_| internet)) {
                    // Joined (the guest said `net`): the namespaces are the sandbox's now.
                    (Some(ready), _) => Ok(Some(ready.into_pasta())),
                    (None, Some(pasta)) => {
                        let started = Pasta::start(pasta, pid, &spec.id, |cmd| self.spawner.spawn(cmd)).await;
                        Ok::<_, StartError>(Some(started?))
                    }
                    (None, None) => Ok(None),
                }
            };
            // Its egress rules are in force before it is ready (applied in its network namespace).
            let rules = |pid: i32| async move {
                if spec.egress.is_open() {
                    return Ok(());
                }
                let (id, rules) = (spec.id.clone(), spec.egress.clone());
                tokio::task::spawn_blocking(move || apply_egress(&id, pid, &rules))
                    .await
                    .map_err(io::Error::other)
                    .during("egress rules")??;
                Ok::<_, StartError>(())
            };
            if restoring {
                // Its network namespace is there before its processes' memory is restored: pasta
                // and the egress rules go to it meanwhile (before they go on, no packet leaves
                // it: it has only loopback until pasta is attached).
                return match report.restoring().await? {
                    Some(pid1) => tokio::try_join!(report.expect(FromGuest::Ready), network(pid1), rules(pid1))
                        .map(|(ready, pasta, ())| (ready, pasta)),
                    None => {
                        let pid1 = pid1_of(launcher)?;
                        tokio::try_join!(network(pid1), rules(pid1)).map(|(pasta, ())| ((), pasta))
                    }
                };
            }
            // Set up through the launcher, which is in the sandbox's network namespace now.
            tokio::try_join!(report.expect(FromGuest::Ready), network(launcher), rules(launcher))
                .map(|(ready, pasta, ())| (ready, pasta))
        };
        let started = tokio::time::timeout(START_TIMEOUT, async {
            tokio::try_join!(joined, started).map(|((), started)| started)
        })
        .await;
        // The next network is made now that this sandbox has started (see `netpool`).
        if internet {
            self.prepare_network();
        }
        let started = started.map(|r| r.and_then(|ok| Ok(link_envd_socket(launcher, &dir).map(|()| ok)?)));
        match started {
            Ok(Ok(((), pasta))) => {
                // Gone already (killed meanwhile): its pasta goes now, outside the lock.
                let _orphan = match self.state.lock().unwrap().processes_mut(&spec.id) {
                    Some(p) => std::mem::replace(&mut p.net, pasta),
                    None => pasta,
                };
                Ok(handle)
            }
            Ok(Err(e)) => {
                self.stop(&spec.id, false).await;
                Err(EngineError::StartFailed(e.to_string()))
            }
            Err(_) => {
                self.stop(&spec.id, false).await;
                Err(EngineError::StartFailed(format!("not ready after {START_TIMEOUT:?}")))
            }
        }
    }

    /// Makes the sandbox's directories, cgroup and guest config; returns the config (one line of
    /// JSON, for the guest's stdin) and the cgroup's `cgroup.procs` files.
    pub(super) fn prepare(
        &self,
        spec: &SandboxSpec,
        template: &Template,
        layers: &[String],
        dir: &SandboxDir,
        internet: bool,
        namespaces_of: Option<i32>,
    ) -> Result<(Vec<u8>, Vec<PathBuf>), EngineError> {
        let restore = match self.memory_images(&spec.id, layers) {
            Some(images) => {
                Some(Restore { criu: self.criu()?.path.clone(), images, work_dir: dir.path().to_path_buf() })
            }
            None => None,
        };
        // The envd its processes ran, for a restore; else this binary's.
        let envd_layer = match &restore {
            Some(r) => crate::envd_layer::recorded(&self.layout, &r.images)
                .map_err(|why| EngineError::StartFailed(format!("restore its processes: {why}")))?,
            None => None,
        }
        .unwrap_or_else(|| self.envd_layer.clone());
        if let Some(p) = self.state.lock().unwrap().processes_mut(&spec.id) {
            p.envd_layer = Some(envd_layer.clone());
        }
        let restore_usr = restore.as_ref().map(|_| dir.restore_usr());
        // On the copy-on-write store, its writable layer is a subvolume with its disk limit (a
        // paused sandbox's is there already, limit and all).
        if let Some(cow) = self.cow.as_ref().filter(|_| !dir.layer().exists()) {
            fs::create_dir_all(dir.path()).map_err(io_ctx(format!("create {}", dir.path().display())))?;
            crate::cow::create_subvolume(&dir.layer()).map_err(io_ctx("make the sandbox's layer".into()))?;
            cow.set_limit(&dir.layer(), spec.limits.disk_mb << 20)
                .map_err(io_ctx("limit the sandbox's disk".into()))?;
        }
        let dirs = [dir.upper_root(), dir.upper_usr(), dir.work_root(), dir.work_usr(), dir.rootfs(), dir.idmapped()];
        for d in dirs.iter().chain(&restore_usr) {
            fs::create_dir_all(d).map_err(io_ctx(format!("create {}", d.display())))?;
        }
        let cgroup_procs = self.cgroups.create(&spec.id, &spec.limits).map_err(io_ctx("create the cgroup".into()))?;
        let id = &spec.id;
        fs::write(dir.hostname(), format!("{id}\n")).map_err(io_ctx("write the hostname file".into()))?;
        let hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{id}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        fs::write(dir.hosts(), hosts).map_err(io_ctx("write the hosts file".into()))?;
        // resolv.conf is bound in every sandbox (empty without internet access), so that a copy
        // restored with internet access from one without has it too (CRIU restores the mounts
        // the origin had).
        let resolv = match internet {
            true => net::host_resolv_conf().unwrap_or_else(|| {
                tracing::warn!(sandbox = %id, "the host's resolv.conf names no nameserver a sandbox can reach: no DNS inside");
                String::new()
            }),
            false => String::new(),
        };
        fs::write(dir.resolv_conf(), resolv).map_err(io_ctx("write the resolv.conf file".into()))?;
        let bind_files = vec![
            (dir.hostname(), "/etc/hostname".into()),
            (dir.hosts(), "/etc/hosts".into()),
            (dir.resolv_conf(), "/etc/resolv.conf".into()),
        ];
        let snapshot_lowers = |part: &str| layers.iter().map(|l| self.layout.layer(l).join(part)).collect::<Vec<_>>();
        let config = GuestConfig {
            sandbox_id: spec.id.clone(),
            env_vars: spec.env_vars.clone(),
            default_user: spec.default_user.clone(),
            default_workdir: spec.default_workdir.clone(),
            root_lowers: [snapshot_lowers("root"), template.root_lowers.clone()].concat(),
            usr_lowers: [vec![envd_layer], snapshot_lowers("usr"), template.usr_lowers.clone()].concat(),
            root_upper: dir.upper_root(),
            root_work: dir.work_root(),
            usr_upper: dir.upper_usr(),
            usr_work: dir.work_usr(),
            rootfs: dir.rootfs(),
            bind_files,
            sandbox_dir: dir.path().to_path_buf(),
            userns: self.userns,
            namespaces_of,
            restore,
        };
        let mut json = serde_json::to_vec(&config).expect("guest config serializes");
        json.push(b'\n');
        Ok((json, cgroup_procs))
    }

    /// The images of the processes sandbox `id` is restored with: for a paused sandbox started
    /// again, those its pause wrote, if it did (its files went on since it was started, so its
    /// snapshot's are not); else those of the snapshot it starts from (its layer, the top one),
    /// when it has memory.
    fn memory_images(&self, id: &str, layers: &[String]) -> Option<PathBuf> {
        let images = match self.state.lock().unwrap().is_paused(id) {
            true => self.layout.sandbox(id).paused_memory(),
            false => self.layout.memory_images(layers.first()?),
        };
        images.is_dir().then_some(images)
    }

    /// Waits for the launcher to exit, then removes the sandbox's cgroup and directory, drops
    /// layers nothing needs any more and tells the watchers.
    pub(super) fn watch_exit(
        &self,
        id: String,
        mut child: std::process::Child,
        exited: watch::Sender<bool>,
    ) -> Result<(), EngineError> {
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(|e| io_ctx("pidfd_open".into())(e.into()))?;
        let cgroups = self.cgroups.clone();
        let layout = self.layout.clone();
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            let _ = sys::readable(pidfd).await;
            let _ = child.wait();
            let id2 = id.clone();
            let cleaned = tokio::task::spawn_blocking(move || {
                let cg = cgroups.destroy(&id2, KILL_TIMEOUT);
                // A paused sandbox whose processes went (killed to keep only its files) stays,
                // dormant, with its files.
                let keep = state.lock().unwrap().is_paused(&id2);
                let files = if keep { Ok(()) } else { remove_sandbox_dir(&layout, &id2) };
                // Dropped outside the lock: it stops the sandbox's pasta and waits for it.
                let processes = forget_processes(&mut state.lock().unwrap(), &id2);
                drop(processes);
                collect_layers(&layout, &state);
                cg.and(files)
            })
            .await;
            match cleaned {
                Ok(Ok(())) => tracing::debug!(sandbox = %id, "sandbox removed"),
                Ok(Err(e)) => tracing::error!(sandbox = %id, "cleaning up: {e}"),
                Err(e) => tracing::error!(sandbox = %id, "cleaning up: {e}"),
            }
            let _ = exited.send(true);
        });
        Ok(())
    }
}

/// Points the sandbox directory's `envd.sock` at envd's socket in the sandbox's `/dev`, through
/// the root of PID 1 (the launcher's one child). A sandbox started again gets a new link.
/// (PID 1's pid is not taken by another process while the link is there: the sandbox's
/// directory, and the link with it, goes when the launcher exits with PID 1, and the kernel
/// hands out pids in turn, wrapping only after every other.)
fn link_envd_socket(launcher: i32, dir: &SandboxDir) -> Result<(), SysError> {
    let pid1 = pid1_of(launcher)?;
    let link = dir.envd_socket();
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("/proc/{pid1}/root{ENVD_SOCKET}"), &link)
        .during(format_args!("link {}", link.display()))
}

/// The host pid of a sandbox's PID 1: its launcher's one child.
pub(super) fn pid1_of(launcher: i32) -> Result<i32, SysError> {
    let children = format!("/proc/{launcher}/task/{launcher}/children");
    let text = fs::read_to_string(&children).during(format_args!("read {children}"))?;
    text.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()).ok_or_else(|| SysError {
        step: format!("find PID 1 in {children}"),
        source: io::Error::other(format!("no child pid in {text:?}")),
    })
}

/// What the guest reports on its stdout: `net` (it is in the sandbox's network namespace), then
/// `ready`; or `error <why>` at any point.
struct GuestReport {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::pipe::Receiver>>,
}

impl GuestReport {
    fn new(stdout: std::process::ChildStdout) -> Result<Self, StartError> {
        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stdout)).during("guest pipe")?;
        Ok(Self { lines: BufReader::new(pipe).lines() })
    }

    async fn next(&mut self) -> Result<FromGuest, StartError> {
        match self.lines.next_line().await.during("reading the guest's report")? {
            Some(line) => FromGuest::parse(&line).map_err(StartError::Unrecognized),
            None => Err(StartError::GuestExited),
        }
    }

    /// The restored PID 1's host pid, which a restoring guest reports before it is ready; `None`
    /// when it said `ready` first (the pid is then the launcher's child).
    async fn restoring(&mut self) -> Result<Option<i32>, StartError> {
        match self.next().await? {
            FromGuest::Restoring(pid) => Ok(Some(pid)),
            FromGuest::Ready => Ok(None),
            FromGuest::Error(why) => Err(StartError::Guest(why)),
            got => Err(StartError::Unexpected { got, wanted: FromGuest::Restoring(0) }),
        }
    }

    /// Waits for `wanted`; the guest's error is the error.
    async fn expect(&mut self, wanted: FromGuest) -> Result<(), StartError> {
        match self.next().await? {
            got if got == wanted => Ok(()),
            FromGuest::Error(why) => Err(StartError::Guest(why)),
            got => Err(StartError::Unexpected { got, wanted }),
        }
    }
}

/// Why a guest did not come up: the reason of [`EngineError::StartFailed`].
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// What the guest said went wrong (`error <why>` on its stdout).
    #[error("{0}")]
    Guest(String),
    #[error("the guest exited before it was ready (see the server log)")]
    GuestExited,
    #[error("{0}")]
    Unrecognized(String),
    #[error("unexpected report from the guest: {got:?}, not {wanted:?}")]
    Unexpected { got: FromGuest, wanted: FromGuest },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}
