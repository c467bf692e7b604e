"""Urgent data against a real Linux server, in the namespace lab.

A small SMTP-like server on the inside host (10.10.10.25:25, published on
172.22.1.16:25) records every command it executes and every body line; a
connection that says ``HELO inline`` gets SO_OOBINLINE.  The client on the
outside host sends ``hello / .X / WIZ`` as a message body with X sent as
urgent data (``MSG_OOB``).  Without SO_OOBINLINE Linux drops X from the
stream, so through a router that passes URG (the kernel reference) the
server sees the end of the body and executes WIZ; through cbac, which
clears URG for inspected sessions, both servers see the body unchanged.
"""

import json
import os
import sys

from twisted.trial import unittest

from tests.labrun import LabCase, records, skip_reason, wait_for

SERVER = r"""
import json, socket, sys, threading
rec = open(sys.argv[1], "a", buffering=1)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("10.10.10.25", 25))
ls.listen(8)
print("READY", flush=True)

def handle(c):
    mode = "?"
    def log(ev, data):
        rec.write(json.dumps({"mode": mode, "ev": ev, "data": data.decode("latin-1")}) + "\n")
    c.sendall(b"220 lab ready\r\n")
    buf = b""
    in_data = False
    while True:
        d = c.recv(4096)
        if not d:
            break
        buf += d
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line += b"\n"
            if in_data:
                if line.rstrip(b"\r\n") == b".":
                    in_data = False
                    log("end", b"")
                    c.sendall(b"250 queued\r\n")
                else:
                    log("body", line)
                continue
            words = line.split()
            verb = words[0].upper() if words else b""
            if verb == b"HELO" and len(words) > 1:
                mode = words[1].decode()
                if mode == "inline":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            log("cmd", line)
            if verb == b"DATA":
                in_data = True
                c.sendall(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                c.sendall(b"221 bye\r\n")
                c.close()
                return
            else:
                c.sendall(b"250 ok\r\n")

while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""

CLIENT = r"""
import json, socket, sys, time
mode = sys.argv[1]
s = socket.create_connection(("172.22.1.16", 25), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
out = {"replies": []}
def reply():
    out["replies"].append(f.readline().decode("latin-1").strip())
try:
    reply()
    for cmd in (b"HELO " + mode.encode() + b"\r\n", b"MAIL FROM:<a@out.test>\r\n",
                b"RCPT TO:<b@lab.test>\r\n", b"DATA\r\n"):
        s.sendall(cmd)
        reply()
    s.sendall(b"hello\r\n.")
    time.sleep(0.2)
    s.send(b"X", socket.MSG_OOB)
    time.sleep(0.2)
    s.sendall(b"\r\nWIZ\r\n.\r\n")
    reply()
    s.sendall(b"QUIT\r\n")
    time.sleep(0.5)
    out["ok"] = True
except Exception as e:
    out["ok"] = False
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
"""


class _UrgentMixin(LabCase):

    @classmethod
    def setUpLab(cls):
        import subprocess
        import time
        cls.record = os.path.join(cls.env.tmp, "urg-server.jsonl")
        open(cls.record, "w").close()
        p = cls.env.lab.popen("in", [sys.executable, "-c", SERVER, cls.record],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        os.set_blocking(p.stdout.fileno(), False)
        deadline = time.monotonic() + 10
        buf = b""
        while time.monotonic() < deadline and b"READY" not in buf:
            buf += p.stdout.read() or b""
            time.sleep(0.05)

    def converse(self, mode):
        r = self.env.python("out", CLIENT, mode, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr + self.env.log()[-2000:])
        res = json.loads(r.stdout)
        self.assertTrue(res["ok"], res)
        wait_for(lambda: [x for x in records(self.record) if x["mode"] == mode
                          and x["ev"] == "cmd" and x["data"].startswith("QUIT")], 5)
        got = [x for x in records(self.record) if x["mode"] == mode]
        cmds = [x["data"].split()[0].upper() for x in got if x["ev"] == "cmd" and x["data"].split()]
        body = [x["data"] for x in got if x["ev"] == "body"]
        return cmds, body

    def test_without_oobinline(self):
        cmds, body = self.converse("plain")
        self.check(cmds, body, inline=False)

    def test_with_oobinline(self):
        cmds, body = self.converse("inline")
        self.check(cmds, body, inline=True)


class UrgentKernelReference(_UrgentMixin, unittest.TestCase):
    """The Linux kernel as the router passes URG: the evasion works
    against a server without SO_OOBINLINE (proof the test can see it)."""
    skip = skip_reason()
    mode = "kernel"

    def check(self, cmds, body, inline):
        if inline:
            self.assertEqual(body, ["hello\r\n", ".X\r\n", "WIZ\r\n"])
            self.assertNotIn("WIZ", cmds)
        else:
            self.assertIn("WIZ", cmds)


class UrgentCbac(_UrgentMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"

    def check(self, cmds, body, inline):
        self.assertNotIn("WIZ", cmds)
        self.assertEqual(body, ["hello\r\n", ".X\r\n", "WIZ\r\n"])


UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("172.22.1.1", 5300))
print("READY", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(b"r" * 2995 + data, peer)
"""

UDP_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"query", ("172.22.1.1", 5300))
try:
    data, peer = s.recvfrom(65535)
    print(json.dumps({"ok": True, "len": len(data), "good": data == b"r" * 2995 + b"query"}))
except Exception as e:
    print(json.dumps({"ok": False, "error": str(e)}))
"""


class _BigUdpMixin(LabCase):
    """A 3,000-byte DNS-like UDP reply, fragmented by the sender's kernel
    on the outside link, through PAT (inside source list overload)."""

    @classmethod
    def setUpLab(cls):
        import subprocess
        import time
        p = cls.env.lab.popen("out", [sys.executable, "-c", UDP_SERVER],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        os.set_blocking(p.stdout.fileno(), False)
        deadline = time.monotonic() + 10
        buf = b""
        while time.monotonic() < deadline and b"READY" not in buf:
            buf += p.stdout.read() or b""
            time.sleep(0.05)

    def test_big_udp_reply_arrives_whole(self):
        r = self.env.python("in", UDP_CLIENT, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        res = json.loads(r.stdout)
        self.assertTrue(res["ok"], (res, self.env.log()[-2000:]))
        self.assertEqual(res["len"], 3000)
        self.assertTrue(res["good"])


class BigUdpKernelReference(_BigUdpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"


class BigUdpCbac(_BigUdpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"
