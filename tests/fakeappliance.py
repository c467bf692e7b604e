"""A fake of the appliance facade (docs/architecture.md, "The console's facade") for console tests.

Records every call in ``calls``; texts are recognisable fixed strings.
"""

from __future__ import annotations

from zope.interface import implementer

from cbac.config.model import RouterConfig, User
from cbac.console.interfaces import IConsoleAppliance


@implementer(IConsoleAppliance)
class FakeAppliance:
    def __init__(self, hostname="fw1", users=None, enable="cisco", keys=None,
                 log_observers=None, long_lines=60):
        self.hostname = hostname
        self.users = users if users is not None else {
            "admin": ("secret", 15), "oper": ("operpw", 1)}
        self.enable = enable
        self.keys = keys or {}
        self.log_observers = log_observers
        self.calls: list[tuple] = []
        self.debugs: set[str] = set()
        self.long_lines = long_lines
        self.router_model = RouterConfig(hostname=hostname, users={
            n: User(name=n, privilege=p) for n, (_, p) in self.users.items()})

    def _call(self, *a):
        self.calls.append(a)

    def check_enable(self, password):
        self._call("check_enable", password)
        return password == self.enable

    def check_login(self, user, password):
        self._call("check_login", user)
        u = self.users.get(user)
        if u is None or u[0] != password:
            return None
        return u[1]

    def authorized_keys(self, user):
        return list(self.keys.get(user, []))

    def show_running_config(self):
        self._call("show_running_config")
        return "Building configuration...\n\nCurrent configuration : 99 bytes\n!\nhostname %s\n" \
               "!\ninterface Ethernet2/0\n ip address 172.22.1.16 255.255.255.0\n" \
               " ip inspect OUT-IN in\n!\nend" % self.hostname

    def show_startup_config(self):
        return "Using 99 out of 65536 bytes\n!\nhostname %s\nend" % self.hostname

    def show_version(self):
        return "cbac Software, Version 0.1.0 (fake)"

    def show_clock(self):
        return "*15:20:01.123 UTC Sat Nov 28 2026"

    def show_ip_inspect(self, what, name=None):
        self._call("show_ip_inspect", what, name)
        if what == "sessions":
            return "Established Sessions\n Session 6155930C (10.10.10.3:35013)=>(172.22.1.1:25) smtp SIS_OPEN"
        if what == "all":
            return "\n".join("inspect line %03d" % i for i in range(self.long_lines))
        if what == "name" and name not in ("IN-OUT", "OUT-IN"):
            return False, "% Inspection rule " + name + " is not configured"
        return "INSPECT %s %s" % (what, name or "")

    def show_zone_security(self, name=None):
        self._call("show_zone_security", name)
        return "zone self\n  Description: System defined zone"

    def show_zone_pair_security(self):
        return "Zone-pair name in-out"

    def show_policy_map_zone_pair(self, name=None, sessions=False):
        self._call("show_policy_map_zone_pair", name, sessions)
        return "policy exists on zp %s" % (name or "in-out")

    def show_access_lists(self, name=None):
        self._call("show_access_lists", name)
        return "Extended IP access list %s\n    10 permit tcp any host 172.22.1.20 eq smtp (5 matches)" \
               % (name or "101")

    def show_ip_nat_translations(self, verbose=False):
        self._call("show_ip_nat_translations", verbose)
        return "Pro Inside global      Inside local       Outside local      Outside global"

    def show_ip_nat_statistics(self):
        return "Total active translations: 0 (0 static, 0 dynamic; 0 extended)"

    def show_interfaces(self, name=None):
        self._call("show_interfaces", name)
        return "%s is up, line protocol is up" % (name or "Ethernet2/0")

    def show_ip_interface_brief(self):
        return "Interface              IP-Address      OK? Method Status                Protocol"

    def show_ip_route(self):
        return "Gateway of last resort is not set"

    def show_dhcp_lease(self):
        return ""

    def show_cbac_fastpath(self):
        return "Kernel fast path: not loaded (not started)"

    def show_redundancy(self):
        return "Redundancy is not configured (cbac redundancy peer ...)"

    def show_arp(self):
        return "Protocol  Address          Age (min)  Hardware Addr   Type   Interface"

    def show_logging(self):
        if self.log_observers is not None:
            return self.log_observers.show_logging()
        return "Syslog logging: enabled"

    def packet_tracer(self, in_if, proto, src, sport, dst, dport, detailed=False):
        self._call("packet_tracer", in_if, proto, src, sport, dst, dport, detailed)
        return True, "Phase: 1\nType: ROUTE-LOOKUP\nResult:\nAction: allow"

    def show_processes_cpu(self):
        return "CPU utilization for five seconds: 1%"

    def clear(self, what, arg=None):
        self._call("clear", what, arg)
        return ""

    def debug(self, category, on):
        self._call("debug", category, on)
        (self.debugs.add if on else self.debugs.discard)(category)
        return "INSPECT %s Inspection debugging is %s" % (category.upper(), "on" if on else "off")

    def undebug_all(self):
        self._call("undebug_all")
        self.debugs.clear()
        return "All possible debugging has been turned off"

    def show_debugging(self):
        return "\n".join(sorted(self.debugs))

    def copy_running_startup(self):
        self._call("copy_running_startup")
        return "Building configuration...\n[OK]"

    def configure_replace(self, path):
        self._call("configure_replace", path)
        if path.endswith("bad.conf"):
            return False, "% line 3: bad\n% configuration not replaced"
        return True, "Total number of passes: 1\nRollback Done"

    def reload_config(self):
        self._call("reload_config")
        return True, "Configuration reloaded"

    def manhole_namespace(self):
        return {"appliance": self, "answer": 42}
