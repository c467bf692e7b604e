"""One-stop builders of whole Ethernet frames (tests, the router's own
packets).  Addresses may be ints or dotted strings, MACs bytes or text.

    from cbac.packet import build
    f = build.tcp_frame("10.0.0.1", "10.0.1.1", 40000, 25, flags=build.SYN, seq=1)
    f = build.frame(ip_packet, dst_mac, src_mac, vlan=100)

Each returns a fresh ``bytearray`` with correct checksums.
"""

from __future__ import annotations

from cbac.packet.arp import build_gratuitous, build_reply, build_request  # noqa: F401
from cbac.packet.ethernet import BROADCAST, build_frame  # noqa: F401
from cbac.packet.icmp import (  # noqa: F401
    build_admin_prohibited, build_echo, build_echo_reply, build_error, build_frag_needed,
    build_icmp, build_time_exceeded, build_unreachable)
from cbac.packet.ipv4 import build_ipv4  # noqa: F401
from cbac.packet.tcp import build_tcp, encode_options  # noqa: F401
from cbac.packet.udp import build_udp  # noqa: F401
from cbac.packet.view import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG  # noqa: F401

#: default MACs of the builders (locally administered)
DST_MAC = bytes.fromhex("020000000002")
SRC_MAC = bytes.fromhex("020000000001")


def frame(ip_packet, dst_mac=DST_MAC, src_mac=SRC_MAC, vlan=None) -> bytearray:
    """Wrap a bare IPv4 packet in an Ethernet header (``vlan``: a TCI)."""
    return build_frame(dst_mac, src_mac, ip_packet, vlan=vlan)


def tcp_frame(src, dst, sport, dport, seq=0, ack=0, flags=ACK, payload=b"", *,
              dst_mac=DST_MAC, src_mac=SRC_MAC, vlan=None, **kw) -> bytearray:
    return frame(build_tcp(src, dst, sport, dport, seq, ack, flags, payload, **kw),
                 dst_mac, src_mac, vlan)


def udp_frame(src, dst, sport, dport, payload=b"", *, dst_mac=DST_MAC, src_mac=SRC_MAC,
              vlan=None, **kw) -> bytearray:
    return frame(build_udp(src, dst, sport, dport, payload, **kw), dst_mac, src_mac, vlan)


def echo_frame(src, dst, ident=1, seq=1, payload=b"", *, reply=False, dst_mac=DST_MAC,
               src_mac=SRC_MAC, vlan=None, **kw) -> bytearray:
    return frame(build_echo(src, dst, ident, seq, payload, reply=reply, **kw),
                 dst_mac, src_mac, vlan)
