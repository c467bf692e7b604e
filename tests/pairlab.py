"""A namespace lab for the active/standby pair (tests/test_lab_redundancy.py).

::

    cbac-pin-X  eth0 10.10.10.2/24 ---+                    +--- eth0 172.22.1.1/24 (+.2)  cbac-pout-X
                                      |   cbac-psw-X       |
                                    br-in               br-out
                                  /        \\           /        \\
    cbac-pf1-X  inside (Ethernet2/1)  ...  outside (Ethernet2/0)    box 1
                sync 192.0.2.1/30  <-- state sync link -->  sync 192.0.2.2/30
                hb 198.51.100.1/30 <-- VRRP (keepalived) --> hb 198.51.100.2/30
    cbac-pf2-X  inside (Ethernet2/1)  ...  outside (Ethernet2/0)    box 2

Each box runs cbac (its data ports claimed) and keepalived (VRRP over the
``hb`` link, cbac's notify script, a health check).  Both cbac boxes have
the same configuration apart from their sync address and peer.  Only
namespaces this module creates are touched; :meth:`PairLab.down` removes
them all (also after a failure).
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACS = {1: ("02:00:0a:0a:0a:01", "02:00:ac:16:01:10"),
        2: ("02:00:0a:0a:0a:11", "02:00:ac:16:01:20")}
KEY = "lab-pair-key-1"


def sh(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))
    return r


class PairLab:
    def __init__(self, config_text):
        self.suffix = secrets.token_hex(3)
        self.names = {k: "cbac-p%s-%s" % (k, self.suffix)
                      for k in ("in", "out", "sw", "f1", "f2")}
        self.tmp = tempfile.mkdtemp(prefix="cbac-pair-")
        self.config_text = config_text
        self.cbac = {}
        self.keepalived = {}
        self.logs = {}
        self._children = []

    # -- building ---------------------------------------------------------

    def ns(self, k):
        return self.names[k]

    def ip(self, k, *args):
        return sh(["ip", "-n", self.ns(k)] + list(args))

    def exec(self, k, argv, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 30)
        return subprocess.run(["ip", "netns", "exec", self.ns(k)] + list(argv), **kw)

    def popen(self, k, argv, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(k)] + list(argv), **kw)
        self._children.append(p)
        return p

    def _veth(self, a, an, b, bn, mac=None):
        args = ["ip", "link", "add", an, "netns", self.ns(a)]
        if mac:
            args += ["address", mac]
        sh(args + ["type", "veth", "peer", "name", bn, "netns", self.ns(b)])

    def up(self):
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self):
        for n in self.names.values():
            sh(["ip", "netns", "add", n])
        for k in self.names:
            self.ip(k, "link", "set", "lo", "up")
        self.ip("sw", "link", "add", "br-in", "type", "bridge")
        self.ip("sw", "link", "add", "br-out", "type", "bridge")
        for br in ("br-in", "br-out"):
            # forward at once (no STP learning delay)
            self.ip("sw", "link", "set", br, "type", "bridge", "forward_delay", "0")
            self.ip("sw", "link", "set", br, "up")
        self._veth("in", "eth0", "sw", "h-in")
        self._veth("out", "eth0", "sw", "h-out")
        for i in (1, 2):
            f = "f%d" % i
            mi, mo = MACS[i]
            self._veth(f, "inside", "sw", "%s-in" % f, mac=mi)
            self._veth(f, "outside", "sw", "%s-out" % f, mac=mo)
        self._veth("f1", "sync", "f2", "sync")
        self._veth("f1", "hb", "f2", "hb")
        for port, br in (("h-in", "br-in"), ("h-out", "br-out"), ("f1-in", "br-in"),
                         ("f2-in", "br-in"), ("f1-out", "br-out"), ("f2-out", "br-out")):
            self.ip("sw", "link", "set", port, "master", br)
            self.ip("sw", "link", "set", port, "up")
        self.ip("in", "addr", "add", "10.10.10.2/24", "dev", "eth0")
        self.ip("in", "link", "set", "eth0", "up")
        self.ip("in", "route", "add", "default", "via", "10.10.10.1")
        self.ip("out", "addr", "add", "172.22.1.1/24", "dev", "eth0")
        self.ip("out", "addr", "add", "172.22.1.2/24", "dev", "eth0")
        self.ip("out", "link", "set", "eth0", "up")
        self.ip("out", "route", "add", "default", "via", "172.22.1.16")
        for i in (1, 2):
            f = "f%d" % i
            for dev in ("inside", "outside", "sync", "hb"):
                self.ip(f, "link", "set", dev, "up")
            self.ip(f, "addr", "add", "192.0.2.%d/30" % i, "dev", "sync")
            self.ip(f, "addr", "add", "198.51.100.%d/30" % i, "dev", "hb")

    # -- cbac and keepalived ----------------------------------------------

    def state_dir(self, i):
        return os.path.join(self.tmp, "state%d" % i)

    def config(self, i):
        peer = 3 - i
        text = self.config_text.replace("\nend", (
            "\ninterface Ethernet2/2\n ip address 192.0.2.%d 255.255.255.252\n!\n"
            "cbac redundancy peer 192.0.2.%d interface Ethernet2/2 key %s\n!\nend")
            % (i, peer, KEY), 1)
        path = os.path.join(self.tmp, "router%d.conf" % i)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_cbac(self, i):
        os.makedirs(self.state_dir(i), exist_ok=True)
        log = open(os.path.join(self.tmp, "cbac%d.log" % i), "a")
        self.logs[i] = log.name
        twistd = [sys.executable, "-c",
                  "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]
        argv = twistd + ["-n", "--pidfile=", "cbac", "-c", self.config(i),
                         "--port", "Ethernet2/1=inside", "--port", "Ethernet2/0=outside",
                         "--state-dir", self.state_dir(i),
                         "--listen", "tcp:%d:interface=127.0.0.1" % (2300 + i)]
        env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.cbac[i] = self.popen("f%d" % i, argv, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=self.tmp, env=env)
        return self.cbac[i]

    def log(self, i):
        try:
            with open(self.logs[i]) as f:
                return f.read()
        except (OSError, KeyError):
            return ""

    def start_keepalived(self, i, priority):
        from cbac.continuity.vrrp import keepalived_conf
        d = self.state_dir(i)
        env = "PYTHONPATH=%s" % HERE
        notify = os.path.join(self.tmp, "notify%d.sh" % i)
        check = os.path.join(self.tmp, "check%d.sh" % i)
        with open(notify, "w") as f:
            f.write("#!/bin/sh\n%s exec %s -m cbac.continuity.notify --state-dir %s \"$@\"\n"
                    % (env, sys.executable, d))
        with open(check, "w") as f:
            # cheap (no Python start on a busy box): is cbac's process there?
            f.write("#!/bin/sh\nexec kill -0 $(cat %s/redundancy.pid)\n" % d)
        for path in (notify, check):
            os.chmod(path, 0o755)
        conf = os.path.join(self.tmp, "keepalived%d.conf" % i)
        with open(conf, "w") as f:
            f.write(keepalived_conf("CBAC%d" % i, "hb", 51, priority,
                                    "198.51.100.%d" % i, "198.51.100.%d" % (3 - i), notify,
                                    advert=0.2, check=check, script_security=False,
                                    vip="203.0.113.1/32 dev hb"))
        log = open(os.path.join(self.tmp, "keepalived%d.log" % i), "a")
        run = os.path.join(self.tmp, "ka%d" % i)
        os.makedirs(run, exist_ok=True)
        self.keepalived[i] = self.popen(
            "f%d" % i, ["keepalived", "-n", "-l", "-D", "-P", "-f", conf,
                        "-p", os.path.join(run, "k.pid"), "-r", os.path.join(run, "v.pid"),
                        "-c", os.path.join(run, "c.pid")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.keepalived[i]

    def console(self, i, command, timeout=20):
        """One console command on box i (OpenSSH client, admin/cisco)."""
        askpass = os.path.join(self.tmp, "askpass.sh")
        with open(askpass, "w") as f:
            f.write("#!/bin/sh\necho cisco\n")
        os.chmod(askpass, 0o700)
        env = dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        r = self.exec("f%d" % i, ["ssh", "-p", str(2300 + i), "-o", "StrictHostKeyChecking=no",
                                  "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                  "-o", "PreferredAuthentications=password",
                                  "-o", "NumberOfPasswordPrompts=1", "admin@127.0.0.1", command],
                      env=env, stdin=subprocess.DEVNULL, timeout=timeout)
        return r.stdout + r.stderr

    def kill(self, p):
        if p is not None and p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def kill_box(self, i):
        """The box dies: cbac and keepalived killed (SIGKILL)."""
        ka = self.keepalived.get(i)
        if ka is not None and ka.poll() is None:
            try:
                os.killpg(ka.pid, signal.SIGKILL)
            except OSError:
                pass
            ka.wait(10)
        self.kill(self.cbac.get(i))

    def down(self):
        for i in list(self.keepalived):
            ka = self.keepalived[i]
            if ka.poll() is None:
                try:
                    os.killpg(ka.pid, signal.SIGTERM)
                    ka.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(ka.pid, signal.SIGKILL)
                    except OSError:
                        pass
        for p in self._children:
            if p.poll() is None:
                try:
                    p.terminate()
                    p.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    p.kill()
        for n in self.names.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        if not os.environ.get("CBAC_KEEP_LAB_LOGS"):
            shutil.rmtree(self.tmp, True)
