"""``make run`` as a new user meets it: ``python -m cbac.lab run -c
etc/router.conf`` in a subprocess, then every command line it prints,
pasted into a shell in another directory, must work.

The only changes to the printed lines: ``ssh`` gets ``-F FILE`` (no host
key question, no known_hosts) and its password from ``SSH_ASKPASS``; the
interactive ones (the console, ``shell``) get their input on stdin.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import time

from twisted.trial import unittest

from cbac.lab import Lab, unavailable_reason

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MakeRunTests(unittest.TestCase):
    skip = unavailable_reason()
    timeout = 240

    def setUp(self):
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)
        self.suffix = Lab().suffix
        self.addCleanup(Lab(self.suffix).down)
        self.out = open(os.path.join(self.tmp, "run.out"), "w+")
        self.err = open(os.path.join(self.tmp, "run.err"), "w+")
        self.addCleanup(self.out.close)
        self.addCleanup(self.err.close)
        self.p = subprocess.Popen(
            [sys.executable, "-m", "cbac.lab", "run", "-c", "etc/router.conf", "--suffix", self.suffix,
             "--state-dir", os.path.join(self.tmp, "state")],
            cwd=HERE, stdout=self.out, stderr=self.err, start_new_session=True,
            env=dict(os.environ, PYTHONPATH=HERE))
        self.addCleanup(self._stop)
        askpass = os.path.join(self.tmp, "askpass")
        with open(askpass, "w") as f:
            f.write("#!/bin/sh\necho cisco\n")
        os.chmod(askpass, 0o700)
        self.sshcfg = os.path.join(self.tmp, "ssh_config")
        with open(self.sshcfg, "w") as f:
            f.write("StrictHostKeyChecking no\nUserKnownHostsFile /dev/null\nLogLevel ERROR\n"
                    "ConnectTimeout 10\nPreferredAuthentications password\nNumberOfPasswordPrompts 1\n")
        self.env = dict(os.environ, PYTHONPATH=HERE, SSH_ASKPASS=askpass,
                        SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")

    def _stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)

    def _printed(self):
        """Wait for the examples; return (all text, command lines)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.out.seek(0)
            text = self.out.read()
            if "Starting cbac in" in text:
                break
            if self.p.poll() is not None:
                self.err.seek(0)
                self.fail("lab run exited %s: %s" % (self.p.returncode, self.err.read()))
            time.sleep(0.2)
        else:
            self.fail("no examples printed")
        cmds = [l.strip() for l in text.split("Starting cbac in")[0].splitlines()
                if l.startswith("  ip netns exec ") or l.startswith("  " + sys.executable)]
        return text, cmds

    def sh(self, cmd, stdin=None, timeout=60):
        if " ssh " in cmd:
            cmd = cmd.replace(" ssh ", " ssh -F %s " % shlex.quote(self.sshcfg), 1)
        return subprocess.run(cmd, shell=True, cwd="/", env=self.env, input=stdin or "",
                              capture_output=True, text=True, timeout=timeout)

    def test_every_printed_example_works(self):
        text, cmds = self._printed()
        s = self.suffix
        self.assertIn("user admin, password cisco, from %s" % os.path.join(HERE, "etc", "router.conf"),
                      text)
        # no bare "python" (Debian has none): the venv's interpreter by path
        self.assertFalse(re.search(r"(^|\s)python3? ", text), text)
        by_kind = {}
        for c in cmds:
            words = re.sub(r"^ip netns exec \S+ ", "", c).split()
            key = words[0]
            if key == sys.executable:
                key = "lab " + words[3]
            elif key == "ssh":
                key = "ssh " + (" ".join(words[4:]) or "interactive")
                key = re.sub(r"^ssh configure replace \S+ force$", "ssh configure replace", key)
            by_kind[key] = c
        self.assertEqual(sorted(by_kind), sorted([
            "ping", "curl", "swaks", "traceroute", "ssh interactive", "ssh show ip inspect sessions",
            "ssh configure replace", "lab shell", "lab down"]), cmds)
        self.assertEqual(len([c for c in cmds if " curl " in c]), 2, cmds)

        # the console on 127.0.0.1 in the fw namespace, as printed
        lab = Lab(s)
        self.assertTrue(lab.wait_listening("fw", "127.0.0.1", 2222, timeout=30), self._log())

        for c in cmds:
            if " curl " in c:
                r = self.sh(c)
                self.assertEqual(r.returncode, 0, (c, r.stderr))
                self.assertIn("Hello from the outside", r.stdout)
        r = self.sh(by_kind["ping"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("3 received", r.stdout)

        # SMTP as shipped: EHLO masked and refused, HELO works
        r = self.sh(by_kind["swaks"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^<\*\* 500 .*XXXX")
        self.assertIn(" -> HELO ", r.stdout)
        self.assertRegex(r.stdout, r"(?m)^<-  250 .*\n -> QUIT")

        r = self.sh(by_kind["traceroute"], timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^ 2  172\.22\.1\.1 ")

        r = self.sh(by_kind["ssh show ip inspect sessions"])
        self.assertEqual(r.returncode, 0, r.stderr)

        r = self.sh(by_kind["ssh interactive"], stdin="show version\nshow ip inspect name OUT-IN\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cbac Software", r.stdout)
        self.assertIn("3640-123#show ip inspect name OUT-IN", r.stdout)

        # the esmtp alternative, then EHLO passes
        r = self.sh(by_kind["ssh configure replace"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("The replace operation was completed successfully", r.stdout)
        r = self.sh(by_kind["swaks"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("<** 500", r.stdout)
        self.assertRegex(r.stdout, r"(?m)^ -> EHLO .*\n<-  250-")

        mail = re.search(r"received mail: (\S+)", text).group(1)
        with open(mail) as f:
            self.assertEqual(f.read().count("This is a test mailing"), 2)

        # the daemon's log: logins and logouts IOS style, none of conch's chatter
        log = self._log(100000)
        self.assertRegex(log, r"%SSH-5-SSH2_SESSION: SSH2 Session request from 127\.0\.0\.1 \(tty = 2\) "
                              r"using crypto cipher '\S+', hmac '\S+' Succeeded")
        self.assertIn("%SSH-5-SSH2_USERAUTH: User 'admin' authentication for SSH2 Session from 127.0.0.1", log)
        self.assertIn("%SYS-6-LOGOUT: User admin has exited tty session 2(127.0.0.1)", log)
        self.assertTrue(os.path.exists(os.path.join(self.tmp, "state", "ssh_host_ed25519_key")))
        for noise in ("moduli", "Got remote error", "disconnected by user", "kex alg", "NEW KEYS",
                      "channel open", "starting service", "CbacSSHFactory starting on", "twisted.conch"):
            self.assertNotIn(noise, log)
        self.assertEqual(log.count("%SSH-5-ENABLED"), 1)

        r = self.sh(by_kind["lab shell"].replace("{in,fw,out}", "fw"), stdin="ip netns identify\n")
        self.assertEqual(r.stdout.strip(), "cbac-fw-" + s, r.stderr)

        r = self.sh(by_kind["lab down"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.p.wait(30)
        self.assertEqual(Lab(s).exists(), [])
        self.assertFalse(os.path.exists(os.path.dirname(mail)))

    def _log(self, n=3000):
        self.out.seek(0)
        return self.out.read()[-n:]
