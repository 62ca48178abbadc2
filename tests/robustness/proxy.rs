//! One TCP proxy per directed peer link (member A dialing member B), so a fault can hit one
//! direction of one link. Member A reaches B through its proxy because the harness starts A
//! with `LOGBOOK_FAILPOINT_PEER_ROUTES` (the `failpoints` build). A's connections to B carry
//! A's Raft messages to B; B's messages to A travel on B's own connections, through the
//! B→A proxy.
//!
//! In namespace mode on a kernel without netem the same proxies are the links' delay: each
//! listens inside the dialing member's namespace and dials the peer across the lab's
//! network (see [`super::netns`]).
//!
//! Modes: `Pass` forwards (after an optional delay per chunk); `Blackhole` holds every byte
//! (the connection stays up, nothing arrives, like a network that silently drops packets,
//! until it heals and the held bytes flow late); `Cut` resets every connection and refuses
//! new ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass = 0,
    Blackhole = 1,
    Cut = 2,
}

/// The control side of one link's proxy.
pub struct Link {
    pub port: u16,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    /// Each chunk waits the delay plus a uniformly random 0..jitter more.
    jitter_ms: Arc<AtomicU64>,
    /// Bumped on every change so idle connections notice at once.
    changed: watch::Sender<u64>,
}

impl Link {
    /// Starts a proxy on a free port of `bind_ip` forwarding to `target` (`host:port`).
    /// Its sockets live in the network namespace of the runtime thread that runs this.
    pub async fn start_at(bind_ip: String, target: String) -> Link {
        let listener = TcpListener::bind((bind_ip.as_str(), 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let jitter_ms = Arc::new(AtomicU64::new(0));
        let (changed, rx) = watch::channel(0u64);
        let (m, d) = (mode.clone(), (delay_ms.clone(), jitter_ms.clone()));
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { continue };
                if m.load(Ordering::SeqCst) == Mode::Cut as u8 {
                    drop(inbound);
                    continue;
                }
                let (m, d, rx, target) = (m.clone(), d.clone(), rx.clone(), target.clone());
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
                    let mut a = tokio::spawn(pump(ir, ow, m.clone(), d.clone(), rx.clone()));
                    let mut b = tokio::spawn(pump(or, iw, m, d, rx));
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
        Link { port, mode, delay_ms, jitter_ms, changed }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn set_delay_jitter(&self, delay: Duration, jitter: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
        self.jitter_ms.store(jitter.as_millis() as u64, Ordering::SeqCst);
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn heal(&self) {
        self.set_delay_jitter(Duration::ZERO, Duration::ZERO);
        self.set(Mode::Pass);
    }
}

/// Copies one direction, obeying the link's mode.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
    (delay_ms, jitter_ms): (Arc<AtomicU64>, Arc<AtomicU64>),
    mut changed: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            r = changed.changed() => {
                if r.is_err() || mode.load(Ordering::SeqCst) == Mode::Cut as u8 {
                    return;
                }
                continue;
            }
        };
        // Hold the bytes while the link is a black hole (bounded by the harness healing it).
        loop {
            match mode.load(Ordering::SeqCst) {
                m if m == Mode::Cut as u8 => return,
                m if m == Mode::Blackhole as u8 => {
                    if changed.changed().await.is_err() {
                        return;
                    }
                }
                _ => break,
            }
        }
        let jitter = jitter_ms.load(Ordering::SeqCst);
        let delay = delay_ms.load(Ordering::SeqCst)
            + if jitter > 0 { rand::random_range(0..jitter) } else { 0 };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
