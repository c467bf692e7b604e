"""The DHCP client of ``ip address dhcp`` (RFC 2131), sans-I/O.

:class:`DhcpClient` is a state machine: it is fed the DHCP messages that
arrive for its interface (:meth:`DhcpClient.receive`, the UDP payload) and
hands what it sends to ``transmit(payload, src, dst)`` (``dst`` 0xFFFFFFFF:
broadcast); time comes from an injected ``IReactorTime`` (tests use
``twisted.internet.task.Clock``).  It reports the lease with
``on_lease(lease)`` (a new or renewed :class:`Lease`) and
``on_lease(None)`` (the lease is gone: expired or refused).  It never
touches a socket: the router carries its messages on the interface's own
port (cbac.dataplane.dhcpport).

States and timers (RFC 2131 section 4.4)::

    INIT -> SELECTING  DISCOVER broadcast, retransmitted after 4, 8, 16,
                       32, 64, 64 ... s (+-1 s)
         -> REQUESTING the first acceptable OFFER: REQUEST broadcast with
                       the server identifier and the offered address;
                       4 tries, then back to INIT
         -> PROBING    ACK of a new address: ``probe(address)`` (the router
                       sends an ARP probe, RFC 5227) and wait PROBE_WAIT s;
                       ``conflict(address)`` (someone answers for it) ->
                       DECLINE, INIT again after DECLINE_WAIT s (4.4.1)
         -> BOUND      the lease is used; T1 (option 58, default half
                       the lease), T2 (59, default 7/8)
    BOUND  --T1--> RENEWING   REQUEST unicast to the server, ciaddr set;
                              retransmitted after half the time left to T2
                              (at least 60 s)
    RENEWING --T2--> REBINDING REQUEST broadcast; again after half the time
                              left to expiry (at least 60 s)
    lease expiry -> INIT (on_lease(None)), and discovery starts again
    NAK in REQUESTING/RENEWING/REBINDING -> INIT (on_lease(None) if bound)

Messages are checked before they are believed: BOOTREPLY, our transaction
id, our hardware address, a DHCP message type, a non-zero usable
``yiaddr``, a subnet mask that is a mask, a lease time, and (after the
OFFER) the server we chose.  Anything else is counted and ignored.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Optional

MAGIC = b"\x63\x82\x53\x63"
BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
                 7: "RELEASE", 8: "INFORM"}

OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN = 15
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_REQUEST = 55
OPT_MAX_SIZE = 57
OPT_T1 = 58
OPT_T2 = 59
OPT_CLIENT_ID = 61

BROADCAST = 0xFFFFFFFF
INFINITE = 0xFFFFFFFF

_HDR = struct.Struct("!BBBBIHHIIII16s64s128s")      # 236 bytes

# states, with the numbers IOS's "show dhcp lease" prints
INIT, SELECTING, REQUESTING, PROBING, BOUND, RENEWING, REBINDING = (
    "Init", "Selecting", "Requesting", "Probing", "Bound", "Renewing", "Rebinding")
STATE_NUMBERS = {INIT: 0, SELECTING: 1, REQUESTING: 3, PROBING: 4, BOUND: 5, RENEWING: 6,
                 REBINDING: 7}

REQUEST_TRIES = 4
MIN_RETRANSMIT = 60.0
PROBE_WAIT = 1.0
DECLINE_WAIT = 10.0


class DhcpError(ValueError):
    """A message that is not a well-formed DHCP message."""


def _ip(b) -> int:
    return int.from_bytes(b, "big")


def _ipb(n: int) -> bytes:
    return (n & 0xFFFFFFFF).to_bytes(4, "big")


def ip_text(n: int) -> str:
    return "%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)


class Message:
    """One DHCP message (the fields a client uses)."""

    __slots__ = ("op", "xid", "secs", "flags", "ciaddr", "yiaddr", "siaddr", "giaddr",
                 "chaddr", "options")

    def __init__(self, op=BOOTREQUEST, xid=0, chaddr=b"\0" * 6, ciaddr=0, yiaddr=0, siaddr=0,
                 giaddr=0, flags=0, secs=0, options=None):
        self.op, self.xid, self.chaddr = op, xid, bytes(chaddr)
        self.ciaddr, self.yiaddr, self.siaddr, self.giaddr = ciaddr, yiaddr, siaddr, giaddr
        self.flags, self.secs = flags, secs
        self.options = dict(options or {})

    @property
    def type(self) -> Optional[int]:
        v = self.options.get(OPT_MESSAGE_TYPE)
        return v[0] if v and len(v) == 1 else None

    def ip_option(self, code) -> Optional[int]:
        v = self.options.get(code)
        return _ip(v[:4]) if v is not None and len(v) >= 4 else None

    def u32_option(self, code) -> Optional[int]:
        v = self.options.get(code)
        return struct.unpack("!I", v)[0] if v is not None and len(v) == 4 else None

    def encode(self) -> bytes:
        head = _HDR.pack(self.op, 1, 6, 0, self.xid, self.secs, self.flags, self.ciaddr,
                         self.yiaddr, self.siaddr, self.giaddr, self.chaddr.ljust(16, b"\0"),
                         b"", b"")
        opts = bytearray(MAGIC)
        for code, value in self.options.items():
            value = bytes(value)
            while True:           # long options are split (RFC 3396)
                chunk, value = value[:255], value[255:]
                opts += bytes((code, len(chunk))) + chunk
                if not value:
                    break
        opts.append(OPT_END)
        msg = head + bytes(opts)
        return msg + b"\0" * max(0, 300 - len(msg))      # BOOTP minimum size

    @classmethod
    def decode(cls, data) -> "Message":
        data = bytes(data)
        if len(data) < _HDR.size + 4:
            raise DhcpError("truncated")
        (op, htype, hlen, _hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
         _sname, _file) = _HDR.unpack_from(data)
        if htype != 1 or hlen != 6:
            raise DhcpError("not Ethernet")
        if data[_HDR.size:_HDR.size + 4] != MAGIC:
            raise DhcpError("no magic cookie")
        options: dict = {}
        i = _HDR.size + 4
        n = len(data)
        while i < n:
            code = data[i]
            if code == OPT_PAD:
                i += 1
                continue
            if code == OPT_END:
                break
            if i + 1 >= n or i + 2 + data[i + 1] > n:
                raise DhcpError("option %d overruns the message" % code)
            length = data[i + 1]
            options[code] = options.get(code, b"") + data[i + 2:i + 2 + length]
            i += 2 + length
        return cls(op, xid, chaddr[:6], ciaddr, yiaddr, siaddr, giaddr, flags, secs, options)


class Lease:
    """What an ACK gave us."""

    __slots__ = ("address", "mask", "router", "server", "lease_time", "t1", "t2", "obtained",
                 "dns", "domain")

    def __init__(self, address, mask, router, server, lease_time, t1, t2, obtained, dns=(),
                 domain=None):
        self.address, self.mask, self.router, self.server = address, mask, router, server
        self.lease_time, self.t1, self.t2, self.obtained = lease_time, t1, t2, obtained
        self.dns, self.domain = tuple(dns), domain

    @property
    def prefixlen(self) -> int:
        return bin(self.mask).count("1")

    @property
    def expires(self) -> float:
        return self.obtained + self.lease_time

    def __eq__(self, other):
        return isinstance(other, Lease) and all(
            getattr(self, k) == getattr(other, k) for k in ("address", "mask", "router", "server"))

    def __repr__(self):
        return "<Lease %s/%d via %s from %s, %ds>" % (
            ip_text(self.address), self.prefixlen, ip_text(self.router or 0),
            ip_text(self.server), self.lease_time)


def _is_mask(m: int) -> bool:
    inv = ~m & 0xFFFFFFFF
    return m != 0 and (inv & (inv + 1)) == 0


def _default_mask(addr: int) -> int:
    first = addr >> 24
    return 0xFF000000 if first < 128 else 0xFFFF0000 if first < 192 else 0xFFFFFF00


def client_id(mac: bytes, ifname: str) -> bytes:
    """IOS's client identifier: ``cisco-MAC-IF`` (``cisco-0200.ac16.0110-Et2/0``)."""
    m = mac.hex()
    short = ifname[:2] + "".join(c for c in ifname if c.isdigit() or c in "/.:")
    return ("cisco-%s.%s.%s-%s" % (m[0:4], m[4:8], m[8:12], short)).encode()


class DhcpClient:
    """The client of one interface (see the module docstring)."""

    def __init__(self, mac: bytes, clock, transmit, on_lease, ifname="", hostname=None,
                 rng=None, probe=None):
        self.mac = bytes(mac)
        self.probe = probe          # probe(address): send an ARP probe (None: no check)
        self.probing: Optional[Lease] = None
        self.clock = clock
        self.transmit = transmit
        self.on_lease = on_lease
        self.ifname = ifname
        self.hostname = hostname
        self.rng = rng or random.Random(os.urandom(8))
        self.client_id = b"\0" + client_id(self.mac, ifname)
        self.state = INIT
        self.xid = 0
        self.lease: Optional[Lease] = None
        self.offer: Optional[Message] = None
        self.started_at = 0.0
        self.tries = 0
        self.retries = 0            # IOS "Retry count": messages sent without an answer
        self._timer = None
        self._next_at = None
        self.counters = {"sent": 0, "received": 0, "ignored": 0, "naks": 0, "expired": 0,
                         "declined": 0}
        self.running = False

    # --- life cycle --------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self._discover()

    def stop(self) -> None:
        """Stop (the address is kept by nobody: ``on_lease(None)`` if bound)."""
        self.running = False
        self._cancel()
        had = self.lease is not None
        self.lease = None
        self.state = INIT
        if had:
            self.on_lease(None)

    def restart(self) -> None:
        """The link came back: confirm the lease (REQUEST as in RENEWING
        but broadcast) or start over."""
        if not self.running:
            return
        if self.lease is not None and self.clock.seconds() < self.lease.expires:
            self.state = REBINDING
            self.tries = 0
            self._send_request(broadcast=True)
            self._arm(min(4.0, self.lease.expires - self.clock.seconds()), self._rebind_retry)
        else:
            self._discover()

    # --- timers ------------------------------------------------------------

    def _cancel(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._next_at = None

    def _arm(self, delay, fn):
        self._cancel()
        delay = max(0.0, delay)
        self._next_at = self.clock.seconds() + delay
        self._timer = self.clock.callLater(delay, fn)

    @property
    def next_timer(self) -> Optional[float]:
        """Seconds until the next timer fires (``show dhcp lease``)."""
        if self._next_at is None:
            return None
        return max(0.0, self._next_at - self.clock.seconds())

    def _backoff(self) -> float:
        base = min(64.0, 4.0 * (2 ** min(self.tries, 4)))
        return base + self.rng.uniform(-1.0, 1.0)

    # --- sending -----------------------------------------------------------

    def _message(self, mtype, ciaddr=0, extra=None) -> Message:
        secs = min(0xFFFF, int(self.clock.seconds() - self.started_at))
        opts = {OPT_MESSAGE_TYPE: bytes((mtype,)), OPT_CLIENT_ID: self.client_id}
        if mtype in (DISCOVER, REQUEST):
            opts[OPT_MAX_SIZE] = struct.pack("!H", 1500)
            opts[OPT_PARAM_REQUEST] = bytes((OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_DOMAIN,
                                             OPT_LEASE_TIME, OPT_T1, OPT_T2))
            if self.hostname:
                opts[OPT_HOSTNAME] = self.hostname.encode()[:255]
        opts.update(extra or {})
        return Message(BOOTREQUEST, self.xid, self.mac, ciaddr=ciaddr, secs=secs,
                       options=opts)

    def _send(self, msg, src=0, dst=BROADCAST):
        self.counters["sent"] += 1
        self.transmit(msg.encode(), src, dst)

    def _discover(self):
        self._cancel()
        self.state = SELECTING
        self.xid = self.rng.getrandbits(32)
        self.started_at = self.clock.seconds()
        self.offer = None
        self.tries = 0
        self._send_discover()

    def _send_discover(self):
        if self.state != SELECTING:
            return
        self._send(self._message(DISCOVER))
        self._arm(self._backoff(), self._discover_retry)

    def _discover_retry(self):
        self.tries += 1
        self.retries += 1
        self._send_discover()

    def _send_request(self, broadcast):
        lease = self.lease
        if self.state == REQUESTING:
            o = self.offer
            msg = self._message(REQUEST, extra={
                OPT_REQUESTED_IP: _ipb(o.yiaddr),
                OPT_SERVER_ID: _ipb(o.ip_option(OPT_SERVER_ID))})
            self._send(msg)
            return
        # RENEWING / REBINDING: ciaddr, no server id, no requested ip
        msg = self._message(REQUEST, ciaddr=lease.address)
        if broadcast:
            self._send(msg, src=lease.address, dst=BROADCAST)
        else:
            self._send(msg, src=lease.address, dst=lease.server)

    def _request_retry(self):
        if self.state != REQUESTING:
            return
        self.tries += 1
        self.retries += 1
        if self.tries >= REQUEST_TRIES:
            self._discover()
            return
        self._send_request(broadcast=True)
        self._arm(self._backoff(), self._request_retry)

    # --- BOUND / RENEWING / REBINDING --------------------------------------

    def _bind(self, msg: Message, lease: Lease):
        self._cancel()
        self.lease = lease
        self.state = BOUND
        self.tries = 0
        self.retries = 0
        self.offer = None
        self.on_lease(lease)            # new or renewed (the receiver compares)
        if lease.lease_time == INFINITE:
            return
        self._arm(lease.obtained + lease.t1 - self.clock.seconds(), self._renew)

    def _renew(self):
        if self.lease is None:
            return
        self.state = RENEWING
        self._send_request(broadcast=False)
        self._arm(self._half_until(self.lease.obtained + self.lease.t2), self._renew_retry)

    def _half_until(self, deadline):
        left = deadline - self.clock.seconds()
        if left <= 0:
            return 0.0
        return min(left, max(MIN_RETRANSMIT, left / 2.0))

    def _renew_retry(self):
        lease = self.lease
        if lease is None:
            return
        now = self.clock.seconds()
        if now >= lease.obtained + lease.t2:
            self._rebind()
            return
        self.retries += 1
        self._send_request(broadcast=False)
        self._arm(self._half_until(lease.obtained + lease.t2), self._renew_retry)

    def _rebind(self):
        if self.lease is None:
            return
        self.state = REBINDING
        self._send_request(broadcast=True)
        self._arm(self._half_until(self.lease.expires), self._rebind_retry)

    def _rebind_retry(self):
        lease = self.lease
        if lease is None:
            return
        if self.clock.seconds() >= lease.expires:
            self._expire()
            return
        self.retries += 1
        self._send_request(broadcast=True)
        self._arm(self._half_until(lease.expires), self._rebind_retry)

    def _expire(self):
        self.counters["expired"] += 1
        self.lease = None
        self.on_lease(None)
        self._discover()

    # --- receiving ---------------------------------------------------------

    def receive(self, payload) -> bool:
        """A UDP payload that arrived on port 68 of our interface.
        Returns True when it was a message for us that we acted on."""
        if not self.running:
            return False
        try:
            msg = Message.decode(payload)
        except DhcpError:
            self.counters["ignored"] += 1
            return False
        if msg.op != BOOTREPLY or msg.xid != self.xid or msg.chaddr != self.mac or msg.type is None:
            self.counters["ignored"] += 1
            return False
        self.counters["received"] += 1
        t = msg.type
        if t == OFFER and self.state == SELECTING:
            return self._offer(msg)
        if t == ACK and self.state in (REQUESTING, RENEWING, REBINDING):
            return self._ack(msg)
        if t == NAK and self.state in (REQUESTING, RENEWING, REBINDING):
            return self._nak(msg)
        self.counters["ignored"] += 1
        return False

    @staticmethod
    def _usable(addr) -> bool:
        first = addr >> 24
        return addr not in (0, BROADCAST) and first not in (0, 127) and first < 224

    def _offer(self, msg) -> bool:
        server = msg.ip_option(OPT_SERVER_ID)
        if not self._usable(msg.yiaddr) or server is None:
            self.counters["ignored"] += 1
            return False
        self.offer = msg
        self.state = REQUESTING
        self.tries = 0
        self._send_request(broadcast=True)
        self._arm(self._backoff(), self._request_retry)
        return True

    def _ack(self, msg) -> bool:
        server = msg.ip_option(OPT_SERVER_ID)
        if self.state == REQUESTING:
            chosen = self.offer.ip_option(OPT_SERVER_ID)
            if server is not None and server != chosen:
                self.counters["ignored"] += 1
                return False
            server = chosen
        elif self.state == RENEWING and server is None:
            server = self.lease.server
        elif server is None:
            server = self.lease.server if self.lease else None
        if server is None or not self._usable(msg.yiaddr):
            self.counters["ignored"] += 1
            return False
        if self.state in (RENEWING, REBINDING) and self.lease is not None \
                and msg.yiaddr != self.lease.address:
            # a different address while renewing: take the new lease as new
            self.lease = None
            self.on_lease(None)
        lease_time = msg.u32_option(OPT_LEASE_TIME)
        if lease_time is None or lease_time == 0:
            self.counters["ignored"] += 1
            return False
        mask = msg.ip_option(OPT_SUBNET_MASK)
        if mask is None:
            mask = _default_mask(msg.yiaddr)
        if not _is_mask(mask) or mask == BROADCAST:
            self.counters["ignored"] += 1
            return False
        router = msg.ip_option(OPT_ROUTER)
        if router is not None and ((router & mask) != (msg.yiaddr & mask) or router == msg.yiaddr):
            router = None           # a gateway off the subnet is not used
        if lease_time == INFINITE:
            t1 = t2 = INFINITE
        else:
            t1 = msg.u32_option(OPT_T1)
            t2 = msg.u32_option(OPT_T2)
            if t2 is None or not 0 < t2 < lease_time:
                t2 = lease_time * 0.875
            if t1 is None or not 0 < t1 < t2:
                t1 = min(lease_time * 0.5, t2 * 0.9)
        dns = []
        v = msg.options.get(OPT_DNS, b"")
        for i in range(0, len(v) - 3, 4):
            dns.append(_ip(v[i:i + 4]))
        domain = msg.options.get(OPT_DOMAIN)
        lease = Lease(msg.yiaddr, mask, router, server, lease_time, t1, t2,
                      self.clock.seconds(), dns,
                      domain.decode("ascii", "replace") if domain else None)
        if self.probe is not None and (self.lease is None or self.lease.address != lease.address):
            # a new address: is anyone using it already? (RFC 2131 4.4.1)
            self._cancel()
            self.state = PROBING
            self.probing = lease
            self.probe(lease.address)
            self._arm(PROBE_WAIT, self._probed)
            return True
        self._bind(msg, lease)
        return True

    def _probed(self):
        lease, self.probing = self.probing, None
        if lease is None or self.state != PROBING:
            return
        self._bind(None, lease)

    def conflict(self, address) -> bool:
        """Someone else answered for ``address`` (an ARP reply or request
        from another MAC).  While probing it: DECLINE and start over."""
        lease = self.probing
        if self.state != PROBING or lease is None or address != lease.address:
            return False
        self.probing = None
        self.counters["declined"] += 1
        self._send(self._message(DECLINE, extra={OPT_REQUESTED_IP: _ipb(lease.address),
                                                OPT_SERVER_ID: _ipb(lease.server)}))
        self.state = INIT
        self._arm(DECLINE_WAIT, self._discover)
        return True

    def _nak(self, msg) -> bool:
        server = msg.ip_option(OPT_SERVER_ID)
        if self.state == REQUESTING and server is not None \
                and server != self.offer.ip_option(OPT_SERVER_ID):
            self.counters["ignored"] += 1
            return False
        self.counters["naks"] += 1
        had = self.lease is not None
        self.lease = None
        if had:
            self.on_lease(None)
        self._discover()
        return True


__all__ = ["DhcpClient", "Lease", "Message", "client_id", "ip_text"]
