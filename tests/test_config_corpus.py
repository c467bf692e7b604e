"""A corpus of real-looking router configurations (tests/configs/): for each,
the exact model cbac enforces or the exact lines it refuses.

* ``branch-flat.conf``: a branch router pasted flat from a terminal:
  banners whose text looks like commands, interface settings IOS keeps in
  interface mode, PAT, a published server, a Null0 discard route.
* ``branch-running.conf``: the same router as ``show running-config``
  prints it (prompt, ``Building configuration...``, ``Current
  configuration``, ``!`` lines, indentation, ``end``): the same model.
* ``lab-export-zbf.conf``: a zone-based firewall lab export: refused, every
  zone-based line named.
* ``vpn-branch.conf``: a crypto-map VPN branch: refused (the tunnel would
  pass unencrypted; a tracked route would stay up).

The lab test (tests/test_lab_config_corpus.py) runs branch-flat.conf in
the namespace lab and checks that it filters.
"""

import os
from ipaddress import IPv4Address

from twisted.trial import unittest

from cbac.config.check import check
from cbac.config.errors import grouped, report
from cbac.config.parser import parse_file
from cbac.config.render import render
from cbac.config.parser import parse_config

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def load(name):
    path = os.path.join(HERE, name)
    router, diags = parse_file(path)
    return router, diags + check(router, filename=path)


def error_lines(diags):
    return sorted({d.line for d in diags if d.is_error})


def line_of(name, text, start=1):
    with open(os.path.join(HERE, name)) as f:
        for no, line in enumerate(f, 1):
            if no >= start and line.strip() == text:
                return no
    raise AssertionError("%s not in %s" % (text, name))


class BranchTests(unittest.TestCase):
    def check_branch(self, r, diags):
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        self.assertEqual(r.hostname, "branch-lab")
        wan, lan = r.interfaces["Ethernet2/0"], r.interfaces["Ethernet2/1"]
        # every security-relevant line landed where IOS puts it
        self.assertEqual((wan.address.with_prefixlen, wan.access_group_in, wan.access_group_out,
                          wan.nat, wan.inspect_in, wan.inspect_out, wan.unreachables),
                         ("172.22.1.16/24", "OUTSIDE-IN", None, "outside", None, None, False))
        self.assertEqual((lan.address.with_prefixlen, lan.access_group_in, lan.nat,
                          lan.inspect_in), ("10.10.10.1/24", None, "inside", "FW"))
        self.assertEqual(set(r.interfaces), {"Ethernet2/0", "Ethernet2/1", "Null0"})
        self.assertEqual([p.protocol for p in r.inspect_rules["FW"].protocols],
                         ["tcp", "udp", "icmp", "tftp"])
        acl = r.acls["OUTSIDE-IN"]
        self.assertEqual([(e.seq, e.action) for e in acl.entries],
                         [(10, "remark"), (20, "permit"), (30, "deny")])
        self.assertEqual(acl.entries[1].destination.address, IPv4Address("172.22.1.16"))
        self.assertEqual(acl.entries[1].destination_port.ports, (8025,))
        self.assertEqual([e.action for e in r.acls["1"].entries], ["remark", "permit"])
        self.assertEqual(len(r.acls), 2)
        nat = r.nat
        self.assertEqual([(d.acl, d.interface, d.overload) for d in nat.dynamics],
                         [("1", "Ethernet2/0", True)])
        self.assertEqual([(str(s.local), s.local_port, str(s.global_), s.global_port)
                          for s in nat.statics], [("10.10.10.25", 8025, "172.22.1.16", 8025)])
        self.assertEqual([(str(x.prefix), x.interface, str(x.next_hop), x.distance, x.name)
                          for x in r.routes],
                         [("0.0.0.0/0", None, "172.22.1.1", 1, "ISP"),
                          ("192.168.0.0/16", "Null0", "None", 254, None)])
        self.assertEqual((r.vty[0].access_class, r.vty[0].login_local, r.vty[0].transport_input),
                         ("1", True, "ssh"))
        self.assertIn("END OF NOTICE", r.banners["motd"].text)
        self.assertIn("ip nat inside source static tcp 10.10.10.2 8080", r.banners["login"].text)
        # what the user reads: only lines that matter, in full
        full, counts = grouped(diags)
        msgs = [d.message for d in full]
        self.assertFalse(any("cbac does not inspect" in m for m in msgs), msgs)   # tftp is inspected
        self.assertFalse(r.source_route)        # no ip source-route: acted on, no warning
        self.assertFalse(any("source-rout" in m for m in msgs), msgs)
        self.assertLessEqual(len(full), 4, [d.format() for d in full])
        self.assertTrue(any("line/aux/console" in c for c in counts), counts)

    def test_flat_paste(self):
        r, diags = load("branch-flat.conf")
        self.check_branch(r, diags)

    def test_show_running_config_listing(self):
        r, diags = load("branch-running.conf")
        self.check_branch(r, diags)

    def test_flat_and_listing_are_the_same_configuration(self):
        a, _ = load("branch-flat.conf")
        b, _ = load("branch-running.conf")
        a.extra.sort(key=lambda v: v.text)
        b.extra.sort(key=lambda v: v.text)
        self.assertEqual(a, b)

    def test_render_reads_back(self):
        r, _ = load("branch-flat.conf")
        r2, d2 = parse_config(render(r))
        self.assertEqual([d.format() for d in d2 if d.is_error], [])
        self.assertEqual(r2, r)


class ZoneBasedExportTests(unittest.TestCase):
    def test_zone_based_export_is_read_whole(self):
        # the zone-based firewall is enforced (cbac/inspect/zones.py): an
        # IOS export using it loads with no error, zones and policy intact
        name = "lab-export-zbf.conf"
        r, diags = load(name)
        self.assertEqual(error_lines(diags), [], report(name, diags))
        self.assertEqual(r.interfaces["GigabitEthernet0/0"].zone, "OUTSIDE")
        self.assertEqual(r.interfaces["GigabitEthernet0/1"].zone, "INSIDE")
        zp = r.zbf.zone_pairs["IN-TO-OUT"]
        self.assertEqual((zp.source, zp.destination), ("INSIDE", "OUTSIDE"))
        self.assertEqual(zp.service_policy, "INSIDE-TO-OUTSIDE")
        self.assertEqual(r.interfaces["GigabitEthernet0/0"].nat, "outside")
        self.assertEqual(len(r.routes), 1)
        self.assertIn("configuration OK", report(name, diags).splitlines()[-1])

    def test_vpn_branch_refused(self):
        name = "vpn-branch.conf"
        r, diags = load(name)
        errs = {d.line: d.message for d in diags if d.is_error}
        self.assertEqual(sorted(errs), [line_of(name, "crypto map VPN"),
                                        line_of(name, "ip route 10.30.0.0 255.255.0.0 "
                                                "203.0.113.1 track 10")])
        self.assertIn("unencrypted", errs[line_of(name, "crypto map VPN")])
        # the rest is read as IOS reads it: the unindented interface keeps
        # its access-group after the refused line; port names, vty 0 15
        self.assertEqual(r.interfaces["FastEthernet0/0"].access_group_in, "101")
        self.assertEqual([e.destination_port.ports for e in r.acls["101"].entries[:2]],
                         [(500,), (4500,)])
        self.assertEqual((r.vty[0].first, r.vty[0].last, r.vty[0].login_authentication),
                         (0, 15, "VTY"))
        # crypto definitions not applied anywhere are harmless and counted
        full, counts = grouped(diags)
        self.assertTrue(any("crypto" in c for c in counts), counts)


REFUSED_LINES = [
    "crypto map VPN", "zone-member security INSIDE", "service-policy input QOS",
    "ip verify unicast source reachable-via rx", "ip ips IPS-1 in", "ip port-map http port 8080",
    "ip tcp intercept list 101", "ip inspect name FW appfw P", "ip policy route-map PBR",
    "ip route 10.50.0.0 255.255.0.0 172.22.1.1 track 1", "tunnel protection ipsec profile P",
    "ip nat outside source list 1 pool P overload", "ip inspect tcp block-non-session",
    "ip access-group NOSUCH in", "no ip routing",
]


def banner_lines(lines):
    """Indexes of lines that are banner text (or its closing delimiter)."""
    inside, out, delim = False, set(), None
    for i, line in enumerate(lines):
        if inside:
            out.add(i)
            if delim in line:
                inside = False
            continue
        w = line.split()
        if w[:1] == ["banner"] and len(w) == 3:
            inside, delim = True, "^C" if w[2].startswith("^C") else w[2]
    return out


class MutationTests(unittest.TestCase):
    """Attack the reading of a real config: move indentation around at
    random, insert a refused line anywhere (outside banner text). The model
    never changes silently: either it is the same, or there is an error at
    the inserted line."""

    def test_random_indentation_and_inserted_refused_lines(self):
        import random
        with open(os.path.join(HERE, "branch-flat.conf")) as f:
            lines = f.read().splitlines()
        base, d0 = parse_config("\n".join(lines) + "\n")
        self.assertEqual([d for d in d0 if d.is_error], [])
        text_lines = banner_lines(lines)
        rnd = random.Random(13)
        for trial in range(300):
            mutated = [line if i in text_lines or line.split()[0] in (
                "interface", "line", "ip", "access-list", "banner", "end", "control-plane",
                "hostname", "version", "service", "boot-start-marker", "boot-end-marker",
                "logging", "enable", "no", "username", "scheduler") and not (
                line.startswith("ip address") or line.startswith("ip access-group")
                or line.startswith("ip nat inside") and len(line.split()) == 3
                or line.startswith("ip nat outside") and len(line.split()) == 3
                or line.startswith("ip inspect FW") or line.startswith("ip virtual")
                or line.startswith("ip dhcp relay") or line.startswith("no ip ")
                and i > 30 and i < 60)
                else (" " * rnd.randrange(0, 3)) + line for i, line in enumerate(lines)]
            r, d = parse_config("\n".join(mutated) + "\n")
            if [x for x in d if x.is_error]:
                self.fail("indentation alone made errors:\n%s" % report("m", d))
            self.assertEqual(r, base, "\n".join(mutated))
            # now insert a refused line somewhere outside banner text
            pos = rnd.choice([i for i in range(1, len(mutated))
                              if i not in text_lines and i - 1 not in text_lines
                              or i - 1 in text_lines and i not in text_lines
                              and mutated[i - 1].strip() in ("^C", "#")])
            bad = rnd.choice(REFUSED_LINES)
            m2 = mutated[:pos] + [bad] + mutated[pos:]
            r2, d2 = parse_config("\n".join(m2) + "\n")
            d2 = d2 + check(r2)
            errs = {x.line for x in d2 if x.is_error}
            if pos + 1 not in errs and bad.startswith("ip access-group") and r2 == base:
                continue        # inserted before the interface's own access-group: replaced
            self.assertIn(pos + 1, errs, "%r at line %d:\n%s" % (bad, pos + 1, report("m", d2)))


class IsrXeTests(unittest.TestCase):
    """An IOS-XE ISR as show running-config prints it: vrf and platform
    lines, numbered remarks, NAT pool and 1:1 static, Null0 discard."""

    def test_model(self):
        name = "isr-xe-running.conf"
        r, diags = load(name)
        self.assertEqual([d.format() for d in diags if d.is_error], [])
        wan = r.interfaces["GigabitEthernet0/0/0"]
        lan = r.interfaces["GigabitEthernet0/0/1"]
        self.assertEqual((wan.access_group_in, wan.inspect_out, wan.nat),
                         ("WAN-IN", "EDGE", "outside"))
        self.assertEqual((lan.access_group_in, lan.nat), ("USERS-OUT", "inside"))
        self.assertTrue(r.interfaces["GigabitEthernet0"].shutdown)
        self.assertEqual([e.seq for e in r.acls["USERS-OUT"].entries], [10, 20, 30, 40, 50, 60])
        self.assertEqual(r.acls["USERS-OUT"].entries[-1].log, "log")
        self.assertEqual(r.acls["10"].kind, "standard")
        pool = r.nat.pools["PUBLIC"]
        self.assertEqual((str(pool.start), str(pool.end), pool.prefix_length),
                         ("203.0.113.3", "203.0.113.5", 29))
        self.assertEqual([(d.acl, d.pool, d.overload) for d in r.nat.dynamics],
                         [("10", "PUBLIC", True)])
        self.assertEqual([(str(s.local), str(s.global_)) for s in r.nat.statics],
                         [("10.40.0.5", "203.0.113.6")])
        self.assertEqual([(x.interface, x.distance, x.name) for x in r.routes],
                         [(None, 1, "ISP"), ("Null0", 250, "RFC1918-discard")])
        self.assertEqual([(v.first, v.last, v.access_class) for v in r.vty],
                         [(0, 4, "10"), (5, 15, "10")])
        self.assertEqual(set(r.banners), {"exec", "motd"})
        self.assertEqual([str(h.address) for h in r.logging.hosts], ["192.0.2.50"])
        full, counts = grouped(diags)
        # nothing here changes what passes without cbac saying so in full:
        # the management port in its own VRF (shut down)
        self.assertEqual([(d.line, d.message) for d in full],
                         [(line_of(name, "vrf forwarding Mgmt-intf"),
                           "interface GigabitEthernet0: VRFs are not implemented; the interface "
                           "is shut down")])
        r3, d3 = parse_config(open(os.path.join(HERE, name)).read().replace(
            " vrf forwarding Mgmt-intf\n no ip address\n shutdown\n",
            " vrf forwarding Mgmt-intf\n ip address 192.168.99.1 255.255.255.0\n"))
        d3 += check(r3)
        self.assertEqual([(d.line, d.is_error) for d in d3 if "VRF" in d.message],
                         [(line_of(name, "vrf forwarding Mgmt-intf"), True)])
        r2, d2 = parse_config(render(r))
        self.assertEqual(r2, r)
