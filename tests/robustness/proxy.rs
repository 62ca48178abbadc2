//! One TCP proxy per directed peer link (member A dialing member B), so a fault can hit one
//! direction of one link. Member A reaches B through its proxy because the harness starts A
//! with `LOGBOOK_FAILPOINT_PEER_ROUTES` (the `failpoints` build). A's connections to B carry
//! A's Raft messages to B (the link's *forward* direction) and B's answers on them back to A
//! (*backward*); B's own messages to A travel on B's connections, through the B→A proxy.
//!
//! In namespace mode on a kernel without netem the same proxies are the links' delay: each
//! listens inside the dialing member's namespace and dials the peer across the lab's
//! network (see [`super::netns`]).
//!
//! Modes: `Pass` forwards; `Blackhole` holds every byte (the connection stays up, nothing
//! arrives, like a network that silently drops packets, until it heals and the held bytes
//! flow late); `Cut` resets every connection and refuses new ones. In `Pass`, each chunk (one
//! read from the sending side) may meet, in this order:
//!
//! - **loss**: TCP never loses bytes, so packet loss shows in a byte stream as late bytes.
//!   With the link's loss probability a chunk is "lost" and waits a retransmission timeout
//!   first (Linux's minimum RTO, 200 ms), doubling for each further loss of the same chunk,
//!   as TCP backs off; every chunk behind it waits too (head-of-line blocking). The bytes
//!   arrive intact and in order, only late. (etcd's robustness proxy drops whole chunks from
//!   the stream instead, which no TCP does: its receiver sees a corrupt stream and the
//!   connection is torn down; here that fault is `Cut`.)
//! - **delay**: the link's delay plus a uniformly random 0..jitter more;
//! - **bandwidth**: a token bucket per direction ([`bucket`], 16 KiB burst like the
//!   namespace mode's `tbf`): the chunk goes out in pieces of at most the burst, each after
//!   taking its size in tokens. One bucket can serve several directions, so a member's
//!   whole sending (its links' forward and its peers' links' backward directions) shares one
//!   rate, as a member's egress does behind `tbf`.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leaky_bucket::RateLimiter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass = 0,
    Blackhole = 1,
    Cut = 2,
}

/// The two directions of a link's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the dialing member to the member it dials.
    Forward = 0,
    /// The answers coming back on those connections.
    Backward = 1,
}

/// The first retransmission timeout of a lost chunk (Linux's `TCP_RTO_MIN`).
const RTO_MIN: Duration = Duration::from_millis(200);
/// The longest one retransmission waits (TCP's backoff, capped so a chunk is never held long
/// after the fault ends).
const RTO_MAX: Duration = Duration::from_millis(1600);
/// Retransmissions of one chunk at most (each lost with the link's probability again).
const MAX_RETRANSMITS: usize = 6;
/// The token bucket's capacity: the most bytes that pass at once after an idle while, and
/// the largest piece written at a time (the namespace mode's `tbf ... burst 16kb`).
pub const BURST: usize = 16 * 1024;
/// How often the bucket refills.
const REFILL_EVERY: Duration = Duration::from_millis(10);

/// A token bucket of `kbit` kbit/s, for [`Link::set_bandwidth`]; share it between the
/// directions whose bytes one sender sends.
pub fn bucket(kbit: u32) -> Arc<RateLimiter> {
    let bytes_per_sec = kbit as usize * 1000 / 8;
    let per_refill = (bytes_per_sec * REFILL_EVERY.as_millis() as usize / 1000).max(1);
    Arc::new(
        RateLimiter::builder()
            .initial(BURST)
            .max(BURST)
            .refill(per_refill)
            .interval(REFILL_EVERY)
            .build(),
    )
}

/// A link's faults, shared by its control side and every connection's pumps.
struct Faults {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    jitter_ms: AtomicU64,
    /// Probability (percent) that a chunk is lost and retransmitted (see the module doc).
    loss_pct: AtomicU32,
    /// The token bucket each direction takes from (none: unlimited).
    limits: [Mutex<Option<Arc<RateLimiter>>>; 2],
    /// Chunks held back as lost, counting each retransmission (for tests and reports).
    lost: AtomicU64,
    /// Bumped on every change so idle connections notice at once.
    changed: watch::Sender<u64>,
}

impl Faults {
    fn new() -> Faults {
        Faults {
            mode: AtomicU8::new(Mode::Pass as u8),
            delay_ms: AtomicU64::new(0),
            jitter_ms: AtomicU64::new(0),
            loss_pct: AtomicU32::new(0),
            limits: [Mutex::new(None), Mutex::new(None)],
            lost: AtomicU64::new(0),
            changed: watch::channel(0).0,
        }
    }

    fn mode(&self) -> u8 {
        self.mode.load(Ordering::SeqCst)
    }

    fn is_cut(&self) -> bool {
        self.mode() == Mode::Cut as u8
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Sleeps `d`; false (at once) if the link is cut meanwhile.
    async fn wait(&self, d: Duration, changed: &mut watch::Receiver<u64>) -> bool {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                r = changed.changed() => {
                    if r.is_err() || self.is_cut() {
                        return false;
                    }
                }
            }
        }
    }
}

/// The control side of one link's proxy.
pub struct Link {
    pub port: u16,
    faults: Arc<Faults>,
}

impl Link {
    /// Starts a proxy on a free port of `bind_ip` forwarding to `target` (`host:port`).
    /// Its sockets live in the network namespace of the runtime thread that runs this.
    pub async fn start_at(bind_ip: String, target: String) -> Link {
        let listener = TcpListener::bind((bind_ip.as_str(), 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(Faults::new());
        let f = faults.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { continue };
                if f.is_cut() {
                    drop(inbound);
                    continue;
                }
                let (f, target) = (f.clone(), target.clone());
                tokio::spawn(async move {
                    let Ok(Ok(outbound)) = tokio::time::timeout(
                        Duration::from_secs(1),
                        TcpStream::connect(target.as_str()),
                    )
                    .await
                    else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    let mut a = tokio::spawn(pump(ir, ow, f.clone(), Dir::Forward));
                    let mut b = tokio::spawn(pump(or, iw, f, Dir::Backward));
                    // When either direction ends, end both (a reset, as a cut link looks).
                    tokio::select! {
                        _ = &mut a => {}
                        _ = &mut b => {}
                    }
                    a.abort();
                    b.abort();
                });
            }
        });
        Link { port, faults }
    }

    pub fn set(&self, mode: Mode) {
        self.faults.mode.store(mode as u8, Ordering::SeqCst);
        self.faults.bump();
    }

    pub fn set_delay_jitter(&self, delay: Duration, jitter: Duration) {
        self.faults.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
        self.faults.jitter_ms.store(jitter.as_millis() as u64, Ordering::SeqCst);
        self.faults.bump();
    }

    /// Loses `percent`% of the chunks in both directions (each then arrives a
    /// retransmission timeout late; see the module doc).
    pub fn set_loss(&self, percent: u32) {
        self.faults.loss_pct.store(percent.min(100), Ordering::SeqCst);
        self.faults.bump();
    }

    /// Limits direction `dir` to what `bucket` grants (None: unlimited).
    pub fn set_bandwidth(&self, dir: Dir, bucket: Option<Arc<RateLimiter>>) {
        *self.faults.limits[dir as usize].lock().unwrap() = bucket;
        self.faults.bump();
    }

    /// Chunks held back as lost so far (each retransmission counted).
    pub fn lost(&self) -> u64 {
        self.faults.lost.load(Ordering::SeqCst)
    }

    pub fn heal(&self) {
        self.set_delay_jitter(Duration::ZERO, Duration::ZERO);
        self.set_loss(0);
        self.set_bandwidth(Dir::Forward, None);
        self.set_bandwidth(Dir::Backward, None);
        self.set(Mode::Pass);
    }
}

/// Copies direction `dir` of one connection, obeying the link's faults; returns when either
/// side closes or the link is cut.
async fn pump<R, W>(mut from: R, mut to: W, faults: Arc<Faults>, dir: Dir)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut changed = faults.changed.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            r = changed.changed() => {
                if r.is_err() || faults.is_cut() {
                    return;
                }
                continue;
            }
        };
        // Hold the bytes while the link is a black hole (bounded by the harness healing it).
        loop {
            match faults.mode() {
                m if m == Mode::Cut as u8 => return,
                m if m == Mode::Blackhole as u8 => {
                    if changed.changed().await.is_err() {
                        return;
                    }
                }
                _ => break,
            }
        }
        // Loss: the chunk waits out a retransmission timeout per loss, backing off.
        let mut rto = RTO_MIN;
        for _ in 0..MAX_RETRANSMITS {
            let pct = faults.loss_pct.load(Ordering::SeqCst);
            if pct == 0 || !rand::random_bool(f64::from(pct) / 100.0) {
                break;
            }
            faults.lost.fetch_add(1, Ordering::SeqCst);
            if !faults.wait(rto, &mut changed).await {
                return;
            }
            rto = (rto * 2).min(RTO_MAX);
        }
        let jitter = faults.jitter_ms.load(Ordering::SeqCst);
        let delay = faults.delay_ms.load(Ordering::SeqCst)
            + if jitter > 0 { rand::random_range(0..jitter) } else { 0 };
        if delay > 0 && !faults.wait(Duration::from_millis(delay), &mut changed).await {
            return;
        }
        // Bandwidth: each piece takes its size in tokens from the direction's bucket (the
        // bucket in force when it is sent: a change while waiting is taken up at once).
        for piece in buf[..n].chunks(BURST) {
            loop {
                let limit = faults.limits[dir as usize].lock().unwrap().clone();
                let Some(limit) = limit else { break };
                tokio::select! {
                    _ = limit.acquire(piece.len()) => break,
                    r = changed.changed() => {
                        if r.is_err() || faults.is_cut() {
                            return;
                        }
                    }
                }
            }
            if to.write_all(piece).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recognisable stream: byte i is a function of i, so a lost, repeated or reordered
    /// byte shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
    }

    /// Pumps `data` (written in `write` sized pieces) through one direction with `faults`;
    /// returns what came out.
    async fn through(faults: Arc<Faults>, dir: Dir, data: Vec<u8>, write: usize) -> Vec<u8> {
        let (mut sender, pump_in) = tokio::io::duplex(4 * 1024);
        let (pump_out, mut receiver) = tokio::io::duplex(4 * 1024);
        let pumping = tokio::spawn(pump(pump_in, pump_out, faults, dir));
        let writer = tokio::spawn(async move {
            for piece in data.chunks(write) {
                sender.write_all(piece).await.unwrap();
            }
            // Dropping the sender ends the pump, which drops its side, ending the read.
        });
        let mut got = Vec::new();
        receiver.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        pumping.await.unwrap();
        got
    }

    /// Under 50% loss every byte arrives, once, in order, and chunks were really held back.
    #[tokio::test(start_paused = true)]
    async fn loss_delivers_every_byte_in_order() {
        let faults = Arc::new(Faults::new());
        faults.loss_pct.store(50, Ordering::SeqCst);
        let data = pattern(300_000);
        let got = through(faults.clone(), Dir::Forward, data.clone(), 1000).await;
        assert_eq!(got.len(), data.len(), "bytes lost or added");
        assert!(got == data, "bytes arrived changed or out of order");
        let lost = faults.lost.load(Ordering::SeqCst);
        assert!(lost > 10, "loss at 50% held back only {lost} chunks");
    }

    /// Loss with delay and jitter together on both directions of a real TCP connection
    /// through the proxy: each message comes back from an echo server unchanged, and some
    /// chunks were held back (30 chunks at 30%: all through unharmed has odds of 2e-5).
    #[tokio::test]
    async fn loss_and_jitter_keep_a_tcp_stream_intact_both_ways() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (s, _) = echo.accept().await.unwrap();
            let (mut r, mut w) = s.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        let link = Link::start_at("127.0.0.1".into(), target).await;
        link.set_loss(30);
        link.set_delay_jitter(Duration::from_millis(1), Duration::from_millis(3));
        let mut conn = TcpStream::connect(("127.0.0.1", link.port)).await.unwrap();
        conn.set_nodelay(true).unwrap();
        let data = pattern(15_000);
        for message in data.chunks(1000) {
            conn.write_all(message).await.unwrap();
            let mut back = vec![0u8; message.len()];
            tokio::time::timeout(Duration::from_secs(60), conn.read_exact(&mut back))
                .await
                .expect("the echo never came back")
                .unwrap();
            assert!(back == message, "the echo differs from what was sent");
        }
        assert!(link.lost() > 0, "no chunk was held back at 30% loss");
    }

    /// A 256 kbit/s cap (32,000 bytes/s): at every instant of (paused, virtual) time, what
    /// arrived is at most the burst plus the rate times the time since the start, and all of
    /// it arrives in the end, intact. The cap shared by two directions bounds their sum.
    #[tokio::test(start_paused = true)]
    async fn bandwidth_bounds_bytes_per_second() {
        let limit = bucket(256);
        let rate = 32_000usize;
        let faults = Arc::new(Faults::new());
        *faults.limits[Dir::Forward as usize].lock().unwrap() = Some(limit.clone());
        *faults.limits[Dir::Backward as usize].lock().unwrap() = Some(limit);
        let start = tokio::time::Instant::now();
        let arrived = Arc::new(AtomicU64::new(0));
        let mut flows = Vec::new();
        for dir in [Dir::Forward, Dir::Backward] {
            let (faults, arrived) = (faults.clone(), arrived.clone());
            flows.push(tokio::spawn(async move {
                let data = pattern(100_000);
                let (mut sender, pump_in) = tokio::io::duplex(4 * 1024);
                let (pump_out, mut receiver) = tokio::io::duplex(4 * 1024);
                tokio::spawn(pump(pump_in, pump_out, faults, dir));
                let sent = data.clone();
                tokio::spawn(async move {
                    for piece in sent.chunks(8192) {
                        sender.write_all(piece).await.unwrap();
                    }
                });
                let mut got = Vec::new();
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = receiver.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let total = arrived.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                    let elapsed = start.elapsed().as_secs_f64();
                    let bound = BURST as f64 + rate as f64 * elapsed;
                    assert!(
                        total as f64 <= bound + 1.0,
                        "{total} bytes after {elapsed:.3}s (virtual) exceed {bound:.0}"
                    );
                }
                assert!(got == data, "{dir:?}: bytes changed or out of order");
            }));
        }
        for f in flows {
            f.await.unwrap();
        }
        assert_eq!(arrived.load(Ordering::SeqCst), 200_000);
    }

    /// Healing lifts the cap even from a pump already waiting for tokens.
    #[tokio::test(start_paused = true)]
    async fn lifting_the_cap_frees_a_waiting_pump() {
        let faults = Arc::new(Faults::new());
        // 8 kbit/s: 1,000 bytes/s; 200 kB would take minutes of virtual time.
        *faults.limits[Dir::Forward as usize].lock().unwrap() = Some(bucket(8));
        let start = tokio::time::Instant::now();
        let f = faults.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            *f.limits[Dir::Forward as usize].lock().unwrap() = None;
            f.bump();
        });
        let data = pattern(200_000);
        let got = through(faults, Dir::Forward, data.clone(), 8192).await;
        assert!(got == data);
        // Everything arrived, far more than the cap would have let through by then.
        let capped = BURST as f64 + 1000.0 * start.elapsed().as_secs_f64();
        assert!(got.len() as f64 > capped * 2.0, "still capped after the heal: {capped:.0}");
    }
}
