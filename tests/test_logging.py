"""IOS logging observers: buffer / show logging, syslog over UDP and TLS."""

import datetime
import ipaddress
import os

from twisted.internet import defer, protocol, reactor, ssl, task
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from tests.pki import make_pki

from cbac.config.model import LogHost, LoggingConfig, RouterConfig
from cbac.log import ios
from cbac.log.observers import (BufferObserver, Formatter, LogObservers, format_rfc5424,
                                ios_timestamp, makeLogging)

# 2026-10-18 21:51:35.886 UTC
T = datetime.datetime(2026, 10, 18, 21, 51, 35, 886000, tzinfo=datetime.timezone.utc).timestamp()


def ev(msg, sev, t=T, debug=None):
    e = {"ios_message": msg, "ios_severity": sev, "log_time": t,
         "ios_mnemonic": msg.split(":")[0].split("-")[-1], "log_level": LogLevel.info}
    if debug:
        e["ios_debug"] = debug
    return e


MSG = "%FW-3-SMTP_INVALID_COMMAND: Invalid SMTP command from initiator (10.10.10.3:35013)"


class TimestampTests(unittest.TestCase):
    def test_datetime_msec(self):
        self.assertEqual(ios_timestamp(T, "datetime msec"), "*Oct 18 21:51:35.886:")
        self.assertEqual(ios_timestamp(T, None), "*Oct 18 21:51:35.886:")
        self.assertEqual(ios_timestamp(T, "datetime"), "*Oct 18 21:51:35:")
        self.assertEqual(ios_timestamp(T, "datetime msec year show-timezone"),
                         "*Oct 18 2026 21:51:35.886 UTC:")
        t2 = datetime.datetime(2026, 3, 1, 0, 0, 5, tzinfo=datetime.timezone.utc).timestamp()
        self.assertEqual(ios_timestamp(t2, "datetime"), "*Mar  1 00:00:05:")

    def test_uptime(self):
        self.assertEqual(ios_timestamp(T, "uptime", 83), "00:01:23:")
        self.assertEqual(ios_timestamp(T, "uptime", 86400 + 2 * 3600), "1d02h:")
        self.assertEqual(ios_timestamp(T, "uptime", 17 * 86400), "2w3d:")


class BufferTests(unittest.TestCase):
    def model(self, **kw):
        return RouterConfig(hostname="fw1", timestamps_log="datetime msec",
                      timestamps_debug="datetime msec",
                      logging=LoggingConfig(**kw))

    def test_show_logging_layout(self):
        obs = LogObservers(self.model(buffered=4096), task.Clock())
        obs(ev(MSG, 3))
        obs(ev("CBAC SMTP: VERB - match id:5", 7, debug="smtp"))
        text = obs.show_logging()
        lines = text.split("\n")
        self.assertTrue(lines[0].startswith("Syslog logging: enabled (0 messages dropped"))
        self.assertIn("    Buffer logging: level debugging, 2 messages logged, xml disabled,", lines)
        self.assertIn("    Trap logging: level informational, 0 message lines logged", lines)
        i = lines.index("Log Buffer (4096 bytes):")
        self.assertEqual(lines[i + 1:], ["", "*Oct 18 21:51:35.886: " + MSG,
                                         "*Oct 18 21:51:35.886: CBAC SMTP: VERB - match id:5"])

    def test_buffer_level_and_ring(self):
        obs = LogObservers(self.model(buffered=300, buffered_level=6), task.Clock())
        obs(ev("CBAC SMTP: debug", 7, debug="smtp"))
        self.assertEqual(obs.buffer.lines(), [])
        for i in range(20):
            obs(ev("%%FW-6-SESS_AUDIT_TRAIL: session %02d" % i, 6))
        lines = obs.buffer.lines()
        self.assertLessEqual(sum(len(l) + 1 for l in lines), 300)
        self.assertTrue(lines[-1].endswith("session 19"))
        self.assertFalse(any(l.endswith("session 00") for l in lines))
        obs.clear()
        self.assertEqual(obs.buffer.lines(), [])

    def test_buffer_disabled(self):
        obs = LogObservers(self.model(buffered=None), task.Clock())
        obs(ev(MSG, 3))
        text = obs.show_logging()
        self.assertIn("    Buffer logging: disabled, xml disabled,", text)
        self.assertNotIn(MSG, text)

    def test_twisted_errors_become_sys_lines(self):
        obs = LogObservers(self.model(buffered=8192), task.Clock())
        globalLogPublisher.addObserver(obs)
        self.addCleanup(globalLogPublisher.removeObserver, obs)
        from twisted.logger import Logger
        log = Logger(namespace="cbac.test")
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("while counting")
        log.warn("disk {what}", what="full")
        log.info("chatter")
        ios.message("FW", 4, "ALERT_ON", "getting aggressive, count (501/500) current 1-min rate: 126")
        self.flushLoggedErrors(ZeroDivisionError)
        lines = obs.buffer.lines()
        self.assertEqual(len(lines), 3, lines)
        self.assertRegex(lines[0], r"^\*\w{3} [ \d]\d [\d:.]+: %SYS-3-TRACEBACK: cbac.test: while "
                                   r"counting: ZeroDivisionError: division by zero -Traceback= "
                                   r"test_logging.py:\d+ ")
        self.assertTrue(lines[1].endswith("%SYS-4-LOG: cbac.test: disk full"), lines[1])
        self.assertTrue(lines[2].endswith(": %FW-4-ALERT_ON: getting aggressive, count (501/500) "
                                          "current 1-min rate: 126"))

    def test_bare_buffer_observer(self):
        b = BufferObserver(size=4096, formatter=Formatter("datetime msec"))
        b(ev(MSG, 3))
        self.assertEqual(b.lines(), ["*Oct 18 21:51:35.886: " + MSG])

    def test_rfc5424_format(self):
        e = Formatter("datetime msec").format(ev(MSG, 3))
        self.assertEqual(format_rfc5424(e, 7, "fw1"),
                         b'<187>1 2026-10-18T21:51:35.886Z fw1 cbac - SMTP_INVALID_COMMAND '
                         b'[meta sequenceId="7"] ' + MSG.encode())


class _UDP(protocol.DatagramProtocol):
    def __init__(self):
        self.got = []
        self.waiting = None

    def datagramReceived(self, data, addr):
        self.got.append(data)
        if self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(data)


class UDPSyslogTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_rfc3164_over_udp_and_trap_level(self):
        rx = _UDP()
        port = reactor.listenUDP(0, rx, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        m = RouterConfig(hostname="fw1", timestamps_log="datetime msec", logging=LoggingConfig(
            hosts=[LogHost(ipaddress.IPv4Address("127.0.0.1"), port=port.getHost().port)]))
        obs, svc = makeLogging(m, reactor)
        obs(ev("CBAC SMTP: debug line", 7, debug="smtp"))    # below trap informational
        obs(ev(MSG, 3))                                      # queued until started
        rx.waiting = defer.Deferred()
        svc.startService()
        self.addCleanup(svc.stopService)
        data = yield rx.waiting
        self.assertEqual(data, b"<187>1: *Oct 18 21:51:35.886: " + MSG.encode())
        rx.waiting = defer.Deferred()
        obs(ev("%SYS-5-CONFIG_I: Configured from console by admin on vty0 (127.0.0.1)", 5))
        data = yield rx.waiting
        self.assertTrue(data.startswith(b"<189>2: *Oct 18 21:51:35.886: %SYS-5-CONFIG_I: "), data)
        self.assertEqual(len(rx.got), 2)
        self.assertIn("Logging to 127.0.0.1  (udp port %d" % port.getHost().port, obs.show_logging())


# ---------------------------------------------------------------------------
# TLS


def _make_pki(tmp):
    return make_pki(tmp, "127.0.0.1", "127.0.0.2")


class _Collector(protocol.Protocol):
    def connectionMade(self):
        self.factory.conns += 1

    def dataReceived(self, data):
        self.factory.data += data
        w, self.factory.waiting = self.factory.waiting, None
        if w is not None:
            w.callback(self.factory.data)


class _CollectorFactory(protocol.ServerFactory):
    protocol = _Collector

    def __init__(self):
        self.data = b""
        self.conns = 0
        self.waiting = None


class TLSSyslogTests(unittest.TestCase):
    timeout = 20

    def setUp(self):
        self.tmp = self.mktemp()
        os.makedirs(self.tmp)
        self.ca, self.good, self.bad = _make_pki(self.tmp)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def listen(self, pem, port=0):
        f = _CollectorFactory()
        opts = ssl.PrivateCertificate.loadPEM(pem).options()
        p = reactor.listenSSL(port, f, opts, interface="127.0.0.1")
        self._last_port = p
        self.addCleanup(lambda: p.stopListening() if p.connected else None)
        return f, p.getHost().port

    def sender(self, port, rfc5424=False):
        m = RouterConfig(hostname="fw1", timestamps_log="datetime msec", logging=LoggingConfig(
            rfc5424=rfc5424, tls_ca=self.ca,
            hosts=[LogHost(ipaddress.IPv4Address("127.0.0.1"), transport="tls", port=port)]))
        obs, svc = makeLogging(m, reactor)
        obs.hosts[0].INITIAL_DELAY = 0.05
        obs.hosts[0]._delay = 0.05
        self.addCleanup(svc.stopService)
        return obs, svc

    @defer.inlineCallbacks
    def test_tls_delivers_with_octet_counting(self):
        f, port = self.listen(self.good)
        obs, svc = self.sender(port, rfc5424=True)
        obs(ev(MSG, 3))
        f.waiting = defer.Deferred()
        svc.startService()
        data = yield f.waiting
        n, _, rest = data.partition(b" ")
        line = (b'<187>1 2026-10-18T21:51:35.886Z fw1 cbac - SMTP_INVALID_COMMAND '
                b'[meta sequenceId="1"] ' + MSG.encode())
        self.assertEqual(int(n), len(line))
        self.assertEqual(rest[:len(line)], line)

    @defer.inlineCallbacks
    def test_tls_wrong_name_refused(self):
        f, port = self.listen(self.bad)
        obs, svc = self.sender(port)
        obs(ev(MSG, 3))
        svc.startService()
        for _ in range(100):
            if any("LOGGINGHOST_FAIL" in e.get("ios_message", "") for e in self.events):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        fails = [e["ios_message"] for e in self.events
                 if "LOGGINGHOST_FAIL" in e.get("ios_message", "")]
        self.assertTrue(fails, "no failure logged")
        self.assertTrue(fails[0].startswith("%%SYS-3-LOGGINGHOST_FAIL: Logging to host 127.0.0.1 "
                                            "port %d failed - TLS" % port), fails[0])
        self.assertGreaterEqual(f.conns, 1)
        self.assertEqual(f.data, b"")                  # nothing delivered
        self.assertEqual(len(obs.hosts[0].queue), 1)   # kept for later
        self.assertEqual(len(fails), 1)                # logged once, not per retry

    @defer.inlineCallbacks
    def test_tls_backlog_flushed_after_reconnect(self):
        # find a free port, leave it closed: the collector is away
        f0, port = self.listen(self.good)
        yield self._last_port.stopListening()
        obs, svc = self.sender(port)
        svc.startService()
        for i in range(3):
            obs(ev("%%FW-6-SESS_AUDIT_TRAIL: session %d" % i, 6))
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertFalse(obs.hosts[0].link_up)
        self.assertEqual(len(obs.hosts[0].queue), 3)
        f, _ = self.listen(self.good, port)
        f.waiting = defer.Deferred()
        for _ in range(100):
            if b"session 2" in f.data:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertIn(b"session 0", f.data)
        self.assertIn(b"session 2", f.data)
        self.assertTrue(obs.hosts[0].link_up)


class ReconfigureTests(unittest.TestCase):
    def test_configure_replaces_hosts_and_levels(self):
        m = RouterConfig(hostname="fw1", logging=LoggingConfig(buffered=4096, hosts=[
            LogHost(ipaddress.IPv4Address("127.0.0.1"), port=5514)]))
        obs, svc = makeLogging(m, task.Clock())
        self.assertEqual([(h.address, h.port, h.transport) for h in obs.hosts],
                         [("127.0.0.1", 5514, "udp")])
        m2 = RouterConfig(hostname="fw2", logging=LoggingConfig(buffered=8192, trap_level=3, hosts=[
            LogHost(ipaddress.IPv4Address("127.0.0.2"), transport="tls")]))
        obs.configure(m2)
        self.assertEqual([(h.address, h.port, h.transport) for h in obs.hosts],
                         [("127.0.0.2", 6514, "tls")])
        self.assertEqual(list(svc), obs.hosts)
        obs(ev("%FW-6-SESS_AUDIT_TRAIL: x", 6))           # above trap errors: not queued
        obs(ev(MSG, 3))
        self.assertEqual(len(obs.hosts[0].queue), 1)
        self.assertIn("Log Buffer (8192 bytes):", obs.show_logging())
        self.assertIn("    Trap logging: level errors, 1 message lines logged", obs.show_logging())
