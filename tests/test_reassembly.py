"""cbac.dataplane.reassembly on its own (the appliance-level tests are in
tests/test_evasion.py)."""

from scapy.all import IP, UDP, Ether, raw
from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.dataplane.reassembly import Reassembly, Settings, settings_from_interface
from cbac.config.model import Interface, Verbatim
from cbac.packet.view import parse_frame


MAC = "02:00:00:00:00:01"


def frags(payload_len=3000, cuts=None, ident=7):
    whole = raw(IP(src="1.1.1.1", dst="2.2.2.2", id=ident, flags=0) /
                UDP(sport=53, dport=5353) / (b"z" * payload_len))
    body = whole[20:]
    cuts = cuts or [(o, 1480) for o in range(0, len(body), 1480)]
    out = []
    for off, n in cuts:
        piece = body[off:off + n]
        more = off + len(piece) < len(body)
        p = IP(src="1.1.1.1", dst="2.2.2.2", id=ident, proto=17, frag=off // 8,
               flags="MF" if more else 0) / piece
        out.append(parse_frame(bytearray(raw(Ether(src=MAC, dst=MAC) / p))))
    return whole, out


class ReassemblyTests(unittest.TestCase):

    def setUp(self):
        self.clock = Clock()
        self.r = Reassembly(self.clock)

    def feed(self, pkts):
        return [self.r.add("e0", p) for p in pkts]

    def test_in_order_and_reverse(self):
        whole, ps = frags()
        res = self.feed(ps)
        self.assertEqual(res[:-1], [None] * (len(ps) - 1))
        self.assertEqual(bytes(res[-1][20:]), whole[20:])
        self.assertTrue(parse_frame(bytearray(raw(Ether(src=MAC, dst=MAC, type=0x800))) + res[-1], verify_ip=True))
        whole, ps = frags(ident=8)
        res = self.feed(list(reversed(ps)))
        self.assertEqual(bytes(res[-1][20:]), whole[20:])

    def test_duplicate_ignored_overlap_refused(self):
        whole, ps = frags()
        self.assertEqual(self.feed([ps[0], ps[0]]), [None, None])
        _, bad = frags(cuts=[(1472, 16)])
        self.assertEqual(self.feed(bad), ["vfr-overlap"])
        self.assertEqual(self.feed(ps[1:]), ["vfr-refused-datagram"] * (len(ps) - 1))
        self.clock.advance(4)
        self.assertEqual(self.r.expire(), {})

    def test_limits(self):
        self.r.configure("e0", Settings(max_fragments=2))
        _, ps = frags()
        self.assertEqual(self.feed(ps), [None, None, "vfr-too-many-fragments"])
        self.clock.advance(4)              # the refused datagram's entry goes
        self.r.configure("e0", Settings(max_reassemblies=2))
        for i in range(2):
            self.assertEqual(self.feed(frags(ident=100 + i)[1][:1]), [None])
        self.assertEqual(self.feed(frags(ident=200)[1][:1]), ["vfr-table-full"])
        self.clock.advance(3)
        self.assertEqual(self.r.expire(), {"e0": 2})
        self.assertEqual(self.feed(frags(ident=200)[1][:1]), [None])

    def test_settings_from_interface(self):
        im = Interface("Ethernet0", extra=[Verbatim(
            "ip virtual-reassembly max-reassemblies 64 max-fragments 8 timeout 5 drop-fragments")])
        st = settings_from_interface(im)
        self.assertEqual((st.max_reassemblies, st.max_fragments, st.timeout, st.drop_fragments),
                         (64, 8, 5, True))
        st = settings_from_interface(Interface("Ethernet1"))
        self.assertEqual((st.max_reassemblies, st.max_fragments, st.timeout, st.drop_fragments),
                         (16, 32, 3, False))
