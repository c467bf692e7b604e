"""What the router does when a port's link goes down or comes back.

A port (:class:`cbac.dataplane.linux.LinuxPort`, or the memory port of the
tests) calls ``link_listener(port, up)``; the router hands that to
:func:`link_changed`, which

- logs it as IOS does::

    %LINK-3-UPDOWN: Interface Ethernet2/1, changed state to down
    %LINEPROTO-5-UPDOWN: Line protocol on Interface Ethernet2/1, changed state to down

- forgets the ARP entries learnt on the interface and the packets waiting
  for resolution there (the hosts behind it may have changed while it was
  down), and the routes sessions cached through it, so the next packet
  resolves and routes again;
- while it is down, traffic routed to it is dropped and its senders get
  ICMP host unreachable (the router checks the egress link).  Unlike IOS
  the routes stay in the table: withdrawing them would let the traffic
  fall back to a shorter prefix (the default route) and leave by the other
  port, e.g. a statically translated inside address sent back outside;
- on up, re-reads the port's MAC and announces the interface's addresses
  with gratuitous ARP, so neighbours that flushed their caches on carrier
  loss learn us again at once.

An interface that is ``shutdown`` in the configuration logs nothing (IOS
shows it "administratively down" whatever the cable does).
"""

from __future__ import annotations

from cbac.log import ios


def link_is_up(port) -> bool:
    """The port's link state (ports without one are always up)."""
    return getattr(port, "link_up", True)


def link_changed(router, port, up: bool) -> None:
    ri = router.interfaces.get(port.name)
    if ri is None:
        return
    state = "up" if up else "down"
    if not ri.shutdown:
        ios.message("LINK", 3, "UPDOWN", "Interface %s, changed state to %s" % (ri.name, state))
        ios.message("LINEPROTO", 5, "UPDOWN",
                    "Line protocol on Interface %s, changed state to %s" % (ri.name, state))
    _forget_neighbours(router, ri.name)
    _forget_cached_routes(router, ri)
    if up and not ri.shutdown:
        mac = bytes(port.mac)
        if mac != ri.mac:
            ri.mac = mac
            for addr in ri.addresses:
                router.arp.add_static(ri.name, addr, mac)
        for addr in sorted(ri.addresses):
            router._send_gratuitous_arp(ri, addr)
        if getattr(router, "dhcp", None) and ri.name in router.dhcp:
            from cbac.dataplane.dhcpport import link_up
            link_up(router, ri.name)       # confirm the lease (or start over)


def _forget_neighbours(router, ifname: str) -> None:
    arp = router.arp
    for key in [k for k, e in arp.entries.items() if k[0] == ifname and not e.static]:
        del arp.entries[key]
    for key in [k for k in arp.pending if k[0] == ifname]:
        p = arp.pending.pop(key)
        arp.queued -= len(p.frames)
        arp.dropped += len(p.frames)


def _forget_cached_routes(router, ri) -> None:
    sessions = router.sessions
    if sessions is None:
        return
    for sess in sessions.sessions.values():
        route = sess.route
        for d in (0, 1):
            hop = route[d]
            if hop is not None and hop[0] is ri:
                if route.__class__ is tuple:
                    # shared by sessions (Router._route_out): replaced, not changed
                    route = sess.route = (None, route[1]) if d == 0 else (route[0], None)
                else:
                    route[d] = None


__all__ = ["link_changed", "link_is_up"]
