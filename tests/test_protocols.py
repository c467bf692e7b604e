"""Generic protocol names of ``ip inspect name`` (https, ssh, ntp, isakmp,
...) and the DNS inspector, through the whole appliance on memory ports
with simulated Linux hosts (tests/hosts.py)."""

from twisted.trial import unittest

from cbac.config.parser import parse_config
from tests.apphost import EVE, REMOTE, ApplianceCase, cbac_config
from tests.hosts import OUTSIDE, FramedServer, LineServer, Net, Recorder

#: the generic names; DNS, TFTP, POP3 and IMAP below put theirs in https's place
GENERIC = """ip inspect name IN-OUT https
ip inspect name IN-OUT ssh timeout 600
ip inspect name IN-OUT ntp
ip inspect name IN-OUT isakmp
ip inspect name IN-OUT ipsec-msft
ip inspect name IN-OUT snmp
ip inspect name IN-OUT telnet
ip inspect name IN-OUT pop3s
ip inspect name IN-OUT imaps
"""


def generic_config(nat):
    return cbac_config(GENERIC, nat)


class GenericNamesConfig(unittest.TestCase):
    def test_accepted_without_warning(self):
        model, diags = parse_config(generic_config(True))
        self.assertEqual([d.format() for d in diags if "inspect" in d.format()], [])
        self.assertEqual([p.protocol for p in model.inspect_rules["IN-OUT"].protocols],
                         ["https", "ssh", "ntp", "isakmp", "ipsec-msft", "snmp", "telnet",
                          "pop3s", "imaps"])

    def test_show_ip_inspect_name_prints_ios_default_timeouts(self):
        net = Net(config=generic_config(True))
        self.addCleanup(net.stop)
        out = net.app.show_ip_inspect("name", "IN-OUT")
        self.assertIn("https alert is on audit-trail is off timeout 3600", out)
        self.assertIn("ssh alert is on audit-trail is off timeout 600", out)
        self.assertIn("ntp alert is on audit-trail is off timeout 30", out)
        self.assertIn("isakmp alert is on audit-trail is off timeout 30", out)

    def test_unknown_names_still_not_acted_on(self):
        for proto in ("h323", "cuseeme"):
            model, diags = parse_config("ip inspect name X %s\n" % proto)
            msgs = [d.format() for d in diags]
            self.assertTrue(any("not acted on" in m for m in msgs), msgs)
            self.assertFalse(any(d.is_error for d in diags), msgs)
            self.assertNotIn("X", model.inspect_rules)


class GenericNamesThroughAppliance(ApplianceCase):
    inspect = GENERIC

    def _tcp(self, port, sport):
        self.server.listen(port, Recorder)
        return self.connect(self.client, REMOTE, port, sport, Recorder())

    def test_https_inspected_on_443_only(self):
        c = self._tcp(443, 40001)
        self.assertEqual(c.state, "ESTABLISHED")
        c.send(b"\x16\x03\x01hello")
        self.net.pump()
        self.assertIn(" https SIS_OPEN", self.net.show("sessions"))
        # port 8443 is not https by the port map: no session, replies dropped
        c2 = self._tcp(8443, 40002)
        self.assertEqual(c2.state, "SYN_SENT")

    def test_ssh_rule_timeout(self):
        c = self._tcp(22, 40003)
        self.assertEqual(c.state, "ESTABLISHED")
        self.assertIn(" ssh SIS_OPEN", self.net.show("sessions"))
        self.net.advance(590, step=10)
        self.assertIn(" ssh SIS_OPEN", self.net.show("sessions"))
        self.net.advance(30, step=10)
        self.assertNotIn(" ssh ", self.net.show("sessions"))

    def _udp_reply_passes(self, dport, sport):
        got = [u for u in self.udp(self.client, REMOTE, sport, dport, b"q", self.server)
               if u[2] == dport]
        self.assertTrue(got, "request not forwarded")
        src, psport, _, _ = got[-1]
        return [u for u in self.udp(self.server, src, dport, psport, b"r", self.client)
                if u[1] == dport and u[2] == sport]

    def test_udp_generic_names_on_their_ports(self):
        for dport, sport, name in ((123, 5123, "ntp"), (500, 5500, "isakmp"),
                                   (4500, 5450, "ipsec-msft"), (161, 5161, "snmp")):
            self.assertTrue(self._udp_reply_passes(dport, sport), name)
            self.assertIn(" %s SIS_OPEN" % name, self.net.show("sessions"))
        # UDP 124 is no protocol of the rule: the reply is dropped
        self.assertFalse(self._udp_reply_passes(124, 5124))

    def test_ntp_udp_idle_time(self):
        self.assertTrue(self._udp_reply_passes(123, 5125))
        self.net.advance(20, step=5)
        self.assertIn(" ntp ", self.net.show("sessions"))
        self.net.advance(20, step=5)
        self.assertNotIn(" ntp ", self.net.show("sessions"))


class GenericNamesThroughApplianceNoNat(GenericNamesThroughAppliance):
    nat = False


class GenericNamesRender(unittest.TestCase):
    def test_render_round_trip(self):
        from cbac.config.render import render
        model, _ = parse_config("ip inspect name X https\n"
                                "ip inspect name X ntp timeout 40 alert off\n")
        text = render(model)
        self.assertIn("ip inspect name X https\n", text)
        self.assertIn("ip inspect name X ntp alert off timeout 40\n", text)


# --------------------------------------------------------------------------
# DNS

from scapy.all import DNS, DNSQR, DNSRR, raw  # noqa: E402

DNS_INSPECT = GENERIC.replace("ip inspect name IN-OUT https\n",
                              "ip inspect name IN-OUT dns\nip inspect dns-timeout 7\n")


def query(ident, name="www.example.com", qtype="A"):
    return raw(DNS(id=ident, rd=1, qd=DNSQR(qname=name, qtype=qtype)))


def answer(ident, name="www.example.com", qtype="A", rdata="192.0.2.80"):
    an = DNSRR(rrname=name, type=qtype, rdata=rdata) if qtype == "A" else None
    return raw(DNS(id=ident, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype),
                   an=an))


class DnsThroughAppliance(ApplianceCase):
    inspect = DNS_INSPECT

    def ask(self, data, sport=33333):
        """Send a query; return (src, sport) the server saw it from, or None."""
        new = [u for u in self.udp(self.client, REMOTE, sport, 53, data, self.server)
               if u[2] == 53 and u[3] == data]
        return (new[-1][0], new[-1][1]) if new else None

    def reply(self, seen, data):
        return [u[3] for u in self.udp(self.server, seen[0], 53, seen[1], data, self.client)]

    def test_answer_passes_then_session_closes_and_second_answer_dropped(self):
        seen = self.ask(query(0x1234))
        self.assertIsNotNone(seen)
        if self.nat:
            self.assertEqual(seen[0], "172.22.1.16")
        self.assertIn(" dns SIS_OPENING", self.net.show("sessions"))
        self.assertEqual(self.reply(seen, answer(0x1234)), [answer(0x1234)])
        # closed at the answer, not after dns-timeout (7 s)
        self.net.advance(1)
        self.assertEqual(self.net.show("sessions"), "")
        # a second (spoofed or duplicate) answer does not pass
        self.assertEqual(self.reply(seen, answer(0x1234, rdata="6.6.6.6")), [])

    def test_parallel_queries_one_answer_each(self):
        seen = self.ask(query(0x0101, qtype="A"))
        self.assertEqual(self.ask(query(0x0202, qtype="AAAA")), seen)
        self.assertEqual(self.reply(seen, answer(0x0101)), [answer(0x0101)])
        # a second answer to the A query: dropped (one response per query)
        self.assertEqual(self.reply(seen, answer(0x0101, rdata="6.6.6.6")), [])
        self.assertEqual(self.drops("dns-unmatched-response"), 1)
        self.assertIn(" dns SIS_OPEN", self.net.show("sessions"))
        self.assertIn("DNS querying, 1 outstanding, 1 answered",
                      self.net.show("sessions detail"))
        self.assertEqual(self.reply(seen, answer(0x0202, qtype="AAAA")),
                         [answer(0x0202, qtype="AAAA")])
        self.assertIn(" dns SIS_CLOSING", self.net.show("sessions"))
        self.net.advance(1)
        self.assertEqual(self.net.show("sessions"), "")

    def test_wrong_id_or_question_dropped(self):
        seen = self.ask(query(0x4242, name="bank.example"))
        self.assertEqual(self.reply(seen, answer(0x4243, name="bank.example")), [])
        self.assertEqual(self.reply(seen, answer(0x4242, name="evil.example")), [])
        self.assertEqual(self.reply(seen, answer(0x4242, name="bank.example", qtype="MX")),
                         [])
        self.assertEqual(self.drops("dns-unmatched-response"), 3)
        # a query echoed back (QR=0) is no answer
        self.assertEqual(self.reply(seen, query(0x4242, name="bank.example")), [])
        self.assertEqual(self.drops("dns-bad-response"), 1)
        # the case of the question may differ (0x20 randomisation)
        self.assertEqual(self.reply(seen, answer(0x4242, name="BANK.example")),
                         [answer(0x4242, name="BANK.example")])

    def test_non_dns_to_port_53_refused(self):
        for junk in (b"", b"x" * 11, b"\x00" * 12, raw(DNS(id=1, qr=1, qd=DNSQR())),
                     raw(DNS(id=1, opcode=5, qd=DNSQR())),
                     raw(DNS(id=1, qd=[DNSQR(qname="a."), DNSQR(qname="b.")])),
                     b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
                     b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab"):
            self.assertIsNone(self.ask(junk, sport=40001), junk)
        self.assertEqual(self.net.show("sessions"), "")
        self.assertEqual(self.drops("dns-bad-query"), 8)

    def test_unanswered_query_expires_after_dns_timeout(self):
        seen = self.ask(query(7))
        self.net.advance(5)
        self.assertIn(" dns ", self.net.show("sessions"))
        self.net.advance(4)
        self.assertEqual(self.net.show("sessions"), "")
        self.assertEqual(self.reply(seen, answer(7)), [])

    def test_show_name_and_tcp_53(self):
        self.assertIn("dns alert is on audit-trail is off timeout 7",
                      self.net.app.show_ip_inspect("name", "IN-OUT"))
        self.server.listen(53, Recorder)
        c = self.connect(self.client, REMOTE, 53, 40053, Recorder())
        self.assertEqual(c.state, "ESTABLISHED")
        self.assertIn(" dns SIS_OPEN", self.net.show("sessions"))


    def _dns_tcp_server(self, answers):
        """A TCP DNS server answering each framed query with answers(q)."""

        class Srv(FramedServer):
            def frame_length(self, buf):
                if len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    return 2 + int.from_bytes(buf[:2], "big")
                return None

            def message(self, conn, m):
                for a in answers(m[2:]):
                    conn.send(len(a).to_bytes(2, "big") + a)
        self.server.listen(53, Srv)

    def test_truncated_udp_answer_retried_over_tcp(self):
        seen = self.ask(query(0x4242))
        tc = bytearray(answer(0x4242))
        tc[2] |= 0x02                                # TC
        self.assertEqual(self.reply(seen, bytes(tc)), [bytes(tc)])
        full = answer(0x4242, rdata="192.0.2.81")
        self._dns_tcp_server(lambda q: [full])
        c = self.connect(self.client, REMOTE, 53, 40053, Recorder())
        q = query(0x4242)
        msg = len(q).to_bytes(2, "big") + q
        for i in range(len(msg)):                    # one byte per segment
            c.send(msg[i:i + 1])
            self.net.pump()
        self.assertEqual(bytes(c.data), len(full).to_bytes(2, "big") + full)
        self.assertIn("DNS over TCP, 1 queries, 0 outstanding, 1 answered",
                      self.net.show("sessions detail"))

    def test_tcp_unmatched_or_second_answer_resets(self):
        self._dns_tcp_server(lambda q: [answer(int.from_bytes(q[:2], "big")),
                                        answer(int.from_bytes(q[:2], "big"))])
        c = self.connect(self.client, REMOTE, 53, 40054, Recorder())
        q = query(0x1111)
        c.send(len(q).to_bytes(2, "big") + q)
        self.net.pump()
        a = answer(0x1111)
        # the first answer passes; the second (no query outstanding) resets
        self.assertEqual(bytes(c.data), len(a).to_bytes(2, "big") + a)
        self.assertTrue(c.reset)
        self.assertNotIn(" dns ", self.net.show("sessions"))

    def test_tcp_garbage_query_resets(self):
        self.server.listen(53, Recorder)
        c = self.connect(self.client, REMOTE, 53, 40055, Recorder())
        c.send(b"\x00\x05hello")
        self.net.pump()
        self.assertTrue(c.reset)


class DnsThroughApplianceNoNat(DnsThroughAppliance):
    nat = False


class DnsParser(unittest.TestCase):
    def test_hostile_bytes_never_raise(self):
        from hypothesis import given, settings, strategies as st
        from cbac.inspect.dns import DnsGuard, parse_question

        @settings(max_examples=500, deadline=None)
        @given(st.binary(max_size=80), st.integers(0, 1))
        def check(data, d):
            parse_question(data)
            verdict, _ = DnsGuard().datagram(d, data)
            if d == 1:
                self.assertEqual(verdict, "drop")     # nothing outstanding
        check()

    def test_label_loop_and_overlong_name_refused(self):
        from cbac.inspect.dns import parse_question
        head = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        self.assertIsNone(parse_question(head + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01"))
        self.assertIsNotNone(parse_question(head + b"\x01a\x00\x00\x01\x00\x01"))
        self.assertIsNone(parse_question(head + b"\x01a\x00\x00\x01\x00"))


    def test_boundaries(self):
        """Exactly at each limit passes, one over is refused: MAX_UDP_MESSAGE
        bytes, a name of 255 octets on the wire (RFC 1035 2.3.4: labels,
        their length bytes and the root's 0; cbac let 256 through before),
        MAX_OUTSTANDING queries.  (Each fails with its comparison flipped.)"""
        from cbac.inspect import dns
        head = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        msg = head + b"\x01a\x00\x00\x01\x00\x01"
        pad = dns.MAX_UDP_MESSAGE - len(msg)
        self.assertIsNotNone(dns.parse_question(msg + b"\x00" * pad))
        self.assertIsNone(dns.parse_question(msg + b"\x00" * (pad + 1)))

        def name(last):
            return (b"\x3f" + b"a" * 63) * 3 + bytes([last]) + b"b" * last + b"\x00"
        self.assertEqual(len(name(61)), 255)
        self.assertIsNotNone(dns.parse_question(head + name(61) + b"\x00\x01\x00\x01"))
        self.assertIsNone(dns.parse_question(head + name(62) + b"\x00\x01\x00\x01"))

        g = dns.DnsGuard()
        for i in range(dns.MAX_OUTSTANDING):
            self.assertEqual(g.datagram(0, query(i)), ("pass", ""))
        self.assertEqual(g.datagram(0, query(dns.MAX_OUTSTANDING)), ("drop", "dns-too-many-queries"))
        self.assertEqual(g.datagram(0, query(0)), ("pass", ""))        # a retry of one outstanding


# --------------------------------------------------------------------------
# TFTP

TFTP_INSPECT = GENERIC.replace("ip inspect name IN-OUT https\n", "ip inspect name IN-OUT tftp\n")


def rrq(name=b"boot.bin", mode=b"octet", opts=b""):
    return b"\x00\x01" + name + b"\0" + mode + b"\0" + opts


def wrq(name=b"up.bin"):
    return b"\x00\x02" + name + b"\0octet\0"


def data(block, payload):
    return b"\x00\x03" + block.to_bytes(2, "big") + payload


def ack(block):
    return b"\x00\x04" + block.to_bytes(2, "big")


class TftpThroughAppliance(ApplianceCase):
    inspect = TFTP_INSPECT
    hosts = dict(ApplianceCase.hosts, other=(OUTSIDE, EVE, 3))

    def request(self, msg, sport=5000):
        new = [u for u in self.udp(self.client, REMOTE, sport, 69, msg, self.server) if u[2] == 69]
        return (new[-1][0], new[-1][1]) if new else None

    def from_server(self, seen, msg, sport=6000, host=None):
        return [(u[1], u[2], u[3])
                for u in self.udp(host or self.server, seen[0], sport, seen[1], msg, self.client)]

    def to_server(self, msg, dport=6000, sport=5000):
        return [u[3] for u in self.udp(self.client, REMOTE, sport, dport, msg, self.server)
                if u[2] == dport]

    def test_read_through_new_server_port_closed_at_last_block(self):
        seen = self.request(rrq())
        self.assertIsNotNone(seen)
        if self.nat:
            self.assertEqual(seen[0], "172.22.1.16")
        block1 = data(1, b"a" * 512)
        self.assertEqual(self.from_server(seen, block1), [(6000, 5000, block1)])
        self.assertIn(" tftp-data SIS_OPENING", self.net.show("sessions"))
        self.assertEqual(self.to_server(ack(1)), [ack(1)])
        self.assertIn(" tftp-data SIS_OPEN", self.net.show("sessions"))
        last = data(2, b"b" * 100)
        self.assertEqual(self.from_server(seen, last), [(6000, 5000, last)])
        self.assertIn("TFTP last block 2, 2 data blocks", self.net.show("sessions detail"))
        self.assertEqual(self.to_server(ack(2)), [ack(2)])
        self.net.advance(1)
        self.assertNotIn("tftp", self.net.show("sessions"))      # request session too
        # the transfer is over: more data from the server's port is dropped
        self.assertEqual(self.from_server(seen, data(3, b"x")), [])

    def test_write_request(self):
        seen = self.request(wrq())
        self.assertEqual(self.from_server(seen, ack(0), sport=6001), [(6001, 5000, ack(0))])
        self.assertEqual(self.to_server(data(1, b"hello"), dport=6001), [data(1, b"hello")])
        self.assertEqual(self.from_server(seen, ack(1), sport=6001), [(6001, 5000, ack(1))])
        self.net.advance(1)
        self.assertNotIn("tftp-data", self.net.show("sessions"))

    def test_blksize_oack(self):
        seen = self.request(rrq(opts=b"blksize\x001024\x00"))
        oack = b"\x00\x06blksize\x001024\x00"
        self.assertEqual(self.from_server(seen, oack), [(6000, 5000, oack)])
        self.assertEqual(self.to_server(ack(0)), [ack(0)])
        full = data(1, b"c" * 1024)
        self.assertEqual(self.from_server(seen, full), [(6000, 5000, full)])
        self.assertEqual(self.from_server(seen, data(2, b"c" * 1025)), [])   # above blksize
        self.assertIn("TFTP transfer, 1 data blocks", self.net.show("sessions detail"))

    def test_no_request_no_channel(self):
        seen = (self.me, 5000)
        self.assertEqual(self.from_server(seen, data(1, b"x")), [])

    def test_only_the_server_may_answer_and_only_once(self):
        seen = self.request(rrq())
        # a third host cannot use the pinhole
        self.assertEqual(self.from_server(seen, data(1, b"evil"), host=self.other), [])
        self.assertEqual(self.from_server(seen, data(1, b"ok")), [(6000, 5000, data(1, b"ok"))])
        # one data channel per request: a second server port is refused
        self.assertEqual(self.from_server(seen, data(1, b"again"), sport=6002), [])

    def test_bad_requests_refused(self):
        for msg in (b"", b"\x00\x01", rrq(mode=b"binary"), rrq(name=b""), b"\x00\x03\x00\x01x",
                    rrq()[:-1], b"\x00\x01a\x00octet\x00blksize\x00"):
            self.assertIsNone(self.request(msg, sport=5100), msg)
        self.assertEqual(self.net.app.sessions.stats.drops.get("tftp-bad-request"), 7)

    def test_pinhole_expires(self):
        seen = self.request(rrq())
        self.net.advance(31, step=1)
        self.assertEqual(self.from_server(seen, data(1, b"late")), [])

    def test_requests_and_junk_on_data_channel_dropped(self):
        seen = self.request(rrq())
        self.assertEqual(self.from_server(seen, data(1, b"a" * 512)), [(6000, 5000, data(1, b"a" * 512))])
        self.assertEqual(self.from_server(seen, rrq()), [])
        self.assertEqual(self.from_server(seen, b"\x00\x09xx"), [])
        self.assertEqual(self.from_server(seen, b"\x00"), [])
        err = b"\x00\x05\x00\x01nope\x00"
        self.assertEqual(self.from_server(seen, err), [(6000, 5000, err)])
        self.net.advance(1)
        self.assertNotIn("tftp-data", self.net.show("sessions"))


class TftpThroughApplianceNoNat(TftpThroughAppliance):
    nat = False


# --------------------------------------------------------------------------
# POP3

from cbac.inspect import pop3  # noqa: E402
from cbac.inspect.api import CLIENT, SERVER, InspectContext  # noqa: E402
from cbac.config.model import InspectProtocol  # noqa: E402
from tests.test_ftp import Engine  # noqa: E402

GREET = b"+OK POP3 ready\r\n"


def mail_engine(protocol, factory, port, **opts):
    """The inspector ``factory`` makes for 10.10.10.2:40000 ->
    172.22.1.1:port under ``ip inspect name X <protocol> <opts>``, on a
    test Engine."""
    ctx = InspectContext(client_addr=0x0A0A0A02, client_port=40000, server_addr=0xAC160101,
                         server_port=port, rule=InspectProtocol(protocol, **opts))
    return Engine(factory(ctx))


def pop3_engine(**opts):
    return mail_engine("pop3", pop3.factory, 110, **opts)


def released(e, d):
    """What the receiver got: the released bytes with the edits applied."""
    out = bytearray(e.inp[d][:e.rel[d]])
    for ed in e.edits[d]:
        if ed.offset + ed.length <= len(out):
            out[ed.offset:ed.offset + ed.length] = ed.data
    return bytes(out)


def run_dialogue(e, dialogue, cuts):
    """Feed (direction, bytes) items to the engine e, each cut at the given
    offsets; after each server piece the client's held bytes are offered
    again (as the stream engine does when a reply arrives)."""
    for d, data in dialogue:
        pos = 0
        for c in sorted(x for x in cuts if 0 < x < len(data)) + [len(data)]:
            e.feed(d, data[pos:c])
            if d == SERVER and e.inp[CLIENT][e.rel[CLIENT]:]:
                e.feed(CLIENT, b"")
            pos = c
    return e


def run_pop3(dialogue, cuts, **opts):
    return run_dialogue(pop3_engine(**opts), dialogue, cuts)


SESSION = [(SERVER, GREET), (CLIENT, b"USER alice\r\n"), (SERVER, b"+OK\r\n"),
           (CLIENT, b"PASS secret\r\n"), (SERVER, b"+OK 2 messages\r\n"),
           (CLIENT, b"LIST\r\n"), (SERVER, b"+OK\r\n1 120\r\n2 200\r\n.\r\n"),
           (CLIENT, b"RETR 1\r\n"), (SERVER, b"+OK\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"),
           (CLIENT, b"QUIT\r\n"), (SERVER, b"+OK bye\r\n")]


class Pop3Inspector(unittest.TestCase):
    def test_every_segmentation_of_a_session(self):
        want_c = b"".join(x for d, x in SESSION if d == CLIENT)
        longest = max(len(x) for _, x in SESSION)
        for cut in range(1, longest):
            for cuts in ([cut], [cut, cut + 1], list(range(1, longest))):
                e = run_pop3(SESSION, cuts)
                self.assertFalse(e.reset, (cuts, e.reasons))
                self.assertEqual(released(e, CLIENT), want_c, cuts)
                self.assertIn("UPDATE", e.insp.state_summary())

    def test_state_table(self):
        """RFC 1939's states are pop3.TRANSITIONS; a change outside it raises
        (the engine resets the session)."""
        from cbac.inspect.fsm import IllegalTransition
        insp = pop3_engine().insp
        self.assertRaises(IllegalTransition, insp._go, pop3.TRANSACTION)   # before the greeting
        insp._go(pop3.AUTHORIZATION)
        insp._go(pop3.TRANSACTION)
        self.assertRaises(IllegalTransition, insp._go, pop3.AUTHORIZATION)
        insp._go(pop3.UPDATE)
        for state in pop3.TRANSITIONS:
            if state != pop3.UPDATE:
                self.assertRaises(IllegalTransition, insp._go, state)

    def test_illegal_commands_masked_every_segmentation(self):
        for verb in (b"DELE 1", b"RETR 1", b"XTND XMIT", b"LIST", b"USER a\x00b"):
            line = verb + b"\r\n"
            for cut in range(0, len(line) + 1):
                e = run_pop3([(SERVER, GREET), (CLIENT, line)], [cut])
                self.assertFalse(e.reset)
                got = released(e, CLIENT)
                self.assertEqual(got, b"x" * (len(line) - 2) + b"\r\n", (verb, cut))
                self.assertEqual(e.log[0][2], "POP3_INVALID_COMMAND")

    def test_reset_option(self):
        e = run_pop3([(SERVER, GREET), (CLIENT, b"XTND XMIT\r\n")], [], reset=True)
        self.assertTrue(e.reset)
        self.assertEqual(released(e, CLIENT), b"")

    def test_secure_login(self):
        e = run_pop3([(SERVER, GREET), (CLIENT, b"USER alice\r\n"),
                      (SERVER, b"-ERR refused\r\n"), (CLIENT, b"CAPA\r\n")],
                     [], secure_login=True)
        self.assertEqual(released(e, CLIENT), b"xxxxxxxxxx\r\nCAPA\r\n")
        self.assertEqual(e.log[0][2], "POP3_NON_SECURE_LOGIN")
        self.assertIn("LOGON POP3 command from initiator (10.10.10.2:40000)", e.log[0][3])

    def test_stls_makes_session_opaque(self):
        e = run_pop3([(SERVER, GREET), (CLIENT, b"STLS\r\n"), (SERVER, b"+OK begin\r\n"),
                      (CLIENT, b"\x16\x03\x01binary")], [], secure_login=True)
        self.assertTrue(e.opaque)

    def test_no_pipelining_past_a_pending_command(self):
        e = pop3_engine()
        e.feed(SERVER, GREET)
        e.feed(CLIENT, b"USER a\r\nPASS b\r\nRETR 1\r\n")
        self.assertEqual(released(e, CLIENT), b"USER a\r\n")     # the rest is held
        e.feed(SERVER, b"+OK\r\n")
        e.feed(CLIENT, b"")
        self.assertEqual(released(e, CLIENT), b"USER a\r\nPASS b\r\n")
        e.feed(SERVER, b"+OK\r\n")
        e.feed(CLIENT, b"")
        self.assertEqual(released(e, CLIENT), b"USER a\r\nPASS b\r\nRETR 1\r\n")

    def test_server_violations_reset(self):
        for bad in (b"HELLO\r\n", b"+OK " + b"a" * 600 + b"\r\n"):
            e = run_pop3([(SERVER, bad)], [])
            self.assertTrue(e.reset, bad)
        e = run_pop3([(SERVER, GREET), (SERVER, b"+OK unsolicited\r\n")], [])
        self.assertTrue(e.reset)

    def test_overlong_command_resets(self):
        e = run_pop3([(SERVER, GREET), (CLIENT, b"USER " + b"a" * 300)], [])
        self.assertTrue(e.reset)

    def test_auth_sasl_exchange(self):
        e = run_pop3([(SERVER, GREET), (CLIENT, b"AUTH PLAIN\r\n"), (SERVER, b"+ \r\n"),
                      (CLIENT, b"AGFsaWNlAHNlY3JldA==\r\n"), (SERVER, b"+OK\r\n"),
                      (CLIENT, b"STAT\r\n")], [3])
        self.assertFalse(e.reset)
        self.assertIn("TRANSACTION", e.insp.state_summary())
        self.assertTrue(released(e, CLIENT).endswith(b"STAT\r\n"))

    def test_config_options_round_trip(self):
        from cbac.config.render import render
        model, diags = parse_config("ip inspect name X pop3 reset secure-login alert on\n")
        self.assertEqual([d.format() for d in diags], [])
        p = model.inspect_rules["X"].get("pop3")
        self.assertTrue(p.reset and p.secure_login)
        self.assertIn("ip inspect name X pop3 alert on reset secure-login\n", render(model))


class Pop3Boundaries(unittest.TestCase):
    """At each POP3 limit the bytes pass, one more resets: a command line of
    MAX_LINE bytes (LF included; MAX_LINE bytes without an LF already
    reset), MAX_HOLD bytes pipelined before a reply, a reply line of
    MAX_REPLY_LINE bytes, complete or not.  (Each fails with its comparison
    flipped.)"""

    def greeted(self):
        e = pop3_engine()
        e.feed(SERVER, GREET)
        return e

    def test_command_line(self):
        n = pop3.MAX_LINE
        e = self.greeted()
        e.feed(CLIENT, b"USER " + b"u" * (n - 7) + b"\r\n")
        self.assertFalse(e.reset)
        self.assertEqual(released(e, CLIENT)[:5], b"USER ")
        e = self.greeted()
        e.feed(CLIENT, b"USER " + b"u" * (n - 6) + b"\r\n")     # n + 1 bytes
        self.assertTrue(e.reset)
        e = self.greeted()
        e.feed(CLIENT, b"USER " + b"u" * (n - 6))              # n - 1 bytes, no LF: waits
        self.assertFalse(e.reset)
        e.feed(CLIENT, b"u")                                   # n bytes, no LF: too long
        self.assertTrue(e.reset)
        self.assertEqual(released(e, CLIENT), b"")

    def test_pipelined_bytes_held(self):
        e = pop3_engine()                                      # the greeting is outstanding
        e.feed(CLIENT, b"x" * pop3.MAX_HOLD)
        self.assertFalse(e.reset)
        e.feed(CLIENT, b"x")
        self.assertTrue(e.reset)

    def test_reply_line(self):
        n = pop3.MAX_REPLY_LINE
        e = pop3_engine()
        e.feed(SERVER, b"+OK " + b"r" * (n - 6) + b"\r\n")
        self.assertFalse(e.reset)
        e = pop3_engine()
        e.feed(SERVER, b"+OK " + b"r" * (n - 5) + b"\r\n")
        self.assertTrue(e.reset)
        e = pop3_engine()
        e.feed(SERVER, b"+OK " + b"r" * (n - 4))                # n bytes, unfinished: held
        self.assertFalse(e.reset)
        e.feed(SERVER, b"r")
        self.assertTrue(e.reset)


class MailServer(LineServer):
    """A POP3 or IMAP server: records each command line it gets (without
    its CRLF) in ``log`` and sends ``answer(line)``."""

    terminator = b"\r\n"

    def __init__(self, log):
        super().__init__()
        self.log = log

    def message(self, conn, line):
        line = line[:-2]
        self.log.append(line)
        conn.send(self.answer(line))


class Pop3Server(MailServer):
    """A POP3 server that answers -ERR to any verb it does not know."""

    greeting = GREET

    def answer(self, line):
        verb = line.split(b" ")[0].upper()
        if verb in (b"USER", b"PASS", b"STAT", b"QUIT", b"CAPA"):
            return b"+OK\r\n" if verb != b"CAPA" else b"+OK\r\nUSER\r\nSTLS\r\n.\r\n"
        return b"-ERR unknown command\r\n"


POP3_INSPECT = GENERIC.replace("ip inspect name IN-OUT https\n",
                               "ip inspect name IN-OUT pop3 secure-login\n")


class MailServerCase(ApplianceCase):
    """The outside host runs ``mail_server(self.seen)`` on ``port``
    (``self.seen``: the lines it got)."""

    def setUp(self):
        super().setUp()
        self.seen = []
        self.server.listen(self.port, lambda: self.mail_server(self.seen))


class Pop3ThroughAppliance(MailServerCase):
    inspect = POP3_INSPECT
    port, mail_server = 110, Pop3Server

    def test_clear_text_login_refused_with_err_and_alert(self):
        from twisted.logger import globalLogPublisher
        lines = []
        globalLogPublisher.addObserver(lines.append)
        self.addCleanup(globalLogPublisher.removeObserver, lines.append)
        app = Recorder()
        c = self.connect(self.client, REMOTE, 110, 41000, app)
        self.assertEqual(bytes(app.data), GREET)
        c.send(b"CAPA\r\n")
        self.net.pump()
        c.send(b"USER alice\r\n")
        self.net.pump()
        c.send(b"STAT\r\n")
        self.net.pump()
        self.assertEqual(self.seen, [b"CAPA", b"xxxxxxxxxx", b"xxxx"])
        self.assertEqual(bytes(app.data), GREET + b"+OK\r\nUSER\r\nSTLS\r\n.\r\n"
                         + b"-ERR unknown command\r\n" * 2)
        self.assertIn(" pop3 SIS_OPEN", self.net.show("sessions"))
        self.assertIn("POP3 state: AUTHORIZATION, commands 3, refused 2",
                      self.net.show("sessions detail"))
        self.assertTrue(any("POP3_NON_SECURE_LOGIN" in repr(e) for e in lines), lines[-5:])


class Pop3ThroughApplianceNoNat(Pop3ThroughAppliance):
    nat = False


# --------------------------------------------------------------------------
# IMAP

from cbac.inspect import imap  # noqa: E402


def imap_engine(**opts):
    return mail_engine("imap", imap.factory, 143, **opts)


def run_imap(dialogue, cuts, **opts):
    return run_dialogue(imap_engine(**opts), dialogue, cuts)


IMAP_SESSION = [
    (SERVER, b"* OK IMAP4rev1 ready\r\n"),
    (CLIENT, b"a1 CAPABILITY\r\n"), (SERVER, b"* CAPABILITY IMAP4rev1 IDLE\r\na1 OK done\r\n"),
    (CLIENT, b"a2 LOGIN alice {6}\r\n"), (SERVER, b"+ go ahead\r\n"),
    (CLIENT, b"secret\r\n"), (SERVER, b"a2 OK logged in\r\n"),
    (CLIENT, b"a3 SELECT INBOX\r\n"), (SERVER, b"* 2 EXISTS\r\na3 OK [READ-WRITE] done\r\n"),
    (CLIENT, b"a4 FETCH 1 BODY[]\r\n"),
    (SERVER, b"* 1 FETCH (BODY[] {22}\r\na5 OK fake\r\n* BYE x\r\n)\r\na4 OK done\r\n"),
    (CLIENT, b"a5 IDLE\r\n"), (SERVER, b"+ idling\r\n"), (CLIENT, b"DONE\r\n"),
    (SERVER, b"a5 OK idle done\r\n"),
    (CLIENT, b"a6 LOGOUT\r\n"), (SERVER, b"* BYE\r\na6 OK bye\r\n")]


class ImapInspector(unittest.TestCase):
    def test_every_segmentation_of_a_session(self):
        want = b"".join(x for d, x in IMAP_SESSION if d == CLIENT)
        longest = max(len(x) for _, x in IMAP_SESSION)
        for cut in range(1, longest):
            for cuts in ([cut], [cut, cut + 1]):
                e = run_imap(IMAP_SESSION, cuts)
                self.assertFalse(e.reset, (cuts, e.reasons))
                self.assertEqual(released(e, CLIENT), want, cuts)
                self.assertIn("LOGOUT", e.insp.state_summary())
        e = run_imap(IMAP_SESSION, list(range(1, longest)))
        self.assertEqual(released(e, CLIENT), want)

    def test_state_table(self):
        """RFC 9051's states are imap.TRANSITIONS; a change outside it raises
        (the engine resets the session)."""
        from cbac.inspect.fsm import IllegalTransition
        insp = imap_engine().insp
        self.assertRaises(IllegalTransition, insp._go, imap.SELECTED)
        insp._go(imap.NOT_AUTH)
        self.assertRaises(IllegalTransition, insp._go, imap.SELECTED)      # not logged in
        insp._go(imap.AUTH)
        insp._go(imap.SELECTED)
        insp._go(imap.LOGOUT)
        for state in imap.TRANSITIONS:
            if state != imap.LOGOUT:
                self.assertRaises(IllegalTransition, insp._go, state)

    def test_illegal_commands_get_bad_with_their_tag(self):
        for line in (b"t1 FETCH 1 BODY[]\r\n", b"t1 XYZZY\r\n", b"t1 select INBOX\r\n",
                     b"t1 UID EXPLODE 1\r\n"):
            for cut in range(0, len(line) + 1):
                e = run_imap([(SERVER, b"* OK hi\r\n"), (CLIENT, line)], [cut])
                self.assertFalse(e.reset, line)
                got = released(e, CLIENT)
                verb = line.split(b" ")[1].rstrip(b"\r\n")
                self.assertEqual(got, line.replace(verb, b"x" * len(verb), 1), (line, cut))
                self.assertEqual(e.log[0][2], "IMAP_INVALID_COMMAND")
                # the server's BAD to the same tag ends the command
                e.feed(SERVER, b"t1 BAD unknown\r\n")
                self.assertIn("NOT_AUTHENTICATED", e.insp.state_summary())

    def test_secure_login_and_starttls(self):
        e = run_imap([(SERVER, b"* OK hi\r\n"), (CLIENT, b"a LOGIN u p\r\n")], [],
                     secure_login=True)
        self.assertEqual(released(e, CLIENT), b"a xxxxx u p\r\n")
        self.assertEqual(e.log[0][2], "IMAP_NON_SECURE_LOGIN")
        e = run_imap([(SERVER, b"* OK hi\r\n"), (CLIENT, b"a STARTTLS\r\n"),
                      (SERVER, b"a OK begin\r\n")], [], secure_login=True)
        self.assertTrue(e.opaque)

    def test_fail_closed_cases_reset(self):
        for dialogue in ([(SERVER, b"* OK hi\r\n"), (CLIENT, b"* LOGIN\r\n")],
                         [(SERVER, b"* OK hi\r\n"), (CLIENT, b"a XYZ {5+}\r\nhello\r\n")],
                         [(SERVER, b"* OK hi\r\n"), (SERVER, b"zz OK nothing asked\r\n")],
                         [(SERVER, b"* OK hi\r\n"), (CLIENT, b"a " + b"A" * 9000)],
                         [(SERVER, b"HELLO\r\n")]):
            e = run_imap(dialogue, [])
            self.assertTrue(e.reset, dialogue)
        e = run_imap([(SERVER, b"* OK hi\r\n"), (CLIENT, b"a XYZ\r\n")], [], reset=True)
        self.assertTrue(e.reset)
        self.assertEqual(released(e, CLIENT), b"")

    def test_no_pipelining(self):
        e = imap_engine()
        e.feed(SERVER, b"* OK hi\r\n")
        e.feed(CLIENT, b"a NOOP\r\nb NOOP\r\n")
        self.assertEqual(released(e, CLIENT), b"a NOOP\r\n")
        e.feed(SERVER, b"a OK\r\n")
        e.feed(CLIENT, b"")
        self.assertEqual(released(e, CLIENT), b"a NOOP\r\nb NOOP\r\n")


class ImapBoundaries(unittest.TestCase):
    """At each IMAP limit the bytes pass, one more resets: a command line
    of MAX_LINE bytes (MAX_LINE bytes without an LF reset), a literal of
    MAX_LITERAL bytes, MAX_HOLD bytes held before a reply, a reply line of
    MAX_REPLY_LINE bytes, complete or not.  (Each fails with its comparison
    flipped.)"""

    def greeted(self):
        e = imap_engine()
        e.feed(SERVER, b"* OK IMAP4rev1 ready\r\n")
        return e

    def test_command_line(self):
        n = imap.MAX_LINE
        e = self.greeted()
        e.feed(CLIENT, b"a1 NOOP " + b"x" * (n - 10) + b"\r\n")
        self.assertFalse(e.reset)
        e = self.greeted()
        e.feed(CLIENT, b"a1 NOOP " + b"x" * (n - 9) + b"\r\n")
        self.assertTrue(e.reset)
        e = self.greeted()
        e.feed(CLIENT, b"a1 NOOP " + b"x" * (n - 9))           # n - 1 bytes, no LF: waits
        self.assertFalse(e.reset)
        e.feed(CLIENT, b"x")
        self.assertTrue(e.reset)

    def test_literal_size(self):
        e = self.greeted()
        e.feed(CLIENT, b"a1 LOGIN {%d}\r\n" % imap.MAX_LITERAL)
        self.assertFalse(e.reset)
        e = self.greeted()
        e.feed(CLIENT, b"a1 LOGIN {%d}\r\n" % (imap.MAX_LITERAL + 1))
        self.assertTrue(e.reset)

    def test_held_before_a_reply(self):
        e = self.greeted()
        e.feed(CLIENT, b"a1 NOOP\r\n")                          # a reply is outstanding
        e.feed(CLIENT, b"x" * imap.MAX_HOLD)
        self.assertFalse(e.reset)
        e.feed(CLIENT, b"x")
        self.assertTrue(e.reset)

    def test_reply_line(self):
        n = imap.MAX_REPLY_LINE
        e = self.greeted()
        e.feed(SERVER, b"* " + b"r" * (n - 4) + b"\r\n")
        self.assertFalse(e.reset)
        e = self.greeted()
        e.feed(SERVER, b"* " + b"r" * (n - 3) + b"\r\n")
        self.assertTrue(e.reset)
        e = self.greeted()
        e.feed(SERVER, b"* " + b"r" * (n - 2))                   # n bytes, unfinished: held
        self.assertFalse(e.reset)
        e.feed(SERVER, b"r")
        self.assertTrue(e.reset)


class ImapServer(MailServer):
    """An IMAP server that answers BAD to any command it does not know."""

    greeting = b"* OK IMAP ready\r\n"

    def answer(self, line):
        tag, verb = (line.split(b" ") + [b""])[:2]
        if verb.upper() in (b"LOGIN", b"CAPABILITY", b"NOOP", b"LOGOUT"):
            return tag + b" OK done\r\n"
        return tag + b" BAD unknown command\r\n"


IMAP_INSPECT = GENERIC.replace("ip inspect name IN-OUT https\n",
                               "ip inspect name IN-OUT imap secure-login\n")


class ImapThroughAppliance(MailServerCase):
    inspect = IMAP_INSPECT
    port, mail_server = 143, ImapServer

    def test_clear_text_login_gets_bad_with_its_tag(self):
        app = Recorder()
        c = self.connect(self.client, REMOTE, 143, 41001, app)
        c.send(b"a1 NOOP\r\n")
        self.net.pump()
        c.send(b"a2 LOGIN alice secret\r\n")
        self.net.pump()
        self.assertEqual(self.seen, [b"a1 NOOP", b"a2 xxxxx alice secret"])
        self.assertEqual(bytes(app.data), b"* OK IMAP ready\r\na1 OK done\r\n"
                         b"a2 BAD unknown command\r\n")
        self.assertIn(" imap SIS_OPEN", self.net.show("sessions"))
        self.assertIn("IMAP state: NOT_AUTHENTICATED, commands 2, refused 1",
                      self.net.show("sessions detail"))


class ImapThroughApplianceNoNat(ImapThroughAppliance):
    nat = False
