//! Process-wide shutdown state, shared by every core (atomics only).
//!
//! SIGINT/SIGTERM set `stopping`; each core notices within `SHUTDOWN_POLL`, stops
//! accepting, lets its connections finish what they have in flight, and counts itself
//! drained. Engines close only when every core has drained, because a connection on
//! one core may still be waiting for another core's engine.

use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Shutdown {
    stopping: Arc<AtomicBool>,
    opened: AtomicUsize,
    ready: AtomicUsize,
    drained: AtomicUsize,
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
    pub(crate) fn mark_drained(&self) -> usize {
        self.drained.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub(crate) fn drained(&self) -> usize {
        self.drained.load(Ordering::SeqCst)
    }
}
