"""IOS keyword tables: port names, ICMP type names, IP protocol names.

Sources: cbac-reference.md §8.3 (TCP/UDP port keywords), §8.4 (ICMP
keywords).  ``show`` output prints a port as its keyword when one exists,
as IOS does (``eq smtp``, ``eq www``).
"""

from __future__ import annotations

from typing import Optional

TCP_PORTS = {
    "bgp": 179, "chargen": 19, "cmd": 514, "daytime": 13, "discard": 9,
    "domain": 53, "drip": 3949, "echo": 7, "exec": 512, "finger": 79,
    "ftp": 21, "ftp-data": 20, "gopher": 70, "hostname": 101, "ident": 113,
    "irc": 194, "klogin": 543, "kshell": 544, "login": 513, "lpd": 515,
    "msrpc": 135, "nntp": 119, "onep-plain": 15001, "onep-tls": 15002, "pim-auto-rp": 496, "pop2": 109, "pop3": 110, "smtp": 25,
    "sunrpc": 111, "syslog": 514, "tacacs": 49, "talk": 517, "telnet": 23,
    "time": 37, "uucp": 540, "whois": 43, "www": 80,
}

UDP_PORTS = {
    "biff": 512, "bootpc": 68, "bootps": 67, "discard": 9, "dnsix": 195,
    "domain": 53, "echo": 7, "isakmp": 500, "mobile-ip": 434,
    "nameserver": 42, "netbios-dgm": 138, "netbios-ns": 137,
    "netbios-ss": 139, "non500-isakmp": 4500, "ntp": 123, "pim-auto-rp": 496,
    "rip": 520, "ripv6": 521,
    "snmp": 161, "snmptrap": 162, "sunrpc": 111, "syslog": 514,
    "tacacs": 49, "talk": 517, "tftp": 69, "time": 37, "who": 513,
    "xdmcp": 177,
}

# Reverse maps used for display.  Where two names share a number
# (tcp 514: cmd / syslog), IOS prints the first one of its list: cmd.
_TCP_BY_NUMBER: dict[int, str] = {}
for _n, _p in TCP_PORTS.items():
    _TCP_BY_NUMBER.setdefault(_p, _n)
_UDP_BY_NUMBER: dict[int, str] = {}
for _n, _p in UDP_PORTS.items():
    _UDP_BY_NUMBER.setdefault(_p, _n)

#: ICMP keywords -> (type, code or None for any code).
ICMP_NAMES: dict[str, tuple[int, Optional[int]]] = {
    "administratively-prohibited": (3, 13),
    "alternate-address": (6, None),
    "conversion-error": (31, None),
    "dod-host-prohibited": (3, 10),
    "dod-net-prohibited": (3, 9),
    "echo": (8, None),
    "echo-reply": (0, None),
    "general-parameter-problem": (12, 0),
    "host-isolated": (3, 8),
    "host-precedence-unreachable": (3, 14),
    "host-redirect": (5, 1),
    "host-tos-redirect": (5, 3),
    "host-tos-unreachable": (3, 12),
    "host-unknown": (3, 7),
    "host-unreachable": (3, 1),
    "information-reply": (16, None),
    "information-request": (15, None),
    "mask-reply": (18, None),
    "mask-request": (17, None),
    "mobile-redirect": (32, None),
    "net-redirect": (5, 0),
    "net-tos-redirect": (5, 2),
    "net-tos-unreachable": (3, 11),
    "net-unreachable": (3, 0),
    "network-unknown": (3, 6),
    "no-room-for-option": (12, 2),
    "option-missing": (12, 1),
    "packet-too-big": (3, 4),
    "parameter-problem": (12, None),
    "port-unreachable": (3, 3),
    "precedence-unreachable": (3, 15),
    "protocol-unreachable": (3, 2),
    "reassembly-timeout": (11, 1),
    "redirect": (5, None),
    "router-advertisement": (9, None),
    "router-solicitation": (10, None),
    "source-quench": (4, None),
    "source-route-failed": (3, 5),
    "time-exceeded": (11, None),
    "timestamp-reply": (14, None),
    "timestamp-request": (13, None),
    "traceroute": (30, None),
    "ttl-exceeded": (11, 0),
    "unreachable": (3, None),
}
# Display: prefer the canonical names over aliases sharing a value.
_ICMP_ALIASES = {"general-parameter-problem", "ttl-exceeded"}
_ICMP_BY_VALUE: dict[tuple[int, Optional[int]], str] = {}
for _n, _v in ICMP_NAMES.items():
    if _n not in _ICMP_ALIASES:
        _ICMP_BY_VALUE.setdefault(_v, _n)
for _n in _ICMP_ALIASES:
    _ICMP_BY_VALUE.setdefault(ICMP_NAMES[_n], _n)

#: IP protocol keywords of IOS extended ACLs.
IP_PROTOCOLS = {
    "ip": 0, "icmp": 1, "igmp": 2, "ipinip": 4, "tcp": 6, "udp": 17,
    "gre": 47, "esp": 50, "ahp": 51, "eigrp": 88, "ospf": 89, "nos": 94,
    "pim": 103, "pcp": 108,
}
_PROTO_BY_NUMBER = {v: k for k, v in IP_PROTOCOLS.items() if k != "ip"}


def port_number(proto: str, name: str) -> Optional[int]:
    """``port_number("tcp", "smtp") == 25``; digits are accepted; None if
    the name is unknown for that protocol or out of range."""
    if name.isdigit():
        n = int(name)
        return n if 0 <= n <= 65535 else None
    table = UDP_PORTS if proto == "udp" else TCP_PORTS
    return table.get(name.lower())


def port_name(proto: str, port: int) -> str:
    """The IOS display form of a port: its keyword if any, else digits."""
    table = _UDP_BY_NUMBER if proto == "udp" else _TCP_BY_NUMBER
    return table.get(port, str(port))


def icmp_lookup(name: str) -> Optional[tuple[int, Optional[int]]]:
    return ICMP_NAMES.get(name.lower())


def icmp_name(icmp_type: int, icmp_code: Optional[int] = None) -> Optional[str]:
    """The keyword for (type, code), or None when IOS would print digits."""
    return _ICMP_BY_VALUE.get((icmp_type, icmp_code))


def protocol_number(name: str) -> Optional[int]:
    if name.isdigit():
        n = int(name)
        return n if 0 <= n <= 255 else None
    return IP_PROTOCOLS.get(name.lower())


def protocol_name(number: int) -> str:
    return _PROTO_BY_NUMBER.get(number, str(number))
