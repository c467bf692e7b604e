"""UDP pseudo-sessions.

A UDP session is keyed by its 4-tuple (both sides of NAT); it is
half-open (counts toward ``max-incomplete`` and the one-minute rate) until
the responder sends the first packet.  Idle timeout: the rule's
``timeout`` or ``ip inspect udp idle-time`` (30 s).  DNS (responder port
53): the idle timeout is ``ip inspect dns-timeout`` (5 s); the first reply
moves the session to ``SIS_CLOSING`` (shown under "Terminating
Sessions"), it then lives at most dns-timeout after the last packet, so
the replies of parallel queries on the same socket (glibc sends A and AAAA
together) still pass.
"""

from __future__ import annotations

SIS_OPEN = "SIS_OPEN"
SIS_CLOSING = "SIS_CLOSING"


def udp_process(table, s, d: int, pkt) -> bool:
    """Per-packet work of a UDP session (always accepted: the key match
    already checked addresses and ports)."""
    if d == 1 and s.half_open:
        table.set_open(s)
        if s.dns:
            s.sis = SIS_CLOSING
        if table.debug_enabled:
            table.debug_line("udp", "CBAC sis %s UDP reply: session open (%s)" % (
                s.hexid, s.flow_text()))
    s.bytes[d] += pkt.payload_len
    return True
