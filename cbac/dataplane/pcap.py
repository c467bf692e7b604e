"""Classic libpcap files and the pcap port of ``cbac-replay``.

- :class:`PcapWriter`: classic pcap, little-endian, microsecond timestamps
  (magic ``a1b2c3d4``), LINKTYPE_ETHERNET, snaplen 262144: what Wireshark,
  tcpdump and scapy read.
- :class:`PcapReader`: classic pcap in either byte order, microsecond or
  nanosecond (``a1b23c4d``) timestamps.  pcapng is refused with a hint
  (``editcap -F pcap in.pcapng out.pcap``).  A file cut short ends the
  iteration cleanly (``truncated`` is then set).
- :class:`PcapPort`: an ``IPort`` that replays a file into its receiver and
  writes what it sends to another file, for offline runs of the whole
  pipeline.  Replay speed follows tcpreplay: captured timing by default
  (``multiplier=1.0``), ``multiplier=X`` (X times faster), ``pps=N``,
  ``mbps=N``, ``topspeed=True``; ``loop=N``, ``limit=N``.
"""

import struct
import time

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from cbac.interfaces import IPort
from cbac.dataplane.port import PortCounters, is_plain_vnet, mac_bytes, max_plain_frame

LINKTYPE_ETHERNET = 1
MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
PCAPNG_MAGIC = 0x0A0D0D0A
DEFAULT_SNAPLEN = 262144

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD_LE = struct.Struct("<IIII")
_RECORD_BE = struct.Struct(">IIII")


class PcapError(Exception):
    pass


class PcapWriter:
    """Write frames to a classic pcap file.

    ``target`` is a path or a binary file object (not closed by us unless we
    opened it).  ``write(frame, ts=None)``: ``ts`` in seconds (float),
    default the current time.  ``snaplen`` caps stored bytes (``orig_len``
    keeps the real length)."""

    def __init__(self, target, snaplen=DEFAULT_SNAPLEN, linktype=LINKTYPE_ETHERNET):
        if isinstance(target, (str, bytes)) or hasattr(target, "__fspath__"):
            self._f = open(target, "wb")
            self._own = True
        else:
            self._f = target
            self._own = False
        self.snaplen = snaplen
        self.count = 0
        self._f.write(_GLOBAL.pack(MAGIC_USEC, 2, 4, 0, 0, snaplen, linktype))

    def write(self, frame, ts=None):
        if ts is None:
            ts = time.time()
        usec_total = int(round(ts * 1_000_000))
        sec, usec = divmod(usec_total, 1_000_000)
        length = len(frame)
        caplen = min(length, self.snaplen)
        self._f.write(_RECORD_LE.pack(sec & 0xFFFFFFFF, usec, caplen, length))
        self._f.write(frame if caplen == length else bytes(frame[:caplen]))
        self.count += 1

    def flush(self):
        self._f.flush()

    def close(self):
        if self._f is None:
            return
        try:
            self._f.flush()
        finally:
            if self._own:
                self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class PcapReader:
    """Iterate over ``(ts_ns, frame_bytes, orig_len)`` of a classic pcap
    file (path or binary file object).  ``ts_ns`` is an int (nanoseconds
    since the epoch) whatever the file's resolution."""

    def __init__(self, source):
        if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
            self._f = open(source, "rb")
            self._own = True
        else:
            self._f = source
            self._own = False
        head = self._f.read(_GLOBAL.size)
        if len(head) < _GLOBAL.size:
            self.close()
            raise PcapError("not a pcap file (too short)")
        (magic_le,) = struct.unpack_from("<I", head)
        (magic_be,) = struct.unpack_from(">I", head)
        if magic_le == PCAPNG_MAGIC:
            self.close()
            raise PcapError("pcapng is not supported; convert with: editcap -F pcap IN.pcapng OUT.pcap")
        if magic_le in (MAGIC_USEC, MAGIC_NSEC):
            order, magic = "<", magic_le
        elif magic_be in (MAGIC_USEC, MAGIC_NSEC):
            order, magic = ">", magic_be
        else:
            self.close()
            raise PcapError("not a pcap file (magic %08x)" % magic_le)
        self.nanosecond = magic == MAGIC_NSEC
        (_m, self.version_major, self.version_minor, _tz, _sig, self.snaplen, self.linktype) = struct.unpack(
            order + "IHHiIII", head
        )
        self.linktype &= 0x0FFFFFFF  # upper bits: FCS info
        self._record = _RECORD_LE if order == "<" else _RECORD_BE
        self.truncated = False

    def __iter__(self):
        rec = self._record
        f = self._f
        scale = 1 if self.nanosecond else 1000
        while f is not None:
            head = f.read(rec.size)
            if not head:
                return
            if len(head) < rec.size:
                self.truncated = True
                return
            sec, frac, caplen, length = rec.unpack(head)
            if caplen > 0x4000000:  # 64 MiB: garbage, stop rather than allocate
                self.truncated = True
                return
            data = f.read(caplen)
            if len(data) < caplen:
                self.truncated = True
                return
            yield sec * 1_000_000_000 + frac * scale, data, length

    def close(self):
        if self._f is not None and self._own:
            self._f.close()
        self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def read_frames(path):
    """All frames of a pcap file as a list of ``bytes``."""
    with PcapReader(path) as r:
        return [data for _ts, data, _len in r]


@implementer(IPort)
class PcapPort:
    """Replay ``infile`` into the receiver; write frames sent to ``outfile``.

    Either may be ``None``.  Frames from the file arrive with ``vnet=b""``.
    Frames sent are written as given, GSO super-frames included (Wireshark
    shows them as one large frame); a plain frame over the MTU is refused
    like Linux would (``tx_errors``).

    Pacing (as tcpreplay): by default frames are delivered at the captured
    inter-frame gaps (``multiplier=1.0``); ``multiplier=X`` divides the gaps
    by X; ``pps=N`` sends N frames per second; ``mbps=N`` paces by frame
    size; ``topspeed=True`` sends as fast as possible, ``batch`` frames per
    reactor turn.  ``loop`` repeats the file; ``limit`` stops after that many
    frames.  Timing uses the reactor's clock, so a ``task.Clock`` drives it
    in tests.  ``start()`` begins the replay; ``done`` is a Deferred that
    fires with the number of frames replayed (also after ``stop()``).
    :meth:`replay_all` delivers everything now, without the reactor.
    """

    log = Logger()

    def __init__(
        self,
        name,
        mac,
        infile=None,
        outfile=None,
        reactor=None,
        mtu=1500,
        multiplier=None,
        pps=None,
        mbps=None,
        topspeed=False,
        loop=1,
        limit=None,
        batch=256,
        snaplen=DEFAULT_SNAPLEN,
    ):
        given = [x for x in (multiplier, pps, mbps) if x is not None] + ([True] if topspeed else [])
        if len(given) > 1:
            raise ValueError("give at most one of multiplier, pps, mbps, topspeed")
        for label, value in (("multiplier", multiplier), ("pps", pps), ("mbps", mbps)):
            if value is not None and not value > 0:
                raise ValueError("%s must be > 0" % label)
        if loop < 1:
            raise ValueError("loop must be >= 1")
        self.name = name
        self.mac = mac_bytes(mac)
        self.mtu = mtu
        self.infile = infile
        self.outfile = outfile
        self.device = "pcap:%s>%s" % (infile or "-", outfile or "-")
        self.reactor = reactor
        self.multiplier = multiplier if multiplier is not None else (None if (pps or mbps or topspeed) else 1.0)
        self.pps = pps
        self.mbps = mbps
        self.topspeed = topspeed
        self.loop = loop
        self.limit = limit
        self.batch = batch
        self.counters = PortCounters()
        self.receiver = None
        self.replayed = 0
        self.done = defer.Deferred()
        self._snaplen = snaplen
        self._writer = None
        self._frames = None
        self._call = None
        self._pending = None
        self._running = False

    # --- IPort -------------------------------------------------------------

    def attach(self, receiver):
        self.receiver = receiver

    def start(self):
        if self.outfile is not None and self._writer is None:
            self._writer = PcapWriter(self.outfile, snaplen=self._snaplen)
        if self.infile is None or self._running:
            return
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        self._frames = self._schedule()
        self._running = True
        self._t0 = self.reactor.seconds()
        self._call = self.reactor.callLater(0, self._tick)

    def stop(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._finish()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def send(self, frame, vnet=b""):
        if is_plain_vnet(vnet) and len(frame) > max_plain_frame(self.mtu, frame):
            self.counters.tx_errors += 1
            self.counters.drop("emsgsize")
            return
        self.counters.tx_packets += 1
        self.counters.tx_bytes += len(frame)
        if self._writer is not None:
            try:
                self._writer.write(frame, self._now())
            except (OSError, ValueError):
                self.counters.tx_errors += 1
                self.counters.drop("pcap-write")

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    # --- replay ------------------------------------------------------------

    def _now(self):
        return self.reactor.seconds() if self.reactor is not None else time.time()

    def _schedule(self):
        """Yield ``(offset seconds from start, frame)``.  Offsets are computed
        from totals, not summed gap by gap, so they do not drift."""
        count = 0
        bits = 0
        base = 0.0  # start of the current loop pass (captured timing)
        for _ in range(self.loop):
            try:
                reader = PcapReader(self.infile)
            except (OSError, PcapError) as e:
                self.log.error("{port}: cannot replay {file}: {err}", port=self.name, file=self.infile, err=e)
                return
            with reader:
                if reader.linktype != LINKTYPE_ETHERNET:
                    self.log.error(
                        "{port}: {file} has link type {lt}, not Ethernet", port=self.name, file=self.infile, lt=reader.linktype
                    )
                    return
                first = last = None
                for ts_ns, data, _length in reader:
                    if self.limit is not None and count >= self.limit:
                        return
                    if self.topspeed:
                        offset = 0.0
                    elif self.pps:
                        offset = count / self.pps
                    elif self.mbps:
                        offset = bits / (self.mbps * 1e6)
                    else:
                        if first is None:
                            first = last = ts_ns
                        last = max(last, ts_ns)  # a timestamp going backwards: no wait
                        offset = base + (last - first) / 1e9 / self.multiplier
                    yield offset, data
                    count += 1
                    bits += len(data) * 8
                if reader.truncated:
                    self.log.warn("{port}: {file} is truncated", port=self.name, file=self.infile)
                if first is not None:
                    base += (last - first) / 1e9 / self.multiplier

    def _deliver(self, data):
        self.replayed += 1
        self.counters.rx_packets += 1
        self.counters.rx_bytes += len(data)
        if self.receiver is None:
            self.counters.drop("no-receiver")
            return
        try:
            self.receiver(self, bytearray(data), b"")
        except Exception:  # noqa: BLE001 - one bad frame must not stop the replay
            self.counters.drop("receiver-error")
            self.log.failure("{port}: frame handler failed", port=self.name)

    def _tick(self):
        self._call = None
        if not self._running:
            return
        elapsed = self.reactor.seconds() - self._t0
        sent = 0
        pending = self._pending
        while True:
            if pending is None:
                try:
                    pending = next(self._frames)
                except StopIteration:
                    self._pending = None
                    self._finish()
                    return
            offset, data = pending
            if not self.topspeed and offset > elapsed + 1e-9:
                break
            pending = None
            self._deliver(data)
            sent += 1
            if sent >= self.batch:
                break
        self._pending = pending
        delay = 0 if (pending is None or self.topspeed) else max(0.0, pending[0] - elapsed)
        self._call = self.reactor.callLater(delay, self._tick)

    def _finish(self):
        if self._running:
            self._running = False
            self._pending = None
        if not self.done.called:
            self.done.callback(self.replayed)

    def replay_all(self):
        """Deliver every frame of ``infile`` now (no pacing, no reactor);
        returns the number delivered."""
        if self.outfile is not None and self._writer is None:
            self._writer = PcapWriter(self.outfile, snaplen=self._snaplen)
        topspeed, self.topspeed = self.topspeed, True
        try:
            n0 = self.replayed
            for _offset, data in self._schedule():
                self._deliver(data)
            return self.replayed - n0
        finally:
            self.topspeed = topspeed
