"""IOS configuration parser: the seed's 3640 configuration, command grammar,
defaults, ``no`` forms, and diagnostics with line numbers."""

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from twisted.trial import unittest

from cbac.config.errors import ERROR, WARNING
from cbac.config.model import AddrMatch, PortMatch, Secret
from cbac.config.parser import (
    decode_type7, encode_type7, normalize_interface, parse, parse_config)

# The configuration exactly as printed in Cisco document 69309 (the seed),
# from the prompt line to where the document breaks off.
SEED_CONFIG = """\
3640-123#show running-config
Building configuration...

Current configuration : 1432 bytes
!
version 12.3
service config
service timestamps debug datetime msec
service timestamps log datetime msec
service password-encryption
!
hostname 3640-123
!
boot-start-marker
boot-end-marker
!
enable password 7 02050D4808095E731F
!
no aaa new-model
!
resource policy
!
voice-card 3
!
ip subnet-zero
!
!
ip cef
no ip dhcp use vrf connected
!
!

!--- This is the Cisco IOS Firewall configuration.

!--- IN-OUT is the inspection rule for traffic that flows
!--- from the inside interface of the router to the outside interface.

ip inspect name IN-OUT tcp
ip inspect name IN-OUT udp
ip inspect name IN-OUT ftp
ip inspect name IN-OUT http
ip inspect name IN-OUT icmp

!--- OUT-IN is the inspection rule for traffic that flows
!--- from the outside interface of the router to the inside interface.
!--- This rule is where SMTP/ESMTP inspection is specified.

ip inspect name OUT-IN smtp
!
no ip ips deny-action ips-interface
!
no ftp-server write-enable
!
!
!
!
controller T1 3/0
  framing sf
  linecode ami
!
!
!
!
!

!--- The outside interface.

interface Ethernet2/0
  ip address 172.22.1.16 255.255.255.0

!--- Apply the access list to permit SMTP/ESMTP connections
!--- to the mail server. This also allows Cisco IOS Firewall
!--- to inspect SMTP or ESMTP commands.

ip access-group 101 in
ip nat outside

!--- Apply the inspection rule OUT-IN inbound on this interface. This is
!--- the rule that defines SMTP/ESMTP inspection.

ip inspect OUT-IN in
ip virtual-reassembly
half-duplex
!
interface Serial2/0
  no ip address
  shutdown
!

!--- The inside interface.

interface Ethernet2/1
  ip address 10.10.10.1 255.255.255.0
  ip nat inside

!--- Apply the inspection rule IN-OUT inbound on this interface.
"""


def _diags(text, severity=None):
    r, d = parse_config(text, "t.conf")
    return r, [x for x in d if severity is None or x.severity == severity]


class SeedConfigTests(unittest.TestCase):
    def setUp(self):
        self.router, self.diags = parse_config(SEED_CONFIG, "seed.conf")

    def test_no_errors(self):
        self.assertEqual([d.format() for d in self.diags if d.severity == ERROR], [])

    def test_globals(self):
        r = self.router
        self.assertEqual(r.hostname, "3640-123")
        self.assertEqual(r.version, "12.3")
        self.assertTrue(r.password_encryption)
        self.assertEqual(r.timestamps_log, "datetime msec")
        self.assertEqual(r.timestamps_debug, "datetime msec")
        self.assertEqual(r.enable_password, Secret(7, "02050D4808095E731F"))

    def test_inspect_rules(self):
        rules = self.router.inspect_rules
        self.assertEqual(list(rules), ["IN-OUT", "OUT-IN"])
        self.assertEqual([p.protocol for p in rules["IN-OUT"].protocols],
                         ["tcp", "udp", "ftp", "http", "icmp"])
        smtp = rules["OUT-IN"].get("smtp")
        self.assertIsNone(smtp.timeout)
        self.assertIsNone(smtp.alert)
        self.assertEqual(smtp.lineno, 48)

    def test_interfaces_with_unindented_subcommands(self):
        e0 = self.router.interfaces["Ethernet2/0"]
        self.assertEqual(e0.address, IPv4Interface("172.22.1.16/24"))
        self.assertEqual(e0.access_group_in, "101")
        self.assertEqual(e0.nat, "outside")
        self.assertEqual(e0.inspect_in, "OUT-IN")
        self.assertEqual([v.text for v in e0.extra], ["ip virtual-reassembly", "half-duplex"])
        s = self.router.interfaces["Serial2/0"]
        self.assertIsNone(s.address)
        self.assertTrue(s.shutdown)
        e1 = self.router.interfaces["Ethernet2/1"]
        self.assertEqual(e1.nat, "inside")
        self.assertEqual(list(self.router.interfaces), ["Ethernet2/0", "Serial2/0", "Ethernet2/1"])

    def test_verbatim_lines_warned_with_line_numbers(self):
        warned = {(d.line, d.text) for d in self.diags if d.severity == WARNING}
        for line, text in [(7, "service config"), (14, "boot-start-marker"),
                           (19, "no aaa new-model"), (23, "voice-card 3"),
                           (28, "ip cef"), (50, "no ip ips deny-action ips-interface"),
                           (57, "controller T1 3/0"), (58, "framing sf"),
                           (83, "half-duplex")]:
            self.assertIn((line, text), warned)
        # acted on (fragment reassembly limits): kept, printed back, no warning
        self.assertNotIn((82, "ip virtual-reassembly"), warned)
        self.assertIn("ip virtual-reassembly",
                      [v.text for v in self.router.interfaces["Ethernet2/0"].extra])
        for d in self.diags:
            self.assertIn("accepted, not acted on", d.message)

    def test_verbatim_kept_with_children(self):
        texts = [(v.text, v.children) for v in self.router.extra]
        self.assertIn(("controller T1 3/0", ("framing sf", "linecode ami")), texts)
        self.assertIn(("voice-card 3", ()), texts)
        self.assertIn(("service config", ()), texts)

    def test_type7(self):
        self.assertEqual(decode_type7("02050D4808095E731F"), "cisco123")
        self.assertEqual(decode_type7(encode_type7("s3cr3t pw", 9)), "s3cr3t pw")


class CommandTests(unittest.TestCase):
    def test_defaults(self):
        r = parse("")
        self.assertEqual(r.hostname, "Router")
        self.assertEqual(r.inspect.tcp_idle_time, 3600)
        self.assertEqual(r.ssh.port, 2222)

    def test_inspect_globals_and_no_forms(self):
        r = parse("ip inspect max-incomplete high 900\nip inspect max-incomplete low 700\n"
                  "ip inspect one-minute high 600\nip inspect one-minute low 100\n"
                  "ip inspect tcp max-incomplete host 20 block-time 3\n"
                  "ip inspect tcp synwait-time 10\nip inspect tcp finwait-time 2\n"
                  "ip inspect tcp idle-time 100\nip inspect udp idle-time 20\n"
                  "ip inspect dns-timeout 3\nip inspect audit-trail\nip inspect alert-off\n"
                  "no ip inspect tcp idle-time\n")
        g = r.inspect
        self.assertEqual((g.max_incomplete_high, g.max_incomplete_low), (900, 700))
        self.assertEqual((g.one_minute_high, g.one_minute_low), (600, 100))
        self.assertEqual((g.tcp_max_incomplete_host, g.tcp_block_time), (20, 3))
        self.assertEqual((g.tcp_synwait_time, g.tcp_finwait_time), (10, 2))
        self.assertEqual(g.tcp_idle_time, 3600)          # "no" restored the default
        self.assertEqual((g.udp_idle_time, g.dns_timeout), (20, 3))
        self.assertTrue(g.audit_trail and g.alert_off)

    def test_inspect_name_options_any_order(self):
        r = parse("ip inspect name X smtp timeout 60 max-data 5000 alert off audit-trail on\n"
                  "ip inspect name X http java-list 10 audit-trail off\n")
        p = r.inspect_rules["X"].get("smtp")
        self.assertEqual((p.timeout, p.max_data, p.alert, p.audit_trail), (60, 5000, False, True))
        self.assertEqual(r.inspect_rules["X"].get("http").java_list, "10")

    def test_smtp_and_esmtp_in_one_rule_is_an_error(self):
        r, errs = _diags("ip inspect name OUT-IN smtp\nip inspect name OUT-IN esmtp\n", ERROR)
        self.assertEqual(len(errs), 1)
        self.assertEqual(errs[0].line, 2)
        self.assertIn("smtp and esmtp", errs[0].message)
        self.assertEqual(errs[0].text, "ip inspect name OUT-IN esmtp")
        self.assertIsNone(r.inspect_rules["OUT-IN"].get("esmtp"))

    def test_users_and_secrets(self):
        r = parse("username admin privilege 15 secret 0 cisco\n"
                  "username bob password 7 02050D4808095E731F\n"
                  "enable secret 0 cisco\n")
        self.assertEqual(r.users["admin"].privilege, 15)
        from cbac.console.auth import verify
        # a secret entered in clear text is kept hashed (type 9), as IOS 15.3+
        self.assertEqual(r.users["admin"].secret.kind, 9)
        self.assertTrue(r.users["admin"].secret.value.startswith("$9$"))
        self.assertTrue(verify(r.users["admin"].secret, "cisco"))
        self.assertEqual(r.users["bob"].password, Secret(7, "02050D4808095E731F"))
        self.assertEqual(r.enable_secret.kind, 9)
        self.assertTrue(verify(r.enable_secret, "cisco"))

    def test_extended_acl_grammar(self):
        r, errs = _diags(
            "access-list 101 permit tcp any host 172.22.1.16 eq smtp\n"
            "access-list 101 permit tcp 10.0.0.0 0.0.0.255 range 1000 2000 any eq www 443 established log\n"
            "access-list 101 permit icmp any any echo-reply\n"
            "access-list 101 permit icmp any any 3 4\n"
            "access-list 101 permit gre any any\n"
            "access-list 101 deny udp any any neq domain fragments log-input\n", ERROR)
        self.assertEqual(errs, [])
        e = r.acls["101"].entries
        self.assertEqual([x.seq for x in e], [10, 20, 30, 40, 50, 60])
        self.assertEqual(e[0].destination, AddrMatch(IPv4Address("172.22.1.16"), IPv4Address(0)))
        self.assertEqual(e[0].destination_port, PortMatch("eq", (25,)))
        self.assertEqual(e[1].source_port, PortMatch("range", (1000, 2000)))
        self.assertEqual(e[1].destination_port, PortMatch("eq", (80, 443)))
        self.assertTrue(e[1].established)
        self.assertEqual(e[1].log, "log")
        self.assertEqual((e[2].icmp_type, e[2].icmp_code), (0, None))
        self.assertEqual((e[3].icmp_type, e[3].icmp_code), (3, 4))
        self.assertEqual(e[4].protocol, 47)
        self.assertTrue(e[5].fragments)
        self.assertEqual(e[5].log, "log-input")

    def test_standard_acl(self):
        r = parse("access-list 1 permit 10.10.10.0 0.0.0.255\naccess-list 1 permit 1.2.3.4\n"
                  "access-list 1 deny any log\n")
        e = r.acls["1"].entries
        self.assertEqual(r.acls["1"].kind, "standard")
        self.assertEqual(e[0].source, AddrMatch(IPv4Address("10.10.10.0"), IPv4Address("0.0.0.255")))
        self.assertTrue(e[1].source.is_host)
        self.assertIsNone(e[0].destination)
        self.assertEqual(e[2].log, "log")

    def test_named_acl_sequence_numbers(self):
        r = parse("ip access-list extended OUTSIDE\n"
                  " permit tcp any any eq 22\n"
                  " 15 deny ip host 1.1.1.1 any\n"
                  " permit udp any any\n"
                  " remark the end\n"
                  " no 20\n")
        acl = r.acls["OUTSIDE"]
        self.assertFalse(acl.numbered)
        self.assertEqual([(x.seq, x.action) for x in acl.entries],
                         [(10, "permit"), (15, "deny"), (30, "remark")])
        self.assertEqual(acl.entries[2].remark, "the end")

    def test_nat_route_logging_vty_cbac(self):
        r, errs = _diags(
            "interface Ethernet0\n ip address 172.22.1.16 255.255.255.0\n"
            "ip nat inside source static tcp 10.10.10.25 25 172.22.1.16 25 extendable\n"
            "ip nat inside source static udp 10.0.0.2 53 interface Ethernet0 53\n"
            "ip nat inside source list 1 interface Ethernet0 overload\n"
            "ip nat pool P 1.1.1.1 1.1.1.9 netmask 255.255.255.0 type rotary\n"
            "ip nat translation udp-timeout never\nip nat translation max-entries 100\n"
            "ip nat service list 1 ftp tcp port 2121\n"
            "ip route 0.0.0.0 0.0.0.0 172.22.1.1\nip route 10.0.0.0 255.0.0.0 Ethernet0 5\n"
            "logging host 192.0.2.1 transport tls port 6514\nlogging buffered 16384 warnings\n"
            "logging trap 3\nlogging console critical\nip ssh port 22\n"
            "line vty 0 4\n access-class 1 in\n transport input none\n exec-timeout 5\n"
            "cbac port Ethernet0 eth0\ncbac session-limit 10\ncbac smtp starttls strip\n"
            "cbac smtp bare-lf allow\ncbac logging format rfc5424\n", ERROR)
        self.assertEqual(errs, [])
        st = r.nat.statics
        self.assertEqual((st[0].protocol, str(st[0].local), st[0].local_port, str(st[0].global_),
                          st[0].global_port, st[0].extendable),
                         ("tcp", "10.10.10.25", 25, "172.22.1.16", 25, True))
        self.assertEqual(st[1].global_interface, "Ethernet0")
        self.assertEqual((r.nat.dynamics[0].interface, r.nat.dynamics[0].overload), ("Ethernet0", True))
        self.assertEqual(r.nat.pools["P"].prefix_length, 24)
        self.assertIsNone(r.nat.timeouts.udp_timeout)
        self.assertEqual(r.nat.timeouts.max_entries, 100)
        self.assertEqual(r.nat.services[0].port, 2121)
        self.assertEqual(r.routes[0].next_hop, IPv4Address("172.22.1.1"))
        self.assertEqual((r.routes[1].prefix, r.routes[1].interface, r.routes[1].distance),
                         (IPv4Network("10.0.0.0/8"), "Ethernet0", 5))
        h = r.logging.hosts[0]
        self.assertEqual((h.transport, h.port), ("tls", 6514))
        self.assertEqual((r.logging.buffered, r.logging.buffered_level), (16384, 4))
        self.assertEqual((r.logging.trap_level, r.logging.console_level), (3, 2))
        self.assertEqual(r.ssh.port, 22)
        v = r.vty[0]
        self.assertEqual((v.access_class, v.transport_input, v.exec_timeout), ("1", "none", (5, 0)))
        self.assertEqual(r.ports["Ethernet0"].device, "eth0")
        self.assertEqual((r.session_limit, r.smtp.starttls, r.smtp.bare_lf), (10, "strip", "allow"))
        self.assertTrue(r.logging.rfc5424)

    def test_interface_subcommands_and_no_forms(self):
        r = parse("interface FastEthernet 0/0\n description uplink  to ISP\n"
                  " ip address 10.0.0.1 255.255.255.0\n ip address 10.1.0.1 255.255.0.0 secondary\n"
                  " no ip unreachables\n ip mtu 1400\n arp timeout 60\n shutdown\n no shutdown\n"
                  " ip access-group 101 out\n no ip access-group 101 out\n")
        i = r.interfaces["FastEthernet0/0"]
        self.assertEqual(i.description, "uplink  to ISP")
        self.assertEqual(i.secondary, [IPv4Interface("10.1.0.1/16")])
        self.assertFalse(i.unreachables)
        self.assertEqual((i.mtu, i.arp_timeout, i.shutdown), (1400, 60, False))
        self.assertIsNone(i.access_group_out)

    def test_interface_name_normalisation(self):
        self.assertEqual(normalize_interface("e2/0"), "Ethernet2/0")
        self.assertEqual(normalize_interface("fastethernet 0/1"), "FastEthernet0/1")
        self.assertEqual(normalize_interface("Serial2/0"), "Serial2/0")


class ErrorTests(unittest.TestCase):
    def assertError(self, text, line, fragment):
        _, errs = _diags(text, ERROR)
        self.assertTrue(errs, "no error for %r" % text)
        self.assertEqual(errs[0].line, line)
        self.assertIn(fragment, errs[0].message)
        self.assertEqual(errs[0].file, "t.conf")

    def test_errors_with_lines(self):
        self.assertError("!\ninterface e0\n ip address 10.0.0.300 255.255.255.0\n", 3, "invalid address")
        self.assertError("interface e0\n ip address 10.0.0.1 255.0.255.0\n", 2, "non-contiguous netmask")
        self.assertError("interface e0\n ip address 10.0.0.0 255.255.255.0\n", 2, "bad mask")
        self.assertError("access-list 1 permit tcp any any\n", 1, "does not take extended syntax")
        self.assertError("access-list 101 permit foo any any\n", 1, "unknown protocol keyword 'foo'")
        self.assertError("access-list 101 permit tcp any any eq nosuchport\n", 1, "invalid tcp port")
        self.assertError("access-list 101 permit tcp any any eq 70000\n", 1, "invalid tcp port")
        self.assertError("access-list 300 permit any\n", 1, "invalid access list number")
        self.assertError("access-list 101 permit ip any any dscp ef\n", 1, "unsupported")
        self.assertError("ip inspect tcp synwait-time 0\n", 1, "out of range")
        self.assertError("ip inspect name X smtp max-data lots\n", 1, "invalid max-data")
        self.assertError("ip route 10.0.0.1 255.0.0.0 1.1.1.1\n", 1, "inconsistent address and mask")
        self.assertError("line vty 0 1870\n", 1, "out of range")
        self.assertError("enable password 7 ZZZ\n", 1, "invalid type 7")
        self.assertError("hostname bad_name!\n", 1, "invalid hostname")
        self.assertError("ip nat pool P 1.1.1.9 1.1.1.1 netmask 255.255.255.0\n", 1, "above end")

    def test_all_errors_collected(self):
        _, errs = _diags("access-list 1 permit tcp any any\nhostname ok\n"
                         "interface e0\n ip address 1.2.3.4 255.0.255.0\nip route 1.2.3.4 1.2.3.4\n", ERROR)
        self.assertEqual([e.line for e in errs], [1, 4, 5])

    def test_format(self):
        _, errs = _diags("hostname a\naccess-list 1 permit tcp any any\n", ERROR)
        self.assertEqual(errs[0].format(),
                         "t.conf:2: error: standard access list 1 does not take extended "
                         "syntax ('tcp')\n    access-list 1 permit tcp any any")

    def test_garbage_never_raises(self):
        for text in ["\x00\x01", "interface\n", "ip nat inside source static tcp 1.1.1.1\n",
                     "access-list 101 permit tcp any\n", "logging host\n", "line vty\n",
                     "ip inspect name\n", "username\n", "ip route 1.1.1.1\n"]:
            r, d = parse_config(text)
            self.assertTrue(all(x.line == 1 for x in d))


class FuzzTests(unittest.TestCase):
    """Damaged lines of real configurations: never an exception, never an
    internal error, every diagnostic on a real line."""

    def test_damaged_lines(self):
        from hypothesis import given, settings, strategies as st

        lines = [ln for ln in SEED_CONFIG.splitlines() if ln.strip() and not ln.startswith("!")]
        lines += ["access-list 101 permit tcp any host 172.22.1.16 eq smtp",
                  "ip nat inside source static tcp 10.10.10.25 25 172.22.1.16 25 extendable",
                  "ip nat pool P 1.1.1.1 1.1.1.9 netmask 255.255.255.0 type rotary",
                  "ip route 10.0.0.0 255.0.0.0 Ethernet0 10.1.1.1 5",
                  "logging host 192.0.2.1 transport tls port 6514",
                  "ip inspect name R smtp max-data 100 alert on timeout 5",
                  "ip inspect tcp max-incomplete host 20 block-time 3",
                  "username a privilege 15 secret 5 $1$abc$def",
                  "line vty 0 4", " exec-timeout 5 0", " transport input ssh",
                  "ip access-list extended X", " 10 permit icmp any any 3 4 log",
                  "cbac port Ethernet2/0 eth0", "cbac smtp starttls strip"]
        vocab = ["any", "host", "eq", "255.255.255.0", "0.0.0.255", "tcp", "in", "out",
                 "no", "99999999999", "-1", "1.2.3.4", "overload", "interface", "range",
                 "secondary", "never", "list", "pool", "", "log"]

        @settings(max_examples=200, deadline=None)
        @given(st.lists(st.tuples(st.sampled_from(lines), st.integers(0, 12),
                                  st.sampled_from(["drop", "insert", "cut"]),
                                  st.sampled_from(vocab)), min_size=1, max_size=8))
        def run(edits):
            out = []
            for line, pos, op, word in edits:
                w = line.split(" ")
                pos = min(pos, len(w))
                if op == "drop" and pos < len(w):
                    del w[pos]
                elif op == "insert":
                    w.insert(pos, word)
                else:
                    w = w[:pos]
                out.append(" ".join(w))
            r, diags = parse_config("\n".join(out) + "\n", "f")
            for d in diags:
                self.assertNotIn("cannot parse line", d.message, d.format())
                self.assertTrue(1 <= d.line <= len(out))
        run()
