"""The SSH server of the cbac console (twisted.conch).

:func:`makeConsoleService` builds a service listening on endpoint strings.
Users log in with a password (``appliance.check_login``) or a public key
(``appliance.authorized_keys``); failed logins are logged IOS style
(``%SEC_LOGIN-4-LOGIN_FAILED``) and answered after a delay growing per
source address.  A session is an interactive IOS-style CLI (with a pty), an
exec request (``ssh router 'show ip inspect all'``, exit status 0, or 1 for
invalid input), or a batch of commands read from stdin (shell without pty).
"""

from __future__ import annotations

import os
import time

from zope.interface import implementer

from twisted.application import service
from twisted.conch import avatar
from twisted.conch.checkers import SSHPublicKeyChecker
from twisted.conch.error import IgnoreAuthentication, ValidPublicKey
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.ssh import common, connection, factory, keys, session, transport, userauth
from twisted.cred import credentials, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, endpoints, error, protocol
from twisted.logger import Logger
from twisted.python import failure

from cbac.console import budget
from cbac.console.cli import MAX_LINE, CLIProtocol, Context, Result, run_line, too_long
from cbac.console.commands import build_tree
from cbac.log import ios

_log = Logger(namespace="cbac.console.ssh")

#: seconds before the answer to the first failed password from a source;
#: doubled for each further failure from that source, up to MAX_DELAY.
FAIL_DELAY = 1.0
MAX_DELAY = 30.0
#: a source's failure count is forgotten after this many quiet seconds
FAIL_MEMORY = 900.0
#: failed passwords per connection before disconnecting (ip ssh authentication-retries)
AUTH_RETRIES = 3
#: IOS default exec-timeout (10 minutes)
EXEC_TIMEOUT = 600
#: concurrent connections not yet logged in: in all, and from one source
#: address (OpenSSH's MaxStartups / PerSourceMaxStartups); more are closed
#: at once, so parallel password guessing is bounded
MAX_STARTUPS = 10
MAX_STARTUPS_PER_SOURCE = 3
#: seconds a connection has to log in, from the TCP connection on (IOS
#: ``ip ssh time-out 120``; conch's own timer starts only after key exchange)
LOGIN_GRACE = 120.0
#: bytes of an exec request's command line shown in the log (the rest is
#: counted): a client may send a line of hundreds of kilobytes
LOGGED_COMMAND = 128


def _ios_time(t: float) -> str:
    return time.strftime("%H:%M:%S UTC %a %b %d %Y", time.gmtime(t))


# ---------------------------------------------------------------------------
# Host keys


def load_host_key(state_dir: str) -> keys.Key:
    """The SSH host key kept in ``state_dir``; made on first start
    (ed25519, or RSA 3072 if ed25519 is not available)."""
    for name in ("ssh_host_ed25519_key", "ssh_host_rsa_key"):
        path = os.path.join(state_dir, name)
        if os.path.exists(path):
            return keys.Key.fromFile(path)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    from cryptography.hazmat.primitives import serialization
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
        priv = ed25519.Ed25519PrivateKey.generate()
        data = priv.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.OpenSSH,
                                  serialization.NoEncryption())
        key = keys.Key(priv)
        key.sshType()
        name = "ssh_host_ed25519_key"
    except Exception:
        from cryptography.hazmat.primitives.asymmetric import rsa
        priv = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        data = priv.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
        key = keys.Key(priv)
        name = "ssh_host_rsa_key"
    path = os.path.join(state_dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    with open(path + ".pub", "wb") as f:
        f.write(key.public().toString("openssh") + b" cbac\n")
    _log.info("generated SSH host key {path}", path=path)
    return keys.Key.fromFile(path)


# ---------------------------------------------------------------------------
# login block-for (IOS login protection)


class LoginGuard:
    """``login block-for S attempts N within T``: N failed logins within a
    watch window of T seconds (from any source, as on IOS) put the console
    into quiet mode for S seconds: new connections are refused, except from
    the hosts ``login quiet-mode access-class ACL`` permits (none if that
    ACL is not defined).  Logs ``%SEC_LOGIN-1-QUIET_MODE_ON`` and
    ``%SEC_LOGIN-5-QUIET_MODE_OFF``; :meth:`show` is ``show login``."""

    def __init__(self, console):
        self.console = console
        self.window: list[float] = []        # failure times in the watch window
        self.total = 0
        self.quiet_until = None
        self._off_call = None

    @property
    def model(self):
        return self.console.model

    def now(self):
        return self.console.reactor.seconds()

    def quiet(self) -> bool:
        return self.quiet_until is not None and self.now() < self.quiet_until

    def permits(self, host: str) -> bool:
        if not self.quiet():
            return True
        acl = getattr(self.model, "login_quiet_acl", None)
        if acl is None or self.console.acl_permits is None:
            return False
        try:
            return bool(self.console.acl_permits(acl, host))
        except Exception:
            _log.failure("login quiet-mode access-class check failed for {host}", host=host)
            return False

    def _prune(self, now, within):
        self.window = [t for t in self.window if now - t < within]

    def failed(self, user: str, source: str, localport) -> None:
        self.total += 1
        cfg = getattr(self.model, "login_block", None)
        if cfg is None or self.quiet():
            return
        block, attempts, within = cfg
        now = self.now()
        self._prune(now, within)
        self.window.append(now)
        if len(self.window) < attempts:
            return
        left = max(0, int(within - (now - self.window[0])))
        self.window = []
        self.quiet_until = now + block
        acl = getattr(self.model, "login_quiet_acl", None) or "sl_def_acl"
        ios.message("SEC_LOGIN", 1, "QUIET_MODE_ON",
                    "Still timeleft for watching failures is %d secs, [user: %s] [Source: %s] "
                    "[localport: %s] [Reason: Login Authentication Failed] [ACL: %s] at %s"
                    % (left, user, source, localport, acl, _ios_time(now)))
        if self._off_call is not None and self._off_call.active():
            self._off_call.cancel()
        self._off_call = self.console.reactor.callLater(block, self._off)

    def _off(self):
        self._off_call = None
        self.quiet_until = None
        ios.message("SEC_LOGIN", 5, "QUIET_MODE_OFF",
                    "Quiet Mode is OFF, because block period timed out at %s" % _ios_time(self.now()))

    def stop(self):
        if self._off_call is not None and self._off_call.active():
            self._off_call.cancel()
        self._off_call = None

    def show(self) -> str:
        """``show login`` (IOS layout)."""
        m = self.model
        cfg = getattr(m, "login_block", None)
        acl = getattr(m, "login_quiet_acl", None)
        console = self.console
        lines = [
            "     A login delay of %g seconds is applied to a failed password, doubled per further "
            "failure from the same source (max %g)." % (console.fail_delay, console.max_delay),
            ("     Quiet-Mode access list %s is applied." % acl) if acl
            else "     No Quiet-Mode access list has been configured.",
            "     All successful login is logged.",
            "     All failed login is logged.",
            "",
        ]
        if cfg is None:
            lines.append("     Router NOT enabled to watch for login Attacks")
            lines.append("")
            lines.append("     Total login failures: %d." % self.total)
            return "\n".join(lines)
        block, attempts, within = cfg
        lines += [
            "     Router enabled to watch for login Attacks.",
            "     If more than %d login failures occur in %d seconds or less," % (attempts - 1, within),
            "       logins will be disabled for %d seconds." % block,
            "",
        ]
        now = self.now()
        if self.quiet():
            lines += [
                "     Router presently in Quiet-Mode.",
                "     Will remain in Quiet-Mode for %d seconds." % int(self.quiet_until - now + 0.999),
                ("     Restricted logins filtered by applied ACL %s." % acl) if acl
                else "     Denied logins from all hosts.",
            ]
        else:
            self._prune(now, within)
            left = within - (now - self.window[0]) if self.window else within
            lines += [
                "     Router presently in Normal-Mode.",
                "     Current Watch Window",
                "         Time remaining: %d seconds." % int(left),
                "         Login failures for current window: %d." % len(self.window),
            ]
        lines.append("     Total login failures: %d." % self.total)
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# The console: shared state of all sessions


class Console:
    def __init__(self, appliance, router_model, reactor, vty_permits=None, tree=None,
                 acl_permits=None):
        self.app = appliance
        #: acl_permits(acl name, source address) -> bool (login quiet-mode access-class)
        self.acl_permits = acl_permits
        self._model = router_model
        self.reactor = reactor
        self.vty_permits = vty_permits
        self.tree = tree if tree is not None else build_tree()
        self.lines: dict[int, dict] = {}          # vty number -> info
        self.failures: dict[str, tuple[int, float]] = {}
        self.fail_delay = FAIL_DELAY
        self.max_delay = MAX_DELAY
        self.guard = LoginGuard(self)
        #: the manhole command is allowed (twistd cbac --manhole)
        self.manhole = False
        self.max_startups = MAX_STARTUPS
        self.max_startups_per_source = MAX_STARTUPS_PER_SOURCE
        self.login_grace = LOGIN_GRACE
        self.unauthenticated: dict = {}          # transport -> source address
        self.startups_refused = 0
        self._refused_logged = None

    # -- connections not yet logged in ---------------------------------------
    def startup_permits(self, host: str) -> bool:
        """Room for one more connection not yet logged in from ``host``?"""
        total = len(self.unauthenticated)
        mine = sum(1 for h in self.unauthenticated.values() if h == host)
        if total < self.max_startups and mine < self.max_startups_per_source:
            return True
        self.startups_refused += 1
        now = self.reactor.seconds()
        if self._refused_logged is None or now - self._refused_logged >= 60:
            self._refused_logged = now
            _log.warn("SSH connection from {host} refused: {total} connections not logged in "
                      "({mine} from {host}; limits {limit} and {per_source} per source); "
                      "{refused} refused so far",
                      host=host, total=total, mine=mine, limit=self.max_startups,
                      per_source=self.max_startups_per_source, refused=self.startups_refused)
        return False

    def startup_begins(self, t, host: str) -> None:
        self.unauthenticated[t] = host

    def startup_ends(self, t) -> None:
        self.unauthenticated.pop(t, None)

    @property
    def model(self):
        m = getattr(self.app, "router_model", None)
        return m if m is not None else self._model

    # -- access -------------------------------------------------------------
    def permits(self, host: str) -> bool:
        vty = getattr(self.model, "vty", None) or []
        if vty and all(v.transport_input in ("none", "telnet") for v in vty):
            return False
        if not self.guard.permits(host):
            return False
        if self.vty_permits is None:
            return True
        try:
            return bool(self.vty_permits(host))
        except Exception:
            _log.failure("vty access-class check failed for {host}", host=host)
            return False

    def max_lines(self) -> int:
        vty = getattr(self.model, "vty", None) or []
        return sum(v.last - v.first + 1 for v in vty) if vty else 5

    def idle_timeout(self):
        vty = getattr(self.model, "vty", None) or []
        t = vty[0].exec_timeout if vty else None
        if t is None:
            return EXEC_TIMEOUT
        return (t[0] * 60 + t[1]) or None

    def privilege_of(self, user: str) -> int:
        u = (getattr(self.model, "users", None) or {}).get(user)
        return u.privilege if u is not None else 1

    # -- failed logins ------------------------------------------------------------
    def failure_delay(self, source: str) -> float:
        """Record a failed login from ``source``; return the delay before
        answering it."""
        now = self.reactor.seconds()
        n, last = self.failures.get(source, (0, now))
        if now - last > FAIL_MEMORY:
            n = 0
        n += 1
        self.failures[source] = (n, now)
        if len(self.failures) > 10000:       # bounded memory
            oldest = min(self.failures, key=lambda k: self.failures[k][1])
            del self.failures[oldest]
        return min(self.fail_delay * 2 ** (n - 1), self.max_delay)

    def login_ok(self, source: str) -> None:
        self.failures.pop(source, None)

    # -- lines ------------------------------------------------------------------
    def open_line(self, user: str, privilege: int, peer: str):
        for n in range(self.max_lines()):
            if n not in self.lines:
                ctx = Context(self.app, user, privilege, peer, console=self)
                ctx.line = "vty%d" % n
                self.lines[n] = {"ctx": ctx, "since": self.reactor.seconds()}
                return n, ctx
        return None, None

    def close_line(self, n) -> None:
        info = self.lines.pop(n, None)
        if info is not None:
            ctx = info["ctx"]
            ios.message("SYS", 6, "LOGOUT", "User %s has exited tty session %d(%s)"
                        % (ctx.user, n + 2, ctx.peer))

    def next_tty(self) -> int:
        """The tty number (IOS: vty N is tty N+2) the next session gets."""
        n = 0
        while n in self.lines:
            n += 1
        return n + 2

    def show_users(self, me: Context) -> str:
        out = ["    Line       User       Host(s)              Idle       Location"]
        now = self.reactor.seconds()
        for n in sorted(self.lines):
            ctx = self.lines[n]["ctx"]
            s = ctx.session
            idle = int(now - getattr(s, "last_input", self.lines[n]["since"]))
            out.append("%s%3d vty %-5d %-10s %-20s %02d:%02d:%02d %s" % (
                "*" if ctx is me else " ", n + 2, n, ctx.user[:10], "idle",
                idle // 3600, idle // 60 % 60, idle % 60, ctx.peer))
        return "\n".join(out)

    def monitors(self):
        for info in self.lines.values():
            s = info["ctx"].session
            if s is not None and getattr(s, "monitor", False):
                yield s


# ---------------------------------------------------------------------------
# Authentication


@implementer(ICredentialsChecker)
class PasswordChecker:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, console: Console):
        self.console = console

    def requestAvatarId(self, creds):
        user = creds.username.decode("utf-8", "replace")
        pw = creds.password.decode("utf-8", "replace")
        d = defer.maybeDeferred(self.console.app.check_login, user, pw)

        def check(priv):
            if priv is None:
                raise UnauthorizedLogin("bad password")
            return (user, int(priv))
        return d.addCallback(check)


class _KeyDB:
    def __init__(self, console: Console):
        self.console = console

    def getAuthorizedKeys(self, username):
        user = username.decode("utf-8", "replace")
        try:
            lines = self.console.app.authorized_keys(user) or []
        except Exception:
            _log.failure("authorized_keys({user})", user=user)
            return []
        out = []
        for line in lines:
            if isinstance(line, str):
                line = line.encode()
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                out.append(keys.Key.fromString(line))
            except Exception:
                _log.warn("ignoring bad public key for {user}", user=user)
        return out


@implementer(ICredentialsChecker)
class PublicKeyChecker:
    credentialInterfaces = (credentials.ISSHPrivateKey,)

    def __init__(self, console: Console):
        self.console = console
        self._inner = SSHPublicKeyChecker(_KeyDB(console))

    def requestAvatarId(self, creds):
        d = defer.maybeDeferred(self._inner.requestAvatarId, creds)

        def ok(username):
            user = username.decode("utf-8", "replace")
            return (user, self.console.privilege_of(user))
        return d.addCallback(ok)


class CbacUserAuth(userauth.SSHUserAuthServer):
    """Logs logins IOS style and slows down failed passwords per source."""

    passwordDelay = 0
    loginTimeout = 120          # IOS ip ssh time-out 120

    def serviceStarted(self):
        self.clock = self.transport.factory.console.reactor
        userauth.SSHUserAuthServer.serviceStarted(self)
        self._bad_passwords = 0
        t = self.transport
        t.ios_tty = t.factory.console.next_tty()
        ios.message("SSH", 5, "SSH2_SESSION", "SSH2 Session request from %s (tty = %d) using %s Succeeded"
                    % (_peer_host(t), t.ios_tty, _crypto(t)))

    def tryAuth(self, kind, user, data):
        console = self.transport.factory.console
        peer = self.transport.transport.getPeer()
        if kind in (b"password", b"publickey") and not console.guard.permits(getattr(peer, "host", "")):
            # quiet mode began while this connection was open
            self.transport.sendDisconnect(transport.DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE,
                                          b"login blocked (quiet mode)")
            return defer.fail(failure.Failure(IgnoreAuthentication()))
        d = userauth.SSHUserAuthServer.tryAuth(self, kind, user, data)
        host = self.transport.transport.getHost()
        src = getattr(peer, "host", str(peer))
        uname = user.decode("utf-8", "replace")
        where = "[user: %s] [Source: %s] [localport: %s]" % (uname, src, getattr(host, "port", "?"))

        def ok(result):
            console.login_ok(src)
            t = self.transport
            t.ios_user = uname
            t.authenticated()
            ios.message("SSH", 5, "SSH2_USERAUTH",
                        "User '%s' authentication for SSH2 Session from %s (tty = %s) using %s Succeeded"
                        % (uname, src, getattr(t, "ios_tty", "?"), _crypto(t)))
            ios.message("SEC_LOGIN", 5, "LOGIN_SUCCESS", "Login Success %s at %s"
                        % (where, _ios_time(console.reactor.seconds())))
            return result

        def bad(f):
            if kind != b"password" or f.check(ValidPublicKey):
                return f
            ios.message("SEC_LOGIN", 4, "LOGIN_FAILED",
                        "Login failed %s [Reason: Login Authentication Failed] at %s"
                        % (where, _ios_time(console.reactor.seconds())))
            console.guard.failed(uname, src, getattr(host, "port", "?"))
            self._bad_passwords += 1
            delay = console.failure_delay(src)
            d2 = defer.Deferred()
            if self._bad_passwords >= AUTH_RETRIES:
                def bye():
                    self.transport.sendDisconnect(
                        transport.DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE,
                        b"too many authentication failures")
                    d2.errback(failure.Failure(IgnoreAuthentication()))
                self.clock.callLater(delay, bye)
            else:
                self.clock.callLater(delay, d2.errback, f)
            return d2

        if kind in (b"password", b"publickey"):
            d.addCallbacks(ok, bad)
        return d


class CbacRealm:
    def __init__(self, console: Console):
        self.console = console

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IConchUser not in interfaces:
            raise NotImplementedError()
        user, priv = avatarId
        av = CbacAvatar(self.console, user, priv)
        return IConchUser, av, av.logout


@implementer(IConchUser)
class CbacAvatar(avatar.ConchUser):
    def __init__(self, console: Console, user: str, privilege: int):
        avatar.ConchUser.__init__(self)
        self.console = console
        self.username = user
        self.privilege = privilege
        self.channelLookup[b"session"] = CbacSSHChannel

    def __conform__(self, iface):
        if iface is ISession:
            return CbacSession(self)
        return None

    def peer(self) -> str:
        try:
            return self.conn.transport.transport.getPeer().host
        except Exception:
            return ""

    def logout(self):
        pass


# ---------------------------------------------------------------------------
# Sessions


def loggable_command(cmd: bytes) -> str:
    """An exec request's command line as the log shows it: escaped (no
    control characters reach the log) and cut after :data:`LOGGED_COMMAND`
    bytes, with the full length."""
    shown = repr(cmd[:LOGGED_COMMAND])
    if len(cmd) > LOGGED_COMMAND:
        shown += "... (%d bytes)" % len(cmd)
    return shown


class CbacSSHChannel(session.SSHSession):
    """conch's session channel, except that an exec request's command line
    is logged cut to :data:`LOGGED_COMMAND` bytes (conch logs all of it:
    one log line as long as the client's request).  Logged in conch's
    namespace: chatter, shown only under ``debug ip ssh``."""

    _chatter = Logger(namespace=session.__name__)

    def _isession(self):
        # Twisted >= 23 keeps the ISession in a cached property (which also
        # sets .session); 22.4 in .session only.
        if "_session" in dir(type(self)):
            return self._session
        if not self.session:
            self.session = ISession(self.avatar)
        return self.session

    def request_exec(self, data):
        cmd = common.getNS(data)[0]
        self._chatter.info("Executing command {cmd}", cmd=loggable_command(cmd))
        if self.client is not None:
            self._chatter.error("multiple session-client requests sent to the same session")
            return 0
        pp = session.SSHSessionProcessProtocol(self)
        try:
            self._isession().execCommand(pp, cmd)
        except Exception:
            self._chatter.failure("Error executing command {cmd}", cmd=loggable_command(cmd))
            return 0
        self.client = pp
        return 1


class _Sink:
    """Transport given to conch's process protocol: client data goes to
    ``write``; ``loseConnection`` when the channel closes."""

    def __init__(self, write=None, lose=None):
        self._write, self._lose = write, lose

    def write(self, data):
        if self._write is not None:
            self._write(data)

    def writeSequence(self, seq):
        self.write(b"".join(seq))

    def loseConnection(self):
        lose, self._lose = self._lose, None
        if lose is not None:
            lose()


class _TermTransport:
    """Transport of the insults ServerProtocol: output to the channel."""

    def __init__(self, proto, on_close):
        self.proto = proto
        self.on_close = on_close
        self.closed = False

    def write(self, data):
        if not self.closed:
            self.proto.write(data)

    def writeSequence(self, seq):
        self.write(b"".join(seq))

    def loseConnection(self):
        if not self.closed:
            self.closed = True
            self.on_close()
            self.proto.processEnded(failure.Failure(error.ProcessDone(0)))

    def getPeer(self):
        return self.proto.getPeer()

    def getHost(self):
        return self.proto.getHost()


def _ended(status: int):
    if status == 0:
        return failure.Failure(error.ProcessDone(0))
    return failure.Failure(error.ProcessTerminated(exitCode=status))


@implementer(ISession)
class CbacSession:
    def __init__(self, av: CbacAvatar):
        self.avatar = av
        self.console = av.console
        self.pty = None
        self.server = None
        self.batch = None
        self.feeder = None
        self.vty = None
        self._done = False

    def _open(self, proto):
        vty, ctx = self.console.open_line(self.avatar.username, self.avatar.privilege,
                                          self.avatar.peer())
        if ctx is None:
            proto.write(b"% All lines are busy\r\n")
            proto.processEnded(_ended(1))
        self.vty = vty
        return ctx

    def getPty(self, term, windowSize, modes):
        self.pty = (term, windowSize)

    def openShell(self, proto):
        ctx = self._open(proto)
        if ctx is None:
            return
        if self.pty is None:
            self.batch = _Batch(self.console, ctx, proto, self._release)
            proto.makeConnection(_Sink(self.batch.dataReceived, self._release))
            return
        rows, cols = self.pty[1][0], self.pty[1][1]
        app = self.console.app
        ns = getattr(app, "manhole_namespace", None) if self.console.manhole else None
        server = insults.ServerProtocol(
            CLIProtocol, self.console.tree, ctx, reactor=self.console.reactor,
            namespace_factory=ns, idle_timeout=self.console.idle_timeout())
        self.server = server
        feeder = self.feeder = _InputFeeder(server.dataReceived, self.console.reactor)
        proto.makeConnection(_Sink(feeder.dataReceived, self._client_gone))
        server.makeConnection(_TermTransport(proto, self._release))
        if cols and rows:
            server.terminalProtocol.terminalSize(cols, rows)

    def _client_gone(self):
        if self.feeder is not None:
            self.feeder.stop()
        if self.server is not None:
            s, self.server = self.server, None
            s.connectionLost(failure.Failure(error.ConnectionDone()))
        self._release()

    def _release(self):
        if self.vty is not None:
            self.console.close_line(self.vty)
            self.vty = None

    def execCommand(self, proto, cmd):
        proto.makeConnection(_Sink())          # Twisted 22.4 needs a transport here
        ctx = self._open(proto)
        if ctx is None:
            return
        line = cmd.decode("utf-8", "replace").strip()
        nl = "\r\n" if self.pty else "\n"
        d = run_line(self.console.tree, ctx, line, echo=True)

        def done(r: Result):
            self._release()
            if not r.text:
                proto.processEnded(_ended(r.status))
                return
            w = budget.write_sliced(proto.write,
                                    (r.text + "\n").replace("\n", nl).encode("utf-8", "replace"),
                                    self.console.reactor)
            w.addCallback(lambda _: proto.processEnded(_ended(r.status)))
        d.addCallback(done)
        d.addErrback(lambda f: _log.failure("exec", failure=f))

    def windowChanged(self, newWindowSize):
        rows, cols = newWindowSize[0], newWindowSize[1]
        if self.server is not None and self.server.terminalProtocol is not None:
            self.server.terminalProtocol.terminalSize(cols, rows)

    def eofReceived(self):
        if self.batch is not None:
            self.batch.eof()
        elif self.server is not None and isinstance(self.server.terminalProtocol, CLIProtocol):
            cli = self.server.terminalProtocol
            if self.feeder is not None:
                self.feeder.eof(cli.eof)      # after the typeahead still being fed
            else:
                cli.eof()

    def closed(self):
        self._client_gone()


class _InputFeeder:
    """Keystrokes of an interactive session reach the terminal parser in
    slices of :data:`INPUT_SLICE` bytes per reactor turn (insults parses
    byte by byte; a pasted megabyte must not hold the reactor).  More than
    :data:`INPUT_BACKLOG` bytes waiting is typeahead overflow: the excess
    is dropped, as IOS drops what overflows its typeahead buffer."""

    def __init__(self, deliver, reactor):
        self.deliver = deliver
        self.reactor = reactor
        self.pending = bytearray()
        self.call = None
        self.dropped = 0
        self.stopped = False
        self._at_end = None

    def stop(self):
        """The session is gone: drop what is waiting."""
        self.stopped = True
        self.pending = bytearray()
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def eof(self, at_end):
        """Call ``at_end()`` once everything received has been fed."""
        if self.pending and not self.stopped:
            self._at_end = at_end
        else:
            at_end()

    def dataReceived(self, data):
        if self.stopped:
            return
        room = INPUT_BACKLOG - len(self.pending)
        if len(data) > room:
            self.dropped += len(data) - max(room, 0)
            data = data[:max(room, 0)]
        self.pending += data
        if self.call is None:
            self._feed()

    def _feed(self):
        self.call = None
        chunk = bytes(self.pending[:INPUT_SLICE])
        del self.pending[:INPUT_SLICE]
        if chunk:
            self.deliver(chunk)
        if self.pending and not self.stopped:
            self.call = self.reactor.callLater(0, self._feed)
        elif self._at_end is not None:
            at_end, self._at_end = self._at_end, None
            at_end()


#: interactive input parsed per reactor turn / held before dropping
INPUT_SLICE = 1024
INPUT_BACKLOG = 65536
#: bytes of batch input (stdin piped into ssh) queued before the batch is ended
BATCH_BACKLOG = 4 * 1024 * 1024


class _Batch:
    """Shell without a pty (``echo 'show version' | ssh router``): run the
    lines read from stdin one after another, then exit.

    One command per reactor turn (iteratively, whatever the number of
    lines); a line longer than MAX_LINE is refused without being kept; more
    than BATCH_BACKLOG bytes waiting ends the batch with status 1."""

    def __init__(self, console, ctx, proto, release):
        self.console, self.ctx, self.proto, self.release = console, ctx, proto, release
        self.buf = bytearray()
        self.long = 0                 # length of an over-long line being skipped
        self.queue: list = []         # (line, bytes); line None: refused as too long
        self.queued = 0
        self.busy = False
        self.at_eof = False
        self.status = 0
        self.finished = False
        self._call = None

    def prompt(self):
        host = getattr(self.console.app, "hostname", "Router") or "Router"
        return host + ("#" if self.ctx.privilege >= 15 else ">")

    def _line(self, raw: bytes):
        if self.long:
            self.queue.append((None, self.long + len(raw)))
            self.long = 0
            return
        if len(raw) > MAX_LINE * 4:
            self.queue.append((None, len(raw)))
            return
        self.queue.append((raw.decode("utf-8", "replace").strip(), len(raw)))
        self.queued += len(raw)

    def dataReceived(self, data):
        if self.finished:
            return
        start = 0
        while True:
            i = data.find(b"\n", start)
            if i < 0:
                break
            self.buf += data[start:i]
            self._line(bytes(self.buf))
            self.buf = bytearray()
            start = i + 1
        self.buf += data[start:]
        if len(self.buf) > MAX_LINE * 4:        # keep no more than needed to refuse it
            self.long += len(self.buf)
            self.buf = bytearray()
        if self.queued > BATCH_BACKLOG:
            self.proto.write(b"% Input overflow: too many commands waiting, batch ended\n")
            self.status = 1
            self.queue = []
            return self._finish()
        self._schedule()

    def eof(self):
        self.at_eof = True
        if self.buf.strip() or self.long:
            self._line(bytes(self.buf))
        self.buf = bytearray()
        self._schedule()

    def _schedule(self):
        if self.busy or self.finished or self._call is not None:
            return
        self._call = self.console.reactor.callLater(0, self._next)

    def _next(self):
        self._call = None
        if self.busy or self.finished:
            return
        while self.queue:
            line, n = self.queue.pop(0)
            if line is None:
                self.proto.write(("%s\n" % too_long(n)).encode())
                self.status = 1
                continue
            self.queued -= n
            if not line:
                continue
            if line.split()[0].lower() in ("exit", "logout", "quit"):
                return self._finish()
            self.busy = True
            self.proto.write(("%s%s\n" % (self.prompt(), line)).encode("utf-8", "replace"))
            d = run_line(self.console.tree, self.ctx, line, prompt_len=len(self.prompt()))
            d.addCallback(self._done)
            d.addErrback(lambda f: _log.failure("batch", failure=f))
            return
        if self.at_eof:
            self._finish()

    def _done(self, r):
        if r.status:
            self.status = r.status
        d = budget.write_sliced(self.proto.write, (r.text + "\n").encode("utf-8", "replace"),
                                self.console.reactor, lambda: not self.finished) \
            if r.text else defer.succeed(None)

        def written(_):
            self.busy = False
            self._schedule()        # next command in a later turn: no recursion
        d.addCallback(written)

    def _finish(self):
        if not self.finished:
            self.finished = True
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
            self.release()
            self.proto.processEnded(_ended(self.status))


# ---------------------------------------------------------------------------
# Transport and log filter


def _peer_host(t) -> str:
    try:
        return t.transport.getPeer().host
    except Exception:
        return "?"


def _crypto(t) -> str:
    """IOS's "crypto cipher 'aes128-ctr', hmac 'hmac-sha2-256'"."""
    enc = getattr(t, "currentEncryptions", None)
    cip = getattr(enc, "outCipType", b"none") or b"none"
    mac = getattr(enc, "outMACType", b"none") or b"none"
    return "crypto cipher '%s', hmac '%s'" % (cip.decode("ascii", "replace"),
                                              mac.decode("ascii", "replace"))


class CbacServerTransport(transport.SSHServerTransport):
    """conch's server transport, logging IOS style: a client's normal exit
    (SSH_DISCONNECT_BY_APPLICATION, what OpenSSH sends) is not an error,
    and an authenticated session's end is ``%SSH-5-SSH2_CLOSE``."""

    ios_tty = None
    ios_user = None
    _grace = None

    def connectionMade(self):
        transport.SSHServerTransport.connectionMade(self)
        console = self.factory.console
        console.startup_begins(self, _peer_host(self))
        if console.login_grace:
            self._grace = console.reactor.callLater(console.login_grace, self._grace_expired)

    def _grace_expired(self):
        self._grace = None
        if self.ios_user is None:
            self.sendDisconnect(transport.DISCONNECT_PROTOCOL_ERROR, b"login grace time exceeded")

    def authenticated(self):
        """Logged in: no longer counted as a startup, no grace timer."""
        self.factory.console.startup_ends(self)
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None

    def receiveError(self, reasonCode, description):
        if reasonCode == transport.DISCONNECT_BY_APPLICATION:
            return
        _log.warn("SSH2 session from {peer} disconnected by the client: code {code} ({description})",
                  peer=_peer_host(self), code=reasonCode,
                  description=description.decode("utf-8", "replace")
                  if isinstance(description, bytes) else description)

    def connectionLost(self, reason):
        self.factory.console.startup_ends(self)
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None
        transport.SSHServerTransport.connectionLost(self, reason)
        if self.ios_user is not None:
            ios.message("SSH", 5, "SSH2_CLOSE",
                        "SSH2 Session from %s (tty = %s) for user '%s' using %s closed"
                        % (_peer_host(self), self.ios_tty, self.ios_user, _crypto(self)))


#: Namespaces of conch's own log events (and of our subclasses of conch's
#: classes, whose loggers take the subclass's name).
_CONCH_NAMESPACES = ("twisted.conch.", "cbac.console.ssh.Cbac")


def is_conch_chatter(event) -> bool:
    """An event of conch's below warning level (key exchange, channel
    requests, "connection lost", ...): shown only under ``debug ip ssh``."""
    from twisted.logger import LogLevel
    ns = event.get("log_namespace") or ""
    level = event.get("log_level")
    if event.get("isError") or event.get("log_failure") is not None:
        return False
    if not ns.startswith(_CONCH_NAMESPACES):
        if ns != "log_legacy":
            return False
        # legacy log.msg events: conch's own in older Twisted (22.4), logged
        # in the context of our transport ("CbacServerTransport,0,10.1.1.1",
        # "SSHChannel session (0) on ... CbacServerTransport,..."), and
        # twisted.internet.tcp.Port's "CbacSSHFactory starting on 2222"
        system = str(event.get("log_system") or event.get("system") or "")
        if "CbacServerTransport" in system:
            return level is None or level < LogLevel.warn
        fmt = event.get("message") or ()
        text = fmt[0] if fmt and isinstance(fmt[0], str) else ""
        return text.startswith("CbacSSHFactory starting on ")
    return level is None or level < LogLevel.warn


class ConchLogFilter:
    """Wraps a log observer (twistd's log file) so that conch's chatter is
    dropped (``debug ip ssh`` brings it back as debug lines, see
    :func:`ssh_debug_forwarder`).  Compares equal to the wrapped observer,
    so ``removeObserver(original)`` still removes it."""

    def __init__(self, observer):
        self.observer = observer

    def __call__(self, event):
        if is_conch_chatter(event):
            return
        self.observer(event)

    def __eq__(self, other):
        if isinstance(other, ConchLogFilter):
            return other.observer == self.observer
        return other is self.observer or other == self.observer

    def __hash__(self):
        return hash(self.observer)


def ssh_debug_forwarder(event):
    """A log observer: under ``debug ip ssh`` conch's chatter becomes IOS
    debug lines (``SSH: ...``), which reach twistd's log, ``terminal
    monitor`` sessions and the logging buffer like every ``debug``."""
    if not ios.debugging.on("ip ssh") or not is_conch_chatter(event):
        return
    from twisted.logger import formatEvent
    try:
        text = formatEvent(event)
    except Exception:      # noqa: BLE001 - never break logging
        return
    ios.debugging.line("ip ssh", "SSH: " + " ".join(text.split()))


def quiet_conch_log(publisher=None, keep=()):
    """Wrap the observers of ``publisher`` (the global one by default; call
    it once logging has begun, e.g. ``reactor.callWhenRunning``) in
    :class:`ConchLogFilter`, except those in ``keep`` (cbac's own
    observers, which only take IOS messages and warnings)."""
    if publisher is None:
        from twisted.logger import globalLogPublisher as publisher
    obs = getattr(publisher, "_observers", None)
    if obs is None:
        return
    for i, o in enumerate(obs):
        if isinstance(o, ConchLogFilter) or o is ssh_debug_forwarder or any(o is k for k in keep):
            continue
        obs[i] = ConchLogFilter(o)
    if ssh_debug_forwarder not in obs:
        publisher.addObserver(ssh_debug_forwarder)


# ---------------------------------------------------------------------------
# Factory and service


class CbacSSHFactory(factory.SSHFactory):
    services = {b"ssh-userauth": CbacUserAuth, b"ssh-connection": connection.SSHConnection}
    protocol = CbacServerTransport
    noisy = False

    def __init__(self, console: Console, host_key: keys.Key):
        self.console = console
        self.portal = portal.Portal(CbacRealm(console),
                                    [PasswordChecker(console), PublicKeyChecker(console)])
        self.privateKeys = {host_key.sshType(): host_key}
        self.publicKeys = {host_key.sshType(): host_key.public()}
        if os.path.exists("/etc/ssh/moduli"):
            try:
                from twisted.conch.openssh_compat import primes
                self.primes = primes.parseModuliFile("/etc/ssh/moduli")
            except Exception:
                pass

    def getPrimes(self):
        return getattr(self, "primes", None)

    def buildProtocol(self, addr):
        """conch's SSHFactory.buildProtocol, without its "cannot find
        moduli file" message at every connection.  Key exchanges by choice:
        never SHA-1 ones (RFC 9142: diffie-hellman-group14-sha1,
        diffie-hellman-group-exchange-sha1); diffie-hellman-group-exchange-
        sha256 only with a moduli file (``/etc/ssh/moduli``, from
        openssh-server); the rest are conch's (curve25519-sha256,
        ecdh-sha2-nistp256/384/521, and mlkem768x25519-sha256 in newer
        Twisted)."""
        host = getattr(addr, "host", "")
        if not self.console.permits(host):
            _log.info("vty access-class refused SSH connection from {host}", host=host)
            return None
        if not self.console.startup_permits(host):
            return None
        t = protocol.Factory.buildProtocol(self, addr)
        try:
            from itertools import chain
            t.supportedPublicKeys = list(chain.from_iterable(
                k.supportedSignatureAlgorithms() for k in self.privateKeys.values()))
        except AttributeError:      # older Twisted
            t.supportedPublicKeys = list(self.privateKeys.keys())
        primes = self.getPrimes()
        t.supportedKeyExchanges = [
            k for k in t.supportedKeyExchanges
            if not k.endswith(b"-sha1")
            and (primes or not k.startswith(b"diffie-hellman-group-exchange-"))]
        return t


class ConsoleService(service.MultiService):
    """Listens on the endpoint strings; ``ports`` are the listening ports
    once started (``whenListening()`` fires with them)."""

    def __init__(self, console: Console, sshfactory: CbacSSHFactory, listen_endpoints, reactor):
        service.MultiService.__init__(self)
        self.console = console
        self.factory = sshfactory
        self.endpoints = list(listen_endpoints)
        self.reactor = reactor
        self.ports = []
        self._listening = None

    def startService(self):
        service.MultiService.startService(self)
        ds = []
        for desc in self.endpoints:
            if isinstance(desc, str):
                ep = endpoints.serverFromString(self.reactor, desc)
            else:
                ep, desc = desc, getattr(desc, "description", repr(desc))
            d = ep.listen(self.factory)
            d.addCallback(self._listened, desc)
            ds.append(d)
        self._listening = defer.gatherResults(ds, consumeErrors=True)
        self._listening.addErrback(self._listen_failed)

    def _listened(self, port, desc):
        self.ports.append(port)
        if len(self.ports) == 1:
            ios.message("SSH", 5, "ENABLED", "SSH 2.0 has been enabled")
        _log.info("cbac console listening on {desc}", desc=desc)
        return port

    def _listen_failed(self, f):
        _log.failure("cbac console could not listen", failure=f)
        return f

    def whenListening(self):
        """Deferred firing with the list of listening ports."""
        d = defer.Deferred()

        def cb(r):
            d.callback(list(self.ports))
            return r

        def eb(f):
            d.errback(f)
        self._listening.addCallbacks(cb, eb)
        return d

    def stopService(self):
        service.MultiService.stopService(self)
        self.console.guard.stop()
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])


def makeConsoleService(appliance, router_model, state_dir, listen_endpoints,
                       reactor=None, vty_permits=None, acl_permits=None, manhole=False,
                       host_key=None):
    """The SSH console service.  ``listen_endpoints``: endpoint strings such
    as ``tcp:2222:interface=192.0.2.1``; ``vty_permits(source) -> bool``
    implements ``line vty ... access-class ACL in``, ``acl_permits(acl,
    source) -> bool`` ``login quiet-mode access-class ACL``; ``manhole``:
    allow the ``manhole`` command (``twistd cbac --manhole``; off by default);
    ``host_key``: the SSH host key (else read or made in ``state_dir``).
    An endpoint may also be an endpoint object (the management process
    gets sockets the engine bound: ``AdoptedStreamServerEndpoint``)."""
    if reactor is None:
        from twisted.internet import reactor
    console = Console(appliance, router_model, reactor, vty_permits, acl_permits=acl_permits)
    console.manhole = manhole
    f = CbacSSHFactory(console, host_key if host_key is not None else load_host_key(state_dir))
    svc = ConsoleService(console, f, listen_endpoints, reactor)
    svc.setName("console")
    return svc
