"""Ports that go down and come back (issue 17, finding 1), on memory ports:
IOS log lines, ``show interfaces`` / ``show ip interface brief``, ARP and
cached routes forgotten, gratuitous ARP on up; and the netlink parser."""

import struct

from scapy.all import ARP, ICMP, IP, Ether, raw
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from cbac.dataplane.netlink import RTM_DELLINK, RTM_NEWLINK, parse_link_messages
from cbac.dataplane.show import show_interfaces, show_ip_interface_brief
from tests.test_router import H_IN, H_OUT, R_IN, R_OUT, RouterTestMixin


def ios_messages(testcase):
    seen = []

    def observer(event):
        if "ios_message" in event:
            seen.append(event["ios_message"])

    globalLogPublisher.addObserver(observer)
    testcase.addCleanup(globalLogPublisher.removeObserver, observer)
    return seen


def newlink(index, name, flags, mtype=RTM_NEWLINK):
    attr_name = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(attr_name), 3) + attr_name
    attr += b"\0" * ((4 - len(attr) % 4) % 4)
    mtu = struct.pack("=HHI", 8, 4, 1500)
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0xFFFFFFFF) + mtu + attr
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body


class NetlinkParseTests(unittest.TestCase):
    def test_two_messages_in_one_datagram(self):
        data = newlink(5, "inside", 0x11043) + newlink(6, "outside", 0x1002, RTM_DELLINK)
        self.assertEqual(parse_link_messages(data), [
            (RTM_NEWLINK, 5, "inside", 0x11043),
            (RTM_DELLINK, 6, "outside", 0x1002),
        ])

    def test_truncated_and_garbage_input_never_raises(self):
        data = newlink(5, "inside", 0x11043)
        for n in range(len(data)):
            parse_link_messages(data[:n])
        self.assertEqual(parse_link_messages(b"\xff" * 64), [])
        bad = bytearray(data)
        bad[32:34] = b"\xff\xff"        # an attribute longer than the message
        self.assertEqual(parse_link_messages(bytes(bad)), [(RTM_NEWLINK, 5, None, 0x11043)])


class LinkFlapTests(RouterTestMixin, unittest.TestCase):
    def setUp(self):
        self.logs = ios_messages(self)
        self.make_router()
        self.learn(self.pin, H_IN, "10.10.10.2", "10.10.10.1")
        self.learn(self.pout, H_OUT, "172.22.1.1", "172.22.1.16")
        del self.logs[:]

    def ping_out(self):
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) /
                                      IP(src="10.10.10.2", dst="172.22.1.1") / ICMP())))

    def test_down_is_logged_and_shown(self):
        self.pin.set_link(False)
        self.assertEqual(self.logs, [
            "%LINK-3-UPDOWN: Interface Ethernet2/1, changed state to down",
            "%LINEPROTO-5-UPDOWN: Line protocol on Interface Ethernet2/1, changed state to down",
        ])
        text = show_interfaces(self.router, "Ethernet2/1")
        self.assertTrue(text.startswith("Ethernet2/1 is down, line protocol is down"), text)
        brief = show_ip_interface_brief(self.router).splitlines()
        self.assertRegex(brief[1] if "2/1" in brief[1] else brief[2],
                         r"^Ethernet2/1\s+10\.10\.10\.1\s+YES manual down\s+down$")
        self.assertIn("Ethernet2/0 is up, line protocol is up", show_interfaces(self.router))

    def test_up_again_is_logged_shown_and_announced(self):
        self.pout.set_link(False)
        self.pout.sent.clear()
        self.pout.set_link(True)
        self.assertEqual(self.logs[2:], [
            "%LINK-3-UPDOWN: Interface Ethernet2/0, changed state to up",
            "%LINEPROTO-5-UPDOWN: Line protocol on Interface Ethernet2/0, changed state to up",
        ])
        self.assertIn("Ethernet2/0 is up, line protocol is up", show_interfaces(self.router))
        [garp] = self.sent(self.pout)
        self.assertEqual(garp.dst, "ff:ff:ff:ff:ff:ff")
        self.assertEqual((garp[ARP].psrc, garp[ARP].pdst, garp[ARP].hwsrc),
                         ("172.22.1.16", "172.22.1.16", R_OUT))

    def test_traffic_while_down_is_dropped_and_resumes_after_up(self):
        self.ping_out()
        self.assertEqual(len(self.sent(self.pout)), 1)
        self.pout.set_link(False)
        self.ping_out()
        self.assertEqual(self.sent(self.pout), [])
        self.pout.set_link(True)
        self.pout.sent.clear()
        # the neighbour was forgotten: the next packet resolves it again
        self.ping_out()
        [req] = self.sent(self.pout)
        self.assertEqual((req[ARP].op, req[ARP].pdst), (1, "172.22.1.1"))
        self.learn(self.pout, H_OUT, "172.22.1.1", "172.22.1.16")
        self.ping_out()
        [echo] = self.sent(self.pout)
        self.assertEqual((echo.dst, echo[IP].dst), (H_OUT, "172.22.1.1"))

    def test_traffic_to_a_down_interface_gets_unreachable_and_never_falls_back(self):
        self.pin.set_link(False)
        # from outside to an inside host: not sent back out by the default route
        self.pout.sent.clear()
        self.pout.inject(bytearray(raw(Ether(src=H_OUT, dst=R_OUT) /
                                       IP(src="172.22.1.1", dst="10.10.10.2") / ICMP())))
        [err] = self.sent(self.pout)
        self.assertEqual((err[ICMP].type, err[ICMP].code, err[IP].src, err[IP].dst),
                         (3, 1, "172.22.1.16", "172.22.1.1"))
        self.pin.set_link(True)
        self.pout.sent.clear()
        self.pin.sent.clear()                           # the gratuitous ARP
        self.pout.inject(bytearray(raw(Ether(src=H_OUT, dst=R_OUT) /
                                       IP(src="172.22.1.1", dst="10.10.10.2") / ICMP())))
        self.assertEqual(self.sent(self.pout), [])      # forwarded inside (ARP first)
        [req] = self.sent(self.pin)
        self.assertEqual(req[ARP].pdst, "10.10.10.2")

    def test_frames_arriving_while_down_are_not_handled(self):
        self.pin.set_link(False)
        before = self.router.received
        self.ping_out()
        self.assertEqual(self.router.received, before)

    def test_shutdown_interface_logs_nothing(self):
        from tests.test_router import seed_model
        model = seed_model()
        model.interfaces["Ethernet2/1"].shutdown = True
        self.router.apply_config(model)
        self.pin.set_link(False)
        self.pin.set_link(True)
        self.assertEqual(self.logs, [])
        self.assertIn("Ethernet2/1 is administratively down, line protocol is down",
                      show_interfaces(self.router))
