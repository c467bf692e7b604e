"""The Linux data port: one AF_PACKET SOCK_RAW socket per device.

Facts behind the choices are in /work/shared/reference/dataplane.md:

- socket created with protocol 0 (receives nothing), then bound to
  ``(device, ETH_P_ALL)``, so no frame of another device ever slips in;
- ``PACKET_IGNORE_OUTGOING`` so our own transmissions are not read back;
- ``SO_RCVBUFFORCE`` 8 MiB (fallback ``SO_RCVBUF``): the ~208 KiB default
  drops bursts;
- ``PACKET_VNET_HDR``: every frame carries a 10-byte virtio-net header, so
  GSO super-frames (up to 64 KiB) and partial checksums pass unchanged and
  the kernel finishes them on transmit;
- one ``IReadDescriptor`` in the reactor that drains up to ``batch`` frames
  per wake-up from a ``PACKET_MMAP`` receive ring (:mod:`cbac.dataplane.ring`:
  no system call, the frame handed over as a view of its slot), or, where
  the kernel refuses a ring (or ``ring=False``, ``CBAC_RX_RING=0``), with
  ``recv_into`` a preallocated buffer; ``send`` goes
  straight to the socket, EAGAIN/ENOBUFS count as tx drops, EMSGSIZE and
  other errors as tx errors; nothing here ever raises into the reactor;
- ``PACKET_STATISTICS`` (kernel drops) polled into ``counters.rx_dropped``.

MAC and MTU are read with ``SIOCGIFHWADDR``/``SIOCGIFMTU`` on the socket,
which answers for the socket's network namespace (``/sys/class/net`` shows
the namespace sysfs was mounted in, which differs when a port is opened in
another namespace with ``netns=``); ``/sys/class/net`` is the fallback.
"""

import ctypes
import errno
import fcntl
import os
import socket
import struct
from contextlib import contextmanager

from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from cbac.interfaces import IPort
from cbac.dataplane import txbatch
from cbac.dataplane.ring import CURRENT as _RING_CURRENT
from cbac.dataplane.ring import PENDING as _TX_PENDING
from cbac.dataplane.ring import flush_pending as _flush_pending
from cbac.dataplane.ring import open_ring
from cbac.dataplane.txbatch import COPY_MAX as _COPY_MAX
from cbac.dataplane.port import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VNET_HDR_LEN,
    ZERO_VNET,
    PortCounters,
    is_plain_vnet,
)

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33
ETH_P_ALL = 3

SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
IFF_UP = 0x1
IFF_RUNNING = 0x40

CLONE_NEWNET = 0x40000000

#: running ports with a receive ring: a port's doRead also drains the
#: others' rings (see LinuxPort.doRead)
_RING_PORTS = ()
#: rounds of that, and the frames per port per round (measured with wrk,
#: Connection: close, offload off: 8-10 % less CPU per connection)
REDRAIN_ROUNDS = 2
REDRAIN_BATCH = 32

_TX_DROP_ERRNOS = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS))
_MAX_FRAME = 65536 + 64  # GSO/GRO super-frames reach 64 KiB


def _is_up(flags):
    return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)


class PortError(Exception):
    """A port could not be opened (no such device, no permission, ...)."""


_libc = None


def _setns(fd):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextmanager
def in_netns(name):
    """Run the body with the calling thread in network namespace ``name``
    (``ip netns`` name or a path); sockets created inside stay there.
    ``None`` means: stay where we are."""
    if name is None:
        yield
        return
    path = name if "/" in name else "/run/netns/" + name
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def _ifreq(device):
    name = device.encode()
    if len(name) > 15:
        raise PortError("device name too long: %r" % device)
    return struct.pack("16s16s", name, b"")


def read_device_info(sock, device):
    """``(mac bytes, mtu int, flags int)`` of ``device`` via ioctls on ``sock``."""
    req = _ifreq(device)
    try:
        hw = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, req)
        mtu = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, req)
        flags = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, req)
        return (
            bytes(hw[18:24]),
            struct.unpack_from("i", mtu, 16)[0],
            struct.unpack_from("H", flags, 16)[0],
        )
    except OSError as e:
        if e.errno in (errno.ENODEV, errno.ENXIO):
            raise
        base = "/sys/class/net/%s/" % device
        with open(base + "address") as f:
            mac = bytes.fromhex(f.read().strip().replace(":", ""))
        with open(base + "mtu") as f:
            mtu = int(f.read())
        with open(base + "flags") as f:
            flags = int(f.read(), 16)
        return mac, mtu, flags


@implementer(IPort, IReadDescriptor)
class LinuxPort:
    """An AF_PACKET port on Linux device ``device`` serving IOS interface
    ``name``.

    ``vnet=True`` (default) turns on ``PACKET_VNET_HDR``: the receiver gets
    the 10-byte header of GSO/partial-checksum frames as ``vnet`` (``b""``
    for plain frames), and ``send(frame, vnet)`` hands it back to the kernel
    (an all-zero header when ``vnet`` is ``b""``).  With ``vnet=False`` a
    frame given with a GSO/NEEDS_CSUM header has
    its checksum is finished and the frame segmented in software
    (:func:`cbac.packet.vnet.segment`, slow); what cannot be is counted in
    ``drops["needs-offload"]``.

    ``netns`` opens the socket in another network namespace (tests; the
    daemon itself runs inside the namespace).  ``batch`` is the number of
    frames drained per wake-up; ``stats_interval`` how often (seconds)
    ``PACKET_STATISTICS`` is polled.
    """

    log = Logger()

    def __init__(self, name, device, reactor=None, vnet=True, batch=128, rcvbuf=8 << 20, stats_interval=1.0, netns=None,
                 ring=None):
        if reactor is None:
            from twisted.internet import reactor
        self.name = name
        self.device = device
        self.reactor = reactor
        self.vnet = vnet
        self.batch = batch
        self.rcvbuf = rcvbuf
        self.stats_interval = stats_interval
        self.netns = netns
        if ring is None:
            ring = os.environ.get("CBAC_RX_RING", "1") != "0"
        self.use_ring = ring
        #: frames forwarded out of a receive ring go out with one sendmmsg
        #: per batch (cbac/dataplane/txbatch.py; CBAC_TX_BATCH=0: sendmsg each)
        self.use_tx_batch = os.environ.get("CBAC_TX_BATCH", "1") != "0"
        self._tx = None
        self._ring = None       # the RxRing of the data socket, if any
        self.ring_error = None  # why the kernel refused a ring (recv_into used)
        self.counters = PortCounters()
        self.receiver = None
        self.running = False
        self.rcvbuf_effective = 0
        self._buf = bytearray(_MAX_FRAME + VNET_HDR_LEN)
        self._mv = memoryview(self._buf)
        self._stats_loop = None
        self._receiver_failures = 0
        self._sock = None       # the data socket (None while stopped or down)
        self._ctl = None        # an unbound socket for ioctls (receives nothing)
        #: ``callback(port, up)`` when the link goes down or comes back (the router)
        self.link_listener = None
        self.link_up = False
        self.link_changes = 0
        self._reopen_call = None
        #: ``hook(sock)`` for every data socket opened (the kernel fast
        #: path attaches its socket filter: cbac/dataplane/flowoffload.py)
        self.socket_hook = None
        self._open()

    # --- set-up ------------------------------------------------------------

    def _open(self):
        try:
            with in_netns(self.netns):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as e:
            raise PortError("%s: cannot open AF_PACKET socket: %s" % (self.device, e)) from e
        try:
            self.mac, self.mtu, self.flags = read_device_info(sock, self.device)
        except (OSError, ValueError) as e:
            sock.close()
            raise PortError("%s: no such device in this namespace (%s)" % (self.device, e)) from e
        self._ctl = sock
        self.link_up = _is_up(self.flags)

    def refresh(self):
        """Re-read MAC, MTU and flags from the device."""
        if self._ctl is not None:
            try:
                self.mac, self.mtu, self.flags = read_device_info(self._ctl, self.device)
            except (OSError, ValueError):
                self.flags = 0      # the device is gone

    def link_state(self):
        """``(administratively up, running)`` as the device reports now."""
        self.refresh()
        return bool(self.flags & IFF_UP), bool(self.flags & IFF_RUNNING)

    # --- link state --------------------------------------------------------
    #
    # A device that goes down (``ip link set dev down``, carrier lost, device
    # deleted) is noticed three ways: a netlink link event
    # (:class:`cbac.dataplane.netlink.LinkMonitor` calls :meth:`link_event`),
    # an error on the socket (the reactor drops a reader on EPOLLERR and
    # calls :meth:`connectionLost`), and the once-a-second statistics poll
    # (the bounded fallback).  Down: the data socket is closed and frames
    # sent to the port are counted as "port-down" drops.  Up again: a fresh
    # socket is opened and bound by name (the device may have been
    # re-created with another index).  ``link_listener(port, up)`` is told
    # of each change.

    def link_event(self, flags=None):
        """The device's flags changed (``None``: unknown, read them now)."""
        if not self.running:
            return
        if flags is None:
            self.refresh()
            flags = self.flags
        else:
            self.flags = flags
        up = _is_up(flags)
        if up and not self.link_up:
            self._link_up()
        elif not up and self.link_up:
            self._link_down()
        elif up and self._sock is None:
            self._link_up()     # a socket error while the link stayed up

    def _link_down(self):
        self._close_data()
        self.link_up = False
        self.link_changes += 1
        self._tell(False)

    def _link_up(self):
        self.refresh()
        if not _is_up(self.flags):
            return
        if self._sock is None:
            try:
                self._open_data()
            except PortError as e:
                self.log.warn("{port}: cannot reopen: {error}", port=self.name, error=e)
                return
        was = self.link_up
        self.link_up = True
        if not was:
            self.link_changes += 1
            self._tell(True)

    def _tell(self, up):
        listener = self.link_listener
        if listener is not None:
            try:
                listener(self, up)
            except Exception:  # noqa: BLE001 - never raise into the reactor
                self.log.failure("{port}: link listener failed", port=self.name)

    def _open_data(self):
        try:
            with in_netns(self.netns):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as e:
            raise PortError("%s: cannot open AF_PACKET socket: %s" % (self.device, e)) from e
        try:
            self._configure(sock)
        except OSError as e:
            sock.close()
            raise PortError("%s: cannot bind AF_PACKET socket: %s" % (self.device, e)) from e
        if self.socket_hook is not None:
            try:
                self.socket_hook(sock)
            except OSError as e:
                # without the filter the kernel fast path forwards nothing
                # of this port (every frame reaches Python): slower, correct
                self.log.warn("{port}: socket filter not attached: {e}", port=self.name, e=e)
        self._sock = sock
        if self.vnet and self.use_tx_batch and txbatch.available():
            self._tx = txbatch.TxBatch(self)
        self.reactor.addReader(self)
        if self._ring is not None:
            global _RING_PORTS
            _RING_PORTS = _RING_PORTS + (self,)

    def _close_data(self):
        sock = self._sock
        if sock is None:
            return
        self.reactor.removeReader(self)
        global _RING_PORTS
        if self in _RING_PORTS:
            _RING_PORTS = tuple(p for p in _RING_PORTS if p is not self)
        try:
            raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            self.counters.rx_dropped += struct.unpack("II", raw)[1]
        except OSError:
            pass
        self._drop_tx()
        self._sock = None
        self._close_ring()
        try:
            sock.close()
        except OSError:
            pass

    def _drop_tx(self):
        tx, self._tx = self._tx, None
        if tx is not None:
            tx.discard()

    def _close_ring(self):
        ring, self._ring = self._ring, None
        if ring is not None:
            ring.close()

    def _configure(self, sock):
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            except OSError:
                pass
        self.rcvbuf_effective = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if self.vnet:
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        if self.use_ring:
            # before bind: no frame is queued outside the ring
            ring, why = open_ring(sock, vnet=self.vnet)
            if ring is None and why != self.ring_error:
                self.log.warn("{port}: no receive ring, reading with recv: {why}",
                              port=self.name, why=why)
            self.ring_error = why
            self._ring = ring
        sock.bind((self.device, ETH_P_ALL))
        sock.setblocking(False)

    # --- IPort -------------------------------------------------------------

    def attach(self, receiver):
        self.receiver = receiver

    def start(self):
        if self.running:
            return
        if self._ctl is None:
            self._open()
        self.running = True
        self.refresh()
        self.link_up = _is_up(self.flags)
        try:
            self._open_data()
        except PortError:
            if self.link_up:
                self.running = False
                raise
            # a device that is down at start: opened when it comes up
        if self.stats_interval:
            self._stats_loop = LoopingCall(self.poll_stats)
            self._stats_loop.clock = self.reactor
            self._stats_loop.start(self.stats_interval, now=False)

    def stop(self):
        if self._stats_loop is not None and self._stats_loop.running:
            self._stats_loop.stop()
        self._stats_loop = None
        if self._reopen_call is not None and self._reopen_call.active():
            self._reopen_call.cancel()
        self._reopen_call = None
        self.running = False
        self._close_data()
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

    def send(self, frame, vnet=b""):
        tx = self._tx
        if tx is not None:
            if frame is _RING_CURRENT[0]:
                # straight out of a ring slot: queued by address, sent with
                # the batch before the slot goes back to the kernel
                if not tx.n:
                    _TX_PENDING.append(tx)
                tx.add(_RING_CURRENT[1], _RING_CURRENT[2], vnet)
                return
            if _RING_CURRENT[0] is not None and len(frame) <= _COPY_MAX:
                # made or copied while a ring frame is handled (the slow
                # path): a copy joins the batch, sent before the drain ends
                if not tx.n:
                    _TX_PENDING.append(tx)
                tx.add_copy(frame, vnet)
                return
            if tx.n:
                _flush_pending()        # keep this port's order (never raises)
        sock = self._sock
        if sock is None:
            self.counters.tx_dropped += 1
            self.counters.drop("port-down")
            return
        try:
            if self.vnet:
                sock.sendmsg((vnet or ZERO_VNET, frame))
            elif is_plain_vnet(vnet):
                sock.send(frame)
            else:
                self._send_finished(sock, frame, vnet)
                return
        except OSError as e:
            self._count_error(e)
            return
        except Exception:  # noqa: BLE001 - never raise into the router
            self.counters.tx_errors += 1
            self.counters.drop("tx-error")
            return
        self.counters.tx_packets += 1
        self.counters.tx_bytes += len(frame)

    def _count_error(self, e):
        if e.errno in _TX_DROP_ERRNOS:
            self.counters.tx_dropped += 1
            self.counters.drop("tx-queue-full")
        elif e.errno == errno.EMSGSIZE:
            self.counters.tx_errors += 1
            self.counters.drop("emsgsize")
        else:
            self.counters.tx_errors += 1
            self.counters.drop("tx-error")

    def _send_finished(self, sock, frame, vnet):
        """Without PACKET_VNET_HDR the kernel cannot finish a partial
        checksum or split a GSO frame: do it here (slow path)."""
        try:
            from cbac.packet.vnet import segment

            frames = segment(bytearray(frame), vnet, self.mtu)
        except Exception:  # noqa: BLE001 - malformed or unsupported: drop
            self.counters.tx_errors += 1
            self.counters.drop("needs-offload")
            return
        for f in frames:
            try:
                sock.send(f)
            except OSError as e:
                self._count_error(e)
                continue
            self.counters.tx_packets += 1
            self.counters.tx_bytes += len(f)

    # --- statistics --------------------------------------------------------

    def poll_stats(self):
        """Add the kernel's drop count (read-and-reset) to ``rx_dropped``;
        check the link (the fallback when no link event arrives)."""
        if self._sock is not None:
            try:
                raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            except OSError:
                raw = None
            if raw is not None:
                _packets, drops = struct.unpack("II", raw)
                self.counters.rx_dropped += drops
        self.link_event(None)

    # --- IReadDescriptor ---------------------------------------------------

    def fileno(self):
        sock = self._sock
        return sock.fileno() if sock is not None else -1

    def logPrefix(self):
        return "LinuxPort(%s=%s)" % (self.name, self.device)

    def connectionLost(self, reason):
        # The reactor dropped our socket (EPOLLERR: ENETDOWN when the device
        # went down).  Close it; the link state decides what comes next.
        self._drop_tx()
        sock, self._sock = self._sock, None
        self._close_ring()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        if self.running:
            self._schedule_check()

    def _schedule_check(self):
        if self._reopen_call is None or not self._reopen_call.active():
            self._reopen_call = self.reactor.callLater(0, self.link_event, None)

    def _receiver_failed(self):
        self.counters.drop("receiver-error")
        self._receiver_failures += 1
        if self._receiver_failures <= 10 or self._receiver_failures % 10000 == 0:
            self.log.failure(
                "{port}: frame handler failed ({n} so far)",
                port=self.name,
                n=self._receiver_failures,
            )

    def doRead(self):
        sock = self._sock
        if sock is None:
            return None
        ring = self._ring
        if ring is not None:
            # frames come as views of their ring slot, valid during the call
            ring.drain(self, self.receiver, self.counters, self.batch)
            # what arrived on any port while this one was handled (the
            # replies to the frames just sent: veth delivers them during the
            # send, the peer's stack answers at once) is handled now rather
            # than after another trip through the reactor; bounded, so the
            # reactor's other work waits for at most REDRAIN_ROUNDS x ports
            # x REDRAIN_BATCH more frames
            for _ in range(REDRAIN_ROUNDS):
                more = 0
                for p in _RING_PORTS:
                    r = p._ring
                    if r is not None and r.ready():
                        more += r.drain(p, p.receiver, p.counters, REDRAIN_BATCH)
                if not more:
                    break
            return None
        recv_into = sock.recv_into
        mv = self._mv
        counters = self.counters
        receiver = self.receiver
        vnet = self.vnet
        for _ in range(self.batch):
            try:
                n = recv_into(mv)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as e:
                if e.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    self._schedule_check()      # the link went down
                else:
                    counters.rx_errors += 1
                return None
            if vnet:
                if n < VNET_HDR_LEN:
                    counters.rx_errors += 1
                    continue
                if (mv[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) or mv[1]:
                    hdr = bytes(mv[:VNET_HDR_LEN])
                else:
                    hdr = b""
                frame = bytearray(mv[VNET_HDR_LEN:n])
            else:
                hdr = b""
                frame = bytearray(mv[:n])
            counters.rx_packets += 1
            counters.rx_bytes += len(frame)
            if receiver is None:
                counters.drop("no-receiver")
                continue
            try:
                receiver(self, frame, hdr)
            except Exception:  # noqa: BLE001 - doRead never raises
                counters.drop("receiver-error")
                self._receiver_failures += 1
                if self._receiver_failures <= 10 or self._receiver_failures % 10000 == 0:
                    self.log.failure(
                        "{port}: frame handler failed ({n} so far)",
                        port=self.name,
                        n=self._receiver_failures,
                    )
        return None

    def __repr__(self):
        return "<LinuxPort %s=%s vnet=%s>" % (self.name, self.device, self.vnet)
