"""HTTP inspection (``ip inspect name NAME http [java-list ACL]``).

A sans-I/O state machine behind :mod:`cbac.inspect.api`.

* **Java blocking (IOS)**: with a ``java-list``, a Java applet from a
  server the list does not permit is blocked: ``%FW-3-HTTP_JAVA_BLOCK``
  and the session is reset.
* **Request framing (beyond IOS)**: every request on the connection
  (keep-alive and pipelined ones too) is parsed with RFC 9112 rules; a
  request whose framing is ambiguous or invalid (the stuff of request
  smuggling) resets the session with ``%FW-3-HTTP_PROTOCOL_VIOLATION``.
  A request head is held until it is complete and validated (at most
  :data:`MAX_HEAD` bytes); chunk-size and trailer lines are held until
  complete; bodies pass without holding.
* Responses are followed (status, HEAD/1xx/204/304, Content-Length,
  chunked, close) to pair them with requests and to see applets; they are
  never held.

See ``docs/ftp-http.md`` for exactly what is checked.
"""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import unquote_to_bytes

from zope.interface import implementer

from cbac.inspect.api import CLIENT, SERVER, IInspectorFactory, IStreamInspector, Verdict, alert
from cbac.inspect.fsm import check_table, go

#: Largest request head (request line + header fields) or trailer section.
MAX_HEAD = 65536
#: Largest chunk-size line (with chunk extensions).
MAX_CHUNK_LINE = 4096
#: Largest chunk size accepted (bigger ones are refused: 32-bit parsers wrap).
MAX_CHUNK_SIZE = 0x7FFFFFFF
#: Most requests awaiting their response on one connection.
MAX_PIPELINE = 1000

#: Transfer codings accepted before the final ``chunked``.
TE_CODINGS = frozenset((b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress"))

#: Content-Types taken as a Java applet or archive.
JAVA_TYPES = frozenset((b"application/java-archive", b"application/x-java-archive",
                        b"application/x-java-applet", b"application/java-vm",
                        b"application/x-java-vm", b"application/java",
                        b"application/x-java-class", b"application/java-byte-code",
                        b"application/x-java-bean"))
CLASS_MAGIC = b"\xca\xfe\xba\xbe"

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e\x80-\xff]+) HTTP/([0-9])\.([0-9])\Z")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*\Z", re.S)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[ \t]*" + _TOKEN +
                         rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|\"(?:[^\"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t \x21-\x7e\x80-\xff])*\"))?)*)\Z")
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: [^\r\n]*)?\Z")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_RL_BAD = re.compile(rb"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
_TOKEN_CHAR = re.compile(_TOKEN[:-1])

# -- the state machine --------------------------------------------------------
#
# Each direction is read in one of these states (its framing); every change
# goes through _set, which refuses one this table does not list
# (fsm.IllegalTransition: the engine resets the session).  Staying in a state
# (a request without a body after another) is no change.
#
#   HEAD         a request or response head, held (requests) until complete
#   BODY         Content-Length bytes
#   CHUNK_SIZE   a chunk-size line          CHUNK_DATA  the chunk's bytes
#   CHUNK_END    the CRLF after a chunk     TRAILER     the trailer section
#   UNTIL_CLOSE  responses only: a body delimited by the connection's close
#   LOST         responses only: the response stream can no longer be
#                followed (passed, not parsed; final)
# Outside the table: a violation resets the session (final), a CONNECT
# tunnel makes the connection opaque (final).
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _LOST = (
    "HEAD", "BODY", "CHUNK_SIZE", "CHUNK_DATA", "CHUNK_END", "TRAILER", "UNTIL_CLOSE", "LOST")
TRANSITIONS = check_table({
    _HEAD: {_BODY, _CHUNK_SIZE, _UNTIL_CLOSE, _LOST},
    _BODY: {_HEAD, _LOST},
    _CHUNK_SIZE: {_CHUNK_DATA, _TRAILER, _LOST},
    _CHUNK_DATA: {_CHUNK_END},
    _CHUNK_END: {_CHUNK_SIZE, _LOST},
    _TRAILER: {_HEAD, _LOST},
    _UNTIL_CLOSE: set(),                  # final: the connection's close ends it
    _LOST: set(),
})


def _set(s, new):
    """The one way to change a direction's state: along TRANSITIONS."""
    if new is not s.mode:
        s.mode = go("HTTP", TRANSITIONS, s.mode, new)

_MODE_NAMES = {_HEAD: "head", _BODY: "body", _CHUNK_SIZE: "chunked body",
               _CHUNK_DATA: "chunked body", _CHUNK_END: "chunked body",
               _TRAILER: "trailer", _UNTIL_CLOSE: "body until close", _LOST: "not followed"}

#: Reasons for %FW-3-HTTP_PROTOCOL_VIOLATION: keyword -> text.
REASONS = {
    "request-line": "invalid request line",
    "version": "unsupported HTTP version",
    "bare-cr": "bare CR in request head",
    "bare-lf": "bare LF in request head",
    "obs-fold": "obsolete line folding",
    "field-name": "invalid header field name",
    "field-value": "invalid character in header field value",
    "head-too-long": "request head longer than %d bytes" % MAX_HEAD,
    "cl-and-te": "both Content-Length and Transfer-Encoding",
    "cl-invalid": "invalid Content-Length",
    "cl-conflict": "conflicting Content-Length values",
    "te-not-chunked": "Transfer-Encoding not ending in chunked",
    "te-unknown": "unknown transfer coding",
    "te-http10": "Transfer-Encoding in an HTTP/1.0 request",
    "host-duplicate": "more than one Host header",
    "chunk-size": "invalid chunk size line",
    "chunk-too-large": "chunk size too large",
    "chunk-end": "chunk data not followed by CRLF",
    "trailer": "invalid trailer field",
    "pipeline": "more than %d requests pending" % MAX_PIPELINE,
    "response": "unparsable response while Java blocking is on",
}


def _ntoa(addr: int) -> str:
    return "%d.%d.%d.%d" % ((addr >> 24) & 255, (addr >> 16) & 255,
                            (addr >> 8) & 255, addr & 255)


class _Violation(Exception):
    def __init__(self, reason, detail=""):
        Exception.__init__(self, reason)
        self.reason = reason
        self.detail = detail


class _Block(Exception):
    pass


class _Request:
    __slots__ = ("method", "java")

    def __init__(self, method, java):
        self.method = method
        self.java = java          # the target names a .class file


class _Side:
    __slots__ = ("buf", "start", "fed", "mode", "remaining", "trailer_len", "scanned",
                 "released", "rl_end")

    def __init__(self):
        self.buf = bytearray()    # unconsumed bytes (requests: held)
        self.start = 0            # absolute offset of buf[0]
        self.fed = 0
        self.mode = _HEAD
        self.remaining = 0        # body / chunk bytes still to pass
        self.trailer_len = 0
        self.scanned = 0          # bytes of buf already searched for a line end
        self.released = 0         # release point returned so far
        self.rl_end = -1          # end of the request line in buf, once known


def _first_bare(buf, lo, hi, rl_hi=0):
    """Refuse the first offending byte in buf[lo:hi]: a bare CR (a CR that
    ends the buffer may still be followed by LF), a bare LF, or -- below
    ``rl_hi``, the request line -- a byte no request line may contain.
    Scanning in stream order makes the verdict independent of how the
    bytes were segmented."""
    best, reason = hi, None
    lf = _BARE_LF.search(buf, lo, hi)
    if lf is not None:
        best, reason = lf.start(), "bare-lf"
    cr = _BARE_CR.search(buf, lo, best)
    if cr is not None and not (cr.start() == len(buf) - 1 or cr.start() + 1 >= hi and
                               buf[cr.start() + 1:cr.start() + 2] == b"\n"):
        best, reason = cr.start(), "bare-cr"
    if lo < rl_hi:
        if lo == 0 and buf and buf[0] not in (10, 13) and not _TOKEN_CHAR.match(buf, 0, 1):
            best, reason = 0, "request-line"
        else:
            junk = _RL_BAD.search(buf, lo, min(best, rl_hi))
            if junk is not None:
                best, reason = junk.start(), "request-line"
    if reason is not None:
        raise _Violation(reason, bytes(buf[max(0, best - 20):best + 1]))


def _fields(lines):
    """Parse header field lines into a list of (lower name, value)."""
    out = []
    for ln in lines:
        if ln[:1] in (b" ", b"\t"):
            raise _Violation("obs-fold")
        m = _FIELD.match(ln)
        if m is None:
            raise _Violation("field-name", ln[:40])
        value = m.group(2)
        if _BAD_VALUE.search(value):
            raise _Violation("field-value", m.group(1))
        out.append((m.group(1).lower(), value))
    return out


def _list(values):
    """Elements of comma-separated header list values (lowercased, no empties)."""
    out = []
    for v in values:
        for e in v.split(b","):
            e = e.strip(b" \t")
            if e:
                out.append(e.lower())
    return out


def _media_type(value):
    return value.split(b";", 1)[0].strip(b" \t").lower()


@implementer(IStreamInspector)
class HttpInspector:
    name = "http"

    def __init__(self, ctx, java_permitted=None):
        self.ctx = ctx
        rule = ctx.rule
        self.java_list = getattr(rule, "java_list", None) if rule is not None else None
        if self.java_list is None:
            self._java_check = False          # no java-list: applets not inspected
        else:
            self._java_check = True
        self._java_permitted = java_permitted
        self._permitted = None                # cached decision for this server
        self._sides = (_Side(), _Side())
        self._pending = deque()               # requests awaiting a response
        self._sniff = None                    # first body bytes of a response (Java magic)
        self._dead = False
        self._opaque = False
        self.requests = 0
        self.responses = 0

    # -- IStreamInspector -------------------------------------------------

    def data_received(self, direction, data):
        v = Verdict()
        if self._opaque:
            return v
        s = self._sides[direction]
        if self._dead:
            # reset already asked for: release nothing more
            v.release = s.released
            v.reset = True
            return v
        s.buf += data
        s.fed += len(data)
        try:
            if direction == CLIENT:
                self._requests(s, v)
            else:
                self._responses(s, v)
        except _Violation as e:
            self._violation(v, e)
        except _Block:
            self._block(v)
        if self._opaque:
            v.opaque = True
            return v
        # requests: up to the first byte not yet decided; responses are
        # never held (but after a reset nothing more is released)
        rel = s.fed if direction == SERVER and not v.reset else s.start
        if rel > s.released:
            s.released = rel
        v.release = s.released
        return v

    def connection_closed(self, direction):
        """The sender closed.  A request head still incomplete can never be
        completed; it is refused only if what is there is already invalid
        (the server will see a truncated request and answer 400)."""
        if self._dead or self._opaque:
            return None
        s = self._sides[direction]
        v = Verdict()
        if direction == CLIENT and s.mode == _HEAD and s.buf:
            try:
                _first_bare(s.buf, 0, min(len(s.buf), MAX_HEAD))
            except _Violation as e:
                self._violation(v, e)
                v.release = s.start
                return v
        s.start += len(s.buf)
        del s.buf[:]
        s.released = s.fed
        v.release = s.fed
        return v

    def state_summary(self):
        c, r = self._sides
        return ("HTTP state: request %s, response %s, requests %d, responses %d, pending %d"
                % (_MODE_NAMES[c.mode], _MODE_NAMES[r.mode], self.requests,
                   self.responses, len(self._pending)))

    # -- messages ---------------------------------------------------------

    def _peers(self):
        c = self.ctx
        return "initiator (%s:%d) responder (%s:%d)" % (
            _ntoa(c.client_addr), c.client_port, _ntoa(c.server_addr), c.server_port)

    def _violation(self, v, e):
        self._dead = True
        v.reset = True
        v.reason = "http " + e.reason
        v.log.append(alert(3, "HTTP_PROTOCOL_VIOLATION",
                      "HTTP protocol violation (%s) from %s -- session reset"
                      % (REASONS[e.reason], self._peers())))
        self._debug(v, "protocol violation %s%s, session reset"
                    % (e.reason, (": %r" % (e.detail,)) if e.detail else ""))

    def _block(self, v):
        self._dead = True
        c = self.ctx
        v.reset = True
        v.reason = "http java"
        v.log.append(alert(3, "HTTP_JAVA_BLOCK",
                      "JAVA applet is blocked from (%s:%d) to (%s:%d)."
                      % (_ntoa(c.server_addr), c.server_port, _ntoa(c.client_addr), c.client_port)))
        self._debug(v, "Java applet from %s blocked, session reset" % _ntoa(c.server_addr))

    def _debug(self, v, text):
        if self.ctx.debug:
            v.debug.append("CBAC HTTP: " + text)

    # -- requests (client -> server) ---------------------------------------

    def _consume(self, s, n):
        del s.buf[:n]
        s.start += n
        s.scanned = 0
        s.rl_end = -1

    def _find_line(self, s, sep, limit):
        """Find ``sep`` in the buffer, searching only bytes not searched
        before (no quadratic rescans when bytes trickle in)."""
        lo = max(0, s.scanned - len(sep) + 1)
        end = s.buf.find(sep, lo)
        if end < 0:
            s.scanned = len(s.buf)
            if len(s.buf) > limit:
                return -2
        return end

    def _requests(self, s, v):
        while s.buf:
            mode = s.mode
            if mode == _HEAD:
                # empty lines before a request line are ignored (RFC 9112 2.2)
                while s.buf[:2] == b"\r\n":
                    self._consume(s, 2)
                if not s.buf:
                    return
                lo = max(0, s.scanned - 1)
                if s.rl_end < 0:
                    s.rl_end = s.buf.find(b"\r\n", lo)
                rl_hi = s.rl_end if s.rl_end >= 0 else len(s.buf)
                end = self._find_line(s, b"\r\n\r\n", MAX_HEAD)
                limit = end + 4 if end >= 0 else len(s.buf)
                _first_bare(s.buf, lo, min(limit, MAX_HEAD), rl_hi)
                if end < 0:
                    if end == -2:
                        raise _Violation("head-too-long")
                    return
                if end + 4 > MAX_HEAD:
                    raise _Violation("head-too-long")
                head = bytes(s.buf[:end])
                self._request_head(s, head, v)
                self._consume(s, end + 4)
            elif mode == _BODY:
                n = min(s.remaining, len(s.buf))
                self._consume(s, n)
                s.remaining -= n
                if s.remaining == 0:
                    _set(s, _HEAD)
            elif mode == _CHUNK_SIZE:
                lo = max(0, s.scanned - 1)
                end = self._find_line(s, b"\r\n", MAX_CHUNK_LINE)
                try:
                    _first_bare(s.buf, lo, end + 2 if end >= 0 else len(s.buf))
                except _Violation:
                    raise _Violation("chunk-size", bytes(s.buf[:40]))
                if end < 0:
                    if end == -2:
                        raise _Violation("chunk-size", bytes(s.buf[:40]))
                    return
                size = self._chunk_size(bytes(s.buf[:end]))
                self._consume(s, end + 2)
                if size == 0:
                    _set(s, _TRAILER)
                    s.trailer_len = 0
                else:
                    _set(s, _CHUNK_DATA)
                    s.remaining = size
            elif mode == _CHUNK_DATA:
                n = min(s.remaining, len(s.buf))
                self._consume(s, n)
                s.remaining -= n
                if s.remaining == 0:
                    _set(s, _CHUNK_END)
            elif mode == _CHUNK_END:
                if len(s.buf) < 2:
                    if s.buf[:1] != b"\r":
                        raise _Violation("chunk-end")
                    return
                if s.buf[:2] != b"\r\n":
                    raise _Violation("chunk-end")
                self._consume(s, 2)
                _set(s, _CHUNK_SIZE)
            elif mode == _TRAILER:
                lo = max(0, s.scanned - 1)
                end = self._find_line(s, b"\r\n", MAX_HEAD - s.trailer_len)
                _first_bare(s.buf, lo, end + 2 if end >= 0 else len(s.buf))
                if end < 0:
                    if end == -2:
                        raise _Violation("head-too-long")
                    return
                line = bytes(s.buf[:end])
                s.trailer_len += end + 2
                if s.trailer_len > MAX_HEAD:
                    raise _Violation("head-too-long")
                if line:
                    try:
                        ((name, _),) = _fields([line])
                    except _Violation as e:
                        if e.reason == "field-name":
                            raise _Violation("trailer", line[:40])
                        raise
                    if name in (b"content-length", b"transfer-encoding", b"host"):
                        raise _Violation("trailer", name)
                    self._consume(s, end + 2)
                else:
                    self._consume(s, 2)
                    _set(s, _HEAD)
                    self._debug(v, "request body complete (chunked)")

    def _chunk_size(self, line):
        m = _CHUNK_LINE.match(line)
        if m is None:
            raise _Violation("chunk-size", line[:40])
        size = int(m.group(1), 16)
        if size > MAX_CHUNK_SIZE:
            raise _Violation("chunk-too-large", line[:40])
        return size

    def _request_head(self, s, head, v):
        if _BARE_LF.search(head):
            raise _Violation("bare-lf")
        if _BARE_CR.search(head):
            raise _Violation("bare-cr")
        lines = head.split(b"\r\n")
        m = _REQUEST_LINE.match(lines[0])
        if m is None:
            raise _Violation("request-line", lines[0][:60])
        method, target, major, minor = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        if major != 1:
            raise _Violation("version", lines[0][:60])
        fields = _fields(lines[1:])
        te, cl, hosts = [], [], 0
        for name, value in fields:
            if name == b"transfer-encoding":
                te.append(value)
            elif name == b"content-length":
                cl.append(value)
            elif name == b"host":
                hosts += 1
        if hosts > 1:
            raise _Violation("host-duplicate")
        if te:
            if minor == 0:
                raise _Violation("te-http10")
            if cl:
                raise _Violation("cl-and-te")
            codings = _list(te)
            if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
                raise _Violation("te-not-chunked", b", ".join(codings))
            for c in codings[:-1]:
                if c not in TE_CODINGS:
                    raise _Violation("te-unknown", c)
            _set(s, _CHUNK_SIZE)
            framing = "chunked"
        elif cl:
            values = [e.strip(b" \t") for v in cl for e in v.split(b",")]
            for x in values:
                if not _DIGITS.match(x):
                    raise _Violation("cl-invalid", x[:20])
            n = set(int(x) for x in values)
            if len(n) != 1:
                raise _Violation("cl-conflict")
            s.remaining = n.pop()
            _set(s, _BODY if s.remaining else _HEAD)
            framing = "length %d" % s.remaining
        else:
            _set(s, _HEAD)
            framing = "no body"
        if self._sides[SERVER].mode != _LOST:
            if len(self._pending) >= MAX_PIPELINE:
                raise _Violation("pipeline")
            path = unquote_to_bytes(target.split(b"?", 1)[0].split(b"#", 1)[0])
            self._pending.append(_Request(method, path.lower().endswith(b".class")))
        self.requests += 1
        self._debug(v, "request %s %s HTTP/%d.%d from %s, %s"
                    % (method.decode("ascii", "replace"),
                       target[:80].decode("ascii", "replace"), major, minor,
                       self._peers(), framing))

    # -- responses (server -> client) -------------------------------------

    def _responses(self, s, v):
        while s.buf:
            mode = s.mode
            if mode == _LOST or mode == _UNTIL_CLOSE:
                if mode == _UNTIL_CLOSE and self._sniff is not None:
                    self._sniff_body(bytes(s.buf[:4]))
                self._consume(s, len(s.buf))
                return
            if mode == _HEAD:
                # stray empty lines between responses are skipped
                while s.buf[:1] in (b"\r", b"\n") and s.buf:
                    self._consume(s, 1)
                if not s.buf:
                    return
                end, sep = self._head_end(s)
                if end < 0:
                    if end == -2:
                        self._lose(s, v, "response head too long")
                    return
                head = bytes(s.buf[:end])
                self._consume(s, end + sep)
                self._response_head(s, head, v)
            elif mode == _BODY or mode == _CHUNK_DATA:
                n = min(s.remaining, len(s.buf))
                if self._sniff is not None:
                    self._sniff_body(bytes(s.buf[:n]))
                self._consume(s, n)
                s.remaining -= n
                if s.remaining == 0:
                    if mode == _BODY:
                        self._response_done(s, v)
                    else:
                        _set(s, _CHUNK_END)
            elif mode == _CHUNK_SIZE:
                end = s.buf.find(b"\n", s.scanned)
                if end < 0:
                    s.scanned = len(s.buf)
                    if len(s.buf) > MAX_CHUNK_LINE:
                        self._lose(s, v, "chunk size line too long")
                    return
                line = bytes(s.buf[:end]).rstrip(b"\r")
                m = re.match(rb"[ \t]*([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?\Z", line)
                if m is None:
                    self._lose(s, v, "bad chunk size")
                    continue
                self._consume(s, end + 1)
                size = int(m.group(1), 16)
                if size == 0:
                    _set(s, _TRAILER)
                else:
                    _set(s, _CHUNK_DATA)
                    s.remaining = size
            elif mode == _CHUNK_END:
                end = s.buf.find(b"\n", s.scanned)
                if end < 0:
                    s.scanned = len(s.buf)
                    if len(s.buf) > 2:
                        self._lose(s, v, "chunk data not followed by CRLF")
                    return
                if bytes(s.buf[:end]).rstrip(b"\r"):
                    self._lose(s, v, "chunk data not followed by CRLF")
                    continue
                self._consume(s, end + 1)
                _set(s, _CHUNK_SIZE)
            elif mode == _TRAILER:
                end = s.buf.find(b"\n", s.scanned)
                if end < 0:
                    s.scanned = len(s.buf)
                    if len(s.buf) > MAX_HEAD:
                        self._lose(s, v, "trailer too long")
                    return
                empty = not bytes(s.buf[:end]).rstrip(b"\r")
                self._consume(s, end + 1)
                if empty:
                    self._response_done(s, v)

    def _head_end(self, s):
        """End of a response head: CRLFCRLF or (leniently) LFLF."""
        lo = max(0, s.scanned - 3)
        a = s.buf.find(b"\r\n\r\n", lo)
        b = s.buf.find(b"\n\n", lo)
        if b >= 0 and (a < 0 or b < a):
            return b, 2
        if a >= 0:
            return a, 4
        s.scanned = len(s.buf)
        return (-2 if len(s.buf) > MAX_HEAD else -1), 0

    def _lose(self, s, v, why):
        """The response stream can no longer be followed."""
        if self._java_check and not self._java_ok():
            raise _Violation("response", why)
        _set(s, _LOST)
        self._pending.clear()
        self._sniff = None
        self._debug(v, "%s, responses no longer followed" % why)

    def _java_ok(self):
        if self._permitted is None:
            f = self._java_permitted
            try:
                self._permitted = bool(f(self.ctx.server_addr)) if f is not None else False
            except Exception:
                self._permitted = False
        return self._permitted

    def _response_head(self, s, head, v):
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        m = _STATUS_LINE.match(lines[0])
        if m is None:
            self._lose(s, v, "unparsable status line %r" % lines[0][:40])
            return
        code = int(m.group(1))
        fields = []
        for ln in lines[1:]:
            name, sep, value = ln.partition(b":")
            if sep:
                fields.append((name.strip(b" \t").lower(), value.strip(b" \t")))
        if 100 <= code < 200:
            self._debug(v, "response %d (interim)" % code)
            if code == 101:
                self._opaque = True
                self._debug(v, "protocol switched (101), inspection stopped")
            return
        req = self._pending.popleft() if self._pending else None
        self.responses += 1
        ctype = te = None
        cl = []
        for name, value in fields:
            if name == b"content-type":
                ctype = _media_type(value)
            elif name == b"transfer-encoding":
                te = (te + b"," + value) if te else value
            elif name == b"content-length":
                cl.append(value)
        if self._java_check and 200 <= code < 300 and (
                ctype in JAVA_TYPES or (req is not None and req.java)):
            if not self._java_ok():
                raise _Block()
        method = req.method if req is not None else b"GET"
        if method == b"CONNECT" and 200 <= code < 300:
            self._opaque = True
            self._debug(v, "CONNECT tunnel established, inspection stopped")
            return
        self._sniff = (b"" if self._java_check and 200 <= code < 300 and not self._java_ok()
                       else None)
        if method == b"HEAD" or code in (204, 304):
            framing = "no body"
            _set(s, _HEAD)
        elif te is not None:
            if _list([te])[-1:] == [b"chunked"]:
                _set(s, _CHUNK_SIZE)
                framing = "chunked"
            else:
                _set(s, _UNTIL_CLOSE)
                framing = "until close"
        elif cl:
            values = set(e.strip(b" \t") for x in cl for e in x.split(b","))
            if len(values) != 1 or not _DIGITS.match(next(iter(values))):
                self._lose(s, v, "invalid Content-Length in response")
                return
            s.remaining = int(values.pop())
            _set(s, _BODY if s.remaining else _HEAD)
            framing = "length %d" % s.remaining
        else:
            _set(s, _UNTIL_CLOSE)
            framing = "until close"
        self._debug(v, "response %d, %s" % (code, framing))
        if s.mode == _HEAD:
            self._sniff = None

    def _sniff_body(self, data):
        need = 4 - len(self._sniff)
        self._sniff += data[:need]
        if len(self._sniff) == 4:
            if self._sniff == CLASS_MAGIC:
                raise _Block()
            self._sniff = None

    def _response_done(self, s, v):
        _set(s, _HEAD)
        self._sniff = None


@implementer(IInspectorFactory)
class HttpInspectorFactory:
    """The ``http`` inspector factory.

    ``java_permitted(server_addr: int) -> bool`` is built by the engine
    from the standard ACL named in ``java-list`` (returning False for every
    address when that ACL does not exist).  It is only consulted when the
    rule has a ``java-list``; with a ``java-list`` and no callable, every
    applet is blocked.
    """

    name = "http"

    def __init__(self, java_permitted=None):
        self.java_permitted = java_permitted

    def __call__(self, ctx, java_permitted=None):
        return HttpInspector(ctx, java_permitted if java_permitted is not None
                             else self.java_permitted)


#: Factory for rules without a java-list (or when the engine passes
#: ``java_permitted`` per call).
factory = HttpInspectorFactory()
