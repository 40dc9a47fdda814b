//! The operator files in `docs/ops/` against a real node: the alert rules pass
//! `promtool check rules`, the node's `/metrics` passes `promtool check metrics`
//! (Prometheus's own parser and linter), and every metric the rules and the
//! Grafana dashboard use is one `/metrics` exports.
//!
//! Without promtool (Debian package `prometheus`) the test fails under CI
//! (`CI=true`; `scripts/test` installs it) and elsewhere skips with a loud message.

mod common;

use common::http::get;
use common::{Opts, Server, free_port};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn ops_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/ops")
}

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "promtool is not installed: CI must check the alert rules (scripts/test installs it)"
    );
    eprintln!("\n!!!!! SKIPPED promtool checks: no promtool (apt-get install prometheus) !!!!!\n");
    None
}

/// Every `nextdb_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("nextdb_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
    out
}

/// The series names a scrape of a fresh node holds (samples, not comments).
fn exported(http: SocketAddr) -> (String, BTreeSet<String>) {
    let a = get(http, "/metrics");
    assert_eq!(a.status, 200);
    let names = a
        .body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    (a.body, names)
}

#[test]
fn alert_rules_and_grafana_dashboard_use_only_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _s = Server::start(
        dir.path(),
        &Opts {
            extra: vec!["--http-listen".into(), http.to_string()],
            ..Opts::default()
        },
    );
    let (body, names) = exported(http);

    let rules = std::fs::read_to_string(ops_dir().join("alerts.yml")).unwrap();
    let grafana = std::fs::read_to_string(ops_dir().join("grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&grafana).expect("grafana JSON");
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    for (file, text) in [("alerts.yml", rules.clone()), ("grafana", exprs.join("\n"))] {
        let used = metric_names(&text);
        assert!(used.len() >= 5, "{file} uses {used:?}");
        for m in used {
            assert!(
                names.contains(&m),
                "{file} uses {m}, which /metrics does not export"
            );
        }
    }

    let Some(promtool) = promtool() else { return };
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(ops_dir().join("alerts.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
