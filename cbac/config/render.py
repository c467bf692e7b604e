""":class:`cbac.config.model.RouterConfig` -> ``show running-config`` text.

IOS order and style: ``Building configuration...``, ``Current configuration
: N bytes``, ``!`` separators, one-space indented sub-commands, ``end``.
Only non-default values are printed, as IOS does.  Verbatim lines (commands
cbac accepts but does not act on) are printed back in their section of the
configuration.  ``parse(render(m)) == m`` holds for every model the parser
can produce.
"""

from __future__ import annotations

from cbac.config import names, zbf
from cbac.config.model import (
    SEVERITIES, AccessList, AclEntry, AddrMatch, InspectGlobals,
    InspectProtocol, Interface, NatTimeouts, PortMatch, RouterConfig, Secret,
    Verbatim)
from cbac.config.parser import (
    S_BOOT, S_GLOBAL, S_LINES, S_SECURITY, S_SERVICE, S_TAIL, _opens_block,
    verbatim_section)

__all__ = ["render", "render_body", "render_ace", "render_acl"]


def _verbatim(v: Verbatim, indent: str = "") -> list[str]:
    return [indent + v.text] + [indent + " " + c for c in v.children]


def _section(r: RouterConfig, section: int) -> list[str]:
    out = []
    for v in r.extra:
        if verbatim_section(v.text) == section:
            out += _verbatim(v)
            if v.children or _opens_block(v.text.lower().split()):
                out.append("!")          # ends the block for the parser
    return out


def _secret(s: Secret, encrypt: bool = False) -> str:
    """``TYPE VALUE``.  A clear ``secret`` (a model built in code) is shown
    hashed, never in clear; with ``service password-encryption`` a clear
    password is shown as type 7."""
    from cbac.config.passwords import hash_secret, stable_type7
    if s.kind == 0 and encrypt == "secret":
        return "9 %s" % hash_secret(s.value)
    if s.kind == 0 and encrypt is True:
        return "7 %s" % stable_type7(s.value)
    return "%d %s" % (s.kind, s.value)


# --------------------------------------------------------------------------
# Access lists

def _addr(a: AddrMatch) -> str:
    if a.is_any:
        return "any"
    if a.is_host:
        return "host %s" % a.address
    return "%s %s" % (a.address, a.wildcard)


def _ports(proto: str, p: PortMatch) -> str:
    return "%s %s" % (p.op, " ".join(names.port_name(proto, x) for x in p.ports))


def _proto(p) -> str:
    return p if isinstance(p, str) else names.protocol_name(p)


def render_ace(e: AclEntry, kind: str) -> str:
    """The text of one entry after the sequence number / list number:
    ``permit tcp any host 172.22.1.16 eq smtp``."""
    if e.action == "remark":
        return "remark %s" % (e.remark or "")
    if kind == "standard":
        a = e.source
        if a.is_any:
            s = "any"
        elif a.is_host:
            s = "host %s" % a.address
        else:
            s = "%s %s" % (a.address, a.wildcard)
        return "%s %s%s" % (e.action, s, " log" if e.log else "")
    proto = _proto(e.protocol)
    parts = [e.action, proto, _addr(e.source)]
    if e.source_port:
        parts.append(_ports(proto, e.source_port))
    parts.append(_addr(e.destination or AddrMatch()))
    if e.destination_port:
        parts.append(_ports(proto, e.destination_port))
    if e.icmp_type is not None:
        name = names.icmp_name(e.icmp_type, e.icmp_code)
        if name:
            parts.append(name)
        else:
            parts.append(str(e.icmp_type))
            if e.icmp_code is not None:
                parts.append(str(e.icmp_code))
    if e.established:
        parts.append("established")
    if e.fragments:
        parts.append("fragments")
    if e.log:
        parts.append(e.log)
    return " ".join(parts)


def _default_seqs(acl: AccessList) -> bool:
    return [e.seq for e in acl.entries] == [10 * (i + 1) for i in range(len(acl.entries))]


def render_acl(acl: AccessList) -> list[str]:
    """Numbered lists with default sequence numbers print as ``access-list N``
    lines; others as ``ip access-list`` blocks (sequence numbers shown only
    when they are not the default 10, 20, ...)."""
    plain = _default_seqs(acl)
    if acl.numbered and plain and acl.entries:
        return ["access-list %s %s" % (acl.name, render_ace(e, acl.kind)) for e in acl.entries]
    out = ["ip access-list %s %s" % (acl.kind, acl.name)]
    for e in acl.entries:
        text = render_ace(e, acl.kind)
        out.append(" " + text if plain else " %d %s" % (e.seq, text))
    return out


# --------------------------------------------------------------------------
# Inspection

def _inspect_globals(g: InspectGlobals) -> list[str]:
    d = InspectGlobals()
    out = []
    if g.audit_trail:
        out.append("ip inspect audit-trail")
    if g.alert_off:
        out.append("ip inspect alert-off")
    for attr, text in (("max_incomplete_low", "max-incomplete low"),
                       ("max_incomplete_high", "max-incomplete high"),
                       ("one_minute_low", "one-minute low"),
                       ("one_minute_high", "one-minute high"),
                       ("tcp_synwait_time", "tcp synwait-time"),
                       ("tcp_finwait_time", "tcp finwait-time"),
                       ("tcp_idle_time", "tcp idle-time"),
                       ("udp_idle_time", "udp idle-time"),
                       ("dns_timeout", "dns-timeout")):
        if getattr(g, attr) != getattr(d, attr):
            out.append("ip inspect %s %d" % (text, getattr(g, attr)))
    if (g.tcp_max_incomplete_host, g.tcp_block_time) != (d.tcp_max_incomplete_host, d.tcp_block_time):
        out.append("ip inspect tcp max-incomplete host %d block-time %d"
                   % (g.tcp_max_incomplete_host, g.tcp_block_time))
    return out


def inspect_line(rule_name: str, p: InspectProtocol) -> str:
    parts = ["ip inspect name", rule_name, p.protocol]
    if p.java_list is not None:
        parts += ["java-list", p.java_list]
    if p.alert is not None:
        parts += ["alert", "on" if p.alert else "off"]
    if p.audit_trail is not None:
        parts += ["audit-trail", "on" if p.audit_trail else "off"]
    if p.max_data is not None:
        parts += ["max-data", str(p.max_data)]
    if p.timeout is not None:
        parts += ["timeout", str(p.timeout)]
    if p.router_traffic:
        parts.append("router-traffic")
    if p.reset:
        parts.append("reset")
    if p.secure_login:
        parts.append("secure-login")
    return " ".join(parts)


# --------------------------------------------------------------------------
# Interfaces

def _interface(i: Interface) -> list[str]:
    out = ["interface %s" % i.name + (" " + i.subif_type if i.subif_type else "")]
    if i.description is not None:
        out.append(" description %s" % i.description)
    if i.dhcp:
        out.append(" ip address dhcp" + (" hostname %s" % i.dhcp_hostname if i.dhcp_hostname else ""))
    if i.address is not None:
        out.append(" ip address %s %s" % (i.address.ip, i.address.netmask))
    for s in i.secondary:
        out.append(" ip address %s %s secondary" % (s.ip, s.netmask))
    if i.address is None and not i.secondary and not i.dhcp and not i.name.startswith("Null"):
        out.append(" no ip address")
    if not i.unreachables:
        out.append(" no ip unreachables")
    if i.mtu != 1500:
        out.append(" ip mtu %d" % i.mtu)
    if i.access_group_in is not None:
        out.append(" ip access-group %s in" % i.access_group_in)
    if i.access_group_out is not None:
        out.append(" ip access-group %s out" % i.access_group_out)
    if i.nat is not None:
        out.append(" ip nat %s" % i.nat)
    if i.inspect_in is not None:
        out.append(" ip inspect %s in" % i.inspect_in)
    if i.inspect_out is not None:
        out.append(" ip inspect %s out" % i.inspect_out)
    if i.zone is not None:
        out.append(" zone-member security %s" % i.zone)
    for v in i.extra:
        out += _verbatim(v, " ")
    if i.arp_timeout != 14400:
        out.append(" arp timeout %d" % i.arp_timeout)
    if i.shutdown:
        out.append(" shutdown")
    return out


# --------------------------------------------------------------------------
# NAT

def _nat(r: RouterConfig) -> list[str]:
    n = r.nat
    out = []
    for p in n.pools.values():
        line = "ip nat pool %s %s %s " % (p.name, p.start, p.end)
        if p.netmask_form:
            line += "netmask %s" % _mask(p.prefix_length)
        else:
            line += "prefix-length %d" % p.prefix_length
        if p.type:
            line += " type %s" % p.type
        out.append(line)
    for d in n.dynamics:
        line = "ip nat %s source list %s " % (d.side, d.acl)
        line += ("pool %s" % d.pool) if d.pool is not None else ("interface %s" % d.interface)
        if d.overload:
            line += " overload"
        if d.add_route:
            line += " add-route"
        out.append(line)
    for s in n.statics:
        if s.network is not None:
            # one line for the whole network, at its first address
            if int(s.local) & ((1 << (32 - s.network)) - 1) == 0:
                out.append("ip nat %s source static network %s %s /%d%s" % (
                    s.side, s.local, s.global_, s.network, " extendable" if s.extendable else ""))
            continue
        parts = ["ip nat", s.side, "source static"]
        if s.protocol:
            parts.append(s.protocol)
        parts.append(str(s.local))
        if s.protocol:
            parts.append(str(s.local_port))
        if s.global_interface is not None:
            parts += ["interface", s.global_interface]
        else:
            parts.append(str(s.global_))
        if s.protocol:
            parts.append(str(s.global_port))
        if s.extendable:
            parts.append("extendable")
        if s.add_route:
            parts.append("add-route")
        out.append(" ".join(parts))
    d = NatTimeouts()
    for attr in ("timeout", "udp_timeout", "dns_timeout", "tcp_timeout",
                 "finrst_timeout", "icmp_timeout", "syn_timeout"):
        v = getattr(n.timeouts, attr)
        if v != getattr(d, attr):
            out.append("ip nat translation %s %s" % (attr.replace("_", "-"),
                                                      "never" if v is None else v))
    if n.timeouts.max_entries is not None:
        out.append("ip nat translation max-entries %d" % n.timeouts.max_entries)
    if n.timeouts.max_entries_all_host is not None:
        out.append("ip nat translation max-entries all-host %d" % n.timeouts.max_entries_all_host)
    for h, m in sorted(n.timeouts.max_entries_host.items()):
        out.append("ip nat translation max-entries host %s %d" % (h, m))
    for acl, m, _line in n.timeouts.max_entries_list:
        out.append("ip nat translation max-entries list %s %d" % (acl, m))
    for s in n.services:
        out.append("ip nat service list %s %s tcp port %d" % (s.acl, s.protocol, s.port))
    return out


def _mask(prefix: int) -> str:
    from ipaddress import IPv4Address
    return str(IPv4Address((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))


# --------------------------------------------------------------------------
# The whole configuration

def render_body(r: RouterConfig) -> list[str]:
    """The configuration lines from the first ``!`` through ``end``."""
    out = ["!"]
    head = ["version %s" % r.version] if r.version else []
    head += _section(r, S_SERVICE)
    if r.timestamps_debug:
        head.append("service timestamps debug %s" % r.timestamps_debug)
    if r.timestamps_log:
        head.append("service timestamps log %s" % r.timestamps_log)
    if r.password_encryption:
        head.append("service password-encryption")
    if head:
        out += head + ["!"]
    out += ["hostname %s" % r.hostname, "!"]
    boot = _section(r, S_BOOT)
    lg = r.logging
    if lg.buffered is not None:
        line = "logging buffered %d" % lg.buffered
        if lg.buffered_level != 7:
            line += " %s" % SEVERITIES[lg.buffered_level]
        boot.append(line)
    if lg.console_level != 7:
        boot.append("logging console %s" % SEVERITIES[lg.console_level])
    if lg.file is not None:
        boot.append("logging file %s %d %s" % (lg.file, lg.file_max, SEVERITIES[lg.file_level]))
    if boot:
        out += boot + ["!"]
    en = []
    if r.enable_secret:
        en.append("enable secret %s" % _secret(r.enable_secret, "secret"))
    if r.enable_password:
        en.append("enable password %s" % _secret(r.enable_password, r.password_encryption))
    if en:
        out += en + ["!"]
    g = _section(r, S_GLOBAL)
    if not r.source_route:
        g.append("no ip source-route")
    if r.ip_options is not None:
        g.append("ip options %s" % r.ip_options)
    if g:
        out += g + ["!"]
    users = []
    for u in r.users.values():
        line = "username %s" % u.name
        if u.privilege != 1:
            line += " privilege %d" % u.privilege
        if u.secret is not None:
            line += " secret %s" % _secret(u.secret, "secret")
        elif u.password is not None:
            line += " password %s" % _secret(u.password, r.password_encryption)
        else:
            line += " nopassword"
        users.append(line)
    if users:
        out += users + ["!"]
    lp = []
    if getattr(r, "login_block", None) is not None:
        lp.append("login block-for %d attempts %d within %d" % r.login_block)
    if getattr(r, "login_quiet_acl", None) is not None:
        lp.append("login quiet-mode access-class %s" % r.login_quiet_acl)
    if lp:
        out += lp + ["!"]
    sec = []
    if r.ssh.port != 2222:
        sec.append("ip ssh port %d" % r.ssh.port)
    sec += _inspect_globals(r.inspect)
    for rule in r.inspect_rules.values():
        for p in rule.protocols:
            sec.append(inspect_line(rule.name, p))
    if sec:
        out += sec + ["!"]
    s = _section(r, S_SECURITY)
    if s:
        out += s + ["!"]
    out += zbf.render_lines(r)
    for itf in r.interfaces.values():
        out += _interface(itf) + ["!"]
    tail = []
    for rt in r.routes:
        line = "ip route %s %s" % (rt.prefix.network_address, rt.prefix.netmask)
        if rt.interface:
            line += " %s" % rt.interface
        if rt.next_hop is not None:
            line += " %s" % rt.next_hop
        if rt.distance != 1:
            line += " %d" % rt.distance
        if rt.name is not None:
            line += " name %s" % rt.name
        if rt.permanent:
            line += " permanent"
        if rt.tag is not None:
            line += " tag %d" % rt.tag
        tail.append(line)
    tail += _nat(r)
    if tail:
        out += tail + ["!"]
    named = [a for a in r.acls.values() if not (a.numbered and a.entries and _default_seqs(a))]
    numbered = [a for a in r.acls.values() if a not in named]
    for a in named:
        out += render_acl(a)
    if named:
        out.append("!")
    logs = []
    if lg.trap_level != 6:
        logs.append("logging trap %s" % SEVERITIES[lg.trap_level])
    for h in lg.hosts:
        line = "logging host %s" % h.address
        if h.transport != "udp" or h.port is not None:
            line += " transport %s" % h.transport
            if h.port is not None:
                line += " port %d" % h.port
        logs.append(line)
    for a in numbered:
        logs += render_acl(a)
    if logs:
        out += logs + ["!"]
    t = _section(r, S_TAIL)
    for b in r.banners.values():
        # IOS layout: delimiter, the text on its own lines, delimiter.
        t.append("banner %s %s" % (b.kind, b.delimiter))
        if b.text:
            t += b.text.split("\n")
        t.append(b.delimiter)
    if t:
        out += t + ["!"]
    lines = _section(r, S_LINES)
    for v in r.vty:
        lines.append("line vty %d %d" % (v.first, v.last) if v.last != v.first
                     else "line vty %d" % v.first)
        if v.access_class is not None:
            lines.append(" access-class %s in" % v.access_class)
        if v.exec_timeout is not None:
            lines.append(" exec-timeout %d %d" % v.exec_timeout)
        for x in v.extra:
            lines += _verbatim(x, " ")
        lines.append(" login local" if v.login_local else " login")
        if v.login_authentication is not None:
            lines.append(" login authentication %s" % v.login_authentication)
        lines.append(" transport input %s" % v.transport_input)
    if lines:
        out += lines + ["!"]
    cb = []
    for b in r.ports.values():
        cb.append("cbac port %s %s" % (b.interface, b.device))
    from cbac.config.model import SESSION_LIMIT_DEFAULT
    if r.session_limit != SESSION_LIMIT_DEFAULT:
        cb.append("cbac session-limit %d" % r.session_limit)
    from cbac.config.model import SESSION_LIMIT_HOST_DEFAULT
    if r.session_limit_host != SESSION_LIMIT_HOST_DEFAULT:
        cb.append("cbac session-limit host %d" % r.session_limit_host)
    from cbac.config.model import SESSION_LIMIT_DEST_DEFAULT
    if r.session_limit_dest != SESSION_LIMIT_DEST_DEFAULT:
        cb.append("cbac session-limit destination %d" % r.session_limit_dest)
    if not r.fastpath_offload:
        cb.append("no cbac fastpath offload")
    red = getattr(r, "redundancy", None)
    if red is not None:
        from cbac.config.model import REDUNDANCY_PORT_DEFAULT
        cb.append("cbac redundancy peer %s interface %s key %s%s" % (
            red.peer, red.interface, red.key,
            "" if red.port == REDUNDANCY_PORT_DEFAULT else " port %d" % red.port))
    if r.ssh.authorized_keys is not None:
        cb.append("cbac ssh authorized-keys %s" % r.ssh.authorized_keys)
    if lg.tls_ca is not None:
        cb.append("cbac logging tls-ca %s" % lg.tls_ca)
    if lg.rfc5424:
        cb.append("cbac logging format rfc5424")
    if r.inspect.tcp_no_session != "drop":
        cb.append("cbac inspect tcp no-session %s" % r.inspect.tcp_no_session)
    for desc in getattr(r, "metrics_listen", ()):
        cb.append("cbac metrics listen %s" % desc)
    if r.smtp.starttls != "allow":
        cb.append("cbac smtp starttls %s" % r.smtp.starttls)
    if r.smtp.bare_lf != "reject":
        cb.append("cbac smtp bare-lf %s" % r.smtp.bare_lf)
    if cb:
        out += cb + ["!"]
    out.append("end")
    return out


def render(r: RouterConfig) -> str:
    """``show running-config`` output for the model."""
    body = "\n".join(render_body(r)) + "\n"
    return ("Building configuration...\n\nCurrent configuration : %d bytes\n"
            % len(body.encode("utf-8"))) + body
