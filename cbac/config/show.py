"""``show ip inspect`` configuration renderings, in the format of Cisco
document 69309 (``show ip inspect all``) and cbac-reference.md §1.3/§3.4.

* :func:`show_ip_inspect_config` - ``show ip inspect config``: globals and
  ``Inspection Rule Configuration``.
* :func:`show_ip_inspect_interfaces` - ``show ip inspect interfaces``.
* :func:`show_ip_inspect_name` - ``show ip inspect name NAME``.
* :func:`show_ip_inspect_all_config` - the configuration and interface parts
  of ``show ip inspect all`` (the session part is appended by the caller).

Interface order: the seed lists Ethernet2/1 before Ethernet2/0, although
Ethernet2/0 is configured first; IOS keeps inspected interfaces in a list
to which each ``ip inspect`` command prepends.  cbac reproduces that:
interfaces that carry an inspection rule, in reverse configuration order.
Effective per-protocol values fall back to the globals (``ip inspect
alert-off``, ``ip inspect audit-trail``, the idle timers).
"""

from __future__ import annotations

from typing import Optional

from cbac.config.model import (
    SMTP_MAX_DATA_DEFAULT, InspectGlobals, InspectProtocol, InspectRule,
    RouterConfig, default_timeout)

__all__ = ["show_ip_inspect_config", "show_ip_inspect_interfaces",
           "show_ip_inspect_name", "show_ip_inspect_all_config",
           "protocol_line", "effective"]


def effective(p: InspectProtocol, g: InspectGlobals) -> tuple[bool, bool, int]:
    """(alert, audit_trail, timeout) in force for one protocol line."""
    alert = (not g.alert_off) if p.alert is None else p.alert
    audit = g.audit_trail if p.audit_trail is None else p.audit_trail
    timeout = default_timeout(p.protocol, g) if p.timeout is None else p.timeout
    return alert, audit, timeout


def protocol_line(p: InspectProtocol, g: InspectGlobals) -> str:
    """``smtp max-data 20000000 alert is on audit-trail is off timeout 3600``"""
    alert, audit, timeout = effective(p, g)
    head = p.protocol
    if p.protocol in ("smtp", "esmtp"):
        head += " max-data %d" % (SMTP_MAX_DATA_DEFAULT if p.max_data is None else p.max_data)
    if p.protocol == "http" and p.java_list is not None:
        head += " java-list %s" % p.java_list
    return "%s alert is %s audit-trail is %s timeout %d" % (
        head, "on" if alert else "off", "on" if audit else "off", timeout)


def _rule_lines(rule: InspectRule, g: InspectGlobals, indent: str) -> list[str]:
    return [indent + protocol_line(p, g) for p in rule.protocols]


def _globals(g: InspectGlobals) -> list[str]:
    return [
        "Session audit trail is %s" % ("enabled" if g.audit_trail else "disabled"),
        "Session alert is %s" % ("disabled" if g.alert_off else "enabled"),
        "one-minute (sampling period) thresholds are [%d:%d] connections"
        % (g.one_minute_low, g.one_minute_high),
        "max-incomplete sessions thresholds are [%d:%d]"
        % (g.max_incomplete_low, g.max_incomplete_high),
        "max-incomplete tcp connections per host is %d. Block-time %d minute."
        % (g.tcp_max_incomplete_host, g.tcp_block_time),
        "tcp synwait-time is %d sec -- tcp finwait-time is %d sec"
        % (g.tcp_synwait_time, g.tcp_finwait_time),
        "tcp idle-time is %d sec -- udp idle-time is %d sec"
        % (g.tcp_idle_time, g.udp_idle_time),
        "dns-timeout is %d sec" % g.dns_timeout,
    ]


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def show_ip_inspect_config(router: RouterConfig) -> str:
    g = router.inspect
    lines = _globals(g)
    lines.append("Inspection Rule Configuration")
    for rule in router.inspect_rules.values():
        lines.append("  Inspection name %s" % rule.name)
        lines += _rule_lines(rule, g, "    ")
    return _text(lines)


def show_ip_inspect_name(router: RouterConfig, name: str) -> str:
    rule = router.inspect_rules.get(name)
    if rule is None:
        # cbac wording; IOS's reply for an unknown name is not documented.
        return "%% Inspection rule %s is not configured\n" % name
    return _text(["  Inspection name %s" % rule.name] + _rule_lines(rule, router.inspect, "    "))


def _inspected_interfaces(router: RouterConfig):
    itfs = [i for i in router.interfaces.values()
            if i.inspect_in is not None or i.inspect_out is not None]
    return list(reversed(itfs))


def _direction(router: RouterConfig, label: str, rule_name: Optional[str]) -> list[str]:
    if rule_name is None:
        return ["  %s inspection rule is not set" % label]
    out = ["  %s inspection rule is %s" % (label, rule_name)]
    rule = router.inspect_rules.get(rule_name)
    if rule is not None:
        out += _rule_lines(rule, router.inspect, "    ")
    return out


def show_ip_inspect_interfaces(router: RouterConfig) -> str:
    lines = ["Interface Configuration"]
    for itf in _inspected_interfaces(router):
        lines.append("Interface %s" % itf.name)
        lines += _direction(router, "Inbound", itf.inspect_in)
        lines += _direction(router, "Outgoing", itf.inspect_out)
        lines.append("  Inbound access list is %s" % (itf.access_group_in or "not set"))
        lines.append("  Outgoing access list is %s" % (itf.access_group_out or "not set"))
    return _text(lines)


def show_ip_inspect_all_config(router: RouterConfig) -> str:
    """Configuration and interface parts of ``show ip inspect all``."""
    return show_ip_inspect_config(router) + "\n" + show_ip_inspect_interfaces(router)
