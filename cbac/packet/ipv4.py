"""IPv4 builders and in-place helpers (parsing is :mod:`cbac.packet.view`).

Builders return a ``bytearray`` holding a bare IPv4 packet (starting at
the IP header) with a correct header checksum; wrap it with
:func:`cbac.packet.ethernet.build_frame`.  Addresses are ints or dotted
strings.
"""

from __future__ import annotations

from struct import Struct

from cbac.packet.checksum import checksum, update16
from cbac.packet.errors import MalformedPacket
from cbac.packet.view import ip_int

_IP = Struct("!BBHHHBBH4s4s")

# option types (RFC 791; the high bit is the "copied" flag)
OPT_EOL = 0
OPT_NOP = 1
OPT_RR = 7
OPT_TS = 68
OPT_LSRR = 131
OPT_SSRR = 137
OPT_RA = 148            # router alert


def addr(a) -> int:
    """An IPv4 address as int from an int or a dotted string."""
    return ip_int(a) if isinstance(a, str) else a


def build_ipv4(src, dst, proto: int, payload=b"", *, ttl: int = 64, ip_id: int = 0,
               tos: int = 0, df: bool = False, mf: bool = False, frag: int = 0,
               options=b"") -> bytearray:
    """An IPv4 packet.  ``frag`` is the fragment offset in bytes (a
    multiple of 8); ``options`` are padded to a multiple of 4 with EOL."""
    options = bytes(options)
    if len(options) & 3:
        options += bytes(4 - (len(options) & 3))
    ihl = 20 + len(options)
    if ihl > 60:
        raise ValueError("IP options longer than 40 bytes")
    if frag & 7:
        raise ValueError("fragment offset must be a multiple of 8")
    fo = (frag >> 3) | (0x4000 if df else 0) | (0x2000 if mf else 0)
    tot = ihl + len(payload)
    if tot > 0xFFFF:
        raise ValueError("IP packet longer than 65535 bytes")
    p = bytearray(_IP.pack(0x40 | (ihl >> 2), tos, tot, ip_id & 0xFFFF, fo, ttl, proto, 0,
                           addr(src).to_bytes(4, "big"), addr(dst).to_bytes(4, "big")))
    p += options
    set_ip_checksum(p, 0)
    p += payload
    return p


def set_ip_checksum(buf, l3: int = 0) -> None:
    """Compute the header checksum from scratch and store it."""
    ihl = (buf[l3] & 15) * 4
    buf[l3 + 10] = buf[l3 + 11] = 0
    c = checksum(buf, l3, l3 + ihl)
    buf[l3 + 10] = c >> 8
    buf[l3 + 11] = c & 0xFF


def ip_checksum_ok(buf, l3: int = 0) -> bool:
    ihl = (buf[l3] & 15) * 4
    return len(buf) - l3 >= ihl >= 20 and int.from_bytes(buf[l3:l3 + ihl], "big") % 0xFFFF == 0


def decrement_ttl(buf, l3: int) -> int:
    """TTL - 1 with an RFC 1624 update of the header checksum; returns the
    new TTL.  The caller checks ``ttl <= 1`` first (time exceeded)."""
    ttl = buf[l3 + 8]
    proto = buf[l3 + 9]
    c = (buf[l3 + 10] << 8) | buf[l3 + 11]
    c = update16(c, (ttl << 8) | proto, ((ttl - 1) << 8) | proto)
    buf[l3 + 8] = ttl - 1
    buf[l3 + 10] = c >> 8
    buf[l3 + 11] = c & 0xFF
    return ttl - 1


def set_total_length(buf, l3: int, tot: int) -> None:
    """Change the total length with an incremental checksum update."""
    old = (buf[l3 + 2] << 8) | buf[l3 + 3]
    c = update16((buf[l3 + 10] << 8) | buf[l3 + 11], old, tot)
    buf[l3 + 2] = tot >> 8
    buf[l3 + 3] = tot & 0xFF
    buf[l3 + 10] = c >> 8
    buf[l3 + 11] = c & 0xFF


def parse_options(buf, l3: int = 0) -> list:
    """The IP options as ``[(type, offset, length), ...]`` (EOL ends the
    list, NOPs are skipped).  Raises MalformedPacket("bad-ip-option")."""
    ihl = (buf[l3] & 15) * 4
    off = l3 + 20
    end = l3 + ihl
    if end > len(buf):
        raise MalformedPacket("truncated", "ip options")
    out = []
    while off < end:
        t = buf[off]
        if t == OPT_EOL:
            break
        if t == OPT_NOP:
            off += 1
            continue
        if off + 1 >= end:
            raise MalformedPacket("bad-ip-option", "type %d without length" % t)
        ln = buf[off + 1]
        if ln < 2 or off + ln > end:
            raise MalformedPacket("bad-ip-option", "type %d length %d" % (t, ln))
        out.append((t, off, ln))
        off += ln
    return out


def _copied_options(buf, l3: int) -> bytes:
    """Options with the copied flag, for non-initial fragments."""
    out = bytearray()
    for t, off, ln in parse_options(buf, l3):
        if t & 0x80:
            out += buf[off:off + ln]
    if len(out) & 3:
        out += bytes(4 - (len(out) & 3))
    return bytes(out)


def fragment(packet, mtu: int) -> list:
    """Split a bare IPv4 packet into fragments of at most ``mtu`` bytes
    (RFC 791; only options with the copied flag go into later fragments).
    The caller checks DF first.  A packet that fits is returned as is
    (one-element list).  Raises MalformedPacket for a bad header and
    ValueError for an MTU too small to carry 8 bytes of data."""
    n = len(packet)
    if n < 20:
        raise MalformedPacket("truncated", "ip header")
    ihl = (packet[0] & 15) * 4
    tot = (packet[2] << 8) | packet[3]
    if ihl < 20 or tot < ihl or tot > n:
        raise MalformedPacket("bad-length", "ihl %d total %d" % (ihl, tot))
    if tot <= mtu:
        return [packet]
    fo = (packet[6] << 8) | packet[7]
    base = (fo & 0x1FFF) * 8
    last_mf = fo & 0x2000
    flags = fo & 0x4000
    head = bytes(packet[0:ihl])
    later = _copied_options(packet, 0)
    later_head = bytearray(head[0:20]) + later
    later_head[0] = 0x40 | ((20 + len(later)) >> 2)
    out = []
    off = ihl
    first = True
    while off < tot:
        h = head if first else later_head
        room = (mtu - len(h)) & ~7
        if room <= 0:
            raise ValueError("MTU %d too small to fragment" % mtu)
        chunk = packet[off:min(off + room, tot)]
        last = off + len(chunk) >= tot
        f = bytearray(h) + chunk
        flen = len(f)
        f[2] = flen >> 8
        f[3] = flen & 0xFF
        v = flags | ((base + off - ihl) >> 3) | (last_mf if last else 0x2000)
        f[6] = v >> 8
        f[7] = v & 0xFF
        set_ip_checksum(f, 0)
        out.append(f)
        off += len(chunk)
        first = False
    return out
