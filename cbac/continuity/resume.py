"""What a restored session does with its first packets.

**TCP window re-learning.**  The journal is written on state changes only
(never per data packet), so the window tracking values of an established
TCP session are those of its last state change: for a bulk transfer they
are gigabytes behind.  A restored ESTABLISHED or CLOSING session therefore
re-learns them from the first packet of each direction, and until then is
kept off the router's fast path (:class:`~cbac.continuity.state.NoRouteCache`).
Exactly what is loosened, and for how long:

* the **first segment from each direction** after the restore is not
  checked against the old sequence numbers (they are stale); it must
  carry ACK and no SYN, and it seeds that direction's tracking: its
  ``end`` (seq), window (``maxwin``: its advertised window, scaled with
  the scale negotiated in the handshake, which the journal holds) and what
  it acknowledges (the other side's ``end`` is at least the ack, the other
  side may send up to ack + window);
* while the **other direction has not spoken yet**, its window is assumed
  to be the largest it could have advertised (65535 << its scale), so
  the first direction's segments are checked against that bound instead
  of the real window;
* an **RST** from a direction not yet re-learned cannot be verified and is
  dropped (counted ``restore-rst-unverified``): a forged RST could
  otherwise end any restored connection whose 4-tuple it guesses;
* it ends when both directions have sent one segment (then the full
  checks of :func:`cbac.inspect.tcp.track` apply again and the session
  returns to the fast path); no later than the session's idle timer,
  which deletes a session nobody speaks on.

**Application inspectors.**  A session with a stream inspector is resumed
only when its inspector's state was saved while it was quiescent: for
SMTP/ESMTP, in the command state between commands (no partial line, no
gated command waiting for its reply, no held or unacknowledged bytes in
the stream engine); the saved state includes the stream engine's offsets.
Its first segment from each direction must then continue exactly where
the saved state ends (the data starts at or before the next byte to
inspect, and acknowledges no byte the saved state has not forwarded):
anything else means bytes passed after the state was saved, and the
session is reset.  Every other application session (FTP, HTTP, POP3,
IMAP, SMTP in DATA or mid-line, a DNS/TFTP guard) is restored as
**reset-on-next-packet**: its first packet is dropped, both ends get an RST
that their stacks accept (RFC 5961: at the sequence number the packet
shows they expect) and the session is deleted, with a log line.  No
restored session ever passes uninspected.
"""

from __future__ import annotations

from collections import deque

from cbac.inspect.api import CLIENT, SERVER
from cbac.inspect.tcp import (END, M32, MAXEND, MAXWIN, RCVD, SCALE, build_tcp)
from cbac.inspect.session import NO_ROUTE
from cbac.log import ios
from cbac.packet.view import ACK, FIN, RST, SYN

#: stream inspectors that can be resumed
RESUMABLE = ("smtp", "esmtp")

# SmtpInspector attributes saved, with their types (restored only into a
# fresh inspector of the same kind; any mismatch refuses the resume)
_SMTP_INTS = ("_coff", "_hdr_start", "_bdat_left", "_discard_len",
              "_soff", "_rline", "commands", "replies", "reply_lines", "body_bytes",
              "masked", "bad_replies")
_SMTP_BOOLS = ("_bdat_last", "_sdiscard")
_SMTP_BYTES = ("_prev2", "_data_tail")
# the state (smtp.TRANSITIONS) a session is saved and restored in: between
# commands only; _resume_mode (after an over-long line) is COMMAND or AUTH.
# (A snapshot of a version that saved an int _cmode has no "state": its
# SMTP sessions are not resumed, they are reset.)
_DIR_INTS = ("isn", "fed", "released", "fwd", "out_base", "out_fwd", "shift", "mss")


def _b(v: bytes) -> str:
    return bytes(v).decode("latin-1")


def _unb(v) -> bytes:
    if type(v) is not str or len(v) > 4096:
        raise ValueError("bad bytes")
    return v.encode("latin-1")


def snapshot(s):
    """The saved state of ``s``'s stream inspector, or ``"reset"`` when it
    cannot be resumed as it is now, or None (no stream inspector)."""
    st = s.stream
    if st is None:
        return None
    insp = st.inspector
    if s.protocol not in RESUMABLE or insp is None or st.dead:
        return "reset"
    try:
        from cbac.inspect import smtp
        if not isinstance(insp, smtp.SmtpInspector):
            return "reset"
        if (insp.dead or insp.opaque or insp.state not in (smtp.GREETING, smtp.COMMAND)
                or insp._blocked
                or insp._cbuf or insp._sbuf or insp._hdr is not None
                or insp._edits[0] or insp._edits[1]):
            return "reset"
        dirs = []
        for sd in st.dirs:
            if (sd.isn is None or sd.in_buf or sd.out_buf or sd.edits
                    or sd.out_fwd != sd.out_base or sd.fwd != sd.fed):
                return "reset"
            d = {k: getattr(sd, k) for k in _DIR_INTS}
            d["regions"] = [list(r) for r in sd.regions]
            d["fin_fed"] = bool(sd.fin_fed)
            dirs.append(d)
        i = {k: getattr(insp, k) for k in _SMTP_INTS}
        i.update({k: bool(getattr(insp, k)) for k in _SMTP_BOOLS})
        i.update({k: _b(getattr(insp, k)) for k in _SMTP_BYTES})
        i["_rcode"] = insp._rcode
        i["_rel"] = list(insp._rel)
        i["_pending"] = [_b(x) for x in insp._pending]
        i["_ext"] = sorted(_b(x) for x in insp._ext)
        i["esmtp"] = bool(insp.esmtp)
        i["state"] = insp.state
        i["_resume_mode"] = insp._resume_mode
        return {"kind": s.protocol, "dirs": dirs, "insp": i}
    except Exception:
        return "reset"


def signature(s):
    """What changes when a stream session's state moves on (compared by
    the periodic snapshot sweep; cheap)."""
    st = s.stream
    if st is None:
        return None
    a, b = st.dirs
    return (a.fed, b.fed, a.out_base, b.out_base, a.fin_fed, b.fin_fed)


def restore_stream(table, s, app) -> bool:
    """Attach a fresh inspector to ``s`` and load the saved state ``app``.
    False (nothing attached) when it does not fit."""
    try:
        from cbac.inspect import smtp
        if type(app) is not dict or app.get("kind") != s.protocol or s.protocol not in RESUMABLE:
            return False
        if s.protocol not in table.factories:
            return False
        if not table._attach_inspector(s, s.protocol, s.rule, s.tcp):
            return False
        st = s.stream
        insp = st.inspector
        ok = isinstance(insp, smtp.SmtpInspector)
        i = app["insp"]
        dirs = app["dirs"]
        if not ok or type(i) is not dict or type(dirs) is not list or len(dirs) != 2 \
                or bool(i.get("esmtp")) != bool(insp.esmtp):
            raise ValueError("inspector kind")
        for sd, d in zip(st.dirs, dirs):
            for k in _DIR_INTS:
                v = d[k]
                if type(v) is not int or (k != "shift" and v < 0):
                    raise ValueError(k)
                setattr(sd, k, v)
            regs = d["regions"]
            if type(regs) is not list or len(regs) > 64:
                raise ValueError("regions")
            sd.regions = [tuple(int(x) for x in r) for r in regs]
            if any(len(r) != 4 for r in sd.regions):
                raise ValueError("regions")
            sd.fin_fed = bool(d["fin_fed"])
            sd.in_buf = bytearray()
            sd.out_buf = bytearray()
            sd.edits = []
        for k in _SMTP_INTS:
            v = i[k]
            if type(v) is not int or v < 0:
                raise ValueError(k)
            setattr(insp, k, v)
        for k in _SMTP_BOOLS:
            setattr(insp, k, bool(i[k]))
        for k in _SMTP_BYTES:
            setattr(insp, k, _unb(i[k]))
        rc = i["_rcode"]
        if rc is not None and (type(rc) is not int or not 200 <= rc <= 599):
            raise ValueError("_rcode")
        insp._rcode = rc
        rel = i["_rel"]
        if type(rel) is not list or len(rel) != 2 or any(type(x) is not int for x in rel):
            raise ValueError("_rel")
        insp._rel = list(rel)
        pend = i["_pending"]
        if type(pend) is not list or len(pend) > 1000:
            raise ValueError("_pending")
        insp._pending = deque(_unb(x) for x in pend)
        ext = i["_ext"]
        if type(ext) is not list or len(ext) > 100:
            raise ValueError("_ext")
        insp._ext = set(_unb(x) for x in ext)
        state = i.get("state")
        if state not in (smtp.GREETING, smtp.COMMAND):
            raise ValueError("not between commands")
        resume_mode = i.get("_resume_mode")
        if resume_mode not in (smtp.COMMAND, smtp.AUTH):
            raise ValueError("_resume_mode")
        insp.state = smtp.GREETING if state == smtp.GREETING else smtp.COMMAND   # a restore
        insp._resume_mode = smtp.AUTH if resume_mode == smtp.AUTH else smtp.COMMAND
        return True
    except Exception:
        s.stream = None
        s.inspector = None
        return False


class Resume:
    """A restored session's first-packet handling (see the module doc)."""

    __slots__ = ("reset", "learned", "reason")

    def __init__(self, reset: bool, reason: str = ""):
        self.reset = reset
        self.learned = 0            # bit d: direction d has spoken
        self.reason = reason


def register(table, s, reset: bool, reason: str = "") -> None:
    """Put a restored TCP session in re-learning (or reset) mode."""
    from cbac.continuity.state import NoRouteCache
    table.resume_before = before
    table.resuming[s] = Resume(reset, reason)
    s.route = NoRouteCache([None, None])


def _done(table, s) -> None:
    table.resuming.pop(s, None)
    s.route = NO_ROUTE              # the fast path may cache its route again


def before(table, s, d: int, pkt) -> bool:
    """Called by :meth:`SessionTable.process` for a session in
    ``table.resuming`` before its normal processing.  False: drop the
    packet (the session may have been reset)."""
    r = table.resuming.get(s)
    if r is None:
        return True
    if s.proto != 6:
        _done(table, s)
        return True
    if r.reset:
        reset_now(table, s, d, pkt, r.reason or "inspector state not resumable")
        return False
    bit = 1 << d
    if r.learned & bit:
        return True
    flags = pkt.tcp_flags
    if flags & RST:
        table.stats.drop("restore-rst-unverified")
        return False
    if flags & SYN or not flags & ACK:
        return True                 # the normal checks judge it (reopen, invalid)
    t = s.tcp
    v = t.v
    o = 1 - d
    ack = pkt.tcp_ack
    st = s.stream
    if st is not None:
        sd = st.dirs[d]
        od = st.dirs[o]
        exp = sd.seq_of(sd.fed)
        seq = pkt.tcp_seq
        start = (exp - seq) & M32          # how far the segment starts before exp
        plen = pkt.payload_len
        # the segment must not leave a hole, and must not acknowledge bytes
        # the saved state never forwarded
        if start >= 0x80000000 or start > plen or \
                ((od.seq_of(od.out_fwd) - ack) & M32) >= 0x80000000:
            reset_now(table, s, d, pkt, "stream moved on after its state was saved")
            return False
        ack = st.ack_translate(d, ack)
    seq = pkt.tcp_seq
    sc = v[SCALE + d]
    win = pkt.tcp_win << sc if sc > 0 else pkt.tcp_win
    win = win or 1
    v[MAXWIN + d] = win
    v[RCVD + o] = ack
    v[MAXEND + o] = (ack + win) & M32
    if not r.learned & (1 << o):
        sco = v[SCALE + o]
        big = 65535 << sco if sco > 0 else 65535
        v[END + d] = seq
        v[END + o] = ack
        v[MAXWIN + o] = big
        v[RCVD + d] = seq
        v[MAXEND + d] = (seq + pkt.payload_len + big) & M32
    r.learned |= bit
    if r.learned == 3:
        _done(table, s)
    return True


def reset_now(table, s, d: int, pkt, reason: str) -> None:
    """Drop this packet, reset both ends and delete the session."""
    x = pkt.tcp_seq
    y = pkt.tcp_ack
    flags = pkt.tcp_flags
    n = pkt.payload_len + (1 if flags & FIN else 0)
    to_sender, to_other = (s.s_out, s.c_out) if d == CLIENT else (s.c_out, s.s_out)
    send = table.send
    if not flags & RST:
        if flags & ACK:
            # the sender accepts an RST at exactly what it acknowledged
            send(build_tcp(*to_sender, y, x + n, RST | ACK))
        send(build_tcp(*to_other, x, y, RST | ACK))
        if n:
            send(build_tcp(*to_other, x + n, y, RST | ACK))
    table.resuming.pop(s, None)
    ios.message("FW", 4, "RESTORE_RESET",
                "Restored %s session %s reset on its first packet: %s" % (
                    s.protocol, s.flow_text(), reason))
    table.stats.drop("restore-reset")
    table._delete(s, "restore-reset")


__all__ = ["snapshot", "signature", "restore_stream", "register", "before", "reset_now",
           "RESUMABLE", "CLIENT", "SERVER"]
