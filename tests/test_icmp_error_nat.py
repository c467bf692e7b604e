"""ICMP errors about translated flows are rewritten back exactly.

An inside host sends through PAT; the outside host answers with an ICMP
error quoting the datagram as it received it.  The inside host must get
its own datagram back in the quote, as it sent it: addresses, ports and
checksum.  One rewrite does this for NAT and for inspection
(:func:`cbac.packet.icmp.rewrite_error`); UDP checksum 0 is the edge
(RFC 768: 0 means "no checksum" and stays 0; a computed 0 is sent as
0xFFFF, so a checksum that comes out 0 after the update must be 0xFFFF).
"""

import struct

from scapy.all import ARP, ICMP, IP, UDP, Ether, raw
from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.app import Appliance
from cbac.config.parser import parse_file
from cbac.dataplane.port import MemoryPort
from cbac.packet.checksum import checksum
from cbac.packet.icmp import rewrite_error
from cbac.packet.view import ip_int, parse_frame
from tests.labrun import SEED_CONFIG

R_IN, R_OUT = "02:00:0a:0a:0a:01", "02:00:ac:16:01:10"
H_IN, H_OUT = "02:00:0a:0a:0a:02", "02:00:ac:16:01:01"
INSIDE, OUTSIDE, GLOBAL = "10.10.10.2", "172.22.1.1", "172.22.1.16"


def _ones(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def udp_summing_to_zero(sport, dport):
    """A UDP datagram whose computed checksum is 0 (sent as 0xFFFF): two
    payload bytes chosen so that the ones'-complement sum is 0xFFFF."""
    p = IP(src=INSIDE, dst=OUTSIDE) / UDP(sport=sport, dport=dport) / (b"abcd" + b"\0\0")
    b = bytearray(raw(p))
    b[26] = b[27] = 0
    pseudo = (ip_int(INSIDE).to_bytes(4, "big") + ip_int(OUTSIDE).to_bytes(4, "big")
              + bytes([0, 17]) + (len(b) - 20).to_bytes(2, "big"))
    x = 0xFFFF - _ones(pseudo + bytes(b[20:]))
    b[-2:] = x.to_bytes(2, "big")
    assert _ones(pseudo + bytes(b[20:])) == 0xFFFF
    b[26:28] = b"\xff\xff"
    return bytes(b)


class PatAppliance:
    """The seed appliance on memory ports, both hosts' MACs learnt."""

    def setUp(self):
        model, _ = parse_file(SEED_CONFIG)
        self.clock = Clock()
        self.pin = MemoryPort("Ethernet2/1", R_IN)
        self.pout = MemoryPort("Ethernet2/0", R_OUT)
        self.app = Appliance(model, self.clock, {"Ethernet2/1": self.pin, "Ethernet2/0": self.pout})
        self.r = self.app.router
        self.r.start()
        self.addCleanup(self.r.stop)
        self.inject(self.pin, Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") /
                    ARP(op=1, hwsrc=H_IN, psrc=INSIDE, pdst="10.10.10.1"))
        self.inject(self.pout, Ether(src=H_OUT, dst="ff:ff:ff:ff:ff:ff") /
                    ARP(op=1, hwsrc=H_OUT, psrc=OUTSIDE, pdst=GLOBAL))
        self.pin.sent.clear()
        self.pout.sent.clear()

    def inject(self, port, p):
        self.r.frameReceived(port, bytearray(raw(p)), b"")

    def sent(self, port):
        out = [bytes(f) for f, v in port.sent]
        port.sent.clear()
        return out

    def round_trip(self, ip_packet: bytes) -> bytes:
        """Send ip_packet from the inside host; the outside host answers
        port unreachable quoting what it received; return the quote the
        inside host gets."""
        self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(ip_packet))
        [out] = self.sent(self.pout)
        received = bytes(Ether(out)[IP])
        self.assertEqual(IP(received).src, GLOBAL)
        err = Ether(src=H_OUT, dst=R_OUT) / IP(src=OUTSIDE, dst=GLOBAL) / \
            ICMP(type=3, code=3) / received
        self.inject(self.pout, err)
        [back] = self.sent(self.pin)
        e = Ether(back)
        self.assertEqual((e[IP].src, e[IP].dst), (OUTSIDE, INSIDE))
        return bytes(e[ICMP].payload)


class IcmpErrorThroughPatTests(PatAppliance, unittest.TestCase):
    def test_quoted_udp_checksum_that_updates_to_zero_is_sent_as_ffff(self):
        sent = udp_summing_to_zero(40000, 5353)
        quote = self.round_trip(sent)
        self.assertEqual(quote[20:28], sent[20:28])          # ports, length, checksum 0xFFFF
        self.assertEqual(quote[12:20], sent[12:20])          # inside addresses
        self.assertEqual(checksum(quote, 0, 20), 0)          # (TTL as forwarded)

    def test_quoted_udp_checksum_zero_stays_zero(self):
        p = bytearray(raw(IP(src=INSIDE, dst=OUTSIDE) / UDP(sport=40001, dport=5353) / b"hello"))
        p[26] = p[27] = 0                                     # no checksum (RFC 768)
        quote = self.round_trip(bytes(p))
        self.assertEqual(quote[20:28], bytes(p[20:28]))
        self.assertEqual(quote[26:28], b"\0\0")


class RewriteErrorTests(unittest.TestCase):
    """The rewrite itself, on a crafted error (no NAT table)."""

    def error(self, udp_checksum: int):
        q = bytearray(raw(IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=1024, dport=53)
                          / b"abcdefgh"))
        q[26:28] = udp_checksum.to_bytes(2, "big")
        f = bytearray(raw(Ether() / IP(src="198.51.100.7", dst="192.0.2.1") /
                          ICMP(type=3, code=3) / bytes(q)))
        return parse_frame(f)

    def check(self, pkt):
        f = pkt.frame
        l3, l4 = pkt.l3, pkt.l4
        self.assertIn(checksum(f, l3, l3 + pkt.ihl), (0, 0xFFFF))
        self.assertEqual(checksum(f, l4, l3 + pkt.ip_len), 0)
        q = pkt.inner
        self.assertEqual(checksum(f, q.l3, q.l3 + q.ihl), 0)

    def test_zero_stays_zero(self):
        pkt = self.error(0)
        rewrite_error(pkt, ip_int("10.0.0.5"), ip_int("198.51.100.7"), 5000, 53,
                      ip_int("198.51.100.7"), ip_int("10.0.0.5"))
        q = pkt.inner
        self.assertEqual(bytes(pkt.frame[q.l4 + 6:q.l4 + 8]), b"\0\0")
        self.assertEqual((q.src, q.sport, pkt.dst), (ip_int("10.0.0.5"), 5000, ip_int("10.0.0.5")))
        self.check(pkt)

    def test_update_to_zero_becomes_ffff(self):
        # the one quoted checksum whose update comes out 0 (checked by brute force
        # against plain ones'-complement arithmetic, not cbac's helpers)
        new_src, new_sport = ip_int("10.0.0.5"), 5000
        old = (ip_int("192.0.2.1") >> 16, ip_int("192.0.2.1") & 0xFFFF, 1024)
        new = (new_src >> 16, new_src & 0xFFFF, new_sport)
        # new = ~(~v + sum(~old) + sum(new)) == 0  <=>  ~v + d == 0xFFFF (ones' complement)
        d = 0
        for o, n in zip(old, new):
            d += (~o & 0xFFFF) + n
        while d >> 16:
            d = (d & 0xFFFF) + (d >> 16)
        nv = (0xFFFF - d) % 0xFFFF            # ~v, non-zero unless d == 0xFFFF
        v = ~nv & 0xFFFF
        pkt = self.error(v)
        rewrite_error(pkt, new_src, ip_int("198.51.100.7"), new_sport, 53,
                      ip_int("198.51.100.7"), new_src)
        q = pkt.inner
        self.assertEqual(bytes(pkt.frame[q.l4 + 6:q.l4 + 8]), b"\xff\xff")
        self.check(pkt)


class IcmpErrorTtlTests(PatAppliance, unittest.TestCase):
    """An ICMP error about a session's datagram is forwarded like any
    packet: TTL - 1, and never with TTL 0 (RFC 1812 5.3.1).  Before, TTL 1
    went out as 0 and TTL 0 raised inside the router (a logged traceback
    and an ``internal-error`` drop for each such packet)."""

    def error_about_flow(self, sport, ttl):
        self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(src=INSIDE, dst=OUTSIDE) /
                    UDP(sport=sport, dport=53) / b"query")
        [out] = self.sent(self.pout)
        received = bytes(Ether(out)[IP])
        self.inject(self.pout, Ether(src=H_OUT, dst=R_OUT) / IP(src=OUTSIDE, dst=GLOBAL, ttl=ttl) /
                    ICMP(type=3, code=3) / received)
        return self.sent(self.pin), self.sent(self.pout)

    def test_forwarded_with_ttl_decremented(self):
        back, _ = self.error_about_flow(40010, 64)
        self.assertEqual([Ether(b)[IP].ttl for b in back], [63])

    def test_ttl_one_and_zero_are_dropped_and_counted(self):
        for i, ttl in enumerate((1, 0)):
            back, answers = self.error_about_flow(40020 + i, ttl)
            self.assertEqual((back, answers), ([], []))      # no time exceeded either
        self.assertEqual(self.r.drops["ttl-exceeded"], 2)
        self.assertNotIn("internal-error", self.r.drops)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_packet_tracer_shows_the_drop(self):
        """packet-tracer of such an error says it is dropped, as the router
        does, and forwarded with TTL 2."""
        from cbac.dataplane.trace import trace_frame
        self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(src=INSIDE, dst=OUTSIDE) /
                    UDP(sport=40030, dport=53) / b"query")
        [out] = self.sent(self.pout)
        received = bytes(Ether(out)[IP])
        for ttl, action in ((1, "drop"), (2, "allow")):
            err = Ether(src=H_OUT, dst=R_OUT) / IP(src=OUTSIDE, dst=GLOBAL, ttl=ttl) / \
                ICMP(type=3, code=3) / received
            t = trace_frame(self.r, "Ethernet2/0", bytearray(raw(err)))
            self.assertEqual(t.action, action, t.render(self.r))
        self.assertEqual(t.drop_reason, None)
        self.assertEqual(self.r.drops["ttl-exceeded"], 0)     # the trace changed nothing
