"""Unit tests of the packet codecs (no scapy): validation and its drop
reasons, 802.1Q pass-through, ARP, TCP options, ICMP error rules, the
virtio-net header and the MTU decision for GSO frames."""

from twisted.trial import unittest

from cbac.packet import arp, build, ethernet, icmp, ipv4, tcp, udp, vnet
from cbac.packet.checksum import checksum
from cbac.packet.errors import MalformedPacket
from cbac.packet.view import ACK, FIN, PSH, RST, SYN, ip_int, parse_frame, parse_ip_packet


def reason(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except MalformedPacket as e:
        return e.reason
    return None


class Validation(unittest.TestCase):

    def setUp(self):
        self.f = build.tcp_frame("10.0.0.1", "10.0.0.2", 1000, 80, 1, 0, SYN, b"data")

    def test_good_frame(self):
        p = parse_frame(self.f, verify_ip=True)
        self.assertEqual((p.src, p.dst, p.sport, p.dport, p.tcp_flags, p.payload_len),
                         (ip_int("10.0.0.1"), ip_int("10.0.0.2"), 1000, 80, SYN, 4))

    def test_reasons(self):
        f = self.f
        self.assertEqual(reason(parse_frame, f[:13]), "truncated")
        self.assertEqual(reason(parse_frame, f[:30]), "truncated")
        g = bytearray(f); g[14] = 0x65
        self.assertEqual(reason(parse_frame, g), "bad-version")
        g = bytearray(f); g[14] = 0x44
        self.assertEqual(reason(parse_frame, g), "bad-ihl")
        g = bytearray(f); g[16:18] = (10).to_bytes(2, "big")
        self.assertEqual(reason(parse_frame, g), "bad-length")
        g = bytearray(f); g[16:18] = (2000).to_bytes(2, "big")
        self.assertEqual(reason(parse_frame, g), "truncated")
        g = bytearray(f); g[14 + 20 + 12] = 0x40
        self.assertEqual(reason(parse_frame, g), "bad-tcp-offset")
        g = bytearray(f); g[14 + 20 + 12] = 0xF0
        self.assertEqual(reason(parse_frame, g), "bad-tcp-offset")
        g = bytearray(f); g[12:14] = b"\x86\xdd"
        self.assertEqual(reason(parse_frame, g), "not-ipv4")

    def test_ip_checksum_verified_on_request(self):
        g = bytearray(self.f)
        g[22] ^= 1                      # TTL changed, checksum not
        self.assertIsNotNone(parse_frame(g))
        self.assertEqual(reason(parse_frame, g, verify_ip=True), "bad-ip-checksum")

    def test_tcp_fragment_offset_8_refused(self):
        """RFC 1858: FO=1 TCP fragments can rewrite the filtered flags."""
        ip = ipv4.build_ipv4("10.0.0.1", "10.0.0.2", 6, bytes(16), frag=8)
        self.assertEqual(reason(parse_ip_packet, ip), "bad-fragment")
        ip = ipv4.build_ipv4("10.0.0.1", "10.0.0.2", 17, bytes(16), frag=8)
        self.assertEqual(parse_ip_packet(ip).frag, 8)

    def test_trailing_ethernet_padding_ignored(self):
        f = build.udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"")
        f += bytes(60 - len(f))
        p = parse_frame(f)
        self.assertEqual((p.ip_len, p.payload_len), (28, 0))

    def test_bare_ip_packet(self):
        p = parse_ip_packet(build.build_udp("1.2.3.4", "5.6.7.8", 53, 53, b"q"))
        self.assertEqual((p.l3, p.l4, p.sport, p.payload_len), (0, 20, 53, 1))


class Vlan(unittest.TestCase):

    def test_tagged_frame_parsed_and_tag_kept(self):
        f = build.tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, vlan=0x2064)
        p = parse_frame(f)
        self.assertTrue(p.vlan)
        self.assertEqual((p.l3, ethernet.vlan_tci(f), ethernet.l3_offset(f)), (18, 0x2064, 18))
        ethernet.set_macs(f, b"\xaa" * 6, b"\xbb" * 6)
        self.assertEqual(bytes(f[12:18]), b"\x81\x00\x20\x64\x08\x00")
        self.assertEqual(ethernet.ethertype(f), 0x0800)

    def test_mac_forms(self):
        m = bytes.fromhex("02000a0a0a01")
        for text in ("02:00:0a:0a:0a:01", "0200.0a0a.0a01", "02-00-0A-0A-0A-01", m):
            self.assertEqual(ethernet.mac_bytes(text), m)
        self.assertEqual(ethernet.mac_str(m), "0200.0a0a.0a01")
        self.assertRaises(ValueError, ethernet.mac_bytes, "0200.0a0a")


class Arp(unittest.TestCase):

    def test_request_reply_gratuitous(self):
        me = bytes.fromhex("020000000001")
        req = arp.build_request(me, "10.0.0.1", "10.0.0.2")
        self.assertEqual(bytes(req[:6]), b"\xff" * 6)
        a = arp.parse_arp_frame(req)
        self.assertTrue(a.is_request)
        self.assertFalse(a.is_gratuitous)
        self.assertEqual((a.spa, a.tpa, a.tha), (ip_int("10.0.0.1"), ip_int("10.0.0.2"), bytes(6)))
        other = bytes.fromhex("020000000002")
        rep = arp.parse_arp_frame(arp.build_reply_to(a, other))
        self.assertEqual((rep.op, rep.sha, rep.spa, rep.tha, rep.tpa, rep.eth_dst),
                         (2, other, ip_int("10.0.0.2"), me, ip_int("10.0.0.1"), me))
        g = arp.parse_arp_frame(arp.build_gratuitous(me, "10.0.0.1"))
        self.assertTrue(g.is_gratuitous and g.is_request)
        g = arp.parse_arp_frame(arp.build_gratuitous(me, "10.0.0.1", reply=True))
        self.assertTrue(g.is_gratuitous and g.is_reply)

    def test_bad_arp(self):
        req = arp.build_request(b"\x02" * 6, 1, 2)
        self.assertEqual(reason(arp.parse_arp_frame, req[:41]), "truncated")
        g = bytearray(req); g[14:16] = b"\x00\x06"
        self.assertEqual(reason(arp.parse_arp_frame, g), "bad-arp")
        g = bytearray(req); g[21] = 3
        self.assertEqual(reason(arp.parse_arp_frame, g), "bad-arp-op")
        self.assertEqual(reason(arp.parse_arp_frame, build.udp_frame(1, 2, 3, 4)), "not-arp")
        t = arp.parse_arp_frame(arp.build_request(b"\x02" * 6, 1, 2, vlan=7))
        self.assertEqual(t.vlan, 7)


class TcpOptions(unittest.TestCase):

    def test_options_with_offsets(self):
        opts = tcp.encode_options(mss=1460, wscale=7, sack_permitted=True, ts=(10, 20),
                                  sack=[(100, 200)])
        f = build.tcp_frame(1, 2, 3, 4, options=opts)
        o = tcp.parse_options(f, 34)
        self.assertEqual((o.mss, o.wscale, o.sack_permitted, o.ts_val, o.ts_ecr, o.sack),
                         (1460, 7, True, 10, 20, [(100, 200)]))
        self.assertEqual(int.from_bytes(f[o.sack_off:o.sack_off + 4], "big"), 100)
        self.assertEqual(int.from_bytes(f[o.ts_off:o.ts_off + 4], "big"), 10)
        self.assertEqual([k for k, _o, _l in o.raw], [2, 4, 8, 3, 5])

    def test_bad_options(self):
        f = build.tcp_frame(1, 2, 3, 4, options=bytes((2, 4, 5, 0xB4)))
        g = bytearray(f); g[55] = 3           # MSS with length 3
        self.assertEqual(reason(tcp.parse_options, g, 34), "bad-tcp-option")
        g = bytearray(f); g[55] = 9           # runs past the header
        self.assertEqual(reason(tcp.parse_options, g, 34), "bad-tcp-option")
        g = bytearray(f); g[55] = 0
        self.assertEqual(reason(tcp.parse_options, g, 34), "bad-tcp-option")

    def test_seq_ack_edit_keeps_checksum(self):
        f = build.tcp_frame(1, 2, 3, 4, 1000, 2000, ACK, b"abc")
        tcp.set_seq(f, 34, 0xFFFFFFFF + 5)
        tcp.set_ack(f, 34, 7)
        p = parse_frame(f)
        self.assertEqual((p.tcp_seq, p.tcp_ack), (4, 7))
        self.assertEqual(tcp.tcp_checksum(f, 14, 34, len(f)), int.from_bytes(f[50:52], "big"))

    def test_rst_for(self):
        syn = parse_frame(build.tcp_frame("10.0.0.1", "10.0.0.2", 1000, 25, 77, 0, SYN))
        r = parse_ip_packet(tcp.rst_for(syn))
        self.assertEqual((r.src, r.dst, r.sport, r.dport, r.tcp_seq, r.tcp_ack, r.tcp_flags),
                         (syn.dst, syn.src, 25, 1000, 0, 78, RST | ACK))
        ack = parse_frame(build.tcp_frame("10.0.0.1", "10.0.0.2", 1000, 25, 77, 555, ACK, b"xy"))
        r = parse_ip_packet(tcp.rst_for(ack))
        self.assertEqual((r.tcp_seq, r.tcp_flags), (555, RST))
        self.assertEqual(tcp.segment_length(parse_frame(
            build.tcp_frame(1, 2, 3, 4, 0, 0, SYN | FIN | PSH, b"abc"))), 5)


class Icmp(unittest.TestCase):

    def test_quote_limits(self):
        big = parse_frame(build.udp_frame("10.0.0.1", "10.0.0.2", 1, 2, bytes(1400)))
        e = icmp.build_unreachable("10.0.0.254", big, icmp.PORT_UNREACHABLE)
        self.assertEqual(len(e), 576)
        small = parse_frame(build.udp_frame("10.0.0.1", "10.0.0.2", 1, 2, b"x"))
        e = icmp.build_unreachable("10.0.0.254", small, icmp.PORT_UNREACHABLE, max_len=0)
        self.assertEqual(len(e), 28 + 28)           # header + 8 bytes at least
        self.assertEqual(checksum(e, 20), 0)            # ICMP checksum verifies
        self.assertEqual(int.from_bytes(e[16:20], "big"), ip_int("10.0.0.1"))

    def test_may_send_error(self):
        def p(src, dst, **kw):
            return parse_frame(build.udp_frame(src, dst, 1, 2, **kw))
        self.assertTrue(icmp.may_send_error(p("10.0.0.1", "10.0.0.2")))
        self.assertFalse(icmp.may_send_error(p("10.0.0.1", "224.0.0.5")))
        self.assertFalse(icmp.may_send_error(p("10.0.0.1", "255.255.255.255")))
        self.assertFalse(icmp.may_send_error(p("0.0.0.0", "10.0.0.2")))
        self.assertFalse(icmp.may_send_error(p("127.0.0.1", "10.0.0.2")))
        self.assertFalse(icmp.may_send_error(p("10.0.0.1", "10.0.0.2"), link_broadcast=True))
        err = parse_frame(build.frame(icmp.build_time_exceeded("10.0.0.9", p("10.0.0.1", "10.0.0.2"))))
        self.assertFalse(icmp.may_send_error(err))
        frag = parse_ip_packet(ipv4.build_ipv4("10.0.0.1", "10.0.0.2", 17, bytes(8), frag=1480))
        self.assertFalse(icmp.may_send_error(frag))
        echo = parse_frame(build.echo_frame("10.0.0.1", "10.0.0.2"))
        self.assertTrue(icmp.may_send_error(echo))

    def test_inner_of_quoted_fragment_has_no_ports(self):
        frag = ipv4.build_ipv4("10.0.0.1", "10.0.0.2", 17, bytes(16), frag=1480)
        e = parse_frame(build.frame(icmp.build_time_exceeded("10.0.0.9", frag)))
        self.assertEqual((e.inner.frag, e.inner.sport, e.inner.dport), (1480, 0, 0))


class Vnet(unittest.TestCase):

    def test_header_roundtrip(self):
        h = vnet.build(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4 | vnet.GSO_ECN, 66, 1448, 34, 16)
        self.assertEqual(len(h), 10)
        self.assertEqual(h[:2], b"\x01\x81")
        self.assertEqual(h[4:6], (1448).to_bytes(2, "little"))
        self.assertEqual(vnet.parse(h), (1, 0x81, 66, 1448, 34, 16))
        self.assertEqual(vnet.parse(b""), (0,) * 6)
        self.assertTrue(vnet.is_partial(h) and vnet.is_gso(h) and not vnet.is_plain(h))
        self.assertTrue(vnet.is_plain(b"") and vnet.is_plain(vnet.build(vnet.F_DATA_VALID)))
        self.assertEqual(reason(vnet.parse, b"\x01\x02"), "truncated")

    def test_finish_checksum(self):
        f = build.tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, 3, 4, ACK, b"hello")
        good = bytes(f)
        v = vnet.make_partial(f)
        self.assertEqual(vnet.parse(v)[4:], (34, 16))
        self.assertEqual(vnet.finish_checksum(f, v), bytearray(good))
        self.assertIs(vnet.finish_checksum(f, b""), f)
        self.assertEqual(reason(vnet.finish_checksum, f, vnet.build(1, 0, 0, 0, 34, 200)),
                         "bad-vnet")

    def test_gso_segment_size(self):
        data = bytes(10000)
        f = build.tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, 3, 4, ACK, data)
        self.assertEqual(vnet.gso_segment_size(f, b""), 10040)
        self.assertEqual(vnet.gso_segment_size(f, vnet.make_gso(f, 1460)), 1500)
        self.assertEqual(vnet.gso_segment_size(f, vnet.make_gso(f, 20000)), 10040)
        segs = vnet.segment(f, vnet.make_gso(f, 1460), 1500)
        self.assertEqual([len(s) for s in segs], [1514] * 6 + [14 + 40 + 10000 - 6 * 1460])
        self.assertEqual(reason(vnet.segment, f, vnet.make_gso(f, 1460), 30), "bad-mtu")

    def test_udp_df_too_big(self):
        f = build.udp_frame("10.0.0.1", "10.0.0.2", 1, 2, bytes(4000), df=True)
        self.assertEqual(reason(vnet.segment, f, vnet.make_gso(f, 2000), 1500), "too-big")

    def test_unsupported_gso(self):
        f = build.udp_frame("10.0.0.1", "10.0.0.2", 1, 2, bytes(100))
        self.assertEqual(reason(vnet.segment, f, vnet.build(1, vnet.GSO_TCPV6, 0, 50, 34, 6), 1500),
                         "unsupported-gso")
        self.assertEqual(reason(vnet.segment, f, vnet.build(1, vnet.GSO_TCPV4, 0, 50, 34, 6), 1500),
                         "unsupported-gso")


class Ipv4Helpers(unittest.TestCase):

    def test_options_and_fragment_flags(self):
        ip = ipv4.build_ipv4("10.0.0.1", "10.0.0.2", 17, bytes(100),
                             options=bytes((148, 4, 0, 0, 7, 7, 4)) + bytes(4), ip_id=9)
        self.assertEqual([t for t, _o, _l in ipv4.parse_options(ip)], [148, 7])
        frags = ipv4.fragment(ip, 68)
        self.assertTrue(all(len(x) <= 68 for x in frags))
        self.assertTrue(all(ipv4.ip_checksum_ok(x) for x in frags))
        self.assertEqual([bool(x[6] & 0x20) for x in frags], [True] * (len(frags) - 1) + [False])
        self.assertEqual(ipv4.fragment(ip, 1500), [ip])
        self.assertRaises(MalformedPacket, ipv4.parse_options, bytes((0x46, 0, 0, 24)) + bytes(16)
                          + bytes((7, 9, 0, 0)))

    def test_decrement_ttl_and_length(self):
        ip = ipv4.build_ipv4("10.0.0.1", "10.0.0.2", 17, bytes(10), ttl=64)
        ipv4.decrement_ttl(ip, 0)
        ipv4.set_total_length(ip, 0, 25)
        self.assertTrue(ipv4.ip_checksum_ok(ip))
        self.assertEqual((ip[8], ip[3]), (63, 25))

    def test_udp_builder_lengths(self):
        p = udp.build_udp("1.1.1.1", "2.2.2.2", 1, 2, b"abc")
        self.assertEqual((len(p), p[25]), (31, 11))


class FragmentedUdpTests(unittest.TestCase):
    def test_first_fragment_of_a_large_udp_datagram_parses(self):
        from scapy.all import IP, UDP, Ether, fragment, raw
        from cbac.packet.view import parse_frame
        frags = fragment(IP(src="172.22.1.1", dst="10.10.10.2") / UDP(sport=53, dport=4000) / (b"a" * 3000),
                         fragsize=1400)
        p = parse_frame(bytearray(raw(Ether() / frags[0])))
        self.assertEqual((p.sport, p.dport, p.mf), (53, 4000, True))


def _rfc1071_sum(data) -> int:
    """RFC 1071 the slow way: 16-bit words added with end-around carry."""
    data = bytes(data)
    if len(data) & 1:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


class ChecksumVerification(unittest.TestCase):
    """The router's checksum checks (one integer over the span, reduced
    modulo 0xFFFF) give the verdict of RFC 1071's word-by-word sum on good
    and damaged headers and segments of every length and parity."""

    def _ref_l4_ok(self, pkt) -> bool:
        f = pkt.frame
        l4, end = pkt.l4, pkt.l3 + pkt.ip_len
        if pkt.proto == 1:
            return _rfc1071_sum(f[l4:end]) in (0, 0xFFFF)
        if pkt.proto == 17 and f[l4 + 6] == 0 and f[l4 + 7] == 0:
            return True
        pseudo = (pkt.src.to_bytes(4, "big") + pkt.dst.to_bytes(4, "big")
                  + bytes((0, pkt.proto)) + (end - l4).to_bytes(2, "big"))
        return _rfc1071_sum(pseudo + bytes(f[l4:end])) == 0xFFFF

    def test_same_verdict_as_rfc1071(self):
        import random
        from cbac.packet import checksum as ck
        rnd = random.Random(21)
        builders = [
            lambda pl: build.tcp_frame("10.10.10.2", "172.22.1.1", rnd.randrange(65536),
                                       rnd.randrange(65536), seq=rnd.randrange(2 ** 32),
                                       flags=rnd.choice((2, 0x12, 0x10, 0x18)), payload=pl),
            lambda pl: build.udp_frame("10.10.10.2", "172.22.1.1", rnd.randrange(65536),
                                       rnd.randrange(65536), pl),
            lambda pl: build.echo_frame("10.10.10.2", "172.22.1.1", rnd.randrange(65536),
                                        rnd.randrange(65536), pl),
        ]
        seen = {True: 0, False: 0}
        for n in list(range(0, 40)) + [575, 576, 1471, 1472, 1480]:
            for make in builders:
                pl = bytes(rnd.randrange(256) for _ in range(n))
                for damage in (None, "ip", "l4", "l4-zero", "l4-ffff"):
                    f = bytearray(make(pl))
                    p = parse_frame(f)
                    if damage == "ip":
                        f[22] ^= 1 << rnd.randrange(8)
                    elif damage == "l4":
                        i = rnd.randrange(p.l4, len(f))
                        f[i] ^= 1 << rnd.randrange(8)
                    elif damage in ("l4-zero", "l4-ffff"):
                        off = {6: 16, 17: 6, 1: 2}[p.proto]
                        f[p.l4 + off:p.l4 + off + 2] = b"\0\0" if damage == "l4-zero" else b"\xff\xff"
                    ip_ref = _rfc1071_sum(f[14:34]) in (0, 0xFFFF)
                    self.assertEqual(ck.ip_checksum_ok(f, 14, 20), ip_ref)
                    l4_ref = self._ref_l4_ok(p)
                    self.assertEqual(ck.l4_checksum_ok(p), l4_ref, (n, p, damage))
                    seen[l4_ref] += 1
                    self.assertEqual(ck.ones_sum(f, p.l4, len(f)) % 0xFFFF,
                                     _rfc1071_sum(f[p.l4:]) % 0xFFFF)
        self.assertTrue(seen[True] > 100 and seen[False] > 100, seen)

    def test_all_zero_and_all_ones(self):
        from cbac.packet import checksum as ck
        self.assertEqual(ck.ones_sum(bytes(20)), 0)
        self.assertEqual(ck.ones_sum(b"\xff\xff" * 10), 0xFFFF)
        self.assertEqual(ck.ones_sum(b"\xff"), 0xFF00)
        self.assertTrue(ck.ip_checksum_ok(bytes(20), 0, 20))
        self.assertTrue(ck.ip_checksum_ok(b"\xff" * 20, 0, 20))
        self.assertFalse(ck.ip_checksum_ok(b"\x45" + bytes(19), 0, 20))
