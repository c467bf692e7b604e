"""A server published by an inbound ACL permit (with and without static
NAT) while inspection covers only the other direction: IOS forwards its
connections per the ACLs, and so does cbac, although "no session, no
pass" (cbac/inspect/normalise.py) drops TCP segments without a session on
inspected directions.  The connections are remembered in a bounded table
(cbac/inspect/uninspected.py); a connection whose SYN was inspected is
never remembered, so segments after its teardown stay dropped.

Through the whole appliance on memory ports with the seed configuration
(``ip inspect IN-OUT in`` on the inside; ``ip inspect OUT-IN in`` on the
outside covers only SMTP), plus a second published port 8025 that no rule
covers from the outside."""

from scapy.all import IP, TCP, Raw

from tests.test_resilience import H_SRV, ApplianceCase, seed_text

CLIENT = "198.51.100.7"

PUBLISH_NAT = """ip inspect tcp idle-time 30
ip nat inside source static tcp 10.10.10.25 8025 172.22.1.16 8025 extendable
access-list 101 permit tcp any host 172.22.1.16 eq 8025"""


class PublishedCase:
    server = "10.10.10.25"       # inside address
    public = "172.22.1.16"       # the address outside clients use
    port = 8025
    extra = PUBLISH_NAT

    def syn(self, sport=40000, seq=1000, src=CLIENT):
        return IP(src=src, dst=self.public) / TCP(sport=sport, dport=self.port, flags="S",
                                                   seq=seq)

    def from_server(self, flags, seq, ack, data=b"", dport=40000, dst=CLIENT):
        p = IP(src=self.server, dst=dst) / TCP(sport=self.port, dport=dport, flags=flags,
                                               seq=seq, ack=ack)
        if data:
            p = p / Raw(data)
        self.inside(p, mac=H_SRV)

    def from_client(self, flags, seq, ack, data=b""):
        p = IP(src=CLIENT, dst=self.public) / TCP(sport=40000, dport=self.port, flags=flags,
                                                  seq=seq, ack=ack)
        if data:
            p = p / Raw(data)
        self.outside(p)

    def tcp_out(self, port):
        return [p for p in self.sent(port) if TCP in p]

    def _stats(self):
        from cbac.inspect.show import show_statistics
        return show_statistics(self.app.sessions)

    def no_session_drops(self):
        return self.app.sessions.stats.drops.get("tcp-no-session", 0)

    def test_handshake_and_data_both_ways(self):
        self.outside(self.syn())
        got = self.tcp_out(self.pin)
        self.assertEqual(len(got), 1)
        self.assertEqual((got[0][IP].dst, got[0][TCP].dport, str(got[0][TCP].flags)),
                         (self.server, self.port, "S"))
        # the server's SYN/ACK enters the inspected inside interface
        self.from_server("SA", 5000, 1001)
        got = self.tcp_out(self.pout)
        self.assertEqual(len(got), 1, "SYN/ACK of the published server dropped")
        self.assertEqual((got[0][IP].src, got[0][TCP].sport, str(got[0][TCP].flags)),
                         (self.public, self.port, "SA"))
        self.from_client("A", 1001, 5001)
        self.from_client("PA", 1001, 5001, b"hello\r\n")
        got = self.tcp_out(self.pin)
        self.assertEqual([bytes(p[TCP].payload) for p in got], [b"", b"hello\r\n"])
        self.from_server("PA", 5001, 1008, b"world\r\n")
        got = self.tcp_out(self.pout)
        self.assertEqual([(p[IP].src, bytes(p[TCP].payload)) for p in got],
                         [(self.public, b"world\r\n")])
        # the connection is quiet for less than the idle time: still known
        self.advance(20)
        self.from_server("FA", 5008, 1008)
        self.assertEqual(len(self.tcp_out(self.pout)), 1)
        self.assertEqual(self.no_session_drops(), 0)
        self.assertEqual(self.sessions(), 0)        # nothing inspected

    def test_stray_synack_without_syn_is_dropped(self):
        self.from_server("SA", 5000, 1001, dport=41000)
        self.assertEqual(self.tcp_out(self.pout), [])
        self.assertEqual(self.no_session_drops(), 1)
        self.assertTrue(any("due to no session" in m for m in self.logs))

    def test_forgotten_after_idle_time(self):
        self.outside(self.syn())
        self.sent(self.pin)
        self.advance(31)
        self.assertEqual(len(self.app.sessions.uninspected), 0)
        self.from_server("SA", 5000, 1001)
        self.assertEqual(self.tcp_out(self.pout), [])
        self.assertEqual(self.no_session_drops(), 1)

    def test_table_bounded_under_syn_flood(self):
        self.app.model.session_limit = 50
        n = 300
        for i in range(n):
            self.outside(self.syn(sport=1024 + i, src="198.18.%d.%d" % (i >> 8, i & 255)))
        un = self.app.sessions.uninspected
        self.assertEqual(len(un), 50)
        self.assertEqual(un.evicted, n - 50)
        self.assertLessEqual(len(un._keys), 2 * 50)
        self.assertRegex(self._stats(), r"Uninspected TCP connections .*: 50 of max 50, "
                                        r"evicted 250")
        # the newest is known, the evicted oldest is not (dropped again)
        self.sent(self.pout)
        self.from_server("SA", 7, 1001, dport=1024 + n - 1, dst="198.18.%d.%d" % (
            (n - 1) >> 8, (n - 1) & 255))
        self.assertEqual(len(self.tcp_out(self.pout)), 1)
        self.from_server("SA", 7, 1001, dport=1024, dst="198.18.0.0")
        self.assertEqual(self.tcp_out(self.pout), [])
        self.assertEqual(self.no_session_drops(), 1)

    def test_inspected_connection_is_never_remembered(self):
        # an inside client's connection is inspected (IN-OUT in); after its
        # RST a segment has no session and is dropped, as before
        def client(flags, seq, ack=0, data=b""):
            p = IP(src="10.10.10.2", dst=CLIENT) / TCP(sport=33000, dport=5000, flags=flags,
                                                        seq=seq, ack=ack)
            self.inside(p / Raw(data) if data else p)
        client("S", 100)
        out = self.tcp_out(self.pout)
        self.assertEqual(len(out), 1)
        self.assertEqual(self.sessions(), 1)
        pub, pport = out[0][IP].src, out[0][TCP].sport
        self.assertEqual(len(self.app.sessions.uninspected), 0)
        self.outside(IP(src=CLIENT, dst=pub) / TCP(sport=5000, dport=pport, flags="SA",
                                                   seq=900, ack=101))
        client("A", 101, 901)
        client("R", 101)
        self.advance(20)
        self.assertEqual(self.sessions(), 0)
        self.sent(self.pout)
        client("PA", 101, 901, b"x")
        self.assertEqual(self.tcp_out(self.pout), [])
        self.assertEqual(self.no_session_drops(), 1)
        self.assertEqual(len(self.app.sessions.uninspected), 0)


class PublishedNatTests(PublishedCase, ApplianceCase):
    pass


class PublishedNoNatTests(PublishedCase, ApplianceCase):
    """The server 10.10.10.30 is reached by its own address (no NAT for it)."""
    server = public = "10.10.10.30"
    extra = """ip inspect tcp idle-time 30
access-list 101 permit tcp any host 10.10.10.30 eq 8025"""

    def config_text(self):
        text = seed_text(self.extra)
        # the inside hosts but .30 are translated; .30 keeps its address
        return text.replace("access-list 1 permit 10.10.10.0 0.0.0.255",
                            "access-list 1 deny host 10.10.10.30\n"
                            "access-list 1 permit 10.10.10.0 0.0.0.255")
