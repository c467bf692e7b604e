"""Linear-time regular expressions for the console's output filters.

``| include``, ``| exclude``, ``| begin``, ``| section`` and ``| count``
take a regular expression from any user of the console, privilege 1
included.  Python's ``re`` backtracks: ``show version | include
^(.|.){25}X`` costs 2**25 steps per line and freezes the process (the data
plane with it).  The filters therefore never use ``re``:

* with ``google-re2`` installed (PyPI ``google-re2``, module ``re2``) the
  expression is compiled by RE2, which matches in time linear in the line;
* otherwise (Debian 12 packages no Python binding of RE2) by
  :class:`NFARegex` below: the expression is parsed into a Thompson NFA and
  matched by simulating the NFA (a set of states per character), also
  linear: O(len(line) * size(expression)).

Both accept the same syntax, the usual one (IOS's own subset included):
literals, ``.``, ``[...]`` / ``[^...]`` with ranges, ``\\d \\w \\s \\D \\W \\S``
and escaped metacharacters, ``^ $``, ``( )`` / ``(?: )``, ``|``, ``* + ?``,
``{n} {n,} {n,m}`` (lazy forms match the same lines), and IOS's ``_``
stays a literal underscore, as in Python.  Backreferences and lookaround
cannot be matched in linear time and are refused
(:class:`RegexError`, shown as ``% Invalid regular expression``).
Expressions are limited to :data:`MAX_PATTERN` characters and
:data:`MAX_STATES` NFA states (``{n}`` copies its operand n times).
"""

from __future__ import annotations

try:                                   # pragma: no cover - depends on install
    import re2 as _re2
    _re2.compile("a").search("a")
except Exception:                      # noqa: BLE001 - any failure: use the NFA
    _re2 = None

#: longest filter expression accepted (IOS's command line is limited anyway)
MAX_PATTERN = 512
#: largest NFA (after expanding counted repetitions)
MAX_STATES = 4096
#: deepest nesting of parentheses
MAX_DEPTH = 50
#: state sets (lazy DFA states) cached per expression before starting over
DFA_CACHE = 2000


class RegexError(ValueError):
    pass


def engine() -> str:
    """``"re2"`` or ``"nfa"``: what :func:`compile` uses."""
    return "re2" if _re2 is not None else "nfa"


def compile(pattern: str, force_nfa: bool = False):      # noqa: A001 - like re.compile
    """An object with ``search(line) -> bool``; RegexError if invalid."""
    if len(pattern) > MAX_PATTERN:
        raise RegexError("expression longer than %d characters" % MAX_PATTERN)
    nfa = NFARegex(pattern)             # validates the subset for both engines
    if _re2 is None or force_nfa:
        return nfa
    try:
        opts = _re2.Options()
        opts.max_mem = 8 << 20
        rx = _re2.compile(pattern, opts)
    except Exception as e:             # noqa: BLE001 - re2.error and friends
        raise RegexError(str(e))
    return _Re2(rx)


class _Re2:
    def __init__(self, rx):
        self._rx = rx

    def search(self, line: str) -> bool:
        return self._rx.search(line) is not None


# ---------------------------------------------------------------------------
# Parser: pattern -> AST
#   ("char", predicate) | ("bol",) | ("eol",) | ("cat", [..]) | ("alt", [..])
#   | ("rep", node, min, max or None)

_DIGIT = frozenset("0123456789")
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPACE = frozenset(" \t\n\r\f\v")
_CLASSES = {"d": (_DIGIT, False), "D": (_DIGIT, True), "w": (_WORD, False),
            "W": (_WORD, True), "s": (_SPACE, False), "S": (_SPACE, True)}
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v"}


class _Parser:
    def __init__(self, text):
        self.s = text
        self.i = 0
        self.depth = 0

    def error(self, msg):
        raise RegexError("%s at position %d" % (msg, self.i))

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else None

    def parse(self):
        node = self.alt()
        if self.i != len(self.s):
            self.error("unbalanced parenthesis")
        return node

    def alt(self):
        branches = [self.cat()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.cat())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def cat(self):
        items = []
        while self.peek() is not None and self.peek() not in "|)":
            items.append(self.repeat())
        return ("cat", items)

    def repeat(self):
        atom = self.atom()
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                self.i += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif c == "{" and self._counted():
                lo, hi = self._count()
            else:
                return atom
            if atom[0] in ("bol", "eol"):
                self.error("nothing to repeat")
            if self.peek() == "?":          # lazy: same set of matching lines
                self.i += 1
            elif self.peek() == "+":
                self.error("possessive quantifiers are not supported")
            atom = ("rep", atom, lo, hi)

    def _counted(self):
        j = self.s.find("}", self.i)
        body = self.s[self.i + 1:j] if j > 0 else ""
        lo, _, hi = body.partition(",")
        return j > 0 and lo.isdigit() and (hi == "" or hi.isdigit())

    def _count(self):
        j = self.s.find("}", self.i)
        body = self.s[self.i + 1:j]
        self.i = j + 1
        if "," in body:
            lo, hi = body.split(",")
            lo, hi = int(lo), (int(hi) if hi else None)
        else:
            lo = hi = int(body)
        if hi is not None and hi < lo:
            self.error("min repeat greater than max repeat")
        if lo > 1000 or (hi or 0) > 1000:
            self.error("repetition count too large")
        return lo, hi

    def atom(self):
        c = self.peek()
        if c is None:
            self.error("missing expression")
        if c in "*+?":
            self.error("nothing to repeat")
        self.i += 1
        if c == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.error("parentheses nested more than %d deep" % MAX_DEPTH)
            if self.s.startswith("?:", self.i):
                self.i += 2
            elif self.peek() == "?":
                self.error("lookaround and group flags are not supported")
            node = self.alt()
            if self.peek() != ")":
                self.error("missing ), unterminated subpattern")
            self.i += 1
            self.depth -= 1
            return node
        if c == ")":
            self.error("unbalanced parenthesis")
        if c == "^":
            return ("bol",)
        if c == "$":
            return ("eol",)
        if c == ".":
            return ("char", lambda ch: ch != "\n")
        if c == "[":
            return ("char", self.klass())
        if c == "\\":
            return ("char", self.escape(in_class=False))
        return ("char", _eq(c))

    def escape(self, in_class):
        c = self.peek()
        if c is None:
            self.error("bad escape (end of pattern)")
        self.i += 1
        if c in _CLASSES:
            chars, neg = _CLASSES[c]
            return (lambda ch: ch not in chars) if neg else (lambda ch: ch in chars)
        if c.isdigit() and not in_class:
            self.error("backreferences are not supported")
        if c in "bBAZzG" and not in_class:
            self.error("\\%s is not supported" % c)
        if c in _ESCAPES:
            return _eq(_ESCAPES[c])
        if c.isalnum():
            self.error("bad escape \\%s" % c)
        return _eq(c)

    def klass(self):
        neg = False
        if self.peek() == "^":
            neg = True
            self.i += 1
        singles, ranges, preds = set(), [], []
        first = True
        while True:
            c = self.peek()
            if c is None:
                self.error("unterminated character set")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            self.i += 1
            if c == "\\":
                p = self.escape(in_class=True)
                lit = getattr(p, "literal", None)
                if lit is None:
                    preds.append(p)
                    continue
                c = lit
            if self.peek() == "-" and self.i + 1 < len(self.s) and self.s[self.i + 1] != "]":
                self.i += 1
                hi = self.peek()
                self.i += 1
                if hi == "\\":
                    p = self.escape(in_class=True)
                    hi = getattr(p, "literal", None)
                    if hi is None:
                        self.error("bad character range")
                if hi < c:
                    self.error("bad character range %s-%s" % (c, hi))
                ranges.append((c, hi))
            else:
                singles.add(c)
        singles = frozenset(singles)
        ranges = tuple(ranges)
        preds = tuple(preds)

        def member(ch):
            r = (ch in singles or any(a <= ch <= b for a, b in ranges)
                 or any(p(ch) for p in preds))
            return r != neg
        return member


def _eq(c):
    def f(ch):
        return ch == c
    f.literal = c
    return f


# ---------------------------------------------------------------------------
# Thompson construction: states are ints; kinds CHAR (pred, next),
# SPLIT (a, b), BOL (next), EOL (next), MATCH.

_CHAR, _SPLIT, _BOL, _EOL, _MATCH, _EPS = range(6)


class NFARegex:
    """A regular expression matched by NFA simulation (linear time)."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        ast = _Parser(pattern).parse()
        self.kind: list[int] = []
        self.arg: list = []
        self.out1: list[int] = []
        self.out2: list[int] = []
        match = self._new(_MATCH)
        self.start = self._build(ast, match)

    def _new(self, kind, arg=None, o1=-1, o2=-1):
        if len(self.kind) >= MAX_STATES:
            raise RegexError("expression too large (more than %d states)" % MAX_STATES)
        self.kind.append(kind)
        self.arg.append(arg)
        self.out1.append(o1)
        self.out2.append(o2)
        return len(self.kind) - 1

    def _build(self, node, nxt):
        """States for ``node`` followed by state ``nxt``; returns the entry."""
        t = node[0]
        if t == "char":
            return self._new(_CHAR, node[1], nxt)
        if t == "bol":
            return self._new(_BOL, None, nxt)
        if t == "eol":
            return self._new(_EOL, None, nxt)
        if t == "cat":
            for item in reversed(node[1]):
                nxt = self._build(item, nxt)
            return nxt
        if t == "alt":
            entries = [self._build(b, nxt) for b in node[1]]
            e = entries[-1]
            for other in reversed(entries[:-1]):
                e = self._new(_SPLIT, None, other, e)
            return e
        # rep
        _, sub, lo, hi = node
        if hi is None:
            # sub{lo,}: lo copies then a loop
            loop = self._new(_SPLIT, None, -1, nxt)
            body = self._build(sub, loop)
            self.out1[loop] = body
            entry = loop
            for _ in range(lo):
                entry = self._build(sub, entry)
            return entry
        entry = nxt
        for _ in range(hi - lo):                 # optional copies
            body = self._build(sub, entry)
            entry = self._new(_SPLIT, None, body, nxt)     # (sub(sub)?)?
        for _ in range(lo):
            entry = self._build(sub, entry)
        return entry

    # -- matching -----------------------------------------------------------
    # The NFA is simulated one character at a time over the set of current
    # states; the sets met are numbered and their transitions cached (a
    # lazily built DFA, bounded by DFA_CACHE), so a line costs one dict
    # lookup per character once the cache is warm, and at worst
    # O(states) per character: never exponential.

    def _closure(self, seeds, at_start, at_end):
        kind, out1, out2 = self.kind, self.out1, self.out2
        seen = set()
        keep = []
        stack = list(seeds)
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            k = kind[s]
            if k == _SPLIT:
                stack.append(out2[s])
                stack.append(out1[s])
            elif k == _BOL:
                if at_start:
                    stack.append(out1[s])
            elif k == _EOL:
                if at_end:
                    stack.append(out1[s])
                else:
                    keep.append(s)      # decided at the end of the line
            else:
                keep.append(s)
        return frozenset(keep)

    def _dstate(self, states):
        n = self._ids.get(states)
        if n is None:
            if len(self._sets) >= DFA_CACHE:
                self._reset()
                return self._dstate(states)
            n = len(self._sets)
            self._ids[states] = n
            self._sets.append(states)
            self._trans.append({})
            self._matching.append(any(self.kind[s] == _MATCH for s in states))
            self._at_end.append(None)
        return n

    def _reset(self):
        self._ids: dict = {}
        self._sets: list = []
        self._trans: list = []
        self._matching: list = []
        self._at_end: list = []
        self._gen = getattr(self, "_gen", 0) + 1
        self._restart = self._closure([self.start], False, False)

    def _step(self, d, ch):
        kind, arg, out1 = self.kind, self.arg, self.out1
        seeds = [out1[s] for s in self._sets[d] if kind[s] == _CHAR and arg[s](ch)]
        nxt = self._closure(seeds, False, False) | self._restart
        gen = self._gen
        n = self._dstate(nxt)
        if self._gen == gen:              # the cache was not started over
            self._trans[d][ch] = n
        return n

    def _end_match(self, d):
        r = self._at_end[d]
        if r is None:
            eol = [self.out1[s] for s in self._sets[d] if self.kind[s] == _EOL]
            r = any(self.kind[s] == _MATCH for s in self._closure(eol, False, True))
            self._at_end[d] = r
        return r

    def search(self, line: str) -> bool:
        if not hasattr(self, "_ids"):
            self._reset()
        n = len(line)
        if n == 0:
            return any(self.kind[s] == _MATCH for s in self._closure([self.start], True, True))
        d = self._dstate(self._closure([self.start], True, False))
        matching = self._matching
        for ch in line:
            if matching[d]:
                return True
            nd = self._trans[d].get(ch)
            d = nd if nd is not None else self._step(d, ch)
            matching = self._matching        # may have been reset
        return matching[d] or self._end_match(d)
