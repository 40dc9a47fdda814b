//! Many tasks on a real glommio executor with a 1 ms preemption timer, yielding between
//! steps. Each test is bounded: it fails (does not hang) if the work does not finish.

use super::*;
use crate::runtime::testing::{run_bounded, run_isolated};
use std::cell::Cell;
use std::time::Duration;

const TASKS: u64 = 64;
const ROUNDS: u64 = 300;

#[test]
fn wait_registered_before_notify_completes() {
    let n = Notify::new();
    let w = n.wait();
    n.notify_all();
    futures_lite::future::block_on(w);
}

/// A notifier raises a counter and notifies; every waiter waits for each value in
/// turn, checking the counter only after registering (`wait()` first). A lost
/// notification leaves a waiter parked and the test times out.
#[test]
fn no_waiter_misses_a_notification() {
    run_bounded(Duration::from_secs(20), || async {
        let n = Notify::new();
        let counter = Rc::new(Cell::new(0u64));
        let waiters: Vec<_> = (0..TASKS)
            .map(|t| {
                let (n, counter) = (n.clone(), counter.clone());
                glommio::spawn_local(async move {
                    for want in 1..=ROUNDS {
                        loop {
                            let w = n.wait();
                            if counter.get() >= want {
                                break;
                            }
                            w.await;
                        }
                        if (t + want) % 7 == 0 {
                            glommio::yield_if_needed().await;
                        }
                    }
                })
            })
            .collect();
        for i in 1..=ROUNDS {
            counter.set(i);
            n.notify_all();
            if i % 3 == 0 {
                futures_lite::future::yield_now().await;
            } else {
                glommio::yield_if_needed().await;
            }
        }
        for w in waiters {
            w.await;
        }
    });
}

/// Tasks take the lock, yield while holding it, and check nobody else is inside.
#[test]
fn lock_is_exclusive_across_awaits() {
    run_bounded(Duration::from_secs(20), || async {
        let lock = Rc::new(AsyncLock::default());
        let inside = Rc::new(Cell::new(false));
        let done = Rc::new(Cell::new(0u64));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (lock, inside, done) = (lock.clone(), inside.clone(), done.clone());
                glommio::spawn_local(async move {
                    for _ in 0..ROUNDS / 10 {
                        let g = lock.lock().await;
                        assert!(!inside.replace(true), "two tasks inside the lock");
                        futures_lite::future::yield_now().await;
                        inside.set(false);
                        done.set(done.get() + 1);
                        drop(g);
                        glommio::yield_if_needed().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert_eq!(done.get(), TASKS * (ROUNDS / 10));
    });
}

/// Waiters, notifiers and lock holders all at once, as the engine mixes them (writers
/// stalled on `changed`, the background task on `bg_wake`, flushes under a lock).
#[test]
fn notify_and_lock_mixed_under_preemption() {
    run_bounded(Duration::from_secs(20), || async {
        let n = Notify::new();
        let lock = Rc::new(AsyncLock::default());
        let level = Rc::new(Cell::new(0u64));
        let mut tasks = Vec::new();
        for t in 0..TASKS / 2 {
            let (n, lock, level) = (n.clone(), lock.clone(), level.clone());
            tasks.push(glommio::spawn_local(async move {
                for r in 0..ROUNDS / 10 {
                    let _g = lock.lock().await;
                    if (t + r) % 5 == 0 {
                        glommio::timer::sleep(Duration::from_micros(50)).await;
                    }
                    level.set(level.get() + 1);
                    n.notify_all();
                }
            }));
        }
        let target = (TASKS / 2) * (ROUNDS / 10);
        for _ in 0..TASKS / 2 {
            let (n, level) = (n.clone(), level.clone());
            tasks.push(glommio::spawn_local(async move {
                loop {
                    let w = n.wait();
                    if level.get() >= target {
                        break;
                    }
                    w.await;
                    glommio::yield_if_needed().await;
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

/// glommio 0.9.0's scheduler treated "the preemption timer fired before any task queue
/// ran" like "no queue has work" and parked the thread with tasks runnable; only I/O,
/// a timer or a foreign wake ended the park (the fix: `third_party/glommio`). Here one
/// leader yields between steps (it stays runnable) while every other task waits for
/// its notification, and nothing else can wake the executor: no I/O, no timer, no
/// foreign wake, so a park with the leader runnable never ends and the test fails at its
/// limit. The timers are shorter than the reactor's own turn, so they have usually
/// fired by the scheduler's first look (unpatched: parked within a few rounds at
/// both); with 1 µs a scheduler that merely went back to the reactor instead of
/// parking would never run a task.
#[test]
fn runnable_tasks_run_when_the_timer_fired_before_any_queue() {
    for timer in [Duration::from_micros(1), Duration::from_micros(10)] {
        run_isolated(Duration::from_secs(20), timer, || async {
            let n = Notify::new();
            let level = Rc::new(Cell::new(0u64));
            let mut tasks = Vec::new();
            for _ in 0..TASKS {
                let (n, level) = (n.clone(), level.clone());
                tasks.push(glommio::spawn_local(async move {
                    for want in 1..=ROUNDS {
                        loop {
                            let w = n.wait();
                            if level.get() >= want {
                                break;
                            }
                            w.await;
                        }
                    }
                }));
            }
            let (leader_n, leader_level) = (n.clone(), level.clone());
            tasks.push(glommio::spawn_local(async move {
                for i in 1..=ROUNDS {
                    if i % 2 == 0 {
                        futures_lite::future::yield_now().await;
                    } else {
                        glommio::yield_if_needed().await;
                    }
                    leader_level.set(i);
                    leader_n.notify_all();
                }
            }));
            for t in tasks {
                t.await;
            }
            assert_eq!(level.get(), ROUNDS);
        });
    }
}
