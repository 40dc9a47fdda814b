//! Async coordination between tasks of one executor (one core), on maintained
//! primitives: `event-listener` for broadcast notification, `async-lock` for mutual
//! exclusion across `.await`s.
//!
//! `Notify` keeps the engine's small API (`new`, `wait`, `notify_all`) because other
//! crates still use it. Its one rule: a waiter that calls `wait()` *before* checking
//! the condition it waits for cannot miss a `notify_all` that follows the check: the
//! listener is registered when `wait()` returns, not when it is first polled.

use event_listener::{Event, EventListener};
use std::rc::Rc;

/// A broadcast notifier. Cheap to clone (a handle: clones notify the same waiters).
#[derive(Clone, Default)]
pub struct Notify {
    event: Rc<Event>,
}

impl Notify {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every task waiting right now (every `Wait` created before this call).
    pub fn notify_all(&self) {
        self.event.notify(usize::MAX);
    }

    /// A future that completes at the next `notify_all` after this call.
    pub fn wait(&self) -> Wait {
        self.event.listen()
    }
}

/// Future returned by [`Notify::wait`]: a registered listener.
pub type Wait = EventListener;

/// An async mutual-exclusion lock for one executor: serializes multi-step async
/// operations (flushes, compactions, manifest writes) between tasks of the same core.
/// Fair: waiters get it in arrival order.
#[derive(Default)]
pub struct AsyncLock {
    inner: async_lock::Mutex<()>,
}

/// Held while the lock is taken; releases on drop.
pub type LockGuard<'a> = async_lock::MutexGuard<'a, ()>;

impl AsyncLock {
    pub async fn lock(&self) -> LockGuard<'_> {
        self.inner.lock().await
    }

    /// Whether a task holds the lock now (for reporting what a core is doing).
    pub fn is_locked(&self) -> bool {
        self.inner.try_lock().is_none()
    }
}

#[cfg(test)]
mod tests;
