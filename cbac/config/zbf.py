"""Zone-based policy firewall (ZBF) configuration: parsing, rendering and
cross-reference checks.

IOS commands handled here (the model classes are in
:mod:`cbac.config.model`, section "Zone-based policy firewall")::

    zone security NAME                       (+ description)
    zone-pair security NAME source A destination B
     description TEXT
     service-policy type inspect POLICY
    class-map type inspect [match-any|match-all] NAME
     match protocol tcp|udp|icmp|ftp|http|smtp|smtp extended|esmtp|dns|https|ssh|telnet|
                    sip|rtsp|pptp
     match access-group N | match access-group name NAME
     match class-map NAME
    class-map type inspect smtp [match-any|match-all] NAME
     match data-length gt N | match cmd line length gt N | match cmd verb VERB
    policy-map type inspect NAME
     class type inspect CLASS
      inspect [PARAMETER-MAP] | pass [log] | drop [log]
      service-policy smtp POLICY
     class class-default
      drop [log] | pass [log]
    policy-map type inspect smtp NAME
     class type inspect smtp CLASS
      reset
      log
    parameter-map type inspect NAME|global|default  (parameter-map type inspect-global)
     max-incomplete low|high N, one-minute low|high N,
     tcp max-incomplete host N block-time M, tcp synwait-time N,
     tcp finwait-time N, tcp idle-time N, udp idle-time N, icmp idle-time N,
     dns-timeout N, audit-trail on|off, alert on|off, sessions maximum N
    interface X
     zone-member security NAME

Fail closed: every other ZBF sub-command or match criterion is an error
with its line number (cbac would not enforce it), never a warning.

The parser (:mod:`cbac.config.parser`) calls :func:`install` once to add the
handlers to its tables; :mod:`cbac.config.render` calls :func:`render_lines`
and :mod:`cbac.config.check` calls :func:`check`.
"""

from __future__ import annotations

import re

from cbac.config.errors import ERROR, WARNING, Diagnostic
from cbac.config.model import (
    PARAMETER_FIELDS, ZBF_PROTOCOLS, ClassMapInspect, ClassMatch,
    ParameterMapInspect, PolicyClass, PolicyMapInspect, RouterConfig, Zone,
    ZonePair)

__all__ = ["install", "render_lines", "check", "SELF"]

class _Parser:
    """The parser's helpers (_Bad, _int, ...), imported on first use: the
    parser imports this module while it is being initialised."""

    def __getattr__(self, name):
        from cbac.config import parser
        return getattr(parser, name)


_p = _Parser()

#: The system-defined zone of the router itself.
SELF = "self"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}$")


def _Bad(msg):
    return _p._Bad(msg)


def _name(tok: str, what: str) -> str:
    if not _NAME_RE.match(tok):
        raise _Bad("invalid %s name '%s'" % (what, tok))
    return tok


# --------------------------------------------------------------------------
# Global commands

def g_zone(self, ln, neg, a):
    if len(a) != 1:
        raise _Bad("expected 'zone security NAME'")
    name = _name(a[0], "zone")
    zones = self.router.zbf.zones
    if name.lower() == SELF:
        raise _Bad("zone 'self' is system defined and cannot be configured")
    if neg:
        zones.pop(name, None)
        return
    z = zones.get(name)
    if z is None:
        z = zones[name] = Zone(name, lineno=ln.no)
    self.block = ("zbf-zone", z)


def g_zone_pair(self, ln, neg, a):
    if neg and len(a) == 1:
        self.router.zbf.zone_pairs.pop(a[0], None)
        return
    if len(a) != 5 or a[1].lower() != "source" or a[3].lower() != "destination":
        raise _Bad("expected 'zone-pair security NAME source ZONE destination ZONE'")
    name = _name(a[0], "zone-pair")
    src = SELF if a[2].lower() == SELF else _name(a[2], "zone")
    dst = SELF if a[4].lower() == SELF else _name(a[4], "zone")
    pairs = self.router.zbf.zone_pairs
    if neg:
        pairs.pop(name, None)
        return
    if src == SELF and dst == SELF:
        raise _Bad("a zone-pair cannot have 'self' as both source and destination")
    for zp in pairs.values():
        if zp.name != name and (zp.source, zp.destination) == (src, dst):
            raise _Bad("zone-pair %s already connects %s to %s" % (zp.name, src, dst))
    zp = pairs.get(name)
    if zp is not None and (zp.source, zp.destination) != (src, dst):
        raise _Bad("zone-pair %s exists with source %s destination %s"
                   % (name, zp.source, zp.destination))
    if zp is None:
        zp = pairs[name] = ZonePair(name, src, dst, lineno=ln.no)
    self.block = ("zbf-zone-pair", zp)


def _match_kind(a):
    """[smtp] [match-any|match-all] NAME -> (app, match_any, name)."""
    app = None
    i = 0
    if i < len(a) and a[i].lower() in ("smtp",) and len(a) > 1:
        app = "smtp"
        i += 1
    elif i < len(a) and len(a) > 1 and a[i].lower() not in ("match-any", "match-all"):
        raise _Bad("class-map type inspect %s is not supported (layer 7 inspection only for smtp)"
                   % a[i])
    match_any = False
    if i < len(a) and a[i].lower() in ("match-any", "match-all"):
        match_any = a[i].lower() == "match-any"
        i += 1
    if len(a) != i + 1:
        raise _Bad("expected 'class-map type inspect [smtp] [match-any|match-all] NAME'")
    return app, match_any, a[i]


def g_class_map(self, ln, neg, a):
    maps = self.router.zbf.class_maps
    if neg:
        name = a[-1] if a else ""
        maps.pop(name, None)
        return
    app, match_any, name = _match_kind(a)
    name = _name(name, "class-map")
    if name == "class-default":
        raise _Bad("class-default is system defined")
    cm = maps.get(name)
    if cm is not None and (cm.app, cm.match_any) != (app, match_any):
        raise _Bad("class-map %s already exists with a different type" % name)
    if cm is None:
        cm = maps[name] = ClassMapInspect(name, match_any, app, lineno=ln.no)
    self.block = ("zbf-class-map", cm)


def g_policy_map(self, ln, neg, a):
    maps = self.router.zbf.policy_maps
    if neg:
        maps.pop(a[-1] if a else "", None)
        return
    app = None
    if len(a) == 2:
        if a[0].lower() != "smtp":
            raise _Bad("policy-map type inspect %s is not supported (layer 7 inspection only "
                       "for smtp)" % a[0])
        app = "smtp"
    elif len(a) != 1:
        raise _Bad("expected 'policy-map type inspect [smtp] NAME'")
    name = _name(a[-1], "policy-map")
    pm = maps.get(name)
    if pm is not None and pm.app != app:
        raise _Bad("policy-map %s already exists with a different type" % name)
    if pm is None:
        pm = maps[name] = PolicyMapInspect(name, app, lineno=ln.no)
    self.block = ("zbf-policy-map", pm)


def g_parameter_map_global(self, ln, neg, a):
    """IOS-XE ``parameter-map type inspect-global``: the global parameter-map."""
    if a:
        raise _Bad("unexpected '%s'" % a[0])
    g_parameter_map(self, ln, neg, ["global"])


def g_parameter_map(self, ln, neg, a):
    maps = self.router.zbf.parameter_maps
    if len(a) != 1:
        raise _Bad("expected 'parameter-map type inspect NAME|global|default'")
    name = a[0].lower() if a[0].lower() in ("global", "default") else _name(a[0], "parameter-map")
    if neg:
        maps.pop(name, None)
        return
    pm = maps.get(name)
    if pm is None:
        pm = maps[name] = ParameterMapInspect(name, lineno=ln.no)
    self.block = ("zbf-parameter-map", pm)


# --------------------------------------------------------------------------
# Sub-commands

def _unsupported(where):
    def handler(self, obj, ln, neg, words):
        raise _Bad("unsupported in %s: '%s' (cbac would not enforce it)"
                   % (where, " ".join(words)))
    return handler


def z_description(self, obj, ln, neg, a):
    obj.description = None if neg else (_p._rest(ln.raw, 1)[:200] or None)


def zp_service_policy(self, zp, ln, neg, a):
    if len(a) != 2 or a[0].lower() != "inspect":
        raise _Bad("expected 'service-policy type inspect POLICY'")
    if neg:
        zp.service_policy = None
        return
    zp.service_policy = a[1]
    zp.policy_lineno = ln.no


def cm_match(self, cm, ln, neg, a):
    if not a:
        raise _Bad("incomplete command")
    k = a[0].lower()
    if k == "not":
        raise _Bad("'match not' is not supported")
    if cm.app == "smtp":
        m = _smtp_match(a)
    elif k == "protocol":
        k2 = [x.lower() for x in a[1:]]
        if k2 == ["smtp", "extended"]:
            k2 = ["esmtp"]
        if len(k2) != 1:
            raise _Bad("expected 'match protocol PROTOCOL'")
        proto = k2[0]
        if proto not in ZBF_PROTOCOLS:
            raise _Bad("cbac does not inspect protocol '%s' (supported: %s)"
                       % (a[1], ", ".join(ZBF_PROTOCOLS)))
        m = ClassMatch("protocol", proto)
    elif k == "access-group":
        if len(a) == 3 and a[1].lower() == "name":
            m = ClassMatch("access-group", _p._acl_ref(a[2]))
        elif len(a) == 2 and a[1].isdigit():
            m = ClassMatch("access-group", _p._acl_ref(a[1]))
        else:
            raise _Bad("expected 'match access-group N' or 'match access-group name NAME'")
    elif k == "class-map":
        if len(a) != 2:
            raise _Bad("expected 'match class-map NAME'")
        if a[1] == cm.name:
            raise _Bad("class-map %s cannot match itself" % cm.name)
        m = ClassMatch("class-map", a[1])
    else:
        raise _Bad("unsupported match criterion '%s' (cbac would not enforce it)" % a[0])
    m.lineno = ln.no
    same = [x for x in cm.matches if (x.kind, x.value) == (m.kind, m.value)]
    if neg:
        for x in same:
            cm.matches.remove(x)
        return
    if m.kind in ("data-length", "cmd-line-length"):
        cm.matches = [x for x in cm.matches if x.kind != m.kind]
    elif same:
        return
    cm.matches.append(m)


def _smtp_match(a):
    k = [x.lower() for x in a]
    if k[:2] == ["data-length", "gt"] and len(a) == 3:
        return ClassMatch("data-length", str(_p._int(a[2], 1, 2147483647, "data-length")))
    if k[:4] == ["cmd", "line", "length", "gt"] and len(a) == 5:
        return ClassMatch("cmd-line-length", str(_p._int(a[4], 1, 2147483647, "length")))
    if k[:2] == ["cmd", "verb"] and len(a) == 3:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,19}", a[2]):
            raise _Bad("invalid SMTP verb '%s'" % a[2])
        return ClassMatch("cmd-verb", a[2].upper())
    raise _Bad("unsupported smtp match criterion '%s' (cbac enforces 'match data-length gt N', "
               "'match cmd line length gt N', 'match cmd verb VERB')" % " ".join(a))


def pm_class(self, pm, ln, neg, a):
    k = [x.lower() for x in a]
    if k == ["class-default"]:
        name = "class-default"
    elif pm.app is None and len(a) == 3 and k[:2] == ["type", "inspect"]:
        name = a[2]
    elif pm.app == "smtp" and len(a) == 4 and k[:3] == ["type", "inspect", "smtp"]:
        name = a[3]
    else:
        raise _Bad("expected 'class type inspect %sCLASS' or 'class class-default'"
                   % ("smtp " if pm.app else ""))
    if name == "class-default" and pm.app is not None:
        raise _Bad("class-default is not supported in a layer 7 policy-map")
    if neg:
        pm.classes = [c for c in pm.classes if c.name != name]
        return
    for c in pm.classes:
        if c.name == name:
            break
    else:
        c = PolicyClass(name, lineno=ln.no)
        if name == "class-default":
            pm.classes.append(c)
        else:
            # class-default stays last
            idx = len(pm.classes)
            if pm.classes and pm.classes[-1].name == "class-default":
                idx -= 1
            pm.classes.insert(idx, c)
    self.block = ("zbf-policy-class", (pm, c))


def pc_class(self, obj, ln, neg, a):
    pm, _ = obj
    pm_class(self, pm, ln, neg, a)


def _set_action(c, action):
    if c.action is not None and c.action != action:
        raise _Bad("class %s already has action '%s'" % (c.name, c.action))
    c.action = action


def pc_inspect(self, obj, ln, neg, a):
    pm, c = obj
    if neg:
        if c.action == "inspect":
            c.action = c.parameter_map = None
        return
    if pm.app is not None:
        raise _Bad("'inspect' is an action of layer 4 policy-maps")
    if c.name == "class-default":
        raise _Bad("class-default takes 'drop [log]' or 'pass [log]', not 'inspect'")
    if len(a) > 1:
        raise _Bad("expected 'inspect [PARAMETER-MAP]'")
    _set_action(c, "inspect")
    c.parameter_map = a[0] if a else None


def _pass_drop(action):
    def handler(self, obj, ln, neg, a):
        pm, c = obj
        if neg:
            if c.action == action:
                c.action = None
                c.log = False
            return
        if pm.app is not None:
            raise _Bad("'%s' is an action of layer 4 policy-maps (smtp: reset, log)" % action)
        if a and (len(a) != 1 or a[0].lower() != "log"):
            raise _Bad("expected '%s [log]'" % action)
        _set_action(c, action)
        c.log = bool(a)
    return handler


def pc_reset(self, obj, ln, neg, a):
    pm, c = obj
    if pm.app is None:
        raise _Bad("'reset' is an action of layer 7 policy-maps")
    if a:
        raise _Bad("unexpected '%s'" % a[0])
    c.action = None if neg else "reset"


def pc_log(self, obj, ln, neg, a):
    pm, c = obj
    if pm.app is None:
        raise _Bad("'log' alone is an action of layer 7 policy-maps (use 'drop log' or "
                   "'pass log')")
    if a:
        raise _Bad("unexpected '%s'" % a[0])
    c.log = not neg


def pc_service_policy(self, obj, ln, neg, a):
    pm, c = obj
    if pm.app is not None:
        raise _Bad("service-policy is not allowed in a layer 7 policy-map")
    if len(a) != 2 or a[0].lower() != "smtp":
        raise _Bad("expected 'service-policy smtp POLICY' (layer 7 policies: smtp only)")
    c.service_policy = None if neg else a[1]


def _param_int(attr, lo, hi, what):
    def handler(self, pm, ln, neg, a):
        if neg:
            setattr(pm, attr, None)
            return
        if len(a) != 1:
            raise _Bad("expected one number for %s" % what)
        setattr(pm, attr, _p._int(a[0], lo, hi, what))
    return handler


def _param_hl(high, low):
    """A ``KEYWORD high|low N`` parameter: sets the attribute ``high`` or
    ``low`` (named in full where the handler is made)."""
    def handler(self, pm, ln, neg, a):
        if not a or a[0].lower() not in ("low", "high"):
            raise _Bad("expected 'high' or 'low'")
        attr = high if a[0].lower() == "high" else low
        if neg:
            setattr(pm, attr, None)
            return
        if len(a) != 2:
            raise _Bad("expected '%s N'" % a[0].lower())
        setattr(pm, attr, _p._int(a[1], 1, 2147483647, "threshold"))
    return handler


def pa_host(self, pm, ln, neg, a):
    if neg:
        pm.tcp_max_incomplete_host = pm.tcp_block_time = None
        return
    if not a or a[0].lower() != "host" or len(a) not in (2, 4):
        raise _Bad("expected 'tcp max-incomplete host N block-time M'")
    pm.tcp_max_incomplete_host = _p._int(a[1], 1, 2147483647, "max-incomplete host")
    pm.tcp_block_time = 0
    if len(a) == 4:
        if a[2].lower() != "block-time":
            raise _Bad("expected 'block-time MINUTES'")
        pm.tcp_block_time = _p._int(a[3], 0, 35791, "block-time")


def _param_onoff(attr, what):
    def handler(self, pm, ln, neg, a):
        if neg:
            setattr(pm, attr, None)
            return
        if len(a) != 1:
            raise _Bad("expected '%s on|off'" % what)
        setattr(pm, attr, _p._onoff(a[0], what))
    return handler


def i_zone_member(self, itf, ln, neg, a):
    if len(a) != 1:
        raise _Bad("expected 'zone-member security ZONE'")
    if neg:
        itf.zone = None
        return
    if a[0].lower() == SELF:
        raise _Bad("an interface cannot be a member of the self zone")
    itf.zone = _name(a[0], "zone")
    itf.zone_lineno = ln.no


# --------------------------------------------------------------------------
# Installation into the parser's tables

def install(global_commands: dict, sub_commands: dict) -> None:
    global_commands.update({
        ("zone", "security"): g_zone,
        ("zone-pair", "security"): g_zone_pair,
        ("class-map", "type", "inspect"): g_class_map,
        ("policy-map", "type", "inspect"): g_policy_map,
        ("parameter-map", "type", "inspect"): g_parameter_map,
        ("parameter-map", "type", "inspect-global"): g_parameter_map_global,
    })
    sub_commands["interface"][("zone-member", "security")] = i_zone_member
    sub_commands["zbf-zone"] = {
        ("description",): z_description,
        None: _unsupported("zone security"),
    }
    sub_commands["zbf-zone-pair"] = {
        ("description",): z_description,
        ("service-policy", "type"): zp_service_policy,
        None: _unsupported("zone-pair security"),
    }
    sub_commands["zbf-class-map"] = {
        ("match",): cm_match,
        None: _unsupported("class-map type inspect"),
    }
    sub_commands["zbf-policy-map"] = {
        ("class",): pm_class,
        None: _unsupported("policy-map type inspect"),
    }
    sub_commands["zbf-policy-class"] = {
        ("class",): pc_class,
        ("inspect",): pc_inspect,
        ("pass",): _pass_drop("pass"),
        ("drop",): _pass_drop("drop"),
        ("reset",): pc_reset,
        ("log",): pc_log,
        ("service-policy",): pc_service_policy,
        None: _unsupported("policy-map class"),
    }
    sub_commands["zbf-parameter-map"] = {
        ("max-incomplete",): _param_hl("max_incomplete_high", "max_incomplete_low"),
        ("one-minute",): _param_hl("one_minute_high", "one_minute_low"),
        ("tcp", "max-incomplete"): pa_host,
        ("tcp", "synwait-time"): _param_int("tcp_synwait_time", 1, 2147483, "synwait-time"),
        ("tcp", "finwait-time"): _param_int("tcp_finwait_time", 1, 2147483, "finwait-time"),
        ("tcp", "idle-time"): _param_int("tcp_idle_time", 1, 2147483, "idle-time"),
        ("udp", "idle-time"): _param_int("udp_idle_time", 1, 2147483, "idle-time"),
        ("icmp", "idle-time"): _param_int("icmp_idle_time", 1, 2147483, "idle-time"),
        ("dns-timeout",): _param_int("dns_timeout", 1, 2147483, "dns-timeout"),
        ("sessions", "maximum"): _param_int("sessions_maximum", 1, 2147483647,
                                            "sessions maximum"),
        ("audit-trail",): _param_onoff("audit_trail", "audit-trail"),
        ("alert",): _param_onoff("alert", "alert"),
        None: _unsupported("parameter-map type inspect"),
    }


# --------------------------------------------------------------------------
# Rendering (show running-config)

def _render_match(m: ClassMatch) -> str:
    if m.kind == "protocol":
        return " match protocol %s" % ("smtp extended" if m.value == "esmtp" else m.value)
    if m.kind == "access-group":
        if m.value.isdigit():
            return " match access-group %s" % m.value
        return " match access-group name %s" % m.value
    if m.kind == "class-map":
        return " match class-map %s" % m.value
    if m.kind == "data-length":
        return " match data-length gt %s" % m.value
    if m.kind == "cmd-line-length":
        return " match cmd line length gt %s" % m.value
    if m.kind == "cmd-verb":
        return " match cmd verb %s" % m.value
    raise ValueError(m.kind)


def render_lines(r: RouterConfig) -> list[str]:
    """ZBF global blocks in IOS order (parameter-maps, class-maps,
    policy-maps, zones, zone-pairs), each block ended by ``!``."""
    z = r.zbf
    out: list[str] = []
    for pm in z.parameter_maps.values():
        out.append("parameter-map type inspect %s" % pm.name)
        for attr, text in PARAMETER_FIELDS:
            v = getattr(pm, attr)
            if v is not None:
                out.append(" %s %d" % (text, v))
        if pm.tcp_max_incomplete_host is not None:
            out.append(" tcp max-incomplete host %d block-time %d"
                       % (pm.tcp_max_incomplete_host, pm.tcp_block_time or 0))
        if pm.audit_trail is not None:
            out.append(" audit-trail %s" % ("on" if pm.audit_trail else "off"))
        if pm.alert is not None:
            out.append(" alert %s" % ("on" if pm.alert else "off"))
        out.append("!")
    for cm in z.class_maps.values():
        out.append("class-map type inspect %s%s %s" % (
            "smtp " if cm.app else "", "match-any" if cm.match_any else "match-all", cm.name))
        out += [_render_match(m) for m in cm.matches]
        out.append("!")
    for pm in z.policy_maps.values():
        out.append("policy-map type inspect %s%s" % ("smtp " if pm.app else "", pm.name))
        for c in pm.classes:
            if c.name == "class-default":
                out.append(" class class-default")
            else:
                out.append(" class type inspect %s%s" % ("smtp " if pm.app else "", c.name))
            if c.action == "inspect":
                out.append("  inspect" + (" %s" % c.parameter_map if c.parameter_map else ""))
            elif c.action in ("pass", "drop"):
                out.append("  %s%s" % (c.action, " log" if c.log else ""))
            elif c.action == "reset":
                out.append("  reset")
            if c.action not in ("pass", "drop") and c.log:
                out.append("  log")
            if c.service_policy:
                out.append("  service-policy smtp %s" % c.service_policy)
        out.append("!")
    for zn in z.zones.values():
        out.append("zone security %s" % zn.name)
        if zn.description:
            out.append(" description %s" % zn.description)
        out.append("!")
    for zp in z.zone_pairs.values():
        out.append("zone-pair security %s source %s destination %s"
                   % (zp.name, zp.source, zp.destination))
        if zp.description:
            out.append(" description %s" % zp.description)
        if zp.service_policy:
            out.append(" service-policy type inspect %s" % zp.service_policy)
        out.append("!")
    return out


# --------------------------------------------------------------------------
# Cross-reference checks (twistd cbac --check)

def check(r: RouterConfig, add) -> None:
    """Add diagnostics with ``add(severity, lineno, message, text="")``
    (``text``: the offending line, as cbac renders it)."""
    z = r.zbf

    def at_zp(sev, zp, msg):
        add(sev, zp.lineno, msg, "zone-pair security %s source %s destination %s"
            % (zp.name, zp.source, zp.destination))

    def at_sp(sev, zp, msg):
        add(sev, zp.policy_lineno or zp.lineno, msg,
            "service-policy type inspect %s" % zp.service_policy)

    def at_cm(sev, cm, msg):
        add(sev, cm.lineno, msg, "class-map type inspect %s%s %s" % (
            "smtp " if cm.app else "", "match-any" if cm.match_any else "match-all", cm.name))

    def at_m(sev, m, msg):
        add(sev, m.lineno, msg, _render_match(m).strip())

    def at_c(sev, pm, c, msg):
        add(sev, c.lineno, msg, "class class-default" if c.name == "class-default" else
            "class type inspect %s%s" % ("smtp " if pm.app else "", c.name))

    def at_pa(sev, pm, msg):
        add(sev, pm.lineno, msg, "parameter-map type inspect %s" % pm.name)
    zones = z.zones
    for itf in r.interfaces.values():
        if itf.zone is None:
            continue
        line = itf.zone_lineno or itf.lineno
        if itf.zone not in zones:
            add(ERROR, line, "interface %s: zone %s is not defined" % (itf.name, itf.zone),
                "zone-member security %s" % itf.zone)
        for d in ("in", "out"):
            if getattr(itf, "inspect_" + d) is not None:
                add(ERROR, line, "interface %s is a zone member and has 'ip inspect %s %s': "
                    "IOS refuses classic inspection and zones on one interface"
                    % (itf.name, getattr(itf, "inspect_" + d), d),
                    "zone-member security %s" % itf.zone)
    members = {itf.zone for itf in r.interfaces.values() if itf.zone}
    for zn in zones.values():
        if zn.name not in members:
            add(WARNING, zn.lineno, "zone %s has no member interface" % zn.name,
                "zone security %s" % zn.name)
    for zp in z.zone_pairs.values():
        for which in (zp.source, zp.destination):
            if which != SELF and which not in zones:
                at_zp(ERROR, zp, "zone-pair %s: zone %s is not defined" % (zp.name, which))
        if zp.source == SELF:
            at_zp(ERROR, zp, "zone-pair %s: source self is not supported: the router "
                "sends only replies (console, ICMP); restrict the router with a zone-pair "
                "to self" % zp.name)
        if zp.service_policy is None:
            at_zp(WARNING, zp, "zone-pair %s has no service-policy: all traffic from %s "
                "to %s is dropped" % (zp.name, zp.source, zp.destination))
        else:
            pm = z.policy_maps.get(zp.service_policy)
            if pm is None:
                at_sp(ERROR, zp, "zone-pair %s: policy-map %s is not "
                    "defined" % (zp.name, zp.service_policy))
            elif pm.app is not None:
                at_sp(ERROR, zp, "zone-pair %s: policy-map %s is a "
                    "layer 7 (smtp) policy-map" % (zp.name, pm.name))
    for cm in z.class_maps.values():
        if not cm.matches:
            at_cm(WARNING, cm, "class-map %s has no match criterion: it matches nothing"
                % cm.name)
        for m in cm.matches:
            if m.kind == "class-map":
                ref = z.class_maps.get(m.value)
                if ref is None:
                    at_m(ERROR, m, "class-map %s: class-map %s is not defined"
                        % (cm.name, m.value))
                elif ref.app != cm.app:
                    at_m(ERROR, m, "class-map %s: class-map %s is of another type"
                        % (cm.name, m.value))
            elif m.kind == "access-group":
                acl = r.acls.get(m.value)
                if acl is None:
                    at_m(ERROR, m, "class-map %s: access list %s is not defined"
                        % (cm.name, m.value))
        if cm.app is not None and not cm.match_any and len(cm.matches) > 1:
            at_cm(ERROR, cm, "class-map %s: a match-all smtp class-map with more than one "
                "criterion is not supported (use match-any, or one class per criterion)"
                % cm.name)
        if _cycle(z, cm.name):
            at_cm(ERROR, cm, "class-map %s refers to itself through match class-map"
                % cm.name)
    for pm in z.policy_maps.values():
        for c in pm.classes:
            if c.name != "class-default":
                cm = z.class_maps.get(c.name)
                if cm is None:
                    at_c(ERROR, pm, c, "policy-map %s: class-map %s is not defined"
                        % (pm.name, c.name))
                    continue
                if cm.app != pm.app:
                    at_c(ERROR, pm, c, "policy-map %s: class-map %s is of another type"
                        % (pm.name, c.name))
            if pm.app is None:
                if c.action is None and c.name != "class-default":
                    at_c(ERROR, pm, c, "policy-map %s class %s has no action (inspect, pass "
                        "or drop)" % (pm.name, c.name))
                if c.action == "inspect" and c.name in z.class_maps \
                        and not _protocols(z, c.name):
                    at_c(WARNING, pm, c, "policy-map %s class %s: no specific protocol "
                        "configured for inspection: tcp, udp and icmp are inspected, other IP "
                        "protocols in this class are dropped" % (pm.name, c.name))
                if c.parameter_map is not None and c.parameter_map not in z.parameter_maps:
                    at_c(ERROR, pm, c, "policy-map %s class %s: parameter-map %s is not "
                        "defined" % (pm.name, c.name, c.parameter_map))
                if c.service_policy is not None:
                    sp = z.policy_maps.get(c.service_policy)
                    if sp is None or sp.app != "smtp":
                        at_c(ERROR, pm, c, "policy-map %s class %s: smtp policy-map %s is "
                            "not defined" % (pm.name, c.name, c.service_policy))
                    if c.action != "inspect":
                        at_c(ERROR, pm, c, "policy-map %s class %s: a layer 7 policy needs "
                            "the 'inspect' action" % (pm.name, c.name))
                    elif c.name in z.class_maps and "smtp" not in _protocols(z, c.name) \
                            and "esmtp" not in _protocols(z, c.name):
                        at_c(ERROR, pm, c, "policy-map %s class %s: service-policy smtp needs "
                            "a class that matches protocol smtp" % (pm.name, c.name))
            else:
                if c.action != "reset":
                    at_c(ERROR, pm, c, "policy-map %s class %s: cbac enforces smtp classes "
                        "with 'reset' (and optionally 'log')" % (pm.name, c.name))
    g = z.parameter_maps.get("global")
    for pm in z.parameter_maps.values():
        for w in ("max_incomplete", "one_minute"):
            lo, hi = getattr(pm, w + "_low"), getattr(pm, w + "_high")
            if lo is not None and hi is not None and lo > hi:
                at_pa(ERROR, pm, "parameter-map %s: %s low %d is above high %d"
                    % (pm.name, w.replace("_", "-"), lo, hi))
        if pm.name not in ("global", "default") and pm is not g:
            for attr in GLOBAL_ONLY:
                if getattr(pm, attr) is not None:
                    at_pa(WARNING, pm, "parameter-map %s: %s applies to the whole "
                        "firewall in cbac (one half-open count and one block list); the "
                        "lowest value configured is used" % (pm.name, GLOBAL_ONLY[attr]))
    if z.configured and r.inspect_rules:
        if any(i.inspect_in or i.inspect_out for i in r.interfaces.values()):
            add(WARNING, 0, "classic inspection (ip inspect) and zones are both configured: "
                "they share the firewall-wide thresholds")


#: parameter-map settings cbac applies firewall-wide (attribute -> keywords)
GLOBAL_ONLY = {
    "max_incomplete_low": "max-incomplete low",
    "max_incomplete_high": "max-incomplete high",
    "one_minute_low": "one-minute low",
    "one_minute_high": "one-minute high",
    "tcp_max_incomplete_host": "tcp max-incomplete host",
}


def _cycle(z, start) -> bool:
    seen = set()
    stack = [start]
    first = True
    while stack:
        name = stack.pop()
        if name == start and not first:
            return True
        first = False
        if name in seen:
            continue
        seen.add(name)
        cm = z.class_maps.get(name)
        if cm is None:
            continue
        for m in cm.matches:
            if m.kind == "class-map":
                if m.value == start:
                    return True
                stack.append(m.value)
    return False


def _protocols(z, name, depth=0) -> set:
    """Protocols named by a class-map (through nested class-maps)."""
    cm = z.class_maps.get(name)
    if cm is None or depth > 16:
        return set()
    out = set()
    for m in cm.matches:
        if m.kind == "protocol":
            out.add(m.value)
        elif m.kind == "class-map":
            out |= _protocols(z, m.value, depth + 1)
    return out


def diagnostics(r: RouterConfig, filename: str) -> list[Diagnostic]:
    out = []

    def add(sev, lineno, msg, text=""):
        out.append(Diagnostic(filename, lineno or 0, sev, msg, text))
    check(r, add)
    return out
