#!/usr/bin/env python3
"""webdis-rs driven by a real WebSocket client library: `websocket-client` from PyPI
(the library webdis's own WebSocket tests use), the way a webdis client uses it.

Run by tests/it/wsclient.rs, which starts redis-server and webdis-rs with
`"websockets": true` and the ACL

    [{"disabled": ["DEL"]}, {"http_basic_auth": "user:password", "enabled": ["DEL"]}]

and runs, with the venv that `make test` creates (target/pyenv, see the Makefile):

    WEBDIS_PORT=PORT target/pyenv/bin/python tests/wsclient/client_test.py

Every check compares exact payloads, and the frame's opcode where it matters (text
frames come out of `recv()` as `str`, binary ones as `bytes`). Exit status 0 when every
test passed.
"""

import base64
import json
import os
import struct
import sys
import unittest
import uuid

import websocket
from websocket import ABNF, WebSocketConnectionClosedException, create_connection

PORT = int(os.environ.get("WEBDIS_PORT", "7379"))
BASE = f"ws://127.0.0.1:{PORT}"
TIMEOUT = 10
FORBIDDEN_JSON = '{"error":true,"message":"Forbidden","http_status":403}'
NOT_ALLOWED = "Command not allowed after subscribe"
UNKNOWN_ENDPOINT = "Unknown WebSocket endpoint: use / or /.json (JSON), or /.raw (RESP)"
BASIC_AUTH = "Authorization: Basic " + base64.b64encode(b"user:password").decode()


def connect(path, **kwargs):
    return create_connection(BASE + path, timeout=TIMEOUT, **kwargs)


def key(tag):
    """A key (or channel) no other test uses."""
    return f"wsclient:{tag}:{uuid.uuid4()}"


def resp(*args):
    """A RESP array of bulk strings, as bytes."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def bulk(value):
    """A RESP bulk string reply, as text."""
    return f"${len(value.encode())}\r\n{value}\r\n"


class Case(unittest.TestCase):
    def setUp(self):
        self.sockets = []

    def tearDown(self):
        for ws in self.sockets:
            ws.close(timeout=1)

    def open(self, path, **kwargs):
        ws = connect(path, **kwargs)
        self.sockets.append(ws)
        self.assertEqual(ws.getstatus(), 101)
        return ws

    def recv_text(self, ws):
        """The next data frame, which must be a text frame; its payload as `str`."""
        opcode, data = ws.recv_data()
        self.assertEqual(opcode, ABNF.OPCODE_TEXT, f"expected a text frame, got {data!r}")
        return data.decode("utf-8")

    def json_call(self, ws, *cmd):
        ws.send(json.dumps(list(cmd)))
        reply = ws.recv()
        self.assertIsInstance(reply, str)
        return reply

    def raw_call(self, ws, *cmd):
        """A RESP command sent in a text frame, as webdis's clients send it."""
        ws.send(resp(*cmd).decode("utf-8"))
        return ws.recv()


class JsonEndpoint(Case):
    def test_ping_on_both_json_paths(self):
        for path in ("/", "/.json"):
            ws = self.open(path)
            self.assertEqual(self.json_call(ws, "PING"), '{"PING":[true,"PONG"]}')

    def test_set_get_and_nil(self):
        ws = self.open("/.json")
        k = key("json")
        ws.send(json.dumps(["GET", k]))
        self.assertEqual(self.recv_text(ws), '{"GET":null}')
        self.assertEqual(self.json_call(ws, "SET", k, "héllo"), '{"SET":[true,"OK"]}')
        self.assertEqual(self.json_call(ws, "GET", k), '{"GET":"héllo"}')
        self.assertEqual(json.loads(self.json_call(ws, "STRLEN", k)), {"STRLEN": 6})

    def test_replies_keep_the_order_and_key_of_their_commands(self):
        ws = self.open("/.json")
        ws.send('["PING"]')
        ws.send('["ECHO","a"]')
        ws.send('["GET","%s"]' % key("nil"))
        self.assertEqual(ws.recv(), '{"PING":[true,"PONG"]}')
        self.assertEqual(ws.recv(), '{"ECHO":"a"}')
        self.assertEqual(ws.recv(), '{"GET":null}')

    def test_acl_denial_payload_and_basic_auth(self):
        k = key("acl")
        ws = self.open("/.json")
        self.assertEqual(self.json_call(ws, "SET", k, "v"), '{"SET":[true,"OK"]}')
        self.assertEqual(self.json_call(ws, "DEL", k), FORBIDDEN_JSON)
        self.assertEqual(self.json_call(ws, "EXISTS", k), '{"EXISTS":1}')
        # The handshake's Authorization header applies to every command.
        authed = self.open("/.json", header=[BASIC_AUTH])
        self.assertEqual(self.json_call(authed, "DEL", k), '{"DEL":1}')

    def test_1k_and_256k_frames(self):
        ws = self.open("/.json")
        for size in (1024, 256 * 1024):
            k = key(f"big{size}")
            value = "".join(chr(ord("a") + i % 26) for i in range(size))
            self.assertEqual(self.json_call(ws, "SET", k, value), '{"SET":[true,"OK"]}')
            reply = self.json_call(ws, "GET", k)
            self.assertEqual(len(reply), size + len('{"GET":""}'))
            self.assertEqual(reply, '{"GET":"%s"}' % value)

    def test_fragmented_message(self):
        ws = self.open("/.json")
        msg = json.dumps(["ECHO", "in two fragments"]).encode()
        ws.send_frame(ABNF.create_frame(msg[:7], ABNF.OPCODE_TEXT, fin=0))
        ws.send_frame(ABNF.create_frame(msg[7:], ABNF.OPCODE_CONT, fin=1))
        self.assertEqual(ws.recv(), '{"ECHO":"in two fragments"}')

    def test_ping_gets_a_pong_with_its_payload(self):
        ws = self.open("/.json")
        ws.ping("are you there")
        opcode, data = ws.recv_data(control_frame=True)
        self.assertEqual((opcode, data), (ABNF.OPCODE_PONG, b"are you there"))
        self.assertEqual(self.json_call(ws, "PING"), '{"PING":[true,"PONG"]}')

    def test_close_is_echoed(self):
        ws = connect("/.json")
        ws.send_close(1000, b"bye")
        frame = ws.recv_frame()
        self.assertEqual((frame.opcode, frame.data), (ABNF.OPCODE_CLOSE, b"\x03\xe8bye"))
        ws.shutdown()

    def test_bad_json_gets_an_error_frame(self):
        ws = self.open("/.json")
        self.assertEqual(
            self.json_call(ws, "INCRBY", key("n"), 1.5),
            '{"error":true,"message":"Arguments must be strings or integers","http_status":400}',
        )
        ws.send("not json")
        self.assertEqual(
            ws.recv(), '{"error":true,"message":"Invalid JSON","http_status":400}'
        )
        self.assertEqual(self.json_call(ws, "PING"), '{"PING":[true,"PONG"]}')

    def test_jsonp(self):
        ws = self.open("/.json?jsonp=cb")
        self.assertEqual(self.json_call(ws, "PING"), 'cb({"PING":[true,"PONG"]});\n')


class RawEndpoint(Case):
    def test_ping_is_a_string(self):
        ws = self.open("/.raw")
        reply = self.raw_call(ws, "PING")
        self.assertIsInstance(reply, str)
        self.assertEqual(reply, "+PONG\r\n")

    def test_set_get_and_nil(self):
        ws = self.open("/.raw")
        k = key("raw")
        self.assertEqual(self.raw_call(ws, "GET", k), "$-1\r\n")
        self.assertEqual(self.raw_call(ws, "SET", k, "wörld"), "+OK\r\n")
        self.assertEqual(self.raw_call(ws, "GET", k), bulk("wörld"))
        # A binary frame in, the same text frame out.
        ws.send_binary(resp("GET", k))
        self.assertEqual(self.recv_text(ws), bulk("wörld"))
        self.assertEqual(
            self.raw_call(ws, "INCR", k), "-ERR value is not an integer or out of range\r\n"
        )
        self.assertEqual(self.raw_call(ws, "RPUSH", k + "l", "a", "b"), ":2\r\n")
        self.assertEqual(
            self.raw_call(ws, "LRANGE", k + "l", "0", "-1"), "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        )

    def test_a_reply_that_is_not_utf8_is_binary(self):
        ws = self.open("/.raw")
        k = key("bin")
        ws.send_binary(resp("SET", k, b"\xff\x00\xfe"))
        self.assertEqual(ws.recv(), "+OK\r\n")
        ws.send_binary(resp("GET", k))
        opcode, data = ws.recv_data()
        self.assertEqual((opcode, data), (ABNF.OPCODE_BINARY, b"$3\r\n\xff\x00\xfe\r\n"))

    def test_acl_denial_payload(self):
        ws = self.open("/.raw")
        self.assertEqual(self.raw_call(ws, "DEL", key("acl")), "-ERR Forbidden\r\n")
        authed = self.open("/.raw", header=[BASIC_AUTH])
        self.assertEqual(self.raw_call(authed, "DEL", key("acl")), ":0\r\n")

    def test_1k_and_256k_frames(self):
        ws = self.open("/.raw")
        for size in (1024, 256 * 1024):
            k = key(f"rawbig{size}")
            value = "".join(chr(ord("A") + i % 26) for i in range(size))
            self.assertEqual(self.raw_call(ws, "SET", k, value), "+OK\r\n")
            self.assertEqual(self.raw_call(ws, "GET", k), bulk(value))


class PubSub(Case):
    def test_two_channels(self):
        sub = self.open("/.json")
        pub = self.open("/.json")
        channels = [key("ch1"), key("ch2")]
        for n, ch in enumerate(channels, 1):
            self.assertEqual(
                json.loads(self.json_call(sub, "SUBSCRIBE", ch)),
                {"SUBSCRIBE": ["subscribe", ch, n]},
            )
        for i in range(8):
            for ch in channels:
                self.assertEqual(self.json_call(pub, "PUBLISH", ch, f"m{i}"), '{"PUBLISH":1}')
        for i in range(8):
            for ch in channels:
                self.assertEqual(self.recv_text(sub), f'{{"SUBSCRIBE":["message","{ch}","m{i}"]}}')
        # While subscribed: PING as Redis answers it, other commands refused in plain text.
        self.assertEqual(self.json_call(sub, "PING"), '{"PING":["pong",""]}')
        self.assertEqual(self.json_call(sub, "GET", "k"), NOT_ALLOWED)
        # A channel never subscribed to is echoed with the count.
        zz = key("zz")
        self.assertEqual(
            json.loads(self.json_call(sub, "UNSUBSCRIBE", zz)),
            {"UNSUBSCRIBE": ["unsubscribe", zz, 2]},
        )
        for n, ch in enumerate(channels):
            self.assertEqual(
                json.loads(self.json_call(sub, "UNSUBSCRIBE", ch)),
                {"UNSUBSCRIBE": ["unsubscribe", ch, 1 - n]},
            )
        # Not subscribed any more: Redis's answer, the topic and 0.
        self.assertEqual(
            self.json_call(sub, "UNSUBSCRIBE", "zz"), '{"UNSUBSCRIBE":["unsubscribe","zz",0]}'
        )
        self.assertEqual(
            self.json_call(sub, "PUNSUBSCRIBE", "p*"), '{"PUNSUBSCRIBE":["punsubscribe","p*",0]}'
        )
        # Commands work again.
        self.assertEqual(self.json_call(sub, "PING"), '{"PING":[true,"PONG"]}')

    def test_raw_subscriber_gets_strings(self):
        sub = self.open("/.raw")
        pub = self.open("/.json")
        ch = key("rawch")
        n = len(ch)
        self.assertEqual(
            self.raw_call(sub, "SUBSCRIBE", ch), f"*3\r\n$9\r\nsubscribe\r\n${n}\r\n{ch}\r\n:1\r\n"
        )
        self.assertEqual(self.json_call(pub, "PUBLISH", ch, "héllo"), '{"PUBLISH":1}')
        self.assertEqual(
            self.recv_text(sub), f"*3\r\n$7\r\nmessage\r\n${n}\r\n{ch}\r\n$6\r\nhéllo\r\n"
        )
        self.assertEqual(self.raw_call(sub, "GET", "k"), NOT_ALLOWED)
        self.assertEqual(
            self.raw_call(sub, "UNSUBSCRIBE", "zz"),
            "*3\r\n$11\r\nunsubscribe\r\n$2\r\nzz\r\n:1\r\n",
        )
        self.assertEqual(
            self.raw_call(sub, "UNSUBSCRIBE"),
            f"*3\r\n$11\r\nunsubscribe\r\n${n}\r\n{ch}\r\n:0\r\n",
        )
        self.assertEqual(self.raw_call(sub, "PING"), "+PONG\r\n")


class Handshake(Case):
    def test_unknown_path_is_accepted_then_closed_with_1003(self):
        # webdis's own tests open such a socket and never use it: the handshake must
        # succeed. Data sent on it gets a close frame saying which paths are endpoints.
        for path in ("/.None", "/foo"):
            ws = connect(path)
            self.assertEqual(ws.getstatus(), 101)
            ws.ping("x")
            self.assertEqual(ws.recv_data(control_frame=True), (ABNF.OPCODE_PONG, b"x"))
            ws.send('["PING"]')
            frame = ws.recv_frame()
            self.assertEqual(frame.opcode, ABNF.OPCODE_CLOSE)
            code, reason = struct.unpack("!H", frame.data[:2])[0], frame.data[2:].decode()
            self.assertEqual((code, reason), (1003, UNKNOWN_ENDPOINT))
            ws.shutdown()

    def test_an_unused_socket_on_an_unknown_path_closes_cleanly(self):
        ws = connect("/.None")
        ws.close()
        self.assertFalse(ws.connected)

    def test_closed_socket_raises(self):
        ws = connect("/.json")
        ws.send_close(1000, b"")
        self.assertEqual(ws.recv_frame().data, b"\x03\xe8")
        with self.assertRaises((WebSocketConnectionClosedException, ConnectionError)):
            for _ in range(3):
                ws.recv_frame()
        ws.shutdown()


if __name__ == "__main__":
    print(f"websocket-client {websocket.__version__}, webdis-rs at {BASE}", file=sys.stderr)
    sys.exit(0 if unittest.main(verbosity=2, exit=False).result.wasSuccessful() else 1)
