"""SMTP / ESMTP inspection (``ip inspect name NAME smtp|esmtp``).

A sans-I/O state machine behind :mod:`cbac.inspect.api`, modelled on the
IOS 12.3(4)T engine of Cisco document 69309 and on the lessons of PIX/ASA
MailGuard (see ``docs/smtp.md`` for the full description and the choices
made where IOS behaviour is not documented).

Client -> server
    Command lines are judged whole, whatever the segmentation: an
    incomplete line is held, a complete one is released as is (allowed
    verb) or masked with a same-length run of ``x`` (line terminator kept)
    so the server answers 5xx.  After ``DATA`` (and ``STARTTLS``, ``AUTH``
    and each SASL line) the bytes that follow are held, uninterpreted,
    until the server has answered: a ``354`` makes them message body, a
    5xx makes them commands again -- exactly as the server will read them.
    The body streams through; only ``<CRLF>.<CRLF>`` ends it, and a dot
    line next to a bare CR or LF (SMTP smuggling) resets the session
    unless ``cbac smtp bare-lf allow``.  ``BDAT`` chunks are counted, never
    parsed.  ``max-data`` caps the body bytes of the session.

Server -> client
    Reply lines are held until complete and parsed (``ddd[ -]text``),
    multi-line replies included; each final line answers the oldest
    outstanding command (pipelining).  In ``esmtp`` mode the ``250`` reply to
    ``EHLO`` is filtered: extension keywords cbac does not support are
    masked with same-length ``X``.  ``220`` to ``STARTTLS`` makes the
    session opaque (TLS is never touched).

Contract note: a server reply can unblock client bytes held earlier (e.g.
the body after ``DATA``).  Their release and edits are returned by the
next ``data_received(CLIENT, ...)`` call, which may carry no data: the
stream engine calls ``data_received(other, b"")`` after each call when
the other direction holds bytes (see ``docs/smtp.md``).
"""

from __future__ import annotations

import re
from collections import deque

from zope.interface import implementer, provider

from cbac.config.model import SMTP_MAX_DATA_DEFAULT, SmtpOptions
from cbac.inspect.api import (CLIENT, SERVER, Edit, IInspectorFactory,
                              IStreamInspector, Verdict, alert)
from cbac.inspect.fsm import check_table, go

#: Longest command line judged, terminator included.  RFC 5321
#: §4.5.3.1.4 says 512, but ESMTP parameters lengthen MAIL/RCPT; 2048 is
#: the line limit of Postfix (``line_length_limit``) and sendmail, so no
#: server reads a line this long as two commands.  A longer line is
#: masked (and released as it streams).
MAX_COMMAND_LINE = 2048
#: Longest AUTH command or SASL line judged (RFC 4954 §4: 12288).
MAX_AUTH_LINE = 12288
#: Longest reply line held for parsing (RFC 5321: 512).
MAX_REPLY_LINE = 4096
#: Most bytes held after DATA/STARTTLS/AUTH while waiting for the reply.
MAX_PENDING_HOLD = 1 << 20
#: Longest header line checked in the message header (Majordomo).
MAX_HEADER_LINE = 4096
#: Malformed replies alerted per session (then only counted).
MAX_REPLY_ALERTS = 10

SMTP_VERBS = frozenset(b"DATA HELO HELP MAIL NOOP QUIT RCPT RSET SAML".split())
ESMTP_VERBS = frozenset(b"AUTH DATA EHLO ETRN HELO HELP MAIL NOOP QUIT RCPT RSET".split())
#: Verbs of the archaic sendmail attacks (IOS IDS signature 3104).
ARCHAIC_VERBS = frozenset((b"WIZ", b"DEBUG"))

#: EHLO keywords passed to the client (esmtp); STARTTLS depends on the
#: ``cbac smtp starttls`` option.  Everything else is masked.
EHLO_KEYWORDS = frozenset(b"SIZE ETRN BINARYMIME CHUNKING PIPELINING AUTH DSN "
                          b"ENHANCEDSTATUSCODES 8BITMIME SMTPUTF8 HELP".split())
#: MAIL FROM / RCPT TO parameters accepted (RFC 1870, 6152, 3030, 3461,
#: 4954, 6531); any other parameter belongs to an extension cbac masks.
MAIL_PARAMS = frozenset(b"SIZE BODY RET ENVID AUTH SMTPUTF8".split())
RCPT_PARAMS = frozenset(b"NOTIFY ORCPT".split())
BODY_VALUES = frozenset((b"7BIT", b"8BITMIME", b"BINARYMIME"))

# -- the state machine --------------------------------------------------------
#
# The session's state is how the client's next bytes are read.  Every change
# goes through SmtpInspector._go, which refuses one this table does not list
# (fsm.IllegalTransition: the engine resets the session).
#
#   GREETING  before the server's greeting; client lines are read as commands
#             (pipelined early), the greeting reply makes it COMMAND
#   COMMAND   command lines, judged whole
#   DATA      message body after a 354 to DATA, until <CRLF>.<CRLF>
#   BDAT      the counted bytes of a BDAT chunk
#   AUTH      SASL lines after a 334 to AUTH (or to a SASL line)
#   DISCARD   the rest of an over-long command line, masked (then back to
#             COMMAND, or AUTH if it was a SASL line)
#   TLS       after 220 to STARTTLS: opaque, no longer inspected (final)
#   CLOSED    reset by the inspector (final; reachable from every state that
#             is not final: the inspector can always fail closed)
GREETING, COMMAND, DATA, BDAT, AUTH, DISCARD, TLS, CLOSED = (
    "GREETING", "COMMAND", "DATA", "BDAT", "AUTH", "DISCARD", "TLS", "CLOSED")
TRANSITIONS = check_table({
    GREETING: {COMMAND, BDAT, DISCARD, CLOSED},      # gate replies come after the greeting
    COMMAND: {DATA, BDAT, AUTH, DISCARD, TLS, CLOSED},
    DATA: {COMMAND, CLOSED},
    BDAT: {COMMAND, CLOSED},
    AUTH: {COMMAND, DISCARD, CLOSED},
    DISCARD: {COMMAND, AUTH, CLOSED},
    TLS: set(),
    CLOSED: set(),
})
#: states whose lines are commands
_COMMANDS = (GREETING, COMMAND)
#: how ``show ip inspect sessions detail`` names a state
_MODE_NAMES = {GREETING: "COMMAND", COMMAND: "COMMAND", DATA: "DATA", BDAT: "BDAT", AUTH: "AUTH",
               DISCARD: "COMMAND", TLS: "TLS", CLOSED: "RESET"}
# kinds of outstanding commands whose reply decides how to read what follows
_GATES = (b"DATA", b"STARTTLS", b"AUTH", b"SASL")

_BLANK = re.compile(rb"[ \t]+")
_BDAT_ARGS = re.compile(rb"[ \t]+(\d{1,18})(?:[ \t]+(LAST))?[ \t]*\Z", re.I)
_REPLY = re.compile(rb"([2-5][0-5]\d)(?:([ -])|\Z)")
_SIZE_VAL = re.compile(rb"\d{1,20}\Z")
# a Reply-To field name; blanks before the colon (RFC 5322 §4.5.3
# obs-optional) are read as a server may read them
_REPLY_TO = re.compile(rb"reply-to[ \t]*:", re.I)


def ntoa(addr: int) -> str:
    return "%d.%d.%d.%d" % ((addr >> 24) & 255, (addr >> 16) & 255,
                            (addr >> 8) & 255, addr & 255)


def _show(b: bytes, n: int = 24) -> str:
    """Printable form of untrusted bytes for a debug line."""
    s = b[:n].decode("latin-1")
    return "".join(c if " " <= c <= "~" else "." for c in s)


def _split_path(args: bytes):
    """``FROM:<path> params`` -> (path, [params]); None if no colon."""
    colon = args.find(b":")
    if colon < 0:
        return None, []
    rest = args[colon + 1:].lstrip(b" \t")
    if rest.startswith(b"<"):
        close = rest.find(b">")
        if close < 0:
            return rest[1:], []
        path, tail = rest[1:close], rest[close + 1:]
    else:
        parts = _BLANK.split(rest, 1)
        path, tail = parts[0], (parts[1] if len(parts) > 1 else b"")
    return path, [p for p in _BLANK.split(tail.strip(b" \t")) if p]


@implementer(IStreamInspector)
class SmtpInspector:
    """One SMTP or ESMTP connection."""

    def __init__(self, ctx, esmtp: bool):
        self.name = "esmtp" if esmtp else "smtp"
        self.ctx = ctx
        self.esmtp = esmtp
        md = getattr(ctx.rule, "max_data", None)
        self.max_data = SMTP_MAX_DATA_DEFAULT if md is None else int(md)
        # zone-based policy firewall layer 7 policy (cbac.inspect.zones):
        # "match cmd line length gt N" / "match cmd verb V" with "reset"
        self.cmd_line_max = getattr(ctx.rule, "zbf_cmd_line_max", None)
        self.cmd_line_log = getattr(ctx.rule, "zbf_cmd_line_log", False)
        self.deny_verbs = getattr(ctx.rule, "zbf_deny_verbs", None) or {}
        opts = ctx.options if ctx.options is not None else SmtpOptions()
        self.starttls_allow = getattr(opts, "starttls", "allow") != "strip"
        self.bare_lf_reject = getattr(opts, "bare_lf", "reject") != "allow"
        self._cli = "(%s:%d)" % (ntoa(ctx.client_addr), ctx.client_port)
        self._srv = "(%s:%d)" % (ntoa(ctx.server_addr), ctx.server_port)
        # client direction
        self._cbuf = bytearray()       # unprocessed client bytes
        self._coff = 0                 # stream offset of _cbuf[0]
        self._cscan = 0                # where to look for the next LF
        self.state = GREETING
        self._blocked = False          # waiting for the reply to a gate
        self._prev2 = b"\r\n"          # two body bytes before _cbuf
        self._hdr = None               # partial header line (bytearray) or None
        self._hdr_start = 0            # stream offset of that line
        self._hdr_rt = False           # that line's field is Reply-To (folding)
        self._bdat_left = 0
        self._data_tail = b"\r\n"
        self._resume_mode = COMMAND
        self._discard_len = 0
        self._bdat_last = False
        # server direction
        self._sbuf = bytearray()
        self._soff = 0
        self._sscan = 0
        self._sdiscard = False
        self._rcode = None             # code of an open multi-line reply
        self._rline = 0                # line number inside the current reply
        # both
        self._rel = [0, 0]
        self._edits = ([], [])
        self._pending = deque([b"GREETING"])
        self._ext = set()              # EHLO keywords passed to the client
        self._log = []
        self._dbg = []
        self.reason = ""
        # counters (state_summary)
        self.commands = 0
        self.replies = 0
        self.reply_lines = 0
        self.body_bytes = 0
        self.masked = 0
        self.bad_replies = 0

    @property
    def dead(self):
        return self.state is CLOSED

    @property
    def opaque(self):
        return self.state is TLS

    def _go(self, new):
        """The one way to change state: along TRANSITIONS only."""
        self.state = go("SMTP", TRANSITIONS, self.state, new)

    @property
    def debug(self):
        """Debug lines on?  Read at each call: the engine sets ``ctx.debug``
        from ``debug ip inspect smtp`` before feeding."""
        return self.ctx.debug

    # -- IStreamInspector ---------------------------------------------------

    def data_received(self, direction, data):
        if self.opaque:
            return Verdict(opaque=True)
        if self.dead:
            return Verdict(release=self._rel[direction], reset=True, reason=self.reason)
        self._log, self._dbg = [], []
        if direction == CLIENT:
            if data:
                self._cbuf += data
            self._client()
        else:
            if data:
                self._sbuf += data
            self._server()
        return self._verdict(direction)

    def connection_closed(self, direction):
        if self.opaque or self.dead:
            return None
        self._log, self._dbg = [], []
        if direction == CLIENT:
            if self._cbuf and not self._blocked and self.state in (GREETING, COMMAND, AUTH):
                line = bytes(self._cbuf)
                self._take_client(len(line))
                self._client_line(line, self._coff - len(line), 0)
                self._release(CLIENT, self._coff)
        elif self._sbuf and not self._sdiscard:
            line = bytes(self._sbuf)
            off = self._soff
            self._sbuf.clear()
            self._soff += len(line)
            self._sscan = 0
            self._reply_line(line, off, 0)
            self._release(SERVER, self._soff)
        return self._verdict(direction)

    def state_summary(self):
        if self._blocked and self.state not in (TLS, CLOSED):
            state = self._pending[-1].decode() + " PENDING"
        else:
            state = _MODE_NAMES[self.state]
        return ("SMTP state: %s, commands %d, replies %d, body bytes %d, masked %d"
                % (state, self.commands, self.replies, self.body_bytes, self.masked))

    # -- plumbing -----------------------------------------------------------

    def _verdict(self, direction):
        edits = self._edits[direction]
        v = Verdict(release=self._rel[direction], edits=list(edits),
                    log=self._log, debug=self._dbg)
        edits.clear()
        if self.dead:
            v.reset = True
            v.reason = self.reason
        elif self.opaque:
            v.opaque = True
            v.release = None
        return v

    def _release(self, direction, off):
        if off > self._rel[direction]:
            self._rel[direction] = off

    def _mask(self, direction, off, length, char=b"x"):
        if length > 0:
            self._edits[direction].append(Edit(off, length, char * length))

    def _alert(self, severity, mnemonic, text):
        self._log.append(alert(severity, mnemonic, text))

    def _d(self, text):
        if self.debug:
            self._dbg.append("CBAC SMTP: " + text)

    def _reset(self, reason):
        self._go(CLOSED)
        self.reason = reason
        self._d("session reset - %s" % reason)

    def _invalid_command(self):
        self._alert(3, "SMTP_INVALID_COMMAND",
                    "Invalid SMTP command from initiator %s" % self._cli)

    def _sig(self, mnemonic, what):
        self._alert(4, mnemonic, "%s - from %s to %s"
                    % (what, ntoa(self.ctx.client_addr), ntoa(self.ctx.server_addr)))

    def _take_client(self, n):
        del self._cbuf[:n]
        self._coff += n
        self._cscan = 0

    # -- client direction ---------------------------------------------------

    def _client(self):
        while not self.dead and not self.opaque:
            if self._blocked:
                if len(self._cbuf) > MAX_PENDING_HOLD:
                    self._alert(4, "SMTP_PENDING_OVERFLOW",
                                "More than %d bytes sent before the reply to %s from initiator %s"
                                " -- session reset" % (MAX_PENDING_HOLD,
                                                       self._pending[-1].decode(), self._cli))
                    self._reset("data pipelined before reply")
                return
            mode = self.state
            if mode == DATA:
                if not self._body():
                    return
            elif mode == BDAT:
                if not self._bdat():
                    return
            elif mode == DISCARD:
                if not self._discard():
                    return
            elif not self._next_line():
                return

    def _long_ok(self, buf):
        """May this line be as long as an AUTH line?"""
        if self.state == AUTH:
            return True
        return self.esmtp and buf.lstrip(b" \t")[:5].upper() in (b"AUTH ", b"AUTH\t")

    def _policy_reset(self, log, what):
        if log:
            self._alert(4, "SMTP_L7_POLICY",
                        "SMTP %s from initiator %s -- session reset by layer 7 policy"
                        % (what, self._cli))
        self._reset("layer 7 policy: " + what)

    def _next_line(self):
        buf = self._cbuf
        i = buf.find(b"\n", self._cscan)
        cmax = self.cmd_line_max
        if cmax is not None and self.state in _COMMANDS:
            n = (i - (1 if i > 0 and buf[i - 1] == 13 else 0)) if i >= 0 else len(buf) - 1
            if n > cmax:
                self._policy_reset(self.cmd_line_log, "command line longer than %d" % cmax)
                return True
        limit = MAX_COMMAND_LINE
        if (i < 0 and len(buf) >= limit or i >= limit) and self._long_ok(buf):
            limit = MAX_AUTH_LINE
        if i < 0:
            if len(buf) < limit:
                self._cscan = len(buf)
                return False
        elif i < limit:
            line = bytes(buf[:i + 1])
            off = self._coff
            self._take_client(i + 1)
            self._client_line(line, off, 2 if i > 0 and line[-2] == 13 else 1)
            if self.dead:
                return True            # the line is never released
            self._release(CLIENT, self._coff)
            return True
        # no line end within the limit: mask this line up to its end
        self.commands += 1
        self.masked += 1
        self._invalid_command()
        self._d("VERB - line longer than %d bytes, masked" % limit)
        self._resume_mode = AUTH if self.state == AUTH else COMMAND
        self._discard_len = 0
        self._go(DISCARD)
        return True

    def _discard(self):
        buf = self._cbuf
        i = buf.find(b"\n")
        if i < 0:
            n = len(buf)
            if n and buf[-1] == 13:
                n -= 1             # may be the CR of the CRLF: keep it
            self._mask(CLIENT, self._coff, n)
            self._take_client(n)
            self._discard_len += n
            self._release(CLIENT, self._coff)
            return False
        end = i - 1 if i > 0 and buf[i - 1] == 13 else i
        self._mask(CLIENT, self._coff, end)
        self._take_client(i + 1)
        self._discard_len += i + 1
        self._release(CLIENT, self._coff)
        if self._resume_mode == AUTH:
            self._push(b"SASL")
        else:
            self._push(b"OTHER")
        self._go(self._resume_mode)
        self._d("End Of Command Line - index:%d, len:%d" % (self.commands, self._discard_len))
        return True

    def _push(self, kind):
        self._pending.append(kind)
        if kind in _GATES:
            self._blocked = True

    def _client_line(self, line, off, term):
        """Judge one complete client line (``term``: terminator length)."""
        content = line[:len(line) - term]
        self.commands += 1
        index = self.commands
        if self.state == AUTH:
            if b"\r" in content or b"\x00" in content:
                self._invalid_command()
                self._refuse(content, off, b"SASL")
            else:
                self._d("AUTH DATA - len:%d" % len(line))
            self._d("End Of Command Line - index:%d, len:%d" % (index, len(line)))
            self._push(b"SASL")
            return
        stripped = content.lstrip(b" \t")
        lead = len(content) - len(stripped)
        parts = _BLANK.split(stripped, 1)
        raw_verb = parts[0]
        verb = raw_verb.upper()
        args = stripped[len(raw_verb):]
        if not stripped:
            self._d("VERB - Cmd len:0, match_len:0, empty line")
            self._d("End Of Command Line - index:%d, len:%d" % (index, len(line)))
            self._push(b"OTHER")
            return
        self._d("VERB - Cmd len:%d, match_len:%d, verb:%s" % (lead + len(raw_verb), len(raw_verb),
                                                              _show(verb)))
        if args:
            self._d("CMD PARAM - Cmd len:%d, match_len:%d" % (len(content), len(args)))
        if self.deny_verbs and verb in self.deny_verbs:
            self._policy_reset(self.deny_verbs[verb], "command %s" % _show(verb))
            return
        kind = self._judge(verb, args, content)
        self._d("End Of Command Line - index:%d, len:%d" % (index, len(line)))
        if kind is None:
            self._refuse(content, off, verb)
            self._push(b"OTHER")
            return
        if kind == b"BDAT":
            m = _BDAT_ARGS.match(args)
            self._bdat_left = int(m.group(1))
            self._bdat_last = m.group(2) is not None
            self._go(BDAT)
        elif kind == b"DATA":
            self._data_tail = line[-2:] if len(line) >= 2 else b"\r" + line
        self._push(kind)

    def _refuse(self, content, off, verb):
        self.masked += 1
        self._mask(CLIENT, off, len(content))
        self._d("INVALID COMMAND - verb:%s, masked len:%d" % (_show(verb), len(content)))

    def _judge(self, verb, args, content):
        """The pending kind of an allowed command, or None (refused, logged)."""
        if b"\r" in content or b"\x00" in content:
            self._invalid_command()
            return None
        if self.esmtp:
            ok = verb in ESMTP_VERBS
            if not ok and verb == b"BDAT" and b"CHUNKING" in self._ext:
                ok = _BDAT_ARGS.match(args) is not None
            if not ok and verb == b"STARTTLS" and self.starttls_allow:
                ok = not args.strip(b" \t")
        else:
            ok = verb in SMTP_VERBS
        if not ok:
            if verb in ARCHAIC_VERBS:
                self._sig("TCP_SENDMAIL_OLD_SIG", "Archaic Sendmail Attacks")
            self._invalid_command()
            return None
        if verb in (b"MAIL", b"SAML") or verb == b"RCPT":
            return self._envelope(verb, args)
        if verb in (b"DATA", b"STARTTLS", b"AUTH", b"EHLO", b"BDAT"):
            return verb
        if verb == b"HELO":
            # HELO ends the ESMTP session: no extension (and no BDAT) any
            # more, or a server that rejects BDAT would read the chunk as
            # commands while cbac counts it as data
            self._ext = set()
        return b"OTHER"

    def _envelope(self, verb, args):
        path, params = _split_path(args)
        rcpt = verb == b"RCPT"
        if path is not None:
            if b"|" in path:
                if rcpt:
                    self._sig("TCP_SENDMAIL_BAD_TO_SIG", "Sendmail Invalid Recipient")
                else:
                    self._sig("TCP_SENDMAIL_BAD_FROM_SIG", "Sendmail Invalid Sender")
                return None
            if rcpt:
                local = path.split(b"@", 1)[0].split(b":")[-1].strip(b"\" ").lower()
                if local in (b"decode", b"uudecode"):
                    self._sig("TCP_SENDMAIL_DECODE", "Sendmail Decode Alias")
                    return None
        allowed = RCPT_PARAMS if rcpt else MAIL_PARAMS
        for p in params:
            key, _, value = p.partition(b"=")
            key = key.upper()
            if key not in allowed or (key == b"BODY" and value.upper() not in BODY_VALUES):
                self._d("CMD PARAM - unsupported parameter %s" % _show(key))
                self._invalid_command()
                return None
            if key == b"SIZE" and _SIZE_VAL.match(value) and int(value) > self.max_data:
                self._alert(4, "SMTP_MAX_DATA",
                            "Declared SIZE %d exceeds max-data %d from initiator %s"
                            % (int(value), self.max_data, self._cli))
                return None
        return b"OTHER"

    # -- message body ---------------------------------------------------------

    def _enter_body(self):
        self._go(DATA)
        self._prev2 = self._data_tail
        self._hdr = bytearray()
        self._hdr_start = self._coff
        self._hdr_rt = False

    def _body(self):
        """Scan body bytes; False when more data is needed."""
        buf = self._cbuf
        if not buf:
            return False
        w = self._prev2 + buf
        n = len(w)
        pos = 1
        stop = n                   # index in w of the first undecided byte
        event = None
        # candidates: a dot right after a CR or an LF (bytes.find is far
        # faster than a regular expression with a character class)
        nl = w.find(b"\n.", pos)
        cr = w.find(b"\r.", pos)
        while nl >= 0 or cr >= 0:
            x = nl if cr < 0 or 0 <= nl < cr else cr
            d = x + 1              # the dot
            pos = d + 1
            if nl == x:
                nl = w.find(b"\n.", pos)
            else:
                cr = w.find(b"\r.", pos)
            if d + 1 >= n:
                stop = d
                break
            y = w[d + 1]
            if y != 13 and y != 10:
                continue
            if y == 13 and w[x] == 10 and w[x - 1] == 13:
                if d + 2 >= n:
                    stop = d
                    break
                if w[d + 2] == 10:
                    event = ("end", d)
                    stop = d
                    break
            if self.bare_lf_reject:
                event = ("smuggle", d)
                stop = d
                break
            self._d("DATA - bare CR/LF next to a dot line passed (bare-lf allow)")
        count = stop - 2           # body bytes decided in this pass
        base = self._coff - 2      # stream offset of w[0]
        room = self.max_data - self.body_bytes
        if count > room:
            event = ("max", 2 + room)
            stop = 2 + room
            count = room
        rel_at = base + stop
        # message header: hold the current header line, check Reply-To
        if self._hdr is not None:
            hev = self._headers(w, 2, stop, base)
            if hev is not None:
                rel_at, kind = hev
                event = (kind, 0)
            elif (self._hdr is not None and self._hdr_start < rel_at
                  and not (event and event[0] == "max")):
                rel_at = self._hdr_start
        self.body_bytes += count
        if self.debug and count:
            self._d("DATA - body len:%d, total:%d" % (count, self.body_bytes))
        kind = event[0] if event else None
        if kind == "end":
            self._take_client(stop + 3 - 2)
            self._release(CLIENT, self._coff)
            self._hdr = None
            self._go(COMMAND)
            self.commands += 1
            self._d("End Of Data - index:%d, body len:%d" % (self.commands, self.body_bytes))
            self._push(b"EOD")
            return True
        if kind is not None:
            self._release(CLIENT, rel_at)
            if kind == "smuggle":
                self._alert(4, "SMTP_BARE_LF",
                            "Bare CR or LF next to end of data (SMTP smuggling) from initiator %s"
                            " -- session reset" % self._cli)
                self._reset("SMTP smuggling: bare CR/LF at end of data")
            elif kind == "max":
                self._alert(4, "SMTP_MAX_DATA",
                            "max-data %d bytes exceeded by initiator %s -- session reset"
                            % (self.max_data, self._cli))
                self._reset("max-data exceeded")
            elif kind == "long":
                # fail closed: a header line too long to hold for the
                # Majordomo check is not passed unchecked
                self._alert(4, "SMTP_HEADER_TOO_LONG",
                            "Message header line longer than %d bytes from initiator %s"
                            " -- session reset" % (MAX_HEADER_LINE, self._cli))
                self._reset("header line too long to check")
            else:
                self._sig("TCP_MAJORDOMO_EXEC_BUG", "Majordomo Execute Attack")
                self._reset("Majordomo execute attack")
            return False
        self._prev2 = w[stop - 2:stop]
        self._take_client(stop - 2)
        rel = self._coff
        if self._hdr is not None and self._hdr_start < rel:
            rel = self._hdr_start
        self._release(CLIENT, rel)
        return False

    def _headers(self, w, start, stop, base):
        """Check header lines in w[start:stop]; return ``(offset, kind)``
        of a refused line (its stream offset; kind ``"majordomo"`` or
        ``"long"``), else None.  Leaves _hdr_start at the current
        (incomplete) header line.

        A line (LF included) of up to MAX_HEADER_LINE bytes is checked;
        a longer one -- complete, or MAX_HEADER_LINE bytes without an LF --
        cannot be held for the check and is refused (fail closed), whatever
        the segmentation.  A folded continuation line (one that starts with
        a space or a tab) belongs to the field before it: the continuation
        of a ``Reply-To`` is checked as ``Reply-To``."""
        hdr = self._hdr
        while start < stop:
            room = MAX_HEADER_LINE - len(hdr)   # bytes the line may still take
            j = w.find(b"\n", start, min(stop, start + room))
            if j < 0:
                if stop - start < room:
                    hdr += w[start:stop]
                    return None
                hdr += w[start:start + room]    # the limit reached without LF
                line = bytes(hdr)
                if self._reply_to(line) and (b"`" in line or b"|" in line):
                    return self._hdr_start, "majordomo"
                return self._hdr_start, "long"
            hdr += w[start:j + 1]
            line_start = self._hdr_start
            self._hdr_start = base + j + 1
            line = bytes(hdr)
            hdr.clear()
            start = j + 1
            if line == b"\r\n" or line == b"\n":
                # end of the header; only an empty line ends it for cbac
                # ("\r\r\n" may not end it for the list software)
                self._hdr = None
                return None
            if self._reply_to(line) and (b"`" in line or b"|" in line):
                return line_start, "majordomo"
        return None

    def _reply_to(self, line):
        """Whether the header line ``line`` is (or continues) a Reply-To
        field; records which field a following continuation belongs to."""
        if line[:1] in (b" ", b"\t"):
            return self._hdr_rt          # folded: the field before it
        self._hdr_rt = _REPLY_TO.match(line) is not None
        return self._hdr_rt

    def _bdat(self):
        buf = self._cbuf
        take = min(len(buf), self._bdat_left)
        room = self.max_data - self.body_bytes
        if take > room:
            self.body_bytes += room
            self._release(CLIENT, self._coff + room)
            self._alert(4, "SMTP_MAX_DATA",
                        "max-data %d bytes exceeded by initiator %s -- session reset"
                        % (self.max_data, self._cli))
            self._reset("max-data exceeded")
            return False
        if take:
            self._take_client(take)
            self._bdat_left -= take
            self.body_bytes += take
            self._release(CLIENT, self._coff)
            self._d("BDAT - chunk len:%d, left:%d, total:%d"
                    % (take, self._bdat_left, self.body_bytes))
        if self._bdat_left == 0:
            self._go(COMMAND)
            return True
        return False

    # -- server direction ---------------------------------------------------

    def _server(self):
        buf = self._sbuf
        while not self.dead and not self.opaque:
            if self._sdiscard:
                i = buf.find(b"\n")
                n = len(buf) if i < 0 else i + 1
                del buf[:n]
                self._soff += n
                self._release(SERVER, self._soff)
                if i < 0:
                    return
                self._sdiscard = False
                continue
            i = buf.find(b"\n", self._sscan)
            if (i < 0 and len(buf) >= MAX_REPLY_LINE) or i >= MAX_REPLY_LINE:
                self._bad_reply("line longer than %d bytes" % MAX_REPLY_LINE)
                self._sdiscard = True
                self._sscan = 0
                continue
            if i < 0:
                self._sscan = len(buf)
                return
            line = bytes(buf[:i + 1])
            off = self._soff
            del buf[:i + 1]
            self._soff += i + 1
            self._sscan = 0
            self._reply_line(line, off, 2 if i > 0 and line[-2] == 13 else 1)
            self._release(SERVER, self._soff)

    def _bad_reply(self, why):
        self.bad_replies += 1
        self._d("OTHER REPLY - invalid reply (%s)" % why)
        if self.bad_replies <= MAX_REPLY_ALERTS:
            self._alert(4, "SMTP_INVALID_REPLY",
                        "Invalid SMTP reply from responder %s" % self._srv)

    def _reply_line(self, line, off, term):
        content = line[:len(line) - term]
        head = self._pending[0] if self._pending else None
        index = self.reply_lines
        self.reply_lines += 1
        self._d("reply_type %s" % ("OTHERS" if head in (None, b"OTHER", b"GREETING", b"EOD")
                                   else head.decode()))
        m = _REPLY.match(content)
        if m is None or b"\r" in content:
            self._bad_reply("not ddd[ -]text")
            self._d("End Of Reply Line - index:%d ,len:%d" % (index, len(line)))
            return
        code = int(m.group(1))
        cont = m.group(2) == b"-"
        self._d("OTHER REPLY - Reply len: %d, match_len:%d, reply_code:%d"
                % (len(line), len(line), code))
        if self._rcode is not None and code != self._rcode:
            self._bad_reply("code %d inside a %d reply" % (code, self._rcode))
        first = self._rcode is None
        if head == b"EHLO" and self.esmtp:
            if first:
                self._ext = set()
            elif code == 250:
                self._ehlo_line(content, off)
        self._d("End Of Reply Line - index:%d ,len:%d" % (index, len(line)))
        if cont:
            self._rcode = code if first else self._rcode
            return
        self._rcode = None
        self.replies += 1
        if head is None:
            self._d("OTHER REPLY - reply with no outstanding command")
            return
        self._pending.popleft()
        if head == b"GREETING" and self.state is GREETING:
            self._go(COMMAND)
        elif head in _GATES:
            self._gate_answered(head, code)

    def _ehlo_line(self, content, off):
        text = content[4:]
        word = text.lstrip(b" \t").split(None, 1)
        kw = word[0].upper().split(b"=", 1)[0] if word else b""
        if kw in EHLO_KEYWORDS or (kw == b"STARTTLS" and self.starttls_allow):
            self._ext.add(kw)
            return
        self._mask(SERVER, off + 4, len(text), b"X")
        self._d("EHLO REPLY - masked keyword %s, len:%d" % (_show(kw), len(text)))

    def _gate_answered(self, kind, code):
        self._blocked = False
        if kind == b"DATA":
            if code == 354:
                self._enter_body()
                self._d("DATA - 354, message body follows")
        elif kind == b"STARTTLS":
            if code == 220:
                if self._cbuf:
                    self._alert(4, "SMTP_STARTTLS_INJECTION",
                                "Plain-text data pipelined after STARTTLS from initiator %s"
                                " -- session reset" % self._cli)
                    self._reset("command injection after STARTTLS")
                    return
                self._alert(6, "SMTP_STARTTLS",
                            "STARTTLS from initiator %s to responder %s, inspection stopped"
                            % (self._cli, self._srv))
                self._d("STARTTLS - 220, session is now opaque")
                self._go(TLS)
                return
        else:                      # AUTH / SASL
            target = AUTH if code == 334 else COMMAND
            if self.state is not target:
                self._go(target)
        self._client()


@provider(IInspectorFactory)
def smtp_factory(ctx):
    """The ``smtp`` inspector factory."""
    return SmtpInspector(ctx, esmtp=False)


smtp_factory.name = "smtp"


@provider(IInspectorFactory)
def esmtp_factory(ctx):
    """The ``esmtp`` inspector factory."""
    return SmtpInspector(ctx, esmtp=True)


esmtp_factory.name = "esmtp"

FACTORIES = {"smtp": smtp_factory, "esmtp": esmtp_factory}
