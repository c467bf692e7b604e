"""cbac.acl: IOS access lists compiled into an index.

* :class:`AclSet` (``AclSet(router_model, clock)``): ``get(name)``,
  ``show(name=None)``, ``clear_counters(name=None)``, ``update(model)``.
* :class:`CompiledAcl`: ``check(pkt)``, ``check_fields(...)``,
  ``lookup_fields(...)``, ``permits_fields(...)``, ``hits(seq)``.

Matching semantics (first match by sequence number, implicit deny,
fragments): :mod:`cbac.acl.entry`.  Index: :mod:`cbac.acl.compiled`.
Logging and its rate limit: :mod:`cbac.acl.aclog`.
"""

from cbac.acl.aclset import AclSet, CompiledAcl, format_entry

__all__ = ["AclSet", "CompiledAcl", "format_entry"]
