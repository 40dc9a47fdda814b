//! A Prometheus-like scraper for the `--scrape-metrics` rows: GET `/metrics` once a
//! second on a fresh connection (as Prometheus does by default with keep-alive off
//! behind most proxies) while a run is measured, on a thread of its own.

use super::driver::Result;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between scrapes (Prometheus's usual interval is 15 s; one second is the
/// dashboard's rate and the harshest a deployment would use).
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// A scrape that takes longer fails the run.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Scraper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::result::Result<u64, String>>,
}

impl Scraper {
    pub fn start(http: SocketAddr) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0u64;
            while !s.load(Ordering::Relaxed) {
                let next = Instant::now() + SCRAPE_INTERVAL;
                scrape(http).map_err(|e| format!("scraping {http}/metrics: {e}"))?;
                scrapes += 1;
                while !s.load(Ordering::Relaxed) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Ok(scrapes)
        });
        Scraper { stop, thread }
    }

    /// Stops scraping; the number of scrapes, or why one failed.
    pub fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self
            .thread
            .join()
            .map_err(|_| "the scraper thread panicked".to_string())??)
    }
}

/// One scrape: the whole response read, its status checked; its size.
fn scrape(http: SocketAddr) -> std::io::Result<usize> {
    let mut s = TcpStream::connect_timeout(&http, SCRAPE_TIMEOUT)?;
    s.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
        return Err(std::io::Error::other(format!("answered {head:?}")));
    }
    Ok(body.len())
}

/// Scrapes in the cost probe (about 1 ms of server CPU each: enough clock ticks for a
/// figure to 10%).
const PROBE_SCRAPES: u32 = 300;

/// What one scrape costs the server, measured on the idle server before the rows.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeCost {
    /// Server CPU per scrape, the server's idle CPU over the same time subtracted.
    pub server_cpu_ms: f64,
    /// Bytes of one `/metrics` answer.
    pub bytes: usize,
}

impl ScrapeCost {
    /// The share of one core that scraping every `SCRAPE_INTERVAL` takes.
    pub fn share_of_core_pct(&self) -> f64 {
        self.server_cpu_ms / SCRAPE_INTERVAL.as_secs_f64() / 10.0
    }
}

/// Scrapes the idle server `PROBE_SCRAPES` times back to back, then stays idle as
/// long, and charges the difference of its CPU time to the scrapes.
pub fn probe_cost(http: SocketAddr, pid: u32) -> Result<ScrapeCost> {
    let cpu = || {
        crate::cpu::process_cpu_secs(pid)
            .ok_or_else(|| format!("cannot read the CPU time of {pid}"))
    };
    let bytes = scrape(http)?;
    let (c0, t0) = (cpu()?, Instant::now());
    for _ in 0..PROBE_SCRAPES {
        scrape(http)?;
    }
    let (busy, wall) = (cpu()? - c0, t0.elapsed());
    let c1 = cpu()?;
    std::thread::sleep(wall);
    let idle = cpu()? - c1;
    Ok(ScrapeCost {
        server_cpu_ms: ((busy - idle).max(0.0) * 1000.0) / f64::from(PROBE_SCRAPES),
        bytes,
    })
}
