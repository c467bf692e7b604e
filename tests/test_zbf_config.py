"""Zone-based policy firewall configuration: parse, render back, check.

Every mistake is reported with its line; every ZBF construct cbac does not
enforce is an error (fail closed), never "accepted, not acted on"."""

import os

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from cbac.config import check, parse_config, parse_file, render
from cbac.config.errors import errors, warnings
from tests.labrun import SEED_CONFIG

ZBF_SEED = os.path.join(os.path.dirname(SEED_CONFIG), "router-zbf.conf")

FULL = """\
hostname R
access-list 102 permit tcp any host 10.10.10.25 eq smtp
parameter-map type inspect global
 max-incomplete low 300
 max-incomplete high 600
 one-minute low 300
 one-minute high 600
 tcp max-incomplete host 40 block-time 2
 tcp synwait-time 20
 tcp finwait-time 4
 dns-timeout 4
 alert on
parameter-map type inspect PM
 tcp idle-time 600
 udp idle-time 20
 icmp idle-time 5
 audit-trail on
 alert off
 sessions maximum 1000
class-map type inspect match-any LAN-WAN
 match protocol ftp
 match protocol http
 match protocol tcp
 match protocol udp
 match protocol icmp
class-map type inspect match-all MAIL
 match access-group 102
 match protocol smtp
class-map type inspect match-any ANY
 match class-map MAIL
 match access-group name NAMED
class-map type inspect smtp match-any BIG
 match data-length gt 10000
 match cmd line length gt 512
 match cmd verb VRFY
policy-map type inspect smtp SMTP-POL
 class type inspect smtp BIG
  reset
  log
policy-map type inspect LAN-WAN-POL
 class type inspect LAN-WAN
  inspect PM
 class class-default
  drop log
policy-map type inspect WAN-LAN-POL
 class type inspect MAIL
  inspect
  service-policy smtp SMTP-POL
 class type inspect ANY
  pass log
 class class-default
  pass
zone security LAN
 description inside
zone security WAN
zone-pair security L2W source LAN destination WAN
 description out
 service-policy type inspect LAN-WAN-POL
zone-pair security W2L source WAN destination LAN
 service-policy type inspect WAN-LAN-POL
zone-pair security W2S source WAN destination self
 service-policy type inspect WAN-LAN-POL
interface Ethernet2/0
 ip address 172.22.1.16 255.255.255.0
 zone-member security WAN
interface Ethernet2/1
 ip address 10.10.10.1 255.255.255.0
 zone-member security LAN
ip access-list extended NAMED
 permit icmp any any
end
"""


def diags(text):
    r, d = parse_config(text, "t.conf")
    return r, list(d) + check(r, filename="t.conf")


class RoundTripTests(unittest.TestCase):

    def test_full_config_parses_without_errors_and_round_trips(self):
        r, d = diags(FULL)
        self.assertEqual(errors(d), [], [str(x) for x in errors(d)])
        text = render(r)
        r2, d2 = parse_config(text)
        self.assertEqual(errors(d2), [])
        self.assertEqual(r2, r)
        self.assertEqual(render(r2), text)
        for line in ("parameter-map type inspect global", " tcp max-incomplete host 40 block-time 2",
                     "class-map type inspect match-any LAN-WAN", " match access-group 102",
                     " match access-group name NAMED", " match class-map MAIL",
                     "class-map type inspect smtp match-any BIG", " match data-length gt 10000",
                     " match cmd line length gt 512", " match cmd verb VRFY",
                     "policy-map type inspect smtp SMTP-POL", " class type inspect smtp BIG",
                     "  reset", "  log", "  inspect PM", " class class-default", "  drop log",
                     "  pass log", "  service-policy smtp SMTP-POL",
                     "zone-pair security W2S source WAN destination self",
                     " service-policy type inspect LAN-WAN-POL", " zone-member security WAN",
                     " sessions maximum 1000", " audit-trail on", " alert off"):
            self.assertIn(line + "\n", text)

    def test_zbf_seed_config(self):
        r, d = parse_file(ZBF_SEED)
        d = list(d) + check(r, filename=ZBF_SEED)
        self.assertEqual(errors(d), [])
        self.assertEqual([x for x in warnings(d) if "zone" in x.message or "class" in x.message],
                         [])
        r2, _ = parse_config(render(r))
        self.assertEqual(r2, r)
        self.assertEqual(r.interfaces["Ethernet2/1"].zone, "LAN")

    def test_no_forms_remove(self):
        r, d = diags(FULL.replace("end\n", "") + "no zone-pair security W2S\nno parameter-map type inspect PM\n"
                     "interface Ethernet2/0\n no zone-member security WAN\n")
        self.assertNotIn("W2S", r.zbf.zone_pairs)
        self.assertNotIn("PM", r.zbf.parameter_maps)
        self.assertIsNone(r.interfaces["Ethernet2/0"].zone)

    def test_policy_class_order_keeps_class_default_last(self):
        r, d = diags("class-map type inspect match-any A\n match protocol tcp\n"
                     "class-map type inspect match-any B\n match protocol udp\n"
                     "policy-map type inspect P\n class class-default\n  pass\n"
                     " class type inspect A\n  inspect\n class type inspect B\n  drop\n")
        self.assertEqual([c.name for c in r.zbf.policy_maps["P"].classes],
                         ["A", "B", "class-default"])


class MistakeTests(unittest.TestCase):
    """--check names the line of every mistake."""

    def assertError(self, text, line, fragment):
        r, d = diags(text)
        hits = [x for x in errors(d) if x.line == line and fragment in x.message]
        self.assertTrue(hits, "no error at line %d with %r in:\n%s"
                        % (line, fragment, "\n".join(str(x) for x in d)))

    def test_undefined_class_map_in_policy(self):
        self.assertError("policy-map type inspect P\n class type inspect NOPE\n  inspect\n",
                         2, "class-map NOPE is not defined")

    def test_undefined_nested_class_map(self):
        self.assertError("class-map type inspect match-any A\n match class-map NOPE\n",
                         2, "class-map NOPE is not defined")

    def test_undefined_acl_in_class_map(self):
        self.assertError("class-map type inspect match-any A\n match access-group 150\n",
                         2, "access list 150 is not defined")

    def test_zone_pair_with_undefined_zones(self):
        text = "zone security A\nzone-pair security P source A destination B\n"
        self.assertError(text, 2, "zone B is not defined")

    def test_undefined_policy_on_zone_pair(self):
        text = ("zone security A\nzone security B\nzone-pair security P source A destination B\n"
                " service-policy type inspect NOPE\n")
        self.assertError(text, 4, "policy-map NOPE is not defined")

    def test_undefined_parameter_map(self):
        text = ("class-map type inspect match-any A\n match protocol tcp\n"
                "policy-map type inspect P\n class type inspect A\n  inspect NOPE\n")
        self.assertError(text, 4, "parameter-map NOPE is not defined")

    def test_interface_in_zone_and_ip_inspect_refused(self):
        text = ("ip inspect name X tcp\nzone security A\ninterface Ethernet0/0\n"
                " ip address 10.0.0.1 255.255.255.0\n ip inspect X in\n"
                " zone-member security A\n")
        self.assertError(text, 6, "IOS refuses classic inspection and zones on one interface")

    def test_interface_in_undefined_zone(self):
        self.assertError("interface Ethernet0/0\n zone-member security NOPE\n", 2,
                         "zone NOPE is not defined")

    def test_zone_pair_from_self_refused(self):
        text = "zone security A\nzone-pair security P source self destination A\n"
        self.assertError(text, 2, "source self is not supported")

    def test_class_without_action(self):
        text = ("class-map type inspect match-any A\n match protocol tcp\n"
                "policy-map type inspect P\n class type inspect A\n")
        self.assertError(text, 4, "has no action")

    def test_class_default_inspect_refused(self):
        self.assertError("policy-map type inspect P\n class class-default\n  inspect\n", 3,
                         "class-default takes")

    def test_smtp_policy_needs_smtp_class(self):
        text = ("class-map type inspect smtp match-any BIG\n match data-length gt 5\n"
                "policy-map type inspect smtp S\n class type inspect smtp BIG\n  reset\n"
                "class-map type inspect match-any A\n match protocol http\n"
                "policy-map type inspect P\n class type inspect A\n  inspect\n"
                "  service-policy smtp S\n")
        self.assertError(text, 9, "needs a class that matches protocol smtp")

    def test_smtp_log_only_refused(self):
        text = ("class-map type inspect smtp match-any BIG\n match data-length gt 5\n"
                "policy-map type inspect smtp S\n class type inspect smtp BIG\n  log\n")
        self.assertError(text, 4, "with 'reset'")

    def test_low_above_high(self):
        self.assertError("parameter-map type inspect global\n max-incomplete low 900\n"
                         " max-incomplete high 100\n", 1, "low 900 is above high 100")

    def test_self_zone_cannot_be_configured(self):
        self.assertError("zone security self\n", 1, "system defined")


class FailClosedTests(unittest.TestCase):
    """ZBF constructs cbac does not enforce are errors with their line."""

    CASES = [
        ("class-map type inspect match-any A\n match protocol h323\n", 2, "does not inspect"),
        ("class-map type inspect match-any A\n match not protocol tcp\n", 2, "not supported"),
        ("class-map type inspect match-any A\n match security-group source tag 4\n", 2,
         "unsupported match"),
        ("class-map type inspect http match-any A\n", 1, "not supported"),
        ("policy-map type inspect http P\n", 1, "not supported"),
        ("class-map type inspect smtp match-any A\n match sender address regex X\n", 2,
         "unsupported smtp match"),
        ("class-map type inspect smtp match-all A\n match cmd verb VRFY\n"
         " match data-length gt 5\n", 1, "match-all smtp class-map with more than one"),
        ("parameter-map type inspect P\n log dropped-packets enable\n", 2, "unsupported"),
        ("parameter-map type inspect P\n tcp half-open on\n", 2, "unsupported"),
        ("zone security A\n protection P\n", 2, "unsupported"),
        ("zone security A\nzone security B\nzone-pair security P source A destination B\n"
         " service-policy type inspect P extra\n", 4, "expected"),
        ("class-map type inspect match-any A\n match protocol tcp\n"
         "policy-map type inspect P\n class type inspect A\n  urlfilter X\n", 5, "unsupported"),
        ("policy-map type inspect P\n class type inspect A\n  inspect\n  drop\n", 4,
         "already has action"),
    ]

    def test_each_case(self):
        for text, line, fragment in self.CASES:
            r, d = diags(text)
            hits = [x for x in errors(d) if x.line == line and fragment in x.message]
            self.assertTrue(hits, "%r: no error at line %d with %r in %s"
                            % (text, line, fragment, [str(x) for x in d]))


class NoFormTests(unittest.TestCase):

    def test_no_inspect_only_removes_inspect(self):
        base = ("class-map type inspect match-any A\n match protocol tcp\n"
                "policy-map type inspect P\n class type inspect A\n")
        r, d = diags(base + "  drop\n  no inspect\n")
        self.assertEqual(r.zbf.policy_maps["P"].classes[0].action, "drop")
        r, d = diags(base + "  inspect\n  no inspect\n  pass\n")
        c = r.zbf.policy_maps["P"].classes[0]
        self.assertEqual((c.action, c.parameter_map), ("pass", None))

    def test_no_match_and_no_service_policy(self):
        r, d = diags("class-map type inspect match-any A\n match protocol tcp\n"
                     " match protocol udp\n no match protocol tcp\n"
                     "zone security Z1\nzone security Z2\n"
                     "zone-pair security P source Z1 destination Z2\n"
                     " service-policy type inspect X\n no service-policy type inspect X\n")
        self.assertEqual([m.value for m in r.zbf.class_maps["A"].matches], ["udp"])
        self.assertIsNone(r.zbf.zone_pairs["P"].service_policy)

    def test_inspect_global_form(self):
        r, d = diags("parameter-map type inspect-global\n max-incomplete high 700\n")
        self.assertEqual(errors(d), [])
        self.assertEqual(r.zbf.parameter_maps["global"].max_incomplete_high, 700)
        self.assertIn("parameter-map type inspect global\n max-incomplete high 700\n", render(r))

    def test_smtp_extended_is_esmtp(self):
        r, d = diags("class-map type inspect match-any M\n match protocol smtp extended\n")
        self.assertEqual(errors(d), [])
        self.assertEqual(r.zbf.class_maps["M"].matches[0].value, "esmtp")
        self.assertIn(" match protocol smtp extended\n", render(r))
        self.assertEqual(parse_config(render(r))[0], r)

_NAMES = st.sampled_from(["A", "B", "C", "LAN", "WAN"])
_LINE = st.one_of(
    st.builds(lambda n: "zone security %s" % n, _NAMES),
    st.builds(lambda n, d: "zone security %s\n description %s" % (n, d), _NAMES,
              st.sampled_from(["x", "two words"])),
    st.builds(lambda p, a, b: "zone-pair security P%s source %s destination %s" % (p, a, b),
              _NAMES, _NAMES, st.sampled_from(["A", "B", "self"])),
    st.builds(lambda n, k, ms: "class-map type inspect %s %s\n" % (k, n) + "\n".join(ms),
              _NAMES, st.sampled_from(["match-any", "match-all"]),
              st.lists(st.sampled_from([" match protocol tcp", " match protocol smtp extended",
                                        " match access-group 101", " match class-map A",
                                        " match protocol https", " match access-group name X"]),
                       max_size=4)),
    st.builds(lambda n, cs: "policy-map type inspect %s\n" % n + "\n".join(cs), _NAMES,
              st.lists(st.sampled_from([" class type inspect A\n  inspect",
                                        " class type inspect B\n  pass log",
                                        " class type inspect C\n  inspect PM",
                                        " class class-default\n  drop log"]), max_size=4)),
    st.builds(lambda ss: "parameter-map type inspect PM\n" + "\n".join(ss),
              st.lists(st.sampled_from([" tcp idle-time 60", " audit-trail on", " alert off",
                                        " max-incomplete high 900", " sessions maximum 5",
                                        " tcp max-incomplete host 9 block-time 2"]), max_size=4)),
    st.builds(lambda n: "interface Ethernet0/%d\n zone-member security %s" % (n % 3, "A"),
              st.integers(0, 5)),
)


class RoundTripPropertyTests(unittest.TestCase):

    @settings(max_examples=150, deadline=None)
    @given(st.lists(_LINE, max_size=12))
    def test_render_parse_round_trip(self, lines):
        text = "\n".join(lines) + "\n"
        r, d = parse_config(text)
        check(r)                                   # never raises
        r2, d2 = parse_config(render(r))
        self.assertEqual(r2, r)
        self.assertEqual(render(r2), render(r))
