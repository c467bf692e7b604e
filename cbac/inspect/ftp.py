"""FTP control-channel inspection (``ip inspect name NAME ftp``).

A sans-I/O state machine behind :mod:`cbac.inspect.api`.  It reads the
control connection in both directions line by line, whatever the TCP
segmentation, and for every data-channel negotiation

* ``PORT h1,h2,h3,h4,p1,p2`` and ``EPRT |1|a.b.c.d|port|`` from the client,
* ``227`` (PASV) and ``229`` (EPSV) replies from the server,

checks it (IOS ``%FW-3-FTP_*`` alerts), rewrites the endpoint for NAT
(``ctx.nat_map``; the edit may change the line's length) and opens exactly
one pinhole (:class:`~cbac.inspect.api.Expectation`) for the data
connection.  See ``docs/ftp-http.md`` for exactly what is checked and
what the Expectation fields mean under NAT.

Refusal policy: a refused client command is **masked** (same-length
``x``s, the line terminator kept) so the server answers ``500`` and the
client reports an error; a refused server reply is rewritten, same
length, into ``425 ...`` (can't open data connection).  No pinhole is
opened and the session stays up.  Sequence numbers never move for a
refusal; only a NAT rewrite changes lengths.
"""

from __future__ import annotations

import re

from zope.interface import implementer, provider

from cbac.inspect.api import (CLIENT, SERVER, Edit, Expectation,
                              IInspectorFactory, IStreamInspector, Verdict, alert)
from cbac.inspect.fsm import check_table, go

#: Lifetime of a data-channel pinhole (seconds) if no connection uses it.
DATA_TIMEOUT = 30.0

#: Longest control line held while waiting for its end.  Data-channel
#: commands and 227/229 replies are short (a PORT line is at most 30
#: bytes); a held candidate line longer than this is masked and released.
MAX_HELD_LINE = 512

#: A line not held is kept whole in memory up to this size; beyond it only
#: its first _KEEP bytes are kept (bounded memory, no quadratic rescans).
_KEEP_LIMIT = 1024
_KEEP = 64

_DATA_VERBS = (b"PORT", b"EPRT", b"PASV", b"EPSV")
#: RFC 1639 long-address forms: not inspected, so refused (masked, alert)
_LONG_VERBS = (b"LPRT", b"LPSV")
_HELD_VERBS = _DATA_VERBS + _LONG_VERBS
_REPLY_CANDIDATES = (b"227", b"228", b"229")

_PORT_ARG = re.compile(rb"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})\Z")
_PASV_NUMS = re.compile(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_EPSV_ARG = re.compile(rb"\(([\x21-\x7e])\1\1(\d{1,5})\1\)")
_DOTTED = re.compile(rb"(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\Z")
_REPLY = re.compile(rb"([1-5]\d\d)([ -]|\Z)")

# Telnet command sequences (RFC 854) a server strips from a command line:
# IAC IAC (a literal 0xff), IAC WILL/WONT/DO/DONT option, IAC cmd.
_IAC = re.compile(rb"\xff(?:[\xfb-\xfe].|[\xf0-\xfa\xff])", re.S)


def ntoa(addr: int) -> str:
    return "%d.%d.%d.%d" % ((addr >> 24) & 255, (addr >> 16) & 255,
                            (addr >> 8) & 255, addr & 255)


def _normalize(content: bytes) -> bytes:
    """What a server makes of a command line: Telnet sequences removed,
    leading blanks ignored."""
    if b"\xff" in content:
        content = _IAC.sub(lambda m: b"\xff" if m.group(0) == b"\xff\xff" else b"", content)
    return content.lstrip(b" \t")


_BLANK = re.compile(rb"[ \t]")


def _verb(norm: bytes) -> bytes:
    return _BLANK.split(norm, 1)[0].upper()


def _could_be(prefix: bytes, words) -> bool:
    """True if a line starting with ``prefix`` may turn into one of ``words``."""
    p = prefix[:4].upper()
    return any(w.startswith(p) or p.startswith(w) for w in words)


class _Dir:
    __slots__ = ("buf", "start", "fed", "released", "masking", "skip")

    def __init__(self):
        self.buf = bytearray()   # the current incomplete line
        self.start = 0           # absolute offset of buf[0]
        self.fed = 0             # bytes fed so far
        self.released = 0        # release point returned so far
        self.masking = False     # masking an overlong line up to its LF
        self.skip = 0            # bytes dropped from the middle of buf's first line


# -- the state machine --------------------------------------------------------
#
# The control connection's login state (what ``show ip inspect sessions
# detail`` prints); every change goes through FtpInspector._go, which refuses
# one this table does not list (fsm.IllegalTransition: the engine resets the
# session).  Data-channel commands (PORT/PASV/EPRT/EPSV) are refused before
# AUTHENTICATED.
#
#   NOT_AUTHENTICATED   at the start and after REIN
#   USER/PASS/ACCT_SENT the client sent that login command, no 230 yet
#   AUTHENTICATED       the server answered 230
#   LOGIN_FAILED        530 to a login command
#   TLS                 234 to AUTH TLS/SSL: the channel is encrypted, no
#                       longer inspected (final)
NOT_AUTHENTICATED, USER_SENT, PASS_SENT, ACCT_SENT, AUTHENTICATED, LOGIN_FAILED, TLS = (
    "not authenticated", "USER sent", "PASS sent", "ACCT sent", "authenticated", "login failed",
    "TLS")
_SENT = {b"USER": USER_SENT, b"PASS": PASS_SENT, b"ACCT": ACCT_SENT}
TRANSITIONS = check_table({
    NOT_AUTHENTICATED: {USER_SENT, PASS_SENT, ACCT_SENT, AUTHENTICATED, LOGIN_FAILED, TLS},
    USER_SENT: {PASS_SENT, ACCT_SENT, NOT_AUTHENTICATED, AUTHENTICATED, LOGIN_FAILED, TLS},
    PASS_SENT: {USER_SENT, ACCT_SENT, NOT_AUTHENTICATED, AUTHENTICATED, LOGIN_FAILED, TLS},
    ACCT_SENT: {USER_SENT, PASS_SENT, NOT_AUTHENTICATED, AUTHENTICATED, LOGIN_FAILED, TLS},
    AUTHENTICATED: {NOT_AUTHENTICATED, TLS},
    LOGIN_FAILED: {USER_SENT, PASS_SENT, ACCT_SENT, NOT_AUTHENTICATED, AUTHENTICATED, TLS},
    TLS: set(),
})


@implementer(IStreamInspector)
class FtpInspector:
    name = "ftp"

    def __init__(self, ctx):
        self.ctx = ctx
        self._dirs = (_Dir(), _Dir())
        self.state = NOT_AUTHENTICATED
        self._shown = NOT_AUTHENTICATED  # the login state shown (kept in TLS)
        self._login_pending = False
        self._multiline = None          # reply code of an open multi-line reply
        self.data_channels = 0          # pinholes opened
        self.refused = 0                # lines refused
        self.rewritten = 0              # lines rewritten for NAT
        self._auth_tls = False          # AUTH TLS/SSL sent, awaiting 234

    @property
    def authenticated(self):
        return self.state is AUTHENTICATED

    @property
    def _opaque(self):
        return self.state is TLS

    def _go(self, new):
        """The one way to change state: along TRANSITIONS only (staying
        in a state is no change)."""
        if new is not self.state:
            self.state = go("FTP", TRANSITIONS, self.state, new)
            if new is not TLS:
                self._shown = new

    # -- IStreamInspector -------------------------------------------------

    def data_received(self, direction, data):
        v = Verdict()
        if self._opaque:
            return v
        d = self._dirs[direction]
        if not data:
            v.release = d.released
            return v
        d.buf += data
        d.fed += len(data)
        buf = d.buf
        pos = 0
        n = len(buf)
        while pos < n:
            if d.masking:
                # an overlong line is being masked up to its LF
                nl = buf.find(b"\n", pos)
                end = nl if nl >= 0 else n
                if end > pos:
                    v.edits.append(Edit(d.start + pos, end - pos, b"x" * (end - pos)))
                if nl < 0:
                    pos = n
                    break
                d.masking = False
                pos = nl + 1
                continue
            end = self._line_end(direction, buf, pos)
            if end < 0:
                break
            line = bytes(buf[pos:end])
            off = d.start + pos + (d.skip if pos else 0)
            if len(line) - 1 > MAX_HELD_LINE and self._must_hold(direction, line):
                self._overlong(direction, off, line, v)
            else:
                self._line(direction, line, off, v)
            pos = end
        if pos:
            del buf[:pos]
            d.start += pos + d.skip
            d.skip = 0
        rel = d.fed
        if d.buf and not d.masking and self._must_hold(direction, d.buf):
            if len(d.buf) > MAX_HELD_LINE:
                line = bytes(d.buf)
                self._overlong(direction, d.start, line, v)
                d.start += len(line)
                del d.buf[:]
            else:
                rel = d.start
        elif len(d.buf) > _KEEP_LIMIT:
            # A long line that needs no holding: keep its start (enough to
            # know what it is) and its last byte (a CR that may end it).
            cut = len(d.buf) - _KEEP - 1
            del d.buf[_KEEP:_KEEP + cut]
            d.skip += cut
        if rel > d.released:
            d.released = rel
        v.release = d.released
        if self._opaque:
            # AUTH TLS accepted: the rest of the control channel is TLS
            v.opaque = True
            v.release = None
        return v

    def connection_closed(self, direction):
        """The sender closed: an unterminated last line is judged as it is
        (a server may act on it) and everything is released."""
        if self._opaque:
            return None
        d = self._dirs[direction]
        v = Verdict()
        if d.buf and not d.masking:
            self._line(direction, bytes(d.buf), d.start, v)
        d.start += len(d.buf) + d.skip
        d.skip = 0
        del d.buf[:]
        d.masking = False
        d.released = d.fed
        v.release = d.fed
        return v

    def state_summary(self):
        return "FTP state: %s, data channels %d" % (self._shown, self.data_channels)

    # -- holding ----------------------------------------------------------

    def _must_hold(self, direction, buf):
        if direction == CLIENT:
            norm = _normalize(bytes(buf[:64]))
            # a Telnet sequence still incomplete may be followed by anything
            return norm[:1] == b"\xff" or _could_be(norm, _HELD_VERBS)
        if self._multiline is not None and self._multiline not in (227, 228, 229):
            return False
        return _could_be(bytes(buf[:3]), _REPLY_CANDIDATES)

    def _overlong(self, direction, off, line, v):
        """A line that would be held past MAX_HELD_LINE: mask it (and what
        follows, up to its LF), release it, alert once."""
        d = self._dirs[direction]
        end = off + len(line)
        if line.endswith(b"\n"):
            end -= 1
        else:
            d.masking = True
        start = max(off, d.released)
        if end > start:
            v.edits.append(Edit(start, end - start, b"x" * (end - start)))
        self.refused += 1
        what = "command line" if direction == CLIENT else "reply line"
        self._alert(v, "FTP_MALFORMED", "Overlong %s" % what)
        self._debug(v, "overlong %s (> %d bytes) masked" % (what, MAX_HELD_LINE))

    @staticmethod
    def _line_end(direction, buf, pos):
        """Index after the end of the line starting at ``pos``, or -1.

        Replies end at LF.  Commands end at LF, and also at a bare CR (not
        followed by LF or NUL), as some servers split there; a CR at the
        end of the buffer waits for the next byte."""
        if direction == SERVER:
            nl = buf.find(b"\n", pos)
            return nl + 1 if nl >= 0 else -1
        i = pos
        while True:
            nl = buf.find(b"\n", i)
            cr = buf.find(b"\r", i)
            if cr < 0 or (0 <= nl < cr):
                return nl + 1 if nl >= 0 else -1
            if cr + 1 >= len(buf):
                return -1
            nxt = buf[cr + 1]
            if nxt == 0x0a:
                return cr + 2
            if nxt != 0:
                return cr + 1
            i = cr + 2

    # -- logging helpers --------------------------------------------------

    def _tail(self):
        return "-- FTP client %s FTP server %s" % (ntoa(self.ctx.client_addr),
                                                 ntoa(self.ctx.server_addr))

    def _alert(self, v, mnemonic, what):
        v.log.append(alert(3, mnemonic, "%s %s" % (what, self._tail())))

    def _debug(self, v, text):
        if self.ctx.debug:
            v.debug.append("CBAC FTP: " + text)

    # -- lines ------------------------------------------------------------

    def _line(self, direction, line, off, v):
        if line.endswith(b"\r\n"):
            content = line[:-2]
        elif line.endswith(b"\n") or line.endswith(b"\r"):
            content = line[:-1]
        else:
            content = line           # last line at close, no terminator
        if direction == CLIENT:
            self._command(content, off, v)
        else:
            self._reply(content, off, v)

    def _mask(self, direction, content, off, v):
        """Refuse a line: mask a command (server answers 500), turn a reply
        into a same-length 425."""
        d = self._dirs[direction]
        start = max(off, d.released)
        n = off + len(content) - start
        if n <= 0:
            return
        if direction == SERVER and start == off and n >= 4:
            text = b"425 Can't open data connection."
            data = text[:n].ljust(n, b" ")
        else:
            data = b"x" * n
        v.edits.append(Edit(start, n, data))
        self.refused += 1

    # client -> server

    def _command(self, content, off, v):
        norm = _normalize(content)
        verb = _verb(norm)
        if verb == b"USER" or verb == b"PASS" or verb == b"ACCT":
            self._login_pending = True
            if not self.authenticated:
                self._go(_SENT[verb])
            self._debug(v, "%s command from client" % verb.decode())
            return
        if verb == b"AUTH":
            self._auth_tls = True
            return
        if verb == b"REIN":
            self._go(NOT_AUTHENTICATED)
            return
        if verb in _LONG_VERBS:
            # RFC 1639 (LPRT/LPSV) opens data channels cbac does not
            # inspect: refused, so the client falls back to PORT/PASV
            self._alert(v, "FTP_MALFORMED", "Unsupported %s command" % verb.decode())
            self._debug(v, "%s command refused (not inspected)" % verb.decode())
            self._mask(CLIENT, content, off, v)
            return
        if verb not in _DATA_VERBS:
            return
        vs = verb.decode()
        if not self.authenticated:
            v.log.append(alert(3, "FTP_SESSION_NOT_AUTHENTICATED",
                          "Command issued before the session is authenticated -- FTP client %s"
                          % ntoa(self.ctx.client_addr)))
            self._debug(v, "%s command before login, refused" % vs)
            self._mask(CLIENT, content, off, v)
            return
        if verb in (b"PASV", b"EPSV"):
            self._debug(v, "%s command from client" % vs)
            return
        arg = norm[4:].strip(b" \t")
        ep = self._parse_port(arg) if verb == b"PORT" else self._parse_eprt(arg)
        if ep is None:
            self._alert(v, "FTP_MALFORMED", "Malformed %s command" % vs)
            self._debug(v, "malformed %s command %r, refused" % (vs, arg[:40]))
            self._mask(CLIENT, content, off, v)
            return
        addr, port = ep
        what = "%s command" % vs
        if not self._checks(CLIENT, addr, port, self.ctx.client_addr, what, content, off, v):
            return
        mapped = self._map(CLIENT, addr, port, what, content, off, v)
        if mapped is None:
            return
        maddr, mport = mapped
        if (maddr, mport) != (addr, port):
            if verb == b"PORT":
                new = b"PORT %d,%d,%d,%d,%d,%d" % (
                    (maddr >> 24) & 255, (maddr >> 16) & 255, (maddr >> 8) & 255,
                    maddr & 255, mport >> 8, mport & 255)
            else:
                new = b"EPRT |1|%s|%d|" % (ntoa(maddr).encode(), mport)
            v.edits.append(Edit(off, len(content), new))
            self.rewritten += 1
            self._debug(v, "%s rewritten for NAT: %s:%d -> %s:%d"
                        % (what, ntoa(addr), port, ntoa(maddr), mport))
        src = self._server_own()
        if src is None:
            src = self.ctx.server_addr
        self._open(v, Expectation("tcp", src, None, maddr, mport, DATA_TIMEOUT, "ftp-data"), what)

    @staticmethod
    def _parse_port(arg):
        m = _PORT_ARG.match(arg)
        if m is None:
            return None
        n = [int(x) for x in m.groups()]
        if max(n) > 255:
            return None
        return (n[0] << 24 | n[1] << 16 | n[2] << 8 | n[3]), (n[4] << 8 | n[5])

    @staticmethod
    def _parse_eprt(arg):
        if len(arg) < 2 or not 0x21 <= arg[0] <= 0x7e or arg[0:1].isdigit():
            return None
        parts = arg.split(arg[0:1])
        if len(parts) != 5 or parts[0] or parts[4] or parts[1] != b"1":
            return None          # also |2| (IPv6): not on an IPv4 control channel
        m = _DOTTED.match(parts[2])
        if m is None or not parts[3].isdigit() or len(parts[3]) > 5:
            return None
        n = [int(x) for x in m.groups()]
        port = int(parts[3])
        if max(n) > 255 or port > 65535:
            return None
        return (n[0] << 24 | n[1] << 16 | n[2] << 8 | n[3]), port

    # server -> client

    def _reply(self, content, off, v):
        if self._multiline is not None:
            code = self._multiline
            if content[:4] != b"%d " % code and content != b"%d" % code:
                return                        # text line inside a multi-line reply
            self._multiline = None
        else:
            m = _REPLY.match(content)
            if m is None:
                return
            code = int(m.group(1))
            if m.group(2) == b"-":
                self._multiline = code
                return
        if code == 230:
            self._go(AUTHENTICATED)
            self._login_pending = False
            self._debug(v, "login successful (230)")
        elif code in (331, 332):
            pass
        elif code == 234 and self._auth_tls:
            self._go(TLS)
            self._debug(v, "AUTH accepted (234): control channel encrypted, inspection stopped")
        elif code == 530:
            if self._login_pending and not self.authenticated:
                self._go(LOGIN_FAILED)
                self._debug(v, "login failed (530)")
            self._login_pending = False
        elif code == 227:
            self._pasv(content, off, v)
        elif code == 228:
            # LPSV reply (RFC 1639): not inspected, refused
            self._alert(v, "FTP_MALFORMED", "Unsupported LPSV reply")
            self._debug(v, "228 reply refused (not inspected)")
            self._mask(SERVER, content, off, v)
        elif code == 229:
            self._epsv(content, off, v)

    def _pasv(self, content, off, v):
        what = "PASV reply"
        if not self._reply_auth(content, off, v, what):
            return
        found = list(_PASV_NUMS.finditer(content, 4))
        n = [int(x) for x in found[0].groups()] if len(found) == 1 else None
        if n is None or max(n) > 255:
            self._alert(v, "FTP_MALFORMED", "Malformed %s" % what)
            self._debug(v, "malformed 227 reply, refused")
            self._mask(SERVER, content, off, v)
            return
        addr = n[0] << 24 | n[1] << 16 | n[2] << 8 | n[3]
        port = n[4] << 8 | n[5]
        probe = None
        if addr != self.ctx.server_addr and addr != self._server_own():
            # A server behind static NAT announces its own address, which the
            # client knows under another: accept it when NAT maps it to the
            # address the client uses for the server.
            try:
                probe = self.ctx.nat_map(SERVER, "tcp", addr, port)
                seen = probe[0]
            except Exception:
                seen = None
            if seen != self.ctx.server_addr:
                self._non_matching(SERVER, addr, port, self.ctx.server_addr, what, content, off, v)
                return
        if port < 1024:
            self._priv_port(SERVER, port, what, content, off, v)
            return
        mapped = self._map(SERVER, addr, port, what, content, off, v, probe)
        if mapped is None:
            return
        maddr, mport = mapped
        if (maddr, mport) != (addr, port):
            m = found[0]
            new = b"%d,%d,%d,%d,%d,%d" % (
                (maddr >> 24) & 255, (maddr >> 16) & 255, (maddr >> 8) & 255,
                maddr & 255, mport >> 8, mport & 255)
            v.edits.append(Edit(off + m.start(), m.end() - m.start(), new))
            self.rewritten += 1
            self._debug(v, "%s rewritten for NAT: %s:%d -> %s:%d"
                        % (what, ntoa(addr), port, ntoa(maddr), mport))
        self._open(v, Expectation("tcp", self.ctx.client_addr, None, maddr, mport,
                                  DATA_TIMEOUT, "ftp-data"), what)

    def _epsv(self, content, off, v):
        what = "EPSV reply"
        if not self._reply_auth(content, off, v, what):
            return
        found = list(_EPSV_ARG.finditer(content, 4))
        port = int(found[0].group(2)) if len(found) == 1 else None
        if port is None or port > 65535:
            self._alert(v, "FTP_MALFORMED", "Malformed %s" % what)
            self._debug(v, "malformed 229 reply, refused")
            self._mask(SERVER, content, off, v)
            return
        addr = self._server_own()
        if addr is None:
            addr = self.ctx.server_addr
        if port < 1024:
            self._priv_port(SERVER, port, what, content, off, v)
            return
        mapped = self._map(SERVER, addr, port, what, content, off, v)
        if mapped is None:
            return
        maddr, mport = mapped
        if mport != port:
            m = found[0]
            v.edits.append(Edit(off + m.start(2), m.end(2) - m.start(2), b"%d" % mport))
            self.rewritten += 1
            self._debug(v, "%s rewritten for NAT: port %d -> %d" % (what, port, mport))
        self._open(v, Expectation("tcp", self.ctx.client_addr, None, maddr, mport,
                                  DATA_TIMEOUT, "ftp-data"), what)

    def _reply_auth(self, content, off, v, what):
        if self.authenticated:
            return True
        v.log.append(alert(3, "FTP_SESSION_NOT_AUTHENTICATED",
                      "Command issued before the session is authenticated -- FTP client %s"
                      % ntoa(self.ctx.client_addr)))
        self._debug(v, "%s before login, refused" % what)
        self._mask(SERVER, content, off, v)
        return False

    # shared

    def _server_own(self):
        """The server's own address (source of its packets as they reach the
        firewall), when the engine provides it (``ctx.server_own_addr``);
        it differs from ``ctx.server_addr`` only for a server behind NAT."""
        return getattr(self.ctx, "server_own_addr", None)

    def _checks(self, direction, addr, port, own, what, content, off, v):
        if addr != own:
            self._non_matching(direction, addr, port, own, what, content, off, v)
            return False
        if port < 1024:
            self._priv_port(direction, port, what, content, off, v)
            return False
        return True

    def _non_matching(self, direction, addr, port, own, what, content, off, v):
        v.log.append(alert(3, "FTP_NON_MATCHING_IP_ADDR",
                      "Non-matching address %s used in %s %s" % (ntoa(addr), what, self._tail())))
        self._debug(v, "%s names %s:%d, not the %s's address %s, refused"
                    % (what, ntoa(addr), port,
                       "client" if direction == CLIENT else "server", ntoa(own)))
        self._mask(direction, content, off, v)

    def _priv_port(self, direction, port, what, content, off, v):
        v.log.append(alert(3, "FTP_PRIV_PORT",
                      "Privileged port %d used in %s %s" % (port, what, self._tail())))
        self._debug(v, "%s names privileged port %d, refused" % (what, port))
        self._mask(direction, content, off, v)

    def _map(self, direction, addr, port, what, content, off, v, result=None):
        try:
            if result is None:
                result = self.ctx.nat_map(direction, "tcp", addr, port)
            maddr, mport = result
            maddr, mport = int(maddr), int(mport)
            if not (0 <= maddr <= 0xFFFFFFFF and 0 < mport <= 65535):
                raise ValueError("bad mapping %r" % ((maddr, mport),))
        except Exception as e:        # no translation available: refuse, do not crash
            self._debug(v, "%s: NAT translation failed (%s), refused" % (what, e))
            self._mask(direction, content, off, v)
            return None
        return maddr, mport

    def _open(self, v, exp, what):
        v.expect.append(exp)
        self.data_channels += 1
        self._debug(v, "%s: data channel %s -> %s:%d opened for %ds"
                    % (what, ntoa(exp.src) if exp.src is not None else "any",
                       ntoa(exp.dst), exp.dst_port, int(exp.timeout)))


@provider(IInspectorFactory)
def factory(ctx):
    """The ``ftp`` inspector factory (IInspectorFactory)."""
    return FtpInspector(ctx)


factory.name = "ftp"
