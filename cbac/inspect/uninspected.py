"""TCP connections the access lists let through without inspection.

The normaliser drops a TCP segment that is not a SYN, has no session and
is covered by an inspection rule ("no session, no pass",
:func:`cbac.inspect.normalise.no_session`).  One legitimate kind of
traffic looks exactly like that: a connection whose SYN no inspection
rule covered (a server published by static NAT and an inbound ACL permit,
with inspection only outbound): its SYN passes the ACLs without a session,
and the server's SYN/ACK and data enter the interface whose rule covers
them.  IOS forwards them (the ACLs decide); so does cbac, for connections
remembered here.

What is remembered: each TCP SYN (without ACK/RST/FIN) that the ACLs
permitted and that left without a session because no inspection rule
covered its direction.  An entry has a key for the connection as it
arrived and one as it left (either side of NAT), each independent of the
direction, so a segment of either direction finds it after NAT.

What is never remembered: a connection whose SYN was inspected (its
session created, then closed, reset, expired or evicted).  A segment of
such a connection still has no session and is dropped, so the
teardown-evasion family stays closed.  Creating a session also removes an
entry for the same connection.

Bounds: at most ``cbac session-limit`` entries (default 25000); the oldest
(least recently used) is evicted first and counted (``evicted``), so a
spoofed SYN flood to a published server costs a bounded amount of memory
(about 600 bytes an entry, measured with tracemalloc).  An entry lives ``ip inspect tcp idle-time``
seconds after the last packet that consulted it (the SYN, or a segment of
the connection that had no session on a covered direction).
"""

from __future__ import annotations

from collections import OrderedDict


def _key(src: int, dst: int, sport: int, dport: int) -> tuple:
    """The connection's key, the same for both directions."""
    if (src, sport) <= (dst, dport):
        return (src, sport, dst, dport)
    return (dst, dport, src, sport)


class UninspectedConnections:
    """The bounded table of uninspected TCP connections (see the module
    docstring).  ``limit()`` and ``idle()`` are read on every insertion,
    so a reload's ``cbac session-limit`` and ``ip inspect tcp idle-time``
    apply at once."""

    __slots__ = ("_entries", "_keys", "_limit", "_idle", "evicted", "expired", "remembered")

    def __init__(self, limit, idle):
        self._entries = OrderedDict()    # primary key -> [expires, other key]
        self._keys = {}                  # key (either side of NAT) -> primary key
        self._limit = limit
        self._idle = idle
        self.evicted = 0
        self.expired = 0
        self.remembered = 0

    def __len__(self) -> int:
        return len(self._entries)

    def limit(self) -> int:
        return self._limit()

    def remember(self, c_in, c_out, now: float) -> None:
        """A SYN that arrived as ``c_in`` and left as ``c_out`` (each
        ``(src, dst, sport, dport)``) without a session."""
        k1 = _key(*c_in)
        k2 = _key(*c_out)
        entries = self._entries
        keys = self._keys
        old = keys.get(k1) or keys.get(k2)
        if old is not None:
            self._remove(old)
        limit = max(1, self._limit())
        while len(entries) >= limit:
            self._remove(next(iter(entries)))
            self.evicted += 1
        entries[k1] = [now + self._idle(), k2]
        keys[k1] = k1
        keys[k2] = k1
        self.remembered += 1

    def _remove(self, primary) -> None:
        e = self._entries.pop(primary, None)
        if e is None:
            return
        self._keys.pop(primary, None)
        self._keys.pop(e[1], None)

    def forget(self, src, dst, sport, dport) -> None:
        """A session was created for this connection: it is inspected now."""
        p = self._keys.get(_key(src, dst, sport, dport))
        if p is not None:
            self._remove(p)

    def seen(self, pkt, now: float) -> bool:
        """True when the TCP segment ``pkt`` (as it leaves, after NAT)
        belongs to a remembered connection; refreshes its idle timer."""
        if not self._keys:
            return False
        p = self._keys.get(_key(pkt.src, pkt.dst, pkt.sport, pkt.dport))
        if p is None:
            return False
        e = self._entries[p]
        if e[0] <= now:
            self._remove(p)
            self.expired += 1
            return False
        e[0] = now + self._idle()
        self._entries.move_to_end(p)
        return True

    def known(self, pkt) -> bool:
        """Like :meth:`seen`, without refreshing (packet-tracer)."""
        p = self._keys.get(_key(pkt.src, pkt.dst, pkt.sport, pkt.dport))
        return p is not None

    def expire(self, now: float) -> None:
        """Remove idle entries (oldest first; called about once a second)."""
        entries = self._entries
        while entries:
            p = next(iter(entries))
            if entries[p][0] > now:
                break
            self._remove(p)
            self.expired += 1

    def clear(self) -> None:
        self._entries.clear()
        self._keys.clear()


__all__ = ["UninspectedConnections"]
