"""The IOS-style CLI driven through an insults terminal in memory."""

import inspect
import os
import re

from scapy.all import ARP, IP, TCP, Ether, raw
from twisted.conch.insults import insults
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from cbac.config.model import LoggingConfig, RouterConfig
from cbac.console.cli import CLIProtocol, Context, run_line
from cbac.console.commands import build_tree
from cbac.log import ios
from cbac.log.observers import LogObservers
from tests.fakeappliance import FakeAppliance
from tests.test_console_appliance import H_IN, R_IN, R_OUT, real_appliance

H_OUT = "02:00:ac:16:01:01"

_ANSI = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z@]|[()][A-Z0-9]|[=>c78DEHM])")

UP = b"\x1b[A"


def clean(data: bytes) -> str:
    return _ANSI.sub(b"", data).replace(b"\r", b"").decode("utf-8", "replace")


class Term:
    def __init__(self, app, priv=1, user="oper", length=24, clock=None, idle=None):
        self.app = app
        self.ctx = Context(app, user, priv, "127.0.0.1")
        self.transport = StringTransport()
        self.server = insults.ServerProtocol(
            CLIProtocol, build_tree(), self.ctx, reactor=clock,
            namespace_factory=app.manhole_namespace, idle_timeout=idle)
        self.server.makeConnection(self.transport)
        self.cli = self.server.terminalProtocol
        self.cli.terminalSize(80, length)
        self.out()

    def type(self, s) -> str:
        if isinstance(s, str):
            s = s.encode()
        self.server.dataReceived(s)
        return self.out()

    def out(self) -> str:
        v = self.transport.value()
        self.transport.clear()
        return clean(v)


class Recording:
    """The real appliance, recording each facade call in ``calls`` as the
    fake does: ``(method, *arguments with defaults filled in)``."""

    def __init__(self, app):
        self.__dict__["_app"] = app
        self.__dict__["calls"] = []

    def __getattr__(self, name):
        value = getattr(self._app, name)
        if name.startswith("_") or not inspect.ismethod(value):
            return value
        sig = inspect.signature(value)

        def call(*a, **kw):
            bound = sig.bind(*a, **kw)
            bound.apply_defaults()
            self.calls.append((name,) + tuple(bound.arguments.values()))
            return value(*a, **kw)
        return call

    def __setattr__(self, name, value):
        setattr(self._app, name, value)


class CLITestsMixin:
    """The CLI's behaviour, run against the fake appliance and a real one.
    A concrete class sets, in ``make_app``: ``self.app`` (with ``calls``),
    ``self.enable`` (the enable secret), ``self.bad_conf``/``self.good_conf``
    (configuration files ``configure replace`` refuses/takes),
    ``self.replaced_text``/``self.refused_text`` (what a good/bad replace
    prints) and ``self.rename``
    (a manhole statement that renames the box to fw9)."""

    def setUp(self):
        self.make_app()
        self.t = Term(self.app)

    def test_prompt_and_abbreviation(self):
        out = self.t.type("sh ip insp sess\r")
        self.assertIn("SIS_OPEN", out)
        self.assertIn(("show_ip_inspect", "sessions", None), self.app.calls)
        self.assertTrue(out.endswith("fw1>"), out)

    def test_ambiguous(self):
        out = self.t.type("s\r")
        self.assertIn('% Ambiguous command:  "s"', out)
        out = self.t.type("sh ip i\r")
        self.assertIn('% Ambiguous command:  "sh ip i"', out)

    def test_invalid_caret(self):
        out = self.t.type("sh ip insp sessionz\r")
        lines = out.split("\n")
        i = lines.index("% Invalid input detected at '^' marker.")
        # caret under the first character that matches no keyword ("z")
        self.assertEqual(lines[i - 1], " " * len("fw1>sh ip insp session") + "^")

    def test_incomplete(self):
        self.assertIn("% Incomplete command.", self.t.type("sh ip insp\r"))
        self.assertIn('% Type "show ?" for a list of subcommands', self.t.type("show\r"))

    def test_help_lists_keywords(self):
        out = self.t.type("show ip inspect ?")
        self.assertRegex(out, r"\n  all +Inspection all available information\n")
        self.assertRegex(out, r"\n  sessions +Inspection sessions")
        # the typed line is kept after the help
        self.assertTrue(out.endswith("fw1>show ip inspect "), repr(out))
        out = self.t.type("all ?")
        self.assertIn("Output modifiers", out)
        self.assertIn("<cr>", out)

    def test_help_completions(self):
        out = self.t.type("s?")
        self.assertIn("show  systat", out)
        out = self.t.type("\x15sh?")
        self.assertIn("\nshow\n", out)

    def test_help_unknown(self):
        self.assertIn("% Unrecognized command", self.t.type("foo ?"))

    def test_tab_completion(self):
        out = self.t.type("sh ip insp\t")
        self.assertTrue(out.endswith("ect "), repr(out))
        self.t.type("se\t")
        out = self.t.type("\r")
        self.assertIn(("show_ip_inspect", "sessions", None), self.app.calls)

    def test_pipe_not_on_exec_commands(self):
        out = self.t.type("terminal length 0 | inc x\r")
        self.assertIn("% Invalid input detected", out)

    def test_enable_right_password(self):
        out = self.t.type("enable\r")
        self.assertTrue(out.endswith("Password: "), repr(out))
        out = self.t.type("cisco\r")
        self.assertNotIn("cisco", out)                 # not echoed
        self.assertTrue(out.endswith("fw1#"), repr(out))
        self.assertIn("Current privilege level is 15", self.t.type("show privilege\r"))
        out = self.t.type("disable\r")
        self.assertTrue(out.endswith("fw1>"), repr(out))

    def test_enable_wrong_password(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.t.type("enable\r")
        out = self.t.type("nope\r")
        self.assertTrue(out.endswith("Password: "))
        self.t.type("nope\r")
        out = self.t.type("nope\r")
        self.assertIn("% Bad secrets", out)
        self.assertTrue(out.endswith("fw1>"), repr(out))
        msgs = [e.get("ios_message", "") for e in events]
        self.assertTrue(any(m.startswith("%SYS-5-PRIV_AUTH_FAIL: Authentication to Privilege "
                                         "level 15 failed by oper") for m in msgs), msgs)

    def test_privilege_levels(self):
        out = self.t.type("show running-config\r")
        self.assertIn("% Invalid input detected", out)
        self.assertNotIn("show_running_config", [c[0] for c in self.app.calls])
        self.assertIn("% Invalid input detected", self.t.type("clear counters\r"))
        self.assertIn("% Invalid input detected", self.t.type("debug ip inspect smtp\r"))
        self.assertIn("% Invalid input detected", self.t.type("manhole\r"))
        self.assertNotIn("running-config", self.t.type("show ?"))
        self.t.type("\x15enable\r")
        self.t.type("cisco\r")
        self.assertIn("running-config", self.t.type("show ?"))
        self.t.type("\x15terminal length 0\r")
        self.assertIn("hostname fw1", self.t.type("show running-config\r"))
        out = self.t.type("debug ip inspect smtp\r")
        self.assertIn("INSPECT SMTP Inspection debugging is on", out)
        self.assertIn("All possible debugging has been turned off", self.t.type("undebug all\r"))

    def test_show_running_config_include(self):
        t = Term(self.app, priv=15, user="admin", length=0)
        t.type("terminal length 0\r")
        out = t.type("show run | include ^hostname\r")
        self.assertIn("hostname fw1", out)
        self.assertNotIn("Building", out)

    def test_clear_with_confirm(self):
        t = Term(self.app, priv=15, user="admin")
        out = t.type("clear counters\r")
        self.assertIn('Clear "show interface" counters on all interfaces [confirm]', out)
        t.type("\r")
        self.assertIn(("clear", "counters", None), self.app.calls)
        t.type("clear ip nat translation *\r")
        self.assertIn(("clear", "ip nat translation", "*"), self.app.calls)
        t.type("clear access-list counters 101\r")
        self.assertIn(("clear", "access-list counters", "101"), self.app.calls)

    def test_copy_and_configure_replace(self):
        t = Term(self.app, priv=15, user="admin")
        out = t.type("copy running-config startup-config\r")
        self.assertIn("Destination filename [startup-config]? ", out)
        out = t.type("\r")
        self.assertIn("[OK]", out)
        out = t.type("configure replace %s\r" % self.bad_conf)
        self.assertIn("Enter Y if you are sure", out)
        out = t.type("y\r")
        self.assertIn(self.refused_text, out)
        self.assertIn(("configure_replace", self.bad_conf), self.app.calls)
        n = len(self.app.calls)
        t.type("configure replace %s\r" % self.good_conf)
        t.type("\r")                                   # default is no
        self.assertEqual(len(self.app.calls), n)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.assertIn(self.replaced_text, t.type("configure replace %s force\r" % self.good_conf))
        self.assertIn("%%SYS-5-CONFIG_I: Configured from %s by admin on vty0 (127.0.0.1)" % self.good_conf,
                      [e.get("ios_message") for e in events])
        self.assertIn("[OK]", t.type("wr mem\r"))

    def test_history(self):
        self.t.type("show version\r")
        out = self.t.type(UP)
        self.assertIn("show version", out)
        out = self.t.type("\r")
        self.assertIn("cbac Software", out)

    def test_exit(self):
        self.t.type("exit\r")
        self.assertTrue(self.t.transport.disconnecting)

    def test_manhole_enter_and_leave(self):
        t = Term(self.app, priv=15, user="admin")
        out = t.type("manhole\r")
        self.assertIn("Enable secret: ", out)
        t.type(self.enable + "\r")
        out = t.type("appliance.hostname * 2\r")
        self.assertIn("fw1fw1", out)
        t.type(self.rename + "\r")
        t.type("\x04")                                 # Ctrl-D: back to the CLI
        out = t.type("show version\r")
        self.assertIn("cbac Software", out)
        self.assertTrue(out.endswith("fw9#"), repr(out))
        self.assertFalse(t.transport.disconnecting)

    def test_terminal_monitor(self):
        obs = LogObservers(RouterConfig(hostname="fw1", logging=LoggingConfig(buffered=4096)))
        self.app.log_observers = obs
        globalLogPublisher.addObserver(obs)
        self.addCleanup(globalLogPublisher.removeObserver, obs)
        self.t.type("terminal monitor\r")
        self.t.type("sh ver")                         # a half-typed line
        ios.message("FW", 3, "SMTP_INVALID_COMMAND",
                    "Invalid SMTP command from initiator (10.10.10.3:35013)")
        out = self.t.out()
        self.assertRegex(out, r"\*\w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3}: %FW-3-SMTP_INVALID_COMMAND: "
                              r"Invalid SMTP command from initiator \(10\.10\.10\.3:35013\)\n")
        self.assertTrue(out.endswith("fw1>sh ver"), repr(out))   # line redrawn
        self.t.type("\x15terminal no monitor\r")
        ios.message("FW", 3, "SMTP_INVALID_COMMAND", "second")
        self.assertNotIn("second", self.t.out())
        self.assertIn("second", obs.show_logging())

    def test_idle_timeout(self):
        clock = task.Clock()
        t = Term(self.app, clock=clock, idle=600)
        clock.advance(599)
        t.type("show version\r")
        clock.advance(599)
        self.assertFalse(t.transport.disconnecting)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock.advance(2)
        self.assertTrue(t.transport.disconnecting)
        self.assertEqual([e["ios_message"] for e in events if "ios_message" in e],
                         ["%SYS-6-TTY_EXPIRE_TIMER: (exec timer expired, tty 2 (127.0.0.1)), user oper"])


class FakeCLITests(CLITestsMixin, unittest.TestCase):
    """Against the fake: the CLI's own mechanics (pipes, paging) on its
    numbered lines."""

    def make_app(self):
        self.app = FakeAppliance()
        self.enable = self.app.enable
        self.bad_conf, self.good_conf = "/tmp/bad.conf", "/tmp/x.conf"
        self.replaced_text = "Rollback Done"
        self.refused_text = "% configuration not replaced"
        self.rename = "appliance.hostname = 'fw9'"

    def test_pipe_include_exclude_begin(self):
        self.t.type("terminal length 0\r")
        out = self.t.type("sh ip insp all | inc 01[0-2]\r")
        got = [l for l in out.split("\n") if l.startswith("inspect line")]
        self.assertEqual(got, ["inspect line 010", "inspect line 011", "inspect line 012"])
        out = self.t.type("sh ip insp all | begin 058\r")
        got = [l for l in out.split("\n") if l.startswith("inspect line")]
        self.assertEqual(got, ["inspect line 058", "inspect line 059"])
        out = self.t.type("sh ip insp all | ex line 0[0-5]\r")
        got = [l for l in out.split("\n") if l.startswith("inspect line")]
        self.assertEqual(len(got), 0)
        out = self.t.type("sh ip insp all | count 00\r")
        self.assertIn("Number of lines which match regexp = 10", out)

    def test_paging(self):
        out = self.t.type("show ip inspect all\r")
        self.assertIn("inspect line 022", out)
        self.assertNotIn("inspect line 023", out)
        self.assertTrue(out.endswith(" --More-- "), repr(out[-40:]))
        out = self.t.type(" ")
        self.assertIn("inspect line 023", out)
        self.assertIn("inspect line 045", out)
        self.assertNotIn("inspect line 046", out)
        out = self.t.type("\r")
        self.assertIn("inspect line 046", out)
        self.assertNotIn("inspect line 047", out)
        out = self.t.type("q")
        self.assertNotIn("inspect line 047", out)
        self.assertTrue(out.endswith("fw1>"), repr(out))
        # terminal length 0: no paging
        self.t.type("terminal length 0\r")
        out = self.t.type("show ip inspect all\r")
        self.assertIn("inspect line 059", out)
        self.assertNotIn("--More--", out)


class RealCLITests(CLITestsMixin, unittest.TestCase):
    """Against a real appliance (the seed configuration, hostname fw1, on
    memory ports, one inside host with a connection through PAT): the glue
    between each command and the engine it acts on."""

    def make_app(self):
        real, self.ports, conf = real_appliance(self, edit=lambda text: text.replace(
            "hostname 3640-123", "hostname fw1"))
        self.real = real
        self.app = Recording(real)
        self.enable = "cisco"
        here = os.path.dirname(conf)
        self.good_conf = os.path.join(here, "x.conf")
        with open(conf) as f, open(self.good_conf, "w") as g:
            g.write(f.read())
        self.bad_conf = os.path.join(here, "bad.conf")
        with open(self.bad_conf, "w") as f:
            f.write("hostname fw1\nip inspect name X smtp max-data many\nend\n")
        self.replaced_text = "The replace operation was completed successfully"
        self.refused_text = "% Configuration has 1 errors; the running configuration is unchanged"
        self.rename = "config.hostname = 'fw9'"              # the prompt follows the model
        self.pin, self.pout = self.ports["Ethernet2/1"], self.ports["Ethernet2/0"]
        # the next hop answers ARP, so forwarded frames leave at once
        self.pout.inject(bytearray(raw(Ether(src=H_OUT, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=H_OUT, psrc="172.22.1.1", pdst="172.22.1.16"))))
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.1"))))
        self.pin.take()
        self.pout.take()
        # an inside host opens a connection through PAT
        self.pin.inject(bytearray(raw(Ether(src=H_IN, dst=R_IN) / IP(
            src="10.10.10.2", dst="172.22.1.1") / TCP(sport=40000, dport=80, flags="S", seq=1000))))
        [syn] = [Ether(f) for f in self.pout.take()]
        self.global_port = syn[TCP].sport

    def synack(self):
        """The outside server's answer to the inside host's SYN; returns
        what the inside port sent."""
        self.pout.inject(bytearray(raw(Ether(src=H_OUT, dst=R_OUT) / IP(
            src="172.22.1.1", dst="172.22.1.16") / TCP(
            sport=80, dport=self.global_port, flags="SA", seq=5000, ack=1001))))
        return [Ether(f) for f in self.pin.take()]

    def admin(self):
        t = Term(self.app, priv=15, user="admin")
        t.type("terminal length 0\r")
        return t

    FLOW = "(10.10.10.2:40000)=>(172.22.1.1:80)"

    def test_answer_of_an_open_session_arrives(self):
        """The control for the clear test below: with its session, the
        server's answer reaches the inside host."""
        [f] = self.synack()
        self.assertEqual((f[IP].dst, f[TCP].dport, f[TCP].flags), ("10.10.10.2", 40000, "SA"))

    def test_clear_ip_inspect_sessions(self):
        t = self.admin()
        out = t.type("show ip inspect sessions\r")
        self.assertIn(" Session ", out)
        self.assertIn(self.FLOW, out)
        self.assertIn("Sessions: 1\n", t.type("show processes cpu\r"))
        t.type("clear ip inspect sessions\r")
        self.assertIn(("clear", "ip inspect sessions", None), self.app.calls)
        # the open TCP session is reset (docs/inspection.md): the inside host
        # is told (at once, or with the next outbox drain within a second)
        self.real.clock.advance(1)
        rst = [f for f in map(Ether, self.pin.take()) if TCP in f]
        self.assertEqual([(f[IP].dst, f[TCP].dport, "R" in f[TCP].flags) for f in rst],
                         [("10.10.10.2", 40000, True)])
        out = t.type("show ip inspect sessions\r")
        self.assertNotIn(self.FLOW, out)
        self.assertNotIn(" Session ", out)
        self.assertIn("Sessions: 0\n", t.type("show processes cpu\r"))
        # the flow's next packet meets ACL 101 again and is refused, counted
        self.assertEqual(self.synack(), [])
        self.assertRegex(t.type("show interfaces Ethernet2/0\r"), r"Drops \(cbac\):\n\s+acl-in\s+1\n")

    def test_show_interfaces(self):
        t = self.admin()
        out = t.type("show interfaces Ethernet2/1\r")
        self.assertIn("Ethernet2/1 is up, line protocol is up", out)
        self.assertIn("Internet address is 10.10.10.1/24", out)
        self.assertRegex(out, r"\b2 packets input\b")          # the ARP and the SYN
        out = t.type("show interfaces\r")
        self.assertIn("Ethernet2/0 is up, line protocol is up", out)
        self.assertIn("Ethernet2/1 is up, line protocol is up", out)
        self.ports["Ethernet2/1"].set_link(False)
        self.assertIn("Ethernet2/1 is down, line protocol is down",
                      t.type("show interfaces Ethernet2/1\r"))

    def test_show_ip_interface_brief(self):
        out = self.admin().type("show ip interface brief\r")
        self.assertRegex(out, r"\nEthernet2/1 +10\.10\.10\.1 +YES manual up +up *\n")
        self.assertRegex(out, r"\nEthernet2/0 +172\.22\.1\.16 +YES manual up +up *\n")

    def test_show_ip_nat_statistics_and_clear_translations(self):
        t = self.admin()
        self.assertIn("Total active translations: 2 (1 static, 1 dynamic; 2 extended)",
                      t.type("show ip nat statistics\r"))
        t.type("clear ip nat translation *\r")
        self.assertIn("Total active translations: 1 (1 static, 0 dynamic; 1 extended)",
                      t.type("show ip nat statistics\r"))

    def test_debug_and_show_debugging(self):
        t = self.admin()
        self.assertNotIn("INSPECT SMTP Inspection debugging is on", t.type("show debugging\r"))
        t.type("debug ip inspect smtp\r")
        self.assertIn("INSPECT SMTP Inspection debugging is on", t.type("show debugging\r"))
        t.type("undebug all\r")
        self.assertNotIn("INSPECT SMTP Inspection debugging is on", t.type("show debugging\r"))

    def test_reload_config(self):
        """``reload config`` re-reads the file; a bad file keeps the running
        configuration and its sessions."""
        t = self.admin()
        conf = self.real.config_path
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace("hostname fw1", "hostname fw2"))
        out = t.type("reload config\r")
        self.assertTrue(out.endswith("fw2#"), repr(out[-200:]))
        self.assertIn("hostname fw2", t.type("show running-config\r"))
        self.assertIn(self.FLOW, t.type("show ip inspect sessions\r"))
        with open(conf, "w") as f:
            f.write("hostname fw3\nip inspect name X smtp max-data many\nend\n")
        out = t.type("reload config\r")
        self.assertIn("max-data many", out)
        self.assertTrue(out.endswith("fw2#"), repr(out[-200:]))
        self.assertIn(self.FLOW, t.type("show ip inspect sessions\r"))
        self.assertEqual(len(self.synack()), 1)


class ExecTests(unittest.TestCase):
    def run_line(self, line, priv=15):
        ctx = Context(FakeAppliance(), "admin", priv)
        results = []
        run_line(build_tree(), ctx, line, echo=True).addCallback(results.append)
        return results[0]

    def test_exec_ok(self):
        r = self.run_line("show ip inspect all")
        self.assertEqual(r.status, 0)
        self.assertIn("inspect line 059", r.text)

    def test_exec_invalid(self):
        r = self.run_line("show ip inspect foo")
        self.assertEqual(r.status, 1)
        self.assertEqual(r.text.split("\n"), [
            "show ip inspect foo", " " * len("show ip inspect ") + "^",
            "% Invalid input detected at '^' marker."])

    def test_exec_privilege(self):
        self.assertEqual(self.run_line("show running-config", priv=1).status, 1)
        self.assertEqual(self.run_line("show running-config", priv=15).status, 0)

    def test_exec_failed_command(self):
        r = self.run_line("configure replace /tmp/bad.conf")
        self.assertEqual(r.status, 1)
        self.assertIn("not replaced", r.text)
