"""The active/standby pair: the state sync link and the roles.

``cbac redundancy peer A.B.C.D interface IFNAME key KEY [port N]`` (see
docs/continuity.md).  The sync link is a TCP connection between the two
boxes' sync addresses (the IOS address of IFNAME, a kernel interface that
is not a data port); the box with the lower address connects, the other
listens and accepts only the configured peer.

**Messages** are length-prefixed (4 bytes): ``HMAC-SHA256(32) SEQ(8) JSON``.
The MAC covers a label, both ends' random nonces of this connection, the
sequence number and the JSON body, so a message cannot be forged without
the key, nor replayed into another connection, nor reordered, dropped or
repeated within one (the receiver wants exactly the next sequence number;
anything else closes the link with a log line).  Each end first sends a
``hello`` (its nonce and role, MAC'd with the key alone), then an ``auth``
MAC'd with both nonces; nothing else is accepted before a valid ``auth``.

**What flows**: the active box (keepalived MASTER) sends, on every new
authenticated connection, a bulk resync (``bulk begin``, the whole live
state as continuity records, ``bulk end``), then every batch of changes
the continuity observer makes (:mod:`cbac.continuity.restart`: session
created/opened/closing/closed, translation created/removed, host
blocked/unblocked, resumable inspector state once a second), in order, on
one TCP connection.  The standby keeps the records (it does not forward:
its router is not started) and on becoming MASTER installs them with the
same code as a restart (:meth:`Continuity.restore`: TCP windows re-learnt,
SMTP resumed between commands, other inspectors reset on their next
packet), starts its router, which announces its addresses with gratuitous
ARP, and forwards.

Roles come from keepalived through :mod:`cbac.continuity.vrrp` (notify
socket).  Until told MASTER a box with ``cbac redundancy`` never forwards
(fail closed: two forwarding boxes on one segment is the worse failure).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver

from cbac.continuity.journal import State
from cbac.log import ios

log = Logger(namespace="cbac.redundancy")

MASTER, BACKUP, FAULT, INIT = "MASTER", "BACKUP", "FAULT", "INIT"
ROLES = (MASTER, BACKUP, FAULT)

#: seconds between two keepalives; the link is declared down after DEAD_AFTER
PING_INTERVAL = 1.0
DEAD_AFTER = 3.5
RECONNECT_DELAY = 1.0
#: gratuitous ARP again this long after a takeover (seconds): a Linux
#: neighbour ignores a new address for the same IP within ``locktime``
#: (1 s) of its last update, so one announcement can be missed under load
GARP_REPEAT = (0.5, 1.5, 3.0, 6.0)
#: records per message of a bulk resync
BULK_CHUNK = 500
LABEL = b"cbac-sync-1"


def _mac(key: bytes, parts) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


class SyncProtocol(Int32StringReceiver):
    """One sync connection (both ends run the same protocol)."""

    MAX_LENGTH = 64 << 20

    def __init__(self, ctl):
        self.ctl = ctl
        self.key = ctl.key
        self.nonce = os.urandom(16)
        self.peer_nonce = None
        self.peer_role = None
        self.authed = False
        self.tx_seq = 0
        self.rx_seq = 0
        self.last_rx = 0.0
        self._ping = None

    # -- framing -----------------------------------------------------------

    def _send(self, obj, hello=False) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        if hello:
            seq = 0
            mac = _mac(self.key, (LABEL, b"hello", body))
        else:
            self.tx_seq += 1
            seq = self.tx_seq
            mac = _mac(self.key, (LABEL, self.nonce, self.peer_nonce, seq.to_bytes(8, "big"),
                                  body))
        self.sendString(mac + seq.to_bytes(8, "big") + body)
        self.ctl.tx_bytes += len(body) + 44

    def send(self, obj) -> None:
        if self.authed and self.transport is not None:
            self._send(obj)

    def stringReceived(self, data: bytes) -> None:
        if len(data) < 40:
            return self._refuse("short message")
        mac, seq, body = data[:32], int.from_bytes(data[32:40], "big"), data[40:]
        self.ctl.rx_bytes += len(data) + 4
        if self.peer_nonce is None:
            want = _mac(self.key, (LABEL, b"hello", body))
            if seq != 0 or not hmac.compare_digest(mac, want):
                return self._refuse("bad hello (wrong key?)")
            try:
                obj = json.loads(body)
                nonce = bytes.fromhex(obj["nonce"])
                role = obj["role"]
            except (ValueError, KeyError, TypeError):
                return self._refuse("malformed hello")
            if len(nonce) != 16 or role not in ROLES + (INIT,):
                return self._refuse("malformed hello")
            self.peer_nonce = nonce
            self.peer_role = role
            self._send({"t": "auth"})
            return None
        want = _mac(self.key, (LABEL, self.peer_nonce, self.nonce, data[32:40], body))
        if not hmac.compare_digest(mac, want):
            return self._refuse("message %d fails authentication" % seq)
        if seq != self.rx_seq + 1:
            return self._refuse("sequence number %d, expected %d" % (seq, self.rx_seq + 1))
        self.rx_seq = seq
        self.last_rx = self.ctl.clock.seconds()
        try:
            obj = json.loads(body)
            kind = obj["t"]
        except (ValueError, KeyError, TypeError):
            return self._refuse("malformed message %d" % seq)
        if kind == "auth":
            if not self.authed:
                self.authed = True
                self.ctl.link_up(self)
            return None
        if not self.authed:
            return self._refuse("message before authentication")
        try:
            self.ctl.message(self, kind, obj)
        except Exception:
            log.failure("redundancy: handling a {kind} message failed", kind=kind)
            self._refuse("message %d could not be applied" % seq)
        return None

    def _refuse(self, why: str) -> None:
        ios.message("CBAC", 3, "SYNC_REFUSED", "State sync from %s refused: %s; link closed"
                    % (self.ctl.peer, why))
        self.ctl.refused += 1
        if self.transport is not None:
            self.transport.loseConnection()

    # -- life cycle ----------------------------------------------------------

    def connectionMade(self) -> None:
        peer = getattr(self.transport.getPeer(), "host", None)
        if peer != self.ctl.peer:
            ios.message("CBAC", 3, "SYNC_REFUSED",
                        "State sync connection from %s refused: not the configured peer %s"
                        % (peer, self.ctl.peer))
            self.transport.loseConnection()
            return
        if self.ctl.proto is not None and self.ctl.proto is not self:
            self.ctl.proto.transport.loseConnection()    # a new connection wins
        self.ctl.proto = self
        self.last_rx = self.ctl.clock.seconds()
        self._send({"t": "hello", "v": 1, "nonce": self.nonce.hex(), "role": self.ctl.role},
                   hello=True)
        self._ping = self.ctl.clock.callLater(PING_INTERVAL, self._keepalive)

    def _keepalive(self) -> None:
        self._ping = None
        if self.transport is None:
            return
        if self.ctl.clock.seconds() - self.last_rx > DEAD_AFTER:
            ios.message("CBAC", 3, "SYNC_LINK_DOWN",
                        "State sync link to %s: nothing heard for %.1f s; closing"
                        % (self.ctl.peer, DEAD_AFTER))
            self.transport.abortConnection()
            return
        self.send({"t": "ping"})
        self._ping = self.ctl.clock.callLater(PING_INTERVAL, self._keepalive)

    def connectionLost(self, reason=None) -> None:
        if self._ping is not None and self._ping.active():
            self._ping.cancel()
        self._ping = None
        self.ctl.link_lost(self)


class _Factory(protocol.Factory):
    def __init__(self, ctl):
        self.ctl = ctl

    def buildProtocol(self, addr):
        return SyncProtocol(self.ctl)


class Redundancy:
    """The roles and the sync link of one box (``appliance``: cbac.app.Appliance).

    ``reactor`` provides TCP (listenTCP/connectTCP) and time."""

    def __init__(self, appliance, config, reactor, local_addr: str):
        self.app = appliance
        self.cfg = config
        self.reactor = reactor
        self.clock = reactor
        self.peer = str(config.peer)
        self.local = local_addr
        self.port = config.port
        self.key = config.key.encode()
        self.role = INIT
        self.proto = None
        self.state = State()            # what the standby holds (records)
        self.in_sync = False
        self.peer_role = None
        self.listener = None
        self._connect_call = None
        self._connector = None
        self.tx_bytes = self.rx_bytes = 0
        self.records_sent = self.records_received = 0
        self.bulks_sent = self.bulks_received = 0
        self.refused = 0
        self.last_change = None
        self.last_takeover = None
        self.link_down_at = None        # monotonic time the link went down
        self.connects = 0
        self.running = False

    @property
    def connector(self) -> bool:
        import ipaddress
        return int(ipaddress.IPv4Address(self.local)) < int(ipaddress.IPv4Address(self.peer))

    # -- life cycle ----------------------------------------------------------

    def start(self, initial=None) -> None:
        """Listen (or connect) on the sync link; ``initial``: the saved
        state to take over with if this box becomes MASTER before any sync
        (its own journal)."""
        if initial is not None:
            self.state = initial
        self.running = True
        if self.connector:
            self._connect()
        else:
            try:
                self.listener = self.reactor.listenTCP(self.port, _Factory(self),
                                                       interface=self.local)
            except Exception as e:
                ios.message("CBAC", 3, "SYNC_LISTEN",
                            "State sync: cannot listen on %s:%d (%s); retrying" % (
                                self.local, self.port, e))
                self._connect_call = self.clock.callLater(RECONNECT_DELAY * 5, self._relisten)
        ios.message("CBAC", 6, "REDUNDANCY",
                    "Redundancy: peer %s on %s, sync %s %s:%d; not forwarding until keepalived "
                    "says MASTER" % (self.peer, self.cfg.interface,
                                     "connecting from" if self.connector else "listening on",
                                     self.local, self.port))

    def _relisten(self) -> None:
        self._connect_call = None
        if self.running and self.listener is None:
            try:
                self.listener = self.reactor.listenTCP(self.port, _Factory(self),
                                                       interface=self.local)
            except Exception:
                self._connect_call = self.clock.callLater(RECONNECT_DELAY * 5, self._relisten)

    def _connect(self) -> None:
        self._connect_call = None
        if not self.running or self.proto is not None:
            return
        ctl = self

        class _CF(protocol.ClientFactory):
            def buildProtocol(self, addr):
                return SyncProtocol(ctl)

            def clientConnectionFailed(self, connector, reason):
                ctl._connector = None
                ctl._retry()

        self.connects += 1
        self._connector = self.reactor.connectTCP(self.peer, self.port, _CF(), timeout=3,
                                                  bindAddress=(self.local, 0))

    def _retry(self) -> None:
        if self.running and self.connector and self._connect_call is None:
            self._connect_call = self.clock.callLater(RECONNECT_DELAY, self._connect)

    def stop(self) -> None:
        self.running = False
        if self._connect_call is not None and self._connect_call.active():
            self._connect_call.cancel()
        self._connect_call = None
        if self.listener is not None:
            self.listener.stopListening()
            self.listener = None
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.loseConnection()
        if self._connector is not None:
            try:
                self._connector.disconnect()
            except Exception:
                pass

    # -- the link -------------------------------------------------------------

    def link_up(self, proto) -> None:
        self.peer_role = proto.peer_role
        self.link_down_at = None
        ios.message("CBAC", 5, "SYNC_LINK_UP", "State sync link to %s up (peer is %s)" % (
            self.peer, proto.peer_role))
        if self.role == MASTER:
            self.bulk(proto)
        if self.role == MASTER and proto.peer_role == MASTER:
            self._split_brain()

    def link_lost(self, proto) -> None:
        if self.proto is proto:
            self.proto = None
            if proto.authed:
                self.link_down_at = time.monotonic()
                ios.message("CBAC", 3, "SYNC_LINK_DOWN",
                            "State sync link to %s down; %s" % (
                                self.peer,
                                "changes are not mirrored until it is back (the standby "
                                "would lose them on a failover)" if self.role == MASTER else
                                "this standby keeps the state it has (%d sessions) and gets a "
                                "full resync when the link is back" % len(self.state.sessions)))
            self._retry()

    def _split_brain(self) -> None:
        ios.message("CBAC", 2, "SPLIT_BRAIN",
                    "Both boxes are MASTER (peer %s): keepalived's election is split; "
                    "both forward and their new sessions are not mirrored" % self.peer)

    def bulk(self, proto) -> None:
        c = self.app.continuity
        recs = list(c.live_records()) if c is not None else []
        proto.send({"t": "bulk", "p": "begin", "n": len(recs)})
        for i in range(0, len(recs), BULK_CHUNK):
            proto.send({"t": "recs", "r": recs[i:i + BULK_CHUNK]})
        proto.send({"t": "bulk", "p": "end"})
        self.bulks_sent += 1
        self.records_sent += len(recs)
        ios.message("CBAC", 6, "SYNC_BULK", "State sync: full resync of %d records sent to %s"
                    % (len(recs), self.peer))

    def changes(self, recs) -> None:
        """A batch from the continuity observer (active box)."""
        p = self.proto
        if self.role == MASTER and p is not None and p.authed and recs:
            p.send({"t": "recs", "r": recs})
            self.records_sent += len(recs)

    def message(self, proto, kind, obj) -> None:
        if kind == "ping":
            return
        if kind == "role":
            role = obj.get("role")
            if role in ROLES + (INIT,):
                proto.peer_role = self.peer_role = role
                if role == MASTER and self.role == MASTER:
                    self._split_brain()
                elif role == BACKUP and self.role == MASTER:
                    self.bulk(proto)        # the peer dropped what it had
            return
        if self.role == MASTER:
            # the active box takes no state from its peer
            if kind in ("recs", "bulk"):
                return
        if kind == "bulk":
            if obj.get("p") == "begin":
                self.state = State()
                self.in_sync = False
            elif obj.get("p") == "end":
                self.in_sync = True
                self.bulks_received += 1
                ios.message("CBAC", 6, "SYNC_BULK",
                            "State sync: in step with %s (%d sessions, %d translations)" % (
                                self.peer, len(self.state.sessions),
                                len(self.state.translations)))
            return
        if kind == "recs":
            recs = obj.get("r")
            if type(recs) is not list:
                raise ValueError("records")
            st = self.state
            for r in recs:
                if type(r) is not dict:
                    raise ValueError("record")
                st.apply(r)
            self.records_received += len(recs)
            return
        raise ValueError("unknown message %r" % kind)

    # -- roles ------------------------------------------------------------

    def set_role(self, role: str) -> None:
        """keepalived's word (vrrp.py).  MASTER: take over and forward;
        BACKUP/FAULT: stop forwarding and follow the peer."""
        if role not in ROLES:
            log.warn("redundancy: unknown role {role!r} ignored", role=role)
            return
        old = self.role
        if role == old:
            return
        self.role = role
        self.last_change = time.time()
        if role == MASTER:
            self._become_master(old)
        else:
            self._become_standby(old, role)
        p = self.proto
        if p is not None and p.authed:
            p.send({"t": "role", "role": role})
            if role == MASTER:
                self.bulk(p)

    def _become_master(self, old) -> None:
        app = self.app
        t0 = time.monotonic()
        state = self.state
        self.state = State()
        c = app.start_continuity(restore=False, state=state)
        counts = c.restored if c is not None else {}
        if c is not None:
            c.subscribe(self.changes)
        app.router.start()              # ports open, gratuitous ARP for every address
        for delay in GARP_REPEAT:
            self.clock.callLater(delay, self._garp)
        self.last_takeover = (time.monotonic() - t0) * 1000.0
        if old == INIT:
            note = ""
        elif not self.in_sync:
            note = " (the full resync had not completed: sessions may be missing)"
        elif self.link_down_at is not None:
            note = (" (the sync link has been down for %.1f s: changes the active box made "
                    "since then are missing)" % (time.monotonic() - self.link_down_at))
        else:
            note = ""
        ios.message("CBAC", 4, "REDUNDANCY_ACTIVE",
                    "Redundancy: now ACTIVE (was %s): %d sessions and %d translations taken "
                    "over%s; forwarding, gratuitous ARP sent (%.0f ms)" % (
                        old, counts.get("sessions", 0), counts.get("translations", 0),
                        note, self.last_takeover))
        # the kernel fast path, as a plain start loads it (after the router:
        # it attaches to the started ports); restored TCP sessions are
        # offloaded only once both directions are re-learned (resume.py)
        app.start_offload()

    def _garp(self) -> None:
        if self.role != MASTER or not self.running:
            return
        router = self.app.router
        for ri in router.interfaces.values():
            if not ri.shutdown:
                for addr in ri.addresses:
                    router._send_gratuitous_arp(ri, addr)

    def _become_standby(self, old, role) -> None:
        app = self.app
        if old == MASTER:
            # the kernel's entries first: a standby forwards nothing, not
            # even in the kernel (its sessions are taken back, then dropped)
            app.stop_offload()
            app.router.stop()
            # what this box had becomes what it holds as a standby: a flap
            # (MASTER, FAULT, MASTER again with the peer gone) loses nothing
            kept = State()
            c = app.continuity
            if c is not None:
                c.flush()
                for r in c.live_records():
                    kept.apply(r)
            app.stop_continuity(clean=True)
            if app.sessions is not None:
                for s in list(app.sessions.sessions.values()):
                    app.sessions.delete(s, "standby")
            if app.nat is not None:
                app.nat.clear()
            self.state = kept
            self.in_sync = False
        ios.message("CBAC", 4, "REDUNDANCY_STANDBY",
                    "Redundancy: now %s (was %s): not forwarding%s" % (
                        "STANDBY" if role == BACKUP else "FAULT", old,
                        "; following the active box's state" if role == BACKUP else ""))

    # -- show -----------------------------------------------------------------

    def show(self) -> str:
        p = self.proto
        link = "up" if p is not None and p.authed else "down"
        role = {MASTER: "ACTIVE", BACKUP: "STANDBY", FAULT: "FAULT", INIT: "INIT"}[self.role]
        lines = [
            "Redundancy (cbac extension; keepalived decides the roles)",
            "  My role: %s%s" % (role, " (forwarding)" if self.role == MASTER else
                                 " (not forwarding)"),
            "  Peer: %s, role %s" % (self.peer, self.peer_role or "unknown"),
            "  Sync link: %s %s:%d %s %s:%d, %s" % (
                self.cfg.interface, self.local, self.port,
                "->" if self.connector else "<-", self.peer, self.port, link),
            "  Sequence numbers: sent %d, received %d" % (
                p.tx_seq if p is not None else 0, p.rx_seq if p is not None else 0),
            "  Records: sent %d, received %d; full resyncs sent %d, received %d; "
            "refused messages %d" % (self.records_sent, self.records_received,
                                     self.bulks_sent, self.bulks_received, self.refused),
            "  Bytes: sent %d, received %d" % (self.tx_bytes, self.rx_bytes),
        ]
        if self.role == MASTER:
            c = self.app.continuity
            n = len(self.app.sessions.sessions) if self.app.sessions is not None else 0
            lines.append("  Sessions mirrored to the peer: %d%s" % (
                n, "" if link == "up" else " (link down: not mirrored now)"))
        else:
            lines.append("  Synced state: %d sessions, %d translations, %d blocked hosts (%s)"
                         % (len(self.state.sessions), len(self.state.translations),
                            len(self.state.blocks),
                            "in step" if self.in_sync else "not in step"))
        if self.last_takeover is not None:
            lines.append("  Last takeover: %.0f ms" % self.last_takeover)
        return "\n".join(lines)

    def show_synced_sessions(self) -> str:
        """``show ip inspect sessions`` on the standby: the synced records."""
        from cbac.packet.view import ip_str
        out = ["Synced from the active box %s (standby: not forwarding)" % self.peer]
        groups = {"SIS_OPEN": [], "SIS_OPENING": [], "SIS_CLOSING": []}
        for sid, r in sorted(self.state.sessions.items()):
            try:
                c = r["ci"]
                line = " Session %X (%s:%d)=>(%s:%d) %s %s" % (
                    (0x62000000 + sid * 0x1C8) & 0xFFFFFFFF, ip_str(c[0]), c[2],
                    ip_str(c[1]), c[3], r["pr"], r["sis"])
                groups.setdefault(r["sis"], []).append(line)
            except (KeyError, TypeError, IndexError):
                continue
        for key, title in (("SIS_OPEN", "Established Sessions"),
                           ("SIS_OPENING", "Half-open Sessions"),
                           ("SIS_CLOSING", "Terminating Sessions")):
            if groups.get(key):
                out.append(title)
                out.extend(groups[key])
        return "\n".join(out)


__all__ = ["Redundancy", "SyncProtocol", "MASTER", "BACKUP", "FAULT", "INIT"]
