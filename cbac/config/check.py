"""Semantic checks of a parsed configuration (cross references, overlaps,
device bindings).  The parser checks each line alone; this module checks
the lines against each other.

``check(router, devices=None, strict=False)`` returns diagnostics.  With
``strict`` (used when the appliance starts) a ``cbac port`` naming a Linux
device that does not exist is an error; otherwise (``--check``) a warning,
so a configuration can be checked on another machine.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

from cbac.config.errors import ERROR, WARNING, Diagnostic
from cbac.config import zbf
from cbac.config.model import RouterConfig

__all__ = ["check", "system_devices"]


def system_devices(path: str = "/sys/class/net") -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


def check(router: RouterConfig, devices: Optional[Iterable[str]] = None, strict: bool = False,
          filename: str = "<config>") -> list[Diagnostic]:
    out: list[Diagnostic] = []

    def add(sev, lineno, msg, text=""):
        out.append(Diagnostic(filename, lineno or 0, sev, msg, text))

    r = router
    itfs = r.interfaces
    acls = r.acls
    used_rules = set()

    # -- interfaces: references ----------------------------------------------
    for itf in itfs.values():
        for d in ("in", "out"):
            rule = getattr(itf, "inspect_" + d)
            if rule is not None:
                used_rules.add(rule)
                if rule not in r.inspect_rules:
                    add(WARNING, itf.lines.get("inspect_" + d, itf.lineno),
                        "interface %s: inspection rule %s is not defined; nothing is inspected %s"
                        % (itf.name, rule, "inbound" if d == "in" else "outbound"),
                        "ip inspect %s %s" % (rule, d))
            acl = getattr(itf, "access_group_" + d)
            if acl is not None and acl not in acls:
                # IOS permits everything through a missing list; cbac refuses
                # the configuration instead (a typo must not open the box).
                add(ERROR, itf.lines.get("access_group_" + d, itf.lineno),
                    "interface %s: access list %s is not defined (IOS would permit all "
                    "traffic %s; cbac refuses the configuration)"
                    % (itf.name, acl, "inbound" if d == "in" else "outbound"),
                    "ip access-group %s %s" % (acl, d))

    # -- VRFs: cbac has one routing table ------------------------------------
    for itf in itfs.values():
        for v in itf.extra:
            w = v.text.lower().split()
            if w[:2] == ["vrf", "forwarding"] or w[:3] == ["ip", "vrf", "forwarding"]:
                if itf.shutdown:
                    add(WARNING, v.lineno, "interface %s: VRFs are not implemented; the "
                        "interface is shut down" % itf.name, v.text)
                else:
                    add(ERROR, v.lineno, "interface %s: VRFs are not implemented: cbac has one "
                        "routing table and would route between this interface and the others"
                        % itf.name, v.text)

    # -- inspection rules ----------------------------------------------------
    for rule in r.inspect_rules.values():
        if rule.name not in used_rules:
            add(WARNING, rule.lineno, "inspection rule %s is not applied to any interface"
                % rule.name)
        for p in rule.protocols:
            if p.router_traffic and not any(i.inspect_out == rule.name for i in itfs.values()):
                # cbac.dataplane.selftraffic inspects the router's own traffic
                # leaving an interface where the rule is applied out
                add(WARNING, p.lineno,
                    "inspection rule %s: %s router-traffic has no effect: the rule is not "
                    "applied out on any interface, so the router's own %s traffic is not "
                    "inspected (its replies meet the input ACLs)"
                    % (rule.name, p.protocol, p.protocol))
            if p.java_list is not None:
                acl = acls.get(p.java_list)
                if acl is None:
                    add(WARNING, p.lineno,
                        "java-list %s is not defined: all Java applets are blocked" % p.java_list)
                elif acl.kind != "standard":
                    add(ERROR, p.lineno,
                        "java-list %s must be a standard access list" % p.java_list)

    g = r.inspect
    if g.max_incomplete_low > g.max_incomplete_high:
        add(ERROR, 0, "ip inspect max-incomplete low %d is above high %d"
            % (g.max_incomplete_low, g.max_incomplete_high))
    if g.one_minute_low > g.one_minute_high:
        add(ERROR, 0, "ip inspect one-minute low %d is above high %d"
            % (g.one_minute_low, g.one_minute_high))

    # -- overlapping subnets -------------------------------------------------
    # Sorted by (first address, larger first): a network overlaps an earlier
    # one exactly when it starts before the furthest end seen so far
    # (O(n log n), not every pair).
    nets = []
    for n, itf in enumerate(itfs.values()):
        for k, a in enumerate(([itf.address] if itf.address else []) + list(itf.secondary)):
            nets.append((int(a.network.network_address), -a.network.num_addresses,
                         (n, k), itf, a))
    order = {key: i for i, (_, _, key, _, _) in enumerate(sorted(nets, key=lambda x: x[2]))}
    nets.sort(key=lambda x: (x[0], x[1]))
    end, holder = -1, None
    found = []
    seen = set()
    for start, negsize, key, itf, a in nets:
        if start <= end:
            ha, hitf, hkey = holder
            # report on the one written later, as before
            (ia, x), (ib, b), kb = ((hitf, ha), (itf, a), key) if order[hkey] < order[key] \
                else ((itf, a), (hitf, ha), hkey)
            if ia is ib:
                msg = "interface %s: %s overlaps %s on the same interface" % (
                    ia.name, b.with_netmask, x.with_netmask)
            else:
                msg = "interface %s: %s overlaps with %s" % (ib.name, b.network, ia.name)
            if kb not in seen:          # one error per address line
                seen.add(kb)
                found.append((order[kb], ib.lineno, msg, "ip address %s %s" % (b.ip, b.netmask)))
        if start - negsize - 1 > end:
            end, holder = start - negsize - 1, (a, itf, key)
    for _, lineno, msg, text in sorted(found):
        add(ERROR, lineno, msg, text)

    # -- NAT -----------------------------------------------------------------
    nat = r.nat
    for d in nat.dynamics:
        if d.acl not in acls:
            add(ERROR, d.lineno, "NAT: access list %s is not defined" % d.acl)
        if d.pool is not None and d.pool not in nat.pools:
            add(ERROR, d.lineno, "NAT: pool %s is not defined" % d.pool)
        if d.interface is not None and d.interface not in itfs:
            add(ERROR, d.lineno, "NAT: interface %s is not defined" % d.interface)
        elif d.interface is not None and itfs[d.interface].address is None \
                and not itfs[d.interface].dhcp:
            add(ERROR, d.lineno, "NAT: interface %s has no IP address" % d.interface)
    side_of_pool = {}
    for d in nat.dynamics:
        if d.pool is None:
            continue
        other = side_of_pool.setdefault(d.pool, d.side)
        if other != d.side:
            add(ERROR, d.lineno, "NAT: pool %s is used by both 'ip nat inside source' and "
                "'ip nat outside source'" % d.pool)
    for acl, _n, lineno in nat.timeouts.max_entries_list:
        if acl not in acls:
            add(ERROR, lineno, "NAT: access list %s is not defined" % acl)
    for s in nat.statics:
        if s.global_interface is not None and s.global_interface not in itfs:
            add(ERROR, s.lineno, "NAT: interface %s is not defined" % s.global_interface)
    for pool in nat.pools.values():
        if pool.type is not None:
            add(WARNING, pool.lineno, "NAT: pool %s: type %s is accepted, not acted on; "
                "the pool is used as a plain pool" % (pool.name, pool.type))
    for s in nat.services:
        add(WARNING, s.lineno, "NAT: ip nat service is accepted, not acted on: FTP is "
            "inspected and translated on port 21 only")
        if s.acl not in acls:
            add(ERROR, s.lineno, "NAT: access list %s is not defined" % s.acl)
    if nat.statics or nat.dynamics:
        sides = {i.nat for i in itfs.values()}
        for side in ("inside", "outside"):
            if side not in sides:
                add(WARNING, 0, "NAT is configured but no interface has 'ip nat %s'" % side)

    # -- routes --------------------------------------------------------------
    for rt in r.routes:
        if rt.interface is not None and rt.interface.startswith("Null"):
            if rt.interface != "Null0":
                add(ERROR, rt.lineno, "ip route: interface %s does not exist (only Null0)"
                    % rt.interface)
            continue                       # a discard route
        if rt.interface is not None and rt.interface not in itfs:
            add(ERROR, rt.lineno, "ip route: interface %s is not defined" % rt.interface)
        elif rt.interface is not None and r.ports and rt.interface not in r.ports:
            add(WARNING, rt.lineno, "ip route %s via %s: the interface has no 'cbac port' "
                "binding; traffic to %s is discarded" % (rt.prefix, rt.interface, rt.prefix))

    # -- vty -------------------------------------------------------------------
    # With 'aaa new-model' IOS authenticates vty logins with a method list
    # (the named one, else 'default', else the local users); cbac always
    # uses the local users.  Lists that name servers (RADIUS, TACACS+) would
    # be replaced by local accounts: refused.
    aaa = any(x.text.lower().split()[:2] == ["aaa", "new-model"] for x in r.extra)
    lists = {}
    for x in r.extra:
        w = x.text.split()
        if [t.lower() for t in w[:3]] == ["aaa", "authentication", "login"] and len(w) > 4:
            lists[w[3]] = ([t.lower() for t in w[4:]], x.lineno)
    for v in r.vty:
        if v.access_class is not None and v.access_class not in acls:
            add(ERROR, v.lines.get("access_class", v.lineno),
                "line vty %d %d: access-class %s is not defined (IOS would "
                "let every address connect; cbac refuses the configuration)"
                % (v.first, v.last, v.access_class))
        at = v.lines.get("login_authentication", v.lineno)
        if not aaa:
            if v.login_authentication is not None:
                add(WARNING, at, "line vty %d %d: login authentication %s has no effect "
                    "without 'aaa new-model' (as on IOS); the line's login setting is used"
                    % (v.first, v.last, v.login_authentication))
            continue
        name = v.login_authentication or "default"
        if name not in lists:
            if v.login_authentication is not None and name != "default":
                add(ERROR, at, "line vty %d %d: login authentication %s: method list not "
                    "defined (aaa authentication login %s ...)" % (v.first, v.last, name, name))
            continue                       # IOS: the local users, as cbac
        methods, lineno = lists[name]
        if all(m in ("local", "local-case") for m in methods):
            continue
        if any(m.startswith("group") or m in ("radius", "tacacs+", "krb5", "krb5-telnet",
                                              "ldap", "cache") for m in methods):
            add(ERROR, at if v.login_authentication else lineno,
                "line vty %d %d: login method list %s uses authentication servers (%s); cbac "
                "only authenticates local users and would accept them instead"
                % (v.first, v.last, name, " ".join(methods)))
        else:
            add(WARNING, at if v.login_authentication else lineno,
                "line vty %d %d: login method list %s (%s): cbac authenticates local users "
                "instead" % (v.first, v.last, name, " ".join(methods)))

    router_addrs = {str(i.address.ip) for i in r.interfaces.values() if i.address is not None}
    for desc in r.metrics_listen:
        addr = desc.rpartition("interface=")[2]
        if addr in router_addrs:
            add(WARNING, 0, "cbac metrics listen %s: %s is a router interface address; the data "
                "plane hands only the console to the host there, so the metrics are not reachable "
                "through it (use a management address)" % (desc, addr))
    if r.login_quiet_acl is not None and r.login_quiet_acl not in acls:
        add(WARNING, 0, "login quiet-mode access-class %s is not defined: in quiet mode "
            "no host may log in" % r.login_quiet_acl)

    # -- logging -------------------------------------------------------------
    for h in r.logging.hosts:
        if h.transport == "tls" and r.logging.tls_ca is None:
            add(WARNING, h.lineno, "logging host %s transport tls without 'cbac logging tls-ca': "
                "the server certificate is not verified" % h.address)

    # -- port bindings -------------------------------------------------------
    devs = None
    for b in r.ports.values():
        if b.interface not in itfs:
            add(ERROR, b.lineno, "cbac port: interface %s is not defined" % b.interface,
                "cbac port %s %s" % (b.interface, b.device))
            continue
        if devs is None:
            devs = set(devices) if devices is not None else system_devices()
        if b.device not in devs:
            add(ERROR if strict else WARNING, b.lineno,
                "cbac port: network device %s does not exist" % b.device,
                "cbac port %s %s" % (b.interface, b.device))
    red = getattr(r, "redundancy", None)
    if red is not None:
        text = "cbac redundancy peer %s interface %s" % (red.peer, red.interface)
        itf = itfs.get(red.interface)
        if itf is None or itf.address is None:
            add(ERROR, red.lineno, "cbac redundancy: interface %s is not defined with an "
                "'ip address' (the sync link's own address)" % red.interface, text)
        elif red.peer not in itf.address.network or red.peer == itf.address.ip:
            add(ERROR, red.lineno, "cbac redundancy: peer %s is not another address of "
                "interface %s's subnet %s" % (red.peer, red.interface, itf.address.network),
                text)
        if red.interface in r.ports:
            add(ERROR, red.lineno, "cbac redundancy: the sync interface %s is a data port "
                "('cbac port'); the sync link is a kernel interface of its own" % red.interface,
                text)
    if r.ports:
        for itf in itfs.values():
            if red is not None and itf.name == red.interface:
                continue
            if (itf.address is not None or itf.dhcp) and not itf.shutdown \
                    and itf.name not in r.ports:
                add(WARNING, itf.lineno, "interface %s has an address but no 'cbac port' "
                    "binding: it does not forward traffic" % itf.name)

    # -- zone-based policy firewall ------------------------------------------
    zbf.check(r, add)

    out.sort(key=lambda d: d.line)
    return out
