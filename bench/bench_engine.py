"""Engine only: the pipeline fed from memory, no I/O.

The appliance runs the shipped seed configuration (IN-OUT tcp/udp/icmp
inspection, PAT on Ethernet2/0, ACL 101) on memory ports that keep
nothing.  Figures, in packets per second and microseconds per packet:

* established TCP flows: data segments inside -> outside and ACKs back,
  through the fast path (one lookup, window check, PAT rewrite, route);
* established flows with 64 KB GSO super-frames (what bulk TCP looks
  like with PACKET_VNET_HDR): the per-frame cost spread over 64 KB;
* new flows: whole handshakes of distinct flows (ACL, routing, PAT
  allocation, session creation);
* short connections: the 10 frames of a ``wrk`` connection with
  ``Connection: close`` (the lab's connection-rate benchmark), no I/O;
* the slow path for comparison (the fast path switched off).

Run: ``python -m bench engine`` or ``python bench/bench_engine.py``.
"""

from __future__ import annotations

import sys
import time

from twisted.internet.task import Clock

from cbac.app import Appliance
from cbac.config.parser import parse_file
from cbac.dataplane.port import MemoryPort
from cbac.packet.build import tcp_frame
from cbac.packet.vnet import F_NEEDS_CSUM, GSO_TCPV4, build as vnet_build

SEED = __file__.rsplit("/bench/", 1)[0] + "/etc/router.conf"
R_IN, R_OUT = "02:00:0a:0a:0a:01", "02:00:ac:16:01:10"
H_IN, H_OUT = "02:00:0a:0a:0a:02", "02:00:ac:16:01:01"
IN_IP, OUT_IP, GLOBAL = "10.10.10.2", "172.22.1.1", "172.22.1.16"


def appliance(journal=False):
    """The seed appliance on memory ports; ``journal``: with the continuity
    journal (``--state-dir``) in a temporary directory."""
    model, _ = parse_file(SEED)
    # one benchmark host stands for many, one server for many: the per-host
    # and per-destination limits (4,096 sessions and translations, 8,192
    # sessions to one destination by default) are lifted
    model.session_limit_host = model.session_limit_dest = 10 ** 8
    model.nat.timeouts.max_entries_all_host = 10 ** 8
    clock = Clock()
    pin = MemoryPort("Ethernet2/1", R_IN, keep_sent=False)
    pout = MemoryPort("Ethernet2/0", R_OUT, keep_sent=False)
    app = Appliance(model, clock, {"Ethernet2/1": pin, "Ethernet2/0": pout})
    if journal:
        import atexit
        import shutil
        import tempfile
        d = tempfile.mkdtemp(prefix="cbac-bench-")
        atexit.register(shutil.rmtree, d, True)
        app.start_continuity(d)
    app.router.start()
    from cbac.packet.arp import build_request
    app.router.frameReceived(pin, build_request(H_IN, IN_IP, "10.10.10.1"), b"")
    app.router.frameReceived(pout, build_request(H_OUT, OUT_IP, GLOBAL), b"")
    return app, pin, pout


_FLAGS = {"S": 0x02, "SA": 0x12, "A": 0x10, "PA": 0x18, "FA": 0x11}


def frame(src_mac, dst_mac, src, dst, sport, dport, flags, seq, ack, payload=b""):
    return tcp_frame(src, dst, sport, dport, seq=seq, ack=ack, flags=_FLAGS[flags], payload=payload,
                     src_mac=src_mac, dst_mac=dst_mac, win=65535)


def establish(app, pin, pout, nflows, dport=8080):
    fr = app.router.frameReceived
    for i in range(nflows):
        sp = 20000 + i
        fr(pin, frame(H_IN, R_IN, IN_IP, OUT_IP, sp, dport, "S", 1000, 0), b"")
        fr(pout, frame(H_OUT, R_OUT, OUT_IP, GLOBAL, dport, sp, "SA", 5000, 1001), b"")
        fr(pin, frame(H_IN, R_IN, IN_IP, OUT_IP, sp, dport, "A", 1001, 5001), b"")


def timed(feed, frames, clock=None, every=300):
    """Seconds to feed ``frames``; with ``clock``, the clock moves on by the
    journal's batch delay every ``every`` frames (so the journal's batched
    writes and fsyncs happen inside the timed loop)."""
    if clock is None:
        t = time.perf_counter()
        for port, f, v in frames:
            feed(port, bytearray(f), v)
        return time.perf_counter() - t
    from cbac.continuity.restart import FLUSH_DELAY
    t = time.perf_counter()
    for i, (port, f, v) in enumerate(frames):
        feed(port, bytearray(f), v)
        if i % every == every - 1:
            clock.advance(FLUSH_DELAY)
    clock.advance(FLUSH_DELAY)
    return time.perf_counter() - t


def established(nflows=64, rounds=200, payload=b"x" * 18, gso=False, journal=False):
    app, pin, pout = appliance(journal)
    establish(app, pin, pout, nflows)
    frames = []
    seq = {i: 1001 for i in range(nflows)}
    v = b""
    if gso:
        payload = b"x" * 65000
        v = vnet_build(F_NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16)
    for r in range(rounds):
        for i in range(nflows):
            sp = 20000 + i
            frames.append((pin, frame(H_IN, R_IN, IN_IP, OUT_IP, sp, 8080, "A", seq[i], 5001, payload), v))
            seq[i] += len(payload)
            frames.append((pout, frame(H_OUT, R_OUT, OUT_IP, GLOBAL, 8080, sp, "A", 5001, seq[i]), b""))
    before = pout.counters.tx_packets + pin.counters.tx_packets
    dt = timed(app.router.frameReceived, frames, app.clock if journal else None)
    sent = pout.counters.tx_packets + pin.counters.tx_packets - before
    assert sent == len(frames), (sent, len(frames), dict(app.router.drops))
    return len(frames), dt, len(payload) * len(frames) // 2


def new_flows(n=20000, journal=False):
    """Whole TCP handshakes (SYN, SYN/ACK, ACK) of distinct flows: each
    creates a PAT translation and a session.  Returns (flows, seconds,
    sessions)."""
    app, pin, pout = appliance(journal)
    frames = []
    for i in range(n):
        sp, dp = 10000 + i % 50000, 8000 + i // 50000
        frames.append((pin, frame(H_IN, R_IN, IN_IP, OUT_IP, sp, dp, "S", 1000, 0), b""))
        frames.append((pout, frame(H_OUT, R_OUT, OUT_IP, GLOBAL, dp, sp, "SA", 5000, 1001), b""))
        frames.append((pin, frame(H_IN, R_IN, IN_IP, OUT_IP, sp, dp, "A", 1001, 5001), b""))
    dt = timed(app.router.frameReceived, frames, app.clock if journal else None)
    if journal:
        c = app.continuity
        print("journal: %d records written, %d bytes, %d fsyncs, %d compactions"
              % (c.journal.written, c.journal.bytes, c.journal.fsyncs, c.journal.compactions - 1),
              file=sys.stderr)
    return n, dt, len(app.sessions.sessions)


_REQUEST = b"GET / HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n"
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def short_connections(n=20000):
    """Whole short connections as ``wrk`` with ``Connection: close`` makes
    them in the lab: SYN, SYN/ACK, ACK, request, its ACK, response, the
    server's FIN, the client's ACK and FIN, the last ACK (10 frames, PAT,
    a session each).  Returns (connections, seconds)."""
    app, pin, pout = appliance()
    q, r = _REQUEST, _RESPONSE
    frames = []
    for i in range(n):
        sp, dp = 10000 + i % 50000, 8000 + i // 50000
        c, s = 1000, 5000
        for side, flags, seq, ack, payload in (
                (0, "S", c, 0, b""), (1, "SA", s, c + 1, b""), (0, "A", c + 1, s + 1, b""),
                (0, "PA", c + 1, s + 1, q), (1, "A", s + 1, c + 1 + len(q), b""),
                (1, "PA", s + 1, c + 1 + len(q), r), (1, "FA", s + 1 + len(r), c + 1 + len(q), b""),
                (0, "A", c + 1 + len(q), s + 2 + len(r), b""), (0, "FA", c + 1 + len(q), s + 2 + len(r), b""),
                (1, "A", s + 2 + len(r), c + 2 + len(q), b"")):
            if side == 0:
                f = frame(H_IN, R_IN, IN_IP, OUT_IP, sp, dp, flags, seq, ack, payload)
            else:
                f = frame(H_OUT, R_OUT, OUT_IP, GLOBAL, dp, sp, flags, seq, ack, payload)
            frames.append((pout if side else pin, f, b""))
    before = pout.counters.tx_packets + pin.counters.tx_packets
    dt = timed(app.router.frameReceived, frames)
    sent = pout.counters.tx_packets + pin.counters.tx_packets - before
    assert sent == len(frames), (sent, len(frames), dict(app.router.drops))
    return n, dt


def interpreter() -> str:
    """Which Python and Twisted ran the figures (they differ by 10-30 %
    between builds: the Debian package runs /usr/bin/python3)."""
    import platform
    import twisted
    return "%s %s (%s), Twisted %s" % (platform.python_implementation(), platform.python_version(),
                                       sys.executable, twisted.__version__)


def main(quick=False, out=sys.stdout):
    rounds = 50 if quick else 300
    print("interpreter: %s" % interpreter(), file=out)
    rows = []
    n, dt, _ = established(rounds=rounds)
    rows.append(("established TCP, 18-byte segments + ACKs", n, dt))
    n, dt, nbytes = established(rounds=max(5, rounds // 10), gso=True)
    rows.append(("established TCP, 64 KB GSO frames + ACKs", n, dt))
    gbps = nbytes * 8 / dt / 1e9
    n, dt, _ = established(rounds=rounds, journal=True)
    rows.append(("  the same with the --state-dir journal", n, dt))
    nflows, fdt, created = new_flows(5000 if quick else 20000)
    jflows, jdt, _ = new_flows(5000 if quick else 20000, journal=True)
    sconns, sdt = short_connections(5000 if quick else 20000)
    print("%-44s %10s %10s %9s" % ("engine only (no I/O)", "packets", "pps", "us/pkt"), file=out)
    for name, n, dt in rows:
        print("%-44s %10d %10.0f %9.2f" % (name, n, n / dt, dt / n * 1e6), file=out)
    print("GSO: %.1f Gbit/s of TCP payload through the engine (one core)" % gbps, file=out)
    print("new TCP connections (3-way handshake, PAT, session): %.0f per second "
          "(%d sessions created)" % (nflows / fdt, created), file=out)
    print("  the same with the --state-dir journal (continuity): %.0f per second "
          "(%.1f us more per connection)" % (jflows / jdt, (jdt / jflows - fdt / nflows) * 1e6),
          file=out)
    print("short connections as wrk makes them (handshake, request, response, FINs: 10 frames, "
          "PAT, session): %.0f per second (%.1f us per connection)" % (sconns / sdt, sdt / sconns * 1e6),
          file=out)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
