//! One core means one core: every server (and, in the engine suite, the process that
//! runs both engines) is confined to its CPUs by a cgroup cpuset, so nothing it starts
//! (io_uring's io-wq workers, RocksDB's background threads) can borrow the driver's
//! CPU; and the CPU time each CPU and the driver spent during every measured run.
//!
//! Confinement, in order of preference: the cgroup v1 `cpuset` hierarchy, cgroup v2
//! with the cpuset controller enabled at the root, or `systemd-run --scope -p
//! AllowedCPUs=` where systemd is the init. Anything else is an error: the suites do
//! not silently fall back to `sched_setaffinity`, which io-wq workers do not honour.

use std::ffi::{CString, OsStr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const V1_ROOT: &str = "/sys/fs/cgroup/cpuset";
const V2_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone)]
enum How {
    /// A cgroup directory of ours (v1 `cpuset` or v2) under `root`.
    Cgroup {
        root: PathBuf,
        v1: bool,
    },
    SystemdRun,
}

/// The cpusets of one suite run: `nextdb-perf-PID/NAME` cgroups, removed on drop.
pub struct Cpusets {
    how: How,
    /// Our parent cgroup (cgroup only).
    dir: Option<PathBuf>,
    children: std::cell::RefCell<Vec<PathBuf>>,
    /// This process moved itself into one of them: move it back before removing.
    entered: std::cell::Cell<bool>,
}

/// One set of CPUs that processes can be started in or moved into.
pub struct CpuSet {
    how: How,
    cpus: String,
    /// `cgroup.procs` of the set (cgroup only).
    procs: Option<PathBuf>,
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text)
        .map_err(|e| format!("cannot write {text:?} to {}: {e}", path.display()))
}

fn read_trimmed(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `0-1,3` for CPUs [0, 1, 3] (the kernel also accepts `0,1,3`).
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn detect() -> Result<How, String> {
    let v1 = Path::new(V1_ROOT).join("cpuset.cpus");
    if v1.exists() && std::fs::OpenOptions::new().write(true).open(&v1).is_ok() {
        return Ok(How::Cgroup {
            root: V1_ROOT.into(),
            v1: true,
        });
    }
    let v2_controllers = std::fs::read_to_string(Path::new(V2_ROOT).join("cgroup.subtree_control"));
    if v2_controllers.is_ok_and(|c| c.split_whitespace().any(|w| w == "cpuset")) {
        return Ok(How::Cgroup {
            root: V2_ROOT.into(),
            v1: false,
        });
    }
    let systemd = Path::new("/run/systemd/system").exists();
    if systemd
        && Command::new("systemd-run")
            .arg("--version")
            .output()
            .is_ok()
    {
        return Ok(How::SystemdRun);
    }
    Err(format!(
        "cannot confine servers to CPUs: no writable cgroup v1 cpuset hierarchy at {V1_ROOT}, \
         no cgroup v2 cpuset controller at {V2_ROOT}, and systemd is not the init \
         (systemd-run --scope -p AllowedCPUs=). Run as root with the cpuset cgroup mounted, \
         or pass --no-pin to measure without confinement"
    ))
}

impl Cpusets {
    pub fn new() -> Result<Cpusets, String> {
        let how = detect()?;
        let dir = match &how {
            How::Cgroup { root, v1 } => {
                let dir = root.join(format!("nextdb-perf-{}", std::process::id()));
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                if *v1 {
                    // A v1 cpuset starts empty: it must get CPUs and memory nodes first.
                    write(
                        &dir.join("cpuset.cpus"),
                        &read_trimmed(&root.join("cpuset.cpus"))?,
                    )?;
                    write(
                        &dir.join("cpuset.mems"),
                        &read_trimmed(&root.join("cpuset.mems"))?,
                    )?;
                } else {
                    write(&dir.join("cgroup.subtree_control"), "+cpuset")?;
                }
                Some(dir)
            }
            How::SystemdRun => None,
        };
        Ok(Cpusets {
            how,
            dir,
            children: Default::default(),
            entered: Default::default(),
        })
    }

    /// How the sets are enforced, for the JSON.
    pub fn describe(&self) -> String {
        match &self.how {
            How::Cgroup { v1: true, .. } => "cgroup v1 cpuset".into(),
            How::Cgroup { v1: false, .. } => "cgroup v2 cpuset".into(),
            How::SystemdRun => "systemd-run --scope -p AllowedCPUs=".into(),
        }
    }

    /// A set named `name` holding exactly `cpus`.
    pub fn set(&self, name: &str, cpus: &[usize]) -> Result<CpuSet, String> {
        assert!(!cpus.is_empty(), "a cpuset needs at least one CPU");
        let list = cpu_list(cpus);
        let procs = match (&self.how, &self.dir) {
            (How::Cgroup { v1, .. }, Some(dir)) => {
                let d = dir.join(name);
                std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                write(&d.join("cpuset.cpus"), &list)?;
                if *v1 {
                    write(
                        &d.join("cpuset.mems"),
                        &read_trimmed(&dir.join("cpuset.mems"))?,
                    )?;
                }
                self.children.borrow_mut().push(d.clone());
                Some(d.join("cgroup.procs"))
            }
            _ => None,
        };
        Ok(CpuSet {
            how: self.how.clone(),
            cpus: list,
            procs,
        })
    }

    /// Moves this whole process (every thread, and whatever it starts later) into `set`.
    pub fn enter(&self, set: &CpuSet) -> Result<(), String> {
        match &set.procs {
            Some(procs) => {
                write(procs, &std::process::id().to_string())?;
                self.entered.set(true);
                Ok(())
            }
            // systemd cannot move a running process into a new scope's CPUs; the
            // driver is not a server, so its affinity (inherited by its threads) does.
            None => set.pin_current_thread(),
        }
    }
}

impl Drop for Cpusets {
    fn drop(&mut self) {
        let (How::Cgroup { root, .. }, Some(dir)) = (&self.how, &self.dir) else {
            return;
        };
        if self.entered.get() {
            let _ = write(&root.join("cgroup.procs"), &std::process::id().to_string());
        }
        // Children exited already (servers are stopped before the suite ends).
        for c in self.children.borrow().iter() {
            let _ = std::fs::remove_dir(c);
        }
        let _ = std::fs::remove_dir(dir);
    }
}

impl CpuSet {
    pub fn cpus(&self) -> &str {
        &self.cpus
    }

    /// A command for `program` that starts inside the set.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match (&self.how, &self.procs) {
            (How::Cgroup { .. }, Some(procs)) => {
                let mut cmd = Command::new(program);
                let path = CString::new(procs.as_os_str().as_encoded_bytes())
                    .expect("cgroup paths built by this module hold no NUL byte");
                // SAFETY: open/write/close are async-signal-safe; `path` is owned by
                // the closure and only read.
                unsafe {
                    cmd.pre_exec(move || {
                        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        if fd < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        // "0" moves the writing process itself.
                        let n = libc::write(fd, b"0\n".as_ptr().cast(), 2);
                        let err = std::io::Error::last_os_error();
                        libc::close(fd);
                        if n != 2 {
                            return Err(err);
                        }
                        Ok(())
                    });
                }
                cmd
            }
            _ => {
                let mut cmd = Command::new("systemd-run");
                cmd.args(["--scope", "--quiet", "--collect", "-p"])
                    .arg(format!("AllowedCPUs={}", self.cpus))
                    .arg(program);
                cmd
            }
        }
    }

    fn pin_current_thread(&self) -> Result<(), String> {
        // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            for c in self.cpus.split(',').filter_map(|c| c.parse::<usize>().ok()) {
                libc::CPU_SET(c, &mut set);
            }
            set
        };
        // SAFETY: as above, for the calling thread.
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
            return Err(format!(
                "cannot pin to CPUs {}: {}",
                self.cpus,
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

/// Busy and total jiffies of every CPU, from `/proc/stat`.
fn cpu_times() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_cpu_times(&text)
}

fn parse_cpu_times(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            // user nice system idle iowait irq softirq steal (guest is inside user).
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse().ok())
                .collect();
            let at = |i: usize| f.get(i).copied().unwrap_or(0);
            let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
            (busy, busy + at(3) + at(4))
        })
        .collect()
}

/// CPU seconds (user + system) this process has used, all threads.
fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds (user + system) process `pid` has used, all threads, from
/// `/proc/PID/stat` (clock-tick resolution: 10 ms at the usual 100 Hz). None when the
/// process is gone or the file does not parse.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_cpu_ticks(&text).map(|t| t as f64 / clock_ticks_per_sec())
}

/// utime + stime of a `/proc/PID/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`: state is then
/// the first, utime the 12th and stime the 13th (fields 14 and 15 of proc(5)).
fn parse_process_cpu_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf reads a constant of the running system.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        hz if hz > 0 => hz as f64,
        _ => 100.0,
    }
}

/// Where the CPU time went during one measured run.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuUse {
    /// Busy share of every CPU of the machine, in percent (everyone's work: servers,
    /// driver, other users of a shared machine).
    pub per_cpu_busy_pct: Vec<f64>,
    /// This process (the driver; in the engine suite also the engine it drives), in
    /// percent of one CPU.
    pub driver_cpu_pct: f64,
    /// The measured server process (all its threads), in percent of one CPU; None
    /// where the server runs in the driver's process or could not be read.
    pub server_cpu_pct: Option<f64>,
}

impl CpuUse {
    pub fn json(&self) -> serde_json::Value {
        let r = |x: f64| (x * 10.0).round() / 10.0;
        serde_json::json!({
            "per_cpu_busy_pct": self.per_cpu_busy_pct.iter().map(|&x| r(x)).collect::<Vec<_>>(),
            "driver_cpu_pct": r(self.driver_cpu_pct),
            "server_cpu_pct": self.server_cpu_pct.map(r),
        })
    }
}

/// Started before a measured run, read after it.
pub struct CpuMeter {
    t0: Instant,
    cpus0: Vec<(u64, u64)>,
    self0: f64,
    /// The server's pid and its CPU seconds at the start.
    server0: Option<(u32, f64)>,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        Self::start_with_server(None)
    }

    /// Also charges the CPU time of process `server` (a server the driver talks to).
    pub fn start_with_server(server: Option<u32>) -> CpuMeter {
        CpuMeter {
            server0: server.and_then(|pid| Some((pid, process_cpu_secs(pid)?))),
            t0: Instant::now(),
            cpus0: cpu_times(),
            self0: self_cpu_secs(),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let wall = self.t0.elapsed().as_secs_f64();
        let per_cpu_busy_pct = busy_pct(&self.cpus0, &cpu_times());
        let pct = |secs: f64| if wall > 0.0 { secs / wall * 100.0 } else { 0.0 };
        let server_cpu_pct = self
            .server0
            .and_then(|(pid, s0)| Some(pct(process_cpu_secs(pid)? - s0)));
        CpuUse {
            per_cpu_busy_pct,
            driver_cpu_pct: pct(self_cpu_secs() - self.self0),
            server_cpu_pct,
        }
    }
}

fn busy_pct(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|(&(b0, t0), &(b1, t1))| {
            let total = t1.saturating_sub(t0);
            if total == 0 {
                0.0
            } else {
                b1.saturating_sub(b0) as f64 * 100.0 / total as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_stat() {
        let a = "cpu  10 0 10 80 0 0 0 0 0 0\n\
                 cpu0 5 0 5 40 0 0 0 0 0 0\n\
                 cpu1 5 0 5 40 0 0 0 0 0 0\nintr 1 2\n";
        let b = "cpu  10 0 10 80 0 0 0 0 0 0\n\
                 cpu0 50 0 5 45 0 0 0 0 0 0\n\
                 cpu1 5 0 5 140 0 0 0 0 0 0\n";
        let (ta, tb) = (parse_cpu_times(a), parse_cpu_times(b));
        assert_eq!(ta, vec![(10, 50), (10, 50)]);
        let pct = busy_pct(&ta, &tb);
        assert_eq!(pct.len(), 2);
        assert!((pct[0] - 90.0).abs() < 1e-9, "{pct:?}");
        assert_eq!(pct[1], 0.0);
        assert_eq!(cpu_list(&[0, 2]), "0,2");
    }

    #[test]
    fn reads_a_process_cpu_time_past_a_name_with_spaces_and_parentheses() {
        // proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt
        // cminflt majflt cmajflt utime stime ...
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 1234 567 0 0 20 0 9 0";
        assert_eq!(parse_process_cpu_ticks(line), Some(1234 + 567));
        assert_eq!(parse_process_cpu_ticks("4242 (x) S 1 2"), None);
        let me = process_cpu_secs(std::process::id()).expect("own /proc/PID/stat");
        assert!(me >= 0.0);
    }
}
