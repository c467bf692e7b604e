"""``ip address dhcp`` on the outside port against a real DHCP server
(Debian's dnsmasq in the outside namespace): cbac leases 172.22.1.100
through its own data plane, installs the default route from the lease,
PAT uses the leased address, the console shows it, and the lease is renewed
at T1 (dnsmasq is told T1 = 6 s) by unicast."""

import os
import shutil
import time

from twisted.trial import unittest

from tests.labrun import LabCase, records, seed_variant, skip_reason, wait_for

CONFIG = seed_variant(
    extra=["access-list 101 permit udp any eq bootps any eq bootpc"],
    replace=[("interface Ethernet2/0\n  ip address 172.22.1.16 255.255.255.0",
              "interface Ethernet2/0\n  ip address dhcp"),
             ("ip route 0.0.0.0 0.0.0.0 172.22.1.1\n", "")])


def _skip():
    return skip_reason() or (None if shutil.which("dnsmasq") else
                             "dnsmasq is not installed (requirements-apt.txt: dnsmasq-base)")


class DhcpLabTests(LabCase, unittest.TestCase):
    skip = _skip()
    config = CONFIG
    timeout = 120

    @classmethod
    def setUpLab(cls):
        env = cls.env
        cls.dnsmasq_log = os.path.join(env.tmp, "dnsmasq.log")
        env.server("out", ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                           "--interface=eth0", "--bind-interfaces", "--pid-file=",
                           "--dhcp-range=172.22.1.100,172.22.1.100,255.255.255.0,2m",
                           "--dhcp-option=option:router,172.22.1.1",
                           "--dhcp-option=option:T1,6", "--dhcp-option=option:T2,10",
                           "--dhcp-leasefile=" + os.path.join(env.tmp, "dnsmasq.leases"),
                           "--log-dhcp", "--log-facility=" + cls.dnsmasq_log])
        cls.www = os.path.join(env.tmp, "www")
        os.makedirs(cls.www)
        with open(os.path.join(cls.www, "hello.txt"), "w") as f:
            f.write("hello through PAT\n")
        cls.web = env.labserver("out", "web", "172.22.1.1", 8080, cls.www)
        if not wait_for(lambda: "%DHCP-6-ADDRESS_ASSIGN" in env.log(), 30):
            raise RuntimeError("no DHCP lease in 30 s:\n%s\n%s" % (env.log(), _read(cls.dnsmasq_log)))

    def test_lease_logged_and_shown(self):
        self.assertIn("%DHCP-6-ADDRESS_ASSIGN: Interface Ethernet2/0 assigned DHCP address 172.22.1.100,"
                      " mask 255.255.255.0, hostname 3640-123", self.env.log())
        brief = self.env.console("show ip interface brief").stdout
        self.assertRegex(brief, r"(?m)^Ethernet2/0\s+172\.22\.1\.100\s+YES DHCP\s+up\s+up\s*$", brief)
        lease = self.env.console("show dhcp lease").stdout
        self.assertIn("Temp IP addr: 172.22.1.100  for peer on Interface: Ethernet2/0", lease)
        self.assertRegex(lease, r"DHCP Lease server: 172\.22\.1\.1, state: \d (Bound|Renewing)")
        self.assertIn("Lease: 120 secs,  Renewal: 6 secs,  Rebind: 10 secs", lease)
        self.assertIn("Temp default-gateway addr: 172.22.1.1", lease)
        route = self.env.console("show ip route").stdout
        self.assertIn("S*   0.0.0.0/0 [254/0] via 172.22.1.1, Ethernet2/0", route)

    def test_pat_uses_the_leased_address(self):
        r = self.env.exec("in", ["curl", "-sS", "--max-time", "10", "http://172.22.1.1:8080/hello.txt"])
        self.assertEqual((r.returncode, r.stdout), (0, "hello through PAT\n"), r.stderr + self.env.log())
        peers = {rec["peer"].split(":")[0] for rec in records(self.web, "request")}
        self.assertEqual(peers, {"172.22.1.100"})
        # the default route from the lease carries traffic to other networks
        r = self.env.exec("in", ["ping", "-c", "1", "-W", "2", "172.22.1.1"])
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_renewed_at_t1_by_unicast(self):
        cap = self.env.capture("out", "eth0", "udp dst port 67 and not ether broadcast")
        acks = _read(self.dnsmasq_log).count("DHCPACK(eth0) 172.22.1.100")
        ok = wait_for(lambda: _read(self.dnsmasq_log).count("DHCPACK(eth0) 172.22.1.100") > acks, 20)
        log = _read(self.dnsmasq_log)
        self.assertTrue(ok, log)
        unicast = cap.stop()
        self.assertTrue(any("172.22.1.100.68 > 172.22.1.1.67" in line for line in unicast), unicast)
        # a renewal is a REQUEST from the leased address (ciaddr), not a DISCOVER
        self.assertEqual(log.count("DHCPDISCOVER"), 1, log)
        self.assertGreaterEqual(log.count("DHCPREQUEST(eth0) 172.22.1.100"), 2, log)
        r = self.env.exec("in", ["curl", "-sS", "--max-time", "10", "http://172.22.1.1:8080/hello.txt"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_outside_flap_keeps_the_lease(self):
        """The outside device goes down and comes back: the lease is kept
        (and confirmed with a REQUEST; with T1 = 6 s here a renewal may be
        the one seen) and PAT works again with the leased address."""
        requests = _read(self.dnsmasq_log).count("DHCPREQUEST(eth0) 172.22.1.100")
        ups = self.env.log().count("Interface Ethernet2/0, changed state to up")
        self.env.exec("fw", ["ip", "link", "set", "outside", "down"])
        time.sleep(0.5)
        self.env.exec("fw", ["ip", "link", "set", "outside", "up"])
        self.assertTrue(wait_for(lambda: self.env.log().count(
            "Interface Ethernet2/0, changed state to up") > ups, 5), self.env.log())
        self.assertTrue(wait_for(lambda: _read(self.dnsmasq_log).count(
            "DHCPREQUEST(eth0) 172.22.1.100") > requests, 10), _read(self.dnsmasq_log))
        r = self.env.exec("in", ["curl", "-sS", "--max-time", "10", "http://172.22.1.1:8080/hello.txt"])
        self.assertEqual((r.returncode, r.stdout), (0, "hello through PAT\n"), r.stderr)
        brief = self.env.console("show ip interface brief").stdout
        self.assertRegex(brief, r"(?m)^Ethernet2/0\s+172\.22\.1\.100\s+YES DHCP\s+up\s+up\s*$", brief)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


ROUTER_TRAFFIC_CONFIG = seed_variant(
    extra=["ip inspect name SELF udp router-traffic"],
    replace=[("interface Ethernet2/0\n  ip address 172.22.1.16 255.255.255.0",
              "interface Ethernet2/0\n  ip address dhcp\n  ip inspect SELF out"),
             ("ip route 0.0.0.0 0.0.0.0 172.22.1.1\n", "")])


class DhcpRouterTrafficLabTests(DhcpLabTests):
    """The same with the seed's outside ACL as it is (no bootps permit):
    ``ip inspect name SELF udp router-traffic`` applied out on the outside
    interface lets the server's replies to the router's own requests in."""

    config = ROUTER_TRAFFIC_CONFIG
