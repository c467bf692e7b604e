"""ARP for IPv4 over Ethernet (RFC 826): parse requests/replies, build
requests, replies and gratuitous ARP.

Only Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4) with
opcode 1 (request) or 2 (reply) is accepted; anything else raises
:class:`~cbac.packet.errors.MalformedPacket` (reason ``truncated``,
``bad-arp`` or ``bad-arp-op``).  Addresses are ints, MACs 6-byte bytes.
"""

from __future__ import annotations

from struct import Struct

from cbac.packet.errors import MalformedPacket
from cbac.packet.ethernet import BROADCAST, ZERO_MAC, build_frame, mac_bytes
from cbac.packet.view import ETH_P_8021Q, ETH_P_ARP, ip_int

OP_REQUEST = 1
OP_REPLY = 2
ARP_LEN = 28

_ARP = Struct("!HHBBH6s4s6s4s")


class ArpPacket:
    __slots__ = ("op", "sha", "spa", "tha", "tpa", "eth_dst", "eth_src", "vlan")

    def __init__(self, op, sha, spa, tha, tpa, eth_dst=BROADCAST, eth_src=ZERO_MAC, vlan=None):
        self.op, self.sha, self.spa, self.tha, self.tpa = op, sha, spa, tha, tpa
        self.eth_dst, self.eth_src, self.vlan = eth_dst, eth_src, vlan

    @property
    def is_request(self) -> bool:
        return self.op == OP_REQUEST

    @property
    def is_reply(self) -> bool:
        return self.op == OP_REPLY

    @property
    def is_gratuitous(self) -> bool:
        """Sender and target protocol address equal (RFC 5227 announcement
        or a gratuitous reply)."""
        return self.spa == self.tpa

    def __repr__(self):
        from cbac.packet.view import ip_str
        return "<Arp %s %s/%s -> %s/%s>" % (
            "request" if self.op == 1 else "reply", ip_str(self.spa), self.sha.hex(),
            ip_str(self.tpa), self.tha.hex())


def parse_arp(data, off: int = 0) -> ArpPacket:
    """Parse the ARP payload at ``data[off:]``."""
    if len(data) - off < ARP_LEN:
        raise MalformedPacket("truncated", "arp")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(data, off)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        raise MalformedPacket("bad-arp", "htype %d ptype 0x%04x hlen %d plen %d"
                              % (htype, ptype, hlen, plen))
    if op not in (OP_REQUEST, OP_REPLY):
        raise MalformedPacket("bad-arp-op", str(op))
    return ArpPacket(op, sha, int.from_bytes(spa, "big"), tha, int.from_bytes(tpa, "big"))


def parse_arp_frame(frame) -> ArpPacket:
    """Parse an Ethernet frame (optionally 802.1Q-tagged) carrying ARP."""
    n = len(frame)
    if n < 14:
        raise MalformedPacket("truncated", "ethernet")
    et = (frame[12] << 8) | frame[13]
    off = 14
    vlan = None
    if et == ETH_P_8021Q:
        if n < 18:
            raise MalformedPacket("truncated", "802.1Q")
        vlan = (frame[14] << 8) | frame[15]
        et = (frame[16] << 8) | frame[17]
        off = 18
    if et != ETH_P_ARP:
        raise MalformedPacket("not-arp", "ethertype 0x%04x" % et)
    a = parse_arp(frame, off)
    a.eth_dst = bytes(frame[0:6])
    a.eth_src = bytes(frame[6:12])
    a.vlan = vlan
    return a


def _addr(a) -> int:
    return ip_int(a) if isinstance(a, str) else a


def arp_payload(op: int, sha, spa, tha, tpa) -> bytes:
    return _ARP.pack(1, 0x0800, 6, 4, op, mac_bytes(sha), _addr(spa).to_bytes(4, "big"),
                     mac_bytes(tha), _addr(tpa).to_bytes(4, "big"))


def build_request(src_mac, src_ip, target_ip, vlan=None, pad: bool = True) -> bytearray:
    """Broadcast "who-has target_ip tell src_ip"."""
    return build_frame(BROADCAST, src_mac, arp_payload(OP_REQUEST, src_mac, src_ip, ZERO_MAC, target_ip),
                       ETH_P_ARP, vlan, pad)


def build_reply(src_mac, src_ip, dst_mac, dst_ip, vlan=None, pad: bool = True) -> bytearray:
    """Unicast "src_ip is-at src_mac" to the requester."""
    return build_frame(dst_mac, src_mac, arp_payload(OP_REPLY, src_mac, src_ip, dst_mac, dst_ip),
                       ETH_P_ARP, vlan, pad)


def build_reply_to(request: ArpPacket, my_mac, pad: bool = True) -> bytearray:
    """The reply to a parsed request for one of our addresses (same tag)."""
    return build_reply(my_mac, request.tpa, request.sha, request.spa, request.vlan, pad)


def build_gratuitous(mac, ip, reply: bool = False, vlan=None, pad: bool = True) -> bytearray:
    """Gratuitous ARP: broadcast with sender and target address both
    ``ip``.  As a request (RFC 5227 announcement, target MAC zero) by
    default; ``reply=True`` sends the reply form (target MAC broadcast)."""
    if reply:
        body = arp_payload(OP_REPLY, mac, ip, BROADCAST, ip)
    else:
        body = arp_payload(OP_REQUEST, mac, ip, ZERO_MAC, ip)
    return build_frame(BROADCAST, mac, body, ETH_P_ARP, vlan, pad)
