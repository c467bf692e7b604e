"""The configuration language fails closed and reads real IOS (issue 13,
issue 17's configuration family).

Every test parses and checks text exactly as ``twistd cbac --check`` does
and asserts on the diagnostics a user reads or on the model that the data
plane is built from.
"""

from __future__ import annotations

import time
from ipaddress import IPv4Address

from twisted.trial import unittest

from cbac.config.check import check
from cbac.config.errors import grouped, report
from cbac.config.parser import parse_bytes, parse_config
from cbac.config.render import render

BASE = """hostname fw
interface Ethernet0
 ip address 192.0.2.1 255.255.255.0
 ip nat outside
interface Ethernet1
 ip address 10.0.0.1 255.255.255.0
 ip nat inside
access-list 1 permit 10.0.0.0 0.0.0.255
access-list 101 deny ip any any
"""


def run(text, filename="t.conf"):
    router, diags = parse_config(text, filename)
    diags = diags + check(router, filename=filename)
    return router, diags


def errors_at(diags):
    return {d.line: d.message for d in diags if d.is_error}


class FailClosedTests(unittest.TestCase):
    """A line IOS would use to restrict, inspect or encrypt traffic, that
    cbac does not enforce, is an error with its line number."""

    REFUSED = [
        # (line, why in message)
        ("interface Ethernet0\n crypto map VPN\n", "crypto map"),
        ("interface Ethernet0\n tunnel protection ipsec profile P\n", "tunnel protection"),
        ("interface Ethernet0\n ip ips IPS-1 in\n", "ip ips"),
        ("interface Ethernet0\n service-policy input QOS\n", "service-policy"),
        ("interface Ethernet0\n service-policy type inspect X\n", "service-policy"),
        ("interface Ethernet0\n zone-member outside\n", "zone-based"),
        ("interface Ethernet0\n zone-member security outside\n", "zone outside is not defined"),
        ("interface Ethernet0\n ip verify unicast reverse-path\n", "unicast RPF"),
        ("interface Ethernet0\n ip policy route-map PBR\n", "policy routing"),
        ("interface Ethernet0\n ip audit AUDIT in\n", "intrusion detection"),
        ("interface Ethernet0\n ip auth-proxy AP\n", "authentication proxy"),
        ("interface Ethernet0\n ip wccp web-cache redirect in\n", "WCCP"),
        ("interface Ethernet0\n rate-limit input 8000 8000 8000 conform-action transmit "
         "exceed-action drop\n", "rate-limit"),
        ("interface Ethernet0\n ip nat enable\n", "ip nat enable"),
        ("interface Ethernet0\n ip address negotiated\n", "no PPP"),
        # zone-based firewall (cbac.config.zbf): forms it does not enforce
        ("zone inside\n", "zone-based"),
        ("zone-pair security in-out source inside destination outside\n", "is not defined"),
        ("class-map type inspect http match-any C\n", "not supported"),
        ("class-map type inspect match-any C\n match protocol h323\n", "does not inspect"),
        ("policy-map type inspect im P\n", "not supported"),
        ("parameter-map type inspect global\n log dropped-packets enable\n", "unsupported"),
        ("ip port-map http port 8080\n", "port-map"),
        ("ip tcp intercept list 101\n", "TCP intercept"),
        ("no ip routing\n", "no ip routing"),
        ("ip inspect tcp block-non-session\n", "ip inspect"),
        ("ip nat source list 1 interface Ethernet0 overload\n", "NAT"),
        ("ip nat inside source route-map RM interface Ethernet0 overload\n", "route-map"),
        ("ip nat outside source list 1 pool P overload\n", "outside source list"),
        ("ip nat outside source list 1 interface Ethernet0\n", "outside source list"),
        ("ip nat inside source list 1 pool P add-route\n", "add-route"),
        ("ip route 10.9.0.0 255.255.0.0 192.0.2.2 track 3\n", "track"),
        ("ip nat inside source static tcp 10.0.0.5 80 192.0.2.1 80 add-route\n", "add-route"),
        ("ip nat inside source static network 10.0.0.0 192.0.2.0 /16\n", "at most 4096"),
        ("ip nat inside source static network 10.0.0.1 192.0.2.0 /24\n", "inconsistent"),
        ("ip nat outside source static network 10.0.0.0 192.0.2.0 /24\n", "inside"),
        ("access-list 102 permit tcp any any time-range WORK\n", "time-range"),
        ("access-list 102 permit tcp any any reflect R\n", "reflect"),
        ("access-list 102 dynamic D permit ip any any\n", "dynamic"),
        ("control-plane\n service-policy input COPP\n", "service-policy"),
        ("ip inspect name FW fragment maximum 256 timeout 1\n", "fragment"),
        ("ip inspect name FW appfw POLICY\n", "appfw"),
    ]

    def test_each_refused_with_its_line(self):
        for snippet, why in self.REFUSED:
            text = BASE + snippet
            r, diags = run(text)
            errs = [d for d in diags if d.is_error]
            self.assertTrue(errs, "not refused: %r" % snippet)
            last = len(text.splitlines())
            self.assertEqual(errs[-1].line, last, "%r: %s" % (snippet, [d.format() for d in errs]))
            self.assertIn(why.lower(), errs[-1].message.lower(), snippet)
            self.assertEqual(errs[-1].text, snippet.strip().splitlines()[-1].strip())

    def test_refused_unindented_inside_interface(self):
        # Flat paste: the refused line stays on its interface (IOS reads it
        # in interface mode) and the interface keeps its later lines.
        r, diags = run(BASE + "interface Ethernet0\ncrypto map VPN\nip access-group 101 in\n")
        self.assertIn("crypto map", errors_at(diags)[len(BASE.splitlines()) + 2])
        self.assertEqual(r.interfaces["Ethernet0"].access_group_in, "101")

    def test_refused_block_children_are_errors_too(self):
        r, diags = run(BASE + "zone-pair security a source x destination y\n"
                       " service-policy type inspect P\n!\nip route 0.0.0.0 0.0.0.0 192.0.2.2\n")
        n = len(BASE.splitlines())
        errs = errors_at(diags)
        self.assertIn(n + 1, errs)
        self.assertIn(n + 2, errs)
        self.assertEqual(len(r.routes), 1)          # the block ended at the comment

    def test_less_permissive_lines_stay_warnings(self):
        for snippet in ("ip inspect name X rtsp\n", "ip inspect name X h323\n",
                        "ip inspect name X tcp router-traffic\n",
                        "interface Ethernet0\n ipv6 traffic-filter V6 in\n",
                        "interface Ethernet0\n ip helper-address 10.0.0.9\n",
                        "ip ips name IPS-1\n", "crypto map VPN 10 ipsec-isakmp\n set peer 1.2.3.4\n"):
            r, diags = run(BASE + snippet)
            self.assertEqual([d.format() for d in diags if d.is_error], [], snippet)

    def test_ip_options_lines_enforced_without_warning(self):
        """``no ip source-route`` and ``ip options drop|ignore`` are acted on
        (cbac/dataplane/ipoptions.py): no warning, in the model, rendered
        back."""
        n = len(BASE.splitlines())
        for line, field, value in (("no ip source-route", "source_route", False),
                                   ("ip options drop", "ip_options", "drop"),
                                   ("ip options ignore", "ip_options", "ignore")):
            r, diags = run(BASE + line + "\nip cef\n")
            self.assertEqual([d.line for d in diags if d.line == n + 1], [], line)
            self.assertEqual(getattr(r, field), value)
            self.assertEqual(r.extra, [x for x in r.extra if x.text != line])
            self.assertIn("\n%s\n" % line, render(r))
            again, d2 = run(render(r))
            self.assertEqual(getattr(again, field), value)
        r, diags = run(BASE + "ip options drop\nno ip options drop\n")
        self.assertIsNone(r.ip_options)

    def test_ip_source_route_warns_that_it_is_not_implemented(self):
        r, diags = run(BASE + "ip source-route\n")
        full, counts = grouped(diags)
        self.assertEqual([d.line for d in full], [len(BASE.splitlines()) + 1])
        self.assertIn("dropped", full[0].message)
        self.assertNotIn("\nip source-route", render(r))

    def test_bad_ip_options_is_an_error_with_its_line(self):
        for line in ("ip options", "ip options bogus", "ip options drop now",
                     "ip source-route always"):
            r, diags = run(BASE + line + "\n")
            self.assertEqual(list(errors_at(diags)), [len(BASE.splitlines()) + 1], line)

    def test_undefined_references_are_errors(self):
        # issue 17: a reload naming a list that does not exist must not open the box
        for snippet, what in (
                ("interface Ethernet0\n ip access-group 110 in\n", "access list 110"),
                ("interface Ethernet0\n ip access-group NOPE out\n", "access list NOPE"),
                ("line vty 0 4\n access-class 5 in\n", "access-class 5"),
                ("ip nat inside source list 7 interface Ethernet0 overload\n", "access list 7"),
                ("ip nat inside source list 1 pool NOPOOL\n", "pool NOPOOL"),
                ("ip route 10.1.0.0 255.255.0.0 Tunnel9\n", "Tunnel9")):
            r, diags = run(BASE + snippet)
            errs = [d.message for d in diags if d.is_error]
            self.assertTrue(any(what in m for m in errs), (snippet, errs))


class BannerTests(unittest.TestCase):
    BODY = ["*** NOTICE ***", "interface Ethernet0", "ip access-group 1 in",
            "Access-list violations are reported.", "END OF NOTICE", "end", "!",
            "  no ip inspect name X", "banner motd x"]

    def check_banner(self, text, kind, expect_body):
        r, diags = run(BASE + text + "interface Ethernet0\n ip access-group 101 in\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        self.assertEqual(r.banners[kind].text, expect_body)
        # the banner text changed nothing, and the block after it is read
        self.assertEqual(set(r.interfaces), {"Ethernet0", "Ethernet1"})
        self.assertEqual(r.interfaces["Ethernet0"].access_group_in, "101")
        self.assertEqual(r.acls["1"].entries[0].action, "permit")
        self.assertFalse(r.inspect_rules)
        # rendered and read back: the same banner
        r2, d2 = parse_config(render(r))
        self.assertEqual(r2.banners, r.banners)
        return r

    def test_caret_c_delimiter_alone_on_lines(self):
        body = "\n".join(self.BODY)
        self.check_banner("banner motd ^C\n%s\n^C\n" % body, "motd", body)

    def test_caret_cc_as_show_running_config_prints_it(self):
        body = "\n".join(self.BODY)
        self.check_banner("banner login ^CC\n%s\n^C\n" % body, "login", "C\n" + body)

    def test_real_etx_character(self):
        body = "\n".join(self.BODY)
        self.check_banner("banner exec \x03\n%s\n\x03\n" % body, "exec", body)

    def test_hash_and_any_character(self):
        for d in "#%@Z":
            body = "\n".join(x for x in self.BODY if d not in x)
            self.check_banner("banner motd %s\n%s\n%s\n" % (d, body, d), "motd", body)

    def test_text_on_the_opening_and_closing_lines(self):
        self.check_banner("banner motd #Authorized access only.\nEND OF NOTICE#\n", "motd",
                          "Authorized access only.\nEND OF NOTICE")
        self.check_banner("banner incoming %one line only%\n", "incoming", "one line only")
        self.check_banner("banner ^CHi\ninterface Ethernet1\n shutdown^C\n", "motd",
                          "Hi\ninterface Ethernet1\n shutdown")

    def test_unterminated_banner_is_an_error_naming_its_line(self):
        r, diags = run(BASE + "banner motd ^C\nhello\ninterface Ethernet0\n ip access-group 101 in\n")
        errs = [d for d in diags if d.is_error]
        self.assertEqual(len(errs), 1, [d.format() for d in errs])
        self.assertEqual(errs[0].line, len(BASE.splitlines()) + 1)
        self.assertIn("not terminated", errs[0].message)

    def test_banner_warning_is_grouped(self):
        r, diags = run(BASE + "banner motd ^C\nhi\n^C\n")
        full, counts = grouped(diags)
        self.assertEqual(full, [])
        self.assertTrue(any("banners" in c for c in counts), counts)


FLAT_BRANCH = """hostname branch
interface FastEthernet0/0
description WAN
ip address 198.51.100.2 255.255.255.252
logging event link-status
ip dhcp relay information trusted
ntp disable
ip virtual-reassembly in
no ip redirects
no ip proxy-arp
ip access-group OUTSIDE-IN in
ip inspect FW out
ip nat outside
duplex auto
speed auto
interface FastEthernet0/1
description LAN
ip address 10.1.1.1 255.255.255.0
ip virtual-reassembly out
logging event link-status
ip nat inside
ip access-group 1 in
ip route 0.0.0.0 0.0.0.0 198.51.100.1
ip nat inside source list 1 interface FastEthernet0/0 overload
ip inspect name FW tcp
ip inspect name FW udp
ip access-list extended OUTSIDE-IN
permit icmp any any echo-reply
10000 deny ip any any log
access-list 1 permit 10.1.1.0 0.0.0.255
line con 0
logging synchronous
exec-timeout 0 0
line vty 0 4
logging synchronous
access-class 1 in
transport input ssh
login local
end
"""


def indent(text):
    """The same configuration as show running-config prints it."""
    out = []
    block = False
    for line in text.splitlines():
        w = line.split()
        opener = w[0] in ("interface", "line") or w[:2] == ["ip", "access-list"]
        global_ = opener or w[0] in ("hostname", "end", "access-list") or w[:2] in (
            ["ip", "route"], ["ip", "inspect"], ["ip", "nat"]) and len(w) > 3
        if opener:
            out.append(line)
            block = True
        elif global_:
            out.append(line)
            block = False
        else:
            out.append((" " if block else "") + line)
    return "\n".join(out) + "\n"


class UnindentedTests(unittest.TestCase):
    def test_flat_branch_config_reads_as_ios(self):
        r, diags = run(FLAT_BRANCH)
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        wan = r.interfaces["FastEthernet0/0"]
        self.assertEqual((wan.access_group_in, wan.inspect_out, wan.nat),
                         ("OUTSIDE-IN", "FW", "outside"))
        lan = r.interfaces["FastEthernet0/1"]
        self.assertEqual((lan.access_group_in, lan.nat), ("1", "inside"))
        self.assertEqual([v.text for v in wan.extra][:4],
                         ["logging event link-status", "ip dhcp relay information trusted",
                          "ntp disable", "ip virtual-reassembly in"])
        self.assertEqual([e.seq for e in r.acls["OUTSIDE-IN"].entries], [10, 10000])
        self.assertEqual(r.vty[0].access_class, "1")
        self.assertEqual(len(r.routes), 1)

    def test_indenting_changes_nothing(self):
        flat, d1 = run(FLAT_BRANCH)
        ind, d2 = run(indent(FLAT_BRANCH))
        self.assertEqual([d.format() for d in d2 if d.is_error], [])
        self.assertEqual(flat, ind)

    def test_exit_ends_any_block(self):
        r, diags = run(BASE + "interface Ethernet0\nexit\nip access-list extended X\n"
                       "permit ip any any\nexit\nline vty 0 4\nexit\nrouter ospf 1\nexit\n"
                       "no ip source-route\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        self.assertEqual(len(r.acls["X"].entries), 1)
        self.assertNotIn("no ip source-route", [c for v in r.extra for c in v.children])

    def test_nested_indentation_kept(self):
        r, diags = run(BASE + "interface Ethernet0\n ip access-group 101 in\n"
                       "ip route 0.0.0.0 0.0.0.0 192.0.2.9\n")
        self.assertEqual(r.interfaces["Ethernet0"].access_group_in, "101")
        self.assertEqual(len(r.routes), 1)


class AcceptValidIosTests(unittest.TestCase):
    def test_route_options_and_null0(self):
        r, diags = run(BASE + "ip route 0.0.0.0 0.0.0.0 192.0.2.254 250 name DEFAULT tag 5 permanent\n"
                       "ip route 10.99.0.0 255.255.0.0 Null0\n"
                       "ip route 172.16.0.0 255.240.0.0 Null0 254\n"
                       "interface Null0\n no ip unreachables\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        d = r.routes[0]
        self.assertEqual((d.distance, d.name, d.tag, d.permanent), (250, "DEFAULT", 5, True))
        self.assertEqual(r.routes[1].interface, "Null0")
        self.assertIn("interface Null0\n no ip unreachables\n!", render(r))   # as IOS prints it
        self.assertIn("ip route 0.0.0.0 0.0.0.0 192.0.2.254 250 name DEFAULT permanent tag 5",
                      render(r))
        self.assertEqual(parse_config(render(r))[0], r)

    def test_subinterfaces_vty_login_hostname_ports_remarks(self):
        r, diags = run(BASE + "interface Serial0/0.1 point-to-point\n ip address 10.9.9.1 255.255.255.252\n"
                       "interface FastEthernet0/1.20 multipoint\n"
                       "line vty 0 15\n login authentication VTY-AUTH\nline vty 5 80\n"
                       "hostname a-63-chars-" + "x" * 40 + "z\n"
                       "access-list 150 permit udp any any eq non500-isakmp\n"
                       "access-list 150 permit udp any any eq isakmp\n"
                       "ip access-list extended OUT\n 10 remark allow web\n 20 permit tcp any any eq www\n"
                       " 30 remark IOS-XE prints remarks with numbers\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        self.assertEqual(r.interfaces["Serial0/0.1"].subif_type, "point-to-point")
        self.assertEqual(r.vty[0].login_authentication, "VTY-AUTH")
        self.assertEqual((r.vty[1].first, r.vty[1].last), (5, 80))
        self.assertEqual(r.acls["150"].entries[0].destination_port.ports, (4500,))
        self.assertEqual([e.seq for e in r.acls["OUT"].entries], [10, 20, 30])
        self.assertIn("eq non500-isakmp", render(r))
        self.assertEqual(parse_config(render(r))[0], r)

    def test_hostname_rule(self):
        for bad in ("-fw", "fw-", "fw_1", "a" * 64, "f.w"):
            r, diags = run("hostname %s\n" % bad)
            self.assertTrue([d for d in diags if d.is_error], bad)
        for good in ("fw", "3640-123", "a" * 63, "R1"):
            r, diags = run("hostname %s\n" % good)
            self.assertEqual(r.hostname, good)

    def test_ip_address_dhcp_in_model(self):
        r, diags = run(BASE.replace(" ip address 192.0.2.1 255.255.255.0", " ip address dhcp")
                       + "ip nat inside source list 1 interface Ethernet0 overload\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        self.assertTrue(r.interfaces["Ethernet0"].dhcp)
        self.assertIn(" ip address dhcp\n", render(r))
        self.assertEqual(parse_config(render(r))[0], r)

    def test_route_via_dhcp_warns(self):
        r, diags = run(BASE + "ip route 0.0.0.0 0.0.0.0 dhcp 200\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        self.assertEqual(r.routes, [])
        self.assertTrue(any("DHCP" in d.message for d in grouped(diags)[0]))
        self.assertEqual(parse_config(render(r))[0], r)

    def test_router_traffic_parsed(self):
        r, diags = run(BASE + "ip inspect name FW tcp router-traffic timeout 300\n"
                       "interface Ethernet0\n ip inspect FW out\n")
        p = r.inspect_rules["FW"].protocols[0]
        self.assertTrue(p.router_traffic)
        self.assertEqual(p.timeout, 300)
        self.assertIn("ip inspect name FW tcp timeout 300 router-traffic", render(r))
        full, counts = grouped(diags)
        # implemented (cbac.dataplane.selftraffic, tests/test_selftraffic.py):
        # a warning only where it cannot take effect
        self.assertFalse(any("router-traffic" in d.message for d in full))
        r, diags = run(BASE + "ip inspect name FW tcp router-traffic\n"
                       "interface Ethernet0\n ip inspect FW in\n")
        full, counts = grouped(diags)
        self.assertTrue(any("router-traffic has no effect" in d.message for d in full))

    def test_logging_forms_warn(self):
        r, diags = run(BASE + "logging buffered 51200 warnings discriminator D\n"
                       "logging discriminator D severity drops 6\nlogging event link-status default\n"
                       "logging source-interface Ethernet1\nlogging facility local2\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])


class EncodingAndBoundsTests(unittest.TestCase):
    def test_random_bytes_utf16_nul(self):
        import random
        rnd = random.Random(7)
        junk = bytes(rnd.randrange(256) for _ in range(1 << 20))
        r, diags = parse_bytes(junk, "junk")
        self.assertEqual(len(diags), 1)
        self.assertTrue(diags[0].is_error)
        import re
        for no, raw in enumerate(junk.split(b"\n"), 1):
            try:
                if re.search("[\x00-\x02\x04-\x08\x0b-\x1f\x7f]", raw.rstrip(b"\r").decode()):
                    break
            except UnicodeDecodeError:
                break
        self.assertEqual(diags[0].line, no)
        self.assertIn("line is not configuration text", diags[0].message)
        self.assertEqual(parse_bytes(b"hostname fw\n!\n" + junk, "junk")[1][0].line,
                         diags[0].line + 2)
        text = BASE.encode()
        r, diags = parse_bytes(text.decode().encode("utf-16"), "u16")
        self.assertEqual((diags[0].line, diags[0].is_error), (1, True))
        self.assertIn("UTF-16", diags[0].message)
        r, diags = parse_bytes(text.decode().encode("utf-16-le"), "u16le")
        self.assertEqual((diags[0].line, diags[0].is_error), (1, True))
        r, diags = parse_bytes(text + b"interface Ethernet2\n ip add\x00ress 1.1.1.1\n", "nul")
        self.assertEqual([(d.line, d.is_error) for d in diags], [(11, True)])
        self.assertIn("0x00", diags[0].message)
        r, diags = parse_bytes(text + b"description caf\xe9\n", "latin1")
        self.assertEqual([(d.line, d.is_error) for d in diags], [(10, True)])
        # UTF-8 text (and a UTF-8 BOM) is fine
        r, diags = parse_bytes(b"\xef\xbb\xbf" + text + " description café\n".encode(), "u8")
        self.assertEqual([d.format() for d in diags if d.is_error], [])

    def test_report_of_junk_names_first_bad_line(self):
        r, diags = parse_bytes(b"hostname fw\n!\n\x01\x02\x03garbage\nmore\n", "j")
        self.assertIn("j:3: error: line is not configuration text", report("j", diags))

    def test_pool_size_bounded(self):
        r, diags = run(BASE + "ip nat pool HUGE 1.0.0.1 1.255.255.254 prefix-length 8\n")
        self.assertIn("at most 65536", errors_at(diags)[len(BASE.splitlines()) + 1])
        r, diags = run(BASE + "ip nat pool OK 10.8.0.1 10.8.255.254 prefix-length 16\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])

    def test_log_buffer_bounded(self):
        r, diags = run(BASE + "logging buffered 2147483647\n")
        self.assertIn("at most 67108864", errors_at(diags)[len(BASE.splitlines()) + 1])
        r, diags = run(BASE + "logging buffered 1000000 informational\n")
        self.assertEqual((r.logging.buffered, r.logging.buffered_level), (1000000, 6))

    def test_large_config_is_linear(self):
        def config(n_routes, n_aces):
            lines = [BASE]
            for i in range(n_routes):
                lines.append("ip route 10.%d.%d.0 255.255.255.0 192.0.2.2\n" % (i >> 8 & 255, i & 255))
            lines.append("ip access-list extended BIG\n")
            for i in range(n_aces):
                lines.append(" permit tcp host 10.1.%d.%d any eq %d\n" % (i >> 8 & 255, i & 255, 1 + i % 60000))
            return "".join(lines)
        t0 = time.perf_counter()
        run(config(3000, 2000))
        small = time.perf_counter() - t0
        t0 = time.perf_counter()
        r, diags = run(config(30000, 20000))
        big = time.perf_counter() - t0
        self.assertEqual((len(r.routes), len(r.acls["BIG"].entries)), (30000, 20000))
        # ten times the input costs about ten times the time, not a hundred
        self.assertLess(big, small * 25 + 1.0, (small, big))


class WriteMemoryTests(unittest.TestCase):
    def test_refuses_to_save_what_would_not_load(self):
        import os
        from twisted.internet.task import Clock
        from cbac.app import Appliance
        d = self.mktemp()
        os.makedirs(d)
        path = os.path.join(d, "router.conf")
        with open(path, "w") as f:
            f.write(BASE)
        model, diags = run(BASE)
        app = Appliance(model, Clock(), {}, config_path=path, engines=False)
        self.assertIn("[OK]", app.copy_running_startup())
        good = open(path).read()
        self.assertEqual(parse_config(good)[0], model)
        # a running configuration that names a list that does not exist
        model.interfaces["Ethernet0"].access_group_in = "199"
        out = app.copy_running_startup()
        self.assertIn("would not load; not saved", out)
        self.assertIn("access list 199 is not defined", out)
        self.assertEqual(open(path).read(), good)


def flatten(text):
    """Remove all indentation, except inside banner bodies (text)."""
    out, delim = [], None
    for line in text.splitlines():
        if delim is not None:
            out.append(line)
            if delim in line:
                delim = None
            continue
        w = line.split()
        if w[:1] == ["banner"] and len(w) == 3:
            delim = w[2]
        out.append(line.lstrip())
    return "\n".join(out) + "\n"


class IndentationPropertyTests(unittest.TestCase):
    """Indenting or un-indenting a valid configuration changes nothing about
    the model: every configuration the renderer can print (hypothesis draws
    the models), read flat, is the same configuration."""

    def test_flat_equals_indented(self):
        from hypothesis import HealthCheck, given, settings

        from tests.test_config_render import routers

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(routers())
        def prop(router):
            text = render(router)
            flat = flatten(text)
            for t in (text, flat):
                parsed, diags = parse_config(t)
                self.assertEqual([d.format() for d in diags if d.is_error], [], t)
                self.assertEqual(parsed, router, t)
        prop()

    def test_flat_branch_with_banners_both_ways(self):
        text = "banner motd ^C\ninterface Ethernet9\nEND OF NOTICE\n^C\n" + FLAT_BRANCH
        a, da = run(text)
        b, db = run(indent(FLAT_BRANCH).replace("hostname branch\n", "hostname branch\n"
                    "banner motd ^C\ninterface Ethernet9\nEND OF NOTICE\n^C\n"))
        self.assertEqual([d.format() for d in da + db if d.is_error], [])
        self.assertEqual(a, b)
        self.assertNotIn("Ethernet9", a.interfaces)


class NatFormsTests(unittest.TestCase):
    def test_static_network_translates_each_address(self):
        from twisted.internet.task import Clock
        from cbac.nat.table import Nat
        from tests.test_nat import tcp
        text = BASE + "ip nat inside source static network 10.0.0.0 198.51.100.0 /24\n"
        r, diags = run(text)
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        self.assertEqual(len(r.nat.statics), 256)
        self.assertEqual(render(r).count("source static"), 1)
        self.assertIn("ip nat inside source static network 10.0.0.0 198.51.100.0 /24\n", render(r))
        self.assertEqual(parse_config(render(r))[0], r)
        nat = Nat(r, Clock())
        p = tcp("10.0.0.77", "192.0.2.99", 40000, 80)
        self.assertIsNotNone(nat.outbound(p, "Ethernet1", "Ethernet0"))
        self.assertEqual(IPv4Address(p.src), IPv4Address("198.51.100.77"))
        p = tcp("192.0.2.99", "198.51.100.9", 5555, 22)
        self.assertIsNotNone(nat.inbound(p, "Ethernet0"))
        self.assertEqual(IPv4Address(p.dst), IPv4Address("10.0.0.9"))
        # removed as a whole
        r2, _ = run(text + "no ip nat inside source static network 10.0.0.0 198.51.100.0 /24\n")
        self.assertEqual(r2.nat.statics, [])

    def test_outside_static_add_route(self):
        from twisted.internet.task import Clock
        from cbac.dataplane.router import Router as DataRouter
        r, diags = run(BASE + "ip route 0.0.0.0 0.0.0.0 192.0.2.254\n"
                       "ip nat outside source static 198.51.100.8 10.0.0.99 add-route\n")
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        self.assertTrue(r.nat.statics[0].add_route)
        self.assertIn("ip nat outside source static 198.51.100.8 10.0.0.99 add-route", render(r))
        self.assertEqual(parse_config(render(r))[0], r)
        dr = DataRouter(r, Clock(), {}, None, None, None)
        # 10.0.0.99 (inside the inside subnet) now routes towards the outside global
        e = [x for x in dr.routes.entries() if x.prefixlen == 32]
        self.assertEqual([(IPv4Address(x.network), IPv4Address(x.next_hop)) for x in e],
                         [(IPv4Address("10.0.0.99"), IPv4Address("198.51.100.8"))])


class MisplacedTests(unittest.TestCase):
    def test_interface_commands_outside_an_interface_are_errors(self):
        # after an ACL block (not valid there) or at the top: IOS says
        # "% Invalid input"; keeping it as a global line would drop the filter
        for snippet in ("ip access-list extended X\npermit ip any any\nip access-group X in\n",
                        "ip access-group 101 in\n", "ip inspect FW in\n", "ip nat outside\n",
                        "line vty 0 4\nexit\naccess-class 1 in\n",
                        "ip access-list standard S\npermit any\nip address 1.2.3.4 255.0.0.0\n"):
            r, diags = run(BASE + snippet)
            errs = [d for d in diags if d.is_error]
            self.assertEqual([d.line for d in errs], [len((BASE + snippet).splitlines())],
                             (snippet, [d.format() for d in diags]))
            self.assertIn("no interface or line block is open", errs[0].message)


class ReloadTests(unittest.TestCase):
    """configure replace / SIGHUP: a configuration with errors is refused
    and the running configuration stays (issue 17)."""

    def appliance(self):
        import os
        from twisted.internet.task import Clock
        from cbac.app import Appliance
        model, diags = run(BASE)
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        return Appliance(model, Clock(), {}, config_path=None, engines=False), model

    def replace(self, app, data):
        import os
        path = os.path.join(self.dir, "new.conf")
        with open(path, "wb") as f:
            f.write(data)
        return app.configure_replace(path)

    def test_undefined_acl_junk_utf16_and_huge_pool_refused(self):
        app, model = self.appliance()
        for data, why in (
                ((BASE + "interface Ethernet0\n ip access-group 110 in\n").encode(),
                 "access list 110 is not defined"),
                (bytes(range(256)) * 64, "not configuration text"),
                (BASE.encode("utf-16"), "UTF-16"),
                ((BASE + "ip nat pool P 10.0.0.0 10.255.255.255 prefix-length 8\n").encode(),
                 "at most 65536")):
            ok, text = self.replace(app, data)
            self.assertFalse(ok, text)
            self.assertIn(why, text)
            self.assertIn("the running configuration is unchanged", text)
            self.assertIs(app.model, model)
        ok, text = self.replace(app, (BASE + "ip route 0.0.0.0 0.0.0.0 192.0.2.254\n").encode())
        self.assertTrue(ok, text)
        self.assertEqual(len(app.model.routes), 1)


class OverlapScaleTests(unittest.TestCase):
    def test_many_interfaces_overlap_check_is_not_quadratic(self):
        lines = []
        for i in range(4000):
            lines.append("interface Loopback%d\n ip address 10.%d.%d.1 255.255.255.0\n"
                         % (i, i >> 8, i & 255))
        lines.append("interface Loopback9999\n ip address 10.0.5.9 255.255.0.0\n")
        t0 = time.perf_counter()
        r, diags = run("".join(lines))
        self.assertLess(time.perf_counter() - t0, 10)
        errs = [d for d in diags if d.is_error]
        self.assertEqual(len(errs), 1, [d.format() for d in errs[:5]])
        self.assertIn("Loopback9999: 10.0.0.0/16 overlaps with Loopback0", errs[0].message)


class LogSummaryTests(unittest.TestCase):
    def test_log_lines_group_harmless_and_keep_the_rest(self):
        from cbac.config.errors import log_lines
        r, diags = run(BASE + "line con 0\n exec-timeout 0 0\n logging synchronous\n"
                       "ip inspect name X h323\nservice tcp-keepalives-in\n")
        lines = log_lines("t.conf", diags)
        self.assertEqual(lines[0], "t.conf:13: warning: accepted, not acted on: cbac does not "
                         "inspect 'h323': ip inspect name X h323")
        self.assertIn("t.conf: 3 lines of line/aux/console settings, not acted on (first: line 10)",
                      lines)
        self.assertIn("t.conf: 1 line of system settings (services, boot, clock, NTP, licences, "
                      "hardware cards), not acted on (first: line 14)", lines)
        self.assertEqual(len(lines), 3)


class NoBannerTests(unittest.TestCase):
    def test_no_banner_removes_it(self):
        r, diags = run(BASE + "banner motd #hi#\nbanner login #x#\nno banner motd\n")
        self.assertEqual(set(r.banners), {"login"})
        self.assertEqual([d.format() for d in diags if d.is_error], [])

    def test_no_ip_inspect_removes_all_inspection(self):
        r, diags = run(BASE + "ip inspect name FW tcp\nip inspect audit-trail\n"
                       "interface Ethernet1\n ip inspect FW in\nno ip inspect\n")
        self.assertEqual(r.inspect_rules, {})
        self.assertFalse(r.inspect.audit_trail)
        self.assertIsNone(r.interfaces["Ethernet1"].inspect_in)


class AaaTests(unittest.TestCase):
    def vty_diags(self, extra):
        r, diags = run(BASE + extra)
        return [(d.severity, d.message) for d in diags if "line vty" in d.message]

    def test_method_lists(self):
        # no aaa: IOS ignores login authentication (warning)
        d = self.vty_diags("line vty 0 4\n login authentication VTY\n")
        self.assertEqual([s for s, m in d], ["warning"])
        # aaa with local lists or none at all: as cbac does, silent
        self.assertEqual(self.vty_diags("aaa new-model\nline vty 0 4\n login local\n"), [])
        self.assertEqual(self.vty_diags("aaa new-model\naaa authentication login VTY local\n"
                                        "line vty 0 4\n login authentication VTY\n"), [])
        # servers: refused, named list or default
        d = self.vty_diags("aaa new-model\naaa authentication login default group tacacs+ local\n"
                           "line vty 0 4\n transport input ssh\n")
        self.assertEqual([s for s, m in d], ["error"])
        self.assertIn("authentication servers", d[0][1])
        d = self.vty_diags("aaa new-model\naaa authentication login VTY group radius local\n"
                           "line vty 0 15\n login authentication VTY\n")
        self.assertEqual([s for s, m in d], ["error"])
        d = self.vty_diags("aaa new-model\nline vty 0 4\n login authentication NOPE\n")
        self.assertEqual([s for s, m in d], ["error"])
