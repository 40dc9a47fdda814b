//! A scripted `psql` session against a real `nextdb serve`: the transcript must
//! match `tests/psql/session.out`, which holds PostgreSQL 15's answers to the same
//! script (errors included). And SCRAM-SHA-256 with psql's own client.
//!
//! psql comes from `postgresql-client` (scripts/test installs it). In CI a missing
//! psql fails these tests; elsewhere they say loudly that they skipped.

mod common;

use common::{Opts, Server, add_user, free_port};
use std::path::Path;
use std::process::{Command, Stdio};

fn have_psql() -> bool {
    let found = Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "psql is missing in CI: scripts/test installs postgresql-client"
        );
        eprintln!("\n*** SKIPPED: psql is not installed (apt-get install postgresql-client) ***\n");
    }
    found
}

fn start(dir: &Path, insecure: bool) -> (Server, u16) {
    let port = free_port();
    let opts = Opts {
        insecure,
        extra: vec!["--pg-listen".into(), format!("127.0.0.1:{port}")],
        ..Opts::default()
    };
    (Server::start(dir, &opts), port)
}

/// Runs psql with `script` on standard input; stdout and stderr together.
fn psql(port: u16, user: &str, password: Option<&str>, script: &str) -> (bool, String) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "exec psql -X -a -h 127.0.0.1 -p {port} -U {user} -d postgres 2>&1"
        ))
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let mut child = cmd.spawn().expect("cannot run psql");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("psql stdin");
        stdin
            .write_all(script.as_bytes())
            .expect("cannot write to psql");
    }
    let out = child.wait_with_output().expect("psql did not finish");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn psql_session_matches_postgresql() {
    if !have_psql() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start(dir.path(), true);
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/psql");
    let script = std::fs::read_to_string(here.join("session.sql")).unwrap();
    let expected = std::fs::read_to_string(here.join("session.out")).unwrap();
    let (_, got) = psql(port, "postgres", None, &script);
    if got != expected {
        let path = std::env::temp_dir().join("nextdb-psql-session.out");
        let _ = std::fs::write(&path, &got);
        panic!(
            "the psql transcript differs from tests/psql/session.out (got it in {}):\n{got}",
            path.display()
        );
    }
}

#[test]
fn psql_authenticates_with_scram() {
    if !have_psql() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice", "correct horse");
    let (_server, port) = start(dir.path(), false);
    let (ok, out) = psql(
        port,
        "alice",
        Some("correct horse"),
        "SELECT 40 + 2 AS answer;\n",
    );
    assert!(ok && out.contains("42"), "{out}");
    let (ok, out) = psql(port, "alice", Some("wrong"), "SELECT 1;\n");
    assert!(
        !ok && out.contains("password authentication failed for user \"alice\""),
        "{out}"
    );
    let (ok, out) = psql(port, "mallory", Some("x"), "SELECT 1;\n");
    assert!(
        !ok && out.contains("password authentication failed for user \"mallory\""),
        "{out}"
    );
}
