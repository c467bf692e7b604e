"""IP options through the whole appliance (simulated Linux hosts on memory
ports): source-routed packets are never forwarded, ``ip options drop``
drops every packet with options, ``ip options ignore`` and the default
forward them unchanged, malformed options are always dropped; each drop is
counted in ``show interfaces``."""

from __future__ import annotations

import re

from scapy.all import ICMP, IP, TCP, UDP, IPOption_LSRR, IPOption_RR, IPOption_SSRR, raw
from twisted.trial import unittest

from cbac.packet.checksum import checksum

from tests.hosts import (CLIENT_IP, INSIDE, INSIDE_CLIENT_IP, OUTSIDE, SERVER_IP, Net,
                         Recorder)

LSRR = [IPOption_LSRR(routers=["172.22.1.99", "10.10.10.99"])]
SSRR = [IPOption_SSRR(routers=["172.22.1.99"])]
RR = [IPOption_RR(routers=["0.0.0.0", "0.0.0.0"])]
ROUTER_IN = "10.10.10.1"


def drops(net, ifname, reason):
    """A drop counter as ``show interfaces`` prints it (0 when absent)."""
    m = re.search(r"^ +%s +(\d+)$" % re.escape(reason), net.app.show_interfaces(ifname), re.M)
    return int(m.group(1)) if m else 0


class Base:
    extra = ""

    def setUp(self):
        self.net = Net(nat=False, extra=self.extra)
        self.addCleanup(self.net.stop)
        self.inside = self.net.host(INSIDE, INSIDE_CLIENT_IP, 2)
        self.outside = self.net.host(OUTSIDE, CLIENT_IP, 1)

    def udp_out(self, options, data=b"query"):
        """The inside host sends a UDP datagram with ``options`` out; the
        payloads the outside host got."""
        b = raw(IP(src=INSIDE_CLIENT_IP, dst=CLIENT_IP, id=self.inside.next_id(),
                   options=options) / UDP(sport=5353, dport=53) / data)
        self.inside.send_ip(b)
        self.net.pump()
        return [u[3] for u in self.outside.udp]

    def ping_router(self, options):
        b = raw(IP(src=INSIDE_CLIENT_IP, dst=ROUTER_IN, id=self.inside.next_id(),
                   options=options) / ICMP(type=8, id=7, seq=1) / b"ping")
        self.inside.send_ip(b)
        self.net.pump()
        return [p for p in self.inside.ip_packets if p[9] == 1 and p[(p[0] & 15) * 4] == 0]


class SourceRouteTests(Base, unittest.TestCase):
    """Default configuration (IOS default: ip source-route): cbac does not
    implement source routing, so a source-routed packet is dropped."""

    def test_lsrr_and_ssrr_dropped_and_counted(self):
        self.assertEqual(self.udp_out(LSRR), [])
        self.assertEqual(self.udp_out(SSRR), [])
        self.assertEqual(drops(self.net, INSIDE, "source-route"), 2)
        self.assertEqual(self.outside.csum_errors, 0)

    def test_other_options_forwarded_unchanged(self):
        self.assertEqual(self.udp_out(RR, b"rr"), [b"rr"])
        [p] = [p for p in self.outside.ip_packets if p[9] == 17]
        sent = raw(IP(options=RR))
        self.assertEqual(p[20:(p[0] & 15) * 4], sent[20:])      # the RR option went on unchanged
        self.assertEqual(drops(self.net, INSIDE, "source-route"), 0)

    def test_source_routed_syn_to_permitted_server_dropped(self):
        """The ACL permits smtp to the server: a SYN carrying a source route
        through it must still not reach it (the next source-routing hop
        would take it where the ACL never looked)."""
        srv = self.net.host(INSIDE, SERVER_IP, 25)
        srv.listen(25, lambda: Recorder())
        b = raw(IP(src=CLIENT_IP, dst=SERVER_IP, id=self.outside.next_id(), options=LSRR) /
                TCP(sport=40001, dport=25, flags="S", seq=1000))
        self.outside.send_ip(b)
        self.net.pump()
        self.assertEqual(srv.conns, {})
        self.assertFalse([p for p in srv.ip_packets])
        self.assertEqual(drops(self.net, OUTSIDE, "source-route"), 1)

    def test_source_route_on_established_session_dropped(self):
        """Packets of an established session take the slow path when they
        carry options: a source-routed segment is dropped there too."""
        srv = self.net.host(INSIDE, SERVER_IP, 25)
        srv.listen(25, lambda: Recorder())
        c = self.outside.connect(SERVER_IP, 25)
        self.net.pump()
        self.assertEqual(c.state, "ESTABLISHED")
        [sc] = srv.conns.values()
        before = len(sc.data)
        b = raw(IP(src=CLIENT_IP, dst=SERVER_IP, id=self.outside.next_id(), options=LSRR) /
                TCP(sport=c.lport, dport=25, flags="PA", seq=c.snd_nxt, ack=c.rcv_nxt) / b"DATA\r\n")
        self.outside.send_ip(b)
        self.net.pump()
        self.assertEqual(len(sc.data), before)
        self.assertEqual(drops(self.net, OUTSIDE, "source-route"), 1)
        c.send(b"NOOP\r\n")                             # the session itself goes on
        self.net.pump()
        self.assertIn(b"NOOP\r\n", bytes(sc.data))

    def test_source_routed_fragment_dropped(self):
        """LSRR is a copied option: every fragment carries it."""
        b = raw(IP(src=INSIDE_CLIENT_IP, dst=CLIENT_IP, id=self.inside.next_id(), flags=0,
                   options=LSRR) / UDP(sport=5353, dport=53) / (b"x" * 64))
        self.inside.send_ip(b, frags=[(0, 32), (32, 48)])
        self.net.pump()
        self.assertEqual(self.outside.udp, [])
        self.assertEqual(drops(self.net, INSIDE, "source-route"), 2)

    def test_malformed_options_dropped(self):
        for opts in (b"\x07\x00\x04\x00",            # RR with length 0
                     b"\x44\x28\x05\x00",            # TS running past the header
                     b"\x01\x01\x01\x83"):           # LSRR type without its length byte
            self.assertEqual(self._raw_opts(opts), [])
        self.assertEqual(drops(self.net, INSIDE, "malformed-bad-ip-option"), 3)

    def _raw_opts(self, opts):
        b = bytearray(raw(IP(src=INSIDE_CLIENT_IP, dst=CLIENT_IP, id=self.inside.next_id(),
                             options=[]) / UDP(sport=5353, dport=53) / b"bad"))
        # splice the options in by hand (scapy would fix their lengths)
        b = b[:20] + opts + b[20:]
        b[0] = 0x40 | ((20 + len(opts)) >> 2)
        b[2:4] = len(b).to_bytes(2, "big")
        b[10:12] = b"\0\0"
        b[10:12] = checksum(b[:20 + len(opts)]).to_bytes(2, "big")
        self.inside.send_ip(b)
        self.net.pump()
        return [u[3] for u in self.outside.udp]

    def test_ping_router_with_rr_answered(self):
        self.assertEqual(len(self.ping_router(RR)), 1)


class NoSourceRouteTests(SourceRouteTests):
    extra = "no ip source-route"


class OptionsIgnoreTests(SourceRouteTests):
    """``ip options ignore``: forwarded as if without options, but a source
    route is still never forwarded."""
    extra = "ip options ignore"


class OptionsDropTests(Base, unittest.TestCase):
    extra = "ip options drop"

    def test_every_options_packet_dropped(self):
        self.assertEqual(self.udp_out(RR), [])
        self.assertEqual(self.udp_out(LSRR), [])
        self.assertEqual(drops(self.net, INSIDE, "ip-options"), 1)
        self.assertEqual(drops(self.net, INSIDE, "source-route"), 1)
        self.assertEqual(self.udp_out([], b"plain"), [b"plain"])

    def test_options_packet_to_the_router_dropped(self):
        """IOS: drop mode drops every options packet it receives."""
        self.assertEqual(self.ping_router(RR), [])
        self.assertEqual(drops(self.net, INSIDE, "ip-options"), 1)
        self.assertEqual(len(self.ping_router([])), 1)

    def test_reload_without_it_forwards_again(self):
        from cbac.config.parser import parse_config
        from tests.hosts import PLAIN_CONFIG
        model, _ = parse_config(PLAIN_CONFIG.format(extra=""))
        self.net.router.apply_config(model)
        self.assertEqual(self.udp_out(RR, b"rr"), [b"rr"])


class TracerTests(Base, unittest.TestCase):
    """packet-tracer (cbac-replay --trace) says what the pipeline does with
    options, and the pipeline does it."""
    extra = "ip options drop"

    def frame(self, options):
        from scapy.all import Ether
        from tests.hosts import R_IN
        return bytearray(raw(Ether(src="02:00:00:00:00:02", dst=R_IN) /
                             IP(src=INSIDE_CLIENT_IP, dst=CLIENT_IP, options=options) /
                             UDP(sport=5353, dport=53) / b"q"))

    def test_trace_matches_the_pipeline(self):
        from cbac.dataplane.trace import trace_frame
        for options, reason, text in (
                (LSRR, "source-route", "Source-routed packet"),
                (RR, "ip-options", "Packet with IP options (ip options drop)")):
            t = trace_frame(self.net.router, INSIDE, self.frame(options))
            out = t.render(self.net.router)
            self.assertIn("Type: IP-OPTIONS", out)
            self.assertIn("Drop-reason: (%s) %s" % (reason, text), out)
            self.assertEqual(drops(self.net, INSIDE, reason), 0)      # the trace changed nothing
            self.assertEqual(self.udp_out(options), [])
            self.assertEqual(drops(self.net, INSIDE, reason), 1)
        t = trace_frame(self.net.router, INSIDE, self.frame([]))
        self.assertTrue(t.allowed)
