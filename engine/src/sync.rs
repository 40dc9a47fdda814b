//! Single-threaded async notification, for tasks of one executor (one core).
//!
//! `Notify::wait` returns a future that completes after the next `notify_all`. The
//! engine uses it for write stalls (writers wait for a flush or compaction) and to wake
//! the background task. Never shared across threads: `Rc`/`RefCell` inside.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    generation: u64,
    wakers: Vec<Waker>,
}

/// A broadcast notifier. Cheap to clone (a handle).
#[derive(Clone, Default)]
pub struct Notify {
    inner: Rc<RefCell<Inner>>,
}

impl Notify {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every task waiting right now.
    pub fn notify_all(&self) {
        let wakers = {
            let mut i = self.inner.borrow_mut();
            i.generation = i.generation.wrapping_add(1);
            std::mem::take(&mut i.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// A future that completes at the next `notify_all` after this call.
    pub fn wait(&self) -> Wait {
        Wait {
            inner: self.inner.clone(),
            generation: self.inner.borrow().generation,
        }
    }
}

/// Future returned by [`Notify::wait`].
pub struct Wait {
    inner: Rc<RefCell<Inner>>,
    generation: u64,
}

impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut i = self.inner.borrow_mut();
        if i.generation != self.generation {
            return Poll::Ready(());
        }
        if !i.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            i.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// An async mutual-exclusion flag for one executor: serializes multi-step async
/// operations (manifest writes) between tasks of the same core.
#[derive(Clone, Default)]
pub struct AsyncLock {
    busy: Rc<std::cell::Cell<bool>>,
    released: Notify,
}

/// Held while the lock is taken; releases on drop.
pub struct LockGuard {
    busy: Rc<std::cell::Cell<bool>>,
    released: Notify,
}

impl AsyncLock {
    pub async fn lock(&self) -> LockGuard {
        loop {
            if !self.busy.get() {
                self.busy.set(true);
                return LockGuard {
                    busy: self.busy.clone(),
                    released: self.released.clone(),
                };
            }
            self.released.wait().await;
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.busy.set(false);
        self.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_completes_after_notify() {
        let n = Notify::new();
        let w = n.wait();
        n.notify_all();
        futures_lite::future::block_on(w);
        let l = AsyncLock::default();
        futures_lite::future::block_on(async {
            let g = l.lock().await;
            drop(g);
            let _g = l.lock().await;
        });
    }
}
