"""Generic protocol names of ``ip inspect name`` (https, ssh, ntp, isakmp,
...) and the DNS inspector, through the whole appliance on memory ports
with simulated Linux hosts (tests/hosts.py)."""

from twisted.trial import unittest

from cbac.config.parser import parse_config
from tests.hosts import INSIDE, INSIDE_CLIENT_IP, OUTSIDE, Net, Recorder

REMOTE = "172.22.1.1"

GENERIC = """hostname cbac
ip inspect name IN-OUT https
ip inspect name IN-OUT ssh timeout 600
ip inspect name IN-OUT ntp
ip inspect name IN-OUT isakmp
ip inspect name IN-OUT ipsec-msft
ip inspect name IN-OUT snmp
ip inspect name IN-OUT telnet
ip inspect name IN-OUT pop3s
ip inspect name IN-OUT imaps
interface Ethernet2/0
 ip address 172.22.1.16 255.255.255.0
 ip access-group 101 in
{nat_out}
interface Ethernet2/1
 ip address 10.10.10.1 255.255.255.0
{nat_in}
 ip inspect IN-OUT in
ip route 0.0.0.0 0.0.0.0 172.22.1.1
{nat_rules}
access-list 1 permit 10.10.10.0 0.0.0.255
access-list 101 deny ip any any
end
"""


def generic_config(nat):
    if nat:
        return GENERIC.format(nat_out=" ip nat outside", nat_in=" ip nat inside",
                              nat_rules="ip nat inside source list 1 interface "
                                        "Ethernet2/0 overload")
    return GENERIC.format(nat_out="", nat_in="", nat_rules="")


class GenericNamesConfig(unittest.TestCase):
    def test_accepted_without_warning(self):
        model, diags = parse_config(generic_config(True))
        self.assertEqual([d.format() for d in diags if "inspect" in d.format()], [])
        self.assertEqual([p.protocol for p in model.inspect_rules["IN-OUT"].protocols],
                         ["https", "ssh", "ntp", "isakmp", "ipsec-msft", "snmp", "telnet",
                          "pop3s", "imaps"])

    def test_show_ip_inspect_name_prints_ios_default_timeouts(self):
        net = Net(config=generic_config(True))
        self.addCleanup(net.stop)
        out = net.app.show_ip_inspect("name", "IN-OUT")
        self.assertIn("https alert is on audit-trail is off timeout 3600", out)
        self.assertIn("ssh alert is on audit-trail is off timeout 600", out)
        self.assertIn("ntp alert is on audit-trail is off timeout 30", out)
        self.assertIn("isakmp alert is on audit-trail is off timeout 30", out)

    def test_unknown_names_still_not_acted_on(self):
        for proto in ("sip", "rtsp", "pptp", "h323"):
            model, diags = parse_config("ip inspect name X %s\n" % proto)
            msgs = [d.format() for d in diags]
            self.assertTrue(any("not acted on" in m for m in msgs), msgs)
            self.assertFalse(any(d.is_error for d in diags), msgs)
            self.assertNotIn("X", model.inspect_rules)


class GenericNamesThroughAppliance(unittest.TestCase):
    nat = True

    def setUp(self):
        self.net = Net(config=generic_config(self.nat))
        self.addCleanup(self.net.stop)
        self.inner = self.net.host(INSIDE, INSIDE_CLIENT_IP, 2)
        self.outer = self.net.host(OUTSIDE, REMOTE, 1)

    def _tcp(self, port, sport):
        self.outer.listen(port, Recorder)
        c = self.inner.connect(REMOTE, port, sport=sport, app=Recorder())
        self.net.pump()
        return c

    def test_https_inspected_on_443_only(self):
        c = self._tcp(443, 40001)
        self.assertEqual(c.state, "ESTABLISHED")
        c.send(b"\x16\x03\x01hello")
        self.net.pump()
        self.assertIn(" https SIS_OPEN", self.net.show("sessions"))
        # port 8443 is not https by the port map: no session, replies dropped
        c2 = self._tcp(8443, 40002)
        self.assertEqual(c2.state, "SYN_SENT")

    def test_ssh_rule_timeout(self):
        c = self._tcp(22, 40003)
        self.assertEqual(c.state, "ESTABLISHED")
        self.assertIn(" ssh SIS_OPEN", self.net.show("sessions"))
        self.net.advance(590, step=10)
        self.assertIn(" ssh SIS_OPEN", self.net.show("sessions"))
        self.net.advance(30, step=10)
        self.assertNotIn(" ssh ", self.net.show("sessions"))

    def _udp_reply_passes(self, dport, sport):
        self.inner.send_udp(REMOTE, sport, dport, b"q")
        self.net.pump()
        got = [u for u in self.outer.udp if u[2] == dport]
        self.assertTrue(got, "request not forwarded")
        src, psport, _, _ = got[-1]
        self.outer.send_udp(src, dport, psport, b"r")
        self.net.pump()
        return [u for u in self.inner.udp if u[1] == dport and u[2] == sport]

    def test_udp_generic_names_on_their_ports(self):
        for dport, sport, name in ((123, 5123, "ntp"), (500, 5500, "isakmp"),
                                   (4500, 5450, "ipsec-msft"), (161, 5161, "snmp")):
            self.assertTrue(self._udp_reply_passes(dport, sport), name)
            self.assertIn(" %s SIS_OPEN" % name, self.net.show("sessions"))
        # UDP 124 is no protocol of the rule: the reply is dropped
        self.assertFalse(self._udp_reply_passes(124, 5124))

    def test_ntp_udp_idle_time(self):
        self.assertTrue(self._udp_reply_passes(123, 5125))
        self.net.advance(20, step=5)
        self.assertIn(" ntp ", self.net.show("sessions"))
        self.net.advance(20, step=5)
        self.assertNotIn(" ntp ", self.net.show("sessions"))


class GenericNamesThroughApplianceNoNat(GenericNamesThroughAppliance):
    nat = False


class GenericNamesRender(unittest.TestCase):
    def test_render_round_trip(self):
        from cbac.config.render import render
        model, _ = parse_config("ip inspect name X https\n"
                                "ip inspect name X ntp timeout 40 alert off\n")
        text = render(model)
        self.assertIn("ip inspect name X https\n", text)
        self.assertIn("ip inspect name X ntp alert off timeout 40\n", text)
