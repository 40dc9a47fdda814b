//! Settings a running node changes without a restart.
//!
//! Each core owns its copy (`ShardCore::live`, plain `Cell`s: only that core reads or
//! writes it); a change reaches every core as a message, like STATS. The services
//! that run on a core read it on their hot path, so a read is one `Cell::get`.

use std::cell::Cell;

/// The slow-operation log's settings of one core.
#[derive(Debug)]
pub struct LiveSettings {
    /// Requests at or above this latency are logged; `u64::MAX`: the log is off (so the
    /// hot path is one comparison, with no separate "enabled" check).
    slow_op_threshold_us: Cell<u64>,
    /// Log a slow operation's key as its length and a hash instead of its bytes.
    slow_op_redact: Cell<bool>,
}

impl Default for LiveSettings {
    fn default() -> Self {
        let s = LiveSettings {
            slow_op_threshold_us: Cell::new(u64::MAX),
            slow_op_redact: Cell::new(false),
        };
        s.set_slow_op_ms(crate::config::DEFAULT_SLOW_OP_MS);
        s
    }
}

impl LiveSettings {
    /// The latency in µs from which a request is logged as slow (`u64::MAX`: never).
    #[inline]
    pub fn slow_op_threshold_us(&self) -> u64 {
        self.slow_op_threshold_us.get()
    }

    /// The threshold in milliseconds; 0 when the log is off.
    pub fn slow_op_ms(&self) -> u64 {
        match self.slow_op_threshold_us.get() {
            u64::MAX => 0,
            us => us / 1000,
        }
    }

    /// Sets the threshold; 0 turns the slow-operation log off.
    pub fn set_slow_op_ms(&self, ms: u64) {
        let us = match ms {
            0 => u64::MAX,
            ms => ms.saturating_mul(1000),
        };
        self.slow_op_threshold_us.set(us);
    }

    pub fn slow_op_redact(&self) -> bool {
        self.slow_op_redact.get()
    }

    pub fn set_slow_op_redact(&self, redact: bool) {
        self.slow_op_redact.set(redact);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_turns_the_log_off_and_back_on() {
        let s = LiveSettings::default();
        s.set_slow_op_ms(0);
        assert_eq!(s.slow_op_threshold_us(), u64::MAX);
        assert_eq!(s.slow_op_ms(), 0);
        s.set_slow_op_ms(7);
        assert_eq!(s.slow_op_threshold_us(), 7000);
        assert_eq!(s.slow_op_ms(), 7);
    }
}
