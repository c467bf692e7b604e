"""``show interfaces``, ``show ip interface brief`` and engine statistics."""

from __future__ import annotations

import math

from cbac.dataplane.arp import mac_dotted
from cbac.packet.view import ip_str

#: IOS computes "5 minute" rates as an exponentially weighted average.
RATE_WINDOW = 300.0


class RateMeter:
    """Exponentially decayed bits/s and packets/s, sampled once a second."""

    __slots__ = ("last_t", "last_bytes", "last_pkts", "bps", "pps")

    def __init__(self):
        self.last_t = None
        self.last_bytes = self.last_pkts = 0
        self.bps = self.pps = 0.0

    def sample(self, now: float, nbytes: int, npkts: int) -> None:
        if self.last_t is None:
            self.last_t, self.last_bytes, self.last_pkts = now, nbytes, npkts
            return
        dt = now - self.last_t
        if dt <= 0:
            return
        w = math.exp(-dt / RATE_WINDOW)
        self.bps = self.bps * w + (1 - w) * (nbytes - self.last_bytes) * 8 / dt
        self.pps = self.pps * w + (1 - w) * (npkts - self.last_pkts) / dt
        self.last_t, self.last_bytes, self.last_pkts = now, nbytes, npkts


def _hms(seconds: float) -> str:
    s = int(seconds)
    return "%02d:%02d:%02d" % (s // 3600, (s // 60) % 60, s % 60)


def _state(ri):
    """IOS's (status, line protocol) of an interface."""
    if ri.shutdown:
        return "administratively down", "down"
    if not getattr(ri.port, "link_up", True):
        return "down", "down"
    return "up", "up"


def show_interfaces(router, name=None, clock=None) -> str:
    out = []
    for ri in router.interfaces.values():
        if name is not None and ri.name.lower() != name.lower():
            continue
        c = ri.port.counters
        state, proto = _state(ri)
        rin, rout = router.rates.get(ri.name, (RateMeter(), RateMeter()))
        lines = [
            "%s is %s, line protocol is %s " % (ri.name, state, proto),
            "  Hardware is cbac %s, address is %s (bia %s)" % (
                type(ri.port).__name__, mac_dotted(ri.mac), mac_dotted(ri.mac)),
        ]
        if ri.model.description:
            lines.append("  Description: %s" % ri.model.description)
        if ri.address is not None:
            lines.append("  Internet address is %s/%d" % (ip_str(ri.address), ri.prefixlen))
        elif getattr(ri.model, "dhcp", False):
            lines.append("  Internet address will be negotiated using DHCP")
        lines += [
            "  MTU %d bytes, BW 10000000 Kbit/sec, DLY 10 usec, " % ri.mtu,
            "     reliability 255/255, txload 1/255, rxload 1/255",
            "  Encapsulation ARPA, loopback not set",
            "  ARP type: ARPA, ARP Timeout %s" % _hms(ri.arp_timeout),
            "  Device %s" % getattr(ri.port, "device", "?"),
            "  Last clearing of \"show interface\" counters %s" % _last_cleared(router, clock, ri.name),
            "  Input queue: 0/75/%d/0 (size/max/drops/flushes); Total output drops: %d" % (
                c.rx_dropped, c.tx_dropped),
            "  Queueing strategy: fifo",
            "  5 minute input rate %d bits/sec, %d packets/sec" % (rin.bps, rin.pps),
            "  5 minute output rate %d bits/sec, %d packets/sec" % (rout.bps, rout.pps),
            "     %d packets input, %d bytes, 0 no buffer" % (c.rx_packets, c.rx_bytes),
            "     %d input errors, 0 CRC, 0 frame, 0 overrun, 0 ignored" % c.rx_errors,
            "     %d packets output, %d bytes, 0 underruns" % (c.tx_packets, c.tx_bytes),
            "     %d output errors, 0 collisions, 0 interface resets" % c.tx_errors,
        ]
        drops = dict(ri.drops)
        for k, v in getattr(c, "drops", {}).items():
            drops["port-" + k] = drops.get("port-" + k, 0) + v
        if drops:
            lines.append("  Drops (cbac):")
            for k in sorted(drops):
                lines.append("     %-28s %d" % (k, drops[k]))
        out.append("\n".join(lines))
    if name is None:
        other = _unattributed_drops(router)
        if other:
            lines = ["Drops not attributed to an interface (cbac):"]
            for k in sorted(other):
                lines.append("     %-28s %d" % (k, other[k]))
            out.append("\n".join(lines))
    return "\n".join(out)


def _last_cleared(router, clock, name=None) -> str:
    t = getattr(router, "counters_cleared_if", {}).get(name)
    if t is None:
        t = getattr(router, "counters_cleared", None)
    if t is None or clock is None:
        return "never"
    return _hms(clock.seconds() - t)


def _unattributed_drops(router) -> dict:
    """The router's drops no interface counted (interface-down, no-route-local,
    icmp-rate-limited, ...), and ARP's unresolved drops."""
    out = {}
    for reason, n in router.drops.items():
        left = n - sum(ri.drops.get(reason, 0) for ri in router.interfaces.values())
        if left > 0:
            out[reason] = left
    if getattr(router.arp, "dropped", 0):
        out["arp-unresolved"] = router.arp.dropped
    return out


def show_ip_interface_brief(router) -> str:
    lines = ["Interface                  IP-Address      OK? Method Status                Protocol"]
    for ri in router.interfaces.values():
        addr = ip_str(ri.address) if ri.address is not None else "unassigned"
        method = "DHCP" if getattr(ri.model, "dhcp", False) else "manual"
        status, proto = _state(ri)
        lines.append("%-26s %-15s YES %-6s %-21s %s" % (ri.name, addr, method, status, proto))
    return "\n".join(lines)


def show_engine(appliance) -> str:
    """Engine statistics (``show processes cpu`` in cbac)."""
    import resource
    r = appliance.router
    ru = resource.getrusage(resource.RUSAGE_SELF)
    up = max(1e-9, appliance.clock.seconds() - appliance.started)
    lines = [
        "CPU: user %.2f s, system %.2f s over %s uptime; max RSS %d KB" % (
            ru.ru_utime, ru.ru_stime, _hms(up), ru.ru_maxrss),
        "Frames received %d, IPv4 forwarded %d (%.0f/s average)" % (
            r.received, r.forwarded, r.forwarded / up),
        "ARP: %d entries, %d packets waiting, %d dropped unresolved" % (
            len(r.arp.entries), r.arp.queued, r.arp.dropped),
    ]
    if appliance.sessions is not None:
        lines.append("Sessions: %d" % len(appliance.sessions.sessions))
    lines.append("Drops by reason:")
    for k in sorted(r.drops):
        lines.append("  %-30s %d" % (k, r.drops[k]))
    return "\n".join(lines)
