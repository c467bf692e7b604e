"""The console's view of the appliance (cbac.console.interfaces) is what
the real appliance and the test fake provide, and every command of the
console's table runs against a real appliance (the seed configuration on
memory ports, with a session in its table)."""

import os
import re
import shutil

from scapy.all import IP, TCP, Ether, raw
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyClass, verifyObject

from cbac.app import Appliance
from cbac.config.parser import parse_file
from cbac.console.cli import CLIProtocol, Context, run_line
from cbac.console.commands import build_tree
from cbac.console.interfaces import IConsoleAppliance
from cbac.dataplane.port import MemoryPort
from cbac.log import ios
from cbac.log.observers import makeLogging
from tests.fakeappliance import FakeAppliance

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(HERE, "etc", "router.conf")

R_IN = "02:00:0a:0a:0a:01"
R_OUT = "02:00:ac:16:01:10"
H_IN = "02:00:0a:0a:0a:02"


def real_appliance(testcase, edit=None):
    """The seed configuration (its text through ``edit`` if given) on
    memory ports: (appliance, ports, path of its configuration file)."""
    tmp = os.path.abspath(testcase.mktemp())
    os.makedirs(tmp)
    conf = os.path.join(tmp, "router.conf")
    shutil.copy(SEED, conf)
    if edit is not None:
        with open(conf) as f:
            text = edit(f.read())
        with open(conf, "w") as f:
            f.write(text)
    model, _ = parse_file(conf)
    clock = Clock()
    clock.advance(1000)
    ports = {"Ethernet2/1": MemoryPort("Ethernet2/1", R_IN), "Ethernet2/0": MemoryPort("Ethernet2/0", R_OUT)}
    app = Appliance(model, clock, ports, config_path=conf, state_dir=os.path.join(tmp, "state"))
    app.log_observers, _svc = makeLogging(model, clock)
    app.router.start()
    testcase.addCleanup(app.router.stop)
    testcase.addCleanup(ios.debugging.clear)
    return app, ports, conf


def commands(tree):
    """(syntax, node) of every command in the tree."""
    out = []

    def walk(node, path):
        for c in node.children:
            p = path + [c.name]
            if c.handler is not None:
                out.append((" ".join(p), c))
            walk(c, p)
    walk(tree.root, [])
    return out


def sample_line(syntax, conf):
    """A command line for a command's syntax, with sample arguments
    (``ARGS``, or ``x``), ``configure replace`` of ``conf``, and a
    packet-tracer of a real flow."""
    args = list(ARGS.get(syntax, []))
    words = []
    for tok in syntax.split():
        if tok == "WORD" or tok == "LINE":
            words.append(args.pop(0) if args else "x")
        elif tok.startswith("<"):
            words.append(tok[1:].split("-")[0])
        elif tok == "A.B.C.D":
            words.append("10.10.10.2")
        else:
            words.append(tok)
    line = " ".join(words)
    if syntax.startswith("configure replace"):
        line = "configure replace %s force" % conf
    if syntax.startswith("packet-tracer"):
        line = "packet-tracer input Ethernet2/1 %s %s" % (
            syntax.split()[3],
            "10.10.10.2 8 0 172.22.1.1" if " icmp " in syntax else "10.10.10.2 40001 172.22.1.1 80")
        if syntax.endswith("detailed"):
            line += " detailed"
    return line


#: Values for the parameters of commands, by syntax (else by token).
ARGS = {
    "show ip inspect name WORD": ["OUT-IN"],
    "show interfaces LINE": ["Ethernet2/0"],
    "clear counters LINE": ["Ethernet2/0"],
    "show access-lists WORD": ["101"],
    "show ip access-lists WORD": ["101"],
    "clear access-list counters WORD": ["101"],
    "clear ip access-list counters WORD": ["101"],
}

#: Commands that cannot work in an exec request, and what they say.
EXEC_REFUSED = {
    "manhole": "% manhole needs an interactive session",
    "terminal monitor": "% terminal monitor needs an interactive session",
    "configure terminal": "% cbac has no configuration mode",
}


class InterfaceTests(unittest.TestCase):
    def test_real_appliance_provides_it(self):
        app, _, _ = real_appliance(self)
        verifyClass(IConsoleAppliance, Appliance)
        verifyObject(IConsoleAppliance, app)

    def test_fake_provides_it(self):
        verifyClass(IConsoleAppliance, FakeAppliance)
        verifyObject(IConsoleAppliance, FakeAppliance())

    def test_every_facade_method_the_commands_call_is_in_the_interface(self):
        """A command calling ``c.app.X`` for an X the interface does not
        declare is how ``show processes cpu`` broke unnoticed."""
        import inspect
        from cbac.console import commands as cmds
        called = set(re.findall(r"\bc(?:tx)?\.app\.(\w+)", inspect.getsource(cmds)))
        self.assertTrue(called)
        declared = set(IConsoleAppliance.names(all=True))
        self.assertEqual(called - declared, set())


class SmokeTests(unittest.TestCase):
    """Every command, as an exec request of a privilege-15 user, on a real
    appliance: no handler fails, each prints what it should."""

    def setUp(self):
        self.app, self.ports, self.conf = real_appliance(self)
        # an inside host opens a connection through PAT: a session to show
        syn = Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") / TCP(
            sport=40000, dport=80, flags="S", seq=1000)
        self.ports["Ethernet2/1"].inject(bytearray(raw(syn)))
        self.assertEqual(len(self.app.sessions.sessions), 1)

    def run_cmd(self, line, priv=15):
        ctx = Context(self.app, "admin", priv, "127.0.0.1")
        results = []
        run_line(build_tree(), ctx, line, echo=True).addCallback(results.append)
        self.assertEqual(len(results), 1, line)
        return results[0]

    def test_every_command(self):
        done = []
        for syntax, node in commands(build_tree()):
            line = sample_line(syntax, self.conf)
            r = self.run_cmd(line)
            done.append(line)
            self.assertNotIn("% Command failed", r.text, line)
            self.assertNotIn("Invalid input", r.text, line)
            if syntax in EXEC_REFUSED:
                self.assertEqual(r.status, 1, line)
                self.assertIn(EXEC_REFUSED[syntax], r.text)
            else:
                self.assertEqual(r.status, 0, (line, r.text))
        self.assertGreater(len(done), 80)

    def test_show_outputs(self):
        self.assertIn("Sessions: 1", self.run_cmd("show processes cpu").text)
        self.assertRegex(self.run_cmd("show processes cpu").text, r"CPU: user [\d.]+ s")
        self.assertIn("10.10.10.2:40000", self.run_cmd("show ip inspect sessions").text)
        self.assertIn("Inspection name OUT-IN", self.run_cmd("show ip inspect name OUT-IN").text)
        self.assertIn("permit tcp any host 172.22.1.16 eq smtp", self.run_cmd("show access-lists 101").text)
        self.assertIn("Ethernet2/0 is up", self.run_cmd("show interfaces Ethernet2/0").text)
        self.assertIn("Incoming ssh debugging is on", self.run_cmd("debug ip ssh").text)

    def test_bad_filter_regex(self):
        r = self.run_cmd("show version | include [")
        self.assertEqual((r.status, r.text), (1, "% Invalid regular expression: ["))

    def test_unknown_inspect_name_fails(self):
        r = self.run_cmd("show ip inspect name FOO")
        self.assertEqual(r.status, 1)
        self.assertEqual(r.text, "% Inspection rule FOO is not configured")

    def test_reload_help_is_true(self):
        help_lines = build_tree().help("", 15)
        [line] = [l for l in help_lines if l.split()[0] == "reload"]
        self.assertNotIn("cold restart", line.replace("no cold restart", ""))
        self.assertIn("Re-read", line)
        self.assertEqual(self.run_cmd("reload").text, "% Incomplete command.")

    def test_interactive_session_commands(self):
        """The session commands through the interactive terminal."""
        from twisted.conch.insults import insults
        from twisted.internet.testing import StringTransport
        ctx = Context(self.app, "admin", 15, "127.0.0.1")
        server = insults.ServerProtocol(CLIProtocol, build_tree(), ctx, reactor=self.app.clock,
                                        namespace_factory=self.app.manhole_namespace)
        t = StringTransport()
        server.makeConnection(t)
        server.terminalProtocol.terminalSize(80, 24)
        for line in ("terminal length 0", "terminal width 100", "terminal monitor", "show terminal",
                     "show history", "show users", "terminal no monitor", "show processes cpu"):
            server.dataReceived(line.encode() + b"\r")
        out = t.value().decode("utf-8", "replace")
        self.assertNotIn("% Command failed", out)
        self.assertIn("Width: 100 columns", out)
        self.assertIn("Sessions: 1", out)

    def test_drops_by_reason_seen_and_cleared(self):
        """Every drop counter can be seen (show interfaces, show ip inspect
        statistics) and cleared (clear counters, clear ip inspect statistics)."""
        out = self.ports["Ethernet2/0"]
        # refused by ACL 101 (an interface drop) ...
        out.inject(bytearray(raw(Ether(src="02:00:ac:16:01:01", dst=R_OUT) / IP(
            src="172.22.1.1", dst="10.10.10.2") / TCP(sport=1, dport=80, flags="S"))))
        # ... and a session refused by inspection (a SYN with data to an inspected smtp server)
        out.inject(bytearray(raw(Ether(src="02:00:ac:16:01:01", dst=R_OUT) / IP(
            src="172.22.1.1", dst="172.22.1.16") / TCP(sport=2, dport=25, flags="S") / b"EHLO x\r\n")))
        text = self.run_cmd("show interfaces").text
        self.assertRegex(text, r"Drops \(cbac\):\n\s+acl-in\s+1\n")
        self.assertIn("inspect-refused", text)
        self.assertIn('Last clearing of "show interface" counters never', text)
        stats = self.run_cmd("show ip inspect statistics").text
        self.assertRegex(stats, r"Packets dropped:\n(.*\n)*\s+syn-with-data\s+1")
        self.run_cmd("clear counters e2/1")          # the other interface: acl-in stays
        self.assertRegex(self.run_cmd("show interfaces Ethernet2/0").text, r"acl-in\s+1\n")
        self.assertIn('counters 00:00:00', self.run_cmd("show interfaces Ethernet2/1").text)
        self.assertEqual(self.run_cmd("clear counters Serial9/9").status, 1)
        self.run_cmd("clear counters Ethernet2/0")
        self.assertNotIn("acl-in", self.run_cmd("show interfaces Ethernet2/0").text)
        self.assertEqual(self.app.router.drops.get("acl-in", 0), 0)
        self.run_cmd("clear counters")
        text = self.run_cmd("show interfaces").text
        self.assertNotIn("acl-in", text)
        self.assertIn('Last clearing of "show interface" counters 00:00:00', text)
        self.run_cmd("clear ip inspect statistics")
        stats = self.run_cmd("show ip inspect statistics").text
        self.assertRegex(stats, r"Packets dropped:\n  none")
        self.assertIn("Session table: 1 sessions", stats)
