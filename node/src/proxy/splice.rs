//! Zero-copy forwarding on Linux: `splice(2)` moves bytes from one socket into a pipe and from
//! the pipe into the other socket without copying them into this process. Readiness comes
//! from tokio (`readable`, `writable`, `try_io`), so a waiting direction costs no thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// How much one `splice` call moves at most (the kernel moves what fits in the pipe).
const CHUNK: usize = 1 << 20;
/// A new pipe's size on Linux.
const DEFAULT_PIPE: usize = 64 * 1024;
/// The size a pipe grows to once a transfer fills it: the most Linux lets an unprivileged
/// process ask for by default.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Moves everything `from` sends to `to`, then half-closes `to`; returns the byte count.
pub async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_out, pipe_in) = pipe()?;
    let (mut total, mut grown) = (0u64, false);
    loop {
        let n = match from.try_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), pipe_in.as_raw_fd(), CHUNK)
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                from.readable().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            // The other side finished sending: pass the end on (a half-close).
            // SAFETY: `to` owns a valid socket descriptor for as long as this call lasts.
            unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
            return Ok(total);
        }
        if !grown && n >= DEFAULT_PIPE {
            // A bulk transfer: a larger pipe moves more per call. Only then, since growing
            // costs every short connection time; if the system refuses, 64 KiB works too.
            // SAFETY: `pipe_in` is an open pipe descriptor.
            unsafe { libc::fcntl(pipe_in.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
            grown = true;
        }
        let mut left = n;
        while left > 0 {
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe_out.as_raw_fd(), to.as_raw_fd(), left)
            }) {
                Ok(sent) => left -= sent,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

/// A pipe, non-blocking at both ends: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One non-blocking `splice` of up to `len` bytes; 0 means the source has ended.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call; null offsets are
    // required for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
