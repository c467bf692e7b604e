"""The manhole (issue 16): off by default, only at privilege 15, only after
the enable secret is entered again; failures and entries are logged."""

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests import test_console_ssh as tcs
from tests.fakeappliance import FakeAppliance
from tests.test_console_cli import Term


class ManholeTests(unittest.TestCase):
    def setUp(self):
        self.app = FakeAppliance()
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def messages(self):
        return [e.get("ios_message", "") for e in self.events]

    def test_disabled_without_namespace(self):
        t = Term(self.app, priv=15, user="admin")
        t.cli.namespace_factory = None                 # cbac started without --manhole
        out = t.type("manhole\r")
        self.assertIn("% The manhole is disabled (start cbac with --manhole)", out)
        self.assertNotIn("Enable secret", out)
        self.assertTrue(out.endswith("fw1#"), out)

    def test_wrong_secret_refused_and_logged(self):
        t = Term(self.app, priv=15, user="admin")
        self.assertIn("Enable secret: ", t.type("manhole\r"))
        out = t.type("wrong\r")
        self.assertIn("% Bad secrets", out)
        self.assertNotIn("wrong", out)                  # not echoed
        self.assertTrue(out.endswith("fw1#"), out)
        self.assertEqual(t.cli.state, "line")
        self.assertTrue(any(m.startswith("%SYS-5-PRIV_AUTH_FAIL: Authentication to the manhole "
                                         "failed by admin") for m in self.messages()),
                        self.messages())
        out = t.type("1 + 1\r")                          # still the CLI
        self.assertIn("% Invalid input", out)

    def test_right_secret_enters_and_is_logged(self):
        t = Term(self.app, priv=15, user="admin")
        t.type("manhole\r")
        t.type("cisco\r")
        self.assertEqual(t.cli.state, "manhole")
        self.assertIn("42", t.type("6 * 7\r"))
        self.assertTrue(any(m.startswith("%SYS-5-MANHOLE: User admin entered the Python manhole")
                            for m in self.messages()), self.messages())

    def test_not_at_privilege_1(self):
        t = Term(self.app, priv=1, user="oper")
        self.assertIn("% Invalid input", t.type("manhole\r"))


class SSHManholeTests(unittest.TestCase):
    """The SSH console as the daemon makes it: no manhole unless asked."""

    timeout = 45
    setUp = tcs.SSHTests.setUp
    _port = tcs.SSHTests._port
    ssh = tcs.SSHTests.ssh

    @defer.inlineCallbacks
    def test_off_by_default(self):
        self.assertFalse(self.svc.console.manhole)
        out, err, code = yield self.ssh("admin", tty=True, stdin=b"manhole\nexit\n")
        self.assertIn(b"% The manhole is disabled", out)
        self.assertNotIn(b">>> ", out)

    @defer.inlineCallbacks
    def test_on_asks_the_enable_secret(self):
        self.svc.console.manhole = True
        out, err, code = yield self.ssh("admin", tty=True, stdin=b"manhole\nnotit\nexit\n")
        self.assertIn(b"Enable secret: ", out)
        self.assertIn(b"% Bad secrets", out)
        self.assertNotIn(b">>> ", out)
