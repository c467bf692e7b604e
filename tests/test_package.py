"""The Debian package: build, lint, install under Debian's Twisted, run, purge.

Runs when the machine can build Debian packages as root (CI: `make test`
installs debhelper and friends from requirements-apt-test.txt). It installs the
package into the system Python with apt and purges it again at the end.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import time

from twisted.trial import unittest

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
             "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}


def _why_not():
    if os.geteuid() != 0:
        return "building and installing a .deb needs root"
    for tool in ("dpkg-buildpackage", "dh", "apt-get"):
        if shutil.which(tool, path=CLEAN_ENV["PATH"]) is None:
            return "%s is not installed (make test installs it as root)" % tool
    if not os.path.exists("/usr/bin/python3"):
        return "no Debian python3"
    if subprocess.run(["dpkg", "-s", "cbac"], capture_output=True).returncode == 0:
        return "a cbac package is already installed on this machine; not touching it"
    return None


def run(argv, cwd=None, check=True, timeout=600, **kw):
    r = subprocess.run(argv, cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(argv), r.returncode,
                                                          r.stdout[-4000:], r.stderr[-4000:]))
    return r


class DebianPackageTests(unittest.TestCase):
    skip = _why_not()

    def test_build_install_run_purge(self):
        tmp = tempfile.mkdtemp(prefix="cbac-deb-")
        self.addCleanup(shutil.rmtree, tmp, True)
        src = os.path.join(tmp, "cbac-0.1.0")
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=HERE,
                               capture_output=True, text=True, check=True).stdout.split("\n")
        for f in files:
            if not f or not os.path.isfile(os.path.join(HERE, f)):
                continue
            dst = os.path.join(src, f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(HERE, f), dst)

        # Build from a clean tree with a clean PATH.
        run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src)
        [deb] = glob.glob(os.path.join(tmp, "cbac_*_all.deb"))
        contents = run(["dpkg-deb", "-c", deb]).stdout
        self.assertNotIn("dropin.cache", contents)
        self.assertNotIn("_trial_temp", contents)
        self.assertIn("./usr/lib/python3/dist-packages/twisted/plugins/cbac_plugin.py", contents)
        self.assertIn("./etc/cbac/router.conf", contents)
        self.assertIn("cbac.service", contents)
        self.assertIn("./usr/share/man/man8/cbac.8.gz", contents)
        # the zone-based seed configuration, as an example
        self.assertIn("./usr/share/doc/cbac/examples/router-zbf.conf", contents)
        conffiles = run(["dpkg-deb", "-e", deb, os.path.join(tmp, "ctl")]) and \
            open(os.path.join(tmp, "ctl", "conffiles")).read()
        self.assertIn("/etc/cbac/router.conf", conffiles)
        if shutil.which("lintian", path=CLEAN_ENV["PATH"]):
            lint = run(["lintian", "--no-tag-display-limit", deb], check=False)
            errors = [line for line in lint.stdout.splitlines() if line.startswith("E:")]
            self.assertEqual(errors, [], lint.stdout)

        # Install with apt: only Debian packages are pulled in.
        had_user = subprocess.run(["getent", "passwd", "cbac"], capture_output=True).returncode == 0
        if not had_user:
            # the package leaves its system user behind on purge (Debian
            # practice); the test does not leave it on this machine
            self.addCleanup(run, ["userdel", "cbac"], check=False)
        self.addCleanup(run, ["apt-get", "-o", "DPkg::Lock::Timeout=300", "purge", "-y", "-q", "cbac"], check=False)
        run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "--no-install-recommends", deb])
        # postinst made the management process's user
        self.assertEqual(run(["getent", "passwd", "cbac"], check=False).returncode, 0)
        # the shipped configuration has no lab password, only the placeholders
        with open("/etc/cbac/router.conf") as f:
            shipped = f.read()
        self.assertNotIn("secret 0 cisco", shipped)
        self.assertEqual(shipped.count("secret 0 INITIAL-PASSWORD-NOT-YET-GENERATED"), 2)
        helptext = run(["/usr/bin/twistd3", "cbac", "--help"], cwd="/").stdout
        self.assertIn("--config", helptext)
        self.assertIn("--check", helptext)
        check = run(["/usr/bin/twistd3", "-n", "cbac", "-c", "/etc/cbac/router.conf", "--check"],
                    cwd="/", check=False)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn("not acted on", check.stdout + check.stderr)
        if shutil.which("systemd-analyze", path=CLEAN_ENV["PATH"]):
            r = run(["systemd-analyze", "verify", "/lib/systemd/system/cbac.service"], check=False)
            self.assertNotIn("cbac.service:", r.stderr.replace("/lib/systemd/system/cbac.service:", ""),
                             r.stderr)

        self._forwarding_check()

        # Purge leaves nothing behind.
        run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "purge", "-y", "-q", "cbac"])
        for path in ("/etc/cbac", "/var/lib/cbac", "/usr/lib/python3/dist-packages/cbac",
                     "/usr/lib/python3/dist-packages/twisted/plugins/cbac_plugin.py",
                     "/lib/systemd/system/cbac.service"):
            self.assertFalse(os.path.exists(path), path)
        r = run(["/usr/bin/twistd3", "--help"], cwd="/")
        self.assertNotIn(" cbac ", r.stdout)

    @staticmethod
    def _children(pid):
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def _stop(self, daemon):
        """Stop the daemon and wait until it and its children are gone."""
        if daemon.poll() is not None:
            return
        kids = self._children(daemon.pid)
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
        for _ in range(100):
            if not any(os.path.exists("/proc/%d" % k) for k in kids):
                break
            time.sleep(0.1)

    def _forwarding_check(self):
        """The installed code, under Debian's Twisted, forwards in the lab."""
        from cbac.lab import Lab, unavailable_reason
        if unavailable_reason():
            return
        # the daemon's log and state directory, removed after the lab (and
        # the daemon in it) is down: cleanups run last in, first out
        tmp = tempfile.mkdtemp(prefix="cbac-deb-run-")
        self.addCleanup(shutil.rmtree, tmp, True)
        state = os.path.join(tmp, "state")
        os.mkdir(state, 0o700)
        lab = Lab()
        lab.up()
        self.addCleanup(lab.down)
        log = open(os.path.join(tmp, "cbac.log"), "w")
        self.addCleanup(log.close)
        state = tempfile.mkdtemp(prefix="cbac-state-")
        self.addCleanup(shutil.rmtree, state, True)
        daemon = lab.popen("fw", ["/usr/bin/twistd3", "-n", "--pidfile=", "cbac", "-c",
                                  "/etc/cbac/router.conf", "--state-dir", state],
                           env=CLEAN_ENV, cwd="/", stdout=log, stderr=subprocess.STDOUT)
        # stopped before the purge, with its management process: a daemon
        # still running while dpkg removes its files restarts the management
        # process, whose imports write __pycache__ directories into the
        # package's tree as it goes (the purge then leaves them behind)
        self.addCleanup(self._stop, daemon)
        ok = False
        for _ in range(30):
            r = lab.exec("in", ["ping", "-c", "1", "-W", "1", "172.22.1.1"])
            if r.returncode == 0:
                ok = True
                break
            time.sleep(0.5)
        log.flush()
        self.assertTrue(ok, "no ping through the installed cbac:\n" +
                        open(log.name).read()[-3000:])
        # the first start generated the passwords; the management process
        # runs as the package's user
        self.assertTrue(os.path.exists(os.path.join(state, "initial-password")))
        with open("/etc/cbac/router.conf") as f:
            self.assertIn("enable secret 9 $9$", f.read())
        text = ""
        for _ in range(40):
            text = open(log.name).read()
            if "management process started" in text:
                break
            time.sleep(0.5)
        self.assertRegex(text, r"management process started \(pid \d+, uid \d+ gid \d+\)")
        self.assertNotIn("does not exist", text)
        # down before the purge (see _stop)
        self._stop(daemon)
