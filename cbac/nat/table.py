"""IOS NAT: static, dynamic pool, PAT (overload), outside static.

The router calls :meth:`Nat.outbound` for a packet routed from an ``ip nat
inside`` interface to an ``ip nat outside`` interface (after routing) and
:meth:`Nat.inbound` for a packet arriving on an ``ip nat outside``
interface (before routing); see docs/nat-order.md.

Every flow through NAT has one :class:`Translation` (an IOS "extended"
entry) holding inside local/global and outside local/global; it is
registered under two keys, the flow's packets as they arrive on the inside
and as they arrive on the outside, so a packet from either side finds it
with one dict lookup.  Static and dynamic simple (address-only) entries
are templates from which flow entries are made, as IOS makes extended
entries under a simple one.

Timeouts (IOS ``ip nat translation ...`` defaults in
:class:`cbac.config.model.NatTimeouts`): entries are filed in one-second
slots of the timer wheel (:mod:`cbac.timerwheel`, shared with the session
table) at their deadline; one timer fires at the earliest slot and
re-files entries that were used since (so a packet only writes
``last_use``: no per-packet rescheduling).  A TCP FIN or RST shortens the
timeout to ``finrst-timeout`` and re-files the entry once.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

from cbac.nat.translation import (BINDING, DOOR, FLOW, STATIC, T_EST, T_FINRST, T_SYN,
                                  Translation, flow_key, ios_duration, make_rewrites,
                                  new_flow)
from cbac.log import ios
from cbac.log.ios import debugging
from cbac.packet.icmp import rewrite_error
from cbac.packet.rewrite import Rewrite, port_pair
from cbac.packet.view import ACK, FIN, RST, SYN, ip_str
from cbac.timerwheel import TimerWheel

#: returned by inbound/outbound when the packet must be dropped (it matched
#: a NAT rule but cannot be translated: pool or ports exhausted, max-entries
#: reached, a non-initial fragment whose first fragment was not seen).
DROP = object()

#: translate_icmp_error directions
OUTBOUND = 0        # the error arrived on the inside, goes outside
INBOUND = 1         # the error arrived on the outside, goes inside

#: IOS PAT port ranges: a port is replaced by one from the same range.
PORT_RANGES = ((0, 511), (512, 1023), (1024, 65535))

_FRAG_LIFETIME = 30.0
_FRAG_MAX = 4096            # first fragments remembered at most
_SYN_ACK_RST_FIN = SYN | ACK | RST | FIN
_ACK_RST_FIN = ACK | RST | FIN
_ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))


class _PortMap:
    """The ports of one (protocol, global address) that PAT may hand out:
    one byte per port (1 = in use: a flow, a static, an FTP door) and a
    free count and a cursor per IOS range.  An exhausted range is known in
    O(1) from its count; otherwise the next free port is found with one
    ``bytearray.find`` from the cursor (C memchr; amortised O(1), as the
    cursor moves on).  64 KB per address and protocol, made only for the
    addresses PAT actually tries."""

    __slots__ = ("used", "free", "cursor", "first")

    def __init__(self, proto, taken):
        self.used = bytearray(65536)
        self.first = 0 if proto == 1 else 1       # TCP/UDP port 0 is never handed out
        lo0 = self.first
        self.free = [512 - lo0, 512, 64512]
        self.cursor = [lo0, 512, 1024]
        for p in taken:
            self.take(p)

    @staticmethod
    def _r(p):
        return 0 if p < 512 else (1 if p < 1024 else 2)

    def take(self, p):
        if not self.used[p]:
            self.used[p] = 1
            if p >= self.first:
                self.free[self._r(p)] -= 1

    def give(self, p):
        if self.used[p]:
            self.used[p] = 0
            if p >= self.first:
                self.free[self._r(p)] += 1

    def copy(self):
        """An independent copy (a dry-run allocation works on it)."""
        m = _PortMap.__new__(_PortMap)
        m.used = bytearray(self.used)
        m.free = list(self.free)
        m.cursor = list(self.cursor)
        m.first = self.first
        return m

    def alloc(self, want):
        """``want`` if free, else the next free port of its range, or None."""
        used = self.used
        if not used[want]:
            used[want] = 1                  # take(want), inline
            if want >= self.first:
                self.free[0 if want < 512 else (1 if want < 1024 else 2)] -= 1
            return want
        r = self._r(want)
        if self.free[r] <= 0:
            return None
        lo, hi = PORT_RANGES[r]
        if lo < self.first:
            lo = self.first
        c = self.cursor[r]
        p = used.find(0, c, hi + 1)
        if p < 0:
            p = used.find(0, lo, c)
            if p < 0:               # cannot happen while free[r] > 0
                return None
        self.cursor[r] = p + 1 if p < hi else lo
        self.take(p)
        return p


class _Rule:
    """One ``ip nat inside source list ACL {pool P | interface IF} [overload]``."""

    __slots__ = ("id", "acl", "pool", "interface", "overload", "addresses", "refcount",
                 "misses", "allocated", "cursor", "unlogged", "logged_at", "side",
                 "add_route")

    def __init__(self, rid, cfg, addresses):
        self.id = rid
        self.acl = cfg.acl
        self.pool = cfg.pool
        self.interface = cfg.interface
        self.overload = cfg.overload or cfg.interface is not None
        self.side = getattr(cfg, "side", "inside")
        self.add_route = getattr(cfg, "add_route", False)
        self.addresses = addresses      # list of ints (may be empty)
        self.refcount = 0
        self.misses = 0
        self.allocated = 0
        self.cursor = 0
        self.unlogged = 0           # allocation failures since the last log line
        self.logged_at = None


#: A closed TCP translation's (global address, port, remote address, port)
#: stays reserved this long (seconds): the remote end may hold the old
#: connection in TIME_WAIT (2 MSL; Linux 60 s), and a new connection on the
#: same 4-tuple would meet it (its SYN answered by a stale ACK, then a
#: retransmission a second later).  The kernel's conntrack does the same
#: with its TIME_WAIT entries.
PAT_TIME_WAIT = 60.0
#: at most this many reserved 4-tuples (the oldest are forgotten first)
PAT_TIME_WAIT_MAX = 262144


class Nat:
    def __init__(self, router_model, clock, acls=None):
        from cbac.acl import AclSet
        self.clock = clock
        self.model = router_model
        self.acls = acls if acls is not None else AclSet(router_model, clock)
        self.started = clock.seconds()
        # counters
        self.hits = 0
        self.misses = 0
        self.expired = 0
        self.alloc_failures = 0        # address/port exhaustion drops
        self.limit_misses = 0          # refused: max-entries
        self.host_misses = 0           # refused: a per-host limit
        self.host_count: dict[int, int] = {}     # inside local -> dynamic entries
        self._limit_logged: dict = {}
        self.peak = 0
        self.peak_at = None
        # flow entries
        # flow_key(proto, src, sport, dst, dport) -> Translation
        self.flows_in: dict[int, Translation] = {}
        self.flows_out: dict[int, Translation] = {}
        self.entries: dict = {}          # flow/binding -> itself, creation order
        self.doors: dict[tuple, Translation] = {}        # (proto, IG, IGp) -> door
        self.frags: dict[tuple, tuple] = {}              # first-fragment map
        # PAT ports: (proto, IG, IGp) -> [IL, ILp, refs]; statics hold refs=-1
        self.ports: dict[tuple, list] = {}
        # (proto, IL, ILp, rule id) -> (proto, IG, IGp): the very key of its port in ports
        self.pat_by_local: dict[tuple, tuple] = {}
        self.portmaps: dict[tuple, _PortMap] = {}          # (proto, IG) -> _PortMap
        # closed TCP PAT 4-tuples in the remote's TIME_WAIT:
        # (IG, IGp, OG, OGp) -> until, and (until, key) in closing order
        self.time_wait: dict[tuple, float] = {}
        self._tw_order: deque = deque()
        # dynamic simple bindings
        self.bind_by_local: dict[int, Translation] = {}
        self.bind_by_global: dict[int, Translation] = {}
        # outside dynamic bindings (ip nat outside source list): OG/OL -> binding
        self.obind_by_global: dict[int, Translation] = {}
        self.obind_by_local: dict[int, Translation] = {}
        self.created_obind = None
        self.created_door = None           # the door the last inbound entry used
        #: callable(add: bool, outside_local, outside_global) for the host
        #: routes of ``ip nat outside source list ... add-route`` (the router)
        self.route_hook = None
        # timers
        self.wheel = TimerWheel(clock, self._sweep)     # cbac/timerwheel.py
        self._sweeping = False
        self.listeners = []            # callables(translation) on removal
        self.observer = None           # continuity: translation_created(t)
        self._own_acls = acls is None
        self.rules = []
        self.out_rules = []
        #: the flow entry the last inbound/outbound call created (the router
        #: resets it per packet; see :meth:`discard` and :meth:`adopt`)
        self.created = None
        #: address-only rewrites of protocols without ports through static
        #: entries: no per-flow state, a small bounded cache
        self._stateless: dict[tuple, Translation] = {}
        self.update(router_model)

    _STATIC_ATTRS = ("statics", "st_in_by_local", "st_in_by_global", "st_port_by_local",
                     "st_port_by_global", "st_out_by_global", "st_out_by_local",
                     "global_addrs", "pool_ranges", "out_pool_ranges")

    def update(self, router_model) -> None:
        """Apply a new configuration (:meth:`prepare` then :meth:`commit`).
        Existing dynamic entries are kept (as IOS keeps them) and time out
        normally; new flows use the new rules.  A ``source list`` rule that
        did not change keeps its counters."""
        self.commit(self.prepare(router_model))

    def prepare(self, router_model):
        """Build everything a configuration needs, off to the side: the
        running state is not touched, so a failure here (MemoryError
        included) leaves the engine as it was.  Returns a plan for
        :meth:`commit`."""
        from types import SimpleNamespace
        plan = SimpleNamespace(model=router_model)
        self._load_statics(router_model, plan)
        plan.rules = [(i, d, self._rule_addresses(router_model, d))
                      for i, d in enumerate((d for d in router_model.nat.dynamics
                                             if d.side != "outside"), 1)]
        plan.out_rules = [(i, d, self._rule_addresses(router_model, d))
                          for i, d in enumerate((d for d in router_model.nat.dynamics
                                                 if d.side == "outside"), 1)]
        plan.inside_ifs = sorted(n for n, i in router_model.interfaces.items()
                                 if i.nat == "inside")
        plan.outside_ifs = sorted(n for n, i in router_model.interfaces.items()
                                  if i.nat == "outside")
        return plan

    def commit(self, plan) -> None:
        """Install a plan from :meth:`prepare`: assignments only."""
        router_model = plan.model
        self.model = router_model
        self.timeouts = router_model.nat.timeouts
        self._stateless.clear()
        if self._own_acls:
            self.acls.update(router_model)
        for k in [k for k, v in self.ports.items() if v[2] < 0]:
            del self.ports[k]
        for a in self._STATIC_ATTRS:
            setattr(self, a, getattr(plan, a))
        self.ports.update(plan.static_ports)
        self.portmaps.clear()              # rebuilt from self.ports when next used
        old = {(r.side, r.acl, r.pool, r.interface, r.overload, r.add_route): r
               for r in self.rules + self.out_rules}
        for attr, plan_rules in (("rules", plan.rules), ("out_rules", plan.out_rules)):
            rules = []
            for i, d, addrs in plan_rules:
                r = old.pop((d.side, d.acl, d.pool, d.interface,
                             d.overload or d.interface is not None, d.add_route), None)
                if r is None:
                    r = _Rule(i, d, addrs)
                else:
                    r.id, r.addresses, r.cursor = i, addrs, 0
                rules.append(r)
            setattr(self, attr, rules)
        self.inside_ifs = plan.inside_ifs
        self.outside_ifs = plan.outside_ifs

    # ------------------------------------------------------------------
    # configuration

    def _if_addr(self, model, name):
        leased = getattr(self, "leased", None)
        if leased and name in leased:           # ip address dhcp: the lease's address
            return leased[name]
        i = model.interfaces.get(name) if name else None
        if i is None or i.address is None:
            return None
        return int(i.address.ip)

    def set_interface_address(self, addresses: dict) -> None:
        """The run-time addresses of ``ip address dhcp`` interfaces (name ->
        int, or None while there is no lease): ``interface X overload``
        and static ``interface X`` translations follow them."""
        if addresses == getattr(self, "leased", None):
            return
        self.leased = dict(addresses)
        self.update(self.model)

    def _rule_addresses(self, model, d):
        if d.interface is not None:
            a = self._if_addr(model, d.interface)
            return range(0) if a is None else range(a, a + 1)
        p = model.nat.pools.get(d.pool)
        if p is None:
            return []
        lo, hi = int(p.start), int(p.end)
        # a range, not a list: O(1) memory and membership whatever the size
        return range(lo, hi + 1) if hi >= lo else range(0)

    def _load_statics(self, model, st):
        """The static entries of ``model`` into ``st`` (nothing of the
        running state is touched)."""
        now = self.clock.seconds()
        st.static_ports = {}
        st.statics: list[Translation] = []
        st.st_in_by_local: dict[int, int] = {}
        st.st_in_by_global: dict[int, int] = {}
        st.st_port_by_local: dict[tuple, tuple] = {}
        st.st_port_by_global: dict[tuple, tuple] = {}
        st.st_out_by_global: dict[int, int] = {}
        st.st_out_by_local: dict[int, int] = {}
        st.global_addrs: set[int] = set()
        st.pool_ranges = []
        st.out_pool_ranges = []
        for s in model.nat.statics:
            local = int(s.local)
            if s.global_interface is not None:
                g = self._if_addr(model, s.global_interface)
                if g is None:
                    continue
            elif s.global_ is not None:
                g = int(s.global_)
            else:
                continue
            if s.side == "outside":
                # local = outside global address as configured? IOS:
                # "ip nat outside source static OUTSIDE-GLOBAL OUTSIDE-LOCAL"
                og, ol = local, g
                st.st_out_by_global[og] = ol
                st.st_out_by_local[ol] = og
                t = Translation(STATIC, 0, None, None, (ol, None), (og, None), now)
                t.static_cfg = s
                st.statics.append(t)
                continue
            if s.protocol in ("tcp", "udp"):
                proto = 6 if s.protocol == "tcp" else 17
                lp, gp = s.local_port, s.global_port
                if lp is None or gp is None:
                    continue
                st.st_port_by_local[(proto, local, lp)] = (g, gp)
                st.st_port_by_global[(proto, g, gp)] = (local, lp)
                st.static_ports[(proto, g, gp)] = [local, lp, -1]
                t = Translation(STATIC, proto, (local, lp), (g, gp), None, None, now)
            else:
                st.st_in_by_local.setdefault(local, g)
                st.st_in_by_global.setdefault(g, local)
                t = Translation(STATIC, 0, (local, None), (g, None), None, None, now)
            t.static_cfg = s
            if s.global_interface is None:
                st.global_addrs.add(g)
            st.statics.append(t)
        for d in model.nat.dynamics:
            p = model.nat.pools.get(d.pool) if d.pool else None
            if p is not None:
                (st.out_pool_ranges if d.side == "outside" else st.pool_ranges).append(
                    (int(p.start), int(p.end)))

    # ------------------------------------------------------------------
    # queries for the router

    def is_global_address(self, addr: int) -> bool:
        """True for inside global addresses of static entries and for the
        addresses of pools in use (the router answers ARP for them on the
        outside, as IOS does)."""
        if addr in self.global_addrs:
            return True
        for lo, hi in self.pool_ranges:
            if lo <= addr <= hi:
                return True
        return False

    def is_outside_local_address(self, addr: int) -> bool:
        """True for outside local addresses of ``ip nat outside source
        static`` and of the bindings of ``ip nat outside source list`` (the
        router answers ARP for them on the inside)."""
        return addr in self.st_out_by_local or addr in self.obind_by_local

    def _ol_for(self, og: int) -> int:
        """The outside local address of outside global ``og`` (itself when
        no outside translation exists)."""
        ol = self.st_out_by_global.get(og)
        if ol is not None:
            return ol
        b = self.obind_by_global.get(og)
        return b.ol if b is not None else og

    def _og_for(self, ol: int) -> int:
        og = self.st_out_by_local.get(ol)
        if og is not None:
            return og
        b = self.obind_by_local.get(ol)
        return b.og if b is not None else ol

    def _in_out_pool(self, a) -> bool:
        for lo, hi in self.out_pool_ranges:
            if lo <= a <= hi:
                return True
        return False

    def outside_routes(self):
        """(outside local, outside global) of the live outside bindings
        whose rule has ``add-route``."""
        return [(b.ol, b.og) for b in self.obind_by_local.values()
                if b.rule is not None and b.rule.add_route and not b.dead]

    # ------------------------------------------------------------------
    # the packet path

    def _translate(self, pkt, in_if=None, out_if=None, rewrite=True, outbound=True):
        """:meth:`outbound` (the very function: one call less on the path
        of every translated connection) and, with ``outbound`` False,
        :meth:`inbound`."""
        proto = pkt.proto
        if pkt.frag:
            return self._fragment(pkt, outbound, rewrite)
        if proto == 1:
            if pkt.icmp_type in _ICMP_ERRORS:
                if pkt.inner is None:
                    return DROP         # a truncated error: identifies nothing
                return self.translate_icmp_error(pkt, OUTBOUND if outbound else INBOUND)
            sp, dp = pkt.icmp_id, 0
        else:
            sp, dp = pkt.sport, pkt.dport
        flows = self.flows_in if outbound else self.flows_out
        key = proto << 96 | pkt.src << 64 | sp << 48 | pkt.dst << 16 | dp     # flow_key
        t = flows.get(key)
        if t is None:
            self.misses += 1
            create = self._create_outbound if outbound else self._create_inbound
            t = create(pkt, proto, sp, dp, key)
            if t is None or t is DROP:
                return t
            if t is not self.created or pkt.tcp_flags & _ACK_RST_FIN:
                self._touch(t, pkt.tcp_flags)
            # else: an entry _make just made (last_use, its parents' too, set
            # now) for a packet that moves no TCP state: _touch would do nothing
        else:
            self.hits += 1
            self._touch(t, pkt.tcp_flags)
        if rewrite:
            rw = t.rw[0 if outbound else 1]
            if "nat" in debugging.enabled:
                self._debug(pkt, rw)
            # _apply, inline (not a fragment: pkt.frag is 0 here)
            v = pkt.vnet
            rw.apply(pkt.frame, pkt.l3, pkt.l4,
                     (proto == 6 or proto == 17) and bool(v) and bool(v[0] & 1), True)
            src, dst, sp, dp = rw.new
            pkt.src = src
            pkt.dst = dst
            if proto == 1:
                pkt.icmp_id = sp
            elif proto == 6 or proto == 17:
                pkt.sport = sp
                pkt.dport = dp
        if pkt.mf:
            self._note_fragment(outbound, pkt, t)
        return t

    #: ``outbound(pkt, in_if=None, out_if=None, rewrite=True)``: a packet
    #: from an inside interface routed to an outside one.  Returns the
    #: Translation (the packet is rewritten to global addresses when
    #: ``rewrite``), None (no NAT applies: forward as is) or :data:`DROP`.
    outbound = _translate

    def inbound(self, pkt, in_if=None, rewrite=True):
        """A packet arriving on an outside interface (before routing).
        Returns the Translation (the packet is rewritten to local addresses
        when ``rewrite``), None (no entry, no static: not translated) or
        :data:`DROP`."""
        return self._translate(pkt, in_if, None, rewrite, False)

    @staticmethod
    def _debug(pkt, rw):
        """``debug ip nat``: ``NAT: s=10.0.0.2->203.0.113.1, d=192.0.2.9 [4242]``."""
        os_, od, _a, _b = rw.old
        ns, nd, _c, _d = rw.new
        debugging.line("nat", "NAT: s=%s%s, d=%s%s [%d]" % (
            ip_str(os_), "->" + ip_str(ns) if ns != os_ else "",
            ip_str(od), "->" + ip_str(nd) if nd != od else "", pkt.ip_id))

    def touch(self, t, now=None, tcp_flags=None):
        """A packet of ``t``'s flow went through (session fast path).

        Pass the packet's ``tcp_flags`` so the TCP timeouts follow the
        handshake and FIN/RST as IOS does.  Without them (None) the caller
        is taken to track the TCP state itself: a TCP entry still waiting
        for its handshake is moved to ``tcp-timeout`` so that it never
        expires under a live session."""
        self.hits += 1
        if t.owner is not None:
            # lives and dies with its session (every packet of an inspected
            # connection after the first): _touch's last-use part, inline
            if now is None:
                now = self.clock.seconds()
            t.last_use = now
            p = t.parent
            if p is not None:
                p.last_use = now
            p = t.oparent
            if p is not None:
                p.last_use = now
            return
        if tcp_flags is None:
            if t.proto == 6 and t.tcp_state == T_SYN:
                tcp_flags = ACK
            else:
                tcp_flags = 0
        self._touch(t, tcp_flags, now)

    # -- no state before proof ---------------------------------------------

    def discard(self, t) -> None:
        """The packet that just created ``t`` (``self.created``) was
        dropped after NAT (output ACL, inspection thresholds, no route,
        ...): remove the entry, as if it had never been made."""
        if t is not None and t is not DROP and t is self.created and not t.dead \
                and t.owner is None:
            self.created = None
            self._remove(t)
            d, self.created_door = self.created_door, None
            if d is not None and t.inside_local == d.inside_local \
                    and t.inside_global == d.inside_global:
                # the packet that used an FTP/SIP door was dropped later
                # (a zone policy): the door is still owed to the real peer
                self.reserve(d.proto, d.il, d.ilp,
                             remote=d.remote)
            b = self.created_obind
            if b is not None and b is t.oparent and b.refcount <= 0:
                self.created_obind = None
                self._remove(b)

    def adopt(self, t, owner) -> None:
        """``t`` lives and dies with ``owner`` (the inspection session made
        for the packet that created it): its NAT timeouts no longer apply;
        :meth:`release` removes it when the session goes, so a half-open
        session's translation dies with it at synwait."""
        t.owner = owner
        t.timeout = None
        self.wheel.remove(t)                # _unbucket

    def release(self, t, owner) -> None:
        """``owner``, which adopted ``t``, is gone: so is ``t``."""
        if t.owner is owner and not t.dead:
            t.owner = None
            self.expired += 1
            self._remove(t)

    def _touch(self, t, flags, now=None):
        now = self.clock.seconds() if now is None else now
        t.last_use = now
        p = t.parent
        if p is not None:
            p.last_use = now
        p = t.oparent
        if p is not None:
            p.last_use = now
        if t.owner is not None:
            return          # lives and dies with its session
        if t.proto == 6 and flags:
            if flags & (FIN | RST):
                if t.tcp_state != T_FINRST:
                    t.tcp_state = T_FINRST
                    t.timeout = self.timeouts.finrst_timeout
                    self._schedule(t)
            elif t.tcp_state == T_SYN and flags & ACK and not flags & SYN:
                t.tcp_state = T_EST
                t.timeout = self.timeouts.tcp_timeout
                if t.slot is None:
                    self._schedule(t)

    @staticmethod
    def _apply(pkt, rw):
        first = pkt.frag == 0
        proto = pkt.proto
        partial = proto in (6, 17) and bool(pkt.vnet) and bool(pkt.vnet[0] & 1)
        rw.apply(pkt.frame, pkt.l3, pkt.l4, partial, first)
        src, dst, sp, dp = rw.new
        pkt.src = src
        pkt.dst = dst
        if first:
            if proto == 1:
                pkt.icmp_id = sp
            elif proto in (6, 17):
                pkt.sport = sp
                pkt.dport = dp

    # -- fragments -------------------------------------------------------

    def _note_fragment(self, inside, pkt, t):
        # key on the packet as it arrived (before the rewrite)
        rw = t.forward if inside else t.reverse
        src, dst = rw.old[0], rw.old[1]
        fr = self.frags
        if len(fr) >= _FRAG_MAX:
            # bounded: drop the expired ones, then the oldest down to 3/4 (so
            # the scan is paid once per quarter of the table, not per packet)
            now = self.clock.seconds()
            for k in [k for k, v in fr.items() if v[1] < now]:
                del fr[k]
            if len(fr) >= _FRAG_MAX:
                for k in list(itertools.islice(fr, len(fr) - _FRAG_MAX * 3 // 4)):
                    del fr[k]
        fr[(inside, pkt.proto, src, dst, pkt.ip_id)] = (t, self.clock.seconds() + _FRAG_LIFETIME)

    def _fragment(self, pkt, inside, rewrite):
        k = (inside, pkt.proto, pkt.src, pkt.dst, pkt.ip_id)
        v = self.frags.get(k)
        if v is not None and v[0].dead:
            v = None
        if v is not None:
            t = v[0]
            if not pkt.mf:
                del self.frags[k]
            self.hits += 1
            if rewrite:
                self._apply(pkt, t.forward if inside else t.reverse)
            return t
        # No first fragment seen: address-only entries still apply.
        if inside:
            g = self.st_in_by_local.get(pkt.src)
            if g is None:
                b = self.bind_by_local.get(pkt.src)
                g = b.ig if b is not None else None
            og = self._og_for(pkt.dst)
            if og == pkt.dst and self.out_pool_ranges and self._in_out_pool(pkt.dst):
                return DROP             # an outside pool address nobody holds
            if g is None:
                for r in self.rules:
                    acl = self.acls.get(r.acl)
                    if acl is not None and acl.permits_fields(pkt.proto, pkt.src, pkt.dst,
                                                              nonfirst=True):
                        return DROP
                if og == pkt.dst:
                    return None
                g = pkt.src
            rw = Rewrite(pkt.proto, (pkt.src, pkt.dst, 0, 0), (g, og, 0, 0))
        else:
            loc = self.st_in_by_global.get(pkt.dst)
            if loc is None:
                b = self.bind_by_global.get(pkt.dst)
                loc = b.il if b is not None else None
            ol = self._ol_for(pkt.src)
            if ol == pkt.src:
                for r in self.out_rules:
                    acl = self.acls.get(r.acl)
                    if acl is not None and acl.permits_fields(pkt.proto, pkt.src, pkt.dst,
                                                              nonfirst=True):
                        return DROP     # no binding yet: the first fragment makes it
            if loc is None:
                if self._in_pool(pkt.dst):
                    return DROP
                if ol == pkt.src or self._is_pat_address(pkt.dst):
                    return None
                loc = pkt.dst
            rw = Rewrite(pkt.proto, (pkt.src, pkt.dst, 0, 0), (ol, loc, 0, 0))
        if rewrite:
            self._apply(pkt, rw)
        return None

    def _in_pool(self, a):
        for lo, hi in self.pool_ranges:
            if lo <= a <= hi:
                return True
        return False

    def _is_pat_address(self, a):
        for r in self.rules:
            if r.overload and a in r.addresses:
                return True
        return False

    # -- creation ----------------------------------------------------------

    def _create_outbound(self, pkt, proto, sp, dp, key=None):
        """``key``: the packet's flow_key (the entry's ``in_key``)."""
        src, dst = pkt.src, pkt.dst
        og = self.st_out_by_local.get(dst)
        oparent = None
        if og is None:
            oparent = self.obind_by_local.get(dst)
            if oparent is not None:
                og = oparent.og
            elif self.out_pool_ranges and self._in_out_pool(dst):
                return DROP         # an outside pool address nobody holds
            else:
                og = dst
        ig = None
        igp = sp
        parent = rule = pat_key = None
        ported = proto in (1, 6, 17)
        if proto in (6, 17):
            s = self.st_port_by_local.get((proto, src, sp))
            if s is not None:
                ig, igp = s
        if ig is None:
            g = self.st_in_by_local.get(src)
            if g is not None:
                ig = g
        if ig is None:
            b = self.bind_by_local.get(src)
            if b is not None:
                if ported and not self._limits_ok(src, True):
                    return DROP
                ig, parent, rule = b.ig, b, b.rule
        if ig is None:
            for r in self.rules:
                acl = self.acls.get(r.acl)
                if acl is None or not acl.check(pkt):
                    continue
                if (ported or r.overload) and not self._limits_ok(src, True):
                    r.misses += 1
                    return DROP
                if r.overload:
                    a = self._pat_alloc(r, proto, src, sp, og, dp)
                    if a is None:
                        self._alloc_failed(r)
                        return DROP
                    ig, igp, pat_key = a
                else:
                    b = self._bind(r, src)
                    if b is None:
                        self._alloc_failed(r)
                        return DROP
                    ig, parent = b.ig, b
                rule = r
                break
            else:
                if ig is None and og == dst:
                    return None
        if oparent is not None:
            oparent.last_use = self.clock.seconds()
        if not ported and (rule is None or not rule.overload):
            return self._portless(proto, src, ig if ig is not None else src, dst, og, parent)
        if ig is None:
            ig = src
        if rule is None and proto == 6 and pkt.tcp_flags & _SYN_ACK_RST_FIN != SYN:
            # a static translation is a function of the packet: a TCP segment
            # that cannot open a connection (a SYN/ACK or RST to a flooder's
            # spoofed address, a stray ACK) is translated without an entry
            return self._unregistered(proto, src, sp, ig, igp, dst, dp, og, dp)
        if rule is None and not self._limits_ok(src, False):
            return DROP
        return self._make(proto, src, sp, ig, igp, dst, dp, og, dp, parent, rule, pat_key,
                          oparent, key)

    def _create_inbound(self, pkt, proto, sp, dp, key=None):
        """``key``: the packet's flow_key (the entry's ``out_key``)."""
        self.created_obind = None
        self.created_door = None
        src = pkt.src
        ol = self.st_out_by_global.get(src)
        oparent = None
        if ol is None:
            oparent = self.obind_by_global.get(src)
            if oparent is None and self.out_rules:
                oparent = self._outside_bind(pkt, proto)
                if oparent is DROP:
                    return DROP
            ol = oparent.ol if oparent is not None else src
        t = self._create_inbound2(pkt, proto, sp, dp, ol, oparent, key)
        b = self.created_obind
        if b is not None and (t is None or t is DROP):
            # the binding this packet made serves nothing: no state before proof
            self.created_obind = None
            self._remove(b)
        return t

    def _outside_bind(self, pkt, proto):
        """``ip nat outside source list``: the binding for the source of
        ``pkt`` (an outside global address) if an outside rule's ACL permits
        it; None if none does; DROP when it cannot be made (pool exhausted,
        max-entries, a TCP segment that cannot open a connection)."""
        for r in self.out_rules:
            acl = self.acls.get(r.acl)
            if acl is None or not acl.check(pkt):
                continue
            if proto == 6 and pkt.tcp_flags & _SYN_ACK_RST_FIN != SYN:
                return DROP         # a stray segment makes no binding
            if not self._limits_ok(pkt.src, False):
                r.misses += 1
                return DROP
            b = self._obind(r, pkt.src)
            if b is None:
                self._alloc_failed(r)
                return DROP
            self.created_obind = b
            return b
        return None

    def _obind(self, rule, og):
        addrs = rule.addresses
        n = len(addrs)
        if not n or rule.allocated >= n:
            return None                 # O(1): the pool is full
        # the lowest free address: every address below rule.cursor is taken
        # (a release moves the cursor back), so the scan is amortised O(1)
        for i in range(min(rule.cursor, n), n):
            a = addrs[i]
            if a not in self.obind_by_local and a not in self.st_out_by_local:
                rule.cursor = i + 1
                now = self.clock.seconds()
                b = Translation(BINDING, 0, None, None, (a, None), (og, None), now)
                b.rule = rule
                b.timeout = self.timeouts.timeout
                self.obind_by_local[a] = b
                self.obind_by_global[og] = b
                self.entries[b] = b
                self._note_peak(now)
                rule.allocated += 1
                rule.refcount += 1
                self._schedule(b)
                if rule.add_route and self.route_hook is not None:
                    self.route_hook(True, a, og)
                return b
        return None

    def _create_inbound2(self, pkt, proto, sp, dp, ol, oparent, key=None):
        src, dst = pkt.src, pkt.dst
        if oparent is not None:
            oparent.last_use = self.clock.seconds()
        il = None
        ilp = dp if proto != 1 else sp
        parent = rule = pat_key = None
        if proto in (6, 17):
            s = self.st_port_by_global.get((proto, dst, dp))
            if s is not None:
                il, ilp = s
        if il is None:
            loc = self.st_in_by_global.get(dst)
            if loc is not None:
                il = loc
        if il is None:
            b = self.bind_by_global.get(dst)
            if b is not None:
                il, parent, rule = b.il, b, b.rule
        if il is None and self.doors:
            d = self.doors.get((proto, dst, dp))
            if d is not None and not d.dead and (d.remote is None or d.remote == src):
                self._drop_door(d, keep_port=True)
                self.created_door = d          # discard() puts it back
                il, ilp = d.inside_local
                pat_key, rule, parent = d.pat_key, d.rule, d.parent
                if parent is not None:
                    parent.refcount -= 1       # _make takes it again
                if rule is not None:
                    rule.refcount -= 1
        if il is None:
            if self._in_pool(dst):
                return DROP         # a pool address nobody holds: not ours to forward
            if ol == src or self._is_pat_address(dst):
                return None
            il = dst
        if proto not in (1, 6, 17):
            return self._portless(proto, il, dst, ol, src, parent)
        if proto == 6 and parent is None and rule is None and \
                pkt.tcp_flags & _SYN_ACK_RST_FIN != SYN:
            # no entry for a segment that cannot open a connection (see
            # _create_outbound): an ACK or RST flood to a published port
            # leaves no state
            return self._unregistered(6, il, ilp, dst, dp, ol, sp, src, sp)
        if not self._limits_ok(il, parent is not None or rule is not None):
            if pat_key is not None:          # an FTP door's port
                self._port_release(proto, dst, dp, pat_key)
            return DROP
        if proto == 1:
            # ICMP: id unchanged for non-PAT entries
            return self._make(1, il, ilp, dst, sp, ol, 0, src, 0, parent, rule, pat_key,
                              oparent)
        return self._make(proto, il, ilp, dst, dp, ol, sp, src, sp, parent, rule, pat_key,
                          oparent, None, key)

    def _unregistered(self, proto, il, ilp, ig, igp, ol, olp, og, ogp):
        """A translation used for one packet only (its rewrites), kept
        nowhere."""
        t = Translation(FLOW, proto, (il, ilp), (ig, igp), (ol, olp), (og, ogp),
                        self.clock.seconds())
        t.rw = make_rewrites(proto, il, ilp, ig, igp, ol, olp, og, ogp)
        return t

    def _portless(self, proto, il, ig, ol, og, parent):
        """A protocol without ports (GRE, ESP, IP 253, ...) through a
        static or a dynamic simple entry: the address rewrite is all there
        is, so no flow entry is kept (IOS would keep one per destination
        for ``timeout``, 24 h: a sweep of destinations fills the table).
        Returns an unregistered Translation (cached for statics)."""
        now = self.clock.seconds()
        key = None
        if parent is not None:
            parent.last_use = now        # keeps the binding alive
        else:
            key = (proto, il, ig, ol, og)
            t = self._stateless.get(key)
            if t is not None:
                return t
        t = Translation(FLOW, proto, (il, None), (ig, None), (ol, None), (og, None), now)
        t.rw = make_rewrites(proto, il, 0, ig, 0, ol, 0, og, 0)
        if key is not None:
            if len(self._stateless) >= 4096:
                self._stateless.clear()
            self._stateless[key] = t
        return t

    # -- limits --------------------------------------------------------------

    #: ``ip nat translation max-entries`` when none is configured (IOS: no
    #: limit).  About 1.5 KB per entry (docs/nat-order.md); with the session
    #: table's default limit the appliance stays under 256 MB.
    DEFAULT_MAX_ENTRIES = 25000
    #: ``ip nat translation max-entries all-host`` when none is configured:
    #: entries one inside host may hold through the dynamic rules (IOS: no
    #: limit), so one host cannot take every PAT port from the others.
    DEFAULT_HOST_MAX = 4096
    LIMIT_LOG_INTERVAL = 60.0

    def max_entries(self) -> int:
        m = self.timeouts.max_entries
        return self.DEFAULT_MAX_ENTRIES if m is None else m

    def host_max(self, host: int, count: bool = True) -> int:
        """The per-host limit of inside local ``host``: ``max-entries host``,
        else the first ``max-entries list`` whose ACL permits it, else
        ``all-host`` (default :data:`DEFAULT_HOST_MAX`).  ``count``: False
        evaluates the list's ACL without counting a match (packet-tracer)."""
        to = self.timeouts
        if to.max_entries_host:
            from ipaddress import IPv4Address
            n = to.max_entries_host.get(IPv4Address(host))
            if n is not None:
                return n
        for name, n, _line in to.max_entries_list:
            acl = self.acls.get(name)
            if acl is not None and (acl.check_fields(0, host) if count
                                    else acl.permits_fields(0, host)):
                return n
        m = to.max_entries_all_host
        return self.DEFAULT_HOST_MAX if m is None else m

    #: adaptive timeouts (as pf's adaptive.start/end): above START of the
    #: table limit every timeout is scaled by (END - n) / (END - START), so
    #: at the limit entries live a third of their timeout.
    ADAPTIVE_START = 0.6
    ADAPTIVE_END = 1.2

    def adaptive(self) -> float:
        """The factor applied to timeouts now (1.0 below 60% of the limit)."""
        lim = self.max_entries()
        n = len(self.entries)
        start = lim * self.ADAPTIVE_START
        if n <= start:
            return 1.0
        end = lim * self.ADAPTIVE_END
        return max(0.0, (end - n) / (end - start))

    def limit_reached(self, host, dynamic, count: bool = False):
        """The limit one more entry would exceed, or None (room): the
        table's (``max-entries``) as ``(None, limit, n)`` and, for an entry
        an inside host makes through a dynamic rule, that host's as
        ``(host, limit, n)``.  Changes nothing (``count``: the ACL of a
        ``max-entries list`` counts its match, as for a real packet).
        :meth:`_limits_ok` and packet-tracer both decide with it."""
        m = self.max_entries()
        if len(self.entries) >= m:
            return None, m, len(self.entries)
        if dynamic:
            n = self.host_count.get(host, 0)
            if n >= self.DEFAULT_HOST_MAX or self.timeouts.max_entries_all_host is not None \
                    or self.timeouts.max_entries_host or self.timeouts.max_entries_list:
                m = self.host_max(host, count)
                if n >= m:
                    return host, m, n
        return None

    def _limits_ok(self, host, dynamic) -> bool:
        """Room for one more entry (:meth:`limit_reached`).  A refusal is
        counted and logged (once a minute per limit and host)."""
        to = self.timeouts
        m = to.max_entries
        if len(self.entries) < (self.DEFAULT_MAX_ENTRIES if m is None else m):
            # room in the table: limit_reached's answer without a call when
            # no per-host or list limit is configured (host_max is then
            # all-host's)
            if not dynamic:
                return True
            if not to.max_entries_host and not to.max_entries_list:
                m = to.max_entries_all_host
                if self.host_count.get(host, 0) < (self.DEFAULT_HOST_MAX if m is None else m):
                    return True
        hit = self.limit_reached(host, dynamic, count=True)
        if hit is None:
            return True
        if hit[0] is None:
            self.limit_misses += 1
        else:
            self.host_misses += 1
        self._limit_log(hit[0], hit[1])
        return False

    def _limit_log(self, host, limit):
        now = self.clock.seconds()
        last = self._limit_logged.get(host)
        if last is not None and now - last < self.LIMIT_LOG_INTERVAL:
            return
        if len(self._limit_logged) > 1024:
            self._limit_logged = {h: t for h, t in self._limit_logged.items()
                                  if now - t < self.LIMIT_LOG_INTERVAL}
        self._limit_logged[host] = now
        if host is None:
            ios.message("IPNAT", 4, "ENTRY_LIMIT_REACHED",
                        "Reached the max-entries limit of %d translations" % limit)
        else:
            ios.message("IPNAT", 4, "ENTRY_LIMIT_REACHED",
                        "Reached the max-entries limit of %d translations for host %s"
                        % (limit, ip_str(host)))

    def _make(self, proto, il, ilp, ig, igp, ol, olp, og, ogp, parent, rule, pat_key,
              oparent=None, in_key=None, out_key=None):
        """A flow entry, registered.  ``in_key``/``out_key``: its keys when
        the caller has them (the creating packet's own flow_key), TCP/UDP."""
        now = self.clock.seconds()
        flows_in, flows_out = self.flows_in, self.flows_out
        if proto == 6 or proto == 17:
            # the set-up path of every TCP and UDP connection: flow_key,
            # make_rewrites (port_pair) and _timeout_for, inline
            if in_key is None:
                in_key = proto << 96 | il << 64 | ilp << 48 | ol << 16 | olp
            if out_key is None:
                out_key = proto << 96 | og << 64 | ogp << 48 | ig << 16 | igp
            if out_key in flows_out or in_key in flows_in:
                # the global side is taken by another flow (a static port or
                # an address-only translation of another host): cannot translate.
                if pat_key is not None:
                    self._port_release(proto, ig, igp, pat_key)
                return DROP
            t = new_flow(proto, il, ilp, ig, igp, ol, olp, og, ogp,
                         port_pair(proto, il, ilp, ig, igp, ol, olp, og, ogp), now)
            to = self.timeouts
            if proto == 6:
                to = to.syn_timeout
            elif ilp == 53 or olp == 53:
                to = to.dns_timeout
            else:
                to = to.udp_timeout
        else:
            if proto == 1:
                in_key = flow_key(1, il, ilp, ol, 0)
                out_key = flow_key(1, og, igp, ig, 0)
                cols = (ilp, igp, ilp, igp)
                olp = ogp = 0
            else:
                ilp = igp = olp = ogp = 0
                in_key = flow_key(proto, il, 0, ol, 0)
                out_key = flow_key(proto, og, 0, ig, 0)
                cols = (None, None, None, None)
            if out_key in flows_out or in_key in flows_in:
                if pat_key is not None:
                    self._port_release(proto, ig, igp, pat_key)
                return DROP
            t = new_flow(proto, il, cols[0], ig, cols[1], ol, cols[2], og, cols[3],
                         make_rewrites(proto, il, ilp, ig, igp, ol, olp, og, ogp), now)
            to = self._timeout_for(proto, ilp, olp)
        t.rule = rule
        t.pat_key = pat_key
        if rule is not None:
            t.host = il
            hc = self.host_count
            hc[il] = hc.get(il, 0) + 1
            rule.refcount += 1
        else:
            t.host = None
        t.parent = parent
        if parent is not None:
            parent.refcount += 1
            parent.last_use = now
        t.oparent = oparent
        if oparent is not None:
            oparent.refcount += 1
            oparent.last_use = now
        t.timeout = to
        flows_in[in_key] = t
        flows_out[out_key] = t
        entries = self.entries
        entries[t] = t
        n = len(entries)
        if to is not None:
            # _schedule for an entry in no slot yet, adaptive() inline
            m = self.timeouts.max_entries
            lim = self.DEFAULT_MAX_ENTRIES if m is None else m
            start = lim * self.ADAPTIVE_START
            if n > start:
                end = lim * self.ADAPTIVE_END
                b = int(math.ceil(now + to * max(0.0, (end - n) / (end - start))))
            else:
                b = int(math.ceil(now + to))
            if self.wheel.add(t, b) and not self._sweeping:
                self.wheel.call_at(b)
        self.created = t
        n += len(self.statics)          # _note_peak
        if n > self.peak:
            self.peak = n
            self.peak_at = now
        if self.observer is not None:
            self.observer.translation_created(t)
        return t

    def _note_peak(self, now):
        n = len(self.entries) + len(self.statics)
        if n > self.peak:
            self.peak = n
            self.peak_at = now

    def _timeout_for(self, proto, p1, p2):
        to = self.timeouts
        if proto == 6:
            return to.syn_timeout
        if proto == 17:
            return to.dns_timeout if 53 in (p1, p2) else to.udp_timeout
        if proto == 1:
            return to.icmp_timeout
        # protocols without ports (PAT address-only entries): IOS keeps them
        # ``timeout`` (24 h); cbac at most ``udp-timeout`` (300 s) idle
        short = to.udp_timeout if to.udp_timeout is not None else 300
        return short if to.timeout is None else min(to.timeout, short)

    # -- PAT ports ---------------------------------------------------------

    def pat_choice(self, rule, proto, il, ilp, og=0, ogp=0):
        """The (IG, IGp) PAT ``rule`` would give a new flow from (il, ilp)
        to (og, ogp) now, or None (nothing free); changes nothing.  The
        same code as the real allocation (packet-tracer asks it)."""
        a = self._pat_alloc(rule, proto, il, ilp, og, ogp, dry=True)
        return None if a is None else a[:2]

    def _pat_alloc(self, rule, proto, il, ilp, og=0, ogp=0, prefer=None, dry=False):
        """(IG, IGp, pat_key) or None.  Endpoint-independent: an inside
        (address, port) keeps its global port for every destination while
        it is in use.  The original port is kept when free; else the next
        free port of the same IOS range (1-511, 512-1023, 1024-65535).
        ``dry``: the same answer, nothing taken or moved (:meth:`pat_choice`)."""
        if proto not in (1, 6, 17):
            # no ports: address-only, one inside host per (global, remote)
            for ig in rule.addresses:
                if flow_key(proto, og, 0, ig, 0) not in self.flows_out:
                    return ig, 0, None
            return None
        pk = (proto, il, ilp, rule.id)
        m = self.pat_by_local.get(pk)
        tw = None
        if proto == 6 and self.time_wait:
            tw = self._time_wait_now()
        if m is not None and (tw is None or (m[1], m[2], og, ogp) not in tw):
            if not dry:
                self.ports[m][2] += 1
            return m[1], m[2], pk
        addrs = rule.addresses
        if prefer is not None:
            addrs = itertools.chain((prefer,), (x for x in addrs if x != prefer))
        if m is not None:
            # the inside port keeps its mapping for other destinations, but
            # this remote still holds the last connection on that 4-tuple:
            # this flow gets a port of its own
            for ig in addrs:
                p = self._alloc_port(proto, ig, ilp, tw, og, ogp, dry)
                if p is not None:
                    if not dry:
                        self.ports[(proto, ig, p)] = [il, ilp, 1]
                    return ig, p, (proto, il, ilp, rule.id, p)
            return None
        if dry:
            for ig in addrs:
                p = self._alloc_port(proto, ig, ilp, tw, og, ogp, True)
                if p is not None:
                    return ig, p, pk
            return None
        portmaps = self.portmaps
        for ig in addrs:
            # _alloc_port, inline
            pm = portmaps.get((proto, ig))
            if pm is None:
                pm = self._portmap(proto, ig)
            p = pm.alloc(ilp)
            if tw is not None and p is not None and (ig, p, og, ogp) in tw:
                p = self._skip_time_wait(pm, p, ig, ilp, tw, og, ogp)
            if p is not None:
                k = (proto, ig, p)
                self.ports[k] = [il, ilp, 1]
                self.pat_by_local[pk] = k
                return ig, p, pk
        return None

    #: seconds between two %IPNAT-4-ADDR_ALLOC_FAILURE lines of one rule
    ALLOC_LOG_INTERVAL = 60.0

    def _alloc_failed(self, rule):
        """No address or port left for ``rule``: counted (the rule's
        ``misses`` and ``show ip nat statistics``) and logged as IOS does,
        at most once a minute per rule with the number of failures since
        the last line."""
        rule.misses += 1
        self.alloc_failures += 1
        rule.unlogged += 1
        now = self.clock.seconds()
        if rule.logged_at is not None and now - rule.logged_at < self.ALLOC_LOG_INTERVAL:
            return
        rule.logged_at = now
        n, rule.unlogged = rule.unlogged, 0
        ios.message("IPNAT", 4, "ADDR_ALLOC_FAILURE",
                    "Address allocation failed; pool %s may be exhausted [%d]"
                    % (rule.pool if rule.pool is not None else rule.interface, n))

    def _portmap(self, proto, ig, dry=False):
        """The _PortMap of (proto, ig); ``dry``: a copy (or one not kept),
        for an allocation that must change nothing."""
        m = self.portmaps.get((proto, ig))
        if m is None:
            m = _PortMap(proto, [k[2] for k in self.ports if k[0] == proto and k[1] == ig])
            if not dry:
                self.portmaps[(proto, ig)] = m
        elif dry:
            m = m.copy()
        return m

    def _time_wait_now(self):
        """The reserved 4-tuples, expired ones dropped first."""
        tw = self.time_wait
        order = self._tw_order
        now = self.clock.seconds()
        while order and order[0][0] <= now:
            until, key = order.popleft()
            if tw.get(key) == until:
                del tw[key]
        return tw

    def _reserve_time_wait(self, t):
        """A PAT TCP translation closed: keep its 4-tuple for the remote's
        TIME_WAIT (see :data:`PAT_TIME_WAIT`)."""
        key = (t.ig, t.igp, t.og, t.ogp)
        until = self.clock.seconds() + PAT_TIME_WAIT
        tw = self.time_wait
        order = self._tw_order
        while len(tw) >= PAT_TIME_WAIT_MAX and order:
            old_until, old = order.popleft()
            if tw.get(old) == old_until:
                del tw[old]
        tw[key] = until
        order.append((until, key))

    #: at most this many ports are passed over because the remote still
    #: holds them in TIME_WAIT (keeps the allocation O(1))
    TIME_WAIT_SKIP = 64

    def _alloc_port(self, proto, ig, want, tw, og, ogp, dry=False):
        """A free global port of ``ig`` (``want`` when free, else the next of
        its range) that, for TCP, the remote (og, ogp) does not hold in
        TIME_WAIT, or None.  ``dry``: run on a copy of the port map, so the
        answer is the real one and nothing is taken."""
        pm = self._portmap(proto, ig, dry)
        p = pm.alloc(want)
        if tw is None or p is None or (ig, p, og, ogp) not in tw:
            return p
        return self._skip_time_wait(pm, p, ig, want, tw, og, ogp)

    def _skip_time_wait(self, pm, p, ig, want, tw, og, ogp):
        """:meth:`_alloc_port` after port ``p`` of ``pm`` (taken) turned out
        to be in the remote's TIME_WAIT: the next ports of the range, at
        most :data:`TIME_WAIT_SKIP` passed over (and given back)."""
        skipped = []
        while p is not None and (ig, p, og, ogp) in tw and len(skipped) < self.TIME_WAIT_SKIP:
            skipped.append(p)
            p = pm.alloc(want)
        for q in skipped:
            pm.give(q)
        return p


    def _port_release(self, proto, ig, igp, pk):
        k = (proto, ig, igp)
        v = self.ports.get(k)
        if v is None or v[2] < 0:
            return
        v[2] -= 1
        if v[2] <= 0:
            del self.ports[k]
            m = self.portmaps.get((proto, ig))
            if m is not None:
                m.give(igp)
            if self.pat_by_local.get(pk) == k:
                del self.pat_by_local[pk]

    # -- dynamic simple bindings --------------------------------------------

    def _bind(self, rule, il):
        addrs = rule.addresses
        n = len(addrs)
        if not n:
            return None
        i = rule.cursor
        for _ in range(n):
            a = addrs[i]
            if a not in self.bind_by_global and a not in self.st_in_by_global:
                rule.cursor = 0        # IOS hands out the lowest free address
                now = self.clock.seconds()
                b = Translation(BINDING, 0, (il, None), (a, None), None, None, now)
                b.rule = rule
                b.timeout = self.timeouts.timeout
                self.bind_by_local[il] = b
                self.bind_by_global[a] = b
                self.entries[b] = b
                self._note_peak(now)
                rule.allocated += 1
                rule.refcount += 1
                self._schedule(b)
                return b
            i = (i + 1) % n
        return None

    # -- reservations (FTP data through PAT) -------------------------------------

    def reserve(self, proto, local_addr, local_port, out_if_name=None, remote=None,
                like=None):
        """A connection to ``local_addr:local_port`` will arrive from the
        outside (``remote`` if given): returns the ``(global_addr,
        global_port)`` to announce (FTP ``PORT``).  ``like``: the
        Translation of the control connection (its global address is used).
        Without a rule that applies, ``(local_addr, local_port)``."""
        if isinstance(proto, str):
            proto = {"tcp": 6, "udp": 17}[proto]
        s = self.st_port_by_local.get((proto, local_addr, local_port))
        if s is not None:
            return s
        g = self.st_in_by_local.get(local_addr)
        if g is not None:
            return g, local_port
        b = self.bind_by_local.get(local_addr)
        if b is not None:
            return b.ig, local_port
        rule = None
        if like is not None and like.rule is not None and like.rule.overload \
                and like.il == local_addr:
            rule = like.rule
        else:
            for r in self.rules:
                acl = self.acls.get(r.acl)
                if acl is not None and acl.permits_fields(proto, local_addr, remote or 0,
                                                          local_port, 0):
                    rule = r
                    break
        if rule is None:
            return local_addr, local_port
        if not rule.overload:
            b = self._bind(rule, local_addr)
            return (b.ig, local_port) if b is not None else (local_addr, local_port)
        if not self._limits_ok(local_addr, True):
            # an FTP door counts in its host's limit: PORT commands cannot
            # take the PAT ports the per-host limit protects
            return local_addr, local_port
        if like is not None and like.ig in rule.addresses:
            # same global address as the control connection
            a = self._pat_alloc(rule, proto, local_addr, local_port,
                                prefer=like.ig)
        else:
            a = self._pat_alloc(rule, proto, local_addr, local_port)
        if a is None:
            self._alloc_failed(rule)
            return local_addr, local_port
        ig, igp, pk = a
        now = self.clock.seconds()
        d = Translation(DOOR, proto, (local_addr, local_port), (ig, igp), None, None, now)
        d.remote = remote
        d.rule = rule
        d.pat_key = pk
        d.timeout = self.timeouts.syn_timeout
        old = self.doors.get(d.door_key)
        if old is not None:
            self._drop_door(old, keep_port=False)
        d.host = local_addr
        self.host_count[local_addr] = self.host_count.get(local_addr, 0) + 1
        self.doors[d.door_key] = d
        rule.refcount += 1
        self._schedule(d)
        return ig, igp

    def _drop_door(self, d, keep_port):
        if self.doors.get(d.door_key) is d:
            del self.doors[d.door_key]
        self._unbucket(d)
        d.dead = True
        h, d.host = d.host, None
        if h is not None:
            n = self.host_count.get(h, 0) - 1
            if n > 0:
                self.host_count[h] = n
            else:
                self.host_count.pop(h, None)
        if not keep_port:
            if d.pat_key is not None:
                self._port_release(d.proto, d.ig, d.igp, d.pat_key)
            if d.rule is not None:
                d.rule.refcount -= 1

    # -- timers -------------------------------------------------------------

    def _unbucket(self, t):
        """Take ``t`` out of its timer slot (O(1)): a removed entry must
        not stay referenced until its old deadline."""
        self.wheel.remove(t)

    def _schedule(self, t):
        self.wheel.remove(t)
        to = t.timeout
        if to is None:
            return
        b = int(math.ceil(t.last_use + to * self.adaptive()))
        if self.wheel.add(t, b) and not self._sweeping:
            self.wheel.call_at(b)

    def _sweep(self):
        self._sweeping = True
        try:
            self._sweep_due()
        finally:
            self._sweeping = False
        wheel = self.wheel
        if not self.entries and not self.doors:
            # only stale slots left (entries re-filed or removed)
            wheel.clear()
        b = wheel.next_slot()
        if b is not None:
            wheel.call_at(b)

    def _sweep_due(self):
        now = self.clock.seconds()
        f = self.adaptive()
        for b, bucket in self.wheel.pop_due(now + 1e-9):
            for t in bucket:
                if t.dead or t.slot != b:
                    continue
                t.slot = None
                to = t.timeout
                if to is None:
                    continue
                if t.last_use + to * f <= now + 1e-9:
                    if t.kind == BINDING and t.refcount > 0:
                        t.last_use = now
                        self._schedule(t)
                        continue
                    self._expire(t)
                else:
                    self._schedule(t)

    def _expire(self, t):
        if t.kind != DOOR:
            self.expired += 1
        self._remove(t)

    def _remove(self, t):
        if t.dead:
            return
        self._unbucket(t)
        if t.kind == DOOR:
            self._drop_door(t, keep_port=False)
            return
        t.dead = True
        t.owner = None
        self.entries.pop(t, None)
        if t.kind == FLOW:
            k = t.in_key
            if self.flows_in.get(k) is t:
                del self.flows_in[k]
            k = t.out_key
            if self.flows_out.get(k) is t:
                del self.flows_out[k]
            if t.pat_key is not None:
                self._port_release(t.proto, t.ig, t.igp, t.pat_key)
                if t.proto == 6:
                    self._reserve_time_wait(t)
            h = t.host
            if h is not None:
                n = self.host_count.get(h, 0) - 1
                if n > 0:
                    self.host_count[h] = n
                else:
                    self.host_count.pop(h, None)
            for p in (t.parent, t.oparent):
                if p is not None:
                    p.refcount -= 1
                    if t.last_use > p.last_use:
                        p.last_use = t.last_use
        elif t.kind == BINDING and t.il is None:
            ol, og = t.ol, t.og
            if self.obind_by_local.get(ol) is t:
                del self.obind_by_local[ol]
            if self.obind_by_global.get(og) is t:
                del self.obind_by_global[og]
            r = t.rule
            if r is not None:
                r.allocated -= 1
                addrs = r.addresses
                if isinstance(addrs, range) and ol in addrs:
                    r.cursor = min(r.cursor, ol - addrs.start)
                if r.add_route and self.route_hook is not None:
                    try:
                        self.route_hook(False, ol, og)
                    except Exception:
                        from twisted.logger import Logger
                        Logger(namespace="cbac.nat").failure("NAT route removal failed")
        elif t.kind == BINDING:
            a = t.il
            if self.bind_by_local.get(a) is t:
                del self.bind_by_local[a]
            g = t.ig
            if self.bind_by_global.get(g) is t:
                del self.bind_by_global[g]
            if t.rule is not None:
                t.rule.allocated -= 1
        if t.rule is not None:
            t.rule.refcount -= 1
        for fn in self.listeners:
            try:
                fn(t)
            except Exception:
                from twisted.logger import Logger
                Logger(namespace="cbac.nat").failure("NAT removal listener failed")

    def stop(self):
        self.wheel.stop()

    # ------------------------------------------------------------------
    # ICMP errors

    def translate_icmp_error(self, pkt, direction, translation=None):
        """Rewrite an ICMP error (outer header and quoted datagram) of a
        translated flow.  ``direction``: :data:`INBOUND` (arrived on the
        outside, goes to the inside) or :data:`OUTBOUND`.  Returns the
        Translation, or None (the quote belongs to no translation: the
        packet is left untouched)."""
        q = pkt.inner
        if q is None:
            return None
        qp = q.proto
        if qp == 1:
            if q.icmp_id < 0:
                return None             # a non-initial fragment: no identifier
            key = flow_key(1, q.dst, q.icmp_id, q.src, 0)
        elif qp in (6, 17):
            key = flow_key(qp, q.dst, q.dport, q.src, q.sport)
        else:
            key = flow_key(qp, q.dst, 0, q.src, 0)
        t = translation
        if t is None:
            t = (self.flows_out if direction == INBOUND else self.flows_in).get(key)
        if t is None or t.dead:
            return None
        il, ilp = t.inside_local
        ig, igp = t.inside_global
        ol, olp = t.outside_local
        og, ogp = t.outside_global
        if direction == INBOUND:
            # quote: IG:IGp -> OG:OGp  becomes  IL:ILp -> OL:OLp
            nsrc, nsp, ndst, ndp = il, ilp, ol, olp
            osrc = ol if pkt.src == og else self._ol_for(pkt.src)
            odst = il if pkt.dst == ig else pkt.dst
        else:
            # quote: OL:OLp -> IL:ILp  becomes  OG:OGp -> IG:IGp
            nsrc, nsp, ndst, ndp = og, ogp, ig, igp
            if pkt.src == il:
                osrc = ig
            else:
                osrc = self.st_in_by_local.get(pkt.src)
                if osrc is None:
                    b = self.bind_by_local.get(pkt.src)
                    osrc = b.ig if b is not None else pkt.src
            odst = og if pkt.dst == ol else self._og_for(pkt.dst)
        if qp == 1:
            nsp = nsp if direction == INBOUND else ndp    # the inside/global identifier
        rewrite_error(pkt, nsrc, ndst, nsp, ndp, osrc, odst)
        return t

    # ------------------------------------------------------------------
    # show / clear

    def show_translations(self, verbose=False) -> str:
        """``show ip nat translations [verbose]``."""
        fmt = "%-3s %-18s %-18s %-18s %s"
        lines = [fmt % ("Pro", "Inside global", "Inside local", "Outside local",
                        "Outside global")]
        now = self.clock.seconds()
        for t in list(self.statics) + list(self.entries.values()):
            if t.dead:
                continue
            lines.append(fmt % ((t.pro(),) + t.columns()))
            if verbose:
                lines.extend(self._verbose(t, now))
        return "\n".join(lines) + "\n"

    def _verbose(self, t, now):
        if t.kind == STATIC:
            flags = "static"
            if t.outside_local is not None:
                flags += ", outside"
            if t.proto and t.static_cfg is not None and t.static_cfg.extendable:
                flags += ", extendable"
            use = "use_count: %d" % self._static_use(t)
            return ["    create %s, use %s, flags: %s, %s"
                    % (ios_duration(now - t.created), ios_duration(now - t.last_use), flags, use)]
        flags = []
        if t.kind == FLOW:
            if t.extended:
                flags.append("extended")
            if t.outside_xlat:
                flags.append("outside")
            if t.tcp_state == T_FINRST:
                flags.append("timing out")
        if not flags:
            flags.append("none")
        if t.timeout is None:
            tl = "timeout:never, left never"
        else:
            tl = "timeout:%d, left %s" % (t.timeout, ios_duration(t.last_use + t.timeout - now))
        return ["    create %s, use %s, %s, flags: %s, use_count: %d"
                % (ios_duration(now - t.created), ios_duration(now - t.last_use), tl,
                   ", ".join(flags), t.refcount)]

    def _static_use(self, t):
        n = 0
        for f in self.entries.values():
            if f.kind == FLOW and f.parent is None and f.rule is None and \
                    t.inside_local is not None and f.il == t.il:
                n += 1
        return n

    def counts(self):
        """(total, static, dynamic, extended) as ``show ip nat statistics``."""
        static = len(self.statics)
        dyn = len(self.entries)
        ext = sum(1 for t in self.statics if t.extended) + \
            sum(1 for t in self.entries.values() if t.extended)
        return static + dyn, static, dyn, ext

    def show_statistics(self) -> str:
        """``show ip nat statistics``."""
        total, st, dyn, ext = self.counts()
        out = ["Total active translations: %d (%d static, %d dynamic; %d extended)"
               % (total, st, dyn, ext)]
        if self.peak_at is not None:
            out.append("Peak translations: %d, occurred %s ago"
                       % (self.peak, ios_duration(self.clock.seconds() - self.peak_at)))
        out.append("Outside interfaces:")
        if self.outside_ifs:
            out.append("  " + ", ".join(self.outside_ifs))
        out.append("Inside interfaces:")
        if self.inside_ifs:
            out.append("  " + ", ".join(self.inside_ifs))
        out.append("Hits: %d  Misses: %d" % (self.hits, self.misses))
        out.append("Expired translations: %d" % self.expired)
        out.append("Address allocation failures: %d" % self.alloc_failures)
        out.append("max entry: max allowed %d, used %d, missed %d"
                   % (self.max_entries(), len(self.entries), self.limit_misses))
        m = self.timeouts.max_entries_all_host
        out.append("max entry per host: max allowed %d%s, missed %d"
                   % (self.DEFAULT_HOST_MAX if m is None else m,
                      " (default)" if m is None else "", self.host_misses))
        out.append("Dynamic mappings:")
        if self.rules:
            out.append("-- Inside Source")
        for r in self.rules:
            if r.interface is not None:
                out.append("[Id: %d] access-list %s interface %s refcount %d"
                           % (r.id, r.acl, r.interface, r.refcount))
                continue
            out.append("[Id: %d] access-list %s pool %s%s refcount %d"
                       % (r.id, r.acl, r.pool, " overload" if r.overload else "", r.refcount))
            p = self.model.nat.pools.get(r.pool)
            if p is None:
                continue
            mask = (0xFFFFFFFF << (32 - p.prefix_length)) & 0xFFFFFFFF
            total_a = len(r.addresses)
            if r.overload:
                mine = r.addresses
                used = len({k[1] for k, v in self.ports.items()
                            if v[2] > 0 and k[1] in mine})
            else:
                used = r.allocated
            pct = (used * 100 // total_a) if total_a else 0
            out.append(" pool %s: netmask %s" % (p.name, ip_str(mask)))
            out.append("\tstart %s end %s" % (p.start, p.end))
            out.append("\ttype %s, total addresses %d, allocated %d (%d%%), misses %d"
                       % (p.type or "generic", total_a, used, pct, r.misses))
        if self.out_rules:
            out.append("-- Outside Source")
        for r in self.out_rules:
            out.append("[Id: %d] access-list %s pool %s%s refcount %d"
                       % (r.id, r.acl, r.pool, " add-route" if r.add_route else "", r.refcount))
            p = self.model.nat.pools.get(r.pool)
            if p is None:
                continue
            mask = (0xFFFFFFFF << (32 - p.prefix_length)) & 0xFFFFFFFF
            total_a = len(r.addresses)
            pct = (r.allocated * 100 // total_a) if total_a else 0
            out.append(" pool %s: netmask %s" % (p.name, ip_str(mask)))
            out.append("\tstart %s end %s" % (p.start, p.end))
            out.append("\ttype %s, total addresses %d, allocated %d (%d%%), misses %d"
                       % (p.type or "generic", total_a, r.allocated, pct, r.misses))
        out.append("Appl doors: 0")
        out.append("Normal doors: %d" % len(self.doors))
        out.append("Queued Packets: 0")
        return "\n".join(out) + "\n"

    def clear(self) -> int:
        """``clear ip nat translation *``: remove every dynamic entry
        (static entries stay).  Returns the number removed."""
        n = 0
        for t in list(self.entries.values()):
            if t.kind == FLOW:
                self._remove(t)
                n += 1
        for t in list(self.entries.values()):
            self._remove(t)
            n += 1
        for d in list(self.doors.values()):
            self._drop_door(d, keep_port=False)
        self.frags.clear()
        # the operator frees every port: TIME_WAIT reservations too
        self.time_wait.clear()
        self._tw_order.clear()
        return n

    def clear_translation(self, proto=None, inside=None, outside=None) -> int:
        """``clear ip nat translation [tcp|udp] inside GLOBAL [GPORT] LOCAL
        [LPORT] [outside LOCAL [LPORT] GLOBAL [GPORT]]`` and ``clear ip nat
        translation outside LOCAL GLOBAL``.

        ``proto``: None, "tcp", "udp" (or a number); ``inside``:
        ``(global, gport, local, lport)``; ``outside``: ``(local, lport,
        global, gport)``; ports may be None (any).  Removes the dynamic
        entries that match every given field (static entries cannot be
        cleared, as in IOS).  Returns the number removed."""
        if isinstance(proto, str):
            proto = {"tcp": 6, "udp": 17, "icmp": 1}.get(proto.lower())

        def same(pair, addr, port):
            if pair is None:
                return False
            return pair[0] == addr and (port is None or pair[1] == port)

        victims = []
        for t in self.entries.values():
            if proto is not None and t.proto != proto:
                continue
            if inside is not None:
                g, gp, loc, lp = inside
                if not (same(t.inside_global, g, gp) and same(t.inside_local, loc, lp)):
                    continue
            if outside is not None:
                loc, lp, g, gp = outside
                if not (same(t.outside_local, loc, lp) and same(t.outside_global, g, gp)):
                    continue
            if inside is None and outside is None:
                continue
            victims.append(t)
        # children of a cleared binding go with it
        for b in [v for v in victims if v.kind == BINDING]:
            victims.extend(t for t in self.entries.values() if t.parent is b or t.oparent is b)
        n = 0
        for t in victims:
            if not t.dead:
                self._remove(t)
                n += 1
        return n

    def clear_statistics(self) -> None:
        """``clear ip nat statistics``."""
        self.hits = self.misses = self.expired = self.alloc_failures = 0
        self.limit_misses = self.host_misses = 0
        self.peak, self.peak_at = 0, None
        for r in self.rules + self.out_rules:
            r.misses = 0

    def lookup(self, pkt, inside: bool):
        """The flow entry for a packet as it arrives (no creation, no
        counting), or None."""
        proto = pkt.proto
        sp, dp = (pkt.icmp_id, 0) if proto == 1 else (pkt.sport, pkt.dport)
        d = self.flows_in if inside else self.flows_out
        return d.get(flow_key(proto, pkt.src, sp, pkt.dst, dp))
