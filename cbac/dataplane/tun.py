"""In-band management: the router's own services through a TUN device.

IOS answers SSH on its interface addresses.  cbac does the same without
giving the kernel the data ports: a TUN device (``cbac0``) carries the
router's interface addresses as /32s; packets the data plane receives for
a console service (TCP to ``ip ssh port`` on a router address) are written
to the TUN device, so the kernel's TCP stack serves cbac's SSH listener;
what the kernel sends back (read from the device) is routed out through
the data plane like any packet the router originates.

The kernel only routes replies from the router's addresses into the
device: a policy-routing rule per address (``from ADDR lookup 2222``, and
a default route in that table via the device), so the host's own routing
(a management port) is untouched.  Only the console port is handed over:
nothing else listening on the host becomes reachable from the data ports.

The reader is our own small ``IReadDescriptor`` (twisted.pair's TUN path is
broken, see the data-plane reference).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess

from twisted.internet.interfaces import IReadDescriptor

from cbac.packet.checksum import checksum, pseudo_header_sum
from twisted.logger import Logger
from zope.interface import implementer

log = Logger(namespace="cbac.tun")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
ROUTE_TABLE = "2222"


class TunError(Exception):
    pass


def _ip(*args):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise TunError("ip %s: %s" % (" ".join(args), r.stderr.strip()))


def finish_checksum(ip_packet):
    """The packet with a complete TCP/UDP checksum, or ``None`` if the
    checksum is wrong.

    Frames from a veth peer with tx checksumming on (the lab; containers)
    arrive CHECKSUM_PARTIAL: the field holds only the pseudo-header sum.
    Forwarded frames keep that state on the way out, but a TUN device
    is a receiver: the kernel verifies the checksum and silently drops the
    segment (the in-band console timed out).  Console traffic is a few
    packets, so finishing the sum here in full costs nothing that matters.
    A checksum that is neither complete nor partial is dropped, as a host
    would drop it.
    """
    b = bytes(ip_packet)
    if len(b) < 20:
        return None
    ihl = (b[0] & 0x0F) * 4
    proto = b[9]
    if proto not in (6, 17) or (int.from_bytes(b[6:8], "big") & 0x3FFF) or len(b) < ihl + 8:
        return b
    off = ihl + (16 if proto == 6 else 6)
    if len(b) < off + 2:
        return None
    field = int.from_bytes(b[off:off + 2], "big")
    if proto == 17 and field == 0:
        return b                                  # UDP without a checksum
    src = int.from_bytes(b[12:16], "big")
    dst = int.from_bytes(b[16:20], "big")
    length = len(b) - ihl
    pseudo = pseudo_header_sum(src, dst, proto, length)
    if checksum(b, ihl, None, pseudo) == 0:
        return b                                  # complete and correct
    if field != pseudo and field != (~pseudo & 0xFFFF):
        return None                               # corrupt
    seg = bytearray(b)
    seg[off:off + 2] = b"\0\0"
    c = checksum(seg, ihl, None, pseudo)
    if proto == 17 and c == 0:
        c = 0xFFFF
    seg[off:off + 2] = c.to_bytes(2, "big")
    return bytes(seg)


@implementer(IReadDescriptor)
class ManagementTun:
    """The TUN device of the in-band console."""

    def __init__(self, reactor, name="cbac0", addresses=(), deliver=None):
        self.reactor = reactor
        self.name = name
        self.addresses = list(addresses)     # dotted strings
        self.deliver = deliver               # callable(bytearray ip packet) -> None
        self.fd = None
        self.rx = self.tx = self.errors = 0

    def start(self) -> None:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            ifr = struct.pack("16sH", self.name.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        try:
            self._configure()
        except TunError:
            self.stop()
            raise
        self.reactor.addReader(self)

    def _configure(self) -> None:
        with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.name, "w") as f:
            f.write("1")
        for name in ("rp_filter",):
            for dev in (self.name,):
                try:
                    with open("/proc/sys/net/ipv4/conf/%s/%s" % (dev, name), "w") as f:
                        f.write("0")
                except OSError:
                    pass
        _ip("link", "set", self.name, "up")
        for addr in self.addresses:
            _ip("addr", "add", addr + "/32", "dev", self.name)
            subprocess.run(["ip", "rule", "del", "from", addr, "lookup", ROUTE_TABLE],
                           capture_output=True)
            _ip("rule", "add", "from", addr, "lookup", ROUTE_TABLE)
        _ip("route", "replace", "default", "dev", self.name, "table", ROUTE_TABLE)

    def stop(self) -> None:
        if self.fd is None:
            return
        try:
            self.reactor.removeReader(self)
        except Exception:
            pass
        for addr in self.addresses:
            subprocess.run(["ip", "rule", "del", "from", addr, "lookup", ROUTE_TABLE],
                           capture_output=True)
        os.close(self.fd)
        self.fd = None

    def write(self, ip_packet) -> None:
        """Hand a packet from the data plane to the kernel."""
        if self.fd is None:
            return
        ip_packet = finish_checksum(ip_packet)
        if ip_packet is None:
            self.errors += 1
            return
        try:
            os.write(self.fd, ip_packet)
            self.tx += 1
        except OSError:
            self.errors += 1

    # IReadDescriptor
    def fileno(self):
        return self.fd if self.fd is not None else -1

    def logPrefix(self):
        return "ManagementTun(%s)" % self.name

    def connectionLost(self, reason):
        self.stop()

    def doRead(self):
        for _ in range(64):
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return None
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return None
                self.errors += 1
                return None
            if not data:
                return None
            self.rx += 1
            if len(data) >= 20 and data[0] >> 4 == 4 and self.deliver is not None:
                try:
                    self.deliver(bytearray(data))
                except Exception:
                    log.failure("delivering a console packet")
        return None
