"""RTSP inspection (cbac/inspect/rtsp.py): every segmentation of a SETUP
exchange, NAT rewrite of client_port both ways, interleaved data, TEARDOWN,
malformed messages; and through the whole appliance (simulated hosts,
PAT and no NAT): the UDP media of a SETUP passes only from the server to
the ports it was given, and stops after TEARDOWN."""

from twisted.trial import unittest

from cbac.config.model import InspectProtocol
from cbac.config.parser import parse_config
from cbac.inspect import rtsp
from cbac.inspect.api import CLIENT, SERVER, InspectContext
from tests.apphost import EVE, REMOTE, ApplianceCase
from tests.hosts import OUTSIDE, LineServer
from tests.test_ftp import Engine
from tests.test_sip import released

SERVER_IP = REMOTE

SETUP = (b"SETUP rtsp://172.22.1.1/movie/trackID=1 RTSP/1.0\r\nCSeq: 3\r\n"
         b"Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n")
REPLY = (b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 12345678;timeout=60\r\n"
         b"Transport: RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;"
         b"ssrc=1234\r\n\r\n")
DESCRIBE = b"DESCRIBE rtsp://172.22.1.1/movie RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"
SDP = b"v=0\r\no=- 1 1 IN IP4 172.22.1.1\r\ns=movie\r\nm=video 0 RTP/AVP 96\r\n"
DESCRIBED = (b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
             b"Content-Length: %d\r\n\r\n" % len(SDP)) + SDP
TEARDOWN = b"TEARDOWN rtsp://172.22.1.1/movie RTSP/1.0\r\nCSeq: 5\r\nSession: 12345678\r\n\r\n"


def engine(nat=False):
    ctx = InspectContext(client_addr=0x0A0A0A02, client_port=40000, server_addr=0xAC160101,
                         server_port=554, rule=InspectProtocol("rtsp"), server_own_addr=0xAC160101)
    if nat:
        ctx.client_seen = (0xAC160110, 40000)
        ctx.nat_map = lambda d, proto, addr, port: (0xAC160110, port + 1000)
    return Engine(rtsp.factory(ctx))


class RtspInspector(unittest.TestCase):
    def test_every_segmentation(self):
        stream_c = DESCRIBE + SETUP
        stream_s = DESCRIBED + REPLY
        for cut in range(1, max(len(stream_c), len(stream_s))):
            e = engine()
            e.feed(CLIENT, stream_c[:cut])
            e.feed(CLIENT, stream_c[cut:])
            e.feed(SERVER, stream_s[:cut])
            e.feed(SERVER, stream_s[cut:])
            self.assertEqual(released(e, CLIENT), stream_c, cut)
            self.assertEqual(released(e, SERVER), stream_s, cut)
            got = sorted((x.src, x.dst, x.dst_port, x.label) for x in e.expect)
            self.assertEqual(got, sorted([
                (0xAC160101, 0x0A0A0A02, 5000, "rtsp-rtp"),
                (0xAC160101, 0x0A0A0A02, 5001, "rtsp-rtcp"),
                (0x0A0A0A02, 0xAC160101, 6970, "rtsp-rtp"),
                (0x0A0A0A02, 0xAC160101, 6971, "rtsp-rtcp")]), cut)

    def test_nat_rewrites_client_port_both_ways(self):
        e = engine(nat=True)
        e.feed(CLIENT, SETUP)
        self.assertIn(b"client_port=6000-6001\r\n", released(e, CLIENT))
        e.feed(SERVER, REPLY.replace(b"client_port=5000-5001", b"client_port=6000-6001"))
        self.assertIn(b"client_port=5000-5001;server_port=6970-6971", released(e, SERVER))
        self.assertEqual(sorted(x.dst_port for x in e.expect if x.dst == 0xAC160110),
                         [6000, 6001])

    def test_interleaved_frames_pass_in_any_segmentation(self):
        frame = b"$\x00\x00\x10" + b"\x80" * 16
        stream = (SETUP.replace(b"RTP/AVP;unicast;client_port=5000-5001",
                                b"RTP/AVP/TCP;interleaved=0-1"))
        reply = (b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 1\r\n"
                 b"Transport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n")
        srv = reply + frame * 3 + b"RTSP/1.0 200 OK\r\nCSeq: 9\r\n\r\n" + frame
        for cut in range(1, len(srv)):
            e = engine()
            e.feed(CLIENT, stream)
            e.feed(SERVER, srv[:cut])
            e.feed(SERVER, srv[cut:])
            self.assertEqual(released(e, SERVER), srv, cut)
            self.assertEqual(e.expect, [])
            self.assertFalse(e.reset)

    def test_malformed_resets(self):
        for bad in (SETUP.replace(b"client_port=5000-5001", b"client_port=x"),
                    SETUP.replace(b"CSeq: 3", b"CSeq: 3\r\n 4"),
                    SETUP.replace(b"RTSP/1.0", b"RTSP/2.0"),
                    SETUP.replace(b"unicast;", b"unicast;destination=192.0.2.9;"),
                    b"DESCRIBE x RTSP/1.0\r\n" + b"A: b\r\n" * 2000,
                    DESCRIBE.replace(b"CSeq: 2", b"CSeq: 2\r\nContent-Length: 1\r\nContent-Length: 1")):
            e = engine()
            e.feed(CLIENT, bad)
            self.assertTrue(e.reset, bad[:80])
            self.assertEqual(e.rel[CLIENT], 0)
            self.assertTrue(any(x[2] == "RTSP_MALFORMED" for x in e.log))

    def test_reply_naming_ports_nobody_asked_for_resets(self):
        e = engine()
        e.feed(CLIENT, SETUP)
        e.feed(SERVER, REPLY.replace(b"client_port=5000-5001", b"client_port=22-23"))
        self.assertTrue(e.reset)
        self.assertEqual(e.expect, [])


class RtspServer(LineServer):
    """Records each request (up to its empty line) and answers 200 OK."""

    terminator = b"\r\n\r\n"

    def __init__(self):
        super().__init__()
        self.got = []

    def message(self, conn, req):
        self.got.append(req)
        cseq = [ln for ln in req.split(b"\r\n") if ln.startswith(b"CSeq")][0]
        if req.startswith(b"SETUP"):
            tr = [ln for ln in req.split(b"\r\n") if ln.startswith(b"Transport")][0]
            conn.send(b"RTSP/1.0 200 OK\r\n" + cseq + b"\r\nSession: 12345678\r\n" + tr
                      + b";server_port=6970-6971\r\n\r\n")
        else:
            conn.send(b"RTSP/1.0 200 OK\r\n" + cseq + b"\r\n\r\n")


class RtspThroughAppliance(ApplianceCase):
    inspect = "ip inspect name IN-OUT rtsp\n"
    hosts = dict(ApplianceCase.hosts, eve=(OUTSIDE, EVE, 3))

    def setUp(self):
        super().setUp()
        self.app = RtspServer()
        self.server.listen(554, lambda: self.app)

    def media(self, host=None, sport=6970, dport=5000):
        return self.udp(host or self.server, self.me, sport, dport, b"\x80" * 50, self.client)

    def test_setup_play_teardown(self):
        c = self.connect(self.client, SERVER_IP, 554, 40000)
        self.assertEqual(self.media(), [])                     # nothing before SETUP
        c.send(SETUP)
        self.net.pump()
        self.assertIn(b"server_port=6970-6971", bytes(c.data))
        self.assertEqual(len(self.media()), 1)
        self.assertEqual(len(self.media(dport=5001, sport=6971)), 1)
        self.assertEqual(self.media(host=self.eve), [])
        self.assertEqual(self.media(dport=5002), [])
        self.assertIn("rtsp-rtp", self.net.show("sessions detail"))
        self.assertIn("RTSP 200", self.net.show("sessions detail"))
        c.send(TEARDOWN)
        self.net.pump()
        self.assertEqual(self.media(), [])
        self.assertNotIn("rtsp-rtp", self.net.show("sessions"))


    def test_setup_one_byte_per_segment(self):
        c = self.connect(self.client, SERVER_IP, 554, 40002)
        for i in range(len(SETUP)):
            c.send(SETUP[i:i + 1])
            self.net.pump()
        self.assertEqual(self.app.got, [SETUP])
        self.assertIn(b"server_port=6970-6971", bytes(c.data))
        self.assertEqual(len(self.media()), 1)

    def test_malformed_setup_resets_and_opens_nothing(self):
        c = self.connect(self.client, SERVER_IP, 554, 40003)
        c.send(SETUP.replace(b"client_port=5000-5001", b"client_port=22-23"))
        self.net.pump()
        self.assertTrue(c.reset)
        self.assertEqual(self.app.got, [])
        self.assertEqual(self.media(dport=22), [])


class RtspThroughApplianceNoNat(RtspThroughAppliance):
    nat = False


class RtspThroughZoneBasedFirewall(RtspThroughAppliance):
    """``match protocol rtsp`` in a LAN-WAN zone pair (nothing WAN-LAN)."""
    zbf = "rtsp"


class RtspConfig(unittest.TestCase):
    def test_accepted_with_ios_default_timeout(self):
        model, diags = parse_config("ip inspect name X rtsp alert on audit-trail on timeout 120\n")
        self.assertEqual([d.format() for d in diags], [])
        p = model.inspect_rules["X"].get("rtsp")
        self.assertEqual((p.alert, p.audit_trail, p.timeout), (True, True, 120))
