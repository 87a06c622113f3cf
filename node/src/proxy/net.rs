//! The sockets the service proxy uses, behind the [`Net`] trait: real TCP ([`Tcp`]: `splice`
//! on Linux) and an in-memory twin ([`MemoryNet`]) in which listeners are addresses in a table
//! and a connection is a pair of in-memory pipes, for nodes run inside one process.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the proxy needs of a network. Implementations are cheap to clone (a handle).
pub trait Net: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Listener: Send + 'static;

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// The next connection made to `listener`.
    fn accept(
        listener: &mut Self::Listener,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Whether nothing has closed or reset `conn`; what waits to be read (a server's
    /// greeting) stays for the client.
    fn still_open(conn: &mut Self::Stream) -> bool;

    /// Joins two connections until both directions end.
    fn join(
        client: &mut Self::Stream,
        upstream: &mut Self::Stream,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// Real TCP, no Nagle delay.
#[derive(Clone, Copy, Default)]
pub struct Tcp;

impl Net for Tcp {
    type Stream = TcpStream;
    type Listener = TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    async fn accept(listener: &mut TcpListener) -> io::Result<TcpStream> {
        let (conn, _) = listener.accept().await?;
        let _ = conn.set_nodelay(true);
        Ok(conn)
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let conn = TcpStream::connect(addr).await?;
        let _ = conn.set_nodelay(true);
        Ok(conn)
    }

    fn still_open(conn: &mut TcpStream) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        match conn.poll_peek(&mut cx, &mut buf) {
            Poll::Pending => true,
            Poll::Ready(Ok(n)) => n > 0,
            Poll::Ready(Err(_)) => false,
        }
    }

    /// On Linux the bytes go from socket to socket inside the kernel (`splice` through a
    /// pipe), never through this process's memory: on loopback that more than doubles a
    /// proxied stream's throughput.
    #[cfg(target_os = "linux")]
    async fn join(client: &mut TcpStream, upstream: &mut TcpStream) -> io::Result<()> {
        tokio::try_join!(
            super::splice::one_way(client, upstream),
            super::splice::one_way(upstream, client)
        )?;
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    async fn join(client: &mut TcpStream, upstream: &mut TcpStream) -> io::Result<()> {
        const COPY_BUFFER: usize = 128 * 1024;
        tokio::io::copy_bidirectional_with_sizes(client, upstream, COPY_BUFFER, COPY_BUFFER)
            .await?;
        Ok(())
    }
}

/// Bytes a direction of an in-memory connection holds before its writer waits.
const PIPE: usize = 64 * 1024;
/// Connections waiting to be accepted, per in-memory listener.
const BACKLOG: usize = 128;

/// The in-memory twin: clones share one table of listeners.
#[derive(Clone, Default)]
pub struct MemoryNet {
    listening: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<MemoryStream>>>>,
}

/// An in-memory listener; dropped, its address is free again.
pub struct MemoryListener {
    addr: SocketAddr,
    incoming: mpsc::Receiver<MemoryStream>,
    net: MemoryNet,
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        self.net.table().remove(&self.addr);
    }
}

/// One end of an in-memory connection, which can look at the next byte without taking it.
pub struct MemoryStream {
    pipe: DuplexStream,
    peeked: Option<u8>,
}

impl MemoryNet {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<MemoryStream>>> {
        self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Listens at `addr` and hands each connection made to it to a task of its own, which
    /// `serve` runs: a stand-in for a container's server.
    pub async fn serve<F, Fut>(&self, addr: SocketAddr, serve: F) -> io::Result<()>
    where
        F: Fn(MemoryStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut listener = self.bind(addr).await?;
        tokio::spawn(async move {
            while let Ok(conn) = Self::accept(&mut listener).await {
                tokio::spawn(serve(conn));
            }
        });
        Ok(())
    }
}

fn stream(pipe: DuplexStream) -> MemoryStream {
    MemoryStream { pipe, peeked: None }
}

impl Net for MemoryNet {
    type Stream = MemoryStream;
    type Listener = MemoryListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<MemoryListener> {
        let mut table = self.table();
        if table.contains_key(&addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        let (tx, incoming) = mpsc::channel(BACKLOG);
        table.insert(addr, tx);
        Ok(MemoryListener {
            addr,
            incoming,
            net: self.clone(),
        })
    }

    async fn accept(listener: &mut MemoryListener) -> io::Result<MemoryStream> {
        listener
            .incoming
            .recv()
            .await
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<MemoryStream> {
        let listener = self.table().get(&addr).cloned();
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let listener = listener.ok_or_else(refused)?;
        let (ours, theirs) = tokio::io::duplex(PIPE);
        listener.try_send(stream(theirs)).map_err(|_| refused())?;
        Ok(stream(ours))
    }

    fn still_open(conn: &mut MemoryStream) -> bool {
        if conn.peeked.is_some() {
            return true;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        match Pin::new(&mut conn.pipe).poll_read(&mut cx, &mut buf) {
            Poll::Pending => true,
            Poll::Ready(Ok(())) if buf.filled().len() == 1 => {
                conn.peeked = Some(byte[0]);
                true
            }
            Poll::Ready(_) => false,
        }
    }

    async fn join(client: &mut MemoryStream, upstream: &mut MemoryStream) -> io::Result<()> {
        tokio::io::copy_bidirectional(client, upstream).await?;
        Ok(())
    }
}

impl AsyncRead for MemoryStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(byte) = self.peeked.take() {
            buf.put_slice(&[byte]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemoryStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}
