"""``twistd cbac``: command-line options and the service maker.

    twistd -n cbac -c /etc/cbac/router.conf
    twistd -n cbac -c etc/router.conf --check        # like nginx -t
    twistd -n cbac --port Ethernet2/0=eth1 --port Ethernet2/1=eth2

The configuration is read and checked in :meth:`Options.postOptions`, before
twistd starts logging or the reactor: a configuration with errors never
starts.  Errors and warnings are printed compiler-style::

    etc/router.conf:140: warning: cbac port: network device outside does not exist
        cbac port Ethernet2/0 outside
    etc/router.conf: harmless lines, not acted on:
        5 lines of system settings (...), not acted on (first: line 7)
    etc/router.conf: 0 errors, 18 warnings; configuration OK
"""

from __future__ import annotations

import os
import sys

from twisted.python import usage

from cbac.config.errors import WARNING, Diagnostic, errors, log_lines, report, summary
from cbac.config.loader import load_bytes
from cbac.config.parser import normalize_interface


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run the cbac firewall appliance: a stateful firewall configured "
                "in Cisco IOS language (ip inspect, access-list, ip nat) that "
                "forwards, inspects, filters and translates between Linux network "
                "devices, managed over SSH with IOS show/clear/debug commands.")

    optFlags = [
        ["check", None,
         "Read and check the configuration, print every error and warning "
         "with its line, and exit 0 (no errors) or 1; starts nothing."],
        ["verbose", "v",
         "With --check: list every harmless not-acted-on line too, instead of a "
         "count per kind."],
        ["manhole", None,
         "Allow the console's 'manhole' command: a Python prompt inside the "
         "running process, for privilege 15 after the enable secret is entered "
         "again. Off by default."],
        ["no-privsep", None,
         "One process: run the SSH console (and manhole) inside the engine, as "
         "the engine's user, instead of in the unprivileged management process "
         "(for development and tests; docs/architecture.md, 'Two processes')."],
        ["no-claim-ports", None,
         "Leave the data ports as they are: do not hide them from the kernel "
         "(nftables netdev drop chain), remove their kernel addresses, turn IPv6 "
         "off or set offloads; only warn about what is missing (docs/appliance.md)."],
    ]
    optParameters = [
        ["config", "c", "/etc/cbac/router.conf", "IOS configuration file."],
        ["mgmt-user", None, "cbac",
         "User of the management process (SSH console, manhole); when it does "
         "not exist, nobody (65534), with a warning."],
        ["state-dir", None, "/var/lib/cbac",
         "Directory for state (SSH host keys, the journal of sessions and NAT "
         "translations that a restart restores: docs/continuity.md)."],
    ]

    compData = usage.Completions(
        optActions={"config": usage.CompleteFiles("*.conf"),
                    "state-dir": usage.CompleteDirs()})

    #: where --check output and start-up errors go (tests replace them)
    stdout = None
    stderr = None

    def __init__(self):
        usage.Options.__init__(self)
        self["port"] = {}
        self["ports"] = self["port"]     # alias read by cbac.app
        self["listen"] = []
        self["router"] = None
        self["diagnostics"] = []

    def opt_port(self, value):
        """Bind an IOS interface to a Linux device: IOSNAME=DEVICE (repeatable; overrides 'cbac port')."""
        name, sep, dev = value.partition("=")
        if not sep or not name or not dev:
            raise usage.UsageError("--port takes IOSNAME=DEVICE, e.g. Ethernet2/0=eth1")
        self["port"][normalize_interface(name)] = dev

    def opt_listen(self, endpoint):
        """Extra SSH console listener (Twisted endpoint, e.g. tcp:2222:interface=127.0.0.1; repeatable)."""
        self["listen"].append(endpoint)

    def _out(self, name):
        return getattr(self, name) or getattr(sys, name)

    def postOptions(self):
        """Read and check the configuration.  ``--check`` reports and exits
        0 or 1 (like ``nginx -t``); otherwise a configuration that cannot be
        read or has errors is a usage.UsageError (twistd prints it and exits
        1), its errors listed on stderr first.  A configuration with the
        packaged placeholder secrets gets generated passwords first
        (:mod:`cbac.firstpass`; not with ``--check``)."""
        path = self["config"]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            msg = "%s: error: cannot read configuration: %s" % (path, e.strerror or e)
            if self["check"]:
                out = self._out("stdout")
                out.write(msg + "\n")
                out.flush()
                raise SystemExit(1)
            raise usage.UsageError(msg)
        first = []
        from cbac import firstpass
        if firstpass.has_placeholder(data):
            if self["check"]:
                first.append(Diagnostic(path, 0, WARNING,
                                        "%s: the first start replaces it with generated "
                                        "passwords (written once to %s)" % (
                                            firstpass.PLACEHOLDER,
                                            os.path.join(self["state-dir"], firstpass.FILENAME))))
            else:
                try:
                    data, where, what = firstpass.generate(path, data, self["state-dir"])
                except (firstpass.FirstPasswordError, UnicodeError) as e:
                    raise usage.UsageError("%s: error: %s; not starting" % (path, e))
                self["first_password"] = (where, what)
                err = self._out("stderr")
                err.write("%s: first start: generated passwords for %s, stored hashed; "
                          "written once to %s\n" % (path, ", ".join(what), where))
                err.flush()
        router, diags = load_bytes(path, data, self["port"], strict=not self["check"])
        diags += first
        diags += weak_secret_warnings(router, path)
        diags.sort(key=lambda d: d.line)
        self["router"] = router
        self["config_text"] = data
        self["diagnostics"] = diags
        if self["check"]:
            out = self._out("stdout")
            out.write(report(path, diags, verbose=self["verbose"]))
            out.flush()
            raise SystemExit(1 if errors(diags) else 0)
        if errors(diags):
            err = self._out("stderr")
            err.write("".join(d.format() + "\n" for d in errors(diags)))
            err.flush()
            raise usage.UsageError(summary(path, diags))


def weak_secret_warnings(router, path) -> list:
    """Warnings for console passwords a scan would guess (the shipped
    example's ``cisco`` first): the console answers in-band on every
    interface address, so such a password is an open door."""
    from cbac.config.passwords import well_known
    out = []
    found = [("enable secret", router.enable_secret, 0),
             ("enable password", router.enable_password, 0)]
    found += [("username %s" % u.name, u.secret or u.password, u.lineno)
              for u in router.users.values()]
    for what, secret, line in found:
        if secret is None:
            continue
        word = well_known(secret)
        if word is not None:
            out.append(Diagnostic(path, line, WARNING,
                                  "%s: the password is the well-known '%s' (the shipped example's "
                                  "is 'cisco'); anyone who reaches the console (in-band on every "
                                  "interface address) can guess it: set your own secret" % (what, word)))
    return out


def makeService(options):
    """Log the configuration warnings, then build the appliance service."""
    from twisted.logger import Logger

    log = Logger(namespace="cbac.config")
    diags = [d for d in options["diagnostics"] if not d.is_error]
    for line in log_lines(options["config"], diags):
        log.warn("{diagnostic}", diagnostic=line)
    if options.get("first_password"):
        where, what = options["first_password"]
        log.warn("first start: generated passwords for {what}; stored hashed (type 9) in "
                 "{config}, written once in clear to {where} (root only): log in with them, "
                 "set your own and delete that file",
                 what=", ".join(what), config=options["config"], where=where)
    from cbac.app import makeApplianceService
    return makeApplianceService(options["router"], options)
