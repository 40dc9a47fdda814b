//! How a core's executor is set up for the engine: one place for the glommio settings
//! that the server, the tools, the benchmarks and the tests share.

use crate::config::{BACKGROUND_SHARES, LOCAL_EXECUTOR_IO_MEMORY_BYTES, PREEMPT_TIMER_US};
use crate::db::Db;
use crate::fs::FileSystem;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use std::rc::Rc;
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
/// `BACKGROUND_SHARES` (foreground work keeps the default 1000). Must run inside the
/// executor that owns `db`.
pub fn spawn_background<F: FileSystem>(db: &Rc<Db<F>>) -> crate::Result<()> {
    let tq = glommio::executor().create_task_queue(
        Shares::Static(BACKGROUND_SHARES),
        Latency::NotImportant,
        "nextdb-background",
    );
    glommio::spawn_local_into(db.clone().run_background(), tq)
        .map_err(|e| crate::Error::InvalidArgument(format!("cannot spawn background work: {e}")))?
        .detach();
    Ok(())
}
