"""Configuration diagnostics: errors and warnings with file and line.

The parser and the semantic checker never stop at the first problem: they
collect :class:`Diagnostic` objects.  ``twistd cbac --check`` prints them as

    FILE:LINE: severity: message
        offending line

(compiler style, so editors can jump to the line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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


def report(filename: str, diagnostics: Iterable[Diagnostic]) -> str:
    """Every diagnostic (sorted by line) followed by the summary line."""
    diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line))
    lines = [d.format() for d in diagnostics]
    lines.append(summary(filename, diagnostics))
    return "\n".join(lines) + "\n"
