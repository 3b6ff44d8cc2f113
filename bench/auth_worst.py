#!/usr/bin/env python3
"""Worst-case cost of sender authentication per message, at the message size limit.

DKIM and ARC verification hash the header fields each signature's h= names, found by a
walk over the header block, so a sender controls the work (signatures x names x fields).
The gateway counts the header block first and refuses to verify past its caps ([auth]
max_header_fields, max_dkim_signatures, max_arc_sets, max_signed_headers). This script sends,
one at a time, to the release gateway with [auth] on (DNS from a local dnsmasq):
  plain      a message at the size limit, no signature (the baseline)
  attack     10 DKIM signatures naming 3,000 absent fields each, 200,000 filler fields,
             filled to the size limit (the caps stop it before any hashing)
  in-caps    the most the caps allow: 10 signatures naming 100 fields each over 1,000
             header fields, with the right body hash so every signature is hashed in full,
             filled to the size limit
  many-sigs  500 DKIM signatures, each naming the five usual fields with the right body
             hash, filled to the size limit (max_dkim_signatures stops it before any hashing)
and prints for each the time from the end of DATA to the reply, the gateway's own
per-message time (its log's ms=), and how long a new client waited for its greeting while
the message was being judged.
Usually run through bench/run-auth-worst.
"""

import argparse
import base64
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from auth import DOMAIN, SELECTOR, Dnsmasq, make_key  # noqa: E402

LIMIT = 26214400  # the default max_message_size


def body_of(size):
    line = b"x" * 76 + b"\r\n"
    return line * (size // len(line))


def signature(names, body_hash, usual=False):
    h = "from:to:subject:date:message-id" if usual else ":".join(f"x-absent-{i}" for i in range(names))
    return (f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={DOMAIN}; s={SELECTOR};\r\n"
            f"\th={h}; bh={body_hash}; b=AAAA\r\n").encode()


def build(case):
    head = (f"From: <sender@{DOMAIN}>\r\nTo: <rcpt@example.test>\r\nSubject: {case}\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{case}@{DOMAIN}>\r\n").encode()
    if case == "plain":
        extra = b""
    elif case == "attack":
        extra = b"".join(f"X-F{i}: f\r\n".encode() for i in range(200_000))
    else:
        fields = b"".join(f"X-F{i}: f\r\n".encode() for i in range(1000 - 5 - 10))
        extra = fields
    # room for the signatures, added once the body hash is known
    room = LIMIT - len(head) - len(extra) - 4096 - {
        "plain": 0, "attack": 500_000, "in-caps": 20_000, "many-sigs": 150_000}[case]
    body = body_of(room)
    # The right body hash (relaxed canonicalisation leaves these lines as they are), so a
    # verifier goes on to hash the header fields the signatures name.
    bh = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if case == "attack":
        extra = signature(3000, bh) * 10 + extra
    elif case == "in-caps":
        extra = signature(100, bh) * 10 + extra
    elif case == "many-sigs":
        extra = signature(5, bh, usual=True) * 500 + extra
    return extra + head + b"\r\n" + body


def smtp(port, sender, rcpt, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if line[3:4] != b"-":
                return line

    reply()
    for cmd in (b"EHLO bench.test", f"MAIL FROM:<{sender}>".encode(), f"RCPT TO:<{rcpt}>".encode(),
                b"DATA"):
        s.sendall(cmd + b"\r\n")
        reply()
    s.sendall(data + b".\r\n")
    started = time.monotonic()
    answer = reply()
    took = time.monotonic() - started
    s.sendall(b"QUIT\r\n")
    s.close()
    return answer.decode().strip(), took


def greeting_wait(port, start_after, result):
    time.sleep(start_after)
    t = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    s.makefile("rb").readline()
    result.append(time.monotonic() - t)
    s.close()


def logged_ms(log, case):
    text = open(log, "rb").read().decode("utf-8", "replace")
    for line in reversed(text.splitlines()):
        if "portcullis::message" in line and f"mail_from=sender@{DOMAIN}" in line and " ms=" in line:
            return float(line.rsplit(" ms=", 1)[1].split()[0])
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", required=True)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="portcullis-auth-worst.", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    try:
        key, pub = make_key(workdir)
        dns = Dnsmasq(workdir, pub)
        sink = bench.Sink(workdir, "worst")
        gw, port, log = bench.start_gateway(
            args.gateway, workdir, "worst", sink.port,
            top=f'dns_servers = ["127.0.0.1:{dns.port}"]\n', tables="[auth]\nenabled = true\n")
        try:
            bench.log(f"{'case':8} {'size':>10} {'reply':>28} {'end of DATA -> reply':>22} "
                      f"{'gateway ms':>11} {'greeting wait':>14}")
            for case in ("plain", "attack", "in-caps", "many-sigs"):
                data = build(case)
                waits = []
                t = threading.Thread(target=greeting_wait, args=(port, 0.2, waits))
                t.start()
                answer, took = smtp(port, f"sender@{DOMAIN}", "rcpt@example.test", data)
                t.join()
                bench.log(f"{case:8} {len(data):>10,} {answer[:28]:>28} {took:>20.3f} s "
                          f"{logged_ms(log, case):>11.1f} {waits[0] * 1000:>11.1f} ms")
        finally:
            bench.kill_proc(gw, grace=5.0)
            sink.stop()
    finally:
        bench.cleanup_all()
        subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    main()
