//! When to resend a failed request and how long to wait first; one policy for both
//! clients.

use std::time::Duration;

use nextdb_proto::ErrorCode;
use rand::Rng;

use crate::config::Config;
use crate::error::Error;

/// Whether to try again after `err`.
///
/// `sent`: the request may have reached the server (false only when opening the
/// connection failed). `idempotent`: sending it twice has the same effect as once.
/// A retryable error *response* means the server refused the request without applying
/// it, so any request may be resent; the exception is the server's TIMEOUT, after
/// which a write may or may not have been applied. A lost connection after sending
/// leaves the outcome unknown, so only idempotent requests are resent.
pub(crate) fn should_retry(err: &Error, sent: bool, idempotent: bool) -> bool {
    match err {
        Error::Server { code: Some(c), .. } => {
            c.is_retryable() && (idempotent || *c != ErrorCode::Timeout)
        }
        Error::Server { code: None, .. } => false,
        e => e.is_retryable() && (idempotent || !sent),
    }
}

/// The delay before retry number `attempt` (0 = first retry): exponential, capped at
/// `backoff_max`, with "equal jitter" (half fixed, half random) so clients that failed
/// together do not retry in lockstep.
pub(crate) fn backoff(cfg: &Config, attempt: u32) -> Duration {
    let base = cfg
        .backoff_initial
        .saturating_mul(1u32 << attempt.min(20))
        .min(cfg.backoff_max);
    let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
    if nanos < 2 {
        return base;
    }
    Duration::from_nanos(nanos / 2 + rand::thread_rng().gen_range(0..=nanos / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let busy = Error::server(ErrorCode::Busy as u16, "x");
        assert!(should_retry(&busy, true, false));
        let timeout = Error::server(ErrorCode::Timeout as u16, "x");
        assert!(should_retry(&timeout, true, true));
        assert!(!should_retry(&timeout, true, false));
        let invalid = Error::server(ErrorCode::InvalidArgument as u16, "x");
        assert!(!should_retry(&invalid, true, true));
        assert!(should_retry(&Error::Closed, true, true));
        assert!(!should_retry(&Error::Closed, true, false));
        assert!(should_retry(&Error::Closed, false, false));
        assert!(!should_retry(&Error::Auth("x".into()), false, true));
        let refused = Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(should_retry(&refused, false, false));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = Config::default().backoff(Duration::from_millis(10), Duration::from_millis(100));
        for _ in 0..100 {
            let d0 = backoff(&cfg, 0);
            assert!(d0 >= Duration::from_millis(5) && d0 <= Duration::from_millis(10));
            let d2 = backoff(&cfg, 2);
            assert!(d2 >= Duration::from_millis(20) && d2 <= Duration::from_millis(40));
            let d9 = backoff(&cfg, 40);
            assert!(d9 >= Duration::from_millis(50) && d9 <= Duration::from_millis(100));
        }
    }
}
