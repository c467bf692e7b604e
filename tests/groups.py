"""Which test modules run in parallel and which one at a time (make test).

``python3 tests/groups.py unit`` prints the modules ``make test`` runs with
``trial -j2``; ``python3 tests/groups.py lab`` those it runs serially after
them, one trial process, one module at a time: the lab modules, which build
network namespaces, start cbac and real clients and servers in them, or
install packages as root.  A module is a lab module when

- its name starts with ``test_lab_`` (or it is ``test_lab``), or
- its source uses the lab (``LabCase``, ``RunningLab``, ``PairLab``,
  ``Lab(``, ``lab_fixture``, ``netns``, ``in_netns``) or the package tools
  (``dpkg``, ``apt-get``), or
- it says so: a line ``# test-group: lab`` (or ``# test-group: unit`` to
  keep a module that only mentions those words in the parallel group).

So a new module lands in the right group by itself.

``python tests/groups.py offload-off MODULE...`` (with the virtualenv's
python: it imports the modules) prints what the second pass with the
kernel fast path off (``CBAC_OFFLOAD=0``) runs of those modules: all of
them but their kernel reference classes (``mode = "kernel"``: the Linux
kernel is the router, no cbac runs, so the fast path setting changes
nothing and the first pass ran them already) and the classes that say
``offload_off_pass = False`` (none of their traffic can be offloaded:
only SYNs, short connections, ...).
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

LAB_USE = re.compile(r"\bLabCase\b|\bRunningLab\b|\bPairLab\b|\bLab\(|\blab_fixture\b|netns"
                     r"|\bdpkg\b|\bapt-get\b")
MARKER = re.compile(r"^# test-group: (lab|unit)\s*$", re.M)


def group_of(path):
    """``"lab"`` or ``"unit"`` for the test module at ``path``."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    m = MARKER.search(src)
    if m:
        return m.group(1)
    name = os.path.basename(path)[:-3]
    if name == "test_lab" or name.startswith("test_lab_") or LAB_USE.search(src):
        return "lab"
    return "unit"


def modules(group, directory=HERE):
    """The dotted names of the test modules of ``group``, sorted."""
    pkg = os.path.basename(directory)
    return ["%s.%s" % (pkg, f[:-3]) for f in sorted(os.listdir(directory))
            if f.startswith("test_") and f.endswith(".py")
            and group_of(os.path.join(directory, f)) == group]


def offload_off_tests(names):
    """``names`` (dotted module names), each module with test classes
    the offload-off pass leaves out replaced by its other test classes."""
    import importlib
    import inspect
    import unittest
    out = []
    for name in names:
        mod = importlib.import_module(name)
        classes = [c for _, c in inspect.getmembers(mod, inspect.isclass)
                   if issubclass(c, unittest.TestCase) and c.__module__ == name
                   and any(a.startswith("test") for a in dir(c))]
        kept = [c for c in classes if getattr(c, "mode", None) != "kernel"
                and getattr(c, "offload_off_pass", True)]
        if len(kept) == len(classes):
            out.append(name)
        else:
            out += ["%s.%s" % (name, c.__name__) for c in kept]
    return out


def main(argv):
    if len(argv) >= 2 and argv[1] == "offload-off":
        sys.path.insert(0, os.path.dirname(HERE))
        print(" ".join(offload_off_tests(argv[2:])))
        return 0
    if len(argv) != 2 or argv[1] not in ("unit", "lab"):
        sys.stderr.write("usage: %s unit|lab|offload-off MODULE...\n" % argv[0])
        return 2
    print(" ".join(modules(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
