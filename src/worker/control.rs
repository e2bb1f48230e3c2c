//! What other threads ask of a worker, through its channel and its `mio::Waker`: a
//! snapshot of its counters and gauges (a scrape of `/metrics` or `/health/*`), or a new
//! configuration (a reload). Nothing here runs unless asked: the request path never
//! publishes anything. The messages are read when the waker's event comes up in a turn,
//! between two events, so every request is planned wholly under one configuration.

use super::{Shared, Worker};
use crate::access;
use crate::api::plan::Scratch;
use crate::back::{Handshake, Kind, State, Waiter, MIN_BACKOFF};
use crate::key::BackKey;
use crate::metrics::{Gauges, Snapshot};
use crate::proto::response::Status;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A message to a worker.
pub enum Control {
    /// Send back a snapshot of the counters and gauges.
    Scrape(Sender<Snapshot>),
    /// Put this configuration in force; the worker's id goes back once it is.
    Reload(Arc<Shared>, Sender<usize>),
    /// Sentinel mode: Redis's master is now at this address.
    Master(crate::endpoint::Endpoint),
}

/// The server's end of a worker's channel: the sender and the worker's waker.
pub struct Link {
    tx: Sender<Control>,
    waker: std::sync::Arc<mio::Waker>,
}

impl Link {
    pub fn new(tx: Sender<Control>, waker: std::sync::Arc<mio::Waker>) -> Link {
        Link { tx, waker }
    }

    /// Sends `c` and wakes the worker; `false` when the worker is gone.
    pub fn send(&self, c: Control) -> bool {
        self.tx.send(c).is_ok() && self.waker.wake().is_ok()
    }

    /// Wakes the worker (to see the `stop` flag).
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }
}

/// The worker's end of its channel.
pub type Inbox = Receiver<Control>;

/// The index of a connection kind in the metrics' `BACK_KINDS`.
pub fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Shared => 0,
        Kind::Db => 1,
        Kind::Blocking => 2,
        Kind::Subscriber => 3,
        Kind::Tracking => 4,
    }
}

impl Worker {
    /// Handles every message waiting (the waker's event).
    pub(super) fn control(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                Control::Scrape(tx) => {
                    let _ = tx.send(self.snapshot());
                }
                Control::Reload(shared, ack) => {
                    self.reload(shared);
                    let _ = ack.send(self.id);
                }
                Control::Master(addr) => self.sentinel_switch(addr),
            }
        }
    }

    /// [`Back::on_handshake_reply`](crate::back::Back::on_handshake_reply), counting the
    /// connections that come up, and those that come up again after a failure (their
    /// backoff grew).
    pub(super) fn on_handshake_reply(&mut self, b: BackKey, w: &Waiter, n: usize) -> Handshake {
        let back = &mut self.backs[b];
        let again = back.backoff > MIN_BACKOFF;
        let verdict = back.on_handshake_reply(w, n);
        if verdict == Handshake::Up {
            let kind = kind_index(back.kind);
            self.stats.back_up[kind] += 1;
            self.stats.back_reconnects[kind] += u64::from(again);
        }
        verdict
    }

    /// The counters, and the gauges counted now from the slabs.
    fn snapshot(&self) -> Snapshot {
        let mut g = Gauges::default();
        for (_, f) in self.fronts.iter() {
            g.clients += 1;
            let Some(busy) = f.busy.as_deref() else {
                continue;
            };
            g.websockets += u64::from(busy.ws.is_some());
            if let Some(sub) = busy.sub.as_deref() {
                g.subscribers += 1;
                g.subscriptions += sub.len() as u64;
            }
        }
        g.topics = self.pubsub.counts().map(|n| n as u64);
        for back in self.backs.iter() {
            let state = match back.state {
                State::Ready => 0,
                State::Connecting { .. } | State::Handshake => 1,
                State::Down { .. } => 2,
            };
            g.backs[kind_index(back.kind)][state] += 1;
            if let Some(node) = &back.node {
                g.node_backs.entry(node.clone()).or_default()[state] += 1;
            }
        }
        if let Some(c) = self.cache.as_deref() {
            (g.cache_entries, g.cache_bytes) = c.size();
        }
        let mut counters = self.stats.clone();
        if let Some(c) = self.backs.cluster_ref() {
            counters.cluster_redirects = [c.moved, c.asked, c.retried];
            counters.cluster_maps = c.maps;
            g.cluster_map_age_ms = c.map_at.map_or(0, |t| t.elapsed().as_millis() as u64);
            g.cluster_nodes = c.node_count() as u64;
        }
        Snapshot {
            worker: self.id,
            counters,
            gauges: g,
        }
    }

    /// Puts a new configuration in force. What cannot change live (ports, threads, the
    /// Redis address...) the server already set back to the running values; connections,
    /// their requests in flight and subscriptions are untouched. A different access log
    /// file gets the lines waiting for the old one first.
    fn reload(&mut self, new: Arc<Shared>) {
        let old = std::mem::replace(&mut self.shared, new);
        let same_file = match (&old.access_log, &self.shared.access_log) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same_file {
            if let (Some(sink), Some(file)) = (&mut self.access, &old.access_log) {
                sink.flush(file);
            }
            self.access = self.shared.access_log.as_ref().map(|_| {
                let mut sink = access::Sink::default();
                sink.date.refresh(SystemTime::now());
                sink
            });
        }
        self.limits = super::limits::Limits::of(&self.shared.config);
        self.deadlines = super::Deadlines::of(&self.shared.config);
        // The rules' regex caches belong to the rules they were made for.
        self.scratch = Scratch::new(self.shared.config.plan_settings());
        // SSE pings turned on: the next ping finds the streams (and stops if none).
        let every = self.shared.config.sse_ping_sec;
        if self.next_ping.is_none() && every > 0 {
            self.next_ping = Some(Instant::now() + Duration::from_secs(every));
        }
        self.cache_reload();
    }
}

/// Notes on request `seq` of front `f` that the gateway answers it with the error
/// `status`: a WebSocket frame has no status line for the metrics to read it from.
pub(super) fn note_status(f: &mut crate::front::Front, seq: u64, status: Status) {
    let Some(busy) = f.busy.as_deref_mut() else {
        return;
    };
    let slot = seq
        .checked_sub(busy.base_seq)
        .and_then(|i| busy.slots.get_mut(i as usize));
    if let Some(slot) = slot {
        slot.meta.status = crate::metrics::status_code(status.code());
    }
}
