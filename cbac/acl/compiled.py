"""An ACL compiled into per-field indexes (first match by sequence number).

Every entry gets a bit (bit i = i-th entry in sequence order).  For each
field the index answers "which entries accept this value" as an int
bitmask; the answer for a packet is the lowest bit set in the AND of the
per-field masks (first match wins), or no bit at all (implicit deny).

* protocol: ``dict proto -> mask`` (entries for ``ip`` are in every mask);
* source / destination: entries with a contiguous wildcard (host, prefix,
  any) go into one dict per prefix length (``addr & netmask -> mask``), so a
  lookup costs one dict probe per distinct prefix length in the list;
  non-contiguous wildcards (``10.0.0.1 0.255.0.255``) are checked one by
  one (rare in practice);
* source / destination port: the port space cut at every boundary of every
  ``eq``/``neq``/``lt``/``gt``/``range``; ``bisect`` finds the elementary
  interval, which holds the precomputed mask;
* ICMP type/code: dicts;
* ``established`` / ``fragments``: masks removed when the packet does not
  qualify.

A lookup costs a handful of dict probes and big-int ANDs whatever the
length of the list (the ANDs are over N/30 machine digits, done in C).
Fields no entry constrains are skipped.
"""

from __future__ import annotations

from bisect import bisect_right

from cbac.acl.entry import ACK_OR_RST, Ace, MASK32


def _is_contiguous(mask: int) -> bool:
    # mask (bit 1 = compare) must be 1...10...0
    inv = ~mask & MASK32
    return (inv & (inv + 1)) == 0


class AddrIndex:
    __slots__ = ("wild", "levels", "noncontig")

    def __init__(self, items):
        """items: (addr, mask, bit)."""
        self.wild = 0
        bylen: dict[int, dict[int, int]] = {}
        self.noncontig = []
        for addr, mask, bit in items:
            if mask == 0:
                self.wild |= bit
            elif _is_contiguous(mask):
                d = bylen.setdefault(mask, {})
                d[addr] = d.get(addr, 0) | bit
            else:
                self.noncontig.append((mask, addr, bit))
        # most specific first (order does not matter for an OR)
        self.levels = tuple(sorted(bylen.items(), reverse=True))
        self.noncontig = tuple(self.noncontig)

    def lookup(self, a: int) -> int:
        m = self.wild
        for mask, d in self.levels:
            b = d.get(a & mask)
            if b:
                m |= b
        for mask, addr, bit in self.noncontig:
            if a & mask == addr:
                m |= bit
        return m

    @property
    def trivial(self) -> bool:
        return not self.levels and not self.noncontig


def _port_intervals(pm):
    op, p = pm.op, pm.ports
    if op == "eq":
        return [(x, x) for x in sorted(set(p))]
    if op == "neq":
        out, lo = [], 0
        for x in sorted(set(p)):
            if x > lo:
                out.append((lo, x - 1))
            lo = x + 1
        if lo <= 65535:
            out.append((lo, 65535))
        return out
    if op == "lt":
        return [(0, p[0] - 1)] if p[0] > 0 else []
    if op == "gt":
        return [(p[0] + 1, 65535)] if p[0] < 65535 else []
    lo, hi = p[0], p[1]
    return [(lo, hi)] if lo <= hi else []


class PortIndex:
    __slots__ = ("bounds", "masks")

    def __init__(self, items, all_bits: int):
        """items: (PortMatch or None, bit).  Entries without a port
        constraint accept every port."""
        wild = 0
        events: dict[int, list] = {}
        for pm, bit in items:
            if pm is None:
                wild |= bit
                continue
            for lo, hi in _port_intervals(pm):
                events.setdefault(lo, [0, 0])[0] |= bit       # add
                events.setdefault(hi + 1, [0, 0])[1] |= bit   # remove
        bounds = [0]
        masks = [wild]
        cur = 0
        for pt in sorted(events):
            add, rem = events[pt]
            cur = (cur & ~rem) | add
            if pt > 65535:
                break
            if pt == bounds[-1]:
                masks[-1] = wild | cur
            else:
                bounds.append(pt)
                masks.append(wild | cur)
        self.bounds = bounds
        self.masks = masks

    def lookup(self, port: int) -> int:
        return self.masks[bisect_right(self.bounds, port) - 1]


class Matcher:
    """The compiled index of one list (no counters, no logging)."""

    __slots__ = ("aces", "standard", "proto_masks", "proto_any", "src", "dst",
                 "sport", "dport", "icmp_wild", "icmp_type", "icmp_tc",
                 "est_mask", "frag_mask", "nf_skip", "all_bits", "use_dst")

    def __init__(self, aces: list[Ace], standard: bool):
        self.aces = aces
        self.standard = standard
        n = len(aces)
        self.all_bits = (1 << n) - 1
        bits = [1 << i for i in range(n)]
        self.proto_any = 0
        protos: dict[int, int] = {}
        for a, b in zip(aces, bits):
            if a.proto is None:
                self.proto_any |= b
            else:
                protos[a.proto] = protos.get(a.proto, 0) | b
        self.proto_masks = {p: m | self.proto_any for p, m in protos.items()}
        self.src = AddrIndex((a.saddr, a.smask, b) for a, b in zip(aces, bits))
        self.dst = AddrIndex((a.daddr, a.dmask, b) for a, b in zip(aces, bits))
        self.use_dst = not self.dst.trivial
        if any(a.sport is not None for a in aces):
            self.sport = PortIndex(((a.sport, b) for a, b in zip(aces, bits)), self.all_bits)
        else:
            self.sport = None
        if any(a.dport is not None for a in aces):
            self.dport = PortIndex(((a.dport, b) for a, b in zip(aces, bits)), self.all_bits)
        else:
            self.dport = None
        self.icmp_wild = 0
        self.icmp_type: dict[int, int] = {}
        self.icmp_tc: dict[tuple, int] = {}
        for a, b in zip(aces, bits):
            if a.icmp_type is None:
                self.icmp_wild |= b
            elif a.icmp_code is None:
                self.icmp_type[a.icmp_type] = self.icmp_type.get(a.icmp_type, 0) | b
            else:
                k = (a.icmp_type, a.icmp_code)
                self.icmp_tc[k] = self.icmp_tc.get(k, 0) | b
        if not self.icmp_type and not self.icmp_tc:
            self.icmp_wild = -1          # no ICMP constraint anywhere
        self.est_mask = 0
        self.frag_mask = 0
        self.nf_skip = 0
        for a, b in zip(aces, bits):
            if a.established:
                self.est_mask |= b
            if a.fragments:
                self.frag_mask |= b
            if a.has_l4 and not a.permit and not a.fragments:
                self.nf_skip |= b

    def first(self, proto, src, dst, sport=0, dport=0, itype=-1, icode=-1,
              flags=0, nonfirst=False) -> int:
        """Index of the first matching entry, or -1."""
        c = self.proto_masks.get(proto, self.proto_any)
        if not c:
            return -1
        c &= self.src.lookup(src)
        if not c:
            return -1
        if self.use_dst:
            c &= self.dst.lookup(dst)
            if not c:
                return -1
        if nonfirst:
            c &= ~self.nf_skip
        else:
            if self.frag_mask:
                c &= ~self.frag_mask
            if self.sport is not None:
                c &= self.sport.lookup(sport)
            if self.dport is not None:
                c &= self.dport.lookup(dport)
            if self.icmp_wild != -1:
                m = self.icmp_wild
                if itype >= 0:
                    m |= self.icmp_type.get(itype, 0) | self.icmp_tc.get((itype, icode), 0)
                c &= m
            if self.est_mask and not (flags & ACK_OR_RST):
                c &= ~self.est_mask
        if not c:
            return -1
        return (c & -c).bit_length() - 1
