"""zope.interface contracts between the parts of cbac.

One place wires them together: :mod:`cbac.app` (built by :mod:`cbac.tap`).
"""

from zope.interface import Attribute, Interface

from cbac.inspect.api import IInspectorFactory, IStreamInspector  # noqa: F401


class IPort(Interface):
    """A data port: the Linux AF_PACKET port, the memory port of the unit
    tests, the pcap port of ``cbac-replay``.

    Frames are Ethernet II frames (``bytearray``).  ``vnet`` is the 10-byte
    ``struct virtio_net_hdr`` (native byte order: flags u8, gso_type u8,
    hdr_len u16, gso_size u16, csum_start u16, csum_offset u16) that came
    with the frame, or ``b""`` when the frame is plain (complete checksums,
    at most MTU-sized).  A port that cannot pass GSO/partial-checksum
    frames on must finish them itself (segment / checksum) in ``send``.
    """

    name = Attribute("IOS interface name this port serves, e.g. 'Ethernet2/0'")
    device = Attribute("Linux device name (or a description)")
    mac = Attribute("6-byte MAC address (bytes)")
    mtu = Attribute("IP MTU (int)")
    counters = Attribute("a cbac.dataplane.port.PortCounters")

    def attach(receiver):
        """Deliver every received frame as ``receiver(port, frame, vnet)``.
        ``frame`` is a ``bytearray`` the receiver may keep and edit, or a
        writable ``memoryview`` valid only during the call (a slot of a
        receive ring: cbac/dataplane/ring.py): a receiver that keeps or
        resizes a frame copies it first."""

    def send(frame, vnet=b""):
        """Transmit one frame now.  Never raises: failures (EAGAIN, ENOBUFS,
        EMSGSIZE, a full queue) are counted as tx drops."""

    def start():
        """Open the port and start delivering frames."""

    def stop():
        """Stop delivering frames and release the device."""
