//! Admission control of one core: a bound on the requests executing on it and a
//! deadline for each.
//!
//! Owned by one core (`ShardCore`). Every operation that reaches the core, from its
//! own connections or over the mesh, takes a permit first; with
//! `max_requests_in_flight` permits out the core answers BUSY at once instead of
//! queueing work, so the mesh queues and the connections' pipelines are what bound
//! the waiting, and the permits bound the work. A request that has not finished by
//! its deadline is answered TIMEOUT: a read is dropped there (it holds nothing); a
//! write keeps running in its own task until it has committed or failed, holding its
//! permit, because dropping it could abandon a commit already under way. Its client
//! learns only that the outcome is unknown, never that an acknowledged write is gone.

use crate::error::ShardError;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

pub struct Admission {
    in_flight: Rc<Cell<usize>>,
    max: usize,
    timeout: Duration,
}

/// One admitted request; releases its slot when dropped.
pub struct Permit {
    in_flight: Rc<Cell<usize>>,
}

impl Admission {
    pub fn new(max: usize, timeout: Duration) -> Admission {
        assert!(max > 0, "a core must admit at least one request");
        Admission {
            in_flight: Rc::new(Cell::new(0)),
            max,
            timeout,
        }
    }

    /// A permit, or BUSY when `max` requests already execute on core `shard`.
    pub fn admit(&self, shard: usize) -> Result<Permit, ShardError> {
        let n = self.in_flight.get();
        if n >= self.max {
            return Err(ShardError::Busy(shard));
        }
        self.in_flight.set(n + 1);
        Ok(Permit {
            in_flight: self.in_flight.clone(),
        })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let n = self.in_flight.get();
        assert!(n > 0, "a permit released twice");
        self.in_flight.set(n - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_released_on_drop() {
        let a = Admission::new(2, Duration::from_secs(1));
        let p1 = a.admit(0).unwrap();
        let p2 = a.admit(0).unwrap();
        assert_eq!(a.admit(0).err(), Some(ShardError::Busy(0)));
        drop(p1);
        assert_eq!(a.in_flight(), 1);
        let _p3 = a.admit(0).unwrap();
        drop(p2);
        assert_eq!(a.in_flight(), 1);
    }
}
