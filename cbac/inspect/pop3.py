"""POP3 inspection (``ip inspect name NAME pop3 [reset] [secure-login]``, RFC 1939,
RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).

A sans-I/O stream inspector behind :mod:`cbac.inspect.api`.  Client
command lines are judged whole, whatever the segmentation: an incomplete
line is held; a command is not released while the previous one is
unanswered (no pipelining: what follows a command is read only once the
reply says how to read it), so the inspector always knows the session's
state.  A refused command is masked (same-length ``x``, line end kept):
the server answers ``-ERR``, the protocol's error, and the client sees
it.  With ``reset`` the session is reset instead.

Transitions (client command -> server reply):

=============  ======================================  ===================  ==============
state          allowed commands                        reply                next state
=============  ======================================  ===================  ==============
GREETING       (none: client bytes held)               +OK greeting         AUTHORIZATION
AUTHORIZATION  USER PASS APOP AUTH CAPA STLS QUIT      +OK to PASS/APOP/    TRANSACTION
               NOOP                                    AUTH
AUTHORIZATION  AUTH                                    "+ " challenge       AUTHORIZATION
                                                                            (next client
                                                                            line is SASL)
AUTHORIZATION  STLS                                    +OK                  TLS (opaque:
                                                                            not inspected)
TRANSACTION    STAT LIST RETR DELE NOOP RSET TOP UIDL  +OK / -ERR           TRANSACTION
               CAPA QUIT
any            QUIT                                    +OK                  UPDATE
=============  ======================================  ===================  ==============

Any other command, a command in the wrong state, a line longer than
:data:`MAX_LINE` or with a NUL, is refused (``%FW-3-POP3_INVALID_COMMAND``).
``secure-login``: USER, PASS, APOP and AUTH are refused outside TLS
(``%FW-5-POP3_NON_SECURE_LOGIN``), so only a client that did STLS first
can log in (after STLS cbac sees only ciphertext).  A server that sends a
reply nobody asked for, a status line that is not ``+OK``/``-ERR``
(or ``+`` during AUTH), or a status line longer than
:data:`MAX_REPLY_LINE` resets the session (fail closed).  Multi-line
replies (CAPA, LIST and UIDL without argument, RETR, TOP) stream through
until their ``.`` line.
"""

from __future__ import annotations

from zope.interface import implementer, provider

from cbac.inspect.fsm import check_table
from cbac.inspect.heldcmd import HeldCommandInspector, show_bytes
from cbac.inspect.api import Edit, IInspectorFactory, IStreamInspector, alert

#: longest command line, CRLF included (RFC 2449 §4: 255 octets)
MAX_LINE = 255
#: longest SASL line after an AUTH challenge
MAX_SASL_LINE = 12288
#: longest status line (RFC 2449: 512)
MAX_REPLY_LINE = 512
#: most client bytes held while a reply is outstanding
MAX_HOLD = 65536

# The RFC 1939 states; every change goes through _go (an illegal one raises:
# the engine resets).  STLS (opaque) and a reset are flags outside the table.
GREETING, AUTHORIZATION, TRANSACTION, UPDATE = "GREETING", "AUTHORIZATION", "TRANSACTION", "UPDATE"
TRANSITIONS = check_table({
    GREETING: {AUTHORIZATION},                 # +OK greeting
    AUTHORIZATION: {TRANSACTION, UPDATE},      # +OK to PASS/APOP/AUTH; to QUIT
    TRANSACTION: {UPDATE},                     # +OK to QUIT
    UPDATE: set(),
})

ALLOWED = {
    AUTHORIZATION: frozenset(b"USER PASS APOP AUTH CAPA STLS QUIT NOOP".split()),
    TRANSACTION: frozenset(b"STAT LIST RETR DELE NOOP RSET TOP UIDL CAPA QUIT".split()),
    GREETING: frozenset(),
    UPDATE: frozenset(),
}
LOGIN_VERBS = frozenset(b"USER PASS APOP AUTH".split())


@implementer(IStreamInspector)
class Pop3Inspector(HeldCommandInspector):
    LABEL = "POP3"
    TRANSITIONS = TRANSITIONS
    name = "pop3"

    def __init__(self, ctx):
        self._init_rule(ctx)
        self.state = GREETING
        self._pending = b"GREETING"        # the command whose reply is awaited
        self._pending_multi = False
        self._sasl = False                 # next client line is a SASL response
        self._cbuf = bytearray()
        self._coff = 0
        self._sbuf = bytearray()           # partial status line
        self._body = False                 # inside a multi-line reply
        self._tail = b""
        self._edits = []
        self._log = []
        self.dead = False
        self.opaque = False
        self.reason = ""
        self.commands = 0
        self.refused = 0

    # -- internals -----------------------------------------------------------

    def _client(self):
        while not self.dead and self._pending is None:
            limit = MAX_SASL_LINE if self._sasl else MAX_LINE
            i = self._cbuf.find(b"\n", 0, limit)
            if i < 0:
                if len(self._cbuf) >= limit:
                    self._alert(3, "POP3_INVALID_COMMAND",
                                "Invalid POP3 command from initiator (%s): line longer than %d"
                                " -- session reset" % (self._cli, limit))
                    self._reset("command line too long")
                return
            line = bytes(self._cbuf[:i + 1])
            off = self._coff
            del self._cbuf[:i + 1]
            self._coff += i + 1
            self._line(line, off)
        if len(self._cbuf) > MAX_HOLD:
            self._reset("client data pipelined before the reply")

    def _line(self, line, off):
        if self._sasl:
            self._sasl = False
            self._pending = b"AUTH"
            return
        self.commands += 1
        content = line.rstrip(b"\r\n")
        verb = content.split(b" ", 1)[0].upper()
        bad = None
        if b"\0" in content or b"\r" in content:
            bad = "NUL or bare CR"
        elif verb not in ALLOWED[self.state]:
            bad = "%s in state %s" % (show_bytes(verb), self.state)
        elif self.secure_login and verb in LOGIN_VERBS:
            self.refused += 1
            self._alert(5, "POP3_NON_SECURE_LOGIN",
                        "LOGON POP3 command from initiator (%s): %s refused outside TLS"
                        % (self._cli, show_bytes(verb)))
            self._refuse(line, off, "non-secure login")
            return
        if bad is not None:
            self.refused += 1
            self._alert(3, "POP3_INVALID_COMMAND", "Invalid POP3 command from initiator "
                        "(%s): %s%s" % (self._cli, bad, " -- session reset" if self.reset_opt
                                        else ""))
            self._refuse(line, off, bad)
            return
        args = content[len(verb):].strip()
        self._pending = verb
        self._pending_multi = verb in (b"CAPA", b"RETR", b"TOP") or (
            verb in (b"LIST", b"UIDL") and not args)

    def _refuse(self, line, off, why):
        if self.reset_opt:
            self._coff = off                    # the refused line is never released
            self._reset(why)
            return
        n = len(line.rstrip(b"\r\n")) or 1
        n = min(n, len(line))
        self._edits.append(Edit(off, n, b"x" * n))
        self._pending = b"REFUSED"              # the server answers -ERR
        self._pending_multi = False

    def _server(self, data):
        while data and not self.dead and not self.opaque:
            if self._body:
                buf = self._tail + data
                i = buf.find(b"\n.\r\n")
                if i < 0:
                    self._tail = buf[-4:]
                    return
                used = i + 4 - len(self._tail)
                data = data[used:]
                self._body = False
                self._tail = b""
                self._reply_done()
                continue
            i = data.find(b"\n")
            if i < 0:
                self._sbuf += data
                if len(self._sbuf) > MAX_REPLY_LINE:
                    self._reset("reply line too long")
                return
            self._sbuf += data[:i + 1]
            data = data[i + 1:]
            line = bytes(self._sbuf)
            self._sbuf = bytearray()
            if len(line) > MAX_REPLY_LINE:
                self._reset("reply line too long")
                return
            self._status(line)
        if not self.dead and not self.opaque:
            self._client()

    def _status(self, line):
        p = self._pending
        if p is None:
            self._alert(3, "POP3_INVALID_COMMAND", "Unexpected POP3 reply to initiator (%s) "
                        "-- session reset" % self._cli)
            self._reset("reply without a command")
            return
        ok = line.startswith(b"+OK")
        if p == b"AUTH" and line[:1] == b"+" and not ok:
            self._sasl = True                   # SASL challenge
            self._pending = None
            return
        if not ok and not line.startswith(b"-ERR"):
            self._reset("malformed reply")
            return
        if ok:
            if p == b"GREETING":
                self._go(AUTHORIZATION)
            elif p in (b"PASS", b"APOP", b"AUTH"):
                self._go(TRANSACTION)
            elif p == b"QUIT":
                self._go(UPDATE)
            elif p == b"STLS":
                self._alert(6, "POP3_STLS", "STLS from initiator (%s), inspection stopped"
                            % self._cli)
                self.opaque = True
                self._pending = None
                return
            if self._pending_multi:
                self._body = True
                self._tail = b"\n"
                return
        self._reply_done()

    def _reply_done(self):
        self._pending = None
        self._pending_multi = False

    def _alert(self, sev, mnemonic, text):
        self._log.append(alert(sev, mnemonic, text))


@provider(IInspectorFactory)
def factory(ctx):
    return Pop3Inspector(ctx)


factory.name = "pop3"

__all__ = ["Pop3Inspector", "factory", "ALLOWED"]
