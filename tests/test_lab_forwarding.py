"""cbac as a plain router in the namespace lab, with real clients and servers.

One lab and one cbac process for the whole class (tests.labrun.LabCase:
started by the first test, always torn down after the last).
"""

import hashlib
import os

from twisted.trial import unittest

from tests.labrun import ROUTED_CONFIG, LabCase, skip_reason

SEND_GARBAGE = r"""
import os, random, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
router = bytes.fromhex("02000a0a0a01")
me = bytes.fromhex("02000a0a0a02")
rnd = random.Random(7)
good = bytes.fromhex("45000028000100004006") + b"\0\0" + bytes([10,10,10,2,172,22,1,1]) + bytes(20)
for i in range(2000):
    kind = rnd.randrange(4)
    if kind == 0:
        body = os.urandom(rnd.randrange(0, 100))
    elif kind == 1:
        body = good[:rnd.randrange(0, len(good))]
    elif kind == 2:
        b = bytearray(good); b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8); body = bytes(b)
    else:
        body = bytes([0x4f]) + os.urandom(59)
    s.send(router + me + b"\x08\x00" + body)
print("sent")
"""


class RoutedLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()
    config = ROUTED_CONFIG

    @classmethod
    def setUpLab(cls):
        cls.www = os.path.join(cls.env.tmp, "www")
        os.makedirs(cls.www)
        cls.blob = os.urandom(5 * 1024 * 1024)
        with open(os.path.join(cls.www, "blob.bin"), "wb") as f:
            f.write(cls.blob)
        for ns, addr in (("out", "172.22.1.1"), ("in", "10.10.10.2")):
            cls.env.labserver(ns, "web", addr, 8080, cls.www)

    def fetch(self, ns, url):
        r = self.env.exec(ns, ["curl", "-sS", "--max-time", "20", url], text=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_ping_both_ways(self):
        r = self.env.exec("in", ["ping", "-c", "3", "-i", "0.2", "-W", "2", "172.22.1.1"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.env.log())
        self.assertIn("ttl=63", r.stdout)
        r = self.env.exec("out", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.10.10.2"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_http_transfer_byte_identical_both_ways(self):
        got = self.fetch("in", "http://172.22.1.1:8080/blob.bin")
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(self.blob).hexdigest())
        got = self.fetch("out", "http://10.10.10.2:8080/blob.bin")
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(self.blob).hexdigest())

    def test_traceroute_shows_router_hop(self):
        r = self.env.exec("in", ["traceroute", "-n", "-q", "1", "-w", "2", "-m", "4", "172.22.1.1"])
        self.assertEqual(r.returncode, 0, r.stderr)
        hops = [line.split() for line in r.stdout.splitlines()[1:]]
        self.assertEqual(hops[0][1], "10.10.10.1", r.stdout)
        self.assertEqual(hops[1][1], "172.22.1.1", r.stdout)

    def test_garbage_frames_do_not_crash(self):
        r = self.env.python("in", SEND_GARBAGE)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(self.env.proc.poll())
        r = self.env.exec("in", ["ping", "-c", "1", "-W", "2", "172.22.1.1"])
        self.assertEqual(r.returncode, 0)
        r = self.env.console("show interfaces Ethernet2/1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("malformed", r.stdout)
