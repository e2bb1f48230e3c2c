//! A throw-away Sentinel setup on loopback: a master, one replica and three sentinels
//! (`redis-server <conf> --sentinel`, quorum 2, down after 1 s), killed on drop.

use super::expect::eventually;
use super::redis::{free_port, kill, spawn, Redis, TempDir};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Sentinels {
    pub master: Redis,
    pub replica: Redis,
    /// The sentinels' plain ports (the harness talks there).
    pub ports: Vec<u16>,
    /// Their TLS ports (`start_tls`), for the gateway.
    pub tls_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    _dirs: Vec<TempDir>,
}

pub const MASTER_NAME: &str = "mymaster";

impl Sentinels {
    pub fn start() -> Sentinels {
        Self::start_with(None)
    }

    /// Everything over TLS: the master and the replica serve TLS only (replication over
    /// TLS), the sentinels have a `tls-port` besides their plain one and reach the
    /// master and each other over TLS. `tls_args`: the `--tls-*` arguments (certificate
    /// files) as redis-server takes them.
    pub fn start_tls(tls_args: &[&str]) -> Sentinels {
        Self::start_with(Some(tls_args))
    }

    fn start_with(tls: Option<&[&str]>) -> Sentinels {
        let (master, replica) = match tls {
            None => {
                let master = Redis::start_with(&["--repl-diskless-sync-delay", "0"]);
                let replica = Redis::start_with(&[
                    "--replicaof",
                    "127.0.0.1",
                    &master.port.to_string(),
                    "--repl-diskless-sync-delay",
                    "0",
                ]);
                (master, replica)
            }
            Some(t) => {
                let mut args = t.to_vec();
                args.extend([
                    "--tls-replication",
                    "yes",
                    "--repl-diskless-sync-delay",
                    "0",
                ]);
                let master = Redis::start_tls(&args);
                let port = master.port.to_string();
                args.extend(["--replicaof", "127.0.0.1", &port]);
                let replica = Redis::start_tls(&args);
                (master, replica)
            }
        };
        assert!(
            eventually(Duration::from_secs(10), || {
                let info = master.cmd(&["INFO", "replication"]);
                String::from_utf8_lossy(&info).contains("state=online")
            }),
            "the replica is in sync"
        );
        let mut s = Sentinels {
            master,
            replica,
            ports: Vec::new(),
            tls_ports: Vec::new(),
            children: Vec::new(),
            _dirs: Vec::new(),
        };
        for _ in 0..3 {
            let dir = TempDir::new("sentinel");
            let port = free_port();
            let conf = dir.join("sentinel.conf");
            // `tls-* file` lines from the `--tls-*` arguments, and a TLS port.
            let tls_conf = match tls {
                None => String::new(),
                Some(t) => {
                    let tport = free_port();
                    s.tls_ports.push(tport);
                    let lines: String = t
                        .chunks(2)
                        .map(|kv| format!("{} {}\n", kv[0].trim_start_matches('-'), kv[1]))
                        .collect();
                    format!("tls-port {tport}\ntls-replication yes\n{lines}")
                }
            };
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n{tls_conf}\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir.path.display(),
                    dir.join("sentinel.log").display(),
                    s.master.port
                ),
            )
            .unwrap();
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = spawn(&mut cmd).expect("redis-server --sentinel");
            s.children.push(Some(child));
            s.ports.push(port);
            s._dirs.push(dir);
        }
        // Every sentinel knows the master, the replica and the other sentinels.
        let ok = eventually(Duration::from_secs(20), || {
            s.ports.iter().all(|&p| {
                let r = super::redis::raw_cmd(p, &["SENTINEL", "MASTER", MASTER_NAME]);
                let t = String::from_utf8_lossy(&r);
                t.contains("num-slaves\r\n$1\r\n1") && t.contains("num-other-sentinels\r\n$1\r\n2")
            })
        });
        assert!(ok, "the sentinels did not see each other within 20 s");
        s
    }

    /// `"127.0.0.1:port"` of each sentinel.
    pub fn nodes(&self) -> String {
        Self::list(&self.ports)
    }

    /// `"127.0.0.1:tls-port"` of each sentinel.
    pub fn tls_nodes(&self) -> String {
        Self::list(&self.tls_ports)
    }

    fn list(ports: &[u16]) -> String {
        let list: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        list.join(",")
    }

    /// The master's port as the first sentinel sees it.
    pub fn master_port(&self) -> Option<u16> {
        let r = super::redis::raw_cmd(
            self.ports[0],
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        let t = String::from_utf8_lossy(&r).into_owned();
        t.split("\r\n").nth(4).and_then(|p| p.parse().ok())
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for c in &mut self.children {
            kill(c);
        }
    }
}
