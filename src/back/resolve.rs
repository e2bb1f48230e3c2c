//! Redis's host names, resolved at each connect and never on a worker's thread.
//!
//! A `redis_host` that is a name (not an IP literal, not a unix socket path), a cluster
//! node known by name (a seed in `redis_cluster.nodes`, a `CLUSTER SLOTS` entry or a
//! `MOVED`/`ASK` with `cluster-preferred-endpoint-type hostname`) or a master a sentinel
//! names by host name is looked up again for every connect attempt, so a name that moves
//! (a Kubernetes service, a managed Redis failing over) is followed on the next
//! reconnect. `getaddrinfo` blocks, for as long as the resolver's timeouts allow (5 s
//! per try by default), so it never runs on a worker: one `resolver` thread per process
//! does the lookups. A worker that needs an address sends its id and the name down a
//! channel and goes on serving; the thread answers on that worker's own channel and
//! wakes its `poll` through its `mio::Waker`. The worker's connect timeout runs from
//! the moment it asked, so a lookup that hangs is a failed connect like any other
//! (logged once per series, retried with the backoff). Lookups are coalesced: the asks
//! that queued up while the thread was busy are answered by one fresh lookup per name,
//! and a worker asks once per name for all its connections waiting for it.

use crate::key::BackKey;
use crate::log;
use crate::log::Level;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

/// What one lookup gave: the address to connect to, or why there is none.
pub type Answer = Result<SocketAddr, Arc<str>>;

/// A name to look up, and the port to connect to.
pub type Name = (Arc<str>, u16);

/// Most names whose last address the thread remembers (for its log lines).
const MAX_REMEMBERED: usize = 4096;

/// Every address `host` has, in `getaddrinfo`'s order (blocking).
pub fn lookup_all(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::other("no address found"));
    }
    Ok(addrs)
}

/// The address a connect goes to: the first `getaddrinfo` gives (its order is RFC
/// 6724's, which `/etc/gai.conf` tunes), as hiredis does (blocking).
pub fn lookup(host: &str, port: u16) -> io::Result<SocketAddr> {
    lookup_all(host, port).map(|a| a[0])
}

/// The error a connect attempt meets when the name does not resolve. Its kind is the
/// same for every lookup failure, so a series of them is logged once.
pub fn failure(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::HostUnreachable, msg)
}

/// A worker's side of the resolver: the connections waiting for an address, and the
/// names a lookup was asked for.
pub struct Resolving {
    id: usize,
    ask: Sender<(usize, Name)>,
    answers: Receiver<(Name, Answer)>,
    /// Connections waiting for each name's next answer (a key may be listed twice, or
    /// name a connection that gave up meanwhile: the worker checks each one).
    pending: HashMap<Name, Vec<BackKey>>,
}

impl Resolving {
    /// Lists `b` for `name`'s next answer, asking for a lookup unless one is on its
    /// way. `false`: the resolver thread is gone (it never ends while workers run).
    pub fn ask(&mut self, name: &Name, b: BackKey) -> bool {
        match self.pending.get_mut(name) {
            Some(waiting) => waiting.push(b),
            None => {
                if self.ask.send((self.id, name.clone())).is_err() {
                    return false;
                }
                self.pending.insert(name.clone(), vec![b]);
            }
        }
        true
    }

    /// An answer that arrived, with the connections that were waiting for it.
    pub fn answer(&mut self) -> Option<(Answer, Vec<BackKey>)> {
        let (name, a) = self.answers.try_recv().ok()?;
        Some((a, self.pending.remove(&name).unwrap_or_default()))
    }
}

/// Starts the resolver thread; one [`Resolving`] per worker, woken through its waker
/// when an answer is there.
pub fn start(wakers: Vec<Arc<mio::Waker>>) -> io::Result<Vec<Resolving>> {
    let (ask_tx, ask_rx) = mpsc::channel();
    let mut workers = Vec::with_capacity(wakers.len());
    let mut answer_txs = Vec::with_capacity(wakers.len());
    for id in 0..wakers.len() {
        let (tx, rx) = mpsc::channel();
        answer_txs.push(tx);
        workers.push(Resolving {
            id,
            ask: ask_tx.clone(),
            answers: rx,
            pending: HashMap::new(),
        });
    }
    std::thread::Builder::new()
        .name("resolver".into())
        .spawn(move || serve(&ask_rx, &answer_txs, &wakers))?;
    Ok(workers)
}

/// The thread: one lookup per name for every batch of asks, answered to each worker
/// that asked. Ends when every worker is gone.
fn serve(
    asks: &Receiver<(usize, Name)>,
    answers: &[Sender<(Name, Answer)>],
    wakers: &[Arc<mio::Waker>],
) {
    let mut last: HashMap<Name, SocketAddr> = HashMap::new();
    while let Ok(first) = asks.recv() {
        // name → the workers that asked for it.
        let mut batch: HashMap<Name, Vec<usize>> = HashMap::new();
        for (id, name) in std::iter::once(first).chain(std::iter::from_fn(|| asks.try_recv().ok()))
        {
            let ids = batch.entry(name).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for (name, ids) in batch {
            let (host, port) = (&*name.0, name.1);
            let answer: Answer = match lookup(host, port) {
                Ok(addr) => {
                    match last.get(&name) {
                        Some(&prev) if prev != addr => log!(
                            Level::Notice,
                            "Redis host {host}:{port} now resolves to {addr} (was {prev})"
                        ),
                        None => log!(Level::Info, "Redis host {host}:{port} resolves to {addr}"),
                        _ => {}
                    }
                    if last.len() >= MAX_REMEMBERED {
                        last.clear();
                    }
                    last.insert(name.clone(), addr);
                    Ok(addr)
                }
                Err(e) => Err(format!("cannot resolve {host}: {e}").into()),
            };
            for id in ids {
                let sent = answers
                    .get(id)
                    .is_some_and(|tx| tx.send((name.clone(), answer.clone())).is_ok());
                if sent {
                    let _ = wakers[id].wake();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn literal_and_name() {
        assert_eq!(
            lookup("127.0.0.2", 6379).unwrap(),
            "127.0.0.2:6379".parse().unwrap()
        );
        // localhost comes from /etc/hosts, never from a DNS server.
        assert!(lookup_all("localhost", 1)
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 1));
    }

    #[test]
    fn workers_get_answers_and_a_wake_up() {
        let mut polls: Vec<mio::Poll> = (0..2).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers: Vec<Arc<mio::Waker>> = polls
            .iter()
            .map(|p| Arc::new(mio::Waker::new(p.registry(), mio::Token(7)).unwrap()))
            .collect();
        let mut ws = start(wakers).unwrap();
        // Worker 1 asks for two connections: one lookup, one answer for both.
        let name: Name = ("127.0.0.3".into(), 6380);
        assert!(ws[1].ask(&name, BackKey(4)));
        assert!(ws[1].ask(&name, BackKey(9)));
        let mut events = mio::Events::with_capacity(4);
        polls[1]
            .poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            events.iter().map(|e| e.token()).collect::<Vec<_>>(),
            [mio::Token(7)]
        );
        let want: SocketAddr = "127.0.0.3:6380".parse().unwrap();
        assert_eq!(
            ws[1].answer(),
            Some((Ok(want), vec![BackKey(4), BackKey(9)]))
        );
        assert_eq!(ws[1].answer(), None);
        // Worker 0 never asked: nothing for it.
        polls[0]
            .poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        assert!(events.is_empty());
        assert_eq!(ws[0].answer(), None);
    }
}
