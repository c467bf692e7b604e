"""Login protection at the door (issue 16): a bounded number of SSH
connections not yet logged in, in all and per source address, and a login
grace time from the TCP connection on."""

from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from tests import test_console_ssh as tcs


class _Raw(protocol.Protocol):
    """A TCP client that never speaks SSH (a slow or hostile guesser)."""

    def __init__(self):
        self.data = b""
        self.lost = defer.Deferred()
        self.banner = defer.Deferred()

    def dataReceived(self, data):
        self.data += data
        if b"SSH-2.0-" in self.data and not self.banner.called:
            self.banner.callback(True)

    def connectionLost(self, reason):
        if not self.banner.called:
            self.banner.callback(False)
        self.lost.callback(None)


class StartupTests(unittest.TestCase):
    timeout = 60
    setUp = tcs.SSHTests.setUp
    _port = tcs.SSHTests._port
    ssh = tcs.SSHTests.ssh

    @defer.inlineCallbacks
    def raw(self, source="127.0.0.1"):
        p = _Raw()
        ep_proto = yield protocol.ClientCreator(reactor, lambda: p).connectTCP(
            "127.0.0.1", self.port, bindAddress=(source, 0))
        self.addCleanup(lambda: ep_proto.transport.loseConnection() or p.lost)
        ok = yield p.banner
        return p, ok

    @defer.inlineCallbacks
    def test_per_source_limit(self):
        c = self.svc.console
        c.max_startups, c.max_startups_per_source = 10, 2
        a, ok_a = yield self.raw()
        b, ok_b = yield self.raw()
        self.assertEqual((ok_a, ok_b), (True, True))
        _, ok = yield self.raw()
        self.assertFalse(ok)                       # closed before any SSH byte
        self.assertEqual(c.startups_refused, 1)
        # another source still gets in
        _, ok = yield self.raw("127.0.0.2")
        self.assertTrue(ok)
        # a hung connection that goes away frees its slot
        a.transport.loseConnection()
        yield a.lost
        yield task.deferLater(reactor, 0.05, lambda: None)
        _, ok = yield self.raw()
        self.assertTrue(ok)

    @defer.inlineCallbacks
    def test_total_limit_and_login_still_possible_after(self):
        c = self.svc.console
        c.max_startups, c.max_startups_per_source = 3, 3
        held = []
        for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            p, ok = yield self.raw(src)
            self.assertTrue(ok)
            held.append(p)
        _, ok = yield self.raw("127.0.0.5")
        self.assertFalse(ok)
        out, err, code = yield self.ssh("admin", "show privilege")
        self.assertEqual(code, 255)               # the door is full
        for p in held:
            p.transport.loseConnection()
            yield p.lost
        yield task.deferLater(reactor, 0.05, lambda: None)
        out, err, code = yield self.ssh("admin", "show privilege")
        self.assertEqual((code, out), (0, b"Current privilege level is 15\n"), err)
        # a logged-in session does not count as a startup
        self.assertEqual(c.unauthenticated, {})

    @defer.inlineCallbacks
    def test_login_grace_time(self):
        c = self.svc.console
        c.login_grace = 0.5
        start = reactor.seconds()
        p, ok = yield self.raw()
        self.assertTrue(ok)
        yield p.lost
        took = reactor.seconds() - start
        self.assertTrue(0.4 <= took < 5, took)
        self.assertEqual(c.unauthenticated, {})
