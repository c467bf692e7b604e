"""Configuration diagnostics: errors and warnings with file and line.

The parser and the semantic checker never stop at the first problem: they
collect :class:`Diagnostic` objects.  ``twistd cbac --check`` prints them as

    FILE:LINE: severity: message
        offending line

(compiler style, so editors can jump to the line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

ERROR = "error"
WARNING = "warning"


@dataclass
class Diagnostic:
    """One problem found in a configuration."""

    file: str
    line: int                 # 1-based; 0 when not tied to a line
    severity: str             # ERROR or WARNING
    message: str
    text: str = ""            # the offending line as written
    group: Optional[str] = None   # harmless not-acted-on lines: their kind (counted, not listed)

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def format(self) -> str:
        where = "%s:%d" % (self.file, self.line) if self.line else self.file
        out = "%s: %s: %s" % (where, self.severity, self.message)
        if self.text:
            out += "\n    " + self.text.strip()
        return out

    __str__ = format


class ConfigError(Exception):
    """Raised when a configuration has errors; carries every diagnostic."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.is_error]
        super().__init__("\n".join(d.format() for d in errors or self.diagnostics))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


def errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == ERROR]


def warnings(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == WARNING]


def summary(filename: str, diagnostics: Iterable[Diagnostic]) -> str:
    """``FILE: N errors, M warnings; configuration OK`` (or ``has errors``)."""
    diagnostics = list(diagnostics)
    ne = len(errors(diagnostics))
    nw = len(warnings(diagnostics))
    verdict = "configuration has errors" if ne else "configuration OK"
    return "%s: %d error%s, %d warning%s; %s" % (
        filename, ne, "" if ne == 1 else "s", nw, "" if nw == 1 else "s", verdict)


def grouped(diagnostics: Iterable[Diagnostic]) -> tuple[list[Diagnostic], list[str]]:
    """(diagnostics printed in full, one line per group of harmless ones).

    Errors and every warning that concerns what traffic passes are printed
    in full, in line order; warnings about harmless, not-acted-on lines
    (their ``group`` is set) are counted per group:
    ``12 lines of line/aux/console settings, not acted on (first: line 40)``.
    """
    full: list[Diagnostic] = []
    groups: dict[str, list[Diagnostic]] = {}
    for d in sorted(diagnostics, key=lambda d: (d.file, d.line)):
        if d.group and not d.is_error:
            groups.setdefault(d.group, []).append(d)
        else:
            full.append(d)
    counts = []
    for g, ds in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        counts.append("%d line%s of %s, not acted on (first: line %d)"
                      % (len(ds), "" if len(ds) == 1 else "s", g, ds[0].line))
    return full, counts


def report(filename: str, diagnostics: Iterable[Diagnostic], verbose: bool = False) -> str:
    """Every error and every warning that matters, in full and sorted by
    line; then the harmless not-acted-on lines counted by kind (each in
    full with ``verbose``); then the summary line."""
    diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line))
    if verbose:
        lines = [d.format() for d in diagnostics]
    else:
        full, counts = grouped(diagnostics)
        lines = [d.format() for d in full]
        if counts:
            lines.append("%s: harmless lines, not acted on:" % filename)
            lines += ["    " + c for c in counts]
    lines.append(summary(filename, diagnostics))
    return "\n".join(lines) + "\n"


def log_lines(filename: str, diagnostics: Iterable[Diagnostic]) -> list[str]:
    """The same summary as :func:`report`, one log message per line
    (diagnostics on one line each)."""
    full, counts = grouped(diagnostics)
    out = [d.format().replace("\n    ", ": ") for d in full]
    out += ["%s: %s" % (filename, c) for c in counts]
    return out
