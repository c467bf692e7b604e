"""``show ip inspect config|interfaces|name|all`` renderings, compared byte
for byte with the output printed in Cisco document 69309."""

import os

from twisted.trial import unittest

from cbac.config.parser import parse, parse_file
from cbac.config.show import (
    show_ip_inspect_all_config, show_ip_inspect_config,
    show_ip_inspect_interfaces, show_ip_inspect_name)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Verify section of document 69309, as printed (configuration and interface
# parts of "show ip inspect all").
SEED_SHOW_ALL = """\
Session audit trail is disabled
Session alert is enabled
one-minute (sampling period) thresholds are [400:500] connections
max-incomplete sessions thresholds are [400:500]
max-incomplete tcp connections per host is 50. Block-time 0 minute.
tcp synwait-time is 30 sec -- tcp finwait-time is 5 sec
tcp idle-time is 3600 sec -- udp idle-time is 30 sec
dns-timeout is 5 sec
Inspection Rule Configuration
  Inspection name IN-OUT
    tcp alert is on audit-trail is off timeout 3600
    udp alert is on audit-trail is off timeout 30
    ftp alert is on audit-trail is off timeout 3600
    http alert is on audit-trail is off timeout 3600
    icmp alert is on audit-trail is off timeout 10
  Inspection name OUT-IN
    smtp max-data 20000000 alert is on audit-trail is off timeout 3600

Interface Configuration
Interface Ethernet2/1
  Inbound inspection rule is IN-OUT
    tcp alert is on audit-trail is off timeout 3600
    udp alert is on audit-trail is off timeout 30
    ftp alert is on audit-trail is off timeout 3600
    http alert is on audit-trail is off timeout 3600
    icmp alert is on audit-trail is off timeout 10
  Outgoing inspection rule is not set
  Inbound access list is not set
  Outgoing access list is not set
Interface Ethernet2/0
  Inbound inspection rule is OUT-IN
    smtp max-data 20000000 alert is on audit-trail is off timeout 3600
  Outgoing inspection rule is not set
  Inbound access list is 101
  Outgoing access list is not set
"""


class ShippedConfigTests(unittest.TestCase):
    def setUp(self):
        self.router, _ = parse_file(os.path.join(ROOT, "etc", "router.conf"))

    def test_show_ip_inspect_all_matches_seed_byte_for_byte(self):
        self.assertEqual(show_ip_inspect_all_config(self.router), SEED_SHOW_ALL)

    def test_config_part(self):
        self.assertEqual(show_ip_inspect_config(self.router),
                         SEED_SHOW_ALL.split("\n\n")[0] + "\n")

    def test_interfaces_part(self):
        self.assertEqual(show_ip_inspect_interfaces(self.router),
                         SEED_SHOW_ALL.split("\n\n")[1])

    def test_name(self):
        self.assertEqual(show_ip_inspect_name(self.router, "OUT-IN"),
                         "  Inspection name OUT-IN\n"
                         "    smtp max-data 20000000 alert is on audit-trail is off timeout 3600\n")
        self.assertIn("not configured", show_ip_inspect_name(self.router, "NOPE"))


class EffectiveValuesTests(unittest.TestCase):
    def test_globals_drive_effective_values(self):
        r = parse("ip inspect audit-trail\nip inspect alert-off\n"
                  "ip inspect tcp idle-time 100\nip inspect udp idle-time 7\n"
                  "ip inspect max-incomplete low 10\nip inspect max-incomplete high 20\n"
                  "ip inspect one-minute low 1\nip inspect one-minute high 2\n"
                  "ip inspect tcp max-incomplete host 9 block-time 4\n"
                  "ip inspect tcp synwait-time 11\nip inspect tcp finwait-time 12\n"
                  "ip inspect dns-timeout 13\n"
                  "ip inspect name R tcp\nip inspect name R udp alert on\n"
                  "ip inspect name R esmtp max-data 999 audit-trail off timeout 50\n"
                  "ip inspect name R http java-list 5\n")
        self.assertEqual(show_ip_inspect_config(r), """\
Session audit trail is enabled
Session alert is disabled
one-minute (sampling period) thresholds are [1:2] connections
max-incomplete sessions thresholds are [10:20]
max-incomplete tcp connections per host is 9. Block-time 4 minute.
tcp synwait-time is 11 sec -- tcp finwait-time is 12 sec
tcp idle-time is 100 sec -- udp idle-time is 7 sec
dns-timeout is 13 sec
Inspection Rule Configuration
  Inspection name R
    tcp alert is off audit-trail is on timeout 100
    udp alert is on audit-trail is on timeout 7
    esmtp max-data 999 alert is off audit-trail is off timeout 50
    http java-list 5 alert is off audit-trail is on timeout 100
""")

    def test_outgoing_rule_and_acls(self):
        r = parse("ip inspect name W tcp\ninterface e0\n ip inspect W out\n"
                  " ip access-group 5 in\n ip access-group OUT out\ninterface e1\n"
                  " ip address 1.1.1.1 255.0.0.0\n")
        self.assertEqual(show_ip_inspect_interfaces(r), """\
Interface Configuration
Interface Ethernet0
  Inbound inspection rule is not set
  Outgoing inspection rule is W
    tcp alert is on audit-trail is off timeout 3600
  Inbound access list is 5
  Outgoing access list is OUT
""")
