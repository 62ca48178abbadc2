//! Write coalescing for HTTP/2 connections, shared by the server's client
//! ports and the load generator's connections.
//!
//! hyper's HTTP/2 connection flushes each time it runs, and a server's
//! connection runs once per finished stream: when Raft applies a batch of 30 puts, their
//! 30 responses leave in 30 `writev` calls, each paying the whole loopback
//! TCP path (a leader profile showed one `writev` per put and ~15% of its CPU
//! under it). [`Coalesce`] buffers what the connection writes and, at the
//! first flush after a write, lets the other ready tasks of this worker run
//! first (tokio's `yield_now` defers the wake-up until the worker has nothing
//! else to do), so responses finished in the same turn share one `writev`.
//! An idle worker flushes at once; a busy one flushes after its queue. A
//! client gains the same way when many of its tasks send at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes buffered before a write goes to the socket without waiting for the
/// flush; larger writes than this skip the buffer when it is empty.
const LIMIT: usize = 64 << 10;

/// A stream whose writes are gathered until the end of the worker's turn.
pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already written to `inner`.
    written: usize,
    /// The yield in progress at a flush, if any.
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The yield of the current flush has happened: drain now.
    yielded: bool,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Coalesce { inner, buf: Vec::new(), written: 0, yielding: None, yielded: false }
    }

    fn pending(&self) -> usize {
        self.buf.len() - self.written
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes everything buffered to the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        if self.buf.capacity() > 4 * LIMIT {
            self.buf.shrink_to(LIMIT);
        }
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: drains when the buffer would outgrow
    /// [`LIMIT`]. Ready(true) means buffer them; Ready(false), write them
    /// straight through (the buffer is empty and they are large).
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.pending() + len > LIMIT && self.pending() > 0 {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(len < LIMIT))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if ready!(this.poll_room(cx, data.len()))? {
            this.buf.extend_from_slice(data);
            Poll::Ready(Ok(data.len()))
        } else {
            Pin::new(&mut this.inner).poll_write(cx, data)
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if ready!(this.poll_room(cx, len))? {
            for b in bufs {
                this.buf.extend_from_slice(b);
            }
            Poll::Ready(Ok(len))
        } else {
            Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending() > 0 && !this.yielded {
            let yielding = this.yielding.get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            ready!(yielding.as_mut().poll(cx));
            this.yielding = None;
            this.yielded = true;
        }
        ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn writes_arrive_whole_and_in_order_after_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalesce::new(a);
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let chunk = vec![(i % 251) as u8; (i as usize * 37) % 3000 + 1];
            expected.extend_from_slice(&chunk);
            if i % 3 == 0 {
                let half = chunk.len() / 2;
                let slices = [io::IoSlice::new(&chunk[..half]), io::IoSlice::new(&chunk[half..])];
                let n = w.write_vectored(&slices).await.unwrap();
                assert_eq!(n, chunk.len(), "a vectored write is taken whole");
            } else {
                w.write_all(&chunk).await.unwrap();
            }
        }
        // A large write passes the buffer by.
        let big = vec![7u8; 3 * LIMIT];
        expected.extend_from_slice(&big);
        w.write_all(&big).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.pending(), 0);
        let mut got = vec![0u8; expected.len()];
        b.read_exact(&mut got).await.unwrap();
        assert!(got == expected, "bytes differ");
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn nothing_leaves_before_a_flush_below_the_limit() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalesce::new(a);
        w.write_all(b"hello").await.unwrap();
        let mut one = [0u8; 1];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut one));
        assert!(early.await.is_err(), "data left before the flush");
        w.flush().await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }

    #[tokio::test]
    async fn shutdown_drains_the_buffer() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalesce::new(a);
        w.write_all(b"last words").await.unwrap();
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
    }
}
