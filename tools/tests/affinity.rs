//! Shards are pinned inside the CPUs the server was allowed, not to CPUs 0..N: a
//! server started under `taskset -c 1` (or a cpuset without CPU 0) ran its shard on
//! CPU 0 (or failed to start under the cpuset).

mod common;

use common::{Server, bin, free_port};
use nextdb_shard::config::allowed_cpus;
use std::process::{Command, Stdio};
use std::time::Duration;

fn restrict_to(cpu: usize) {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    assert_eq!(unsafe { libc::sched_setaffinity(0, size, &set) }, 0);
}

/// The allowed CPU list of every thread of `pid` named like a shard's executor.
fn shard_cpus(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        if !comm.starts_with("nextdb-shard") {
            continue;
        }
        let status = std::fs::read_to_string(t.join("status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap();
        out.push(line.split_whitespace().nth(1).unwrap().to_string());
    }
    out
}

#[test]
fn shards_are_pinned_inside_the_allowed_cpus() {
    // The highest allowed CPU: on any machine with two or more, not CPU 0.
    let cpu = *allowed_cpus().last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    // A thread of its own, so the test harness's other threads keep their mask. The
    // common `Server` passes --no-pin (test nodes share two cores): this one pins.
    let mut child = std::thread::spawn(move || {
        restrict_to(cpu);
        Command::new(bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--pg-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--http-listen", "off"])
            .args(["--shards", "1", "--sync", "none", "--insecure"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start nextdb serve")
    })
    .join()
    .unwrap();
    let output = Server::collect_output(&mut child);
    loop {
        match output.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("ready:") => break,
            Ok(_) => continue,
            Err(e) => panic!("the server did not become ready: {e}"),
        }
    }
    let cpus = shard_cpus(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(!cpus.is_empty(), "no shard thread found");
    for c in cpus {
        assert_eq!(
            c,
            cpu.to_string(),
            "a shard thread may run on {c}, not on {cpu}"
        );
    }
}
