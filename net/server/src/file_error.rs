//! The error of reading or writing one of the node's own small files (`users`,
//! `auth-secret`), naming the file; each file's error enum wraps it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FileError {
    pub fn read(path: &Path, source: std::io::Error) -> FileError {
        FileError::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn write(path: &Path, source: std::io::Error) -> FileError {
        FileError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}
