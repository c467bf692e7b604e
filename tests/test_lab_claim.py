"""cbac takes ports the operator did not prepare (issue 13, "The ports
belong to cbac"), in the namespace lab's bare mode: the firewall's ports
carry the kernel addresses 10.10.10.1/24 and 172.22.1.16/24 (the same as
cbac's), IPv6 is on, there is no nftables table and an extra static route
goes through the outside port.  PAT out works with no RST from the
kernel; after cbac stops, and after a crash and a restart, the ports are
as they were."""

import json
import os
import signal

from twisted.trial import unittest

from tests.labrun import RunningLab, seed_variant, skip_reason, wait_for

PORTS = ("inside", "outside")


def prepare(lab):
    lab.exec("fw", ["ip", "route", "add", "198.51.100.0/24", "via", "172.22.1.1", "dev", "outside"],
             check=True)


def snapshot(lab):
    state = {}
    for dev in PORTS:
        info = json.loads(lab.exec("fw", ["ip", "-j", "addr", "show", "dev", dev]).stdout)[0]
        addrs = sorted("%s %s/%s" % (a["family"], a["local"], a["prefixlen"]) for a in info["addr_info"])
        routes = sorted(lab.exec("fw", ["ip", "-4", "route", "show", "dev", dev]).stdout.splitlines())
        v6 = lab.exec("fw", ["cat", "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % dev]).stdout.strip()
        offl = sorted(line for line in lab.exec("fw", ["ethtool", "-k", dev]).stdout.splitlines()
                      if line.split(":")[0] in ("generic-receive-offload", "tcp-segmentation-offload",
                                                "generic-segmentation-offload"))
        # the kernel fast path's tc program (a crash leaves it attached)
        tc = lab.exec("fw", ["tc", "filter", "show", "dev", dev, "ingress"]).stdout.strip()
        state[dev] = {"addrs": addrs, "routes": routes, "disable_ipv6": v6, "offloads": offl,
                      "up": "UP" in info["flags"], "tc-ingress": tc}
    state["nft"] = lab.exec("fw", ["nft", "list", "tables"]).stdout.split("\n")
    return state


class ClaimLabTests(unittest.TestCase):
    skip = skip_reason()
    timeout = 180

    def setUp(self):
        self.originals = {}

        def remember(lab):
            prepare(lab)
            self.originals.update(snapshot(lab))
        self.env = RunningLab.start(config_text=seed_variant(), mode="bare", prepare=remember)
        self.addCleanup(self.env.stop)
        self.www = os.path.join(self.env.tmp, "www")
        os.makedirs(self.www)
        self.blob = os.urandom(2 * 1024 * 1024)
        with open(os.path.join(self.www, "blob.bin"), "wb") as f:
            f.write(self.blob)
        self.env.labserver("out", "web", "172.22.1.1", 8080, self.www)

    def assertClaimed(self):
        now = snapshot(self.env.lab)
        for dev in PORTS:
            self.assertEqual(now[dev]["addrs"], [], now)
            self.assertEqual(now[dev]["disable_ipv6"], "1")
            self.assertIn("generic-receive-offload: on", now[dev]["offloads"])
        self.assertIn("table netdev cbac_ports", now["nft"])
        table = self.env.exec("fw", ["nft", "list", "table", "netdev", "cbac_ports"]).stdout
        for dev in PORTS:
            self.assertRegex(table, r'hook ingress device "%s" priority -500; policy drop;' % dev)

    def assertRestored(self):
        now = snapshot(self.env.lab)
        for dev in PORTS:
            # the IPv6 link-local address comes back when IPv6 is on again
            ok = wait_for(lambda: snapshot(self.env.lab)[dev]["addrs"] == self.originals[dev]["addrs"], 5)
            self.assertTrue(ok, (snapshot(self.env.lab)[dev], self.originals[dev]))
        now = snapshot(self.env.lab)
        self.assertEqual(now, self.originals)
        self.assertIn("198.51.100.0/24 via 172.22.1.1 ", "\n".join(now["outside"]["routes"]))

    def transfer(self):
        cap = self.env.capture("out", "eth0", "tcp[tcpflags] & tcp-rst != 0")
        r = self.env.exec("in", ["curl", "-sS", "--max-time", "20", "http://172.22.1.1:8080/blob.bin"],
                          text=False)
        self.assertEqual(r.returncode, 0, r.stderr + self.env.log().encode())
        self.assertEqual(r.stdout, self.blob)
        resets = cap.stop()
        self.assertEqual(resets, [], "the kernel reset connections through PAT")

    def test_unprepared_ports_claimed_and_given_back(self):
        self.assertIn("inet 172.22.1.16/24", self.originals["outside"]["addrs"])
        self.assertEqual(self.originals["outside"]["disable_ipv6"], "0")
        self.assertClaimed()
        self.transfer()
        log = self.env.log()
        self.assertIn("outside: claimed for cbac", log)
        self.assertNotIn("on a data port", log)      # hostcheck after the claim: clean
        self.assertIn(self.env.proc.stop(), (0, -signal.SIGTERM))  # twistd re-raises SIGTERM at exit
        self.assertIn("ports given back to the kernel: inside, outside", self.env.log())
        self.assertRestored()

    def test_crash_and_restart_restore_the_original_state(self):
        state_file = os.path.join(self.env.tmp, "state", "ports-claimed.json")
        self.assertTrue(os.path.exists(state_file))
        self.env.proc.popen.send_signal(signal.SIGKILL)
        self.env.proc.wait(10)
        self.assertClaimed()                     # nobody gave them back
        self.env.spawn()
        self.assertTrue(wait_for(lambda: self.env.started(2), 20), self.env.log())
        self.assertTrue(wait_for(lambda: self.env.exec("in", ["ping", "-c", "1", "-W", "1", "10.10.10.1"])
                                 .returncode == 0, 20), self.env.log())
        self.assertIn("did not stop cleanly", self.env.log())
        self.assertClaimed()
        self.transfer()
        self.assertIn(self.env.proc.stop(), (0, -signal.SIGTERM))  # twistd re-raises SIGTERM at exit
        self.assertFalse(os.path.exists(state_file))
        self.assertRestored()

    def test_no_claim_ports_leaves_them_alone(self):
        self.env.proc.stop()
        self.assertRestored()
        self.env.extra_args.append("--no-claim-ports")
        self.env.spawn()
        # the second start (it takes seconds on a loaded machine)
        wait_for(lambda: self.env.started(2) or self.env.proc.poll() is not None,
                 timeout=30)
        self.assertIsNone(self.env.proc.poll(), self.env.log())
        now = snapshot(self.env.lab)
        # the port settings are untouched (the fast path's tc program is
        # attached while cbac runs, claim or not; gone again at stop, below)
        for dev in PORTS:
            now[dev].pop("tc-ingress")
        self.assertEqual(now, {k: ({x: y for x, y in v.items() if x != "tc-ingress"}
                                   if k in PORTS else v) for k, v in self.originals.items()})
        self.assertIn("kernel addresses 172.22.1.16/24", self.env.log())
        # what claiming prevents: the kernel, owning 172.22.1.16 too, resets
        # the server's answers to the PAT ports it knows nothing of
        cap = self.env.capture("out", "eth0", "tcp[tcpflags] & tcp-rst != 0 and src host 172.22.1.16")
        self.env.exec("in", ["curl", "-sS", "--max-time", "5", "-o", "/dev/null",
                             "http://172.22.1.1:8080/blob.bin"])
        self.assertNotEqual(cap.stop(), [])
        self.env.proc.stop()
        self.assertEqual(snapshot(self.env.lab), self.originals)

    def test_release_command_after_a_crash(self):
        """What the systemd unit's ExecStopPost runs."""
        import sys
        self.env.proc.popen.send_signal(signal.SIGKILL)
        self.env.proc.wait(10)
        self.assertClaimed()
        if "kernel offload unavailable" not in self.env.log():
            # the kernel fast path was on: its program outlives the process
            for dev in PORTS:
                tc = self.env.exec("fw", ["tc", "filter", "show", "dev", dev, "ingress"]).stdout
                self.assertIn("bpf", tc, dev)
        r = self.env.exec("fw", [sys.executable, "-m", "cbac.dataplane.claim", "release",
                                 os.path.join(self.env.tmp, "state")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRestored()


class ClaimFailsClosedLabTests(unittest.TestCase):
    skip = skip_reason()
    timeout = 60

    def test_no_nftables_no_start_ports_untouched(self):
        """Without nft the kernel cannot be kept off the ports: cbac refuses
        to start and changes nothing."""
        import shutil
        import subprocess
        import tempfile

        from cbac.lab import lab_fixture
        lab = lab_fixture(self, mode="bare")
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        bindir = os.path.join(tmp, "bin")
        os.makedirs(bindir)
        os.symlink(shutil.which("ip"), os.path.join(bindir, "ip"))
        before = snapshot(lab)
        env = dict(os.environ, PATH=bindir + ":/bin")
        p = lab.spawn_cbac(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                        "etc", "router.conf"),
                           ["--state-dir", os.path.join(tmp, "state")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = p.popen.communicate(timeout=30)
        self.assertNotEqual(p.popen.returncode, 0, out)
        self.assertIn("cannot take the data ports from the kernel", out)
        self.assertNotIn("%FW-6-INIT", out)
        self.assertEqual(snapshot(lab), before)
