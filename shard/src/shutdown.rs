//! Process-wide shutdown state, shared by every core (atomics only).
//!
//! SIGINT/SIGTERM set `stopping`; each core notices within `SHUTDOWN_POLL`, stops
//! accepting, lets its connections finish what they have in flight, and counts itself
//! drained. Engines close only when every core has drained, because a connection on
//! one core may still be waiting for another core's engine. A core that fails (an
//! error or a panic, see `failure.rs`) marks the node failed and counts as drained
//! at once, so the others never wait for it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Shutdown {
    stopping: Arc<AtomicBool>,
    opened: AtomicUsize,
    ready: AtomicUsize,
    /// Cores that drained or failed (a set: a core may be counted by its own drain
    /// and by the panic hook, and must count once).
    drained: Mutex<BTreeSet<usize>>,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }
    /// Registers SIGINT and SIGTERM to set the stopping flag.
    pub fn register_signals(&self) -> std::io::Result<()> {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, self.stopping.clone())?;
        }
        Ok(())
    }
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.stop();
    }
    /// Records why the node must stop (the first reason wins) and stops it.
    pub fn fail_with(&self, why: String) {
        if let Ok(mut f) = self.failure.lock()
            && f.is_none()
        {
            *f = Some(why);
        }
        self.fail();
    }
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
    pub(crate) fn mark_opened(&self) -> usize {
        self.opened.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub(crate) fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
    pub(crate) fn mark_ready(&self) -> usize {
        self.ready.fetch_add(1, Ordering::SeqCst) + 1
    }
    /// Counts core `id` as drained (idempotent); returns how many cores are.
    pub(crate) fn mark_drained(&self, id: usize) -> usize {
        match self.drained.lock() {
            Ok(mut d) => {
                d.insert(id);
                d.len()
            }
            // Poisoned: a panic while holding this lock; nothing else to count.
            Err(p) => p.into_inner().len(),
        }
    }
    pub(crate) fn drained(&self) -> usize {
        self.drained
            .lock()
            .map_or_else(|p| p.into_inner().len(), |d| d.len())
    }
}
