//! Starts real `nextdb serve` processes on loopback for end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod http;
pub mod load;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nextdb")
}

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub output: mpsc::Receiver<String>,
}

pub struct Opts {
    pub insecure: bool,
    pub shards: usize,
    pub sync: &'static str,
    pub extra: Vec<String>,
    /// Environment variables for the server process.
    pub env: Vec<(&'static str, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            insecure: true,
            shards: 2,
            sync: "fsync",
            extra: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl Server {
    /// Starts a server on `dir` and waits until it reports ready.
    pub fn start(dir: &Path, opts: &Opts) -> Server {
        Self::start_on(dir, free_port(), opts)
    }

    pub fn start_on(dir: &Path, port: u16, opts: &Opts) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Self::command(dir, addr, opts);
        let mut child = cmd.spawn().expect("cannot start nextdb serve");
        let output = Self::collect_output(&mut child);
        Self::wait_ready(child, addr, dir, output)
    }

    /// The `nextdb serve` command `start_on` runs.
    pub fn command(dir: &Path, addr: SocketAddr, opts: &Opts) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--shards")
            .arg(opts.shards.to_string())
            .arg("--sync")
            .arg(opts.sync)
            .arg("--memtable-mb")
            .arg("8")
            .arg("--block-cache-mb")
            .arg("16")
            .arg("--no-pin")
            .args(&opts.extra)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if opts.insecure {
            cmd.arg("--insecure");
        }
        // Each test node gets its own PostgreSQL port rather than sharing the default.
        if !opts.extra.iter().any(|a| a == "--pg-listen") {
            cmd.arg("--pg-listen")
                .arg(format!("127.0.0.1:{}", free_port()));
        }
        // And its own HTTP port (every test that looks at HTTP passes its own).
        if !opts.extra.iter().any(|a| a == "--http-listen") {
            cmd.arg("--http-listen")
                .arg(format!("127.0.0.1:{}", free_port()));
        }
        cmd
    }

    /// Lines of the child's stdout and stderr (the latter prefixed `stderr: `).
    pub fn collect_output(child: &mut Child) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        rx
    }

    fn wait_ready(
        mut child: Child,
        addr: SocketAddr,
        dir: &Path,
        rx: mpsc::Receiver<String>,
    ) -> Server {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let ready = l.contains("nextdb: ready");
                    seen.push(l);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!("server exited with {st} before ready:\n{}", seen.join("\n"));
                    }
                    assert!(
                        Instant::now() < deadline,
                        "server not ready:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
        Server {
            child,
            addr,
            dir: dir.to_path_buf(),
            output: rx,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code and the output lines.
    pub fn terminate(mut self) -> (Option<i32>, Vec<String>) {
        // SAFETY: sending a signal to our own child.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        let lines: Vec<String> = self.output.try_iter().collect();
        (status.code(), lines)
    }

    /// Resident memory of the server in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds a user to a data directory with the CLI (`nextdb admin user add`).
pub fn add_user(dir: &Path, name: &str, password: &str) {
    let st = Command::new(bin())
        .args(["admin", "user", "add", name, "--data-dir"])
        .arg(dir)
        .env("NEXTDB_PASSWORD", password)
        .status()
        .expect("cannot run nextdb admin");
    assert!(st.success(), "admin user add failed");
}

/// Raises this process's open-file limit to its hard limit.
pub fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    l.rlim_cur
}

/// A raw protocol connection (no client library): for bad-input tests.
pub struct Raw {
    pub s: std::net::TcpStream,
    buf: Vec<u8>,
}

use nextdb_proto::frame::{HEADER_BYTES, decode_header};
use nextdb_proto::limits::{MAX_VERSION, MIN_VERSION};
use nextdb_proto::scram::{ClientExchange, MECHANISM, MECHANISM_NONE};
use nextdb_proto::{Hello, Request, Response};
use std::io::{Read, Write};

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, buf: Vec::new() }
    }

    pub fn send(&mut self, req: &Request, id: u32) {
        let mut b = Vec::new();
        req.encode(id, &mut b);
        self.s.write_all(&b).expect("send");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    /// Next response (id, response), or None when the server closed the connection.
    pub fn recv(&mut self) -> Option<(u32, Response)> {
        loop {
            if let Ok(Some(h)) = decode_header(&self.buf, usize::MAX) {
                let r = Response::decode(h.opcode, h.flags, &self.buf[HEADER_BYTES..h.total])
                    .expect("server sent a malformed response");
                self.buf.drain(..h.total);
                return Some((h.request_id, r));
            }
            let mut tmp = [0u8; 65536];
            match self.s.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// True once the server has closed the connection (reads EOF).
    pub fn closed(&mut self) -> bool {
        self.recv().is_none()
    }

    /// Sends HELLO (mechanism NONE) without waiting for the answer.
    pub fn hello_none_nowait(&mut self) {
        self.send(
            &Request::Hello(Hello {
                min_version: MIN_VERSION,
                max_version: MAX_VERSION,
                client_name: "test".into(),
                mechanism: MECHANISM_NONE.into(),
                auth_data: Vec::new(),
            }),
            0,
        );
    }

    pub fn hello_none(&mut self) -> Response {
        self.send(
            &Request::Hello(Hello {
                min_version: MIN_VERSION,
                max_version: MAX_VERSION,
                client_name: "test".into(),
                mechanism: MECHANISM_NONE.into(),
                auth_data: Vec::new(),
            }),
            0,
        );
        self.recv().expect("no HELLO answer").1
    }

    /// SCRAM login; returns the final response (AuthOk or an error).
    pub fn login(&mut self, user: &str, password: &str) -> Response {
        let (mut ex, first) = ClientExchange::start(user);
        self.send(
            &Request::Hello(Hello {
                min_version: MIN_VERSION,
                max_version: MAX_VERSION,
                client_name: "test".into(),
                mechanism: MECHANISM.into(),
                auth_data: first,
            }),
            0,
        );
        let ok = match self.recv().expect("no HELLO answer").1 {
            Response::HelloOk(ok) => ok,
            other => return other,
        };
        let fin = ex.respond(password, &ok.auth_data).expect("server-first");
        self.send(&Request::Auth { data: fin }, 1);
        let r = self.recv().expect("no AUTH answer").1;
        if let Response::AuthOk { data } = &r {
            ex.verify(data).expect("server signature");
        }
        r
    }

    pub fn call(&mut self, req: Request) -> Response {
        self.send(&req, 42);
        let (id, r) = self.recv().expect("connection closed");
        assert_eq!(id, 42);
        r
    }
}

pub fn err_code(r: &Response) -> Option<u16> {
    match r {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}
