"""cbac.nat: IOS NAT (static, dynamic pools, PAT, outside static).

:class:`Nat` (``Nat(router_model, clock, acls=None)``) is the engine the
router and the session engine call; :class:`Translation` is one entry.
Order of operations: docs/nat-order.md.
"""

from cbac.nat.table import DROP, INBOUND, OUTBOUND, PORT_RANGES, Nat
from cbac.nat.translation import Translation, ios_duration

__all__ = ["Nat", "Translation", "DROP", "INBOUND", "OUTBOUND", "PORT_RANGES",
           "ios_duration"]
