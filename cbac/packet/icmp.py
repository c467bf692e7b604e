"""ICMP builders: echo request/reply and error messages that quote the
offending datagram (RFC 792, RFC 1812 4.3.2.3).

Errors quote the offending IP header and as much of its data as fits in a
576-byte ICMP datagram (RFC 1812; at least the 8 bytes RFC 792 asks for).
They are sent with TTL 255, as IOS does.  :func:`may_send_error` applies
the RFC 1812 4.3.2.7 rules (never about an ICMP error, a non-initial
fragment, a broadcast/multicast destination or a source that is not a
unique host).  Parsing of errors is :class:`cbac.packet.view.Inner`
(``pkt.inner``).
"""

from __future__ import annotations

from struct import Struct

from cbac.packet.checksum import checksum, update16, update32
from cbac.packet.ipv4 import build_ipv4
from cbac.packet.view import ICMP_ERROR_TYPES

PROTO = 1

ECHO_REPLY = 0
UNREACHABLE = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
TIMESTAMP = 13
TIMESTAMP_REPLY = 14

# destination unreachable codes (RFC 792, RFC 1122, RFC 1812)
NET_UNREACHABLE = 0
HOST_UNREACHABLE = 1
PROTOCOL_UNREACHABLE = 2
PORT_UNREACHABLE = 3
FRAG_NEEDED = 4
SOURCE_ROUTE_FAILED = 5
NET_PROHIBITED = 9
HOST_PROHIBITED = 10
ADMIN_PROHIBITED = 13

# time exceeded codes
TTL_EXCEEDED = 0
REASSEMBLY_EXCEEDED = 1

ERROR_TTL = 255
MAX_ERROR_LEN = 576

_HDR = Struct("!BBHHH")


def set_icmp_checksum(buf, l4: int, end: int) -> None:
    buf[l4 + 2] = buf[l4 + 3] = 0
    c = checksum(buf, l4, end)
    buf[l4 + 2] = c >> 8
    buf[l4 + 3] = c & 0xFF


def build_icmp(src, dst, icmp_type: int, code: int, rest: int = 0, body=b"", *,
               ttl: int = 64, ip_id: int = 0, tos: int = 0, df: bool = False) -> bytearray:
    """A generic ICMP/IPv4 packet; ``rest`` is the 32-bit second word."""
    msg = bytearray(_HDR.pack(icmp_type, code, 0, rest >> 16, rest & 0xFFFF))
    msg += body
    p = build_ipv4(src, dst, PROTO, msg, ttl=ttl, ip_id=ip_id, tos=tos, df=df)
    set_icmp_checksum(p, 20, len(p))
    return p


def build_echo(src, dst, ident: int, seq: int, payload=b"", *, reply: bool = False,
               ttl: int = 64, ip_id: int = 0) -> bytearray:
    return build_icmp(src, dst, ECHO_REPLY if reply else ECHO_REQUEST, 0,
                      ((ident & 0xFFFF) << 16) | (seq & 0xFFFF), payload, ttl=ttl, ip_id=ip_id)


def build_echo_reply(pkt, *, ttl: int = 255, ip_id: int = 0) -> bytearray:
    """The reply to a parsed echo request (``Packet``) for one of our
    addresses: same identifier, sequence number and data."""
    f = pkt.frame
    l4 = pkt.l4
    rest = int.from_bytes(f[l4 + 4:l4 + 8], "big")
    return build_icmp(pkt.dst, pkt.src, ECHO_REPLY, 0, rest, f[l4 + 8:pkt.l3 + pkt.ip_len],
                      ttl=ttl, ip_id=ip_id)


def _offending_bytes(offending):
    """The offending datagram as a bytes-like slice starting at its IP
    header: from a ``Packet`` or a bare IPv4 packet."""
    if hasattr(offending, "frame"):
        return offending.frame[offending.l3:offending.l3 + offending.ip_len]
    b = offending
    if len(b) >= 4:
        tot = (b[2] << 8) | b[3]
        if 20 <= tot <= len(b):
            return b[:tot]
    return b


def build_error(src, icmp_type: int, code: int, offending, *, rest: int = 0, dst=None,
                max_len: int = MAX_ERROR_LEN, ttl: int = ERROR_TTL, ip_id: int = 0,
                tos: int = 0) -> bytearray:
    """An ICMP error from ``src`` (the router's address) about
    ``offending`` (a ``Packet`` or a bare IPv4 packet), sent to the
    offending source unless ``dst`` is given.  The quote is the offending
    IP header plus as much data as keeps the whole ICMP packet within
    ``max_len`` bytes (never less than the header + 8 bytes)."""
    data = _offending_bytes(offending)
    if dst is None:
        dst = int.from_bytes(data[12:16], "big")
    ihl = (data[0] & 15) * 4 if data else 20
    quote_len = max(max_len - 28, ihl + 8)
    quote = bytes(data[:quote_len])
    return build_icmp(src, dst, icmp_type, code, rest, quote, ttl=ttl, ip_id=ip_id, tos=tos)


def build_unreachable(src, offending, code: int = HOST_UNREACHABLE, *, mtu: int = 0,
                      **kw) -> bytearray:
    """Destination unreachable (type 3); ``mtu`` is the next-hop MTU of
    code 4 (RFC 1191)."""
    return build_error(src, UNREACHABLE, code, offending, rest=mtu & 0xFFFF, **kw)


def build_frag_needed(src, offending, mtu: int, **kw) -> bytearray:
    """3/4 "fragmentation needed and DF set" with the next-hop MTU."""
    return build_unreachable(src, offending, FRAG_NEEDED, mtu=mtu, **kw)


def build_admin_prohibited(src, offending, **kw) -> bytearray:
    """3/13 "communication administratively prohibited" (an ACL denied)."""
    return build_unreachable(src, offending, ADMIN_PROHIBITED, **kw)


def build_time_exceeded(src, offending, code: int = TTL_EXCEEDED, **kw) -> bytearray:
    return build_error(src, TIME_EXCEEDED, code, offending, **kw)


def _put(frame, off, value, width):
    frame[off:off + width] = value.to_bytes(width, "big")


def rewrite_error(pkt, src: int, dst: int, sport: int, dport: int,
                  outer_src: int, outer_dst: int) -> None:
    """Rewrite an ICMP error for NAT, in place: the quoted datagram gets
    addresses ``src``/``dst`` and ports ``sport``/``dport`` (a quoted ICMP
    query: identifier ``sport``), the outer header ``outer_src`` ->
    ``outer_dst``.  The one ICMP-error rewrite of cbac: NAT
    (:meth:`cbac.nat.table.Nat.translate_icmp_error`) and inspection
    (:func:`cbac.inspect.icmp.error_lookup`) both use it.

    Checksums: the quoted IP header's is recomputed; the quoted TCP/UDP
    checksum (when quoted) and the quoted ICMP query's are updated
    incrementally (RFC 1624).  A quoted UDP checksum of 0 means "no
    checksum" and stays 0 (RFC 768); an updated UDP checksum that comes
    out 0 is sent as 0xFFFF, since 0 would mean "none".  The ICMP checksum
    and the outer IP header checksum are recomputed over the message."""
    f = pkt.frame
    q = pkt.inner
    end = pkt.l3 + pkt.ip_len
    ql3, ql4, qp = q.l3, q.l4, q.proto
    osrc, odst = q.src, q.dst
    _put(f, ql3 + 12, src, 4)
    _put(f, ql3 + 16, dst, 4)
    f[ql3 + 10] = f[ql3 + 11] = 0
    _put(f, ql3 + 10, checksum(f, ql3, ql3 + q.ihl), 2)
    if qp == 6 or qp == 17:
        osp, odp = q.sport, q.dport
        _put(f, ql4, sport, 2)
        _put(f, ql4 + 2, dport, 2)
        c = ql4 + (16 if qp == 6 else 6)
        if c + 2 <= end:
            v = (f[c] << 8) | f[c + 1]
            if not (qp == 17 and v == 0):
                v = update32(v, osrc, src)
                v = update32(v, odst, dst)
                v = update16(v, osp, sport)
                v = update16(v, odp, dport)
                if qp == 17 and v == 0:
                    v = 0xFFFF
                _put(f, c, v, 2)
        q.sport, q.dport = sport, dport
    elif qp == 1:
        old_id = q.icmp_id
        if sport is not None and sport != old_id:
            _put(f, ql4 + 4, sport, 2)
            c = ql4 + 2
            if c + 2 <= end:
                v = (f[c] << 8) | f[c + 1]
                _put(f, c, update16(v, old_id, sport), 2)
            q.icmp_id = sport
    q.src, q.dst = src, dst
    l4 = pkt.l4
    f[l4 + 2] = f[l4 + 3] = 0
    _put(f, l4 + 2, checksum(f, l4, end), 2)
    l3 = pkt.l3
    _put(f, l3 + 12, outer_src, 4)
    _put(f, l3 + 16, outer_dst, 4)
    f[l3 + 10] = f[l3 + 11] = 0
    _put(f, l3 + 10, checksum(f, l3, l3 + pkt.ihl), 2)
    pkt.src, pkt.dst = outer_src, outer_dst


def next_hop_mtu(pkt) -> int:
    """The next-hop MTU of a parsed 3/4 error (0 when absent/other)."""
    if pkt.icmp_type != UNREACHABLE or pkt.icmp_code != FRAG_NEEDED:
        return 0
    f = pkt.frame
    return (f[pkt.l4 + 6] << 8) | f[pkt.l4 + 7]


def _unique_host(a: int) -> bool:
    first = a >> 24
    return not (a == 0 or first == 0 or first == 127 or first >= 224)


def may_send_error(pkt, link_broadcast: bool = False) -> bool:
    """RFC 1812 4.3.2.7: may an ICMP error be sent about ``pkt``?  No for
    an ICMP error (or redirect), a non-initial fragment, a packet sent to
    a link-layer broadcast (``link_broadcast``) or to an IP
    broadcast/multicast address, or one whose source is not a unique
    host (0/8, 127/8, multicast, class E, 255.255.255.255).  Directed
    broadcasts of attached subnets are the caller's check."""
    if link_broadcast or pkt.frag:
        return False
    if pkt.proto == PROTO and pkt.icmp_type in ICMP_ERROR_TYPES:
        return False
    if pkt.dst >> 28 == 14 or pkt.dst == 0xFFFFFFFF:
        return False
    return _unique_host(pkt.src)
