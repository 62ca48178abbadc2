//! Namespace mode: every member on a host of its own, the network faults made by the kernel.
//!
//! A lab is a set of network namespaces named `lbrob-<test pid>-<n>-<role>`: one per member
//! slot (`m1`, `m2`, ...), one for the clients (`cl`) and one holding the bridge that joins
//! them (`br`). Each member or client namespace has one veth (`eth0`) whose other end is a
//! port of the bridge; both ends are created directly inside the lab's namespaces, so the
//! host's own interfaces, addresses and routes are never touched. Addresses are
//! `10.88.0.<slot + 1>` for members and `10.88.0.100` for the clients, inside the lab only
//! (each lab has its own bridge, so labs of concurrent tests do not meet).
//!
//! Faults, per member namespace:
//! - partitions (two-way and one-way): nftables `drop` rules in the namespace's own
//!   `inet lbrob` table (`drop`, never `reject`: connections hang, as on a real network);
//! - loss: netem's `loss` where the kernel has netem, else an nftables
//!   `numgen random mod 100 < N drop` rule on the peer traffic;
//! - delay, jitter, reordering and duplication: netem where the kernel has it. Kernels
//!   without netem (this project's CI VM: no modules, no `sch_netem`) get delay and jitter
//!   from a userspace relay per directed peer link living inside the dialing member's
//!   namespace (see [`super::proxy`]): the bytes still cross the veth and the nftables rules,
//!   only the delay is added in userspace; reordering and duplication are then not made;
//! - bandwidth: a `tbf` qdisc on the member's veth.
//!
//! Every lab is removed when dropped (namespaces, and with them their veths, bridge, rules
//! and qdiscs); labs of test processes that no longer run (a run killed before its drop)
//! are removed, with whatever still runs inside them, when the next lab is created.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Prefix of every namespace a lab creates.
const PREFIX: &str = "lbrob-";
/// The members' subnet (inside a lab only).
const SUBNET: &str = "10.88.0";
/// The clients' address.
pub const CLIENT_IP: &str = "10.88.0.100";

/// One member's host: its namespace and address.
pub struct Host {
    pub ns: String,
    pub ip: String,
}

pub struct Lab {
    pub hosts: Vec<Host>,
    pub client_ns: String,
    bridge_ns: String,
    /// Whether the kernel has the netem qdisc.
    pub netem: bool,
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; ")
        ))
    }
}

/// Runs `program args` inside namespace `ns`.
fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    ip(&all)
}

/// Moves the calling thread into namespace `ns` (threads it starts afterwards are born
/// there too).
pub fn enter(ns: &str) -> Result<(), String> {
    let f = File::open(format!("/run/netns/{ns}")).map_err(|e| format!("open netns {ns}: {e}"))?;
    // SAFETY: setns(2) on a namespace file descriptor we hold open; it only changes this
    // thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 { Ok(()) } else { Err(format!("setns {ns}: {}", std::io::Error::last_os_error())) }
}

/// Why namespace mode cannot run here, or None when it can (root, `ip`, `nft`).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for program in ["ip", "nft", "tc"] {
        let found = Command::new(program)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("{program} is not installed"));
        }
    }
    None
}

/// Removes the labs of test processes that no longer run, and whatever still runs in them
/// (members an earlier run started and could not stop).
pub fn clean_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        remove_ns(name);
    }
}

/// Kills what runs in `ns` (only ever a lab's own members) and deletes it.
fn remove_ns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2); the process lives in a namespace only this harness creates.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

impl Lab {
    /// Creates a lab with `slots` member hosts and a client namespace.
    pub fn create(slots: usize) -> Result<Lab, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        clean_stale();
        let base =
            format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let mut lab = Lab {
            hosts: Vec::new(),
            client_ns: format!("{base}-cl"),
            bridge_ns: format!("{base}-br"),
            netem: false,
        };
        // Dropping `lab` on an error removes whatever was already made.
        ip(&["netns", "add", &lab.bridge_ns])?;
        ip(&["-n", &lab.bridge_ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lab.bridge_ns, "link", "set", "br0", "up"])?;
        let mut ends = Vec::new();
        for i in 0..slots {
            let host = Host { ns: format!("{base}-m{}", i + 1), ip: format!("{SUBNET}.{}", i + 1) };
            ends.push((host.ns.clone(), host.ip.clone(), format!("v{}", i + 1)));
            lab.hosts.push(host);
        }
        ends.push((lab.client_ns.clone(), CLIENT_IP.to_string(), "vcl".to_string()));
        for (ns, addr, port) in &ends {
            ip(&["netns", "add", ns])?;
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                &lab.bridge_ns,
            ])?;
            ip(&["-n", &lab.bridge_ns, "link", "set", port, "master", "br0"])?;
            ip(&["-n", &lab.bridge_ns, "link", "set", port, "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for h in &lab.hosts {
            in_ns(&h.ns, "nft", &["add", "table", "inet", "lbrob"])?;
            in_ns(
                &h.ns,
                "nft",
                &["add chain inet lbrob out { type filter hook output priority 0 ; }"],
            )?;
            in_ns(
                &h.ns,
                "nft",
                &["add chain inet lbrob in { type filter hook input priority 0 ; }"],
            )?;
        }
        // netem where the kernel has it (tried on a member's veth, then removed).
        let ns0 = lab.hosts[0].ns.clone();
        lab.netem =
            in_ns(&ns0, "tc", &["qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms"])
                .is_ok();
        if lab.netem {
            in_ns(&ns0, "tc", &["qdisc", "del", "dev", "eth0", "root"])?;
        }
        Ok(lab)
    }

    fn nft(&self, slot: usize, rule: &str) {
        let ns = &self.hosts[slot].ns;
        if let Err(e) = in_ns(ns, "nft", &[rule]) {
            panic!("nftables in {ns}: {e}");
        }
    }

    fn tc(&self, slot: usize, args: &[&str]) {
        let ns = &self.hosts[slot].ns;
        if let Err(e) = in_ns(ns, "tc", args) {
            panic!("tc in {ns}: {e}");
        }
    }

    /// Drops every packet member `from` sends to member `to` (one direction of the link).
    pub fn cut(&self, from: usize, to: usize) {
        self.nft(from, &format!("add rule inet lbrob out ip daddr {} drop", self.hosts[to].ip));
    }

    /// Loses `percent`% of the peer packets member `slot` sends and receives.
    pub fn loss(&self, slot: usize, percent: u32) {
        if self.netem {
            self.tc(
                slot,
                &[
                    "qdisc",
                    "replace",
                    "dev",
                    "eth0",
                    "root",
                    "netem",
                    "loss",
                    &format!("{percent}%"),
                ],
            );
            return;
        }
        for (chain, dir) in [("out", "daddr"), ("in", "saddr")] {
            self.nft(
                slot,
                &format!(
                    "add rule inet lbrob {chain} ip {dir} {SUBNET}.0/24 ip {dir} != {CLIENT_IP} \
                     numgen random mod 100 < {percent} drop"
                ),
            );
        }
    }

    /// netem delay with jitter, reordering and duplication on everything member `slot`
    /// sends. Only with netem (see [`Lab::netem`]).
    pub fn netem_delay(&self, slot: usize, delay_ms: u64, jitter_ms: u64) {
        assert!(self.netem, "the kernel has no netem");
        self.tc(
            slot,
            &[
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "netem",
                "delay",
                &format!("{delay_ms}ms"),
                &format!("{jitter_ms}ms"),
                "reorder",
                "5%",
                "duplicate",
                "1%",
            ],
        );
    }

    /// Limits what member `slot` sends to `kbit` kbit/s (tbf).
    pub fn bandwidth(&self, slot: usize, kbit: u32) {
        self.tc(
            slot,
            &[
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "tbf",
                "rate",
                &format!("{kbit}kbit"),
                "burst",
                "16kb",
                "latency",
                "300ms",
            ],
        );
    }

    /// Removes every fault: the nftables rules and the qdiscs.
    pub fn heal(&self) {
        for slot in 0..self.hosts.len() {
            self.nft(slot, "flush table inet lbrob");
            // Absent when no qdisc fault was set: nothing to remove.
            let _ = in_ns(&self.hosts[slot].ns, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            remove_ns(&h.ns);
        }
        remove_ns(&self.client_ns);
        remove_ns(&self.bridge_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In namespace `ns`, on a thread of its own (the calling thread keeps its namespace).
    fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = ns.to_string();
        std::thread::spawn(move || {
            enter(&ns).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// The lab's plumbing: members reach each other by TCP, a cut drops one direction so
    /// that a connection hangs (times out) instead of being refused, heal restores it, and
    /// nothing is left once the lab is dropped.
    #[test]
    fn lab_cuts_one_direction_and_cleans_up() {
        use std::net::{SocketAddr, TcpListener, TcpStream};
        use std::time::Duration;
        if let Some(why) = unavailable() {
            eprintln!("namespace mode unavailable ({why}); skipped");
            return;
        }
        let lab = Lab::create(2).expect("creating a lab");
        let addr: SocketAddr = format!("{}:7000", lab.hosts[1].ip).parse().unwrap();
        let listener = within(&lab.hosts[1].ns, move || TcpListener::bind(addr).unwrap());
        let dial = |lab: &Lab| {
            within(&lab.hosts[0].ns, move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(700)).map(drop)
            })
        };
        dial(&lab).expect("m1 cannot reach m2");
        lab.cut(0, 1);
        let err = dial(&lab).expect_err("a cut link still carries packets");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "a cut must hang, not reset");
        lab.heal();
        lab.cut(1, 0);
        // The SYN arrives, the SYN-ACK is dropped: one-way, and still a hang.
        let err = dial(&lab).expect_err("a link cut the other way still completes handshakes");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        lab.heal();
        dial(&lab).expect("the link did not heal");
        drop(listener);
        let names: Vec<String> = lab
            .hosts
            .iter()
            .map(|h| h.ns.clone())
            .chain([lab.client_ns.clone(), lab.bridge_ns.clone()])
            .collect();
        drop(lab);
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        for n in names {
            assert!(!list.contains(&n), "namespace {n} left behind");
        }
    }
}
