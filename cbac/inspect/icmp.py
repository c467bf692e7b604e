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

from cbac.packet.icmp import rewrite_error
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
    if d:
        s.b1 += pkt.payload_len
    else:
        s.b0 += pkt.payload_len
    if table.debug_enabled:
        table.debug_line("icmp", "CBAC sis %s ICMP type %d code %d id %d (%s) %s" % (
            s.hexid, t, pkt.icmp_code, pkt.icmp_id, "initiator" if d == 0 else "responder",
            s.flow_text()))
    return True


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
    key = bytes(key)
    s = d_.get(key)                      # the dict value is the session
    if s is None:
        table.stats.drop("icmp-error-no-session")
        return None
    direction = 1 if key == s.ks else 0  # session.direction_of
    if pkt.dst != q.src:
        table.stats.drop("icmp-error-outer-mismatch")
        return None
    if s.rw[0] is not None or s.rw[1] is not None:
        _rewrite(pkt, s, 1 - direction)
    return s, direction


def _rewrite(pkt, s, qd: int) -> None:
    """Rewrite an error about a packet of direction qd (quoted in its
    departure form) back to that packet's arrival form; the error goes to
    the quoted packet's sender."""
    if qd == 0:
        odst = s.c_out[1]
        nsrc, ndst, nsp, ndp = s.c_in
    else:
        odst = s.s_out[1]
        nsrc, ndst, nsp, ndp = s.s_in
    rewrite_error(pkt, nsrc, ndst, nsp, ndp, ndst if pkt.src == odst else pkt.src, nsrc)
