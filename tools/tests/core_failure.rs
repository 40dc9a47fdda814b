//! A core that fails stops the whole node: the process exits non-zero within a
//! bound, saying why, instead of serving on (or hanging) with a dead core.

mod common;

use common::{Opts, Raw, Server, free_port};
use nextdb_proto::{Request, Response};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// Waits for `child` to exit; its exit code and every output line.
fn wait_exit(child: &mut Child, output: &mpsc::Receiver<String>) -> (Option<i32>, String) {
    let deadline = Instant::now() + EXIT_WITHIN;
    let mut seen = Vec::new();
    let status = loop {
        seen.extend(output.try_iter());
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!(
                "the node still runs {EXIT_WITHIN:?} after a core failed:\n{}",
                seen.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    seen.extend(output.try_iter());
    (status.code(), seen.join("\n"))
}

fn put_and_check(s: &Server) {
    let mut c = Raw::connect(s.addr);
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));
    for i in 0..20 {
        let put = Request::Put {
            key: format!("k{i}").into_bytes(),
            value: b"v".to_vec(),
            ttl_ms: None,
        };
        assert_eq!(c.call(put), Response::Done);
    }
}

fn all_there(s: &Server) {
    let mut c = Raw::connect(s.addr);
    assert!(matches!(c.hello_none(), Response::HelloOk(_)));
    for i in 0..20 {
        let get = Request::Get {
            key: format!("k{i}").into_bytes(),
        };
        assert_eq!(c.call(get), Response::Value(Some(b"v".to_vec())));
    }
}

fn start_failing(dir: &Path, env: Vec<(&'static str, String)>) -> (Child, mpsc::Receiver<String>) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let opts = Opts {
        env,
        ..Opts::default()
    };
    let mut child = Server::command(dir, addr, &opts).spawn().unwrap();
    let output = Server::collect_output(&mut child);
    (child, output)
}

#[test]
fn a_panicking_core_stops_the_node_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    put_and_check(&s);
    let (code, _) = s.terminate();
    assert_eq!(code, Some(0));

    // Shard 1 panics a moment after it starts serving; shard 0 is healthy.
    let env = vec![
        ("NEXTDB_FAULT_PANIC_SHARD", "1".to_string()),
        ("NEXTDB_FAULT_PANIC_AFTER_MS", "500".to_string()),
    ];
    let (mut child, output) = start_failing(dir.path(), env);
    let (code, out) = wait_exit(&mut child, &output);
    assert!(out.contains("nextdb: ready"), "{out}");
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{out}");
    assert!(out.contains("shard 1 panicked"), "{out}");
    assert!(out.contains("fails on purpose"), "{out}");

    // Nothing acknowledged before is lost.
    let s = Server::start(dir.path(), &Opts::default());
    all_there(&s);
}

#[test]
fn a_core_that_cannot_open_its_engine_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    put_and_check(&s);
    let (code, _) = s.terminate();
    assert_eq!(code, Some(0));

    // Shard 1's manifest pointer is garbage; shard 0 opens fine.
    let current = dir.path().join("shard-1").join("CURRENT");
    let good = std::fs::read(&current).unwrap();
    std::fs::write(&current, b"MANIFEST-999999\n").unwrap();
    let (mut child, output) = start_failing(dir.path(), Vec::new());
    let (code, out) = wait_exit(&mut child, &output);
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}:\n{out}");
    assert!(out.contains("shard 1"), "{out}");
    assert!(
        out.contains("shard-1"),
        "the reason names the directory: {out}"
    );
    assert!(!out.contains("nextdb: ready"), "{out}");

    std::fs::write(&current, good).unwrap();
    let s = Server::start(dir.path(), &Opts::default());
    all_there(&s);
}
