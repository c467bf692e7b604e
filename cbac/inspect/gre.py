"""Enhanced GRE (RFC 2637 section 4.1: version 1, protocol 0x880B, key
present) of PPTP calls, keyed and translated by Call ID.

A PPTP call has two Call IDs: the PNS's (the client of the TCP 1723
control connection) and the PAC's (the server).  GRE toward a peer carries
*that peer's* Call ID in the key field's low 16 bits.  Under PAT several
inside PNSs may pick the same Call ID toward one server, so the PNS's
Call ID is mapped to one unique per (global address, server) on the
outside (like IOS and Linux nf_nat_pptp): the control channel is
rewritten by :mod:`cbac.inspect.pptp` (``CallMap.map``), and GRE here.

One :class:`GreCall` per call, with one key per side, in arriving form:
``src(4) + dst(4) + call id(2)``:

* PNS -> PAC: arrives ``(c_in[0], c_in[1], PAC id)``, leaves
  ``(c_out[0], c_out[1], PAC id)``;
* PAC -> PNS: arrives ``(c_out[1], c_out[0], mapped PNS id)``, leaves
  ``(c_in[1], c_in[0], PNS id)``.

A packet that is not enhanced GRE version 1 with the key bit, protocol
0x880B and no checksum/routing bits, or whose key matches no call, finds
no call here: it goes through the ACLs like any other GRE (dropped unless
an ACL permits gre, as before).

:class:`GreTable` lives on the session table (``sessions.gre``); its
``lookup``/``process`` are the session table's hooks for IP protocol 47,
so a call's packets take the router's session path (ACL bypass, cached
route).  A call dies with its control session (checked on every lookup
and swept when calls are added), on Call-Disconnect-Notify,
Stop-Control-Connection, or after the control session's idle time (the
rule's ``timeout``, else ``ip inspect tcp idle-time``) without a packet;
GRE packets count as activity of the control session too.
"""

from __future__ import annotations

import itertools

from cbac.packet import checksum as ck
from cbac.packet.view import ip_str

PROTO_GRE = 47
#: idle lifetime of a call's GRE (s) when its control session has none
#: (normally the control session's idle time applies)
IDLE = 3600.0
#: calls one control connection may hold
MAX_CALLS_PER_CONTROL = 64
#: calls in the whole table
MAX_CALLS = 4096


def _idle(c) -> float:
    """A call's GRE idle time: its control session's (``pptp timeout N``
    or ip inspect tcp idle-time), else :data:`IDLE`."""
    return getattr(c.parent, "idle", None) or IDLE


def _key(src: int, dst: int, cid: int) -> bytes:
    return src.to_bytes(4, "big") + dst.to_bytes(4, "big") + cid.to_bytes(2, "big")


class GreCall:
    """One PPTP call's GRE; shaped like a Session for the router and
    ``show ip inspect sessions``."""

    __slots__ = ("sid", "parent", "pns_id", "mapped_id", "pac_id", "c_in", "c_out",
                 "keys", "route", "dead", "created", "last", "bytes", "pkts", "entries",
                 "_hexid")

    proto = PROTO_GRE
    protocol = "pptp-gre"
    sis = "SIS_OPEN"
    stream = None
    translation = None

    @property
    def hexid(self):
        return "%X" % ((0x6E000000 + self.sid * 0x40) & 0xFFFFFFFF)

    @property
    def initiator(self):
        return (self.c_in[0], self.pns_id)

    @property
    def responder(self):
        return (self.c_in[1], self.pac_id)

    @property
    def app_state(self):
        return "PPTP call, PNS call ID %d (outside %d), PAC call ID %d" % (
            self.pns_id, self.mapped_id, self.pac_id)

    def flow_text(self):
        return "(%s:%d)=>(%s:%d)" % (ip_str(self.c_in[0]), self.pns_id,
                                     ip_str(self.c_in[1]), self.pac_id)

    def __repr__(self):
        return "<GreCall %s %s>" % (self.hexid, self.flow_text())


class GreTable:
    def __init__(self, sessions):
        self.sessions = sessions           # the SessionTable (clock, stats, audit)
        self.keys = {}                     # arriving key -> (call, direction)
        self.calls = {}                    # sid -> call
        self.mapped = {}                   # (global PNS addr, PAC addr, mapped id) -> call or True
        self._seq = 0

    # -- Call ID mapping (control channel) --------------------------------

    def map_id(self, control, pns_id: int) -> int | None:
        """The PNS Call ID to announce on the outside for ``pns_id`` of the
        control session ``control``: the same when free (or without NAT of
        the PNS), else the next free one.  Reserved until :meth:`open` or
        :meth:`release`.  None when all 65535 are taken."""
        c_in, c_out = control.c_in, control.c_out
        if c_in[0] == c_out[0]:
            return pns_id
        g, pac = c_out[0], c_out[1]
        mine = (control.sid, pns_id)
        for cand in itertools.chain((pns_id,), range(1, 65536)):
            if cand == 0:
                continue
            k = (g, pac, cand)
            cur = self.mapped.get(k)
            if cur is None or cur == mine:
                self.mapped[k] = mine
                return cand
            if isinstance(cur, GreCall) and cur.dead:
                self.mapped[k] = mine
                return cand
        return None

    def release(self, control, mapped_id: int) -> None:
        k = (control.c_out[0], control.c_out[1], mapped_id)
        cur = self.mapped.get(k)
        if cur == (control.sid, mapped_id) or (isinstance(cur, tuple) and cur[0] == control.sid):
            del self.mapped[k]

    # -- calls --------------------------------------------------------------

    def open(self, control, pns_id: int, mapped_id: int, pac_id: int):
        """A call is up: admit its GRE both ways.  Returns the call, or None
        when refused (limits, a key already taken)."""
        self._sweep()
        mine = [c for c in self.calls.values() if c.parent is control]
        for c in mine:
            if c.pac_id == pac_id and c.pns_id == pns_id:
                return c                   # a repeated reply
        if len(mine) >= MAX_CALLS_PER_CONTROL or len(self.calls) >= MAX_CALLS:
            self.sessions.stats.drop("pptp-too-many-calls")
            return None
        c_in, c_out = control.c_in, control.c_out
        k0 = _key(c_in[0], c_in[1], pac_id)
        k1 = _key(c_out[1], c_out[0], mapped_id)
        if k0 in self.keys or k1 in self.keys:
            self.sessions.stats.drop("pptp-call-id-collision")
            return None
        now = self.sessions.clock.seconds()
        self._seq += 1
        c = GreCall()
        c.sid = self._seq
        c.parent = control
        c.pns_id, c.mapped_id, c.pac_id = pns_id, mapped_id, pac_id
        c.c_in = (c_in[0], c_in[1], pns_id, pac_id)
        c.c_out = (c_out[0], c_out[1], mapped_id, pac_id)
        c.keys = (k0, k1)
        c.route = [None, None]
        c.dead = False
        c.created = c.last = now
        c.bytes = [0, 0]
        c.pkts = [0, 0]
        c.entries = ((c, 0), (c, 1))
        self.keys[k0] = c.entries[0]
        self.keys[k1] = c.entries[1]
        self.calls[c.sid] = c
        if c_in[0] != c_out[0]:
            self.mapped[(c_out[0], c_out[1], mapped_id)] = c
        st = self.sessions.stats
        st.created["pptp-gre"] = st.created.get("pptp-gre", 0) + 1
        if getattr(control, "audit", False):
            from cbac.log import ios
            ios.message("FW", 6, "SESS_AUDIT_TRAIL_START",
                        "Start pptp-gre session: initiator (%s:%d) -- responder (%s:%d)" % (
                            ip_str(c_in[0]), pns_id, ip_str(c_in[1]), pac_id))
        return c

    def close(self, call, reason="pptp-call-clear") -> None:
        if call.dead:
            return
        call.dead = True
        for k, e in zip(call.keys, call.entries):
            if self.keys.get(k) is e:
                del self.keys[k]
        self.calls.pop(call.sid, None)
        k = (call.c_out[0], call.c_out[1], call.mapped_id)
        if self.mapped.get(k) is call:
            del self.mapped[k]
        st = self.sessions.stats
        st.deleted[reason] = st.deleted.get(reason, 0) + 1
        if getattr(call.parent, "audit", False):
            from cbac.log import ios
            ios.message("FW", 6, "SESS_AUDIT_TRAIL",
                        "Stop pptp-gre session: initiator (%s:%d) sent %d bytes -- responder "
                        "(%s:%d) sent %d bytes" % (
                            ip_str(call.c_in[0]), call.pns_id, call.bytes[0],
                            ip_str(call.c_in[1]), call.pac_id, call.bytes[1]))

    def close_control(self, control, pac_id=None, pns_id=None, reason="pptp-call-clear") -> None:
        """Close the calls of one control session (all, or the one with
        ``pac_id`` / ``pns_id``) and drop its unused reservations."""
        for c in list(self.calls.values()):
            if c.parent is control and (pac_id is None or c.pac_id == pac_id) \
                    and (pns_id is None or c.pns_id == pns_id):
                self.close(c, reason)
        if pac_id is None and pns_id is None:
            for k, v in list(self.mapped.items()):
                if isinstance(v, tuple) and v[0] == control.sid:
                    del self.mapped[k]

    def _sweep(self) -> None:
        now = self.sessions.clock.seconds()
        for c in list(self.calls.values()):
            if c.parent.dead or now - c.last > _idle(c):
                self.close(c, "pptp-control-gone" if c.parent.dead else "idle")
        for k, v in list(self.mapped.items()):
            if isinstance(v, tuple) and v[0] not in self.sessions.sessions:
                del self.mapped[k]

    # -- per packet (the session table's hooks for protocol 47) --------------

    def lookup(self, pkt):
        frame = pkt.frame
        l4 = pkt.l4
        if pkt.frag or pkt.mf or pkt.l3 + pkt.ip_len - l4 < 8:
            return None
        # C R K S s Recur | A flags Ver: K set (S optional), C/R/s/recursion clear,
        # version 1; protocol 0x880B (PPP)
        if frame[l4] & 0xEF != 0x20 or frame[l4 + 1] & 0x7F != 0x01 \
                or frame[l4 + 2] != 0x88 or frame[l4 + 3] != 0x0B:
            return None
        l3 = pkt.l3
        hit = self.keys.get(bytes(frame[l3 + 12:l3 + 20] + frame[l4 + 6:l4 + 8]))
        if hit is None:
            return None
        c = hit[0]
        if c.parent.dead or self.sessions.clock.seconds() - c.last > _idle(c):
            self.close(c, "pptp-control-gone" if c.parent.dead else "idle")
            return None
        return hit

    def process(self, c, d, pkt) -> bool:
        """Rewrite a call's GRE packet for the other side (addresses with an
        incremental IP checksum, the key's Call ID); True = forward."""
        if c.dead:
            return False
        frame = pkt.frame
        l3 = pkt.l3
        l4 = pkt.l4
        if d == 0:
            src, dst = c.c_out[0], c.c_out[1]
            cid = c.pac_id
        else:
            src, dst = c.c_in[1], c.c_in[0]
            cid = c.pns_id
        csum = (frame[l3 + 10] << 8) | frame[l3 + 11]
        if src != pkt.src:
            csum = ck.update32(csum, pkt.src, src)
            frame[l3 + 12:l3 + 16] = src.to_bytes(4, "big")
            pkt.src = src
        if dst != pkt.dst:
            csum = ck.update32(csum, pkt.dst, dst)
            frame[l3 + 16:l3 + 20] = dst.to_bytes(4, "big")
            pkt.dst = dst
        frame[l3 + 10] = csum >> 8
        frame[l3 + 11] = csum & 0xFF
        frame[l4 + 6] = cid >> 8
        frame[l4 + 7] = cid & 0xFF
        now = self.sessions.clock.seconds()
        c.last = now
        c.pkts[d] += 1
        c.bytes[d] += pkt.ip_len - (l4 - l3)
        p = c.parent
        if not p.dead:
            p.last = now                  # the call keeps its control session alive
        return True


def gre_table(sessions) -> GreTable:
    """The session table's GRE table (made on first use)."""
    g = sessions.gre
    if g is None:
        g = sessions.gre = GreTable(sessions)
    return g


class CallMap:
    """What the PPTP inspector of one control session may do with Call IDs
    and GRE (``ctx.pptp_calls``)."""

    def __init__(self, sessions, control):
        self.sessions = sessions
        self.control = control

    def map(self, pns_id):
        return gre_table(self.sessions).map_id(self.control, pns_id)

    def release(self, mapped_id):
        gre_table(self.sessions).release(self.control, mapped_id)

    def open(self, pns_id, mapped_id, pac_id):
        return gre_table(self.sessions).open(self.control, pns_id, mapped_id, pac_id) is not None

    def close(self, pac_id=None, pns_id=None):
        gre_table(self.sessions).close_control(self.control, pac_id=pac_id, pns_id=pns_id)


__all__ = ["GreTable", "GreCall", "CallMap", "gre_table"]
