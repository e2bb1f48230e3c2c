"""loadtest/harness.py — what loadtest/run and loadtest/fanout share.

Child processes recorded and stopped by PID (never by name), /proc readings (CPU
time, RSS), installing missing Debian tools, building webdis-rs, loopback ports,
a minimal Redis and HTTP client, and starting redis-server and a gateway (webdis-rs
or the C webdis) with a webdis-format config in a temp dir.  Only 127.0.0.1 is ever
used.
"""

import ctypes
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent          # loadtest/
REPO = HERE.parent                               # repository root (cargo runs here)
HOST = "127.0.0.1"
THREADS = 2        # worker threads of every gateway (and of the floor)
CLK_TCK = os.sysconf("SC_CLK_TCK")
FLOOR_SRC = HERE / "floor" / "floor.c"
LOG_PREFIX = "loadtest"   # the tag of log() lines; each script may set its own


class SetupError(Exception):
    """The run cannot start or continue (exit status 2)."""


def log(msg):
    print("[%s] %s" % (LOG_PREFIX, msg), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Child processes: every one is recorded so that cleanup() can stop it by PID.
# --------------------------------------------------------------------------

CHILDREN = []  # subprocess.Popen objects still to be stopped


def _die_with_parent():
    """preexec_fn: SIGTERM the child if the harness itself is killed (-9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(argv, **kw):
    """Starts a child in its own session (so a terminal Ctrl-C reaches only the
    harness, which then stops the children in order) and records it."""
    proc = subprocess.Popen(argv, start_new_session=True,
                            preexec_fn=_die_with_parent, **kw)
    CHILDREN.append(proc)
    return proc


def stop(proc, timeout=3.0):
    """SIGTERM, then SIGKILL after `timeout`, of one child we started, by PID."""
    if proc.returncode is None and proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def cleanup():
    for proc in list(reversed(CHILDREN)):
        try:
            stop(proc)
        except Exception as e:  # keep stopping the others
            log("could not stop pid %d: %s" % (proc.pid, e))


def on_sigterm(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


# --------------------------------------------------------------------------
# /proc readings
# --------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime+stime of the whole process (all its threads, /proc/PID/stat
    fields 14 and 15), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SetupError("no VmRSS for pid %d" % pid)


# --------------------------------------------------------------------------
# Tools: install, build, versions
# --------------------------------------------------------------------------

def ensure_tools(needed):
    """apt-get installs the Debian packages of any missing command."""
    missing = [pkg for cmd, pkg in needed if shutil.which(cmd) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SetupError("missing %s and not root: install them with apt-get" % missing)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("installing %s with apt-get" % " ".join(missing))
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y"] + missing):
        if subprocess.run(argv, env=env, stdout=sys.stderr).returncode != 0:
            raise SetupError("%s failed" % " ".join(argv))
    for cmd, pkg in needed:
        if shutil.which(cmd) is None:
            raise SetupError("%s is still missing after installing %s" % (cmd, pkg))


def build_webdis_rs():
    log("cargo build --release (in %s)" % REPO)
    if shutil.which("cargo") is None:
        raise SetupError("cargo not found: install Rust, or use --no-build / --webdis-rs PATH")
    if subprocess.run(["cargo", "build", "--release"], cwd=REPO,
                      stdout=sys.stderr).returncode != 0:
        raise SetupError("cargo build --release failed")


def build_floor(tmp):
    """Compiles the floor (loadtest/floor/floor.c) into `tmp` with the system C compiler;
    returns the binary's path, or None (with the reason logged) when there is no compiler
    or it fails: the run then goes on without the floor."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        log("warning: no C compiler (cc): the floor is left out of this run")
        return None
    binary = tmp / "floor"
    proc = subprocess.run([cc, "-O2", "-pthread", "-o", str(binary), str(FLOOR_SRC)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        log("warning: compiling the floor failed, it is left out of this run:\n%s"
            % (proc.stdout + proc.stderr)[-1000:])
        return None
    return binary


def default_webdis_rs_bin():
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "webdis-rs"


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as e:
        return "unknown (%s)" % e


# --------------------------------------------------------------------------
# Networking helpers (loopback only)
# --------------------------------------------------------------------------

def free_port():
    """A port that was free a moment ago: bind port 0, read it, close.  The
    callers retry with a new port if a server then fails to bind it."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_taken(port):
    """True if something else now listens on `port` (a lost port race)."""
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
            return False
        except OSError:
            return True


def redis_command(sock, *args):
    """Sends one command, returns the raw reply line (seeding only needs +OK)."""
    enc = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    sock.sendall(b"*%d\r\n" % len(enc)
                 + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in enc))
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise SetupError("redis closed the connection")
        reply += chunk
    return reply


def raw_get(port, path, timeout=2.0):
    """One GET on a fresh connection; returns (status, the whole raw response)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), HOST.encode()))
        status, head, body = read_full_response(s)
    return status, head + b"\r\n\r\n" + body


def http_get(port, path, timeout=2.0):
    """One GET on a fresh connection; returns (status, body)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), HOST.encode()))
        return read_response(s)


def read_response(sock, buf=b""):
    """Reads one Content-Length framed response; returns (status, body)."""
    status, _, body = read_full_response(sock, buf)
    return status, body


def read_full_response(sock, buf=b""):
    """Reads one Content-Length framed response; returns (status, head, body), the
    head without its final empty line."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a full response")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a body")
        body += chunk
    return status, head, body[:length]


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

class Server:
    def __init__(self, name, proc, port, logfile):
        self.name, self.proc, self.port, self.logfile = name, proc, port, logfile

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=5):
        try:
            return "".join(Path(self.logfile).read_text(errors="replace")
                           .splitlines(True)[-n:]).strip()
        except OSError:
            return ""


def start_redis(tmp):
    for attempt in range(3):
        port = free_port()
        logfile = tmp / "redis.log"
        proc = spawn(["redis-server", "--port", str(port), "--bind", HOST,
                      "--save", "", "--appendonly", "no", "--dir", str(tmp),
                      "--daemonize", "no", "--logfile", str(logfile)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection((HOST, port), timeout=1) as s:
                    if redis_command(s, "PING").startswith(b"+PONG"):
                        return Server("redis", proc, port, logfile)
            except OSError:
                time.sleep(0.05)
        stop(proc)
        log("redis-server did not start on port %d (attempt %d)" % (port, attempt + 1))
    raise SetupError("could not start redis-server; see %s" % logfile)


def gateway_config(tmp, name, redis_port, http_port, extra=None):
    path = tmp / ("%s.json" % name)
    config = {
        "redis_host": HOST, "redis_port": redis_port,
        "http_host": HOST, "http_port": http_port,
        "threads": THREADS, "pool_size": 1, "database": 0,
        "daemonize": False, "websockets": False, "verbosity": 1,
        "logfile": str(tmp / ("%s.log" % name)),
    }
    config.update(extra or {})
    path.write_text(json.dumps(config, indent=1))
    return path


def start_gateway(tmp, name, binary, redis_port, extra=None, argv_for=None):
    """Starts one gateway and waits until GET /GET/hello answers {"GET":"world"}.
    A port lost to a race (the process exits at once) is retried with another
    port; a process that runs but does not answer within 5 s is an error.
    `argv_for(port)`, when given, is the command line of a server that takes no
    webdis config (the floor); else `binary` runs with a config file."""
    if not Path(binary).exists():
        raise SetupError("%s binary %s does not exist" % (name, binary))
    for attempt in range(3):
        port = free_port()
        if argv_for:
            argv = [str(a) for a in argv_for(port)]
        else:
            argv = [str(binary), str(gateway_config(tmp, name, redis_port, port, extra))]
        out = open(tmp / ("%s.stdout" % name), "wb")
        proc = spawn(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        server = Server(name, proc, port, tmp / ("%s.log" % name))
        last = "no answer"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = http_get(port, "/GET/hello", timeout=1)
                if status == 200 and body == b'{"GET":"world"}':
                    return server
                last = "answered %d %r" % (status, body[:80])
            except (OSError, ValueError, IndexError) as e:
                last = "%s: %s" % (type(e).__name__, e)
            time.sleep(0.05)
        code = proc.poll()
        stop(proc)
        tail = (tmp / ("%s.stdout" % name)).read_text(errors="replace")[-500:].strip()
        tail += ("\n" + server.log_tail()) if server.log_tail() else ""
        if code is not None and port_taken(port) and attempt < 2:
            log("%s: port %d taken, retrying" % (name, port))
            continue
        what = ("exited with status %s before answering" % code if code is not None
                else "did not answer GET /GET/hello within 5 s (%s)" % last)
        raise SetupError("%s (%s) is not a working server: it %s on %s:%d.%s"
                         % (name, binary, what, HOST, port,
                            ("\n--- its output/log ---\n" + tail) if tail else ""))
    raise SetupError("%s: could not find a free port" % name)


def raise_fd_limit(needed):
    """Raises RLIMIT_NOFILE to at least `needed` (else to the hard limit, with a
    warning).  Call it before the gateways start: they inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, 65536))
    if target != resource.RLIM_INFINITY and target < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
            return
        except (ValueError, OSError):
            log("warning: fd limit %d is below the %d this run needs" % (hard, needed))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def commit_label():
    """`commit <short hash>` of the repository, `-dirty` if files outside
    loadtest/ have uncommitted changes."""
    git = lambda *a: subprocess.run(["git", "-C", str(REPO)] + list(a),
                                    capture_output=True, text=True).stdout.strip()
    return ("commit " + git("rev-parse", "--short", "HEAD")
            + ("-dirty" if git("status", "--porcelain", "--", ".", ":!loadtest") else ""))
