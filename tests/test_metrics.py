"""The Prometheus endpoint: configured by ``cbac metrics listen``, scraped
with a real HTTP client (twisted.web.client.Agent; curl in the lab) and
parsed with prometheus_client's text parser."""

from prometheus_client.parser import text_string_to_metric_families
from scapy.all import IP, TCP, Ether, raw
from twisted.internet import defer, error, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from cbac.config.parser import parse_config
from cbac.config.render import render
from cbac.log import ios
from cbac.metrics import MetricsService
from tests.labrun import LabCase, seed_variant, skip_reason
from tests.test_console_appliance import H_IN, R_IN, real_appliance


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, name, **labels):
    """The sample ``name`` (with its _total etc. suffix) with these labels."""
    for f in fams.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError((name, labels))


class ConfigTests(unittest.TestCase):
    def test_parse_render(self):
        m, diags = parse_config("cbac metrics listen tcp:9108:interface=127.0.0.1\n")
        self.assertEqual([d for d in diags if d.severity == "error"], [])
        self.assertEqual(m.metrics_listen, ["tcp:9108:interface=127.0.0.1"])
        self.assertIn("cbac metrics listen tcp:9108:interface=127.0.0.1", render(m))
        m, _ = parse_config("cbac metrics listen tcp:9108:interface=127.0.0.1\n"
                            "no cbac metrics listen tcp:9108:interface=127.0.0.1\n")
        self.assertEqual(m.metrics_listen, [])

    def test_router_address_warned(self):
        from cbac.config.check import check
        m, _ = parse_config("interface Ethernet2/1\n ip address 10.10.10.1 255.255.255.0\n"
                            "cbac metrics listen tcp:9108:interface=10.10.10.1\n")
        self.assertIn("router interface address", " ".join(d.message for d in check(m)))

    def test_off_by_default_and_fail_closed(self):
        m, _ = parse_config("hostname r\n")
        self.assertEqual(m.metrics_listen, [])
        for bad in ("tcp:9108", "tcp:9108:interface=0.0.0.0x", "unix:/tmp/m", "tcp:99999:interface=127.0.0.1",
                    "ssl:9108:interface=127.0.0.1"):
            m, diags = parse_config("cbac metrics listen %s\n" % bad)
            self.assertEqual(m.metrics_listen, [], bad)
            self.assertTrue([d for d in diags if d.severity == "error" and d.line == 1], (bad, diags))


class EndpointTests(unittest.TestCase):
    def setUp(self):
        self.app, self.ports, _ = real_appliance(self)
        self.app.model.metrics_listen = ["tcp:0:interface=127.0.0.1"]
        self.svc = MetricsService(self.app, reactor)
        self.svc.resource.min_interval = 0
        self.svc.startService()
        self.addCleanup(self.svc.stopService)
        self.app.on_apply.append(self.svc.configure)
        # traffic: a PAT connection from the inside (session, translation, ACL 1 hit)
        syn = Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") / TCP(
            sport=40000, dport=80, flags="S")
        self.ports["Ethernet2/1"].inject(bytearray(raw(syn)))
        ios.message("FW", 3, "SMTP_INVALID_COMMAND", "Invalid SMTP command from initiator (1.2.3.4:5)")

    def url(self, path="/metrics"):
        [port] = self.svc.ports.values()
        return ("http://127.0.0.1:%d%s" % (port.getHost().port, path)).encode()

    @defer.inlineCallbacks
    def get(self, path="/metrics"):
        resp = yield Agent(reactor).request(b"GET", self.url(path))
        body = yield readBody(resp)
        return resp, body.decode("utf-8")

    @defer.inlineCallbacks
    def test_scrape(self):
        resp, text = yield self.get()
        self.assertEqual(resp.code, 200)
        self.assertEqual(resp.headers.getRawHeaders(b"content-type"),
                         [b"text/plain; version=0.0.4; charset=utf-8"])
        fams = families(text)
        self.assertEqual(value(fams, "cbac_interface_receive_packets_total", interface="Ethernet2/1"), 1)
        self.assertEqual(value(fams, "cbac_inspect_sessions", protocol="http", state="SIS_OPENING"), 1)
        self.assertEqual(value(fams, "cbac_inspect_sessions_half_open"), 1)
        self.assertEqual(value(fams, "cbac_inspect_aggressive_mode"), 0)
        self.assertEqual(value(fams, "cbac_inspect_sessions_created_total", protocol="http"), 1)
        self.assertEqual(value(fams, "cbac_nat_translations", kind="dynamic"), 1)
        self.assertEqual(value(fams, "cbac_nat_pat_ports_in_use", address="172.22.1.16"), 1)
        self.assertEqual(value(fams, "cbac_acl_matches_total", acl="1", seq="10", action="permit"), 1)
        self.assertEqual(value(fams, "cbac_acl_implicit_deny_total", acl="101"), 0)
        self.assertEqual(value(fams, "cbac_log_messages_total", facility="FW", severity="3",
                               mnemonic="SMTP_INVALID_COMMAND"), 1)
        self.assertGreater(value(fams, "process_resident_memory_bytes"), 1e6)
        self.assertGreater(value(fams, "process_cpu_seconds_total"), 0)
        # types as Prometheus expects them
        self.assertEqual(fams["cbac_interface_receive_packets"].type, "counter")
        self.assertEqual(fams["cbac_inspect_sessions"].type, "gauge")
        # drops by reason: an outside packet ACL 101 refuses
        syn = Ether(src="02:00:ac:16:01:01", dst="02:00:ac:16:01:10") / IP(
            src="172.22.1.1", dst="10.10.10.2") / TCP(sport=1, dport=80, flags="S")
        self.ports["Ethernet2/0"].inject(bytearray(raw(syn)))
        resp, text = yield self.get()
        fams = families(text)
        self.assertEqual(value(fams, "cbac_interface_drops_total", interface="Ethernet2/0", reason="acl-in"), 1)
        self.assertEqual(value(fams, "cbac_acl_implicit_deny_total", acl="101"), 1)

    @defer.inlineCallbacks
    def test_answer_reused_for_min_interval(self):
        self.svc.resource.min_interval = 60
        resp, first = yield self.get()
        self.ports["Ethernet2/1"].inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) / IP(
            src="10.10.10.3", dst="172.22.1.1") / TCP(sport=1, dport=80, flags="S"))))
        resp, second = yield self.get()
        self.assertEqual(first, second)
        self.svc.resource.min_interval = 0
        resp, third = yield self.get()
        self.assertEqual(value(families(third), "cbac_interface_receive_packets_total",
                               interface="Ethernet2/1"), 2)

    @defer.inlineCallbacks
    def test_other_paths_404(self):
        resp, text = yield self.get("/")
        self.assertEqual(resp.code, 404)

    @defer.inlineCallbacks
    def test_follows_configuration(self):
        url = self.url()
        new = self.app.model
        new.metrics_listen = []
        yield self.svc.configure(new)
        self.assertEqual(self.svc.ports, {})
        with self.assertRaises(error.ConnectionRefusedError):
            yield Agent(reactor).request(b"GET", url)


class MetricsLabTests(LabCase, unittest.TestCase):
    """The daemon with ``cbac metrics listen`` in the namespace lab, scraped
    by curl from the firewall namespace after a ping through it."""

    skip = skip_reason()
    config = seed_variant(extra=["cbac metrics listen tcp:9108:interface=127.0.0.1",
                                 "cbac metrics listen tcp:907:interface=127.0.0.1",
                                 "logging host 127.0.0.1 transport udp port 5514"])

    def test_scrape_in_the_lab(self):
        env = self.env
        r = env.exec("in", ["ping", "-c", "2", "-W", "2", "172.22.1.1"], timeout=20)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = env.exec("fw", ["curl", "-sS", "--max-time", "10", "http://127.0.0.1:9108/metrics"], timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        fams = families(r.stdout)
        self.assertGreaterEqual(value(fams, "cbac_interface_receive_packets_total", interface="Ethernet2/1"), 2)
        self.assertGreaterEqual(value(fams, "cbac_inspect_sessions_created_total", protocol="icmp"), 1)
        self.assertEqual(value(fams, "cbac_interface_up", interface="Ethernet2/0"), 1)
        # nothing on the router's own addresses
        r = env.exec("in", ["curl", "-sS", "--max-time", "3", "http://10.10.10.1:9108/metrics"], timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("GET /metrics", env.log())

    def test_two_processes_listener_and_syslog_are_the_management_process(self):
        """The default two processes: ``GET /metrics`` is served by the
        unprivileged management process (also on a privileged port the
        engine bound for it); the syslog datagrams come from it too."""
        import sys
        import time
        from tests.test_lab_privsep import mgmt_pids
        env = self.env
        engine = env.proc.pid
        found = []
        for _ in range(100):
            found = mgmt_pids(engine)
            if found:
                break
            time.sleep(0.1)
        self.assertEqual(len(found), 1, found)
        mgmt = found[0]
        out = env.tmp + "/syslog.out"
        rx = env.server("fw", [sys.executable, "-c",
                               "import socket,sys\n"
                               "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                               "s.bind(('127.0.0.1',5514))\n"
                               "f=open(sys.argv[1],'ab',0)\n"
                               "while True:\n"
                               "    d,a=s.recvfrom(65535); f.write(d+b'\\n')\n", out])
        self.addCleanup(rx.kill)
        for port in (9108, 907):
            r = env.exec("fw", ["curl", "-sS", "--max-time", "10",
                                "http://127.0.0.1:%d/metrics" % port], timeout=20)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("cbac_interface_up", r.stdout)
            r = env.exec("fw", ["ss", "-ltnpH", "sport = :%d" % port], timeout=20)
            self.assertIn("pid=%d," % mgmt, r.stdout)
            self.assertNotIn("pid=%d," % engine, r.stdout)
        # a console login logs %SEC_LOGIN (through the engine's log) -> syslog
        time.sleep(0.5)
        r = env.console("show version")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = b""
        for _ in range(100):
            try:
                with open(out, "rb") as f:
                    got = f.read()
            except OSError:
                pass
            if b"%" in got:
                break
            time.sleep(0.1)
        self.assertIn(b"<", got)
        self.assertIn(b"%", got)
        r = env.exec("fw", ["ss", "-uanpH"], timeout=20)
        self.assertIn("pid=%d," % mgmt, r.stdout)             # the syslog socket
        self.assertNotIn("pid=%d," % engine, r.stdout)         # the engine has none
