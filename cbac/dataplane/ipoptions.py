"""IPv4 options at ingress: ``ip options drop|ignore`` and source routes.

Called by the router for every packet whose header is longer than 20
bytes (IHL > 5), before reassembly, session lookup or any ACL, so it also
covers packets of established sessions and each fragment.  Such packets
never take a fast path: the Python fast path (cbac/dataplane/router.py
``_fast``) and the kernel one (cbac/dataplane/bpf/fastpath.bpf.c) both
take only version 4 / IHL 5 headers.

* Malformed options (an option without its length byte, a length below 2
  or running past the header) are always dropped:
  :class:`~cbac.packet.errors.MalformedPacket` ("bad-ip-option"), counted
  as ``malformed-bad-ip-option``.
* Loose and strict source routes (LSRR 131, SSRR 137) are always dropped
  and counted as ``source-route``: cbac does not implement source routing,
  and forwarding such a packet on its destination address would let it
  reach, through the next source-routing hop, an address the ACLs and
  inspection never saw (RFC 7126 section 4.3/4.4: drop by default).
  ``no ip source-route`` therefore changes nothing; ``ip source-route``
  cannot turn it on.
* ``ip options drop``: every other packet with options is dropped too,
  counted as ``ip-options`` (IOS: "drop all IP options packets that it
  receives", those addressed to the router included).
* Default and ``ip options ignore``: the packet is handled as if it had no
  options; the options go on unchanged (cbac records no route or
  timestamp in RR/TS options).
"""

from __future__ import annotations

from typing import Optional

from cbac.packet.ipv4 import OPT_LSRR, OPT_SSRR, parse_options

DROP_SOURCE_ROUTE = "source-route"
DROP_OPTIONS = "ip-options"


def verdict(frame, l3: int, mode: Optional[str]) -> Optional[str]:
    """The drop reason for a packet with IP options, or None to forward.
    ``mode``: the router's ``ip options`` setting (None, "drop",
    "ignore").  Raises MalformedPacket for malformed options."""
    for t, _off, _ln in parse_options(frame, l3):
        if t == OPT_LSRR or t == OPT_SSRR:
            return DROP_SOURCE_ROUTE
    if mode == "drop":
        return DROP_OPTIONS
    return None
