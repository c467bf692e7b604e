"""Memory under attack (issue 17): the appliance's state and RSS while it
is flooded, each attack in a fresh process.

The appliance runs the seed configuration (PAT for the inside, the mail
server 10.10.10.25 published on 172.22.1.16:25, ``ip inspect OUT-IN in``
outside, ``IN-OUT`` inside) plus a static ``10.10.10.30 <-> 172.22.1.30``
and an ACL entry admitting IP protocol 253 to it, on memory ports that keep
nothing.  The clock is simulated at RATE packets per second, so timers
(synwait, idle, NAT timeouts) run as they would at that rate.

* ``syn-flood``: spoofed SYNs (random sources and ports) to the published
  port 172.22.1.16:25 (the issue: 300,000 SYNs cost 1.9 GB);
* ``udp-exhaustion``: one inside host opens UDP flows from every port
  1024-65535 to one outside address (the issue: it took every PAT port);
* ``proto-253-sweep``: IP protocol 253 from the inside host through PAT
  to N destinations, and from N outside sources to the static host;
* ``established``: N established TCP connections through PAT from
  several inside hosts (the cost of legitimate state, for the bound).

For each: packets, seconds of CPU, RSS before and after and the peak
(VmHWM), sessions and NAT entries at the end and at their peak, and the
drops by reason.

Run: ``python -m bench attack`` (``--quick``: smaller N) or
``python bench/bench_attack.py [--quick] [ATTACK ...]``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

RATE = 10000.0            # simulated packets per second

R_IN, R_OUT = "02:00:0a:0a:0a:01", "02:00:ac:16:01:10"
H_IN, H_OUT, H_SRV = "02:00:0a:0a:0a:02", "02:00:ac:16:01:01", "02:00:0a:0a:0a:19"

EXTRA = """\
ip nat inside source static 10.10.10.30 172.22.1.30
access-list 101 permit 253 any host 172.22.1.30
"""

ATTACKS = {
    # name: (N, quick N)
    "syn-flood": (300000, 50000),
    "udp-exhaustion": (64512, 64512),
    "proto-253-sweep": (100000, 30000),
    "established": (30000, 10000),
    "established-http": (30000, 10000),
}


def _rss():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def _appliance():
    from twisted.internet.task import Clock
    from cbac.app import Appliance
    from cbac.config.parser import parse_config
    from cbac.dataplane.port import MemoryPort
    from cbac.packet.arp import build_request
    with open(os.path.join(ROOT, "etc", "router.conf")) as f:
        text = f.read().replace("\nend", "\n" + EXTRA + "end")
    model, _ = parse_config(text)
    clock = Clock()
    clock.advance(1000)
    pin = MemoryPort("Ethernet2/1", R_IN, keep_sent=False)
    pout = MemoryPort("Ethernet2/0", R_OUT, keep_sent=False)
    app = Appliance(model, clock, {"Ethernet2/1": pin, "Ethernet2/0": pout})
    app.router.start()
    fr = app.router.frameReceived
    hosts = [("02:00:0a:0a:0a:%02x" % h, "10.10.10.%d" % h) for h in range(2, 10)]
    for mac, ip in hosts + [(H_SRV, "10.10.10.25"), (H_SRV, "10.10.10.30")]:
        fr(pin, build_request(mac, ip, "10.10.10.1"), b"")
    fr(pout, build_request(H_OUT, "172.22.1.1", "172.22.1.16"), b"")
    return app, clock, pin, pout


def _ip(s):
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def run_attack(name, n):
    """In this process: run one attack, return the figures."""
    from cbac.nat.translation import flow_key
    from cbac.packet import build
    app, clock, pin, pout = _appliance()
    fr = app.router.frameReceived
    nat, sessions = app.nat, app.sessions
    rnd = random.Random(17)
    peak = {"sessions": 0, "nat": 0}
    step = 1.0 / RATE
    mac_out, mac_rin = bytes.fromhex(H_OUT.replace(":", "")), bytes.fromhex(R_OUT.replace(":", ""))
    mac_in, mac_rout = bytes.fromhex(H_IN.replace(":", "")), bytes.fromhex(R_IN.replace(":", ""))

    def note():
        s, t = len(sessions.sessions), len(nat.entries)
        if s > peak["sessions"]:
            peak["sessions"] = s
        if t > peak["nat"]:
            peak["nat"] = t

    def gen():
        yield from _frames(name, n, rnd, fr, pin, pout, mac_out, mac_rin, mac_in, mac_rout)

    import gc
    gc.collect()
    before = _rss()
    cpu = 0.0
    count = 0
    it = gen()
    while True:
        chunk = []
        for x in it:
            chunk.append(x)
            if len(chunk) >= 3000:
                break
        if not chunk:
            break
        t0 = time.process_time()
        for port, f in chunk:
            if isinstance(f, tuple):
                h, dst, sp, dport = f
                t = nat.flows_in.get(flow_key(6, _ip(h), sp, _ip(dst), dport))
                if t is None:
                    continue
                g, gp = t.inside_global
                f = build.tcp_frame(dst, g, dport, gp, seq=5000, ack=1001,
                                    flags=build.SYN | build.ACK, src_mac=mac_out, dst_mac=mac_rin)
            fr(port, f, b"")
            count += 1
            clock.advance(step)
            if count % 1000 == 0:
                note()
        cpu += time.process_time() - t0
    note()
    after = _rss()
    return {
        "attack": name, "packets": count, "cpu_s": round(cpu, 2),
        "rss_before_kb": before["VmRSS"], "rss_after_kb": after["VmRSS"],
        "rss_peak_kb": after["VmHWM"],
        "sessions_end": len(sessions.sessions), "sessions_peak": peak["sessions"],
        "nat_end": len(nat.entries), "nat_peak": peak["nat"],
        "drops": dict(app.router.drops),
    }


def _frames(name, n, rnd, fr, pin, pout, mac_out, mac_rin, mac_in, mac_rout):
    """(port, frame) pairs of one attack, built lazily; a tuple instead of
    a frame is a SYN/ACK to build once the SYN's translation is known."""
    from cbac.packet import build
    if name == "syn-flood":
        for i in range(n):
            src = (198 << 24) | rnd.getrandbits(24)
            yield pout, build.tcp_frame(src, "172.22.1.16", rnd.randrange(1024, 65536), 25,
                                        seq=rnd.getrandbits(32), flags=build.SYN,
                                        src_mac=mac_out, dst_mac=mac_rin)
    elif name == "udp-exhaustion":
        for p in range(1024, 1024 + n):
            yield pin, build.udp_frame("10.10.10.2", "172.22.1.1", p, 9999, b"x",
                                       src_mac=mac_in, dst_mac=mac_rout)
    elif name == "proto-253-sweep":
        from cbac.packet.ipv4 import build_ipv4
        for i in range(n):
            if i % 2:
                ip = build_ipv4(_ip("10.10.10.2"), (203 << 24) | (i & 0xFFFFFF), 253, b"sweep")
                yield pin, build.frame(ip, mac_rout, mac_in)
            else:
                ip = build_ipv4((198 << 24) | (i & 0xFFFFFF), _ip("172.22.1.30"), 253, b"sweep")
                yield pout, build.frame(ip, mac_rin, mac_out)
    elif name in ("established", "established-http"):
        dport = 80 if name == "established-http" else 8080
        hosts = ["10.10.10.%d" % h for h in range(2, 10)]
        for i in range(n):
            h = hosts[i % len(hosts)]
            sp = 20000 + i // len(hosts)
            dst = "198.51.100.%d" % (100 + i % 50)
            yield pin, build.tcp_frame(h, dst, sp, dport, seq=1000, flags=build.SYN,
                                       src_mac=mac_in, dst_mac=mac_rout)
            yield pout, (h, dst, sp, dport)
            yield pin, build.tcp_frame(h, dst, sp, dport, seq=1001, ack=5001, flags=build.ACK,
                                       src_mac=mac_in, dst_mac=mac_rout)
    else:
        raise SystemExit("unknown attack %r" % name)


def run(quick=False, names=None):
    out = []
    for name in names or list(ATTACKS):
        n = ATTACKS[name][1 if quick else 0]
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", name, str(n)],
                           capture_output=True, text=True, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=ROOT))
        if p.returncode != 0:
            out.append({"attack": name, "error": p.stderr.strip().splitlines()[-1:]})
            continue
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
    return out


def table(results):
    lines = ["%-16s %8s %7s %9s %9s %9s %9s %9s" % (
        "attack", "packets", "cpu s", "RSS MB", "+RSS MB", "peak MB", "sessions", "NAT")]
    for r in results:
        if "error" in r:
            lines.append("%-16s error: %s" % (r["attack"], r["error"]))
            continue
        lines.append("%-16s %8d %7.1f %9.1f %9.1f %9.1f %4d/%-4d %4d/%-4d" % (
            r["attack"], r["packets"], r["cpu_s"], r["rss_after_kb"] / 1024,
            (r["rss_after_kb"] - r["rss_before_kb"]) / 1024, r["rss_peak_kb"] / 1024,
            r["sessions_end"], r["sessions_peak"], r["nat_end"], r["nat_peak"]))
    lines.append("(sessions and NAT: at the end / at the peak; +RSS: growth during the attack)")
    for r in results:
        if "drops" in r and r["drops"]:
            top = sorted(r["drops"].items(), key=lambda kv: -kv[1])[:4]
            lines.append("drops %s: %s" % (r["attack"], ", ".join("%s %d" % kv for kv in top)))
    return "\n".join(lines)


def main(quick=False, names=None):
    print(table(run(quick, names)))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--one"]:
        print(json.dumps(run_attack(args[1], int(args[2]))))
    else:
        main("--quick" in args, [a for a in args if not a.startswith("-")] or None)
