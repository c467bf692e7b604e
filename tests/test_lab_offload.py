"""cbac with the kernel fast path, end to end in the namespace lab.

A TCP connection from the inside host to a server outside runs through
cbac (seed configuration: TCP inspection, PAT); once it is established it
is offloaded (``show cbac fastpath``), data still arrives intact, and every
packet that needs a decision reaches Python from the offloaded flow:

- an out-of-window segment injected with the client's 4-tuple is dropped
  (the server never sees its bytes; the connection keeps working);
- a FIN moves the session to SIS_CLOSING;
- an RST in the window (SO_LINGER 0) ends the session.

With ``CBAC_OFFLOAD=0`` in the environment the same checks run with every
packet in Python (the offload-specific assertions are skipped).
"""

import os
import random
import re
import socket
import struct
import threading
import time

from twisted.trial import unittest

from cbac import lab as labmod
from cbac.dataplane.linux import in_netns
from tests.labrun import LabCase, skip_reason, wait_for
from tests.test_offload import offload_skip_reason

try:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
except ImportError:  # pragma: no cover
    IP = None

SERVER = "172.22.1.1"
CLIENT = "10.10.10.2"
PORT = 7000
OFFLOAD = os.environ.get("CBAC_OFFLOAD", "1") != "0"


def _recv_exactly(s, n, timeout=10):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


class OffloadedFlowTest(LabCase, unittest.TestCase):
    def setUp(self):
        reason = skip_reason() or (offload_skip_reason() if OFFLOAD else None)
        if reason:
            raise unittest.SkipTest(reason)
        if IP is None:
            raise unittest.SkipTest("scapy is not installed")
        LabCase.setUp(self)
        lab = self.env.lab
        with in_netns(lab.out_ns):
            self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((SERVER, PORT))
        self.listener.listen(8)
        self.addCleanup(self.listener.close)

    def connect(self):
        with in_netns(self.env.lab.in_ns):
            c = socket.socket()
        self.addCleanup(c.close)
        c.settimeout(10)
        c.connect((SERVER, PORT))
        self.listener.settimeout(10)
        s, _ = self.listener.accept()
        self.addCleanup(s.close)
        return c, s

    def fastpath(self):
        return self.env.console("show cbac fastpath").stdout

    def offloaded_count(self):
        m = re.search(r"Offloaded sessions: (\d+)", self.fastpath())
        return int(m.group(1)) if m else 0

    def exchange_until_offloaded(self, c, s):
        """Ping-pong data until cbac has offloaded the session."""
        for i in range(50):
            try:
                c.sendall(b"c" * 1000)
                self.assertEqual(len(_recv_exactly(s, 1000)), 1000)
                s.sendall(b"s" * 1000)
                self.assertEqual(len(_recv_exactly(c, 1000)), 1000)
            except socket.timeout:
                self.fail("stalled after %d exchanges:\n%s\n%s" % (
                    i, self.fastpath(), self.env.console("show ip inspect statistics").stdout))
            if i >= 3 and (not OFFLOAD or self.offloaded_count() >= 1):
                return
        self.fail("the session was never offloaded:\n" + self.fastpath())

    def session_line(self, cport):
        out = self.env.console("show ip inspect sessions").stdout
        for line in out.splitlines():
            if "(%s:%d)" % (CLIENT, cport) in line:
                return line
        return None

    def test_bulk_data_intact_when_offloaded(self):
        c, s = self.connect()
        self.exchange_until_offloaded(c, s)
        data = random.randbytes(4 << 20)
        got = []
        reader = threading.Thread(target=lambda: got.append(_recv_exactly(s, len(data), 30)))
        reader.start()
        c.settimeout(30)
        c.sendall(data)
        reader.join(35)
        self.assertEqual(got, [data])
        if OFFLOAD:
            fp = self.fastpath()
            fwd = int(re.search(r"Kernel: forwarded (\d+) packets", fp).group(1))
            self.assertGreater(fwd, 10, fp)

    def test_out_of_window_segment_reaches_python_and_is_dropped(self):
        c, s = self.connect()
        self.exchange_until_offloaded(c, s)
        cport = c.getsockname()[1]
        before = self.fastpath()
        tx = None
        with in_netns(self.env.lab.in_ns):
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.addCleanup(tx.close)
        tx.bind(("eth0", 3))
        # far from anything the client sent: outside the window either way
        seq = random.getrandbits(32)
        frame = bytes(Ether(dst=labmod.INSIDE_MAC, src=labmod.IN_MAC)
                      / IP(src=CLIENT, dst=SERVER)
                      / TCP(sport=cport, dport=PORT, flags="PA", seq=seq, ack=0, window=500)
                      / b"EVIL-OUT-OF-WINDOW")
        tx.send(frame)
        time.sleep(0.5)
        # the connection still works, and the server never got the bytes
        c.sendall(b"after")
        got = _recv_exactly(s, 5)
        self.assertEqual(got, b"after")
        s.settimeout(0.3)
        try:
            extra = s.recv(100)
        except socket.timeout:
            extra = b""
        self.assertNotIn(b"EVIL", extra)
        if OFFLOAD:
            after = self.fastpath()
            taken = lambda t: int((re.search(r"slow-path (\d+)", t) or [0, 0])[1])
            self.assertGreater(taken(after), taken(before), after)

    def test_fin_reaches_python(self):
        c, s = self.connect()
        self.exchange_until_offloaded(c, s)
        cport = c.getsockname()[1]
        self.assertIn("SIS_OPEN", self.session_line(cport) or "")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(_recv_exactly(s, 1), b"")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(_recv_exactly(c, 1), b"")
        line = wait_for(lambda: "SIS_CLOSING" in (self.session_line(cport) or "SIS_CLOSING"),
                        timeout=5)
        self.assertTrue(line, self.session_line(cport))

    def test_rst_in_window_reaches_python(self):
        c, s = self.connect()
        self.exchange_until_offloaded(c, s)
        cport = c.getsockname()[1]
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        s.settimeout(5)
        with self.assertRaises(ConnectionResetError):
            s.recv(10)
        ok = wait_for(lambda: "SIS_OPEN" not in (self.session_line(cport) or ""), timeout=5)
        self.assertTrue(ok, self.session_line(cport))


class OffloadedPingTest(LabCase, unittest.TestCase):
    """ping from the inside through cbac (ICMP inspection, PAT): every echo
    answered with the right identifier and sequence, and once the ICMP
    session is offloaded the kernel forwards the echoes."""

    def setUp(self):
        reason = skip_reason() or (offload_skip_reason() if OFFLOAD else None)
        if reason:
            raise unittest.SkipTest(reason)
        LabCase.setUp(self)

    def test_ping_answered_and_offloaded(self):
        r = self.env.exec("in", ["ping", "-n", "-c", "60", "-i", "0.01", "-W", "1", SERVER])
        out = r.stdout if isinstance(r.stdout, str) else r.stdout.decode()
        self.assertIn("60 received", out)
        self.assertIn("icmp_seq=60 ", out)
        if OFFLOAD:
            fp = self.env.console("show cbac fastpath").stdout
            fwd = int(re.search(r"Kernel: forwarded (\d+) packets", fp).group(1))
            self.assertGreater(fwd, 60, fp)
        # a second ping (a new identifier: a new session) while the first
        # one's entries may still be installed
        r = self.env.exec("in", ["ping", "-n", "-c", "30", "-i", "0.01", "-W", "1", SERVER])
        out = r.stdout if isinstance(r.stdout, str) else r.stdout.decode()
        self.assertIn("30 received", out)
