"""``ip address dhcp``: the DHCP client (cbac.dataplane.dhcp) carried by
the router on the interface's own port, and the lease put to use.

- Sending: DISCOVER/REQUEST (and REBINDING's REQUEST) leave as broadcast
  frames on the interface (source 0.0.0.0 or the leased address, UDP 68 ->
  67); RENEWING's REQUEST is a unicast routed like any packet the router
  makes.  The kernel is never involved (its sockets do not see the port).
- Receiving: :func:`dhcp_input` takes every UDP 67 -> 68 datagram that
  arrives on such an interface for our MAC or broadcast, before anything
  else could forward it; it passes the interface's input ACL first, as on
  IOS (``permit udp any eq bootps any eq bootpc``), unless the router's own
  traffic is inspected (``ip inspect name X udp router-traffic``).
- The lease: :func:`apply_leases` (called at the end of
  ``Router.apply_config``) gives the interface the leased address, the
  connected route and a default route via the lease's gateway with
  administrative distance 254 (IOS: a static default route wins); PAT
  ``ip nat inside source list N interface X overload`` follows the address.
  The lease logs ``%DHCP-6-ADDRESS_ASSIGN`` as IOS.
- ``show dhcp lease``: :func:`show_dhcp_lease`, in IOS's layout.
"""

from __future__ import annotations

import struct

from twisted.logger import Logger

from cbac.dataplane.dhcp import STATE_NUMBERS, DhcpClient, ip_text
from cbac.dataplane.routes import RouteEntry
from cbac.log import ios
from cbac.packet import checksum as ck

log = Logger(namespace="cbac.dhcp")

DEFAULT_DISTANCE = 254
_BCAST_MAC = b"\xff" * 6


def is_dhcp(model_interface) -> bool:
    return bool(getattr(model_interface, "dhcp", False))


class DhcpInterface:
    """One interface's client and its lease."""

    def __init__(self, router, ifname):
        self.router = router
        self.ifname = ifname
        ri = router.interfaces[ifname]
        self.client = DhcpClient(ri.mac, router.clock, self.transmit, self.lease_changed,
                                 ifname=ifname,
                                 hostname=getattr(ri.model, "dhcp_hostname", None)
                                 or getattr(router.model, "hostname", None),
                                 probe=self.probe)
        self.lease = None

    def probe(self, address):
        """RFC 5227 ARP probe (sender address 0.0.0.0) for a new lease."""
        from cbac.packet.arp import build_request
        ri = self.router.interfaces.get(self.ifname)
        if ri is not None and not ri.shutdown:
            ri.port.send(build_request(ri.mac, 0, address), b"")

    def arp_seen(self, mac, sender, target):
        """An ARP packet arrived on the interface: a conflict if another
        station claims (or probes for) the address we are probing."""
        c = self.client
        if c.probing is None or mac == c.mac:
            return
        if sender == c.probing.address or (sender == 0 and target == c.probing.address):
            log.warn("{ifname}: {address} offered by DHCP is in use by {mac}; declined",
                     ifname=self.ifname, address=ip_text(c.probing.address), mac=mac.hex(":"))
            c.conflict(c.probing.address)

    # -- client -> wire ----------------------------------------------------

    def transmit(self, payload, src, dst):
        router = self.router
        ri = router.interfaces.get(self.ifname)
        if ri is None or ri.shutdown:
            return
        ip = build_udp(src, dst, 68, 67, payload, router._next_ip_id())
        router.router_traffic.outbound(ri, ip)       # ip inspect ... udp router-traffic
        if dst == 0xFFFFFFFF:
            frame = bytearray(_BCAST_MAC + ri.mac + b"\x08\x00") + ip
            ri.port.send(frame, b"")
        else:
            router._send_packet(bytearray(ip))

    # -- lease -> router ---------------------------------------------------

    def lease_changed(self, lease):
        old = self.lease
        self.lease = lease
        router = self.router
        if lease is not None and (old is None or old.address != lease.address
                                  or old.mask != lease.mask or old.router != lease.router):
            ios.message("DHCP", 6, "ADDRESS_ASSIGN",
                        "Interface %s assigned DHCP address %s, mask %s, hostname %s" % (
                            self.ifname, ip_text(lease.address), ip_text(lease.mask),
                            getattr(router.model, "hostname", "")))
        elif lease is None and old is not None:
            log.warn("{ifname}: DHCP lease of {address} lost; the interface has no address",
                     ifname=self.ifname, address=ip_text(old.address))
        if old is not None and lease is not None and old.address == lease.address \
                and old.mask == lease.mask and old.router == lease.router:
            return              # a renewal: nothing changes on the router
        router.apply_config(router.model)
        ri = router.interfaces.get(self.ifname)
        if lease is not None and ri is not None:
            router._send_gratuitous_arp(ri, lease.address)


def build_udp(src, dst, sport, dport, payload, ip_id=0, ttl=64) -> bytes:
    """An IPv4/UDP datagram with both checksums."""
    ulen = 8 + len(payload)
    udp = bytearray(struct.pack("!HHHH", sport, dport, ulen, 0)) + payload
    c = ck.checksum(udp, initial=ck.pseudo_header_sum(src, dst, 17, ulen))
    udp[6:8] = struct.pack("!H", c or 0xFFFF)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0 if dst == 0xFFFFFFFF else 0, 20 + ulen,
                                ip_id, 0, ttl, 17, 0, src.to_bytes(4, "big"), dst.to_bytes(4, "big")))
    hdr[10:12] = struct.pack("!H", ck.checksum(hdr))
    return bytes(hdr + udp)


# -- the router's side -------------------------------------------------------

def apply_leases(router) -> None:
    """End of ``Router.apply_config``: clients for the interfaces with
    ``ip address dhcp``, their leases on the interfaces, the routes."""
    clients = router.dhcp
    wanted = {name for name, ri in router.interfaces.items() if is_dhcp(ri.model)}
    running = getattr(router, "_dhcp_running", False)
    for name in [n for n in clients if n not in wanted]:
        _quiet_stop(clients.pop(name))          # reloaded without ip address dhcp
    for name in sorted(wanted):
        ri = router.interfaces[name]
        di = clients.get(name)
        if di is None:
            di = clients[name] = DhcpInterface(router, name)
        if ri.shutdown and di.client.running:
            _quiet_stop(di)                     # shutdown: the lease is given up
        elif running and not ri.shutdown and not di.client.running:
            di.client.on_lease = di.lease_changed
            di.client.start()
        lease = di.lease
        if lease is None or ri.shutdown:
            continue
        ri.address = lease.address
        ri.prefixlen = lease.prefixlen
        ri.addresses.add(lease.address)
        router.local[lease.address] = ri
        router.arp.add_static(ri.name, lease.address, ri.mac)
        net = lease.address & lease.mask
        router.routes.add(RouteEntry(net, lease.prefixlen, ri.name, None, 0, "C"))
        if lease.router is not None:
            router.routes.add(RouteEntry(0, 0, ri.name, lease.router, DEFAULT_DISTANCE, "S"))
    nat = router.nat
    if nat is not None and hasattr(nat, "set_interface_address"):
        nat.set_interface_address({name: (clients[name].lease.address if clients[name].lease else None)
                                   for name in wanted})


def _quiet_stop(di) -> None:
    """Stop a client from inside apply_config (no nested rebuild)."""
    di.client.on_lease = lambda lease: None
    di.client.stop()
    di.lease = None


def start_clients(router) -> None:
    router._dhcp_running = True
    for name, di in router.dhcp.items():
        ri = router.interfaces.get(name)
        if ri is not None and not ri.shutdown and not di.client.running:
            di.client.start()


def stop_clients(router) -> None:
    router._dhcp_running = False
    for di in router.dhcp.values():
        di.client.running = False
        di.client._cancel()


def link_up(router, ifname) -> None:
    di = router.dhcp.get(ifname)
    if di is not None:
        di.client.restart()


def arp_input(router, ri, sha, sender, target) -> None:
    di = router.dhcp.get(ri.name)
    if di is not None:
        di.arp_seen(bytes(sha), sender, target)


def dhcp_input(router, ri, frame, vnet) -> bool:
    """A frame on an ``ip address dhcp`` interface: True if it was a DHCP
    reply (UDP 67 -> 68) for us, handled here (given to the client, or
    dropped by the input ACL or as malformed) and never forwarded."""
    di = router.dhcp.get(ri.name)
    if di is None or len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return False
    if frame[23] != 17 or (frame[14] >> 4) != 4:
        return False
    ihl = (frame[14] & 15) * 4
    l4 = 14 + ihl
    if ihl < 20 or len(frame) < l4 + 8:
        return False
    if frame[l4:l4 + 4] != b"\x00\x43\x00\x44":           # 67 -> 68
        return False
    dst_mac = bytes(frame[0:6])
    if dst_mac != ri.mac and dst_mac != _BCAST_MAC:
        return False
    if (frame[20] & 0x3F) or frame[21]:                    # a fragment
        router._drop(ri, "dhcp-fragment")
        return True
    if not ck.ip_checksum_ok(frame, 14, ihl):
        router._drop(ri, "malformed-ip-checksum")
        return True
    ip_len = (frame[16] << 8) | frame[17]
    ulen = (frame[l4 + 4] << 8) | frame[l4 + 5]
    if ip_len > len(frame) - 14 or ulen < 8 or ihl + ulen > ip_len:
        router._drop(ri, "malformed-dhcp")
        return True
    csum = (frame[l4 + 6] << 8) | frame[l4 + 7]
    partial = bool(vnet) and (vnet[0] & 1)                 # NEEDS_CSUM: made by a local stack
    if csum and not partial:
        src = int.from_bytes(frame[26:30], "big")
        dst = int.from_bytes(frame[30:34], "big")
        if ck.checksum(frame, l4, l4 + ulen, ck.pseudo_header_sum(src, dst, 17, ulen)) != 0:
            router._drop(ri, "malformed-udp-checksum")
            return True
    acl = ri.acl_in
    if acl is not None:
        from cbac.packet.view import parse_frame
        pkt = parse_frame(frame, vnet)
        pkt.in_port = ri
        if not acl.check(pkt) and not router.router_traffic.permits_return(ri, pkt, consumed=True):
            router._drop(ri, "acl-in")
            return True
    di.client.receive(bytes(frame[l4 + 8:l4 + ulen]))
    return True


# -- show dhcp lease -----------------------------------------------------------

def _hms(seconds) -> str:
    s = int(seconds)
    return "%02d:%02d:%02d" % (s // 3600, (s // 60) % 60, s % 60)


def show_dhcp_lease(router) -> str:
    """IOS ``show dhcp lease``."""
    out = []
    for name in sorted(router.dhcp):
        di = router.dhcp[name]
        c = di.client
        lease = c.lease
        cid = c.client_id[1:]
        hexdump = cid.hex().upper()
        lines = []
        if lease is not None:
            lines += [
                "Temp IP addr: %s  for peer on Interface: %s" % (ip_text(lease.address), name),
                "Temp  sub net mask: %s" % ip_text(lease.mask),
                "   DHCP Lease server: %s, state: %d %s" % (ip_text(lease.server),
                                                            STATE_NUMBERS[c.state], c.state),
                "   DHCP transaction id: %X" % c.xid,
                "   Lease: %d secs,  Renewal: %d secs,  Rebind: %d secs" % (
                    lease.lease_time, lease.t1, lease.t2),
            ]
            if lease.router is not None:
                lines.append("Temp default-gateway addr: %s" % ip_text(lease.router))
        else:
            lines += [
                "Temp IP addr: 0.0.0.0  for peer on Interface: %s" % name,
                "Temp  sub net mask: 0.0.0.0",
                "   DHCP Lease server: 0.0.0.0, state: %d %s" % (STATE_NUMBERS[c.state], c.state),
                "   DHCP transaction id: %X" % c.xid,
                "   Lease: 0 secs,  Renewal: 0 secs,  Rebind: 0 secs",
            ]
        nxt = c.next_timer
        lines.append("   Next timer fires after: %s" % (_hms(nxt) if nxt is not None else "never"))
        lines.append("   Retry count: %d   Client-ID: %s" % (c.retries, cid.decode("ascii", "replace")))
        chunks = [hexdump[i:i + 32] for i in range(0, len(hexdump), 32)] or [""]
        lines.append("   Client-ID hex dump: %s" % chunks[0])
        for more in chunks[1:]:
            lines.append("                       %s" % more)
        if c.hostname:
            lines.append("   Hostname: %s" % c.hostname)
        out.append("\n".join(lines))
    return "\n\n".join(out)


__all__ = ["DhcpInterface", "apply_leases", "dhcp_input", "show_dhcp_lease", "build_udp"]
