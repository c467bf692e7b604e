"""One NAT translation entry (IOS terms: inside local/global, outside
local/global) and the IOS duration format used by ``show``."""

from __future__ import annotations

from cbac.packet.rewrite import Rewrite, port_pair

#: ``kind`` values
STATIC = "static"        # configured entry (simple or port), never expires
BINDING = "binding"      # dynamic simple (pool, no overload) address binding
FLOW = "flow"            # extended entry: one flow (proto, addresses, ports)
DOOR = "door"            # reserved port waiting for a connection (FTP data)

# TCP states for the timeouts
T_SYN, T_EST, T_FINRST = 0, 1, 2

PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}


class Translation:
    """A translation.

    ``inside_local``, ``inside_global``, ``outside_local``,
    ``outside_global`` are ``(addr, port)`` (ints; None where a side has
    none); for ICMP the port is the echo identifier as seen on that side.
    They are kept as eight fields (``il``, ``ilp``, ``ig``, ``igp``, ``ol``,
    ``olp``, ``og``, ``ogp``: no tuple per column) and read as pairs.
    ``forward`` rewrites packets going inside -> outside (``(IL, OL) ->
    (IG, OG)``), ``reverse`` packets going outside -> inside.  Both are
    :class:`Rewrite`s (possibly identity), held as one pair ``rw`` that a
    session made for the flow shares (:mod:`cbac.inspect.session`); static
    and binding entries have none (they are templates).

    ``in_key`` (derived from the fields) is the key of this flow's packets as they arrive on the
    inside (:func:`flow_key` of ``(proto, src, sport, dst, dport)``, for
    ICMP ``(1, src, id, dst, 0)``); ``out_key`` the same for packets
    arriving on the outside.  ``dead`` becomes True when the entry is removed (expired
    or cleared): a session holding it must stop using its rewrites.
    """

    __slots__ = ("kind", "proto", "il", "ilp", "ig", "igp", "ol", "olp", "og", "ogp",
                 "rw", "created", "last_use", "timeout", "tcp_state", "parent", "refcount",
                 "rule", "pat_key", "slot", "dead", "owner", "host", "oparent", "_x")

    def __init__(self, kind, proto, il, ig, ol, og, now):
        self.kind = kind
        self.proto = proto
        self.il, self.ilp = (None, None) if il is None else il
        self.ig, self.igp = (None, None) if ig is None else ig
        self.ol, self.olp = (None, None) if ol is None else ol
        self.og, self.ogp = (None, None) if og is None else og
        self.rw = None
        self.created = self.last_use = now
        self.timeout = None
        self.tcp_state = T_SYN
        self.parent = None
        self.refcount = 0
        self.rule = None
        self.pat_key = None
        self.slot = None
        self.dead = False
        self._x = None             # a door's remote, a static's configuration
        self.owner = None          # the session this flow entry lives and dies with
        self.host = None           # the inside local address counted in per-host limits
        self.oparent = None        # the outside dynamic binding (ip nat outside source list)

    # the four columns as pairs ---------------------------------------------

    @property
    def inside_local(self):
        a = self.il
        return None if a is None else (a, self.ilp)

    @inside_local.setter
    def inside_local(self, v):
        self.il, self.ilp = (None, None) if v is None else v

    @property
    def inside_global(self):
        a = self.ig
        return None if a is None else (a, self.igp)

    @inside_global.setter
    def inside_global(self, v):
        self.ig, self.igp = (None, None) if v is None else v

    @property
    def outside_local(self):
        a = self.ol
        return None if a is None else (a, self.olp)

    @outside_local.setter
    def outside_local(self, v):
        self.ol, self.olp = (None, None) if v is None else v

    @property
    def outside_global(self):
        a = self.og
        return None if a is None else (a, self.ogp)

    @outside_global.setter
    def outside_global(self, v):
        self.og, self.ogp = (None, None) if v is None else v

    # derived from the fields (no slot of their own) --------------------------

    @property
    def in_key(self):
        """:func:`flow_key` of the flow's packets as they arrive on the inside
        (flow entries; None for templates and doors)."""
        if self.kind != FLOW:
            return None
        p = self.proto
        if p == 6 or p == 17:
            return flow_key(p, self.il, self.ilp, self.ol, self.olp)
        if p == 1:
            return flow_key(1, self.il, self.ilp, self.ol, 0)
        return flow_key(p, self.il, 0, self.ol, 0)

    @property
    def out_key(self):
        """The same for packets arriving on the outside."""
        if self.kind != FLOW:
            return None
        p = self.proto
        if p == 6 or p == 17:
            return flow_key(p, self.og, self.ogp, self.ig, self.igp)
        if p == 1:
            return flow_key(1, self.og, self.igp, self.ig, 0)
        return flow_key(p, self.og, 0, self.ig, 0)

    @property
    def outside_xlat(self) -> bool:
        """A flow whose outside addresses are translated too."""
        return self.kind == FLOW and self.ol != self.og

    @property
    def door_key(self):
        """A door's key in ``Nat.doors``: ``(proto, IG, IGp)``."""
        return (self.proto, self.ig, self.igp) if self.kind == DOOR else None

    @property
    def remote(self):
        """The peer a door waits for (None: any)."""
        return self._x if self.kind == DOOR else None

    @remote.setter
    def remote(self, v):
        if self.kind != DOOR:
            raise AttributeError("only a door has a remote")
        self._x = v

    @property
    def static_cfg(self):
        """The configuration line of a static entry."""
        return self._x if self.kind == STATIC else None

    @static_cfg.setter
    def static_cfg(self, v):
        if self.kind != STATIC:
            raise AttributeError("only a static entry has a configuration")
        self._x = v

    # the rewrites ------------------------------------------------------------

    @property
    def forward(self):
        rw = self.rw
        return None if rw is None else rw[0]

    @forward.setter
    def forward(self, v):
        rw = self.rw
        self.rw = (v, None if rw is None else rw[1])

    @property
    def reverse(self):
        rw = self.rw
        return None if rw is None else rw[1]

    @reverse.setter
    def reverse(self, v):
        rw = self.rw
        self.rw = (None if rw is None else rw[0], v)

    def __repr__(self):
        return "<Translation %s %s %s>" % (self.kind, self.proto, self.columns())

    @property
    def extended(self) -> bool:
        return self.proto in (1, 6, 17) and self.kind in (FLOW, STATIC, DOOR) and \
            self.ig is not None and self.igp is not None

    def columns(self):
        """The four address columns of ``show ip nat translations``."""
        ext = self.extended

        def col(v):
            if v is None:
                return "---"
            a, p = v
            s = "%d.%d.%d.%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)
            return "%s:%d" % (s, p) if ext and p is not None else s
        return (col(self.inside_global), col(self.inside_local),
                col(self.outside_local), col(self.outside_global))

    def pro(self) -> str:
        return PROTO_NAMES.get(self.proto, "---") if self.extended else "---"


def flow_key(proto, src, sport, dst, dport):
    """The key of a flow's packets in ``Nat.flows_in`` / ``flows_out``:
    ``(proto, src, sport, dst, dport)`` as one int (40 bytes; the 5-tuple
    it replaces took 80).  For ICMP ``sport`` is the identifier and
    ``dport`` 0; protocols without ports have 0 in both."""
    return proto << 96 | src << 64 | sport << 48 | dst << 16 | dport


def make_rewrites(proto, il, ilp, ig, igp, ol, olp, og, ogp):
    """(forward, reverse) rewrites.  For ICMP the identifier travels in the
    ``sport`` slot in both directions (see :mod:`cbac.packet.rewrite`).
    The reverse is the forward's :meth:`Rewrite.inverse`, written out."""
    if proto == 6 or proto == 17:
        # (Rewrite(proto, (il, ol, ilp, olp), (ig, og, igp, ogp)),
        #  Rewrite(proto, (og, ig, ogp, igp), (ol, il, olp, ilp))), made faster
        return port_pair(proto, il, ilp, ig, igp, ol, olp, og, ogp)
    if proto == 1:
        return (Rewrite(1, (il, ol, ilp, 0), (ig, og, igp, 0)),
                Rewrite(1, (og, ig, igp, 0), (ol, il, ilp, 0)))
    return (Rewrite(proto, (il, ol, 0, 0), (ig, og, 0, 0)),
            Rewrite(proto, (og, ig, 0, 0), (ol, il, 0, 0)))


def new_flow(proto, il, ilp, ig, igp, ol, olp, og, ogp, rw, now):
    """A :data:`FLOW` entry with its fields, rewrites and keys (the
    columns' ports as given: None for protocols without ports), every slot
    set once (the set-up path of every translated connection)."""
    t = _new(Translation)
    t.kind = FLOW
    t.proto = proto
    t.il = il
    t.ilp = ilp
    t.ig = ig
    t.igp = igp
    t.ol = ol
    t.olp = olp
    t.og = og
    t.ogp = ogp
    t.rw = rw
    t.created = t.last_use = now
    t.timeout = None
    t.tcp_state = T_SYN
    t.parent = t.rule = t.pat_key = t.slot = None
    t.refcount = 0
    t.dead = False
    t.owner = t.host = t.oparent = t._x = None
    return t


_new = object.__new__


def ios_duration(seconds: float) -> str:
    """IOS uptime style: ``00:00:12``, ``1d03h``, ``2w3d``."""
    s = int(max(0, seconds))
    if s < 86400:
        return "%02d:%02d:%02d" % (s // 3600, (s // 60) % 60, s % 60)
    d = s // 86400
    if d < 7:
        return "%dd%02dh" % (d, (s // 3600) % 24)
    return "%dw%dd" % (d // 7, d % 7)
