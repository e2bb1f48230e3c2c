//! The worker's side of pub/sub: subscribe requests (HTTP streams and WebSockets), the
//! subscriber connection's pushes fanned out to fronts, slow consumers, SSE pings, and
//! what clients are told when the subscriber connection is lost.

use super::limits::Slow;
use super::{mark_front, respond, Worker};
use crate::front::Closing;
use crate::key::{BackKey, FrontKey};
use crate::proto::response::{self, Status};
use crate::pubsub::{self, Confirmed, Joined, Push, Style, TopicKind, Transport};
use crate::pubsub::{PendingSub, SubRequest, Subscriber};
use crate::reply;
use smallvec::SmallVec;
use std::time::{Duration, Instant};

/// Most topics one client may be subscribed to.
pub(super) const MAX_TOPICS: usize = 10_000;

/// The bytes of the last message rendered in a fan-out, and for which style and key.
#[derive(Default)]
pub(super) struct Rendered {
    bytes: Vec<u8>,
    style: Option<Style>,
    name: SmallVec<[u8; 12]>,
}

impl Rendered {
    /// Gives back the buffer of a large message (the memory sweep).
    pub(super) fn shrink(&mut self, keep: usize) {
        if self.bytes.capacity() > keep {
            self.bytes = Vec::new();
            self.style = None;
        }
    }
}

impl Worker {
    /// Subscribes front `k` to the request's topics; `seq` is the request's slot.
    pub(super) fn start_subscription(&mut self, k: FrontKey, seq: u64, r: SubRequest) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let http = r.style.transport != Transport::Ws;
        let had = busy.sub.as_ref().map_or(0, |s| s.len());
        if had + r.topics.len() > MAX_TOPICS {
            // Memory per client is bounded: 400 (an error frame on a WebSocket), and an
            // HTTP stream's connection closes.
            if http {
                busy.close_after(seq);
            }
            let msg = b"Too many subscriptions for one client";
            super::control::note_status(f, seq, Status::BadRequest);
            let date = &self.date;
            return respond(f, k, seq, &mut self.dirty_fronts, |out, meta| {
                reply::error_with(out, meta, Status::BadRequest, msg, date)
            });
        }
        let back = self.backs.subscriber(Instant::now());
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let gen = f.gen;
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        if back.is_none() && http && !r.style.sse {
            // Redis is down: say so now rather than hang (SSE and WebSocket clients wait
            // for the reconnect instead: a browser's EventSource gives up on an error).
            busy.close_after(seq);
            super::control::note_status(f, seq, Status::Unavailable);
            let date = &self.date;
            return respond(f, k, seq, &mut self.dirty_fronts, |out, meta| {
                reply::error(out, meta, Status::Unavailable, date)
            });
        }
        let sse = r.style.sse;
        // Out of `busy` while `busy` answers slots; put back below.
        let mut sub = busy
            .sub
            .take()
            .unwrap_or_else(|| Box::new(Subscriber::new(r.style.clone())));
        sub.names[r.kind.index()] = r.name;
        let mut topics = Vec::with_capacity(r.topics.len());
        for t in r.topics {
            let count = sub.add(r.kind, &t);
            let joined = self.pubsub.join(r.kind, &t, (k, gen));
            // Cluster mode: a shard channel goes to its slot owner's connection.
            let back = match (joined, r.kind) {
                (Joined::Send, TopicKind::Shard) if self.backs.is_cluster() => {
                    self.backs.subscriber_for(r.kind, &t, Instant::now(), true)
                }
                _ => back,
            };
            match (joined, back) {
                (Joined::Send, Some(b)) => {
                    self.backs
                        .queue(b, |w| pubsub::write_subscription(w, r.kind, true, &t));
                }
                // Sent when the connection is back (see `Registry::resubscribe`).
                (Joined::Send, None) => self.pubsub.unsent(r.kind, &t),
                _ => {}
            }
            topics.push((t.into_boxed_slice(), count));
        }
        let seq = if sse && http {
            // The head and the retry hint go out now: the browser sees the stream open;
            // the confirmations follow like messages.
            let mut retry = Vec::new();
            retry.extend_from_slice(b"retry: ");
            retry.extend_from_slice(
                itoa::Buffer::new()
                    .format(self.shared.config.sse_retry_ms)
                    .as_bytes(),
            );
            retry.extend_from_slice(b"\n\n");
            let style = &sub.style;
            let date = &self.date;
            busy.complete(seq, |out, meta| {
                response::stream_head(out, meta.minor, b"text/event-stream", true, date);
                pubsub::frame_payload(out, style, &retry);
            });
            sub.live = true;
            if self.next_ping.is_none() && self.shared.config.sse_ping_sec > 0 {
                self.next_ping =
                    Some(Instant::now() + Duration::from_secs(self.shared.config.sse_ping_sec));
            }
            None
        } else {
            Some(seq)
        };
        sub.pending.push_back(PendingSub::new(seq, r.kind, topics));
        busy.sub = Some(sub);
        mark_front(f, k, &mut self.dirty_fronts);
        self.try_confirm(k);
    }

    /// Answers front `k`'s subscribe requests whose topics are all confirmed, in order.
    pub(super) fn try_confirm(&mut self, k: FrontKey) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let Some(mut sub) = busy.sub.take() else {
            return;
        };
        let mut answered = false;
        while let Some(p) = sub.pending.front_mut() {
            // Confirmed topics are counted once, not looked up on every confirmation
            // (a request for 10,000 topics would cost 10,000² look-ups).
            while p
                .topics
                .get(p.confirmed)
                .is_some_and(|(t, _)| self.pubsub.is_ready(p.kind, t))
            {
                p.confirmed += 1;
            }
            let p = &sub.pending[0];
            // A topic the client left since counts as confirmed.
            let ready = p.topics[p.confirmed..]
                .iter()
                .all(|(t, _)| self.pubsub.is_ready(p.kind, t) || !sub.has(p.kind, t));
            if !ready {
                break;
            }
            let Some(p) = sub.pending.pop_front() else {
                break;
            };
            let mut bytes = Vec::new();
            let mut frame = Vec::new();
            let word = p.kind.confirmation(true);
            for (t, count) in &p.topics {
                frame.clear();
                pubsub::write_confirmation(&mut frame, word, Some(t), *count);
                pubsub::render(&mut bytes, &sub.style, &sub.names[p.kind.index()], &frame);
            }
            answered = true;
            match p.seq {
                Some(seq) => {
                    let head = sub.style.transport != Transport::Ws;
                    sub.live |= head;
                    let date = &self.date;
                    busy.complete(seq, |out, meta| {
                        if head {
                            let ct = meta
                                .extra
                                .as_ref()
                                .and_then(|e| e.content_type.as_deref())
                                .unwrap_or(meta.content_type.as_bytes());
                            response::stream_head(out, meta.minor, ct, false, date);
                        }
                        out.extend_from_slice(&bytes);
                    });
                }
                None => busy.push(&bytes),
            }
        }
        if sub.pending.is_empty() {
            sub.lost = false;
        }
        busy.sub = Some(sub);
        if answered {
            mark_front(f, k, &mut self.dirty_fronts);
        }
    }

    /// A frame of `n` bytes from the subscriber connection `b`, at the start of its read
    /// buffer: a message to fan out or a confirmation. Consumes it.
    pub(super) fn on_push(&mut self, b: BackKey, n: usize) {
        if self.backs.is_cluster() && self.cluster_sub_frame(b, n) {
            return;
        }
        let back = &self.backs[b];
        let frame = &back.rbuf.bytes()[..n];
        let mut confirmed = None;
        let mut slow: SmallVec<[FrontKey; 4]> = SmallVec::new();
        match pubsub::classify(frame) {
            Push::Message { kind, topic } => {
                self.stats.messages += 1;
                let limit = self.shared.config.pubsub_client_buffer;
                let cache = &mut self.fanout;
                cache.style = None;
                for &(key, gen) in self.pubsub.subscribers(kind, topic) {
                    let Some(f) = self.fronts.get_mut(key).filter(|f| f.gen == gen) else {
                        continue;
                    };
                    let Some(busy) = f.busy.as_deref_mut() else {
                        continue;
                    };
                    let Some(sub) = busy.sub.as_deref() else {
                        continue;
                    };
                    let name = &sub.names[kind.index()];
                    if cache.style.as_ref() != Some(&sub.style) || cache.name != *name {
                        cache.bytes.clear();
                        pubsub::render(&mut cache.bytes, &sub.style, name, frame);
                        cache.style = Some(sub.style.clone());
                        cache.name = name.clone();
                    }
                    busy.push(&cache.bytes);
                    self.stats.deliveries += 1;
                    if busy.backlog() > limit {
                        slow.push(key);
                    }
                    mark_front(f, key, &mut self.dirty_fronts);
                }
            }
            Push::Subscribed { kind, topic } => confirmed = Some((kind, topic.to_vec())),
            Push::Other => {}
        }
        self.backs[b].rbuf.consume(n);
        for k in slow {
            // Over the limit within this turn: write what the socket takes now; only a
            // client that really does not read stays over it.
            let limit = self.shared.config.pubsub_client_buffer;
            if self.write_now(k) > limit {
                // Disconnected before its backlog grows without bound; the other
                // subscribers are not affected.
                self.drop_slow(k, Slow::Consumer);
            }
        }
        if let Some((kind, topic)) = confirmed {
            match self.pubsub.confirmed(kind, &topic) {
                Confirmed::Ready(subs) => {
                    for (key, gen) in subs {
                        if self.fronts.get(key).is_some_and(|f| f.gen == gen) {
                            self.try_confirm(key);
                        }
                    }
                }
                Confirmed::Unsubscribe => {
                    self.backs
                        .queue(b, |w| pubsub::write_subscription(w, kind, false, &topic));
                }
                Confirmed::Nothing => {}
            }
        }
    }

    /// Writes front `k`'s output as far as its socket takes it; returns what is left.
    fn write_now(&mut self, k: FrontKey) -> usize {
        let Some(f) = self.fronts.get_mut(k) else {
            return 0;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return 0;
        };
        if f.writable && !busy.out.is_empty() {
            let before = busy.out.pending();
            let written = busy.out.write_to(&mut f.sock, None);
            self.stats.bytes_out += (before - busy.out.pending()) as u64;
            match written {
                Ok(true) => {}
                Ok(false) => f.writable = false,
                // The end-of-turn write sees the error again and closes.
                Err(_) => {}
            }
        }
        busy.backlog()
    }

    /// Removes a closing front from its topics, unsubscribing those it was last on.
    pub(super) fn leave_all(&mut self, who: pubsub::Sub, sub: &Subscriber) {
        let now = Instant::now();
        for (kind, t) in sub.iter() {
            if self.pubsub.leave(kind, t, who) {
                if let Some(b) = self.backs.subscriber_for(kind, t, now, false) {
                    self.backs
                        .queue(b, |w| pubsub::write_subscription(w, kind, false, t));
                }
            }
        }
    }

    /// Unsubscribes front `k` from some (or, `topics` empty, all) of its topics of one
    /// kind; returns the confirmations to send (WebSocket `UNSUBSCRIBE`).
    pub(super) fn unsubscribe(
        &mut self,
        k: FrontKey,
        kind: TopicKind,
        topics: &[Vec<u8>],
        name: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let now = Instant::now();
        let Some(f) = self.fronts.get_mut(k) else {
            return out;
        };
        let gen = f.gen;
        let Some(sub) = f.busy.as_deref_mut().and_then(|b| b.sub.as_deref_mut()) else {
            return out;
        };
        let list: Vec<Box<[u8]>> = if topics.is_empty() {
            sub.in_order(&[kind])
                .into_iter()
                .map(|(_, t)| t.into())
                .collect()
        } else {
            topics.iter().map(|t| t.as_slice().into()).collect()
        };
        let word = kind.confirmation(false);
        let mut frame = Vec::new();
        if list.is_empty() {
            pubsub::write_confirmation(&mut frame, word, None, sub.count(kind));
            pubsub::render(&mut out, &sub.style, name, &frame);
        }
        for t in &list {
            if sub.remove(kind, t) && self.pubsub.leave(kind, t, (k, gen)) {
                if let Some(b) = self.backs.subscriber_for(kind, t, now, false) {
                    self.backs
                        .queue(b, |w| pubsub::write_subscription(w, kind, false, t));
                }
            }
            frame.clear();
            pubsub::write_confirmation(&mut frame, word, Some(t), sub.count(kind));
            pubsub::render(&mut out, &sub.style, name, &frame);
        }
        out
    }

    /// At shutdown: ends an HTTP stream, or closes a WebSocket with 1001 (after the
    /// replies still due).
    pub(super) fn end_stream(&mut self, k: FrontKey) {
        let Some(busy) = self.fronts.get(k).and_then(|f| f.busy.as_deref()) else {
            return;
        };
        match busy.ws.as_deref() {
            // Its close frame is already queued.
            Some(conn) if conn.closing => {}
            Some(_) => {
                let mut close = Vec::new();
                crate::proto::ws::write_close(
                    &mut close,
                    crate::proto::ws::close::GOING_AWAY,
                    "Server shutting down",
                );
                self.ws_finish(k, &close, false);
            }
            None => self.end_http_stream(k),
        }
    }

    /// Ends front `k`'s HTTP stream: a subscribe request still waiting for Redis gets
    /// 503, a live chunked stream its terminating chunk; the connection closes once they
    /// are written, and its topics are left.
    fn end_http_stream(&mut self, k: FrontKey) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let gen = f.gen;
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let sub = busy.sub.take();
        if let Some(sub) = &sub {
            let date = &self.date;
            for seq in sub.pending.iter().filter_map(|p| p.seq) {
                busy.close_after(seq);
                busy.complete(seq, |out, meta| {
                    reply::error(out, meta, Status::Unavailable, date)
                });
            }
            if sub.live && sub.style.transport == Transport::Chunked {
                busy.push(pubsub::LAST_CHUNK);
            }
        }
        f.closing = Closing::AfterFlush;
        mark_front(f, k, &mut self.dirty_fronts);
        if let Some(sub) = sub {
            self.leave_all((k, gen), &sub);
        }
    }

    /// The subscriber connection broke. HTTP streams end (the terminating chunk; a
    /// stream not yet answered gets 503; a browser's EventSource reconnects by itself,
    /// and an SSE stream still waiting for its confirmation keeps waiting).
    /// WebSocket clients are told, stay subscribed, and get fresh confirmations once the
    /// connection is back and their topics are subscribed again.
    pub(super) fn subscriber_lost(&mut self) {
        let keys: Vec<FrontKey> = self
            .fronts
            .iter()
            .filter(|(_, f)| f.busy.as_ref().is_some_and(|b| b.sub.is_some()))
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            let Some(f) = self.fronts.get_mut(k) else {
                continue;
            };
            let Some(busy) = f.busy.as_deref_mut() else {
                continue;
            };
            let Some(sub) = busy.sub.as_deref_mut() else {
                continue;
            };
            // Nothing is confirmed any more.
            for p in &mut sub.pending {
                p.confirmed = 0;
            }
            if sub.style.transport != Transport::Ws {
                // An SSE stream still waiting for its first confirmation (it arrived
                // while Redis was away) keeps waiting for the reconnect.
                let waits = sub.style.sse && !sub.pending.is_empty();
                if !waits {
                    // The connection is down: its topics are left without UNSUBSCRIBE.
                    self.end_http_stream(k);
                }
                continue;
            }
            // Told once per outage, however many reconnect attempts fail, and only
            // about subscriptions it was told of (requests still waiting for their
            // confirmation just go on waiting).
            let again = sub.reconfirmations();
            if !sub.lost && !again.is_empty() {
                sub.lost = true;
                sub.pending.extend(again);
                let mut bytes = Vec::new();
                reply::ws_error_frame(
                    &mut bytes,
                    sub.style.output,
                    Status::Unavailable,
                    b"Redis connection lost; resubscribing",
                );
                busy.push(&bytes);
            }
            mark_front(f, k, &mut self.dirty_fronts);
        }
        if self.backs.is_cluster() {
            // Shard channels are on other connections, still subscribed.
            self.pubsub.reset_if(|kind, _| kind != TopicKind::Shard);
        } else {
            self.pubsub.reset();
        }
    }

    /// Sends `: ping` on every Server-Sent Event stream (keeps proxies and browsers
    /// from timing the stream out).
    pub(super) fn ping_sse(&mut self, now: Instant) {
        let mut any = false;
        let mut ping = Vec::new();
        for (k, f) in self.fronts.iter_mut() {
            let Some(busy) = f.busy.as_deref_mut() else {
                continue;
            };
            let Some(sub) = busy.sub.as_deref() else {
                continue;
            };
            if !sub.style.sse || !sub.live {
                continue;
            }
            any = true;
            ping.clear();
            pubsub::frame_payload(&mut ping, &sub.style, b": ping\n\n");
            busy.push(&ping);
            mark_front(f, k, &mut self.dirty_fronts);
        }
        let every = self.shared.config.sse_ping_sec;
        self.next_ping = (any && every > 0).then(|| now + Duration::from_secs(every));
    }
}
