"""Ethernet II framing with 802.1Q tag pass-through.

A tagged frame keeps its tag: the router rewrites the MAC addresses in
place (:func:`set_macs`), which leaves the tag and everything behind it
untouched.  :func:`l3_offset` gives 14 or 18.
"""

from __future__ import annotations

from cbac.packet.errors import MalformedPacket
from cbac.packet.view import ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6  # noqa: F401

BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ETH_HLEN = 14
VLAN_HLEN = 4
MIN_FRAME = 60          # without FCS


def mac_bytes(mac) -> bytes:
    """6-byte MAC from bytes or text (``02:00:0a:0a:0a:01``,
    ``0200.0a0a.0a01``, ``02-00-...``).  Raises ValueError."""
    if isinstance(mac, (bytes, bytearray, memoryview)):
        mac = bytes(mac)
        if len(mac) != 6:
            raise ValueError("MAC must be 6 bytes, got %d" % len(mac))
        return mac
    text = str(mac).strip().lower().replace(":", "").replace("-", "").replace(".", "")
    if len(text) != 12:
        raise ValueError("bad MAC address %r" % (mac,))
    return bytes.fromhex(text)


def mac_str(mac) -> str:
    """IOS dotted form ``0200.0a0a.0a01``."""
    h = bytes(mac).hex()
    return "%s.%s.%s" % (h[0:4], h[4:8], h[8:12])


def ethertype(frame) -> int:
    """The ethertype after an optional 802.1Q tag.  Raises MalformedPacket."""
    n = len(frame)
    if n < 14:
        raise MalformedPacket("truncated", "ethernet")
    et = (frame[12] << 8) | frame[13]
    if et == ETH_P_8021Q:
        if n < 18:
            raise MalformedPacket("truncated", "802.1Q")
        et = (frame[16] << 8) | frame[17]
    return et


def l3_offset(frame) -> int:
    """14, or 18 for an 802.1Q-tagged frame."""
    return 18 if len(frame) >= 18 and frame[12] == 0x81 and frame[13] == 0x00 else 14


def vlan_tci(frame):
    """The 802.1Q TCI (PCP/DEI/VID) of a tagged frame, or None."""
    if len(frame) >= 18 and frame[12] == 0x81 and frame[13] == 0x00:
        return (frame[14] << 8) | frame[15]
    return None


def header(dst, src, ethertype: int, vlan=None) -> bytes:
    """An Ethernet header; ``vlan`` is a TCI (int) for an 802.1Q tag."""
    if vlan is None:
        return mac_bytes(dst) + mac_bytes(src) + ethertype.to_bytes(2, "big")
    return (mac_bytes(dst) + mac_bytes(src) + b"\x81\x00" + (vlan & 0xFFFF).to_bytes(2, "big")
            + ethertype.to_bytes(2, "big"))


def build_frame(dst, src, payload, ethertype: int = ETH_P_IP, vlan=None,
                pad: bool = False) -> bytearray:
    """Wrap ``payload`` (an IPv4 packet by default) in an Ethernet header.
    ``pad`` pads to the 60-byte minimum (as a NIC would)."""
    f = bytearray(header(dst, src, ethertype, vlan))
    f += payload
    if pad and len(f) < MIN_FRAME:
        f += bytes(MIN_FRAME - len(f))
    return f


def set_macs(frame, dst: bytes, src: bytes) -> None:
    """Rewrite both MAC addresses in place (a tag, if any, stays)."""
    frame[0:6] = dst
    frame[6:12] = src
