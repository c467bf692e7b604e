"""FTP inspector (cbac.inspect.ftp): commands, replies, checks, NAT rewrite,
pinholes, in every segmentation."""

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from cbac.inspect import ftp
from cbac.inspect.api import CLIENT, SERVER, Expectation, IInspectorFactory, InspectContext


class Engine:
    def __init__(self, inspector):
        self.insp = inspector
        self.inp = [bytearray(), bytearray()]
        self.rel = [0, 0]
        self.edits = [[], []]
        self.expect = []
        self.log = []
        self.debug = []
        self.reset = False
        self.opaque = False
        self.reasons = []

    def feed(self, direction, data):
        if self.reset:
            return
        if self.opaque:
            self.inp[direction] += data
            self.rel[direction] = len(self.inp[direction])
            return
        self.inp[direction] += data
        v = self.insp.data_received(direction, data)
        self._apply(direction, v)

    def close(self, direction):
        if self.reset or self.opaque:
            return
        v = self.insp.connection_closed(direction)
        if v is not None:
            self._apply(direction, v)

    def _apply(self, d, v):
        total = len(self.inp[d])
        rel = total if v.release is None else v.release
        assert self.rel[d] <= rel <= total, (self.rel[d], rel, total)
        for e in v.edits:
            assert e.offset >= self.rel[d], ("edit of released bytes", e, self.rel[d])
            assert e.offset + e.length <= total, ("edit past fed bytes", e, total)
            for o in self.edits[d]:
                assert e.offset >= o.offset + o.length or e.offset + e.length <= o.offset, \
                    ("overlapping edits", e, o)
            self.edits[d].append(e)
        self.rel[d] = rel
        self.expect.extend(v.expect)
        self.log.extend(v.log)
        self.debug.extend(v.debug)
        if v.reset:
            self.reset = True
            self.reasons.append(v.reason)
        if v.opaque:
            self.opaque = True
            for x in (CLIENT, SERVER):
                self.rel[x] = len(self.inp[x])

    def output(self, d):
        """What the receiver of direction ``d`` got (released bytes, edited)."""
        src = bytes(self.inp[d])
        rel = self.rel[d]
        out = bytearray()
        pos = 0
        for e in sorted(self.edits[d], key=lambda e: e.offset):
            if e.offset >= rel:
                break
            assert e.offset + e.length <= rel, ("edit straddles release point", e, rel)
            out += src[pos:e.offset]
            out += e.data
            pos = e.offset + e.length
        out += src[pos:rel]
        return bytes(out)

    def held(self, d):
        return len(self.inp[d]) - self.rel[d]

    def messages(self):
        return ["%%%s-%d-%s: %s" % m for m in self.log]


def run(factory, transcript, splits=None, close=False):
    """Feed ``transcript`` (list of (direction, bytes)); ``splits`` maps an
    item index to a sorted list of cut points inside it.  ``splits == 1``
    feeds one byte at a time."""
    eng = Engine(factory())
    for i, (d, data) in enumerate(transcript):
        if splits == 1:
            cuts = list(range(1, len(data)))
        elif splits:
            cuts = sorted(set(c for c in splits.get(i, ()) if 0 < c < len(data)))
        else:
            cuts = []
        prev = 0
        for c in cuts + [len(data)]:
            eng.feed(d, data[prev:c])
            prev = c
    if close:
        eng.close(CLIENT)
        eng.close(SERVER)
    return eng


def ip(s):
    a, b, c, d = (int(x) for x in s.split("."))
    return a << 24 | b << 16 | c << 8 | d


CLI = ip("10.10.10.2")
SRV = ip("172.22.1.5")
GLOBAL = ip("172.22.1.16")


def ctx(nat=None, debug=False):
    c = InspectContext(client_addr=CLI, client_port=40000, server_addr=SRV, server_port=21,
                       debug=debug)
    if nat is not None:
        c.nat_map = nat
    return c


def pat(direction, proto, addr, port):
    """Inside client 10.10.10.2 translated to 172.22.1.16, ports +1000."""
    assert proto == "tcp"
    if direction == CLIENT and addr == CLI:
        return GLOBAL, port + 1000 if port < 60000 else port - 1000
    return addr, port


def make(nat=None, debug=False):
    return lambda: ftp.factory(ctx(nat, debug))


LOGIN = [(SERVER, b"220 (vsFTPd 3.0.3)\r\n"),
         (CLIENT, b"USER ftptest\r\n"),
         (SERVER, b"331 Please specify the password.\r\n"),
         (CLIENT, b"PASS ftptest\r\n"),
         (SERVER, b"230 Login successful.\r\n")]

SESSION = LOGIN + [
    (CLIENT, b"PORT 10,10,10,2,195,80\r\n"),
    (SERVER, b"200 PORT command successful. Consider using PASV.\r\n"),
    (CLIENT, b"RETR 1M.bin\r\n"),
    (SERVER, b"150 Opening BINARY mode data connection for 1M.bin (1048576 bytes).\r\n"),
    (SERVER, b"226 Transfer complete.\r\n"),
    (CLIENT, b"PASV\r\n"),
    (SERVER, b"227 Entering Passive Mode (172,22,1,5,156,64).\r\n"),
    (CLIENT, b"EPSV\r\n"),
    (SERVER, b"229 Entering Extended Passive Mode (|||40001|)\r\n"),
    (CLIENT, b"EPRT |1|10.10.10.2|50000|\r\n"),
    (SERVER, b"200 EPRT command successful.\r\n"),
    (CLIENT, b"pasv\r\n"),
    (SERVER, b"227 Entering Passive Mode 172,22,1,5,156,65\r\n"),
    (CLIENT, b"QUIT\r\n"),
    (SERVER, b"221 Goodbye.\r\n"),
]


def joined(transcript, d):
    return b"".join(x for dd, x in transcript if dd == d)


class PlainSessionTests(unittest.TestCase):
    def test_session_passes_unchanged_and_opens_one_pinhole_each(self):
        eng = run(make(), SESSION)
        self.assertEqual(eng.output(CLIENT), joined(SESSION, CLIENT))
        self.assertEqual(eng.output(SERVER), joined(SESSION, SERVER))
        self.assertEqual(eng.log, [])
        self.assertFalse(eng.reset)
        self.assertEqual(eng.expect, [
            Expectation("tcp", SRV, None, CLI, 195 * 256 + 80, 30.0, "ftp-data"),
            Expectation("tcp", CLI, None, SRV, 156 * 256 + 64, 30.0, "ftp-data"),
            Expectation("tcp", CLI, None, SRV, 40001, 30.0, "ftp-data"),
            Expectation("tcp", SRV, None, CLI, 50000, 30.0, "ftp-data"),
            Expectation("tcp", CLI, None, SRV, 156 * 256 + 65, 30.0, "ftp-data"),
        ])
        self.assertEqual(eng.insp.state_summary(), "FTP state: authenticated, data channels 5")

    def test_factory_provides_interface(self):
        self.assertTrue(IInspectorFactory.providedBy(ftp.factory))
        self.assertEqual(ftp.factory.name, "ftp")

    def test_login_states(self):
        eng = run(make(), LOGIN[:2])
        self.assertEqual(eng.insp.state_summary(), "FTP state: USER sent, data channels 0")
        eng = run(make(), LOGIN[:4] + [(SERVER, b"530 Login incorrect.\r\n")])
        self.assertEqual(eng.insp.state_summary(), "FTP state: login failed, data channels 0")
        # multi-line 230
        eng = run(make(), LOGIN[:4] + [(SERVER, b"230-Welcome\r\n230-more\r\n230 OK\r\n")])
        self.assertEqual(eng.insp.state_summary(), "FTP state: authenticated, data channels 0")

    def test_state_table(self):
        """The login states and transitions are the table at the top of
        cbac/inspect/ftp.py; a change outside it raises (the engine resets
        the session); TLS is final and keeps the login state shown."""
        from cbac.inspect.fsm import IllegalTransition
        eng = run(make(), LOGIN)
        insp = eng.insp
        self.assertIs(insp.state, ftp.AUTHENTICATED)
        self.assertRaises(IllegalTransition, insp._go, ftp.LOGIN_FAILED)
        self.assertRaises(IllegalTransition, insp._go, ftp.USER_SENT)
        self.assertIs(insp.state, ftp.AUTHENTICATED)
        eng.feed(CLIENT, b"AUTH TLS\r\n")
        eng.feed(SERVER, b"234 go ahead\r\n")
        self.assertIs(insp.state, ftp.TLS)
        self.assertEqual(insp.state_summary(), "FTP state: authenticated, data channels 0")
        for state in ftp.TRANSITIONS:
            if state is not ftp.TLS:
                self.assertRaises(IllegalTransition, insp._go, state)

    def test_incomplete_data_command_is_held_until_complete(self):
        eng = Engine(make()())
        for d, x in LOGIN:
            eng.feed(d, x)
        eng.feed(CLIENT, b"PORT 10,10,10,2,19")
        self.assertEqual(eng.held(CLIENT), len(b"PORT 10,10,10,2,19"))
        self.assertEqual(eng.expect, [])
        eng.feed(CLIENT, b"5,80\r")
        self.assertEqual(eng.held(CLIENT), len(b"PORT 10,10,10,2,195,80\r"))
        eng.feed(CLIENT, b"\n")
        self.assertEqual(eng.held(CLIENT), 0)
        self.assertEqual(len(eng.expect), 1)
        # server: 227 held, other replies not
        eng.feed(SERVER, b"22")
        self.assertEqual(eng.held(SERVER), 2)
        eng.feed(SERVER, b"0 x")
        self.assertEqual(eng.held(SERVER), 0)
        eng.feed(SERVER, b"\r\n227 (172,22,1,5,4,1")
        self.assertEqual(eng.held(SERVER), len(b"227 (172,22,1,5,4,1"))
        eng.feed(SERVER, b")\r\n")
        self.assertEqual(eng.held(SERVER), 0)

    def test_other_commands_are_not_held(self):
        eng = run(make(), LOGIN + [(CLIENT, b"RETR some-file-na")])
        self.assertEqual(eng.held(CLIENT), 0)
        eng = run(make(), LOGIN + [(CLIENT, b"STOR x")])
        self.assertEqual(eng.held(CLIENT), 0)

    def test_unterminated_line_at_close_is_judged(self):
        eng = run(make(), LOGIN + [(CLIENT, b"PORT 1,2,3,4,4,1")], close=True)
        self.assertEqual(eng.output(CLIENT)[-16:], b"x" * 16)
        self.assertEqual(eng.expect, [])
        self.assertEqual(eng.held(CLIENT), 0)

    def test_auth_tls_stops_inspection(self):
        tls = b"\x16\x03\x01\x02\x00PORT 1,2,3,4,0,21\r\n" + b"P" * 600
        tr = [(SERVER, b"220 ready\r\n"), (CLIENT, b"AUTH TLS\r\n"),
              (SERVER, b"234 Proceed with negotiation.\r\n"), (CLIENT, tls), (SERVER, tls)]
        eng = run(make(), tr)
        self.assertTrue(eng.opaque)
        self.assertEqual((eng.output(CLIENT), eng.output(SERVER)), (joined(tr, CLIENT), joined(tr, SERVER)))
        self.assertEqual((eng.log, eng.expect), ([], []))
        # AUTH refused: inspection goes on
        tr = [(SERVER, b"220 ready\r\n"), (CLIENT, b"AUTH TLS\r\n"), (SERVER, b"504 no\r\n")] + LOGIN[1:]
        eng = run(make(), tr + [(CLIENT, b"PORT 1,2,3,4,0,21\r\n")])
        self.assertFalse(eng.opaque)
        self.assertEqual(len(eng.log), 1)

    def test_debug_lines(self):
        eng = run(make(debug=True), SESSION[:7])
        self.assertIn("CBAC FTP: login successful (230)", eng.debug)
        self.assertTrue(any(l.startswith("CBAC FTP: PORT command: data channel 172.22.1.5 -> "
                                         "10.10.10.2:50000 opened for 30s") for l in eng.debug),
                        eng.debug)
        eng = run(make(debug=False), SESSION)
        self.assertEqual(eng.debug, [])


TAIL = "-- FTP client 10.10.10.2 FTP server 172.22.1.5"


class RefusalTests(unittest.TestCase):
    def refused_command(self, line, log, pre=LOGIN):
        eng = run(make(), pre + [(CLIENT, line), (SERVER, b"500 Unknown command.\r\n")])
        out = eng.output(CLIENT)
        body = line.rstrip(b"\r\n")
        self.assertEqual(out[-len(line):], b"x" * len(body) + line[len(body):])
        self.assertEqual(len(out), len(joined(pre, CLIENT)) + len(line))
        self.assertEqual(eng.expect, [])
        self.assertEqual(eng.messages(), [log])
        self.assertFalse(eng.reset)
        return eng

    def test_bounce_third_host(self):
        self.refused_command(
            b"PORT 192,168,7,7,4,1\r\n",
            "%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 192.168.7.7 used in "
            "PORT command " + TAIL)

    def test_bounce_to_port_21(self):
        self.refused_command(
            b"PORT 172,22,1,99,0,21\r\n",
            "%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 172.22.1.99 used in "
            "PORT command " + TAIL)

    def test_eprt_bounce(self):
        self.refused_command(
            b"EPRT |1|172.22.1.99|21|\r\n",
            "%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 172.22.1.99 used in "
            "EPRT command " + TAIL)

    def test_privileged_port(self):
        self.refused_command(
            b"PORT 10,10,10,2,0,21\r\n",
            "%FW-3-FTP_PRIV_PORT: Privileged port 21 used in PORT command " + TAIL)
        self.refused_command(
            b"EPRT |1|10.10.10.2|1023|\r\n",
            "%FW-3-FTP_PRIV_PORT: Privileged port 1023 used in EPRT command " + TAIL)

    def test_data_commands_before_login(self):
        log = ("%FW-3-FTP_SESSION_NOT_AUTHENTICATED: Command issued before the session "
               "is authenticated -- FTP client 10.10.10.2")
        for line in (b"PORT 10,10,10,2,195,80\r\n", b"EPRT |1|10.10.10.2|5000|\r\n",
                     b"PASV\r\n", b"EPSV\r\n"):
            self.refused_command(line, log, pre=LOGIN[:4])
            self.refused_command(line, log, pre=LOGIN[:4] + [(SERVER, b"530 Login incorrect.\r\n")])

    def test_bad_forms(self):
        for line, what in ((b"PORT 10,10,10,2,4\r\n", "PORT command"),
                           (b"PORT 10,10,10,2,4,1,1\r\n", "PORT command"),
                           (b"PORT 10,10,10,256,4,1\r\n", "PORT command"),
                           (b"PORT 10,10,10,2,4,1000\r\n", "PORT command"),
                           (b"PORT\r\n", "PORT command"),
                           (b"EPRT |2|::1|5000|\r\n", "EPRT command"),
                           (b"EPRT |1|010.10.10.2|5000|\r\n", "EPRT command"),
                           (b"EPRT |1|10.10.10.2|70000|\r\n", "EPRT command"),
                           (b"EPRT |1|10.10.10.2|5000\r\n", "EPRT command")):
            self.refused_command(line, "%%FW-3-FTP_MALFORMED: Malformed %s %s" % (what, TAIL))

    def test_telnet_iac_cannot_hide_a_command(self):
        self.refused_command(
            b"\xff\xf4\xff\xf2PORT 172,22,1,99,0,21\r\n",
            "%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 172.22.1.99 used in "
            "PORT command " + TAIL)
        self.refused_command(
            b"  port\t172,22,1,99,0,21\r\n",
            "%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 172.22.1.99 used in "
            "PORT command " + TAIL)

    def test_bare_cr_cannot_hide_a_command(self):
        # A bare CR ends a command line (some servers split there), so the
        # PORT after it is judged as a command of its own.
        line = b"NOOP\rPORT 172,22,1,99,0,21\r\n"
        eng = run(make(), LOGIN + [(CLIENT, line)])
        self.assertTrue(eng.output(CLIENT).endswith(b"NOOP\r" + b"x" * 21 + b"\r\n"))
        self.assertEqual(eng.messages(), [
            "%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 172.22.1.99 used in "
            "PORT command " + TAIL])
        # CR NUL is a CR inside a path name (RFC 2640), not a line end
        eng = run(make(), LOGIN + [(CLIENT, b"RETR a\r\x00PORT 172,22,1,99,0,21\r\n")])
        self.assertEqual(eng.log, [])
        # a valid PORT after a bare CR opens its pinhole
        eng = run(make(), LOGIN + [(CLIENT, b"NOOP\rPORT 10,10,10,2,195,80\r\n")])
        self.assertEqual(len(eng.expect), 1)

    def refused_reply(self, line, log, pre=LOGIN + [(CLIENT, b"PASV\r\n")]):
        eng = run(make(), pre + [(SERVER, line)])
        out = eng.output(SERVER)[-len(line):]
        self.assertEqual(len(out), len(line))
        self.assertTrue(out.startswith(b"425 "), out)
        self.assertTrue(out.endswith(b"\r\n"))
        self.assertEqual(eng.expect, [])
        self.assertEqual(eng.messages(), [log])
        return out

    def test_pasv_reply_third_host(self):
        out = self.refused_reply(
            b"227 Entering Passive Mode (192,168,7,7,156,64).\r\n",
            "%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 192.168.7.7 used in "
            "PASV reply " + TAIL)
        self.assertEqual(out, b"425 Can't open data connection.                \r\n")

    def test_pasv_reply_privileged(self):
        self.refused_reply(b"227 Entering Passive Mode (172,22,1,5,0,22).\r\n",
                           "%FW-3-FTP_PRIV_PORT: Privileged port 22 used in PASV reply " + TAIL)
        self.refused_reply(b"229 Entering Extended Passive Mode (|||80|)\r\n",
                           "%FW-3-FTP_PRIV_PORT: Privileged port 80 used in EPSV reply " + TAIL)

    def test_reply_before_login(self):
        self.refused_reply(b"227 Entering Passive Mode (172,22,1,5,156,64).\r\n",
                           "%FW-3-FTP_SESSION_NOT_AUTHENTICATED: Command issued before the "
                           "session is authenticated -- FTP client 10.10.10.2",
                           pre=LOGIN[:4])

    def test_bad_replies(self):
        for line, what in ((b"227 (172,22,1,5,156,64) (172,22,1,5,156,65)\r\n", "PASV reply"),
                           (b"227 Entering Passive Mode\r\n", "PASV reply"),
                           (b"227 (172,22,1,500,156,64)\r\n", "PASV reply"),
                           (b"229 Entering Extended Passive Mode (||40001|)\r\n", "EPSV reply"),
                           (b"229 (|||70000|)\r\n", "EPSV reply")):
            self.refused_reply(line, "%%FW-3-FTP_MALFORMED: Malformed %s %s" % (what, TAIL))

    def test_text_inside_multiline_reply_is_not_a_reply(self):
        tr = LOGIN + [(SERVER, b"211-Status\r\n227 (192,168,7,7,0,21)\r\n211 End\r\n")]
        eng = run(make(), tr)
        self.assertEqual(eng.output(SERVER), joined(tr, SERVER))
        self.assertEqual(eng.expect, [])
        self.assertEqual(eng.log, [])

    def test_overlong_held_line_is_masked(self):
        line = b"PORT " + b"1" * 600 + b"\r\n"
        eng = run(make(), LOGIN + [(CLIENT, line[:300]), (CLIENT, line[300:])])
        out = eng.output(CLIENT)[-len(line):]
        self.assertEqual(out.rstrip(b"\r\n").strip(b"x"), b"")
        self.assertEqual(out[-1:], b"\n")
        self.assertEqual(eng.held(CLIENT), 0)
        self.assertEqual(eng.expect, [])
        self.assertEqual(eng.messages(), ["%FW-3-FTP_MALFORMED: Overlong command line " + TAIL])
        # the session goes on normally afterwards
        eng.feed(CLIENT, b"PORT 10,10,10,2,195,80\r\n")
        self.assertEqual(len(eng.expect), 1)


class NatTests(unittest.TestCase):
    def test_port_rewrite_changes_length(self):
        tr = LOGIN + [(CLIENT, b"PORT 10,10,10,2,195,80\r\n")]
        eng = run(make(pat), tr)
        off = len(joined(LOGIN, CLIENT))
        self.assertEqual(len(eng.edits[CLIENT]), 1)
        e = eng.edits[CLIENT][0]
        self.assertEqual((e.offset, e.length), (off, len(b"PORT 10,10,10,2,195,80")))
        # port 50000 -> 51000 = 199*256 + 56
        self.assertEqual(e.data, b"PORT 172,22,1,16,199,56")
        self.assertEqual(eng.output(CLIENT)[off:], b"PORT 172,22,1,16,199,56\r\n")
        self.assertEqual(eng.expect, [Expectation("tcp", SRV, None, GLOBAL, 51000, 30.0, "ftp-data")])
        self.assertEqual(eng.log, [])

    def test_eprt_rewrite(self):
        tr = LOGIN + [(CLIENT, b"EPRT !1!10.10.10.2!50000!\r\n")]
        eng = run(make(pat), tr)
        off = len(joined(LOGIN, CLIENT))
        self.assertEqual(eng.output(CLIENT)[off:], b"EPRT |1|172.22.1.16|51000|\r\n")
        self.assertEqual(eng.expect, [Expectation("tcp", SRV, None, GLOBAL, 51000, 30.0, "ftp-data")])

    def static_nat_ctx(self, own=False):
        """Outside client 198.51.100.7 reaching an inside server 10.0.0.5
        published as 192.168.100.200 (ip nat inside source static), as the
        engine builds the context: server_addr is the server as the client
        addresses it; server_own_addr (optional) the server's own address."""
        local, glob = ip("10.0.0.5"), ip("192.168.100.200")

        def static(direction, proto, addr, port):
            if direction == SERVER and addr == local:
                return glob, port
            return addr, port

        c = InspectContext(client_addr=ip("198.51.100.7"), client_port=5555, server_addr=glob,
                           server_port=21, nat_map=static)
        if own:
            c.server_own_addr = local
        return c, local, glob

    def test_pasv_reply_rewrite_server_behind_static_nat(self):
        for own in (False, True):
            c, local, glob = self.static_nat_ctx(own)
            line = b"227 Entering Passive Mode (10,0,0,5,156,64).\r\n"
            tr = LOGIN + [(CLIENT, b"PASV\r\n"), (SERVER, line)]
            eng = run(lambda: ftp.factory(c), tr)
            off = len(joined(LOGIN, SERVER)) + len(b"227 Entering Passive Mode (")
            self.assertEqual(len(eng.edits[SERVER]), 1)
            e = eng.edits[SERVER][0]
            self.assertEqual((e.offset, e.length, e.data),
                             (off, len(b"10,0,0,5,156,64"), b"192,168,100,200,156,64"))
            self.assertTrue(eng.output(SERVER).endswith(
                b"227 Entering Passive Mode (192,168,100,200,156,64).\r\n"))
            self.assertEqual(eng.expect, [Expectation("tcp", ip("198.51.100.7"), None, glob,
                                                      156 * 256 + 64, 30.0, "ftp-data")])
            self.assertEqual(eng.log, [])
            # a server configured to announce its public address passes unchanged
            line = b"227 Entering Passive Mode (192,168,100,200,156,64).\r\n"
            eng = run(lambda: ftp.factory(c), LOGIN + [(CLIENT, b"PASV\r\n"), (SERVER, line)])
            self.assertEqual((eng.edits[SERVER], eng.log, len(eng.expect)), ([], [], 1))
            # a third host is still refused
            line = b"227 Entering Passive Mode (10,0,0,6,156,64).\r\n"
            eng = run(lambda: ftp.factory(c), LOGIN + [(CLIENT, b"PASV\r\n"), (SERVER, line)])
            self.assertEqual([m.split(":")[0] for m in eng.messages()],
                             ["%FW-3-FTP_NON_MATCHING_IP_ADDR"])

    def test_port_pinhole_source_is_the_servers_own_address(self):
        for own, src in ((False, ip("192.168.100.200")), (True, ip("10.0.0.5"))):
            c, local, glob = self.static_nat_ctx(own)
            eng = run(lambda: ftp.factory(c), LOGIN + [(CLIENT, b"PORT 198,51,100,7,195,80\r\n")])
            self.assertEqual(eng.expect, [Expectation("tcp", src, None, ip("198.51.100.7"), 50000,
                                                      30.0, "ftp-data")])

    def test_epsv_port_only(self):
        def portmap(direction, proto, addr, port):
            return (ip("192.0.2.1"), 60000) if direction == SERVER else (addr, port)

        c = ctx(portmap)
        tr = LOGIN + [(CLIENT, b"EPSV\r\n"), (SERVER, b"229 Entering Extended Passive Mode (|||4000|)\r\n")]
        eng = run(lambda: ftp.factory(c), tr)
        self.assertTrue(eng.output(SERVER).endswith(
            b"229 Entering Extended Passive Mode (|||60000|)\r\n"))
        e = eng.edits[SERVER][0]
        self.assertEqual((e.length, e.data), (4, b"60000"))
        self.assertEqual(eng.expect, [Expectation("tcp", CLI, None, ip("192.0.2.1"), 60000,
                                                  30.0, "ftp-data")])

    def test_nat_failure_refuses(self):
        def fail(direction, proto, addr, port):
            raise RuntimeError("pool exhausted")

        tr = LOGIN + [(CLIENT, b"PORT 10,10,10,2,195,80\r\n")]
        eng = run(make(fail, debug=True), tr)
        self.assertEqual(eng.output(CLIENT)[-24:], b"x" * 22 + b"\r\n")
        self.assertEqual(eng.expect, [])
        self.assertTrue(any("NAT translation failed" in l for l in eng.debug))

    def test_no_edit_without_nat(self):
        eng = run(make(), SESSION)
        self.assertEqual(eng.edits, [[], []])


# A transcript exercising everything at once, for the segmentation tests.
MIXED = [(SERVER, b"220-Welcome\r\n220 ready\r\n"),
         (CLIENT, b"PORT 10,10,10,2,195,80\r\n"),           # before login: masked
         (SERVER, b"500 Unknown command.\r\n")] + LOGIN[1:] + [
    (CLIENT, b"PORT 10,10,10,2,195,80\r\nEPRT |1|10.10.10.2|50001|\r\nPASV\r\n"),
    (SERVER, b"200 ok\r\n200 ok\r\n227 Entering Passive Mode (172,22,1,5,156,64).\r\n"),
    (CLIENT, b"EPSV\r\n"),
    (SERVER, b"229 Entering Extended Passive Mode (|||40001|)\r\n"),
    (CLIENT, b"PORT 192,168,7,7,0,21\r\n"),                  # bounce: masked
    (CLIENT, b"\xff\xf4\xff\xf2ABOR\r\nPORT 10,10,10,2,0,80\n"),  # privileged: masked
    (SERVER, b"227 (172,22,1,5,0,21)\r\n"),                  # privileged: 425
    (CLIENT, b"NOOP\rPORT 1,2,3,4,5,6\r\n"),
    (CLIENT, b"QUIT\r\n"),
]


def _mixed_splits():
    return st.dictionaries(st.integers(0, len(MIXED) - 1),
                           st.lists(st.integers(1, 120), max_size=6), max_size=len(MIXED))


class SegmentationTests(unittest.TestCase):
    def result(self, eng):
        return (eng.output(CLIENT), eng.output(SERVER), eng.expect, eng.log,
                eng.held(CLIENT), eng.held(SERVER))

    def test_reference_result(self):
        eng = run(make(pat), MIXED)
        self.assertEqual([m.split(":")[0] for m in eng.messages()],
                         ["%FW-3-FTP_SESSION_NOT_AUTHENTICATED", "%FW-3-FTP_NON_MATCHING_IP_ADDR",
                          "%FW-3-FTP_PRIV_PORT", "%FW-3-FTP_PRIV_PORT",
                          "%FW-3-FTP_NON_MATCHING_IP_ADDR"])
        self.assertEqual(len(eng.expect), 4)
        self.assertEqual((eng.held(CLIENT), eng.held(SERVER)), (0, 0))
        self.assertIn(b"PORT 172,22,1,16,199,56\r\nEPRT |1|172.22.1.16|51001|\r\n",
                      eng.output(CLIENT))

    def test_one_byte_at_a_time(self):
        for nat in (None, pat):
            self.assertEqual(self.result(run(make(nat), MIXED, splits=1)),
                             self.result(run(make(nat), MIXED)))
            self.assertEqual(self.result(run(make(nat), SESSION, splits=1)),
                             self.result(run(make(nat), SESSION)))

    @settings(max_examples=150, deadline=None)
    @given(_mixed_splits())
    def test_any_split_points(self, splits):
        self.assertEqual(self.result(run(make(pat), MIXED, splits=splits)),
                         self.result(run(make(pat), MIXED)))

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=200), st.lists(st.integers(1, 199), max_size=8))
    def test_junk_never_crashes_nor_opens(self, junk, cuts):
        tr = LOGIN + [(CLIENT, junk), (SERVER, junk)]
        eng = run(make(pat), tr, splits={5: cuts, 6: cuts}, close=True)
        for e in eng.expect:
            self.assertIn(e.dst, (GLOBAL, SRV))
            self.assertGreaterEqual(e.dst_port, 1024)
        self.assertEqual((eng.held(CLIENT), eng.held(SERVER)), (0, 0))


class PropertyTests(unittest.TestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.sampled_from([CLI, SRV, ip("10.10.10.3"), ip("0.0.0.0"), ip("255.255.255.255")]),
           st.integers(0, 65535), st.booleans(), st.booleans(), st.integers(1, 30))
    def test_port_and_eprt(self, addr, port, nat, eprt, cut):
        if eprt:
            line = b"EPRT |1|%s|%d|\r\n" % (ftp.ntoa(addr).encode(), port)
        else:
            line = b"PORT %d,%d,%d,%d,%d,%d\r\n" % (addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255,
                                                    addr & 255, port >> 8, port & 255)
        eng = run(make(pat if nat else None), LOGIN + [(CLIENT, line)], splits={5: [cut]})
        out = eng.output(CLIENT)[len(joined(LOGIN, CLIENT)):]
        if addr == CLI and port >= 1024:
            maddr, mport = pat(CLIENT, "tcp", addr, port) if nat else (addr, port)
            self.assertEqual(eng.expect, [Expectation("tcp", SRV, None, maddr, mport, 30.0, "ftp-data")])
            self.assertEqual(eng.log, [])
            if eprt:
                self.assertEqual(out, b"EPRT |1|%s|%d|\r\n" % (ftp.ntoa(maddr).encode(), mport))
            else:
                nums = [int(x) for x in out[5:-2].split(b",")]
                self.assertEqual(nums, [maddr >> 24, (maddr >> 16) & 255, (maddr >> 8) & 255,
                                        maddr & 255, mport >> 8, mport & 255])
        else:
            self.assertEqual(eng.expect, [])
            self.assertEqual(len(eng.log), 1)
            self.assertEqual(out, b"x" * (len(line) - 2) + b"\r\n")

    @settings(max_examples=100, deadline=None)
    @given(st.integers(0, 0xFFFFFFFF), st.integers(0, 65535), st.booleans(), st.integers(1, 40))
    def test_pasv_reply(self, addr, port, parens, cut):
        nums = b"%d,%d,%d,%d,%d,%d" % (addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255,
                                        addr & 255, port >> 8, port & 255)
        line = b"227 Entering Passive Mode " + (b"(" + nums + b")." if parens else nums) + b"\r\n"
        eng = run(make(), LOGIN + [(CLIENT, b"PASV\r\n"), (SERVER, line)], splits={6: [cut]})
        out = eng.output(SERVER)[-len(line):]
        if addr == SRV and port >= 1024:
            self.assertEqual((out, eng.log), (line, []))
            self.assertEqual(eng.expect, [Expectation("tcp", CLI, None, SRV, port, 30.0, "ftp-data")])
        else:
            self.assertTrue(out.startswith(b"425 "))
            self.assertEqual((len(eng.log), eng.expect), (1, []))


# ---------------------------------------------------------------------------
# Live: real clients and servers on loopback, through a TCP relay applying
# the inspector's verdicts exactly as the engine does (release, edits,
# reset, opaque).  The relay works on the byte streams, so it needs no
# sequence-number work; the engine's packet-level work is not tested here.

import ftplib  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

from twisted.internet import defer, protocol, reactor, threads  # noqa: E402


class _Half:
    def __init__(self):
        self.inp = bytearray()
        self.base = 0
        self.fwd = 0
        self.edits = []


class _Relay:
    def __init__(self, owner, front):
        self.owner = owner
        self.front = front
        self.back = None
        self.early = []
        self.h = (_Half(), _Half())
        self.insp = owner.make()
        self.dead = self.opaque = False

    def out(self, d):
        return self.back if d == CLIENT else self.front

    def feed(self, d, data):
        if self.dead:
            return
        if self.opaque:
            self.out(d).write(data)
            return
        self.h[d].inp += data
        self.apply(d, self.insp.data_received(d, data))

    def closed(self, d):
        if not (self.dead or self.opaque):
            v = self.insp.connection_closed(d)
            if v is not None:
                self.apply(d, v)
        for t in (self.front, self.back):
            if t is not None:
                t.loseConnection()

    def apply(self, d, v):
        o = self.owner
        o.log.extend(v.log)
        o.expect.extend(v.expect)
        h = self.h[d]
        h.edits.extend(v.edits)
        total = h.base + len(h.inp)
        rel = total if (v.release is None or v.opaque) else v.release
        out = bytearray()
        pos = h.fwd
        for e in sorted(h.edits, key=lambda e: e.offset):
            if pos <= e.offset < rel:
                out += h.inp[pos - h.base:e.offset - h.base] + e.data
                pos = e.offset + e.length
        out += h.inp[pos - h.base:rel - h.base]
        h.edits = [e for e in h.edits if e.offset >= rel]
        del h.inp[:rel - h.base]
        h.base = h.fwd = rel
        if v.reset:
            self.dead = True
            o.resets.append(v.reason)
            for t in (self.front, self.back):
                if t is not None:
                    t.abortConnection()
            return
        if out:
            self.out(d).write(bytes(out))
        if v.opaque:
            self.opaque = True
            for x in (CLIENT, SERVER):
                hx = self.h[x]
                if hx.inp:
                    self.out(x).write(bytes(hx.inp))
                    del hx.inp[:]


class _Front(protocol.Protocol):
    def connectionMade(self):
        self.relay = _Relay(self.factory.owner, self.transport)
        relay = self.relay

        class Back(protocol.Protocol):
            def connectionMade(self):
                relay.back = self.transport
                for data in relay.early:
                    relay.feed(CLIENT, data)
                relay.early = None

            def dataReceived(self, data):
                relay.feed(SERVER, data)

            def connectionLost(self, reason):
                relay.closed(SERVER)

        protocol.ClientCreator(reactor, Back).connectTCP("127.0.0.1", self.factory.owner.backend)

    def dataReceived(self, data):
        if self.relay.early is not None:
            self.relay.early.append(data)
        else:
            self.relay.feed(CLIENT, data)

    def connectionLost(self, reason):
        self.relay.closed(CLIENT)


class LiveRelay:
    """Listen on 127.0.0.1, relay to 127.0.0.1:backend through an inspector."""

    def __init__(self, testcase, make, backend):
        self.make = make
        self.backend = backend
        self.log, self.expect, self.resets = [], [], []
        f = protocol.ServerFactory()
        f.protocol = _Front
        f.owner = self
        self.port = reactor.listenTCP(0, f, interface="127.0.0.1")
        testcase.addCleanup(self.port.stopListening)

    @property
    def number(self):
        return self.port.getHost().port

    def messages(self):
        return ["%%%s-%d-%s: %s" % m for m in self.log]


LOOP = ip("127.0.0.1")


class LiveFtpTests(unittest.TestCase):
    timeout = 20

    def setUp(self):
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer
        import logging
        lg = logging.getLogger("pyftpdlib")
        if not lg.handlers:                 # keeps pyftpdlib from logging to stderr
            lg.addHandler(logging.NullHandler())
        lg.propagate = False
        self.dir = tempfile.mkdtemp(prefix="cbac-ftp-")
        self.payload = os.urandom(200000)
        with open(os.path.join(self.dir, "f.bin"), "wb") as fh:
            fh.write(self.payload)
        auth = DummyAuthorizer()
        auth.add_user("u", "p", self.dir, perm="elr")
        handler = type("H", (FTPHandler,), {"authorizer": auth})
        self.server = FTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"timeout": 0.05, "handle_exit": False}, daemon=True)
        self.thread.start()
        self.addCleanup(self._stop)
        c = InspectContext(client_addr=LOOP, client_port=0, server_addr=LOOP, server_port=21)
        self.relay = LiveRelay(self, lambda: ftp.factory(c), self.server.address[1])

    def _stop(self):
        self.server.close_all()
        self.thread.join(5)
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    @defer.inlineCallbacks
    def test_real_client_and_server(self):
        port = self.relay.number

        def client():
            f = ftplib.FTP()
            f.connect("127.0.0.1", port, timeout=5)
            replies = {}
            try:
                f.sendcmd("PASV")
            except ftplib.error_perm as e:
                replies["pasv-before-login"] = str(e)
            f.login("u", "p")
            got = []
            f.retrbinary("RETR f.bin", got.append)            # PASV
            f.set_pasv(False)
            got2 = []
            f.retrbinary("RETR f.bin", got2.append)           # PORT
            for name, cmd in (("bounce", "PORT 127,0,0,2,195,80"),
                              ("priv", "PORT 127,0,0,1,0,25")):
                try:
                    f.sendcmd(cmd)
                except ftplib.error_perm as e:
                    replies[name] = str(e)
            f.quit()
            return b"".join(got), b"".join(got2), replies

        a, b, replies = yield threads.deferToThread(client)
        self.assertEqual(a, self.payload)
        self.assertEqual(b, self.payload)
        # refused commands reached the server masked: it did not understand them
        for name in ("pasv-before-login", "bounce", "priv"):
            self.assertTrue(replies[name].startswith("500 "), replies)
        self.assertEqual([m.split(":")[0] for m in self.relay.messages()],
                         ["%FW-3-FTP_SESSION_NOT_AUTHENTICATED", "%FW-3-FTP_NON_MATCHING_IP_ADDR",
                          "%FW-3-FTP_PRIV_PORT"])
        self.assertEqual([(e.src, e.dst) for e in self.relay.expect], [(LOOP, LOOP)] * 2)

    @defer.inlineCallbacks
    def test_curl_all_four_modes(self):
        from twisted.internet import utils
        url = "ftp://u:p@127.0.0.1:%d/f.bin" % self.relay.number
        modes = ([], ["--disable-epsv"], ["--ftp-port", "127.0.0.1"],
                 ["--ftp-port", "127.0.0.1", "--disable-eprt"])
        for extra in modes:
            out, err, code = yield utils.getProcessOutputAndValue(
                "/usr/bin/curl", ["-sS", "--max-time", "10", "-o", "-"] + extra + [url],
                env={"PATH": "/usr/bin:/bin"})
            self.assertEqual((code, err), (0, b""), extra)
            self.assertEqual(out, self.payload, extra)
        self.assertEqual(self.relay.log, [])
        self.assertEqual(len(self.relay.expect), 4)


class LongLineTests(unittest.TestCase):
    def test_long_unheld_lines_use_bounded_memory_and_keep_offsets(self):
        eng = Engine(make(pat)())
        for d, x in LOGIN:
            eng.feed(d, x)
        eng.feed(CLIENT, b"SITE ")
        for _ in range(200):
            eng.feed(CLIENT, b"a" * 1000)
        self.assertLess(len(eng.insp._dirs[CLIENT].buf), 2000)
        self.assertEqual(eng.held(CLIENT), 0)
        eng.feed(CLIENT, b"\r\nPORT 10,10,10,2,195,80\r\n")
        off = len(joined(LOGIN, CLIENT)) + 5 + 200000 + 2
        self.assertEqual(eng.edits[CLIENT][0].offset, off)
        self.assertEqual(eng.output(CLIENT)[off:], b"PORT 172,22,1,16,199,56\r\n")
        # same with a CR that ends the long line at a segment boundary
        eng.feed(CLIENT, b"x" * 3000 + b"\r")
        eng.feed(CLIENT, b"PORT 10,10,10,2,195,81\r\n")
        self.assertTrue(eng.output(CLIENT).endswith(b"x\rPORT 172,22,1,16,199,57\r\n"))
        self.assertEqual(len(eng.expect), 2)


class HeldLineBoundaryTests(unittest.TestCase):
    """A line cbac must hold (a PORT command) is judged whole up to
    MAX_HELD_LINE bytes before its LF; one byte more is masked as overlong.
    Unfinished, it is held up to MAX_HELD_LINE bytes, then masked and
    released.  (Each fails with its comparison flipped.)"""

    def login(self):
        eng = Engine(make()())
        for d, x in LOGIN:
            eng.feed(d, x)
        return eng, len(eng.inp[CLIENT])

    def overlong(self, eng):
        return [e.text for e in eng.log if e.text.startswith("Overlong")]

    def test_complete_line_at_the_limit_is_judged_one_more_is_overlong(self):
        limit = ftp.MAX_HELD_LINE
        eng, _ = self.login()
        eng.feed(CLIENT, b"PORT " + b"1" * (limit - 6) + b"\r\n")     # limit bytes + LF
        self.assertEqual(self.overlong(eng), [])
        eng, _ = self.login()
        eng.feed(CLIENT, b"PORT " + b"1" * (limit - 5) + b"\r\n")
        self.assertEqual(len(self.overlong(eng)), 1)

    def test_unfinished_line_held_up_to_the_limit(self):
        limit = ftp.MAX_HELD_LINE
        eng, start = self.login()
        eng.feed(CLIENT, b"PORT " + b"1" * (limit - 5))               # limit bytes, no LF
        self.assertEqual(eng.rel[CLIENT], start)                       # held
        self.assertEqual(self.overlong(eng), [])
        eng.feed(CLIENT, b"1")
        self.assertEqual(len(self.overlong(eng)), 1)
        self.assertEqual(eng.rel[CLIENT], start + limit + 1)           # released, masked
        self.assertNotIn(b"PORT", eng.output(CLIENT)[start:])
