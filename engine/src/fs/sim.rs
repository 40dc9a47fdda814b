//! Simulated file system: in memory, seeded, deterministic, with fault injection.
//!
//! The model (also described in `docs/simulated-fs.md`):
//! - Every file (inode) has *durable* contents (what survives a crash) and *current*
//!   contents (what reads see). [`RwFile::sync`] and [`StreamWriter::finish`] copy
//!   current to durable.
//! - The namespace exists twice as well: a current map `path -> entry` and a durable
//!   one. [`FileSystem::sync_dir`] copies the entries of one directory (files and
//!   sub-directories, including removals) from the current map to the durable map.
//!   Directories made by `create_dir_all` follow the same rule: they need a `sync_dir`
//!   of their parent to survive.
//! - [`SimFs::crash`] (or an armed [`SimFs::crash_after_ops`]) stops the machine: every
//!   operation returns [`Error::Crashed`]. [`SimFs::restart`] throws away everything
//!   unsynced: the namespace becomes the durable one (entries whose directory did not
//!   survive disappear with it), every file's contents become its durable contents,
//!   except that, with a configurable probability, the last unsynced write of a file
//!   survives torn: a prefix of it, cut at a 512-byte sector boundary, reaches durable
//!   state. Handles opened before the restart fail with [`Error::Crashed`].
//! - The direct-I/O contract of [`crate::fs`] is enforced: misaligned writes and
//!   oversized reads return [`Error::InvalidArgument`], so engine bugs fail in tests.
//!
//! Everything is single-threaded (`Rc<RefCell<_>>`) and every future is ready at once,
//! so a run is a pure function of the seed and the workload.

use crate::config::{IO_ALIGN, MAX_IO_BYTES};
use crate::fs::{FileSystem, ReadFile, RwFile, StreamWriter, is_io_aligned};
use crate::{Error, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Torn writes are cut at multiples of this (the sector size disks write atomically).
pub const SECTOR_BYTES: u64 = 512;

/// Kinds of operation that [`SimFs::fail_op`] can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `read_at`, `read_exact_at`.
    Read,
    /// `write_at`, stream `write`, `truncate`, `preallocate`.
    Write,
    /// `sync`, stream `finish`, `sync_dir`.
    Sync,
    /// create, open, rename, remove, list, exists, create_dir_all, size, close.
    Metadata,
    /// Any operation.
    Any,
}

impl OpKind {
    fn matches(self, op: OpKind) -> bool {
        self == OpKind::Any || self == op
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// The last write since the last sync (offset, bytes): the one that may survive
    /// a crash torn.
    last_write: Option<(u64, Vec<u8>)>,
    /// Every change since the last sync, in order: what adversarial power loss picks
    /// survivors from.
    unsynced: Vec<ContentOp>,
    /// Changes ever made, and how many of them are durable: an fsync makes durable
    /// the changes made before it was issued, not those made while it ran.
    ops_made: u64,
    ops_synced: u64,
}

impl Inode {
    fn push_unsynced(&mut self, op: ContentOp) {
        self.unsynced.push(op);
        self.ops_made += 1;
    }

    /// Makes the changes made before the `upto`-th durable (an fsync issued then).
    fn sync_upto(&mut self, upto: u64) {
        let n = upto
            .saturating_sub(self.ops_synced)
            .min(self.unsynced.len() as u64) as usize;
        for op in self.unsynced.drain(..n) {
            match op {
                ContentOp::SetLen(len) => self.durable.resize(len, 0),
                // Cannot fail: the offset was accepted when written.
                ContentOp::Write(pos, data) => drop(put_at(&mut self.durable, pos, &data)),
            }
        }
        self.ops_synced += n as u64;
        if self.unsynced.is_empty() {
            self.last_write = None;
        }
    }
}

/// An unsynced change of a file's contents.
#[derive(Debug, Clone)]
enum ContentOp {
    Write(u64, Vec<u8>),
    /// A truncation (or extension) to this length; also a create over an existing file.
    SetLen(usize),
}

/// An unsynced change of the namespace: names that change together (a rename changes
/// two), each to an entry or to nothing.
type NsOp = Vec<(PathBuf, Option<Entry>)>;

#[derive(Debug)]
struct Fault {
    kind: OpKind,
    remaining: u64,
}

#[derive(Debug)]
struct State {
    rng: SmallRng,
    torn_probability: f64,
    crashed: bool,
    /// Bumped by every restart; handles from an older generation are dead.
    generation: u64,
    ops: u64,
    crash_at: Option<u64>,
    faults: Vec<Fault>,
    next_ino: u64,
    inodes: BTreeMap<u64, Inode>,
    current: BTreeMap<PathBuf, Entry>,
    durable: BTreeMap<PathBuf, Entry>,
    /// Adversarial power loss (see [`SimFs::set_adversarial_power_loss`]).
    adversarial: bool,
    /// Namespace changes not yet made durable by `sync_dir`, in order.
    ns_log: Vec<NsOp>,
    /// Slow I/O (see [`SimFs::set_io_latency`]); None: every operation completes at
    /// once.
    latency: Option<IoLatency>,
}

/// How slow the simulated device is. Each data or namespace operation first lets
/// other tasks run for a seeded number of scheduler turns — up to `max_turns`, or
/// `stall_turns` with probability `stall_probability` (a device that stalls now and
/// then) — so that tasks waiting on I/O interleave as they do on a real disk, where
/// an fsync or a read takes a while and everything else runs meanwhile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IoLatency {
    pub max_turns: u32,
    pub stall_probability: f64,
    pub stall_turns: u32,
}

/// The seeded, fault-injecting, in-memory file system. Cloning yields another handle
/// to the same simulated machine.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Rc<RefCell<State>>,
}

fn io_err(kind: io::ErrorKind, msg: &str) -> io::Error {
    io::Error::new(kind, msg.to_string())
}

fn not_found(path: &Path) -> Error {
    Error::io(
        path,
        io_err(io::ErrorKind::NotFound, "no such file or directory"),
    )
}

/// Normalizes `a//b/` and `a/./b` to `a/b` so both spellings name one entry.
fn norm(path: &Path) -> PathBuf {
    path.components().collect()
}

fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

fn dir_exists(ns: &BTreeMap<PathBuf, Entry>, dir: &Path) -> bool {
    is_root(dir) || ns.get(dir) == Some(&Entry::Dir)
}

/// The directory holding `path` (the root for top-level names).
fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn check_read_len(len: usize) -> Result<()> {
    if len > MAX_IO_BYTES {
        return Err(Error::InvalidArgument(format!(
            "read of {len} bytes exceeds MAX_IO_BYTES ({MAX_IO_BYTES}); split it"
        )));
    }
    Ok(())
}

/// Copies `data` into `buf` at `pos`, growing `buf` with zeros as needed.
fn put_at(buf: &mut Vec<u8>, pos: u64, data: &[u8]) -> Result<()> {
    let start = usize::try_from(pos)
        .map_err(|_| Error::InvalidArgument(format!("offset {pos} too large")))?;
    let end = start
        .checked_add(data.len())
        .ok_or_else(|| Error::InvalidArgument(format!("offset {pos} too large")))?;
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
    Ok(())
}

fn read_from(buf: &[u8], pos: u64, len: usize) -> Vec<u8> {
    let start = usize::try_from(pos).unwrap_or(usize::MAX).min(buf.len());
    let end = start.saturating_add(len).min(buf.len());
    buf[start..end].to_vec()
}

impl State {
    /// Admission of one I/O operation: fails if the machine is down, counts it, fires
    /// an armed crash or an injected EIO.
    fn begin(&mut self, kind: OpKind, path: &Path) -> Result<()> {
        if self.crashed {
            return Err(Error::Crashed);
        }
        self.ops += 1;
        if self.crash_at.is_some_and(|at| self.ops >= at) {
            self.crash_at = None;
            self.crashed = true;
            return Err(Error::Crashed);
        }
        let mut fail = false;
        for f in self.faults.iter_mut().filter(|f| f.kind.matches(kind)) {
            f.remaining -= 1;
            fail |= f.remaining == 0;
        }
        self.faults.retain(|f| f.remaining > 0);
        if fail {
            return Err(Error::io(path, io::Error::from_raw_os_error(libc::EIO)));
        }
        Ok(())
    }

    fn begin_handle(&mut self, kind: OpKind, path: &Path, generation: u64) -> Result<()> {
        if generation != self.generation {
            // The handle belongs to the process that crashed.
            return Err(Error::Crashed);
        }
        self.begin(kind, path)
    }

    fn inode(&mut self, ino: u64, path: &Path) -> Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(|| not_found(path))
    }

    fn lookup_file(&self, path: &Path) -> Result<u64> {
        match self.current.get(path) {
            Some(Entry::File(ino)) => Ok(*ino),
            Some(Entry::Dir) => Err(Error::io(path, io::Error::from_raw_os_error(libc::EISDIR))),
            None => Err(not_found(path)),
        }
    }

    /// The inode a test helper means by `path`: the current name, else the durable one
    /// (useful between `crash` and `restart`).
    fn helper_inode(&mut self, path: &Path) -> Result<&mut Inode> {
        let p = norm(path);
        let ino = match self.current.get(&p).or_else(|| self.durable.get(&p)) {
            Some(Entry::File(ino)) => *ino,
            _ => return Err(not_found(path)),
        };
        self.inode(ino, path)
    }

    /// Creates `path` or truncates it; the truncation of an existing file is volatile
    /// like any other change of contents.
    fn create_file(&mut self, path: &Path) -> Result<u64> {
        let parent = parent_of(path);
        if !dir_exists(&self.current, &parent) {
            return Err(not_found(&parent));
        }
        match self.current.get(path) {
            Some(Entry::File(ino)) => {
                let ino = *ino;
                let inode = self.inode(ino, path)?;
                inode.current.clear();
                inode.last_write = None;
                inode.push_unsynced(ContentOp::SetLen(0));
                Ok(ino)
            }
            Some(Entry::Dir) => Err(Error::io(path, io::Error::from_raw_os_error(libc::EISDIR))),
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                self.inodes.insert(ino, Inode::default());
                self.current.insert(path.to_path_buf(), Entry::File(ino));
                self.ns_log
                    .push(vec![(path.to_path_buf(), Some(Entry::File(ino)))]);
                Ok(ino)
            }
        }
    }

    fn write(&mut self, ino: u64, path: &Path, pos: u64, data: &[u8]) -> Result<()> {
        let inode = self.inode(ino, path)?;
        put_at(&mut inode.current, pos, data)?;
        inode.last_write = Some((pos, data.to_vec()));
        inode.push_unsynced(ContentOp::Write(pos, data.to_vec()));
        Ok(())
    }

    fn sync_file(&mut self, ino: u64, path: &Path) -> Result<u64> {
        let inode = self.inode(ino, path)?;
        inode.durable.clone_from(&inode.current);
        inode.last_write = None;
        inode.unsynced.clear();
        inode.ops_synced = inode.ops_made;
        Ok(inode.current.len() as u64)
    }

    /// Changes made so far to a file (what an fsync issued now covers).
    fn ops_made(&self, ino: u64) -> u64 {
        self.inodes.get(&ino).map_or(0, |i| i.ops_made)
    }

    fn restart(&mut self) {
        // An EIO armed for this boot that never fired does not follow the machine
        // into the next one: a test arms a fault per run, not per disk.
        self.faults.clear();
        if self.adversarial {
            self.lose_adversarially();
        }
        // Torn last writes: decided per inode in inode order, so the seed fixes them.
        let p = self.torn_probability;
        for inode in self.inodes.values_mut() {
            inode.unsynced.clear();
            inode.ops_synced = inode.ops_made;
            let last = inode.last_write.take();
            if let Some((pos, data)) = last.filter(|_| p > 0.0 && self.rng.gen_bool(p)) {
                // Cut points: the write's start, every sector boundary inside it, its end.
                let end = pos + data.len() as u64;
                let first = (pos / SECTOR_BYTES + 1) * SECTOR_BYTES;
                let mut cuts = vec![pos];
                cuts.extend((first..end).step_by(SECTOR_BYTES as usize));
                cuts.push(end);
                let cut = cuts[self.rng.gen_range(0..cuts.len())];
                let keep = (cut - pos) as usize;
                if keep > 0 {
                    // Cannot fail: the offset was accepted when the write was made.
                    let _ = put_at(&mut inode.durable, pos, &data[..keep]);
                }
            }
            inode.current.clone_from(&inode.durable);
        }
        // Namespace: the durable one, minus entries whose directory did not survive.
        // Parents sort before their children, so one pass suffices.
        let mut kept: BTreeMap<PathBuf, Entry> = BTreeMap::new();
        for (path, entry) in std::mem::take(&mut self.durable) {
            if dir_exists(&kept, &parent_of(&path)) {
                kept.insert(path, entry);
            }
        }
        let live: std::collections::BTreeSet<u64> = kept
            .values()
            .filter_map(|e| match e {
                Entry::File(ino) => Some(*ino),
                Entry::Dir => None,
            })
            .collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        self.ns_log.clear();
        self.current = kept.clone();
        self.durable = kept;
        self.crashed = false;
        self.crash_at = None;
        self.generation += 1;
    }
}

impl State {
    /// Adversarial power loss, before the ordinary restart: each unsynced change of a
    /// file's contents survives or not independently (writes page by page), in any
    /// combination; of the unsynced namespace changes, a random prefix survives (a
    /// journaling file system commits metadata in order, and may commit a name before
    /// the `fsync` of its directory). Survivors are made durable; the rest is lost.
    fn lose_adversarially(&mut self) {
        for inode in self.inodes.values_mut() {
            for op in std::mem::take(&mut inode.unsynced) {
                match op {
                    ContentOp::SetLen(len) => {
                        if self.rng.gen_bool(0.5) {
                            inode.durable.resize(len, 0);
                        }
                    }
                    ContentOp::Write(pos, data) => {
                        let mut at = pos;
                        let end = pos + data.len() as u64;
                        while at < end {
                            let piece_end = ((at / IO_ALIGN + 1) * IO_ALIGN).min(end);
                            if self.rng.gen_bool(0.5) {
                                let bytes = &data[(at - pos) as usize..(piece_end - pos) as usize];
                                // Cannot fail: the offset was accepted when written.
                                let _ = put_at(&mut inode.durable, at, bytes);
                            }
                            at = piece_end;
                        }
                    }
                }
            }
            // Whatever survived is now the durable state; nothing comes back torn on
            // top of it.
            inode.last_write = None;
        }
        let keep = self.rng.gen_range(0..=self.ns_log.len());
        for op in std::mem::take(&mut self.ns_log).into_iter().take(keep) {
            for (path, entry) in op {
                match entry {
                    Some(e) => self.durable.insert(path, e),
                    None => self.durable.remove(&path),
                };
            }
        }
    }
}

impl SimFs {
    /// A fresh, empty machine whose random choices all derive from `seed`. Torn writes
    /// are off (probability 0) until [`SimFs::set_torn_write_probability`].
    pub fn new(seed: u64) -> SimFs {
        SimFs {
            state: Rc::new(RefCell::new(State {
                rng: SmallRng::seed_from_u64(seed),
                torn_probability: 0.0,
                crashed: false,
                generation: 0,
                ops: 0,
                crash_at: None,
                faults: Vec::new(),
                next_ino: 1,
                inodes: BTreeMap::new(),
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
                adversarial: false,
                ns_log: Vec::new(),
                latency: None,
            })),
        }
    }

    /// Makes every later restart lose data as adversarially as the file-system
    /// contract allows: any subset of unsynced pages and truncations survives (not only
    /// a torn last write), and a random prefix of the unsynced namespace changes
    /// (creations, renames, removals) survives too. Off by default.
    pub fn set_adversarial_power_loss(&self, on: bool) {
        self.state.borrow_mut().adversarial = on;
    }

    /// Makes I/O slow ([`IoLatency`]); None (the default) makes it instant.
    pub fn set_io_latency(&self, latency: Option<IoLatency>) {
        self.state.borrow_mut().latency = latency;
    }

    /// The device's latency for one operation: yields for the seeded number of
    /// scheduler turns. The operation takes effect (or meets a crash) after it.
    async fn io_delay(&self) {
        let turns = {
            let mut s = self.state.borrow_mut();
            match s.latency {
                None => 0,
                Some(l) => {
                    let stall = l.stall_probability > 0.0 && s.rng.gen_bool(l.stall_probability);
                    if stall {
                        l.stall_turns
                    } else {
                        s.rng.gen_range(0..=l.max_turns)
                    }
                }
            }
        };
        for _ in 0..turns {
            futures_lite::future::yield_now().await;
        }
    }

    /// Probability (0..=1) that the last unsynced write of a file survives a crash
    /// torn instead of vanishing.
    pub fn set_torn_write_probability(&self, p: f64) {
        self.state.borrow_mut().torn_probability = p.clamp(0.0, 1.0);
    }

    /// Crashes the machine now: every operation returns [`Error::Crashed`] until
    /// [`SimFs::restart`].
    pub fn crash(&self) {
        let mut s = self.state.borrow_mut();
        s.crashed = true;
        s.crash_at = None;
    }

    /// True between a crash and the following restart.
    pub fn is_crashed(&self) -> bool {
        self.state.borrow().crashed
    }

    /// Arms a crash: the `n`-th I/O operation from now fails with [`Error::Crashed`]
    /// without taking effect, and so does everything after it. `n == 0` crashes now.
    pub fn crash_after_ops(&self, n: u64) {
        if n == 0 {
            self.crash();
            return;
        }
        let mut s = self.state.borrow_mut();
        s.crash_at = Some(s.ops + n);
    }

    /// Reboots after a crash (or simulates one if the machine is up): drops every
    /// unsynced change, possibly keeping torn last writes, and brings the file system
    /// back up. Handles opened before fail with [`Error::Crashed`].
    pub fn restart(&self) {
        self.state.borrow_mut().restart();
    }

    /// I/O operations attempted so far (every async method of the file-system traits
    /// counts one, failed ones included; crashed-machine refusals do not).
    pub fn ops_count(&self) -> u64 {
        self.state.borrow().ops
    }

    /// Makes the `n`-th (1-based) operation of `kind` from now fail once with an EIO
    /// [`Error::Io`]. The failed operation has no effect.
    pub fn fail_op(&self, n: u64, kind: OpKind) {
        let mut s = self.state.borrow_mut();
        if n == 0 {
            return;
        }
        s.faults.push(Fault { kind, remaining: n });
    }

    /// Flips bit `bit` (0..8) of byte `byte_offset` of `path`, in both durable and
    /// current contents (media corruption).
    pub fn flip_bit(&self, path: &Path, byte_offset: u64, bit: u8) -> Result<()> {
        if bit >= 8 {
            return Err(Error::InvalidArgument(format!("bit {bit} is not in 0..8")));
        }
        let mut s = self.state.borrow_mut();
        let inode = s.helper_inode(path)?;
        let i = usize::try_from(byte_offset).unwrap_or(usize::MAX);
        for buf in [&mut inode.durable, &mut inode.current] {
            let len = buf.len();
            let b = buf.get_mut(i).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "offset {byte_offset} is past the end of {} ({len} bytes)",
                    path.display()
                ))
            })?;
            *b ^= 1 << bit;
        }
        Ok(())
    }

    /// Writes `data` at `offset` of `path` in both durable and current contents, with
    /// no alignment rule and no op counted (to plant corruption).
    pub fn write_raw(&self, path: &Path, offset: u64, data: &[u8]) -> Result<()> {
        let mut s = self.state.borrow_mut();
        let inode = s.helper_inode(path)?;
        put_at(&mut inode.durable, offset, data)?;
        put_at(&mut inode.current, offset, data)
    }

    /// Current length of `path`.
    pub fn file_len(&self, path: &Path) -> Result<u64> {
        let mut s = self.state.borrow_mut();
        Ok(s.helper_inode(path)?.current.len() as u64)
    }

    /// What a crash would leave under `path` (torn writes aside): the durable contents
    /// of the file the durable namespace names. `NotFound` if the name is not durable.
    pub fn read_durable(&self, path: &Path) -> Result<Vec<u8>> {
        let s = self.state.borrow();
        match s.durable.get(&norm(path)) {
            Some(Entry::File(ino)) => s
                .inodes
                .get(ino)
                .map(|i| i.durable.clone())
                .ok_or_else(|| not_found(path)),
            _ => Err(not_found(path)),
        }
    }

    /// Paths of all files in the current namespace, sorted.
    pub fn list_files(&self) -> Vec<PathBuf> {
        let s = self.state.borrow();
        s.current
            .iter()
            .filter(|(_, e)| matches!(e, Entry::File(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// An open file of [`SimFs`] for aligned random access.
#[derive(Debug)]
pub struct SimRwFile {
    fs: SimFs,
    ino: u64,
    generation: u64,
    path: PathBuf,
}

/// A sequential writer of [`SimFs`]: appends go to the file's current contents; they
/// become durable at `finish`.
#[derive(Debug)]
pub struct SimStreamWriter {
    fs: SimFs,
    ino: u64,
    generation: u64,
    path: PathBuf,
    pos: u64,
}

/// A read-only file of [`SimFs`]; its size is fixed when opened.
#[derive(Debug)]
pub struct SimReadFile {
    fs: SimFs,
    ino: u64,
    generation: u64,
    path: PathBuf,
    size: u64,
}

impl RwFile for SimRwFile {
    async fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        self.fs.io_delay().await;
        check_read_len(len)?;
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Read, &self.path, self.generation)?;
        Ok(read_from(&s.inode(self.ino, &self.path)?.current, pos, len))
    }

    async fn write_at(&self, pos: u64, data: &[u8]) -> Result<()> {
        self.fs.io_delay().await;
        if !is_io_aligned(pos) || !is_io_aligned(data.len() as u64) {
            return Err(Error::InvalidArgument(format!(
                "write_at({}, offset {pos}, {} bytes): offset and length must be multiples of {IO_ALIGN}",
                self.path.display(),
                data.len()
            )));
        }
        if data.len() > MAX_IO_BYTES {
            return Err(Error::InvalidArgument(format!(
                "write of {} bytes exceeds MAX_IO_BYTES ({MAX_IO_BYTES})",
                data.len()
            )));
        }
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Write, &self.path, self.generation)?;
        s.write(self.ino, &self.path, pos, data)
    }

    async fn sync(&self) -> Result<()> {
        // Like fdatasync: what it makes durable is fixed when it is issued; writes
        // that complete while it runs (slow I/O) stay unsynced.
        let upto = self.fs.state.borrow().ops_made(self.ino);
        self.fs.io_delay().await;
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Sync, &self.path, self.generation)?;
        s.inode(self.ino, &self.path)?.sync_upto(upto);
        Ok(())
    }

    async fn size(&self) -> Result<u64> {
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Metadata, &self.path, self.generation)?;
        Ok(s.inode(self.ino, &self.path)?.current.len() as u64)
    }

    async fn truncate(&self, len: u64) -> Result<()> {
        self.fs.io_delay().await;
        let len = usize::try_from(len)
            .map_err(|_| Error::InvalidArgument(format!("length {len} too large")))?;
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Write, &self.path, self.generation)?;
        let inode = s.inode(self.ino, &self.path)?;
        inode.current.resize(len, 0);
        // The truncation is now the newest change; no earlier write can come back torn
        // on top of it (it would be reverted to durable anyway).
        inode.last_write = None;
        inode.push_unsynced(ContentOp::SetLen(len));
        Ok(())
    }

    async fn preallocate(&self, _len: u64) -> Result<()> {
        // A hint: memory needs no reservation, but the op is counted like the real one.
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Write, &self.path, self.generation)
    }

    async fn close(self) -> Result<()> {
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Metadata, &self.path, self.generation)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl StreamWriter for SimStreamWriter {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.fs.io_delay().await;
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Write, &self.path, self.generation)?;
        s.write(self.ino, &self.path, self.pos, data)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.pos
    }

    async fn finish(self) -> Result<u64> {
        self.fs.io_delay().await;
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Sync, &self.path, self.generation)?;
        s.sync_file(self.ino, &self.path)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl ReadFile for SimReadFile {
    async fn read_exact_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        self.fs.io_delay().await;
        check_read_len(len)?;
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Read, &self.path, self.generation)?;
        let out = read_from(&s.inode(self.ino, &self.path)?.current, pos, len);
        if out.len() < len {
            return Err(Error::io(
                &self.path,
                io_err(
                    io::ErrorKind::UnexpectedEof,
                    &format!("read of {len} bytes at {pos} got {}", out.len()),
                ),
            ));
        }
        Ok(out)
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(self) -> Result<()> {
        let mut s = self.fs.state.borrow_mut();
        s.begin_handle(OpKind::Metadata, &self.path, self.generation)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl FileSystem for SimFs {
    type Rw = SimRwFile;
    type Writer = SimStreamWriter;
    type Reader = SimReadFile;

    async fn create_rw(&self, path: &Path) -> Result<SimRwFile> {
        self.io_delay().await;
        let p = norm(path);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, path)?;
        let ino = s.create_file(&p)?;
        Ok(SimRwFile {
            fs: self.clone(),
            ino,
            generation: s.generation,
            path: path.to_path_buf(),
        })
    }

    async fn open_rw(&self, path: &Path) -> Result<SimRwFile> {
        self.io_delay().await;
        let p = norm(path);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, path)?;
        let ino = s.lookup_file(&p)?;
        Ok(SimRwFile {
            fs: self.clone(),
            ino,
            generation: s.generation,
            path: path.to_path_buf(),
        })
    }

    async fn create_stream(&self, path: &Path, _buffer_bytes: usize) -> Result<SimStreamWriter> {
        self.io_delay().await;
        let p = norm(path);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, path)?;
        let ino = s.create_file(&p)?;
        Ok(SimStreamWriter {
            fs: self.clone(),
            ino,
            generation: s.generation,
            path: path.to_path_buf(),
            pos: 0,
        })
    }

    async fn open_read(&self, path: &Path) -> Result<SimReadFile> {
        self.io_delay().await;
        let p = norm(path);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, path)?;
        let ino = s.lookup_file(&p)?;
        let size = s.inode(ino, path)?.current.len() as u64;
        Ok(SimReadFile {
            fs: self.clone(),
            ino,
            generation: s.generation,
            path: path.to_path_buf(),
            size,
        })
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        self.io_delay().await;
        let p = norm(path);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, path)?;
        s.lookup_file(&p)?;
        // The inode lives on while open handles or the durable namespace refer to it;
        // restart collects it.
        s.current.remove(&p);
        s.ns_log.push(vec![(p, None)]);
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.io_delay().await;
        let (f, t) = (norm(from), norm(to));
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, from)?;
        let ino = s.lookup_file(&f)?;
        let to_parent = parent_of(&t);
        if !dir_exists(&s.current, &to_parent) {
            return Err(not_found(&to_parent));
        }
        if s.current.get(&t) == Some(&Entry::Dir) {
            return Err(Error::io(to, io::Error::from_raw_os_error(libc::EISDIR)));
        }
        s.current.remove(&f);
        s.current.insert(t.clone(), Entry::File(ino));
        s.ns_log.push(vec![(f, None), (t, Some(Entry::File(ino)))]);
        Ok(())
    }

    async fn hard_link(&self, from: &Path, to: &Path) -> Result<()> {
        self.io_delay().await;
        let (f, t) = (norm(from), norm(to));
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, from)?;
        let ino = s.lookup_file(&f)?;
        if !dir_exists(&s.current, &parent_of(&t)) {
            return Err(not_found(&parent_of(&t)));
        }
        if s.current.contains_key(&t) {
            return Err(Error::io(to, io::Error::from_raw_os_error(libc::EEXIST)));
        }
        s.current.insert(t.clone(), Entry::File(ino));
        s.ns_log.push(vec![(t, Some(Entry::File(ino)))]);
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.io_delay().await;
        let d = norm(dir);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Sync, dir)?;
        if !dir_exists(&s.current, &d) {
            return Err(not_found(dir));
        }
        let state = &mut *s;
        state.durable.retain(|p, _| parent_of(p) != d);
        for (p, e) in state.current.iter().filter(|(p, _)| parent_of(p) == d) {
            state.durable.insert(p.clone(), *e);
        }
        // Those changes are durable now; the others stay pending, in order.
        for op in &mut state.ns_log {
            op.retain(|(p, _)| parent_of(p) != d);
        }
        state.ns_log.retain(|op| !op.is_empty());
        Ok(())
    }

    async fn list_dir(&self, dir: &Path) -> Result<Vec<String>> {
        let d = norm(dir);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, dir)?;
        if !dir_exists(&s.current, &d) {
            return Err(not_found(dir));
        }
        let mut names: Vec<String> = s
            .current
            .keys()
            .filter(|p| parent_of(p) == d)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let d = norm(dir);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, dir)?;
        for anc in d.ancestors().collect::<Vec<_>>().into_iter().rev() {
            if is_root(anc) {
                continue;
            }
            match s.current.get(anc) {
                Some(Entry::Dir) => {}
                Some(Entry::File(_)) => {
                    return Err(Error::io(anc, io::Error::from_raw_os_error(libc::ENOTDIR)));
                }
                None => {
                    s.current.insert(anc.to_path_buf(), Entry::Dir);
                    s.ns_log.push(vec![(anc.to_path_buf(), Some(Entry::Dir))]);
                }
            }
        }
        Ok(())
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        let p = norm(path);
        let mut s = self.state.borrow_mut();
        s.begin(OpKind::Metadata, path)?;
        Ok(is_root(&p) || s.current.contains_key(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn block(fill: u8, blocks: usize) -> Vec<u8> {
        vec![fill; blocks * IO_ALIGN as usize]
    }

    /// A machine with a durable directory `/db`.
    fn setup(seed: u64) -> SimFs {
        let fs = SimFs::new(seed);
        block_on(async {
            fs.create_dir_all(&p("/db")).await.unwrap();
            fs.sync_dir(&p("/")).await.unwrap();
        });
        fs
    }

    #[test]
    fn unsynced_lost_synced_kept() {
        let fs = setup(1);
        block_on(async {
            let f = fs.create_rw(&p("/db/a")).await.unwrap();
            f.write_at(0, &block(1, 1)).await.unwrap();
            f.sync().await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
            f.write_at(4096, &block(2, 1)).await.unwrap();
            assert_eq!(f.size().await.unwrap(), 8192);
            assert_eq!(f.read_at(4096, 10).await.unwrap(), vec![2; 10]);
        });
        fs.crash();
        fs.restart();
        block_on(async {
            let f = fs.open_rw(&p("/db/a")).await.unwrap();
            assert_eq!(f.size().await.unwrap(), 4096);
            assert_eq!(f.read_at(0, 8192).await.unwrap(), block(1, 1));
        });
    }

    #[test]
    fn overwrite_unsynced_reverts_to_old_durable() {
        let fs = setup(2);
        block_on(async {
            let f = fs.create_rw(&p("/db/a")).await.unwrap();
            f.write_at(0, &block(1, 2)).await.unwrap();
            f.sync().await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
            f.write_at(0, &block(9, 1)).await.unwrap();
            f.truncate(100).await.unwrap();
        });
        fs.crash();
        fs.restart();
        assert_eq!(fs.read_durable(&p("/db/a")).unwrap(), block(1, 2));
        assert_eq!(fs.file_len(&p("/db/a")).unwrap(), 8192);
    }

    #[test]
    fn created_file_without_dir_sync_disappears() {
        let fs = setup(3);
        block_on(async {
            let f = fs.create_rw(&p("/db/new")).await.unwrap();
            f.write_at(0, &block(1, 1)).await.unwrap();
            f.sync().await.unwrap();
            assert!(fs.exists(&p("/db/new")).await.unwrap());
        });
        assert!(fs.read_durable(&p("/db/new")).is_err());
        fs.crash();
        fs.restart();
        block_on(async {
            assert!(!fs.exists(&p("/db/new")).await.unwrap());
            assert!(fs.list_dir(&p("/db")).await.unwrap().is_empty());
        });
    }

    #[test]
    fn rename_and_remove_need_dir_sync() {
        let fs = setup(4);
        block_on(async {
            let mut w = fs.create_stream(&p("/db/tmp"), 4096).await.unwrap();
            w.write(b"hello").await.unwrap();
            assert_eq!(w.finish().await.unwrap(), 5);
            let g = fs.create_rw(&p("/db/gone")).await.unwrap();
            g.sync().await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
            fs.rename(&p("/db/tmp"), &p("/db/final")).await.unwrap();
            fs.remove(&p("/db/gone")).await.unwrap();
            assert_eq!(fs.list_dir(&p("/db")).await.unwrap(), vec!["final"]);
        });
        // Not synced: the rename and the removal are undone.
        fs.restart();
        block_on(async {
            assert_eq!(fs.list_dir(&p("/db")).await.unwrap(), vec!["gone", "tmp"]);
            fs.rename(&p("/db/tmp"), &p("/db/final")).await.unwrap();
            fs.remove(&p("/db/gone")).await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
        });
        fs.crash();
        fs.restart();
        block_on(async {
            assert_eq!(fs.list_dir(&p("/db")).await.unwrap(), vec!["final"]);
            let r = fs.open_read(&p("/db/final")).await.unwrap();
            assert_eq!(r.size(), 5);
            assert_eq!(r.read_exact_at(0, 5).await.unwrap(), b"hello");
        });
    }

    #[test]
    fn rename_replaces_target() {
        let fs = setup(5);
        block_on(async {
            for (name, fill) in [("/db/a", 1u8), ("/db/b", 2u8)] {
                let f = fs.create_rw(&p(name)).await.unwrap();
                f.write_at(0, &block(fill, 1)).await.unwrap();
                f.sync().await.unwrap();
            }
            fs.rename(&p("/db/a"), &p("/db/b")).await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
        });
        fs.restart();
        assert_eq!(fs.read_durable(&p("/db/b")).unwrap(), block(1, 1));
        assert_eq!(fs.list_files(), vec![p("/db/b")]);
    }

    #[test]
    fn unsynced_directory_takes_its_files_along() {
        let fs = setup(6);
        block_on(async {
            fs.create_dir_all(&p("/db/shard0/sst")).await.unwrap();
            let f = fs.create_rw(&p("/db/shard0/sst/1")).await.unwrap();
            f.sync().await.unwrap();
            fs.sync_dir(&p("/db/shard0/sst")).await.unwrap();
            fs.sync_dir(&p("/db/shard0")).await.unwrap();
            // `/db` was never synced after `shard0` was made.
        });
        fs.restart();
        block_on(async {
            assert!(!fs.exists(&p("/db/shard0")).await.unwrap());
            assert!(fs.list_files().is_empty());
            fs.create_dir_all(&p("/db/shard0")).await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
        });
        fs.restart();
        block_on(async { assert!(fs.exists(&p("/db/shard0")).await.unwrap()) });
    }

    #[test]
    fn stream_unfinished_is_lost() {
        let fs = setup(7);
        block_on(async {
            let mut w = fs.create_stream(&p("/db/s"), 4096).await.unwrap();
            w.write(&[7; 100]).await.unwrap();
            assert_eq!(w.position(), 100);
            fs.sync_dir(&p("/db")).await.unwrap();
        });
        fs.crash();
        fs.restart();
        assert_eq!(fs.file_len(&p("/db/s")).unwrap(), 0);
    }

    #[test]
    fn torn_write_is_a_sector_prefix() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let fs = setup(seed);
            fs.set_torn_write_probability(1.0);
            let new = block(5, 2);
            block_on(async {
                let f = fs.create_rw(&p("/db/a")).await.unwrap();
                f.write_at(0, &block(1, 3)).await.unwrap();
                f.sync().await.unwrap();
                fs.sync_dir(&p("/db")).await.unwrap();
                f.write_at(0, &block(4, 2)).await.unwrap(); // overwritten below
                f.write_at(4096, &new).await.unwrap();
            });
            fs.crash();
            fs.restart();
            let d = fs.read_durable(&p("/db/a")).unwrap();
            assert_eq!(d.len(), 3 * 4096);
            // Only the last write may survive, as a prefix at a sector boundary.
            assert_eq!(&d[..4096], &block(1, 1)[..]);
            let kept = d[4096..].iter().take_while(|&&b| b == 5).count();
            assert_eq!(kept % 512, 0);
            assert!(d[4096 + kept..].iter().all(|&b| b == 1));
            seen.insert(kept);
        }
        // Over many seeds: nothing, everything and partial prefixes all happen.
        assert!(
            seen.contains(&0) && seen.contains(&8192) && seen.len() > 3,
            "{seen:?}"
        );
    }

    #[test]
    fn torn_unaligned_stream_write_beyond_durable_end() {
        let fs = setup(11);
        fs.set_torn_write_probability(1.0);
        block_on(async {
            let mut w = fs.create_stream(&p("/db/s"), 4096).await.unwrap();
            w.write(&[1; 700]).await.unwrap();
            w.write(&[2; 1000]).await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
        });
        fs.restart();
        let d = fs.read_durable(&p("/db/s")).unwrap();
        // Cut points of the write [700, 1700): 700, 1024, 1536, 1700.
        assert!([0, 1024, 1536, 1700].contains(&d.len()), "{}", d.len());
        assert!(d.iter().take(700.min(d.len())).all(|&b| b == 0));
        assert!(d.iter().skip(700).all(|&b| b == 2));
    }

    #[test]
    fn contract_violations_are_invalid_argument() {
        let fs = setup(8);
        block_on(async {
            let f = fs.create_rw(&p("/db/a")).await.unwrap();
            let bad = [
                f.write_at(1, &block(0, 1)).await,
                f.write_at(0, &[0; 100]).await,
                f.write_at(0, &block(0, MAX_IO_BYTES / 4096 + 1)).await,
            ];
            for r in bad {
                assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
            }
            let r = f.read_at(0, MAX_IO_BYTES + 1).await;
            assert!(matches!(r, Err(Error::InvalidArgument(_))));
            // Unaligned reads are fine.
            f.write_at(0, &block(3, 1)).await.unwrap();
            assert_eq!(f.read_at(10, 5).await.unwrap(), vec![3; 5]);
            f.sync().await.unwrap();
            let r = fs.open_read(&p("/db/a")).await.unwrap();
            assert!(matches!(
                r.read_exact_at(0, MAX_IO_BYTES + 1).await,
                Err(Error::InvalidArgument(_))
            ));
            match r.read_exact_at(4000, 100).await {
                Err(Error::Io { source, .. }) => {
                    assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof)
                }
                other => panic!("{other:?}"),
            }
            assert!(fs.open_rw(&p("/db/missing")).await.is_err());
            assert!(fs.create_rw(&p("/nodir/x")).await.is_err());
        });
    }

    #[test]
    fn crash_after_ops_and_ops_count() {
        let fs = setup(9);
        let before = fs.ops_count();
        block_on(async {
            let f = fs.create_rw(&p("/db/a")).await.unwrap();
            f.write_at(0, &block(1, 1)).await.unwrap();
            f.sync().await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
        });
        assert_eq!(fs.ops_count() - before, 4);
        fs.crash_after_ops(2);
        block_on(async {
            let f = fs.open_rw(&p("/db/a")).await.unwrap();
            assert!(matches!(
                f.write_at(0, &block(2, 1)).await,
                Err(Error::Crashed)
            ));
            assert!(fs.is_crashed());
            assert!(matches!(f.read_at(0, 1).await, Err(Error::Crashed)));
            assert!(matches!(fs.exists(&p("/db")).await, Err(Error::Crashed)));
        });
        fs.restart();
        block_on(async {
            assert!(!fs.is_crashed());
            let f = fs.open_rw(&p("/db/a")).await.unwrap();
            assert_eq!(f.read_at(0, 4096).await.unwrap(), block(1, 1));
        });
    }

    #[test]
    fn stale_handles_fail_after_restart() {
        let fs = setup(10);
        let f = block_on(fs.create_rw(&p("/db/a"))).unwrap();
        fs.restart();
        assert!(matches!(block_on(f.sync()), Err(Error::Crashed)));
    }

    #[test]
    fn fail_op_injects_eio_once() {
        let fs = setup(12);
        block_on(async {
            let f = fs.create_rw(&p("/db/a")).await.unwrap();
            fs.fail_op(2, OpKind::Write);
            f.write_at(0, &block(1, 1)).await.unwrap();
            f.sync().await.unwrap();
            match f.write_at(4096, &block(2, 1)).await {
                Err(Error::Io { source, path }) => {
                    assert_eq!(source.raw_os_error(), Some(libc::EIO));
                    assert_eq!(path, p("/db/a"));
                }
                other => panic!("{other:?}"),
            }
            // The failed write did nothing; the next one works.
            assert_eq!(f.size().await.unwrap(), 4096);
            f.write_at(4096, &block(2, 1)).await.unwrap();
            fs.fail_op(1, OpKind::Sync);
            assert!(matches!(f.sync().await, Err(Error::Io { .. })));
            f.sync().await.unwrap();
            fs.fail_op(1, OpKind::Read);
            assert!(f.read_at(0, 1).await.is_err());
            fs.fail_op(1, OpKind::Any);
            assert!(fs.list_dir(&p("/db")).await.is_err());
            assert!(fs.list_dir(&p("/db")).await.is_ok());
        });
    }

    #[test]
    fn bit_flip_and_raw_writes() {
        let fs = setup(13);
        block_on(async {
            let f = fs.create_rw(&p("/db/a")).await.unwrap();
            f.write_at(0, &block(0, 1)).await.unwrap();
            f.sync().await.unwrap();
            fs.sync_dir(&p("/db")).await.unwrap();
        });
        fs.flip_bit(&p("/db/a"), 10, 3).unwrap();
        assert_eq!(fs.read_durable(&p("/db/a")).unwrap()[10], 8);
        fs.write_raw(&p("/db/a"), 4095, &[1, 2]).unwrap();
        assert_eq!(fs.file_len(&p("/db/a")).unwrap(), 4097);
        block_on(async {
            let r = fs.open_read(&p("/db/a")).await.unwrap();
            assert_eq!(r.read_exact_at(10, 1).await.unwrap(), vec![8]);
            assert_eq!(r.read_exact_at(4095, 2).await.unwrap(), vec![1, 2]);
        });
        fs.restart();
        assert_eq!(fs.file_len(&p("/db/a")).unwrap(), 4097);
        assert!(fs.flip_bit(&p("/db/a"), 5000, 0).is_err());
        assert!(fs.flip_bit(&p("/db/a"), 0, 8).is_err());
    }

    /// Adversarial loss keeps any subset of unsynced pages: over seeds, a later page
    /// survives while an earlier one is lost, and each page is old or new, whole.
    #[test]
    fn adversarial_loss_keeps_any_subset_of_pages() {
        let mut out_of_order = false;
        for seed in 0..64 {
            let fs = setup(seed);
            fs.set_adversarial_power_loss(true);
            block_on(async {
                let f = fs.create_rw(&p("/db/f")).await.unwrap();
                f.write_at(0, &block(1, 8)).await.unwrap();
                f.sync().await.unwrap();
                fs.sync_dir(&p("/db")).await.unwrap();
                f.write_at(0, &block(2, 8)).await.unwrap();
            });
            fs.crash();
            fs.restart();
            let d = fs.read_durable(&p("/db/f")).unwrap();
            assert_eq!(d.len(), 8 * IO_ALIGN as usize);
            let new: Vec<bool> = d
                .chunks(IO_ALIGN as usize)
                .map(|pg| {
                    assert!(pg.iter().all(|&b| b == pg[0]) && (pg[0] == 1 || pg[0] == 2));
                    pg[0] == 2
                })
                .collect();
            out_of_order |= new.windows(2).any(|w| !w[0] && w[1]);
        }
        assert!(out_of_order, "no seed lost a page before a surviving one");
    }

    /// Adversarial loss keeps a prefix of unsynced name changes: `b`, created after
    /// `a`, never survives without it, and a name can survive with no `sync_dir`.
    #[test]
    fn adversarial_loss_keeps_a_prefix_of_name_changes() {
        let mut only_a = false;
        for seed in 0..64 {
            let fs = setup(seed);
            fs.set_adversarial_power_loss(true);
            block_on(async {
                fs.create_rw(&p("/db/a")).await.unwrap();
                fs.create_rw(&p("/db/b")).await.unwrap();
                fs.rename(&p("/db/b"), &p("/db/c")).await.unwrap();
            });
            fs.crash();
            fs.restart();
            let names: Vec<PathBuf> = fs.list_files();
            let has = |n: &str| names.contains(&p(n));
            assert!(!has("/db/b") || has("/db/a"), "seed {seed}: {names:?}");
            assert!(
                !has("/db/c") || (has("/db/a") && !has("/db/b")),
                "seed {seed}: {names:?}"
            );
            only_a |= has("/db/a") && !has("/db/b") && !has("/db/c");
        }
        assert!(only_a);
    }

    /// A workload with crashes and torn writes whose outcome depends on the seed only.
    fn run_workload(seed: u64) -> Vec<(PathBuf, Vec<u8>)> {
        let fs = setup(seed);
        fs.set_torn_write_probability(0.5);
        block_on(async {
            for i in 0..8u8 {
                let path = p(&format!("/db/f{i}"));
                let f = fs.create_rw(&path).await.unwrap();
                f.write_at(0, &block(i, 2)).await.unwrap();
                f.sync().await.unwrap();
                f.write_at(4096, &block(100 + i, 2)).await.unwrap();
            }
            fs.sync_dir(&p("/db")).await.unwrap();
        });
        fs.crash();
        fs.restart();
        fs.list_files()
            .into_iter()
            .map(|f| {
                let d = fs.read_durable(&f).unwrap();
                (f, d)
            })
            .collect()
    }

    #[test]
    fn same_seed_same_outcome() {
        assert_eq!(run_workload(42), run_workload(42));
        let differs = (0..8).any(|s| run_workload(s) != run_workload(s + 100));
        assert!(differs);
    }
}
