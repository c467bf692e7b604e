"""The normaliser: what cbac does so that the end hosts and the inspectors
see the same packets and bytes (docs/inspection.md, "The normaliser").

Rules, each with a counter in ``show ip inspect statistics``
("Packets dropped" or "Packets normalised"):

* **Checksums** (router, slow path): a TCP/UDP/ICMP packet whose checksum
  is wrong is dropped before it can change any state (``bad-checksum``
  here, ``bad-l4-checksum`` on the interface).  The established-flow fast
  path, which changes no state but the window of a flow without an
  application inspector, does not verify (docs/performance.md).
* **RST** (RFC 5961 as the firewall sees it): an RST inside the window is
  forwarded unchanged, never moved to the exact sequence number.  Below
  what the receiver acknowledged it cannot be accepted and is dropped
  (``rst-below-ack``).  When the receiver could have accepted it (its
  sequence number lies between what the receiver acknowledged and what
  it was sent) the session closes (finwait); beyond what was sent the
  session enters a challenge (``rst-challenge``):
  it lives on, and any segment from the receiver (its challenge ACK) ends
  the challenge; when the receiver says nothing for
  :data:`CHALLENGE_TIME` seconds the RST is taken as accepted.  For an
  application-inspected session "could have accepted" is judged on the
  bytes the receiver actually got (held bytes are not counted).  An RST
  never carries payload to an inspector or the receiver
  (``rst-data-stripped``).
* **No session, no pass**: a TCP segment that is not a SYN, has no
  session and is covered by an inspection rule is dropped
  (``tcp-no-session``), with a rate-limited ``%FW-6-DROP_PKT`` log line,
  unless it belongs to a connection whose SYN the ACLs passed without
  inspection (no rule covered the SYN's direction: a published server;
  remembered, bounded, in cbac/inspect/uninspected.py); then the ACLs
  decide, as in IOS.  A connection whose SYN was inspected is never
  remembered there.  ``cbac inspect tcp no-session forward`` restores the
  IOS behaviour for every segment.
* **Urgent data** of an application-inspected session: URG and the urgent
  pointer are cleared (``urg-cleared``), so the byte is ordinary data for
  the receiver, as it is for the inspector, whatever SO_OOBINLINE says.
"""

from __future__ import annotations

from cbac.inspect.tcp import RST_CHALLENGE, RST_EXACT
from cbac.log import ios
from cbac.packet.view import URG, ip_str

#: seconds a challenged RST waits for the receiver's answer
CHALLENGE_TIME = 5.0
#: at most one DROP_PKT line per this many seconds
DROP_LOG_INTERVAL = 1.0


def count(table, reason: str) -> None:
    """Count a normalisation (rewritten or accepted-with-conditions)."""
    n = table.stats.normalised
    n[reason] = n.get(reason, 0) + 1


def rst_verdict(s, d: int, pkt, verdict):
    """Refine the tracker's verdict on an in-window RST for a stream
    session: judged on what was forwarded to the receiver (held bytes do
    not count).  Returns RST_EXACT, RST_CHALLENGE or a drop reason."""
    st = s.stream
    if st is None or verdict is not RST_EXACT:
        return verdict
    sd = st.dirs[d]
    if sd.isn is None:
        return verdict
    y = sd.map_start(sd.in_abs(pkt.tcp_seq))
    if y < sd.out_base:
        return "rst-below-ack"
    if y > sd.out_fwd:
        return RST_CHALLENGE
    return RST_EXACT


def challenge(table, s, d: int, now: float) -> None:
    """Enter (or stay in) the RST challenge of session s."""
    t = s.tcp
    count(table, "rst-challenge")
    if not t.chal:
        t.chal = now + CHALLENGE_TIME
        t.chald = d
        table.schedule(s, t.chal)
        if table.debug_enabled:
            table.debug_line("events", "CBAC sis %s RST challenge: in-window RST not at the "
                             "expected sequence %s" % (s.hexid, s.flow_text()))


def urgent(table, pkt) -> bool:
    """Clear URG and the urgent pointer of a segment (the caller fixes the
    checksum).  True when something changed."""
    frame = pkt.frame
    l4 = pkt.l4
    changed = False
    if pkt.tcp_flags & URG:
        frame[l4 + 13] &= ~URG & 0xFF
        pkt.tcp_flags &= ~URG & 0xFF
        changed = True
    if frame[l4 + 18] or frame[l4 + 19]:
        frame[l4 + 18] = frame[l4 + 19] = 0
        changed = True
    if changed:
        count(table, "urg-cleared")
    return changed


def no_session(table, pkt, rule_name, ifname) -> bool:
    """A packet an inspection rule covers, that cannot open a session and
    has no session.  True: drop it (TCP, unless ``cbac inspect tcp
    no-session forward``)."""
    if pkt.proto != 6:
        return False
    if getattr(table.model.inspect, "tcp_no_session", "drop") == "forward":
        return False
    now = table.clock.seconds()
    unins = getattr(table, "uninspected", None)
    if unins is not None and unins.seen(pkt, now):
        # a connection whose SYN the ACLs passed without inspection
        # (cbac/inspect/uninspected.py): the ACLs decide, as in IOS
        return False
    table.stats.drop("tcp-no-session")
    if table.debug_enabled:
        table.debug_line("detailed", "CBAC* pak dropped: no session (not a SYN) "
                         "(%s:%d) => (%s:%d)" % (ip_str(pkt.src), pkt.sport, ip_str(pkt.dst),
                                                 pkt.dport))
    if table.log_due("no-session", now, DROP_LOG_INTERVAL):
        ios.message("FW", 6, "DROP_PKT",
                    "Dropping tcp pkt %s:%d => %s:%d on %s rule %s with ip ident %d due to "
                    "no session (not a SYN)" % (
                        ip_str(pkt.src), pkt.sport, ip_str(pkt.dst), pkt.dport, ifname,
                        rule_name, pkt.ip_id))
    return True


__all__ = ["CHALLENGE_TIME", "rst_verdict", "challenge", "urgent", "no_session", "count"]
