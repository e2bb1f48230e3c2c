#!/usr/bin/env python3
"""Writes the seed corpora, fuzz/corpus/<target>/seed-*, from inputs of the tests
(tests/*.rs, src/*/tests). Run from anywhere; the files are committed, so this is only
needed to change them. Each seed is small (the largest is the 6 KB COMMAND INFO reply
of tests/data)."""
import os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def masked(op, payload, fin=True, mask=b"\x37\xfa\x21\x3d"):
    """A client frame (masked)."""
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


# ---- HTTP requests (tests/http_protocol.rs, tests/websocket.rs) ----------------------
http = {
    "get": "GET /GET/k HTTP/1.1\r\nHost: t\r\n\r\n",
    "get-10": "GET /PING HTTP/1.0\r\n\r\n",
    "keep-alive": "GET /GET/k HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    "pipelined": "GET /PING HTTP/1.1\r\nHost: t\r\n\r\nGET /GET/k.json?jsonp=cb HTTP/1.1\r\nHost: t\r\n\r\n",
    "post": "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nSET/k/val",
    "put-chunked": "PUT /SET/ck HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
    "expect": "PUT /SET/k HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    "etag-auth": "GET /GET/k HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"abc\"\r\n"
    "Authorization: Basic dXNlcjpwYXNzd29yZA==\r\nAccept: text/event-stream\r\n\r\n",
    "absolute": "GET http://example.com/GET/k?type=text/plain HTTP/1.1\r\nHost: t\r\n\r\n",
    "websocket": "GET /.json HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "bad-length": "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "te-cl": "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
}
for k, v in http.items():
    write("http_request", k, v)

# ---- URL -> command: method byte (0 GET, 1 POST, 2 PUT), target, NUL, body ----------
urls = {
    "get": b"\x00/GET/k",
    "encoded": b"\x00/SET/k/a%20b+c%2Fd.json?jsonp=cb",
    "db": b"\x00/7/GET/k.msgpack",
    "custom": b"\x00/GET/k.txt?type=text/plain&sep=,&filename=x.txt",
    "raw": b"\x00/LRANGE/l/0/-1.raw",
    "subscribe": b"\x00/SUBSCRIBE/a/b",
    "blocking": b"\x00/BLPOP/k/0",
    "refused": b"\x00/SELECT/1",
    "multi": b"\x00/MULTI",
    "empty": b"\x00/",
    "post": b"\x01/\x00SET/k/v%21",
    "put": b"\x02/SET/k\x00body bytes",
    "db-too-big": b"\x00/99999999999/GET/k",
}
for k, v in urls.items():
    write("url_command", k, v)

# ---- RESP frames (src/resp.rs, src/render tests) ------------------------------------
frames = {
    "simple": b"+OK\r\n",
    "error": b"-ERR wrong\r\n",
    "int": b":-42\r\n",
    "bulk": b"$5\r\nhello\r\n",
    "nil": b"$-1\r\n",
    "array": b"*3\r\n$1\r\na\r\n:1\r\n*-1\r\n",
    "nested": b"*2\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n*1\r\n+c\r\n",
    "map": b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n#t\r\n",
    "set": b"~2\r\n+x\r\n,1.5\r\n",
    "resp3-scalars": b"*6\r\n_\r\n,inf\r\n,-nan\r\n(12345678901234567890\r\n=7\r\ntxt:abc\r\n!3\r\nERR\r\n",
    "attribute": b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
    "push": b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
    "pipelined": b"+PONG\r\n$1\r\nv\r\n:1\r\n",
    "xrange": b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    "xread": b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    "xpending": b"*4\r\n:1\r\n$3\r\n1-0\r\n$3\r\n1-0\r\n*1\r\n*2\r\n$1\r\nc\r\n$1\r\n1\r\n",
    "georadius": b"*1\r\n*3\r\n$1\r\na\r\n$6\r\n0.0001\r\n*2\r\n$3\r\n1.5\r\n$3\r\n2.5\r\n",
    "deep": b"*1\r\n" * 63 + b":1\r\n",
}
# INFO's text, for the INFO reshaping.
info_text = b"# Server\r\nredis_version:7.0.15\r\nuptime:1\r\n# Clients\r\nc:1\r\n"
frames["info"] = b"$%d\r\n%s\r\n" % (len(info_text), info_text)
for k, v in frames.items():
    write("resp", k, v)
    write("render", k, v)

# ---- WebSocket frames (src/ws.rs tests, RFC 6455 5.7) -------------------------------
ws = {
    "text": masked(1, b"Hello"),
    "json-command": masked(1, b'["SET","k","v"]'),
    "raw-command": masked(2, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
    "fragmented": masked(1, b'["GET",', fin=False) + masked(9, b"ping") + masked(0, b'"k"]'),
    "ping-pong": masked(9, b"hi") + masked(10, b""),
    "close": masked(8, b"\x03\xe8bye"),
    "medium": masked(2, b"x" * 200),
    "utf8-split": masked(1, "h\u00e9".encode()[:2], fin=False) + masked(0, "h\u00e9".encode()[2:]),
}
for k, v in ws.items():
    write("ws_decoder", k, v)

cmds = {
    "json": b'["SET","k","v"]',
    "json-ints": b'["INCRBY","k",-9223372036854775808,18446744073709551615]',
    "json-unicode": '["SET","k\\u0000","\u00e9\\ud83d\\ude00"]'.encode(),
    "raw": b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    "raw-int": b"*2\r\n$4\r\nINCR\r\n:5\r\n",
}
for k, v in cmds.items():
    write("ws_command", k, v)

# ---- rules (tests/rules.rs): JSON, then NUL-separated requests ----------------------
def rq(method, target, head=b"", body=b""):
    return b"\x00" + bytes([method]) + target + b"\x01" + head + b"\x01" + body

rules = {
    "substitution": (
        br'''[{"match": "^profile/([^/]+)/([^/]+)$", "command": "SET user:$1:$2 \"$2 of $1\"", "method": "PUT"},
 {"match": "^greet/(?P<who>[^/]+)$", "command": "SET \"greeting for ${who}\" \"hello, ${who}!\""},
 {"match": "^price/(?P<n>[0-9]+)$", "command": "SET price \\$${n}.00 \"\""},
 {"match": "^echo/(.*)$", "command": "ECHO <$1|$0>"},
 {"match": "^ping$", "command": "PING"}]'''
        + rq(3, b"/profile/ann/age") + rq(0, b"/greet/bob") + rq(0, b"/price/12")
        + rq(0, b"/echo/a%20b.json") + rq(5, b"/ping") + rq(4, b"/ping")
    ),
    "form-query-header": (
        br'''{"rules": [{"match": "^notes$", "method": "POST", "command": "HSET note:${FORM:id} text ${FORM:text} tag ${FORM:tag:-none}"},
 {"match": "^list/([^/]+)$", "command": "LRANGE $1 ${QSA:start:-0} ${QSA:stop:--1}"},
 {"match": "^h$", "command": "SET token ${HEADER:X-Token}"}], "rules_only": true}'''
        + rq(2, b"/notes", b"POST /notes HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n", b"id=1&text=a+b%21")
        + rq(0, b"/list/l?start=1&stop=2")
        + rq(0, b"/h", b"GET /h HTTP/1.1\r\nX-Token: abc\r\nAccept: application/x-msgpack\r\n")
        + rq(0, b"/nothing")
    ),
    "body-formats-statuses": (
        br'''[{"match": "^blob/([^/]+)$", "command": "SET blob:$1 %{DATA}", "method": ["PUT", "POST"]},
 {"match": "^wrapped/([^/]+)$", "command": "SET w:$1 [%{DATA}]", "method": "PUT"},
 {"match": "^num/([^/]+)$", "command": "GET $1", "format": "txt"},
 {"match": "^h/([^/]+)/([^/]+)$", "command": "HGET $1 $2", "errors": {"WRONGTYPE": 409, "*": 422}, "nil": 404},
 {"match": "^any/(.*)$", "command": "$1"}]'''
        + rq(3, b"/blob/x", b"", b"\x00\xff bytes") + rq(3, b"/wrapped/y", b"", b"data")
        + rq(0, b"/num/n.xml") + rq(0, b"/h/k/f") + rq(0, b"/any/INFO") + rq(0x80, b"/h/k/f?type=text/plain")
    ),
}
for k, v in rules.items():
    write("rules", k, v)

# ---- config (webdis.json, webdis.prod.json, src/config.rs tests) --------------------
for name in ["webdis.json", "webdis.prod.json"]:
    with open(os.path.join(ROOT, name), "rb") as f:
        write("config", name.replace(".json", ""), f.read())
write("config", "acl-rules-ssl", br'''{"redis_host":"$REDIS_HOST","redis_port":6379,"redis_auth":["user","$PW"],
"threads":2,"pool_size":"4","http_max_request_size":"1m","acl_default":"deny",
"acl":[{"ip":"10.0.0.0/8","enabled":["GET"],"keys":["public:*","u[a-c]?"]},
{"http_basic_auth":"user:password","disabled":["DEBUG"]},{"ip":"::1/128","enabled":["*"]}],
"ssl":{"enabled":true,"ca_cert_bundle":"/tmp/ca.pem","server_name":"redis"},
"rules":[{"match":"^ping$","command":"PING"}],"rules_only":false,"websockets":true,
"log_fsync":"auto","verbosity":5,"redis_protocol":3,"websocket_max_message":"16k"}''')

# ---- keyspec: COMMAND table, 0xFF, command line --------------------------------------
with open(os.path.join(ROOT, "tests/data/redis-7.0-command-info.resp"), "rb") as f:
    info = f.read()
for name, line in [("get", b"GET public:x"), ("eval", b"EVAL s 2 a b x")]:
    write("keyspec", "redis7-" + name, info + b"\xff" + line)
old = (b"*3\r\n*6\r\n$4\r\nmset\r\n:-3\r\n*1\r\n+write\r\n:1\r\n:-1\r\n:2\r\n"
       b"*6\r\n$4\r\nping\r\n:-1\r\n*1\r\n+fast\r\n:0\r\n:0\r\n:0\r\n"
       b"*6\r\n$4\r\neval\r\n:-3\r\n*1\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n")
write("keyspec", "first-last-step", old + b"\xffMSET a* 1 b 2")


def entry(name, index, find):
    return (b"*10\r\n$%d\r\n%s\r\n:-2\r\n*0\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n"
            b"*1\r\n*6\r\n$5\r\nflags\r\n*0\r\n"
            b"$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n"
            b"*2\r\n$5\r\nindex\r\n:%d\r\n$9\r\nfind_keys\r\n%s*0\r\n") % (len(name), name, index, find)


def keynum(idx, first, step):
    return (b"*4\r\n$4\r\ntype\r\n$6\r\nkeynum\r\n$4\r\nspec\r\n*6\r\n"
            b"$9\r\nkeynumidx\r\n:%d\r\n$8\r\nfirstkey\r\n:%d\r\n$7\r\nkeystep\r\n:%d\r\n") % (idx, first, step)


def rng(last, step, limit=0):
    return (b"*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n"
            b"$7\r\nlastkey\r\n:%d\r\n$7\r\nkeystep\r\n:%d\r\n$5\r\nlimit\r\n:%d\r\n") % (last, step, limit)


write("keyspec", "negative-index", b"*1\r\n" + entry(b"get", -2, keynum(0, 1, 1)) + b"\xffGET public:x")
write("keyspec", "huge-step", b"*1\r\n" + entry(b"get", 1, rng(-1, 9223372036854775807)) + b"\xffGET public:x")
write("keyspec", "limit", b"*1\r\n" + entry(b"mset", 1, rng(-1, 2, 2)) + b"\xffMSET a 1 b 2")


# ---- cluster: a merge kind byte, then RESP frames from Redis ----------------------------

write("cluster", "slots", b"\x00*1\r\n*4\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:30001\r\n"
      b"$40\r\n0123456789012345678901234567890123456789\r\n*0\r\n"
      b"*3\r\n$9\r\n127.0.0.1\r\n:30004\r\n$1\r\nx\r\n")
write("cluster", "moved", b"\x01-MOVED 3999 127.0.0.1:6381\r\n-ASK 1 :7000\r\n-TRYAGAIN x\r\n")
write("cluster", "sum", b"\x00:3\r\n:4\r\n")
write("cluster", "concat", b"\x01*1\r\n$1\r\na\r\n*2\r\n$1\r\nb\r\n$1\r\nc\r\n")
write("cluster", "mget", b"\x03*2\r\n$1\r\na\r\n$-1\r\n*1\r\n$1\r\nb\r\n\x00\x00\x01\x00\x00\x01")
write("cluster", "scan", b"\x09*2\r\n$2\r\n17\r\n*1\r\n$1\r\nk\r\n")
write("cluster", "sentinel", b"\x02*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n*3\r\n$6\r\nmaster\r\n"
      b":0\r\n*0\r\n*3\r\n$12\r\nsunsubscribe\r\n$4\r\nnews\r\n:0\r\n"
      b"mymaster 127.0.0.1 6379 127.0.0.1 6380")
write("cluster", "command", b"\x02*3\r\n$4\r\nMGET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"
      b"*2\r\n$4\r\nSCAN\r\n$3\r\n1-5\r\n")

# ---- Upstash's API (tests/it/upstash.rs): JSON bodies, then whole requests -----------
def post(target, body, head=b""):
    return (b"POST " + target + b" HTTP/1.1\r\n" + head
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)

upstash = {
    "single": b'["SET","k","v","EX",100]',
    "pipeline": b'[["SET","a",1],["GET","a"],["HGETALL","h"]]',
    "escapes": '["SET","k\\u00e9","\\ud83d\\ude00 \\"q\\"\\n",true,-1.5e3]'.encode(),
    "client-setinfo": b'[["CLIENT","SETINFO","LIB-NAME","x"],["PING"]]',
    "request-post": post(b"/", b'["GET","hello"]', b"Authorization: Bearer t\r\n"),
    "request-multi": post(b"/multi-exec", b'[["INCR","a"],["GET","a"]]', b"Upstash-Encoding: base64\r\n"),
    "request-pipeline": post(b"/pipeline?_token=t", b'[["GET","a"],["BLPOP","q",1]]'),
    "request-path": b"GET /set/a%20b/c?EX=100&NX&_token=t HTTP/1.1\r\n\r\n",
    "request-path-body": post(b"/set/k", b"a value", b"Authorization: Bearer t\r\n"),
    "request-sub": post(b"/psubscribe/ch*?_token=t", b"[]"),
}
for k, v in upstash.items():
    write("upstash", k, v)
