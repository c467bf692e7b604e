"""Fuzzing the parsers: random bytes and mutations of valid frames
(truncation at every length, every single-bit flip, bogus IHL / total
length / TCP data offset) never raise anything but MalformedPacket, and
what does parse can be handled by the later stages (options, ICMP error
quoting, NAT rewrite, checksum completion, segmentation) without raising
anything else."""

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from cbac.packet import arp, build, icmp, ipv4, tcp, vnet
from cbac.packet.errors import MalformedPacket
from cbac.packet.rewrite import Rewrite
from cbac.packet.view import ACK, SYN, parse_frame, parse_ip_packet

SETTINGS = settings(max_examples=300, deadline=None)


def corpus():
    err_about = build.tcp_frame("10.0.0.1", "10.0.0.2", 1000, 80, 1, 2, ACK, b"x" * 20)
    return [
        build.tcp_frame("10.0.0.1", "10.0.0.2", 1000, 80, 1, 2, SYN, b"",
                        options=tcp.encode_options(1460, 7, True, (1, 2))),
        build.tcp_frame("10.0.0.1", "10.0.0.2", 1000, 80, 1, 2, ACK, b"hello",
                        options=tcp.encode_options(sack=[(1, 2), (3, 4)]), vlan=10),
        build.udp_frame("10.0.0.1", "10.0.0.2", 53, 53, b"query"),
        build.echo_frame("10.0.0.1", "10.0.0.2", 7, 8, b"ping"),
        build.frame(icmp.build_frag_needed("10.0.0.254", parse_frame(err_about), 1400)),
        build.frame(ipv4.build_ipv4("10.0.0.1", "10.0.0.2", 17, bytes(24), frag=1480, mf=True,
                                    options=bytes((148, 4, 0, 0)))),
        arp.build_request(b"\x02" * 6, "10.0.0.1", "10.0.0.2"),
    ]


VNETS = [b"", vnet.build(1, 0, 0, 0, 34, 16), vnet.build(1, vnet.GSO_TCPV4, 54, 1448, 34, 16),
         vnet.build(1, vnet.GSO_UDP_L4, 42, 8, 34, 6), vnet.build(1, vnet.GSO_UDP, 42, 16, 34, 6),
         vnet.build(1, 0x84, 0, 0, 9000, 9000), vnet.build(0, 1, 0, 0, 0, 0)]


class Fuzz(unittest.TestCase):

    def exercise(self, data, v=b""):
        """Run a (possibly broken) frame through every parser and, when it
        parses, through the later stages; only MalformedPacket may come
        out.  Returns the Packet or None."""
        try:
            arp.parse_arp_frame(data)
        except MalformedPacket:
            pass
        try:
            pkt = parse_frame(data, v, verify_ip=True)
        except MalformedPacket:
            pkt = None
        try:
            pkt = parse_frame(data, v)
        except MalformedPacket:
            return None
        try:
            ipv4.parse_options(data, pkt.l3)
        except MalformedPacket:
            pass
        if pkt.proto == 6 and pkt.frag == 0:
            try:
                tcp.parse_options(data, pkt.l4, pkt.tcp_doff)
            except MalformedPacket:
                pass
        if icmp.may_send_error(pkt):
            icmp.build_time_exceeded(1, pkt)
        if pkt.inner is not None:
            self.assertLessEqual(pkt.inner.l4 + 8, len(data))
        f = bytearray(data)
        Rewrite(pkt.proto, (pkt.src, pkt.dst, pkt.sport, pkt.dport),
                (1, 2, 3, 4)).apply(f, pkt.l3, pkt.l4, vnet.is_partial(v), pkt.frag == 0)
        self.assertEqual(len(f), len(data))
        for mtu in (68, 1500):
            try:
                segs = vnet.segment(bytearray(data), v, mtu)
            except MalformedPacket:
                continue
            if vnet.is_gso(v):
                for s in segs:
                    self.assertLessEqual(len(s) - pkt.l3, mtu)
        try:
            vnet.gso_segment_size(data, v)
        except MalformedPacket:
            pass
        return pkt

    @SETTINGS
    @given(st.binary(max_size=120), st.sampled_from(VNETS))
    def test_random_bytes(self, data, v):
        self.exercise(bytearray(data), v)
        for fn in (lambda: parse_ip_packet(bytearray(data)),
                   lambda: tcp.parse_options(data, 0),
                   lambda: ipv4.parse_options(data) if data else None,
                   lambda: arp.parse_arp(data)):
            try:
                fn()
            except MalformedPacket:
                pass

    @SETTINGS
    @given(st.binary(min_size=20, max_size=80), st.sampled_from(VNETS))
    def test_random_ip_behind_valid_header(self, data, v):
        """Random bytes that at least start like IPv4 go deeper."""
        data = bytearray(data)
        data[0] = 0x40 | (data[0] & 15)
        data[2:4] = len(data).to_bytes(2, "big")
        self.exercise(build.frame(data), v)

    def test_truncation_at_every_length(self):
        for f in corpus():
            for n in range(len(f) + 1):
                for v in VNETS[:3]:
                    self.exercise(f[:n], v)

    def test_every_bit_flip(self):
        parsed = 0
        for f in corpus():
            for i in range(len(f) * 8):
                g = bytearray(f)
                g[i >> 3] ^= 1 << (i & 7)
                if self.exercise(g) is not None:
                    parsed += 1
        self.assertGreater(parsed, 1000)   # most flips (payload, ports) still parse

    def test_bogus_ihl_total_length_doff(self):
        for f in corpus()[:6]:
            l3 = 18 if f[12] == 0x81 else 14
            for ihl in range(16):
                for tot in (0, 1, 19, 20, 21, 40, len(f) - l3 - 1, len(f) - l3, len(f) - l3 + 1,
                            0xFFFF):
                    g = bytearray(f)
                    g[l3] = 0x40 | ihl
                    g[l3 + 2:l3 + 4] = (tot & 0xFFFF).to_bytes(2, "big")
                    pkt = self.exercise(g)
                    if pkt is not None:
                        self.assertGreaterEqual(pkt.ihl, 20)
                        self.assertLessEqual(pkt.l3 + pkt.ip_len, len(g))
                        self.assertGreaterEqual(pkt.ip_len, pkt.ihl)
            if f[l3 + 9] == 6:
                for doff in range(16):
                    g = bytearray(f)
                    g[l3 + 20 + 12] = doff << 4
                    pkt = self.exercise(g)
                    if pkt is not None:
                        self.assertGreaterEqual(doff, 5)
                        self.assertLessEqual(pkt.l4 + pkt.tcp_doff, pkt.l3 + pkt.ip_len)

    @SETTINGS
    @given(st.integers(0, 6), st.binary(min_size=10, max_size=10))
    def test_random_vnet_headers(self, which, v):
        self.exercise(corpus()[which], v)


class TcpFastParse(unittest.TestCase):
    """The parser's one-unpack path for a TCP segment with a 20-byte IPv4
    header gives the general path's fields, or its exception and reason,
    for every mutation of such frames."""

    FIELDS = [f for f in __import__("cbac.packet.view", fromlist=["Packet"]).Packet.__slots__
              if f not in ("in_port", "out_port", "meta")]

    def both(self, data, verify_ip):
        from cbac.packet import view
        out = []
        for fast in (True, False):
            try:
                if fast:
                    p = view.parse_tcp20(data, b"", 14, len(data), verify_ip)
                else:
                    p = view.Packet()
                    p.vnet = b""
                    view._parse_ip_any(p, data, 14, len(data), verify_ip)
            except MalformedPacket as e:
                out.append(("raised", e.reason))
                continue
            out.append(tuple(getattr(p, f, "unset") for f in self.FIELDS
                             if f not in ("frame", "vnet", "vlan", "ethertype", "l3")))
        return out

    @SETTINGS
    @given(st.data())
    def test_same_as_general_path(self, data):
        base = bytearray(build.tcp_frame(
            "10.0.0.1", "10.0.0.2", data.draw(st.integers(0, 65535)), 80,
            data.draw(st.integers(0, 2 ** 32 - 1)), 2, data.draw(st.integers(0, 255)),
            b"x" * data.draw(st.integers(0, 40)),
            options=data.draw(st.sampled_from([b"", tcp.encode_options(1460, 7, True)]))))
        # bogus total length, TCP data offset, fragment fields, flags, truncation
        for off, val in data.draw(st.lists(st.tuples(
                st.sampled_from([16, 17, 20, 21, 46, 24, 25]), st.integers(0, 255)), max_size=3)):
            base[off] = val
        cut = data.draw(st.integers(54, len(base)))
        frame = bytes(base[:cut])
        for verify_ip in (False, True):
            fast, ref = self.both(frame, verify_ip)
            self.assertEqual(fast, ref)
