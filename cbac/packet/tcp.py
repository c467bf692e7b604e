"""TCP: options, builders, checksums and in-place sequence edits.

Options are kept as they are on the wire; :func:`parse_options` reads them
(MSS, window scale, SACK-permitted, SACK blocks, timestamps) and records
where each one sits so a stream editor can shift SACK edges in place
(:func:`shift_sack`).  The sequence/ack/SACK helpers update the checksum
incrementally; with a partial (NEEDS_CSUM) checksum they leave it alone,
since only the pseudo-header is summed into the field.
"""

from __future__ import annotations

from struct import Struct

from cbac.packet.checksum import checksum, pseudo_header_sum, update32
from cbac.packet.errors import MalformedPacket
from cbac.packet.ipv4 import build_ipv4
from cbac.packet.view import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG  # noqa: F401

PROTO = 6

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

_HDR = Struct("!HHIIBBHHH")
_U32 = Struct("!I")
_U16 = Struct("!H")

_FIXED_LEN = {OPT_MSS: 4, OPT_WSCALE: 3, OPT_SACK_PERMITTED: 2, OPT_TIMESTAMP: 10}


class TcpOptions:
    """Parsed options.  ``None``/``False``/empty when absent.  ``sack`` is a
    list of ``(left, right)`` edges, ``sack_off`` the offset of the first
    block in the buffer (blocks follow at 8-byte steps); ``ts_off`` the
    offset of TSval.  ``raw``: ``[(kind, offset, length), ...]`` of every
    option but EOL/NOP."""

    __slots__ = ("mss", "wscale", "sack_permitted", "sack", "sack_off", "ts_val",
                 "ts_ecr", "ts_off", "raw")

    def __init__(self):
        self.mss = self.wscale = self.ts_val = self.ts_ecr = self.ts_off = self.sack_off = None
        self.sack_permitted = False
        self.sack = []
        self.raw = []

    def __repr__(self):
        return "<TcpOptions mss=%s ws=%s sackOK=%s sack=%s ts=%s/%s>" % (
            self.mss, self.wscale, self.sack_permitted, self.sack, self.ts_val, self.ts_ecr)


def parse_options(buf, l4: int, doff: int | None = None) -> TcpOptions:
    """Parse the options of the TCP header at ``l4`` (``doff`` bytes long,
    read from the header when None).  Raises
    ``MalformedPacket("bad-tcp-option")`` for an option that runs past
    the header or has a wrong length for its kind."""
    if doff is None:
        if len(buf) - l4 < 13:
            raise MalformedPacket("truncated", "tcp header")
        doff = (buf[l4 + 12] >> 4) * 4
    end = l4 + doff
    if doff < 20 or end > len(buf):
        raise MalformedPacket("bad-tcp-offset", str(doff))
    o = TcpOptions()
    off = l4 + 20
    while off < end:
        k = buf[off]
        if k == OPT_EOL:
            break
        if k == OPT_NOP:
            off += 1
            continue
        if off + 1 >= end:
            raise MalformedPacket("bad-tcp-option", "kind %d without length" % k)
        ln = buf[off + 1]
        if ln < 2 or off + ln > end:
            raise MalformedPacket("bad-tcp-option", "kind %d length %d" % (k, ln))
        want = _FIXED_LEN.get(k)
        if want is not None and ln != want:
            raise MalformedPacket("bad-tcp-option", "kind %d length %d" % (k, ln))
        if k == OPT_MSS:
            o.mss = _U16.unpack_from(buf, off + 2)[0]
        elif k == OPT_WSCALE:
            o.wscale = buf[off + 2]
        elif k == OPT_SACK_PERMITTED:
            o.sack_permitted = True
        elif k == OPT_TIMESTAMP:
            o.ts_val, o.ts_ecr = _U32.unpack_from(buf, off + 2)[0], _U32.unpack_from(buf, off + 6)[0]
            o.ts_off = off + 2
        elif k == OPT_SACK:
            if (ln - 2) % 8:
                raise MalformedPacket("bad-tcp-option", "sack length %d" % ln)
            o.sack_off = off + 2
            o.sack = [(_U32.unpack_from(buf, p)[0], _U32.unpack_from(buf, p + 4)[0])
                      for p in range(off + 2, off + ln, 8)]
        o.raw.append((k, off, ln))
        off += ln
    return o


def encode_options(mss=None, wscale=None, sack_permitted=False, ts=None, sack=()) -> bytes:
    """Options in the order Linux sends them, NOP-padded to 4 bytes."""
    out = bytearray()
    if mss is not None:
        out += bytes((OPT_MSS, 4)) + _U16.pack(mss)
    if sack_permitted and ts is not None:
        out += bytes((OPT_SACK_PERMITTED, 2, OPT_TIMESTAMP, 10)) + _U32.pack(ts[0]) + _U32.pack(ts[1])
    else:
        if ts is not None:
            out += bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10)) + _U32.pack(ts[0]) + _U32.pack(ts[1])
        if sack_permitted:
            out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
    if wscale is not None:
        out += bytes((OPT_NOP, OPT_WSCALE, 3, wscale))
    if sack:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sack)))
        for left, right in sack:
            out += _U32.pack(left) + _U32.pack(right)
    while len(out) & 3:
        out.append(OPT_NOP)
    if len(out) > 40:
        raise ValueError("TCP options longer than 40 bytes")
    return bytes(out)


def tcp_checksum(buf, l3: int, l4: int, end: int) -> int:
    """The full checksum of the segment ``buf[l4:end]`` (the field itself
    is treated as zero)."""
    src = int.from_bytes(buf[l3 + 12:l3 + 16], "big")
    dst = int.from_bytes(buf[l3 + 16:l3 + 20], "big")
    ph = pseudo_header_sum(src, dst, PROTO, end - l4)
    saved = buf[l4 + 16], buf[l4 + 17]
    buf[l4 + 16] = buf[l4 + 17] = 0
    c = checksum(buf, l4, end, ph)
    buf[l4 + 16], buf[l4 + 17] = saved
    return c


def set_tcp_checksum(buf, l3: int = 0, l4: int | None = None, end: int | None = None) -> None:
    if l4 is None:
        l4 = l3 + (buf[l3] & 15) * 4
    if end is None:
        end = l3 + ((buf[l3 + 2] << 8) | buf[l3 + 3])
    c = tcp_checksum(buf, l3, l4, end)
    buf[l4 + 16] = c >> 8
    buf[l4 + 17] = c & 0xFF


def build_tcp(src, dst, sport: int, dport: int, seq: int = 0, ack: int = 0, flags: int = ACK,
              payload=b"", *, win: int = 65535, options=b"", urg: int = 0, ttl: int = 64,
              ip_id: int = 0, tos: int = 0, df: bool = True) -> bytearray:
    """A TCP/IPv4 packet with correct checksums.  ``options`` are raw
    bytes (see :func:`encode_options`), padded with EOL to 4 bytes."""
    options = bytes(options)
    if len(options) & 3:
        options += bytes(4 - (len(options) & 3))
    doff = 20 + len(options)
    if doff > 60:
        raise ValueError("TCP options longer than 40 bytes")
    seg = bytearray(_HDR.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (doff >> 2) << 4,
                              flags & 0xFF, win, 0, urg))
    seg += options
    seg += payload
    p = build_ipv4(src, dst, PROTO, seg, ttl=ttl, ip_id=ip_id, tos=tos, df=df)
    set_tcp_checksum(p, 0, 20, len(p))
    return p


def rst_for(pkt) -> bytearray:
    """The RST a host would answer ``pkt`` (a :class:`~cbac.packet.view.Packet`
    of a TCP segment) with (RFC 793 "Reset Generation"), as an IPv4 packet
    from pkt's destination to its source."""
    if pkt.tcp_flags & ACK:
        seq, ack, flags = pkt.tcp_ack, 0, RST
    else:
        seq = 0
        ack = pkt.tcp_seq + pkt.payload_len + (1 if pkt.tcp_flags & SYN else 0) + (1 if pkt.tcp_flags & FIN else 0)
        flags = RST | ACK
    return build_tcp(pkt.dst, pkt.src, pkt.dport, pkt.sport, seq, ack, flags, win=0)


def segment_length(pkt) -> int:
    """Sequence space a segment occupies (payload + SYN + FIN)."""
    return pkt.payload_len + (1 if pkt.tcp_flags & SYN else 0) + (1 if pkt.tcp_flags & FIN else 0)


def _set32(buf, off: int, csum_off: int, new: int, partial: bool) -> None:
    new &= 0xFFFFFFFF
    old = _U32.unpack_from(buf, off)[0]
    _U32.pack_into(buf, off, new)
    if not partial:
        c = update32((buf[csum_off] << 8) | buf[csum_off + 1], old, new)
        buf[csum_off] = c >> 8
        buf[csum_off + 1] = c & 0xFF


def set_seq(buf, l4: int, seq: int, partial: bool = False) -> None:
    _set32(buf, l4 + 4, l4 + 16, seq, partial)


def set_ack(buf, l4: int, ack: int, partial: bool = False) -> None:
    _set32(buf, l4 + 8, l4 + 16, ack, partial)


def shift_sack(buf, l4: int, opts: TcpOptions, delta: int, partial: bool = False) -> None:
    """Add ``delta`` (mod 2**32) to every SACK edge in place (a stream edit
    changed the peer's sequence space)."""
    if opts.sack_off is None:
        return
    for i, (left, right) in enumerate(opts.sack):
        p = opts.sack_off + 8 * i
        _set32(buf, p, l4 + 16, left + delta, partial)
        _set32(buf, p + 4, l4 + 16, right + delta, partial)
        opts.sack[i] = ((left + delta) & 0xFFFFFFFF, (right + delta) & 0xFFFFFFFF)

