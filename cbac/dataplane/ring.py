"""PACKET_MMAP receive ring for the AF_PACKET port (TPACKET_V2).

The kernel writes each received frame into a slot of a ring shared with
cbac (``mmap``), so receiving costs no system call and no copy into a
Python buffer: :class:`RxRing` hands the frame to the router as a
``memoryview`` of its slot, the router's fast path rewrites it in place and
sends it, and the slot goes back to the kernel when the router returns
(a frame the slow path needs is copied into a ``bytearray`` first:
``Router.frameReceived``).

Why TPACKET_V2 and not V3: a V3 ring wakes the reader only when a block is
retired (full, or its timer of at least 1 ms expired), which adds up to that
timer to every packet at low rates (measured 1.1 ms RTT against 0.1 ms,
/work/shared/reference/dataplane.md, gotcha 12): ping, TCP round trips and
connection set-up through cbac would all pay it.  V2 marks and wakes per
frame.  Its cost is memory: every slot holds the largest frame (a 64 KiB
GSO super-frame plus the headers), so the ring is ``frames`` x 68 KiB
(240 frames: 16 MiB per port, the kernel's memory, in place of the
socket's 8 MiB receive buffer).

Layout (``struct tpacket2_hdr``, 32 bytes): ``tp_status`` (u32),
``tp_len``, ``tp_snaplen`` (u32), ``tp_mac``, ``tp_net`` (u16, offsets from
the slot), times, VLAN fields.  With ``PACKET_VNET_HDR`` the 10-byte
virtio-net header lies just before ``tp_mac``.
"""

from __future__ import annotations

import ctypes
import mmap
import struct

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V2 = 1

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_COPY = 2          # the frame was too large for the slot (truncated)
TP_STATUS_LOSING = 4

#: one slot: the largest frame (14 + 65535) after the 32-byte header, the
#: sockaddr_ll and the virtio-net header (76 bytes), rounded up to pages
FRAME_SIZE = 65536 + 4096
#: frames per block: blocks are allocated as power-of-two page runs, so a
#: 4 MiB block holds 60 slots with little waste
BLOCK_SIZE = 4 << 20
DEFAULT_FRAMES = 240

_HDR = struct.Struct("=IIIHH")
_KERNEL = b"\0\0\0\0"

#: the frame a ring is handing up now: (view, address, length), so that an
#: egress port can queue it by address (cbac/dataplane/txbatch.py)
CURRENT = [None, 0, 0]
#: transmit batches with frames queued during this drain
PENDING = []
#: frames handed up between two flushes of PENDING (their slots are held
#: until then)
TX_BATCH = 32


def flush_pending():
    """Send every queued batch; never raises (the reactor would drop the
    reader): a batch that cannot be sent is counted as tx errors."""
    while PENDING:
        tx = PENDING.pop()
        try:
            tx.flush()
        except Exception:  # noqa: BLE001
            tx.n = 0
            c = tx.port.counters
            c.tx_errors += 1
            c.drop("tx-error")
_REQ = struct.Struct("=IIII")       # struct tpacket_req


class RingUnavailable(OSError):
    pass


class RxRing:
    """The receive ring of one AF_PACKET socket (already configured with
    ``PACKET_VNET_HDR`` if wanted, not yet bound)."""

    def __init__(self, sock, frames=DEFAULT_FRAMES, vnet=True):
        per_block = BLOCK_SIZE // FRAME_SIZE
        blocks = max(1, -(-frames // per_block))
        self.nframes = blocks * per_block
        self.vnet = vnet
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING,
                            _REQ.pack(BLOCK_SIZE, blocks, FRAME_SIZE, self.nframes))
            self.map = mmap.mmap(sock.fileno(), BLOCK_SIZE * blocks, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as e:
            raise RingUnavailable(getattr(e, "errno", None) or 0, "PACKET_RX_RING: %s" % e) from e
        self.mv = memoryview(self.map)
        self._anchor = ctypes.c_char.from_buffer(self.map)
        self.base = ctypes.addressof(self._anchor)
        # slot offsets: frames never straddle blocks
        self.offsets = [b * BLOCK_SIZE + i * FRAME_SIZE
                        for b in range(blocks) for i in range(per_block)]
        self.head = 0
        self.truncated = 0

    def close(self):
        self._anchor = None
        mv, self.mv = self.mv, None
        if mv is not None:
            mv.release()
        m, self.map = self.map, None
        if m is not None:
            try:
                m.close()
            except BufferError:
                pass        # a view still exported: unmapped when it dies

    def ready(self) -> bool:
        """A frame waits in the next slot."""
        mv = self.mv
        return mv is not None and bool(mv[self.offsets[self.head]] & TP_STATUS_USER)

    def drain(self, port, receiver, counters, limit):
        """Hand up to ``limit`` ready frames to ``receiver(port, frame,
        vnet)``.  A slot goes back to the kernel only after the frames
        queued for batched transmit have been sent (every :data:`TX_BATCH`
        frames and at the end).  Returns the number of frames seen."""
        mv = self.mv
        offsets = self.offsets
        n = self.nframes
        head = self.head
        unpack = _HDR.unpack_from
        vnet_on = self.vnet
        base = self.base
        cur = CURRENT
        held = []
        seen = 0
        try:
            while seen < limit:
                off = offsets[head]
                status, tp_len, snap, mac, _net = unpack(mv, off)
                if not status & TP_STATUS_USER:
                    break
                seen += 1
                held.append(off)
                head += 1
                if head == n:
                    head = 0
                if status & TP_STATUS_COPY or snap < tp_len:
                    self.truncated += 1
                    counters.rx_errors += 1
                    counters.drop("rx-truncated")
                    continue
                start = off + mac
                hdr = b""
                if vnet_on:
                    # NEEDS_CSUM or GSO: the kernel's header matters
                    if mv[start - 10] & 1 or mv[start - 9]:
                        hdr = bytes(mv[start - 10:start])
                frame = mv[start:start + snap]
                counters.rx_packets += 1
                counters.rx_bytes += snap
                if receiver is None:
                    counters.drop("no-receiver")
                    continue
                cur[0] = frame
                cur[1] = base + start
                cur[2] = snap
                try:
                    receiver(port, frame, hdr)
                except Exception:  # noqa: BLE001 - never raise into the reactor
                    port._receiver_failed()
                cur[0] = None
                if len(held) >= TX_BATCH:
                    flush_pending()
                    for o in held:
                        mv[o:o + 4] = _KERNEL
                    held = []
        finally:
            cur[0] = None
            self.head = head
            flush_pending()
            for o in held:
                mv[o:o + 4] = _KERNEL          # TP_STATUS_KERNEL
        return seen


def open_ring(sock, frames=DEFAULT_FRAMES, vnet=True):
    """An :class:`RxRing` on ``sock``, or ``(None, reason)`` when the kernel
    refuses one (the port then reads with ``recv_into``)."""
    try:
        return RxRing(sock, frames, vnet), None
    except RingUnavailable as e:
        return None, str(e)


__all__ = ["RxRing", "open_ring", "RingUnavailable", "FRAME_SIZE", "BLOCK_SIZE"]
