//! Resource use of the server processes, read from `/proc`, and the size of
//! their data directories.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Linux reports CPU time in clock ticks of 1/100 s (`USER_HZ`) on every
/// architecture we run on.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time used so far and resident memory of a set of processes.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    cpu_ticks: u64,
    rss_bytes: u64,
    /// Bytes the processes caused to be written to storage (`write_bytes` of
    /// `/proc/<pid>/io`): WAL, db and snapshots, preallocation included.
    pub disk_write_bytes: u64,
}

/// Resource use between two samples.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// CPU cores busy on average (1.0 = one core all the time).
    pub cpu_cores: f64,
    /// Resident memory summed over the processes at the end, MiB.
    pub rss_mib: f64,
}

/// Samples the processes `pids` (those that are gone count as zero).
pub fn sample(pids: &[u32]) -> Sample {
    let mut cpu_ticks = 0;
    let mut rss_bytes = 0;
    let mut disk_write_bytes = 0;
    for &pid in pids {
        if let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
            disk_write_bytes += parse_write_bytes(&io).unwrap_or(0);
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            cpu_ticks += parse_cpu_ticks(&stat).unwrap_or(0);
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            rss_bytes += parse_rss_bytes(&status).unwrap_or(0);
        }
    }
    Sample { at: Instant::now(), cpu_ticks, rss_bytes, disk_write_bytes }
}

/// Use between `before` and `after`.
pub fn usage(before: &Sample, after: &Sample) -> Usage {
    let secs = after.at.duration_since(before.at).as_secs_f64();
    let cpu = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / TICKS_PER_SEC;
    Usage {
        cpu_cores: if secs > 0.0 { cpu / secs } else { 0.0 },
        rss_mib: after.rss_bytes as f64 / (1 << 20) as f64,
    }
}

/// CPU seconds the processes used between `before` and `after`.
pub fn cpu_seconds(before: &Sample, after: &Sample) -> f64 {
    after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / TICKS_PER_SEC
}

/// utime + stime from a `/proc/<pid>/stat` line (fields 14 and 15; the
/// command name in field 2 may contain spaces, so count from its `)`).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")" come field 3 (state) onwards: utime is field 14 → index 11.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn parse_write_bytes(io: &str) -> Option<u64> {
    io.lines().find_map(|l| l.strip_prefix("write_bytes:"))?.trim().parse().ok()
}

fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory of one process as the kernel splits it (`/proc/<pid>/status`). etcd's
/// bbolt maps its db file, so the pages of it that etcd touched count in its RSS as
/// `file`; Logbook reads its file with `pread`, so the same pages are in the OS page cache
/// but in no process's RSS, and its RSS is nearly all `anon`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RssSplit {
    /// `VmRSS`: all resident pages (`anon + file + shmem`).
    pub rss_bytes: u64,
    /// `RssAnon`: heap, stacks, anonymous mappings.
    pub anon_bytes: u64,
    /// `RssFile`: resident pages of mapped files (the binary, an mmap'ed database).
    pub file_bytes: u64,
    /// `RssShmem`: shared memory.
    pub shmem_bytes: u64,
    /// `VmHWM`: the peak of `VmRSS` over the process's life, or since [`reset_peak`].
    pub peak_bytes: u64,
}

impl RssSplit {
    /// Bytes as MiB, for reports.
    pub fn mib(bytes: u64) -> f64 {
        bytes as f64 / (1 << 20) as f64
    }
}

/// The RSS split of process `pid`; `None` if it is gone (or not Linux).
pub fn rss_split(pid: u32) -> Option<RssSplit> {
    parse_rss_split(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Waits (at most `max_wait`, sampling every `every`) until process `pid`'s RSS changed by
/// less than `tolerance` (e.g. 0.01 for 1 %) over the last `window`, and returns the last
/// sample: the "settled" RSS after a load, once allocators and caches are done giving memory
/// back. Returns the last sample when `max_wait` runs out first; `None` if the process is gone.
pub fn settled_rss(
    pid: u32,
    window: std::time::Duration,
    every: std::time::Duration,
    tolerance: f64,
    max_wait: std::time::Duration,
) -> Option<RssSplit> {
    let start = Instant::now();
    let every = every.max(std::time::Duration::from_millis(10));
    let mut samples: std::collections::VecDeque<(Instant, RssSplit)> = Default::default();
    loop {
        let now = Instant::now();
        let s = rss_split(pid)?;
        samples.push_back((now, s));
        while samples.front().is_some_and(|(at, _)| now.duration_since(*at) > window) {
            samples.pop_front();
        }
        let full = samples.front().is_some_and(|(at, _)| now.duration_since(*at) + every > window);
        if full {
            let lo = samples.iter().map(|(_, s)| s.rss_bytes).min().unwrap_or(0);
            let hi = samples.iter().map(|(_, s)| s.rss_bytes).max().unwrap_or(0);
            if (hi - lo) as f64 <= tolerance * hi.max(1) as f64 {
                return Some(s);
            }
        }
        if start.elapsed() >= max_wait {
            return Some(s);
        }
        std::thread::sleep(every);
    }
}

fn parse_rss_split(status: &str) -> Option<RssSplit> {
    let kb = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line[name.len()..].split_whitespace().next()?.parse::<u64>().ok()? * 1024)
    };
    Some(RssSplit {
        rss_bytes: kb("VmRSS:")?,
        anon_bytes: kb("RssAnon:").unwrap_or(0),
        file_bytes: kb("RssFile:").unwrap_or(0),
        shmem_bytes: kb("RssShmem:").unwrap_or(0),
        peak_bytes: kb("VmHWM:").unwrap_or(0),
    })
}

/// Bytes under `path` (a file or a directory tree); 0 when missing.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

/// Resets `pid`'s `VmHWM` to its current RSS (writes 5 to `/proc/<pid>/clear_refs`; the
/// caller must own the process). False when the kernel refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat =
            "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_rss_bytes("Name:\tx\nVmRSS:\t   2048 kB\n"), Some(2 << 20));
        let io = "rchar: 1\nwchar: 2\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_write_bytes(io), Some(4096));
    }

    #[test]
    fn splits_rss() {
        let status = "Name:\tetcd\nVmHWM:\t  4096 kB\nVmRSS:\t  3072 kB\nRssAnon:\t  1024 kB\n\
                      RssFile:\t  2048 kB\nRssShmem:\t       0 kB\n";
        let s = parse_rss_split(status).unwrap();
        assert_eq!(
            s,
            RssSplit {
                rss_bytes: 3 << 20,
                anon_bytes: 1 << 20,
                file_bytes: 2 << 20,
                shmem_bytes: 0,
                peak_bytes: 4 << 20
            }
        );
        assert_eq!(parse_rss_split("Name:\tx\n"), None);
        let me = rss_split(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0 && me.anon_bytes + me.file_bytes <= me.rss_bytes);
        assert!(me.peak_bytes >= me.rss_bytes);
    }

    #[test]
    fn settles_an_idle_process() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let s = settled_rss(std::process::id(), ms(50), ms(10), 0.5, Duration::from_secs(5));
        assert!(s.unwrap().rss_bytes > 0);
        assert_eq!(settled_rss(u32::MAX, ms(50), ms(10), 0.5, ms(100)), None);
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        let a = sample(&[me]);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = sample(&[me]);
        let u = usage(&a, &b);
        assert!(u.rss_mib > 0.0);
        assert!(u.cpu_cores >= 0.0);
    }

    #[test]
    fn disk_usage_sums_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("y"), [0u8; 23]).unwrap();
        assert_eq!(disk_usage(dir.path()), 123);
        assert_eq!(disk_usage(&dir.path().join("missing")), 0);
    }
}
