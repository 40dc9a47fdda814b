//! How a core's executor is set up for the engine: one place for the glommio settings
//! that the server, the tools, the benchmarks and the tests share.

use crate::config::{
    BACKGROUND_SHARES, LOCAL_EXECUTOR_IO_MEMORY_BYTES, PREEMPT_TIMER_US, WAKE_GUARD_PERIOD_MS,
};
use crate::db::Db;
use crate::fs::FileSystem;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

/// An executor builder with the engine's settings: a short preemption timer, so that
/// a background slice (compaction) delays foreground work by at most about that long,
/// and a small registered I/O buffer pool that fits default memlock limits.
pub fn executor_builder(placement: Placement) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(placement)
        .io_memory(LOCAL_EXECUTOR_IO_MEMORY_BYTES)
        .preempt_timer(Duration::from_micros(PREEMPT_TIMER_US))
}

/// Spawns the engine's flush and compaction loops into a task queue with
/// `BACKGROUND_SHARES` (foreground work keeps the default 1000), together with a
/// [`WakeGuard`] for the executor that lives as long as the loops. Must run inside the
/// executor that owns `db`.
pub fn spawn_background<F: FileSystem>(db: &Rc<Db<F>>) -> crate::Result<()> {
    let tq = glommio::executor().create_task_queue(
        Shares::Static(BACKGROUND_SHARES),
        Latency::NotImportant,
        "nextdb-background",
    );
    let guard = start_wake_guard()?;
    let db = db.clone();
    let background = async move {
        let _guard = guard;
        db.run_background().await;
    };
    glommio::spawn_local_into(background, tq)
        .map_err(|e| crate::Error::InvalidArgument(format!("cannot spawn background work: {e}")))?
        .detach();
    Ok(())
}

/// Works around a lost wakeup in glommio 0.9's scheduler. Its loop treats "the
/// preemption timer had already fired before any task queue ran" like "nothing to
/// run", and parks the thread in `io_uring_enter` while a queue still holds runnable
/// tasks; only a later I/O completion, timer or foreign wake gets it going again, and
/// when every task of the core waits on one of those runnable tasks (a group-commit
/// leader that yielded), none comes. The shorter the preemption timer, the likelier
/// the race (a 1 ms timer stalled 2 of 30 synced-overwrite runs; see `config`). Fixed
/// upstream in the maintained fork (glommio/glommio PR 53), which has no release yet.
///
/// While the guard lives, a thread wakes a task of the executor every
/// `WAKE_GUARD_PERIOD_MS`, a foreign wake that ends such a park: a stall lasts at most
/// one period instead of forever. Owned by the executor's core; dropping the guard
/// stops the thread within one period (the heartbeat task then stays parked). Must run
/// inside an executor.
pub struct WakeGuard {
    stop: Arc<AtomicBool>,
}

impl Drop for WakeGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts a [`WakeGuard`] for the current executor.
pub fn start_wake_guard() -> crate::Result<WakeGuard> {
    let stop = Arc::new(AtomicBool::new(false));
    let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    let (thread_stop, thread_slot) = (stop.clone(), slot.clone());
    let period = Duration::from_millis(WAKE_GUARD_PERIOD_MS);
    std::thread::Builder::new()
        .name("nextdb-wake-guard".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                // Once stopped, the executor may be gone: never wake into it.
                if thread_stop.load(Ordering::Acquire) {
                    break;
                }
                let waker = thread_slot.lock().ok().and_then(|mut s| s.take());
                if let Some(w) = waker {
                    w.wake();
                }
            }
        })
        .map_err(|e| crate::Error::InvalidArgument(format!("cannot start wake guard: {e}")))?;
    let task_stop = stop.clone();
    let heartbeat = std::future::poll_fn(move |cx| {
        if task_stop.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if let Ok(mut s) = slot.lock() {
            *s = Some(cx.waker().clone());
        }
        Poll::Pending
    });
    glommio::spawn_local(heartbeat).detach();
    Ok(WakeGuard { stop })
}

/// Helpers for the engine's own tests of task coordination.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::future::Future;
    use std::sync::mpsc;

    /// Preemption timer of bounded tests: short, so that `yield_if_needed` yields.
    pub(crate) const TEST_PREEMPT_TIMER: Duration = Duration::from_millis(1);

    /// Runs `f` on a fresh executor (the engine's settings, a 1 ms preemption timer, a
    /// wake guard) and fails the test, instead of hanging, if `f` has not finished
    /// within `limit`: a glommio timer races the work, and the test thread gives up
    /// waiting even if the executor is wedged so badly that the timer cannot fire.
    pub(crate) fn run_bounded<F>(limit: Duration, f: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()> + 'static,
    {
        let _ = crate::fs::glommio_fs::raise_memlock_limit();
        let (tx, rx) = mpsc::channel();
        let handle = executor_builder(Placement::Unbound)
            .preempt_timer(TEST_PREEMPT_TIMER)
            .spawn(move || async move {
                let _guard = start_wake_guard().expect("wake guard");
                let work = async {
                    f().await;
                    true
                };
                let timer = async {
                    glommio::timer::sleep(limit).await;
                    false
                };
                let _ = tx.send(futures_lite::future::or(work, timer).await);
            })
            .expect("start an executor");
        match rx.recv_timeout(limit + Duration::from_secs(10)) {
            Ok(true) => handle.join().expect("executor thread"),
            Ok(false) => panic!("the work did not finish within {limit:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                handle.join().expect("executor thread");
                panic!("the executor ended without an answer");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("executor wedged: neither the work nor its {limit:?} timer finished")
            }
        }
    }

    /// Runs `f` on a fresh executor with preemption timer `timer` and nothing that
    /// could end a park from outside the work: no wake guard, no glommio timer of the
    /// test's own. Fails the test if `f` has not finished within `limit`; the executor
    /// thread is then left parked (nothing can wake it) and dies with the process.
    pub(crate) fn run_unguarded<F>(
        limit: Duration,
        timer: Duration,
        f: impl FnOnce() -> F + Send + 'static,
    ) where
        F: Future<Output = ()> + 'static,
    {
        let _ = crate::fs::glommio_fs::raise_memlock_limit();
        let (tx, rx) = mpsc::channel();
        let handle = executor_builder(Placement::Unbound)
            .preempt_timer(timer)
            .spawn(move || async move {
                f().await;
                let _ = tx.send(());
            })
            .expect("start an executor");
        match rx.recv_timeout(limit) {
            Ok(()) => handle.join().expect("executor thread"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
                panic!("the executor ended without finishing the work");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the work did not finish within {limit:?}: the executor parked")
            }
        }
    }
}
