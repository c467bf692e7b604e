"""A Prometheus endpoint for the appliance (twisted.web).

Off by default; ``cbac metrics listen ENDPOINT`` in the configuration (one
line per listener, e.g. ``cbac metrics listen tcp:9108:interface=127.0.0.1``)
serves ``GET /metrics`` in the Prometheus text format (0.0.4) on that
endpoint.  The endpoint has no authentication: the configuration parser
insists on an explicit ``interface=`` (a management address), and the
listeners follow the configuration (``configure replace``, SIGHUP).

What is exported (names and labels after the Prometheus conventions:
``_total`` counters, base units, ``snake_case``):

- per interface: packets, bytes and errors in and out, drops by reason
  (``cbac_interface_*``), and the router's drops by reason;
- inspection: sessions by protocol and state, half-open sessions,
  aggressive mode, sessions created by protocol, drops by reason
  (``inspector-reset``, ``edit-ignored``, ...), blocked hosts;
- IOS messages logged, by facility, severity and mnemonic (masked SMTP
  commands are ``SMTP_INVALID_COMMAND``, ACL log lines ``IPACCESSLOGP``...);
- NAT translations by kind, hits/misses, pool and PAT address use;
- ACL matches per entry and implicit denies per list;
- ARP entries; the process's CPU time, resident memory, start time and
  open file descriptors (the standard ``process_*`` names).
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from operator import attrgetter, itemgetter

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.web import resource as wresource
from twisted.web import server

from cbac.packet.view import ip_str

log = Logger(namespace="cbac.metrics")

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _escape(v) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Family:
    def __init__(self, name, kind, help_):
        self.name, self.kind, self.help = name, kind, help_
        self.samples: list[tuple[dict, float]] = []

    def add(self, value, **labels):
        self.samples.append((labels, value))
        return self

    def render(self) -> list[str]:
        out = ["# HELP %s %s" % (self.name, self.help.replace("\\", "\\\\").replace("\n", " ")),
               "# TYPE %s %s" % (self.name, self.kind)]
        for labels, value in self.samples:
            if labels:
                lab = "{" + ",".join('%s="%s"' % (k, _escape(v)) for k, v in sorted(labels.items())) + "}"
            else:
                lab = ""
            out.append("%s%s %s" % (self.name, lab, _num(value)))
        return out


def _num(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class LogCounter:
    """Counts the IOS messages logged (a twisted.logger observer)."""

    def __init__(self):
        self.counts: Counter = Counter()

    def __call__(self, event):
        mn = event.get("ios_mnemonic")
        if mn is not None:
            self.counts[(event.get("ios_facility", ""), event.get("ios_severity", 0), mn)] += 1


def collect(appliance, log_counter=None) -> str:
    """The whole exposition text of the appliance's state now."""
    fams = []

    def fam(name, kind, help_):
        f = _Family(name, kind, help_)
        fams.append(f)
        return f

    r = appliance.router
    rxp = fam("cbac_interface_receive_packets_total", "counter", "Frames received on the interface's port")
    rxb = fam("cbac_interface_receive_bytes_total", "counter", "Bytes received on the interface's port")
    txp = fam("cbac_interface_transmit_packets_total", "counter", "Frames sent on the interface's port")
    txb = fam("cbac_interface_transmit_bytes_total", "counter", "Bytes sent on the interface's port")
    rxe = fam("cbac_interface_receive_errors_total", "counter", "Receive errors of the interface's port")
    txe = fam("cbac_interface_transmit_errors_total", "counter", "Transmit errors of the interface's port")
    up = fam("cbac_interface_up", "gauge", "1 when the interface is up (not shut down)")
    idrop = fam("cbac_interface_drops_total", "counter",
                "Packets dropped, by interface and reason (router and port drops)")
    for name, ri in sorted(r.interfaces.items()):
        c = ri.port.counters
        rxp.add(c.rx_packets, interface=name)
        rxb.add(c.rx_bytes, interface=name)
        txp.add(c.tx_packets, interface=name)
        txb.add(c.tx_bytes, interface=name)
        rxe.add(c.rx_errors, interface=name)
        txe.add(c.tx_errors, interface=name)
        up.add(0 if ri.shutdown else 1, interface=name)
        for reason, n in sorted(ri.drops.items()):
            idrop.add(n, interface=name, reason=reason)
        for reason, n in sorted(getattr(c, "drops", {}).items()):
            idrop.add(n, interface=name, reason="port-" + reason)
    rdrop = fam("cbac_router_drops_total", "counter", "Packets dropped by the router, by reason (all interfaces)")
    for reason, n in sorted(r.drops.items()):
        rdrop.add(n, reason=reason)
    fam("cbac_router_received_frames_total", "counter", "Frames received from all ports").add(r.received)
    fam("cbac_router_forwarded_packets_total", "counter", "IPv4 packets forwarded").add(r.forwarded)
    fam("cbac_arp_entries", "gauge", "Entries in the ARP cache").add(len(r.arp.entries))

    s = appliance.sessions
    if s is not None:
        by = Counter(map(attrgetter("protocol", "sis"), s.sessions.values()))
        g = fam("cbac_inspect_sessions", "gauge", "Inspection sessions, by protocol and state")
        for (proto, state), n in sorted(by.items()):
            g.add(n, protocol=proto, state=state)
        fam("cbac_inspect_sessions_half_open", "gauge",
            "Half-open sessions (max-incomplete counts these)").add(s.half_open_count)
        gi = appliance.model.inspect
        fam("cbac_inspect_max_incomplete_high", "gauge", "ip inspect max-incomplete high").add(
            gi.max_incomplete_high)
        fam("cbac_inspect_max_incomplete_low", "gauge", "ip inspect max-incomplete low").add(
            gi.max_incomplete_low)
        fam("cbac_inspect_aggressive_mode", "gauge",
            "1 while the half-open thresholds are exceeded (aggressive mode)").add(1 if s.aggressive else 0)
        fam("cbac_inspect_aggressive_mode_entered_total", "counter",
            "Times aggressive mode was entered").add(s.stats.aggressive_entered)
        fam("cbac_inspect_sessions_peak", "gauge", "Most sessions at once").add(s.stats.peak)
        fam("cbac_inspect_session_limit", "gauge", "cbac session-limit").add(appliance.model.session_limit)
        c = fam("cbac_inspect_sessions_created_total", "counter", "Sessions created, by protocol")
        for proto, n in sorted(s.stats.created.items()):
            c.add(n, protocol=proto)
        d = fam("cbac_inspect_drops_total", "counter",
                "Packets or sessions refused by inspection, by reason (inspector-reset: an "
                "inspector reset the session)")
        for reason, n in sorted(s.stats.drops.items()):
            d.add(n, reason=reason)
        fam("cbac_inspect_hosts_blocked_total", "counter",
            "Hosts blocked by max-incomplete host block-time").add(s.stats.hosts_blocked)
        fam("cbac_inspect_hosts_blocked", "gauge", "Hosts blocked now").add(len(s.blocked_hosts()))

    if log_counter is not None:
        m = fam("cbac_log_messages_total", "counter",
                "IOS messages logged, by facility, severity and mnemonic (inspector events: "
                "e.g. SMTP_INVALID_COMMAND for masked commands)")
        for (facility, sev, mn), n in sorted(log_counter.counts.items()):
            m.add(n, facility=facility, severity=str(sev), mnemonic=mn)

    nat = appliance.nat
    if nat is not None:
        # (not nat.counts(): its "extended" count walks every translation)
        t = fam("cbac_nat_translations", "gauge", "NAT translations, by kind")
        t.add(len(nat.statics), kind="static")
        t.add(len(nat.entries), kind="dynamic")
        fam("cbac_nat_hits_total", "counter", "Packets that found a translation").add(nat.hits)
        fam("cbac_nat_misses_total", "counter", "Packets that needed a new translation").add(nat.misses)
        fam("cbac_nat_expired_total", "counter", "Translations expired").add(nat.expired)
        pa = fam("cbac_nat_pool_addresses", "gauge", "Addresses of a NAT rule's pool (or interface)")
        pu = fam("cbac_nat_pool_addresses_in_use", "gauge", "Addresses of a NAT rule's pool bound now")
        pm = fam("cbac_nat_rule_misses_total", "counter", "Translations a rule could not make (pool/ports exhausted)")
        pp = fam("cbac_nat_pat_ports_in_use", "gauge", "PAT ports in use, by global address")
        for rule in nat.rules:
            name = rule.pool or ("interface " + (rule.interface or "?"))
            pa.add(len(rule.addresses), rule=str(rule.id), pool=name)
            inuse = sum(1 for a in rule.addresses if a in nat.bind_by_global)
            pu.add(inuse, rule=str(rule.id), pool=name)
            pm.add(rule.misses, rule=str(rule.id), pool=name)
        ports = Counter(map(itemgetter(1), nat.ports))          # C-speed walk
        for st in nat.statics:                                  # minus static ports
            if st.proto in (6, 17) and st.inside_global is not None and \
                    (st.proto, st.inside_global[0], st.inside_global[1]) in nat.ports:
                ports[st.inside_global[0]] -= 1
        for ig, n in sorted(ports.items()):
            if n > 0:
                pp.add(n, address=ip_str(ig))

    acls = appliance.acls
    if acls is not None:
        m = fam("cbac_acl_matches_total", "counter", "Packets matched by an access-list entry")
        d = fam("cbac_acl_implicit_deny_total", "counter", "Packets denied by an access list's implicit deny")
        for name, c in sorted(acls.lists.items()):
            for a in c.aces:
                m.add(a.hits, acl=name, seq=str(a.model.seq), action=a.model.action)
            d.add(c.implicit_deny_hits, acl=name)

    ru = resource.getrusage(resource.RUSAGE_SELF)
    fam("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds").add(
        ru.ru_utime + ru.ru_stime)
    fam("process_resident_memory_bytes", "gauge", "Resident memory size in bytes").add(_rss())
    fam("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds").add(
        getattr(appliance, "boot_time", time.time()))
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = None
    if fds is not None:
        fam("process_open_fds", "gauge", "Number of open file descriptors").add(fds)
    import cbac
    fam("cbac_build_info", "gauge", "cbac version").add(1, version=cbac.__version__)

    lines = []
    for f in fams:
        lines += f.render()
    return "\n".join(lines) + "\n"


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


#: most characters of one snapshot (a bigger one is refused: the scrape
#: fails with a 500 rather than serving a cut exposition)
MAX_SNAPSHOT = 16 * 1024 * 1024


class EngineMetrics(service.Service):
    """The engine's side in two-process mode: the exposition text of the
    appliance's state (:func:`collect`, reused for :attr:`min_interval`
    seconds, at most :data:`MAX_SNAPSHOT` characters), asked for by the
    management process over AMP (:class:`cbac.privsep.protocol.Metrics`);
    counts the IOS messages the engine logs while running."""

    min_interval = 2.0

    def __init__(self, appliance, clock, log_counter=None):
        self.appliance = appliance
        self.clock = clock
        self.log_counter = log_counter if log_counter is not None else LogCounter()
        self._cache = (None, "")

    def startService(self):
        service.Service.startService(self)
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(self.log_counter)

    def stopService(self):
        service.Service.stopService(self)
        from twisted.logger import globalLogPublisher
        globalLogPublisher.removeObserver(self.log_counter)

    def text(self) -> str:
        now = self.clock.seconds()
        when, body = self._cache
        if when is None or not 0 <= now - when < self.min_interval:
            body = collect(self.appliance, self.log_counter)
            if len(body) > MAX_SNAPSHOT:
                raise ValueError("the metrics are %d characters, more than %d"
                                 % (len(body), MAX_SNAPSHOT))
            self._cache = (now, body)
        return body


class RemoteMetricsResource(wresource.Resource):
    """``GET /metrics`` in the management process: the text comes from
    ``fetch()`` (a Deferred of the engine's snapshot, over AMP), reused for
    :attr:`min_interval` seconds; scrapes that arrive while a fetch is on
    the way wait for it (one request to the engine at a time)."""

    isLeaf = True
    min_interval = 2.0

    def __init__(self, fetch, clock):
        wresource.Resource.__init__(self)
        self.fetch = fetch
        self.clock = clock
        self._cache = (None, b"")
        self._waiting = None             # requests waiting for the fetch on the way

    def render_GET(self, request):
        if request.path not in (b"/metrics", b"/metrics/"):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not Found: the metrics are at /metrics\n"
        now = self.clock.seconds()
        when, body = self._cache
        if when is not None and 0 <= now - when < self.min_interval:
            request.setHeader(b"content-type", CONTENT_TYPE)
            return body
        if self._waiting is not None:
            self._waiting.append(request)
            return server.NOT_DONE_YET
        self._waiting = [request]
        d = defer.maybeDeferred(self.fetch)
        d.addCallbacks(self._got, self._fetch_failed, callbackArgs=(now,))
        return server.NOT_DONE_YET

    def _got(self, text, now):
        body = text.encode("utf-8")
        self._cache = (now, body)
        self._answer(200, CONTENT_TYPE, body)

    def _fetch_failed(self, f):
        log.error("metrics: the engine gave no snapshot: {error}", error=f.getErrorMessage())
        self._answer(503, b"text/plain; charset=utf-8",
                     b"the firewall engine gave no metrics\n")

    def _answer(self, code, ctype, body):
        waiting, self._waiting = self._waiting or [], None
        for request in waiting:
            if getattr(request, "_disconnected", False) or request.finished:
                continue
            request.setResponseCode(code)
            request.setHeader(b"content-type", ctype)
            request.write(body)
            request.finish()


class MetricsResource(wresource.Resource):
    """``GET /metrics``.  Collecting walks the session table (about 50 ms
    per 100,000 sessions, on the reactor thread), so an answer is reused
    for :attr:`min_interval` seconds: a scrape storm cannot stall the data
    plane."""

    isLeaf = True
    min_interval = 2.0

    def __init__(self, appliance, log_counter=None, clock=None):
        wresource.Resource.__init__(self)
        self.appliance = appliance
        self.log_counter = log_counter
        self.clock = clock
        self._cache = (None, b"")

    def render_GET(self, request):
        if request.path not in (b"/metrics", b"/metrics/"):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not Found: the metrics are at /metrics\n"
        now = (self.clock or self.appliance.clock).seconds()
        when, body = self._cache
        try:
            if when is None or not 0 <= now - when < self.min_interval:
                body = collect(self.appliance, self.log_counter).encode("utf-8")
                self._cache = (now, body)
        except Exception:
            log.failure("collecting metrics failed")
            request.setResponseCode(500)
            return b"collecting metrics failed\n"
        request.setHeader(b"content-type", CONTENT_TYPE)
        return body


class _QuietSite(server.Site):
    """No access log line per scrape."""

    noisy = False

    def log(self, request):
        pass


class MetricsService(service.Service):
    """Listens on the configuration's ``cbac metrics listen`` endpoints and
    follows configuration changes (:meth:`configure`)."""

    def __init__(self, appliance, reactor, log_counter=None, resource=None, adopted=None):
        """``resource``: what answers ``/metrics`` (default: collected
        here; the management process gives a :class:`RemoteMetricsResource`
        and counts nothing itself); ``adopted``: endpoint string -> file
        descriptor and address family of a listening socket the engine
        bound for it (a privileged port)."""
        self.appliance = appliance
        self.reactor = reactor
        self.log_counter = log_counter if log_counter is not None else \
            (LogCounter() if resource is None else None)
        self.resource = resource if resource is not None else \
            MetricsResource(appliance, self.log_counter, clock=reactor)
        self.site = _QuietSite(self.resource)
        self.adopted = dict(adopted or {})
        self.ports: dict[str, object] = {}          # endpoint string -> listening port
        self._pending: dict[str, defer.Deferred] = {}

    def startService(self):
        service.Service.startService(self)
        if self.log_counter is not None:
            from twisted.logger import globalLogPublisher
            globalLogPublisher.addObserver(self.log_counter)
        self.configure(self.appliance.model)

    def _endpoint(self, desc):
        got = self.adopted.get(desc)
        if got is None:
            return endpoints.serverFromString(self.reactor, desc)
        fd, family = got
        # (the endpoint closes the descriptor it is given: a copy, so the
        # socket can be listened on again after a configuration change)
        return endpoints.AdoptedStreamServerEndpoint(self.reactor, os.dup(fd), family)

    def configure(self, model):
        """Open the endpoints the configuration names, close the others."""
        if not self.running:
            return defer.succeed(None)
        want = list(getattr(model, "metrics_listen", []) or [])
        ds = []
        for desc in list(self.ports):
            if desc not in want:
                port = self.ports.pop(desc)
                ds.append(defer.maybeDeferred(port.stopListening))
                got = self.adopted.pop(desc, None)
                if got is not None:
                    os.close(got[0])         # the engine's socket: given back
                log.info("metrics: stopped listening on {desc}", desc=desc)
        for desc in want:
            if desc in self.ports or desc in self._pending:
                continue
            try:
                ep = self._endpoint(desc)
            except Exception as e:      # noqa: BLE001 - the parser checked it
                log.error("metrics: bad endpoint {desc}: {e}", desc=desc, e=e)
                continue
            d = self._pending[desc] = ep.listen(self.site)
            d.addCallbacks(self._listening, self._failed, callbackArgs=(desc,), errbackArgs=(desc,))
            ds.append(d)
        return defer.DeferredList(ds)

    def _listening(self, port, desc):
        self._pending.pop(desc, None)
        if not self.running:
            return port.stopListening()
        self.ports[desc] = port
        log.info("metrics: serving /metrics on {desc}", desc=desc)
        return port

    def _failed(self, f, desc):
        self._pending.pop(desc, None)
        log.error("metrics: cannot listen on {desc}: {error}", desc=desc, error=f.getErrorMessage())

    def stopService(self):
        service.Service.stopService(self)
        if self.log_counter is not None:
            from twisted.logger import globalLogPublisher
            globalLogPublisher.removeObserver(self.log_counter)
        ports, self.ports = self.ports, {}
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports.values()])
