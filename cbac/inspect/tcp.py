"""TCP state and window tracking for CBAC sessions.

Modelled on netfilter's ``nf_conntrack_proto_tcp`` (Guido van Rooij's
"Real Stateful TCP Packet Filtering") and pf:

* per direction the tracker keeps ``end`` (highest seq + len sent),
  ``maxend`` (highest ack + window the peer advertised), ``maxwin``
  (largest window the sender advertised, scaled) and the window scale
  (parsed from the SYN options, honoured only when both SYNs carry it,
  capped at 14);
* a segment is accepted when (I) seq <= sender.maxend,
  (II) seq + len >= sender.end - receiver.maxwin,
  (III) ack <= receiver.end and (IV) ack >= receiver.end - max(66000,
  sender.maxwin); every failure is a named drop reason;
* an RST is accepted only when its sequence number lies within the
  window (I and II with length 0; RFC 5961 spirit): a forged RST outside
  the window never tears down a live session;
* invalid flag combinations (NULL, SYN+FIN, SYN+RST, FIN without ACK,
  ...) are dropped (netfilter's ``tcp_valid_flags`` table).

A GSO super-frame is one segment with one sequence range; nothing here
depends on the segment size.

Sequence numbers of both directions are in the *sender's* numbering
("input" numbering): when the stream engine has made length-changing
edits, it translates the acknowledgement numbers before calling
:func:`track`.
"""

from __future__ import annotations

from cbac.packet.errors import MalformedPacket
from cbac.packet.tcp import parse_options as _parse_options

from struct import Struct

from cbac.packet.checksum import checksum, fold, ones_sum, pseudo_header_sum
from cbac.packet.view import ACK, FIN, PSH, RST, SYN, URG

M32 = 0xFFFFFFFF
H32 = 0x80000000
MAXACKWINCONST = 66000

# Tracker states (IOS names in show output: SIS_OPENING / SIS_OPEN / SIS_CLOSING)
SYN_SENT = 1
SYN_RECV = 2
ESTABLISHED = 3
CLOSING = 4          # both FINs seen
CLOSED = 5           # RST seen

STATE_NAMES = {SYN_SENT: "SYN_SENT", SYN_RECV: "SYN_RECV", ESTABLISHED: "ESTABLISHED",
               CLOSING: "CLOSING", CLOSED: "CLOSED"}

_FLAG_MASK = FIN | SYN | RST | ACK | URG      # PSH, ECE, CWR do not matter

#: VALID[flags & _FLAG_MASK] (netfilter tcp_valid_flags)
VALID = [False] * 64
for _f in (SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK,
           ACK | URG):
    VALID[_f] = True
del _f


# indexes into TcpTrack.v (add the direction 0/1)
ISN, END, MAXEND, MAXWIN, SCALE, RCVD = 0, 2, 4, 6, 8, 10

#: :func:`track` verdicts for an RST inside the window (not drop reasons):
#: EXACT: at a sequence number the receiver could accept (between what it
#: acknowledged and what the sender sent); CHALLENGE: anywhere else in the
#: window, where an RFC 5961 receiver answers with a challenge ACK.
RST_EXACT = "rst-exact"
RST_CHALLENGE = "rst-challenge"

#: the slot of v[i]
_V_NAMES = ("isn0", "isn1", "end0", "end1", "maxend0", "maxend1", "maxwin0", "maxwin1",
            "scale0", "scale1", "rcvd0", "rcvd1")


class SlotView:
    """A live list-like view of some slots of an object (index, slice,
    assignment, len, iteration, comparison with a list), for code that
    reads or writes by index what is stored in slots: ``TcpTrack.v`` (the
    twelve window values, for the kernel offload and continuity; :func:`track`
    uses the slots) and a session's ``bytes``/``pkts`` (two counter slots,
    indexed by direction: ``v[d] += n`` works).  Made on each read of the
    attribute; the per-packet paths use the slots themselves."""

    __slots__ = ("o", "names")

    def __init__(self, o, names):
        self.o = o
        self.names = names

    def __getitem__(self, i):
        if i.__class__ is slice:
            o = self.o
            return [getattr(o, n) for n in self.names[i]]
        return getattr(self.o, self.names[i])

    def __setitem__(self, i, value):
        if i.__class__ is slice:
            names = self.names[i]
            value = list(value)
            if len(value) != len(names):
                raise ValueError("the view holds %d values" % len(names))
            o = self.o
            for n, x in zip(names, value):
                setattr(o, n, x)
            return
        setattr(self.o, self.names[i], value)

    def __len__(self):
        return len(self.names)

    def __iter__(self):
        o = self.o
        return iter([getattr(o, n) for n in self.names])

    def __eq__(self, other):
        try:
            return list(self) == list(other)
        except TypeError:
            return NotImplemented

    def __repr__(self):
        return repr(list(self))


#: the slots of a tracker (TcpTrack, and the TCP session that is its own tracker)
TRACK_SLOTS = ("state", "fin", "mss", "chal", "chald") + _V_NAMES


class TrackFields:
    """The tracker's accessors (no slots of its own: mixed into
    :class:`TcpTrack` and into the session table's TCP sessions, which
    carry the tracker's slots themselves).  Per direction d (0 client, 1
    server): ``isn<d>``, ``end<d>`` (highest seq + len sent), ``maxend<d>``
    (highest ack + window the peer advertised), ``maxwin<d>`` (largest
    window d advertised, scaled), ``scale<d>`` (window scale; -1 until d's
    SYN showed whether it carries the option), ``rcvd<d>`` (highest
    acknowledgement the peer sent for d's bytes).  ``v`` is a list-like
    view of them in that order (``v[ISN + d]`` ...).  ``state`` is the
    tracker state (SYN_SENT ... CLOSED), ``fin`` has bit d set once d sent
    a FIN, ``mss`` is the initiator's MSS (for the stream engine), ``chal``
    the deadline of an RST challenge (0: none), ``chald`` the direction the
    challenged RST came from."""

    __slots__ = ()

    def init_track(self) -> None:
        """The state before the initiator's SYN is seen."""
        self.state = SYN_SENT
        self.isn0 = self.isn1 = self.end0 = self.end1 = self.maxend0 = self.maxend1 = 0
        self.maxwin0 = self.maxwin1 = self.scale0 = self.scale1 = self.rcvd0 = self.rcvd1 = 0
        self.fin = 0
        self.mss = 536
        self.chal = 0
        self.chald = 0

    @property
    def v(self):
        return SlotView(self, _V_NAMES)

    # read-only views for the slow path and tests
    @property
    def isn(self):
        return [self.isn0, self.isn1]

    @property
    def end(self):
        return [self.end0, self.end1]

    @property
    def maxend(self):
        return [self.maxend0, self.maxend1]

    @property
    def maxwin(self):
        return [self.maxwin0, self.maxwin1]

    @property
    def scale(self):
        return [self.scale0, self.scale1]


class TcpTrack(TrackFields):
    """Per-session TCP tracking state, one slot per value (see
    :class:`TrackFields`).  The session table's TCP sessions are their own
    trackers (``session.tcp is session``); this class is the stand-alone
    form of the same state."""

    __slots__ = TRACK_SLOTS

    def __init__(self):
        self.init_track()


def parse_options(frame, l4: int, doff: int):
    """(mss, wscale or None, sack_permitted) from the TCP options; options
    that do not parse count as absent (the segment is judged on its
    sequence numbers, not refused for them)."""
    try:
        o = _parse_options(frame, l4, doff)
    except MalformedPacket:
        return None, None, False
    return o.mss, (None if o.wscale is None else min(o.wscale, 14)), o.sack_permitted

def init_client(t: TcpTrack, pkt) -> None:
    """Seed the tracker from the initiator's SYN."""
    seq = pkt.tcp_seq
    t.isn0 = seq
    r = t.rcvd0 = (seq + 1) & M32
    plen = pkt.payload_len
    # one int object for the three when the SYN carries no data
    t.end0 = t.maxend0 = (r + plen) & M32 if plen else r
    t.maxwin0 = pkt.tcp_win or 1
    if pkt.tcp_doff > 20:
        mss, ws, _sack = parse_options(pkt.frame, pkt.l4, pkt.tcp_doff)
        t.mss = mss or 536
        t.scale0 = -1 if ws is None else ws
    else:
        t.scale0 = -1


def _init_server(t: TcpTrack, pkt) -> None:
    seq = pkt.tcp_seq
    t.isn1 = seq
    t.end1 = t.maxend1 = t.rcvd1 = (seq + 1) & M32
    t.maxwin1 = pkt.tcp_win or 1
    ws = None
    if pkt.tcp_doff > 20:
        ws = parse_options(pkt.frame, pkt.l4, pkt.tcp_doff)[1]
    if ws is None or t.scale0 < 0:
        t.scale0 = t.scale1 = 0
    else:
        t.scale1 = ws
    # the SYN/ACK tells what the client may send (SYN windows are unscaled)
    t.maxend0 = (pkt.tcp_ack + (pkt.tcp_win or 1)) & M32


def track(t: TcpTrack, d: int, pkt, ack: int):
    """Check one segment of direction ``d`` and update the state.

    Returns None (accept) or a drop reason.  ``ack`` is the packet's
    acknowledgement number in the other direction's input numbering.
    Possible new states are read back from ``t.state`` by the caller.
    """
    flags = pkt.tcp_flags
    f = flags & _FLAG_MASK
    if not VALID[f]:
        return "invalid-flags"
    state = t.state
    seq = pkt.tcp_seq
    if f & SYN:
        if f & ACK:
            if d != 1:
                return "synack-from-initiator"
            if state == SYN_SENT:
                if ack != t.end0:
                    return "synack-bad-ack"
                _init_server(t, pkt)
                t.state = SYN_RECV
                return None
            if seq == t.isn1 and state < CLOSING:
                return None                 # retransmitted SYN/ACK
            return "unexpected-synack"
        if d == 0:
            if state == SYN_SENT:
                if seq != t.isn0:
                    init_client(t, pkt)     # the client restarted with a new ISN
                return None
            if state == SYN_RECV and seq == t.isn0:
                return None                 # retransmitted SYN (the SYN/ACK got lost)
        return "unexpected-syn"
    # the sender's (s_) and the receiver's (r_) values
    if d:
        s_end = t.end1
        s_maxend = t.maxend1
        s_maxwin = t.maxwin1
        r_end = t.end0
        r_maxwin = t.maxwin0
    else:
        s_end = t.end0
        s_maxend = t.maxend0
        s_maxwin = t.maxwin0
        r_end = t.end1
        r_maxwin = t.maxwin1
    if f & RST:
        if state == SYN_SENT:
            if d == 1:
                if not (f & ACK) or ack != t.end0:
                    return "rst-bad-ack"
            elif seq != t.end0:
                return "rst-out-of-window"
            t.state = CLOSED
            return None
        # within [sender.end - receiver.maxwin, sender.maxend]
        if ((s_maxend - seq) & M32) >= H32 or \
                ((seq - ((s_end - r_maxwin) & M32)) & M32) >= H32:
            return "rst-out-of-window"
        # RFC 5961 3.2: the receiver accepts only seq == RCV.NXT, which
        # lies between what it acknowledged and what the sender sent; below
        # what it acknowledged it drops the RST without a word; above what
        # was sent it answers with a challenge ACK.  The caller decides
        # (the state is not changed here).
        if ((seq - (t.rcvd1 if d else t.rcvd0)) & M32) >= H32:
            return "rst-below-ack"
        if ((s_end - seq) & M32) < H32:
            return RST_EXACT
        return RST_CHALLENGE
    # ACK (with data and/or FIN)
    if state == SYN_SENT:
        return "ack-before-synack"
    end = (seq + pkt.payload_len + (1 if f & FIN else 0)) & M32
    # (I) seq <= sender.maxend
    if ((s_maxend - seq) & M32) >= H32:
        return "seq-above-window"
    # (II) end >= sender.end - receiver.maxwin
    if ((end - ((s_end - r_maxwin) & M32)) & M32) >= H32:
        return "seq-below-window"
    # (III) ack <= receiver.end
    if ((r_end - ack) & M32) >= H32:
        return "ack-above-window"
    # (IV) ack >= receiver.end - max(66000, sender.maxwin)
    maxack = s_maxwin if s_maxwin > MAXACKWINCONST else MAXACKWINCONST
    if ((ack - ((r_end - maxack) & M32)) & M32) >= H32:
        return "ack-below-window"
    if d:
        sc = t.scale1
        win = pkt.tcp_win << sc if sc > 0 else pkt.tcp_win
        if s_maxwin < win:
            t.maxwin1 = win
        if ((end - s_end) & M32) < H32:
            t.end1 = end
        if ((ack - t.rcvd0) & M32) < H32:
            t.rcvd0 = ack
        right = (ack + (win or 1)) & M32
        if ((right - t.maxend0) & M32) < H32:
            t.maxend0 = right
    else:
        sc = t.scale0
        win = pkt.tcp_win << sc if sc > 0 else pkt.tcp_win
        if s_maxwin < win:
            t.maxwin0 = win
        if ((end - s_end) & M32) < H32:
            t.end0 = end
        if ((ack - t.rcvd1) & M32) < H32:
            t.rcvd1 = ack
        right = (ack + (win or 1)) & M32
        if ((right - t.maxend1) & M32) < H32:
            t.maxend1 = right
        if state == SYN_RECV and ack == t.end1:
            t.state = state = ESTABLISHED
    if f & FIN:
        t.fin |= 1 << d
        if t.fin == 3 and state < CLOSING:
            t.state = CLOSING
    return None


def new_bytes(t: TcpTrack, d: int, seq: int, plen: int) -> int:
    """Payload bytes of a segment beyond what direction d sent before
    (call before :func:`track` updates ``end``)."""
    if not plen:
        return 0
    adv = (seq + plen - (t.end1 if d else t.end0)) & M32
    if adv >= H32:
        return 0
    return plen if adv > plen else adv


# --------------------------------------------------------------------------
# Packet construction and checksum helpers (slow path)

_IPH = Struct("!BBHHHBBH4s4s")
_TCPH = Struct("!HHIIBBHHH")


def build_tcp(src: int, dst: int, sport: int, dport: int, seq: int, ack: int,
              flags: int, payload: bytes = b"", window: int = 0) -> bytearray:
    """An IPv4 + TCP packet (no options) with complete checksums."""
    tot = 40 + len(payload)
    ip = bytearray(_IPH.pack(0x45, 0, tot, 0, 0x4000, 64, 6, 0,
                             src.to_bytes(4, "big"), dst.to_bytes(4, "big")))
    c = checksum(ip)
    ip[10] = c >> 8
    ip[11] = c & 0xFF
    tcp = bytearray(_TCPH.pack(sport, dport, seq & M32, ack & M32, 5 << 4, flags,
                               window, 0, 0))
    tcp += payload
    c = tcp_checksum(src, dst, tcp, 0, len(tcp))
    tcp[16] = c >> 8
    tcp[17] = c & 0xFF
    return ip + tcp


def tcp_checksum(src: int, dst: int, buf, start: int, end: int) -> int:
    """The complete TCP checksum of buf[start:end] (field treated as is:
    zero it first)."""
    return (~fold(ones_sum(buf, start, end) + pseudo_header_sum(src, dst, 6, end - start))) & 0xFFFF


def fix_tcp_checksum(frame, l3: int, l4: int, end: int, partial: bool) -> None:
    """Recompute the TCP checksum of the segment frame[l4:end] in place
    (partial: store the NEEDS_CSUM pseudo-header sum instead)."""
    src = int.from_bytes(frame[l3 + 12:l3 + 16], "big")
    dst = int.from_bytes(frame[l3 + 16:l3 + 20], "big")
    if partial:
        v = pseudo_header_sum(src, dst, 6, end - l4)
    else:
        frame[l4 + 16] = frame[l4 + 17] = 0
        v = tcp_checksum(src, dst, frame, l4, end)
    frame[l4 + 16] = v >> 8
    frame[l4 + 17] = v & 0xFF


def set_ip_payload(pkt, data) -> int:
    """Replace the L4 payload of ``pkt.frame`` (a bytearray) with ``data``:
    Ethernet padding cut, ``pkt.payload_len``/``pkt.ip_len`` and the IP
    header (total length, checksum) fixed.  Returns the IP datagram's end
    in the frame; the L4 length and checksum are the caller's."""
    frame = pkt.frame
    l3 = pkt.l3
    p = pkt.payload
    end = l3 + pkt.ip_len
    if len(frame) > end:
        del frame[end:]              # Ethernet padding
    frame[p:end] = data
    pkt.payload_len = len(data)
    pkt.ip_len = p - l3 + len(data)
    fix_ip_header(frame, l3, pkt.ihl, pkt.ip_len)
    return l3 + pkt.ip_len


def fix_ip_header(frame, l3: int, ihl: int, total: int) -> None:
    """Store a new IP total length and recompute the header checksum."""
    frame[l3 + 2] = total >> 8
    frame[l3 + 3] = total & 0xFF
    frame[l3 + 10] = frame[l3 + 11] = 0
    c = checksum(frame, l3, l3 + ihl)
    frame[l3 + 10] = c >> 8
    frame[l3 + 11] = c & 0xFF


def is_partial(pkt) -> bool:
    """True when the frame's L4 checksum is a NEEDS_CSUM partial sum."""
    v = pkt.vnet
    return bool(v) and (v[0] & 1) == 1


__all__ = ["TcpTrack", "TrackFields", "TRACK_SLOTS", "track", "RST_EXACT", "RST_CHALLENGE", "init_client", "new_bytes", "parse_options", "build_tcp",
           "fix_tcp_checksum", "fix_ip_header", "is_partial", "VALID", "SYN_SENT", "SYN_RECV",
           "ESTABLISHED", "CLOSING", "CLOSED", "STATE_NAMES", "PSH"]
