"""Memory ports, pcap files and the pcap port (no root needed)."""

import io
from decimal import Decimal
import os
import shutil
import struct
import subprocess

from twisted.internet import task
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from cbac.interfaces import IPort
from cbac.dataplane.port import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    MemoryPort,
    PortCounters,
    make_vnet,
    mac_bytes,
    parse_vnet,
)
from cbac.dataplane.pcap import PcapError, PcapPort, PcapReader, PcapWriter, read_frames

from scapy.all import IP, TCP, UDP, Ether, Raw, rdpcap, wrpcap  # noqa: E402


def udp_frame(i, size=0):
    pkt = (
        Ether(src="02:00:0a:0a:0a:02", dst="02:00:0a:0a:0a:01")
        / IP(src="10.10.10.2", dst="172.22.1.1", id=i)
        / UDP(sport=1000 + i, dport=53)
        / Raw(b"x" * size + b"frame-%d" % i)
    )
    return bytes(pkt)


class Collector:
    def __init__(self):
        self.frames = []

    def __call__(self, port, frame, vnet):
        self.frames.append((port, frame, vnet))


class PortCountersTests(unittest.TestCase):
    def test_drop_and_reset(self):
        c = PortCounters()
        c.rx_packets += 3
        c.drop("acl")
        c.drop("acl", 2)
        c.drop("no-route")
        self.assertEqual(c.as_dict()["drops"], {"acl": 3, "no-route": 1})
        self.assertEqual(c.as_dict()["rx_packets"], 3)
        self.assertIn("rx_packets=3", repr(c))
        c.reset()
        self.assertEqual(c.rx_packets, 0)
        self.assertEqual(c.drops, {})
        for key in ("rx_bytes", "tx_packets", "tx_bytes", "rx_dropped", "tx_dropped", "tx_errors"):
            self.assertEqual(c.as_dict()[key], 0)


class MemoryPortTests(unittest.TestCase):
    def test_provides_iport(self):
        self.assertTrue(verifyObject(IPort, MemoryPort("Ethernet2/0", "02:00:ac:16:01:10")))

    def test_mac_forms(self):
        self.assertEqual(mac_bytes("02:00:ac:16:01:10"), b"\x02\x00\xac\x16\x01\x10")
        self.assertEqual(mac_bytes("0200.ac16.0110"), b"\x02\x00\xac\x16\x01\x10")
        self.assertRaises(ValueError, mac_bytes, "02:00")
        self.assertEqual(MemoryPort("x", "02:00:ac:16:01:10").mac, b"\x02\x00\xac\x16\x01\x10")

    def test_pair_delivers_copies(self):
        a, b = MemoryPort.pair("Ethernet2/1", "Ethernet2/0")
        got = Collector()
        b.attach(got)
        frame = bytearray(udp_frame(1))
        a.send(frame)
        frame[0] = 0xFF  # the router reuses its buffer: what was sent must not change
        self.assertEqual(a.sent, [(udp_frame(1), b"")])
        self.assertEqual(len(got.frames), 1)
        port, received, vnet = got.frames[0]
        self.assertIs(port, b)
        self.assertIsInstance(received, bytearray)
        self.assertEqual(bytes(received), udp_frame(1))
        self.assertEqual(vnet, b"")
        self.assertEqual((a.counters.tx_packets, a.counters.tx_bytes), (1, len(udp_frame(1))))
        self.assertEqual((b.counters.rx_packets, b.counters.rx_bytes), (1, len(udp_frame(1))))

    def test_reply_through_pair(self):
        a, b = MemoryPort.pair()
        got_a = Collector()
        a.attach(got_a)
        b.attach(lambda port, frame, vnet: port.send(frame[6:12] + frame[0:6] + frame[12:], vnet))
        a.send(udp_frame(2))
        self.assertEqual(len(got_a.frames), 1)
        self.assertEqual(bytes(got_a.frames[0][1][0:6]), udp_frame(2)[6:12])

    def test_inject(self):
        p = MemoryPort("Ethernet2/0")
        got = Collector()
        p.attach(got)
        vnet = make_vnet(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 6)
        p.inject(udp_frame(3), vnet)
        self.assertEqual(bytes(got.frames[0][1]), udp_frame(3))
        self.assertEqual(got.frames[0][2], vnet)
        self.assertEqual(parse_vnet(vnet), (1, 0, 0, 0, 34, 6))
        self.assertEqual(parse_vnet(b""), (0, 0, 0, 0, 0, 0))

    def test_oversized_plain_frame_refused_like_linux(self):
        p = MemoryPort("Ethernet2/0", mtu=1500)
        p.send(b"\x00" * 1514)
        self.assertEqual(len(p.sent), 1)
        p.send(b"\x00" * 1515)
        self.assertEqual(len(p.sent), 1)
        self.assertEqual(p.counters.tx_errors, 1)
        self.assertEqual(p.counters.drops, {"emsgsize": 1})
        # 802.1Q tagged frames may be 4 bytes longer
        p.send(b"\x00" * 12 + b"\x81\x00" + b"\x00" * 1504)
        self.assertEqual(len(p.sent), 2)
        # a GSO super-frame passes with its header
        gso = make_vnet(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 66, 1448, 34, 16)
        p.send(b"\x00" * 65000, gso)
        self.assertEqual(p.sent[-1][1], gso)
        self.assertEqual(p.counters.tx_packets, 3)

    def test_stopped_port(self):
        a, b = MemoryPort.pair()
        got = Collector()
        b.attach(got)
        b.stop()
        a.send(udp_frame(4))
        self.assertEqual(got.frames, [])
        self.assertEqual(b.counters.rx_dropped, 1)
        b.start()
        a.send(udp_frame(4))
        self.assertEqual(len(got.frames), 1)
        a.stop()
        a.send(udp_frame(5))
        self.assertEqual(a.counters.tx_dropped, 1)

    def test_take(self):
        p = MemoryPort("x")
        p.send(udp_frame(1))
        p.send(udp_frame(2))
        self.assertEqual(p.take(), [udp_frame(1), udp_frame(2)])
        self.assertEqual(p.sent, [])


class PcapFileTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_write_then_scapy_reads(self):
        frames = [udp_frame(i, size=i * 100) for i in range(5)]
        frames.append(b"\x02" * 9014)  # a jumbo / GSO-sized frame is kept whole
        path = self.path("out.pcap")
        with PcapWriter(path) as w:
            for i, f in enumerate(frames):
                w.write(f, ts=1700000000.25 + i * 0.001001)
        pkts = rdpcap(path)
        self.assertEqual([bytes(p) for p in pkts], frames)
        self.assertAlmostEqual(float(pkts[1].time), 1700000000.25 + 0.001001, places=6)
        self.assertEqual(pkts[0][UDP].dport, 53)
        # and our reader agrees
        with PcapReader(path) as r:
            records = list(r)
            self.assertFalse(r.nanosecond)
            self.assertEqual(r.linktype, 1)
        self.assertEqual([d for _t, d, _l in records], frames)
        self.assertEqual(records[1][0], 1700000000_251001000)

    def test_tcpdump_reads_it(self):
        if shutil.which("tcpdump") is None:
            raise unittest.SkipTest("tcpdump is not installed")
        path = self.path("t.pcap")
        with PcapWriter(path) as w:
            w.write(udp_frame(7), ts=1700000000.0)
        out = subprocess.run(["tcpdump", "-nn", "-r", path], capture_output=True, text=True, timeout=10).stdout
        self.assertIn("10.10.10.2.1007 > 172.22.1.1.53", out)

    def test_read_scapy_files_usec_and_nsec(self):
        pkts = [Ether(bytes.fromhex(udp_frame(i).hex())) for i in range(3)]
        for i, p in enumerate(pkts):
            p.time = Decimal("%d.123456789" % (1600000000 + i))
        wrpcap(self.path("us.pcap"), pkts)
        wrpcap(self.path("ns.pcap"), pkts, nano=True)
        with PcapReader(self.path("ns.pcap")) as r:
            recs = list(r)
            self.assertTrue(r.nanosecond)
        self.assertEqual([d for _t, d, _l in recs], [udp_frame(i) for i in range(3)])
        self.assertEqual(recs[2][0], 1600000002_123456789)
        self.assertEqual(read_frames(self.path("us.pcap")), [udp_frame(i) for i in range(3)])

    def test_big_endian_file(self):
        buf = io.BytesIO()
        buf.write(struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f = udp_frame(9)
        buf.write(struct.pack(">IIII", 10, 5, len(f), len(f)) + f)
        buf.seek(0)
        self.assertEqual(list(PcapReader(buf)), [(10_000_005_000, f, len(f))])

    def test_truncated_and_bad_files(self):
        path = self.path("cut.pcap")
        with PcapWriter(path) as w:
            w.write(udp_frame(1), ts=1.0)
            w.write(udp_frame(2), ts=2.0)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:-5])
        with PcapReader(path) as r:
            self.assertEqual([d for _t, d, _l in r], [udp_frame(1)])
            self.assertTrue(r.truncated)
        self.assertRaises(PcapError, PcapReader, io.BytesIO(b"\x0a\x0d\x0d\x0a" + b"\x00" * 30))
        self.assertRaises(PcapError, PcapReader, io.BytesIO(b"hello world, not a pcap file"))
        self.assertRaises(PcapError, PcapReader, io.BytesIO(b"\xd4\xc3"))

    def test_snaplen(self):
        buf = io.BytesIO()
        w = PcapWriter(buf, snaplen=100)
        w.write(udp_frame(1, size=500), ts=0)
        buf.seek(0)
        (ts, data, orig), = list(PcapReader(buf))
        self.assertEqual(len(data), 100)
        self.assertEqual(orig, len(udp_frame(1, size=500)))


class PcapPortTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.infile = os.path.join(self.dir, "in.pcap")
        # frames captured at t = 0, 0.5, 1.5, 1.5, 3.0
        self.times = [0.0, 0.5, 1.5, 1.5, 3.0]
        with PcapWriter(self.infile) as w:
            for i, t in enumerate(self.times):
                w.write(udp_frame(i), ts=1700000000 + t)
        self.clock = task.Clock()

    def make(self, **kw):
        port = PcapPort("Ethernet2/1", "02:00:0a:0a:0a:01", infile=self.infile, reactor=self.clock, **kw)
        got = Collector()
        port.attach(got)
        return port, got

    def delivered_at(self, port, got, step=0.05, until=10.0):
        """Advance the clock in small steps; return the time each frame arrived."""
        times = []
        port.start()
        for k in range(int(round(until / step)) + 1):
            # set the clock on an exact grid (no float drift from += step)
            self.clock.rightNow = round(k * step, 9)
            self.clock.advance(0)
            while len(times) < len(got.frames):
                times.append(round(self.clock.seconds(), 3))
        return times

    def test_provides_iport(self):
        port, _got = self.make()
        self.assertTrue(verifyObject(IPort, port))

    def test_captured_timing(self):
        port, got = self.make()
        results = []
        port.done.addCallback(results.append)
        times = self.delivered_at(port, got)
        self.assertEqual(times, [0.0, 0.5, 1.5, 1.5, 3.0])
        self.assertEqual([bytes(f) for _p, f, _v in got.frames], [udp_frame(i) for i in range(5)])
        self.assertEqual({v for _p, _f, v in got.frames}, {b""})
        self.assertEqual(results, [5])
        self.assertEqual(port.counters.rx_packets, 5)

    def test_multiplier(self):
        port, got = self.make(multiplier=2.0)
        self.assertEqual(self.delivered_at(port, got), [0.0, 0.25, 0.75, 0.75, 1.5])

    def test_pps(self):
        port, got = self.make(pps=10)
        self.assertEqual(self.delivered_at(port, got, step=0.01), [0.0, 0.1, 0.2, 0.3, 0.4])

    def test_mbps(self):
        port, got = self.make(mbps=0.01)  # 10 kbit/s: a 50-byte frame takes 40 ms
        times = self.delivered_at(port, got, step=0.01)
        gap = len(udp_frame(0)) * 8 / 10000.0
        self.assertEqual(times[:2], [0.0, round(gap, 2)])

    def test_topspeed_loop_limit(self):
        port, got = self.make(topspeed=True, loop=3, limit=12, batch=4)
        results = []
        port.done.addCallback(results.append)
        port.start()
        for _ in range(10):
            self.clock.advance(0)
        self.assertEqual(len(got.frames), 12)
        self.assertEqual(self.clock.seconds(), 0)
        self.assertEqual(bytes(got.frames[5][1]), udp_frame(0))  # second pass
        self.assertEqual(results, [12])

    def test_stop_mid_replay(self):
        port, got = self.make()
        results = []
        port.done.addCallback(results.append)
        port.start()
        self.clock.advance(0)
        self.clock.advance(0.6)
        port.stop()
        self.clock.advance(10)
        self.assertEqual(len(got.frames), 2)
        self.assertEqual(results, [2])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_receiver_error_does_not_stop_replay(self):
        port = PcapPort("x", "02:00:00:00:00:01", infile=self.infile, reactor=self.clock, topspeed=True)
        seen = []

        def bad(p, frame, vnet):
            seen.append(frame)
            raise ValueError("boom")

        port.attach(bad)
        port.start()
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(len(seen), 5)
        self.assertEqual(port.counters.drops, {"receiver-error": 5})
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 5)

    def test_replay_all_and_write(self):
        outfile = os.path.join(self.dir, "out.pcap")
        port = PcapPort("Ethernet2/0", "02:00:ac:16:01:10", infile=self.infile, outfile=outfile, reactor=self.clock)
        # an echo router: send every frame back out, MACs swapped
        port.attach(lambda p, f, v: p.send(f[6:12] + f[0:6] + f[12:], v))
        self.assertEqual(port.replay_all(), 5)
        gso = make_vnet(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 54, 1448, 34, 16)
        big = bytes(
            Ether(src="02:00:ac:16:01:10", dst="02:00:ac:16:01:01")
            / IP(src="172.22.1.16", dst="172.22.1.1")
            / TCP(sport=1025, dport=80, flags="A")
            / Raw(b"y" * 20000)
        )
        port.send(big, gso)  # GSO super-frame: written as it is
        port.send(b"\x00" * 1600)  # plain and over the MTU: refused
        port.stop()
        pkts = rdpcap(outfile)
        self.assertEqual(len(pkts), 6)
        self.assertEqual(pkts[0][Ether].dst, "02:00:0a:0a:0a:02")
        self.assertEqual(pkts[0][UDP].sport, 1000)
        self.assertEqual(bytes(pkts[5]), big)
        self.assertEqual(port.counters.tx_errors, 1)
        self.assertEqual(port.counters.tx_packets, 6)

    def test_bad_arguments_and_files(self):
        self.assertRaises(ValueError, PcapPort, "x", "02:00:00:00:00:01", pps=10, topspeed=True)
        self.assertRaises(ValueError, PcapPort, "x", "02:00:00:00:00:01", pps=0)
        missing = PcapPort("x", "02:00:00:00:00:01", infile=os.path.join(self.dir, "nope.pcap"), reactor=self.clock)
        results = []
        missing.done.addCallback(results.append)
        missing.start()
        self.clock.advance(0)
        self.assertEqual(results, [0])


class HostCheckTests(unittest.TestCase):
    """hostcheck's parsing with canned command output (the real thing runs
    in tests.test_lab)."""

    RULESET = """table netdev guard {
	chain in_drop {
		type filter hook ingress device "eth1" priority -500; policy drop;
	}
	chain both {
		type filter hook ingress devices = { "eth2", eth3 } priority -500; policy drop;
		ip saddr { 10.0.0.1, 10.0.0.2 } counter accept
	}
	chain accepting {
		type filter hook ingress device "eth4" priority 0; policy accept;
	}
}
table inet filter {
	chain input {
		type filter hook input priority 0; policy drop;
		iifname "eth5" drop
	}
}
"""

    def fake(self, addr_json, ruleset="", ethtool="generic-receive-offload: on\n", sysctl=None):
        sysctl = sysctl or {}

        def run(argv):
            if argv[:2] == ["ip", "-j"]:
                return (0, addr_json) if addr_json else (1, 'Device "x" does not exist.')
            if argv[0] == "nft":
                return 0, ruleset
            if argv[0] == "ethtool":
                return 0, ethtool
            raise AssertionError(argv)

        def read(path):
            return sysctl.get(path)

        return run, read

    def test_ingress_drop_devices(self):
        from cbac.dataplane.hostcheck import ingress_drop_devices

        self.assertEqual(ingress_drop_devices(self.RULESET), {"eth1", "eth2", "eth3"})
        self.assertEqual(ingress_drop_devices(""), set())

    def test_clean_device(self):
        from cbac.dataplane.hostcheck import check_device

        addr = '[{"ifname":"eth1","flags":["BROADCAST","UP","LOWER_UP"],"addr_info":[]}]'
        run, read = self.fake(addr, self.RULESET, sysctl={
            "/proc/sys/net/ipv6/conf/eth1/disable_ipv6": "1", "/proc/sys/net/ipv4/ip_forward": "0"})
        self.assertEqual(check_device("eth1", run=run, read=read), [])

    def test_everything_wrong(self):
        from cbac.dataplane.hostcheck import check_device

        addr = ('[{"ifname":"eth4","flags":["BROADCAST"],"addr_info":['
                '{"family":"inet","local":"192.0.2.1","prefixlen":24},'
                '{"family":"inet6","local":"fe80::1","prefixlen":64}]}]')
        run, read = self.fake(addr, self.RULESET, ethtool="generic-receive-offload: off\n", sysctl={
            "/proc/sys/net/ipv6/conf/eth4/disable_ipv6": "0", "/proc/sys/net/ipv4/ip_forward": "1"})
        w = check_device("eth4", run=run, read=read)
        self.assertEqual(len(w), 6, w)
        self.assertTrue(w[0].startswith("device is administratively down"))
        self.assertIn("kernel addresses 192.0.2.1/24, fe80::1/64", w[1])
        self.assertIn("disable_ipv6=1", w[2])
        self.assertIn("no nftables netdev ingress drop chain", w[3])
        self.assertIn("ip_forward=1", w[4])
        self.assertIn("ethtool -K eth4 gro on", w[5])

    def test_forwarding_harmless_behind_the_drop_chain(self):
        """The kernel never sees a hidden port's packets, so ip_forward=1
        (needed by other interfaces of the machine) is no problem."""
        from cbac.dataplane.hostcheck import check_device

        addr = '[{"ifname":"eth1","flags":["BROADCAST","UP","LOWER_UP"],"addr_info":[]}]'
        run, read = self.fake(addr, self.RULESET, sysctl={
            "/proc/sys/net/ipv6/conf/eth1/disable_ipv6": "1", "/proc/sys/net/ipv4/ip_forward": "1"})
        self.assertEqual(check_device("eth1", run=run, read=read), [])

    def test_missing_device_and_no_nft(self):
        from cbac.dataplane.hostcheck import check_device

        run, read = self.fake(None)
        self.assertEqual(len(check_device("nope", run=run, read=read)), 1)
        self.assertIn("no such device", check_device("nope", run=run, read=read)[0])

        addr = '[{"ifname":"eth1","flags":["UP","LOWER_UP"],"addr_info":[]}]'

        def run2(argv):
            if argv[0] == "nft":
                return None, "No such file or directory: 'nft'"
            return run_ok(argv)

        run_ok, _ = self.fake(addr)
        w = check_device("eth1", run=run2, read=lambda p: None)
        self.assertEqual(len(w), 1)
        self.assertIn("cannot check nftables", w[0])
