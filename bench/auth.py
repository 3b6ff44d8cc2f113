#!/usr/bin/env python3
"""Authentication benchmark (stdlib + dkimpy): the cost of SPF, DKIM, DMARC, ARC and trust.

In one invocation, alternating round by round:
  (core) the gateway with its core pipeline only ([auth] off, [trust] off)
  (auth) the same gateway with [auth] on (SPF, DKIM, ARC, DMARC; DNS from a local dnsmasq,
         cached by the gateway) and the trust stage on (relationships, known servers)
Both get the same 10 KB message, DKIM-signed (RSA-2048) by dkimpy for bench.test, whose
SPF passes for 127.0.0.1 and whose DMARC is p=reject: every message authenticates (each one
is verified in full: the gateway caches DNS records, not results). The load is Postfix's
smtp-source (-F: the signed file, 20 sessions), delivered to smtp-sink; rate = N / (time from
the load's start until the sink counted N), as in bench/run. Prints medians and the ratio
auth/core (target >= 0.75).
Usually run through bench/run-auth.
"""

import argparse
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (process, port and smtp-sink helpers)

DOMAIN = "bench.test"
SELECTOR = "b2026"


def make_key(workdir):
    key = os.path.join(workdir, "dkim.pem")
    bench.run_quiet(["openssl", "genrsa", "-traditional", "-out", key, "2048"], "openssl genrsa")
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return key, base64.b64encode(der).decode()


WORDS = ("invoice meeting report project budget quarter customer order delivery schedule "
         "contract review update team office printer network server backup policy").split()


def message(size=10240):
    """A 10 KB plain-text message from sender@bench.test (random words)."""
    rnd = random.Random(2026)
    lines, total = [], 0
    while total < size:
        line = " ".join(rnd.choice(WORDS) for _ in range(10))
        lines.append(line)
        total += len(line) + 2
    body = "\r\n".join(lines)
    return (f"From: <sender@{DOMAIN}>\r\nTo: <rcpt@example.test>\r\nSubject: bench\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@{DOMAIN}>\r\n"
            f"\r\n{body}\r\n").encode()


def signed_message_file(workdir, key):
    """A 10 KB message DKIM-signed by dkimpy, written with LF line ends for smtp-source -F
    (which sends each line with CRLF: the bytes that were signed)."""
    import dkim
    priv = open(key, "rb").read()
    msg = message()
    sig = dkim.sign(msg, SELECTOR.encode(), DOMAIN.encode(), priv,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    path = os.path.join(workdir, "signed.eml")
    with open(path, "wb") as f:
        f.write((sig + msg).replace(b"\r\n", b"\n"))
    return path


class Dnsmasq:
    def __init__(self, workdir, pubkey):
        self.port = bench.free_port()
        key_txt = f"v=DKIM1; k=rsa; p={pubkey}"
        chunks = ",".join(key_txt[i:i + 255] for i in range(0, len(key_txt), 255))
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--bind-interfaces", "--listen-address=127.0.0.1", "--local=/test/", "--user=root",
                "--pid-file=", f"--port={self.port}", "--local-ttl=300",
                f"--txt-record={DOMAIN},v=spf1 ip4:127.0.0.1 -all",
                f"--txt-record={SELECTOR}._domainkey.{DOMAIN},{chunks}",
                f"--txt-record=_dmarc.{DOMAIN},v=DMARC1; p=reject"]
        self.proc = bench.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bench.wait_listening(self.port, 10, "dnsmasq", self.proc)


def gateway_rate(args, workdir, tag, dns_port, message_file, with_auth):
    sink = bench.Sink(workdir, tag)
    gw = None
    try:
        stages = (f'[auth]\nenabled = true\n[trust]\nenabled = true\n' if with_auth
                  else '[auth]\nenabled = false\n[trust]\nenabled = false\n')
        gw, gwport, log = bench.start_gateway(
            args.gateway, workdir, tag, sink.port,
            top=f'dns_servers = ["127.0.0.1:{dns_port}"]\n', tables=stages)
        n = args.messages
        times = bench.run_source(gwport, n, workdir, tag, sink, args.timeout,
                                 message_file=message_file, sender=f"sender@{DOMAIN}")
        if with_auth:
            # prove the auth run authenticated: the message log lines carry the symbols
            with open(log, "rb") as lf:
                text = lf.read().decode("utf-8", "replace")
            passed = text.count("DMARC_PASS")
            if passed < n:
                raise bench.BenchError(f"only {passed} of {n} messages logged DMARC_PASS:\n"
                                       f"{bench.tail(log)}")
        return n / times["deliver_s"]
    finally:
        if gw is not None:
            bench.kill_proc(gw, grace=5.0)
        sink.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", required=True, help="path of the portcullis release binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.json:
        bench.OUT = sys.stderr
    workdir = tempfile.mkdtemp(prefix="portcullis-auth-bench.", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    rates = {"core": [], "auth": []}
    try:
        key, pub = make_key(workdir)
        message_file = signed_message_file(workdir, key)
        dns = Dnsmasq(workdir, pub)
        for rnd in range(1, args.rounds + 1):
            for case in ("core", "auth"):
                rates[case].append(gateway_rate(args, workdir, f"{case}{rnd}", dns.port, message_file,
                                                case == "auth"))
                what = "core pipeline only" if case == "core" else "auth + trust on     "
                bench.log(f"  round {rnd} ({case}) {what}  {rates[case][-1]:8,.0f} msg/s delivered")
    finally:
        bench.cleanup_all()
        subprocess.run(["rm", "-rf", workdir])
    core, auth = statistics.median(rates["core"]), statistics.median(rates["auth"])
    # Each round's pair ran back to back under the same load: the per-round ratios are the
    # steadier figure on a shared machine.
    per_round = [a / c for a, c in zip(rates["auth"], rates["core"])]
    summary = {"core_msgs_per_sec": core, "auth_msgs_per_sec": auth, "ratio": auth / core,
               "ratio_per_round_median": statistics.median(per_round),
               "rounds": args.rounds, "messages": args.messages, "runs": rates}
    bench.log(f"\nmedians: core {core:,.0f} msg/s, auth + trust {auth:,.0f} msg/s; "
              f"ratio auth/core = {auth / core:.3f} (target >= 0.75); per-round ratios "
              f"{', '.join(f'{r:.2f}' for r in per_round)}, median {statistics.median(per_round):.3f}")
    if args.json:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
