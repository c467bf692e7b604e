"""Normalised access-control entries and the reference (naive) evaluator.

:class:`Ace` is the form every matcher works on: integers only, the
protocol as a number (None for ``ip``), addresses as ``(value, mask)`` with
the mask being the *inverted* IOS wildcard (bit 1 = compare).

:func:`ace_matches` is the specification of one entry's match, written
for clarity; :func:`naive_first_match` walks a list top-down.  The compiled
index (:mod:`cbac.acl.compiled`) must give the same answer for every packet;
a hypothesis test checks that.

Fragments, as IOS treats them (Cisco "Access Control Lists and IP
Fragments"; cbac reading, see also docs in :mod:`cbac.acl`):

* A packet that is not a fragment, and an *initial* fragment (offset 0,
  MF set), is matched against all the information of an entry.  Entries
  carrying the ``fragments`` keyword never match it.
* A *non-initial* fragment (offset > 0) has no L4 header.  It is matched
  against the L3 information of an entry (protocol, source, destination):

  - entry with no L4 information (no ports, no ICMP type, no
    ``established``): the entry applies if the L3 information matches;
  - entry with L4 information, ``permit``: the entry applies (the fragment
    is permitted) if the L3 information matches;
  - entry with L4 information, ``deny``: the entry is skipped, evaluation
    continues with the next entry;
  - entry with the ``fragments`` keyword: the entry applies if the L3
    information matches (any L4 information on such an entry is ignored).
"""

from __future__ import annotations

from cbac.config import names

ACK_OR_RST = 0x10 | 0x04
MASK32 = 0xFFFFFFFF


class Ace:
    __slots__ = ("index", "seq", "permit", "proto", "saddr", "smask", "daddr",
                 "dmask", "sport", "dport", "icmp_type", "icmp_code",
                 "established", "fragments", "has_l4", "log", "model", "hits")

    def __init__(self, index, model, standard: bool):
        self.index = index
        self.model = model
        self.seq = model.seq
        self.permit = model.action == "permit"
        self.proto = protocol_number(model.protocol)
        self.smask = ~int(model.source.wildcard) & MASK32
        self.saddr = int(model.source.address) & self.smask
        if standard or model.destination is None:
            self.dmask = self.daddr = 0
        else:
            self.dmask = ~int(model.destination.wildcard) & MASK32
            self.daddr = int(model.destination.address) & self.dmask
        self.sport = None if standard else model.source_port
        self.dport = None if standard else model.destination_port
        self.icmp_type = None if standard else model.icmp_type
        self.icmp_code = None if (standard or model.icmp_type is None) else model.icmp_code
        self.established = bool(model.established) and not standard
        self.fragments = bool(model.fragments) and not standard
        self.has_l4 = (self.sport is not None or self.dport is not None
                       or self.icmp_type is not None or self.established)
        self.log = model.log
        self.hits = 0


def protocol_number(proto):
    """``"ip"``/0 -> None (any protocol), names and numbers -> int.  An
    unknown name (cannot come from the parser) matches nothing: -1."""
    if proto is None:
        return None
    if isinstance(proto, int):
        return None if proto == 0 else proto
    p = str(proto).lower()
    if p == "ip":
        return None
    n = names.protocol_number(p)
    return -1 if n is None else n


def port_ok(pm, port: int) -> bool:
    return pm is None or pm.matches(port)


def ace_matches(a: Ace, proto, src, dst, sport, dport, itype, icode, flags, nonfirst) -> bool:
    """Does entry ``a`` apply to the packet?  ``nonfirst``: non-initial
    fragment (no L4 information)."""
    if a.proto is not None and a.proto != proto:
        return False
    if (src & a.smask) != a.saddr or (dst & a.dmask) != a.daddr:
        return False
    if nonfirst:
        if a.fragments:
            return True
        if a.has_l4:
            return a.permit
        return True
    if a.fragments:
        return False
    if not port_ok(a.sport, sport) or not port_ok(a.dport, dport):
        return False
    if a.icmp_type is not None:
        if itype != a.icmp_type:
            return False
        if a.icmp_code is not None and icode != a.icmp_code:
            return False
    if a.established and not (flags & ACK_OR_RST):
        return False
    return True


def naive_first_match(aces, proto, src, dst, sport=0, dport=0, itype=-1, icode=-1,
                      flags=0, nonfirst=False):
    """The first entry that applies, or None (implicit deny)."""
    for a in aces:
        if ace_matches(a, proto, src, dst, sport, dport, itype, icode, flags, nonfirst):
            return a
    return None
