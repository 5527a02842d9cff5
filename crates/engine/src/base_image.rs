//! The `base` template's image: Debian 12 ("bookworm") with what the cloud's base template has
//! (the user `user`, uid 1000, with passwordless `sudo`; python3 with pip and venv, node with
//! npm, git, curl and the usual tools), built once from Debian's packages by `mmdebstrap` and
//! offline after that. No host directory is in it: what a sandbox can run is the same on every
//! machine.
//!
//! An image is named by its recipe ([`Recipe::id`]: the suite, the packages, how they are set up)
//! and never changes once built: sandboxes and snapshots lie over it. It is built aside
//! (`.<id>.building/`) and renamed into place complete, under a lock that servers sharing a
//! directory of images wait on. Beside its `rootfs/` it keeps `packages.txt`, every installed
//! package and its version (the suite is pinned; the versions are what the mirror had that day),
//! and `build.log`.

use crate::which::find_executable;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian release every base image is made of.
pub const SUITE: &str = "bookworm";
/// Where the packages come from, unless `SANDBANK_DEBIAN_MIRROR` (and
/// `SANDBANK_DEBIAN_SECURITY_MIRROR`) name another mirror.
const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// What the base has besides Debian's minimal system (`minbase`): the cloud base's tools.
const PACKAGES: &[&str] = &[
    "sudo",
    "python3",
    "python3-pip",
    "python3-venv",
    "python-is-python3",
    "nodejs",
    "npm",
    "git",
    "curl",
    "wget",
    "ca-certificates",
    "procps",
    "psmisc",
    "less",
    "nano",
    "file",
    "iproute2",
    "iputils-ping",
    "unzip",
    "zip",
    "xz-utils",
    "openssh-client",
];

/// Run inside the new system (`$1` is its root) once its packages are in: the user, its sudo
/// rule, the files the engine binds over per sandbox, and pip allowed to install system-wide as
/// in the cloud (Debian's python refuses without `--break-system-packages`).
const SETUP: &str = r#"set -e
chroot "$1" useradd --create-home --uid 1000 --user-group --shell /bin/bash user
printf 'user ALL=(ALL:ALL) NOPASSWD: ALL\n' > "$1/etc/sudoers.d/user"
chmod 0440 "$1/etc/sudoers.d/user"
printf 'sandbox\n' > "$1/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$1/etc/hosts"
: > "$1/etc/resolv.conf"
chmod 0644 "$1/etc/hostname" "$1/etc/hosts" "$1/etc/resolv.conf"
ln -sfn ../proc/self/mounts "$1/etc/mtab"
rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED
"#;

/// Certificate authorities the host's administrator added (Debian's and Ubuntu's place for them):
/// the base trusts them too, so that sandboxes reach through a TLS-inspecting proxy where the host
/// does. Public certificates, and part of the recipe.
const HOST_CAS: &str = "/usr/local/share/ca-certificates";

/// Bumped when the way an image is built changes what it holds beyond [`SUITE`], [`PACKAGES`]
/// and [`SETUP`].
const BUILD_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BaseImageError {
    #[error(
        "the base image is built from Debian's packages with mmdebstrap, which is not installed \
         (Debian/Ubuntu: apt-get install mmdebstrap)"
    )]
    NoMmdebstrap,
    #[error("building the base image: {step}: {source}")]
    Io {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "building the base image failed ({status}); it needs {mirror} once. Its log ({log}) ends:\n{tail}",
        log = log.display()
    )]
    Failed { status: String, mirror: String, log: PathBuf, tail: String },
}

fn io_err(step: impl Into<String>) -> impl FnOnce(io::Error) -> BaseImageError {
    let step = step.into();
    move |source| BaseImageError::Io { step, source }
}

/// A built image.
#[derive(Clone, Debug)]
pub struct BaseImage {
    dir: PathBuf,
}

impl BaseImage {
    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Its name: the recipe's.
    pub fn id(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
    /// The system itself: a sandbox's lowest layer.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// `name version` lines, one per installed package.
    pub fn packages(&self) -> PathBuf {
        self.dir.join("packages.txt")
    }
}

/// The recipe of the base image: [`SUITE`] with [`PACKAGES`], set up by [`SETUP`], trusting the
/// host's added certificate authorities ([`HOST_CAS`]).
pub struct Recipe {
    /// `(file name, contents)` of each `.crt` in [`HOST_CAS`], sorted.
    host_cas: Vec<(String, Vec<u8>)>,
}

impl Recipe {
    pub fn of_host() -> Self {
        Self { host_cas: host_certificates() }
    }

    /// `debian-bookworm-<12 hex digits of the recipe's hash>`.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("{BUILD_VERSION}\n{SUITE}\n{}\n{SETUP}", PACKAGES.join(",")));
        for (name, pem) in &self.host_cas {
            h.update(format!("\n{name}\n"));
            h.update(pem);
        }
        let hex: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("debian-{SUITE}-{hex}")
    }

    /// [`SETUP`], then the host's certificate authorities copied in and trusted.
    fn setup_script(&self) -> String {
        let mut script = SETUP.to_string();
        if !self.host_cas.is_empty() {
            for (name, _) in &self.host_cas {
                // Names are checked to need no quoting (see `certificates_in`).
                script.push_str(&format!("cp '{HOST_CAS}/{name}' \"$1/usr/local/share/ca-certificates/{name}\"\n"));
            }
            script.push_str("chroot \"$1\" update-ca-certificates >/dev/null\n");
        }
        script
    }
}

/// Takes the lock file `path` (made if missing), waiting, with a line in the log, while another
/// process (a server sharing the directory of images) holds it to make `what`.
pub(crate) fn lock(path: &Path, what: &str) -> io::Result<Flock<fs::File>> {
    let file = fs::File::create(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, _)) => {
            tracing::info!("another server is making {what} ({}): waiting for it", path.display());
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e.into())
        }
    }
}

/// The host's added certificate authorities ([`HOST_CAS`]): `(file name, PEM)`.
pub(crate) fn host_certificates() -> Vec<(String, Vec<u8>)> {
    certificates_in(Path::new(HOST_CAS))
}

/// The `.crt` files directly in `dir` whose names a shell takes as they are, sorted by name.
fn certificates_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            (plain && name.ends_with(".crt")).then(|| Some((name, fs::read(e.path()).ok()?))).flatten()
        })
        .collect();
    out.sort();
    out
}

/// The base image in `images`, built first if it is not there (which takes a minute or more and
/// the network: the progress goes to the log at info level).
pub fn ensure(images: &Path) -> Result<BaseImage, BaseImageError> {
    let recipe = Recipe::of_host();
    let image = BaseImage { dir: images.join(recipe.id()) };
    if image.packages().is_file() {
        return Ok(image);
    }
    fs::create_dir_all(images).map_err(io_err(format!("create {}", images.display())))?;
    let lock_path = images.join(format!(".{}.lock", image.id()));
    let _lock = lock(&lock_path, "the base image").map_err(io_err(format!("lock {}", lock_path.display())))?;
    if image.packages().is_file() {
        return Ok(image);
    }
    build(images, &image, &recipe)?;
    Ok(image)
}

fn build(images: &Path, image: &BaseImage, recipe: &Recipe) -> Result<(), BaseImageError> {
    let mmdebstrap = find_executable("mmdebstrap").ok_or(BaseImageError::NoMmdebstrap)?;
    let staging = images.join(format!(".{}.building", image.id()));
    crate::tree::remove_tree(&staging).map_err(io_err(format!("remove {}", staging.display())))?;
    fs::create_dir_all(&staging).map_err(io_err(format!("create {}", staging.display())))?;
    let log_path = staging.join("build.log");
    let mut log = fs::File::create(&log_path).map_err(io_err(format!("create {}", log_path.display())))?;
    let mirror = std::env::var("SANDBANK_DEBIAN_MIRROR").unwrap_or_else(|_| MIRROR.into());
    let security = std::env::var("SANDBANK_DEBIAN_SECURITY_MIRROR").unwrap_or_else(|_| SECURITY_MIRROR.into());
    tracing::info!("building the base image {} (Debian {SUITE}, from {mirror}): about a minute, once", image.id());

    let started = std::time::Instant::now();
    let mode = if nix::unistd::geteuid().is_root() { "--mode=root" } else { "--mode=unshare" };
    // In mount and PID namespaces of its own, which die with this process: were the server
    // killed during the build, mmdebstrap, what it runs (apt, dpkg) and what it mounts in the
    // new system (/proc, /sys, /dev/pts) would go on without it (seen: even SIGTERM leaves its
    // mounts behind).
    let unshare = find_executable("unshare").ok_or_else(|| BaseImageError::Io {
        step: "find unshare (util-linux)".into(),
        source: io::ErrorKind::NotFound.into(),
    })?;
    let mut cmd = Command::new(unshare);
    cmd.args(["--mount", "--propagation", "private", "--pid", "--kill-child"]).arg(&mmdebstrap);
    crate::sys::before_exec(&mut cmd, crate::sys::BeforeExec { die_with_parent: true, ..Default::default() });
    let mut child = cmd
        .args([mode, "--variant=minbase", "--format=directory", "--aptopt=Acquire::Retries \"3\""])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!("--customize-hook={}", recipe.setup_script()))
        .arg(SUITE)
        .arg(staging.join("rootfs"))
        .arg(format!("deb {mirror} {SUITE} main"))
        .arg(format!("deb {mirror} {SUITE}-updates main"))
        .arg(format!("deb {security} {SUITE}-security main"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(format!("run {}", mmdebstrap.display())))?;
    // Its steps are `I: …` lines on stderr: each one is a progress line of ours.
    let stdout = child.stdout.take().expect("piped");
    let stdout_copy = std::thread::spawn(move || io::BufReader::new(stdout).lines().map_while(Result::ok).collect());
    for line in io::BufReader::new(child.stderr.take().expect("piped")).lines().map_while(Result::ok) {
        if let Some(step) = line.strip_prefix("I: ") {
            tracing::info!("base image: {step}");
        }
        let _ = writeln!(log, "{line}");
    }
    let out: Vec<String> = stdout_copy.join().unwrap_or_default();
    let _ = writeln!(log, "{}", out.join("\n"));
    let status = child.wait().map_err(io_err("wait for mmdebstrap"))?;
    if !status.success() {
        // The log outlives the half-built system.
        let kept = images.join(format!("{}.failed.log", image.id()));
        let _ = fs::rename(&log_path, &kept);
        let _ = crate::tree::remove_tree(&staging);
        let text = fs::read_to_string(&kept).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        return Err(BaseImageError::Failed { status: status.to_string(), mirror, log: kept, tail });
    }
    let packages = installed_packages(&staging.join("rootfs/var/lib/dpkg/status"))
        .map_err(io_err("read the image's package list"))?;
    fs::write(staging.join("packages.txt"), packages.join("\n") + "\n").map_err(io_err("write packages.txt"))?;
    fs::rename(&staging, &image.dir).map_err(io_err(format!("move the image to {}", image.dir.display())))?;
    let _ = fs::remove_file(images.join(format!("{}.failed.log", image.id())));
    tracing::info!("built the base image {} ({} packages) in {:.0?}", image.id(), packages.len(), started.elapsed());
    Ok(())
}

/// `name version` of every package dpkg's status file says is installed, sorted.
fn installed_packages(status: &Path) -> io::Result<Vec<String>> {
    let text = fs::read_to_string(status)?;
    let mut out: Vec<String> = text
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::trim))
            };
            (field("Status") == Some("install ok installed"))
                .then(|| Some(format!("{} {}", field("Package")?, field("Version")?)))
                .flatten()
        })
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_names_the_suite_and_changes_with_the_recipe() {
        let plain = Recipe { host_cas: Vec::new() };
        let id = plain.id();
        assert!(id.starts_with("debian-bookworm-") && id.len() == "debian-bookworm-".len() + 12, "{id}");
        assert_eq!(id, Recipe { host_cas: Vec::new() }.id(), "stable");
        assert!(!plain.setup_script().contains("update-ca-certificates"));
        let with_ca = Recipe { host_cas: vec![("corp.crt".into(), b"PEM".to_vec())] };
        assert_ne!(with_ca.id(), id, "a host CA makes another image");
        let script = with_ca.setup_script();
        assert!(script.contains("cp '/usr/local/share/ca-certificates/corp.crt'"), "{script}");
        assert!(script.ends_with("update-ca-certificates >/dev/null\n"), "{script}");
    }

    #[test]
    fn host_certificates_are_the_plain_crt_files() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["b.crt", "a.crt", "notes.txt", "it's.crt"] {
            fs::write(tmp.path().join(name), name).unwrap();
        }
        fs::create_dir(tmp.path().join("sub.crt")).unwrap();
        let names: Vec<String> = certificates_in(tmp.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a.crt", "b.crt"]);
        assert!(certificates_in(&tmp.path().join("absent")).is_empty());
    }

    #[test]
    fn installed_packages_come_from_dpkg_status() {
        let tmp = tempfile::tempdir().unwrap();
        let status = tmp.path().join("status");
        fs::write(
            &status,
            "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
             Package: apt\nStatus: install ok installed\nPriority: required\nVersion: 2.6.1\n",
        )
        .unwrap();
        assert_eq!(installed_packages(&status).unwrap(), vec!["apt 2.6.1", "bash 5.2.15-2+b7"]);
    }
}
