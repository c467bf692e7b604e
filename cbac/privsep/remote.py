"""The management process's side: the console's appliance over AMP.

:class:`RemoteAppliance` implements :class:`IConsoleAppliance` for the
console in the management process.  What the engine owns (sessions, NAT,
counters, ARP, routes, debug switches, the configuration files) is asked
for over AMP and arrives in pages; what only needs the configuration is
answered here from the management process's own parsed copy of the
running configuration (fetched with :class:`protocol.GetConfig` at start
and after every change): the prompt, logins and ``enable`` (the secrets'
hashes are checked here, so scrypt/PBKDF2 never costs the engine CPU),
``show running-config``, ``show clock``, the vty lines' settings.
"""

from __future__ import annotations

import json
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import implementer

from cbac.console.interfaces import IConsoleAppliance
from cbac.privsep import protocol as P

log = Logger(namespace="cbac.mgmt")

#: most characters of one reply the management process collects (a
#: bigger output is cut, with a note: fail closed on memory)
MAX_REPLY = 64 * 1024 * 1024
#: most characters of a metrics snapshot (cbac.metrics.MAX_SNAPSHOT)
MAX_METRICS = 16 * 1024 * 1024


class MonitorHub:
    """``terminal monitor`` in the management process: sessions attach a
    ``callback(line)``; lines come from the engine (:class:`protocol.LogEvent`)."""

    def __init__(self, on_change=None):
        self.callbacks: list = []
        self.on_change = on_change
        self.dropped = 0

    def attach(self, callback):
        if callback not in self.callbacks:
            self.callbacks.append(callback)
            if self.on_change:
                self.on_change(len(self.callbacks))

    def detach(self, callback):
        if callback in self.callbacks:
            self.callbacks.remove(callback)
            if self.on_change:
                self.on_change(len(self.callbacks))

    def deliver(self, lines, dropped=0):
        if dropped:
            self.dropped += dropped
            lines = ["%%CBAC-4-MONITOR_DROPPED: %d log lines were not shown (the console "
                     "was slower than the log)" % dropped] + list(lines)
        for line in lines:
            for cb in list(self.callbacks):
                try:
                    cb(line)
                except Exception:
                    pass


class RemoteSyslog:
    """The syslog hosts (``logging host``), in the management process: the
    engine streams the lines (:class:`protocol.SyslogEvent`) and tells
    where to send from (:class:`protocol.SyslogSources`); the UDP sockets
    and TLS connections are this process's."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.obs = None
        self.sources: dict = {}

    def source_for(self, address, transport):
        return self.sources.get((address, transport))

    def set_sources(self, items):
        self.sources = {(i["address"], i["transport"]): (i["ip"], i["port"])
                        for i in items if i["ip"]}

    def configure(self, model):
        from cbac.log.observers import LogObservers
        if self.obs is None:
            self.obs = LogObservers(None, self.reactor)
            self.obs.source_for = self.source_for
            self.obs.configure(model)
            self.obs.service.startService()
        else:
            self.obs.configure(model)

    def deliver(self, entries):
        from cbac.log.observers import Entry
        if self.obs is None:
            return
        for e in entries:
            entry = Entry(max(0, min(7, e["severity"])), e["text"], False, e["time"], e["stamp"],
                          e["mnemonic"] or "-")
            for h in self.obs.hosts:
                try:
                    h.emit(entry)
                except Exception:
                    pass

    def stop(self):
        if self.obs is not None and self.obs.service.running:
            return self.obs.service.stopService()


class RemoteLogObservers:
    """What the console uses of :class:`cbac.log.observers.LogObservers`."""

    def __init__(self, on_change=None):
        self.monitor = MonitorHub(on_change)


@implementer(IConsoleAppliance)
class RemoteAppliance:
    """The console's appliance in the management process."""

    def __init__(self, model, config_path=None):
        self.model = model
        self.config_path = config_path
        self.amp = None                       # MgmtProtocol once connected
        self.log_observers = RemoteLogObservers(self._monitor_count)
        self.started = time.time()

    # -- local: configuration ------------------------------------------------
    @property
    def router_model(self):
        return self.model

    @property
    def hostname(self):
        return self.model.hostname

    def check_enable(self, password: str) -> bool:
        from cbac.config.passwords import enable_permitted
        return enable_permitted(self.model, password)

    def check_login(self, user: str, password: str):
        from cbac.config.passwords import login_privilege
        return login_privilege(self.model, user, password)

    #: the authorized-keys file as the engine read it (after each
    #: configuration fetch), for a file this process cannot read
    keys_from_engine = b""

    def authorized_keys(self, user):
        """The file is read here when the management user can read it (an
        edit counts at once, as in one process), else the copy the engine
        read at the last configuration change."""
        path = self.model.ssh.authorized_keys
        if not path or user not in self.model.users:
            return []
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            data = self.keys_from_engine
        return [line.strip() for line in data.splitlines()
                if line.strip() and not line.startswith(b"#")]

    def show_running_config(self):
        from cbac.config.render import render
        return render(self.model)

    def show_clock(self):
        t = time.time()
        return time.strftime("*%H:%M:%S.", time.gmtime(t)) + "%03d UTC " % (int(t * 1000) % 1000) \
            + time.strftime("%a %b %d %Y", time.gmtime(t))

    def manhole_namespace(self):
        """The manhole runs here, as the unprivileged user: it sees the
        console's objects and can call the engine's AMP commands
        (``engine.callRemote(...)``), not the engine's memory."""
        from cbac.privsep import protocol
        return {"appliance": self, "config": self.model, "engine": self.amp,
                "protocol": protocol}

    # -- remote: the engine ------------------------------------------------------
    def _monitor_count(self, n):
        if self.amp is not None and self.amp.connected:
            self.amp.callRemote(P.Monitor, sessions=n)

    def _request(self, command, **kw):
        """Deferred: the whole reply, as the appliance method returned it
        (a string, or (ok, text))."""
        if self.amp is None or not self.amp.connected:
            return defer.succeed((False, "% The firewall engine is not reachable"))
        return self.amp.paged(command, **kw).addErrback(self._failed)

    def _failed(self, f):
        if f.check(amp.RemoteAmpError, P.EngineError):
            return (False, "%% Engine error: %s" % (f.value,))
        return (False, "%% The firewall engine did not answer (%s)" % (f.getErrorMessage(),))

    def _show(self, method, *args, **kwargs):
        return self._request(P.Show, method=method, args=json.dumps([list(args), kwargs]))

    def show_startup_config(self):
        return self._show("show_startup_config")

    def show_version(self):
        return self._show("show_version")

    def show_ip_inspect(self, what, name=None):
        return self._show("show_ip_inspect", what, name)

    def show_zone_security(self, name=None):
        return self._show("show_zone_security", name)

    def show_zone_pair_security(self):
        return self._show("show_zone_pair_security")

    def show_policy_map_zone_pair(self, name=None, sessions=False):
        return self._show("show_policy_map_zone_pair", name, sessions)

    def show_access_lists(self, name=None):
        return self._show("show_access_lists", name)

    def show_ip_nat_translations(self, verbose=False):
        return self._show("show_ip_nat_translations", verbose)

    def show_ip_nat_statistics(self):
        return self._show("show_ip_nat_statistics")

    def show_interfaces(self, name=None):
        return self._show("show_interfaces", name)

    def show_ip_interface_brief(self):
        return self._show("show_ip_interface_brief")

    def show_dhcp_lease(self):
        return self._show("show_dhcp_lease")

    def show_cbac_fastpath(self):
        return self._show("show_cbac_fastpath")

    def show_redundancy(self):
        return self._show("show_redundancy")

    def show_ip_route(self):
        return self._show("show_ip_route")

    def show_arp(self):
        return self._show("show_arp")

    def show_logging(self):
        return self._show("show_logging")

    def show_processes_cpu(self):
        return self._show("show_processes_cpu")

    def show_debugging(self):
        return self._show("show_debugging")

    def packet_tracer(self, in_if, proto, src, sport, dst, dport, detailed=False):
        return self._show("packet_tracer", in_if, proto, src, sport, dst, dport,
                          detailed=detailed)

    def metrics_text(self):
        """Deferred: the engine's metrics exposition text (an error when the
        engine is gone or refused: the scrape fails, never shows stale or
        cut numbers)."""
        if self.amp is None or not self.amp.connected:
            return defer.fail(P.EngineError("the firewall engine is not reachable"))

        def check(r):
            if isinstance(r, tuple):
                raise P.EngineError(r[1])
            if len(r) > MAX_METRICS:
                raise P.EngineError("metrics too big")
            return r
        return self.amp.paged(P.Metrics).addCallback(check)

    def clear(self, what, arg=None):
        return self._request(P.Clear, what=what, arg=None if arg is None else str(arg))

    def debug(self, category, on):
        from cbac.log import ios
        ios.debugging.set(category, on)       # 'debug ip ssh' acts here too
        return self._request(P.Debug, category=category, on=on)

    def undebug_all(self):
        from cbac.log import ios
        ios.debugging.clear()
        return self._request(P.Debug, category="", on=False)

    def copy_running_startup(self):
        return self._request(P.WriteMemory)

    def configure_replace(self, path):
        return self._request(P.ConfigureReplace, path=path)

    def reload_config(self):
        return self._request(P.ConfigureReplace, path="")


class MgmtProtocol(amp.AMP):
    """The management process's end of the AMP socket."""

    def __init__(self, on_config=None, on_lost=None, monitor=None):
        amp.AMP.__init__(self)
        self.on_config = on_config
        self.on_lost = on_lost
        self.monitor = monitor                 # MonitorHub
        self.syslog = None                     # RemoteSyslog
        self.connected = False

    def makeConnection(self, transport):
        # not AMP.makeConnection: it logs every connection at info level
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionMade(self):
        amp.AMP.connectionMade(self)
        self.connected = True

    def connectionLost(self, reason):
        self.connected = False
        amp.BinaryBoxProtocol.connectionLost(self, reason)   # (quietly)
        self.transport = None
        if self.on_lost is not None:
            self.on_lost(reason)

    def paged(self, command, **kw):
        """Deferred: all pages of one request, as (ok, text) or text."""
        d = self.callRemote(command, **kw)
        extra = {}

        @defer.inlineCallbacks
        def collect(r):
            parts, size = [r["data"]], len(r["data"])
            more, handle = r["more"], r["handle"]
            for k in r:
                if k not in ("data", "more", "handle", "status"):
                    extra[k] = r[k]
            while more:
                if size > MAX_REPLY:
                    self.callRemote(P.Cancel, handle=handle)
                    parts.append("\n%% Output cut at %d characters" % MAX_REPLY)
                    break
                page = yield self.callRemote(P.More, handle=handle)
                parts.append(page["data"])
                size += len(page["data"])
                more = page["more"]
            text = "".join(parts)
            if r["status"] == P.PLAIN:
                return text
            return (r["status"] == P.OK, text)
        d.addCallback(collect)
        d.extra = extra
        return d

    def fetch_config(self):
        """Deferred (text, path)."""
        d = self.paged(P.GetConfig)
        return d.addCallback(lambda text: (text, d.extra.get("path") or None))

    @P.LogEvent.responder
    def log_event(self, lines, dropped):
        if self.monitor is not None:
            self.monitor.deliver(lines, dropped)
        return {}

    @P.SyslogEvent.responder
    def syslog_event(self, entries):
        if self.syslog is not None:
            self.syslog.deliver(entries)
        return {}

    @P.ConfigChanged.responder
    def config_changed(self):
        if self.on_config is not None:
            self.on_config()
        return {}
