"""Stateful restart: the observer the engines call on state changes, the
batched writing of the journal, and the restore at start.

The engines call (small hooks, never per data packet):

* ``SessionTable``: :meth:`Continuity.session_changed` (created, became
  open, began closing), :meth:`Continuity.session_closed`,
  :meth:`Continuity.host_blocked` / :meth:`Continuity.host_unblocked`;
* ``Nat``: :meth:`Continuity.translation_created` (a flow entry made) and,
  through ``Nat.listeners``, :meth:`Continuity.translation_removed`.

A change only marks the object dirty (a dict store); the records are made
and written :data:`FLUSH_DELAY` later in one batch, so a session created,
established and closed within one batch costs one record or none.
Sessions with a stream inspector whose state can be resumed are also
re-saved once a second when their stream moved (:data:`SNAPSHOT_INTERVAL`),
so a restart between two SMTP commands resumes the conversation.

Other parts (the active/standby sync) subscribe to the same batches with
:meth:`Continuity.subscribe`.
"""

from __future__ import annotations

from twisted.logger import Logger

from cbac.continuity import resume
from cbac.continuity.journal import Journal, encode_line, load
from cbac.continuity.state import (StateError, decode_session, encode_session,
                                   encode_translation, install_session, install_translation)
from cbac.inspect.tcp import ESTABLISHED
from cbac.log import ios
from cbac.nat.translation import FLOW
from cbac.packet.view import ip_str

log = Logger(namespace="cbac.continuity")

#: seconds between a change and its record being written
FLUSH_DELAY = 0.05
#: seconds between two sweeps re-saving moved stream inspectors
SNAPSHOT_INTERVAL = 1.0
#: the journal is compacted when it holds this many records and more than
#: twice the live ones
COMPACT_MIN = 20000
#: restore log lines naming single sessions, at most
LOG_SESSIONS = 20


class Continuity:
    """The state keeper of one appliance (``sessions``: SessionTable,
    ``nat``: Nat or None)."""

    def __init__(self, sessions, nat, clock, state_dir=None, fsync_interval=1.0):
        self.sessions = sessions
        self.nat = nat
        self.clock = clock
        self.state_dir = state_dir
        self.journal = Journal(state_dir, clock, fsync_interval=fsync_interval) \
            if state_dir else None
        self._dirty_s = {}          # sid -> Session or None (deleted)
        self._dirty_t = {}          # tid -> Translation or None (removed)
        self._dirty_b = {}          # host -> until or None (unblocked)
        self._tids = {}             # id(translation) -> (tid, translation)
        self._next_tid = 0
        self._sig = {}              # sid -> last saved stream signature
        self._flush_call = None
        self._sweep_call = None
        self.subscribers = []       # callables(list of records)
        self.restored = {}          # counters of the last restore
        self.running = False

    # -- wiring -----------------------------------------------------------

    def attach(self) -> None:
        self.sessions.observer = self
        if self.nat is not None:
            self.nat.observer = self
            self.nat.listeners.append(self.translation_removed)

    def detach(self) -> None:
        if self.sessions.observer is self:
            self.sessions.observer = None
        if self.nat is not None:
            if getattr(self.nat, "observer", None) is self:
                self.nat.observer = None
            try:
                self.nat.listeners.remove(self.translation_removed)
            except ValueError:
                pass

    def subscribe(self, fn) -> None:
        self.subscribers.append(fn)

    # -- hooks (state changes) ----------------------------------------------

    def session_changed(self, s) -> None:
        self._dirty_s[s.sid] = s
        self._want_flush()

    def session_closed(self, s) -> None:
        self._dirty_s[s.sid] = None
        self._sig.pop(s.sid, None)
        self._want_flush()

    def translation_created(self, t) -> None:
        if t.kind != FLOW or t.proto not in (1, 6, 17):
            return
        self._next_tid += 1
        tid = self._next_tid
        self._tids[id(t)] = (tid, t)
        self._dirty_t[tid] = t
        self._want_flush()

    def translation_removed(self, t) -> None:
        e = self._tids.pop(id(t), None)
        if e is not None and e[1] is t:
            self._dirty_t[e[0]] = None
            self._want_flush()

    def host_blocked(self, host, until) -> None:
        self._dirty_b[host] = until
        self._want_flush()

    def host_unblocked(self, host) -> None:
        self._dirty_b[host] = None
        self._want_flush()

    def _want_flush(self) -> None:
        if self._flush_call is None and self.running:
            self._flush_call = self.clock.callLater(FLUSH_DELAY, self.flush)

    # -- records ------------------------------------------------------------

    def tid_of(self, t):
        if t is None:
            return None
        e = self._tids.get(id(t))
        return e[0] if e is not None and e[1] is t else None

    def session_record(self, s, now):
        app = None
        if s.stream is not None:
            app = resume.snapshot(s)
            self._sig[s.sid] = resume.signature(s)
        elif s.proto == 17 and s.inspector is not None:
            # a guarded UDP session (DNS, TFTP, SIP): its guard's state is
            # not kept, so it is not restored (never as plain UDP)
            app = "reset"
        return encode_session(s, now, self.tid_of(s.translation), app)

    def translation_record(self, tid, t, now):
        owner = t.owner
        return encode_translation(t, tid, now, owner.sid if owner is not None else None)

    def _batch(self):
        now = self.clock.seconds()
        recs = []
        # translations first: a session record refers to its translation
        for tid, t in self._dirty_t.items():
            if t is None or t.dead:
                recs.append({"k": "X", "id": tid})
            else:
                recs.append(self.translation_record(tid, t, now))
        for sid, s in self._dirty_s.items():
            if s is None or s.dead:
                recs.append({"k": "D", "id": sid})
            else:
                recs.append(self.session_record(s, now))
        for host, until in self._dirty_b.items():
            if until is None:
                recs.append({"k": "U", "h": host})
            else:
                recs.append({"k": "B", "h": host, "r": round(max(0.0, until - now), 3)})
        self._dirty_t.clear()
        self._dirty_s.clear()
        self._dirty_b.clear()
        return recs

    def flush(self) -> None:
        """Write the pending changes (one batch)."""
        self._flush_call = None
        if not (self._dirty_s or self._dirty_t or self._dirty_b):
            return
        try:
            recs = self._batch()
        except Exception:
            log.failure("continuity: building records failed")
            return
        if self.journal is not None:
            self.journal.append([encode_line(r) for r in recs])
            live = len(self.sessions.sessions) + len(self._tids)
            if self.journal.records > max(COMPACT_MIN, 2 * live):
                self.compact()
        for fn in self.subscribers:
            try:
                fn(recs)
            except Exception:
                log.failure("continuity: a subscriber failed")

    def live_records(self):
        """Records of the whole live state (compaction, bulk resync)."""
        now = self.clock.seconds()
        for tid, t in list(self._tids.values()):
            if not t.dead:
                yield self.translation_record(tid, t, now)
        for s in list(self.sessions.sessions.values()):
            if not s.dead:
                yield self.session_record(s, now)
        for host, until in list(self.sessions.thresholds.blocked.items()):
            yield {"k": "B", "h": host, "r": round(max(0.0, until - now), 3)}

    def compact(self) -> None:
        if self.journal is not None:
            self.journal.compact(encode_line(r) for r in self.live_records())

    def _sweep(self) -> None:
        """Re-save stream sessions whose inspector state moved; fsync."""
        try:
            for s in self.sessions.sessions.values():
                if s.stream is not None and s.protocol in resume.RESUMABLE:
                    sig = resume.signature(s)
                    if self._sig.get(s.sid) != sig:
                        self._sig[s.sid] = sig
                        self._dirty_s[s.sid] = s
            if self._dirty_s:
                self.flush()
            if self.journal is not None:
                self.journal.sync()
        except Exception:
            log.failure("continuity: sweep failed")
        if self.running:
            self._sweep_call = self.clock.callLater(SNAPSHOT_INTERVAL, self._sweep)

    # -- life cycle ---------------------------------------------------------

    def start(self, restore: bool = True, state=None) -> None:
        """Restore the saved state (``--state-dir``, or ``state``: records
        a standby received) into the engines, then start journalling (the
        restored state becomes the new snapshot)."""
        if state is not None:
            self.restore(state)
        elif restore and self.state_dir:
            self.restore(load(self.state_dir))
        self.attach()
        if self.journal is not None:
            # translations made before attach (restored ones) get ids now
            for t in list(self.nat.entries.values()) if self.nat is not None else ():
                if t.kind == FLOW and id(t) not in self._tids:
                    self.translation_created(t)
            self._dirty_t.clear()
            self.journal.open(encode_line(r) for r in self.live_records())
        self.running = True
        self._sweep_call = self.clock.callLater(SNAPSHOT_INTERVAL, self._sweep)

    def stop(self, clean: bool = True) -> None:
        """A clean stop writes everything and leaves a compact snapshot."""
        self.running = False
        for c in (self._flush_call, self._sweep_call):
            if c is not None and c.active():
                c.cancel()
        self._flush_call = self._sweep_call = None
        if clean:
            self.flush()
            self.compact()
        if self.journal is not None:
            self.journal.close()
        self.detach()

    # -- restore ------------------------------------------------------------

    def restore(self, state) -> dict:
        """Install ``state`` (journal.State) in the engines.  Returns the
        counters (also logged)."""
        table = self.sessions
        nat = self.nat
        now = self.clock.seconds()
        counts = {"sessions": 0, "translations": 0, "relearn": 0, "resumed": 0,
                  "reset": 0, "skipped": 0, "blocks": 0}
        by_tid = {}
        owners = {}
        logged = 0
        for tid, rec in sorted(state.translations.items()):
            if nat is None:
                counts["skipped"] += 1
                continue
            try:
                t = install_translation(nat, rec, now)
            except (StateError, KeyError, TypeError, ValueError) as e:
                counts["skipped"] += 1
                if logged < LOG_SESSIONS:
                    logged += 1
                    log.warn("continuity: translation not restored: {why}", why=e)
                continue
            by_tid[tid] = t
            counts["translations"] += 1
            ow = rec.get("ow")
            if ow is not None:
                owners[t] = ow
        for sid, raw in sorted(state.sessions.items()):
            try:
                rec = decode_session(raw)
            except (StateError, KeyError, TypeError, ValueError) as e:
                counts["skipped"] += 1
                log.warn("continuity: session record {sid} unreadable: {why}", sid=sid, why=e)
                continue
            app = raw.get("app")
            proto = rec["p"]
            if proto == 17 and app is not None:
                # a guarded UDP session (DNS, TFTP): its guard's state is
                # not kept; the client's retry makes a new session
                counts["skipped"] += 1
                continue
            tid = rec.get("tr")
            tr = by_tid.get(tid) if tid is not None else None
            if tid is not None and tr is None:
                # its translation (PAT port) could not be made again: the
                # session would forward with a port NAT may hand to another
                counts["skipped"] += 1
                if logged < LOG_SESSIONS:
                    logged += 1
                    log.warn("continuity: session {flow} not restored: its NAT translation "
                             "was not restored", flow=_flow(rec))
                continue
            try:
                s = install_session(table, rec, tr, now,
                                    owned=tr is not None and owners.get(tr) == sid)
            except (StateError, KeyError, TypeError, ValueError) as e:
                counts["skipped"] += 1
                if logged < LOG_SESSIONS:
                    logged += 1
                    log.warn("continuity: session {flow} not restored: {why}",
                             flow=_flow(rec), why=e)
                continue
            counts["sessions"] += 1
            if proto != 6:
                continue
            needs_app = app is not None
            if needs_app:
                if app != "reset" and resume.restore_stream(table, s, app):
                    counts["resumed"] += 1
                    resume.register(table, s, reset=False)
                else:
                    counts["reset"] += 1
                    resume.register(table, s, reset=True,
                                    reason="its %s inspector's state could not be resumed"
                                    % s.protocol)
                    if logged < LOG_SESSIONS:
                        logged += 1
                        ios.message("FW", 4, "RESTORE_RESET",
                                    "Restored %s session %s will be reset on its next "
                                    "packet: inspector state not resumable; pinholes it "
                                    "had opened are not restored" % (
                                        s.protocol, s.flow_text()))
            elif s.tcp.state >= ESTABLISHED:
                counts["relearn"] += 1
                resume.register(table, s, reset=False)
        for host, rec in state.blocks.items():
            try:
                r = float(rec["r"])
                if r > 0 and 0 <= host <= 0xFFFFFFFF:
                    table.thresholds.blocked[host] = now + r
                    table.thresholds.host_alerted.add(host)
                    counts["blocks"] += 1
            except (KeyError, TypeError, ValueError):
                counts["skipped"] += 1
        if counts["blocks"]:
            table._ensure_timer()
        # translations nobody owns any more (their session was not restored)
        # keep their NAT timeouts
        self.restored = counts
        if len(state) or counts["skipped"]:
            ios.message("FW", 6, "STATE_RESTORE",
                        "Restored %d sessions (%d re-learning TCP windows, %d inspectors "
                        "resumed, %d to be reset on their next packet), %d NAT translations, "
                        "%d blocked hosts; %d records not restored" % (
                            counts["sessions"], counts["relearn"], counts["resumed"],
                            counts["reset"], counts["translations"], counts["blocks"],
                            counts["skipped"]))
        return counts


def _flow(rec) -> str:
    c = rec["ci"]
    return "(%s:%d)=>(%s:%d) %s" % (ip_str(c[0]), c[2], ip_str(c[1]), c[3], rec["pr"])


__all__ = ["Continuity", "FLUSH_DELAY", "SNAPSHOT_INTERVAL"]
