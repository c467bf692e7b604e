"""PAT and the remote's TIME_WAIT (issue 21): a closed TCP translation's
4-tuple (global address and port, remote address and port) is not handed
to a new connection while the remote may still hold the old connection in
TIME_WAIT; the kernel's conntrack keeps the old tuple the same way.  Seen
from the wire: the new SYN leaves with another source port."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.config.parser import parse
from cbac.nat import Nat, table
from tests.test_nat import CONFIG, IN_IF, OUT_IF, tcp, udp


class PatTimeWaitTest(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.nat = Nat(parse(CONFIG), self.clock)
        self.addCleanup(self.nat.stop)

    def connect(self, sport, dst="198.51.100.1", dport=80):
        p = tcp("10.0.0.2", dst, sport, dport)
        t = self.nat.outbound(p, IN_IF, OUT_IF)
        self.assertIsNotNone(t)
        return t, p.sport

    def close(self, t):
        self.nat._remove(t)

    def test_same_remote_gets_another_port_during_time_wait(self):
        t, gport = self.connect(40000)
        self.assertEqual(gport, 40000)             # the port is kept when free
        self.close(t)
        t2, gport2 = self.connect(40000)
        self.assertNotEqual(gport2, 40000)          # the remote's TIME_WAIT
        self.close(t2)
        # another remote may use the port at once
        _t3, gport3 = self.connect(40000, dst="198.51.100.2")
        self.assertEqual(gport3, 40000)

    def test_reservation_ends_after_time_wait(self):
        t, _ = self.connect(40001)
        self.close(t)
        self.clock.advance(table.PAT_TIME_WAIT + 1)
        _t2, gport = self.connect(40001)
        self.assertEqual(gport, 40001)

    def test_sustained_connections_never_reuse_a_recent_tuple(self):
        """Thousands of short connections from ports the client recycles
        quickly: no 4-tuple is reused within the TIME_WAIT period."""
        used = {}
        for i in range(6000):
            now = self.clock.seconds()
            sport = 32768 + (i % 500)             # a client cycling 500 ports
            t, gport = self.connect(sport)
            last = used.get(gport)
            self.assertTrue(last is None or now - last >= table.PAT_TIME_WAIT,
                            "port %d reused after %.1f s" % (gport, now - (last or 0)))
            self.close(t)
            used[gport] = self.clock.seconds()
            self.clock.advance(0.01)

    def test_udp_is_not_reserved(self):
        p = udp("10.0.0.2", "198.51.100.1", 5000, 53)
        t = self.nat.outbound(p, IN_IF, OUT_IF)
        self.nat._remove(t)
        p = udp("10.0.0.2", "198.51.100.1", 5000, 53)
        self.nat.outbound(p, IN_IF, OUT_IF)
        self.assertEqual(p.sport, 5000)

    def test_reservations_are_bounded(self):
        self.patch(table, "PAT_TIME_WAIT_MAX", 100)
        for i in range(300):
            t, _ = self.connect(20000 + i)
            self.close(t)
        self.assertLessEqual(len(self.nat.time_wait), 100)
