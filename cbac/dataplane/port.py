"""Port building blocks: counters, the virtio-net header, the memory port.

``MemoryPort`` is the port of the unit tests: what the router sends is kept
in ``sent`` (and handed to a connected peer), what a test ``inject``\\ s is
delivered to the attached receiver.  It behaves like the Linux port where a
test can see it: a plain frame longer than the MTU is refused (``EMSGSIZE``,
counted in ``tx_errors``) instead of silently passing.
"""

from zope.interface import implementer

from cbac.interfaces import IPort
# The virtio-net header and MAC helpers live with the packet codecs; these
# names are the ports' vocabulary for them.
from cbac.packet.ethernet import ETH_HLEN, VLAN_HLEN, mac_bytes
from cbac.packet.vnet import F_DATA_VALID as VIRTIO_NET_HDR_F_DATA_VALID
from cbac.packet.vnet import F_NEEDS_CSUM as VIRTIO_NET_HDR_F_NEEDS_CSUM
from cbac.packet.vnet import GSO_ECN as VIRTIO_NET_HDR_GSO_ECN
from cbac.packet.vnet import GSO_NONE as VIRTIO_NET_HDR_GSO_NONE
from cbac.packet.vnet import GSO_TCPV4 as VIRTIO_NET_HDR_GSO_TCPV4
from cbac.packet.vnet import GSO_TCPV6 as VIRTIO_NET_HDR_GSO_TCPV6
from cbac.packet.vnet import GSO_UDP as VIRTIO_NET_HDR_GSO_UDP
from cbac.packet.vnet import GSO_UDP_L4 as VIRTIO_NET_HDR_GSO_UDP_L4
from cbac.packet.vnet import HDR as VNET_HDR
from cbac.packet.vnet import HDR_LEN as VNET_HDR_LEN
from cbac.packet.vnet import ZERO as ZERO_VNET
from cbac.packet.vnet import build as make_vnet
from cbac.packet.vnet import is_plain as is_plain_vnet
from cbac.packet.vnet import parse as parse_vnet


def max_plain_frame(mtu, frame):
    """Largest frame length the kernel accepts without GSO: MTU + Ethernet
    header (+ 4 for an 802.1Q tag)."""
    limit = mtu + ETH_HLEN
    if len(frame) >= 14 and frame[12] == 0x81 and frame[13] == 0x00:
        limit += VLAN_HLEN
    return limit


def mac_text(mac):
    return ":".join("%02x" % b for b in mac)


class PortCounters:
    """Per-port counters (IOS ``show interfaces``: input/output packets and
    bytes, drops, errors).

    - ``rx_dropped``: frames the kernel dropped before we read them
      (``PACKET_STATISTICS`` tp_drops, socket buffer full).
    - ``tx_dropped``: frames we could not queue (EAGAIN, ENOBUFS, queue full).
    - ``tx_errors``: frames the kernel refused (EMSGSIZE, device down, ...).
    - ``drops``: named drop reasons, incremented by the port or the router
      with :meth:`drop` (e.g. ``"emsgsize"``, ``"no-route"``, ``"acl"``).
    """

    _NUMBERS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                "rx_dropped", "rx_errors", "tx_dropped", "tx_errors")
    __slots__ = _NUMBERS + ("drops",)

    def __init__(self):
        self.reset()

    def reset(self):
        """``clear counters``."""
        for attr in self._NUMBERS:
            setattr(self, attr, 0)
        self.drops = {}

    def drop(self, reason, n=1):
        """Count ``n`` frames dropped for ``reason`` (a short string)."""
        self.drops[reason] = self.drops.get(reason, 0) + n

    def as_dict(self):
        d = {attr: getattr(self, attr) for attr in self._NUMBERS}
        d["drops"] = dict(self.drops)
        return d

    def __repr__(self):
        return "<PortCounters %s>" % " ".join(
            "%s=%s" % (k, v) for k, v in self.as_dict().items() if v
        )


@implementer(IPort)
class MemoryPort:
    """An in-memory port.

    - ``send(frame, vnet)`` copies the frame, appends ``(bytes(frame),
      bytes(vnet))`` to ``sent`` and hands a fresh ``bytearray`` copy to the
      connected peer's receiver (if any).
    - ``inject(frame, vnet=b"")`` delivers a copy of ``frame`` to the attached
      receiver as if it had arrived on the wire.
    - A plain frame (``vnet`` empty or without GSO) longer than MTU + 14 (+4
      with an 802.1Q tag) is refused like Linux does: ``tx_errors`` and
      ``drops["emsgsize"]`` go up, nothing is sent.
    - Frames are delivered whenever a receiver is attached, unless
      :meth:`stop` was called (``start`` re-enables delivery), so tests need
      not call ``start``.
    - ``keep_sent=False`` stops recording into ``sent`` (long runs).
    """

    def __init__(self, name, mac=b"\x02\x00\x00\x00\x00\x01", mtu=1500, device=None, keep_sent=True):
        self.name = name
        self.device = device if device is not None else "memory:%s" % name
        self.mac = mac_bytes(mac)
        self.mtu = mtu
        self.counters = PortCounters()
        self.sent = []
        self.keep_sent = keep_sent
        self.peer = None
        self.receiver = None
        self.stopped = False
        self.link_up = True
        self.link_listener = None

    @classmethod
    def pair(cls, name_a="a", name_b="b", mac_a=b"\x02\x00\x00\x00\x00\x0a", mac_b=b"\x02\x00\x00\x00\x00\x0b", mtu=1500):
        """Two ports connected back to back: what one sends the other receives."""
        a = cls(name_a, mac_a, mtu)
        b = cls(name_b, mac_b, mtu)
        a.connect(b)
        return a, b

    def connect(self, other):
        self.peer = other
        other.peer = self

    # IPort

    def attach(self, receiver):
        self.receiver = receiver

    def start(self):
        self.stopped = False

    def stop(self):
        self.stopped = True

    def set_link(self, up):
        """Simulate the device going down or coming back (``ip link set
        dev down/up``): while down nothing is sent or delivered; the
        ``link_listener`` (the router) is told of each change."""
        up = bool(up)
        if up == self.link_up:
            return
        self.link_up = up
        if self.link_listener is not None:
            self.link_listener(self, up)

    def send(self, frame, vnet=b""):
        if self.stopped:
            self.counters.tx_dropped += 1
            self.counters.drop("port-stopped")
            return
        if not self.link_up:
            self.counters.tx_dropped += 1
            self.counters.drop("port-down")
            return
        n = len(frame)
        if n > self.mtu + ETH_HLEN and is_plain_vnet(vnet) and n > max_plain_frame(self.mtu, frame):
            self.counters.tx_errors += 1
            self.counters.drop("emsgsize")
            return
        c = self.counters
        c.tx_packets += 1
        c.tx_bytes += n
        if self.keep_sent or self.peer is not None:
            data = bytes(frame)
            vnet = bytes(vnet)
            if self.keep_sent:
                self.sent.append((data, vnet))
            if self.peer is not None:
                self.peer._deliver(data, vnet)

    # test side

    def inject(self, frame, vnet=b""):
        """Deliver ``frame`` to the receiver as if received from the wire."""
        self._deliver(frame, bytes(vnet))

    def _deliver(self, frame, vnet):
        if self.stopped or not self.link_up or self.receiver is None:
            self.counters.rx_dropped += 1
            return
        self.counters.rx_packets += 1
        self.counters.rx_bytes += len(frame)
        self.receiver(self, bytearray(frame), vnet)

    def take(self):
        """Return and forget the frames sent so far (list of ``bytes``)."""
        frames = [f for f, _ in self.sent]
        del self.sent[:]
        return frames

    def __repr__(self):
        return "<MemoryPort %s %s mtu=%d>" % (self.name, mac_text(self.mac), self.mtu)
