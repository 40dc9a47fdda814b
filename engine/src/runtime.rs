//! How a core's executor is set up for the engine: one place for the glommio settings
//! that the server, the tools, the benchmarks and the tests share.

use crate::config::{
    BACKGROUND_SHARES_ADJUST, LOCAL_EXECUTOR_IO_MEMORY_BYTES, MAX_TASK_QUEUE_SHARES,
    PREEMPT_TIMER_US,
};
use crate::db::Db;
use crate::fs::FileSystem;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares, SharesManager};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// An executor builder with the engine's settings: a short preemption timer, so that
/// a background slice (compaction) delays foreground work by at most about that long,
/// and a small registered I/O buffer pool that fits default memlock limits.
///
/// The scheduler is glommio 0.9.0 with one fix (`third_party/glommio/PATCHES.md`):
/// unpatched, it parked the thread while task queues held runnable tasks whenever the
/// preemption timer had fired before any queue ran, and a core whose tasks all waited
/// on one of those runnable tasks hung until some unrelated I/O completed.
pub fn executor_builder(placement: Placement) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(placement)
        .io_memory(LOCAL_EXECUTOR_IO_MEMORY_BYTES)
        .preempt_timer(Duration::from_micros(PREEMPT_TIMER_US))
}

/// Scheduler shares of a task queue that its owning core changes while it runs
/// (`Db::set_background_shares`). glommio reads them at most every
/// `BACKGROUND_SHARES_ADJUST`, so a change takes effect within that.
#[derive(Debug)]
pub struct LiveShares(Cell<usize>);

impl LiveShares {
    pub fn new(shares: usize) -> LiveShares {
        LiveShares(Cell::new(shares))
    }

    pub fn get(&self) -> usize {
        self.0.get()
    }

    /// Sets the shares; glommio clamps them to 1..=1000 (`MAX_TASK_QUEUE_SHARES`).
    pub fn set(&self, shares: usize) {
        self.0.set(shares.clamp(1, MAX_TASK_QUEUE_SHARES));
    }
}

impl SharesManager for LiveShares {
    fn shares(&self) -> usize {
        self.0.get()
    }

    fn adjustment_period(&self) -> Duration {
        BACKGROUND_SHARES_ADJUST
    }
}

/// Spawns the engine's flush and compaction loops into a task queue with the
/// engine's live background shares (`BACKGROUND_SHARES` at open; foreground work
/// keeps the default 1000). Must run inside the
/// executor that owns `db`. The loops hold the engine and end only at `Db::close`: an
/// engine whose handles are all dropped without `close` keeps them running until the
/// executor ends.
pub fn spawn_background<F: FileSystem>(db: &Rc<Db<F>>) -> crate::Result<()> {
    let tq = glommio::executor().create_task_queue(
        Shares::Dynamic(db.background_shares_manager()),
        Latency::NotImportant,
        "nextdb-background",
    );
    let db = db.clone();
    glommio::spawn_local_into(async move { db.run_background().await }, tq)
        .map_err(|e| crate::Error::InvalidArgument(format!("cannot spawn background work: {e}")))?
        .detach();
    Ok(())
}

/// Helpers for tests of task coordination (the engine's own and its integration
/// tests): executors that fail a test instead of hanging it. Not used by the product.
pub mod testing {
    use super::*;
    use std::future::Future;
    use std::sync::mpsc;

    /// Preemption timer of bounded tests: short, so that `yield_if_needed` yields.
    pub const TEST_PREEMPT_TIMER: Duration = Duration::from_millis(1);

    /// Runs `f` on a fresh executor (the engine's settings, a 1 ms preemption timer) and
    /// fails the test, instead of hanging, if `f` has not finished within `limit`: a
    /// glommio timer races the work, and the test thread gives up waiting even if the
    /// executor is wedged so badly that the timer cannot fire.
    pub fn run_bounded<F>(limit: Duration, f: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()> + 'static,
    {
        let _ = crate::fs::glommio_fs::raise_memlock_limit();
        let (tx, rx) = mpsc::channel();
        let handle = executor_builder(Placement::Unbound)
            .preempt_timer(TEST_PREEMPT_TIMER)
            .spawn(move || async move {
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
    /// could end a park from outside the work (no glommio timer of the test's own). Fails the test if `f` has not finished within `limit`; the executor
    /// thread is then left parked (nothing can wake it) and dies with the process.
    pub fn run_isolated<F>(limit: Duration, timer: Duration, f: impl FnOnce() -> F + Send + 'static)
    where
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
