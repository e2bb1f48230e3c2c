#!/usr/bin/env python3
"""loadtest/order_check.py — checks that a webdis-compatible gateway answers
pipelined requests in the order they were sent.

It owns only the check itself (loadtest/run starts it while a pipelined wrk run
loads the server, and seeds the keys beforehand): key `<prefix><i>` must hold
`v<i>` for i = 0..depth-1.

Each of --conns connections (one thread each) repeatedly writes a batch of
--depth pipelined `GET /GET/<prefix><i>` requests in ONE write, reads the
--depth responses (status line, Content-Length, body) and classifies the batch:
  in_order  every response is 200 and response i has body {"GET":"v<i>"}
  permuted  the right 200 responses, but in another order
  bad       anything else (wrong status or body, unparsable response, or the
            server closed the connection mid-batch)
The run is bounded by time (--seconds, plus a grace period for the batch in
flight), never by a batch count: stock webdis never sets TCP_NODELAY, so its
pipelined responses can take tens of milliseconds per batch.

Output: one line `JSON {...}` on stdout.  Exit status 0 whenever the check ran
(the caller decides what a given percentage means); 2 on a usage/connect error.
"""

import argparse
import json
import socket
import sys
import threading
import time

GRACE_S = 3.0  # how long past the deadline the batch in flight may take


class ProtocolError(Exception):
    pass


class Reader:
    """Reads HTTP/1.1 responses framed by Content-Length from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ProtocolError("connection closed by server")
        self.buf += data

    def response(self):
        """Returns (status, body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError("bad status line %r" % lines[0][:80])
        status = int(parts[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            raise ProtocolError("response without Content-Length")
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body


class Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.batches = self.in_order = self.permuted = self.bad = 0
        self.incomplete = 0  # batches cut short by the time bound
        self.errors = []  # first few error messages
        self.sample_order = None  # order of the first out-of-order batch

    def error(self, msg):
        with self.lock:
            if len(self.errors) < 5:
                self.errors.append(msg)


def worker(args, deadline, totals):
    depth = args.depth
    batch = b"".join(
        b"GET /GET/%s%d HTTP/1.1\r\nHost: %s\r\n\r\n"
        % (args.prefix.encode(), i, args.host.encode())
        for i in range(depth)
    )
    expected = [b'{"GET":"v%d"}' % i for i in range(depth)]
    index_of = {body: i for i, body in enumerate(expected)}
    sock = None
    while time.monotonic() < deadline:
        try:
            if sock is None:
                sock = socket.create_connection((args.host, args.port), timeout=5)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                reader = Reader(sock)
            sock.settimeout(max(0.1, deadline + GRACE_S - time.monotonic()))
            sock.sendall(batch)
            got = [reader.response() for _ in range(depth)]
        except socket.timeout:
            with totals.lock:
                totals.incomplete += 1
            break
        except (OSError, ProtocolError, ValueError) as e:
            totals.error("%s: %s" % (type(e).__name__, e))
            with totals.lock:
                totals.batches += 1
                totals.bad += 1
            if sock is not None:
                sock.close()
                sock = None
            time.sleep(0.05)
            continue
        bodies = [body for _, body in got]
        ok_status = all(status == 200 for status, _ in got)
        with totals.lock:
            totals.batches += 1
            if ok_status and bodies == expected:
                totals.in_order += 1
            elif ok_status and sorted(bodies) == sorted(expected):
                totals.permuted += 1
                if totals.sample_order is None:
                    totals.sample_order = [index_of[b] for b in bodies]
            else:
                totals.bad += 1
                if len(totals.errors) < 5:
                    totals.errors.append(
                        "unexpected batch: %r" % [(s, b[:40]) for s, b in got[:3]])
    if sock is not None:
        sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--prefix", default="ord:")
    args = p.parse_args()
    if args.host != "127.0.0.1":
        p.error("only 127.0.0.1 may be targeted")

    totals = Totals()
    deadline = time.monotonic() + args.seconds
    threads = [threading.Thread(target=worker, args=(args, deadline, totals), daemon=True)
               for _ in range(args.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + GRACE_S + 10)
    pct = 100.0 * totals.in_order / totals.batches if totals.batches else 0.0
    print("JSON " + json.dumps({
        "port": args.port, "conns": args.conns, "depth": args.depth,
        "seconds": args.seconds, "batches": totals.batches,
        "in_order": totals.in_order, "permuted": totals.permuted, "bad": totals.bad,
        "incomplete": totals.incomplete, "pct_in_order": round(pct, 2),
        "sample_order": totals.sample_order, "errors": totals.errors,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
