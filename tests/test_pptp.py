"""PPTP inspection (cbac/inspect/pptp.py) and its GRE (cbac/inspect/gre.py):
every segmentation of a control dialogue, refused messages, and through
the whole appliance (simulated hosts): two inside PNSs using the same
Call ID toward one PAC through PAT get distinct Call IDs outside, their
enhanced GRE passes both ways translated by Call ID, unknown GRE is
dropped, Call-Disconnect-Notify and the end of the control connection
close the call."""

import struct

from scapy.all import IP, Raw, raw
from twisted.trial import unittest

from cbac.config.model import InspectProtocol
from cbac.config.parser import parse_config
from cbac.inspect import pptp
from cbac.inspect.api import CLIENT, SERVER, InspectContext
from tests.apphost import REMOTE, ApplianceCase
from tests.hosts import INSIDE, OUTSIDE, FramedServer
from tests.test_ftp import Engine
from tests.test_sip import released

PAC = REMOTE
MAGIC = 0x1A2B3C4D


def ctl(ctype, body=b""):
    n = pptp.LENGTHS[ctype]
    body = body.ljust(n - 12, b"\0")
    return struct.pack("!HHIHH", n, 1, MAGIC, ctype, 0) + body


def sccrq():
    return ctl(1, struct.pack("!HH", 0x100, 0))


def sccrp(result=1):
    return ctl(2, struct.pack("!HBB", 0x100, result, 0))


def ocrq(call_id, serial=1):
    return ctl(7, struct.pack("!HH", call_id, serial))


def ocrp(call_id, peer, result=1):
    return ctl(8, struct.pack("!HHBB", call_id, peer, result, 0))


def cdn(call_id):
    return ctl(13, struct.pack("!HBB", call_id, 1, 0))


def sli(peer):
    return ctl(15, struct.pack("!H", peer))


def gre(src, dst, call_id, payload=b"\xff\x03\x00\x21" + b"p" * 40, seq=1):
    g = struct.pack("!BBHHHI", 0x30, 0x01, 0x880B, len(payload), call_id, seq) + payload
    return bytearray(raw(IP(src=src, dst=dst, proto=47, id=7) / Raw(g)))


class FakeCalls:
    def __init__(self, offset=0):
        self.offset = offset
        self.opened = []
        self.closed = []

    def map(self, pns):
        return pns + self.offset

    def release(self, mapped):
        pass

    def open(self, pns, mapped, pac):
        self.opened.append((pns, mapped, pac))
        return True

    def close(self, pac_id=None, pns_id=None):
        self.closed.append(pac_id)


def engine(offset=0):
    ctx = InspectContext(client_addr=0x0A0A0A02, client_port=40000, server_addr=0xAC160101,
                         server_port=1723, rule=InspectProtocol("pptp"))
    ctx.pptp_calls = FakeCalls(offset)
    e = Engine(pptp.factory(ctx))
    e.calls = ctx.pptp_calls
    return e


class PptpInspector(unittest.TestCase):
    def test_every_segmentation(self):
        cs = sccrq() + ocrq(7) + sli(300)
        ss = sccrp() + ocrp(300, 7 + 5) + cdn(300)
        for cut in range(1, len(ss)):
            e = engine(offset=5)
            e.feed(CLIENT, cs[:156])
            e.feed(SERVER, ss[:156])
            e.feed(CLIENT, cs[156:156 + min(cut, 168)])
            e.feed(CLIENT, cs[156 + min(cut, 168):])
            e.feed(SERVER, ss[156:cut] if cut > 156 else b"")
            e.feed(SERVER, ss[max(cut, 156):])
            self.assertFalse(e.reset, (cut, e.log))
            self.assertEqual(released(e, CLIENT), sccrq() + ocrq(12) + sli(300), cut)
            self.assertEqual(released(e, SERVER), sccrp() + ocrp(300, 7) + cdn(300), cut)
            self.assertEqual(e.calls.opened, [(7, 12, 300)])
            self.assertEqual(e.calls.closed, [300])

    def test_transition_table(self):
        from cbac.inspect.fsm import IllegalTransition
        e = engine()
        e.feed(CLIENT, sccrq())
        e.feed(SERVER, sccrp())
        self.assertEqual(e.insp.state, pptp.ESTABLISHED)
        with self.assertRaises(IllegalTransition):
            e.insp._go(pptp.IDLE)                # not in pptp.TRANSITIONS
        e.feed(CLIENT, ctl(3))                   # Stop-Control-Connection-Request
        self.assertEqual(e.insp.state, pptp.STOPPING)

    def test_refused(self):
        cases = [
            [(CLIENT, ocrq(1))],                                    # before the handshake
            [(CLIENT, sccrq()), (SERVER, sccrp()), (SERVER, ocrq(1))],   # wrong direction
            [(CLIENT, sccrq()), (SERVER, sccrp()), (SERVER, ocrp(1, 99))],  # unknown call
            [(CLIENT, sccrq()[:8] + b"\x00\x00\x00\x00" + sccrq()[12:])],  # bad magic
            [(CLIENT, struct.pack("!H", 500) + b"x" * 498)],          # bad length
            [(CLIENT, sccrq()), (SERVER, sccrp()), (CLIENT, ctl(7)[:2] + b"\x00\x02"
                                                    + ctl(7)[4:])],   # management message
            [(CLIENT, sccrq()), (SERVER, sccrp(result=2)), (CLIENT, ocrq(1))],  # refused start
        ]
        for i, dialogue in enumerate(cases):
            e = engine()
            for d, data in dialogue:
                e.feed(d, data)
            self.assertTrue(e.reset, i)
            self.assertTrue(any(x[2] == "PPTP_MALFORMED" for x in e.log), i)
            self.assertEqual(e.calls.opened, [])


class Pac(FramedServer):
    """A PPTP server's control channel: answers SCCRQ and OCRQ (its own
    Call IDs from 100 up), records what it got."""

    def __init__(self, log):
        super().__init__()
        self.log = log
        self.next = 100

    def frame_length(self, buf):
        if len(buf) >= 2 and len(buf) >= struct.unpack("!H", buf[:2])[0]:
            return struct.unpack("!H", buf[:2])[0]
        return None

    def message(self, conn, m):
        ctype = struct.unpack("!H", m[8:10])[0]
        self.log.append(m)
        if ctype == 1:
            conn.send(sccrp())
        elif ctype == 7:
            cid = struct.unpack("!H", m[12:14])[0]
            conn.send(ocrp(self.next, cid))
            self.next += 1


class PptpThroughAppliance(ApplianceCase):
    """Two PNSs (a, b) inside behind PAT, the PAC outside."""

    inspect = "ip inspect name IN-OUT pptp audit-trail on\n"
    hosts = {"a": (INSIDE, "10.10.10.2", 2), "b": (INSIDE, "10.10.10.3", 4),
             "pac": (OUTSIDE, PAC, 1)}

    def setUp(self):
        super().setUp()
        self.log = []
        self.server = Pac(self.log)
        self.pac.listen(1723, lambda: self.server)

    def call(self, host, sport, call_id):
        c = self.connect(host, PAC, 1723, sport)
        c.send(sccrq())
        self.net.pump()
        c.send(ocrq(call_id))
        self.net.pump()
        return c

    def gre_to(self, sender, src, dst, call_id, receiver):
        return [p for p in self.ip(sender, gre(src, dst, call_id), receiver) if p[9] == 47]

    def test_two_pns_same_call_id_through_pat(self):
        ca = self.call(self.a, 40000, 1)
        cb = self.call(self.b, 40001, 1)
        ocrqs = [m for m in self.log if m[8:10] == b"\x00\x07"]
        self.assertEqual([struct.unpack("!H", m[12:14])[0] for m in ocrqs], [1, 2])
        # each PNS got its OCRP with its own Call ID back
        self.assertEqual(bytes(ca.data)[156:], ocrp(100, 1))
        self.assertEqual(bytes(cb.data)[156:], ocrp(101, 1))
        # GRE PNS -> PAC: key = the PAC's Call ID, source = the PAT address
        got = self.gre_to(self.a, "10.10.10.2", PAC, 100, self.pac)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0][12:16], bytes([172, 22, 1, 16]))
        # GRE PAC -> PNS: the mapped Call ID picks the host, key mapped back
        got = self.gre_to(self.pac, PAC, "172.22.1.16", 2, self.b)
        self.assertEqual(len(got), 1)
        self.assertEqual(struct.unpack("!H", got[0][26:28])[0], 1)
        self.assertEqual(self.gre_to(self.pac, PAC, "172.22.1.16", 2, self.a), [])
        got = self.gre_to(self.pac, PAC, "172.22.1.16", 1, self.a)
        self.assertEqual(len(got), 1)
        # unknown Call ID, or not enhanced GRE: dropped
        self.assertEqual(self.gre_to(self.pac, PAC, "172.22.1.16", 3, self.a)
                         + self.gre_to(self.pac, PAC, "172.22.1.16", 3, self.b), [])
        plain = gre(PAC, "172.22.1.16", 1)
        plain[20 + 1] = 0x00                      # version 0
        self.assertEqual(self.ip(self.pac, plain, self.a), [])
        detail = self.net.show("sessions detail")
        self.assertIn("pptp-gre", detail)
        self.assertIn("PNS call ID 1 (outside 2), PAC call ID 101", detail)
        # Call-Disconnect-Notify closes b's call only
        self.server.conn.send(cdn(101))
        self.net.pump()
        self.assertEqual(self.gre_to(self.pac, PAC, "172.22.1.16", 2, self.b), [])
        self.assertEqual(len(self.gre_to(self.pac, PAC, "172.22.1.16", 1, self.a)), 1)
        # the end of the control connection ends a's call
        self.net.app.sessions.clear()
        self.assertEqual(self.gre_to(self.pac, PAC, "172.22.1.16", 1, self.a), [])
        self.assertNotIn("pptp-gre", self.net.show("sessions"))


class PptpThroughZoneBasedFirewall(PptpThroughAppliance):
    """``match protocol pptp`` in a LAN-WAN zone pair: the calls' GRE
    follows the control session both ways (nothing WAN-LAN)."""
    zbf = "pptp"


class PptpSegmentation(PptpThroughAppliance):
    def test_two_pns_same_call_id_through_pat(self):
        pass

    def test_control_one_byte_per_segment(self):
        c = self.connect(self.a, PAC, 1723, 40000)
        for m in (sccrq(), ocrq(1)):
            for i in range(len(m)):
                c.send(m[i:i + 1])
                self.net.pump()
        self.assertEqual(bytes(c.data), sccrp() + ocrp(100, 1))
        self.assertEqual(len(self.gre_to(self.pac, PAC, "172.22.1.16", 1, self.a)), 1)

    def test_bad_control_message_resets_and_admits_no_gre(self):
        c = self.connect(self.a, PAC, 1723, 40000)
        c.send(sccrq())
        self.net.pump()
        c.send(ocrq(1)[:8] + b"\x00\x00\x00\x00" + ocrq(1)[12:])      # control type 0
        self.net.pump()
        self.assertTrue(c.reset)
        self.assertEqual(self.gre_to(self.pac, PAC, "172.22.1.16", 1, self.a), [])


class PptpTimeout(PptpThroughAppliance):
    inspect = "ip inspect name IN-OUT pptp timeout 100\n"

    def test_two_pns_same_call_id_through_pat(self):
        pass

    def test_gre_keeps_the_call_and_its_control_session(self):
        self.call(self.a, 40000, 1)
        for _ in range(4):                      # 4 x 50 s > the 100 s timeout
            self.net.advance(50, step=5)
            self.assertEqual(len(self.gre_to(self.pac, PAC, "172.22.1.16", 1, self.a)), 1)
        self.assertIn(" pptp SIS_OPEN", self.net.show("sessions"))
        self.net.advance(110, step=5)            # silence: control and call idle out
        self.assertEqual(self.gre_to(self.pac, PAC, "172.22.1.16", 1, self.a), [])
        self.assertEqual(self.net.show("sessions"), "")


class PptpConfig(unittest.TestCase):
    def test_accepted(self):
        model, diags = parse_config("ip inspect name X pptp alert on audit-trail off timeout 600\n")
        self.assertEqual([d.format() for d in diags], [])
        self.assertEqual(model.inspect_rules["X"].get("pptp").timeout, 600)
