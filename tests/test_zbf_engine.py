"""Zone-based policy firewall enforcement on memory ports.

A four-interface appliance: Ethernet0/0 (LAN, zone IN), Ethernet0/1
(WAN, zone OUT), Ethernet0/2 (LAB, zone IN too), Ethernet0/3 (no zone).
Each test sends frames from simulated hosts and asserts on what leaves the
router (scapy), the drop counters and the log lines.
"""

from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, raw
from twisted.internet.task import Clock
from twisted.trial import unittest

from cbac.app import Appliance
from cbac.config import check, parse_config
from cbac.config.errors import errors
from cbac.dataplane.port import MemoryPort
from tests.test_sessions import capture_logs

IFS = {
    # name: (router MAC, router IP, host MAC, host IP)
    "Ethernet0/0": ("02:00:00:00:00:10", "10.0.0.1", "02:00:00:00:01:10", "10.0.0.2"),
    "Ethernet0/1": ("02:00:00:00:00:11", "20.0.0.1", "02:00:00:00:01:11", "20.0.0.2"),
    "Ethernet0/2": ("02:00:00:00:00:12", "30.0.0.1", "02:00:00:00:01:12", "30.0.0.2"),
    "Ethernet0/3": ("02:00:00:00:00:13", "40.0.0.1", "02:00:00:00:01:13", "40.0.0.2"),
}

BASE = """
hostname zbf
access-list 110 permit tcp any host 10.0.0.2 eq 22
class-map type inspect match-any WEB
 match protocol http
 match protocol icmp
class-map type inspect match-all SSH-TO-LAN
 match access-group 110
class-map type inspect match-any DNS
 match protocol udp
policy-map type inspect IN-OUT
 class type inspect WEB
  inspect
 class type inspect DNS
  pass
 class class-default
  drop log
policy-map type inspect OUT-IN
 class type inspect SSH-TO-LAN
  inspect
 class type inspect DNS
  pass
zone security IN
zone security OUT
zone-pair security IN-OUT source IN destination OUT
 service-policy type inspect IN-OUT
zone-pair security OUT-IN source OUT destination IN
 service-policy type inspect OUT-IN
interface Ethernet0/0
 ip address 10.0.0.1 255.255.255.0
 zone-member security IN
interface Ethernet0/1
 ip address 20.0.0.1 255.255.255.0
 zone-member security OUT
interface Ethernet0/2
 ip address 30.0.0.1 255.255.255.0
 zone-member security IN
interface Ethernet0/3
 ip address 40.0.0.1 255.255.255.0
"""

SELF_POLICY = """
class-map type inspect match-any PING
 match protocol icmp
policy-map type inspect OUT-SELF
 class type inspect PING
  pass
zone-pair security OUT-SELF source OUT destination self
 service-policy type inspect OUT-SELF
"""


class ZoneCase(unittest.TestCase):
    config = BASE

    def setUp(self):
        model, diags = parse_config(self.config)
        bad = errors(list(diags) + check(model))
        self.assertEqual(bad, [], [str(d) for d in bad])
        self.clock = Clock()
        self.ports = {n: MemoryPort(n, v[0]) for n, v in IFS.items()}
        self.app = Appliance(model, self.clock, dict(self.ports))
        self.r = self.app.router
        self.r.start()
        self.addCleanup(self.r.stop)
        self.logs = capture_logs(self)
        for n, (rmac, rip, hmac, hip) in IFS.items():
            self.inject(n, Ether(src=hmac, dst="ff:ff:ff:ff:ff:ff") /
                        ARP(op=1, hwsrc=hmac, psrc=hip, pdst=rip))
        for p in self.ports.values():
            p.sent.clear()

    def inject(self, ifname, p):
        self.r.frameReceived(self.ports[ifname], bytearray(raw(p)), b"")

    def frame(self, ifname, ip):
        rmac, rip, hmac, hip = IFS[ifname]
        return Ether(src=hmac, dst=rmac) / ip

    def send(self, ifname, ip):
        self.inject(ifname, self.frame(ifname, ip))

    def sent(self, ifname):
        out = [Ether(f) for f, v in self.ports[ifname].sent]
        self.ports[ifname].sent.clear()
        return out

    def fw(self):
        return [x for x in self.logs if x.startswith("%FW-")]


class ZoneRuleTests(ZoneCase):

    def test_same_zone_passes_without_policy(self):
        # IN (Ethernet0/0) -> IN (Ethernet0/2): no zone-pair needed, any protocol
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="30.0.0.2") / TCP(sport=1000, dport=23,
                                                                          flags="S"))
        out = self.sent("Ethernet0/2")
        self.assertEqual(len(out), 1)
        self.assertEqual(out[0][TCP].dport, 23)
        # not a session: the reply is forwarded statelessly too (same zone)
        self.send("Ethernet0/2", IP(src="30.0.0.2", dst="10.0.0.2") / TCP(sport=23, dport=1000,
                                                                          flags="SA"))
        self.assertEqual(len(self.sent("Ethernet0/0")), 1)
        self.assertEqual(len(self.app.sessions.sessions), 0)

    def test_member_to_non_member_dropped_both_ways(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="40.0.0.2") / ICMP(id=1))
        self.assertEqual(self.sent("Ethernet0/3"), [])
        self.send("Ethernet0/3", IP(src="40.0.0.2", dst="10.0.0.2") / ICMP(id=1))
        self.assertEqual(self.sent("Ethernet0/0"), [])
        self.assertEqual(self.r.drops["zone-drop"], 2)

    def test_non_member_to_self_allowed(self):
        self.send("Ethernet0/3", IP(src="40.0.0.2", dst="40.0.0.1") / ICMP(id=7))
        out = self.sent("Ethernet0/3")
        self.assertEqual([p[ICMP].type for p in out], [0])

    def test_inspect_creates_session_and_return_traffic_passes(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=40000, dport=80,
                                                                          flags="S", seq=100))
        self.assertEqual(len(self.sent("Ethernet0/1")), 1)
        # return traffic needs no OUT->IN zone-pair entry
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / TCP(sport=80, dport=40000,
                                                                          flags="SA", seq=5000,
                                                                          ack=101))
        out = self.sent("Ethernet0/0")
        self.assertEqual(len(out), 1)
        self.assertEqual(str(out[0][TCP].flags), "SA")
        [s] = self.app.sessions.sessions.values()
        self.assertEqual(s.protocol, "http")
        self.assertEqual(s.rule_name, "IN-OUT:WEB")

    def test_unsolicited_from_outside_dropped(self):
        # OUT->IN: only ssh to 10.0.0.2 is in a class; http is class-default (drop)
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / TCP(sport=40000, dport=80,
                                                                          flags="S"))
        self.assertEqual(self.sent("Ethernet0/0"), [])
        # a SYN/ACK that belongs to no session is dropped as well
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / TCP(sport=80, dport=40000,
                                                                          flags="SA"))
        self.assertEqual(self.sent("Ethernet0/0"), [])

    def test_inspect_via_access_group(self):
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / TCP(sport=40000, dport=22,
                                                                          flags="S"))
        self.assertEqual(len(self.sent("Ethernet0/0")), 1)
        [s] = self.app.sessions.sessions.values()
        self.assertEqual((s.protocol, s.rule_name), ("tcp", "OUT-IN:SSH-TO-LAN"))
        # the ACL names 10.0.0.2 only: another inside host is not reachable
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="30.0.0.2") / TCP(sport=40001, dport=22,
                                                                          flags="S"))
        self.assertEqual(self.sent("Ethernet0/2"), [])

    def test_inspect_mid_stream_packet_without_session_dropped(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=40000, dport=80,
                                                                          flags="A", seq=1, ack=1))
        self.assertEqual(self.sent("Ethernet0/1"), [])
        self.assertEqual(self.r.drops["zone-no-session"], 1)

    def test_pass_is_stateless_one_direction(self):
        # IN->OUT udp: pass (no session)
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / UDP(sport=5353, dport=53))
        self.assertEqual(len(self.sent("Ethernet0/1")), 1)
        self.assertEqual(len(self.app.sessions.sessions), 0)
        # the reply is allowed only because OUT->IN passes udp as well
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / UDP(sport=53, dport=5353))
        self.assertEqual(len(self.sent("Ethernet0/0")), 1)

    def test_class_default_drop_logs_in_ios_format(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2", id=4242) /
                  TCP(sport=40000, dport=25, flags="S"))
        self.assertEqual(self.sent("Ethernet0/1"), [])
        self.assertIn("%FW-6-DROP_PKT: Dropping tcp session 10.0.0.2:40000 20.0.0.2:25 on "
                      "zone-pair IN-OUT class class-default due to  DROP action found in "
                      "policy-map with ip ident 4242", self.fw())

    def test_class_default_drop_without_log_is_silent(self):
        # OUT-IN has no class-default line: drop, no log
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / TCP(sport=40000, dport=25,
                                                                          flags="S"))
        self.assertEqual(self.sent("Ethernet0/0"), [])
        self.assertEqual(self.fw(), [])

    def test_icmp_inspected_echo_reply_returns(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / ICMP(id=9, seq=1))
        self.assertEqual(len(self.sent("Ethernet0/1")), 1)
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / ICMP(type=0, id=9, seq=1))
        self.assertEqual(len(self.sent("Ethernet0/0")), 1)
        # an unsolicited echo reply is dropped
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / ICMP(type=0, id=77, seq=1))
        self.assertEqual(self.sent("Ethernet0/0"), [])

    def test_no_zone_pair_drops(self):
        # IN -> OUT exists; remove it by a config without it
        cfg = BASE.replace("zone-pair security IN-OUT source IN destination OUT\n"
                           " service-policy type inspect IN-OUT\n", "")
        new, diags = parse_config(cfg)
        self.app.apply(new)
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=40000, dport=80,
                                                                          flags="S"))
        self.assertEqual(self.sent("Ethernet0/1"), [])

    def test_self_zone_open_by_default(self):
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="20.0.0.1") / ICMP(id=7))
        self.assertEqual([p[ICMP].type for p in self.sent("Ethernet0/1")], [0])
        # a closed TCP port of the router answers with RST (the router's stack)
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="20.0.0.1") / TCP(sport=4000, dport=2222,
                                                                          flags="S"))
        self.assertEqual([str(p[TCP].flags) for p in self.sent("Ethernet0/1")], ["RA"])


class SelfZoneTests(ZoneCase):
    config = BASE + SELF_POLICY

    def test_zone_pair_to_self_restricts_the_router(self):
        # ping passes (class PING: pass)
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="20.0.0.1") / ICMP(id=7))
        self.assertEqual([p[ICMP].type for p in self.sent("Ethernet0/1")], [0])
        # the console port (and anything else) from OUT is dropped: class-default
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="20.0.0.1") / TCP(sport=4000, dport=2222,
                                                                          flags="S"))
        self.assertEqual(self.sent("Ethernet0/1"), [])
        self.assertEqual(self.r.drops["zone-drop"], 1)
        # the router's address on another interface, reached from OUT: still self
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.1") / TCP(sport=4000, dport=2222,
                                                                          flags="S"))
        self.assertEqual(self.sent("Ethernet0/1"), [])

    def test_other_zones_reach_self_without_zone_pair(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=4000, dport=2222,
                                                                          flags="S"))
        self.assertEqual([str(p[TCP].flags) for p in self.sent("Ethernet0/0")], ["RA"])

    def test_console_service_reachability(self):
        got = []
        self.r.local_services[(6, 2222)] = got.append
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=4000, dport=2222,
                                                                          flags="S"))
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="20.0.0.1") / TCP(sport=4000, dport=2222,
                                                                          flags="S"))
        self.assertEqual([IP(p).src for p in got], ["10.0.0.2"])


class SeedZbfCase(unittest.TestCase):
    """The ZBF seed configuration (etc/router-zbf.conf) on memory ports."""

    R_IN, R_OUT = "02:00:0a:0a:0a:01", "02:00:ac:16:01:10"
    H_IN, H_OUT = "02:00:0a:0a:0a:02", "02:00:ac:16:01:01"

    def setUp(self):
        from cbac.config.parser import parse_file
        from tests.labrun import SEED_CONFIG
        import os
        path = os.path.join(os.path.dirname(SEED_CONFIG), "router-zbf.conf")
        model, diags = parse_file(path)
        self.assertEqual(errors(list(diags) + check(model)), [])
        self.clock = Clock()
        self.pin = MemoryPort("Ethernet2/1", self.R_IN)
        self.pout = MemoryPort("Ethernet2/0", self.R_OUT)
        self.app = Appliance(model, self.clock, {"Ethernet2/1": self.pin,
                                                 "Ethernet2/0": self.pout})
        self.r = self.app.router
        self.r.start()
        self.addCleanup(self.r.stop)
        self.r.frameReceived(self.pin, bytearray(raw(
            Ether(src=self.H_IN, dst="ff:ff:ff:ff:ff:ff") /
            ARP(op=1, hwsrc=self.H_IN, psrc="10.10.10.25", pdst="10.10.10.1"))), b"")
        self.r.frameReceived(self.pout, bytearray(raw(
            Ether(src=self.H_OUT, dst="ff:ff:ff:ff:ff:ff") /
            ARP(op=1, hwsrc=self.H_OUT, psrc="172.22.1.1", pdst="172.22.1.16"))), b"")
        self.pin.sent.clear()
        self.pout.sent.clear()

    def out(self, ip):
        self.r.frameReceived(self.pout, bytearray(raw(Ether(src=self.H_OUT, dst=self.R_OUT) / ip)),
                             b"")
        sent = [Ether(f) for f, v in self.pin.sent]
        self.pin.sent.clear()
        return sent

    def inside(self, ip):
        self.r.frameReceived(self.pin, bytearray(raw(Ether(src=self.H_IN, dst=self.R_IN) / ip)),
                             b"")
        sent = [Ether(f) for f, v in self.pout.sent]
        self.pout.sent.clear()
        return sent


class SeedZbfTests(SeedZbfCase):
    """PAT outbound, SMTP to the published server inbound, class-map ACLs
    on inside-local addresses."""

    def test_smtp_to_published_server_is_translated_and_inspected(self):
        got = self.out(IP(src="172.22.1.1", dst="172.22.1.16") / TCP(sport=40000, dport=25,
                                                                     flags="S"))
        self.assertEqual([(p[IP].dst, p[TCP].dport) for p in got], [("10.10.10.25", 25)])
        [s] = self.app.sessions.sessions.values()
        self.assertEqual((s.protocol, s.rule_name), ("smtp", "WAN-LAN:WAN-LAN-MAIL"))

    def test_other_ports_from_outside_dropped(self):
        self.assertEqual(self.out(IP(src="172.22.1.1", dst="172.22.1.16") /
                                  TCP(sport=40000, dport=80, flags="S")), [])

    def test_inside_out_pat_and_return(self):
        got = self.inside(IP(src="10.10.10.25", dst="172.22.1.1") / UDP(sport=5000, dport=53))
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0][IP].src, "172.22.1.16")
        port = got[0][UDP].sport
        back = self.out(IP(src="172.22.1.1", dst="172.22.1.16") / UDP(sport=53, dport=port))
        self.assertEqual([(p[IP].dst, p[UDP].dport) for p in back], [("10.10.10.25", 5000)])


PARAMS = BASE.replace("class-map type inspect match-any WEB", """parameter-map type inspect global
 max-incomplete low 2
 max-incomplete high 3
 tcp max-incomplete host 50 block-time 0
parameter-map type inspect WEBP
 tcp idle-time 77
 icmp idle-time 4
 audit-trail on
 sessions maximum 2
class-map type inspect match-any WEB""").replace("""policy-map type inspect IN-OUT
 class type inspect WEB
  inspect
""", """policy-map type inspect IN-OUT
 class type inspect WEB
  inspect WEBP
""")


class ParameterMapTests(ZoneCase):
    config = PARAMS

    def syn(self, sport, dst="20.0.0.2"):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst=dst) / TCP(sport=sport, dport=80,
                                                                   flags="S"))
        return self.sent("Ethernet0/1")

    def test_idle_time_and_audit_trail_in_zbf_format(self):
        self.syn(40000)
        [s] = self.app.sessions.sessions.values()
        self.assertEqual(s.idle, 77)
        self.assertIn("%FW-6-SESS_AUDIT_TRAIL_START: (target:class)-(IN-OUT:WEB):Start http "
                      "session: initiator (10.0.0.2:40000) -- responder (20.0.0.2:80)", self.fw())
        self.app.clear("ip inspect sessions")
        self.assertIn("%FW-6-SESS_AUDIT_TRAIL: (target:class)-(IN-OUT:WEB):Stop http session: "
                      "initiator (10.0.0.2:40000) sent 0 bytes -- responder (20.0.0.2:80) sent "
                      "0 bytes", self.fw())
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / ICMP(id=3))
        [s] = self.app.sessions.sessions.values()
        self.assertEqual(s.idle, 4)

    def test_sessions_maximum_per_class(self):
        self.assertEqual(len(self.syn(40000)), 1)
        self.assertEqual(len(self.syn(40001)), 1)
        self.assertEqual(self.syn(40002), [])
        self.assertIn("%FW-4-SESSIONS_MAXIMUM: Number of sessions for zone-pair IN-OUT class WEB "
                      "exceeds the configured sessions maximum value 2", self.fw())
        # a session ends: room for one more
        self.app.clear("ip inspect sessions")
        self.sent("Ethernet0/1")                       # the resets of the clear
        self.assertEqual(len(self.syn(40003)), 1)

    def test_global_thresholds_apply(self):
        g = self.app.sessions.model.inspect
        self.assertEqual((g.max_incomplete_low, g.max_incomplete_high), (2, 3))
        self.app.apply(parse_config(PARAMS.replace(" sessions maximum 2\n", ""))[0])
        for i in range(4):
            self.syn(41000 + i)
        self.assertTrue(self.app.sessions.aggressive)
        self.assertTrue(any(x.startswith("%FW-4-ALERT_ON: getting aggressive, count (4/3)")
                            for x in self.fw()), self.fw())


SMTP_L7 = BASE.replace("class-map type inspect match-all SSH-TO-LAN", """class-map type inspect smtp match-any BIG
 match data-length gt 5000
policy-map type inspect smtp MAILPOL
 class type inspect smtp BIG
  reset
  log
class-map type inspect match-all MAIL
 match protocol smtp
class-map type inspect match-all SSH-TO-LAN""").replace("""policy-map type inspect OUT-IN
""", """policy-map type inspect OUT-IN
 class type inspect MAIL
  inspect
  service-policy smtp MAILPOL
""")


class HostBlockTimeTests(ZoneCase):
    """``tcp max-incomplete host N block-time 1`` from the global
    parameter-map blocks the attacked host for one minute and lifts the
    block on the clock (the lab, tests.test_lab_inspect.HostBlockZbf,
    sees the block through the real daemon)."""

    config = PARAMS.replace("tcp max-incomplete host 50 block-time 0",
                            "tcp max-incomplete host 2 block-time 1"
                            ).replace(" sessions maximum 2\n", "").replace(
                                      "max-incomplete low 2\n max-incomplete high 3",
                                      "max-incomplete low 80\n max-incomplete high 90")

    def syn(self, sport):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=sport, dport=80,
                                                                          flags="S"))
        return self.sent("Ethernet0/1")

    def test_block_for_one_minute_then_unblock(self):
        self.assertEqual(len(self.syn(40000)), 1)
        self.assertEqual(len(self.syn(40001)), 1)
        self.syn(40002)                                # over the per-host limit: blocked
        self.assertTrue(any(x.startswith("%FW-2-BLOCK_HOST: Blocking new TCP connections to "
                                         "host 20.0.0.2 for 1 minute") for x in self.fw()),
                        self.fw())
        self.assertEqual(self.syn(40003), [])
        self.clock.advance(30)
        self.assertEqual(self.syn(40004), [])         # still blocked half-way
        for _ in range(40):
            self.clock.advance(1)
        self.assertTrue(any(x.startswith("%FW-4-UNBLOCK_HOST: New TCP connections to host "
                                         "20.0.0.2") for x in self.fw()), self.fw())
        self.assertEqual(len(self.syn(40005)), 1)



class SmtpLayer7Tests(ZoneCase):
    config = SMTP_L7

    def test_data_length_maps_to_max_data(self):
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / TCP(sport=40000, dport=25,
                                                                          flags="S"))
        self.assertEqual(len(self.sent("Ethernet0/0")), 1)
        [s] = self.app.sessions.sessions.values()
        self.assertEqual((s.protocol, s.rule_name), ("smtp", "OUT-IN:MAIL"))
        self.assertEqual(s.inspector.max_data, 5000)


SMTP_L7_FULL = """
class-map type inspect smtp match-any SMTP-BAD
 match cmd verb VRFY
 match cmd line length gt 64
class-map type inspect smtp match-any SMTP-BIG
 match data-length gt 5000
policy-map type inspect smtp MAILPOL
 class type inspect smtp SMTP-BAD
  reset
  log
 class type inspect smtp SMTP-BIG
  reset
class-map type inspect match-all MAIL
 match protocol smtp
policy-map type inspect P
 class type inspect MAIL
  inspect
  service-policy smtp MAILPOL
zone security A
zone security B
zone-pair security AB source A destination B
 service-policy type inspect P
"""


class SmtpLayer7InspectorTests(unittest.TestCase):
    """The layer 7 smtp policy compiled into the SMTP inspector's controls,
    then fed a dialogue the way the stream engine feeds it."""

    def inspector(self):
        from cbac.inspect import smtp
        from cbac.inspect.api import InspectContext
        from cbac.inspect.zones import compile_rules
        model, diags = parse_config(SMTP_L7_FULL)
        self.assertEqual(errors(list(diags) + check(model)), [])
        rp = compile_rules(model)["AB:MAIL"].get("smtp")
        self.assertEqual(rp.max_data, 5000)
        ctx = InspectContext(client_addr=0x14000002, client_port=40000, server_addr=0x0A000002,
                             server_port=25, rule=rp, options=None, debug=False)
        return smtp.FACTORIES["smtp"](ctx)

    def feed(self, insp, line):
        from cbac.inspect.api import CLIENT, SERVER
        insp.data_received(SERVER, b"220 mail ESMTP\r\n")
        return insp.data_received(CLIENT, line)

    def test_denied_verb_resets_and_is_never_released(self):
        insp = self.inspector()
        v = self.feed(insp, b"VRFY root\r\n")
        self.assertTrue(v.reset)
        self.assertEqual(v.release, 0)
        self.assertEqual([m[2] for m in v.log], ["SMTP_L7_POLICY"])
        self.assertIn("command VRFY", v.log[0][3])

    def test_other_verbs_pass(self):
        insp = self.inspector()
        v = self.feed(insp, b"HELO client\r\n")
        self.assertFalse(v.reset)
        self.assertEqual(v.release, len(b"HELO client\r\n"))

    def test_long_command_line_resets_even_unterminated(self):
        insp = self.inspector()
        v = self.feed(insp, b"HELO " + b"a" * 59 + b"\r\n")      # 64: allowed
        self.assertFalse(v.reset)
        from cbac.inspect.api import CLIENT
        insp.data_received(1, b"250 ok\r\n")
        v = insp.data_received(CLIENT, b"NOOP " + b"b" * 70)       # no line end yet
        self.assertTrue(v.reset)
        self.assertEqual(v.release, len(b"HELO " + b"a" * 59 + b"\r\n"))


class EvasionTests(ZoneCase):
    """What an attacker tries against the zone policy."""

    def test_fragments_without_session_dropped(self):
        # fragments of a datagram that never completes are held by virtual
        # reassembly and never forwarded, whatever direction
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2", flags="MF", id=7) /
                  TCP(sport=40000, dport=80, flags="S"))
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2", frag=3, proto=6, id=7) /
                  (b"x" * 16))
        self.assertEqual(self.sent("Ethernet0/1"), [])
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2", frag=3, proto=6, id=8) /
                  (b"x" * 16))
        self.assertEqual(self.sent("Ethernet0/0"), [])

    def test_fragmented_datagram_is_classified_whole(self):
        from scapy.all import fragment
        # udp is "pass" IN->OUT: the reassembled datagram passes ...
        dgram = IP(src="10.0.0.2", dst="20.0.0.2", id=31) / UDP(sport=5000, dport=53) / (
            b"q" * 1200)
        for f in fragment(dgram, fragsize=600):
            self.send("Ethernet0/0", f)
        self.assertTrue(self.sent("Ethernet0/1"))
        # ... and fragments of a telnet SYN from outside (class-default) do not
        syn = IP(src="20.0.0.2", dst="10.0.0.2", id=32) / TCP(sport=4000, dport=23, flags="S") / (
            b"s" * 1200)
        for f in fragment(syn, fragsize=600):
            self.send("Ethernet0/1", f)
        self.assertEqual(self.sent("Ethernet0/0"), [])

    def test_unrelated_icmp_error_from_outside_dropped(self):
        err = ICMP(type=3, code=3) / IP(src="10.0.0.2", dst="20.0.0.2") / UDP(sport=1, dport=2)
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / err)
        self.assertEqual(self.sent("Ethernet0/0"), [])

    def test_syn_with_other_flags_cannot_open_a_session(self):
        for flags in ("SA", "SR", "SF", "A", "R", "F", ""):
            self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") /
                      TCP(sport=40000, dport=22, flags=flags))
        self.assertEqual(self.sent("Ethernet0/0"), [])
        self.assertEqual(len(self.app.sessions.sessions), 0)

    def test_class_map_loop_never_recurses_forever(self):
        # --check refuses the loop; the engine is bounded even if it ran one
        from cbac.inspect.zones import ZonePolicy
        cfg = BASE + ("class-map type inspect match-any L1\n match class-map L2\n"
                      "class-map type inspect match-any L2\n match class-map L1\n")
        model, diags = parse_config(cfg)
        self.assertTrue([d for d in check(model) if "refers to itself" in d.message])
        zp = ZonePolicy(model)
        pkt = type("P", (), {"proto": 6, "dport": 80})()
        self.assertFalse(zp._class_matches("L1", pkt))

    def test_reload_to_a_config_without_zones_restores_classic_forwarding(self):
        cfg = "\n".join(l for l in BASE.splitlines() if "zone-member" not in l)
        self.app.apply(parse_config(cfg)[0])
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst="10.0.0.2") / TCP(sport=40000, dport=25,
                                                                          flags="S"))
        self.assertEqual(len(self.sent("Ethernet0/0")), 1)


class ClassicGlobalsIsolationTests(ZoneCase):
    """The classic ``ip inspect`` per-session globals (audit trail, idle
    times) do not leak into zone sessions, which have IOS ZBF defaults."""

    config = BASE + "ip inspect audit-trail\nip inspect tcp idle-time 99\n"

    def test_zbf_session_uses_zbf_defaults(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=40000, dport=80,
                                                                          flags="S"))
        [s] = self.app.sessions.sessions.values()
        self.assertEqual((s.idle, s.audit, s.alert), (3600, False, True))
        self.assertEqual([x for x in self.fw() if "AUDIT" in x], [])


class PassLogTests(ZoneCase):
    config = BASE.replace(" class type inspect DNS\n  pass\n class class-default",
                          " class type inspect DNS\n  pass log\n class class-default", 1)

    def test_pass_log(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2", id=99) /
                  UDP(sport=5353, dport=53))
        self.assertEqual(len(self.sent("Ethernet0/1")), 1)
        self.assertEqual(self.fw(), ["%FW-6-PASS_PKT: Passing udp session 10.0.0.2:5353 "
                                     "20.0.0.2:53 on zone-pair IN-OUT class DNS with ip ident 99"])


class IntrazoneTests(ZoneCase):
    config = BASE + ("zone-pair security IN-IN source IN destination IN\n"
                     " service-policy type inspect IN-OUT\n")

    def test_intrazone_zone_pair_applies_its_policy(self):
        # IN -> IN http: inspected by the intrazone policy
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="30.0.0.2") / TCP(sport=1000, dport=80,
                                                                          flags="S"))
        self.assertEqual(len(self.sent("Ethernet0/2")), 1)
        [s] = self.app.sessions.sessions.values()
        self.assertEqual(s.rule_name, "IN-IN:WEB")
        # telnet inside the zone: class-default drop
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="30.0.0.2") / TCP(sport=1001, dport=23,
                                                                          flags="S"))
        self.assertEqual(self.sent("Ethernet0/2"), [])


L4_PROTOCOLS = BASE.replace(" match protocol http\n match protocol icmp\n",
                            " match protocol http\n match protocol icmp\n match protocol https\n"
                            " match protocol dns\n")


class Layer4ProtocolTests(ZoneCase):
    """``match protocol https|dns|ssh|telnet``: the port is the criterion,
    the inspection is cbac's generic tcp/udp one (IOS: layer 4 only)."""

    config = L4_PROTOCOLS

    def test_https_and_dns_inspected_on_their_ports_only(self):
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=40000, dport=443,
                                                                          flags="S"))
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / UDP(sport=40001, dport=53))
        self.assertEqual(len(self.sent("Ethernet0/1")), 2)
        self.assertEqual(sorted(s.protocol for s in self.app.sessions.sessions.values()),
                         ["tcp", "udp"])
        # tcp to another port: class-default (drop log)
        self.send("Ethernet0/0", IP(src="10.0.0.2", dst="20.0.0.2") / TCP(sport=40002, dport=444,
                                                                          flags="S"))
        self.assertEqual(self.sent("Ethernet0/1"), [])


class NatOrderTests(SeedZbfCase):
    """Class-map ACLs see inside-local addresses in both directions: LAN->WAN
    classified before PAT, WAN->LAN after the static translation."""

    def setUp(self):
        super().setUp()
        import os
        from tests.labrun import SEED_CONFIG
        with open(os.path.join(os.path.dirname(SEED_CONFIG), "router-zbf.conf")) as f:
            text = f.read()
        text = text.replace(
            "class-map type inspect match-any LAN-WAN\n match protocol ftp\n match protocol http\n"
            " match protocol tcp\n match protocol udp\n match protocol icmp\n",
            "class-map type inspect match-any LAN-WAN\n match access-group 120\n")
        text = text.replace("\nend\n", "\naccess-list 120 permit ip host 10.10.10.25 any\nend\n")
        new, diags = parse_config(text)
        self.assertEqual(errors(list(diags) + check(new)), [])
        self.app.apply(new)

    def test_outbound_acl_names_the_inside_local_source(self):
        got = self.inside(IP(src="10.10.10.25", dst="172.22.1.1") / TCP(sport=5000, dport=443,
                                                                        flags="S"))
        self.assertEqual([p[IP].src for p in got], ["172.22.1.16"])
        # another inside host is not in ACL 120: class-default drop
        got = self.inside(IP(src="10.10.10.26", dst="172.22.1.1") / TCP(sport=5000, dport=443,
                                                                        flags="S"))
        self.assertEqual(got, [])



SCOPED = BASE.replace("class-map type inspect match-any WEB", """access-list 120 permit tcp host 10.0.0.2 any
access-list 120 permit udp host 10.0.0.2 any eq 53
access-list 121 permit tcp host 30.0.0.2 any
access-list 121 permit udp host 30.0.0.2 any eq 53
parameter-map type inspect global
 tcp synwait-time 40
parameter-map type inspect FAST
 tcp synwait-time 5
 tcp finwait-time 2
 dns-timeout 3
parameter-map type inspect SLOW
 tcp finwait-time 9
 dns-timeout 12
class-map type inspect match-all A
 match access-group 120
class-map type inspect match-all B
 match access-group 121
class-map type inspect match-any WEB""").replace("""policy-map type inspect IN-OUT
 class type inspect WEB
  inspect
""", """policy-map type inspect IN-OUT
 class type inspect A
  inspect FAST
 class type inspect B
  inspect SLOW
 class type inspect WEB
  inspect
""")


class ParameterMapTimerScopeTests(ZoneCase):
    """synwait-time, finwait-time and dns-timeout of a named parameter-map
    apply to the sessions of the class that inspects with it (IOS); the
    global parameter-map supplies the others."""
    config = SCOPED

    def syn(self, ifname, src, sport):
        self.send(ifname, IP(src=src, dst="20.0.0.2") / TCP(sport=sport, dport=80, flags="S"))
        return self.sent("Ethernet0/1")

    def rules(self):
        return sorted(s.rule_name for s in self.app.sessions.sessions.values())

    def test_no_firewall_wide_warning(self):
        model, diags = parse_config(self.config)
        self.assertEqual([str(d) for d in list(diags) + check(model)
                          if "whole firewall" in str(d)], [])

    def test_synwait_per_class(self):
        self.assertEqual(len(self.syn("Ethernet0/0", "10.0.0.2", 40000)), 1)
        self.assertEqual(len(self.syn("Ethernet0/2", "30.0.0.2", 40001)), 1)
        self.assertEqual(self.rules(), ["IN-OUT:A", "IN-OUT:B"])
        self.clock.advance(6)
        # class A (FAST, 5 s) half-open session is gone, B's (global, 40 s) not
        self.assertEqual(self.rules(), ["IN-OUT:B"])
        self.clock.advance(30)
        self.assertEqual(self.rules(), ["IN-OUT:B"])
        self.clock.advance(5)
        self.assertEqual(self.rules(), [])

    def establish(self, ifname, src, sport):
        self.send(ifname, IP(src=src, dst="20.0.0.2") / TCP(sport=sport, dport=80, flags="S",
                                                            seq=100))
        self.sent("Ethernet0/1")
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst=src) / TCP(
            sport=80, dport=sport, flags="SA", seq=500, ack=101))
        self.send(ifname, IP(src=src, dst="20.0.0.2") / TCP(sport=sport, dport=80, flags="A",
                                                            seq=101, ack=501))
        self.send(ifname, IP(src=src, dst="20.0.0.2") / TCP(sport=sport, dport=80, flags="FA",
                                                            seq=101, ack=501))
        self.send("Ethernet0/1", IP(src="20.0.0.2", dst=src) / TCP(
            sport=80, dport=sport, flags="FA", seq=501, ack=102))
        self.sent("Ethernet0/1")
        self.sent(ifname)

    def test_finwait_per_class(self):
        self.establish("Ethernet0/0", "10.0.0.2", 40000)
        self.establish("Ethernet0/2", "30.0.0.2", 40001)
        self.assertEqual(self.rules(), ["IN-OUT:A", "IN-OUT:B"])
        self.clock.advance(3)
        self.assertEqual(self.rules(), ["IN-OUT:B"])
        self.clock.advance(7)
        self.assertEqual(self.rules(), [])

    def test_dns_timeout_per_class(self):
        for ifname, src in (("Ethernet0/0", "10.0.0.2"), ("Ethernet0/2", "30.0.0.2")):
            self.send(ifname, IP(src=src, dst="20.0.0.2") / UDP(sport=5353, dport=53))
            self.assertEqual(len(self.sent("Ethernet0/1")), 1)
        self.assertEqual(self.rules(), ["IN-OUT:A", "IN-OUT:B"])
        self.clock.advance(4)
        self.assertEqual(self.rules(), ["IN-OUT:B"])
        self.clock.advance(9)
        self.assertEqual(self.rules(), [])
