"""The TCP stream engine: hosts an :class:`~cbac.inspect.api.IStreamInspector`
on one TCP session.

The engine is a transparent, sequence-preserving relay that keeps two
numberings per direction: the *input* numbering (the sender's) and the
*output* numbering (what the receiver gets after edits).  Offsets are
absolute Python ints (offset 0 = first byte after the SYN), so nothing
wraps after 4 GB; sequence numbers are converted relative to a nearby
reference point.

Per direction it keeps:

* ``fed``: input offset of the next byte to feed the inspector; every byte
  is fed exactly once, in order.  A segment that starts beyond ``fed``
  (a hole: out of order) is dropped; the sender retransmits.  A segment
  that overlaps bytes already fed only contributes its new bytes: the
  overlapping part is replaced by the engine's own copy, so different
  content in a retransmission can never reach the receiver.
* ``in_buf``: fed bytes not yet forwarded (held by the inspector, or
  released but waiting for buffer room), input form.
* ``released``: the inspector's release point.  Bytes beyond it are never
  forwarded: a segment is trimmed to the released part (IP length and
  checksums fixed).  When a later call releases held bytes, the packet
  that caused it carries them (the segment grows backwards to the first
  unforwarded byte; beyond the receiver's MSS the rest goes out as extra
  segments through the session table's ``send``).
* ``out_buf``: the forwarded bytes, *as forwarded* (after edits), from
  the receiver's last acknowledgement (``out_base``) to ``out_fwd``.  A
  retransmission of forwarded bytes is re-sent from this copy.  Its size
  is bounded (:data:`BUFFER_CAP` for ``in_buf`` + ``out_buf``): when
  full, new data is dropped until the receiver acknowledges.
* ``regions``: length-changing edits, ``(in_start, in_end, out_start,
  out_end)``; sequence numbers of this direction and acknowledgement
  numbers (and SACK blocks) of the other are mapped through them for
  the rest of the connection, including retransmissions.

A FIN is forwarded only when every byte before it has been forwarded;
otherwise the FIN flag is removed and the sender retransmits it.
"""

from __future__ import annotations

from struct import Struct

from cbac.inspect import normalise
from cbac.inspect.api import CLIENT, SERVER, Edit, LogEvent, Verdict
from cbac.inspect.tcp import M32, fix_tcp_checksum, is_partial, set_ip_payload
from cbac.packet.errors import MalformedPacket
from cbac.packet.tcp import parse_options
from cbac.packet.view import ACK, FIN, PSH, RST, SYN, URG

#: bytes per direction (in_buf + out_buf) the engine buffers at most
BUFFER_CAP = 1 << 20
#: length-changing edit regions kept per direction (older ones fold into a shift)
MAX_REGIONS = 32

_U32 = Struct("!I")


def _signed(v: int) -> int:
    v &= M32
    return v - 0x100000000 if v & 0x80000000 else v


class StreamDir:
    __slots__ = ("isn", "fed", "released", "fwd", "in_buf", "out_base", "out_fwd",
                 "out_buf", "edits", "regions", "shift", "fin_fed", "mss")

    def __init__(self):
        self.isn = None
        self.fed = 0
        self.released = 0
        self.fwd = 0
        self.in_buf = bytearray()
        self.out_base = 0
        self.out_fwd = 0
        self.out_buf = bytearray()
        self.edits = []
        self.regions = []
        self.shift = 0          # output - input before the first kept region
        self.fin_fed = False
        self.mss = 536

    # -- numbering -------------------------------------------------------
    def in_abs(self, seq: int) -> int:
        return self.fed + _signed(seq - self.isn - 1 - self.fed)

    def out_abs(self, seq: int) -> int:
        return self.out_fwd + _signed(seq - self.isn - 1 - self.out_fwd)

    def seq_of(self, off: int) -> int:
        return (self.isn + 1 + off) & M32

    def map_start(self, x: int) -> int:
        for is_, ie, os_, oe in reversed(self.regions):
            if x >= ie:
                return oe + (x - ie)
            if x >= is_:
                return os_
        return x + self.shift

    def map_end(self, x: int) -> int:
        for is_, ie, os_, oe in reversed(self.regions):
            if x >= ie:
                return oe + (x - ie)
            if x > is_:
                return oe
            if x == is_:
                return os_
        return x + self.shift

    def unmap(self, y: int) -> int:
        for is_, ie, os_, oe in reversed(self.regions):
            if y >= oe:
                return ie + (y - oe)
            if y >= os_:
                return is_
        return y - self.shift

    # -- forwarding ------------------------------------------------------
    def advance(self) -> bool:
        """Move released bytes from in_buf to out_buf, applying edits.
        Returns True when something moved."""
        target = self.released
        fwd = self.fwd
        room = BUFFER_CAP - len(self.out_buf)
        if target - fwd > room:
            target = fwd + max(room, 0)
        if target <= fwd:
            return False
        edits = self.edits
        if not edits:
            out = self.in_buf[:target - fwd]
        else:
            out = bytearray()
            pos = fwd
            while edits and edits[0].offset < target:
                e = edits[0]
                if e.offset + e.length > target:
                    target = e.offset          # forward up to the edit; rest later
                    break
                out += self.in_buf[pos - fwd:e.offset - fwd]
                ostart = self.out_fwd + len(out)
                out += e.data
                if len(e.data) != e.length:
                    self.regions.append((e.offset, e.offset + e.length, ostart,
                                         ostart + len(e.data)))
                    if len(self.regions) > MAX_REGIONS:
                        is_, ie, os_, oe = self.regions.pop(0)
                        self.shift = oe - ie
                pos = e.offset + e.length
                edits.pop(0)
            if target <= fwd:
                return False
            out += self.in_buf[pos - fwd:target - fwd]
        del self.in_buf[:target - fwd]
        self.fwd = target
        self.out_buf += out
        self.out_fwd += len(out)
        return True

    def acked(self, y: int) -> None:
        """The receiver acknowledged output offset y."""
        if y > self.out_base:
            if y > self.out_fwd:
                y = self.out_fwd
            del self.out_buf[:y - self.out_base]
            self.out_base = y


class Stream:
    """The stream engine of one TCP session (see the module docstring).

    ``table`` is the :class:`~cbac.inspect.session.SessionTable` (for
    verdict side effects: log, debug, pinholes, reset); ``inspector`` the
    hosted inspector or None (opaque: relay only)."""

    __slots__ = ("table", "session", "inspector", "dirs", "category", "ctx", "dead")

    def __init__(self, table, session, inspector, ctx, category: str):
        self.table = table
        self.session = session
        self.inspector = inspector
        self.ctx = ctx
        self.category = category
        self.dirs = (StreamDir(), StreamDir())
        self.dead = False

    # -- set-up -------------------------------------------------------------
    def syn(self, d: int, seq: int, mss: int) -> None:
        sd = self.dirs[d]
        sd.isn = seq
        self.dirs[1 - d].mss = mss

    @property
    def plain(self) -> bool:
        """True when the stream no longer changes anything: opaque, nothing
        held, no edits, everything forwarded acknowledged."""
        if self.inspector is not None:
            return False
        for sd in self.dirs:
            if sd.regions or sd.shift or sd.in_buf or sd.out_fwd != sd.out_base or sd.edits:
                return False
        return True

    def ack_translate(self, d: int, ack: int) -> int:
        """The ack number of a packet from d in the other direction's input
        numbering (for the window tracker)."""
        od = self.dirs[1 - d]
        if od.isn is None or not (od.regions or od.shift):
            return ack
        return od.seq_of(od.unmap(od.out_abs(ack)))

    # -- verdicts -----------------------------------------------------------
    def _apply(self, d: int, v) -> bool:
        """Apply a verdict; False when the session was reset."""
        if v is None:
            return True
        sd = self.dirs[d]
        table = self.table
        s = self.session
        if v.debug:
            for line in v.debug:
                table.debug_line(self.category, line)
        if v.log:
            for event in v.log:
                if type(event) is not LogEvent:          # untyped: a broken inspector
                    try:
                        raise TypeError("inspector log entry is not a LogEvent: %r" % (event,))
                    except TypeError:
                        table.inspector_failed(s)
                    return False
                table.emit_log(s, event)
        if v.expect:
            for e in v.expect:
                table.add_pinhole(s, e)
        if v.close:
            from cbac.inspect.sip import close_group
            for g in v.close:
                close_group(table, g)
        if v.reset:
            table.stats.drop("inspector-reset")
            table.reset_session(s, v.reason or "inspector")
            return False
        if v.edits:
            floor = sd.released
            for e in v.edits:
                if not isinstance(e, Edit) or e.offset < floor or e.length < 0 or \
                        e.offset + e.length > sd.fed or e.offset < sd.fwd:
                    table.stats.drop("edit-ignored")
                    continue
                sd.edits.append(e)
            sd.edits.sort(key=lambda e: e.offset)
            # drop overlapping edits (keep the first)
            last = -1
            kept = []
            for e in sd.edits:
                if e.offset < last:
                    table.stats.drop("edit-ignored")
                    continue
                kept.append(e)
                last = e.offset + e.length
            sd.edits = kept
        rel = v.release
        if rel is None:
            rel = sd.fed
        if rel > sd.fed:
            rel = sd.fed
        if rel > sd.released:
            sd.released = rel
        if v.opaque:
            self.inspector = None
            for x in self.dirs:
                x.released = x.fed
            if s is not None:
                s.app_state = "opaque"
        return True

    def _feed(self, d: int, data: bytes) -> bool:
        insp = self.inspector
        sd = self.dirs[d]
        if insp is None:
            sd.released = sd.fed
            return True
        self.ctx.debug = self.category in self.table.debug_enabled
        try:
            v = insp.data_received(d, data)
        except Exception:
            self.table.inspector_failed(self.session)
            return False
        if not self._apply(d, v):
            return False
        return self._repoll(1 - d)

    def _repoll(self, d: int) -> bool:
        """Bytes of direction d held by the inspector may have been freed by
        what the other direction just said (a server reply decides whether
        pipelined client bytes are commands or body): ask again with no new
        data.  The freed bytes go out with the sender's next segment
        (usually its retransmission of them)."""
        sd = self.dirs[d]
        insp = self.inspector
        if insp is None or sd.fed <= sd.released:
            return True
        try:
            v = insp.data_received(d, b"")
        except Exception:
            self.table.inspector_failed(self.session)
            return False
        return self._apply(d, v)

    def _closed(self, d: int) -> bool:
        insp = self.inspector
        sd = self.dirs[d]
        if insp is None:
            sd.released = sd.fed
            return True
        try:
            v = insp.connection_closed(d)
        except Exception:
            self.table.inspector_failed(self.session)
            return False
        return self._apply(d, v)

    # -- the per-segment work ----------------------------------------------------
    def segment(self, d: int, pkt):
        """Process one TCP segment of direction d (already accepted by the
        window tracker).  Returns None to drop, else a list (possibly empty)
        of ``(seq, payload, fin)`` extra segments to send after the packet,
        which has been rewritten in place."""
        sd = self.dirs[d]
        od = self.dirs[1 - d]
        frame = pkt.frame
        l4 = pkt.l4
        flags = pkt.tcp_flags
        changed = False
        table = self.table
        if flags & SYN:
            if pkt.payload_len:
                table.stats.drop("syn-with-data")
                return None
            if sd.isn is None or sd.isn != pkt.tcp_seq:
                sd.isn = pkt.tcp_seq
            # a SYN/ACK acknowledges offset 0 of the client: nothing to map
            return []
        if sd.isn is None:
            if flags & RST and not pkt.payload_len:
                return []                # a refused connection: RST to the SYN
            table.stats.drop("stream-no-syn")
            return None
        if flags & URG or frame[l4 + 18] or frame[l4 + 19]:
            # urgent data is ordinary data here, so it must be for the
            # receiver too, whatever its SO_OOBINLINE (normalise.py)
            if normalise.urgent(table, pkt):
                changed = True
                flags = pkt.tcp_flags
        # acknowledgement of the other direction
        if flags & ACK and od.isn is not None:
            ack = pkt.tcp_ack
            y = od.out_abs(ack)
            if not flags & RST:          # an RST's ACK field acknowledges nothing
                od.acked(y)
            if od.regions or od.shift:
                nack = od.seq_of(od.unmap(y))
                if nack != ack:
                    frame[l4 + 8:l4 + 12] = _U32.pack(nack)
                    pkt.tcp_ack = nack
                    changed = True
                if pkt.tcp_doff > 20 and self._fix_sack(frame, l4, pkt.tcp_doff, od):
                    changed = True
        seq = pkt.tcp_seq
        plen = pkt.payload_len
        fin = flags & FIN
        off = sd.in_abs(seq)
        extras = []
        if flags & RST or (not plen and not fin):
            if flags & RST:
                # mapped through edits, never moved to the exact point
                # (RFC 5961: a blind RST stays blind)
                y = sd.map_start(off)
            else:
                y = sd.map_start(off if off < sd.fwd else sd.fwd)
            nseq = sd.seq_of(y)
            if nseq != seq:
                frame[l4 + 4:l4 + 8] = _U32.pack(nseq)
                pkt.tcp_seq = nseq
                changed = True
            if plen:
                # RST payload is never data (RFC 1122 4.2.2.12)
                normalise.count(table, "rst-data-stripped")
                self._finish(pkt, b"", True)
            elif changed:
                self._finish(pkt, None, False)
            return extras
        if off > sd.fed:
            table.stats.drop("stream-out-of-order")
            return None
        end = off + plen
        if end > sd.fed:
            if len(sd.in_buf) + len(sd.out_buf) + (end - sd.fed) > BUFFER_CAP:
                table.stats.drop("stream-buffer-full")
                return None
            p = pkt.payload
            new = bytes(frame[p + (sd.fed - off):p + plen])
            sd.in_buf += new
            sd.fed = end
            if not self._feed(d, new):
                return None
        if fin and end == sd.fed and not sd.fin_fed:
            sd.fin_fed = True
            if not self._closed(d):
                return None
        fwd_before = sd.fwd
        out_before = sd.out_fwd
        moved = sd.advance()
        # what this packet carries, in output numbering
        y_lo = sd.map_start(off)
        if y_lo < sd.out_base:
            y_lo = sd.out_base
        if moved:
            if y_lo > out_before:
                y_lo = out_before       # carry the released held bytes too
            y_hi = sd.out_fwd
        else:
            y_hi = sd.map_end(end if end < sd.fwd else sd.fwd)
            if y_hi > sd.out_fwd:
                y_hi = sd.out_fwd
        fin_out = bool(fin) and sd.fin_fed and sd.fwd == sd.fed and end == sd.fed
        if y_hi <= y_lo:
            data = b""
            y_lo = sd.map_start(off if off < sd.fwd else sd.fwd)
        else:
            data = sd.out_buf[y_lo - sd.out_base:y_hi - sd.out_base]
        if fin_out and y_hi < sd.out_fwd:
            fin_out = False
        # fast path: the packet goes out exactly as it came
        if (not changed and y_lo == off and not sd.regions and not sd.shift
                and fin_out == bool(fin) and len(data) == plen and off == fwd_before
                and sd.fwd == end):
            p = pkt.payload
            if frame[p:p + plen] == data:
                return extras
        maxseg = self._max_payload(d, pkt)
        if plen > maxseg:
            maxseg = plen                # GSO, or a segment the sender made larger
        if len(data) > maxseg:
            rest = data[maxseg:]
            data = data[:maxseg]
            y = y_lo + maxseg
            while rest:
                chunk = rest[:maxseg]
                rest = rest[maxseg:]
                extras.append((sd.seq_of(y), bytes(chunk), fin_out and not rest))
                y += len(chunk)
            fin_out_here = False
        else:
            fin_out_here = fin_out
        nseq = sd.seq_of(y_lo)
        frame[l4 + 4:l4 + 8] = _U32.pack(nseq)
        pkt.tcp_seq = nseq
        strip = 0
        if fin and not fin_out_here:
            strip = FIN
        if not data:
            strip |= PSH
        if strip and pkt.tcp_flags & strip:
            frame[l4 + 13] &= ~strip & 0xFF
            pkt.tcp_flags &= ~strip & 0xFF
        self._finish(pkt, data, True)
        if fin and not fin_out and sd.fwd < sd.fed:
            table.stats.drop("fin-held")
        return extras

    def _max_payload(self, d: int, pkt) -> int:
        """The most payload a segment cbac builds may carry towards d's
        receiver: its MSS less the options this segment carries (RFC 6691),
        and what fits the egress interface's MTU."""
        sd = self.dirs[d]
        cap = sd.mss - (pkt.tcp_doff - 20)
        s = self.session
        mtus = getattr(self.table, "if_mtu", None)
        if mtus and s is not None:
            mtu = mtus.get(s.out_if if d == CLIENT else s.in_if)
            if mtu:
                room = mtu - pkt.ihl - pkt.tcp_doff
                if room < cap:
                    cap = room
        return cap if cap > 0 else 1

    def _finish(self, pkt, data, replace: bool) -> None:
        """Write data as the payload (when replace) and fix lengths and
        checksums."""
        end = set_ip_payload(pkt, data) if replace else pkt.l3 + pkt.ip_len
        fix_tcp_checksum(pkt.frame, pkt.l3, pkt.l4, end, is_partial(pkt))

    @staticmethod
    def _fix_sack(frame, l4: int, doff: int, od: StreamDir) -> bool:
        """Map the SACK edges of a segment into the output numbering of the
        direction they acknowledge."""
        try:
            o = parse_options(frame, l4, doff)
        except MalformedPacket:
            return False
        changed = False
        if o.sack_off is not None:
            for i in range(2 * len(o.sack)):
                k = o.sack_off + 4 * i
                v = _U32.unpack_from(frame, k)[0]
                nv = od.seq_of(od.unmap(od.out_abs(v)))
                if nv != v:
                    frame[k:k + 4] = _U32.pack(nv)
                    changed = True
        return changed

    def rst_seqs(self, d: int):
        """Sequence numbers a reset *from* direction d's sender should carry
        to be accepted by the receiver: the output offset forwarded so far
        (and the last acknowledged one when different)."""
        sd = self.dirs[d]
        if sd.isn is None:
            return []
        a = sd.seq_of(sd.out_fwd)
        b = sd.seq_of(sd.out_base)
        return [a] if a == b else [a, b]

    def ack_for(self, d: int) -> int:
        """An acknowledgement number for a packet sent towards direction d's
        sender (what it sent and we forwarded, in its numbering)."""
        sd = self.dirs[d]
        if sd.isn is None:
            return 0
        return sd.seq_of(sd.fed)


__all__ = ["Stream", "StreamDir", "BUFFER_CAP", "CLIENT", "SERVER", "Verdict"]
