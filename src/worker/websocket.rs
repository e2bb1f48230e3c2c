//! WebSocket fronts: the upgrade, client frames decoded into commands, and those commands
//! sent through the worker's shared back connections like HTTP requests (each reply is a
//! slot, so replies keep the order of the commands). Subscriptions use the worker's
//! multiplexed subscriber connection.

use super::dispatch::{handed_over, Outcome};
use super::{mark_front, respond, Worker};
use crate::api::command::{self, CommandError, Query, Route};
use crate::api::plan::{self, AclArgv, Cmd};
use crate::back::Waiter;
use crate::front::{Front, WsConn};
use crate::key::FrontKey;
use crate::log;
use crate::log::Level;
use crate::proto::http::{Method, Request};
use crate::proto::response::Status;
use crate::proto::ws::{self, Decoder, Event, Limits};
use crate::pubsub::SubRequest;
use crate::pubsub::{self, Style, TopicKind, Transport};
use crate::render::Output;
use crate::reply;
use crate::reply::{Extra, Meta};
use std::io::Write;

/// What one decoded client frame asks for.
enum Action {
    Nothing,
    /// A pong was written: flush it.
    Pong,
    Command(Result<Vec<Vec<u8>>, &'static str>),
    /// The client closes: send this close frame (its own payload echoed), then close.
    Close(Vec<u8>),
    /// A protocol error: close with this code and reason.
    Fail(ws::Fail),
}

impl Worker {
    /// A request with an `Upgrade` header while WebSockets are enabled: the handshake
    /// (RFC 6455 §4.2), or an error response and close.
    pub(super) fn upgrade(&mut self, k: FrontKey, req: &Request) {
        let max = self.shared.config.websocket_max_message;
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let Some(h) = req.websocket.as_deref() else {
            return;
        };
        let buf = busy.rbuf.bytes();
        let get = |r: &Option<std::ops::Range<usize>>| r.clone().map(|r| &buf[r]);
        let checked = ws::check_handshake(
            req.method == Method::Get,
            Some(&buf[h.upgrade.clone()]),
            get(&h.connection),
            get(&h.version),
            get(&h.key),
        );
        let target = &buf[req.target.clone()];
        let path = match memchr::memchr(b'?', target) {
            Some(i) => &target[..i],
            None => target,
        };
        // The endpoint chooses the format, as in webdis: JSON arrays or raw RESP. Any other
        // path is upgraded too, as webdis does, and told on its first data frame.
        let output = if path == b"/" || path.is_empty() || path.starts_with(b"/.json") {
            Some(Output::Json)
        } else if path.starts_with(b"/.raw") {
            Some(Output::Raw)
        } else {
            None
        };
        // ASCII (the request line's bytes are), so JSON replies stay valid text frames.
        let jsonp: Option<Box<[u8]>> = Query::parse(target)
            .jsonp
            .filter(|_| output == Some(Output::Json))
            .map(Into::into);
        // For the log line of a socket opened on a path that is no endpoint.
        let unknown = output
            .is_none()
            .then(|| String::from_utf8_lossy(path).into_owned());
        let authorization: Option<Box<[u8]>> = req.authorization.clone().map(|r| buf[r].into());
        let access = match &self.access {
            Some(a) => {
                let auth = req.authorization.clone().map(|r| &buf[r]);
                busy.log
                    .start(f.peer, auth, &a.date, super::first_line(buf))
            }
            None => 0,
        };
        // Kept alive as a WebSocket, or closed after the refusal: once answered, even
        // when requests ahead of it are still in flight.
        let upgraded = checked.is_ok();
        let meta = Meta {
            minor: req.minor,
            keep_alive: upgraded,
            access,
            born: self.now_us,
            ..Meta::default()
        };
        let seq = busy.push_slot(meta);
        let date = &self.date;
        match checked {
            Ok(accept) => {
                busy.ws = Some(Box::new(WsConn {
                    decoder: Decoder::new(Limits {
                        max_frame: max,
                        max_message: max,
                    }),
                    style: Style {
                        transport: Transport::Ws,
                        sse: false,
                        output: output.unwrap_or(Output::Json),
                        jsonp,
                        sep: None,
                    },
                    unknown_endpoint: output.is_none(),
                    authorization,
                    closing: false,
                }));
                match unknown {
                    None => log!(Level::Debug, "WS: {} upgraded", f.peer),
                    Some(path) => log!(
                        Level::Info,
                        "WS: {} upgraded on {path}, which is no endpoint",
                        f.peer
                    ),
                }
                respond(f, k, seq, &mut self.dirty_fronts, |out, _| {
                    ws::write_handshake(out, &accept)
                });
            }
            Err(e) => {
                let status = match e {
                    ws::HandshakeError::BadVersion => Status::UpgradeRequired,
                    _ => Status::BadRequest,
                };
                let msg = e.message();
                log!(Level::Info, "WS: handshake from {} refused: {msg}", f.peer);
                f.stop_parsing = true;
                respond(f, k, seq, &mut self.dirty_fronts, |out, meta| {
                    reply::error_with(out, meta, status, msg.as_bytes(), date)
                });
            }
        }
    }

    /// Decodes and runs the next message in a WebSocket's read buffer; `false` when there
    /// is no complete one.
    pub(super) fn parse_frame(&mut self, k: FrontKey) -> bool {
        let Some(f) = self.fronts.get_mut(k) else {
            return false;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return false;
        };
        let Some(conn) = busy.ws.as_deref_mut() else {
            return false;
        };
        let (action, used) = match conn.decoder.decode(busy.rbuf.bytes_mut()) {
            Ok(None) => return false,
            Ok(Some((event, used))) => {
                let action = match event {
                    // A socket opened on an unknown path takes no data.
                    Event::Text(_) | Event::Binary(_) | Event::Fragment
                        if conn.unknown_endpoint =>
                    {
                        Action::Fail(ws::UNKNOWN_ENDPOINT)
                    }
                    Event::Text(m) | Event::Binary(m) => Action::Command(match conn.style.output {
                        Output::Json => ws::parse_json_command(m),
                        _ => ws::parse_raw_command(m),
                    }),
                    Event::Ping(payload) => {
                        // A control frame may go out between data frames.
                        ws::write_frame(&mut busy.out.data, ws::Opcode::Pong, payload);
                        Action::Pong
                    }
                    Event::Pong | Event::Fragment => Action::Nothing,
                    Event::Close(code, reason) => {
                        // Echoed with the same payload, code and reason, as webdis does
                        // (the decoder checked both; a control frame's reason fits).
                        let mut close = Vec::new();
                        match code {
                            Some(c) => ws::write_close(
                                &mut close,
                                c,
                                std::str::from_utf8(reason).unwrap_or(""),
                            ),
                            None => ws::write_frame(&mut close, ws::Opcode::Close, b""),
                        }
                        Action::Close(close)
                    }
                };
                (action, used)
            }
            Err(fail) => (Action::Fail(fail), 0),
        };
        busy.rbuf.consume(used);
        match action {
            Action::Nothing => {}
            Action::Pong => mark_front(f, k, &mut self.dirty_fronts),
            Action::Command(Ok(argv)) => self.ws_command(k, argv),
            Action::Command(Err(msg)) => self.ws_now(k, Status::BadRequest, msg.as_bytes()),
            Action::Close(close) => self.ws_finish(k, &close, false),
            Action::Fail(fail) => {
                self.stats.ws_too_large += u64::from(fail.code == ws::close::TOO_BIG);
                log!(
                    Level::Info,
                    "WS: closing {} with {}: {}",
                    f.peer,
                    fail.code,
                    fail.reason
                );
                let mut close = Vec::new();
                ws::write_close(&mut close, fail.code, fail.reason);
                self.ws_finish(k, &close, true);
            }
        }
        true
    }

    /// Ends a WebSocket: `close` (the echo of the client's close frame, or a close with
    /// a protocol error, `failed`) goes out after the replies still due; subscriptions
    /// end, nothing more is parsed, and the connection closes once the frame is written
    /// (or when the client goes away first). A protocol error also gives up blocking
    /// commands in flight, which might never end, and closes their connections, so they
    /// cannot take data nobody will receive.
    pub(super) fn ws_finish(&mut self, k: FrontKey, close: &[u8], failed: bool) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let gen = f.gen;
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let blocking = if failed {
            busy.abandon_blocking()
        } else {
            Default::default()
        };
        let sub = busy.sub.take();
        // Subscribe requests still waiting for Redis are answered with nothing.
        for seq in sub
            .iter()
            .flat_map(|s| s.pending.iter().filter_map(|p| p.seq))
        {
            busy.complete(seq, |_, _| {});
        }
        busy.push(close);
        if let Some(conn) = busy.ws.as_deref_mut() {
            conn.closing = true;
        }
        busy.rbuf.clear();
        f.stop_parsing = true;
        mark_front(f, k, &mut self.dirty_fronts);
        for b in blocking {
            self.drop_back(b);
        }
        if let Some(sub) = sub {
            self.leave_all((k, gen), &sub);
        }
    }

    /// Answers a WebSocket message at once with an error frame, in order.
    fn ws_now(&mut self, k: FrontKey, status: Status, msg: &[u8]) {
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let Some(conn) = busy.ws.as_deref() else {
            return;
        };
        let meta = Meta {
            status: crate::metrics::status_code(status.code()),
            ..ws_meta(conn, self.now_us)
        };
        let seq = busy.push_slot(meta);
        respond(f, k, seq, &mut self.dirty_fronts, |out, meta| {
            reply::ws_error_frame(out, meta.output, status, msg)
        });
    }

    /// Runs one command received over a WebSocket.
    fn ws_command(&mut self, k: FrontKey, argv: Vec<Vec<u8>>) {
        let cfg = &self.shared.config;
        let Some(f) = self.fronts.get_mut(k) else {
            return;
        };
        let (gen, peer) = (f.gen, f.peer);
        let Some(busy) = f.busy.as_deref_mut() else {
            return;
        };
        let prefer = busy.lane(f.back as usize, self.backs.bulk_lane());
        let Some(conn) = busy.ws.as_deref() else {
            return;
        };
        let name: &[u8] = &argv[0];
        log!(Level::Debug, "WS: {}", String::from_utf8_lossy(name));
        if cfg.acl.as_ref().is_some_and(|acl| {
            let auth = conn.authorization.as_deref();
            !plan::acl_allows(acl, peer, auth, &Cmd::Argv(&argv), &mut AclArgv::default())
        }) {
            log!(
                Level::Info,
                "WS: ACL: {} denied {}",
                peer,
                String::from_utf8_lossy(name)
            );
            self.stats.acl_denied += 1;
            return self.ws_now(k, Status::Forbidden, b"Forbidden");
        }
        let mut meta = ws_meta(conn, self.now_us);
        meta.set_command(name, conn.style.output);
        meta.extra = conn.style.jsonp.as_ref().map(|cb| {
            Box::new(Extra {
                jsonp: Some(cb.to_vec()),
                ..Extra::default()
            })
        });
        let subscribed = busy
            .sub
            .as_ref()
            .is_some_and(|s| !s.is_empty() || !s.pending.is_empty());
        match TopicKind::of_command(name) {
            Some((kind, true)) if argv.len() >= 2 => {
                let style = conn.style.clone();
                meta.pubsub = true;
                let seq = busy.push_slot(meta);
                let mut argv = argv;
                let name = argv.remove(0);
                self.start_subscription(
                    k,
                    seq,
                    SubRequest {
                        kind,
                        name: name.as_slice().into(),
                        topics: argv,
                        style,
                    },
                );
            }
            Some((kind, false)) => {
                let style = conn.style.clone();
                meta.pubsub = true;
                let seq = busy.push_slot(meta);
                let bytes = if busy.sub.is_some() {
                    self.unsubscribe(k, kind, &argv[1..], name)
                } else {
                    // Not subscribed: Redis's answers, one `[unsubscribe, topic, 0]` per
                    // topic named, or `[unsubscribe, nil, 0]` when none is.
                    let word = kind.confirmation(false);
                    let mut frame = Vec::new();
                    let mut bytes = Vec::new();
                    if argv.len() == 1 {
                        pubsub::write_confirmation(&mut frame, word, None, 0);
                        pubsub::render(&mut bytes, &style, name, &frame);
                    }
                    for topic in &argv[1..] {
                        frame.clear();
                        pubsub::write_confirmation(&mut frame, word, Some(topic), 0);
                        pubsub::render(&mut bytes, &style, name, &frame);
                    }
                    bytes
                };
                // Subscribe requests waiting for a topic just left are answered now.
                self.try_confirm(k);
                let Some(busy) = self.fronts.get_mut(k).and_then(|f| f.busy.as_deref_mut()) else {
                    return;
                };
                busy.complete(seq, |out, _| out.extend_from_slice(&bytes));
                // After the last unsubscribe, commands work again.
                if busy
                    .sub
                    .as_ref()
                    .is_some_and(|s| s.is_empty() && s.pending.is_empty())
                {
                    busy.sub = None;
                }
                if let Some(f) = self.fronts.get_mut(k) {
                    mark_front(f, k, &mut self.dirty_fronts);
                }
            }
            _ if subscribed && name.eq_ignore_ascii_case(b"PING") => {
                // What Redis answers a subscribed connection: `[pong, message]`.
                let style = conn.style.clone();
                let mut frame = b"*2\r\n$4\r\npong\r\n".to_vec();
                crate::proto::resp::write_bulk(&mut frame, argv.get(1).map_or(&b""[..], |a| a));
                let mut bytes = Vec::new();
                pubsub::render(&mut bytes, &style, name, &frame);
                let seq = busy.push_slot(meta);
                busy.complete(seq, |out, _| out.extend_from_slice(&bytes));
                mark_front(f, k, &mut self.dirty_fronts);
            }
            _ if subscribed => {
                // webdis's answer, as it sends it on both endpoints: these plain bytes in
                // a text frame (not a JSON error object, not a RESP error). Counted as a
                // 403, like the other commands refused.
                meta.status = 403;
                let seq = busy.push_slot(meta);
                respond(f, k, seq, &mut self.dirty_fronts, |out, _| {
                    ws::write_frame(out, ws::Opcode::Text, NOT_AFTER_SUBSCRIBE)
                });
            }
            _ => match command::route_of_argv(&argv) {
                Err(CommandError::Empty | CommandError::Refused | CommandError::BadDatabase) => {
                    log!(Level::Info, "WS: 403 {}", String::from_utf8_lossy(name));
                    self.ws_now(k, Status::Forbidden, b"Forbidden")
                }
                // A subscribe command without a topic: Redis's own error.
                Ok(route) => {
                    let route = if route == Route::Subscribe {
                        Route::Shared
                    } else {
                        route
                    };
                    // The edge cache, as for an HTTP request (`dispatch`): a hit, or the
                    // command as the cache wrote it.
                    let seq = busy.base_seq + busy.slots.len() as u64;
                    let mut seen = None;
                    if let Some(c) = self.cache.as_deref_mut() {
                        let (id, at, cmd) = ((k, gen, seq), self.turn.at, Cmd::Argv(&argv));
                        let hit = c.before(cfg.database, &cmd, id, at, &mut meta, &mut self.stats);
                        if let Some(i) = hit {
                            busy.push_slot(meta);
                            self.carry_out(k, seq, Outcome::Cached(i));
                            return;
                        }
                        seen = c.resp();
                    }
                    let pushed = busy.push_slot(meta);
                    debug_assert_eq!(pushed, seq);
                    let waiter = Waiter::front(k, gen, seq);
                    let due = self
                        .deadlines
                        .due(self.turn, route, || Cmd::Argv(&argv).block_limit());
                    let write = |w: &mut Vec<u8>| match seen {
                        Some(resp) => w.extend_from_slice(resp),
                        None => crate::proto::resp::write_argv(w, &argv),
                    };
                    let sent = self.backs.send(route, None, prefer, waiter, due, write);
                    let cache = self.cache.as_deref_mut();
                    let (timers, stats, now) = (&mut self.timers, &mut self.stats, self.turn.at);
                    handed_over(&sent, 1, (k, gen, seq), now, timers, stats, cache);
                    self.carry_out(k, seq, Outcome::sent(route, sent.map(|(b, _)| b)));
                }
            },
        }
        // (Connections opened on first use: by parse_requests, after the batch.)
    }
}

/// What a subscribed socket gets for a command other than (P|S)(UN)SUBSCRIBE and PING.
const NOT_AFTER_SUBSCRIBE: &[u8] = b"Command not allowed after subscribe";

/// The slot of a WebSocket message: its reply is one frame in the connection's format,
/// and the connection stays open after it.
fn ws_meta(conn: &WsConn, born: u32) -> Meta {
    Meta {
        born,
        output: conn.style.output,
        minor: 1,
        keep_alive: true,
        ws: true,
        ..Meta::default()
    }
}

/// Best effort before a forced close: a close frame written straight to the socket
/// (it is dropped if the client's window is full, which is why it is being closed).
/// Returns the bytes written.
pub(super) fn close_now(f: &mut Front, code: u16, reason: &str) -> usize {
    let mut close = Vec::new();
    ws::write_close(&mut close, code, reason);
    f.sock.write(&close).unwrap_or(0)
}
