"""Access lists: matching, counters, show output, %SEC logging."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from cbac.acl import AclSet
from cbac.acl.entry import Ace, naive_first_match
from cbac.config.model import AccessList, AclEntry, AddrMatch, PortMatch, RouterConfig
from cbac.config.parser import parse
from cbac.packet.view import ip_int, parse_frame

MAC_IN = "00:11:22:33:44:55"


def frame(l3):
    return parse_frame(bytearray(bytes(Ether(src=MAC_IN, dst="02:00:00:00:00:01") / l3)))


def tcp(src, dst, sport, dport, flags="S", **ip):
    return frame(IP(src=src, dst=dst, **ip) / TCP(sport=sport, dport=dport, flags=flags))


def udp(src, dst, sport, dport):
    return frame(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport))


def icmp(src, dst, type=8, code=0):
    return frame(IP(src=src, dst=dst) / ICMP(type=type, code=code))


CONFIG = """\
access-list 1 permit 10.10.10.0 0.0.0.255
access-list 1 deny 10.20.0.1 log
access-list 1 permit any
access-list 101 permit tcp any host 172.22.1.16 eq smtp
access-list 101 permit tcp any host 172.22.1.16 eq www 443
access-list 101 permit tcp any any established
access-list 101 permit icmp any any echo-reply
access-list 101 permit icmp any any unreachable
access-list 101 deny   tcp any any range 6000 6063 log
access-list 101 permit udp any eq domain any gt 1023
access-list 101 permit udp any any lt 20
access-list 101 permit tcp 10.0.0.1 0.255.0.255 any neq telnet
access-list 101 deny   icmp any any log
access-list 101 deny   47 any any log
access-list 101 deny   ip any any log-input
ip access-list extended FRAG
 deny   tcp any host 10.9.9.9 eq telnet
 permit tcp any host 10.9.9.9 eq www
 deny   ip any host 10.8.8.8 fragments
 permit ip any host 10.8.8.8
ip access-list standard EMPTY
"""


class Events:
    def __init__(self, case):
        self.msgs = []
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event):
        if event.get("ios_facility") == "SEC":
            self.msgs.append(event["ios_message"])


class AclTestCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.router = parse(CONFIG)
        self.acls = AclSet(self.router, self.clock)
        self.addCleanup(self.acls.stop)
        self.events = Events(self)

    def test_missing_and_empty_lists_are_none(self):
        self.assertIsNone(self.acls.get("999"))
        self.assertIsNone(self.acls.get(None))
        self.assertIsNone(self.acls.get("EMPTY"))
        self.assertIsNotNone(self.acls.get("101"))

    def test_standard_list(self):
        a = self.acls.get("1")
        self.assertTrue(a.check(tcp("10.10.10.7", "1.1.1.1", 1, 2)))
        self.assertFalse(a.check(tcp("10.20.0.1", "1.1.1.1", 1, 2)))
        self.assertTrue(a.check(udp("192.0.2.1", "1.1.1.1", 1, 2)))
        self.assertEqual(self.acls.show("1"),
                         "Standard IP access list 1\n"
                         "    10 permit 10.10.10.0, wildcard bits 0.0.0.255 (1 match)\n"
                         "    20 deny   10.20.0.1 log (1 match)\n"
                         "    30 permit any (1 match)\n")
        self.assertEqual(self.events.msgs,
                         ["%SEC-6-IPACCESSLOGS: list 1 denied 10.20.0.1 1 packet"])

    def test_standard_list_repeated_and_many_sources(self):
        """A standard list remembers its answer per source address: the
        same answers and hits however often a source comes back,
        for fragments and every protocol, and past the remembered limit."""
        a = self.acls.get("1")
        self.patch(type(a), "SOURCE_CACHE", 8)
        srcs = ["10.10.10.%d" % i for i in range(1, 13)] + ["10.20.0.1", "192.0.2.%d" % 9]
        for _round in range(3):
            for src in srcs:
                want = src != "10.20.0.1"
                self.assertIs(a.check(tcp(src, "1.1.1.1", 1, 2)), want)
                self.assertIs(a.check(icmp(src, "1.1.1.1")), want)
                self.assertIs(a.check(tcp(src, "1.1.1.1", 1, 2, frag=100)), want)
                self.assertIs(a.check_fields(0, ip_int(src)), want)
        self.assertLessEqual(len(a.by_source), 8)
        self.assertEqual([x.hits for x in a.aces], [3 * 4 * 12, 3 * 4, 3 * 4])
        self.assertIsNone(self.acls.get("101").by_source)     # extended: no such shortcut

    def test_extended_matching(self):
        a = self.acls.get("101")
        S = "172.22.1.16"
        self.assertTrue(a.check(tcp("1.2.3.4", S, 1234, 25)))
        self.assertTrue(a.check(tcp("1.2.3.4", S, 1234, 443)))
        self.assertTrue(a.check(tcp("1.2.3.4", S, 1234, 80)))
        self.assertFalse(a.check(tcp("1.2.3.4", S, 1234, 81)))          # implicit-ish: deny ip log-input
        self.assertTrue(a.check(tcp("1.2.3.4", "5.5.5.5", 80, 1234, flags="A")))   # established
        self.assertTrue(a.check(tcp("1.2.3.4", "5.5.5.5", 80, 1234, flags="R")))
        self.assertFalse(a.check(tcp("1.2.3.4", "5.5.5.5", 80, 6001, flags="S")))  # range deny
        self.assertTrue(a.check(udp("8.8.8.8", "10.1.1.1", 53, 1024)))
        self.assertFalse(a.check(udp("8.8.8.8", "10.1.1.1", 53, 1023)))
        self.assertTrue(a.check(udp("8.8.8.8", "10.1.1.1", 999, 19)))
        # non-contiguous wildcard 10.x.0.x, neq telnet
        self.assertTrue(a.check(tcp("10.77.0.200", "9.9.9.9", 5, 22)))
        self.assertFalse(a.check(tcp("10.77.0.200", "9.9.9.9", 5, 23)))
        self.assertFalse(a.check(tcp("10.77.1.200", "9.9.9.9", 5, 22)))
        self.assertTrue(a.check(icmp("9.9.9.9", "10.1.1.1", 0, 0)))
        self.assertTrue(a.check(icmp("9.9.9.9", "10.1.1.1", 3, 3)))
        self.assertFalse(a.check(icmp("9.9.9.9", "10.1.1.1", 8, 0)))
        self.assertFalse(a.check(frame(IP(src="9.9.9.9", dst="10.1.1.1", proto=47) / (b"x" * 8))))
        self.assertEqual(a.hits(10), 1)
        self.assertEqual(a.hits(20), 2)
        self.assertEqual(a.hits(120), 4)
        self.assertEqual(a.hits(110), 1)

    def test_show_extended_names_and_counters(self):
        a = self.acls.get("101")
        for _ in range(3):
            a.check(tcp("1.2.3.4", "172.22.1.16", 1234, 25))
        out = self.acls.show("101")
        self.assertEqual(out.splitlines()[:4], [
            "Extended IP access list 101",
            "    10 permit tcp any host 172.22.1.16 eq smtp (3 matches)",
            "    20 permit tcp any host 172.22.1.16 eq www 443",
            "    30 permit tcp any any established",
        ])
        self.assertIn("    40 permit icmp any any echo-reply\n", out)
        self.assertIn("    50 permit icmp any any unreachable\n", out)
        self.assertIn("    60 deny tcp any any range 6000 6063 log\n", out)
        self.assertIn("    70 permit udp any eq domain any gt 1023\n", out)
        self.assertIn("    90 permit tcp 10.0.0.0 0.255.0.255 any neq telnet\n", out)
        self.assertIn("    110 deny gre any any log\n", out)
        self.assertIn("    120 deny ip any any log-input\n", out)
        # all lists: numbered first, in numeric order, then named
        full = self.acls.show()
        self.assertLess(full.index("Standard IP access list 1\n"),
                        full.index("Extended IP access list 101\n"))
        self.assertLess(full.index("Extended IP access list 101\n"),
                        full.index("Standard IP access list EMPTY\n"))
        self.assertEqual(self.acls.show("nosuch"), "")

    def test_clear_counters(self):
        a = self.acls.get("101")
        a.check(tcp("1.2.3.4", "172.22.1.16", 1234, 25))
        self.acls.get("1").check(tcp("10.10.10.1", "1.1.1.1", 1, 2))
        self.acls.clear_counters("101")
        self.assertNotIn("match", self.acls.show("101"))
        self.assertIn("(1 match)", self.acls.show("1"))
        self.acls.clear_counters()
        self.assertNotIn("match", self.acls.show())

    def test_update_keeps_unchanged_counters(self):
        self.acls.get("101").check(tcp("1.2.3.4", "172.22.1.16", 1234, 25))
        r2 = parse(CONFIG + "access-list 101 permit ip any any\n")
        self.acls.update(r2)
        self.assertIn("    10 permit tcp any host 172.22.1.16 eq smtp (1 match)",
                      self.acls.show("101"))

    def test_fragments(self):
        a = self.acls.get("FRAG")
        # non-initial fragment of a telnet packet: the deny with L4 info is
        # skipped, the permit with L4 info permits it (L3 matches)
        nf = frame(IP(src="1.1.1.1", dst="10.9.9.9", proto=6, frag=100) / (b"x" * 16))
        self.assertTrue(nf.is_noninitial_fragment)
        self.assertTrue(a.check(nf))
        self.assertEqual(a.hits(10), 0)
        self.assertEqual(a.hits(20), 1)
        # initial fragment: full matching (telnet denied)
        first = frame(IP(src="1.1.1.1", dst="10.9.9.9", flags="MF") / TCP(dport=23))
        self.assertFalse(a.check(first))
        # fragments keyword: non-initial fragments to 10.8.8.8 denied,
        # unfragmented and initial fragments skip that entry
        self.assertFalse(a.check(frame(IP(src="1.1.1.1", dst="10.8.8.8", proto=17, frag=10)
                                       / (b"y" * 8))))
        self.assertTrue(a.check(udp("1.1.1.1", "10.8.8.8", 1, 2)))
        self.assertTrue(a.check(frame(IP(src="1.1.1.1", dst="10.8.8.8", flags="MF")
                                      / UDP(dport=9) / (b"z" * 32))))
        self.assertEqual(self.acls.show("FRAG").splitlines()[3],
                         "    30 deny ip any host 10.8.8.8 fragments (1 match)")

    def test_log_first_packet_then_5_minute_summary(self):
        a = self.acls.get("101")
        p = lambda: tcp("172.22.1.1", "172.22.1.16", 1234, 6010)  # noqa: E731
        a.check(p())
        self.assertEqual(self.events.msgs, [
            "%SEC-6-IPACCESSLOGP: list 101 denied tcp 172.22.1.1(1234) -> 172.22.1.16(6010), 1 packet"])
        for _ in range(4):
            a.check(p())
        self.clock.advance(299)
        self.assertEqual(len(self.events.msgs), 1)
        self.clock.advance(1)
        self.assertEqual(self.events.msgs[1],
                         "%SEC-6-IPACCESSLOGP: list 101 denied tcp 172.22.1.1(1234) -> 172.22.1.16(6010), 4 packets")
        # a quiet interval: nothing logged, the flow is forgotten
        self.clock.advance(300)
        self.assertEqual(len(self.events.msgs), 2)
        a.check(p())
        self.assertEqual(self.events.msgs[2].split(", ")[-1], "1 packet")
        self.clock.advance(600)
        self.assertEqual(len(self.events.msgs), 3)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_log_formats(self):
        a = self.acls.get("101")
        a.check(icmp("9.9.9.9", "10.1.1.1", 8, 0))
        a.check(frame(IP(src="9.9.9.9", dst="10.1.1.1", proto=47) / (b"x" * 8)))
        pkt = udp("9.9.9.9", "10.1.1.1", 5000, 6000)
        pkt.in_port = type("P", (), {"name": "Ethernet0/0"})()
        a.check(pkt)
        self.assertEqual(self.events.msgs, [
            "%SEC-6-IPACCESSLOGDP: list 101 denied icmp 9.9.9.9 -> 10.1.1.1 (8/0), 1 packet",
            "%SEC-6-IPACCESSLOGNP: list 101 denied 47 9.9.9.9 -> 10.1.1.1, 1 packet",
            "%SEC-6-IPACCESSLOGP: list 101 denied udp 9.9.9.9(5000) (Ethernet0/0 0011.2233.4455)"
            " -> 10.1.1.1(6000), 1 packet",
        ])

    def test_log_table_bounded(self):
        acls = AclSet(self.router, self.clock)
        acls.logger.max_flows = 2
        a = acls.get("101")
        for port in range(7000, 7010):
            a.check(tcp("1.1.1.1", "2.2.2.2", port, 6000))
        self.assertEqual(len(self.events.msgs), 2)
        self.clock.advance(300)
        self.assertIn("%SEC-6-IPACCESSLOGRL: access-list logging rate-limited or missed 8 packets",
                      self.events.msgs)
        self.clock.advance(600)
        acls.stop()

    def test_field_variant_and_lookup(self):
        a = self.acls.get("101")
        self.assertTrue(a.check_fields(6, ip_int("1.1.1.1"), ip_int("172.22.1.16"), 1, 25))
        self.assertEqual(a.hits(10), 1)
        e = a.lookup_fields(6, ip_int("1.1.1.1"), ip_int("172.22.1.16"), 1, 80)
        self.assertEqual(e.seq, 20)
        self.assertEqual(a.hits(20), 0)


# --------------------------------------------------------------------------
# compiled index == naive reference evaluator

_addrs = st.sampled_from([ip_int(x) for x in (
    "10.0.0.1", "10.0.0.2", "10.0.1.1", "10.1.0.1", "192.168.1.1", "192.168.1.200",
    "172.16.5.5", "0.0.0.0", "255.255.255.255")])
_wild = st.sampled_from([0, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x00FF00FF, 0x0F, 0xFF00, 0x7FFFFFFF])
_port = st.sampled_from([0, 1, 20, 21, 22, 23, 25, 53, 80, 443, 511, 512, 1023, 1024, 6000,
                         65534, 65535])


@st.composite
def _portmatch(draw):
    op = draw(st.sampled_from(["eq", "neq", "lt", "gt", "range", None]))
    if op is None:
        return None
    if op in ("eq", "neq"):
        return PortMatch(op, tuple(draw(st.lists(_port, min_size=1, max_size=3))))
    if op == "range":
        a, b = sorted((draw(_port), draw(_port)))
        return PortMatch(op, (a, b))
    return PortMatch(op, (draw(_port),))


@st.composite
def _entry(draw, seq):
    proto = draw(st.sampled_from(["ip", "tcp", "udp", "icmp", 47]))
    e = AclEntry(seq=seq, action=draw(st.sampled_from(["permit", "deny"])), protocol=proto,
                 source=AddrMatch(IPv4Address(draw(_addrs)), IPv4Address(draw(_wild))),
                 destination=AddrMatch(IPv4Address(draw(_addrs)), IPv4Address(draw(_wild))))
    if proto in ("tcp", "udp"):
        e.source_port = draw(_portmatch())
        e.destination_port = draw(_portmatch())
    if proto == "tcp":
        e.established = draw(st.booleans())
    if proto == "icmp" and draw(st.booleans()):
        e.icmp_type = draw(st.sampled_from([0, 3, 8, 11]))
        e.icmp_code = draw(st.sampled_from([None, 0, 1, 3]))
    if not (e.source_port or e.destination_port or e.established or e.icmp_type is not None):
        e.fragments = draw(st.booleans())
    return e


@st.composite
def _acl(draw):
    n = draw(st.integers(0, 25))
    seqs = draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n, unique=True))
    return [draw(_entry(s)) for s in seqs]


_pkt = st.tuples(st.sampled_from([1, 6, 17, 47]), _addrs, _addrs, _port, _port,
                 st.sampled_from([-1, 0, 3, 8, 11]), st.sampled_from([-1, 0, 1, 3]),
                 st.sampled_from([0, 2, 0x10, 0x12, 4, 1]), st.booleans())


class CompiledVersusNaive(unittest.TestCase):
    @settings(max_examples=150, deadline=None)
    @given(_acl(), st.lists(_pkt, min_size=1, max_size=25),
           st.sampled_from(["standard", "extended"]))
    def test_same_first_match(self, entries, pkts, kind):
        r = RouterConfig()
        if kind == "standard":
            for e in entries:
                e.protocol, e.destination, e.source_port, e.destination_port = "ip", None, None, None
                e.icmp_type = e.icmp_code = None
                e.established = e.fragments = False
        r.acls["X"] = AccessList("X", kind, entries=entries)
        acls = AclSet(r, Clock())
        c = acls.get("X")
        ref = [Ace(i, e, kind == "standard") for i, e in
               enumerate(sorted(entries, key=lambda e: e.seq))]
        for proto, src, dst, sp, dpt, it, ic, fl, nf in pkts:
            if proto != 1:
                it = ic = -1
            want = naive_first_match(ref, proto, src, dst, sp, dpt, it, ic, fl, nf)
            if c is None:
                self.assertEqual(ref, [])
                continue
            got = c.lookup_fields(proto, src, dst, sp, dpt, it, ic, fl, nf)
            self.assertIs(got, want.model if want is not None else None)
            # check_fields (a standard list answers from its per-source
            # memory once it has seen a source)
            for _ in range(2):
                self.assertEqual(c.check_fields(proto, src, dst, sp, dpt, it, ic, fl, nf),
                                 want is not None and want.permit)
