//! Pseudo-terminals for PTY processes: the master side, non-blocking on the tokio reactor.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use tokio::io::unix::AsyncFd;

/// The master side of a process's terminal.
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

fn set_flags(fd: &OwnedFd, nonblock: bool) -> io::Result<()> {
    use rustix::io::{fcntl_setfd, FdFlags};
    fcntl_setfd(fd, FdFlags::CLOEXEC)?;
    if nonblock {
        let fl = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK)?;
    }
    Ok(())
}

fn winsize(cols: u32, rows: u32) -> libc::winsize {
    let clamp = |v: u32, d: u16| if v == 0 { d } else { v.min(u16::MAX as u32) as u16 };
    libc::winsize { ws_row: clamp(rows, 24), ws_col: clamp(cols, 80), ws_xpixel: 0, ws_ypixel: 0 }
}

/// Opens a new terminal of `cols`×`rows`; returns the master and the slave (both close-on-exec).
/// Must be called inside a runtime.
pub fn open(cols: u32, rows: u32) -> io::Result<(Master, OwnedFd)> {
    let ws = winsize(cols, rows);
    let pty = nix::pty::openpty(Some(&ws), None).map_err(io::Error::from)?;
    set_flags(&pty.master, true)?;
    set_flags(&pty.slave, false)?;
    let fd = crate::sys::async_fd(pty.master)?;
    Ok((Master { fd }, pty.slave))
}

impl Master {
    /// Reads output; `Ok(0)` once every slave descriptor is closed (the kernel says EIO).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match super::fdio::read(&self.fd, buf).await {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            result => result,
        }
    }

    /// Writes all of `data` (the terminal's input).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            let res = guard.try_io(|fd| nix::unistd::write(fd, data).map_err(io::Error::from));
            match res {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Sets the terminal size (TIOCSWINSZ); the foreground process group gets SIGWINCH.
    pub fn resize(&self, cols: u32, rows: u32) -> io::Result<()> {
        let ws = winsize(cols, rows);
        crate::sys::set_window_size(self.fd.get_ref().as_fd(), &ws)
    }
}
