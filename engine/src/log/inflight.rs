//! Bookkeeping of the group commits in flight on one core's log: several overlap
//! (the next one's write is issued while the last one's fsync runs), bounded by
//! [`crate::config::MAX_LOG_BATCHES_IN_FLIGHT`].
//!
//! Two rules make overlapping safe. The written point advances only over a prefix of
//! batches whose writes all completed. An fsync makes durable exactly the writes that
//! completed before it was issued, so a durable batch issues its fsync only once every
//! earlier batch's write completed; the durable point is then its own end, whatever
//! order the fsyncs complete in.

use super::Lsn;
use std::collections::VecDeque;

/// One started batch whose write has not completed, or that waits for an earlier one.
#[derive(Debug, Clone, Copy)]
struct Unwritten {
    id: u64,
    upto: Lsn,
    written: bool,
}

#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// Started batches not yet part of the written prefix, oldest first.
    unwritten: VecDeque<Unwritten>,
    next_id: u64,
    /// Batches started and not finished (their write, and fsync if any, outstanding).
    active: usize,
    /// The highest LSN a started batch writes / a started durable batch fsyncs.
    started: Lsn,
    started_durable: Lsn,
}

impl InFlight {
    /// Registers a batch writing records up to `upto`; returns its id.
    pub fn start(&mut self, upto: Lsn, durable: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.active += 1;
        self.started = self.started.max(upto);
        if durable {
            self.started_durable = self.started_durable.max(upto);
        }
        self.unwritten.push_back(Unwritten {
            id,
            upto,
            written: false,
        });
        id
    }

    /// Marks batch `id` written; returns the LSN the written prefix now reaches, if it
    /// moved.
    pub fn written(&mut self, id: u64) -> Option<Lsn> {
        if let Some(b) = self.unwritten.iter_mut().find(|b| b.id == id) {
            b.written = true;
        }
        let mut reached = None;
        while let Some(b) = self.unwritten.front().filter(|b| b.written) {
            reached = Some(b.upto);
            self.unwritten.pop_front();
        }
        reached
    }

    /// True once every batch started before `id` has completed its write.
    pub fn earlier_written(&self, id: u64) -> bool {
        self.unwritten
            .iter()
            .take_while(|b| b.id < id)
            .all(|b| b.written)
    }

    /// A batch finished (or was abandoned).
    pub fn finish(&mut self) {
        assert!(self.active > 0, "log batch finished twice");
        self.active -= 1;
    }

    pub fn active(&self) -> usize {
        self.active
    }

    /// True if a started batch will make `lsn` written (durable, if `durable`): a
    /// waiter for it has nothing to lead.
    pub fn covers(&self, lsn: Lsn, durable: bool) -> bool {
        lsn <= if durable {
            self.started_durable
        } else {
            self.started
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_point_moves_only_over_a_prefix() {
        let mut f = InFlight::default();
        let a = f.start(10, true);
        let b = f.start(20, false);
        let c = f.start(30, true);
        assert_eq!(f.written(c), None, "c completed before a and b");
        assert!(!f.earlier_written(c));
        assert_eq!(f.written(a), Some(10));
        assert!(!f.earlier_written(c), "b is still unwritten");
        assert_eq!(f.written(b), Some(30));
        assert!(f.earlier_written(c));
        assert!(f.covers(30, false) && f.covers(30, true) && !f.covers(31, false));
        for _ in 0..3 {
            f.finish();
        }
        assert_eq!(f.active(), 0);
    }

    #[test]
    fn a_durable_waiter_is_not_covered_by_an_unsynced_batch() {
        let mut f = InFlight::default();
        f.start(10, true);
        f.start(20, false);
        assert!(f.covers(20, false));
        assert!(f.covers(10, true));
        assert!(!f.covers(20, true), "only a write, no fsync, covers LSN 20");
    }
}
