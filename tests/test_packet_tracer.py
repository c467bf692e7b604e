"""packet-tracer: the seed's cases line by line, nothing changed by a
trace, and the real pipeline doing what the trace said."""

import copy
import re

from scapy.all import ARP, ICMP, IP, TCP, Ether, raw
from twisted.trial import unittest

from cbac.console.cli import Context, run_line
from cbac.console.commands import build_tree
from tests.test_console_appliance import R_IN, R_OUT, real_appliance

H_IN = "02:00:0a:0a:0a:02"
H_OUT = "02:00:ac:16:01:01"

SMTP_IN = """\
Phase: 1
Type: FLOW-LOOKUP
Subtype: 
Result: ALLOW
Config:
Additional Information:
no session for tcp 172.22.1.1/40000 -> 172.22.1.16/25: the first packet of a flow

Phase: 2
Type: ACCESS-LIST
Subtype: 
Result: ALLOW
Config:
interface Ethernet2/0
 ip access-group 101 in
access-list 101 permit tcp any host 172.22.1.16 eq smtp
Additional Information:

Phase: 3
Type: UN-NAT
Subtype: static
Result: ALLOW
Config:
ip nat inside source static tcp 10.10.10.25 25 172.22.1.16 25 extendable
Additional Information:
untranslate tcp 172.22.1.1/40000 -> 172.22.1.16/25 to tcp 172.22.1.1/40000 -> 10.10.10.25/25

Phase: 4
Type: ROUTE-LOOKUP
Subtype: Resolve Egress Interface
Result: ALLOW
Config:
C       10.10.10.0/24 is directly connected, Ethernet2/1
Additional Information:
found next-hop 10.10.10.25 using egress ifc Ethernet2/1

Phase: 5
Type: ACCESS-LIST
Subtype: 
Result: ALLOW
Config:
Additional Information:
no access list outbound on Ethernet2/1: permitted

Phase: 6
Type: INSPECT
Subtype: smtp
Result: ALLOW
Config:
interface Ethernet2/0
 ip inspect OUT-IN in
ip inspect name OUT-IN smtp
Additional Information:
new smtp session would be created; return traffic is let in by it

Phase: 7
Type: ADJACENCY-LOOKUP
Subtype: next-hop and adjacency
Result: ALLOW
Config:
Additional Information:
next-hop 10.10.10.25 is 0200.0a0a.0a02 on Ethernet2/1 (ARP)

Result:
input-interface: Ethernet2/0
input-status: up
input-line-status: up
output-interface: Ethernet2/1
output-status: up
output-line-status: up
Action: allow"""

PAT_OUT = """\
Phase: 1
Type: FLOW-LOOKUP
Subtype: 
Result: ALLOW
Config:
Additional Information:
no session for tcp 10.10.10.3/40000 -> 172.22.1.1/80: the first packet of a flow

Phase: 2
Type: ACCESS-LIST
Subtype: 
Result: ALLOW
Config:
Additional Information:
no access list inbound on Ethernet2/1: permitted

Phase: 3
Type: ROUTE-LOOKUP
Subtype: Resolve Egress Interface
Result: ALLOW
Config:
C       172.22.1.0/24 is directly connected, Ethernet2/0
Additional Information:
found next-hop 172.22.1.1 using egress ifc Ethernet2/0

Phase: 4
Type: NAT
Subtype: PAT
Result: ALLOW
Config:
ip nat inside source list 1 interface Ethernet2/0 overload
access-list 1 permit 10.10.10.0 0.0.0.255
Additional Information:
translate tcp 10.10.10.3/40000 -> 172.22.1.1/80 to tcp 172.22.1.16/1024 -> 172.22.1.1/80

Phase: 5
Type: ACCESS-LIST
Subtype: 
Result: ALLOW
Config:
Additional Information:
no access list outbound on Ethernet2/0: permitted

Phase: 6
Type: INSPECT
Subtype: http
Result: ALLOW
Config:
interface Ethernet2/1
 ip inspect IN-OUT in
ip inspect name IN-OUT http
Additional Information:
new http session would be created; return traffic is let in by it

Phase: 7
Type: ADJACENCY-LOOKUP
Subtype: next-hop and adjacency
Result: ALLOW
Config:
Additional Information:
next-hop 172.22.1.1 is 0200.ac16.0101 on Ethernet2/0 (ARP)

Result:
input-interface: Ethernet2/1
input-status: up
input-line-status: up
output-interface: Ethernet2/0
output-status: up
output-line-status: up
Action: allow"""

REFUSED = """\
Phase: 1
Type: FLOW-LOOKUP
Subtype: 
Result: ALLOW
Config:
Additional Information:
no session for tcp 172.22.1.1/40000 -> 10.10.10.2/80: the first packet of a flow

Phase: 2
Type: ACCESS-LIST
Subtype: 
Result: DROP
Config:
interface Ethernet2/0
 ip access-group 101 in
access-list 101 (implicit deny)
Additional Information:
no entry matches: implicit deny

Result:
input-interface: Ethernet2/0
input-status: up
input-line-status: up
Action: drop
Drop-reason: (acl-in) Flow is denied by the input access list"""


def state(app):
    """Everything a trace must not change (counters, sessions, NAT, ARP,
    timers, frames sent)."""
    r, nat, s = app.router, app.nat, app.sessions
    acls = {n: ([a.hits for a in c.aces], c.implicit_deny_hits) for n, c in app.acls.lists.items()}
    return copy.deepcopy({
        "acls": acls,
        "nat": (sorted(map(repr, nat.flows_in)), sorted(map(repr, nat.flows_out)), len(nat.entries),
                dict(nat.ports), dict(nat.pat_by_local), nat.hits, nat.misses,
                sorted((k, bytes(m.used), list(m.free), list(m.cursor))
                       for k, m in getattr(nat, "portmaps", {}).items()),
                [(x.refcount, x.misses, x.allocated, x.cursor) for x in nat.rules]),
        "sessions": (sorted(s.sessions), sorted(s.tcp), sorted(s.udp), sorted(s.icmp),
                     s.stats.drops, s.stats.created, s.stats.peak, s.half_open_count, s.thresholds.rate),
        "router": (dict(r.drops), r.forwarded, r.received,
                   {n: dict(ri.drops) for n, ri in r.interfaces.items()}),
        "ports": {n: (len(p.sent), p.counters.tx_packets, p.counters.rx_packets)
                  for n, p in app.router.ports.items()},
        "arp": sorted((k, e.mac, e.expires) for k, e in r.arp.entries.items()),
        "timers": sorted(round(c.getTime(), 3) for c in app.clock.getDelayedCalls()),
    })


def learn_neighbours(testcase):
    """Both neighbours known (ARP), as on a running box."""
    testcase.pin, testcase.pout = testcase.ports["Ethernet2/1"], testcase.ports["Ethernet2/0"]
    for port, mac, rmac, ip, rip in ((testcase.pin, H_IN, R_IN, "10.10.10.25", "10.10.10.1"),
                                     (testcase.pout, H_OUT, R_OUT, "172.22.1.1", "172.22.1.16")):
        port.inject(bytearray(raw(Ether(src=mac, dst=rmac) / ARP(
            op=2, hwsrc=mac, psrc=ip, hwdst=rmac, pdst=rip))))


class PacketTracerTests(unittest.TestCase):
    def setUp(self):
        self.app, self.ports, _ = real_appliance(self)
        learn_neighbours(self)
        # one connection already through PAT (port 40000 taken)
        self.syn("in", "10.10.10.2", 40000, "172.22.1.1", 80)
        self.assertEqual(len(self.app.sessions.sessions), 1)

    def syn(self, side, src, sport, dst, dport, flags="S"):
        port, mac = (self.pin, R_IN) if side == "in" else (self.pout, R_OUT)
        f = Ether(src=H_IN if side == "in" else H_OUT, dst=mac) / IP(src=src, dst=dst) / TCP(
            sport=sport, dport=dport, flags=flags, seq=1000)
        self.pin.sent.clear()
        self.pout.sent.clear()
        port.inject(bytearray(raw(f)))

    def tracer(self, line):
        ctx = Context(self.app, "admin", 15, "127.0.0.1")
        out = []
        run_line(build_tree(), ctx, line).addCallback(out.append)
        return out[0]

    def assertLines(self, got, expected):
        self.assertEqual(got.split("\n"), expected.split("\n"))

    def test_smtp_inbound_to_the_published_server(self):
        before = state(self.app)
        r = self.tracer("packet-tracer input Ethernet2/0 tcp 172.22.1.1 40000 172.22.1.16 25")
        self.assertEqual(r.status, 0)
        self.assertLines(r.text, SMTP_IN)
        self.assertEqual(state(self.app), before)
        # the real pipeline does what the trace said
        self.syn("out", "172.22.1.1", 40000, "172.22.1.16", 25)
        [f] = [Ether(x) for x, _ in self.pin.sent]
        self.assertEqual((f[IP].dst, f[TCP].dport, f.dst), ("10.10.10.25", 25, H_IN))
        self.assertIn("smtp", [s.protocol for s in self.app.sessions.sessions.values()])

    def test_pat_outbound(self):
        before = state(self.app)
        r = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.10.3 40000 172.22.1.1 80")
        self.assertEqual(r.status, 0)
        self.assertLines(r.text, PAT_OUT)
        self.assertEqual(state(self.app), before)
        self.syn("in", "10.10.10.3", 40000, "172.22.1.1", 80)
        [f] = [Ether(x) for x, _ in self.pout.sent]
        self.assertEqual((f[IP].src, f[TCP].sport), ("172.22.1.16", 1024))   # as traced

    def test_refused(self):
        before = state(self.app)
        r = self.tracer("packet-tracer input Ethernet2/0 tcp 172.22.1.1 40000 10.10.10.2 80")
        self.assertEqual(r.status, 1)
        self.assertLines(r.text, REFUSED)
        self.assertEqual(state(self.app), before)
        drops = self.app.router.drops["acl-in"]
        self.syn("out", "172.22.1.1", 40000, "10.10.10.2", 80)
        self.assertEqual(self.app.router.drops["acl-in"], drops + 1)

    def test_existing_session_return_traffic(self):
        """The server's SYN/ACK of the PAT connection: found by the session
        (ACL bypass), translated back, routed inside."""
        before = state(self.app)
        r = self.tracer("packet-tracer input Ethernet2/0 tcp 172.22.1.1 80 172.22.1.16 40000 detailed")
        self.assertEqual(state(self.app), before)
        lines = r.text.split("\n")
        self.assertEqual(r.status, 0, r.text)
        self.assertEqual([l for l in lines if l.startswith("Type: ")],
                         ["Type: FLOW-LOOKUP", "Type: NAT", "Type: INSPECT", "Type: ROUTE-LOOKUP",
                          "Type: ADJACENCY-LOOKUP"])
        self.assertRegex(r.text, r"found session [0-9A-F]{8} http \(10\.10\.10\.2:40000\)=>"
                                 r"\(172\.22\.1\.1:80\) \S+ \(from the responder\)")
        self.assertIn("ACL bypass: the access lists are not evaluated for its packets", lines)
        self.assertIn("translate tcp 172.22.1.1/80 -> 172.22.1.16/40000 to "
                      "tcp 172.22.1.1/80 -> 10.10.10.2/40000 (the session's translation)", lines)
        self.assertIn("packet: tcp 172.22.1.1/80 -> 172.22.1.16/40000 ttl 64", lines)

    def test_existing_session_with_ttl_one(self):
        """A session's packet with TTL 1 is not forwarded (the router drops
        it and answers time exceeded): the trace says so instead of showing
        it leave."""
        from cbac.dataplane.trace import trace_frame
        synack = Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.1", dst="172.22.1.16", ttl=1) / TCP(
            sport=80, dport=40000, flags="SA", seq=5000, ack=1001)
        before = state(self.app)
        t = trace_frame(self.app.router, "Ethernet2/0", bytearray(raw(synack)))
        self.assertEqual(state(self.app), before)
        text = t.render(self.app.router)
        self.assertIn("found session", text)
        self.assertIn("TTL 1: time exceeded", text)
        self.assertIn("Action: drop", text)
        self.assertEqual(t.drop_reason, "ttl-exceeded")
        self.pin.sent.clear()
        self.pout.sent.clear()
        self.pout.inject(bytearray(raw(synack)))
        self.assertEqual(self.pin.sent, [])                    # as traced: not forwarded
        self.assertEqual(self.app.router.drops["ttl-exceeded"], 1)
        [err] = [Ether(x) for x, _ in self.pout.sent]
        self.assertEqual((err[ICMP].type, err[ICMP].code), (11, 0))

    def test_router_itself_and_no_route(self):
        r = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.10.2 40000 10.10.10.1 23")
        self.assertEqual(r.status, 1)
        self.assertIn("Drop-reason: (local-tcp) To the router: TCP port closed (answered with RST)",
                      r.text)
        r = self.tracer("packet-tracer input e2/1 icmp 10.10.10.2 8 0 172.22.1.1")
        self.assertEqual(r.status, 0, r.text)
        self.assertIn("Subtype: icmp", r.text)
        r = self.tracer("packet-tracer input Ethernet9/9 udp 10.10.10.2 1 172.22.1.1 53")
        self.assertEqual((r.status, r.text), (1, "% Invalid interface: Ethernet9/9"))

    def test_port_keywords(self):
        a = self.tracer("packet-tracer input Ethernet2/0 tcp 172.22.1.1 40000 172.22.1.16 smtp")
        self.assertEqual((a.status, a.text), (0, SMTP_IN))
        r = self.tracer("packet-tracer input Ethernet2/0 tcp 172.22.1.1 40000 172.22.1.16 nosuch")
        self.assertEqual((r.status, r.text), (1, "% Invalid tcp port: nosuch"))
        r = self.tracer("packet-tracer input Ethernet2/0 udp 172.22.1.1 70000 172.22.1.16 53")
        self.assertEqual((r.status, r.text), (1, "% Invalid udp port: 70000"))

    def test_privileged_only(self):
        ctx = Context(self.app, "oper", 1, "127.0.0.1")
        out = []
        run_line(build_tree(), ctx, "packet-tracer input Ethernet2/0 tcp 1.1.1.1 1 2.2.2.2 2").addCallback(
            out.append)
        self.assertIn("Invalid input", out[0].text)

    def test_frames_the_normaliser_drops(self):
        """cbac-replay --trace's path: an ACK without a session on inspected
        traffic and a frame with a bad TCP checksum, as the router then
        counts them."""
        from cbac.dataplane.trace import trace_frame
        ack = Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") / TCP(
            sport=41000, dport=80, flags="A", seq=5, ack=7)
        before = state(self.app)
        t = trace_frame(self.app.router, "Ethernet2/1", bytearray(raw(ack)))
        self.assertEqual(state(self.app), before)
        text = t.render(self.app.router)
        self.assertIn("Drop-reason: (inspect-no-session) TCP segment without a session (not a SYN) "
                      "on inspected traffic", text)
        self.pin.inject(bytearray(raw(ack)))
        self.assertEqual(self.app.router.drops["inspect-no-session"], 1)
        bad = bytearray(raw(ack))
        bad[-3] ^= 0xFF                                # inside the TCP checksum
        t = trace_frame(self.app.router, "Ethernet2/1", bad)
        self.assertEqual(t.drop_reason, "bad-l4-checksum")
        self.pin.inject(bad)
        self.assertEqual(self.app.router.drops["bad-l4-checksum"], 1)

    def test_segment_of_an_uninspected_connection(self):
        """A segment without a session on inspected traffic whose
        connection the ACLs passed without inspection (remembered by its
        SYN, cbac/inspect/uninspected.py): traced and forwarded, not
        dropped."""
        from cbac.dataplane.trace import trace_frame
        ack = Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.1", dst="172.22.1.16") / TCP(
            sport=40000, dport=25, flags="A", seq=5, ack=7)
        t = trace_frame(self.app.router, "Ethernet2/0", bytearray(raw(ack)))
        self.assertEqual(t.drop_reason, "inspect-no-session")
        from ipaddress import IPv4Address

        def ip(a):
            return int(IPv4Address(a))
        self.app.sessions.uninspected.remember(
            (ip("172.22.1.1"), ip("172.22.1.16"), 40000, 25),
            (ip("172.22.1.1"), ip("10.10.10.25"), 40000, 25), self.app.clock.seconds())
        before = state(self.app)
        t = trace_frame(self.app.router, "Ethernet2/0", bytearray(raw(ack)))
        self.assertEqual(state(self.app), before)
        text = t.render(self.app.router)
        self.assertIn("was permitted by the access lists without inspection: forwarded as it is",
                      text)
        self.pin.sent.clear()
        self.pout.inject(bytearray(raw(ack)))
        [f] = [Ether(x) for x, _ in self.pin.sent]
        self.assertEqual((f[IP].dst, f[TCP].dport, str(f[TCP].flags)), ("10.10.10.25", 25, "A"))


class PerHostLimitTracerTests(unittest.TestCase):
    """packet-tracer reports the per-host limits the real pipeline
    enforces: ``ip nat translation max-entries host`` (NAT) and ``cbac
    session-limit host`` (inspection)."""

    def start(self, extra):
        """The seed with ``extra`` appended (reloaded as a user would), both
        neighbours known, and 10.10.10.2's first connection through PAT."""
        self.app, self.ports, conf = real_appliance(self)
        with open(conf) as f:
            text = f.read()
        head, end, tail = text.rpartition("\nend\n")
        self.assertEqual(end, "\nend\n")
        with open(conf, "w") as f:
            f.write(head + "\n" + extra + end + tail)
        ok, msg = self.app.reload_config()
        self.assertTrue(ok, msg)
        learn_neighbours(self)
        self.syn( "in", "10.10.10.2", 40000, "172.22.1.1", 80)
        self.assertEqual(len(self.app.sessions.sessions), 1)
        self.assertEqual(len(self.pout.sent), 1)

    syn = PacketTracerTests.syn
    tracer = PacketTracerTests.tracer

    def second_connection(self, reason):
        """Trace 10.10.10.2's second connection: dropped for ``reason``;
        then send it: the real pipeline drops it, counted as ``reason``."""
        before = state(self.app)
        r = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.10.2 40001 172.22.1.1 80")
        self.assertEqual(state(self.app), before)
        self.assertEqual(r.status, 1, r.text)
        self.assertIn("Action: drop", r.text)
        self.assertIn("Drop-reason: (%s)" % reason, r.text)
        drops = self.app.router.drops[reason]
        self.syn("in", "10.10.10.2", 40001, "172.22.1.1", 80)
        self.assertEqual(self.pout.sent, [])
        self.assertEqual(self.app.router.drops[reason], drops + 1)
        # another host is not limited, in the trace as on the wire
        r = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.10.3 40001 172.22.1.1 80")
        self.assertEqual(r.status, 0, r.text)
        self.syn("in", "10.10.10.3", 40001, "172.22.1.1", 80)
        self.assertEqual(len(self.pout.sent), 1)
        return r

    def test_nat_max_entries_host(self):
        self.start("ip nat translation max-entries host 10.10.10.2 1\n")
        self.second_connection("nat")
        text = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.10.2 40001 172.22.1.1 80").text
        self.assertIn("10.10.10.2 holds 1 translation(s): its limit is 1", text)

    def test_nat_max_entries_all_host(self):
        self.start("ip nat translation max-entries all-host 1\n")
        self.second_connection("nat")

    def test_outbound_to_an_outside_static(self):
        """Inside -> outside to an ``ip nat outside source static`` address:
        a translation without a configuration line of its own (the trace
        used to crash rendering it)."""
        self.start("ip nat outside source static 172.22.1.99 192.168.200.99\n")
        # from a source no inside rule translates (access-list 1 is 10.10.10.0/24)
        r = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.11.5 40001 192.168.200.99 80")
        self.assertIn("Type: NAT\nSubtype: outside static\nResult: ALLOW\nConfig:\n"
                      "Additional Information:\n", r.text)
        self.assertEqual(r.status, 0, r.text)

    def test_session_limit_host(self):
        self.start("cbac session-limit host 1\n")
        self.second_connection("inspect-refused")
        text = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.10.2 40001 172.22.1.1 80").text
        self.assertIn("10.10.10.2 has 1 session(s): cbac session-limit host 1", text)


def zbf_appliance(testcase):
    """The ZBF seed (etc/router-zbf.conf) on memory ports, as real_appliance."""
    import os
    import shutil
    from twisted.internet.task import Clock
    from cbac.app import Appliance
    from cbac.config.parser import parse_file
    from cbac.dataplane.port import MemoryPort
    from cbac.log import ios
    from cbac.log.observers import makeLogging
    from tests.test_console_appliance import SEED
    tmp = os.path.abspath(testcase.mktemp())
    os.makedirs(tmp)
    conf = os.path.join(tmp, "router.conf")
    shutil.copy(os.path.join(os.path.dirname(SEED), "router-zbf.conf"), conf)
    model, _ = parse_file(conf)
    clock = Clock()
    clock.advance(1000)
    ports = {"Ethernet2/1": MemoryPort("Ethernet2/1", R_IN),
             "Ethernet2/0": MemoryPort("Ethernet2/0", R_OUT)}
    app = Appliance(model, clock, ports, config_path=conf, state_dir=os.path.join(tmp, "state"))
    app.log_observers, _svc = makeLogging(model, clock)
    app.router.start()
    testcase.addCleanup(app.router.stop)
    testcase.addCleanup(ios.debugging.clear)
    return app, ports


class ZonePacketTracerTests(unittest.TestCase):
    """packet-tracer on the ZBF seed: the zone phase decides as the
    router's stage 6b does, and changes no counter."""

    def setUp(self):
        self.app, self.ports = zbf_appliance(self)
        self.pin, self.pout = self.ports["Ethernet2/1"], self.ports["Ethernet2/0"]
        for port, mac, rmac, ip, rip in ((self.pin, H_IN, R_IN, "10.10.10.25", "10.10.10.1"),
                                         (self.pout, H_OUT, R_OUT, "172.22.1.1", "172.22.1.16")):
            port.inject(bytearray(raw(Ether(src=mac, dst=rmac) / ARP(
                op=2, hwsrc=mac, psrc=ip, hwdst=rmac, pdst=rip))))

    def zone_show(self):
        return self.tracer("show policy-map type inspect zone-pair").text

    def zone_phase(self, text):
        lines = text.split("\n")
        i = lines.index("Type: ZONE")
        return lines[i - 1:lines.index("", i)]

    def test_lan_to_wan_inspected(self):
        before, shown = state(self.app), self.zone_show()
        r = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.10.3 40000 172.22.1.1 80")
        self.assertEqual(r.status, 0, r.text)
        self.assertEqual(self.zone_phase(r.text)[1:], [
            "Type: ZONE", "Subtype: policy", "Result: ALLOW", "Config:",
            "zone-pair security LAN-WAN source LAN destination WAN",
            " service-policy type inspect LAN-WAN-POLICY",
            "policy-map type inspect LAN-WAN-POLICY", " class type inspect LAN-WAN", "  inspect",
            "Additional Information:",
            "Ethernet2/1 (zone LAN) -> Ethernet2/0 (zone WAN): zone-pair LAN-WAN, class LAN-WAN: "
            "inspect"])
        types = [l for l in r.text.split("\n") if l.startswith("Type: ")]
        self.assertLess(types.index("Type: ROUTE-LOOKUP"), types.index("Type: ZONE"))
        self.assertLess(types.index("Type: ZONE"), types.index("Type: NAT"))
        self.assertIn("Subtype: http", r.text)
        self.assertIn("zone inspection rule LAN-WAN:LAN-WAN (the class's inspect action)", r.text)
        self.assertEqual((state(self.app), self.zone_show()), (before, shown))
        # the real packet: forwarded, an http session of the class
        self.syn("in", "10.10.10.3", 40000, "172.22.1.1", 80)
        [f] = [Ether(x) for x, _ in self.pout.sent]
        self.assertEqual((f[IP].src, f[TCP].dport), ("172.22.1.16", 80))
        self.assertEqual([(s.protocol, s.rule_name) for s in self.app.sessions.sessions.values()],
                         [("http", "LAN-WAN:LAN-WAN")])

    def test_smtp_inbound_to_the_published_server(self):
        before, shown = state(self.app), self.zone_show()
        r = self.tracer("packet-tracer input Ethernet2/0 tcp 172.22.1.1 40000 172.22.1.16 25")
        self.assertEqual(r.status, 0, r.text)
        self.assertIn("Ethernet2/0 (zone WAN) -> Ethernet2/1 (zone LAN): zone-pair WAN-LAN, "
                      "class WAN-LAN-MAIL: inspect", r.text)
        types = [l for l in r.text.split("\n") if l.startswith("Type: ")]
        self.assertLess(types.index("Type: UN-NAT"), types.index("Type: ZONE"))
        self.assertEqual((state(self.app), self.zone_show()), (before, shown))
        self.syn("out", "172.22.1.1", 40000, "172.22.1.16", 25)
        [f] = [Ether(x) for x, _ in self.pin.sent]
        self.assertEqual((f[IP].dst, f[TCP].dport, f.dst), ("10.10.10.25", 25, H_IN))
        self.assertIn("smtp", [s.protocol for s in self.app.sessions.sessions.values()])

    def test_refused(self):
        """Inbound to an inside host: class-default drop (log)."""
        before, shown = state(self.app), self.zone_show()
        r = self.tracer("packet-tracer input Ethernet2/0 tcp 172.22.1.1 40000 10.10.10.2 80")
        self.assertEqual(r.status, 1, r.text)
        self.assertEqual(self.zone_phase(r.text)[1:], [
            "Type: ZONE", "Subtype: policy", "Result: DROP", "Config:",
            "zone-pair security WAN-LAN source WAN destination LAN",
            " service-policy type inspect WAN-LAN-POLICY",
            "policy-map type inspect WAN-LAN-POLICY", " class class-default", "  drop log",
            "Additional Information:",
            "Ethernet2/0 (zone WAN) -> Ethernet2/1 (zone LAN): zone-pair WAN-LAN, "
            "class class-default: drop"])
        self.assertTrue(r.text.endswith(
            "Action: drop\nDrop-reason: (zone-drop) Flow is denied by the zone-based policy"),
            r.text)
        # nothing counted, nothing logged by the trace
        self.assertEqual((state(self.app), self.zone_show()), (before, shown))
        drops = self.app.router.drops["zone-drop"]
        self.syn("out", "172.22.1.1", 40000, "10.10.10.2", 80)
        self.assertEqual(self.pin.sent, [])
        self.assertEqual(self.app.router.drops["zone-drop"], drops + 1)
        self.assertNotEqual(self.zone_show(), shown)

    def test_ack_without_session_in_an_inspected_class(self):
        r = self.tracer("packet-tracer input Ethernet2/1 tcp 10.10.10.3 40000 172.22.1.1 80")
        self.assertEqual(r.status, 0)
        from cbac.dataplane.trace import trace_frame
        ack = Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.3", dst="172.22.1.1") / TCP(
            sport=41000, dport=80, flags="A", seq=5, ack=7)
        t = trace_frame(self.app.router, "Ethernet2/1", bytearray(raw(ack)))
        self.assertIn("Drop-reason: (zone-no-session)", t.render(self.app.router))
        drops = self.app.router.drops["zone-no-session"]
        self.pin.inject(bytearray(raw(ack)))
        self.assertEqual(self.app.router.drops["zone-no-session"], drops + 1)

    syn = PacketTracerTests.syn
    tracer = PacketTracerTests.tracer


class PatPortAgreesTests(unittest.TestCase):
    """The PAT port packet-tracer shows is the port the real packet gets,
    whatever the allocator's state: the original port when free, the next
    of its IOS range when taken (the cursor moved by earlier allocations),
    and past a port the remote still holds in TIME_WAIT.  (The tracer asks
    the real allocator for a dry run, Nat.pat_choice; nothing changes.)"""

    setUp = PacketTracerTests.setUp
    syn = PacketTracerTests.syn
    tracer = PacketTracerTests.tracer

    def traced_then_real(self, src, sport, dst="172.22.1.1", dport=80):
        before = state(self.app)
        r = self.tracer("packet-tracer input Ethernet2/1 tcp %s %d %s %d" % (src, sport, dst, dport))
        self.assertEqual(state(self.app), before)
        m = re.search(r"translate tcp %s/%d -> %s/%d to tcp 172\.22\.1\.16/(\d+) -> "
                      % (re.escape(src), sport, re.escape(dst), dport), r.text)
        self.assertIsNotNone(m, r.text)
        self.syn("in", src, sport, dst, dport)
        [f] = [Ether(x) for x, _ in self.pout.sent]
        self.assertEqual(f[IP].src, "172.22.1.16")
        self.assertEqual(int(m.group(1)), f[TCP].sport)
        return f[TCP].sport

    def test_free_taken_and_cursor(self):
        self.assertEqual(self.traced_then_real("10.10.10.3", 41000), 41000)
        self.assertEqual(self.traced_then_real("10.10.10.3", 40000), 1024)   # 40000 is taken
        self.assertEqual(self.traced_then_real("10.10.10.4", 40000), 1025)   # the cursor moved
        self.assertEqual(self.traced_then_real("10.10.10.4", 41000), 1026)
        self.assertEqual(self.traced_then_real("10.10.10.5", 600), 600)
        self.assertEqual(self.traced_then_real("10.10.10.6", 600), 512)      # same IOS range

    def test_past_a_port_in_time_wait(self):
        # 10.10.10.2:40000's connection (172.22.1.16:40000) is reset by the
        # server: the remote may hold 172.22.1.16:40000 <-> 172.22.1.1:80 in
        # TIME_WAIT, so that 4-tuple is not handed out again for a while
        f = Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.1", dst="172.22.1.16") / TCP(
            sport=80, dport=40000, flags="RA", seq=0, ack=1001)     # refuses the SYN (seq 1000)
        self.pout.inject(bytearray(raw(f)))
        for _ in range(30):                 # the closed session goes at its next tick
            if not self.app.sessions.sessions:
                break
            self.app.clock.advance(1)
        self.assertEqual(self.app.sessions.sessions, {})
        port = self.traced_then_real("10.10.10.3", 40000)
        self.assertNotEqual(port, 40000)
        # to another remote port the 4-tuple is free: the original port
        self.assertEqual(self.traced_then_real("10.10.10.7", 40000, dport=81), 40000)
