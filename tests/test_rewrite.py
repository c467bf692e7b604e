"""Rewrite (pre-computed NAT rewrite) against scapy: the rewritten frame
has the new addresses/ports/identifier and the checksums scapy computes,
for complete, absent (UDP 0) and partial (NEEDS_CSUM) checksums."""

from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from twisted.trial import unittest

from cbac.packet import build, vnet
from cbac.packet.rewrite import Rewrite
from cbac.packet.view import ACK, PSH, parse_frame

from tests.test_packet_scapy import addrs, assert_checksums_ok, dotted, payloads, ports, vlans

SETTINGS = settings(max_examples=60, deadline=None)
protos = st.sampled_from([6, 17, 1])


def make(proto, src, dst, sp, dp, data, vlan=None, udp_csum=True):
    if proto == 6:
        return build.tcp_frame(src, dst, sp, dp, 1000, 2000, ACK | PSH, data, vlan=vlan)
    if proto == 17:
        return build.udp_frame(src, dst, sp, dp, data, vlan=vlan, csum=udp_csum)
    return build.echo_frame(src, dst, sp, 7, data, vlan=vlan)


def rewrite(rw, f, partial=False):
    pkt = parse_frame(f)
    rw.apply(f, pkt.l3, pkt.l4, partial, pkt.frag == 0)
    return f


def fields(s):
    ip = s[IP]
    if TCP in s:
        return ip.src, ip.dst, s[TCP].sport, s[TCP].dport
    if UDP in s:
        return ip.src, ip.dst, s[UDP].sport, s[UDP].dport
    return ip.src, ip.dst, s[ICMP].id, 0


class RewriteVsScapy(unittest.TestCase):

    @SETTINGS
    @given(protos, addrs, addrs, ports, ports, addrs, addrs, ports, ports, payloads, vlans)
    def test_complete_checksums(self, proto, src, dst, sp, dp, nsrc, ndst, nsp, ndp, data, vlan):
        if proto == 1:
            dp = ndp = 0
        f = make(proto, src, dst, sp, dp, data, vlan)
        rw = Rewrite(proto, (src, dst, sp, dp), (nsrc, ndst, nsp, ndp))
        rewrite(rw, f)
        s = assert_checksums_ok(self, f)
        self.assertEqual(fields(s), (dotted(nsrc), dotted(ndst), nsp, ndp))
        self.assertEqual(bytes(s[IP].payload.payload), data)
        # a reply to the translated packet is translated back by the inverse
        if proto == 1:
            r = build.echo_frame(ndst, nsrc, nsp, 7, data, reply=True)
            want = (dotted(dst), dotted(src), sp, 0)
        else:
            r = make(proto, ndst, nsrc, ndp, nsp, data, vlan)
            want = (dotted(dst), dotted(src), dp, sp)
        rewrite(rw.inverse(), r)
        s = assert_checksums_ok(self, r)
        self.assertEqual(fields(s), want)

    @SETTINGS
    @given(addrs, addrs, ports, ports, addrs, ports, payloads)
    def test_udp_zero_checksum_stays_zero(self, src, dst, sp, dp, nsrc, nsp, data):
        f = make(17, src, dst, sp, dp, data, udp_csum=False)
        rewrite(Rewrite(17, (src, dst, sp, dp), (nsrc, dst, nsp, dp)), f)
        s = Ether(bytes(f))
        self.assertEqual(s[UDP].chksum, 0)
        self.assertEqual(fields(s), (dotted(nsrc), dotted(dst), nsp, dp))
        assert_checksums_ok(self, f)

    def test_udp_checksum_that_becomes_zero_is_sent_as_ffff(self):
        """RFC 768: a computed 0 goes on the wire as 0xFFFF, never as 0
        ("no checksum")."""
        from cbac.packet.udp import udp_checksum
        src, dst = 0x0A000001, 0x0A000002
        f0 = make(17, src, dst, 1, 2, b"x")
        for nsp in range(65536):     # the source port that makes the sum 0xFFFF
            f0[34:36] = nsp.to_bytes(2, "big")
            if udp_checksum(f0, 14, 34, len(f0)) == 0xFFFF:
                break
        f = make(17, src, dst, 1, 2, b"x")
        rewrite(Rewrite(17, (src, dst, 1, 2), (src, dst, nsp, 2)), f)
        q = Ether(bytes(f))
        self.assertEqual(q[UDP].chksum, 0xFFFF)
        del q[UDP].chksum
        self.assertEqual(Ether(bytes(q))[UDP].chksum, 0xFFFF)

    @SETTINGS
    @given(st.sampled_from([6, 17]), addrs, addrs, ports, ports, addrs, addrs, ports, ports,
           payloads, vlans)
    def test_partial_checksum_then_finish(self, proto, src, dst, sp, dp, nsrc, ndst, nsp, ndp,
                                          data, vlan):
        f = make(proto, src, dst, sp, dp, data, vlan)
        v = vnet.make_partial(f)
        rewrite(Rewrite(proto, (src, dst, sp, dp), (nsrc, ndst, nsp, ndp)), f, partial=True)
        vnet.finish_checksum(f, v)
        s = assert_checksums_ok(self, f)
        self.assertEqual(fields(s), (dotted(nsrc), dotted(ndst), nsp, ndp))

    def test_icmp_inverse_keeps_identifier_slot(self):
        """Echo identifier 100 -> 200 outbound; the reply's 200 -> 100."""
        a, b, g = 0x0A000001, 0x08080808, 0x01020304
        fwd = Rewrite(1, (a, b, 100, 0), (g, b, 200, 0))
        req = make(1, a, b, 100, 0, b"ping")
        rewrite(fwd, req)
        self.assertEqual(fields(Ether(bytes(req))), (dotted(g), dotted(b), 200, 0))
        rep = build.echo_frame(b, g, 200, 7, b"ping", reply=True)
        rewrite(fwd.inverse(), rep)
        s = assert_checksums_ok(self, rep)
        self.assertEqual(fields(s), (dotted(b), dotted(a), 100, 0))

    def test_noninitial_fragment_only_ip_header(self):
        from cbac.packet.ipv4 import build_ipv4
        body = bytes(range(64))
        ip = build_ipv4("10.0.0.1", "10.0.0.2", 6, body, frag=1480, ip_id=5)
        f = build.frame(ip)
        rewrite(Rewrite(6, (0x0A000001, 0x0A000002, 1, 2), (0x01010101, 0x0A000002, 3, 4)), f)
        s = assert_checksums_ok(self, f)
        self.assertEqual(s[IP].src, "1.1.1.1")
        self.assertEqual(bytes(f[34:]), body)

    def test_gso_super_frame_nat_then_segment(self):
        data = bytes(i & 255 for i in range(30000))
        f = build.tcp_frame("10.0.0.1", "10.9.9.9", 40000, 80, 1, 1, ACK | PSH, data)
        v = vnet.make_gso(f, 1448)
        rewrite(Rewrite(6, (0x0A000001, 0x0A090909, 40000, 80),
                        (0xC0000201, 0x0A090909, 1024, 80)), f, partial=True)
        segs = vnet.segment(f, v, 1500)
        got = b""
        for seg in segs:
            s = assert_checksums_ok(self, seg)
            self.assertEqual(fields(s), ("192.0.2.1", "10.9.9.9", 1024, 80))
            got += bytes(s[TCP].payload)
        self.assertEqual(got, data)


class PortPair(unittest.TestCase):
    """``port_pair`` (NAT's set-up path: the address parts cached per host
    pair, only the ports per flow) makes the very rewrites ``Rewrite``
    makes, and they translate real packets both ways."""

    edge_addrs = st.one_of(addrs, st.sampled_from([0, 0xFFFF, 0xFFFF0000, 0xFFFFFFFF]))
    edge_ports = st.one_of(ports, st.sampled_from([0, 0xFFFF]))

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from([6, 17]), edge_addrs, edge_ports, edge_addrs, edge_ports,
           edge_addrs, edge_ports, edge_addrs, edge_ports, st.booleans(), st.booleans())
    def test_same_as_rewrite(self, proto, il, ilp, ig, igp, ol, olp, og, ogp, keep_in,
                             keep_out):
        from cbac.packet.rewrite import port_pair
        if keep_in:
            igp = ilp                   # PAT kept the inside port
        if keep_out:
            ogp = olp
        want = (Rewrite(proto, (il, ol, ilp, olp), (ig, og, igp, ogp)),
                Rewrite(proto, (og, ig, ogp, igp), (ol, il, olp, ilp)))
        for _ in range(2):              # made, then from the address cache
            got = port_pair(proto, il, ilp, ig, igp, ol, olp, og, ogp)
            for w, g in zip(want, got):
                self.assertEqual({n: getattr(g, n) for n in Rewrite.__slots__},
                                 {n: getattr(w, n) for n in Rewrite.__slots__})

    @SETTINGS
    @given(st.sampled_from([6, 17]), addrs, addrs, ports, ports, addrs, ports, payloads)
    def test_pat_both_ways_vs_scapy(self, proto, il, ol, ilp, olp, ig, igp, data):
        from cbac.packet.rewrite import port_pair
        if igp % 2:
            igp = ilp                   # PAT kept the inside port
        fwd, rev = port_pair(proto, il, ilp, ig, igp, ol, olp, ol, olp)
        f = make(proto, il, ol, ilp, olp, data)
        s = assert_checksums_ok(self, rewrite(fwd, f))
        self.assertEqual(fields(s), (dotted(ig), dotted(ol), igp, olp))
        r = make(proto, ol, ig, olp, igp, data)
        s = assert_checksums_ok(self, rewrite(rev, r))
        self.assertEqual(fields(s), (dotted(ol), dotted(il), olp, ilp))
