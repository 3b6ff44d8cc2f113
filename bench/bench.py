#!/usr/bin/env python3
"""Portcullis gateway benchmark (stdlib only).

Measures, in one invocation, with the cases alternating round by round (a,b,c,a,b,c,...):

  (a) smtp-source -> smtp-sink directly                      (upper bound of the load tools)
  (b) smtp-source -> Portcullis gateway -> smtp-sink         (delivery rate through the gateway)
  (c) smtp-source -> private Postfix relay -> smtp-sink      (the peer every gateway is built on)

Every run gets a fresh smtp-sink (on a fresh loopback port), and (b)/(c) a fresh gateway data dir /
fresh Postfix queue. The rate of a run is N / (time from smtp-source's start until the sink has
counted N messages). The sink is counted through `smtp-sink -c`, which writes a running
"sess=S quit=Q mesg=M\\r" record to stdout whenever a session ends, QUIT is received, or "." is
received; this script reads that stdout through a pipe and time-stamps each record.

Usually started through bench/run (installs packages, builds the gateway).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SINK_BACKLOG = "1000"
SENDER = "sender@external.test"
RECIPIENT = "rcpt@example.test"
DOMAIN = "example.test"
CASE_NAMES = {
    "a": "smtp-source -> smtp-sink",
    "b": "-> portcullis -> smtp-sink",
    "c": "-> postfix relay -> smtp-sink",
    "r": "-> portcullis, 100 rules -> sink",
}
# The rules of case (r): 100 realistic [[rules]] (bench/rules-100.toml).
RULES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rules-100.toml")
QUEUE_SUBDIRS = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")

OUT = sys.stdout  # human-readable output; switched to stderr with --json


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=OUT, flush=True)


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            data = f.read()[-8192:].decode("utf-8", "replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    data = data.replace("\r", "\n")
    return "\n".join(l for l in data.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# process bookkeeping: everything we start is registered and torn down at exit

_children = []  # Popen objects, each in its own session (process group)
_cleanups = []  # callables, run in reverse order


def spawn(argv, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    _children.append(p)
    return p


def kill_proc(p, grace=5.0):
    """SIGTERM the process group, SIGKILL after `grace` seconds. Returns the exit status."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)
    else:
        # leader gone; make sure nothing else of its group lingers
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return p.returncode


def cleanup_all():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep tearing down the rest
            print(f"bench: cleanup: {e}", file=sys.stderr)
    while _children:
        p = _children.pop()
        try:
            kill_proc(p, grace=2.0)
        except Exception as e:
            print(f"bench: cleanup: {e}", file=sys.stderr)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------------------------
# ports

_used_ports = set()


def free_port():
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise BenchError("could not find a free loopback port")


def wait_listening(port, timeout, what, proc=None, logfile=None):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise BenchError(
                f"{what} exited (status {proc.returncode}) before listening on 127.0.0.1:{port}"
                + (f"; last output of {logfile}:\n{tail(logfile)}" if logfile else "")
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(
                f"{what} did not accept TCP connections on 127.0.0.1:{port} within {timeout:.0f} s"
                + (f"; last output of {logfile}:\n{tail(logfile)}" if logfile else "")
            )
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# smtp-sink with a counter reader

_MESG_RE = re.compile(rb"mesg=(\d+)")


class Sink:
    def __init__(self, workdir, tag):
        self.port = free_port()
        self.errlog = os.path.join(workdir, f"sink-{tag}.err")
        self.countlog = os.path.join(workdir, f"sink-{tag}.count")
        self.count = 0
        self.last_change = None  # monotonic time of the last counter increase
        self.reached = {}  # target -> monotonic time the counter first reached it
        self.cond = threading.Condition()
        self.eof = False
        self._targets = []
        self.proc = spawn(
            ["smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{self.port}", SINK_BACKLOG],
            stdout=subprocess.PIPE,
            stderr=open(self.errlog, "wb"),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_listening(self.port, 10, "smtp-sink", self.proc, self.errlog)

    def expect(self, n):
        with self.cond:
            self._targets.append(n)
            if self.count >= n:
                self.reached.setdefault(n, time.monotonic())

    def _read(self):
        fd = self.proc.stdout.fileno()
        buf = b""
        with open(self.countlog, "wb") as keep:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                now = time.monotonic()
                if not chunk:
                    with self.cond:
                        self.eof = True
                        self.cond.notify_all()
                    return
                keep.write(chunk)
                buf += chunk
                # records end with "\r"; keep an unfinished one for the next read
                cut = max(buf.rfind(b"\r"), buf.rfind(b"\n"))
                if cut < 0:
                    continue
                done, buf = buf[: cut + 1], buf[cut + 1 :]
                found = _MESG_RE.findall(done)
                if not found:
                    continue
                value = int(found[-1])
                with self.cond:
                    if value > self.count:
                        self.count = value
                        self.last_change = now
                        for t in self._targets:
                            if value >= t and t not in self.reached:
                                self.reached[t] = now
                        self.cond.notify_all()

    def wait_for(self, n, deadline):
        """Wait until the counter reaches n; returns the monotonic time it did, or None."""
        with self.cond:
            while n not in self.reached:
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return None
                self.cond.wait(min(left, 0.5))
            return self.reached[n]

    def stop(self):
        kill_proc(self.proc, grace=2.0)
        self.reader.join(5)


# --------------------------------------------------------------------------------------------
# load generator


def run_source(port, n, workdir, tag, sink, timeout, message_file=None, sender=SENDER):
    """Run smtp-source against 127.0.0.1:port; wait for the sink to count n messages.
    `message_file`: send this pre-formatted message (LF line ends) instead of a generated one.

    Returns a dict with elapsed times (seconds, from smtp-source's start)."""
    errlog = os.path.join(workdir, f"source-{tag}.log")
    content = ["-F", message_file] if message_file else ["-l", "10240", "-S", "bench", "-N"]
    argv = [
        "smtp-source", "-d", "-s", "20", "-m", str(n), *content,
        "-M", "client.example.test", "-f", sender, "-t", RECIPIENT, f"127.0.0.1:{port}",
    ]
    sink.expect(n)
    with open(errlog, "wb") as err:
        t0 = time.monotonic()
        src = spawn(argv, stdout=err, stderr=subprocess.STDOUT)
        deadline = t0 + timeout
        try:
            src.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_proc(src)
            raise BenchError(
                f"run {tag}: smtp-source did not finish {n} messages within {timeout:.0f} s "
                f"(sink has counted {sink.count}); last output:\n{tail(errlog)}"
            )
    t_src = time.monotonic() - t0
    if src.returncode != 0:
        raise BenchError(
            f"run {tag}: smtp-source exited with status {src.returncode}; output:\n{tail(errlog)}"
        )
    t_done = sink.wait_for(n, deadline)
    if t_done is None:
        raise BenchError(
            f"run {tag}: the sink counted only {sink.count} of {n} messages within {timeout:.0f} s "
            f"of the load's start (smtp-source finished after {t_src:.2f} s)"
        )
    warnings = tail(errlog, 5).strip()
    return {"deliver_s": t_done - t0, "source_s": t_src, "source_output": warnings}


def settle_count(sink, n, quiet=1.0):
    """After the sink reached n, wait briefly for stray extra deliveries (duplicates)."""
    time.sleep(quiet)
    return sink.count


# --------------------------------------------------------------------------------------------
# case (a): direct


def case_direct(args, workdir, tag):
    sink = Sink(workdir, tag)
    try:
        r = run_source(sink.port, args.messages, workdir, tag, sink, args.timeout)
        r["sink_count"] = sink.count
    finally:
        sink.stop()
    return r


# --------------------------------------------------------------------------------------------
# case (b): the Portcullis gateway


def read_vmhwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


LOAD_LIMITS = "[limits]\nmax_connections_per_ip = 100\n"


def start_gateway(binary, workdir, tag, sink_port, top="", tables="", timeout=30, limits=LOAD_LIMITS):
    """Start the gateway on a fresh data dir and a free loopback port: plain SMTP, inbound mail
    for DOMAIN delivered to 127.0.0.1:sink_port, no metrics endpoint. `top` adds top-level
    keys, `tables` config tables; `limits` (by default more sessions from one address, for the
    load generators) may be "" for the default limits. Returns (process, SMTP port, log path)."""
    gwdir = os.path.join(workdir, f"gw-{tag}")
    data = os.path.join(gwdir, "data")
    os.makedirs(data)
    port = free_port()
    cfg = os.path.join(gwdir, "portcullis.toml")
    with open(cfg, "w") as f:
        f.write(
            f'hostname = "gw.bench.test"\n'
            f'data_dir = "{data}"\n'
            f'local_domains = ["{DOMAIN}"]\n'
            f"internal_networks = []\n"
            f'inbound_next_hop = "127.0.0.1:{sink_port}"\n'
            f'metrics_bind = ""\n'
            f'log_format = "text"\n'
            f"{top}"
            f"[[listeners]]\n"
            f'bind = "127.0.0.1:{port}"\n'
            f'tls = "none"\n'
            f"{limits}"
            f"[service]\n"
            f"allow_root = true\n"
            f"{tables}"
        )
    log = os.path.join(gwdir, "portcullis.log")
    with open(log, "wb") as lf:
        gw = spawn([binary, "run", "--config", cfg], stdout=lf, stderr=subprocess.STDOUT, cwd=gwdir)
    wait_listening(port, timeout, "the portcullis gateway", gw, log)
    return gw, port, log


def case_gateway(args, workdir, tag, top=""):
    n = args.messages
    sink = Sink(workdir, tag)
    gw = None
    try:
        gw, gwport, gwlog = start_gateway(args.gateway, workdir, tag, sink.port, top=top,
                                          timeout=args.start_timeout)
        try:
            r = run_source(gwport, n, workdir, tag, sink, args.timeout)
        except BenchError as e:
            raise BenchError(f"{e}\nlast lines of the gateway log {gwlog}:\n{tail(gwlog)}")
        r["sink_count"] = settle_count(sink, n)
        if gw.poll() is not None:
            raise BenchError(f"run {tag}: the gateway exited (status {gw.returncode}) during the run; "
                             f"log:\n{tail(gwlog)}")
        r["vmhwm_kib"] = read_vmhwm_kib(gw.pid)
        t = time.monotonic()
        rc = kill_proc(gw, grace=5.0)
        r["stop_s"] = time.monotonic() - t
        r["exit_status"] = rc
        gw = None
        return r
    finally:
        if gw is not None:
            kill_proc(gw, grace=5.0)
        sink.stop()


def case_gateway_rules(args, workdir, tag):
    """Case (b) with the 100 rules of bench/rules-100.toml."""
    return case_gateway(args, workdir, tag, top=f'rules_file = "{RULES_FILE}"\n')


# --------------------------------------------------------------------------------------------
# case (c): a private Postfix relay


def run_quiet(argv, what, timeout=60):
    """Run a Postfix admin command. Postfix prints its errors only to a terminal (or syslog),
    so on failure rerun it under script(1) to get the message."""
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        msg = (p.stdout + p.stderr).decode("utf-8", "replace").strip()
        if not msg and shutil.which("script"):
            q = subprocess.run(["script", "-qec", " ".join(_shq(a) for a in argv), "/dev/null"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
            msg = (q.stdout + q.stderr).decode("utf-8", "replace").strip()
        raise BenchError(f"{what} failed (status {p.returncode}): {' '.join(argv)}\n{msg}")
    return p.stdout.decode("utf-8", "replace")


def _shq(s):
    return "'" + s.replace("'", "'\\''") + "'"


def queue_files(qdir):
    total = 0
    for sub in QUEUE_SUBDIRS:
        for _root, _dirs, files in os.walk(os.path.join(qdir, sub)):
            total += len(files)
    return total


class PostfixRelay:
    def __init__(self, workdir, tag, sink_port):
        self.base = os.path.join(workdir, f"postfix-{tag}")
        self.etc = os.path.join(self.base, "etc")
        self.queue = os.path.join(self.base, "queue")
        self.data = os.path.join(self.base, "data")
        self.maillog = os.path.join(self.base, "maillog")
        self.port = free_port()
        self.started = False
        os.makedirs(self.etc)
        os.makedirs(self.queue)
        os.makedirs(self.data)
        shutil.chown(self.data, user="postfix")
        # master.cf is written by the package's postinst; fall back to the shipped template
        for name, candidates in (
            ("master.cf", ("/etc/postfix/master.cf", "/usr/share/postfix/master.cf.dist")),
            ("postfix-files", ("/etc/postfix/postfix-files",)),
        ):
            src = next((c for c in candidates if os.path.exists(c)), None)
            if src is None:
                raise BenchError(f"none of {candidates} exists: is the postfix package installed?")
            shutil.copy(src, os.path.join(self.etc, name))
        open(os.path.join(self.etc, "main.cf"), "w").close()
        settings = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.data}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = relay.bench.test",
            "mydomain = bench.test",
            "myorigin = $myhostname",
            "mydestination =",
            "local_recipient_maps =",
            f"relay_domains = {DOMAIN}",
            "relay_recipient_maps =",
            f"relayhost = [127.0.0.1]:{sink_port}",
            "mynetworks = 127.0.0.0/8",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions =",
            "smtpd_client_restrictions =",
            "smtpd_helo_restrictions =",
            "smtpd_sender_restrictions =",
            "smtpd_data_restrictions =",
            "smtp_dns_support_level = disabled",
            "smtp_tls_security_level = none",
            "smtpd_tls_security_level = none",
            f"maillog_file = {self.maillog}",
            f"maillog_file_prefixes = {self.base}",
            "alias_maps =",
            "alias_database =",
            "biff = no",
        ]
        run_quiet(["postconf", "-c", self.etc, "-e", *settings], "postconf -e")
        run_quiet(["postconf", "-c", self.etc, "-F", "*/*/chroot = n"], "postconf -F")
        run_quiet(["postconf", "-c", self.etc, "-MX", "smtp/inet"], "postconf -MX")
        svc = f"127.0.0.1:{self.port}"
        run_quiet(["postconf", "-c", self.etc, "-M", f"{svc}/inet={svc} inet n - n - - smtpd"],
                  "postconf -M")

    def start(self, timeout):
        _cleanups.append(self.force_stop)
        self.started = True
        run_quiet(["postfix", "-c", self.etc, "start"], "postfix start", timeout=timeout)
        wait_listening(self.port, timeout, "the Postfix relay", None, self.maillog)

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self):
        p = subprocess.run(["postfix", "-c", self.etc, "status"], stdin=subprocess.DEVNULL,
                           capture_output=True)
        return p.returncode == 0

    def wait_queue_empty(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = queue_files(self.queue)
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def queue_listing(self):
        p = subprocess.run(["postqueue", "-c", self.etc, "-p"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)
        return (p.stdout + p.stderr).decode("utf-8", "replace").strip()

    def stop(self, timeout=30):
        if not self.started:
            return
        run_quiet(["postfix", "-c", self.etc, "stop"], "postfix stop", timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise BenchError(f"the Postfix relay in {self.etc} did not stop within {timeout} s")
            time.sleep(0.2)
        # the master SIGTERMs its children and exits without waiting for them; give them a moment
        while self._instance_pids() and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        self._kill_leftovers(signal.SIGKILL)
        self.started = False

    def _instance_pids(self):
        """Processes of this instance: postfix daemons carry MAIL_CONFIG=<our etc> in their env."""
        want = f"MAIL_CONFIG={self.etc}".encode()
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if want in env:
                pids.append(int(d))
        return pids

    def _kill_leftovers(self, sig):
        for pid in self._instance_pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def force_stop(self):
        if not self.started:
            return
        try:
            self.stop(timeout=15)
        except Exception as e:
            print(f"bench: postfix stop failed ({e}); killing the instance", file=sys.stderr)
            pid = self.master_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._kill_leftovers(signal.SIGKILL)
            self.started = False


def case_postfix(args, workdir, tag):
    n = args.messages
    sink = Sink(workdir, tag)
    pf = None
    try:
        pf = PostfixRelay(workdir, tag, sink.port)
        pf.start(args.start_timeout)
        try:
            r = run_source(pf.port, n, workdir, tag, sink, args.timeout)
        except BenchError as e:
            raise BenchError(f"{e}\nlast lines of the Postfix log {pf.maillog}:\n{tail(pf.maillog)}")
        r["sink_count"] = settle_count(sink, n)
        left = pf.wait_queue_empty(30)
        r["queue_left"] = left
        listing = pf.queue_listing()
        r["queue_listing"] = listing.splitlines()[-1] if listing else ""
        pf.stop()
        if left:
            raise BenchError(f"run {tag}: the Postfix queue still holds {left} files 30 s after "
                             f"delivery:\n{listing[-2000:]}")
        return r
    finally:
        if pf is not None:
            pf.force_stop()
        sink.stop()


# --------------------------------------------------------------------------------------------


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec=",.0f"):
    return "-" if x is None else format(x, spec)


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (a,b,c) (default 3)")
    ap.add_argument("--messages", type=int, default=5000, help="messages per run (default 5000)")
    ap.add_argument("--cases", default="abc",
                    help="which cases to run, in round order, e.g. 'ac' without the gateway (default abc)")
    ap.add_argument("--gateway", default=None, help="path of the portcullis binary (needed for case b)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds one run may take from the load's start to the last delivery (default 120)")
    ap.add_argument("--start-timeout", type=float, default=30.0,
                    help="seconds a daemon may take to start listening (default 30)")
    ap.add_argument("--json", action="store_true",
                    help="print a JSON summary on stdout (the human-readable table goes to stderr)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, configs)")
    args = ap.parse_args()

    if args.json:
        OUT = sys.stderr
    cases = [c for c in args.cases if c in "abcr"]
    if not cases or len(cases) != len(args.cases) or len(set(cases)) != len(cases):
        ap.error("--cases takes a subset of 'abcr' such as 'abc', 'ac' or 'br'")
    if args.rounds < 1 or args.messages < 1:
        ap.error("--rounds and --messages must be at least 1")
    if "b" in cases or "r" in cases:
        if not args.gateway or not os.access(args.gateway, os.X_OK):
            ap.error(f"case b needs --gateway pointing at the portcullis binary (got {args.gateway!r})")
        args.gateway = os.path.abspath(args.gateway)
    for tool in ("smtp-source", "smtp-sink", "postfix", "postconf", "postqueue"):
        if not shutil.which(tool):
            ap.error(f"{tool} not found on PATH (install the postfix package; bench/run does)")
    if os.geteuid() != 0:
        ap.error("must run as root (smtp-sink -u nobody, private Postfix instance)")

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    # a disk-backed temp dir (not tmpfs): both the gateway and Postfix fsync their queues
    workdir = tempfile.mkdtemp(prefix="portcullis-bench.", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    os.chmod(workdir, 0o755)  # Postfix daemons drop to the postfix user
    _cleanups.append(lambda: (not args.keep_tmp) and shutil.rmtree(workdir, ignore_errors=True))

    runners = {"a": case_direct, "b": case_gateway, "c": case_postfix, "r": case_gateway_rules}
    results = {c: [] for c in cases}
    started = time.time()
    log(f"portcullis bench: {args.rounds} round(s) x cases {','.join(cases)}, {args.messages} messages "
        f"of 10 KiB per run, 20 sessions; temp dir {workdir}")
    status = 0
    error = None
    try:
        for rnd in range(1, args.rounds + 1):
            for c in cases:
                tag = f"{c}{rnd}"
                r = runners[c](args, workdir, tag)
                r["rate"] = args.messages / r["deliver_s"]
                r["accept_rate"] = args.messages / r["source_s"]
                results[c].append(r)
                extra = ""
                if c in "br":
                    extra = f", gateway VmHWM {fmt(r.get('vmhwm_kib'), ',d')} KiB, stopped in {r['stop_s']:.1f} s"
                    if r["exit_status"] == -signal.SIGKILL:
                        extra += " (WARNING: needed SIGKILL, ignored SIGTERM for 5 s)"
                    elif r["exit_status"] != 0:
                        extra += f" (exit status {r['exit_status']} after SIGTERM)"
                if c == "c":
                    extra = f", queue: {r['queue_listing']}"
                if c != "a" and r["sink_count"] != args.messages:
                    extra += f", WARNING: sink counted {r['sink_count']} messages (expected {args.messages})"
                log(f"  round {rnd} ({c}) {CASE_NAMES[c]:<30} {r['rate']:9,.0f} msg/s delivered "
                    f"({r['deliver_s']:.2f} s; load finished after {r['source_s']:.2f} s){extra}")
    except (BenchError, KeyboardInterrupt) as e:
        error = str(e) or e.__class__.__name__
        status = 1
        print(f"bench: FAILED: {error}", file=sys.stderr)
        args.keep_tmp = True
        print(f"bench: logs kept in {workdir}", file=sys.stderr)
    finally:
        cleanup_all()

    med = {c: median([r["rate"] for r in results[c]]) for c in cases}
    med_acc = {c: median([r["accept_rate"] for r in results[c]]) for c in cases}
    hwm = [r["vmhwm_kib"] for r in results.get("b", []) if r.get("vmhwm_kib") is not None]
    peak_kib = max(hwm) if hwm else None

    def ratio(x, y):
        return med[x] / med[y] if med.get(x) and med.get(y) else None

    if any(results.values()):
        log("")
        head = f"{'case':<34}" + "".join(f"{'round ' + str(i):>10}" for i in range(1, args.rounds + 1))
        head += f"{'median':>10}{'accepted':>10}"
        log("delivery rates in msg/s (N / time from the load's start until the sink counted N);")
        log("'accepted' = median of N / time smtp-source took to get all its messages accepted")
        log(head)
        log("-" * len(head))
        for c in cases:
            rates = [r["rate"] for r in results[c]]
            row = f"({c}) {CASE_NAMES[c]:<30}" + "".join(f"{x:>10,.0f}" for x in rates)
            row += " " * 10 * (args.rounds - len(rates))
            row += f"{fmt(med[c]):>10}{fmt(med_acc[c]):>10}"
            log(row)
        log("")
        if "b" in cases and "a" in cases:
            log(f"(b)/(a) gateway vs direct sink:   {fmt(ratio('b', 'a'), '.3f')}")
        if "b" in cases and "c" in cases:
            log(f"(b)/(c) gateway vs Postfix relay: {fmt(ratio('b', 'c'), '.3f')}")
        if "b" in cases and "r" in cases:
            log(f"(r)/(b) 100 rules vs no rules:    {fmt(ratio('r', 'b'), '.3f')}")
        if "b" in cases:
            log(f"gateway peak RSS (max VmHWM over rounds): "
                f"{fmt(peak_kib, ',d')} KiB" + (f" = {peak_kib / 1024:.1f} MiB" if peak_kib else ""))
        log(f"total bench time {time.time() - started:.0f} s")

    if args.json:
        summary = {
            "ok": status == 0,
            "error": error,
            "rounds": args.rounds,
            "messages": args.messages,
            "message_size": 10240,
            "sessions": 20,
            "cases": {
                c: {
                    "name": CASE_NAMES[c],
                    "rates_msg_per_s": [round(r["rate"], 1) for r in results[c]],
                    "median_msg_per_s": None if med[c] is None else round(med[c], 1),
                    "accept_rates_msg_per_s": [round(r["accept_rate"], 1) for r in results[c]],
                    "median_accept_msg_per_s": None if med_acc[c] is None else round(med_acc[c], 1),
                    "runs": [
                        {k: v for k, v in r.items() if k != "source_output"} for r in results[c]
                    ],
                }
                for c in cases
            },
            "ratio_b_over_a": ratio("b", "a") if "b" in cases and "a" in cases else None,
            "ratio_b_over_c": ratio("b", "c") if "b" in cases and "c" in cases else None,
            "ratio_r_over_b": ratio("r", "b") if "b" in cases and "r" in cases else None,
            "gateway_peak_vmhwm_kib": peak_kib,
        }
        print(json.dumps(summary, indent=2))
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup_all()
