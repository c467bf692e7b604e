"""NAT: static, PAT, pools, outside static, timeouts, ICMP, show/clear."""

from __future__ import annotations

import struct

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import checksum as sc_checksum
from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.config.parser import parse
from cbac.nat import DROP, INBOUND, OUTBOUND, Nat
from cbac.packet.view import ip_int, parse_frame

CONFIG = """\
interface Ethernet0/0
 ip address 203.0.113.1 255.255.255.0
 ip nat outside
interface Ethernet0/1
 ip address 10.0.0.1 255.255.0.0
 ip nat inside
access-list 1 permit 10.0.0.0 0.0.0.255
access-list 2 permit 10.0.1.0 0.0.0.255
ip nat pool P 203.0.113.10 203.0.113.11 netmask 255.255.255.0
ip nat inside source list 1 interface Ethernet0/0 overload
ip nat inside source list 2 pool P
ip nat inside source static 10.0.0.5 203.0.113.5
ip nat inside source static tcp 10.0.0.6 25 interface Ethernet0/0 25
ip nat outside source static 198.51.100.8 10.99.0.8
"""

OUT_IF, IN_IF = "Ethernet0/0", "Ethernet0/1"
G = "203.0.113.1"


def frame(l3):
    return parse_frame(bytearray(bytes(Ether(src="00:11:22:33:44:55", dst="02:00:00:00:00:01")
                                       / l3)))


def tcp(src, dst, sport, dport, flags="S", payload=b""):
    return frame(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload)


def udp(src, dst, sport, dport, payload=b"hello"):
    return frame(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def ping(src, dst, ident, type=8, seq=1):
    return frame(IP(src=src, dst=dst) / ICMP(type=type, id=ident, seq=seq) / b"abcdefgh")


def _pseudo(src, dst, proto, length):
    return src + dst + struct.pack("!BBH", 0, proto, length)


def assert_checksums(case, pkt):
    """Check every checksum of the frame independently of cbac (scapy's
    Internet checksum over the raw bytes)."""
    b = bytes(pkt.frame)[pkt.l3:pkt.l3 + pkt.ip_len]
    ihl = (b[0] & 15) * 4
    case.assertEqual(sc_checksum(b[:ihl]), 0, "outer IP checksum")
    proto, l4 = b[9], b[ihl:]
    if proto in (6, 17) and not (struct.unpack("!H", b[6:8])[0] & 0x1FFF):
        if not (proto == 17 and l4[6:8] == b"\0\0"):
            case.assertEqual(sc_checksum(_pseudo(b[12:16], b[16:20], proto, len(l4)) + l4), 0,
                             "L4 checksum")
    if proto == 1:
        case.assertEqual(sc_checksum(l4), 0, "ICMP checksum")
        if l4[0] in (3, 4, 5, 11, 12):
            q = l4[8:]
            qihl = (q[0] & 15) * 4
            case.assertEqual(sc_checksum(q[:qihl]), 0, "quoted IP checksum")
            qlen = struct.unpack("!H", q[2:4])[0]
            ql4 = q[qihl:qlen]
            if len(q) >= qlen and q[9] in (6, 17):      # the whole datagram is quoted
                case.assertEqual(sc_checksum(_pseudo(q[12:16], q[16:20], q[9], len(ql4)) + ql4),
                                 0, "quoted L4 checksum")
            if len(q) >= qlen and q[9] == 1:
                case.assertEqual(sc_checksum(ql4), 0, "quoted ICMP checksum")


def sc(pkt):
    """The frame as scapy sees it."""
    return Ether(bytes(pkt.frame))


class NatTestCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.router = parse(CONFIG)
        self.nat = Nat(self.router, self.clock)
        self.addCleanup(self.nat.stop)
        self.addCleanup(self.nat.acls.stop)

    def out(self, pkt):
        return self.nat.outbound(pkt, IN_IF, OUT_IF)

    def inb(self, pkt):
        return self.nat.inbound(pkt, OUT_IF)

    # -- PAT -----------------------------------------------------------------

    def test_pat_both_directions_one_translation(self):
        p = tcp("10.0.0.2", "192.0.2.9", 40000, 80, payload=b"GET /")
        t = self.out(p)
        s = sc(p)
        self.assertEqual((s[IP].src, s[TCP].sport, s[IP].dst, s[TCP].dport),
                         (G, 40000, "192.0.2.9", 80))          # original port kept
        assert_checksums(self, p)
        self.assertEqual((p.src, p.sport), (ip_int(G), 40000))
        r = tcp("192.0.2.9", G, 80, 40000, flags="SA")
        self.assertIs(self.inb(r), t)
        s = sc(r)
        self.assertEqual((s[IP].dst, s[TCP].dport), ("10.0.0.2", 40000))
        assert_checksums(self, r)
        self.assertEqual(t.inside_local, (ip_int("10.0.0.2"), 40000))
        self.assertEqual(t.inside_global, (ip_int(G), 40000))
        self.assertEqual(t.outside_local, t.outside_global)
        # the NAT ACL counted the inside-local packet (once: the flow exists now)
        self.out(tcp("10.0.0.2", "192.0.2.9", 40000, 80, flags="A"))
        self.assertIn("10 permit 10.0.0.0, wildcard bits 0.0.0.255 (1 match)",
                      self.nat.acls.show("1"))

    def test_pat_entry_made_by_any_segment_takes_its_state_at_once(self):
        """The packet that makes a PAT entry moves its TCP state as a later
        packet would: a SYN leaves it in syn-timeout, an ACK makes it
        established (tcp-timeout), a FIN or RST timing out (finrst)."""
        made = {f: self.out(tcp("10.0.0.2", "192.0.2.9", 41000 + i, 80, flags=f))
                for i, f in enumerate(("S", "A", "FA", "R"))}
        v = self.nat.show_translations(verbose=True).splitlines()

        def line(t):
            return v[v.index(next(x for x in v if ":%d " % t.igp in x)) + 1]
        self.assertIn("timeout:60, left 00:01:00, flags: extended, use_count: 0",
                      line(made["S"]))
        self.assertIn("timeout:86400, left 1d00h, flags: extended, use_count: 0",
                      line(made["A"]))
        for f in ("FA", "R"):
            self.assertIn("timeout:60, left 00:01:00, flags: extended, timing out",
                          line(made[f]))
        self.clock.advance(61)
        self.assertEqual([made[f].dead for f in ("S", "A", "FA", "R")],
                         [True, False, True, True])

    def test_pat_port_in_use_gets_another_port_of_same_range(self):
        a = self.out(tcp("10.0.0.2", "192.0.2.9", 40000, 80))
        b = self.out(tcp("10.0.0.3", "192.0.2.9", 40000, 80))
        self.assertEqual(a.inside_global[1], 40000)
        self.assertNotEqual(b.inside_global[1], 40000)
        self.assertGreaterEqual(b.inside_global[1], 1024)
        low = [self.out(udp("10.0.0.%d" % h, "192.0.2.9", 500, 53)).inside_global[1]
               for h in (2, 3, 4, 7)]
        self.assertEqual(low[0], 500)
        self.assertEqual(len(set(low)), 4)
        self.assertTrue(all(1 <= p <= 511 for p in low), low)
        mid = [self.out(udp("10.0.0.%d" % h, "192.0.2.9", 600, 53)).inside_global[1]
               for h in (2, 3, 4, 7)]
        self.assertTrue(all(512 <= p <= 1023 for p in mid), mid)
        # the second host's replies reach the second host
        r = tcp("192.0.2.9", G, 80, b.inside_global[1], flags="SA")
        self.assertIs(self.inb(r), b)
        self.assertEqual(sc(r)[IP].dst, "10.0.0.3")

    def test_pat_never_hands_out_a_port_in_use(self):
        used = set()
        for h in range(2, 200):
            t = self.out(tcp("10.0.0.%d" % h, "192.0.2.9", 2000, 80))
            self.assertNotIn(t.inside_global, used)
            used.add(t.inside_global)
        self.assertEqual(len(used), 198)
        # static tcp 25 on the interface address is never handed out
        t = self.out(tcp("10.0.0.2", "192.0.2.9", 25, 80))
        self.assertNotEqual(t.inside_global[1], 25)

    def test_pat_same_inside_port_keeps_its_global_port(self):
        a = self.out(udp("10.0.0.3", "192.0.2.9", 5000, 53))
        self.out(udp("10.0.0.2", "192.0.2.10", 5000, 53))
        b = self.out(udp("10.0.0.3", "192.0.2.77", 5000, 123))
        self.assertIsNot(a, b)
        self.assertEqual(a.inside_global, b.inside_global)

    def test_icmp_echo_identifier_translated(self):
        a = ping("10.0.0.2", "192.0.2.9", 7)
        b = ping("10.0.0.3", "192.0.2.9", 7)
        ta, tb = self.out(a), self.out(b)
        ia, ib = sc(a)[ICMP].id, sc(b)[ICMP].id
        self.assertEqual(ia, 7)
        self.assertNotEqual(ib, 7)
        assert_checksums(self, a)
        assert_checksums(self, b)
        ra = ping("192.0.2.9", G, ib, type=0)
        self.assertIs(self.inb(ra), tb)
        self.assertEqual((sc(ra)[IP].dst, sc(ra)[ICMP].id), ("10.0.0.3", 7))
        assert_checksums(self, ra)
        self.assertIs(self.inb(ping("192.0.2.9", G, 7, type=0)), ta)
        out = self.nat.show_translations()
        self.assertIn("icmp 203.0.113.1:7      10.0.0.2:7         192.0.2.9:7        192.0.2.9:7\n",
                      out)

    # -- static ---------------------------------------------------------------

    def test_static_reachable_from_outside_and_outbound(self):
        p = tcp("192.0.2.50", "203.0.113.5", 33000, 22)
        t = self.inb(p)
        self.assertIsNotNone(t)
        self.assertEqual(sc(p)[IP].dst, "10.0.0.5")
        assert_checksums(self, p)
        r = tcp("10.0.0.5", "192.0.2.50", 22, 33000, flags="SA")
        self.assertIs(self.out(r), t)
        self.assertEqual((sc(r)[IP].src, sc(r)[TCP].sport), ("203.0.113.5", 22))
        assert_checksums(self, r)
        # outbound from the static host: its own global address, port kept
        o = udp("10.0.0.5", "192.0.2.9", 5353, 53)
        self.out(o)
        self.assertEqual((sc(o)[IP].src, sc(o)[UDP].sport), ("203.0.113.5", 5353))
        self.assertTrue(self.nat.is_global_address(ip_int("203.0.113.5")))
        self.assertTrue(self.nat.is_global_address(ip_int("203.0.113.11")))
        self.assertFalse(self.nat.is_global_address(ip_int("203.0.113.99")))

    def test_static_port_on_interface_address(self):
        p = tcp("192.0.2.50", G, 33000, 25)
        t = self.inb(p)
        self.assertEqual((sc(p)[IP].dst, sc(p)[TCP].dport), ("10.0.0.6", 25))
        assert_checksums(self, p)
        self.assertEqual(t.inside_global, (ip_int(G), 25))
        # other ports of the interface address: no translation, not forwarded inside
        self.assertIsNone(self.inb(tcp("192.0.2.50", G, 33000, 26)))
        # nothing for unknown addresses
        self.assertIsNone(self.inb(tcp("192.0.2.50", "203.0.113.77", 1, 2)))

    def test_outside_static(self):
        p = tcp("10.0.0.2", "10.99.0.8", 41000, 443)
        t = self.out(p)
        s = sc(p)
        self.assertEqual((s[IP].src, s[IP].dst), (G, "198.51.100.8"))
        assert_checksums(self, p)
        r = tcp("198.51.100.8", G, 443, 41000, flags="SA")
        self.assertIs(self.inb(r), t)
        self.assertEqual((sc(r)[IP].src, sc(r)[IP].dst), ("10.99.0.8", "10.0.0.2"))
        assert_checksums(self, r)
        self.assertTrue(self.nat.is_outside_local_address(ip_int("10.99.0.8")))

    # -- dynamic pool -------------------------------------------------------------

    def test_pool_one_address_per_host_then_exhausted(self):
        a = self.out(tcp("10.0.1.1", "192.0.2.9", 1111, 80))
        a2 = self.out(udp("10.0.1.1", "192.0.2.9", 2222, 53))
        b = self.out(tcp("10.0.1.2", "192.0.2.9", 1111, 80))
        self.assertEqual(a.inside_global[0], ip_int("203.0.113.10"))
        self.assertEqual(a2.inside_global[0], ip_int("203.0.113.10"))
        self.assertEqual(b.inside_global, (ip_int("203.0.113.11"), 1111))
        self.assertIs(self.out(tcp("10.0.1.3", "192.0.2.9", 1, 80)), DROP)
        # outside can reach a host while it has a dynamic binding
        p = tcp("192.0.2.60", "203.0.113.11", 5000, 22)
        self.assertIsNotNone(self.inb(p))
        self.assertEqual(sc(p)[IP].dst, "10.0.1.2")
        st = self.nat.show_statistics()
        self.assertIn("[Id: 2] access-list 2 pool P refcount 6\n", st)
        self.assertIn(" pool P: netmask 255.255.255.0\n\tstart 203.0.113.10 end 203.0.113.11\n"
                      "\ttype generic, total addresses 2, allocated 2 (100%), misses 1\n", st)
        out = self.nat.show_translations()
        self.assertIn("--- 203.0.113.10       10.0.1.1           ---                ---\n", out)

    # -- timeouts -----------------------------------------------------------------

    def test_timeouts_expire_on_time(self):
        u = self.out(udp("10.0.0.2", "192.0.2.9", 5000, 5001))
        d = self.out(udp("10.0.0.2", "192.0.2.9", 5002, 53))
        s = self.out(tcp("10.0.0.2", "192.0.2.9", 6000, 80))          # SYN only
        e = self.out(tcp("10.0.0.2", "192.0.2.9", 6001, 80))
        self.inb(tcp("192.0.2.9", G, 80, 6001, flags="SA"))
        self.out(tcp("10.0.0.2", "192.0.2.9", 6001, 80, flags="A"))   # established
        i = self.out(ping("10.0.0.2", "192.0.2.9", 99))
        self.clock.advance(59)
        self.assertEqual([t.dead for t in (u, d, s, e, i)], [False] * 5)
        self.clock.advance(2)
        self.assertEqual([t.dead for t in (u, d, s, e, i)], [False, True, True, False, True])
        # use refreshes: a packet at 200 s moves the udp expiry to 500 s
        self.clock.advance(139)
        self.out(udp("10.0.0.2", "192.0.2.9", 5000, 5001))
        self.clock.advance(299)
        self.assertFalse(u.dead)
        self.clock.advance(2)
        self.assertTrue(u.dead)
        self.assertIsNone(self.nat.lookup(udp("192.0.2.9", G, 5001, 5000), inside=False))
        # FIN: finrst-timeout 60 s instead of 24 h
        self.out(tcp("10.0.0.2", "192.0.2.9", 6001, 80, flags="FA"))
        self.assertIn("timing out", self.nat.show_translations(verbose=True))
        self.clock.advance(61)
        self.assertTrue(e.dead)
        self.assertIn("Expired translations: 5\n", self.nat.show_statistics())
        self.assertEqual(self.clock.getDelayedCalls(), [])     # no idle timer left

    def test_established_tcp_lasts_a_day(self):
        e = self.out(tcp("10.0.0.2", "192.0.2.9", 6001, 80))
        self.out(tcp("10.0.0.2", "192.0.2.9", 6001, 80, flags="A"))
        self.clock.advance(86399)
        self.assertFalse(e.dead)
        self.clock.advance(2)
        self.assertTrue(e.dead)

    def test_touch_from_session_engine_keeps_alive(self):
        u = self.out(udp("10.0.0.2", "192.0.2.9", 5000, 5001))
        for _ in range(5):
            self.clock.advance(200)
            self.nat.touch(u, self.clock.seconds(), 0)
        self.assertFalse(u.dead)
        self.clock.advance(301)
        self.assertTrue(u.dead)

    def test_freed_port_is_reused_after_expiry(self):
        a = self.out(udp("10.0.0.2", "192.0.2.9", 7000, 53))
        self.clock.advance(61)
        self.assertTrue(a.dead)
        b = self.out(udp("10.0.0.3", "192.0.2.9", 7000, 53))
        self.assertEqual(b.inside_global[1], 7000)

    # -- ICMP errors ------------------------------------------------------------------

    def test_icmp_error_from_outside_inner_translated(self):
        p = udp("10.0.0.2", "192.0.2.9", 5000, 5001, payload=b"x" * 20)
        self.out(p)
        p2 = udp("10.0.0.3", "192.0.2.9", 5000, 5001, payload=b"y" * 20)
        t2 = self.out(p2)
        quoted = bytes(p2.frame)[p2.l3:p2.l3 + p2.ip_len]      # as sent outside
        err = frame(IP(src="192.0.2.254", dst=G) / ICMP(type=11, code=0) / quoted)
        self.assertIs(self.inb(err), t2)
        s = sc(err)
        self.assertEqual(s[IP].dst, "10.0.0.3")
        self.assertEqual(s[IP].src, "192.0.2.254")
        inner = IP(bytes(s[ICMP].payload))
        self.assertEqual((inner.src, inner[UDP].sport, inner.dst, inner[UDP].dport),
                         ("10.0.0.3", 5000, "192.0.2.9", 5001))
        assert_checksums(self, err)
        # only 8 bytes of TCP quoted (no TCP checksum in the quote)
        q = tcp("10.0.0.3", "192.0.2.9", 40000, 80)
        tq = self.out(q)
        quoted = bytes(q.frame)[q.l3:q.l3 + 28]
        err = frame(IP(src="192.0.2.9", dst=G) / ICMP(type=3, code=4, nexthopmtu=1400) / quoted)
        self.assertIs(self.nat.translate_icmp_error(err, INBOUND), tq)
        inner = IP(bytes(sc(err)[ICMP].payload))
        self.assertEqual((inner.src, inner.dst), ("10.0.0.3", "192.0.2.9"))
        self.assertEqual(struct.unpack("!H", bytes(sc(err)[ICMP].payload)[20:22])[0],
                         40000 if tq.inside_local[1] == 40000 else tq.inside_local[1])
        assert_checksums(self, err)

    def test_icmp_error_about_echo_and_from_inside(self):
        a = ping("10.0.0.3", "192.0.2.9", 7)
        self.out(ping("10.0.0.2", "192.0.2.9", 7))
        t = self.out(a)
        quoted = bytes(a.frame)[a.l3:a.l3 + a.ip_len]
        err = frame(IP(src="192.0.2.1", dst=G) / ICMP(type=3, code=1) / quoted)
        self.assertIs(self.inb(err), t)
        inner = IP(bytes(sc(err)[ICMP].payload))
        self.assertEqual((inner.src, inner[ICMP].id), ("10.0.0.3", 7))
        assert_checksums(self, err)
        # inside host answers an outside UDP probe to the static with port unreachable
        p = udp("192.0.2.50", "203.0.113.5", 4444, 161)
        ts = self.inb(p)
        quoted = bytes(p.frame)[p.l3:p.l3 + p.ip_len]          # as delivered inside
        err = frame(IP(src="10.0.0.5", dst="192.0.2.50") / ICMP(type=3, code=3) / quoted)
        self.assertIs(self.nat.outbound(err, IN_IF, OUT_IF), ts)
        s = sc(err)
        inner = IP(bytes(s[ICMP].payload))
        self.assertEqual((s[IP].src, inner.dst, inner[UDP].dport), ("203.0.113.5", "203.0.113.5", 161))
        assert_checksums(self, err)
        # an error about nothing we translated is left alone
        stray = frame(IP(src="192.0.2.1", dst=G) / ICMP(type=3, code=1)
                      / IP(src=G, dst="192.0.2.9") / UDP(sport=1, dport=2))
        self.assertIsNone(self.nat.translate_icmp_error(stray, OUTBOUND))
        self.assertIsNone(self.inb(stray))

    # -- FTP reservations -------------------------------------------------------------

    def test_reserve_for_ftp_data(self):
        ctl = self.out(tcp("10.0.0.2", "192.0.2.21", 40001, 21))
        self.out(tcp("10.0.0.3", "192.0.2.21", 50000, 21))          # takes global 50000
        g = self.nat.reserve("tcp", ip_int("10.0.0.2"), 50000, OUT_IF,
                             remote=ip_int("192.0.2.21"), like=ctl)
        self.assertEqual(g[0], ip_int(G))
        self.assertNotEqual(g[1], 50000)
        self.assertIn("Normal doors: 1\n", self.nat.show_statistics())
        # a connection from elsewhere does not use the door
        self.assertIsNone(self.inb(tcp("192.0.2.99", G, 20, g[1])))
        p = tcp("192.0.2.21", G, 20, g[1])
        t = self.inb(p)
        self.assertEqual((sc(p)[IP].dst, sc(p)[TCP].dport), ("10.0.0.2", 50000))
        assert_checksums(self, p)
        self.assertIn("Normal doors: 0\n", self.nat.show_statistics())
        r = tcp("10.0.0.2", "192.0.2.21", 50000, 20, flags="SA")
        self.assertIs(self.out(r), t)
        self.assertEqual(sc(r)[TCP].sport, g[1])

    def test_discarded_door_use_puts_the_door_back(self):
        # a packet that used a door but was dropped later (a zone policy):
        # the reservation is still there for the real peer
        g = self.nat.reserve("udp", ip_int("10.0.0.2"), 49170, OUT_IF)
        stray = udp("192.0.2.66", G, 1234, g[1])
        t = self.inb(stray)
        self.assertIn("Normal doors: 0\n", self.nat.show_statistics())
        self.nat.discard(t)
        self.assertIn("Normal doors: 1\n", self.nat.show_statistics())
        p = udp("192.0.2.21", G, 3456, g[1])
        self.assertIsNotNone(self.inb(p))
        self.assertEqual((sc(p)[IP].dst, sc(p)[UDP].dport), ("10.0.0.2", 49170))

    def test_unused_door_expires(self):
        g = self.nat.reserve("tcp", ip_int("10.0.0.2"), 50000, OUT_IF)
        self.clock.advance(61)
        self.assertIsNone(self.inb(tcp("192.0.2.21", G, 20, g[1])))
        self.assertEqual(self.nat.ports.get((6, ip_int(G), g[1])), None)

    # -- fragments ------------------------------------------------------------------

    def test_fragments_follow_the_first(self):
        whole = IP(src="10.0.0.3", dst="192.0.2.9", id=4242) / TCP(sport=40000, dport=9) / (b"z" * 64)
        self.out(tcp("10.0.0.2", "192.0.2.9", 40000, 9))            # port 40000 taken
        first, second = [frame(f) for f in __import__("scapy.all", fromlist=["fragment"])
                         .fragment(whole, fragsize=32)][:2]
        t = self.out(first)
        self.out(second)
        self.assertEqual(sc(second)[IP].src, G)
        assert_checksums(self, second)
        self.assertEqual(t.inside_global[0], ip_int(G))
        # a non-initial fragment without its first one cannot be PATed
        stray = frame(IP(src="10.0.0.9", dst="192.0.2.9", id=1, frag=4, proto=17) / (b"q" * 16))
        self.assertIs(self.out(stray), DROP)

    # -- show / clear ------------------------------------------------------------------

    def test_show_translations_and_statistics(self):
        self.out(tcp("10.0.0.2", "192.0.2.9", 1029, 23))
        text = self.nat.show_translations()
        self.assertEqual(text, (
            "Pro Inside global      Inside local       Outside local      Outside global\n"
            "--- 203.0.113.5        10.0.0.5           ---                ---\n"
            "tcp 203.0.113.1:25     10.0.0.6:25        ---                ---\n"
            "--- ---                ---                10.99.0.8          198.51.100.8\n"
            "tcp 203.0.113.1:1029   10.0.0.2:1029      192.0.2.9:23       192.0.2.9:23\n"))
        self.clock.advance(12)
        v = self.nat.show_translations(verbose=True).splitlines()
        self.assertEqual(v[8], "    create 00:00:12, use 00:00:12, timeout:60, left 00:00:48, "
                               "flags: extended, use_count: 0")
        self.assertEqual(v[2], "    create 00:00:12, use 00:00:12, flags: static, use_count: 0")
        self.assertEqual(self.nat.show_statistics(), (
            "Total active translations: 4 (3 static, 1 dynamic; 2 extended)\n"
            "Peak translations: 4, occurred 00:00:12 ago\n"
            "Outside interfaces:\n"
            "  Ethernet0/0\n"
            "Inside interfaces:\n"
            "  Ethernet0/1\n"
            "Hits: 0  Misses: 1\n"
            "Expired translations: 0\n"
            "Address allocation failures: 0\n"
            "max entry: max allowed 25000, used 1, missed 0\n"
            "max entry per host: max allowed 4096 (default), missed 0\n"
            "Dynamic mappings:\n"
            "-- Inside Source\n"
            "[Id: 1] access-list 1 interface Ethernet0/0 refcount 1\n"
            "[Id: 2] access-list 2 pool P refcount 0\n"
            " pool P: netmask 255.255.255.0\n"
            "\tstart 203.0.113.10 end 203.0.113.11\n"
            "\ttype generic, total addresses 2, allocated 0 (0%), misses 0\n"
            "Appl doors: 0\n"
            "Normal doors: 0\n"
            "Queued Packets: 0\n"))

    def test_clear_removes_dynamic_only(self):
        removed = []
        self.nat.listeners.append(removed.append)
        t = self.out(tcp("10.0.0.2", "192.0.2.9", 1029, 23))
        self.out(tcp("10.0.1.1", "192.0.2.9", 1029, 23))
        self.nat.clear()
        self.assertTrue(t.dead)
        self.assertIn(t, removed)
        text = self.nat.show_translations()
        self.assertEqual(len(text.splitlines()), 4)              # header + 3 statics
        self.assertIn("Total active translations: 3 (3 static, 0 dynamic; 1 extended)",
                      self.nat.show_statistics())
        self.assertIsNone(self.inb(tcp("192.0.2.9", G, 23, 1029, flags="SA")))
        # a pool address bound to nobody: dropped, not forwarded anywhere
        self.assertIs(self.inb(tcp("192.0.2.9", "203.0.113.10", 23, 1031, flags="SA")), DROP)
        # the port and the pool address are free again
        self.assertEqual(self.out(tcp("10.0.0.3", "192.0.2.9", 1029, 23)).inside_global[1], 1029)
        self.assertEqual(self.out(tcp("10.0.1.9", "192.0.2.9", 1, 23)).inside_global[0],
                         ip_int("203.0.113.10"))

    def test_untranslated_traffic_is_left_alone(self):
        p = tcp("10.0.2.2", "192.0.2.9", 1, 2)        # matches no NAT ACL
        self.assertIsNone(self.out(p))
        self.assertEqual(sc(p)[IP].src, "10.0.2.2")

    def test_max_entries(self):
        self.router.nat.timeouts.max_entries = 2
        nat = Nat(self.router, self.clock)
        self.addCleanup(nat.stop)
        nat.outbound(udp("10.0.0.2", "192.0.2.9", 1, 2), IN_IF, OUT_IF)
        nat.outbound(udp("10.0.0.2", "192.0.2.9", 3, 2), IN_IF, OUT_IF)
        self.assertIs(nat.outbound(udp("10.0.0.2", "192.0.2.9", 4, 2), IN_IF, OUT_IF), DROP)


class NatMoreTestCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.router = parse(CONFIG + "access-list 102 permit tcp 10.0.2.0 0.0.0.255 any eq www\n"
                            "ip nat inside source list 102 interface Ethernet0/0 overload\n")
        self.nat = Nat(self.router, self.clock)
        self.addCleanup(self.nat.stop)

    def out(self, pkt):
        return self.nat.outbound(pkt, IN_IF, OUT_IF)

    def test_extended_acl_selects_traffic(self):
        p = tcp("10.0.2.7", "192.0.2.9", 3333, 80)
        self.assertIsNotNone(self.out(p))
        self.assertEqual(sc(p)[IP].src, G)
        q = tcp("10.0.2.7", "192.0.2.9", 3334, 443)
        self.assertIsNone(self.out(q))
        self.assertEqual(sc(q)[IP].src, "10.0.2.7")
        self.assertIn("[Id: 3] access-list 102 interface Ethernet0/0 refcount 1",
                      self.nat.show_statistics())

    def test_touch_without_flags_keeps_tcp_alive_under_a_session(self):
        t = self.out(tcp("10.0.0.2", "192.0.2.9", 6001, 80))
        self.nat.touch(t)                   # session engine, flags unknown
        self.clock.advance(3600)
        self.assertFalse(t.dead)
        self.nat.touch(t, tcp_flags=0x11)   # FIN ACK
        self.clock.advance(61)
        self.assertTrue(t.dead)

    def test_debug_ip_nat(self):
        from cbac.log.ios import debugging
        from twisted.logger import globalLogPublisher
        lines = []

        def obs(e):
            if e.get("ios_debug") == "nat":
                lines.append(e["ios_message"])
        globalLogPublisher.addObserver(obs)
        self.addCleanup(globalLogPublisher.removeObserver, obs)
        debugging.set("nat")
        self.addCleanup(debugging.set, "nat", False)
        p = frame(IP(src="10.0.0.2", dst="192.0.2.9", id=4242) / TCP(sport=1, dport=80))
        self.out(p)
        r = frame(IP(src="192.0.2.9", dst=G, id=7) / TCP(sport=80, dport=1, flags="SA"))
        self.nat.inbound(r, OUT_IF)
        self.assertEqual(lines, ["NAT: s=10.0.0.2->203.0.113.1, d=192.0.2.9 [4242]",
                                 "NAT: s=192.0.2.9, d=203.0.113.1->10.0.0.2 [7]"])

    def test_clear_single_translation(self):
        a = self.out(tcp("10.0.0.2", "192.0.2.9", 1029, 23))
        b = self.out(tcp("10.0.0.3", "192.0.2.9", 1030, 23))
        c = self.out(tcp("10.0.1.1", "192.0.2.9", 1031, 23))
        n = self.nat.clear_translation("tcp", inside=(ip_int(G), 1029, ip_int("10.0.0.2"), 1029))
        self.assertEqual(n, 1)
        self.assertTrue(a.dead)
        self.assertFalse(b.dead)
        # a simple binding: its flows go with it
        n = self.nat.clear_translation(inside=(ip_int("203.0.113.10"), None,
                                               ip_int("10.0.1.1"), None))
        self.assertEqual(n, 2)
        self.assertTrue(c.dead)
        self.assertNotIn("10.0.1.1", self.nat.show_translations())
        self.assertEqual(self.nat.clear_translation(), 0)

    def test_update_keeps_flows_and_applies_new_statics(self):
        a = self.out(tcp("10.0.0.2", "192.0.2.9", 1029, 23))
        r2 = parse(CONFIG + "ip nat inside source static 10.0.0.40 203.0.113.40\n")
        self.nat.update(r2)
        self.assertFalse(a.dead)
        back = tcp("192.0.2.9", G, 23, 1029, flags="SA")
        self.assertIs(self.nat.inbound(back, OUT_IF), a)
        p = tcp("192.0.2.9", "203.0.113.40", 5, 22)
        self.assertIsNotNone(self.nat.inbound(p, OUT_IF))
        self.assertEqual(sc(p)[IP].dst, "10.0.0.40")
        self.assertIn("[Id: 1] access-list 1 interface Ethernet0/0 refcount 1",
                      self.nat.show_statistics())

    def test_partial_checksum_frames(self):
        """virtio-net NEEDS_CSUM: the TCP field holds the pseudo-header sum;
        after NAT it must hold the sum for the new addresses."""
        from cbac.packet.checksum import pseudo_header_sum
        from cbac.packet.vnet import build
        raw = bytearray(bytes(Ether(src="00:11:22:33:44:55", dst="02:00:00:00:00:01")
                              / IP(src="10.0.0.2", dst="192.0.2.9")
                              / TCP(sport=1, dport=80) / b"data"))
        l4 = 14 + 20
        tcplen = len(raw) - l4
        ph = pseudo_header_sum(ip_int("10.0.0.2"), ip_int("192.0.2.9"), 6, tcplen)
        raw[l4 + 16:l4 + 18] = ph.to_bytes(2, "big")
        p = parse_frame(raw, build(1, 0, 0, 0, l4, 16))
        self.out(p)
        want = pseudo_header_sum(ip_int(G), ip_int("192.0.2.9"), 6, tcplen)
        self.assertEqual(int.from_bytes(raw[l4 + 16:l4 + 18], "big"), want)
        self.assertEqual(sc_checksum(bytes(raw[14:34])), 0)


from hypothesis import given, settings, strategies as st  # noqa: E402

_op = st.one_of(
    st.tuples(st.just("out"), st.sampled_from([6, 17, 1]), st.integers(2, 6),
              st.sampled_from([5, 500, 1024, 1025, 40000]),
              st.sampled_from(["192.0.2.9", "192.0.2.10", "10.99.0.8", "10.0.1.1"]),
              st.sampled_from([53, 80])),
    st.tuples(st.just("reply"), st.integers(0, 50)),
    st.tuples(st.just("wait"), st.sampled_from([1, 30, 61, 301])),
    st.tuples(st.just("clear")),
)


class NatInvariants(unittest.TestCase):
    def check(self, nat):
        refs = {}
        for t in nat.entries.values():
            self.assertFalse(t.dead)
            if t.kind != "flow":
                continue
            self.assertIs(nat.flows_in[t.in_key], t)
            self.assertIs(nat.flows_out[t.out_key], t)
            if t.pat_key is not None:
                k = (t.proto, t.inside_global[0], t.inside_global[1])
                refs[k] = refs.get(k, 0) + 1
                self.assertEqual(nat.ports[k][:2], list(t.inside_local))
        self.assertEqual(len(nat.flows_in), sum(1 for t in nat.entries.values()
                                                if t.kind == "flow"))
        self.assertEqual(len(nat.flows_out), len(nat.flows_in))
        dyn = {k: v[2] for k, v in nat.ports.items() if v[2] >= 0}
        self.assertEqual(dyn, refs)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(_op, max_size=40))
    def test_random_traffic(self, ops):
        clock = Clock()
        nat = Nat(parse(CONFIG), clock)
        sent = []
        for op in ops:
            if op[0] == "out":
                _, proto, h, port, dst, dport = op
                src = "10.0.0.%d" % h if h != 6 else "10.0.1.%d" % h
                if proto == 6:
                    p = tcp(src, dst, port, dport)
                elif proto == 17:
                    p = udp(src, dst, port, dport)
                else:
                    p = ping(src, dst, port)
                t = nat.outbound(p, IN_IF, OUT_IF)
                if t is not None and t is not DROP:
                    assert_checksums(self, p)
                    sent.append((t, src, port, proto, p))
            elif op[0] == "reply" and sent:
                t, src, port, proto, p = sent[op[1] % len(sent)]
                s = sc(p)
                if proto == 6:
                    r = tcp(s[IP].dst, s[IP].src, s[TCP].dport, s[TCP].sport, flags="SA")
                elif proto == 17:
                    r = udp(s[IP].dst, s[IP].src, s[UDP].dport, s[UDP].sport)
                else:
                    r = ping(s[IP].dst, s[IP].src, s[ICMP].id, type=0)
                got = nat.inbound(r, OUT_IF)
                if t.dead:
                    continue
                self.assertIs(got, t)
                rs = sc(r)
                self.assertEqual(rs[IP].dst, src)
                self.assertEqual(rs[ICMP].id if proto == 1 else rs.payload.payload.dport, port)
                assert_checksums(self, r)
            elif op[0] == "wait":
                clock.advance(op[1])
            else:
                nat.clear()
            self.check(nat)
        clock.advance(86400 * 2)
        self.check(nat)
        self.assertEqual(nat.entries, {})
        self.assertEqual([v for v in nat.ports.values() if v[2] >= 0], [])
        self.assertEqual(clock.getDelayedCalls(), [])


class SharedPairTests(unittest.TestCase):
    """One Rewrite pair per connection: the session made for a translated
    flow uses the translation's own pair, and it still translates the
    replies (bytes on the wire and checksums)."""

    def test_session_uses_the_translation_pair(self):
        from tests.test_sessions import send, table
        clock = Clock()
        nat = Nat(parse(CONFIG), clock)
        self.addCleanup(nat.stop)
        self.addCleanup(nat.acls.stop)
        _c, sessions = table(clock=clock, testcase=self)
        syn = tcp("10.0.0.2", "192.0.2.9", 40000, 80)
        t = nat.outbound(syn, IN_IF, OUT_IF)
        s = sessions.create(syn, IN_IF, OUT_IF, "R", t, None)
        self.assertIsNotNone(s)
        self.assertIs(s.rw, t.rw)
        self.assertEqual((s.c_in, s.c_out), (t.forward.old, t.forward.new))
        self.assertEqual((s.s_in, s.s_out), (t.reverse.old, t.reverse.new))
        ig, igp = t.inside_global
        sa = frame(IP(src="192.0.2.9", dst=G) / TCP(sport=80, dport=igp, flags="SA", seq=5000,
                                                     ack=1))
        self.assertTrue(send(sessions, sa))
        r = sc(sa)
        self.assertEqual((r[IP].dst, r[TCP].dport), ("10.0.0.2", 40000))
        assert_checksums(self, sa)

    def test_flow_keys_are_distinct(self):
        from cbac.nat.translation import flow_key
        u16 = st.integers(0, 0xFFFF)
        u32 = st.integers(0, 0xFFFFFFFF)
        five = st.tuples(st.integers(0, 255), u32, u16, u32, u16)

        @settings(max_examples=300, deadline=None)
        @given(five, five)
        def distinct(a, b):
            self.assertEqual(flow_key(*a) == flow_key(*b), a == b)
        distinct()
