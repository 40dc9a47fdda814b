//! Per-key locks of one shard, for read-modify-write operations (CAS, INCR, EXPIRE).
//!
//! Owned by one core. A read-modify-write holds its key from the read until its write
//! is durable; plain writes to a held key wait for it, so no write can slip between
//! the read and the write. Writes to keys nobody holds pay one hash lookup (none at
//! all while the set is empty).

use nextdb_engine::sync::Notify;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

#[derive(Default)]
pub struct KeyLocks {
    held: Rc<RefCell<HashSet<Vec<u8>>>>,
    released: Notify,
}

/// Holds one key; releases it on drop.
pub struct KeyGuard {
    held: Rc<RefCell<HashSet<Vec<u8>>>>,
    released: Notify,
    key: Vec<u8>,
}

impl KeyLocks {
    pub async fn lock(&self, key: &[u8]) -> KeyGuard {
        loop {
            // Checking and creating the wait happen in one poll: no release can fall
            // between them on a single-threaded executor.
            let wait = self.released.wait();
            if self.held.borrow_mut().insert(key.to_vec()) {
                return KeyGuard {
                    held: self.held.clone(),
                    released: self.released.clone(),
                    key: key.to_vec(),
                };
            }
            wait.await;
        }
    }

    /// Whether a read-modify-write holds `key` right now (no wait: callers check this
    /// in the same synchronous step as their commit).
    pub fn is_held(&self, key: &[u8]) -> bool {
        let held = self.held.borrow();
        !held.is_empty() && held.contains(key)
    }

    /// Waits until no read-modify-write holds `key`.
    pub async fn wait_unlocked(&self, key: &[u8]) {
        loop {
            let wait = self.released.wait();
            {
                let held = self.held.borrow();
                if held.is_empty() || !held.contains(key) {
                    return;
                }
            }
            wait.await;
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.held.borrow_mut().remove(&self.key);
        self.released.notify_all();
    }
}
