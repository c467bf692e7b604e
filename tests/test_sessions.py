"""Session table: keys, NAT sides, UDP/DNS/ICMP, ICMP errors, audit trail,
show output, cap, debug (cbac.inspect.session)."""

from __future__ import annotations

from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from cbac.config.model import InspectProtocol, InspectRule, RouterConfig
from cbac.inspect.session import SessionTable
from cbac.log import ios
from cbac.packet.rewrite import Rewrite
from cbac.packet.view import ip_int, parse_frame

# ----------------------------------------------------------------------------
# helpers shared by the inspection test modules (functions only)

A = "10.0.0.1"        # inside client
B = "20.0.0.1"        # outside server
G = "30.0.0.9"        # NAT global address of A


def frame_of(p) -> bytearray:
    return bytearray(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p))


def P(p):
    return parse_frame(frame_of(p))


def tcp(src, dst, sport, dport, flags, seq=0, ack=0, data=b"", win=65535, options=None):
    t = TCP(sport=sport, dport=dport, flags=flags, seq=seq & 0xFFFFFFFF,
            ack=ack & 0xFFFFFFFF, window=win,
            options=options or [])
    if data:
        return P(IP(src=src, dst=dst) / t / Raw(data))
    return P(IP(src=src, dst=dst) / t)


def model(*protocols, **inspect):
    m = RouterConfig()
    m.inspect_rules["R"] = InspectRule("R", [
        p if isinstance(p, InspectProtocol) else InspectProtocol(p)
        for p in (protocols or ("tcp", "udp", "icmp"))])
    for k, v in inspect.items():
        setattr(m.inspect, k, v)
    return m


def table(m=None, factories=None, clock=None, testcase=None):
    c = clock or Clock()
    sent = []
    t = SessionTable(c, m or model(), factories or {}, send=sent.append)
    t.sent = sent               # the wire: what the table sent (RSTs, extra segments)
    if testcase is not None:
        testcase.addCleanup(t.stop)
    return c, t


def capture_logs(testcase):
    """Collect the ios_message of every cbac log event (messages and debug)."""
    lines = []

    def obs(event):
        if "ios_message" in event:
            lines.append(event["ios_message"])
    globalLogPublisher.addObserver(obs)
    testcase.addCleanup(globalLogPublisher.removeObserver, obs)
    return lines


def send(t, pkt):
    """The router's step 1: lookup + process.  Returns True (forward),
    False (drop) or None (no session)."""
    hit = t.lookup(pkt)
    if hit is None:
        return None
    return t.process(hit[0], hit[1], pkt)


def handshake(t, src=A, dst=B, sport=40000, dport=23, cisn=1000, sisn=9000, ws=None,
              translation=None, rule="R"):
    opts = [("MSS", 1460)] + ([("WScale", ws)] if ws is not None else [])
    syn = tcp(src, dst, sport, dport, "S", seq=cisn, options=opts)
    s = t.create(syn, "in", "out", rule, translation, None)
    assert s is not None
    c_out = s.c_out
    sa = tcp(ip_str_(c_out[1]), ip_str_(c_out[0]), c_out[3], c_out[2], "SA", seq=sisn,
             ack=cisn + 1, options=opts)
    assert send(t, sa) is True
    a = tcp(src, dst, sport, dport, "A", seq=cisn + 1, ack=sisn + 1)
    assert send(t, a) is True
    return s


def ip_str_(v):
    from cbac.packet.view import ip_str
    return ip_str(v)


class Translation:
    """A NAT translation as cbac.nat returns it (inside source NAT)."""

    def __init__(self, proto, il, ig, ol, og):
        self.inside_local, self.inside_global = il, ig
        self.outside_local, self.outside_global = ol, og
        self.proto = proto
        self.forward = Rewrite(proto, (il[0], ol[0], il[1], ol[1]), (ig[0], og[0], ig[1], og[1]))
        self.reverse = self.forward.inverse()


def full_checksums_ok(raw: bytes) -> bool:
    e = Ether(raw)
    again = Ether(raw)
    again[IP].chksum = None
    for layer in (TCP, UDP, ICMP):
        if again.haslayer(layer):
            again[layer].chksum = None
    return bytes(again.__class__(bytes(again))) == bytes(e)


# ----------------------------------------------------------------------------

class KeysTests(unittest.TestCase):

    def test_one_lookup_finds_both_directions(self):
        c, t = table(testcase=self)
        s = handshake(t)
        fwd = tcp(A, B, 40000, 23, "A", seq=1001, ack=9001)
        rev = tcp(B, A, 23, 40000, "A", seq=9001, ack=1001)
        self.assertEqual(t.lookup(fwd), (s, 0))
        self.assertEqual(t.lookup(rev), (s, 1))
        # the fast path slice of an untagged IHL=5 frame is the key
        self.assertIs(t.tcp[bytes(fwd.frame[26:38])], s)
        self.assertIsNone(t.lookup(tcp(A, B, 40001, 23, "A")))

    def test_nat_both_sides_and_rewrite(self):
        c, t = table(testcase=self)
        tr = Translation(6, (ip_int(A), 40000), (ip_int(G), 2000), (ip_int(B), 23),
                         (ip_int(B), 23))
        syn = tcp(A, B, 40000, 23, "S", seq=1000)
        tr.forward.apply(syn.frame, syn.l3, syn.l4)        # the router's NAT step
        syn = parse_frame(syn.frame)
        s = t.create(syn, "in", "out", "R", tr, None)
        self.assertIsNotNone(s)
        # the reply arrives on the outside addressed to the global address
        sa = tcp(B, G, 23, 2000, "SA", seq=9000, ack=1001)
        self.assertEqual(t.lookup(sa), (s, 1))
        self.assertTrue(t.process(s, 1, sa))
        out = Ether(bytes(sa.frame))
        self.assertEqual((out[IP].dst, out[TCP].dport), (A, 40000))
        self.assertTrue(full_checksums_ok(bytes(sa.frame)))
        # the client's next packet arrives inside, in local form
        a = tcp(A, B, 40000, 23, "A", seq=1001, ack=9001)
        self.assertEqual(t.lookup(a), (s, 0))
        self.assertTrue(t.process(s, 0, a))
        out = Ether(bytes(a.frame))
        self.assertEqual((out[IP].src, out[TCP].sport), (G, 2000))
        self.assertTrue(full_checksums_ok(bytes(a.frame)))
        # shown as the initiator sent it
        self.assertIn("(10.0.0.1:40000)=>(20.0.0.1:23) tcp SIS_OPEN", t.show_sessions())

    def test_rule_matching(self):
        c, t = table(model("udp"), testcase=self)
        syn = tcp(A, B, 1, 2, "S")
        self.assertFalse(t.rule_matches("R", syn))
        self.assertIsNone(t.create(syn, "in", "out", "R", None, None))
        self.assertFalse(t.rule_matches("NOPE", P(IP(src=A, dst=B) / UDP(sport=1, dport=2))))
        self.assertTrue(t.rule_matches("R", P(IP(src=A, dst=B) / UDP(sport=1, dport=2))))

    def test_non_syn_creates_nothing(self):
        c, t = table(testcase=self)
        self.assertTrue(t.rule_matches("R", tcp(A, B, 1, 2, "A")))
        self.assertIsNone(t.create(tcp(A, B, 1, 2, "A"), "in", "out", "R", None, None))
        self.assertIsNone(t.create(tcp(A, B, 1, 2, "SF"), "in", "out", "R", None, None))
        self.assertEqual(len(t.sessions), 0)


class UdpTests(unittest.TestCase):

    def udp(self, src, dst, sp, dp, data=b"x" * 10):
        return P(IP(src=src, dst=dst) / UDP(sport=sp, dport=dp) / Raw(data))

    def test_udp_idle_timeout(self):
        c, t = table(testcase=self)
        s = t.create(self.udp(A, B, 5000, 6000), "in", "out", "R", None, None)
        self.assertEqual(s.sis, "SIS_OPENING")
        self.assertEqual(t.half_open_count, 1)
        self.assertTrue(send(t, self.udp(B, A, 6000, 5000)))
        self.assertEqual(s.sis, "SIS_OPEN")
        self.assertEqual(t.half_open_count, 0)
        c.advance(20)
        self.assertTrue(send(t, self.udp(A, B, 5000, 6000)))
        c.advance(25)                          # 25 s idle < 30
        self.assertTrue(send(t, self.udp(B, A, 6000, 5000)))
        c.advance(31)
        self.assertIsNone(send(t, self.udp(B, A, 6000, 5000)))
        self.assertEqual(t.show_sessions(), "")

    def test_rule_timeout_overrides(self):
        c, t = table(model(InspectProtocol("udp", timeout=100)), testcase=self)
        t.create(self.udp(A, B, 5000, 6000), "in", "out", "R", None, None)
        c.advance(90)
        self.assertTrue(send(t, self.udp(B, A, 6000, 5000)))
        c.advance(102)
        self.assertIsNone(send(t, self.udp(B, A, 6000, 5000)))

    def test_dns_timeout(self):
        c, t = table(testcase=self)
        s = t.create(self.udp(A, B, 5353, 53), "in", "out", "R", None, None)
        c.advance(3)
        self.assertTrue(send(t, self.udp(B, A, 53, 5353)))
        self.assertIn("Terminating Sessions", t.show_sessions())
        # a second reply (parallel AAAA query) still passes within dns-timeout
        c.advance(2)
        self.assertTrue(send(t, self.udp(B, A, 53, 5353)))
        c.advance(6.5)
        self.assertTrue(s.dead)
        self.assertIsNone(send(t, self.udp(B, A, 53, 5353)))


class IcmpTests(unittest.TestCase):

    def echo(self, src, dst, ident, t=8, data=b"x" * 72):
        return P(IP(src=src, dst=dst) / ICMP(type=t, id=ident, seq=1) / Raw(data))

    def test_echo_session(self):
        c, t = table(testcase=self)
        s = t.create(self.echo(A, B, 77), "in", "out", "R", None, None)
        for i in range(4):
            self.assertTrue(send(t, self.echo(B, A, 77, t=0)))
            self.assertTrue(send(t, self.echo(A, B, 77)))
        self.assertTrue(send(t, self.echo(B, A, 77, t=0)))
        # a reply from another address or with another id is not admitted
        self.assertIsNone(send(t, self.echo("20.0.0.2", A, 77, t=0)))
        self.assertIsNone(send(t, self.echo(B, A, 78, t=0)))
        # the responder may not send requests on the session
        self.assertFalse(send(t, self.echo(B, A, 77, t=8)))
        c.advance(5)
        out = t.show_sessions(detail=True)
        self.assertEqual(out, "\n".join([
            "Established Sessions",
            " Session %s (10.0.0.1:8)=>(20.0.0.1:0) icmp SIS_OPEN" % s.hexid,
            "  Created 00:00:05, Last heard 00:00:05",
            "  ECHO request",
            "  Bytes sent (initiator:responder) [360:360]"]))
        c.advance(6)
        self.assertIsNone(send(t, self.echo(B, A, 77, t=0)))
        self.assertEqual(t.show_sessions(), "")

    def test_icmp_error_needs_session(self):
        c, t = table(testcase=self)
        t.create(P(IP(src=A, dst=B) / UDP(sport=5000, dport=33434)), "in", "out", "R", None,
                 None)
        quoted = IP(src=A, dst=B, ttl=1) / UDP(sport=5000, dport=33434)
        err = P(IP(src="20.0.0.254", dst=A) / ICMP(type=11, code=0) / quoted)
        self.assertIsNotNone(t.lookup_icmp_error(err))
        other = IP(src=A, dst=B, ttl=1) / UDP(sport=5001, dport=33434)
        err2 = P(IP(src="20.0.0.254", dst=A) / ICMP(type=3, code=3) / other)
        self.assertIsNone(t.lookup_icmp_error(err2))
        # aimed at a third host: refused
        err3 = P(IP(src="20.0.0.254", dst="10.0.0.50") / ICMP(type=11) / quoted)
        self.assertIsNone(t.lookup_icmp_error(err3))
        self.assertIn("icmp-error-outer-mismatch", t.show_statistics())

    def test_icmp_error_nat_rewrite(self):
        c, t = table(testcase=self)
        tr = Translation(17, (ip_int(A), 5000), (ip_int(G), 2000), (ip_int(B), 33434),
                         (ip_int(B), 33434))
        u = P(IP(src=A, dst=B) / UDP(sport=5000, dport=33434) / Raw(b"q" * 12))
        tr.forward.apply(u.frame, u.l3, u.l4)
        u = parse_frame(u.frame)
        t.create(u, "in", "out", "R", tr, None)
        quoted = Ether(bytes(u.frame))[IP]            # as it left the firewall
        err = P(IP(src="20.0.0.254", dst=G) / ICMP(type=11, code=0) / bytes(quoted)[:28])
        hit = t.lookup_icmp_error(err)
        self.assertIsNotNone(hit)
        self.assertEqual(hit[1], 1)
        e = Ether(bytes(err.frame))
        self.assertEqual(e[IP].dst, A)
        inner = IP(bytes(e[ICMP].payload))
        self.assertEqual((inner.src, inner.dst), (A, B))
        self.assertEqual(bytes(inner)[20:22], (5000).to_bytes(2, "big"))
        # outer IP and ICMP checksums, and the quoted IP header checksum
        e2 = Ether(bytes(err.frame))
        e2[IP].chksum = None
        e2[ICMP].chksum = None
        self.assertEqual(bytes(Ether(bytes(e2))), bytes(err.frame))
        q = IP(bytes(inner)[:20])
        q.chksum = None
        self.assertEqual(bytes(IP(bytes(q)))[:20], bytes(inner)[:20])


class AuditTests(unittest.TestCase):

    def test_audit_trail_start_stop(self):
        logs = capture_logs(self)
        m = model(audit_trail=True)
        c, t = table(m, testcase=self)
        s = handshake(t, sport=39349, dport=23)
        self.assertTrue(send(t, tcp(A, B, 39349, 23, "PA", 1001, 9001, b"x" * 24)))
        self.assertTrue(send(t, tcp(B, A, 23, 39349, "PA", 9001, 1025, b"y" * 208)))
        self.assertTrue(send(t, tcp(A, B, 39349, 23, "FA", 1025, 9209)))
        self.assertTrue(send(t, tcp(B, A, 23, 39349, "FA", 9209, 1026)))
        self.assertTrue(send(t, tcp(A, B, 39349, 23, "A", 1026, 9210)))
        c.advance(7)
        self.assertTrue(s.dead)
        audit = [x for x in logs if "AUDIT" in x]
        self.assertEqual(audit, [
            "%FW-6-SESS_AUDIT_TRAIL_START: Start tcp session: initiator (10.0.0.1:39349) -- "
            "responder (20.0.0.1:23)",
            "%FW-6-SESS_AUDIT_TRAIL: Stop tcp session: initiator (10.0.0.1:39349) sent 24 "
            "bytes -- responder (20.0.0.1:23) sent 208 bytes"])

    def test_audit_per_protocol_and_off(self):
        logs = capture_logs(self)
        c, t = table(model(InspectProtocol("udp", audit_trail=True), "icmp"), testcase=self)
        t.create(P(IP(src=A, dst=B) / UDP(sport=1, dport=2)), "in", "out", "R", None, None)
        t.create(P(IP(src=A, dst=B) / ICMP(id=3)), "in", "out", "R", None, None)
        starts = [x for x in logs if "AUDIT_TRAIL_START" in x]
        self.assertEqual(starts, ["%FW-6-SESS_AUDIT_TRAIL_START: Start udp session: initiator "
                                  "(10.0.0.1:1) -- responder (20.0.0.1:2)"])


class ShowTests(unittest.TestCase):

    def test_sections_and_detail(self):
        c, t = table(testcase=self)
        s1 = handshake(t, sport=1111)
        s2 = t.create(tcp(A, B, 2222, 25, "S", seq=5), "in", "out", "R", None, None)
        s3 = handshake(t, sport=3333)
        send(t, tcp(A, B, 3333, 23, "FA", 1001, 9001))
        send(t, tcp(B, A, 23, 3333, "FA", 9001, 1002))
        c.advance(2)
        send(t, tcp(A, B, 1111, 23, "PA", 1001, 9001, b"abc"))
        self.assertEqual(t.show_sessions(), "\n".join([
            "Established Sessions",
            " Session %s (10.0.0.1:1111)=>(20.0.0.1:23) tcp SIS_OPEN" % s1.hexid,
            "Half-open Sessions",
            " Session %s (10.0.0.1:2222)=>(20.0.0.1:25) tcp SIS_OPENING" % s2.hexid,
            "Terminating Sessions",
            " Session %s (10.0.0.1:3333)=>(20.0.0.1:23) tcp SIS_CLOSING" % s3.hexid]))
        detail = t.show_sessions(detail=True).splitlines()
        self.assertEqual(detail[1:4], [
            " Session %s (10.0.0.1:1111)=>(20.0.0.1:23) tcp SIS_OPEN" % s1.hexid,
            "  Created 00:00:02, Last heard 00:00:00",
            "  Bytes sent (initiator:responder) [3:0]"])
        self.assertRegex(s1.hexid, r"^[0-9A-F]{8}$")

    def test_statistics(self):
        c, t = table(testcase=self)
        handshake(t)
        send(t, tcp(A, B, 40000, 23, "A", seq=5_000_000, ack=9001))
        out = t.show_statistics()
        self.assertIn("Session table: 1 sessions (limit 25000), peak 1", out)
        self.assertIn("Aggressive mode is off", out)
        self.assertRegex(out, r"seq-above-window +1")
        self.assertRegex(out, r"tcp +1 +0 +0 +1")


class CapAndClearTests(unittest.TestCase):

    def test_cap_evicts_oldest_half_open_then_refuses(self):
        m = model()
        m.session_limit = 3
        logs = capture_logs(self)
        c, t = table(m, testcase=self)
        est = handshake(t, sport=1)
        h1 = t.create(tcp(A, B, 2, 23, "S", seq=10), "in", "out", "R", None, None)
        h2 = t.create(tcp(A, B, 3, 23, "S", seq=10), "in", "out", "R", None, None)
        t.sent.clear()
        h3 = t.create(tcp(A, B, 4, 23, "S", seq=10), "in", "out", "R", None, None)
        self.assertIsNotNone(h3)
        self.assertTrue(h1.dead)
        self.assertFalse(h2.dead)
        self.assertEqual(len(t.sent), 2)          # h1 reset at both ends
        send(t, tcp(B, A, 23, 3, "SA", seq=1, ack=11))
        send(t, tcp(A, B, 3, 23, "A", seq=11, ack=2))
        send(t, tcp(B, A, 23, 4, "SA", seq=1, ack=11))
        send(t, tcp(A, B, 4, 23, "A", seq=11, ack=2))
        # all established: a new one is refused
        self.assertIsNone(t.create(tcp(A, B, 5, 23, "S"), "in", "out", "R", None, None))
        self.assertEqual(len(t.sessions), 3)
        self.assertFalse(est.dead)
        self.assertIn("%FW-4-SESSIONS_MAXIMUM: Number of sessions for the firewall rule 'R' "
                      "applied on interface 'in' exceeds the configured maximum value 3", logs)

    def test_clear_resets_and_empties(self):
        c, t = table(testcase=self)
        handshake(t)
        t.create(P(IP(src=A, dst=B) / UDP(sport=1, dport=2)), "in", "out", "R", None, None)
        t.sent.clear()
        self.assertEqual(t.clear(), 2)
        self.assertEqual(t.show_sessions(), "")
        self.assertEqual(len(t.sent), 2)
        rsts = [IP(bytes(p)) for p in t.sent]
        self.assertEqual({(r.src, r.dst) for r in rsts}, {(A, B), (B, A)})
        self.assertTrue(all(r[TCP].flags.R for r in rsts))
        self.assertEqual(t.tcp, {})
        self.assertEqual(t.udp, {})


class DebugTests(unittest.TestCase):

    def test_debug_lines_only_when_on(self):
        logs = capture_logs(self)
        c, t = table(testcase=self)
        handshake(t)
        self.assertEqual([x for x in logs if x.startswith("CBAC")], [])
        self.addCleanup(ios.debugging.clear)
        ios.debugging.set("object-creation")
        ios.debugging.set("tcp")
        ios.debugging.set("object-deletion")
        s = handshake(t, sport=4444)
        t.delete(s)
        dbg = [x for x in logs if x.startswith("CBAC")]
        self.assertTrue(dbg[0].startswith("CBAC OBJ_CREATE: create sis %s tcp" % s.hexid))
        self.assertIn("CBAC sis %s SIS_OPENING TCP SYN ACK SEQ 9000 ACK 1001 LEN 0 "
                      "(10.0.0.1:4444) <= (20.0.0.1:23)" % s.hexid, dbg)
        self.assertIn("CBAC OBJ_DELETE: delete sis %s (deleted)" % s.hexid, dbg)


_TEMPLATES = {}


def fast_syn(src, dst, sport, dport, seq=1000):
    """A SYN built from a cached scapy template (checksums not updated:
    the session engine does not verify them)."""
    key = (src, dst, dport)
    tmpl = _TEMPLATES.get(key)
    if tmpl is None:
        tmpl = _TEMPLATES[key] = frame_of(IP(src=src, dst=dst) / TCP(
            sport=1, dport=dport, flags="S", seq=0, window=65535))
    f = bytearray(tmpl)
    f[34:36] = sport.to_bytes(2, "big")
    f[38:42] = seq.to_bytes(4, "big")
    return parse_frame(f)
