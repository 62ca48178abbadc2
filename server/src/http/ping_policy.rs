//! grpc-go's keepalive enforcement policy on a client connection
//! (`--grpc-keepalive-min-time`), which hyper's HTTP/2 server lacks.
//!
//! etcd's gRPC server counts a "ping strike" for every client PING that comes
//! sooner than `min-time` after the previous one while the connection has
//! streams open (sooner than two hours while it has none: etcd does not permit
//! pings without streams), forgives all strikes once the server has sent
//! HEADERS or DATA since the previous PING, and on the third strike answers
//! with GOAWAY `ENHANCE_YOUR_CALM` and the debug data `too_many_pings`, then
//! closes the connection (grpc-go's `http2Server.handlePing`). A client such
//! as grpc-go's then backs off its keepalive time.
//!
//! [`PingPolicy`] does the same from the outside of h2: it sits between hyper
//! and the socket, reads the frame headers going each way (never the
//! payloads), and when the limit is passed writes the GOAWAY at the next frame
//! boundary of the server's output, after which it swallows the server's
//! writes and reports end of stream to h2, which closes the connection.
//! A connection that does not open with the HTTP/2 preface (HTTP/1.1 on the
//! same port) passes untouched.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// Frame: | length: u24 BE | type: u8 | flags: u8 | stream: u32 BE | payload: length bytes |
const FRAME_HEADER: usize = 9;
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
/// HTTP/2's ENHANCE_YOUR_CALM error code (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u32 = 0xb;
const TOO_MANY_PINGS: &[u8] = b"too_many_pings";
/// grpc-go's `maxPingStrikes`: the GOAWAY comes with the strike after these.
const MAX_PING_STRIKES: u8 = 2;
/// grpc-go's `defaultPingTimeout`: the least gap between pings on a
/// connection without streams, when pings without streams are not permitted.
const PING_TIMEOUT_WITHOUT_STREAMS: Duration = Duration::from_secs(2 * 60 * 60);
/// grpc-go's default `EnforcementPolicy.MinTime`, used when etcd's
/// `--grpc-keepalive-min-time` is 0 (etcd then sets no policy of its own).
pub const DEFAULT_MIN_TIME: Duration = Duration::from_secs(5 * 60);

/// A frame header seen in one direction.
struct Seen {
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Finds the frame headers in one direction's byte stream.
struct Scanner {
    /// Bytes of the client preface still to match (0 on the server's side).
    preface_left: usize,
    header: [u8; FRAME_HEADER],
    header_len: usize,
    payload_left: usize,
    /// Not HTTP/2: nothing is looked at any more.
    plain: bool,
}

impl Scanner {
    fn new(preface: bool) -> Scanner {
        Scanner {
            preface_left: if preface { PREFACE.len() } else { 0 },
            header: [0; FRAME_HEADER],
            header_len: 0,
            payload_left: 0,
            plain: false,
        }
    }

    /// Whether the stream is between two frames.
    fn at_boundary(&self) -> bool {
        self.preface_left == 0 && self.header_len == 0 && self.payload_left == 0
    }

    fn feed(&mut self, mut bytes: &[u8], seen: &mut impl FnMut(Seen)) {
        while !bytes.is_empty() && !self.plain {
            if self.preface_left > 0 {
                let at = PREFACE.len() - self.preface_left;
                let n = self.preface_left.min(bytes.len());
                if bytes[..n] != PREFACE[at..at + n] {
                    self.plain = true;
                    return;
                }
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (FRAME_HEADER - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER {
                    let h = self.header;
                    self.header_len = 0;
                    self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    seen(Seen { kind: h[3], flags: h[4], stream });
                }
            }
        }
    }
}

/// The policy's bookkeeping, as grpc-go's server transport keeps it.
struct Strikes {
    min_time: Duration,
    /// Streams the client opened that the server has not ended.
    open: HashSet<u32>,
    /// The highest stream the client opened (the GOAWAY's last stream).
    max_stream: u32,
    last_ping: Option<Instant>,
    strikes: u8,
    /// The server sent HEADERS or DATA since the last PING.
    forgive: bool,
    exceeded: bool,
}

impl Strikes {
    fn seen_from_client(&mut self, f: Seen) {
        match f.kind {
            HEADERS if f.stream > self.max_stream => {
                self.max_stream = f.stream;
                self.open.insert(f.stream);
            }
            RST_STREAM => {
                self.open.remove(&f.stream);
            }
            PING if f.flags & ACK == 0 => self.ping(Instant::now()),
            _ => {}
        }
    }

    fn seen_from_server(&mut self, f: Seen) {
        match f.kind {
            DATA | HEADERS => {
                self.forgive = true;
                if f.flags & END_STREAM != 0 {
                    self.open.remove(&f.stream);
                }
            }
            RST_STREAM => {
                self.open.remove(&f.stream);
            }
            _ => {}
        }
    }

    fn ping(&mut self, now: Instant) {
        let last = self.last_ping.replace(now);
        if std::mem::take(&mut self.forgive) {
            self.strikes = 0;
            return;
        }
        let least_gap =
            if self.open.is_empty() { PING_TIMEOUT_WITHOUT_STREAMS } else { self.min_time };
        if last.is_some_and(|last| last.checked_add(least_gap).is_none_or(|t| now < t)) {
            self.strikes = self.strikes.saturating_add(1);
        }
        if self.strikes > MAX_PING_STRIKES {
            self.exceeded = true;
        }
    }

    fn goaway(&self) -> Vec<u8> {
        let len = (8 + TOO_MANY_PINGS.len()) as u32;
        let mut frame = Vec::with_capacity(FRAME_HEADER + len as usize);
        frame.extend_from_slice(&len.to_be_bytes()[1..]);
        frame.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
        frame.extend_from_slice(&self.max_stream.to_be_bytes());
        frame.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        frame.extend_from_slice(TOO_MANY_PINGS);
        frame
    }
}

/// Where the GOAWAY is.
enum Goaway {
    None,
    /// Being written: the frame and how much of it went out.
    Writing(Vec<u8>, usize),
    /// Written and flushed: the connection is over.
    Sent,
}

/// A client connection under grpc-go's ping policy (see the module docs).
pub struct PingPolicy<S> {
    inner: S,
    reads: Scanner,
    writes: Scanner,
    strikes: Strikes,
    goaway: Goaway,
    /// The reader to wake once the GOAWAY is out (its read then ends).
    reader: Option<Waker>,
}

impl<S> PingPolicy<S> {
    /// `min_time`: the least gap between a client's pings while it has
    /// streams; `None` passes everything untouched (no policy).
    pub fn new(inner: S, min_time: Option<Duration>) -> Self {
        let mut reads = Scanner::new(true);
        let mut writes = Scanner::new(false);
        reads.plain = min_time.is_none();
        writes.plain = min_time.is_none();
        PingPolicy {
            inner,
            reads,
            writes,
            strikes: Strikes {
                min_time: min_time.unwrap_or_default(),
                open: HashSet::new(),
                max_stream: 0,
                last_ping: None,
                strikes: 0,
                forgive: false,
                exceeded: false,
            },
            goaway: Goaway::None,
            reader: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> PingPolicy<S> {
    /// Starts and drives the GOAWAY when it is due and the server's output is
    /// between frames; `Ready` once nothing of it is left to write.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if matches!(self.goaway, Goaway::None) && self.strikes.exceeded && self.writes.at_boundary()
        {
            tracing::warn!(
                "a client pinged too often (--grpc-keepalive-min-time); sending GOAWAY too_many_pings"
            );
            self.goaway = Goaway::Writing(self.strikes.goaway(), 0);
        }
        if let Goaway::Writing(frame, done) = &mut self.goaway {
            while *done < frame.len() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &frame[*done..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *done += n;
            }
            ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
            self.goaway = Goaway::Sent;
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
        Poll::Ready(Ok(()))
    }

    fn sent(&self) -> bool {
        matches!(self.goaway, Goaway::Sent)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PingPolicy<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        rb: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.goaway, Goaway::Sent) {
            // The connection is over: h2 sees the end of the stream.
            return Poll::Ready(Ok(()));
        }
        let before = rb.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, rb);
        if !this.reads.plain {
            let strikes = &mut this.strikes;
            this.reads.feed(&rb.filled()[before..], &mut |f| strikes.seen_from_client(f));
            if this.reads.plain {
                this.writes.plain = true;
            }
        }
        this.reader = Some(cx.waker().clone());
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PingPolicy<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_goaway(cx))?;
        if this.sent() {
            // After the GOAWAY nothing more goes out.
            return Poll::Ready(Ok(data.len()));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        if !this.writes.plain {
            let strikes = &mut this.strikes;
            this.writes.feed(&data[..n], &mut |f| strikes.seen_from_server(f));
            // The frame that went out may have been the PING's ACK: the GOAWAY
            // follows it now if it is due (a Pending write is finished later).
            if let Poll::Ready(Err(e)) = this.poll_goaway(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_goaway(cx))?;
        if this.sent() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if !this.writes.plain {
            let strikes = &mut this.strikes;
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(b.len());
                this.writes.feed(&b[..take], &mut |f| strikes.seen_from_server(f));
                left -= take;
            }
            if let Poll::Ready(Err(e)) = this.poll_goaway(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_goaway(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_goaway(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32) -> Vec<u8> {
        let mut f = vec![0, 0, 0, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f
    }

    fn strikes(min_time: Duration) -> Strikes {
        Strikes {
            min_time,
            open: HashSet::new(),
            max_stream: 0,
            last_ping: None,
            strikes: 0,
            forgive: false,
            exceeded: false,
        }
    }

    #[test]
    fn the_fourth_quick_ping_without_streams_is_too_many() {
        let mut s = strikes(Duration::from_secs(5));
        let t = Instant::now();
        for i in 0..3 {
            s.ping(t + Duration::from_millis(i));
            assert!(!s.exceeded, "ping {i}");
        }
        s.ping(t + Duration::from_millis(3));
        assert!(s.exceeded);
        let g = s.goaway();
        assert_eq!(&g[3..5], &[GOAWAY, 0]);
        assert_eq!(&g[13..17], &ENHANCE_YOUR_CALM.to_be_bytes());
        assert_eq!(&g[17..], TOO_MANY_PINGS);
    }

    #[test]
    fn pings_min_time_apart_with_a_stream_open_are_fine_and_replies_forgive() {
        let mut s = strikes(Duration::from_secs(5));
        let t = Instant::now();
        let mut scan = Scanner::new(true);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0x4, 1));
        scan.feed(&input, &mut |f| s.seen_from_client(f));
        assert_eq!(s.open.len(), 1);
        for i in 0..10 {
            s.ping(t + Duration::from_secs(5 * i));
        }
        assert!(!s.exceeded);
        // Quick pings, each after a reply from the server: forgiven.
        for i in 0..10 {
            s.seen_from_server(Seen { kind: DATA, flags: 0, stream: 1 });
            s.ping(t + Duration::from_secs(60) + Duration::from_millis(i));
        }
        assert!(!s.exceeded);
        // The server ends the stream: pings without streams need two hours.
        s.seen_from_server(Seen { kind: HEADERS, flags: END_STREAM | 0x4, stream: 1 });
        assert!(s.open.is_empty());
    }

    #[test]
    fn frames_split_across_reads_are_found_and_http1_is_left_alone() {
        let mut kinds = Vec::new();
        let mut scan = Scanner::new(true);
        let mut input = PREFACE.to_vec();
        input.extend(frame(PING, 0, 0)[..3].to_vec());
        let mut ping = frame(PING, 0, 0);
        ping[2] = 8;
        input.truncate(PREFACE.len());
        input.extend(&ping);
        input.extend([0u8; 8]);
        input.extend(frame(RST_STREAM, 0, 3));
        for b in &input {
            scan.feed(std::slice::from_ref(b), &mut |f| kinds.push(f.kind));
        }
        assert_eq!(kinds, vec![PING, RST_STREAM]);
        let mut http1 = Scanner::new(true);
        http1.feed(b"GET /health HTTP/1.1\r\n", &mut |_| panic!("no frames in HTTP/1.1"));
        assert!(http1.plain);
    }
}
