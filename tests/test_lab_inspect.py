"""Stateful inspection of TCP, UDP and ICMP with the seed configuration,
end to end in the namespace lab with real clients and servers.

Each test body lives in a mixin and runs twice: against the Linux kernel
as the router (``...KernelReference``: nftables does the same PAT, static
NAT and stateful filtering; it validates the test logic) and against cbac
(``...Cbac``: ``twistd cbac`` on etc/router.conf or a variant).  What only
cbac can show (IOS log lines, ``show`` output, aggressive mode) is asserted
in the cbac classes only.
"""

import hashlib
import os
import re
import subprocess
import time

from twisted.trial import unittest

from tests.labrun import LabCase, records, seed_variant, skip_reason, zbf_variant

BLOB = os.urandom(2 * 1024 * 1024)

UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
payload = sys.argv[3].encode()
for attempt in range(3):
    s.sendto(payload, (sys.argv[1], int(sys.argv[2])))
    try:
        data, peer = s.recvfrom(65535)
    except socket.timeout:
        continue
    sys.stdout.write("%s %s:%d" % (data.decode(), peer[0], peer[1]))
    sys.exit(0)
sys.exit(3)
"""

TCP_PROBE = r"""
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except socket.timeout:
    print("timeout"); sys.exit(0)
except ConnectionRefusedError:
    print("refused"); sys.exit(0)
except OSError as e:
    # EHOSTUNREACH/ENETUNREACH: an ICMP unreachable (administratively prohibited)
    print("unreachable" if e.errno in (113, 101) else "error %s" % e.errno); sys.exit(0)
try:
    data = s.recv(200)
except OSError:
    data = b""
print("connected " + data.decode("latin-1").strip())
"""


#: what a client sees of a port it may not reach: RST, ICMP unreachable, silence
CLOSED = ("refused", "unreachable", "timeout")


def sha(b):
    return hashlib.sha256(b).hexdigest()


class _LabBase(LabCase):
    def py(self, ns, code, *args, timeout=20):
        r = self.env.python(ns, code, *args, timeout=timeout)
        return r

    def probe(self, ns, host, port, wait=2.0):
        """connect() from ``ns``; "connected BANNER", "refused", "timeout"."""
        r = self.py(ns, TCP_PROBE, host, str(port), str(wait), timeout=wait + 10)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def curl(self, ns, url, *opts, timeout=30):
        r = self.env.exec(ns, ["curl", "-sS", "--max-time", str(timeout - 5)] + list(opts) + [url],
                          text=False, timeout=timeout)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + self.daemon_log()[-3000:])
        return r.stdout


# ---------------------------------------------------------------------------
# TCP / UDP / ICMP with the seed configuration


class InspectMixin(_LabBase):
    @classmethod
    def setUpLab(cls):
        env = cls.env
        cls.www = os.path.join(env.tmp, "www")
        os.makedirs(cls.www)
        with open(os.path.join(cls.www, "blob.bin"), "wb") as f:
            f.write(BLOB)
        cls.web = env.labserver("out", "web", "172.22.1.1", 8080, cls.www)
        cls.udp = env.labserver("out", "udpecho", "172.22.1.1", 5353)
        cls.mail = env.labserver("in", "rawsmtp", "10.10.10.25", 25)
        cls.l80 = env.labserver("in", "listen", "0.0.0.0", 80)
        cls.l23 = env.labserver("in", "listen", "0.0.0.0", 23)
        cls.l8080 = env.labserver("in", "listen", "0.0.0.0", 8080)

    def test_tcp_out_and_answer_through_pat(self):
        """An inside host fetches from an outside web server; the server
        sees the router's global address (PAT)."""
        got = self.curl("in", "http://172.22.1.1:8080/blob.bin")
        self.assertEqual(sha(got), sha(BLOB))
        reqs = records(self.web, "request")
        self.assertTrue(reqs)
        self.assertEqual(reqs[-1]["line"], "GET /blob.bin HTTP/1.1")
        self.assertTrue(reqs[-1]["peer"].startswith("172.22.1.16:"), reqs[-1])

    def test_udp_out_and_answer_through_pat(self):
        r = self.py("in", UDP_CLIENT, "172.22.1.1", "5353", "query-1")
        self.assertEqual(r.returncode, 0, "no UDP answer: %s %s" % (r.stderr, self.daemon_log()[-2000:]))
        self.assertEqual(r.stdout, "echo:query-1 172.22.1.1:5353")
        dgrams = [d for d in records(self.udp, "datagram") if d["data"] == "query-1"]
        self.assertTrue(dgrams)
        self.assertTrue(all(d["peer"].startswith("172.22.1.16:") for d in dgrams), dgrams)

    def test_icmp_echo_out_and_reply_through_pat(self):
        cap = self.env.capture("out", "eth0", "icmp")
        r = self.env.exec("in", ["ping", "-c", "3", "-i", "0.2", "-W", "2", "172.22.1.1"], timeout=20)
        lines = cap.stop()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.daemon_log()[-2000:])
        self.assertIn("3 received", r.stdout)
        requests = [line for line in lines if "ICMP echo request" in line]
        self.assertEqual(len(requests), 3, lines)
        for line in requests:
            self.assertIn("172.22.1.16 > 172.22.1.1", line)

    def test_traceroute_through_pat(self):
        """UDP and ICMP traceroute from the inside: the router is hop 1, the
        outside host hop 2 (its port-unreachable / echo reply comes back
        through PAT and the UDP/ICMP sessions)."""
        for extra in ([], ["-I"], ["-T", "-p", "81"]):
            r = self.env.exec("in", ["traceroute", "-n", "-q", "1", "-w", "2", "-m", "4"] + extra +
                              ["172.22.1.1"], timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            hops = [line.split()[1] for line in r.stdout.splitlines()[1:]]
            self.assertEqual(hops[:2], ["10.10.10.1", "172.22.1.1"], (extra, r.stdout))

    def test_unsolicited_inbound_dropped(self):
        """A SYN, a UDP datagram and an echo reply nobody asked for, sent
        from outside to the global address and to an inside address, never
        reach the inside; a SYN to the published mail server does."""
        cap = self.env.capture("in", "eth0", "ip and src host 172.22.1.3")
        senders = []
        for dst in ("172.22.1.16", "10.10.10.2", "10.10.10.25"):
            for mode in (["-S", "-p", "8080"], ["-2", "-p", "5353"], ["-1", "-C", "0"]):
                senders.append(self.env.lab.popen(
                    "out", ["timeout", "10", "hping3", "-q", "-c", "2", "-i", "u20000",
                            "-a", "172.22.1.3", "-s", "7777", "-k"] + mode + [dst],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in senders:
            self.assertIn(p.wait(15), (0, 1))
        # control: the published service does get through (the capture works)
        self.env.exec("out", ["timeout", "10", "hping3", "-q", "-c", "1", "-S", "-p", "25",
                              "-a", "172.22.1.3", "-s", "7788", "-k", "172.22.1.16"], timeout=15)
        lines = cap.stop()
        control = [line for line in lines if "172.22.1.3.7788 > 10.10.10.25.25" in line]
        others = [line for line in lines if line not in control]
        self.assertEqual(len([line for line in control if "Flags [S]" in line]), 1, lines)
        self.assertEqual(others, [])
        self.assertEqual(records(self.l8080, "accept"), [])

    def test_mail_published_other_ports_closed(self):
        self.assertTrue(self.probe("out", "172.22.1.16", 25).startswith("connected 220 "))
        for port in (80, 23):
            self.assertIn(self.probe("out", "172.22.1.16", port), CLOSED)
        # the inside address itself is not reachable from outside either
        self.assertIn(self.probe("out", "10.10.10.25", 25), CLOSED)
        self.assertIn(self.probe("out", "10.10.10.25", 80), CLOSED)
        self.assertEqual(records(self.l80, "accept"), [])
        self.assertEqual(records(self.l23, "accept"), [])


class InspectKernelReference(InspectMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"


class InspectCbac(InspectMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"

    def test_show_access_lists_counts_matches(self):
        self.assertTrue(self.probe("out", "172.22.1.16", 25).startswith("connected 220"))
        r = self.env.console("show access-lists")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Extended IP access list 101", r.stdout)
        m = re.search(r"permit tcp any host 172\.22\.1\.16 eq smtp \((\d+) match(es)?\)", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertGreaterEqual(int(m.group(1)), 1)

    def test_show_ip_nat_translations(self):
        self.curl("in", "http://172.22.1.1:8080/blob.bin")
        r = self.env.console("show ip nat translations")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Inside global", r.stdout)
        self.assertRegex(r.stdout, r"tcp 172\.22\.1\.16:25\s+10\.10\.10\.25:25")
        self.assertRegex(r.stdout, r"172\.22\.1\.16:\d+\s+10\.10\.10\.2:\d+\s+172\.22\.1\.1:8080")

    def acl_in_drops(self):
        """The ``acl-in`` drop counter of the outside interface (``show
        interfaces``): packets refused by its inbound access list."""
        r = self.env.console("show interfaces Ethernet2/0")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"\n\s+acl-in\s+(\d+)\n", r.stdout + "\n")
        return int(m.group(1)) if m else 0

    def test_unsolicited_inbound_counted_by_acl(self):
        """The implicit deny of ACL 101 is what drops unsolicited inbound
        traffic: a SYN from outside to a listening inside host never
        arrives, the outside interface's ACL drop counter goes up by one,
        and ``show ip inspect sessions`` has no session for it.  (With
        ``ip access-group 101 in`` removed the SYN arrives, the counter
        stays: this test fails.)"""
        before = self.acl_in_drops()
        cap = self.env.capture("in", "eth0", "ip and src host 172.22.1.4")
        self.env.exec("out", ["timeout", "10", "hping3", "-q", "-c", "1", "-S", "-p", "8080",
                              "-s", "7790", "-k", "-a", "172.22.1.4", "10.10.10.2"], timeout=15)
        # control: the capture works (a SYN to the published mail server arrives)
        self.env.exec("out", ["timeout", "10", "hping3", "-q", "-c", "1", "-S", "-p", "25",
                              "-s", "7791", "-k", "-a", "172.22.1.4", "172.22.1.16"], timeout=15)
        lines = cap.stop()
        self.assertEqual([line for line in lines if ".7791 > " not in line], [], lines)
        self.assertEqual(len([line for line in lines
                              if ".7791 > 10.10.10.25.25" in line and "Flags [S]" in line]), 1, lines)
        self.assertEqual([a for a in records(self.l8080, "accept")
                          if a.get("peer", "").startswith("172.22.1.4:")], [])
        self.assertEqual(self.acl_in_drops() - before, 1)
        r = self.env.console("show ip inspect sessions")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("172.22.1.4:7790", r.stdout)


class InspectZbf(InspectMixin, unittest.TestCase):
    """The same tests with the seed rewritten as a zone-based policy
    firewall (etc/router-zbf.conf): zones LAN and WAN, LAN->WAN inspect,
    WAN->LAN only SMTP to the published mail server."""

    skip = skip_reason()
    mode = "cbac"
    config = zbf_variant()

    def test_mail_published_other_ports_closed(self):
        """As classic, except one IOS difference: ZBF classifies after
        outside-to-inside NAT, so its ACL names the server's inside-local
        address, and a packet routed straight to that address (not through
        the static translation) is in the same class: SMTP to 10.10.10.25
        is inspected and allowed.  (The classic seed filters on the global
        address before NAT; docs/configuration.md says how to get that
        with ZBF: an input ACL on the outside interface.)"""
        self.assertTrue(self.probe("out", "172.22.1.16", 25).startswith("connected 220 "))
        for port in (80, 23):
            self.assertIn(self.probe("out", "172.22.1.16", port), CLOSED)
        self.assertTrue(self.probe("out", "10.10.10.25", 25).startswith("connected 220 "))
        self.assertIn(self.probe("out", "10.10.10.25", 80), CLOSED)
        self.assertIn(self.probe("out", "10.10.10.2", 23), CLOSED)
        self.assertEqual(records(self.l80, "accept"), [])
        self.assertEqual(records(self.l23, "accept"), [])

    def test_show_policy_map_zone_pair_sessions(self):
        r = self.py("in", UDP_CLIENT, "172.22.1.1", "5353", "zbf-show")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.env.console("show policy-map type inspect zone-pair sessions")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(" Zone-pair: LAN-WAN", r.stdout)
        self.assertIn("    Class-map: LAN-WAN (match-any)\n      Match: protocol ftp", r.stdout)
        self.assertRegex(r.stdout, r"         Session [0-9A-F]+ \(10\.10\.10\.2:\d+\)=>"
                                   r"\(172\.22\.1\.1:5353\) udp SIS_OPEN")
        r = self.env.console("show zone security")
        self.assertIn("zone LAN\n  Description: inside (Ethernet2/1)\n  Member Interfaces:\n"
                      "    Ethernet2/1", r.stdout)

    def test_unsolicited_inbound_logged_by_class_default(self):
        """WAN-LAN's class-default is ``drop log``: IOS's ZBF drop message."""
        self.env.exec("out", ["timeout", "10", "hping3", "-q", "-c", "1", "-S", "-p", "80",
                              "-a", "172.22.1.5", "-s", "7799", "-k", "172.22.1.16"], timeout=15)
        # port 80 of the global address is the router's own (self zone, open);
        # the inside address is routed to the LAN zone: class-default drop log
        self.env.exec("out", ["timeout", "10", "hping3", "-q", "-c", "1", "-S", "-p", "80",
                              "-a", "172.22.1.5", "-s", "7798", "-k", "10.10.10.25"], timeout=15)
        log = self.wait_log("%FW-6-DROP_PKT")
        self.assertIn("%FW-6-DROP_PKT: Dropping tcp session 172.22.1.5:7798 10.10.10.25:80 on "
                      "zone-pair WAN-LAN class class-default due to  DROP action found in "
                      "policy-map with ip ident", log)
        self.assertEqual(records(self.l80, "accept"), [])


# ---------------------------------------------------------------------------
# SYN flood, aggressive mode, per-host limits

THRESHOLDS = [
    "ip inspect max-incomplete high 50",
    "ip inspect max-incomplete low 30",
    "ip inspect one-minute high 100",
    "ip inspect one-minute low 80",
]
FLOOD_CONFIG = seed_variant(THRESHOLDS + ["ip inspect tcp max-incomplete host 20 block-time 0"])
BLOCK_CONFIG = seed_variant(THRESHOLDS + ["ip inspect tcp max-incomplete host 20 block-time 1"])

FLOOD_BLOB = os.urandom(4 * 1024 * 1024)


def syn_flood(env, count=150):
    """``count`` SYNs from random sources to the published mail server,
    about 2 ms apart (bounded by ``timeout``)."""
    return env.exec("out", ["timeout", "-s", "INT", "15", "hping3", "-q", "-S", "-p", "25", "-c", str(count),
                            "-i", "u2000", "--rand-source", "172.22.1.16"], timeout=25)


def syn_recv(env):
    r = env.exec("in", ["ss", "-Htn", "state", "syn-recv", "( sport = :25 )"], timeout=10)
    return len([line for line in r.stdout.splitlines() if line.strip()])


class FloodMixin(_LabBase):
    @classmethod
    def setUpLab(cls):
        env = cls.env
        www = os.path.join(env.tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "blob.bin"), "wb") as f:
            f.write(FLOOD_BLOB)
        cls.web = env.labserver("out", "web", "172.22.1.1", 8080, www)
        cls.mail = env.labserver("in", "listen", "10.10.10.25", 25)

    def flood_during_transfer(self):
        out = os.path.join(self.env.tmp, "flood-transfer.bin")
        curl = self.env.lab.popen("in", ["curl", "-sS", "--max-time", "40", "--limit-rate", "2M", "-o", out,
                                         "http://172.22.1.1:8080/blob.bin"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        r = syn_flood(self.env)
        self.assertIn(r.returncode, (0, 1, 124, 130), r.stderr)
        half = syn_recv(self.env)
        try:
            _, err = curl.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            curl.kill()
            self.fail("the transfer did not finish")
        self.assertEqual(curl.returncode, 0, err)
        with open(out, "rb") as f:
            self.assertEqual(sha(f.read()), sha(FLOOD_BLOB))
        return half

    def test_established_transfer_survives_syn_flood(self):
        self.flood_during_transfer()


class FloodKernelReference(FloodMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"

    def test_flood_leaves_half_open_sessions_without_cbac(self):
        """Without cbac the mail server keeps the flood's half-open
        connections (so the cbac test below, which expects them cut back,
        can fail)."""
        syn_flood(self.env)
        self.assertGreater(syn_recv(self.env), 25)


class FloodCbac(FloodMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"
    config = FLOOD_CONFIG

    def test_flood_triggers_aggressive_mode_and_cuts_half_open(self):
        half = self.flood_during_transfer()
        log = self.wait_log("%FW-4-ALERT_ON")
        self.assertRegex(log, r"%FW-4-ALERT_ON: getting aggressive, count \(\d+/50\) current 1-min rate: \d+")
        self.assertRegex(log, r"%FW-4-HOST_TCP_ALERT_ON: Max tcp half-open connections \(20\) exceeded for host")
        # half-open sessions cut back: the server holds at most the per-host limit
        self.assertLessEqual(half, 21, "server holds %d half-open connections" % half)
        self.assertLessEqual(syn_recv(self.env), 21)
        # block-time 0: the host is not blocked, the mail server answers
        self.assertTrue(self.probe("out", "172.22.1.16", 25, wait=3).startswith("connected"))


#: The thresholds of FLOOD_CONFIG in ZBF's global parameter-map.
ZBF_FLOOD_CONFIG = zbf_variant([
    "parameter-map type inspect global",
    " max-incomplete high 50",
    " max-incomplete low 30",
    " one-minute high 100",
    " one-minute low 80",
    " tcp max-incomplete host 20 block-time 0",
])


class FloodZbf(FloodCbac):
    """The SYN flood against the ZBF seed with the thresholds in
    ``parameter-map type inspect global``: the same alerts and cut-back."""

    config = ZBF_FLOOD_CONFIG


class HostBlockCbac(_LabBase, unittest.TestCase):
    """``max-incomplete host 20 block-time 1``: a SYN flood through the real
    daemon blocks the attacked host (``%FW-2-BLOCK_HOST``, aggressive mode
    on) and a connection to it is refused.  The minute's wait, the unblock
    and the calming down are tested on the clock (tests.test_thresholds:
    UNBLOCK_HOST, ALERT_OFF; tests.test_zbf_engine.HostBlockTimeTests), not
    by waiting a real minute here."""

    skip = skip_reason()
    mode = "cbac"
    config = BLOCK_CONFIG
    timeout = 60
    # SYNs (half-open sessions) and connect probes of a few packets only:
    # the fast path offloads none of it, so with CBAC_OFFLOAD=0 the same
    # packets take the same path
    offload_off_pass = False

    @classmethod
    def setUpLab(cls):
        cls.mail = cls.env.labserver("in", "listen", "10.10.10.25", 25)

    def test_block(self):
        accepted_before = len(records(self.mail, "accept"))
        syn_flood(self.env)
        log = self.wait_log("%FW-2-BLOCK_HOST")
        self.assertRegex(log, r"%FW-2-BLOCK_HOST: Blocking new TCP connections to host \S+ for 1 minute")
        self.assertIn("%FW-4-ALERT_ON", log)
        self.assertIn(self.probe("out", "172.22.1.16", 25, wait=2), CLOSED)
        self.assertEqual(len(records(self.mail, "accept")), accepted_before)


class HostBlockZbf(HostBlockCbac):
    """``block-time 1`` from ZBF's global parameter-map blocks the host."""

    config = zbf_variant([
        "parameter-map type inspect global",
        " max-incomplete high 50",
        " max-incomplete low 30",
        " one-minute high 100",
        " one-minute low 80",
        " tcp max-incomplete host 20 block-time 1",
    ])
