"""ARP cache with IOS timeouts and a bounded queue of packets waiting for
resolution.

Entries learnt from ARP live for the interface's ``arp timeout`` (IOS
default 4 hours) and are then removed; the next packet to that address
resolves it again.  While a next hop is unresolved, up to
``QUEUE_PER_HOP`` packets wait for it (``QUEUE_TOTAL`` in all); a request
is sent at most once a second per address, and after ``MAX_TRIES``
unanswered requests the waiting packets are dropped and counted.
"""

from __future__ import annotations

from typing import Callable, Optional

from cbac.packet.ethernet import mac_str as mac_dotted   # IOS form 0200.ac16.0110
from cbac.packet.view import ip_str

QUEUE_PER_HOP = 8
QUEUE_TOTAL = 512
MAX_TRIES = 3
RETRY_INTERVAL = 1.0


class ArpEntry:
    __slots__ = ("ifname", "ip", "mac", "learned", "expires", "static")

    def __init__(self, ifname, ip, mac, learned, expires, static=False):
        self.ifname, self.ip, self.mac = ifname, ip, mac
        self.learned, self.expires, self.static = learned, expires, static


class Pending:
    __slots__ = ("frames", "tries", "last_request")

    def __init__(self):
        self.frames: list = []
        self.tries = 0
        self.last_request = -1e9


class ArpCache:
    def __init__(self, clock, send_request: Callable[[str, int], None]):
        self.clock = clock
        self._send_request = send_request
        self.entries: dict[tuple[str, int], ArpEntry] = {}
        self.pending: dict[tuple[str, int], Pending] = {}
        self.queued = 0
        self.dropped = 0

    def add_static(self, ifname: str, ip: int, mac: bytes) -> None:
        """The router's own addresses (shown with age '-')."""
        self.entries[(ifname, ip)] = ArpEntry(ifname, ip, mac, 0.0, None, static=True)

    def lookup(self, ifname: str, ip: int) -> Optional[bytes]:
        e = self.entries.get((ifname, ip))
        if e is None:
            return None
        if e.expires is not None and e.expires <= self.clock.seconds():
            del self.entries[(ifname, ip)]
            return None
        return e.mac

    def learn(self, ifname: str, ip: int, mac: bytes, timeout: float,
              create: bool = True) -> list:
        """Record ip -> mac; returns the frames that were waiting for it."""
        key = (ifname, ip)
        e = self.entries.get(key)
        now = self.clock.seconds()
        if e is not None and e.static:
            return []
        if e is None and not create and key not in self.pending:
            return []
        self.entries[key] = ArpEntry(ifname, ip, mac, now, now + timeout)
        p = self.pending.pop(key, None)
        if p is None:
            return []
        self.queued -= len(p.frames)
        return p.frames

    def enqueue(self, ifname: str, ip: int, item) -> bool:
        """Queue an item until ip is resolved; sends a request if due.
        Returns False when the item was dropped (queue full)."""
        key = (ifname, ip)
        p = self.pending.get(key)
        if p is None:
            p = self.pending[key] = Pending()
        now = self.clock.seconds()
        if now - p.last_request >= RETRY_INTERVAL:
            p.last_request = now
            p.tries += 1
            self._send_request(ifname, ip)
        if len(p.frames) >= QUEUE_PER_HOP or self.queued >= QUEUE_TOTAL:
            self.dropped += 1
            return False
        p.frames.append(item)
        self.queued += 1
        return True

    def sweep(self) -> None:
        """Expire entries and give up on unanswered resolutions."""
        now = self.clock.seconds()
        for key in [k for k, e in self.entries.items()
                    if e.expires is not None and e.expires <= now]:
            del self.entries[key]
        for key, p in list(self.pending.items()):
            if now - p.last_request >= RETRY_INTERVAL:
                if p.tries >= MAX_TRIES:
                    self.dropped += len(p.frames)
                    self.queued -= len(p.frames)
                    del self.pending[key]
                else:
                    p.tries += 1
                    p.last_request = now
                    self._send_request(key[0], key[1])

    def clear(self) -> None:
        for key in [k for k, e in self.entries.items() if not e.static]:
            del self.entries[key]

    def render(self) -> str:
        """``show arp`` in IOS layout."""
        now = self.clock.seconds()
        lines = ["Protocol  Address          Age (min)  Hardware Addr   Type   Interface"]
        for e in sorted(self.entries.values(), key=lambda e: (e.ip, e.ifname)):
            if e.expires is not None and e.expires <= now:
                continue
            age = "-" if e.static else str(int((now - e.learned) // 60))
            lines.append("Internet  %-16s %8s   %-14s  ARPA   %s" % (
                ip_str(e.ip), age, mac_dotted(e.mac), e.ifname))
        return "\n".join(lines)
