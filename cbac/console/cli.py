"""IOS-style command engine and the interactive terminal protocol.

The engine is data driven: a :class:`CommandTree` of keyword nodes, each with
an IOS help string, an optional handler and a privilege level.  Adding a
command is one line (see :mod:`cbac.console.commands`)::

    tree.add("show ip inspect all", lambda ctx, args: ctx.app.show_ip_inspect("all"),
             help="Inspection all available information", pipe=True)

Syntax tokens: lower-case words are keywords (matched by unique prefix,
case-insensitively); ``WORD`` takes one word, ``LINE`` the rest of the line,
``<lo-hi>`` a number in a range.  A handler is called as ``handler(ctx, args)``
(``args``: the parameter values in order) and returns the text to print
(``str``), a :class:`Result`, ``None``, an iterable of lines (a generator:
taken in slices, :func:`cbac.console.budget.collect`) or a Deferred of one
of these.

The parser part (:meth:`CommandTree.parse`, :meth:`help`, :meth:`complete`)
is sans-I/O; :func:`run_line` executes one line against a :class:`Context`;
:class:`CLIProtocol` is the insults terminal protocol of an interactive
session (prompt, ``?``, Tab, history, ``--More--`` paging, ``enable``,
``terminal monitor``, the manhole).
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from twisted.conch import recvline
from twisted.internet import defer
from twisted.logger import Logger

from cbac.console import budget, regex

_log = Logger(namespace="cbac.console")

# ---------------------------------------------------------------------------
# Results


class Result:
    """Handler output with an exit status (exec requests use it)."""

    def __init__(self, text: str = "", status: int = 0):
        self.text = text
        self.status = status


class Parsed:
    """Outcome of :meth:`CommandTree.parse`."""

    def __init__(self):
        self.node: Optional[Node] = None
        self.args: list = []
        self.error: Optional[str] = None      # invalid / ambiguous / incomplete
        self.pos = 0                          # caret offset for "invalid"
        self.text = ""                        # the ambiguous part of the line
        self.pipe: Optional[tuple[str, str]] = None   # (filter, regex)


INVALID = "% Invalid input detected at '^' marker."
INCOMPLETE = "% Incomplete command."
UNRECOGNIZED = "% Unrecognized command"

#: longest command line accepted (characters); longer lines are refused
#: before parsing, an interactive line stops growing (bell) at this length
MAX_LINE = 1024


def too_long(n: int) -> str:
    return "%% Command line too long (%d characters; the maximum is %d)." % (n, MAX_LINE)


def ambiguous(text: str) -> str:
    return '%% Ambiguous command:  "%s"' % text


# ---------------------------------------------------------------------------
# The tree


class Param:
    """A parameter token: WORD, LINE or <lo-hi>."""

    def __init__(self, token: str):
        self.token = token
        self.kind = "word"
        self.lo = self.hi = None
        m = re.fullmatch(r"<(\d+)-(\d+)>", token)
        if m:
            self.kind = "range"
            self.lo, self.hi = int(m.group(1)), int(m.group(2))
        elif token == "LINE":
            self.kind = "line"
        elif token == "A.B.C.D":
            self.kind = "ip"

    @property
    def rank(self) -> int:
        return {"range": 0, "ip": 0, "word": 1, "line": 2}[self.kind]

    def match(self, word: str) -> bool:
        if self.kind == "range":
            return word.isdigit() and self.lo <= int(word) <= self.hi
        if self.kind == "ip":
            parts = word.split(".")
            return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)
        return True

    def convert(self, word: str):
        return int(word) if self.kind == "range" else word


class Node:
    def __init__(self, keyword: Optional[str] = None, param: Optional[Param] = None,
                 help: str = ""):
        self.keyword = keyword
        self.param = param
        self.help = help
        self.children: list[Node] = []
        self.handler: Optional[Callable] = None
        self.privilege = 1          # to run this node's handler
        self.min_privilege = 16     # lowest privilege that sees this node
        self.pipe = False

    @property
    def name(self) -> str:
        return self.keyword if self.keyword is not None else self.param.token

    def visible(self, priv: int) -> bool:
        return self.min_privilege <= priv

    def runnable(self, priv: int) -> bool:
        return self.handler is not None and self.privilege <= priv

    def child(self, token: str) -> Optional["Node"]:
        for c in self.children:
            if c.name == token:
                return c
        return None

    def __repr__(self):
        return "<Node %s>" % self.name


PIPE_FILTERS = (
    ("begin", "Begin with the line that matches"),
    ("count", "Count number of lines which match regexp"),
    ("exclude", "Exclude lines that match"),
    ("include", "Include lines that match"),
    ("section", "Filter a section of output"),
)


def _is_param_token(tok: str) -> bool:
    return tok in ("WORD", "LINE", "A.B.C.D") or bool(re.fullmatch(r"<\d+-\d+>", tok))


def _tokens(text: str) -> list[tuple[str, int]]:
    return [(m.group(0), m.start()) for m in re.finditer(r"\S+", text)]


class CommandTree:
    def __init__(self):
        self.root = Node(keyword="")
        self.root.min_privilege = 0

    # -- building --------------------------------------------------------
    def add(self, syntax: str, handler: Callable, help=None, privilege: int = 1,
            pipe: bool = False) -> Node:
        """Register a command.  ``help`` is the help of the last token, or a
        sequence with one entry (or None) per token."""
        toks = syntax.split()
        helps = [None] * len(toks)
        if isinstance(help, (list, tuple)):
            helps[:len(help)] = list(help)
        elif help is not None:
            helps[-1] = help
        node = self.root
        for tok, h in zip(toks, helps):
            nxt = node.child(tok if _is_param_token(tok) else tok.lower())
            if nxt is None:
                if _is_param_token(tok):
                    nxt = Node(param=Param(tok))
                else:
                    nxt = Node(keyword=tok.lower())
                node.children.append(nxt)
            if h is not None:
                nxt.help = h
            nxt.min_privilege = min(nxt.min_privilege, privilege)
            node = nxt
        node.handler = handler
        node.privilege = privilege
        node.pipe = pipe
        return node

    def describe(self, path: str, help: str) -> None:
        """Set the help string of an (intermediate) keyword."""
        node = self.root
        for tok in path.split():
            node = node.child(tok if _is_param_token(tok) else tok.lower())
            if node is None:
                raise KeyError(path)
        node.help = help

    # -- matching --------------------------------------------------------
    def _match(self, node: Node, word: str, priv: int):
        """-> (child or None, ambiguous_list)"""
        kids = [c for c in node.children if c.visible(priv)]
        lw = word.lower()
        kws = [c for c in kids if c.keyword is not None]
        for c in kws:
            if c.keyword == lw:
                return c, []
        pref = [c for c in kws if c.keyword.startswith(lw)]
        if len(pref) == 1:
            return pref[0], []
        params = sorted((c for c in kids if c.param is not None and c.param.match(word)),
                        key=lambda c: c.param.rank)
        if params:
            return params[0], []
        return None, pref

    def _caret(self, node: Node, word: str, start: int, priv: int) -> int:
        best = 0
        lw = word.lower()
        for c in node.children:
            if c.keyword is None or not c.visible(priv):
                continue
            n = 0
            for a, b in zip(lw, c.keyword):
                if a != b:
                    break
                n += 1
            best = max(best, n)
        return start + min(best, max(len(word) - 1, 0))

    def walk(self, text: str, priv: int, base: int = 0) -> Parsed:
        """Walk all words of ``text`` (no pipe); error 'incomplete' is not
        set here (the caller decides)."""
        p = Parsed()
        node = self.root
        for word, start in _tokens(text):
            if node.param is not None and node.param.kind == "line":
                break
            child, amb = self._match(node, word, priv)
            if child is None:
                if len(amb) > 1:
                    p.error = "ambiguous"
                    p.text = text[:start + len(word)].strip()
                else:
                    p.error = "invalid"
                    p.pos = base + self._caret(node, word, start, priv)
                p.node = node
                return p
            if child.param is not None:
                if child.param.kind == "line":
                    p.args.append(text[start:].strip())
                else:
                    p.args.append(child.param.convert(word))
            node = child
        p.node = node
        return p

    def parse(self, line: str, priv: int) -> Parsed:
        cmd, bar, rest = line.partition("|")
        p = self.walk(cmd, priv)
        if p.error:
            return p
        if not p.node.runnable(priv):
            p.error = "incomplete"
            return p
        if bar:
            if not p.node.pipe:
                p.error = "invalid"
                p.pos = len(cmd)
                return p
            toks = _tokens(rest)
            if not toks:
                p.error = "incomplete"
                return p
            word, start = toks[0]
            names = [n for n, _ in PIPE_FILTERS if n.startswith(word.lower())]
            if len(names) != 1:
                p.error = "invalid"
                p.pos = len(cmd) + 1 + start
                return p
            regex = rest[start + len(word):].strip()
            if not regex:
                p.error = "incomplete"
                return p
            p.pipe = (names[0], regex)
        return p

    # -- help and completion ---------------------------------------------
    def help(self, text: str, priv: int, width: int = 80) -> list[str]:
        """Lines printed for ``?`` typed after ``text``."""
        cmd, bar, rest = text.partition("|")
        if bar:
            p = self.walk(cmd, priv)
            if p.error or not p.node.runnable(priv) or not p.node.pipe:
                return [UNRECOGNIZED]
            toks = _tokens(rest)
            if not toks or (len(toks) == 1 and not rest[-1:].isspace()):
                part = toks[0][0].lower() if toks else ""
                items = [(n, h) for n, h in PIPE_FILTERS if n.startswith(part)]
                if toks:
                    return _wrap([n for n, _ in items], width) if items else [UNRECOGNIZED]
                return _help_table(items)
            return _help_table([("LINE", "Regular Expression")])
        ends_space = text == "" or text[-1:].isspace()
        toks = _tokens(text)
        if not ends_space:
            head = text[:toks[-1][1]]
            partial = toks[-1][0]
        else:
            head, partial = text, None
        p = self.walk(head, priv)
        if p.error == "ambiguous":
            return [ambiguous(p.text)]
        if p.error:
            return [UNRECOGNIZED]
        node = p.node
        if partial is not None:
            lw = partial.lower()
            names = sorted(c.keyword for c in node.children
                           if c.keyword is not None and c.visible(priv)
                           and c.keyword.startswith(lw))
            names += [c.param.token for c in node.children
                      if c.param is not None and c.visible(priv) and c.param.match(partial)]
            if node.param is not None and node.param.kind == "line":
                names = ["LINE"]
            return _wrap(names, width) if names else [UNRECOGNIZED]
        if node.param is not None and node.param.kind == "line":
            return _help_table([("LINE", node.help)]) + ["  <cr>"]
        items = sorted((c.keyword, c.help) for c in node.children
                       if c.keyword is not None and c.visible(priv))
        items += [(c.param.token, c.help) for c in node.children
                  if c.param is not None and c.visible(priv)]
        out = _help_table(items)
        if node is not self.root and node.runnable(priv):
            if node.pipe:
                out += _help_table([("|", "Output modifiers")], len(max(
                    [i[0] for i in items] + ["|"], key=len)))
            out.append("  <cr>")
        return out or [UNRECOGNIZED]

    def complete(self, text: str, priv: int) -> Optional[str]:
        """Text to append for Tab after ``text``, or None."""
        if not text or text[-1:].isspace() or "|" in text:
            return None
        toks = _tokens(text)
        head, partial = text[:toks[-1][1]], toks[-1][0]
        p = self.walk(head, priv)
        if p.error:
            return None
        lw = partial.lower()
        names = [c.keyword for c in p.node.children
                 if c.keyword is not None and c.visible(priv) and c.keyword.startswith(lw)]
        if not names:
            return None
        if lw in names:
            names = [lw]
        if len(names) == 1:
            return names[0][len(partial):] + " "
        common = names[0]
        for n in names[1:]:
            while not n.startswith(common):
                common = common[:-1]
        return common[len(partial):] or None


def _help_table(items, minwidth: int = 0) -> list[str]:
    if not items:
        return []
    w = max(max(len(k) for k, _ in items), minwidth, 10) + 2
    return [("  %-*s%s" % (w, k, h)).rstrip() for k, h in items]


def _wrap(words, width: int) -> list[str]:
    lines, cur = [], ""
    for w in words:
        if cur and len(cur) + 2 + len(w) > width:
            lines.append(cur)
            cur = ""
        cur = cur + "  " + w if cur else w
    if cur:
        lines.append(cur)
    return lines


def apply_filter(text: str, pipe: Optional[tuple[str, str]]) -> str:
    """``| include/exclude/begin/count/section REGEX`` on output text, at
    once (:func:`cbac.console.budget.filter_text` is the sliced form that
    :func:`run_line` uses).  Linear-time matching (:mod:`cbac.console.regex`)."""
    if pipe is None:
        return text
    from cbac.console import budget
    out = budget._Out()
    for _ in budget._filter_steps(text, pipe[0], regex.compile(pipe[1]), out):
        pass
    return out.text()


# ---------------------------------------------------------------------------
# Execution context


class Context:
    """What a handler sees: the appliance, the user and the session.

    ``session`` provides ``interactive`` (bool) and, when interactive,
    ``ask(prompt, echo=True) -> Deferred[str|None]``, ``enter_manhole()``,
    ``logout()``, ``set_monitor(bool)``, ``terminal_length`` and
    ``history``."""

    def __init__(self, app, user: str, privilege: int, peer: str = "",
                 session=None, console=None):
        self.app = app
        self.user = user
        self.privilege = privilege
        self.login_privilege = privilege
        self.peer = peer
        self.session = session
        self.console = console
        self.line = "vty0"

    @property
    def interactive(self) -> bool:
        return bool(self.session is not None and getattr(self.session, "interactive", False))

    def confirm(self, prompt: str, default: bool = True):
        """IOS ``[confirm]`` question; non-interactive sessions get True."""
        if not self.interactive:
            return defer.succeed(True)
        d = self.session.ask(prompt)

        def answer(a):
            if a is None:
                return False
            a = a.strip().lower()
            return default if not a else a.startswith("y")
        return d.addCallback(answer)

    def ask(self, prompt: str, default: str = ""):
        if not self.interactive:
            return defer.succeed(default)
        d = self.session.ask(prompt)
        return d.addCallback(lambda a: None if a is None else (a.strip() or default))


def _error_text(p: Parsed, line: str, prompt_len: int, echo: bool) -> str:
    if p.error == "ambiguous":
        return ambiguous(p.text)
    if p.error == "incomplete":
        return INCOMPLETE + ("" if echo else "\n")
    out = []
    if echo:
        out.append(line)
    out.append(" " * (prompt_len + p.pos) + "^")
    out.append(INVALID)
    return "\n".join(out) + ("" if echo else "\n")


def run_line(tree: CommandTree, ctx: Context, line: str, prompt_len: int = 0,
             echo: bool = False):
    """Execute one command line.  Returns a Deferred firing with a
    :class:`Result` (text without trailing newline; status 1 for bad input
    or a failed command)."""
    if len(line) > MAX_LINE:
        return defer.succeed(Result(too_long(len(line)), 1))
    p = tree.parse(line, ctx.privilege)
    if p.error:
        if p.error == "incomplete" and p.node is not tree.root and p.node.keyword == "show" \
                and not p.args:
            return defer.succeed(Result('% Type "show ?" for a list of subcommands', 1))
        return defer.succeed(Result(_error_text(p, line, prompt_len, echo), 1))
    if p.pipe is not None:
        try:
            regex.compile(p.pipe[1])
        except regex.RegexError:
            return defer.succeed(Result("%% Invalid regular expression: %s" % p.pipe[1], 1))
    d = defer.maybeDeferred(p.node.handler, ctx, p.args)
    console = getattr(ctx, "console", None)
    reactor = getattr(console, "reactor", None)

    def done(r):
        if r is None:
            r = Result("")
        elif not isinstance(r, (str, tuple, Result)) and hasattr(r, "__iter__"):
            # a generator of lines: taken in slices (budget.collect)
            return budget.collect(r, reactor).addCallback(done)
        elif isinstance(r, tuple):          # (ok, text) from the appliance
            r = Result(r[1] or "", 0 if r[0] else 1)
        elif not isinstance(r, Result):
            r = Result(str(r))
        if p.pipe is None:
            r.text = r.text.rstrip("\n")
            return r

        def filtered(text):
            r.text = text
            return r
        return budget.filter_text(r.text.rstrip("\n"), p.pipe, reactor).addCallback(filtered)

    def failed(f):
        _log.failure("command {line!r} failed", failure=f, line=line)
        return Result("%% Command failed: %s" % (f.getErrorMessage() or f.type.__name__), 1)
    return d.addCallback(done).addErrback(failed)


# ---------------------------------------------------------------------------
# The interactive terminal protocol

def _tty_number(ctx):
    """IOS's tty number of a session's line (vty N is tty N+2)."""
    line = getattr(ctx, "line", "") or ""
    return int(line[3:]) + 2 if line.startswith("vty") and line[3:].isdigit() else line


CTRL = {k: bytes([ord(k) - 64]) for k in "ABCDEFKLNPUWZ"}
_MORE = b" --More-- "


class CLIProtocol(recvline.HistoricRecvLine):
    """One interactive IOS-style session on an insults terminal."""

    interactive = True
    MONITOR_QUEUE = 500

    def __init__(self, tree: CommandTree, ctx: Context, reactor=None,
                 namespace_factory=None, on_close=None, idle_timeout=None):
        recvline.HistoricRecvLine.__init__(self)
        self.tree = tree
        self.ctx = ctx
        ctx.session = self
        self.reactor = reactor
        self.namespace_factory = namespace_factory
        self.on_close = on_close
        self.idle_timeout = idle_timeout     # seconds or None
        self._idle_call = None
        self.terminal_length = 24
        self._length_set = False
        self.terminal_width = 80
        self.monitor = False
        self.state = "line"                 # line / ask / more / busy / manhole / closed
        self._ask = None                    # (deferred, echo, buffer)
        self._more_lines: list[str] = []
        self._pending: list[str] = []       # monitor lines held back
        self._last_cr = False

    # -- prompt ----------------------------------------------------------
    @property
    def prompt(self) -> bytes:
        host = getattr(self.ctx.app, "hostname", "Router") or "Router"
        return (host + ("#" if self.ctx.privilege >= 15 else ">")).encode("utf-8", "replace")

    @property
    def ps(self):
        return (self.prompt, b"")

    def connectionMade(self):
        recvline.HistoricRecvLine.connectionMade(self)
        t = self.terminal
        self.keyHandlers.update({
            CTRL["A"]: self.handle_HOME, CTRL["E"]: self.handle_END,
            CTRL["B"]: self.handle_LEFT, CTRL["F"]: self.handle_RIGHT,
            CTRL["P"]: self.handle_UP, CTRL["N"]: self.handle_DOWN,
            CTRL["U"]: self.handle_KILL_LINE, CTRL["W"]: self.handle_KILL_WORD,
            CTRL["K"]: self.handle_KILL_END, CTRL["L"]: self.handle_REDRAW,
            CTRL["D"]: self.handle_DELETE, CTRL["Z"]: self.handle_noop,
            b"\x03": self.handle_INT, b"\x7f": self.handle_BACKSPACE,
            b"\x08": self.handle_BACKSPACE,
            t.F1: self.handle_noop,
        })
        self._touch()

    def initializeScreen(self):
        # no reset/clear: keep what the client shows
        self.terminal.write(b"\n" + self.prompt)
        self.setInsertMode()

    def terminalSize(self, width, height):
        # stock RecvLine erases the screen; IOS just takes the new size
        self.width, self.height = width, height
        self.terminal_width = width or 80
        if not self._length_set and height:
            self.terminal_length = height

    # -- output helpers ----------------------------------------------------
    def write(self, text: str) -> None:
        if self.state == "closed" or self.terminal is None:
            return
        self.terminal.write(text.encode("utf-8", "replace"))

    def _redraw(self):
        self.terminal.write(self.prompt + b"".join(self.lineBuffer))
        back = len(self.lineBuffer) - self.lineBufferIndex
        if back:
            self.terminal.cursorBackward(back)

    def _touch(self):
        self.last_input = self.reactor.seconds() if self.reactor is not None else 0
        if self.reactor is None or not self.idle_timeout:
            return
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self.idle_timeout)
        else:
            self._idle_call = self.reactor.callLater(self.idle_timeout, self._idle_expired)

    def _idle_expired(self):
        self._idle_call = None
        if self.state != "closed":
            from cbac.log import ios
            ios.message("SYS", 6, "TTY_EXPIRE_TIMER", "(exec timer expired, tty %s (%s)), user %s"
                        % (_tty_number(self.ctx), self.ctx.peer, self.ctx.user))
            self.write("\n")
            self.logout()

    # -- session API for handlers ------------------------------------------
    def ask(self, prompt: str, echo: bool = True):
        d = defer.Deferred()
        self.write(prompt)
        self._ask = (d, echo, [])
        self.state = "ask"
        return d

    def _monitor_hub(self):
        obs = getattr(self.ctx.app, "log_observers", None)
        return getattr(obs, "monitor", None)

    def set_monitor(self, on: bool) -> None:
        self.monitor = on
        hub = self._monitor_hub()
        if hub is not None:
            if on:
                hub.attach(self.monitor_line)
            else:
                hub.detach(self.monitor_line)

    def set_length(self, n: int) -> None:
        self.terminal_length = n
        self._length_set = True

    @property
    def history(self):
        return [h.decode("utf-8", "replace") for h in self.historyLines]

    def logout(self):
        if self.state == "closed":
            return
        self.state = "closed"
        # not terminal.loseConnection(): insults would reset (clear) the
        # user's screen on the way out
        self.terminal.transport.loseConnection()

    def enter_manhole(self):
        from twisted.conch import manhole
        ns = self.namespace_factory() if self.namespace_factory else {}
        cli = self

        class _Manhole(manhole.ColoredManhole):
            def handle_QUIT(self):
                cli._leave_manhole(self)

            def terminalSize(self, width, height):
                self.width, self.height = width, height

            def initializeScreen(self):
                self.terminal.write(self.ps[self.pn])
                self.setInsertMode()

        m = _Manhole(ns)
        self.state = "manhole"
        self.write("Python manhole; Ctrl-D on an empty line returns to the CLI.\n")
        self.terminal.terminalProtocol = m
        m.makeConnection(self.terminal)

    def _leave_manhole(self, m):
        self.terminal.terminalProtocol = self
        self.terminal.write(b"\n")
        self.state = "line"
        self._flush_pending()
        self._redraw()

    # -- monitor -----------------------------------------------------------
    def monitor_line(self, text: str) -> None:
        if not self.monitor or self.state == "closed":
            return
        if self.state != "line":
            if len(self._pending) < self.MONITOR_QUEUE:
                self._pending.append(text)
            return
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        self.write(text + "\n")
        self._redraw()

    def _flush_pending(self):
        pending, self._pending = self._pending, []
        for t in pending:
            self.write(t + "\n")

    # -- keys --------------------------------------------------------------
    def keystrokeReceived(self, keyID, modifier):
        self._touch()
        if self.state == "closed":
            return
        if keyID == b"\n" and self._last_cr:
            self._last_cr = False
            return                          # CR LF from a client: one Enter
        self._last_cr = keyID == b"\r"
        if self.state == "more":
            return self._more_key(keyID)
        if self.state == "ask":
            return self._ask_key(keyID)
        if self.state != "line":
            return
        if keyID == b"?":
            return self.handle_HELP()
        if keyID in self.keyHandlers:
            return self.keyHandlers[keyID]()
        if isinstance(keyID, bytes) and len(keyID) == 1 and 32 <= keyID[0] < 127:
            return self.characterReceived(keyID, False)
        # other control keys are ignored, as on IOS

    def handle_noop(self):
        pass

    def characterReceived(self, ch, moreCharactersComing):
        if len(self.lineBuffer) >= MAX_LINE:
            self.terminal.write(b"\x07")   # IOS beeps at the end of its line buffer
            return
        recvline.HistoricRecvLine.characterReceived(self, ch, moreCharactersComing)

    def handle_INT(self):
        self.write("^C\n")
        self.lineBuffer, self.lineBufferIndex = [], 0
        self._redraw()

    def handle_KILL_LINE(self):
        self.handle_HOME()
        self.terminal.eraseToLineEnd()
        self.lineBuffer, self.lineBufferIndex = [], 0

    def handle_KILL_END(self):
        self.terminal.eraseToLineEnd()
        del self.lineBuffer[self.lineBufferIndex:]

    def handle_KILL_WORD(self):
        i = self.lineBufferIndex
        while i > 0 and self.lineBuffer[i - 1] == b" ":
            i -= 1
        while i > 0 and self.lineBuffer[i - 1] != b" ":
            i -= 1
        n = self.lineBufferIndex - i
        if n:
            self.terminal.cursorBackward(n)
            del self.lineBuffer[i:self.lineBufferIndex]
            self.lineBufferIndex = i
            self.terminal.eraseToLineEnd()
            rest = b"".join(self.lineBuffer[i:])
            if rest:
                self.terminal.write(rest)
                self.terminal.cursorBackward(len(rest))

    def handle_REDRAW(self):
        self.terminal.write(b"\n")
        self._redraw()

    def _text_before_cursor(self) -> str:
        return b"".join(self.lineBuffer[:self.lineBufferIndex]).decode("utf-8", "replace")

    def handle_HELP(self):
        text = self._text_before_cursor()
        self.terminal.write(b"?\n")
        lines = self.tree.help(text, self.ctx.privilege, self.terminal_width)
        self.write("\n".join(lines) + "\n\n")
        self._redraw()

    def handle_TAB(self):
        add = self.tree.complete(self._text_before_cursor(), self.ctx.privilege)
        if not add:
            self.terminal.write(b"\x07")
            return
        for ch in add:
            self.characterReceived(ch.encode(), True)

    # -- ask ----------------------------------------------------------------
    def _ask_key(self, keyID):
        d, echo, buf = self._ask
        if keyID in (b"\r", b"\n"):
            self._ask = None
            self.state = "busy"
            self.terminal.write(b"\n")
            d.callback(b"".join(buf).decode("utf-8", "replace"))
        elif keyID == b"\x03":
            self._ask = None
            self.state = "busy"
            self.terminal.write(b"\n")
            d.callback(None)
        elif keyID in (self.terminal.BACKSPACE, b"\x7f", b"\x08"):
            if buf:
                buf.pop()
                if echo:
                    self.terminal.cursorBackward()
                    self.terminal.deleteCharacter()
        elif isinstance(keyID, bytes) and len(keyID) == 1 and keyID[0] >= 32:
            buf.append(keyID)
            if echo:
                self.terminal.write(keyID)

    # -- lines ----------------------------------------------------------------
    def lineReceived(self, line: bytes):
        text = line.decode("utf-8", "replace").strip()
        if not text:
            self._prompt()
            return
        self.state = "busy"
        d = run_line(self.tree, self.ctx, text, prompt_len=len(self.prompt))
        d.addCallback(self._show_result)
        d.addErrback(lambda f: _log.failure("CLI", failure=f))

    def _show_result(self, r: Result):
        if self.state in ("closed", "manhole"):
            return
        text = r.text
        if not text:
            self._prompt()
            return
        lines = text.split("\n")
        page = self.terminal_length - 1
        if self.terminal_length > 0 and len(lines) > page:
            self.write("\n".join(lines[:page]) + "\n")
            self._more_lines = lines[page:]
            self._more_prompt()
        else:
            d = budget.write_sliced(self.terminal.write,
                                    (text + "\n").encode("utf-8", "replace"),
                                    self.reactor, lambda: self.state != "closed")
            d.addCallback(lambda _: self._prompt())

    def _more_prompt(self):
        self.state = "more"
        self.terminal.write(_MORE)

    def _more_key(self, keyID):
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        if keyID == b" ":
            n = max(self.terminal_length - 1, 1)
        elif keyID in (b"\r", b"\n"):
            n = 1
        else:
            self._more_lines = []
            self._prompt()
            return
        chunk, self._more_lines = self._more_lines[:n], self._more_lines[n:]
        self.write("\n".join(chunk) + "\n")
        if self._more_lines:
            self._more_prompt()
        else:
            self._prompt()

    def eof(self):
        """The client closed its input (scripted ``ssh -tt``): end the
        session once the current command is done."""
        self._eof = True
        if self.state == "line":
            self.logout()

    def _prompt(self):
        if self.state in ("closed", "manhole"):
            return
        if getattr(self, "_eof", False):
            self.logout()
            return
        self.state = "line"
        self._flush_pending()
        self.terminal.write(self.prompt)

    def connectionLost(self, reason):
        self.state = "closed"
        if self.monitor:
            self.set_monitor(False)
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        if self._ask is not None:
            d, self._ask = self._ask[0], None
            d.callback(None)
        if self.on_close is not None:
            cb, self.on_close = self.on_close, None
            cb(self)
