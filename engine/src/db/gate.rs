//! Fair admission of write bytes on one core: the bound on bytes admitted and not yet
//! durable, and the delayed write rate while flushes or compactions fall behind.
//!
//! Ownership: one `WriteGate` per `Db`, used by the foreground tasks of the core that
//! owns it (`Db::admit`); never shared across cores. The gate is a synchronous state
//! machine (`try_fast`, `enqueue`, `try_grant`, `release`); `Db::admit` does the
//! waiting.
//!
//! Why: a writer that pipelines megabytes would otherwise put all of them into the log
//! ahead of a small write (which then waits for their group commits) and fill the
//! memtables until every writer meets the hard stall. Here a write of N bytes first
//! needs N bytes of room under `write_in_flight_bytes` (released when its writer has
//! seen it durable) and, while the engine is slowed, N bytes of the delayed write rate
//! (RocksDB's `delayed_write_rate`): a 1 MiB write waits 1 MiB / rate, a 100-byte write
//! about nothing.
//!
//! Fairness: waiters are served in the order of weighted fair queuing with every
//! write its own flow: a write's finish tag is the virtual time at its arrival plus its
//! bytes, and virtual time advances at each grant by the granted bytes over the
//! writers then waiting (a discrete model of processor sharing). So a small write
//! passes every large one that has not yet waited its share, and a large one waits
//! at most about its own bytes' worth of later small ones: no write starves.

use crate::config::{SMALL_WRITE_LANE_BYTES, SMALL_WRITE_MAX_BYTES};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::task::Waker;
use std::time::{Duration, Instant};

/// A place in the queue: (finish tag, arrival number). Ordered: the first is served.
pub(super) type Ticket = (u64, u64);

/// What `try_grant` decided for a waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    /// Admitted: its bytes now count as in flight.
    Granted,
    /// First in line, but the delayed write rate lacks its bytes for this long.
    WaitRate(Duration),
    /// Another waiter goes first, or the in-flight bytes are at their bound.
    WaitTurn,
}

struct Waiter {
    bytes: usize,
    waker: Option<Waker>,
    woken: bool,
    /// Admitted by a release (its bytes already count), not yet seen by its task.
    granted: bool,
}

pub(super) struct GateLimits {
    /// Bytes admitted and not released before a write must queue.
    pub in_flight_bytes: usize,
    /// Bytes per second admitted while slowed; 0: no delayed write rate.
    pub rate_bytes_per_sec: u64,
    /// Rate credit kept while nobody waits (what a burst of small writes may use).
    pub burst_bytes: usize,
}

struct State {
    limits: GateLimits,
    in_flight: usize,
    /// Bytes admitted through the small-write lane and not yet released.
    small_in_flight: usize,
    /// Credit of the delayed write rate (bytes), refilled lazily at `refilled_at`.
    credit: f64,
    refilled_at: Instant,
    virtual_time: u64,
    arrivals: u64,
    waiters: BTreeMap<Ticket, Waiter>,
    /// Whether the engine was slowed when last asked; releases admit waiters
    /// themselves only when it was not (the rate needs the waiter's own clock).
    slowed: bool,
}

pub(super) struct WriteGate {
    st: RefCell<State>,
}

impl WriteGate {
    pub fn new(limits: GateLimits, now: Instant) -> WriteGate {
        assert!(limits.in_flight_bytes > 0, "the gate must admit some bytes");
        let credit = limits.burst_bytes as f64;
        WriteGate {
            st: RefCell::new(State {
                limits,
                in_flight: 0,
                small_in_flight: 0,
                credit,
                refilled_at: now,
                virtual_time: 0,
                arrivals: 0,
                waiters: BTreeMap::new(),
                slowed: false,
            }),
        }
    }

    /// Admits `bytes` at once when nobody waits and the limits allow it (the path of
    /// every write on a core that is not under pressure); false: `enqueue`.
    pub fn try_fast(&self, bytes: usize, slowed: bool, now: Instant) -> bool {
        let mut st = self.st.borrow_mut();
        st.slowed = slowed;
        if !st.waiters.is_empty() {
            return false;
        }
        st.refill(slowed, bytes, now);
        if !st.fits(bytes, slowed) {
            return false;
        }
        st.take(bytes, slowed, 1);
        true
    }

    /// Admits a small write (at most `SMALL_WRITE_MAX_BYTES`) from the small-write
    /// lane, ahead of any queue, while the lane's pool (`SMALL_WRITE_LANE_BYTES`) has
    /// room and, when slowed, the rate credit covers it; false: `try_fast`/`enqueue`.
    ///
    /// Why a lane: in fair order a small write still lands behind the large ones
    /// whose tags came due (their turn is fair, but each costs a megabyte commit), so
    /// under a flood it waited tens of milliseconds. Its own small pool lets it into
    /// the log at once; large writes keep the whole main bound, so they do not starve.
    pub fn try_small(&self, bytes: usize, slowed: bool, now: Instant) -> bool {
        let mut st = self.st.borrow_mut();
        if bytes > SMALL_WRITE_MAX_BYTES || st.small_in_flight + bytes > SMALL_WRITE_LANE_BYTES {
            return false;
        }
        st.refill(slowed, bytes, now);
        let rated = slowed && st.limits.rate_bytes_per_sec > 0;
        if rated && st.credit < bytes as f64 {
            return false;
        }
        if rated {
            st.credit -= bytes as f64;
        }
        st.small_in_flight += bytes;
        true
    }

    /// Returns bytes admitted by `try_small`.
    pub fn release_small(&self, bytes: usize) {
        let mut st = self.st.borrow_mut();
        assert!(
            st.small_in_flight >= bytes,
            "the small-write lane released more than it admitted"
        );
        st.small_in_flight -= bytes;
    }

    /// Queues a write of `bytes`; its ticket orders it among the waiters.
    pub fn enqueue(&self, bytes: usize) -> Ticket {
        let mut st = self.st.borrow_mut();
        st.arrivals += 1;
        let ticket = (st.virtual_time.saturating_add(bytes as u64), st.arrivals);
        let w = Waiter {
            bytes,
            waker: None,
            woken: false,
            granted: false,
        };
        assert!(st.waiters.insert(ticket, w).is_none(), "tickets are unique");
        ticket
    }

    /// Admits the waiter `t` if it is first in line and the limits allow its bytes.
    pub fn try_grant(&self, t: Ticket, slowed: bool, now: Instant) -> Grant {
        let mut st = self.st.borrow_mut();
        st.slowed = slowed;
        let Some(w) = st.waiters.get(&t) else {
            panic!("try_grant of a ticket that is not queued");
        };
        if w.granted {
            st.waiters.remove(&t);
            return Grant::Granted;
        }
        let bytes = w.bytes;
        if st.first_waiting() != Some(t) {
            return Grant::WaitTurn;
        }
        st.refill(slowed, bytes, now);
        if !st.has_room(bytes) {
            return Grant::WaitTurn;
        }
        if slowed && st.credit < bytes as f64 {
            let missing = bytes as f64 - st.credit;
            // Rounded up, so that the credit suffices once the wait is over.
            let micros = (missing * 1e6 / st.limits.rate_bytes_per_sec as f64).ceil();
            return Grant::WaitRate(Duration::from_micros(micros as u64));
        }
        let waiting = st.waiters.len();
        st.waiters.remove(&t);
        st.take(bytes, slowed, waiting);
        st.admit_ready();
        Grant::Granted
    }

    /// Leaves the queue without being admitted (the waiting future was dropped).
    pub fn cancel(&self, t: Ticket) {
        let mut st = self.st.borrow_mut();
        if let Some(w) = st.waiters.remove(&t)
            && w.granted
        {
            assert!(
                st.in_flight >= w.bytes,
                "a granted waiter's bytes are in flight"
            );
            st.in_flight -= w.bytes;
        }
        st.admit_ready();
    }

    /// Returns admitted bytes (their writer has seen them durable, or failed).
    pub fn release(&self, bytes: usize) {
        let mut st = self.st.borrow_mut();
        assert!(
            st.in_flight >= bytes,
            "the gate released more than it admitted"
        );
        st.in_flight -= bytes;
        st.admit_ready();
    }

    /// True once `t` was woken since it last registered; otherwise registers `waker`.
    pub fn poll_turn(&self, t: Ticket, waker: &Waker) -> bool {
        let mut st = self.st.borrow_mut();
        let Some(w) = st.waiters.get_mut(&t) else {
            return true;
        };
        if w.granted || std::mem::take(&mut w.woken) {
            return true;
        }
        w.waker = Some(waker.clone());
        false
    }

    #[cfg(test)]
    pub fn in_flight_bytes(&self) -> usize {
        self.st.borrow().in_flight
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.st.borrow().waiters.len()
    }
}

impl State {
    fn fits(&self, bytes: usize, slowed: bool) -> bool {
        self.has_room(bytes) && (!slowed || self.credit >= bytes as f64)
    }

    /// Room under the in-flight bound (one write larger than the bound goes alone).
    fn has_room(&self, bytes: usize) -> bool {
        self.in_flight == 0 || self.in_flight + bytes <= self.limits.in_flight_bytes
    }

    /// Adds the rate credit earned since the last refill. Credit grows up to what
    /// the write asking needs (or the burst): a large write saves up for itself, an
    /// idle gate does not bank an unbounded burst, and a small write that asks while a
    /// large one saves up takes its few bytes without erasing the savings.
    fn refill(&mut self, slowed: bool, next_bytes: usize, now: Instant) {
        let rate = self.limits.rate_bytes_per_sec;
        let cap = self.limits.burst_bytes.max(next_bytes) as f64;
        if slowed && rate > 0 {
            let dt = now
                .saturating_duration_since(self.refilled_at)
                .as_secs_f64();
            self.credit = (self.credit + dt * rate as f64).min(cap.max(self.credit));
        } else {
            self.credit = cap;
        }
        self.refilled_at = now;
    }

    /// Admits `bytes`; `waiting` writers (the admitted one included) shared the
    /// service, so virtual time advances by the bytes over them.
    fn take(&mut self, bytes: usize, slowed: bool, waiting: usize) {
        self.in_flight += bytes;
        if slowed && self.limits.rate_bytes_per_sec > 0 {
            self.credit -= bytes as f64;
            assert!(self.credit >= 0.0, "admitted beyond the rate credit");
        }
        let share = bytes as u64 / waiting.max(1) as u64;
        self.virtual_time = self.virtual_time.saturating_add(share);
    }

    /// The first waiter not yet admitted.
    fn first_waiting(&self) -> Option<Ticket> {
        self.waiters
            .iter()
            .find(|(_, w)| !w.granted)
            .map(|(&t, _)| t)
    }

    /// After bytes were returned or a waiter left: admits waiters in order while they
    /// fit, without waiting for each to be polled (a task switch per grant let later
    /// arrivals find a queue of writes that could already have gone). While slowed it
    /// only wakes the first, which waits for the rate on its own clock.
    fn admit_ready(&mut self) {
        while let Some(t) = self.first_waiting() {
            let bytes = self.waiters[&t].bytes;
            if !self.slowed && self.has_room(bytes) {
                let waiting = self.waiters.len();
                self.take(bytes, false, waiting);
                if let Some(w) = self.waiters.get_mut(&t) {
                    w.granted = true;
                    if let Some(waker) = w.waker.take() {
                        waker.wake();
                    }
                }
                continue;
            }
            if let Some(w) = self.waiters.get_mut(&t) {
                w.woken = true;
                if let Some(waker) = w.waker.take() {
                    waker.wake();
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn gate(in_flight_bytes: usize, rate_bytes_per_sec: u64) -> (WriteGate, Instant) {
        let now = Instant::now();
        let limits = GateLimits {
            in_flight_bytes,
            rate_bytes_per_sec,
            burst_bytes: 64 << 10,
        };
        (WriteGate::new(limits, now), now)
    }

    /// Grants first-in-line waiters until one cannot go; returns the sizes admitted,
    /// in order.
    fn drain(g: &WriteGate, tickets: &mut Vec<(Ticket, usize)>, now: Instant) -> Vec<usize> {
        let mut order = Vec::new();
        loop {
            tickets.sort();
            let Some(&(t, bytes)) = tickets.first() else {
                return order;
            };
            if g.try_grant(t, false, now) != Grant::Granted {
                return order;
            }
            tickets.remove(0);
            order.push(bytes);
        }
    }

    /// Table: writes queued behind a full in-flight bound, in arrival order, then
    /// served one release at a time; the order they are admitted in.
    #[test]
    fn queued_writes_are_served_in_fair_order() {
        struct Case {
            name: &'static str,
            arrivals: &'static [usize],
            admitted: &'static [usize],
        }
        let cases = [
            Case {
                name: "a small write passes the large ones queued before it",
                arrivals: &[MIB, MIB, MIB, 100],
                admitted: &[100, MIB, MIB, MIB],
            },
            Case {
                name: "of writes queued together, the smaller finishes first",
                arrivals: &[200, MIB, 100],
                admitted: &[100, 200, MIB],
            },
            Case {
                name: "equal writes are first come, first served",
                arrivals: &[MIB, MIB, MIB],
                admitted: &[MIB, MIB, MIB],
            },
        ];
        for c in cases {
            let (g, now) = gate(MIB, 0);
            assert!(g.try_fast(MIB, false, now), "{}: first write", c.name);
            let mut tickets: Vec<_> = c.arrivals.iter().map(|&b| (g.enqueue(b), b)).collect();
            let mut order = Vec::new();
            for _ in 0..=c.arrivals.len() {
                // One write in flight at a time (the bound is 1 MiB): each release
                // admits the next in line.
                let held = g.in_flight_bytes();
                g.release(held);
                order.extend(drain(&g, &mut tickets, now));
            }
            assert_eq!(order, c.admitted, "{}", c.name);
        }
    }

    /// A large write does not starve behind a stream of small ones: each grant
    /// advances virtual time, so the large write's tag comes up.
    #[test]
    fn a_large_write_is_not_starved_by_small_ones() {
        let (g, now) = gate(1, 0);
        assert!(g.try_fast(1, false, now));
        let large = g.enqueue(MIB);
        let mut small_before_large = 0;
        loop {
            let small = g.enqueue(1000);
            let held = g.in_flight_bytes();
            g.release(held);
            if g.try_grant(large, false, now) == Grant::Granted {
                break;
            }
            assert_eq!(g.try_grant(small, false, now), Grant::Granted);
            small_before_large += 1;
            assert!(
                small_before_large < 10 * MIB / 1000,
                "the large write starved"
            );
        }
        assert!(
            small_before_large > 0,
            "small writes went first for a while"
        );
    }

    /// Table: while slowed, a write of N bytes waits N / rate (less the credit);
    /// small writes wait about nothing.
    #[test]
    fn the_delay_while_slowed_is_proportional_to_bytes() {
        let rate = 16 * MIB as u64;
        for (bytes, expected_ms) in [(MIB, 62.5), (4 * MIB, 250.0), (16 * MIB, 1000.0)] {
            let (g, now) = gate(64 * MIB, rate);
            // Spend the burst credit first: the delay is then for all of `bytes`.
            assert!(g.try_fast(64 << 10, true, now));
            let t = g.enqueue(bytes);
            let Grant::WaitRate(d) = g.try_grant(t, true, now) else {
                panic!("{bytes} bytes admitted without a delay");
            };
            let ms = d.as_secs_f64() * 1000.0;
            assert!((ms - expected_ms).abs() < 0.01, "{bytes} bytes: {ms} ms");
            assert_eq!(g.try_grant(t, true, now + d), Grant::Granted);
        }
        let (g, now) = gate(64 * MIB, rate);
        assert!(g.try_fast(64 << 10, true, now));
        let t = g.enqueue(100);
        let Grant::WaitRate(d) = g.try_grant(t, true, now) else {
            panic!("no credit left, yet admitted");
        };
        assert!(d < Duration::from_micros(10), "100 bytes wait {d:?}");
        // Not slowed: no rate at all.
        let (g, now) = gate(64 * MIB, rate);
        assert!(g.try_fast(16 * MIB, false, now));
    }

    /// A small write served while a large one saves up rate credit costs the large
    /// one only the small write's bytes.
    #[test]
    fn a_small_write_does_not_erase_a_large_ones_savings() {
        let rate = MIB as u64;
        let (g, now) = gate(64 * MIB, rate);
        assert!(g.try_fast(64 << 10, true, now));
        let large = g.enqueue(MIB);
        let half = now + Duration::from_millis(500);
        assert!(matches!(g.try_grant(large, true, half), Grant::WaitRate(_)));
        let small = g.enqueue(100);
        assert_eq!(g.try_grant(small, true, half), Grant::Granted);
        let Grant::WaitRate(d) = g.try_grant(large, true, half) else {
            panic!("the large write went without its credit");
        };
        let expected = Duration::from_secs_f64((MIB / 2 + 100) as f64 / rate as f64);
        assert!(d.abs_diff(expected) < Duration::from_micros(2), "{d:?}");
    }

    /// The in-flight bound: a write beyond it queues until bytes are released; one
    /// write larger than the bound still goes alone.
    #[test]
    fn in_flight_bytes_are_bounded_and_released() {
        let (g, now) = gate(2 * MIB, 0);
        assert!(g.try_fast(MIB, false, now));
        assert!(g.try_fast(MIB, false, now));
        assert!(!g.try_fast(1, false, now));
        let t = g.enqueue(8 * MIB);
        assert_eq!(g.try_grant(t, false, now), Grant::WaitTurn);
        g.release(MIB);
        assert_eq!(g.try_grant(t, false, now), Grant::WaitTurn);
        g.release(MIB);
        assert_eq!(g.try_grant(t, false, now), Grant::Granted);
        assert_eq!(g.in_flight_bytes(), 8 * MIB);
        assert_eq!(g.waiting(), 0);
    }

    /// The small-write lane: small writes go at once while large ones queue behind
    /// a full bound, up to the lane's pool; larger writes never take it; while slowed
    /// they still pay the rate.
    #[test]
    fn small_writes_take_their_lane_past_a_full_queue() {
        let (g, now) = gate(MIB, 0);
        assert!(g.try_fast(MIB, false, now));
        let large = g.enqueue(MIB);
        assert_eq!(g.try_grant(large, false, now), Grant::WaitTurn);
        assert!(!g.try_small(SMALL_WRITE_MAX_BYTES + 1, false, now));
        let fit = SMALL_WRITE_LANE_BYTES / SMALL_WRITE_MAX_BYTES;
        for i in 0..fit {
            assert!(
                g.try_small(SMALL_WRITE_MAX_BYTES, false, now),
                "small write {i}"
            );
        }
        assert!(!g.try_small(1, false, now), "the lane's pool is full");
        g.release_small(SMALL_WRITE_MAX_BYTES);
        assert!(g.try_small(100, false, now));
        // The lane leaves the main bound to the large writes.
        assert_eq!(g.in_flight_bytes(), MIB);
        g.release(MIB);
        assert_eq!(g.try_grant(large, false, now), Grant::Granted);
        // Slowed without credit: the lane refuses (the write queues and waits).
        let (g, now) = gate(64 * MIB, MIB as u64);
        assert!(g.try_fast(64 << 10, true, now));
        assert!(!g.try_small(100, true, now));
        assert!(g.try_small(100, true, now + Duration::from_millis(1)));
    }

    /// A release admits the waiters that now fit before their tasks run: a write
    /// arriving meanwhile finds them gone from the queue, not ahead of it.
    #[test]
    fn a_release_admits_waiters_without_their_poll() {
        let (g, now) = gate(MIB, 0);
        assert!(g.try_fast(MIB, false, now));
        let a = g.enqueue(MIB);
        let b = g.enqueue(MIB);
        g.release(MIB);
        assert_eq!(
            g.in_flight_bytes(),
            MIB,
            "the first waiter was not admitted"
        );
        assert!(g.poll_turn(a, Waker::noop()));
        assert_eq!(g.try_grant(a, false, now), Grant::Granted);
        assert_eq!(g.try_grant(b, false, now), Grant::WaitTurn);
        // Cancelling an admitted waiter gives its bytes back.
        g.release(MIB);
        assert_eq!(g.in_flight_bytes(), MIB);
        g.cancel(b);
        assert_eq!(g.in_flight_bytes(), 0);
        assert_eq!(g.waiting(), 0);
    }

    /// A cancelled first waiter hands its turn on.
    #[test]
    fn cancel_wakes_the_next_waiter() {
        let (g, now) = gate(MIB, 0);
        assert!(g.try_fast(MIB, false, now));
        let a = g.enqueue(100);
        let b = g.enqueue(200);
        let waker = Waker::noop().clone();
        assert!(!g.poll_turn(b, &waker));
        g.cancel(a);
        assert!(g.poll_turn(b, &waker), "the next waiter was not woken");
        g.release(MIB);
        assert_eq!(g.try_grant(b, false, now), Grant::Granted);
    }
}
