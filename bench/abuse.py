#!/usr/bin/env python3
"""Portcullis under hostile load (stdlib only), against the default limits.

  (1) A normal client's rate (one session, messages back to back) unloaded, then while
      2,000 hostile connections from 40 loopback addresses are held open — half idle after
      the greeting, half dripping a command one byte every 10 s — and reopened as soon as
      the gateway closes them (a sustained attack). Prints both rates and their ratio, the
      gateway's peak RSS, how the hostile sessions ended (refused at connect, cut by a
      timeout) and how long the cut ones were held.
  (2) Many messages at the size limit at once: peak RSS against the bound of
      docs/pipeline.md (sessions x spool threshold + large messages in memory x 3 x size).
  (3) Worst-case messages at the size limit, one at a time: deeply nested MIME, thousands
      of parts, one huge header field, base64 without line breaks, S/MIME signed past
      [smime] max_layers and signed max_layers times around a body at the size limit
      (made with `openssl cms`); for each the reply, the time to it, the gateway's CPU
      seconds and its peak RSS so far.
  (4) A ZIP bomb through ClamAV: a private clamd (clamav.py's, with its limits), the gateway
      with [clamav] on, and a message carrying a nested ZIP that unpacks to 256 GiB; the
      reply, the time to it, and the CPU seconds of the gateway and of clamd.

Usually started through bench/run-abuse (builds the gateway).
"""

import argparse
import base64
import io
import json
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import clamav  # noqa: E402

DOMAIN = "example.test"
MAX_SIZE = 26214400  # max_message_size, the default
ATTACK_ADDRS = [f"127.0.1.{i}" for i in range(1, 41)]  # 40 addresses x 50 (per-IP limit)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def start_gateway(binary, workdir, tag, sink_port):
    """The gateway on the embedded defaults but for its data dir, port and next hop."""
    return bench.start_gateway(binary, workdir, tag, sink_port, timeout=60, limits="")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def smtp_session(port, messages, size=2048, source="127.0.0.1", connect_deadline=120):
    """One session sending `messages` messages back to back. Returns (seconds for the
    messages, seconds waited for a slot, replies other than 250)."""
    body = ("x" * 70 + "\r\n") * (size // 72 + 1)
    waited_from = time.monotonic()
    while True:
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(60)
        s.connect(("127.0.0.1", port))
        f = s.makefile("rb")
        greeting = f.readline()
        if greeting.startswith(b"220"):
            break
        s.close()  # 421: no slot; try again shortly
        if time.monotonic() - waited_from > connect_deadline:
            raise bench.BenchError(f"no session slot within {connect_deadline} s: {greeting!r}")
        time.sleep(0.1)
    waited = time.monotonic() - waited_from

    def cmd(line):
        s.sendall(line.encode() + b"\r\n")
        reply = f.readline()
        while reply[3:4] == b"-":
            reply = f.readline()
        return reply

    cmd("EHLO normal.bench.test")
    bad = []
    start = time.monotonic()
    for i in range(messages):
        cmd("MAIL FROM:<a@ext.test>")
        cmd(f"RCPT TO:<u@{DOMAIN}>")
        cmd("DATA")
        s.sendall(
            f"From: a@ext.test\r\nTo: u@{DOMAIN}\r\nSubject: m{i}\r\n"
            f"Message-ID: <n{i}.{time.time()}@ext.test>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n".encode()
            + body.encode()
            + b".\r\n"
        )
        reply = f.readline()
        if not reply.startswith(b"250"):
            bad.append(reply.decode(errors="replace").strip())
    took = time.monotonic() - start
    cmd("QUIT")
    s.close()
    return took, waited, bad


class Attack:
    """`n` hostile connections held open from ATTACK_ADDRS, reopened when closed."""

    def __init__(self, port, n, drip_every=10.0, reconnect_after=2.0):
        self.port, self.n, self.drip_every = port, n, drip_every
        # A closed connection is opened again after this long: 2,000 concurrent connections,
        # not a connect flood (which would measure the machine's TCP stack).
        self.reconnect_after = reconnect_after
        self.pending = []  # (time to reopen, index)
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        self.refused = 0  # a 421 greeting
        self.cut = []  # seconds a session was held until the gateway closed it
        self.opened = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open_one(self, i):
        s = socket.socket()
        s.setblocking(False)
        s.bind((ATTACK_ADDRS[i % len(ATTACK_ADDRS)], 0))
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        state = {"i": i, "t": time.monotonic(), "greeted": False, "next_drip": None, "buf": b""}
        self.sel.register(s, selectors.EVENT_READ, state)
        self.opened += 1

    def run(self):
        for i in range(self.n):
            self.open_one(i)
        drip = b"EHLO slow.drip.test\r\n"
        while not self.stop.is_set():
            now = time.monotonic()
            for key, _ in self.sel.select(timeout=0.5):
                s, st = key.fileobj, key.data
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data and not st["greeted"]:
                    st["greeted"] = True
                    if data.startswith(b"421"):
                        self.refused += 1
                        st["refused"] = True
                    elif st["i"] % 2 == 1:
                        st["next_drip"] = now + self.drip_every
                        st["pos"] = 0
                    continue
                if not data:
                    if not st.get("refused"):
                        self.cut.append(now - st["t"])
                    self.sel.unregister(s)
                    s.close()
                    self.pending.append((now + self.reconnect_after, st["i"]))
            due = [i for t, i in self.pending if t <= now]
            self.pending = [(t, i) for t, i in self.pending if t > now]
            for i in due:
                self.open_one(i)
            for key in list(self.sel.get_map().values()):
                st = key.data
                if st["next_drip"] is not None and now >= st["next_drip"]:
                    try:
                        key.fileobj.send(drip[st["pos"] % len(drip):][:1])
                    except OSError:
                        pass
                    st["pos"] += 1
                    st["next_drip"] = now + self.drip_every
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def attack_process(port, n, seconds, out):
    """The attack in a process of its own (the normal client's process is not slowed by
    it): runs `seconds`, then reports its counts on `out`."""
    with Attack(port, n) as attack:
        time.sleep(seconds)
        held = len(attack.sel.get_map())
    out.put({"refused": attack.refused, "cut": attack.cut, "held": held})


def case_attack(args, workdir):
    sink = bench.Sink(workdir, "attack")
    gw, port, logf = start_gateway(args.gateway, workdir, "attack", sink.port)
    try:
        smtp_session(port, 50)  # warm up
        unloaded, _, bad0 = smtp_session(port, args.messages)
        import multiprocessing

        out = multiprocessing.Queue()
        # Long enough for the settling time and the measured session.
        span = args.settle + 4 * unloaded + 30
        attacker = multiprocessing.Process(
            target=attack_process, args=(port, args.connections, span, out)
        )
        attacker.start()
        time.sleep(args.settle)
        loaded, waited, bad1 = smtp_session(port, args.messages)
        stats = out.get(timeout=span + 60)
        attacker.join(10)
        rss = bench.read_vmhwm_kib(gw.pid)
        cut = sorted(stats["cut"])
        held = stats["held"]
        result = {
            "unloaded_msgs_per_s": args.messages / unloaded,
            "attacked_msgs_per_s": args.messages / loaded,
            # the attacked rate as a share of the unloaded one
            "ratio": unloaded / loaded,
            "slot_wait_s": waited,
            "hostile_connections": args.connections,
            "hostile_open_at_end": held,
            "refused_at_connect": stats["refused"],
            "cut_by_timeout": len(cut),
            "cut_after_s_median": cut[len(cut) // 2] if cut else None,
            "cut_after_s_max": cut[-1] if cut else None,
            "peak_rss_mib": rss / 1024 if rss else None,
            "non_250": bad0 + bad1,
        }
        return result
    finally:
        bench.kill_proc(gw)
        sink.stop()


def big_message(i, size):
    line = "y" * 998 + "\r\n"
    return (
        f"From: a@ext.test\r\nTo: u@{DOMAIN}\r\nSubject: big {i}\r\nMessage-ID: <big{i}@ext.test>\r\n\r\n"
        + line * (size // len(line))
    ).encode()


def send_raw(port, payload, timeout=300, source="127.0.0.1"):
    """One transaction with `payload` (already dot-safe, CRLF) from `source`; returns
    (reply, seconds)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    f = s.makefile("rb")

    def read():
        r = f.readline()
        while r[3:4] == b"-":
            r = f.readline()
        return r

    read()
    for line in ("EHLO big.bench.test", "MAIL FROM:<a@ext.test>", f"RCPT TO:<u@{DOMAIN}>", "DATA"):
        s.sendall(line.encode() + b"\r\n")
        read()
    start = time.monotonic()
    s.sendall(payload + b"\r\n.\r\n")
    reply = read().decode(errors="replace").strip()
    took = time.monotonic() - start
    s.close()
    return reply, took


def case_big(args, workdir):
    sink = bench.Sink(workdir, "big")
    gw, port, logf = start_gateway(args.gateway, workdir, "big", sink.port)
    try:
        size = MAX_SIZE - 64 * 1024
        payload = big_message(0, size)
        results = [None] * args.big
        base_rss = bench.read_vmhwm_kib(gw.pid)

        def one(i):
            # From 127.0.2.x, ten sessions per address: under the per-address limit.
            try:
                results[i] = send_raw(port, payload, source=f"127.0.2.{1 + i // 10}")
            except OSError as e:
                results[i] = (f"error: {e}", 0.0)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.big)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - start
        rss = bench.read_vmhwm_kib(gw.pid)
        # docs/pipeline.md: sessions x spool threshold + large messages in memory (8) x 3 x
        # size, plus the messages the delivery workers (16) are sending and the bodies
        # riding along with delivery jobs (queue.dispatch_memory_bytes, 64 MiB).
        spool = 1024 * 1024
        bound = (args.big * spool + min(args.big, 8) * 3 * MAX_SIZE + 16 * MAX_SIZE
                 + 64 * 1024 * 1024)
        return {
            "messages": args.big,
            "size_bytes": len(payload),
            "seconds": took,
            "replies": {code: sum(1 for r in results if r[0][:3] == code)
                        for code in sorted({r[0][:3] for r in results})},
            "peak_rss_mib": rss / 1024,
            "rss_at_start_mib": base_rss / 1024,
            "growth_mib": (rss - base_rss) / 1024,
            "bound_mib": bound / (1024 * 1024),
            "sum_of_sizes_mib": args.big * len(payload) / (1024 * 1024),
        }
    finally:
        bench.kill_proc(gw)
        sink.stop()


def worst_cases(size):
    header = f"From: a@ext.test\r\nTo: u@{DOMAIN}\r\nMessage-ID: <w@ext.test>\r\n"
    cases = {}
    # Deeply nested multiparts, as deep as fits.
    depth = 5000
    opening = "".join(
        f"--b{d}\r\nContent-Type: multipart/mixed; boundary=b{d + 1}\r\n\r\n" for d in range(depth)
    )
    closing = "".join(f"--b{d}--\r\n" for d in reversed(range(depth)))
    cases["nested MIME, 5000 levels"] = (
        header + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
        + opening + "--b5000\r\nContent-Type: text/plain\r\n\r\nhi\r\n" + closing
    )
    # Thousands of parts.
    part = "--p\r\nContent-Type: text/plain\r\n\r\nsmall part\r\n"
    n = min(100_000, (size - 1024) // len(part))
    cases[f"{n} MIME parts"] = (
        header + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n"
        + part * n + "--p--\r\n"
    )
    # One huge header field, folded.
    folds = (size - 1024) // 80
    cases["one header field of the size limit"] = (
        header + "X-Huge: " + ("z" * 76 + "\r\n ") * folds + "end\r\n\r\nbody\r\n"
    )
    # base64 without a line break.
    cases["base64 in one line of the size limit"] = (
        header
        + "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        + "Content-Transfer-Encoding: base64\r\n\r\n" + "QUJD" * ((size - 1024) // 4) + "\r\n"
    )
    return cases


SMIME_MAX_LAYERS = 6  # [smime] max_layers, the default


def smime_nested(workdir, layers, content):
    """`content` (a MIME entity, CRLF) signed `layers` times with `openssl cms -sign`, each
    signature around the last, as a whole message (bytes)."""
    d = tempfile.mkdtemp(prefix="smime-", dir=workdir)
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "30", "-subj", "/CN=a@ext.test",
                    "-addext", "subjectAltName=email:a@ext.test"],
                   check=True, capture_output=True)
    entity = os.path.join(d, "entity")
    with open(entity, "wb") as f:
        f.write(content)
    for _ in range(layers):
        subprocess.run(["openssl", "cms", "-sign", "-in", entity,
                        "-signer", cert, "-inkey", key, "-out", entity + ".next"],
                       check=True, capture_output=True)
        os.replace(entity + ".next", entity)
    with open(entity, "rb") as f:
        # openssl signs the canonical (CRLF) form and writes some lines with bare LF.
        signed = re.sub(rb"(?<!\r)\n", b"\r\n", f.read())
    subprocess.run(["rm", "-rf", d])
    return f"From: a@ext.test\r\nTo: u@{DOMAIN}\r\nMessage-ID: <s{layers}@ext.test>\r\n".encode() + signed


def smime_cases(workdir, size):
    small = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    line = b"s" * 76 + b"\r\n"
    big = b"Content-Type: text/plain\r\n\r\n" + line * ((size - 64 * 1024) // len(line))
    return {
        "S/MIME signed 50 times (past the cap)": smime_nested(workdir, 50, small),
        f"S/MIME signed {SMIME_MAX_LAYERS} times, 25 MiB": smime_nested(workdir, SMIME_MAX_LAYERS, big),
    }


def case_worst(args, workdir):
    sink = bench.Sink(workdir, "worst")
    gw, port, logf = start_gateway(args.gateway, workdir, "worst", sink.port)
    out = []
    try:
        cases = {name: text.encode() for name, text in worst_cases(MAX_SIZE - 64 * 1024).items()}
        cases.update(smime_cases(workdir, MAX_SIZE - 64 * 1024))
        for name, raw in cases.items():
            payload = raw.replace(b"\r\n.", b"\r\n..")
            cpu0 = cpu_seconds(gw.pid)
            reply, took = send_raw(port, payload)
            out.append({
                "case": name,
                "bytes": len(payload),
                "reply": reply[:60],
                "seconds": took,
                "gateway_cpu_s": cpu_seconds(gw.pid) - cpu0,
                "peak_rss_mib": bench.read_vmhwm_kib(gw.pid) / 1024,
            })
            log(f"  {name}: {reply[:40]} in {took:.2f} s")
        return out
    finally:
        bench.kill_proc(gw)
        sink.stop()


def zip_bomb(levels=3, fan_out=16, zeros=1 << 30):
    """A nested ZIP: a file of `zeros` zero bytes, zipped, then `fan_out` copies of that
    zipped again, `levels` times in all. Returns (bytes, unpacked size)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("zeros.bin", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(zeros // len(chunk)):
                f.write(chunk)
    data, unpacked = buf.getvalue(), zeros
    for level in range(1, levels):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            for i in range(fan_out):
                z.writestr(f"level{level}-{i}.zip", data)
        data, unpacked = buf.getvalue(), unpacked * fan_out
    return data, unpacked


def case_zip_bomb(args, workdir):
    """The bomb once against clamd's limits as set (it stops unpacking at MaxFileSize and
    MaxScanSize and answers OK), once with AlertExceedsMax and MaxRecursion 2 (clamd then
    names the archive Heuristics.Limits.Exceeded.MaxRecursion, and the gateway refuses it
    like a virus)."""
    bomb, unpacked = zip_bomb()
    encoded = base64.encodebytes(bomb).decode().replace("\n", "\r\n")
    message = (
        f"From: a@ext.test\r\nTo: u@{DOMAIN}\r\nMessage-ID: <bomb@ext.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n"
        "--z\r\nContent-Type: text/plain\r\n\r\nThe figures.\r\n"
        "--z\r\nContent-Type: application/zip; name=figures.zip\r\n"
        "Content-Disposition: attachment; filename=figures.zip\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--z--\r\n"
    ).encode()
    out = []
    for alert in (False, True):
        tag = "bomb-alert" if alert else "bomb"
        clamd = clamav.Clamd(workdir, tag, extra_conf="AlertExceedsMax yes\nMaxRecursion 2\n" if alert else "")
        sink = bench.Sink(workdir, tag)
        gw = None
        try:
            gw, port, logf = bench.start_gateway(
                args.gateway, workdir, tag, sink.port, timeout=60, limits="",
                tables=f'[clamav]\nenabled = true\nsocket = "{clamd.socket}"\n')
            gw_cpu0, clamd_cpu0 = cpu_seconds(gw.pid), clamd.cpu()
            reply, took = send_raw(port, message)
            log(f"  ZIP bomb ({len(bomb):,} bytes, {unpacked / 2**30:,.0f} GiB unpacked), "
                f"{'AlertExceedsMax, MaxRecursion 2' if alert else 'clamd limits'}: {reply[:40]} in {took:.2f} s")
            out.append({
                "alert_exceeds_max": alert,
                "zip_bytes": len(bomb),
                "unpacked_gib": unpacked / 2**30,
                "reply": reply[:80],
                "seconds": took,
                "gateway_cpu_s": cpu_seconds(gw.pid) - gw_cpu0,
                "clamd_cpu_s": clamd.cpu() - clamd_cpu0,
                "gateway_peak_rss_mib": bench.read_vmhwm_kib(gw.pid) / 1024,
                "clamd_peak_rss_mib": bench.read_vmhwm_kib(clamd.proc.pid) / 1024,
            })
        finally:
            if gw:
                bench.kill_proc(gw)
            sink.stop()
            clamd.stop()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", required=True)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--messages", type=int, default=3000, help="messages of the normal client")
    p.add_argument("--settle", type=float, default=15.0, help="seconds the attack runs before measuring")
    p.add_argument("--big", type=int, default=60, help="messages at the size limit at once")
    p.add_argument("--cases", default="abwz", help="a: attack, b: big messages, w: worst cases, z: ZIP bomb through clamd")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = tempfile.mkdtemp(prefix="portcullis-abuse-", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    result = {}
    try:
        if "a" in args.cases:
            log(f"(1) a normal client, then with {args.connections} hostile connections")
            result["attack"] = case_attack(args, workdir)
        if "b" in args.cases:
            log(f"(2) {args.big} messages at the size limit at once")
            result["big"] = case_big(args, workdir)
        if "w" in args.cases:
            log("(3) worst-case messages at the size limit")
            result["worst"] = case_worst(args, workdir)
        if "z" in args.cases:
            log("(4) a ZIP bomb through ClamAV")
            result["zip_bomb"] = case_zip_bomb(args, workdir)
    finally:
        bench.cleanup_all()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    a = result.get("attack")
    if a:
        print(f"normal client unloaded      {a['unloaded_msgs_per_s']:8.0f} msgs/s")
        print(f"normal client under attack  {a['attacked_msgs_per_s']:8.0f} msgs/s  "
              f"({100 * a['ratio']:.0f} % of unloaded; waited {a['slot_wait_s']:.1f} s for a slot)")
        print(f"hostile connections         {a['hostile_connections']} "
              f"(refused at connect {a['refused_at_connect']}, cut by the gateway {a['cut_by_timeout']}, "
              f"cut after median {a['cut_after_s_median'] or 0:.1f} s, max {a['cut_after_s_max'] or 0:.1f} s)")
        print(f"gateway peak RSS            {a['peak_rss_mib']:8.0f} MiB")
    b = result.get("big")
    if b:
        print(f"{b['messages']} x {b['size_bytes'] / 2**20:.0f} MiB at once: replies {b['replies']} in "
              f"{b['seconds']:.1f} s; peak RSS {b['peak_rss_mib']:.0f} MiB, {b['growth_mib']:.0f} MiB above "
              f"the idle gateway (bound for the bodies {b['bound_mib']:.0f} MiB, sum of sizes "
              f"{b['sum_of_sizes_mib']:.0f} MiB)")
    for w in result.get("worst", []):
        print(f"{w['case']:<40} {w['reply'][:28]:<28} {w['seconds']:6.2f} s  cpu {w['gateway_cpu_s']:6.2f} s  "
              f"peak RSS {w['peak_rss_mib']:6.0f} MiB")
    for z in result.get("zip_bomb", []):
        print(f"ZIP bomb {z['zip_bytes']:,} bytes, {z['unpacked_gib']:,.0f} GiB unpacked, "
              f"{'AlertExceedsMax, MaxRecursion 2' if z['alert_exceeds_max'] else 'clamd limits'}: {z['reply'][:40]} in "
              f"{z['seconds']:.2f} s; CPU gateway {z['gateway_cpu_s']:.2f} s, clamd {z['clamd_cpu_s']:.2f} s; "
              f"peak RSS gateway {z['gateway_peak_rss_mib']:.0f} MiB, clamd {z['clamd_peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
