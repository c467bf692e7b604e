"""twistd finds the cbac plugin after a normal (non-editable) install.

The development venv uses an editable install (editable_mode=compat); this
checks the other way users install: ``pip install .``, here into a
separate target directory, run with site-packages but without the
editable install's .pth, so only the installed copy can be found.
"""

import os
import subprocess
import sys
import sysconfig

from twisted.trial import unittest

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import cbac
assert cbac.__file__.startswith(sys.argv[1]), cbac.__file__
from twisted.plugin import getPlugins
from twisted.application.service import IServiceMaker
names = [p.tapname for p in getPlugins(IServiceMaker)]
print("cbac" in names, cbac.__file__)
"""


class PipInstallTests(unittest.TestCase):
    def test_plugin_found_after_pip_install(self):
        target = os.path.abspath(self.mktemp())
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                            "--no-build-isolation", "--target", target, HERE],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(target, "twisted", "plugins", "cbac_plugin.py")))
        site = sysconfig.get_paths()["purelib"]
        # -S: no site module, so the editable install's .pth is not read
        r = subprocess.run([sys.executable, "-S", "-c", PROBE, target, site],
                           capture_output=True, text=True, timeout=120, cwd="/")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("True "), r.stdout)
