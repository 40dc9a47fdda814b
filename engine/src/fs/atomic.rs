//! The one way NextDB replaces a small whole file (`CURRENT`, `NODE`, `users`,
//! `auth-secret`): write a
//! temporary file, fsync it, rename it over the name, fsync the directory.
//!
//! The sequence is written once, in [`write_atomic`], over the three operations it
//! needs ([`AtomicFiles`]). Engine code runs it on its [`FileSystem`] (inside the
//! core's executor); node start-up and the admin tool, which run on plain threads,
//! run the same function on [`StdFiles`] through [`write_atomic_blocking`].

use super::{FileSystem, StreamWriter};
use crate::{Error, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Suffix of the temporary file (`NAME.tmp`). Readers ignore it; a writer overwrites
/// a stale one left by a crash.
pub const TMP_SUFFIX: &str = ".tmp";

/// The file operations the atomic replace needs.
#[allow(async_fn_in_trait)]
pub trait AtomicFiles {
    /// Creates (or truncates) `path`, writes `data`, fsyncs it: durable on return (its
    /// name is not).
    async fn write_synced(&self, path: &Path, data: &[u8]) -> Result<()>;
    /// Renames `from` over `to`, replacing it.
    async fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Makes the names in `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> Result<()>;
}

impl<F: FileSystem> AtomicFiles for F {
    async fn write_synced(&self, path: &Path, data: &[u8]) -> Result<()> {
        let mut w = self.create_stream(path, data.len().max(1)).await?;
        w.write(data).await?;
        w.finish().await?;
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        FileSystem::rename(self, from, to).await
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        FileSystem::sync_dir(self, dir).await
    }
}

/// Blocking `std::fs`, for threads that run no executor (node start-up, admin tool),
/// creating files with permission bits `mode` (e.g. 0o600 for secrets).
#[derive(Debug, Clone, Copy)]
pub struct StdFiles {
    pub mode: u32,
}

impl AtomicFiles for StdFiles {
    async fn write_synced(&self, path: &Path, data: &[u8]) -> Result<()> {
        let io = |e| Error::io(path, e);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(self.mode)
            .open(path)
            .map_err(io)?;
        // A stale temporary file keeps its old mode (and `open` applies the umask):
        // set the bits explicitly before any byte is written.
        f.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(io)?;
        f.write_all(data).map_err(io)?;
        f.sync_all().map_err(io)
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(|e| Error::io(to, e))
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        let io = |e| Error::io(dir, e);
        std::fs::File::open(dir).map_err(io)?.sync_all().map_err(io)
    }
}

/// Replaces `dir/name` with `data` so that, whenever power fails, the name holds the
/// old content or the new one in full — never a mix, never an empty file. `dir` must
/// exist (durably, if the caller relies on it).
///
/// Crash argument, by the step power fails after (both drivers assume `fsync` of a
/// file makes its bytes durable and `fsync` of a directory makes its names durable):
/// 1. **`name.tmp` written and fsynced** (or failing in the middle): `name` was not
///    touched and still holds the old content (or does not exist on a first write).
///    `name.tmp` may be missing, partial or whole; nothing reads it, and the next
///    replace truncates it.
/// 2. **renamed over `name`, directory not yet fsynced**: the rename may or may not
///    have reached the disk. If not, `name` is the old file; if so, `name` is the new
///    file, whose bytes were durable before the rename was issued (step 1), so it is
///    whole. Either way the name points at one complete inode.
/// 3. **directory fsynced**: `name` durably holds the new content.
///
/// Returns once step 3 is done; an error leaves the name in one of those states.
pub async fn write_atomic<A: AtomicFiles>(
    fs: &A,
    dir: &Path,
    name: &str,
    data: &[u8],
) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    fs.write_synced(&tmp, data).await?;
    fs.rename(&tmp, &path).await?;
    fs.sync_dir(dir).await
}

/// [`write_atomic`] on `std::fs`, for callers outside an executor; the file gets
/// permission bits `mode`.
pub fn write_atomic_blocking(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<()> {
    futures_lite::future::block_on(write_atomic(&StdFiles { mode }, dir, name, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ReadFile;
    use crate::fs::glommio_fs::run_local;
    use crate::fs::sim::SimFs;

    async fn read(fs: &SimFs, path: &Path) -> Option<Vec<u8>> {
        let f = fs.open_read(path).await.ok()?;
        let n = f.size() as usize;
        Some(f.read_exact_at(0, n).await.unwrap())
    }

    /// Crashes a replace after each of its operations in turn: the name holds the old
    /// or the new content, whole, and once the replace returned, the new one.
    #[test]
    fn crash_after_every_step_leaves_old_or_new_content() {
        let dir = Path::new("/d");
        let old = b"old content\n".repeat(500);
        let new = b"the new content, longer than the old\n".repeat(400);
        for first_write in [true, false] {
            let mut finished = false;
            let mut n = 1;
            while !finished {
                run_local(async {
                    let fs = SimFs::new(n);
                    crate::fs::create_dir_all_durable(&fs, dir).await.unwrap();
                    if !first_write {
                        write_atomic(&fs, dir, "F", &old).await.unwrap();
                    }
                    fs.crash_after_ops(n);
                    finished = write_atomic(&fs, dir, "F", &new).await.is_ok();
                    fs.crash();
                    fs.restart();
                    let got = read(&fs, &dir.join("F")).await;
                    let want_old = (!first_write).then(|| old.clone());
                    if finished {
                        assert_eq!(got.as_deref(), Some(&new[..]), "returned but not durable");
                    } else {
                        assert!(
                            got == want_old || got.as_deref() == Some(&new[..]),
                            "crash at op {n} (first write {first_write}) left {:?} bytes",
                            got.map(|g| g.len())
                        );
                    }
                    // A later replace overwrites any stale temporary file.
                    write_atomic(&fs, dir, "F", b"again").await.unwrap();
                    assert_eq!(
                        read(&fs, &dir.join("F")).await.as_deref(),
                        Some(&b"again"[..])
                    );
                })
                .unwrap();
                n += 1;
                assert!(n < 50, "the replace never finished");
            }
        }
    }

    #[test]
    fn blocking_replace_on_std_fs() {
        let d = tempfile::tempdir().unwrap();
        write_atomic_blocking(d.path(), "F", b"one", 0o644).unwrap();
        write_atomic_blocking(d.path(), "F", b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(d.path().join("F")).unwrap(), b"two");
        assert!(!d.path().join("F.tmp").exists());
    }

    #[test]
    fn blocking_replace_sets_the_mode_even_over_a_stale_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("S.tmp"), b"stale").unwrap();
        std::fs::set_permissions(
            d.path().join("S.tmp"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        write_atomic_blocking(d.path(), "S", b"secret", 0o600).unwrap();
        let mode = std::fs::metadata(d.path().join("S"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(d.path().join("S")).unwrap(), b"secret");
    }
}
