"""The namespace lab (needs root and ip netns)."""

import os
import subprocess
import sys
import time

from twisted.trial import unittest

from cbac import lab as labmod
from cbac.lab import Lab, lab_fixture


def skip_unless_possible():
    reason = labmod.unavailable_reason()
    if reason is not None:
        raise unittest.SkipTest(reason)


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_port(lab, ns, host, port, timeout=5.0):
    """Wait until something listens on host:port in namespace ns."""
    script = (
        "import socket, sys\n"
        "s = socket.socket(); s.settimeout(0.2)\n"
        "sys.exit(s.connect_ex((%r, %d)))\n" % (host, port)
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.run(ns, [sys.executable, "-c", script]).returncode == 0:
            return True
        time.sleep(0.05)
    return False


class LifeCycleTests(unittest.TestCase):
    def setUp(self):
        skip_unless_possible()

    def test_up_down_leaves_nothing(self):
        lab = Lab(mode="cbac")
        self.addCleanup(lab.down)
        self.assertTrue(lab.fw_ns.startswith("cbac-fw-"))
        self.assertNotEqual(Lab().suffix, lab.suffix)
        lab.up()
        self.assertEqual(set(lab.exists()), {lab.in_ns, lab.fw_ns, lab.out_ns})
        links = lab.run("fw", ["ip", "-o", "link"]).stdout
        self.assertIn("inside", links)
        self.assertIn("outside", links)
        server = lab.popen("out", ["sleep", "60"])
        stray = subprocess.Popen(["ip", "netns", "exec", lab.in_ns, "sleep", "60"])
        self.addCleanup(stray.wait)
        lab.down()
        self.assertEqual(lab.exists(), [])
        self.assertFalse(namespaces() & {lab.in_ns, lab.fw_ns, lab.out_ns})
        self.assertIsNotNone(server.poll())
        self.assertIsNotNone(stray.wait(5))
        lab.down()  # idempotent

    def test_leftovers_of_same_suffix_removed(self):
        suffix = Lab().suffix
        subprocess.run(["ip", "netns", "add", "cbac-fw-" + suffix], check=True)
        lab = Lab(suffix)
        self.addCleanup(lab.down)
        lab.up()  # would fail on "File exists" without the clean-up
        self.assertEqual(len(lab.exists()), 3)

    def test_failed_up_cleans_up(self):
        lab = Lab(mode="cbac")
        self.addCleanup(lab.down)
        lab._nft = lambda ns, ruleset: (_ for _ in ()).throw(labmod.LabError("nft broken"))
        self.assertRaises(labmod.LabError, lab.up)
        self.assertEqual(lab.exists(), [])

    def test_bad_arguments(self):
        self.assertRaises(ValueError, Lab, mode="bridge")
        self.assertRaises(ValueError, Lab, suffix="a/b")
        self.assertRaises(ValueError, Lab, suffix="x" * 20)

    def test_command_line(self):
        suffix = Lab().suffix
        self.addCleanup(Lab(suffix).down)
        cmd = [sys.executable, "-m", "cbac.lab"]
        up = subprocess.run(cmd + ["up", "--suffix", suffix], capture_output=True, text=True, timeout=30)
        self.assertEqual(up.returncode, 0, up.stderr)
        self.assertIn("ip netns exec cbac-in-%s ping" % suffix, up.stdout)
        self.assertIn("ip netns exec cbac-fw-%s ssh -p 2222 admin@127.0.0.1" % suffix, up.stdout)
        listed = subprocess.run(cmd + ["list"], capture_output=True, text=True, timeout=30).stdout.split()
        self.assertIn(suffix, listed)
        down = subprocess.run(cmd + ["down", suffix], capture_output=True, text=True, timeout=30)
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertFalse(namespaces() & {"cbac-in-" + suffix, "cbac-fw-" + suffix, "cbac-out-" + suffix})


    def test_run_tears_down_on_signal(self):
        """``python -m cbac.lab run`` (here with a stand-in daemon) builds the
        lab, runs the daemon in the fw namespace, and on SIGTERM/Ctrl-C stops
        it and removes the lab."""
        suffix = Lab().suffix
        self.addCleanup(Lab(suffix).down)
        script = self.mktemp() + ".py"
        with open(script, "w") as f:
            f.write(
                "import sys\n"
                "from cbac import lab\n"
                "lab.Lab.cbac_argv = lambda self, c, e=(): self.argv('fw', ['sleep', '60'])\n"
                "sys.exit(lab.main(['run', '-c', %r, '--suffix', %r]))\n" % (__file__, suffix)
            )
        p = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        fw = "cbac-fw-" + suffix
        deadline = time.monotonic() + 10
        pids = ""
        while not pids and time.monotonic() < deadline:
            if fw in namespaces():
                pids = subprocess.run(["ip", "netns", "pids", fw], capture_output=True, text=True).stdout.strip()
                pids = " ".join(pid for pid in pids.split() if _cmdline(pid).startswith("sleep"))
            time.sleep(0.05)
        self.assertTrue(pids, "daemon never ran in %s" % fw)
        p.terminate()
        out, err = p.communicate(timeout=15)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("ip netns exec cbac-fw-%s ssh -p 2222 admin@127.0.0.1" % suffix, out)
        self.assertIn("lab %s removed" % suffix, err)
        self.assertFalse(namespaces() & {"cbac-in-" + suffix, fw, "cbac-out-" + suffix})
        for pid in pids.split():
            self.assertFalse(os.path.exists("/proc/%s" % pid) and labmod._alive(int(pid)))


class KernelModeTests(unittest.TestCase):
    """The kernel reference does what cbac is meant to do."""

    timeout = 40

    def setUp(self):
        self.lab = lab_fixture(self, mode="kernel")

    def test_ping_through(self):
        r = self.lab.run("in", ["ping", "-c", "1", "-W", "2", "172.22.1.1"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ttl=63", r.stdout)

    def test_curl_through_pat(self):
        docroot = self.mktemp()
        os.makedirs(docroot)
        with open(os.path.join(docroot, "hello.txt"), "w") as f:
            f.write("hello through the firewall\n")
        server = self.lab.popen(
            "out",
            [sys.executable, "-m", "http.server", "-b", "172.22.1.1", "-d", docroot, "8080"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.assertTrue(wait_port(self.lab, "out", "172.22.1.1", 8080))
        r = self.lab.run("in", ["curl", "-s", "-m", "5", "http://172.22.1.1:8080/hello.txt"])
        self.assertEqual(r.stdout, "hello through the firewall\n")
        server.terminate()
        log = server.communicate(timeout=5)[1]
        # the outside host saw the firewall's address, not 10.10.10.2 (PAT)
        self.assertIn('172.22.1.16 - - ', log)
        self.assertNotIn("10.10.10.2", log)

    def test_static_nat_and_no_way_in(self):
        server = (
            "import socket\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('10.10.10.25', 25)); s.listen(1)\n"
            "while True:\n"
            "    c, a = s.accept(); c.sendall(b'220 mail ESMTP ' + a[0].encode() + b'\\r\\n'); c.close()\n"
        )
        self.lab.popen("in", [sys.executable, "-c", server])
        self.assertTrue(wait_port(self.lab, "in", "10.10.10.25", 25))
        r = self.lab.run("out", ["curl", "-s", "-m", "5", "telnet://172.22.1.16:25"], input="")
        self.assertEqual(r.stdout.strip(), "220 mail ESMTP 172.22.1.1")
        # no translation, no way in: direct to the inside address is dropped
        r = self.lab.run("out", ["curl", "-s", "-m", "1", "telnet://10.10.10.2:22"], input="")
        self.assertEqual(r.returncode, 28, "expected a timeout (dropped), got exit %d" % r.returncode)

    def test_hostcheck_warns(self):
        r = self.lab.run("fw", [sys.executable, "-m", "cbac.dataplane.hostcheck", "inside", "outside"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("inside: kernel addresses 10.10.10.1/24", r.stdout)
        self.assertIn("outside: kernel addresses 172.22.1.16/24", r.stdout)
        self.assertIn("net.ipv4.ip_forward=1", r.stdout)
        self.assertIn("inside: no nftables netdev ingress drop chain", r.stdout)


class CbacModeTests(unittest.TestCase):
    """In cbac mode the fw namespace's kernel answers nothing."""

    timeout = 40

    def setUp(self):
        self.lab = lab_fixture(self, mode="cbac")

    def test_kernel_silent(self):
        # even with the ARP step skipped the kernel must not answer
        self.lab.run("out", ["ip", "neigh", "replace", "172.22.1.16", "lladdr", labmod.OUTSIDE_MAC, "dev", "eth0"],
                     check=True)
        r = self.lab.run("out", ["ping", "-c", "1", "-W", "1", "172.22.1.16"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("0 received", r.stdout)
        # no RST either: a connection attempt times out (28), is not refused (7)
        r = self.lab.run("out", ["curl", "-s", "-m", "1", "telnet://172.22.1.16:25"], input="")
        self.assertEqual(r.returncode, 28)
        # no ARP replies: the inside host cannot resolve its gateway
        r = self.lab.run("in", ["ping", "-c", "1", "-W", "1", "10.10.10.1"])
        self.assertNotEqual(r.returncode, 0)
        neigh = self.lab.run("in", ["ip", "neigh", "show", "10.10.10.1"]).stdout
        self.assertNotIn("lladdr", neigh)

    def test_ports_isolated_and_hostcheck_clean(self):
        addrs = self.lab.run("fw", ["ip", "-o", "addr", "show"]).stdout
        self.assertNotIn("inside", addrs)
        self.assertNotIn("outside", addrs)
        self.assertEqual(self.lab.run("fw", ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip(), "0")
        for ns in ("in", "fw", "out"):
            self.assertEqual(
                self.lab.run(ns, ["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"]).stdout.strip(), "1"
            )
        r = self.lab.run("fw", [sys.executable, "-m", "cbac.dataplane.hostcheck", "inside", "outside"])
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "inside, outside: no problems found"))
        gro = self.lab.run("fw", ["ethtool", "-k", "inside"]).stdout
        self.assertIn("generic-receive-offload: on", gro)

    def test_spawn_cbac_command(self):
        argv = self.lab.cbac_argv("etc/router.conf", ["--listen", "tcp:2222:interface=127.0.0.1"])
        self.assertEqual(argv[:4], ["ip", "netns", "exec", self.lab.fw_ns])
        self.assertEqual(argv[4], sys.executable)
        tail = argv[argv.index("-n"):]
        self.assertEqual(
            tail,
            ["-n", "--pidfile=", "cbac", "-c", os.path.abspath("etc/router.conf"),
             "--port", "Ethernet2/1=inside", "--port", "Ethernet2/0=outside",
             "--listen", "tcp:2222:interface=127.0.0.1"],
        )
        # the handle stops what it started, by pid
        proc = labmod.CbacProcess(self.lab.popen("fw", ["sleep", "60"]), ["sleep"])
        self.assertIsNone(proc.poll())
        self.assertNotEqual(proc.stop(timeout=5), None)
        self.assertIsNotNone(proc.poll())
