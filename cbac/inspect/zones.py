"""The zone-based policy firewall (ZBF) engine: which zone-pair and class a
new flow belongs to, and what its policy-map does with it.

IOS semantics (``docs/configuration.md``, "Zone-based policy firewall"):

* neither interface in a zone: ZBF does not apply (classic CBAC, ACLs);
* both interfaces in the same zone: pass (unless an intrazone zone-pair,
  source and destination the same zone, is configured: IOS-XE);
* one interface in a zone, the other not: drop;
* two zones: the zone-pair source -> destination and its
  ``service-policy type inspect``; none: drop.  The policy-map's classes
  are tried in order; the first that matches decides: ``inspect`` (a
  session: return traffic needs no zone-pair), ``pass`` (this packet only,
  stateless), ``drop``; no class matches: ``class-default`` (drop unless
  configured ``pass``);
* traffic to the router (the ``self`` zone): allowed unless a zone-pair
  from the ingress zone to ``self`` exists; then its policy decides
  (``inspect`` and ``pass`` both deliver the packet to the router's own
  stack, which tracks its connections).

Inspection reuses the CBAC session engine: each (zone-pair, class) with
``inspect`` is compiled into an :class:`InspectRule` named
``ZONE-PAIR:CLASS`` that the session table looks up like any ``ip inspect
name`` rule; its protocols are the class-map's ``match protocol`` lines
(plus tcp/udp/icmp when the class also matches access lists, which IOS
inspects at layer 4), its timeouts and audit/alert settings come from the
class's parameter-map (else ``parameter-map type inspect global``), the
SMTP ``max-data`` from the class's layer 7 ``service-policy smtp``.

:func:`engine_model` gives the session table a model with those rules and
with the firewall-wide thresholds (``max-incomplete``, ``one-minute``,
``tcp max-incomplete host``) of the parameter-maps merged into the ``ip
inspect`` globals (the lowest value wins: cbac has one half-open count and
one block list).  ``tcp synwait-time``, ``tcp finwait-time`` and
``dns-timeout`` are per class, as in IOS: carried on the compiled
:class:`InspectProtocol` (``synwait``/``finwait``/``dns_timeout``).
"""

from __future__ import annotations

import dataclasses
from cbac.config.model import InspectGlobals, InspectProtocol, InspectRule
from cbac.config.zbf import GLOBAL_ONLY, SELF
from cbac.log import ios
from cbac.packet.view import ip_str

__all__ = ["ZonePolicy", "engine_model", "rule_name", "NOT_ZONED", "PASS", "DROP"]

#: verdicts of :meth:`ZonePolicy.decide` (an inspect verdict is a rule name)
NOT_ZONED = None
PASS = "pass"
DROP = "drop"

_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp"}
#: tcp destination ports of the application protocols (IOS port map)
_APP_PORTS = {"ftp": (21,), "http": (80,), "smtp": (25,), "esmtp": (25,)}
#: application protocols on (IP protocols, port) that keep their inspector
#: (SIP over UDP and TCP; RTSP; PPTP's control connection, whose GRE then
#: follows its calls on the session path)
_APP_L4 = {"sip": ((6, 17), 5060), "rtsp": ((6,), 554), "pptp": ((6,), 1723)}
#: layer 4 protocols on their IOS port map ports: (IP protocols, port)
_L4_PORTS = {"dns": ((6, 17), 53), "https": ((6,), 443), "ssh": ((6,), 22),
             "telnet": ((6,), 23)}
#: IOS ZBF idle-time defaults (seconds)
_ZBF_IDLE = {"tcp_idle_time": 3600, "udp_idle_time": 30, "icmp_idle_time": 10}


def rule_name(zp_name: str, class_name: str) -> str:
    """The inspection rule name of a (zone-pair, class): not a valid IOS
    rule name, so it never collides with an ``ip inspect name`` rule."""
    return "%s:%s" % (zp_name, class_name)


# --------------------------------------------------------------------------
# Compilation into the session engine's model

def _flatten(z, name, depth=0):
    """(protocols, has_acl) of a class-map through nested class-maps."""
    cm = z.class_maps.get(name)
    protos, acl = [], False
    if cm is None or depth > 16:
        return protos, acl
    for m in cm.matches:
        if m.kind == "protocol":
            if m.value not in protos:
                protos.append(m.value)
        elif m.kind == "access-group":
            acl = True
        elif m.kind == "class-map":
            p, a = _flatten(z, m.value, depth + 1)
            protos += [x for x in p if x not in protos]
            acl = acl or a
    return protos, acl


def _param(z, name, attr):
    pm = z.parameter_maps.get(name) if name else None
    v = getattr(pm, attr) if pm is not None else None
    if v is None:
        for g in ("global", "default"):
            gm = z.parameter_maps.get(g)
            if gm is not None and getattr(gm, attr) is not None:
                return getattr(gm, attr)
    return v


def _smtp_policy(z, policy_name):
    """The SMTP inspector controls of a layer 7 smtp policy-map:
    (max-data, command line maximum, {denied verb: log}, log long lines)."""
    pm = z.policy_maps.get(policy_name) if policy_name else None
    max_data = line_max = None
    verbs = {}
    line_log = False
    if pm is None:
        return max_data, line_max, verbs, line_log
    for c in pm.classes:
        if c.action != "reset":
            continue
        cm = z.class_maps.get(c.name)
        if cm is None:
            continue
        for m in cm.matches:
            if m.kind == "data-length":
                n = int(m.value)
                max_data = n if max_data is None else min(max_data, n)
            elif m.kind == "cmd-line-length":
                n = int(m.value)
                line_max = n if line_max is None else min(line_max, n)
                line_log = line_log or c.log
            elif m.kind == "cmd-verb":
                verbs[m.value.encode()] = verbs.get(m.value.encode(), False) or c.log
    return max_data, line_max, verbs, line_log


def compile_rules(router) -> dict:
    """{rule name: InspectRule} for every (zone-pair, class) with ``inspect``."""
    z = router.zbf
    out = {}
    for zp in z.zone_pairs.values():
        pm = z.policy_maps.get(zp.service_policy) if zp.service_policy else None
        if pm is None or pm.app is not None:
            continue
        for c in pm.classes:
            if c.action != "inspect" or c.name not in z.class_maps:
                continue
            protos, acl = _flatten(z, c.name)
            # layer 4 protocols: generic inspection (the class checked the port)
            for p4, (ips, _) in _L4_PORTS.items():
                if p4 in protos:
                    protos.remove(p4)
                    for ip_ in ips:
                        name = _PROTO_NAMES[ip_]
                        if name not in protos:
                            protos.append(name)
            if acl or not protos:
                protos = protos + [p for p in ("tcp", "udp", "icmp") if p not in protos]
            if "smtp" in protos and "esmtp" in protos:
                protos.remove("smtp")
            rule = InspectRule(rule_name(zp.name, c.name))
            # per class (IOS): read by the session table's create()
            rule.sessions_maximum = _param(z, c.parameter_map, "sessions_maximum")
            max_data, line_max, verbs, line_log = _smtp_policy(z, c.service_policy)
            # ZBF defaults (IOS): audit trail off, alerts on, idle times
            # 3600/30/10 s -- never the classic ip inspect globals
            audit = _param(z, c.parameter_map, "audit_trail")
            alert = _param(z, c.parameter_map, "alert")
            audit = False if audit is None else audit
            alert = True if alert is None else alert
            # per class too (IOS): None = the ip inspect globals
            synwait = _param(z, c.parameter_map, "tcp_synwait_time")
            finwait = _param(z, c.parameter_map, "tcp_finwait_time")
            dns = _param(z, c.parameter_map, "dns_timeout")
            for p in protos:
                attr = {"udp": "udp_idle_time", "icmp": "icmp_idle_time"}.get(p, "tcp_idle_time")
                timeout = _param(z, c.parameter_map, attr)
                if timeout is None:
                    timeout = _ZBF_IDLE[attr]
                if p == "sip" and _param(z, c.parameter_map, attr) is None:
                    timeout = None     # SIP over UDP and TCP: each its own idle time
                ip = InspectProtocol(p, alert=alert, audit_trail=audit, timeout=timeout,
                                     synwait=synwait, finwait=finwait, dns_timeout=dns)
                if p in ("smtp", "esmtp"):
                    if max_data is not None:
                        ip.max_data = max_data
                    # read by cbac.inspect.smtp (layer 7 policy)
                    ip.zbf_cmd_line_max = line_max
                    ip.zbf_cmd_line_log = line_log
                    ip.zbf_deny_verbs = verbs
                rule.protocols.append(ip)
            out[rule.name] = rule
    return out


def effective_globals(router) -> InspectGlobals:
    """The ``ip inspect`` globals with the parameter-maps' firewall-wide
    thresholds merged in (the lowest configured value wins)."""
    z = router.zbf
    g = dataclasses.replace(router.inspect)
    if not z.parameter_maps:
        return g
    d = InspectGlobals()
    for attr in GLOBAL_ONLY:
        vals = [getattr(pm, attr) for pm in z.parameter_maps.values()
                if getattr(pm, attr) is not None]
        if not vals:
            continue
        v = min(vals)
        cur = getattr(g, attr)
        setattr(g, attr, v if cur == getattr(d, attr) else min(cur, v))
    blocks = [pm.tcp_block_time for pm in z.parameter_maps.values()
              if pm.tcp_max_incomplete_host is not None and pm.tcp_block_time is not None]
    if blocks:
        g.tcp_block_time = max([g.tcp_block_time] + blocks)
    gm = z.parameter_maps.get("global") or z.parameter_maps.get("default")
    if gm is not None:
        if gm.alert is not None and gm.alert is False:
            g.alert_off = True
    # high marks below low marks after merging: keep them ordered
    if g.max_incomplete_low > g.max_incomplete_high:
        g.max_incomplete_low = g.max_incomplete_high
    if g.one_minute_low > g.one_minute_high:
        g.one_minute_low = g.one_minute_high
    return g


def engine_model(router):
    """The model the session table runs on: the router's, with the ZBF
    inspection rules added and the firewall-wide thresholds merged."""
    if not router.zbf.configured:
        return router
    rules = dict(router.inspect_rules)
    rules.update(compile_rules(router))
    return dataclasses.replace(router, inspect=effective_globals(router), inspect_rules=rules)


# --------------------------------------------------------------------------
# Per-flow decisions

class ClassCounters:
    __slots__ = ("packets", "bytes", "sessions", "last_created")

    def __init__(self):
        self.packets = 0
        self.bytes = 0
        self.sessions = 0
        self.last_created = None


class ZonePolicy:
    """Decides the fate of the first packet of a flow between zones.

    ``acls``: the ACL engine (``acls.get(name).check(pkt)``) for ``match
    access-group``.  Counters per (zone-pair, class) feed ``show
    policy-map type inspect zone-pair``."""

    def __init__(self, router_model, acls=None, clock=None):
        self.acls = acls
        self.clock = clock
        self.counters: dict = {}
        self.reconfigure(router_model)

    def reconfigure(self, router_model) -> None:
        self.commit(self.prepare(router_model))

    @staticmethod
    def prepare(router_model):
        """Build the tables of ``router_model`` without touching the running
        policy (an atomic reload: see Appliance.stage/commit)."""
        z = router_model.zbf
        zone_of = {i.name: i.zone for i in router_model.interfaces.values() if i.zone}
        pairs = {(zp.source, zp.destination): zp for zp in z.zone_pairs.values()}
        return (router_model, z, zone_of, pairs)

    def commit(self, plan) -> None:
        """Install a plan from :meth:`prepare`: assignments only."""
        self.model, self.zbf, self.zone_of, self.pairs = plan
        self.active = bool(self.zone_of)

    def clear_counters(self) -> None:
        self.counters.clear()

    def counter(self, zp_name, class_name, match=None) -> ClassCounters:
        """Counters of a (zone-pair, class), or of one of its match lines."""
        key = (zp_name, class_name) if match is None else (zp_name, class_name, match)
        c = self.counters.get(key)
        if c is None:
            c = self.counters[key] = ClassCounters()
        return c

    # -- classification -------------------------------------------------

    def _match(self, m, pkt, depth, dry=False):
        k = m.kind
        if k == "protocol":
            p = m.value
            if p in _APP_PORTS:
                return pkt.proto == 6 and pkt.dport in _APP_PORTS[p]
            l4 = _L4_PORTS.get(p) or _APP_L4.get(p)
            if l4 is not None:
                return pkt.proto in l4[0] and pkt.dport == l4[1]
            return _PROTO_NAMES.get(pkt.proto) == p
        if k == "access-group":
            acl = self.acls.get(m.value) if self.acls is not None else None
            if acl is None:
                return False
            if dry:     # packet-tracer: no ACL hit counted, no ACL log
                return acl.permits_fields(pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport,
                                          *((pkt.icmp_type, pkt.icmp_code) if pkt.proto == 1
                                            else (-1, -1)),
                                          tcp_flags=pkt.tcp_flags, nonfirst=pkt.frag != 0)
            return acl.check(pkt)
        if k == "class-map":
            return self._class_hit(m.value, pkt, depth + 1, dry) is not None
        return False

    def _class_hit(self, name, pkt, depth=0, dry=False):
        """None (no match) or the indexes of the class-map's match lines
        that made it match (match-any: the first; match-all: all)."""
        cm = self.zbf.class_maps.get(name)
        if cm is None or not cm.matches or depth > 16:
            return None
        if cm.match_any:
            for i, m in enumerate(cm.matches):
                if self._match(m, pkt, depth, dry):
                    return (i,)
            return None
        for m in cm.matches:
            if not self._match(m, pkt, depth, dry):
                return None
        return tuple(range(len(cm.matches)))

    def _class_matches(self, name, pkt, depth=0) -> bool:
        return self._class_hit(name, pkt, depth) is not None

    def classify(self, in_if: str, out_if: str, pkt, dry=False):
        """The zone decision for the first packet of a flow from ``in_if``
        to ``out_if`` (``"self"``: the router), without side effects (no
        counters, no logs; shared by :meth:`decide` and packet-tracer;
        ``dry``: the class-maps' access lists count no hit either).

        Returns ``(verdict, why, zone-pair, class, hit)``: ``verdict`` as
        :meth:`decide`'s; ``why`` one of ``not-zoned``, ``same-zone``,
        ``self-no-pair``, ``non-member``, ``no-zone-pair``, ``no-policy``,
        ``policy``; ``zone-pair``/``class`` the ZonePair and PolicyClass
        that decided (``policy`` only); ``hit`` the match line indexes
        of a matched class (None for class-default)."""
        zin = self.zone_of.get(in_if)
        if out_if == SELF:
            if zin is None:
                return NOT_ZONED, "not-zoned", None, None, None
            zp = self.pairs.get((zin, SELF))
            if zp is None:
                return PASS, "self-no-pair", None, None, None
            v, why, zp, c, hit = self._classify_policy(zp, pkt, dry)
            return (DROP if v == DROP else PASS), why, zp, c, hit
        zout = self.zone_of.get(out_if)
        if zin is None and zout is None:
            return NOT_ZONED, "not-zoned", None, None, None
        if zin == zout:
            # same zone: free, unless an intrazone zone-pair (IOS-XE) is configured
            zp = self.pairs.get((zin, zin))
            if zp is None:
                return PASS, "same-zone", None, None, None
            return self._classify_policy(zp, pkt, dry)
        if zin is None or zout is None:
            return DROP, "non-member", None, None, None
        zp = self.pairs.get((zin, zout))
        if zp is None:
            return DROP, "no-zone-pair", None, None, None
        return self._classify_policy(zp, pkt, dry)

    def _classify_policy(self, zp, pkt, dry=False):
        pm = self.zbf.policy_maps.get(zp.service_policy) if zp.service_policy else None
        if pm is None:
            return DROP, "no-policy", zp, None, None
        chosen = hit = None
        for c in pm.classes:
            if c.name == "class-default":
                continue
            hit = self._class_hit(c.name, pkt, 0, dry)
            if hit is not None:
                chosen = c
                break
        if chosen is None:
            chosen = pm.default_class()
        action = chosen.action or ("drop" if chosen.name == "class-default" else None)
        if action == "inspect":
            v = rule_name(zp.name, chosen.name)
        elif action == "pass":
            v = PASS
        else:
            v = DROP
        return v, "policy", zp, chosen, hit

    def decide(self, in_if: str, out_if: str, pkt):
        """``NOT_ZONED`` (ZBF does not apply), ``PASS``, ``DROP`` or the
        inspection rule name for the first packet of a flow from
        interface ``in_if`` to ``out_if`` (``"self"``: the router);
        counts it and logs it (``drop log``/``pass log``)."""
        v, why, zp, chosen, hit = self.classify(in_if, out_if, pkt)
        if chosen is None:
            return v
        if hit is not None:
            for i in hit:
                mc = self.counter(zp.name, chosen.name, i)
                mc.packets += 1
                mc.bytes += pkt.ip_len
        cnt = self.counter(zp.name, chosen.name)
        action = chosen.action or ("drop" if chosen.name == "class-default" else None)
        if action != "inspect":
            cnt.packets += 1
            cnt.bytes += pkt.ip_len
            if chosen.log:
                self._log(zp, chosen, pkt, action == "pass")
        return v

    def session_created(self, rule, now) -> None:
        zp, _, cls = rule.partition(":")
        c = self.counter(zp, cls)
        c.sessions += 1
        c.last_created = now

    def _log(self, zp, cls, pkt, passed):
        proto = _PROTO_NAMES.get(pkt.proto, str(pkt.proto))
        if pkt.proto in (6, 17):
            flow = "%s:%d %s:%d" % (ip_str(pkt.src), pkt.sport, ip_str(pkt.dst), pkt.dport)
        else:
            flow = "%s %s" % (ip_str(pkt.src), ip_str(pkt.dst))
        if passed:
            # cbac's wording, by analogy with DROP_PKT (IOS's text unverified)
            ios.message("FW", 6, "PASS_PKT",
                        "Passing %s session %s on zone-pair %s class %s with ip ident %d" % (
                            proto, flow, zp.name, cls.name, _ip_ident(pkt)))
        else:
            ios.message("FW", 6, "DROP_PKT",
                        "Dropping %s session %s on zone-pair %s class %s due to  DROP action "
                        "found in policy-map with ip ident %d" % (
                            proto, flow, zp.name, cls.name, _ip_ident(pkt)))


def _ip_ident(pkt) -> int:
    f, l3 = pkt.frame, pkt.l3
    return (f[l3 + 4] << 8) | f[l3 + 5]


# --------------------------------------------------------------------------
# show zone security / show zone-pair security /
# show policy-map type inspect zone-pair [NAME] [sessions]

def show_zone_security(router_model, name=None) -> str:
    z = router_model.zbf
    out = []
    if name is None or name == SELF:
        out += ["zone self", "  Description: System defined zone", ""]
    for zn in z.zones.values():
        if name is not None and zn.name != name:
            continue
        out.append("zone %s" % zn.name)
        if zn.description:
            out.append("  Description: %s" % zn.description)
        members = [i.name for i in router_model.interfaces.values() if i.zone == zn.name]
        if members:
            out.append("  Member Interfaces:")
            out += ["    %s" % m for m in members]
        out.append("")
    if name is not None and not out:
        return "%% Zone %s does not exist" % name
    return "\n".join(out).rstrip("\n")


def show_zone_pair_security(router_model) -> str:
    out = []
    for zp in router_model.zbf.zone_pairs.values():
        out.append("Zone-pair name %s" % zp.name)
        if zp.description:
            out.append("Description: %s" % zp.description)
        out.append("    Source-Zone %s  Destination-Zone %s " % (zp.source, zp.destination))
        out.append("    service-policy %s" % (zp.service_policy or "not configured"))
    return "\n".join(out)


def _match_text(m, z) -> str:
    if m.kind == "protocol":
        return "protocol %s" % m.value
    if m.kind == "access-group":
        return ("access-group %s" if m.value.isdigit() else "access-group name %s") % m.value
    if m.kind == "class-map":
        cm = z.class_maps.get(m.value)
        kind = ("match-any" if cm.match_any else "match-all") if cm is not None else "match-all"
        return "class-map %s %s" % (kind, m.value)
    if m.kind == "data-length":
        return "data-length gt %s" % m.value
    return m.kind


def _hms(seconds) -> str:
    s = int(max(seconds, 0))
    return "%02d:%02d:%02d" % (s // 3600, (s // 60) % 60, s % 60)


def show_policy_map_zone_pair(router_model, policy, sessions, name=None,
                              with_sessions=False) -> str:
    """``show policy-map type inspect zone-pair [NAME] [sessions]``."""
    from cbac.inspect.show import session_detail, session_line
    z = router_model.zbf
    pairs = [zp for zp in z.zone_pairs.values()
             if zp.service_policy and (name is None or zp.name == name)]
    if name is not None and name not in z.zone_pairs:
        return "%% Zone-pair %s does not exist" % name
    now = sessions.clock.seconds() if sessions is not None else 0.0
    by_rule = {}
    if sessions is not None:
        for s in sessions.sessions.values():
            if s.rule_name is not None and ":" in s.rule_name:
                by_rule.setdefault(s.rule_name, []).append(s)
    out = []
    for zp in pairs:
        pm = z.policy_maps.get(zp.service_policy)
        if pm is None:
            continue
        out += ["policy exists on zp %s" % zp.name, " Zone-pair: %s" % zp.name, "",
                "  Service-policy inspect : %s" % pm.name, ""]
        classes = [c for c in pm.classes if c.name != "class-default"]
        classes.append(pm.default_class())
        for c in classes:
            cm = z.class_maps.get(c.name)
            if c.name == "class-default":
                out.append("    Class-map: class-default (match-any)")
                out.append("      Match: any")
            elif cm is not None:
                out.append("    Class-map: %s (%s)" % (cm.name, "match-any" if cm.match_any
                                                      else "match-all"))
                for i, m in enumerate(cm.matches):
                    out.append("      Match: %s" % _match_text(m, z))
                    mc = policy.counters.get((zp.name, c.name, i)) if policy is not None else None
                    out.append("        %d packets, %d bytes" % (
                        mc.packets if mc else 0, mc.bytes if mc else 0))
            cnt = policy.counters.get((zp.name, c.name)) if policy is not None else None
            action = c.action or "drop"
            if action == "inspect":
                rule = rule_name(zp.name, c.name)
                live = by_rule.get(rule, [])
                out.append("      Inspect")
                if with_sessions:
                    for key, title in (("SIS_OPEN", "Established Sessions"),
                                       ("SIS_OPENING", "Half-open Sessions"),
                                       ("SIS_CLOSING", "Terminating Sessions")):
                        group = [s for s in live if s.sis == key]
                        if not group:
                            continue
                        out.append("        " + title)
                        for s in group:
                            out.append("        " + session_line(s))
                            out += ["        " + x for x in session_detail(s, now)]
                else:
                    n = [sum(1 for s in live if s.sis == k)
                         for k in ("SIS_OPEN", "SIS_OPENING", "SIS_CLOSING")]
                    out.append("        Session creations since subsystem startup or last "
                               "reset %d" % (cnt.sessions if cnt else 0))
                    out.append("        Current session counts (estab/half-open/terminating) "
                               "[%d:%d:%d]" % tuple(n))
                    last = cnt.last_created if cnt else None
                    out.append("        Last session created %s" % (
                        "never" if last is None else _hms(now - last)))
                if c.service_policy:
                    out.append("      Service-policy smtp : %s" % c.service_policy)
            else:
                if c.name == "class-default" and c.action is None:
                    out.append("      Drop (default action)")
                else:
                    out.append("      %s%s" % (action.capitalize(), " (log)" if c.log else ""))
                out.append("        %d packets, %d bytes" % (
                    cnt.packets if cnt else 0, cnt.bytes if cnt else 0))
            out.append("")
    return "\n".join(out).rstrip("\n")


def clear_sessions(sessions, name=None) -> int:
    """``clear zone-pair [NAME] inspect sessions``: delete (and reset) the
    sessions ZBF created (of one zone-pair)."""
    n = 0
    for s in list(sessions.sessions.values()):
        r = s.rule_name
        if r is None or ":" not in r or (name is not None and r.partition(":")[0] != name):
            continue
        sessions.reset_session(s, "clear")
        n += 1
    return n
