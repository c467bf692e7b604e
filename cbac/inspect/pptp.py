"""PPTP inspection (``ip inspect name NAME pptp``; RFC 2637), TCP 1723.

An :class:`~cbac.inspect.api.IStreamInspector` on the control connection
(the client is the PNS, the server the PAC).  Control messages are framed
by their Length field whatever the segmentation, held until complete and
checked (length exact for the type, PPTP message type 1, magic cookie
0x1A2B3C4D, a known control message type).  Call IDs are tracked; under
PAT the PNS's Call ID is mapped to one unique per (global address, PAC)
(``ctx.pptp_calls``, :class:`cbac.inspect.gre.CallMap`) with same-length
edits (sequence numbers never move).  When a call is up, its enhanced GRE
(:mod:`cbac.inspect.gre`) passes both ways, translated by Call ID.

Transitions (C = from the client/PNS, S = from the server/PAC):

===========  =========================================  =======  =========================
state        event                                      verdict  next state / action
===========  =========================================  =======  =========================
IDLE         C Start-Control-Connection-Request (1)     PASS     WAIT_REPLY
WAIT_REPLY   S Start-Control-Connection-Reply (2), ok   PASS     ESTABLISHED
WAIT_REPLY   S SCCRP with an error result               PASS     IDLE
ESTABLISHED  C Outgoing-Call-Request (7)                PASS     call pending; Call ID
                                                                 mapped (PAT)
ESTABLISHED  S Outgoing-Call-Reply (8) to a pending     PASS     result 1: GRE call open;
             call                                                Peer's Call ID mapped back
ESTABLISHED  S Incoming-Call-Request (9)                PASS     incoming call pending
ESTABLISHED  C Incoming-Call-Reply (10), result 1       PASS     GRE call open; Call ID
                                                                 mapped
ESTABLISHED  S Incoming-Call-Connected (11), S WAN-     PASS     Peer's Call ID mapped back
             Error-Notify (14), S Set-Link-Info (15)
ESTABLISHED  C Call-Clear-Request (12)                  PASS     Call ID mapped
ESTABLISHED  S Call-Disconnect-Notify (13)              PASS     the call's GRE closed
ESTABLISHED  Echo-Request/Reply (5, 6), C SLI (15)      PASS     ESTABLISHED
any          Stop-Control-Connection-Request/Reply      PASS     STOPPING: every call's
             (3, 4)                                              GRE closed
any          a message in the wrong state or            RESET    alert %FW-3-PPTP_MALFORMED
             direction, a malformed message, an
             unknown Call ID, too many calls
===========  =========================================  =======  =========================
"""

from __future__ import annotations

from struct import Struct

from zope.interface import implementer, provider

from cbac.inspect.api import (CLIENT, SERVER, Edit, IInspectorFactory, IStreamInspector, Verdict,
                              alert)
from cbac.inspect.fsm import check_table, go

MAGIC = 0x1A2B3C4D
#: control message type -> exact length (RFC 2637 section 2)
LENGTHS = {1: 156, 2: 156, 3: 16, 4: 16, 5: 16, 6: 20, 7: 168, 8: 32, 9: 220, 10: 24,
           11: 28, 12: 16, 13: 148, 14: 40, 15: 24}
NAMES = {1: "Start-Control-Connection-Request", 2: "Start-Control-Connection-Reply",
         3: "Stop-Control-Connection-Request", 4: "Stop-Control-Connection-Reply",
         5: "Echo-Request", 6: "Echo-Reply", 7: "Outgoing-Call-Request",
         8: "Outgoing-Call-Reply", 9: "Incoming-Call-Request", 10: "Incoming-Call-Reply",
         11: "Incoming-Call-Connected", 12: "Call-Clear-Request",
         13: "Call-Disconnect-Notify", 14: "WAN-Error-Notify", 15: "Set-Link-Info"}
#: calls pending (requested, not yet answered) per control connection
MAX_PENDING = 16

IDLE, WAIT_REPLY, ESTABLISHED, STOPPING = "IDLE", "WAIT_REPLY", "ESTABLISHED", "STOPPING"

#: the control connection's states (the table above); every change goes
#: through fsm.go, so one this table does not list resets the connection
TRANSITIONS = check_table({
    IDLE: (WAIT_REPLY, STOPPING),
    WAIT_REPLY: (ESTABLISHED, IDLE, STOPPING),
    ESTABLISHED: (STOPPING,),
    STOPPING: (STOPPING,),
})

_HDR = Struct("!HHIHH")
_U16 = Struct("!H")


class Refused(Exception):
    pass


def ntoa(addr):
    return "%d.%d.%d.%d" % ((addr >> 24) & 255, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255)


@implementer(IStreamInspector)
class PptpInspector:
    name = "pptp"

    def __init__(self, ctx):
        self.ctx = ctx
        self.calls = getattr(ctx, "pptp_calls", None)
        self.state = IDLE
        self._buf = [bytearray(), bytearray()]
        self._start = [0, 0]
        self._rel = [0, 0]
        self.out = {}                  # PNS call id -> mapped id (outgoing, pending or up)
        self.rev = {}                  # mapped id -> PNS call id
        self.pending = set()           # mapped ids of OCRQs awaiting their reply
        self.incoming = set()          # PAC call ids of ICRQs awaiting ICRP
        self.pac = {}                  # PAC call id -> PNS call id (calls up)
        self.up = 0
        self.last = ""

    # -- IStreamInspector ---------------------------------------------------

    def data_received(self, direction, data):
        v = Verdict()
        d = direction
        buf = self._buf[d]
        buf += data
        while len(buf) >= 2:
            n = (buf[0] << 8) | buf[1]
            if n < 12 or n > 220:
                return self._bad(v, d, "bad length %d" % n)
            if len(buf) < n:
                break
            msg = bytearray(buf[:n])
            try:
                changed = self._message(d, msg, v)
            except Refused as e:
                return self._bad(v, d, str(e))
            if changed:
                v.edits.append(Edit(self._start[d], n, bytes(msg)))
            del buf[:n]
            self._start[d] += n
        v.release = self._rel[d] = self._start[d]
        return v

    def connection_closed(self, direction):
        if self.calls is not None:
            self.calls.close()
        return None

    def state_summary(self):
        return "PPTP %s, %d calls up, last %s" % (self.state.lower(), self.up,
                                                  self.last or "none")

    # -- messages -------------------------------------------------------------

    def _message(self, d, m, v):
        n, ptype, magic, ctype, _res = _HDR.unpack_from(m, 0)
        if ptype != 1 or magic != MAGIC:
            raise Refused("not a control message")
        if LENGTHS.get(ctype) != n:
            raise Refused("bad length %d for type %d" % (n, ctype))
        self.last = NAMES[ctype]
        if self.ctx.debug:
            v.debug.append("CBAC PPTP: %s from %s" % (NAMES[ctype],
                                                      "client" if d == CLIENT else "server"))
        st = self.state
        if ctype == 1:
            if d != CLIENT or st != IDLE:
                raise Refused("unexpected %s" % NAMES[ctype])
            self._go(WAIT_REPLY)
            return False
        if ctype == 2:
            if d != SERVER or st != WAIT_REPLY:
                raise Refused("unexpected %s" % NAMES[ctype])
            self._go(ESTABLISHED if m[14] == 1 else IDLE)
            return False
        if ctype in (3, 4):
            self._go(STOPPING)
            self._close()
            return False
        if st != ESTABLISHED:
            raise Refused("%s outside an established control connection" % NAMES[ctype])
        if ctype in (5, 6):
            return False
        cid = _U16.unpack_from(m, 12)[0]
        if ctype == 7:                               # OCRQ: PNS Call ID
            if d != CLIENT:
                raise Refused("unexpected %s" % NAMES[ctype])
            if len(self.pending) >= MAX_PENDING:
                raise Refused("too many pending calls")
            mapped = self._map(cid)
            self.pending.add(mapped)
            return self._put(m, 12, mapped, cid)
        if ctype == 8:                               # OCRP: PAC id, Peer's = PNS (mapped)
            if d != SERVER:
                raise Refused("unexpected %s" % NAMES[ctype])
            peer = _U16.unpack_from(m, 14)[0]
            if peer not in self.pending:
                raise Refused("reply for an unknown call %d" % peer)
            self.pending.discard(peer)
            pns = self.rev[peer]
            if m[16] == 1:
                self._open(pns, peer, cid, v)
            else:
                self._forget(pns)
            return self._put(m, 14, pns, peer)
        if ctype == 9:                               # ICRQ: PAC id
            if d != SERVER:
                raise Refused("unexpected %s" % NAMES[ctype])
            if len(self.incoming) >= MAX_PENDING:
                raise Refused("too many pending calls")
            self.incoming.add(cid)
            return False
        if ctype == 10:                              # ICRP: PNS id, Peer's = PAC id
            if d != CLIENT:
                raise Refused("unexpected %s" % NAMES[ctype])
            pac = _U16.unpack_from(m, 14)[0]
            if pac not in self.incoming:
                raise Refused("reply for an unknown call %d" % pac)
            self.incoming.discard(pac)
            mapped = self._map(cid)
            if m[16] == 1:
                self._open(cid, mapped, pac, v)
            else:
                self._forget(cid)
            return self._put(m, 12, mapped, cid)
        if ctype == 12:                              # CCRQ: PNS id
            if d != CLIENT:
                raise Refused("unexpected %s" % NAMES[ctype])
            if cid not in self.out:
                raise Refused("clear of an unknown call %d" % cid)
            return self._put(m, 12, self.out[cid], cid)
        if ctype == 13:                              # CDN: PAC id
            if d != SERVER:
                raise Refused("unexpected %s" % NAMES[ctype])
            pns = self.pac.pop(cid, None)
            if pns is not None:
                if self.calls is not None:
                    self.calls.close(pac_id=cid)
                self._forget(pns)
                self.up -= 1
            return False
        # 11 ICCN, 14 WEN, 15 SLI: Peer's Call ID
        if d == CLIENT:
            if ctype != 15:
                raise Refused("unexpected %s" % NAMES[ctype])
            return False                             # names the PAC's id
        if cid not in self.rev:
            raise Refused("%s for an unknown call %d" % (NAMES[ctype], cid))
        return self._put(m, 12, self.rev[cid], cid)

    def _go(self, new):
        self.state = go("pptp", TRANSITIONS, self.state, new)

    @staticmethod
    def _put(m, off, new, old):
        if new == old:
            return False
        _U16.pack_into(m, off, new)
        return True

    def _map(self, pns):
        mapped = self.out.get(pns)
        if mapped is not None:
            return mapped
        mapped = self.calls.map(pns) if self.calls is not None else pns
        if mapped is None:
            raise Refused("no Call ID left on the outside")
        self.out[pns] = mapped
        self.rev[mapped] = pns
        return mapped

    def _forget(self, pns):
        mapped = self.out.pop(pns, None)
        if mapped is not None:
            self.rev.pop(mapped, None)
            if self.calls is not None:
                self.calls.release(mapped)

    def _open(self, pns, mapped, pac, v):
        if self.calls is not None and not self.calls.open(pns, mapped, pac):
            raise Refused("GRE for call %d refused" % pns)
        if pac not in self.pac:
            self.up += 1
        self.pac[pac] = pns
        if self.ctx.debug:
            v.debug.append("CBAC PPTP: call up, PNS Call ID %d (outside %d), PAC Call ID %d: "
                           "GRE admitted" % (pns, mapped, pac))

    def _close(self):
        if self.calls is not None:
            self.calls.close()
        self.up = 0
        self.pac.clear()

    def _bad(self, v, d, why):
        v.release = self._rel[d]
        v.edits = []
        v.expect = []
        c = self.ctx
        v.log.append(alert(3, "PPTP_MALFORMED",
                      "PPTP control message refused (%s) -- initiator %s:%d responder %s:%d"
                      % (why, ntoa(c.client_addr), c.client_port, ntoa(c.server_addr),
                         c.server_port)))
        self._close()
        v.reset = True
        v.reason = "pptp-refused"
        return v


@provider(IInspectorFactory)
def factory(ctx):
    """The ``pptp`` inspector factory (IInspectorFactory)."""
    return PptpInspector(ctx)


factory.name = "pptp"
