"""The IOS exec command table of the cbac console.

Every command is one entry of :data:`COMMANDS`:
``(syntax, handler, help, privilege, pipe)``; :func:`build_tree` turns the
table into a :class:`cbac.console.cli.CommandTree`.  To add a command,
append one line, e.g.::

    ("show ip inspect statistics", lambda c, a: c.app.show_ip_inspect("statistics"),
     "Inspection statistics", 1, True),

``help`` is the help string of the last keyword (or a tuple with one per
keyword); intermediate keywords get their help from :data:`KEYWORD_HELP`.
Privilege levels follow IOS: 1 (user EXEC) for ``show`` (except the
configurations), 15 (privileged EXEC, after ``enable``) for ``clear``,
``debug``, ``copy``, ``write``, ``configure``, ``reload`` and ``manhole``.
"""

from __future__ import annotations

from twisted.internet import defer

from cbac.console.cli import CommandTree, Result
from cbac.log import ios

#: (the categories of ``debug ip inspect X``, help)
DEBUG_INSPECT = (
    ("detailed", "Inspection Detailed Debug"),
    ("events", "Inspection events"),
    ("ftp", "FTP Inspection"),
    ("http", "HTTP Inspection"),
    ("icmp", "ICMP Inspection"),
    ("object-creation", "Inspection Object Creation"),
    ("object-deletion", "Inspection Object Deletion"),
    ("smtp", "SMTP Inspection"),
    ("tcp", "TCP Inspection"),
    ("timers", "Inspection Timers"),
    ("udp", "UDP Inspection"),
)

KEYWORD_HELP = {
    "show": "Show running system information",
    "show ip": "IP information",
    "show login": "Display login information (login block-for, quiet mode)",
    "show ip inspect": "CBAC (Context Based Access Control) information",
    "show ip inspect sessions": "Inspection sessions (connections)",
    "show ip inspect name": "Inspection name",
    "show ip interface": "IP interface status and configuration",
    "show ip nat": "IP NAT information",
    "show ip nat translations": "Translation entries",
    "show processes": "Active process statistics",
    "show access-lists": "List access lists",
    "show zone": "Zone information",
    "show zone-pair": "Zone pair information",
    "show policy-map": "Show QoS Policy Map",
    "show policy-map type": "type of policy-map",
    "show policy-map type inspect": "inspect policy-map",
    "clear zone-pair": "Clear zone-pair information",
    "show ip access-lists": "List IP access lists",
    "show interfaces": "Interface status and configuration",
    "clear": "Reset functions",
    "clear access-list": "Clear access list statistical information",
    "clear access-list counters": "Clear access list counters",
    "clear ip": "IP",
    "clear ip access-list": "Clear access list statistical information",
    "clear ip access-list counters": "Clear access list counters",
    "clear ip nat": "Clear NAT",
    "clear ip nat translation": "Clear dynamic translation",
    "clear ip inspect": "CBAC (Context Based Access Control)",
    "debug": "Debugging functions (see also 'undebug')",
    "debug ip": "IP information",
    "debug ip inspect": "Context-based Access Control",
    "undebug": "Disable debugging functions (see also 'debug')",
    "undebug ip": "IP information",
    "undebug ip inspect": "Context-based Access Control",
    "no": "Negate a command or set its defaults",
    "no debug": "Disable debugging functions",
    "no debug ip": "IP information",
    "no debug ip inspect": "Context-based Access Control",
    "terminal": "Set terminal line parameters",
    "terminal length": "Set number of lines on a screen",
    "terminal width": "Set width of the display terminal",
    "terminal no": "Negate a command or set its defaults",
    "copy": "Copy from one file to another",
    "copy running-config": "Copy from current system configuration",
    "write": "Write running configuration to memory, network, or terminal",
    "configure": "Enter configuration mode",
    "configure replace": "Replace the running-config with a new config file",
    "configure replace WORD": "Configuration file to replace the running-config",
    "packet-tracer": "Trace a packet through the firewall (nothing is sent)",
    "packet-tracer input": "Input interface",
    "packet-tracer input WORD": "Interface name, e.g. Ethernet2/0",
    "packet-tracer input WORD tcp": "TCP",
    "packet-tracer input WORD udp": "UDP",
    "packet-tracer input WORD icmp": "ICMP",
    "packet-tracer input WORD tcp A.B.C.D": "Source address",
    "packet-tracer input WORD udp A.B.C.D": "Source address",
    "packet-tracer input WORD icmp A.B.C.D": "Source address",
    "packet-tracer input WORD tcp A.B.C.D WORD": "Source port (number or keyword)",
    "packet-tracer input WORD udp A.B.C.D WORD": "Source port (number or keyword)",
    "packet-tracer input WORD icmp A.B.C.D <0-255>": "ICMP type",
    "packet-tracer input WORD icmp A.B.C.D <0-255> <0-255>": "ICMP code",
    "packet-tracer input WORD tcp A.B.C.D WORD A.B.C.D": "Destination address",
    "packet-tracer input WORD udp A.B.C.D WORD A.B.C.D": "Destination address",
    "reload": "Re-read the configuration (cbac has no cold restart)",
}


def _enable(ctx, args):
    if ctx.privilege >= 15:
        return None
    if not ctx.interactive:
        return Result("% Password required, but none entered; "
                      "use a privilege 15 user for exec requests", 1)

    @defer.inlineCallbacks
    def ask():
        for _ in range(3):
            pw = yield ctx.session.ask("Password: ", echo=False)
            if pw is None:
                return Result("", 1)
            ok = yield defer.maybeDeferred(ctx.app.check_enable, pw)
            if ok:
                ctx.privilege = 15
                return None
        ios.message("SYS", 5, "PRIV_AUTH_FAIL",
                    "Authentication to Privilege level 15 failed by %s on %s (%s)"
                    % (ctx.user, ctx.line, ctx.peer))
        return Result("% Bad secrets\n", 1)
    return ask()


def _disable(ctx, args):
    ctx.privilege = 1


def _exit(ctx, args):
    if ctx.interactive:
        ctx.session.logout()


def _manhole(ctx, args):
    """The Python prompt: only when cbac was started with ``--manhole``
    (the session then has a namespace factory), only at privilege 15, and
    only after the enable secret is entered again."""
    if not ctx.interactive:
        return Result("% manhole needs an interactive session (ssh -t)", 1)
    if getattr(ctx.session, "namespace_factory", None) is None:
        return Result("% The manhole is disabled (start cbac with --manhole)", 1)

    @defer.inlineCallbacks
    def ask():
        pw = yield ctx.session.ask("Enable secret: ", echo=False)
        if pw is None:
            return Result("", 1)
        ok = yield defer.maybeDeferred(ctx.app.check_enable, pw)
        if not ok:
            ios.message("SYS", 5, "PRIV_AUTH_FAIL",
                        "Authentication to the manhole failed by %s on %s (%s)"
                        % (ctx.user, ctx.line, ctx.peer))
            return Result("% Bad secrets", 1)
        ios.message("SYS", 5, "MANHOLE", "User %s entered the Python manhole on %s (%s)"
                    % (ctx.user, ctx.line, ctx.peer))
        ctx.session.enter_manhole()
    return ask()


def _terminal_length(ctx, args):
    if ctx.interactive:
        ctx.session.set_length(args[0])


def _terminal_width(ctx, args):
    if ctx.interactive:
        ctx.session.terminal_width = args[0] or 80


def _terminal_monitor(on):
    def h(ctx, args):
        if ctx.interactive:
            ctx.session.set_monitor(on)
        elif on:
            return Result("% terminal monitor needs an interactive session", 1)
    return h


def _show_terminal(ctx, args):
    s = ctx.session if ctx.interactive else None
    length = s.terminal_length if s else 0
    width = s.terminal_width if s else 80
    mon = s.monitor if s else False
    return ("Line %s, Location: \"\", Type: \"\"\n"
            "Length: %d lines, Width: %d columns\n"
            "Capabilities: none\n"
            "Monitor: %s\n"
            "Privilege level: %d, user: %s, from: %s"
            % (ctx.line, length, width, "on" if mon else "off",
               ctx.privilege, ctx.user, ctx.peer))


def _show_history(ctx, args):
    if not ctx.interactive:
        return ""
    return "\n".join("  " + h for h in ctx.session.history)


def _show_users(ctx, args):
    if ctx.console is None:
        return ""
    return ctx.console.show_users(ctx)


def _show_login(ctx, args):
    if ctx.console is None or getattr(ctx.console, "guard", None) is None:
        return "% No SSH console in this context"
    return ctx.console.guard.show()


def _interface_name(ctx, args):
    return "".join(args[0].split()) if args else None


def _copy_run_start(ctx, args):
    d = ctx.ask("Destination filename [startup-config]? ", "startup-config")

    def go(name):
        if name is None:
            return Result("", 1)
        if name != "startup-config":
            return Result("%% Only startup-config is supported, not %r" % name, 1)
        return ctx.app.copy_running_startup()
    return d.addCallback(go)


def _confirmed(question, action):
    def h(ctx, args):
        d = ctx.confirm(question)
        return d.addCallback(lambda yes: action(ctx, args) if yes else Result("", 0))
    return h


def _configured_from(source):
    """Log %SYS-5-CONFIG_I after a successful (ok, text) configuration change."""
    def after(ctx, result):
        if isinstance(result, tuple) and result[0]:
            ios.message("SYS", 5, "CONFIG_I", "Configured from %s by %s on %s (%s)"
                        % (source(ctx), ctx.user, ctx.line, ctx.peer or "exec"))
        return result
    return after


def _configure_replace(force):
    log = _configured_from(lambda c: c._replace_path)

    def run(ctx, args):
        ctx._replace_path = args[0]
        return defer.maybeDeferred(ctx.app.configure_replace, args[0]).addCallback(
            lambda r: log(ctx, r))

    def h(ctx, args):
        if force:
            return run(ctx, args)
        q = ("This will apply all necessary additions and deletions\n"
             "to replace the current running configuration with the\n"
             "contents of the specified configuration file, which is\n"
             "assumed to be a complete configuration, not a partial\n"
             "configuration. Enter Y if you are sure you want to proceed. ? [no]: ")
        d = ctx.confirm(q, default=False)
        return d.addCallback(lambda yes: run(ctx, args) if yes else Result("", 1))
    return h


def _cleared(ctx, text, interface=None):
    if isinstance(text, defer.Deferred):        # the engine answers over AMP
        return text.addCallback(lambda t: _cleared(ctx, t, interface))
    if isinstance(text, tuple) and not text[0]:
        return text
    ios.message("CLEAR", 5, "COUNTERS", "Clear counter on %s by %s on %s (%s)"
                % ("interface " + interface if interface else "all interfaces",
                   ctx.user, ctx.line, ctx.peer or "exec"))
    return text


def _port(proto, word):
    """A port number or an IOS port keyword (``smtp``, ``www``, ``domain``)."""
    from cbac.config import names
    return names.port_number(proto, word)


def _packet_tracer(proto, detailed):
    def h(c, a):
        if proto == "icmp":       # icmp SRC TYPE CODE DST
            in_if, src, itype, code, dst = a
            return c.app.packet_tracer(in_if, "icmp", src, itype, dst, code, detailed=detailed)
        in_if, src, sport, dst, dport = a
        ports = [_port(proto, str(p)) for p in (sport, dport)]
        for word, n in zip((sport, dport), ports):
            if n is None:
                return Result("%% Invalid %s port: %s" % (proto, word), 1)
        return c.app.packet_tracer(in_if, proto, src, ports[0], dst, ports[1], detailed=detailed)
    return h


def _debug(cat, on):
    return lambda c, a: c.app.debug(cat, on)


_P15 = 15

COMMANDS = [
    # -- session -----------------------------------------------------------
    ("enable", _enable, "Turn on privileged commands", 1, False),
    ("disable", _disable, "Turn off privileged commands", 1, False),
    ("exit", _exit, "Exit from the EXEC", 1, False),
    ("logout", _exit, "Exit from the EXEC", 1, False),
    ("quit", _exit, "Exit from the EXEC", 1, False),
    ("terminal length <0-512>", _terminal_length, "Number of lines on screen (0 for no pausing)", 1, False),
    ("terminal width <0-512>", _terminal_width, "Number of characters on a screen line", 1, False),
    ("terminal monitor", _terminal_monitor(True), "Copy debug output to the current terminal line", 1, False),
    ("terminal no monitor", _terminal_monitor(False), "Copy debug output to the current terminal line", 1, False),
    ("manhole", _manhole, "Python shell in the running cbac process", _P15, False),
    # -- show ----------------------------------------------------------------
    ("show version", lambda c, a: c.app.show_version(), "System hardware and software status", 1, True),
    ("show clock", lambda c, a: c.app.show_clock(), "Display the system clock", 1, True),
    ("show running-config", lambda c, a: c.app.show_running_config(), "Current operating configuration", _P15, True),
    ("show startup-config", lambda c, a: c.app.show_startup_config(), "Contents of startup configuration", _P15, True),
    ("show ip inspect all", lambda c, a: c.app.show_ip_inspect("all"), "Inspection all available information", 1, True),
    ("show ip inspect config", lambda c, a: c.app.show_ip_inspect("config"), "Inspection configuration", 1, True),
    ("show ip inspect interfaces", lambda c, a: c.app.show_ip_inspect("interfaces"), "Inspection interfaces", 1, True),
    ("show ip inspect sessions", lambda c, a: c.app.show_ip_inspect("sessions"), "Inspection sessions (connections)", 1, True),
    ("show ip inspect sessions detail", lambda c, a: c.app.show_ip_inspect("sessions detail"), "Detailed information", 1, True),
    ("show ip inspect name WORD", lambda c, a: c.app.show_ip_inspect("name", a[0]), "Name of inspection", 1, True),
    ("show ip inspect statistics", lambda c, a: c.app.show_ip_inspect("statistics"), "Inspection statistics", 1, True),
    ("show zone security", lambda c, a: c.app.show_zone_security(), "Zone security", 1, True),
    ("show zone security WORD", lambda c, a: c.app.show_zone_security(a[0]), "Zone name", 1, True),
    ("show zone-pair security", lambda c, a: c.app.show_zone_pair_security(), "Zone-pair security", 1, True),
    ("show policy-map type inspect zone-pair", lambda c, a: c.app.show_policy_map_zone_pair(),
     "Zone-pair information", 1, True),
    ("show policy-map type inspect zone-pair sessions",
     lambda c, a: c.app.show_policy_map_zone_pair(sessions=True), "Inspect sessions", 1, True),
    ("show policy-map type inspect zone-pair WORD", lambda c, a: c.app.show_policy_map_zone_pair(a[0]),
     "Zone-pair name", 1, True),
    ("show policy-map type inspect zone-pair WORD sessions",
     lambda c, a: c.app.show_policy_map_zone_pair(a[0], sessions=True), "Inspect sessions", 1, True),
    ("show access-lists", lambda c, a: c.app.show_access_lists(), "List access lists", 1, True),
    ("show access-lists <1-2699>", lambda c, a: c.app.show_access_lists(str(a[0])), "ACL number", 1, True),
    ("show access-lists WORD", lambda c, a: c.app.show_access_lists(a[0]), "ACL name", 1, True),
    ("show ip access-lists", lambda c, a: c.app.show_access_lists(), "List IP access lists", 1, True),
    ("show ip access-lists <1-2699>", lambda c, a: c.app.show_access_lists(str(a[0])), "Access list number", 1, True),
    ("show ip access-lists WORD", lambda c, a: c.app.show_access_lists(a[0]), "Access list name", 1, True),
    ("show ip nat translations", lambda c, a: c.app.show_ip_nat_translations(), "Translation entries", 1, True),
    ("show ip nat translations verbose", lambda c, a: c.app.show_ip_nat_translations(verbose=True), "Show extra information", 1, True),
    ("show ip nat statistics", lambda c, a: c.app.show_ip_nat_statistics(), "Translation statistics", 1, True),
    ("show interfaces", lambda c, a: c.app.show_interfaces(), "Interface status and configuration", 1, True),
    ("show interfaces LINE", lambda c, a: c.app.show_interfaces(_interface_name(c, a)), "Interface name, e.g. Ethernet2/0", 1, True),
    ("show ip interface brief", lambda c, a: c.app.show_ip_interface_brief(), "Brief summary of IP status and configuration", 1, True),
    ("show ip route", lambda c, a: c.app.show_ip_route(), "IP routing table", 1, True),
    ("show dhcp lease", lambda c, a: c.app.show_dhcp_lease(), "Show DHCP Addresses leased from a server", 1, True),
    ("show arp", lambda c, a: c.app.show_arp(), "ARP table", 1, True),
    ("show ip arp", lambda c, a: c.app.show_arp(), "IP ARP table", 1, True),
    ("show logging", lambda c, a: c.app.show_logging(), "Show the contents of logging buffers", 1, True),
    ("show processes cpu", lambda c, a: c.app.show_processes_cpu(), "Show CPU use per process", 1, True),
    ("show debugging", lambda c, a: c.app.show_debugging(), "State of each debugging option", 1, True),
    ("show login", _show_login, "Display login information (login block-for, quiet mode)", 1, True),
    ("show cbac fastpath", lambda c, a: c.app.show_cbac_fastpath(), "Kernel fast path (cbac extension)", 1, True),
    ("show redundancy", lambda c, a: c.app.show_redundancy(), "Active/standby pair and state sync (cbac extension)", 1, True),
    ("show privilege", lambda c, a: "Current privilege level is %d" % c.privilege, "Show current privilege level", 1, False),
    ("show terminal", _show_terminal, "Display terminal configuration parameters", 1, True),
    ("show history", _show_history, "Display the session command history", 1, True),
    ("show users", _show_users, "Display information about terminal lines", 1, True),
    ("systat", _show_users, "Display information about terminal lines", 1, True),
    # -- clear ----------------------------------------------------------------
    ("clear access-list counters", lambda c, a: c.app.clear("access-list counters"), "Clear access list counters", _P15, False),
    ("clear access-list counters WORD", lambda c, a: c.app.clear("access-list counters", a[0]), "Access list number or name", _P15, False),
    ("clear ip access-list counters", lambda c, a: c.app.clear("access-list counters"), "Clear access list counters", _P15, False),
    ("clear ip access-list counters WORD", lambda c, a: c.app.clear("access-list counters", a[0]), "Access list number or name", _P15, False),
    ("clear ip nat translation *", lambda c, a: c.app.clear("ip nat translation", "*"), "Delete all dynamic translations", _P15, False),
    ("clear ip inspect statistics", lambda c, a: c.app.clear("ip inspect statistics"),
     "Clear inspection statistics (drops by reason, sessions created)", _P15, False),
    ("clear ip nat statistics", lambda c, a: c.app.clear("ip nat statistics"), "Clear translation statistics", _P15, False),
    ("clear ip inspect sessions", lambda c, a: c.app.clear("ip inspect sessions"), "Clear all inspection sessions", _P15, False),
    ("clear zone-pair inspect sessions", lambda c, a: c.app.clear("zone-pair inspect sessions"),
     "Clear the zone-based firewall's inspection sessions", _P15, False),
    ("clear zone-pair WORD inspect sessions",
     lambda c, a: c.app.clear("zone-pair inspect sessions", a[0]), "Zone-pair name", _P15, False),
    ("clear arp-cache", lambda c, a: c.app.clear("arp-cache"), "Clear the entire ARP cache", _P15, False),
    ("clear counters LINE", _confirmed('Clear "show interface" counters on this interface [confirm]',
                                       lambda c, a: _cleared(c, c.app.clear("counters", "".join(a[0].split())),
                                                             a[0])),
     "Interface name, e.g. Ethernet2/0", _P15, False),
    ("clear counters", _confirmed('Clear "show interface" counters on all interfaces [confirm]',
                                  lambda c, a: _cleared(c, c.app.clear("counters"))),
     "Clear counters on one or all interfaces", _P15, False),
    ("clear logging", _confirmed("Clear logging buffer [confirm]", lambda c, a: c.app.clear("logging")),
     "Clear logging buffer", _P15, False),
    # -- debug ----------------------------------------------------------------
    ("debug ip nat", _debug("ip nat", True), "NAT events", _P15, False),
    ("debug ip packet", _debug("ip packet", True), "General IP debugging and IPSO security transactions", _P15, False),
    ("no debug ip nat", _debug("ip nat", False), "NAT events", _P15, False),
    ("no debug ip packet", _debug("ip packet", False), "General IP debugging", _P15, False),
    ("undebug ip nat", _debug("ip nat", False), "NAT events", _P15, False),
    ("undebug ip packet", _debug("ip packet", False), "General IP debugging", _P15, False),
    ("debug ip ssh", _debug("ip ssh", True), "Incoming ssh connections", _P15, False),
    ("no debug ip ssh", _debug("ip ssh", False), "Incoming ssh connections", _P15, False),
    ("undebug ip ssh", _debug("ip ssh", False), "Incoming ssh connections", _P15, False),
    ("undebug all", lambda c, a: c.app.undebug_all(), "Disable all debugging", _P15, False),
    ("no debug all", lambda c, a: c.app.undebug_all(), "Disable all debugging", _P15, False),
    # -- configuration ----------------------------------------------------------
    ("copy running-config startup-config", _copy_run_start, "Copy to startup configuration", _P15, False),
    ("write", lambda c, a: c.app.copy_running_startup(), None, _P15, False),
    ("write memory", lambda c, a: c.app.copy_running_startup(), "Write to NV memory", _P15, False),
    ("write terminal", lambda c, a: c.app.show_running_config(), "Write to terminal", _P15, True),
    ("configure replace WORD", _configure_replace(False), "Configuration file to replace the running-config", _P15, False),
    ("configure replace WORD force", _configure_replace(True), "Replace the running-config without prompting", _P15, False),
    ("configure terminal", lambda c, a: Result(
        "% cbac has no configuration mode: edit the configuration file, then use\n"
        "% 'configure replace FILE' or 'reload config' (both check it before applying)", 1),
     "Configure from the terminal", _P15, False),
    ("reload config", lambda c, a: defer.maybeDeferred(c.app.reload_config).addCallback(
        lambda r: _configured_from(lambda c: "startup-config")(c, r)),
     "Re-read the startup configuration (cbac)", _P15, False),
]

for _p in ("tcp", "udp"):
    for _d in (False, True):
        COMMANDS.append(("packet-tracer input WORD %s A.B.C.D WORD A.B.C.D WORD%s"
                         % (_p, " detailed" if _d else ""), _packet_tracer(_p, _d),
                         "Dump detailed information" if _d else "Destination port (number or keyword, "
                         "e.g. 25 or smtp)", _P15, True))
for _d in (False, True):
    COMMANDS.append(("packet-tracer input WORD icmp A.B.C.D <0-255> <0-255> A.B.C.D%s"
                     % (" detailed" if _d else ""), _packet_tracer("icmp", _d),
                     "Dump detailed information" if _d else "Destination address", _P15, True))

for _cat, _help in DEBUG_INSPECT:
    COMMANDS.append(("debug ip inspect " + _cat, _debug(_cat, True), _help, _P15, False))
    COMMANDS.append(("no debug ip inspect " + _cat, _debug(_cat, False), _help, _P15, False))
    COMMANDS.append(("undebug ip inspect " + _cat, _debug(_cat, False), _help, _P15, False))


def build_tree(commands=None) -> CommandTree:
    """A fresh command tree from :data:`COMMANDS` (plus ``commands``)."""
    tree = CommandTree()
    for syntax, handler, help, priv, pipe in list(COMMANDS) + list(commands or ()):
        tree.add(syntax, handler, help=help, privilege=priv, pipe=pipe)
    for path, help in KEYWORD_HELP.items():
        try:
            node = tree.root
            for tok in path.split():
                node = node.child(tok)
                if node is None:
                    raise KeyError(path)
            if not node.help:
                node.help = help
        except KeyError:
            pass
    return tree
