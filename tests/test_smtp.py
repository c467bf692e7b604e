"""Tests of the SMTP/ESMTP inspector (cbac.inspect.smtp), driven directly.

A small harness plays the stream engine: it applies each Verdict
(release, edits) to build what the server receives and what the client
receives, and after each call pokes the other direction with
``data_received(other, b"")`` (how an unblocking reply releases held
client bytes).  Every conversation of tests/smtp_corpus.py is played whole,
one byte at a time, and in random segmentations (hypothesis): the bytes
each side receives, the alerts and the final verdict must be the same.
"""

from __future__ import annotations

import re
import time

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from cbac.config.model import InspectProtocol, SmtpOptions
from cbac.inspect import smtp
from cbac.inspect.api import (CLIENT, SERVER, IInspectorFactory,
                              IStreamInspector, InspectContext)
from cbac.log.ios import format_message
from tests.smtp_corpus import BODY, BY_NAME, CORPUS

CLIENT_ADDR = (192 << 24) | (168 << 16) | (12 << 8) | 3     # 192.168.12.3
SERVER_ADDR = (10 << 24) | (10 << 16) | (10 << 8) | 25      # 10.10.10.25


def make(proto="esmtp", max_data=None, starttls="allow", bare_lf="reject", debug=False):
    ctx = InspectContext(client_addr=CLIENT_ADDR, client_port=52419,
                         server_addr=SERVER_ADDR, server_port=25,
                         rule=InspectProtocol(proto, max_data=max_data),
                         options=SmtpOptions(starttls=starttls, bare_lf=bare_lf),
                         debug=debug)
    return smtp.FACTORIES[proto](ctx)


class Wire:
    """Applies verdicts the way the stream engine does."""

    def __init__(self, insp):
        self.insp = insp
        self.fed = [bytearray(), bytearray()]
        self.work = [bytearray(), bytearray()]
        self.rel = [0, 0]
        self.logs = []
        self.debug = []
        self.reset = False
        self.opaque = False
        self.verdicts = 0

    def received_by(self, side):
        """Bytes that reached ``side`` ("server" or "client")."""
        d = CLIENT if side == "server" else SERVER
        return bytes(self.work[d][:self.rel[d]])

    def feed(self, d, data):
        if self.reset:
            return              # the engine has deleted the session
        self.fed[d] += data
        self.work[d] += data
        if self.opaque:
            self.rel[d] = len(self.fed[d])
            return
        self.apply(d, self.insp.data_received(d, data))
        if not (self.reset or self.opaque):
            self.apply(1 - d, self.insp.data_received(1 - d, b""))

    def apply(self, d, v):
        self.verdicts += 1
        for e in v.edits:
            assert e.offset >= self.rel[d], (e, self.rel[d])
            assert len(e.data) == e.length
            assert e.offset + e.length <= len(self.fed[d])
            self.work[d][e.offset:e.offset + e.length] = e.data
        rel = len(self.fed[d]) if v.release is None else v.release
        assert self.rel[d] <= rel <= len(self.fed[d]), (self.rel[d], rel, len(self.fed[d]))
        self.rel[d] = rel
        self.logs.extend(v.log)
        self.debug.extend(v.debug)
        if v.reset:
            self.reset = True
        if v.opaque:
            self.opaque = True
            other = 1 - d
            assert self.rel[other] == len(self.fed[other]), "bytes held at opaque"

    def mnemonics(self):
        return [m[2] for m in self.logs]


def play(conv, chunks):
    insp = make(conv.proto, conv.max_data, conv.starttls, conv.bare_lf)
    w = Wire(insp)
    for d, data in chunks:
        w.feed(d, data)
    return w


def expected(conv):
    to_server = b"".join(out for d, _, out in conv.events if d == CLIENT)
    to_client = b"".join(out for d, _, out in conv.events if d == SERVER)
    return to_server, to_client


def whole(conv):
    return [(d, data) for d, data, _ in conv.events]


def bytewise(conv):
    return [(d, data[i:i + 1]) for d, data, _ in conv.events for i in range(len(data))]


class CorpusMixin:
    def check(self, conv, chunks):
        w = play(conv, chunks)
        to_server, to_client = expected(conv)
        self.assertEqual(w.received_by("server"), to_server, conv.name)
        self.assertEqual(w.received_by("client"), to_client, conv.name)
        self.assertEqual(w.mnemonics(), conv.logs, conv.name)
        self.assertEqual(w.reset, conv.reset, conv.name)
        self.assertEqual(w.opaque, conv.opaque, conv.name)
        if not conv.reset:
            # nothing left held at the end of a finished conversation
            self.assertEqual(w.rel, [len(w.fed[0]), len(w.fed[1])], conv.name)
        return w


class CorpusTests(CorpusMixin, SynchronousTestCase):

    def test_whole_events(self):
        for conv in CORPUS:
            self.check(conv, whole(conv))

    def test_one_byte_at_a_time(self):
        """Telnet-style input: one byte per segment, in both directions."""
        for conv in CORPUS:
            self.check(conv, bytewise(conv))

    def test_all_pipelined(self):
        """Every run of client events sent in one segment."""
        for conv in CORPUS:
            chunks = []
            for d, data in whole(conv):
                if chunks and chunks[-1][0] == d:
                    chunks[-1] = (d, chunks[-1][1] + data)
                else:
                    chunks.append((d, data))
            self.check(conv, chunks)

    @settings(max_examples=250, deadline=None)
    @given(st.data())
    def test_random_segmentation(self, data):
        conv = data.draw(st.sampled_from(CORPUS), label="conversation")
        groups = []
        for d, blob in whole(conv):
            if groups and groups[-1][0] == d and data.draw(st.booleans(), label="merge"):
                groups[-1] = (d, groups[-1][1] + blob)
            else:
                groups.append((d, blob))
        chunks = []
        for d, blob in groups:
            if len(blob) > 1:
                cuts = data.draw(st.lists(st.integers(1, len(blob) - 1), max_size=10,
                                          unique=True), label="cuts")
            else:
                cuts = []
            prev = 0
            for c in sorted(cuts) + [len(blob)]:
                chunks.append((d, blob[prev:c]))
                prev = c
        self.check(conv, chunks)

    def test_legal_conversations_have_no_edits(self):
        """A legal conversation passes byte-identical: no edit at all."""
        for name in ("plain_smtp", "esmtp_postfix_pipelining_dsn", "body_pipelined_before_354",
                     "empty_message_and_dot_lines", "reply_to_in_body_is_fine",
                     "max_data_exact_fit"):
            conv = BY_NAME[name]
            insp = make(conv.proto, conv.max_data)
            for d, data, _ in conv.events:
                for v, vd in ((insp.data_received(d, data), d),
                              (insp.data_received(1 - d, b""), 1 - d)):
                    if conv.proto == "smtp" or vd == CLIENT:
                        self.assertEqual(v.edits, [], name)
                    self.assertEqual(v.log, [], name)


class LogTextTests(SynchronousTestCase):

    def texts(self, conv_name):
        conv = BY_NAME[conv_name]
        w = play(conv, whole(conv))
        return [format_message(*m) for m in w.logs]

    def test_invalid_command(self):
        self.assertEqual(
            self.texts("bdat_without_chunking"),
            ["%FW-3-SMTP_INVALID_COMMAND: Invalid SMTP command from initiator (192.168.12.3:52419)"] * 2)

    def test_sendmail_signatures(self):
        self.assertEqual(self.texts("sendmail_signatures"), [
            "%FW-4-TCP_SENDMAIL_BAD_FROM_SIG: Sendmail Invalid Sender - from 192.168.12.3 to 10.10.10.25",
            "%FW-4-TCP_SENDMAIL_BAD_TO_SIG: Sendmail Invalid Recipient - from 192.168.12.3 to 10.10.10.25",
            "%FW-4-TCP_SENDMAIL_DECODE: Sendmail Decode Alias - from 192.168.12.3 to 10.10.10.25",
            "%FW-4-TCP_SENDMAIL_DECODE: Sendmail Decode Alias - from 192.168.12.3 to 10.10.10.25",
        ])
        self.assertIn("%FW-4-TCP_SENDMAIL_OLD_SIG: Archaic Sendmail Attacks - from 192.168.12.3 to "
                      "10.10.10.25", self.texts("illegal_commands"))
        self.assertEqual(self.texts("majordomo"), [
            "%FW-4-TCP_MAJORDOMO_EXEC_BUG: Majordomo Execute Attack - from 192.168.12.3 to 10.10.10.25"])

    def test_max_data_and_size(self):
        self.assertEqual(self.texts("max_data_overflow"), [
            "%FW-4-SMTP_MAX_DATA: max-data 46 bytes exceeded by initiator (192.168.12.3:52419)"
            " -- session reset"])
        self.assertEqual(self.texts("size_over_max_data")[0],
                         "%FW-4-SMTP_MAX_DATA: Declared SIZE 30000000 exceeds max-data 20000000"
                         " from initiator (192.168.12.3:52419)")

    def test_smuggling_starttls_reply(self):
        self.assertEqual(self.texts("smuggling_0"), [
            "%FW-4-SMTP_BARE_LF: Bare CR or LF next to end of data (SMTP smuggling) from initiator"
            " (192.168.12.3:52419) -- session reset"])
        self.assertEqual(self.texts("starttls_allow"), [
            "%FW-6-SMTP_STARTTLS: STARTTLS from initiator (192.168.12.3:52419) to responder"
            " (10.10.10.25:25), inspection stopped"])
        self.assertEqual(self.texts("starttls_injection"), [
            "%FW-4-SMTP_STARTTLS_INJECTION: Plain-text data pipelined after STARTTLS from"
            " initiator (192.168.12.3:52419) -- session reset"])
        self.assertEqual(self.texts("malformed_replies")[0],
                         "%FW-4-SMTP_INVALID_REPLY: Invalid SMTP reply from responder (10.10.10.25:25)")

    def test_reply_alerts_are_capped(self):
        insp = make()
        w = Wire(insp)
        w.feed(SERVER, b"junk\r\n" * 50)
        self.assertEqual(w.mnemonics(), ["SMTP_INVALID_REPLY"] * smtp.MAX_REPLY_ALERTS)
        self.assertEqual(w.received_by("client"), b"junk\r\n" * 50)


class DebugTests(SynchronousTestCase):

    def test_debug_line_shapes(self):
        insp = make("smtp", debug=True)
        w = Wire(insp)
        w.feed(SERVER, b"220 mail.example.com ESMTP\r\n")
        w.feed(CLIENT, b"HELO cisco.com\r\n")
        w.feed(SERVER, b"250 Hello\r\n")
        w.feed(CLIENT, b"VRFY root\r\n")
        w.feed(SERVER, b"500 no\r\n")
        self.assertEqual(w.debug, [
            "CBAC SMTP: reply_type OTHERS",
            "CBAC SMTP: OTHER REPLY - Reply len: 28, match_len:28, reply_code:220",
            "CBAC SMTP: End Of Reply Line - index:0 ,len:28",
            "CBAC SMTP: VERB - Cmd len:4, match_len:4, verb:HELO",
            "CBAC SMTP: CMD PARAM - Cmd len:14, match_len:10",
            "CBAC SMTP: End Of Command Line - index:1, len:16",
            "CBAC SMTP: reply_type OTHERS",
            "CBAC SMTP: OTHER REPLY - Reply len: 11, match_len:11, reply_code:250",
            "CBAC SMTP: End Of Reply Line - index:1 ,len:11",
            "CBAC SMTP: VERB - Cmd len:4, match_len:4, verb:VRFY",
            "CBAC SMTP: CMD PARAM - Cmd len:9, match_len:5",
            "CBAC SMTP: End Of Command Line - index:2, len:11",
            "CBAC SMTP: INVALID COMMAND - verb:VRFY, masked len:9",
            "CBAC SMTP: reply_type OTHERS",
            "CBAC SMTP: OTHER REPLY - Reply len: 8, match_len:8, reply_code:500",
            "CBAC SMTP: End Of Reply Line - index:2 ,len:8",
        ])

    def test_all_debug_lines_have_the_prefix(self):
        for conv in CORPUS:
            insp = make(conv.proto, conv.max_data, conv.starttls, conv.bare_lf, debug=True)
            w = Wire(insp)
            for d, data in whole(conv):
                w.feed(d, data)
            self.assertTrue(w.debug)
            for line in w.debug:
                self.assertTrue(re.match(r"CBAC SMTP: [A-Za-z_]", line), line)

    def test_no_debug_when_off(self):
        conv = BY_NAME["plain_smtp"]
        self.assertEqual(play(conv, whole(conv)).debug, [])


class BehaviourTests(SynchronousTestCase):

    def test_interfaces(self):
        for name in ("smtp", "esmtp"):
            f = smtp.FACTORIES[name]
            self.assertTrue(IInspectorFactory.providedBy(f))
            self.assertEqual(f.name, name)
            insp = make(name)
            verifyObject(IStreamInspector, insp)
            self.assertEqual(insp.name, name)

    def test_defaults_without_rule_or_options(self):
        insp = smtp.esmtp_factory(InspectContext(CLIENT_ADDR, 1025, SERVER_ADDR, 25))
        self.assertEqual(insp.max_data, 20000000)
        self.assertTrue(insp.starttls_allow)
        self.assertTrue(insp.bare_lf_reject)

    def test_incomplete_command_is_held_not_masked(self):
        """The PIX complaint: one-character telnet segments must not turn into X."""
        insp = make()
        insp.data_received(SERVER, b"220 hi\r\n")
        for i, ch in enumerate(b"HELO x\r"):
            v = insp.data_received(CLIENT, bytes([ch]))
            self.assertEqual((v.release, v.edits), (0, []))
        v = insp.data_received(CLIENT, b"\n")
        self.assertEqual((v.release, v.edits), (8, []))

    def test_body_streams(self):
        """Bulk mail: at most 2 trailing bytes held, and fast."""
        insp = make("esmtp")
        w = Wire(insp)
        w.feed(SERVER, b"220 hi\r\n")
        w.feed(CLIENT, b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        w.feed(SERVER, b"250 a\r\n250 b\r\n250 c\r\n354 go\r\n")
        w.feed(CLIENT, b"Subject: big\r\n\r\n")
        line = b"0123456789abcdef ." * 4 + b"\r\n.." + b"z" * 30 + b"\r\n"
        block = line * (65536 // len(line))
        start = time.process_time()
        for _ in range(160):                  # about 10 MB
            w.feed(CLIENT, block)
            self.assertLessEqual(len(w.fed[CLIENT]) - w.rel[CLIENT], 2)
        elapsed = time.process_time() - start
        w.feed(CLIENT, b".\r\n")
        w.feed(SERVER, b"250 queued\r\n")
        self.assertEqual(w.rel[CLIENT], len(w.fed[CLIENT]))
        self.assertFalse(w.reset)
        self.assertIn("body bytes %d" % (160 * len(block) + 16), insp.state_summary())
        self.assertLess(elapsed, 5.0)

    def test_undecided_dot_is_held(self):
        insp = make("smtp")
        w = Wire(insp)
        w.feed(SERVER, b"220 hi\r\n")
        w.feed(CLIENT, b"DATA\r\n")
        w.feed(SERVER, b"354 go\r\n")
        w.feed(CLIENT, b"hello\r\n.")
        self.assertEqual(w.received_by("server"), b"DATA\r\nhello\r\n")
        w.feed(CLIENT, b"\r")
        self.assertEqual(w.received_by("server"), b"DATA\r\nhello\r\n")
        w.feed(CLIENT, b"\nVRFY x\r\n")
        self.assertEqual(w.received_by("server"), b"DATA\r\nhello\r\n.\r\nxxxxxx\r\n")

    def test_state_summary(self):
        conv = BY_NAME["esmtp_postfix_pipelining_dsn"]
        insp = make("esmtp")
        w = Wire(insp)
        self.assertEqual(insp.state_summary(),
                         "SMTP state: COMMAND, commands 0, replies 0, body bytes 0, masked 0")
        events = whole(conv)
        for d, data in events[:7]:
            w.feed(d, data)
        self.assertEqual(insp.state_summary(),
                         "SMTP state: DATA, commands 5, replies 6, body bytes 0, masked 0")
        for d, data in events[7:]:
            w.feed(d, data)
        self.assertEqual(insp.state_summary(),
                         "SMTP state: COMMAND, commands 11, replies 12, body bytes %d, masked 0"
                         % (len(BODY) + 2))

    def test_state_summary_pending_and_reset(self):
        insp = make("esmtp")
        w = Wire(insp)
        w.feed(SERVER, b"220 hi\r\n")
        w.feed(CLIENT, b"DATA\r\n\r\nbody")
        self.assertIn("SMTP state: DATA PENDING", insp.state_summary())
        self.assertEqual(w.received_by("server"), b"DATA\r\n")
        w.feed(SERVER, b"354 go\r\n")
        self.assertEqual(w.received_by("server"), b"DATA\r\n\r\nbody")
        w.feed(CLIENT, b"\n.\n")
        self.assertTrue(w.reset)
        self.assertIn("SMTP state: RESET", insp.state_summary())

    def test_client_close_judges_partial_line(self):
        insp = make("esmtp")
        insp.data_received(SERVER, b"220 hi\r\n")
        v = insp.data_received(CLIENT, b"QUIT\r\nVRFY root")
        self.assertEqual(v.release, 6)
        v = insp.connection_closed(CLIENT)
        self.assertEqual(v.release, 15)
        self.assertEqual([(e.offset, e.data) for e in v.edits], [(6, b"x" * 9)])

    def test_hold_before_reply_is_bounded(self):
        insp = make("esmtp")
        insp.data_received(SERVER, b"220 hi\r\n")
        v = insp.data_received(CLIENT, b"DATA\r\n" + b"a" * (smtp.MAX_PENDING_HOLD + 1))
        self.assertTrue(v.reset)
        self.assertEqual(v.release, 6)
        self.assertEqual([m[2] for m in v.log], ["SMTP_PENDING_OVERFLOW"])

    def test_after_opaque_everything_passes(self):
        conv = BY_NAME["starttls_allow"]
        insp = make("esmtp")
        for d, data in whole(conv)[:-3]:
            insp.data_received(d, data)
        v = insp.data_received(SERVER, b"220 2.0.0 Ready\r\n")
        self.assertTrue(v.opaque)
        self.assertIsNone(v.release)
        v = insp.data_received(CLIENT, b"\x16\x03\x01VRFY\r\n")
        self.assertTrue(v.opaque)
        self.assertEqual(v.edits, [])

    def test_long_reply_line_is_released(self):
        insp = make("esmtp")
        w = Wire(insp)
        w.feed(SERVER, b"220 " + b"b" * 5000)
        self.assertEqual(w.rel[SERVER], 5004)
        w.feed(SERVER, b"\r\n250 ok\r\n")
        self.assertEqual(w.mnemonics(), ["SMTP_INVALID_REPLY"])
        self.assertEqual(w.received_by("client"), b"220 " + b"b" * 5000 + b"\r\n250 ok\r\n")


_TOKENS = [b"DATA\r\n", b"354 go\r\n", b"250 ok\r\n", b"250-", b"CHUNKING\r\n", b"STARTTLS\r\n",
           b"220 ready\r\n", b"334 x\r\n", b"AUTH LOGIN\r\n", b"EHLO x\r\n", b"BDAT 5\r\n",
           b"BDAT 3 LAST\r\n", b"MAIL FROM:<a|b> SIZE=99\r\n", b"RCPT TO:<c@d>\r\n", b"VRFY x\r\n",
           b".", b"\r", b"\n", b"\r\n", b"\r\n.\r\n", b"..", b"Reply-To: `x`\r\n", b"x" * 7,
           b"500 no\r\n", b"\x00", b"QUIT\r\n"]


def _events():
    token_runs = st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=6).map(b"".join)
    return st.lists(st.tuples(st.sampled_from((CLIENT, SERVER)), token_runs), max_size=14)


def _outcome(proto, events, split, max_data=60):
    insp = make(proto, max_data=max_data)
    w = Wire(insp)
    for d, data in events:
        for piece in split(data):
            w.feed(d, piece)
    if not w.reset:
        # nothing held beyond one incomplete line / the pending data
        held = len(w.fed[CLIENT]) - w.rel[CLIENT]
        assert held <= smtp.MAX_PENDING_HOLD, held
    return (w.received_by("server"), w.received_by("client"), w.mnemonics(), w.reset,
            w.opaque, insp.state_summary())


class RandomConversationTests(SynchronousTestCase):

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(("smtp", "esmtp")), _events())
    def test_segmentation_never_changes_the_outcome(self, proto, events):
        """Arbitrary (mostly nonsensical) conversations: never a crash, and
        whole segments and one byte at a time give the same result."""
        a = _outcome(proto, events, lambda b: [b])
        b = _outcome(proto, events, lambda b: [b[i:i + 1] for i in range(len(b))])
        self.assertEqual(a, b)


class DebugToggleTests(SynchronousTestCase):

    def test_debug_follows_ctx_during_a_session(self):
        """``debug ip inspect smtp`` turned on mid-session takes effect."""
        insp = make("smtp")
        self.assertEqual(insp.data_received(SERVER, b"220 hi\r\n").debug, [])
        insp.ctx.debug = True
        v = insp.data_received(CLIENT, b"NOOP\r\n")
        self.assertEqual(v.debug, ["CBAC SMTP: VERB - Cmd len:4, match_len:4, verb:NOOP",
                                   "CBAC SMTP: End Of Command Line - index:1, len:6"])


class MaxDataBoundaryTests(SynchronousTestCase):
    """``max-data N``: a body of exactly N bytes passes, N + 1 is refused
    (session reset, alert, nothing past byte N released); a declared SIZE
    of exactly N is accepted, N + 1 refused.  (Each test fails when the
    inspector's comparison is flipped between > and >=.)"""

    N = 40

    def start(self, proto="esmtp"):
        w = Wire(make(proto, max_data=self.N))
        w.feed(SERVER, b"220 mail ESMTP\r\n" if proto == "esmtp" else b"220 mail\r\n")
        if proto == "esmtp":
            w.feed(CLIENT, b"EHLO c\r\n")
            w.feed(SERVER, b"250-mail\r\n250-CHUNKING\r\n250 SIZE 100\r\n")
        else:
            w.feed(CLIENT, b"HELO c\r\n")
            w.feed(SERVER, b"250 mail\r\n")
        w.feed(CLIENT, b"MAIL FROM:<a@b>\r\n")
        w.feed(SERVER, b"250 ok\r\n")
        w.feed(CLIENT, b"RCPT TO:<c@d>\r\n")
        w.feed(SERVER, b"250 ok\r\n")
        return w

    def data(self, body):
        w = self.start("smtp")
        w.feed(CLIENT, b"DATA\r\n")
        w.feed(SERVER, b"354 go\r\n")
        before = len(w.received_by("server"))
        w.feed(CLIENT, body + b".\r\n")
        return w, w.received_by("server")[before:]

    def test_data_body_exactly_max_data_passes(self):
        body = b"x" * (self.N - 2) + b"\r\n"
        self.assertEqual(len(body), self.N)
        w, got = self.data(body)
        self.assertFalse(w.reset)
        self.assertEqual(w.mnemonics(), [])
        self.assertEqual(got, body + b".\r\n")

    def test_data_body_one_byte_over_is_refused(self):
        body = b"x" * (self.N - 1) + b"\r\n"
        w, got = self.data(body)
        self.assertTrue(w.reset)
        self.assertEqual(w.mnemonics(), ["SMTP_MAX_DATA"])
        self.assertEqual(got, body[:self.N])            # not one byte past the limit

    def bdat(self, n):
        w = self.start("esmtp")
        before = len(w.received_by("server"))
        w.feed(CLIENT, b"BDAT %d LAST\r\n" % n + b"y" * n)
        return w, w.received_by("server")[before:]

    def test_bdat_chunk_exactly_max_data_passes(self):
        w, got = self.bdat(self.N)
        self.assertFalse(w.reset)
        self.assertEqual(w.mnemonics(), [])
        self.assertEqual(got, b"BDAT %d LAST\r\n" % self.N + b"y" * self.N)

    def test_bdat_chunk_one_byte_over_is_refused(self):
        w, got = self.bdat(self.N + 1)
        self.assertTrue(w.reset)
        self.assertEqual(w.mnemonics(), ["SMTP_MAX_DATA"])
        self.assertEqual(got, b"BDAT %d LAST\r\n" % (self.N + 1) + b"y" * self.N)

    def size(self, n):
        w = Wire(make("esmtp", max_data=self.N))
        w.feed(SERVER, b"220 mail ESMTP\r\n")
        w.feed(CLIENT, b"EHLO c\r\n")
        w.feed(SERVER, b"250-mail\r\n250 SIZE 100\r\n")
        line = b"MAIL FROM:<a@b> SIZE=%d\r\n" % n
        w.feed(CLIENT, line)
        return w, line in w.received_by("server")

    def test_declared_size_exactly_max_data_is_accepted(self):
        w, passed = self.size(self.N)
        self.assertTrue(passed)
        self.assertEqual(w.mnemonics(), [])

    def test_declared_size_one_over_is_refused(self):
        w, passed = self.size(self.N + 1)
        self.assertFalse(passed)
        self.assertEqual(w.mnemonics(), ["SMTP_MAX_DATA"])


class CommandLineBoundaryTests(SynchronousTestCase):
    """A command line of exactly MAX_COMMAND_LINE bytes (CRLF included)
    passes; one byte more is masked and alerted, and its first
    MAX_COMMAND_LINE bytes go out masked before its end arrives (nothing
    more is held); an AUTH line may be longer (MAX_AUTH_LINE) from the
    first byte over; a ZBF ``match cmd line length gt N`` resets on N + 1,
    not on N.  (Each fails with its comparison flipped.)"""

    def greeted(self, ehlo=b"250-mail\r\n250 AUTH PLAIN\r\n", rule_max=None):
        insp = make("esmtp")
        if rule_max is not None:
            insp.cmd_line_max = rule_max
            insp.cmd_line_log = True
        w = Wire(insp)
        w.feed(SERVER, b"220 mail ESMTP\r\n")
        w.feed(CLIENT, b"EHLO c\r\n")
        w.feed(SERVER, ehlo)
        return w, len(w.received_by("server"))

    @staticmethod
    def line(verb, n):
        return verb + b"x" * (n - len(verb) - 2) + b"\r\n"

    def test_command_line_exactly_the_limit_passes(self):
        w, before = self.greeted()
        line = self.line(b"NOOP ", smtp.MAX_COMMAND_LINE)
        w.feed(CLIENT, line)
        self.assertEqual(w.received_by("server")[before:], line)
        self.assertEqual(w.mnemonics(), [])

    def test_command_line_one_over_is_masked(self):
        w, before = self.greeted()
        w.feed(CLIENT, self.line(b"NOOP ", smtp.MAX_COMMAND_LINE + 1))
        self.assertEqual(w.mnemonics(), ["SMTP_INVALID_COMMAND"])
        got = w.received_by("server")[before:]
        self.assertEqual(len(got), smtp.MAX_COMMAND_LINE + 1)
        self.assertNotIn(b"NOOP", got)

    def test_unfinished_line_held_up_to_the_limit_then_masked(self):
        w, before = self.greeted()
        w.feed(CLIENT, b"NOOP " + b"x" * (smtp.MAX_COMMAND_LINE - 6))    # limit - 1 bytes
        self.assertEqual(w.received_by("server")[before:], b"")          # held
        w.feed(CLIENT, b"x")                                             # the limit: no line end
        got = w.received_by("server")[before:]
        self.assertEqual(len(got), smtp.MAX_COMMAND_LINE)                # released masked
        self.assertNotIn(b"NOOP", got)
        w.feed(CLIENT, b"\r\n")
        self.assertEqual(w.mnemonics(), ["SMTP_INVALID_COMMAND"])

    def test_auth_line_one_over_the_command_limit_passes(self):
        w, before = self.greeted()
        line = self.line(b"AUTH PLAIN ", smtp.MAX_COMMAND_LINE + 1)
        w.feed(CLIENT, line)
        self.assertEqual(w.received_by("server")[before:], line)
        self.assertEqual(w.mnemonics(), [])

    def test_zbf_cmd_line_length_gt(self):
        w, before = self.greeted(rule_max=20)
        ok = b"NOOP " + b"x" * 15 + b"\r\n"                  # 20 bytes without CRLF
        w.feed(CLIENT, ok)
        self.assertFalse(w.reset)
        self.assertEqual(w.received_by("server")[before:], ok)
        w.feed(SERVER, b"250 ok\r\n")
        w.feed(CLIENT, b"NOOP " + b"x" * 16 + b"\r\n")       # 21
        self.assertTrue(w.reset)
        self.assertEqual(w.mnemonics(), ["SMTP_L7_POLICY"])


class StateMachineTests(SynchronousTestCase):
    """The inspector's states and transitions are the table at the top of
    cbac/inspect/smtp.py; a change of state outside it raises (the session
    engine then resets the connection: tests/test_stream.py,
    test_inspector_exception_fails_closed)."""

    def test_a_transition_not_in_the_table_raises(self):
        from cbac.inspect.fsm import IllegalTransition
        insp = make("esmtp")
        self.assertEqual(insp.state, smtp.GREETING)
        insp.data_received(SERVER, b"220 mail ESMTP\r\n")
        self.assertEqual(insp.state, smtp.COMMAND)
        self.assertRaises(IllegalTransition, insp._go, smtp.GREETING)
        insp._go(smtp.DATA)
        self.assertRaises(IllegalTransition, insp._go, smtp.BDAT)
        self.assertEqual(insp.state, smtp.DATA)
        insp._go(smtp.CLOSED)
        self.assertTrue(insp.dead)
        for state in smtp.TRANSITIONS:
            self.assertRaises(IllegalTransition, insp._go, state)   # CLOSED is final

    def test_the_corpus_uses_every_state_and_only_table_transitions(self):
        seen = set()
        for conv in CORPUS:
            insp = make(conv.proto, conv.max_data, conv.starttls, conv.bare_lf)
            go = insp._go

            def spy(new, go=go, insp=insp):
                seen.add((insp.state, new))
                go(new)
            insp._go = spy
            w = Wire(insp)
            for d, data in whole(conv):
                w.feed(d, data)
        for old, new in seen:
            self.assertIn(new, smtp.TRANSITIONS[old])
        self.assertEqual({s for s, _ in seen} | {n for _, n in seen}, set(smtp.TRANSITIONS))


class ReplyAndHoldBoundaryTests(SynchronousTestCase):
    """A reply line of MAX_REPLY_LINE bytes (LF included) is parsed, one
    more is an invalid reply (unfinished: MAX_REPLY_LINE - 1 bytes wait,
    MAX_REPLY_LINE do not); MAX_PENDING_HOLD bytes pipelined after DATA are
    held, one more resets.  (Each fails with its comparison flipped.)"""

    def test_reply_line(self):
        n = smtp.MAX_REPLY_LINE
        w = Wire(make("esmtp"))
        w.feed(SERVER, b"220 " + b"r" * (n - 6) + b"\r\n")
        self.assertEqual(w.mnemonics(), [])
        w = Wire(make("esmtp"))
        w.feed(SERVER, b"220 " + b"r" * (n - 5) + b"\r\n")
        self.assertEqual(w.mnemonics(), ["SMTP_INVALID_REPLY"])
        w = Wire(make("esmtp"))
        w.feed(SERVER, b"220 " + b"r" * (n - 5))                  # n - 1 bytes: waits
        self.assertEqual(w.mnemonics(), [])
        w.feed(SERVER, b"r")                                       # n bytes, no LF
        self.assertEqual(w.mnemonics(), ["SMTP_INVALID_REPLY"])

    def test_bytes_held_after_data(self):
        w = Wire(make("esmtp"))
        w.feed(SERVER, b"220 mail ESMTP\r\n")
        w.feed(CLIENT, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        w.feed(CLIENT, b"x" * smtp.MAX_PENDING_HOLD)               # before the 354
        self.assertFalse(w.reset)
        w.feed(CLIENT, b"x")
        self.assertTrue(w.reset)
        self.assertEqual(w.mnemonics(), ["SMTP_PENDING_OVERFLOW"])


class HeaderLineBoundaryTests(SynchronousTestCase):
    """The Majordomo check holds each message-header line for its verdict:
    a line of MAX_HEADER_LINE bytes (LF included) is checked (a ``|`` in
    Reply-To is flagged, a clean one passes); one byte more cannot be held
    and fails closed (session reset, ``SMTP_HEADER_TOO_LONG``, nothing of
    the line forwarded) -- in every segmentation, folded continuation lines
    included.  (Each fails with the inspector's comparison flipped.)"""

    N = smtp.MAX_HEADER_LINE

    def start(self):
        w = Wire(make("smtp"))
        w.feed(SERVER, b"220 mail\r\n")
        for cmd in (b"HELO c\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<list@d>\r\n"):
            w.feed(CLIENT, cmd)
            w.feed(SERVER, b"250 ok\r\n")
        w.feed(CLIENT, b"DATA\r\n")
        w.feed(SERVER, b"354 go\r\n")
        return w

    @staticmethod
    def reply_to(n, tail=b"|mail evil@x", prefix=b"Reply-To: "):
        """A header line of n bytes (CRLF included) ending with ``tail``."""
        pad = n - len(prefix) - len(tail) - 2
        assert pad >= 0
        return prefix + b"a" * pad + tail + b"\r\n"

    def padded(self, prefix=b"Reply-To: ", tail=b"|mail evil@x"):
        """The attack: a header line padded so that ``tail`` starts just
        past the MAX_HEADER_LINE bytes cbac can hold."""
        return prefix + b"a" * (self.N - len(prefix)) + tail + b"\r\n"

    def send(self, message, cuts=()):
        w = self.start()
        before = len(w.received_by("server"))
        last = 0
        for c in list(cuts) + [len(message)]:
            w.feed(CLIENT, message[last:c])
            last = c
        return w, w.received_by("server")[before:]

    def message(self, line, folded=b""):
        return b"From: a@b\r\n" + line + folded + b"Subject: s\r\n\r\nbody\r\n.\r\n"

    def assertRefused(self, w, got, mnemonic, line_at):
        self.assertTrue(w.reset)
        self.assertEqual(w.mnemonics(), [mnemonic])
        self.assertLessEqual(len(got), line_at)      # nothing of the line forwarded

    def test_clean_line_exactly_the_limit_passes(self):
        line = self.reply_to(self.N, tail=b"x")
        self.assertEqual(len(line), self.N)
        msg = self.message(line)
        w, got = self.send(msg)
        self.assertFalse(w.reset)
        self.assertEqual(w.mnemonics(), [])
        self.assertEqual(got, msg)

    def test_pipe_exactly_the_limit_is_flagged(self):
        msg = self.message(self.reply_to(self.N))
        w, got = self.send(msg)
        self.assertRefused(w, got, "TCP_MAJORDOMO_EXEC_BUG", 11)

    def test_one_over_the_limit_fails_closed(self):
        for line in (self.reply_to(self.N + 1, tail=b"x"), self.padded()):
            msg = self.message(line)
            w, got = self.send(msg)
            self.assertRefused(w, got, "SMTP_HEADER_TOO_LONG", 11)
            self.assertNotIn(b"Reply-To", got)
        # a pipe inside the bytes held is still the Majordomo signature
        w, got = self.send(self.message(self.reply_to(self.N + 1)))
        self.assertRefused(w, got, "TCP_MAJORDOMO_EXEC_BUG", 11)

    def test_any_other_header_one_over_fails_closed(self):
        msg = self.message(self.reply_to(self.N + 1, tail=b"x", prefix=b"X-Pad: "))
        w, got = self.send(msg)
        self.assertRefused(w, got, "SMTP_HEADER_TOO_LONG", 11)
        msg = self.message(self.reply_to(self.N, tail=b"x", prefix=b"X-Pad: "))
        w, got = self.send(msg)
        self.assertFalse(w.reset)
        self.assertEqual(got, msg)

    def test_unfinished_line_waits_below_the_limit(self):
        w = self.start()
        w.feed(CLIENT, b"From: a@b\r\n" + b"Reply-To: " + b"a" * (self.N - 11))   # N - 1 bytes
        self.assertFalse(w.reset)
        self.assertEqual(w.mnemonics(), [])
        w.feed(CLIENT, b"a")                                  # N bytes, no LF: can't fit
        self.assertTrue(w.reset)
        self.assertEqual(w.mnemonics(), ["SMTP_HEADER_TOO_LONG"])

    def test_every_segmentation_of_the_padded_line(self):
        # the padded Reply-To line of the attack, one byte over the limit,
        # cut in two anywhere near the interesting places (the line's start,
        # the limit, the pipe, the LF), and in three at every 512 bytes
        over = self.message(self.padded())
        at = self.message(self.reply_to(self.N))
        start = 11
        points = set(range(0, 24)) | set(range(start + self.N - 16, start + self.N + 20))
        points |= set(range(0, len(over), 97))
        for msg, mnemonic in ((over, "SMTP_HEADER_TOO_LONG"), (at, "TCP_MAJORDOMO_EXEC_BUG")):
            for c in sorted(points):
                if 0 < c < len(msg):
                    w, got = self.send(msg, [c])
                    self.assertRefused(w, got, mnemonic, start)
            for c in range(1, len(msg) - 1024, 512):
                w, got = self.send(msg, [c, c + 512])
                self.assertRefused(w, got, mnemonic, start)
        w, got = self.send(at[:start + 200], range(start, start + 200))    # byte at a time
        w.feed(CLIENT, at[start + 200:])
        self.assertRefused(w, w.received_by("server"), "TCP_MAJORDOMO_EXEC_BUG", 1000)

    def test_folded_reply_to_is_checked(self):
        for folded in (b"Reply-To: list@d\r\n |mail evil@x\r\n",
                       b"Reply-To: list@d\r\n\tx\r\n  `cmd`\r\n",
                       b"reply-to : list@d\r\n |mail evil@x\r\n"):
            msg = b"From: a@b\r\n" + folded + b"Subject: s\r\n\r\nbody\r\n.\r\n"
            for c in range(1, len(msg)):
                w, got = self.send(msg, [c])
                self.assertRefused(w, got, "TCP_MAJORDOMO_EXEC_BUG", len(msg))
                self.assertNotIn(b"|mail", got)
                self.assertNotIn(b"`cmd`", got)
        # a folded continuation of another field is not Reply-To
        msg = b"From: a@b\r\nSubject: s\r\n |x\r\nReply-To: l@d\r\n\r\nbody\r\n.\r\n"
        w, got = self.send(msg)
        self.assertFalse(w.reset)
        self.assertEqual(got, msg)

    def test_folded_continuation_over_the_limit_fails_closed(self):
        cont = self.padded(prefix=b" ", tail=b"|x")
        msg = self.message(b"Reply-To: list@d\r\n", cont)
        w, got = self.send(msg)
        self.assertRefused(w, got, "SMTP_HEADER_TOO_LONG", len(msg))
        self.assertNotIn(b"|x", got)

    def test_only_an_empty_line_ends_the_header(self):
        # "\r\r\n" or blanks are not an empty line to every mail reader:
        # the Reply-To after one is still checked
        for sep in (b"\r\r\n", b" \r\n", b"\r \r\n"):
            msg = b"From: a@b\r\n" + sep + b"Reply-To: |mail evil@x\r\n\r\nbody\r\n.\r\n"
            w, got = self.send(msg)
            self.assertRefused(w, got, "TCP_MAJORDOMO_EXEC_BUG", len(msg))
            self.assertNotIn(b"|mail", got)
        msg = b"From: a@b\n\nReply-To: |x\n\r\n.\r\n"       # LF alone ends it
        w, got = self.send(msg)
        self.assertFalse(w.reset)

    def test_body_after_the_header_is_not_checked(self):
        msg = b"From: a@b\r\n\r\nReply-To: |x\r\n" + b"b" * (3 * self.N) + b"\r\n.\r\n"
        w, got = self.send(msg)
        self.assertFalse(w.reset)
        self.assertEqual(got, msg)

    def test_the_alert_text(self):
        w, got = self.send(self.message(self.padded()))
        self.assertEqual([format_message(*m) for m in w.logs], [
            "%%FW-4-SMTP_HEADER_TOO_LONG: Message header line longer than %d bytes from initiator"
            " (192.168.12.3:52419) -- session reset" % self.N])
