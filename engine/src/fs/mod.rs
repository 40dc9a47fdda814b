//! The file-system boundary of the engine.
//!
//! Two drivers implement [`FileSystem`]: [`glommio_fs::DmaFs`] (direct I/O on io_uring,
//! production) and [`sim::SimFs`] (in memory, seeded, with fault injection: unsynced
//! data lost on crash, torn last writes, bit flips, EIO on a chosen operation).
//!
//! Contract shared by both drivers (the simulator enforces it, so tests catch misuse):
//! - [`RwFile::write_at`] takes offsets and lengths that are multiples of
//!   [`crate::config::IO_ALIGN`] (direct I/O).
//! - Nothing is durable until [`RwFile::sync`] / [`StreamWriter::finish`] returns; a
//!   created, renamed or removed name is durable only after [`FileSystem::sync_dir`] on
//!   its directory.
//! - No single read exceeds [`crate::config::MAX_IO_BYTES`]; callers split larger reads.
//! - All futures are `!Send`: a file belongs to the core that opened it.

pub mod atomic;
pub mod glommio_fs;
pub mod sim;

use crate::Result;
use crate::config::IO_ALIGN;
use std::path::{Path, PathBuf};

/// A file opened for aligned random writes and reads (log segments, manifest).
#[allow(async_fn_in_trait)]
pub trait RwFile {
    /// Reads up to `len` bytes at `pos`; shorter only at end of file. `pos` and `len`
    /// need not be aligned.
    async fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>>;
    /// Writes `data` at `pos`; both must be multiples of `IO_ALIGN`.
    async fn write_at(&self, pos: u64, data: &[u8]) -> Result<()>;
    /// `fdatasync`: everything written before is durable when this returns.
    async fn sync(&self) -> Result<()>;
    /// Current size in bytes.
    async fn size(&self) -> Result<u64>;
    /// Cuts or extends the file to `len` bytes (durable after `sync`).
    async fn truncate(&self, len: u64) -> Result<()>;
    /// Reserves space so later writes do not allocate (a hint; may be a no-op).
    async fn preallocate(&self, len: u64) -> Result<()>;
    /// Closes the file.
    async fn close(self) -> Result<()>;
    /// The path the file was opened with (for error messages).
    fn path(&self) -> &Path;
}

/// A write-once sequential file (SSTables): buffered, written behind, synced on finish.
#[allow(async_fn_in_trait)]
pub trait StreamWriter {
    /// Appends bytes (any length, any alignment).
    async fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Bytes appended so far.
    fn position(&self) -> u64;
    /// Flushes, syncs and closes; returns the final file size. Durable on return
    /// (its directory entry still needs `sync_dir`).
    async fn finish(self) -> Result<u64>;
    fn path(&self) -> &Path;
}

/// A sealed, read-only file (SSTables after `finish`).
#[allow(async_fn_in_trait)]
pub trait ReadFile {
    /// Reads exactly `len` bytes at `pos` (error if the file is shorter).
    async fn read_exact_at(&self, pos: u64, len: usize) -> Result<Vec<u8>>;
    /// File size in bytes.
    fn size(&self) -> u64;
    async fn close(self) -> Result<()>;
    fn path(&self) -> &Path;
}

/// The file system of one shard. Cheap to clone (a handle).
#[allow(async_fn_in_trait)]
pub trait FileSystem: Clone + 'static {
    type Rw: RwFile;
    type Writer: StreamWriter;
    type Reader: ReadFile;

    /// Creates (or truncates) a file for aligned random writes.
    async fn create_rw(&self, path: &Path) -> Result<Self::Rw>;
    /// Opens an existing file for aligned random writes and reads.
    async fn open_rw(&self, path: &Path) -> Result<Self::Rw>;
    /// Creates a new file to be written once, sequentially.
    async fn create_stream(&self, path: &Path, buffer_bytes: usize) -> Result<Self::Writer>;
    /// Opens a finished file for reading.
    async fn open_read(&self, path: &Path) -> Result<Self::Reader>;
    /// Removes a file.
    async fn remove(&self, path: &Path) -> Result<()>;
    /// Renames a file, replacing `to` if it exists.
    async fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Gives the file `from` a second name `to` (which must not exist): a hard link,
    /// so a backup shares an immutable file instead of copying it. Durable after
    /// `sync_dir` on `to`'s directory. Fails across file systems.
    async fn hard_link(&self, from: &Path, to: &Path) -> Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> Result<()>;
    /// Names (not paths) of the entries of `dir`, sorted.
    async fn list_dir(&self, dir: &Path) -> Result<Vec<String>>;
    /// Creates `dir` and its parents.
    async fn create_dir_all(&self, dir: &Path) -> Result<()>;
    /// True if `path` exists.
    async fn exists(&self, path: &Path) -> Result<bool>;
}

/// True if `v` is a multiple of [`IO_ALIGN`] (a power of two), as direct I/O needs.
pub fn is_io_aligned(v: u64) -> bool {
    v & (IO_ALIGN - 1) == 0
}

/// Joins a directory and a file name.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Creates `dir` and any missing parents durably: each directory created is followed by
/// an fsync of its parent, so the new names survive a crash.
pub async fn create_dir_all_durable<F: FileSystem>(fs: &F, dir: &Path) -> Result<()> {
    let mut prefix = PathBuf::new();
    for comp in dir.components() {
        prefix.push(comp);
        if fs.exists(&prefix).await? {
            continue;
        }
        fs.create_dir_all(&prefix).await?;
        if let Some(parent) = prefix.parent()
            && !parent.as_os_str().is_empty()
        {
            fs.sync_dir(parent).await?;
        }
    }
    Ok(())
}
