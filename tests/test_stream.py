"""The TCP stream engine with small fake inspectors (cbac.inspect.stream)."""

from __future__ import annotations

from scapy.all import IP, TCP, Ether
from twisted.trial import unittest
from zope.interface import implementer

from cbac.config.model import InspectProtocol
from cbac.inspect.api import Edit, Expectation, IStreamInspector, Verdict, alert
from cbac.inspect.factories import app_factories
from cbac.packet.checksum import pseudo_header_sum
from cbac.packet.view import ip_int, parse_frame
from tests.test_sessions import (A, B, capture_logs, frame_of, full_checksums_ok, handshake,
                                 model, send, table, tcp)

CISN = 1000
SISN = 9000
C0 = CISN + 1          # seq of client offset 0
S0 = SISN + 1


@implementer(IStreamInspector)
class LineInspector:
    """Releases complete lines; masks SECRET, rewrites 'PORT 1' to 'PORT
    12345', resets on KILL, opens a pinhole on 'OPEN n', goes opaque on
    STARTTLS, logs an alert on BAD."""

    name = "smtp"

    def __init__(self, ctx):
        self.ctx = ctx
        self.buf = {0: bytearray(), 1: bytearray()}
        self.base = {0: 0, 1: 0}
        self.fed = {0: [], 1: []}
        self.closed = []

    def data_received(self, d, data):
        self.fed[d].append(bytes(data))
        buf = self.buf[d]
        buf += data
        v = Verdict()
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line = bytes(buf[:i + 1])
            off = self.base[d]
            del buf[:i + 1]
            self.base[d] += i + 1
            j = line.find(b"SECRET")
            while j >= 0:
                v.edits.append(Edit(off + j, 6, b"XXXXXX"))
                j = line.find(b"SECRET", j + 6)
            if line == b"PORT 1\r\n":
                v.edits.append(Edit(off + 5, 1, b"12345"))
            if line.startswith(b"KILL"):
                v.reset = True
                v.reason = "kill"
            if line.startswith(b"OPEN "):
                v.expect.append(Expectation("tcp", None, None, self.ctx.client_addr,
                                            int(line[5:]), timeout=30, label="fake-data"))
            if line.startswith(b"STARTTLS"):
                v.opaque = True
            if line.startswith(b"BAD"):
                v.log.append(alert(3, "SMTP_INVALID_COMMAND",
                                   "Invalid SMTP command from initiator (10.0.0.1:40000)"))
            if line.startswith(b"UNTYPED"):
                v.log.append(("FW", 3, "SMTP_INVALID_COMMAND", "a bare tuple"))
                v.debug.append("CBAC SMTP: bad line")
        v.release = self.base[d]
        return v

    def connection_closed(self, d):
        self.closed.append(d)
        return Verdict(release=self.base[d] + len(self.buf[d]))

    def state_summary(self):
        return "fake: offset %d" % self.base[0]


def out(pkt):
    """(seq, payload, flags) of a forwarded packet."""
    t = Ether(bytes(pkt.frame))[TCP]
    return t.seq, bytes(t.payload), str(t.flags)


class StreamCase(unittest.TestCase):

    def setUp(self):
        self.inspectors = []

        def factory(ctx):
            i = LineInspector(ctx)
            self.inspectors.append(i)
            return i
        self.m = model(InspectProtocol("smtp"), "tcp", "udp")
        self.clock, self.t = table(self.m, {"smtp": factory}, testcase=self)
        self.s = handshake(self.t, dport=25, cisn=CISN, sisn=SISN)
        self.insp = self.inspectors[0]

    def c(self, off, data, flags="PA", ack=S0):
        p = tcp(A, B, 40000, 25, flags, C0 + off, ack, data)
        return p, send(self.t, p)

    def srv(self, off, data=b"", flags="A", ack=C0, options=None):
        p = tcp(B, A, 25, 40000, flags, S0 + off, ack, data, options=options)
        return p, send(self.t, p)


class HoldAndMaskTests(StreamCase):

    def test_plain_lines_pass_unchanged(self):
        p, ok = self.c(0, b"HELO x\r\n")
        self.assertTrue(ok)
        self.assertEqual(out(p), (C0, b"HELO x\r\n", "PA"))
        self.assertTrue(full_checksums_ok(bytes(p.frame)))
        self.assertEqual(self.insp.fed[0], [b"HELO x\r\n"])

    def test_mask_command_split_over_segments(self):
        p1, ok = self.c(0, b"MAIL SEC")
        self.assertTrue(ok)                          # forwarded as a bare ACK
        self.assertEqual(out(p1), (C0, b"", "A"))
        p2, ok = self.c(8, b"RET ok\r\n")
        self.assertTrue(ok)
        # the releasing segment carries the held bytes, masked
        self.assertEqual(out(p2), (C0, b"MAIL XXXXXX ok\r\n", "PA"))
        self.assertTrue(full_checksums_ok(bytes(p2.frame)))
        self.assertEqual(b"".join(self.insp.fed[0]), b"MAIL SECRET ok\r\n")

    def test_retransmission_of_held_bytes_stays_held(self):
        self.c(0, b"MAIL SEC")
        p, ok = self.c(0, b"MAIL SEC")
        self.assertEqual(out(p), (C0, b"", "A"))
        self.assertEqual(self.insp.fed[0], [b"MAIL SEC"])      # never fed twice

    def test_retransmission_is_remasked(self):
        self.c(0, b"AUTH SECRET\r\n")
        p, ok = self.c(0, b"AUTH SECRET\r\n")
        self.assertTrue(ok)
        self.assertEqual(out(p), (C0, b"AUTH XXXXXX\r\n", "PA"))
        # partially acknowledged: only the unacknowledged part goes again
        self.srv(0, ack=C0 + 5)
        p, ok = self.c(0, b"AUTH SECRET\r\n")
        self.assertEqual(out(p), (C0 + 5, b"XXXXXX\r\n", "PA"))

    def test_overlap_with_different_content(self):
        self.c(0, b"HELO a\r\n")
        p, ok = self.c(0, b"HELO b\r\nQUIT\r\n")
        self.assertTrue(ok)
        self.assertEqual(out(p), (C0, b"HELO a\r\nQUIT\r\n", "PA"))
        self.assertEqual(self.insp.fed[0], [b"HELO a\r\n", b"QUIT\r\n"])

    def test_out_of_order_dropped(self):
        p, ok = self.c(10, b"LATER\r\n")
        self.assertFalse(ok)
        self.assertEqual(self.insp.fed[0], [])
        self.assertRegex(self.t.show_statistics(), r"stream-out-of-order +1")

    def test_fin_waits_for_held_bytes(self):
        p, ok = self.c(0, b"QUI", flags="FA")
        self.assertTrue(ok)
        # connection_closed released the partial line: it goes out with the FIN
        self.assertEqual(self.insp.closed, [0])
        self.assertEqual(out(p), (C0, b"QUI", "FA"))

    def test_server_direction_and_detail(self):
        p, ok = self.srv(0, b"220 hello\r\n", flags="PA")
        self.assertEqual(out(p), (S0, b"220 hello\r\n", "PA"))
        self.c(0, b"HELO x\r\n")
        detail = self.t.show_sessions(detail=True)
        self.assertIn("smtp SIS_OPEN", detail)
        self.assertIn("  fake: offset 8", detail)
        self.assertIn("  Bytes sent (initiator:responder) [8:11]", detail)

    def test_big_release_is_split_at_mss(self):
        self.s.stream.dirs[0].mss = 100
        self.c(0, b"A" * 150)
        p, ok = self.c(150, b"B" * 60 + b"\r\n")
        seq, data, flags = out(p)
        self.assertEqual((seq, data), (C0, b"A" * 100))
        self.assertEqual(len(self.t.sent), 2)
        extra = IP(bytes(self.t.sent[0]))
        self.assertEqual(extra[TCP].seq, C0 + 100)
        self.assertEqual(bytes(extra[TCP].payload), b"A" * 50 + b"B" * 50)
        extra = IP(bytes(self.t.sent[1]))
        self.assertEqual(extra[TCP].seq, C0 + 200)
        self.assertEqual(bytes(extra[TCP].payload), b"B" * 10 + b"\r\n")
        self.assertEqual((extra.src, extra.dst), (A, B))
        again = IP(bytes(self.t.sent[0]))
        again.chksum = None
        again[TCP].chksum = None
        self.assertEqual(bytes(IP(bytes(again))), bytes(self.t.sent[0]))


class LengthChangeTests(StreamCase):

    def test_seq_ack_sack_adjusted(self):
        p, ok = self.c(0, b"PORT 1\r\n")
        self.assertEqual(out(p), (C0, b"PORT 12345\r\n", "PA"))
        # a retransmission of the rewritten segment is rewritten the same way
        p, ok = self.c(0, b"PORT 1\r\n")
        self.assertEqual(out(p), (C0, b"PORT 12345\r\n", "PA"))
        # later client bytes are shifted by +4
        p, ok = self.c(8, b"NOOP\r\n")
        self.assertEqual(out(p), (C0 + 12, b"NOOP\r\n", "PA"))
        # the server acknowledges in the shifted numbering: the client sees its own
        p, ok = self.srv(0, ack=C0 + 18, options=[("SAck", (C0 + 12, C0 + 18))])
        self.assertTrue(ok)
        t = Ether(bytes(p.frame))[TCP]
        self.assertEqual(t.ack, C0 + 14)
        sack = dict(t.options)["SAck"]
        self.assertEqual(tuple(sack), (C0 + 8, C0 + 14))
        self.assertTrue(full_checksums_ok(bytes(p.frame)))
        # the window tracker works in the client's numbering
        p, ok = self.c(14, b"QUIT\r\n")
        self.assertTrue(ok)
        self.assertEqual(out(p), (C0 + 18, b"QUIT\r\n", "PA"))

    def test_partial_checksum_kept_partial(self):
        f = frame_of(IP(src=A, dst=B) / TCP(sport=40000, dport=25, flags="PA", seq=C0,
                                            ack=S0) / b"PORT 1\r\n")
        vnet = bytes([1, 0, 0, 0, 0, 0, 0, 34, 0, 16])
        pkt = parse_frame(f, vnet)
        self.assertTrue(send(self.t, pkt))
        seg = bytes(pkt.frame[34:])
        self.assertEqual(seg[20:], b"PORT 12345\r\n")
        want = pseudo_header_sum(ip_int(A), ip_int(B), 6, len(seg))
        self.assertEqual(int.from_bytes(seg[16:18], "big"), want)


class ResetOpaquePinholeTests(StreamCase):

    def test_reset_sends_rsts_and_deletes(self):
        self.c(0, b"HELO x\r\n")
        self.srv(0, b"250 ok\r\n", flags="PA", ack=C0 + 8)
        p, ok = self.c(8, b"KILL\r\n", ack=S0 + 8)
        self.assertFalse(ok)
        self.assertTrue(self.s.dead)
        rsts = [IP(bytes(x)) for x in self.t.sent]
        to_server = [r for r in rsts if r.dst == B]
        to_client = [r for r in rsts if r.dst == A]
        # what each end expects next: the KILL line never reached the server
        self.assertEqual([r[TCP].seq for r in to_server], [C0 + 8])
        self.assertEqual([r[TCP].seq for r in to_client], [S0 + 8])
        for r in rsts:
            self.assertTrue(r[TCP].flags.R)
        self.assertIsNone(send(self.t, tcp(A, B, 40000, 25, "PA", C0 + 8, S0 + 8, b"x")))

    def test_opaque_stops_inspection(self):
        self.c(0, b"STARTTLS\r\n")
        p, ok = self.c(10, b"\x16\x03\x01 SECRET binary")
        self.assertTrue(ok)
        self.assertEqual(out(p)[1], b"\x16\x03\x01 SECRET binary")
        self.assertEqual(self.insp.fed[0], [b"STARTTLS\r\n"])
        # once everything is acknowledged the session drops to plain TCP
        self.srv(0, ack=C0 + 27)
        self.assertIsNone(self.s.stream)
        p, ok = self.c(27, b"more")
        self.assertTrue(ok)

    def test_pinhole_one_use(self):
        self.c(0, b"OPEN 5555\r\n")
        syn = tcp(B, A, 20, 5555, "S", seq=1)
        token = self.t.expected(syn)
        self.assertIsNotNone(token)
        self.assertIsNone(self.t.expected(tcp(B, A, 20, 5556, "S", seq=1)))
        child = self.t.create(syn, "out", "in", None, None, token)
        self.assertIsNotNone(child)
        self.assertEqual(child.protocol, "fake-data")
        self.assertIs(child.parent, self.s)
        self.assertIsNone(self.t.expected(tcp(B, A, 21, 5555, "S", seq=1)))
        self.assertIsNone(self.t.create(syn, "out", "in", None, None, token))

    def test_pinhole_timeout_and_parent_close(self):
        self.c(0, b"OPEN 5555\r\nOPEN 6666\r\n")
        self.assertIsNotNone(self.t.expected(tcp(B, A, 20, 5555, "S")))
        self.clock.pump([1] * 31)
        self.assertIsNone(self.t.expected(tcp(B, A, 20, 5555, "S")))
        self.c(22, b"OPEN 7777\r\n")
        self.t.delete(self.s)
        self.assertIsNone(self.t.expected(tcp(B, A, 20, 7777, "S")))

    def test_alert_logging_honours_alert_setting(self):
        logs = capture_logs(self)
        self.c(0, b"BAD\r\n")
        self.assertIn("%FW-3-SMTP_INVALID_COMMAND: Invalid SMTP command from initiator "
                      "(10.0.0.1:40000)", logs)
        # alert off for the protocol
        self.m.inspect_rules["R"].get("smtp").alert = False
        self.s2 = handshake(self.t, sport=40001, dport=25, cisn=CISN, sisn=SISN)
        del logs[:]
        send(self.t, tcp(A, B, 40001, 25, "PA", C0, S0, b"BAD\r\n"))
        self.assertEqual([x for x in logs if x.startswith("%FW")], [])

    def test_inspector_exception_fails_closed(self):
        def boom(d, data):
            raise RuntimeError("bug")
        self.insp.data_received = boom
        p, ok = self.c(0, b"HELO\r\n")
        self.assertFalse(ok)
        self.assertTrue(self.s.dead)
        self.assertEqual(len(self.t.sent), 2)
        self.flushLoggedErrors(RuntimeError)

    def test_untyped_log_entry_fails_closed(self):
        """Verdict.log holds api.LogEvent only: a bare tuple is a broken
        inspector, and the session is reset, the entry not logged."""
        logs = capture_logs(self)
        p, ok = self.c(0, b"UNTYPED\r\n")
        self.assertFalse(ok)
        self.assertTrue(self.s.dead)
        self.assertEqual([x for x in logs if "a bare tuple" in x], [])
        self.flushLoggedErrors(TypeError)


class NatAndRobustnessTests(unittest.TestCase):

    def test_factory_failure_fails_closed(self):
        def broken(ctx):
            raise ValueError("no")
        c, t = table(model(InspectProtocol("smtp"), "tcp"), {"smtp": broken}, testcase=self)
        self.assertTrue(t.rule_matches("R", tcp(A, B, 40000, 25, "S")))
        self.assertIsNone(t.create(tcp(A, B, 40000, 25, "S"), "in", "out", "R", None, None))
        self.assertEqual(len(t.sessions), 0)
        self.flushLoggedErrors(ValueError)

    def test_edit_under_nat_keeps_checksums(self):
        from tests.test_sessions import G, Translation
        insp = []
        m = model(InspectProtocol("smtp"), "tcp")
        c, t = table(m, {"smtp": lambda ctx: insp.append(LineInspector(ctx)) or insp[-1]},
                     testcase=self)
        tr = Translation(6, (ip_int(A), 40000), (ip_int(G), 2000), (ip_int(B), 25),
                         (ip_int(B), 25))
        syn = tcp(A, B, 40000, 25, "S", seq=CISN)
        tr.forward.apply(syn.frame, syn.l3, syn.l4)
        s = t.create(parse_frame(syn.frame), "in", "out", "R", tr, None)
        self.assertTrue(send(t, tcp(B, G, 25, 2000, "SA", seq=SISN, ack=C0)))
        self.assertTrue(send(t, tcp(A, B, 40000, 25, "A", seq=C0, ack=S0)))
        p = tcp(A, B, 40000, 25, "PA", C0, S0, b"PORT 1\r\n")
        self.assertTrue(send(t, p))
        e = Ether(bytes(p.frame))
        self.assertEqual((e[IP].src, e[TCP].sport, bytes(e[TCP].payload)),
                         (G, 2000, b"PORT 12345\r\n"))
        self.assertTrue(full_checksums_ok(bytes(p.frame)))
        r = tcp(B, G, 25, 2000, "A", S0, C0 + 12)
        self.assertTrue(send(t, r))
        e = Ether(bytes(r.frame))
        self.assertEqual((e[IP].dst, e[TCP].dport, e[TCP].ack), (A, 40000, C0 + 8))
        self.assertTrue(full_checksums_ok(bytes(r.frame)))
        self.assertEqual(s.sis, "SIS_OPEN")

    def test_random_segments_never_crash(self):
        from hypothesis import given, settings
        from hypothesis import strategies as st

        flags = st.sampled_from(["A", "PA", "FA", "R", "RA", "S", "SA", "", "SF", "U", "PAU"])

        @settings(max_examples=60, deadline=None)
        @given(st.lists(st.tuples(st.booleans(), flags, st.integers(-3000, 70000),
                                  st.integers(-3000, 70000),
                                  st.binary(max_size=40)), max_size=12))
        def run(segs):
            m = model(InspectProtocol("smtp"), "tcp")
            c, t = table(m, {"smtp": LineInspector})
            handshake(t, dport=25, cisn=CISN, sisn=SISN)
            handshake(t, sport=40001, dport=26, cisn=CISN, sisn=SISN)
            for from_client, fl, so, ao, data in segs:
                for port in (25, 26):
                    if from_client:
                        p = tcp(A, B, 40000 if port == 25 else 40001, port, fl, C0 + so,
                                S0 + ao, data + b"\r\n" if so % 2 else data)
                    else:
                        p = tcp(B, A, port, 40000 if port == 25 else 40001, fl, S0 + so,
                                C0 + ao, data)
                    send(t, p)
            t.stop()
        run()

    def test_receiver_view_is_consistent_and_masked(self):
        """Whatever the client sends (overlaps with different content, holes,
        retransmissions, split lines), every byte offset the server receives
        carries one value only and the assembled stream never contains
        SECRET."""
        from hypothesis import given, settings
        from hypothesis import strategies as st

        chunks = st.sampled_from([b"SECRET\r\n", b"SEC", b"RET\r\n", b"MAIL ", b"\r\n",
                                  b"xSECRETx", b"ab", b"S", b"ECRET\r\n"])

        @settings(max_examples=100, deadline=None)
        @given(st.lists(st.tuples(st.integers(0, 60), st.lists(chunks, min_size=1, max_size=3),
                                  st.booleans()), max_size=15))
        def run(segs):
            m = model(InspectProtocol("smtp"), "tcp")
            c, t = table(m, {"smtp": LineInspector})
            handshake(t, dport=25, cisn=CISN, sisn=SISN)
            seen = {}
            acked = 0
            for off, parts, ack_now in segs:
                p = tcp(A, B, 40000, 25, "PA", C0 + off, S0, b"".join(parts))
                packets = []
                if send(t, p):
                    packets.append(p.frame[14:])
                packets.extend(t.sent)
                del t.sent[:]
                for raw in packets:
                    ip = IP(bytes(raw))
                    data = bytes(ip[TCP].payload)
                    base = ip[TCP].seq - C0
                    for i, b in enumerate(data):
                        self.assertEqual(seen.setdefault(base + i, b), b)
                # the server acknowledges what it has contiguously
                while acked in seen:
                    acked += 1
                if ack_now:
                    send(t, tcp(B, A, 25, 40000, "A", S0, C0 + acked))
            stream = bytes(seen[i] for i in range(acked))
            self.assertNotIn(b"SECRET", stream)
            t.stop()
        run()


class RealInspectorTests(unittest.TestCase):
    """The project's SMTP and FTP inspectors hosted by the engine
    (cbac.inspect.factories.app_factories)."""

    def converse(self, dport, rule, steps):
        from cbac.inspect.factories import app_factories
        m = model(InspectProtocol(rule), "tcp")
        c, t = table(m, app_factories(m, None), testcase=self)
        s = handshake(t, dport=dport, cisn=CISN, sisn=SISN)
        co = so = 0
        outs = []
        for from_client, data in steps:
            if from_client:
                p = tcp(A, B, 40000, dport, "PA", C0 + co, S0 + so, data)
                co += len(data)
            else:
                p = tcp(B, A, dport, 40000, "PA", S0 + so, C0 + co, data)
                so += len(data)
            self.assertTrue(send(t, p))
            outs.append(out(p)[1])
        return t, s, outs

    def test_smtp_unknown_command_masked(self):
        t, s, outs = self.converse(25, "smtp", [
            (False, b"220 mail ESMTP\r\n"), (True, b"HELO x\r\n"), (False, b"250 hi\r\n"),
            (True, b"XYZZ secret\r\n"), (False, b"500 no\r\n"), (True, b"QUIT\r\n")])
        self.assertEqual(s.protocol, "smtp")
        self.assertEqual(outs[1], b"HELO x\r\n")
        self.assertEqual(len(outs[3]), len(b"XYZZ secret\r\n"))
        self.assertNotIn(b"XYZZ", outs[3])
        self.assertEqual(outs[5], b"QUIT\r\n")

    def test_body_sent_before_354_goes_out_after_the_reply(self):
        """A client that sends its body right after DATA: the inspector holds
        it until the server's 354 says it is a body; the client's
        retransmission then carries it through unchanged."""
        t, s, outs = self.converse(25, "smtp", [
            (False, b"220 mail ESMTP\r\n"), (True, b"HELO x\r\n"), (False, b"250 hi\r\n"),
            (True, b"MAIL FROM:<a@b>\r\n"), (False, b"250 ok\r\n"),
            (True, b"RCPT TO:<c@d>\r\n"), (False, b"250 ok\r\n")])
        co = len(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
        so = len(b"220 mail ESMTP\r\n250 hi\r\n250 ok\r\n250 ok\r\n")
        early = b"DATA\r\nSubject: x\r\n\r\nVRFY is body text\r\n.\r\n"
        p = tcp(A, B, 40000, 25, "PA", C0 + co, S0 + so, early)
        self.assertTrue(send(t, p))
        self.assertEqual(out(p)[1], b"DATA\r\n")             # body held
        r = tcp(B, A, 25, 40000, "PA", S0 + so, C0 + co + 6, b"354 go\r\n")
        self.assertTrue(send(t, r))
        again = tcp(A, B, 40000, 25, "PA", C0 + co, S0 + so + 8, early)
        self.assertTrue(send(t, again))
        self.assertEqual(out(again)[1], early[6:])            # body, unmasked

    def test_refused_connection_rst_reaches_the_client(self):
        """A server port that is closed answers the SYN with RST/ACK: the
        client must see it (curl: connection refused, not a time-out)."""
        m = model(InspectProtocol("http"), "tcp")
        clock, t = table(m, app_factories(m), testcase=self)
        syn = tcp(A, B, 40000, 80, "S", seq=CISN)
        s = t.create(syn, "in", "out", "R", None, None)
        rst = tcp(B, A, 80, 40000, "RA", seq=0, ack=CISN + 1)
        hit = t.lookup(rst)
        self.assertIsNotNone(hit)
        self.assertTrue(t.process(hit[0], hit[1], rst))
        self.assertEqual(out(rst), (0, b"", "RA"))

    def test_ftp_port_opens_one_pinhole(self):
        t, s, outs = self.converse(21, "ftp", [
            (False, b"220 ftp\r\n"), (True, b"USER a\r\n"), (False, b"331 pw\r\n"),
            (True, b"PASS b\r\n"), (False, b"230 ok\r\n"), (True, b"PORT 10,0,0,1,20,10\r\n")])
        syn = tcp(B, A, 20, 5130, "S", seq=1)
        token = t.expected(syn)
        self.assertIsNotNone(token)
        child = t.create(syn, "out", "in", None, None, token)
        self.assertIn("(20.0.0.1:20)=>(10.0.0.1:5130) ftp-data SIS_OPENING",
                      t.show_sessions())
        self.assertIs(child.parent, s)
        self.assertIsNone(t.expected(syn))

class SegmentationPropertyTests(unittest.TestCase):

    def test_length_changing_edits_under_any_segmentation(self):
        """Random slices of a client stream (retransmissions, overlaps, holes,
        acknowledgements at random points): the server always receives a
        prefix of the transformed stream, and all of it once the client has
        sent everything in order."""
        from hypothesis import given, settings
        from hypothesis import strategies as st

        lines = [b"HELO a\r\n", b"PORT 1\r\n", b"NOOP\r\n", b"AUTH SECRET\r\n", b"PORT 1\r\n",
                 b"DATA x\r\n"]
        stream = b"".join(lines)
        expect = stream.replace(b"PORT 1\r\n", b"PORT 12345\r\n").replace(b"SECRET", b"XXXXXX")

        @settings(max_examples=70, deadline=None)
        @given(st.lists(st.tuples(st.integers(0, len(stream) - 1), st.integers(1, 20),
                                  st.booleans()), max_size=14))
        def run(segs):
            m = model(InspectProtocol("smtp"), "tcp")
            c, t = table(m, {"smtp": LineInspector})
            handshake(t, dport=25, cisn=CISN, sisn=SISN)
            seen = {}
            state = {"acked": 0}

            def deliver(off, n, ack_now):
                p = tcp(A, B, 40000, 25, "PA", C0 + off, S0, stream[off:off + n])
                packets = []
                if send(t, p):
                    packets.append(p.frame[14:])
                packets.extend(t.sent)
                del t.sent[:]
                for raw in packets:
                    ip = IP(bytes(raw))
                    data = bytes(ip[TCP].payload)
                    base = ip[TCP].seq - C0
                    for i, b in enumerate(data):
                        self.assertEqual(seen.setdefault(base + i, b), b)
                while state["acked"] in seen:
                    state["acked"] += 1
                if ack_now:
                    send(t, tcp(B, A, 25, 40000, "A", S0, C0 + state["acked"]))
                got = bytes(seen[i] for i in range(state["acked"]))
                self.assertEqual(got, expect[:len(got)])

            for off, n, ack_now in segs:
                deliver(off, n, ack_now)
            # then the whole stream once more, in order, acknowledged
            for off in range(0, len(stream), 7):
                deliver(off, 7, True)
            self.assertEqual(bytes(seen[i] for i in range(state["acked"])), expect)
            t.stop()
        run()
