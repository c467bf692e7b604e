"""Typed model of an IOS configuration, as cbac understands it.

The parser (:mod:`cbac.config.parser`) turns IOS text into a :class:`RouterConfig`;
the renderer (:mod:`cbac.config.render`) turns a :class:`RouterConfig` back into
``show running-config`` text.  ``parse(render(model)) == model`` holds.

Conventions:

* Addresses are :class:`ipaddress.IPv4Address`; interface addresses
  :class:`ipaddress.IPv4Interface`; prefixes :class:`ipaddress.IPv4Network`.
* Ports and ICMP types are stored as integers; IOS names (``smtp``,
  ``echo-reply``) are accepted by the parser and produced by the renderer.
* Every field defaults to the IOS default, so ``RouterConfig()`` is the
  configuration of a router with nothing configured.
* ``lineno`` fields record where a thing was defined (for error messages);
  they never take part in equality.
* Everything here is plain data: no behaviour beyond small helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Optional


def _lineno():
    return field(default=0, compare=False, repr=False)


# --------------------------------------------------------------------------
# Lines cbac accepts but does not act on

@dataclass
class Verbatim:
    """An IOS command cbac keeps but does not act on (``voice-card 3``,
    ``controller T1 3/0`` with its sub-commands).  Rendered back as is."""

    text: str
    children: tuple[str, ...] = ()
    lineno: int = _lineno()


# --------------------------------------------------------------------------
# Users and secrets

@dataclass
class Secret:
    """A password as configured.  ``kind`` is the IOS encryption type:
    0 (clear text), 5 (MD5 crypt), 7 (Vigenere, reversible), 8/9 (PBKDF2 /
    scrypt).  ``value`` is the text after the type digit as written."""

    kind: int
    value: str


@dataclass
class User:
    name: str
    privilege: int = 1
    secret: Optional[Secret] = None      # "secret" keyword
    password: Optional[Secret] = None    # "password" keyword
    lineno: int = _lineno()


# --------------------------------------------------------------------------
# Inspection (CBAC)

#: Protocols of ``ip inspect name``.
#: Protocols of ``ip inspect name``.  The generic names of
#: :data:`GENERIC_PROTOCOLS` are accepted too.
INSPECT_PROTOCOLS = ("tcp", "udp", "icmp", "ftp", "http", "smtp", "esmtp", "dns", "tftp", "pop3", "imap",
                     "sip", "rtsp", "pptp")

#: ``ip inspect name X NAME`` for protocols IOS inspects at layer 4 only:
#: cbac inspects them with its generic TCP/UDP inspection, **only** on
#: their IOS port-to-application-mapping (PAM) ports, with the generic
#: default timeouts (tcp idle-time, udp idle-time) unless ``timeout`` is
#: given.  name -> ((IP protocol, port), ...).
GENERIC_PROTOCOLS = {
    "https": ((6, 443),), "ssh": ((6, 22),), "telnet": ((6, 23),),
    "pop3s": ((6, 995),), "imaps": ((6, 993),), "telnets": ((6, 992),),
    "ircs": ((6, 994),), "ldap": ((6, 389),), "ldaps": ((6, 636),),
    "nntp": ((6, 119),), "finger": ((6, 79),), "gopher": ((6, 70),),
    "ident": ((6, 113),), "bgp": ((6, 179),), "mysql": ((6, 3306),),
    "ms-sql": ((6, 1433),), "microsoft-ds": ((6, 445),), "netbios-ssn": ((6, 139),),
    "socks": ((6, 1080),), "syslog-conn": ((6, 601),),
    "kerberos": ((6, 88), (17, 88)), "tacacs": ((6, 49), (17, 49)),
    "ntp": ((17, 123),), "isakmp": ((17, 500),), "ipsec-msft": ((17, 4500),),
    "snmp": ((17, 161),), "snmptrap": ((17, 162),), "syslog": ((17, 514),),
    "netbios-ns": ((17, 137),), "netbios-dgm": ((17, 138),), "l2tp": ((17, 1701),),
}
#: (IP protocol, port) -> generic name
GENERIC_BY_PORT = {pp: name for name, pps in GENERIC_PROTOCOLS.items() for pp in pps}
#: (IP protocol, port) -> the rule's protocol word chosen before tcp/udp
#: (the generic names and ``dns``, UDP and TCP 53)
PORT_NAMES = dict(GENERIC_BY_PORT)
PORT_NAMES[(6, 53)] = PORT_NAMES[(17, 53)] = "dns"
PORT_NAMES[(17, 69)] = "tftp"
PORT_NAMES[(6, 5060)] = PORT_NAMES[(17, 5060)] = "sip"
PORT_NAMES[(6, 554)] = "rtsp"
PORT_NAMES[(6, 1723)] = "pptp"


@dataclass
class InspectGlobals:
    """``ip inspect ...`` global commands, with IOS defaults."""

    audit_trail: bool = False            # ip inspect audit-trail
    alert_off: bool = False              # ip inspect alert-off
    max_incomplete_high: int = 500
    max_incomplete_low: int = 400
    one_minute_high: int = 500
    one_minute_low: int = 400
    tcp_max_incomplete_host: int = 50
    tcp_block_time: int = 0              # minutes
    tcp_synwait_time: int = 30           # seconds
    tcp_finwait_time: int = 5
    tcp_idle_time: int = 3600
    udp_idle_time: int = 30
    dns_timeout: int = 5
    tcp_no_session: str = "drop"         # cbac inspect tcp no-session {drop|forward}


@dataclass
class InspectProtocol:
    """One ``ip inspect name NAME PROTOCOL ...`` line.

    ``alert``/``audit_trail``/``timeout`` are None when not given: the
    effective value then comes from the globals (see :func:`effective`).
    """

    protocol: str                        # one of INSPECT_PROTOCOLS
    alert: Optional[bool] = None
    audit_trail: Optional[bool] = None
    timeout: Optional[int] = None
    max_data: Optional[int] = None       # smtp / esmtp; IOS default 20000000
    java_list: Optional[str] = None      # http: standard ACL name or number
    router_traffic: bool = False         # tcp/udp/icmp: "router-traffic" (inspect the router's own traffic)
    reset: bool = False                  # pop3/imap: reset on an illegal command (else refused)
    secure_login: bool = False           # pop3/imap: refuse clear-text login outside TLS
    # ZBF only (the class's parameter-map): None = the ip inspect globals
    synwait: Optional[int] = None        # tcp synwait-time
    finwait: Optional[int] = None        # tcp finwait-time
    dns_timeout: Optional[int] = None    # dns-timeout
    lineno: int = _lineno()


@dataclass
class InspectRule:
    name: str
    protocols: list[InspectProtocol] = field(default_factory=list)
    lineno: int = _lineno()

    def get(self, protocol: str) -> Optional[InspectProtocol]:
        for p in self.protocols:
            if p.protocol == protocol:
                return p
        return None


#: IOS default ``max-data`` for smtp/esmtp.
SMTP_MAX_DATA_DEFAULT = 20000000

#: ``cbac session-limit`` when not configured: with the NAT table's default
#: limit (cbac.nat.Nat.DEFAULT_MAX_ENTRIES) it keeps the whole appliance
#: under 256 MB with every session an HTTP-inspected connection through
#: PAT (about 7.5 KB each; docs/performance.md, "Memory under attack").
SESSION_LIMIT_DEFAULT = 25000
#: ``cbac session-limit host N`` when not configured: the sessions one
#: initiating address may hold (pf's max-src-states), so one host cannot
#: fill the table for the others.
SESSION_LIMIT_HOST_DEFAULT = 4096
#: ``cbac session-limit destination N`` when not configured: the sessions
#: one responder address (after NAT: the real server) may hold, so a flood
#: of many sources towards one published server cannot fill the table.
#: IOS has no such limit: this is stricter than IOS.
SESSION_LIMIT_DEST_DEFAULT = 8192


def default_timeout(protocol: str, g: InspectGlobals) -> int:
    """The timeout IOS prints for a protocol line without ``timeout``."""
    if protocol in ("udp", "tftp", "sip"):
        return g.udp_idle_time
    if protocol == "dns":
        return g.dns_timeout
    gp = GENERIC_PROTOCOLS.get(protocol)
    if gp is not None and all(ip == 17 for ip, _ in gp):
        return g.udp_idle_time
    if protocol == "icmp":
        return 10
    return g.tcp_idle_time


# --------------------------------------------------------------------------
# Interfaces

@dataclass
class Interface:
    name: str                                        # IOS name: Ethernet2/0
    description: Optional[str] = None
    address: Optional[IPv4Interface] = None          # ip address A M
    secondary: list[IPv4Interface] = field(default_factory=list)
    shutdown: bool = False
    access_group_in: Optional[str] = None            # ACL name or number
    access_group_out: Optional[str] = None
    inspect_in: Optional[str] = None                 # inspection rule name
    inspect_out: Optional[str] = None
    nat: Optional[str] = None                        # "inside" / "outside"
    zone: Optional[str] = None                       # zone-member security NAME
    zone_lineno: int = _lineno()
    arp_timeout: int = 14400                         # arp timeout S
    unreachables: bool = True                        # ip unreachables
    mtu: int = 1500                                  # ip mtu N
    dhcp: bool = False                               # ip address dhcp (address from a DHCP lease)
    dhcp_hostname: Optional[str] = None              # ip address dhcp hostname NAME
    subif_type: Optional[str] = None                 # interface X.N point-to-point|multipoint
    extra: list[Verbatim] = field(default_factory=list)  # half-duplex, ...
    lineno: int = _lineno()
    #: where each sub-command was written (attribute -> line), for diagnostics
    lines: dict = field(default_factory=dict, compare=False, repr=False)


# --------------------------------------------------------------------------
# Access lists

@dataclass
class AddrMatch:
    """Source or destination of an ACE.  ``any`` is 0.0.0.0/255.255.255.255,
    ``host A`` is A/0.0.0.0.  Wildcard bits set to 1 are ignored."""

    address: IPv4Address = IPv4Address(0)
    wildcard: IPv4Address = IPv4Address(0xFFFFFFFF)

    @property
    def is_any(self) -> bool:
        return int(self.wildcard) == 0xFFFFFFFF

    @property
    def is_host(self) -> bool:
        return int(self.wildcard) == 0

    def matches(self, addr: int) -> bool:
        w = int(self.wildcard)
        return (addr & ~w) == (int(self.address) & ~w)


@dataclass
class PortMatch:
    """``eq P`` / ``neq P`` / ``lt P`` / ``gt P`` / ``range P1 P2``."""

    op: str                                  # eq neq lt gt range
    ports: tuple[int, ...]

    def matches(self, port: int) -> bool:
        op, p = self.op, self.ports
        if op == "eq":
            return port in p
        if op == "neq":
            return port not in p
        if op == "lt":
            return port < p[0]
        if op == "gt":
            return port > p[0]
        return p[0] <= port <= p[1]


@dataclass
class AclEntry:
    """One access-control entry (or a remark).

    ``protocol`` is ``ip``, ``tcp``, ``udp``, ``icmp`` or an IP protocol
    number (int).  Standard ACLs use only ``source`` (protocol ``ip``).
    """

    seq: int
    action: str                                  # permit / deny / remark
    protocol: object = "ip"
    source: AddrMatch = field(default_factory=AddrMatch)
    source_port: Optional[PortMatch] = None
    destination: Optional[AddrMatch] = None      # None for standard ACLs
    destination_port: Optional[PortMatch] = None
    icmp_type: Optional[int] = None
    icmp_code: Optional[int] = None
    established: bool = False
    fragments: bool = False
    log: Optional[str] = None                    # None, "log", "log-input"
    remark: Optional[str] = None
    lineno: int = _lineno()


@dataclass
class AccessList:
    name: str                                    # "101" or "OUTSIDE-IN"
    kind: str                                    # standard / extended
    numbered: bool = True                        # access-list N ... form
    entries: list[AclEntry] = field(default_factory=list)
    lineno: int = _lineno()


# --------------------------------------------------------------------------
# NAT

@dataclass
class NatPool:
    name: str
    start: IPv4Address
    end: IPv4Address
    prefix_length: int                           # from netmask or prefix-length
    netmask_form: bool = True                    # rendered as "netmask M"
    type: Optional[str] = None                   # match-host / rotary
    lineno: int = _lineno()


@dataclass
class NatStatic:
    """``ip nat {inside|outside} source static [tcp|udp] LOCAL [LP] GLOBAL [GP]``.

    For ``outside source static`` IOS calls the fields outside-global and
    outside-local; ``local`` here is always the address on the side named
    by ``side`` and ``global_`` the translated one.
    """

    side: str                                    # inside / outside
    local: IPv4Address
    global_: Optional[IPv4Address] = None        # None with global_interface
    protocol: Optional[str] = None               # None (address only), tcp, udp
    local_port: Optional[int] = None
    global_port: Optional[int] = None
    global_interface: Optional[str] = None       # "... interface IF PORT"
    extendable: bool = False
    network: Optional[int] = None                # "static network L G /N": prefix length
    add_route: bool = False                      # outside static: route to outside local
    lineno: int = _lineno()


@dataclass
class NatDynamic:
    """``ip nat inside source list ACL {pool NAME | interface IF} [overload]``
    and ``ip nat outside source list ACL pool NAME [add-route]`` (side
    "outside": outside global addresses the ACL permits get an outside local
    address from the pool)."""

    acl: str
    pool: Optional[str] = None
    interface: Optional[str] = None
    overload: bool = False
    lineno: int = _lineno()
    side: str = "inside"
    add_route: bool = False                      # outside list: route to outside local


@dataclass
class NatTimeouts:
    """``ip nat translation ...`` timeouts in seconds (None = never)."""

    timeout: Optional[int] = 86400
    udp_timeout: Optional[int] = 300
    dns_timeout: Optional[int] = 60
    tcp_timeout: Optional[int] = 86400
    finrst_timeout: Optional[int] = 60
    icmp_timeout: Optional[int] = 60
    syn_timeout: Optional[int] = 60
    max_entries: Optional[int] = None
    # ip nat translation max-entries {all-host N | host ADDR N | list ACL N}
    max_entries_all_host: Optional[int] = None
    max_entries_host: dict = field(default_factory=dict)      # IPv4Address -> N
    max_entries_list: list = field(default_factory=list)      # [(acl, N, lineno)] in order


@dataclass
class NatService:
    """``ip nat service list ACL ftp tcp port N``."""

    acl: str
    protocol: str                                # ftp
    port: int
    lineno: int = _lineno()


@dataclass
class NatConfig:
    pools: dict[str, NatPool] = field(default_factory=dict)
    statics: list[NatStatic] = field(default_factory=list)
    dynamics: list[NatDynamic] = field(default_factory=list)
    timeouts: NatTimeouts = field(default_factory=NatTimeouts)
    services: list[NatService] = field(default_factory=list)


# --------------------------------------------------------------------------
# Routing

@dataclass
class Route:
    """``ip route PREFIX MASK {NEXTHOP | INTERFACE [NEXTHOP]} [DISTANCE]
    [name NAME] [tag N] [permanent]``.  A route to ``Null0`` discards."""

    prefix: IPv4Network
    next_hop: Optional[IPv4Address] = None
    interface: Optional[str] = None
    distance: int = 1
    name: Optional[str] = None
    tag: Optional[int] = None
    permanent: bool = False
    lineno: int = _lineno()


# --------------------------------------------------------------------------
# Logging

#: IOS severities, index = level.
SEVERITIES = ("emergencies", "alerts", "critical", "errors", "warnings",
              "notifications", "informational", "debugging")


@dataclass
class LogHost:
    """``logging host A.B.C.D [transport udp|tls [port N]]``."""

    address: IPv4Address
    transport: str = "udp"                       # udp / tls
    port: Optional[int] = None                   # default 514 / 6514
    lineno: int = _lineno()


@dataclass
class LoggingConfig:
    buffered: Optional[int] = None               # logging buffered [SIZE]; None = off
    buffered_level: int = 7                      # logging buffered [SIZE] LEVEL
    console_level: int = 7                       # logging console LEVEL
    trap_level: int = 6                          # logging trap LEVEL (informational)
    hosts: list[LogHost] = field(default_factory=list)
    tls_ca: Optional[str] = None                 # cbac logging tls-ca FILE
    rfc5424: bool = False                        # cbac logging format rfc5424
    file: Optional[str] = None                   # logging file PATH [MAX [MIN]] [LEVEL]
    file_max: int = 4096000
    file_level: int = 7


# --------------------------------------------------------------------------
# Console

@dataclass
class VtyConfig:
    """``line vty 0 4`` and its sub-commands."""

    first: int = 0
    last: int = 4
    access_class: Optional[str] = None           # access-class ACL in
    transport_input: str = "ssh"                 # ssh / none / all / telnet
    login_local: bool = True
    exec_timeout: Optional[tuple[int, int]] = None   # minutes, seconds
    extra: list[Verbatim] = field(default_factory=list)  # password ..., kept verbatim
    login_authentication: Optional[str] = None   # login authentication LIST (AAA method list)
    lineno: int = _lineno()
    lines: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass
class SshConfig:
    port: int = 2222                             # ip ssh port N (cbac default)
    authorized_keys: Optional[str] = None        # cbac ssh authorized-keys FILE


# --------------------------------------------------------------------------
# cbac extensions (all start with the keyword "cbac")

@dataclass
class SmtpOptions:
    """``cbac smtp starttls {allow|strip}``, ``cbac smtp bare-lf {reject|allow}``."""

    starttls: str = "allow"
    bare_lf: str = "reject"


@dataclass
class PortBinding:
    """``cbac port IOSNAME DEVICE``: bind a configured interface to a Linux device."""

    interface: str
    device: str
    lineno: int = _lineno()


# --------------------------------------------------------------------------
# Banners

@dataclass
class Banner:
    """``banner [motd|login|exec|...] DELIM text DELIM``: the text is kept
    exactly; it never ends or opens a block, whatever it contains."""

    kind: str                                    # motd, login, exec, incoming, ...
    text: str                                    # lines joined with "\n"
    delimiter: str = field(default="^C", compare=False)   # as written; IOS shows ^C
    lineno: int = _lineno()


# --------------------------------------------------------------------------
# Zone-based policy firewall (parsed by cbac.config.zbf)

#: ``match protocol P`` keywords of ``class-map type inspect``: the
#: protocols cbac inspects, the generic ones, and (last four) protocols IOS
#: inspects at layer 4 only, on their well-known port, which cbac does with
#: its generic tcp/udp inspection (``esmtp`` is written ``smtp extended``).
ZBF_PROTOCOLS = ("tcp", "udp", "icmp", "ftp", "http", "smtp", "esmtp",
                 "dns", "https", "ssh", "telnet", "sip", "rtsp", "pptp")


@dataclass
class Zone:
    """``zone security NAME`` (+ ``description``)."""

    name: str
    description: Optional[str] = None
    lineno: int = _lineno()


@dataclass
class ZonePair:
    """``zone-pair security NAME source A destination B`` with its
    ``service-policy type inspect P``."""

    name: str
    source: str
    destination: str
    description: Optional[str] = None
    service_policy: Optional[str] = None
    policy_lineno: int = _lineno()
    lineno: int = _lineno()


@dataclass
class ClassMatch:
    """One ``match`` line of a class-map.

    ``kind``: ``protocol`` (value: a :data:`ZBF_PROTOCOLS` keyword),
    ``access-group`` (value: ACL number or name), ``class-map`` (value: a
    class-map name); for ``type inspect smtp`` class-maps ``data-length``
    and ``cmd-line-length`` (value: the ``gt`` number as a string) and
    ``cmd-verb`` (value: the verb, upper case)."""

    kind: str
    value: str
    negate: bool = False                 # match not ... (match-all only)
    lineno: int = _lineno()


@dataclass
class ClassMapInspect:
    """``class-map type inspect [smtp] match-any|match-all NAME``."""

    name: str
    match_any: bool = False              # IOS default: match-all
    app: Optional[str] = None            # None (layer 4) or "smtp"
    matches: list[ClassMatch] = field(default_factory=list)
    lineno: int = _lineno()


@dataclass
class PolicyClass:
    """``class type inspect NAME`` (or ``class class-default``) in a
    policy-map, with its action.

    ``action``: ``inspect``, ``pass``, ``drop`` (layer 4); ``reset`` or
    ``log``/``allow`` (layer 7 SMTP).  ``log``: ``drop log`` / ``pass log``
    (layer 4) or the ``log`` action of an SMTP policy."""

    name: str                            # class-map name or "class-default"
    action: Optional[str] = None
    parameter_map: Optional[str] = None  # inspect PARAMETER-MAP
    log: bool = False
    service_policy: Optional[str] = None  # service-policy smtp P (layer 7)
    lineno: int = _lineno()


@dataclass
class PolicyMapInspect:
    """``policy-map type inspect [smtp] NAME``."""

    name: str
    app: Optional[str] = None            # None (layer 4) or "smtp"
    classes: list[PolicyClass] = field(default_factory=list)
    lineno: int = _lineno()

    def default_class(self) -> PolicyClass:
        for c in self.classes:
            if c.name == "class-default":
                return c
        return PolicyClass("class-default", "drop")


#: parameter-map type inspect settings: attribute -> (keywords as written)
PARAMETER_FIELDS = (
    ("max_incomplete_low", "max-incomplete low"),
    ("max_incomplete_high", "max-incomplete high"),
    ("one_minute_low", "one-minute low"),
    ("one_minute_high", "one-minute high"),
    ("tcp_synwait_time", "tcp synwait-time"),
    ("tcp_finwait_time", "tcp finwait-time"),
    ("tcp_idle_time", "tcp idle-time"),
    ("udp_idle_time", "udp idle-time"),
    ("icmp_idle_time", "icmp idle-time"),
    ("dns_timeout", "dns-timeout"),
    ("sessions_maximum", "sessions maximum"),
)


@dataclass
class ParameterMapInspect:
    """``parameter-map type inspect NAME|global|default``.  Every field is
    None when not configured (the effective value then comes from the
    global parameter-map or the IOS default)."""

    name: str
    max_incomplete_low: Optional[int] = None
    max_incomplete_high: Optional[int] = None
    one_minute_low: Optional[int] = None
    one_minute_high: Optional[int] = None
    tcp_max_incomplete_host: Optional[int] = None
    tcp_block_time: Optional[int] = None
    tcp_synwait_time: Optional[int] = None
    tcp_finwait_time: Optional[int] = None
    tcp_idle_time: Optional[int] = None
    udp_idle_time: Optional[int] = None
    icmp_idle_time: Optional[int] = None
    dns_timeout: Optional[int] = None
    audit_trail: Optional[bool] = None
    alert: Optional[bool] = None
    sessions_maximum: Optional[int] = None
    lineno: int = _lineno()


@dataclass
class ZbfConfig:
    zones: dict[str, Zone] = field(default_factory=dict)
    zone_pairs: dict[str, ZonePair] = field(default_factory=dict)
    class_maps: dict[str, ClassMapInspect] = field(default_factory=dict)
    policy_maps: dict[str, PolicyMapInspect] = field(default_factory=dict)
    parameter_maps: dict[str, ParameterMapInspect] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.zones or self.zone_pairs or self.class_maps
                    or self.policy_maps or self.parameter_maps)


# --------------------------------------------------------------------------
# Active/standby pair (cbac extension, docs/continuity.md)

#: the TCP port of the state sync link when none is configured
REDUNDANCY_PORT_DEFAULT = 3780


@dataclass
class Redundancy:
    """``cbac redundancy peer A.B.C.D interface IFNAME key KEY [port N]``."""
    peer: IPv4Address
    interface: Optional[str] = None
    key: Optional[str] = None
    port: int = REDUNDANCY_PORT_DEFAULT
    lineno: int = 0


# --------------------------------------------------------------------------
# The whole router

@dataclass
class RouterConfig:
    hostname: str = "Router"
    version: Optional[str] = None                # "version 12.3"
    password_encryption: bool = False            # service password-encryption
    timestamps_log: Optional[str] = None         # service timestamps log ...: "datetime msec"
    timestamps_debug: Optional[str] = None
    enable_secret: Optional[Secret] = None
    enable_password: Optional[Secret] = None
    users: dict[str, User] = field(default_factory=dict)
    inspect: InspectGlobals = field(default_factory=InspectGlobals)
    inspect_rules: dict[str, InspectRule] = field(default_factory=dict)
    interfaces: dict[str, Interface] = field(default_factory=dict)
    acls: dict[str, AccessList] = field(default_factory=dict)
    nat: NatConfig = field(default_factory=NatConfig)
    routes: list[Route] = field(default_factory=list)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ssh: SshConfig = field(default_factory=SshConfig)
    vty: list[VtyConfig] = field(default_factory=list)
    session_limit: int = 25000                   # cbac session-limit N (SESSION_LIMIT_DEFAULT)
    session_limit_host: int = 4096               # cbac session-limit host N
    session_limit_dest: int = 8192               # cbac session-limit destination N
    fastpath_offload: bool = True                # [no] cbac fastpath offload
    source_route: bool = True                    # [no] ip source-route (IOS default: on)
    ip_options: Optional[str] = None             # ip options drop|ignore (None: IOS default)
    redundancy: Optional["Redundancy"] = None    # cbac redundancy peer ... (continuity)
    smtp: SmtpOptions = field(default_factory=SmtpOptions)
    ports: dict[str, PortBinding] = field(default_factory=dict)
    zbf: ZbfConfig = field(default_factory=ZbfConfig)
    metrics_listen: list[str] = field(default_factory=list)   # cbac metrics listen ENDPOINT
    login_block: Optional[tuple] = None          # login block-for S attempts N within T: (S, N, T)
    login_quiet_acl: Optional[str] = None        # login quiet-mode access-class ACL
    extra: list[Verbatim] = field(default_factory=list)   # accepted, not acted on
    banners: dict[str, "Banner"] = field(default_factory=dict)   # kind -> banner
