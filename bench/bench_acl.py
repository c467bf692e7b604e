"""ACL lookup speed: compiled index versus a naive linear evaluator.

    .venv/bin/python bench/bench_acl.py [--seconds 0.5]

Prints checks/s for 10-, 100- and 1000-entry "typical mixed" lists (host
and prefix entries, tcp/udp with eq/range ports, icmp types, a final
``deny ip any any``), for packets of new flows drawn at random (most of
them match late entries or fall to the end, the expensive case for a
linear list).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from ipaddress import IPv4Address

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])

from twisted.internet.task import Clock  # noqa: E402

from cbac.acl import AclSet  # noqa: E402
from cbac.acl.entry import Ace, naive_first_match  # noqa: E402
from cbac.config.model import AccessList, AclEntry, AddrMatch, PortMatch, RouterConfig  # noqa: E402

PORTS = [21, 22, 25, 53, 80, 110, 143, 443, 445, 993, 1433, 3306, 3389, 5060, 8080]


def typical_acl(n: int, rnd: random.Random) -> list[AclEntry]:
    entries = []
    for i in range(n - 1):
        seq = (i + 1) * 10
        kind = rnd.random()
        net = rnd.randrange(1, 223) << 24 | rnd.randrange(256) << 16 | rnd.randrange(256) << 8
        if kind < 0.45:       # permit tcp any host X eq P
            e = AclEntry(seq, "permit", "tcp", AddrMatch(),
                         destination=AddrMatch(IPv4Address(net | rnd.randrange(1, 255)),
                                               IPv4Address(0)),
                         destination_port=PortMatch("eq", (rnd.choice(PORTS),)))
        elif kind < 0.65:     # permit udp 10.x.y.0/24 any eq P
            e = AclEntry(seq, "permit", "udp",
                         AddrMatch(IPv4Address(net), IPv4Address(0xFF)),
                         destination=AddrMatch(),
                         destination_port=PortMatch("eq", (rnd.choice(PORTS),)))
        elif kind < 0.8:      # deny ip host A net/16
            e = AclEntry(seq, "deny", "ip",
                         AddrMatch(IPv4Address(net | 7), IPv4Address(0)),
                         destination=AddrMatch(IPv4Address(net & 0xFFFF0000),
                                               IPv4Address(0xFFFF)))
        elif kind < 0.9:      # permit tcp net/24 any range
            lo = rnd.randrange(1024, 60000)
            e = AclEntry(seq, "permit", "tcp", AddrMatch(IPv4Address(net), IPv4Address(0xFF)),
                         destination=AddrMatch(),
                         destination_port=PortMatch("range", (lo, lo + 100)))
        else:                 # permit icmp any host X echo
            e = AclEntry(seq, "permit", "icmp", AddrMatch(),
                         destination=AddrMatch(IPv4Address(net | 1), IPv4Address(0)),
                         icmp_type=8)
        entries.append(e)
    entries.append(AclEntry(n * 10, "deny", "ip", AddrMatch(), destination=AddrMatch()))
    return entries


def packets(entries, rnd: random.Random, count: int):
    out = []
    for _ in range(count):
        e = rnd.choice(entries)
        if rnd.random() < 0.5 and e.destination is not None and not e.destination.is_any:
            dst = int(e.destination.address) | (rnd.randrange(256) & int(e.destination.wildcard))
        else:
            dst = rnd.getrandbits(32)
        proto = rnd.choice((6, 6, 6, 17, 17, 1))
        out.append((proto, rnd.getrandbits(32), dst, rnd.randrange(1024, 65536),
                    rnd.choice(PORTS), 8 if proto == 1 else -1, 0 if proto == 1 else -1,
                    2, False))
    return out


def rate(fn, pkts, seconds):
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for p in pkts:
            fn(*p)
        n += len(pkts)
        t = time.perf_counter()
        if t >= end:
            return n / (t - t0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args(argv)
    rnd = random.Random(1)
    print("%8s %16s %16s %8s" % ("entries", "compiled chk/s", "naive chk/s", "speedup"))
    for n in (10, 100, 1000):
        entries = typical_acl(n, rnd)
        r = RouterConfig()
        r.acls["B"] = AccessList("B", "extended", entries=entries)
        acl = AclSet(r, Clock()).get("B")
        aces = [Ace(i, e, False) for i, e in enumerate(entries)]
        pkts = packets(entries, rnd, 2000)
        for p in pkts:     # exactness on the bench traffic too
            w = naive_first_match(aces, *p)
            assert acl.lookup_fields(*p) is (w.model if w else None)
        c = rate(acl.check_fields, pkts, args.seconds)
        nv = rate(lambda *p: naive_first_match(aces, *p), pkts, args.seconds)
        print("%8d %16.0f %16.0f %7.1fx" % (n, c, nv, c / nv))


if __name__ == "__main__":
    main()
