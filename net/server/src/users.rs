//! Users the node authenticates, kept in `<data-dir>/users`: one line per user,
//! `name SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (PostgreSQL's
//! verifier form). Passwords are never stored. The file is replaced atomically
//! (write, fsync, rename, fsync of the directory). Format in `docs/formats.md`.

use crate::file_error::FileError;
use nextdb_proto::scram::Verifier;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "users";
/// Permission bits of the file: owner read and write only.
pub const FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} line {line}: {why}")]
    Parse {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("invalid user name {0:?}: use 1-64 characters from [A-Za-z0-9_.@-]")]
    BadName(String),
}

/// Users and their SCRAM verifiers. Read-only while the server runs (every core
/// holds the same `Arc`).
#[derive(Debug, Clone, Default)]
pub struct UserStore {
    users: BTreeMap<String, Verifier>,
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c))
}

impl UserStore {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Loads the store; a missing file is an empty store.
    pub fn load(data_dir: &Path) -> Result<UserStore, UserError> {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UserStore::default()),
            Err(source) => return Err(FileError::read(&path, source).into()),
        };
        let mut users = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parse_err = |why: String| UserError::Parse {
                path: path.clone(),
                line: i + 1,
                why,
            };
            let (name, verifier) = line
                .split_once(' ')
                .ok_or_else(|| parse_err("expected `name verifier`".into()))?;
            if !valid_name(name) {
                return Err(parse_err(format!("invalid user name {name:?}")));
            }
            let v = Verifier::parse(verifier.trim()).map_err(|e| parse_err(e.to_string()))?;
            users.insert(name.to_string(), v);
        }
        Ok(UserStore { users })
    }

    pub fn get(&self, name: &str) -> Option<&Verifier> {
        self.users.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Adds or replaces a user.
    pub fn set(&mut self, name: &str, verifier: Verifier) -> Result<(), UserError> {
        if !valid_name(name) {
            return Err(UserError::BadName(name.to_string()));
        }
        self.users.insert(name.to_string(), verifier);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.users.remove(name).is_some()
    }

    /// Writes the store atomically (`nextdb_engine::fs::atomic::write_atomic`: a crash
    /// leaves the old or the new file, whole), readable by the owner only: verifiers
    /// are not passwords, but they allow an offline dictionary attack.
    pub fn save(&self, data_dir: &Path) -> Result<(), UserError> {
        let path = Self::path(data_dir);
        let mut text = String::from("# NextDB users: name SCRAM-SHA-256 verifier (no passwords)\n");
        for (name, v) in &self.users {
            text.push_str(&format!("{name} {}\n", v.encode()));
        }
        std::fs::create_dir_all(data_dir).map_err(|e| FileError::write(&path, e))?;
        let bytes = text.as_bytes();
        nextdb_engine::fs::atomic::write_atomic_blocking(data_dir, FILE_NAME, bytes, FILE_MODE)
            .map_err(|e| FileError::write(&path, e.into_io()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load() {
        let d = tempfile::tempdir().unwrap();
        let mut s = UserStore::default();
        s.set("alice", Verifier::generate("pw", 4096)).unwrap();
        assert!(s.set("bad name", Verifier::generate("pw", 4096)).is_err());
        s.save(d.path()).unwrap();
        let l = UserStore::load(d.path()).unwrap();
        assert_eq!(l.get("alice"), s.get("alice"));
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(UserStore::path(d.path())).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            FILE_MODE,
            "verifiers stay private"
        );
        std::fs::write(UserStore::path(d.path()), "alice nonsense\n").unwrap();
        assert!(matches!(
            UserStore::load(d.path()),
            Err(UserError::Parse { line: 1, .. })
        ));
    }
}
