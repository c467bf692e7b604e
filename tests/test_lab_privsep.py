"""Lab: privilege separation (issue 16).

``twistd cbac`` runs two processes: the engine (root, the data plane) and
the management process (the SSH console) as an unprivileged user with no
capabilities, checked from /proc.  Killing the management process with
SIGKILL while pings flow through cbac loses no ping; the engine restarts it
and the console answers again.  A 100,000-line ``show running-config`` and
a 100,000-line ``show access-lists`` (produced by the engine in slices)
leave the ping round-trip times close to their idle values.
"""

import os
import re
import signal
import subprocess
import threading
import time

from twisted.trial import unittest

from tests.labrun import LabCase, seed_variant, skip_reason, wait_for
from tests.test_lab_console import SSH_OPTS, _askpass


def _status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def _ppid(pid):
    try:
        return int(_status(pid)["PPid"][0])
    except (OSError, KeyError, ValueError):
        return 0


def _descends(pid, ancestor):
    for _ in range(10):
        pid = _ppid(pid)
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def mgmt_pids(engine_pid):
    """The management processes (``python3 -m cbac.mgmt``) under ``engine_pid``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"cbac.mgmt" in cmd and _descends(int(name), engine_pid):
            out.append(int(name))
    return out


def p99(values):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * 0.99))]


def _rtts(text):
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", text)]


class PrivsepLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()

    def engine_pid(self):
        return self.env.proc.pid

    def one_mgmt(self, timeout=15.0):
        found = []

        def look():
            found[:] = mgmt_pids(self.engine_pid())
            return len(found) == 1
        wait_for(look, timeout)
        self.assertEqual(len(found), 1, found)
        return found[0]

    def test_management_process_is_unprivileged(self):
        pid = self.one_mgmt()
        st = _status(pid)
        self.assertNotIn("0", st["Uid"], st["Uid"])
        self.assertNotIn("0", st["Gid"], st["Gid"])
        self.assertEqual(int(st["CapEff"][0], 16), 0, st["CapEff"])
        self.assertEqual(int(st["CapPrm"][0], 16), 0, st["CapPrm"])
        self.assertEqual(int(st["CapBnd"][0], 16), 0, st["CapBnd"])
        self.assertEqual(st["NoNewPrivs"], ["1"])
        self.assertEqual(st.get("Groups", []), [])
        # and it yields the CPU to the engine
        with open("/proc/%d/stat" % pid) as f:
            nice = int(f.read().rsplit(")", 1)[1].split()[16])
        self.assertEqual(nice, 10)
        # the engine is the one with the capabilities (root here)
        eng = _status(self.engine_pid())
        self.assertIn("0", eng["Uid"])
        # and the console is served by the management process
        r = self.env.console("show version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cbac Software", r.stdout)
        self.assertIn("management process started", self.env.log())

    def test_kill_management_process_forwarding_continues(self):
        env = self.env
        pid = self.one_mgmt()
        p = env.lab.popen("in", ["ping", "-n", "-i", "0.01", "-c", "600", "-W", "1", "172.22.1.1"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)
        os.kill(pid, signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        self.assertIsNotNone(m, out[-300:])
        sent, got = int(m.group(1)), int(m.group(2))
        self.assertEqual(sent, 600)
        self.assertGreaterEqual(got, 597, out[-300:])           # nothing lost beyond noise
        self.assertIn("exited (signal 9); restarting it", env.log())
        new = self.one_mgmt(timeout=20)
        self.assertNotEqual(new, pid)
        deadline = time.monotonic() + 20
        while True:
            r = env.console("show version")
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cbac Software", r.stdout)


#: 50,000 entries and 50,000 remarks: a 100,000-line 'show running-config'
#: (rendered by the management process) and a 50,000-line 'show access-lists
#: 150' (produced by the engine, whose counters it shows, in slices)
BIG = ["access-list 150 remark entry %d of a long list of remarks" % i for i in range(50000)] + \
    ["access-list 150 permit tcp any host 10.%d.%d.%d eq 80" % (i >> 16 & 255, i >> 8 & 255, i & 255)
     for i in range(50000)]


class BigShowLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()
    config = seed_variant(extra=BIG)

    def ping(self, count):
        return self.env.lab.popen("in", ["ping", "-n", "-i", "0.01", "-c", str(count), "-W", "1",
                                         "172.22.1.1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def ssh(self, command, timeout=120):
        argv = ["ssh", "-p", "2222"] + SSH_OPTS + [
            "-o", "NumberOfPasswordPrompts=1", "-o", "PreferredAuthentications=password",
            "admin@127.0.0.1", command]
        return self.env.exec("fw", argv, env=_askpass(self.env.tmp, "cisco"), timeout=timeout)

    def test_forwarding_latency_while_100000_line_shows_run(self):
        # the management process parses the big configuration first
        deadline = time.monotonic() + 60
        while True:
            r = self.ssh("show clock", timeout=30)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        self.assertEqual(r.returncode, 0, r.stderr)
        idle = self.ping(200)
        idle_out, _ = idle.communicate(timeout=30)
        idle_rtts = _rtts(idle_out)
        self.assertGreater(len(idle_rtts), 190, idle_out[-500:])

        results = {}

        def console_work():
            results["run"] = self.ssh("show running-config")
            results["acl"] = self.ssh("show access-lists 150")
        p = self.ping(1000)
        t = threading.Thread(target=console_work)
        t.start()
        t.join(240)
        out, _ = p.communicate(timeout=60)
        load_rtts = _rtts(out)

        run, acl = results["run"], results["acl"]
        self.assertEqual(run.returncode, 0, run.stderr[-500:])
        self.assertEqual(acl.returncode, 0, acl.stderr[-500:])
        self.assertGreaterEqual(run.stdout.count("\n"), 100000)
        self.assertIn("remark entry 49999 of a long list", run.stdout)
        self.assertEqual(acl.stdout.count(" permit tcp any host 10."), 50000)
        self.assertIn("permit tcp any host 10.0.195.79 eq www", acl.stdout)

        self.assertGreater(len(load_rtts), 980, out[-500:])        # nothing lost
        idle_avg = sum(idle_rtts) / len(idle_rtts)
        load_avg = sum(load_rtts) / len(load_rtts)
        msg = "idle avg %.2f p99 %.2f max %.2f ms; during 100,000-line shows avg %.2f p99 %.2f " \
            "max %.2f ms" % (idle_avg, p99(idle_rtts), max(idle_rtts), load_avg, p99(load_rtts),
                             max(load_rtts))
        print(msg)
        self.assertLess(load_avg, idle_avg + 5, msg)
        # the 99th percentile, not the maximum: one late ping is the shared
        # machine's scheduler (seen idle too); an engine held for 100 ms
        # delays ten pings in a row
        self.assertLess(p99(load_rtts), p99(idle_rtts) + 20, msg)
