"""A real branch-router configuration, pasted flat with banners whose text
looks like commands, filters in the namespace lab; and the same router as a
``show running-config`` listing (indented) filters the same way.

tests/configs/branch-flat.conf (and branch-running.conf) publish the inside
web server 10.10.10.25:8025 as 172.22.1.16:8025, PAT the inside network out
of Ethernet2/0, discard 192.168.0.0/16 (Null0), and refuse everything else
from outside.  The banners contain ``interface Ethernet2/0`` / ``ip
access-group 1 in`` (which would refuse the published server) and a static
translation of 10.10.10.2:8080 to port 80 (which would publish a second
server): if a banner's text were read as commands, these tests fail.
"""

import os

from twisted.trial import unittest

from tests.labrun import LabCase, records, skip_reason

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def _read(name):
    with open(os.path.join(CONFIGS, name)) as f:
        return f.read()


class FlatBranchLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()
    config = _read("branch-flat.conf")

    @classmethod
    def setUpLab(cls):
        cls.www = os.path.join(cls.env.tmp, "www")
        os.makedirs(cls.www)
        with open(os.path.join(cls.www, "index.txt"), "w") as f:
            f.write("hello from the lab\n")
        cls.out_web = cls.env.labserver("out", "web", "172.22.1.1", 8080, cls.www)
        cls.pub_web = cls.env.labserver("in", "web", "10.10.10.25", 8025, cls.www)
        cls.in_web = cls.env.labserver("in", "web", "10.10.10.2", 8080, cls.www)

    def curl(self, ns, url, timeout=5):
        return self.env.exec(ns, ["curl", "-sS", "--max-time", str(timeout), url])

    def test_pat_out_works(self):
        r = self.curl("in", "http://172.22.1.1:8080/index.txt")
        self.assertEqual(r.returncode, 0, r.stderr + self.env.log()[-3000:])
        self.assertEqual(r.stdout, "hello from the lab\n")
        peers = {x["peer"].split(":")[0] for x in records(self.out_web, "request")}
        self.assertEqual(peers, {"172.22.1.16"})           # translated by PAT

    def test_published_server_reachable_from_outside(self):
        r = self.curl("out", "http://172.22.1.16:8025/index.txt")
        self.assertEqual(r.returncode, 0, r.stderr + self.env.log()[-3000:])
        self.assertEqual(r.stdout, "hello from the lab\n")

    def test_everything_else_refused(self):
        for url in ("http://172.22.1.16:80/index.txt",        # the banner's "static" line
                    "http://172.22.1.16:8080/index.txt",
                    "http://10.10.10.2:8080/index.txt",       # straight to an inside host
                    "http://10.10.10.25:8025/index.txt"):
            r = self.curl("out", url, timeout=2)
            self.assertNotEqual(r.returncode, 0, url)
        r = self.env.exec("out", ["ping", "-c", "1", "-W", "1", "10.10.10.2"])
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(records(self.in_web, "request"), [])
        r = self.env.exec("out", ["nc", "-z", "-w", "2", "172.22.1.16", "2222"])
        self.assertNotEqual(r.returncode, 0, "console reachable from outside")

    def test_null0_route_discards(self):
        cap = self.env.capture("out", "eth0", "net 192.168.0.0/16")
        r = self.env.exec("in", ["ping", "-c", "2", "-i", "0.3", "-W", "1", "192.168.7.7"])
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(cap.stop(), [])
        # the default route still works for everything else
        r = self.env.exec("in", ["ping", "-c", "1", "-W", "2", "172.22.1.1"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class RunningConfigBranchLabTests(FlatBranchLabTests):
    """The same router, as ``show running-config`` prints it."""
    config = _read("branch-running.conf")
