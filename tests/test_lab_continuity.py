"""Stateful restart in the namespace lab (issue 18, part 1).

An iperf3 transfer and an SMTP conversation, both from the inside host
through PAT (``ip inspect name IN-OUT smtp`` added to the seed so the SMTP
session is inspected), survive ``kill -9`` of cbac and a new start from
the same ``--state-dir``: a pause, no reset.  The port claim is restored
by the new start (cbac/dataplane/claim.py).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from twisted.trial import unittest

from tests.labrun import LabCase, records, seed_variant, skip_reason, wait_for
from tests.test_offload import offload_skip_reason

OFFLOAD = os.environ.get("CBAC_OFFLOAD", "1") != "0"

SMTP_SERVER = "172.22.1.2"
IPERF_SERVER = "172.22.1.1"

#: an SMTP client that stops between two commands until a file appears
SMTP_PAUSED = r"""
import json, os, smtplib, sys, time
go = sys.argv[1]
out = {}
try:
    s = smtplib.SMTP("%s", 25, timeout=30)
    out["port"] = s.sock.getsockname()[1]
    out["helo"] = s.helo()[0]
    print("PAUSED", flush=True)
    while not os.path.exists(go):
        time.sleep(0.05)
    t0 = time.monotonic()
    out["mail"] = s.docmd("MAIL FROM:<a@lab.test>")[0]
    out["mail_s"] = round(time.monotonic() - t0, 3)
    out["rcpt"] = s.docmd("RCPT TO:<b@out.test>")[0]
    out["data"] = s.data(b"Subject: restart\r\n\r\nsurvived\r\n")[0]
    out["quit"] = s.quit()[0]
    out["ok"] = True
except Exception as e:
    out["ok"] = False
    out["error"] = "%%s: %%s" %% (type(e).__name__, e)
print(json.dumps(out), flush=True)
""" % SMTP_SERVER


class RestartLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()
    timeout = 120
    config = seed_variant(extra=["ip inspect name IN-OUT smtp"])

    @classmethod
    def setUpLab(cls):
        cls.smtp_record = cls.env.labserver("out", "smtp", SMTP_SERVER, 25)

    def test_kill_9_restart_keeps_transfer_and_smtp(self):
        env = self.env
        # before the kill: builds the eBPF object if it is missing, so the
        # restarted cbac can load it
        fp_reason = offload_skip_reason() if OFFLOAD else "CBAC_OFFLOAD=0"
        go = os.path.join(env.tmp, "smtp-go")
        smtp = env.lab.popen("in", [sys.executable, "-u", "-c", SMTP_PAUSED, go],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: smtp.poll() is None and smtp.kill())
        line = smtp.stdout.readline()
        self.assertEqual(line.strip(), b"PAUSED", line + smtp.stdout.read(2000)
                         if smtp.poll() is not None else line)
        srv = env.server("out", ["iperf3", "-s", "-1", "-B", IPERF_SERVER, "-p", "5201"])
        self.addCleanup(lambda: srv.poll() is None and srv.kill())
        time.sleep(0.5)
        cli = env.lab.popen("in", ["iperf3", "-c", IPERF_SERVER, "-p", "5201", "-t", "20",
                                   "-i", "0.5", "-b", "200M", "-J"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: cli.poll() is None and cli.kill())
        time.sleep(3.0)                      # the journal has both sessions
        t_kill = time.monotonic()
        env.proc.popen.send_signal(signal.SIGKILL)
        env.proc.wait(10)
        env.spawn()
        self.assertTrue(wait_for(lambda: env.started(2), 30), env.log())
        t_up = time.monotonic() - t_kill
        with open(go, "w"):
            pass
        # the restarted box loads the kernel fast path as a plain start
        # does, and offloads the iperf3 transfer once it is re-learned
        fp = ""
        if fp_reason is None:
            def installed():
                nonlocal fp
                fp = env.console("show cbac fastpath").stdout
                m = re.search(r"Installed (\d+)", fp)
                return m is not None and int(m.group(1)) >= 1
            self.assertTrue(wait_for(installed, 10, 0.5),
                            "no session offloaded after the restart:\n" + fp + "\n" +
                            "\n".join(l for l in env.log().splitlines() if "fast path" in l))
        out, _ = cli.communicate(timeout=60)
        result = json.loads(out.decode())
        self.assertNotIn("error", result, result.get("error"))
        ivals = [i["sum"] for i in result["intervals"]]
        # the pause: consecutive intervals that moved (almost) nothing
        gap = longest = 0.0
        for i in ivals:
            if i["bytes"] < 10000:
                gap += i["seconds"]
                longest = max(longest, gap)
            else:
                gap = 0.0
        moved_after = sum(i["bytes"] for i in ivals[-4:])
        self.assertGreater(moved_after, 1_000_000, "cbac up %.1f s after the kill; log:\n%s"
                           % (t_up, env.log()[-6000:]))
        sent = result["end"]["sum_sent"]["bytes"]
        got = result["end"]["sum_received"]["bytes"]
        smtp_out, _ = smtp.communicate(timeout=60)
        sres = json.loads(smtp_out.decode().strip().splitlines()[-1])
        self.assertTrue(sres["ok"], sres)
        self.assertEqual((sres["mail"], sres["rcpt"], sres["data"]), (250, 250, 250), sres)
        self.assertTrue(wait_for(lambda: records(self.smtp_record, "msg"), 5))
        msg = records(self.smtp_record, "msg")[-1]
        self.assertIn("survived", msg["data"])
        log = env.log()
        self.assertIn("%FW-6-STATE_RESTORE", log)
        self.assertIn("inspectors resumed", log)
        self.assertNotIn("RESTORE_RESET", log)
        # the measurements of the report
        print("\nrestart: cbac up again %.2f s after kill -9; iperf3 longest stall %.1f s; "
              "sent %d received %d bytes; SMTP MAIL answered %.2f s after resuming"
              % (t_up, longest, sent, got, sres["mail_s"]))
        for l in log.splitlines():
            if "STATE_RESTORE" in l:
                print(l)
        print("fast path after the restart: " + (
            fp.splitlines()[1].strip() + "; " + fp.splitlines()[2].strip()
            if fp_reason is None else "not checked (%s)" % fp_reason))
