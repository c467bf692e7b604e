"""IMAP inspection (``ip inspect name NAME imap [reset] [secure-login]``, RFC 3501,
RFC 2595 STARTTLS, RFC 7888 literals).

A sans-I/O stream inspector behind :mod:`cbac.inspect.api`.  Client
commands (``TAG SP COMMAND ...``) are judged whole, whatever the
segmentation; one command is outstanding at a time (what follows is held
until its tagged reply), so the state is always known.  Literals
(``{n}`` and ``{n+}``) are followed on both sides: their bytes are never
read as commands or replies.  A refused command has its command word
masked with same-length ``x`` so the server answers ``TAG BAD``, the
protocol's error, to the client's own tag; with ``reset`` the session is
reset instead.

Transitions (command -> tagged reply):

=================  ==============================================  =========  ===============
state              allowed commands                                reply      next state
=================  ==============================================  =========  ===============
GREETING           (client bytes held)                             * OK       NOT_AUTHENTICATED
                                                                   * PREAUTH  AUTHENTICATED
NOT_AUTHENTICATED  CAPABILITY NOOP LOGOUT STARTTLS AUTHENTICATE    OK to      AUTHENTICATED
                   LOGIN ID                                        LOGIN/AUTH
NOT_AUTHENTICATED  STARTTLS                                        OK         TLS (opaque)
AUTHENTICATED      the above but STARTTLS/LOGIN/AUTHENTICATE,      OK to      SELECTED
                   SELECT EXAMINE CREATE DELETE RENAME SUBSCRIBE   SELECT/
                   UNSUBSCRIBE LIST LSUB STATUS APPEND NAMESPACE   EXAMINE
                   ENABLE IDLE GETQUOTA GETQUOTAROOT GETACL
                   MYRIGHTS
SELECTED           AUTHENTICATED's, CHECK CLOSE EXPUNGE SEARCH     OK to      AUTHENTICATED
                   FETCH STORE COPY MOVE UID UNSELECT              CLOSE/
                                                                   UNSELECT
any                LOGOUT                                          OK         LOGOUT
=================  ==============================================  =========  ===============

A failed SELECT/EXAMINE leaves SELECTED (RFC 3501 §6.3.1).  ``+``
continuations: for a synchronizing literal the client's literal bytes
pass after it; for AUTHENTICATE the next client line is a SASL response;
for IDLE the next client line must be ``DONE``.

Refused (``%FW-3-IMAP_INVALID_COMMAND``): an unknown command, one in the
wrong state, a malformed tag, a NUL, a line longer than
:data:`MAX_LINE`; a refused command carrying a literal resets the session
(its bytes could otherwise be read as commands).  ``secure-login``:
LOGIN and AUTHENTICATE are refused outside TLS
(``%FW-5-IMAP_NON_SECURE_LOGIN``).  A server reply line longer than
:data:`MAX_REPLY_LINE` or a tagged reply to another tag resets the session.
"""

from __future__ import annotations

import re

from zope.interface import implementer, provider

from cbac.inspect.fsm import check_table
from cbac.inspect.heldcmd import HeldCommandInspector, show_bytes
from cbac.inspect.api import Edit, IInspectorFactory, IStreamInspector, alert

MAX_LINE = 8192
MAX_REPLY_LINE = 65536
MAX_LITERAL = 64 << 20
MAX_HOLD = 1 << 20

# The RFC 9051 states; every change goes through _go (an illegal one raises:
# the engine resets).  STARTTLS (opaque) and a reset are flags outside the table.
GREETING, NOT_AUTH, AUTH, SELECTED, LOGOUT = (
    "GREETING", "NOT_AUTHENTICATED", "AUTHENTICATED", "SELECTED", "LOGOUT")
TRANSITIONS = check_table({
    GREETING: {NOT_AUTH, AUTH, LOGOUT},        # * OK / * PREAUTH / * BYE
    NOT_AUTH: {AUTH, LOGOUT},                  # OK to LOGIN/AUTHENTICATE; to LOGOUT
    AUTH: {SELECTED, LOGOUT},                  # OK to SELECT/EXAMINE; to LOGOUT
    SELECTED: {AUTH, LOGOUT},                  # CLOSE/UNSELECT, a failed SELECT; LOGOUT
    LOGOUT: set(),
})

_ANY = frozenset(b"CAPABILITY NOOP LOGOUT ID".split())
_AUTHED = _ANY | frozenset(b"SELECT EXAMINE CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST "
                           b"LSUB STATUS APPEND NAMESPACE ENABLE IDLE GETQUOTA GETQUOTAROOT "
                           b"GETACL MYRIGHTS".split())
ALLOWED = {
    GREETING: frozenset(),
    NOT_AUTH: _ANY | frozenset(b"STARTTLS AUTHENTICATE LOGIN".split()),
    AUTH: _AUTHED,
    SELECTED: _AUTHED | frozenset(b"CHECK CLOSE EXPUNGE SEARCH FETCH STORE COPY MOVE UID "
                                  b"UNSELECT".split()),
    LOGOUT: frozenset(),
}
LOGIN_VERBS = frozenset((b"LOGIN", b"AUTHENTICATE"))

_TAG = re.compile(rb"[!#$&'*+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]{1,64}\Z")
_LITERAL = re.compile(rb"\{(\d{1,10})(\+?)\}\r?\n\Z")


@implementer(IStreamInspector)
class ImapInspector(HeldCommandInspector):
    LABEL = "IMAP"
    TRANSITIONS = TRANSITIONS
    name = "imap"

    def __init__(self, ctx):
        self._init_rule(ctx)
        self.state = GREETING
        self.pending = b"*"               # tag awaited (b"*": the greeting)
        self.verb = b""
        self._cont = None                 # what a "+" continuation allows: literal/sasl/idle
        self._c_lit = 0                   # client literal bytes to pass
        self._c_wait = False              # sync literal: waiting for "+"
        self._c_first = True              # next client line starts a command
        self._cbuf = bytearray()
        self._coff = 0
        self._s_lit = 0
        self._sbuf = bytearray()
        self._s_cont_line = False          # the next server line continues one with a literal
        self._edits = []
        self._log = []
        self.dead = False
        self.opaque = False
        self.reason = ""
        self.commands = 0
        self.refused = 0


    def _alert(self, sev, mnemonic, text):
        self._log.append(alert(sev, mnemonic, text))

    # -- client ----------------------------------------------------------------

    def _take(self, n):
        del self._cbuf[:n]
        self._coff += n

    def _client(self):
        while not self.dead:
            if self._c_lit:
                n = min(self._c_lit, len(self._cbuf))
                if not n:
                    break
                self._take(n)
                self._c_lit -= n
                continue
            if self._c_wait or (self._c_first and self.pending is not None
                                and self._cont is None):
                break                      # held until the server answers
            i = self._cbuf.find(b"\n", 0, MAX_LINE)
            if i < 0:
                if len(self._cbuf) >= MAX_LINE:
                    self._invalid(None, 0, "line longer than %d" % MAX_LINE, force_reset=True)
                break
            line = bytes(self._cbuf[:i + 1])
            off = self._coff
            self._take(i + 1)
            self._line(line, off)
        if len(self._cbuf) > MAX_HOLD and not self.dead:
            self._reset("client data pipelined before the reply")

    def _line(self, line, off):
        lit = _LITERAL.search(line)
        if self._cont is not None and self._c_first:
            kind, self._cont = self._cont, None
            if kind == b"IDLE" and line.rstrip(b"\r\n").upper() != b"DONE":
                self._invalid(line, off, "IDLE ended without DONE", force_reset=True)
                return
            if lit:
                self._invalid(line, off, "literal in a continuation", force_reset=True)
            return                          # SASL response / DONE: the command goes on
        if b"\0" in line:
            self._invalid(line, off, "NUL in command", force_reset=bool(lit))
            return
        if self._c_first:
            self.commands += 1
            parts = line.rstrip(b"\r\n").split(b" ", 2)
            if len(parts) < 2 or not _TAG.match(parts[0]) or parts[0] == b"*" \
                    or parts[0] == b"+":
                self._invalid(line, off, "malformed tag", force_reset=True)
                return
            tag, verb = parts[0], parts[1].upper()
            if verb == b"UID" and len(parts) > 2:
                sub = parts[2].split(b" ", 1)[0].upper()
                if sub not in (b"FETCH", b"STORE", b"COPY", b"MOVE", b"SEARCH", b"EXPUNGE"):
                    self._refuse(line, off, tag, verb, "UID %s" % show_bytes(sub), lit)
                    return
            if verb not in ALLOWED[self.state]:
                self._refuse(line, off, tag, verb, "%s in state %s" % (show_bytes(verb), self.state),
                             lit)
                return
            if self.secure_login and verb in LOGIN_VERBS:
                self.refused += 1
                self._alert(5, "IMAP_NON_SECURE_LOGIN",
                            "LOGON IMAP command from initiator (%s): %s refused outside TLS"
                            % (self._cli, show_bytes(verb)))
                self._mask(line, off, tag, verb, lit)
                return
            self.pending, self.verb = tag, verb
        if lit:
            n = int(lit.group(1))
            if n > MAX_LITERAL:
                self._invalid(line, off, "literal of %d bytes" % n, force_reset=True)
                return
            self._c_lit = n
            self._c_wait = not lit.group(2)
            self._c_first = False
        else:
            self._c_first = True

    def _refuse(self, line, off, tag, verb, why, lit):
        self.refused += 1
        self._alert(3, "IMAP_INVALID_COMMAND", "Invalid IMAP command from initiator (%s): %s%s"
                    % (self._cli, why, " -- session reset" if self.reset_opt or lit else ""))
        if self.reset_opt or lit:
            self._coff = off
            self._reset(why)
            return
        self._mask(line, off, tag, verb, lit)

    def _mask(self, line, off, tag, verb, lit):
        if lit:
            self._coff = off
            self._reset("refused command with a literal")
            return
        if self.reset_opt:
            self._coff = off
            self._reset("refused command")
            return
        start = off + len(tag) + 1
        self._edits.append(Edit(start, len(verb), b"x" * len(verb)))
        self.pending, self.verb = tag, b"REFUSED"
        self._c_first = True

    def _invalid(self, line, off, why, force_reset=False):
        self.refused += 1
        self._alert(3, "IMAP_INVALID_COMMAND", "Invalid IMAP command from initiator (%s): %s"
                    " -- session reset" % (self._cli, why))
        self._coff = off if line is not None else self._coff
        self._reset(why)

    # -- server ----------------------------------------------------------------

    def _server(self, data):
        while data and not self.dead and not self.opaque:
            if self._s_lit:
                n = min(self._s_lit, len(data))
                self._s_lit -= n
                data = data[n:]
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
            lit = _LITERAL.search(line)
            if lit:
                self._s_lit = int(lit.group(1))
            if self._s_cont_line:
                self._s_cont_line = bool(lit)
                continue                    # the rest of a line after a literal
            self._s_cont_line = bool(lit)
            self._reply(line)
        if not self.dead and not self.opaque:
            self._client()

    def _reply(self, line):
        if line.startswith(b"+"):
            if self._c_wait:
                self._c_wait = False         # the client's literal may come
            elif self.verb in (b"AUTHENTICATE", b"IDLE") and self._c_first:
                self._cont = self.verb if self.verb == b"IDLE" else b"SASL"
            else:
                self._reset("unexpected continuation")
            return
        if line.startswith(b"* "):
            if self.pending == b"*":
                word = line[2:].split(b" ", 1)[0].rstrip(b"\r\n").upper()
                if word == b"OK":
                    self._go(NOT_AUTH)
                elif word == b"PREAUTH":
                    self._go(AUTH)
                elif word == b"BYE":
                    self._go(LOGOUT)
                else:
                    self._reset("malformed greeting")
                    return
                self.pending = None
            return
        parts = line.split(b" ", 2)
        if self.pending in (None, b"*") or parts[0] != self.pending or len(parts) < 2:
            self._alert(3, "IMAP_INVALID_COMMAND", "Unexpected IMAP reply to initiator (%s) "
                        "-- session reset" % self._cli)
            self._reset("tagged reply to no outstanding command")
            return
        status = parts[1].rstrip(b"\r\n").upper()
        v = self.verb
        if status == b"OK":
            if v in LOGIN_VERBS:
                self._go(AUTH)
            elif v in (b"SELECT", b"EXAMINE"):
                self._go(SELECTED)
            elif v in (b"CLOSE", b"UNSELECT"):
                self._go(AUTH)
            elif v == b"LOGOUT":
                self._go(LOGOUT)
            elif v == b"STARTTLS":
                self._alert(6, "IMAP_STARTTLS", "STARTTLS from initiator (%s), inspection "
                            "stopped" % self._cli)
                self.opaque = True
        elif status in (b"NO", b"BAD"):
            if v in (b"SELECT", b"EXAMINE") and self.state == SELECTED:
                self._go(AUTH)
        else:
            self._reset("malformed tagged reply")
            return
        self.pending, self.verb = None, b""
        self._cont = None
        self._c_wait = False


@provider(IInspectorFactory)
def factory(ctx):
    return ImapInspector(ctx)


factory.name = "imap"

__all__ = ["ImapInspector", "factory", "ALLOWED"]
