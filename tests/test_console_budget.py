"""The console cannot hurt forwarding: linear-time filter expressions, a
command line length limit, iterative batches and output in bounded slices
(issue 16).  Forwarding shares the reactor with the console, so the
reactor's longest stall while the console works is what a packet waits."""

import random
import re
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from cbac.console import budget, regex
from cbac.console.cli import MAX_LINE, Context, run_line
from cbac.console.commands import build_tree
from tests.fakeappliance import FakeAppliance
from tests.test_console_cli import Term
from tests import test_console_ssh as tcs

CATASTROPHIC = "^(.|.){25}X"


class StallMeter:
    """The longest gap between two turns of a 1 ms LoopingCall: how long a
    packet arriving during the measurement could have waited.  ``stop()``
    returns the gap in CPU time of this process (what the reactor spent on
    other work, the console's: not the time the OS gave to other processes
    on a busy test machine); ``wall`` is the gap in wall-clock time."""

    def __init__(self):
        self.last = None
        self.worst = 0.0
        self.wall = 0.0
        self.loop = task.LoopingCall(self._tick)

    def _tick(self):
        now, cpu = time.perf_counter(), time.process_time()
        if self.last is not None:
            self.wall = max(self.wall, now - self.last[0])
            self.worst = max(self.worst, cpu - self.last[1])
        self.last = (now, cpu)

    def start(self):
        self.loop.start(0.001)

    def stop(self):
        if self.loop.running:
            self.loop.stop()
            self._tick()            # the gap up to now counts too
        return self.worst


def _nfa_only(test):
    saved = regex._re2
    regex._re2 = None
    test.addCleanup(setattr, regex, "_re2", saved)


class RegexTests(unittest.TestCase):
    PATTERNS = ["abc", "^a.c$", "a|b", "[a-c]+x", "[^0-9]{2,3}z", "(?:ab)*c", r"\d+\.\d",
                "x{0,2}y$", "^$", "_", "a{3}", "[]a]", r"[a\-z]", "ho?st", r"\w\s\W",
                "(a|ab)(c|bcd)", "^(a*)*$", "a*?b", "a$", "^", "$", "(a|$)", "b^a", "ab|^x$"]

    def test_nfa_matches_the_same_lines_as_python(self):
        rnd = random.Random(16)
        lines = ["abc", "aXc", "xyz 12.5", "", "aaab", "abababc", "hello world!", "abcd",
                 "xxy", "]", "-", "hst", "a b!", "x" * 30 + "y"]
        lines += ["".join(rnd.choice("abcxyz01 .-_]!X") for _ in range(rnd.randint(0, 30)))
                  for _ in range(300)]
        for p in self.PATTERNS:
            nfa = regex.compile(p, force_nfa=True)
            rx = re.compile(p)
            for line in lines:
                self.assertEqual(nfa.search(line), bool(rx.search(line)), (p, line))

    def test_small_cache_gives_the_same_answers(self):
        self.patch(regex, "DFA_CACHE", 3)
        rnd = random.Random(7)
        for p in ("[a-c]+x[^y]", "(ab|ba)*c$", "x{2,4}y"):
            nfa = regex.compile(p, force_nfa=True)
            rx = re.compile(p)
            for _ in range(300):
                line = "".join(rnd.choice("abcxy") for _ in range(rnd.randint(0, 20)))
                self.assertEqual(nfa.search(line), bool(rx.search(line)), (p, line))

    def test_refused_expressions(self):
        for bad in ["(" * 200 + "a" + ")" * 200, "(a{1000}){1000}", "(a", "a)", r"(a)\1", "(?=a)", "(?<!a)b", "*a", "a{5,2}", "[a", "a{2000}",
                    "x" * (regex.MAX_PATTERN + 1)]:
            self.assertRaises(regex.RegexError, regex.compile, bad, force_nfa=True)
            self.assertRaises(regex.RegexError, regex.compile, bad)

    def test_catastrophic_expression_is_linear(self):
        line = "Cisco IOS Software, cbac Software (Linux), Version 1.0 " * 4
        for force in (False, True):
            rx = regex.compile(CATASTROPHIC, force_nfa=force)
            start = time.perf_counter()
            self.assertFalse(rx.search(line))
            self.assertLess(time.perf_counter() - start, 0.05, force)
            self.assertTrue(rx.search("x" * 25 + "X"))


class CommandTests(unittest.TestCase):
    def setUp(self):
        self.app = FakeAppliance()
        self.ctx = Context(self.app, "admin", 15, "127.0.0.1")
        self.tree = build_tree()

    def run_cmd(self, line):
        return self.successResultOf(run_line(self.tree, self.ctx, line))

    def _catastrophic(self):
        start = time.perf_counter()
        r = self.run_cmd("show version | include " + CATASTROPHIC)
        took = time.perf_counter() - start
        self.assertEqual((r.status, r.text), (0, ""))
        self.assertLess(took, 0.1)
        r = self.run_cmd("show version | include ^cbac")
        self.assertTrue(r.text.startswith("cbac Software"), r.text)

    def test_catastrophic_filter_re2_or_nfa(self):
        self._catastrophic()

    def test_catastrophic_filter_nfa(self):
        _nfa_only(self)
        self._catastrophic()

    def test_backreference_refused(self):
        r = self.run_cmd(r"show version | include (a)\1")
        self.assertEqual(r.status, 1)
        self.assertIn("% Invalid regular expression", r.text)

    def test_megabyte_command_line_refused_quickly(self):
        line = "show version " + "x" * (1 << 20)
        start = time.perf_counter()
        r = self.run_cmd(line)
        self.assertLess(time.perf_counter() - start, 0.05)
        self.assertEqual(r.status, 1)
        self.assertEqual(r.text, "%% Command line too long (%d characters; the maximum is %d)."
                         % (len(line), MAX_LINE))
        self.assertEqual(self.run_cmd("show version " + " " * (MAX_LINE - 20)).status, 0)

    def test_interactive_line_stops_growing(self):
        t = Term(self.app, priv=15, user="admin", clock=task.Clock())
        start = time.perf_counter()
        t.type(b"show version" + b" " * (200 * 1024))
        self.assertLess(time.perf_counter() - start, 5)
        self.assertEqual(len(t.cli.lineBuffer), MAX_LINE)
        out = t.type("\r")
        self.assertIn("cbac Software", out)


def _reference_filter(text, kind, pattern):
    """The filters as they were written before slicing (with Python's re)."""
    rx = re.compile(pattern)
    lines = text.split("\n")
    if kind == "include":
        return "\n".join(l for l in lines if rx.search(l))
    if kind == "exclude":
        return "\n".join(l for l in lines if not rx.search(l))
    if kind == "begin":
        for i, l in enumerate(lines):
            if rx.search(l):
                return "\n".join(lines[i:])
        return ""
    if kind == "count":
        return "Number of lines which match regexp = %d" % sum(1 for l in lines if rx.search(l))
    sections, out = [], []
    for l in lines:
        if l[:1] in (" ", "\t") and sections:
            sections[-1].append(l)
        else:
            sections.append([l])
    for sec in sections:
        if rx.search(sec[0]):
            out.extend(sec)
        else:
            kids = [l for l in sec[1:] if rx.search(l)]
            if kids:
                out.append(sec[0])
                out.extend(kids)
    return "\n".join(out)


class FilterTests(unittest.TestCase):
    def test_sliced_filters_give_the_same_output(self):
        rnd = random.Random(5)
        lines = []
        for i in range(5000):
            lines.append(("  " if rnd.random() < 0.6 else "") + rnd.choice(["interface", "ip", "access-list",
                                                                         "nat", ""]) + " %d" % i)
        text = "\n".join(lines)
        for kind in ("include", "exclude", "begin", "count", "section"):
            for pattern in ("ip 1", "^interface", "7$", "nomatch"):
                clock = task.Clock()
                d = budget.filter_text(text, (kind, pattern), clock)
                while not d.called:
                    clock.advance(0)
                got = self.successResultOf(d)
                self.assertEqual(got, _reference_filter(text, kind, pattern), (kind, pattern))
                short = "\n".join(lines[:50])
                self.assertEqual(self.successResultOf(budget.filter_text(short, (kind, pattern))),
                                 _reference_filter(short, kind, pattern), (kind, pattern))


class SliceTests(unittest.TestCase):
    """The reactor keeps turning while a 100,000-line output is filtered."""

    LINES = 100000

    def setUp(self):
        self.app = FakeAppliance()
        self.ctx = Context(self.app, "admin", 15, "127.0.0.1")
        self.tree = build_tree()
        text = "\n".join("session %06d 10.0.0.1:%d 192.0.2.1:80 SIS_OPEN" % (i, i % 65536)
                         for i in range(self.LINES))
        self.tree.add("show huge", lambda c, a: text, help="100k lines", privilege=1, pipe=True)

    @defer.inlineCallbacks
    def _filtered(self, line, expect_lines):
        meter = StallMeter()
        meter.start()
        yield task.deferLater(reactor, 0.01, lambda: None)
        r = yield run_line(self.tree, self.ctx, line)
        worst = meter.stop()
        self.assertEqual(len(r.text.split("\n")) if r.text else 0, expect_lines)
        # the handler's own text is made at once; the filter never holds
        # the reactor for more than a slice plus scheduling noise
        self.assertLess(worst, 0.05, "reactor stalled %.1f ms" % (worst * 1000))
        return worst

    def test_include_100k_lines(self):
        return self._filtered("show huge | include 12345 ", 2)

    def test_include_100k_lines_nfa(self):
        _nfa_only(self)
        return self._filtered("show huge | include 0999.$|^session 0000[0-4] ", 50)

    @defer.inlineCallbacks
    def test_generator_handler_taken_in_slices(self):
        def lines(c, a):
            for i in range(self.LINES):
                yield "line %06d %s" % (i, "x" * 40)
        self.tree.add("show lazy", lines, help="lazy", privilege=1, pipe=True)
        meter = StallMeter()
        meter.start()
        yield task.deferLater(reactor, 0.01, lambda: None)
        r = yield run_line(self.tree, self.ctx, "show lazy")
        worst = meter.stop()
        got = r.text.split("\n")
        self.assertEqual(len(got), self.LINES)
        self.assertEqual(got[12345], "line 012345 " + "x" * 40)
        self.assertLess(worst, 0.05, "reactor stalled %.1f ms" % (worst * 1000))
        r = yield run_line(self.tree, self.ctx, "show lazy | include ^line 09999[0-9]")
        self.assertEqual(len(r.text.split("\n")), 10)

    @defer.inlineCallbacks
    def test_generator_failing_midway(self):
        def lines(c, a):
            for i in range(1000):
                yield "line %d" % i
            raise KeyError("table changed")
        self.tree.add("show broken", lines, help="broken", privilege=1)
        r = yield run_line(self.tree, self.ctx, "show broken")
        self.assertEqual(r.status, 1)
        self.assertIn("% Command failed", r.text)
        self.flushLoggedErrors(KeyError)

    def test_write_sliced(self):
        out = []
        meter = StallMeter()
        meter.start()
        data = b"x" * (10 * budget.CHUNK + 7)
        d = budget.write_sliced(out.append, data, reactor)

        def check(_):
            meter.stop()
            self.assertEqual(b"".join(out), data)
            self.assertEqual(len(out), 11)
        return d.addCallback(check)


class SSHBatchTests(unittest.TestCase):
    """A real OpenSSH client piping commands into one session."""

    timeout = 120
    setUp = tcs.SSHTests.setUp
    _port = tcs.SSHTests._port
    ssh = tcs.SSHTests.ssh

    @defer.inlineCallbacks
    def test_thousand_command_batch(self):
        n = 1000
        cmds = b"".join(b"show clock\n" if i % 2 else b"show version | include ^cbac\n"
                        for i in range(n))
        meter = StallMeter()
        meter.start()
        out, err, code = yield self.ssh("admin", stdin=cmds)
        worst = meter.stop()
        self.assertEqual(code, 0, err[-500:])
        self.assertEqual(out.count(b"fw1#show clock\n*15:20:01.123"), n // 2)
        self.assertEqual(out.count(b"fw1#show version | include ^cbac\ncbac Software"), n // 2)
        self.assertLess(worst, 0.2, "reactor stalled %.1f ms" % (worst * 1000))

    @defer.inlineCallbacks
    def test_megabyte_line_in_batch_refused(self):
        stdin = b"show clock\nshow version " + b"x" * (1 << 20) + b"\nshow clock\n"
        start = time.perf_counter()
        out, err, code = yield self.ssh("admin", stdin=stdin)
        self.assertLess(time.perf_counter() - start, 15)
        self.assertEqual(code, 1, err)
        self.assertIn(b"% Command line too long (1048589 characters; the maximum is 1024).", out)
        self.assertEqual(out.count(b"*15:20:01.123"), 2)
        self.assertNotIn(b"xxxx", out)

    @defer.inlineCallbacks
    def test_long_exec_request_refused(self):
        cmd = "show version " + "z" * 100000
        out, err, code = yield self.ssh("admin", cmd)
        self.assertEqual(code, 1, err)
        self.assertEqual(out, ("%% Command line too long (%d characters; the maximum is 1024).\n"
                               % len(cmd)).encode())
        # and the log has no line as long as the request: conch would log
        # it whole (one 100 kB line); cbac logs its start and its length
        from twisted.logger import formatEvent
        lines = [formatEvent(e) for e in self.events]
        self.assertLess(max(len(line) for line in lines), 1024)
        self.assertIn("Executing command b'show version zzzz", "\n".join(lines))
        self.assertIn("z'... (%d bytes)" % len(cmd), "\n".join(lines))

    @defer.inlineCallbacks
    def test_catastrophic_regex_exec(self):
        start = time.perf_counter()
        out, err, code = yield self.ssh("oper", "show version | include " + CATASTROPHIC,
                                        password="operpw")
        self.assertEqual((code, out), (0, b""), err)
        self.assertLess(time.perf_counter() - start, 15)


class LoggedCommandTests(unittest.TestCase):
    def test_logged_command_is_cut_and_escaped(self):
        from cbac.console import ssh as cssh
        self.assertEqual(cssh.loggable_command(b"show clock"), "b'show clock'")
        shown = cssh.loggable_command(b"show version\n%FW-6-FAKE " + b"\x1b[2J" * 1000)
        self.assertNotIn("\n", shown)
        self.assertNotIn("\x1b", shown)
        self.assertTrue(shown.endswith("... (%d bytes)" % (24 + 4000)), shown)
        self.assertLess(len(shown), 4 * cssh.LOGGED_COMMAND + 30)


class StepReactor:
    """callLater(0, f) collected; :meth:`turn` runs one reactor turn."""

    def __init__(self):
        self.calls = []

    def callLater(self, delay, f, *a):
        self.calls.append((f, a))

    def turn(self):
        calls, self.calls = self.calls, []
        for f, a in calls:
            f(*a)


class InputFeederTests(unittest.TestCase):
    """Interactive input reaches the terminal parser in bounded slices; a
    paste beyond the typeahead buffer is dropped, as on IOS."""

    def test_slices_and_overflow(self):
        from cbac.console import ssh as cssh
        clock = StepReactor()
        got = []
        f = cssh._InputFeeder(got.append, clock)
        f.dataReceived(b"a" * 5000)
        self.assertEqual([len(g) for g in got], [cssh.INPUT_SLICE])
        clock.turn()
        self.assertEqual(len(got), 2)
        while f.pending:
            clock.turn()
        self.assertEqual(b"".join(got), b"a" * 5000)
        got.clear()
        f.dataReceived(b"b" * (1 << 20))
        while f.pending:
            clock.turn()
        self.assertEqual(len(b"".join(got)), cssh.INPUT_BACKLOG)
        self.assertEqual(f.dropped, (1 << 20) - cssh.INPUT_BACKLOG)
        self.assertTrue(all(len(g) <= cssh.INPUT_SLICE for g in got))

    def test_megabyte_paste_in_interactive_session(self):
        t = Term(FakeAppliance(), priv=15, user="admin", clock=task.Clock())
        from cbac.console import ssh as cssh
        clock = StepReactor()
        f = cssh._InputFeeder(t.server.dataReceived, clock)
        f.dataReceived(b"show version " + b"y" * (1 << 20))
        worst = 0.0
        while f.pending:
            start = time.perf_counter()
            clock.turn()
            worst = max(worst, time.perf_counter() - start)
        self.assertEqual(len(t.cli.lineBuffer), MAX_LINE)
        self.assertLess(worst, 0.05, "one slice took %.1f ms" % (worst * 1000))
        t.out()
        t.type(b"\x15")                                 # Ctrl-U: discard the line
        self.assertIn("cbac Software", t.type("show version\r"))

    def test_eof_after_the_typeahead(self):
        from cbac.console import ssh as cssh
        clock = StepReactor()
        got, ended = [], []
        f = cssh._InputFeeder(got.append, clock)
        f.dataReceived(b"c" * 3000)
        f.eof(lambda: ended.append(len(b"".join(got))))
        self.assertEqual(ended, [])
        while clock.calls:
            clock.turn()
        self.assertEqual(ended, [3000])
        f.stop()
        f.dataReceived(b"more")
        self.assertEqual(len(b"".join(got)), 3000)


class TtyTypeaheadTests(unittest.TestCase):
    """``ssh -tt`` with more than one slice of piped input, then EOF: every
    command runs before the session ends."""

    timeout = 60
    setUp = tcs.SSHTests.setUp
    _port = tcs.SSHTests._port
    ssh = tcs.SSHTests.ssh

    @defer.inlineCallbacks
    def test_typeahead_then_eof(self):
        stdin = b"terminal length 0\n" + b"show clock\n" * 200
        out, err, code = yield self.ssh("admin", tty=True, stdin=stdin)
        self.assertEqual(code, 0, err)
        self.assertEqual(out.count(b"*15:20:01.123 UTC"), 200)
