"""A lab with cbac running in it, for the integration tests.

``RunningLab.start(testcase_class, config_text)`` builds a lab with unique
namespace names, writes the configuration, starts ``twistd -n cbac`` in
the firewall namespace and waits until the router answers a ping from the
inside host.  ``stop()`` always tears everything down (call it from
``tearDownClass``; ``start`` cleans up itself when it fails half-way).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from cbac.lab import Lab, unavailable_reason

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_CONFIG = os.path.join(HERE, "etc", "router.conf")

#: A plain routed configuration: the seed's addresses, no ACL, NAT or inspection.
ROUTED_CONFIG = """\
hostname lab-router
interface Ethernet2/0
 ip address 172.22.1.16 255.255.255.0
interface Ethernet2/1
 ip address 10.10.10.1 255.255.255.0
ip route 0.0.0.0 0.0.0.0 172.22.1.1
username admin privilege 15 secret 0 cisco
enable secret 0 cisco
"""


def skip_reason():
    return unavailable_reason()


class RunningLab:
    def __init__(self):
        self.lab = None
        self.proc = None
        self.tmp = None
        self.logfile = None
        self.console_port = 2222

    @classmethod
    def start(cls, config_text=None, config_path=None, extra_args=(), wait_for="10.10.10.1"):
        self = cls()
        try:
            self._start(config_text, config_path, extra_args, wait_for)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, config_text, config_path, extra_args, wait_for):
        self.tmp = tempfile.mkdtemp(prefix="cbac-lab-")
        if config_text is not None:
            config_path = os.path.join(self.tmp, "router.conf")
            with open(config_path, "w") as f:
                f.write(config_text)
        self.config_path = config_path or SEED_CONFIG
        self.lab = Lab()
        self.lab.up()
        self.logpath = os.path.join(self.tmp, "cbac.log")
        self.logfile = open(self.logpath, "w")
        args = ["--state-dir", os.path.join(self.tmp, "state"),
                "--listen", "tcp:%d:interface=127.0.0.1" % self.console_port] + list(extra_args)
        self.proc = self.lab.spawn_cbac(self.config_path, args, stdout=self.logfile,
                                        stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("cbac exited with %s:\n%s" % (self.proc.poll(), self.log()))
            r = self.lab.exec("in", ["ping", "-c", "1", "-W", "1", wait_for])
            if r.returncode == 0:
                return
        raise RuntimeError("cbac did not answer ping within 20 s:\n" + self.log())

    def log(self) -> str:
        if self.logfile is not None:
            self.logfile.flush()
        try:
            with open(self.logpath) as f:
                return f.read()
        except (OSError, AttributeError):
            return ""

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.stop()
            except Exception:
                pass
        if self.lab is not None:
            self.lab.down()
        if self.logfile is not None:
            self.logfile.close()
        if self.tmp is not None and not os.environ.get("CBAC_KEEP_LAB_LOGS"):
            shutil.rmtree(self.tmp, True)

    # -- helpers for tests ---------------------------------------------

    def exec(self, ns, argv, **kw):
        return self.lab.exec(ns, argv, **kw)

    def server(self, ns, argv, **kw):
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        return self.lab.popen(ns, argv, **kw)

    def python(self, ns, code, *args, **kw):
        return self.lab.exec(ns, [sys.executable, "-c", code] + list(args), **kw)

    def console(self, command, user="admin", password="cisco", timeout=20):
        """Run one console command over the real OpenSSH client."""
        askpass = os.path.join(self.tmp, "askpass.sh")
        with open(askpass, "w") as f:
            f.write("#!/bin/sh\necho %s\n" % password)
        os.chmod(askpass, 0o700)
        env = dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        return self.lab.exec("fw", ["ssh", "-p", str(self.console_port), "-o", "StrictHostKeyChecking=no",
                                    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                    "-o", "PreferredAuthentications=password",
                                    "-o", "NumberOfPasswordPrompts=1",
                                    "%s@127.0.0.1" % user, command],
                             env=env, timeout=timeout, stdin=subprocess.DEVNULL)
