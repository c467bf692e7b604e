"""The router on memory ports: ARP, forwarding, ICMP, routes, malformed input."""

import os
import random
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, UDPerror, raw
from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.config import model as m
from cbac.dataplane.port import MemoryPort
from cbac.dataplane.router import Router
from cbac.dataplane.routes import render_show_ip_route

R_IN = "02:00:0a:0a:0a:01"
R_OUT = "02:00:ac:16:01:10"
H_IN = "02:00:0a:0a:0a:02"
H_OUT = "02:00:ac:16:01:01"


def seed_model(**kw):
    r = m.RouterConfig(hostname="3640-123")
    r.interfaces["Ethernet2/0"] = m.Interface("Ethernet2/0", address=IPv4Interface("172.22.1.16/24"))
    r.interfaces["Ethernet2/1"] = m.Interface("Ethernet2/1", address=IPv4Interface("10.10.10.1/24"))
    r.routes.append(m.Route(IPv4Network("0.0.0.0/0"), next_hop=IPv4Address("172.22.1.1")))
    for k, v in kw.items():
        setattr(r, k, v)
    return r


class RouterTestMixin:
    def make_router(self, model=None):
        self.clock = Clock()
        self.pin = MemoryPort("Ethernet2/1", R_IN)
        self.pout = MemoryPort("Ethernet2/0", R_OUT)
        self.router = Router(model or seed_model(), self.clock,
                             {"Ethernet2/1": self.pin, "Ethernet2/0": self.pout})
        self.router.start()
        self.addCleanup(self.router.stop)
        self.pin.sent.clear()
        self.pout.sent.clear()
        return self.router

    def learn(self, port, mac, ip, router_ip):
        """The host answers the router's ARP request / announces itself."""
        port.inject(bytearray(raw(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") /
                                  ARP(op=1, hwsrc=mac, psrc=ip, pdst=router_ip))))
        port.sent.clear()

    def sent(self, port):
        out = [Ether(f) for f, v in port.sent]
        port.sent.clear()
        return out


class ArpTests(RouterTestMixin, unittest.TestCase):
    def test_answers_arp_for_own_address(self):
        self.make_router()
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") /
                                      ARP(op=1, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.1"))))
        [reply] = self.sent(self.pin)
        self.assertEqual(reply[ARP].op, 2)
        self.assertEqual(reply[ARP].hwsrc, R_IN)
        self.assertEqual(reply[ARP].psrc, "10.10.10.1")
        self.assertEqual(reply.dst, H_IN)

    def test_tagged_arp_request_gets_a_tagged_reply(self):
        self.make_router()
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=42) /
                                      ARP(op=1, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.1"))))
        [reply] = self.sent(self.pin)
        self.assertEqual((reply[Dot1Q].vlan, reply[ARP].op, reply[ARP].psrc), (42, 2, "10.10.10.1"))

    def test_malformed_and_unknown_op_arp_dropped_counted_not_learned(self):
        r = self.make_router()
        for a in (ARP(op=3, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.1"),
                  ARP(op=2, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.1", plen=6)):
            self.pin.inject(bytearray(raw(Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") / a)))
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff", type=0x0806)
                                      / b"\x00\x01\x08\x00")))             # truncated
        self.assertEqual(self.sent(self.pin), [])
        self.assertEqual(r.drops["malformed-arp"], 3)
        self.assertIsNone(r.arp.lookup("Ethernet2/1", int(IPv4Address("10.10.10.2"))))

    def test_ignores_arp_for_other_addresses(self):
        self.make_router()
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") /
                                      ARP(op=1, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.9"))))
        self.assertEqual(self.sent(self.pin), [])

    def test_gratuitous_arp_on_start(self):
        clock = Clock()
        pin, pout = MemoryPort("Ethernet2/1", R_IN), MemoryPort("Ethernet2/0", R_OUT)
        r = Router(seed_model(), clock, {"Ethernet2/1": pin, "Ethernet2/0": pout})
        r.start()
        self.addCleanup(r.stop)
        [g] = [Ether(f) for f, v in pin.sent]
        self.assertEqual((g[ARP].psrc, g[ARP].pdst), ("10.10.10.1", "10.10.10.1"))

    def test_entries_expire_and_are_relearned(self):
        model = seed_model()
        model.interfaces["Ethernet2/0"].arp_timeout = 60
        self.make_router(model)
        self.learn(self.pout, H_OUT, "172.22.1.1", "172.22.1.16")
        self.assertIn("172.22.1.1", self.router.show_arp())
        self.clock.advance(61)
        self.assertNotIn("172.22.1.1 ", self.router.show_arp())
        # The next packet triggers a new request, and the reply re-learns it.
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                      IP(src="10.10.10.2", dst="172.22.1.1") / ICMP())))
        [req] = self.sent(self.pout)
        self.assertEqual((req[ARP].op, req[ARP].pdst), (1, "172.22.1.1"))
        self.pout.inject(bytearray(raw(Ether(src=H_OUT, dst=R_OUT) /
                                       ARP(op=2, hwsrc=H_OUT, psrc="172.22.1.1",
                                           hwdst=R_OUT, pdst="172.22.1.16"))))
        [fwd] = self.sent(self.pout)
        self.assertEqual(fwd[IP].dst, "172.22.1.1")
        self.assertIn("172.22.1.1", self.router.show_arp())

    def test_show_arp_layout(self):
        self.make_router()
        self.learn(self.pin, H_IN, "10.10.10.2", "10.10.10.1")
        text = self.router.show_arp()
        self.assertEqual(text.splitlines()[0],
                         "Protocol  Address          Age (min)  Hardware Addr   Type   Interface")
        self.assertIn("Internet  10.10.10.1              -   0200.0a0a.0a01  ARPA   Ethernet2/1", text)
        self.assertIn("Internet  10.10.10.2              0   0200.0a0a.0a02  ARPA   Ethernet2/1", text)


class ForwardingTests(RouterTestMixin, unittest.TestCase):
    def test_forwards_with_ttl_and_mac_rewrite(self):
        self.make_router()
        self.learn(self.pout, H_OUT, "172.22.1.1", "172.22.1.16")
        p = Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1", ttl=64) / \
            TCP(sport=4000, dport=80, flags="S")
        self.pin.inject(bytearray(raw(p)))
        [f] = self.sent(self.pout)
        self.assertEqual((f.src, f.dst), (R_OUT, H_OUT))
        self.assertEqual(f[IP].ttl, 63)
        chk = f[IP].chksum
        del f[IP].chksum
        self.assertEqual(Ether(raw(f))[IP].chksum, chk)
        self.assertEqual(raw(f[TCP]), raw(p[TCP]))

    def test_unresolved_next_hop_queues_then_drops(self):
        self.make_router()
        for i in range(3):
            self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                          IP(src="10.10.10.2", dst="172.22.1.1") / ICMP(seq=i))))
        reqs = self.sent(self.pout)
        self.assertEqual(len(reqs), 1)          # one request per second
        self.clock.advance(1)
        self.clock.advance(1)
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(len(self.sent(self.pout)), 2)   # retries, then give up
        self.assertEqual(self.router.arp.queued, 0)

    def test_ttl_expired_gives_time_exceeded(self):
        self.make_router()
        self.learn(self.pin, H_IN, "10.10.10.2", "10.10.10.1")
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                      IP(src="10.10.10.2", dst="172.22.1.1", ttl=1) /
                                      UDP(sport=33434, dport=33435))))
        [e] = self.sent(self.pin)
        self.assertEqual((e[IP].src, e[IP].dst), ("10.10.10.1", "10.10.10.2"))
        self.assertEqual((e[ICMP].type, e[ICMP].code), (11, 0))
        self.assertEqual(e[UDPerror].dport, 33435)
        self.assertEqual(self.router.drops["ttl-exceeded"], 1)

    def test_ping_router(self):
        self.make_router()
        self.learn(self.pin, H_IN, "10.10.10.2", "10.10.10.1")
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                      IP(src="10.10.10.2", dst="10.10.10.1") /
                                      ICMP(type=8, id=7, seq=1) / b"abcdef")))
        [r] = self.sent(self.pin)
        self.assertEqual((r[IP].src, r[IP].dst, r[ICMP].type, r[ICMP].id), ("10.10.10.1", "10.10.10.2", 0, 7))
        self.assertEqual(raw(r[ICMP].payload), b"abcdef")
        c = r[ICMP].chksum
        del r[ICMP].chksum
        self.assertEqual(Ether(raw(r))[ICMP].chksum, c)

    def test_no_route_gives_unreachable(self):
        model = seed_model()
        model.routes = []
        self.make_router(model)
        self.learn(self.pin, H_IN, "10.10.10.2", "10.10.10.1")
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                      IP(src="10.10.10.2", dst="8.8.8.8") / UDP())))
        [e] = self.sent(self.pin)
        self.assertEqual((e[ICMP].type, e[ICMP].code), (3, 0))

    def test_df_and_too_big_gives_frag_needed(self):
        model = seed_model()
        model.interfaces["Ethernet2/0"].mtu = 1400
        self.make_router(model)
        self.learn(self.pin, H_IN, "10.10.10.2", "10.10.10.1")
        self.learn(self.pout, H_OUT, "172.22.1.1", "172.22.1.16")
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                      IP(src="10.10.10.2", dst="172.22.1.1", flags="DF") /
                                      UDP() / (b"x" * 1450))))
        [e] = self.sent(self.pin)
        self.assertEqual((e[ICMP].type, e[ICMP].code, e[ICMP].nexthopmtu), (3, 4, 1400))
        self.assertEqual(self.sent(self.pout), [])

    def test_oversize_without_df_is_fragmented(self):
        model = seed_model()
        model.interfaces["Ethernet2/0"].mtu = 1000
        self.make_router(model)
        self.learn(self.pout, H_OUT, "172.22.1.1", "172.22.1.16")
        payload = bytes(range(256)) * 10
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                      IP(src="10.10.10.2", dst="172.22.1.1", id=77) /
                                      UDP(sport=1, dport=2) / payload)))
        frags = self.sent(self.pout)
        self.assertEqual(len(frags), 3)
        self.assertTrue(all(len(f[IP]) <= 1000 and f[IP].ttl == 63 and f[IP].id == 77 for f in frags))
        from scapy.all import defragment
        [whole] = defragment([f[IP] for f in frags])
        self.assertEqual(bytes(whole[UDP].payload), payload)

    def test_show_ip_route(self):
        self.make_router()
        text = render_show_ip_route(self.router.routes)
        self.assertIn("Gateway of last resort is 172.22.1.1 to network 0.0.0.0", text)
        self.assertIn("C       10.10.10.0 is directly connected, Ethernet2/1", text)
        self.assertIn("S*   0.0.0.0/0 [1/0] via 172.22.1.1", text)


class MalformedTests(RouterTestMixin, unittest.TestCase):
    def test_truncated_and_bad_frames_are_counted(self):
        self.make_router()
        good = raw(Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") /
                   TCP(sport=1, dport=2) / b"payload")
        for n in range(len(good)):
            self.pin.inject(bytearray(good[:n]))
        self.assertEqual(self.router.drops["internal-error"], 0)
        self.assertGreater(sum(v for k, v in self.router.drops.items() if k.startswith("malformed")), 0)
        self.assertEqual(self.sent(self.pout), [])

    def test_random_frames_never_crash_or_forward(self):
        self.make_router()
        rnd = random.Random(1234)
        for _ in range(3000):
            n = rnd.randrange(0, 120)
            f = bytearray(os.urandom(n)) if rnd.random() < 0.5 else bytearray(
                bytes.fromhex("02000a0a0a01") + os.urandom(6) + b"\x08\x00" + os.urandom(max(0, n - 14)))
            self.pin.inject(f)
        self.assertEqual(self.router.drops["internal-error"], 0)
        # Whatever random bytes did, nothing reached the outside except ARP.
        for f in self.sent(self.pout):
            self.assertEqual(f.type, 0x0806)


class LocalServiceTests(RouterTestMixin, unittest.TestCase):
    def test_closed_tcp_port_gets_reset(self):
        self.make_router()
        self.learn(self.pin, H_IN, "10.10.10.2", "10.10.10.1")
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                      IP(src="10.10.10.2", dst="10.10.10.1") /
                                      TCP(sport=5555, dport=23, flags="S", seq=1000))))
        [r] = self.sent(self.pin)
        self.assertEqual((r[TCP].sport, r[TCP].dport, str(r[TCP].flags), r[TCP].ack), (23, 5555, "RA", 1001))
        c = r[TCP].chksum
        del r[TCP].chksum
        self.assertEqual(Ether(raw(r))[TCP].chksum, c)

    def test_console_port_is_handed_to_the_local_service(self):
        self.make_router()
        got = []
        self.router.local_services[(6, 2222)] = got.append
        p = IP(src="10.10.10.2", dst="10.10.10.1") / TCP(sport=5555, dport=2222, flags="S")
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) / p)))
        self.assertEqual(got, [raw(p)])
        # and what the local stack answers goes out through the data plane
        self.learn(self.pin, H_IN, "10.10.10.2", "10.10.10.1")
        self.router.send_local(raw(IP(src="10.10.10.1", dst="10.10.10.2") / TCP(sport=2222, dport=5555, flags="SA")))
        [r] = self.sent(self.pin)
        self.assertEqual((r.dst, r[TCP].flags), (H_IN, "SA"))
