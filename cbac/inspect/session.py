"""The CBAC session table: keys, timers, thresholds, audit trail.

See ``docs/inspection.md`` for the behaviour; the router's contract is in
``docs/nat-order.md`` and ``cbac/dataplane/router.py``.  Summary:

* One :class:`Session` per flow.  Each session registers one key per side,
  as packets *arrive* at the firewall on that side (pre-NAT form of that
  side): ``src(4) + dst(4) + sport(2) + dport(2)`` for TCP/UDP (the bytes
  ``frame[l3+12:l3+20] + frame[l4:l4+4]``, i.e. ``frame[26:38]`` for an
  untagged IHL=5 frame) in :attr:`SessionTable.tcp` / :attr:`SessionTable.udp`,
  and ``src + dst + identifier`` for ICMP queries in
  :attr:`SessionTable.icmp`.  A dict value is the session itself; the
  direction is SERVER when the key is the session's ``ks``, else CLIENT
  (:func:`direction_of`), so one dict lookup finds both from either side.
* Timers come from the injected clock.  Per packet the engine only stores
  ``now`` in ``session.last``; a lazy timing wheel (one-second slots)
  checks the real deadline when a slot comes due and re-files sessions
  that were heard from since.
* Thresholds: ``max-incomplete``/``one-minute`` (aggressive mode),
  ``tcp max-incomplete host N block-time M`` and the table cap
  ``cbac session-limit``.
"""

from __future__ import annotations

from struct import Struct

from ipaddress import IPv4Address

from cbac.inspect.api import CLIENT, SERVER, InspectContext
from cbac.inspect.icmp import NAMES as ICMP_NAMES
from cbac.inspect.icmp import REPLY_OF as _ICMP_REPLY_OF
from cbac.inspect.icmp import error_lookup, icmp_process
from cbac.inspect.stream import Stream
from cbac.inspect import normalise
from cbac.inspect.tcp import (CLOSED, CLOSING, ESTABLISHED, RST_CHALLENGE, RST_EXACT,
                              SYN_RECV, SYN_SENT, TRACK_SLOTS, TrackFields, init_client, new_bytes,
                              SlotView, parse_options, track)
from cbac.config.model import PORT_NAMES
from cbac.inspect.dns import DROP as DNS_DROP, DnsGuard
from cbac.inspect import tftp
from cbac.inspect.api import Expectation
from cbac.inspect.udp import udp_guard_start, udp_process
from cbac.inspect.resets import clone_segment, session_rsts
from cbac.inspect.thresholds import Thresholds
from cbac.inspect.uninspected import UninspectedConnections
from cbac.log import ios
from cbac.timerwheel import TimerWheel
from cbac.packet.rewrite import Rewrite
from cbac.packet.view import ACK, FIN, RST, SYN, ip_str

SIS_OPENING = "SIS_OPENING"
SIS_OPEN = "SIS_OPEN"
SIS_CLOSING = "SIS_CLOSING"

#: application inspectors by responder port, in order of preference
APP_BY_PORT = {25: ("esmtp", "smtp"), 21: ("ftp",), 80: ("http",), 110: ("pop3",), 143: ("imap",),
               5060: ("sip",)}
#: debug category of an application protocol
DEBUG_CATEGORY = {"esmtp": "smtp", "smtp": "smtp", "ftp": "ftp", "http": "http"}

_debug_enabled = ios.debugging.enabled
_EMPTY = ()

# seq, ack, data offset, flags, window of a TCP header at l4 + 4
_FAST_TCP = Struct("!IIBBH")
_NO_FAST = SYN | FIN | RST | 0x20        # SYN FIN RST URG take the slow path
_SARF = SYN | ACK | RST | FIN             # of these, a SYN opens a connection


class _FastSegment:
    """The fields :func:`track` reads, filled from the frame on the fast
    path (one instance per table, reused: no per-packet object)."""

    __slots__ = ("tcp_seq", "tcp_ack", "tcp_flags", "tcp_win", "payload_len")
_NO_REWRITE = (None, None)
#: ``session.route`` of a session with no route cached: the router's
#: route cache is a ``(hop of direction 0, hop of direction 1)`` tuple,
#: replaced (never changed in place) when a hop is cached, and shared by
#: the sessions with the same hops (Router._route_out); a list there
#: (continuity's NoRouteCache, a GRE call's) is assigned item by item
NO_ROUTE = (None, None)


class AfterCreated(int):
    """``session.fixed`` of a new TCP session whose synwait was not
    scaled (adaptive timeouts off): the deadline is ``created + self``
    seconds, the same float ``now + w * 1.0`` was (SessionTable._deadline).
    One shared object per synwait value instead of a float per session;
    every other ``fixed`` is an absolute time."""

    __slots__ = ()


_AFTER_CREATED = {}                      # synwait seconds -> its AfterCreated


def _k(src: int, dst: int, a: int, b: int) -> bytes:
    return (src.to_bytes(4, "big") + dst.to_bytes(4, "big") + a.to_bytes(2, "big")
            + b.to_bytes(2, "big"))


def _ki(src: int, dst: int, ident: int) -> bytes:
    return src.to_bytes(4, "big") + dst.to_bytes(4, "big") + ident.to_bytes(2, "big")


def direction_of(s, key) -> int:
    """The direction of a packet whose table key is ``key`` in session
    ``s``'s entry (the key dicts' values are the sessions themselves):
    SERVER (1) when it is the server side's key ``ks``, else CLIENT (0).
    (A session whose two keys are equal, ``kc == ks``, is found as
    SERVER, as when the dict values were ``(session, direction)`` pairs
    and the server side's was stored last.)"""
    return 1 if key == s.ks else 0


def hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return "%02d:%02d:%02d" % (s // 3600, (s // 60) % 60, s % 60)


class Stats:
    """Counters for ``show ip inspect statistics``."""

    def __init__(self):
        self.drops = {}
        self.normalised = {}             # the normaliser's rewrites (normalise.py)
        self.created = {}
        self.deleted = {}
        self.peak = 0
        self.aggressive_entered = 0
        self.hosts_blocked = 0

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def clear(self) -> None:
        self.__init__()


#: a session's counter slots by direction (``session.bytes``/``pkts``)
_BYTES = ("b0", "b1")
_PKTS = ("p0", "p1")


class Profile:
    """What the sessions of one inspection rule, protocol and interface
    pair have in common, shared by them (read-only: assigning one of these
    attributes on a session gives that session its own copy)."""

    __slots__ = ("protocol", "rule_name", "rule", "alert", "audit", "in_if", "out_if")

    def __init__(self, protocol, rule_name, rule, alert, audit, in_if, out_if):
        self.protocol = protocol
        self.rule_name = rule_name
        self.rule = rule
        self.alert = alert
        self.audit = audit
        self.in_if = in_if
        self.out_if = out_if


def _shared(name):
    def get(self):
        return getattr(self.prof, name)

    def set_(self, value):
        p = self.prof
        if getattr(p, name) is not value:
            q = Profile(p.protocol, p.rule_name, p.rule, p.alert, p.audit, p.in_if, p.out_if)
            setattr(q, name, value)
            self.prof = q
    return property(get, set_, doc="(the session's Profile)")


_KEY = Struct("!IIHH")       # TCP/UDP key: src, dst, sport, dport
_IKEY = Struct("!IIH")       # ICMP query key: src, dst, identifier


class Session:
    """One inspected flow.  ``c_in``/``c_out`` are the client->server
    packet's 4-tuple as it arrives and as it leaves the firewall;
    ``s_in``/``s_out`` the same for server->client packets.  For ICMP the
    tuple is (src, dst, identifier, 0).  ``initiator``/``responder`` are
    ``(addr, port)`` as the initiator sent them (shown in ``show``).

    Memory (issue 21): a session stores its two table keys (``kc``: the
    client side's, ``ks``: the server side's, as packets arrive there) and
    derives the four tuples, ``keys``, ``host`` and ``hexid`` from them
    when asked; its counters are four slots (``bytes``/``pkts`` are views
    of them); the table's key dicts hold the session itself (no
    ``(session, direction)`` pair); its route cache is a tuple shared by
    the sessions with the same hops (:data:`NO_ROUTE` when empty); what
    the sessions of a rule share is one :class:`Profile`; a TCP session is
    its own tracker (:class:`TcpSession`) and has no ``dns``/``icmp_req``
    slots (:class:`DatagramSession`); a new TCP session's synwait deadline
    is a shared :class:`AfterCreated`, not a float of its own.
    Measured (``python -m bench sessions``, 100,000 half-open TCP
    sessions, tracemalloc, bytes each): the session with its tracker 368,
    the tcp dict's slots about 105, the half-open dicts 105, the two keys
    90, the sessions dict 52, the timer-wheel entry 41, its id 32, and the
    sequence numbers and window it keeps of its SYN; 887 in all (RSS
    growth 954), 980 established.""" 

    __slots__ = (
        "sid", "proto", "prof",
        "idle", "sis", "created", "last", "fixed", "slot", "b0", "b1", "p0", "p1",
        "kc", "ks", "rw", "route", "translation", "stream", "app_state", "half_open",
        "parent", "pinholes", "dead", "inspector",
    )

    #: a UDP session under DNS inspection (slot of DatagramSession)
    dns = False
    #: the request type of an ICMP session (slot of DatagramSession)
    icmp_req = 0

    protocol = _shared("protocol")
    rule_name = _shared("rule_name")
    rule = _shared("rule")
    alert = _shared("alert")
    audit = _shared("audit")
    in_if = _shared("in_if")
    out_if = _shared("out_if")

    def __init__(self, sid, proto, prof, now, kc, ks, rw, translation, parent):
        """A new session in its first state (SIS_OPENING, half-open; the
        table sets ICMP's and the protocol's own fields after this).
        ``prof``: its :class:`Profile` (protocol, rule, alert, audit-trail,
        interfaces)."""
        self.sid = sid
        self.proto = proto
        self.prof = prof
        self.created = self.last = now
        self.b0 = self.b1 = self.p1 = 0
        self.p0 = 1
        self.route = NO_ROUTE
        self.translation = translation
        self.kc = kc
        self.ks = ks
        self.rw = rw
        self.stream = None
        self.inspector = None
        self.app_state = ""
        self.parent = parent
        self.pinholes = None
        self.dead = False
        self.slot = None
        self.fixed = None
        self.idle = 0
        self.sis = SIS_OPENING
        self.half_open = True

    # -- derived from the keys -------------------------------------------

    @property
    def keys(self):
        """(client side's key, server side's key) in the table."""
        return (self.kc, self.ks)

    def _as_sent(self, key):
        """A table key as the 4-tuple (src, dst, sport, dport) it stands
        for (ICMP: the identifier and 0 as the ports)."""
        if self.proto == 1:
            a, b, i = _IKEY.unpack(key)
            return (a, b, i, 0)
        return _KEY.unpack(key)

    def _reversed(self, key):
        """The 4-tuple of a key's other direction."""
        if self.proto == 1:
            a, b, i = _IKEY.unpack(key)
            return (b, a, i, 0)
        a, b, x, y = _KEY.unpack(key)
        return (b, a, y, x)

    @property
    def c_in(self):
        return self._as_sent(self.kc)

    @property
    def c_out(self):
        return self._reversed(self.ks)

    @property
    def s_in(self):
        return self._as_sent(self.ks)

    @property
    def s_out(self):
        return self._reversed(self.kc)

    @property
    def host(self):
        """The responder's address as the initiator sent it (c_in[1])."""
        return int.from_bytes(self.kc[4:8], "big")

    @property
    def bytes(self):
        """[initiator's, responder's] payload bytes (a view: see tcp.SlotView)."""
        return SlotView(self, _BYTES)

    @bytes.setter
    def bytes(self, v):
        self.b0, self.b1 = v

    @property
    def pkts(self):
        """[initiator's, responder's] packets (a view: see tcp.SlotView)."""
        return SlotView(self, _PKTS)

    @pkts.setter
    def pkts(self, v):
        self.p0, self.p1 = v

    @property
    def initiator(self):
        """(address, port) of the initiator as it sent the first packet
        (ICMP: the request type as the port)."""
        kc = self.kc
        return (int.from_bytes(kc[0:4], "big"),
                self.icmp_req if self.proto == 1 else (kc[8] << 8) | kc[9])

    @property
    def responder(self):
        kc = self.kc
        return (int.from_bytes(kc[4:8], "big"), 0 if self.proto == 1 else (kc[10] << 8) | kc[11])

    @property
    def hexid(self) -> str:
        """The session id shown by ``show ip inspect sessions`` (IOS shows a
        memory address; cbac a stable pseudo-address derived from the
        creation number)."""
        return "%X" % ((0x62000000 + self.sid * 0x1C8) & 0xFFFFFFFF)

    def __repr__(self):
        return "<Session %s %s %s>" % (self.hexid, self.protocol, self.flow_text())

    def flow_text(self) -> str:
        i = self.initiator
        r = self.responder
        return "(%s:%d)=>(%s:%d)" % (ip_str(i[0]), i[1], ip_str(r[0]), r[1])

    #: the TCP tracker (None: not TCP; a TcpSession is its own)
    tcp = None


class DatagramSession(Session):
    """A UDP or ICMP session: a :class:`Session` with the slots only they
    use (``dns``, ``icmp_req``; a TCP session reads them as the class's
    False and 0, and has no room to set them)."""

    __slots__ = ("dns", "icmp_req")

    def __init__(self, sid, proto, prof, now, kc, ks, rw, translation, parent):
        Session.__init__(self, sid, proto, prof, now, kc, ks, rw, translation, parent)
        self.dns = False
        self.icmp_req = 0


class TcpSession(Session, TrackFields):
    """A TCP session: the session and its TCP tracker in one object
    (``s.tcp is s``; the tracker's slots and accessors are
    :class:`cbac.inspect.tcp.TrackFields`', so ``s.tcp.state`` is the
    tracker state, SYN_SENT ... CLOSED, and ``s.sis`` the IOS state)."""

    __slots__ = TRACK_SLOTS

    def __init__(self, sid, proto, prof, now, kc, ks, rw, translation, parent):
        # Session.__init__ and TrackFields.init_track in one call (set-up cost)
        self.sid = sid
        self.proto = proto
        self.prof = prof
        self.created = self.last = now
        self.b0 = self.b1 = self.p1 = 0
        self.p0 = 1
        self.route = NO_ROUTE
        self.translation = translation
        self.kc = kc
        self.ks = ks
        self.rw = rw
        self.stream = self.inspector = self.pinholes = self.slot = self.fixed = None
        self.app_state = ""
        self.parent = parent
        self.dead = False
        self.idle = 0
        self.sis = SIS_OPENING
        self.half_open = True
        self.state = SYN_SENT
        self.isn0 = self.isn1 = self.end0 = self.end1 = self.maxend0 = self.maxend1 = 0
        self.maxwin0 = self.maxwin1 = self.scale0 = self.scale1 = self.rcvd0 = self.rcvd1 = 0
        self.fin = self.chal = self.chald = 0
        self.mss = 536

    @property
    def tcp(self):
        return self


class Pinhole:
    """An expected connection (child of an inspected session)."""

    __slots__ = ("proto", "src", "sport", "dst", "dport", "deadline", "parent", "label",
                 "used", "rule", "key", "group")

    def matches(self, pkt) -> bool:
        return ((self.src is None or self.src == pkt.src)
                and (self.sport is None or self.sport == pkt.sport))


class SessionTable:
    """The CBAC session engine (see the module docstring and pipeline.md).

    ``clock`` is an ``IReactorTime``; ``router_model`` a
    :class:`cbac.config.model.RouterConfig`; ``app_factories`` maps ``smtp``,
    ``esmtp``, ``ftp``, ``http`` to ``f(ctx) -> IStreamInspector``.

    ``send(ip_packet)`` sends an IPv4 packet the table made (RSTs, the
    stream engine's extra segments): the router's
    :meth:`~cbac.dataplane.router.Router.send_generated`, wired by
    ``cbac/app.py``.  Without one, such packets are counted
    (``no-sender``) and dropped.

    Set by the appliance: ``nat`` (the NAT engine: used for
    ``nat.reserve`` in the inspectors' ``nat_map`` and ``nat.touch``).
    """

    #: timer slot granularity (seconds)
    TICK = 1.0
    #: sessions expired per timer run at most (the rest follow BACKLOG_TICK later)
    EXPIRE_BUDGET = 10000
    BACKLOG_TICK = 0.05

    def __init__(self, clock, router_model, app_factories=None, send=None):
        self.clock = clock
        self.model = router_model
        self.factories = dict(app_factories or {})
        self.tcp = {}
        self.udp = {}
        self.icmp = {}
        self._by_proto = {6: self.tcp, 17: self.udp, 1: self.icmp}
        self.sessions = {}               # sid -> Session, creation order
        self.stats = Stats()
        self.send = send if send is not None else self._no_sender
        self.nat = None
        self.offload = None              # cbac.dataplane.flowoffload.FlowOffloader
        self.gre = None                  # cbac.inspect.gre.GreTable (PPTP calls), made on first use
        self.reopened = False            # process() refused a SYN reopening a closed 4-tuple
        self._fp = _FastSegment()
        self.debug_enabled = _debug_enabled
        self._seq = 0
        self.thresholds = Thresholds(self)   # thresholds.py
        self._wheel = TimerWheel(clock, self._tick)   # cbac/timerwheel.py
        self._pinholes = {}              # (proto, dst, dport) -> [Pinhole]
        self._npinholes = 0
        self._last_full_log = None
        self._log_last = {}              # log_due(): line -> when last logged
        self._pcache = {}
        self._profiles = {}              # build_session: shared session Profiles
        self._backlog = False
        self._rule_live = {}             # ZBF class rule name -> live sessions
        self._rule_full_log = {}
        # TCP connections the ACLs passed without inspection (normalise.py)
        self.uninspected = UninspectedConnections(lambda: self.model.session_limit,
                                                  lambda: self.model.inspect.tcp_idle_time)
        # continuity (cbac/continuity): the observer of state changes, and
        # restored sessions whose first packets are handled specially
        self.observer = None
        self.resuming = {}
        # resuming's per-packet hook (cbac.continuity.resume.before, set by
        # its register(): inspect/ does not import continuity/)
        self.resume_before = None

    # ------------------------------------------------------------------
    # configuration

    def _no_sender(self, ip_packet) -> None:
        self.stats.drop("no-sender")

    def reconfigure(self, router_model) -> None:
        """Use a new configuration (existing sessions keep their settings;
        thresholds, timers and the cap of the new one apply from now on)."""
        self.model = router_model
        self._pcache.clear()
        self._profiles.clear()

    reload = reconfigure

    def _protocol_for(self, rule_name, pkt):
        """(protocol keyword, InspectProtocol) the rule inspects this packet
        with, or (None, None).  Cached per (rule, IP protocol, port/type);
        a cached answer is used while the rule object and its number of
        protocol lines are unchanged."""
        proto = pkt.proto
        ck = (rule_name, proto, pkt.dport if proto != 1 else pkt.icmp_type)
        rule = self.model.inspect_rules.get(rule_name) if rule_name is not None else None
        hit = self._pcache.get(ck)
        if hit is not None and hit[1] is rule and (rule is None or hit[2] == len(rule.protocols)):
            return hit[0]
        res = self.protocol_for_rule(rule_name, pkt)
        if len(self._pcache) > 20000:
            self._pcache.clear()
        self._pcache[ck] = (res, rule, len(rule.protocols) if rule is not None else 0)
        return res

    def protocol_for_rule(self, rule_name, pkt):
        """(protocol keyword, InspectProtocol) the inspection rule
        ``rule_name`` inspects this packet with, or (None, None); computed
        afresh, the cache neither read nor filled (packet-tracer)."""
        rules = self.model.inspect_rules
        rule = rules.get(rule_name) if rule_name is not None else None
        if rule is None:
            return None, None
        proto = pkt.proto
        gname = PORT_NAMES.get((proto, pkt.dport))
        if gname is not None:
            # https, ssh, ntp, dns ...: on the PAM port only
            rp = rule.get(gname)
            if rp is not None:
                return gname, rp
        if proto == 6:
            for name in APP_BY_PORT.get(pkt.dport, ()):
                rp = rule.get(name)
                if rp is not None and name in self.factories:
                    return name, rp
            rp = rule.get("tcp")
            return ("tcp", rp) if rp is not None else (None, None)
        if proto == 17:
            rp = rule.get("udp")
            return ("udp", rp) if rp is not None else (None, None)
        if proto == 1 and pkt.icmp_type in (8, 13):
            rp = rule.get("icmp")
            return ("icmp", rp) if rp is not None else (None, None)
        return None, None

    def rule_matches(self, rule_name, pkt) -> bool:
        """True when the inspection rule ``rule_name`` inspects this packet's
        protocol (then ``create`` returning None means: drop).  ICMP
        matches only for echo and timestamp requests."""
        return self._protocol_for(rule_name, pkt)[0] is not None

    # ------------------------------------------------------------------
    # lookups

    def lookup(self, pkt):
        """``(session, direction)`` for a packet of an existing session, or None."""
        frame = pkt.frame
        l3 = pkt.l3
        proto = pkt.proto
        if pkt.frag:
            return None
        if proto == 6:
            l4 = pkt.l4
            k = bytes(frame[l3 + 12:l3 + 20] + frame[l4:l4 + 4])
            s = self.tcp.get(k)
        elif proto == 17:
            l4 = pkt.l4
            k = bytes(frame[l3 + 12:l3 + 20] + frame[l4:l4 + 4])
            s = self.udp.get(k)
        elif proto == 1 and pkt.inner is None and pkt.icmp_type in (0, 8, 13, 14):
            l4 = pkt.l4
            k = bytes(frame[l3 + 12:l3 + 20] + frame[l4 + 4:l4 + 6])
            s = self.icmp.get(k)
        elif proto == 47 and self.gre is not None:
            return self.gre.lookup(pkt)          # a PPTP call's GRE (cbac/inspect/gre.py)
        else:
            return None
        if s is None:
            return None
        return (s, direction_of(s, k))

    def lookup_icmp_error(self, pkt):
        """For an ICMP error: ``(session, direction)`` when the quoted header
        belongs to a session (the packet has been rewritten for NAT and may
        be forwarded as is; do not call :meth:`process`), else None."""
        if pkt.proto != 1 or pkt.inner is None:
            return None
        return error_lookup(self, pkt)

    def expected(self, pkt):
        """A pinhole token admitting this packet (pass it to ``create``), or None."""
        if not self._npinholes:
            return None
        lst = self._pinholes.get((pkt.proto, pkt.dst, pkt.dport))
        if not lst:
            return None
        now = self.clock.seconds()
        for ph in lst:
            if not ph.used and ph.deadline > now and ph.matches(pkt):
                p = ph.parent
                if p.dead or (p.tcp is not None and p.tcp.state == CLOSED):
                    continue             # only a live control session opens a channel
                return ph
        return None

    # ------------------------------------------------------------------
    # creation

    def arrival_form(self, translation, c_out, proto):
        """The 4-tuple ``c_out`` (as it leaves, after ``translation``) as
        it arrived, before NAT."""
        if translation is None:
            return c_out
        rw = getattr(translation, "forward", None)
        if rw is not None and tuple(rw.new) == c_out:
            return tuple(rw.old)
        rw = getattr(translation, "reverse", None)
        if rw is not None and tuple(rw.new) == c_out:
            return tuple(rw.old)
        return c_out

    @staticmethod
    def _shared_rewrites(translation, c_in, c_out, s_in, s_out):
        """The translation's own (forward, reverse) rewrites when they are
        exactly the session's (the usual case): no second pair per
        connection, and for a session in the translation's direction its
        very pair (``translation.rw``).  Rewrites are read-only."""
        if translation is None:
            return None
        pair = getattr(translation, "rw", None)
        if pair is not None and pair.__class__ is tuple:
            f, r = pair                  # (translation.forward, translation.reverse)
        else:
            f, r = translation.forward, translation.reverse
        if f is None or r is None:
            return None
        if f.old == c_in and f.new == c_out and r.old == s_in and r.new == s_out:
            return pair or (f, r)
        if r.old == c_in and r.new == c_out and f.old == s_in and f.new == s_out:
            return (r, f)
        return None

    @staticmethod
    def _rev(t, proto):
        if proto == 1:
            return (t[1], t[0], t[2], 0)
        return (t[1], t[0], t[3], t[2])

    @staticmethod
    def keys_of(proto, c_in, c_out):
        """(kc, ks): the table keys of a session whose client->server
        packets arrive as ``c_in`` and leave as ``c_out``."""
        if proto == 1:
            return (_IKEY.pack(c_in[0], c_in[1], c_in[2]),
                    _IKEY.pack(c_out[1], c_out[0], c_out[2]))
        return (_KEY.pack(c_in[0], c_in[1], c_in[2], c_in[3]),
                _KEY.pack(c_out[1], c_out[0], c_out[3], c_out[2]))

    def build_session(self, sid, proto, protocol, rule_name, rp, now, c_in, c_out, keys,
                      translation, host, parent, in_if, out_if) -> "Session":
        """A :class:`Session` with its NAT rewrites (shared with its
        translation where possible) and the rule's alert/audit-trail
        settings: :meth:`create`'s and continuity's restore's one way to
        make one (nothing is registered).  ``host`` is c_in[1] (kept for
        the callers; the session derives it from its key)."""
        g = self.model.inspect
        alert = rp.alert if rp is not None else None
        audit = rp.audit_trail if rp is not None else None
        alert = (not g.alert_off) if alert is None else alert
        audit = g.audit_trail if audit is None else audit
        pk = (protocol, rule_name, id(rp), alert, audit, in_if, out_if)
        prof = self._profiles.get(pk)
        if prof is None or prof.rule is not rp:
            if len(self._profiles) >= 4096:
                self._profiles.clear()
            prof = self._profiles[pk] = Profile(protocol, rule_name, rp, alert, audit,
                                                in_if, out_if)
        if c_in != c_out:
            # self._rev(c_out, proto), self._rev(c_in, proto)
            if proto == 1:
                s_in = (c_out[1], c_out[0], c_out[2], 0)
                s_out = (c_in[1], c_in[0], c_in[2], 0)
            else:
                s_in = (c_out[1], c_out[0], c_out[3], c_out[2])
                s_out = (c_in[1], c_in[0], c_in[3], c_in[2])
            rw = self._shared_rewrites(translation, c_in, c_out, s_in, s_out) or \
                (Rewrite(proto, c_in, c_out), Rewrite(proto, s_in, s_out))
        else:
            rw = _NO_REWRITE
        return (TcpSession if proto == 6 else DatagramSession)(sid, proto, prof, now, keys[0],
                                                               keys[1], rw, translation, parent)

    def create(self, pkt, in_if, out_if, rule_name, translation=None, pinhole=None):
        """Create a session for the first packet of a flow (the packet has
        already been translated by NAT).  Returns the Session, or None: no
        session (thresholds, blocking, table full, not a SYN, or the rule
        does not inspect this protocol; see :meth:`rule_matches`)."""
        now = self.clock.seconds()
        proto = pkt.proto
        stats = self.stats
        if pkt.frag:
            stats.drop("fragment")
            return None
        parent = None
        if pinhole is not None:
            if pinhole.used or pinhole.deadline <= now or pinhole.parent.dead:
                stats.drop("pinhole-expired")
                return None
            parent = pinhole.parent
            protocol = pinhole.label or ("tcp" if proto == 6 else "udp")
            rp = pinhole.rule
        else:
            protocol, rp = self._protocol_for(rule_name, pkt)
            if protocol is None:
                stats.drop("no-inspect-protocol")
                return None
        if proto == 6:
            if pkt.tcp_flags & _SARF != SYN:
                stats.drop("tcp-no-syn")
                return None
            c_out = (pkt.src, pkt.dst, pkt.sport, pkt.dport)
        elif proto == 17:
            c_out = (pkt.src, pkt.dst, pkt.sport, pkt.dport)
            guard = tftp_req = None
            if protocol == "dns" and pinhole is None:
                guard = DnsGuard()       # the first datagram must be a query
            elif protocol == "tftp-data" and pinhole is not None:
                guard = tftp.DataGuard()
            elif protocol == "tftp" and pinhole is None:
                tftp_req = tftp.parse_request(
                    pkt.frame[pkt.payload:pkt.payload + pkt.payload_len])
                if tftp_req is None:
                    stats.drop("tftp-bad-request")
                    return None
            if guard is not None:
                verdict, why = guard.datagram(
                    CLIENT, pkt.frame[pkt.payload:pkt.payload + pkt.payload_len])
                if verdict == DNS_DROP:
                    stats.drop(why)
                    return None
        elif proto == 1:
            if pkt.icmp_type not in (8, 13):
                stats.drop("icmp-not-request")
                return None
            c_out = (pkt.src, pkt.dst, pkt.icmp_id, 0)
        else:
            return None
        g = self.model.inspect
        th = self.thresholds
        counts = proto != 1
        if counts:
            # the one-minute rate counts connection attempts, refused ones
            # too (Thresholds.rate_add, inline)
            sec = int(now)
            if sec != th.rate_sec:
                th.rate_advance(now)
            th.rate_buckets[sec % 60] += 1
            th.rate += 1
        c_in = c_out if translation is None else self.arrival_form(translation, c_out, proto)
        table = self._by_proto[proto]
        if proto == 1:
            kc, ks = self.keys_of(proto, c_in, c_out)
        else:
            kc = _KEY.pack(*c_in)
            ks = _KEY.pack(c_out[1], c_out[0], c_out[3], c_out[2])
        if kc in table or ks in table:
            stats.drop("key-collision")
            return None
        if proto == 6 and self.uninspected._keys:
            # inspected from now on: never again a remembered uninspected one
            self.uninspected.forget(*c_out)
        host = c_in[1]
        model = self.model
        # per-source limit (cbac session-limit host; pf max-src-states)
        src = c_in[0]
        if th.per_src.get(src, 0) >= model.session_limit_host:
            stats.drop("source-limit")
            th.log_source_limit(src, now, model.session_limit_host)
            return None
        # per-destination limit (cbac session-limit destination; a cbac
        # extension): the real responder, after NAT
        dst = c_out[1]
        if th.per_dst.get(dst, 0) >= model.session_limit_dest:
            stats.drop("destination-limit")
            th.log_dest_limit(dst, now, model.session_limit_dest)
            return None
        # per-host half-open limit (TCP): Thresholds.host_check, called
        # when it may refuse (a host blocked, the host at its limit)
        if proto == 6:
            hh = th.tcp_half.get(host)
            if (th.blocked or (len(hh) if hh else 0) >= g.tcp_max_incomplete_host) \
                    and not th.host_check(host, now, g):
                th.check_aggressive(None, g)
                return None
        # ZBF: sessions maximum of the class's parameter-map
        rname = rule_name if pinhole is None else parent.rule_name
        cap = getattr(model.inspect_rules.get(rname), "sessions_maximum", None) \
            if rname is not None and ":" in rname else None
        if cap is not None and self._rule_live.get(rname, 0) >= cap:
            stats.drop("class-sessions-maximum")
            last = self._rule_full_log.get(rname)
            if last is None or now - last >= 60:
                self._rule_full_log[rname] = now
                zp, _, cls = rname.partition(":")
                ios.message("FW", 4, "SESSIONS_MAXIMUM",
                            "Number of sessions for zone-pair %s class %s exceeds the "
                            "configured sessions maximum value %d" % (zp, cls, cap))
            return None
        # table cap
        if len(self.sessions) >= model.session_limit:
            if th.half:
                victim = th.victim()
                self.stats.drop("evicted-table-full")
                self._delete(victim, "table-full", rst=True)
            else:
                stats.drop("table-full")
                self._log_full(rule_name, in_if, out_if)
                return None
        # aggressive mode: keep half-open at most max-incomplete low
        if counts and th.aggressive:
            low = g.max_incomplete_low
            while th.half and len(th.half) >= low:
                victim = th.victim()
                stats.drop("aggressive-delete")
                self._delete(victim, "aggressive", rst=True)
        self._seq += 1
        s = self.build_session(self._seq, proto, protocol,
                               rule_name if pinhole is None else parent.rule_name, rp, now,
                               c_in, c_out, (kc, ks), translation, host, parent, in_if, out_if)
        if proto == 1:
            s.icmp_req = pkt.icmp_type
            s.idle = rp.timeout if (rp is not None and rp.timeout is not None) else 10
            s.sis = SIS_OPEN
            s.half_open = False
            s.app_state = ICMP_NAMES[pkt.icmp_type]
            s.b0 = pkt.payload_len
        else:
            if proto == 6:
                s.idle = rp.timeout if (rp is not None and rp.timeout is not None) \
                    else g.tcp_idle_time
                t = s                    # its own tracker
                init_client(t, pkt)
                w = rp.synwait if rp is not None and rp.synwait is not None \
                    else g.tcp_synwait_time
                # self.adaptive(), inline below its start
                a = 1.0 if len(self.sessions) <= model.session_limit * self.ADAPTIVE_START \
                    else self.adaptive()
                if a == 1.0 and w.__class__ is int:
                    # created + w (_deadline): no float per session
                    f = _AFTER_CREATED.get(w)
                    if f is None:
                        if len(_AFTER_CREATED) >= 256:
                            _AFTER_CREATED.clear()
                        f = _AFTER_CREATED[w] = AfterCreated(w)
                    s.fixed = f
                else:
                    s.fixed = now + w * a
                if protocol in self.factories and pinhole is None:
                    if pkt.payload_len:
                        stats.drop("syn-with-data")
                        return None
                    if not self._attach_inspector(s, protocol, rp, t):
                        stats.drop("inspector-error")
                        return None
            else:
                if c_out[3] == 53 or c_in[3] == 53:
                    s.dns = True
                    s.idle = rp.dns_timeout if (rp is not None and rp.dns_timeout is not None) \
                        else g.dns_timeout
                else:
                    s.idle = rp.timeout if (rp is not None and rp.timeout is not None) \
                        else g.udp_idle_time
                if guard is not None:
                    s.inspector = guard
                    s.app_state = guard.state_summary()
                s.b0 = pkt.payload_len
        table[kc] = s
        table[ks] = s
        sessions = self.sessions
        sessions[s.sid] = s
        # th.count(src, dst), inline
        per = th.per_src
        per[src] = per.get(src, 0) + 1
        per = th.per_dst
        per[dst] = per.get(dst, 0) + 1
        if cap is not None:
            self._rule_live[rname] = self._rule_live.get(rname, 0) + 1
        n = len(sessions)
        if n > stats.peak:
            stats.peak = n
        cr = stats.created
        cr[protocol] = cr.get(protocol, 0) + 1
        if pinhole is not None:
            self._consume_pinhole(pinhole)
            if pinhole.group is not None:
                pinhole.group.append(s)      # closed with its call (SIP BYE)
        if proto == 17 and protocol == "sip" and pinhole is None and \
                not udp_guard_start(self, s, pkt):
            s.audit = False
            self._delete(s, "sip-bad-message")
            return None
        if proto == 17 and tftp_req is not None:
            # RFC 1350: the server answers from a new port
            caddr, cport = self._nat_map(s, CLIENT, "udp", c_in[0], c_in[2])
            self.add_pinhole(s, Expectation("udp", c_out[1], None, caddr, cport,
                                            timeout=tftp.DATA_TIMEOUT, label="tftp-data"))
            s.app_state = "TFTP %s %s" % ("read" if tftp_req[0] == 1 else "write",
                                          tftp_req[1].decode("latin-1")[:64])
        nat = self.nat
        if nat is not None and translation is not None and nat.created is translation:
            nat.adopt(translation, s)        # made for this session: dies with it
        if s.half_open:
            th.add_half(s, host)
        if counts:
            if th.aggressive:
                th.check_calm(g)         # (check_aggressive's other half)
            else:
                th.check_aggressive(s, g)
        # (a new TCP session's deadline is its synwait: no RST challenge
        # yet; self._schedule(s, self._deadline(s)) inline for one not yet
        # filed)
        if proto == 6 and s.slot is None:
            f = s.fixed
            wheel = self._wheel
            wheel.add(s, int(s.created + f if f.__class__ is AfterCreated else f) + 1)
            t = wheel.timer
            if t is None or not t.active():
                wheel.ensure(self.TICK)
        else:
            self._schedule(s, self._deadline(s))
        if s.prof.audit:
            ios.message("FW", 6, "SESS_AUDIT_TRAIL_START",
                        _zbf_prefix(s.rule_name) +
                        "Start %s session: initiator (%s:%d) -- responder (%s:%d)" % (
                            protocol, ip_str(s.initiator[0]), s.initiator[1],
                            ip_str(s.responder[0]), s.responder[1]))
        if self.debug_enabled:
            self.debug_line("object-creation", "CBAC OBJ_CREATE: create sis %s %s %s" % (
                s.hexid, protocol, s.flow_text()))
            self.debug_line("timers", "CBAC Timer Start: sis %s Timer Time: %d milliseconds" % (
                s.hexid, int((self._deadline(s) - now) * 1000)))
            if proto == 6:
                self.debug_line("tcp", "CBAC sis %s SIS_CLOSED TCP SYN SEQ %d LEN %d %s" % (
                    s.hexid, pkt.tcp_seq, pkt.payload_len, s.flow_text()))
            elif proto == 17:
                self.debug_line("udp", "CBAC sis %s SIS_CLOSED UDP packet LEN %d %s" % (
                    s.hexid, pkt.payload_len, s.flow_text()))
            else:
                self.debug_line("icmp", "CBAC sis %s ICMP type %d id %d %s" % (
                    s.hexid, pkt.icmp_type, pkt.icmp_id, s.flow_text()))
        if self.observer is not None:
            self.observer.session_changed(s)
        return s

    def _attach_inspector(self, s, protocol, rp, t) -> None:
        c_in = s.c_in
        category = DEBUG_CATEGORY.get(protocol, protocol)
        ctx = InspectContext(
            client_addr=c_in[0], client_port=c_in[2], server_addr=c_in[1],
            server_port=c_in[3], rule=rp, server_own_addr=s.c_out[1],
            client_seen=(s.c_out[0], s.c_out[2]), server_seen=(s.c_in[1], s.c_in[3]),
            options=self.model.smtp if protocol in ("smtp", "esmtp") else None,
            debug=category in self.debug_enabled, now=self.clock.seconds,
            nat_map=lambda direction, proto, addr, port, _s=s: self._nat_map(
                _s, direction, proto, addr, port),
            nat_map_any=lambda direction, proto, addr, port, _s=s: self._nat_map(
                _s, direction, proto, addr, port, True))
        if protocol == "pptp":
            from cbac.inspect.gre import CallMap
            ctx.pptp_calls = CallMap(self, s)
        try:
            insp = self.factories[protocol](ctx)
        except Exception:
            # fail closed: no uninspected application session
            ios.log.failure("cbac: {protocol} inspector factory failed", protocol=protocol)
            return False
        st = s.stream = Stream(self, s, insp, ctx, category)
        st.dirs[CLIENT].isn = t.isn0
        st.dirs[SERVER].mss = t.mss
        s.inspector = insp
        return True

    def _nat_map(self, s, direction, proto, addr, port, any_remote=False):
        """``ctx.nat_map``; ``any_remote`` (``ctx.nat_map_any``: SIP/RTSP
        media) reserves a PAT door any remote may use (the pinhole checks
        the source), not only the control connection's peer."""
        nat = self.nat
        if nat is None or (s.rw[0] is None and s.rw[1] is None):
            return (addr, port)
        try:
            if direction == CLIENT:
                if addr == s.c_in[0] and s.c_in[0] != s.c_out[0]:
                    return tuple(nat.reserve(proto, addr, port, s.out_if,
                                             remote=None if any_remote else s.c_out[1],
                                             like=s.translation))
            else:
                if addr == s.c_out[1] and s.c_out[1] != s.c_in[1]:
                    return tuple(nat.reserve(proto, addr, port, s.in_if,
                                             remote=None if any_remote else s.c_out[0],
                                             like=s.translation))
        except Exception:
            ios.log.failure("cbac: nat_map failed")
        return (addr, port)

    # ------------------------------------------------------------------
    # thresholds (cbac/inspect/thresholds.py): read accessors

    def one_minute_rate(self) -> int:
        """TCP/UDP connection attempts (first packets the rules inspect,
        including refused ones) in the last 60 seconds."""
        return self.thresholds.one_minute_rate(self.clock.seconds())

    @property
    def half_open_count(self) -> int:
        return len(self.thresholds.half)

    def half_open_tcp(self) -> int:
        """Half-open TCP sessions (the rest of half_open_count are UDP)."""
        return self.thresholds.half_open_tcp()

    @property
    def aggressive(self) -> bool:
        return self.thresholds.aggressive

    def blocked_hosts(self):
        """[(host, unblock time)] of the hosts blocked by max-incomplete
        host block-time, sorted by host."""
        return self.thresholds.blocked_hosts()

    def blocked_until(self, host):
        return self.thresholds.blocked_until(host)

    def host_half_open(self, host) -> int:
        return self.thresholds.host_half_open(host)

    @property
    def pinhole_count(self) -> int:
        """Pinholes (expected connections) waiting."""
        return self._npinholes

    def _log_full(self, rule_name, in_if, out_if) -> None:
        now = self.clock.seconds()
        if self._last_full_log is not None and now - self._last_full_log < 60:
            return
        self._last_full_log = now
        iface = in_if
        intf = self.model.interfaces.get(out_if) if out_if else None
        if intf is not None and intf.inspect_out == rule_name:
            iface = out_if
        ios.message("FW", 4, "SESSIONS_MAXIMUM",
                    "Number of sessions for the firewall rule '%s' applied on interface '%s' "
                    "exceeds the configured maximum value %d" % (
                        rule_name, iface, self.model.session_limit))

    def set_open(self, s) -> None:
        """The session is no longer half-open."""
        if s.half_open:
            s.half_open = False
            self.thresholds.remove_half(s)
        if s.sis == SIS_OPENING:
            s.sis = SIS_OPEN
        if self.observer is not None and not s.dead:
            self.observer.session_changed(s)

    # ------------------------------------------------------------------
    # per packet

    def fast_process(self, s, d, frame, vnet, now) -> bool:
        """The established-flow fast path, for an untagged IPv4 frame with a
        20-byte header (the router checked that and found ``(s, d)`` with
        one lookup on ``frame[26:38]``).

        Handles a TCP segment without SYN/FIN/RST/URG of an ESTABLISHED
        session that has no application inspector, a datagram of an
        open UDP session, or an ICMP echo/timestamp request or reply of an
        ICMP session (the key is addresses + identifier): the same window check as :meth:`process`,
        counters, the pre-computed NAT rewrite; no Packet object.  Returns
        False, having changed nothing, for anything else (the slow path then
        handles, counts or drops it)."""
        if s.dead or self.debug_enabled:
            return False
        proto = s.proto
        if proto == 6:
            t = s                        # a TcpSession is its own tracker
            if s.stream is not None or t.state != ESTABLISHED or t.chal:
                return False
            seq, ack, off, flags, win = _FAST_TCP.unpack_from(frame, 38)
            if flags & _NO_FAST or not flags & ACK:
                return False
            plen = ((frame[16] << 8) | frame[17]) - 20 - ((off >> 4) << 2)
            fp = self._fp
            fp.tcp_seq = seq
            fp.tcp_ack = ack
            fp.tcp_flags = flags
            fp.tcp_win = win
            fp.payload_len = plen
            nb = new_bytes(t, d, seq, plen) if plen > 0 else 0
            if track(t, d, fp, ack) is not None:
                return False
        elif proto == 17:
            if s.half_open or s.dns or s.inspector is not None:    # guards: slow path
                return False
            nb = ((frame[38] << 8) | frame[39]) - 8
        elif proto == 1:
            # an echo/timestamp request of the initiator or the matching
            # reply of the responder (icmp_process's check); no error
            # message comes here (they are not keyed like a query)
            ip_len = (frame[16] << 8) | frame[17]
            if ip_len < 28 or frame[34] != (s.icmp_req if d == 0 else _ICMP_REPLY_OF[s.icmp_req]):
                return False
            nb = ip_len - 28
        else:
            return False
        if now - s.last >= 1.0 and s.translation is not None and self.nat is not None:
            self.nat.touch(s.translation, now, ACK if proto == 6 else None)
        s.last = now
        if d:
            s.b1 += nb
            s.p1 += 1
        else:
            s.b0 += nb
            s.p0 += 1
        rw = s.rw[d]
        if rw is not None:
            rw.apply(frame, 14, 34, bool(vnet) and (vnet[0] & 1) == 1, True)
        return True

    def process(self, s, direction, pkt) -> bool:
        """Inspect a packet of an existing session; True = forward (the
        packet has been rewritten for NAT and stream edits), False = drop."""
        if s.dead:
            return False
        proto = pkt.proto
        if proto == 1 and pkt.inner is not None:
            # an ICMP error lookup_icmp_error() already checked and rewrote
            return True
        if proto == 47:
            return self.gre.process(s, direction, pkt)
        if self.resuming and s in self.resuming:
            if not self.resume_before(self, s, direction, pkt):
                return False
        now = self.clock.seconds()
        extras = None
        if proto == 6:
            extras = self._tcp(s, direction, pkt, now)
            if extras is None:
                return False
        elif proto == 17:
            if not udp_process(self, s, direction, pkt):
                return False
        elif not icmp_process(self, s, direction, pkt):
            return False
        s.last = now
        if direction:
            s.p1 += 1
        else:
            s.p0 += 1
        rw = s.rw[direction]
        if rw is not None:
            v = pkt.vnet
            rw.apply(pkt.frame, pkt.l3, pkt.l4, bool(v) and (v[0] & 1) == 1, True)
            t = rw.new
            pkt.src, pkt.dst = t[0], t[1]
            if proto == 1:
                pkt.icmp_id = t[2]
            else:
                pkt.sport, pkt.dport = t[2], t[3]
        if extras:
            send = self.send
            for seq, data, fin in extras:
                send(clone_segment(pkt, seq, data, fin))
        if self.nat is not None and s.translation is not None:
            try:
                self.nat.touch(s.translation, now, pkt.tcp_flags if proto == 6 else None)
            except Exception:
                pass
        return True

    def _tcp(self, s, d, pkt, now):
        t = s                            # a TcpSession is its own tracker
        st = s.stream
        flags = pkt.tcp_flags
        ack = pkt.tcp_ack
        if st is not None and flags & ACK:
            ack = st.ack_translate(d, ack)
        old = t.state
        if old >= CLOSING and d == CLIENT and flags & _SARF == SYN:
            # a new connection on the same 4-tuple: delete the old session
            # and let the router handle this SYN as a new connection (as
            # conntrack does; dropping it cost the client a 1 s SYN
            # retransmission, issue 21)
            self._delete(s, "reopen")
            self.reopened = True
            return None
        plen = pkt.payload_len
        nb = new_bytes(t, d, pkt.tcp_seq, plen) if plen else 0
        r = track(t, d, pkt, ack)
        if r is not None:
            if r is RST_EXACT or r is RST_CHALLENGE:
                # RFC 5961: forwarded unchanged; closes only when the
                # receiver could have accepted it (normalise.py)
                r = normalise.rst_verdict(s, d, pkt, r)
            if r is RST_EXACT:
                t.state = CLOSED
                t.chal = 0
            elif r is RST_CHALLENGE:
                normalise.challenge(self, s, d, now)
            else:
                self.drop(s, r, pkt)
                return None
        elif t.chal and d != t.chald:
            t.chal = 0                   # the receiver answered the challenge
        if self.debug_enabled:
            self._debug_tcp(s, d, pkt)
        new = t.state
        if new != old and (new != SYN_RECV or self.debug_enabled):
            # (SYN_SENT -> SYN_RECV changes nothing but a debug line)
            self._tcp_transition(s, old, new, now)
        extras = _EMPTY
        if st is not None:
            if flags & SYN and flags & ACK:
                mss = parse_options(pkt.frame, pkt.l4, pkt.tcp_doff)[0] or 536
                st.dirs[CLIENT].mss = mss
            extras = st.segment(d, pkt)
            if extras is None or s.dead:
                return None
            if st.inspector is None and not extras and st.plain:
                s.stream = None          # opaque and nothing pending: plain TCP
        if d:
            s.b1 += nb
        else:
            s.b0 += nb
        return extras

    def _tcp_transition(self, s, old, new, now) -> None:
        if new == ESTABLISHED:
            self.set_open(s)
            s.fixed = None
            # the idle deadline: filed now only when the session's slot is
            # later (self._schedule's test, inline: the synwait slot is
            # earlier, and the timer re-files it when it comes due)
            dl = s.last + s.idle
            slot = s.slot
            if slot is None or slot > int(dl) + 1:
                self._schedule(s, dl)
            if self.debug_enabled:
                self.debug_line("events", "CBAC sis %s SIS_OPEN: established %s" % (
                    s.hexid, s.flow_text()))
        elif new >= CLOSING:
            if s.half_open:
                self.set_open(s)
            s.sis = SIS_CLOSING
            rp = s.rule
            s.fixed = now + (rp.finwait if rp is not None and rp.finwait is not None
                             else self.model.inspect.tcp_finwait_time)
            self._schedule(s, s.fixed)
            if self.observer is not None:
                self.observer.session_changed(s)
            if self.debug_enabled:
                self.debug_line("events", "CBAC sis %s SIS_CLOSING: %s %s" % (
                    s.hexid, "FIN exchange" if new == CLOSING else "RST", s.flow_text()))
        elif new == SYN_RECV and self.debug_enabled:
            self.debug_line("events", "CBAC sis %s SIS_OPENING: SYN/ACK seen %s" % (
                s.hexid, s.flow_text()))

    def _debug_tcp(self, s, d, pkt) -> None:
        if "tcp" not in self.debug_enabled:
            return
        f = pkt.tcp_flags
        names = [n for bit, n in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (ACK, "ACK"))
                 if f & bit]
        a = s.initiator
        b = s.responder
        if d == CLIENT:
            flow = "(%s:%d) => (%s:%d)" % (ip_str(a[0]), a[1], ip_str(b[0]), b[1])
        else:
            flow = "(%s:%d) <= (%s:%d)" % (ip_str(a[0]), a[1], ip_str(b[0]), b[1])
        self.debug_line("tcp", "CBAC sis %s %s TCP %s SEQ %d ACK %d LEN %d %s" % (
            s.hexid, s.sis, " ".join(names) or "-", pkt.tcp_seq, pkt.tcp_ack,
            pkt.payload_len, flow))

    def drop(self, s, reason, pkt=None) -> None:
        """Count a drop of a packet of session s."""
        self.stats.drop(reason)
        if self.debug_enabled:
            self.debug_line("detailed", "CBAC* sis %s pak dropped: %s %s" % (
                s.hexid, reason, s.flow_text()))

    # ------------------------------------------------------------------
    # deletion, resets

    def reset_session(self, s, reason: str = "reset") -> None:
        """Reset both ends of a TCP session (RSTs sent) and delete it."""
        self._delete(s, reason, rst=True)

    def inspector_failed(self, s) -> None:
        ios.log.failure("cbac: {protocol} inspector failed; resetting session",
                        protocol=s.protocol)
        self.stats.drop("inspector-error")
        self.reset_session(s, "inspector-error")

    def delete(self, s, reason: str = "deleted") -> None:
        """Delete a session without resets."""
        self._delete(s, reason)

    def _delete(self, s, reason, rst=False) -> None:
        if s.dead:
            return
        if self.offload is not None:
            self.offload.forget(s)       # the kernel's state and counts first
        if rst and s.proto == 6 and s.tcp.state < CLOSING:
            send = self.send
            for p in session_rsts(s):
                send(p)
        s.dead = True
        if self.observer is not None:
            self.observer.session_closed(s)
        self.resuming.pop(s, None)
        table = self._by_proto[s.proto]
        kc = s.kc
        ks = s.ks
        if table.get(kc) is s:
            del table[kc]
        if table.get(ks) is s:
            del table[ks]
        self.sessions.pop(s.sid, None)
        # initiator (c_in[0]) and real responder (c_out[1] = ks[0:4])
        self.thresholds.uncount(int.from_bytes(kc[0:4], "big"), int.from_bytes(ks[0:4], "big"))
        if s.slot is not None:
            # out of the timer wheel now (O(1)): a deleted session must not
            # stay referenced until its old deadline (a SYN flood's victims
            # would pile up for synwait, an idle session's for an hour)
            self._wheel.remove(s)
        tr = s.translation
        if tr is not None and tr.owner is s and self.nat is not None:
            self.nat.release(tr, s)
        rl = self._rule_live
        if rl and rl.get(s.rule_name):
            rl[s.rule_name] -= 1
        if s.half_open:
            self.set_open(s)
        if s.pinholes:
            for ph in s.pinholes:
                self._consume_pinhole(ph)
            s.pinholes = None
        st = self.stats
        st.deleted[reason] = st.deleted.get(reason, 0) + 1
        if s.audit:
            ios.message("FW", 6, "SESS_AUDIT_TRAIL",
                        _zbf_prefix(s.rule_name) +
                        "Stop %s session: initiator (%s:%d) sent %d bytes -- responder "
                        "(%s:%d) sent %d bytes" % (
                            s.protocol, ip_str(s.initiator[0]), s.initiator[1], s.b0,
                            ip_str(s.responder[0]), s.responder[1], s.b1))
        if self.debug_enabled:
            self.debug_line("object-deletion", "CBAC OBJ_DELETE: delete sis %s (%s)" % (
                s.hexid, reason))

    def clear(self) -> int:
        """``clear ip inspect sessions`` (cbac extension): delete every
        session (TCP ones not yet closing are reset at both ends) and every
        pinhole.  Returns the number of sessions deleted."""
        n = 0
        for s in list(self.sessions.values()):
            self._delete(s, "clear", rst=True)
            n += 1
        self._pinholes.clear()
        self._npinholes = 0
        return n

    # ------------------------------------------------------------------
    # pinholes

    def add_pinhole(self, parent, e) -> None:
        proto = {"tcp": 6, "udp": 17}.get(e.protocol)
        if proto is None or parent.dead:
            return
        ph = Pinhole()
        ph.proto = proto
        ph.src = e.src
        ph.sport = e.src_port
        ph.dst = e.dst
        ph.dport = e.dst_port
        ph.deadline = self.clock.seconds() + e.timeout
        ph.parent = parent
        ph.label = e.label or e.protocol
        ph.used = False
        ph.rule = parent.rule
        ph.key = (proto, e.dst, e.dst_port)
        ph.group = getattr(e, "group", None)
        if ph.group is not None:
            ph.group.append(ph)
        self._pinholes.setdefault(ph.key, []).append(ph)
        self._npinholes += 1
        if parent.pinholes is None:
            parent.pinholes = []
        parent.pinholes.append(ph)
        self._ensure_timer()
        if self.debug_enabled:
            self.debug_line("object-creation",
                            "CBAC OBJ_CREATE: create pre-gen sis %s %s (%s:%s)=>(%s:%d)" % (
                                parent.hexid, ph.label,
                                ip_str(e.src) if e.src is not None else "*",
                                e.src_port if e.src_port is not None else "*",
                                ip_str(e.dst), e.dst_port))

    def _consume_pinhole(self, ph) -> None:
        if ph.used:
            return
        ph.used = True
        lst = self._pinholes.get(ph.key)
        if lst is not None:
            try:
                lst.remove(ph)
                self._npinholes -= 1
            except ValueError:
                pass
            if not lst:
                del self._pinholes[ph.key]

    @property
    def pinholes(self):
        return [ph for lst in self._pinholes.values() for ph in lst]

    # ------------------------------------------------------------------
    # logging helpers

    def emit_log(self, s, event) -> None:
        """Emit an inspector's IOS message (an api.LogEvent) honouring
        alert / audit-trail."""
        if event.facility == "FW":
            if event.mnemonic.startswith("SESS_AUDIT_TRAIL"):
                if not s.audit:
                    return
            elif not s.alert:
                return
        ios.message(event.facility, event.severity, event.mnemonic, event.text)

    def debug_line(self, category, text) -> None:
        ios.debugging.line(category, text)

    # ------------------------------------------------------------------
    # timers: a lazy timing wheel

    def _deadline(self, s) -> float:
        f = s.fixed
        if f is None:
            dl = s.last + s.idle * self.adaptive()
        elif f.__class__ is AfterCreated:
            dl = s.created + f           # a new TCP session's synwait
        else:
            dl = f
        if s.proto == 6 and s.chal and s.chal < dl:
            return s.chal
        return dl

    #: adaptive timeouts (pf's adaptive.start/end): above 60% of
    #: ``cbac session-limit`` the idle and synwait times are scaled by
    #: (120% - n) / (120% - 60%): a third of them at the limit.
    ADAPTIVE_START = 0.6
    ADAPTIVE_END = 1.2

    def adaptive(self) -> float:
        lim = self.model.session_limit
        n = len(self.sessions)
        start = lim * self.ADAPTIVE_START
        if n <= start:
            return 1.0
        end = lim * self.ADAPTIVE_END
        return max(0.0, (end - n) / (end - start))

    def proto_table(self, proto):
        """The key -> entry dict of the sessions of IP protocol ``proto``
        (6, 17 or 1), or None when cbac does not inspect it."""
        return self._by_proto.get(proto)

    def log_due(self, what, now: float, interval: float) -> bool:
        """Rate limit of a log line: True (and ``now`` remembered) when
        the line ``what`` was not logged in the last ``interval`` seconds."""
        last = self._log_last.get(what)
        if last is not None and now - last < interval:
            return False
        self._log_last[what] = now
        return True

    def schedule(self, s, deadline=None) -> None:
        """Have the timer look at session ``s`` by ``deadline`` (default:
        its own deadline, idle or fixed): for code outside the table that
        changes when a session must end (a closing DNS/TFTP session, an RST
        challenge, a restored session)."""
        self._schedule(s, self._deadline(s) if deadline is None else deadline)

    def _schedule(self, s, deadline) -> None:
        slot = int(deadline) + 1
        old = s.slot
        if old is not None and old <= slot:
            return                       # lazy: the later deadline is checked when due
        self._wheel.add(s, slot)
        self._wheel.ensure(self.TICK)   # _ensure_timer

    def _ensure_timer(self) -> None:
        self._wheel.ensure(self.TICK)

    def stop(self) -> None:
        """Cancel the timer (shutdown, tests)."""
        self._wheel.stop()

    def _tick(self) -> None:
        try:
            self.expire(self.clock.seconds())
        finally:
            if self._backlog:
                self._wheel.call_at(self.clock.seconds() + self.BACKLOG_TICK)
            elif (self._wheel or self.thresholds.blocked or self._npinholes
                  or self.thresholds.aggressive):
                self._ensure_timer()

    def expire(self, now) -> None:
        """Run the timers up to ``now`` (called every second by the clock)."""
        if self.offload is not None:
            self.offload.refresh(now)    # last-seen of offloaded sessions
        wheel = self._wheel
        nxt = wheel.next_slot()
        if nxt is not None and nxt <= now:
            budget = self.EXPIRE_BUDGET
            self._backlog = False
            for slot, bucket in wheel.pop_due(now):
                for i, s in enumerate(bucket):
                    if s.dead or s.slot != slot:
                        continue
                    dl = self._deadline(s)
                    if dl > now:
                        s.slot = None
                        self._schedule(s, dl)
                        continue
                    if budget <= 0:
                        # too much for one tick: the rest waits for the next one
                        wheel.put_back(slot, bucket[i:])
                        self._backlog = True
                        break
                    budget -= 1
                    s.slot = None
                    self._expire_session(s, now)
                if self._backlog:
                    break
        th = self.thresholds
        if th.blocked:
            th.unblock_due(now)
        if self._npinholes:
            for key, lst in list(self._pinholes.items()):
                for ph in list(lst):
                    if ph.deadline <= now:
                        self._consume_pinhole(ph)
        if th.aggressive:
            th.check_calm(self.model.inspect)

    def _expire_session(self, s, now) -> None:
        t = s.tcp if s.proto == 6 else None
        if t is not None and t.chal:
            chal = t.chal
            t.chal = 0
            if chal <= now and self._deadline(s) > now:
                # the receiver never answered the RST challenge: it took
                # the RST (normalise.py)
                old = t.state
                if old < CLOSING:
                    t.state = CLOSED
                    self._tcp_transition(s, old, CLOSED, now)
                else:
                    self._schedule(s, self._deadline(s))
                return
        if self.debug_enabled:
            self.debug_line("timers", "CBAC Timer Expire: sis %s %s %s" % (
                s.hexid, s.sis, s.flow_text()))
        if s.sis == SIS_OPENING:
            reason = "synwait" if s.proto == 6 else "idle"
        elif s.sis == SIS_CLOSING:
            reason = "finwait" if s.proto == 6 else "idle"
        else:
            reason = "idle"
        self._delete(s, reason, rst=(s.proto == 6))

    # ------------------------------------------------------------------
    # show

    def show_sessions(self, detail: bool = False) -> str:
        from cbac.inspect.show import show_sessions
        return show_sessions(self, detail)

    def show_statistics(self) -> str:
        from cbac.inspect.show import show_statistics
        return show_statistics(self)


def _zbf_prefix(rule_name) -> str:
    """``(target:class)-(ZONE-PAIR:CLASS):`` before ZBF audit-trail text."""
    if rule_name is not None and ":" in rule_name:
        return "(target:class)-(%s):" % rule_name
    return ""


def addr(text: str) -> int:
    """Helper: dotted quad -> int."""
    return int(IPv4Address(text))


__all__ = ["SessionTable", "Session", "DatagramSession", "TcpSession", "Pinhole", "Stats", "SIS_OPENING", "SIS_OPEN",
           "SIS_CLOSING", "APP_BY_PORT", "hms"]
