"""TCP inspection: handshake, window checks, RST handling, invalid flags,
timers, window scaling, GSO super-frames (cbac.inspect.tcp via the table)."""

from __future__ import annotations

from scapy.all import IP, TCP
from twisted.trial import unittest

from cbac.config.model import InspectProtocol
from tests.test_sessions import A, B, capture_logs, handshake, model, send, table, tcp


class HandshakeTests(unittest.TestCase):

    def test_three_way_handshake(self):
        c, t = table(testcase=self)
        s = t.create(tcp(A, B, 1234, 80, "S", seq=100), "in", "out", "R", None, None)
        self.assertEqual(s.sis, "SIS_OPENING")
        self.assertEqual(t.half_open_count, 1)
        # the client may not ACK before the SYN/ACK
        self.assertFalse(send(t, tcp(A, B, 1234, 80, "A", seq=101, ack=5)))
        # a SYN/ACK acknowledging something else is dropped
        self.assertFalse(send(t, tcp(B, A, 80, 1234, "SA", seq=7000, ack=555)))
        self.assertTrue(send(t, tcp(B, A, 80, 1234, "SA", seq=7000, ack=101)))
        self.assertEqual(s.sis, "SIS_OPENING")
        self.assertTrue(send(t, tcp(B, A, 80, 1234, "SA", seq=7000, ack=101)))  # retransmit
        self.assertTrue(send(t, tcp(A, B, 1234, 80, "S", seq=100)))   # SYN/ACK lost later
        self.assertFalse(send(t, tcp(A, B, 1234, 80, "S", seq=4242)))
        self.assertTrue(send(t, tcp(A, B, 1234, 80, "A", seq=101, ack=7001)))
        self.assertEqual(s.sis, "SIS_OPEN")
        self.assertEqual(t.half_open_count, 0)
        self.assertIn("Established Sessions", t.show_sessions())

    def test_fin_exchange_then_finwait(self):
        c, t = table(testcase=self)
        s = handshake(t)
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "FA", 1001, 9001)))
        self.assertEqual(s.sis, "SIS_OPEN")          # half-closed
        self.assertTrue(send(t, tcp(B, A, 23, 40000, "PA", 9001, 1002, b"bye")))
        self.assertTrue(send(t, tcp(B, A, 23, 40000, "FA", 9004, 1002)))
        self.assertEqual(s.sis, "SIS_CLOSING")
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "A", 1002, 9005)))
        c.advance(4)
        self.assertFalse(s.dead)
        c.advance(2)                                  # finwait 5 s
        self.assertTrue(s.dead)
        self.assertEqual(t.sent, [])                # closed: no resets

    def test_reopen_after_close(self):
        c, t = table(testcase=self)
        s = handshake(t)
        send(t, tcp(A, B, 40000, 23, "R", 1001))
        self.assertEqual(s.sis, "SIS_CLOSING")
        # a new SYN on the same ports: the old session goes, the retransmit opens
        self.assertFalse(send(t, tcp(A, B, 40000, 23, "S", seq=77777)))
        self.assertTrue(s.dead)
        self.assertIsNotNone(t.create(tcp(A, B, 40000, 23, "S", seq=77777), "in", "out", "R",
                                      None, None))


class WindowTests(unittest.TestCase):

    def test_out_of_window_data_dropped(self):
        c, t = table(testcase=self)
        handshake(t)
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "PA", 1001, 9001, b"a" * 100)))
        # far beyond what the server allowed
        self.assertFalse(send(t, tcp(A, B, 40000, 23, "PA", 1001 + 10_000_000, 9001, b"x")))
        # acknowledging data the server never sent
        self.assertFalse(send(t, tcp(A, B, 40000, 23, "A", 1101, 9001 + 5000)))
        # far below the window (old data)
        self.assertFalse(send(t, tcp(A, B, 40000, 23, "PA", 1001 - 200_000, 9001, b"x")))
        # a retransmission inside the window is fine
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "PA", 1001, 9001, b"a" * 100)))
        stats = t.show_statistics()
        self.assertRegex(stats, r"seq-above-window +1")
        self.assertRegex(stats, r"ack-above-window +1")
        self.assertRegex(stats, r"seq-below-window +1")

    def test_forged_rst_outside_window_ignored(self):
        c, t = table(testcase=self)
        s = handshake(t)
        for seq in (9001 + 70_000, 9001 - 70_000, 123456789):
            self.assertFalse(send(t, tcp(B, A, 23, 40000, "R", seq)))
        self.assertEqual(s.sis, "SIS_OPEN")
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "PA", 1001, 9001, b"still here")))
        self.assertRegex(t.show_statistics(), r"rst-out-of-window +3")

    def test_rst_in_window_is_challenged(self):
        """RFC 5961: an in-window RST not at the expected sequence number is
        forwarded unchanged; the session lives on while the receiver may
        answer with a challenge ACK, and closes when it stays silent."""
        c, t = table(testcase=self)
        s = handshake(t)
        p = tcp(B, A, 23, 40000, "R", 9001 + 100)
        self.assertTrue(send(t, p))
        self.assertEqual(p.tcp_seq, 9001 + 100)          # never sharpened
        self.assertEqual(s.sis, "SIS_OPEN")
        c.advance(6)
        self.assertEqual(s.sis, "SIS_CLOSING")           # nobody answered
        c.advance(6)
        self.assertTrue(s.dead)

    def test_rst_challenge_answered_keeps_the_session(self):
        c, t = table(testcase=self)
        s = handshake(t)
        self.assertTrue(send(t, tcp(B, A, 23, 40000, "R", 9001 + 100)))
        # the client's challenge ACK
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "A", 1001, 9001)))
        c.advance(20)
        self.assertEqual(s.sis, "SIS_OPEN")
        self.assertFalse(s.dead)
        self.assertRegex(t.show_statistics(), r"rst-challenge +1")

    def test_rst_exactly_at_next_seq(self):
        c, t = table(testcase=self)
        s = handshake(t)
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "RA", 1001, 9001)))
        self.assertEqual(s.sis, "SIS_CLOSING")

    def test_refused_connection(self):
        c, t = table(testcase=self)
        s = t.create(tcp(A, B, 1234, 81, "S", seq=100), "in", "out", "R", None, None)
        # RST without the right ack (blind) is ignored
        self.assertFalse(send(t, tcp(B, A, 81, 1234, "RA", 0, 999)))
        self.assertTrue(send(t, tcp(B, A, 81, 1234, "RA", 0, 101)))
        self.assertEqual(s.sis, "SIS_CLOSING")
        self.assertEqual(t.half_open_count, 0)

    def test_window_scaling(self):
        c, t = table(testcase=self)
        handshake(t, ws=7)
        # the server advertises 1000 << 7 = 128000 bytes
        self.assertTrue(send(t, tcp(B, A, 23, 40000, "A", 9001, 1001, win=1000)))
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "PA", 1001 + 100_000, 9001, b"x" * 1000)))
        # without scaling the same would be out of window
        c2, t2 = table(testcase=self)
        handshake(t2)
        send(t2, tcp(B, A, 23, 40000, "A", 9001, 1001, win=1000))
        self.assertFalse(send(t2, tcp(A, B, 40000, 23, "PA", 1001 + 100_000, 9001, b"x")))

    def test_gso_super_frame(self):
        c, t = table(testcase=self)
        s = handshake(t, ws=7)
        big = b"G" * 60000
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "PA", 1001, 9001, big)))
        self.assertTrue(send(t, tcp(B, A, 23, 40000, "A", 9001, 61001, win=2000)))
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "PA", 61001, 9001, big)))
        self.assertEqual(s.bytes[0], 120000)
        # a retransmission of the first super-frame is counted once
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "PA", 1001, 9001, big)))
        self.assertEqual(s.bytes[0], 120000)


class FlagTests(unittest.TestCase):

    def test_invalid_flag_combinations_dropped(self):
        c, t = table(testcase=self)
        s = handshake(t)
        for flags in ("", "SF", "SR", "F", "FR", "SFRPAU", "U", "P"):
            self.assertFalse(send(t, tcp(A, B, 40000, 23, flags, 1001, 9001)), flags)
        self.assertEqual(s.sis, "SIS_OPEN")
        self.assertRegex(t.show_statistics(), r"invalid-flags +8")
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "PA", 1001, 9001, b"ok")))
        self.assertTrue(send(t, tcp(A, B, 40000, 23, "AE", 1003, 9001)))   # ECE is fine


class TimerTests(unittest.TestCase):

    def test_synwait_resets_both_ends(self):
        c, t = table(testcase=self)
        s = t.create(tcp(A, B, 1234, 80, "S", seq=100), "in", "out", "R", None, None)
        c.advance(20)
        send(t, tcp(A, B, 1234, 80, "S", seq=100))    # retransmission: synwait still runs
        c.advance(11)
        self.assertTrue(s.dead)
        rsts = [IP(bytes(p)) for p in t.sent]
        to_server = [r for r in rsts if r.dst == B][0]
        self.assertEqual((to_server[TCP].seq, str(to_server[TCP].flags)), (101, "R"))
        to_client = [r for r in rsts if r.dst == A][0]
        self.assertEqual((to_client[TCP].ack, str(to_client[TCP].flags)), (101, "RA"))

    def test_configured_synwait(self):
        c, t = table(model(tcp_synwait_time=5), testcase=self)
        s = t.create(tcp(A, B, 1234, 80, "S", seq=100), "in", "out", "R", None, None)
        c.advance(4)
        self.assertFalse(s.dead)
        c.advance(2)
        self.assertTrue(s.dead)

    def test_synwait_counts_from_a_fractional_creation_time(self):
        # created at 0.6 with synwait 5: due at 5.6, so alive at the 5.5
        # tick and gone (reset) at the 6.5 one
        c, t = table(model(tcp_synwait_time=5), testcase=self)
        c.advance(0.5)
        t.create(tcp(A, B, 1, 80, "S", seq=7), "in", "out", "R", None, None)   # the timer ticks at .5
        c.advance(0.1)
        s = t.create(tcp(A, B, 1234, 80, "S", seq=100), "in", "out", "R", None, None)
        c.advance(4.9)
        self.assertFalse(s.dead)
        c.advance(1)
        self.assertTrue(s.dead)
        self.assertEqual(t.stats.deleted.get("synwait"), 2)

    def test_synwait_is_scaled_as_the_table_fills(self):
        # adaptive timeouts: above 60% of cbac session-limit a new session's
        # synwait is scaled by (120% - n) / (120% - 60%)
        m = model()
        m.session_limit = 10
        c, t = table(m, testcase=self)
        ss = [t.create(tcp(A, B, 1000 + i, 80, "S", seq=100), "in", "out", "R", None, None)
              for i in range(10)]
        c.advance(16)                    # the 10th (n = 9 before it): 15 s
        self.assertEqual([s.dead for s in ss], [False] * 9 + [True])
        c.advance(5)                     # the 9th: 20 s
        self.assertEqual([s.dead for s in ss], [False] * 8 + [True] * 2)
        c.advance(5)                     # the 8th: 25 s
        self.assertEqual([s.dead for s in ss], [False] * 7 + [True] * 3)
        c.advance(5)                     # the others: synwait 30 s
        self.assertTrue(all(s.dead for s in ss))

    def test_idle_timeout_and_activity(self):
        c, t = table(model(tcp_idle_time=100), testcase=self)
        s = handshake(t)
        for i in range(5):
            c.advance(60)
            self.assertTrue(send(t, tcp(A, B, 40000, 23, "A", 1001, 9001)))
        c.advance(99)
        self.assertFalse(s.dead)
        c.advance(2)
        self.assertTrue(s.dead)
        self.assertEqual(len(t.sent), 2)            # idle: both ends reset

    def test_rule_timeout(self):
        c, t = table(model(InspectProtocol("tcp", timeout=20)), testcase=self)
        s = handshake(t)
        c.advance(21)
        self.assertTrue(s.dead)

    def test_many_sessions_expire(self):
        c, t = table(model(tcp_max_incomplete_host=1000), testcase=self)
        for i in range(300):
            t.create(tcp(A, B, 1024 + i, 80, "S", seq=i), "in", "out", "R", None, None)
        self.assertEqual(len(t.sessions), 300)
        c.pump([1] * 29)
        self.assertEqual(len(t.sessions), 300)
        c.pump([1] * 2)
        self.assertEqual(len(t.sessions), 0)
        self.assertEqual(t.tcp, {})


    def test_expiry_work_is_spread_over_timer_runs(self):
        c, t = table(model(tcp_max_incomplete_host=1000), testcase=self)
        t.EXPIRE_BUDGET = 100
        for i in range(250):
            t.create(tcp(A, B, 1024 + i, 80, "S", seq=i), "in", "out", "R", None, None)
        c.advance(31)
        self.assertEqual(len(t.sessions), 150)
        self.assertEqual(len(t.sent), 200)
        c.advance(t.BACKLOG_TICK)
        self.assertEqual(len(t.sessions), 50)
        c.advance(t.BACKLOG_TICK)
        self.assertEqual(len(t.sessions), 0)


class AlertTests(unittest.TestCase):

    def test_no_fw_messages_for_plain_tcp(self):
        logs = capture_logs(self)
        c, t = table(testcase=self)
        handshake(t)
        self.assertEqual([x for x in logs if x.startswith("%FW")], [])
