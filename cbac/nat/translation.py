"""One NAT translation entry (IOS terms: inside local/global, outside
local/global) and the IOS duration format used by ``show``."""

from __future__ import annotations

from cbac.packet.rewrite import Rewrite

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
    ``outside_global`` are ``(addr, port)`` (ints); for ICMP the port is the
    echo identifier as seen on that side.  ``forward`` rewrites packets
    going inside -> outside (``(IL, OL) -> (IG, OG)``), ``reverse`` packets
    going outside -> inside.  Both are :class:`Rewrite`s (possibly
    identity); static and binding entries have none (they are templates).

    ``in_key`` is the key of this flow's packets as they arrive on the
    inside (``(proto, src, sport, dst, dport)``, for ICMP
    ``(1, src, id, dst, 0)``); ``out_key`` the same for packets arriving on
    the outside.  ``dead`` becomes True when the entry is removed (expired
    or cleared): a session holding it must stop using its rewrites.
    """

    __slots__ = ("kind", "proto", "inside_local", "inside_global", "outside_local",
                 "outside_global", "forward", "reverse", "in_key", "out_key",
                 "created", "last_use", "timeout", "tcp_state", "parent", "refcount",
                 "rule", "pat_key", "slot", "dead", "outside_xlat", "door_key",
                 "remote", "static_cfg", "owner", "host", "oparent", "__weakref__")

    def __init__(self, kind, proto, il, ig, ol, og, now):
        self.kind = kind
        self.proto = proto
        self.inside_local = il
        self.inside_global = ig
        self.outside_local = ol
        self.outside_global = og
        self.forward = self.reverse = None
        self.in_key = self.out_key = None
        self.created = self.last_use = now
        self.timeout = None
        self.tcp_state = T_SYN
        self.parent = None
        self.refcount = 0
        self.rule = None
        self.pat_key = None
        self.slot = None
        self.dead = False
        self.outside_xlat = False
        self.door_key = None
        self.remote = None
        self.static_cfg = None
        self.owner = None          # the session this flow entry lives and dies with
        self.host = None           # the inside local address counted in per-host limits
        self.oparent = None        # the outside dynamic binding (ip nat outside source list)

    def __repr__(self):
        return "<Translation %s %s %s>" % (self.kind, self.proto, self.columns())

    @property
    def extended(self) -> bool:
        return self.proto in (1, 6, 17) and self.kind in (FLOW, STATIC, DOOR) and \
            self.inside_global is not None and self.inside_global[1] is not None

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


def make_rewrites(proto, il, ilp, ig, igp, ol, olp, og, ogp):
    """(forward, reverse) rewrites.  For ICMP the identifier travels in the
    ``sport`` slot in both directions (see :mod:`cbac.packet.rewrite`)."""
    if proto in (6, 17):
        fwd = Rewrite(proto, (il, ol, ilp, olp), (ig, og, igp, ogp))
        return fwd, fwd.inverse()
    if proto == 1:
        fwd = Rewrite(1, (il, ol, ilp, 0), (ig, og, igp, 0))
        rev = Rewrite(1, (og, ig, igp, 0), (ol, il, ilp, 0))
        return fwd, rev
    fwd = Rewrite(proto, (il, ol, 0, 0), (ig, og, 0, 0))
    return fwd, fwd.inverse()


def ios_duration(seconds: float) -> str:
    """IOS uptime style: ``00:00:12``, ``1d03h``, ``2w3d``."""
    s = int(max(0, seconds))
    if s < 86400:
        return "%02d:%02d:%02d" % (s // 3600, (s // 60) % 60, s % 60)
    d = s // 86400
    if d < 7:
        return "%dd%02dh" % (d, (s // 3600) % 24)
    return "%dw%dd" % (d // 7, d % 7)
