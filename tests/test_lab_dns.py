"""DNS inspection end to end in the namespace lab: ``ip inspect name IN-OUT
dns`` added to the seed (PAT for the inside), Debian's dnsmasq as the DNS
server on the outside host (172.22.1.1:53), a stub resolver on the inside
host sending A and AAAA queries on one socket (as glibc does), over UDP and
TCP.  Both answers pass through PAT, and the UDP session is gone once both
queries are answered (not after dns-timeout).  A TXT answer too big for
512 bytes comes truncated over UDP and whole over TCP (the DNS guard over
TCP)."""

import json
import os
import shutil

from twisted.trial import unittest

from tests.labrun import LabCase, seed_variant, skip_reason, wait_for

CONFIG = seed_variant(replace=[("ip inspect name IN-OUT udp\n",
                                "ip inspect name IN-OUT udp\nip inspect name IN-OUT dns\n")],
                      extra=["ip inspect dns-timeout 30"])

STUB = r"""
import json, socket, struct, sys
def q(i, name, t):
    return (struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0)
            + b"".join(bytes([len(l)]) + l.encode() for l in name.split("."))
            + b"\0" + struct.pack("!HH", t, 1))
def summary(d):
    i, fl, qd, an = struct.unpack("!HHHH", d[:8])
    out = {"id": i, "rcode": fl & 15, "an": an}
    if an:
        out["addr"] = socket.inet_ntoa(d[-4:])
    return out
res = {}
if sys.argv[1] == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect(("172.22.1.1", 53))
    s.send(q(0x1111, "www.example.com", 1))
    s.send(q(0x2222, "www.example.com", 28))
    for _ in range(2):
        a = summary(s.recv(4096))
        res[str(a["id"])] = a
elif sys.argv[1] == "tcp":
    s = socket.create_connection(("172.22.1.1", 53), timeout=5)
    m = q(0x3333, "www.example.com", 1)
    s.sendall(struct.pack("!H", len(m)) + m)
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
        c = s.recv(4096)
        if not c:
            break
        buf += c
    a = summary(buf[2:])
    res[str(a["id"])] = a
if sys.argv[1] == "tc":
    # a TXT answer too big for 512 bytes: truncated over UDP (no EDNS),
    # retried over TCP as a resolver does
    res = {}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect(("172.22.1.1", 53))
    s.send(q(0x4444, "big.example.com", 16))
    d = s.recv(4096)
    res["udp_tc"] = bool(struct.unpack("!H", d[2:4])[0] & 0x200)
    t = socket.create_connection(("172.22.1.1", 53), timeout=5)
    m = q(0x4444, "big.example.com", 16)
    t.sendall(struct.pack("!H", len(m)) + m)
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
        c = t.recv(4096)
        if not c:
            break
        buf += c
    res["tcp"] = summary(buf[2:])
    res["tcp_len"] = len(buf) - 2
print(json.dumps(res))
"""


def _skip():
    return skip_reason() or (None if shutil.which("dnsmasq") else
                             "dnsmasq is not installed (requirements-apt-test.txt: dnsmasq-base)")


class DnsLabTests(LabCase, unittest.TestCase):
    skip = _skip()
    config = CONFIG
    timeout = 120

    @classmethod
    def setUpLab(cls):
        env = cls.env
        env.server("out", ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=53",
                           "--listen-address=172.22.1.1", "--bind-interfaces", "--pid-file=",
                           "--no-resolv", "--no-hosts",
                           "--address=/www.example.com/192.0.2.80",
                           "--txt-record=big.example.com," + ",".join('"%s"' % (c * 200)
                                                                      for c in "abcd"),
                           "--log-queries", "--log-facility=" + os.path.join(env.tmp, "dns.log")])

    def _ask(self, transport):
        out = {}

        def ok():
            r = self.env.python("in", STUB, transport)
            if r.returncode == 0:
                out.update(json.loads(r.stdout))
                return True
            out["err"] = r.stderr
            return False
        self.assertTrue(wait_for(ok, 15, 0.5), out.get("err", "") + self.env.log())
        return out

    def test_udp_a_and_aaaa_through_pat_then_closed(self):
        res = self._ask("udp")
        self.assertEqual(res[str(0x1111)], {"id": 0x1111, "rcode": 0, "an": 1,
                                            "addr": "192.0.2.80"})
        # dnsmasq has no AAAA record and no upstream: it refuses (rcode 5);
        # the answer passed the guard all the same
        self.assertEqual(res[str(0x2222)]["an"], 0)
        # closed at the answers, well before dns-timeout (30 s)
        self.assertTrue(wait_for(lambda: not self._dns_sessions(), 5, 0.5),
                        self._dns_sessions())

    def test_tcp_query(self):
        res = self._ask("tcp")
        self.assertEqual(res[str(0x3333)]["addr"], "192.0.2.80")

    def test_truncated_udp_answer_retried_over_tcp(self):
        res = self._ask("tc")
        self.assertTrue(res["udp_tc"], res)
        self.assertEqual(res["tcp"]["id"], 0x4444)
        self.assertGreater(res["tcp"]["an"], 0)
        self.assertGreater(res["tcp_len"], 800)

    def _dns_sessions(self):
        """The DNS-guarded (UDP) sessions' detail lines."""
        out = self.env.console("show ip inspect sessions detail").stdout
        return [line for line in out.splitlines() if "DNS " in line and "over TCP" not in line]
