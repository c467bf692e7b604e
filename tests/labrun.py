"""A lab with cbac running in it, for the integration tests.

``RunningLab.start(testcase_class, config_text)`` builds a lab with unique
namespace names, writes the configuration, starts ``twistd -n cbac`` in
the firewall namespace and waits until the router answers a ping from the
inside host.  ``stop()`` always tears everything down (call it from
``tearDownClass``; ``start`` cleans up itself when it fails half-way).

``RunningLab.start(..., mode="kernel", nft_extra=...)`` builds the same
lab with the Linux kernel as the router (nftables PAT/static NAT/stateful
filter, plus e.g. :data:`NFT_FTP_HELPER`), no cbac: the reference the
integration tests are validated against.

Note: trial does not call ``setUpClass``/``tearDownClass``; :class:`LabCase`
gives trial test classes one lab per class (started by the first test,
stopped after the last one and at exit).  ``labserver()`` starts
tests/labservers.py servers, ``capture()`` a tcpdump, :func:`records`
reads what a server recorded, :func:`seed_variant` derives configs.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

from cbac.lab import Lab, unavailable_reason

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_CONFIG = os.path.join(HERE, "etc", "router.conf")
#: The seed rewritten for the zone-based policy firewall.
ZBF_CONFIG = os.path.join(HERE, "etc", "router-zbf.conf")

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


#: Kernel mode: the conntrack FTP helper on port 21 both ways (the kernel's
#: counterpart of ``ip inspect name ... ftp``; without it active FTP fails).
NFT_FTP_HELPER = """
table inet cbac_ftp {
    ct helper ftp-std { type "ftp" protocol tcp; }
    chain prehelp {
        type filter hook prerouting priority filter; policy accept;
        tcp dport 21 ct helper set "ftp-std"
    }
}
"""


def nft_static_tcp(port, inside="10.10.10.25", global_addr="172.22.1.16"):
    """Kernel mode: a static port translation ``global:port -> inside:port``
    (the counterpart of ``ip nat inside source static tcp ...`` plus the
    ACL entry that permits it)."""
    return ("add rule ip cbac_lab prerouting iifname \"outside\" ip daddr %s tcp dport %d dnat to %s:%d\n"
            % (global_addr, port, inside, port))


def skip_reason():
    return unavailable_reason()


class RunningLab:
    def __init__(self):
        self.mode = "cbac"
        self.lab = None
        self.proc = None
        self.tmp = None
        self.logfile = None
        self.console_port = 2222

    @classmethod
    def start(cls, config_text=None, config_path=None, extra_args=(), wait_for="10.10.10.1",
              mode="cbac", nft_extra=None, prepare=None):
        """Start a lab.  ``mode="kernel"``: the Linux kernel is the router
        (:data:`cbac.lab.NFT_KERNEL`, plus the ruleset ``nft_extra``, e.g.
        :data:`NFT_FTP_HELPER`); no cbac runs, ``log()`` is empty."""
        self = cls()
        self.mode = mode
        self.prepare = prepare      # prepare(lab): after the lab is up, before cbac starts
        try:
            self._start(config_text, config_path, extra_args, wait_for, nft_extra)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, config_text, config_path, extra_args, wait_for, nft_extra=None):
        self.tmp = tempfile.mkdtemp(prefix="cbac-lab-")
        if config_text is not None:
            config_path = os.path.join(self.tmp, "router.conf")
            with open(config_path, "w") as f:
                f.write(config_text)
        self.config_path = config_path or SEED_CONFIG
        self.lab = Lab(mode=self.mode)
        self.lab.up()
        if getattr(self, "prepare", None) is not None:
            self.prepare(self.lab)
        self.logpath = os.path.join(self.tmp, "cbac.log")
        if self.mode == "kernel":
            open(self.logpath, "w").close()
            if nft_extra:
                r = self.lab.exec("fw", ["nft", "-f", "-"], input=nft_extra, timeout=10)
                if r.returncode != 0:
                    raise RuntimeError("nft_extra failed: %s" % r.stderr)
            self._wait_ping(wait_for, 10)
            return
        self.logfile = open(self.logpath, "w")
        self.extra_args = list(extra_args)
        self.spawn()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("cbac exited with %s:\n%s" % (self.proc.poll(), self.log()))
            r = self.lab.exec("in", ["ping", "-c", "1", "-W", "1", wait_for])
            # bare mode: the kernel answers pings until cbac has taken the ports
            if r.returncode == 0 and (self.mode != "bare" or self.started(1)):
                self._wait_console()
                return
        raise RuntimeError("cbac did not answer ping within 20 s:\n" + self.log())

    STARTED = "%FW-6-INIT: Firewall inspection startup completed"
    CONSOLE = "%SSH-5-ENABLED"

    def _wait_console(self, timeout=30.0):
        """The console listens a moment after forwarding starts (the
        management process starts, reads and parses the configuration):
        wait for it, so tests do not race it (no error if it never comes:
        tests without a console)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.CONSOLE in self.log():
                return
            time.sleep(0.1)

    def started(self, n=1):
        """Has the daemon logged its start ``n`` times (restarts)?"""
        return self.log().count(self.STARTED) >= n

    def spawn(self):
        """Start (or start again) the cbac daemon; ``self.proc``."""
        args = ["--state-dir", os.path.join(self.tmp, "state"),
                "--listen", "tcp:%d:interface=127.0.0.1" % self.console_port] + self.extra_args
        self.proc = self.lab.spawn_cbac(self.config_path, args, stdout=self.logfile,
                                        stderr=subprocess.STDOUT, cwd=self.tmp)
        return self.proc

    def _wait_ping(self, addr, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.lab.exec("in", ["ping", "-c", "1", "-W", "1", addr], timeout=5)
            if r.returncode == 0:
                return
        raise RuntimeError("%s did not answer ping within %d s" % (addr, timeout))

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

    # -- lab servers (tests/labservers.py) and captures ----------------

    def labserver(self, ns, kind, host, port, *extra, timeout=15):
        """Start ``tests/labservers.py KIND HOST PORT RECORD ...`` in ``ns``
        and wait for its READY line; returns the record file's path (read
        it with :func:`records`)."""
        record = os.path.join(self.tmp, "%s-%s-%s-%d.jsonl" % (kind, ns, host, port))
        open(record, "w").close()
        script = os.path.join(HERE, "tests", "labservers.py")
        p = self.lab.popen(ns, [sys.executable, script, kind, host, str(port), record] + list(extra),
                           stdout=subprocess.PIPE, stderr=open(record + ".err", "w"))
        deadline = time.monotonic() + timeout
        os.set_blocking(p.stdout.fileno(), False)
        buf = b""
        while time.monotonic() < deadline:
            if p.poll() is not None:
                with open(record + ".err") as f:
                    raise RuntimeError("labserver %s exited with %s: %s" % (kind, p.returncode, f.read()[-2000:]))
            chunk = p.stdout.read()
            if chunk:
                buf += chunk
                if b"READY" in buf:
                    return record
            time.sleep(0.05)
        raise RuntimeError("labserver %s %s:%d not ready in %d s" % (kind, host, port, timeout))

    def capture(self, ns, dev, bpf):
        """Start tcpdump in ``ns`` on ``dev``; returns a :class:`Capture`
        (``stop()`` returns the packets' one-line summaries)."""
        return Capture(self, ns, dev, bpf)


def records(path, ev=None):
    """The JSON records of a lab server (optionally only events ``ev``);
    string values that carried bytes come back as latin-1 str."""
    import json
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    r = json.loads(line)
                    if ev is None or r.get("ev") == ev:
                        out.append(r)
    except OSError:
        pass
    return out


def wait_for(predicate, timeout=5.0, interval=0.05):
    """Poll ``predicate()`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


class Capture:
    def __init__(self, env, ns, dev, bpf, timeout=5.0):
        import signal as _signal
        self._signal = _signal
        self.path = os.path.join(env.tmp, "cap-%s-%s-%d.pcap" % (ns, dev, time.monotonic_ns()))
        self.err = self.path + ".err"
        self.env = env
        self.ns = ns
        self.p = env.lab.popen(ns, ["tcpdump", "-Z", "root", "--immediate-mode", "-i", dev, "-n", "-U", "-w", self.path, bpf],
                               stdout=subprocess.DEVNULL, stderr=open(self.err, "w"))
        ok = wait_for(lambda: "listening on" in _read(self.err) or self.p.poll() is not None, timeout)
        if not ok or self.p.poll() is not None:
            raise RuntimeError("tcpdump did not start: %s" % _read(self.err))
        time.sleep(0.2)

    def stop(self, settle=0.5):
        time.sleep(settle)
        if self.p.poll() is None:
            self.p.send_signal(self._signal.SIGINT)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        r = subprocess.run(["tcpdump", "-n", "-r", self.path], capture_output=True, text=True, timeout=20)
        return [line for line in r.stdout.splitlines() if line.strip()]


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def seed_variant(extra=(), replace=(), base=SEED_CONFIG):
    """The seed configuration (etc/router.conf, or ``base``) with
    ``replace`` pairs ``(old, new)`` applied (each ``old`` must occur) and
    the lines ``extra`` added before the final ``end``."""
    with open(base) as f:
        text = f.read()
    for old, new in replace:
        if old not in text:
            raise ValueError("seed configuration has no %r" % (old,))
        text = text.replace(old, new)
    head, sep, tail = text.rpartition("\nend")
    return head + "\n" + "".join(line + "\n" for line in extra) + "!" + sep + tail


def zbf_variant(extra=(), replace=()):
    """:func:`seed_variant` of the ZBF seed (etc/router-zbf.conf)."""
    return seed_variant(extra, replace, base=ZBF_CONFIG)


_LIVE = []


def _stop_all():
    while _LIVE:
        env = _LIVE.pop()
        try:
            env.stop()
        except Exception:
            pass


atexit.register(_stop_all)


class LabCase:
    """Mixin for trial ``TestCase`` classes: one lab per class.

    trial has no ``setUpClass``: the lab is started by the first test's
    ``setUp`` and stopped after the last test of the class has run (and, in
    any case, at interpreter exit, e.g. when only some tests are selected
    or the run is interrupted).  A failing start is remembered, so the
    other tests of the class fail at once with the same error.

    Class attributes: ``mode`` (``"cbac"`` or ``"kernel"``), ``config``
    (configuration text for cbac; ``None``: the seed), ``nft_extra``
    (kernel mode: extra nftables rules), ``extra_args`` (more ``twistd cbac``
    options), ``offload_off_pass`` (False: ``make test`` does not run the
    class again with ``CBAC_OFFLOAD=0``, because nothing of its traffic can
    be offloaded; see tests/groups.py).  ``setUpLab(cls)`` (a classmethod
    hook) starts servers."""

    mode = "cbac"
    config = None
    nft_extra = None
    extra_args = ()
    offload_off_pass = True

    def setUp(self):
        cls = type(self)
        if "_lab_error" in cls.__dict__:
            raise RuntimeError("lab start failed earlier in this class: %s" % cls._lab_error)
        if cls.__dict__.get("env") is None:
            cls._lab_remaining = {n for n in dir(cls) if n.startswith("test") and callable(getattr(cls, n))}
            try:
                cls.env = RunningLab.start(config_text=cls.config, mode=cls.mode, nft_extra=cls.nft_extra,
                                           extra_args=cls.extra_args)
            except BaseException as e:
                cls._lab_error = "%s: %s" % (type(e).__name__, e)
                raise
            _LIVE.append(cls.env)
            try:
                cls.setUpLab()
            except BaseException as e:
                cls._lab_error = "%s: %s" % (type(e).__name__, e)
                self._lab_stop()
                raise
        self.addCleanup(self._lab_test_done)

    @classmethod
    def _lab_stop(cls):
        env = cls.__dict__.get("env")
        cls.env = None
        if env is not None:
            if env in _LIVE:
                _LIVE.remove(env)
            env.stop()

    def _lab_test_done(self):
        cls = type(self)
        cls._lab_remaining.discard(self._testMethodName)
        if not cls._lab_remaining:
            cls._lab_stop()

    @classmethod
    def setUpLab(cls):
        pass

    @property
    def cbac(self):
        return self.mode == "cbac"

    def daemon_log(self):
        return self.env.log()

    def wait_log(self, text, timeout=5.0):
        """Wait until ``text`` appears in the daemon log; returns the log."""
        wait_for(lambda: text in self.env.log(), timeout)
        return self.env.log()
