"""The state files in ``--state-dir``: a snapshot and an append-only journal.

Both are text files of one record per line, each line ``CRC32 JSON``
(8 hex digits, a space, the JSON object, a newline); the first line is a
header ``{"cbac-state": VERSION, "kind": ..., "gen": N}``.  The journal of
generation N holds the changes since the snapshot of generation N.

* Appending: records are written in batches (:meth:`Journal.append`, a
  ``write`` per batch), fsync'd at most every ``fsync_interval`` seconds:
  a killed process loses nothing already written (the page cache has it),
  a power cut at most ``fsync_interval`` of changes.
* Compaction (:meth:`Journal.compact`): the live state is written as the
  snapshot of generation N+1 (temporary file, fsync, rename, fsync of the
  directory), then a new journal N+1 replaces the old one the same way.
  A crash between the two leaves the old journal of generation N, which
  :func:`load` ignores (the new snapshot already holds it).
* Reading (:func:`load`): a journal whose last line is incomplete (no
  newline, or a bad CRC on the last line only: a write cut short) loses
  that line, with a log line.  Anything else unreadable - a bad header, a
  newer format, a bad line before the end, an unknown record - moves the
  files aside (``NAME.bad-TIMESTAMP``) with a log line, and cbac starts
  empty: never a half-understood state.
"""

from __future__ import annotations

import json
import os
import time
import zlib

from twisted.logger import Logger

from cbac.continuity.state import VERSION, StateError, upgrade

log = Logger(namespace="cbac.continuity")

SNAPSHOT = "state.snapshot"
JOURNAL = "state.journal"
#: records a file may hold at most (a bound on memory at start)
MAX_RECORDS = 4_000_000
#: a line longer than this is refused
MAX_LINE = 1 << 20

_KINDS = frozenset("SDTXBU")


def encode_line(rec: dict) -> bytes:
    body = json.dumps(rec, separators=(",", ":"), sort_keys=True).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_line(line: bytes) -> dict:
    if len(line) < 10 or line[8:9] != b" " or len(line) > MAX_LINE:
        raise StateError("malformed line")
    body = line[9:]
    try:
        crc = int(line[:8], 16)
    except ValueError:
        raise StateError("malformed CRC")
    if zlib.crc32(body) != crc:
        raise StateError("CRC mismatch")
    try:
        rec = json.loads(body)
    except ValueError:
        raise StateError("malformed JSON")
    if type(rec) is not dict:
        raise StateError("record is not an object")
    return rec


def _header(kind: str, gen: int) -> dict:
    return {"cbac-state": VERSION, "kind": kind, "gen": gen, "written": int(time.time())}


def _read_file(path: str, kind: str, tolerate_tail: bool):
    """-> (gen, version, records, torn) or None when the file does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError("cannot read: %s" % (e.strerror or e))
    if not data:
        if tolerate_tail:
            return None             # created, header never written
        raise StateError("empty file")
    lines = data.split(b"\n")
    last = lines.pop()             # b"" when the file ends with a newline
    torn = False
    if last:
        if not tolerate_tail:
            raise StateError("incomplete last line")
        torn = True
    if not lines:
        if tolerate_tail:
            return None             # a header cut short: nothing to apply
        raise StateError("no header")
    head = decode_line(lines[0])
    version = head.get("cbac-state")
    if type(version) is not int:
        raise StateError("not a cbac state file")
    upgrade({}, version)            # raises for a newer format
    if head.get("kind") != kind or type(head.get("gen")) is not int:
        raise StateError("wrong file kind")
    if len(lines) > MAX_RECORDS:
        raise StateError("too many records")
    recs = []
    n = len(lines)
    for i in range(1, n):
        try:
            rec = decode_line(lines[i])
        except StateError:
            if tolerate_tail and i == n - 1:
                torn = True
                break
            raise StateError("line %d: unreadable" % (i + 1))
        if rec.get("k") not in _KINDS:
            raise StateError("line %d: unknown record" % (i + 1))
        recs.append(upgrade(rec, version))
    return head["gen"], version, recs, torn


class State:
    """The state read from the files: records by kind, in order."""

    def __init__(self):
        self.sessions = {}          # id -> S record
        self.translations = {}      # id -> T record
        self.blocks = {}            # host -> B record
        self.gen = 0

    def apply(self, rec: dict) -> None:
        k = rec["k"]
        try:
            if k == "S":
                self.sessions[int(rec["id"])] = rec
            elif k == "D":
                self.sessions.pop(int(rec["id"]), None)
            elif k == "T":
                self.translations[int(rec["id"])] = rec
            elif k == "X":
                self.translations.pop(int(rec["id"]), None)
            elif k == "B":
                self.blocks[int(rec["h"])] = rec
            elif k == "U":
                self.blocks.pop(int(rec["h"]), None)
        except (KeyError, TypeError, ValueError):
            raise StateError("record without a valid id")

    def __len__(self):
        return len(self.sessions) + len(self.translations) + len(self.blocks)


def move_aside(path: str, why: str) -> None:
    bad = "%s.bad-%s" % (path, time.strftime("%Y%m%dT%H%M%S"))
    try:
        os.replace(path, bad)
        log.error("continuity: {path} is unreadable ({why}); moved aside to {bad}",
                  path=path, why=why, bad=bad)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.error("continuity: {path} is unreadable ({why}) and cannot be moved aside: {e}",
                  path=path, why=why, e=e)


def load(state_dir: str) -> State:
    """The saved state, or an empty State (files that cannot be read are
    moved aside with a log line: see the module docstring)."""
    snap_path = os.path.join(state_dir, SNAPSHOT)
    jpath = os.path.join(state_dir, JOURNAL)
    st = State()
    try:
        snap = _read_file(snap_path, "snapshot", tolerate_tail=False)
        journal = _read_file(jpath, "journal", tolerate_tail=True)
        gen = 0
        if snap is not None:
            gen = snap[0]
            for rec in snap[2]:
                st.apply(rec)
        st.gen = gen
        if journal is not None:
            jgen, _v, recs, torn = journal
            if jgen == gen:
                for rec in recs:
                    st.apply(rec)
                if torn:
                    log.warn("continuity: {path}: the last record was half-written "
                             "(the process stopped while writing it); ignored",
                             path=jpath)
            elif jgen > gen:
                raise StateError("journal generation %d is newer than the snapshot's %d"
                                  % (jgen, gen))
            # older: compaction finished the snapshot, not the new journal
    except StateError as e:
        for p in (snap_path, jpath):
            move_aside(p, str(e))
        log.error("continuity: starting without saved sessions")
        return State()
    return st


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: str, lines) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        buf = []
        size = 0
        for line in lines:
            buf.append(line)
            size += len(line)
            if size > 1 << 20:
                os.write(fd, b"".join(buf))
                buf, size = [], 0
        if buf:
            os.write(fd, b"".join(buf))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Journal:
    """The writer (see the module docstring).  ``clock``: IReactorTime."""

    def __init__(self, state_dir: str, clock, gen: int = 0, fsync_interval: float = 1.0):
        self.dir = state_dir
        self.clock = clock
        self.gen = gen
        self.fsync_interval = fsync_interval
        self.fd = None
        self.records = 0            # records in the current journal
        self.bytes = 0
        self.written = 0            # records written since start (counters)
        self.compactions = 0
        self.fsyncs = 0
        self._last_fsync = 0.0
        self._dirty = False
        self.failed = None          # the last write error (show redundancy)

    @property
    def path(self) -> str:
        return os.path.join(self.dir, JOURNAL)

    def open(self, records) -> None:
        """Start: write the current state as a new generation (the files
        that were read are replaced)."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.compact(records)

    def append(self, lines) -> None:
        """Write a batch of encoded lines (one write call)."""
        if self.fd is None or not lines:
            return
        data = b"".join(lines)
        try:
            os.write(self.fd, data)
        except OSError as e:
            self._failed(e)
            return
        self.records += len(lines)
        self.written += len(lines)
        self.bytes += len(data)
        self._dirty = True
        now = self.clock.seconds()
        if now - self._last_fsync >= self.fsync_interval:
            self.sync(now)

    def sync(self, now=None) -> None:
        if self.fd is None or not self._dirty:
            return
        try:
            os.fsync(self.fd)
        except OSError as e:
            self._failed(e)
            return
        self._dirty = False
        self.fsyncs += 1
        self._last_fsync = self.clock.seconds() if now is None else now

    def _failed(self, e) -> None:
        if self.failed is None:
            log.error("continuity: cannot write {path}: {e}; sessions will not survive "
                      "a restart until it can", path=self.path, e=e)
        self.failed = str(e)

    def compact(self, records) -> None:
        """Replace snapshot and journal by a snapshot of ``records``
        (encoded lines of the live state) and an empty journal."""
        gen = self.gen + 1
        try:
            _write_atomic(os.path.join(self.dir, SNAPSHOT),
                          _chain([encode_line(_header("snapshot", gen))], records))
            _fsync_dir(self.dir)
            _write_atomic(self.path, [encode_line(_header("journal", gen))])
            _fsync_dir(self.dir)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as e:
            self._failed(e)
            return
        if self.fd is not None:
            os.close(self.fd)
        self.fd = fd
        self.gen = gen
        self.records = 0
        self.bytes = 0
        self.compactions += 1
        self.failed = None
        self._dirty = False

    def close(self) -> None:
        if self.fd is not None:
            self.sync()
            os.close(self.fd)
            self.fd = None


def _chain(a, b):
    for x in a:
        yield x
    for x in b:
        yield x


__all__ = ["Journal", "State", "load", "encode_line", "decode_line", "move_aside",
           "SNAPSHOT", "JOURNAL"]
