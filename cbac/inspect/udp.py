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

Under ``sip`` inspection the SIP guard (:mod:`cbac.inspect.sip`) may
rewrite a datagram (verdict ``EDIT``: NAT addresses in SIP/SDP, lengths
changed; :func:`replace_payload` fixes the UDP and IP lengths and
checksums), open or close media pinholes (``guard.effects``), and keep the
session alive longer than its idle time (``guard.keep``: a registration's
expiry, a call in progress).
"""

from __future__ import annotations

from cbac.inspect.dns import ANSWERED_V, DROP
from cbac.inspect.tcp import is_partial, set_ip_payload
from cbac.packet.checksum import pseudo_header_sum
from cbac.packet.udp import udp_checksum

#: a guard's verdict: forward with the payload replaced by ``guard.out``
EDIT = "edit"

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
        effects = getattr(guard, "effects", None)
        if effects is not None:
            _apply_effects(table, s, guard)
        if verdict == EDIT:
            replace_payload(pkt, guard.out)
        elif verdict == DROP:
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
    if d:
        s.b1 += pkt.payload_len
    else:
        s.b0 += pkt.payload_len
    if guard is not None:
        s.app_state = guard.state_summary()
        if getattr(guard, "keep", None) is not None:
            _keep(table, s, guard)
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


def _apply_effects(table, s, guard) -> None:
    from cbac.inspect.sip import apply_effects
    v = guard.effects
    guard.effects = None
    apply_effects(table, s, v)


def _keep(table, s, guard) -> None:
    """A guard asks the session to live at least ``guard.keep(now)``
    seconds idle (SIP registration, call in progress); otherwise the
    rule's idle time (``guard.base_idle``)."""
    base = guard.base_idle
    if base is None:
        base = guard.base_idle = s.idle
    now = table.clock.seconds()
    new = max(base, guard.keep(now))
    if new < s.idle:
        # shorter than before (a registration shortened or removed): the
        # timer wheel only moves a session's slot earlier when asked
        s.idle = new
        s.last = now
        table.schedule(s)
    s.idle = new


def replace_payload(pkt, data) -> None:
    """Replace a UDP datagram's payload in ``pkt.frame`` (a bytearray):
    UDP length, IP total length, IP header checksum and UDP checksum
    (full, or the pseudo-header sum of a NEEDS_CSUM frame) fixed."""
    frame = pkt.frame
    l3 = pkt.l3
    l4 = pkt.l4
    end = set_ip_payload(pkt, data)
    ulen = end - l4
    frame[l4 + 4] = ulen >> 8
    frame[l4 + 5] = ulen & 0xFF
    if is_partial(pkt):
        src = int.from_bytes(frame[l3 + 12:l3 + 16], "big")
        dst = int.from_bytes(frame[l3 + 16:l3 + 20], "big")
        c = pseudo_header_sum(src, dst, 17, ulen)
    else:
        c = udp_checksum(frame, l3, l4, end)
    frame[l4 + 6] = c >> 8
    frame[l4 + 7] = c & 0xFF


def udp_guard_start(table, s, pkt) -> bool:
    """Attach the SIP guard to a new UDP session and judge its first
    datagram (already translated by NAT).  False: refused (the caller
    deletes the session)."""
    from cbac.inspect.api import CLIENT, InspectContext
    from cbac.inspect.sip import SipGuard
    c_in, c_out = s.c_in, s.c_out
    ctx = InspectContext(
        client_addr=c_in[0], client_port=c_in[2], server_addr=c_in[1],
        server_port=c_in[3], rule=s.rule, server_own_addr=c_out[1],
        client_seen=(c_out[0], c_out[2]), server_seen=(c_in[1], c_in[3]),
        debug="sip" in table.debug_enabled, now=table.clock.seconds,
        nat_map=lambda direction, proto, addr, port, _s=s: table._nat_map(
            _s, direction, proto, addr, port),
        nat_map_any=lambda direction, proto, addr, port, _s=s: table._nat_map(
            _s, direction, proto, addr, port, True))
    guard = SipGuard(ctx)
    s.inspector = guard
    guard.base_idle = s.idle
    verdict, why = guard.datagram(CLIENT, pkt.frame[pkt.payload:pkt.payload + pkt.payload_len])
    if verdict == DROP:
        table.stats.drop(why)
        if guard.effects is not None:
            _apply_effects(table, s, guard)      # the alert
        return False
    _apply_effects(table, s, guard)
    if verdict == EDIT:
        replace_payload(pkt, guard.out)
        s.b0 = pkt.payload_len
    s.app_state = guard.state_summary()
    _keep(table, s, guard)
    return True
