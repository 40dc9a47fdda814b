//! Copying files into a backup or the log archive, checksumming as they go.
//!
//! Ownership: the core that owns the source files (a backup or the archiver runs on
//! the shard's core, through its file system, so the copy is asynchronous I/O and the
//! core keeps serving between reads).

use crate::codec;
use crate::config::{BACKUP_COPY_BUFFER_BYTES, MAX_IO_BYTES};
use crate::fs::{FileSystem, ReadFile, StreamWriter, atomic};
use crate::{Error, Result};
use std::path::Path;

/// A file's length and CRC-32C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    pub size: u64,
    pub crc32c: u32,
}

/// Copies the first `limit` bytes of `src` (all of it when `None`) to `dir/name`:
/// written under a temporary name, synced, renamed, directory synced, so the name
/// only ever holds a complete copy. Returns the copy's length and checksum.
pub async fn copy_durably<F: FileSystem>(
    fs: &F,
    src: &Path,
    dir: &Path,
    name: &str,
    limit: Option<u64>,
) -> Result<Sum> {
    let tmp = dir.join(format!("{name}{}", atomic::TMP_SUFFIX));
    let reader = fs.open_read(src).await?;
    let size = limit.map_or(reader.size(), |l| l.min(reader.size()));
    if limit.is_some_and(|l| l > size) {
        reader.close().await?;
        return Err(Error::InvalidArgument(format!(
            "{}: shorter than the {} bytes to copy",
            src.display(),
            limit.unwrap_or(0)
        )));
    }
    let mut w = fs.create_stream(&tmp, BACKUP_COPY_BUFFER_BYTES).await?;
    let mut crc = 0u32;
    let mut at = 0u64;
    while at < size {
        let n = ((size - at) as usize).min(MAX_IO_BYTES);
        let data = reader.read_exact_at(at, n).await?;
        crc = codec::crc32c_extend(crc, &data);
        w.write(&data).await?;
        at += n as u64;
    }
    reader.close().await?;
    w.finish().await?;
    fs.rename(&tmp, &dir.join(name)).await?;
    fs.sync_dir(dir).await?;
    Ok(Sum { size, crc32c: crc })
}

/// Length and CRC-32C of the file at `path`.
pub async fn sum_file<F: FileSystem>(fs: &F, path: &Path) -> Result<Sum> {
    let reader = fs.open_read(path).await?;
    let size = reader.size();
    let crc32c = crc_of_prefix(&reader, size).await?;
    reader.close().await?;
    Ok(Sum { size, crc32c })
}

/// CRC-32C of the first `len` bytes of `path` (an error if it is shorter).
pub async fn sum_prefix<F: FileSystem>(fs: &F, path: &Path, len: u64) -> Result<u32> {
    let reader = fs.open_read(path).await?;
    let crc = crc_of_prefix(&reader, len).await?;
    reader.close().await?;
    Ok(crc)
}

/// CRC-32C of the first `len` bytes `reader` holds, read in `MAX_IO_BYTES` pieces.
async fn crc_of_prefix<R: ReadFile>(reader: &R, len: u64) -> Result<u32> {
    let mut crc = 0u32;
    let mut at = 0u64;
    while at < len {
        let n = ((len - at) as usize).min(MAX_IO_BYTES);
        crc = codec::crc32c_extend(crc, &reader.read_exact_at(at, n).await?);
        at += n as u64;
    }
    Ok(crc)
}
