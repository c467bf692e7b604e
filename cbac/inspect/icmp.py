"""ICMP inspection (IOS "Firewall Stateful Inspection of ICMP").

* Echo (8) and timestamp (13) requests create sessions keyed by
  ``src + dst + identifier`` on each side of NAT; the initiator may send
  more requests of the same kind, the responder only the matching reply
  (0 / 14) to the initiator with the same identifier (the key checks the
  addresses and the identifier).  Timeout: the rule's ``timeout`` or 10 s.
* ICMP errors (3 unreachable, 4 source quench, 5 redirect, 11 time
  exceeded incl. traceroute, 12 parameter problem) pass only when the
  quoted header belongs to a session, in either direction, and the outer
  destination is the sender of the quoted packet (netfilter's check
  against errors aimed at third hosts).  When the session is translated
  the outer destination, the outer source when it is the translated peer,
  and the quoted header are rewritten back; the ICMP checksum is
  recomputed over the message (slow path).
"""

from __future__ import annotations

from cbac.packet.checksum import checksum, update16, update32
from cbac.packet.view import PROTO_ICMP, PROTO_TCP, PROTO_UDP

REPLY_OF = {8: 0, 13: 14}
NAMES = {8: "ECHO request", 13: "TIMESTAMP request"}


def icmp_process(table, s, d: int, pkt) -> bool:
    t = pkt.icmp_type
    if d == 0:
        if t != s.icmp_req:
            table.drop(s, "icmp-unexpected-type")
            return False
    elif t != REPLY_OF[s.icmp_req]:
        table.drop(s, "icmp-unexpected-type")
        return False
    s.bytes[d] += pkt.payload_len
    if table.debug_enabled:
        table.debug_line("icmp", "CBAC sis %s ICMP type %d code %d id %d (%s) %s" % (
            s.hexid, t, pkt.icmp_code, pkt.icmp_id, "initiator" if d == 0 else "responder",
            s.flow_text()))
    return True


def _put(frame, off, value, width):
    frame[off:off + width] = value.to_bytes(width, "big")


def error_lookup(table, pkt):
    """Find the session an ICMP error belongs to, check and rewrite it.
    Returns (session, direction) to forward, or None to drop."""
    q = pkt.inner
    if q is None or q.proto not in (PROTO_TCP, PROTO_UDP, PROTO_ICMP):
        return None
    frame = pkt.frame
    if q.proto == PROTO_ICMP:
        if q.icmp_type not in REPLY_OF:
            return None
        key = frame[q.l3 + 16:q.l3 + 20] + frame[q.l3 + 12:q.l3 + 16] + frame[q.l4 + 4:q.l4 + 6]
        d_ = table.icmp
    else:
        key = (frame[q.l3 + 16:q.l3 + 20] + frame[q.l3 + 12:q.l3 + 16]
               + frame[q.l4 + 2:q.l4 + 4] + frame[q.l4:q.l4 + 2])
        d_ = table.tcp if q.proto == PROTO_TCP else table.udp
    hit = d_.get(bytes(key))
    if hit is None:
        table.stats.drop("icmp-error-no-session")
        return None
    s, direction = hit
    if pkt.dst != q.src:
        table.stats.drop("icmp-error-outer-mismatch")
        return None
    if s.rw[0] is not None or s.rw[1] is not None:
        hook = table.icmp_error_hook
        if hook is not None:
            hook(pkt, s, direction)
        else:
            _rewrite(pkt, s, 1 - direction)
    return s, direction


def _rewrite(pkt, s, qd: int) -> None:
    """Rewrite an error about a packet of direction qd (quoted in its
    departure form) back to that packet's arrival form."""
    frame = pkt.frame
    q = pkt.inner
    if qd == 0:
        old, new = s.c_out, s.c_in
    else:
        old, new = s.s_out, s.s_in
    osrc, odst, osp, odp = old
    nsrc, ndst, nsp, ndp = new
    # quoted IP header
    _put(frame, q.l3 + 12, nsrc, 4)
    _put(frame, q.l3 + 16, ndst, 4)
    frame[q.l3 + 10] = frame[q.l3 + 11] = 0
    c = checksum(frame, q.l3, q.l3 + q.ihl)
    _put(frame, q.l3 + 10, c, 2)
    end = pkt.l3 + pkt.ip_len
    if q.proto == PROTO_ICMP:
        _put(frame, q.l4 + 4, nsp, 2)
        if q.l4 + 4 <= end:
            v = (frame[q.l4 + 2] << 8) | frame[q.l4 + 3]
            _put(frame, q.l4 + 2, update16(v, osp, nsp), 2)
    else:
        _put(frame, q.l4, nsp, 2)
        _put(frame, q.l4 + 2, ndp, 2)
        coff = q.l4 + (16 if q.proto == PROTO_TCP else 6)
        if coff + 2 <= end:
            v = (frame[coff] << 8) | frame[coff + 1]
            if not (q.proto == PROTO_UDP and v == 0):
                v = update32(v, osrc, nsrc)
                v = update32(v, odst, ndst)
                v = update16(v, osp, nsp)
                v = update16(v, odp, ndp)
                _put(frame, coff, v, 2)
    # outer header: the error goes to the quoted packet's sender
    l3 = pkt.l3
    _put(frame, l3 + 16, nsrc, 4)
    pkt.dst = nsrc
    if pkt.src == odst:
        _put(frame, l3 + 12, ndst, 4)
        pkt.src = ndst
    frame[l3 + 10] = frame[l3 + 11] = 0
    c = checksum(frame, l3, l3 + pkt.ihl)
    _put(frame, l3 + 10, c, 2)
    l4 = pkt.l4
    frame[l4 + 2] = frame[l4 + 3] = 0
    c = checksum(frame, l4, end)
    _put(frame, l4 + 2, c, 2)
    q.src, q.dst = nsrc, ndst
    if q.proto == PROTO_ICMP:
        q.icmp_id = nsp
    else:
        q.sport, q.dport = nsp, ndp
