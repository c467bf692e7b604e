"""A parsed view of an Ethernet/IPv4 frame for the slow path.

:func:`parse_frame` validates a frame and returns a :class:`Packet` that
holds offsets into the frame and the header fields every stage needs
(ACL, NAT, inspection, routing).  Addresses are ints.  The frame itself is
not copied: stages that rewrite it patch ``pkt.frame`` in place and keep
the fields they changed in sync.

Established flows may skip this: a fast path can look the session up on
a key sliced straight from the frame.

:func:`parse_ip_packet` parses a bare IPv4 packet (``l3 == 0``), e.g. one
an engine made (the session table's RSTs).  ``verify_ip=True`` also checks the IP header
checksum (RFC 1812 5.2.2: a router MUST); a bad one raises
``MalformedPacket("bad-ip-checksum")``.

Besides structural checks, a TCP fragment with offset 8 (FO=1) is refused
(``bad-fragment``, RFC 1858: it can overwrite the TCP flags of the first
fragment after the filter has looked at them).
"""

from __future__ import annotations

from struct import Struct

from cbac.packet.errors import MalformedPacket

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

# TCP flags
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128

#: ICMP types that quote the offending datagram.
ICMP_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))

_IP = Struct("!BBHHHBBHII")
_TCP = Struct("!HHIIBBH")
#: a 20-byte IPv4 header and the TCP header's fixed part in one unpack
_IP_TCP = Struct("!BBHHHBBHIIHHIIBBH")
_U16x2 = Struct("!HH")
_U16 = Struct("!H")
_U32 = Struct("!I")


class Inner:
    """The datagram quoted by an ICMP error (its first 8 L4 bytes)."""

    __slots__ = ("l3", "ihl", "proto", "src", "dst", "sport", "dport",
                 "icmp_type", "icmp_id", "l4", "frag")

    def __repr__(self):
        return "<Inner proto=%d %08x:%d -> %08x:%d>" % (
            self.proto, self.src, self.sport, self.dst, self.dport)


class Packet:
    """Offsets and fields of one frame.  ``sport``/``dport`` are 0 when the
    packet has no ports; ``icmp_type``/``icmp_code``/``icmp_id`` are -1 when
    it is not ICMP; ``tcp_*`` are 0 when it is not TCP."""

    __slots__ = (
        "frame", "vnet", "vlan", "ethertype", "l3", "ihl", "ip_len", "ip_id",
        "frag", "mf", "df", "ttl", "proto", "src", "dst", "l4", "sport",
        "dport", "tcp_seq", "tcp_ack", "tcp_flags", "tcp_win", "tcp_doff",
        "payload", "payload_len", "icmp_type", "icmp_code", "icmp_id",
        "inner", "in_port", "out_port", "meta",
    )

    def __repr__(self):
        return "<Packet proto=%d %s:%d -> %s:%d len=%d>" % (
            self.proto, ip_str(self.src), self.sport, ip_str(self.dst),
            self.dport, self.ip_len)

    @property
    def is_fragment(self) -> bool:
        return bool(self.frag or self.mf)

    @property
    def is_noninitial_fragment(self) -> bool:
        return self.frag != 0


def ip_str(addr: int) -> str:
    return "%d.%d.%d.%d" % (addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255)


def ip_int(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def parse_frame(frame, vnet: bytes = b"", verify_ip: bool = False) -> Packet:
    """Parse an Ethernet II frame carrying IPv4.  Raises
    :class:`MalformedPacket` for anything that is not a well-formed IPv4
    packet (ARP and other ethertypes are not handled here: the router
    dispatches on the ethertype first)."""
    n = len(frame)
    if n < 14:
        raise MalformedPacket("truncated", "ethernet")
    if frame[12] == 8 and frame[13] == 0:       # untagged IPv4: the usual case
        l3 = 14
    else:
        et = (frame[12] << 8) | frame[13]
        l3 = 14
        if et == ETH_P_8021Q:
            if n < 18:
                raise MalformedPacket("truncated", "802.1Q")
            et = (frame[16] << 8) | frame[17]
            l3 = 18
        if et != ETH_P_IP:
            raise MalformedPacket("not-ipv4", "ethertype 0x%04x" % et)
    if n - l3 >= 40 and frame[l3] == 0x45 and frame[l3 + 9] == PROTO_TCP:
        return parse_tcp20(frame, vnet, l3, n, verify_ip)
    return _ipv4_packet(frame, vnet, l3, n, verify_ip)


def parse_plain(frame, vnet: bytes = b"") -> Packet:
    """:func:`parse_frame` for the router's fast path's frames: untagged
    IPv4 (``frame[12:14]`` is 08 00) with a 20-byte header
    (``frame[14] == 0x45``), 54 bytes or more.  The same checks, fields and
    exceptions, without the dispatch on the ethertype."""
    if frame[23] == PROTO_TCP:
        return parse_tcp20(frame, vnet, 14, len(frame), False)
    return _ipv4_packet(frame, vnet, 14, len(frame), False)


def parse_ip_packet(packet, vnet: bytes = b"", verify_ip: bool = False) -> Packet:
    """Parse a bare IPv4 packet (no Ethernet header; ``l3 == 0``,
    ``vlan`` False).  Same checks and exception as :func:`parse_frame`."""
    n = len(packet)
    if n >= 40 and packet[0] == 0x45 and packet[9] == PROTO_TCP:
        return parse_tcp20(packet, vnet, 0, n, verify_ip)
    return _ipv4_packet(packet, vnet, 0, n, verify_ip)


def _ipv4_packet(frame, vnet, l3: int, n: int, verify_ip: bool) -> Packet:
    """The Packet of an IPv4 packet at ``l3`` (18: after an 802.1Q tag; any
    protocol and header length), as :func:`_parse_ip_any` reads it."""
    p = Packet()
    p.frame = frame
    p.vnet = vnet
    p.vlan = l3 == 18
    p.ethertype = ETH_P_IP
    p.l3 = l3
    p.in_port = p.out_port = p.meta = None
    _parse_ip_any(p, frame, l3, n, verify_ip)
    return p


def _parse_ip_any(p: Packet, frame, l3: int, n: int, verify_ip: bool = False) -> None:
    """Any IPv4 packet (the reference for :func:`parse_tcp20`)."""
    if n - l3 < 20:
        raise MalformedPacket("truncated", "ip header")
    vihl, _tos, tot, ipid, fo, ttl, proto, _ck, src, dst = _IP.unpack_from(frame, l3)
    if vihl >> 4 != 4:
        raise MalformedPacket("bad-version", str(vihl >> 4))
    ihl = (vihl & 15) * 4
    if ihl < 20:
        raise MalformedPacket("bad-ihl", str(ihl))
    if tot < ihl:
        raise MalformedPacket("bad-length", "total %d < ihl %d" % (tot, ihl))
    if l3 + tot > n:
        raise MalformedPacket("truncated", "ip total length %d > %d" % (tot, n - l3))
    if verify_ip and int.from_bytes(frame[l3:l3 + ihl], "big") % 0xFFFF:
        raise MalformedPacket("bad-ip-checksum")
    p.ihl = ihl
    p.ip_len = tot
    p.ip_id = ipid
    p.frag = frag = (fo & 0x1FFF) * 8
    p.mf = mf = (fo & 0x2000) != 0
    p.df = (fo & 0x4000) != 0
    p.ttl = ttl
    p.proto = proto
    p.src = src
    p.dst = dst
    l4 = l3 + ihl
    end = l3 + tot
    p.l4 = l4
    p.sport = p.dport = 0
    p.tcp_seq = p.tcp_ack = p.tcp_flags = p.tcp_win = p.tcp_doff = 0
    p.icmp_type = p.icmp_code = p.icmp_id = -1
    p.inner = None
    p.payload = l4
    p.payload_len = end - l4
    if frag:
        if frag == 8 and proto == PROTO_TCP:
            raise MalformedPacket("bad-fragment", "tcp fragment offset 8 (RFC 1858)")
        return                        # non-initial fragment: no L4 header
    avail = end - l4
    if proto == PROTO_TCP:
        if avail < 20:
            raise MalformedPacket("truncated", "tcp header")
        sport, dport, seq, ack, off, flags, win = _TCP.unpack_from(frame, l4)
        doff = (off >> 4) * 4
        if doff < 20 or doff > avail:
            raise MalformedPacket("bad-tcp-offset", str(doff))
        p.sport, p.dport = sport, dport
        p.tcp_seq, p.tcp_ack, p.tcp_flags, p.tcp_win, p.tcp_doff = seq, ack, flags, win, doff
        p.payload = l4 + doff
        p.payload_len = avail - doff
    elif proto == PROTO_UDP:
        if avail < 8:
            raise MalformedPacket("truncated", "udp header")
        p.sport, p.dport = _U16x2.unpack_from(frame, l4)
        ulen = _U16.unpack_from(frame, l4 + 4)[0]
        if ulen < 8 or (ulen > avail and not mf):
            # The first fragment of a fragmented datagram carries the length
            # of the whole datagram; GSO UDP super-frames carry the
            # per-segment length: be lenient only when a vnet header says so.
            if not (p.vnet and len(p.vnet) >= 2 and p.vnet[1] in (3, 5)):
                raise MalformedPacket("bad-udp-length", str(ulen))
        p.payload = l4 + 8
        p.payload_len = avail - 8
    elif proto == PROTO_ICMP:
        if avail < 8:
            raise MalformedPacket("truncated", "icmp header")
        t, c = frame[l4], frame[l4 + 1]
        p.icmp_type, p.icmp_code = t, c
        p.payload = l4 + 8
        p.payload_len = avail - 8
        if t in ICMP_ERROR_TYPES:
            p.icmp_id = 0
            p.inner = _parse_inner(frame, l4 + 8, end)
        else:
            p.icmp_id = _U16.unpack_from(frame, l4 + 4)[0]


def parse_tcp20(frame, vnet, l3: int, n: int, verify_ip: bool) -> Packet:
    """:func:`_parse_ip_any` for the usual TCP segment: a 20-byte IPv4 header
    (``frame[l3] == 0x45``, protocol 6) and at least 40 bytes from ``l3``
    in the frame, unpacked at once.  The same checks in the same order, the
    same fields and exceptions as the general path; a new :class:`Packet`
    with every field set (``vlan``: ``l3 == 18``)."""
    (_vihl, _tos, tot, ipid, fo, ttl, _proto, _ck, src, dst,
     sport, dport, seq, ack, off, flags, win) = _IP_TCP.unpack_from(frame, l3)
    if tot < 20:
        raise MalformedPacket("bad-length", "total %d < ihl %d" % (tot, 20))
    if l3 + tot > n:
        raise MalformedPacket("truncated", "ip total length %d > %d" % (tot, n - l3))
    if verify_ip and int.from_bytes(frame[l3:l3 + 20], "big") % 0xFFFF:
        raise MalformedPacket("bad-ip-checksum")
    frag = (fo & 0x1FFF) * 8
    avail = tot - 20
    l4 = l3 + 20
    if frag:
        if frag == 8:
            raise MalformedPacket("bad-fragment", "tcp fragment offset 8 (RFC 1858)")
        # non-initial fragment: no L4 header
        sport = dport = seq = ack = flags = win = doff = 0
        payload = l4
    else:
        if avail < 20:
            raise MalformedPacket("truncated", "tcp header")
        doff = (off >> 4) * 4
        if doff < 20 or doff > avail:
            raise MalformedPacket("bad-tcp-offset", str(doff))
        payload = l4 + doff
        avail -= doff
    p = Packet()
    p.frame = frame
    p.vnet = vnet
    p.vlan = l3 == 18
    p.ethertype = ETH_P_IP
    p.l3 = l3
    p.in_port = p.out_port = p.meta = p.inner = None
    p.ihl = 20
    p.ip_len = tot
    p.ip_id = ipid
    p.frag = frag
    p.mf = (fo & 0x2000) != 0
    p.df = (fo & 0x4000) != 0
    p.ttl = ttl
    p.proto = PROTO_TCP
    p.src = src
    p.dst = dst
    p.l4 = l4
    p.icmp_type = p.icmp_code = p.icmp_id = -1
    p.sport = sport
    p.dport = dport
    p.tcp_seq = seq
    p.tcp_ack = ack
    p.tcp_flags = flags
    p.tcp_win = win
    p.tcp_doff = doff
    p.payload = payload
    p.payload_len = avail
    return p


def _parse_inner(frame, off: int, end: int):
    """The quoted datagram of an ICMP error, or None when too short to
    identify a flow (callers treat None as "belongs to nothing")."""
    if end - off < 20:
        return None
    vihl = frame[off]
    ihl = (vihl & 15) * 4
    if vihl >> 4 != 4 or ihl < 20 or end - off < ihl + 8:
        return None
    q = Inner()
    q.l3 = off
    q.ihl = ihl
    q.proto = frame[off + 9]
    q.src = int.from_bytes(frame[off + 12:off + 16], "big")
    q.dst = int.from_bytes(frame[off + 16:off + 20], "big")
    q.l4 = off + ihl
    q.sport = q.dport = 0
    q.icmp_type = q.icmp_id = -1
    q.frag = (((frame[off + 6] << 8) | frame[off + 7]) & 0x1FFF) * 8
    if q.frag:
        return q                      # a non-initial fragment: no L4 header
    if q.proto in (PROTO_TCP, PROTO_UDP):
        q.sport, q.dport = _U16x2.unpack_from(frame, q.l4)
    elif q.proto == PROTO_ICMP:
        q.icmp_type = frame[q.l4]
        q.icmp_id = _U16.unpack_from(frame, q.l4 + 4)[0]
    return q
