//! The Raft thread's inbox: a queue every other thread puts [`NodeMsg`]s
//! into, and a doorbell (an eventfd) that wakes the Raft thread out of the
//! one `ppoll` it sleeps in, together with the sockets of its incoming Raft
//! lanes ([`crate::peer::lane::Incoming`]).
//!
//! One sleep for both means a peer's message wakes the Raft thread itself,
//! with no reader thread handing it over; and the thread blocks in the
//! kernel at once, where a channel's receive spins and yields first (which
//! showed as a tenth of a two-core machine's time at one client).
//!
//! A sender rings the doorbell only when the Raft thread said it is about
//! to sleep (`armed`): while it is busy, sending costs a queue push and one
//! atomic load.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, TryRecvError};
use raft::prelude::{ConfChange, Message};
use tokio::sync::oneshot;

use crate::error::Result;
use crate::peer::RaftSink;
use crate::peer::lane::Incoming;

/// What the Raft thread is asked to do.
pub enum NodeMsg {
    /// Propose an encoded `InternalRequest`; `id` finds its waiter.
    Propose { id: u64, data: Vec<u8> },
    /// Confirm leadership for a linearizable read; answers once the read may
    /// be served (this member has applied everything committed before it).
    ReadIndex(oneshot::Sender<Result<()>>),
    /// A message from a peer.
    Step(Message),
    /// A peer could not be reached.
    Unreachable(u64),
    /// A snapshot sent to a peer arrived (true) or failed (false).
    SnapshotStatus(u64, bool),
    /// Propose a membership change; `id` finds its waiter.
    ProposeConfChange { id: u64, cc: ConfChange },
    /// On the leader: whether learner `id` has caught up enough to be
    /// promoted (`None` on a follower, which cannot tell).
    LearnerReady { id: u64, reply: oneshot::Sender<Option<bool>> },
    /// The peers connected to this member, each with the time its lane opened
    /// (etcd's transport `ActiveSince`), for `--strict-reconfig-check`.
    ActivePeers(oneshot::Sender<Vec<(u64, std::time::Instant)>>),
    /// Hand leadership to this member.
    TransferLeader(u64),
    /// The WAL finished a write the loop waits on: look at its tickets.
    WalProgress,
    /// A peer's Raft lane, its hello answered: the loop reads it from now on.
    Lane(Box<Incoming>),
    /// Shut down.
    Stop,
}

struct Doorbell {
    fd: OwnedFd,
    /// Set by the Raft thread just before it sleeps.
    armed: AtomicBool,
}

impl Doorbell {
    fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to an eventfd we own. A
        // full counter (EAGAIN) already means "wake up".
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    fn clear(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from an eventfd
        // we own (non-blocking: EAGAIN when not rung).
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }
}

/// The Raft thread is gone: the inbox takes nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// The sending side; clone it freely.
#[derive(Clone)]
pub struct Inbox {
    tx: Sender<NodeMsg>,
    bell: Arc<Doorbell>,
}

/// The Raft thread's side.
pub struct InboxReceiver {
    rx: Receiver<NodeMsg>,
    bell: Arc<Doorbell>,
}

/// A new inbox.
pub fn inbox() -> io::Result<(Inbox, InboxReceiver)> {
    // SAFETY: eventfd takes no pointers; a negative result is an error.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let bell = Arc::new(Doorbell { fd, armed: AtomicBool::new(false) });
    let (tx, rx) = crossbeam::channel::unbounded();
    Ok((Inbox { tx, bell: bell.clone() }, InboxReceiver { rx, bell }))
}

impl Inbox {
    /// Queues `msg` and wakes the Raft thread if it sleeps. Fails only when
    /// the Raft thread is gone.
    pub fn send(&self, msg: NodeMsg) -> Result<(), Closed> {
        self.tx.send(msg).map_err(|_| Closed)?;
        // Pairs with the fence in `wait`: either the Raft thread sees the
        // message before sleeping, or we see it armed and ring.
        fence(Ordering::SeqCst);
        if self.bell.armed.load(Ordering::Relaxed) && self.bell.armed.swap(false, Ordering::AcqRel)
        {
            self.bell.ring();
        }
        Ok(())
    }
}

impl InboxReceiver {
    /// The next queued message, without waiting.
    pub fn try_recv(&self) -> Result<NodeMsg, TryRecvError> {
        self.rx.try_recv()
    }

    /// True when no message is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Sleeps until a message is queued, a socket in `fds[1..]` is ready
    /// (their `revents` say which), or `timeout` passes. `fds[0]` is the
    /// doorbell's slot, filled in here. A zero timeout only looks.
    pub fn wait(&self, fds: &mut [libc::pollfd], timeout: Duration) {
        fds[0] = libc::pollfd { fd: self.bell.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let mut timeout = timeout;
        if !timeout.is_zero() {
            self.bell.armed.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if !self.rx.is_empty() {
                timeout = Duration::ZERO;
            }
        }
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `fds` is a valid, exclusively borrowed pollfd array and `ts`
        // a live timespec, for the duration of the call.
        let n = unsafe {
            libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null())
        };
        self.bell.armed.store(false, Ordering::Relaxed);
        if n > 0 && fds[0].revents != 0 {
            self.bell.clear();
        }
        if n < 0 {
            // EINTR (or a bad descriptor, which the caller's reads will
            // report): clear stale readiness so nothing is read on its say.
            for f in fds.iter_mut() {
                f.revents = 0;
            }
        }
    }
}

/// The peer side hands what it receives to Raft through the inbox.
impl RaftSink for Inbox {
    fn step(&self, m: Message) -> bool {
        self.send(NodeMsg::Step(m)).is_ok()
    }

    fn unreachable(&self, peer: u64) {
        let _ = self.send(NodeMsg::Unreachable(peer));
    }

    fn snapshot_status(&self, peer: u64, delivered: bool) {
        let _ = self.send(NodeMsg::SnapshotStatus(peer, delivered));
    }

    fn lane(&self, lane: Incoming) {
        let _ = self.send(NodeMsg::Lane(Box::new(lane)));
    }

    fn stop(&self) {
        let _ = self.send(NodeMsg::Stop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn empty() -> Vec<libc::pollfd> {
        vec![libc::pollfd { fd: -1, events: 0, revents: 0 }]
    }

    #[test]
    fn a_message_sent_while_sleeping_wakes_the_receiver() {
        let (tx, rx) = inbox().unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send(NodeMsg::WalProgress).unwrap();
            tx
        });
        let mut fds = empty();
        let start = Instant::now();
        let mut got = false;
        // Bounded: a lost wake-up would leave the loop after 20 s of waits.
        while start.elapsed() < Duration::from_secs(20) {
            rx.wait(&mut fds, Duration::from_secs(10));
            if let Ok(NodeMsg::WalProgress) = rx.try_recv() {
                got = true;
                break;
            }
        }
        assert!(got, "the message never arrived");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the sender's ring did not wake the wait"
        );
        drop(sender.join().unwrap());
    }

    #[test]
    fn a_message_queued_before_the_wait_is_not_slept_on() {
        let (tx, rx) = inbox().unwrap();
        tx.send(NodeMsg::Stop).unwrap();
        let mut fds = empty();
        let start = Instant::now();
        rx.wait(&mut fds, Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(30));
        assert!(matches!(rx.try_recv(), Ok(NodeMsg::Stop)));
    }

    #[test]
    fn many_senders_lose_no_wake_up() {
        let (tx, rx) = inbox().unwrap();
        let per = 2000;
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        tx.send(NodeMsg::Unreachable(i)).unwrap();
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut fds = empty();
        let mut got = 0;
        let mut slept_through = 0;
        let start = Instant::now();
        // Every wait is long: a lost wake-up shows as a wait that ran to its
        // timeout although a message was queued during it.
        while got < 4 * per && start.elapsed() < Duration::from_secs(60) {
            let before = Instant::now();
            rx.wait(&mut fds, Duration::from_secs(5));
            let full = before.elapsed() >= Duration::from_secs(5);
            let mut n = 0;
            while rx.try_recv().is_ok() {
                n += 1;
            }
            if full && n > 0 {
                slept_through += 1;
            }
            got += n;
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(got, 4 * per);
        assert_eq!(slept_through, 0, "a wait slept through queued messages");
    }

    #[test]
    fn a_ready_socket_ends_the_wait() {
        let (_tx, rx) = inbox().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut fds = empty();
        fds.push(libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        let start = Instant::now();
        rx.wait(&mut fds, Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_ne!(fds[1].revents & libc::POLLIN, 0);
    }
}
