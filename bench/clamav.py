#!/usr/bin/env python3
"""ClamAV benchmark (stdlib only): gateway throughput with ClamAV on vs clamd's own rate.

In one invocation, alternating round by round, against one fresh clamd per round (tiny
EICAR-only database, temp files on tmpfs, MaxThreads 4):

  (x) clamd alone: N unique messages streamed with INSTREAM by 20 concurrent clients, each
      on one IDSESSION connection reused from scan to scan, like the gateway's pool
      (--per-scan-connections: a new connection per scan instead), over clamd's Unix socket
      as a Debian clamd is set up (--tcp for TCP in both cases). Rate = N / time until the
      last reply.
  (y) the gateway with [clamav] on: Postfix's smtp-source sends N messages with 20 sessions
      (-s 20 -d -l 10240, the load of bench/run) through the gateway to smtp-sink.
      Rate = N / time from smtp-source's start until the sink counted N.

Like with like: both cases scan the same content. smtp-source's generated message is five
header fields (From, To, Date, Message-Id, Subject) and a 10,240-byte body of 78-character
lines ("1XXX...", "2XXX...") — 10,395 bytes as the gateway receives it and hands it to
clamd. (x) builds exactly that shape (same fields, same body bytes, CRLF), so clamd does the
same work per message in both cases (the output shows clamd's CPU per message in each).
Unique: clamd caches clean results by the hash of the whole stream, so a repeated message is
about 2x cheaper. smtp-source's Message-Id is <pid.fd.serial@host>, distinct for every
message of a run (checked: 400 dumped messages, 400 distinct hashes), and (x) numbers its
Message-Ids the same way; --cache-check shows what a cache hit would look like (the same
message scanned N times) for comparison. (-F FILE would send one fixed message: not used.)

Load cost: everything runs on the same 2 cores, so CPU spent by the load tools is taken
from clamd. Both load generators are cheap: (x) a Python asyncio client sending
pre-framed INSTREAM requests on long-lived sessions (the cheapest client: it makes (x) as
fast as clamd can go here), (y) smtp-source (C) and smtp-sink (C). Each round prints
the CPU milliseconds per message of every process (clamd, gateway, load, sink), measured
from /proc and getrusage, so where the time goes is visible.

Prints the rates, medians and the ratio (y)/(x) of the medians (target >= 0.8), and two
figures that are steadier on a machine shared with other work: the median of the per-round
ratios (x and y of a round run back to back), and the CPU-bound ratio = CPU per message of
(x) / CPU per message of (y), all processes counted: the ratio the two cases would have if
each got the machine's whole CPU. Usually run through bench/run-clamav.
"""

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the process, port, smtp-sink and smtp-source helpers)

SESSIONS = 20
PAYLOAD = 10240  # smtp-source -l: body bytes
SOURCE_HOST = "client.example.test"  # smtp-source -M, the Message-Id's domain
CLK_TCK = os.sysconf("SC_CLK_TCK")


def source_body(length=PAYLOAD):
    """smtp-source's generated body: `length` bytes of 'X', cut into 80-byte lines (a digit,
    77 'X', CRLF); the last 80 bytes have no line end (smtp-source adds CRLF before '.')."""
    data = bytearray(b"X" * length)
    for i in range(80, length, 80):
        data[i - 80] = ord("0123456789"[(i // 80) % 10])
        data[i - 2:i] = b"\r\n"
    return bytes(data) + b"\r\n"


def source_like_message(tag, serial, body):
    """One message exactly as smtp-source generates it and the gateway hands it to clamd;
    unique through its Message-Id (tag = a random 16-bit number per run, like smtp-source's pid)."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000 (UTC)", time.gmtime())
    head = (f"From: <{bench.SENDER}>\r\nTo: <{bench.RECIPIENT}>\r\nDate: {date}\r\n"
            f"Message-Id: <{tag:04x}.0003.{serial:04x}@{SOURCE_HOST}>\r\nSubject: bench\r\n\r\n")
    return head.encode() + body


def proc_cpu(pid):
    """User + system CPU seconds of a running process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def self_cpu():
    t = os.times()
    return t.user + t.system


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Clamd:
    def __init__(self, workdir, tag, extra_conf=""):
        self.dir = os.path.join(workdir, f"clamd-{tag}")
        os.makedirs(os.path.join(self.dir, "db"))
        hexsig = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!".hex()
        with open(os.path.join(self.dir, "db", "eicar.ndb"), "w") as f:
            f.write(f"Eicar-Test-Body:0:*:{hexsig}\n")
        self.tmp = tempfile.mkdtemp(prefix="clamd-bench-", dir="/dev/shm")
        self.port = bench.free_port()
        self.socket = os.path.join(self.dir, "clamd.sock")
        conf = os.path.join(self.dir, "clamd.conf")
        with open(conf, "w") as f:
            f.write(f"Foreground yes\nDatabaseDirectory {self.dir}/db\nTemporaryDirectory {self.tmp}\n"
                    f"LocalSocket {self.socket}\nFixStaleSocket yes\nTCPSocket {self.port}\nTCPAddr 127.0.0.1\n"
                    f"LogFile {self.dir}/clamd.log\nScanMail yes\nScanArchive yes\nScanHTML yes\n"
                    f"StreamMaxLength 50M\nMaxScanSize 100M\nMaxFileSize 50M\nSelfCheck 0\nBytecode no\n"
                    f"MaxThreads 4\n{extra_conf}")
        self.proc = bench.spawn(["clamd", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"zPING\0")
                    if s.recv(5) == b"PONG\0":
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise bench.BenchError(f"clamd did not start; log:\n{bench.tail(self.dir + '/clamd.log')}")
            time.sleep(0.02)

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def stop(self):
        bench.kill_proc(self.proc, grace=2.0)
        subprocess.run(["rm", "-rf", self.tmp])


def instream_request(msg):
    """The whole INSTREAM request in one buffer: command, one chunk, end marker."""
    return b"zINSTREAM\0" + struct.pack(">I", len(msg)) + msg + struct.pack(">I", 0)


async def connect(clamd, unix):
    if unix:
        return await asyncio.open_unix_connection(clamd.socket)
    return await asyncio.open_connection("127.0.0.1", clamd.port)


async def instream_per_connection(clamd, unix, queue):
    """One connection per scan."""
    while queue:
        r, w = await connect(clamd, unix)
        w.write(queue.pop())
        reply = await r.read()
        w.close()
        if reply != b"stream: OK\0":
            raise bench.BenchError(f"unexpected clamd reply {reply!r}")


async def instream_session(clamd, unix, queue):
    """One IDSESSION connection for many scans, one request outstanding (as the gateway)."""
    r, w = await connect(clamd, unix)
    w.write(b"zIDSESSION\0")
    n = 0
    while queue:
        w.write(queue.pop())
        n += 1
        reply = await r.readuntil(b"\0")
        if reply != f"{n}: stream: OK\0".encode():
            raise bench.BenchError(f"unexpected clamd reply {reply!r}")
    w.write(b"zEND\0")
    w.close()


async def instream_all(clamd, unix, requests, per_scan):
    queue = list(requests)
    client = instream_per_connection if per_scan else instream_session
    await asyncio.gather(*(client(clamd, unix, queue) for _ in range(SESSIONS)))


def clamd_alone(args, clamd, msgs):
    requests = [instream_request(m) for m in msgs]
    c0, s0, t0 = clamd.cpu(), self_cpu(), time.monotonic()
    asyncio.run(instream_all(clamd, not args.tcp, requests, args.per_scan_connections))
    t1 = time.monotonic()
    n = len(msgs)
    cpu = {"clamd": clamd.cpu() - c0, "load": self_cpu() - s0}
    return n / (t1 - t0), {k: 1000 * v / n for k, v in cpu.items()}


def gateway_with_clamav(args, workdir, tag, clamd, n):
    sink = bench.Sink(workdir, tag)
    gw = None
    try:
        endpoint = f'address = "127.0.0.1:{clamd.port}"' if args.tcp else f'socket = "{clamd.socket}"'
        conns = "" if args.clamd_connections is None else f"max_connections = {args.clamd_connections}\n"
        gw, gwport, log = bench.start_gateway(args.gateway, workdir, tag, sink.port,
                                              tables=f'[clamav]\nenabled = true\n{endpoint}\n{conns}')
        c0 = {"clamd": clamd.cpu(), "gateway": proc_cpu(gw.pid), "sink": proc_cpu(sink.proc.pid)}
        l0 = children_cpu()
        try:
            r = bench.run_source(gwport, n, workdir, tag, sink, args.timeout)
        except bench.BenchError as e:
            raise bench.BenchError(f"{e}\nlast lines of the gateway log {log}:\n{bench.tail(log)}")
        cpu = {"clamd": clamd.cpu() - c0["clamd"], "gateway": proc_cpu(gw.pid) - c0["gateway"],
               "load": children_cpu() - l0, "sink": proc_cpu(sink.proc.pid) - c0["sink"]}
        if gw.poll() is not None:
            raise bench.BenchError(f"the gateway exited during the run; log:\n{bench.tail(log)}")
        return n / r["deliver_s"], {k: 1000 * v / n for k, v in cpu.items()}
    finally:
        if gw is not None:
            bench.kill_proc(gw, grace=5.0)
        sink.stop()


def cache_check(args, clamd, n):
    """The same message n times: what clamd's cache makes of repeats (for comparison)."""
    msg = source_like_message(random.getrandbits(16), 0, source_body())
    rate, cpu = clamd_alone(args, clamd, [msg] * n)
    return rate, cpu


def fmt_cpu(cpu):
    return ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", required=True, help="path of the portcullis release binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--tcp", action="store_true",
                    help="talk to clamd over TCP (both cases) instead of its Unix socket")
    ap.add_argument("--clamd-connections", type=int, default=None,
                    help="[clamav] max_connections (default: the gateway's default)")
    ap.add_argument("--per-scan-connections", action="store_true",
                    help="(x) opens a connection per scan instead of reusing IDSESSION connections")
    ap.add_argument("--cache-check", action="store_true",
                    help="also scan one message N times per round, to see what a cache hit costs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.json:
        bench.OUT = sys.stderr
    if args.messages > 0xFFFF:
        ap.error("--messages at most 65535 (smtp-source's Message-Id serial has 4 hex digits)")
    if os.geteuid() != 0:
        ap.error("must run as root (smtp-sink -u nobody)")
    workdir = tempfile.mkdtemp(prefix="portcullis-clamav-bench.", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    rates = {"x": [], "y": []}
    cpus = {"x": [], "y": []}
    body = source_body()
    try:
        for rnd in range(1, args.rounds + 1):
            clamd = Clamd(workdir, f"x{rnd}")
            try:
                tag = random.getrandbits(16)
                msgs = [source_like_message(tag, i, body) for i in range(args.messages)]
                rate, cpu = clamd_alone(args, clamd, msgs)
                rates["x"].append(rate)
                cpus["x"].append(cpu)
                bench.log(f"  round {rnd} (x) clamd INSTREAM alone    {rate:8,.0f} msg/s   "
                          f"CPU ms/msg: {fmt_cpu(cpu)}")
                rate, cpu = gateway_with_clamav(args, workdir, f"y{rnd}", clamd, args.messages)
                rates["y"].append(rate)
                cpus["y"].append(cpu)
                bench.log(f"  round {rnd} (y) gateway with ClamAV on  {rate:8,.0f} msg/s   "
                          f"CPU ms/msg: {fmt_cpu(cpu)}")
                if args.cache_check:
                    rate, cpu = cache_check(args, clamd, args.messages)
                    bench.log(f"  round {rnd}     one message repeated   {rate:8,.0f} msg/s   "
                              f"CPU ms/msg: {fmt_cpu(cpu)}  (clamd cache hits)")
            finally:
                clamd.stop()
    finally:
        bench.cleanup_all()
        subprocess.run(["rm", "-rf", workdir])
    x, y = statistics.median(rates["x"]), statistics.median(rates["y"])
    med_cpu = {c: {k: statistics.median(r[k] for r in cpus[c]) for k in cpus[c][0]} for c in cpus}
    round_ratio = statistics.median(b / a for a, b in zip(rates["x"], rates["y"]))
    cpu_ratio = sum(med_cpu["x"].values()) / sum(med_cpu["y"].values())
    # What the ratio could be if the gateway cost no CPU at all: clamd, smtp-source and
    # smtp-sink of (y) still share the cores — the ceiling on this machine.
    free_gateway = sum(med_cpu["x"].values()) / sum(v for k, v in med_cpu["y"].items() if k != "gateway")
    summary = {"clamd_msgs_per_sec": x, "gateway_clamav_msgs_per_sec": y, "ratio": y / x,
               "median_round_ratio": round_ratio, "cpu_bound_ratio": cpu_ratio,
               "ceiling_with_a_free_gateway": free_gateway,
               "rounds": args.rounds, "messages": args.messages, "transport": "tcp" if args.tcp else "unix",
               "clamd_alone_connections": "per-scan" if args.per_scan_connections else "idsession",
               "cpu_ms_per_msg": med_cpu, "rates": rates}
    bench.log(f"\nmedian CPU ms/msg: (x) {fmt_cpu(med_cpu['x'])}; (y) {fmt_cpu(med_cpu['y'])}")
    bench.log(f"medians: clamd alone {x:,.0f} msg/s, gateway with ClamAV {y:,.0f} msg/s; "
              f"ratio (y)/(x) = {y / x:.3f} (target >= 0.8)")
    bench.log(f"median of the per-round ratios {round_ratio:.3f}; CPU-bound ratio "
              f"{sum(med_cpu['x'].values()):.2f} / {sum(med_cpu['y'].values()):.2f} ms = {cpu_ratio:.3f}")
    bench.log(f"ceiling on this machine (a gateway that cost no CPU; clamd, smtp-source and smtp-sink "
              f"still share the cores): {free_gateway:.3f}")
    if args.json:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
