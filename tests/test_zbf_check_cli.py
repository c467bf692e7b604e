"""``twistd cbac --check`` on zone-based configurations, as an admin runs it:
every mistake with its file and line, the exit status, the shipped example."""

import os
import tempfile

from twisted.trial import unittest

from tests.test_tap import twistd

BROKEN = """\
hostname fw
ip inspect name IN-OUT tcp
zone security LAN
class-map type inspect match-any WEB
 match protocol http
 match protocol gopher
policy-map type inspect P
 class type inspect WEB
  inspect
 class type inspect NOPE
  drop
zone-pair security LAN-DMZ source LAN destination DMZ
 service-policy type inspect P
interface Ethernet0/0
 ip address 10.0.0.1 255.255.255.0
 ip inspect IN-OUT in
 zone-member security LAN
"""


class ZbfCheckTests(unittest.TestCase):

    def test_shipped_zbf_example(self):
        rc, out, err = twistd("-n", "cbac", "-c", "etc/router-zbf.conf", "--check")
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out.splitlines()[-1],
                         r"^etc/router-zbf.conf: 0 errors, \d+ warnings; configuration OK$")

    def test_every_mistake_named_with_its_line(self):
        tmp = tempfile.mkdtemp(prefix="cbac-zbf-")
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, ignore_errors=True))
        path = os.path.join(tmp, "zbf.conf")
        with open(path, "w") as f:
            f.write(BROKEN)
        rc, out, err = twistd("-n", "cbac", "-c", path, "--check")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("%s:6: error: cbac does not inspect protocol 'gopher'" % path, out)
        self.assertIn("%s:10: error: policy-map P: class-map NOPE is not defined" % path, out)
        self.assertIn("%s:12: error: zone-pair LAN-DMZ: zone DMZ is not defined" % path, out)
        self.assertIn("%s:17: error: interface Ethernet0/0 is a zone member and has 'ip inspect "
                      "IN-OUT in': IOS refuses classic inspection and zones on one interface"
                      % path, out)
        self.assertIn("%s: 4 errors" % path, out.splitlines()[-1])

    def test_check_diagnostics_quote_the_line(self):
        from cbac.config import check, parse_config
        r, d = parse_config("zone security A\nzone-pair security P source A destination B\n"
                            " service-policy type inspect NOPE\n")
        texts = {(x.line, x.text) for x in check(r) if x.is_error}
        self.assertEqual(texts, {(2, "zone-pair security P source A destination B"),
                                 (3, "service-policy type inspect NOPE")})
