//! What the gateway counts, and the Prometheus text format it is shown in. Free of I/O.
//!
//! Each worker owns a [`Counters`]: plain integers, written by that worker's thread
//! only, never an atomic on the request path. Gauges (connections open, Redis
//! connections by state, topics) are not kept at all: a worker counts them from its
//! slabs when asked. A scrape (`admin`) asks every worker for a [`Snapshot`] through its
//! control channel; each answers at its next loop turn, and the snapshots are summed
//! and rendered here.
//!
//! A response is counted when its last byte is queued for the client: [`Stage`] (one per
//! connection, beside the access log's) records it as `Busy::complete` emits responses
//! in request order, and the worker takes the records at its end-of-turn write
//! ([`Counters::take`]), where the turn's clock gives each request its duration. The
//! clock is read once per loop turn, so durations have the resolution of a turn: a
//! request answered in the turn that read it took 0 s, one answered by Redis took the
//! turns between. The dispatch time is a `u32` of microseconds in `Meta`'s padding, so a
//! request outstanding for more than 71 minutes (only a blocking command can be) has
//! its duration counted modulo that.

use crate::reply::Meta;
use std::fmt::Write;

/// `transport` label values, by [`Transport`] index.
pub const TRANSPORTS: [&str; 3] = ["http", "websocket", "pubsub"];

/// How a request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Transport {
    /// An HTTP request (WebSocket handshakes included: they are answered 101).
    Http = 0,
    /// A command in a WebSocket message.
    Websocket = 1,
    /// A subscribe or unsubscribe request: an HTTP stream's, or a WebSocket message's.
    Pubsub = 2,
}

/// `status` label values: status classes.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `kind` label values of Redis connections, by `back::Kind` (see `worker::control`).
pub const BACK_KINDS: [&str; 5] = ["shared", "db", "blocking", "subscriber", "tracking"];

/// `state` label values of Redis connections.
pub const BACK_STATES: [&str; 3] = ["up", "connecting", "down"];

/// `kind` label values of pub/sub topics, by `pubsub::TopicKind` index.
pub const TOPIC_KINDS: [&str; 3] = ["channel", "pattern", "shard_channel"];

/// Upper bounds of the duration histogram's buckets, in microseconds (then `+Inf`).
pub const BOUNDS_US: [u32; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A duration histogram: observations per bucket (not cumulative; the last one is
/// `+Inf`) and their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: [u64; BOUNDS_US.len() + 1],
    pub sum_us: u64,
}

impl Histogram {
    #[inline]
    pub fn observe(&mut self, us: u32) {
        // The first bound at or above the value: Prometheus's `le`. From the smallest:
        // most requests take less than a millisecond.
        let i = BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[i] += 1;
        self.sum_us += u64::from(us);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.sum_us += o.sum_us;
    }
}

/// One worker's counters. Plain integers, written by the worker's thread only and
/// copied out when a scrape asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests answered, by [`Transport`] and status class (`CLASSES`).
    pub requests: [[u64; 5]; 3],
    /// From dispatch to the last byte of the response queued, by [`Transport`].
    pub durations: [Histogram; 3],
    /// Bytes read from and written to client sockets.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Client connections accepted and closed.
    pub accepted: u64,
    pub closed: u64,
    /// Requests over `http_max_request_size` (413).
    pub too_large: u64,
    /// Requests that took too long to arrive (408).
    pub request_timeouts: u64,
    /// Times accepting paused at `max_clients` (the connections wait in the listen
    /// queue).
    pub max_clients: u64,
    /// Clients disconnected for letting their output buffer grow past its limit
    /// (requests and replies; subscribers are `slow_consumers`).
    pub output_buffer: u64,
    /// Subscribers disconnected for not reading their messages (`pubsub_client_buffer`).
    pub slow_consumers: u64,
    /// WebSocket messages over `websocket_max_message` (close 1009).
    pub ws_too_large: u64,
    /// Commands the ACL denied.
    pub acl_denied: u64,
    /// Client commands written to Redis, and the replies read for them.
    pub commands: u64,
    pub replies: u64,
    /// Requests answered 503 (Redis could not be reached, or the connection broke).
    pub unavailable: u64,
    /// Requests answered 504 (`redis_timeout_ms`). Counted from the responses, as 503.
    pub timeouts: u64,
    /// Redis connections up (their handshake passed), by kind (`BACK_KINDS`).
    pub back_up: [u64; 5],
    /// Of those, the ones up again after a failure.
    pub back_reconnects: [u64; 5],
    /// Connect attempts that failed and connections that broke, by kind.
    pub back_failures: [u64; 5],
    /// Pub/sub messages from Redis, and their copies queued for subscribers.
    pub messages: u64,
    pub deliveries: u64,
    /// Cluster mode: `MOVED` and `ASK` followed, commands retried (`TRYAGAIN`,
    /// `CLUSTERDOWN`, `LOADING`, a node out of reach), by `REDIRECTS`.
    pub cluster_redirects: [u64; 3],
    /// Cluster mode: slot maps read and used, and refused (incomplete, unreadable).
    pub cluster_maps: [u64; 2],
    /// The edge cache (`cache`): requests answered from memory, requests on cached
    /// prefixes sent to Redis, entries pushed out by `max_memory_mb`, entries dropped
    /// because their key changed (Redis's `invalidate`, or a write through the gateway),
    /// and whole flushes (FLUSHALL, the tracking connection lost).
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub cache_invalidations: u64,
    pub cache_flushes: u64,
}

/// The labels of `Counters::cluster_redirects`.
pub const REDIRECTS: [&str; 3] = ["moved", "ask", "retry"];

impl Counters {
    /// Counts the responses `stage` recorded since the last call; `now_us` is the
    /// worker's clock (see [`Stage`]).
    #[inline]
    pub fn take(&mut self, stage: &mut Stage, now_us: u32) {
        for d in &stage.done {
            let t = d.transport as usize;
            let class = (d.code / 100) as usize;
            if !(1..=5).contains(&class) {
                continue;
            }
            self.requests[t][class - 1] += 1;
            self.durations[t].observe(now_us.wrapping_sub(d.born));
            match d.code {
                503 => self.unavailable += 1,
                504 => self.timeouts += 1,
                _ => {}
            }
        }
        stage.done.clear();
    }

    fn add(&mut self, o: &Counters) {
        for (a, b) in self.requests.iter_mut().zip(&o.requests) {
            add_all(a, b);
        }
        for (a, b) in self.durations.iter_mut().zip(&o.durations) {
            a.add(b);
        }
        // Every field named: a new counter cannot be forgotten here.
        let Counters {
            requests: _,
            durations: _,
            bytes_in,
            bytes_out,
            accepted,
            closed,
            too_large,
            request_timeouts,
            max_clients,
            output_buffer,
            slow_consumers,
            ws_too_large,
            acl_denied,
            commands,
            replies,
            unavailable,
            timeouts,
            back_up,
            back_reconnects,
            back_failures,
            messages,
            deliveries,
            cluster_redirects,
            cluster_maps,
            cache_hits,
            cache_misses,
            cache_evictions,
            cache_invalidations,
            cache_flushes,
        } = self;
        *bytes_in += o.bytes_in;
        *bytes_out += o.bytes_out;
        *accepted += o.accepted;
        *closed += o.closed;
        *too_large += o.too_large;
        *request_timeouts += o.request_timeouts;
        *max_clients += o.max_clients;
        *output_buffer += o.output_buffer;
        *slow_consumers += o.slow_consumers;
        *ws_too_large += o.ws_too_large;
        *acl_denied += o.acl_denied;
        *commands += o.commands;
        *replies += o.replies;
        *unavailable += o.unavailable;
        *timeouts += o.timeouts;
        add_all(back_up, &o.back_up);
        add_all(back_reconnects, &o.back_reconnects);
        add_all(back_failures, &o.back_failures);
        *messages += o.messages;
        *deliveries += o.deliveries;
        add_all(cluster_redirects, &o.cluster_redirects);
        add_all(cluster_maps, &o.cluster_maps);
        *cache_hits += o.cache_hits;
        *cache_misses += o.cache_misses;
        *cache_evictions += o.cache_evictions;
        *cache_invalidations += o.cache_invalidations;
        *cache_flushes += o.cache_flushes;
    }
}

fn add_all<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// What a worker counts from its slabs when asked: nothing maintains these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Client connections open (lingering ones included).
    pub clients: u64,
    pub websockets: u64,
    /// Clients with subscriptions (HTTP streams and WebSockets), and their subscriptions.
    pub subscribers: u64,
    pub subscriptions: u64,
    /// Topics the worker's subscriber connection is subscribed to (or subscribing), by
    /// kind (`TOPIC_KINDS`).
    pub topics: [u64; 3],
    /// Redis connections by kind (`BACK_KINDS`) and state (`BACK_STATES`).
    pub backs: [[u64; 3]; 5],
    /// Cluster mode: the oldest slot map in use, in milliseconds since it was read
    /// (the largest over the workers; 0 without one), and the nodes known (largest).
    pub cluster_map_age_ms: u64,
    pub cluster_nodes: u64,
    /// Cluster mode: the connections to each node, all kinds together, by state
    /// (`BACK_STATES`).
    pub node_backs: std::collections::BTreeMap<crate::endpoint::Endpoint, [u64; 3]>,
    /// The edge cache: entries stored, and the bytes accounted to them (`max_memory_mb`).
    pub cache_entries: u64,
    pub cache_bytes: u64,
}

impl Gauges {
    /// Shared connections up: a worker with none cannot serve (`/health/ready`).
    pub fn shared_up(&self) -> u64 {
        self.backs[0][0]
    }

    fn add(&mut self, o: &Gauges) {
        self.cluster_map_age_ms = self.cluster_map_age_ms.max(o.cluster_map_age_ms);
        self.cluster_nodes = self.cluster_nodes.max(o.cluster_nodes);
        self.clients += o.clients;
        self.websockets += o.websockets;
        self.subscribers += o.subscribers;
        self.subscriptions += o.subscriptions;
        self.cache_entries += o.cache_entries;
        self.cache_bytes += o.cache_bytes;
        add_all(&mut self.topics, &o.topics);
        for (a, b) in self.backs.iter_mut().zip(&o.backs) {
            add_all(a, b);
        }
        for (node, states) in &o.node_backs {
            add_all(self.node_backs.entry(node.clone()).or_default(), states);
        }
    }
}

/// One worker's answer to a scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub worker: usize,
    pub counters: Counters,
    pub gauges: Gauges,
}

impl Snapshot {
    /// Adds another worker's snapshot to this one.
    pub fn add(&mut self, o: &Snapshot) {
        self.counters.add(&o.counters);
        self.gauges.add(&o.gauges);
    }
}

/// A response emitted, not yet counted.
#[derive(Debug, Clone, Copy)]
struct Done {
    born: u32,
    code: u16,
    transport: Transport,
}

/// The responses one connection emitted since the worker last took them (at the
/// end-of-turn write, in the same turn). Its buffer is kept with the connection's
/// pooled `Busy`, so recording allocates nothing once warm.
#[derive(Debug, Default)]
pub struct Stage {
    done: Vec<Done>,
}

impl Stage {
    /// The response to the request `meta` describes was queued: `response` is its bytes
    /// (a status line for HTTP, a frame for a WebSocket, whose status, when the gateway
    /// answered an error, is `meta.status`). An empty response (a request given up) is
    /// no answer and is not counted.
    #[inline]
    pub fn finish(&mut self, meta: &Meta, response: &[u8]) {
        if response.is_empty() {
            return;
        }
        let transport = if meta.pubsub {
            Transport::Pubsub
        } else if meta.ws {
            Transport::Websocket
        } else {
            Transport::Http
        };
        let code = if meta.ws {
            if meta.status != 0 {
                meta.status
            } else {
                200
            }
        } else {
            // `HTTP/1.1 200 ...`, written by `proto::response`: three digits. (Anything
            // else makes a number outside 100-599, which is not counted.)
            match response.get(9..12) {
                Some(&[a, b, c]) => {
                    let digit = |d: u8| u16::from(d.wrapping_sub(b'0'));
                    digit(a) * 100 + digit(b) * 10 + digit(c)
                }
                _ => 0,
            }
        };
        self.done.push(Done {
            born: meta.born,
            code,
            transport,
        });
    }

    pub fn clear(&mut self) {
        self.done.clear();
    }
}

/// Three ASCII digits as a number; 0 when they are not digits.
pub fn status_code(digits: &[u8]) -> u16 {
    if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'))
}

/// What the process reports besides the workers' counters.
#[derive(Debug, Clone, Default)]
pub struct Process {
    pub version: &'static str,
    pub workers: usize,
    pub uptime_sec: f64,
    pub start_time_sec: f64,
    /// Read from `/proc`; `None` where it cannot be.
    pub rss_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub cpu_sec: Option<f64>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Whether the last reload was applied (true when there was none).
    pub last_reload_ok: bool,
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition, in Prometheus's text format 0.0.4: the workers' sum, then the
/// process's own figures.
pub fn render(out: &mut String, s: &Snapshot, p: &Process) {
    let c = &s.counters;
    let g = &s.gauges;
    family(
        out,
        "webdis_requests_total",
        "counter",
        "Requests answered, by transport and status class.",
    );
    for (t, name) in TRANSPORTS.iter().enumerate() {
        for (k, class) in CLASSES.iter().enumerate() {
            let labels = [("transport", *name), ("status", *class)];
            sample(out, "webdis_requests_total", &labels, c.requests[t][k]);
        }
    }
    family(
        out,
        "webdis_request_duration_seconds",
        "histogram",
        "Time from a request's dispatch to the last byte of its response queued, by transport (the event loop's clock, read once per turn).",
    );
    for (t, name) in TRANSPORTS.iter().enumerate() {
        histogram(
            out,
            "webdis_request_duration_seconds",
            name,
            &c.durations[t],
        );
    }
    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        family(out, name, "counter", help);
        sample(out, name, &[], v);
    };
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        family(out, name, "gauge", help);
        sample(out, name, &[], v);
    };
    counter(
        out,
        "webdis_client_received_bytes_total",
        "Bytes read from client connections.",
        c.bytes_in,
    );
    counter(
        out,
        "webdis_client_sent_bytes_total",
        "Bytes written to client connections.",
        c.bytes_out,
    );
    gauge(
        out,
        "webdis_client_connections",
        "Client connections open.",
        g.clients,
    );
    counter(
        out,
        "webdis_client_connections_accepted_total",
        "Client connections accepted.",
        c.accepted,
    );
    counter(
        out,
        "webdis_client_connections_closed_total",
        "Client connections closed.",
        c.closed,
    );
    gauge(
        out,
        "webdis_websocket_connections",
        "WebSocket connections open.",
        g.websockets,
    );
    family(
        out,
        "webdis_limits_hit_total",
        "counter",
        "Requests refused or clients disconnected at a limit.",
    );
    for (limit, v) in [
        ("request_size", c.too_large),
        ("request_timeout", c.request_timeouts),
        ("max_clients", c.max_clients),
        ("output_buffer", c.output_buffer),
        ("slow_consumer", c.slow_consumers),
        ("websocket_message_size", c.ws_too_large),
    ] {
        sample(out, "webdis_limits_hit_total", &[("limit", limit)], v);
    }
    counter(
        out,
        "webdis_acl_denials_total",
        "Commands denied by the ACL.",
        c.acl_denied,
    );
    family(
        out,
        "webdis_cache_total",
        "counter",
        "Edge cache: hits, misses, entries evicted by max_memory_mb, entries invalidated, flushes.",
    );
    for (event, v) in [
        ("hit", c.cache_hits),
        ("miss", c.cache_misses),
        ("eviction", c.cache_evictions),
        ("invalidation", c.cache_invalidations),
        ("flush", c.cache_flushes),
    ] {
        sample(out, "webdis_cache_total", &[("event", event)], v);
    }
    family(
        out,
        "webdis_cluster_redirects_total",
        "counter",
        "Cluster mode: MOVED and ASK followed, commands retried later.",
    );
    for (i, kind) in REDIRECTS.iter().enumerate() {
        let labels = [("kind", *kind)];
        sample(
            out,
            "webdis_cluster_redirects_total",
            &labels,
            c.cluster_redirects[i],
        );
    }
    family(
        out,
        "webdis_cluster_slot_maps_total",
        "counter",
        "Cluster mode: CLUSTER SLOTS replies used, and refused (the previous map kept).",
    );
    for (i, result) in ["used", "refused"].iter().enumerate() {
        let labels = [("result", *result)];
        sample(
            out,
            "webdis_cluster_slot_maps_total",
            &labels,
            c.cluster_maps[i],
        );
    }
    family(
        out,
        "webdis_cluster_slot_map_age_seconds",
        "gauge",
        "Cluster mode: the age of the oldest slot map a worker routes by (0 without one).",
    );
    sample_f(
        out,
        "webdis_cluster_slot_map_age_seconds",
        &[],
        g.cluster_map_age_ms as f64 / 1000.0,
    );
    gauge(
        out,
        "webdis_cache_entries",
        "Edge cache: entries stored (all workers).",
        g.cache_entries,
    );
    gauge(
        out,
        "webdis_cache_bytes",
        "Edge cache: bytes accounted to the entries (all workers; each is bounded by max_memory_mb).",
        g.cache_bytes,
    );
    gauge(
        out,
        "webdis_cluster_nodes",
        "Cluster mode: the nodes a worker knows (seeds, map, redirects).",
        g.cluster_nodes,
    );
    family(
        out,
        "webdis_cluster_node_connections",
        "gauge",
        "Cluster mode: connections to each node, by state.",
    );
    for (node, states) in &g.node_backs {
        let node = node.to_string();
        for (st, state) in BACK_STATES.iter().enumerate() {
            let labels = [("node", node.as_str()), ("state", *state)];
            sample(out, "webdis_cluster_node_connections", &labels, states[st]);
        }
    }
    family(
        out,
        "webdis_redis_connections",
        "gauge",
        "Connections to Redis, by kind and state.",
    );
    for (k, kind) in BACK_KINDS.iter().enumerate() {
        for (st, state) in BACK_STATES.iter().enumerate() {
            let labels = [("kind", *kind), ("state", *state)];
            sample(out, "webdis_redis_connections", &labels, g.backs[k][st]);
        }
    }
    for (name, help, v) in [
        (
            "webdis_redis_connects_total",
            "Connections to Redis established (handshake accepted), by kind.",
            &c.back_up,
        ),
        (
            "webdis_redis_reconnects_total",
            "Connections to Redis established again after a failure, by kind.",
            &c.back_reconnects,
        ),
        (
            "webdis_redis_connection_failures_total",
            "Connects to Redis that failed and connections to Redis that broke, by kind.",
            &c.back_failures,
        ),
    ] {
        family(out, name, "counter", help);
        for (k, kind) in BACK_KINDS.iter().enumerate() {
            sample(out, name, &[("kind", kind)], v[k]);
        }
    }
    counter(
        out,
        "webdis_redis_commands_total",
        "Client commands sent to Redis.",
        c.commands,
    );
    counter(
        out,
        "webdis_redis_replies_total",
        "Replies read from Redis for client commands.",
        c.replies,
    );
    counter(
        out,
        "webdis_redis_unavailable_total",
        "Requests answered 503: no connection to Redis could take them, or it broke.",
        c.unavailable,
    );
    counter(
        out,
        "webdis_redis_timeouts_total",
        "Requests answered 504: Redis did not answer in time.",
        c.timeouts,
    );
    family(
        out,
        "webdis_pubsub_topics",
        "gauge",
        "Topics subscribed to in Redis, by kind.",
    );
    for (k, kind) in TOPIC_KINDS.iter().enumerate() {
        sample(out, "webdis_pubsub_topics", &[("kind", kind)], g.topics[k]);
    }
    gauge(
        out,
        "webdis_pubsub_subscribers",
        "Clients with subscriptions (HTTP streams and WebSockets).",
        g.subscribers,
    );
    gauge(
        out,
        "webdis_pubsub_subscriptions",
        "Subscriptions of clients to topics.",
        g.subscriptions,
    );
    counter(
        out,
        "webdis_pubsub_messages_total",
        "Pub/sub messages received from Redis.",
        c.messages,
    );
    counter(
        out,
        "webdis_pubsub_deliveries_total",
        "Pub/sub messages queued for subscribers (one per subscriber).",
        c.deliveries,
    );
    family(
        out,
        "webdis_build_info",
        "gauge",
        "The version of webdis-rs running; always 1.",
    );
    sample(out, "webdis_build_info", &[("version", p.version)], 1);
    gauge(out, "webdis_workers", "Worker threads.", p.workers as u64);
    family(
        out,
        "webdis_uptime_seconds",
        "gauge",
        "Seconds since webdis-rs started.",
    );
    sample_f(out, "webdis_uptime_seconds", &[], p.uptime_sec);
    family(
        out,
        "webdis_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP), applied or rejected.",
    );
    sample(
        out,
        "webdis_config_reloads_total",
        &[("result", "success")],
        p.reloads_ok,
    );
    sample(
        out,
        "webdis_config_reloads_total",
        &[("result", "failure")],
        p.reloads_failed,
    );
    gauge(
        out,
        "webdis_config_last_reload_successful",
        "1 when the last configuration reload was applied (or there was none), 0 when it was rejected.",
        u64::from(p.last_reload_ok),
    );
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
    );
    sample_f(out, "process_start_time_seconds", &[], p.start_time_sec);
    if let Some(v) = p.cpu_sec {
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        sample_f(out, "process_cpu_seconds_total", &[], v);
    }
    if let Some(v) = p.rss_bytes {
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            v,
        );
    }
    if let Some(v) = p.open_fds {
        gauge(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            v,
        );
    }
    if let Some(v) = p.max_fds {
        gauge(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            v,
        );
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // A family's name is its samples' without a counter's `_total`.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label(out, v);
        out.push('"');
    }
    out.push('}');
}

/// Appends label value `v` as the text format wants it: `\`, `"` and a line feed
/// escaped. Most values (fixed words, the version) have none: copied in one piece.
fn escape_label(out: &mut String, v: &str) {
    let Some(first) = v.find(['\\', '"', '\n']) else {
        out.push_str(v);
        return;
    };
    out.push_str(&v[..first]);
    for c in v[first..].chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn sample(out: &mut String, name: &str, l: &[(&str, &str)], v: u64) {
    out.push_str(name);
    labels(out, l);
    let _ = writeln!(out, " {v}");
}

fn sample_f(out: &mut String, name: &str, l: &[(&str, &str)], v: f64) {
    out.push_str(name);
    labels(out, l);
    let _ = writeln!(out, " {v}");
}

fn histogram(out: &mut String, name: &str, transport: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le = match BOUNDS_US.get(i) {
            Some(&us) => format!("{}", f64::from(us) / 1e6),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(
            out,
            "{name}_bucket{{transport=\"{transport}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "{name}_sum{{transport=\"{transport}\"}} {}",
        h.sum_us as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "{name}_count{{transport=\"{transport}\"}} {cumulative}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_le() {
        let mut h = Histogram::default();
        for us in [
            0,
            100,
            101,
            250,
            9_999_999,
            10_000_000,
            10_000_001,
            u32::MAX,
        ] {
            h.observe(us);
        }
        let mut want = [0u64; 17];
        want[0] = 2; // 0 and 100: le 0.0001
        want[1] = 2; // 101 and 250
        want[15] = 2; // up to 10 s
        want[16] = 2; // +Inf
        assert_eq!(h.buckets, want);
        assert_eq!(h.count(), 8);
    }

    fn meta(ws: bool, pubsub: bool, status: u16, born: u32) -> Meta {
        Meta {
            ws,
            pubsub,
            status,
            born,
            ..Meta::default()
        }
    }

    #[test]
    fn responses_counted_by_transport_class_and_duration() {
        let mut stage = Stage::default();
        let mut c = Counters::default();
        stage.finish(&meta(false, false, 0, 10), b"HTTP/1.1 200 OK\r\n\r\n");
        stage.finish(
            &meta(false, false, 0, 10),
            b"HTTP/1.0 503 Service Unavailable\r\n",
        );
        stage.finish(
            &meta(false, false, 0, 10),
            b"HTTP/1.1 101 Switching Protocols\r\n",
        );
        stage.finish(&meta(true, false, 0, 10), b"\x81\x02hi");
        stage.finish(&meta(true, false, 403, 10), b"\x81\x02no");
        stage.finish(&meta(true, true, 0, 10), b"\x81\x02ok");
        stage.finish(&meta(false, true, 0, 10), b"HTTP/1.1 200 OK\r\n");
        stage.finish(
            &meta(false, false, 0, 10),
            b"HTTP/1.1 504 Gateway Timeout\r\n",
        );
        // Given up: no answer.
        stage.finish(&meta(true, false, 0, 10), b"");
        c.take(&mut stage, 2_010);
        assert_eq!(c.requests[0], [1, 1, 0, 0, 2]);
        assert_eq!(c.requests[1], [0, 1, 0, 1, 0]);
        assert_eq!(c.requests[2], [0, 2, 0, 0, 0]);
        assert_eq!((c.unavailable, c.timeouts), (1, 1));
        // 2 ms each: the 2.5 ms bucket.
        assert_eq!(c.durations[0].buckets[4], 4);
        assert_eq!(c.durations[0].sum_us, 8_000);
        assert_eq!(c.durations[1].count(), 2);
        // Taken: a second call counts nothing more.
        c.take(&mut stage, 5_000);
        assert_eq!(c.requests[0], [1, 1, 0, 0, 2]);
        // The clock wraps (a u32 of microseconds): durations still come out right.
        stage.finish(
            &meta(false, false, 0, u32::MAX - 49),
            b"HTTP/1.1 200 OK\r\n",
        );
        c.take(&mut stage, 50);
        assert_eq!(c.durations[0].buckets[0], 1);
        assert_eq!(c.durations[0].sum_us, 8_100);
    }

    #[test]
    fn text_format() {
        let mut s = Snapshot::default();
        s.counters.requests[0][1] = 7;
        s.counters.durations[0].observe(150);
        s.counters.durations[0].observe(3_000_000);
        s.counters.back_up[0] = 4;
        s.gauges.backs[0][0] = 4;
        s.gauges.topics[1] = 2;
        let mut o = s.clone();
        o.worker = 1;
        o.counters.requests[0][1] = 3;
        s.add(&o);
        let p = Process {
            version: "1.2.3",
            workers: 2,
            uptime_sec: 1.5,
            start_time_sec: 1_700_000_000.25,
            rss_bytes: Some(4096),
            open_fds: None,
            max_fds: Some(1024),
            cpu_sec: Some(0.5),
            reloads_ok: 1,
            reloads_failed: 0,
            last_reload_ok: true,
        };
        let mut out = String::new();
        render(&mut out, &s, &p);
        for line in [
            "# HELP webdis_requests_total Requests answered, by transport and status class.\n\
             # TYPE webdis_requests_total counter\n\
             webdis_requests_total{transport=\"http\",status=\"1xx\"} 0\n\
             webdis_requests_total{transport=\"http\",status=\"2xx\"} 10\n",
            "webdis_request_duration_seconds_bucket{transport=\"http\",le=\"0.0001\"} 0\n\
             webdis_request_duration_seconds_bucket{transport=\"http\",le=\"0.00025\"} 2\n",
            "webdis_request_duration_seconds_bucket{transport=\"http\",le=\"2.5\"} 2\n\
             webdis_request_duration_seconds_bucket{transport=\"http\",le=\"5\"} 4\n",
            "webdis_request_duration_seconds_bucket{transport=\"http\",le=\"+Inf\"} 4\n\
             webdis_request_duration_seconds_sum{transport=\"http\"} 6.0003\n\
             webdis_request_duration_seconds_count{transport=\"http\"} 4\n",
            "webdis_redis_connections{kind=\"shared\",state=\"up\"} 8\n",
            "webdis_redis_connects_total{kind=\"shared\"} 8\n",
            "webdis_pubsub_topics{kind=\"pattern\"} 4\n",
            "webdis_build_info{version=\"1.2.3\"} 1\n",
            "webdis_uptime_seconds 1.5\n",
            "process_start_time_seconds 1700000000.25\n",
            "webdis_config_reloads_total{result=\"success\"} 1\n",
            "process_resident_memory_bytes 4096\n",
            "process_max_fds 1024\n",
        ] {
            assert!(out.contains(line), "{line:?} not in:\n{out}");
        }
        assert!(!out.contains("process_open_fds"));
        // Every sample line belongs to the family declared last.
        let mut family = "";
        for l in out.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                assert!(l.starts_with(family), "{l} outside {family}");
            }
        }
    }

    #[test]
    fn label_values_escaped() {
        let mut out = String::new();
        labels(&mut out, &[("node", "127.0.0.1:7000"), ("state", "up")]);
        assert_eq!(out, r#"{node="127.0.0.1:7000",state="up"}"#);
        out.clear();
        labels(&mut out, &[("node", "a\\b\"c\nd:1"), ("x", "\"")]);
        assert_eq!(out, r#"{node="a\\b\"c\nd:1",x="\""}"#);
        out.clear();
        labels(&mut out, &[("v", "é\n")]);
        assert_eq!(out, r#"{v="é\n"}"#);
        out.clear();
        labels(&mut out, &[]);
        assert_eq!(out, "");
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_code(b"200"), 200);
        assert_eq!(status_code(b"5x3"), 0);
        assert_eq!(status_code(b"50"), 0);
    }
}
