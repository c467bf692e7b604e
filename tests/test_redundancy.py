"""The active/standby pair (issue 18, part 2) without namespaces: two
appliances on memory ports, their sync protocols joined by an in-memory
transport (twisted.test.iosim), simulated Linux hosts; keepalived's word
is given with :meth:`Redundancy.set_role`, as the notify socket does.

The standby here uses the same MAC addresses as the active (the simulated
hosts have no ARP cache to update); the namespace lab
(tests/test_lab_redundancy.py) checks the gratuitous ARP with real hosts.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial import unittest

from cbac.app import Appliance
from cbac.config.parser import parse_config
from cbac.continuity import sync, vrrp
from cbac.continuity.restart import FLUSH_DELAY
from cbac.dataplane.port import MemoryPort
from tests.hosts import INSIDE, NAT_CONFIG, OUTSIDE, R_IN, R_OUT, Net, Recorder, smtp_server
from tests.test_continuity import capture, fake_offload, _rmtree

SYNC = "interface Ethernet2/2\n ip address 192.0.2.%d 255.255.255.252\n" \
       "cbac redundancy peer 192.0.2.%d interface Ethernet2/2 key pair-secret-1\n"


def model(me, peer, key="pair-secret-1"):
    text = NAT_CONFIG.format(extra=(SYNC % (me, peer)).replace("pair-secret-1", key))
    m, diags = parse_config(text)
    assert not [d for d in diags if d.severity == "error"], diags
    assert m.redundancy is not None
    return m


class _Reactor:
    """The test clock with connectTCP (the sync link's reconnects are
    recorded, not made: the test joins the protocols itself)."""

    def __init__(self, clock):
        self.clock = clock
        self.connects = []

    def __getattr__(self, name):
        return getattr(self.clock, name)

    def connectTCP(self, *a, **kw):
        self.connects.append(a)

        class _C:
            def disconnect(self):
                pass
        return _C()


class PairCase(unittest.TestCase):
    key_b = "pair-secret-1"

    def setUp(self):
        self.logs = capture(self)
        self.offloads = fake_offload(self)  # the kernel fast path: a fake map
        self.net = Net(nat=True)            # box A's ports and the hosts
        self.clock = self.net.clock
        self.reactor = _Reactor(self.clock)
        a = self.net.app
        a.model = model(1, 2)
        self.dir_a = tempfile.mkdtemp(prefix="cbac-pair-")
        self.dir_b = tempfile.mkdtemp(prefix="cbac-pair-")
        self.addCleanup(_rmtree, self.dir_a)
        self.addCleanup(_rmtree, self.dir_b)
        a.state_dir = self.dir_a
        self.net.router.stop()              # a pair member starts not forwarding
        self.ports_b = {INSIDE: MemoryPort(INSIDE, R_IN), OUTSIDE: MemoryPort(OUTSIDE, R_OUT)}
        self.b = Appliance(model(2, 1, self.key_b), self.clock, dict(self.ports_b),
                           state_dir=self.dir_b)
        self.a = a
        self.ra = sync.Redundancy(a, a.model.redundancy, self.reactor, "192.0.2.1")
        self.rb = sync.Redundancy(self.b, self.b.model.redundancy, self.reactor, "192.0.2.2")
        a.redundancy, self.b.redundancy = self.ra, self.rb
        self.ra.running = self.rb.running = True
        self.ra.set_role("MASTER")
        self.rb.set_role("BACKUP")
        self.addCleanup(self._stop)

    def _stop(self):
        for app in (self.a, self.b):
            app.stop_offload()
            app.router.stop()
            app.sessions.stop()
            app.nat.stop()
            if app.continuity is not None:
                app.stop_continuity(clean=False)
        for r in (self.ra, self.rb):
            r.running = False
            if r.proto is not None and r.proto._ping is not None and r.proto._ping.active():
                r.proto._ping.cancel()

    def link(self):
        """Join the two boxes' sync protocols (A listens, B... the lower
        address connects: A is the client)."""
        pa, pb = sync.SyncProtocol(self.ra), sync.SyncProtocol(self.rb)
        ta = iosim.FakeTransport(pa, False, IPv4Address("TCP", "192.0.2.1", 40000),
                                 IPv4Address("TCP", "192.0.2.2", 3780))
        tb = iosim.FakeTransport(pb, True, IPv4Address("TCP", "192.0.2.2", 3780),
                                 IPv4Address("TCP", "192.0.2.1", 40000))
        self.pump = iosim.connect(pb, tb, pa, ta, greet=False)
        self.pump.flush()
        return pa, pb

    def sync(self):
        self.clock.advance(FLUSH_DELAY * 2)
        self.net.pump()
        self.pump.flush()

    def failover(self):
        """A dies (nothing more from it); keepalived makes B MASTER; the
        hosts' frames now reach B (the bridge learnt B's MACs from its
        gratuitous ARP)."""
        self.a.router.stop()
        self.ra.running = False
        if self.ra.proto is not None and self.ra.proto._ping is not None:
            self.ra.proto._ping.cancel()
        self.rb.set_role("MASTER")
        self.net.app, self.net.router, self.net.ports = self.b, self.b.router, self.ports_b
        self.net.pump()


class PairTests(PairCase):

    def test_sessions_survive_failover(self):
        """A TCP connection through PAT and an SMTP conversation: the
        standby holds both (show ip inspect sessions on it), and after the
        failover both go on, with the same translation, still inspected."""
        self.link()
        out_srv = self.net.host(OUTSIDE, "172.22.1.9", 9)
        rec = []
        out_srv.listen(5001, lambda: rec.append(Recorder()) or rec[-1])
        cli = self.net.host(INSIDE, "10.10.10.5", 5)
        c = cli.connect("172.22.1.9", 5001)
        self.net.pump()
        c.send(b"a" * 2000)
        self.net.pump()
        log = []
        mail = self.net.host(INSIDE, "10.10.10.25", 25)
        mail.listen(25, smtp_server(log))
        mcli = self.net.host(OUTSIDE, "172.22.1.7", 7)
        m = mcli.connect("172.22.1.16", 25)
        self.net.pump()
        m.send(b"HELO x\r\n")
        self.net.pump()
        self.clock.advance(1.5)              # the inspector's periodic save
        self.sync()
        [sc] = out_srv.conns.values()
        gport = sc.rport
        standby = self.b.show_ip_inspect("sessions")
        self.assertIn("(10.10.10.5:40000)=>(172.22.1.9:5001) tcp SIS_OPEN", standby)
        self.assertIn("(172.22.1.7:40000)=>(172.22.1.16:25) smtp SIS_OPEN", standby)
        shown = self.b.show_redundancy()
        self.assertIn("My role: STANDBY (not forwarding)", shown)
        self.assertIn("Synced state: 2 sessions", shown)
        self.assertIn("in step", shown)
        self.assertIn("My role: ACTIVE (forwarding)", self.a.show_redundancy())
        self.failover()
        self.assertTrue(any("now ACTIVE (was BACKUP): 2 sessions" in l for l in self.logs),
                        self.logs)
        c.send(b"b" * 2000)
        self.net.pump()
        sc.send(b"back")
        self.net.pump()
        self.assertEqual(bytes(sc.data), b"a" * 2000 + b"b" * 2000)
        self.assertEqual(bytes(c.data), b"back")
        self.assertEqual(sc.rport, gport)
        m.send(b"MAIL FROM:<a@b.c>\r\n")
        self.net.pump()
        m.send(b"WIZ\r\n")
        self.net.pump()
        cmds = [x[1] for x in log if x[0] == "CMD"]
        self.assertEqual(cmds, ["HELO", "MAIL", "XXX"])     # WIZ masked: still inspected
        self.assertFalse(c.reset or m.reset)

    def test_fast_path_on_the_new_active_box(self):
        """The box that takes over loads the kernel fast path, as a plain
        start does; a taken-over established session gets its kernel
        entries only after both directions have spoken again."""
        self.link()
        [(fo_a, _fake_a)] = self.offloads           # A: loaded when it became MASTER
        self.assertIs(self.a.offloader, fo_a)
        self.assertIsNone(self.b.offloader)         # a standby has none
        out_srv = self.net.host(OUTSIDE, "172.22.1.9", 9)
        rec = []
        out_srv.listen(5001, lambda: rec.append(Recorder()) or rec[-1])
        cli = self.net.host(INSIDE, "10.10.10.5", 5)
        c = cli.connect("172.22.1.9", 5001)
        self.net.pump()
        c.send(b"a" * 2000)
        self.net.pump()
        self.sync()
        [sc] = out_srv.conns.values()
        self.failover()
        self.assertEqual(len(self.offloads), 2)
        fo, fake = self.offloads[1]
        self.assertIs(self.b.offloader, fo)
        self.assertNotIn("not loaded", self.b.show_cbac_fastpath())
        [s] = self.b.sessions.sessions.values()
        self.assertIn(s, self.b.sessions.resuming)
        for i in range(4):                          # the client alone speaks
            c.send(b"c" * 100)
            queued, self.net.queue = self.net.queue, []
            for side, f in queued:
                self.net.ports[side].inject(bytearray(f))
        self.assertIn(s, self.b.sessions.resuming)
        self.assertEqual(fake.flows, {})
        self.net.pump()                             # the server's ACKs
        self.assertEqual(self.b.sessions.resuming, {})
        for i in range(3):
            c.send(b"b" * 100)
            self.net.pump()
            sc.send(b"y" * 10)
            self.net.pump()
        self.assertIn(s, fo.flows)
        self.assertEqual(len(fake.flows), 2)
        self.assertIn("Offloaded sessions: 1 (2 flow entries)", self.b.show_cbac_fastpath())
        self.assertFalse(c.reset or sc.reset)

    def test_demoted_box_unloads_the_fast_path(self):
        """A box that stops being active takes its sessions back from the
        kernel and unloads the fast path: nothing forwards there."""
        self.link()
        out_srv = self.net.host(OUTSIDE, "172.22.1.9", 9)
        out_srv.listen(5001, Recorder)
        cli = self.net.host(INSIDE, "10.10.10.5", 5)
        c = cli.connect("172.22.1.9", 5001)
        self.net.pump()
        [sc] = out_srv.conns.values()
        for i in range(4):
            c.send(b"a" * 100)
            self.net.pump()
            sc.send(b"y" * 10)
            self.net.pump()
        [(fo, fake)] = self.offloads
        self.assertEqual(len(fake.flows), 2)
        self.ra.set_role("BACKUP")
        self.assertIsNone(self.a.offloader)
        self.assertEqual(fake.flows, {})
        self.assertTrue(fake.closed)
        self.assertIn("not loaded", self.a.show_cbac_fastpath())

    def test_sync_traffic_per_connection(self):
        """What one new TCP connection through PAT costs on the sync link
        (handshake, some data, both FINs, deletion): a few records, no
        per-packet traffic."""
        self.link()
        out_srv = self.net.host(OUTSIDE, "172.22.1.9", 9)
        out_srv.listen(5001, Recorder)
        cli = self.net.host(INSIDE, "10.10.10.5", 5)
        self.sync()
        before, recs = self.ra.tx_bytes, self.ra.records_sent
        n = 20
        for i in range(n):
            c = cli.connect("172.22.1.9", 5001, sport=41000 + i)
            self.net.pump()
            for _ in range(10):
                c.send(b"d" * 1000)
                self.net.pump()
            self.sync()
        per_conn = (self.ra.tx_bytes - before) / n
        per_recs = (self.ra.records_sent - recs) / n
        print("\nsync link: %.0f bytes, %.1f records per new connection through PAT"
              % (per_conn, per_recs))
        self.assertLessEqual(per_recs, 3)
        self.assertLess(per_conn, 2000)
        self.assertEqual(len(self.rb.state.sessions), n)

    def test_closed_sessions_leave_the_standby(self):
        self.link()
        out_srv = self.net.host(OUTSIDE, "172.22.1.9", 9)
        out_srv.listen(5001, Recorder)
        cli = self.net.host(INSIDE, "10.10.10.5", 5)
        c = cli.connect("172.22.1.9", 5001)
        self.net.pump()
        self.sync()
        self.assertEqual(len(self.rb.state.sessions), 1)
        self.assertEqual(len(self.rb.state.translations), 1)
        self.a.clear("ip inspect sessions")
        self.sync()
        self.assertEqual(len(self.rb.state.sessions), 0)
        self.assertEqual(len(self.rb.state.translations), 0)

    def test_bulk_resync_on_join(self):
        """Sessions made while the link was down reach a standby that joins
        later (full resync)."""
        out_srv = self.net.host(OUTSIDE, "172.22.1.9", 9)
        out_srv.listen(5001, Recorder)
        cli = self.net.host(INSIDE, "10.10.10.5", 5)
        cli.connect("172.22.1.9", 5001)
        self.net.pump()
        self.sync_nolink()
        self.assertEqual(len(self.rb.state.sessions), 0)
        self.link()
        self.assertEqual(len(self.rb.state.sessions), 1)
        self.assertTrue(self.rb.in_sync)
        self.assertTrue(any("full resync of 2 records" in l for l in self.logs), self.logs)

    def sync_nolink(self):
        self.clock.advance(FLUSH_DELAY * 2)
        self.net.pump()

    def test_forged_message_closes_the_link(self):
        """A message that fails the HMAC (or comes out of sequence) closes
        the link with a log line; nothing of it is installed."""
        pa, pb = self.link()
        self.assertTrue(pb.authed)
        pa.sendString(b"\x00" * 32 + (pa.tx_seq + 1).to_bytes(8, "big") +
                      b'{"t":"recs","r":[{"k":"B","h":1,"r":99}]}')
        self.pump.flush()
        self.assertEqual(len(self.rb.state.blocks), 0)
        self.assertTrue(any("SYNC_REFUSED" in l and "fails authentication" in l
                            for l in self.logs), self.logs)

    def test_replayed_message_refused(self):
        pa, pb = self.link()
        sent = []
        orig = pa.sendString
        pa.sendString = lambda d: (sent.append(d), orig(d))[1]
        pa.send({"t": "ping"})
        self.pump.flush()
        orig(sent[-1])                       # the same message again
        self.pump.flush()
        self.assertTrue(any("sequence number" in l for l in self.logs), self.logs)

    def test_split_brain_logged(self):
        self.link()
        self.rb.set_role("MASTER")
        self.pump.flush()
        self.assertTrue(any("SPLIT_BRAIN" in l for l in self.logs), self.logs)

    def test_demoted_active_stops_forwarding(self):
        self.link()
        self.ra.set_role("BACKUP")
        self.assertIn("not forwarding", self.a.show_redundancy())
        cli = self.net.host(INSIDE, "10.10.10.5", 5)
        c = cli.connect("172.22.1.9", 5001)
        self.net.pump()
        self.assertEqual(c.state, "SYN_SENT")
        self.assertEqual([f for f in self.net.frames[OUTSIDE] if f[12:14] == b"\x08\x00"], [])


class WrongKeyTests(PairCase):
    key_b = "another-key-2"

    def test_wrong_key_refused(self):
        pa, pb = self.link()
        self.assertFalse(pa.authed or pb.authed)
        self.assertTrue(any("bad hello (wrong key?)" in l for l in self.logs), self.logs)


class NotifyTests(unittest.TestCase):

    def test_notify_socket_and_state_file(self):
        """What keepalived's notify runs: the state reaches the listener
        and the state file; garbage changes nothing."""
        from twisted.internet import reactor
        from cbac.continuity import notify
        d = tempfile.mkdtemp(prefix="cbac-notify-")
        self.addCleanup(_rmtree, d)
        got = []
        lst = vrrp.NotifyListener(reactor, d, got.append)
        lst.start()
        self.addCleanup(lst.stop)
        self.assertEqual(os.stat(os.path.join(d, vrrp.SOCKET)).st_mode & 0o777, 0o600)
        self.assertEqual(notify.main(["--state-dir", d, "INSTANCE", "VI_1", "MASTER", "100"]), 0)
        self.assertEqual(vrrp.read_state(d), "MASTER")
        self.assertEqual(notify.main(["--state-dir", d, "bogus"]), 2)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"\xff\xfe garbage", os.path.join(d, vrrp.SOCKET))
        s.close()
        from twisted.internet import task
        return task.deferLater(reactor, 0.2, lambda: self.assertEqual(got, ["MASTER"]))

    def test_fault_with_cbac_dead_removes_the_fast_path(self):
        """FAULT that cbac cannot hear (killed): the notify script removes
        the kernel fast path from the claimed ports (`claim detach`), which
        would otherwise go on forwarding the flows it had.  MASTER/BACKUP
        with cbac dead, or FAULT that cbac hears, leave the ports alone."""
        from cbac.continuity import notify
        d = tempfile.mkdtemp(prefix="cbac-notify-")
        self.addCleanup(_rmtree, d)
        ran = []
        self.patch(notify.subprocess, "run", lambda argv, **kw: ran.append(argv))
        self.assertEqual(notify.main(["--state-dir", d, "INSTANCE", "VI_1", "BACKUP", "100"]), 1)
        self.assertEqual(ran, [])
        self.assertEqual(notify.main(["--state-dir", d, "INSTANCE", "VI_1", "FAULT", "100"]), 1)
        self.assertEqual(ran, [[sys.executable, "-m", "cbac.dataplane.claim", "detach", d]])
        self.assertEqual(notify.main(["--state-dir", d, "STOP"]), 1)
        self.assertEqual(len(ran), 2)

    def test_keepalived_conf(self):
        text = vrrp.keepalived_conf("CBAC", "sync", 51, 150, "192.0.2.1", "192.0.2.2",
                                    "/usr/bin/python3 -m cbac.continuity.notify --state-dir /x")
        self.assertIn("unicast_peer {\n        192.0.2.2", text)
        self.assertIn('notify "/usr/bin/python3 -m cbac.continuity.notify --state-dir /x"', text)


class ConsoleTests(PairCase):

    def test_show_redundancy_on_the_console(self):
        """``show redundancy`` (abbreviated) through the IOS CLI of the
        standby, and ``show ip inspect sessions`` there, once a session
        is synced."""
        from tests.test_console_cli import Term
        self.link()
        out_srv = self.net.host(OUTSIDE, "172.22.1.9", 9)
        out_srv.listen(5001, Recorder)
        cli = self.net.host(INSIDE, "10.10.10.5", 5)
        cli.connect("172.22.1.9", 5001)
        self.net.pump()
        self.sync()
        t = Term(self.b)
        out = t.type("sh redundancy\r")
        self.assertIn("My role: STANDBY (not forwarding)", out)
        self.assertIn("Peer: 192.0.2.1, role MASTER", out)
        self.assertIn("Sync link: Ethernet2/2 192.0.2.2:3780 <- 192.0.2.1:3780, up", out)
        self.assertRegex(out, r"Sequence numbers: sent \d+, received \d+")
        self.assertIn("Synced state: 1 sessions, 1 translations, 0 blocked hosts (in step)", out)
        out = t.type("show ip inspect sessions\r")
        self.assertIn("Synced from the active box 192.0.2.1 (standby: not forwarding)", out)
        self.assertIn("(10.10.10.5:40000)=>(172.22.1.9:5001) tcp SIS_OPEN", out)
