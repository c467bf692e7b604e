"""Session table benchmark: set-up rate, memory per session, per-packet cost.

Run: ``.venv/bin/python bench/bench_sessions.py [N]`` (default 100000), or
``python -m bench sessions`` (``main()``).
Prints creates/s for N TCP sessions (SYN -> create), the memory per
session at N sessions (tracemalloc, separate pass), the lookup+process
rate for established TCP packets, and the timer sweep cost.

The memory passes count whole sessions as the table holds them (the
session, its keys, the table's dict entries and values, the half-open
and timer-wheel bookkeeping): the clock runs at an epoch-like time (so
timer slots and deadlines are the large numbers a daemon has) and moves
on between sessions (so each has its own timestamps), and each
frame is parsed inside the measured loop and dropped after it, so what a
session keeps of its packets (addresses, sequence numbers) is counted
too.  Half-open: N SYNs.  Established: each SYN followed by its SYN/ACK
and ACK (the half-open bookkeeping is gone, the tracker holds both
directions' sequence numbers).
"""

from __future__ import annotations

import gc
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet.task import Clock  # noqa: E402

from cbac.config.model import InspectProtocol, InspectRule, RouterConfig  # noqa: E402
from cbac.inspect.session import SessionTable  # noqa: E402
from cbac.packet.view import parse_frame  # noqa: E402


#: the clock's start: an epoch-like time, as a daemon's reactor has
EPOCH = 1.8e9


def syn_frame(i: int, flags: int = 0x02, reply: bool = False) -> bytearray:
    """An untagged Ethernet/IPv4/TCP SYN from 10.x.y.z:port to 20.0.0.1:80
    (checksums are not checked by the session engine); ``flags`` 0x12 with
    ``reply``: the server's SYN/ACK; 0x10: the client's ACK."""
    src = ((10 << 24) | (i >> 8) & 0xFFFF00 | (i & 0xFF)).to_bytes(4, "big")
    dst = bytes((20, 0, 0, 1))
    sport = (1024 + (i % 60000)).to_bytes(2, "big")
    dport = (80).to_bytes(2, "big")
    cseq = i * 7919 & 0xFFFFFFFF
    sseq = i * 104729 & 0xFFFFFFFF
    f = bytearray(14 + 20 + 20)
    f[12:14] = b"\x08\x00"
    f[14] = 0x45
    f[16:18] = (40).to_bytes(2, "big")
    f[22] = 64
    f[23] = 6
    if reply:
        f[26:30], f[30:34], f[34:36], f[36:38] = dst, src, dport, sport
        f[38:42] = sseq.to_bytes(4, "big")
        f[42:46] = ((cseq + 1) & 0xFFFFFFFF).to_bytes(4, "big")
    else:
        f[26:30], f[30:34], f[34:36], f[36:38] = src, dst, sport, dport
        f[38:42] = ((cseq + 1) & 0xFFFFFFFF if flags & 0x10 else cseq).to_bytes(4, "big")
        if flags & 0x10:
            f[42:46] = ((sseq + 1) & 0xFFFFFFFF).to_bytes(4, "big")
    f[46] = 0x50
    f[47] = flags
    f[48:50] = (65535).to_bytes(2, "big")
    return f


def make_table(n: int):
    m = RouterConfig()
    m.inspect_rules["R"] = InspectRule("R", [InspectProtocol("tcp"), InspectProtocol("udp")])
    m.session_limit = n + 10
    m.session_limit_host = m.session_limit_dest = 10 ** 8   # one server, few hosts
    # thresholds out of the way: this measures the table itself
    m.inspect.max_incomplete_high = m.inspect.max_incomplete_low = 10 * n
    m.inspect.one_minute_high = m.inspect.one_minute_low = 10 * n
    m.inspect.tcp_max_incomplete_host = 10 * n
    clock = Clock()
    clock.advance(EPOCH)
    return SessionTable(clock, m, {})


def bench_create(n: int):
    pkts = [parse_frame(syn_frame(i)) for i in range(n)]
    t = make_table(n)
    gc.collect()
    t0 = time.perf_counter()
    for p in pkts:
        t.create(p, "in", "out", "R", None, None)
    dt = time.perf_counter() - t0
    assert len(t.sessions) == n, len(t.sessions)
    return t, pkts, dt


def _frames(n: int, established: bool):
    if not established:
        return [syn_frame(i) for i in range(n)]
    return [(syn_frame(i), syn_frame(i, 0x12, True), syn_frame(i, 0x10)) for i in range(n)]


def _fill(t, frames, established: bool) -> None:
    """Create the sessions; each frame is parsed here and dropped after
    use (what a session keeps of it is the session's)."""
    create = t.create
    # the clock moves on by 10 us a session, as a daemon's does between
    # connections: each session has its own creation and last-seen times
    advance = t.clock.advance
    if not established:
        for f in frames:
            advance(1e-5)
            create(parse_frame(f), "in", "out", "R", None, None)
        assert len(t.sessions) == len(frames)
        return
    lookup = t.lookup
    process = t.process
    for f0, f1, f2 in frames:
        advance(1e-5)
        create(parse_frame(f0), "in", "out", "R", None, None)
        for f in (f1, f2):
            p = parse_frame(f)
            s, d = lookup(p)
            if not process(s, d, p):
                raise AssertionError("handshake packet dropped")
    assert len(t.sessions) == len(frames) and not t.thresholds.half


def bench_memory(n: int, established: bool = False) -> float:
    frames = _frames(n, established)
    t = make_table(n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    _fill(t, frames, established)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    t.stop()
    return (after - before) / n


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def bench_rss(n: int) -> float:
    """The process's resident memory growth per session while ``n``
    (half-open) sessions are created (no tracemalloc: its own records
    would count)."""
    frames = _frames(n, False)
    t = make_table(n)
    gc.collect()
    before = _rss()
    _fill(t, frames, False)
    gc.collect()
    per = (_rss() - before) / n
    t.stop()
    return per


def bench_process(t, pkts, rounds: int = 3):
    """SYN retransmissions through lookup + process (half-open sessions)."""
    n = len(pkts)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for p in pkts:
            hit = t.lookup(p)
            t.process(hit[0], hit[1], p)
    dt = time.perf_counter() - t0
    return rounds * n / dt


def main(n: int = 100000, quick: bool = False):
    if quick:
        n = min(n, 20000)
    rss = bench_rss(n)          # first: no freed memory to reuse yet
    gc.collect()
    t, pkts, dt = bench_create(n)
    print("sessions:            %d" % n)
    print("create rate:         %.0f sessions/s (%.2f us each)" % (n / dt, dt / n * 1e6))
    print("lookup+process rate: %.0f packets/s" % bench_process(t, pkts))
    t0 = time.perf_counter()
    t.clock.advance(31)           # synwait: every session is due at once
    first = time.perf_counter() - t0
    runs = 1
    while t.sessions and runs < 10000:
        t.clock.advance(t.BACKLOG_TICK)
        runs += 1
    sweep = time.perf_counter() - t0
    print("expiry:              %.3f s for %d sessions (with RSTs), %d timer runs, "
          "longest run %.3f s" % (sweep, n, runs, first))
    t.stop()
    del t, pkts
    gc.collect()
    per = bench_memory(n)
    gc.collect()
    est = bench_memory(n, established=True)
    print("memory per session:  %.0f bytes (tracemalloc, at %d half-open sessions)" % (per, n))
    print("                     %.0f bytes (RSS growth, at %d half-open sessions, measured first)"
          % (rss, n))
    print("                     %.0f bytes (tracemalloc, at %d established sessions)" % (est, n))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100000)
