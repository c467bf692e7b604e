"""NAT benchmark: PAT set-up rate and memory per translation.

The seed configuration (``etc/router.conf``: ``ip nat inside source list 1
interface Ethernet2/0 overload``), its NAT limits lifted (``ip nat
translation max-entries`` and ``... all-host``: one benchmark host stands
for many).  Figures:

* PAT translations created per second: :meth:`Nat.outbound` on TCP SYNs of
  distinct flows (the real ACL check, PAT allocator, timer wheel, rewrites
  of the packet); the packets are parsed before the clock starts;
* memory per translation at N translations (default 100,000): everything
  the NAT table holds for them (the entries, their rewrites and keys, the
  dictionary slots of both flow tables and of ``entries``, the timer-wheel
  slots, the PAT port state: per-port entries and the port map), by
  tracemalloc, and the process's RSS growth in a fresh process;
* memory per session + translation for N TCP connections set up through
  the engine (the whole appliance on memory ports, as bench/bench_engine.py:
  SYN, SYN/ACK, ACK of each; session and NAT limits lifted the same way),
  tracemalloc and RSS growth, each in a fresh process.

One global address has 64,512 ports in 1024-65535: N flows come from
50,000 inside ports (10000-59999) to N / 50,000 destination ports, so
flows of the same inside port share its global port (PAT is endpoint
independent), as bench_engine's new_flows does.

Run: ``python -m bench nat`` or ``python bench/bench_nat.py [--quick] [N]``.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SEED = os.path.join(ROOT, "etc", "router.conf")
IN_IP, OUT_IP = "10.10.10.2", "172.22.1.1"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _flow(i):
    return 10000 + i % 50000, 8000 + i // 50000


def _nat(n):
    from twisted.internet.task import Clock

    from cbac.config.parser import parse_file
    from cbac.nat import Nat
    model, _ = parse_file(SEED)
    model.nat.timeouts.max_entries = n + 1000
    model.nat.timeouts.max_entries_all_host = 10 ** 8
    return Nat(model, Clock())


def _syn(i):
    from cbac.packet.build import tcp_frame
    from cbac.packet.view import parse_frame
    sp, dp = _flow(i)
    return parse_frame(bytearray(tcp_frame(IN_IP, OUT_IP, sp, dp, seq=1000, flags=0x02,
                                           win=65535)))


def nat_rate(n):
    """Translations created per second by Nat.outbound (SYNs, distinct
    flows): ``(per second of wall-clock time, per second of this process's
    CPU time)``.  On a shared machine the second moves less with the load."""
    nat = _nat(n)
    pkts = [_syn(i) for i in range(n)]
    gc.collect()
    out = nat.outbound
    t0, c0 = time.perf_counter(), time.process_time()
    for p in pkts:
        out(p)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    assert len(nat.entries) == n, (len(nat.entries), n)
    nat.stop()
    return n / dt, n / dc


def nat_memory(n, mode):
    """Bytes per translation held by the NAT table at ``n`` translations
    (``mode`` "tracemalloc" or "rss"); the packets are made and dropped one
    by one (only what the table keeps stays)."""
    nat = _nat(n)
    _syn(0)                 # imports and caches warm
    out = nat.outbound

    def fill():
        for i in range(n):
            out(_syn(i))
    grown = _grown(mode, fill)
    assert len(nat.entries) == n, (len(nat.entries), n)
    return grown / n


def _grown(mode, fill):
    """Bytes the process gained while ``fill()`` ran, after a collection
    on both sides: tracemalloc's count or the RSS growth (``mode``)."""
    import tracemalloc
    gc.collect()
    if mode == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss()
    fill()
    gc.collect()
    if mode == "tracemalloc":
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        after = _rss()
    return after - before


def engine_memory(n, mode):
    """Bytes per session + translation for ``n`` TCP connections through the
    appliance (3-way handshakes, seed configuration, limits lifted)."""
    from bench import bench_engine as be
    app, pin, pout = be.appliance()
    m = app.model
    m.session_limit = n + 1000
    m.nat.timeouts.max_entries = n + 1000
    # the limits as the running engine reads them (the model is shared)
    fr = app.router.frameReceived
    frame = be.frame

    def conn(i):
        sp, dp = _flow(i)
        fr(pin, bytearray(frame(be.H_IN, be.R_IN, be.IN_IP, be.OUT_IP, sp, dp, "S", 1000, 0)), b"")
        fr(pout, bytearray(frame(be.H_OUT, be.R_OUT, be.OUT_IP, be.GLOBAL, dp, sp, "SA", 5000,
                                 1001)), b"")
        fr(pin, bytearray(frame(be.H_IN, be.R_IN, be.IN_IP, be.OUT_IP, sp, dp, "A", 1001, 5001)),
           b"")
    conn(n + 1)             # warm: imports, caches, the route and ARP entries
    base_s, base_t = len(app.sessions.sessions), len(app.nat.entries)

    def fill():
        for i in range(n):
            conn(i)
    grown = _grown(mode, fill)
    made_s = len(app.sessions.sessions) - base_s
    made_t = len(app.nat.entries) - base_t
    assert made_s == n and made_t == n, (made_s, made_t, n, dict(app.router.drops))
    return grown / n


def _child(what, n, mode):
    """Run one measurement in a fresh interpreter (so an earlier one's freed
    memory is not reused, and tracemalloc's records do not count in RSS)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c",
                        "import sys; from bench import bench_nat as b; "
                        "print(b.%s(%d, %r))" % (what, n, mode)],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError("%s(%d, %s) failed:\n%s" % (what, n, mode, r.stderr))
    return float(r.stdout.strip().splitlines()[-1])


def main(quick=False, n=None, out=sys.stdout):
    n = n or (20000 if quick else 100000)
    rate_n = min(n, 50000)       # distinct inside ports: one global port each
    runs = [nat_rate(rate_n) for _ in range(3)]
    rate, cpu = max(r[0] for r in runs), max(r[1] for r in runs)
    print("PAT translations created (Nat.outbound, TCP SYNs, best of 3): %.0f per second "
          "(%.2f us each, %d flows); %.0f per second of CPU time" % (rate, 1e6 / rate, rate_n, cpu),
          file=out)
    tm = _child("nat_memory", n, "tracemalloc")
    rss = _child("nat_memory", n, "rss")
    print("memory per PAT translation at %d translations: %.0f bytes (tracemalloc), "
          "%.0f bytes (RSS growth)" % (n, tm, rss), file=out)
    tm = _child("engine_memory", n, "tracemalloc")
    rss = _child("engine_memory", n, "rss")
    print("memory per session + PAT translation, %d TCP connections through the engine: "
          "%.0f bytes (tracemalloc), %.0f bytes (RSS growth)" % (n, tm, rss), file=out)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    main(quick="--quick" in sys.argv, n=int(args[0]) if args else None)
