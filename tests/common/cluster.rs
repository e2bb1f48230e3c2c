//! A throw-away Redis Cluster on loopback: 3 primaries and 3 replicas
//! (`redis-server --cluster-enabled yes` on free ports, `redis-cli --cluster create
//! ... --cluster-replicas 1 --cluster-yes`), each node in its own temp dir, killed on
//! drop; one cluster at a time per test process. Slots are moved with `CLUSTER SETSLOT` and `MIGRATE`, as `redis-cli --cluster
//! reshard` does.

use super::expect::{eventually, show};
use super::redis::{free_port, Redis};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct RedisCluster {
    pub nodes: Vec<Redis>,
    /// One cluster at a time in this process (six servers, a load that would make the
    /// other tests, run in parallel, flaky); dropped after the nodes (field order).
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A node as `CLUSTER NODES` lists it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    /// A replica's primary (`-` for a primary).
    pub primary_id: String,
    /// Slot ranges served (primaries).
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts 6 nodes and joins them; panics (clearly) if redis-server or redis-cli is
    /// missing or the cluster does not come up within 30 s.
    pub fn start() -> RedisCluster {
        Self::start_with(&[])
    }

    /// A cluster whose nodes announce the host name `localhost` instead of an IP
    /// (`cluster-announce-hostname`, `cluster-preferred-endpoint-type hostname`, Redis
    /// 7): `CLUSTER SLOTS`, `MOVED` and `ASK` name `localhost:port`.
    pub fn start_named() -> RedisCluster {
        Self::start_with(&[
            "--cluster-announce-hostname",
            "localhost",
            "--cluster-preferred-endpoint-type",
            "hostname",
        ])
    }

    /// Starts 6 nodes with `extra` arguments each, and joins them.
    pub fn start_with(extra: &[&str]) -> RedisCluster {
        // A test that failed holding it poisons it: the next one may go on.
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let nodes: Vec<Redis> = (0..6)
            .map(|_| {
                let bus = free_port().to_string();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus,
                    "--repl-diskless-sync-delay",
                    "0",
                ];
                args.extend_from_slice(extra);
                Redis::start_with(&args)
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null());
        let out = match create.output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-cli not found: the cluster tests need redis-cli (redis-tools)")
            }
            Err(e) => panic!("cannot run redis-cli: {e}"),
        };
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = RedisCluster {
            nodes,
            _one_at_a_time: guard,
        };
        let ok = eventually(Duration::from_secs(30), || {
            c.nodes.iter().all(|n| {
                let info = n.try_cmd(&["CLUSTER", "INFO"]).unwrap_or_default();
                let s = String::from_utf8_lossy(&info);
                s.contains("cluster_state:ok") && s.contains("cluster_known_nodes:6")
            }) && c.node_infos().iter().filter(|n| n.primary).count() == 3
                // Every replica synchronized (a replica that never was cannot take over).
                && c.node_infos().iter().filter(|n| n.primary).all(|p| {
                    let info = c.node(p.port).try_cmd(&["INFO", "replication"]).unwrap_or_default();
                    String::from_utf8_lossy(&info).contains("state=online")
                })
        });
        assert!(ok, "the cluster did not come up: {:?}", c.node_infos());
        c
    }

    /// `"127.0.0.1:port"` of every node, for the gateway's `redis_cluster.nodes`.
    pub fn seeds(&self, how_many: usize) -> String {
        self.seeds_at("127.0.0.1", how_many)
    }

    /// `"host:port"` of the first `how_many` nodes.
    pub fn seeds_at(&self, host: &str, how_many: usize) -> String {
        let list: Vec<String> = self.nodes[..how_many]
            .iter()
            .map(|n| format!("\"{host}:{}\"", n.port))
            .collect();
        list.join(",")
    }

    pub fn node(&self, port: u16) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
    }

    pub fn node_mut(&mut self, port: u16) -> &mut Redis {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// `CLUSTER NODES`, as seen by the first node that answers.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        for n in &self.nodes {
            let Ok(r) = n.try_cmd(&["CLUSTER", "NODES"]) else {
                continue;
            };
            let text = String::from_utf8_lossy(&r).into_owned();
            // A bulk string: skip its length line.
            let body = text.split_once("\r\n").map_or("", |(_, b)| b);
            return body
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    if f.len() < 8 || f[2].contains("fail") {
                        return None;
                    }
                    let port = f[1].split(['@', ':']).nth(1)?.parse().ok()?;
                    let slots = f[8..]
                        .iter()
                        .filter(|s| !s.starts_with('['))
                        .filter_map(|s| {
                            let (a, b) = s.split_once('-').unwrap_or((s, s));
                            Some((a.parse().ok()?, b.parse().ok()?))
                        })
                        .collect();
                    Some(NodeInfo {
                        id: f[0].to_string(),
                        port,
                        primary: f[2].contains("master"),
                        primary_id: f[3].to_string(),
                        slots,
                    })
                })
                .collect();
        }
        Vec::new()
    }

    /// The primary serving `slot`.
    pub fn owner(&self, slot: u16) -> NodeInfo {
        self.node_infos()
            .into_iter()
            .find(|n| n.primary && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .unwrap_or_else(|| panic!("no owner for slot {slot}"))
    }

    /// A primary other than the node at `port`.
    pub fn other_primary(&self, port: u16) -> NodeInfo {
        self.node_infos()
            .into_iter()
            .find(|n| n.primary && n.port != port)
            .expect("another primary")
    }

    /// The hash slot of `key`, as Redis computes it.
    pub fn slot(&self, key: &str) -> u16 {
        let r = self.nodes[0].cmd(&["CLUSTER", "KEYSLOT", key]);
        let s = String::from_utf8_lossy(&r);
        s.trim_start_matches(':').trim().parse().unwrap()
    }

    /// Moves `slot` to the primary `to` as `redis-cli --cluster reshard` does: IMPORTING
    /// on the target, MIGRATING on the source, every key MIGRATEd in batches (with
    /// `pause` between batches, so that clients meet the ASK window), then the slot
    /// assigned to the target everywhere.
    pub fn move_slot(&self, slot: u16, to: &NodeInfo, pause: Duration) {
        let from = self.owner(slot);
        if from.id == to.id {
            return;
        }
        let s = slot.to_string();
        let src = self.node(from.port);
        let dst = self.node(to.port);
        expect_ok(dst.cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from.id]));
        expect_ok(src.cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to.id]));
        let port = to.port.to_string();
        loop {
            let keys = src.cmd(&["CLUSTER", "GETKEYSINSLOT", &s, "10"]);
            let keys = bulk_list(&keys);
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            let r = src.cmd(&args);
            assert!(
                r.starts_with(b"+OK") || r.starts_with(b"+NOKEY"),
                "MIGRATE: {}",
                show(&r)
            );
            std::thread::sleep(pause);
        }
        expect_ok(dst.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to.id]));
        expect_ok(src.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to.id]));
        for n in &self.nodes {
            if n.port != from.port && n.port != to.port {
                let _ = n.try_cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to.id]);
            }
        }
    }
}

fn expect_ok(r: Vec<u8>) {
    assert!(r.starts_with(b"+OK"), "expected +OK, got {}", show(&r));
}

/// The strings of a RESP array of bulk strings.
fn bulk_list(r: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(r);
    let mut lines = text.split("\r\n");
    let n: usize = lines
        .next()
        .and_then(|l| l.strip_prefix('*'))
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let _len = lines.next();
        out.extend(lines.next().map(str::to_string));
    }
    out
}
