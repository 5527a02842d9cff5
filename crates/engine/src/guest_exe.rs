//! The `sandbank` binary as the engine starts it for sandboxes: through a detached, read-only
//! bind mount of it, made once per engine.
//!
//! envd (PID 1) and what it forks before an exec run that binary, so their `/proc/self/exe`
//! leads to it: a `#!/proc/self/exe` script that envd runs starts it again inside the sandbox,
//! where a preloaded library can open it by that link. Through a read-only mount, a chmod,
//! chown, xattr or write on it fails with EROFS whatever the sandbox's capabilities (without a
//! user namespace, root inside holds CAP_FOWNER and CAP_CHOWN over host files). The mount is
//! attached nowhere, so it is in no mount table, propagates nowhere and goes with the engine's
//! descriptor, however the engine ends. (runc met the same attack as CVE-2019-5736.)

use crate::error::SysError;
use crate::mounts;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct GuestExe {
    tree: Arc<OwnedFd>,
    host_path: PathBuf,
}

impl GuestExe {
    pub fn open(host_path: &Path) -> Result<Self, SysError> {
        let tree = mounts::clone_tree(host_path, false)?;
        mounts::set_read_only(&tree)
            .map_err(|e| e.within(format!("make the mount of {} read-only", host_path.display())))?;
        Ok(Self { tree: Arc::new(tree), host_path: host_path.to_path_buf() })
    }

    /// The path to exec: the mount's descriptor, which every child of this process inherits
    /// until its exec (it is close-on-exec; ELF binaries run from such a descriptor).
    pub fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.tree.as_raw_fd()))
    }

    /// The host file, for messages.
    pub fn host_path(&self) -> &Path {
        &self.host_path
    }

    /// A command that runs the binary through the mount, named `sandbank` in its argv (no host
    /// path in `/proc/*/cmdline`).
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(self.exec_path());
        std::os::unix::process::CommandExt::arg0(&mut cmd, "sandbank");
        cmd
    }
}
