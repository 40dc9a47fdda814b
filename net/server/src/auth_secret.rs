//! The node's mock-authentication secret, `<data-dir>/auth-secret`: 32 random bytes,
//! created once with mode 0600 and read at every start. It keys the salt an unknown
//! user is shown (`nextdb_proto::scram::MockAuthSecret`), so that salt is stable for
//! this node and unpredictable elsewhere. Format in `docs/formats.md`.
//!
//! Crash safety: written by `nextdb_engine::fs::atomic::write_atomic_blocking` (a
//! 0600 temporary file, fsynced, renamed over the name, the directory fsynced); a
//! crash before the rename leaves no `auth-secret` (a new one is made at the next
//! start: no client has seen a salt from the lost one), after it the whole file.

use crate::file_error::FileError;
use nextdb_proto::scram::MockAuthSecret;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "auth-secret";
/// Permission bits of the file: owner read and write only.
pub const FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} holds {len} bytes, expected {expected}: restore it or delete it")]
    BadLength {
        path: PathBuf,
        len: usize,
        expected: usize,
    },
    #[error("{path} is readable by others (mode {mode:o}): run `chmod 600` on it")]
    TooOpen { path: PathBuf, mode: u32 },
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the node's secret, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> Result<MockAuthSecret, SecretError> {
    let path = path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => parse(&path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(data_dir, &path),
        Err(source) => Err(FileError::read(&path, source).into()),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<MockAuthSecret, SecretError> {
    let mode = std::fs::metadata(path)
        .map_err(|e| FileError::read(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let exact =
        <[u8; MockAuthSecret::BYTES]>::try_from(bytes).map_err(|_| SecretError::BadLength {
            path: path.to_path_buf(),
            len: bytes.len(),
            expected: MockAuthSecret::BYTES,
        })?;
    Ok(MockAuthSecret::from_bytes(exact))
}

fn create(data_dir: &Path, path: &Path) -> Result<MockAuthSecret, SecretError> {
    let secret = MockAuthSecret::generate();
    nextdb_engine::fs::atomic::write_atomic_blocking(
        data_dir,
        FILE_NAME,
        secret.as_bytes(),
        FILE_MODE,
    )
    .map_err(|e| FileError::write(path, e.into_io()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_stable() {
        let d = tempfile::tempdir().unwrap();
        let a = load_or_create(d.path()).unwrap();
        let mode = std::fs::metadata(path(d.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, FILE_MODE);
        assert_eq!(load_or_create(d.path()).unwrap(), a);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap(), a);

        std::fs::set_permissions(path(d.path()), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(d.path()),
            Err(SecretError::TooOpen { .. })
        ));
        std::fs::write(path(d.path()), b"short").unwrap();
        std::fs::set_permissions(path(d.path()), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(d.path()),
            Err(SecretError::BadLength { len: 5, .. })
        ));
    }
}
