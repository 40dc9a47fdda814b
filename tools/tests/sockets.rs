//! The node's socket receive path, end to end, in both of its modes: a multishot
//! receive per connection drawing from the core's provided-buffer ring (the default),
//! and a readiness poll per read (`GLOMMIO_RECV_MULTISHOT=0`, and what older kernels
//! get). The ring holds 1 MiB per core; values of several MiB,
//! more connections than it has buffers, and a deep pipeline all exhaust it, so the
//! fallback to a plain `recv` while buffers are held is exercised too, and so is a
//! reader that stops reading (its receive is cancelled and re-armed later). Every byte is
//! checked, and the kernel's own view of the rings (`/proc/PID/fdinfo`) shows which
//! mode the server really ran.

mod common;

use common::load::{Got, Wire};
use common::{Opts, Server};
use nextdb_proto::{Request, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;

/// `IORING_OP_RECV`, as the kernel lists armed requests in an io_uring's fdinfo.
const OP_RECV: &str = "op=27,";

fn login(addr: SocketAddr) -> Wire {
    let mut w = Wire::connect(addr).expect("connect");
    assert!(w.login_insecure(), "HELLO refused");
    w
}

fn value(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..len).map(|_| rng.r#gen()).collect()
}

fn put(w: &mut Wire, key: &[u8], value: Vec<u8>, id: u32) {
    let req = Request::Put {
        key: key.to_vec(),
        value,
        ttl_ms: None,
    };
    assert!(matches!(w.call(&req, id), Some(Response::Done)), "PUT {id}");
}

fn get(w: &mut Wire, key: &[u8], id: u32) -> Option<Vec<u8>> {
    match w.call(&Request::Get { key: key.to_vec() }, id) {
        Some(Response::Value(v)) => v,
        other => panic!("GET {id}: {other:?}"),
    }
}

/// Requests armed in the server's io_uring instances, as the kernel lists them.
fn armed_ops(pid: i32) -> String {
    let mut out = String::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy().contains("io_uring") {
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            out += &std::fs::read_to_string(info).unwrap_or_default();
        }
    }
    out
}

/// Values larger than all of a core's receive buffers, from several connections at
/// once, arrive intact.
fn big_values(addr: SocketAddr) {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut w = login(addr);
                for i in 0..3u64 {
                    let len = (3 << 20) + (t as usize * 4099) + i as usize;
                    let key = format!("big:{t}:{i}").into_bytes();
                    put(&mut w, &key, value(t * 10 + i, len), 1 + i as u32);
                    let got = get(&mut w, &key, 100 + i as u32).expect("big value present");
                    assert!(got == value(t * 10 + i, len), "big value {t}/{i} differs");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("big-value client failed");
    }
}

/// More connections than the ring has buffers, all sending before any reads.
fn many_connections(addr: SocketAddr) {
    let mut conns: Vec<Wire> = (0..400).map(|_| login(addr)).collect();
    for (i, w) in conns.iter_mut().enumerate() {
        let req = Request::Put {
            key: format!("many:{i}").into_bytes(),
            value: value(i as u64, 3000),
            ttl_ms: None,
        };
        w.send(&req, 7).expect("send");
    }
    for (i, w) in conns.iter_mut().enumerate() {
        assert!(
            matches!(w.recv(), Got::Frame(7, Response::Done)),
            "conn {i}"
        );
        let key = format!("many:{i}").into_bytes();
        assert_eq!(get(w, &key, 8), Some(value(i as u64, 3000)), "conn {i}");
    }
}

/// A thousand requests in one write; every answer comes back, with its value.
fn deep_pipeline(addr: SocketAddr) {
    let mut w = login(addr);
    let mut bytes = Vec::new();
    for i in 0..1000u32 {
        let req = Request::Put {
            key: format!("pipe:{i}").into_bytes(),
            value: value(u64::from(i), 700),
            ttl_ms: None,
        };
        req.encode(i, &mut bytes);
    }
    w.send_raw(&bytes).expect("send pipeline");
    let mut seen = vec![false; 1000];
    for _ in 0..1000 {
        match w.recv() {
            Got::Frame(id, Response::Done) => seen[id as usize] = true,
            other => panic!("pipeline answer: {other:?}"),
        }
    }
    assert!(seen.iter().all(|s| *s), "every pipelined request answered");
    for i in (0..1000u32).step_by(97) {
        let key = format!("pipe:{i}").into_bytes();
        assert_eq!(get(&mut w, &key, 5000 + i), Some(value(u64::from(i), 700)));
    }
}

/// A client that writes a long pipeline and reads nothing for a while: the server
/// stops reading it (its limits), the kernel's buffers it took are given back, the
/// TCP window closes; another client is served meanwhile, and once the first reads
/// again every answer arrives, in order.
fn stalled_reader(addr: SocketAddr) {
    const N: u32 = 2000;
    let mut stalled = login(addr);
    let mut out = stalled.s.try_clone().expect("clone socket");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for i in 0..N {
            let mut b = Vec::new();
            let req = Request::Put {
                key: format!("stall:{i}").into_bytes(),
                value: value(u64::from(i), 4000),
                ttl_ms: None,
            };
            req.encode(i, &mut b);
            out.write_all(&b).expect("pipeline write");
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(800));
    let mut other = login(addr);
    for i in 0..200u32 {
        let key = format!("other:{i}").into_bytes();
        put(&mut other, &key, value(u64::from(i) + 9000, 100), i);
        assert_eq!(
            get(&mut other, &key, 10_000 + i),
            Some(value(u64::from(i) + 9000, 100))
        );
    }
    let mut answered = 0;
    while answered < N {
        match stalled.recv() {
            Got::Frame(_, Response::Done) => answered += 1,
            other => panic!("stalled pipeline answer {answered}: {other:?}"),
        }
    }
    writer.join().expect("pipeline writer");
    for i in (0..N).step_by(173) {
        let key = format!("stall:{i}").into_bytes();
        assert_eq!(
            get(&mut stalled, &key, N + i),
            Some(value(u64::from(i), 4000))
        );
    }
}

fn run_suite(multishot: &str) {
    common::raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        shards: 1,
        sync: "none",
        env: vec![("GLOMMIO_RECV_MULTISHOT", multishot.to_string())],
        ..Opts::default()
    };
    let s = Server::start(dir.path(), &opts);
    let idle = login(s.addr);
    let armed = armed_ops(s.pid());
    assert_eq!(
        armed.contains(OP_RECV),
        multishot == "1",
        "an idle connection waits in a multishot receive exactly when enabled:\n{armed}"
    );
    big_values(s.addr);
    many_connections(s.addr);
    deep_pipeline(s.addr);
    stalled_reader(s.addr);
    // Peers that closed leave the server serving (end of stream seen on every path).
    drop(idle);
    let mut w = login(s.addr);
    put(&mut w, b"after", b"ok".to_vec(), 1);
    assert_eq!(get(&mut w, b"after", 2), Some(b"ok".to_vec()));
    let (code, out) = s.terminate();
    assert_eq!(code, Some(0), "clean shutdown:\n{}", out.join("\n"));
}

#[test]
fn multishot_receives_carry_every_byte() {
    run_suite("1");
}

#[test]
fn readiness_poll_receives_carry_every_byte() {
    run_suite("0");
}
