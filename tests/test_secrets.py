"""Secrets as IOS keeps them (issue 16): a secret entered in clear text is
stored hashed (type 9), ``service password-encryption`` shows passwords as
type 7, ``write memory`` writes the file 0600, and neither ``show
running-config`` nor the saved file ever holds a clear secret."""

import os
import stat

from twisted.trial import unittest

from cbac.config.model import Secret
from cbac.config.parser import parse_config
from cbac.config.render import render
from cbac.console import auth
from cbac.console.cli import Context, run_line
from cbac.console.commands import build_tree
from tests.test_console_appliance import real_appliance

CLEAR = "S3cret-Cl34r"


def parse(text):
    model, diags = parse_config(text, "t.conf")
    assert not [d for d in diags if d.is_error], [d.format() for d in diags]
    return model


class HashTests(unittest.TestCase):
    def test_types_5_8_9_verify(self):
        for kind in (5, 8, 9):
            s = Secret(kind, auth.encode(kind, CLEAR))
            self.assertTrue(s.value.startswith({5: "$1$", 8: "$8$", 9: "$9$"}[kind]))
            self.assertTrue(auth.verify(s, CLEAR), kind)
            self.assertFalse(auth.verify(s, CLEAR + "x"), kind)
            self.assertFalse(auth.verify(Secret(kind, "$%d$garbage" % kind), CLEAR))

    def test_known_type5_vector(self):
        # openssl passwd -1 -salt abcd cisco
        self.assertEqual(auth.md5_crypt("cisco", "abcd"), "$1$abcd$2hDGYdE0UrwK2pqoiF6BB1")


class ConfigTests(unittest.TestCase):
    def test_clear_secrets_are_stored_hashed(self):
        m = parse("hostname r1\nenable secret %s\nusername admin privilege 15 secret 0 %s\n"
                  % (CLEAR, CLEAR))
        for s in (m.enable_secret, m.users["admin"].secret):
            self.assertEqual(s.kind, 9)
            self.assertTrue(auth.verify(s, CLEAR))
        text = render(m)
        self.assertNotIn(CLEAR, text)
        self.assertIn("enable secret 9 $9$", text)
        self.assertIn("username admin privilege 15 secret 9 $9$", text)
        # the rendering loads back to the same secrets
        m2 = parse(text)
        self.assertEqual(m2.enable_secret, m.enable_secret)

    def test_same_file_same_model(self):
        text = "enable secret 0 %s\n" % CLEAR
        self.assertEqual(parse(text).enable_secret, parse(text).enable_secret)

    def test_existing_hashes_kept(self):
        for kind in (5, 8, 9):
            v = auth.encode(kind, CLEAR)
            m = parse("enable secret %d %s\n" % (kind, v))
            self.assertEqual(m.enable_secret, Secret(kind, v))
            self.assertIn("enable secret %d %s" % (kind, v), render(m))

    def test_service_password_encryption(self):
        conf = ("username bob password 0 %s\nenable password %s\n" % (CLEAR, CLEAR))
        plain = render(parse(conf))
        self.assertIn("username bob password 0 %s" % CLEAR, plain)   # as IOS without the service
        m = parse("service password-encryption\n" + conf)
        text = render(m)
        self.assertNotIn(CLEAR, text)
        line = [l for l in text.splitlines() if l.startswith("username bob password 7 ")][0]
        self.assertEqual(auth.type7_decode(line.split()[-1]), CLEAR)
        self.assertEqual(render(m), text)                           # stable
        m2 = parse(text)
        self.assertTrue(auth.verify(m2.users["bob"].password, CLEAR))
        self.assertTrue(auth.verify(m2.enable_password, CLEAR))


class ApplianceTests(unittest.TestCase):
    def setUp(self):
        self.app, self.ports, self.conf = real_appliance(self)

    def run_cmd(self, line):
        ctx = Context(self.app, "admin", 15, "127.0.0.1")
        return self.successResultOf(run_line(build_tree(), ctx, line))

    def test_seed_clear_secret_never_shown_or_written(self):
        # the seed file has "secret 0 cisco" (lab only)
        with open(self.conf) as f:
            self.assertIn("secret 0 cisco", f.read())
        self.assertTrue(self.app.check_login("admin", "cisco"))
        self.assertTrue(self.app.check_enable("cisco"))
        out = self.run_cmd("show running-config").text
        self.assertNotIn(" cisco", out)
        self.assertIn("enable secret 9 $9$", out)
        os.chmod(self.conf, 0o644)
        r = self.run_cmd("write memory")
        self.assertIn("[OK]", r.text)
        self.assertEqual(stat.S_IMODE(os.stat(self.conf).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.conf + ".bak").st_mode), 0o600)
        with open(self.conf) as f:
            saved = f.read()
        self.assertNotIn("secret 0", saved)
        self.assertNotIn(" cisco\n", saved)
        m = parse(saved)
        self.assertTrue(auth.verify(m.enable_secret, "cisco"))


class WellKnownPasswordTests(unittest.TestCase):
    def test_seed_passwords_warned(self):
        from cbac.tap import weak_secret_warnings
        m = parse("enable secret 0 cisco\nusername admin privilege 15 secret 0 cisco\n"
                  "username ok secret 0 %s\n" % CLEAR)
        ws = [d.format() for d in weak_secret_warnings(m, "r.conf")]
        self.assertEqual(len(ws), 2, ws)
        self.assertTrue(ws[0].startswith("r.conf: warning: enable secret: the password is the "
                                         "well-known 'cisco'"), ws)
        self.assertTrue(ws[1].startswith("r.conf:2: warning: username admin: the password is the "
                                         "well-known 'cisco'"), ws)

    def test_check_prints_it(self):
        from tests.test_tap import twistd
        rc, out, err = twistd("-n", "cbac", "-c", "etc/router.conf", "--check")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("etc/router.conf:125: warning: username admin: the password is the "
                      "well-known 'cisco'", out)
