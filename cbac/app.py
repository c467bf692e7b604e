"""The one place that wires cbac together.

:class:`Appliance` holds the running configuration and the engines (ACLs,
NAT, sessions, router) built from it, and is the facade the console calls
(docs/architecture.md, "The console's facade").  :func:`makeApplianceService` is what
``twistd cbac`` runs (via :mod:`cbac.tap`).
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import time

import twisted
from twisted.application import service
from twisted.logger import Logger
from zope.interface import implementer

import cbac
from cbac.console.interfaces import IConsoleAppliance
from cbac.dataplane.router import Router
from cbac.dataplane.routes import render_show_ip_route
from cbac.log import ios

log = Logger(namespace="cbac")


def _build_engines(model, clock):
    """ACL set, NAT and session table for a configuration."""
    from cbac.acl import AclSet
    from cbac.inspect import app_factories, SessionTable
    from cbac.nat import Nat
    acls = AclSet(model, clock)
    nat = Nat(model, clock, acls=acls)
    from cbac.inspect.zones import engine_model
    sessions = SessionTable(clock, engine_model(model), app_factories(model, acls))
    sessions.nat = nat
    return acls, nat, sessions


@implementer(IConsoleAppliance)
class Appliance:
    """Configuration + engines + router, and the console's facade
    (:class:`cbac.console.interfaces.IConsoleAppliance`)."""

    def __init__(self, model, clock, ports, config_path=None, state_dir=None,
                 engines=True):
        self.model = model
        self.clock = clock
        self.config_path = config_path
        self.port_overrides = {}           # --port IOSNAME=DEVICE, kept over reloads
        self.state_dir = state_dir
        self.started = clock.seconds()
        self.boot_time = time.time()
        if engines:
            self.acls, self.nat, self.sessions = _build_engines(model, clock)
        else:
            self.acls = self.nat = self.sessions = None
        self.router = Router(model, clock, ports, self.acls, self.nat, self.sessions)
        if self.sessions is not None:
            # RSTs and re-emitted segments: routed and sent by the router
            self.sessions.send = self.router.send_generated
        from cbac.inspect.zones import ZonePolicy
        self.zones = self.router.zones = ZonePolicy(model, self.acls, clock)
        self.log_observers = None          # cbac.log.observers.LogObservers
        self.offloader = None              # cbac.dataplane.flowoffload.FlowOffloader
        self.offload_reason = None
        self.inband_addresses = []
        self.on_apply = []                 # callables(new model) after apply (metrics)
        self.continuity = None             # cbac.continuity.restart.Continuity
        self.redundancy = None             # cbac.continuity.sync.Redundancy

    # -- identity and authentication ------------------------------------

    @property
    def router_model(self):
        """The running configuration (the console reads it after reloads)."""
        return self.model

    @property
    def hostname(self) -> str:
        return self.model.hostname

    def check_enable(self, password: str) -> bool:
        from cbac.config.passwords import enable_permitted
        return enable_permitted(self.model, password)

    def check_login(self, user: str, password: str):
        from cbac.config.passwords import login_privilege
        return login_privilege(self.model, user, password)

    def authorized_keys(self, user: str) -> list:
        path = self.model.ssh.authorized_keys
        if not path or user not in self.model.users:
            return []
        try:
            with open(path, "rb") as f:
                return [line.strip() for line in f
                        if line.strip() and not line.startswith(b"#")]
        except OSError:
            return []

    # -- show -------------------------------------------------------------

    def show_running_config(self) -> str:
        from cbac.config.render import render
        return render(self.model)

    def show_startup_config(self) -> str:
        if not self.config_path:
            return "startup-config is not present"
        try:
            with open(self.config_path) as f:
                return f.read().rstrip("\n")
        except OSError as e:
            return "%% Error opening %s (%s)" % (self.config_path, e.strerror)

    def show_version(self) -> str:
        up = int(self.clock.seconds() - self.started)
        days, rest = divmod(up, 86400)
        hours, rest = divmod(rest, 3600)
        minutes = rest // 60
        lines = [
            "cbac Software, Version %s (Python %s, Twisted %s)" % (
                cbac.__version__, platform.python_version(), twisted.__version__),
            "Stateful firewall modelled on Cisco IOS Firewall CBAC",
            "",
            "%s uptime is %d days, %d hours, %d minutes" % (self.hostname, days, hours, minutes),
            "System image file is \"%s\"" % os.path.dirname(cbac.__file__),
            "",
            "%d Ethernet interfaces" % len(self.router.interfaces),
            "Configuration file is %s" % (self.config_path or "(none)"),
        ]
        return "\n".join(lines)

    def show_clock(self) -> str:
        t = time.time()
        return time.strftime("*%H:%M:%S.", time.gmtime(t)) + "%03d UTC " % (int(t * 1000) % 1000) \
            + time.strftime("%a %b %d %Y", time.gmtime(t))

    def show_ip_inspect(self, what: str, name=None) -> str:
        from cbac.config import show as cshow
        if what == "config":
            return cshow.show_ip_inspect_config(self.model)
        if what == "interfaces":
            return cshow.show_ip_inspect_interfaces(self.model)
        if what == "name":
            text = cshow.show_ip_inspect_name(self.model, name)
            if name not in self.model.inspect_rules:
                return False, text.rstrip("\n")
            return text
        if what in ("sessions", "sessions detail") and self.redundancy is not None \
                and self.redundancy.role != "MASTER":
            return self.redundancy.show_synced_sessions()
        if what == "sessions":
            return self.sessions.show_sessions(detail=False) if self.sessions else ""
        if what == "sessions detail":
            return self.sessions.show_sessions(detail=True) if self.sessions else ""
        if what == "statistics":
            return self.sessions.show_statistics() if self.sessions else ""
        if what == "all":
            text = cshow.show_ip_inspect_all_config(self.model)
            if self.sessions:
                sess = self.sessions.show_sessions(detail=False)
                if sess:
                    text += "\n\n" + sess
            return text
        return "% Invalid input"

    # -- zone-based policy firewall ----------------------------------------

    def show_zone_security(self, name=None) -> str:
        from cbac.inspect import zones
        return zones.show_zone_security(self.model, name)

    def show_zone_pair_security(self) -> str:
        from cbac.inspect import zones
        return zones.show_zone_pair_security(self.model)

    def show_policy_map_zone_pair(self, name=None, sessions=False) -> str:
        from cbac.inspect import zones
        return zones.show_policy_map_zone_pair(self.model, self.zones, self.sessions, name,
                                               sessions)

    def show_access_lists(self, name=None) -> str:
        return self.acls.show(name) if self.acls else ""

    def lines_access_lists(self, name=None):
        """``show access-lists`` as a generator of lines (the engine's
        sliced form for the management process)."""
        return self.acls.show_lines(name) if self.acls else iter(())

    def show_ip_nat_translations(self, verbose=False) -> str:
        return self.nat.show_translations(verbose) if self.nat else ""

    def show_ip_nat_statistics(self) -> str:
        return self.nat.show_statistics() if self.nat else ""

    def show_interfaces(self, name=None) -> str:
        from cbac.dataplane.show import show_interfaces
        return show_interfaces(self.router, name, self.clock)

    def show_ip_interface_brief(self) -> str:
        from cbac.dataplane.show import show_ip_interface_brief
        return show_ip_interface_brief(self.router)

    def show_dhcp_lease(self) -> str:
        from cbac.dataplane.dhcpport import show_dhcp_lease
        return show_dhcp_lease(self.router)

    def show_ip_route(self) -> str:
        return render_show_ip_route(self.router.routes)

    def show_arp(self) -> str:
        return self.router.show_arp()

    def show_logging(self) -> str:
        if self.log_observers is None:
            return "Syslog logging: enabled\n    Buffer logging: disabled"
        return self.log_observers.show_logging()

    def lines_logging(self):
        """``show logging`` as a generator of lines (sliced by the engine)."""
        if self.log_observers is None:
            return iter(self.show_logging().split("\n"))
        return self.log_observers.show_logging_lines()

    def packet_tracer(self, in_if, proto, src, sport, dst, dport, detailed=False):
        """``packet-tracer input ...``: (allowed, text); changes nothing."""
        from cbac.dataplane.trace import packet_tracer
        return packet_tracer(self.router, in_if, proto, src, sport, dst, dport, detailed=detailed)

    def show_cbac_fastpath(self) -> str:
        """``show cbac fastpath`` (cbac extension): the kernel fast path."""
        if self.offloader is None:
            return ("Kernel fast path: not loaded (%s)" % (
                "no cbac fastpath offload" if not self.model.fastpath_offload
                else self.offload_reason or "not started"))
        return self.offloader.show()

    def start_offload(self) -> None:
        """Load the kernel fast path on the started ports (one log line
        when it cannot be)."""
        from cbac.dataplane.flowoffload import start_offload
        if self.offloader is not None or self.sessions is None:
            return
        if os.environ.get("CBAC_OFFLOAD", "1") == "0":
            self.offload_reason = "CBAC_OFFLOAD=0 in the environment"
            log.info("fast path: kernel offload off (CBAC_OFFLOAD=0)")
            return
        self.offloader = start_offload(self.router, self.sessions, self.clock, self.model)
        if self.offloader is None:
            self.offload_reason = "unavailable: see the log"

    def start_continuity(self, state_dir=None, restore=True, state=None):
        """Restore the sessions and translations saved in ``state_dir``
        and journal their changes from now on (docs/continuity.md).  Call
        before the router starts forwarding."""
        if self.sessions is None or self.continuity is not None:
            return self.continuity
        c = None
        try:
            from cbac.continuity.restart import Continuity
            c = Continuity(self.sessions, self.nat, self.clock, state_dir or self.state_dir)
            c.start(restore=restore, state=state)
        except Exception:
            log.failure("continuity: start failed; running without saved state")
            if c is not None:
                c.detach()
            return None
        self.continuity = c
        return c

    def start_redundancy(self, reactor, notify=True):
        """``cbac redundancy``: the sync link and keepalived's notify
        socket; the router starts only when keepalived says MASTER.
        Returns the controller."""
        from cbac.continuity.sync import Redundancy
        from cbac.continuity.journal import load
        red = self.model.redundancy
        local = str(self.model.interfaces[red.interface].address.ip)
        ctl = Redundancy(self, red, reactor, local)
        self.redundancy = ctl
        ctl.start(initial=load(self.state_dir) if self.state_dir else None)
        if self.state_dir:
            # for keepalived's health check (kill -0 $(cat redundancy.pid))
            try:
                with open(os.path.join(self.state_dir, "redundancy.pid"), "w") as f:
                    f.write("%d\n" % os.getpid())
            except OSError as e:
                log.error("redundancy: cannot write the pid file: {e}", e=e)
        if notify and self.state_dir:
            from cbac.continuity.vrrp import NotifyListener, read_state
            ctl.notify = NotifyListener(reactor, self.state_dir, ctl.set_role)
            ctl.notify.start()
            last = read_state(self.state_dir)
            if last is not None:
                log.info("redundancy: keepalived's last word was {role}", role=last)
                ctl.set_role(last)
        return ctl

    def show_redundancy(self) -> str:
        """``show redundancy`` (cbac extension)."""
        if self.redundancy is None:
            return "Redundancy is not configured (cbac redundancy peer ...)"
        return self.redundancy.show()

    def stop_continuity(self, clean=True) -> None:
        if self.continuity is not None:
            self.continuity.stop(clean=clean)
            self.continuity = None

    def stop_offload(self) -> None:
        if self.offloader is not None:
            self.offloader.stop()
            self.offloader = None

    def show_processes_cpu(self) -> str:
        from cbac.dataplane.show import show_engine
        return show_engine(self)

    # -- clear / debug -----------------------------------------------------

    def clear(self, what: str, arg=None) -> str:
        if self.offloader is not None and what in ("ip nat translation", "ip inspect sessions",
                                                   "arp-cache"):
            self.offloader.flush()         # the kernel repeats no stale decision
        if what == "access-list counters":
            if self.acls:
                self.acls.clear_counters(arg)
            return ""
        if what == "ip nat translation":
            if self.nat:
                self.nat.clear()
            return ""
        if what == "ip inspect sessions":
            if self.sessions:
                self.sessions.clear()
            return ""
        if what == "zone-pair inspect sessions":
            if self.sessions:
                from cbac.inspect import zones
                zones.clear_sessions(self.sessions, arg)
            return ""
        if what == "arp-cache":
            self.router.arp.clear()
            return ""
        if what == "counters":
            r = self.router
            if arg is not None:             # clear counters IFNAME
                from cbac.config.parser import normalize_interface
                ri = r.interfaces.get(normalize_interface(arg))
                if ri is None:
                    return False, "% Invalid interface " + arg
                for reason, n in ri.drops.items():
                    r.drops[reason] = max(0, r.drops.get(reason, 0) - n)
                ri.port.counters.reset()
                ri.drops.clear()
                r.counters_cleared_if = dict(getattr(r, "counters_cleared_if", {}),
                                             **{ri.name: self.clock.seconds()})
                return ""
            for ri in r.interfaces.values():
                ri.port.counters.reset()
                ri.drops.clear()
            r.drops.clear()
            r.arp.dropped = 0
            r.counters_cleared = self.clock.seconds()
            r.counters_cleared_if = {}
            return ""
        if what == "ip inspect statistics":
            if self.sessions:
                self.sessions.stats.clear()
                self.sessions.stats.peak = len(self.sessions.sessions)
            return ""
        if what == "ip nat statistics":
            if self.nat:
                self.nat.clear_statistics()
            return ""
        if what == "logging":
            if self.log_observers is not None:
                self.log_observers.clear()
            return ""
        return "% Invalid input"

    _DEBUG_NAMES = {
        "smtp": "INSPECT SMTP Inspection", "ftp": "INSPECT FTP Inspection",
        "http": "INSPECT HTTP Inspection", "tcp": "INSPECT TCP Inspection",
        "udp": "INSPECT UDP Inspection", "icmp": "INSPECT ICMP Inspection",
        "events": "INSPECT special events", "timers": "INSPECT Timers",
        "detailed": "INSPECT detailed", "object-creation": "INSPECT Object Creations",
        "object-deletion": "INSPECT Object Deletions", "ip nat": "IP NAT",
        "ip packet": "IP packet",
        "ip ssh": "Incoming ssh",
    }

    def debug(self, category: str, on: bool) -> str:
        name = self._DEBUG_NAMES.get(category)
        if name is None:
            return "% Invalid input"
        ios.debugging.set(category, on)
        if on and self.offloader is not None:
            self.offloader.flush()         # debugged packets must reach Python
        return "%s debugging is %s" % (name, "on" if on else "off")

    def undebug_all(self) -> str:
        ios.debugging.clear()
        return "All possible debugging has been turned off"

    def show_debugging(self) -> str:
        if not ios.debugging.enabled:
            return ""
        lines = ["INSPECT:"]
        for c in sorted(ios.debugging.enabled):
            lines.append("  %s debugging is on" % self._DEBUG_NAMES.get(c, c))
        return "\n".join(lines)

    # -- configuration -----------------------------------------------------

    def copy_running_startup(self) -> str:
        from cbac.config.render import render
        if not self.config_path:
            return "% No startup-config file"
        text = render(self.model)
        # Never save what would not load: the saved text goes through the
        # same parser and checker as a start or a reload.
        from cbac.config.check import check
        from cbac.config.parser import parse_config
        saved, diags = parse_config(text, self.config_path)
        errors = [d for d in list(diags) + list(check(saved, filename=self.config_path))
                  if d.is_error]
        if errors:
            return "\n".join(["% The running configuration would not load; not saved:"]
                             + [d.format() for d in errors])
        tmp = self.config_path + ".tmp"
        backup = self.config_path + ".bak"
        try:
            # 0600: the file holds the secrets' hashes and maybe passwords
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(self.config_path):
                try:
                    os.replace(self.config_path, backup)
                    os.chmod(backup, 0o600)
                except OSError:
                    pass
            os.replace(tmp, self.config_path)
        except OSError as e:
            return "%% Error writing %s (%s)" % (self.config_path, e.strerror)
        return "Building configuration...\n[OK]"

    def configure_replace(self, path: str):
        """Parse and check ``path``; if it has no errors, build everything it
        asks for off to the side and swap it in at once, without dropping
        established sessions.  All or nothing: on any failure (errors in
        the file, MemoryError or any other exception while building) the
        running configuration, the engines and the sessions are untouched.
        Returns (ok, text); with a real reactor, a Deferred firing with it:
        the file is parsed and the new tables are built in a thread, so a
        large configuration does not stall forwarding (the reactor keeps
        running between the build thread's GIL slices; no full garbage
        collection during the build: :func:`_gc_quiet_begin`), and only the
        swap runs in the reactor thread."""
        if hasattr(self.clock, "getThreadPool") and hasattr(self.clock, "callFromThread"):
            from twisted.internet import defer, threads
            if self._reload_lock is None:
                self._reload_lock = defer.DeferredLock()   # one reload at a time

            def build():
                quiet = _gc_quiet_begin()
                d = threads.deferToThreadPool(
                    self.clock, self.clock.getThreadPool(), self._build_from_file,
                    path).addCallback(self._finish_replace)
                return d.addBoth(_gc_quiet_end, quiet)
            return self._reload_lock.run(build)
        return self._finish_replace(self._build_from_file(path))

    _reload_lock = None

    def _build_from_file(self, path):
        """-> (staged or None, text).  Touches nothing that runs."""
        from cbac.config.loader import load_bytes
        try:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                return None, "%% Error opening %s (%s)" % (path, e.strerror)
            new, diags = load_bytes(path, data, self.port_overrides)
            self.remember_source(new, data)
            from cbac.config.errors import log_lines
            errors = [d for d in diags if d.severity == "error"]
            text = "\n".join(log_lines(path, diags))
            if errors:
                return None, (text + "\n" if text else "") + \
                    "%% Configuration has %d errors; the running configuration is unchanged" \
                    % len(errors)
            return self.stage(new), text
        except MemoryError:
            return None, ("% Not enough memory to build the new configuration; "
                          "the running configuration is unchanged")
        except Exception as e:
            log.failure("configure replace: building {path} failed", path=path)
            return None, ("%% Internal error building the new configuration (%s: %s); "
                          "the running configuration is unchanged" % (type(e).__name__, e))

    def _finish_replace(self, result):
        staged, text = result
        if staged is None:
            return False, text
        t0 = time.perf_counter()
        self.commit(staged)
        self.last_swap_ms = (time.perf_counter() - t0) * 1000.0
        return True, (text + "\n" if text else "") + \
            "The replace operation was completed successfully"

    def reload_config(self):
        if not self.config_path:
            return False, "% No startup-config file"
        return self.configure_replace(self.config_path)

    #: how long the last swap of a configuration took (ms)
    last_swap_ms = 0.0

    def stage(self, new):
        """Build everything ``new`` needs without touching the running
        state: compiled ACLs, NAT statics/rules/pools, interfaces and the
        routing table.  Raises (MemoryError included) with nothing
        changed.  Returns what :meth:`commit` installs."""
        acl_lists = self.acls.prepare(new) if self.acls is not None else None
        view = None
        if acl_lists is not None:
            from cbac.acl import AclSet

            class _Lists:
                get = AclSet.get

                def __init__(self, lists):
                    self.lists = lists
            view = _Lists(acl_lists)
        nat_plan = self.nat.prepare(new) if self.nat is not None else None
        router_plan = self.router.prepare_config(new, acls=view)
        from cbac.inspect.zones import engine_model
        zone_plan = (engine_model(new), self.zones.prepare(new))
        return (new, acl_lists, nat_plan, router_plan, zone_plan)

    def commit(self, staged) -> None:
        """Swap in what :meth:`stage` built: assignments only, in the
        reactor thread, so no packet sees half of it."""
        new, acl_lists, nat_plan, router_plan, (engine_model, zone_plan) = staged
        self.model = new
        if self.offloader is not None:
            # a changed ACL, NAT rule or route may change a flow's verdict:
            # every session goes back to Python (and may be offloaded again)
            self.offloader.flush()
            self.offloader.set_enabled(new.fastpath_offload)
        if acl_lists is not None:
            self.acls.lists = acl_lists
        if nat_plan is not None:
            self.nat.commit(nat_plan)
        if self.sessions is not None:
            self.sessions.reload(engine_model)
        self.zones.commit(zone_plan)
        self.router.commit_config(router_plan)
        if self.log_observers is not None:
            try:
                self.log_observers.configure(new)
            except Exception:
                log.failure("logging configuration failed")
        for cb in self.on_apply:
            try:
                cb(new)
            except Exception:
                log.failure("configuration listener failed")
        log.info("configuration applied")

    def apply(self, new) -> None:
        """Install a validated configuration: ACLs and NAT rules are rebuilt,
        the session table keeps its sessions, the router keeps ARP.  All or
        nothing: if building raises, nothing has changed."""
        self.commit(self.stage(new))

    #: (model, source text) of the running configuration when it came from a file
    _config_source = None

    def config_source(self) -> str:
        """The running configuration's text for the management process:
        the file it was read from (as read), or rendered when it was
        installed otherwise."""
        src = self._config_source
        if src is not None and src[0] is self.model:
            return src[1]
        from cbac.config.render import render
        return render(self.model)

    def remember_source(self, model, data) -> None:
        if isinstance(data, bytes):
            data = data.decode("utf-8-sig", "replace")
        self._config_source = (model, data)

    def manhole_namespace(self) -> dict:
        return {"appliance": self, "router": self.router, "sessions": self.sessions,
                "config": self.model, "acls": self.acls, "nat": self.nat}


def _gc_quiet_begin():
    """Before a threaded build: no full (generation 2) collection may start,
    so the build's allocations set off no pass over the whole heap while
    the reactor waits for the GIL (40-260 ms before;
    docs/performance.md, "The reactor during a large reload").  The GIL
    switch interval drops to 1 ms so the reactor waits less for the build."""
    import gc
    old = gc.get_threshold()
    gc.set_threshold(old[0], old[1], 1 << 30)
    sw = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    return old, sw


def _gc_quiet_end(result, quiet):
    """After the swap or a failed build: thresholds and switch interval
    restored.  (Not ``gc.freeze()``: a session that is part of a reference
    cycle (one with an application inspector or pinholes may be) would,
    frozen for good, never be freed after it ends.)"""
    import gc
    old, sw = quiet
    gc.set_threshold(*old)
    sys.setswitchinterval(sw)
    return result


class RouterService(service.Service):
    """Starts the data plane and, when ``inband`` is set, the management
    TUN that serves the console on the router's own addresses."""

    def __init__(self, appliance, reactor=None, inband=False):
        self.appliance = appliance
        self.reactor = reactor
        self.inband = inband
        self.tun = None
        self._tls_ports = {}

    def startService(self):
        service.Service.startService(self)
        router = self.appliance.router
        if getattr(self.appliance.model, "redundancy", None) is not None \
                and self.appliance.sessions is not None:
            # the pair: keepalived's MASTER starts the router (sync.py)
            self.appliance.start_redundancy(self.reactor)
        else:
            if self.appliance.state_dir:
                self.appliance.start_continuity()
            router.start()
            self.appliance.start_offload()
        if self.inband:
            self._start_tun(router)
        ios.message("FW", 6, "INIT", "Firewall inspection startup completed; beginning operation.")

    def _start_tun(self, router):
        from cbac.dataplane.tun import ManagementTun, TunError
        addrs = sorted({str(ri.model.address.ip) for ri in router.interfaces.values()
                        if ri.model.address is not None and not ri.shutdown})
        tun = ManagementTun(self.reactor, addresses=addrs, deliver=router.send_local)
        try:
            tun.start()
        except (OSError, TunError) as e:
            log.error("in-band console unavailable: {error}", error=e)
            return
        self.tun = tun
        router.local_services[(6, self.appliance.model.ssh.port)] = tun.write
        self.appliance.inband_addresses = addrs
        obs = getattr(self.appliance, "log_observers", None)
        if obs is not None:
            obs.source_for = self._syslog_source

    #: Local TCP ports of TLS syslog connections (one per collector; the
    #: data plane hands segments to these ports to the TUN).
    SYSLOG_TLS_PORTS = range(61514, 61530)

    def _syslog_source(self, address, transport):
        """The router's own address toward a syslog host: the address of
        the egress interface (IOS's default ``logging source-interface``).
        Bound to it, the daemon's socket is routed by the kernel into the
        management TUN (policy rule ``from ADDR``) and leaves through the
        data plane; ACLs and inspection do not see it, like IOS's own
        traffic.  TLS: a fixed local port that the data plane hands back
        to the TUN."""
        from cbac.packet.view import ip_int
        router = self.appliance.router
        if self.tun is None:
            return None
        hop = router.routes.lookup(ip_int(address))
        if hop is None:
            return None
        ri = router.interfaces.get(hop[0])
        if ri is None or ri.model.address is None:
            return None
        src = str(ri.model.address.ip)
        if src not in self.tun.addresses:
            return None
        if transport != "tls":
            return (src, 0)
        port = self._tls_ports.get(address)
        if port is None:
            free = [p for p in self.SYSLOG_TLS_PORTS
                    if p not in self._tls_ports.values() and (6, p) not in router.local_services]
            if not free:
                return None
            port = self._tls_ports[address] = free[0]
            router.local_services[(6, port)] = self.tun.write
        return (src, port)

    def stopService(self):
        service.Service.stopService(self)
        if self.tun is not None:
            self.tun.stop()
        self.appliance.stop_offload()
        if self.appliance.redundancy is not None:
            self.appliance.redundancy.stop()
            n = getattr(self.appliance.redundancy, "notify", None)
            if n is not None:
                n.stop()
        self.appliance.router.stop()
        self.appliance.stop_continuity(clean=True)


def makeApplianceService(model, options):
    """Build the whole appliance as a twisted MultiService."""
    from twisted.internet import reactor
    from cbac.dataplane.linux import LinuxPort
    bindings = {b.interface: b.device for b in model.ports.values()}
    bindings.update(dict(options.get("ports", {})))
    ports = {}
    for ifname, device in bindings.items():
        ports[ifname] = LinuxPort(ifname, device, reactor)
    appliance = Appliance(model, reactor, ports, config_path=options.get("config"),
                          state_dir=options.get("state-dir"))
    appliance.port_overrides = dict(options.get("ports", {}))
    top = service.MultiService()
    # first to start, last to stop: the ports are taken from the kernel
    # (cbac.dataplane.claim) before the router opens them, and given back after
    from cbac.dataplane.claim import make_service as claim_ports
    claim_ports(bindings, options.get("state-dir"),
                claim_ports=not options.get("no-claim-ports")).setServiceParent(top)
    _add_link_monitor(ports, reactor, top)
    privsep = not options.get("no-privsep")
    if options.get("config_text") is not None:
        appliance.remember_source(model, options["config_text"])
    if not privsep:
        _QuietConch(appliance).setServiceParent(top)
    RouterService(appliance, reactor, inband=bool(ports)).setServiceParent(top)
    _add_logging(appliance, model, reactor, top, remote_syslog=privsep)
    if privsep:
        _add_mgmt(appliance, model, options, reactor, top)
    else:
        _add_console(appliance, model, options, reactor, top)
    if privsep:
        _add_engine_metrics(appliance, reactor, top)
    else:
        _add_metrics(appliance, reactor, top)
    _install_sighup(appliance, reactor)
    return top


def _add_link_monitor(ports, reactor, top):
    """Netlink link events tell the ports at once when a device goes down
    or comes back (they also poll once a second)."""
    from cbac.dataplane.netlink import LinkMonitor, monitor_service
    monitor = LinkMonitor(reactor)
    for port in ports.values():
        monitor.watch(port.device, port.link_event)
    monitor_service(monitor).setServiceParent(top)


def _add_metrics(appliance, reactor, top):
    """The Prometheus endpoint (``cbac metrics listen``; none by default)."""
    from cbac.metrics import MetricsService
    svc = MetricsService(appliance, reactor)
    svc.setServiceParent(top)
    appliance.on_apply.append(svc.configure)


def _add_engine_metrics(appliance, reactor, top):
    """Two processes: the management process runs the ``cbac metrics
    listen`` listeners and asks the engine for the numbers over AMP."""
    from cbac.metrics import EngineMetrics
    appliance.metrics_source = EngineMetrics(appliance, reactor)
    appliance.metrics_source.setServiceParent(top)


class _QuietConch(service.Service):
    """conch's per-connection chatter leaves twistd's log (``debug ip ssh``
    shows it as debug lines); logins and logouts are logged IOS style.  Started
    first: twistd has begun logging when services start."""

    def __init__(self, appliance):
        self.appliance = appliance

    def startService(self):
        service.Service.startService(self)
        from cbac.console.ssh import quiet_conch_log
        quiet_conch_log(keep=[self.appliance.log_observers])


def _add_logging(appliance, model, reactor, top, remote_syslog=False):
    """The engine's log destinations (buffer, ``terminal monitor``, file;
    the syslog hosts too with ``--no-privsep``; in two processes the
    management process sends to them: ``remote_syslog``)."""
    from twisted.logger import globalLogPublisher
    from cbac.log.observers import makeLogging
    observers, svc = makeLogging(model, reactor, remote_syslog=remote_syslog)
    appliance.log_observers = observers
    globalLogPublisher.addObserver(observers)
    svc.setServiceParent(top)


def _vty_permits(appliance):
    """``line vty ... access-class ACL in``: a standard ACL on the source."""

    def permits(source: str) -> bool:
        names = [v.access_class for v in appliance.model.vty if v.access_class]
        if not names or appliance.acls is None:
            return True
        return appliance.acls.permits_source(names, source, undefined=True)
    return permits


def _acl_permits(appliance):
    """``login quiet-mode access-class ACL``: does the (standard) ACL permit
    the source?  An undefined ACL permits nobody (IOS: quiet mode blocks
    all logins without a quiet-mode ACL)."""

    def permits(name: str, source: str) -> bool:
        return appliance.acls is not None and \
            appliance.acls.permits_source((name,), source, undefined=False)
    return permits


def _console_endpoints(appliance, model, options):
    endpoints = list(options.get("listen", []))
    # In-band: the router's interface addresses (served through the
    # management TUN, started before this service by RouterService).
    if model.vty is None or all(v.transport_input in ("ssh", "all") for v in model.vty):
        for ifm in model.interfaces.values():
            if ifm.address is not None and not ifm.shutdown and ifm.name in appliance.router.interfaces:
                endpoints.append("tcp:%d:interface=%s" % (model.ssh.port, ifm.address.ip))
    return endpoints


def _add_mgmt(appliance, model, options, reactor, top):
    """Two processes (the default): the console runs in the management
    process, spawned and supervised by :class:`cbac.privsep.engine.MgmtSupervisor`
    (started after RouterService: the in-band addresses exist then)."""
    from cbac.privsep.engine import MgmtSupervisor
    sup = MgmtSupervisor(appliance, reactor, _console_endpoints(appliance, model, options),
                         options.get("state-dir") or "/var/lib/cbac",
                         user=options.get("mgmt-user") or "cbac",
                         manhole=bool(options.get("manhole")))
    sup.setName("mgmt")
    sup.setServiceParent(top)


def _add_console(appliance, model, options, reactor, top):
    from cbac.console.ssh import makeConsoleService
    endpoints = _console_endpoints(appliance, model, options)
    state_dir = options.get("state-dir") or "/var/lib/cbac"
    svc = makeConsoleService(appliance, model, state_dir, endpoints, reactor=reactor,
                             vty_permits=_vty_permits(appliance),
                             acl_permits=_acl_permits(appliance),
                             manhole=bool(options.get("manhole")))
    svc.setServiceParent(top)


def _install_sighup(appliance, reactor):
    if not hasattr(signal, "SIGHUP"):
        return

    def report(result):
        ok, text = result
        for line in text.splitlines():
            (log.info if ok else log.error)("reload: {line}", line=line)

    def reload():
        from twisted.internet import defer
        defer.maybeDeferred(appliance.reload_config).addCallback(report).addErrback(
            lambda f: log.failure("reload failed", f))

    def handler(signum, frame):
        reactor.callFromThread(reload)

    reactor.callWhenRunning(signal.signal, signal.SIGHUP, handler)


__all__ = ["Appliance", "makeApplianceService"]
