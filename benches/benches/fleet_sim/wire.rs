//! A listener that counts the bytes of every connection, so the simulation reports
//! what an idle poll costs on the wire (request and answer, headers included), not
//! only body bytes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Totals over all connections.
#[derive(Debug, Default)]
pub struct Wire {
    /// Bytes the server read (requests).
    pub read: AtomicU64,
    /// Bytes the server wrote (answers).
    pub written: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

impl Wire {
    /// (read, written, connections) now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.read.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

/// A TCP listener whose connections count into one [`Wire`].
pub struct CountingListener {
    inner: TcpListener,
    wire: Arc<Wire>,
}

impl CountingListener {
    pub fn new(inner: TcpListener, wire: Arc<Wire>) -> Self {
        CountingListener { inner, wire }
    }
}

impl axum::serve::Listener for CountingListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedStream, SocketAddr) {
        // An accept error here is almost always file-descriptor exhaustion; a bench
        // that went on would measure refused connections, so it stops loudly.
        let (stream, addr) = self
            .inner
            .accept()
            .await
            .unwrap_or_else(|e| panic!("accept failed: {e} (out of file descriptors?)"));
        self.wire.connections.fetch_add(1, Ordering::Relaxed);
        (
            CountedStream {
                inner: stream,
                wire: Arc::clone(&self.wire),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One counted connection.
pub struct CountedStream {
    inner: TcpStream,
    wire: Arc<Wire>,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let n = (buf.filled().len() - before) as u64;
            self.wire.read.fetch_add(n, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.wire.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            self.wire.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
