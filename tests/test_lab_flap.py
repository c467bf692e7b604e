"""A port flap in the namespace lab (issue 17, finding 1): each data port's
device goes down for a second during a transfer through PAT and inspection
(the seed configuration); the transfer completes byte-identical, the
daemon logs the changes as IOS does, and the console shows the interface
down while it is down and up again after.
"""

import hashlib
import os
import subprocess
import time

from twisted.trial import unittest

from tests.labrun import LabCase, skip_reason, wait_for

DEVICES = {"inside": "Ethernet2/1", "outside": "Ethernet2/0"}


class PortFlapLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()
    timeout = 120

    @classmethod
    def setUpLab(cls):
        cls.www = os.path.join(cls.env.tmp, "www")
        os.makedirs(cls.www)
        cls.blob = os.urandom(24 * 1024 * 1024)
        with open(os.path.join(cls.www, "blob.bin"), "wb") as f:
            f.write(cls.blob)
        cls.env.labserver("out", "web", "172.22.1.1", 8080, cls.www)

    def flap_during_transfer(self, device):
        ifname = DEVICES[device]
        out = os.path.join(self.env.tmp, "got-%s.bin" % device)
        # 24 MB at 6 MB/s: about 4 s, the device is down for 1 s of it
        curl = self.env.lab.popen("in", ["curl", "-sS", "--max-time", "60", "--limit-rate", "6M",
                                         "-o", out, "http://172.22.1.1:8080/blob.bin"],
                                  stderr=subprocess.PIPE)
        self.assertTrue(wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 2 << 20, 15),
                        "the transfer did not start:\n" + self.env.log())
        r = self.env.exec("fw", ["ip", "link", "set", device, "down"])
        self.assertEqual(r.returncode, 0, r.stderr)
        down_log = "%%LINEPROTO-5-UPDOWN: Line protocol on Interface %s, changed state to down" % ifname
        log = self.wait_log(down_log, 3)
        self.assertIn("%%LINK-3-UPDOWN: Interface %s, changed state to down" % ifname, log)
        self.assertIn(down_log, log)
        brief = self.env.console("show ip interface brief")
        self.assertRegex(brief.stdout, r"(?m)^%s\s+\S+\s+YES manual down\s+down\s*$" % ifname,
                         brief.stdout + brief.stderr)
        shown = self.env.console("show interfaces %s" % ifname)
        self.assertIn("%s is down, line protocol is down" % ifname, shown.stdout)
        time.sleep(max(0.0, 1.0))
        r = self.env.exec("fw", ["ip", "link", "set", device, "up"])
        self.assertEqual(r.returncode, 0, r.stderr)
        _, err = curl.communicate(timeout=60)
        self.assertEqual(curl.returncode, 0, err.decode(errors="replace") + self.env.log()[-3000:])
        with open(out, "rb") as f:
            got = f.read()
        self.assertEqual(len(got), len(self.blob))
        self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(self.blob).digest())
        log = self.env.log()
        self.assertIn("%%LINK-3-UPDOWN: Interface %s, changed state to up" % ifname, log)
        self.assertIn("%%LINEPROTO-5-UPDOWN: Line protocol on Interface %s, changed state to up"
                      % ifname, log)
        shown = self.env.console("show interfaces %s" % ifname)
        self.assertIn("%s is up, line protocol is up" % ifname, shown.stdout)
        # and new connections work too
        r = self.env.exec("in", ["curl", "-sS", "--max-time", "10", "-o", "/dev/null",
                                 "-w", "%{http_code}", "http://172.22.1.1:8080/blob.bin"])
        self.assertEqual(r.stdout, "200", r.stderr)

    def test_inside_flap_during_transfer(self):
        self.flap_during_transfer("inside")

    def test_outside_flap_during_transfer(self):
        self.flap_during_transfer("outside")

    def test_carrier_loss_from_the_peer(self):
        """The neighbour's end goes down (no carrier on ours): also down."""
        self.env.exec("out", ["ip", "link", "set", "eth0", "down"])
        self.addCleanup(self.env.exec, "out", ["ip", "link", "set", "eth0", "up"])
        log = self.wait_log("Interface Ethernet2/0, changed state to down", 3)
        self.assertIn("%LINK-3-UPDOWN: Interface Ethernet2/0, changed state to down", log)
        self.env.exec("out", ["ip", "link", "set", "eth0", "up"])
        self.env.exec("out", ["ip", "route", "replace", "default", "via", "172.22.1.16"])
        self.assertTrue(wait_for(lambda: self.env.log().count(
            "%LINK-3-UPDOWN: Interface Ethernet2/0, changed state to up") >= 1, 5), self.env.log())
        r = self.env.exec("in", ["ping", "-c", "1", "-W", "3", "172.22.1.1"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
