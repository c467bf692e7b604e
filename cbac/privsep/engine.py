"""The engine's side of privilege separation.

:class:`EngineProtocol` answers the management process's AMP requests
from the :class:`cbac.app.Appliance`; :class:`MgmtSupervisor` spawns the
management process (``python3 -m cbac.mgmt``) as an unprivileged user,
restarts it with a backoff when it exits, and hands it its sockets: the AMP
socketpair, the SSH host key (an open file: the key stays root-only on
disk) and the console's listening sockets (bound by the engine, so the
management process needs no capability for port 22 or the in-band
addresses).

The engine never waits for the management process: a request's output is
produced in pages the management process pulls (:class:`protocol.More`),
an output that is a generator of lines is consumed in slices of at most
:data:`SLICE` seconds per reactor turn, and log lines for ``terminal
monitor`` go through a bounded queue that drops the oldest line (and
counts it) when the management process is slow.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import sys
import time

from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger
from twisted.protocols import amp

from cbac.privsep import protocol as P

log = Logger(namespace="cbac.privsep")

#: seconds of engine work per reactor turn for a generated output
SLICE = 0.002
#: paged replies kept per connection (the oldest is dropped beyond)
MAX_HANDLES = 16
#: a paged reply not asked for in this many seconds is dropped
HANDLE_TTL = 120.0
#: ``terminal monitor`` lines queued for the management process
LOG_QUEUE = 2000
#: lines and bytes per LogEvent (an AMP value is at most 65,535 bytes)
LOG_BATCH = 200
LOG_BATCH_BYTES = 48000

#: log lines per second the engine takes from the management process
MGMT_LOG_RATE = 500

#: the read-only methods :class:`protocol.Show` may call
SHOW_METHODS = frozenset([
    "show_startup_config", "show_version", "show_ip_inspect", "show_zone_security",
    "show_zone_pair_security", "show_policy_map_zone_pair", "show_access_lists",
    "show_ip_nat_translations", "show_ip_nat_statistics", "show_interfaces",
    "show_ip_interface_brief", "show_dhcp_lease", "show_cbac_fastpath", "show_ip_route",
    "show_arp", "show_logging", "show_processes_cpu", "show_debugging", "packet_tracer",
    "show_redundancy",
])


#: show methods whose output the appliance can also give line by line
LINE_METHODS = {"show_access_lists": "lines_access_lists", "show_logging": "lines_logging"}


def _may(st, uid, gid, bits):
    """Do the mode bits of ``st`` give ``uid``/``gid`` the permission
    ``bits`` (4 read, 1 search)?  (Supplementary groups: none, the
    management process has dropped them.)"""
    if st.st_uid == uid:
        return bool(st.st_mode & (bits << 6))
    if st.st_gid == gid:
        return bool(st.st_mode & (bits << 3))
    return bool(st.st_mode & bits)


def user_can_read(path, ids):
    """Could ``ids`` = (uid, gid) open ``path`` (already resolved) for
    reading: the file readable, every directory above it searchable?
    ``ids`` None: the engine's own user (``os.access``)."""
    if ids is None:
        return os.access(path, os.R_OK)
    uid, gid = ids
    try:
        if not _may(os.stat(path), uid, gid, 4):
            return False
        d = os.path.dirname(path)
        while True:
            if not _may(os.stat(d), uid, gid, 1):
                return False
            parent = os.path.dirname(d)
            if parent == d:
                return True
            d = parent
    except OSError:
        return False


def _scalar(v):
    return v is None or isinstance(v, (str, int, float, bool))


def decode_args(text):
    """``[args, kwargs]`` of JSON scalars, or EngineError."""
    try:
        args, kwargs = json.loads(text)
    except (ValueError, TypeError):
        raise P.EngineError("bad arguments")
    if not isinstance(args, list) or not isinstance(kwargs, dict) or \
            not all(_scalar(a) for a in args) or \
            not all(isinstance(k, str) and _scalar(v) for k, v in kwargs.items()):
        raise P.EngineError("bad arguments")
    return args, kwargs


class EngineProtocol(amp.AMP):
    """The engine's end of the AMP socket."""

    #: engine seconds per second the console's requests may take (their
    #: synchronous part: building a show's text, a clear, a swap)
    cpu_budget = 0.25

    def __init__(self, appliance, reactor, on_lost=None):
        amp.AMP.__init__(self)
        self.appliance = appliance
        self.reactor = reactor
        self.on_lost = on_lost
        self.pagers: collections.OrderedDict = collections.OrderedDict()
        self._next = 1
        self.queue: collections.deque = collections.deque()
        self.dropped = 0
        self.dropped_total = 0
        self._sending = False
        self._monitoring = False
        self.connected = False
        #: (uid, gid) of the management process (None: the engine's own)
        self.peer_ids = None
        self._log_window = -1e9
        self._log_count = self._log_dropped = 0
        self._cpu_window = -1e9
        self._cpu_spent = 0.0
        self.requests_delayed = 0

    # -- connection ----------------------------------------------------------
    def makeConnection(self, transport):
        # not AMP.makeConnection: it logs every connection at info level
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionMade(self):
        amp.AMP.connectionMade(self)
        self.connected = True
        self.attach_syslog()

    def connectionLost(self, reason):
        self.connected = False
        self._monitor(False)
        obs = getattr(self.appliance, "log_observers", None)
        if obs is not None and obs.remote_wakeup == self._syslog_kick:
            obs.remote_wakeup = None
        self.pagers.clear()
        self.queue.clear()
        amp.BinaryBoxProtocol.connectionLost(self, reason)   # (quietly)
        self.transport = None
        if self.on_lost is not None:
            self.on_lost(self)

    # -- paged replies -------------------------------------------------------
    def _reply(self, result):
        """(handle, status, first page, more) for a method's result."""
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
            status, body = (P.OK if result[0] else P.FAILED), result[1]
        else:
            status, body = P.PLAIN, result
        if body is None:
            body = ""
        if not isinstance(body, str):
            try:
                body = iter(body)
            except TypeError:
                body = str(body)
        pager = _Pager(self.reactor, status, body) if isinstance(body, str) else \
            _LinePager(self.reactor, status, body)
        return pager.page().addCallback(self._first, pager)

    def _first(self, page, pager):
        data, more = page
        handle = 0
        if more:
            self._expire()
            handle = self._next
            self._next += 1
            self.pagers[handle] = pager
            while len(self.pagers) > MAX_HANDLES:
                self.pagers.popitem(last=False)
        return {"handle": handle, "status": pager.status, "data": data, "more": more}

    def _expire(self):
        now = self.reactor.seconds()
        for h in [h for h, p in self.pagers.items() if now - p.used > HANDLE_TTL]:
            del self.pagers[h]

    def _call(self, method, *args, **kwargs):
        """Run an appliance method for the console, within the console's
        CPU budget: once its requests have cost the engine
        ``cpu_budget`` seconds in the current second, the next ones wait
        for the next second (a console sending requests in a loop, or a
        compromised management process, gets a share of the engine, not
        all of it)."""
        now = self.reactor.seconds()
        if now - self._cpu_window >= 1.0:
            self._cpu_window, self._cpu_spent = now, 0.0
        if self._cpu_spent >= self.cpu_budget:
            self.requests_delayed += 1
            from twisted.internet import task
            return task.deferLater(self.reactor, max(0.0, self._cpu_window + 1.0 - now),
                                   self._call, method, *args, **kwargs)
        t0 = time.perf_counter()
        try:
            fn = method if callable(method) else getattr(self.appliance, method)
            d = defer.maybeDeferred(fn, *args, **kwargs)
        finally:
            self._cpu_spent += time.perf_counter() - t0
        return d.addCallback(self._reply)

    @P.More.responder
    def more(self, handle):
        pager = self.pagers.get(handle)
        if pager is None:
            raise P.EngineError("no such reply (expired)")

        def done(page):
            if not page[1]:
                self.pagers.pop(handle, None)
            return {"data": page[0], "more": page[1]}
        return pager.page().addCallback(done)

    @P.Cancel.responder
    def cancel(self, handle):
        self.pagers.pop(handle, None)
        return {}

    # -- requests ---------------------------------------------------------------
    @P.Show.responder
    def show(self, method, args):
        if method not in SHOW_METHODS:
            raise P.EngineError("not a show method: %r" % method[:40])
        a, kw = decode_args(args)
        lines = LINE_METHODS.get(method)
        if lines is not None and hasattr(self.appliance, lines):
            method = lines                 # the same output, produced in slices
        return self._call(method, *a, **kw)

    @P.Clear.responder
    def clear(self, what, arg=None):
        return self._call("clear", what, arg)

    @P.Debug.responder
    def debug(self, category, on):
        if not category:
            return self._call("undebug_all")
        return self._call("debug", category, on)

    @P.WriteMemory.responder
    def write_memory(self):
        return self._call("copy_running_startup")

    @P.ConfigureReplace.responder
    def configure_replace(self, path):
        if not path:
            return self._call("reload_config")
        path, refusal = self.replace_path(path)
        if refusal:
            return self._reply((False, refusal))
        return self._call("configure_replace", path)

    def replace_path(self, path):
        """-> (path, refusal).  The engine reads replacement files only from
        the running configuration's directory and the state directory: the
        console must not make the engine (root) read any file for it (the
        diagnostics would print its lines).  A relative name is in the
        configuration's directory."""
        app = self.appliance
        dirs = [os.path.dirname(os.path.realpath(d)) for d in
                (app.config_path, os.path.join(app.state_dir, "x") if app.state_dir else None) if d]
        if not dirs:
            return None, "% configure replace: no configuration directory"
        if not os.path.isabs(path):
            path = os.path.join(dirs[0], path)
        real = os.path.realpath(path)
        if os.path.dirname(real) in dirs or user_can_read(real, self.peer_ids):
            return real, None
        return None, ("%% configure replace: %s is not in %s, and the console's user could not "
                      "read it itself; cbac reads replacement configurations only from there"
                      % (path, " or ".join(dirs)))

    @P.GetConfig.responder
    def get_config(self):
        text = self.appliance.config_source()
        d = self._reply(text)

        def add_path(r):
            r["path"] = self.appliance.config_path or ""
            return r
        return d.addCallback(add_path)

    @P.Metrics.responder
    def metrics(self):
        # cbac.metrics.EngineMetrics, set by cbac.app in two-process mode
        src = getattr(self.appliance, "metrics_source", None)
        if src is None:
            raise P.EngineError("the engine has no metrics")

        def text():
            try:
                return src.text()
            except Exception as e:
                log.failure("collecting metrics failed")
                raise P.EngineError("collecting metrics failed: %s" % (e,))
        return self._call(text)

    @P.GetAuthorizedKeys.responder
    def get_authorized_keys(self):
        path = self.appliance.model.ssh.authorized_keys
        data = ""
        if path:
            try:
                with open(path, "rb") as f:
                    data = f.read(P.MAX_KEYS + 1).decode("utf-8", "replace")
            except OSError:
                data = ""
            if len(data) > P.MAX_KEYS:
                log.warn("{path}: more than {n} characters: the console reads the first {n}",
                         path=path, n=P.MAX_KEYS)
                data = data[:data.rfind("\n", 0, P.MAX_KEYS) + 1]
        return {"data": data}

    @P.MgmtLog.responder
    def mgmt_log(self, severity, facility, mnemonic, message):
        from cbac.log import ios
        now = self.reactor.seconds()
        if now - self._log_window >= 1.0:
            if self._log_dropped:
                log.warn("management process: {n} log lines dropped (more than {rate}/s)",
                         n=self._log_dropped, rate=MGMT_LOG_RATE)
            self._log_window, self._log_count, self._log_dropped = now, 0, 0
        self._log_count += 1
        if self._log_count > MGMT_LOG_RATE:
            self._log_dropped += 1
            return {}
        severity = max(0, min(7, severity))
        ios.log.emit(ios._LEVELS[severity], "{ios_message}", ios_facility=facility[:32],
                     ios_severity=severity, ios_mnemonic=mnemonic[:64],
                     ios_message=message[:4000], cbac_from_mgmt=True)
        return {}

    @P.Monitor.responder
    def monitor(self, sessions):
        self._monitor(sessions > 0)
        return {}

    # -- terminal monitor: log lines to the management process -------------------
    def _hub(self):
        obs = getattr(self.appliance, "log_observers", None)
        return getattr(obs, "monitor", None)

    def _monitor(self, on):
        hub = self._hub()
        if hub is None or on == self._monitoring:
            return
        self._monitoring = on
        if on:
            hub.attach(self.monitor_line)
        else:
            hub.detach(self.monitor_line)

    def monitor_line(self, line):
        """A formatted log line (from the engine's MonitorObserver): queued,
        never waited for."""
        if len(self.queue) >= LOG_QUEUE:
            self.queue.popleft()
            self.dropped += 1
            self.dropped_total += 1
        self.queue.append(line)
        if not self._sending:
            self._sending = True
            self.reactor.callLater(0, self._send)

    def _send(self):
        if not self.queue or not self.connected:
            self._sending = False
            return
        batch, size = [], 0
        while self.queue and len(batch) < LOG_BATCH:
            line = self.queue[0][:4000]
            if size + len(line.encode("utf-8", "replace")) + 2 > LOG_BATCH_BYTES:
                break
            batch.append(self.queue.popleft()[:4000])
            size += len(line.encode("utf-8", "replace")) + 2
        dropped, self.dropped = self.dropped, 0
        d = self.callRemote(P.LogEvent, lines=batch, dropped=dropped)

        def again(_):
            if self.queue and self.connected:
                self.reactor.callLater(0, self._send)
            else:
                self._sending = False
        d.addBoth(again)

    # -- syslog: log lines for the management process's syslog hosts ----------
    _syslog_sending = False

    def attach_syslog(self):
        """Take the engine's syslog lines (two processes: the management
        process owns the ``logging host`` sockets)."""
        obs = getattr(self.appliance, "log_observers", None)
        if obs is None or not getattr(obs, "remote_syslog", False):
            return
        obs.remote_wakeup = self._syslog_kick
        if obs.remote_queue:
            self._syslog_kick()

    def _syslog_kick(self):
        if not self._syslog_sending and self.connected:
            self._syslog_sending = True
            self.reactor.callLater(0, self._syslog_send)

    def _syslog_send(self):
        obs = self.appliance.log_observers
        q = obs.remote_queue
        if not q or not self.connected:
            self._syslog_sending = False
            return
        batch, size = [], 0
        while q and len(batch) < LOG_BATCH:
            e = q[0]
            item = {"severity": int(e.severity), "mnemonic": str(e.mnemonic)[:64],
                    "time": float(e.time), "stamp": e.stamp[:64], "text": e.text[:4000]}
            n = len(item["text"].encode("utf-8", "replace")) + len(item["stamp"]) + 120
            if batch and size + n > LOG_BATCH_BYTES:
                break
            q.popleft()
            batch.append(item)
            size += n
        d = self.callRemote(P.SyslogEvent, entries=batch)

        def sent(_):
            obs.remote_sent += len(batch)

        def lost(_):
            obs.remote_dropped += len(batch)

        def again(_):
            if q and self.connected:
                self.reactor.callLater(0, self._syslog_send)
            else:
                self._syslog_sending = False
        d.addCallbacks(sent, lost).addBoth(again)

    @P.SyslogSources.responder
    def syslog_sources(self):
        obs = getattr(self.appliance, "log_observers", None)
        pick = getattr(obs, "source_for", None)
        out = []
        for h in self.appliance.model.logging.hosts[:64]:
            addr, tr = str(h.address), h.transport
            src = None
            if pick is not None:
                try:
                    src = pick(addr, tr)
                except Exception:
                    log.failure("syslog: choosing a source address")
            out.append({"address": addr, "transport": tr, "ip": src[0] if src else "",
                        "port": int(src[1]) if src else 0})
        return {"sources": out}

    def config_changed(self):
        if self.connected:
            self.callRemote(P.ConfigChanged)


class _LinePager:
    """A reply that is an iterator of lines: consumed SLICE seconds per
    reactor turn, one page at a time (nothing is produced ahead of what
    the management process asks for)."""

    def __init__(self, reactor, status, lines):
        self.reactor = reactor
        self.status = status
        self.lines = lines
        self.used = reactor.seconds()
        self.carry = ""
        self.first = True
        self.done = False

    def page(self):
        self.used = self.reactor.seconds()
        d = defer.Deferred()
        carry, self.carry = self.carry, ""
        self._fill(d, [carry] if carry else [], len(carry))
        return d

    def _fill(self, d, parts, size):
        end = time.perf_counter() + SLICE
        try:
            while size <= P.PAGE and not self.done:
                if time.perf_counter() >= end:
                    self.reactor.callLater(0, self._fill, d, parts, size)
                    return
                try:
                    line = next(self.lines)
                except StopIteration:
                    self.done = True
                    break
                if not self.first:
                    line = "\n" + line
                self.first = False
                parts.append(line)
                size += len(line)
        except Exception as e:
            d.errback(e)
            return
        data = "".join(parts)
        if len(data) > P.PAGE:
            data, self.carry = data[:P.PAGE], data[P.PAGE:]
        d.callback((data, bool(self.carry) or not self.done))


class _Pager:
    """A reply that is a string: cut into pages (cheap slicing)."""

    def __init__(self, reactor, status, text):
        self.reactor = reactor
        self.status = status
        self.text, self.pos = text, 0
        self.used = reactor.seconds()

    def page(self):
        self.used = self.reactor.seconds()
        data = self.text[self.pos:self.pos + P.PAGE]
        self.pos += len(data)
        return defer.succeed((data, self.pos < len(self.text)))


# ---------------------------------------------------------------------------
# Spawning and supervising the management process

#: restart delays (seconds); back to the first after a run of RESET seconds
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
RESET = 30.0


def _endpoint_socket(desc):
    """A listening socket for ``tcp:PORT[:interface=ADDR]`` (IPv4 or IPv6),
    bound here so the management process needs no capability; None for
    other endpoint strings (the management process listens on those)."""
    parts = desc.split(":")
    if parts[0] not in ("tcp", "tcp6") or len(parts) < 2:
        return None
    port, iface, backlog = None, "0.0.0.0" if parts[0] == "tcp" else "::", 50
    for p in parts[1:]:
        k, sep, v = p.partition("=")
        if not sep:
            port = int(k)
        elif k == "port":
            port = int(v)
        elif k == "interface":
            iface = v
        elif k == "backlog":
            backlog = int(v)
        else:
            return None
    if port is None:
        return None
    fam = socket.AF_INET6 if ":" in iface else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((iface, port))
        s.listen(backlog)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _endpoint_port(desc):
    """The TCP port of ``tcp:PORT...`` / ``tcp:port=PORT...``, else None."""
    parts = desc.split(":")
    if parts[0] not in ("tcp", "tcp6") or len(parts) < 2:
        return None
    for p in parts[1:]:
        k, sep, v = p.partition("=")
        try:
            if not sep:
                return int(k)
            if k == "port":
                return int(v)
        except ValueError:
            return None
    return None


#: ports below this need root (CAP_NET_BIND_SERVICE) to listen on
PRIVILEGED_PORTS = 1024


class _MgmtProcess(protocol.ProcessProtocol):
    def __init__(self, supervisor):
        self.supervisor = supervisor
        self.buf = {1: b"", 2: b""}

    def childDataReceived(self, fd, data):
        buf = self.buf.get(fd, b"") + data
        *lines, rest = buf.split(b"\n")
        self.buf[fd] = rest[-8192:]
        for line in lines[-100:]:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                log.warn("management process: {line}", line=text[:2000])

    def processEnded(self, reason):
        self.supervisor._ended(self, reason)


class MgmtSupervisor(service.Service):
    """Spawns ``python3 -m cbac.mgmt`` as ``user`` (nobody when that user
    does not exist), answers it with :class:`EngineProtocol`, restarts it
    with a backoff when it exits.  ``endpoints``: the console's endpoint
    strings (TCP ones are bound here and handed over)."""

    def __init__(self, appliance, reactor, endpoints, state_dir, user="cbac", manhole=False,
                 python=None):
        self.appliance = appliance
        self.reactor = reactor
        self.endpoints = list(endpoints)
        self.state_dir = state_dir or "/var/lib/cbac"
        self.user = user
        self.manhole = manhole
        self.python = python or sys.executable
        self.sockets = []            # (socket, description)
        self.passed = []             # endpoint strings the child listens on
        self.transport = None
        self.proto = None
        self.pid = None
        self.restarts = 0
        self._attempt = 0
        self._started_at = 0.0
        self._delayed = None
        self._stopping = False
        appliance.on_apply.append(self._config_applied)

    # -- service ---------------------------------------------------------------
    def startService(self):
        service.Service.startService(self)
        self._stopping = False
        from cbac.console.ssh import load_host_key
        load_host_key(self.state_dir)              # made here, root-only on disk
        for desc in self.endpoints:
            try:
                s = _endpoint_socket(desc)
            except ValueError:
                s = None                  # a form not parsed here: the console listens itself
            except OSError as e:
                log.error("cbac console could not listen on {desc}: {error}", desc=desc, error=e)
                continue
            if s is None:
                self.passed.append(desc)
            else:
                self.sockets.append((s, desc))
        if os.geteuid() == 0:
            from cbac.privsep.drop import resolve_user
            self.uid, self.gid, warning = resolve_user(self.user)
            if warning:
                log.warn("{why}", why=warning)
        else:
            self.uid = self.gid = None
            log.warn("not running as root: the management process keeps uid {uid}",
                     uid=os.getuid())
        self._spawn()

    def stopService(self):
        service.Service.stopService(self)
        self._stopping = True
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        if self.proto is not None and self.proto.transport is not None:
            # the management process exits when its AMP connection closes
            self.proto.transport.loseConnection()
        if self.transport is not None:
            try:
                self.transport.signalProcess("TERM")
            except (error.ProcessExitedAlready, OSError):
                pass                     # no CAP_KILL: the closed socket ends it
        for s, _ in self.sockets:
            s.close()
        self.sockets = []

    # -- the child ----------------------------------------------------------------
    def _host_key_file(self):
        for name in ("ssh_host_ed25519_key", "ssh_host_rsa_key"):
            path = os.path.join(self.state_dir, name)
            if os.path.exists(path):
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return None

    def _spawn(self):
        self._delayed = None
        if self._stopping:
            return
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        key_fd = self._host_key_file()
        argv = [self.python, "-m", "cbac.mgmt", "--amp-fd", "3"]
        child = {0: "w", 1: "r", 2: "r", 3: theirs.fileno()}
        if key_fd is not None:
            argv += ["--hostkey-fd", "4"]
            child[4] = key_fd
        n = 5
        for s, desc in self.sockets:
            argv += ["--listen-fd", "%d:%s" % (n, desc)]
            child[n] = s.fileno()
            n += 1
        for desc in self.passed:
            argv += ["--listen", desc]
        metric_socks = self._metrics_sockets()
        for s, desc in metric_socks:
            argv += ["--metrics-fd", "%d:%s" % (n, desc)]
            child[n] = s.fileno()
            n += 1
        if self.manhole:
            argv.append("--manhole")
        if self.uid is not None:
            argv += ["--uid", str(self.uid), "--gid", str(self.gid)]
        pp = _MgmtProcess(self)
        try:
            self.transport = self.reactor.spawnProcess(pp, self.python, argv, env=dict(os.environ),
                                                       path="/", childFDs=child)
        except Exception:
            log.failure("cannot start the management process")
            mine.close()
            self._retry()
            return
        finally:
            theirs.close()
            if key_fd is not None:
                os.close(key_fd)
            for s, _ in metric_socks:
                s.close()                # the child has them
        self.pid = self.transport.pid
        self._started_at = self.reactor.seconds()
        proto = EngineProtocol(self.appliance, self.reactor)
        if self.uid is not None:
            proto.peer_ids = (self.uid, self.gid)
        self.proto = proto

        class _F(protocol.Factory):
            def buildProtocol(self, addr):
                return proto
        self.reactor.adoptStreamConnection(mine.fileno(), socket.AF_UNIX, _F())
        mine.close()
        log.info("management process started (pid {pid}{user})", pid=self.pid,
                 user="" if self.uid is None else ", uid %d gid %d" % (self.uid, self.gid))

    def _metrics_sockets(self):
        """``cbac metrics listen`` endpoints on privileged ports, bound
        here for the management process (which listens on the others
        itself); bound at each start of the management process."""
        self.metrics_passed = set()
        out = []
        for desc in getattr(getattr(self.appliance, "model", None), "metrics_listen", None) or []:
            port = _endpoint_port(desc)
            if not port or port >= PRIVILEGED_PORTS:      # (0: any free port)
                continue
            try:
                s = _endpoint_socket(desc)
            except (ValueError, OSError) as e:
                log.error("metrics: cannot listen on {desc}: {error}", desc=desc, error=e)
                continue
            if s is not None:
                out.append((s, desc))
                self.metrics_passed.add(desc)
        return out

    def _ended(self, pp, reason):
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        how = "signal %s" % sig if sig else "status %s" % code
        self.transport = None
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.loseConnection()
        self.proto = None
        if self._stopping:
            log.info("management process (pid {pid}) stopped ({how})", pid=self.pid, how=how)
            return
        if self.reactor.seconds() - self._started_at >= RESET:
            self._attempt = 0
        delay = BACKOFF[min(self._attempt, len(BACKOFF) - 1)]
        self._attempt += 1
        self.restarts += 1
        log.warn("management process (pid {pid}) exited ({how}); restarting it in {delay} s "
                 "(restart {n}); forwarding is not affected",
                 pid=self.pid, how=how, delay=delay, n=self.restarts)
        self._delayed = self.reactor.callLater(delay, self._spawn)

    def _retry(self):
        delay = BACKOFF[min(self._attempt, len(BACKOFF) - 1)]
        self._attempt += 1
        self._delayed = self.reactor.callLater(delay, self._spawn)

    metrics_passed: set = set()

    def _config_applied(self, model):
        for desc in getattr(model, "metrics_listen", None) or []:
            port = _endpoint_port(desc)
            if port is not None and port < PRIVILEGED_PORTS and desc not in self.metrics_passed:
                log.error("metrics: {desc} is a privileged port: the management process "
                          "listens there once it is restarted (restart cbac, or kill the "
                          "management process: the engine restarts it)", desc=desc)
        if self.proto is not None:
            self.proto.config_changed()
