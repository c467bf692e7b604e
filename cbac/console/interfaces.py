"""The console's view of the appliance, as a zope.interface.

:class:`IConsoleAppliance` is everything the SSH console and its command
table (:mod:`cbac.console.commands`) call.  ``cbac.app.Appliance``
implements it for the engine, ``cbac.privsep.remote.RemoteAppliance`` for
the console in the management process (over AMP: the engine's methods
return Deferreds of the same values) and ``tests.fakeappliance.FakeAppliance``
for the console's unit tests; ``tests/test_console_appliance.py`` checks
both with ``verifyObject`` and runs every command of the table against a
real appliance.

Unless said otherwise a method returns the IOS text to print (``str``), or
``(ok, text)`` when the command can fail (``ok`` False: the exec request's
exit status is 1).
"""

from zope.interface import Attribute, Interface


class IConsoleAppliance(Interface):
    hostname = Attribute("str: the configured hostname (the prompt)")
    router_model = Attribute("cbac.config.model.RouterConfig: the running configuration "
                             "(the console reads vty lines, users, ssh settings from it)")
    log_observers = Attribute("cbac.log.observers.LogObservers or None: the buffer and the "
                              "'terminal monitor' hub")

    # -- authentication ---------------------------------------------------
    def check_enable(password):
        """``enable``: does the password match enable secret/password? -> bool"""

    def check_login(user, password):
        """Password login: the user's privilege (int), or None."""

    def authorized_keys(user):
        """Public-key login: OpenSSH public key lines (bytes) for ``user``."""

    # -- show -----------------------------------------------------------------
    def show_running_config():
        """``show running-config`` / ``write terminal``"""

    def show_startup_config():
        """``show startup-config``"""

    def show_version():
        """``show version``"""

    def show_clock():
        """``show clock``"""

    def show_ip_inspect(what, name=None):
        """``show ip inspect WHAT``; ``what`` is one of "all", "config",
        "interfaces", "sessions", "sessions detail", "name" (with ``name``),
        "statistics".  An unknown ``name``: ``(False, "% ...")``."""

    def show_zone_security(name=None):
        """``show zone security [NAME]`` (zone-based policy firewall)"""

    def show_zone_pair_security():
        """``show zone-pair security``"""

    def show_policy_map_zone_pair(name=None, sessions=False):
        """``show policy-map type inspect zone-pair [NAME] [sessions]``"""

    def show_access_lists(name=None):
        """``show [ip] access-lists [NAME|NUMBER]``"""

    def show_ip_nat_translations(verbose=False):
        """``show ip nat translations [verbose]``"""

    def show_ip_nat_statistics():
        """``show ip nat statistics``"""

    def show_interfaces(name=None):
        """``show interfaces [NAME]``"""

    def show_ip_interface_brief():
        """``show ip interface brief``"""

    def show_dhcp_lease():
        """``show dhcp lease``: the DHCP client's leases (``ip address dhcp``)."""

    def show_cbac_fastpath():
        """``show cbac fastpath`` (cbac extension): the kernel fast path's
        state, offloaded sessions and counters."""

    def show_redundancy():
        """``show redundancy`` (cbac extension): role, peer, sync link,
        sequence numbers and synced counts of an active/standby pair."""

    def show_ip_route():
        """``show ip route``"""

    def show_arp():
        """``show arp`` / ``show ip arp``"""

    def show_logging():
        """``show logging``"""

    def show_processes_cpu():
        """``show processes cpu``: CPU, memory and engine counters"""

    def show_debugging():
        """``show debugging``"""

    def packet_tracer(in_if, proto, src, sport, dst, dport, detailed=False):
        """``packet-tracer input IN_IF PROTO SRC SPORT DST DPORT [detailed]``
        (ICMP: ``sport`` is the type, ``dport`` the code): the phases of the
        synthetic packet's path, nothing sent or changed; (allowed, text)."""

    # -- clear / debug ---------------------------------------------------------
    def clear(what, arg=None):
        """``clear WHAT``: "access-list counters" (arg: ACL or None),
        "ip nat translation", "ip nat statistics", "ip inspect sessions",
        "ip inspect statistics", "arp-cache", "counters" (arg: an interface or
        None), "logging".  An unknown interface: ``(False, "% ...")``."""

    def debug(category, on):
        """``[no] debug ...``: an ``ip inspect`` category, "ip nat", "ip packet"
        or "ip ssh"; returns IOS's confirmation line."""

    def undebug_all():
        """``undebug all``"""

    # -- configuration -----------------------------------------------------------
    def copy_running_startup():
        """``copy running-config startup-config`` / ``write memory``"""

    def configure_replace(path):
        """``configure replace FILE``: (ok, text)"""

    def reload_config():
        """``reload config``: re-read the startup file; (ok, text)"""

    def manhole_namespace():
        """dict of the objects the ``manhole`` sees"""
