"""``log`` / ``log-input`` on access-list entries: %SEC-6-IPACCESSLOG* lines.

Rate limiting as IOS does it: the first packet of a flow that matches a
logging entry is logged at once (``1 packet``); later packets of the same
flow are only counted, and every 5 minutes a summary line with the count
for the interval is logged (``7 packets``).  A flow that saw no packet in
an interval is forgotten, so its next packet is again logged at once.

A "flow" here is (list, entry, protocol, source, source port, destination,
destination port or ICMP type/code, input interface).

Beating IOS: the flow table is bounded (``max_flows``, default 4096).
When it is full, packets of new flows are not logged one by one; they are
counted and reported every interval as
``%SEC-6-IPACCESSLOGRL: access-list logging rate-limited or missed N packets``.

Time comes from the injected clock; one timer is pending at most, and only
while flows are tracked.  Formats (Cisco System Message Guide, SEC
facility)::

    %SEC-6-IPACCESSLOGP: list 101 denied tcp 172.22.1.1(1234) -> 172.22.1.16(23), 1 packet
    %SEC-6-IPACCESSLOGP: list 101 denied tcp 172.22.1.1(1234) (Ethernet0/0 0011.2233.4455) -> 172.22.1.16(23), 1 packet
    %SEC-6-IPACCESSLOGDP: list 101 permitted icmp 10.1.1.1 -> 10.2.2.2 (8/0), 2 packets
    %SEC-6-IPACCESSLOGNP: list 101 denied 47 10.1.1.1 -> 10.2.2.2, 1 packet
    %SEC-6-IPACCESSLOGS: list 1 denied 10.1.1.1 1 packet
"""

from __future__ import annotations

from collections import deque

from cbac.log import ios
from cbac.packet.view import ip_str

LOG_INTERVAL = 300.0


def _mac(frame, off=6) -> str:
    b = bytes(frame[off:off + 6])
    if len(b) < 6:
        return "0000.0000.0000"
    h = b.hex()
    return "%s.%s.%s" % (h[0:4], h[4:8], h[8:12])


def format_log(list_name, standard, permit, proto, src, dst, sport, dport,
               itype, icode, count, input_info=None):
    """Returns (mnemonic, text)."""
    act = "permitted" if permit else "denied"
    pk = "packet" if count == 1 else "packets"
    if standard:
        return "IPACCESSLOGS", "list %s %s %s %d %s" % (list_name, act, ip_str(src), count, pk)
    inp = "(%s %s) " % input_info if input_info else ""
    if proto in (6, 17):
        return "IPACCESSLOGP", "list %s %s %s %s(%d) %s-> %s(%d), %d %s" % (
            list_name, act, "tcp" if proto == 6 else "udp", ip_str(src), sport, inp,
            ip_str(dst), dport, count, pk)
    if proto == 1:
        return "IPACCESSLOGDP", "list %s %s icmp %s %s-> %s (%d/%d), %d %s" % (
            list_name, act, ip_str(src), inp, ip_str(dst), max(itype, 0), max(icode, 0),
            count, pk)
    return "IPACCESSLOGNP", "list %s %s %d %s %s-> %s, %d %s" % (
        list_name, act, proto, ip_str(src), inp, ip_str(dst), count, pk)


class AclLogger:
    def __init__(self, clock, interval: float = LOG_INTERVAL, max_flows: int = 4096):
        self.clock = clock
        self.interval = interval
        self.max_flows = max_flows
        self.flows: dict[tuple, list] = {}     # key -> [count, args]
        self.due: deque = deque()              # (due time, key), due times ascending
        self.missed = 0
        self.timer = None
        self.emitted = 0

    def packet(self, list_name, standard, ace, proto, src, dst, sport, dport,
               itype, icode, in_if=None, frame=None):
        input_info = None
        if ace.log == "log-input" and in_if is not None and not standard:
            input_info = (in_if, _mac(frame) if frame is not None else "0000.0000.0000")
        if standard:
            key = (list_name, ace.index, src)
        else:
            key = (list_name, ace.index, proto, src, sport, dst, dport, itype, icode, input_info)
        rec = self.flows.get(key)
        if rec is not None:
            rec[0] += 1
            return
        if len(self.flows) >= self.max_flows:
            self.missed += 1
            self._arm()
            return
        args = (list_name, standard, ace.permit, proto, src, dst, sport, dport,
                itype, icode)
        self.flows[key] = [0, args, input_info]
        self.due.append((self.clock.seconds() + self.interval, key))
        self._emit(args, 1, input_info)
        self._arm()

    def _emit(self, args, count, input_info):
        mnem, text = format_log(*args, count, input_info)
        self.emitted += 1
        ios.message("SEC", 6, mnem, text)

    def _arm(self):
        if self.timer is not None and self.timer.active():
            return
        if self.due:
            delay = max(0.0, self.due[0][0] - self.clock.seconds())
        elif self.missed:
            delay = self.interval
        else:
            return
        self.timer = self.clock.callLater(delay, self._sweep)

    def _sweep(self):
        self.timer = None
        now = self.clock.seconds()
        due = self.due
        while due and due[0][0] <= now + 1e-9:
            t, key = due.popleft()
            rec = self.flows.get(key)
            if rec is None:
                continue
            if rec[0]:
                self._emit(rec[1], rec[0], rec[2])
                rec[0] = 0
                due.append((t + self.interval, key))
            else:
                del self.flows[key]
        if self.missed:
            ios.message("SEC", 6, "IPACCESSLOGRL",
                        "access-list logging rate-limited or missed %d packet%s"
                        % (self.missed, "" if self.missed == 1 else "s"))
            self.missed = 0
        self._arm()

    def stop(self):
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
