"""Wiring helpers for the session engine.

:func:`app_factories` builds the ``app_factories`` mapping
:class:`~cbac.inspect.session.SessionTable` hosts: ``smtp``, ``esmtp``,
``ftp``, ``http``.  The ``http`` entry binds each connection's
``java-list`` (a standard ACL of permitted applet sources; a missing ACL
blocks every applet) from the rule line in ``ctx.rule``.
"""

from __future__ import annotations

from twisted.logger import Logger

log = Logger(namespace="cbac.inspect")


def _java_permitted(acls, name):
    if acls is None:
        return lambda addr: False
    acl = acls.get(name)
    if acl is None:
        return lambda addr: False          # placeholder ACL: block all applets

    def permitted(addr, _acl=acl):
        try:
            return _acl.permits_fields(6, addr)
        except Exception:
            return False
    return permitted


def app_factories(router_model=None, acls=None) -> dict:
    """``{"smtp": f, "esmtp": f, "ftp": f, "http": f}`` with ``f(ctx) ->
    IStreamInspector``."""
    from cbac.inspect import dns, ftp, http, imap, pop3, pptp, rtsp, sip, smtp

    def http_factory(ctx, _f=http.factory):
        jl = getattr(ctx.rule, "java_list", None)
        if jl is None:
            return _f(ctx)
        return _f(ctx, java_permitted=_java_permitted(acls, jl))
    http_factory.name = "http"

    out = dict(smtp.FACTORIES)
    out["ftp"] = ftp.factory
    out["http"] = http_factory
    out["pop3"] = pop3.factory
    out["imap"] = imap.factory
    out["sip"] = sip.factory
    out["rtsp"] = rtsp.factory
    out["pptp"] = pptp.factory
    out["dns"] = dns.tcp_factory            # TCP 53 (UDP: the DnsGuard)
    return out


__all__ = ["app_factories"]
