"""``ip address dhcp``: the DHCP client state machine (RFC 2131) driven by
a Clock, and the appliance using a lease on memory ports (address, routes,
PAT, show output, the input ACL).  The real server is in
tests/test_lab_dhcp.py."""

import struct

from scapy.all import ICMP, IP, UDP, Ether, raw
from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.config.parser import parse_config
from cbac.dataplane import dhcp as d
from cbac.dataplane.dhcp import DhcpClient, Message, ip_text
from cbac.dataplane.port import MemoryPort
from tests.test_link import ios_messages

MAC = bytes.fromhex("0200ac160110")
SERVER = 0xAC160101          # 172.22.1.1
OFFERED = 0xAC160164         # 172.22.1.100
MASK = 0xFFFFFF00


def reply(req, mtype, yiaddr=OFFERED, server=SERVER, lease=600, extra=None, xid=None, chaddr=None):
    opts = {d.OPT_MESSAGE_TYPE: bytes((mtype,)), d.OPT_SERVER_ID: server.to_bytes(4, "big")}
    if mtype != d.NAK:
        opts.update({d.OPT_SUBNET_MASK: MASK.to_bytes(4, "big"),
                     d.OPT_ROUTER: SERVER.to_bytes(4, "big"),
                     d.OPT_LEASE_TIME: struct.pack("!I", lease)})
    opts.update(extra or {})
    return Message(d.BOOTREPLY, req.xid if xid is None else xid, chaddr or req.chaddr,
                   yiaddr=yiaddr if mtype != d.NAK else 0, options=opts).encode()


class ClientHarness:
    def __init__(self, testcase):
        self.clock = Clock()
        self.sent = []              # (Message, src, dst)
        self.leases = []
        self.client = DhcpClient(MAC, self.clock, self.transmit, self.leases.append,
                                 ifname="Ethernet2/0", hostname="3640-123")

    def transmit(self, payload, src, dst):
        self.sent.append((Message.decode(payload), src, dst))

    def last(self):
        return self.sent[-1]

    def bind(self, lease=600, extra=None):
        self.client.start()
        disc = self.last()[0]
        self.client.receive(reply(disc, d.OFFER, lease=lease, extra=extra))
        req = self.last()[0]
        self.client.receive(reply(req, d.ACK, lease=lease, extra=extra))
        return self.client.lease


class DhcpClientTests(unittest.TestCase):
    def setUp(self):
        self.h = ClientHarness(self)
        self.c = self.h.client

    def test_discover_offer_request_ack(self):
        self.c.start()
        disc, src, dst = self.h.last()
        self.assertEqual((disc.type, src, dst), (d.DISCOVER, 0, d.BROADCAST))
        self.assertEqual(disc.chaddr, MAC)
        self.assertEqual(disc.options[d.OPT_CLIENT_ID], b"\0cisco-0200.ac16.0110-Et2/0")
        self.assertEqual(disc.options[d.OPT_HOSTNAME], b"3640-123")
        self.assertTrue(self.c.receive(reply(disc, d.OFFER)))
        req, src, dst = self.h.last()
        self.assertEqual((req.type, src, dst, req.xid, req.ciaddr), (d.REQUEST, 0, d.BROADCAST, disc.xid, 0))
        self.assertEqual(req.ip_option(d.OPT_REQUESTED_IP), OFFERED)
        self.assertEqual(req.ip_option(d.OPT_SERVER_ID), SERVER)
        self.assertEqual(self.h.leases, [])
        self.assertTrue(self.c.receive(reply(req, d.ACK)))
        [lease] = self.h.leases
        self.assertEqual((lease.address, lease.mask, lease.router, lease.server, lease.prefixlen),
                         (OFFERED, MASK, SERVER, SERVER, 24))
        self.assertEqual((lease.lease_time, lease.t1, lease.t2), (600, 300, 525))
        self.assertEqual(self.c.state, d.BOUND)

    def test_discover_retransmitted_with_backoff(self):
        self.c.start()
        times = []
        for _ in range(5):
            n = len(self.h.sent)
            while len(self.h.sent) == n:
                self.h.clock.advance(0.25)
            times.append(self.h.clock.seconds())
        gaps = [b - a for a, b in zip([0.0] + times, times)]
        for gap, want in zip(gaps, (4, 8, 16, 32, 64)):
            self.assertTrue(want - 1.25 <= gap <= want + 1.25, gaps)
        self.assertTrue(all(m.type == d.DISCOVER for m, _, _ in self.h.sent))
        self.assertEqual(len({m.xid for m, _, _ in self.h.sent}), 1)

    def test_renew_at_t1_is_unicast_to_the_server(self):
        self.h.bind()
        n = len(self.h.sent)
        self.h.clock.advance(299)
        self.assertEqual(len(self.h.sent), n)
        self.h.clock.advance(1)
        req, src, dst = self.h.last()
        self.assertEqual((req.type, src, dst, req.ciaddr), (d.REQUEST, OFFERED, SERVER, OFFERED))
        self.assertNotIn(d.OPT_SERVER_ID, req.options)
        self.assertNotIn(d.OPT_REQUESTED_IP, req.options)
        self.assertEqual(self.c.state, d.RENEWING)
        self.c.receive(reply(req, d.ACK))
        self.assertEqual(self.c.state, d.BOUND)
        self.assertEqual(len(self.h.leases), 2)           # renewed, same address
        self.assertEqual(self.c.lease.obtained, 300)
        self.h.clock.advance(300)                         # next T1 counts from the renewal
        self.assertEqual(self.c.state, d.RENEWING)

    def test_rebind_at_t2_then_expiry_removes_the_address(self):
        self.h.bind()
        self.h.clock.advance(300)
        self.assertEqual(self.c.state, d.RENEWING)
        self.h.clock.advance(225)                         # T2 = 525
        req, src, dst = self.h.last()
        self.assertEqual((self.c.state, req.type, src, dst), (d.REBINDING, d.REQUEST, OFFERED, d.BROADCAST))
        self.assertEqual(self.h.leases[-1].address, OFFERED)
        self.h.clock.advance(74.5)
        self.assertIsNotNone(self.c.lease)
        self.h.clock.advance(0.5)                         # 600: the lease is over
        self.assertIsNone(self.h.leases[-1])
        self.assertIsNone(self.c.lease)
        self.assertEqual(self.c.state, d.SELECTING)
        self.assertEqual(self.h.last()[0].type, d.DISCOVER)

    def test_nak_while_renewing_starts_over(self):
        self.h.bind()
        self.h.clock.advance(300)
        req = self.h.last()[0]
        self.c.receive(reply(req, d.NAK))
        self.assertIsNone(self.h.leases[-1])
        self.assertEqual(self.c.state, d.SELECTING)
        disc = self.h.last()[0]
        self.assertEqual(disc.type, d.DISCOVER)
        self.assertNotEqual(disc.xid, req.xid)

    def test_request_unanswered_goes_back_to_discover(self):
        self.c.start()
        self.c.receive(reply(self.h.last()[0], d.OFFER))
        self.h.clock.pump([1.0] * 200)
        types = [m.type for m, _, _ in self.h.sent[2:]]
        self.assertEqual(types[:3], [d.REQUEST] * 3)      # 4 REQUESTs in all, then start over
        self.assertEqual(types[3], d.DISCOVER)
        self.assertEqual(self.h.leases, [])

    def test_options_t1_t2_honoured_and_bad_ones_replaced(self):
        lease = self.h.bind(extra={d.OPT_T1: struct.pack("!I", 10), d.OPT_T2: struct.pack("!I", 20)})
        self.assertEqual((lease.t1, lease.t2), (10, 20))
        h = ClientHarness(self)
        lease = h.bind(extra={d.OPT_T1: struct.pack("!I", 900), d.OPT_T2: struct.pack("!I", 0)})
        self.assertEqual((lease.t1, lease.t2), (300, 525))

    def test_what_is_not_for_us_is_ignored(self):
        self.c.start()
        disc = self.h.last()[0]
        for bad in (reply(disc, d.OFFER, xid=disc.xid ^ 1),
                    reply(disc, d.OFFER, chaddr=b"\x02\0\0\0\0\x09"),
                    reply(disc, d.OFFER, yiaddr=0),
                    reply(disc, d.OFFER, yiaddr=0xFFFFFFFF),
                    reply(disc, d.OFFER, yiaddr=0x7F000001),
                    reply(disc, d.ACK),                      # an ACK while selecting
                    b"", b"\x02" * 300, reply(disc, d.OFFER)[:240]):
            self.assertFalse(self.c.receive(bad))
        self.assertEqual(self.c.state, d.SELECTING)
        self.c.receive(reply(disc, d.OFFER))
        req = self.h.last()[0]
        # an ACK from a server we did not choose, a mask that is no mask
        self.assertFalse(self.c.receive(reply(req, d.ACK, server=SERVER + 1)))
        self.assertFalse(self.c.receive(reply(req, d.ACK, extra={d.OPT_SUBNET_MASK: b"\xff\x00\xff\x00"})))
        self.assertFalse(self.c.receive(reply(req, d.ACK, lease=0)))
        self.assertEqual(self.h.leases, [])
        self.assertTrue(self.c.receive(reply(req, d.ACK)))

    def test_gateway_off_the_subnet_is_not_used(self):
        lease = self.h.bind(extra={d.OPT_ROUTER: bytes((192, 0, 2, 1))})
        self.assertIsNone(lease.router)

    def test_codec_round_trip_and_overrun(self):
        m = Message(d.BOOTREQUEST, 0x1234, MAC, ciaddr=OFFERED,
                    options={d.OPT_MESSAGE_TYPE: b"\x03", d.OPT_HOSTNAME: b"x" * 300})
        data = m.encode()
        back = Message.decode(data)
        self.assertEqual((back.xid, back.chaddr, back.ciaddr, back.type), (0x1234, MAC, OFFERED, 3))
        self.assertEqual(back.options[d.OPT_HOSTNAME], b"x" * 300)      # split and joined
        bad = bytearray(data)
        bad[240:243] = bytes((53, 200, 3))
        with self.assertRaises(d.DhcpError):
            Message.decode(bytes(bad[:260]))


CONFIG = """\
hostname 3640-123
interface Ethernet2/0
 ip address dhcp
 ip nat outside
 ip access-group 101 in
interface Ethernet2/1
 ip address 10.10.10.1 255.255.255.0
 ip nat inside
access-list 1 permit 10.10.10.0 0.0.0.255
access-list 101 permit icmp any any
%s
ip nat inside source list 1 interface Ethernet2/0 overload
"""
PERMIT_DHCP = "access-list 101 permit udp any eq bootps any eq bootpc"


class ApplianceDhcpTests(unittest.TestCase):
    def make(self, extra=PERMIT_DHCP):
        from cbac.app import Appliance
        model, diags = parse_config(CONFIG % extra, "test.conf")
        self.assertEqual([x for x in diags if x.severity == "error"], [])
        self.clock = Clock()
        self.pout = MemoryPort("Ethernet2/0", "02:00:ac:16:01:10")
        self.pin = MemoryPort("Ethernet2/1", "02:00:0a:0a:0a:01")
        self.app = Appliance(model, self.clock, {"Ethernet2/0": self.pout, "Ethernet2/1": self.pin})
        self.logs = ios_messages(self)
        self.app.router.start()
        self.addCleanup(self.app.router.stop)

    def server_reply(self, mtype, to_frame):
        req = Message.decode(bytes(Ether(to_frame)[UDP].payload))
        payload = reply(req, mtype)
        f = (Ether(src="02:00:ac:16:01:01", dst="ff:ff:ff:ff:ff:ff")
             / IP(src="172.22.1.1", dst="255.255.255.255") / UDP(sport=67, dport=68) / payload)
        self.pout.inject(bytearray(raw(f)))

    def dhcp_frames(self):
        out = [f for f, _ in self.pout.sent if Ether(f).haslayer(UDP) and Ether(f)[UDP].dport == 67]
        self.pout.sent.clear()
        return out

    def bind(self):
        [disc] = self.dhcp_frames()
        e = Ether(disc)
        self.assertEqual((e.dst, e[IP].src, e[IP].dst, e[UDP].sport), ("ff:ff:ff:ff:ff:ff", "0.0.0.0",
                                                                       "255.255.255.255", 68))
        self.server_reply(d.OFFER, disc)
        [req] = self.dhcp_frames()
        self.server_reply(d.ACK, req)
        self.clock.advance(d.PROBE_WAIT)            # nobody answers the ARP probe

    def test_lease_gives_address_routes_and_pat(self):
        self.make()
        brief = self.app.show_ip_interface_brief()
        self.assertRegex(brief, r"(?m)^Ethernet2/0\s+unassigned\s+YES DHCP")
        self.assertIn("  Internet address will be negotiated using DHCP", self.app.show_interfaces("Ethernet2/0"))
        self.bind()
        self.assertIn("%DHCP-6-ADDRESS_ASSIGN: Interface Ethernet2/0 assigned DHCP address 172.22.1.100,"
                      " mask 255.255.255.0, hostname 3640-123", self.logs)
        self.assertRegex(self.app.show_ip_interface_brief(),
                         r"(?m)^Ethernet2/0\s+172\.22\.1\.100\s+YES DHCP\s+up\s+up$")
        self.assertIn("Internet address is 172.22.1.100/24", self.app.show_interfaces("Ethernet2/0"))
        route = self.app.show_ip_route()
        self.assertIn("Gateway of last resort is 172.22.1.1 to network 0.0.0.0", route)
        self.assertIn("S*   0.0.0.0/0 [254/0] via 172.22.1.1, Ethernet2/0", route)
        self.assertIn("C       172.22.1.0 is directly connected, Ethernet2/0", route)
        lease = self.app.show_dhcp_lease()
        self.assertIn("Temp IP addr: 172.22.1.100  for peer on Interface: Ethernet2/0", lease)
        self.assertIn("Temp  sub net mask: 255.255.255.0", lease)
        self.assertIn("   DHCP Lease server: 172.22.1.1, state: 5 Bound", lease)
        self.assertIn("   Lease: 600 secs,  Renewal: 300 secs,  Rebind: 525 secs", lease)
        self.assertIn("Temp default-gateway addr: 172.22.1.1", lease)
        self.assertIn("   Next timer fires after: 00:04:59", lease)     # T1 from the ACK, 1 s of probing
        self.assertIn("Client-ID: cisco-0200.ac16.0110-Et2/0", lease)
        self.assertIn("   Hostname: 3640-123", lease)
        # PAT to the leased address; the gateway answers our ARP first
        self.pout.sent.clear()
        ping = Ether(src="02:00:0a:0a:0a:02", dst="02:00:0a:0a:0a:01") / IP(
            src="10.10.10.2", dst="198.51.100.7") / ICMP(id=77)
        self.pin.inject(bytearray(raw(ping)))
        [arp] = [Ether(f) for f, _ in self.pout.sent]
        self.assertEqual((arp.pdst, arp.psrc), ("172.22.1.1", "172.22.1.100"))
        self.pout.sent.clear()
        self.pout.inject(bytearray(raw(Ether(src="02:00:ac:16:01:01", dst="02:00:ac:16:01:10") /
                                       __import__("scapy.all").all.ARP(
                                           op=2, hwsrc="02:00:ac:16:01:01", psrc="172.22.1.1",
                                           hwdst="02:00:ac:16:01:10", pdst="172.22.1.100"))))
        [out] = [Ether(f) for f, _ in self.pout.sent]
        self.assertEqual((out[IP].src, out[IP].dst, out.dst), ("172.22.1.100", "198.51.100.7",
                                                               "02:00:ac:16:01:01"))

    def test_address_in_use_is_declined(self):
        """RFC 2131 4.4.1: the client probes the address with ARP; another
        station answering for it makes it DECLINE and start over."""
        from scapy.all import ARP
        self.make()
        [disc] = self.dhcp_frames()
        self.server_reply(d.OFFER, disc)
        [req] = self.dhcp_frames()
        self.server_reply(d.ACK, req)
        [probe] = [Ether(f) for f, _ in self.pout.sent]
        self.pout.sent.clear()
        self.assertEqual((probe[ARP].op, probe[ARP].psrc, probe[ARP].pdst), (1, "0.0.0.0", "172.22.1.100"))
        self.pout.inject(bytearray(raw(Ether(src="02:00:ac:16:01:99", dst="02:00:ac:16:01:10") / ARP(
            op=2, hwsrc="02:00:ac:16:01:99", psrc="172.22.1.100", hwdst="02:00:ac:16:01:10",
            pdst="0.0.0.0"))))
        [decline] = self.dhcp_frames()
        m = Message.decode(bytes(Ether(decline)[UDP].payload))
        self.assertEqual((m.type, m.ip_option(d.OPT_REQUESTED_IP)), (d.DECLINE, 0xAC160164))
        self.clock.advance(5)
        self.assertRegex(self.app.show_ip_interface_brief(), r"(?m)^Ethernet2/0\s+unassigned\s+YES DHCP")
        self.assertEqual(self.dhcp_frames(), [])
        self.clock.advance(5)                            # DECLINE_WAIT: discovery again
        [again] = self.dhcp_frames()
        self.assertEqual(Message.decode(bytes(Ether(again)[UDP].payload)).type, d.DISCOVER)

    def test_no_lease_no_pat(self):
        self.make()
        ping = Ether(src="02:00:0a:0a:0a:02", dst="02:00:0a:0a:0a:01") / IP(
            src="10.10.10.2", dst="198.51.100.7") / ICMP(id=77)
        self.dhcp_frames()
        self.pin.inject(bytearray(raw(ping)))
        self.assertEqual([f for f, _ in self.pout.sent if Ether(f).haslayer(ICMP)], [])

    def test_input_acl_applies_to_the_servers_replies(self):
        self.make(extra="")
        [disc] = self.dhcp_frames()
        self.server_reply(d.OFFER, disc)
        self.assertEqual(self.dhcp_frames(), [])        # the OFFER was refused: no REQUEST
        self.assertGreater(self.app.router.interfaces["Ethernet2/0"].drops["acl-in"], 0)

    def test_replies_are_never_forwarded(self):
        """A server reply unicast to an inside address is the client's, not routed."""
        self.make()
        [disc] = self.dhcp_frames()
        req = Message.decode(bytes(Ether(disc)[UDP].payload))
        f = (Ether(src="02:00:ac:16:01:01", dst="02:00:ac:16:01:10")
             / IP(src="172.22.1.1", dst="10.10.10.2") / UDP(sport=67, dport=68) / reply(req, d.OFFER))
        self.pin.sent.clear()
        self.pout.inject(bytearray(raw(f)))
        self.assertEqual(self.pin.sent, [])

    def test_expiry_removes_address_and_routes(self):
        self.make()
        self.bind()
        self.clock.pump([1.0] * 601)
        self.assertRegex(self.app.show_ip_interface_brief(), r"(?m)^Ethernet2/0\s+unassigned\s+YES DHCP")
        self.assertIn("Gateway of last resort is not set", self.app.show_ip_route())
        self.assertNotIn(0xAC160164, self.app.router.local)

    def test_reload_to_static_and_back_and_shutdown(self):
        self.make()
        self.bind()
        static, _ = parse_config((CONFIG % PERMIT_DHCP).replace(
            " ip address dhcp\n", " ip address 172.22.1.16 255.255.255.0\n"), "t")
        self.app.apply(static)
        self.assertRegex(self.app.show_ip_interface_brief(),
                         r"(?m)^Ethernet2/0\s+172\.22\.1\.16\s+YES manual")
        self.assertEqual(self.app.router.dhcp, {})
        self.assertEqual(self.app.show_dhcp_lease(), "")
        self.clock.advance(400)                        # the old client's timers are gone
        self.assertEqual(self.dhcp_frames(), [])
        dhcp, _ = parse_config(CONFIG % PERMIT_DHCP, "t")
        self.app.apply(dhcp)
        self.bind()                                    # a new client, a new lease
        self.assertRegex(self.app.show_ip_interface_brief(),
                         r"(?m)^Ethernet2/0\s+172\.22\.1\.100\s+YES DHCP")
        shut, _ = parse_config((CONFIG % PERMIT_DHCP).replace(" ip address dhcp\n",
                                                                " ip address dhcp\n shutdown\n"), "t")
        self.app.apply(shut)
        self.assertRegex(self.app.show_ip_interface_brief(),
                         r"(?m)^Ethernet2/0\s+unassigned\s+YES DHCP\s+administratively down")
        self.clock.advance(400)
        self.assertEqual(self.dhcp_frames(), [])
        self.app.apply(dhcp)                           # no shutdown: discovery again
        self.bind()
        self.assertRegex(self.app.show_ip_interface_brief(),
                         r"(?m)^Ethernet2/0\s+172\.22\.1\.100\s+YES DHCP\s+up")

    def test_static_default_route_wins(self):
        from cbac.app import Appliance
        model, _ = parse_config(CONFIG % PERMIT_DHCP + "ip route 0.0.0.0 0.0.0.0 172.22.1.5\n", "t")
        self.clock = Clock()
        self.pout = MemoryPort("Ethernet2/0", "02:00:ac:16:01:10")
        self.pin = MemoryPort("Ethernet2/1", "02:00:0a:0a:0a:01")
        self.app = Appliance(model, self.clock, {"Ethernet2/0": self.pout, "Ethernet2/1": self.pin})
        self.app.router.start()
        self.addCleanup(self.app.router.stop)
        self.bind()
        self.assertIn("Gateway of last resort is 172.22.1.5", self.app.show_ip_route())

    def test_config_round_trip(self):
        from cbac.config.render import render
        model, _ = parse_config(CONFIG % PERMIT_DHCP, "t")
        self.assertTrue(model.interfaces["Ethernet2/0"].dhcp)
        self.assertIn("interface Ethernet2/0\n ip address dhcp\n", render(model))
        model, _ = parse_config("interface Ethernet2/0\n ip address dhcp hostname branch-7\n", "t")
        self.assertEqual(model.interfaces["Ethernet2/0"].dhcp_hostname, "branch-7")
        self.assertIn(" ip address dhcp hostname branch-7\n", render(model))
        model, diags = parse_config("interface Ethernet2/0\n ip address dhcp bogus\n", "t")
        self.assertTrue([x for x in diags if x.severity == "error"])
        model, diags = parse_config("interface Ethernet2/0\n ip address negotiated\n", "t")
        self.assertIn("PPP", str([x for x in diags if x.severity == "error"]))

    def test_ip_text(self):
        self.assertEqual(ip_text(OFFERED), "172.22.1.100")
