//! cgroup v1 and v2 behind one interface: a parent group per server, a child per sandbox that
//! bounds memory, processes and CPU.

use crate::spec::Limits;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The v1 hierarchies a sandbox joins. `freezer` is for snapshots and pause; `cpu` bounds CPU
/// time; `cpuacct` counts it for metrics.
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct", "freezer"];
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Clone, Debug)]
pub enum Cgroups {
    /// One directory per controller hierarchy.
    V1 { parents: Vec<PathBuf> },
    /// One directory in the unified hierarchy.
    V2 { parent: PathBuf },
}

impl Cgroups {
    /// Detects the cgroup version and creates this server's parent group `name`.
    pub fn setup(name: &str) -> io::Result<Self> {
        let root = Path::new(CGROUP_ROOT);
        let cg = if root.join("cgroup.controllers").exists() {
            let parent = root.join(name);
            mkdir(&parent)?;
            // Children can only use controllers their parent delegates.
            let wanted = "+memory +pids +cpu";
            if let Err(e) = fs::write(root.join("cgroup.subtree_control"), wanted) {
                tracing::debug!("enabling controllers at the cgroup root: {e}");
            }
            fs::write(parent.join("cgroup.subtree_control"), wanted)
                .map_err(|e| ctx(e, &parent, "enable controllers"))?;
            Cgroups::V2 { parent }
        } else {
            let mut parents = Vec::new();
            for c in V1_CONTROLLERS {
                let hierarchy = root.join(c);
                if !hierarchy.exists() {
                    return Err(io::Error::other(format!(
                        "cgroup v1 controller {c} is not mounted at {}",
                        hierarchy.display()
                    )));
                }
                let parent = hierarchy.join(name);
                mkdir(&parent)?;
                parents.push(parent);
            }
            Cgroups::V1 { parents }
        };
        Ok(cg)
    }

    /// The sandbox's group directories.
    pub fn dirs(&self, id: &str) -> Vec<PathBuf> {
        match self {
            Cgroups::V1 { parents } => parents.iter().map(|p| p.join(id)).collect(),
            Cgroups::V2 { parent } => vec![parent.join(id)],
        }
    }

    /// Creates the sandbox's group with its limits; returns the `cgroup.procs` files a process
    /// writes its pid into to join it.
    pub fn create(&self, id: &str, limits: &Limits) -> io::Result<Vec<PathBuf>> {
        let mem = (limits.memory_mb * 1024 * 1024).to_string();
        let pids = limits.pids.to_string();
        let quota = u64::from(limits.cpu_count) * CPU_PERIOD_US;
        for dir in self.dirs(id) {
            mkdir(&dir)?;
        }
        match self {
            Cgroups::V1 { .. } => {
                for dir in self.dirs(id) {
                    match hierarchy_of(&dir) {
                        Some("memory") => write(&dir, "memory.limit_in_bytes", &mem)?,
                        Some("pids") => write(&dir, "pids.max", &pids)?,
                        Some("cpu") => {
                            write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                            write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
                        }
                        _ => {}
                    }
                }
            }
            Cgroups::V2 { .. } => {
                let dir = &self.dirs(id)[0];
                write(dir, "memory.max", &mem)?;
                write(dir, "memory.swap.max", "0").ok();
                write(dir, "pids.max", &pids)?;
                write(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
            }
        }
        Ok(self.dirs(id).into_iter().map(|d| d.join("cgroup.procs")).collect())
    }

    /// SIGKILLs every process in the sandbox's group and removes it; waits up to `timeout` for
    /// the processes to go.
    pub fn destroy(&self, id: &str, timeout: Duration) -> io::Result<()> {
        remove_group(&self.dirs(id), timeout)
    }

    /// Removes the parent group with any sandbox group a crashed server left in it.
    pub fn teardown(&self, timeout: Duration) -> io::Result<()> {
        let parents = match self {
            Cgroups::V1 { parents } => parents.clone(),
            Cgroups::V2 { parent } => vec![parent.clone()],
        };
        let mut children: Vec<PathBuf> = Vec::new();
        for p in &parents {
            if let Ok(rd) = fs::read_dir(p) {
                children.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
        // Freezer groups first: a sandbox left frozen (a server killed mid-snapshot) must be
        // thawed before its processes can die and free its other groups.
        children.sort_by_key(|c| !c.join("freezer.state").exists());
        for child in &children {
            remove_group(std::slice::from_ref(child), timeout)?;
        }
        remove_group(&parents, timeout)
    }

    /// Freezes (`true`) or thaws every process of the sandbox, and waits until it is so.
    pub fn set_frozen(&self, id: &str, frozen: bool) -> io::Result<()> {
        let (file, value, done_file, done) = match self {
            Cgroups::V1 { .. } => (
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Cgroups::V2 { .. } => (
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
                "cgroup.events",
                if frozen { "frozen 1" } else { "frozen 0" },
            ),
        };
        let dir = self.freezer_dir(id);
        write(&dir, file, value)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = fs::read_to_string(dir.join(done_file)).unwrap_or_default();
            if state.lines().any(|l| l.trim() == done) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "cgroup {} did not reach {done:?}: {}",
                    dir.display(),
                    state.trim()
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// SIGKILLs every process of a frozen sandbox, which stays frozen: they die once thawed,
    /// without running again (a frozen task takes its signals on its way back to user space).
    pub fn kill_frozen(&self, id: &str) -> io::Result<()> {
        let dir = self.freezer_dir(id);
        if dir.join("cgroup.kill").exists() {
            return write(&dir, "cgroup.kill", "1");
        }
        for pid in procs(&dir) {
            // A stale pid only fails.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        Ok(())
    }

    /// The `cgroup.procs` file of this server's group for its helpers (CRIU's dumps and what
    /// they fork), made when missing: processes a killed server leaves there are ended by the
    /// next start's teardown, as its sandboxes' are. Not a sandbox ID (those have 20 characters).
    pub fn helpers_procs(&self) -> io::Result<PathBuf> {
        let dir = self.freezer_parent().join("helpers");
        mkdir(&dir)?;
        Ok(dir.join("cgroup.procs"))
    }

    pub(crate) fn freezer_dir(&self, id: &str) -> PathBuf {
        self.freezer_parent().join(id)
    }

    /// This server's group in the hierarchy that freezes (v1's `freezer`, or the unified one).
    fn freezer_parent(&self) -> &Path {
        match self {
            Cgroups::V1 { parents } => parents
                .iter()
                .find(|p| p.parent().and_then(|h| h.file_name()).is_some_and(|n| n == "freezer"))
                .expect("the freezer hierarchy is always set up"),
            Cgroups::V2 { parent } => parent,
        }
    }

    /// CPU time used by the sandbox's processes, and their memory less the page cache the
    /// kernel can drop (what `free` would call used).
    pub fn usage(&self, id: &str) -> io::Result<Usage> {
        let (cpu_ns, memory_bytes, memory_cache_bytes) = match self {
            Cgroups::V1 { .. } => {
                let dir = |controller: &str| self.dirs(id).into_iter().find(|d| hierarchy_of(d) == Some(controller));
                let cpu = dir("cpuacct").ok_or_else(|| io::Error::other("no cpuacct group"))?;
                let mem = dir("memory").ok_or_else(|| io::Error::other("no memory group"))?;
                let cpu_ns = read_u64(&cpu.join("cpuacct.usage"))?;
                let used = read_u64(&mem.join("memory.usage_in_bytes"))?;
                let inactive = stat_value(&mem.join("memory.stat"), "total_inactive_file").unwrap_or(0);
                let cache = stat_value(&mem.join("memory.stat"), "total_cache").unwrap_or(0);
                (cpu_ns, used.saturating_sub(inactive), cache)
            }
            Cgroups::V2 { .. } => {
                let dir = &self.dirs(id)[0];
                let cpu_ns = stat_value(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
                let used = read_u64(&dir.join("memory.current"))?;
                let inactive = stat_value(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
                let cache = stat_value(&dir.join("memory.stat"), "file").unwrap_or(0);
                (cpu_ns, used.saturating_sub(inactive), cache)
            }
        };
        Ok(Usage { cpu_ns, memory_bytes, memory_cache_bytes })
    }

    /// The sandbox's group directories that still exist (for leak checks).
    pub fn existing(&self, id: &str) -> Vec<PathBuf> {
        self.dirs(id).into_iter().filter(|d| d.exists()).collect()
    }
}

/// Removes the parent groups that servers now gone left behind: a server that crashed cannot
/// remove its own, and the next one on its data directory, which would, may never come. A
/// `sandbank-<hash>` group at the top of a hierarchy, other than `own`, goes when its server is
/// provably gone — no process holds the lock of a data directory with that hash (see
/// [`live_servers`]) — and no process is left in it or below it. Says in the log what it removed.
pub fn remove_stale_parents(own: &str) {
    let mut candidates: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    let root = Path::new(CGROUP_ROOT);
    let hierarchies: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.to_path_buf()]
    } else {
        V1_CONTROLLERS.iter().map(|c| root.join(c)).collect()
    };
    for h in &hierarchies {
        for entry in fs::read_dir(h).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_server_group(&name) && name != own && entry.path().is_dir() {
                candidates.entry(name).or_default().push(entry.path());
            }
        }
    }
    if candidates.is_empty() {
        return;
    }
    let live = live_servers();
    for (name, parents) in candidates {
        if live.contains(&name) {
            continue;
        }
        // Every group of it, parents first; removed deepest first.
        let mut groups = Vec::new();
        let mut stack: Vec<(PathBuf, usize)> = parents.into_iter().map(|p| (p, 0)).collect();
        while let Some((dir, depth)) = stack.pop() {
            if depth < 8 {
                let children =
                    fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir());
                stack.extend(children.map(|c| (c, depth + 1)));
            }
            groups.push((dir, depth));
        }
        if let Some((busy, _)) = groups.iter().find(|(g, _)| !procs(g).is_empty()) {
            tracing::info!("cgroup {} of a server that is gone still has processes: left alone", busy.display());
            continue;
        }
        groups.sort_by_key(|(_, depth)| std::cmp::Reverse(*depth));
        match groups.iter().try_for_each(|(g, _)| fs::remove_dir(g).map_err(|e| ctx(e, g, "remove"))) {
            Ok(()) => tracing::info!("removed the cgroups of {name}, left by a server that is gone"),
            Err(e) => tracing::warn!("removing the cgroups of {name}, left by a server that is gone: {e}"),
        }
    }
}

/// This server's cgroup parent: `sandbank-` and 48 bits of the FNV-1a hash of the data
/// directory's canonical path, so that a restarted server finds what a crashed one left, and
/// tests can tell this server's groups from another's.
pub fn cgroup_name(data_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data_dir.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sandbank-{:012x}", h & 0xffff_ffff_ffff)
}

/// `sandbank-` and 12 hex digits, as [`cgroup_name`] makes them.
fn is_server_group(name: &str) -> bool {
    name.strip_prefix("sandbank-").is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The parent group names of the servers running now, of this version or another: a server holds
/// the `lock` file of its data directory open for as long as it runs (it takes it before it makes
/// its group), and its group is named after that directory. Seen through `/proc/*/fd`; a process
/// that holds a file named `lock` counts, whatever it is (erring on the side of keeping groups).
fn live_servers() -> std::collections::HashSet<String> {
    let mut names = std::collections::HashSet::new();
    for proc_dir in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !proc_dir.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        for fd in fs::read_dir(proc_dir.path().join("fd")).into_iter().flatten().flatten() {
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            let target = Path::new(target.strip_suffix(" (deleted)").unwrap_or(&target));
            if target.file_name().is_some_and(|n| n == "lock") {
                if let Some(dir) = target.parent() {
                    names.insert(cgroup_name(dir));
                }
            }
        }
    }
    names
}

/// What [`Cgroups::usage`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// The page cache charged to it.
    pub memory_cache_bytes: u64,
}

/// `memory` for `/sys/fs/cgroup/memory/<parent>/<sandbox>`.
fn hierarchy_of(dir: &Path) -> Option<&str> {
    dir.parent()?.parent()?.file_name()?.to_str()
}

fn read_u64(path: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(path).map_err(|e| ctx(e, path, "read"))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("cgroup: {} holds {:?}, not a number", path.display(), text.trim())))
}

/// A `key value` line of a cgroup stat file.
fn stat_value(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn remove_group(dirs: &[PathBuf], timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut busy = false;
        for dir in dirs.iter().filter(|d| d.exists()) {
            if dir.join("freezer.state").exists() {
                let _ = fs::write(dir.join("freezer.state"), "THAWED");
            }
            if dir.join("cgroup.kill").exists() {
                let _ = fs::write(dir.join("cgroup.kill"), "1");
            }
            for pid in procs(dir) {
                // A stale pid only fails.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if Instant::now() < deadline => {
                    tracing::trace!("cgroup {} not empty yet: {e}", dir.display());
                    busy = true;
                }
                Err(e) => return Err(ctx(e, dir, "remove")),
            }
        }
        if !busy {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ctx(e, dir, "create")),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|e| ctx(e, &path, &format!("write {value:?} to")))
}

fn ctx(e: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("cgroup: {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cgroup_names_are_stable_across_builds_and_languages() {
        // The JS tests compute the same name (__test__/helpers.mjs `serverCgroupName`).
        assert_eq!(super::cgroup_name(std::path::Path::new("/tmp")), "sandbank-e39c4bcebddb");
    }
}
