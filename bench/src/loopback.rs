//! The network part of a quorum write's floor: one round trip over the
//! loopback interface, measured as a 1-byte TCP ping-pong (Nagle off on both
//! ends) between two threads of this process.
//!
//! With the disk's fdatasync latency ([`crate::disk_probe`]) it makes the
//! budget of a 1-client sequential put: the leader's and a follower's
//! fdatasync (overlapped in the best case, one after the other at worst)
//! plus the client's and the peer's round trips, which on one machine cost
//! about this much each.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::stats::{Recorder, Summary};

/// Measures round trips for at most `duration` and `max` round trips.
pub fn probe(duration: Duration, max: u64) -> Result<Summary> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the loopback probe")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::Builder::new().name("loopback-echo".into()).spawn(move || {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        // Ends when the client closes its side (read returns 0).
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        std::io::Result::Ok(())
    })?;
    let result = ping(addr, duration, max);
    // The client's socket is closed by now (or never opened: then accept
    // would wait forever, so connect once to release it).
    if result.is_err() {
        let _ = TcpStream::connect(addr);
    }
    let _ = echo.join();
    result
}

fn ping(addr: std::net::SocketAddr, duration: Duration, max: u64) -> Result<Summary> {
    let mut s = TcpStream::connect(addr).context("connecting the loopback probe")?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let rec = Recorder::default();
    let start = Instant::now();
    let mut n = 0u64;
    let mut b = [7u8; 1];
    while n < max && start.elapsed() < duration {
        let t = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b).context("loopback echo")?;
        rec.record(0, t.elapsed());
        n += 1;
    }
    Ok(Summary::from_histogram("loopback-rtt", &rec.merged(), 0, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_bounded_round_trips() {
        let s = probe(Duration::from_secs(5), 200).unwrap();
        assert_eq!(s.count, 200);
        let l = &s.latency_ms;
        assert!(l.min > 0.0 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
    }
}
