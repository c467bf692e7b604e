"""The configured access lists, compiled, with counters, logging and show.

Usage (router)::

    acls = AclSet(router_model, clock)
    acl = acls.get(iface.access_group_in)     # None: no list (permits)
    if acl is not None and not acl.check(pkt):
        drop

``show access-lists`` / ``show ip access-lists``: :meth:`AclSet.show`.
"""

from __future__ import annotations

from cbac.acl.aclog import AclLogger
from cbac.acl.compiled import Matcher
from cbac.acl.entry import Ace
from cbac.config import names
from cbac.packet.view import ip_int


class CompiledAcl:
    """One list.  ``check*`` count the hit on the matching entry and log
    ``log`` entries; ``lookup*`` have no side effects."""

    __slots__ = ("name", "kind", "standard", "aces", "matcher", "logger",
                 "implicit_deny_hits", "model", "by_source")

    #: entries in a standard list's cache of first matches by source
    #: address (cleared when full: a flood of sources costs a lookup each)
    SOURCE_CACHE = 4096

    def __init__(self, model, logger):
        self.model = model
        self.name = model.name
        self.kind = model.kind
        self.standard = model.kind == "standard"
        entries = sorted((e for e in model.entries if e.action in ("permit", "deny")),
                         key=lambda e: e.seq)
        self.aces = [Ace(i, e, self.standard) for i, e in enumerate(entries)]
        self.matcher = Matcher(self.aces, self.standard)
        self.logger = logger
        self.implicit_deny_hits = 0
        # A standard list whose entries all match any protocol (every one
        # the parser makes) answers from the source address alone: no
        # destination, ports, ICMP, established or fragments keyword, so
        # a non-initial fragment meets the same first match too.  The
        # answers are kept by source (the list is never changed in place:
        # a reconfiguration compiles a new one).
        self.by_source = ({} if self.standard and all(a.proto is None for a in self.aces)
                          else None)

    # -- matching -------------------------------------------------------
    def _first_by_source(self, src: int) -> int:
        cache = self.by_source
        i = cache.get(src)
        if i is None:
            i = self.matcher.first(0, src, 0)
            if len(cache) >= self.SOURCE_CACHE:
                cache.clear()
            cache[src] = i
        return i

    def check(self, pkt) -> bool:
        """Permit (True) or deny (False) a parsed packet."""
        proto = pkt.proto
        if proto == 1:
            itype, icode = pkt.icmp_type, pkt.icmp_code
        else:
            itype = icode = -1
        cache = self.by_source
        if cache is not None:
            # _first_by_source, its cache hit inline
            i = cache.get(pkt.src)
            if i is None:
                i = self._first_by_source(pkt.src)
        else:
            i = self.matcher.first(proto, pkt.src, pkt.dst, pkt.sport, pkt.dport,
                                   itype, icode, pkt.tcp_flags, pkt.frag != 0)
        if i < 0:
            self.implicit_deny_hits += 1
            return False
        a = self.aces[i]
        a.hits += 1
        if a.log is not None and self.logger is not None:
            port = pkt.in_port
            in_if = getattr(port, "name", None) if port is not None else None
            self.logger.packet(self.name, self.standard, a, proto, pkt.src, pkt.dst,
                               pkt.sport, pkt.dport, itype, icode, in_if, pkt.frame)
        return a.permit

    def check_fields(self, proto: int, src: int, dst: int = 0, sport: int = 0,
                     dport: int = 0, icmp_type: int = -1, icmp_code: int = -1,
                     tcp_flags: int = 0, nonfirst: bool = False,
                     in_if: str | None = None) -> bool:
        """:meth:`check` on fields instead of a packet."""
        if self.by_source is not None:
            i = self._first_by_source(src)
        else:
            i = self.matcher.first(proto, src, dst, sport, dport, icmp_type, icmp_code,
                                   tcp_flags, nonfirst)
        if i < 0:
            self.implicit_deny_hits += 1
            return False
        a = self.aces[i]
        a.hits += 1
        if a.log is not None and self.logger is not None:
            self.logger.packet(self.name, self.standard, a, proto, src, dst, sport, dport,
                               icmp_type, icmp_code, in_if, None)
        return a.permit

    def lookup_fields(self, proto: int, src: int, dst: int = 0, sport: int = 0,
                      dport: int = 0, icmp_type: int = -1, icmp_code: int = -1,
                      tcp_flags: int = 0, nonfirst: bool = False):
        """The matching model entry (:class:`AclEntry`) or None (implicit
        deny); counts nothing, logs nothing."""
        i = self.matcher.first(proto, src, dst, sport, dport, icmp_type, icmp_code,
                               tcp_flags, nonfirst)
        return None if i < 0 else self.aces[i].model

    def permits_fields(self, *args, **kw) -> bool:
        """Like :meth:`lookup_fields`, as a bool, without side effects."""
        e = self.lookup_fields(*args, **kw)
        return e is not None and e.action == "permit"

    # -- counters and show -----------------------------------------------
    def clear_counters(self):
        for a in self.aces:
            a.hits = 0
        self.implicit_deny_hits = 0

    def hits(self, seq: int) -> int:
        for a in self.aces:
            if a.seq == seq:
                return a.hits
        raise KeyError(seq)

    def show(self) -> str:
        return "\n".join(self.show_lines()) + "\n"

    def show_lines(self):
        """The lines of :meth:`show`, one at a time."""
        head = "Standard IP access list %s" if self.standard else "Extended IP access list %s"
        yield head % self.name
        standard = self.standard
        for a in list(self.aces):
            yield "    %d %s" % (a.seq, format_entry(a.model, standard, a.hits))


# --------------------------------------------------------------------------
# IOS display of entries

def _addr(m) -> str:
    if m.is_any:
        return "any"
    if m.is_host:
        return "host " + str(m.address)
    return "%s %s" % (m.address, m.wildcard)


def _proto_word(proto) -> str:
    if isinstance(proto, int):
        return "ip" if proto == 0 else names.protocol_name(proto)
    return str(proto)


def _ports(proto: str, pm) -> str:
    if pm is None:
        return ""
    return " %s %s" % (pm.op, " ".join(names.port_name(proto, p) for p in pm.ports))


def _icmp(t, c) -> str:
    if t is None:
        return ""
    n = names.icmp_name(t, c)
    if n is not None:
        return " " + n
    return " %d" % t if c is None else " %d %d" % (t, c)


def _matches(n: int) -> str:
    if not n:
        return ""
    return " (1 match)" if n == 1 else " (%d matches)" % n


def format_entry(e, standard: bool, hits: int = 0) -> str:
    """``permit tcp any host 172.22.1.16 eq smtp log (3 matches)``.

    Standard lists print ``permit 10.1.1.0, wildcard bits 0.0.0.255``, a
    host as the bare address, and pad ``deny`` to the width of
    ``permit`` as IOS does (``deny   any``)."""
    log = (" " + e.log) if e.log else ""
    if standard:
        s = e.source
        if s.is_any:
            a = "any"
        elif s.is_host:
            a = str(s.address)
        else:
            a = "%s, wildcard bits %s" % (s.address, s.wildcard)
        act = "permit" if e.action == "permit" else "deny  "
        return "%s %s%s%s" % (act, a, log, _matches(hits))
    proto = _proto_word(e.protocol)
    out = [e.action, " ", proto, " ", _addr(e.source), _ports(proto, e.source_port),
           " ", _addr(e.destination) if e.destination is not None else "any",
           _ports(proto, e.destination_port)]
    if proto == "icmp":
        out.append(_icmp(e.icmp_type, e.icmp_code))
    if e.established:
        out.append(" established")
    if e.fragments:
        out.append(" fragments")
    out.append(log)
    out.append(_matches(hits))
    return "".join(out)


def _sort_key(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


class AclSet:
    """All access lists of a router model, compiled."""

    def __init__(self, router_model, clock, log_interval: float | None = None):
        self.clock = clock
        kw = {} if log_interval is None else {"interval": log_interval}
        self.logger = AclLogger(clock, **kw)
        self.lists: dict[str, CompiledAcl] = {}
        self.update(router_model)

    def update(self, router_model) -> None:
        """Recompile after a configuration change.  Counters of entries
        that did not change (same list, sequence number and content) are
        kept."""
        self.lists = self.prepare(router_model)

    def prepare(self, router_model) -> dict:
        """The compiled lists of ``router_model``, built off to the side
        (install them with ``acls.lists = ...``; :meth:`update` does both)."""
        old = self.lists
        new: dict[str, CompiledAcl] = {}
        for name, model in router_model.acls.items():
            c = CompiledAcl(model, self.logger)
            prev = old.get(name)
            if prev is not None and prev.kind == c.kind:
                prev_by_seq = {a.seq: a for a in prev.aces}
                for a in c.aces:
                    p = prev_by_seq.get(a.seq)
                    if p is not None and p.model == a.model:
                        a.hits = p.hits
            new[name] = c
        return new

    def permits_source(self, acl_names, source: str, undefined: bool) -> bool:
        """Do the standard lists ``acl_names`` all permit the dotted-quad
        ``source``?  The console's questions: ``line vty ... access-class``
        and ``login quiet-mode access-class``.  ``undefined`` is the answer
        of a list that does not exist (vty: permit, as IOS; quiet mode:
        deny).  An address that does not parse is never permitted."""
        try:
            addr = ip_int(source)
        except ValueError:
            return False
        for name in acl_names:
            acl = self.get(name)
            if acl is None:
                if not undefined:
                    return False
            elif not acl.check_fields(6, addr):
                return False
        return True

    def get(self, name) -> CompiledAcl | None:
        """The compiled list, or None when no such list exists or it has no
        permit/deny entry (IOS: an interface with an undefined or empty
        access-group permits everything)."""
        if name is None:
            return None
        c = self.lists.get(name if name.__class__ is str else str(name))
        if c is None or not c.aces:
            return None
        return c

    def exists(self, name) -> bool:
        return name is not None and str(name) in self.lists

    def show(self, name=None) -> str:
        """``show access-lists [NAME|NUMBER]`` (also ``show ip
        access-lists``).  Numbered lists in numeric order, then named
        lists in name order.  An unknown name prints nothing."""
        if name is not None:
            c = self.lists.get(str(name))
            return c.show() if c is not None else ""
        return "".join(self.lists[n].show() for n in sorted(self.lists, key=_sort_key))

    def show_lines(self, name=None):
        """The lines of :meth:`show`, one at a time (sliced by the engine)."""
        if name is not None:
            c = self.lists.get(str(name))
            if c is not None:
                yield from c.show_lines()
            return
        for n in sorted(self.lists, key=_sort_key):
            c = self.lists.get(n)
            if c is not None:
                yield from c.show_lines()

    def clear_counters(self, name=None) -> None:
        """``clear access-list counters [NAME|NUMBER]``."""
        if name is None:
            for c in self.lists.values():
                c.clear_counters()
        else:
            c = self.lists.get(str(name))
            if c is not None:
                c.clear_counters()

    def stop(self) -> None:
        self.logger.stop()


__all__ = ["AclSet", "CompiledAcl", "format_entry"]
