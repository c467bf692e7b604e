"""ZBF show and clear commands through the console's command tree, on the
engine-backed appliance of tests.test_zbf_engine."""

from scapy.all import IP, TCP

from cbac.console.cli import Context, run_line
from cbac.console.commands import build_tree
from tests.test_zbf_engine import ZoneCase


class ShowTests(ZoneCase):

    def cli(self, line, priv=15):
        ctx = Context(self.app, "admin", priv)
        results = []
        run_line(build_tree(), ctx, line, echo=False).addCallback(results.append)
        self.assertEqual(results[0].status, 0, results[0].text)
        return results[0].text

    def open_http(self, sport=40000):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=sport, dport=80,
                                                                          flags="S"))

    def test_show_zone_security(self):
        self.assertEqual(self.cli("show zone security"), "\n".join([
            "zone self",
            "  Description: System defined zone",
            "",
            "zone IN",
            "  Member Interfaces:",
            "    Ethernet0/0",
            "    Ethernet0/2",
            "",
            "zone OUT",
            "  Member Interfaces:",
            "    Ethernet0/1"]))
        self.assertEqual(self.cli("show zone security OUT"),
                         "zone OUT\n  Member Interfaces:\n    Ethernet0/1")

    def test_show_zone_pair_security(self):
        self.assertEqual(self.cli("show zone-pair security"), "\n".join([
            "Zone-pair name IN-OUT",
            "    Source-Zone IN  Destination-Zone OUT ",
            "    service-policy IN-OUT",
            "Zone-pair name OUT-IN",
            "    Source-Zone OUT  Destination-Zone IN ",
            "    service-policy OUT-IN"]))

    def test_show_policy_map_zone_pair_counters_and_sessions(self):
        self.open_http()
        self.clock.advance(5)
        # dropped by class-default (drop log): counted
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=40001, dport=25,
                                                                          flags="S"))
        text = self.cli("show policy-map type inspect zone-pair IN-OUT")
        self.assertIn(" Zone-pair: IN-OUT\n\n  Service-policy inspect : IN-OUT\n\n"
                      "    Class-map: WEB (match-any)\n"
                      "      Match: protocol http\n"
                      "        1 packets, 40 bytes\n"
                      "      Match: protocol icmp\n"
                      "        0 packets, 0 bytes\n"
                      "      Inspect\n"
                      "        Session creations since subsystem startup or last reset 1\n"
                      "        Current session counts (estab/half-open/terminating) [0:1:0]\n"
                      "        Last session created 00:00:05\n", text)
        self.assertIn("    Class-map: class-default (match-any)\n      Match: any\n"
                      "      Drop (log)\n        1 packets, 40 bytes", text)
        self.assertNotIn("OUT-IN", text)
        text = self.cli("show policy-map type inspect zone-pair sessions")
        self.assertRegex(text, r"      Inspect\n        Half-open Sessions\n"
                               r"         Session [0-9A-F]+ \(10\.0\.0\.2:40000\)=>"
                               r"\(20\.0\.0\.2:80\) http SIS_OPENING\n"
                               r"          Created 00:00:05, Last heard 00:00:05\n")
        self.assertIn("Zone-pair: OUT-IN", text)

    def test_clear_zone_pair_inspect_sessions(self):
        self.open_http()
        self.assertEqual(len(self.app.sessions.sessions), 1)
        self.cli("clear zone-pair OUT-IN inspect sessions")
        self.assertEqual(len(self.app.sessions.sessions), 1)
        self.cli("clear zone-pair inspect sessions")
        self.assertEqual(len(self.app.sessions.sessions), 0)
        # both ends reset
        self.assertEqual([str(p[TCP].flags) for p in self.sent("Ethernet0/1")], ["S", "R"])

    def test_clear_needs_privilege(self):
        ctx = Context(self.app, "oper", 1)
        results = []
        run_line(build_tree(), ctx, "clear zone-pair inspect sessions", echo=False).addCallback(
            results.append)
        self.assertEqual(results[0].status, 1)

    def test_running_config_renders_zbf(self):
        text = self.cli("show running-config")
        for line in ("zone security IN", "zone-pair security IN-OUT source IN destination OUT",
                     " service-policy type inspect IN-OUT", " zone-member security OUT",
                     "class-map type inspect match-all SSH-TO-LAN", " match access-group 110",
                     "policy-map type inspect IN-OUT", "  drop log"):
            self.assertIn(line + "\n", text)
