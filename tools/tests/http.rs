//! The node's HTTP endpoints against a real `nextdb serve`: `/metrics` parsed as
//! Prometheus would and checked family by family, counters that move under load,
//! health and state endpoints, and bad HTTP input that stays bounded while the node
//! keeps serving KV requests.

mod common;

use common::http::{HttpConn, get};
use common::{Opts, Server, free_port};
use nextdb_client::{Client, Config};
use prometheus_parse::{Scrape, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A node with its HTTP listener on a port of the test's choosing.
fn start(dir: &std::path::Path) -> (Server, SocketAddr) {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = Server::start(
        dir,
        &Opts {
            extra: vec!["--http-listen".into(), http.to_string()],
            ..Opts::default()
        },
    );
    (s, http)
}

fn client(s: &Server) -> Client {
    Client::connect(Config::new(s.addr.to_string()).pool_size(2)).expect("connect")
}

/// Families every scrape must hold, with their type.
const FAMILIES: &[(&str, &str)] = &[
    ("nextdb_node_info", "gauge"),
    ("nextdb_node_shards", "gauge"),
    ("nextdb_node_uptime_seconds", "gauge"),
    ("nextdb_node_ready", "gauge"),
    ("nextdb_requests_total", "counter"),
    ("nextdb_request_errors_total", "counter"),
    ("nextdb_request_duration_seconds", "histogram"),
    ("nextdb_network_receive_bytes_total", "counter"),
    ("nextdb_network_transmit_bytes_total", "counter"),
    ("nextdb_connections_open", "gauge"),
    ("nextdb_connections_accepted_total", "counter"),
    ("nextdb_connections_rejected_total", "counter"),
    ("nextdb_requests_in_flight", "gauge"),
    ("nextdb_memtable_bytes", "gauge"),
    ("nextdb_l0_files", "gauge"),
    ("nextdb_level_files", "gauge"),
    ("nextdb_level_bytes", "gauge"),
    ("nextdb_compaction_debt_bytes", "gauge"),
    ("nextdb_compactions_total", "counter"),
    ("nextdb_flushes_total", "counter"),
    ("nextdb_write_stalls_total", "counter"),
    ("nextdb_write_stall_seconds_total", "counter"),
    ("nextdb_write_delays_total", "counter"),
    ("nextdb_block_cache_hits_total", "counter"),
    ("nextdb_block_cache_misses_total", "counter"),
    ("nextdb_block_cache_capacity_bytes", "gauge"),
    ("nextdb_write_amplification_ratio", "gauge"),
    ("nextdb_log_fsync_seconds", "summary"),
    ("nextdb_log_records_total", "counter"),
    ("nextdb_log_group_commit_batch_size", "gauge"),
    ("nextdb_raft_term", "gauge"),
    ("nextdb_raft_commit_index", "gauge"),
    ("nextdb_raft_applied_index", "gauge"),
    ("nextdb_raft_leader", "gauge"),
    ("nextdb_raft_serving", "gauge"),
];

/// A strict reading of the exposition text: every sample belongs to a family
/// declared by a HELP and a TYPE line before it, names are `nextdb_…`, no series
/// appears twice, and every value parses. Returns family → type.
fn strict_families(text: &str) -> BTreeMap<String, String> {
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(help.insert(name.to_string()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(help.contains(name), "TYPE before HELP for {name}");
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            assert!(types.insert(name.to_string(), kind.to_string()).is_none());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (key, value) = line.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf" || value == "NaN",
            "{line}"
        );
        let name = key.split('{').next().unwrap();
        assert!(name.starts_with("nextdb_"), "{line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        if name.ends_with("_total") {
            assert_eq!(types[family], "counter", "{line}");
        }
        assert!(series.insert(key.to_string()), "series twice: {key}");
    }
    types
}

struct Metrics {
    scrape: Scrape,
}

impl Metrics {
    fn fetch(http: SocketAddr) -> Metrics {
        let a = get(http, "/metrics");
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let types = strict_families(&a.body);
        for (name, kind) in FAMILIES {
            assert_eq!(types.get(*name).map(String::as_str), Some(*kind), "{name}");
        }
        let lines = a.body.lines().map(|l| Ok(l.to_string()));
        Metrics {
            scrape: Scrape::parse(lines).expect("prometheus text"),
        }
    }

    /// The sum over every series of `metric` whose labels include `want`.
    fn sum(&self, metric: &str, want: &[(&str, &str)]) -> f64 {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && want.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(b) => b.iter().map(|c| c.count).fold(0.0, f64::max),
                Value::Summary(_) => panic!("{metric}: summary with quantiles"),
            })
            .sum()
    }

    /// Checks every histogram of `metric`: buckets ascending, counts cumulative,
    /// +Inf equal to `_count`.
    fn check_histograms(&self, metric: &str) -> usize {
        let mut n = 0;
        for s in self.scrape.samples.iter().filter(|s| s.metric == metric) {
            let Value::Histogram(b) = &s.value else {
                panic!("{metric} is not a histogram")
            };
            assert!(b.windows(2).all(|w| w[0].less_than < w[1].less_than));
            assert!(b.windows(2).all(|w| w[0].count <= w[1].count));
            let inf = b.last().unwrap();
            assert!(inf.less_than.is_infinite());
            let labels: Vec<(&str, &str)> = ["shard", "op"]
                .iter()
                .map(|k| (*k, s.labels.get(k).unwrap()))
                .collect();
            assert_eq!(inf.count, self.sum(&format!("{metric}_count"), &labels));
            n += 1;
        }
        n
    }
}

#[test]
fn metrics_hold_every_family_and_counters_move_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http) = start(dir.path());
    let before = Metrics::fetch(http);
    assert_eq!(before.sum("nextdb_node_shards", &[]), 2.0);
    assert_eq!(
        before.check_histograms("nextdb_request_duration_seconds"),
        2 * 11
    );

    let c = client(&s);
    for i in 0..300 {
        c.put(format!("k{i}").as_bytes(), &[b'v'; 100]).unwrap();
        assert!(c.get(format!("k{i}").as_bytes()).unwrap().is_some());
    }
    let after = Metrics::fetch(http);
    after.check_histograms("nextdb_request_duration_seconds");
    let moved = |m: &str, labels: &[(&str, &str)], by: f64| {
        let (b, a) = (before.sum(m, labels), after.sum(m, labels));
        assert!(a >= b + by, "{m}{labels:?}: {b} -> {a}, expected +{by}");
    };
    moved("nextdb_requests_total", &[("op", "put")], 300.0);
    moved("nextdb_requests_total", &[("op", "get")], 300.0);
    moved(
        "nextdb_request_duration_seconds_count",
        &[("op", "put")],
        300.0,
    );
    moved("nextdb_request_duration_seconds", &[("op", "get")], 300.0);
    moved("nextdb_network_receive_bytes_total", &[], 300.0 * 100.0);
    moved("nextdb_network_transmit_bytes_total", &[], 300.0 * 100.0);
    moved("nextdb_connections_accepted_total", &[], 1.0);
    moved("nextdb_log_records_total", &[], 300.0);
    moved("nextdb_log_fsync_seconds_count", &[], 1.0);
    moved("nextdb_raft_applied_index", &[], 300.0);
    assert!(after.sum("nextdb_log_fsync_seconds_sum", &[]) > 0.0);
    assert!(after.sum("nextdb_memtable_bytes", &[]) > 300.0 * 100.0);
    assert!(after.sum("nextdb_write_amplification_ratio", &[]) > 0.0);
    assert!(after.sum("nextdb_log_group_commit_batch_size", &[]) >= 1.0);
    assert_eq!(after.sum("nextdb_raft_serving", &[]), 2.0);
    assert_eq!(after.sum("nextdb_node_ready", &[]), 1.0);
    assert!(after.sum("nextdb_connections_open", &[]) >= 1.0);
}

#[test]
fn health_readiness_and_state_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http) = start(dir.path());
    let h = get(http, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    // Every core's partition group comes to serve by itself, without a request
    // first (until then /readyz says which shard is not ready).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(http, "/readyz");
        if r.status == 200 {
            assert_eq!(r.body, "ready\n");
            break;
        }
        assert_eq!(r.status, 503);
        assert!(r.body.starts_with("not ready: shard "), "{}", r.body);
        assert!(Instant::now() < deadline, "never ready: {}", r.body);
        std::thread::sleep(Duration::from_millis(50));
    }

    client(&s).put(b"k", b"v").unwrap();
    let st = get(http, "/debug/state");
    assert_eq!(st.status, 200);
    assert_eq!(st.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&st.body).unwrap();
    let cores = doc["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 2);
    for (i, c) in cores.iter().enumerate() {
        assert_eq!(c["shard"], i);
        assert_eq!(c["raft"]["serving"], true);
        for k in ["requests_in_flight", "connections_open"] {
            assert!(c[k].is_u64(), "{k} in {c}");
        }
        for k in [
            "memtable_bytes",
            "immutable_memtables",
            "pending_syncs",
            "compaction_debt_bytes",
        ] {
            assert!(c["engine"][k].is_u64(), "{k} in {c}");
        }
        assert!(c["engine"]["compaction_running"].is_boolean());
    }
    let answered: u64 = cores
        .iter()
        .map(|c| c["requests_answered"].as_u64().unwrap())
        .sum();
    assert!(answered >= 1);

    let page = get(http, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("chart-throughput"));
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "the dashboard loads nothing from elsewhere"
    );
    let j = get(http, "/api/dashboard");
    let doc: serde_json::Value = serde_json::from_str(&j.body).unwrap();
    assert_eq!(doc["shards"].as_array().unwrap().len(), 2);
    assert!(doc["ops"]["put"]["count"].as_u64().unwrap() >= 1);
}

/// Sends `raw` on a fresh connection: the status answered, and whether the
/// server closed the connection after it.
fn answer_and_close(http: SocketAddr, raw: &[u8]) -> (u16, bool) {
    let mut c = HttpConn::connect(http);
    // The server may answer and close before reading everything (a huge head).
    let _ = c.send(raw);
    let a = c.read_answer().expect("an answer before the close");
    (a.status, c.closed())
}

#[test]
fn bad_http_input_gets_its_status_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (s, http) = start(dir.path());
    let kv = client(&s);
    let huge_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(64 << 10));
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage request line", b"HELLO\r\n\r\n".to_vec(), 400),
        ("no version", b"GET /metrics\r\n\r\n".to_vec(), 400),
        (
            "binary",
            vec![0u8, 1, 2, 255, b'\r', b'\n', b'\r', b'\n'],
            400,
        ),
        ("huge header", huge_header.into_bytes(), 431),
        (
            "too many headers",
            format!("GET / HTTP/1.1\r\n{many}\r\n").into_bytes(),
            431,
        ),
        (
            "body too large",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n".to_vec(),
            413,
        ),
        (
            "chunked body",
            b"POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, raw, status) in cases {
        assert_eq!(answer_and_close(http, &raw), (status, true), "{what}");
        kv.put(what.as_bytes(), b"still serving").unwrap();
    }

    // Well-formed but unanswerable requests keep the connection.
    let mut c = HttpConn::connect(http);
    c.send(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\nDELETE /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_answer().unwrap().status, 404);
    let a = c.read_answer().unwrap();
    assert_eq!((a.status, a.header("allow")), (405, Some("GET, HEAD")));
    c.send(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let a = c.read_head_only().unwrap();
    assert_eq!(
        (a.status, a.header("content-length"), a.body.as_str()),
        (200, Some("3"), "")
    );
    assert_eq!(c.read_answer().unwrap().body, "ok\n");

    slow_client_is_cut_off(http, &kv);
    idle_connections_are_bounded(http, &kv);
}

/// A client that dribbles a request's head one byte at a time is answered 408 and
/// closed at the request deadline (5 s), however steadily it sends.
fn slow_client_is_cut_off(http: SocketAddr, kv: &Client) {
    let mut c = HttpConn::connect(http);
    let started = Instant::now();
    let head = b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for b in head.iter().cycle().take(200) {
        if c.send(&[*b]).is_err() {
            cut = true;
            break;
        }
        kv.put(b"during-slowloris", b"v").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    if !cut {
        let a = c.read_answer().expect("408 before the close");
        assert_eq!(a.status, 408);
        assert!(c.closed());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "cut off after {took:?}");
}

/// More idle connections than the cores take: the extra ones are answered 503 and
/// closed, KV requests are served meanwhile, the idle ones are closed at the idle
/// timeout (15 s), and HTTP serves again afterwards.
fn idle_connections_are_bounded(http: SocketAddr, kv: &Client) {
    const OPENED: usize = 200;
    let limit = 2 * 64;
    let conns: Vec<HttpConn> = (0..OPENED).map(|_| HttpConn::connect(http)).collect();
    // Refusals are written at accept; give every core time to accept its share.
    std::thread::sleep(Duration::from_secs(1));
    let mut idle = Vec::new();
    let mut refused = 0;
    for mut c in conns {
        c.s.set_nonblocking(true).unwrap();
        let answer = c.read_answer();
        c.s.set_nonblocking(false).unwrap();
        match answer {
            Some(a) => {
                assert_eq!(a.status, 503);
                refused += 1;
            }
            None => idle.push(c),
        }
    }
    assert!(refused >= OPENED - limit, "{refused} refused of {OPENED}");
    assert_eq!(idle.len() + refused, OPENED);
    for i in 0..100 {
        kv.put(format!("idle-{i}").as_bytes(), b"v").unwrap();
    }
    let started = Instant::now();
    for c in &mut idle {
        c.s.set_read_timeout(Some(Duration::from_secs(25))).unwrap();
        assert!(c.closed(), "an idle connection stayed open");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "idle connections closed after {took:?}"
    );
    assert_eq!(get(http, "/healthz").status, 200);
}
