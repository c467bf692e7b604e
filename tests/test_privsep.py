"""Privilege separation (issue 16): the console's appliance over AMP.

The engine's :class:`EngineProtocol` (on a real appliance: the seed
configuration on memory ports) and the management process's
:class:`RemoteAppliance` talk through an in-memory AMP connection; every
console command runs through it and prints what it prints in one process;
big outputs come in pages, generated outputs in time slices; the log
stream to ``terminal monitor`` is bounded and drops the oldest lines.
"""

import os

from twisted.test import iosim
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from cbac.config.parser import parse_config
from cbac.console.cli import Context, run_line
from cbac.console.commands import build_tree
from cbac.console.interfaces import IConsoleAppliance
from cbac.log import ios
from cbac.privsep import engine as E
from cbac.privsep import protocol as P
from cbac.privsep.remote import MgmtProtocol, RemoteAppliance
from tests.test_console_appliance import EXEC_REFUSED, commands, real_appliance, sample_line


class Pair:
    """An engine and a management side joined by an in-memory AMP link."""

    def __init__(self, testcase):
        self.app, self.ports, self.conf = real_appliance(testcase)
        self.clock = self.app.clock
        self.engine = E.EngineProtocol(self.app, self.clock)
        self.engine.cpu_budget = 1e9         # (its own test below)
        self.config_changes = []
        self.mgmt = MgmtProtocol(on_config=lambda: self.config_changes.append(1))
        self.pump = iosim.connect(self.engine, iosim.makeFakeServer(self.engine),
                                  self.mgmt, iosim.makeFakeClient(self.mgmt))
        self.remote = None
        text, path = self.wait(self.mgmt.fetch_config())
        model, _ = parse_config(text, path)
        self.remote = RemoteAppliance(model, path)
        self.remote.amp = self.mgmt
        self.mgmt.monitor = self.remote.log_observers.monitor

    def settle(self, rounds=2000):
        for _ in range(rounds):
            if not self.pump.pump() and not self.clock.getDelayedCalls():
                return
            self.clock.advance(0)

    def wait(self, d):
        out = []
        d.addBoth(out.append)
        for _ in range(100000):
            if out:
                break
            self.pump.pump()
            self.clock.advance(0)
        assert out, "no answer"
        if hasattr(out[0], "raiseException"):
            out[0].raiseException()
        return out[0]

    def run(self, line, priv=15):
        ctx = Context(self.remote, "admin", priv, "127.0.0.1")
        return self.wait(run_line(build_tree(), ctx, line, echo=True))


class RemoteApplianceTests(unittest.TestCase):
    def setUp(self):
        self.p = Pair(self)
        self.addCleanup(ios.debugging.clear)

    def local(self, line):
        ctx = Context(self.p.app, "admin", 15, "127.0.0.1")
        out = []
        run_line(build_tree(), ctx, line, echo=True).addCallback(out.append)
        return out[0]

    def test_provides_the_interface(self):
        verifyObject(IConsoleAppliance, self.p.remote)

    def test_every_engine_method_of_the_interface_is_served(self):
        """A show method added to IConsoleAppliance must be whitelisted for
        the engine (or answered in the management process), or the console
        says 'Engine error' for it in the default two-process mode."""
        local = {"hostname", "router_model", "log_observers", "check_enable", "check_login",
                 "authorized_keys", "show_running_config", "show_clock", "manhole_namespace"}
        other = {"clear", "debug", "undebug_all", "copy_running_startup", "configure_replace",
                 "reload_config"}
        names = set(IConsoleAppliance.names(all=True))
        self.assertEqual(names - local - other - E.SHOW_METHODS, set())

    def test_config_copy_is_the_running_config(self):
        self.assertEqual(self.p.remote.hostname, self.p.app.hostname)
        self.assertEqual(self.p.run("show running-config").text,
                         self.local("show running-config").text)

    def test_every_command_through_amp(self):
        done = 0
        for syntax, node in commands(build_tree()):
            line = sample_line(syntax, self.p.conf)
            r = self.p.run(line)
            done += 1
            self.assertNotIn("% Command failed", r.text, line)
            self.assertNotIn("Engine error", r.text, line)
            self.assertNotIn("did not answer", r.text, line)
            if syntax in EXEC_REFUSED:
                self.assertEqual(r.status, 1, line)
            else:
                self.assertEqual(r.status, 0, (line, r.text))
        self.assertGreater(done, 80)

    def test_shows_match_one_process(self):
        for line in ("show access-lists 101", "show ip inspect config", "show ip route",
                     "show ip interface brief", "show ip inspect name OUT-IN",
                     "show ip nat statistics", "show debugging", "show access-lists",
                     "show logging"):
            self.assertEqual(self.p.run(line).text, self.local(line).text, line)

    def test_failed_result_keeps_its_status(self):
        r = self.p.run("show ip inspect name FOO")
        self.assertEqual((r.status, r.text), (1, "% Inspection rule FOO is not configured"))
        r = self.p.run("clear counters Ethernet9/9")
        self.assertEqual(r.status, 1)
        self.assertIn("% Invalid interface", r.text)

    def test_debug_acts_in_the_engine(self):
        ios.debugging.clear()
        self.assertIn("IP NAT debugging is on", self.p.run("debug ip nat").text)
        self.assertIn("ip nat", ios.debugging.enabled)
        self.assertIn("turned off", self.p.run("undebug all").text)
        self.assertEqual(ios.debugging.enabled, set())

    def test_logins_are_checked_on_the_management_side(self):
        self.assertEqual(self.p.remote.check_login("admin", "cisco"),
                         self.p.app.check_login("admin", "cisco"))
        self.assertIsNone(self.p.remote.check_login("admin", "wrong"))
        self.assertTrue(self.p.remote.check_enable("cisco"))
        self.assertFalse(self.p.remote.check_enable("nope"))

    def test_configure_replace_notifies(self):
        r = self.p.run("configure replace %s force" % self.p.conf)
        self.assertIn("completed successfully", r.text)
        self.p.settle()
        self.assertEqual(self.p.config_changes, [])       # no supervisor hook here
        self.p.engine.config_changed()
        self.p.settle()
        self.assertEqual(self.p.config_changes, [1])

    def test_configure_replace_only_from_the_configuration_directory(self):
        """The unprivileged console cannot make the engine read /etc/shadow."""
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: the engine's view of root-only files")
        self.p.engine.peer_ids = (65534, 65534)
        for path in ("/etc/shadow", os.path.dirname(self.p.conf) + "/../../../../../etc/shadow"):
            r = self.p.run("configure replace %s force" % path)
            self.assertEqual(r.status, 1, path)
            self.assertIn("cbac reads replacement configurations only from there", r.text)
            self.assertNotIn("root:", r.text)
        link = os.path.join(os.path.dirname(self.p.conf), "link.conf")
        os.symlink("/etc/shadow", link)
        r = self.p.run("configure replace %s force" % link)
        self.assertEqual(r.status, 1)
        self.assertNotIn("root:", r.text)
        r = self.p.run("configure replace %s force" % os.path.basename(self.p.conf))
        self.assertEqual(r.status, 0, r.text)
        self.assertIn("completed successfully", r.text)

    def test_configure_replace_from_a_file_the_console_user_could_read(self):
        import shutil
        import tempfile
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: the engine's view of root-only files")
        self.p.engine.peer_ids = (65534, 65534)
        d = tempfile.mkdtemp(prefix="cbac-replace-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "other.conf")
        shutil.copy(self.p.conf, path)
        os.chmod(d, 0o755)
        os.chmod(path, 0o644)
        r = self.p.run("configure replace %s force" % path)
        self.assertEqual(r.status, 0, r.text)
        os.chmod(path, 0o600)                 # readable by its owner only
        if os.stat(path).st_uid != 65534:
            r = self.p.run("configure replace %s force" % path)
            self.assertEqual(r.status, 1, r.text)
            self.assertIn("could not read it itself", r.text)
        os.chmod(path, 0o644)
        os.chmod(d, 0o700)                    # the directory is not searchable
        r = self.p.run("configure replace %s force" % path)
        self.assertEqual(r.status, 1, r.text)

    def test_clear_secret_never_shown_or_written_through_amp(self):
        """The seed's 'secret 0 cisco': the management process's
        show running-config and write memory through the engine keep it
        hashed; the text sent to the management process is the file."""
        import stat
        from cbac.config.parser import parse
        from cbac.console import auth
        with open(self.p.conf) as f:
            self.assertIn("secret 0 cisco", f.read())
        out = self.p.run("show running-config").text
        self.assertNotIn(" cisco", out)
        self.assertIn("enable secret 9 $9$", out)
        out = self.p.run("show running-config | include secret").text
        self.assertNotIn("cisco", out)
        r = self.p.run("write memory")
        self.assertIn("[OK]", r.text)
        self.assertEqual(stat.S_IMODE(os.stat(self.p.conf).st_mode), 0o600)
        with open(self.p.conf) as f:
            saved = f.read()
        self.assertNotIn("secret 0", saved)
        self.assertNotIn(" cisco\n", saved)
        self.assertTrue(auth.verify(parse(saved).enable_secret, "cisco"))

    def test_unknown_show_method_refused(self):
        r = self.p.wait(self.p.remote._show("manhole_namespace"))
        self.assertEqual(r[0], False)
        self.assertIn("Engine error", r[1])
        r = self.p.wait(self.p.remote._show("__init__"))
        self.assertIn("Engine error", r[1])

    def test_engine_gone(self):
        self.p.mgmt.connected = False
        r = self.p.run("show version")
        self.assertEqual(r.status, 1)
        self.assertIn("engine is not reachable", r.text)


class PagingTests(unittest.TestCase):
    def setUp(self):
        self.p = Pair(self)

    def test_big_string_comes_in_pages(self):
        text = "\n".join("line %06d" % i for i in range(100000))
        self.p.app.show_version = lambda: text
        r = self.p.run("show version")
        self.assertEqual(r.text, text)
        self.assertEqual(self.p.engine.pagers, {})

    def test_generated_output_is_sliced(self):
        """A generator of lines is consumed SLICE seconds per reactor turn:
        the engine's reactor turns in between (the clock's callLater(0))."""
        import time
        n = 50000

        def gen():
            for i in range(n):
                if i % 1000 == 0:
                    time.sleep(0.001)           # 1 ms of 'work' every 1,000 lines
                yield "entry %d" % i
        self.p.app.lines_logging = gen
        turns = []
        orig = self.p.clock.advance

        def advance(t):
            turns.append(t)
            return orig(t)
        self.p.clock.advance = advance
        r = self.p.run("show logging")
        self.assertEqual(r.text, "\n".join("entry %d" % i for i in range(n)))
        self.assertGreater(len(turns), 20)

    def test_too_many_open_replies_drop_the_oldest(self):
        text = "x" * (P.PAGE * 3)
        for i in range(E.MAX_HANDLES + 5):
            self.p.wait(self.p.engine._reply(text))
        self.assertEqual(len(self.p.engine.pagers), E.MAX_HANDLES)

    def test_bad_arguments(self):
        self.assertRaises(P.EngineError, E.decode_args, "[[{}], {}]")
        self.assertRaises(P.EngineError, E.decode_args, "nonsense")
        self.assertEqual(E.decode_args('[["a", 1, null], {"x": true}]'), (["a", 1, None], {"x": True}))


class LogStreamTests(unittest.TestCase):
    def setUp(self):
        self.p = Pair(self)

    def test_monitor_lines_reach_the_console_side(self):
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(self.p.app.log_observers)
        self.addCleanup(globalLogPublisher.removeObserver, self.p.app.log_observers)
        got = []
        self.p.remote.log_observers.monitor.attach(got.append)
        self.p.settle()
        self.assertTrue(self.p.engine._monitoring)
        ios.message("FW", 6, "TEST", "hello from the engine")
        self.p.settle()
        self.assertTrue(any("%FW-6-TEST: hello from the engine" in l for l in got), got)
        self.p.remote.log_observers.monitor.detach(got.append)
        self.p.settle()
        self.assertFalse(self.p.engine._monitoring)

    def test_slow_console_loses_oldest_lines_engine_never_waits(self):
        eng = self.p.engine
        eng._sending = True                     # a LogEvent in flight, never answered
        for i in range(E.LOG_QUEUE + 500):
            eng.monitor_line("line %d" % i)
        self.assertEqual(len(eng.queue), E.LOG_QUEUE)
        self.assertEqual(eng.dropped, 500)
        self.assertEqual(eng.queue[0], "line 500")
        got = []
        self.p.remote.log_observers.monitor.callbacks.append(got.append)
        eng._sending = False
        eng.monitor_line("last")
        self.p.settle()
        # 'last' found the queue full too: 501 dropped, oldest first
        self.assertIn("501 log lines were not shown", got[0])
        self.assertEqual(got[1], "line 501")
        self.assertEqual(got[-1], "last")
        self.assertEqual(len(got), E.LOG_QUEUE + 1)


class AuthorizedKeysTests(unittest.TestCase):
    def test_unreadable_file_comes_from_the_engine(self):
        p = Pair(self)
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("# comment\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample admin@x\n")
        p.app.model.ssh.authorized_keys = path
        p.remote.model.ssh.authorized_keys = path
        r = p.wait(p.mgmt.callRemote(P.GetAuthorizedKeys))
        p.remote.keys_from_engine = r["data"].encode()
        self.assertEqual(p.remote.authorized_keys("admin"),
                         [b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample admin@x"])
        os.chmod(path, 0)
        self.patch(__import__("builtins"), "open", _refuse_open(path))
        self.assertEqual(p.remote.authorized_keys("admin"),
                         [b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample admin@x"])
        self.assertEqual(p.remote.authorized_keys("nobody-such"), [])


def _refuse_open(path):
    import builtins
    real = builtins.open

    def fake(name, *a, **kw):
        if name == path:
            raise PermissionError(13, "Permission denied", name)
        return real(name, *a, **kw)
    return fake


class MgmtLogTests(unittest.TestCase):
    def test_console_lines_reach_the_engine_log_rate_limited(self):
        from twisted.logger import globalLogPublisher
        p = Pair(self)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for i in range(E.MGMT_LOG_RATE + 100):
            p.mgmt.callRemote(P.MgmtLog, severity=5, facility="SEC_LOGIN", mnemonic="LOGIN_SUCCESS",
                              message="%%SEC_LOGIN-5-LOGIN_SUCCESS: line %d" % i)
        p.settle()
        mine = [e for e in events if e.get("cbac_from_mgmt")]
        self.assertEqual(len(mine), E.MGMT_LOG_RATE)
        self.assertEqual(mine[0]["ios_message"], "%SEC_LOGIN-5-LOGIN_SUCCESS: line 0")
        self.assertEqual(mine[0]["ios_severity"], 5)
        p.clock.advance(1.5)
        p.mgmt.callRemote(P.MgmtLog, severity=5, facility="", mnemonic="X", message="after")
        p.settle()
        text = [e.get("log_format") for e in events]
        self.assertIn("management process: {n} log lines dropped (more than {rate}/s)", text)
        self.assertEqual([e for e in events if e.get("cbac_from_mgmt")][-1]["ios_message"], "after")


class EndpointSocketTests(unittest.TestCase):
    def test_tcp_endpoints_are_bound_by_the_engine(self):
        s = E._endpoint_socket("tcp:0:interface=127.0.0.1")
        self.addCleanup(s.close)
        self.assertEqual(s.getsockname()[0], "127.0.0.1")
        self.assertIsNone(E._endpoint_socket("unix:/tmp/x.sock"))
        self.assertIsNone(E._endpoint_socket("tcp:port=0:interface=127.0.0.1:foo=bar"))
        self.assertRaises(ValueError, E._endpoint_socket, "tcp:notaport")


class CpuBudgetTests(unittest.TestCase):
    def test_requests_beyond_the_budget_wait_for_the_next_second(self):
        import time
        p = Pair(self)
        p.engine.cpu_budget = 0.05

        def slow():
            time.sleep(0.03)
            return "slow"
        p.app.show_version = slow
        first = p.run("show version")            # 30 ms
        second = p.run("show version")           # 60 ms: over the budget now
        self.assertEqual((first.text, second.text), ("slow", "slow"))
        out = []
        run_line(build_tree(), Context(p.remote, "admin", 15, "x"), "show version").addCallback(out.append)
        for _ in range(200):
            p.pump.pump()
            p.clock.advance(0)
        self.assertEqual(out, [])                 # waits: the engine keeps forwarding
        self.assertEqual(p.engine.requests_delayed, 1)
        p.clock.advance(1.0)
        p.settle()
        self.assertEqual(out[0].text, "slow")


class _FakeTransport:
    def __init__(self, pid):
        self.pid = pid
        self.signals = []

    def signalProcess(self, sig):
        self.signals.append(sig)


class SupervisorTests(unittest.TestCase):
    """MgmtSupervisor's restarts, with a clock and a fake spawnProcess."""

    def setUp(self):
        from twisted.internet.task import Clock
        from twisted.python.failure import Failure
        from twisted.internet.error import ProcessTerminated
        self.Failure, self.ProcessTerminated = Failure, ProcessTerminated
        self.clock = Clock()
        self.spawned = []
        self.adopted = []
        clock = self.clock

        def spawnProcess(pp, exe, argv, env=None, path=None, childFDs=None):
            t = _FakeTransport(1000 + len(self.spawned))
            self.spawned.append((pp, argv, childFDs))
            return t

        def adoptStreamConnection(fd, family, factory):
            self.adopted.append(factory.buildProtocol(None))
        clock.spawnProcess = spawnProcess
        clock.adoptStreamConnection = adoptStreamConnection

        class App:
            on_apply = []
        self.state = os.path.abspath(self.mktemp())
        self.sup = E.MgmtSupervisor(App(), clock, ["tcp:0:interface=127.0.0.1", "unix:/x"],
                                    self.state, user="no-such-user-cbac-test")
        self.sup.startService()
        self.addCleanup(self.sup.stopService)

    def die(self, n, how=9):
        pp = self.spawned[n][0]
        pp.processEnded(self.Failure(self.ProcessTerminated(signal=how)))

    def test_spawn_arguments(self):
        pp, argv, fds = self.spawned[0]
        self.assertEqual(argv[1:5], ["-m", "cbac.mgmt", "--amp-fd", "3"])
        self.assertIn("--hostkey-fd", argv)
        self.assertIn("--listen", argv)
        self.assertEqual(argv[argv.index("--listen") + 1], "unix:/x")
        self.assertTrue(any(a.startswith("5:tcp:0:interface=127.0.0.1") for a in argv))
        self.assertEqual(sorted(fds), [0, 1, 2, 3, 4, 5])
        if os.geteuid() == 0:
            self.assertEqual(argv[argv.index("--uid") + 1], "65534")
        self.assertTrue(os.path.exists(os.path.join(self.state, "ssh_host_ed25519_key")))

    def test_restart_with_backoff_and_reset(self):
        delays = []
        for n in range(8):
            self.die(n)
            [call] = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
            self.assertEqual(len(self.spawned), n + 2)
        self.assertEqual(delays, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0])
        self.assertEqual(self.sup.restarts, 8)
        self.clock.advance(E.RESET + 1)           # ran long enough: back to the first delay
        self.die(8)
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 0.5)

    def test_no_restart_after_stop(self):
        self.sup.stopService()
        self.die(0, how=15)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.spawned), 1)


def _with_metrics(p):
    from cbac.metrics import EngineMetrics
    p.app.metrics_source = EngineMetrics(p.app, p.clock)
    return p


class MetricsTests(unittest.TestCase):
    """Two processes: the engine answers :class:`protocol.Metrics` with the
    exposition text; the management process runs ``GET /metrics``."""

    def setUp(self):
        self.p = _with_metrics(Pair(self))

    def test_snapshot_over_amp_is_the_engines_state(self):
        from cbac.metrics import collect
        text = self.p.wait(self.p.remote.metrics_text())
        self.assertIsInstance(text, str)
        for name in sorted(self.p.app.router.interfaces):
            self.assertIn('cbac_interface_up{interface="%s"}' % name, text)
        self.assertIn("cbac_build_info", text)
        self.assertIn("cbac_inspect_sessions_half_open", text)
        # the same families as one process renders
        fams = lambda t: [l for l in t.splitlines() if l.startswith("# TYPE")]  # noqa: E731
        self.assertEqual(fams(text), fams(collect(self.p.app, self.p.app.metrics_source.log_counter)))

    def test_snapshot_is_reused_and_paged(self):
        self.p.wait(self.p.remote.metrics_text())
        src = self.p.app.metrics_source
        src._cache = (self.p.clock.seconds(), "x" * (3 * P.PAGE + 7))
        self.assertEqual(self.p.wait(self.p.remote.metrics_text()), "x" * (3 * P.PAGE + 7))

    def test_too_big_or_failing_snapshot_is_an_error_not_a_cut_text(self):
        from cbac import metrics as M
        self.p.wait(self.p.remote.metrics_text())
        self.patch(M, "MAX_SNAPSHOT", 10)
        self.p.clock.advance(10)
        self.assertRaises(Exception, self.p.wait, self.p.remote.metrics_text())
        self.flushLoggedErrors()

    def render(self, resource, path=b"/metrics"):
        from twisted.web.test.requesthelper import DummyRequest
        req = DummyRequest([b"metrics"])
        req.path = path
        r = resource.render(req)
        if r is not None and r != 1:          # (server.NOT_DONE_YET == 1)
            req.write(r)
            req.finish()
        self.p.settle()
        return req

    def test_endpoint_answers_from_the_management_side(self):
        from cbac.metrics import CONTENT_TYPE, RemoteMetricsResource
        res = RemoteMetricsResource(self.p.remote.metrics_text, self.p.clock)
        a, b = self.render(res), self.render(res)
        for req in (a, b):
            self.assertEqual(req.finished, 1)
            body = b"".join(req.written).decode()
            self.assertIn('cbac_interface_up{interface="', body)
            self.assertEqual(req.responseHeaders.getRawHeaders(b"content-type"), [CONTENT_TYPE])
        self.assertEqual(self.render(res, b"/other").responseCode, 404)

    def test_engine_without_metrics_refuses(self):
        del self.p.app.metrics_source
        self.assertRaises(Exception, self.p.wait, self.p.remote.metrics_text())

    def test_engine_gone_is_503(self):
        from cbac.metrics import RemoteMetricsResource
        self.p.remote.amp = None
        res = RemoteMetricsResource(self.p.remote.metrics_text, self.p.clock)
        req = self.render(res)
        self.assertEqual(req.responseCode, 503)
        self.assertEqual(req.finished, 1)
        self.flushLoggedErrors()


class MetricsHttpTests(unittest.TestCase):
    """A real HTTP client against the management side's listener on a
    socket bound elsewhere (as the engine binds a privileged port),
    answering from the engine over AMP."""

    def test_real_scrape_through_adopted_socket(self):
        import socket
        from twisted.internet import reactor, task
        from twisted.web.client import Agent, readBody
        from cbac.mgmt.main import start_metrics
        p = _with_metrics(Pair(self))
        pumping = task.LoopingCall(lambda: (p.pump.pump(), p.clock.advance(0)))
        pumping.start(0.001)
        self.addCleanup(pumping.stop)
        s = E._endpoint_socket("tcp:0:interface=127.0.0.1")
        self.addCleanup(s.close)
        port = s.getsockname()[1]
        desc = "tcp:%d:interface=127.0.0.1" % port
        p.remote.model.metrics_listen = [desc]
        svc = start_metrics(p.remote, {desc: (s.fileno(), socket.AF_INET)}, reactor=reactor)
        self.assertEqual(svc.adopted[desc][0], s.fileno())      # (kept; a copy listens)
        self.addCleanup(svc.stopService)
        self.assertTrue(desc in svc.ports or desc in svc._pending)

        d = Agent(reactor).request(b"GET", b"http://127.0.0.1:%d/metrics" % port)

        def got(resp):
            self.assertEqual(resp.code, 200)
            return readBody(resp)

        def body(b):
            self.assertIn(b"cbac_interface_up{interface=", b)
            self.assertIn(b"process_cpu_seconds_total", b)
        return d.addCallback(got).addCallback(body)


class MetricsSocketTests(unittest.TestCase):
    def test_privileged_metrics_port_bound_by_engine_and_passed(self):
        from twisted.internet.task import Clock
        self.patch(E, "PRIVILEGED_PORTS", 65536)      # (any port counts as privileged)
        probe = E._endpoint_socket("tcp:0:interface=127.0.0.1")
        port = probe.getsockname()[1]
        probe.close()
        clock = Clock()
        spawned = []
        clock.spawnProcess = lambda pp, exe, argv, env=None, path=None, childFDs=None: \
            spawned.append((argv, dict(childFDs))) or _FakeTransport(4242)
        clock.adoptStreamConnection = lambda fd, fam, f: None

        class Model:
            metrics_listen = ["tcp:%d:interface=127.0.0.1" % port, "tcp:0:interface=127.0.0.1"]

        class App:
            on_apply = []
            model = Model()
        sup = E.MgmtSupervisor(App(), clock, [], os.path.abspath(self.mktemp()),
                               user="no-such-user-cbac-test")
        sup.startService()
        self.addCleanup(sup.stopService)
        argv, fds = spawned[0]
        i = argv.index("--metrics-fd")
        n, _, desc = argv[i + 1].partition(":")
        self.assertEqual(desc, "tcp:%d:interface=127.0.0.1" % port)
        self.assertIn(int(n), fds)
        self.assertEqual(argv.count("--metrics-fd"), 1)     # port 0: the child binds it
        # the engine's copy is closed once handed over: the port is the child's
        self.assertEqual(sup.metrics_passed, {desc})


class SyslogTests(unittest.TestCase):
    """Two processes: the engine opens no syslog socket; its lines for the
    ``logging host``s stream to the management process, which sends them."""

    def setUp(self):
        import ipaddress
        from twisted.internet import reactor
        from cbac.config.model import LogHost
        from cbac.log.observers import LogObservers
        from tests.test_logging import _UDP
        self.p = p = Pair(self)
        self.rx = _UDP()
        self.port = reactor.listenUDP(0, self.rx, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        host = LogHost(ipaddress.IPv4Address("127.0.0.1"), port=self.port.getHost().port)
        p.app.model.logging.hosts = [host]
        p.remote.model.logging.hosts = [host]
        self.obs = LogObservers(p.app.model, p.clock, remote_syslog=True)
        p.app.log_observers = self.obs
        p.engine.attach_syslog()

    def mgmt_side(self):
        from twisted.internet import reactor, task
        from cbac.privsep.remote import RemoteSyslog
        p = self.p
        rs = RemoteSyslog(reactor)
        p.mgmt.syslog = rs
        r = p.wait(p.mgmt.callRemote(P.SyslogSources))
        self.assertEqual(r["sources"], [{"address": "127.0.0.1", "transport": "udp", "ip": "",
                                         "port": 0}])
        rs.set_sources(r["sources"])
        rs.configure(p.remote.model)
        self.addCleanup(rs.stop)
        pumping = task.LoopingCall(lambda: (p.pump.pump(), p.clock.advance(0)))
        pumping.start(0.001)
        self.addCleanup(pumping.stop)
        return rs

    def test_datagram_is_sent_by_the_management_side(self):
        from twisted.internet import defer
        rs = self.mgmt_side()
        self.assertEqual(self.obs.hosts, [])            # the engine has no syslog socket
        self.assertEqual(list(self.obs.service), [])
        self.assertEqual(len(rs.obs.hosts), 1)          # the management side has
        self.rx.waiting = defer.Deferred()
        self.obs(_event("%FW-6-TEST: to syslog from the engine", 6))
        self.obs(_event("CBAC debug line", 7))           # below trap informational

        def check(data):
            self.assertTrue(data.startswith(b"<190>1: "), data)
            self.assertIn(b"%FW-6-TEST: to syslog from the engine", data)
            self.assertEqual(rs.obs.hosts[0].sent, 1)
            self.p.settle()                               # (the SyslogEvent's answer)
            self.assertEqual(self.obs.remote_sent, 1)
            self.assertIn("Logging to 127.0.0.1  (udp port %d, sent by the management process)"
                          % self.port.getHost().port, self.obs.show_logging())
        return self.rx.waiting.addCallback(check)

    def test_dead_management_loses_lines_counted_engine_never_waits(self):
        self.p.engine.connected = False                 # the management process is gone
        self.obs.remote_wakeup = None
        n = self.obs.REMOTE_QUEUE + 25
        for i in range(n):
            self.obs(_event("%%FW-6-TEST: line %d" % i, 6))
        self.assertEqual(len(self.obs.remote_queue), self.obs.REMOTE_QUEUE)
        self.assertEqual(self.obs.remote_dropped, 25)
        self.assertIn("line 25", self.obs.remote_queue[0].text)
        text = self.obs.show_logging()
        self.assertIn("Syslog logging: enabled (25 messages dropped", text)
        self.assertIn("25 message lines dropped (management process slow or down)", text)
        # the buffer (show logging) stays the engine's and has every line
        self.assertIn("line %d" % (n - 1), text)

    def test_queued_lines_reach_a_restarted_management_side(self):
        from twisted.internet import defer
        self.p.engine.connected = False
        self.obs.remote_wakeup = None
        self.obs(_event("%FW-6-TEST: while it was down", 6))
        self.p.engine.connected = True
        self.rx.waiting = defer.Deferred()
        self.mgmt_side()
        self.p.engine.attach_syslog()

        def check(data):
            self.assertIn(b"while it was down", data)
        return self.rx.waiting.addCallback(check)


def _event(text, severity):
    from tests.test_logging import ev
    return ev(text, severity)


class TLSSyslogTests(unittest.TestCase):
    """TLS syslog in two processes: the management side holds the TLS
    connection (RFC 5425 octet counting), fed by the engine's stream."""
    timeout = 20

    def test_tls_line_sent_by_the_management_side(self):
        import ipaddress
        from twisted.internet import defer, reactor, ssl, task
        from cbac.config.model import LogHost
        from cbac.log.observers import LogObservers
        from cbac.privsep.remote import RemoteSyslog
        from tests.test_logging import _CollectorFactory, _make_pki
        tmp = self.mktemp()
        os.makedirs(tmp)
        ca, good, _ = _make_pki(tmp)
        f = _CollectorFactory()
        lp = reactor.listenSSL(0, f, ssl.PrivateCertificate.loadPEM(good).options(),
                               interface="127.0.0.1")
        self.addCleanup(lp.stopListening)
        p = Pair(self)
        host = LogHost(ipaddress.IPv4Address("127.0.0.1"), transport="tls",
                       port=lp.getHost().port)
        for m in (p.app.model, p.remote.model):
            m.logging.hosts = [host]
            m.logging.tls_ca = ca
        obs = LogObservers(p.app.model, p.clock, remote_syslog=True)
        p.app.log_observers = obs
        p.engine.attach_syslog()
        rs = RemoteSyslog(reactor)
        p.mgmt.syslog = rs
        rs.configure(p.remote.model)
        self.addCleanup(rs.stop)
        self.assertEqual(obs.hosts, [])                  # no TLS connection in the engine
        pumping = task.LoopingCall(lambda: (p.pump.pump(), p.clock.advance(0)))
        pumping.start(0.001)
        self.addCleanup(pumping.stop)
        f.waiting = defer.Deferred()
        obs(_event("%FW-3-TEST: over TLS from the management side", 3))

        def check(data):
            n, _, rest = data.partition(b" ")
            self.assertEqual(int(n), len(rest))
            self.assertIn(b"%FW-3-TEST: over TLS from the management side", rest)
        return f.waiting.addCallback(check)
