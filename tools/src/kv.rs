//! `nextdb kv`: key-value commands against a running node over the native protocol.

use clap::{Args, Subcommand};
use nextdb_client::{Client, Config};
use std::time::Duration;

/// How to reach a node.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Node address.
    #[arg(long, global = true, env = "NEXTDB_ADDR", default_value = crate::serve::DEFAULT_LISTEN)]
    pub addr: String,
    /// User (SCRAM-SHA-256); the password comes from NEXTDB_PASSWORD. Without a user
    /// the client asks for an unauthenticated session (servers run with --insecure).
    #[arg(long, global = true, env = "NEXTDB_USER")]
    pub user: Option<String>,
}

impl ConnArgs {
    pub fn connect(&self) -> Result<Client, String> {
        self.connect_with_timeout(nextdb_client::Config::new(String::new()).request_timeout)
    }

    /// Connects with a request timeout of `timeout` (a backup waits for its copies).
    pub fn connect_with_timeout(&self, timeout: std::time::Duration) -> Result<Client, String> {
        // One request per process: a connection to the owning core's port would cost
        // a second connect and handshake (a SCRAM exchange with a user) to save one
        // hop between cores, so the CLI stays on the connection it opened.
        let mut cfg = Config::new(self.addr.clone())
            .client_name("nextdb-cli")
            .shard_aware(false)
            .request_timeout(timeout);
        if let Some(u) = &self.user {
            let pw = std::env::var("NEXTDB_PASSWORD")
                .map_err(|_| "set NEXTDB_PASSWORD to log in as --user".to_string())?;
            cfg = cfg.credentials(u.clone(), pw);
        }
        Client::connect(cfg).map_err(|e| format!("cannot connect to {}: {e}", self.addr))
    }
}

#[derive(Subcommand, Debug)]
pub enum KvCmd {
    /// Prints the value of KEY (exit code 1 if it does not exist).
    Get { key: String },
    /// Sets KEY to VALUE, optionally expiring after --ttl-ms.
    Put {
        key: String,
        value: String,
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Deletes KEY.
    Del { key: String },
    /// Lists keys in [START, END) (or with --prefix), at most --limit.
    Scan {
        #[arg(default_value = "")]
        start: String,
        end: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Args, Debug)]
pub struct KvArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub cmd: KvCmd,
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The exclusive end of all keys starting with `p`.
pub fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return Some(e);
        }
    }
    None
}

pub fn run(a: KvArgs) -> i32 {
    let client = match a.conn.connect() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nextdb: {e}");
            return 2;
        }
    };
    let r: Result<i32, nextdb_client::Error> = (|| match a.cmd {
        KvCmd::Get { key } => match client.get(key.as_bytes())? {
            Some(v) => {
                println!("{}", show(&v));
                Ok(0)
            }
            None => {
                eprintln!("(not found)");
                Ok(1)
            }
        },
        KvCmd::Put { key, value, ttl_ms } => {
            match ttl_ms {
                Some(t) => client.put_with_ttl(
                    key.as_bytes(),
                    value.as_bytes(),
                    Duration::from_millis(t),
                )?,
                None => client.put(key.as_bytes(), value.as_bytes())?,
            }
            println!("OK");
            Ok(0)
        }
        KvCmd::Del { key } => {
            client.delete(key.as_bytes())?;
            println!("OK");
            Ok(0)
        }
        KvCmd::Scan {
            start,
            end,
            prefix,
            limit,
        } => {
            let (start, end) = match prefix {
                Some(p) => (p.as_bytes().to_vec(), prefix_end(p.as_bytes())),
                None => (start.into_bytes(), end.map(String::into_bytes)),
            };
            let mut n = 0usize;
            let mut token = Vec::new();
            loop {
                let page_size = (limit - n).min(1000) as u32;
                if page_size == 0 {
                    break;
                }
                let page = client.scan(&start, end.as_deref(), page_size, &token)?;
                for (k, v) in &page.entries {
                    println!("{} = {}", show(k), show(v));
                }
                n += page.entries.len();
                if page.token.is_empty() {
                    break;
                }
                token = page.token;
            }
            println!("({n} rows)");
            Ok(0)
        }
    })();
    r.unwrap_or_else(|e| {
        eprintln!("nextdb: {e}");
        1
    })
}

/// `nextdb admin stats`: per-shard counters and latencies, as a table.
pub fn stats(c: &ConnArgs) -> Result<(), String> {
    let client = c.connect()?;
    let json = client.stats().map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("bad STATS document: {e}"))?;
    let node = &v["node"];
    println!(
        "node: {} shards, sync={}",
        node["shards"],
        node["sync"].as_str().unwrap_or("?")
    );
    let conns = &node["connections"];
    println!(
        "connections: {} open, {} accepted, {} refused, {} auth failures, {} protocol errors",
        conns["open"],
        conns["accepted"],
        conns["refused"],
        conns["auth_failures"],
        conns["protocol_errors"]
    );
    let print_ops = |label: &str, ops: &serde_json::Value| {
        if let Some(m) = ops.as_object() {
            for (name, o) in m {
                println!(
                    "  {label:<8} {name:<7} count {:>10}  errors {:>6}  p50 {:>6} us  p99 {:>6} us  p999 {:>6} us  max {:>8} us",
                    o["count"], o["errors"], o["p50_us"], o["p99_us"], o["p999_us"], o["max_us"]
                );
            }
        }
    };
    println!("operations (latency from request decoded to response encoded):");
    print_ops("node", &node["ops"]);
    if let Some(shards) = v["shards"].as_array() {
        for s in shards {
            let label = format!("shard {}", s["shard"]);
            print_ops(&label, &s["ops"]);
            let e = &s["engine"];
            println!(
                "  {label:<8} engine: memtable {} bytes, cache hit rate {:.3}, write amp {:.2}, flushes {}, compactions {}, stalls {}; cross-core sent {} received {}",
                e["memtable_bytes"],
                e["cache_hit_rate"].as_f64().unwrap_or(0.0),
                e["write_amplification"].as_f64().unwrap_or(0.0),
                e["flushes"],
                e["compactions"],
                e["stall_count"],
                s["cross_core"]["sent"],
                s["cross_core"]["received"]
            );
            let syncs = e["log_syncs"].as_u64().unwrap_or(0);
            let per = |n: u64| n as f64 / syncs.max(1) as f64;
            println!(
                "  {label:<8} log: {} records, {syncs} group commits ({:.1} records and {:.0} us each)",
                e["log_records"],
                per(e["log_records"].as_u64().unwrap_or(0)),
                per(e["log_sync_micros"].as_u64().unwrap_or(0)),
            );
        }
    }
    Ok(())
}
