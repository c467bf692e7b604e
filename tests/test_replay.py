"""cbac-replay: pcap in, pcap out, through the whole engine, deterministic."""

import os
import subprocess
import sys

from scapy.all import ARP, ICMP, IP, TCP, Ether, rdpcap, wrpcap
from twisted.trial import unittest

from tests.labrun import SEED_CONFIG

R_IN, R_OUT = "02:00:0a:0a:0a:01", "02:00:ac:16:01:10"
H_IN, H_OUT = "02:00:0a:0a:0a:02", "02:00:ac:16:01:01"


def inside_capture(path):
    pkts = [
        Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.1"),
        Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="10.10.10.1") / ICMP(id=9, seq=1),
        Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") / TCP(sport=40000, dport=80, flags="S"),
    ]
    for i, p in enumerate(pkts):
        p.time = 1700000000.0 + i * 0.01
    wrpcap(path, pkts)


def outside_capture(path):
    p = Ether(src=H_OUT, dst=R_OUT) / ARP(op=2, hwsrc=H_OUT, psrc="172.22.1.1", hwdst=R_OUT, pdst="172.22.1.16")
    p.time = 1700000000.5
    q = Ether(src=H_OUT, dst=R_OUT) / IP(src="172.22.1.3", dst="172.22.1.16") / TCP(sport=5, dport=23, flags="S")
    q.time = 1700000000.6
    wrpcap(path, [p, q])


class ReplayTests(unittest.TestCase):
    def replay(self, outdir):
        os.makedirs(outdir)
        argv = [sys.executable, "-m", "cbac.replay", "-c", SEED_CONFIG,
                "--in", "Ethernet2/1=" + self.inpcap, "--in", "Ethernet2/0=" + self.outpcap,
                "--out", "Ethernet2/1=" + os.path.join(outdir, "in.pcap"),
                "--out", "Ethernet2/0=" + os.path.join(outdir, "out.pcap"),
                "--mac", "Ethernet2/1=" + R_IN, "--mac", "Ethernet2/0=" + R_OUT,
                "--show", "ip nat translations", "--show", "access-lists"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout, os.path.join(outdir, "in.pcap"), os.path.join(outdir, "out.pcap")

    def setUp(self):
        self.tmp = self.mktemp()
        os.makedirs(self.tmp)
        self.inpcap = os.path.join(self.tmp, "inside.pcap")
        self.outpcap = os.path.join(self.tmp, "outside.pcap")
        inside_capture(self.inpcap)
        outside_capture(self.outpcap)

    def test_expected_output_pcaps(self):
        text, inp, outp = self.replay(os.path.join(self.tmp, "a"))
        inside = rdpcap(inp)
        outside = rdpcap(outp)
        # inside: gratuitous ARP, ARP reply, echo reply
        arp_reply = [p for p in inside if ARP in p and p[ARP].op == 2]
        self.assertEqual(arp_reply[0][ARP].psrc, "10.10.10.1")
        [echo] = [p for p in inside if ICMP in p]
        self.assertEqual((echo[IP].src, echo[IP].dst, echo[ICMP].type, echo[ICMP].id),
                         ("10.10.10.1", "10.10.10.2", 0, 9))
        # outside: ARP request for the next hop, then the SYN through PAT
        [syn] = [p for p in outside if TCP in p and p[TCP].flags == "S"]
        self.assertEqual((syn[IP].src, syn[TCP].sport, syn.dst), ("172.22.1.16", 40000, H_OUT))
        # the unsolicited telnet SYN from outside is denied by ACL 101
        self.assertNotIn("172.22.1.3", repr([p.summary() for p in inside]))
        self.assertIn("drops: acl-in 1", text)
        self.assertIn("tcp 172.22.1.16:40000  10.10.10.2:40000   172.22.1.1:80      172.22.1.1:80", text)
        self.assertIn("Extended IP access list 101", text)

    def test_replay_is_deterministic(self):
        _, a_in, a_out = self.replay(os.path.join(self.tmp, "a"))
        _, b_in, b_out = self.replay(os.path.join(self.tmp, "b"))
        for x, y in ((a_in, b_in), (a_out, b_out)):
            with open(x, "rb") as f, open(y, "rb") as g:
                self.assertEqual(f.read(), g.read())


class ReplayTraceTests(unittest.TestCase):
    def test_trace_every_frame(self):
        """``--trace``: packet-tracer's view of each input frame, before it
        is fed: the PAT SYN is allowed with its translation, the SYN to the
        router's closed telnet port from outside is refused by ACL 101."""
        from io import StringIO
        from cbac import replay
        tmp = self.mktemp()
        os.makedirs(tmp)
        inpcap, outpcap = os.path.join(tmp, "in.pcap"), os.path.join(tmp, "out.pcap")
        inside_capture(inpcap)
        outside_capture(outpcap)
        out = StringIO()
        replay.run(["-c", SEED_CONFIG, "--in", "Ethernet2/1=" + inpcap, "--in", "Ethernet2/0=" + outpcap,
                    "--mac", "Ethernet2/1=" + R_IN, "--mac", "Ethernet2/0=" + R_OUT, "--trace"], stdout=out)
        text = out.getvalue()
        frames = text.split("Frame ")[1:]
        self.assertEqual(len(frames), 5, text)
        self.assertTrue(frames[0].startswith("1 (Ethernet2/1, 1700000000.000000, 42 bytes)"), frames[0])
        self.assertIn("not an IPv4 frame (ethertype 0x0806): handled by ARP", frames[0])
        self.assertIn("echo request to 10.10.10.1: answered by the router", frames[1])
        self.assertIn("translate tcp 10.10.10.2/40000 -> 172.22.1.1/80 to tcp 172.22.1.16/40000 -> "
                      "172.22.1.1/80", frames[2])
        self.assertIn("Action: allow", frames[2])
        self.assertIn("Drop-reason: (acl-in) Flow is denied by the input access list", frames[4])
        # and the frames were fed: the summary follows
        self.assertIn("drops: acl-in 1", text)


def offloaded_capture(path):
    """What tcpdump shows on a host with checksum offload: the SYN and a
    data segment leave with TCP checksum 0, the ping with an IP header
    checksum of 0."""
    pkts = [
        Ether(src=H_IN, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=H_IN, psrc="10.10.10.2", pdst="10.10.10.1"),
        Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="172.22.1.1") /
        TCP(sport=40000, dport=80, flags="S", seq=100, chksum=0),
        Ether(src=H_IN, dst=R_IN) / IP(src="10.10.10.2", dst="10.10.10.1", chksum=0) / ICMP(id=9, seq=1),
    ]
    for i, p in enumerate(pkts):
        p.time = 1700000000.0 + i * 0.01
    wrpcap(path, pkts)


class TrustChecksumsTests(unittest.TestCase):
    def replay(self, *extra):
        from io import StringIO
        from cbac import replay
        tmp = self.mktemp()
        os.makedirs(tmp)
        inpcap, outpcap = os.path.join(tmp, "in.pcap"), os.path.join(tmp, "out.pcap")
        offloaded_capture(inpcap)
        outside_capture(outpcap)            # the next hop's ARP reply
        outs = os.path.join(tmp, "out-in.pcap"), os.path.join(tmp, "out-out.pcap")
        out = StringIO()
        replay.run(["-c", SEED_CONFIG, "--in", "Ethernet2/1=" + inpcap, "--in", "Ethernet2/0=" + outpcap,
                    "--out", "Ethernet2/1=" + outs[0], "--out", "Ethernet2/0=" + outs[1],
                    "--mac", "Ethernet2/1=" + R_IN, "--mac", "Ethernet2/0=" + R_OUT] + list(extra),
                   stdout=out)
        return out.getvalue(), rdpcap(outs[0]), rdpcap(outs[1])

    def test_default_verifies_and_drops_zero_checksums(self):
        text, inside, outside = self.replay()
        self.assertEqual([p for p in outside if TCP in p], [])
        self.assertEqual([p for p in inside if ICMP in p], [])
        self.assertIn("bad-l4-checksum 1", text)
        self.assertIn("malformed-ip-checksum 1", text)
        self.assertNotIn("trust-checksums", text)

    def test_trust_checksums_forwards_with_correct_checksums(self):
        text, inside, outside = self.replay("--trust-checksums")
        [syn] = [p for p in outside if TCP in p]
        self.assertEqual((syn[IP].src, syn[TCP].sport, syn[TCP].flags), ("172.22.1.16", 40000, "S"))
        # what leaves carries the checksum the sender's NIC would have put in
        sent = syn[TCP].chksum
        ip = syn[IP].copy()
        del ip[TCP].chksum
        self.assertEqual(IP(bytes(ip))[TCP].chksum, sent)
        self.assertNotEqual(sent, 0)
        [echo] = [p for p in inside if ICMP in p]
        self.assertEqual((echo[ICMP].type, echo[ICMP].id), (0, 9))
        self.assertIn("--trust-checksums: 2 frame(s) had their checksums replaced", text)
        self.assertNotIn("checksum", text.split("--trust-checksums")[1].split("\n", 1)[1])
