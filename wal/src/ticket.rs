//! Durability tickets: how an appender learns its records reached the disk.
//!
//! Every call that changes the log gets the next *operation sequence number*. The writer thread
//! publishes the highest sequence number whose bytes are durable in one atomic
//! ([`Durability::durable`]); a ticket is complete once that number reaches its own. Checking is
//! one atomic load, so a waiter that arrives late pays nothing. Waiters that must sleep register
//! a thread handle (blocking [`Ticket::wait`]) or a [`Waker`] (`.await`) in one short list; the
//! writer wakes exactly those whose sequence number is covered, after each fsync.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// A sleeping waiter.
pub(crate) enum Wake {
    Thread(Thread),
    Waker(Waker),
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Thread(t) => t.unpark(),
            Wake::Waker(w) => w.wake(),
        }
    }
}

/// How the first failed write or fsync went wrong, kept so waiting tickets can report it.
#[derive(Debug)]
struct Failure {
    kind: io::ErrorKind,
    os_code: Option<i32>,
    message: String,
}

/// Durability progress shared by the writer thread and every ticket.
pub(crate) struct Durability {
    /// Highest operation sequence number whose bytes are durable.
    durable: AtomicU64,
    /// Set when a write or fsync failed: nothing after `durable` will ever complete.
    failed: AtomicBool,
    failure: Mutex<Option<Failure>>,
    /// Sleeping waiters with the sequence number each waits for.
    waiters: Mutex<Vec<(u64, Wake)>>,
}

impl Durability {
    pub(crate) fn new(durable: u64) -> Self {
        Durability {
            durable: AtomicU64::new(durable),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            waiters: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// `Some` once the operation `seq` is durable or can never be.
    fn outcome(&self, seq: u64) -> Option<Result<()>> {
        if self.durable.load(Ordering::Acquire) >= seq {
            return Some(Ok(()));
        }
        if self.failed.load(Ordering::Acquire) {
            return Some(Err(self.failure_error()));
        }
        None
    }

    /// The error a ticket that can never complete reports: the original I/O error.
    pub(crate) fn failure_error(&self) -> Error {
        match &*self.failure.lock() {
            Some(Failure { os_code: Some(code), .. }) => {
                Error::from_io(io::Error::from_raw_os_error(*code))
            }
            Some(f) => Error::from_io(io::Error::new(f.kind, f.message.clone())),
            None => Error::Poisoned,
        }
    }

    /// Registers `wake` unless `seq` is already decided; `Some` if it is.
    fn register(&self, seq: u64, wake: Wake) -> Option<Result<()>> {
        let mut w = self.waiters.lock();
        // Checked under the lock: the writer publishes before taking it, so either we see the
        // new value here or the writer sees our entry.
        if let Some(r) = self.outcome(seq) {
            return Some(r);
        }
        w.push((seq, wake));
        None
    }

    /// Writer side: everything up to `seq` is durable. `scratch` is the writer's reusable
    /// buffer, so waking allocates nothing.
    pub(crate) fn complete(&self, seq: u64, scratch: &mut Vec<Wake>) {
        self.durable.store(seq, Ordering::Release);
        {
            let mut w = self.waiters.lock();
            let mut i = 0;
            while i < w.len() {
                if w[i].0 <= seq {
                    scratch.push(w.swap_remove(i).1);
                } else {
                    i += 1;
                }
            }
        }
        for wake in scratch.drain(..) {
            wake.wake();
        }
    }

    /// Writer side: a write or fsync failed; nothing after `durable` completes, ever.
    pub(crate) fn fail(&self, e: &io::Error) {
        {
            let mut f = self.failure.lock();
            if f.is_none() {
                *f = Some(Failure {
                    kind: e.kind(),
                    os_code: e.raw_os_error(),
                    message: e.to_string(),
                });
            }
        }
        self.failed.store(true, Ordering::Release);
        let all = std::mem::take(&mut *self.waiters.lock());
        for (_, wake) in all {
            wake.wake();
        }
    }
}

/// Completes when the records of one call, and everything submitted before them, are durable.
///
/// Block on it with [`Ticket::wait`] or `.await` it. Dropping it does not cancel anything: the
/// records are written either way.
#[must_use = "records are only known durable once the ticket completes"]
pub struct Ticket {
    durability: Arc<Durability>,
    seq: u64,
    first_index: u64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("seq", &self.seq)
            .field("first_index", &self.first_index)
            .finish()
    }
}

impl Ticket {
    pub(crate) fn new(durability: Arc<Durability>, seq: u64, first_index: u64) -> Self {
        Ticket { durability, seq, first_index }
    }

    /// Index of the first record of the call that produced this ticket. For calls without
    /// records (hard state, truncation) the index the next appended record gets.
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// True once [`Ticket::wait`] would return at once.
    pub fn is_complete(&self) -> bool {
        self.durability.outcome(self.seq).is_some()
    }

    /// Blocks until durable. An error means the log failed (and is now poisoned): the records
    /// may or may not be on disk.
    pub fn wait(self) -> Result<()> {
        let d = &self.durability;
        if let Some(r) = d.outcome(self.seq) {
            return r;
        }
        if let Some(r) = d.register(self.seq, Wake::Thread(std::thread::current())) {
            return r;
        }
        loop {
            std::thread::park();
            if let Some(r) = d.outcome(self.seq) {
                return r;
            }
        }
    }
}

impl Future for Ticket {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let d = &self.durability;
        if let Some(r) = d.outcome(self.seq) {
            return Poll::Ready(r);
        }
        match d.register(self.seq, Wake::Waker(cx.waker().clone())) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake as _;

    struct Flag(AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn wait_returns_after_complete() {
        let d = Arc::new(Durability::new(0));
        let t = Ticket::new(d.clone(), 3, 1);
        assert!(!t.is_complete());
        let h = std::thread::spawn(move || t.wait());
        // Completing 2 must not release seq 3; completing 3 must.
        let mut scratch = Vec::new();
        d.complete(2, &mut scratch);
        d.complete(3, &mut scratch);
        h.join().unwrap().unwrap();
    }

    #[test]
    fn poll_registers_waker_and_is_woken() {
        let d = Arc::new(Durability::new(0));
        let mut t = Ticket::new(d.clone(), 1, 1);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut t).poll(&mut cx).is_pending());
        d.complete(1, &mut Vec::new());
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(matches!(Pin::new(&mut t).poll(&mut cx), Poll::Ready(Ok(()))));
        flag.clone().wake_by_ref();
    }

    #[test]
    fn failure_reaches_waiters_with_the_cause() {
        let d = Arc::new(Durability::new(5));
        let done = Ticket::new(d.clone(), 5, 1);
        let t = Ticket::new(d.clone(), 6, 1);
        let h = std::thread::spawn(move || t.wait());
        d.fail(&io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(h.join().unwrap(), Err(Error::DiskFull)));
        done.wait().unwrap();
    }
}
