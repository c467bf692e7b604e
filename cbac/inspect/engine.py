"""Wiring helpers for the session engine.

:func:`app_factories` builds the ``app_factories`` mapping
:class:`~cbac.inspect.session.SessionTable` hosts: ``smtp``, ``esmtp``,
``ftp``, ``http``.  The ``http`` entry binds each connection's
``java-list`` (a standard ACL of permitted applet sources; a missing ACL
blocks every applet) from the rule line in ``ctx.rule``.  An inspector
module that fails to import is left out (its protocol then falls back to
generic ``tcp`` inspection when the rule has ``tcp``) and logged.
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
    out = {}
    try:
        from cbac.inspect import smtp
        out.update(smtp.FACTORIES)
    except Exception:
        log.failure("cbac: SMTP inspector unavailable")
    try:
        from cbac.inspect import ftp
        out["ftp"] = ftp.factory
    except Exception:
        log.failure("cbac: FTP inspector unavailable")
    try:
        from cbac.inspect import http

        def http_factory(ctx, _f=http.factory):
            rule = ctx.rule
            jl = getattr(rule, "java_list", None)
            if jl is None:
                return _f(ctx)
            return _f(ctx, java_permitted=_java_permitted(acls, jl))
        http_factory.name = "http"
        out["http"] = http_factory
    except Exception:
        log.failure("cbac: HTTP inspector unavailable")
    return out


__all__ = ["app_factories"]
