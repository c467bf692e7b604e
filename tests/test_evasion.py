"""Inspection that cannot be evaded (issue 14), through the whole appliance.

Every test runs the appliance on memory ports between simulated Linux end
hosts (tests/hosts.py: checksums checked, RFC 5961, urgent byte dropped
unless SO_OOBINLINE, fragments reassembled) and asserts on what the server
executes.  Each family runs with and without NAT.
"""

from __future__ import annotations

from scapy.all import IP, TCP, UDP, Ether
from twisted.trial import unittest

from tests.hosts import (CLIENT_IP, INSIDE, INSIDE_CLIENT_IP, OUTSIDE, SERVER_IP, Net,
                         Recorder, smtp_server)
from tests.test_sessions import capture_logs


class SmtpCase:
    """An outside SMTP client (the attacker) and the inside mail server."""

    nat = True
    extra = ""
    oobinline = False

    def setUp(self):
        self.logs = capture_logs(self)
        self.net = Net(nat=self.nat, extra=self.extra)
        self.addCleanup(self.net.stop)
        self.log = []
        self.srv = self.net.host(INSIDE, SERVER_IP, 25, oobinline=self.oobinline)
        self.srv.listen(25, smtp_server(self.log))
        self.cli = self.net.host(OUTSIDE, CLIENT_IP, 1)
        self.c = self.cli.connect(self.net.server_addr, 25)
        self.net.pump()
        self.assertEqual(self.c.state, "ESTABLISHED")
        self.assertEqual(bytes(self.c.data), b"220 mx.example.com ESMTP\r\n")
        self.say(b"HELO attacker\r\n")

    def say(self, data):
        self.c.send(data)
        self.net.pump()

    @property
    def executed(self):
        return [x[1] for x in self.log if x[0] == "CMD"]

    @property
    def sconn(self):
        [c] = self.srv.conns.values()
        return c

    def assert_not_executed(self, verb=b"WIZ"):
        """Send the forbidden verb; the server must never execute it."""
        self.say(verb + b"\r\n")
        self.c.retransmit()
        self.net.pump()
        self.assertNotIn(verb.decode(), self.executed)

    def stats(self):
        return self.net.show("statistics")


class NoNat:
    nat = False


# ---------------------------------------------------------------------------
# 1. Verify before you believe; 2. RST per RFC 5961

class TeardownTests(SmtpCase):

    def test_damaged_rst_changes_nothing(self):
        """An exact RST with a bad checksum: the server discards it, so must
        cbac; the session (and its inspection) go on."""
        self.c.raw(flags="R", bad_checksum=True)
        self.net.pump()
        self.assertFalse(self.sconn.reset)
        self.net.advance(10)
        self.assertIn("smtp", self.net.show("sessions"))
        self.assert_not_executed()
        self.assertRegex(self.stats(), r"bad-checksum +1")
        self.assertIn("bad-l4-checksum", self.net.app.show_interfaces())

    def test_rst_a_few_bytes_below_is_not_a_teardown(self):
        self.c.raw(flags="R", off=-3)
        self.net.pump()
        self.assertFalse(self.sconn.reset)        # below RCV.NXT: Linux ignores it
        self.net.advance(10)
        self.assert_not_executed()

    def test_rst_a_few_bytes_above_is_forwarded_unchanged(self):
        """cbac used to move such an RST to the exact sequence number: the
        server then accepted a blind RST."""
        self.c.raw(flags="R", off=+3)
        self.net.pump()
        self.assertFalse(self.sconn.reset)
        self.assertEqual(self.sconn.challenge_acks, 1)
        rsts = [s for s in self.sconn.received_segments if s[2] & 4]
        self.assertEqual(rsts[0][0], self.sconn.rcv_nxt + 3)
        self.net.advance(10)
        self.assert_not_executed()

    def test_rst_from_server_side_a_few_bytes_off(self):
        self.sconn.raw(flags="R", off=+5)
        self.net.pump()
        self.assertFalse(self.c.reset)
        self.assertEqual(self.c.challenge_acks, 1)
        self.net.advance(10)
        self.assert_not_executed()

    def test_damaged_data_segment_is_dropped_before_the_inspector(self):
        self.c.raw(b"NOOP\r\n", bad_checksum=True)
        self.net.pump()
        self.assertEqual(self.executed, ["HELO"])
        self.assertRegex(self.stats(), r"bad-checksum +1")
        self.say(b"NOOP\r\n")
        self.assertEqual(self.executed, ["HELO", "NOOP"])

    def test_damaged_fin_does_not_close(self):
        """A damaged FIN the server discards, then the server's own FIN: to
        a firewall that believed the first, both sides have closed, and
        the server still reads what the client sends."""
        self.c.raw(flags="FA", bad_checksum=True)
        self.net.pump()
        self.assertFalse(self.sconn.fin)
        self.sconn.close()
        self.net.pump()
        self.net.advance(10)
        self.assertIn("smtp", self.net.show("sessions"))
        self.assert_not_executed()

    def test_damaged_syn_creates_no_session(self):
        c3 = self.cli.connect(self.net.server_addr, 25, sport=40002)
        self.net.queue.clear()                 # the good SYN never leaves
        c3.segment("S", seq=c3.iss, ack=0, bad_checksum=True)
        self.net.pump()
        self.assertEqual(self.net.show("sessions").count("smtp"), 1)
        self.assertRegex(self.stats(), r"bad-checksum +1")

    def test_exact_rst_still_closes(self):
        """Control: an RST the server accepts closes the session."""
        self.c.raw(flags="R")
        self.net.pump()
        self.assertTrue(self.sconn.reset)
        self.net.advance(10)
        self.assertEqual(self.net.show("sessions"), "")

    def test_in_window_syn_is_not_a_teardown(self):
        """Control: an in-window SYN is dropped, nothing else."""
        self.c.raw(flags="S", off=+10)
        self.net.pump()
        self.net.advance(10)
        self.assertIn("smtp", self.net.show("sessions"))
        self.assert_not_executed()


class TeardownNoNatTests(NoNat, TeardownTests, unittest.TestCase):
    pass


class TeardownNatTests(TeardownTests, unittest.TestCase):
    pass


# ---------------------------------------------------------------------------
# 3. No session, no pass

class NoSessionTests(SmtpCase):

    def lose_session(self):
        [s] = list(self.net.app.sessions.sessions.values())
        self.net.app.sessions.delete(s, "test")

    def test_segments_without_session_are_dropped_and_logged(self):
        self.lose_session()
        self.assert_not_executed()
        self.assertIn("tcp-no-session", self.stats())
        drops = [x for x in self.logs if "%FW-6-DROP_PKT" in x]
        self.assertTrue(drops)
        self.assertIn("no session", drops[0])

    def test_drop_log_is_rate_limited(self):
        self.lose_session()
        for _ in range(20):
            self.c.raw(b"NOOP\r\n")
        self.net.pump()
        self.assertEqual(len([x for x in self.logs if "%FW-6-DROP_PKT" in x]), 1)
        self.assertRegex(self.stats(), r"tcp-no-session +20")


class NoSessionNoNatTests(NoNat, NoSessionTests, unittest.TestCase):
    pass


class NoSessionNatTests(NoSessionTests, unittest.TestCase):
    pass


class IosModeTests(SmtpCase, unittest.TestCase):
    """``cbac inspect tcp no-session forward``: the IOS behaviour, which the
    evasion exploits (documented in docs/inspection.md)."""

    nat = False
    extra = "cbac inspect tcp no-session forward"

    def test_ios_mode_forwards_without_session(self):
        self.assertEqual(self.net.app.model.inspect.tcp_no_session, "forward")
        self.assertIn("cbac inspect tcp no-session forward",
                      self.net.app.show_running_config())
        [s] = list(self.net.app.sessions.sessions.values())
        self.net.app.sessions.delete(s, "test")
        self.say(b"WIZ\r\n")
        self.assertIn("WIZ", self.executed)


# ---------------------------------------------------------------------------
# 4. Urgent data

class UrgentTests(SmtpCase):

    def test_urgent_byte_cannot_end_the_body(self):
        """``.X`` with URG on X: a Linux server without SO_OOBINLINE drops
        X and sees the end of the body; the verb after it would run."""
        self.say(b"MAIL FROM:<a@b>\r\n")
        self.say(b"RCPT TO:<c@d>\r\n")
        self.say(b"DATA\r\n")
        body = b"hello\r\n.X\r\nWIZ\r\n"
        i = body.index(b"X")
        self.c.send_urgent = None
        self.c.unacked.append((self.c.snd_nxt, body, "PAU"))
        self.c.segment("PAU", data=body, urg=i + 1)
        self.c.snd_nxt += len(body)
        self.net.pump()
        self.say(b".\r\n")
        self.assertNotIn("WIZ", self.executed)
        self.assertIn(("BODY", b"hello\r\n.X\r\nWIZ\r\n"), self.log)
        self.assertFalse([s for s in self.sconn.received_segments if s[2] & 0x20])
        self.assertRegex(self.stats(), r"urg-cleared +1")


class UrgentNatTests(UrgentTests, unittest.TestCase):
    pass


class UrgentNoNatTests(NoNat, UrgentTests, unittest.TestCase):
    pass


class UrgentOobInlineTests(UrgentTests, unittest.TestCase):
    oobinline = True
