"""One timer wheel for the session table and NAT.

Items (sessions, translations) are filed in one-second *slots* (integer
times) in a dict per slot; each item has a ``slot`` attribute naming the
slot it is filed in (or None), so moving or removing an item is O(1) and a
removed item is not referenced until its old deadline.  A heap of slot
numbers gives the earliest slot.  The owner checks each item's real
deadline when its slot comes due and re-files items that were used since
(lazy: a packet only writes a "last seen" time, never touches the wheel).

Time comes from the injected clock (``IReactorTime``): the wheel keeps the
one pending ``callLater`` and calls its owner's ``run()`` when it fires.
The owner chooses when to be woken: at a slot's time (:meth:`call_at`,
NAT) or a period after now (:meth:`ensure`, the session table, which also
runs host unblocking, pinholes and aggressive mode from its tick).

Neutral module: :mod:`cbac.nat` must not import :mod:`cbac.inspect`.
"""

from __future__ import annotations

import heapq


class TimerWheel:
    """Slots of items and the one timer of their owner."""

    __slots__ = ("clock", "run", "slots", "heap", "timer", "timer_at", "_slot_int")

    def __init__(self, clock, run):
        self.clock = clock
        self.run = run                  # called (no arguments) when the timer fires
        self.slots = {}                 # slot -> {item: None}, insertion order
        self.heap = []                  # slot numbers with a dict in slots
        self.timer = None
        self.timer_at = None
        self._slot_int = None           # the last slot number filed (one int object for all)

    # -- filing ----------------------------------------------------------

    def add(self, item, slot: int) -> bool:
        """File ``item`` in ``slot`` (out of its old slot first).  True
        when the slot is new (the owner may need an earlier wake-up)."""
        old = item.slot
        if old is not None:
            b = self.slots.get(old)
            if b is not None:
                b.pop(item, None)
        # items filed in the same slot share one int object (a slot number
        # is a large int: 32 bytes per item otherwise)
        if slot == self._slot_int:
            slot = self._slot_int
        else:
            self._slot_int = slot
        item.slot = slot
        b = self.slots.get(slot)
        if b is None:
            self.slots[slot] = {item: None}
            heapq.heappush(self.heap, slot)
            return True
        b[item] = None
        return False

    def remove(self, item) -> None:
        """Take ``item`` out of its slot (O(1))."""
        old = item.slot
        if old is not None:
            b = self.slots.get(old)
            if b is not None:
                b.pop(item, None)
            item.slot = None

    def put_back(self, slot: int, items) -> None:
        """Re-file ``items`` (still naming ``slot``) ahead of whatever the
        slot holds now: a run that stopped half-way through a due slot."""
        rest = dict.fromkeys(items)
        old = self.slots.get(slot)
        if old:
            rest.update(old)
        if old is None:
            heapq.heappush(self.heap, slot)
        self.slots[slot] = rest

    def pop_due(self, now):
        """``(slot, [items])`` of every slot at or before ``now``, earliest
        first, each taken off the wheel as it is handed out.  Items whose
        ``slot`` no longer names the slot are stale (moved since): the
        caller skips them."""
        heap = self.heap
        slots = self.slots
        while heap and heap[0] <= now:
            slot = heapq.heappop(heap)
            bucket = slots.pop(slot, None)
            if bucket:
                yield slot, list(bucket)

    def next_slot(self):
        """The earliest slot with a dict (possibly emptied since), or None."""
        return self.heap[0] if self.heap else None

    def clear(self) -> None:
        self.slots.clear()
        del self.heap[:]

    def __bool__(self) -> bool:
        return bool(self.slots)

    # -- the timer -------------------------------------------------------

    def call_at(self, at: float) -> None:
        """Fire no later than ``at``."""
        t = self.timer
        if t is not None and t.active():
            if self.timer_at is not None and self.timer_at <= at:
                return
            t.cancel()
        self.timer_at = at
        self.timer = self.clock.callLater(max(0.0, at - self.clock.seconds()), self._fire)

    def ensure(self, delay: float) -> None:
        """Fire ``delay`` seconds from now unless a timer is pending."""
        t = self.timer
        if t is None or not t.active():
            self.timer_at = self.clock.seconds() + delay
            self.timer = self.clock.callLater(delay, self._fire)

    def stop(self) -> None:
        """Cancel the timer (shutdown, tests)."""
        t = self.timer
        if t is not None and t.active():
            t.cancel()
        self.timer = None
        self.timer_at = None

    def _fire(self) -> None:
        self.timer = None
        self.timer_at = None
        self.run()


__all__ = ["TimerWheel"]
