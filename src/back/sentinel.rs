//! Redis Sentinel: where the master is. At start-up [`ask_master`] asks the sentinels in
//! turn (`SENTINEL GET-MASTER-ADDR-BY-NAME`) and checks the answer with `ROLE` on the
//! node itself (a sentinel that has not seen a failover yet may name a demoted master).
//! Then [`watch`] runs on a thread of its own with blocking I/O: subscribed to
//! `+switch-master` on one sentinel (the next one when it fails), and asking for the
//! master every 2 s besides (a message lost while reconnecting is not missed for long).
//! A new master, checked with `ROLE`, is handed to the workers (`Control::Master`),
//! which close their connections to the old one (their requests get 503: never a write
//! to a demoted replica) and connect to the new one.

use super::probe::{self, Conn};
use super::{Connector, Target};
use crate::cluster::config::SentinelConfig;
use crate::config::RedisAuth;
use crate::endpoint::Endpoint;
use crate::log;
use crate::log::Level;
use crate::proto::resp::{FrameScanner, Item, Reader};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A connector to sentinel `i` of the config: their own password, RESP2, and Redis's
/// TLS (`redis.tls`, the top-level `ssl` block: same CA, client certificate and name
/// checked) unless `redis_sentinel.ssl` is false. A sentinel known by name is looked up
/// at each connect (this thread may block).
fn sentinel(cfg: &SentinelConfig, i: usize, redis: &Connector) -> Connector {
    let (host, port) = &cfg.nodes[i % cfg.nodes.len()];
    Connector {
        target: match Endpoint::parse(host.as_bytes(), *port) {
            Some(e) => Target::from(e),
            None => Target::Name(host.as_str().into(), *port),
        },
        auth: cfg.auth.clone().map(RedisAuth::Password),
        keep_alive: None,
        protocol: 2,
        tls: match cfg.ssl {
            Some(false) => None,
            _ => redis.tls.clone(),
        },
    }
}

/// The master's address in a `GET-MASTER-ADDR-BY-NAME` reply (`[ip, port]`; the "ip"
/// is a host name with `resolve-hostnames yes` and `announce-hostnames yes`).
pub fn parse_master_addr(reply: &[u8]) -> Result<Endpoint, String> {
    let mut r = Reader::new(reply);
    match r.next() {
        Some(Item::Array(2)) => {}
        Some(Item::Nil | Item::Array(_)) => {
            return Err("the sentinel does not know this master".into())
        }
        Some(Item::Error(m)) => return Err(String::from_utf8_lossy(m).into_owned()),
        _ => return Err("unexpected reply".into()),
    }
    let (Some(Item::Bulk(ip)), Some(Item::Bulk(port))) = (r.next(), r.next()) else {
        return Err("unexpected reply".into());
    };
    let port: u16 = std::str::from_utf8(port)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&p| p > 0)
        .ok_or("the master's port is not a port")?;
    Endpoint::parse(ip, port).ok_or_else(|| "the master's address is not a host".into())
}

/// Whether a `ROLE` reply says master.
pub fn is_master_role(reply: &[u8]) -> bool {
    let mut r = Reader::new(reply);
    matches!(r.next(), Some(Item::Array(n)) if n >= 1)
        && matches!(r.next(), Some(Item::Bulk(b"master")))
}

/// Asks sentinel `i` for the master.
fn ask_one(cfg: &SentinelConfig, i: usize, redis: &Connector) -> Result<Endpoint, String> {
    let c = sentinel(cfg, i, redis);
    let reply = probe::run(
        &c,
        &[
            b"SENTINEL",
            b"GET-MASTER-ADDR-BY-NAME",
            cfg.master.as_bytes(),
        ],
    )
    .map_err(|e| e.to_string())?;
    parse_master_addr(&reply)
}

/// Whether the node at `addr` says it is a master (`redis` gives the credentials and TLS).
pub fn check_role(redis: &Connector, addr: &Endpoint) -> Result<(), String> {
    let c = Connector {
        target: Target::from(addr.clone()),
        ..redis.clone()
    };
    let reply = probe::run(&c, &[b"ROLE"]).map_err(|e| e.to_string())?;
    if is_master_role(&reply) {
        Ok(())
    } else {
        Err(format!("{addr} is not a master (ROLE)"))
    }
}

/// The master, from the first sentinel that knows it, checked with `ROLE`.
pub fn ask_master(cfg: &SentinelConfig, redis: &Connector) -> Result<Endpoint, String> {
    let mut errors = Vec::new();
    for i in 0..cfg.nodes.len() {
        let (host, port) = &cfg.nodes[i];
        match ask_one(cfg, i, redis).and_then(|a| check_role(redis, &a).map(|()| a)) {
            Ok(a) => return Ok(a),
            Err(e) => errors.push(format!("{host}:{port}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Watches for failovers until `stop`; calls `switch` with each new master.
pub fn watch(
    cfg: SentinelConfig,
    redis: Connector,
    mut current: Endpoint,
    stop: Arc<AtomicBool>,
    switch: impl Fn(Endpoint),
) {
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let i = turn % cfg.nodes.len();
        turn += 1;
        let sub = subscribe(&cfg, i, &redis);
        let mut conn = match sub {
            Ok(c) => Some(c),
            Err(e) => {
                log!(
                    Level::Warning,
                    "sentinel {}:{}: {e}",
                    cfg.nodes[i].0,
                    cfg.nodes[i].1
                );
                None
            }
        };
        let mut buf = Vec::new();
        let mut scanner = FrameScanner::new();
        // On this sentinel until it fails: messages, and a look every read timeout.
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let mut candidate = None;
            let alive = match conn.as_mut() {
                Some(c) => match read_message(&mut **c, &mut buf, &mut scanner) {
                    Ok(Some(payload)) => {
                        candidate = switch_master(&payload, &cfg.master);
                        true
                    }
                    Ok(None) => true,
                    Err(_) => false,
                },
                None => {
                    std::thread::sleep(Duration::from_millis(500));
                    false
                }
            };
            if candidate.is_none() {
                candidate = ask_one(&cfg, i, &redis).ok();
            }
            if let Some(a) = candidate.filter(|a| *a != current) {
                match check_role(&redis, &a) {
                    Ok(()) => {
                        log!(
                            Level::Notice,
                            "sentinel: the master of {} is now {a} (was {current})",
                            cfg.master
                        );
                        current = a.clone();
                        switch(a);
                    }
                    Err(e) => log!(
                        Level::Info,
                        "sentinel: candidate master {a}: {e}; asking again"
                    ),
                }
            }
            if !alive {
                break;
            }
        }
    }
}

/// A connection to sentinel `i` subscribed to `+switch-master`.
fn subscribe(cfg: &SentinelConfig, i: usize, redis: &Connector) -> Result<Box<dyn Conn>, String> {
    let c = sentinel(cfg, i, redis);
    let mut conn = probe::connect(&c).map_err(|e| e.to_string())?;
    if let Some(p) = &cfg.auth {
        let r = probe::call(&mut *conn, &[b"AUTH", p.as_bytes()]).map_err(|e| e.to_string())?;
        if r.first() == Some(&b'-') {
            return Err(String::from_utf8_lossy(&r).trim_end().to_string());
        }
    }
    let r =
        probe::call(&mut *conn, &[b"SUBSCRIBE", b"+switch-master"]).map_err(|e| e.to_string())?;
    if r.first() != Some(&b'*') {
        return Err(String::from_utf8_lossy(&r).trim_end().to_string());
    }
    Ok(conn)
}

/// Reads one pub/sub message's payload; `Ok(None)` when the read timed out first.
fn read_message(
    conn: &mut dyn Conn,
    buf: &mut Vec<u8>,
    scanner: &mut FrameScanner,
) -> io::Result<Option<Vec<u8>>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(n) = scanner
            .scan(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?
        {
            let frame: Vec<u8> = buf.drain(..n).collect();
            scanner.reset();
            let mut r = Reader::new(&frame);
            if let (Some(Item::Array(3)), Some(Item::Bulk(b"message")), Some(Item::Bulk(_))) =
                (r.next(), r.next(), r.next())
            {
                if let Some(Item::Bulk(p)) = r.next() {
                    return Ok(Some(p.to_vec()));
                }
            }
            continue;
        }
        if buf.len() > 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too large",
            ));
        }
        match conn.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The new master in a `+switch-master` payload (`name old-ip old-port new-ip
/// new-port`) for master `name`.
pub fn switch_master(payload: &[u8], name: &str) -> Option<Endpoint> {
    let text = std::str::from_utf8(payload).ok()?;
    let f: Vec<&str> = text.split(' ').collect();
    if f.len() != 5 || f[0] != name {
        return None;
    }
    Endpoint::parse(f[3].as_bytes(), f[4].parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(
            parse_master_addr(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n"),
            Ok(Endpoint::Ip("127.0.0.1:6380".parse().unwrap()))
        );
        assert_eq!(
            parse_master_addr(b"*-1\r\n"),
            Err("the sentinel does not know this master".into())
        );
        assert_eq!(
            parse_master_addr(b"*2\r\n$9\r\nlocalhost\r\n$4\r\n6380\r\n"),
            Ok(Endpoint::parse(b"localhost", 6380).unwrap())
        );
        assert_eq!(
            parse_master_addr(b"*2\r\n$3\r\na b\r\n$4\r\n6380\r\n"),
            Err("the master's address is not a host".into())
        );
        assert_eq!(
            parse_master_addr(b"*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n"),
            Err("the master's port is not a port".into())
        );
        assert_eq!(parse_master_addr(b"-ERR no\r\n"), Err("ERR no".into()));
        assert!(is_master_role(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"));
        assert!(!is_master_role(
            b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n"
        ));
        assert!(!is_master_role(b"-NOAUTH\r\n"));
        assert_eq!(
            switch_master(b"mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            Some(Endpoint::Ip("127.0.0.1:6380".parse().unwrap()))
        );
        assert_eq!(
            switch_master(b"other 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            None
        );
        assert_eq!(switch_master(b"mymaster 127.0.0.1 6379", "mymaster"), None);
    }
}
