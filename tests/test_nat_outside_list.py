"""``ip nat outside source list ACL pool POOL [add-route]`` (issue 13):
dynamic outside translation, through the whole appliance on memory ports
(the seed configuration: inside PAT, the mail server 10.10.10.25 published
on 172.22.1.16:25 by an inside static, ``ip inspect OUT-IN in``)."""

from scapy.all import IP, TCP, Ether
from twisted.trial import unittest

from cbac.config.check import check
from cbac.config.parser import parse_config
from cbac.config.render import render
from cbac.dataplane.routes import render_show_ip_route
from tests.test_resilience import ApplianceCase

OUTSIDE_LIST = """\
access-list 5 permit 198.51.100.0 0.0.0.255
ip nat pool OUTP 10.20.0.10 10.20.0.11 netmask 255.255.255.0
ip nat outside source list 5 pool OUTP add-route
ip nat translation timeout 120"""

SRV = "10.10.10.25"
PUB = "172.22.1.16"


class OutsideSourceListTests(ApplianceCase):
    extra = OUTSIDE_LIST

    def syn(self, src, sport=40000):
        self.outside(IP(src=src, dst=PUB) / TCP(sport=sport, dport=25, flags="S", seq=1000))

    def test_outside_host_seen_as_pool_address_and_replies_translated_back(self):
        self.syn("198.51.100.7")
        [p] = self.sent(self.pin)
        # inside static (destination) and outside list (source) both applied
        self.assertEqual((p[IP].src, p[IP].dst, p[TCP].sport, p[TCP].dport),
                         ("10.20.0.10", SRV, 40000, 25))
        self.assertEqual(p[Ether].dst, "02:00:0a:0a:0a:19")
        # the server answers the pool address; the client sees the public one
        self.inside(IP(src=SRV, dst="10.20.0.10") /
                    TCP(sport=25, dport=40000, flags="SA", seq=5000, ack=1001), mac="02:00:0a:0a:0a:19")
        [r] = self.sent(self.pout)
        self.assertEqual((r[IP].src, r[IP].dst, r[TCP].sport, r[TCP].dport),
                         (PUB, "198.51.100.7", 25, 40000))
        self.assertEqual(r[TCP].chksum, TCP(bytes(r[TCP]))[TCP].chksum)
        # the handshake completes, data flows both ways through one binding
        self.outside(IP(src="198.51.100.7", dst=PUB) /
                     TCP(sport=40000, dport=25, flags="A", seq=1001, ack=5001))
        [a] = self.sent(self.pin)
        self.assertEqual(a[IP].src, "10.20.0.10")
        out = self.app.nat.show_translations()
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["Pro", "Inside", "global", "Inside", "local",
                                            "Outside", "local", "Outside", "global"])
        self.assertIn(["---", "---", "---", "10.20.0.10", "198.51.100.7"],
                      [ln.split() for ln in lines])
        self.assertIn(["tcp", "172.22.1.16:25", "10.10.10.25:25", "10.20.0.10:40000",
                       "198.51.100.7:40000"], [ln.split() for ln in lines])
        # a second outside host gets the next address
        self.syn("198.51.100.8", sport=41000)
        [p2] = self.sent(self.pin)
        self.assertEqual(p2[IP].src, "10.20.0.11")

    def test_acl_not_matching_is_not_translated(self):
        self.syn("192.0.2.9")
        [p] = self.sent(self.pin)
        self.assertEqual((p[IP].src, p[IP].dst), ("192.0.2.9", SRV))
        self.assertNotIn("10.20.0.", self.app.nat.show_translations())

    def test_inside_host_reaches_outside_local_with_inside_pat(self):
        # the binding exists (made by the outside host's connection) ...
        self.syn("198.51.100.7")
        self.sent(self.pin)
        # ... an inside host reaches the outside host at its outside local
        # address: source PAT, destination back to the outside global
        self.inside(IP(src="10.10.10.2", dst="10.20.0.10") /
                    TCP(sport=33000, dport=80, flags="S", seq=7))
        [p] = self.sent(self.pout)
        self.assertEqual((p[IP].src, p[IP].dst, p[TCP].dport), (PUB, "198.51.100.7", 80))
        self.outside(IP(src="198.51.100.7", dst=PUB) /
                     TCP(sport=80, dport=p[TCP].sport, flags="SA", seq=9, ack=8))
        [r] = self.sent(self.pin)
        self.assertEqual((r[IP].src, r[IP].dst, r[TCP].dport),
                         ("10.20.0.10", "10.10.10.2", 33000))

    def test_unallocated_pool_address_from_inside_is_dropped(self):
        self.inside(IP(src="10.10.10.2", dst="10.20.0.11") /
                    TCP(sport=33000, dport=80, flags="S", seq=7))
        self.assertEqual(self.sent(self.pout), [])
        self.assertEqual(self.r.drops["nat"], 1)

    def test_pool_exhaustion_logged_and_counted(self):
        self.syn("198.51.100.7")
        self.syn("198.51.100.8")
        self.assertEqual(len(self.sent(self.pin)), 2)
        self.syn("198.51.100.9")
        self.assertEqual(self.sent(self.pin), [])
        self.assertIn("%IPNAT-4-ADDR_ALLOC_FAILURE: Address allocation failed; pool OUTP may "
                      "be exhausted [1]", self.logs)
        st = self.app.nat.show_statistics()
        self.assertIn("Address allocation failures: 1\n", st)
        self.assertIn("-- Outside Source\n[Id: 1] access-list 5 pool OUTP add-route", st)
        self.assertIn("total addresses 2, allocated 2 (100%), misses 1", st)
        # a refused packet leaves no binding behind
        self.assertNotIn("198.51.100.9", self.app.nat.show_translations())

    def test_add_route_lives_with_the_binding(self):
        self.assertNotIn("10.20.0.10/32", render_show_ip_route(self.r.routes))
        self.syn("198.51.100.7")
        self.sent(self.pin)
        routes = render_show_ip_route(self.r.routes)
        self.assertIn("10.20.0.10/32 [1/0] via 198.51.100.7", routes)
        # the session ends (RST): the flow goes, the binding times out
        self.outside(IP(src="198.51.100.7", dst=PUB) /
                     TCP(sport=40000, dport=25, flags="R", seq=1001))
        self.advance(200)
        self.sent(self.pin)
        self.assertNotIn("10.20.0.10", self.app.nat.show_translations())
        self.assertNotIn("10.20.0.10/32", render_show_ip_route(self.r.routes))
        # the address is free again
        self.syn("198.51.100.8")
        [p] = self.sent(self.pin)
        self.assertEqual(p[IP].src, "10.20.0.10")

    def test_add_route_survives_a_reload(self):
        from tests.test_resilience import seed_text
        self.syn("198.51.100.7")
        self.sent(self.pin)
        model, _ = parse_config(seed_text(self.extra))
        self.app.apply(model)
        self.assertIn("10.20.0.10/32 [1/0] via 198.51.100.7", render_show_ip_route(self.r.routes))
        self.syn("198.51.100.7", sport=40001)       # the same binding after the reload
        [p] = self.sent(self.pin)
        self.assertEqual(p[IP].src, "10.20.0.10")

    def test_binding_survives_while_flows_use_it(self):
        self.syn("198.51.100.7")
        self.sent(self.pin)
        self.inside(IP(src=SRV, dst="10.20.0.10") /
                    TCP(sport=25, dport=40000, flags="SA", seq=5000, ack=1001),
                    mac="02:00:0a:0a:0a:19")
        self.outside(IP(src="198.51.100.7", dst=PUB) /
                     TCP(sport=40000, dport=25, flags="A", seq=1001, ack=5001))
        for _ in range(5):
            self.advance(100)
            self.outside(IP(src="198.51.100.7", dst=PUB) /
                         TCP(sport=40000, dport=25, flags="PA", seq=1001, ack=5001) / b"x")
        self.sent(self.pin)
        self.sent(self.pout)
        self.assertIn("10.20.0.10", self.app.nat.show_translations())
        self.outside(IP(src="198.51.100.7", dst=PUB) /
                     TCP(sport=40000, dport=25, flags="PA", seq=1002, ack=5001) / b"y")
        [p] = self.sent(self.pin)
        self.assertEqual(p[IP].src, "10.20.0.10")


class OutsideSourceListTracerTests(ApplianceCase):
    extra = OUTSIDE_LIST

    def tracer(self, line):
        from cbac.console.cli import Context, run_line
        from cbac.console.commands import build_tree
        out = []
        run_line(build_tree(), Context(self.app, "admin", 15, "127.0.0.1"), line).addCallback(
            out.append)
        return out[0].text

    def test_tracer_predicts_the_binding_without_making_it(self):
        text = self.tracer("packet-tracer input Ethernet2/0 tcp 198.51.100.7 40000 "
                           "172.22.1.16 25")
        self.assertIn("ip nat outside source list 5 pool OUTP add-route", text)
        self.assertIn("untranslate tcp 198.51.100.7/40000 -> 172.22.1.16/25 to tcp "
                      "10.20.0.10/40000 -> 10.10.10.25/25", text)
        self.assertNotIn("10.20.0.10", self.app.nat.show_translations())
        for src in ("198.51.100.8", "198.51.100.9"):
            self.outside(IP(src=src, dst=PUB) / TCP(sport=40000, dport=25, flags="S"))
        text = self.tracer("packet-tracer input Ethernet2/0 tcp 198.51.100.7 40000 "
                           "172.22.1.16 25")
        self.assertIn("pool OUTP is exhausted", text)


class OutsideSourceListConfigTests(unittest.TestCase):
    def test_render_round_trip(self):
        text = ("access-list 5 permit 198.51.100.0 0.0.0.255\n"
                "ip nat pool OUTP 10.20.0.10 10.20.0.11 netmask 255.255.255.0\n"
                "ip nat outside source list 5 pool OUTP add-route\n"
                "ip nat outside source list 6 pool OUTP\n")
        model, diags = parse_config(text)
        self.assertEqual([d for d in diags if d.severity == "error"], [])
        out = render(model)
        self.assertIn("ip nat outside source list 5 pool OUTP add-route\n", out)
        self.assertIn("ip nat outside source list 6 pool OUTP\n", out)
        again, _ = parse_config(out)
        self.assertEqual(render(again), out)
        [d5, d6] = again.nat.dynamics
        self.assertEqual((d5.side, d5.acl, d5.pool, d5.add_route), ("outside", "5", "OUTP", True))
        self.assertEqual((d6.side, d6.add_route), ("outside", False))

    def test_no_removes_it(self):
        model, _ = parse_config("ip nat outside source list 5 pool OUTP\n"
                                "ip nat inside source list 5 pool INP\n"
                                "no ip nat outside source list 5 pool OUTP\n")
        self.assertEqual([(d.side, d.pool) for d in model.nat.dynamics], [("inside", "INP")])

    def test_undefined_acl_and_pool_are_errors(self):
        model, diags = parse_config("ip nat outside source list 7 pool NOPE\n")
        msgs = [str(d) for d in diags + check(model) if d.severity == "error"]
        self.assertTrue(any("access list 7 is not defined" in m for m in msgs), msgs)
        self.assertTrue(any("pool NOPE is not defined" in m for m in msgs), msgs)

    def test_pool_shared_with_inside_rule_is_an_error(self):
        model, diags = parse_config(
            "access-list 5 permit any\n"
            "ip nat pool P 10.20.0.10 10.20.0.11 netmask 255.255.255.0\n"
            "ip nat inside source list 5 pool P\n"
            "ip nat outside source list 5 pool P\n")
        msgs = [str(d) for d in diags + check(model) if d.severity == "error"]
        self.assertTrue(any("used by both" in m for m in msgs), msgs)

    def test_refused_forms(self):
        for line, why in (("ip nat outside source list 5 pool P overload", "overload"),
                          ("ip nat outside source list 5 interface Ethernet0 ", "interface"),
                          ("ip nat inside source list 5 pool P add-route", "add-route")):
            _model, diags = parse_config(line + "\n")
            errs = [str(d) for d in diags if d.severity == "error"]
            self.assertEqual(len(errs), 1, line)
            self.assertIn(why, errs[0])



class OutsideListEngineTests(unittest.TestCase):
    """The NAT engine alone: ICMP errors and fragments through an outside
    binding."""

    def setUp(self):
        from twisted.internet.task import Clock

        from cbac.nat import Nat
        from tests.test_nat import CONFIG
        self.clock = Clock()
        self.clock.advance(1000)
        model, diags = parse_config(
            CONFIG + "access-list 5 permit 198.51.100.0 0.0.0.255\n"
            "ip nat pool OUTP 10.20.0.10 10.20.0.11 netmask 255.255.255.0\n"
            "ip nat outside source list 5 pool OUTP\n")
        self.assertEqual([d for d in diags if d.severity == "error"], [])
        self.nat = Nat(model, self.clock)
        self.addCleanup(self.nat.stop)
        self.addCleanup(self.nat.acls.stop)

    def test_icmp_error_from_inside_is_translated_back(self):
        from scapy.layers.inet import ICMP, UDP
        from tests.test_nat import assert_checksums, frame, sc
        q = frame(IP(src="198.51.100.7", dst="203.0.113.5") / UDP(sport=5000, dport=53) / b"q")
        self.assertIsNotNone(self.nat.inbound(q, "Ethernet0/0"))
        self.assertEqual((sc(q)[IP].src, sc(q)[IP].dst), ("10.20.0.10", "10.0.0.5"))
        quoted = bytes(sc(q)[IP])
        err = frame(IP(src="10.0.0.5", dst="10.20.0.10") / ICMP(type=3, code=3) / quoted)
        self.assertIsNotNone(self.nat.outbound(err, "Ethernet0/1", "Ethernet0/0"))
        s = sc(err)
        self.assertEqual((s[IP].src, s[IP].dst), ("203.0.113.5", "198.51.100.7"))
        inner = IP(bytes(s[ICMP].payload))
        self.assertEqual((inner.src, inner.dst, inner[UDP].sport, inner[UDP].dport),
                         ("198.51.100.7", "203.0.113.5", 5000, 53))
        assert_checksums(self, err)

    def test_fragments(self):
        from scapy.layers.inet import UDP, fragment
        from cbac.nat import DROP
        from tests.test_nat import frame, sc
        # a non-first fragment whose first was not seen: no binding to use
        orphan = frame(IP(src="198.51.100.9", dst="203.0.113.5", id=9, frag=3, proto=17) /
                       (b"x" * 16))
        self.assertIs(self.nat.inbound(orphan, "Ethernet0/0"), DROP)
        frags = fragment(IP(src="198.51.100.7", dst="203.0.113.5", id=77) /
                         UDP(sport=5000, dport=53) / (b"y" * 64), fragsize=32)
        self.assertGreater(len(frags), 1)
        for f in frags:
            p = frame(f)
            self.assertIsNot(self.nat.inbound(p, "Ethernet0/0"), DROP)
            self.assertEqual((sc(p)[IP].src, sc(p)[IP].dst), ("10.20.0.10", "10.0.0.5"))

    def test_reload_keeps_the_binding(self):
        from tests.test_nat import frame, sc
        from scapy.layers.inet import UDP
        q = frame(IP(src="198.51.100.7", dst="203.0.113.5") / UDP(sport=5000, dport=53) / b"q")
        self.nat.inbound(q, "Ethernet0/0")
        self.nat.update(self.nat.model)
        r = frame(IP(src="10.0.0.5", dst="10.20.0.10") / UDP(sport=53, dport=5000) / b"r")
        self.nat.outbound(r, "Ethernet0/1", "Ethernet0/0")
        self.assertEqual((sc(r)[IP].src, sc(r)[IP].dst), ("203.0.113.5", "198.51.100.7"))
        st = self.nat.show_statistics()
        self.assertIn("-- Outside Source\n[Id: 1] access-list 5 pool OUTP refcount 1\n", st)
        self.assertIn("total addresses 2, allocated 1 (50%), misses 0", st)
