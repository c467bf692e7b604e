"""``ip inspect name X tcp|udp|icmp router-traffic``: inspection of the
router's own traffic.

On IOS the router's own connections (syslog to a collector, the DHCP
client, ...) are not inspected by default, so their return traffic meets
the interface's input ACL like any other packet: an outside ACL that only
permits what is published refuses the syslog collector's TCP segments and
the DHCP server's replies.  With ``router-traffic`` on a protocol of a rule
applied ``out`` on the interface the traffic leaves by, the router keeps a
session for each of its own flows and the return traffic of that flow (and
only that flow: the remote address and both ports, on that interface)
passes the input ACL, as IOS does.

Sessions live for the protocol's idle time (``ip inspect name X tcp
timeout N`` or the global ``ip inspect tcp idle-time`` / ``udp idle-time``;
ICMP 10 s) after the last packet either way.  The table is bounded
(``MAX_ENTRIES``): when it is full, new flows are not inspected and their
return traffic meets the ACL (fail closed), counted in ``refused``.

A broadcast of the router's (the DHCP client's DISCOVER) opens a session
for replies from any address to the same ports (DHCP servers answer from
their own address).
"""

from __future__ import annotations

MAX_ENTRIES = 4096
ICMP_TIMEOUT = 10

_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}


class RouterTraffic:
    def __init__(self, router):
        self.router = router
        # (proto, remote addr or None, remote port, local port) -> [ifname, expires, timeout]
        self.entries: dict = {}
        self.created = 0
        self.refused = 0

    def enabled(self) -> bool:
        """Does any inspection rule have ``router-traffic``?"""
        model = self.router.model
        if getattr(self, "_for_model", None) is not model:
            self._for_model = model
            self._enabled = any(getattr(p, "router_traffic", False)
                                for r in getattr(model, "inspect_rules", {}).values()
                                for p in r.protocols)
        return self._enabled

    def _rule(self, ri, proto):
        model = self.router.model
        name = ri.inspect_out
        if name is None:
            return None
        rule = getattr(model, "inspect_rules", {}).get(name)
        if rule is None:
            return None
        p = rule.get(_NAMES.get(proto, ""))
        if p is None or not getattr(p, "router_traffic", False):
            return None
        if p.timeout is not None:
            return p.timeout
        g = model.inspect
        return {6: g.tcp_idle_time, 17: g.udp_idle_time}.get(proto, ICMP_TIMEOUT)

    @staticmethod
    def _ports(ip, proto, ihl):
        if proto in (6, 17) and len(ip) >= ihl + 4:
            return (ip[ihl] << 8) | ip[ihl + 1], (ip[ihl + 2] << 8) | ip[ihl + 3]
        if proto == 1 and len(ip) >= ihl + 8 and ip[ihl] == 8:      # echo request: id
            ident = (ip[ihl + 4] << 8) | ip[ihl + 5]
            return ident, 0
        return None

    def outbound(self, ri, ip) -> None:
        """The router sends IPv4 packet ``ip`` (bytes) out of ``ri``."""
        if ri is None or len(ip) < 20 or not self.enabled():
            return
        proto = ip[9]
        timeout = self._rule(ri, proto)
        if timeout is None:
            return
        ihl = (ip[0] & 15) * 4
        if (ip[6] & 0x1F) or ip[7]:
            return                           # a non-first fragment carries no ports
        ports = self._ports(ip, proto, ihl)
        if ports is None:
            return
        sport, dport = ports
        dst = int.from_bytes(ip[16:20], "big")
        remote = None if dst == 0xFFFFFFFF else dst
        key = (proto, remote, dport, sport)
        now = self.router.clock.seconds()
        e = self.entries.get(key)
        if e is None:
            if len(self.entries) >= MAX_ENTRIES:
                self._prune(now)
                if len(self.entries) >= MAX_ENTRIES:
                    self.refused += 1
                    return
            self.entries[key] = [ri.name, now + timeout, timeout]
            self.created += 1
        else:
            e[0], e[1], e[2] = ri.name, now + timeout, timeout

    def _prune(self, now):
        for k in [k for k, e in self.entries.items() if e[1] <= now]:
            del self.entries[k]

    def permits_return(self, ri, pkt, consumed=False) -> bool:
        """Is ``pkt`` (arriving on ``ri``) the return traffic of one of
        the router's inspected flows?  Only a packet to one of the
        router's own addresses can be (``consumed``: the caller hands it
        to the router itself whatever its destination, the DHCP client),
        so a session never opens a way to a host behind the router."""
        if not self.entries or pkt.frag:
            return False
        if not consumed and pkt.dst not in self.router.local:
            return False
        proto = pkt.proto
        if proto in (6, 17):
            rport, lport = pkt.sport, pkt.dport
        elif proto == 1 and pkt.icmp_type == 0:
            # an echo reply to the router's echo request (stored as (1, remote, 0, id))
            return self._hit(ri, (1, pkt.src, 0, pkt.icmp_id))
        else:
            return False
        return self._hit(ri, (proto, pkt.src, rport, lport)) or \
            self._hit(ri, (proto, None, rport, lport))

    def _hit(self, ri, key) -> bool:
        e = self.entries.get(key)
        if e is None:
            return False
        now = self.router.clock.seconds()
        if e[1] <= now:
            del self.entries[key]
            return False
        if e[0] != ri.name:
            return False
        e[1] = now + e[2]
        return True

    def sweep(self) -> None:
        self._prune(self.router.clock.seconds())


__all__ = ["RouterTraffic", "MAX_ENTRIES"]
