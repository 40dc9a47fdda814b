//! The servers under test as child processes: NextDB (`nextdb serve`) and
//! `redis-server`. Each is stopped (SIGTERM, then SIGKILL after 10 s) when its
//! [`Server`] is dropped, so an error or a panic never leaves one running, and each is
//! started with PR_SET_PDEATHSIG so it dies with the suite even if the suite is killed.

use super::driver::{self, Proto, Result};
use crate::cpu::CpuSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first HELLO + PING.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub proto: Proto,
    /// NextDB's HTTP address (`/metrics`); None for Redis.
    pub http: Option<SocketAddr>,
    child: Option<Child>,
    log: PathBuf,
    /// Removed once the server has exited (the log stays).
    data: PathBuf,
}

/// A port nobody listens on now (the kernel's choice; a tiny race is acceptable).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Server {
    /// Starts `cmd` with its output in `log`, then waits until it answers.
    pub fn start(
        name: &str,
        mut cmd: Command,
        addr: SocketAddr,
        proto: Proto,
        log: PathBuf,
        data: PathBuf,
    ) -> Result<Server> {
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("{name}: cannot start {:?}: {e}", cmd.get_program()))?;
        let mut s = Server {
            name: name.to_string(),
            addr,
            proto,
            http: None,
            child: Some(child),
            log,
            data,
        };
        s.wait_ready()?;
        Ok(s)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            let last = match driver::probe(self.addr, self.proto, Duration::from_secs(2)) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "{} did not answer HELLO/PING on {} within {:?} (last: {last}); log {}:\n{}",
                    self.name,
                    self.addr,
                    READY_TIMEOUT,
                    self.log.display(),
                    log_tail(&self.log)
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's process id while it runs (its CPU time is charged to the rows).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// An error if the server has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} was stopped", self.name).into());
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            return Err(format!(
                "{} exited ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            )
            .into());
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited after 10 s; then removes its data.
    pub fn stop(&mut self) -> Result<()> {
        let res = self.terminate();
        if self.child.is_none() && self.data.exists() {
            let _ = std::fs::remove_dir_all(&self.data);
        }
        res
    }

    fn terminate(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < STOP_TIMEOUT {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} ignored SIGTERM for {STOP_TIMEOUT:?}: killing it",
            self.name
        );
        child.kill()?;
        child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("stopping {}: {e}", self.name);
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Where the servers and the driver run: servers on CPUs `0..shards`, the driver on
/// the last CPU (shared with the last shard when there are not enough CPUs: then the
/// scaling row is only meaningful on a bigger machine).
pub fn placement(shards: usize, cpus: usize) -> (Vec<usize>, usize) {
    let cpus = cpus.max(1);
    let servers: Vec<usize> = (0..shards.clamp(1, cpus)).collect();
    (servers, cpus - 1)
}

fn command(set: Option<&CpuSet>, bin: impl AsRef<std::ffi::OsStr>) -> Command {
    set.map_or_else(|| Command::new(bin.as_ref()), |s| s.command(bin.as_ref()))
}

/// `nextdb serve` on a fresh data directory.
pub fn start_nextdb(
    bin: &Path,
    dir: &Path,
    sync: &str,
    shards: usize,
    set: Option<&CpuSet>,
) -> Result<Server> {
    let data = dir.join(format!("nextdb-{sync}"));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    if !bin.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p nextdb` or pass --nextdb-bin",
            bin.display()
        )
        .into());
    }
    let addr = loopback(free_port()?);
    let http = loopback(free_port()?);
    let mut cmd = command(set, bin);
    cmd.arg("serve")
        .arg("--http-listen")
        .arg(http.to_string())
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--insecure")
        .arg("--sync")
        .arg(sync)
        .arg("--shards")
        .arg(shards.to_string());
    if set.is_none() {
        // Shard i pins itself to CPU i unless told not to; without a cpuset, let the
        // kernel place everything.
        cmd.arg("--no-pin");
    }
    let log = dir.join(format!("nextdb-{sync}.log"));
    let mut s = Server::start(
        &format!("nextdb (--sync {sync})"),
        cmd,
        addr,
        Proto::Native,
        log,
        data,
    )?;
    s.http = Some(http);
    Ok(s)
}

/// `redis-server` without persistence, or with `appendfsync always` (`durable`), and
/// `io_threads` I/O threads (1: Redis's single thread). AOF rewrites are off
/// (`auto-aof-rewrite-percentage 0`) so no background rewrite runs into a measured row.
pub fn start_redis(
    bin: &str,
    dir: &Path,
    durable: bool,
    io_threads: usize,
    set: Option<&CpuSet>,
) -> Result<Server> {
    let tag = if durable { "redis-aof" } else { "redis" };
    let data = dir.join(tag);
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let port = free_port()?;
    let mut cmd = command(set, bin);
    cmd.arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ])
        .args(["--save", ""])
        .arg("--dir")
        .arg(&data);
    cmd.args(["--auto-aof-rewrite-percentage", "0"]);
    if io_threads > 1 {
        cmd.arg("--io-threads").arg(io_threads.to_string());
        cmd.args(["--io-threads-do-reads", "yes"]);
    }
    if durable {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    let name = if durable {
        "redis-server (appendfsync always)"
    } else {
        "redis-server (no persistence)"
    };
    Server::start(
        name,
        cmd,
        loopback(port),
        Proto::Resp,
        dir.join(format!("{tag}.log")),
        data,
    )
}

/// One STATS document of a NextDB server (a connection of its own).
pub fn nextdb_stats(addr: SocketAddr) -> Result<serde_json::Value> {
    use nextdb_proto::frame::{HEADER_BYTES, decode_header};
    use nextdb_proto::{Hello, Request, Response};
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut call = |req: &Request| -> Result<Response> {
        let mut out = Vec::new();
        req.encode(1, &mut out);
        s.write_all(&out)?;
        let mut buf = Vec::new();
        loop {
            if let Some(h) = decode_header(&buf, usize::MAX)? {
                return Ok(Response::decode(
                    h.opcode,
                    h.flags,
                    &buf[HEADER_BYTES..h.total],
                )?);
            }
            let mut tmp = [0u8; 65536];
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Err("server closed the connection during STATS".into());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    };
    call(&Request::Hello(Hello {
        min_version: 1,
        max_version: 1,
        client_name: "nextdb-perf stats".into(),
        mechanism: "NONE".into(),
        auth_data: Vec::new(),
    }))?;
    match call(&Request::Stats)? {
        Response::Stats { json } => Ok(serde_json::from_str(&json)?),
        other => Err(format!("STATS answered {other:?}").into()),
    }
}

/// Group commits (log fdatasyncs) of all shards so far, from STATS.
pub fn nextdb_log_syncs(addr: SocketAddr) -> Result<u64> {
    let v = nextdb_stats(addr)?;
    let shards = v["shards"].as_array().cloned().unwrap_or_default();
    shards
        .iter()
        .map(|s| s["engine"]["log_syncs"].as_u64())
        .sum::<Option<u64>>()
        .ok_or_else(|| "STATS has no engine.log_syncs".into())
}

/// The engines' write amplification (log + flush + compaction bytes per user byte),
/// over all shards, from STATS.
pub fn nextdb_write_amplification(addr: SocketAddr) -> Result<Option<f64>> {
    let v = nextdb_stats(addr)?;
    let shards = v["shards"].as_array().cloned().unwrap_or_default();
    let (mut written, mut user) = (0.0, 0.0);
    for s in &shards {
        let e = &s["engine"];
        let (Some(w), Some(u)) = (
            e["write_amplification"].as_f64(),
            e["user_bytes_written"].as_f64(),
        ) else {
            return Ok(None);
        };
        written += w * u;
        user += u;
    }
    Ok((user > 0.0).then(|| written / user))
}

/// Waits until a NextDB server's background work has settled: its flush and
/// compaction counters and level shapes (from STATS) stay the same for three polls a
/// second apart, or `max` passes. Like db_bench's `waitforcompaction`, so reads are
/// measured on a settled database. Returns how long it took.
pub fn settle_nextdb(addr: SocketAddr, max: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut last = String::new();
    let mut stable = 0;
    while start.elapsed() < max {
        let v = nextdb_stats(addr)?;
        let sig: Vec<String> = v["shards"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let e = &s["engine"];
                        format!(
                            "{}/{}/{}/{}",
                            e["flushes"], e["compactions"], e["immutable_memtables"], e["levels"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sig = sig.join(";");
        if sig == last {
            stable += 1;
            if stable >= 3 {
                break;
            }
        } else {
            stable = 0;
            last = sig;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(start.elapsed())
}

/// Waits until Redis runs no background save or AOF rewrite (INFO persistence).
/// Returns how long it took.
pub fn settle_redis(addr: SocketAddr, max: Duration) -> Result<Duration> {
    use std::io::{Read, Write};
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    loop {
        s.write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\npersistence\r\n")?;
        let mut buf = Vec::new();
        let text = loop {
            let mut tmp = [0u8; 8192];
            let n = s.read(&mut tmp)?;
            if n == 0 {
                return Err("redis closed the connection during INFO".into());
            }
            buf.extend_from_slice(&tmp[..n]);
            if let Some((super::resp::Reply::Bulk(Some(b)), _)) = super::resp::parse(&buf)? {
                break String::from_utf8_lossy(b).into_owned();
            }
        };
        let busy = [
            "rdb_bgsave_in_progress:1",
            "aof_rewrite_in_progress:1",
            "aof_rewrite_scheduled:1",
        ]
        .iter()
        .any(|k| text.contains(k));
        if !busy || start.elapsed() > max {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
