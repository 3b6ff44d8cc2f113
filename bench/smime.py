#!/usr/bin/env python3
"""S/MIME benchmark (stdlib only): messages/s with RSA-2048 S/MIME — the engine alone and
the whole gateway — vs OpenSSL's own RSA-2048 private-key rate on this machine, same run.

  (e) the S/MIME engine alone (benches/smime_engine.rs, --engine): the gateway's own
      pipeline steps (SmimeOutbound::protect; SmimeInbound::unwrap + harvest) on the same
      certificate store, 20 messages in flight, crypto on one slot per core — what the
      engine costs per message, without SMTP, queue and delivery. Outbound: unique 10 KB
      messages alice -> bob@partner.test, sign + encrypt; inbound: the fixtures of (i).
      Every result is checked (encrypted copy; decrypted and signature valid). Each engine
      case (outbound, inbound, pool-rsa) runs between two `openssl speed -seconds 1` runs
      and its ratio is its rate over their mean (this VM's speed drifts within seconds); the
      engine ratio is the median of the per-round ratios. "pool-rsa" is a bare RSA
      signature per job through the same worker pool: what the pool and the threads cost
      without any S/MIME work.
  (o) outbound sign+encrypt: unique 10 KB messages from alice@example.test (internal client,
      127.0.0.2) to bob@partner.test; policy sign = encrypt = "require", so every message is
      signed with alice's key (one RSA private-key operation) and encrypted to bob's
      certificate (AES-256-CBC, one public-key operation)
  (p) for reference, the same load without S/MIME (a sender domain without policy)
  (i) inbound decrypt+verify: 10 KB messages signed by carol@partner.test and encrypted to
      bob@example.test (made with `openssl cms` before the timing; a pool of distinct ones,
      sent round-robin), decrypted with bob's key (one private-key operation), verified
      against the test CA, signer harvested
Both with 20 SMTP sessions, delivered to smtp-sink; rate = N / (time until the sink counted
N). `openssl speed -seconds 3 -multi 2 rsa2048` (sign/s = private-key operations per second
on both cores) runs before and after the rounds; the ratio is rate / mean sign/s
(one private-key operation per message is the floor; target >= 0.70). The gateway's ratios
(o)/(i) also carry SMTP in and out, the durable queue and delivery, which cost about as much
CPU per message as an RSA-2048 signature (compare (p)).
Every message is checked in the gateway log for its S/MIME symbols. Usually run through
bench/run-smime.
"""

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (process, port and smtp-sink helpers)

WORDS = ("invoice meeting report project budget quarter customer order delivery schedule "
         "contract review update team office printer network server backup policy").split()
SESSIONS = 20
PASSWORD = "bench-secret"


def body_10k(seed):
    rnd = random.Random(seed)
    lines, total = [], 0
    while total < 10240:
        line = " ".join(rnd.choice(WORDS) for _ in range(10)) + f" {rnd.getrandbits(64):016x}"
        lines.append(line)
        total += len(line) + 2
    return "\r\n".join(lines)


def plain_message(i, frm, to):
    return (f"From: <{frm}>\r\nTo: <{to}>\r\nSubject: bench {i}\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{i}.{time.time_ns()}@bench.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{body_10k(i ^ time.time_ns())}\r\n").encode()


def openssl(args, what):
    r = subprocess.run(["openssl", *args], capture_output=True)
    if r.returncode != 0:
        raise bench.BenchError(f"openssl {what} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout


class Pki:
    """CA + holders made with the openssl CLI in the work dir."""

    def __init__(self, d):
        self.d = d
        openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.p("ca.key"), "-out",
                 self.p("ca.pem"), "-days", "30", "-subj", "/CN=Bench CA", "-addext",
                 "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "CA")
        with open(self.p("password"), "w") as f:
            f.write(PASSWORD + "\n")
        self.serial = 10

    def p(self, f):
        return os.path.join(self.d, f)

    def holder(self, email):
        self.serial += 1
        key, csr, cert, ext, p12 = (self.p(f"{email}.{x}") for x in ("key", "csr", "pem", "ext", "p12"))
        openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={email}"], "req")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    f"extendedKeyUsage=emailProtection\nsubjectAltName=email:{email}\n")
        openssl(["x509", "-req", "-in", csr, "-CA", self.p("ca.pem"), "-CAkey", self.p("ca.key"), "-set_serial",
                 str(self.serial), "-days", "30", "-extfile", ext, "-out", cert], "x509")
        openssl(["pkcs12", "-export", "-inkey", key, "-in", cert, "-out", p12, "-passout", f"pass:{PASSWORD}"],
                "pkcs12")
        return {"cert": cert, "key": key, "p12": p12}


def encrypted_signed(pki, signer, to, i):
    """One inbound fixture: sign (detached) with the signer, encrypt to `to`, as a message."""
    d = tempfile.mkdtemp(dir=pki.d)
    ent = os.path.join(d, "e")
    with open(ent, "wb") as f:
        f.write(f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{body_10k(1000 + i)}\r\n".encode())
    signed = openssl(["cms", "-sign", "-binary", "-in", ent, "-signer", signer["cert"], "-inkey", signer["key"]],
                     "sign")
    with open(ent, "wb") as f:
        f.write(signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    enc = openssl(["cms", "-encrypt", "-binary", "-aes-256-cbc", "-in", ent, "-recip", to["cert"]], "encrypt")
    enc = enc.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = (f"From: <carol@partner.test>\r\nTo: <bob@example.test>\r\nSubject: inbound {i}\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <in{i}@partner.test>\r\n").encode()
    return head + enc


async def read_reply(r):
    while True:
        line = await r.readline()
        if not line:
            raise bench.BenchError("gateway closed the connection")
        if line[3:4] == b" ":
            return int(line[:3]), line


async def smtp_session(port, source_ip, frm, to, queue):
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source_ip, 0))
    await read_reply(r)
    w.write(b"EHLO bench.test\r\n")
    await read_reply(r)
    while queue:
        msg = queue.pop()
        w.write(f"MAIL FROM:<{frm}>\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode())
        for want in (250, 250, 354):
            code, line = await read_reply(r)
            if code != want:
                raise bench.BenchError(f"gateway said {line!r}")
        w.write(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, line = await read_reply(r)
        if code != 250:
            raise bench.BenchError(f"gateway refused a message: {line!r}")
    w.write(b"QUIT\r\n")
    w.close()


def timed_load(port, source_ip, frm, to, msgs, sink, timeout):
    sink.expect(sink.count + len(msgs))
    target = sink.count + len(msgs)
    queue = list(msgs)
    t = time.monotonic()

    async def load():
        await asyncio.wait_for(asyncio.gather(*(smtp_session(port, source_ip, frm, to, queue)
                                                for _ in range(SESSIONS))), timeout)
    asyncio.run(load())
    done = sink.wait_for(target, time.monotonic() + timeout)
    if done is None:
        raise bench.BenchError(f"sink counted {sink.count} of {target}")
    return len(msgs) / (done - t)


def openssl_speed(seconds=3):
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "-multi", "2", "rsa2048"],
                         capture_output=True, text=True).stdout
    m = re.findall(r"^rsa 2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out, re.M)
    if not m:
        raise bench.BenchError(f"cannot read `openssl speed` output:\n{out[-500:]}")
    return float(m[-1][0])


def count_in_log(log, needle):
    with open(log, "rb") as f:
        return f.read().count(needle.encode())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateway", required=True, help="path of the portcullis release binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--pool", type=int, default=64, help="distinct inbound fixtures (sent round-robin)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--engine", required=True, help="path of the benches/smime_engine binary")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the work dir (config, store, fixtures) to rerun or profile the engine bench")
    args = ap.parse_args()
    if args.json:
        bench.OUT = sys.stderr
    workdir = tempfile.mkdtemp(prefix="portcullis-smime-bench.", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    rates = {"o": [], "i": [], "p": [], "eo": [], "ei": [], "pool": []}
    ratios = {"eo": [], "ei": [], "pool": []}
    speeds = []
    try:
        pki = Pki(workdir)
        alice = pki.holder("alice@example.test")
        bob_out = pki.holder("bob@partner.test")
        bob_in = pki.holder("bob@example.test")
        carol = pki.holder("carol@partner.test")
        bench.log(f"making {args.pool} signed+encrypted inbound fixtures with openssl cms ...")
        with ThreadPoolExecutor(2) as ex:
            pool = list(ex.map(lambda i: encrypted_signed(pki, carol, bob_in, i), range(args.pool)))
        sink = bench.Sink(workdir, "smime")
        gwdir = os.path.join(workdir, "gw")
        os.makedirs(os.path.join(gwdir, "data"))
        port = bench.free_port()
        cfg = os.path.join(gwdir, "portcullis.toml")
        with open(cfg, "w") as f:
            f.write(f'hostname = "gw.bench.test"\ndata_dir = "{gwdir}/data"\nlocal_domains = ["example.test"]\n'
                    f'internal_networks = ["127.0.0.2/32"]\ninbound_next_hop = "127.0.0.1:{sink.port}"\n'
                    f'outbound_smarthost = "127.0.0.1:{sink.port}"\nmetrics_bind = ""\n'
                    f'[[listeners]]\nbind = "127.0.0.1:{port}"\ntls = "none"\n'
                    f'[limits]\nmax_connections_per_ip = 100\n[bayes]\nenabled = false\n'
                    f'[certs]\nsystem_roots = false\n[service]\nallow_root = true\n'
                    f'[[smime.policy]]\ndomain = "example.test"\nsign = "require"\nencrypt = "require"\n')

        def cli(*a):
            r = subprocess.run([args.gateway, "certs", "--config", cfg, *a], capture_output=True, text=True)
            if r.returncode != 0:
                raise bench.BenchError(f"certs {a}: {r.stderr}")
        cli("import", alice["p12"], "--password-file", pki.p("password"))
        cli("import", bob_in["p12"], "--password-file", pki.p("password"))
        cli("import", bob_out["cert"])
        cli("trust-ca", pki.p("ca.pem"))
        fixtures = os.path.join(workdir, "fixtures")
        os.makedirs(fixtures)
        for n, m in enumerate(pool):
            with open(os.path.join(fixtures, f"{n}.eml"), "wb") as f:
                f.write(m)
        def engine(*extra):
            r = subprocess.run([args.engine, "--config", cfg, "--messages", str(args.messages),
                                "--inbound", fixtures, *extra], capture_output=True, text=True)
            if r.returncode != 0:
                raise bench.BenchError(f"the engine bench failed: {r.stderr[-2000:]}")
            return json.loads(r.stdout)

        # Each case runs between two short `openssl speed` runs and is compared with their
        # mean: this VM's speed drifts within seconds, and a reference taken on both sides
        # of a measurement follows a drift that one taken before it misses.
        cases = (("eo", "outbound", "engine_outbound_msgs_per_sec"),
                 ("ei", "inbound", "engine_inbound_msgs_per_sec"),
                 ("pool", "pool-rsa", "pool_rsa_sign_per_sec"))
        for rnd in range(1, args.rounds + 1):
            before = openssl_speed(1)
            refs = []
            for k, only, key in cases:
                rate = engine("--only", only)[key]
                after = openssl_speed(1)
                refs.append((before + after) / 2)
                rates[k].append(rate)
                ratios[k].append(rate / refs[-1])
                before = after
            bench.log(f"  round {rnd} (e) engine alone: outbound sign+encrypt {rates['eo'][-1]:8,.0f} msg/s "
                      f"({ratios['eo'][-1]:.3f} of {refs[0]:,.0f} sign/s), inbound decrypt+verify "
                      f"{rates['ei'][-1]:8,.0f} msg/s ({ratios['ei'][-1]:.3f} of {refs[1]:,.0f}); pool-rsa "
                      f"{rates['pool'][-1]:8,.0f} sign/s ({ratios['pool'][-1]:.3f} of {refs[2]:,.0f})")
        log = os.path.join(gwdir, "portcullis.log")
        with open(log, "wb") as lf:
            gw = bench.spawn([args.gateway, "run", "--config", cfg], stdout=lf, stderr=subprocess.STDOUT)
        bench.wait_listening(port, 30, "the gateway", gw, log)
        speeds.append(openssl_speed())
        bench.log(f"  openssl speed rsa2048 (2 cores): {speeds[-1]:8,.0f} private-key ops/s (sign/s)")
        for rnd in range(1, args.rounds + 1):
            msgs = [plain_message(rnd * 10_000_000 + i, "alice@example.test", "bob@partner.test")
                    for i in range(args.messages)]
            rates["o"].append(timed_load(port, "127.0.0.2", "alice@example.test", "bob@partner.test", msgs,
                                         sink, args.timeout))
            bench.log(f"  round {rnd} (o) outbound sign+encrypt   {rates['o'][-1]:8,.0f} msg/s delivered")
            msgs = [pool[i % len(pool)] for i in range(args.messages)]
            rates["i"].append(timed_load(port, "127.0.0.1", "carol@partner.test", "bob@example.test", msgs,
                                         sink, args.timeout))
            bench.log(f"  round {rnd} (i) inbound decrypt+verify  {rates['i'][-1]:8,.0f} msg/s delivered")
            msgs = [plain_message(rnd * 10_000_000 + 5_000_000 + i, "ann@plain.test", "bob@partner.test")
                    for i in range(args.messages)]
            rates["p"].append(timed_load(port, "127.0.0.2", "ann@plain.test", "bob@partner.test", msgs,
                                         sink, args.timeout))
            bench.log(f"  round {rnd} (p) same load, no S/MIME    {rates['p'][-1]:8,.0f} msg/s delivered")
        speeds.append(openssl_speed())
        bench.log(f"  openssl speed rsa2048 (2 cores): {speeds[-1]:8,.0f} private-key ops/s (sign/s)")
        n = args.rounds * args.messages
        checks = {"SMIME_SIGNED_OUT": n, "SMIME_ENCRYPTED_OUT": n, "SMIME_DECRYPTED": n, "SMIME_SIGNED_VALID": n}
        for sym, want in checks.items():
            got = count_in_log(log, sym)
            if got < want:
                raise bench.BenchError(f"only {got} of {want} messages show {sym} in the gateway log")
        bench.kill_proc(gw, grace=5.0)
        sink.stop()
    finally:
        bench.cleanup_all()
        if args.keep_tmp:
            bench.log(f"kept {workdir}; the engine alone: {args.engine} --config {workdir}/gw/portcullis.toml "
                      f"--messages N --inbound {workdir}/fixtures [--only inbound|outbound]")
        else:
            subprocess.run(["rm", "-rf", workdir])
    o, i, s = statistics.median(rates["o"]), statistics.median(rates["i"]), statistics.mean(speeds)
    p = statistics.median(rates["p"])
    eo, ei = statistics.median(rates["eo"]), statistics.median(rates["ei"])
    ro, ri, rp = (statistics.median(ratios[k]) for k in ("eo", "ei", "pool"))
    summary = {"engine_outbound_msgs_per_sec": eo, "engine_inbound_msgs_per_sec": ei,
               "engine_ratio_outbound": ro, "engine_ratio_inbound": ri,
               "pool_rsa_sign_per_sec": statistics.median(rates["pool"]), "pool_rsa_ratio": rp,
               "outbound_sign_encrypt_msgs_per_sec": o, "inbound_decrypt_verify_msgs_per_sec": i,
               "plain_msgs_per_sec": p,
               "openssl_rsa2048_sign_per_sec": s, "ratio_outbound": o / s, "ratio_inbound": i / s,
               "rounds": args.rounds, "messages": args.messages}
    bench.log(f"\nengine alone (medians): outbound sign+encrypt {eo:,.0f} msg/s, inbound decrypt+verify "
              f"{ei:,.0f} msg/s; ratio outbound {ro:.3f}, inbound {ri:.3f} (medians of the per-round ratios; "
              f"target >= 0.70); bare RSA through the worker pool {rp:.3f}")
    bench.log(f"gateway medians: outbound sign+encrypt {o:,.0f} msg/s, inbound decrypt+verify {i:,.0f} msg/s; "
              f"openssl rsa2048 {s:,.0f} private-key ops/s; the same load without S/MIME {p:,.0f} msg/s")
    bench.log(f"gateway ratio outbound {o / s:.3f}, inbound {i / s:.3f} (SMTP + queue + delivery included)")
    if args.json:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
