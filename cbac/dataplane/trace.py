"""``packet-tracer``: where would this packet go, and who decides?

As on the ASA, a synthetic packet (or a frame of a capture, ``cbac-replay
--trace``) is run through the stages of the router's pipeline
(:mod:`cbac.dataplane.router`, in its order) and each stage prints its
verdict and the configuration line or table entry that decided it::

    packet-tracer input Ethernet2/0 tcp 172.22.1.1 40000 172.22.1.16 25 [detailed]

Nothing is sent and nothing changes: the stages are evaluated with the
engines' side-effect-free lookups (session and pinhole lookups,
``CompiledAcl.lookup_fields`` instead of ``check`` -- no hit counted, no
``log`` line --, the NAT tables read without creating a translation or
allocating a PAT port, the route table without its cache, the ARP table
without expiring entries, the session table's thresholds without creating
a session).  The stages of an existing session's packet are the session's
(ACL bypass, its NAT rewrite, its route); the session's TCP/application
inspection of that packet is not simulated.

The drop reasons are the names of the router's drop counters (``show
interfaces``, ``show processes cpu``): ``acl-in``, ``nat``, ``no-route``...
"""

from __future__ import annotations

from cbac.dataplane.arp import mac_dotted
from cbac.nat.translation import flow_key
from cbac.packet import build
from cbac.packet.errors import MalformedPacket
from cbac.packet.view import ETH_P_IP, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ip_str, parse_frame

PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp"}

#: drop reason -> ASA-style explanation
DROP_TEXT = {
    "acl-in": "Flow is denied by the input access list",
    "acl-out": "Flow is denied by the output access list",
    "nat": "No NAT translation possible for the flow",
    "no-route": "No route to host",
    "inspect-refused": "Inspection refused to create a session",
    "inspect-no-session": "TCP segment without a session (not a SYN) on inspected traffic",
    "zone-drop": "Flow is denied by the zone-based policy",
    "zone-no-session": "Zone policy inspects this flow, but the packet opens no session",
    "bad-l4-checksum": "Bad TCP/UDP/ICMP checksum",
    "source-route": "Source-routed packet (LSRR/SSRR): source routing is not implemented",
    "ip-options": "Packet with IP options (ip options drop)",
    "ttl-exceeded": "TTL exceeded",
    "interface-down": "Input interface is down",
    "local": "To the router: no service for this packet",
    "local-tcp": "To the router: TCP port closed (answered with RST)",
    "local-udp": "To the router: UDP port closed (answered with ICMP port unreachable)",
    "broadcast-multicast": "Broadcast/multicast destination is not routed",
    "malformed": "Malformed packet",
    "not-our-mac": "Frame not addressed to the interface's MAC address",
    "unknown-ethertype": "Not an IPv4 or ARP frame",
}


class Phase:
    def __init__(self, type_, subtype="", result="ALLOW"):
        self.type = type_
        self.subtype = subtype
        self.result = result
        self.config: list[str] = []
        self.info: list[str] = []


class Trace:
    """The phases of one traced packet and its outcome."""

    def __init__(self, in_if, detailed=False):
        self.in_if = in_if
        self.out_if = None
        self.phases: list[Phase] = []
        self.action = "allow"
        self.drop_reason = None
        self.drop_reason_pending = None
        self.detailed = detailed

    def phase(self, type_, subtype="", result="ALLOW") -> Phase:
        p = Phase(type_, subtype, result)
        self.phases.append(p)
        return p

    def drop(self, reason):
        self.action = "drop"
        self.drop_reason = reason
        return self

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    def render(self, router=None) -> str:
        out = []
        for n, p in enumerate(self.phases, 1):
            out.append("Phase: %d" % n)
            out.append("Type: %s" % p.type)
            out.append("Subtype: %s" % p.subtype)
            out.append("Result: %s" % p.result)
            out.append("Config:")
            out.extend(p.config)
            out.append("Additional Information:")
            out.extend(p.info)
            out.append("")
        out.append("Result:")
        out += _if_status("input", self.in_if, router)
        if self.out_if is not None:
            out += _if_status("output", self.out_if, router)
        out.append("Action: %s" % self.action)
        if self.drop_reason:
            r = self.drop_reason
            text = DROP_TEXT.get(r) or (DROP_TEXT["malformed"] if r.startswith("malformed") else "")
            out.append(("Drop-reason: (%s) %s" % (r, text)).rstrip())
        return "\n".join(out)


def _if_status(which, name, router):
    ri = router.interfaces.get(name) if router is not None else None
    state = "up" if ri is not None and not ri.shutdown else "down"
    return ["%s-interface: %s" % (which, name),
            "%s-status: %s" % (which, state),
            "%s-line-status: %s" % (which, state)]


def _flow(pkt) -> str:
    if pkt.proto == PROTO_ICMP:
        return "icmp %s -> %s type %d code %d id %d" % (
            ip_str(pkt.src), ip_str(pkt.dst), pkt.icmp_type, pkt.icmp_code, pkt.icmp_id)
    name = PROTO_NAMES.get(pkt.proto, "ip proto %d" % pkt.proto)
    if pkt.proto in (PROTO_TCP, PROTO_UDP):
        return "%s %s/%d -> %s/%d" % (name, ip_str(pkt.src), pkt.sport, ip_str(pkt.dst), pkt.dport)
    return "%s %s -> %s" % (name, ip_str(pkt.src), ip_str(pkt.dst))


# ---------------------------------------------------------------------------
# entry points


def synthetic_frame(router, in_if, proto, src, sport, dst, dport, icmp_type=8, icmp_code=0,
                    tcp_flags=build.SYN):
    """The frame ``packet-tracer input IF PROTO SRC SPORT DST DPORT`` traces:
    addressed to the interface's MAC, TTL 64, a SYN for TCP, an echo
    request (or ``icmp_type``/``icmp_code``) for ICMP."""
    ri = router.interfaces[in_if]
    mac = dict(dst_mac=ri.mac, src_mac=bytes.fromhex("020000000099"))
    if proto == "tcp":
        return build.tcp_frame(src, dst, sport, dport, seq=1, flags=tcp_flags, **mac)
    if proto == "udp":
        return build.udp_frame(src, dst, sport, dport, b"", **mac)
    if proto == "icmp":
        if icmp_type in (0, 8):
            return build.echo_frame(src, dst, ident=1, seq=1, reply=icmp_type == 0, **mac)
        return build.frame(build.build_icmp(src, dst, icmp_type, icmp_code),
                           ri.mac, mac["src_mac"])
    raise ValueError("protocol must be tcp, udp or icmp")


def packet_tracer(router, in_if, proto, src, sport, dst, dport, detailed=False, **kw):
    """``(allowed, text)`` of ``packet-tracer input IN_IF PROTO SRC SPORT DST DPORT``."""
    ri = _interface(router, in_if)
    if ri is None:
        return False, "% Invalid interface: " + in_if
    if proto == "icmp":         # icmp SRC TYPE CODE DST
        kw.update(icmp_type=sport, icmp_code=dport)
        sport = dport = 0
    try:
        frame = synthetic_frame(router, ri.name, proto, src, sport, dst, dport, **kw)
    except (ValueError, OverflowError) as e:
        return False, "%% %s" % e
    t = trace_frame(router, ri.name, frame, detailed=detailed)
    return t.allowed, t.render(router)


def _interface(router, name):
    """The interface ``name`` (IOS abbreviations allowed: e2/0, Eth2/0)."""
    from cbac.config.parser import normalize_interface
    for cand in (name, normalize_interface(name)):
        for n, ri in router.interfaces.items():
            if n.lower() == cand.lower():
                return ri
    return None


def trace_frame(router, in_if, frame, detailed=False) -> Trace:
    """Trace one frame arriving on ``in_if`` (a copy is used)."""
    frame = bytearray(frame)
    t = Trace(in_if, detailed)
    ri = router.interfaces.get(in_if)
    if ri is None or ri.shutdown:
        p = t.phase("INPUT-INTERFACE", "", "DROP")
        p.info.append("interface %s is %s" % (in_if, "shut down" if ri is not None else "not bound to a port"))
        return t.drop("interface-down")
    et = (frame[12] << 8) | frame[13] if len(frame) >= 14 else 0
    if et != ETH_P_IP:
        p = t.phase("L2", "", "DROP" if et != 0x0806 else "ALLOW")
        p.info.append("not an IPv4 frame (ethertype 0x%04x)%s" % (
            et, ": handled by ARP" if et == 0x0806 else ""))
        if et != 0x0806:
            t.drop("unknown-ethertype")
        return t
    if bytes(frame[0:6]) != ri.mac:
        p = t.phase("L2", "", "DROP")
        p.info.append("destination MAC %s is not %s's %s: not routed" % (
            mac_dotted(bytes(frame[0:6])), in_if, mac_dotted(ri.mac)))
        return t.drop("not-our-mac")
    try:
        pkt = parse_frame(frame, b"")
    except MalformedPacket as e:
        p = t.phase("DECODE", "", "DROP")
        p.info.append("malformed packet: %s" % e.reason)
        return t.drop("malformed-" + e.reason)
    from cbac.packet import checksum as ck
    if not ck.ip_checksum_ok(frame, pkt.l3, pkt.ihl):
        p = t.phase("DECODE", "", "DROP")
        p.info.append("bad IPv4 header checksum")
        return t.drop("malformed-ip-checksum")
    if pkt.ihl > 20:
        from cbac.dataplane.ipoptions import verdict
        try:
            why = verdict(frame, pkt.l3, getattr(router, "ip_options", None))
        except MalformedPacket as e:
            p = t.phase("IP-OPTIONS", "", "DROP")
            p.info.append("malformed IP options (%s): dropped, whatever ip options says" % e)
            return t.drop("malformed-" + e.reason)
        p = t.phase("IP-OPTIONS", "", "DROP" if why else "ALLOW")
        if why == "source-route":
            p.info.append("loose or strict source route option: cbac does not implement source "
                          "routing and drops it, whatever ip source-route says")
        elif why:
            p.config.append("ip options drop")
            p.info.append("the packet carries IP options")
        else:
            p.info.append("IP options forwarded unchanged%s" % (
                " (ip options ignore)" if getattr(router, "ip_options", None) == "ignore" else ""))
        if why:
            return t.drop(why)
    if (pkt.frag or pkt.mf) and getattr(router, "reassembly", None) is not None:
        p = t.phase("VIRTUAL-REASSEMBLY")
        p.info.append("a fragment (offset %d%s): held until its datagram is complete; the whole "
                      "datagram then takes the path a packet-tracer of it shows" % (
                          pkt.frag * 8, ", more fragments" if pkt.mf else ""))
        return t
    if not (pkt.frag or pkt.mf) and not ck.l4_checksum_ok(pkt):
        p = t.phase("DECODE", "", "DROP")
        p.info.append("bad %s checksum: no state from a damaged packet"
                      % PROTO_NAMES.get(pkt.proto, "L4"))
        return t.drop("bad-l4-checksum")
    pkt.in_port = ri
    if pkt.dst == 0xFFFFFFFF or (pkt.dst >> 28) == 0xE:
        p = t.phase("DECODE", "", "DROP")
        p.info.append("destination %s is broadcast/multicast" % ip_str(pkt.dst))
        return t.drop("broadcast-multicast")
    _Tracer(router, t, ri, pkt).run()
    return t


# ---------------------------------------------------------------------------
# the stages


class _Tracer:
    def __init__(self, router, trace, ri, pkt):
        self.r = router
        self.t = trace
        self.ri = ri
        self.pkt = pkt
        if pkt.proto == PROTO_ICMP:
            self.arrival = (pkt.src, pkt.dst, pkt.icmp_id, 0)
        else:
            self.arrival = (pkt.src, pkt.dst, pkt.sport, pkt.dport)

    def note_packet(self, p):
        if self.t.detailed:
            p.info.append("packet: %s ttl %d" % (_flow(self.pkt), self.pkt.ttl))

    def run(self):
        r, pkt, ri = self.r, self.pkt, self.ri
        sessions = r.sessions
        # 1. session lookup (ACL bypass)
        if sessions is not None:
            hit = sessions.lookup(pkt)
            p = self.t.phase("FLOW-LOOKUP")
            self.note_packet(p)
            if hit is not None:
                return self.existing(p, *hit)
            if pkt.inner is not None:
                err = sessions.lookup_icmp_error(pkt)
                if err is not None:
                    if pkt.ttl <= 1:
                        # router.py 2: not forwarded with TTL 0, no error about an error
                        p.result = "DROP"
                        p.info.append("ICMP error about session %s with TTL %d: dropped "
                                      "(no time exceeded about an ICMP error)"
                                      % (err[0].hexid, pkt.ttl))
                        return self.t.drop("ttl-exceeded")
                    p.info.append("ICMP error about session %s: forwarded for it" % err[0].hexid)
                    return self.egress_of(self.route_for(pkt))
            p.info.append("no session for %s: the first packet of a flow" % _flow(pkt))
        # 2. pinholes
        pinhole = sessions.expected(pkt) if sessions is not None else None
        if pinhole is not None:
            p = self.t.phase("INSPECT", "pinhole")
            p.info.append("expected by session %s (%s): the input access list is bypassed"
                          % (pinhole.parent.hexid, pinhole.label or "data"))
        # 3. input ACL
        elif not self.acl(ri, ri.acl_in, "in", ri.model.access_group_in):
            return self.t.drop("acl-in")
        # 4. NAT outside -> inside
        translation = None
        if ri.nat == "outside" and r.nat is not None:
            translation = self.nat(inbound=True)
            if translation is False:
                return self.t.drop("nat")
        # local delivery (ZBF: the self zone)
        zones = getattr(r, "zones", None)
        if pkt.dst in r.local:
            if zones is not None and zones.active and self.zone(zones, ri.name, "self") == "drop":
                return self.t.drop("zone-drop")
            return self.local()
        # 5. routing
        if pkt.ttl <= 1:
            p = self.t.phase("ROUTE-LOOKUP", "TTL", "DROP")
            p.info.append("TTL %d: time exceeded" % pkt.ttl)
            return self.t.drop("ttl-exceeded")
        hop = self.route_for(pkt)
        if hop is None:
            return self.t.drop("no-route")
        out, nh = hop
        # 5b. zone-based policy (router.py 6b: after routing, before NAT inside -> outside)
        zrule = None
        if zones is not None and zones.active and pinhole is None:
            zrule = self.zone(zones, ri.name, out.name)
            if zrule == "drop":
                return self.t.drop("zone-drop")
            if zrule == "pass":
                zrule = None
            elif zrule is not None:
                from cbac.dataplane.router import _starts_session
                if sessions is None or not _starts_session(pkt):
                    p = self.t.phases[-1]
                    p.result = "DROP"
                    p.info.append("the class inspects, but this packet belongs to no session "
                                  "and cannot open one (not a TCP SYN, a UDP datagram or an "
                                  "ICMP request): dropped")
                    return self.t.drop("zone-no-session")
        # 6. NAT inside -> outside
        if translation is None and r.nat is not None and ri.nat == "inside" and out.nat == "outside":
            translation = self.nat(inbound=False)
            if translation is False:
                return self.t.drop("nat")
        # 7. output ACL
        if not self.acl(out, out.acl_out, "out", out.model.access_group_out):
            return self.t.drop("acl-out")
        # 8. inspection
        if sessions is not None and not self.inspect(out, pinhole, translation, zrule):
            return self.t.drop(getattr(self.t, "drop_reason_pending", None) or "inspect-refused")
        # 9. egress
        self.egress(out, nh)

    # -- an existing session -------------------------------------------------
    def existing(self, p, s, d):
        pkt = self.pkt
        side = "initiator" if d == 0 else "responder"
        p.info.append("found session %s %s %s %s (from the %s)" % (
            s.hexid, s.protocol, s.flow_text(), getattr(s, "sis", ""), side))
        p.info.append("ACL bypass: the access lists are not evaluated for its packets")
        if pkt.ttl <= 1:
            # router.py 1: before any rewrite, the error quotes what was sent
            p.result = "DROP"
            p.info.append("TTL %d: time exceeded" % pkt.ttl)
            return self.t.drop("ttl-exceeded")
        if self.t.detailed:
            p.info.append("rule %s, created on %s, out %s, packets %d/%d, bytes %d/%d" % (
                s.rule_name, s.in_if, s.out_if, s.pkts[0], s.pkts[1], s.bytes[0], s.bytes[1]))
        rw = s.rw[d] if s.rw else None
        if rw is not None:
            q = self.t.phase("NAT", "per-session")
            old = _flow(pkt)
            _rewrite(pkt, rw)
            q.info.append("translate %s to %s (the session's translation)" % (old, _flow(pkt)))
        if s.proto == PROTO_TCP:
            q = self.t.phase("INSPECT", s.protocol)
            q.info.append("the session's TCP%s inspection checks this packet (not simulated)"
                          % ("" if s.protocol == "tcp" else " and %s" % s.protocol))
        hop = s.route[d] if s.route else None
        if hop is None:
            hop = self.route_for(pkt)
            if hop is None:
                return self.t.drop("no-route")
        else:
            q = self.t.phase("ROUTE-LOOKUP", "session's route")
            q.info.append("cached egress ifc %s next-hop %s" % (hop[0].name, ip_str(hop[1])))
        self.egress(*hop)

    def egress_of(self, hop):
        if hop is None:
            return self.t.drop("no-route")
        self.egress(*hop)

    # -- access lists ------------------------------------------------------------
    def acl(self, ri, acl, direction, name) -> bool:
        pkt = self.pkt
        p = self.t.phase("ACCESS-LIST", "log" if acl is not None else "")
        self.note_packet(p)
        if name is None:
            p.info.append("no access list %s on %s: permitted" % (
                "inbound" if direction == "in" else "outbound", ri.name))
            return True
        p.config.append("interface %s" % ri.name)
        p.config.append(" ip access-group %s %s" % (name, direction))
        if acl is None:
            p.info.append("access list %s is not defined: IOS permits all" % name)
            return True
        itype, icode = (pkt.icmp_type, pkt.icmp_code) if pkt.proto == PROTO_ICMP else (-1, -1)
        args = (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport, itype, icode,
                pkt.tcp_flags, pkt.frag != 0)
        i = acl.matcher.first(*args)
        if i < 0:
            p.result = "DROP"
            p.subtype = ""
            p.config.append(_acl_entry_line(acl, None))
            p.info.append("no entry matches: implicit deny%s" % (
                " (%d matches)" % acl.implicit_deny_hits if self.t.detailed else ""))
            return False
        ace = acl.aces[i]
        p.config.append(_acl_entry_line(acl, ace.model))
        if not ace.permit:
            p.result = "DROP"
        if self.t.detailed:
            p.info.append("entry %d of access list %s (%d matches so far)" % (
                ace.model.seq, acl.name, ace.hits))
        if not ace.log:
            p.subtype = ""
        return ace.permit

    # -- NAT -------------------------------------------------------------------------
    def nat(self, inbound):
        """NAT outside -> inside (``inbound``: phase UN-NAT) or inside ->
        outside (NAT), as ``Nat.inbound``/``Nat.outbound`` would do it.
        Returns the rewrite applied, None (no translation) or False (drop)."""
        nat, pkt = self.r.nat, self.pkt
        p = self.t.phase("UN-NAT" if inbound else "NAT")
        verb = "untranslate" if inbound else "translate"
        self.note_packet(p)
        t = nat.lookup(pkt, inside=not inbound)
        if t is not None:
            p.subtype = "existing translation"
            old = _flow(pkt)
            _rewrite(pkt, t.reverse if inbound else t.forward)
            p.info.append("%s %s to %s (translation %s)" % (verb, old, _flow(pkt), _xlat_text(t)))
            return t
        decision = (predict_inbound if inbound else predict_outbound)(nat, pkt)
        kind, cfg, new = decision
        if kind == "drop":
            p.result = "DROP"
            p.subtype = cfg or ""
            p.info.append(new)
            return False
        if kind is None:
            p.info.append("no translation: %s" % new)
            return None
        p.subtype = kind
        if cfg:
            p.config.extend(cfg if isinstance(cfg, list) else [cfg])
        old = _flow(pkt)
        if inbound:
            ol = predict_outside_local(nat, pkt)[0]
            _retarget(pkt, src=(ol, None) if ol != pkt.src else None, dst=new)
        else:
            _retarget(pkt, src=new)
        p.info.append("%s %s to %s" % (verb, old, _flow(pkt)))
        return decision

    # -- routing ------------------------------------------------------------------------
    def route_for(self, pkt):
        r = self.r
        p = self.t.phase("ROUTE-LOOKUP", "Resolve Egress Interface")
        entries = []
        e = r.routes._match(pkt.dst)
        nh = pkt.dst
        hop = None
        depth = 0
        while e is not None and depth < 8:
            entries.append(e)
            if e.next_hop is None:
                hop = (e.interface, nh)
                break
            nh = e.next_hop
            if e.interface is not None:
                hop = (e.interface, nh)
                break
            e = r.routes._match(nh)
            depth += 1
        for e in entries:
            p.config.append(_route_config(e))
        if hop is None:
            p.result = "DROP"
            p.info.append("no route to %s" % ip_str(pkt.dst))
            return None
        out = r.interfaces.get(hop[0])
        if out is None or out.shutdown:
            p.result = "DROP"
            p.info.append("egress interface %s is %s" % (hop[0], "down" if out else "not bound"))
            return None
        p.info.append("found next-hop %s using egress ifc %s" % (ip_str(hop[1]), out.name))
        self.t.out_if = out.name
        return out, hop[1]

    # -- the router itself --------------------------------------------------------------------
    def local(self):
        r, pkt = self.r, self.pkt
        p = self.t.phase("LOCAL", "to the router")
        self.note_packet(p)
        if pkt.proto == PROTO_ICMP and pkt.icmp_type == 8:
            p.info.append("echo request to %s: answered by the router" % ip_str(pkt.dst))
            return
        if (pkt.proto, pkt.dport) in r.local_services:
            p.info.append("%s port %d of %s: a service of the router (e.g. the in-band console)"
                          % (PROTO_NAMES.get(pkt.proto, pkt.proto), pkt.dport, ip_str(pkt.dst)))
            return
        p.result = "DROP"
        if pkt.proto == PROTO_UDP:
            p.info.append("no service on udp port %d: ICMP port unreachable" % pkt.dport)
            return self.t.drop("local-udp")
        if pkt.proto == PROTO_TCP:
            p.info.append("no service on tcp port %d: answered with RST" % pkt.dport)
            return self.t.drop("local-tcp")
        p.info.append("not for a service of the router")
        return self.t.drop("local")

    # -- inspection -------------------------------------------------------------------------------
    # -- zone-based policy ---------------------------------------------------------------------
    def zone(self, zones, in_if, out_if):
        """The zone phase: ZonePolicy.classify (no counters, no logs).
        Returns decide()'s verdict."""
        from cbac.inspect.zones import NOT_ZONED, PASS, DROP
        v, why, zp, c, hit = zones.classify(in_if, out_if, self.pkt, dry=True)
        zin = zones.zone_of.get(in_if)
        zout = "self" if out_if == "self" else zones.zone_of.get(out_if)
        p = self.t.phase("ZONE", why)
        self.note_packet(p)
        src = "zone %s" % zin if zin else "no zone"
        dst = "the self zone" if out_if == "self" else ("zone %s" % zout if zout else "no zone")
        flow = "%s (%s) -> %s (%s)" % (in_if, src, out_if, dst)
        if v is NOT_ZONED:
            p.info.append("%s: neither interface is a zone member, zones do not apply" % flow)
            return v
        if why == "same-zone":
            p.info.append("%s: same zone, no intrazone zone-pair: passed" % flow)
            return v
        if why == "self-no-pair":
            p.info.append("%s: no zone-pair to the self zone: passed" % flow)
            return v
        if why == "non-member":
            p.result = "DROP"
            p.info.append("%s: between a zone member and a non-member: dropped" % flow)
            return v
        if why == "no-zone-pair":
            p.result = "DROP"
            p.info.append("%s: no zone-pair %s -> %s: dropped" % (flow, zin, zout))
            return v
        p.config.append("zone-pair security %s source %s destination %s"
                        % (zp.name, zp.source, zp.destination))
        if why == "no-policy":
            p.result = "DROP"
            p.info.append("%s: zone-pair %s has no policy-map: dropped" % (flow, zp.name))
            return v
        p.config.append(" service-policy type inspect %s" % zp.service_policy)
        if c.name == "class-default":
            p.config.append("policy-map type inspect %s" % zp.service_policy)
            p.config.append(" class class-default")
        else:
            p.config.append("policy-map type inspect %s" % zp.service_policy)
            p.config.append(" class type inspect %s" % c.name)
        action = c.action or ("drop" if c.name == "class-default" else "drop")
        p.config.append("  %s%s%s" % (action, " %s" % c.parameter_map
                                      if action == "inspect" and c.parameter_map else "",
                                      " log" if c.log and action != "inspect" else ""))
        if v == DROP:
            p.result = "DROP"
        if out_if == "self" and v == PASS and action == "inspect":
            action = "pass"         # to the router: inspect acts as pass (decide())
        p.info.append("%s: zone-pair %s, class %s: %s" % (flow, zp.name, c.name, action))
        return v

    # -- inspection -------------------------------------------------------------------------------
    def inspect(self, out, pinhole, translation, zrule=None) -> bool:
        from cbac.dataplane.router import _starts_session
        r, pkt, ri = self.r, self.pkt, self.ri
        sessions = r.sessions
        rule = proto_name = rp = None
        where = None
        if zrule is not None:
            pn, prot = sessions.protocol_for_rule(zrule, pkt)
            rule, proto_name, rp, where = zrule, pn, prot, None
        else:
            for name, itf, d in ((ri.inspect_in, ri, "in"), (out.inspect_out, out, "out")):
                if name is None:
                    continue
                pn, prot = sessions.protocol_for_rule(name, pkt)
                if pn is not None:
                    rule, proto_name, rp, where = name, pn, prot, (itf.name, d)
                    break
        p = self.t.phase("INSPECT", proto_name or "")
        self.note_packet(p)
        if rule is not None and pinhole is None and not _starts_session(pkt):
            if pkt.proto == PROTO_TCP and sessions.uninspected.known(pkt):
                p.info.append("inspection rule %s covers this TCP segment, which has no session "
                              "and is not a SYN, but its connection's SYN was permitted by the "
                              "access lists without inspection: forwarded as it is" % rule)
                return True
            if pkt.proto == PROTO_TCP and getattr(r.model.inspect, "tcp_no_session", "drop") != "forward":
                p.result = "DROP"
                p.info.append("inspection rule %s covers this TCP segment, which has no session "
                              "and is not a SYN: dropped (cbac inspect tcp no-session drop)" % rule)
                self.t.drop_reason_pending = "inspect-no-session"
                return False
            p.info.append("inspection rule %s applies, but only a TCP SYN, a UDP datagram or an "
                          "ICMP request opens a session: forwarded as it is" % rule)
            return True
        if rule is None and pinhole is None:
            rules = ["%s %s on %s" % (n, d, i.name) for n, i, d in
                     ((ri.inspect_in, ri, "in"), (out.inspect_out, out, "out")) if n is not None]
            p.info.append("no inspection rule for this packet (%s): forwarded without a session; "
                          "its return traffic meets the access lists" % (
                              ", ".join(rules) or "none applied in on %s or out on %s" % (
                                  ri.name, out.name)))
            return True
        if rule is not None and where is None:
            p.info.append("zone inspection rule %s (the class's inspect action)" % rule)
        elif rule is not None:
            p.config.append("interface %s" % where[0])
            p.config.append(" ip inspect %s %s" % (rule, where[1]))
            from cbac.config.render import inspect_line
            p.config.append(inspect_line(rule, rp))
        refused = _would_refuse(sessions, pkt, self.arrival)
        if refused:
            p.result = "DROP"
            p.info.append("no session would be created: %s" % refused)
            return False
        who = "new %s session" % (proto_name or (pinhole.label if pinhole else "data"))
        p.info.append("%s would be created%s; return traffic is let in by it" % (
            who, " (pinhole of session %s)" % pinhole.parent.hexid if pinhole else ""))
        if self.t.detailed:
            g = r.model.inspect
            p.info.append("sessions %d, half-open %d (max-incomplete high %d), aggressive mode %s" % (
                len(sessions.sessions), sessions.half_open_count, g.max_incomplete_high,
                "on" if sessions.aggressive else "off"))
        return True

    # -- egress --------------------------------------------------------------------------------------
    def egress(self, out, nh):
        r = self.r
        p = self.t.phase("ADJACENCY-LOOKUP", "next-hop and adjacency")
        self.t.out_if = out.name
        self.note_packet(p)
        e = r.arp.entries.get((out.name, nh))
        now = r.clock.seconds()
        if e is not None and (e.expires is None or e.expires > now):
            p.info.append("next-hop %s is %s on %s (ARP)" % (ip_str(nh), mac_dotted(e.mac), out.name))
        else:
            p.info.append("next-hop %s is not in the ARP cache of %s: the packet would wait "
                          "for the answer to an ARP request" % (ip_str(nh), out.name))
        size = self.pkt.ip_len
        if size > out.mtu:
            p.info.append("%d bytes > MTU %d: %s" % (size, out.mtu, "ICMP fragmentation needed"
                                                      if self.pkt.df else "fragmented"))


# ---------------------------------------------------------------------------
# helpers reading the engines without changing them


def _rewrite(pkt, rw):
    from cbac.nat.table import Nat
    Nat._apply(pkt, rw)


def _retarget(pkt, src=None, dst=None):
    """Rewrite the (synthetic, private) packet to a predicted translation:
    ``src``/``dst`` are (address, port)."""
    from cbac.packet.rewrite import Rewrite
    proto = pkt.proto
    sp, dp = (pkt.icmp_id, 0) if proto == PROTO_ICMP else (pkt.sport, pkt.dport)
    old = (pkt.src, pkt.dst, sp, dp)
    new = list(old)
    if src is not None:
        new[0], new[2] = src[0], src[1] if src[1] is not None else sp
    if dst is not None:
        new[1], new[3] = dst[0], dst[1] if dst[1] is not None else dp
    _rewrite(pkt, Rewrite(proto, old, tuple(new)))


def _xlat_text(t) -> str:
    try:
        return " / ".join(t.columns())
    except Exception:  # noqa: BLE001 - text only
        return repr(t)


def _acl_entry_line(acl, entry) -> str:
    from cbac.config.render import render_ace
    if entry is None:
        return "access-list %s (implicit deny)" % acl.name
    if acl.model.numbered:
        return "access-list %s %s" % (acl.name, render_ace(entry, acl.kind))
    return "ip access-list %s %s\n %d %s" % (acl.kind, acl.name, entry.seq, render_ace(entry, acl.kind))


def _route_config(e) -> str:
    from cbac.dataplane.routes import _route_line
    return _route_line(e, True)


def _nat_lines(static=None, dynamic=None) -> str:
    from cbac.config import model as m
    from cbac.config.render import _nat
    r = m.RouterConfig()
    if static is not None:
        r.nat.statics = [static]
    if dynamic is not None:
        r.nat.dynamics = [dynamic]
    return _nat(r)[0]


def _static_cfg(nat, proto, addr, port, by_global):
    for t in nat.statics:
        cfg = getattr(t, "static_cfg", None)
        if cfg is None or cfg.side != "inside":
            continue
        col = t.inside_global if by_global else t.inside_local
        if col is None or col[0] != addr:
            continue
        if t.proto in (6, 17) and (t.proto != proto or col[1] != port):
            continue
        return _nat_lines(static=cfg)
    return None


def predict_outside_local(nat, pkt):
    """The outside local address the source of ``pkt`` (arriving on the
    outside) gets: ``(address, kind, config lines)`` (kind None: the
    address unchanged or from an outside static / existing binding), or
    ``("drop", subtype, why)``."""
    proto, src, dst = pkt.proto, pkt.src, pkt.dst
    ol = nat._ol_for(src)
    if ol == src and getattr(nat, "out_rules", None):
        # ip nat outside source list: the binding the packet would make
        for r in nat.out_rules:
            acl = nat.acls.get(r.acl)
            if acl is None:
                continue
            itype, icode = (pkt.icmp_type, pkt.icmp_code) if proto == PROTO_ICMP else (-1, -1)
            entry = acl.lookup_fields(proto, src, dst, pkt.sport, pkt.dport, itype, icode,
                                      pkt.tcp_flags, pkt.frag != 0)
            if entry is None or entry.action != "permit":
                continue
            if proto == PROTO_TCP and pkt.tcp_flags & 0x17 != 0x02:
                return "drop", "outside", ("%s has no outside binding and this TCP segment "
                                           "cannot open a connection" % ip_str(src))
            lim = _nat_limit(nat, src, False)
            if lim is not None:
                return lim
            free = [a for a in r.addresses
                    if a not in nat.obind_by_local and a not in nat.st_out_by_local][:1]
            if not free:
                return "drop", "pool", "pool %s is exhausted" % r.pool
            return free[0], "outside dynamic", [_nat_lines(dynamic=_dyn_cfg(nat, r)),
                                                _acl_entry_line(acl, entry)]
    return ol, None, None


def predict_inbound(nat, pkt):
    """What ``Nat.inbound`` would do with the first packet of a flow, read
    from its tables (mirrors ``Nat._create_inbound``): ``(kind, config
    line, (address, port))``, ``(None, None, why)`` or ``("drop", subtype,
    why)``."""
    proto, src, dst = pkt.proto, pkt.src, pkt.dst
    sp, dp = (pkt.icmp_id, 0) if proto == PROTO_ICMP else (pkt.sport, pkt.dport)
    ol = predict_outside_local(nat, pkt)
    if ol[0] == "drop":
        return ol
    ol, okind, ocfg = ol
    il = None
    ilp = None
    kind = cfg = None
    dynamic = False             # an entry of a dynamic rule: the host's limit applies
    if proto in (6, 17):
        s = nat.st_port_by_global.get((proto, dst, dp))
        if s is not None:
            il, ilp = s
            kind, cfg = "static", _static_cfg(nat, proto, dst, dp, True)
    if il is None:
        loc = nat.st_in_by_global.get(dst)
        if loc is not None:
            il, kind, cfg = loc, "static", _static_cfg(nat, proto, dst, None, True)
    if il is None:
        b = nat.bind_by_global.get(dst)
        if b is not None:
            il, kind = b.inside_local[0], "dynamic"
            cfg = _nat_lines(dynamic=_dyn_cfg(nat, b.rule))
            dynamic = True
    if il is None and nat.doors:
        d = nat.doors.get((proto, dst, dp))
        if d is not None and not d.dead and (d.remote is None or d.remote == src):
            il, ilp = d.inside_local
            kind = "reserved (FTP data through PAT)"
            dynamic = d.rule is not None or d.parent is not None
    if il is None:
        if nat._in_pool(dst):
            return "drop", "pool", "%s is a pool address nobody holds" % ip_str(dst)
        if ol == src or nat._is_pat_address(dst):
            return None, None, ("%s is the PAT address and no translation of this flow exists"
                                % ip_str(dst) if nat._is_pat_address(dst)
                                else "no static or dynamic translation for %s" % ip_str(dst))
        il, kind, cfg = dst, okind or "outside static", ocfg
    if ocfg and kind != okind:
        # both: the inside translation of the destination and the outside
        # list's of the source
        cfg = (cfg if isinstance(cfg, list) else [cfg] if cfg else []) + ocfg
    # (Nat._create_inbound2: no entry, so no limit, for a protocol without
    # ports or a TCP segment that cannot open a connection of no dynamic rule)
    if proto in (1, 6, 17) and not (proto == PROTO_TCP and not dynamic
                                    and pkt.tcp_flags & 0x17 != 0x02):
        lim = _nat_limit(nat, il, dynamic)
        if lim is not None:
            return lim
    new_il, new_p = il, (ilp if ilp is not None else dp)
    out_key = flow_key(proto, src, sp, dst, dp) if proto != PROTO_ICMP else flow_key(1, src, sp, dst, 0)
    in_key = flow_key(proto, new_il, new_p if proto != PROTO_ICMP else sp, ol,
                      sp if proto != PROTO_ICMP else 0)
    if out_key in nat.flows_out or in_key in nat.flows_in:
        return "drop", "collision", "the translated flow is taken by another translation"
    return kind, cfg, (new_il, new_p if proto in (6, 17) else None)


def _nat_limit(nat, host, dynamic):
    """``("drop", subtype, why)`` when ``Nat._limits_ok(host, dynamic)``
    would refuse one more translation (``Nat.limit_reached``, which counts
    and logs nothing), else None."""
    hit = nat.limit_reached(host, dynamic)
    if hit is None:
        return None
    who, limit, n = hit
    if who is None:
        return ("drop", "max-entries", "the translation table is full: %d entries "
                "(ip nat translation max-entries %d)" % (n, limit))
    return ("drop", "max-entries host", "%s holds %d translation(s): its limit is %d (%s)" % (
        ip_str(who), n, limit, _host_limit_line(nat, who)))


def _host_limit_line(nat, host) -> str:
    """The configuration that sets ``host``'s limit (``Nat.host_max``)."""
    from ipaddress import IPv4Address
    to = nat.timeouts
    n = to.max_entries_host.get(IPv4Address(host))
    if n is not None:
        return "ip nat translation max-entries host %s %d" % (ip_str(host), n)
    for name, n, _line in to.max_entries_list:
        acl = nat.acls.get(name)
        if acl is not None and acl.permits_fields(0, host):
            return "ip nat translation max-entries list %s %d" % (name, n)
    if to.max_entries_all_host is not None:
        return "ip nat translation max-entries all-host %d" % to.max_entries_all_host
    return "cbac's default per-host limit"


def _dyn_cfg(nat, rule):
    """The configured ``ip nat inside source list`` line of a NAT rule."""
    from cbac.config import model as m
    if rule is None:
        return None
    for d in nat.model.nat.dynamics:
        if (d.acl, d.pool, d.interface, d.side) == (rule.acl, rule.pool, rule.interface,
                                                    getattr(rule, "side", "inside")):
            return d
    return m.NatDynamic(acl=rule.acl, pool=rule.pool, interface=rule.interface,
                        overload=rule.overload)


def predict_outbound(nat, pkt):
    """What ``Nat.outbound`` would do with the first packet of a flow
    (mirrors ``Nat._create_outbound``, PAT port choice included, without
    allocating anything: the PAT port is the real allocator's dry-run
    answer, ``Nat.pat_choice``)."""
    proto, src, dst = pkt.proto, pkt.src, pkt.dst
    sp, dp = (pkt.icmp_id, 0) if proto == PROTO_ICMP else (pkt.sport, pkt.dport)
    og = nat._og_for(dst)
    if og == dst and getattr(nat, "out_pool_ranges", None) and nat._in_out_pool(dst):
        return "drop", "pool", "%s is an outside pool address nobody holds" % ip_str(dst)
    ig = None
    igp = sp
    kind = cfg = None
    ported = proto in (1, 6, 17)
    by_rule = False             # of a dynamic rule (Nat._create_outbound's rule is not None)
    if proto in (6, 17):
        s = nat.st_port_by_local.get((proto, src, sp))
        if s is not None:
            ig, igp = s
            kind, cfg = "static", _static_cfg(nat, proto, src, sp, False)
    if ig is None:
        g = nat.st_in_by_local.get(src)
        if g is not None:
            ig, kind, cfg = g, "static", _static_cfg(nat, proto, src, None, False)
    if ig is None:
        b = nat.bind_by_local.get(src)
        if b is not None:
            ig, kind = b.inside_global[0], "dynamic (existing binding)"
            cfg = _nat_lines(dynamic=_dyn_cfg(nat, b.rule))
            by_rule = True
            lim = _nat_limit(nat, src, True) if ported else None
            if lim is not None:
                return lim
    if ig is None:
        for r in nat.rules:
            acl = nat.acls.get(r.acl)
            if acl is None:
                continue
            itype, icode = (pkt.icmp_type, pkt.icmp_code) if proto == PROTO_ICMP else (-1, -1)
            entry = acl.lookup_fields(proto, src, dst, pkt.sport, pkt.dport, itype, icode,
                                      pkt.tcp_flags, pkt.frag != 0)
            if entry is None or entry.action != "permit":
                continue
            cfg = [_nat_lines(dynamic=_dyn_cfg(nat, r)), _acl_entry_line(acl, entry)]
            by_rule = True
            lim = _nat_limit(nat, src, True) if ported or r.overload else None
            if lim is not None:
                return lim
            if r.overload:
                kind = "PAT"
                got = nat.pat_choice(r, proto, src, sp, og, dp)
                if got is None:
                    return "drop", "PAT", "no free port on the PAT address(es)"
                ig, igp = got
            else:
                kind = "dynamic"
                free = [a for a in r.addresses
                        if a not in nat.bind_by_global and a not in nat.st_in_by_global]
                if not free:
                    return "drop", "pool", "pool %s is exhausted" % r.pool
                ig = free[0]
            break
    if ig is None:
        if og == dst:
            return None, None, "no inside source rule matches %s" % ip_str(src)
        ig = src
        kind = "outside static"
    if not by_rule and ported and not (proto == PROTO_TCP and pkt.tcp_flags & 0x17 != 0x02):
        lim = _nat_limit(nat, src, False)       # a static's entry: the table's limit
        if lim is not None:
            return lim
    if proto in (6, 17):
        out_key = flow_key(proto, og, dp, ig, igp)
    elif proto == PROTO_ICMP:
        out_key = flow_key(1, og, igp, ig, 0)
    else:
        out_key = flow_key(proto, og, 0, ig, 0)
    if out_key in nat.flows_out:
        return "drop", "collision", "the translated flow is taken by another translation"
    return kind, cfg, (ig, igp if proto in (1, 6, 17) else None)


def _would_refuse(sessions, pkt, c_in) -> str:
    """Why ``SessionTable.create`` would refuse this packet, or ''.
    ``c_in``: its 4-tuple as it arrived (before NAT).  (Mirrors create's
    checks: fragments, key collision, per-source and per-destination
    limits, blocked host, table full without half-open sessions to evict;
    not the zone-based class's sessions maximum.)"""
    from cbac.inspect.session import _k, _ki
    now = sessions.clock.seconds()
    if pkt.frag:
        return "a fragment does not open a session"
    proto = pkt.proto
    if proto == PROTO_ICMP:
        c_out = (pkt.src, pkt.dst, pkt.icmp_id, 0)
    else:
        c_out = (pkt.src, pkt.dst, pkt.sport, pkt.dport)
    table = sessions.proto_table(proto)
    if table is None:
        return "protocol %d is not inspected" % proto
    if proto == PROTO_ICMP:
        keys = (_ki(c_in[0], c_in[1], c_in[2]), _ki(c_out[1], c_out[0], c_out[2]))
    else:
        keys = (_k(*c_in), _k(c_out[1], c_out[0], c_out[3], c_out[2]))
    if any(k in table for k in keys):
        return "another session has the same addresses and ports"
    th = sessions.thresholds
    limit = sessions.model.session_limit_host
    n = th.per_src.get(c_in[0], 0)
    if n >= limit:
        return "%s has %d session(s): cbac session-limit host %d" % (ip_str(c_in[0]), n, limit)
    limit = sessions.model.session_limit_dest
    n = th.per_dst.get(c_out[1], 0)
    if n >= limit:
        return "%s has %d session(s) to it: cbac session-limit destination %d" % (
            ip_str(c_out[1]), n, limit)
    g = sessions.model.inspect
    if proto == PROTO_TCP:
        host = c_in[1]
        until = sessions.blocked_until(host)
        if until is not None and now < until:
            return "new TCP connections to %s are blocked (max-incomplete host)" % ip_str(host)
        half = sessions.host_half_open(host)
        if half >= g.tcp_max_incomplete_host and g.tcp_block_time > 0:
            return ("%s has %d half-open connections (max-incomplete host %d): it would be "
                    "blocked for %d minutes" % (ip_str(host), half, g.tcp_max_incomplete_host,
                                                g.tcp_block_time))
    if len(sessions.sessions) >= sessions.model.session_limit and not sessions.half_open_count:
        return "the session table is full (%d)" % sessions.model.session_limit
    return ""
