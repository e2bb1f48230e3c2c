//! Pub/sub, multiplexed: free of I/O.
//!
//! Each worker keeps one subscriber connection to Redis and fans messages out in
//! process. [`Registry`] counts, per topic (channel, pattern or shard channel), the fronts
//! subscribed to it: the first one makes the worker send `SUBSCRIBE`, the last one to
//! leave makes it send `UNSUBSCRIBE`, and a topic is *ready* once Redis confirmed it.
//! [`classify`] reads what the subscriber connection receives, and [`render`] turns a
//! message (or a confirmation built by [`write_confirmation`]) into the bytes one
//! transport sends: a chunk, a Server-Sent Event or a WebSocket frame.

use crate::key::FrontKey;
use crate::proto::resp::write_bulk;
use crate::proto::resp::{Item, Reader};
use crate::proto::{response, ws};
use crate::render;
use crate::render::custom::Custom;
use crate::render::Output;
use crate::render::Shape;
use smallvec::SmallVec;
use std::collections::{HashMap, VecDeque};

/// A front's subscriptions.
pub struct Subscriber {
    pub style: Style,
    /// The JSON key of each topic kind's messages: the subscribe command as typed.
    pub names: [SmallVec<[u8; 12]>; 3],
    /// The topics of each kind, with their place in subscription order: found, added and
    /// removed at once, however many a client has.
    topics: [HashMap<Box<[u8]>, u64>; 3],
    /// The place of the next topic added.
    next: u64,
    /// Subscribe requests waiting for Redis to confirm some of their topics, in order.
    pub pending: VecDeque<PendingSub>,
    /// An HTTP stream whose head went out (or waits behind earlier responses).
    pub live: bool,
    /// The subscriber connection was lost and the client told; cleared once its
    /// subscriptions are confirmed again.
    pub lost: bool,
}

/// A subscribe request answered once all its topics are confirmed.
pub struct PendingSub {
    /// Its response slot; `None` when the answer is pushed like a message (SSE, whose
    /// head went out at once, and re-confirmations after a reconnect).
    pub seq: Option<u64>,
    pub kind: TopicKind,
    /// Each topic with the subscription count the confirmation reports.
    pub topics: Vec<(Box<[u8]>, usize)>,
    /// How many of `topics`, from the first, Redis has confirmed: they are not looked up
    /// again (only a lost subscriber connection unconfirms them, and resets this).
    pub confirmed: usize,
}

impl PendingSub {
    pub fn new(seq: Option<u64>, kind: TopicKind, topics: Vec<(Box<[u8]>, usize)>) -> Self {
        PendingSub {
            seq,
            kind,
            topics,
            confirmed: 0,
        }
    }
}

impl Subscriber {
    pub fn new(style: Style) -> Subscriber {
        Subscriber {
            style,
            names: Default::default(),
            topics: Default::default(),
            next: 0,
            pending: VecDeque::new(),
            live: false,
            lost: false,
        }
    }

    /// Adds a topic (once) and returns the count Redis would report: channels and
    /// patterns count together, shard channels apart.
    pub fn add(&mut self, kind: TopicKind, topic: &[u8]) -> usize {
        let map = &mut self.topics[kind.index()];
        if !map.contains_key(topic) {
            map.insert(topic.into(), self.next);
            self.next += 1;
        }
        self.count(kind)
    }

    /// Removes a topic; `false` when it was not subscribed. Re-confirmations waiting for
    /// it forget it.
    pub fn remove(&mut self, kind: TopicKind, topic: &[u8]) -> bool {
        for p in self
            .pending
            .iter_mut()
            .filter(|p| p.seq.is_none() && p.kind == kind)
        {
            p.topics.retain(|(t, _)| **t != *topic);
            p.confirmed = 0;
        }
        self.pending
            .retain(|p| p.seq.is_some() || !p.topics.is_empty());
        self.topics[kind.index()].remove(topic).is_some()
    }

    pub fn has(&self, kind: TopicKind, topic: &[u8]) -> bool {
        self.topics[kind.index()].contains_key(topic)
    }

    /// How many topics, of every kind.
    pub fn len(&self) -> usize {
        self.topics.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every topic, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (TopicKind, &[u8])> {
        TopicKind::ALL
            .into_iter()
            .flat_map(|kind| self.topics[kind.index()].keys().map(move |t| (kind, &**t)))
    }

    /// The topics of `kinds`, in subscription order.
    pub fn in_order(&self, kinds: &[TopicKind]) -> Vec<(TopicKind, &[u8])> {
        let mut all: Vec<(u64, TopicKind, &[u8])> = kinds
            .iter()
            .flat_map(|&kind| {
                self.topics[kind.index()]
                    .iter()
                    .map(move |(t, &at)| (at, kind, &**t))
            })
            .collect();
        all.sort_unstable_by_key(|&(at, _, _)| at);
        all.into_iter().map(|(_, kind, t)| (kind, t)).collect()
    }

    /// After the subscriber connection was lost: confirmations to send again once the
    /// topics are subscribed again, with the counts Redis would give (channels and
    /// patterns counted together), for the topics no request is waiting for already.
    pub fn reconfirmations(&self) -> Vec<PendingSub> {
        let waiting = |kind: TopicKind, t: &[u8]| {
            self.pending
                .iter()
                .any(|p| p.kind == kind && p.topics.iter().any(|(x, _)| **x == *t))
        };
        let mut counts = [0usize; 2];
        let mut again: Vec<PendingSub> = Vec::new();
        for (kind, t) in self.in_order(&TopicKind::ALL) {
            let class = usize::from(kind == TopicKind::Shard);
            counts[class] += 1;
            if waiting(kind, t) {
                continue;
            }
            let entry = (t.into(), counts[class]);
            match again.iter_mut().find(|p| p.kind == kind) {
                Some(p) => p.topics.push(entry),
                None => again.push(PendingSub::new(None, kind, vec![entry])),
            }
        }
        again
    }

    pub fn count(&self, kind: TopicKind) -> usize {
        let n = |k: TopicKind| self.topics[k.index()].len();
        match kind {
            TopicKind::Shard => n(TopicKind::Shard),
            TopicKind::Channel | TopicKind::Pattern => {
                n(TopicKind::Channel) + n(TopicKind::Pattern)
            }
        }
    }
}

/// What a subscription names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Channel,
    Pattern,
    Shard,
}

impl TopicKind {
    pub const ALL: [TopicKind; 3] = [TopicKind::Channel, TopicKind::Pattern, TopicKind::Shard];

    /// `SUBSCRIBE` → `(Channel, true)`, `PUNSUBSCRIBE` → `(Pattern, false)`, ... matched
    /// case-insensitively.
    pub fn of_command(name: &[u8]) -> Option<(TopicKind, bool)> {
        let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
        Some(if is(b"SUBSCRIBE") {
            (TopicKind::Channel, true)
        } else if is(b"PSUBSCRIBE") {
            (TopicKind::Pattern, true)
        } else if is(b"SSUBSCRIBE") {
            (TopicKind::Shard, true)
        } else if is(b"UNSUBSCRIBE") {
            (TopicKind::Channel, false)
        } else if is(b"PUNSUBSCRIBE") {
            (TopicKind::Pattern, false)
        } else if is(b"SUNSUBSCRIBE") {
            (TopicKind::Shard, false)
        } else {
            return None;
        })
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn commands(self) -> (&'static [u8], &'static [u8]) {
        match self {
            TopicKind::Channel => (b"SUBSCRIBE", b"UNSUBSCRIBE"),
            TopicKind::Pattern => (b"PSUBSCRIBE", b"PUNSUBSCRIBE"),
            TopicKind::Shard => (b"SSUBSCRIBE", b"SUNSUBSCRIBE"),
        }
    }

    /// The first element of Redis's confirmation: `subscribe`, `punsubscribe`, ...
    pub fn confirmation(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (TopicKind::Channel, true) => b"subscribe",
            (TopicKind::Pattern, true) => b"psubscribe",
            (TopicKind::Shard, true) => b"ssubscribe",
            (TopicKind::Channel, false) => b"unsubscribe",
            (TopicKind::Pattern, false) => b"punsubscribe",
            (TopicKind::Shard, false) => b"sunsubscribe",
        }
    }
}

/// A subscribe request, owned, ready to start.
#[derive(Debug)]
pub struct SubRequest {
    pub kind: TopicKind,
    /// The command as typed: the JSON key of its messages.
    pub name: SmallVec<[u8; 12]>,
    pub topics: Vec<Vec<u8>>,
    pub style: Style,
}

/// A subscribed front: its slab key and generation.
pub type Sub = (FrontKey, u32);

#[derive(Debug, Default)]
struct Entry {
    subs: Vec<Sub>,
    /// `SUBSCRIBE`s sent and not yet confirmed.
    inflight: u32,
    /// Redis confirmed it and no newer `SUBSCRIBE` is in flight: messages flow.
    ready: bool,
}

/// Every topic a worker's fronts are subscribed to, one map per kind (looked up by the
/// bytes Redis sends, without allocating).
#[derive(Debug, Default)]
pub struct Registry {
    topics: [HashMap<Box<[u8]>, Entry>; 3],
}

/// What [`Registry::join`] asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The first subscriber: send `SUBSCRIBE` (the topic becomes ready when Redis
    /// confirms it).
    Send,
    /// Confirmation awaited.
    Pending,
    /// Already confirmed: the front may be told at once.
    Ready,
}

/// What a confirmation from Redis leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Confirmed {
    Nothing,
    /// The topic is ready: these fronts may have requests to complete.
    Ready(Vec<Sub>),
    /// Everybody left while the confirmation was on its way: send `UNSUBSCRIBE`.
    Unsubscribe,
}

impl Registry {
    pub fn join(&mut self, kind: TopicKind, name: &[u8], sub: Sub) -> Joined {
        let map = &mut self.topics[kind.index()];
        if let Some(e) = map.get_mut(name) {
            if !e.subs.contains(&sub) {
                e.subs.push(sub);
            }
            return if e.ready {
                Joined::Ready
            } else {
                Joined::Pending
            };
        }
        map.insert(
            name.into(),
            Entry {
                subs: vec![sub],
                inflight: 1,
                ready: false,
            },
        );
        Joined::Send
    }

    /// The `SUBSCRIBE` [`Registry::join`] asked for could not be sent (the connection is
    /// down): [`Registry::resubscribe`] sends it once the connection is back.
    pub fn unsent(&mut self, kind: TopicKind, name: &[u8]) {
        if let Some(e) = self.topics[kind.index()].get_mut(name) {
            e.inflight = e.inflight.saturating_sub(1);
        }
    }

    /// Removes `sub` from a topic. `true`: it was the last one, send `UNSUBSCRIBE`.
    pub fn leave(&mut self, kind: TopicKind, name: &[u8], sub: Sub) -> bool {
        let map = &mut self.topics[kind.index()];
        let Some(e) = map.get_mut(name) else {
            return false;
        };
        e.subs.retain(|s| *s != sub);
        if !e.subs.is_empty() || e.inflight > 0 {
            return false;
        }
        let was_ready = e.ready;
        map.remove(name);
        was_ready
    }

    /// Redis confirmed a `SUBSCRIBE` of ours.
    pub fn confirmed(&mut self, kind: TopicKind, name: &[u8]) -> Confirmed {
        let map = &mut self.topics[kind.index()];
        let Some(e) = map.get_mut(name) else {
            return Confirmed::Nothing;
        };
        e.inflight = e.inflight.saturating_sub(1);
        if e.inflight > 0 {
            return Confirmed::Nothing;
        }
        e.ready = true;
        if e.subs.is_empty() {
            map.remove(name);
            return Confirmed::Unsubscribe;
        }
        Confirmed::Ready(e.subs.clone())
    }

    /// The fronts a message on this topic goes to (none until it is ready).
    pub fn subscribers(&self, kind: TopicKind, name: &[u8]) -> &[Sub] {
        match self.topics[kind.index()].get(name) {
            Some(e) if e.ready => &e.subs,
            _ => &[],
        }
    }

    pub fn is_ready(&self, kind: TopicKind, name: &[u8]) -> bool {
        self.topics[kind.index()].get(name).is_some_and(|e| e.ready)
    }

    /// [`Registry::reset`] for the topics `lost` names only (cluster mode: one of
    /// several subscriber connections was lost).
    pub fn reset_if(&mut self, lost: impl Fn(TopicKind, &[u8]) -> bool) {
        for kind in TopicKind::ALL {
            let map = &mut self.topics[kind.index()];
            map.retain(|name, e| !e.subs.is_empty() || !lost(kind, name));
            for (name, e) in map.iter_mut() {
                if lost(kind, name) {
                    e.ready = false;
                    e.inflight = 0;
                }
            }
        }
    }

    /// Redis dropped a subscription we did not ask to drop (a shard channel whose slot
    /// moved): it is not ready until subscribed again. `false` if nobody is on it.
    pub fn dropped(&mut self, kind: TopicKind, name: &[u8]) -> bool {
        match self.topics[kind.index()].get_mut(name) {
            Some(e) if !e.subs.is_empty() => {
                e.ready = false;
                e.inflight = 0;
                true
            }
            _ => false,
        }
    }

    /// Topics of `kind` with subscribers, neither confirmed nor being subscribed.
    pub fn unsubscribed(&self, kind: TopicKind) -> Vec<Box<[u8]>> {
        self.topics[kind.index()]
            .iter()
            .filter(|(_, e)| !e.ready && e.inflight == 0 && !e.subs.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Topics of `kind` with subscribers that are not confirmed.
    pub fn unconfirmed(&self, kind: TopicKind) -> Vec<Box<[u8]>> {
        self.topics[kind.index()]
            .iter()
            .filter(|(_, e)| !e.ready && !e.subs.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every topic of `kind`.
    pub fn topics_of(&self, kind: TopicKind) -> Vec<Box<[u8]>> {
        self.topics[kind.index()].keys().cloned().collect()
    }

    /// A `SUBSCRIBE` (of any kind) for this topic was sent.
    pub fn sent(&mut self, kind: TopicKind, name: &[u8]) {
        if let Some(e) = self.topics[kind.index()].get_mut(name) {
            e.inflight += 1;
        }
    }

    /// The subscriber connection was lost: nothing is subscribed any more.
    pub fn reset(&mut self) {
        for map in &mut self.topics {
            map.retain(|_, e| !e.subs.is_empty());
            for e in map.values_mut() {
                e.ready = false;
                e.inflight = 0;
            }
        }
    }

    /// After a reconnect: appends `SUBSCRIBE` for every topic that still has subscribers
    /// and none in flight.
    #[cfg(test)]
    pub fn resubscribe(&mut self, out: &mut Vec<u8>) {
        self.resubscribe_if(out, |_, _| true);
    }

    /// [`Registry::resubscribe`] for the topics `keep` names (cluster mode: each
    /// connection subscribes its own).
    pub fn resubscribe_if(&mut self, out: &mut Vec<u8>, keep: impl Fn(TopicKind, &[u8]) -> bool) {
        for kind in TopicKind::ALL {
            for (name, e) in &mut self.topics[kind.index()] {
                if e.inflight == 0 && !e.ready && keep(kind, name) {
                    e.inflight = 1;
                    write_command(out, kind.commands().0, name);
                }
            }
        }
    }

    /// Topics subscribed or being subscribed, by kind (for the metrics).
    pub fn counts(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.topics[i].len())
    }

    /// Topics subscribed or being subscribed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.topics.iter().map(HashMap::len).sum()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `SUBSCRIBE topic` (or `UNSUBSCRIBE`, with `subscribe` false) as RESP.
pub fn write_subscription(out: &mut Vec<u8>, kind: TopicKind, subscribe: bool, name: &[u8]) {
    let (sub, unsub) = kind.commands();
    write_command(out, if subscribe { sub } else { unsub }, name);
}

fn write_command(out: &mut Vec<u8>, cmd: &[u8], name: &[u8]) {
    out.extend_from_slice(b"*2\r\n");
    write_bulk(out, cmd);
    write_bulk(out, name);
}

/// A confirmation as Redis would send it to a connection of the front's own:
/// `["subscribe", topic, count]` (`topic` nil for an `UNSUBSCRIBE` of nothing).
pub fn write_confirmation(out: &mut Vec<u8>, word: &[u8], topic: Option<&[u8]>, count: usize) {
    out.extend_from_slice(b"*3\r\n");
    write_bulk(out, word);
    match topic {
        Some(t) => write_bulk(out, t),
        None => out.extend_from_slice(b"$-1\r\n"),
    }
    out.push(b':');
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A frame received on the subscriber connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push<'a> {
    /// `message`, `pmessage` or `smessage`; `topic` is what was subscribed to (the
    /// pattern for `pmessage`).
    Message { kind: TopicKind, topic: &'a [u8] },
    /// Redis confirmed a subscription of ours.
    Subscribed { kind: TopicKind, topic: &'a [u8] },
    /// Anything else (unsubscribe confirmations, pongs): nothing to do.
    Other,
}

/// An `unsubscribe`, `punsubscribe` or `sunsubscribe` frame: its kind and topic.
pub fn classify_unsubscribe(frame: &[u8]) -> Option<(TopicKind, &[u8])> {
    let mut r = Reader::new(frame);
    let (Some(Item::Array(3) | Item::Push(3)), Some(Item::Bulk(word)), Some(Item::Bulk(topic))) =
        (r.next(), r.next(), r.next())
    else {
        return None;
    };
    let kind = match word {
        b"unsubscribe" => TopicKind::Channel,
        b"punsubscribe" => TopicKind::Pattern,
        b"sunsubscribe" => TopicKind::Shard,
        _ => return None,
    };
    Some((kind, topic))
}

/// Reads an array (RESP2) or push (RESP3) frame from the subscriber connection.
pub fn classify(frame: &[u8]) -> Push<'_> {
    let mut r = Reader::new(frame);
    let n = match r.next() {
        Some(Item::Array(n) | Item::Push(n)) => n,
        _ => return Push::Other,
    };
    let (Some(Item::Bulk(word) | Item::Simple(word)), Some(Item::Bulk(topic))) =
        (r.next(), r.next())
    else {
        return Push::Other;
    };
    let kind = match word {
        b"message" | b"subscribe" => TopicKind::Channel,
        b"pmessage" | b"psubscribe" => TopicKind::Pattern,
        b"smessage" | b"ssubscribe" => TopicKind::Shard,
        _ => return Push::Other,
    };
    match (word.ends_with(b"message"), n) {
        (true, 3) | (true, 4) => Push::Message { kind, topic },
        (false, 3) => Push::Subscribed { kind, topic },
        _ => Push::Other,
    }
}

/// How a front receives its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/1.1, `Transfer-Encoding: chunked`: one chunk per message.
    Chunked,
    /// HTTP/1.0: the body runs until the connection closes.
    Plain,
    /// A WebSocket: one frame per message.
    Ws,
}

/// Everything that decides the bytes a front gets for a message, but the JSON key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    pub transport: Transport,
    /// Server-Sent Events: each message is a `data:` event.
    pub sse: bool,
    pub output: Output,
    pub jsonp: Option<Box<[u8]>>,
    pub sep: Option<Box<[u8]>>,
}

/// Appends what `style` sends for `frame` (a message or a confirmation), the JSON key
/// being `name` (the subscribe command as the client typed it). Nothing is appended
/// when the custom format can't render the frame.
///
/// Rendered in place: the transport's framing is opened before the body and its length
/// filled in after (a chunk's size, a WebSocket header), and an SSE event's `data: `
/// comes first, so the body is not copied on the usual path.
pub fn render(out: &mut Vec<u8>, style: &Style, name: &[u8], frame: &[u8]) {
    let start = out.len();
    let framing = Framing::open(out, style.transport, frame.len() + name.len() + 16);
    if style.sse {
        out.extend_from_slice(SSE_DATA);
    }
    let body_at = out.len();
    // No JSONP in an SSE event: the browser's EventSource reads it, not a script.
    let jsonp = style.jsonp.as_deref().filter(|_| !style.sse);
    let sep = style.sep.as_deref().unwrap_or(b"");
    if render::body(out, style.output, name, Shape::Plain, frame, jsonp, sep) != Custom::Body {
        out.truncate(start);
        return;
    }
    if style.output == Output::Json
        && jsonp.is_none()
        && !style.sse
        && style.transport != Transport::Ws
    {
        // Newline-delimited JSON (JSONP ends with its own newline).
        out.push(b'\n');
    }
    if style.sse {
        end_sse_event(out, body_at);
    }
    framing.close(out, style.output);
}

/// A transport's framing around a payload being appended.
enum Framing {
    Plain,
    /// The chunk size goes at `at`, in the `width` digits left for it.
    Chunk {
        at: usize,
        width: usize,
    },
    /// [`ws::begin_frame`]'s mark.
    Ws(ws::FrameMark),
}

impl Framing {
    /// Starts the framing of a payload of about `hint` bytes.
    fn open(out: &mut Vec<u8>, transport: Transport, hint: usize) -> Framing {
        match transport {
            Transport::Plain => Framing::Plain,
            Transport::Chunked => {
                let at = out.len();
                let width = Hex::new(hint).digits().len();
                out.resize(at + width, b'0');
                out.extend_from_slice(b"\r\n");
                Framing::Chunk { at, width }
            }
            Transport::Ws => Framing::Ws(ws::begin_frame(out, hint)),
        }
    }

    /// Ends the framing: everything appended since [`Framing::open`] is the payload,
    /// in `output` (which chooses a WebSocket frame's opcode, see [`render::ws_opcode`]).
    fn close(self, out: &mut Vec<u8>, output: Output) {
        match self {
            Framing::Plain => {}
            Framing::Chunk { at, width } => {
                let len = out.len() - (at + width + 2);
                response::fill_in(out, at, width, Hex::new(len).digits());
                out.extend_from_slice(b"\r\n");
            }
            Framing::Ws(mark) => {
                let op = render::ws_opcode(output, mark.payload(out));
                ws::end_frame(out, mark, op);
            }
        }
    }
}

/// Wraps `payload` for the transport: a chunk, raw bytes, or a WebSocket frame (its
/// opcode as [`render::ws_opcode`] says).
pub fn frame_payload(out: &mut Vec<u8>, style: &Style, payload: &[u8]) {
    match style.transport {
        Transport::Chunked => write_chunk(out, payload),
        Transport::Plain => out.extend_from_slice(payload),
        Transport::Ws => ws::write_frame(out, render::ws_opcode(style.output, payload), payload),
    }
}

/// One HTTP chunk: hex length (lower case), CRLF, payload, CRLF.
pub fn write_chunk(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(Hex::new(payload.len()).digits());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// A chunk size: its hex digits, lower case, without leading zeros.
struct Hex {
    digits: [u8; 16],
    start: usize,
}

impl Hex {
    fn new(mut n: usize) -> Hex {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = HEX[n & 15];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        Hex { digits, start }
    }

    fn digits(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// What starts each line of a Server-Sent Event.
const SSE_DATA: &[u8] = b"data: ";

/// One Server-Sent Event: a `data:` line per line of `payload`, then a blank line.
pub fn sse_event(out: &mut Vec<u8>, payload: &[u8]) {
    let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
    for line in payload.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(SSE_DATA);
        // A lone CR would end the line for the browser: it can't be sent inside one.
        out.extend(line.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Ends the event whose payload is `out[from..]`, after the [`SSE_DATA`] written before
/// it. A payload of one line (JSON always is: it escapes CR and LF) just gets its blank
/// line; one of several lines is rewritten by [`sse_event`].
fn end_sse_event(out: &mut Vec<u8>, from: usize) {
    if memchr::memchr2(b'\r', b'\n', &out[from..]).is_none() {
        out.extend_from_slice(b"\n\n");
    } else {
        let payload = out.split_off(from);
        out.truncate(from - SSE_DATA.len());
        sse_event(out, &payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(transport: Transport, sse: bool, output: Output) -> Style {
        Style {
            transport,
            sse,
            output,
            jsonp: None,
            sep: None,
        }
    }

    const MSG: &[u8] = b"*3\r\n$7\r\nmessage\r\n$3\r\nhc1\r\n$11\r\nhello world\r\n";

    #[test]
    fn registry_counts_subscribers() {
        let mut r = Registry::default();
        let (a, b) = ((FrontKey(1), 1), (FrontKey(2), 1));
        assert_eq!(r.join(TopicKind::Channel, b"c", a), Joined::Send);
        assert_eq!(r.join(TopicKind::Channel, b"c", b), Joined::Pending);
        assert!(r.subscribers(TopicKind::Channel, b"c").is_empty());
        assert_eq!(
            r.confirmed(TopicKind::Channel, b"c"),
            Confirmed::Ready(vec![a, b])
        );
        assert_eq!(r.subscribers(TopicKind::Channel, b"c"), &[a, b]);
        assert_eq!(
            r.join(TopicKind::Channel, b"c", (FrontKey(3), 1)),
            Joined::Ready
        );
        assert!(r.subscribers(TopicKind::Pattern, b"c").is_empty());
        assert!(!r.leave(TopicKind::Channel, b"c", a));
        assert!(!r.leave(TopicKind::Channel, b"c", (FrontKey(3), 1)));
        assert!(
            r.leave(TopicKind::Channel, b"c", b),
            "the last one unsubscribes"
        );
        assert!(r.is_empty());
        assert!(!r.leave(TopicKind::Channel, b"c", b));
    }

    #[test]
    fn leaving_before_confirmation_unsubscribes_on_confirmation() {
        let mut r = Registry::default();
        assert_eq!(
            r.join(TopicKind::Pattern, b"p*", (FrontKey(1), 1)),
            Joined::Send
        );
        assert!(!r.leave(TopicKind::Pattern, b"p*", (FrontKey(1), 1)));
        assert_eq!(
            r.confirmed(TopicKind::Pattern, b"p*"),
            Confirmed::Unsubscribe
        );
        assert!(r.is_empty());
    }

    #[test]
    fn reset_and_resubscribe() {
        let mut r = Registry::default();
        r.join(TopicKind::Channel, b"a", (FrontKey(1), 1));
        r.join(TopicKind::Shard, b"s", (FrontKey(1), 1));
        r.confirmed(TopicKind::Channel, b"a");
        r.reset();
        assert!(!r.is_ready(TopicKind::Channel, b"a"));
        let mut out = Vec::new();
        r.resubscribe(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"),
            "{text}"
        );
        assert!(
            text.contains("*2\r\n$10\r\nSSUBSCRIBE\r\n$1\r\ns\r\n"),
            "{text}"
        );
        let mut again = Vec::new();
        r.resubscribe(&mut again);
        assert!(again.is_empty(), "in flight already");
        assert_eq!(
            r.confirmed(TopicKind::Channel, b"a"),
            Confirmed::Ready(vec![(FrontKey(1), 1)])
        );
    }

    #[test]
    fn classify_pushes() {
        assert_eq!(
            classify(MSG),
            Push::Message {
                kind: TopicKind::Channel,
                topic: b"hc1"
            }
        );
        assert_eq!(
            classify(b"*4\r\n$8\r\npmessage\r\n$3\r\npp*\r\n$3\r\npp1\r\n$1\r\nm\r\n"),
            Push::Message {
                kind: TopicKind::Pattern,
                topic: b"pp*"
            }
        );
        assert_eq!(
            classify(b">3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\nm\r\n"),
            Push::Message {
                kind: TopicKind::Shard,
                topic: b"s"
            }
        );
        assert_eq!(
            classify(b"*3\r\n$10\r\npsubscribe\r\n$3\r\npp*\r\n:1\r\n"),
            Push::Subscribed {
                kind: TopicKind::Pattern,
                topic: b"pp*"
            }
        );
        assert_eq!(
            classify(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"),
            Push::Other
        );
        assert_eq!(classify(b"+OK\r\n"), Push::Other);
        assert_eq!(classify(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"), Push::Other);
        assert_eq!(classify(b""), Push::Other);
    }

    #[test]
    fn chunked_json_is_newline_delimited() {
        let mut out = Vec::new();
        render(
            &mut out,
            &style(Transport::Chunked, false, Output::Json),
            b"SUBSCRIBE",
            MSG,
        );
        assert_eq!(
            out,
            b"2e\r\n{\"SUBSCRIBE\":[\"message\",\"hc1\",\"hello world\"]}\n\r\n"
        );
    }

    #[test]
    fn jsonp_chunks_as_webdis() {
        let mut s = style(Transport::Chunked, false, Output::Json);
        s.jsonp = Some(b"f".as_slice().into());
        let mut frame = Vec::new();
        write_confirmation(&mut frame, b"subscribe", Some(b"hc1"), 1);
        let mut out = Vec::new();
        render(&mut out, &s, b"SUBSCRIBE", &frame);
        render(&mut out, &s, b"SUBSCRIBE", MSG);
        assert_eq!(
            out,
            &b"28\r\nf({\"SUBSCRIBE\":[\"subscribe\",\"hc1\",1]});\n\r\n\
               32\r\nf({\"SUBSCRIBE\":[\"message\",\"hc1\",\"hello world\"]});\n\r\n"[..]
        );
    }

    #[test]
    fn raw_and_text_chunks() {
        let mut out = Vec::new();
        let frame = b"*3\r\n$10\r\npsubscribe\r\n$3\r\npp*\r\n:1\r\n";
        render(
            &mut out,
            &style(Transport::Chunked, false, Output::Raw),
            b"PSUBSCRIBE",
            frame,
        );
        assert_eq!(
            out,
            b"22\r\n*3\r\n$10\r\npsubscribe\r\n$3\r\npp*\r\n:1\r\n\r\n"
        );
        let mut s = style(Transport::Plain, false, Output::Custom);
        s.sep = Some(b"|".as_slice().into());
        let mut out = Vec::new();
        render(
            &mut out,
            &s,
            b"PSUBSCRIBE",
            b"*4\r\n$8\r\npmessage\r\n$3\r\npp*\r\n$3\r\npp1\r\n$1\r\nm\r\n",
        );
        assert_eq!(out, b"pmessage|pp*|pp1|m");
    }

    #[test]
    fn server_sent_events() {
        let mut out = Vec::new();
        render(
            &mut out,
            &style(Transport::Plain, true, Output::Json),
            b"SUBSCRIBE",
            MSG,
        );
        assert_eq!(
            out,
            b"data: {\"SUBSCRIBE\":[\"message\",\"hc1\",\"hello world\"]}\n\n"
        );
        let mut out = Vec::new();
        sse_event(&mut out, b"line 1\nline 2\r\nlast\rx\n");
        assert_eq!(out, b"data: line 1\ndata: line 2\ndata: last x\n\n");
        let mut out = Vec::new();
        sse_event(&mut out, b"");
        assert_eq!(out, b"data: \n\n");
    }

    #[test]
    fn websocket_frames() {
        let mut out = Vec::new();
        render(
            &mut out,
            &style(Transport::Ws, false, Output::Json),
            b"SUBSCRIBE",
            MSG,
        );
        assert_eq!(out[0], 0x81);
        assert_eq!(
            &out[2..],
            b"{\"SUBSCRIBE\":[\"message\",\"hc1\",\"hello world\"]}"
        );
        let mut out = Vec::new();
        render(
            &mut out,
            &style(Transport::Ws, false, Output::Raw),
            b"SUBSCRIBE",
            MSG,
        );
        // Raw RESP in a text frame when it is UTF-8, as webdis sent it...
        assert_eq!(out[0], 0x81);
        assert_eq!(&out[2..], MSG);
        // ... and in a binary frame when it is not.
        let bin = b"*3\r\n$7\r\nmessage\r\n$3\r\nhc1\r\n$2\r\n\xff\x00\r\n";
        let mut out = Vec::new();
        render(
            &mut out,
            &style(Transport::Ws, false, Output::Raw),
            b"SUBSCRIBE",
            bin,
        );
        assert_eq!(out[..2], [0x82, bin.len() as u8]);
        assert_eq!(&out[2..], bin);
    }

    #[test]
    fn chunk_lengths_are_lower_case_hex() {
        let mut out = Vec::new();
        write_chunk(&mut out, &[b'x'; 255]);
        assert!(out.starts_with(b"ff\r\n"));
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert_eq!(out, b"0\r\n\r\n");
    }
}
