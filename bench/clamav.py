#!/usr/bin/env python3
"""ClamAV benchmark (stdlib only): gateway throughput with ClamAV on vs clamd's own rate.

In one invocation, alternating round by round:
  (x) clamd alone: unique 10 KB messages streamed with INSTREAM by 20 concurrent clients
      (over clamd's Unix socket, as a Debian clamd is set up; --tcp for TCP in both cases)
  (y) the gateway with [clamav] on: the same kind of unique messages over SMTP with 20
      sessions (PIPELINING), delivered to smtp-sink; rate = N / (time until the sink counted N)
Unique messages matter: clamd caches clean results by hash, so a repeated body is ~2x faster.
The same clamd (fresh per run, tiny EICAR-only database, temp files on tmpfs) serves both.
Prints the rates, medians and the ratio (y)/(x) (target >= 0.8). Usually run through
bench/run-clamav.
"""

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the process, port and smtp-sink helpers)

WORDS = ("invoice meeting report project budget quarter customer order delivery schedule "
         "contract review update team office printer network server backup policy").split()
SESSIONS = 20


def unique_message(i, size=10240):
    """A 10 KB message no other message repeats (random words + a serial number)."""
    rnd = random.Random(time.time_ns() ^ (i << 20))
    lines = []
    total = 0
    while total < size:
        line = " ".join(rnd.choice(WORDS) for _ in range(10)) + f" {rnd.getrandbits(64):016x}"
        lines.append(line)
        total += len(line) + 2
    body = "\r\n".join(lines)
    return (f"From: <sender@external.test>\r\nTo: <rcpt@example.test>\r\nSubject: bench {i}\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}.{time.time_ns()}@bench.test>\r\n"
            f"\r\n{body}\r\n").encode()


class Clamd:
    def __init__(self, workdir, tag):
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
                    f"MaxThreads 4\n")
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

    def stop(self):
        bench.kill_proc(self.proc, grace=2.0)
        subprocess.run(["rm", "-rf", self.tmp])


async def instream(clamd, unix, msg):
    if unix:
        r, w = await asyncio.open_unix_connection(clamd.socket)
    else:
        r, w = await asyncio.open_connection("127.0.0.1", clamd.port)
    w.write(b"zINSTREAM\0" + struct.pack(">I", len(msg)) + msg + struct.pack(">I", 0))
    await w.drain()
    reply = await r.read()
    w.close()
    if b"OK" not in reply or b"FOUND" in reply:
        raise bench.BenchError(f"unexpected clamd reply {reply!r}")


async def clamd_rate(clamd, unix, msgs):
    queue = list(msgs)
    async def worker():
        while queue:
            await instream(clamd, unix, queue.pop())
    t = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(SESSIONS)))
    return len(msgs) / (time.monotonic() - t)


async def read_reply(r):
    while True:
        line = await r.readline()
        if not line:
            raise bench.BenchError("gateway closed the connection")
        if line[3:4] == b" ":
            return int(line[:3]), line


async def smtp_session(port, queue):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await read_reply(r)
    w.write(b"EHLO bench.test\r\n")
    await read_reply(r)
    while queue:
        msg = queue.pop()
        w.write(b"MAIL FROM:<sender@external.test>\r\nRCPT TO:<rcpt@example.test>\r\nDATA\r\n")
        for want in (250, 250, 354):
            code, line = await read_reply(r)
            if code != want:
                raise bench.BenchError(f"gateway said {line!r}")
        w.write(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, line = await read_reply(r)
        if code != 250:
            raise bench.BenchError(f"gateway refused a clean message: {line!r}")
    w.write(b"QUIT\r\n")
    w.close()


def gateway_rate(args, workdir, tag, clamd, msgs):
    sink = bench.Sink(workdir, tag)
    gw = None
    try:
        gwdir = os.path.join(workdir, f"gw-{tag}")
        os.makedirs(os.path.join(gwdir, "data"))
        gwport = bench.free_port()
        cfg = os.path.join(gwdir, "portcullis.toml")
        endpoint = f'address = "127.0.0.1:{clamd.port}"' if args.tcp else f'socket = "{clamd.socket}"'
        with open(cfg, "w") as f:
            f.write(f'hostname = "gw.bench.test"\ndata_dir = "{gwdir}/data"\nlocal_domains = ["example.test"]\n'
                    f'internal_networks = []\ninbound_next_hop = "127.0.0.1:{sink.port}"\nmetrics_bind = ""\n'
                    f'[[listeners]]\nbind = "127.0.0.1:{gwport}"\ntls = "none"\n[limits]\nmax_connections_per_ip = 100\n'
                    f'[clamav]\nenabled = true\n{endpoint}\nmax_connections = {args.clamd_connections}\n')
        log = os.path.join(gwdir, "portcullis.log")
        with open(log, "wb") as lf:
            gw = bench.spawn([args.gateway, "run", "--config", cfg], stdout=lf, stderr=subprocess.STDOUT)
        bench.wait_listening(gwport, 30, "the gateway", gw, log)
        sink.expect(len(msgs))
        queue = list(msgs)
        t = time.monotonic()
        async def load():
            await asyncio.wait_for(asyncio.gather(*(smtp_session(gwport, queue) for _ in range(SESSIONS))),
                                   args.timeout)
        asyncio.run(load())
        done = sink.wait_for(len(msgs), time.monotonic() + args.timeout)
        if done is None:
            raise bench.BenchError(f"sink counted {sink.count} of {len(msgs)}; gateway log:\n{bench.tail(log)}")
        return len(msgs) / (done - t)
    finally:
        if gw is not None:
            bench.kill_proc(gw, grace=5.0)
        sink.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", required=True, help="path of the portcullis release binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--tcp", action="store_true",
                    help="talk to clamd over TCP (both cases) instead of its Unix socket")
    ap.add_argument("--clamd-connections", type=int, default=8, help="[clamav] max_connections")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.json:
        bench.OUT = sys.stderr
    workdir = tempfile.mkdtemp(prefix="portcullis-clamav-bench.", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    rates = {"x": [], "y": []}
    try:
        for rnd in range(1, args.rounds + 1):
            clamd = Clamd(workdir, f"x{rnd}")
            try:
                msgs = [unique_message(rnd * 10_000_000 + i) for i in range(args.messages)]
                rates["x"].append(asyncio.run(clamd_rate(clamd, not args.tcp, msgs)))
                bench.log(f"  round {rnd} (x) clamd INSTREAM alone         {rates['x'][-1]:8,.0f} msg/s")
                msgs = [unique_message(rnd * 10_000_000 + 5_000_000 + i) for i in range(args.messages)]
                rates["y"].append(gateway_rate(args, workdir, f"y{rnd}", clamd, msgs))
                bench.log(f"  round {rnd} (y) gateway with ClamAV on       {rates['y'][-1]:8,.0f} msg/s delivered")
            finally:
                clamd.stop()
    finally:
        bench.cleanup_all()
        subprocess.run(["rm", "-rf", workdir])
    x, y = statistics.median(rates["x"]), statistics.median(rates["y"])
    summary = {"clamd_msgs_per_sec": x, "gateway_clamav_msgs_per_sec": y, "ratio": y / x,
               "rounds": args.rounds, "messages": args.messages, "transport": "tcp" if args.tcp else "unix"}
    bench.log(f"\nmedians: clamd alone {x:,.0f} msg/s, gateway with ClamAV {y:,.0f} msg/s; "
              f"ratio (y)/(x) = {y / x:.3f} (target >= 0.8)")
    if args.json:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
