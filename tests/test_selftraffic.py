"""``ip inspect name X tcp|udp|icmp router-traffic``: the router's own
flows (syslog over TCP/UDP, the DHCP client) get their return traffic
through the outside input ACL, exactly that flow and only while it lives;
without ``router-traffic`` the ACL refuses it (as IOS)."""

from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, raw
from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.config.parser import parse_config
from cbac.config.render import render
from cbac.dataplane import dhcp as d
from cbac.dataplane import selftraffic
from cbac.dataplane.port import MemoryPort
from tests import test_dhcp as td

R_OUT = "02:00:ac:16:01:10"
H_OUT = "02:00:ac:16:01:32"

BASE = """\
hostname r
interface Ethernet2/0
 ip address 172.22.1.16 255.255.255.0
 ip access-group 101 in
 ip inspect SELF %s
interface Ethernet2/1
 ip address 10.10.10.1 255.255.255.0
access-list 101 permit icmp any any
%s
"""
WITH = "ip inspect name SELF tcp router-traffic\nip inspect name SELF udp router-traffic"
WITHOUT = "ip inspect name SELF tcp\nip inspect name SELF udp"


class RouterTrafficTests(unittest.TestCase):
    def make(self, rules=WITH, direction="out"):
        from cbac.app import Appliance
        model, diags = parse_config(BASE % (direction, rules), "t.conf")
        self.assertEqual([x for x in diags if x.severity == "error"], [])
        self.clock = Clock()
        self.pout = MemoryPort("Ethernet2/0", R_OUT)
        self.pin = MemoryPort("Ethernet2/1", "02:00:0a:0a:0a:01")
        self.app = Appliance(model, self.clock, {"Ethernet2/0": self.pout, "Ethernet2/1": self.pin})
        self.router = self.app.router
        self.router.start()
        self.addCleanup(self.router.stop)
        # the collector 172.22.1.50 is known
        self.pout.inject(bytearray(raw(Ether(src=H_OUT, dst="ff:ff:ff:ff:ff:ff") /
                                       ARP(op=1, hwsrc=H_OUT, psrc="172.22.1.50", pdst="172.22.1.16"))))
        self.pout.sent.clear()
        self.got = []
        for port in (40000, 40001):
            self.router.local_services[(6, port)] = self.got.append
        self.router.local_services[(17, 40002)] = self.got.append

    def send_syn(self, sport=40000):
        self.router.send_local(raw(IP(src="172.22.1.16", dst="172.22.1.50") /
                                   TCP(sport=sport, dport=6514, flags="S", seq=1)))
        [syn] = [Ether(f) for f, _ in self.pout.sent]
        self.pout.sent.clear()
        self.assertEqual((syn[IP].dst, syn[TCP].dport), ("172.22.1.50", 6514))

    def answer(self, src="172.22.1.50", sport=6514, dport=40000, proto="tcp", dst="172.22.1.16"):
        l4 = TCP(sport=sport, dport=dport, flags="SA", seq=100, ack=2) if proto == "tcp" \
            else UDP(sport=sport, dport=dport) / b"reply"
        self.pout.inject(bytearray(raw(Ether(src=H_OUT, dst=R_OUT) / IP(src=src, dst=dst) / l4)))

    def acl_drops(self):
        return self.router.interfaces["Ethernet2/0"].drops["acl-in"]

    def test_return_traffic_of_the_routers_own_flow_passes_the_acl(self):
        self.make()
        self.send_syn()
        self.answer()
        self.assertEqual(len(self.got), 1)
        self.assertEqual(self.acl_drops(), 0)

    def test_only_that_flow(self):
        self.make()
        self.send_syn()
        self.answer(sport=6515)                 # another port of the collector
        self.answer(src="172.22.1.51")          # another host
        self.answer(dport=40001)                # another local port
        self.pin.sent.clear()
        self.answer(dst="10.10.10.2")           # the same ports to a host behind the router
        self.assertEqual(self.pin.sent, [])
        self.assertEqual(self.got, [])
        self.assertEqual(self.acl_drops(), 4)

    def test_without_router_traffic_the_acl_refuses_it(self):
        self.make(rules=WITHOUT)
        self.send_syn()
        self.answer()
        self.assertEqual(self.got, [])
        self.assertEqual(self.acl_drops(), 1)

    def test_rule_applied_in_does_not_inspect_router_traffic(self):
        self.make(direction="in")
        self.send_syn()
        self.answer()
        self.assertEqual(self.got, [])

    def test_udp_session_expires_after_the_idle_time(self):
        self.make()
        self.router.send_local(raw(IP(src="172.22.1.16", dst="172.22.1.50") /
                                   UDP(sport=40002, dport=514) / b"<190>hello"))
        self.answer(sport=514, dport=40002, proto="udp")
        self.assertEqual(len(self.got), 1)
        self.clock.pump([1.0] * 31)               # ip inspect udp idle-time 30
        self.answer(sport=514, dport=40002, proto="udp")
        self.assertEqual(len(self.got), 1)
        self.assertEqual(self.acl_drops(), 1)

    def test_table_is_bounded(self):
        self.patch(selftraffic, "MAX_ENTRIES", 2)
        self.make()
        for sport in (40000, 40001, 40003):
            self.router.send_local(raw(IP(src="172.22.1.16", dst="172.22.1.50") /
                                       TCP(sport=sport, dport=6514, flags="S")))
        self.assertEqual(self.router.router_traffic.refused, 1)
        self.answer(dport=40001)
        self.assertEqual(len(self.got), 1)

    def test_echo_reply_to_the_routers_ping(self):
        self.make(rules="ip inspect name SELF icmp router-traffic")
        self.router.local_services[(1, 0)] = self.got.append
        self.router.send_local(raw(IP(src="172.22.1.16", dst="172.22.1.50") / ICMP(type=8, id=9)))
        self.assertEqual(len(self.router.router_traffic.entries), 1)
        pkt = Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.50", dst="172.22.1.16") / ICMP(type=0, id=9)
        from cbac.packet.view import parse_frame
        p = parse_frame(bytearray(raw(pkt)))
        self.assertTrue(self.router.router_traffic.permits_return(self.router.interfaces["Ethernet2/0"], p))
        other = Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.50", dst="172.22.1.16") / ICMP(type=0, id=10)
        self.assertFalse(self.router.router_traffic.permits_return(
            self.router.interfaces["Ethernet2/0"], parse_frame(bytearray(raw(other)))))

    def test_config_round_trip(self):
        model, _ = parse_config(BASE % ("out", WITH), "t")
        self.assertIn("ip inspect name SELF tcp router-traffic", render(model))
        model, diags = parse_config("ip inspect name X ftp router-traffic\n", "t")
        self.assertTrue([x for x in diags if x.severity == "error"])


class DhcpRouterTrafficTests(unittest.TestCase):
    """The DHCP client's exchange inspected: the server's replies pass an
    outside ACL that has no bootps permit."""

    def test_dhcp_through_router_traffic(self):
        from cbac.app import Appliance
        text = td.CONFIG % "ip inspect name SELF udp router-traffic"
        text = text.replace(" ip access-group 101 in\n", " ip access-group 101 in\n ip inspect SELF out\n")
        model, diags = parse_config(text, "t")
        self.assertEqual([x for x in diags if x.severity == "error"], [])
        self.clock = Clock()
        self.pout = MemoryPort("Ethernet2/0", "02:00:ac:16:01:10")
        self.pin = MemoryPort("Ethernet2/1", "02:00:0a:0a:0a:01")
        self.app = Appliance(model, self.clock, {"Ethernet2/0": self.pout, "Ethernet2/1": self.pin})
        self.app.router.start()
        self.addCleanup(self.app.router.stop)
        self.bind()
        self.assertEqual(self.app.router.dhcp["Ethernet2/0"].client.state, d.BOUND)
        self.assertEqual(self.app.router.interfaces["Ethernet2/0"].drops["acl-in"], 0)

    server_reply = td.ApplianceDhcpTests.server_reply
    dhcp_frames = td.ApplianceDhcpTests.dhcp_frames
    bind = td.ApplianceDhcpTests.bind
