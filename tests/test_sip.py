"""SIP inspection (cbac/inspect/sip.py): RFC 3665-style call flows and
registrations through the whole appliance (simulated Linux hosts, PAT and
no NAT), every segmentation over TCP, malformed and evasive messages."""

from twisted.trial import unittest

from cbac.config.model import InspectProtocol
from cbac.config.parser import parse_config
from cbac.inspect import sip
from cbac.inspect.api import CLIENT, SERVER, InspectContext
from tests.apphost import EVE, GLOBAL, REMOTE, ApplianceCase
from tests.hosts import INSIDE, INSIDE_CLIENT_IP, OUTSIDE, Recorder
from tests.test_ftp import Engine

ALICE = INSIDE_CLIENT_IP          # 10.10.10.2, inside
BOB = REMOTE                      # 172.22.1.1, outside UA / registrar

SIP_INSPECT = "ip inspect name IN-OUT sip audit-trail on\n"
#: the two user agents (ApplianceCase.hosts)
PHONES = {"alice": (INSIDE, ALICE, 2), "bob": (OUTSIDE, BOB, 1)}


def sdp(addr, port, sess="2890844526"):
    return ("v=0\r\no=user %s %s IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            % (sess, sess, addr, addr, port)).encode()


def msg(start, via_host, via_port=5060, call_id="a84b4c76e66710", cseq="1 INVITE",
        contact=None, body=b"", extra="", transport="UDP", clen=None):
    lines = [start,
             "Via: SIP/2.0/%s %s:%d;branch=z9hG4bK776asdhds" % (transport, via_host, via_port),
             "Max-Forwards: 70",
             "To: Bob <sip:bob@biloxi.example.com>",
             "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
             "Call-ID: %s" % call_id,
             "CSeq: %s" % cseq]
    if contact:
        lines.append("Contact: <sip:%s>" % contact)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append("Content-Length: %d" % (len(body) if clen is None else clen))
    if extra:
        lines.extend(extra.split("\n"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse(data):
    end = data.index(b"\r\n\r\n") + 4
    head = data[:end].decode()
    hdrs = {}
    for ln in head.split("\r\n")[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            hdrs.setdefault(k.strip().lower(), v.strip())
    return head.split("\r\n")[0], hdrs, data[end:]


class SipThroughAppliance(ApplianceCase):
    inspect = SIP_INSPECT
    hosts = dict(PHONES, eve=(OUTSIDE, EVE, 3))

    def a2b(self, data, sport=5060, dport=5060):
        return self.udp(self.alice, BOB, sport, dport, data, self.bob)

    def b2a(self, data, dst=None, sport=5060, dport=5060, host=None):
        return self.udp(host or self.bob, dst or self.me, sport, dport, data, self.alice)

    def invite(self, call_id="a84b4c76e66710", port=49170):
        m = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, call_id=call_id,
                contact="alice@%s:5060" % ALICE, body=sdp(ALICE, port))
        got = self.a2b(m)
        self.assertEqual(len(got), 1)
        return got[0]

    def answer(self, call_id="a84b4c76e66710", port=3456, code="200 OK"):
        m = msg("SIP/2.0 %s" % code, self.me, call_id=call_id,
                contact="bob@%s:5060" % BOB, body=sdp(BOB, port))
        return self.b2a(m)

    def test_basic_call_flow_opens_and_closes_media(self):
        # RFC 3665 3.1 (no proxies): INVITE / 180 / 200 / ACK / RTP / BYE / 200
        src, sport, dport, data = self.invite()
        start, hdrs, body = parse(data)
        self.assertEqual(src, self.me)
        self.assertIn("SIP/2.0/UDP %s:5060;" % self.me, hdrs["via"])
        self.assertEqual(hdrs["contact"], "<sip:alice@%s:5060>" % self.me)
        self.assertIn(b"c=IN IP4 %s\r\n" % self.me.encode(), body)
        self.assertIn(b"o=user 2890844526 2890844526 IN IP4 %s\r\n" % self.me.encode(), body)
        self.assertIn(b"m=audio 49170 RTP/AVP 0", body)       # PAT kept the port
        self.assertEqual(int(hdrs["content-length"]), len(body))
        # no media before the answer
        self.assertEqual(self.b2a(b"\x80" * 20, sport=3456, dport=49170), [])
        ringing = msg("SIP/2.0 180 Ringing", self.me, contact="bob@%s" % BOB)
        got = self.b2a(ringing)
        self.assertEqual(len(got), 1)
        # our Via comes back to alice in her own form
        self.assertIn("SIP/2.0/UDP %s:5060;" % ALICE, parse(got[0][3])[1]["via"])
        got = self.answer()
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0][3], msg("SIP/2.0 200 OK", ALICE, contact="bob@%s:5060" % BOB,
                                        body=sdp(BOB, 3456)))
        ack = msg("ACK sip:bob@%s SIP/2.0" % BOB, ALICE, cseq="1 ACK")
        self.assertEqual(len(self.a2b(ack)), 1)
        # RTP and RTCP both ways
        rtp = b"\x80\x00" + b"\x01" * 170
        self.assertEqual([(u[1], u[2], u[3]) for u in self.b2a(rtp, sport=3456, dport=49170)],
                         [(3456, 49170, rtp)])
        self.assertEqual([(u[0], u[1], u[2]) for u in self.a2b(rtp, sport=49170, dport=3456)],
                         [(self.me, 49170, 3456)])
        self.assertEqual(len(self.a2b(rtp, sport=49171, dport=3457)), 1)
        self.assertEqual(len(self.b2a(rtp, sport=3457, dport=49171)), 1)
        # media from a third host is not admitted
        self.assertEqual(self.b2a(rtp, sport=3456, dport=49170, host=self.eve), [])
        detail = self.net.show("sessions detail")
        self.assertIn("sip-rtp", detail)
        self.assertIn("sip-rtcp", detail)
        self.assertIn("SIP 200 INVITE", detail.replace("ACK", "200 INVITE")
                      if "SIP ACK" in detail else detail)
        # the call keeps the signalling session past the UDP idle time
        self.net.advance(25)
        self.assertEqual(len(self.b2a(rtp, sport=3456, dport=49170)), 1)
        self.assertEqual(len(self.a2b(rtp, sport=49170, dport=3456)), 1)
        self.net.advance(40)
        # BYE from bob reaches alice and closes the media
        bye = msg("BYE sip:alice@%s:5060 SIP/2.0" % self.me, BOB, cseq="1 BYE")
        got = self.b2a(bye)
        self.assertEqual(len(got), 1)
        self.assertTrue(parse(got[0][3])[0].startswith("BYE sip:alice@%s:5060 " % ALICE))
        self.assertEqual(self.b2a(rtp, sport=3456, dport=49170), [])
        self.assertNotIn("sip-rtp", self.net.show("sessions"))
        self.assertEqual(len(self.a2b(msg("SIP/2.0 200 OK", BOB, cseq="1 BYE"))), 1)

    def test_proxy_authentication_flow(self):
        # RFC 3665 3.2 shape: INVITE / 407 / ACK / INVITE (CSeq 2) / 100 /
        # 180 / 200 / ACK: the challenged attempt ends the call state, the
        # second offer/answer opens the media
        self.invite(call_id="auth1")
        self.assertEqual(len(self.b2a(msg("SIP/2.0 407 Proxy Authentication Required", self.me,
                                          call_id="auth1"))), 1)
        self.assertEqual(len(self.a2b(msg("ACK sip:bob@%s SIP/2.0" % BOB, ALICE, call_id="auth1",
                                          cseq="1 ACK"))), 1)
        inv2 = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, call_id="auth1", cseq="2 INVITE",
                   contact="alice@%s:5060" % ALICE, body=sdp(ALICE, 49170),
                   extra='Proxy-Authorization: Digest username="alice", realm="atlanta.example.com"')
        self.assertEqual(len(self.a2b(inv2)), 1)
        for code in ("100 Trying", "180 Ringing"):
            self.assertEqual(len(self.b2a(msg("SIP/2.0 " + code, self.me, call_id="auth1",
                                              cseq="2 INVITE"))), 1)
        ok = msg("SIP/2.0 200 OK", self.me, call_id="auth1", cseq="2 INVITE",
                 contact="bob@%s:5060" % BOB, body=sdp(BOB, 3456))
        self.assertEqual(len(self.b2a(ok)), 1)
        self.assertEqual(len(self.b2a(b"\x80" * 30, sport=3456, dport=49170)), 1)

    def test_late_offer_in_200_answer_in_ack(self):
        inv = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, call_id="late1",
                  contact="alice@%s:5060" % ALICE)
        self.assertEqual(len(self.a2b(inv)), 1)
        ok = msg("SIP/2.0 200 OK", self.me, call_id="late1", contact="bob@%s:5060" % BOB,
                 body=sdp(BOB, 3456))
        self.assertEqual(len(self.b2a(ok)), 1)
        self.assertEqual(self.b2a(b"\x80" * 30, sport=3456, dport=49170), [])   # no answer yet
        ack = msg("ACK sip:bob@%s SIP/2.0" % BOB, ALICE, call_id="late1", cseq="1 ACK",
                  body=sdp(ALICE, 49170))
        got = self.a2b(ack)
        self.assertEqual(len(got), 1)
        self.assertIn(b"c=IN IP4 %s" % self.me.encode(), got[0][3])
        self.assertEqual(len(self.b2a(b"\x80" * 30, sport=3456, dport=49170)), 1)
        self.assertEqual(len(self.a2b(b"\x80" * 30, sport=49170, dport=3456)), 1)

    def test_media_server_other_than_the_signalling_peer(self):
        # a provider's media server (not the SIP peer) sends first: the
        # pinhole admits it from the answer's c= address, and under PAT the
        # reserved media port is not tied to the signalling peer
        media = self.net.host(OUTSIDE, "172.22.1.50", 5)
        self.invite(call_id="ms1")
        ok = msg("SIP/2.0 200 OK", self.me, call_id="ms1", contact="bob@%s:5060" % BOB,
                 body=sdp("172.22.1.50", 30000))
        self.assertEqual(len(self.b2a(ok)), 1)
        rtp = b"\x80" * 30
        got = self.b2a(rtp, sport=30000, dport=49170, host=media)
        self.assertEqual([(u[0], u[1], u[2]) for u in got], [("172.22.1.50", 30000, 49170)])
        self.assertEqual(self.b2a(rtp, sport=30000, dport=49170), [])      # not from bob

    def test_early_media_and_busy_closes_pinholes(self):
        self.invite(call_id="busy1")
        got = self.answer(call_id="busy1", code="183 Session Progress")
        self.assertEqual(len(got), 1)
        rtp = b"\x80" * 40
        self.assertEqual(len(self.b2a(rtp, sport=3456, dport=49170)), 1)
        self.assertEqual(len(self.b2a(msg("SIP/2.0 486 Busy Here", self.me, call_id="busy1"))), 1)
        self.assertEqual(self.b2a(rtp, sport=3456, dport=49170), [])
        self.assertEqual(self.b2a(rtp, sport=3457, dport=49171), [])

    def test_cancel_closes_pinholes(self):
        self.invite(call_id="c1")
        self.answer(call_id="c1", code="183 Session Progress")
        cancel = msg("CANCEL sip:bob@%s SIP/2.0" % BOB, ALICE, call_id="c1", cseq="1 CANCEL")
        self.assertEqual(len(self.a2b(cancel)), 1)
        self.assertEqual(self.b2a(b"\x80" * 40, sport=3456, dport=49170), [])

    def test_registration_keeps_pat_entry_and_session_alive(self):
        reg = msg("REGISTER sip:registrar.biloxi.example.com SIP/2.0", ALICE, call_id="reg1",
                  cseq="1 REGISTER", contact="alice@%s:5060" % ALICE, extra="Expires: 1800")
        got = self.a2b(reg)
        self.assertEqual(len(got), 1)
        self.assertEqual(parse(got[0][3])[1]["contact"], "<sip:alice@%s:5060>" % self.me)
        ok = msg("SIP/2.0 200 OK", self.me, call_id="reg1", cseq="1 REGISTER",
                 contact="alice@%s:5060>;expires=900" % self.me)
        self.assertEqual(len(self.b2a(ok)), 1)
        self.assertIn("registered", self.net.show("sessions detail"))
        # far beyond udp idle-time and NAT udp-timeout (300 s): the
        # registrar can still reach alice at her registered contact
        self.net.advance(800, step=10)
        inv = msg("INVITE sip:alice@%s:5060 SIP/2.0" % self.me, BOB, call_id="in1",
                  body=sdp(BOB, 5004))
        got = self.b2a(inv)
        self.assertEqual(len(got), 1)
        self.assertTrue(parse(got[0][3])[0].startswith("INVITE sip:alice@%s:5060 " % ALICE))
        # after the registration expires, the session goes
        self.net.advance(1000, step=10)
        self.assertNotIn(" sip ", self.net.show("sessions"))
        self.assertEqual(self.b2a(inv), [])

    def test_malformed_dropped_and_counted(self):
        good = msg("OPTIONS sip:bob@%s SIP/2.0" % BOB, ALICE, cseq="1 OPTIONS")
        bad = [
            good.replace(b"Content-Length: 0", b"Content-Length: 10"),
            good.replace(b"Content-Length: 0", b"Content-Length: x"),
            good.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 0"),
            good.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\n 70"),     # folded
            good.replace(b"Max-Forwards: 70", b"X-Junk: " + b"a" * 9000),
            good.replace(b"Max-Forwards: 70", b"Max-Forwards 70"),
            good.replace(b"Call-ID: a84b4c76e66710\r\n", b""),
            good.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),
            good.replace(b"\r\nTo:", b"\nTo:"),
            b"GET / HTTP/1.0\r\n\r\n",
            b"\x16\x03\x01junk",
        ]
        for i, m in enumerate(bad):
            self.assertEqual(self.a2b(m, sport=5060), [], (i, m))
        self.assertEqual(self.net.app.sessions.stats.drops.get("sip-bad-content-length"), 3)
        self.assertTrue(self.drops("sip-folded-header"))
        self.assertTrue(self.drops("sip-header-too-long"))
        self.assertEqual(self.a2b(good)[0][3][:8], b"OPTIONS ")
        # a malformed message from the outside on the live session is dropped too
        self.assertEqual(self.b2a(bad[0].replace(b"OPTIONS sip", b"INFO sip")), [])

    def test_multipart_and_bad_sdp_refused(self):
        body = b"--x\r\nContent-Type: application/sdp\r\n\r\n" + sdp(ALICE, 4000) + b"--x--\r\n"
        m = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, body=body).replace(
            b"Content-Type: application/sdp", b"Content-Type: multipart/mixed;boundary=x", 1)
        self.assertEqual(self.a2b(m), [])
        m = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE,
                body=sdp(ALICE, 4000).replace(b"m=audio 4000", b"m=audio 4000/2"))
        self.assertEqual(self.a2b(m), [])
        self.assertTrue(self.drops("sip-unsupported-body"))
        self.assertTrue(self.drops("sip-bad-sdp"))

    def test_evasion(self):
        inv = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, body=sdp(ALICE, 49170))
        # a pinhole toward another inside host, or a privileged port: refused
        other = sdp(ALICE, 49170).replace(b"c=IN IP4 10.10.10.2", b"c=IN IP4 10.10.10.25")
        for bad, why in ((msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, body=other),
                          "sip-non-matching-address"),
                         (inv.replace(b"m=audio 49170", b"m=audio 22222").replace(
                             b"m=audio 22222", b"m=audio 00022"), "sip-privileged-port"),
                         # two messages in one datagram: the second is no body
                         (inv + inv, "sip-bad-content-length")):
            self.assertEqual(self.a2b(bad), [], why)
            self.assertTrue(self.drops(why), why)
        # compact header forms are rewritten like the long ones
        compact = (inv.replace(b"Via:", b"v:").replace(b"Content-Length:", b"l:")
                   .replace(b"Call-ID:", b"i:"))
        compact = compact.replace(b"Max-Forwards: 70", b"m: <sip:alice@%s:5060>" % ALICE.encode())
        got = self.a2b(compact)
        self.assertEqual(len(got), 1)
        start, hdrs, body = parse(got[0][3])
        self.assertIn("SIP/2.0/UDP %s:5060" % self.me, hdrs["v"])
        self.assertEqual(hdrs["m"], "<sip:alice@%s:5060>" % self.me)
        self.assertEqual(int(hdrs["l"]), len(body))

    def test_fragmented_invite_is_reassembled_and_inspected(self):
        # a SIP datagram in IP fragments is judged whole (virtual
        # reassembly): rewritten like any other, never passed unseen
        self.a2b(msg("OPTIONS sip:bob@%s SIP/2.0" % BOB, ALICE, cseq="1 OPTIONS"))
        big = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, body=sdp(ALICE, 49170),
                  extra="X-Pad: " + "p" * 1600)
        got = self.a2b(big)
        self.assertEqual(len(got), 1)
        self.assertIn(b"c=IN IP4 %s\r\n" % self.me.encode(), got[0][3])
        bad = big.replace(b"Content-Length: ", b"Content-Length: 1")
        self.assertEqual(self.a2b(bad), [])

    def test_reinvite_with_new_media_replaces_the_pinholes(self):
        self.invite()
        self.answer()
        self.assertEqual(len(self.b2a(b"\x80" * 30, sport=3456, dport=49170)), 1)
        # a session refresh with the same SDP keeps everything
        reinv = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, cseq="2 INVITE",
                    body=sdp(ALICE, 49170, sess="2890844527"))
        self.a2b(reinv)
        self.b2a(msg("SIP/2.0 200 OK", self.me, cseq="2 INVITE", body=sdp(BOB, 3456)))
        self.assertEqual(len(self.b2a(b"\x80" * 30, sport=3456, dport=49170)), 1)
        # new ports: the old channels close, the new ones open
        for i in range(3, 40):                   # and never pile up
            self.a2b(msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, cseq="%d INVITE" % i,
                         body=sdp(ALICE, 40000 + 2 * i)))
            self.b2a(msg("SIP/2.0 200 OK", self.me, cseq="%d INVITE" % i,
                         body=sdp(BOB, 50000 + 2 * i)))
        self.assertEqual(self.b2a(b"\x80" * 30, sport=3456, dport=49170), [])
        self.assertEqual(len(self.b2a(b"\x80" * 30, sport=50078, dport=40078)), 1)
        self.assertLessEqual(self.net.app.sessions.pinhole_count, 4)

    def test_calls_bounded_oldest_evicted(self):
        for i in range(sip.MAX_CALLS + 1):
            self.invite(call_id="call%d" % i, port=20000 + 2 * i)
            self.answer(call_id="call%d" % i, port=30000 + 2 * i)
        # the first call's media was closed to make room; the last works
        self.assertEqual(self.b2a(b"\x80" * 30, sport=30000, dport=20000), [])
        n = sip.MAX_CALLS
        self.assertEqual(len(self.b2a(b"\x80" * 30, sport=30000 + 2 * n, dport=20000 + 2 * n)), 1)

    def test_show_and_audit_trail(self):
        from tests.test_sessions import capture_logs
        out = self.net.app.show_ip_inspect("name", "IN-OUT")
        self.assertIn("sip alert is on audit-trail is on timeout 30", out)
        lines = capture_logs(self)
        self.invite()
        self.answer()
        self.b2a(b"\x80" * 30, sport=3456, dport=49170)
        self.a2b(msg("OPTIONS x SIP/2.0", ALICE, cseq="2 OPTIONS", clen=5))
        self.b2a(msg("BYE sip:alice@%s:5060 SIP/2.0" % self.me, BOB, cseq="1 BYE"))
        self.assertIn("%%FW-6-SESS_AUDIT_TRAIL_START: Start sip session: initiator (%s:5060) "
                      "-- responder (%s:5060)" % (ALICE, BOB), lines)
        self.assertIn("%%FW-6-SESS_AUDIT_TRAIL_START: Start sip-rtp session: initiator "
                      "(%s:3456) -- responder (%s:49170)" % (BOB, self.me), lines)
        self.assertTrue(any(x.startswith("%FW-6-SESS_AUDIT_TRAIL: Stop sip-rtp session")
                            for x in lines), lines)
        self.assertIn("%%FW-3-SIP_MALFORMED: Malformed SIP message (sip-bad-content-length) "
                      "dropped -- initiator %s:5060 responder %s:5060" % (ALICE, BOB), lines)


class SipOptions(ApplianceCase):
    """``alert off`` silences SIP_MALFORMED (the drop stays); ``timeout N``
    is the signalling session's idle time."""

    inspect = "ip inspect name IN-OUT sip alert off timeout 90\n"
    hosts = PHONES

    def test_alert_off_and_timeout(self):
        from tests.test_sessions import capture_logs
        lines = capture_logs(self)
        self.alice.send_udp(BOB, 5060, 5060, msg("OPTIONS x SIP/2.0", ALICE, cseq="1 OPTIONS"))
        self.alice.send_udp(BOB, 5060, 5060, msg("OPTIONS x SIP/2.0", ALICE, cseq="2 OPTIONS",
                                                 clen=9))
        self.net.pump()
        self.assertEqual([x for x in lines if "SIP_MALFORMED" in x], [])
        self.assertEqual(self.net.app.sessions.stats.drops.get("sip-bad-content-length"), 1)
        self.net.advance(60)
        self.assertIn(" sip ", self.net.show("sessions"))       # 90 s, not 30
        self.net.advance(40)
        self.assertNotIn(" sip ", self.net.show("sessions"))


class SipThroughZoneBasedFirewall(SipThroughAppliance):
    """``class-map type inspect`` / ``match protocol sip``: the same call
    flows through a LAN-WAN zone pair (no WAN-LAN policy: only sessions and
    their pinholes let anything in)."""

    zbf = "sip"

    def test_show_and_audit_trail(self):
        pass                       # ip inspect name only

    def test_malformed_dropped_and_counted(self):
        pass                       # the ZBF drops non-SIP UDP to 5060 before SIP sees it


class SipTcpThroughAppliance(ApplianceCase):
    """SIP over TCP through PAT: the INVITE grows (10.10.10.2 ->
    172.22.1.16 in Via, Contact, o=, c=), the engine moves the sequence
    numbers, and later messages both ways arrive intact."""

    inspect = SIP_INSPECT
    hosts = PHONES

    def setUp(self):
        super().setUp()
        self.srv = Recorder()
        self.bob.listen(5060, lambda: self.srv)

    def test_call_over_tcp(self):
        c = self.connect(self.alice, BOB, 5060, 40000)
        inv = msg("INVITE sip:bob@%s SIP/2.0" % BOB, ALICE, 40000, transport="TCP",
                  contact="alice@%s:40000;transport=tcp" % ALICE, body=sdp(ALICE, 49170))
        for i in range(0, len(inv), 100):         # several segments
            c.send(inv[i:i + 100])
            self.net.pump()
        got = bytes(self.srv.data)
        start, hdrs, body = parse(got)
        self.assertIn("SIP/2.0/TCP %s:40000;" % GLOBAL, hdrs["via"])
        self.assertIn(b"c=IN IP4 %s\r\n" % GLOBAL.encode(), body)
        self.assertEqual(int(hdrs["content-length"]), len(body))
        self.assertEqual(len(got), len(inv) + 4)
        conn = [x for x in self.bob.conns.values()][0]
        ok = msg("SIP/2.0 200 OK", GLOBAL, 40000, transport="TCP",
                 contact="bob@%s:5060;transport=tcp" % BOB, body=sdp(BOB, 3456))
        conn.send(ok)
        self.net.pump()
        self.assertIn(b"Via: SIP/2.0/TCP %s:40000;" % ALICE.encode(), bytes(c.data))
        ack = msg("ACK sip:bob@%s SIP/2.0" % BOB, ALICE, 40000, transport="TCP", cseq="1 ACK")
        c.send(ack)
        self.net.pump()
        self.assertTrue(bytes(self.srv.data).endswith(
            ack.replace(ALICE.encode() + b":40000", GLOBAL.encode() + b":40000")))
        self.assertEqual(c.state, "ESTABLISHED")
        # media pinhole opened from the TCP signalling
        n = len(self.alice.udp)
        self.bob.send_udp(GLOBAL, 3456, 49170, b"\x80" * 30)
        self.net.pump()
        self.assertEqual(len(self.alice.udp), n + 1)


class SipThroughApplianceNoNat(SipThroughAppliance):
    nat = False


# --------------------------------------------------------------------------
# the core and the TCP inspector on their own

def tcp_engine(nat=None):
    ctx = InspectContext(client_addr=0x0A0A0A02, client_port=40000, server_addr=0xAC160101,
                         server_port=5060, rule=InspectProtocol("sip"))
    if nat:
        ctx.client_seen = (0xAC160110, 40001)
        ctx.nat_map = lambda d, proto, addr, port: (0xAC160110, port + 10000) \
            if (d == CLIENT and addr == 0x0A0A0A02) else (addr, port)
    return Engine(sip.factory(ctx))


def released(e, d):
    out = bytearray(e.inp[d][:e.rel[d]])
    for ed in sorted(e.edits[d], key=lambda x: x.offset, reverse=True):
        if ed.offset + ed.length <= len(out):
            out[ed.offset:ed.offset + ed.length] = ed.data
    return bytes(out)


INV_TCP = msg("INVITE sip:bob@172.22.1.1 SIP/2.0", "10.10.10.2", 40000, transport="TCP",
              contact="alice@10.10.10.2:40000;transport=tcp", body=sdp("10.10.10.2", 49170))
OK_TCP = msg("SIP/2.0 200 OK", "10.10.10.2", 40000, transport="TCP",
             contact="bob@172.22.1.1:5060;transport=tcp", body=sdp("172.22.1.1", 3456))


class SipTcpInspector(unittest.TestCase):
    def test_every_segmentation_no_nat(self):
        for cut in range(1, len(INV_TCP)):
            e = tcp_engine()
            e.feed(CLIENT, INV_TCP[:cut])
            self.assertEqual(e.rel[CLIENT], 0, cut)             # held until complete
            e.feed(CLIENT, INV_TCP[cut:])
            self.assertEqual(released(e, CLIENT), INV_TCP, cut)
            e.feed(SERVER, OK_TCP)
            self.assertEqual(released(e, SERVER), OK_TCP)
            self.assertEqual(len(e.expect), 4, cut)             # RTP+RTCP both ways
            self.assertFalse(e.reset)

    def test_every_segmentation_nat_rewrites_and_fixes_length(self):
        want = None
        for cut in range(1, len(INV_TCP), 7):
            e = tcp_engine(nat=True)
            e.feed(CLIENT, INV_TCP[:cut])
            e.feed(CLIENT, INV_TCP[cut:] + b"\r\n\r\n")          # + keep-alive
            out = released(e, CLIENT)
            if want is None:
                want = out
            self.assertEqual(out, want, cut)
        self.assertTrue(want.endswith(b"\r\n\r\n"))
        start, hdrs, body = parse(want[:-4])
        self.assertIn("SIP/2.0/TCP 172.22.1.16:40001;", hdrs["via"])
        self.assertIn("alice@172.22.1.16:40001;transport=tcp", hdrs["contact"])
        self.assertIn(b"m=audio 59170 RTP/AVP 0", body)
        self.assertNotIn(b"a=rtcp", body)                   # RTCP kept next to RTP
        self.assertEqual(int(hdrs["content-length"]), len(body))

    def test_two_messages_in_one_segment(self):
        e = tcp_engine()
        opt = msg("OPTIONS sip:bob@172.22.1.1 SIP/2.0", "10.10.10.2", 40000,
                  transport="TCP", cseq="2 OPTIONS")
        e.feed(CLIENT, INV_TCP + opt[:10])
        self.assertEqual(e.rel[CLIENT], len(INV_TCP))
        e.feed(CLIENT, opt[10:])
        self.assertEqual(released(e, CLIENT), INV_TCP + opt)

    def test_malformed_resets(self):
        for bad in (INV_TCP.replace(b"Content-Length: ", b"X: "),
                    INV_TCP.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\n\t70"),
                    b"INVITE sip:x SIP/2.0\r\n" + b"X: y\r\n" * 3000,
                    INV_TCP.replace(b"Content-Length: %d" % len(sdp("10.10.10.2", 49170)),
                                    b"Content-Length: 99999")):
            e = tcp_engine()
            e.feed(CLIENT, bad)
            self.assertTrue(e.reset, bad[:60])
            self.assertEqual(e.rel[CLIENT], 0)
            self.assertTrue(any(x[2] == "SIP_MALFORMED" for x in e.log))


class SipConfig(unittest.TestCase):
    def test_accepted(self):
        model, diags = parse_config("ip inspect name X sip alert off audit-trail on timeout 90\n")
        self.assertEqual([d.format() for d in diags], [])
        p = model.inspect_rules["X"].get("sip")
        self.assertEqual((p.alert, p.audit_trail, p.timeout), (False, True, 90))

    def test_router_traffic_refused_like_ios(self):
        for proto in ("sip", "rtsp", "pptp", "dns"):
            model, diags = parse_config("ip inspect name X %s router-traffic\n" % proto)
            msgs = [d.format() for d in diags if d.is_error]
            self.assertTrue(any("tcp, udp and icmp only" in m for m in msgs), msgs)


class HostileBytes(unittest.TestCase):
    """Random and mutated messages never raise out of the inspectors and
    never open anything they should not."""

    def test_fuzz(self):
        from hypothesis import given, settings, strategies as st
        from cbac.inspect import dns, pptp, rtsp
        seeds = [msg("INVITE sip:bob@172.22.1.1 SIP/2.0", "10.10.10.2",
                     body=sdp("10.10.10.2", 49170)), INV_TCP, OK_TCP]

        def ctx():
            c = InspectContext(client_addr=0x0A0A0A02, client_port=5060,
                               server_addr=0xAC160101, server_port=5060)
            c.nat_map = lambda d, proto, addr, port: (0xAC160110, port)
            return c

        @settings(max_examples=300, deadline=None)
        @given(st.sampled_from(seeds), st.lists(st.tuples(st.integers(0, 2000),
                                                          st.binary(max_size=4)), max_size=6),
               st.integers(0, 1))
        def check(seed, muts, d):
            data = bytearray(seed)
            for pos, b in muts:
                pos = pos % (len(data) + 1)
                data[pos:pos + len(b)] = b
            data = bytes(data)
            g = sip.SipGuard(ctx())
            verdict, why = g.datagram(d, data)
            self.assertIn(verdict, (sip.PASS, sip.DROP, sip.EDIT))
            for factory in (sip.factory, rtsp.factory, pptp.factory, dns.tcp_factory):
                insp = factory(ctx())
                for i in range(0, len(data), 97):
                    v = insp.data_received(d, data[i:i + 97])
                    if v.reset:
                        break
        check()
