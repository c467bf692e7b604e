"""Lab: the console cannot hurt forwarding (issue 16).

The real daemon forwards pings from the inside host to the outside host
while a privilege-1 user runs the catastrophic filter expression and a
privilege-15 user pipes 1,000 commands into one SSH session; the round-trip
times stay close to their idle values (before issue 16 one such expression
froze forwarding for 8.7 s, and ~240 piped commands ended in a
RecursionError)."""

import re
import subprocess
import threading

from twisted.trial import unittest

from tests.labrun import LabCase, seed_variant, skip_reason
from tests.test_lab_privsep import p99
from tests.test_lab_console import SSH_OPTS, _askpass, ssh

CATASTROPHIC = "show version | include ^(.|.){25}X"


def _rtts(text):
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", text)]


class ConsoleLoadLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()
    config = seed_variant(extra=["username oper privilege 1 secret 0 operpw"])

    def ping(self, count):
        return self.env.lab.popen("in", ["ping", "-n", "-i", "0.01", "-c", str(count), "-W", "1",
                                         "172.22.1.1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def test_forwarding_latency_under_console_load(self):
        env = self.env
        idle = self.ping(200)
        idle_out, _ = idle.communicate(timeout=30)
        idle_rtts = _rtts(idle_out)
        self.assertGreater(len(idle_rtts), 190, idle_out[-500:])

        p = self.ping(800)
        results = {}

        def console_work():
            for i in range(3):
                results["regex%d" % i] = ssh(env, "fw", "127.0.0.1", CATASTROPHIC,
                                             user="oper", password="operpw", timeout=60)
            cmds = "".join("show clock\n" if i % 2 else "show version | include ^cbac\n"
                           for i in range(1000))
            argv = ["ssh", "-p", "2222"] + SSH_OPTS + [
                "-o", "NumberOfPasswordPrompts=1", "-o", "PreferredAuthentications=password",
                "admin@127.0.0.1"]
            results["batch"] = env.exec("fw", argv, env=_askpass(env.tmp, "cisco"), timeout=120,
                                        input=cmds)
        t = threading.Thread(target=console_work)
        t.start()
        t.join(180)
        out, _ = p.communicate(timeout=60)
        load_rtts = _rtts(out)

        for i in range(3):
            r = results["regex%d" % i]
            self.assertEqual((r.returncode, r.stdout), (0, ""), r.stderr)
        b = results["batch"]
        self.assertEqual(b.returncode, 0, b.stderr[-500:])
        self.assertEqual(b.stdout.count("cbac Software"), 500)
        self.assertEqual(b.stdout.count("3640-123#show clock"), 500)

        self.assertGreater(len(load_rtts), 780, out[-500:])       # nothing lost
        idle_avg = sum(idle_rtts) / len(idle_rtts)
        load_avg = sum(load_rtts) / len(load_rtts)
        msg = "idle avg %.2f p99 %.2f max %.2f ms; under console load avg %.2f p99 %.2f " \
            "max %.2f ms" % (idle_avg, p99(idle_rtts), max(idle_rtts), load_avg, p99(load_rtts),
                             max(load_rtts))
        print(msg)
        self.assertLess(load_avg, idle_avg + 5, msg)
        # the 99th percentile, not the maximum (see tests/test_lab_privsep.py)
        self.assertLess(p99(load_rtts), p99(idle_rtts) + 20, msg)
