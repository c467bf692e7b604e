"""UDP builders and checksums.

A UDP checksum field of 0 means "no checksum" (IPv4); a computed checksum
of 0 is sent as 0xFFFF (RFC 768).
"""

from __future__ import annotations

from struct import Struct

from cbac.packet.checksum import checksum, pseudo_header_sum
from cbac.packet.ipv4 import build_ipv4

PROTO = 17
_HDR = Struct("!HHHH")


def udp_checksum(buf, l3: int, l4: int, end: int) -> int:
    """The checksum of the datagram ``buf[l4:end]`` as it goes in the field
    (0xFFFF for a computed 0; the field itself is treated as zero)."""
    src = int.from_bytes(buf[l3 + 12:l3 + 16], "big")
    dst = int.from_bytes(buf[l3 + 16:l3 + 20], "big")
    ph = pseudo_header_sum(src, dst, PROTO, end - l4)
    saved = buf[l4 + 6], buf[l4 + 7]
    buf[l4 + 6] = buf[l4 + 7] = 0
    c = checksum(buf, l4, end, ph)
    buf[l4 + 6], buf[l4 + 7] = saved
    return c or 0xFFFF


def set_udp_checksum(buf, l3: int = 0, l4: int | None = None, end: int | None = None) -> None:
    if l4 is None:
        l4 = l3 + (buf[l3] & 15) * 4
    if end is None:
        end = l3 + ((buf[l3 + 2] << 8) | buf[l3 + 3])
    c = udp_checksum(buf, l3, l4, end)
    buf[l4 + 6] = c >> 8
    buf[l4 + 7] = c & 0xFF


def build_udp(src, dst, sport: int, dport: int, payload=b"", *, csum: bool = True,
              ttl: int = 64, ip_id: int = 0, tos: int = 0, df: bool = False) -> bytearray:
    """A UDP/IPv4 packet; ``csum=False`` sends a zero (absent) checksum."""
    dgram = bytearray(_HDR.pack(sport, dport, 8 + len(payload), 0))
    dgram += payload
    p = build_ipv4(src, dst, PROTO, dgram, ttl=ttl, ip_id=ip_id, tos=tos, df=df)
    if csum:
        set_udp_checksum(p, 0, 20, len(p))
    return p
