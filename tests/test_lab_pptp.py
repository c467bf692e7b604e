"""PPTP inspection end to end in the namespace lab, without pptpd (no PPP
in the lab's kernel): ``ip inspect name IN-OUT pptp`` added to the seed
(PAT for the inside; ACL 101 does not permit GRE).  A PAC on the outside
host (a Python TCP server on 172.22.1.1:1723 speaking the RFC 2637
control protocol, sending and receiving enhanced GRE on a raw socket of
the real kernel) and a PNS on the inside host (the same on its side) set
up one call; the GRE of the call passes both ways through PAT, with the
PAT address as the PNS's source and the Call IDs each side expects; GRE
with a key of no call does not pass."""

import json
import os
import sys
import time

from twisted.trial import unittest

from tests.labrun import LabCase, seed_variant, skip_reason

CONFIG = seed_variant(replace=[("ip inspect name IN-OUT udp\n",
                                "ip inspect name IN-OUT udp\n"
                                "ip inspect name IN-OUT pptp audit-trail on\n")])

COMMON = r"""
import json, select, socket, struct, sys, time
MAGIC = 0x1A2B3C4D
LEN = {1: 156, 2: 156, 7: 168, 8: 32}
def ctl(t, body=b""):
    return struct.pack("!HHIHH", LEN[t], 1, MAGIC, t, 0) + body.ljust(LEN[t] - 12, b"\0")
def read_msg(s):
    buf = b""
    while len(buf) < 2 or len(buf) < struct.unpack("!H", buf[:2])[0]:
        d = s.recv(4096)
        if not d:
            raise SystemExit("control connection closed")
        buf += d
    return buf
def gre(call_id, seq):
    payload = b"\xff\x03\x00\x21" + b"ppp-data-%d" % seq
    return struct.pack("!BBHHHI", 0x30, 0x01, 0x880B, len(payload), call_id, seq) + payload
def listen_gre(raw, seconds):
    got = []
    end = time.time() + seconds
    while time.time() < end:
        r, _, _ = select.select([raw], [], [], 0.1)
        if r:
            pkt, addr = raw.recvfrom(2048)
            ihl = (pkt[0] & 15) * 4
            g = pkt[ihl:]
            if len(g) >= 8 and g[2:4] == b"\x88\x0b":
                got.append([addr[0], struct.unpack("!H", g[6:8])[0]])
    return got
"""

PAC = COMMON + r"""
out = sys.argv[1]
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("172.22.1.1", 1723))
ls.listen(1)
print("READY", flush=True)
c, peer = ls.accept()
read_msg(c)                                   # SCCRQ
c.sendall(ctl(2, struct.pack("!HBB", 0x100, 1, 0)))
m = read_msg(c)                               # OCRQ
pns_id = struct.unpack("!H", m[12:14])[0]
c.sendall(ctl(8, struct.pack("!HHBB", 100, pns_id, 1, 0)))
time.sleep(0.5)
for i in range(5):
    raw.sendto(gre(pns_id, i), (peer[0], 0))
    raw.sendto(gre(777, i), (peer[0], 0))      # a key of no call
got = listen_gre(raw, 3)
json.dump({"peer": peer[0], "pns_id": pns_id, "got": got}, open(out, "w"))
"""

PNS = COMMON + r"""
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
s = socket.create_connection(("172.22.1.1", 1723), timeout=10)
s.sendall(ctl(1, struct.pack("!HH", 0x100, 0)))
read_msg(s)
s.sendall(ctl(7, struct.pack("!HH", 1, 1)))
m = read_msg(s)
pac_id, peer_id, result = struct.unpack("!HHB", m[12:17])
for i in range(5):
    raw.sendto(gre(pac_id, i), ("172.22.1.1", 0))
got = listen_gre(raw, 3)
print(json.dumps({"pac_id": pac_id, "peer_id": peer_id, "result": result, "got": got}))
s.close()
"""


class PptpLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()
    config = CONFIG
    timeout = 120
    me = "172.22.1.16"           # the PNS as the PAC sees it (PAT)

    def test_call_gre_through_pat(self):
        out = os.path.join(self.env.tmp, "pac.json")
        p = self.env.server("out", [sys.executable, "-c", PAC, out])
        time.sleep(1)
        r = self.env.python("in", PNS, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:] + self.env.log()[-2000:])
        pns = json.loads(r.stdout)
        p.wait(15)
        with open(out) as f:
            pac = json.load(f)
        # the control dialogue went through: the PNS got its own Call ID back
        self.assertEqual((pns["pac_id"], pns["peer_id"], pns["result"]), (100, 1, 1))
        self.assertEqual(pac["peer"], self.me)
        # PNS -> PAC GRE: from the PAT address, keyed with the PAC's Call ID
        self.assertEqual(pac["got"], [[self.me, 100]] * 5)
        # PAC -> PNS GRE: keyed with the PNS's own Call ID; key 777 never arrives
        self.assertEqual(pns["got"], [["172.22.1.1", 1]] * 5)
        log = self.env.log()
        self.assertIn("Start pptp-gre session: initiator (10.10.10.2:1)", log)


class PptpLabNoNatTests(PptpLabTests):
    """The same call without NAT (the seed's PAT rule removed)."""

    config = seed_variant(replace=[("ip inspect name IN-OUT udp\n",
                                    "ip inspect name IN-OUT udp\n"
                                    "ip inspect name IN-OUT pptp audit-trail on\n"),
                                   ("ip nat inside source list 1 interface Ethernet2/0 overload\n", "")])
    me = "10.10.10.2"
