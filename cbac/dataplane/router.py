"""The router: interfaces, ARP, routing, ICMP, and the per-packet pipeline.

The pipeline for an IPv4 packet is one explicit sequence of stages, in IOS
order of operations (docs/nat-order.md):

    ingress (checksums, IP options) -> session lookup (ACL bypass) -> ICMP error association
    -> pinhole -> input ACL -> NAT outside->inside -> local delivery
    -> routing -> NAT inside->outside -> output ACL -> inspection
    -> egress (TTL, MTU, ARP, MAC rewrite, send)

The ACL (:mod:`cbac.acl`), NAT (:mod:`cbac.nat`) and session
(:mod:`cbac.inspect`) engines are optional: a router built without them
passes those stages, which is what the data-plane unit tests use.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from cbac.dataplane.arp import ArpCache
from cbac.dataplane.ipoptions import verdict as ip_options_verdict
from cbac.dataplane.routes import RouteEntry, RouteTable
from cbac.dataplane.reassembly import Reassembly, settings_from_interface
from cbac.dataplane.show import RateMeter
from cbac.inspect.normalise import no_session as inspect_no_session
from cbac.inspect.session import NO_ROUTE
from cbac.nat import DROP as NAT_DROP
from cbac.packet import checksum as ck
from cbac.packet.arp import build_gratuitous as arp_gratuitous
from cbac.packet.arp import build_reply, parse_arp_frame
from cbac.packet.ethernet import ethertype
from cbac.packet.arp import build_request as arp_request
from cbac.packet.icmp import build_echo_reply, build_error, may_send_error
from cbac.packet.tcp import rst_for
from cbac.packet.errors import MalformedPacket
from cbac.packet.ipv4 import fragment as ipv4_fragment
from cbac.packet.vnet import finish_checksum
from cbac.packet.vnet import segment as vnet_segment
from cbac.packet.view import (ETH_P_ARP, ETH_P_IP, ETH_P_IPV6,
                              PROTO_ICMP, PROTO_TCP, PROTO_UDP, ip_str,
                              parse_frame, parse_plain, parse_tcp20)

log = Logger(namespace="cbac.router")


#: ICMP error rate limit: a token bucket (IOS: ip icmp rate-limit
#: unreachable 500 ms; cbac allows a small burst so traceroute's three
#: probes per hop are all answered).
ICMP_BURST = 10
ICMP_RATE = 10.0          # tokens per second

SWEEP_INTERVAL = 1.0

#: "the fast path made no session lookup for this frame" (Router._ip_pipeline)
_NO_LOOKUP = object()


def _starts_session(pkt) -> bool:
    """Can this packet open an inspection session?"""
    if pkt.frag or pkt.mf:
        return False
    if pkt.proto == PROTO_TCP:
        return pkt.tcp_flags & 0x17 == 0x02        # SYN without ACK/RST/FIN
    if pkt.proto == PROTO_ICMP:
        return pkt.icmp_type in (8, 13)
    return pkt.proto == PROTO_UDP


class RouterInterface:
    """Run-time state of one configured interface bound to a port."""

    __slots__ = ("name", "port", "mac", "mtu", "address", "prefixlen",
                 "addresses", "shutdown", "acl_in", "acl_out", "inspect_in",
                 "inspect_out", "nat", "unreachables", "arp_timeout", "model",
                 "drops")

    def __init__(self, model, port):
        self.model = model
        self.name = model.name
        self.port = port
        self.mac = bytes(port.mac)
        self.mtu = min(model.mtu, port.mtu or model.mtu)
        self.address = int(model.address.ip) if model.address else None
        self.prefixlen = model.address.network.prefixlen if model.address else None
        self.addresses = set()
        if model.address:
            self.addresses.add(int(model.address.ip))
        for sec in model.secondary:
            self.addresses.add(int(sec.ip))
        self.shutdown = model.shutdown
        self.acl_in = self.acl_out = None      # compiled ACLs (set by the router)
        self.inspect_in = model.inspect_in
        self.inspect_out = model.inspect_out
        self.nat = model.nat
        self.unreachables = model.unreachables
        self.arp_timeout = model.arp_timeout
        self.drops: Counter = Counter()


class Router:
    """The data plane of one cbac appliance."""

    def __init__(self, model, clock, ports: dict, acls=None, nat=None,
                 sessions=None):
        self.clock = clock
        self.ports = ports                      # IOS name -> IPort
        self.acls = acls
        self.nat = nat
        self.sessions = sessions
        self.interfaces: dict[str, RouterInterface] = {}
        self.routes = RouteTable()
        self.arp = ArpCache(clock, self._send_arp_request)
        self.local: dict[int, RouterInterface] = {}
        self.drops: Counter = Counter()
        self.forwarded = 0
        self.received = 0
        self._icmp_tokens = float(ICMP_BURST)
        self._icmp_last = clock.seconds()
        self._sweeper: Optional[LoopingCall] = None
        self._ip_id = 0
        self.rates: dict = {}                   # ifname -> (RateMeter in, RateMeter out)
        # (IP protocol, port) -> callable(ip packet bytes): the router's own
        # services (the in-band console through the management TUN).
        self.local_services: dict = {}
        # Virtual reassembly: whenever a stage needs whole datagrams (ACLs,
        # NAT, inspection), every fragment is reassembled first
        # (cbac/dataplane/reassembly.py).
        self.reassembly = Reassembly(clock) if (acls is not None or nat is not None
                                                or sessions is not None) else None
        # The zone-based policy firewall (cbac.inspect.zones.ZonePolicy),
        # set by the appliance; None: no zones.
        self.zones = None
        self.dhcp: dict = {}                    # ifname -> DhcpInterface (ip address dhcp)
        from cbac.dataplane.selftraffic import RouterTraffic
        self.router_traffic = RouterTraffic(self)   # ip inspect ... router-traffic
        if nat is not None:
            nat.route_hook = self._nat_route
        self.offload = None             # cbac.dataplane.flowoffload.FlowOffloader
        # packets the engines make while a frame is handled go out after it
        # (a stream's extra segments after the segment they follow)
        self._holding = False
        self._held = []
        # the sessions' route caches: (hop 0, hop 1) -> that tuple, one
        # per pair of hops (_route_out); cleared with the interfaces
        self._route_pairs = {}
        self.apply_config(model)

    def _nat_route(self, add: bool, ol: int, og: int) -> None:
        """``ip nat outside source list ... add-route``: a host route to
        the outside local address of a binding via its outside global
        address, for the binding's life."""
        e = RouteEntry(ol, 32, None, og, 1, "S")
        if add:
            self.routes.add(e)
        else:
            self.routes.remove(e)

    # ------------------------------------------------------------------
    # configuration

    def apply_config(self, model) -> None:
        """(Re)build interfaces, addresses and routes from the model.
        ARP entries and sessions are kept."""
        self.commit_config(self.prepare_config(model))

    def prepare_config(self, model, acls=None):
        """Build the interfaces, local addresses and routing table of
        ``model`` off to the side (the running router is not touched: a
        failure here, MemoryError included, changes nothing).  ``acls``:
        the ACL lists to compile against (default: the running ones).
        Returns a plan for :meth:`commit_config`."""
        acls = self.acls if acls is None else acls
        interfaces = {}
        old = self.interfaces
        for name, port in self.ports.items():
            im = model.interfaces.get(name)
            if im is None:
                continue
            ri = RouterInterface(im, port)
            if name in old:
                ri.drops = old[name].drops
            if acls is not None:
                ri.acl_in = acls.get(im.access_group_in) if im.access_group_in else None
                ri.acl_out = acls.get(im.access_group_out) if im.access_group_out else None
            interfaces[name] = ri
        local = {}
        statics = []
        routes = RouteTable()
        for ri in interfaces.values():
            if ri.shutdown:
                continue
            for addr in ri.addresses:
                local[addr] = ri
                statics.append((ri.name, addr, ri.mac))
            if ri.model.address is not None:
                net = ri.model.address.network
                routes.add(RouteEntry(int(net.network_address), net.prefixlen,
                                      ri.name, None, 0, "C"))
            for sec in ri.model.secondary:
                routes.add(RouteEntry(int(sec.network.network_address),
                                      sec.network.prefixlen, ri.name, None, 0, "C"))
        for r in model.routes:
            # A route to Null0, or via an interface this box does not
            # forward on, is kept: its destinations are discarded (skipping
            # it would send them along a shorter prefix, e.g. the default).
            routes.add(RouteEntry(int(r.prefix.network_address), r.prefix.prefixlen,
                                  r.interface,
                                  int(r.next_hop) if r.next_hop is not None else None,
                                  r.distance, "S"))
        for s in model.nat.statics:
            # ip nat outside source static OG OL add-route: a host route to
            # the outside local address via the outside global one.
            if s.side == "outside" and s.add_route and s.global_ is not None:
                routes.add(RouteEntry(int(s.global_), 32, None, int(s.local), 1, "S"))
        if self.nat is not None and hasattr(self.nat, "outside_routes"):
            # the live bindings of ip nat outside source list ... add-route
            for ol, og in self.nat.outside_routes():
                routes.add(RouteEntry(ol, 32, None, og, 1, "S"))
        return (model, interfaces, local, statics, routes)

    def commit_config(self, plan) -> None:
        """Install a plan from :meth:`prepare_config`: assignments only."""
        model, interfaces, local, statics, routes = plan
        self.model = model
        self.ip_options = getattr(model, "ip_options", None)
        self._fast_tables = ({6: self.sessions.tcp, 17: self.sessions.udp, 1: self.sessions.icmp}
                             if self.sessions else {})
        if self.sessions is not None:
            self._route_pairs.clear()
            for sess in self.sessions.sessions.values():
                if sess.route.__class__ is tuple:
                    sess.route = NO_ROUTE          # interfaces are rebuilt
                else:
                    sess.route[:] = [None, None]   # (continuity's NoRouteCache)
        self.interfaces = interfaces
        if self.reassembly is not None:
            for name, ri in interfaces.items():
                self.reassembly.configure(name, settings_from_interface(ri.model))
        if self.sessions is not None:
            # the stream engine keeps the segments it builds within the MTU
            self.sessions.if_mtu = {n: ri.mtu for n, ri in interfaces.items()}
        self.local = local
        self.routes = routes
        for ifname, addr, mac in statics:
            self.arp.add_static(ifname, addr, mac)
        # ip address dhcp: the leases on the new interfaces, in the reactor
        # thread (cbac.dataplane.dhcpport)
        if self.dhcp or any(getattr(ri.model, "dhcp", False) for ri in interfaces.values()):
            from cbac.dataplane.dhcpport import apply_leases
            apply_leases(self)

    # ------------------------------------------------------------------
    # life cycle

    def start(self) -> None:
        for ri in self.interfaces.values():
            ri.port.attach(self.frameReceived)
        for port in self.ports.values():
            if port not in [ri.port for ri in self.interfaces.values()]:
                port.attach(self.frameReceived)
            if hasattr(port, "link_listener"):
                port.link_listener = self.link_changed
            port.start()
        for ri in self.interfaces.values():
            if not ri.shutdown:
                for addr in ri.addresses:
                    self._send_gratuitous_arp(ri, addr)
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = self.clock
        self._sweeper.start(SWEEP_INTERVAL, now=False)
        if self.dhcp:
            from cbac.dataplane.dhcpport import start_clients
            start_clients(self)

    def stop(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        if self.dhcp:
            from cbac.dataplane.dhcpport import stop_clients
            stop_clients(self)
        for port in self.ports.values():
            port.stop()

    def link_changed(self, port, up: bool) -> None:
        """A port's link went down or came back (cbac.dataplane.link)."""
        from cbac.dataplane.link import link_changed
        link_changed(self, port, up)

    def sweep(self) -> None:
        self.arp.sweep()
        self.router_traffic.sweep()
        now = self.clock.seconds()
        if self.sessions is not None:
            self.sessions.uninspected.expire(now)
        if self.reassembly is not None:
            for name, n in self.reassembly.expire(now).items():
                self.drops["vfr-timeout"] += n
                ri = self.interfaces.get(name)
                if ri is not None:
                    ri.drops["vfr-timeout"] += n
        for ri in self.interfaces.values():
            rin, rout = self.rates.setdefault(ri.name, (RateMeter(), RateMeter()))
            c = ri.port.counters
            rin.sample(now, c.rx_bytes, c.rx_packets)
            rout.sample(now, c.tx_bytes, c.tx_packets)

    # ------------------------------------------------------------------
    # ingress

    def frameReceived(self, port, frame, vnet=b"") -> None:
        """Entry point for every frame from every port.  Never raises."""
        self.received += 1
        ri = self.interfaces.get(port.name)
        if ri is None or ri.shutdown:
            self.drops["interface-down"] += 1
            return
        try:
            # Fast path: an untagged IPv4 frame with a 20-byte header, not a
            # fragment, of a known session (docs/performance.md).  It takes
            # a TCP or UDP frame it declines on to the slow path's stages
            # itself, with its session lookup (_fast).
            if (self.sessions is not None and len(frame) >= 54 and frame[14] == 0x45
                    and frame[12] == 8 and frame[13] == 0
                    and not (frame[20] & 0x3F or frame[21])):
                if self._fast(ri, frame, vnet):
                    return
            if frame.__class__ is not bytearray:
                # a view of a receive-ring slot (valid during this call):
                # the slow path keeps frames (ARP queue, reassembly)
                frame = bytearray(frame)
            if len(frame) < 14:
                self._drop(ri, "malformed-truncated")
                return
            if frame[12] == 8 and frame[13] == 0:
                et = ETH_P_IP                # untagged IPv4: the usual case
            else:
                et = ethertype(frame)       # after an 802.1Q tag
                if et == ETH_P_ARP:
                    self._arp_received(ri, frame)
                    return
                if et == ETH_P_IPV6:
                    self._drop(ri, "ipv6")
                    return
            if self.dhcp and et == ETH_P_IP:
                from cbac.dataplane.dhcpport import dhcp_input
                if dhcp_input(self, ri, frame, vnet):     # ip address dhcp: the server's replies
                    return
            if et != ETH_P_IP:
                self._drop(ri, "unknown-ethertype")
                return
            if frame[0:6] != ri.mac:
                # Not addressed to us (broadcast/multicast IP is not routed).
                self._drop(ri, "not-our-mac")
                return
            self._ip_received(ri, frame, vnet)
        except MalformedPacket as e:
            self._drop(ri, "malformed-" + e.reason)
        except Exception:
            # Never crash the daemon; never forward what we could not handle.
            log.failure("internal error handling a frame on {ifname}", ifname=ri.name)
            self._drop(ri, "internal-error")

    def _fast(self, ri, frame, vnet) -> bool:
        """Forward a packet of an established session with one dict lookup
        on a key sliced from the frame, the session's pre-computed NAT
        rewrite and its cached route.  The IPv4 header checksum is not
        verified here: the incremental updates keep a wrong checksum wrong
        (RFC 1624), so the receiver still discards a damaged header.

        A TCP or UDP frame it does not forward (no session, or one
        ``fast_process`` declines: a half-open TCP session, a SYN, FIN,
        RST...) goes on from here to the slow path with that lookup:
        :meth:`frameReceived`'s remaining checks for such a frame (the copy
        of a ring slot, the MAC address), then :meth:`_ip_received` with
        the session and direction (or None), which ``sessions.lookup``
        would give for it (the same key, and fast_process changes nothing
        when it declines): True.  False (nothing changed): an ICMP frame,
        or ``ip address dhcp`` (its replies are taken before the MAC
        check): frameReceived's own path."""
        proto = frame[23]
        table = self._fast_tables.get(proto)
        if table is None:
            return False
        if proto == 1:
            # ICMP query sessions are keyed by addresses + identifier
            k = bytes(frame[26:34]) + bytes(frame[38:40])
        else:
            # sessions.lookup's key for this frame (l3 14, ihl 20, not a
            # fragment)
            k = bytes(frame[26:38])
        s = table.get(k)
        d = 0
        if s is not None:
            # the dict value is the session; the server side's key is ks
            # (session.direction_of, inline)
            if k == s.ks:
                d = 1
            off = self.offload
            if off is not None and s in off.flows:
                off.sync(s)                 # queued before the offload, or a decision
            hop = s.route[d]
            if hop is not None and frame[22] > 1 and frame[0:6] == ri.mac:
                out, nh = hop
                # ArpCache.lookup, inline (an expired entry: the slow path's business)
                now = self.clock.seconds()
                e = self.arp.entries.get((out.name, nh))
                if (e is not None and (e.expires is None or e.expires > now)
                        and ((vnet[4] | (vnet[5] << 8)) + 20
                             + ((frame[46] >> 4) << 2 if proto == 6 else 8)
                             if vnet and vnet[1] else (frame[16] << 8) | frame[17]) <= out.mtu
                        and self.sessions.fast_process(s, d, frame, vnet, now)):
                    if off is not None:
                        # before the send: the reply may reach the kernel at once
                        if s in off.flows:
                            off.push(s, d)          # the kernel's window follows Python's
                        elif off.enabled:
                            off.consider(s)
                    # TTL - 1 with RFC 1624 eqn. 3: ~(~HC + ~m + m') = ~(~HC + 0xFEFF)
                    frame[22] -= 1
                    c = (~((frame[24] << 8) | frame[25]) & 0xFFFF) + 0xFEFF
                    c = (c & 0xFFFF) + (c >> 16)
                    c = ~c & 0xFFFF
                    frame[24] = c >> 8
                    frame[25] = c & 0xFF
                    frame[0:12] = e.mac + out.mac     # both MACs (one slice assignment)
                    self.forwarded += 1
                    out.port.send(frame, vnet)
                    return True
        # the slow path
        if proto == 1 or self.dhcp:
            return False
        if frame.__class__ is not bytearray:
            # a view of a receive-ring slot (valid during this call):
            # the slow path keeps frames (ARP queue, reassembly)
            frame = bytearray(frame)
        if frame[0:6] != ri.mac:
            # Not addressed to us (broadcast/multicast IP is not routed).
            self._drop(ri, "not-our-mac")
            return True
        self._ip_received(ri, frame, vnet, s, d)
        return True

    def _drop(self, ri, reason: str) -> None:
        self.drops[reason] += 1
        ri.drops[reason] += 1

    # ------------------------------------------------------------------
    # the IPv4 pipeline

    def _ip_received(self, ri: RouterInterface, frame, vnet, s=_NO_LOOKUP, d=0) -> None:
        if self._holding:                # a frame looped back while handling one
            self._ip_pipeline(ri, frame, vnet, s, d)
            return
        self._holding = True
        try:
            self._ip_pipeline(ri, frame, vnet, s, d)
        finally:
            self._holding = False
            if self._held:
                self._send_held()

    def _ip_pipeline(self, ri: RouterInterface, frame, vnet, s=_NO_LOOKUP, d=0) -> None:
        """``s``, ``d``: the fast path's session lookup of this frame (a
        session and its direction, or None; see :meth:`_fast`), or
        _NO_LOOKUP."""
        if s is _NO_LOOKUP:
            pkt = parse_frame(frame, vnet)
        else:
            # from the fast path: untagged, a 20-byte header (no options),
            # not a fragment (no reassembly), TCP or UDP
            pkt = (parse_tcp20(frame, vnet, 14, len(frame), False) if frame[23] == PROTO_TCP
                   else parse_plain(frame, vnet))
        l3 = pkt.l3
        # the IPv4 header checksum (ck.ip_checksum_ok, inline)
        if int.from_bytes(frame[l3:l3 + pkt.ihl], "big") % 0xFFFF:
            self._drop(ri, "malformed-ip-checksum")
            return
        if pkt.ihl > 20:
            # IP options: source routes, ip options drop (ipoptions.py);
            # malformed options raise MalformedPacket
            why = ip_options_verdict(frame, l3, self.ip_options)
            if why is not None:
                self._drop(ri, why)
                return
        if (pkt.frag or pkt.mf) and self.reassembly is not None:
            whole = self.reassembly.add(ri.name, pkt)
            if whole is None:
                return                      # held until the datagram is complete
            if isinstance(whole, str):
                self._drop(ri, whole)
                return
            frame = bytearray(frame[0:l3]) + whole
            pkt = parse_frame(frame, b"")
        # Verify before you believe: no state from a damaged packet
        # (cbac/inspect/normalise.py).
        if not (pkt.frag or pkt.mf) and not ck.l4_checksum_ok(pkt):
            self._drop(ri, "bad-l4-checksum")
            if self.sessions is not None:
                self.sessions.stats.drop("bad-checksum")
            return
        pkt.in_port = ri
        if pkt.dst == 0xFFFFFFFF or (pkt.dst >> 28) == 0xE:
            self._drop(ri, "broadcast-multicast")
            return
        sessions = self.sessions

        # 1. Session table (ACL bypass): one lookup, either side of NAT.
        if sessions is not None:
            if s is _NO_LOOKUP:
                hit = sessions.lookup(pkt)
                if hit is not None:
                    s, d = hit
                else:
                    s = None
            if s is not None:
                off = self.offload
                if off is not None and s in off.flows:
                    off.reclaim(s, "slow-path")
                if pkt.ttl <= 1:
                    # before any rewrite: the error quotes what the sender sent
                    self._drop(ri, "ttl-exceeded")
                    self._icmp_error(ri, pkt, 11, 0)
                    return
                if sessions.process(s, d, pkt):
                    self._route_out(ri, pkt, s, d)
                    return
                if not sessions.reopened:
                    self._drop(ri, "inspect")
                    return
                # the old session of this 4-tuple is gone: the SYN goes on
                # as the first packet of a new connection
                sessions.reopened = False
            # 2. ICMP errors only for sessions they belong to.
            if pkt.inner is not None:
                hit = sessions.lookup_icmp_error(pkt)
                if hit is not None:
                    session, direction = hit
                    if pkt.ttl <= 1:
                        # not forwarded with TTL 0 (RFC 1812 5.3.1); no
                        # time exceeded about an ICMP error
                        self._drop(ri, "ttl-exceeded")
                        return
                    if sessions.process(session, direction, pkt):
                        self._route_out(ri, pkt, None, direction)
                    else:
                        self._drop(ri, "inspect")
                    return

        # 3. Pinholes (FTP data) bypass the input ACL.
        pinhole = sessions.expected(pkt) if sessions is not None else None

        # 4. Input ACL (sees the addresses as they arrive).
        if (pinhole is None and ri.acl_in is not None and not ri.acl_in.check(pkt)
                and not self.router_traffic.permits_return(ri, pkt)):
            self._drop(ri, "acl-in")
            self._icmp_unreachable(ri, pkt, 13)
            return

        quote = None

        # 5. NAT outside -> inside (before routing).  A translation the
        #    packet creates is discarded again if the packet is dropped
        #    before it leaves (no state before proof).
        translation = None
        nat = self.nat
        if nat is not None:
            nat.created = None
        if ri.nat == "outside" and nat is not None:
            quote = frame[l3:l3 + pkt.ihl + 8]      # (a copy)
            translation = self.nat.inbound(pkt, ri.name)        # rewrites pkt
            if translation is NAT_DROP:
                self._drop(ri, "nat")
                return
            if translation is None:
                quote = None

        # Local delivery: the router's own addresses (ZBF: the self zone).
        if pkt.dst in self.local:
            zones = self.zones
            if zones is not None and zones.active and zones.decide(ri.name, "self", pkt) == "drop":
                self._drop(ri, "zone-drop")
                self._nat_discard(translation)
                return
            self._local_received(ri, pkt)
            return

        # 6. Routing.
        if pkt.ttl <= 1:
            self._drop(ri, "ttl-exceeded")
            self._nat_discard(translation)
            self._icmp_error(ri, pkt, 11, 0, quote=quote)
            return
        hop = self.routes.lookup(pkt.dst)
        if hop is None:
            self._drop(ri, "no-route")
            self._nat_discard(translation)
            self._icmp_unreachable(ri, pkt, 0, quote=quote)
            return
        out = self.interfaces.get(hop[0])
        if out is None or out.shutdown or not getattr(out.port, "link_up", True):
            self._drop(ri, "no-route")          # (a down link: cbac.dataplane.link)
            self._nat_discard(translation)
            self._icmp_unreachable(ri, pkt, 1, quote=quote)
            return

        # 6b. Zone-based policy firewall: classified before NAT inside ->
        #     outside, so class-map ACLs name inside-local addresses both ways.
        zrule = None
        zones = self.zones
        if zones is not None and zones.active and pinhole is None:
            zrule = zones.decide(ri.name, out.name, pkt)
            if zrule == "drop":
                self._drop(ri, "zone-drop")
                self._nat_discard(translation)
                return
            if zrule == "pass":
                zrule = None
            elif zrule is not None and (sessions is None or not _starts_session(pkt)):
                # ZBF inspects: a packet that cannot open a session and
                # belongs to none is dropped (IOS: no session).
                self._drop(ri, "zone-no-session")
                self._nat_discard(translation)
                return

        # 7. NAT inside -> outside (after routing).
        if (translation is None and nat is not None and ri.nat == "inside"
                and out.nat == "outside"):
            # an error about the packet quotes (and goes to) its inside form
            # (only the output ACL's, below, can still be sent)
            quote = frame[l3:l3 + pkt.ihl + 8] if out.acl_out is not None else None  # (a copy)
            translation = nat.outbound(pkt, ri.name, out.name)   # rewrites pkt
            if translation is NAT_DROP:
                self._drop(ri, "nat")
                return
            if translation is None:
                quote = None

        # 8. Output ACL (sees translated addresses).
        if out.acl_out is not None and not out.acl_out.check(pkt):
            self._drop(ri, "acl-out")
            self._nat_discard(translation)
            self._icmp_unreachable(ri, pkt, 13, quote=quote)
            return

        # 9. Inspection: a rule applied in on the ingress interface or out
        #    on the egress interface creates a session.
        if sessions is not None:
            rule = zrule or self._inspect_rule(ri, out, pkt, sessions)
            if rule is not None and pinhole is None and not _starts_session(pkt):
                # Only a SYN, a UDP datagram or an ICMP request opens a
                # session.  A TCP segment without a session that a rule
                # covers is dropped (cbac/inspect/normalise.py: stricter
                # than IOS, which forwards what the ACLs let through;
                # "cbac inspect tcp no-session forward" restores that).
                if inspect_no_session(sessions, pkt, rule, ri.name):
                    self._drop(ri, "inspect-no-session")
                    self._nat_discard(translation)
                    return
                rule = None
            elif (rule is None and pinhole is None and pkt.proto == PROTO_TCP
                    and pkt.tcp_flags & 0x17 == 0x02 and not (pkt.frag or pkt.mf)):
                # A SYN the ACLs let through that no rule covers: remember
                # the connection, so that its segments on a direction a
                # rule covers are not taken for evasion (normalise.py).
                c_out = (pkt.src, pkt.dst, pkt.sport, pkt.dport)
                sessions.uninspected.remember(
                    sessions.arrival_form(translation, c_out, PROTO_TCP), c_out,
                    self.clock.seconds())
            if rule is not None or pinhole is not None:
                session = sessions.create(pkt, ri.name, out.name, rule, translation,
                                          pinhole)
                if session is None:
                    self._drop(ri, "inspect-refused")
                    self._nat_discard(translation)
                    return
                if zrule is not None:
                    zones.session_created(zrule, self.clock.seconds())

        # 10. Egress.
        self._egress(out, pkt, hop[1])

    def _nat_discard(self, translation) -> None:
        """The packet is dropped: a NAT entry it created goes too."""
        if translation is not None and self.nat is not None:
            self.nat.discard(translation)

    def _inspect_rule(self, ri, out, pkt, sessions):
        name = ri.inspect_in
        if name is not None and sessions.rule_matches(name, pkt):
            return name
        name = out.inspect_out
        if name is not None and sessions.rule_matches(name, pkt):
            return name
        return None

    def _route_out(self, ri, pkt, session, direction) -> None:
        """Forward a packet the session engine accepted (already rewritten)."""
        hop = None
        if session is not None:
            hop = session.route[direction]
        if hop is None:
            r = self.routes.lookup(pkt.dst)
            if r is None:
                self._drop(ri, "no-route")
                return
            out = self.interfaces.get(r[0])
            if out is None:
                self._drop(ri, "no-route")
                return
            hop = (out, r[1])
            if session is not None:
                cached = session.route
                if cached.__class__ is tuple:
                    # a session's route cache is a tuple shared by the
                    # sessions with the same hops (session.NO_ROUTE)
                    pair = (cached[0], hop) if direction else (hop, cached[1])
                    shared = self._route_pairs.get(pair)
                    if shared is None:
                        if len(self._route_pairs) >= 4096:
                            self._route_pairs.clear()
                        shared = self._route_pairs[pair] = pair
                    session.route = shared
                else:
                    cached[direction] = hop     # a list (NoRouteCache: not kept)
        self._egress(hop[0], pkt, hop[1])

    # ------------------------------------------------------------------
    # egress

    def _egress(self, out: RouterInterface, pkt, next_hop: int) -> None:
        frame = pkt.frame
        l3 = pkt.l3
        vnet = pkt.vnet
        # MTU: a GSO super-frame is judged by its segment size.
        size = pkt.ip_len
        if vnet and vnet[1] & 0x7F:
            size = (vnet[4] | (vnet[5] << 8)) + (pkt.payload - l3)
        # TTL - 1 with an incremental checksum: RFC 1624 eqn. 3 with the
        # word (TTL, protocol) going from m to m - 256,
        # ~(~HC + ~m + m') = ~(~HC + 0xFEFF) (ck.update16, inline)
        frame[l3 + 8] -= 1
        c = (~((frame[l3 + 10] << 8) | frame[l3 + 11]) & 0xFFFF) + 0xFEFF
        c = (c & 0xFFFF) + (c >> 16)
        c = ~c & 0xFFFF
        frame[l3 + 10] = c >> 8
        frame[l3 + 11] = c & 0xFF
        if size > out.mtu:
            if pkt.df:
                self._drop(pkt.in_port, "too-big")
                self._icmp_error(pkt.in_port, pkt, 3, 4, mtu=out.mtu)
                return
            self._fragment(out, pkt, next_hop)
            return
        self.forwarded += 1
        # _send_ip, inline for a resolved next hop
        e = self.arp.entries.get((out.name, next_hop))
        if e is not None and (e.expires is None or e.expires > self.clock.seconds()):
            frame[0:12] = e.mac + out.mac
            out.port.send(frame, vnet)
        else:
            self._send_ip(out, frame, vnet, next_hop)

    def _fragment(self, out, pkt, next_hop) -> None:
        """Forward a packet larger than the egress MTU without DF as
        fragments (RFC 791); an offloaded frame is finished first."""
        frame = pkt.frame
        l3 = pkt.l3
        try:
            if pkt.vnet and pkt.vnet[1]:
                pieces = [bytes(f[l3:]) for f in vnet_segment(frame, pkt.vnet, out.mtu)]
            else:
                finish_checksum(frame, pkt.vnet)
                pieces = ipv4_fragment(bytes(frame[l3:l3 + pkt.ip_len]), out.mtu)
        except (MalformedPacket, ValueError):
            self._drop(pkt.in_port, "fragmentation-failed")
            return
        head = bytes(frame[0:l3])
        self.forwarded += 1
        for piece in pieces:
            f = bytearray(head) + piece
            self._send_ip(out, f, b"", next_hop)

    def _send_ip(self, out: RouterInterface, frame, vnet, next_hop: int) -> None:
        arp = self.arp
        # ArpCache.lookup, inline; an expired entry is its business
        e = arp.entries.get((out.name, next_hop))
        if e is not None and (e.expires is None or e.expires > self.clock.seconds()):
            mac = e.mac
        else:
            mac = arp.lookup(out.name, next_hop)
        if mac is None:
            if not arp.enqueue(out.name, next_hop, (frame, vnet)):
                self._drop(out, "arp-queue-full")
            return
        frame[0:12] = mac + out.mac
        out.port.send(frame, vnet)

    def send_local(self, ip_packet) -> None:
        """Send an IPv4 packet the router's own stack made (console replies)."""
        if len(ip_packet) >= 20 and ip_packet[0] >> 4 == 4:
            if self.router_traffic.enabled():
                hop = self.routes.lookup(int.from_bytes(ip_packet[16:20], "big"))
                if hop is not None:
                    self.router_traffic.outbound(self.interfaces.get(hop[0]), ip_packet)
            self._send_packet(bytearray(ip_packet))

    def _send_packet(self, ip_packet) -> None:
        """Route and send an IPv4 packet the router made (ICMP, RST)."""
        dst = int.from_bytes(ip_packet[16:20], "big")
        hop = self.routes.lookup(dst)
        if hop is None:
            self.drops["no-route-local"] += 1
            return
        out = self.interfaces.get(hop[0])
        if out is None:
            return
        pieces = (ip_packet,)
        if len(ip_packet) > out.mtu:
            # e.g. the echo reply to a reassembled large ping
            try:
                pieces = ipv4_fragment(bytes(ip_packet), out.mtu)
            except (MalformedPacket, ValueError):
                self.drops["fragmentation-failed"] += 1
                return
        for piece in pieces:
            frame = bytearray(14) + piece
            frame[12:14] = b"\x08\x00"
            self._send_ip(out, frame, b"", hop[1])

    def send_generated(self, ip_packet) -> None:
        """Route and send an IPv4 packet an engine made (the session
        table's RSTs and extra segments): at once, or right after the frame
        being handled when one is (so a segment's extras follow it)."""
        if self._holding:
            self._held.append(ip_packet)
        else:
            self._send_packet(bytearray(ip_packet))

    def _send_held(self) -> None:
        held = self._held
        self._held = []
        for ip_packet in held:
            self._send_packet(bytearray(ip_packet))

    # ------------------------------------------------------------------
    # the router's own traffic

    def _local_received(self, ri: RouterInterface, pkt) -> None:
        if pkt.frag or pkt.mf:
            # never answered: a fragment has no (or not all of its) L4 header
            self._drop(ri, "local-fragment")
            return
        if pkt.proto == PROTO_ICMP and pkt.icmp_type == 8 and pkt.frag == 0 and not pkt.mf:
            self._echo_reply(ri, pkt)
            return
        sink = self.local_services.get((pkt.proto, pkt.dport)) if pkt.frag == 0 else None
        if sink is not None:
            sink(bytes(pkt.frame[pkt.l3:pkt.l3 + pkt.ip_len]))
            return
        if pkt.proto == PROTO_UDP:
            self._drop(ri, "local-udp")
            self._icmp_unreachable(ri, pkt, 3)
            return
        if pkt.proto == PROTO_TCP and not pkt.tcp_flags & 4:
            self._drop(ri, "local-tcp")
            self._tcp_reset(pkt)
            return
        self._drop(ri, "local")

    def _tcp_reset(self, pkt) -> None:
        """Answer a segment to a closed port of the router (RFC 793)."""
        if self._icmp_allowed():
            self._send_packet(rst_for(pkt))

    def _echo_reply(self, ri, pkt) -> None:
        self._send_packet(build_echo_reply(pkt, ttl=64, ip_id=self._next_ip_id()))

    def _icmp_allowed(self) -> bool:
        now = self.clock.seconds()
        self._icmp_tokens = min(ICMP_BURST, self._icmp_tokens + (now - self._icmp_last) * ICMP_RATE)
        self._icmp_last = now
        if self._icmp_tokens >= 1.0:
            self._icmp_tokens -= 1.0
            return True
        self.drops["icmp-rate-limited"] += 1
        return False

    def _icmp_unreachable(self, ri, pkt, code: int, quote=None) -> None:
        if not ri.unreachables:
            return
        self._icmp_error(ri, pkt, 3, code, quote=quote)

    def _icmp_error(self, ri, pkt, icmp_type: int, code: int, mtu: int = 0,
                    quote=None) -> None:
        """Send an ICMP error about pkt back to its sender, within RFC
        1812's rules (never about an ICMP error, a non-initial fragment, a
        broadcast; the quote is up to 576 bytes).  ``quote``: the packet as
        it arrived when pkt has since been rewritten by NAT."""
        if ri is None or ri.address is None or not may_send_error(pkt):
            return
        if not self._icmp_allowed():
            return
        offending = quote if quote is not None else pkt
        self._send_packet(build_error(ri.address, icmp_type, code, offending, rest=mtu,
                                      ip_id=self._next_ip_id()))

    def _next_ip_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id


    # ------------------------------------------------------------------
    # ARP

    def _arp_received(self, ri: RouterInterface, frame) -> None:
        try:
            a = parse_arp_frame(frame)      # Ethernet/IPv4 request or reply only
        except MalformedPacket:
            self._drop(ri, "malformed-arp")
            return
        op, sha, sender, target = a.op, a.sha, a.spa, a.tpa
        if self.dhcp:
            from cbac.dataplane.dhcpport import arp_input
            arp_input(self, ri, sha, sender, target)      # a DHCP lease's address in use?
        ours = target in ri.addresses or (
            self.nat is not None and (
                (ri.nat == "outside" and self.nat.is_global_address(target)) or
                (ri.nat == "inside" and self.nat.is_outside_local_address(target))))
        # Learn from replies and from requests aimed at us (RFC 826 merge).
        if sender != 0 and sender not in ri.addresses:
            waiting = self.arp.learn(ri.name, sender, bytes(sha), ri.arp_timeout,
                                     create=ours or op == 2)
            for item in waiting:
                f, v = item
                f[0:6] = bytes(sha)
                f[6:12] = ri.mac
                ri.port.send(f, v)
        if op == 1 and ours:
            ri.port.send(build_reply(ri.mac, target, bytes(sha), sender, a.vlan), b"")

    def _send_arp_request(self, ifname: str, ip: int) -> None:
        ri = self.interfaces.get(ifname)
        if ri is None or ri.address is None:
            return
        ri.port.send(arp_request(ri.mac, ri.address, ip), b"")

    def _send_gratuitous_arp(self, ri, addr: int) -> None:
        ri.port.send(arp_gratuitous(ri.mac, addr), b"")

    # ------------------------------------------------------------------
    # show

    def show_arp(self) -> str:
        return self.arp.render()


__all__ = ["Router", "RouterInterface", "ip_str", "PROTO_TCP"]
