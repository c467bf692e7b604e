"""twisted.logger observers producing IOS-style logging.

* :class:`BufferObserver`: the ``logging buffered [SIZE] [LEVEL]`` ring
  buffer shown by ``show logging``.
* :class:`MonitorObserver`: ``terminal monitor`` (console sessions attach a
  callback and get each line live).
* :class:`SyslogObserver`: ``logging host A [transport udp|tls [port N]]``;
  RFC 3164 lines as IOS sends them (``<189>12: *Oct 18 21:51:35.886: %FW-...``)
  or RFC 5424 (``cbac logging format rfc5424``); over UDP, or over TLS with
  RFC 5425 octet-counting framing, the collector's certificate checked
  against ``cbac logging tls-ca FILE`` and its address/name; reconnects
  with backoff and keeps a bounded backlog while the collector is away.
* :class:`LogObservers`: all of them behind one observer (the event is
  formatted once), with :meth:`LogObservers.show_logging`.

Events are those of :mod:`cbac.log.ios` (``ios_message``, ``ios_severity``,
``ios_debug``).  Other twisted events of level warn and above (errors,
tracebacks) become ``%SYS-<sev>-LOG`` / ``%SYS-3-TRACEBACK`` lines.

Entry point for the lead: :func:`makeLogging`.
"""

from __future__ import annotations

import collections
import time
from typing import Optional

from zope.interface import implementer

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import ILogObserver, LogLevel, Logger, formatEvent

from cbac.log import ios

_log = Logger(namespace="cbac.log")

SEVERITIES = ("emergencies", "alerts", "critical", "errors", "warnings",
              "notifications", "informational", "debugging")

_TWISTED_SEVERITY = {LogLevel.critical: 2, LogLevel.error: 3, LogLevel.warn: 4,
                     LogLevel.info: 6, LogLevel.debug: 7}

#: syslog facility local7 (IOS ``logging facility local7``)
FACILITY_LOCAL7 = 23

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
           "Nov", "Dec")


# ---------------------------------------------------------------------------
# Formatting


def ios_timestamp(t: float, style: Optional[str], uptime: float = 0.0) -> str:
    """The IOS timestamp prefix with its colon, e.g. ``*Oct 18 21:51:35.886:``.

    ``style`` is the rest of ``service timestamps log ...``: ``datetime``
    with ``msec``/``localtime``/``year``/``show-timezone``, or ``uptime``;
    None means ``datetime msec``; ``""``/``"none"`` means no timestamp."""
    if style is None:
        style = "datetime msec"
    words = style.split()
    if not words or words[0] == "none":
        return ""
    if words[0] == "uptime":
        s = int(max(uptime, 0))
        if s < 86400:
            return "%02d:%02d:%02d:" % (s // 3600, s // 60 % 60, s % 60)
        if s < 7 * 86400:
            return "%dd%02dh:" % (s // 86400, s // 3600 % 24)
        return "%dw%dd:" % (s // (7 * 86400), s // 86400 % 7)
    tm = time.localtime(t) if "localtime" in words else time.gmtime(t)
    out = "*%s %2d " % (_MONTHS[tm.tm_mon - 1], tm.tm_mday)
    if "year" in words:
        out += "%d " % tm.tm_year
    out += "%02d:%02d:%02d" % (tm.tm_hour, tm.tm_min, tm.tm_sec)
    if "msec" in words:
        out += ".%03d" % (int(t * 1000) % 1000)
    if "show-timezone" in words:
        out += " " + (time.strftime("%Z", tm) if "localtime" in words else "UTC")
    return out + ":"


class Entry:
    """One formatted log event."""

    __slots__ = ("severity", "text", "debug", "time", "stamp", "mnemonic")

    def __init__(self, severity, text, debug, t, stamp, mnemonic="-"):
        self.severity = severity
        self.text = text
        self.debug = debug
        self.time = t
        self.stamp = stamp
        self.mnemonic = mnemonic

    @property
    def line(self) -> str:
        return "%s %s" % (self.stamp, self.text) if self.stamp else self.text


def _one_line(s: str) -> str:
    return " | ".join(p.strip() for p in s.splitlines() if p.strip())


class Formatter:
    """Turns twisted.logger events into :class:`Entry` objects."""

    def __init__(self, timestamps_log=None, timestamps_debug=None, clock=None):
        self.timestamps_log = timestamps_log
        self.timestamps_debug = timestamps_debug
        self.clock = clock
        self.start = clock.seconds() if clock is not None else time.time()

    def _uptime(self) -> float:
        now = self.clock.seconds() if self.clock is not None else time.time()
        return now - self.start

    def format(self, event) -> Optional[Entry]:
        try:
            return self._format(event)
        except Exception:
            return None

    def _format(self, event) -> Optional[Entry]:
        t = event.get("log_time") or time.time()
        msg = event.get("ios_message")
        if msg is not None:
            debug = "ios_debug" in event
            sev = int(event.get("ios_severity", 7 if debug else 6))
            style = self.timestamps_debug if debug else self.timestamps_log
            return Entry(sev, str(msg), debug, t, ios_timestamp(t, style, self._uptime()),
                         event.get("ios_mnemonic", "-"))
        level = event.get("log_level")
        sev = _TWISTED_SEVERITY.get(level)
        if event.get("code") == 11 and str(event.get("log_format", "")).startswith("Got remote error"):
            # conch logs every client's normal SSH_DISCONNECT_BY_APPLICATION
            # ("disconnected by user", what OpenSSH sends on exit) as an
            # error: not worth a %SYS-3 line in the log and on syslog hosts.
            return None
        f = event.get("log_failure")
        if f is None and event.get("isError") and event.get("failure") is not None:
            f = event.get("failure")
        if f is not None:
            sev = 3
        if sev is None or sev > 4:
            return None
        try:
            text = formatEvent(event)
        except Exception:
            text = repr(event.get("log_format"))
        ns = event.get("log_namespace") or event.get("system") or "-"
        if f is not None:
            tb = ""
            try:
                frames = f.frames[-3:]
                tb = " < ".join("%s:%d %s" % (fn.rsplit("/", 1)[-1], ln, fun)
                                for fun, fn, ln, _, _ in reversed(frames))
            except Exception:
                pass
            body = "%s: %s: %s: %s" % (ns, _one_line(text) or "Unhandled error",
                                       getattr(f.type, "__name__", f.type),
                                       _one_line(str(f.value)))
            if tb:
                body += " -Traceback= " + tb
            text = ios.format_message("SYS", sev, "TRACEBACK", body)
            mn = "TRACEBACK"
        else:
            text = ios.format_message("SYS", sev, "LOG", "%s: %s" % (ns, _one_line(text)))
            mn = "LOG"
        return Entry(sev, text, False, t, ios_timestamp(t, self.timestamps_log, self._uptime()), mn)


class _Observer:
    """Base: callable with a twisted event, or fed pre-formatted entries.

    A destination whose delivery raises (a full disk, a syslog socket
    error) is marked failed: the failure is reported once
    (:meth:`fail_message`, an IOS line through the other destinations),
    lines are counted as lost while it fails, delivery is retried at most
    every :attr:`RETRY_INTERVAL` seconds, and the first success reports
    the resumption with the number of lines lost.  It never raises."""

    RETRY_INTERVAL = 5.0

    def __init__(self, level: int, formatter: Optional[Formatter] = None):
        self.level = level
        self.formatter = formatter or Formatter()
        self.count = 0
        self.failed: Optional[str] = None       # the error while failing
        self.failed_since: Optional[float] = None
        self.lost = 0                           # lines not delivered (failures)
        self._retry_at = 0.0
        self._reporting = False
        self._lost_base = 0

    def __call__(self, event) -> None:
        entry = self.formatter.format(event)
        if entry is not None:
            self.emit(entry)

    def _now(self) -> float:
        clock = self.formatter.clock
        return clock.seconds() if clock is not None else time.time()

    def emit(self, entry: Entry) -> None:
        if entry.severity > self.level or self._reporting:
            return
        if self.failed is not None and self._now() < self._retry_at:
            self.lost += 1
            return
        try:
            self.deliver(entry)
        except Exception as e:
            self.lost += 1
            self._fail(e)
            return
        self.count += 1
        if self.failed is not None:
            self._resume()

    def _fail(self, e) -> None:
        why = _error_text(e)
        first = self.failed is None
        self.failed = why
        self._retry_at = self._now() + self.RETRY_INTERVAL
        if first:
            self.failed_since = time.time()
            self._lost_base = self.lost - 1         # the line that just failed counts
            self._report(self.fail_message(why))

    def _resume(self) -> None:
        lost, self.failed, self.failed_since = self.lost - self._lost_base, None, None
        self._report(self.resume_message(lost), to_self=True)

    def _report(self, msg, to_self=False) -> None:
        if msg is None:
            return
        self._reporting = not to_self   # a failure report is not for us
        try:
            ios.message(*msg)
        except Exception:
            pass
        finally:
            self._reporting = False

    def fail_message(self, why):
        """(facility, severity, mnemonic, text) reported once when
        delivery starts failing, or None."""
        return None

    def resume_message(self, lost):
        return None

    def status(self) -> str:
        """A ``show logging`` line about a failure, or ""."""
        if self.failed is None:
            return ""
        return ("              failed since %s: %s (retried every %d seconds)"
                % (ios_timestamp(self.failed_since, None).rstrip(":"), self.failed,
                   self.RETRY_INTERVAL))

    def deliver(self, entry: Entry) -> None:
        raise NotImplementedError


def _error_text(e) -> str:
    import errno as _errno
    if isinstance(e, OSError) and e.errno is not None:
        name = _errno.errorcode.get(e.errno, str(e.errno))
        return "%s (%s)" % (e.strerror or str(e), name)
    return "%s: %s" % (type(e).__name__, _one_line(str(e))[:200])


# ---------------------------------------------------------------------------
# File


@implementer(ILogObserver)
class FileObserver(_Observer):
    """``logging file PATH [MAX [MIN]] [LEVEL]``: the IOS lines appended to
    PATH (flushed per line); at MAX bytes the file is renamed PATH.1 (the
    previous PATH.1 is replaced) and a new one started.  A write that fails
    (ENOSPC: the disk is full) is reported once and retried; see
    :class:`_Observer`."""

    def __init__(self, path: str, max_size: int = 4096000, level: int = 7, formatter=None,
                 opener=None):
        _Observer.__init__(self, level, formatter)
        self.path = path
        self.max_size = max_size
        self._opener = opener or (lambda p: open(p, "ab"))
        self._f = None
        self.size = 0

    def deliver(self, entry):
        data = (entry.line + "\n").encode("utf-8", "replace")
        if self._f is None:
            self._f = self._opener(self.path)
            self.size = self._f.tell()
        if self.size and self.size + len(data) > self.max_size:
            self._rotate()
        self._f.write(data)
        self._f.flush()
        self.size += len(data)

    def _rotate(self):
        import os
        self.close()
        try:
            os.replace(self.path, self.path + ".1")
        except OSError:
            pass
        self._f = self._opener(self.path)
        self.size = self._f.tell()

    def _fail(self, e):
        # reopen on the next attempt (the file may have been removed or the
        # partial line left the stream in an unknown state)
        self.close()
        _Observer._fail(self, e)

    def close(self):
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except Exception:
                pass

    def fail_message(self, why):
        return ("SYS", 3, "LOGGINGFILE_FAIL", "Logging to file %s failed - %s"
                % (self.path, why))

    def resume_message(self, lost):
        return ("SYS", 5, "LOGGINGFILE_RESUME", "Logging to file %s resumed - %d message%s lost"
                % (self.path, lost, "" if lost == 1 else "s"))

    def describe(self) -> str:
        out = ("    File logging: %s, level %s, max %d bytes, %d messages logged, "
               "%d messages lost" % (self.path, SEVERITIES[self.level], self.max_size,
                                     self.count, self.lost))
        st = self.status()
        return out + ("\n" + st if st else "")


# ---------------------------------------------------------------------------
# Buffer and monitor


@implementer(ILogObserver)
class BufferObserver(_Observer):
    """``logging buffered [SIZE] [LEVEL]``: a ring buffer of SIZE bytes."""

    def __init__(self, size: int = 4096, level: int = 7, formatter=None, enabled=True):
        _Observer.__init__(self, level, formatter)
        self.size = size
        self.enabled = enabled
        self._lines: collections.deque = collections.deque()
        self._bytes = 0

    def deliver(self, entry):
        if not self.enabled:
            return
        line = entry.line
        n = len(line) + 1
        self._lines.append(line)
        self._bytes += n
        while self._bytes > self.size and self._lines:
            self._bytes -= len(self._lines.popleft()) + 1

    def emit(self, entry):
        if self.enabled:
            _Observer.emit(self, entry)

    def resize(self, size: int) -> None:
        self.size = size
        while self._bytes > self.size and self._lines:
            self._bytes -= len(self._lines.popleft()) + 1

    def lines(self) -> list[str]:
        return list(self._lines)

    def clear(self) -> None:
        self._lines.clear()
        self._bytes = 0


@implementer(ILogObserver)
class MonitorObserver(_Observer):
    """``terminal monitor``: sessions attach ``callback(line)``."""

    def __init__(self, level: int = 7, formatter=None):
        _Observer.__init__(self, level, formatter)
        self.callbacks: list = []
        self._busy = False

    def attach(self, callback) -> None:
        if callback not in self.callbacks:
            self.callbacks.append(callback)

    def detach(self, callback) -> None:
        if callback in self.callbacks:
            self.callbacks.remove(callback)

    def emit(self, entry):
        if self.callbacks:
            _Observer.emit(self, entry)

    def deliver(self, entry):
        if self._busy:                       # a callback logged: don't loop
            return
        self._busy = True
        try:
            line = entry.line
            for cb in list(self.callbacks):
                try:
                    cb(line)
                except Exception:
                    pass
        finally:
            self._busy = False


# ---------------------------------------------------------------------------
# Syslog


def format_rfc3164(entry: Entry, seq: int, facility: int = FACILITY_LOCAL7) -> bytes:
    """As IOS sends it: ``<189>12: *Oct 18 21:51:35.886: %SYS-5-...``."""
    return ("<%d>%d: %s" % (facility * 8 + entry.severity, seq, entry.line)).encode(
        "utf-8", "replace")


def format_rfc5424(entry: Entry, seq: int, hostname: str, facility: int = FACILITY_LOCAL7) -> bytes:
    tm = time.gmtime(entry.time)
    ts = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
        int(entry.time * 1000) % 1000)
    host = "".join(c for c in (hostname or "-") if 33 <= ord(c) <= 126)[:255] or "-"
    msgid = "".join(c for c in (entry.mnemonic or "-") if 33 <= ord(c) <= 126)[:32] or "-"
    return ('<%d>1 %s %s cbac - %s [meta sequenceId="%d"] %s' % (
        facility * 8 + entry.severity, ts, host, msgid, seq, entry.text)).encode(
        "utf-8", "replace")


class _UDPSender(protocol.DatagramProtocol):
    def __init__(self, owner):
        self.owner = owner

    def connectionRefused(self):
        pass


@implementer(IHandshakeListener)
class _TLSProtocol(protocol.Protocol):
    def __init__(self, sender):
        self.sender = sender

    def handshakeCompleted(self):
        self.sender._up(self)

    def dataReceived(self, data):
        pass                                 # collectors send nothing

    def connectionLost(self, reason):
        self.sender._down(self, reason)


def _trust_root(ca_file):
    from twisted.internet import ssl
    with open(ca_file, "rb") as f:
        pem = f.read()
    certs = []
    marker = b"-----END CERTIFICATE-----"
    for block in pem.split(marker)[:-1]:
        certs.append(ssl.Certificate.loadPEM(block + marker + b"\n"))
    if not certs:
        raise ValueError("no certificate in %s" % ca_file)
    return ssl.trustRootFromCertificates(certs)


@implementer(ILogObserver)
class SyslogObserver(_Observer, service.Service):
    """One ``logging host``.  Start the service to begin sending; until it
    runs (and while a TLS collector is unreachable) lines wait in a backlog
    of at most ``backlog`` lines (oldest dropped, counted in ``dropped``)."""

    INITIAL_DELAY = 1.0
    MAX_DELAY = 60.0

    def __init__(self, address: str, port: Optional[int] = None, transport: str = "udp",
                 level: int = 6, rfc5424: bool = False, hostname: str = "Router",
                 tls_ca: Optional[str] = None, reactor=None, formatter=None,
                 backlog: int = 1000, facility: int = FACILITY_LOCAL7):
        _Observer.__init__(self, level, formatter)
        self.address = str(address)
        self.transport = transport
        self.port = port or (6514 if transport == "tls" else 514)
        self.rfc5424 = rfc5424
        self.hostname = hostname
        self.tls_ca = tls_ca
        self.reactor = reactor
        self.facility = facility
        self.seq = 0
        self.sent = 0
        self.dropped = 0
        self.queue: collections.deque = collections.deque()
        self.backlog = backlog
        self._udp = None
        self._proto = None
        self._connecting = False
        self._retry = None
        self._delay = self.INITIAL_DELAY
        self._last_error = None
        self._was_up = False
        self._stopped = None
        #: ``source_for(address, transport) -> (ip, port) | None``: the
        #: local address to send from (set by the appliance: the router's
        #: egress interface address, so the packets leave through the
        #: management TUN and the data plane, like IOS).  ``None``: the
        #: host's own routing decides.
        self.source_for = None

    def _bind(self):
        if self.source_for is None:
            return None
        try:
            return self.source_for(self.address, self.transport)
        except Exception:
            _log.failure("syslog: choosing a source address")
            return None

    @property
    def link_up(self) -> bool:
        return self._udp is not None or self._proto is not None

    def _reactor(self):
        if self.reactor is None:
            from twisted.internet import reactor
            self.reactor = reactor
        return self.reactor

    # -- observer -------------------------------------------------------------
    def deliver(self, entry):
        self.seq += 1
        if self.rfc5424:
            data = format_rfc5424(entry, self.seq, self.hostname, self.facility)
        else:
            data = format_rfc3164(entry, self.seq, self.facility)
        if self.transport == "tls":
            data = b"%d %s" % (len(data), data)     # RFC 5425 octet counting
        self._send(data)

    def _send(self, data: bytes):
        if self._udp is not None:
            self._udp.write(data, (self.address, self.port))     # errors: see _Observer
            self.sent += 1
        elif self._proto is not None and self._proto.transport is not None:
            self._proto.transport.write(data)
            self.sent += 1
        else:
            if len(self.queue) >= self.backlog:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(data)

    def _flush(self):
        q, self.queue = self.queue, collections.deque()
        for data in q:
            try:
                self._send(data)
            except Exception:
                self.dropped += 1

    # -- service ---------------------------------------------------------------
    def startService(self):
        service.Service.startService(self)
        r = self._reactor()
        if self.transport == "tls":
            self._connect()
        else:
            try:
                bind = self._bind()
                if bind is not None:
                    self._udp = r.listenUDP(bind[1], _UDPSender(self), interface=bind[0])
                else:
                    self._udp = r.listenUDP(0, _UDPSender(self), interface="")
                self._flush()
            except Exception:
                _log.failure("syslog: cannot open a UDP socket")

    def stopService(self):
        service.Service.stopService(self)
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._udp is not None:
            port, self._udp = self._udp, None
            return port.stopListening()
        if self._proto is not None and self._proto.transport is not None:
            d = self._stopped = defer.Deferred()
            t = self._proto.transport
            t.loseConnection()
            kill = self._reactor().callLater(2, t.abortConnection)
            d.addBoth(lambda r: kill.cancel() if kill.active() else None)
            return d

    # -- TLS -------------------------------------------------------------------
    def _options(self):
        from twisted.internet import ssl
        if self.tls_ca:
            return ssl.optionsForClientTLS(self.address, trustRoot=_trust_root(self.tls_ca))
        return ssl.optionsForClientTLS(self.address)

    def _connect(self):
        self._retry = None
        if not self.running or self._connecting or self._proto is not None:
            return
        from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
        try:
            opts = self._options()
        except Exception as e:
            self._failed("TLS setup: %s" % e)
            return
        self._connecting = True
        ep = wrapClientTLS(opts, TCP4ClientEndpoint(self._reactor(), self.address, self.port,
                                                    timeout=10, bindAddress=self._bind()))
        d = ep.connect(protocol.Factory.forProtocol(lambda: _TLSProtocol(self)))

        def eb(f):
            self._connecting = False
            self._failed(f.getErrorMessage())
        d.addErrback(eb)

    def _up(self, proto):
        if getattr(proto.transport, "disconnecting", False):
            # Twisted 22.4 checks the peer's name after the handshake and
            # then aborts: never send on such a connection.
            return
        self._connecting = False
        if not self.running:
            proto.transport.loseConnection()
            return
        self._proto = proto
        self._delay = self.INITIAL_DELAY
        self._last_error = None
        self._was_up = True
        ios.message("SYS", 6, "LOGGINGHOST_STARTSTOP", "Logging to host %s port %d started - %s"
                    % (self.address, self.port, "reconnection" if self.sent else "CLI initiated"))
        self._flush()

    def _down(self, proto, reason):
        self._connecting = False
        stopped, self._stopped = self._stopped, None
        if stopped is not None:
            stopped.callback(None)
        if self._proto is proto:
            self._proto = None
            if self.running:
                ios.message("SYS", 6, "LOGGINGHOST_STARTSTOP",
                            "Logging to host %s port %d stopped - connection lost"
                            % (self.address, self.port))
                self._schedule()
        else:
            self._failed(_reason_text(reason))

    def _failed(self, why: str):
        if why != self._last_error:
            self._last_error = why
            ios.message("SYS", 3, "LOGGINGHOST_FAIL", "Logging to host %s port %d failed - %s"
                        % (self.address, self.port, why))
        self._schedule()

    def _schedule(self):
        if not self.running or (self._retry is not None and self._retry.active()):
            return
        delay, self._delay = self._delay, min(self._delay * 2, self.MAX_DELAY)
        self._retry = self._reactor().callLater(delay, self._connect)

    def fail_message(self, why):
        return ("SYS", 3, "LOGGINGHOST_FAIL", "Logging to host %s port %d failed - %s"
                % (self.address, self.port, why))

    def resume_message(self, lost):
        return ("SYS", 6, "LOGGINGHOST_STARTSTOP",
                "Logging to host %s port %d started - reconnection (%d message%s lost)"
                % (self.address, self.port, lost, "" if lost == 1 else "s"))

    def describe(self) -> str:
        extra = ""
        if self.transport == "tls":
            extra = ", %d message lines queued" % len(self.queue)
        st = self.status()
        return ("        Logging to %s  (%s port %d, audit disabled,\n"
                "              link %s),\n"
                "              %d message lines logged,\n"
                "              %d message lines dropped%s,\n"
                "              xml disabled, sequence number disabled\n"
                "              filtering disabled"
                % (self.address, self.transport, self.port,
                   "failed" if self.failed else ("up" if self.link_up else "down"),
                   self.count, self.dropped + self.lost, extra)) + ("\n" + st if st else "")


def _reason_text(reason) -> str:
    v = getattr(reason, "value", reason)
    name = type(v).__name__
    text = _one_line(str(v))
    if "VerificationError" in text or "certificate verify failed" in text or "SSL" in name \
            or name == "Error":
        return "TLS: %s" % (text[:300] or name)
    return "%s: %s" % (name, text[:300])


# ---------------------------------------------------------------------------
# All together


@implementer(ILogObserver)
class LogObservers:
    """The IOS log observers of one router.  Add this object as a twisted
    observer (``globalLogPublisher.addObserver(observers)``; iterating it
    yields just itself, so ``beginLoggingTo(observers)`` works too)."""

    #: two processes: syslog lines waiting for the management process
    REMOTE_QUEUE = 2000

    def __init__(self, router_model=None, reactor=None, remote_syslog=False):
        self.reactor = reactor
        #: two processes: the management process owns the syslog hosts; the
        #: lines for them wait in :attr:`remote_queue` (bounded, the oldest
        #: dropped and counted) until the engine's AMP protocol takes them
        self.remote_syslog = remote_syslog
        self.remote_queue: collections.deque = collections.deque()
        self.remote_dropped = 0
        self.remote_sent = 0
        self.remote_wakeup = None              # callable: lines are waiting
        self.remote_hosts: list = []           # (address, transport, port) configured
        self.formatter = Formatter(clock=reactor)
        self.buffer = BufferObserver(formatter=self.formatter)
        self.monitor = MonitorObserver(formatter=self.formatter)
        self.hosts: list[SyslogObserver] = []
        self.console_level = 7
        self.console_count = 0
        self.trap_level = 6
        self.trap_count = 0
        self.service = service.MultiService()
        self._source_for = None
        self.file: Optional[FileObserver] = None
        self.others: dict = {}                 # failing observers not ours (twistd's log)
        if router_model is not None:
            self.configure(router_model)

    def __iter__(self):
        return iter([self])

    @property
    def source_for(self):
        """``source_for(address, transport) -> (ip, port) | None``: where
        the syslog hosts send from (see :attr:`SyslogObserver.source_for`)."""
        return self._source_for

    @source_for.setter
    def source_for(self, f):
        self._source_for = f
        for h in self.hosts:
            h.source_for = f

    #: seconds without a failure after which another observer (twistd's log
    #: file, the journal) counts as recovered
    OTHER_RECOVERY = 60.0

    def _other_observer_failed(self, event) -> None:
        """Twisted tells every observer, on every event, that another one
        (twistd's ``--logfile`` on a full disk) raised: report it once per
        episode instead of a traceback per event, and count the rest."""
        obs = event.get("observer")
        key = repr(obs)[:120]
        now = self.formatter._uptime() + self.formatter.start
        st = self.others.get(key)
        if st is not None and now - st["last"] < self.OTHER_RECOVERY:
            st["last"] = now
            st["count"] += 1
            return
        f = event.get("log_failure")
        why = _error_text(f.value) if f is not None and f.value is not None else "error"
        if len(self.others) > 32:
            self.others.clear()
        self.others[key] = {"since": time.time(), "last": now, "count": 1, "why": why}
        ios.message("SYS", 3, "LOGGER_FAIL", "Logging to %s failed - %s" % (key, why))

    def __call__(self, event) -> None:
        fmt = event.get("log_format")
        if fmt is not None and fmt.startswith("Temporarily disabling observer"):
            try:
                self._other_observer_failed(event)
            except Exception:
                pass
            return
        entry = self.formatter.format(event)
        if entry is None:
            return
        # each destination on its own: one failing never stops the others
        if entry.severity <= self.console_level:
            self.console_count += 1
        for dest in (self.buffer, self.monitor, self.file):
            if dest is None:
                continue
            try:
                dest.emit(entry)
            except Exception:
                pass                          # an observer must never raise
        if self.remote_syslog:
            if self.remote_hosts and entry.severity <= self.trap_level:
                self.trap_count += 1
                self._queue_remote(entry)
        elif self.hosts and entry.severity <= self.trap_level:
            self.trap_count += 1
            for h in self.hosts:
                try:
                    h.emit(entry)
                except Exception:
                    pass

    def _queue_remote(self, entry) -> None:
        """Never waits: a full queue drops its oldest line (counted)."""
        if len(self.remote_queue) >= self.REMOTE_QUEUE:
            self.remote_queue.popleft()
            self.remote_dropped += 1
        self.remote_queue.append(entry)
        if self.remote_wakeup is not None:
            try:
                self.remote_wakeup()
            except Exception:
                pass

    def configure(self, m) -> None:
        """Apply a (new) configuration: levels, buffer, timestamps, hosts."""
        lg = m.logging
        self.formatter.timestamps_log = m.timestamps_log
        self.formatter.timestamps_debug = m.timestamps_debug
        self.buffer.enabled = lg.buffered is not None
        self.buffer.resize(lg.buffered or self.buffer.size)
        self.buffer.level = lg.buffered_level
        self.console_level = lg.console_level
        self.trap_level = lg.trap_level
        path = getattr(lg, "file", None)
        if self.file is not None and self.file.path != path:
            self.file.close()
            self.file = None
        if path is not None:
            if self.file is None:
                self.file = FileObserver(path, formatter=self.formatter)
            self.file.max_size = lg.file_max
            self.file.level = lg.file_level
        want = [(str(h.address), h.transport, h.port) for h in lg.hosts]
        if self.remote_syslog:
            self.remote_hosts = want          # sent by the management process
            return
        have = [(h.address, h.transport, h.port if h.port != (6514 if h.transport == "tls" else 514)
                 else None) for h in self.hosts]
        for h in self.hosts:
            h.level = lg.trap_level
            h.rfc5424 = lg.rfc5424
            h.hostname = m.hostname
            h.tls_ca = lg.tls_ca
        if want != have:
            for h in self.hosts:
                if h.parent is not None:
                    h.disownServiceParent()        # stops it if running
                elif h.running:
                    h.stopService()
            self.hosts = []
            for addr, tr, port in want:
                h = SyslogObserver(addr, port, tr, level=lg.trap_level, rfc5424=lg.rfc5424,
                                   hostname=m.hostname, tls_ca=lg.tls_ca, reactor=self.reactor,
                                   formatter=self.formatter)
                h.source_for = self._source_for
                h.setServiceParent(self.service)
                self.hosts.append(h)

    def clear(self) -> None:
        """``clear logging``."""
        self.buffer.clear()

    def show_logging(self) -> str:
        return "\n".join(self.show_logging_lines())

    def show_logging_lines(self):
        """``show logging`` line by line (the engine hands a long buffer to
        the management process in slices)."""
        dropped = sum(h.dropped + h.lost for h in self.hosts) + self.remote_dropped + \
            (self.file.lost if self.file is not None else 0)
        lvl = SEVERITIES
        b = self.buffer
        out = ["Syslog logging: enabled (%d messages dropped, 0 messages rate-limited,"
               " 0 flushes, 0 overruns, xml disabled, filtering disabled)" % dropped,
               "    Console logging: level %s, %d messages logged, xml disabled,"
               % (lvl[self.console_level], self.console_count),
               "                     filtering disabled",
               "    Monitor logging: level %s, %d messages logged, xml disabled,"
               % (lvl[self.monitor.level], self.monitor.count),
               "                     filtering disabled"]
        if self.monitor.callbacks:
            out.append("        Logging to: %d vty session(s)" % len(self.monitor.callbacks))
        if b.enabled:
            out += ["    Buffer logging: level %s, %d messages logged, xml disabled,"
                    % (lvl[b.level], b.count),
                    "                    filtering disabled"]
        else:
            out.append("    Buffer logging: disabled, xml disabled,")
            out.append("                    filtering disabled")
        if self.file is not None:
            out.append(self.file.describe())
        now = self.formatter._uptime() + self.formatter.start
        for key, st in self.others.items():
            if now - st["last"] < self.OTHER_RECOVERY:
                out.append("    Log destination %s failing since %s: %s, %d failures"
                           % (key, ios_timestamp(st["since"], None).rstrip(":"), st["why"],
                              st["count"]))
        out += ["    Logging Exception size (4096 bytes)",
                "    Count and timestamp logging messages: disabled",
                "",
                "No active filter modules.",
                "",
                "    Trap logging: level %s, %d message lines logged"
                % (lvl[self.trap_level], self.trap_count)]
        for h in self.hosts:
            out.append(h.describe())
        if self.remote_syslog and self.remote_hosts:
            for addr, tr, port in self.remote_hosts:
                out.append("        Logging to %s  (%s port %d, sent by the management process)"
                           % (addr, tr, port or (6514 if tr == "tls" else 514)))
            out += ["              %d message lines handed to the management process,"
                    % self.remote_sent,
                    "              %d message lines dropped (management process slow or down),"
                    % self.remote_dropped,
                    "              %d message lines queued" % len(self.remote_queue)]
        if b.enabled:
            out += ["", "Log Buffer (%d bytes):" % b.size, ""]
            yield from out
            yield from b.lines()             # a snapshot: the buffer may grow meanwhile
            return
        yield from out


def makeLogging(router_model, reactor=None, remote_syslog=False):
    """-> (observers, service).  Add ``observers`` to the global log
    publisher; start ``service`` to begin sending to syslog hosts; call
    ``observers.configure(new_model)`` after a configuration change.
    ``remote_syslog``: two processes, the management process sends to the
    syslog hosts (:class:`cbac.privsep.remote.RemoteSyslog`)."""
    if reactor is None:
        from twisted.internet import reactor
    obs = LogObservers(router_model, reactor, remote_syslog=remote_syslog)
    return obs, obs.service
