"""IP options through the real daemon in the namespace lab, with real
clients: ``ping -R`` (record route) and a UDP socket with a loose source
route set through ``IP_OPTIONS``.  A source-routed packet never leaves
cbac (whatever ``ip source-route`` says); ``ip options drop`` drops every
packet with options; both are counted in ``show interfaces``."""

import re

from twisted.trial import unittest

from tests.labrun import ROUTED_CONFIG, LabCase, skip_reason

#: a UDP datagram from the inside host to 172.22.1.1:5300 with a loose
#: source route through 172.22.1.1 (Linux puts the final destination last)
SEND_LSRR = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if sys.argv[1] == "lsrr":
    s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([1, 131, 7, 4, 172, 22, 1, 1]))
s.sendto(sys.argv[1].encode(), ("172.22.1.1", 5300))
print("sent")
"""


class Base(LabCase):
    skip = skip_reason()

    def drops(self, reason):
        r = self.env.console("show interfaces Ethernet2/1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = re.search(r"^ +%s +(\d+)$" % re.escape(reason), r.stdout, re.M)
        return int(m.group(1)) if m else 0

    def send_udp(self, kind):
        """Send one datagram (``lsrr`` or ``plain``) from the inside; the
        outside capture's lines for it."""
        cap = self.env.capture("out", "eth0", "udp port 5300")
        r = self.env.python("in", SEND_LSRR, kind)
        self.assertEqual(r.returncode, 0, r.stderr)
        return cap.stop()

    def ping_rr(self):
        return self.env.exec("in", ["ping", "-R", "-c", "1", "-W", "2", "172.22.1.1"])


class DefaultOptionsLabTests(Base, unittest.TestCase):
    """IOS's defaults (ip source-route, options processed)."""
    config = ROUTED_CONFIG

    def test_source_routed_datagram_never_leaves(self):
        before = self.drops("source-route")
        self.assertEqual(self.send_udp("lsrr"), [])
        self.assertEqual(self.drops("source-route"), before + 1)
        self.assertEqual(len(self.send_udp("plain")), 1)

    def test_record_route_ping_forwarded(self):
        r = self.ping_rr()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.env.log())
        self.assertIn("RR:", r.stdout)


class OptionsDropLabTests(Base, unittest.TestCase):
    config = ROUTED_CONFIG + "ip options drop\n"

    def test_record_route_ping_dropped_plain_ping_not(self):
        before = self.drops("ip-options")
        r = self.ping_rr()
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertGreaterEqual(self.drops("ip-options"), before + 1)
        r = self.env.exec("in", ["ping", "-c", "1", "-W", "2", "172.22.1.1"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
