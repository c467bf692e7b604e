"""Cross-checks of the packet codecs against scapy on generated packets:
scapy-built frames parse to the same fields, our builders produce what
scapy parses with the checksums scapy computes, the RFC 1624 helpers agree
with full checksums, partial (NEEDS_CSUM) checksums finish to scapy's
value, and GSO super-frames segment into packets scapy accepts."""

from hypothesis import given, settings, strategies as st
from scapy.layers.inet import (ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror, ICMPerror,
                               IPOption_NOP, IPOption_RR, IPOption_Router_Alert)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum
from twisted.trial import unittest

from cbac.packet import arp, build, checksum as ck, icmp, ipv4, tcp, vnet
from cbac.packet.view import FIN, PSH, CWR, ACK, parse_frame

SETTINGS = settings(max_examples=60, deadline=None)

addrs = st.integers(0, 2**32 - 1)
unicast = st.integers(0x01000000, 0xDFFFFFFF).filter(lambda a: a >> 24 != 127)
ports = st.integers(0, 65535)
payloads = st.binary(max_size=300)
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 65535)
vlans = st.one_of(st.none(), st.integers(1, 4094))
MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


def dotted(a: int) -> str:
    return "%d.%d.%d.%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)


def same_csum(a: int, b: int) -> bool:
    """Equal as ones'-complement numbers (0x0000 and 0xFFFF both zero)."""
    return a == b or {a, b} == {0, 0xFFFF}


def eth(payload, vlan=None):
    e = Ether(dst=MAC2, src=MAC1)
    if vlan is not None:
        e = e / Dot1Q(vlan=vlan)
    return e / payload


def assert_checksums_ok(tc, data):
    """Every IP/TCP/UDP/ICMP checksum in the frame equals the one scapy
    computes for it (UDP 0 = absent is accepted as is)."""
    p = Ether(bytes(data))
    q = Ether(bytes(data))
    for layer in (IP, TCP, UDP, ICMP):
        if layer in q and not (layer is UDP and q[UDP].chksum == 0):
            del q[layer].chksum
    q = Ether(bytes(q))
    for layer in (IP, TCP, UDP, ICMP):
        if layer in p:
            a, b = p[layer].chksum, q[layer].chksum
            tc.assertTrue(same_csum(a, b), "%s checksum 0x%04x, scapy computes 0x%04x"
                          % (layer.__name__, a, b))
    return p


ip_options = st.sampled_from([
    [], [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()],
    [IPOption_Router_Alert()], [IPOption_RR(routers=["1.2.3.4", "5.6.7.8"])]])

tcp_options = st.lists(st.sampled_from([
    ("MSS", 1460), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (123456, 654321)),
    ("NOP", None)]), max_size=4)


class ParseScapyFrames(unittest.TestCase):
    """Frames scapy builds parse to the same fields."""

    def check_ip(self, pkt, s, vlan):
        self.assertEqual(pkt.vlan, vlan is not None)
        self.assertEqual(pkt.l3, 18 if vlan is not None else 14)
        self.assertEqual(pkt.ihl, s[IP].ihl * 4)
        self.assertEqual(pkt.ip_len, s[IP].len)
        self.assertEqual(pkt.ip_id, s[IP].id)
        self.assertEqual(pkt.ttl, s[IP].ttl)
        self.assertEqual(pkt.proto, s[IP].proto)
        self.assertEqual(pkt.src, int.from_bytes(bytes(map(int, s[IP].src.split("."))), "big"))
        self.assertEqual(pkt.dst, int.from_bytes(bytes(map(int, s[IP].dst.split("."))), "big"))
        self.assertEqual(pkt.df, bool(s[IP].flags.DF))
        self.assertEqual(pkt.mf, bool(s[IP].flags.MF))
        self.assertEqual(pkt.frag, s[IP].frag * 8)
        self.assertEqual(pkt.l4, pkt.l3 + pkt.ihl)

    @SETTINGS
    @given(addrs, addrs, ports, ports, u32, u32, st.integers(0, 255), u16, payloads, vlans,
           ip_options, tcp_options, st.integers(0, 63), st.booleans())
    def test_tcp(self, src, dst, sp, dp, seq, ack, ttl, ipid, data, vlan, iopts, topts,
                 flags, df):
        s = eth(IP(src=dotted(src), dst=dotted(dst), ttl=ttl, id=ipid, options=iopts,
                   flags="DF" if df else 0)
                / TCP(sport=sp, dport=dp, seq=seq, ack=ack, flags=flags, window=ipid,
                      options=topts) / Raw(data), vlan)
        raw = bytearray(bytes(s))
        s = Ether(bytes(raw))
        pkt = parse_frame(raw, verify_ip=True)
        self.check_ip(pkt, s, vlan)
        self.assertEqual((pkt.sport, pkt.dport), (sp, dp))
        self.assertEqual((pkt.tcp_seq, pkt.tcp_ack, pkt.tcp_flags, pkt.tcp_win),
                         (seq, ack, flags, ipid))
        self.assertEqual(pkt.tcp_doff, s[TCP].dataofs * 4)
        self.assertEqual(bytes(raw[pkt.payload:pkt.payload + pkt.payload_len]), data)
        opts = tcp.parse_options(raw, pkt.l4, pkt.tcp_doff)
        want = dict((k, v) for k, v in s[TCP].options)
        self.assertEqual(opts.mss, want.get("MSS"))
        self.assertEqual(opts.wscale, want.get("WScale"))
        self.assertEqual(opts.sack_permitted, "SAckOK" in want)
        self.assertEqual(opts.ts_val, want["Timestamp"][0] if "Timestamp" in want else None)
        self.assertEqual(opts.ts_ecr, want["Timestamp"][1] if "Timestamp" in want else None)
        if iopts:
            kinds = [t for t, _o, _l in ipv4.parse_options(raw, pkt.l3)]
            want_kinds = [o.option + (o.copy_flag << 7) + (o.optclass << 5) for o in s[IP].options
                          if o.option + (o.copy_flag << 7) + (o.optclass << 5) not in (0, 1)]
            self.assertEqual(kinds, want_kinds)

    @SETTINGS
    @given(st.lists(st.tuples(u32, u32), min_size=1, max_size=4), st.integers(-2**31, 2**31),
           st.booleans())
    def test_sack_blocks_and_shift(self, blocks, delta, with_ts):
        flat = tuple(x for b in blocks for x in b)
        topts = ([("NOP", None), ("NOP", None), ("Timestamp", (1, 2))] if with_ts and len(blocks) < 4
                 else []) + [("NOP", None), ("NOP", None), ("SAck", flat)]
        s = eth(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="A", options=topts))
        raw = bytearray(bytes(s))
        pkt = parse_frame(raw)
        o = tcp.parse_options(raw, pkt.l4, pkt.tcp_doff)
        self.assertEqual(o.sack, list(blocks))
        tcp.shift_sack(raw, pkt.l4, o, delta)
        shifted = Ether(bytes(raw))
        got = dict((k, v) for k, v in shifted[TCP].options)["SAck"]
        self.assertEqual(got, tuple((x + delta) & 0xFFFFFFFF for x in flat))
        assert_checksums_ok(self, raw)

    @SETTINGS
    @given(addrs, addrs, ports, ports, payloads, vlans, st.booleans())
    def test_udp(self, src, dst, sp, dp, data, vlan, zero):
        s = eth(IP(src=dotted(src), dst=dotted(dst)) / UDP(sport=sp, dport=dp) / Raw(data), vlan)
        if zero:
            s[UDP].chksum = 0
        raw = bytearray(bytes(s))
        pkt = parse_frame(raw, verify_ip=True)
        self.check_ip(pkt, Ether(bytes(raw)), vlan)
        self.assertEqual((pkt.sport, pkt.dport), (sp, dp))
        self.assertEqual(bytes(raw[pkt.payload:pkt.payload + pkt.payload_len]), data)

    @SETTINGS
    @given(addrs, addrs, u16, u16, payloads, st.sampled_from([0, 8, 13, 14]))
    def test_icmp_query(self, src, dst, ident, seq, data, t):
        s = eth(IP(src=dotted(src), dst=dotted(dst)) / ICMP(type=t, id=ident, seq=seq) / Raw(data))
        raw = bytearray(bytes(s))
        pkt = parse_frame(raw)
        self.assertEqual((pkt.icmp_type, pkt.icmp_code, pkt.icmp_id), (t, 0, ident))
        self.assertIsNone(pkt.inner)

    @SETTINGS
    @given(unicast, unicast, unicast, ports, ports, st.sampled_from([TCP, UDP, ICMP]),
           st.sampled_from([(3, 4), (3, 13), (3, 3), (11, 0), (12, 0)]), u16)
    def test_icmp_error_inner(self, router, src, dst, sp, dp, l4, tc, mtu):
        inner_l4 = (TCPerror(sport=sp, dport=dp) if l4 is TCP else
                    UDPerror(sport=sp, dport=dp) if l4 is UDP else ICMPerror(type=8, id=sp))
        kw = {"nexthopmtu": mtu} if tc == (3, 4) else {}
        s = eth(IP(src=dotted(router), dst=dotted(src)) / ICMP(type=tc[0], code=tc[1], **kw)
                / IPerror(src=dotted(src), dst=dotted(dst)) / inner_l4)
        raw = bytearray(bytes(s))
        pkt = parse_frame(raw)
        self.assertEqual((pkt.icmp_type, pkt.icmp_code), tc)
        q = pkt.inner
        self.assertEqual((q.src, q.dst, q.proto), (src, dst, {TCP: 6, UDP: 17, ICMP: 1}[l4]))
        if l4 is ICMP:
            self.assertEqual((q.icmp_type, q.icmp_id), (8, sp))
        else:
            self.assertEqual((q.sport, q.dport), (sp, dp))
        self.assertEqual(icmp.next_hop_mtu(pkt), mtu if tc == (3, 4) else 0)

    @SETTINGS
    @given(addrs, addrs, st.integers(2, 0x1FFF), st.booleans(), st.sampled_from([6, 17, 1, 47]),
           st.binary(min_size=8, max_size=64))
    def test_fragments(self, src, dst, fo, mf, proto, data):
        s = eth(IP(src=dotted(src), dst=dotted(dst), proto=proto, frag=fo,
                   flags="MF" if mf else 0) / Raw(data))
        raw = bytearray(bytes(s))
        pkt = parse_frame(raw)
        self.assertEqual((pkt.frag, pkt.mf, pkt.sport, pkt.dport), (fo * 8, mf, 0, 0))
        self.assertTrue(pkt.is_noninitial_fragment)
        self.assertEqual(pkt.payload_len, len(data))


class BuildersAgainstScapy(unittest.TestCase):
    """What our builders produce is what scapy reads, checksums included."""

    @SETTINGS
    @given(addrs, addrs, ports, ports, u32, u32, st.integers(0, 255), payloads, vlans,
           st.booleans(), st.booleans())
    def test_tcp(self, src, dst, sp, dp, seq, ack, flags, data, vlan, with_opts, df):
        opts = tcp.encode_options(1460, 7, True, (seq, ack)) if with_opts else b""
        f = build.tcp_frame(src, dst, sp, dp, seq, ack, flags, data, options=opts, vlan=vlan,
                            df=df, ip_id=sp)
        s = assert_checksums_ok(self, f)
        self.assertEqual((s[IP].src, s[IP].dst, s[IP].id, bool(s[IP].flags.DF)),
                         (dotted(src), dotted(dst), sp, df))
        self.assertEqual((s[TCP].sport, s[TCP].dport, s[TCP].seq, s[TCP].ack, int(s[TCP].flags)),
                         (sp, dp, seq, ack, flags))
        self.assertEqual(bytes(s[TCP].payload), data)
        if vlan is not None:
            self.assertEqual(s[Dot1Q].vlan, vlan)
        if with_opts:
            self.assertEqual(dict(s[TCP].options)["MSS"], 1460)
            self.assertEqual(dict(s[TCP].options)["Timestamp"], (seq, ack))

    @SETTINGS
    @given(addrs, addrs, ports, ports, payloads, st.booleans())
    def test_udp(self, src, dst, sp, dp, data, csum):
        f = build.udp_frame(src, dst, sp, dp, data, csum=csum)
        s = assert_checksums_ok(self, f)
        self.assertEqual((s[UDP].sport, s[UDP].dport, s[UDP].len), (sp, dp, 8 + len(data)))
        self.assertEqual(bytes(s[UDP].payload), data)
        if not csum:
            self.assertEqual(s[UDP].chksum, 0)
        else:
            self.assertNotEqual(s[UDP].chksum, 0)

    @SETTINGS
    @given(addrs, addrs, u16, u16, payloads, st.booleans())
    def test_echo_and_reply(self, src, dst, ident, seq, data, reply):
        f = build.echo_frame(src, dst, ident, seq, data, reply=reply)
        s = assert_checksums_ok(self, f)
        self.assertEqual((s[ICMP].type, s[ICMP].id, s[ICMP].seq), (0 if reply else 8, ident, seq))
        self.assertEqual(bytes(s[ICMP].payload), data)
        if not reply:
            r = build.frame(icmp.build_echo_reply(parse_frame(f)))
            t = assert_checksums_ok(self, r)
            self.assertEqual((t[IP].src, t[IP].dst, t[ICMP].type, t[ICMP].id, t[ICMP].seq),
                             (dotted(dst), dotted(src), 0, ident, seq))
            self.assertEqual(bytes(t[ICMP].payload), data)

    @SETTINGS
    @given(unicast, unicast, unicast, ports, ports, st.binary(max_size=1400),
           st.sampled_from(["frag", "admin", "ttl", "port"]), st.integers(68, 9000))
    def test_errors_quote_offending(self, router, src, dst, sp, dp, data, kind, mtu):
        off = build.tcp_frame(src, dst, sp, dp, 1, 2, ACK, data, ttl=1)
        pkt = parse_frame(off)
        if kind == "frag":
            err = icmp.build_frag_needed(router, pkt, mtu)
            want = (3, 4)
        elif kind == "admin":
            err = icmp.build_admin_prohibited(router, pkt)
            want = (3, 13)
        elif kind == "ttl":
            err = icmp.build_time_exceeded(router, pkt)
            want = (11, 0)
        else:
            err = icmp.build_unreachable(router, bytes(off[14:]), icmp.PORT_UNREACHABLE)
            want = (3, 3)
        f = build.frame(err)
        s = assert_checksums_ok(self, f)
        self.assertEqual((s[IP].src, s[IP].dst, s[IP].ttl), (dotted(router), dotted(src), 255))
        self.assertEqual((s[ICMP].type, s[ICMP].code), want)
        if kind == "frag":
            self.assertEqual(s[ICMP].nexthopmtu, mtu)
        self.assertLessEqual(len(err), 576)
        quoted = bytes(err[28:])
        self.assertEqual(quoted, bytes(off[14:14 + len(quoted)]))
        self.assertGreaterEqual(len(quoted), min(len(off) - 14, 576 - 28))
        self.assertEqual((s[IPerror].src, s[IPerror].dst, s[TCPerror].sport, s[TCPerror].dport),
                         (dotted(src), dotted(dst), sp, dp))
        # and our own parser finds the flow in it
        back = parse_frame(f)
        self.assertEqual((back.inner.src, back.inner.dst, back.inner.sport, back.inner.dport),
                         (src, dst, sp, dp))

    @SETTINGS
    @given(unicast, unicast, st.sampled_from([MAC1, MAC2]), vlans)
    def test_arp(self, a, b, mac, vlan):
        req = arp.build_request(mac, a, b, vlan=vlan)
        s = Ether(bytes(req))
        self.assertEqual((s[ARP].op, s[ARP].psrc, s[ARP].pdst, s[ARP].hwsrc, s.dst),
                         (1, dotted(a), dotted(b), mac, "ff:ff:ff:ff:ff:ff"))
        self.assertEqual(len(req), 60)
        got = arp.parse_arp_frame(req)
        self.assertEqual((got.op, got.spa, got.tpa, got.sha, got.vlan),
                         (1, a, b, bytes.fromhex(mac.replace(":", "")), vlan))
        rep = arp.build_reply_to(got, MAC2)
        r = Ether(bytes(rep))
        self.assertEqual((r[ARP].op, r[ARP].psrc, r[ARP].pdst, r[ARP].hwsrc, r[ARP].hwdst, r.dst),
                         (2, dotted(b), dotted(a), MAC2, mac, mac))
        g = Ether(bytes(arp.build_gratuitous(mac, a)))
        self.assertEqual((g[ARP].op, g[ARP].psrc, g[ARP].pdst, g.dst),
                         (1, dotted(a), dotted(a), "ff:ff:ff:ff:ff:ff"))
        # scapy-built ARP parses too
        sc = bytes(Ether(src=mac, dst=MAC2) / ARP(op=2, hwsrc=mac, psrc=dotted(a), hwdst=MAC2,
                                                  pdst=dotted(b)))
        p = arp.parse_arp_frame(sc)
        self.assertEqual((p.op, p.spa, p.tpa, p.is_reply), (2, a, b, True))

    @SETTINGS
    @given(addrs, addrs, st.binary(min_size=1, max_size=3000), st.integers(68, 1500),
           st.sampled_from([[], [IPOption_Router_Alert()],
                            [IPOption_RR(routers=["1.1.1.1"])]]))
    def test_fragment_reassembles(self, src, dst, data, mtu, opts):
        from scapy.layers.inet import defragment
        orig = IP(src=dotted(src), dst=dotted(dst), id=77, options=opts) / UDP(sport=1, dport=2) / Raw(data)
        raw = bytearray(bytes(orig))
        frags = ipv4.fragment(raw, mtu)
        for f in frags:
            self.assertLessEqual(len(f), mtu)
            self.assertTrue(ipv4.ip_checksum_ok(f))
            assert_checksums_ok(self, build.frame(f)) if len(frags) == 1 else None
        if len(frags) > 1:
            # copied options (router alert) repeat, RR (not copied) only in the first
            for f in frags[1:]:
                kinds = [t for t, _o, _l in ipv4.parse_options(f)]
                self.assertEqual(kinds, [148] if opts and opts[0].option == 20 else [])
        whole = defragment([IP(bytes(f)) for f in frags])
        got = [p for p in whole if UDP in p]
        self.assertEqual(len(got), 1)
        self.assertEqual(bytes(got[0][UDP].payload), data)


class IncrementalChecksums(unittest.TestCase):

    @SETTINGS
    @given(st.binary(min_size=2, max_size=200).map(bytearray), st.data())
    def test_update16_32_and_deltas(self, buf, data):
        if len(buf) & 1:
            buf.append(0)
        c = ck.checksum(buf)
        self.assertEqual(c, scapy_checksum(bytes(buf)))
        i = data.draw(st.integers(0, len(buf) // 2 - 1)) * 2
        new = data.draw(u16)
        old = (buf[i] << 8) | buf[i + 1]
        c1 = ck.update16(c, old, new)
        c2 = ck.apply_delta(c, ck.delta16(old, new))
        ck.put16(buf, i, new)
        full = scapy_checksum(bytes(buf))
        self.assertTrue(same_csum(c1, full))
        self.assertTrue(same_csum(c2, full))
        if len(buf) >= 4:
            j = data.draw(st.integers(0, len(buf) // 2 - 2)) * 2
            new32 = data.draw(u32)
            old32 = int.from_bytes(buf[j:j + 4], "big")
            c3 = ck.update32(full, old32, new32)
            c4 = ck.apply_delta(full, ck.delta32(old32, new32))
            buf[j:j + 4] = new32.to_bytes(4, "big")
            full2 = scapy_checksum(bytes(buf))
            self.assertTrue(same_csum(c3, full2))
            self.assertTrue(same_csum(c4, full2))

    @SETTINGS
    @given(addrs, addrs, addrs, ports, ports, payloads, st.sampled_from([6, 17]))
    def test_partial_sum_update_then_finish(self, src, dst, newsrc, sp, dp, data, proto):
        """NEEDS_CSUM: update the pseudo-header sum for a new source
        address, finish it, and get scapy's full checksum."""
        if proto == 6:
            f = build.tcp_frame(src, dst, sp, dp, 1, 2, ACK, data)
        else:
            f = build.udp_frame(src, dst, sp, dp, data)
        v = vnet.make_partial(f)
        pos = 14 + 20 + (16 if proto == 6 else 6)
        psum = ck.get16(f, pos)
        ck.put16(f, pos, ck.update32_partial(psum, src, newsrc))
        f[26:30] = newsrc.to_bytes(4, "big")
        ipv4.set_ip_checksum(f, 14)
        vnet.finish_checksum(f, v)
        assert_checksums_ok(self, f)

    def test_ttl_decrement(self):
        f = build.tcp_frame("10.0.0.1", "10.0.0.2", 1, 2, ttl=2)
        self.assertEqual(ipv4.decrement_ttl(f, 14), 1)
        s = assert_checksums_ok(self, f)
        self.assertEqual(s[IP].ttl, 1)


def super_frame(payload_len, mss, flags=ACK | PSH | FIN | CWR, seq=0xFFFFF000, vlan=None,
                ipid=0xFFF0):
    data = bytes((i * 7) & 255 for i in range(payload_len))
    f = build.tcp_frame("10.1.1.1", "10.2.2.2", 40000, 80, seq, 99, flags, data, vlan=vlan,
                        ip_id=ipid, options=tcp.encode_options(ts=(5, 6)))
    return f, vnet.make_gso(f, mss), data


class Gso(unittest.TestCase):

    def check_tcp_segments(self, segs, data, seq0, mtu, ipid0, flags, vlan=None):
        got = b""
        nxt = seq0
        for i, s in enumerate(segs):
            self.assertLessEqual(len(s) - (18 if vlan else 14), mtu)
            p = assert_checksums_ok(self, s)
            self.assertEqual(p[TCP].seq, nxt)
            self.assertEqual(p[IP].id, (ipid0 + i) & 0xFFFF)
            self.assertEqual(p[IP].len, len(s) - (18 if vlan else 14))
            last = i == len(segs) - 1
            fl = int(p[TCP].flags)
            self.assertEqual(bool(fl & FIN), last and bool(flags & FIN))
            self.assertEqual(bool(fl & PSH), last and bool(flags & PSH))
            self.assertEqual(bool(fl & CWR), i == 0 and bool(flags & CWR))
            self.assertTrue(fl & ACK)
            self.assertEqual(dict(p[TCP].options)["Timestamp"], (5, 6))
            if vlan:
                self.assertEqual(p[Dot1Q].vlan, vlan)
            pl = bytes(p[TCP].payload)
            got += pl
            nxt = (nxt + len(pl)) & 0xFFFFFFFF
        self.assertEqual(got, data)

    def test_64k_tcp_super_frame(self):
        f, v, data = super_frame(65000, 1448)
        self.assertTrue(vnet.is_partial(v) and vnet.is_gso(v))
        self.assertEqual(vnet.gso_segment_size(f, v), 20 + 32 + 1448)
        segs = vnet.segment(f, v, 1500)
        self.assertEqual(len(segs), -(-65000 // 1448))
        self.check_tcp_segments(segs, data, 0xFFFFF000, 1500, 0xFFF0, ACK | PSH | FIN | CWR)

    def test_mtu_below_gso_size_clamps(self):
        f, v, data = super_frame(20000, 1448, vlan=42)
        self.assertGreater(vnet.gso_segment_size(f, v), 1280)
        segs = vnet.segment(f, v, 1280)
        self.assertEqual(len(segs), -(-20000 // (1280 - 52)))
        self.check_tcp_segments(segs, data, 0xFFFFF000, 1280, 0xFFF0, ACK | PSH | FIN | CWR, 42)

    @settings(max_examples=15, deadline=None)
    @given(st.integers(0, 9000), st.integers(1, 3000), st.integers(576, 9000), u32, u16,
           st.integers(0, 255))
    def test_random_tcp_super_frames(self, n, mss, mtu, seq, ipid, flags):
        f, v, data = super_frame(n, mss, flags=flags | ACK, seq=seq, ipid=ipid)
        segs = vnet.segment(f, v, mtu)
        self.check_tcp_segments(segs, data, seq, mtu, ipid, flags | ACK)
        self.assertLessEqual(max(len(s) - 14 for s in segs), vnet.gso_segment_size(f, v))

    def test_udp_l4(self):
        data = bytes(range(256)) * 20
        f = build.udp_frame("10.1.1.1", "10.2.2.2", 5000, 53, data)
        v = vnet.make_gso(f, 1000)
        self.assertEqual(vnet.gso_segment_size(f, v), 20 + 8 + 1000)
        segs = vnet.segment(f, v, 1500)
        self.assertEqual(len(segs), 6)
        got = b""
        for s in segs:
            p = assert_checksums_ok(self, s)
            self.assertEqual(p[UDP].len, 8 + len(p[UDP].payload))
            self.assertNotEqual(p[UDP].chksum, 0)
            got += bytes(p[UDP].payload)
        self.assertEqual(got, data)

    def test_udp_l4_fragmented_when_mtu_small(self):
        data = bytes(3000)
        f = build.udp_frame("10.1.1.1", "10.2.2.2", 5000, 53, data)
        v = vnet.make_gso(f, 1400)
        segs = vnet.segment(f, v, 576)
        from scapy.layers.inet import defragment
        ips = [Ether(bytes(s))[IP] for s in segs]
        self.assertTrue(all(p.len <= 576 for p in ips))
        whole = [p for p in defragment(ips) if UDP in p]
        self.assertEqual(sorted(len(p[UDP].payload) for p in whole), [200, 1400, 1400])

    def test_ufo(self):
        data = bytes(range(256)) * 10
        f = build.udp_frame("10.1.1.1", "10.2.2.2", 5000, 53, data)
        v = vnet.make_partial(f)
        v = vnet.build(1, vnet.GSO_UDP, 42, 1480, *vnet.parse(v)[4:])
        segs = vnet.segment(f, v, 1500)
        from scapy.layers.inet import defragment
        whole = [p for p in defragment([Ether(bytes(s))[IP] for s in segs]) if UDP in p]
        self.assertEqual(len(whole), 1)
        self.assertEqual(bytes(whole[0][UDP].payload), data)
        q = whole[0].copy()
        del q[UDP].chksum
        self.assertEqual(IP(bytes(q))[UDP].chksum, whole[0][UDP].chksum)

    def test_plain_partial_frame_is_finished(self):
        f = build.tcp_frame("10.1.1.1", "10.2.2.2", 1, 2, 3, 4, ACK, b"abc")
        good = bytes(f)
        v = vnet.make_partial(f)
        self.assertNotEqual(bytes(f), good)
        self.assertEqual(vnet.segment(f, v, 1500), [bytearray(good)])
