//! Host programs the engine runs (pasta, CRIU): found on `PATH`, then in the usual system
//! directories, since a server may run with a bare `PATH`.

use std::path::{Path, PathBuf};

const SYSTEM_DIRS: [&str; 6] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The first executable file `name` on `PATH` or in the system directories.
pub(crate) fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(SYSTEM_DIRS.map(PathBuf::from)).map(|d| d.join(name)).find(|p| is_executable(p))
}

pub(crate) fn is_executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
}
