"""The console's CPU budget: work done in bounded slices on the reactor.

The console shares the reactor with the data plane, so nothing the console
does may hold it for long.  Output filters and writes of large output run
as cooperative tasks: each reactor turn gets at most :data:`SLICE` seconds
of console work, then the reactor serves packets and timers again.  Small
work (below :data:`SYNC_LINES` lines / :data:`CHUNK` bytes) is done at once,
so short commands answer in the same turn (and tests on a ``Clock`` stay
synchronous).
"""

from __future__ import annotations

import time

from twisted.internet import defer, task

from cbac.console import regex

#: seconds of console work per reactor turn
SLICE = 0.002
#: outputs up to this many lines are filtered at once
SYNC_LINES = 200
#: bytes written to an SSH channel per reactor turn
CHUNK = 16384


class _Budget:
    def __init__(self, seconds):
        self.end = time.perf_counter() + seconds

    def __call__(self):
        return time.perf_counter() >= self.end


def cooperator(reactor) -> task.Cooperator:
    """A cooperator that runs SLICE seconds per reactor turn."""
    return task.Cooperator(terminationPredicateFactory=lambda: _Budget(SLICE),
                           scheduler=lambda f: reactor.callLater(0, f))


def _reactor(reactor):
    if reactor is None:
        from twisted.internet import reactor as r
        return r
    return reactor


# ---------------------------------------------------------------------------
# Output filters


def _lines(text):
    """The lines of ``text`` one by one (no bulk split: that alone would
    hold the reactor for tens of ms on a 100,000-line output)."""
    pos = 0
    find = text.find
    while True:
        j = find("\n", pos)
        if j < 0:
            yield pos, text[pos:]
            return
        yield pos, text[pos:j]
        pos = j + 1


class _Out:
    """Output lines, joined 1,000 at a time (the final join is then cheap)."""

    def __init__(self):
        self.chunks: list[str] = []
        self.cur: list[str] = []

    def append(self, line):
        self.cur.append(line)
        if len(self.cur) >= 1000:
            self.chunks.append("\n".join(self.cur))
            self.cur = []

    def text(self) -> str:
        if self.cur:
            self.chunks.append("\n".join(self.cur))
            self.cur = []
        return "\n".join(self.chunks)


def _filter_steps(text, kind, rx, out):
    """Generator: filters the lines of ``text`` into ``out`` (an
    :class:`_Out`), yielding after each line."""
    if kind == "include":
        for _, l in _lines(text):
            if rx.search(l):
                out.append(l)
            yield None
    elif kind == "exclude":
        for _, l in _lines(text):
            if not rx.search(l):
                out.append(l)
            yield None
    elif kind == "begin":
        for pos, l in _lines(text):
            if rx.search(l):
                out.append(text[pos:])          # this line and all after it
                break
            yield None
    elif kind == "count":
        n = 0
        for _, l in _lines(text):
            if rx.search(l):
                n += 1
            yield None
        out.append("Number of lines which match regexp = %d" % n)
    else:  # section: a top-level line and its indented lines
        def flush(sec):
            if not sec:
                return
            if rx.search(sec[0]):
                for l in sec:
                    out.append(l)
                return
            shown = False
            for l in sec[1:]:
                if rx.search(l):
                    if not shown:
                        out.append(sec[0])
                        shown = True
                    out.append(l)
                yield None
        sec: list[str] = []
        for _, l in _lines(text):
            if l[:1] in (" ", "\t") and sec:
                sec.append(l)
            else:
                yield from flush(sec) or ()
                sec = [l]
            yield None
        yield from flush(sec) or ()


def filter_text(text: str, pipe, reactor=None):
    """``| include/exclude/begin/count/section REGEX`` on ``text``: a
    Deferred firing with the filtered text (already fired for short text).
    The expression is matched in linear time (:mod:`cbac.console.regex`)."""
    if pipe is None:
        return defer.succeed(text)
    kind, pattern = pipe
    try:
        rx = regex.compile(pattern)
    except regex.RegexError as e:
        return defer.fail(e)
    out = _Out()
    steps = _filter_steps(text, kind, rx, out)
    if text.count("\n", 0, 200 * 120) < SYNC_LINES and len(text) < 200 * 120:
        for _ in steps:
            pass
        return defer.succeed(out.text())
    d = cooperator(_reactor(reactor)).coiterate(steps)
    return d.addCallback(lambda _: out.text())


# ---------------------------------------------------------------------------
# Output produced lazily


def collect(lines, reactor=None):
    """The text of an iterable of lines (a handler's generator): a Deferred.
    The first SYNC_LINES are taken at once, the rest SLICE seconds per
    reactor turn, so a handler that yields its output line by line never
    holds the reactor, whatever its length.  (A generator that walks a live
    table must tolerate it changing between turns: take a snapshot, e.g.
    ``list(table.values())``, then format lazily.)"""
    it = iter(lines)
    out = _Out()
    for _ in range(SYNC_LINES):
        try:
            out.append(next(it))
        except StopIteration:
            return defer.succeed(out.text())
        except Exception:                  # noqa: BLE001 - the command failed
            return defer.fail()

    def steps():
        for line in it:
            out.append(line)
            yield None
    d = cooperator(_reactor(reactor)).coiterate(steps())
    return d.addCallback(lambda _: out.text())


# ---------------------------------------------------------------------------
# Writes


def write_sliced(write, data: bytes, reactor=None, still_open=lambda: True):
    """Write ``data`` with ``write`` in CHUNK-byte pieces, one piece per
    reactor turn.  Returns a Deferred fired when all is written (or the
    session closed, ``still_open()`` false); short data is written at once."""
    if len(data) <= CHUNK:
        write(data)
        return defer.succeed(None)
    reactor = _reactor(reactor)
    d = defer.Deferred()
    view = memoryview(data)

    def step(off):
        if not still_open():
            d.callback(None)
            return
        write(bytes(view[off:off + CHUNK]))
        off += CHUNK
        if off < len(data):
            reactor.callLater(0, step, off)
        else:
            d.callback(None)
    step(0)
    return d
