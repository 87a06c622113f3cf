//! The API's own accept loop over hyper, so that no client can hold more of the node than
//! [`Limits`] allow: at most `max_connections` at once (one more is answered 503 and closed,
//! and logged); `header_timeout` to send a request's headers, which hyper also counts while a
//! kept-alive connection waits for its next request (checked in hyper 1.12's source: its
//! header timer starts whenever the connection waits for a request head), so an idle
//! connection is closed after it too; and `idle_timeout` with no byte moving either way in the
//! middle of a request (a body that trickles in, or a client that stops reading an answer).

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, warn};

/// What one client may hold of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Time to send a request's headers, counted from the connection's start or from the end
    /// of the previous answer (so it is also how long an idle connection is kept).
    pub header_timeout: Duration,
    /// Time with no byte moving either way while a request is being read or answered.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` within `limits` until the process ends. `refusal` is the
/// whole HTTP answer sent to a connection over the cap.
pub async fn serve(
    listener: TcpListener,
    limits: Limits,
    app: Router,
    refusal: Vec<u8>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused = RefusalLog::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait for connections to close.
                warn!(error = %e, "API: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Best effort and never waiting: the client may not even read it.
            let _ = stream.try_write(&refusal);
            refused.note(limits.max_connections);
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            connection(stream, app, limits, tls).await;
            drop(permit);
        });
    }
}

/// Logs refused connections at most once a second, with how many there were.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn note(&mut self, cap: usize) {
        self.unlogged += 1;
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            warn!(
                refused = self.unlogged,
                cap,
                "API: connection refused, the node serves this many at once (--api-max-connections)"
            );
            self.last = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

/// One connection: TLS first if the API has it (its handshake within the header timeout),
/// then HTTP/1 with hyper's header timer, dropped (and so closed) when no byte has moved for
/// `idle_timeout`.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let activity = Activity {
        started: Instant::now(),
        moved: Arc::new(AtomicU64::new(0)),
    };
    let io = Watched {
        stream,
        activity: activity.clone(),
    };
    match tls {
        None => http(io, app, limits, activity).await,
        Some(tls) => {
            let handshake = tokio::time::timeout(limits.header_timeout, tls.accept(io)).await;
            match handshake {
                Ok(Ok(io)) => http(io, app, limits, activity).await,
                Ok(Err(e)) => debug!(error = %e, "API: a TLS handshake failed"),
                Err(_) => debug!("API: a TLS handshake timed out"),
            }
        }
    }
}

/// HTTP/1 on `io` until it ends or no byte has moved ([`Activity`]) for the idle timeout.
async fn http<I>(io: I, app: Router, limits: Limits, activity: Activity)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let app = app.layer(axum::Extension(activity.clone()));
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let last_moved = || activity.last();
    loop {
        tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    debug!(error = %e, "API connection ended");
                }
                return;
            }
            () = tokio::time::sleep_until(last_moved() + limits.idle_timeout) => {
                if last_moved().elapsed() >= limits.idle_timeout {
                    debug!(timeout = ?limits.idle_timeout, "API connection closed: nothing moved");
                    return;
                }
            }
        }
    }
}

/// When a byte last moved on a connection, in milliseconds since its start. A long answer
/// (a watch) that has nothing to send, and whose client has read all it was sent, finds it
/// among its request's extensions and winds it: the connection is quiet, not stuck.
#[derive(Clone)]
pub struct Activity {
    started: Instant,
    moved: Arc<AtomicU64>,
}

impl Activity {
    /// Notes that the connection is alive now.
    pub fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.moved.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.moved.load(Ordering::Relaxed))
    }
}

/// A TCP stream that notes when a byte last moved.
struct Watched {
    stream: TcpStream,
    activity: Activity,
}

impl Watched {
    fn touch<T>(&self, poll: &Poll<std::io::Result<T>>) {
        if matches!(poll, Poll::Ready(Ok(_))) {
            self.activity.touch();
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.touch(&poll);
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.touch(&poll);
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Raises this process's soft limit on open files to its hard limit (each API connection is
/// one), returning the new limit.
#[cfg(target_os = "linux")]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Elsewhere the limit is left as it is.
#[cfg(not(target_os = "linux"))]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    Err(std::io::ErrorKind::Unsupported.into())
}
