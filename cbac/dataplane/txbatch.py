"""Batched transmit for the AF_PACKET port: ``sendmmsg(2)`` through ctypes.

A frame the router's fast path forwards straight out of a receive-ring
slot (:mod:`cbac.dataplane.ring`) is not sent at once: its address in the
ring, its length and its virtio-net header are queued on the egress port,
and every queued frame goes out with one ``sendmmsg`` per port when the
ring has handed up a batch of frames, before their slots go back to the
kernel (the kernel copies each frame into an skb during the call, so the
slot may be reused after it).  One system call then carries up to
:data:`MAX_BATCH` frames instead of one ``sendmsg`` each.

A frame the router made or copied while it handles a ring frame (the slow
path's ``bytearray``: a SYN, a FIN, a translated reply, an ICMP error, an
ARP reply) of at most :data:`COPY_MAX` bytes is copied into the batch's own
buffer and queued in the same way (:meth:`TxBatch.add_copy`): a short
connection's frames, most of which take the slow path, then cost no system
call each either.  Order is kept per egress port: a frame sent any other
way (larger, or outside the handling of a ring frame: a timer, the ARP
queue) first flushes what is queued.  Errors are counted per frame as ``send`` counts them
(EAGAIN/ENOBUFS: tx drops; EMSGSIZE and the rest: tx errors).

Used only where ``libc`` has ``sendmmsg`` (glibc >= 2.14) and the port has
a ring and PACKET_VNET_HDR; otherwise every frame is sent with ``sendmsg``
as before.
"""

from __future__ import annotations

import ctypes
import errno
import struct

MAX_BATCH = 64
#: the largest frame :meth:`TxBatch.add_copy` queues (larger ones, GSO
#: super-frames, are sent at once: copying them would cost more than the
#: system call)
COPY_MAX = 2048
MSG_DONTWAIT = 0x40
VNET_LEN = 10


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


#: two iovecs per frame: the virtio-net header, the frame
_IOV_PAIR = struct.Struct("@PNPN")
_IOV_PAIR_SIZE = 2 * ctypes.sizeof(_IoVec)
assert _IOV_PAIR.size == _IOV_PAIR_SIZE

_libc = None
_sendmmsg = None


def available() -> bool:
    global _libc, _sendmmsg
    if _sendmmsg is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            f = _libc.sendmmsg
        except (OSError, AttributeError):
            _sendmmsg = False
            return False
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        f.restype = ctypes.c_int
        _sendmmsg = f
    return bool(_sendmmsg)


class TxBatch:
    """Frames queued for one port's socket."""

    def __init__(self, port):
        self.port = port
        self.n = 0
        self.calls = 0          # sendmmsg calls
        self.frames = 0         # frames they carried
        self.lens = [0] * MAX_BATCH
        self._iov = (_IoVec * (2 * MAX_BATCH))()
        self._iov_mv = memoryview(self._iov).cast("B")
        self._msgs = (_MMsgHdr * MAX_BATCH)()
        self._vnet = ctypes.create_string_buffer(VNET_LEN * MAX_BATCH)
        self._vnet_mv = memoryview(self._vnet).cast("B")
        self._zero = ctypes.create_string_buffer(VNET_LEN)
        self._zero_addr = ctypes.addressof(self._zero)
        self._vnet_addr = ctypes.addressof(self._vnet)
        iov0 = ctypes.addressof(self._iov)
        for i in range(MAX_BATCH):
            h = self._msgs[i].hdr
            h.iov = iov0 + i * _IOV_PAIR_SIZE
            h.iovlen = 2
        self._msgs_addr = ctypes.addressof(self._msgs)
        self._msg_size = ctypes.sizeof(_MMsgHdr)
        # add_copy's frames: slot i of the batch owns copy slot i
        self._copy = ctypes.create_string_buffer(COPY_MAX * MAX_BATCH)
        self._copy_mv = memoryview(self._copy).cast("B")
        self._copy_addr = ctypes.addressof(self._copy)
        self.copies = 0         # frames queued by add_copy

    def add(self, addr: int, length: int, vnet) -> None:
        i = self.n
        if vnet:
            o = VNET_LEN * i
            self._vnet_mv[o:o + VNET_LEN] = vnet
            vaddr = self._vnet_addr + o
        else:
            vaddr = self._zero_addr
        _IOV_PAIR.pack_into(self._iov_mv, i * _IOV_PAIR_SIZE, vaddr, VNET_LEN, addr, length)
        self.lens[i] = length
        self.n = i + 1
        if self.n == MAX_BATCH:
            self.flush()

    def add_copy(self, frame, vnet) -> None:
        """Queue a copy of ``frame`` (at most :data:`COPY_MAX` bytes): the
        caller may reuse or keep the original."""
        n = len(frame)
        o = COPY_MAX * self.n
        self._copy_mv[o:o + n] = frame
        self.copies += 1
        self.add(self._copy_addr + o, n, vnet)

    def discard(self) -> None:
        """The socket is gone: what is queued is dropped."""
        if self.n:
            c = self.port.counters
            c.tx_dropped += self.n
            c.drop("port-down", self.n)
            self.n = 0

    def flush(self) -> None:
        n = self.n
        if not n:
            return
        self.n = 0
        port = self.port
        sock = port._sock
        c = port.counters
        if sock is None:
            c.tx_dropped += n
            c.drop("port-down", n)
            return
        fd = sock.fileno()
        i = 0
        lens = self.lens
        while i < n:
            sent = _sendmmsg(fd, self._msgs_addr + i * self._msg_size, n - i, MSG_DONTWAIT)
            self.calls += 1
            if sent < 0:
                e = ctypes.get_errno()
                if e == errno.EINTR:
                    continue
                port._count_error(OSError(e, "sendmmsg"))   # this frame; go on after it
                i += 1
                continue
            for j in range(i, i + sent):
                c.tx_bytes += lens[j]
            c.tx_packets += sent
            self.frames += sent
            i += sent
