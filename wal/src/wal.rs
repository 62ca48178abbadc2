//! [`Wal`], the public face: open (recover), append, truncate, compact, read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::backend::{self, Backend};
use crate::codec::{self, MAX_RECORD_LEN, Record};
use crate::error::{Error, Result};
use crate::group_commit::{Kick, Op, Queue, WakeWriter, Writer};
use crate::hard_state::HardState;
use crate::io::{OsStorage, SegmentFile, Storage, read_full_at, write_all_at};
use crate::layout::{Layout, Loc};
use crate::recovery;
use crate::segment::{self, Preallocator, Segment};
use crate::ticket::{Durability, Ticket};

/// Most bytes one call may append (all its frames together).
pub const MAX_CALL_BYTES: usize = 1 << 30;
/// Smallest allowed segment size.
pub const MIN_SEGMENT_SIZE: u64 = 1024;
/// Largest allowed segment size (offsets are kept in 32 bits).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;

/// How to open a [`Wal`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Size segment files are preallocated to (default 64 MiB). A batch that does not fit in
    /// the rest of a segment starts the next one; a single batch larger than a segment makes
    /// its segment larger.
    pub segment_size: u64,
    /// A batch stops taking records once it holds this many bytes (default 4 MiB): the
    /// bound on one write.
    pub max_batch_bytes: usize,
    /// How writes and fsyncs are issued.
    pub backend: Backend,
}

impl Default for Options {
    fn default() -> Self {
        Options { segment_size: 64 << 20, max_batch_bytes: 4 << 20, backend: Backend::Auto }
    }
}

/// State shared by the `Wal` handle, the writer thread and readers.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) options: Options,
    pub(crate) queue: Mutex<Queue>,
    /// Signalled when a batch is queued (or on shutdown); the writer waits on it.
    pub(crate) work: Condvar,
    /// Fired instead of `work` while the writer waits for a write in flight (see
    /// `group_commit`'s module doc); `None` for backends that do not pipeline.
    pub(crate) kick: Option<Arc<Kick>>,
    pub(crate) layout: RwLock<Layout>,
    pub(crate) durability: Arc<Durability>,
    /// Latest durable hard state.
    pub(crate) hard_state: Mutex<HardState>,
    pub(crate) stats: StatCounters,
}

/// Counters the writer bumps after each commit.
#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    pub(crate) commits: AtomicU64,
    pub(crate) entries: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) segments_rolled: AtomicU64,
    pub(crate) overlapped: AtomicU64,
    pub(crate) sync_nanos: AtomicU64,
    pub(crate) sync_buckets: [AtomicU64; SYNC_BUCKETS],
    pub(crate) records_buckets: [AtomicU64; RECORDS_BUCKETS],
}

/// Buckets of [`Stats::sync_buckets`]: bucket `i < SYNC_BUCKETS - 1` counts
/// commits whose write + fdatasync took at most `2^i / 1024` ms (about 1 us,
/// 2 us, ..., 1 ms at `i = 10`, ..., 8.192 s: etcd's fsync buckets with ten
/// finer ones below); the last counts the slower ones.
pub const SYNC_BUCKETS: usize = 25;
/// Buckets of [`Stats::records_buckets`]: bucket `i < RECORDS_BUCKETS - 1`
/// counts commits of at most `2^i` records (and more than `2^(i-1)`); the
/// last counts the larger ones.
pub const RECORDS_BUCKETS: usize = 17;

impl StatCounters {
    /// Counts one commit of `records` records that took `took`: two relaxed
    /// increments and an add, after the fdatasync.
    pub(crate) fn observe_commit(&self, took: std::time::Duration, records: u64) {
        let nanos = took.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.sync_nanos.fetch_add(nanos, Ordering::Relaxed);
        let units = nanos.saturating_mul(1024).div_ceil(1_000_000);
        self.sync_buckets[log2_ceil(units).min(SYNC_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.records_buckets[log2_ceil(records).min(RECORDS_BUCKETS - 1)]
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The smallest `i` with `n <= 2^i`.
fn log2_ceil(n: u64) -> usize {
    if n <= 1 { 0 } else { (64 - (n - 1).leading_zeros()) as usize }
}

/// What the writer has done since open: for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Batches committed, each one write (two at a roll-over) and one fdatasync.
    pub commits: u64,
    /// Entries made durable.
    pub entries: u64,
    /// Bytes written (frames, including preambles of new segments).
    pub bytes: u64,
    /// New segments started.
    pub segments_rolled: u64,
    /// Batches submitted while an earlier one was still in flight (pipelining backends).
    pub overlapped: u64,
    /// Time spent in commits' write + fdatasync, in nanoseconds.
    pub sync_nanos: u64,
    /// Commits by duration (see [`SYNC_BUCKETS`]); not cumulative.
    pub sync_buckets: [u64; SYNC_BUCKETS],
    /// Commits by records made durable (see [`RECORDS_BUCKETS`]); not cumulative.
    pub records_buckets: [u64; RECORDS_BUCKETS],
}

/// A write-ahead log of opaque records with consecutive indexes, plus a hard state.
///
/// `Send + Sync`: share it as `Arc<Wal>`. Any number of threads may append at once; their
/// records are group-committed by one writer thread. Dropping the `Wal` finishes writing
/// what was queued and stops the writer.
pub struct Wal {
    shared: Arc<Shared>,
    /// The writer's state, held by whoever is committing.
    core: Arc<Mutex<Writer>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    backend_name: &'static str,
    backend: Backend,
    backend_note: String,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("backend", &self.backend_name)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .finish()
    }
}

impl Wal {
    /// Opens the log in `dir` (created if missing), recovering what is there.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Wal> {
        #[cfg(feature = "failpoints")]
        {
            let mut storage: Option<Arc<dyn Storage>> = None;
            if crate::failpoint::power_loss_enabled() {
                storage = Some(Arc::new(crate::failpoint::VolatileStorage));
            }
            if let Some(control) = crate::failpoint::eio_control() {
                let inner = storage.take().unwrap_or_else(|| Arc::new(OsStorage));
                storage = Some(Arc::new(crate::failpoint::EioStorage::new(inner, control)));
            }
            if let Some(storage) = storage {
                return Self::open_with_storage(dir, options, storage);
            }
        }
        Self::open_with_storage(dir, options, Arc::new(OsStorage))
    }

    /// [`Wal::open`] on another [`Storage`] (tests use [`crate::sim::SimStorage`]).
    pub fn open_with_storage(
        dir: impl AsRef<Path>,
        options: Options,
        storage: Arc<dyn Storage>,
    ) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&options.segment_size) {
            return Err(Error::Config(format!(
                "segment_size {} is outside [{MIN_SEGMENT_SIZE}, {MAX_SEGMENT_SIZE}]",
                options.segment_size
            )));
        }
        if options.max_batch_bytes == 0 {
            return Err(Error::Config("max_batch_bytes must be positive".into()));
        }
        storage.create_dir_all(&dir)?;
        let rec = recovery::recover(&*storage, &dir)?;
        let selected =
            backend::select(options.backend, &dir, storage.has_fds()).map_err(Error::Config)?;
        let io = selected.io;
        let mut layout = rec.layout;
        let (active, pos) = match layout.segments.back() {
            Some(s) => (s.clone(), rec.active_pos),
            None => {
                let s = create_first_segment(
                    &*storage,
                    &dir,
                    &options,
                    io.zero_filled_segments(),
                    rec.fresh_seq,
                    rec.fresh_first_index,
                    rec.hard_state,
                )?;
                layout.segments.push_back(s.clone());
                (s, crate::group_commit::PREAMBLE_LEN)
            }
        };
        if io.zero_filled_segments() {
            zero_fill_rest(&*active.file, pos)?;
        }
        let backend_name = io.name();
        let backend = io.backend();
        let backend_note = selected.note;
        tracing::info!(
            dir = %dir.display(),
            asked = %options.backend,
            backend = %backend,
            how = backend_name,
            note = %backend_note,
            "wal: opened"
        );

        let (first, next) = (layout.index.first(), layout.index.next());
        let prealloc = Preallocator::start(
            storage.clone(),
            dir.clone(),
            options.segment_size,
            io.zero_filled_segments(),
        )?;
        let shared = Arc::new(Shared {
            dir,
            storage,
            queue: Mutex::new(Queue::new(first, next, options.max_batch_bytes)),
            options,
            work: Condvar::new(),
            kick: io.kick(),
            layout: RwLock::new(layout),
            durability: Arc::new(Durability::new(0)),
            hard_state: Mutex::new(rec.hard_state),
            stats: StatCounters::default(),
        });
        let core = Arc::new(Mutex::new(Writer::new(
            shared.clone(),
            io,
            prealloc,
            active,
            pos,
            rec.hard_state,
        )));
        let (thread_shared, thread_core) = (shared.clone(), core.clone());
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || Writer::run(thread_shared, thread_core))?;
        Ok(Wal {
            shared,
            core,
            writer: Mutex::new(Some(handle)),
            backend_name,
            backend,
            backend_note,
        })
    }

    /// Which backend the writer uses, in words.
    pub fn backend_name(&self) -> &'static str {
        self.backend_name
    }

    /// Which backend the writer uses (never [`Backend::Auto`]: what it chose).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How the backend was chosen: for [`Backend::Auto`], what the probe measured; for a
    /// fallback, why; else what the device means for it (may be empty).
    pub fn backend_note(&self) -> &str {
        &self.backend_note
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends records; the WAL assigns indexes `last_index()+1, +2, ...` in order.
    /// Returns a ticket that completes when these records (and everything submitted before
    /// them) are durable.
    pub fn append(&self, records: &[&[u8]]) -> Result<Ticket> {
        self.append_with_state(records, None)
    }

    /// [`Wal::append`], plus a hard state persisted in the same group commit.
    pub fn append_with_state(
        &self,
        records: &[&[u8]],
        hard_state: Option<HardState>,
    ) -> Result<Ticket> {
        let (ticket, wake) = self.enqueue(records, hard_state)?;
        self.wake_writer(wake);
        Ok(ticket)
    }

    /// Tells the writer that work was queued, the way [`Queue::wake_for_new_work`] said.
    fn wake_writer(&self, how: WakeWriter) {
        match how {
            WakeWriter::Condvar => {
                self.shared.work.notify_one();
            }
            WakeWriter::Kick => match &self.shared.kick {
                Some(k) => k.fire(),
                None => unreachable!("the writer waits on a completion without a kick"),
            },
            WakeWriter::Nothing => {}
        }
    }

    /// [`Wal::append_with_state`] for a caller with nothing else to do meanwhile: when no
    /// commit is in progress, the calling thread writes and fdatasyncs everything queued
    /// itself, and the ticket is complete (or failed) on return; otherwise the records go to
    /// the writer thread as usual. Committing in place saves the two thread hand-offs (to
    /// the writer and back) that one write at a time otherwise pays.
    pub fn append_with_state_now(
        &self,
        records: &[&[u8]],
        hard_state: Option<HardState>,
    ) -> Result<Ticket> {
        let (ticket, wake) = self.enqueue(records, hard_state)?;
        match self.core.try_lock() {
            // A failure poisons the log and reaches the caller through the ticket.
            Some(mut writer) => {
                let _ = writer.drain();
            }
            None => self.wake_writer(wake),
        }
        Ok(ticket)
    }

    /// Queues records (and a hard state) for the next group commit; also says how to wake
    /// the writer.
    fn enqueue(
        &self,
        records: &[&[u8]],
        hard_state: Option<HardState>,
    ) -> Result<(Ticket, WakeWriter)> {
        let mut bytes = 0usize;
        for r in records {
            if r.len() > MAX_RECORD_LEN {
                return Err(Error::TooLarge { len: r.len(), max: MAX_RECORD_LEN });
            }
            bytes = bytes.saturating_add(codec::entry_frame_len(r.len()));
        }
        if bytes > MAX_CALL_BYTES {
            return Err(Error::TooLarge { len: bytes, max: MAX_CALL_BYTES });
        }
        if hard_state.is_some() {
            bytes += codec::FRAME_HEADER_LEN + 24;
        }
        let mut q = self.lock_queue()?;
        let first_index = q.next;
        if bytes == 0 {
            let t = Ticket::new(self.shared.durability.clone(), q.seq, first_index);
            return Ok((t, WakeWriter::Nothing));
        }
        let mut index = q.next;
        q.seq += 1;
        let seq = q.seq;
        let batch = q.batch_for(bytes);
        for r in records {
            let off = batch.bytes.len();
            codec::encode_entry(index, r, &mut batch.bytes);
            batch.ops.push(Op::Entry { index, off: off as u32, len: r.len() as u32 });
            index += 1;
        }
        if let Some(hs) = hard_state {
            codec::encode(&Record::HardState(hs), &mut batch.bytes);
            batch.ops.push(Op::HardState(hs));
        }
        batch.last_seq = seq;
        q.next = index;
        let wake = q.wake_for_new_work();
        drop(q);
        Ok((Ticket::new(self.shared.durability.clone(), seq, first_index), wake))
    }

    /// Persists a hard state (in the next group commit).
    pub fn set_hard_state(&self, hs: HardState) -> Result<Ticket> {
        self.append_with_state(&[], Some(hs))
    }

    /// Drops every record with index `>= index` (a new Raft leader overwrote the tail); the
    /// next append gets `index`. Durable via its ticket. `index` must be in
    /// `1..=last_index() + 1` (the upper end changes nothing).
    pub fn truncate_suffix(&self, index: u64) -> Result<Ticket> {
        let mut q = self.lock_queue()?;
        if index > q.next || index == 0 {
            return Err(Error::OutOfRange { lo: index, hi: index, first: q.first, next: q.next });
        }
        if index == q.next {
            return Ok(Ticket::new(self.shared.durability.clone(), q.seq, index));
        }
        let ticket = self.push_control(&mut q, Record::Truncate { index }, Op::Truncate(index));
        q.next = index;
        q.first = q.first.min(index);
        let wake = q.wake_for_new_work();
        drop(q);
        self.wake_writer(wake);
        Ok(ticket)
    }

    /// Queues a truncation or compaction record; the caller updates `first`/`next`.
    fn push_control(&self, q: &mut Queue, record: Record<'_>, op: Op) -> Ticket {
        q.seq += 1;
        let seq = q.seq;
        let index = match op {
            Op::Truncate(i) | Op::Compact(i) => i,
            _ => unreachable!("control records are truncations and compactions"),
        };
        q.rewrite_floor = if self.shared.durability.durable() >= q.rewrite_seq {
            index
        } else {
            q.rewrite_floor.min(index)
        };
        q.rewrite_seq = seq;
        let next = q.next;
        let batch = q.batch_for(codec::FRAME_HEADER_LEN + 8);
        codec::encode(&record, &mut batch.bytes);
        batch.ops.push(op);
        batch.last_seq = seq;
        Ticket::new(self.shared.durability.clone(), seq, next)
    }

    /// Records below `index` are no longer needed (a snapshot covers them): removes whole
    /// segments entirely below it. Afterwards `first_index()` may be anything `<= index`; if
    /// `index > last_index()`, the log becomes empty and the next append gets `index` (made
    /// durable before this returns). The active segment is never removed.
    pub fn compact_prefix(&self, index: u64) -> Result<()> {
        self.compact_prefix_keeping(index, 1)
    }

    /// [`Wal::compact_prefix`], removing segments entirely below `index` only while more
    /// than `keep` segment files exist, oldest first (etcd's `--max-wals`: at most `keep`
    /// files, never one still needed; `usize::MAX` keeps every file).
    pub fn compact_prefix_keeping(&self, index: u64, keep: usize) -> Result<()> {
        let (ticket, removed, wake) = {
            let mut q = self.lock_queue()?;
            let ticket = if index >= q.next && (q.first < q.next || index > q.next) {
                let t = self.push_control(&mut q, Record::Compact { index }, Op::Compact(index));
                q.first = index;
                q.next = index;
                Some(t)
            } else {
                None
            };
            let mut removed = Vec::new();
            let mut layout = self.shared.layout.write();
            while layout.segments.len() > keep.max(1) {
                let seq = layout.segments[0].seq;
                if layout.index.has_entry_at_or_after(seq, index) {
                    break;
                }
                layout.index.drop_front(seq, index);
                removed.push(layout.segments.pop_front().expect("len > 1"));
            }
            // Readable entries start no earlier than what is still on disk, except those a
            // queued truncation or compaction will rewrite: they go to the active segment.
            // `durable` is read under the layout lock: the writer updates the layout first.
            if !removed.is_empty() {
                let floor = if self.shared.durability.durable() >= q.rewrite_seq {
                    u64::MAX
                } else {
                    q.rewrite_floor
                };
                q.first = q.first.max(layout.index.first().min(floor).min(q.next));
            }
            let wake = if ticket.is_some() { q.wake_for_new_work() } else { WakeWriter::Nothing };
            (ticket, removed, wake)
        };
        self.wake_writer(wake);
        for seg in &removed {
            self.shared.storage.remove(&seg.path)?;
            // One directory sync per removal keeps removals in order: a crash never leaves a
            // gap in the sequence numbers.
            self.shared.storage.sync_dir(&self.shared.dir)?;
            tracing::debug!(segment = %seg.path.display(), "wal: removed compacted segment");
        }
        match ticket {
            Some(t) => t.wait(),
            None => Ok(()),
        }
    }

    /// Records `[lo, hi)`; an error if any is outside `[first_index(), last_index()]`. Records
    /// appended but not yet durable are returned once written (this waits for their commit).
    pub fn read(&self, lo: u64, hi: u64) -> Result<Vec<Vec<u8>>> {
        let (seq, rewrite_seq) = {
            let q = self.lock_queue()?;
            if lo > hi || lo < q.first || hi > q.next {
                return Err(Error::OutOfRange { lo, hi, first: q.first, next: q.next });
            }
            (q.seq, q.rewrite_seq)
        };
        if lo == hi {
            return Ok(Vec::new());
        }
        let d = &self.shared.durability;
        // Without a pending truncation, entries the writer already placed are the right ones.
        let placed = |l: &Layout| l.index.get(hi - 1).is_some() && l.index.get(lo).is_some();
        if d.durable() < rewrite_seq || !placed(&self.shared.layout.read()) {
            Ticket::new(d.clone(), seq, lo).wait()?;
        }
        let mut locs: Vec<(Arc<dyn SegmentFile>, PathBuf, Loc)> =
            Vec::with_capacity((hi - lo) as usize);
        {
            let layout = self.shared.layout.read();
            let l = &layout.index;
            if lo < l.first() || hi > l.next() {
                let q = self.shared.queue.lock();
                return Err(Error::OutOfRange { lo, hi, first: q.first, next: q.next });
            }
            let mut cur: Option<&Segment> = None;
            for i in lo..hi {
                let loc = l.get(i).expect("checked range");
                if cur.is_none_or(|s| s.seq != u64::from(loc.seg)) {
                    cur = Some(
                        layout.segment(u64::from(loc.seg)).expect("entry in a missing segment"),
                    );
                }
                let s = cur.expect("set above");
                locs.push((s.file.clone(), s.path.clone(), loc));
            }
        }
        read_runs(lo, &locs)
    }

    /// First stored index (`last_index() + 1` when empty).
    pub fn first_index(&self) -> u64 {
        self.shared.queue.lock().first
    }

    /// Last stored index; 0 for a brand-new log.
    pub fn last_index(&self) -> u64 {
        self.shared.queue.lock().next - 1
    }

    /// The latest durable hard state (default if none was ever stored).
    pub fn hard_state(&self) -> HardState {
        *self.shared.hard_state.lock()
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.stats;
        Stats {
            commits: c.commits.load(Ordering::Relaxed),
            entries: c.entries.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            segments_rolled: c.segments_rolled.load(Ordering::Relaxed),
            overlapped: c.overlapped.load(Ordering::Relaxed),
            sync_nanos: c.sync_nanos.load(Ordering::Relaxed),
            sync_buckets: std::array::from_fn(|i| c.sync_buckets[i].load(Ordering::Relaxed)),
            records_buckets: std::array::from_fn(|i| c.records_buckets[i].load(Ordering::Relaxed)),
        }
    }

    /// True once a write or fsync failed; every call fails until the log is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.shared.durability.is_failed()
    }

    fn lock_queue(&self) -> Result<parking_lot::MutexGuard<'_, Queue>> {
        if self.shared.durability.is_failed() {
            return Err(Error::Poisoned);
        }
        Ok(self.shared.queue.lock())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shared.queue.lock().shutdown = true;
        self.shared.work.notify_all();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }
}

/// Reads the frames at `locs` (entries `first..`), one read per run of adjacent frames, and
/// checks every frame again: bit rot after open is reported, not returned.
fn read_runs(first: u64, locs: &[(Arc<dyn SegmentFile>, PathBuf, Loc)]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(locs.len());
    let mut buf = Vec::new();
    let mut i = 0;
    while i < locs.len() {
        let (file, path, start) = &locs[i];
        let mut end = u64::from(start.off) + codec::entry_frame_len(start.len as usize) as u64;
        let mut j = i + 1;
        while j < locs.len() && locs[j].2.seg == start.seg && u64::from(locs[j].2.off) == end {
            end += codec::entry_frame_len(locs[j].2.len as usize) as u64;
            j += 1;
        }
        buf.clear();
        buf.resize((end - u64::from(start.off)) as usize, 0);
        let got = read_full_at(&**file, &mut buf, u64::from(start.off))?;
        let mut pos = 0;
        for (k, (_, _, loc)) in locs[i..j].iter().enumerate() {
            let index = first + (i + k) as u64;
            let at = u64::from(loc.off);
            let bad = |reason: &str| Error::Corrupted {
                file: path.clone(),
                offset: at,
                reason: reason.to_string(),
            };
            match codec::decode(&buf[pos..got]) {
                codec::Decoded::Record {
                    record: Record::Entry { index: got_index, data },
                    frame_len,
                } => {
                    if got_index != index {
                        return Err(bad("entry has the wrong index"));
                    }
                    out.push(data.to_vec());
                    pos += frame_len;
                }
                codec::Decoded::Invalid(reason) => return Err(bad(reason)),
                _ => return Err(bad("expected an entry record")),
            }
        }
        i = j;
    }
    Ok(out)
}

/// Writes zeros over `[pos, len)` of the active segment where the file system says part of it
/// is unwritten (preallocated by `fallocate`, as the buffered backends leave it): the direct
/// backend's writes then never convert extents. Those bytes read as zeros already (recovery
/// cut any torn tail), so only the extents change.
fn zero_fill_rest(file: &dyn SegmentFile, pos: u64) -> Result<()> {
    let len = file.len()?;
    if file.zeros_from().is_none_or(|z| z >= len) {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    let mut at = pos;
    while at < len {
        let n = zeros.len().min((len - at) as usize);
        write_all_at(file, &zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()?;
    Ok(())
}

/// Creates segment `seq` for a log that has none, with its preamble, durably.
fn create_first_segment(
    storage: &dyn Storage,
    dir: &Path,
    options: &Options,
    zero_fill: bool,
    seq: u64,
    first_index: u64,
    hs: HardState,
) -> Result<Segment> {
    let spare = segment::prepare(storage, dir, seq, options.segment_size, zero_fill)?;
    let seg = segment::activate(storage, dir, spare, first_index)?;
    let mut pre = Vec::new();
    segment::preamble(seq, first_index, hs, &mut pre);
    write_all_at(&*seg.file, &pre, 0)?;
    seg.file.sync_data()?;
    Ok(seg)
}
