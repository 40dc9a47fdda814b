//! What happens when a core fails: the node stops, it does not limp on.
//!
//! Each executor thread registers itself here (`enter_core`). The process-wide panic
//! hook, installed once, looks the panicking thread up: a core that panics records
//! why, marks the node failed (every other core notices within `SHUTDOWN_POLL`,
//! drains and closes its engine) and counts as drained, since it will never reach
//! the drain barrier itself. `Node::run` then returns the failure and the process
//! exits non-zero. Panics on threads that are not cores pass through unchanged.

use crate::shutdown::Shutdown;
use std::cell::RefCell;
use std::sync::{Arc, Once};

thread_local! {
    /// The core this thread runs, and the node it belongs to.
    static CORE: RefCell<Option<(usize, Arc<Shutdown>)>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs the panic hook (once per process; later calls do nothing).
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let core = CORE
                .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
                .ok()
                .flatten();
            if let Some((id, shutdown)) = core {
                let why = format!("shard {id} panicked: {info}");
                eprintln!("nextdb: {why}; stopping the node");
                shutdown.fail_with(why);
                shutdown.mark_drained(id);
            }
            previous(info);
        }));
    });
}

/// Registers the calling thread as core `id` of the node stopped by `shutdown`.
pub fn enter_core(id: usize, shutdown: Arc<Shutdown>) {
    CORE.with(|c| *c.borrow_mut() = Some((id, shutdown)));
}

/// A panic deliberately injected into one core, compiled only into test builds
/// (feature `fault-injection`): `NEXTDB_FAULT_PANIC_SHARD=<id>` makes that core panic
/// `NEXTDB_FAULT_PANIC_AFTER_MS` (default 300) after it starts serving.
#[cfg(feature = "fault-injection")]
pub fn inject_panic(id: usize) {
    let target = std::env::var("NEXTDB_FAULT_PANIC_SHARD")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if target != Some(id) {
        return;
    }
    let after_ms = std::env::var("NEXTDB_FAULT_PANIC_AFTER_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(300);
    glommio::spawn_local(async move {
        glommio::timer::sleep(std::time::Duration::from_millis(after_ms)).await;
        panic!("fault injection: shard {id} fails on purpose");
    })
    .detach();
}

#[cfg(not(feature = "fault-injection"))]
pub fn inject_panic(_id: usize) {}
