//! `kill -9` of the server under a write load: after a restart every acknowledged
//! PUT is there with its value, with `--sync fsync` and with `--sync none` (whose
//! writes reach the kernel before they are acknowledged, so a process crash loses
//! none of them; only a power loss may).

mod common;

use common::{Opts, Server};
use nextdb_client::{Client, Config};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CYCLES: usize = 5;
const WRITERS: usize = 16;

#[test]
fn acknowledged_puts_survive_kill_9() {
    puts_survive_kill_9("fsync");
}

#[test]
fn acknowledged_unsynced_puts_survive_kill_9() {
    puts_survive_kill_9("none");
}

fn puts_survive_kill_9(sync: &'static str) {
    let opts = Opts {
        sync,
        ..Opts::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    // Newest acknowledged value per key, and the one write per writer that was in
    // flight at the kill (it may or may not have applied).
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut in_doubt: Vec<(String, String)> = Vec::new();
    let mut rng = rand::thread_rng();
    for cycle in 0..CYCLES {
        let s = Server::start_on(dir.path(), port, &opts);
        // Everything acknowledged in earlier cycles is still there.
        verify(&s, &mut model, &mut in_doubt, &format!("cycle {cycle}"));
        let stop = Arc::new(AtomicBool::new(false));
        let addr = s.addr;
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let c =
                        Client::connect(Config::new(addr.to_string()).max_retries(0).pool_size(1))
                            .unwrap();
                    let mut acked = Vec::new();
                    let mut doubt = None;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // Overwrites too: the newest acknowledged value must win.
                        let k = format!("c{t:02}:{}", i % 500);
                        let v = format!("{cycle}-{t}-{i}");
                        match c.put(k.as_bytes(), v.as_bytes()) {
                            Ok(()) => acked.push((k, v)),
                            Err(_) => {
                                doubt = Some((k, v));
                                break;
                            }
                        }
                        i += 1;
                    }
                    (acked, doubt)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..1200)));
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut n = 0;
        for w in writers {
            let (acked, doubt) = w.join().unwrap();
            n += acked.len();
            // Writers own their keys, so acknowledgement order is write order.
            model.extend(acked);
            in_doubt.extend(doubt);
        }
        assert!(n > 0, "cycle {cycle}: no write was acknowledged");
    }
    let s = Server::start_on(dir.path(), port, &opts);
    verify(&s, &mut model, &mut in_doubt, "final");
}

/// Every key holds its newest acknowledged value, or the write that was in flight
/// for it when the server died (which then becomes the newest).
fn verify(
    s: &Server,
    model: &mut BTreeMap<String, String>,
    in_doubt: &mut Vec<(String, String)>,
    when: &str,
) {
    let c = Client::connect(Config::new(s.addr.to_string())).unwrap();
    for (k, v) in in_doubt.drain(..) {
        let got = c.get(k.as_bytes()).unwrap();
        if got.as_deref() == Some(v.as_bytes()) {
            model.insert(k, v);
        }
    }
    for (k, v) in model.iter() {
        let got = c.get(k.as_bytes()).unwrap();
        assert_eq!(
            got.as_deref().map(String::from_utf8_lossy),
            Some(v.as_str().into()),
            "{when}: {k} lost its acknowledged value ({} keys checked)",
            model.len()
        );
    }
}
