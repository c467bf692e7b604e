"""Pre-computed header rewrites (NAT) with checksum deltas.

A :class:`Rewrite` turns packets of one direction of a flow from
``(src, dst, sport, dport)`` into ``(src', dst', sport', dport')``.  Its
checksum deltas are computed once, when the translation is made, so the
per-packet work is a few slice assignments and two folds (RFC 1624).

For ICMP query messages (echo, timestamp) ``sport`` is the identifier and
``dport`` is unused (0); the ICMP checksum has no pseudo-header, so only
the identifier change enters its delta.

Partial checksums (virtio-net NEEDS_CSUM) hold the pseudo-header sum
only: addresses enter it, ports do not, and it is not inverted.
"""

from __future__ import annotations

import struct

_L4_CSUM_OFFSET = {6: 16, 17: 6, 1: 2}

#: Shared values.  The connections of one inside host to one server
#: through PAT have the same address bytes and (ports kept) the same
#: checksum deltas in each direction: one object each, not one per
#: connection.  Deltas are 0..0xFFFF (at most 65,536 ints); the address
#: cache is bounded (cleared when full, as the NAT's own caches are).
_DELTAS: dict = {}
_ADDRS: dict = {}
_ADDRS_MAX = 4096

# Rewrite.apply's copies of the address and port bytes into the frame
_put8 = struct.Struct("8s").pack_into
_put4 = struct.Struct("4s").pack_into
_put2 = struct.Struct("2s").pack_into


def _addr_part(osrc, odst, nsrc, ndst):
    """(addrs, ip_delta) of a rewrite from (osrc, odst) to (nsrc, ndst): the
    new addresses' bytes (shared through ``_ADDRS``) and delta32(osrc, nsrc)
    + delta32(odst, ndst), folded (RFC 1624; shared through ``_DELTAS``)."""
    k = (nsrc << 32) | ndst
    a = _ADDRS.get(k)
    if a is None:
        if len(_ADDRS) >= _ADDRS_MAX:
            _ADDRS.clear()
        a = _ADDRS[k] = k.to_bytes(8, "big")
    s = ((~osrc >> 16 & 0xFFFF) + (~osrc & 0xFFFF) + (nsrc >> 16) + (nsrc & 0xFFFF)
         + (~odst >> 16 & 0xFFFF) + (~odst & 0xFFFF) + (ndst >> 16) + (ndst & 0xFFFF))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return a, _DELTAS.setdefault(s, s)


def _ports_delta(s, osp, nsp, odp, ndp):
    """fold(s + delta16(osp, nsp) + delta16(odp, ndp)), shared as ``_DELTAS``:
    the L4 delta of a rewrite with IP delta ``s``.  One fold of the unfolded
    terms gives the value folding each delta first would (ones' complement
    sums; the sum is 0 only when every term is)."""
    s += (~osp & 0xFFFF) + nsp + (~odp & 0xFFFF) + ndp
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return _DELTAS.setdefault(s, s)


class Rewrite:
    """One direction's rewrite: ``old`` and ``new`` are the 4-tuples before
    and after; the rest is pre-computed for :meth:`apply`.  Read-only once
    made (a session and its NAT translation share the same pair)."""

    __slots__ = ("proto", "old", "new", "addrs", "ports", "ip_delta",
                 "l4_delta", "l4_pdelta", "csum_off")

    def __init__(self, proto: int, old: tuple, new: tuple):
        self.proto = proto
        self.old = old
        self.new = new
        osrc, odst, osp, odp = old
        nsrc, ndst, nsp, ndp = new
        self.addrs, s = _addr_part(osrc, odst, nsrc, ndst)
        self.ip_delta = s
        self.csum_off = _L4_CSUM_OFFSET.get(proto)
        if proto == 1:
            self.ports = nsp.to_bytes(2, "big")
            d = (~osp & 0xFFFF) + nsp
            while d >> 16:
                d = (d & 0xFFFF) + (d >> 16)
            self.l4_delta = _DELTAS.setdefault(d, d)
            self.l4_pdelta = 0
        else:
            self.ports = ((nsp << 16) | ndp).to_bytes(4, "big")
            self.l4_pdelta = s
            self.l4_delta = _ports_delta(s, osp, nsp, odp, ndp)

    @property
    def identity(self) -> bool:
        return self.old == self.new

    def inverse(self) -> "Rewrite":
        """The rewrite for the opposite direction of the same flow.  For
        ICMP queries the identifier stays in the ``sport`` slot: a reply
        carries the request's identifier in the same field."""
        osrc, odst, osp, odp = self.old
        nsrc, ndst, nsp, ndp = self.new
        if self.proto == 1:
            return Rewrite(1, (ndst, nsrc, nsp, ndp), (odst, osrc, osp, odp))
        return Rewrite(self.proto, (ndst, nsrc, ndp, nsp), (odst, osrc, odp, osp))

    def apply(self, frame, l3: int, l4: int, partial: bool = False,
              first_fragment: bool = True) -> None:
        """Rewrite one packet in place.  ``partial``: the L4 checksum field
        holds a NEEDS_CSUM pseudo-header sum.  ``first_fragment`` False for
        non-initial fragments (no L4 header to touch).  (The per-packet
        path of every translated flow: apply_delta and apply_delta_partial
        of :mod:`cbac.packet.checksum` inline.)"""
        # apply_delta: with a checksum and a delta both 0..0xFFFF, the sum
        # takes at most one end-around carry, and ~x & 0xFFFF is 0xFFFF - x
        # (int additions, subtractions and comparisons: the interpreter's
        # fast operations, where shifts and masks are not)
        _put8(frame, l3 + 12, self.addrs)        # (a slice assignment costs twice)
        c = l3 + 10
        s = 0xFFFF - (frame[c] * 256 + frame[c + 1]) + self.ip_delta
        if s > 0xFFFF:
            s -= 0xFFFF
        s = 0xFFFF - s
        frame[c] = s >> 8
        frame[c + 1] = s & 0xFF
        off = self.csum_off
        if off is None or not first_fragment:
            return
        proto = self.proto
        if proto == 1:
            _put2(frame, l4 + 4, self.ports)
        else:
            _put4(frame, l4, self.ports)
        c = l4 + off
        old = frame[c] * 256 + frame[c + 1]
        if partial:
            s = old + self.l4_pdelta            # apply_delta_partial
            if s > 0xFFFF:
                s -= 0xFFFF
        else:
            if proto == 17 and old == 0:
                return                  # UDP without checksum stays so
            s = 0xFFFF - old + self.l4_delta
            if s > 0xFFFF:
                s -= 0xFFFF
            s = 0xFFFF - s
            if proto == 17 and s == 0:
                s = 0xFFFF
        frame[c] = s >> 8
        frame[c + 1] = s & 0xFF


#: (osrc, odst, nsrc, ndst) of a flow's forward direction -> the address
#: parts of both directions' rewrites: (forward addrs, forward ip_delta,
#: reverse addrs, reverse ip_delta, forward l4_delta, reverse l4_delta), the
#: l4 deltas of a flow whose ports are not translated.  The connections of
#: one inside host to one server through PAT share them; bounded as ``_ADDRS``.
_PAIRS: dict = {}
_PAIRS_MAX = 4096
_new = object.__new__
_HH = struct.Struct("!HH").pack


def port_pair(proto, il, ilp, ig, igp, ol, olp, og, ogp):
    """The (forward, reverse) :class:`Rewrite` pair of a TCP or UDP flow
    translated from (il:ilp -> ol:olp) to (ig:igp -> og:ogp): the same
    objects as ``(Rewrite(proto, (il, ol, ilp, olp), (ig, og, igp, ogp)),
    Rewrite(proto, (og, ig, ogp, igp), (ol, il, olp, ilp)))``, made for
    the set-up path of every translated connection: the address parts
    (the bytes and the IP checksum delta of each direction, and the L4
    delta when the ports stay, as PAT keeps a free port) are looked up
    per (inside host, server) pair; only the ports' bytes, and the L4
    delta of a flow whose ports change, are per flow.  Ports are 0..0xFFFF."""
    k = (il, ol, ig, og)
    a = _PAIRS.get(k)
    if a is None:
        if len(_PAIRS) >= _PAIRS_MAX:
            _PAIRS.clear()
        fa, fd = _addr_part(il, ol, ig, og)
        ra, rd = _addr_part(og, ig, ol, il)
        # ports that stay: delta16(p, p) is 0xFFFF for any p, as delta16(0, 0)
        a = _PAIRS[k] = (fa, fd, ra, rd, _ports_delta(fd, 0, 0, 0, 0),
                         _ports_delta(rd, 0, 0, 0, 0))
    fa, fd, ra, rd, fl, rl = a
    if ilp != igp or olp != ogp:
        fl = _ports_delta(fd, ilp, igp, olp, ogp)
        rl = _ports_delta(rd, ogp, olp, igp, ilp)
    off = _L4_CSUM_OFFSET[proto]
    f = _new(Rewrite)
    f.proto = proto
    f.old = (il, ol, ilp, olp)
    f.new = (ig, og, igp, ogp)
    f.addrs = fa
    f.ports = _HH(igp, ogp)
    f.ip_delta = f.l4_pdelta = fd
    f.l4_delta = fl
    f.csum_off = off
    r = _new(Rewrite)
    r.proto = proto
    r.old = (og, ig, ogp, igp)
    r.new = (ol, il, olp, ilp)
    r.addrs = ra
    r.ports = _HH(olp, ilp)
    r.ip_delta = r.l4_pdelta = rd
    r.l4_delta = rl
    r.csum_off = off
    return f, r
