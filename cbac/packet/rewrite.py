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

from cbac.packet.checksum import apply_delta, apply_delta_partial, delta16, delta32, fold

_L4_CSUM_OFFSET = {6: 16, 17: 6, 1: 2}


class Rewrite:
    __slots__ = ("proto", "old", "new", "addrs", "ports", "ip_delta",
                 "l4_delta", "l4_pdelta", "csum_off", "change_src",
                 "change_dst", "change_ports")

    def __init__(self, proto: int, old: tuple, new: tuple):
        self.proto = proto
        self.old = old
        self.new = new
        osrc, odst, osp, odp = old
        nsrc, ndst, nsp, ndp = new
        self.addrs = nsrc.to_bytes(4, "big") + ndst.to_bytes(4, "big")
        self.change_src = osrc != nsrc
        self.change_dst = odst != ndst
        self.ip_delta = fold(delta32(osrc, nsrc) + delta32(odst, ndst))
        self.csum_off = _L4_CSUM_OFFSET.get(proto)
        if proto == 1:
            self.ports = nsp.to_bytes(2, "big")
            self.change_ports = osp != nsp
            self.l4_delta = delta16(osp, nsp)
            self.l4_pdelta = 0
        else:
            self.ports = nsp.to_bytes(2, "big") + ndp.to_bytes(2, "big")
            self.change_ports = osp != nsp or odp != ndp
            self.l4_pdelta = self.ip_delta
            self.l4_delta = fold(self.ip_delta + delta16(osp, nsp) + delta16(odp, ndp))

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
        non-initial fragments (no L4 header to touch)."""
        frame[l3 + 12:l3 + 20] = self.addrs
        c = l3 + 10
        v = apply_delta((frame[c] << 8) | frame[c + 1], self.ip_delta)
        frame[c] = v >> 8
        frame[c + 1] = v & 0xFF
        if not first_fragment or self.csum_off is None:
            return
        proto = self.proto
        if proto == 1:
            frame[l4 + 4:l4 + 6] = self.ports
        else:
            frame[l4:l4 + 4] = self.ports
        c = l4 + self.csum_off
        old = (frame[c] << 8) | frame[c + 1]
        if proto == 17 and old == 0 and not partial:
            return                      # UDP without checksum stays so
        if partial:
            v = apply_delta_partial(old, self.l4_pdelta)
        else:
            v = apply_delta(old, self.l4_delta)
            if proto == 17 and v == 0:
                v = 0xFFFF
        frame[c] = v >> 8
        frame[c + 1] = v & 0xFF
