"""The management process once privileges are dropped.

Arguments (given by the engine, :class:`cbac.privsep.engine.MgmtSupervisor`)::

    --amp-fd N          the AMP socket (inherited)
    --hostkey-fd N      the SSH host key, an open file (inherited)
    --listen-fd N:DESC  a listening TCP socket bound by the engine (repeatable)
    --listen DESC       an endpoint string this process listens on itself
    --metrics-fd N:DESC a listening socket for ``cbac metrics listen DESC`` (a
                        privileged port, bound by the engine; repeatable)
    --manhole           allow the console's 'manhole' command
    --uid/--gid         (handled by __main__ before anything else)
"""

from __future__ import annotations

import argparse  # noqa: F401  (imported before the drop)
import os
import socket
import sys


def _args(argv):
    p = argparse.ArgumentParser(prog="python3 -m cbac.mgmt")
    p.add_argument("--amp-fd", type=int, required=True)
    p.add_argument("--hostkey-fd", type=int)
    p.add_argument("--listen-fd", action="append", default=[])
    p.add_argument("--listen", action="append", default=[])
    p.add_argument("--metrics-fd", action="append", default=[])
    p.add_argument("--manhole", action="store_true")
    p.add_argument("--uid", type=int)
    p.add_argument("--gid", type=int)
    return p.parse_args(argv)


#: packages imported whole before privileges are dropped
PRELOAD_PACKAGES = ("cbac.console", "cbac.config", "cbac.log", "cbac.privsep", "cbac.acl",
                    "twisted.conch.ssh", "twisted.conch.insults")
PRELOAD_MODULES = (
    "twisted.internet.reactor", "twisted.internet.endpoints", "twisted.internet.tcp",
    "twisted.internet.unix", "twisted.protocols.amp", "twisted.conch.manhole",
    "twisted.conch.manhole_ssh", "twisted.conch.recvline", "twisted.conch.checkers",
    "twisted.conch.openssh_compat.primes", "twisted.cred.portal", "twisted.cred.checkers",
    "twisted.logger", "twisted.python.failure", "cbac.mgmt.main", "cbac.packet.view",
    "cbac.metrics", "twisted.web.server", "twisted.web.resource", "twisted.web.http",
    "cbac.inspect.zones", "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.asymmetric.rsa", "cryptography.hazmat.primitives.serialization",
    "json", "hashlib", "hmac", "secrets", "base64", "argparse", "code", "tokenize", "rlcompleter",
    "encodings.idna", "encodings.ascii", "encodings.latin_1", "encodings.utf_8_sig",
    "unicodedata", "ipaddress", "difflib", "textwrap", "pwd", "grp", "ctypes",
)


def preload():
    """Import what the management process may need, while the files are
    still readable (see ``__main__``); a module that fails is skipped."""
    import importlib
    import pkgutil
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    for pkg in PRELOAD_PACKAGES:
        try:
            mod = importlib.import_module(pkg)
        except Exception:
            continue
        for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
            if "test" in info.name:
                continue
            try:
                importlib.import_module(info.name)
            except Exception:
                pass


class _Forwarder:
    """Log observer of the management process: IOS lines and warnings go
    to the engine (its buffer, syslog hosts, files); before the AMP
    connection is up, or when it is gone, to stderr (the engine logs it)."""

    QUEUE = 1000

    def __init__(self):
        from cbac.log.observers import Formatter
        self.formatter = Formatter()
        self.amp = None
        self.dropped = 0

    def __call__(self, event):
        from cbac.privsep import protocol as P
        entry = self.formatter.format(event)
        if entry is None:
            return
        if self.amp is not None and self.amp.connected:
            try:
                self.amp.callRemote(P.MgmtLog, severity=int(entry.severity), facility="",
                                    mnemonic=str(entry.mnemonic), message=entry.text[:4000])
                return
            except Exception:
                pass
        sys.stderr.write(entry.text + "\n")
        sys.stderr.flush()


def run(argv):
    opts = _args(argv)
    from twisted.internet import reactor, endpoints
    from twisted.internet.protocol import Factory
    from twisted.logger import Logger, globalLogBeginner
    from twisted.conch.ssh import keys

    from cbac.console import ssh as cssh
    from cbac.config.parser import parse_config
    from cbac.privsep import protocol as P
    from cbac.privsep.remote import MgmtProtocol, RemoteAppliance, RemoteSyslog

    log = Logger(namespace="cbac.mgmt")
    forwarder = _Forwarder()
    globalLogBeginner.beginLoggingTo([cssh.ConchLogFilter(forwarder)],
                                     redirectStandardIO=False, discardBuffer=True)

    host_key = None
    if opts.hostkey_fd is not None:
        with os.fdopen(opts.hostkey_fd, "rb") as f:
            host_key = keys.Key.fromString(f.read())

    state = {"appliance": None, "service": None, "metrics": None}

    def metrics_adopted():
        out = {}
        for spec in opts.metrics_fd:
            fd, _, desc = spec.partition(":")
            fd = int(fd)
            s = socket.socket(fileno=os.dup(fd))
            out[desc] = (fd, s.family)
            s.close()
        return out

    def listen_endpoints():
        eps = []
        for spec in opts.listen_fd:
            fd, _, desc = spec.partition(":")
            fd = int(fd)
            s = socket.socket(fileno=os.dup(fd))
            fam = s.family
            s.close()
            ep = endpoints.AdoptedStreamServerEndpoint(reactor, fd, fam)
            ep.description = desc
            eps.append(ep)
        return eps + list(opts.listen)

    def apply(text, path):
        model, diags = parse_config(text, path or "<running-config>")
        app = state["appliance"]
        if app is None:
            app = state["appliance"] = RemoteAppliance(model, path)
            app.amp = proto
            proto.monitor = app.log_observers.monitor
            svc = cssh.makeConsoleService(
                app, model, None, listen_endpoints(), reactor=reactor,
                vty_permits=_vty_permits(app), acl_permits=_acl_permits(app),
                manhole=opts.manhole, host_key=host_key)
            state["service"] = svc
            svc.startService()
            log.info("management process running as uid {uid}; console started", uid=os.getuid())
            state["metrics"] = start_metrics(app, metrics_adopted())
        else:
            app.model = model
            app._acls = None
            state["metrics"].configure(model)

    def keys(_):
        def got(r):
            state["appliance"].keys_from_engine = r["data"].encode("utf-8")
        return proto.callRemote(P.GetAuthorizedKeys).addCallback(got)

    syslog = RemoteSyslog(reactor)

    def sources(_):
        def got(r):
            syslog.set_sources(r["sources"])
            syslog.configure(state["appliance"].model)
        return proto.callRemote(P.SyslogSources).addCallback(got)

    def fetch():
        d = proto.fetch_config()
        d.addCallback(lambda r: apply(*r))
        d.addCallback(keys)
        d.addCallback(sources)
        d.addErrback(lambda f: log.failure("cannot read the running configuration", f))

    def lost(reason):
        if reactor.running:
            reactor.stop()

    proto = MgmtProtocol(on_config=fetch, on_lost=lost)
    proto.syslog = syslog
    forwarder.amp = proto

    class _F(Factory):
        def buildProtocol(self, addr):
            return proto

    reactor.adoptStreamConnection(opts.amp_fd, socket.AF_UNIX, _F())
    os.close(opts.amp_fd)
    reactor.callWhenRunning(fetch)
    reactor.run()
    return 0


def start_metrics(app, adopted, reactor=None):
    """``cbac metrics listen``: the listeners run here, the numbers are
    the engine's (:class:`cbac.privsep.protocol.Metrics`)."""
    if reactor is None:
        from twisted.internet import reactor
    from cbac.metrics import MetricsService, RemoteMetricsResource
    svc = MetricsService(app, reactor, resource=RemoteMetricsResource(app.metrics_text, reactor),
                         adopted=adopted)
    svc.startService()
    return svc


def _acls_of(app):
    acls = getattr(app, "_acls", None)
    if acls is None:
        import time
        from cbac.acl import AclSet

        class _Clock:
            def seconds(self):
                return time.time()
        acls = app._acls = AclSet(app.model, _Clock())
    return acls


def _vty_permits(app):
    """``line vty ... access-class ACL in``, from this process's own copy
    of the ACLs."""

    def permits(source):
        names = [v.access_class for v in (app.model.vty or []) if v.access_class]
        if not names:
            return True
        return _acls_of(app).permits_source(names, source, undefined=True)
    return permits


def _acl_permits(app):
    """``login quiet-mode access-class ACL``: an undefined ACL permits nobody."""

    def permits(name, source):
        return _acls_of(app).permits_source((name,), source, undefined=False)
    return permits
