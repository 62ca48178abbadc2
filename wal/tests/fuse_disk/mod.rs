//! A disk that loses power, with real file descriptors: a one-directory file system served
//! over FUSE by the test process itself, so the WAL's io_uring and `O_DIRECT` backends (which
//! need descriptors the kernel writes through) run on it, while every byte they write still
//! passes through a model that decides what survives a power loss.
//!
//! # The model
//! - Every write lands in a volatile layer: readers see it at once, a power loss may drop it.
//! - `fsync`/`fdatasync` of a file (the kernel's `FUSE_FSYNC`, sent for `fsync(2)`, for
//!   io_uring's `IORING_OP_FSYNC` and, on cached files, for `O_DSYNC`/`RWF_DSYNC` writes) makes
//!   every write to that file so far durable. A write the kernel marks `O_DSYNC`/`O_SYNC` (an
//!   `O_DIRECT` file's `RWF_DSYNC` write arrives that way) is durable, with the file's earlier
//!   writes, before it is answered: a write plus a cache flush.
//! - Size changes (`ftruncate`, `fallocate`) are volatile like writes, durable at the next sync.
//! - Names (create, rename, unlink) are durable as of the last `fsync` of the directory.
//! - A power loss ([`FuseDisk::power_loss`], or armed with [`FuseDisk::arm`] to strike while
//!   the N-th mutating request is being served, before it is answered) keeps, per file, the
//!   durable bytes plus, by [`Tear`]: a prefix of the unsynced writes in arrival order with
//!   the first one past it torn at a 512-byte sector boundary, or any subset of the unsynced
//!   writes' sectors. From then on every request fails with `EIO` (the old machine is gone);
//!   the test unmounts and mounts the surviving [`Image`] as the restarted machine's disk.
//!
//! The kernel's page cache is not a volatile layer here: without FUSE's writeback cache, every
//! `write(2)` is sent to this file system before it returns (write-through), and each
//! restart is a fresh mount, so nothing cached outlives a power loss. `O_DIRECT` opens get
//! `FOPEN_DIRECT_IO`. Counters ([`Counters`]) show which requests arrived, so a test can check
//! that io_uring's operations reached the model rather than somewhere else.
//!
//! Mounted with `mount(2)` directly (fuser does that as root), so neither libfuse nor
//! `fusermount3` is needed; `/dev/fuse` and root are.

#![allow(dead_code)] // each test uses part of this

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sector size: a torn write keeps or loses whole sectors (aligned to file offsets).
pub const SECTOR: u64 = 512;

/// How long an unmounted disk's server thread may take to stop.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// Nothing is cached by the kernel: every lookup and attribute comes from the model.
const TTL: Duration = Duration::ZERO;

/// What a power loss keeps of the writes not yet made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// An ordered disk: a prefix of each file's unsynced writes in arrival order, the first
    /// write past it torn after a random number of its sectors.
    Prefix,
    /// A disk that reorders: any subset of the unsynced writes' sectors, each kept or lost on
    /// its own (size changes kept or lost on their own too).
    AnySectors,
}

/// The files a restarted machine finds: name -> contents.
pub type Image = BTreeMap<String, Vec<u8>>;

/// Requests the file system received (cumulative over the mount).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `FUSE_WRITE` requests.
    pub writes: u64,
    /// Of those, marked `O_DSYNC`/`O_SYNC` by the kernel (durable on completion).
    pub dsync_writes: u64,
    /// `FUSE_FSYNC` requests.
    pub fsyncs: u64,
    /// `FUSE_FSYNCDIR` requests.
    pub fsyncdirs: u64,
    /// Opens (and creates) with `O_DIRECT`, answered with `FOPEN_DIRECT_IO`.
    pub direct_opens: u64,
    /// Bytes received by writes.
    pub bytes_written: u64,
}

impl Counters {
    /// Adds `other` to these (totals over several mounts).
    pub fn add(&mut self, other: &Counters) {
        self.writes += other.writes;
        self.dsync_writes += other.dsync_writes;
        self.fsyncs += other.fsyncs;
        self.fsyncdirs += other.fsyncdirs;
        self.direct_opens += other.direct_opens;
        self.bytes_written += other.bytes_written;
    }
}

/// One change to a file not yet made durable.
#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

fn apply_write(dst: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let (off, end) = (offset as usize, offset as usize + data.len());
    if dst.len() < end {
        dst.resize(end, 0);
    }
    dst[off..end].copy_from_slice(data);
}

fn apply(dst: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write { offset, data } => apply_write(dst, *offset, data),
        Pending::SetLen(len) => dst.resize(*len as usize, 0),
    }
}

/// `data` written at `offset`, cut at sector boundaries (file offsets that are multiples of
/// [`SECTOR`]): `(offset, bytes)` pieces, in order.
fn sectors(offset: u64, data: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let pos = offset + at as u64;
        let room = (SECTOR - pos % SECTOR) as usize;
        let n = room.min(data.len() - at);
        out.push((pos, &data[at..at + n]));
        at += n;
    }
    out
}

#[derive(Debug, Default)]
struct Inode {
    /// What a reader sees now.
    current: Vec<u8>,
    /// What survives a power loss for sure.
    durable: Vec<u8>,
    /// Changes since the last sync, in arrival order.
    pending: Vec<Pending>,
}

impl Inode {
    fn sync(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            apply(&mut self.durable, &p);
        }
    }

    /// What a power loss leaves of this file.
    fn survivor(&self, tear: Tear, rng: &mut StdRng) -> Vec<u8> {
        let mut content = self.durable.clone();
        match tear {
            Tear::Prefix => {
                let keep = rng.random_range(0..=self.pending.len());
                for p in &self.pending[..keep] {
                    apply(&mut content, p);
                }
                if let Some(Pending::Write { offset, data }) = self.pending.get(keep) {
                    let pieces = sectors(*offset, data);
                    let whole = rng.random_range(0..pieces.len().max(1));
                    for (at, bytes) in &pieces[..whole] {
                        apply_write(&mut content, *at, bytes);
                    }
                }
            }
            Tear::AnySectors => {
                for p in &self.pending {
                    match p {
                        Pending::Write { offset, data } => {
                            for (at, bytes) in sectors(*offset, data) {
                                if rng.random_bool(0.5) {
                                    apply_write(&mut content, at, bytes);
                                }
                            }
                        }
                        Pending::SetLen(_) => {
                            if rng.random_bool(0.5) {
                                apply(&mut content, p);
                            }
                        }
                    }
                }
            }
        }
        content
    }
}

/// A power loss planned to strike while a given request is being served.
#[derive(Debug)]
struct Armed {
    /// Mutating requests served so far when it strikes (it strikes during the next one).
    at: u64,
    tear: Tear,
    rng: StdRng,
}

#[derive(Debug, Default)]
struct Disk {
    inodes: HashMap<u64, Inode>,
    /// The root directory now: name -> inode.
    names: BTreeMap<String, u64>,
    /// As of the last `fsync` of the directory.
    durable_names: BTreeMap<String, u64>,
    next_ino: u64,
    counters: Counters,
    /// Mutating requests served (the clock [`Armed`] counts by).
    mutations: u64,
    armed: Option<Armed>,
    /// Set by the power loss: what survived. Every request fails from then on.
    lost: Option<Image>,
}

impl Disk {
    fn from_image(image: &Image) -> Disk {
        let mut d = Disk { next_ino: 2, ..Disk::default() };
        for (name, bytes) in image {
            let ino = d.next_ino;
            d.next_ino += 1;
            d.inodes.insert(
                ino,
                Inode { current: bytes.clone(), durable: bytes.clone(), pending: vec![] },
            );
            d.names.insert(name.clone(), ino);
        }
        d.durable_names = d.names.clone();
        d
    }

    fn power_loss(&mut self, tear: Tear, rng: &mut StdRng) {
        if self.lost.is_some() {
            return;
        }
        let mut image = Image::new();
        for (name, ino) in &self.durable_names {
            let content = self.inodes.get(ino).map(|i| i.survivor(tear, rng)).unwrap_or_default();
            image.insert(name.clone(), content);
        }
        self.lost = Some(image);
    }

    /// Counts a mutating request; strikes the armed power loss if its time has come. Err:
    /// the power is out (the request must fail, after `in_flight` was applied to the volatile
    /// layer, so the power loss can keep or tear it).
    fn mutation(&mut self, in_flight: impl FnOnce(&mut Disk)) -> Result<(), Errno> {
        if self.lost.is_some() {
            return Err(Errno::EIO);
        }
        self.mutations += 1;
        if self.armed.as_ref().is_some_and(|a| self.mutations > a.at) {
            in_flight(self);
            let mut a = self.armed.take().expect("armed");
            self.power_loss(a.tear, &mut a.rng);
            return Err(Errno::EIO);
        }
        Ok(())
    }

    fn alive(&self) -> Result<(), Errno> {
        if self.lost.is_some() { Err(Errno::EIO) } else { Ok(()) }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm, nlink) = if ino == 1 {
            (FileType::Directory, 0, 0o755, 2)
        } else {
            (FileType::RegularFile, self.inodes.get(&ino)?.current.len() as u64, 0o644, 1)
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn inode(&mut self, ino: INodeNo) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino.0).ok_or(Errno::ENOENT)
    }

    fn resize(&mut self, ino: INodeNo, len: u64) -> Result<(), Errno> {
        let i = self.inode(ino)?;
        i.current.resize(len as usize, 0);
        i.pending.push(Pending::SetLen(len));
        Ok(())
    }
}

/// The `fuser` file system: the model behind a lock.
struct DiskFs(Arc<Mutex<Disk>>);

fn name_of(parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
    if parent != INodeNo::ROOT {
        return Err(Errno::ENOENT);
    }
    name.to_str().map(str::to_owned).ok_or(Errno::EINVAL)
}

fn open_flags(flags: i32, counters: &mut Counters) -> FopenFlags {
    if flags & libc::O_DIRECT != 0 {
        counters.direct_opens += 1;
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

impl Filesystem for DiskFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let d = self.0.lock();
        let r = d.alive().and_then(|()| name_of(parent, name)).and_then(|n| {
            let ino = *d.names.get(&n).ok_or(Errno::ENOENT)?;
            d.attr(ino).ok_or(Errno::ENOENT)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let d = self.0.lock();
        match d.alive().and_then(|()| d.attr(ino.0).ok_or(Errno::ENOENT)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut d = self.0.lock();
        let r = match size {
            Some(len) => d
                .mutation(|d| {
                    let _ = d.resize(ino, len);
                })
                .and_then(|()| d.resize(ino, len)),
            None => d.alive(),
        };
        match r.and_then(|()| d.attr(ino.0).ok_or(Errno::ENOENT)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut d = self.0.lock();
        if let Err(e) = d.alive().and_then(|()| d.inode(ino).map(|_| ())) {
            return reply.error(e);
        }
        let f = open_flags(flags.0, &mut d.counters);
        reply.opened(FileHandle(0), f);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut d = self.0.lock();
        let name = match name_of(parent, name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let create = |d: &mut Disk| {
            if let Some(&ino) = d.names.get(&name) {
                return ino;
            }
            let ino = d.next_ino;
            d.next_ino += 1;
            d.inodes.insert(ino, Inode::default());
            d.names.insert(name.clone(), ino);
            ino
        };
        if let Err(e) = d.mutation(|d| {
            create(d);
        }) {
            return reply.error(e);
        }
        let ino = create(&mut d);
        let attr = d.attr(ino).expect("just created");
        let f = open_flags(flags, &mut d.counters);
        reply.created(&TTL, &attr, Generation(0), FileHandle(0), f);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut d = self.0.lock();
        if let Err(e) = d.alive() {
            return reply.error(e);
        }
        match d.inode(ino) {
            Ok(i) => {
                let start = (offset as usize).min(i.current.len());
                let end = (start + size as usize).min(i.current.len());
                reply.data(&i.current[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut d = self.0.lock();
        let dsync = flags.0 & (libc::O_DSYNC | libc::O_SYNC) != 0;
        let land = |d: &mut Disk| -> Result<(), Errno> {
            d.counters.writes += 1;
            d.counters.bytes_written += data.len() as u64;
            if dsync {
                d.counters.dsync_writes += 1;
            }
            let i = d.inode(ino)?;
            apply_write(&mut i.current, offset, data);
            i.pending.push(Pending::Write { offset, data: data.to_vec() });
            Ok(())
        };
        if let Err(e) = d.mutation(|d| {
            let _ = land(d);
        }) {
            return reply.error(e);
        }
        if let Err(e) = land(&mut d) {
            return reply.error(e);
        }
        if dsync {
            d.inode(ino).expect("written above").sync();
        }
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut d = self.0.lock();
        d.counters.fsyncs += 1;
        if let Err(e) = d.mutation(|_| {}) {
            return reply.error(e);
        }
        match d.inode(ino) {
            Ok(i) => {
                i.sync();
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let d = self.0.lock();
        if let Err(e) = d.alive() {
            return reply.error(e);
        }
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![(1, FileType::Directory, ".".to_string())];
        entries.push((1, FileType::Directory, "..".to_string()));
        for (n, &i) in &d.names {
            entries.push((i, FileType::RegularFile, n.clone()));
        }
        for (k, (i, kind, n)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), (k + 1) as u64, kind, n) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ds: bool,
        reply: ReplyEmpty,
    ) {
        let mut d = self.0.lock();
        d.counters.fsyncdirs += 1;
        if let Err(e) = d.mutation(|_| {}) {
            return reply.error(e);
        }
        d.durable_names = d.names.clone();
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut d = self.0.lock();
        let (from, to) = match (name_of(parent, name), name_of(newparent, newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        if !d.names.contains_key(&from) {
            return reply.error(Errno::ENOENT);
        }
        let mv = |d: &mut Disk| {
            if let Some(ino) = d.names.remove(&from) {
                d.names.insert(to.clone(), ino);
            }
        };
        if let Err(e) = d.mutation(mv) {
            return reply.error(e);
        }
        mv(&mut d);
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut d = self.0.lock();
        let name = match name_of(parent, name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        if !d.names.contains_key(&name) {
            return reply.error(Errno::ENOENT);
        }
        let rm = |d: &mut Disk| {
            d.names.remove(&name);
        };
        if let Err(e) = d.mutation(rm) {
            return reply.error(e);
        }
        rm(&mut d);
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut d = self.0.lock();
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let grow = |d: &mut Disk| -> Result<(), Errno> {
            let len = d.inode(ino)?.current.len() as u64;
            if offset + length > len {
                d.resize(ino, offset + length)?;
            }
            Ok(())
        };
        if let Err(e) = d.mutation(|d| {
            let _ = grow(d);
        }) {
            return reply.error(e);
        }
        match grow(&mut d) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// A mounted [`Disk`].
pub struct FuseDisk {
    disk: Arc<Mutex<Disk>>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl FuseDisk {
    /// Mounts a disk holding `image` at `mountpoint` (an empty directory). Fails, with a
    /// message saying what these tests need, if FUSE cannot be mounted here.
    pub fn mount(mountpoint: &Path, image: &Image) -> Result<FuseDisk, String> {
        let disk = Arc::new(Mutex::new(Disk::from_image(image)));
        let mut config = fuser::Config::default();
        config.mount_options =
            vec![MountOption::FSName("logbook-fuse-disk".into()), MountOption::DefaultPermissions];
        let session =
            fuser::spawn_mount(DiskFs(disk.clone()), mountpoint, &config).map_err(|e| {
                format!(
                    "cannot mount the FUSE disk model at {}: {e} (these tests need /dev/fuse and \
                 root, i.e. CAP_SYS_ADMIN for mount(2); they do not skip)",
                    mountpoint.display()
                )
            })?;
        Ok(FuseDisk { disk, session: Some(session), mountpoint: mountpoint.to_path_buf() })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Requests received so far.
    pub fn counters(&self) -> Counters {
        self.disk.lock().counters
    }

    /// Plans a power loss while the `after + 1`-th mutating request from now is served
    /// (write, fsync, size change, create, rename, unlink, directory fsync), before it is
    /// answered; what survives is drawn from `seed`.
    pub fn arm(&self, after: u64, tear: Tear, seed: u64) {
        let mut d = self.disk.lock();
        let at = d.mutations + after;
        d.armed = Some(Armed { at, tear, rng: StdRng::seed_from_u64(seed) });
    }

    /// Whether the power is out (an armed power loss struck, or [`FuseDisk::power_loss`]).
    pub fn is_lost(&self) -> bool {
        self.disk.lock().lost.is_some()
    }

    /// Cuts the power now (unless an armed power loss already did) and returns what
    /// survived. Every request fails from now on.
    pub fn power_loss(&self, tear: Tear, seed: u64) -> Image {
        let mut d = self.disk.lock();
        d.armed = None;
        d.power_loss(tear, &mut StdRng::seed_from_u64(seed));
        d.lost.clone().expect("power is out")
    }

    /// Mutating requests served so far.
    pub fn mutations(&self) -> u64 {
        self.disk.lock().mutations
    }

    /// Unmounts (lazily, so it never fails for a busy mount) and stops the server thread.
    /// Close every file on it first.
    pub fn unmount(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(session) = self.session.take() else { return };
        let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
            .expect("no NUL in a temp path");
        // SAFETY: `c` is a valid NUL-terminated path for the whole call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        // The server thread ends when the kernel closes the connection, once the last file
        // on the mount is closed. Bounded: a file left open would otherwise hang the test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(session.join());
        });
        if rx.recv_timeout(STOP_LIMIT).is_err() && !std::thread::panicking() {
            panic!(
                "the FUSE server at {} did not stop within {STOP_LIMIT:?} of the unmount \
                 (a file on it still open?)",
                self.mountpoint.display()
            );
        }
    }
}

impl Drop for FuseDisk {
    fn drop(&mut self) {
        self.stop();
    }
}
