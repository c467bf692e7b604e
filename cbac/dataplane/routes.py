"""The routing table: connected routes, static routes, longest-prefix match.

Lookups are cached per destination address (the cache is dropped when the
table changes), so forwarding a packet costs one dict lookup after the
first packet to a destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Optional

from cbac.packet.view import ip_str


@dataclass
class RouteEntry:
    network: int              # network address (int)
    prefixlen: int
    interface: Optional[str]  # outgoing interface name (None: resolve via next hop)
    next_hop: Optional[int]   # None for connected routes
    distance: int = 0         # 0 connected, 1 static default
    code: str = "C"           # C connected, S static

    @property
    def prefix(self) -> IPv4Network:
        return IPv4Network((self.network, self.prefixlen))


class RouteTable:
    def __init__(self):
        # prefixlen -> {network int: RouteEntry}
        self._by_len: dict[int, dict[int, RouteEntry]] = {}
        self._lens: list[int] = []
        self._cache: dict[int, Optional[tuple[str, int]]] = {}

    def clear(self) -> None:
        self._by_len.clear()
        self._lens = []
        self._cache.clear()

    def add(self, entry: RouteEntry) -> None:
        table = self._by_len.setdefault(entry.prefixlen, {})
        old = table.get(entry.network)
        if old is None or entry.distance < old.distance:
            table[entry.network] = entry
        self._lens = sorted(self._by_len, reverse=True)
        self._cache.clear()

    def remove(self, entry: RouteEntry) -> bool:
        """Remove ``entry`` if it is the one installed for its prefix."""
        table = self._by_len.get(entry.prefixlen)
        if table is None or table.get(entry.network) != entry:
            return False
        del table[entry.network]
        if not table:
            del self._by_len[entry.prefixlen]
            self._lens = sorted(self._by_len, reverse=True)
        self._cache.clear()
        return True

    def entries(self) -> list[RouteEntry]:
        out = []
        for plen in self._lens:
            out.extend(self._by_len[plen].values())
        return out

    def _match(self, dst: int) -> Optional[RouteEntry]:
        for plen in self._lens:
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
            e = self._by_len[plen].get(dst & mask)
            if e is not None:
                return e
        return None

    def lookup(self, dst: int) -> Optional[tuple[str, int]]:
        """(interface name, next-hop address) for a destination, or None.
        Recursive next hops (a static route via an address) are resolved
        to the connected interface; the next hop of a connected route is
        the destination itself."""
        try:
            return self._cache[dst]
        except KeyError:
            pass
        result = None
        e = self._match(dst)
        depth = 0
        nh = dst
        while e is not None and depth < 8:
            if e.next_hop is None:
                result = (e.interface, nh)
                break
            nh = e.next_hop
            if e.interface is not None:
                result = (e.interface, nh)
                break
            e = self._match(nh)
            depth += 1
        if len(self._cache) > 65536:
            self._cache.clear()
        self._cache[dst] = result
        return result

    def default_gateway(self) -> Optional[RouteEntry]:
        return self._by_len.get(0, {}).get(0)


def render_show_ip_route(table: RouteTable) -> str:
    """``show ip route`` in IOS layout."""
    lines = [
        "Codes: C - connected, S - static, R - RIP, M - mobile, B - BGP",
        "       D - EIGRP, EX - EIGRP external, O - OSPF, IA - OSPF inter area",
        "       N1 - OSPF NSSA external type 1, N2 - OSPF NSSA external type 2",
        "       E1 - OSPF external type 1, E2 - OSPF external type 2",
        "       i - IS-IS, su - IS-IS summary, L1 - IS-IS level-1, L2 - IS-IS level-2",
        "       ia - IS-IS inter area, * - candidate default, U - per-user static route",
        "       o - ODR, P - periodic downloaded static route",
        "",
    ]
    gw = table.default_gateway()
    if gw is not None and gw.next_hop is not None:
        lines.append("Gateway of last resort is %s to network 0.0.0.0" % ip_str(gw.next_hop))
    else:
        lines.append("Gateway of last resort is not set")
    lines.append("")
    entries = sorted(table.entries(), key=lambda e: (e.network, e.prefixlen))
    # Group by classful major network, as IOS does ("is subnetted").
    groups: dict[tuple[int, int], list[RouteEntry]] = {}
    for e in entries:
        if e.prefixlen == 0:
            continue
        first = e.network >> 24
        major = 8 if first < 128 else 16 if first < 192 else 24
        key = (e.network & ((0xFFFFFFFF << (32 - major)) & 0xFFFFFFFF), major)
        groups.setdefault(key, []).append(e)
    for (net, major), members in sorted(groups.items()):
        if len(members) == 1 and members[0].prefixlen == major:
            lines.append(_route_line(members[0], full=True))
            continue
        lens = {m.prefixlen for m in members}
        if len(lens) == 1:
            lines.append("     %s/%d is subnetted, %d subnets" % (ip_str(net), lens.pop(), len(members)))
        else:
            lines.append("     %s/%d is variably subnetted, %d subnets, %d masks" % (
                ip_str(net), major, len(members), len(lens)))
        for m in members:
            lines.append(_route_line(m, full=len({x.prefixlen for x in members}) > 1))
    if gw is not None:
        lines.append(_route_line(gw, full=True))
    return "\n".join(lines)


def _route_line(e: RouteEntry, full: bool) -> str:
    code = e.code + ("*" if e.prefixlen == 0 else "")
    dest = ip_str(e.network) + ("/%d" % e.prefixlen if full else "")
    if e.next_hop is None:
        return "%-8s%s is directly connected, %s" % (code, dest, e.interface)
    via = "via %s" % ip_str(e.next_hop)
    if e.interface:
        via += ", %s" % e.interface
    return "%-5s%s [%d/0] %s" % (code, dest, e.distance, via)
