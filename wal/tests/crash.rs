//! The real crash test: a child process appends from several threads and reports each
//! acknowledged record on stdout; the parent kills it with SIGKILL at a random moment, reopens
//! the log and checks every acknowledged record is there, intact, at its index, and every
//! record present is one the child wrote. Repeated on the same directory, so each run also
//! recovers the previous crash.
//!
//! Run once per backend (the child writes with it; the parent reopens with it), and once
//! switching backends between generations (a log written by one backend continues under
//! another). Iterations: `WAL_CRASH_ITERS` (default 3). Seed: `WAL_CRASH_SEED`.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{count, seed};
use logbook_wal::{Backend, Options, Wal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "WAL_CRASH_CHILD_DIR";
const CHILD_GEN: &str = "WAL_CRASH_CHILD_GEN";
const CHILD_BACKEND: &str = "WAL_CRASH_CHILD_BACKEND";

fn opts(backend: Backend) -> Options {
    Options { segment_size: 64 << 10, max_batch_bytes: 16 << 10, backend }
}

/// The record with id `id`: the id, then bytes derived from it, 16..600 bytes long.
fn payload(id: u64) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 16 + (next() % 585) as usize;
    let mut v = id.to_le_bytes().to_vec();
    while v.len() < len {
        v.push(next() as u8);
    }
    v
}

/// Not a test on its own: the child process's body, run when the parent sets `CHILD_DIR`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let generation: u64 = std::env::var(CHILD_GEN).unwrap().parse().unwrap();
    let backend: Backend = std::env::var(CHILD_BACKEND).unwrap().parse().unwrap();
    let wal = Arc::new(Wal::open(&dir, opts(backend)).unwrap());
    let out = Arc::new(parking_lot::Mutex::new(std::io::stdout()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (wal, out) = (wal.clone(), out.clone());
            std::thread::spawn(move || {
                for n in 0..1_000_000u64 {
                    if Instant::now() > deadline {
                        return;
                    }
                    let id = (generation << 40) | (t << 32) | n;
                    let ticket = wal.append(&[&payload(id)]).unwrap();
                    let index = ticket.first_index();
                    ticket.wait().unwrap();
                    let mut o = out.lock();
                    writeln!(o, "ack {index} {id}").unwrap();
                    o.flush().unwrap();
                    drop(o);
                    if t == 0 && n % 50 == 49 {
                        let upto = wal.last_index().saturating_sub(100);
                        // Announced before it happens: the kill may come right after.
                        let mut o = out.lock();
                        writeln!(o, "compact {upto}").unwrap();
                        o.flush().unwrap();
                        drop(o);
                        wal.compact_prefix(upto).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn sigkill_while_appending_loses_nothing_acknowledged_sync() {
    sigkill_while_appending(&[Backend::Sync]);
}

#[test]
fn sigkill_while_appending_loses_nothing_acknowledged_io_uring() {
    sigkill_while_appending(&[Backend::IoUring]);
}

#[test]
fn sigkill_while_appending_loses_nothing_acknowledged_io_uring_direct() {
    sigkill_while_appending(&[Backend::IoUringDirect]);
}

#[test]
fn sigkill_while_appending_loses_nothing_acknowledged_switching_backends() {
    sigkill_while_appending(&[
        Backend::Auto,
        Backend::IoUringDirect,
        Backend::Sync,
        Backend::IoUringDirect,
        Backend::IoUring,
    ]);
}

/// Generation `g` appends with `backends[g % len]`; each reopen uses the next generation's.
fn sigkill_while_appending(backends: &[Backend]) {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let seed = seed("WAL_CRASH_SEED");
    let iters = count("WAL_CRASH_ITERS", 3).max(backends.len() as u64);
    let backend_of = |g: u64| backends[(g % backends.len() as u64) as usize];
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<u64, u64> = HashMap::new(); // index -> id
    let mut compacted_to = 0u64;
    for generation in 0..iters {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_GEN, generation.to_string())
            .env(CHILD_BACKEND, backend_of(generation).as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    // A line cut by the kill has no newline: it was never fully reported.
                    Ok(_) if line.ends_with('\n') => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                    Ok(_) => return,
                }
            }
        });
        let want = rng.random_range(20..600);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        while lines.len() < want && Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                lines.push(l);
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        assert!(!lines.is_empty(), "seed {seed}: child {generation} acknowledged nothing");
        let mut new_acks = 0;
        for l in &lines {
            let mut it = l.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some("ack"), Some(i), Some(id)) => {
                    acked.insert(i.parse().unwrap(), id.parse().unwrap());
                    new_acks += 1;
                }
                (Some("compact"), Some(i), None) => {
                    compacted_to = compacted_to.max(i.parse().unwrap())
                }
                _ => {}
            }
        }

        let wal = Wal::open(dir.path(), opts(backend_of(generation + 1)))
            .unwrap_or_else(|e| panic!("seed {seed}: generation {generation}: reopen: {e}"));
        let (first, last) = (wal.first_index(), wal.last_index());
        assert!(
            first <= compacted_to.max(1),
            "seed {seed}: first {first} past compaction {compacted_to}"
        );
        let records = wal.read(first, last + 1).unwrap();
        let mut ids = HashSet::new();
        for (k, r) in records.iter().enumerate() {
            let index = first + k as u64;
            assert!(r.len() >= 8, "seed {seed}: record {index} too short");
            let id = u64::from_le_bytes(r[..8].try_into().unwrap());
            assert_eq!(*r, payload(id), "seed {seed}: record {index} is not one the child wrote");
            assert!(ids.insert(id), "seed {seed}: id {id} stored twice");
        }
        for (&index, &id) in &acked {
            if index < first {
                assert!(
                    index < compacted_to,
                    "seed {seed}: acknowledged {index} lost below first {first}"
                );
                continue;
            }
            assert!(index <= last, "seed {seed}: acknowledged {index} lost (last {last})");
            let got =
                u64::from_le_bytes(records[(index - first) as usize][..8].try_into().unwrap());
            assert_eq!(got, id, "seed {seed}: index {index} holds another record");
        }
        println!(
            "generation {generation} ({}): {new_acks} acks, log [{first}, {last}]",
            backend_of(generation)
        );
    }
}
