//! The Raft lane: how Raft messages travel between members, on the peer port
//! but outside gRPC.
//!
//! Every Raft message of a quorum write crosses this path twice (the append
//! out, the acknowledgement back), so its latency is the cluster's. Carried
//! on a gRPC stream, each message hopped through three tokio tasks on the
//! way out (the sender task, hyper's body pipe, the HTTP/2 connection) and
//! two on the way in, about 0.3 ms per write on a two-core machine. Here:
//!
//! - **Out:** the Raft thread encodes its messages for a peer straight into
//!   that peer's buffer and writes them to the peer's non-blocking socket
//!   itself: no thread hand-off at all while the socket takes the bytes.
//!   What the socket does not take stays buffered (up to [`MAX_BACKLOG`];
//!   beyond it messages are dropped for Raft to retransmit) and the peer's
//!   link thread, waiting for the socket to drain, writes it on. The link
//!   thread also dials (with backoff), checks the peer with a hello, sends
//!   a keep-alive after [`KEEPALIVE`] of silence and drops a connection the
//!   peer stopped reading for `--raft-write-timeout` or closed.
//! - **In:** an accepted lane connection answers its hello on a short-lived
//!   thread and then belongs to the Raft thread, which sleeps in one
//!   `ppoll` on its inbox's doorbell and every lane's socket
//!   (the Raft thread's inbox) and reads a ready socket itself: a peer's message
//!   wakes the Raft thread directly. A lane that brings nothing, not even a
//!   keep-alive, for `--raft-read-timeout` is closed (the dialer redials).
//!
//! Each connection carries one direction (a member dials every peer and
//! only writes to it); snapshots, the hello of a joining member and lease
//! questions stay on the gRPC `Peer` service.
//!
//! ## Wire format
//! The dialer opens a TCP connection (TLS for `https://` peer URLs, with the
//! peer certificates, as for gRPC) and sends [`MAGIC`] and then a
//! length-delimited `HelloRequest`. The listener, which tells a lane from
//! an HTTP/2 connection by the first bytes (see
//! [`crate::tls::incoming`]), answers one status byte ([`HELLO_OK`] and a
//! length-delimited `HelloResponse`, or [`HELLO_REMOVED`] / [`HELLO_REFUSED`]
//! and a length-delimited reason) and then only reads: frames of a varint
//! length and an encoded `eraftpb.Message`, a zero length being a
//! keep-alive.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook_api::logbookpb::{HelloRequest, HelloResponse};
use parking_lot::Mutex;
use prometheus::IntCounter;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::Message;

use super::Sink;
use crate::metrics::METRICS;
use crate::peer::service::PeerService;
use crate::peer::transport::{LocalIdentity, MAX_PEER_MESSAGE};
use crate::state::membership::REMOVED_MESSAGE;
use crate::tls::{Divert, MaybeTls};

/// The first bytes a lane connection sends. Its first byte starts neither
/// the HTTP/2 preface nor any HTTP/1 method.
pub const MAGIC: &[u8; 8] = b"LBRAFT01";
/// Hello answer: accepted, a `HelloResponse` follows.
const HELLO_OK: u8 = 0;
/// Hello answer: the dialer was removed from the cluster and must stop.
const HELLO_REMOVED: u8 = 1;
/// Hello answer: refused for another reason, which follows.
const HELLO_REFUSED: u8 = 2;
/// A link silent this long sends a keep-alive frame.
pub const KEEPALIVE: Duration = Duration::from_secs(1);
/// etcd's `--raft-read-timeout` and `--raft-write-timeout` (rafthttp's
/// `ConnReadTimeout`/`ConnWriteTimeout`, 5 s and never less): a receiver that
/// hears nothing (not even a keep-alive) for the read timeout, and a sender
/// whose peer takes none of its backlog for the write timeout, close the
/// connection: the other end is gone without a word (a crashed or stopped
/// machine, a partition). etcd sets them as deadlines on each read and write
/// of a peer connection, which ends it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub read: Duration,
    pub write: Duration,
}

impl Default for Timeouts {
    /// etcd's defaults (`DefaultConnReadTimeout`, `DefaultConnWriteTimeout`).
    fn default() -> Timeouts {
        Timeouts { read: Duration::from_secs(5), write: Duration::from_secs(5) }
    }
}
/// Encoded messages waiting for one peer beyond this are dropped.
pub const MAX_BACKLOG: usize = 64 << 20;
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds the hello exchange (each read and write of it) on both ends.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest hello message either end accepts.
const MAX_HELLO: usize = 1 << 20;

/// An established outgoing connection, in non-blocking mode.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::ClientConnection>, TcpStream),
}

impl Conn {
    fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) | Conn::Tls(_, s) => s,
        }
    }

    /// Hands as much of `buf` to the connection as it takes without
    /// blocking; returns how much it took. For TLS, also writes out
    /// encrypted records left from before.
    fn push(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => {
                let mut n = 0;
                while n < buf.len() {
                    match (&*s).write(&buf[n..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(n)
            }
            Conn::Tls(c, s) => {
                let mut n = 0;
                loop {
                    while c.wants_write() {
                        match c.write_tls(&mut &*s) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(n),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    if n == buf.len() {
                        return Ok(n);
                    }
                    // rustls takes plaintext up to its buffer limit.
                    let k = c.writer().write(&buf[n..])?;
                    if k == 0 && !c.wants_write() {
                        return Ok(n);
                    }
                    n += k;
                }
            }
        }
    }

    /// Encrypted bytes rustls still holds for the socket.
    fn holds_output(&self) -> bool {
        matches!(self, Conn::Tls(c, _) if c.wants_write())
    }

    /// Reads what the peer sent, which after the hello is nothing but TLS
    /// housekeeping (session tickets, key updates): an end of stream, an
    /// error or any data means the connection is over.
    fn check_incoming(&mut self) -> io::Result<()> {
        let mut scratch = [0u8; 512];
        match self {
            Conn::Plain(s) => match (&*s).read(&mut scratch) {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => Err(io::Error::other("peer sent data on a one-way raft lane")),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Conn::Tls(c, s) => loop {
                match c.read_tls(&mut &*s) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => {
                        let state = c.process_new_packets().map_err(io::Error::other)?;
                        if state.peer_has_closed() {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        if state.plaintext_bytes_to_read() > 0 {
                            return Err(io::Error::other("peer sent data on a one-way raft lane"));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

/// What the Raft thread and a link thread share about one peer.
struct LinkState {
    conn: Option<Conn>,
    /// Encoded frames; those before `sent` are handed to the connection.
    out: Vec<u8>,
    sent: usize,
    closed: bool,
    /// When the connection last took bytes, or was made.
    last_write: Instant,
    /// Since when a backlog has been waiting without the socket taking any.
    stalled_since: Option<Instant>,
    /// `etcd_network_peer_sent_bytes_total` and `..._sent_failures_total` for this peer.
    sent_bytes: IntCounter,
    failures: IntCounter,
}

impl LinkState {
    fn backlog(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Writes what the socket takes now. On an error the connection is
    /// dropped (the link thread dials again) and false returned.
    fn flush(&mut self, peer: u64) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        match conn.push(&self.out[self.sent..]) {
            Ok(n) => {
                self.sent += n;
                self.sent_bytes.inc_by(n as u64);
                let now = Instant::now();
                if n > 0 {
                    self.last_write = now;
                }
                if self.sent == self.out.len() {
                    self.out.clear();
                    self.sent = 0;
                    if self.out.capacity() > 4 << 20 {
                        self.out.shrink_to(64 << 10);
                    }
                }
                if self.out.is_empty() && !conn.holds_output() {
                    self.stalled_since = None;
                } else if n > 0 || self.stalled_since.is_none() {
                    self.stalled_since = Some(now);
                }
                true
            }
            Err(e) => {
                tracing::warn!(peer = format!("{peer:x}"), error = %e, "lost connection to peer");
                // What was still waiting is lost with the connection.
                if self.backlog() > 0 {
                    self.failures.inc();
                }
                self.disconnect();
                false
            }
        }
    }

    fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.socket().shutdown(Shutdown::Both);
        }
        self.out.clear();
        self.sent = 0;
        self.stalled_since = None;
    }
}

/// The outgoing half of the lane to one peer.
pub struct Link {
    peer: u64,
    state: Mutex<LinkState>,
    /// Wakes the link thread out of its `poll`.
    wake: UnixStream,
    raft: Sink,
}

impl Link {
    /// Starts the link thread for `peer`, dialing `urls`.
    pub fn start(
        me: LocalIdentity,
        peer: u64,
        urls: Vec<String>,
        raft: Sink,
    ) -> io::Result<Arc<Link>> {
        let (wake, woken) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        let link = Arc::new(Link {
            peer,
            state: Mutex::new(LinkState {
                conn: None,
                out: Vec::new(),
                sent: 0,
                closed: false,
                last_write: Instant::now(),
                stalled_since: None,
                sent_bytes: METRICS.peer_sent_bytes.with_label_values(&[&format!("{peer:x}")]),
                failures: METRICS.peer_sent_failures.with_label_values(&[&format!("{peer:x}")]),
            }),
            wake,
            raft,
        });
        let runner = link.clone();
        std::thread::Builder::new()
            .name(format!("raft-link-{peer:x}"))
            .spawn(move || runner.run(me, urls, woken))?;
        Ok(link)
    }

    /// Sends `messages` (all for this peer) without blocking: written to the
    /// socket now as far as it takes them, the rest left to the link thread.
    /// Dropped while the peer is not connected or its backlog is full.
    pub fn send<'a>(&self, messages: impl Iterator<Item = &'a Message>) {
        let mut st = self.state.lock();
        if st.closed || st.conn.is_none() {
            st.failures.inc_by(messages.count() as u64);
            return;
        }
        if st.backlog() > MAX_BACKLOG {
            tracing::debug!(
                peer = format!("{:x}", self.peer),
                "peer backlog full; messages dropped for raft to retransmit"
            );
            st.failures.inc_by(messages.count() as u64);
            return;
        }
        let waiting = st.backlog() > 0 || st.conn.as_ref().is_some_and(Conn::holds_output);
        for m in messages {
            m.write_length_delimited_to_vec(&mut st.out).expect("raft messages always encode");
        }
        if waiting {
            // The link thread is already waiting for the socket to drain.
            return;
        }
        if !st.flush(self.peer) {
            drop(st);
            self.raft.unreachable(self.peer);
            self.nudge();
        } else if st.stalled_since.is_some() {
            drop(st);
            self.nudge();
        }
    }

    /// Stops the link: its thread closes the connection and ends.
    pub fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.disconnect();
        drop(st);
        self.nudge();
    }

    fn nudge(&self) {
        let _ = (&self.wake).write(&[1]);
    }

    fn run(self: Arc<Link>, me: LocalIdentity, urls: Vec<String>, woken: UnixStream) {
        let peer = format!("{:x}", self.peer);
        let mut backoff = Duration::from_millis(50);
        let mut was_up = false;
        loop {
            let fd = {
                let st = self.state.lock();
                if st.closed {
                    return;
                }
                st.conn.as_ref().map(|c| (c.socket().as_raw_fd(), st.stalled_since.is_some()))
            };
            let Some((fd, want_out)) = fd else {
                if was_up {
                    tracing::warn!(peer, "lost connection to peer");
                    was_up = false;
                }
                match dial(&me, self.peer, &urls) {
                    Ok(conn) => {
                        let mut st = self.state.lock();
                        if st.closed {
                            return;
                        }
                        st.conn = Some(conn);
                        st.last_write = Instant::now();
                        tracing::info!(peer, "connected to peer");
                        was_up = true;
                        backoff = Duration::from_millis(50);
                    }
                    Err(DialError::Removed) => {
                        tracing::error!(peer, "{REMOVED_MESSAGE}; stopping");
                        self.raft.stop();
                        return;
                    }
                    Err(DialError::Failed) => {
                        self.raft.unreachable(self.peer);
                        wait_readable(&[woken.as_raw_fd()], backoff);
                        drain(&woken);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
                continue;
            };
            let ready = poll(fd, want_out, woken.as_raw_fd(), KEEPALIVE);
            drain(&woken);
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            // The socket may have been replaced or dropped meanwhile (by a
            // failed write on the Raft thread): look again.
            if st.conn.as_ref().is_none_or(|c| c.socket().as_raw_fd() != fd) {
                continue;
            }
            if ready.incoming {
                let result = st.conn.as_mut().expect("checked above").check_incoming();
                if let Err(e) = result {
                    tracing::debug!(peer, error = %e, "peer closed the raft lane");
                    st.disconnect();
                    continue;
                }
            }
            let now = Instant::now();
            if st.backlog() == 0 && now.duration_since(st.last_write) >= KEEPALIVE {
                st.out.push(0);
            }
            if !st.flush(self.peer) {
                drop(st);
                self.raft.unreachable(self.peer);
                continue;
            }
            let limit = me.timeouts.write;
            if st.stalled_since.is_some_and(|t| now.duration_since(t) >= limit) {
                tracing::warn!(
                    peer,
                    backlog = st.backlog(),
                    raft_write_timeout = ?limit,
                    "peer took nothing for the raft write timeout; reconnecting"
                );
                st.disconnect();
            }
        }
    }
}

/// What `poll` saw.
struct Ready {
    incoming: bool,
}

/// Waits until the socket has something to read (or closed), can take more
/// output (when `want_out`), the link is nudged, or `timeout` passes.
fn poll(fd: i32, want_out: bool, wake: i32, timeout: Duration) -> Ready {
    let mut events = libc::POLLIN;
    if want_out {
        events |= libc::POLLOUT;
    }
    let mut fds = [
        libc::pollfd { fd, events, revents: 0 },
        libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as i32) };
    Ready {
        incoming: n > 0 && fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
    }
}

fn wait_readable(fds: &[i32], timeout: Duration) {
    let mut p: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `p` is a valid array of pollfd for the duration of the call.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout.as_millis() as i32) };
}

fn drain(woken: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!((&*woken).read(&mut buf), Ok(n) if n > 0) {}
}

enum DialError {
    Failed,
    Removed,
}

/// Dials the peer at one of `urls` and checks it is who we expect. Blocking,
/// bounded by [`DIAL_TIMEOUT`] and [`HELLO_TIMEOUT`] per address.
fn dial(me: &LocalIdentity, peer: u64, urls: &[String]) -> Result<Conn, DialError> {
    #[cfg(feature = "failpoints")]
    let routed = crate::peer::transport::failpoint_routes(urls);
    #[cfg(feature = "failpoints")]
    let urls = &routed[..];
    for url in urls {
        match dial_one(me, peer, url) {
            Ok(conn) => return Ok(conn),
            Err(DialOne::Removed) => return Err(DialError::Removed),
            Err(DialOne::Refused) => return Err(DialError::Failed),
            Err(DialOne::Io(e)) => {
                tracing::debug!(peer = format!("{peer:x}"), url, error = %e, "dialing peer failed");
            }
        }
    }
    Err(DialError::Failed)
}

enum DialOne {
    Io(String),
    Removed,
    /// The peer is not the member expected (logged).
    Refused,
}

impl From<io::Error> for DialOne {
    fn from(e: io::Error) -> Self {
        DialOne::Io(e.to_string())
    }
}

fn dial_one(me: &LocalIdentity, peer: u64, url: &str) -> Result<Conn, DialOne> {
    let parsed = url::Url::parse(url).map_err(|e| DialOne::Io(e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| DialOne::Io("no host".into()))?.to_string();
    let port = parsed.port_or_known_default().ok_or_else(|| DialOne::Io("no port".into()))?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| DialOne::Io(format!("{host} resolves to no address")))?;
    let tcp = me.dialer.connect_tcp(addr, DIAL_TIMEOUT)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(HELLO_TIMEOUT))?;
    tcp.set_write_timeout(Some(HELLO_TIMEOUT))?;
    let mut hello = MAGIC.to_vec();
    HelloRequest { cluster_id: me.cluster_id, member_id: me.member_id }
        .encode_length_delimited(&mut hello)
        .expect("a Vec grows");
    let (answer, conn) = if parsed.scheme() == "https" {
        let config = me.dialer.lane_tls(url).map_err(DialOne::Io)?;
        let name = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let name = rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| DialOne::Io(e.to_string()))?;
        let client =
            rustls::ClientConnection::new(config, name).map_err(|e| DialOne::Io(e.to_string()))?;
        let mut stream = rustls::StreamOwned::new(client, tcp);
        stream.write_all(&hello)?;
        stream.flush()?;
        let answer = read_hello_answer(&mut stream)?;
        let (client, tcp) = stream.into_parts();
        (answer, Conn::Tls(Box::new(client), tcp))
    } else {
        (&tcp).write_all(&hello)?;
        let mut reader = &tcp;
        let answer = read_hello_answer(&mut reader)?;
        (answer, Conn::Plain(tcp))
    };
    match answer {
        HelloAnswer::Ok(resp) => {
            if !me.accepts(peer, url, &resp) {
                return Err(DialOne::Refused);
            }
        }
        HelloAnswer::Removed => return Err(DialOne::Removed),
        HelloAnswer::Refused(why) => return Err(DialOne::Io(format!("peer refused: {why}"))),
    }
    let socket = conn.socket();
    socket.set_read_timeout(None)?;
    socket.set_write_timeout(None)?;
    socket.set_nonblocking(true)?;
    Ok(conn)
}

enum HelloAnswer {
    Ok(HelloResponse),
    Removed,
    Refused(String),
}

fn read_hello_answer(r: &mut impl Read) -> io::Result<HelloAnswer> {
    let mut status = [0u8; 1];
    r.read_exact(&mut status)?;
    let len = read_varint(r)? as usize;
    if len > MAX_HELLO {
        return Err(io::Error::other(format!("hello answer of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(match status[0] {
        HELLO_OK => HelloAnswer::Ok(HelloResponse::decode(&body[..]).map_err(io::Error::other)?),
        HELLO_REMOVED => HelloAnswer::Removed,
        _ => HelloAnswer::Refused(String::from_utf8_lossy(&body).into_owned()),
    })
}

/// Reads a protobuf varint a byte at a time. `None`-free: a clean end of
/// stream before its first byte is `UnexpectedEof` like any other.
fn read_varint(r: &mut impl Read) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        value |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "varint longer than 10 bytes"))
}

/// An accepted lane connection: its [`MAGIC`] already read, handed over from
/// the async listener as a blocking socket; non-blocking once its hello is
/// answered and the Raft thread reads it.
pub enum Accepted {
    Plain(TcpStream),
    Tls(Box<rustls::ServerConnection>, TcpStream),
}

impl Accepted {
    fn socket(&self) -> &TcpStream {
        match self {
            Accepted::Plain(s) | Accepted::Tls(_, s) => s,
        }
    }
}

/// Takes an accepted lane connection: a short-lived thread answers its hello
/// (blocking, bounded by [`HELLO_TIMEOUT`]) and hands it to the Raft thread
/// as an [`Incoming`].
pub fn accept(conn: Accepted, service: Arc<PeerService>) {
    let spawned = std::thread::Builder::new().name("raft-lane-hello".into()).spawn(move || {
        let remote = conn.socket().peer_addr().ok();
        match handshake(conn, &service) {
            Ok(Some(incoming)) => {
                service.raft.lane(incoming);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(remote = ?remote, error = %e, "raft lane hello failed"),
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "raft lane connection dropped: no thread for its hello");
    }
}

/// Answers the hello; an accepted connection comes back non-blocking.
fn handshake(conn: Accepted, service: &PeerService) -> io::Result<Option<Incoming>> {
    let socket = conn.socket();
    socket.set_read_timeout(Some(HELLO_TIMEOUT))?;
    socket.set_write_timeout(Some(HELLO_TIMEOUT))?;
    let (from, ok, conn) = match conn {
        Accepted::Plain(s) => {
            let (from, ok) = answer_hello(&mut &s, service)?;
            (from, ok, Accepted::Plain(s))
        }
        Accepted::Tls(c, s) => {
            let mut stream = rustls::StreamOwned::new(*c, s);
            let (from, ok) = answer_hello(&mut stream, service)?;
            (from, ok, Accepted::Tls(Box::new(stream.conn), stream.sock))
        }
    };
    if !ok {
        return Ok(None);
    }
    let socket = conn.socket();
    socket.set_read_timeout(None)?;
    socket.set_write_timeout(None)?;
    socket.set_nonblocking(true)?;
    Ok(Some(Incoming::new(from, conn, service.read_timeout)))
}

/// Reads the dialer's hello and answers it; returns who it is and whether
/// it was accepted.
fn answer_hello(
    stream: &mut (impl Read + Write),
    service: &PeerService,
) -> io::Result<(u64, bool)> {
    let len = read_varint(stream)? as usize;
    if len > MAX_HELLO {
        return Err(io::Error::other(format!("hello of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    let req = HelloRequest::decode(&body[..]).map_err(io::Error::other)?;
    let mut answer = Vec::new();
    match service.answer_hello(&req) {
        Ok(resp) => {
            answer.push(HELLO_OK);
            resp.encode_length_delimited(&mut answer).expect("a Vec grows");
        }
        Err(status) => {
            answer.push(if status.message() == REMOVED_MESSAGE {
                HELLO_REMOVED
            } else {
                HELLO_REFUSED
            });
            status.message().to_string().encode_length_delimited(&mut answer).expect("a Vec grows");
        }
    }
    stream.write_all(&answer)?;
    stream.flush()?;
    Ok((req.member_id, answer[0] == HELLO_OK))
}

/// Most bytes one [`Incoming::read`] takes, so one busy peer cannot hold
/// the Raft thread; the rest is read on its next turn.
const READ_BUDGET: usize = 4 << 20;
/// An incoming lane's buffer size; it grows for a larger message and
/// shrinks back once that is parsed.
const READ_BUFFER: usize = 256 << 10;

/// The receiving end of one peer's lane, read by the Raft thread whenever
/// its socket is ready.
pub struct Incoming {
    from: u64,
    conn: Accepted,
    /// Bytes read and not yet parsed are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    last_heard: Instant,
    /// When the lane opened (etcd's transport `ActiveSince`).
    opened: Instant,
    /// `--raft-read-timeout`: silence this long closes the lane.
    read_timeout: Duration,
    /// `etcd_network_peer_received_bytes_total` for this peer.
    received_bytes: IntCounter,
}

impl Incoming {
    fn new(from: u64, conn: Accepted, read_timeout: Duration) -> Incoming {
        Incoming {
            read_timeout,
            from,
            conn,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            last_heard: Instant::now(),
            opened: Instant::now(),
            received_bytes: METRICS.peer_received_bytes.with_label_values(&[&format!("{from:x}")]),
        }
    }

    /// The socket, to wait on.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.conn.socket().as_raw_fd()
    }

    /// The member at the other end (from its hello).
    pub fn from(&self) -> u64 {
        self.from
    }

    /// Since when the peer has been connected through this lane.
    pub fn active_since(&self) -> Instant {
        self.opened
    }

    /// The read timeout this lane is closed after (`--raft-read-timeout`).
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// True when nothing, not even a keep-alive, came for the read timeout
    /// and nothing waits on the socket either (a Raft thread that was busy
    /// for that long has not read what did come).
    pub fn stalled(&self, now: Instant) -> bool {
        if now.duration_since(self.last_heard) < self.read_timeout {
            return false;
        }
        let mut fds = [libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        n <= 0
    }

    /// Reads what arrived without blocking and appends the whole messages
    /// to `out`; returns whether anything arrived. An error (the peer closed
    /// the connection, a frame too large or undecodable) ends the lane.
    pub fn read(&mut self, out: &mut Vec<Message>) -> io::Result<bool> {
        let mut got = 0;
        while got < READ_BUDGET {
            self.make_room();
            let spare = &mut self.buf[self.end..];
            let n = match &mut self.conn {
                Accepted::Plain(s) => (&*s).read(spare),
                Accepted::Tls(c, s) => read_tls(c, s, spare),
            };
            match n {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    got += n;
                    self.end += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.parse(out)?;
        }
        if got > 0 {
            self.last_heard = Instant::now();
            self.received_bytes.inc_by(got as u64);
        }
        Ok(got > 0)
    }

    /// Makes sure the buffer has free space after `end`: moves the unparsed
    /// bytes to the front, or grows it for a message larger than it.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > READ_BUFFER {
                self.buf.truncate(READ_BUFFER);
                self.buf.shrink_to_fit();
            }
        }
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        } else {
            self.buf.resize(self.buf.len() * 2, 0);
        }
    }

    /// Takes every whole frame out of the buffer.
    fn parse(&mut self, out: &mut Vec<Message>) -> io::Result<()> {
        loop {
            let rest = &self.buf[self.start..self.end];
            let Some((len, head)) = parse_varint(rest)? else { break };
            let len = len as usize;
            if len > MAX_PEER_MESSAGE {
                return Err(io::Error::other(format!("raft message of {len} bytes")));
            }
            if rest.len() - head < len {
                break;
            }
            if len > 0 {
                let msg = Message::parse_from_bytes(&rest[head..head + len])
                    .map_err(|e| io::Error::other(format!("undecodable raft message: {e}")))?;
                out.push(msg);
            }
            self.start += head + len;
        }
        Ok(())
    }
}

/// One read of TLS records from the socket, then the plaintext they hold
/// into `spare` (rustls keeps what does not fit for the next call, which
/// reads no socket until it is taken). `Ok(0)`: the peer closed.
fn read_tls(
    c: &mut rustls::ServerConnection,
    s: &TcpStream,
    spare: &mut [u8],
) -> io::Result<usize> {
    match c.reader().read(spare) {
        Ok(n) if n > 0 => return Ok(n),
        Ok(_) => return Ok(0),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    if c.read_tls(&mut &*s)? == 0 {
        return Ok(0);
    }
    let state = c.process_new_packets().map_err(io::Error::other)?;
    // Answers the handshake layer may owe (a key update); best effort.
    while c.wants_write() {
        if c.write_tls(&mut &*s).is_err() {
            break;
        }
    }
    if state.plaintext_bytes_to_read() == 0 {
        if state.peer_has_closed() {
            return Ok(0);
        }
        // Records without data (a session ticket, a key update): nothing
        // to parse, and more may be on the socket.
        return Err(io::ErrorKind::Interrupted.into());
    }
    c.reader().read(spare)
}

/// A protobuf varint at the start of `buf`: its value and length, `None`
/// when incomplete.
fn parse_varint(buf: &[u8]) -> io::Result<Option<(u64, usize)>> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 10 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "varint longer than 10 bytes"));
    }
    Ok(None)
}

/// The peer listener's [`Divert`]: a connection that opens with the lane's
/// magic becomes a Raft lane served by `service`; any other goes on to the
/// peer gRPC server.
pub fn divert(service: Arc<PeerService>) -> Divert {
    Arc::new(move |conn| {
        let service = service.clone();
        Box::pin(async move {
            match sniff(conn).await? {
                Sniffed::Lane(c) => {
                    accept(c, service);
                    Ok(None)
                }
                Sniffed::Other(c) => Ok(Some(c)),
            }
        })
    })
}

enum Sniffed {
    Lane(Accepted),
    Other(MaybeTls),
}

/// Tells a Raft lane connection from any other by its first bytes. A lane
/// leaves as a blocking socket with the magic read; anything else stays
/// as it was, its first bytes kept for its reader.
async fn sniff(conn: MaybeTls) -> io::Result<Sniffed> {
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; MAGIC.len()];
    let bad_magic = || io::Error::new(io::ErrorKind::InvalidData, "not a raft lane or HTTP/2");
    match conn {
        MaybeTls::Plain(stream) => {
            let n = stream.peek(&mut first).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if first[0] != MAGIC[0] {
                return Ok(Sniffed::Other(MaybeTls::Plain(stream)));
            }
            let mut stream = stream;
            stream.read_exact(&mut first).await?;
            if &first != MAGIC {
                return Err(bad_magic());
            }
            let std = stream.into_std()?;
            std.set_nonblocking(false)?;
            Ok(Sniffed::Lane(Accepted::Plain(std)))
        }
        MaybeTls::Tls(mut tls) => {
            let n = tls.stream.read(&mut first).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if first[0] != MAGIC[0] {
                tls.prefix = first[..n].to_vec();
                return Ok(Sniffed::Other(MaybeTls::Tls(tls)));
            }
            tls.stream.read_exact(&mut first[n..]).await?;
            if &first != MAGIC {
                return Err(bad_magic());
            }
            let (tcp, conn) = tls.stream.into_inner();
            let std = tcp.into_std()?;
            std.set_nonblocking(false)?;
            Ok(Sniffed::Lane(Accepted::Tls(Box::new(conn), std)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(v, &mut buf);
            assert_eq!(read_varint(&mut &buf[..]).unwrap(), v);
            assert_eq!(parse_varint(&buf).unwrap(), Some((v, buf.len())));
            assert_eq!(parse_varint(&buf[..buf.len() - 1]).unwrap(), None);
        }
        let too_long = [0xffu8; 11];
        assert!(read_varint(&mut &too_long[..]).is_err());
        assert!(parse_varint(&too_long).is_err());
        assert!(read_varint(&mut &[0x80u8][..]).is_err());
    }

    #[test]
    fn magic_is_neither_http2_nor_http1() {
        assert_ne!(MAGIC[0], b'P');
        for method in
            ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
        {
            assert_ne!(MAGIC[0], method.as_bytes()[0]);
        }
    }

    use std::net::TcpListener;

    use raft::prelude::{Entry, MessageType};

    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::peer::RaftSink;
    use crate::tls::PeerDialer;

    /// Bounds every wait of these tests.
    const LIMIT: Duration = Duration::from_secs(30);

    fn message(i: u64, payload: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = 2;
        m.from = 1;
        m.index = i;
        let data: Vec<u8> = (0..payload).map(|b| (b as u64 ^ i) as u8).collect();
        m.set_entries(vec![Entry { index: i + 1, data: data.into(), ..Default::default() }].into());
        m
    }

    fn frames(messages: &[Message], keepalive_every: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if keepalive_every > 0 && i % keepalive_every == 0 {
                out.push(0);
            }
            m.write_length_delimited_to_vec(&mut out).unwrap();
        }
        out
    }

    /// A connected pair: the writing end (blocking) and the reading end as
    /// an [`Incoming`] (non-blocking, as the Raft thread holds it).
    fn pair() -> (TcpStream, Incoming) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (reader, _) = listener.accept().unwrap();
        reader.set_nonblocking(true).unwrap();
        (writer, Incoming::new(7, Accepted::Plain(reader), Timeouts::default().read))
    }

    /// Reads `incoming` until `want` messages came or it fails; bounded.
    fn read_all(incoming: &mut Incoming, want: usize) -> io::Result<Vec<Message>> {
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < want {
            assert!(start.elapsed() < LIMIT, "only {} of {want} messages arrived", got.len());
            if !incoming.read(&mut got)? {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(got)
    }

    #[test]
    fn frames_split_anywhere_arrive_whole_and_in_order() {
        let (mut writer, mut incoming) = pair();
        // Sizes around the buffer's: a message larger than it makes it grow.
        let sizes = [0usize, 1, 100, 5000, READ_BUFFER - 3, 3 * READ_BUFFER, 17, 64 << 10];
        let sent: Vec<Message> =
            (0..200).map(|i| message(i, sizes[i as usize % sizes.len()])).collect();
        let bytes = frames(&sent, 3);
        let writing = std::thread::spawn(move || {
            // Odd chunk sizes, with pauses, so frames and varints are cut.
            let mut at = 0;
            let mut chunk = 1;
            while at < bytes.len() {
                let end = (at + chunk).min(bytes.len());
                writer.write_all(&bytes[at..end]).unwrap();
                at = end;
                chunk = chunk * 7 % 100_003 + 1;
                if at % 5 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            writer
        });
        let got = read_all(&mut incoming, sent.len()).unwrap();
        assert_eq!(got, sent);
        let writer = writing.join().unwrap();
        assert!(incoming.buf.len() <= 4 * READ_BUFFER);
        drop(writer);
        // The writer is gone: the lane ends.
        let start = Instant::now();
        let err = loop {
            assert!(start.elapsed() < LIMIT);
            match incoming.read(&mut Vec::new()) {
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_frame_over_the_limit_or_undecodable_ends_the_lane() {
        let (mut writer, mut incoming) = pair();
        let mut huge = Vec::new();
        prost::encoding::encode_varint(MAX_PEER_MESSAGE as u64 + 1, &mut huge);
        writer.write_all(&huge).unwrap();
        let err = read_all(&mut incoming, 1).unwrap_err();
        assert!(err.to_string().contains("raft message of"), "{err}");

        let (mut writer, mut incoming) = pair();
        let good = message(1, 10);
        let mut bytes = frames(std::slice::from_ref(&good), 0);
        // A frame of four bytes that are no protobuf message (field 0).
        bytes.extend_from_slice(&[4, 0, 0, 0, 0]);
        writer.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        let start = Instant::now();
        let err = loop {
            assert!(start.elapsed() < LIMIT);
            match incoming.read(&mut got) {
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("undecodable"), "{err}");
        // The whole message before the bad frame was still delivered.
        assert_eq!(got, vec![good]);
    }

    /// A stand-in peer: accepts lane connections on `listener`, checks each
    /// hello and answers with `status` (and member 2 of cluster 9 when
    /// accepting), then reads messages off it for the test.
    fn fake_peer_accept(listener: &TcpListener, status: u8) -> Incoming {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut magic = [0u8; 8];
        s.read_exact(&mut magic).unwrap();
        assert_eq!(&magic, MAGIC);
        let len = read_varint(&mut s).unwrap() as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        let hello = HelloRequest::decode(&body[..]).unwrap();
        assert_eq!((hello.cluster_id, hello.member_id), (9, 1));
        let mut answer = vec![status];
        if status == HELLO_OK {
            HelloResponse { cluster_id: 9, member_id: 2, ..Default::default() }
                .encode_length_delimited(&mut answer)
                .unwrap();
        } else {
            REMOVED_MESSAGE.to_string().encode_length_delimited(&mut answer).unwrap();
        }
        s.write_all(&answer).unwrap();
        s.set_nonblocking(true).unwrap();
        Incoming::new(1, Accepted::Plain(s), Timeouts::default().read)
    }

    /// Raft as the link sees it: only whether it was told to stop matters here.
    #[derive(Default)]
    struct TestSink {
        stopped: AtomicBool,
    }

    impl RaftSink for TestSink {
        fn step(&self, _: Message) -> bool {
            true
        }
        fn unreachable(&self, _: u64) {}
        fn snapshot_status(&self, _: u64, _: bool) {}
        fn lane(&self, _: Incoming) {}
        fn stop(&self) {
            self.stopped.store(true, Ordering::Release);
        }
    }

    fn start_link(listener: &TcpListener) -> (Arc<Link>, Arc<TestSink>) {
        let sink = Arc::new(TestSink::default());
        let me = LocalIdentity {
            member_id: 1,
            cluster_id: 9,
            dialer: Arc::new(PeerDialer::plain()),
            timeouts: Timeouts::default(),
        };
        let url = format!("http://{}", listener.local_addr().unwrap());
        (Link::start(me, 2, vec![url], sink.clone()).unwrap(), sink)
    }

    fn wait_connected(link: &Link) {
        let start = Instant::now();
        while link.state.lock().conn.is_none() {
            assert!(start.elapsed() < LIMIT, "the link never connected");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_link_sends_past_a_full_socket_and_redials_a_closed_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (link, _rx) = start_link(&listener);
        let mut peer = fake_peer_accept(&listener, HELLO_OK);
        wait_connected(&link);

        // Far more than the socket buffers hold, sent while nobody reads:
        // the rest waits in the link's backlog for the link thread.
        let sent: Vec<Message> = (0..1000).map(|i| message(i, 20_000)).collect();
        for chunk in sent.chunks(7) {
            link.send(chunk.iter());
        }
        assert!(link.state.lock().backlog() > 0, "expected a backlog behind a full socket");
        let got = read_all(&mut peer, sent.len()).unwrap();
        assert_eq!(got, sent);
        // Both ends counted the bytes (other tests only add to these counters).
        let bytes = frames(&sent, 0).len() as u64;
        assert!(METRICS.peer_sent_bytes.with_label_values(&["2"]).get() >= bytes);
        assert!(METRICS.peer_received_bytes.with_label_values(&["1"]).get() >= bytes);

        // The peer restarts: the link notices, dials again and delivers
        // what it is given from then on.
        drop(peer);
        let mut peer = fake_peer_accept(&listener, HELLO_OK);
        let again = message(1000, 10);
        let start = Instant::now();
        let mut got = Vec::new();
        while got.is_empty() {
            assert!(start.elapsed() < LIMIT, "nothing arrived on the new connection");
            link.send(std::iter::once(&again));
            std::thread::sleep(Duration::from_millis(20));
            peer.read(&mut got).unwrap();
        }
        assert!(got.iter().all(|m| *m == again));

        // Silence is filled with keep-alives: the peer keeps hearing.
        let heard = peer.last_heard;
        let start = Instant::now();
        while peer.last_heard == heard {
            assert!(start.elapsed() < LIMIT, "no keep-alive came");
            std::thread::sleep(Duration::from_millis(50));
            let mut none = Vec::new();
            peer.read(&mut none).unwrap();
            assert!(none.is_empty());
        }
        link.close();
    }

    #[test]
    fn a_link_refused_as_removed_stops_the_member() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (link, rx) = start_link(&listener);
        let _ = fake_peer_accept(&listener, HELLO_REMOVED);
        let start = Instant::now();
        while !rx.stopped.load(Ordering::Acquire) {
            assert!(start.elapsed() < LIMIT, "the member was never told to stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        link.close();
    }
}
