//! `nextdb demo`: starts a local node (every core, native protocol on loopback),
//! loads sample data through the client, runs a short scripted session, then an
//! interactive shell when standard input is a terminal. The node runs in this
//! process exactly as `nextdb serve` runs it; the shell is an ordinary client.

use crate::kv::prefix_end;
use crate::serve::{Settings, serve_with};
use nextdb_client::{BatchOp, Client, Config, TtlState};
use nextdb_shard::SyncMode;
use nextdb_shard::config::available_cores;
use nextdb_shard::shutdown::Shutdown;
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const HELP: &str = "commands: get KEY | put KEY VALUE | del KEY | scan [PREFIX] [LIMIT] | \
incr KEY [DELTA] | expire KEY MS | ttl KEY | stats | help | quit";

const SAMPLE_BATCH: usize = 500;

fn free_loopback() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Runs the demo; returns the process exit code.
pub fn run(dir: PathBuf, records: u64) -> i32 {
    let listen = match free_loopback() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nextdb: {e}");
            return 1;
        }
    };
    let pg_listen = match free_loopback() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nextdb: {e}");
            return 1;
        }
    };
    let settings = Settings {
        data_dir: dir.clone(),
        listen,
        pg_listen,
        // The demo is a throwaway node beside whatever else runs: no HTTP port.
        http_listen: None,
        shard_port_base: Some(0),
        shards: available_cores(),
        sync: SyncMode::Fsync,
        insecure: true,
        memtable_mb: 64,
        block_cache_mb: 64,
        max_connections_per_shard: 1000,
        max_requests_in_flight: nextdb_shard::config::MAX_REQUESTS_IN_FLIGHT_PER_CORE,
        request_timeout_ms: nextdb_shard::config::REQUEST_TIMEOUT.as_millis() as u64,
        pin: true,
        tls: None,
        slow_op_ms: nextdb_shard::config::DEFAULT_SLOW_OP_MS,
        slow_op_redact: false,
        log_format: crate::serve::LogFormat::Text,
        archive_dir: None,
    };
    let shutdown = Shutdown::new();
    let sd = shutdown.clone();
    let node = std::thread::spawn(move || serve_with(settings, sd, true));
    let result = session(listen, records, &shutdown);
    shutdown.stop();
    let node_result = node.join();
    if let Err(e) = &result {
        eprintln!("nextdb: {e}");
    }
    match node_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("nextdb: {e}");
            return 1;
        }
        Err(_) => {
            eprintln!("nextdb: the node thread panicked");
            return 1;
        }
    }
    if result.is_ok() { 0 } else { 1 }
}

fn connect(listen: SocketAddr, shutdown: &Shutdown) -> Result<Client, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cfg = Config::new(listen.to_string()).client_name("nextdb-demo");
        match Client::connect(cfg).and_then(|c| c.ping().map(|_| c)) {
            Ok(c) => return Ok(c),
            Err(e) => {
                if shutdown.is_stopping() || Instant::now() > deadline {
                    return Err(format!("the node did not start: {e}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn session(listen: SocketAddr, records: u64, shutdown: &Shutdown) -> Result<(), String> {
    let client = connect(listen, shutdown)?;
    let loaded = load_sample(&client, records).map_err(|e| e.to_string())?;
    println!(
        "NextDB demo: a node on {listen} with {} shards; {loaded} sample records loaded",
        available_cores()
    );
    let script = [
        "get user:000042",
        "scan user:00010 5",
        "put user:000042 {\"name\":\"Ada\",\"plan\":\"pro\"}",
        "get user:000042",
        "del user:000043",
        "get user:000043",
        "incr visits:today",
        "incr visits:today 41",
        "put session:abc token-123",
        "expire session:abc 60000",
        "ttl session:abc",
        "stats",
    ];
    for line in script {
        println!("nextdb> {line}");
        println!("{}", execute(&client, line));
    }
    if std::io::stdin().is_terminal() {
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
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line == "quit" || line == "exit" {
                break;
            }
            println!("{}", execute(&client, line));
        }
    }
    Ok(())
}

fn load_sample(client: &Client, records: u64) -> nextdb_client::Result<u64> {
    if client.get(b"user:000000")?.is_some() {
        return Ok(0);
    }
    let plans = ["free", "pro", "team"];
    let mut ops = Vec::with_capacity(SAMPLE_BATCH);
    for i in 0..records {
        ops.push(BatchOp::Put {
            key: format!("user:{i:06}").into_bytes(),
            value: format!(
                "{{\"id\":{i},\"name\":\"user{i}\",\"plan\":\"{}\"}}",
                plans[(i % 3) as usize]
            )
            .into_bytes(),
            ttl_ms: None,
        });
        if ops.len() == SAMPLE_BATCH {
            client.batch(false, std::mem::take(&mut ops))?;
        }
    }
    if !ops.is_empty() {
        client.batch(false, ops)?;
    }
    Ok(records)
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn execute(client: &Client, line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let cmd = parts.next().unwrap_or("");
    let a = parts.next();
    let b = parts.next();
    let r: nextdb_client::Result<String> = (|| {
        Ok(match (cmd, a, b) {
            ("get", Some(k), None) => match client.get(k.as_bytes())? {
                Some(v) => show(&v),
                None => "(not found)".to_string(),
            },
            ("put", Some(k), Some(v)) => {
                client.put(k.as_bytes(), v.as_bytes())?;
                "OK (durable)".to_string()
            }
            ("del", Some(k), None) => {
                client.delete(k.as_bytes())?;
                "OK (durable)".to_string()
            }
            ("incr", Some(k), d) => {
                let delta = match d.map(str::parse::<i64>) {
                    None => 1,
                    Some(Ok(n)) => n,
                    Some(Err(_)) => return Ok("DELTA must be an integer".to_string()),
                };
                client.incr(k.as_bytes(), delta)?.to_string()
            }
            ("expire", Some(k), Some(ms)) => match ms.parse::<u64>() {
                Ok(ms) => {
                    if client.expire(k.as_bytes(), Some(Duration::from_millis(ms)))? {
                        "OK".to_string()
                    } else {
                        "(not found)".to_string()
                    }
                }
                Err(_) => "MS must be a number".to_string(),
            },
            ("ttl", Some(k), None) => match client.ttl(k.as_bytes())? {
                TtlState::Missing => "(not found)".to_string(),
                TtlState::Persistent => "(no ttl)".to_string(),
                TtlState::ExpiresIn(ms) => format!("{ms} ms"),
            },
            ("scan", prefix, limit) => {
                let limit = match limit.map(str::parse::<u32>) {
                    None => 10,
                    Some(Ok(n)) if n > 0 => n.min(10_000),
                    _ => return Ok("LIMIT must be a positive number".to_string()),
                };
                let start = prefix.unwrap_or("").as_bytes().to_vec();
                let end = prefix.and_then(|p| prefix_end(p.as_bytes()));
                let page = client.scan(&start, end.as_deref(), limit, &[])?;
                let mut out = String::new();
                for (k, v) in &page.entries {
                    out.push_str(&format!("{} = {}\n", show(k), show(v)));
                }
                out.push_str(&format!("({} rows)", page.entries.len()));
                out
            }
            ("stats", None, None) => {
                let json = client.stats()?;
                match serde_json::from_str::<serde_json::Value>(&json) {
                    Ok(v) => {
                        let mut out = String::new();
                        if let Some(m) = v["node"]["ops"].as_object() {
                            for (name, o) in m {
                                out.push_str(&format!(
                                    "{name:<6} count {:>7}  p50 {:>5} us  p99 {:>5} us\n",
                                    o["count"], o["p50_us"], o["p99_us"]
                                ));
                            }
                        }
                        out.push_str(&format!(
                            "connections open: {}",
                            v["node"]["connections"]["open"]
                        ));
                        out
                    }
                    Err(_) => json,
                }
            }
            ("help", _, _) => HELP.to_string(),
            _ => format!("unknown or malformed command; {HELP}"),
        })
    })();
    r.unwrap_or_else(|e| format!("error: {e}"))
}
