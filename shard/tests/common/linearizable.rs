//! A linearizability checker for single-key histories (Wing & Gong's search with
//! Lowe's memoization, the algorithm behind Knossos and Porcupine).
//!
//! The model is one key of the KV API holding an integer or nothing. Operations that
//! never returned (the node crashed under them) may take effect at any point after
//! their call, or never.

use std::collections::HashSet;

/// What a client asked for and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(i64),
    Delete,
    Get(Option<i64>),
    /// Compare-and-set: expected, new, and whether it swapped (with the value seen).
    Cas {
        expected: Option<i64>,
        new: Option<i64>,
        swapped: bool,
        seen: Option<i64>,
    },
    /// Increment: delta and the value it answered.
    Incr {
        delta: i64,
        result: i64,
    },
}

impl Op {
    /// The state after `self` from `state`, or None if `self` could not have seen
    /// `state` (its answer disagrees). An operation that never answered (`answered`
    /// false) has no answer to disagree with: only its effect counts.
    fn step(&self, state: Option<i64>, answered: bool) -> Option<Option<i64>> {
        match *self {
            Op::Put(v) => Some(Some(v)),
            Op::Delete => Some(None),
            Op::Get(seen) => (!answered || seen == state).then_some(state),
            Op::Cas {
                expected,
                new,
                swapped,
                seen,
            } => {
                let swaps = expected == state;
                if answered && (seen != state || swapped != swaps) {
                    return None;
                }
                Some(if swaps { new } else { state })
            }
            Op::Incr { delta, result } => {
                let next = state.unwrap_or(0).checked_add(delta)?;
                (!answered || next == result).then_some(Some(next))
            }
        }
    }

    /// Whether an operation whose answer is unknown could still have changed state.
    pub fn writes(&self) -> bool {
        !matches!(self, Op::Get(_))
    }
}

/// One operation of the history: logical call and return times (`ret` None: the
/// operation's outcome is unknown).
#[derive(Debug, Clone)]
pub struct Event {
    pub op: Op,
    pub call: u64,
    pub ret: Option<u64>,
}

#[derive(Clone, Copy)]
enum Kind {
    Call(usize),
    Return,
}

/// Doubly linked list of call/return entries, in time order, with O(1) unlink.
struct Entries {
    kinds: Vec<Kind>,
    prev: Vec<usize>,
    next: Vec<usize>,
    /// Position of each op's call and return entry.
    call_at: Vec<usize>,
    ret_at: Vec<Option<usize>>,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

impl Entries {
    fn new(history: &[Event]) -> Entries {
        let mut points: Vec<(u64, u8, usize)> = Vec::new();
        for (i, e) in history.iter().enumerate() {
            points.push((e.call, 1, i));
            if let Some(r) = e.ret {
                assert!(r > e.call, "op {i} returns before it is called");
                points.push((r, 0, i));
            }
        }
        // At equal times a return comes first: the ops do not overlap.
        points.sort_unstable();
        let n = points.len() + 1;
        let mut es = Entries {
            kinds: vec![Kind::Call(NIL); n],
            prev: (0..n).map(|i| i.wrapping_sub(1)).collect(),
            next: (1..=n).map(|i| if i == n { NIL } else { i }).collect(),
            call_at: vec![NIL; history.len()],
            ret_at: vec![None; history.len()],
        };
        es.prev[0] = NIL;
        for (slot, (_, is_call, op)) in points.into_iter().enumerate() {
            let at = slot + 1;
            if is_call == 1 {
                es.kinds[at] = Kind::Call(op);
                es.call_at[op] = at;
            } else {
                es.kinds[at] = Kind::Return;
                es.ret_at[op] = Some(at);
            }
        }
        es
    }

    fn unlink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = at;
        if n != NIL {
            self.prev[n] = at;
        }
    }

    /// Removes op `i` (call and return) from the list.
    fn lift(&mut self, i: usize) {
        self.unlink(self.call_at[i]);
        if let Some(r) = self.ret_at[i] {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, i: usize) {
        if let Some(r) = self.ret_at[i] {
            self.relink(r);
        }
        self.relink(self.call_at[i]);
    }
}

/// Ok if some total order of the operations, consistent with real time, explains
/// every answer starting from `initial`; else the index of the first operation
/// (by call time) the search could not place.
pub fn check(history: &[Event], initial: Option<i64>) -> Result<(), String> {
    let n = history.len();
    let mut es = Entries::new(history);
    let mut done = vec![0u64; n.div_ceil(64)];
    let mut cache: HashSet<(Vec<u64>, Option<i64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<i64>)> = Vec::new();
    let mut state = initial;
    let mut open = history.iter().filter(|e| e.ret.is_some()).count();
    let mut at = es.next[HEAD];
    let mut deepest = 0usize;
    while open > 0 {
        match es.kinds.get(at).copied() {
            Some(Kind::Call(i)) => {
                let next_state = history[i].op.step(state, history[i].ret.is_some());
                let mut placed = false;
                if let Some(s) = next_state {
                    done[i / 64] |= 1 << (i % 64);
                    if cache.insert((done.clone(), s)) {
                        stack.push((i, state));
                        state = s;
                        es.lift(i);
                        if history[i].ret.is_some() {
                            open -= 1;
                        }
                        deepest = deepest.max(stack.len());
                        at = es.next[HEAD];
                        placed = true;
                    } else {
                        done[i / 64] &= !(1 << (i % 64));
                    }
                }
                if !placed {
                    at = es.next[at];
                }
            }
            Some(Kind::Return) | None => {
                let Some((i, s)) = stack.pop() else {
                    return Err(format!(
                        "no linearization: {deepest} of {n} operations placed at most"
                    ));
                };
                state = s;
                done[i / 64] &= !(1 << (i % 64));
                es.unlift(i);
                if history[i].ret.is_some() {
                    open += 1;
                }
                at = es.next[es.call_at[i]];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, call: u64, ret: u64) -> Event {
        Event {
            op,
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn sequential_history_passes() {
        let h = [
            ev(Op::Put(1), 1, 2),
            ev(Op::Get(Some(1)), 3, 4),
            ev(
                Op::Incr {
                    delta: 2,
                    result: 3,
                },
                5,
                6,
            ),
        ];
        assert!(check(&h, None).is_ok());
    }

    #[test]
    fn stale_read_fails() {
        let h = [
            ev(Op::Put(1), 1, 2),
            ev(Op::Put(2), 3, 4),
            ev(Op::Get(Some(1)), 5, 6),
        ];
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn concurrent_ops_may_reorder() {
        // The GET overlaps the second PUT: it may see either value.
        let h = [
            ev(Op::Put(1), 1, 2),
            ev(Op::Put(2), 3, 6),
            ev(Op::Get(Some(1)), 4, 5),
        ];
        assert!(check(&h, None).is_ok());
    }

    #[test]
    fn lost_update_fails() {
        // INCR read 5 and wrote 6 while a PUT of 100 overlapped it; the final read
        // shows 6, which no serial order explains.
        let h = [
            ev(Op::Put(5), 1, 2),
            ev(Op::Put(100), 3, 8),
            ev(
                Op::Incr {
                    delta: 1,
                    result: 6,
                },
                4,
                9,
            ),
            ev(Op::Get(Some(6)), 10, 11),
        ];
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn unknown_outcome_may_or_may_not_apply() {
        let pending = Event {
            op: Op::Put(9),
            call: 3,
            ret: None,
        };
        let seen = [
            ev(Op::Put(1), 1, 2),
            pending.clone(),
            ev(Op::Get(Some(9)), 5, 6),
        ];
        assert!(check(&seen, None).is_ok());
        let unseen = [ev(Op::Put(1), 1, 2), pending, ev(Op::Get(Some(1)), 5, 6)];
        assert!(check(&unseen, None).is_ok());
    }

    #[test]
    fn unknown_answer_still_has_its_effect() {
        let pending = Event {
            op: Op::Incr {
                delta: 1,
                result: 0,
            },
            call: 3,
            ret: None,
        };
        let h = [ev(Op::Put(5), 1, 2), pending, ev(Op::Get(Some(6)), 5, 6)];
        assert!(check(&h, None).is_ok());
    }

    #[test]
    fn lost_acknowledged_write_fails() {
        let h = [
            ev(Op::Put(1), 1, 2),
            ev(Op::Delete, 3, 4),
            ev(Op::Get(Some(1)), 5, 6),
        ];
        assert!(check(&h, None).is_err());
    }
}
