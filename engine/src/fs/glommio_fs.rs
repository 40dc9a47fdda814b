//! Production driver: direct I/O (`O_DIRECT`) on io_uring through glommio 0.9.
//!
//! - [`DmaRwFile`] wraps a [`DmaFile`] (log segments, manifest): aligned writes from DMA
//!   buffers, reads through aligned spans that are sliced down to what was asked.
//! - [`DmaStreamFile`] wraps a [`DmaStreamWriter`] (SSTables). glommio pads the last
//!   block to the alignment and cuts the padding off on close; `finish` then reopens the
//!   file, checks its size is the logical size and `fdatasync`s it, so the cut size is
//!   durable too (glommio's own sync-on-close runs *before* that truncation).
//! - [`DmaReadFile`] wraps a read-only [`DmaFile`] whose size is read once at open.
//!
//! glommio's `read_at` with an unaligned offset can slice past the end of what the
//! kernel returned near the end of a file, so every read here goes through
//! `read_at_aligned` and is sliced by this module.
//!
//! All calls must run inside a glommio executor ([`run_local`] starts one for tests and
//! tools). Locked memory is needed for the io_uring rings and buffers:
//! [`raise_memlock_limit`].

use crate::config::{IO_ALIGN, MAX_IO_BYTES, MIN_MEMLOCK_BYTES, STREAM_WRITE_BEHIND};
use crate::fs::{FileSystem, ReadFile, RwFile, StreamWriter, is_io_aligned};
use crate::{Error, Result};
use futures_lite::AsyncWriteExt;
use glommio::io::{Directory, DmaFile, DmaStreamWriter, DmaStreamWriterBuilder, OpenOptions};
use glommio::{GlommioError, Placement};
use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The direct-I/O file system. Paths are used as given (absolute or relative to the
/// working directory). A zero-sized handle: cloning is free.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaFs;

impl DmaFs {
    pub fn new() -> DmaFs {
        DmaFs
    }
}

/// Keeps the OS error itself (errno intact, so callers can tell EIO from ENOSPC); our
/// [`Error::Io`] already names the path that glommio's wrapper would have added.
fn to_io(e: GlommioError<()>) -> io::Error {
    match e {
        GlommioError::EnhancedIoError { source, .. } => source,
        other => other.into(),
    }
}

fn gerr(path: &Path) -> impl FnOnce(GlommioError<()>) -> Error + '_ {
    move |e| Error::io(path, to_io(e))
}

/// Error of an open or create. glommio switches the descriptor to `O_DIRECT` after
/// opening it, which fails with EINVAL on file systems without direct I/O: say so.
fn open_err(path: &Path) -> impl FnOnce(GlommioError<()>) -> Error + '_ {
    move |e| {
        let source = to_io(e);
        if source.raw_os_error() == Some(libc::EINVAL) {
            let msg = format!(
                "{source}: cannot open with O_DIRECT; the data directory must be on a file \
                 system that supports O_DIRECT (ext4, xfs)"
            );
            return Error::io(path, io::Error::new(source.kind(), msg));
        }
        Error::io(path, source)
    }
}

thread_local! {
    /// Devices (`st_dev`) whose io_uring poll support glommio has probed on this thread.
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// glommio decides, once per thread and device, whether direct I/O goes through the
/// polled ring by reading the first block of the first file opened there. An empty
/// file answers that read without touching the device, so the probe says "pollable"
/// and every later read on a device without poll queues fails with EOPNOTSUPP. Before
/// the first open on a device we therefore open a one-block anonymous file
/// (`O_TMPFILE`, never visible in the directory, gone on close or crash) so the probe
/// sees a real read. Blocking std calls: once per thread and device.
async fn ensure_iopoll_probed(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A missing directory is reported by the real operation that follows.
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let dev = meta.dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return;
    }
    match probe_device(dir).await {
        Ok(()) => PROBED_DEVICES.with(|p| {
            p.borrow_mut().insert(dev);
        }),
        // Read-only directory or no O_TMPFILE: the first real file decides instead,
        // which is only wrong if that file is empty.
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "io_uring poll probe skipped"),
    }
}

async fn probe_device(dir: &Path) -> io::Result<()> {
    let tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)?;
    tmp.write_all_at(&[0; IO_ALIGN as usize], 0)?;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", tmp.as_raw_fd()));
    let file = DmaFile::open(&by_fd).await.map_err(to_io)?;
    file.close().await.map_err(to_io)
}

fn check_read_len(len: usize) -> Result<()> {
    if len > MAX_IO_BYTES {
        return Err(Error::InvalidArgument(format!(
            "read of {len} bytes exceeds MAX_IO_BYTES ({MAX_IO_BYTES}); split it"
        )));
    }
    Ok(())
}

fn eof(path: &Path, pos: u64, len: usize, got: usize) -> Error {
    Error::io(
        path,
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read of {len} bytes at offset {pos} found only {got}"),
        ),
    )
}

/// Reads up to `len` bytes at `pos` (fewer only at end of file). Each device read covers
/// an aligned span of at most `MAX_IO_BYTES` (the alignment, 512 or 4096, divides it).
async fn read_upto(file: &DmaFile, path: &Path, pos: u64, len: usize) -> Result<Vec<u8>> {
    if pos.checked_add(len as u64).is_none() {
        return Err(Error::InvalidArgument(format!("read at {pos} overflows")));
    }
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let p = pos + out.len() as u64;
        let start = file.align_down(p);
        let head = (p - start) as usize;
        let want = (len - out.len()).min(MAX_IO_BYTES - head);
        let span = file.align_up((head + want) as u64) as usize;
        let r = file
            .read_at_aligned(start, span)
            .await
            .map_err(gerr(path))?;
        let got = r.len().saturating_sub(head).min(want);
        if got > 0 {
            out.extend_from_slice(&r[head..head + got]);
        }
        // Regular files return short reads only at end of file.
        if r.len() < span {
            break;
        }
    }
    Ok(out)
}

/// A file for aligned random writes and reads (log segments, manifest).
#[derive(Debug)]
pub struct DmaRwFile {
    file: DmaFile,
    path: PathBuf,
}

/// A write-once sequential file (SSTables).
#[derive(Debug)]
pub struct DmaStreamFile {
    writer: DmaStreamWriter,
    path: PathBuf,
}

/// A sealed read-only file; its size is read when opened.
#[derive(Debug)]
pub struct DmaReadFile {
    file: DmaFile,
    path: PathBuf,
    size: u64,
}

impl RwFile for DmaRwFile {
    async fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        check_read_len(len)?;
        read_upto(&self.file, &self.path, pos, len).await
    }

    async fn write_at(&self, pos: u64, data: &[u8]) -> Result<()> {
        if !is_io_aligned(pos) || !is_io_aligned(data.len() as u64) {
            return Err(Error::InvalidArgument(format!(
                "write_at({}, offset {pos}, {} bytes): offset and length must be multiples \
                 of IO_ALIGN",
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
        let mut done = 0;
        while done < data.len() {
            let rest = &data[done..];
            let mut buf = self.file.alloc_dma_buffer(rest.len());
            buf.as_bytes_mut()[..rest.len()].copy_from_slice(rest);
            let n = self
                .file
                .write_at(buf, pos + done as u64)
                .await
                .map_err(gerr(&self.path))?;
            if n == 0 {
                return Err(Error::io(
                    &self.path,
                    io::Error::new(io::ErrorKind::WriteZero, "device accepted no bytes"),
                ));
            }
            done += n;
        }
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        self.file.fdatasync().await.map_err(gerr(&self.path))
    }

    async fn size(&self) -> Result<u64> {
        self.file.file_size().await.map_err(gerr(&self.path))
    }

    async fn truncate(&self, len: u64) -> Result<()> {
        self.file.truncate(len).await.map_err(gerr(&self.path))
    }

    async fn preallocate(&self, len: u64) -> Result<()> {
        // Keep the size: readers of a log segment find its end by its contents, and a
        // size grown by fallocate would only add zeros to scan.
        match self.file.pre_allocate(len, true).await.map_err(to_io) {
            Ok(()) => Ok(()),
            // A hint only: file systems without fallocate still work.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    async fn close(self) -> Result<()> {
        self.file.close().await.map_err(gerr(&self.path))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl StreamWriter for DmaStreamFile {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.writer
            .write_all(data)
            .await
            .map_err(|e| Error::io(&self.path, e))
    }

    fn position(&self) -> u64 {
        self.writer.current_pos()
    }

    async fn finish(mut self) -> Result<u64> {
        let size = self.writer.current_pos();
        // Writes the padded tail block, truncates the padding away and closes. The
        // writer was built without sync-on-close: glommio would sync before the
        // truncation, leaving the final size undurable; we sync once, below.
        self.writer
            .close()
            .await
            .map_err(|e| Error::io(&self.path, e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&self.path)
            .await
            .map_err(open_err(&self.path))?;
        let actual = file.file_size().await.map_err(gerr(&self.path))?;
        if actual < size {
            return Err(eof(&self.path, 0, size as usize, actual as usize));
        }
        if actual > size {
            file.truncate(size).await.map_err(gerr(&self.path))?;
        }
        file.fdatasync().await.map_err(gerr(&self.path))?;
        file.close().await.map_err(gerr(&self.path))?;
        Ok(size)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl ReadFile for DmaReadFile {
    async fn read_exact_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        check_read_len(len)?;
        let end = pos.checked_add(len as u64);
        if end.is_none_or(|end| end > self.size) {
            let got = self.size.saturating_sub(pos).min(len as u64) as usize;
            return Err(eof(&self.path, pos, len, got));
        }
        let out = read_upto(&self.file, &self.path, pos, len).await?;
        if out.len() < len {
            // Shrunk behind our back since it was opened.
            return Err(eof(&self.path, pos, len, out.len()));
        }
        Ok(out)
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(self) -> Result<()> {
        self.file.close().await.map_err(gerr(&self.path))
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl FileSystem for DmaFs {
    type Rw = DmaRwFile;
    type Writer = DmaStreamFile;
    type Reader = DmaReadFile;

    async fn create_rw(&self, path: &Path) -> Result<DmaRwFile> {
        ensure_iopoll_probed(path).await;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(path)
            .await
            .map_err(open_err(path))?;
        Ok(DmaRwFile {
            file,
            path: path.to_path_buf(),
        })
    }

    async fn open_rw(&self, path: &Path) -> Result<DmaRwFile> {
        ensure_iopoll_probed(path).await;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(open_err(path))?;
        Ok(DmaRwFile {
            file,
            path: path.to_path_buf(),
        })
    }

    async fn create_stream(&self, path: &Path, buffer_bytes: usize) -> Result<DmaStreamFile> {
        ensure_iopoll_probed(path).await;
        let file = DmaFile::create(path).await.map_err(open_err(path))?;
        // Each flush writes one buffer: keep it within the single-I/O limit.
        let buffer = buffer_bytes.clamp(IO_ALIGN as usize, MAX_IO_BYTES);
        let writer = DmaStreamWriterBuilder::new(file)
            .with_buffer_size(buffer)
            .with_write_behind(STREAM_WRITE_BEHIND)
            .with_sync_on_close_disabled(true)
            .build();
        Ok(DmaStreamFile {
            writer,
            path: path.to_path_buf(),
        })
    }

    async fn open_read(&self, path: &Path) -> Result<DmaReadFile> {
        ensure_iopoll_probed(path).await;
        let file = DmaFile::open(path).await.map_err(open_err(path))?;
        let size = file.file_size().await.map_err(gerr(path))?;
        Ok(DmaReadFile {
            file,
            path: path.to_path_buf(),
            size,
        })
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        glommio::io::remove(path).await.map_err(gerr(path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        glommio::io::rename(from, to).await.map_err(gerr(from))
    }

    async fn hard_link(&self, from: &Path, to: &Path) -> Result<()> {
        // One metadata syscall, like the directory fsync below: not worth a thread.
        std::fs::hard_link(from, to).map_err(|e| Error::io(to, e))
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        // glommio opens directories relative to no directory fd: a relative path fails
        // with EBADF, so resolve it against the working directory first.
        let abs;
        let dir = if dir.is_relative() {
            abs = std::env::current_dir()
                .map_err(|e| Error::io(dir, e))?
                .join(dir);
            abs.as_path()
        } else {
            dir
        };
        let d = Directory::open(dir).await.map_err(gerr(dir))?;
        d.sync().await.map_err(gerr(dir))?;
        d.close().await.map_err(gerr(dir))
    }

    async fn list_dir(&self, dir: &Path) -> Result<Vec<String>> {
        // Blocking std call: listing happens at open and recovery only, never on the
        // data path, and io_uring has no getdents.
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        // Blocking std call: done once per shard at startup.
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        // Blocking std call (a stat): rare, at open and recovery.
        path.try_exists().map_err(|e| Error::io(path, e))
    }
}

fn memlock_limit() -> std::result::Result<libc::rlimit, String> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut cur) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_MEMLOCK) failed: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(cur)
}

fn set_memlock_limit(soft: libc::rlim_t, hard: libc::rlim_t) -> io::Result<()> {
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises RLIMIT_MEMLOCK to at least [`MIN_MEMLOCK_BYTES`]: glommio locks its io_uring
/// rings and registers its DMA buffers, and runs slower (unregistered buffers) or not
/// at all when the limit is low. The hard limit is raised too when the process may
/// (CAP_SYS_RESOURCE). If the target cannot be reached, the soft limit is still raised
/// as far as the hard limit allows and the error says how to fix it; the caller
/// decides whether that is fatal (an executor starts from 512 KiB).
pub fn raise_memlock_limit() -> std::result::Result<(), String> {
    let want = MIN_MEMLOCK_BYTES as libc::rlim_t;
    let cur = memlock_limit()?;
    // RLIM_INFINITY is the largest value, so it passes this test.
    if cur.rlim_cur >= want {
        return Ok(());
    }
    // Below the hard limit this needs no privilege; above it, CAP_SYS_RESOURCE.
    let err = match set_memlock_limit(want, cur.rlim_max.max(want)) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if cur.rlim_max > cur.rlim_cur {
        // Best effort: the rest of the way is what the error below reports.
        let _ = set_memlock_limit(cur.rlim_max, cur.rlim_max);
    }
    Err(format!(
        "RLIMIT_MEMLOCK is limited to {} bytes (hard limit) and could not be raised to \
         {want}: {err}. glommio needs locked memory for io_uring: raise it with \
         `ulimit -l unlimited` in the shell or `LimitMEMLOCK=infinity` in the systemd unit",
        cur.rlim_max
    ))
}

/// Runs `fut` to completion on a glommio executor on the current thread (tests and
/// tools). Raises the memlock limit as far as allowed and keeps the registered I/O
/// memory small, so it also runs under a low limit. The current thread must not
/// already run an executor.
pub fn run_local<F: Future>(fut: F) -> std::result::Result<F::Output, String> {
    let raised = raise_memlock_limit();
    let ex = crate::runtime::executor_builder(Placement::Unbound)
        .make()
        .map_err(|e| match &raised {
            Err(why) => format!("cannot start a glommio executor: {e}; {why}"),
            Ok(()) => format!("cannot start a glommio executor: {e}"),
        })?;
    Ok(ex.run(fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl Future<Output = T>) -> T {
        run_local(f).unwrap()
    }

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ salt).collect()
    }

    #[test]
    fn memlock_limit_is_raised_as_far_as_allowed() {
        let result = raise_memlock_limit();
        let cur = memlock_limit().unwrap();
        let want = MIN_MEMLOCK_BYTES as libc::rlim_t;
        match result {
            Ok(()) => assert!(cur.rlim_cur >= want),
            Err(msg) => {
                assert!(msg.contains("ulimit -l"), "{msg}");
                assert_eq!(cur.rlim_cur, cur.rlim_max);
                assert!(cur.rlim_max < want);
            }
        }
    }

    #[test]
    fn rw_file_roundtrip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        run(async {
            let fs = DmaFs::new();
            // The first file opened on this thread is empty: without the poll probe
            // on a real block, every read below would fail with EOPNOTSUPP on devices
            // without io_uring poll queues.
            let f = fs.create_rw(&path).await.unwrap();
            let dev = std::fs::metadata(dir.path()).unwrap().dev();
            assert!(PROBED_DEVICES.with(|p| p.borrow().contains(&dev)));
            let data = pattern(3 * IO_ALIGN as usize, 7);
            f.write_at(0, &data).await.unwrap();
            f.write_at(3 * IO_ALIGN, &pattern(IO_ALIGN as usize, 9))
                .await
                .unwrap();
            f.sync().await.unwrap();
            assert_eq!(f.size().await.unwrap(), 4 * IO_ALIGN);
            // Unaligned reads, including across blocks and past the end.
            assert_eq!(f.read_at(100, 5000).await.unwrap(), data[100..5100]);
            let tail = f.read_at(4 * IO_ALIGN - 10, 100).await.unwrap();
            assert_eq!(
                tail,
                pattern(IO_ALIGN as usize, 9)[IO_ALIGN as usize - 10..]
            );
            assert!(f.read_at(10 * IO_ALIGN, 10).await.unwrap().is_empty());
            f.truncate(IO_ALIGN + 10).await.unwrap();
            f.preallocate(64 * IO_ALIGN).await.unwrap();
            assert_eq!(f.size().await.unwrap(), IO_ALIGN + 10);
            f.sync().await.unwrap();
            f.close().await.unwrap();
            let f = fs.open_rw(&path).await.unwrap();
            assert_eq!(f.read_at(0, 1 << 20).await.unwrap(), data[..4106]);
            f.close().await.unwrap();
        });
    }

    #[test]
    fn misaligned_writes_and_oversized_reads_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        run(async {
            let fs = DmaFs::new();
            let f = fs.create_rw(&path).await.unwrap();
            for r in [
                f.write_at(512, &[0; 4096]).await,
                f.write_at(0, &[0; 1000]).await,
                f.write_at(0, &vec![0; MAX_IO_BYTES + IO_ALIGN as usize])
                    .await,
            ] {
                assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
            }
            let r = f.read_at(0, MAX_IO_BYTES + 1).await;
            assert!(matches!(r, Err(Error::InvalidArgument(_))));
            f.close().await.unwrap();
        });
    }

    #[test]
    fn large_unaligned_read_is_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        run(async {
            let fs = DmaFs::new();
            let f = fs.create_rw(&path).await.unwrap();
            let data = pattern(MAX_IO_BYTES * 2, 3);
            f.write_at(0, &data[..MAX_IO_BYTES]).await.unwrap();
            f.write_at(MAX_IO_BYTES as u64, &data[MAX_IO_BYTES..])
                .await
                .unwrap();
            f.sync().await.unwrap();
            // A full-size read at an unaligned offset spans one block more than the
            // limit on the device; it must be split and still be exact.
            let got = f.read_at(123, MAX_IO_BYTES).await.unwrap();
            assert_eq!(got, data[123..123 + MAX_IO_BYTES]);
            f.close().await.unwrap();
            let r = fs.open_read(&path).await.unwrap();
            let got = r.read_exact_at(4095, MAX_IO_BYTES).await.unwrap();
            assert_eq!(got, data[4095..4095 + MAX_IO_BYTES]);
            r.close().await.unwrap();
        });
    }

    #[test]
    fn stream_writer_final_size_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        run(async {
            let fs = DmaFs::new();
            for (i, len) in [0usize, 1, 4095, 4096, 4097, 70_000, 200_001]
                .into_iter()
                .enumerate()
            {
                let path = dir.path().join(format!("sst{i}"));
                let data = pattern(len, i as u8);
                // A small buffer so that several flushes and a padded tail happen.
                let mut w = fs.create_stream(&path, 16 << 10).await.unwrap();
                for chunk in data.chunks(777) {
                    w.write(chunk).await.unwrap();
                }
                assert_eq!(w.position(), len as u64);
                assert_eq!(w.finish().await.unwrap(), len as u64);
                assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64);
                let r = fs.open_read(&path).await.unwrap();
                assert_eq!(r.size(), len as u64);
                if len > 0 {
                    let n = len.min(MAX_IO_BYTES);
                    assert_eq!(r.read_exact_at(0, n).await.unwrap(), data[..n]);
                    let last = r.read_exact_at(len as u64 - 1, 1).await.unwrap();
                    assert_eq!(last, data[len - 1..]);
                }
                match r.read_exact_at(len as u64, 1).await {
                    Err(Error::Io { source, .. }) => {
                        assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof)
                    }
                    other => panic!("{other:?}"),
                }
                r.close().await.unwrap();
            }
        });
    }

    #[test]
    fn rename_sync_dir_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shard0").join("sst");
        run(async {
            let fs = DmaFs::new();
            fs.create_dir_all(&root).await.unwrap();
            assert!(fs.exists(&root).await.unwrap());
            for name in ["b.tmp", "a"] {
                let mut w = fs.create_stream(&root.join(name), 4096).await.unwrap();
                w.write(name.as_bytes()).await.unwrap();
                w.finish().await.unwrap();
            }
            fs.rename(&root.join("b.tmp"), &root.join("b"))
                .await
                .unwrap();
            fs.sync_dir(&root).await.unwrap();
            assert_eq!(fs.list_dir(&root).await.unwrap(), vec!["a", "b"]);
            // Rename replaces an existing target.
            fs.rename(&root.join("a"), &root.join("b")).await.unwrap();
            let r = fs.open_read(&root.join("b")).await.unwrap();
            assert_eq!(r.read_exact_at(0, 1).await.unwrap(), b"a");
            r.close().await.unwrap();
            fs.remove(&root.join("b")).await.unwrap();
            fs.sync_dir(&root).await.unwrap();
            assert!(fs.list_dir(&root).await.unwrap().is_empty());
            assert!(!fs.exists(&root.join("b")).await.unwrap());
            // Errors name the path.
            match fs.open_read(&root.join("missing")).await {
                Err(Error::Io { path, source }) => {
                    assert_eq!(path, root.join("missing"));
                    assert_eq!(source.kind(), io::ErrorKind::NotFound);
                }
                other => panic!("{other:?}"),
            }
            assert!(fs.remove(&root.join("missing")).await.is_err());
            assert!(fs.sync_dir(&root.join("nodir")).await.is_err());
        });
    }
}
