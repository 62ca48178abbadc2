//! Behaviour of the public API on real files and on the simulated file system.

use std::path::Path;
use std::sync::Arc;

use logbook_wal::sim::SimStorage;
use logbook_wal::{Backend, Error, HardState, Options, Wal};

fn small(backend: Backend) -> Options {
    Options { segment_size: 4096, max_batch_bytes: 1024, backend }
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    v.sort();
    v
}

/// Opening failed with corruption reported in `seg` at `at`.
fn assert_corrupted_at(opened: logbook_wal::Result<Wal>, seg: &Path, at: u64) {
    match opened {
        Err(Error::Corrupted { file, offset, reason }) => {
            assert_eq!(file, seg);
            assert_eq!(offset, at, "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

fn rec(i: u64) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

#[test]
fn brand_new_log_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path().join("wal"), Options::default()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    assert_eq!(wal.hard_state(), HardState::default());
    assert_eq!(wal.read(1, 1).unwrap(), Vec::<Vec<u8>>::new());
    assert!(matches!(wal.read(1, 2), Err(Error::OutOfRange { .. })));
    assert_eq!(
        segment_files(&dir.path().join("wal")),
        vec!["0000000000000000-0000000000000001.wal"]
    );
}

fn append_roll_reopen(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let hs = HardState { term: 4, vote: 2, commit: 90 };
    {
        let wal = Wal::open(dir.path(), small(backend)).unwrap();
        for i in 1..=200u64 {
            let r = rec(i);
            let t =
                if i == 100 { wal.append_with_state(&[&r], Some(hs)) } else { wal.append(&[&r]) };
            let t = t.unwrap();
            assert_eq!(t.first_index(), i);
            t.wait().unwrap();
        }
        assert_eq!(wal.hard_state(), hs);
        assert_eq!(wal.last_index(), 200);
        let got = wal.read(1, 201).unwrap();
        assert_eq!(got, (1..=200).map(rec).collect::<Vec<_>>());
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "small segments roll over: {files:?}");
    let wal = Wal::open(dir.path(), small(backend)).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 200));
    assert_eq!(wal.hard_state(), hs);
    assert_eq!(wal.read(37, 150).unwrap(), (37..150).map(rec).collect::<Vec<_>>());
    wal.append(&[b"after"]).unwrap().wait().unwrap();
    assert_eq!(wal.read(201, 202).unwrap(), vec![b"after".to_vec()]);
}

#[test]
fn append_roll_reopen_sync() {
    append_roll_reopen(Backend::Sync);
}

#[test]
fn append_roll_reopen_auto() {
    append_roll_reopen(Backend::Auto);
}

#[test]
fn io_uring_backend_when_available() {
    let dir = tempfile::tempdir().unwrap();
    match Wal::open(dir.path(), small(Backend::IoUring)) {
        Ok(wal) => {
            assert!(wal.backend_name().contains("io_uring"));
            drop(wal);
            append_roll_reopen(Backend::IoUring);
        }
        Err(Error::Config(msg)) => eprintln!("io_uring unavailable here, skipped: {msg}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn truncate_suffix_then_reappend_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), small(Backend::Auto)).unwrap();
        let recs: Vec<Vec<u8>> = (1..=50).map(rec).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        wal.append(&refs).unwrap().wait().unwrap();
        let t = wal.truncate_suffix(30).unwrap();
        assert_eq!(wal.last_index(), 29);
        t.wait().unwrap();
        // Same size, so stale frames sit exactly where new ones would be on disk.
        let t = wal.append(&[b"new-30", b"new-31"]).unwrap();
        assert_eq!(t.first_index(), 30);
        t.wait().unwrap();
        assert!(matches!(wal.truncate_suffix(40), Err(Error::OutOfRange { .. })));
    }
    let wal = Wal::open(dir.path(), small(Backend::Auto)).unwrap();
    assert_eq!(wal.last_index(), 31);
    assert_eq!(wal.read(29, 32).unwrap(), vec![rec(29), b"new-30".to_vec(), b"new-31".to_vec()]);
}

#[test]
fn compact_prefix_removes_old_segments_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let hs = HardState { term: 2, vote: 1, commit: 5 };
    {
        let wal = Wal::open(dir.path(), small(Backend::Auto)).unwrap();
        wal.set_hard_state(hs).unwrap().wait().unwrap();
        for i in 1..=300u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
        let before = segment_files(dir.path()).len();
        wal.compact_prefix(250).unwrap();
        let after = segment_files(dir.path()).len();
        assert!(after < before, "{before} -> {after}");
        assert!(wal.first_index() <= 250 && wal.first_index() > 1);
        let f = wal.first_index();
        assert_eq!(wal.read(f, 301).unwrap(), (f..=300).map(rec).collect::<Vec<_>>());
        assert!(matches!(wal.read(1, 2), Err(Error::OutOfRange { .. })));
    }
    let wal = Wal::open(dir.path(), small(Backend::Auto)).unwrap();
    let f = wal.first_index();
    assert!(f <= 250 && f > 1, "{f}");
    assert_eq!(wal.last_index(), 300);
    assert_eq!(wal.hard_state(), hs, "hard state survives its segment's removal");
    assert_eq!(wal.read(f, 301).unwrap(), (f..=300).map(rec).collect::<Vec<_>>());
}

#[test]
fn compact_prefix_keeping_leaves_that_many_segment_files() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small(Backend::Auto)).unwrap();
    for i in 1..=300u64 {
        wal.append(&[&rec(i)]).unwrap().wait().unwrap();
    }
    let before = segment_files(dir.path()).len();
    assert!(before > 3, "the test needs more segments than it keeps: {before}");
    // Unlimited: nothing goes, and every record is still readable.
    wal.compact_prefix_keeping(290, usize::MAX).unwrap();
    assert_eq!(segment_files(dir.path()).len(), before);
    assert_eq!(wal.read(1, 3).unwrap(), vec![rec(1), rec(2)]);
    // Two: the oldest go, down to two files.
    wal.compact_prefix_keeping(290, 2).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2);
    let f = wal.first_index();
    assert_eq!(wal.read(f, 301).unwrap(), (f..=300).map(rec).collect::<Vec<_>>());
    // A file still holding records at or above the index stays, whatever the limit.
    wal.compact_prefix_keeping(2, 1).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2);
    drop(wal);
    let wal = Wal::open(dir.path(), small(Backend::Auto)).unwrap();
    assert_eq!(wal.first_index(), f);
    assert_eq!(wal.last_index(), 300);
}

#[test]
fn compact_past_the_end_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), small(Backend::Auto)).unwrap();
        wal.append(&[b"a", b"b"]).unwrap().wait().unwrap();
        wal.compact_prefix(1000).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (1000, 999));
    }
    let wal = Wal::open(dir.path(), small(Backend::Auto)).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1000, 999));
    assert_eq!(wal.append(&[b"c"]).unwrap().first_index(), 1000);
}

#[test]
fn many_threads_append_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(dir.path(), Options { segment_size: 64 << 10, ..Options::default() }).unwrap(),
    );
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..100u64 {
                    let data = format!("t{t}-{i}");
                    let tk = wal.append(&[data.as_bytes()]).unwrap();
                    mine.push((tk.first_index(), data));
                    tk.wait().unwrap();
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(u64, String)> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort();
    assert_eq!(all.len(), 800);
    assert_eq!(wal.last_index(), 800);
    let got = wal.read(1, 801).unwrap();
    for (i, (index, data)) in all.iter().enumerate() {
        assert_eq!(*index, i as u64 + 1);
        assert_eq!(got[i], data.as_bytes());
    }
}

#[test]
fn tickets_can_be_awaited() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Options::default()).unwrap();
    let mut fut = pin!(wal.append(&[b"x"]).unwrap());
    let mut cx = Context::from_waker(Waker::noop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            r.unwrap();
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ticket never completed");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn too_large_and_bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wal::open(dir.path(), Options { segment_size: 10, ..Options::default() }),
        Err(Error::Config(_))
    ));
    let wal = Wal::open(dir.path(), Options::default()).unwrap();
    let big = vec![0u8; logbook_wal::codec::MAX_RECORD_LEN + 1];
    assert!(matches!(wal.append(&[&big]), Err(Error::TooLarge { .. })));
    assert_eq!(wal.last_index(), 0);
}

#[test]
fn failed_fsync_poisons_until_reopen() {
    let sim = SimStorage::new();
    let opts = small(Backend::Auto);
    let acked;
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        assert!(!wal.backend_name().contains("io_uring"));
        for i in 1..=5 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
        acked = 5;
        sim.fail_sync_after(0);
        let err = wal.append(&[b"doomed"]).unwrap().wait().unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err:?}");
        assert!(wal.is_poisoned());
        assert!(matches!(wal.append(&[b"later"]), Err(Error::Poisoned)));
        assert!(matches!(wal.read(1, 2), Err(Error::Poisoned)));
        assert!(matches!(wal.set_hard_state(HardState::default()), Err(Error::Poisoned)));
        assert!(matches!(wal.truncate_suffix(1), Err(Error::Poisoned)));
        assert!(matches!(wal.compact_prefix(1), Err(Error::Poisoned)));
    }
    sim.clear_faults();
    let wal = Wal::open_with_storage("/w", opts, Arc::new(sim)).unwrap();
    assert!(wal.last_index() >= acked);
    assert_eq!(wal.read(1, acked + 1).unwrap(), (1..=acked).map(rec).collect::<Vec<_>>());
}

#[test]
fn failed_write_poisons() {
    let sim = SimStorage::new();
    let wal = Wal::open_with_storage("/w", small(Backend::Sync), Arc::new(sim.clone())).unwrap();
    wal.append(&[b"ok"]).unwrap().wait().unwrap();
    sim.fail_write_after(0);
    assert!(wal.append(&[b"doomed"]).unwrap().wait().is_err());
    assert!(matches!(wal.append(&[b"x"]), Err(Error::Poisoned)));
}

#[test]
fn disk_full_is_reported_and_loses_nothing_acknowledged() {
    let sim = SimStorage::new();
    let opts = small(Backend::Auto);
    let mut acked = 0u64;
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        // Room for the active segment and its spare, and a bit: the next roll-over fails.
        sim.set_capacity(Some(sim.used_bytes() + 100));
        let mut saw_full = false;
        for i in 1..=500u64 {
            match wal.append(&[&rec(i)]).and_then(|t| t.wait()) {
                Ok(()) => acked = i,
                Err(Error::DiskFull) => {
                    saw_full = true;
                    break;
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(saw_full, "never ran out of space");
        assert!(matches!(wal.append(&[b"x"]), Err(Error::Poisoned)));
    }
    assert!(acked > 0);
    sim.set_capacity(None);
    let wal = Wal::open_with_storage("/w", opts, Arc::new(sim)).unwrap();
    assert!(wal.last_index() >= acked);
    assert_eq!(wal.read(1, acked + 1).unwrap(), (1..=acked).map(rec).collect::<Vec<_>>());
}

#[test]
fn corruption_before_the_tail_names_file_and_offset() {
    let sim = SimStorage::new();
    let opts = small(Backend::Auto);
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        for i in 1..=100u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
    }
    let first = Path::new("/w/0000000000000000-0000000000000001.wal");
    let bytes = sim.file_bytes(first).unwrap();
    // Flip a byte inside the second record of the first (not last) segment.
    let off = 40 + 33 + 30;
    sim.damage(first, off, &[bytes[off as usize] ^ 0xFF]);
    match Wal::open_with_storage("/w", opts, Arc::new(sim)) {
        Err(Error::Corrupted { file, offset, .. }) => {
            assert_eq!(file, first);
            assert!(offset <= off && offset >= 40, "{offset}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn damage_in_the_last_segment_followed_by_valid_records_is_corruption() {
    let sim = SimStorage::new();
    let opts = Options { segment_size: 1 << 20, ..small(Backend::Auto) };
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        for i in 1..=20u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
    }
    let seg = Path::new("/w/0000000000000000-0000000000000001.wal");
    // Zero out the 3rd record's header: looks like the end, but valid records follow.
    let hdr = 40 + 33 + (rec(1).len() + 17) + (rec(2).len() + 17);
    sim.damage(seg, hdr as u64, &[0u8; 9]);
    assert_corrupted_at(Wal::open_with_storage("/w", opts, Arc::new(sim)), seg, hdr as u64);
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let sim = SimStorage::new();
    let opts = Options { segment_size: 1 << 20, ..small(Backend::Auto) };
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        for i in 1..=20u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
    }
    let seg = Path::new("/w/0000000000000000-0000000000000001.wal");
    let bytes = sim.file_bytes(seg).unwrap();
    // Cut the last record in half: zero from its middle on.
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let cut = end - rec(20).len() / 2;
    sim.damage(seg, cut as u64, &vec![0u8; end - cut]);
    let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
    assert_eq!(wal.last_index(), 19);
    wal.append(&[b"twenty"]).unwrap().wait().unwrap();
    drop(wal);
    let wal = Wal::open_with_storage("/w", opts, Arc::new(sim)).unwrap();
    assert_eq!(wal.read(19, 21).unwrap(), vec![rec(19), b"twenty".to_vec()]);
}

/// Regression: when the crash hit a roll-over (new segment named but its header never
/// written), recovery removed that segment but left the write position of the previous one at
/// 0, so the next batch overwrote the previous segment's header.
#[test]
fn torn_new_segment_is_removed_and_the_previous_one_resumes() {
    let sim = SimStorage::new();
    let opts = small(Backend::Sync);
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        for i in 1..=100u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
    }
    use logbook_wal::io::Storage;
    let mut names = sim.list(Path::new("/w")).unwrap();
    names.retain(|n| n.ends_with(".wal"));
    names.sort();
    let last = Path::new("/w").join(names.last().unwrap());
    let len = sim.file_bytes(&last).unwrap().len();
    let nonzero = sim.file_bytes(&last).unwrap().iter().rposition(|&b| b != 0).unwrap();
    // The roll-over's first write was lost entirely: the new segment is all zeros.
    sim.damage(&last, 0, &vec![0u8; len]);
    let lost = {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        assert!(!sim.list(Path::new("/w")).unwrap().contains(&names.last().unwrap().clone()));
        let last_index = wal.last_index();
        assert!(
            last_index < 100 && last_index > 0,
            "{last_index} (segment had data up to {nonzero})"
        );
        for i in last_index + 1..=150 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
        last_index
    };
    let wal = Wal::open_with_storage("/w", opts, Arc::new(sim)).unwrap();
    assert_eq!(wal.last_index(), 150, "lost {lost}");
    assert_eq!(wal.read(1, 151).unwrap(), (1..=150).map(rec).collect::<Vec<_>>());
}

#[test]
fn open_reads_what_the_log_holds_not_the_preallocated_segment() {
    let sim = SimStorage::new();
    let opts = Options { segment_size: 16 << 20, ..small(Backend::Sync) };
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        for i in 1..=100u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
    }
    let before = sim.bytes_read();
    let wal = Wal::open_with_storage("/w", opts, Arc::new(sim.clone())).unwrap();
    let read = sim.bytes_read() - before;
    assert_eq!(wal.last_index(), 100);
    // About 5 KiB of frames in a 16 MiB segment: open reads the written blocks only.
    assert!(read <= 16 << 10, "open read {read} bytes");
}

/// A log on real files with records larger than recovery's read chunk (1 MiB) between small
/// ones, so frames straddle chunk boundaries in every way.
#[test]
fn records_larger_than_a_read_chunk_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_size: 8 << 20, ..Options::default() };
    let big = |i: u64| vec![(i % 251) as u8; (1 << 20) + (i as usize * 4099) % 300_000];
    let expected: Vec<Vec<u8>> =
        (1..=40u64).map(|i| if i % 4 == 0 { big(i) } else { rec(i) }).collect();
    {
        let wal = Wal::open(dir.path(), opts.clone()).unwrap();
        for r in &expected {
            wal.append(&[r]).unwrap().wait().unwrap();
        }
    }
    assert!(segment_files(dir.path()).len() >= 2);
    let wal = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(wal.last_index(), 40);
    assert_eq!(wal.read(1, 41).unwrap(), expected);
}

/// On real files, open stops reading where the file system says the segment was never
/// written; a zeroed frame header with acknowledged records after it must still be reported.
#[test]
fn zeroed_frame_before_valid_records_is_corruption_on_real_files() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), Options::default()).unwrap();
        for i in 1..=2000u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
    }
    let seg = dir.path().join("0000000000000000-0000000000000001.wal");
    let hdr: usize = 40 + 33 + (1..=9u64).map(|i| rec(i).len() + 17).sum::<usize>();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[0u8; 9], hdr as u64).unwrap();
    f.sync_data().unwrap();
    assert_corrupted_at(Wal::open(dir.path(), Options::default()), &seg, hdr as u64);
}

#[test]
fn torn_tail_on_real_files_is_cut() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let end = {
        let wal = Wal::open(dir.path(), Options::default()).unwrap();
        for i in 1..=300u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
        40 + 33 + (1..=300u64).map(|i| rec(i).len() + 17).sum::<usize>()
    };
    let seg = dir.path().join("0000000000000000-0000000000000001.wal");
    // Half of a frame claiming 1000 bytes: a write cut short by the crash.
    let mut torn = 1008u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[7u8; 500]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .write_all_at(&torn, end as u64)
        .unwrap();
    {
        let wal = Wal::open(dir.path(), Options::default()).unwrap();
        assert_eq!(wal.last_index(), 300);
        wal.append(&[b"after"]).unwrap().wait().unwrap();
    }
    let wal = Wal::open(dir.path(), Options::default()).unwrap();
    assert_eq!(wal.read(300, 302).unwrap(), vec![rec(300), b"after".to_vec()]);
}

#[test]
fn committing_in_place_is_durable_on_return_and_mixes_with_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(Backend::Sync);
    let hs = HardState { term: 7, vote: 3, commit: 40 };
    {
        let wal = Wal::open(dir.path(), opts.clone()).unwrap();
        // Alone, every call finds the writer idle: durable before it returns, across rolls.
        for i in 1..=150u64 {
            let state = (i == 75).then_some(hs);
            let t = wal.append_with_state_now(&[&rec(i)], state).unwrap();
            assert!(t.is_complete(), "record {i} was not committed in place");
            assert_eq!(t.first_index(), i);
        }
        assert!(segment_files(dir.path()).len() > 1, "expected segment rolls");
        assert_eq!(wal.hard_state(), hs);
    }
    {
        let wal = Arc::new(Wal::open(dir.path(), opts.clone()).unwrap());
        assert_eq!(wal.last_index(), 150);
        // Beside appenders handing their records to the writer thread: order and indexes
        // stay those of the calls, whoever commits them.
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..50u64 {
                        let data = format!("t{t}-{i}");
                        let tk = if t == 0 {
                            wal.append_with_state_now(&[data.as_bytes()], None).unwrap()
                        } else {
                            wal.append(&[data.as_bytes()]).unwrap()
                        };
                        mine.push((tk.first_index(), data));
                        tk.wait().unwrap();
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<(u64, String)> =
            threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort();
        assert_eq!(wal.last_index(), 350);
        let got = wal.read(151, 351).unwrap();
        for (i, (index, data)) in all.iter().enumerate() {
            assert_eq!(*index, 151 + i as u64);
            assert_eq!(got[i], data.as_bytes());
        }
    }
    let wal = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(wal.last_index(), 350);
    assert_eq!(wal.read(1, 151).unwrap(), (1..=150).map(rec).collect::<Vec<_>>());
    assert_eq!(wal.hard_state(), hs);
}

#[test]
fn a_failed_fsync_in_place_poisons_and_loses_nothing_acknowledged() {
    let sim = SimStorage::new();
    let opts = small(Backend::Sync);
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        for i in 1..=5 {
            let t = wal.append_with_state_now(&[&rec(i)], None).unwrap();
            assert!(t.is_complete());
            t.wait().unwrap();
        }
        sim.fail_sync_after(0);
        let t = wal.append_with_state_now(&[b"doomed"], None).unwrap();
        assert!(t.is_complete(), "a failed commit in place still answers at once");
        assert!(matches!(t.wait(), Err(Error::Io(_))));
        assert!(wal.is_poisoned());
        assert!(matches!(wal.append_with_state_now(&[b"later"], None), Err(Error::Poisoned)));
        assert!(matches!(wal.append(&[b"later"]), Err(Error::Poisoned)));
    }
    sim.clear_faults();
    let wal = Wal::open_with_storage("/w", opts, Arc::new(sim)).unwrap();
    assert!(wal.last_index() >= 5);
    assert_eq!(wal.read(1, 6).unwrap(), (1..=5).map(rec).collect::<Vec<_>>());
}

/// The direct backend keeps batches in flight together (on a ring, or simulated with the same
/// buffers and pipeline): many appenders, then every record is there, in order, after reopen.
fn pipelined_appends(storage: Option<SimStorage>) {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        Options { segment_size: 64 << 10, max_batch_bytes: 512, backend: Backend::IoUringDirect };
    let open = |o: Options| match &storage {
        Some(s) => Wal::open_with_storage(dir.path(), o, Arc::new(s.clone())),
        None => Wal::open(dir.path(), o),
    };
    let wal = Arc::new(open(opts.clone()).unwrap());
    assert_eq!(wal.backend(), Backend::IoUringDirect, "{}", wal.backend_note());
    // Bursts of appends not waited for queue several batches at once; bounded in count.
    let mut tickets = Vec::new();
    let mut next = 1u64;
    for _burst in 0..200 {
        for _ in 0..20 {
            let t = wal.append(&[&rec(next)]).unwrap();
            assert_eq!(t.first_index(), next);
            tickets.push(t);
            next += 1;
        }
        // Until batches overlapped and a segment rolled over (4000 records of ~52 bytes
        // fill more than a 64 KiB segment, so the bound is never what ends it).
        let stats = wal.stats();
        if stats.overlapped > 0 && stats.segments_rolled > 0 && next > 1000 {
            break;
        }
    }
    // Tickets complete in order: once the last is durable, all are.
    let last = tickets.pop().unwrap();
    last.wait().unwrap();
    assert!(tickets.iter().all(|t| t.is_complete()));
    let stats = wal.stats();
    assert!(stats.overlapped > 0, "no batch was ever submitted behind another: {stats:?}");
    assert!(stats.segments_rolled > 0, "{stats:?}");
    let n = next - 1;
    assert_eq!(wal.read(1, n + 1).unwrap(), (1..=n).map(rec).collect::<Vec<_>>());
    drop(tickets);
    drop(wal);
    let wal = open(opts).unwrap();
    assert_eq!(wal.last_index(), n);
    assert_eq!(wal.read(1, n + 1).unwrap(), (1..=n).map(rec).collect::<Vec<_>>());
}

#[test]
fn pipelined_direct_appends_survive_reopen_simulated() {
    pipelined_appends(Some(SimStorage::new()));
}

#[test]
fn pipelined_direct_appends_survive_reopen_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    match Wal::open(dir.path(), small(Backend::IoUringDirect)) {
        Ok(w) if w.backend() == Backend::IoUringDirect => {}
        Ok(w) => return eprintln!("no O_DIRECT here, skipped: {}", w.backend_note()),
        Err(e) => return eprintln!("io_uring unavailable here, skipped: {e}"),
    }
    pipelined_appends(None);
}

/// A failed write completion while a later batch is in flight: the later batch is never
/// acknowledged (though its bytes were written), the log is poisoned, and after reopen
/// everything acknowledged is there.
#[test]
fn a_failure_with_batches_in_flight_acknowledges_nothing_after_it() {
    let sim = SimStorage::new();
    let opts =
        Options { segment_size: 1 << 20, max_batch_bytes: 256, backend: Backend::IoUringDirect };
    let acked;
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        for i in 1..=5 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
        acked = 5;
        // Small batches (256 bytes at most); the fourth sync from now fails, with later
        // batches submitted behind it.
        sim.fail_sync_after(3);
        // Appends after the failure are refused at once (poisoned).
        let tickets: Vec<_> = (6..=40).map(|i| wal.append(&[&rec(i)])).collect();
        let outcomes: Vec<bool> =
            tickets.into_iter().map(|t| t.is_ok_and(|t| t.wait().is_ok())).collect();
        let ok = outcomes.iter().take_while(|&&o| o).count();
        assert!(outcomes[ok..].iter().all(|&o| !o), "acknowledged after a failure: {outcomes:?}");
        assert!(ok < outcomes.len(), "the failed sync acknowledged everything: {outcomes:?}");
        assert!(wal.stats().commits <= 5 + 3, "{:?}", wal.stats());
        assert!(wal.is_poisoned());
    }
    sim.clear_faults();
    let wal = Wal::open_with_storage("/w", opts, Arc::new(sim)).unwrap();
    assert!(wal.last_index() >= acked);
    let last = wal.last_index();
    assert_eq!(wal.read(1, last + 1).unwrap(), (1..=last).map(rec).collect::<Vec<_>>());
}

/// A segment the direct backend zero-filled is all written space to the file system, so
/// recovery cannot skip its unused part by the extent map; it stops `ZERO_PROOF` (8 MiB) of
/// zeros past the end of the log instead of reading the whole segment.
#[test]
fn a_recovered_zero_filled_segment_is_not_read_whole() {
    let sim = SimStorage::new();
    let opts = Options { segment_size: 32 << 20, ..small(Backend::IoUringDirect) };
    {
        let wal = Wal::open_with_storage("/w", opts.clone(), Arc::new(sim.clone())).unwrap();
        for i in 1..=100u64 {
            wal.append(&[&rec(i)]).unwrap().wait().unwrap();
        }
    }
    let before = sim.bytes_read();
    let wal = Wal::open_with_storage("/w", opts, Arc::new(sim.clone())).unwrap();
    let read = sim.bytes_read() - before;
    assert_eq!(wal.last_index(), 100);
    assert_eq!(wal.read(1, 101).unwrap(), (1..=100).map(rec).collect::<Vec<_>>());
    // 5 KiB of frames, 8 MiB of zeros after them, reads in 1 MiB chunks: not 32 MiB.
    assert!(read <= 10 << 20, "open read {read} bytes of a 32 MiB zero-filled segment");
    drop(wal);
    // Torn bytes just past the end are still found and cut.
    let seg = Path::new("/w/0000000000000000-0000000000000001.wal");
    let end = sim.file_bytes(seg).unwrap().iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    sim.damage(seg, end + 3 * 4096, b"garbage");
    let wal = Wal::open_with_storage("/w", small_direct(32 << 20), Arc::new(sim.clone())).unwrap();
    assert_eq!(wal.last_index(), 100);
    let bytes = sim.file_bytes(seg).unwrap();
    assert!(bytes[end as usize..].iter().all(|&b| b == 0), "torn bytes left behind");
}

fn small_direct(segment_size: u64) -> Options {
    Options { segment_size, ..small(Backend::IoUringDirect) }
}
