"""The established-flow fast path keeps every check of the slow path.

The appliance runs the seed configuration on memory ports; a TCP flow from
the inside is established through PAT, then data segments take the fast
path.  What leaves the router is checked with scapy (addresses, ports,
checksums), and the checks that must still hold on the fast path are
exercised: window, flags, counters, NAT in both directions.
"""

from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, raw
from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.app import Appliance
from cbac.config.parser import parse_file
from cbac.dataplane.port import MemoryPort
from tests.labrun import SEED_CONFIG

R_IN, R_OUT = "02:00:0a:0a:0a:01", "02:00:ac:16:01:10"
H_IN, H_OUT = "02:00:0a:0a:0a:02", "02:00:ac:16:01:01"


def checksums_ok(frame: bytes) -> bool:
    p = Ether(frame)
    ip_c, l4 = p[IP].chksum, p[IP].payload
    l4_c = l4.chksum
    del p[IP].chksum
    del l4.chksum
    q = Ether(raw(p))
    return q[IP].chksum == ip_c and q[IP].payload.chksum == l4_c


class FastPathTests(unittest.TestCase):
    def setUp(self):
        model, diags = parse_file(SEED_CONFIG)
        self.clock = Clock()
        self.pin = MemoryPort("Ethernet2/1", R_IN)
        self.pout = MemoryPort("Ethernet2/0", R_OUT)
        self.app = Appliance(model, self.clock, {"Ethernet2/1": self.pin, "Ethernet2/0": self.pout})
        self.r = self.app.router
        self.r.start()
        self.addCleanup(self.r.stop)
        self.inject(self.pin, Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") /
                    ARP(op=1, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.1"))
        self.inject(self.pout, Ether(src=H_OUT, dst="ff:ff:ff:ff:ff:ff") /
                    ARP(op=1, hwsrc=H_OUT, psrc="172.22.1.1", pdst="172.22.1.16"))
        self.pin.sent.clear()
        self.pout.sent.clear()

    def inject(self, port, p):
        self.r.frameReceived(port, bytearray(raw(p)), b"")

    def c2s(self, flags, seq, ack, data=b""):
        return Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") / \
            TCP(sport=40000, dport=8080, flags=flags, seq=seq, ack=ack, window=65535) / data

    def s2c(self, flags, seq, ack, data=b""):
        return Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.1", dst="172.22.1.16") / \
            TCP(sport=8080, dport=40000, flags=flags, seq=seq, ack=ack, window=65535) / data

    def establish(self):
        self.inject(self.pin, self.c2s("S", 100, 0))
        self.inject(self.pout, self.s2c("SA", 5000, 101))
        self.inject(self.pin, self.c2s("A", 101, 5001))
        self.pin.sent.clear()
        self.pout.sent.clear()

    def sent(self, port):
        out = [f for f, v in port.sent]
        port.sent.clear()
        return out

    def test_idle_timeout_resets_both_ends_at_once(self):
        """A timer-caused reset is on the wire the moment the session
        expires, not at the router's next once-a-second sweep."""
        self.clock.advance(0.5)          # the session's timer ticks at x.5, the sweep at x.0
        self.establish()
        [s] = self.app.sessions.sessions.values()
        self.clock.advance(s.idle - 2)
        for _ in range(40):
            self.clock.advance(0.1)
            if not self.app.sessions.sessions:
                break
        self.assertEqual(len(self.app.sessions.sessions), 0)
        frac = self.clock.seconds() % 1.0
        self.assertTrue(0.1 < frac < 0.9, frac)     # between two sweeps
        [to_client] = [Ether(f) for f in self.sent(self.pin)]
        [to_server] = [Ether(f) for f in self.sent(self.pout)]
        self.assertTrue(to_client[TCP].flags.R and to_server[TCP].flags.R)
        self.assertEqual((to_client[IP].dst, to_client[TCP].dport), ("10.10.10.2", 40000))
        self.assertEqual((to_server[IP].dst, to_server[TCP].dport), ("172.22.1.1", 8080))

    def test_data_is_translated_with_valid_checksums_both_ways(self):
        self.establish()
        fast_before = self.r.forwarded
        self.inject(self.pin, self.c2s("PA", 101, 5001, b"hello"))
        [f] = self.sent(self.pout)
        p = Ether(f)
        self.assertEqual((p[IP].src, p[TCP].sport, p[IP].ttl), ("172.22.1.16", 40000, 63))
        self.assertEqual((p.src, p.dst), (R_OUT, H_OUT))
        self.assertEqual(bytes(p[TCP].payload), b"hello")
        self.assertTrue(checksums_ok(f))
        self.inject(self.pout, self.s2c("PA", 5001, 106, b"world!"))
        [f] = self.sent(self.pin)
        p = Ether(f)
        self.assertEqual((p[IP].dst, p[TCP].dport), ("10.10.10.2", 40000))
        self.assertTrue(checksums_ok(f))
        self.assertEqual(self.r.forwarded - fast_before, 2)
        self.assertIn("Bytes sent (initiator:responder) [5:6]",
                      self.app.show_ip_inspect("sessions detail"))

    def test_sessions_on_the_same_hops_share_one_route_cache(self):
        """Memory (issue 21): the route a session caches per direction is
        one tuple shared by the sessions with the same hops, and each
        still takes the fast path with it."""
        self.establish()
        sp = 40001
        self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") /
                    TCP(sport=sp, dport=8080, flags="S", seq=300, window=65535))
        self.inject(self.pout, Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.1", dst="172.22.1.16") /
                    TCP(sport=8080, dport=sp, flags="SA", seq=7000, ack=301, window=65535))
        self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") /
                    TCP(sport=sp, dport=8080, flags="A", seq=301, ack=7001, window=65535))
        a, b = self.app.sessions.sessions.values()
        self.assertIsNot(a, b)
        self.assertIs(a.route, b.route)
        self.assertEqual([h[0].name for h in a.route], ["Ethernet2/0", "Ethernet2/1"])
        self.assertEqual(len(self.sent(self.pout)), 2)
        fast_before = self.r.forwarded
        self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") /
                    TCP(sport=sp, dport=8080, flags="PA", seq=301, ack=7001, window=65535) / b"hi")
        self.inject(self.pin, self.c2s("PA", 101, 5001, b"hello"))
        self.assertEqual(self.r.forwarded - fast_before, 2)
        self.assertEqual(len(self.sent(self.pout)), 2)

    def test_out_of_window_segment_is_dropped_on_the_fast_path_too(self):
        self.establish()
        self.inject(self.pin, self.c2s("PA", 101 + 10_000_000, 5001, b"x"))
        self.assertEqual(self.sent(self.pout), [])
        self.assertIn("seq-above-window", self.app.show_ip_inspect("statistics"))

    def test_forged_rst_outside_window_does_not_kill_the_session(self):
        self.establish()
        self.inject(self.pout, self.s2c("R", 5001 + 3_000_000, 0))
        self.assertEqual(self.sent(self.pin), [])
        self.inject(self.pin, self.c2s("PA", 101, 5001, b"still"))
        self.assertEqual(len(self.sent(self.pout)), 1)

    def test_fin_goes_through_the_slow_path_and_closes(self):
        self.establish()
        self.inject(self.pin, self.c2s("FA", 101, 5001))
        self.inject(self.pout, self.s2c("FA", 5001, 102))
        self.inject(self.pin, self.c2s("A", 102, 5002))
        self.assertEqual(len(self.sent(self.pout)), 2)
        self.assertIn("Terminating Sessions\n Session 620001C8 (10.10.10.2:40000)=>(172.22.1.1:8080) tcp SIS_CLOSING",
                      self.app.show_ip_inspect("sessions"))

    def test_ttl_one_is_not_forwarded(self):
        self.establish()
        p = self.c2s("PA", 101, 5001, b"x")
        p[IP].ttl = 1
        self.inject(self.pin, p)
        self.assertEqual(self.sent(self.pout), [])
        [e] = [Ether(f) for f in self.sent(self.pin)]
        self.assertEqual((e[IP].src, e[IP].dst, e[IP].payload.type), ("10.10.10.1", "10.10.10.2", 11))
        self.assertEqual(e[IP].payload.payload.src, "10.10.10.2")     # the quote as sent

    def test_slow_path_looks_up_a_reused_frame_buffer_afresh(self):
        """The fast path hands its session lookup of a frame it declines to
        the slow path; a buffer it declined once and that comes back with
        other contents (a caller reusing its bytearray) is looked up
        again.  Here: a segment of an established flow is declined (wrong
        MAC, dropped), the session is cleared, and the same buffer brings
        a new SYN of that 4-tuple with IP options (not for the fast path):
        it opens a new session and is forwarded, not judged by the old one."""
        self.establish()
        [old] = self.app.sessions.sessions.values()
        buf = bytearray(raw(Ether(src=H_IN, dst="02:00:00:00:00:99") /
                            IP(src="10.10.10.2", dst="172.22.1.1") /
                            TCP(sport=40000, dport=8080, flags="A", seq=101, ack=5001)))
        self.r.frameReceived(self.pin, buf, b"")
        self.assertEqual(self.r.drops["not-our-mac"], 1)
        self.app.sessions.delete(old)
        buf[:] = raw(Ether(src=H_IN, dst=R_IN) /
                     IP(src="10.10.10.2", dst="172.22.1.1", options=b"\x01\x01\x01\x00") /
                     TCP(sport=40000, dport=8080, flags="S", seq=7000, window=65535))
        self.r.frameReceived(self.pin, buf, b"")
        [out] = self.sent(self.pout)
        self.assertEqual((Ether(out)[TCP].flags, Ether(out)[TCP].seq), ("S", 7000))
        [new] = self.app.sessions.sessions.values()
        self.assertIsNot(new, old)

    def half_open(self):
        """A SYN through PAT: the session is half-open (its SYN/ACK and ACK
        are found by the fast path's lookup and declined)."""
        self.inject(self.pin, self.c2s("S", 100, 0))
        [syn] = self.sent(self.pout)
        [s] = self.app.sessions.sessions.values()
        return s

    def test_half_open_session_packets_keep_every_ingress_check(self):
        """The SYN/ACK of a half-open session goes from the fast path's
        lookup straight to the slow path's stages: a damaged IP header, a
        damaged TCP checksum, a frame for another MAC, a truncated frame
        and TTL 1 are each dropped and counted as on the slow path, the
        session is not touched, and the good SYN/ACK then passes."""
        s = self.half_open()
        drops_before = dict(self.r.drops)
        bad_ip = bytearray(raw(self.s2c("SA", 5000, 101)))
        bad_ip[24] ^= 0x01                         # IP header checksum
        self.r.frameReceived(self.pout, bad_ip, b"")
        bad_tcp = bytearray(raw(self.s2c("SA", 5000, 101)))
        bad_tcp[50] ^= 0x01                        # TCP checksum
        self.r.frameReceived(self.pout, bad_tcp, b"")
        other_mac = self.s2c("SA", 5000, 101)
        other_mac[Ether].dst = "02:00:00:00:00:99"
        self.inject(self.pout, other_mac)
        truncated = bytearray(raw(self.s2c("SA", 5000, 101, b"x" * 20)))[:-10]
        self.r.frameReceived(self.pout, truncated, b"")
        ttl1 = self.s2c("SA", 5000, 101)
        ttl1[IP].ttl = 1
        self.inject(self.pout, ttl1)
        got = {k: v - drops_before.get(k, 0) for k, v in self.r.drops.items()
               if v != drops_before.get(k, 0)}
        self.assertEqual(got, {"malformed-ip-checksum": 1, "bad-l4-checksum": 1,
                               "not-our-mac": 1, "malformed-truncated": 1,
                               "ttl-exceeded": 1})
        self.assertEqual(self.app.sessions.stats.drops.get("bad-checksum"), 1)
        self.assertEqual(self.sent(self.pin), [])
        [e] = [Ether(f) for f in self.sent(self.pout)]      # time exceeded, to the server
        self.assertEqual((e[IP].src, e[IP].dst, e[IP].payload.type), ("172.22.1.16", "172.22.1.1", 11))
        self.assertEqual((s.p0, s.p1), (1, 0))
        # the good SYN/ACK, from a receive-ring view (not kept), and the ACK
        self.r.frameReceived(self.pout, memoryview(bytearray(raw(self.s2c("SA", 5000, 101)))), b"")
        [f] = self.sent(self.pin)
        self.assertEqual((Ether(f)[TCP].flags, Ether(f)[TCP].dport, Ether(f)[IP].ttl), ("SA", 40000, 63))
        self.assertTrue(checksums_ok(f))
        self.inject(self.pin, self.c2s("A", 101, 5001))
        [f] = self.sent(self.pout)
        self.assertEqual((Ether(f)[TCP].flags, Ether(f)[IP].src), ("A", "172.22.1.16"))
        self.assertTrue(checksums_ok(f))
        self.assertEqual((s.p0, s.p1), (2, 1))

    def test_segment_without_session_keeps_every_ingress_check(self):
        """A SYN (no session: the fast path's lookup misses) to a broadcast
        or multicast address, with a bad checksum or for another MAC is
        dropped and counted as on the slow path, without a session or a
        translation."""
        nat_before = self.app.show_ip_nat_translations()
        p = self.c2s("S", 100, 0)
        p[IP].dst = "224.0.0.5"
        self.inject(self.pin, p)
        bad = bytearray(raw(self.c2s("S", 100, 0)))
        bad[50] ^= 0x01
        self.r.frameReceived(self.pin, bad, b"")
        p = self.c2s("S", 100, 0)
        p[Ether].dst = "02:00:00:00:00:99"
        self.inject(self.pin, p)
        self.assertEqual((self.r.drops["broadcast-multicast"], self.r.drops["bad-l4-checksum"],
                          self.r.drops["not-our-mac"]), (1, 1, 1))
        self.assertEqual((self.sent(self.pout), self.sent(self.pin)), ([], []))
        self.assertEqual(len(self.app.sessions.sessions), 0)
        self.assertEqual(self.app.show_ip_nat_translations(), nat_before)

    def test_udp_reply_opens_then_fast_path(self):
        for i in range(3):
            self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") /
                        UDP(sport=5000, dport=7000) / b"q")
            self.inject(self.pout, Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.1", dst="172.22.1.16") /
                        UDP(sport=7000, dport=5000) / b"answer")
        back = self.sent(self.pin)
        self.assertEqual(len(back), 3)
        for f in back:
            p = Ether(f)
            self.assertEqual((p[IP].dst, p[UDP].dport), ("10.10.10.2", 5000))
            self.assertTrue(checksums_ok(f))

    def test_permitted_non_syn_without_a_session_is_dropped(self):
        """A TCP segment that cannot open a session, on traffic a rule
        inspects, is dropped by default (cbac is stricter than IOS here)."""
        self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") /
                    TCP(sport=40000, dport=8080, flags="SA", seq=1, ack=2))
        self.assertEqual(self.sent(self.pout), [])
        self.assertIn("tcp-no-session", self.app.show_ip_inspect("statistics"))

    def test_permitted_non_syn_is_forwarded_without_a_session_in_ios_mode(self):
        """With "cbac inspect tcp no-session forward", a packet that cannot
        open a session but that the ACLs permit is forwarded without one
        (IOS), e.g. an inside server's SYN/ACK for a connection whose SYN
        came in through an interface whose rule did not inspect it."""
        self.app.router.model.inspect.tcp_no_session = "forward"
        self.inject(self.pin, Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") /
                    TCP(sport=40000, dport=8080, flags="SA", seq=1, ack=2))
        [f] = self.sent(self.pout)
        self.assertEqual(Ether(f)[TCP].flags, "SA")
        self.assertEqual(self.app.show_ip_inspect("sessions"), "")


class IcmpFastPathTests(unittest.TestCase):
    """ICMP echo of an established ICMP session takes the fast path (one
    lookup on addresses + identifier, the session's PAT rewrite), with the
    slow path's type checks."""

    setUp = FastPathTests.setUp
    inject = FastPathTests.inject
    sent = FastPathTests.sent

    def ping(self, ident, seq, typ=8):
        return Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") / \
            ICMP(type=typ, id=ident, seq=seq) / b"0123456789abcdef"

    def pong(self, ident, seq, typ=0):
        return Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.1", dst="172.22.1.16") / \
            ICMP(type=typ, id=ident, seq=seq) / b"0123456789abcdef"

    def count_slow(self):
        calls = []
        real = self.r._ip_received

        def counting(ri, frame, vnet):
            calls.append(bytes(frame))
            return real(ri, frame, vnet)
        self.r._ip_received = counting
        return calls

    def test_echo_request_and_reply_take_the_fast_path_with_pat(self):
        self.inject(self.pin, self.ping(0x1234, 1))
        [f] = self.sent(self.pout)
        nat_id = Ether(f)[ICMP].id
        self.inject(self.pout, self.pong(nat_id, 1))
        self.assertEqual(len(self.sent(self.pin)), 1)
        # the second request learns its route on the slow path (the reply
        # learnt the other direction's)
        self.inject(self.pin, self.ping(0x1234, 2))
        self.inject(self.pout, self.pong(nat_id, 2))
        self.assertEqual((len(self.sent(self.pout)), len(self.sent(self.pin))), (1, 1))
        slow = self.count_slow()
        for seq in range(3, 7):
            self.inject(self.pin, self.ping(0x1234, seq))
            [f] = self.sent(self.pout)
            p = Ether(f)
            self.assertEqual((p[IP].src, p[IP].dst, p[IP].ttl, p[ICMP].type, p[ICMP].id, p[ICMP].seq),
                             ("172.22.1.16", "172.22.1.1", 63, 8, nat_id, seq))
            self.assertEqual((p.src, p.dst), (R_OUT, H_OUT))
            self.assertTrue(checksums_ok(f))
            self.inject(self.pout, self.pong(nat_id, seq))
            [f] = self.sent(self.pin)
            p = Ether(f)
            self.assertEqual((p[IP].src, p[IP].dst, p[ICMP].type, p[ICMP].id, p[ICMP].seq),
                             ("172.22.1.1", "10.10.10.2", 0, 0x1234, seq))
            self.assertTrue(checksums_ok(f))
        self.assertEqual(slow, [])
        self.assertIn("Bytes sent (initiator:responder) [96:96]",
                      self.app.show_ip_inspect("sessions detail"))

    def test_wrong_types_leave_the_fast_path_and_are_dropped(self):
        self.inject(self.pin, self.ping(0x1234, 1))
        [f] = self.sent(self.pout)
        nat_id = Ether(f)[ICMP].id
        self.inject(self.pout, self.pong(nat_id, 1))
        self.sent(self.pin)
        slow = self.count_slow()
        # the responder may not send a request, the initiator not a reply,
        # nor a timestamp on an echo session
        self.inject(self.pout, self.pong(nat_id, 2, typ=8))
        self.inject(self.pin, self.ping(0x1234, 2, typ=0))
        self.inject(self.pin, self.ping(0x1234, 2, typ=13))
        self.assertEqual(self.sent(self.pin), [])
        self.assertEqual(self.sent(self.pout), [])
        self.assertEqual(len(slow), 3)
        self.assertIn("icmp-unexpected-type", self.app.show_ip_inspect("statistics"))
