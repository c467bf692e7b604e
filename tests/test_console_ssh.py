"""The SSH console against the real OpenSSH client on 127.0.0.1."""

import os
import shutil
import stat

from twisted.internet import defer, protocol, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from cbac.console import ssh as cssh
from tests.fakeappliance import FakeAppliance

SSH = shutil.which("ssh")
SSH_KEYGEN = shutil.which("ssh-keygen")


class _Proc(protocol.ProcessProtocol):
    def __init__(self, stdin):
        self.stdin = stdin
        self.out = b""
        self.err = b""
        self.done = defer.Deferred()

    def connectionMade(self):
        if self.stdin is not None:
            self.transport.write(self.stdin)
            if not self.stdin.endswith(b"exit\n"):
                self.transport.closeStdin()

    def outReceived(self, data):
        self.out += data

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.done.callback((self.out, self.err, reason.value.exitCode))


def run(argv, env=None, stdin=None, timeout=20):
    p = _Proc(stdin)
    reactor.spawnProcess(p, argv[0], argv, env=env or {})
    call = reactor.callLater(timeout, lambda: p.transport.signalProcess("KILL"))

    def stop(r):
        if call.active():
            call.cancel()
        return r
    return p.done.addBoth(stop)


class SSHTests(unittest.TestCase):
    timeout = 45

    def setUp(self):
        if SSH is None:
            raise unittest.SkipTest("no ssh client")
        self.tmp = self.mktemp()
        os.makedirs(self.tmp)
        self.app = FakeAppliance()
        self.permit = True
        self.svc = cssh.makeConsoleService(self.app, self.app.router_model,
                                           os.path.join(self.tmp, "state"),
                                           ["tcp:0:interface=127.0.0.1"], reactor=reactor,
                                           vty_permits=lambda src: self.permit)
        self.svc.console.fail_delay = 0.2
        self.svc.startService()
        self.addCleanup(self.svc.stopService)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        askpass = os.path.join(self.tmp, "askpass")
        with open(askpass, "w") as f:
            f.write("#!/bin/sh\ncat %s\n" % os.path.join(self.tmp, "pw"))
        os.chmod(askpass, stat.S_IRWXU)
        self.env = {"SSH_ASKPASS": askpass, "SSH_ASKPASS_REQUIRE": "force",
                    "DISPLAY": ":0", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOME": self.tmp}
        return self.svc.whenListening().addCallback(self._port)

    def _port(self, ports):
        self.port = ports[0].getHost().port

    def ssh(self, user, *args, password="secret", key=None, stdin=None, tty=False, prompts=1):
        with open(os.path.join(self.tmp, "pw"), "w") as f:
            f.write(password + "\n")
        argv = [SSH, "-F", "/dev/null", "-p", str(self.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "NumberOfPasswordPrompts=%d" % prompts,
                "-o", "ConnectTimeout=10"]
        if key:
            argv += ["-i", key, "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no",
                     "-o", "KbdInteractiveAuthentication=no"]
        else:
            argv += ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"]
        if tty:
            argv.append("-tt")
        argv.append("%s@127.0.0.1" % user)
        argv += list(args)
        return run(argv, self.env, stdin)

    def messages(self):
        return [e.get("ios_message", "") for e in self.events]

    @defer.inlineCallbacks
    def test_exec_command(self):
        out, err, code = yield self.ssh("admin", "show ip inspect all")
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith(b"inspect line 000\ninspect line 001\n"), out[:40])
        self.assertTrue(out.endswith(b"inspect line 059\n"), out[-40:])
        self.assertEqual(out.count(b"\n"), 60)
        self.assertTrue(any(m.startswith("%%SEC_LOGIN-5-LOGIN_SUCCESS: Login Success [user: admin] "
                                         "[Source: 127.0.0.1] [localport: %d] at " % self.port)
                            for m in self.messages()), self.messages())
        out, err, code = yield self.ssh("admin", "show ip inspect bogus")
        self.assertEqual(code, 1)
        self.assertIn(b"% Invalid input detected at '^' marker.", out)

    @defer.inlineCallbacks
    def test_exec_privilege_1(self):
        out, err, code = yield self.ssh("oper", "show running-config", password="operpw")
        self.assertEqual(code, 1)
        self.assertIn(b"% Invalid input", out)
        out, err, code = yield self.ssh("oper", "show privilege", password="operpw")
        self.assertEqual((code, out), (0, b"Current privilege level is 1\n"))

    @defer.inlineCallbacks
    def test_interactive_tty(self):
        out, err, code = yield self.ssh(
            "admin", tty=True,
            stdin=b"terminal length 0\nsh ip insp sess\nshow ip inspect foo\nexit\n")
        self.assertEqual(code, 0, (out, err))
        text = out.decode("utf-8", "replace")
        self.assertIn("fw1#", text)
        self.assertIn("SIS_OPEN", text)
        self.assertIn("% Invalid input detected at '^' marker.", text)
        self.assertNotIn("\x1bc", text)               # the screen is not reset on exit

    @defer.inlineCallbacks
    def test_interactive_tty_eof_ends_session(self):
        out, err, code = yield self.ssh("admin", tty=True, stdin=b"show clock\n")
        self.assertEqual(code, 0, (out, err))
        self.assertIn(b"*15:20:01.123 UTC", out)

    @defer.inlineCallbacks
    def test_batch_without_pty(self):
        out, err, code = yield self.ssh("admin", stdin=b"show version\nshow clock\n")
        self.assertEqual(code, 0, err)
        self.assertIn(b"fw1#show version\ncbac Software", out)
        self.assertIn(b"fw1#show clock\n*15:20:01.123", out)

    @defer.inlineCallbacks
    def test_wrong_password(self):
        out, err, code = yield self.ssh("admin", "show version", password="wrong")
        self.assertEqual(code, 255)
        self.assertNotIn(b"cbac Software", out)
        self.assertTrue(any(m.startswith("%%SEC_LOGIN-4-LOGIN_FAILED: Login failed [user: admin] "
                                         "[Source: 127.0.0.1] [localport: %d] [Reason: Login "
                                         "Authentication Failed] at " % self.port)
                            for m in self.messages()), self.messages())

    @defer.inlineCallbacks
    def test_three_wrong_passwords_disconnect(self):
        start = reactor.seconds()
        out, err, code = yield self.ssh("admin", "show version", password="wrong", prompts=5)
        self.assertEqual(code, 255)
        fails = [m for m in self.messages() if m.startswith("%SEC_LOGIN-4-LOGIN_FAILED")]
        self.assertEqual(len(fails), 3)
        # answers delayed 0.2 + 0.4 + 0.8 s (growing per source)
        self.assertGreaterEqual(reactor.seconds() - start, 1.4)

    @defer.inlineCallbacks
    def test_public_key(self):
        key = os.path.join(self.tmp, "id_ed25519")
        out, err, code = yield run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", key],
                                   {"PATH": "/usr/bin:/bin"})
        self.assertEqual(code, 0, err)
        with open(key + ".pub", "rb") as f:
            self.app.keys = {"admin": [f.read()]}
        out, err, code = yield self.ssh("admin", "show privilege", key=key)
        self.assertEqual((code, out), (0, b"Current privilege level is 15\n"), err)
        out, err, code = yield self.ssh("oper", "show privilege", key=key)
        self.assertEqual(code, 255)

    @defer.inlineCallbacks
    def test_vty_access_class(self):
        self.permit = False
        out, err, code = yield self.ssh("admin", "show version")
        self.assertEqual(code, 255)
        self.assertNotIn(b"cbac", out)


class UnitTests(unittest.TestCase):
    def test_host_key_kept(self):
        d = self.mktemp()
        k1 = cssh.load_host_key(d)
        k2 = cssh.load_host_key(d)
        self.assertEqual(k1.fingerprint(), k2.fingerprint())
        self.assertEqual(k1.sshType(), b"ssh-ed25519")
        mode = os.stat(os.path.join(d, "ssh_host_ed25519_key")).st_mode & 0o777
        self.assertEqual(mode, 0o600)

    def test_vty_lines_limit_sessions(self):
        from cbac.config.model import VtyConfig
        app = FakeAppliance()
        app.router_model.vty = [VtyConfig(first=0, last=1, exec_timeout=(0, 0))]
        c = cssh.Console(app, None, task.Clock())
        self.assertEqual(c.open_line("admin", 15, "10.0.0.1")[0], 0)
        n, ctx = c.open_line("admin", 15, "10.0.0.2")
        self.assertEqual((n, ctx.line), (1, "vty1"))
        self.assertEqual(c.open_line("admin", 15, "10.0.0.3"), (None, None))
        c.close_line(0)
        self.assertEqual(c.open_line("admin", 15, "10.0.0.3")[0], 0)
        self.assertIsNone(c.idle_timeout())              # exec-timeout 0 0
        app.router_model.vty[0].transport_input = "none"
        self.assertFalse(c.permits("10.0.0.1"))

    def test_failure_delay_grows_per_source(self):
        clock = task.Clock()
        c = cssh.Console(FakeAppliance(), None, clock)
        self.assertEqual([c.failure_delay("10.0.0.1") for _ in range(4)], [1, 2, 4, 8])
        self.assertEqual(c.failure_delay("10.0.0.2"), 1)
        for _ in range(10):
            c.failure_delay("10.0.0.1")
        self.assertEqual(c.failure_delay("10.0.0.1"), cssh.MAX_DELAY)
        clock.advance(cssh.FAIL_MEMORY + 1)
        self.assertEqual(c.failure_delay("10.0.0.1"), 1)
        c.login_ok("10.0.0.2")
        self.assertEqual(c.failure_delay("10.0.0.2"), 1)


class PasswordTypeTests(unittest.TestCase):
    """IOS password types against published vectors (openssl, hashcat)."""

    def test_vectors(self):
        from cbac.config.model import Secret
        from cbac.console import auth
        self.assertEqual(auth.md5_crypt("cisco", "abcd"), "$1$abcd$2hDGYdE0UrwK2pqoiF6BB1")
        self.assertEqual(auth.type7_decode("02050D4808095E731F"), "cisco123")
        self.assertTrue(auth.verify(Secret(8, "$8$TnGX/fE4KGHOVU$pEhnEvxrvaynpi8j4f.EMHr6M."
                                              "FzU8xnZnBr/tJdFWk"), "hashcat"))
        self.assertTrue(auth.verify(Secret(9, "$9$2MJBozw/9R3UsU$2lFhcKvpghcyw8deP25GOfyZaagy"
                                              "UOGBymkryvOdfo6"), "hashcat"))
        self.assertFalse(auth.verify(Secret(9, "$9$2MJBozw/9R3UsU$2lFhcKvpghcyw8deP25GOfyZaagy"
                                               "UOGBymkryvOdfo6"), "hashcaT"))
        self.assertFalse(auth.verify(Secret(5, "garbage"), "x"))
        self.assertFalse(auth.verify(Secret(4, "x"), "x"))
        self.assertFalse(auth.verify(None, ""))

    def test_roundtrip(self):
        from cbac.config.model import Secret
        from cbac.console import auth
        for kind in (0, 5, 7, 8, 9):
            v = auth.encode(kind, "s3cr3t pw")
            self.assertTrue(auth.verify(Secret(kind, v), "s3cr3t pw"), kind)
            self.assertFalse(auth.verify(Secret(kind, v), "s3cr3t"), kind)


class QuietLogTests(unittest.TestCase):
    """What a login and a logout leave in the log: IOS lines, and nothing of
    conch's chatter unless ``debug ip ssh`` is on."""

    timeout = 45
    setUp = SSHTests.setUp
    _port = SSHTests._port
    ssh = SSHTests.ssh

    def _filter(self):
        # twistd's log file, as the daemon wraps it (cbac.app._quiet_conch)
        self.logfile = []
        self.filtered = cssh.ConchLogFilter(self.logfile.append)
        globalLogPublisher.addObserver(self.filtered)
        self.addCleanup(globalLogPublisher.removeObserver, self.filtered)
        self.addCleanup(cssh.ios.debugging.set, "ip ssh", False)

    def lines(self):
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in self.logfile]

    @defer.inlineCallbacks
    def test_login_logout_lines(self):
        from twisted.logger import LogLevel
        self._filter()
        out, err, code = yield self.ssh("admin", "show version")
        self.assertEqual(code, 0, err)
        yield task.deferLater(reactor, 0.2, lambda: None)
        ios_lines = [e["ios_message"] for e in self.logfile if "ios_message" in e]
        crypto = r"using crypto cipher '[a-z0-9@.-]+', hmac '[a-z0-9@.-]+'"
        expected = [
            r"%%SSH-5-SSH2_SESSION: SSH2 Session request from 127\.0\.0\.1 \(tty = 2\) %s Succeeded$" % crypto,
            r"%%SSH-5-SSH2_USERAUTH: User 'admin' authentication for SSH2 Session from 127\.0\.0\.1 "
            r"\(tty = 2\) %s Succeeded$" % crypto,
            r"%SEC_LOGIN-5-LOGIN_SUCCESS: Login Success \[user: admin\] \[Source: 127\.0\.0\.1\] ",
            r"%SYS-6-LOGOUT: User admin has exited tty session 2\(127\.0\.0\.1\)$",
            r"%%SSH-5-SSH2_CLOSE: SSH2 Session from 127\.0\.0\.1 \(tty = 2\) for user 'admin' %s closed$"
            % crypto,
        ]
        self.assertEqual(len(ios_lines), len(expected), ios_lines)
        for line, rx in zip(ios_lines, expected):
            self.assertRegex(line, rx)
        # nothing else: no conch chatter, no error for a normal logout, no moduli file
        self.assertEqual([l for e, l in zip(self.logfile, self.lines()) if "ios_message" not in e], [])
        everything = [e for e in self.events]
        self.assertFalse([e for e in everything if e.get("log_level") in (LogLevel.error, LogLevel.critical)],
                         [e.get("log_format") for e in everything])
        self.assertFalse(any("moduli" in (e.get("log_format") or "") for e in everything))

    @defer.inlineCallbacks
    def test_debug_ip_ssh_shows_conch(self):
        self._filter()
        globalLogPublisher.addObserver(cssh.ssh_debug_forwarder)
        self.addCleanup(globalLogPublisher.removeObserver, cssh.ssh_debug_forwarder)
        cssh.ios.debugging.set("ip ssh", True)
        out, err, code = yield self.ssh("admin", "show version")
        self.assertEqual(code, 0, err)
        debug = [e["ios_message"] for e in self.logfile if e.get("ios_debug") == "ip ssh"]
        self.assertTrue(any(l.startswith("SSH: starting service") for l in debug), self.lines())
        # conch's own events still do not pass the filter: the debug lines do
        self.assertFalse([e for e in self.logfile if (e.get("log_namespace") or "").startswith("twisted.conch")])

    def test_key_exchanges(self):
        from twisted.internet.address import IPv4Address
        t = self.svc.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        kex = t.supportedKeyExchanges
        self.assertIn(b"curve25519-sha256", kex)
        self.assertFalse([k for k in kex if k.endswith(b"-sha1")], kex)
        if not self.svc.factory.getPrimes():
            self.assertFalse([k for k in kex if b"group-exchange" in k], kex)

    def test_wrapper_removable_and_keeps_errors(self):
        from twisted.logger import LogLevel, LogPublisher
        seen = []
        pub = LogPublisher(seen.append)
        cssh.quiet_conch_log(pub)
        pub({"log_namespace": "twisted.conch.ssh.transport.SSHServerTransport",
             "log_level": LogLevel.info, "log_format": "connection lost"})
        pub({"log_namespace": "twisted.conch.ssh.transport.SSHServerTransport",
             "log_level": LogLevel.error, "log_format": "protocol error"})
        pub({"log_namespace": "cbac", "log_level": LogLevel.info, "log_format": "x"})
        # Twisted 22.4: conch's legacy log.msg in the transport's context
        pub({"log_namespace": "log_legacy", "log_level": LogLevel.info, "log_format": "kex",
             "log_system": "CbacServerTransport,0,127.0.0.1", "message": ("kex alg",)})
        pub({"log_namespace": "log_legacy", "log_level": LogLevel.info, "log_format": "port",
             "log_system": "-", "message": ("CbacSSHFactory starting on 2222",)})
        self.assertEqual([e["log_format"] for e in seen], ["protocol error", "x"])
        pub.removeObserver(seen.append)
        pub({"log_namespace": "cbac", "log_level": LogLevel.info, "log_format": "y"})
        self.assertEqual(len(seen), 2)


class LoginBlockTests(unittest.TestCase):
    """``login block-for 1 attempts 2 within 30`` and ``login quiet-mode
    access-class``, with the real OpenSSH client."""

    timeout = 45
    setUp = SSHTests.setUp
    _port = SSHTests._port
    ssh = SSHTests.ssh
    messages = SSHTests.messages

    def configure(self, block=1, quiet_acl=None, permit=False):
        m = self.app.router_model
        m.login_block = (block, 2, 30)
        m.login_quiet_acl = quiet_acl
        self.svc.console.acl_permits = lambda name, src: permit and name == quiet_acl

    @defer.inlineCallbacks
    def test_quiet_mode_on_off(self):
        self.configure()
        out, err, code = yield self.ssh("admin", "show version", password="bad")
        self.assertNotEqual(code, 0)
        self.assertFalse([m for m in self.messages() if "QUIET_MODE" in m])
        out, err, code = yield self.ssh("admin", "show version", password="bad")
        [on] = [m for m in self.messages() if "QUIET_MODE_ON" in m]
        self.assertRegex(on, r"^%SEC_LOGIN-1-QUIET_MODE_ON: Still timeleft for watching failures is \d+ secs, "
                             r"\[user: admin\] \[Source: 127\.0\.0\.1\] \[localport: \d+\] "
                             r"\[Reason: Login Authentication Failed\] \[ACL: sl_def_acl\] at ")
        # quiet: even the right password is refused (connection closed before the handshake)
        out, err, code = yield self.ssh("admin", "show version")
        self.assertEqual(code, 255, (out, err))
        self.assertNotIn(b"cbac Software", out)
        self.assertIn("Router presently in Quiet-Mode.", self.svc.console.guard.show())
        yield task.deferLater(reactor, 1.2, lambda: None)
        self.assertTrue([m for m in self.messages() if m.startswith(
            "%SEC_LOGIN-5-QUIET_MODE_OFF: Quiet Mode is OFF, because block period timed out at ")])
        out, err, code = yield self.ssh("admin", "show version")
        self.assertEqual(code, 0, err)
        self.assertIn("Router presently in Normal-Mode.", self.svc.console.guard.show())
        self.assertIn("Total login failures: 2.", self.svc.console.guard.show())

    @defer.inlineCallbacks
    def test_quiet_mode_access_class(self):
        self.configure(block=30, quiet_acl="QUIET", permit=True)
        for _ in range(2):
            yield self.ssh("admin", "show version", password="bad")
        self.assertTrue(self.svc.console.guard.quiet())
        out, err, code = yield self.ssh("admin", "show login")
        self.assertEqual(code, 0, err)
        self.assertIn(b"Restricted logins filtered by applied ACL QUIET.", out)
        self.assertIn(b"If more than 1 login failures occur in 30 seconds or less,", out)
        self.configure(block=30, quiet_acl="QUIET", permit=False)
        out, err, code = yield self.ssh("admin", "show version")
        self.assertEqual(code, 255)

    @defer.inlineCallbacks
    def test_not_configured(self):
        yield self.ssh("admin", "show version", password="bad")
        yield self.ssh("admin", "show version", password="bad")
        out, err, code = yield self.ssh("admin", "show login")
        self.assertEqual(code, 0, err)
        self.assertIn(b"Router NOT enabled to watch for login Attacks", out)
        self.assertIn(b"Total login failures: 2.", out)


class LoginConfigTests(unittest.TestCase):
    def test_parse_render_check(self):
        from cbac.config.check import check
        from cbac.config.parser import parse_config
        from cbac.config.render import render
        m, diags = parse_config("login block-for 120 attempts 3 within 60\n"
                                "login quiet-mode access-class 99\n")
        self.assertEqual(diags, [])
        self.assertEqual((m.login_block, m.login_quiet_acl), ((120, 3, 60), "99"))
        text = render(m)
        self.assertIn("login block-for 120 attempts 3 within 60\nlogin quiet-mode access-class 99\n", text)
        self.assertIn("login quiet-mode access-class 99 is not defined", " ".join(
            d.message for d in check(m)))
        for bad in ("login block-for 0 attempts 3 within 60", "login block-for 10 attempts 3",
                    "login block-for x attempts 3 within 60"):
            m, diags = parse_config(bad + "\n")
            self.assertIsNone(m.login_block)
            self.assertEqual([d.severity for d in diags], ["error"], bad)
        m, _ = parse_config("login block-for 120 attempts 3 within 60\nno login block-for\n")
        self.assertIsNone(m.login_block)
