//! Where one request's time went, charged by code deep in the call without threading
//! a value through every signature: the connection runs a request's future inside a
//! [`Timed`], and while that future is polled, code of the same core adds to its
//! ledger ([`charge_commit`]). Each core polls one task at a time, so a thread-local
//! names the request being polled; outside a `Timed` poll the charges go nowhere.
//!
//! Owned by the core that polls the request. Work the request sends to another core
//! runs in a task there, outside this ledger: it counts as execution time.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

thread_local! {
    /// The ledger of the request being polled on this thread (null: none).
    static CURRENT: Cell<*const Ledger> = const { Cell::new(std::ptr::null()) };
}

/// The charges of one request.
#[derive(Debug, Default)]
pub struct Ledger {
    commit_us: Cell<u64>,
}

pin_project_lite::pin_project! {
    /// A request's future with its ledger; yields the output and the ledger's totals.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        ledger: Ledger,
    }
}

/// What a [`Timed`] request spent where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    /// Waiting for its writes' log commits on this core: proposal to applied, which
    /// holds the log append, the group commit's fsync and the apply.
    pub commit_us: u64,
}

impl<F: Future> Timed<F> {
    pub fn new(inner: F) -> Timed<F> {
        Timed {
            inner,
            ledger: Ledger::default(),
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = (F::Output, Spent);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let ledger: &Ledger = this.ledger;
        let previous = CURRENT.with(|c| c.replace(ledger));
        let r = this.inner.poll(cx);
        CURRENT.with(|c| c.set(previous));
        r.map(|out| {
            let spent = Spent {
                commit_us: ledger.commit_us.get(),
            };
            (out, spent)
        })
    }
}

/// Adds `d` to the commit time of the request being polled, if any.
pub fn charge_commit(d: Duration) {
    charge(Spent {
        commit_us: u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
    });
}

/// Adds what an inner [`Timed`] spent (work that ran in a task of its own) to the
/// request being polled, if any.
pub fn charge(spent: Spent) {
    let us = spent.commit_us;
    CURRENT.with(|c| {
        let p = c.get();
        // SAFETY: CURRENT is non-null only inside `Timed::poll`, which points it at
        // its own ledger for the duration of the inner poll and restores the previous
        // value before returning; this call runs inside that poll, on the same
        // thread, so the ledger is alive and only shared (`Cell`) access happens.
        if let Some(ledger) = unsafe { p.as_ref() } {
            ledger
                .commit_us
                .set(ledger.commit_us.get().saturating_add(us));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_reach_the_polled_request_only() {
        charge_commit(Duration::from_micros(5)); // outside any request: dropped
        let fut = Box::pin(async {
            charge_commit(Duration::from_micros(7));
            futures_lite::future::yield_now().await;
            charge_commit(Duration::from_micros(3));
            42
        });
        let (out, spent) = futures_lite::future::block_on(Timed::new(fut));
        assert_eq!(out, 42);
        assert_eq!(spent.commit_us, 10);
        // The ledger is unset again after the poll.
        assert!(CURRENT.with(Cell::get).is_null());
    }

    #[test]
    fn a_request_polled_inside_another_keeps_its_own_ledger() {
        let outer = Box::pin(async {
            charge_commit(Duration::from_micros(1));
            let inner = Box::pin(async { charge_commit(Duration::from_micros(100)) });
            let ((), spent) = Timed::new(inner).await;
            charge_commit(Duration::from_micros(2));
            spent.commit_us
        });
        let (inner_us, spent) = futures_lite::future::block_on(Timed::new(outer));
        assert_eq!(inner_us, 100);
        assert_eq!(spent.commit_us, 3);
    }
}
