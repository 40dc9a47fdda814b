//! The dashboard in a real headless browser (Debian's `chromium`): under a KV load
//! the page loads, polls, draws its charts (the points each chart drew are in its
//! `data-points` attribute) and its numbers move between two loads.
//!
//! Without chromium the test fails under CI (`CI=true`; `scripts/test` installs
//! it) and elsewhere skips with a loud message.

mod common;

use common::{Opts, Server, free_port};
use nextdb_client::{Client, Config};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The browser binary, if installed.
fn chromium() -> Option<String> {
    if let Ok(p) = std::env::var("NEXTDB_CHROMIUM") {
        return Some(p);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(String::from)
}

/// The DOM of `url` after the page ran for `virtual_ms` of virtual time (timers
/// fire as fast as the page is idle; fetches finish in real time first).
fn dump_dom(browser: &str, url: &str, virtual_ms: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,1024",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={virtual_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The start tag of the element with `id`.
fn tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id} in the DOM:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..end]
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// What the chart `id` drew: series name → points.
fn chart(dom: &str, id: &str) -> serde_json::Map<String, Value> {
    let t = tag(dom, id);
    let at = t.find("data-points=\"").expect("data-points") + "data-points=\"".len();
    let raw = &t[at..at + t[at..].find('"').unwrap()];
    match serde_json::from_str(&unescape(raw)) {
        Ok(Value::Object(m)) => m,
        other => panic!("{id}: data-points {raw:?}: {other:?}"),
    }
}

/// The text of the element `id`.
fn text(dom: &str, id: &str) -> String {
    let t = tag(dom, id);
    let at = dom.find(t).unwrap() + t.len() + 1;
    dom[at..at + dom[at..].find('<').unwrap()].to_string()
}

/// Points of every series of a chart with a value above 0.
fn positive_points(series: &serde_json::Map<String, Value>) -> usize {
    series
        .values()
        .flat_map(|pts| pts.as_array().unwrap())
        .filter(|p| p[1].as_f64().unwrap() > 0.0)
        .count()
}

fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let c = Client::connect(Config::new(addr.to_string()).pool_size(2)).unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let k = format!("key-{}", n % 5000);
            c.put(k.as_bytes(), &[7u8; 200]).unwrap();
            c.get(k.as_bytes()).unwrap();
            n += 1;
        }
        n
    })
}

#[test]
fn dashboard_draws_live_charts_in_headless_chromium() {
    let Some(browser) = chromium() else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "chromium is not installed: CI must run the dashboard test (scripts/test installs it)"
        );
        eprintln!(
            "\n!!!!! SKIPPED dashboard_draws_live_charts_in_headless_chromium: no chromium \
             (apt-get install chromium) !!!!!\n"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = Server::start(
        dir.path(),
        &Opts {
            extra: vec!["--http-listen".into(), http.to_string()],
            ..Opts::default()
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(s.addr, stop.clone());
    let url = format!("http://{http}/");
    std::thread::sleep(Duration::from_millis(500));
    let first = dump_dom(&browser, &url, 5000);
    let second = dump_dom(&browser, &url, 5000);
    stop.store(true, Ordering::Relaxed);
    assert!(loader.join().unwrap() > 0);

    for dom in [&first, &second] {
        assert_eq!(text(dom, "status"), "ok", "{dom}");
        assert!(text(dom, "samples").parse::<u32>().unwrap() >= 3, "{dom}");
        let throughput = chart(dom, "chart-throughput");
        assert_eq!(throughput.len(), 2, "a series per core: {throughput:?}");
        assert!(positive_points(&throughput) > 0, "{throughput:?}");
        let latency = chart(dom, "chart-latency");
        for q in ["p50", "p99", "p999"] {
            assert!(!latency[q].as_array().unwrap().is_empty(), "{latency:?}");
        }
        assert!(positive_points(&latency) > 0, "{latency:?}");
        let compaction = chart(dom, "chart-compaction");
        for k in ["compactions/s", "flushes/s", "stall ms/s", "L0 files"] {
            assert!(
                !compaction[k].as_array().unwrap().is_empty(),
                "{compaction:?}"
            );
        }
        let histogram = chart(dom, "chart-histogram");
        for op in ["put", "get"] {
            assert!(histogram.contains_key(op), "{histogram:?}");
        }
        assert!(positive_points(&histogram) > 0);
        assert!(text(dom, "total-ops").parse::<f64>().unwrap() > 0.0);
    }
    let answered = |dom: &str| text(dom, "total-requests").parse::<u64>().unwrap();
    assert!(
        answered(&second) > answered(&first),
        "numbers did not move: {} then {}",
        answered(&first),
        answered(&second)
    );
}
