"""The management process's privilege drop (cbac.privsep.drop), run in a
child process as root: no uid or gid 0, no supplementary group, no
capability, no_new_privs; also when the bounding set may not be emptied
(no CAP_SETPCAP, as under the systemd unit)."""

import json
import os
import shutil
import subprocess
import sys

from twisted.trial import unittest

from cbac.privsep import drop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = ("import json; from cbac.privsep.drop import drop_privileges, status_fields; "
         "drop_privileges(65534, 65534); print(json.dumps(status_fields()))")


def _run(prefix=()):
    return subprocess.run(list(prefix) + [sys.executable, "-c", CHILD], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
                          timeout=30)


class DropTests(unittest.TestCase):
    if os.geteuid() != 0:
        skip = "needs root (the engine runs as root; CI runs as root)"

    def check(self, r, bounding_empty=True):
        self.assertEqual(r.returncode, 0, r.stderr)
        st = json.loads(r.stdout)
        self.assertEqual(st["Uid"], ["65534"] * 4)
        self.assertEqual(st["Gid"], ["65534"] * 4)
        self.assertEqual(st.get("Groups", []), [])
        for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            self.assertEqual(int(st[k][0], 16), 0, k)
        self.assertEqual(st["NoNewPrivs"], ["1"])
        if bounding_empty:
            self.assertEqual(int(st["CapBnd"][0], 16), 0)

    def test_drop_as_root(self):
        self.check(_run())

    def test_drop_without_cap_setpcap(self):
        if not shutil.which("setpriv"):
            raise unittest.SkipTest("setpriv (util-linux) not installed")
        self.check(_run(["setpriv", "--bounding-set", "-setpcap", "--inh-caps", "-all"]),
                   bounding_empty=False)

    def test_refuses_uid_0(self):
        self.assertRaises(drop.DropError, drop.drop_privileges, 0, 0)

    def test_resolve_user_falls_back_to_nobody(self):
        uid, gid, warning = drop.resolve_user("no-such-user-cbac-test")
        self.assertEqual((uid, gid), (65534, 65534))
        self.assertIn("does not exist", warning)
        uid, gid, warning = drop.resolve_user("root")
        self.assertNotEqual(uid, 0)
        self.assertIn("uid/gid 0", warning)
