//! Online backup, point-in-time restore and verify against real `nextdb serve`
//! processes.
//!
//! The model: every writer records, per key it PUTs once, the wall-clock
//! milliseconds when it sent the request and when the answer came. A shard's backup
//! point `P` (its `time_ms` in `BACKUP`) and a restore moment `T` decide:
//! - acknowledged at `ack_ms < P` (backup) or `ack_ms <= T` (point in time): the
//!   write must be there (it was durable before the cut; its flush's commit time is
//!   at most its acknowledgement);
//! - sent at `send_ms > P` or `send_ms > T`: it must not be there (its record was
//!   appended after the cut; its flush's commit time is at least its sending);
//! - anything else was in flight across the moment and may go either way.
//!
//! Client and server read the same clock (one machine), so no margin is needed
//! beyond the millisecond rounding the strict inequalities above already take.

mod common;

use common::{Server, bin, free_port};
use nextdb_client::{Client, Config};
use nextdb_engine::backup::manifest::BackupManifest;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 3;
const VALUE_BYTES: usize = 2048;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A node with a 1 MiB memtable (so SSTables appear quickly) and, if given, a log
/// archive.
fn start(dir: &Path, archive: Option<&Path>) -> Server {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--insecure", "--no-pin", "--shards", "2"])
        .args(["--memtable-mb", "1", "--block-cache-mb", "16"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--pg-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(a) = archive {
        cmd.arg("--archive-dir").arg(a);
    }
    let mut child = cmd.spawn().expect("start nextdb serve");
    let output = Server::collect_output(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        match output.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains("nextdb: ready") => break,
            Ok(l) => seen.push(l),
            Err(_) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("server exited with {st}:\n{}", seen.join("\n"));
                }
                assert!(Instant::now() < deadline, "not ready:\n{}", seen.join("\n"));
            }
        }
    }
    Server {
        child,
        addr,
        dir: dir.to_path_buf(),
        output,
    }
}

fn client(s: &Server) -> Client {
    Client::connect(
        Config::new(s.addr.to_string())
            .request_timeout(Duration::from_secs(300))
            .max_retries(0),
    )
    .unwrap()
}

/// One PUT as the writer saw it.
#[derive(Clone, Debug)]
struct Write {
    key: String,
    send_ms: u64,
    ack_ms: Option<u64>,
}

/// Writers of unique keys until `stop`; returns every write they sent.
fn writers(s: &Server, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<Write>>> {
    (0..WRITERS)
        .map(|t| {
            let addr = s.addr;
            let stop = stop.clone();
            std::thread::spawn(move || {
                let c = Client::connect(Config::new(addr.to_string()).max_retries(0)).unwrap();
                let mut out = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("t{t}:{i:07}");
                    let send_ms = now_ms();
                    let ok = c.put(key.as_bytes(), &[b'v'; VALUE_BYTES]).is_ok();
                    out.push(Write {
                        key,
                        send_ms,
                        ack_ms: ok.then(now_ms),
                    });
                    i += 1;
                }
                out
            })
        })
        .collect()
}

/// 12 MiB under keys outside the writers' range (`p…`), so each shard holds
/// SSTables that the writers' flushes and compactions leave alone.
fn preload(s: &Server) {
    let c = client(s);
    for chunk in 0..96u32 {
        let ops = (0..64u32)
            .map(|i| nextdb_client::BatchOp::Put {
                key: format!("p{chunk:03}:{i:03}").into_bytes(),
                value: vec![b'p'; VALUE_BYTES],
                ttl_ms: None,
            })
            .collect();
        c.batch(false, ops).unwrap();
    }
}

fn backup(s: &Server, to: &Path, prev: Option<&Path>) -> serde_json::Value {
    let prev = prev.map(|p| p.to_str().unwrap().to_string());
    let json = client(s)
        .backup(to.to_str().unwrap(), prev.as_deref())
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

fn manifest(dir: &Path) -> BackupManifest {
    let p = dir.join("BACKUP");
    BackupManifest::decode(&p, &std::fs::read(&p).unwrap()).unwrap()
}

/// The earliest and latest shard point of a backup.
fn points(dir: &Path) -> (u64, u64) {
    let m = manifest(dir);
    let t: Vec<u64> = m.shards.iter().map(|p| p.time_ms).collect();
    (*t.iter().min().unwrap(), *t.iter().max().unwrap())
}

fn admin(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Keys a node started on `dir` serves.
fn keys_of(dir: &Path) -> BTreeSet<String> {
    let s = start(dir, None);
    let c = client(&s);
    let keys = c
        .scan_all(b"t", Some(b"u"), 1000)
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect();
    drop(c);
    let (code, out) = s.terminate();
    assert_eq!(code, Some(0), "{out:?}");
    keys
}

/// Checks `keys` against the model for a moment: present if acknowledged at
/// `present_if_ack(ack_ms)`, absent if sent after `absent_if_sent_after`.
fn check(
    keys: &BTreeSet<String>,
    writes: &[Write],
    present_if_ack: impl Fn(u64) -> bool,
    absent_if_sent_after: u64,
    what: &str,
) {
    let (mut must, mut must_not) = (0, 0);
    for w in writes {
        let there = keys.contains(&w.key);
        if w.ack_ms.is_some_and(&present_if_ack) {
            must += 1;
            assert!(
                there,
                "{what}: {} acknowledged at {:?} is missing",
                w.key, w.ack_ms
            );
        }
        if w.send_ms > absent_if_sent_after {
            must_not += 1;
            assert!(!there, "{what}: {} sent at {} is present", w.key, w.send_ms);
        }
    }
    assert!(
        must > 0 && must_not > 0,
        "{what}: the model decided nothing ({must}, {must_not})"
    );
}

#[test]
fn backup_under_load_restore_point_in_time_and_verify() {
    let root = tempfile::tempdir().unwrap();
    let (data, archive) = (root.path().join("data"), root.path().join("archive"));
    let b = |n: &str| root.path().join(n);
    let s = start(&data, Some(&archive));
    preload(&s);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = writers(&s, stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    backup(&s, &b("b1"), None);
    std::thread::sleep(Duration::from_millis(1500));
    let inc = backup(&s, &b("b2"), Some(&b("b1")));
    std::thread::sleep(Duration::from_millis(1500));
    backup(&s, &b("b3"), None);
    stop.store(true, Ordering::Relaxed);
    let writes: Vec<Write> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    drop(s);

    // Incremental: every table of b2 that b1 has is the same inode, not a copy.
    let (m1, m2) = (manifest(&b("b1")), manifest(&b("b2")));
    let shared: Vec<_> = m2
        .files
        .iter()
        .filter(|f| f.path.ends_with(".sst") && m1.files.iter().any(|g| g.path == f.path))
        .collect();
    assert!(!shared.is_empty(), "no table survived between the backups");
    for f in &shared {
        let ino = |d: &str| std::fs::metadata(b(d).join(&f.path)).unwrap().ino();
        assert_eq!(ino("b1"), ino("b2"), "{} was copied again", f.path);
    }
    assert_eq!(inc["files_linked"].as_u64().unwrap(), shared.len() as u64);

    // Plain restore of the full backup under load.
    let (lo, hi) = points(&b("b1"));
    let (ok, out) = admin(&[
        "restore",
        "--from",
        b("b1").to_str().unwrap(),
        "--to",
        b("r1").to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let keys = keys_of(&b("r1"));
    check(&keys, &writes, |ack| ack < lo, hi, "backup b1");
    let (ok, out) = admin(&["verify", b("r1").to_str().unwrap()]);
    assert!(ok, "restored directory does not verify: {out}");

    // Point in time: three seeded moments between b1's and b3's points.
    let (_, b1_hi) = points(&b("b1"));
    let (b3_lo, _) = points(&b("b3"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for n in 0..3 {
        // Away from b3's point: the archive must hold a flush after the moment.
        let t = rng.gen_range(b1_hi + 1..b3_lo - 200);
        let dest = b(&format!("pitr{n}"));
        let (ok, out) = admin(&[
            "restore",
            "--from",
            b("b1").to_str().unwrap(),
            "--archive-dir",
            archive.to_str().unwrap(),
            "--to-time",
            &t.to_string(),
            "--to",
            dest.to_str().unwrap(),
        ]);
        assert!(ok, "restore to {t}: {out}");
        check(
            &keys_of(&dest),
            &writes,
            |ack| ack <= t,
            t,
            &format!("moment {t}"),
        );
    }

    // A flipped byte in a copied file: verify names the file, restore refuses.
    let victim = manifest(&b("b3"))
        .files
        .iter()
        .find(|f| f.path.contains("/log/") && f.size > 8192)
        .map(|f| b("b3").join(&f.path))
        .expect("a log segment with records");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[4096 + 100] ^= 0x10;
    std::fs::write(&victim, &bytes).unwrap();
    let (ok, out) = admin(&["verify", b("b3").to_str().unwrap()]);
    assert!(!ok, "verify passed a damaged backup: {out}");
    assert!(
        out.contains(victim.to_str().unwrap()),
        "verify did not name {}: {out}",
        victim.display()
    );
    let (ok, out) = admin(&[
        "restore",
        "--from",
        b("b3").to_str().unwrap(),
        "--to",
        b("r3").to_str().unwrap(),
    ]);
    assert!(
        !ok && out.contains("corrupt"),
        "restore of a damaged backup: {out}"
    );
}

#[test]
fn bad_backup_requests_are_refused_with_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let s = start(&root.path().join("data"), None);
    let c = client(&s);
    let code = |r: nextdb_client::Result<String>| match r {
        Err(nextdb_client::Error::Server {
            raw_code, message, ..
        }) => (raw_code, message),
        other => panic!("expected a server error, got {other:?}"),
    };
    let (n, m) = code(c.backup("relative/dir", None));
    assert_eq!(n, 7, "{m}");
    assert!(m.contains("absolute"), "{m}");
    let full = root.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let (n, m) = code(c.backup(full.to_str().unwrap(), None));
    assert_eq!(n, 7);
    assert!(m.contains("not empty"), "{m}");
    let to = root.path().join("b");
    let (n, m) = code(c.backup(to.to_str().unwrap(), Some(root.path().to_str().unwrap())));
    assert_eq!(n, 7);
    assert!(m.contains("not a complete backup"), "{m}");
    // The node keeps serving.
    c.put(b"t-after", b"v").unwrap();
    let (ok, out) = admin(&[
        "restore",
        "--from",
        root.path().join("missing").to_str().unwrap(),
        "--to",
        "/nonexistent-x",
    ]);
    assert!(!ok && out.contains("does not exist"), "{out}");
    let (ok, out) = admin(&["verify", root.path().join("full").to_str().unwrap()]);
    assert!(
        !ok && out.contains("neither a data directory nor a backup"),
        "{out}"
    );
}

#[test]
fn kill_9_during_a_backup_leaves_the_data_intact() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let s = start(&data, None);
    let c = client(&s);
    let acked = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3000u32 {
        let k = format!("t{i:06}");
        c.put(k.as_bytes(), &[b'x'; VALUE_BYTES]).unwrap();
        acked.lock().unwrap().push(k);
    }
    let to = root.path().join("b");
    let addr = s.addr.to_string();
    let cli = std::thread::spawn({
        let to = to.clone();
        move || {
            Command::new(bin())
                .args([
                    "admin",
                    "backup",
                    "--addr",
                    &addr,
                    "--to",
                    to.to_str().unwrap(),
                ])
                .output()
                .unwrap()
        }
    });
    // Kill once the backup has started copying.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !to.join("shard-0").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = s.pid();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    drop(s);
    let out = cli.join().unwrap();
    assert!(!to.join("BACKUP").exists() || out.status.success());
    let keys = keys_of(&data);
    for k in acked.lock().unwrap().iter() {
        assert!(keys.contains(k), "{k} lost after kill -9 during a backup");
    }
    let (ok, out) = admin(&["verify", data.to_str().unwrap()]);
    assert!(ok, "data directory damaged: {out}");
    if !to.join("BACKUP").exists() {
        let (ok, out) = admin(&[
            "restore",
            "--from",
            to.to_str().unwrap(),
            "--to",
            root.path().join("r").to_str().unwrap(),
        ]);
        assert!(
            !ok && out.contains("not a backup"),
            "an incomplete backup restored: {out}"
        );
    }
}
