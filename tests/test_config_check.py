"""Semantic checks: cross references, overlapping subnets, NAT references,
port bindings and thresholds."""

from twisted.trial import unittest

from cbac.config.check import check
from cbac.config.errors import ERROR, WARNING
from cbac.config.parser import parse


def _check(text, **kw):
    kw.setdefault("devices", ["eth0", "eth1"])
    return check(parse(text), filename="c.conf", **kw)


def _msgs(diags, severity):
    return [d.message for d in diags if d.severity == severity]


class CheckTests(unittest.TestCase):
    def test_clean(self):
        d = _check("ip inspect name R tcp\naccess-list 1 permit any\n"
                   "interface e0\n ip address 10.0.0.1 255.255.255.0\n ip inspect R in\n"
                   " ip access-group 1 in\n ip nat inside\n"
                   "interface e1\n ip address 10.0.1.1 255.255.255.0\n ip nat outside\n"
                   "ip nat inside source list 1 interface e1 overload\n"
                   "cbac port e0 eth0\ncbac port e1 eth1\n")
        self.assertEqual([x.format() for x in d], [])

    def test_undefined_rule_is_a_warning_and_undefined_acl_an_error(self):
        # An undefined inspection rule only inspects less (less permissive);
        # an undefined access list would permit everything on IOS: refused.
        d = _check("interface e0\n ip inspect NOPE in\n ip access-group 150 out\n")
        w = _msgs(d, WARNING)
        self.assertTrue(any("inspection rule NOPE is not defined" in m for m in w))
        e = _msgs(d, ERROR)
        self.assertEqual(len(e), 1)
        self.assertIn("access list 150 is not defined", e[0])
        self.assertIn("cbac refuses the configuration", e[0])
        # each names the line of its command
        self.assertEqual([x.line for x in d], [2, 3])

    def test_java_list_missing(self):
        d = _check("ip inspect name R http java-list 7\ninterface e0\n ip inspect R in\n")
        self.assertIn("java-list 7 is not defined: all Java applets are blocked", _msgs(d, WARNING))
        self.assertEqual([x.line for x in d if "java-list" in x.message], [1])

    def test_overlapping_subnets(self):
        d = _check("interface e0\n ip address 10.0.0.1 255.255.0.0\n"
                   "interface e1\n ip address 10.0.5.1 255.255.255.0\n")
        e = [x for x in d if x.severity == ERROR]
        self.assertEqual(len(e), 1)
        self.assertEqual(e[0].line, 3)
        self.assertIn("overlaps with Ethernet0", e[0].message)

    def test_nat_references(self):
        d = _check("ip nat inside source list 9 pool NOPOOL overload\n"
                   "ip nat inside source static tcp 1.1.1.1 25 interface e7 25\n"
                   "ip nat inside source list 1 interface e8 overload\n")
        e = _msgs(d, ERROR)
        self.assertIn("NAT: access list 9 is not defined", e)
        self.assertIn("NAT: pool NOPOOL is not defined", e)
        self.assertIn("NAT: interface Ethernet7 is not defined", e)
        self.assertIn("NAT: interface Ethernet8 is not defined", e)

    def test_port_binding(self):
        text = "interface e0\n ip address 1.1.1.1 255.0.0.0\ncbac port e0 nosuchdev\ncbac port e9 eth0\n"
        d = _check(text)
        self.assertIn("cbac port: interface Ethernet9 is not defined", _msgs(d, ERROR))
        self.assertIn("cbac port: network device nosuchdev does not exist", _msgs(d, WARNING))
        d = _check(text, strict=True)
        self.assertIn("cbac port: network device nosuchdev does not exist", _msgs(d, ERROR))

    def test_real_device_lookup(self):
        # loopback always exists in /sys/class/net
        d = check(parse("interface e0\ncbac port e0 lo\n"), strict=True)
        self.assertEqual(_msgs(d, ERROR), [])

    def test_thresholds(self):
        d = _check("ip inspect max-incomplete low 600\nip inspect one-minute low 900\n"
                   "ip inspect one-minute high 800\n")
        e = _msgs(d, ERROR)
        self.assertIn("ip inspect max-incomplete low 600 is above high 500", e)
        self.assertIn("ip inspect one-minute low 900 is above high 800", e)


class NotActedOnTests(unittest.TestCase):
    def test_nat_service_and_pool_type_are_reported(self):
        diags = _check("""\
access-list 1 permit 10.0.0.0 0.0.0.255
ip nat pool P 172.22.1.20 172.22.1.30 netmask 255.255.255.0 type rotary
ip nat service list 1 ftp tcp port 2121
""")
        warnings = _msgs(diags, WARNING)
        self.assertTrue(any("type rotary is accepted, not acted on" in w for w in warnings), warnings)
        self.assertTrue(any("ip nat service is accepted, not acted on" in w for w in warnings), warnings)
