"""Reading a configuration file: the one loader for the start
(``cbac/tap.py``) and every reload (``cbac/app.py``: ``reload config``,
``configure replace``, SIGHUP).

``load(path, ports)`` reads the file, parses it, applies the ``--port
IOSNAME=DEVICE`` bindings of the command line over the file's ``cbac port``
lines (so a reload keeps them, as the start had them), runs the semantic
checks and returns ``(model, diagnostics)``, diagnostics in line order.
An unreadable file raises OSError.
"""

from __future__ import annotations

from typing import Mapping, Optional

from cbac.config.check import check
from cbac.config.model import PortBinding
from cbac.config.parser import parse_bytes


def apply_ports(model, ports: Optional[Mapping[str, str]]):
    """Bind each IOS interface of ``ports`` (normalized name -> Linux
    device) over the configuration's own ``cbac port`` lines."""
    for iosname, device in (ports or {}).items():
        model.ports[iosname] = PortBinding(iosname, device)
    return model


def load(path: str, ports: Optional[Mapping[str, str]] = None, strict: bool = False):
    """-> (model, diagnostics) of the file at ``path``; ``strict``: a
    ``cbac port`` device that does not exist is an error (at start), not
    a warning.  Raises OSError when the file cannot be read."""
    with open(path, "rb") as f:
        data = f.read()
    return load_bytes(path, data, ports, strict)


def load_bytes(path: str, data: bytes, ports: Optional[Mapping[str, str]] = None,
               strict: bool = False):
    """:func:`load` of bytes already read from ``path`` (the engine keeps
    them: the management process gets the running configuration's text)."""
    model, diags = parse_bytes(data, path)
    apply_ports(model, ports)
    diags = list(diags) + list(check(model, strict=strict, filename=path))
    diags.sort(key=lambda d: d.line)
    return model, diags
