//! `nextdb demo`: a local storage engine with sample data and a small shell.
//!
//! The engine runs on one glommio executor (one core), exactly as a shard does in the
//! server; the shell reads commands on a plain thread and sends them to the executor
//! over a channel (the executor owns the engine; nothing is shared).

use nextdb_engine::EngineConfig;
use nextdb_engine::db::{Db, WriteOptions};
use nextdb_engine::fs::glommio_fs::{DmaFs, raise_memlock_limit};
use nextdb_engine::iter::prefix_successor;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::rc::Rc;

const HELP: &str = "commands: get KEY | put KEY VALUE | del KEY | scan [PREFIX] [LIMIT] | \
rscan [PREFIX] [LIMIT] | stats | flush | compact | help | quit";

/// Runs the demo; returns the process exit code.
pub fn run(dir: PathBuf, records: u64) -> i32 {
    if let Err(e) = raise_memlock_limit() {
        // The executor still starts with a small io_uring buffer pool; say so.
        eprintln!("nextdb: warning: {e}");
    }
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<String>();
    let interactive = std::io::stdin().is_terminal();
    let exec = nextdb_engine::runtime::executor_builder(glommio::Placement::Unbound)
        .name("nextdb-demo")
        .spawn(move || async move { session(dir, records, rx, done_tx).await });
    let handle = match exec {
        Ok(h) => h,
        Err(e) => {
            eprintln!("nextdb: cannot start the executor: {e}");
            return 1;
        }
    };
    let script = [
        "get user:000042",
        "scan user:00010 5",
        "put user:000042 {\"name\":\"Ada\",\"plan\":\"pro\"}",
        "get user:000042",
        "del user:000043",
        "get user:000043",
        "rscan user: 3",
        "stats",
    ];
    // The session sends its banner once the engine is open and loaded.
    let mut ok = print_reply(&done_rx);
    for line in script {
        if !ok {
            break;
        }
        println!("nextdb> {line}");
        if tx.send(line.to_string()).is_err() || !print_reply(&done_rx) {
            ok = false;
            break;
        }
    }
    if ok && interactive {
        println!("{HELP}");
        let stdin = std::io::stdin();
        loop {
            print!("nextdb> ");
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = line.trim().to_string();
            if line.is_empty() {
                continue;
            }
            if line == "quit" || line == "exit" {
                break;
            }
            if tx.send(line).is_err() || !print_reply(&done_rx) {
                break;
            }
        }
    }
    drop(tx);
    match handle.join() {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("nextdb: {e}");
            1
        }
        Err(_) => {
            eprintln!("nextdb: the engine thread panicked");
            1
        }
    }
}

fn print_reply(rx: &std::sync::mpsc::Receiver<String>) -> bool {
    match rx.recv() {
        Ok(r) => {
            println!("{r}");
            true
        }
        Err(_) => false,
    }
}

async fn session(
    dir: PathBuf,
    records: u64,
    rx: std::sync::mpsc::Receiver<String>,
    tx: std::sync::mpsc::Sender<String>,
) -> Result<(), String> {
    let db = Db::open(DmaFs::new(), &dir, EngineConfig::default())
        .await
        .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    nextdb_engine::runtime::spawn_background(&db).map_err(|e| e.to_string())?;
    let loaded = load_sample(&db, records).await.map_err(|e| e.to_string())?;
    let banner = format!(
        "NextDB demo: storage engine in {} ({loaded} sample records loaded)",
        dir.display()
    );
    if tx.send(banner).is_err() {
        return db.close().await.map_err(|e| e.to_string());
    }
    // The shell thread blocks on stdin; poll its channel without blocking the executor.
    loop {
        match rx.try_recv() {
            Ok(cmd) => {
                let reply = execute(&db, &cmd).await;
                if tx.send(reply).is_err() {
                    break;
                }
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
        }
    }
    db.close().await.map_err(|e| e.to_string())
}

async fn load_sample(db: &Rc<Db<DmaFs>>, records: u64) -> nextdb_engine::Result<u64> {
    if db.get(b"user:000000").await?.is_some() {
        return Ok(0);
    }
    let plans = ["free", "pro", "team"];
    let opts = WriteOptions::default();
    for i in 0..records {
        let key = format!("user:{i:06}");
        let val = format!(
            "{{\"id\":{i},\"name\":\"user{i}\",\"plan\":\"{}\"}}",
            plans[(i % 3) as usize]
        );
        db.put(key.as_bytes(), val.as_bytes(), &opts).await?;
    }
    db.sync_log().await?;
    Ok(records)
}

async fn execute(db: &Rc<Db<DmaFs>>, line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let cmd = parts.next().unwrap_or("");
    let a = parts.next();
    let b = parts.next();
    let sync = WriteOptions {
        sync: true,
        ttl_ms: None,
    };
    let r: Result<String, nextdb_engine::Error> = async {
        Ok(match (cmd, a, b) {
            ("get", Some(k), None) => match db.get(k.as_bytes()).await? {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None => "(not found)".to_string(),
            },
            ("put", Some(k), Some(v)) => {
                db.put(k.as_bytes(), v.as_bytes(), &sync).await?;
                "OK (synced)".to_string()
            }
            ("del", Some(k), None) => {
                db.delete(k.as_bytes(), &sync).await?;
                "OK (synced)".to_string()
            }
            ("scan" | "rscan", prefix, limit) => {
                let limit = match limit.map(str::parse::<usize>) {
                    None => 10,
                    Some(Ok(n)) => n,
                    Some(Err(_)) => return Ok("LIMIT must be a number".to_string()),
                };
                let lo = prefix.map(|p| p.as_bytes().to_vec());
                let hi = lo.as_deref().and_then(prefix_successor);
                let rows = db
                    .scan(lo.as_deref(), hi.as_deref(), limit, cmd == "rscan")
                    .await?;
                let mut out = String::new();
                for (k, v) in &rows {
                    out.push_str(&format!(
                        "{} = {}\n",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    ));
                }
                out.push_str(&format!("({} rows)", rows.len()));
                out
            }
            ("stats", None, None) => {
                let s = db.stats();
                let levels: Vec<String> = s
                    .levels
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.files > 0)
                    .map(|(i, l)| format!("L{i}: {} files, {} bytes", l.files, l.bytes))
                    .collect();
                format!(
                    "levels: [{}]\nmemtable: {} bytes (+{} waiting for flush)\n\
                     writes: {} user bytes, write amplification {:.2}\n\
                     flushes {}, compactions {}, stalls {} ({} us)\n\
                     block cache: {} bytes, hit rate {:.1}%",
                    levels.join(", "),
                    s.memtable_bytes,
                    s.immutable_memtables,
                    s.user_bytes_written,
                    s.write_amplification,
                    s.flushes,
                    s.compactions,
                    s.stall_count,
                    s.stall_micros,
                    s.cache_bytes,
                    s.cache_hit_rate * 100.0
                )
            }
            ("flush", None, None) => {
                db.flush().await?;
                "OK".to_string()
            }
            ("compact", None, None) => {
                db.compact_range(None, None).await?;
                "OK".to_string()
            }
            ("help", _, _) => HELP.to_string(),
            _ => format!("unknown or malformed command; {HELP}"),
        })
    }
    .await;
    r.unwrap_or_else(|e| format!("error: {e}"))
}
