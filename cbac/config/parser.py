"""IOS configuration text -> :class:`cbac.config.model.RouterConfig`.

Usage::

    router, diagnostics = parse_config(text, filename)
    router = parse(text)            # diagnostics discarded

The parser is line based and table driven: :data:`GLOBAL_COMMANDS` maps the
leading keywords of a global command to a handler, and one table per block
kind (``interface``, ``ip access-list``, ``line vty``) maps sub-command
keywords to handlers.  Every line either changes the model, is a comment, or
produces a diagnostic: commands cbac does not act on are kept verbatim and
reported as warnings ("accepted, not acted on"), never silently.

Block structure: indentation of sub-commands is optional (the Cisco document
69309 mixes indented and unindented sub-commands).  As IOS does, an
unindented line stays in the current mode when it is valid there
(:mod:`cbac.config.modes` knows interface and line mode) and only otherwise
is read in global mode; in blocks whose commands cbac does not know, a line
stays until a recognisably global command.  An indented line inside a block
is always a sub-command.  Banner bodies are text, never commands.

Fail closed: commands that IOS would use to restrict, encrypt or police
traffic and that cbac does not enforce are errors (tables in
:mod:`cbac.config.modes`; zone-based firewall forms :mod:`cbac.config.zbf`
does not implement in :data:`ZBF_GLOBAL`).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Callable, Optional

from cbac.config import modes, names
from cbac.config.errors import ERROR, WARNING, Diagnostic
from cbac.config.model import (
    GENERIC_PROTOCOLS, INSPECT_PROTOCOLS, SEVERITIES, AccessList, AclEntry, AddrMatch, Banner,
    InspectGlobals, InspectProtocol, InspectRule, Interface, LogHost,
    NatDynamic, NatPool, NatService, NatStatic, NatTimeouts, PortBinding,
    PortMatch, Route, RouterConfig, Secret, User, Verbatim, VtyConfig)

__all__ = ["parse", "parse_config", "parse_file", "parse_bytes", "decode_type7",
           "encode_type7", "normalize_interface", "verbatim_section",
           "acl_kind_for_number"]


# --------------------------------------------------------------------------
# Type 7 "encryption" (public Cisco algorithm: XOR with a fixed key)

_T7_KEY = "dsfd;kfoA,.iyewrkldJKDHSUBsgvca69834ncxv9873254k;fg87"


def decode_type7(encoded: str) -> str:
    """Decode a Cisco type 7 password (``02050D4808095E731F`` -> ``cisco123``
    style).  Raises ValueError on malformed input."""
    if len(encoded) < 4 or len(encoded) % 2 or not encoded[:2].isdigit():
        raise ValueError("malformed type 7 password")
    seed = int(encoded[:2])
    data = bytes.fromhex(encoded[2:])
    return "".join(chr(b ^ ord(_T7_KEY[(seed + i) % len(_T7_KEY)]))
                   for i, b in enumerate(data))


def encode_type7(plain: str, seed: int = 2) -> str:
    out = "%02d" % seed
    for i, ch in enumerate(plain):
        out += "%02X" % (ord(ch) ^ ord(_T7_KEY[(seed + i) % len(_T7_KEY)]))
    return out


# --------------------------------------------------------------------------
# Interface names

_IF_TYPES = {
    "ethernet": "Ethernet", "e": "Ethernet", "eth": "Ethernet",
    "fastethernet": "FastEthernet", "fa": "FastEthernet", "f": "FastEthernet",
    "gigabitethernet": "GigabitEthernet", "gi": "GigabitEthernet", "g": "GigabitEthernet",
    "serial": "Serial", "s": "Serial", "se": "Serial",
    "loopback": "Loopback", "lo": "Loopback",
    "tunnel": "Tunnel", "tu": "Tunnel",
    "dialer": "Dialer", "di": "Dialer",
    "vlan": "Vlan", "vl": "Vlan",
    "bvi": "BVI", "null": "Null", "virtual-template": "Virtual-Template",
    "port-channel": "Port-channel", "po": "Port-channel",
}
_IF_RE = re.compile(r"^([A-Za-z][A-Za-z-]*?)\s*([0-9][0-9/.:]*)$")


def normalize_interface(name: str) -> str:
    """``ethernet 2/0``, ``e2/0``, ``Ethernet2/0`` -> ``Ethernet2/0``.
    Unknown interface types keep their spelling (without inner spaces)."""
    name = name.strip()
    m = _IF_RE.match(name)
    if not m:
        return name.replace(" ", "")
    kind, num = m.group(1), m.group(2)
    return _IF_TYPES.get(kind.lower(), kind) + num


# --------------------------------------------------------------------------
# Where verbatim global lines go in show running-config

S_SERVICE, S_BOOT, S_GLOBAL, S_SECURITY, S_TAIL, S_LINES = range(6)

_SECTION_FIRST = {
    "service": S_SERVICE,
    "boot-start-marker": S_BOOT, "boot-end-marker": S_BOOT, "boot": S_BOOT,
    "card": S_BOOT, "logging": S_BOOT,
    "controller": S_SECURITY, "crypto": S_SECURITY, "ftp-server": S_SECURITY,
    "class-map": S_SECURITY, "policy-map": S_SECURITY, "vpdn": S_SECURITY,
    "isdn": S_SECURITY, "archive": S_SECURITY, "multilink": S_SECURITY,
    "router": S_TAIL, "snmp-server": S_TAIL, "control-plane": S_TAIL,
    "banner": S_TAIL, "dial-peer": S_TAIL, "mgcp": S_TAIL, "gatekeeper": S_TAIL,
    "alias": S_TAIL, "radius-server": S_TAIL, "tacacs-server": S_TAIL,
    "tftp-server": S_TAIL, "access-list": S_TAIL, "route-map": S_TAIL,
    "line": S_LINES, "scheduler": S_LINES, "ntp": S_LINES, "webvpn": S_LINES,
}
_SECTION_IP = {
    "ips": S_SECURITY, "inspect": S_SECURITY, "audit": S_SECURITY,
    "auth-proxy": S_SECURITY, "urlfilter": S_SECURITY, "port-map": S_SECURITY,
    "http": S_TAIL, "classless": S_TAIL, "forward-protocol": S_TAIL,
    "nat": S_TAIL, "access-list": S_TAIL, "route": S_TAIL, "ssh": S_SECURITY,
    "sla": S_TAIL, "flow-export": S_TAIL, "prefix-list": S_TAIL,
}


def verbatim_section(text: str) -> int:
    """The section of ``show running-config`` a verbatim global line is
    printed in (see :mod:`cbac.config.render`)."""
    w = text.lower().split()
    if w and w[0] == "no":
        w = w[1:]
    if not w:
        return S_GLOBAL
    if w[0] == "ip" and len(w) > 1:
        return _SECTION_IP.get(w[1], S_GLOBAL)
    return _SECTION_FIRST.get(w[0], S_GLOBAL)


# Global commands cbac does not act on but recognises as global (they end a
# block even when written without indentation).  First keyword, or "ip X".
_KNOWN_GLOBAL_FIRST = {
    "version", "service", "hostname", "boot-start-marker", "boot-end-marker",
    "boot", "enable", "username", "aaa", "resource", "voice-card", "controller",
    "interface", "line", "router", "access-list", "logging", "banner", "clock",
    "ntp", "snmp-server", "crypto", "class-map", "policy-map", "control-plane",
    "dial-peer", "cbac", "ftp-server", "memory-size", "mmi", "archive",
    "license", "spanning-tree", "vlan", "key", "track", "alias", "scheduler",
    "multilink", "privilege", "tftp-server", "voice", "card", "vpdn", "isdn",
    "mgcp", "gatekeeper", "radius-server", "tacacs-server", "route-map",
    "webvpn", "end", "security", "login", "ipv6", "mpls", "xconnect",
    "redundancy", "diagnostic", "power", "errdisable", "vtp", "username",
    "vrf", "platform", "license", "subscriber", "call-home", "object-group",
}
# ("ip inspect", "ip nat", "ip route", "ip access-list", "ip ssh" are global
# only in the forms GLOBAL_COMMANDS knows: "ip nat outside" is an interface
# sub-command, "ip nat outside source ..." a global one.)
_KNOWN_GLOBAL_IP = {
    "cef", "subnet-zero", "dhcp", "domain", "domain-name", "domain-lookup",
    "name-server", "http", "classless", "forward-protocol", "host", "finger", "bootp", "source-route",
    "multicast-routing", "audit", "auth-proxy", "urlfilter", "port-map", "sla",
    "flow-export", "prefix-list", "ips", "scp", "rcmd", "tftp", "ftp",
    "options", "gratuitous-arps",
}
# Keywords that open a block of sub-commands (kept verbatim with children).
_BLOCK_FIRST = {
    "controller", "router", "crypto", "class-map", "policy-map",
    "control-plane", "dial-peer", "voice-card", "line", "resource", "key",
    "track", "archive", "gatekeeper", "mgcp", "route-map", "vpdn-group",
    "webvpn", "redundancy", "voice", "interface", "vrf", "object-group", "call-home",
}
_BLOCK_IP = {"sla", "dhcp", "access-list"}


def _is_known_global(kw: list[str]) -> bool:
    if kw and kw[0] == "no":
        kw = kw[1:]
    if not kw:
        return False
    if kw[0] == "ip":
        return len(kw) > 1 and kw[1] in _KNOWN_GLOBAL_IP
    return kw[0] in _KNOWN_GLOBAL_FIRST


def _opens_block(kw: list[str]) -> bool:
    if not kw or kw[0] == "no":
        return False
    if kw[0] == "ip":
        # "ip dhcp pool X" opens a block, "ip dhcp use ..." does not.
        return len(kw) > 2 and kw[1] in _BLOCK_IP and kw[2] in ("pool", "monitor", "standard", "extended")
    if kw[0] == "crypto":
        return len(kw) > 1 and kw[1] in ("isakmp", "map", "pki", "ipsec", "keyring") and not (
            len(kw) > 2 and kw[2] in ("key", "enable", "identity", "keepalive", "security-association"))
    if kw[0] == "voice":
        return len(kw) > 1 and kw[1] in ("service", "class")
    return kw[0] in _BLOCK_FIRST


# --------------------------------------------------------------------------
# Limits: every resource a configuration asks for is bounded before it is built

MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_LINES = 500000
MAX_ACES = 200000              # access-list entries, all lists together
MAX_ROUTES = 100000
MAX_INTERFACES = 4096
MAX_POOL_ADDRESSES = 65536     # addresses in one NAT pool
MAX_STATIC_NETWORK = 4096      # addresses of one "static network" translation
MAX_LOG_BUFFER = 64 * 1024 * 1024   # logging buffered SIZE

#: characters that never occur in a configuration file: C0 controls except
#: TAB and ETX (^C, a banner delimiter), DEL, and U+FFFD (bytes that were
#: not UTF-8 when the file was read with errors="replace").
_NOT_TEXT = re.compile("[\x00-\x02\x04-\x08\x0b-\x1f\x7f\ufffd]")

BANNER_KINDS = ("motd", "login", "exec", "incoming", "slip-ppp", "prompt-timeout",
                "config-save")


# --------------------------------------------------------------------------
# Zone-based firewall.  cbac.config.zbf installs the handlers of the forms
# it implements (GLOBAL_COMMANDS, SUB_COMMANDS, see the end of this module);
# they are looked up first.  Any other zone-based command (a form cbac.zbf
# does not know, e.g. "zone foo", "zone-member foo") is an ERROR naming its
# line, because a zone-based policy restricts what passes and cbac would
# otherwise pass the traffic.

ZBF_GLOBAL = {
    ("zone", "security"), ("zone-pair", "security"), ("class-map", "type", "inspect"),
    ("policy-map", "type", "inspect"), ("parameter-map", "type", "inspect"),
    ("parameter-map", "type", "inspect-global"), ("zone",), ("zone-pair",),
}
ZBF_INTERFACE = {("zone-member", "security"), ("zone-member",)}


def _zbf_refuse(parser, ln, neg, body, *rest):
    if not neg:
        parser.block = ("refused", ln)
    raise _Bad("unsupported zone-based policy firewall command (see docs/configuration.md, "
               "'Zone-based policy firewall'); refusing rather than passing traffic the "
               "policy would stop")


def _zone_based(body: list[str]):
    """The handler of a global zone-based firewall command, or None."""
    for n in (3, 2, 1):
        if len(body) >= n and tuple(body[:n]) in ZBF_GLOBAL:
            return _zbf_refuse
    return None


def _zone_based_interface(body: list[str]):
    """The handler of an interface zone-based firewall command, or None."""
    for n in (2, 1):
        if len(body) >= n and tuple(body[:n]) in ZBF_INTERFACE:
            return lambda parser, itf, ln, neg, body: _zbf_refuse(parser, ln, True, body)
    return None


# --------------------------------------------------------------------------
# Token helpers

class _Bad(Exception):
    """A user error in the current line."""


def _int(tok: str, lo: int, hi: int, what: str) -> int:
    if not re.fullmatch(r"\d+", tok):
        raise _Bad("invalid %s '%s' (expected a number %d-%d)" % (what, tok, lo, hi))
    n = int(tok)
    if not lo <= n <= hi:
        raise _Bad("%s %s out of range %d-%d" % (what, tok, lo, hi))
    return n


def _addr(tok: str, what: str = "address") -> IPv4Address:
    if not re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", tok):
        raise _Bad("invalid %s '%s'" % (what, tok))
    try:
        return IPv4Address(tok)
    except ValueError:
        raise _Bad("invalid %s '%s'" % (what, tok))


def _is_addr(tok: str) -> bool:
    try:
        _addr(tok)
        return True
    except _Bad:
        return False


def _mask(tok: str) -> int:
    """Netmask -> prefix length; non-contiguous masks are errors."""
    m = int(_addr(tok, "netmask"))
    inv = (~m) & 0xFFFFFFFF
    if inv & (inv + 1):
        raise _Bad("non-contiguous netmask %s" % tok)
    return 32 - inv.bit_length()


def _level(tok: str) -> int:
    t = tok.lower()
    if t.isdigit():
        return _int(t, 0, 7, "logging level")
    for i, name in enumerate(SEVERITIES):
        if name == t:
            return i
    raise _Bad("invalid logging level '%s'" % tok)


def _onoff(tok: str, what: str) -> bool:
    t = tok.lower()
    if t not in ("on", "off"):
        raise _Bad("%s takes 'on' or 'off', not '%s'" % (what, tok))
    return t == "on"


def _rest(raw: str, nwords: int) -> str:
    """The raw text after the first ``nwords`` words (spacing kept)."""
    parts = raw.strip().split(None, nwords)
    return parts[nwords] if len(parts) > nwords else ""


def acl_kind_for_number(n: int) -> Optional[str]:
    if 1 <= n <= 99 or 1300 <= n <= 1999:
        return "standard"
    if 100 <= n <= 199 or 2000 <= n <= 2699:
        return "extended"
    return None


_ACL_NAME_RE = re.compile(r"^[A-Za-z][^\s\"']*$")
# IOS: a hostname starts with a letter, ends with a letter or digit, has only
# letters, digits and hyphens inside, and is at most 63 characters long.
# IOS accepts a leading digit (the seed router is "3640-123"; old releases
# only warn that it is not a legal LAT node name), and so does cbac, with a warning.
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _acl_ref(tok: str) -> str:
    """An ACL reference (number or name) as used by access-group etc."""
    if tok.isdigit():
        n = int(tok)
        if acl_kind_for_number(n) is None:
            raise _Bad("invalid access list number %s" % tok)
        return str(n)
    if not _ACL_NAME_RE.match(tok):
        raise _Bad("invalid access list name '%s'" % tok)
    return tok


# --------------------------------------------------------------------------
# Access-control entries

_LOG_WORDS = ("log", "log-input")


def _addr_match(w: list[str], i: int, what: str) -> tuple[AddrMatch, int]:
    tok = w[i].lower()
    if tok == "any":
        return AddrMatch(), i + 1
    if tok == "host":
        return AddrMatch(_addr(w[i + 1], what + " address"), IPv4Address(0)), i + 2
    a = _addr(w[i], what + " address")
    wc = _addr(w[i + 1], what + " wildcard") if i + 1 < len(w) else None
    if wc is None:
        raise _Bad("%s wildcard missing after %s" % (what, w[i]))
    return AddrMatch(IPv4Address(int(a) & ~int(wc) & 0xFFFFFFFF), wc), i + 2


def _port(proto: str, tok: str) -> int:
    p = names.port_number(proto, tok)
    if p is None:
        raise _Bad("invalid %s port '%s'" % (proto, tok))
    return p


def _port_match(w: list[str], i: int, proto: str) -> tuple[Optional[PortMatch], int]:
    if i >= len(w):
        return None, i
    op = w[i].lower()
    if op not in ("eq", "neq", "lt", "gt", "range"):
        return None, i
    if proto not in ("tcp", "udp"):
        raise _Bad("port operator '%s' is only valid for tcp and udp" % op)
    if i + 1 >= len(w):
        raise _Bad("port missing after '%s'" % op)
    if op == "range":
        lo, hi = _port(proto, w[i + 1]), _port(proto, w[i + 2])
        if lo > hi:
            raise _Bad("port range %d %d is empty" % (lo, hi))
        return PortMatch("range", (lo, hi)), i + 3
    ports = [_port(proto, w[i + 1])]
    i += 2
    if op in ("eq", "neq"):
        # IOS accepts several ports after eq/neq (up to 10).
        while i < len(w) and names.port_number(proto, w[i]) is not None and len(ports) < 10:
            ports.append(names.port_number(proto, w[i]))
            i += 1
    return PortMatch(op, tuple(ports)), i


def _protocol(tok: str):
    t = tok.lower()
    if t in ("ip", "tcp", "udp", "icmp"):
        return t
    n = names.protocol_number(t)
    if n is None:
        raise _Bad("unknown protocol keyword '%s'" % tok)
    return {1: "icmp", 6: "tcp", 17: "udp"}.get(n, n)


def parse_ace(words: list[str], kind: str, acl_name: str = "") -> AclEntry:
    """``permit tcp any host 1.2.3.4 eq smtp`` -> AclEntry (seq 0)."""
    action = words[0].lower()
    if action == "remark":
        text = " ".join(words[1:])
        if len(text) > 100:
            raise _Bad("remark longer than 100 characters")
        return AclEntry(seq=0, action="remark", remark=text)
    if action not in ("permit", "deny"):
        raise _Bad("expected permit, deny or remark, not '%s'" % words[0])
    if len(words) < 2:
        raise _Bad("incomplete command")
    if kind == "standard":
        w = words[1:]
        tok = w[0].lower()
        if tok == "any":
            src, i = AddrMatch(), 1
        elif tok == "host":
            src, i = AddrMatch(_addr(w[1], "source address"), IPv4Address(0)), 2
        elif _is_addr(w[0]):
            a = _addr(w[0])
            if len(w) > 1 and _is_addr(w[1]):
                wc = _addr(w[1])
                i = 2
            else:
                wc, i = IPv4Address(0), 1
            src = AddrMatch(IPv4Address(int(a) & ~int(wc) & 0xFFFFFFFF), wc)
        else:
            raise _Bad("standard access list %s does not take extended syntax ('%s')"
                       % (acl_name, w[0]))
        e = AclEntry(seq=0, action=action, protocol="ip", source=src)
        if i < len(w):
            if w[i].lower() == "log" and i + 1 == len(w):
                e.log = "log"
            elif _protocol_or_none(w[0]) is not None and i == 1:
                raise _Bad("standard access list %s does not take extended syntax" % acl_name)
            else:
                raise _Bad("invalid input '%s' in standard access list entry" % w[i])
        return e
    proto = _protocol(words[1])
    w = words
    src, i = _addr_match(w, 2, "source")
    sport, i = _port_match(w, i, proto if isinstance(proto, str) else "")
    if i >= len(w):
        raise _Bad("destination missing")
    dst, i = _addr_match(w, i, "destination")
    dport, i = _port_match(w, i, proto if isinstance(proto, str) else "")
    e = AclEntry(seq=0, action=action, protocol=proto, source=src, source_port=sport,
                 destination=dst, destination_port=dport)
    if proto == "icmp" and i < len(w):
        tok = w[i]
        if tok.isdigit():
            e.icmp_type = _int(tok, 0, 255, "ICMP type")
            i += 1
            if i < len(w) and w[i].isdigit():
                e.icmp_code = _int(w[i], 0, 255, "ICMP code")
                i += 1
        elif names.icmp_lookup(tok) is not None:
            e.icmp_type, e.icmp_code = names.icmp_lookup(tok)
            i += 1
    while i < len(w):
        tok = w[i].lower()
        if tok == "established":
            if proto != "tcp":
                raise _Bad("'established' is only valid for tcp")
            e.established = True
        elif tok == "fragments":
            e.fragments = True
        elif tok in _LOG_WORDS and i == len(w) - 1:
            e.log = tok
        else:
            raise _Bad("invalid or unsupported access list option '%s'" % w[i])
        i += 1
    return e


def _protocol_or_none(tok):
    try:
        return _protocol(tok)
    except _Bad:
        return None


# --------------------------------------------------------------------------
# The parser

class _Line:
    __slots__ = ("no", "raw", "text", "indented", "words", "kw")

    def __init__(self, no: int, raw: str):
        self.no = no
        self.raw = raw.rstrip("\r\n")
        self.text = self.raw.strip()
        self.indented = self.raw[:1].isspace()
        self.words = self.text.split()
        self.kw = [x.lower() for x in self.words]


_PROMPT_RE = re.compile(r"^[\w.-]+#")        # "3640-123#show running-config"
_COMMENT_RES = [
    re.compile(r"^Building configuration\.\.\.\s*$"),
    re.compile(r"^Current configuration\s*:\s*\d+ bytes\s*$"),
    re.compile(r"^Using \d+ out of \d+ bytes\s*$"),
]


class Parser:
    """Collects a :class:`RouterConfig` and diagnostics from IOS text."""

    def __init__(self, filename: str = "<config>"):
        self.filename = filename
        self.router = RouterConfig()
        self.diagnostics: list[Diagnostic] = []
        self.block = None           # (kind, object) or None
        self.ended = False
        self._line: Optional[_Line] = None
        self._after_comment = False
        self._banner = None         # (Banner, closing regex, first line) while reading a body
        self._banner_lines: list[str] = []
        self._acl_seqs: dict[int, set] = {}          # id(AccessList) -> its sequence numbers
        self._routes: dict[tuple, Route] = {}        # (prefix, next hop, interface) -> route
        self._aces = 0

    # -- diagnostics --------------------------------------------------------

    def _diag(self, severity, message, line=None, group=None):
        line = line or self._line
        self.diagnostics.append(Diagnostic(
            self.filename, line.no if line else 0, severity, message,
            line.text if line else "", group))

    def error(self, message, line=None):
        self._diag(ERROR, message, line)

    def warn(self, message, line=None, group=None):
        self._diag(WARNING, message, line, group)

    # -- driving ------------------------------------------------------------

    def feed(self, text: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) > MAX_LINES:
            self.diagnostics.append(Diagnostic(
                self.filename, MAX_LINES + 1, ERROR,
                "configuration has %d lines; cbac reads at most %d" % (len(lines), MAX_LINES)))
            return
        for no, raw in enumerate(lines, 1):
            if raw.endswith("\r"):
                raw = raw[:-1]
            bad = _NOT_TEXT.search(raw)
            if bad is not None:
                ch = bad.group()
                what = ("bytes that are not valid UTF-8" if ch == "\ufffd"
                        else "control character 0x%02X" % ord(ch))
                self.diagnostics.append(Diagnostic(
                    self.filename, no, ERROR,
                    "line is not configuration text (%s); the file is not read further" % what))
                return
            self.line(no, raw)
        if self._banner is not None:
            b, _, first = self._banner
            self._banner = None
            self.error("banner %s is not terminated: no closing '%s' before the end of the "
                       "file (everything after it would be banner text)"
                       % (b.kind, b.delimiter), first)

    def line(self, no: int, raw: str) -> None:
        if self._banner is not None:
            return self._banner_line(raw)
        ln = _Line(no, raw)
        self._line = ln
        if not ln.text or ln.text.startswith("!"):
            if ln.text.startswith("!"):
                self._after_comment = True
            return
        if any(r.match(ln.text) for r in _COMMENT_RES) or _PROMPT_RE.match(ln.text):
            return
        if self.ended:
            self.warn("ignored: line after 'end'")
            return
        after_comment, self._after_comment = self._after_comment, False
        try:
            if ln.kw[0] == "banner":
                self.block = None
                return self._banner_start(ln)
            self._dispatch(ln, after_comment)
        except _Bad as e:
            self.error(str(e))
        except (IndexError, KeyError):
            self.error("incomplete command")
        except Exception as e:       # never crash on bad input
            self.error("cannot parse line (%s: %s)" % (type(e).__name__, e))

    # -- banners: the body is text, whatever it contains ----------------------

    def _banner_start(self, ln: _Line) -> None:
        rest = ln.raw.strip()[len(ln.words[0]):].lstrip()
        kind = "motd"
        w = rest.split(None, 1)
        if w and w[0].lower() in BANNER_KINDS:
            kind = w[0].lower()
            rest = w[1] if len(w) > 1 else ""
        rest = rest.lstrip()
        if not rest:
            raise _Bad("banner delimiter missing (e.g. 'banner %s ^C')" % kind)
        if rest.startswith("^C") or rest[0] == "\x03":
            delim, pat = "^C", re.compile(r"\^C|\x03")
            body = rest[2:] if rest.startswith("^C") else rest[1:]
        else:
            delim = rest[0]
            pat = re.compile(re.escape(delim))
            body = rest[1:]
        b = Banner(kind, "", delim, lineno=ln.no)
        self._banner_lines = []
        self._banner = (b, pat, ln)
        m = pat.search(body)
        if m is not None:                      # banner motd #text#
            self._banner_lines.append(body[:m.start()])
            return self._banner_end()
        if body.strip():
            self._banner_lines.append(body)

    def _banner_line(self, raw: str) -> None:
        b, pat, first = self._banner
        m = pat.search(raw)
        if m is None:
            self._banner_lines.append(raw)
            return
        if raw[:m.start()]:
            self._banner_lines.append(raw[:m.start()])
        self._banner_end()

    def _banner_end(self) -> None:
        b, pat, first = self._banner
        self._banner = None
        b.text = "\n".join(self._banner_lines)
        self.router.banners[b.kind] = b
        self.warn("banner %s, not acted on: the console does not print banners" % b.kind,
                  first, group=modes.G_BANNER)

    # -- modes ----------------------------------------------------------------

    def _valid_in_block(self, ln: _Line, body: list[str], after_comment: bool) -> bool:
        """IOS reads a command in the current mode if it is valid there and
        only otherwise in the parent mode.  For blocks whose commands cbac
        does not know (``router ospf``, ``controller``), a line stays in the
        block unless it is a known global command or follows a comment."""
        kind, obj = self.block
        if kind == "interface":
            if modes.interface_command(body):
                return True
        elif kind == "vty":
            if modes.line_command(body):
                return True
        elif kind == "acl":
            return _acl_line(body)
        elif kind == "refused":
            pass
        elif kind == "verbatim" and obj.text.lower().startswith("line "):
            if modes.line_command(body):
                return True
        if self._global_handler(body)[0] is not None or _is_known_global(ln.kw) \
                or body[:1] == ["banner"] or _zone_based(body) is not None:
            return False
        if kind in ("verbatim", "refused") and after_comment:
            return False
        # A line cbac would refuse in global mode is never swallowed by a
        # block it is not valid in (it would become a harmless warning).
        neg = ln.kw[0] == "no"
        if modes.refused_global(body, neg) is not None or modes.misplaced(body) is not None:
            return False
        return True

    def _dispatch(self, ln: _Line, after_comment: bool) -> None:
        kw = ln.kw
        neg = kw[0] == "no"
        body = kw[1:] if neg else kw
        if body == ["exit"] or (body == ["quit"] and self.block is not None):
            if self.block is None:
                self.warn("'exit' at global level ignored", group=modes.G_MISC)
            self.block = None
            return
        if self.block is not None and (ln.indented or self._valid_in_block(ln, body, after_comment)):
            return self._sub(ln, neg, body)
        self.block = None
        # -- the global (parent) mode --
        if neg and body[:1] == ["banner"]:
            kind = body[1] if len(body) > 1 else "motd"
            if kind not in BANNER_KINDS:
                raise _Bad("unknown banner '%s'" % kind)
            self.router.banners.pop(kind, None)
            return
        handler, n = self._global_handler(body)
        if handler is not None:
            return handler(self, ln, neg, ln.words[n + (1 if neg else 0):])
        zbf = _zone_based(body)
        if zbf is not None:
            return zbf(self, ln, neg, body)
        return self._verbatim_global(ln, neg, body)

    @staticmethod
    def _global_handler(body):
        if len(body) > 1 and body[0] == "logging" and _is_addr(body[1]):
            return Parser.g_logging_addr, 1      # old form "logging A.B.C.D"
        for n in (4, 3, 2, 1):
            h = GLOBAL_COMMANDS.get(tuple(body[:n])) if len(body) >= n else None
            if h is not None:
                return h, n
        return None, 0

    def _verbatim_global(self, ln: _Line, neg: bool = False, body=None) -> None:
        if body is None:
            body = ln.kw[1:] if ln.kw[0] == "no" else ln.kw
        why = modes.misplaced(body) or modes.refused_global(body, neg)
        if why is not None:
            self.error(why)
            if _opens_block(ln.kw):
                self.block = ("refused", ln)
            return
        v = Verbatim(ln.text, (), ln.no)
        self.router.extra.append(v)
        self.warn("accepted, not acted on", group=modes.global_group(body))
        if _opens_block(ln.kw):
            self.block = ("verbatim", v)

    def _sub(self, ln: _Line, neg: bool, body: list[str]) -> None:
        kind, obj = self.block
        if kind == "refused":
            self.error("part of a refused block (line %d)" % obj.no)
            return
        if kind == "verbatim":
            why = modes.block_child_refused(obj.text.lower().split(), body)
            if why is not None:
                self.error(why)
                return
            obj.children = obj.children + (ln.text,)
            opener = obj.text.lower().split()
            self.warn("accepted, not acted on (in '%s')" % obj.text,
                      group=modes.global_group(opener[1:] if opener[0] == "no" else opener))
            return
        if kind == "interface" and not neg:
            why = modes.interface_refused(body)
            if why is not None:
                raise _Bad("%s (interface %s)" % (why, obj.name))
        table = SUB_COMMANDS[kind]
        for n in (3, 2, 1):
            h = table.get(tuple(body[:n])) if len(body) >= n else None
            if h is not None:
                return h(self, obj, ln, neg, ln.words[n + (1 if neg else 0):])
        fallback = table.get(None)
        if fallback is not None:
            return fallback(self, obj, ln, neg, ln.words)
        group = None
        if kind == "interface":
            zbf = _zone_based_interface(body)
            if zbf is not None:
                return zbf(self, obj, ln, neg, body)
            group = modes.interface_harmless(body)
        elif kind == "vty":
            group = modes.G_LINE
        obj.extra.append(Verbatim(ln.text, (), ln.no))
        self.warn("accepted, not acted on", group=group)

    def finish(self) -> RouterConfig:
        r = self.router
        # verbatim global lines are kept in running-config section order
        r.extra.sort(key=lambda v: verbatim_section(v.text))
        return r

    # ======================================================================
    # Global command handlers.  Signature: (self, ln, neg, args)

    def g_hostname(self, ln, neg, a):
        if neg:
            self.router.hostname = "Router"
            return
        if len(a) != 1 or not _HOSTNAME_RE.match(a[0]):
            raise _Bad("invalid hostname (IOS: letters, digits and hyphens, starting and "
                       "ending with a letter or digit, at most 63 characters)")

        self.router.hostname = a[0]

    def g_version(self, ln, neg, a):
        self.router.version = None if neg else " ".join(a) or None

    def g_service_pwenc(self, ln, neg, a):
        self.router.password_encryption = not neg

    def g_service_timestamps(self, ln, neg, a):
        which = a[0].lower() if a else "debug"
        if which not in ("log", "debug"):
            raise _Bad("service timestamps takes 'log' or 'debug'")
        opts = [x.lower() for x in a[1:]]
        if neg:
            value = None
        else:
            if not opts:
                opts = ["uptime"]
            if opts[0] not in ("datetime", "uptime"):
                raise _Bad("service timestamps %s takes 'datetime' or 'uptime'" % which)
            for o in opts[1:]:
                if opts[0] != "datetime" or o not in ("msec", "localtime", "show-timezone", "year"):
                    raise _Bad("invalid timestamp option '%s'" % o)
            value = " ".join(opts)
        if which == "log":
            self.router.timestamps_log = value
        else:
            self.router.timestamps_debug = value

    def _secret(self, ln, a, kinds, nwords):
        """[TYPE] VALUE at the end of the line; value keeps its spelling."""
        if not a:
            raise _Bad("password missing")
        if a[0] in kinds and len(a) > 1:
            kind = int(a[0])
            value = _rest(ln.raw, nwords + 1)
        elif a[0].isdigit() and len(a[0]) == 1 and len(a) > 1:
            raise _Bad("invalid password type %s (expected %s)" % (a[0], "|".join(kinds)))
        else:
            kind = 0
            value = _rest(ln.raw, nwords)
        if kind == 7:
            try:
                decode_type7(value)
            except ValueError:
                raise _Bad("invalid type 7 password")
        if kind == 5 and not value.startswith("$1$"):
            raise _Bad("invalid type 5 secret (expected $1$...)")
        if kind == 0 and "9" in kinds:
            # a secret entered in clear text is kept hashed (type 9, scrypt),
            # as IOS 15.3+ does: never held or shown in clear
            from cbac.config.passwords import hash_secret
            return Secret(9, hash_secret(value))
        return Secret(kind, value)

    def g_enable_secret(self, ln, neg, a):
        if neg:
            self.router.enable_secret = None
            return
        if a and a[0].lower() == "level":
            raise _Bad("enable secret level is not supported")
        self.router.enable_secret = self._secret(ln, a, ("0", "5", "8", "9"), 2)

    def g_enable_password(self, ln, neg, a):
        if neg:
            self.router.enable_password = None
            return
        if a and a[0].lower() == "level":
            raise _Bad("enable password level is not supported")
        self.router.enable_password = self._secret(ln, a, ("0", "7"), 2)

    def g_username(self, ln, neg, a):
        name = a[0]
        if neg:
            self.router.users.pop(name, None)
            return
        user = self.router.users.get(name) or User(name, lineno=ln.no)
        i = 1
        priv = None
        secret = password = None
        nopassword = False
        while i < len(a):
            k = a[i].lower()
            if k == "privilege":
                priv = _int(a[i + 1], 0, 15, "privilege level")
                i += 2
            elif k in ("secret", "password"):
                s = self._secret(ln, a[i + 1:], ("0", "5", "8", "9") if k == "secret" else ("0", "7"),
                                 i + 2)
                if k == "secret":
                    secret = s
                else:
                    password = s
                break
            elif k == "nopassword":
                nopassword = True
                i += 1
            else:
                raise _Bad("invalid username option '%s'" % a[i])
        if priv is not None:
            user.privilege = priv
        if secret or password or nopassword:
            user.secret, user.password = secret, password
        self.router.users[name] = user

    # -- ip inspect ---------------------------------------------------------

    def g_inspect_name(self, ln, neg, a):
        name = a[0]
        rules = self.router.inspect_rules
        if neg:
            if len(a) == 1:
                rules.pop(name, None)
            elif name in rules:
                rules[name].protocols = [p for p in rules[name].protocols
                                         if p.protocol != a[1].lower()]
                if not rules[name].protocols:
                    del rules[name]
            return
        if len(a) < 2:
            raise _Bad("protocol missing after 'ip inspect name %s'" % name)
        proto = a[1].lower()
        if proto in ("fragment", "appfw"):
            raise _Bad("ip inspect name ... %s is not implemented by cbac: it restricts what "
                       "passes, and cbac would pass the traffic" % proto)
        if proto not in INSPECT_PROTOCOLS and proto not in GENERIC_PROTOCOLS:
            self.router.extra.append(Verbatim(ln.text, (), ln.no))
            self.warn("accepted, not acted on: cbac does not inspect '%s'" % proto)
            return
        p = InspectProtocol(proto, lineno=ln.no)
        i = 2
        while i < len(a):
            k = a[i].lower()
            if k == "alert":
                p.alert = _onoff(a[i + 1], "alert")
            elif k == "audit-trail":
                p.audit_trail = _onoff(a[i + 1], "audit-trail")
            elif k == "timeout":
                p.timeout = _int(a[i + 1], 1, 2147483, "timeout")
            elif k == "max-data" and proto in ("smtp", "esmtp"):
                p.max_data = _int(a[i + 1], 1, 2147483647, "max-data")
            elif k == "reset" and proto in ("pop3", "imap"):
                p.reset = True
                i += 1
                continue
            elif k == "secure-login" and proto in ("pop3", "imap"):
                p.secure_login = True
                i += 1
                continue
            elif k == "router-traffic" and proto in ("tcp", "udp", "icmp"):
                p.router_traffic = True
                i += 1
                continue
            elif k == "router-traffic":
                raise _Bad("router-traffic applies to tcp, udp and icmp only (as on IOS); "
                           "the router's own %s traffic is not inspected" % proto)
            elif k == "java-list" and proto == "http":
                ref = _acl_ref(a[i + 1])
                if ref.isdigit() and acl_kind_for_number(int(ref)) != "standard":
                    raise _Bad("java-list must be a standard access list (1-99, 1300-1999)")
                p.java_list = ref
            else:
                raise _Bad("invalid option '%s' for ip inspect name ... %s" % (a[i], proto))
            i += 2
        rule = rules.get(name)
        if rule is None:
            rule = rules[name] = InspectRule(name, lineno=ln.no)
        other = {"smtp": "esmtp", "esmtp": "smtp"}.get(proto)
        if other and rule.get(other) is not None:
            raise _Bad("%s and %s inspection cannot be configured in the same rule (%s)"
                       % (other, proto, name))
        for idx, old in enumerate(rule.protocols):
            if old.protocol == proto:
                rule.protocols[idx] = p
                break
        else:
            rule.protocols.append(p)

    def _g_inspect_set(attr, lo, hi, what):
        def handler(self, ln, neg, a):
            g = self.router.inspect
            if neg:
                setattr(g, attr, getattr(InspectGlobals(), attr))
            else:
                if len(a) != 1:
                    raise _Bad("expected one number for %s" % what)
                setattr(g, attr, _int(a[0], lo, hi, what))
        return handler

    #: (ip inspect KEYWORD, high|low) -> the InspectGlobals attribute it sets
    _THRESHOLDS = {("max-incomplete", "high"): "max_incomplete_high",
                   ("max-incomplete", "low"): "max_incomplete_low",
                   ("one-minute", "high"): "one_minute_high",
                   ("one-minute", "low"): "one_minute_low"}

    def g_inspect_threshold(self, ln, neg, a, which):
        attr = self._THRESHOLDS.get((which, a[0].lower()))
        if attr is None:
            raise _Bad("expected 'high' or 'low'")
        g = self.router.inspect
        if neg:
            setattr(g, attr, getattr(InspectGlobals(), attr))
        else:
            setattr(g, attr, _int(a[1], 1, 2147483647, "threshold"))

    def g_inspect_max_incomplete(self, ln, neg, a):
        self.g_inspect_threshold(ln, neg, a, "max-incomplete")

    def g_inspect_one_minute(self, ln, neg, a):
        self.g_inspect_threshold(ln, neg, a, "one-minute")

    def g_inspect_host(self, ln, neg, a):
        g = self.router.inspect
        if neg:
            g.tcp_max_incomplete_host = 50
            g.tcp_block_time = 0
            return
        if a[0].lower() != "host":
            raise _Bad("expected 'ip inspect tcp max-incomplete host N block-time M'")
        g.tcp_max_incomplete_host = _int(a[1], 1, 250, "max-incomplete host")
        if len(a) > 2:
            if a[2].lower() != "block-time" or len(a) != 4:
                raise _Bad("expected 'block-time MINUTES'")
            g.tcp_block_time = _int(a[3], 0, 35791, "block-time")
        else:
            g.tcp_block_time = 0

    def g_inspect_other(self, ln, neg, a):
        """``no ip inspect`` (IOS: removes all inspection configuration) and
        every other ``ip inspect ...`` form no other handler takes."""
        if neg and not a:
            self.router.inspect = InspectGlobals()
            self.router.inspect_rules.clear()
            for itf in self.router.interfaces.values():
                itf.inspect_in = itf.inspect_out = None
            return
        body = ["ip", "inspect"] + [x.lower() for x in a]
        why = modes.misplaced(body) or modes.refused_global(body, neg)
        if why is not None:
            raise _Bad(why)
        self._verbatim_global(ln, neg, body)

    def g_inspect_flag(attr):
        def handler(self, ln, neg, a):
            if a:
                raise _Bad("unexpected '%s'" % a[0])
            setattr(self.router.inspect, attr, not neg)
        return handler

    # -- interfaces ---------------------------------------------------------

    def g_interface(self, ln, neg, a):
        if not a:
            raise _Bad("interface name missing")
        subif = None
        if len(a) > 1 and a[-1].lower() in ("point-to-point", "multipoint"):
            subif = a[-1].lower()
            a = a[:-1]
        name = normalize_interface(" ".join(a))
        if subif is not None and "." not in name:
            raise _Bad("'%s' is only valid for a sub-interface (NAME.N)" % subif)
        if neg:
            self.router.interfaces.pop(name, None)
            return
        itf = self.router.interfaces.get(name)
        if itf is None:
            if len(self.router.interfaces) >= MAX_INTERFACES:
                raise _Bad("more than %d interfaces" % MAX_INTERFACES)
            itf = self.router.interfaces[name] = Interface(name, lineno=ln.no)
        if subif is not None:
            itf.subif_type = subif
        self.block = ("interface", itf)

    def i_address(self, itf, ln, neg, a):
        if neg:
            if a and len(a) >= 2 and a[-1].lower() == "secondary":
                addr = IPv4Interface("%s/%d" % (_addr(a[0]), _mask(a[1])))
                itf.secondary = [s for s in itf.secondary if s != addr]
            else:
                itf.address = None
                itf.secondary = []
                itf.dhcp = False
                itf.dhcp_hostname = None
            return
        if a and a[0].lower() == "negotiated":
            raise _Bad("'ip address negotiated' (PPP/IPCP) is not supported: a two-port "
                       "Ethernet appliance has no PPP; configure a static address or dhcp")
        if a and a[0].lower() == "dhcp":
            i = 1
            while i < len(a):          # [client-id IF] [hostname NAME]
                if a[i].lower() in ("client-id", "hostname") and i + 1 < len(a):
                    i += 2
                else:
                    raise _Bad("invalid input '%s' after 'ip address dhcp'" % a[i])
            opts = {a[j].lower(): a[j + 1] for j in range(1, len(a) - 1, 2)}
            if "client-id" in opts:
                self.warn("ip address dhcp: client-id %s not acted on (cbac sends the client "
                          "identifier of this interface)" % opts["client-id"])
            itf.dhcp = True
            itf.dhcp_hostname = opts.get("hostname")     # sent to the server (option 12)
            itf.address = None
            return
        if len(a) < 2:
            raise _Bad("expected 'ip address ADDRESS MASK'")
        addr = _addr(a[0])
        plen = _mask(a[1])
        ifa = IPv4Interface("%s/%d" % (addr, plen))
        if plen < 31 and plen > 0 and (addr == ifa.network.network_address
                                      or addr == ifa.network.broadcast_address):
            raise _Bad("bad mask /%d for address %s" % (plen, addr))
        if plen == 0 or int(addr) == 0:
            raise _Bad("bad address %s %s" % (a[0], a[1]))
        if len(a) == 3 and a[2].lower() == "secondary":
            if ifa not in itf.secondary:
                itf.secondary.append(ifa)
        elif len(a) == 2:
            itf.address = ifa
            itf.dhcp = False
        else:
            raise _Bad("invalid input '%s'" % a[2])

    def i_description(self, itf, ln, neg, a):
        itf.description = None if neg else _rest(ln.raw, 1)[:240] or None

    def i_shutdown(self, itf, ln, neg, a):
        itf.shutdown = not neg

    def i_access_group(self, itf, ln, neg, a):
        d = a[-1].lower() if a else ""
        if d not in ("in", "out"):
            raise _Bad("expected 'ip access-group ACL in|out'")
        value = None if neg else _acl_ref(a[0])
        if not neg and len(a) != 2:
            raise _Bad("expected 'ip access-group ACL in|out'")
        if d == "in":
            itf.access_group_in = value
            itf.lines["access_group_in"] = ln.no
        else:
            itf.access_group_out = value
            itf.lines["access_group_out"] = ln.no

    def i_inspect(self, itf, ln, neg, a):
        if len(a) != 2 or a[1].lower() not in ("in", "out"):
            raise _Bad("expected 'ip inspect NAME in|out'")
        name = None if neg else a[0]
        if a[1].lower() == "in":
            itf.inspect_in = name
            itf.lines["inspect_in"] = ln.no
        else:
            itf.inspect_out = name
            itf.lines["inspect_out"] = ln.no

    def i_nat(self, itf, ln, neg, a):
        if len(a) != 1 or a[0].lower() not in ("inside", "outside"):
            raise _Bad("expected 'ip nat inside|outside'")
        if neg:
            if itf.nat == a[0].lower():
                itf.nat = None
        else:
            itf.nat = a[0].lower()

    def i_arp_timeout(self, itf, ln, neg, a):
        itf.arp_timeout = 14400 if neg else _int(a[0], 0, 2147483, "arp timeout")

    def i_unreachables(self, itf, ln, neg, a):
        itf.unreachables = not neg

    def i_mtu(self, itf, ln, neg, a):
        itf.mtu = 1500 if neg else _int(a[0], 68, 9216, "ip mtu")

    def i_virtual_reassembly(self, itf, ln, neg, a):
        # acted on by cbac/dataplane/reassembly.py, which reads the line
        # back from itf.extra; checked here so a typo is an error
        i = 0
        while i < len(a):
            k = a[i].lower()
            lim = {"max-reassemblies": 8192, "max-fragments": 64, "timeout": 30}.get(k)
            if lim is not None and i + 1 < len(a):
                _int(a[i + 1], 1, lim, k)
                i += 2
            elif k in ("in", "out", "drop-fragments"):
                i += 1
            else:
                raise _Bad("expected 'ip virtual-reassembly [in|out] [max-reassemblies N] "
                           "[max-fragments N] [timeout S] [drop-fragments]'")
        itf.extra.append(Verbatim(ln.text, (), ln.no))
        if neg:
            self.warn("cbac reassembles fragments whenever ACLs, NAT or inspection need them")

    # -- access lists -------------------------------------------------------

    def _acl(self, name: str, kind: str, ln) -> AccessList:
        acl = self.router.acls.get(name)
        if acl is None:
            acl = self.router.acls[name] = AccessList(name, kind, name.isdigit(), lineno=ln.no)
        elif acl.kind != kind:
            raise _Bad("access list %s already exists as a %s list" % (name, acl.kind))
        return acl

    def _seqs(self, acl: AccessList) -> set:
        known = self._acl_seqs.get(id(acl))
        if known is None or known[0] is not acl or len(known[1]) != len(acl.entries):
            known = self._acl_seqs[id(acl)] = (acl, {x.seq for x in acl.entries})
        return known[1]

    def _add_entry(self, acl: AccessList, e: AclEntry, seq: Optional[int]) -> None:
        # Linear in the number of entries: a set of sequence numbers per list,
        # and a sort only when an entry goes before the last one.
        seqs = self._seqs(acl)
        last = acl.entries[-1].seq if acl.entries else 0
        if seq is None:
            seq = (last // 10 + 1) * 10
        elif seq in seqs:
            raise _Bad("duplicate sequence number %d in access list %s" % (seq, acl.name))
        if self._aces >= MAX_ACES:
            raise _Bad("more than %d access list entries" % MAX_ACES)
        self._aces += 1
        e.seq = seq
        seqs.add(seq)
        acl.entries.append(e)
        if seq < last:
            acl.entries.sort(key=lambda x: x.seq)

    def g_access_list(self, ln, neg, a):
        num = _int(a[0], 1, 2699, "access list number")
        kind = acl_kind_for_number(num)
        if kind is None:
            raise _Bad("invalid access list number %d (standard 1-99, 1300-1999; "
                       "extended 100-199, 2000-2699)" % num)
        name = str(num)
        if neg:
            if len(a) == 1:
                self.router.acls.pop(name, None)
                return
            raise _Bad("'no access-list N ...' removes the whole list; write 'no access-list %s'" % name)
        if len(a) < 2:
            raise _Bad("incomplete command")
        if a[1].lower() in ("dynamic", "rate-limit"):
            raise _Bad("access-list %s is not supported" % a[1])
        e = parse_ace(a[1:], kind, name)
        e.lineno = ln.no
        acl = self._acl(name, kind, ln)
        self._add_entry(acl, e, None)

    def g_ip_access_list(self, ln, neg, a, kind):
        if len(a) != 1:
            raise _Bad("expected 'ip access-list %s NAME'" % kind)
        tok = a[0]
        if tok.isdigit():
            n = int(tok)
            if acl_kind_for_number(n) != kind:
                raise _Bad("%s is not a %s access list number" % (tok, kind))
            tok = str(n)
        elif not _ACL_NAME_RE.match(tok):
            raise _Bad("invalid access list name '%s' (must start with a letter)" % tok)
        if neg:
            self.router.acls.pop(tok, None)
            return
        self.block = ("acl", self._acl(tok, kind, ln))

    def g_ip_access_list_standard(self, ln, neg, a):
        self.g_ip_access_list(ln, neg, a, "standard")

    def g_ip_access_list_extended(self, ln, neg, a):
        self.g_ip_access_list(ln, neg, a, "extended")

    def a_entry(self, acl, ln, neg, words):
        w = list(words)
        if neg:
            w = w[1:]
            if len(w) == 1 and w[0].isdigit():
                n = int(w[0])
                acl.entries = [x for x in acl.entries if x.seq != n]
                self._acl_seqs.pop(id(acl), None)
                return
            e = parse_ace(w, acl.kind, acl.name)
            for x in acl.entries:
                if _same_ace(x, e):
                    acl.entries.remove(x)
                    self._acl_seqs.pop(id(acl), None)
                    return
            return
        seq = None
        if w and w[0].isdigit():
            seq = _int(w[0], 1, 2147483647, "sequence number")
            w = w[1:]
        if not w:
            raise _Bad("incomplete command")
        e = parse_ace(w, acl.kind, acl.name)
        e.lineno = ln.no
        self._add_entry(acl, e, seq)

    # -- NAT ----------------------------------------------------------------

    def g_nat_source(self, ln, neg, a, side):
        # a: words after "ip nat inside|outside source"
        k = a[0].lower()
        nat = self.router.nat
        if k == "static":
            if len(a) > 1 and a[1].lower() == "network":
                new = self._nat_static_network(a[2:], side, ln)
            else:
                new = [self._nat_static(a[1:], side, ln)]
            if neg:
                drop = {(s.side, s.local, s.protocol, s.local_port, s.global_, s.global_port,
                         s.global_interface, s.network) for s in new}
                nat.statics = [s for s in nat.statics if (
                    s.side, s.local, s.protocol, s.local_port, s.global_, s.global_port,
                    s.global_interface, s.network) not in drop]
                self._static_keys = None
                return
            keys = self._static_index()
            for st in new:
                for s in keys.get((st.side, st.local, st.protocol, st.local_port), ()):
                    if not (st.extendable and s.extendable):
                        raise _Bad("static translation for %s already exists (use 'extendable')"
                                   % st.local)
            for st in new:
                keys.setdefault((st.side, st.local, st.protocol, st.local_port), []).append(st)
                nat.statics.append(st)
        elif k == "list":
            d = NatDynamic(_acl_ref(a[1]), lineno=ln.no, side=side)
            i = 2
            what = a[i].lower()
            if what == "pool":
                d.pool = a[i + 1]
            elif what == "interface" and side == "inside":
                d.interface = normalize_interface(a[i + 1])
            elif what == "interface":
                raise _Bad("'interface' is not valid with 'ip nat outside source list' "
                           "(expected 'pool NAME')")
            else:
                raise _Bad("expected 'pool NAME' or 'interface IF'")
            i += 2
            while i < len(a):
                o = a[i].lower()
                if o == "overload" and side == "inside" and not d.overload:
                    d.overload = True
                elif o == "overload":
                    raise _Bad("'overload' is not supported with 'ip nat outside source "
                               "list' (outside translation is one-to-one)")
                elif o == "add-route" and side == "outside" and not d.add_route:
                    d.add_route = True
                elif o == "add-route":
                    raise _Bad("'add-route' is only valid with 'ip nat outside source'")
                else:
                    raise _Bad("invalid or unsupported NAT option '%s'" % a[i])
                i += 1
            key = (d.side, d.acl)
            nat.dynamics = [x for x in nat.dynamics if (x.side, x.acl) != key]
            if neg:
                return
            nat.dynamics.append(d)
        elif k == "route-map":
            raise _Bad("NAT with a route-map is not implemented by cbac")
        else:
            raise _Bad("unsupported NAT source form '%s'" % a[0])

    def _static_index(self) -> dict:
        if getattr(self, "_static_keys", None) is None:
            self._static_keys = {}
            for s in self.router.nat.statics:
                self._static_keys.setdefault((s.side, s.local, s.protocol, s.local_port),
                                             []).append(s)
        return self._static_keys

    def _nat_static_network(self, a, side, ln) -> list:
        """``static network LOCAL GLOBAL {/N | MASK} [extendable]``: one
        address translation per address of the network (host part kept)."""
        if side != "inside":
            raise _Bad("static network translation is only implemented for "
                       "'ip nat inside source static network'")
        local, glob = _addr(a[0], "local network"), _addr(a[1], "global network")
        m = a[2]
        if m.startswith("/"):
            plen = _int(m[1:], 1, 32, "prefix length")
        elif _is_addr(m):
            plen = _mask(m)
        else:
            raise _Bad("expected '/N' or a netmask after the networks")
        size = 1 << (32 - plen)
        if size > MAX_STATIC_NETWORK:
            raise _Bad("static network of %d addresses; cbac allows at most %d (/%d)"
                       % (size, MAX_STATIC_NETWORK, 32 - (MAX_STATIC_NETWORK.bit_length() - 1)))
        hostmask = size - 1
        if int(local) & hostmask or int(glob) & hostmask:
            raise _Bad("inconsistent network and mask: %s / %s /%d" % (local, glob, plen))
        ext = False
        for t in a[3:]:
            if t.lower() == "extendable":
                ext = True
            elif t.lower() == "no-alias":
                raise _Bad("NAT option 'no-alias' is not implemented by cbac")
            else:
                raise _Bad("invalid or unsupported NAT option '%s'" % t)
        return [NatStatic(side, IPv4Address(int(local) + h), IPv4Address(int(glob) + h),
                          extendable=ext, network=plen, lineno=ln.no) for h in range(size)]

    def _nat_static(self, a, side, ln) -> NatStatic:
        proto = None
        if a and a[0].lower() in ("tcp", "udp"):
            proto = a[0].lower()
            a = a[1:]
        st = NatStatic(side, _addr(a[0], "local address"), protocol=proto, lineno=ln.no)
        i = 1
        if proto:
            st.local_port = _int(a[i], 1, 65535, "local port") if a[i].isdigit() else _port(proto, a[i])
            i += 1
        if a[i].lower() == "interface":
            if not proto:
                raise _Bad("'interface' form requires tcp or udp with ports")
            st.global_interface = normalize_interface(a[i + 1])
            i += 2
        else:
            st.global_ = _addr(a[i], "global address")
            i += 1
        if proto:
            st.global_port = _int(a[i], 1, 65535, "global port") if a[i].isdigit() else _port(proto, a[i])
            i += 1
        while i < len(a):
            if a[i].lower() == "extendable":
                st.extendable = True
            elif a[i].lower() == "add-route":
                if side != "outside":
                    raise _Bad("'add-route' is only valid with 'ip nat outside source static'")
                st.add_route = True
            elif a[i].lower() in ("no-alias", "no-payload", "route-map", "redundancy",
                                  "mapping-id", "vrf", "match-in-vrf", "reversible"):
                raise _Bad("NAT option '%s' is not implemented by cbac" % a[i])
            else:
                raise _Bad("invalid or unsupported NAT option '%s'" % a[i])
            i += 1
        return st

    def g_nat_inside(self, ln, neg, a):
        self.g_nat_source(ln, neg, a, "inside")

    def g_nat_outside(self, ln, neg, a):
        self.g_nat_source(ln, neg, a, "outside")

    def g_nat_pool(self, ln, neg, a):
        name = a[0]
        if neg:
            self.router.nat.pools.pop(name, None)
            return
        start, end = _addr(a[1], "start address"), _addr(a[2], "end address")
        k = a[3].lower()
        if k == "netmask":
            plen, form = _mask(a[4]), True
        elif k == "prefix-length":
            plen, form = _int(a[4], 1, 32, "prefix-length"), False
        else:
            raise _Bad("expected 'netmask M' or 'prefix-length N'")
        pool = NatPool(name, start, end, plen, form, lineno=ln.no)
        i = 5
        if i < len(a):
            if a[i].lower() != "type" or len(a) != i + 2 or a[i + 1].lower() not in ("match-host", "rotary"):
                raise _Bad("expected 'type match-host|rotary'")
            pool.type = a[i + 1].lower()
        if int(start) > int(end):
            raise _Bad("pool start address %s is above end address %s" % (start, end))
        net = IPv4Network("%s/%d" % (start, plen), strict=False)
        if end not in net:
            raise _Bad("pool %s: start and end are not in one /%d network" % (name, plen))
        size = int(end) - int(start) + 1
        if size > MAX_POOL_ADDRESSES:
            raise _Bad("pool %s has %d addresses; cbac allows at most %d in one pool"
                       % (name, size, MAX_POOL_ADDRESSES))
        self.router.nat.pools[name] = pool

    #: ip nat translation KEYWORD -> the NatTimeouts attribute it sets
    _NAT_TIMEOUTS = {"timeout": "timeout", "udp-timeout": "udp_timeout",
                     "dns-timeout": "dns_timeout", "tcp-timeout": "tcp_timeout",
                     "finrst-timeout": "finrst_timeout", "icmp-timeout": "icmp_timeout",
                     "syn-timeout": "syn_timeout"}

    def g_nat_translation(self, ln, neg, a):
        k = a[0].lower()
        t = self.router.nat.timeouts
        if k == "max-entries":
            kind = a[1].lower() if len(a) > 1 else ""
            want = {"all-host": 3, "host": 4, "list": 4}.get(kind, 2)
            if len(a) != want and not (neg and len(a) == want - 1):
                raise _Bad("expected 'max-entries {N | all-host N | host ADDR N | list ACL N}'")
            n = None if neg else _int(a[-1], 1, 2147483647, "max-entries")
            if kind == "all-host":
                t.max_entries_all_host = n
            elif kind == "host":
                h = _addr(a[2], "host address")
                if n is None:
                    t.max_entries_host.pop(h, None)
                else:
                    t.max_entries_host[h] = n
            elif kind == "list":
                t.max_entries_list = [e for e in t.max_entries_list if e[0] != a[2]]
                if n is not None:
                    t.max_entries_list.append((a[2], n, ln.no))
            else:
                t.max_entries = n
            return
        if k not in self._NAT_TIMEOUTS:
            self.router.extra.append(Verbatim(ln.text, (), ln.no))
            self.warn("accepted, not acted on")
            return
        attr = self._NAT_TIMEOUTS[k]
        if neg:
            setattr(t, attr, getattr(NatTimeouts(), attr))
        elif a[1].lower() == "never":
            setattr(t, attr, None)
        else:
            setattr(t, attr, _int(a[1], 0, 536870, k))

    def g_nat_service(self, ln, neg, a):
        # list ACL ftp tcp port N
        if len(a) != 6 or a[0].lower() != "list" or a[2].lower() != "ftp" or \
                a[3].lower() != "tcp" or a[4].lower() != "port":
            raise _Bad("expected 'ip nat service list ACL ftp tcp port N'")
        s = NatService(_acl_ref(a[1]), "ftp", _int(a[5], 1, 65535, "port"), lineno=ln.no)
        svcs = self.router.nat.services
        svcs[:] = [x for x in svcs if x != s]
        if not neg:
            svcs.append(s)

    # -- routes -------------------------------------------------------------

    def g_route(self, ln, neg, a):
        prefix_addr = _addr(a[0], "prefix")
        plen = _mask(a[1])
        try:
            net = IPv4Network("%s/%d" % (prefix_addr, plen))
        except ValueError:
            raise _Bad("inconsistent address and mask %s %s" % (a[0], a[1]))
        r = Route(net, lineno=ln.no)
        i = 2
        if i >= len(a):
            raise _Bad("next hop or interface missing")
        if _is_addr(a[i]):
            r.next_hop = _addr(a[i], "next hop")
            i += 1
        else:
            r.interface = normalize_interface(a[i])
            i += 1
            if i < len(a) and _is_addr(a[i]):
                r.next_hop = _addr(a[i], "next hop")
                i += 1
        if r.interface is not None and r.interface.lower() == "dhcp":
            if not (i == len(a) or i + 1 == len(a) and a[i].isdigit()):
                raise _Bad("expected 'ip route PREFIX MASK dhcp [DISTANCE]'")
            self.router.extra.append(Verbatim(ln.text, (), ln.no))
            self.warn("accepted, not acted on: the route via the DHCP server's router is the "
                      "default route of the lease ('ip address dhcp')")
            return
        if i < len(a) and a[i].isdigit():
            r.distance = _int(a[i], 1, 255, "distance")
            i += 1
        while i < len(a):
            k = a[i].lower()
            if k == "name" and i + 1 < len(a):
                r.name = a[i + 1]
                i += 2
            elif k == "tag" and i + 1 < len(a):
                r.tag = _int(a[i + 1], 1, 4294967295, "tag")
                i += 2
            elif k == "permanent":
                r.permanent = True
                i += 1
            elif k == "track":
                raise _Bad("'track' on a static route is not implemented by cbac: the route "
                           "would stay installed when the tracked object goes down")
            elif k in ("multicast", "global", "vrf"):
                raise _Bad("route option '%s' is not implemented by cbac" % a[i])
            else:
                raise _Bad("invalid route option '%s'" % a[i])
        key = (r.prefix, r.next_hop, r.interface)
        old = self._routes.pop(key, None)
        if old is not None:
            self.router.routes.remove(old)
        if not neg:
            if len(self._routes) >= MAX_ROUTES:
                raise _Bad("more than %d static routes" % MAX_ROUTES)
            self._routes[key] = r
            self.router.routes.append(r)

    # -- logging ------------------------------------------------------------

    def g_logging_host(self, ln, neg, a):
        h = LogHost(_addr(a[0], "logging host"), lineno=ln.no)
        i = 1
        if i < len(a):
            if a[i].lower() != "transport" or a[i + 1].lower() not in ("udp", "tls"):
                raise _Bad("expected 'transport udp|tls [port N]'")
            h.transport = a[i + 1].lower()
            i += 2
            if i < len(a):
                if a[i].lower() != "port" or len(a) != i + 2:
                    raise _Bad("expected 'port N'")
                h.port = _int(a[i + 1], 1, 65535, "port")
        hosts = self.router.logging.hosts
        hosts[:] = [x for x in hosts if x.address != h.address]
        if not neg:
            hosts.append(h)

    def g_logging_addr(self, ln, neg, a):
        self.g_logging_host(ln, neg, a)

    def g_logging_buffered(self, ln, neg, a):
        lg = self.router.logging
        if neg:
            lg.buffered = None
            lg.buffered_level = 7
            return
        size, level = 4096, 7
        if any(t.lower() in ("discriminator", "xml", "filtered") for t in a):
            self.warn("logging buffered %s is not acted on" % " ".join(
                t for t in a if not t.isdigit() and t.lower() not in SEVERITIES),
                group=modes.G_LOGGING)
            a = list(a)
            for k in ("discriminator",):
                while k in [t.lower() for t in a]:
                    i = [t.lower() for t in a].index(k)
                    del a[i:i + 2]
            a = [t for t in a if t.lower() not in ("xml", "filtered")]
        for tok in a:
            if tok.isdigit() and int(tok) <= 7:
                level = int(tok)
            elif tok.isdigit():
                size = _int(tok, 4096, 2147483647, "buffer size")
                if size > MAX_LOG_BUFFER:
                    raise _Bad("logging buffer of %d bytes; cbac allows at most %d (the "
                               "appliance's memory is bounded)" % (size, MAX_LOG_BUFFER))
            else:
                level = _level(tok)
        lg.buffered, lg.buffered_level = size, level

    def g_logging_trap(self, ln, neg, a):
        self.router.logging.trap_level = 6 if neg or not a else _level(a[0])

    def g_logging_file(self, ln, neg, a):
        """``logging file PATH [MAX [MIN]] [LEVEL]`` (IOS; PATH is a local
        file; MIN is accepted and ignored)."""
        lg = self.router.logging
        if neg:
            lg.file, lg.file_max, lg.file_level = None, 4096000, 7
            return
        if not a:
            raise _Bad("expected 'logging file PATH [MAX [MIN]] [LEVEL]'")
        path = a[0]
        if path.lower().startswith("flash:"):
            raise _Bad("'%s': cbac writes a local file: give an absolute path" % path)
        if not path.startswith("/"):
            raise _Bad("'%s': give an absolute path" % path)
        nums = [t for t in a[1:] if t.isdigit() and int(t) > 7]
        rest = [t for t in a[1:] if t not in nums]
        if len(nums) > 2 or len(rest) > 1:
            raise _Bad("expected 'logging file PATH [MAX [MIN]] [LEVEL]'")
        lg.file = path
        lg.file_max = _int(nums[0], 4096, 2147483647, "max file size") if nums else 4096000
        lg.file_level = _level(rest[0]) if rest else 7

    def g_logging_console(self, ln, neg, a):
        self.router.logging.console_level = 7 if neg or not a else _level(a[0])

    # -- ssh, vty -----------------------------------------------------------

    def g_ssh_port(self, ln, neg, a):
        if neg:
            self.router.ssh.port = 2222
            return
        if len(a) > 1 and a[1].lower() != "rotary":
            raise _Bad("invalid input '%s'" % a[1])
        self.router.ssh.port = _int(a[0], 1, 65535, "ssh port")

    def g_line_vty(self, ln, neg, a):
        first = _int(a[0], 0, 1869, "vty line")
        last = _int(a[1], first, 1869, "vty line") if len(a) > 1 else first
        for v in self.router.vty:
            if (v.first, v.last) == (first, last):
                break
        else:
            v = VtyConfig(first, last, lineno=ln.no)
            self.router.vty.append(v)
        self.block = ("vty", v)

    def v_access_class(self, vty, ln, neg, a):
        if a and a[-1].lower() == "out":
            vty.extra.append(Verbatim(ln.text, (), ln.no))
            self.warn("accepted, not acted on")
            return
        if neg:
            vty.access_class = None
            return
        if len(a) < 2 or a[1].lower() != "in":
            raise _Bad("expected 'access-class ACL in'")
        vty.access_class = _acl_ref(a[0])
        vty.lines["access_class"] = ln.no

    def v_transport(self, vty, ln, neg, a):
        if not a or a[0].lower() != "input":
            vty.extra.append(Verbatim(ln.text, (), ln.no))
            self.warn("accepted, not acted on")
            return
        kinds = {x.lower() for x in a[1:]}
        if neg:
            vty.transport_input = "ssh"
            return
        if not kinds or not kinds <= {"ssh", "telnet", "all", "none"}:
            raise _Bad("expected 'transport input ssh|telnet|all|none'")
        if "all" in kinds or {"ssh", "telnet"} <= kinds:
            vty.transport_input = "all"
        else:
            vty.transport_input = kinds.pop()

    def v_login(self, vty, ln, neg, a):
        if neg and a and a[0].lower() == "authentication":
            vty.login_authentication = None
        elif neg:
            vty.login_local = False
        elif not a:
            vty.login_local = False
        elif a[0].lower() == "local" and len(a) == 1:
            vty.login_local = True
        elif a[0].lower() == "authentication" and len(a) == 2:
            # An AAA method list.  Without 'aaa new-model' IOS does not use
            # it either; with it, cbac refuses (see check.py).
            vty.login_authentication = a[1]
            vty.lines["login_authentication"] = ln.no
        else:
            raise _Bad("expected 'login', 'login local' or 'login authentication LIST'")

    def v_exec_timeout(self, vty, ln, neg, a):
        if neg:
            vty.exec_timeout = None
            return
        m = _int(a[0], 0, 35791, "exec-timeout minutes")
        s = _int(a[1], 0, 2147483, "exec-timeout seconds") if len(a) > 1 else 0
        vty.exec_timeout = (m, s)

    # -- cbac extensions ----------------------------------------------------

    def g_cbac_port(self, ln, neg, a):
        if len(a) < 1 or (not neg and len(a) != 2):
            raise _Bad("expected 'cbac port INTERFACE DEVICE'")
        name = normalize_interface(a[0])
        if neg:
            self.router.ports.pop(name, None)
            return
        dev = a[1]
        if not re.fullmatch(r"[A-Za-z0-9_.@:-]{1,15}", dev):
            raise _Bad("invalid Linux device name '%s'" % dev)
        for b in self.router.ports.values():
            if b.device == dev and b.interface != name:
                raise _Bad("device %s is already bound to %s" % (dev, b.interface))
        self.router.ports[name] = PortBinding(name, dev, lineno=ln.no)

    def g_cbac_session_limit(self, ln, neg, a):
        from cbac.config.model import SESSION_LIMIT_DEFAULT, SESSION_LIMIT_HOST_DEFAULT, \
            SESSION_LIMIT_DEST_DEFAULT
        if a and a[0].lower() == "destination":
            # cbac session-limit destination N: sessions per responder address
            if neg:
                self.router.session_limit_dest = SESSION_LIMIT_DEST_DEFAULT
            elif len(a) != 2:
                raise _Bad("expected 'cbac session-limit destination N'")
            else:
                self.router.session_limit_dest = _int(a[1], 1, 100000000,
                                                      "session-limit destination")
            return
        if a and a[0].lower() == "host":
            # cbac session-limit host N: sessions per initiating address
            if neg:
                self.router.session_limit_host = SESSION_LIMIT_HOST_DEFAULT
            elif len(a) != 2:
                raise _Bad("expected 'cbac session-limit host N'")
            else:
                self.router.session_limit_host = _int(a[1], 1, 100000000, "session-limit host")
            return
        self.router.session_limit = SESSION_LIMIT_DEFAULT if neg else \
            _int(a[0], 1, 100000000, "session-limit")

    def g_cbac_fastpath_offload(self, ln, neg, a):
        if a:
            raise _Bad("expected 'cbac fastpath offload'")
        self.router.fastpath_offload = not neg

    def g_ip_source_route(self, ln, neg, a):
        """``[no] ip source-route``.  cbac does not implement source
        routing: packets with a loose or strict source route option are
        dropped whatever this says (cbac/dataplane/ipoptions.py)."""
        if a:
            raise _Bad("expected '[no] ip source-route'")
        self.router.source_route = not neg
        if not neg:
            self.warn("cbac does not implement source routing: packets with a loose or strict "
                      "source route option (LSRR/SSRR) are dropped and counted (source-route) "
                      "whatever this line says, as with 'no ip source-route'")

    def g_ip_options(self, ln, neg, a):
        """``ip options {drop|ignore}`` (IOS: ACL IP Options Selective
        Drop); ``no ip options ...``: back to the default."""
        if neg:
            self.router.ip_options = None
        elif len(a) == 1 and a[0].lower() in ("drop", "ignore"):
            self.router.ip_options = a[0].lower()
        else:
            raise _Bad("expected 'ip options drop|ignore'")

    def g_cbac_redundancy(self, ln, neg, a):
        """``cbac redundancy peer A.B.C.D interface IFNAME key KEY [port N]``
        (cbac extension, docs/continuity.md): the state sync link of an
        active/standby pair.  Anything else is an error."""
        from cbac.config.model import Redundancy
        if neg:
            self.router.redundancy = None
            return
        if len(a) < 2 or a[0].lower() != "peer":
            raise _Bad("expected 'cbac redundancy peer A.B.C.D interface IFNAME key KEY [port N]'")
        try:
            peer = IPv4Address(a[1])
        except ValueError:
            raise _Bad("invalid peer address '%s'" % a[1]) from None
        r = Redundancy(peer=peer, lineno=ln.no)
        rest = a[2:]
        seen = set()
        i = 0
        while i < len(rest):
            kw = rest[i].lower()
            if kw in seen or i + 1 >= len(rest):
                raise _Bad("expected 'cbac redundancy peer A.B.C.D interface IFNAME key KEY "
                           "[port N]'")
            seen.add(kw)
            val = rest[i + 1]
            if kw == "interface":
                r.interface = normalize_interface(val)
            elif kw == "key":
                if not 8 <= len(val) <= 128:
                    raise _Bad("the redundancy key must be 8 to 128 characters")
                r.key = val
            elif kw == "port":
                r.port = _int(val, 1, 65535, "redundancy port")
            else:
                raise _Bad("unknown redundancy keyword '%s'" % rest[i])
            i += 2
        if r.interface is None:
            raise _Bad("'cbac redundancy' needs 'interface IFNAME' (the sync link)")
        if r.key is None:
            raise _Bad("'cbac redundancy' needs 'key KEY': an unauthenticated sync link "
                       "would let anyone on it install sessions")
        if peer.is_multicast or peer.is_unspecified or peer == IPv4Address("255.255.255.255"):
            raise _Bad("invalid peer address '%s'" % a[1])
        self.router.redundancy = r

    def g_cbac_authorized_keys(self, ln, neg, a):
        self.router.ssh.authorized_keys = None if neg else _rest(ln.raw, 3)

    def g_login_block_for(self, ln, neg, a):
        """``login block-for S attempts N within T`` (IOS login protection)."""
        if neg:
            self.router.login_block = None
            return
        if len(a) != 5 or a[1].lower() != "attempts" or a[3].lower() != "within":
            raise _Bad("expected 'login block-for SECONDS attempts TRIES within SECONDS'")
        self.router.login_block = (_int(a[0], 1, 65535, "block-for seconds"),
                                   _int(a[2], 1, 65535, "attempts"),
                                   _int(a[4], 1, 65535, "within seconds"))

    def g_login_quiet_acl(self, ln, neg, a):
        if neg:
            self.router.login_quiet_acl = None
            return
        if len(a) != 1:
            raise _Bad("expected 'login quiet-mode access-class ACL'")
        self.router.login_quiet_acl = a[0]

    def g_cbac_metrics_listen(self, ln, neg, a):
        """``cbac metrics listen tcp:PORT:interface=ADDR`` (repeatable): the
        Prometheus endpoint (cbac/metrics.py).  No authentication, so an
        explicit management address is required."""
        desc = _rest(ln.raw, 4 if ln.raw.split()[0].lower() == "no" else 3).strip()
        lst = self.router.metrics_listen
        if neg:
            if desc:
                if desc in lst:
                    lst.remove(desc)
            else:
                del lst[:]
            return
        m = re.fullmatch(r"tcp:(\d{1,5}):interface=([0-9.]+)", desc)
        if m is None:
            raise _Bad("expected 'cbac metrics listen tcp:PORT:interface=ADDR' "
                       "(the endpoint has no authentication: name a management address)")
        _int(m.group(1), 0, 65535, "port")
        try:
            IPv4Address(m.group(2))
        except ValueError:
            raise _Bad("invalid address '%s'" % m.group(2)) from None
        if desc not in lst:
            lst.append(desc)

    def g_cbac_tls_ca(self, ln, neg, a):
        self.router.logging.tls_ca = None if neg else _rest(ln.raw, 3)

    def g_cbac_log_format(self, ln, neg, a):
        if not neg and (len(a) != 1 or a[0].lower() != "rfc5424"):
            raise _Bad("expected 'cbac logging format rfc5424'")
        self.router.logging.rfc5424 = not neg

    def g_cbac_inspect_tcp(self, ln, neg, a):
        # cbac extension: what to do with a TCP segment that is not a SYN
        # and has no session, on traffic an inspection rule covers
        if neg and a and a[0].lower() == "no-session":
            self.router.inspect.tcp_no_session = "drop"
        elif len(a) == 2 and a[0].lower() == "no-session" and a[1].lower() in ("drop", "forward"):
            self.router.inspect.tcp_no_session = a[1].lower()
        else:
            raise _Bad("expected 'cbac inspect tcp no-session drop|forward'")

    def g_cbac_starttls(self, ln, neg, a):
        if neg:
            self.router.smtp.starttls = "allow"
        elif len(a) == 1 and a[0].lower() in ("allow", "strip"):
            self.router.smtp.starttls = a[0].lower()
        else:
            raise _Bad("expected 'cbac smtp starttls allow|strip'")

    def g_cbac_bare_lf(self, ln, neg, a):
        if neg:
            self.router.smtp.bare_lf = "reject"
        elif len(a) == 1 and a[0].lower() in ("allow", "reject"):
            self.router.smtp.bare_lf = a[0].lower()
        else:
            raise _Bad("expected 'cbac smtp bare-lf reject|allow'")

    def g_end(self, ln, neg, a):
        self.ended = True


def _acl_line(body: list[str]) -> bool:
    """Could this (unindented) line be an entry of an ip access-list block?"""
    return bool(body) and (body[0] in ("permit", "deny", "remark") or body[0].isdigit())


def _same_ace(x: AclEntry, e: AclEntry) -> bool:
    keys = ("action", "protocol", "source", "source_port", "destination",
            "destination_port", "icmp_type", "icmp_code", "established",
            "fragments", "log", "remark")
    return all(getattr(x, k) == getattr(e, k) for k in keys)


P = Parser
#: leading keywords (lower case, without "no") -> handler(parser, line, neg, args)
GLOBAL_COMMANDS: dict[tuple[str, ...], Callable] = {
    ("hostname",): P.g_hostname,
    ("version",): P.g_version,
    ("service", "password-encryption"): P.g_service_pwenc,
    ("service", "timestamps"): P.g_service_timestamps,
    ("enable", "secret"): P.g_enable_secret,
    ("enable", "password"): P.g_enable_password,
    ("username",): P.g_username,
    ("ip", "inspect", "name"): P.g_inspect_name,
    ("ip", "inspect", "max-incomplete"): P.g_inspect_max_incomplete,
    ("ip", "inspect", "one-minute"): P.g_inspect_one_minute,
    ("ip", "inspect", "tcp", "max-incomplete"): P.g_inspect_host,
    ("ip", "inspect", "tcp", "synwait-time"): P._g_inspect_set("tcp_synwait_time", 1, 2147483, "synwait-time"),
    ("ip", "inspect", "tcp", "finwait-time"): P._g_inspect_set("tcp_finwait_time", 1, 2147483, "finwait-time"),
    ("ip", "inspect", "tcp", "idle-time"): P._g_inspect_set("tcp_idle_time", 1, 2147483, "idle-time"),
    ("ip", "inspect", "udp", "idle-time"): P._g_inspect_set("udp_idle_time", 1, 2147483, "idle-time"),
    ("ip", "inspect", "dns-timeout"): P._g_inspect_set("dns_timeout", 1, 2147483, "dns-timeout"),
    ("ip", "inspect", "audit-trail"): P.g_inspect_flag("audit_trail"),
    ("ip", "inspect", "alert-off"): P.g_inspect_flag("alert_off"),
    ("ip", "inspect"): P.g_inspect_other,
    ("interface",): P.g_interface,
    ("access-list",): P.g_access_list,
    ("ip", "access-list", "standard"): P.g_ip_access_list_standard,
    ("ip", "access-list", "extended"): P.g_ip_access_list_extended,
    ("ip", "nat", "inside", "source"): P.g_nat_inside,
    ("ip", "nat", "outside", "source"): P.g_nat_outside,
    ("ip", "nat", "pool"): P.g_nat_pool,
    ("ip", "nat", "translation"): P.g_nat_translation,
    ("ip", "nat", "service"): P.g_nat_service,
    ("ip", "route"): P.g_route,
    ("ip", "source-route"): P.g_ip_source_route,
    ("ip", "options"): P.g_ip_options,
    ("logging", "host"): P.g_logging_host,
    ("logging", "buffered"): P.g_logging_buffered,
    ("logging", "trap"): P.g_logging_trap,
    ("logging", "console"): P.g_logging_console,
    ("logging", "file"): P.g_logging_file,
    ("ip", "ssh", "port"): P.g_ssh_port,
    ("line", "vty"): P.g_line_vty,
    ("cbac", "port"): P.g_cbac_port,
    ("cbac", "session-limit"): P.g_cbac_session_limit,
    ("cbac", "fastpath", "offload"): P.g_cbac_fastpath_offload,
    ("cbac", "redundancy"): P.g_cbac_redundancy,
    ("cbac", "ssh", "authorized-keys"): P.g_cbac_authorized_keys,
    ("cbac", "logging", "tls-ca"): P.g_cbac_tls_ca,
    ("cbac", "metrics", "listen"): P.g_cbac_metrics_listen,
    ("login", "block-for"): P.g_login_block_for,
    ("login", "quiet-mode", "access-class"): P.g_login_quiet_acl,
    ("cbac", "logging", "format"): P.g_cbac_log_format,
    ("cbac", "inspect", "tcp"): P.g_cbac_inspect_tcp,
    ("cbac", "smtp", "starttls"): P.g_cbac_starttls,
    ("cbac", "smtp", "bare-lf"): P.g_cbac_bare_lf,
    ("end",): P.g_end,
}

#: block kind -> {leading keywords: handler(parser, obj, line, neg, args)};
#: key None is the fallback (gets all words, including "no").
SUB_COMMANDS: dict[str, dict] = {
    "interface": {
        ("ip", "address"): Parser.i_address,
        ("description",): Parser.i_description,
        ("shutdown",): Parser.i_shutdown,
        ("ip", "access-group"): Parser.i_access_group,
        ("ip", "inspect"): Parser.i_inspect,
        ("ip", "nat"): Parser.i_nat,
        ("arp", "timeout"): Parser.i_arp_timeout,
        ("ip", "unreachables"): Parser.i_unreachables,
        ("ip", "mtu"): Parser.i_mtu,
        ("ip", "virtual-reassembly"): Parser.i_virtual_reassembly,
    },
    "acl": {None: Parser.a_entry},
    "vty": {
        ("access-class",): Parser.v_access_class,
        ("transport",): Parser.v_transport,
        ("login",): Parser.v_login,
        ("exec-timeout",): Parser.v_exec_timeout,
    },
}

# Zone-based policy firewall: handlers live in cbac.config.zbf.
from cbac.config import zbf as _zbf  # noqa: E402
_zbf.install(GLOBAL_COMMANDS, SUB_COMMANDS)


# --------------------------------------------------------------------------
# Entry points

def parse_config(text: str, filename: str = "<config>") -> tuple[RouterConfig, list[Diagnostic]]:
    """Parse IOS text; return the model and every diagnostic (errors and
    warnings, in line order)."""
    p = Parser(filename)
    p.feed(text)
    return p.finish(), p.diagnostics


def parse(text: str, filename: str = "<config>") -> RouterConfig:
    """Parse IOS text into a :class:`RouterConfig` (diagnostics discarded)."""
    return parse_config(text, filename)[0]


def parse_bytes(data: bytes, filename: str = "<config>") -> tuple[RouterConfig, list[Diagnostic]]:
    """Parse a configuration file's bytes.  The file must be text: ASCII or
    UTF-8 (a UTF-8 byte order mark is allowed).  UTF-16/32, NUL bytes, other
    control characters or bytes that are not UTF-8 are an error naming the
    first bad line, and nothing of the file is used."""
    def refuse(line, msg):
        return RouterConfig(), [Diagnostic(filename, line, ERROR, msg)]
    if len(data) > MAX_CONFIG_BYTES:
        return refuse(0, "configuration is %d bytes; cbac reads at most %d"
                      % (len(data), MAX_CONFIG_BYTES))
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                      (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(bom):
            return refuse(1, "the file is %s text; cbac reads ASCII or UTF-8 "
                          "configurations" % name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        # the first bad line: invalid UTF-8 or, earlier, a control byte
        line = data.count(b"\n", 0, e.start) + 1
        what = "bytes that are not valid UTF-8"
        for no, raw in enumerate(data[:e.end].decode("utf-8", "replace").split("\n"), 1):
            m = _NOT_TEXT.search(raw.rstrip("\r"))
            if m is not None:
                if m.group() != "\ufffd":
                    line, what = no, "control character 0x%02X" % ord(m.group())
                break
        return refuse(line, "line is not configuration text (%s); the file is not read "
                      "further" % what)
    return parse_config(text, filename)


def parse_file(path: str) -> tuple[RouterConfig, list[Diagnostic]]:
    with open(path, "rb") as f:
        return parse_bytes(f.read(), path)
