"""DoS thresholds: max-incomplete, one-minute rate (aggressive mode), per-host
half-open limit and blocking (cbac.inspect.session)."""

from __future__ import annotations

from scapy.all import IP, TCP, UDP
from twisted.trial import unittest

from tests.test_sessions import A, B, P, capture_logs, fast_syn, model, send, table, tcp


def fw(logs):
    return [x for x in logs if x.startswith("%FW-")]


class AggressiveModeTests(unittest.TestCase):

    def test_max_incomplete_on_cut_back_off(self):
        logs = capture_logs(self)
        c, t = table(model(max_incomplete_high=10, max_incomplete_low=5), testcase=self)
        ss = [t.create(fast_syn(A, B, 1000 + i, 80, seq=100 * i), "in", "out", "R", None, None)
              for i in range(10)]
        self.assertEqual(fw(logs), [])
        self.assertFalse(t.aggressive)
        s11 = t.create(fast_syn(A, B, 2000, 80), "in", "out", "R", None, None)
        self.assertIsNotNone(s11)
        self.assertTrue(t.aggressive)
        self.assertEqual(fw(logs), ["%FW-4-ALERT_ON: getting aggressive, count (11/10) "
                                    "current 1-min rate: 11"])
        # cut back to the low mark, oldest first, both ends reset
        self.assertEqual(t.half_open_count, 5)
        self.assertEqual([s.dead for s in ss], [True] * 6 + [False] * 4)
        self.assertEqual(len(t.sent), 12)
        rst = IP(bytes(t.sent[0]))
        self.assertEqual((rst.dst, rst[TCP].seq, str(rst[TCP].flags)), (B, 1, "R"))
        rst = IP(bytes(t.sent[1]))
        self.assertEqual((rst.dst, rst[TCP].ack, str(rst[TCP].flags)), (A, 1, "RA"))
        # each new one replaces the oldest half-open one
        t.create(fast_syn(A, B, 2001, 80), "in", "out", "R", None, None)
        self.assertTrue(ss[6].dead)
        self.assertEqual(t.half_open_count, 5)
        # one completes: below the low mark -> calming down on the next tick
        send(t, tcp(B, A, 80, 2000, "SA", seq=5, ack=1001))
        send(t, tcp(A, B, 2000, 80, "A", seq=1001, ack=6))
        self.assertEqual(t.half_open_count, 4)
        c.advance(1)
        self.assertFalse(t.aggressive)
        self.assertEqual(fw(logs)[-1], "%FW-4-ALERT_OFF: calming down, count (4/5) "
                                       "current 1-min rate: 12")
        self.assertIn("Aggressive mode is off (entered 1 time)", t.show_statistics())

    def test_one_minute_rate(self):
        logs = capture_logs(self)
        c, t = table(model(one_minute_high=20, one_minute_low=10), testcase=self)
        for i in range(20):
            s = t.create(P(IP(src=A, dst=B) / UDP(sport=3000 + i, dport=7)), "in", "out", "R",
                         None, None)
            send(t, P(IP(src=B, dst=A) / UDP(sport=7, dport=3000 + i)))
            c.advance(1)
        self.assertFalse(t.aggressive)
        t.create(P(IP(src=A, dst=B) / UDP(sport=4000, dport=7)), "in", "out", "R", None, None)
        self.assertTrue(t.aggressive)
        self.assertEqual(fw(logs), ["%FW-4-ALERT_ON: getting aggressive, count (1/500) "
                                    "current 1-min rate: 21"])
        # the rate is a sliding minute: it falls as the early seconds leave it
        c.pump([1] * 45)
        self.assertTrue(t.aggressive)                 # rate still >= 10
        c.pump([1] * 20)
        self.assertFalse(t.aggressive)
        self.assertRegex(fw(logs)[-1], r"^%FW-4-ALERT_OFF: calming down, count \(0/400\) "
                                       r"current 1-min rate: \d$")

    def test_completed_handshakes_by_rate_stay_open(self):
        # the engine benchmark's case: each connection completes before the
        # next SYN, the one-minute rate alone turns aggressive mode on (the
        # clock stands still) and nothing is half-open to cut back: every
        # session stays, opens and gets its idle timer
        logs = capture_logs(self)
        c, t = table(model(one_minute_high=10, one_minute_low=5), testcase=self)
        ss = []
        for i in range(30):
            s = t.create(tcp(A, B, 1000 + i, 80, "S", seq=1), "in", "out", "R", None, None)
            self.assertIsNotNone(s)
            self.assertEqual((t.half_open_count, t.host_half_open(s.host)), (1, 1))
            self.assertTrue(send(t, tcp(B, A, 80, 1000 + i, "SA", seq=1, ack=2)))
            self.assertTrue(send(t, tcp(A, B, 1000 + i, 80, "A", seq=2, ack=2)))
            self.assertEqual((s.sis, t.half_open_count, t.host_half_open(s.host)),
                             ("SIS_OPEN", 0, 0))
            ss.append(s)
        self.assertTrue(t.aggressive)
        self.assertEqual(t.one_minute_rate(), 30)
        self.assertEqual(fw(logs), ["%FW-4-ALERT_ON: getting aggressive, count (1/500) "
                                    "current 1-min rate: 11"])
        self.assertEqual(t.sent, [])
        self.assertFalse(any(s.dead for s in ss))
        self.assertIn("Aggressive mode is on (entered 1 time)", t.show_statistics())
        # synwait (30 s) passes: established sessions stay; the rate falls
        # out of its minute and aggressive mode ends on a tick
        c.pump([1] * 61)
        self.assertFalse(t.aggressive)
        self.assertEqual(fw(logs)[-1], "%FW-4-ALERT_OFF: calming down, count (0/400) "
                                       "current 1-min rate: 0")
        self.assertEqual(len(t.sessions), 30)
        self.assertEqual(t.sent, [])

    def test_alert_off_silences(self):
        logs = capture_logs(self)
        c, t = table(model(max_incomplete_high=2, max_incomplete_low=1, alert_off=True),
                     testcase=self)
        for i in range(3):
            t.create(fast_syn(A, B, 1000 + i, 80), "in", "out", "R", None, None)
        self.assertTrue(t.aggressive)
        self.assertEqual(fw(logs), [])


class PerHostTests(unittest.TestCase):

    def test_block_time_zero_deletes_oldest(self):
        logs = capture_logs(self)
        c, t = table(model(tcp_max_incomplete_host=3), testcase=self)
        ss = [t.create(fast_syn(A, B, 1000 + i, 80, seq=10 * i), "in", "out", "R", None, None)
              for i in range(3)]
        other = t.create(fast_syn(A, "20.0.0.2", 1000, 80), "in", "out", "R", None, None)
        self.assertEqual(fw(logs), [])
        s4 = t.create(fast_syn(A, B, 1003, 80), "in", "out", "R", None, None)
        self.assertIsNotNone(s4)
        self.assertEqual([s.dead for s in ss], [True, False, False])
        self.assertFalse(other.dead)
        self.assertEqual(fw(logs), ["%FW-4-HOST_TCP_ALERT_ON: Max tcp half-open connections "
                                    "(3) exceeded for host 20.0.0.1."])
        rsts = [IP(bytes(p)) for p in t.sent]
        self.assertEqual(sorted((r.dst, r.sport, r.dport) for r in rsts),
                         [(A, 80, 1000), (B, 1000, 80)])
        t.create(fast_syn(A, B, 1004, 80), "in", "out", "R", None, None)
        self.assertTrue(ss[1].dead)
        self.assertEqual(len(fw(logs)), 1)            # one alert per episode

    def test_block_time_blocks_then_unblocks(self):
        logs = capture_logs(self)
        c, t = table(model(tcp_max_incomplete_host=3, tcp_block_time=2), testcase=self)
        ss = [t.create(fast_syn(A, B, 1000 + i, 80), "in", "out", "R", None, None)
              for i in range(3)]
        self.assertIsNone(t.create(fast_syn(A, B, 1003, 80), "in", "out", "R", None, None))
        self.assertTrue(all(s.dead for s in ss))
        self.assertEqual(len(t.sent), 6)
        self.assertEqual(fw(logs), [
            "%FW-4-HOST_TCP_ALERT_ON: Max tcp half-open connections (3) exceeded for host "
            "20.0.0.1.",
            "%FW-2-BLOCK_HOST: Blocking new TCP connections to host 20.0.0.1 for 2 minutes "
            "(half-open count 3 exceeded)."])
        c.advance(60)
        self.assertIsNone(t.create(fast_syn(A, B, 1004, 80), "in", "out", "R", None, None))
        self.assertIsNotNone(t.create(fast_syn(A, "20.0.0.2", 1004, 80), "in", "out", "R",
                                      None, None))
        # UDP to the host is not blocked
        self.assertIsNotNone(t.create(P(IP(src=A, dst=B) / UDP(sport=1, dport=2)), "in",
                                      "out", "R", None, None))
        self.assertIn("Host 20.0.0.1 blocked for 60 more seconds", t.show_statistics())
        c.pump([1] * 61)
        self.assertEqual(fw(logs)[-1], "%FW-4-UNBLOCK_HOST: New TCP connections to host "
                                       "20.0.0.1 no longer blocked")
        self.assertNotIn("%FW-4-ALERT_ON", "".join(logs))
        self.assertIsNotNone(t.create(fast_syn(A, B, 1005, 80), "in", "out", "R", None, None))

    def test_refused_attempts_count_in_the_rate(self):
        logs = capture_logs(self)
        c, t = table(model(tcp_max_incomplete_host=3, tcp_block_time=1, one_minute_high=10,
                           one_minute_low=5), testcase=self)
        for i in range(11):
            t.create(fast_syn(A, B, 1000 + i, 80), "in", "out", "R", None, None)
        self.assertEqual(len(t.sessions), 0)
        self.assertTrue(t.aggressive)
        self.assertEqual(fw(logs)[-1], "%FW-4-ALERT_ON: getting aggressive, count (0/500) "
                                       "current 1-min rate: 11")

    def test_block_time_one_minute_singular(self):
        logs = capture_logs(self)
        c, t = table(model(tcp_max_incomplete_host=1, tcp_block_time=1), testcase=self)
        t.create(fast_syn(A, B, 1000, 80), "in", "out", "R", None, None)
        t.create(fast_syn(A, B, 1001, 80), "in", "out", "R", None, None)
        self.assertIn("%FW-2-BLOCK_HOST: Blocking new TCP connections to host 20.0.0.1 for 1 "
                      "minute (half-open count 1 exceeded).", logs)

    def test_established_do_not_count(self):
        c, t = table(model(tcp_max_incomplete_host=2), testcase=self)
        for i in range(5):
            s = t.create(tcp(A, B, 1000 + i, 80, "S", seq=1), "in", "out", "R", None, None)
            send(t, tcp(B, A, 80, 1000 + i, "SA", seq=1, ack=2))
            send(t, tcp(A, B, 1000 + i, 80, "A", seq=2, ack=2))
            self.assertEqual(s.sis, "SIS_OPEN")
        self.assertEqual(t.sent, [])
        self.assertEqual(len(t.sessions), 5)
