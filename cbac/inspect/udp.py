"""UDP pseudo-sessions.

A UDP session is keyed by its 4-tuple (both sides of NAT); it is
half-open (counts toward ``max-incomplete`` and the one-minute rate) until
the responder sends the first packet.  Idle timeout: the rule's
``timeout`` or ``ip inspect udp idle-time`` (30 s).  DNS (responder port
53): the idle timeout is ``ip inspect dns-timeout`` (5 s).

Under ``udp`` inspection the first reply moves a DNS session to
``SIS_CLOSING`` (shown under "Terminating Sessions"), it then lives at
most dns-timeout after the last packet, so the replies of parallel
queries on the same socket (glibc sends A and AAAA together) still pass.

Under ``dns`` inspection the DNS guard (:mod:`cbac.inspect.dns`, in
``session.inspector``) admits only queries from the client and exactly one
response per outstanding query; when every query has been answered the
session moves to ``SIS_CLOSING`` and is deleted at the next timer tick
(within a second) instead of living out dns-timeout.
"""

from __future__ import annotations

from cbac.inspect.dns import ANSWERED_V, DROP

SIS_OPEN = "SIS_OPEN"
SIS_CLOSING = "SIS_CLOSING"


def udp_process(table, s, d: int, pkt) -> bool:
    """Per-packet work of a UDP session: True = forward, False = drop
    (only the DNS guard drops; the key match already checked addresses
    and ports)."""
    guard = s.inspector
    verdict = None
    if guard is not None:
        verdict, why = guard.datagram(d, pkt.frame[pkt.payload:pkt.payload + pkt.payload_len])
        if verdict == DROP:
            table.stats.drop(why)
            if table.debug_enabled:
                table.debug_line("udp", "CBAC sis %s DNS %s: dropped (%s)" % (
                    s.hexid, "query" if d == 0 else "response", why))
            return False
    if d == 1 and s.half_open:
        table.set_open(s)
        if s.dns and guard is None:
            s.sis = SIS_CLOSING
        if table.debug_enabled:
            table.debug_line("udp", "CBAC sis %s UDP reply: session open (%s)" % (
                s.hexid, s.flow_text()))
    s.bytes[d] += pkt.payload_len
    if guard is not None:
        s.app_state = guard.state_summary()
        if verdict == ANSWERED_V:
            # every query answered / the transfer is over: close now
            # (deleted at the next tick); a TFTP request session goes with
            # its data channel
            now = table.clock.seconds()
            p = s.parent
            for x in (s, p) if p is not None and p.protocol == "tftp" else (s,):
                if not x.dead:
                    x.sis = SIS_CLOSING
                    x.fixed = now
                    table.schedule(x, now)
        elif s.fixed is not None and d == 0:
            # a new query on the same socket before the deletion
            s.sis = SIS_OPEN if not s.half_open else s.sis
            s.fixed = None
    return True
