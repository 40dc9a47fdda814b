//! Shard-aware routing, shared by both front ends: what a node's HELLO answer says
//! about its shards (partition map, one port per core), and which core a request
//! should go to. A request sent to the core that owns its key runs there without a hop
//! between cores; sent anywhere else it is still answered (the node forwards it), so
//! routing is only ever an optimisation, never a condition of correctness.

use nextdb_proto::limits::TOPOLOGY_VERSION;
use nextdb_proto::{BatchOp, HelloOk, Request, SlotMap};

/// Where a request goes: any connection, or one to the core that owns its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Any,
    Shard(usize),
}

/// A node's shards as one of its HELLO answers described them.
#[derive(Debug)]
pub(crate) struct Routes {
    map: SlotMap,
    /// shard → `host:port` of its own listener (None: it has none; use any
    /// connection).
    addrs: Vec<Option<String>>,
}

impl Routes {
    /// The routes a HELLO answer (received on a connection to `addr`, as configured)
    /// describes; None when it describes none (protocol version 1, shard ports off) or
    /// an unusable map.
    pub fn learn(hello: &HelloOk, addr: &str) -> Option<Routes> {
        if hello.version < TOPOLOGY_VERSION
            || hello.shard_ports.len() != usize::from(hello.shards)
            || hello.shard_ports.iter().all(|&p| p == 0)
        {
            return None;
        }
        let map = match SlotMap::new(hello.slots, hello.shards, &hello.partitions) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "the server's partition map is unusable: not routing by key");
                return None;
            }
        };
        let addrs = hello
            .shard_ports
            .iter()
            .map(|&p| (p != 0).then(|| with_port(addr, p)).flatten())
            .collect();
        Some(Routes { map, addrs })
    }

    pub fn shards(&self) -> usize {
        self.addrs.len()
    }

    /// The address of `shard`'s own listener.
    pub fn addr(&self, shard: usize) -> Option<&str> {
        self.addrs.get(shard).and_then(Option::as_deref)
    }

    /// The core that owns every key of `req`, when there is one: single-key requests,
    /// and a BATCH whose keys all live on one core. SCAN, STATS, PING and BATCHes that
    /// span cores go to any core.
    pub fn target(&self, req: &Request) -> Target {
        if let Some(key) = req.single_key() {
            return Target::Shard(usize::from(self.map.shard_of(key)));
        }
        match req {
            Request::Batch { ops, .. } => self.batch_target(ops),
            _ => Target::Any,
        }
    }

    fn batch_target(&self, ops: &[BatchOp]) -> Target {
        let mut owners = ops.iter().map(|o| self.map.shard_of(o.key()));
        match owners.next() {
            Some(first) if owners.all(|s| s == first) => Target::Shard(usize::from(first)),
            _ => Target::Any,
        }
    }
}

/// `addr` (`host:port`, `[v6]:port`) with its port replaced; None if it has no port.
fn with_port(addr: &str, port: u16) -> Option<String> {
    let (host, old) = addr.rsplit_once(':')?;
    old.parse::<u16>().ok()?;
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextdb_proto::SlotRange;

    fn hello(version: u16, ports: Vec<u16>) -> HelloOk {
        HelloOk {
            version,
            server_name: "t".into(),
            shard: 0,
            shards: 2,
            slots: 16384,
            authenticated: true,
            auth_data: Vec::new(),
            partitions: vec![
                SlotRange {
                    start: 0,
                    end: 8192,
                    shard: 0,
                },
                SlotRange {
                    start: 8192,
                    end: 16384,
                    shard: 1,
                },
            ],
            shard_ports: ports,
        }
    }

    #[test]
    fn routes_single_key_requests_and_one_core_batches() {
        let r = Routes::learn(&hello(2, vec![7801, 7802]), "db.local:7700").unwrap();
        assert_eq!(r.addr(0), Some("db.local:7801"));
        assert_eq!(r.addr(1), Some("db.local:7802"));
        let mut seen = [false; 2];
        for i in 0..64u32 {
            let key = format!("k{i}").into_bytes();
            let slot = nextdb_proto::slot_of(&key, 16384);
            let want = usize::from(slot >= 8192);
            seen[want] = true;
            assert_eq!(
                r.target(&Request::Get { key: key.clone() }),
                Target::Shard(want)
            );
            let ops = vec![BatchOp::Get { key: key.clone() }, BatchOp::Delete { key }];
            let batch = Request::Batch { atomic: true, ops };
            assert_eq!(r.target(&batch), Target::Shard(want));
        }
        assert_eq!(seen, [true, true], "keys of both cores");
        let scan = Request::Scan {
            start: vec![],
            end: None,
            limit: 1,
            token: vec![],
        };
        assert_eq!(r.target(&scan), Target::Any);
    }

    #[test]
    fn no_routes_without_a_map_or_ports() {
        assert!(Routes::learn(&hello(1, vec![]), "h:1").is_none());
        assert!(Routes::learn(&hello(2, vec![]), "h:1").is_none());
        assert!(Routes::learn(&hello(2, vec![0, 0]), "h:1").is_none());
        let r = Routes::learn(&hello(2, vec![0, 9]), "[::1]:1").unwrap();
        assert_eq!((r.addr(0), r.addr(1)), (None, Some("[::1]:9")));
        assert!(
            Routes::learn(&hello(2, vec![1, 2]), "no-port").is_some_and(|r| r.addr(0).is_none())
        );
    }
}
