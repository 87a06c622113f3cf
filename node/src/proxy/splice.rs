//! Zero-copy forwarding on Linux: `splice(2)` moves bytes from one socket into a pipe and from
//! the pipe into the other socket without copying them into this process. Readiness comes
//! from tokio (`readable`, `writable`, `try_io`), so a waiting direction costs no thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most one direction holds in its pipe: what a connection whose receiver lags costs in
/// memory. (A pipe's size counts slots, and a slot can hold more than a page of a socket's
/// buffer, so the pipe itself would hold several times its size.)
const HELD: usize = 1 << 20;
/// The size a pipe grows to once a transfer fills it: the most Linux lets an unprivileged
/// process ask for by default.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Moves everything `from` sends to `to`, then half-closes `to`; returns the byte count.
///
/// Both sockets are kept busy at once: bytes are taken in from `from` while earlier ones go
/// out to `to`, through one pipe. The bytes in the pipe are counted here, which tells the two
/// meanings of a refused splice apart: out of the pipe, `to` is full (the pipe holds bytes);
/// into it, `from` is empty, or the pipe is full when `from` still holds bytes or its end
/// ([`fill`]).
pub async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_out, pipe_in) = pipe()?;
    let (mut total, mut in_pipe) = (0u64, 0usize);
    let (mut ended, mut pipe_full, mut grown) = (false, false, false);
    loop {
        let mut moved = false;
        if !ended && !pipe_full && in_pipe < HELD {
            match from.try_io(Interest::READABLE, || fill(from, &pipe_in, in_pipe)) {
                Ok(Fill::Moved(n)) => (in_pipe, moved) = (in_pipe + n, true),
                Ok(Fill::Ended) => ended = true,
                Ok(Fill::PipeFull) if !grown => {
                    // A bulk transfer: a larger pipe moves more per call. Only then, since
                    // growing costs every short connection time; if the system refuses, the
                    // pipe stays as it is. Either way, try again at once.
                    // SAFETY: `pipe_in` is an open pipe descriptor.
                    unsafe { libc::fcntl(pipe_in.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
                    (grown, moved) = (true, true);
                }
                Ok(Fill::PipeFull) => pipe_full = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if in_pipe > 0 {
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe_out.as_raw_fd(), to.as_raw_fd(), in_pipe)
            }) {
                Ok(n) => {
                    (in_pipe, total, pipe_full, moved) =
                        (in_pipe - n, total + n as u64, false, true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if ended && in_pipe == 0 {
            // The other side finished sending: pass the end on (a half-close).
            // SAFETY: `to` owns a valid socket descriptor for as long as this call lasts.
            unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
            return Ok(total);
        }
        if moved {
            // A long transfer whose sockets are always ready would never wait: give the
            // other direction and the runtime's other tasks their turn.
            tokio::task::consume_budget().await;
        } else {
            // Nothing could move: wait for bytes to take in (unless there is no room for
            // them or the stream ended) or for room to send out (if the pipe holds any).
            let take_in = !ended && !pipe_full && in_pipe < HELD;
            tokio::select! {
                ready = from.readable(), if take_in => ready?,
                ready = to.writable(), if in_pipe > 0 => ready?,
            }
        }
    }
}

/// What one splice from a socket into the pipe did.
#[derive(Debug, PartialEq)]
enum Fill {
    Moved(usize),
    /// The socket's stream has ended.
    Ended,
    /// The pipe has no room, while the socket holds bytes or its end.
    PipeFull,
}

/// Splices what `from` holds into the pipe, which holds `in_pipe` bytes, up to [`HELD`]. A
/// full pipe refuses before the socket is even looked at, so a refusal is `WouldBlock` (and
/// tokio waits for `from` to become readable again) only when `from` is empty. When it still
/// holds bytes, or the peer's end of the stream, the pipe is full: waiting for `from` would
/// wait for what has already come (or, for an end, not wait at all and spin).
fn fill(from: &TcpStream, pipe_in: &OwnedFd, in_pipe: usize) -> io::Result<Fill> {
    match splice(from.as_raw_fd(), pipe_in.as_raw_fd(), HELD - in_pipe) {
        Ok(0) => Ok(Fill::Ended),
        Ok(n) => Ok(Fill::Moved(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && in_pipe > 0 && pending(from)? => {
            Ok(Fill::PipeFull)
        }
        Err(e) => Err(e),
    }
}

/// Whether `socket` holds bytes or the end of its stream, taking nothing from it.
fn pending(socket: &TcpStream) -> io::Result<bool> {
    let mut byte = 0u8;
    // SAFETY: `recv` writes at most one byte into `byte`; the descriptor is open.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n >= 0 {
        return Ok(true);
    }
    match io::Error::last_os_error() {
        e if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        e => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::tests::connected;
    use tokio::io::AsyncWriteExt;

    /// A pipe filled until it refuses more: (read end, write end, bytes in it).
    fn full_pipe() -> (OwnedFd, OwnedFd, usize) {
        let (pipe_out, pipe_in) = pipe().unwrap();
        let (chunk, mut held) = ([7u8; 4096], 0);
        loop {
            // SAFETY: writes from a live buffer to an open, non-blocking pipe.
            let n = unsafe { libc::write(pipe_in.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) };
            if n <= 0 {
                return (pipe_out, pipe_in, held);
            }
            held += n as usize;
        }
    }

    #[tokio::test]
    async fn a_full_pipe_is_told_from_an_empty_socket_even_when_only_the_end_is_left() {
        let (_pipe_out, pipe_in, held) = full_pipe();
        let (here, mut there) = connected().await;
        let empty = fill(&here, &pipe_in, held).map_err(|e| e.kind());
        assert_eq!(empty, Err(io::ErrorKind::WouldBlock), "nothing has come");
        there.write_all(b"x").await.unwrap();
        here.readable().await.unwrap();
        assert_eq!(
            fill(&here, &pipe_in, held).unwrap(),
            Fill::PipeFull,
            "a byte"
        );

        let (here, mut there) = connected().await;
        there.shutdown().await.unwrap();
        here.readable().await.unwrap();
        assert_eq!(
            fill(&here, &pipe_in, held).unwrap(),
            Fill::PipeFull,
            "the end"
        );
        let (_pipe_out, pipe_in) = pipe().unwrap();
        assert_eq!(fill(&here, &pipe_in, 0).unwrap(), Fill::Ended, "with room");
    }
}
