"""``twistd cbac``: options, ``--check`` and start-up refusal, run as a real
twistd subprocess (the way an admin runs it)."""

import os
import subprocess
import sys
import tempfile

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twistd(*args, cwd=ROOT):
    p = subprocess.run(TWISTD + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


class TapTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cbac-tap-")
        self.addCleanup(lambda: __import__("shutil").rmtree(self.tmp, ignore_errors=True))

    def write(self, text):
        path = os.path.join(self.tmp, "bad.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_plugin_listed(self):
        rc, out, err = twistd("--help")
        self.assertEqual(rc, 0)
        self.assertIn("cbac", out)
        self.assertIn("Stateful firewall modelled on Cisco IOS Firewall CBAC", out)

    def test_help_lists_options(self):
        rc, out, err = twistd("cbac", "--help")
        self.assertEqual(rc, 0, err)
        for opt in ("--config=", "-c", "--port=", "--check", "--state-dir=", "--listen=",
                    "/etc/cbac/router.conf", "/var/lib/cbac"):
            self.assertIn(opt, out)

    def test_check_shipped_config(self):
        rc, out, err = twistd("-n", "cbac", "-c", "etc/router.conf", "--check")
        self.assertEqual(rc, 0, out + err)
        # harmless not-acted-on lines are counted by kind, not listed
        self.assertNotIn("voice-card 3", out)
        self.assertIn("etc/router.conf: harmless lines, not acted on:\n", out)
        self.assertIn("    3 lines of other settings that do not affect filtering (voice, "
                      "controllers, object definitions), not acted on (first: line 57)\n", out)
        # (ip virtual-reassembly is acted on: only half-duplex is left)
        self.assertIn("    1 line of interface settings that do not affect filtering", out)
        # lines that matter are printed in full
        self.assertIn("etc/router.conf:140: warning: cbac port: network device outside does "
                      "not exist\n    cbac port Ethernet2/0 outside\n", out)
        # --verbose lists every line
        rc, out2, err = twistd("-n", "cbac", "-c", "etc/router.conf", "--check", "--verbose")
        self.assertIn("etc/router.conf:23: warning: accepted, not acted on\n    voice-card 3\n", out2)
        self.assertIn("etc/router.conf:83: warning: accepted, not acted on\n    half-duplex\n", out2)
        self.assertRegex(out.splitlines()[-1],
                         r"^etc/router.conf: 0 errors, \d+ warnings; configuration OK$")
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twistd.pid")))

    def test_check_broken_config(self):
        path = self.write("hostname fw\n!\nip inspect name OUT-IN smtp\n"
                          "ip inspect name OUT-IN esmtp\ninterface Ethernet0\n"
                          " ip address 10.0.0.1 255.0.255.0\n")
        rc, out, err = twistd("-n", "cbac", "-c", path, "--check")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("%s:4: error: smtp and esmtp inspection cannot be configured in the "
                      "same rule (OUT-IN)\n    ip inspect name OUT-IN esmtp\n" % path, out)
        self.assertIn("%s:6: error: non-contiguous netmask 255.0.255.0\n" % path, out)
        self.assertIn("%s: 2 errors" % path, out.splitlines()[-1])
        self.assertIn("configuration has errors", out.splitlines()[-1])

    def test_check_refuses_bytes_that_are_not_text(self):
        import random
        rnd = random.Random(3)
        for name, data, line in (
                ("junk.conf", b"hostname fw\n" + bytes(rnd.randrange(256) for _ in range(1 << 20)), 2),
                ("u16.conf", "hostname fw\ninterface e0\n".encode("utf-16"), 1)):
            path = os.path.join(self.tmp, name)
            with open(path, "wb") as f:
                f.write(data)
            rc, out, err = twistd("-n", "cbac", "-c", path, "--check")
            self.assertEqual(rc, 1, out + err)
            self.assertIn("%s:%d: error: " % (path, line), out)
            self.assertIn("configuration has errors", out.splitlines()[-1])

    def test_start_refused_on_errors(self):
        path = self.write("access-list 1 permit tcp any any\n")
        rc, out, err = twistd("-n", "--pidfile=", "cbac", "-c", path)
        self.assertEqual(rc, 1)
        self.assertIn("%s:1: error: standard access list 1 does not take extended syntax" % path,
                      err)
        # a usage error, as twistd reports them: the usage, then the reason
        self.assertIn("%s: 1 error, 0 warnings; configuration has errors" % path,
                      out.splitlines()[-1])

    def test_start_refused_on_missing_device(self):
        # strict device check at start: a binding to a missing device is an error
        path = self.write("interface Ethernet0\n ip address 10.0.0.1 255.255.255.0\n"
                          "cbac port Ethernet0 cbac-nodev0\n")
        rc, out, err = twistd("-n", "--pidfile=", "cbac", "-c", path)
        self.assertEqual(rc, 1)
        self.assertIn("%s:3: error: cbac port: network device cbac-nodev0 does not exist" % path,
                      err)
        # ... and only a warning under --check
        rc, out, err = twistd("-n", "cbac", "-c", path, "--check")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("warning: cbac port: network device cbac-nodev0 does not exist", out)

    def test_port_option_overrides(self):
        path = self.write("interface Ethernet0\n ip address 10.0.0.1 255.255.255.0\n"
                          "cbac port Ethernet0 cbac-nodev0\n")
        rc, out, err = twistd("-n", "cbac", "-c", path, "--check", "--port", "e0=lo")
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("cbac-nodev0", out)

    def test_missing_file(self):
        rc, out, err = twistd("-n", "cbac", "-c", os.path.join(self.tmp, "nope.conf"), "--check")
        self.assertEqual(rc, 1)
        self.assertIn("nope.conf: error: cannot read configuration", out)


class OptionsUnitTests(unittest.TestCase):
    def test_options_in_process(self):
        import io

        from cbac.tap import Options
        o = Options()
        o.stdout = io.StringIO()
        with self.assertRaises(SystemExit) as cm:
            o.parseOptions(["-c", os.path.join(ROOT, "etc", "router.conf"), "--check",
                            "--listen", "tcp:2222:interface=127.0.0.1",
                            "--port", "Ethernet2/0=lo", "--state-dir", "/tmp/x"])
        self.assertEqual(cm.exception.code, 0)
        self.assertEqual(o["listen"], ["tcp:2222:interface=127.0.0.1"])
        self.assertEqual(o["state-dir"], "/tmp/x")
        self.assertEqual(o["router"].ports["Ethernet2/0"].device, "lo")
        self.assertEqual(o["router"].hostname, "3640-123")

    def test_bad_port_syntax(self):
        from twisted.python import usage

        from cbac.tap import Options
        self.assertRaises(usage.UsageError, Options().parseOptions, ["--port", "eth0"])

    def test_errors_are_a_usage_error(self):
        """postOptions refuses a configuration with errors, or one it cannot
        read, with usage.UsageError (as Twisted's own taps do), the errors
        listed on stderr first; --check keeps its exit status."""
        import io

        from twisted.python import usage

        from cbac.tap import Options
        tmp = self.mktemp()
        os.makedirs(tmp)
        bad = os.path.join(tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write("hostname fw\naccess-list 1 permit tcp any any\n")
        o = Options()
        o.stderr = io.StringIO()
        with self.assertRaises(usage.UsageError) as cm:
            o.parseOptions(["-c", bad])
        self.assertEqual(str(cm.exception),
                         "%s: 1 error, 0 warnings; configuration has errors" % bad)
        self.assertIn("%s:2: error: standard access list 1 does not take extended syntax" % bad,
                      o.stderr.getvalue())
        with self.assertRaises(usage.UsageError) as cm:
            Options().parseOptions(["-c", os.path.join(tmp, "nope.conf")])
        self.assertIn("nope.conf: error: cannot read configuration", str(cm.exception))
        o = Options()
        o.stdout = io.StringIO()
        with self.assertRaises(SystemExit) as cm:
            o.parseOptions(["-c", bad, "--check"])
        self.assertEqual(cm.exception.code, 1)
