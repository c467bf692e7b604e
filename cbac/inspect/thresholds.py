"""Session thresholds and host blocking (IOS ``ip inspect`` DoS limits).

* ``max-incomplete high/low`` and ``one-minute high/low``: aggressive
  mode deletes the oldest half-open sessions (of the largest flood group
  first, see :meth:`Thresholds.victim`) until the counts calm down;
* ``tcp max-incomplete host N block-time M``: per-host half-open limit and
  host blocking;
* ``cbac session-limit host`` / ``destination``: per-address session caps.

The state lives in :class:`Thresholds`, one per
:class:`cbac.inspect.session.SessionTable` (its ``thresholds``); it deletes
sessions through the table (``table._delete``) and logs the IOS
``%FW-...`` messages.
"""

from __future__ import annotations

from struct import Struct

from cbac.log import ios
from cbac.packet.view import ip_str

#: the responder's address in a session's client-side key (``s.host``)
_HOST = Struct("!I").unpack_from


class Thresholds:
    """The half-open bookkeeping, the one-minute rate, aggressive mode,
    per-host blocking and per-address session counts of a session table."""

    def __init__(self, table):
        self.table = table
        self.half = {}                  # half-open TCP+UDP sessions, oldest first
        # proto -> responder -> {session: None} (TCP+UDP): the half-open
        # sessions of one (protocol, responder) group; a host's half-open
        # TCP sessions are tcp_half[host] (no second per-host dict, no
        # tuple key per connection)
        self.tcp_half = {}
        self.group_half = {6: self.tcp_half, 17: {}}
        self.per_src = {}               # initiator address -> sessions
        self.src_logged = {}            # initiator address -> last limit log time
        self.per_dst = {}               # responder address (real) -> sessions
        self.dst_logged = {}            # responder address -> last limit log time
        # the group that grew largest last: its protocol (None: none yet)
        # and responder
        self.heavy_proto = None
        self.heavy_host = None
        self.host_alerted = set()
        self.blocked = {}               # host -> unblock time
        self.aggressive = False
        self.rate_buckets = [0] * 60
        self.rate_sec = None
        self.rate = 0

    # -- read accessors (show, trace, metrics) ---------------------------

    @property
    def half_open_count(self) -> int:
        return len(self.half)

    def half_open_tcp(self) -> int:
        return sum(1 for s in self.half if s.proto == 6)

    def host_half_open(self, host) -> int:
        """Half-open TCP sessions to ``host``."""
        return len(self.tcp_half.get(host) or ())

    def blocked_until(self, host):
        """The time ``host`` is blocked until, or None."""
        return self.blocked.get(host)

    def blocked_hosts(self):
        """[(host, unblock time)] sorted by host."""
        return sorted(self.blocked.items())

    # -- per-address session counts --------------------------------------

    def count(self, src, dst) -> None:
        self.per_src[src] = self.per_src.get(src, 0) + 1
        self.per_dst[dst] = self.per_dst.get(dst, 0) + 1

    def uncount(self, src, dst) -> None:
        n = self.per_src.get(src, 0) - 1
        if n > 0:
            self.per_src[src] = n
        else:
            self.per_src.pop(src, None)
        n = self.per_dst.get(dst, 0) - 1
        if n > 0:
            self.per_dst[dst] = n
        else:
            self.per_dst.pop(dst, None)

    def log_source_limit(self, src, now, limit) -> None:
        last = self.src_logged.get(src)
        if last is not None and now - last < 60:
            return
        if len(self.src_logged) > 1024:
            self.src_logged = {h: t for h, t in self.src_logged.items() if now - t < 60}
        self.src_logged[src] = now
        ios.message("FW", 4, "HOST_SESSIONS_MAXIMUM",
                    "Number of sessions from host %s exceeds the configured maximum value %d"
                    % (ip_str(src), limit))

    def log_dest_limit(self, dst, now, limit) -> None:
        last = self.dst_logged.get(dst)
        if last is not None and now - last < 60:
            return
        if len(self.dst_logged) > 1024:
            self.dst_logged = {h: t for h, t in self.dst_logged.items() if now - t < 60}
        self.dst_logged[dst] = now
        ios.message("FW", 4, "DEST_SESSIONS_MAXIMUM",
                    "Number of sessions to host %s exceeds the configured maximum value %d"
                    % (ip_str(dst), limit))

    # -- half-open sessions ----------------------------------------------

    def _hosts(self, proto):
        """responder -> {session: None} of the half-open sessions of ``proto``."""
        hosts = self.group_half.get(proto)
        if hosts is None:
            hosts = self.group_half[proto] = {}
        return hosts

    def add_half(self, s, host=None) -> None:
        """A new half-open session (TCP or UDP); ``host`` is ``s.host``
        when the caller has it at hand."""
        self.half[s] = None
        proto = s.proto
        if host is None:
            host = _HOST(s.kc, 4)[0]
        hosts = self.tcp_half if proto == 6 else self._hosts(proto)
        gh = hosts.get(host)
        if gh is None:
            gh = hosts[host] = {s: None}
        else:
            gh[s] = None
        hp = self.heavy_proto
        if hp == proto and self.heavy_host == host:
            return                       # gh is the heaviest group already
        if hp is not None:
            heavy = (self.tcp_half if hp == 6 else self._hosts(hp)).get(self.heavy_host)
            if heavy is not None and len(gh) <= len(heavy):
                return
        self.heavy_proto = proto
        self.heavy_host = host

    def remove_half(self, s) -> None:
        """The session is no longer half-open."""
        self.half.pop(s, None)
        proto = s.proto
        host = _HOST(s.kc, 4)[0]         # s.host
        hosts = self.tcp_half if proto == 6 else self._hosts(proto)
        gh = hosts.get(host)
        if gh is not None:
            gh.pop(s, None)
            if not gh:
                del hosts[host]
                if proto == 6 and self.host_alerted:
                    self.host_alerted.discard(host)

    def victim(self):
        """The half-open session to delete when the table or aggressive
        mode needs room: the oldest of the flood, not of everyone.  When
        one (protocol, responder) group holds at least a quarter of the
        half-open sessions (a SYN flood to one server, one host's UDP
        sweep to one address), its oldest session goes; otherwise the
        oldest half-open session (IOS).  So a legitimate connection
        waiting for its SYN/ACK is not pushed out by a flood aimed
        elsewhere."""
        hp = self.heavy_proto
        g = None if hp is None else self._hosts(hp).get(self.heavy_host)
        if g and 4 * len(g) >= len(self.half):
            return next(iter(g))
        return next(iter(self.half))

    # -- max-incomplete host, block-time ---------------------------------

    def host_check(self, host, now, g) -> bool:
        """May a new TCP session to ``host`` be created?  Deletes (resets)
        the host's half-open sessions and blocks it when the per-host limit
        is exceeded with a block-time."""
        table = self.table
        until = self.blocked.get(host)
        if until is not None:
            if now < until:
                table.stats.drop("host-blocked")
                return False
            self.unblock(host)
        hh = self.tcp_half.get(host)
        n = len(hh) if hh else 0
        limit = g.tcp_max_incomplete_host
        if n < limit:
            return True
        if host not in self.host_alerted:
            self.host_alerted.add(host)
            if not g.alert_off:
                ios.message("FW", 4, "HOST_TCP_ALERT_ON",
                            "Max tcp half-open connections (%d) exceeded for host %s." % (
                                limit, ip_str(host)))
        if g.tcp_block_time > 0:
            for victim in list(hh):
                table.stats.drop("host-limit-delete")
                table._delete(victim, "host-block", rst=True)
            self.blocked[host] = now + 60 * g.tcp_block_time
            table.stats.hosts_blocked += 1
            if table.observer is not None:          # continuity
                table.observer.host_blocked(host, self.blocked[host])
            ios.message("FW", 2, "BLOCK_HOST",
                        "Blocking new TCP connections to host %s for %d minute%s "
                        "(half-open count %d exceeded)." % (
                            ip_str(host), g.tcp_block_time,
                            "" if g.tcp_block_time == 1 else "s", limit))
            table.stats.drop("host-blocked")
            table._ensure_timer()
            return False
        while hh and len(hh) >= limit:
            victim = next(iter(hh))
            table.stats.drop("host-limit-delete")
            table._delete(victim, "host-limit", rst=True)
        return True

    def unblock(self, host) -> None:
        del self.blocked[host]
        self.host_alerted.discard(host)
        if self.table.observer is not None:          # continuity
            self.table.observer.host_unblocked(host)
        ios.message("FW", 4, "UNBLOCK_HOST",
                    "New TCP connections to host %s no longer blocked" % ip_str(host))

    def unblock_due(self, now) -> None:
        for host, until in list(self.blocked.items()):
            if until <= now:
                self.unblock(host)

    # -- one-minute rate ---------------------------------------------------

    def rate_advance(self, now) -> None:
        sec = int(now)
        last = self.rate_sec
        if last is None:
            self.rate_sec = sec
            return
        if sec == last:
            return
        b = self.rate_buckets
        if sec - last >= 60 or sec < last:
            for i in range(60):
                b[i] = 0
            self.rate = 0
        else:
            for i in range(last + 1, sec + 1):
                j = i % 60
                self.rate -= b[j]
                b[j] = 0
        self.rate_sec = sec

    def rate_add(self, now) -> None:
        sec = int(now)
        if sec != self.rate_sec:
            self.rate_advance(now)
        self.rate_buckets[sec % 60] += 1
        self.rate += 1

    def one_minute_rate(self, now) -> int:
        """Connection attempts in the last 60 seconds: O(1) (within the
        same second no bucket moves; otherwise at most 60 are cleared)."""
        if self.rate_sec == int(now):
            return self.rate
        self.rate_advance(now)
        return self.rate

    # -- aggressive mode ---------------------------------------------------

    def check_aggressive(self, newest, g) -> None:
        table = self.table
        half = len(self.half)
        rate = self.rate
        if not self.aggressive:
            if half > g.max_incomplete_high or rate > g.one_minute_high:
                self.aggressive = True
                table.stats.aggressive_entered += 1
                if not g.alert_off:
                    ios.message("FW", 4, "ALERT_ON",
                                "getting aggressive, count (%d/%d) current 1-min rate: %d" % (
                                    half, g.max_incomplete_high, rate))
                # cut back to the low mark, oldest first
                low = g.max_incomplete_low
                while len(self.half) > low:
                    victim = self.victim()
                    if victim is newest:
                        break
                    table.stats.drop("aggressive-delete")
                    table._delete(victim, "aggressive", rst=True)
                table._ensure_timer()
        else:
            self.check_calm(g)

    def check_calm(self, g) -> None:
        if not self.aggressive:
            return
        half = len(self.half)
        now = self.table.clock.seconds()
        # one_minute_rate(now), inline within the same second
        rate = self.rate if self.rate_sec == int(now) else self.one_minute_rate(now)
        if half < g.max_incomplete_low and rate < g.one_minute_low:
            self.aggressive = False
            if not g.alert_off:
                ios.message("FW", 4, "ALERT_OFF",
                            "calming down, count (%d/%d) current 1-min rate: %d" % (
                                half, g.max_incomplete_low, rate))


__all__ = ["Thresholds"]
