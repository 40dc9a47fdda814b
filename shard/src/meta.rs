//! The node's `NODE` file: what a data directory was created with. The shard count
//! and slot count decide where every key lives, so a restart with a different shard
//! count is refused instead of silently misrouting keys. Format (text, one
//! `name=value` per line) in `docs/formats.md`.

use crate::config::SLOTS;
use std::path::Path;

pub const FILE_NAME: &str = "NODE";
const HEADER: &str = "nextdb-node 1";

/// Creates the file on first start; checks it afterwards.
pub fn check_or_create(dir: &Path, shards: usize) -> Result<(), String> {
    let path = dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut lines = text.lines();
            if lines.next() != Some(HEADER) {
                return Err(format!("{} is not a NextDB node file", path.display()));
            }
            let mut found_shards = None;
            let mut found_slots = None;
            for l in lines {
                match l.split_once('=') {
                    Some(("shards", v)) => found_shards = v.parse::<usize>().ok(),
                    Some(("slots", v)) => found_slots = v.parse::<u32>().ok(),
                    _ => {}
                }
            }
            if found_slots != Some(SLOTS) {
                return Err(format!(
                    "{} records {found_slots:?} slots; this build uses {SLOTS}",
                    path.display()
                ));
            }
            match found_shards {
                Some(n) if n == shards => Ok(()),
                Some(n) => Err(format!(
                    "the data directory {} was created with {n} shards; start with --shards {n} \
                     (changing the shard count of existing data is not supported yet)",
                    dir.display()
                )),
                None => Err(format!("{} has no shard count", path.display())),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let text = format!("{HEADER}\nshards={shards}\nslots={SLOTS}\n");
            nextdb_engine::fs::atomic::write_atomic_blocking(dir, FILE_NAME, text.as_bytes(), MODE)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Permission bits of `NODE`: world-readable, like PostgreSQL's `PG_VERSION`.
const MODE: u32 = 0o644;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_count_is_fixed_after_creation() {
        let d = tempfile::tempdir().unwrap();
        check_or_create(d.path(), 2).unwrap();
        check_or_create(d.path(), 2).unwrap();
        let e = check_or_create(d.path(), 3).unwrap_err();
        assert!(e.contains("--shards 2"), "{e}");
    }
}
