"""The part the POP3 and IMAP inspectors share: a client-to-server command
stream held until each command is judged, a server stream parsed reply by
reply, and the verdict built from what the subclass decided.

A subclass sets ``LABEL`` ("POP3", "IMAP") and ``TRANSITIONS`` (its state
table; every change of ``state`` goes through :meth:`_go`), initialises ``state``,
``_cbuf``, ``_coff``, ``_edits``, ``_log``, ``dead``, ``opaque``,
``reason``, ``commands``, ``refused``, and implements ``_client()`` (judge
the held bytes in ``_cbuf``, advance ``_coff``) and ``_server(data)``.
"""

from __future__ import annotations

from cbac.inspect.api import CLIENT, Verdict
from cbac.inspect.fsm import go
from cbac.packet.view import ip_str


def show_bytes(b) -> str:
    """The first 40 bytes of a line, printable, for log and debug lines."""
    return "".join(c if " " <= c <= "~" else "." for c in bytes(b[:40]).decode("latin-1"))


class HeldCommandInspector:
    LABEL = "?"
    TRANSITIONS: dict = {}

    def _init_rule(self, ctx):
        """What POP3 and IMAP take from the connection and its rule line."""
        self.ctx = ctx
        rule = ctx.rule
        self.reset_opt = bool(getattr(rule, "reset", False))
        self.secure_login = bool(getattr(rule, "secure_login", False))
        self._cli = "%s:%d" % (ip_str(ctx.client_addr), ctx.client_port)

    def _go(self, new):
        """The one way to change state: along TRANSITIONS only (staying
        in a state is no change)."""
        if new != self.state:
            self.state = go(self.LABEL, self.TRANSITIONS, self.state, new)

    def data_received(self, direction, data):
        if self.opaque:
            return Verdict(opaque=True)
        self._log = []
        if not self.dead:
            if direction == CLIENT:
                self._cbuf += data
                self._client()
            else:
                self._server(bytes(data))
        return self._verdict(direction)

    def connection_closed(self, direction):
        return None

    def state_summary(self):
        st = "TLS" if self.opaque else ("RESET" if self.dead else self.state)
        return "%s state: %s, commands %d, refused %d" % (self.LABEL, st, self.commands,
                                                          self.refused)

    def _verdict(self, direction):
        if self.opaque:
            return Verdict(opaque=True, log=self._log)
        v = Verdict(log=self._log)
        if direction == CLIENT:
            v.release = self._coff
            v.edits, self._edits = self._edits, []
        if self.dead:
            v.reset = True
            v.reason = self.reason
        return v

    def _reset(self, why):
        self.dead = True
        self.reason = "%s: %s" % (self.LABEL.lower(), why)
