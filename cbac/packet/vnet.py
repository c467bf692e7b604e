"""The virtio-net header of AF_PACKET ``PACKET_VNET_HDR`` and software
fallbacks for ports that cannot pass offloaded frames on.

``struct virtio_net_hdr`` (include/uapi/linux/virtio_net.h), 10 bytes in
native byte order (little-endian here): flags u8, gso_type u8, hdr_len
u16, gso_size u16, csum_start u16, csum_offset u16.  ``b""`` stands for a
plain frame (all zero).  ``csum_start`` counts from the first byte of the
Ethernet header.

* :func:`finish_checksum` completes a ``NEEDS_CSUM`` checksum: the field
  holds the folded pseudo-header sum; the sum from ``csum_start`` to the
  end of the IP packet, inverted, is the checksum (0 is sent as 0xFFFF,
  as the kernel does).
* :func:`segment` splits a GSO super-frame (TCPv4, UDP_L4 and UFO) into
  plain frames with complete checksums that fit ``mtu``.
* :func:`gso_segment_size` is the L3 length of the largest packet the
  frame stands for on the wire: the router's "DF + oversize" test.
"""

from __future__ import annotations

from struct import Struct

from cbac.packet.checksum import ones_sum, pseudo_header_sum
from cbac.packet.errors import MalformedPacket
from cbac.packet.ipv4 import fragment, set_ip_checksum
from cbac.packet.tcp import set_tcp_checksum
from cbac.packet.udp import set_udp_checksum
from cbac.packet.view import CWR, FIN, PSH, PROTO_TCP, PROTO_UDP, parse_frame

HDR = Struct("=BBHHHH")
HDR_LEN = 10
ZERO = bytes(HDR_LEN)

F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

_U32 = Struct("!I")


def parse(vnet) -> tuple:
    """``(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)``;
    all zero for ``b""``.  Raises MalformedPacket for a short header."""
    if not vnet:
        return (0, 0, 0, 0, 0, 0)
    if len(vnet) < HDR_LEN:
        raise MalformedPacket("truncated", "vnet header")
    return HDR.unpack_from(vnet)


def build(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
          csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def is_partial(vnet) -> bool:
    """The L4 checksum field holds a pseudo-header sum (NEEDS_CSUM)."""
    return bool(vnet) and bool(vnet[0] & F_NEEDS_CSUM)


def is_gso(vnet) -> bool:
    return bool(vnet) and (vnet[1] & ~GSO_ECN) != GSO_NONE


def is_plain(vnet) -> bool:
    """Nothing a sender must honour: no GSO and no partial checksum."""
    return (not vnet) or (not vnet[0] & F_NEEDS_CSUM and vnet[1] == 0)


def _l3(frame) -> int:
    return 18 if len(frame) >= 18 and frame[12] == 0x81 and frame[13] == 0 else 14


def _packet_end(frame) -> int:
    """End of the IP packet (IPv4 total length or IPv6 payload length), or
    the frame's end when it cannot be told (Ethernet padding excluded)."""
    n = len(frame)
    l3 = _l3(frame)
    if n >= l3 + 4:
        et = (frame[l3 - 2] << 8) | frame[l3 - 1]
        if et == 0x0800:
            end = l3 + ((frame[l3 + 2] << 8) | frame[l3 + 3])
            if l3 + 20 <= end <= n:
                return end
        elif et == 0x86DD and n >= l3 + 6:
            end = l3 + 40 + ((frame[l3 + 4] << 8) | frame[l3 + 5])
            if end <= n:
                return end
    return n


def finish_checksum(frame, vnet):
    """Complete a NEEDS_CSUM checksum in place and return ``frame`` (a
    frame without NEEDS_CSUM is returned untouched)."""
    if not is_partial(vnet):
        return frame
    _flags, _gt, _hl, _gs, start, offset = parse(vnet)
    end = _packet_end(frame)
    pos = start + offset
    if start < 14 or pos + 2 > end:
        raise MalformedPacket("bad-vnet", "csum_start %d offset %d, packet ends at %d"
                              % (start, offset, end))
    c = ~ones_sum(frame, start, end) & 0xFFFF
    if c == 0:
        c = 0xFFFF
    frame[pos] = c >> 8
    frame[pos + 1] = c & 0xFF
    return frame


def make_partial(frame, l3: int | None = None):
    """Turn the frame's TCP/UDP checksum into a NEEDS_CSUM pseudo-header
    sum (what a veth peer with tx offload sends) and return the matching
    vnet header.  For tests and for generated packets the kernel may
    finish."""
    if l3 is None:
        l3 = _l3(frame)
    ihl = (frame[l3] & 15) * 4
    proto = frame[l3 + 9]
    tot = (frame[l3 + 2] << 8) | frame[l3 + 3]
    l4 = l3 + ihl
    off = {PROTO_TCP: 16, PROTO_UDP: 6}[proto]
    src = int.from_bytes(frame[l3 + 12:l3 + 16], "big")
    dst = int.from_bytes(frame[l3 + 16:l3 + 20], "big")
    s = pseudo_header_sum(src, dst, proto, tot - ihl)
    frame[l4 + off] = s >> 8
    frame[l4 + off + 1] = s & 0xFF
    return build(F_NEEDS_CSUM, GSO_NONE, 0, 0, l4, off)


def make_gso(frame, gso_size: int, l3: int | None = None):
    """Make ``frame`` (one big TCP/UDP packet) a GSO super-frame as the
    kernel hands it over: partial checksum, ``gso_type`` TCPV4 or UDP_L4,
    ``hdr_len`` the header length.  Returns the vnet header."""
    if l3 is None:
        l3 = _l3(frame)
    partial = make_partial(frame, l3)
    flags, _gt, _hl, _gs, start, offset = HDR.unpack(partial)
    proto = frame[l3 + 9]
    if proto == PROTO_TCP:
        gt, hl = GSO_TCPV4, start + (frame[start + 12] >> 4) * 4
    else:
        gt, hl = GSO_UDP_L4, start + 8
    return build(flags, gt, hl, gso_size, start, offset)


def gso_segment_size(frame, vnet, pkt=None) -> int:
    """The IP length of the largest packet this frame puts on the wire:
    its total length for a plain frame; headers + ``gso_size`` (or less,
    for a short super-frame) for a GSO frame.  Compare with the egress IP
    MTU.  Raises MalformedPacket."""
    gt = vnet[1] & ~GSO_ECN if vnet else GSO_NONE
    if pkt is None:
        pkt = parse_frame(frame, vnet)
    if gt == GSO_NONE:
        return pkt.ip_len
    gso_size = parse(vnet)[3]
    if gt == GSO_TCPV4 and pkt.proto == PROTO_TCP:
        hdrs = pkt.ihl + pkt.tcp_doff
    elif gt == GSO_UDP_L4 and pkt.proto == PROTO_UDP:
        hdrs = pkt.ihl + 8
    elif gt == GSO_UDP:
        return min(pkt.ip_len, pkt.ihl + (gso_size or pkt.ip_len))
    else:
        raise MalformedPacket("unsupported-gso", "gso_type %d proto %d" % (vnet[1], pkt.proto))
    data = pkt.ip_len - hdrs
    if gso_size and gso_size < data:
        data = gso_size
    return hdrs + data


def segment(frame, vnet, mtu: int) -> list:
    """Split a GSO super-frame into plain frames of at most ``mtu`` IP
    bytes with complete checksums (a frame without GSO comes back alone,
    its partial checksum finished).

    TCPv4: segments of ``gso_size`` payload bytes (fewer when the MTU
    demands), IP ids counting up from the super-frame's, contiguous
    sequence numbers, FIN/PSH only on the last segment, CWR only on the
    first.  UDP_L4: one datagram per ``gso_size`` bytes, each fragmented
    if it does not fit (DF clear) or refused (``too-big``, DF set).  UFO
    (GSO_UDP): the datagram is checksummed and IP-fragmented.  Raises
    MalformedPacket."""
    flags, gso_type, _hl, gso_size, _cs, _co = parse(vnet)
    gt = gso_type & ~GSO_ECN
    if gt == GSO_NONE:
        if flags & F_NEEDS_CSUM:
            finish_checksum(frame, vnet)
        return [frame]
    pkt = parse_frame(frame, vnet)
    if pkt.is_fragment:
        raise MalformedPacket("bad-gso", "GSO frame is a fragment")
    if gt == GSO_TCPV4 and pkt.proto == PROTO_TCP:
        return _segment_tcp(frame, pkt, gso_size, mtu)
    if gt == GSO_UDP_L4 and pkt.proto == PROTO_UDP:
        return _segment_udp(frame, pkt, gso_size, mtu, bool(flags & F_NEEDS_CSUM))
    if gt == GSO_UDP and pkt.proto == PROTO_UDP:
        return _ufo(frame, pkt, mtu)
    raise MalformedPacket("unsupported-gso", "gso_type %d proto %d" % (gso_type, pkt.proto))


def _segment_tcp(frame, pkt, gso_size: int, mtu: int) -> list:
    l3, l4 = pkt.l3, pkt.l4
    ihl, doff = pkt.ihl, pkt.tcp_doff
    hdr_end = l4 + doff
    end = l3 + pkt.ip_len
    room = mtu - ihl - doff
    if room <= 0:
        raise MalformedPacket("bad-mtu", "mtu %d below TCP/IP headers" % mtu)
    mss = min(gso_size, room) if gso_size else room
    total = end - hdr_end
    head = bytes(frame[:hdr_end])
    seq0, id0, fl = pkt.tcp_seq, pkt.ip_id, pkt.tcp_flags
    out = []
    off = 0
    i = 0
    while True:
        n = min(mss, total - off)
        last = off + n >= total
        f = bytearray(head)
        f += frame[hdr_end + off:hdr_end + off + n]
        tot = ihl + doff + n
        f[l3 + 2] = tot >> 8
        f[l3 + 3] = tot & 0xFF
        ipid = (id0 + i) & 0xFFFF
        f[l3 + 4] = ipid >> 8
        f[l3 + 5] = ipid & 0xFF
        set_ip_checksum(f, l3)
        _U32.pack_into(f, l4 + 4, (seq0 + off) & 0xFFFFFFFF)
        g = fl
        if not last:
            g &= ~(FIN | PSH)
        if i:
            g &= ~CWR
        f[l4 + 13] = g
        set_tcp_checksum(f, l3, l4, l3 + tot)
        out.append(f)
        off += n
        i += 1
        if last:
            return out


def _segment_udp(frame, pkt, gso_size: int, mtu: int, partial: bool) -> list:
    l3, l4 = pkt.l3, pkt.l4
    ihl = pkt.ihl
    end = l3 + pkt.ip_len
    total = end - (l4 + 8)
    if gso_size <= 0:
        gso_size = max(total, 1)
    csum = partial or frame[l4 + 6] or frame[l4 + 7]
    head = bytes(frame[:l4 + 8])
    id0 = pkt.ip_id
    out = []
    off = 0
    i = 0
    while True:
        n = min(gso_size, total - off)
        f = bytearray(head)
        f += frame[l4 + 8 + off:l4 + 8 + off + n]
        tot = ihl + 8 + n
        f[l3 + 2] = tot >> 8
        f[l3 + 3] = tot & 0xFF
        ipid = (id0 + i) & 0xFFFF
        f[l3 + 4] = ipid >> 8
        f[l3 + 5] = ipid & 0xFF
        f[l4 + 4] = (8 + n) >> 8
        f[l4 + 5] = (8 + n) & 0xFF
        set_ip_checksum(f, l3)
        if csum:
            set_udp_checksum(f, l3, l4, l3 + tot)
        else:
            f[l4 + 6] = f[l4 + 7] = 0
        out.extend(_fit(f, l3, mtu))
        off += n
        i += 1
        if off >= total:
            return out


def _ufo(frame, pkt, mtu: int) -> list:
    l3, l4 = pkt.l3, pkt.l4
    end = l3 + pkt.ip_len
    f = bytearray(frame[:end])
    ulen = end - l4
    f[l4 + 4] = ulen >> 8
    f[l4 + 5] = ulen & 0xFF
    set_udp_checksum(f, l3, l4, end)
    return _fit(f, l3, mtu)


def _fit(f, l3: int, mtu: int) -> list:
    """``f`` as is, or IP fragments of it (DF clear) when it exceeds mtu."""
    tot = (f[l3 + 2] << 8) | f[l3 + 3]
    if tot <= mtu:
        return [f]
    if f[l3 + 6] & 0x40:
        raise MalformedPacket("too-big", "%d-byte datagram with DF over mtu %d" % (tot, mtu))
    head = f[:l3]
    try:
        frags = fragment(f[l3:], mtu)
    except MalformedPacket:
        raise
    except ValueError as e:
        raise MalformedPacket("bad-mtu", str(e))
    return [bytearray(head) + x for x in frags]

