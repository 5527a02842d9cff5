//! Reading a non-blocking descriptor (a terminal's master side, an inotify descriptor) that is
//! registered with the runtime.

use std::io;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;

/// Waits until `fd` is readable and reads what it has into `buf`.
pub async fn read(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        let res = guard.try_io(|fd| nix::unistd::read(fd, buf).map_err(io::Error::from));
        match res {
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}
