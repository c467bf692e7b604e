"""The shipped configuration has no guessable password; the first start
generates them (issue 16).

The configuration the Debian package ships (etc/router.conf through
:func:`cbac.firstpass.packaged_config`, as debian/rules does) has no
password a scan would guess; ``twistd cbac`` on it replaces the
placeholders with random passwords, keeps only their type 9 hashes in the
file, writes the clear ones once to STATE_DIR/initial-password (0600) and
logs where; the generated passwords log in, the placeholder never does.
"""

import io
import os
import re
import stat
import subprocess
import sys

from twisted.python.usage import UsageError
from twisted.trial import unittest

from cbac import firstpass
from cbac.config.parser import parse_bytes, parse_config
from cbac.console.auth import verify, well_known
from cbac.tap import Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(ROOT, "etc", "router.conf")


def _secrets(model):
    out = [("enable secret", model.enable_secret), ("enable password", model.enable_password)]
    out += [("username " + u.name, u.secret or u.password) for u in model.users.values()]
    return [(w, s) for w, s in out if s is not None]


class PackagedConfigTests(unittest.TestCase):
    def packaged(self):
        with open(SEED) as f:
            return firstpass.packaged_config(f.read())

    def test_no_guessable_password_shipped(self):
        text = self.packaged()
        model, diags = parse_config(text, "packaged")
        self.assertEqual([d for d in diags if d.is_error], [])
        found = _secrets(model)
        self.assertEqual(sorted(w for w, _ in found), ["enable secret", "username admin"])
        for what, secret in found:
            self.assertIsNone(well_known(secret), what)
            self.assertIn("secret 0 " + firstpass.PLACEHOLDER, text)
            # the placeholder is no password either
            self.assertFalse(verify(secret, firstpass.PLACEHOLDER), what)
        self.assertNotIn("cisco", re.sub(r"(?m)^!.*$", "", text.replace("Cisco", "")).lower()
                         .replace("3640-123", ""))

    def test_debian_rules_build_it(self):
        with open(os.path.join(ROOT, "debian", "rules")) as f:
            rules = f.read()
        self.assertIn("python3 -m cbac.firstpass etc/router.conf "
                      "debian/cbac/etc/cbac/router.conf", rules)
        # the zone-based example too (an admin may copy it into place)
        self.assertIn("python3 -m cbac.firstpass etc/router-zbf.conf "
                      "debian/cbac/usr/share/doc/cbac/examples/router-zbf.conf", rules)
        with open(os.path.join(ROOT, "etc", "router-zbf.conf")) as f:
            zbf = firstpass.packaged_config(f.read())
        self.assertNotIn("secret 0 cisco", zbf)
        self.assertEqual(zbf.count("secret 0 " + firstpass.PLACEHOLDER), 2)
        out = os.path.abspath(self.mktemp())
        r = subprocess.run([sys.executable, "-m", "cbac.firstpass", SEED, out], cwd=ROOT,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            self.assertEqual(f.read(), self.packaged())


class FirstStartTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "router.conf")
        text = ("hostname first\n"
                "username admin privilege 15 secret 0 %s\n"
                "enable secret 0 %s\n" % (firstpass.PLACEHOLDER, firstpass.PLACEHOLDER))
        with open(self.conf, "w") as f:
            f.write(text)
        self.state = os.path.join(self.dir, "state")

    def options(self, *extra):
        o = Options()
        o.stdout, o.stderr = io.StringIO(), io.StringIO()
        o.parseOptions(["-c", self.conf, "--state-dir", self.state] + list(extra))
        return o

    def test_first_start_generates_and_stores_hashes(self):
        o = self.options()
        where, what = o["first_password"]
        self.assertEqual(where, os.path.join(self.state, "initial-password"))
        self.assertEqual(sorted(what), ["enable secret", "username admin"])
        self.assertEqual(stat.S_IMODE(os.stat(where).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.conf).st_mode), 0o600)
        with open(where) as f:
            lines = dict(l.split(": ", 1) for l in f.read().splitlines() if not l.startswith("#"))
        user_pw = lines["username admin"]
        enable_pw = lines["enable secret"]
        self.assertRegex(user_pw, r"^[a-z2-9]{5}(-[a-z2-9]{5}){3}$")
        self.assertNotEqual(user_pw, enable_pw)
        with open(self.conf, "rb") as f:
            data = f.read()
        # the clear passwords are nowhere in the configuration, the hashes are
        self.assertNotIn(user_pw.encode(), data)
        self.assertNotIn(enable_pw.encode(), data)
        self.assertNotIn(firstpass.PLACEHOLDER.encode(), data)
        self.assertIn(b"username admin privilege 15 secret 9 $9$", data)
        self.assertIn(b"\nenable secret 9 $9$", data)
        self.assertIn("written once to " + where, o.stderr.getvalue())
        # the running model is the rewritten file, and the passwords work
        model, _ = parse_bytes(data, self.conf)
        self.assertTrue(verify(model.users["admin"].secret, user_pw))
        self.assertTrue(verify(model.enable_secret, enable_pw))
        self.assertFalse(verify(model.enable_secret, user_pw))
        self.assertIs(o["router"].enable_secret.kind, model.enable_secret.kind)
        self.assertEqual(o["router"].enable_secret.value, model.enable_secret.value)
        # the second start changes nothing
        o2 = self.options()
        self.assertIsNone(o2.get("first_password"))
        with open(self.conf, "rb") as f:
            self.assertEqual(f.read(), data)

    def test_start_logs_where_the_passwords_are(self):
        from twisted.logger import globalLogPublisher
        from cbac import tap
        o = self.options()
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        from twisted.logger import formatEvent
        o["ports"] = {}
        self.patch(__import__("cbac.app", fromlist=["x"]), "makeApplianceService",
                   lambda model, options: None)
        tap.makeService(o)
        text = "\n".join(formatEvent(e) for e in events)
        self.assertIn("first start: generated passwords for", text)
        self.assertIn(os.path.join(self.state, "initial-password"), text)
        with open(os.path.join(self.state, "initial-password")) as f:
            for line in f.read().splitlines():
                if not line.startswith("#"):
                    self.assertNotIn(line.split(": ", 1)[1], text)   # never in the log

    def test_check_changes_nothing_and_says_so(self):
        with open(self.conf, "rb") as f:
            before = f.read()
        o = Options()
        o.stdout, o.stderr = io.StringIO(), io.StringIO()
        with self.assertRaises(SystemExit) as e:
            o.parseOptions(["-c", self.conf, "--state-dir", self.state, "--check"])
        self.assertEqual(e.exception.code, 0)
        self.assertIn("the first start replaces it with generated passwords", o.stdout.getvalue())
        with open(self.conf, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertFalse(os.path.exists(self.state))

    def test_cannot_write_the_password_file_does_not_start(self):
        with open(self.conf, "rb") as f:
            before = f.read()
        os.makedirs(self.state)
        os.makedirs(os.path.join(self.state, "initial-password.tmp"))   # open() fails
        o = Options()
        o.stdout, o.stderr = io.StringIO(), io.StringIO()
        with self.assertRaises(UsageError) as e:
            o.parseOptions(["-c", self.conf, "--state-dir", self.state])
        self.assertIn("cannot store the generated passwords", str(e.exception))
        with open(self.conf, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_placeholder_elsewhere_is_refused(self):
        with open(self.conf, "a") as f:
            f.write("username oper password 0 %s\n" % firstpass.PLACEHOLDER)
        o = Options()
        o.stdout, o.stderr = io.StringIO(), io.StringIO()
        with self.assertRaises(UsageError) as e:
            o.parseOptions(["-c", self.conf, "--state-dir", self.state])
        self.assertIn("cannot generate a password", str(e.exception))
