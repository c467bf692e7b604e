"""What is valid where, and what cbac refuses: the tables behind the
fail-closed reading of IOS configurations.

Three questions are answered here for the parser:

* **Which mode is a command valid in?**  IOS reads an unindented
  configuration by trying each command in the current mode first and only
  otherwise in the parent mode, so ``logging event link-status`` or ``ntp
  disable`` keep an interface open.  :func:`interface_command` and
  :func:`line_command` say whether a command exists in interface and line
  (con/aux/vty) mode.
* **Is a line one cbac must refuse?**  A command that IOS would use to
  restrict, inspect, encrypt or otherwise change what traffic passes, and
  that cbac does not enforce, is an *error* (:data:`INTERFACE_REFUSED`,
  :func:`refused_global`).  A configuration that relies on it must not
  load into a box that would pass the traffic anyway.
* **Is a not-acted-on line harmless?**  Lines that change nothing about
  what passes (hardware, line settings, banners, the router's own
  services) get a *group* label; ``--check`` and the log count them per
  group instead of printing each (:func:`interface_harmless`,
  :func:`global_group`).  A not-acted-on line without a group is printed in
  full.

Every table is keyed by leading keywords in lower case, without ``no``.
"""

from __future__ import annotations

from typing import Optional

# --------------------------------------------------------------------------
# Group labels of harmless, not-acted-on lines (the --check summary)

G_LINE = "line/aux/console settings"
G_BANNER = "banners (kept, shown back by show running-config)"
G_SYSTEM = "system settings (services, boot, clock, NTP, licences, hardware cards)"
G_LOGGING = "logging settings"
G_SNMP = "SNMP settings"
G_IFACE = "interface settings that do not affect filtering (duplex, speed, CDP, ICMP redirects, ...)"
G_SERVICES = "router services cbac does not run (DNS client, HTTP/DHCP server, CEF, SSH options)"
G_ROUTING = "dynamic routing (cbac routes statically; nothing is learned)"
G_CRYPTO = "crypto, AAA and key definitions not applied to any interface"
G_IPV6 = "IPv6 settings (cbac drops all IPv6)"
G_MISC = "other settings that do not affect filtering (voice, controllers, object definitions)"


def _match(table, body: list[str]):
    """The value of the longest key of ``table`` that ``body`` starts with."""
    for n in (4, 3, 2, 1):
        if len(body) >= n:
            v = table.get(tuple(body[:n]))
            if v is not None:
                return v
    return None


# --------------------------------------------------------------------------
# Interface mode

#: interface commands cbac refuses: IOS would restrict, encrypt, redirect or
#: police traffic with them; cbac would pass it unchanged.
INTERFACE_REFUSED: dict[tuple[str, ...], str] = {
    ("crypto", "map"): "crypto map (IPsec) is not implemented: the traffic would pass unencrypted",
    ("crypto", "ipsec", "client"): "IPsec (Easy VPN) is not implemented: the traffic would pass unencrypted",
    ("tunnel", "protection"): "tunnel protection (IPsec) is not implemented",
    ("service-policy",): "service-policy (QoS, policing, inspection policy) is not implemented",
    ("ip", "ips"): "ip ips (intrusion prevention) is not implemented",
    ("ip", "audit"): "ip audit (intrusion detection) is not implemented",
    ("ip", "policy"): "policy routing (ip policy route-map) is not implemented",
    ("ip", "verify"): "unicast RPF (ip verify unicast) is not implemented",
    ("ip", "auth-proxy"): "authentication proxy is not implemented",
    ("ip", "admission"): "network admission control is not implemented",
    ("ip", "wccp"): "WCCP redirection is not implemented",
    ("ip", "nat", "enable"): "NAT virtual interface (ip nat enable) is not implemented; "
                             "use ip nat inside / ip nat outside",
    ("mac", "access-group"): "MAC access groups are not implemented",
    ("rate-limit",): "rate-limit (CAR) is not implemented",
    ("traffic-shape",): "traffic shaping is not implemented",
    ("storm-control",): "storm-control is not implemented",
    ("switchport", "port-security"): "port security is not implemented",
}

#: interface commands that change nothing about what passes.
INTERFACE_HARMLESS = {
    ("duplex",), ("half-duplex",), ("full-duplex",), ("speed",), ("media-type",),
    ("negotiation",), ("bandwidth",), ("delay",), ("keepalive",), ("load-interval",),
    ("cdp",), ("logging",), ("ntp",), ("mtu",), ("hold-queue",), ("tx-ring-limit",),
    ("carrier-delay",), ("mac-address",), ("fair-queue",), ("clock",), ("snmp",),
    ("dce-terminal-timing-enable",), ("invert",), ("flowcontrol",), ("spanning-tree",),
    ("switchport",), ("macro",), ("auto",), ("power",), ("no-autostate",),
    ("down-when-looped",), ("lldp",), ("mls",), ("priority-queue",), ("qos",),
    ("ip", "redirects"), ("ip", "proxy-arp"), ("ip", "directed-broadcast"),
    ("ip", "route-cache"), ("ip", "mroute-cache"), ("ip", "virtual-reassembly"),
    ("ip", "virtual-reassembly-out"), ("ip", "flow"), ("ip", "nbar"), ("ip", "dhcp"),
    ("ip", "helper-address"), ("ip", "ospf"), ("ip", "pim"), ("ip", "igmp"),
    ("ip", "split-horizon"), ("ip", "summary-address"), ("ip", "hello-interval"),
    ("ip", "hold-time"), ("ip", "authentication"), ("ip", "mask-reply"),
    ("ip", "information-reply"), ("ip", "local-proxy-arp"), ("ip", "accounting"),
    ("ip", "load-sharing"), ("ip", "cef"), ("ip", "sticky-arp"), ("ip", "rip"),
    ("ip", "bandwidth-percent"), ("ip", "irdp"), ("ip", "route-cache"),
    ("ip", "sap"), ("ip", "tcp", "header-compression"), ("ip", "rtp"),
    ("ip", "multicast"), ("ip", "traffic-export"), ("ip", "ddns"),
    ("ip", "broadcast-address"), ("ip", "mtu"),
    ("arp",), ("ipv6",), ("standby",), ("vrrp",), ("glbp",), ("bfd",),
}

#: interface commands that are neither refused nor harmless, but valid in
#: interface mode (kept and reported in full as not acted on).
INTERFACE_OTHER = {
    ("encapsulation",), ("pvc",), ("atm",), ("frame-relay",), ("ppp",), ("dialer",),
    ("dialer-group",), ("dialer-list",), ("pppoe",), ("pppoe-client",), ("isdn",),
    ("bridge-group",), ("channel-group",), ("xconnect",), ("mpls",), ("tunnel",),
    ("serial",), ("dsl",), ("shape",), ("ip", "tcp", "adjust-mss"), ("ip", "unnumbered"),
    ("ip", "vrf"), ("vrf",), ("ip", "ospf"), ("compress",), ("backup",), ("peer",),
    ("autodetect",), ("custom-queue-list",), ("priority-group",), ("random-detect",),
    ("max-reserved-bandwidth",), ("ethernet",), ("nameif",), ("security-level",),
}

#: interface commands cbac acts on (see parser.SUB_COMMANDS["interface"]).
INTERFACE_ACTED = {
    ("ip", "address"), ("description",), ("shutdown",), ("ip", "access-group"),
    ("ip", "inspect"), ("ip", "nat"), ("arp", "timeout"), ("ip", "unreachables"),
    ("ip", "mtu"), ("zone-member",),
}


def interface_command(body: list[str]) -> bool:
    """Is ``body`` (without ``no``) a command of IOS interface mode?  Global
    forms that share the first words are told apart here: ``ip nat inside``
    (interface) vs ``ip nat inside source ...`` (global), ``ip inspect NAME
    in`` vs ``ip inspect name NAME PROTO``, ``ip dhcp relay ...`` vs ``ip dhcp
    pool ...``, ``logging event ...`` vs ``logging host ...``, ``ntp
    disable`` vs ``ntp server ...``."""
    if not body:
        return False
    b0 = body[0]
    if b0 == "ip" and len(body) > 1:
        b1 = body[1]
        if b1 == "nat":
            return len(body) == 3 and body[2] in ("inside", "outside") or \
                (len(body) > 2 and body[2] == "enable")
        if b1 == "inspect":
            return len(body) == 4 and body[3] in ("in", "out")
        if b1 == "dhcp":
            return len(body) > 2 and body[2] in ("relay", "client", "snooping")
        if b1 in ("ospf", "rip", "pim", "igmp"):
            return True
        if b1 == "access-group":
            return True
        if b1 == "ips" or b1 == "audit":
            return len(body) > 3 and body[3] in ("in", "out")
        if b1 == "auth-proxy" or b1 == "admission":
            return len(body) == 3
        if b1 == "wccp":
            return "redirect" in body
    if b0 == "logging":
        return len(body) > 1 and body[1] == "event"
    if b0 == "ntp":
        return len(body) > 1 and body[1] in ("disable", "broadcast", "multicast")
    if b0 == "crypto":
        return len(body) > 1 and (body[1] == "map" and len(body) <= 3 or
                                  body[1:3] == ["ipsec", "client"])
    if b0 == "snmp":
        return len(body) > 1 and body[1] in ("trap", "ifindex")
    if b0 == "clock":
        return len(body) > 1 and body[1] in ("rate", "source")
    if b0 == "power":
        return len(body) > 1 and body[1] == "inline"
    if b0 == "zone-member":
        return True
    return _match(_IFACE_VALID, body) is not None


def _flatten():
    out = {}
    for k in INTERFACE_HARMLESS:
        out[k] = G_IFACE
    for k in INTERFACE_OTHER:
        out.setdefault(k, "")
    return out


_IFACE_KIND = _flatten()
_IFACE_VALID = {k: True for t in (INTERFACE_ACTED, INTERFACE_REFUSED, INTERFACE_HARMLESS,
                                  INTERFACE_OTHER) for k in t}


def interface_refused(body: list[str]) -> Optional[str]:
    """The reason cbac refuses this interface command, or None."""
    return _match(INTERFACE_REFUSED, body)


def interface_harmless(body: list[str]) -> Optional[str]:
    """The group label of a harmless interface command, or None."""
    if body[:1] == ["ipv6"]:
        return G_IPV6
    if body[:1] == ["vrf"] or body[:2] == ["ip", "vrf"]:
        return G_ROUTING             # check.py reports the VRF itself, in full
    v = _match(_IFACE_KIND, body)
    return v or None


# --------------------------------------------------------------------------
# Line mode (line con / aux / vty)

LINE_FIRST = {
    "access-class", "accounting", "activation-character", "authorization",
    "autocommand", "autoselect", "databits", "escape-character", "exec",
    "exec-banner", "exec-timeout", "flowcontrol", "history", "international",
    "ipv6", "length", "location", "logging", "login", "logout-warning",
    "modem", "motd-banner", "notify", "parity", "password", "privilege",
    "refuse-message", "rotary", "session-timeout", "absolute-timeout",
    "special-character-bits", "speed", "stopbits", "terminal-type", "timeout",
    "transport", "vacant-message", "width", "exec-character-bits", "stopbit",
    "session-limit", "editing", "full-help", "data-character-bits", "lockable",
    "no-activation", "insecure", "start-character", "stop-character",
}


def line_command(body: list[str]) -> bool:
    """Is ``body`` (without ``no``) a command of IOS line mode?"""
    if not body:
        return False
    if body[0] == "logging":
        return len(body) > 1 and body[1] == "synchronous"
    if body[0] == "privilege":
        return len(body) > 1 and body[1] == "level"
    if body[0] == "ipv6":
        return len(body) > 1 and body[1] == "access-class"
    return body[0] in LINE_FIRST


# --------------------------------------------------------------------------
# Global commands

def refused_global(body: list[str], neg: bool) -> Optional[str]:
    """The reason cbac refuses this global command (not handled by the
    parser's own tables), or None."""
    if not body:
        return None
    b = body
    if b[0] == "ip" and len(b) > 1:
        if b[1] == "routing" and neg:
            return "'no ip routing' would stop the router forwarding; cbac always routes"
        if b[1] == "port-map" and not neg:
            return ("port-to-application mapping (ip port-map) is not implemented: cbac "
                    "inspects each protocol on its well-known port only")
        if b[1] == "tcp" and len(b) > 2 and b[2] == "intercept" and not neg:
            return "TCP intercept is not implemented"
        if b[1] == "local" and len(b) > 2 and b[2] == "policy" and not neg:
            return "local policy routing is not implemented"
        if b[1] == "inspect" and not neg:
            if len(b) > 2 and (b[2] in ("log", "hashtable-size", "hashtable", "name")
                               or b[2:4] == ["tcp", "window-scale-enforcement"]):
                return None
            return ("unsupported ip inspect option: cbac cannot enforce '%s'"
                    % " ".join(b[2:4]))
        if b[1] == "nat" and not neg:
            if len(b) > 2 and b[2] in ("log", "create"):
                return None
            return "unsupported NAT command: cbac cannot perform it"
        if b[1] == "access-list" and not neg:
            if len(b) > 2 and b[2] in ("log-update", "logging", "resequence", "persistent",
                                       "compiled", "counter"):
                return None
            return "unsupported access list type '%s'" % (b[2] if len(b) > 2 else "")
    return None


_GROUP_FIRST = {
    "service": G_SYSTEM, "boot-start-marker": G_SYSTEM, "boot-end-marker": G_SYSTEM,
    "boot": G_SYSTEM, "clock": G_SYSTEM, "ntp": G_SYSTEM, "license": G_SYSTEM,
    "memory-size": G_SYSTEM, "resource": G_SYSTEM, "card": G_SYSTEM, "version": G_SYSTEM,
    "voice-card": G_SYSTEM, "scheduler": G_SYSTEM, "diagnostic": G_SYSTEM,
    "redundancy": G_SYSTEM, "hw-module": G_SYSTEM, "platform": G_SYSTEM,
    "mmi": G_SYSTEM, "archive": G_SYSTEM, "process": G_SYSTEM, "exception": G_SYSTEM,
    "logging": G_LOGGING, "snmp-server": G_SNMP, "snmp": G_SNMP,
    "router": G_ROUTING, "key": G_CRYPTO, "crypto": G_CRYPTO, "aaa": G_CRYPTO,
    "radius-server": G_CRYPTO, "tacacs-server": G_CRYPTO, "radius": G_CRYPTO,
    "line": G_LINE, "banner": G_BANNER, "ipv6": G_IPV6,
    "voice": G_MISC, "dial-peer": G_MISC, "controller": G_MISC, "mgcp": G_MISC,
    "gatekeeper": G_MISC, "sccp": G_MISC, "telephony-service": G_MISC,
    "object-group": G_MISC, "track": G_MISC, "alias": G_MISC, "vtp": G_MISC,
    "spanning-tree": G_SYSTEM, "vlan": G_MISC, "errdisable": G_SYSTEM,
    "cdp": G_SYSTEM, "lldp": G_SYSTEM, "login": G_CRYPTO, "security": G_CRYPTO,
    "privilege": G_CRYPTO, "multilink": G_MISC, "vpdn": G_MISC, "isdn": G_MISC,
    "tftp-server": G_SERVICES, "ftp-server": G_SERVICES, "memory": G_SYSTEM,
    "call-home": G_SYSTEM, "subscriber": G_SYSTEM, "transceiver": G_SYSTEM,
    "file": G_SYSTEM, "control-plane": G_SYSTEM, "exit": G_MISC, "end": G_MISC,
    "access-session": G_MISC, "event": G_MISC, "wsma": G_SERVICES, "http": G_SERVICES,
    "username": G_CRYPTO, "enable": G_CRYPTO, "ipc": G_SYSTEM, "dot11": G_MISC,
    "route-map": G_ROUTING, "vrf": G_ROUTING,
}
_GROUP_IP = {
    "cef": G_SERVICES, "subnet-zero": G_SERVICES, "domain": G_SERVICES,
    "domain-name": G_SERVICES, "domain-lookup": G_SERVICES, "name-server": G_SERVICES,
    "host": G_SERVICES, "http": G_SERVICES, "dhcp": G_SERVICES, "ssh": G_SERVICES,
    "scp": G_SERVICES, "ftp": G_SERVICES, "tftp": G_SERVICES, "rcmd": G_SERVICES,
    "finger": G_SERVICES, "bootp": G_SERVICES, "dns": G_SERVICES, "icmp": G_SERVICES,
    "classless": G_ROUTING, "forward-protocol": G_SERVICES, "routing": G_ROUTING,
    "multicast-routing": G_ROUTING, "prefix-list": G_ROUTING, "sla": G_MISC,
    "flow-export": G_LOGGING, "flow-cache": G_LOGGING, "flow-top-talkers": G_LOGGING,
    "gratuitous-arps": G_SERVICES, "tcp": G_SERVICES, "telnet": G_SERVICES,
    "vrf": G_ROUTING,
    "accounting-threshold": G_LOGGING, "arp": G_SERVICES, "inspect": None,
    "nat": G_LOGGING, "access-list": G_LOGGING, "ips": G_CRYPTO, "audit": G_CRYPTO,
    "auth-proxy": G_CRYPTO, "urlfilter": G_CRYPTO, "admission": G_CRYPTO,
    "radius": G_CRYPTO, "igmp": G_ROUTING, "pim": G_ROUTING, "msdp": G_ROUTING,
    "bgp-community": G_ROUTING, "community-list": G_ROUTING, "as-path": G_ROUTING,
    "wccp": G_SERVICES, "nbar": G_LOGGING, "rtp": G_SERVICES, "name": G_SERVICES,
}


def global_group(body: list[str]) -> Optional[str]:
    """The group label of a harmless, not-acted-on global command (or a
    line of a block it opens), or None (printed in full)."""
    if not body:
        return None
    if body[0] == "ip":
        return _GROUP_IP.get(body[1]) if len(body) > 1 else None
    return _GROUP_FIRST.get(body[0])


#: commands that filter, inspect or translate only on an interface or a
#: line: written where no interface (or line) is open, they would do nothing.
_MISPLACED = {("ip", "address"), ("ip", "access-group"), ("access-class",),
              ("zone-member",), ("ip", "unreachables")}


def misplaced(body: list[str]) -> Optional[str]:
    """An error for an interface/line command written in global mode (IOS:
    ``% Invalid input``), where cbac would otherwise keep it as a global
    line that does nothing; or None."""
    if _match({k: True for k in _MISPLACED}, body) or (
            body[:2] == ["ip", "inspect"] and len(body) == 4 and body[3] in ("in", "out")) or (
            body[:2] == ["ip", "nat"] and len(body) == 3 and body[2] in ("inside", "outside")) or \
            (interface_refused(body) and interface_command(body)):
        return ("'%s' is an interface or line command, but no interface or line block is open "
                "here (IOS: %% Invalid input); it would do nothing" % " ".join(body[:3]))
    return None


def block_child_refused(opener: list[str], body: list[str]) -> Optional[str]:
    """A line inside a not-acted-on block that cbac must refuse anyway
    (``service-policy`` under ``control-plane`` polices the router's own
    traffic; cbac does not)."""
    if body[:1] == ["service-policy"]:
        return "service-policy (QoS, policing, inspection policy) is not implemented"
    return None
