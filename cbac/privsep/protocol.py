"""The AMP protocol between the engine and the management process.

Everything crosses one Unix socket (a socketpair the engine makes before it
spawns the management process).  Commands from the management process to
the engine (what the console asks for) answer with the first page of their
output; the rest is fetched with :class:`More` (a pull, so a slow console
holds nothing but its own pages and the engine never writes more than one
page ahead).  Commands from the engine to the management process are
notifications the engine never waits for (:class:`LogEvent`,
:class:`ConfigChanged`).

Only types of Twisted 22.4's ``twisted.protocols.amp`` are used.
"""

from twisted.protocols import amp

#: characters of output per page (an AMP value is at most 65,535 bytes;
#: 16,000 characters are at most 64,000 bytes of UTF-8)
PAGE = 16000

#: status of a paged reply: the method returned a plain string (-1), or
#: ``(False, text)`` (0) / ``(True, text)`` (1)
PLAIN, FAILED, OK = -1, 0, 1


class EngineError(Exception):
    """The engine refused or failed a request (text for the console)."""


_ERRORS = {EngineError: b"ENGINE_ERROR"}

_PAGED = [(b"handle", amp.Integer()), (b"status", amp.Integer()),
          (b"data", amp.Unicode()), (b"more", amp.Boolean())]


class Show(amp.Command):
    """A read-only appliance method (a whitelisted ``show_*`` name or
    ``packet_tracer``) with JSON arguments ``[args, kwargs]``."""
    arguments = [(b"method", amp.Unicode()), (b"args", amp.Unicode())]
    response = _PAGED
    errors = _ERRORS


class Clear(amp.Command):
    """``clear WHAT [ARG]``"""
    arguments = [(b"what", amp.Unicode()), (b"arg", amp.Unicode(optional=True))]
    response = _PAGED
    errors = _ERRORS


class Debug(amp.Command):
    """``[no] debug CATEGORY``; ``category`` empty: ``undebug all``."""
    arguments = [(b"category", amp.Unicode()), (b"on", amp.Boolean())]
    response = _PAGED
    errors = _ERRORS


class WriteMemory(amp.Command):
    """``write memory`` / ``copy running-config startup-config``"""
    arguments = []
    response = _PAGED
    errors = _ERRORS


class ConfigureReplace(amp.Command):
    """``configure replace FILE``; ``path`` empty: ``reload config``."""
    arguments = [(b"path", amp.Unicode())]
    response = _PAGED
    errors = _ERRORS


class GetConfig(amp.Command):
    """The running configuration's source text (the management process
    parses it for the console: users, secrets as hashes, vty lines,
    ``show running-config``) and its file name."""
    arguments = []
    response = _PAGED + [(b"path", amp.Unicode())]
    errors = _ERRORS


class GetAuthorizedKeys(amp.Command):
    """The ``cbac ssh authorized-keys`` file as the engine reads it (for a
    file the management user cannot read); at most MAX_KEYS characters."""
    arguments = []
    response = [(b"data", amp.Unicode())]
    errors = _ERRORS


MAX_KEYS = 60000


class Metrics(amp.Command):
    """The Prometheus exposition text of the engine's state (what ``GET
    /metrics`` serves; the management process runs the listener)."""
    arguments = []
    response = _PAGED
    errors = _ERRORS


class More(amp.Command):
    """The next page of a paged reply."""
    arguments = [(b"handle", amp.Integer())]
    response = [(b"data", amp.Unicode()), (b"more", amp.Boolean())]
    errors = _ERRORS


class Cancel(amp.Command):
    """The console no longer wants the rest of a paged reply."""
    arguments = [(b"handle", amp.Integer())]
    response = []
    requiresAnswer = False


class MgmtLog(amp.Command):
    """Log lines of the management process (logins, ``%SYS-5-CONFIG_I``,
    errors), re-emitted by the engine into the buffer, syslog and files."""
    arguments = [(b"severity", amp.Integer()), (b"facility", amp.Unicode()),
                 (b"mnemonic", amp.Unicode()), (b"message", amp.Unicode())]
    response = []
    requiresAnswer = False


class Monitor(amp.Command):
    """How many console sessions have ``terminal monitor`` on: the engine
    streams :class:`LogEvent` only while there is one."""
    arguments = [(b"sessions", amp.Integer())]
    response = []
    requiresAnswer = False


# -- engine -> management ----------------------------------------------------

class LogEvent(amp.Command):
    """Formatted log lines for ``terminal monitor`` sessions; ``dropped``:
    lines the engine dropped (oldest first) since the last LogEvent because
    the management process was slow."""
    arguments = [(b"lines", amp.ListOf(amp.Unicode())), (b"dropped", amp.Integer())]
    response = []


class SyslogEvent(amp.Command):
    """Log lines for the syslog hosts (``logging host``), which the
    management process sends (two processes: the engine opens no syslog
    socket).  Answered once they are handed to the hosts: the engine sends
    the next batch then (its queue is bounded and drops the oldest)."""
    arguments = [(b"entries", amp.AmpList([
        (b"severity", amp.Integer()), (b"mnemonic", amp.Unicode()), (b"time", amp.Float()),
        (b"stamp", amp.Unicode()), (b"text", amp.Unicode())]))]
    response = []


class SyslogSources(amp.Command):
    """The local address (and, for TLS, port) each syslog host is sent
    from: the router's egress interface address, routed into the
    management TUN (``ip`` empty: the host's routing decides)."""
    arguments = []
    response = [(b"sources", amp.AmpList([
        (b"address", amp.Unicode()), (b"transport", amp.Unicode()), (b"ip", amp.Unicode()),
        (b"port", amp.Integer())]))]
    errors = _ERRORS


class ConfigChanged(amp.Command):
    """The running configuration changed (configure replace, reload)."""
    arguments = []
    response = []
    requiresAnswer = False
