"""Stateful restart (issue 18, part 1): sessions and translations survive a
stop/start of the appliance object, with simulated Linux hosts on memory
ports; and what a damaged state directory does.

A "kill" here abandons the appliance without its clean stop (nothing is
compacted or flushed after the last batch was written), as ``kill -9``
does; the new appliance reads the same ``--state-dir``.
"""

from __future__ import annotations

import json
import os
import tempfile

from twisted.trial import unittest

from cbac.app import Appliance
from cbac.config.parser import parse_config
from cbac.continuity import journal as J
from cbac.continuity.restart import FLUSH_DELAY
from cbac.dataplane.port import MemoryPort
from cbac.log import ios
from tests.hosts import INSIDE, NAT_CONFIG, OUTSIDE, R_IN, R_OUT, Net, Recorder, smtp_server

INSIDE_HOST = "10.10.10.5"
OUTSIDE_HOST = "172.22.1.9"
SERVER_IP = "10.10.10.25"


def capture(case):
    """IOS messages and twisted log lines as text, for the test's life."""
    from twisted.logger import globalLogPublisher, formatEvent
    lines = []

    def obs(event):
        lines.append(formatEvent(event))
    globalLogPublisher.addObserver(obs)
    case.addCleanup(globalLogPublisher.removeObserver, obs)
    return lines


class RestartCase(unittest.TestCase):
    extra = ""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cbac-cont-")
        self.addCleanup(_rmtree, self.dir)
        self.logs = capture(self)
        self.net = Net(nat=True, extra=self.extra)
        self.net.app.state_dir = self.dir
        self.net.app.start_continuity()
        self.addCleanup(self._stop)

    def _stop(self):
        self.net.stop()
        self.net.app.stop_continuity(clean=False)

    def settle(self):
        """Let the batched journal write happen."""
        self.net.clock.advance(FLUSH_DELAY * 2)
        self.net.pump()

    def kill_and_start(self, clean=False):
        """The old appliance stops (killed: no clean stop unless asked); a
        new one starts from the same state directory and the same clock."""
        old = self.net.app
        self.settle()
        if clean:
            old.stop_continuity(clean=True)
        else:
            old.continuity.journal.close()      # the process is gone
            old.continuity.running = False
            old.continuity.detach()
        old.router.stop()
        old.sessions.stop()
        old.nat.stop()
        model, _ = parse_config(NAT_CONFIG.format(extra=self.extra))
        ports = {INSIDE: MemoryPort(INSIDE, R_IN), OUTSIDE: MemoryPort(OUTSIDE, R_OUT)}
        app = Appliance(model, self.net.clock, dict(ports), state_dir=self.dir)
        c = app.start_continuity()
        self.assertIsNotNone(c)
        app.router.start()
        self.net.app, self.net.router, self.net.ports = app, app.router, ports
        self.net.pump()
        return c


def fake_offload(case, ifindex=None):
    """The kernel fast path's loader replaced by one on the fake map of
    tests/test_flowoffload.py (memory ports have no ifindex: Ethernet2/1 is
    11, Ethernet2/0 12).  Returns the list of (offloader, fake map) the
    appliance's ``start_offload`` loads, in order."""
    from cbac.dataplane import flowoffload
    from tests.test_flowoffload import FakeOffload
    started = []

    def start(router, sessions, clock, model):
        fake = FakeOffload()
        fo = flowoffload.FlowOffloader(fake, router, sessions, clock)
        fo._ifindex = dict(ifindex or {INSIDE: 11, OUTSIDE: 12})
        sessions.offload = fo
        router.offload = fo
        started.append((fo, fake))
        return fo
    case.patch(flowoffload, "start_offload", start)
    case.patch(flowoffload, "MIN_PACKETS", 3)
    old = os.environ.pop("CBAC_OFFLOAD", None)
    if old is not None:
        case.addCleanup(os.environ.__setitem__, "CBAC_OFFLOAD", old)
    return started


def _rmtree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


class PatRestartTests(RestartCase):

    def _transfer(self):
        srv = self.net.host(OUTSIDE, OUTSIDE_HOST, 9)
        rec = []

        def app():
            r = Recorder()
            rec.append(r)
            return r
        srv.listen(5001, app)
        cli = self.net.host(INSIDE, INSIDE_HOST, 5)
        c = cli.connect(OUTSIDE_HOST, 5001, sport=40000)
        self.net.pump()
        self.assertEqual(c.state, "ESTABLISHED")
        c.send(b"a" * 3000)
        self.net.pump()
        [sc] = srv.conns.values()
        return cli, c, srv, sc

    def test_pat_tcp_survives_kill(self):
        """A TCP connection through PAT: after a kill and start, the next
        segments of both directions are forwarded with the same
        translation (the server sees the same global address and port),
        and the data arrives intact."""
        cli, c, srv, sc = self._transfer()
        (gport, gaddr) = (sc.rport, sc.raddr)
        self.assertEqual(gaddr, "172.22.1.16")
        before = self.net.app.show_ip_nat_translations()
        c.send(b"b" * 5000)                  # in flight when the box dies
        self.kill_and_start()
        self.assertIn("tcp 172.22.1.16:%d" % gport, self.net.app.show_ip_nat_translations())
        self.assertEqual(before.splitlines()[1:], self.net.app.show_ip_nat_translations()
                         .splitlines()[1:])
        c.retransmit()                       # the sender's RTO
        self.net.pump()
        sc.send(b"reply")
        self.net.pump()
        c.send(b"c" * 4000)
        self.net.pump()
        self.assertEqual(bytes(sc.data), b"a" * 3000 + b"b" * 5000 + b"c" * 4000)
        self.assertEqual(bytes(c.data), b"reply")
        self.assertFalse(c.reset or sc.reset)
        self.assertEqual((sc.rport, sc.raddr), (gport, gaddr))
        # re-learned: back on the fast path, strict checks again
        self.assertEqual(self.net.app.sessions.resuming, {})
        self.assertTrue(any("Restored 1 sessions (1 re-learning" in l for l in self.logs))
        out = self.net.app.show_ip_inspect("sessions")
        self.assertIn("(10.10.10.5:40000)=>(172.22.1.9:5001) tcp SIS_OPEN", out)

    def test_new_connection_after_restore_gets_another_port(self):
        """The restored PAT allocation is held: a second inside host using
        the same source port gets another global port."""
        cli, c, srv, sc = self._transfer()
        gport = sc.rport
        self.kill_and_start()
        cli2 = self.net.host(INSIDE, "10.10.10.6", 6)
        c2 = cli2.connect(OUTSIDE_HOST, 5001, sport=gport)
        self.net.pump()
        self.assertEqual(c2.state, "ESTABLISHED")
        ports = sorted(k[2] for k in srv.conns)
        self.assertEqual(len(set(ports)), 2)

    def test_clean_stop_compacts(self):
        """A clean stop leaves a snapshot holding the live state and an
        empty journal; the start restores from it."""
        cli, c, srv, sc = self._transfer()
        self.kill_and_start(clean=True)
        self.assertEqual(len(self.net.app.sessions.sessions), 1)
        c.send(b"z" * 100)
        self.net.pump()
        self.assertTrue(bytes(sc.data).endswith(b"z" * 100))

    def test_forged_segment_after_restore(self):
        """Re-learning is not a free pass for ever: once both directions
        spoke, a segment far outside the window is dropped again."""
        cli, c, srv, sc = self._transfer()
        self.kill_and_start()
        c.send(b"x" * 10)
        self.net.pump()
        sc.send(b"y")
        self.net.pump()
        self.assertEqual(self.net.app.sessions.resuming, {})
        n = len(sc.data)
        c.raw(b"EVIL", off=1 << 30)
        self.net.pump()
        self.assertEqual(len(sc.data), n)
        self.assertIn("seq-above-window", self.net.app.sessions.stats.drops)

    def test_unverified_rst_dropped(self):
        """An RST as the first packet of a restored session cannot be
        verified: dropped, the session stays."""
        cli, c, srv, sc = self._transfer()
        self.kill_and_start()
        sc.raw(flags="R")
        self.net.pump()
        self.assertFalse(c.reset)
        self.assertEqual(self.net.app.sessions.stats.drops.get("restore-rst-unverified"), 1)
        c.send(b"q" * 10)
        self.net.pump()
        self.assertTrue(bytes(sc.data).endswith(b"q" * 10))

    def test_fast_path_after_restart_only_once_relearned(self):
        """The restarted box loads the kernel fast path as a plain start
        does (router, then offload); a restored established session gets
        its kernel entries only once both directions have sent a segment
        (the window state is stale until then), never while one direction
        is still unknown; ``show cbac fastpath`` counts it."""
        started = fake_offload(self)
        cli, c, srv, sc = self._transfer()
        self.kill_and_start()
        self.net.app.start_offload()         # as RouterService.startService
        [(fo, fake)] = started
        [s] = self.net.app.sessions.sessions.values()
        self.assertIn(s, self.net.app.sessions.resuming)
        # three client segments reach the box; the server has not answered
        n0 = s.pkts[0]
        for i in range(3):
            c.send(b"%d" % i * 100)
        queued, self.net.queue = self.net.queue, []
        for side, f in queued:               # forwarded, not yet delivered
            self.net.ports[side].inject(bytearray(f))
        self.assertEqual(s.pkts[0], n0 + 3)      # all three judged by the session
        self.assertIn(s, self.net.app.sessions.resuming)
        self.assertEqual((fake.flows, fo.flows), ({}, {}))
        self.assertIn("Offloaded sessions: 0", self.net.app.show_cbac_fastpath())
        self.net.pump()                      # the server's ACKs: re-learned
        self.assertEqual(self.net.app.sessions.resuming, {})
        for i in range(3):
            c.send(b"z" * 100)
            self.net.pump()
            sc.send(b"y" * 10)
            self.net.pump()
        self.assertIn(s, fo.flows)
        self.assertEqual(len(fake.flows), 2)
        self.assertIn("Offloaded sessions: 1 (2 flow entries)", self.net.app.show_cbac_fastpath())
        self.assertFalse(c.reset or sc.reset)

    def test_closed_session_not_restored(self):
        cli, c, srv, sc = self._transfer()
        c.close()
        self.net.pump()
        sc.close()
        self.net.pump()
        self.net.advance(30)                 # finwait: the session goes
        self.assertEqual(len(self.net.app.sessions.sessions), 0)
        self.kill_and_start()
        self.assertEqual(len(self.net.app.sessions.sessions), 0)
        self.assertNotIn("172.22.1.9", self.net.app.show_ip_nat_translations())


class SmtpRestartTests(RestartCase):
    """An outside client to the inside mail server through the static
    translation, inspected by ``ip inspect name OUT-IN smtp``."""

    def setUp(self):
        RestartCase.setUp(self)
        self.log = []
        self.srv = self.net.host(INSIDE, SERVER_IP, 25)
        self.srv.listen(25, smtp_server(self.log))
        self.cli = self.net.host(OUTSIDE, OUTSIDE_HOST, 1)
        self.c = self.cli.connect("172.22.1.16", 25)
        self.net.pump()
        self.assertEqual(bytes(self.c.data), b"220 mx.example.com ESMTP\r\n")
        self.say(b"HELO client\r\n")

    def say(self, data):
        self.c.send(data)
        self.net.pump()

    def executed(self):
        return [x[1] for x in self.log if x[0] == "CMD"]

    def test_between_commands_resumed(self):
        """Killed between two commands: the conversation goes on, still
        inspected (a forbidden verb after the restore never reaches the
        server)."""
        self.net.clock.advance(1.5)          # the periodic inspector save
        self.kill_and_start()
        self.assertTrue(any("1 inspectors resumed" in l for l in self.logs), self.logs)
        self.say(b"MAIL FROM:<a@example.com>\r\n")
        self.say(b"RCPT TO:<b@example.com>\r\n")
        self.say(b"DATA\r\n")
        self.say(b"Subject: hi\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(self.executed(), ["HELO", "MAIL", "RCPT", "DATA"])
        self.assertIn(("BODY", b"Subject: hi\r\n\r\nbody\r\n"), self.log)
        self.assertFalse(self.c.reset)
        self.say(b"WIZ\r\n")
        self.c.retransmit()
        self.net.pump()
        self.assertNotIn("WIZ", self.executed())

    def test_mid_data_reset(self):
        """Killed in the middle of DATA: the inspector cannot be resumed;
        the first packet after the restore resets both ends (log line), and
        nothing passes uninspected."""
        self.say(b"MAIL FROM:<a@example.com>\r\n")
        self.say(b"RCPT TO:<b@example.com>\r\n")
        self.say(b"DATA\r\n")
        self.say(b"Subject: hi\r\n\r\npart")
        self.net.clock.advance(1.5)
        self.kill_and_start()
        self.assertTrue(any("1 to be reset on their next packet" in l for l in self.logs))
        self.say(b" two\r\n.\r\n")
        self.assertTrue(self.c.reset)
        [sconn] = self.srv.conns.values()
        self.assertTrue(sconn.reset)
        self.assertTrue(any("RESTORE_RESET" in l and "reset on its first packet" in l
                            for l in self.logs), self.logs)
        self.assertNotIn(("BODY", b"Subject: hi\r\n\r\npart two\r\n"), self.log)

    def test_stale_inspector_state_reset(self):
        """Bytes inspected after the last save (killed before the periodic
        save): the resume notices the stream moved on and resets."""
        self.net.clock.advance(1.5)
        self.say(b"MAIL FROM:<a@example.com>\r\n")   # after the save
        self.net.clock.advance(FLUSH_DELAY * 2)
        self.kill_and_start()
        self.say(b"RCPT TO:<b@example.com>\r\n")
        self.assertTrue(self.c.reset)
        self.assertNotIn("RCPT", self.executed())


class GuardedUdpRestartTests(RestartCase):
    """A UDP session carrying a guard (here SIP; DNS and TFTP alike) is not
    restored: restored without its guard it would pass SIP unrewritten
    and uninspected."""

    extra = "ip inspect name IN-OUT sip"

    def test_sip_session_not_restored_as_plain_udp(self):
        from tests.test_sip import msg
        cli = self.net.host(INSIDE, INSIDE_HOST, 5)
        srv = self.net.host(OUTSIDE, OUTSIDE_HOST, 9)
        reg = msg("REGISTER sip:r.example.com SIP/2.0", INSIDE_HOST, call_id="r1",
                  cseq="1 REGISTER", contact="a@%s:5060" % INSIDE_HOST)
        cli.send_udp(OUTSIDE_HOST, 5060, 5060, reg)
        self.net.pump()
        self.assertEqual(len(srv.udp), 1)
        self.assertIn(" sip ", self.net.show("sessions"))
        self.kill_and_start()
        self.assertNotIn(" sip ", self.net.show("sessions"))
        inv = msg("INVITE sip:a@172.22.1.16:5060 SIP/2.0", OUTSIDE_HOST, call_id="i1")
        n = len(cli.udp)
        srv.send_udp("172.22.1.16", 5060, 5060, inv)
        self.net.pump()
        self.assertEqual(len(cli.udp), n)


class DamagedStateTests(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cbac-cont-")
        self.addCleanup(_rmtree, self.dir)
        self.logs = capture(self)

    def _saved(self):
        """A state directory holding one PAT session (journal only)."""
        net = Net(nat=True)
        net.app.state_dir = self.dir
        net.app.start_continuity()
        srv = net.host(OUTSIDE, OUTSIDE_HOST, 9)
        srv.listen(5001, Recorder)
        cli = net.host(INSIDE, INSIDE_HOST, 5)
        cli.connect(OUTSIDE_HOST, 5001)
        net.pump()
        net.clock.advance(FLUSH_DELAY * 2)
        net.app.continuity.journal.close()
        net.app.continuity.running = False
        net.stop()
        return os.path.join(self.dir, J.JOURNAL), os.path.join(self.dir, J.SNAPSHOT)

    def _start(self):
        model, _ = parse_config(NAT_CONFIG.format(extra=""))
        ports = {INSIDE: MemoryPort(INSIDE, R_IN), OUTSIDE: MemoryPort(OUTSIDE, R_OUT)}
        from twisted.internet.task import Clock
        app = Appliance(model, Clock(), ports, state_dir=self.dir)
        c = app.start_continuity()
        self.addCleanup(c.stop, False)
        self.addCleanup(app.sessions.stop)
        self.addCleanup(app.nat.stop)
        return app

    def test_intact(self):
        self._saved()
        self.assertEqual(len(self._start().sessions.sessions), 1)

    def test_truncated_last_record(self):
        """A journal cut in the middle of its last record (the process died
        while writing): that record is ignored with a log line, the rest is
        restored."""
        jpath, _ = self._saved()
        with open(jpath, "ab") as f:
            f.write(J.encode_line({"k": "D", "id": 1})[:-7])
        app = self._start()
        self.assertEqual(len(app.sessions.sessions), 1)
        self.assertTrue(any("half-written" in l for l in self.logs))

    def test_truncated_inside(self):
        """A journal cut anywhere: never prevents a start."""
        jpath, _ = self._saved()
        data = open(jpath, "rb").read()
        for cut in (0, 5, len(data) // 2, len(data) - 1):
            with open(jpath, "wb") as f:
                f.write(data[:cut])
            app = self._start()
            self.assertLessEqual(len(app.sessions.sessions), 1)
            app.continuity.stop(False)
            app.continuity = None
            with open(jpath, "wb") as f:
                f.write(data)

    def test_corrupt_middle_moved_aside(self):
        """A damaged record before the end: the files are moved aside with a
        log line and cbac starts empty."""
        jpath, spath = self._saved()
        lines = open(jpath, "rb").read().split(b"\n")
        lines[1] = lines[1].replace(b'"k"', b'"K"', 1)
        lines.append(J.encode_line({"k": "U", "h": 1}).rstrip(b"\n"))
        with open(jpath, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        app = self._start()
        self.assertEqual(len(app.sessions.sessions), 0)
        aside = [n for n in os.listdir(self.dir) if ".bad-" in n]
        self.assertTrue(any(n.startswith("state.journal.bad-") for n in aside), aside)
        self.assertTrue(any("moved aside" in l for l in self.logs))
        self.assertTrue(any("starting without saved sessions" in l for l in self.logs))

    def test_garbage_snapshot(self):
        _, spath = self._saved()
        with open(spath, "wb") as f:
            f.write(b"\x00\xffnot a state file\n")
        app = self._start()
        self.assertEqual(len(app.sessions.sessions), 0)
        self.assertTrue(any(n.startswith("state.snapshot.bad-") for n in os.listdir(self.dir)))

    def test_newer_version_refused(self):
        """A state written by a newer cbac (format version 2) is not
        half-understood: moved aside, empty start."""
        jpath, spath = self._saved()
        lines = open(spath, "rb").read().split(b"\n")
        head = J.decode_line(lines[0])
        head["cbac-state"] = 99
        lines[0] = J.encode_line(head).rstrip(b"\n")
        with open(spath, "wb") as f:
            f.write(b"\n".join(lines))
        app = self._start()
        self.assertEqual(len(app.sessions.sessions), 0)
        self.assertTrue(any("version 99" in l for l in self.logs))

    def test_hostile_record_values(self):
        """A well-formed record with hostile values (a huge port, a string
        where a number belongs): that record is refused, cbac starts."""
        jpath, _ = self._saved()
        lines = open(jpath, "rb").read().split(b"\n")
        for i, line in enumerate(lines):
            if line and J.decode_line(line).get("k") == "S":
                rec = J.decode_line(line)
                rec["ci"][2] = 70000
                lines[i] = J.encode_line(rec).rstrip(b"\n")
        with open(jpath, "wb") as f:
            f.write(b"\n".join(lines))
        app = self._start()
        self.assertEqual(len(app.sessions.sessions), 0)
        self.assertTrue(any("unreadable" in l for l in self.logs))

    def test_translation_rule_gone(self):
        """The NAT rule of a saved PAT translation is no longer configured:
        the translation and its session are not restored (log lines)."""
        jpath, _ = self._saved()
        lines = open(jpath, "rb").read().split(b"\n")
        for i, line in enumerate(lines):
            if line and J.decode_line(line).get("k") == "T":
                rec = J.decode_line(line)
                rec["rule"]["acl"] = "99"
                lines[i] = J.encode_line(rec).rstrip(b"\n")
        with open(jpath, "wb") as f:
            f.write(b"\n".join(lines))
        app = self._start()
        self.assertEqual(len(app.sessions.sessions), 0)
        self.assertNotIn("172.22.1.9", app.show_ip_nat_translations())
        self.assertTrue(any("rule of this translation is no longer configured" in l
                            for l in self.logs), self.logs)
        self.assertTrue(any("its NAT translation was not restored" in l for l in self.logs))

    def test_older_journal_generation_ignored(self):
        """Compaction died after the new snapshot, before the new journal:
        the old journal (its records are in the snapshot) is ignored."""
        jpath, spath = self._saved()
        old = open(jpath, "rb").read()
        app = self._start()
        app.continuity.stop(clean=True)
        app.continuity = None
        with open(jpath, "wb") as f:
            f.write(old)
        app2 = self._start()
        self.assertEqual(len(app2.sessions.sessions), 1)


class FtpRestartTests(RestartCase):
    """An outside client to the inside FTP server (static NAT, port 21);
    PASV opened a pinhole for the data channel before the kill."""

    def setUp(self):
        RestartCase.setUp(self)
        from tests.hosts import ftp_server
        self.log = []
        self.srv = self.net.host(INSIDE, SERVER_IP, 25)
        self.srv.listen(21, ftp_server(self.log))
        self.data_app = Recorder()
        self.srv.listen(50000, lambda: self.data_app)
        self.cli = self.net.host(OUTSIDE, "172.22.1.1", 1)
        self.c = self.cli.connect("172.22.1.16", 21, sport=40021)
        self.net.pump()
        self.say(b"USER ftp\r\n")
        self.say(b"PASS x\r\n")
        self.say(b"PASV\r\n")
        self.assertIn(b"227 ", bytes(self.c.data))
        self.assertEqual(len(self.net.app.sessions.pinholes), 1)

    def say(self, data):
        self.c.send(data)
        self.net.pump()

    def data_conns(self):
        return [c for c in self.srv.conns.values() if c.lport == 50000]

    def test_pinhole_not_restored_control_reset(self):
        """After a kill and start the pinhole is gone, not an open door:
        the data connection it expected is refused (before and after the
        control session's next packet); the control session is reset on
        its next packet (both ends get an RST, the command never reaches
        the server), with log lines that say the pinholes are lost."""
        self.kill_and_start()
        self.assertEqual(self.net.app.sessions.pinholes, [])
        self.assertTrue(any("RESTORE_RESET" in l and "will be reset on its next packet" in l
                            and "pinholes it had opened are not restored" in l
                            for l in self.logs), self.logs)
        d = self.cli.connect("172.22.1.16", 50000, sport=40022)
        self.net.pump()
        self.assertEqual(d.state, "SYN_SENT")
        self.assertEqual(self.data_conns(), [])
        self.say(b"NOOP\r\n")
        self.assertTrue(self.c.reset)
        [ctl] = [c for c in self.srv.conns.values() if c.lport == 21]
        self.assertTrue(ctl.reset)
        self.assertNotIn("NOOP", [x[0] for x in self.log])
        self.assertTrue(any("RESTORE_RESET" in l and "reset on its first packet" in l
                            for l in self.logs), self.logs)
        d2 = self.cli.connect("172.22.1.16", 50000, sport=40023)
        self.net.pump()
        self.net.advance(3)
        self.assertEqual(d2.state, "SYN_SENT")
        self.assertEqual(self.data_conns(), [])
        self.assertEqual(len(self.net.app.sessions.sessions), 0)
