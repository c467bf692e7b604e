"""``show ip inspect sessions [detail]`` and ``show ip inspect statistics``.

Sessions are listed under ``Established Sessions``, ``Half-open Sessions``
and ``Terminating Sessions`` (empty sections are left out, as IOS does),
oldest first, with addresses and ports as the initiator sent them
(pre-NAT on the initiator's side)::

    Established Sessions
     Session 6591161C (10.1.1.1:8)=>(11.1.1.2:0) icmp SIS_OPEN
      Created 00:00:05, Last heard 00:00:05
      ECHO request
      Bytes sent (initiator:responder) [360:360]
"""

from __future__ import annotations

from cbac.packet.view import ip_str

_SECTIONS = (("SIS_OPEN", "Established Sessions"), ("SIS_OPENING", "Half-open Sessions"),
             ("SIS_CLOSING", "Terminating Sessions"))


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return "%02d:%02d:%02d" % (s // 3600, (s // 60) % 60, s % 60)


def session_line(s) -> str:
    return " Session %s (%s:%d)=>(%s:%d) %s %s" % (
        s.hexid, ip_str(s.initiator[0]), s.initiator[1], ip_str(s.responder[0]),
        s.responder[1], s.protocol, s.sis)


def session_detail(s, now: float) -> list:
    lines = ["  Created %s, Last heard %s" % (_hms(now - s.created), _hms(now - s.last))]
    summary = s.app_state
    insp = s.stream.inspector if s.stream is not None else None
    if insp is not None:
        try:
            summary = insp.state_summary()
        except Exception:
            summary = "(inspector state unavailable)"
    if summary:
        lines.append("  " + summary)
    lines.append("  Bytes sent (initiator:responder) [%d:%d]" % (s.bytes[0], s.bytes[1]))
    if s.c_in != s.c_out:
        o = s.c_out
        if s.proto == 1:
            lines.append("  Translated (%s:%d)=>(%s:%d)" % (ip_str(o[0]), s.initiator[1],
                                                        ip_str(o[1]), 0))
        else:
            lines.append("  Translated (%s:%d)=>(%s:%d)" % (ip_str(o[0]), o[2], ip_str(o[1]),
                                                        o[3]))
    return lines


def show_sessions(table, detail: bool = False) -> str:
    now = table.clock.seconds()
    groups = {k: [] for k, _ in _SECTIONS}
    for s in table.sessions.values():
        groups.get(s.sis, groups["SIS_OPEN"]).append(s)
    gre = getattr(table, "gre", None)
    if gre is not None:                  # PPTP calls' GRE (cbac/inspect/gre.py)
        groups["SIS_OPEN"].extend(c for c in gre.calls.values() if not c.parent.dead)
    out = []
    for key, title in _SECTIONS:
        lst = groups[key]
        if not lst:
            continue
        out.append(title)
        for s in lst:
            out.append(session_line(s))
            if detail:
                out.extend(session_detail(s, now))
    return "\n".join(out)


def show_statistics(table) -> str:
    g = table.model.inspect
    st = table.stats
    sessions = list(table.sessions.values())
    per = {}
    for s in sessions:
        row = per.setdefault(s.protocol, [0, 0, 0])
        row[{"SIS_OPEN": 0, "SIS_OPENING": 1, "SIS_CLOSING": 2}.get(s.sis, 0)] += 1
    half_tcp = table.half_open_tcp()
    half_udp = table.half_open_count - half_tcp
    out = [
        "Session table: %d sessions (limit %d), peak %d" % (
            len(sessions), table.model.session_limit, st.peak),
        "Half-open sessions: %d (tcp %d, udp %d), max-incomplete thresholds are [%d:%d]" % (
            table.half_open_count, half_tcp, half_udp, g.max_incomplete_low,
            g.max_incomplete_high),
        "New sessions in the last minute: %d, one-minute thresholds are [%d:%d]" % (
            table.one_minute_rate(), g.one_minute_low, g.one_minute_high),
        "Aggressive mode is %s (entered %d time%s)" % (
            "on" if table.aggressive else "off", st.aggressive_entered,
            "" if st.aggressive_entered == 1 else "s"),
        "Max tcp half-open connections per host is %d. Block-time %d minute%s." % (
            g.tcp_max_incomplete_host, g.tcp_block_time,
            "" if g.tcp_block_time == 1 else "s"),
    ]
    blocked = table.blocked_hosts()
    if blocked:
        now = table.clock.seconds()
        for host, until in blocked:
            out.append("  Host %s blocked for %d more seconds" % (ip_str(host), int(until - now)))
    out.append("Pinholes (expected connections): %d" % table.pinhole_count)
    un = getattr(table, "uninspected", None)
    if un is not None:
        out.append("Uninspected TCP connections (ACL-permitted, no rule): %d of max %d, "
                   "evicted %d" % (len(un), un.limit(), un.evicted))
    out.append("Sessions by protocol:")
    out.append("  %-10s %11s %9s %11s %9s" % ("Protocol", "Established", "Half-open",
                                             "Terminating", "Created"))
    for proto in sorted(set(per) | set(st.created)):
        row = per.get(proto, [0, 0, 0])
        out.append("  %-10s %11d %9d %11d %9d" % (proto, row[0], row[1], row[2],
                                                 st.created.get(proto, 0)))
    if st.deleted:
        out.append("Sessions deleted:")
        for reason in sorted(st.deleted):
            out.append("  %-28s %d" % (reason, st.deleted[reason]))
    out.append("Packets dropped:")
    if st.drops:
        for reason in sorted(st.drops):
            out.append("  %-28s %d" % (reason, st.drops[reason]))
    else:
        out.append("  none")
    norm = getattr(st, "normalised", None)
    if norm:
        out.append("Packets normalised:")
        for reason in sorted(norm):
            out.append("  %-28s %d" % (reason, norm[reason]))
    return "\n".join(out)
