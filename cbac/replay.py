"""``cbac-replay``: run captured traffic through the engine offline.

Like tcpreplay, but through the firewall instead of onto a wire:

    cbac-replay -c etc/router.conf \\
        --in Ethernet2/1=inside.pcap --in Ethernet2/0=outside.pcap \\
        --out Ethernet2/1=inside-out.pcap --out Ethernet2/0=outside-out.pcap

Each ``--in IOSNAME=FILE`` is a capture of frames *arriving* on that
interface; each ``--out IOSNAME=FILE`` receives the frames cbac *sends*
out of it (Wireshark-readable pcap).

Timing:

* default (``--timing capture``): deterministic.  The frames of all input
  files are merged by timestamp and fed as fast as possible, with the
  engine's clock set to each frame's capture time, so timeouts, ARP ageing
  and thresholds behave as they did in the capture.  The same input always
  gives the same output.
* ``--realtime``: the frames are played on the real clock, paced like
  tcpreplay: ``--multiplier X``, ``--pps N``, ``--mbps N`` or
  ``--topspeed`` (each input file paced on its own).

``--trace`` prints packet-tracer's phases (:mod:`cbac.dataplane.trace`)
for every input frame, on the state just before it, then feeds it.

``--trust-checksums``: captures taken on the sending host with checksum
offload carry partial or zero TCP/UDP (and sometimes IP header) checksums,
which cbac drops as damaged (``bad-l4-checksum``,
``malformed-ip-checksum``).  With this option the checksums of the
*replayed* frames are taken as correct: before a frame is fed, its IP
header checksum and, for an unfragmented TCP, UDP or ICMP packet, its
transport checksum are recomputed (a UDP checksum of 0, "none", stays 0).
The summary says how many frames had theirs replaced.  Frames cbac itself
makes are never affected, and the default is to verify: use it only for a
capture taken on a sending host, where a wrong checksum means offload, not
damage on the wire.

At the end a summary (frames in and out per interface, drops by reason)
is printed; ``--show CMD`` (repeatable) prints ``show`` output too, e.g.
``--show "ip inspect sessions"``.
"""

from __future__ import annotations

import argparse
import heapq
import sys

from twisted.internet.task import Clock

from cbac.dataplane.pcap import PcapPort, PcapReader


def _pairs(values, what):
    out = {}
    for v in values or ():
        if "=" not in v:
            raise SystemExit("cbac-replay: %s wants IOSNAME=FILE, got %r" % (what, v))
        k, f = v.split("=", 1)
        out[k] = f
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="cbac-replay", description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", required=True, help="IOS configuration file")
    p.add_argument("--in", dest="inputs", action="append", metavar="IOSNAME=FILE",
                   help="pcap of frames arriving on an interface (repeatable)")
    p.add_argument("--out", dest="outputs", action="append", metavar="IOSNAME=FILE",
                   help="pcap to write the frames leaving an interface to (repeatable)")
    p.add_argument("--realtime", action="store_true", help="pace on the real clock")
    p.add_argument("--multiplier", type=float, help="with --realtime: speed factor")
    p.add_argument("--pps", type=float, help="with --realtime: frames per second")
    p.add_argument("--mbps", type=float, help="with --realtime: megabits per second")
    p.add_argument("--topspeed", action="store_true", help="with --realtime: as fast as possible")
    p.add_argument("--show", action="append", default=[], metavar="CMD",
                   help='print "show CMD" at the end, e.g. "ip inspect sessions"')
    p.add_argument("--mac", action="append", metavar="IOSNAME=MAC",
                   help="the MAC address of an interface (default 02:00:cb:ac:00:N, "
                        "N = position of the interface in the configuration, from 1)")
    p.add_argument("--no-engines", action="store_true",
                   help="routing only: no ACLs, NAT or inspection")
    p.add_argument("--trace", action="store_true",
                   help="print packet-tracer's phases for every input frame (on the state "
                        "before the frame), then feed it")
    p.add_argument("--detailed", action="store_true", help="with --trace: packet-tracer detailed")
    p.add_argument("--trust-checksums", action="store_true",
                   help="take the IP/TCP/UDP/ICMP checksums of the replayed frames as correct "
                        "(recomputed before each frame is fed): for captures taken with "
                        "checksum offload; default: verify, and drop frames with bad checksums")
    return p


def _load_config(path):
    from cbac.config.loader import load
    model, diags = load(path)          # as the daemon reads it (checks included)
    errors = [d for d in diags if d.severity == "error"]
    for d in errors:
        print(str(d), file=sys.stderr)
    if errors:
        raise SystemExit(1)
    return model


def run(argv=None, stdout=sys.stdout):
    args = build_parser().parse_args(argv)
    from cbac.app import Appliance
    model = _load_config(args.config)
    inputs = _pairs(args.inputs, "--in")
    outputs = _pairs(args.outputs, "--out")
    for name in list(inputs) + list(outputs):
        if name not in model.interfaces:
            raise SystemExit("cbac-replay: no interface %s in %s" % (name, args.config))
    if args.trace and args.realtime:
        raise SystemExit("cbac-replay: --trace works with the default --timing capture only")
    if args.realtime:
        from twisted.internet import reactor
        clock = reactor
    else:
        clock = Clock()
        clock.advance(_first_timestamp(inputs.values()))
    macs = _pairs(args.mac, "--mac")
    ports = {}
    for i, name in enumerate(model.interfaces):
        if name not in inputs and name not in outputs:
            continue
        mac = macs.get(name) or bytes([2, 0, 0xCB, 0xAC, 0, i + 1])
        kw = {}
        if args.realtime:
            kw = dict(multiplier=args.multiplier, pps=args.pps, mbps=args.mbps,
                      topspeed=args.topspeed)
            kw = {k: v for k, v in kw.items() if v}
        ports[name] = PcapPort(name, mac, infile=inputs.get(name) if args.realtime else None,
                               outfile=outputs.get(name), reactor=clock, **kw)
    app = Appliance(model, clock, ports, config_path=args.config, engines=not args.no_engines)
    app.router.start()
    trusted = None
    if args.trust_checksums:
        trusted = [0]
        for name, port in ports.items():
            if name in inputs and args.realtime:
                port.attach(_trusting(port.receiver, trusted))
    if args.realtime:
        from twisted.internet import defer
        dl = [p.done for n, p in ports.items() if n in inputs]
        d = defer.DeferredList(dl)
        d.addBoth(lambda _: reactor.stop())
        reactor.run()
    else:
        _replay_merged(app, ports, inputs, clock,
                       trace=(stdout, args.detailed) if args.trace else None,
                       trusted=trusted)
    app.router.stop()
    if trusted is not None:
        print("--trust-checksums: %d frame(s) had their checksums replaced" % trusted[0],
              file=stdout)
    _summary(app, ports, inputs, args.show, stdout)
    return 0


def trust_checksums(frame) -> bool:
    """Recompute the IPv4 header checksum and, for an unfragmented TCP,
    UDP or ICMP packet, the transport checksum of ``frame`` in place (a
    UDP checksum of 0 stays 0).  True when a checksum changed.  Frames
    that do not parse as IPv4 are left alone (the router judges them)."""
    from cbac.packet.checksum import checksum
    from cbac.packet.errors import MalformedPacket
    from cbac.packet.ipv4 import set_ip_checksum
    from cbac.packet.tcp import set_tcp_checksum
    from cbac.packet.udp import set_udp_checksum
    from cbac.packet.view import parse_frame
    try:
        pkt = parse_frame(frame)
    except MalformedPacket:
        return False
    l3, l4 = pkt.l3, pkt.l4
    before = bytes(frame[l3:l3 + pkt.ip_len])
    set_ip_checksum(frame, l3)
    if not (pkt.frag or pkt.mf):
        end = l3 + pkt.ip_len
        if pkt.proto == 6:
            set_tcp_checksum(frame, l3, l4, end)
        elif pkt.proto == 17 and (frame[l4 + 6] or frame[l4 + 7]):
            set_udp_checksum(frame, l3, l4, end)
        elif pkt.proto == 1 and end - l4 >= 4:
            frame[l4 + 2] = frame[l4 + 3] = 0
            c = checksum(frame, l4, end)
            frame[l4 + 2] = c >> 8
            frame[l4 + 3] = c & 0xFF
    return bytes(frame[l3:l3 + pkt.ip_len]) != before


def _trusting(receiver, trusted):
    """A port receiver that trusts the checksums of each frame first."""
    def received(port, frame, vnet=b""):
        if trust_checksums(frame):
            trusted[0] += 1
        return receiver(port, frame, vnet)
    return received


def _first_timestamp(paths) -> float:
    first = None
    for path in paths:
        for ts_ns, _frame, _len in PcapReader(path):
            t = ts_ns / 1e9
            first = t if first is None or t < first else first
            break
    return first or 0.0


def _replay_merged(app, ports, inputs, clock, trace=None, trusted=None):
    """Feed all input frames in timestamp order on a virtual clock.
    ``trace``: (stream, detailed): print packet-tracer's view of each frame
    first (cbac.dataplane.trace; it changes nothing).  ``trusted``: a
    one-element counter list: --trust-checksums (each frame's checksums
    are recomputed before it is traced and fed)."""
    readers = []
    for name, path in inputs.items():
        readers.append((name, iter(PcapReader(path))))
    heap = []
    for idx, (name, it) in enumerate(readers):
        for ts_ns, frame, _len in it:
            heap.append((ts_ns / 1e9, idx, len(heap), name, frame))
    heapq.heapify(heap)
    n = 0
    while heap:
        ts, _, _, name, frame = heapq.heappop(heap)
        delta = ts - clock.seconds()
        if delta > 0:
            clock.advance(delta)
        n += 1
        frame = bytearray(frame)
        if trusted is not None and trust_checksums(frame):
            trusted[0] += 1
        if trace is not None:
            from cbac.dataplane.trace import trace_frame
            out, detailed = trace
            t = trace_frame(app.router, name, frame, detailed=detailed)
            print("Frame %d (%s, %.6f, %d bytes)" % (n, name, ts, len(frame)), file=out)
            print(t.render(app.router), file=out)
            print("", file=out)
        port = ports[name]
        port.counters.rx_packets += 1
        port.counters.rx_bytes += len(frame)
        app.router.frameReceived(port, frame, b"")
    clock.advance(0)


def _summary(app, ports, inputs, shows, out):
    for name, port in ports.items():
        c = port.counters
        print("%-14s in %6d frames  out %6d frames" % (name, c.rx_packets, c.tx_packets), file=out)
    drops = app.router.drops
    if drops:
        print("drops: " + ", ".join("%s %d" % (k, drops[k]) for k in sorted(drops)), file=out)
    for cmd in shows:
        print("", file=out)
        print(_show(app, cmd), file=out)


def _show(app, cmd: str) -> str:
    words = cmd.split()
    if words[:2] == ["ip", "inspect"]:
        what = " ".join(words[2:]) or "all"
        return app.show_ip_inspect(what)
    table = {
        "access-lists": app.show_access_lists,
        "ip access-lists": app.show_access_lists,
        "ip nat translations": app.show_ip_nat_translations,
        "ip nat statistics": app.show_ip_nat_statistics,
        "interfaces": app.show_interfaces,
        "ip route": app.show_ip_route,
        "arp": app.show_arp,
    }
    fn = table.get(" ".join(words))
    return fn() if fn else "% Unknown show command: " + cmd


def main():
    sys.exit(run())


if __name__ == "__main__":
    main()
