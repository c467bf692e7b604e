"""The architecture (docs/architecture.md, "Layering") is kept by a test,
not by discipline: every ``import`` in ``cbac/`` -- module level or inside
a function, absolute or relative -- is read with :mod:`ast` and checked
against the parts each part may use."""

from __future__ import annotations

import ast
import os

from twisted.trial import unittest

import cbac

ROOT = os.path.dirname(os.path.abspath(cbac.__file__))

#: part -> the other parts of cbac it may import.  A part is a package under
#: cbac/ (``inspect``) or a top-level module (``app``); ``cbac`` is the
#: package itself (``from cbac import __version__``).  Entries are the
#: whole rule: a part not listed here fails the test until it is placed.
ALLOWED = {
    "cbac": set(),
    "packet": set(),                      # codecs: the bottom layer
    "log": set(),                         # IOS message helpers, observers
    "timerwheel": set(),                  # the timer wheel of sessions and NAT
    "config": {"log"},                    # IOS text <-> model: no console, no data plane
    "acl": {"config", "log", "packet"},
    "nat": {"acl", "config", "log", "packet", "timerwheel"},
    "inspect": {"config", "log", "packet", "timerwheel"},  # sans-I/O: no data plane, no console
    "interfaces": {"inspect"},            # IPort; re-exports IStreamInspector
    "dataplane": {"acl", "config", "inspect", "interfaces", "log", "nat", "packet"},
    "console": {"config", "log"},         # the appliance only through IConsoleAppliance
    # stateful restart and the standby's sync: reads and rebuilds sessions
    # and translations (nothing of inspect/ or nat/ imports it back)
    "continuity": {"inspect", "log", "nat", "packet"},
    "metrics": {"cbac", "packet"},
    # privilege separation: the engine's supervisor and AMP responder, the
    # management process's remote appliance; the management process itself
    "privsep": {"config", "console", "log"},
    "mgmt": {"acl", "config", "console", "log", "metrics", "packet", "privsep"},
    "firstpass": {"config"},              # the first start's generated passwords
    # the one place that wires everything, and the entry points around it
    "app": {"cbac", "acl", "config", "console", "continuity", "dataplane", "inspect",
            "interfaces", "log", "metrics", "nat", "packet", "privsep", "timerwheel"},
    "tap": {"app", "cbac", "config", "console", "firstpass", "log"},
    "replay": {"app", "config", "dataplane", "packet", "log"},
    "lab": {"config", "console", "log"},
}

#: Pairs the architecture names as forbidden; ALLOWED must keep them out.
FORBIDDEN = [
    ("packet", "inspect"), ("packet", "dataplane"),
    ("inspect", "dataplane"), ("inspect", "console"),
    ("config", "dataplane"), ("config", "console"),
    ("acl", "dataplane"), ("nat", "dataplane"),
]

#: Parts that are sans-I/O: no reactor, sockets, threads or wall clock
#: (time comes from an injected IReactorTime).
SANS_IO = ("packet", "config", "acl", "nat", "inspect", "timerwheel")
IO_MODULES = ("socket", "select", "selectors", "asyncio", "threading", "subprocess", "time",
              "twisted.internet")
IO_ALLOWED = ("twisted.internet.interfaces",)     # IReactorTime, for annotations


def module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def imports(source: str, module: str, is_package: bool = False) -> list:
    """(line, imported module) of every import in ``source``, at any depth;
    relative imports resolved against ``module``; ``from X import Y`` gives
    both X and X.Y (Y may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            out.append((node.lineno, name))
            out += [(node.lineno, name + "." + a.name) for a in node.names if a.name != "*"]
    return out


def part(module: str) -> "str | None":
    """The part of cbac a module name belongs to (None outside cbac)."""
    words = module.split(".")
    if words[0] != "cbac":
        return None
    return words[1] if len(words) > 1 else "cbac"


def sources():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
        for f in sorted(filenames):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                with open(path, encoding="utf-8") as fh:
                    yield path, module_name(path), f == "__init__.py", fh.read()


def violations(found=None) -> list:
    """Every import that breaks ALLOWED, as readable lines."""
    out = []
    for path, module, is_pkg, text in (found if found is not None else sources()):
        me = part(module)
        if me not in ALLOWED:
            out.append("%s: part %r is not in tests/test_layering.py ALLOWED" % (module, me))
            continue
        for line, name in imports(text, module, is_pkg):
            other = part(name)
            if other is None:
                if me in SANS_IO and any(name == m or name.startswith(m + ".") for m in IO_MODULES) \
                        and not name.startswith(IO_ALLOWED):
                    out.append("%s:%d imports %s (%s is sans-I/O)" % (module, line, name, me))
                continue
            if other != me and other not in ALLOWED[me]:
                out.append("%s:%d imports %s (%s -> %s is not allowed)" % (
                    module, line, name, me, other))
    return out


class LayeringTests(unittest.TestCase):
    def test_no_forbidden_import(self):
        self.assertEqual(violations(), [])

    def test_forbidden_pairs_are_not_allowed(self):
        for a, b in FORBIDDEN:
            self.assertNotIn(b, ALLOWED[a], (a, b))

    def test_only_entry_points_import_app(self):
        users = sorted(p for p, allowed in ALLOWED.items() if "app" in allowed)
        self.assertEqual(users, ["replay", "tap"])

    def test_every_part_is_scanned(self):
        seen = {part(m) for _, m, _, _ in sources()}
        self.assertEqual(seen - set(ALLOWED), set())
        self.assertGreaterEqual(seen, {"packet", "inspect", "config", "acl", "nat", "dataplane",
                                       "console", "app"})


class ScannerTests(unittest.TestCase):
    """The checker sees the imports that would slip past a grep."""

    def check(self, module, text, is_pkg=False):
        return violations([("x.py", module, is_pkg, text)])

    def test_function_level_import(self):
        v = self.check("cbac.config.parser", "def f():\n    from cbac.console.auth import verify\n")
        self.assertEqual(v, ["cbac.config.parser:2 imports cbac.console.auth "
                             "(config -> console is not allowed)",
                             "cbac.config.parser:2 imports cbac.console.auth.verify "
                             "(config -> console is not allowed)"])

    def test_relative_import(self):
        v = self.check("cbac.packet.view", "from ..inspect import session\n")
        self.assertIn("cbac.packet.view:1 imports cbac.inspect (packet -> inspect is not allowed)", v)
        v = self.check("cbac.inspect", "from ..dataplane.router import Router\n", is_pkg=True)
        self.assertIn("cbac.inspect:1 imports cbac.dataplane.router "
                      "(inspect -> dataplane is not allowed)", v)
        self.assertEqual(self.check("cbac.inspect.smtp", "from . import api\nfrom .api import Verdict\n"),
                         [])

    def test_from_package_import_submodule(self):
        v = self.check("cbac.nat.table", "from cbac import dataplane\n")
        self.assertIn("cbac.nat.table:1 imports cbac.dataplane (nat -> dataplane is not allowed)", v)

    def test_plain_import_and_nested_blocks(self):
        v = self.check("cbac.acl.compiled",
                       "class A:\n  def f(self):\n    if x:\n      try:\n        import cbac.dataplane.port\n"
                       "      except ImportError:\n        pass\n")
        self.assertEqual(v, ["cbac.acl.compiled:5 imports cbac.dataplane.port "
                             "(acl -> dataplane is not allowed)"])

    def test_sans_io(self):
        v = self.check("cbac.inspect.smtp", "def f():\n    from twisted.internet import reactor\n")
        self.assertIn("cbac.inspect.smtp:2 imports twisted.internet (inspect is sans-I/O)", v)
        self.assertTrue(self.check("cbac.packet.view", "import socket\n"))
        self.assertTrue(self.check("cbac.nat.table", "import time\n"))
        self.assertEqual(self.check("cbac.inspect.session",
                                    "from twisted.internet.interfaces import IReactorTime\n"), [])
        self.assertEqual(self.check("cbac.dataplane.linux", "import socket\n"), [])

    def test_unknown_part(self):
        self.assertEqual(self.check("cbac.newthing", "import os\n"),
                         ["cbac.newthing: part 'newthing' is not in tests/test_layering.py ALLOWED"])
