"""The kernel fast path (cbac/dataplane/bpf/fastpath.bpf.c) by itself.

Flow entries are installed by hand in a namespace lab (cbac mode: the
firewall namespace's kernel drops everything at the nftables netdev
ingress chain, so a frame reaches the far host only when the eBPF program
forwarded it).  Frames are made with scapy at the inside or outside host
and captured at the other end with an AF_PACKET socket; the assertions are
on the captured bytes: addresses and ports rewritten, TTL - 1, MACs, and
every checksum recomputed from scratch.  The pass-to-userspace cases (SYN,
FIN, RST, URG, out-of-window, fragments, IP options, TTL <= 1, oversize,
wrong port, unknown flow) must not arrive at the far host and must reach
an AF_PACKET socket carrying the socket filter, as cbac's port would.
"""

import atexit
import errno
import os
import select
import socket
import struct
import subprocess
import time

from twisted.trial import unittest

from cbac import lab as labmod
from cbac.dataplane import offload as off
from cbac.dataplane.linux import in_netns

try:
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
    from scapy.layers.l2 import Ether
except ImportError:  # pragma: no cover
    IP = None

SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 3

CLIENT = "10.10.10.2"
SERVER = "172.22.1.1"
GLOBAL = "172.22.1.16"
CPORT, SPORT, GPORT = 40000, 5001, 1024


def _a(ip):
    return socket.inet_aton(ip)


def _mac(text):
    return bytes.fromhex(text.replace(":", ""))


def offload_skip_reason():
    """Why the offload cannot be tested here, or None (builds the object
    when it is missing and clang is there)."""
    if os.geteuid() != 0:
        return "the eBPF fast path needs root (CAP_BPF, CAP_NET_ADMIN)"
    r = labmod.unavailable_reason()
    if r:
        return r
    if IP is None:
        return "scapy is not installed"
    path = off.default_object_path()
    if not os.path.exists(path):
        err = off.build_object()
        if err:
            return "the eBPF object could not be built: %s" % err
    o, why = off.open_offload(max_flows=64)
    if o is None:
        return why
    o.close()
    return None


class _Lab:
    lab = None
    users = 0


def _lab():
    if _Lab.lab is None:
        lab = labmod.Lab(mode="cbac")
        lab.up()
        _Lab.lab = lab
        atexit.register(_lab_down)
        for ns, gw, mac in (("in", labmod.INSIDE_GW, labmod.INSIDE_MAC),
                            ("out", GLOBAL, labmod.OUTSIDE_MAC)):
            lab.exec(ns, ["ip", "neigh", "replace", gw, "lladdr", mac, "dev", "eth0"], check=True)
    return _Lab.lab


def _lab_down():
    lab = _Lab.lab
    _Lab.lab = None
    if lab is not None:
        lab.down()


def _raw(ns, dev="eth0", ignore_outgoing=True):
    with in_netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    if ignore_outgoing:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.bind((dev, ETH_P_ALL))
    s.setblocking(False)
    return s


def _drain(s):
    while True:
        try:
            s.recv(65536)
        except BlockingIOError:
            return


def _collect(s, match, timeout=0.5):
    out = []
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return out
        r, _, _ = select.select([s], [], [], left)
        if not r:
            return out
        try:
            f = s.recv(65536)
        except BlockingIOError:
            continue
        if match(f):
            out.append(f)


def _is_ip_between(a, b):
    a, b = _a(a), _a(b)
    return lambda f: len(f) >= 34 and f[12:14] == b"\x08\x00" and f[26:30] == a and f[30:34] == b


def _ones(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _checksums_ok(frame):
    """Verify the IP header and TCP/UDP checksums of a captured frame from
    scratch (ones'-complement sum over header / pseudo-header + segment
    must be 0xFFFF)."""
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    if _ones(bytes(ip[:ihl])) != 0xFFFF:
        return False
    total = int.from_bytes(ip[2:4], "big")
    proto = ip[9]
    seg = bytes(ip[ihl:total])
    if proto == 17 and seg[6:8] == b"\0\0":
        return True
    if proto in (6, 17):
        pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, proto, len(seg))
        return _ones(pseudo + seg) == 0xFFFF
    if proto == 1:
        return _ones(seg) == 0xFFFF
    return True


class OffloadProgramTest(unittest.TestCase):
    """Hand-installed flow entries, standalone mode (tc decides alone) and
    with the socket filter in front (the deployment)."""

    def setUp(self):
        reason = offload_skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        self.lab = lab = _lab()
        self.o = off.Offload(max_flows=256)
        self.addCleanup(self.o.close)
        fw = lab.fw_ns
        probe = _raw(fw, "inside")
        self.if_in = off.ifindex(probe, "inside")
        self.if_out = off.ifindex(probe, "outside")
        probe.close()
        self.o.attach_tc(self.if_in, fw)
        self.o.attach_tc(self.if_out, fw)
        self.o.set_standalone(True)
        self.tx_in = _raw(lab.in_ns)
        self.tx_out = _raw(lab.out_ns)
        self.rx_in = self.tx_in
        self.rx_out = self.tx_out
        self.addCleanup(self.tx_in.close)
        self.addCleanup(self.tx_out.close)

    def tearDown(self):
        pass

    # --- helpers -------------------------------------------------------------

    def install(self, proto=6, client_end=1000, server_end=2000, win=65535):
        """The entries of one translated flow, as cbac installs them."""
        o = self.o
        kc = off.flow_key(_a(CLIENT) + _a(SERVER) + struct.pack("!HH", CPORT, SPORT), proto)
        ks = off.flow_key(_a(SERVER) + _a(GLOBAL) + struct.pack("!HH", SPORT, GPORT), proto)
        tcp = proto == 6
        o.put_flow(kc, off.pack_flow(_a(GLOBAL) + _a(SERVER) + struct.pack("!HH", GPORT, SPORT),
                                     self.if_in, self.if_out, _mac(labmod.INSIDE_MAC),
                                     _mac(labmod.OUT_MAC), _mac(labmod.OUTSIDE_MAC), 0, tcp, 0, True))
        o.put_flow(ks, off.pack_flow(_a(SERVER) + _a(CLIENT) + struct.pack("!HH", SPORT, CPORT),
                                     self.if_out, self.if_in, _mac(labmod.OUTSIDE_MAC),
                                     _mac(labmod.IN_MAC), _mac(labmod.INSIDE_MAC), 1, tcp, 0, True))
        if tcp:
            o.put_tcp_state(0, (client_end, server_end), (server_end + win, client_end + win),
                            (win, win), (0, 0))
        return kc, ks

    def c2s(self, l4, ttl=64, **ipkw):
        return bytes(Ether(dst=labmod.INSIDE_MAC, src=labmod.IN_MAC)
                     / IP(src=CLIENT, dst=SERVER, ttl=ttl, **ipkw) / l4)

    def s2c(self, l4, ttl=64):
        return bytes(Ether(dst=labmod.OUTSIDE_MAC, src=labmod.OUT_MAC)
                     / IP(src=SERVER, dst=GLOBAL, ttl=ttl) / l4)

    def send_c2s(self, frame, timeout=0.4):
        _drain(self.rx_out)
        self.tx_in.send(frame)
        return _collect(self.rx_out, _is_ip_between(GLOBAL, SERVER), timeout)

    def send_s2c(self, frame, timeout=0.4):
        _drain(self.rx_in)
        self.tx_out.send(frame)
        return _collect(self.rx_in, _is_ip_between(SERVER, CLIENT), timeout)

    # --- forwarding -----------------------------------------------------------

    def test_tcp_forwarded_with_nat_ttl_macs_and_checksums(self):
        self.install()
        got = self.send_c2s(self.c2s(TCP(sport=CPORT, dport=SPORT, flags="PA", seq=1000,
                                         ack=2000, window=1000) / (b"x" * 100)))
        self.assertEqual(len(got), 1)
        p = Ether(got[0])
        self.assertEqual((p.src, p.dst), (labmod.OUTSIDE_MAC, labmod.OUT_MAC))
        self.assertEqual((p[IP].src, p[IP].dst, p[IP].ttl), (GLOBAL, SERVER, 63))
        self.assertEqual((p[TCP].sport, p[TCP].dport, p[TCP].seq), (GPORT, SPORT, 1000))
        self.assertTrue(_checksums_ok(got[0]), p.show(dump=True))
        bad = bytearray(got[0])
        bad[-1] ^= 1
        self.assertFalse(_checksums_ok(bytes(bad)))     # the check can fail
        # the reply direction: un-NAT to the client
        got = self.send_s2c(self.s2c(TCP(sport=SPORT, dport=GPORT, flags="A", seq=2000,
                                         ack=1100, window=1000) / b"y"))
        self.assertEqual(len(got), 1)
        p = Ether(got[0])
        self.assertEqual((p.src, p.dst), (labmod.INSIDE_MAC, labmod.IN_MAC))
        self.assertEqual((p[IP].src, p[IP].dst, p[IP].ttl), (SERVER, CLIENT, 63))
        self.assertEqual((p[TCP].sport, p[TCP].dport), (SPORT, CPORT))
        self.assertTrue(_checksums_ok(got[0]))
        st = self.o.stats()
        self.assertEqual(st["forwarded"], 2)
        # counters and last-seen read back
        kc, _ = off.flow_key(_a(CLIENT) + _a(SERVER) + struct.pack("!HH", CPORT, SPORT), 6), None
        v = self.o.get_flow(kc)
        self.assertEqual((v[12], v[13]), (1, 100))
        self.assertGreater(v[14], 0)
        # the window moved: the client's end is now 1100
        end, _maxend, _maxwin = self.o.get_tcp_state(0)
        self.assertEqual(end[0], 1100)

    def test_udp_forwarded_checksum_and_zero_checksum(self):
        self.install(proto=17)
        got = self.send_c2s(self.c2s(UDP(sport=CPORT, dport=SPORT) / (b"u" * 64)))
        self.assertEqual(len(got), 1)
        p = Ether(got[0])
        self.assertEqual((p[IP].src, p[UDP].sport, p[IP].ttl), (GLOBAL, GPORT, 63))
        self.assertNotEqual(p[UDP].chksum, 0)
        self.assertTrue(_checksums_ok(got[0]))
        frame = bytearray(self.c2s(UDP(sport=CPORT, dport=SPORT) / (b"u" * 64)))
        frame[40:42] = b"\0\0"          # no UDP checksum: stays none
        got = self.send_c2s(bytes(frame))
        self.assertEqual(len(got), 1)
        self.assertEqual(Ether(got[0])[UDP].chksum, 0)
        self.assertTrue(_checksums_ok(got[0]))

    def test_partial_checksum_from_kernel_socket(self):
        """A datagram sent by the inside host's kernel with veth checksum
        offload on (CHECKSUM_PARTIAL): the far end gets the pseudo-header
        sum of the translated addresses, which its NIC would finish."""
        self.install(proto=17)
        _drain(self.rx_out)
        with in_netns(self.lab.in_ns):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(u.close)
        u.bind((CLIENT, CPORT))
        u.sendto(b"p" * 200, (SERVER, SPORT))
        got = _collect(self.rx_out, _is_ip_between(GLOBAL, SERVER), 0.5)
        self.assertEqual(len(got), 1)
        f = got[0]
        length = 8 + 200
        s = (int.from_bytes(_a(GLOBAL)[:2], "big") + int.from_bytes(_a(GLOBAL)[2:], "big")
             + int.from_bytes(_a(SERVER)[:2], "big") + int.from_bytes(_a(SERVER)[2:], "big")
             + 17 + length)
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        field = int.from_bytes(f[40:42], "big")
        full = UDP(bytes(IP(f[14:]).payload))
        # veth keeps CHECKSUM_PARTIAL: the field is the pseudo-header sum
        # of the translated addresses (the receiver's stack finishes it)
        self.assertEqual(field, s)
        self.assertEqual(Ether(f)[UDP].sport, GPORT)
        self.assertEqual(full.len, length)

    def install_icmp(self):
        """An echo session's entries: the identifier CPORT is translated to
        GPORT; the client's direction carries requests (8), the server's
        replies (0), in the slot field."""
        o = self.o
        kc = off.flow_key(_a(CLIENT) + _a(SERVER) + struct.pack("!H", CPORT), 1)
        ks = off.flow_key(_a(SERVER) + _a(GLOBAL) + struct.pack("!H", GPORT), 1)
        o.put_flow(kc, off.pack_flow(_a(GLOBAL) + _a(SERVER) + struct.pack("!HH", GPORT, 0),
                                     self.if_in, self.if_out, _mac(labmod.INSIDE_MAC),
                                     _mac(labmod.OUT_MAC), _mac(labmod.OUTSIDE_MAC), 0, False, 8, True))
        o.put_flow(ks, off.pack_flow(_a(SERVER) + _a(CLIENT) + struct.pack("!HH", CPORT, 0),
                                     self.if_out, self.if_in, _mac(labmod.OUTSIDE_MAC),
                                     _mac(labmod.IN_MAC), _mac(labmod.INSIDE_MAC), 1, False, 0, True))
        return kc, ks

    def test_icmp_echo_forwarded_with_nat_of_the_identifier(self):
        kc, _ = self.install_icmp()
        got = self.send_c2s(self.c2s(ICMP(type=8, id=CPORT, seq=7) / (b"e" * 56)))
        self.assertEqual(len(got), 1)
        p = Ether(got[0])
        self.assertEqual((p.src, p.dst), (labmod.OUTSIDE_MAC, labmod.OUT_MAC))
        self.assertEqual((p[IP].src, p[IP].dst, p[IP].ttl), (GLOBAL, SERVER, 63))
        self.assertEqual((p[ICMP].type, p[ICMP].id, p[ICMP].seq), (8, GPORT, 7))
        self.assertTrue(_checksums_ok(got[0]), p.show(dump=True))
        bad = bytearray(got[0])
        bad[-1] ^= 1
        self.assertFalse(_checksums_ok(bytes(bad)))     # the check can fail
        got = self.send_s2c(self.s2c(ICMP(type=0, id=GPORT, seq=7) / (b"e" * 56)))
        self.assertEqual(len(got), 1)
        p = Ether(got[0])
        self.assertEqual((p[IP].src, p[IP].dst, p[IP].ttl), (SERVER, CLIENT, 63))
        self.assertEqual((p[ICMP].type, p[ICMP].id, p[ICMP].seq), (0, CPORT, 7))
        self.assertTrue(_checksums_ok(got[0]))
        v = self.o.get_flow(kc)
        self.assertEqual((v[12], v[13]), (1, 56))

    def test_icmp_of_an_unexpected_type_goes_to_userspace(self):
        self.install_icmp()
        # a reply from the initiator, a timestamp on an echo session, an
        # error quoting nothing of it, with the session's key
        for t in (0, 13, 3):
            self._assert_passed(self.c2s(ICMP(type=t, id=CPORT, seq=1) / (b"x" * 8)), "not-eligible")
        self.assertEqual(len(self.send_c2s(self.c2s(ICMP(type=8, id=CPORT, seq=1) / (b"x" * 8)))), 1)
        # shorter than the 50 bytes the program reads: Python's
        self._assert_passed(self.c2s(ICMP(type=8, id=CPORT, seq=1)), "not-eligible")

    # --- pass to userspace ----------------------------------------------------

    def _assert_passed(self, frame, reason):
        before = self.o.stats()[reason]
        got = self.send_c2s(frame, timeout=0.3)
        self.assertEqual(got, [], "forwarded but must go to userspace")
        self.assertEqual(self.o.stats()[reason], before + 1)

    def test_decisions_go_to_userspace(self):
        self.install()
        ok = dict(sport=CPORT, dport=SPORT, seq=1000, ack=2000, window=1000)
        for flags in ("S", "FA", "R", "RA", "AU", "SA", ""):
            self._assert_passed(self.c2s(TCP(flags=flags, **ok)), "not-eligible")
        self._assert_passed(self.c2s(TCP(flags="A", **ok), ttl=1), "not-eligible")
        self._assert_passed(self.c2s(TCP(flags="A", **ok) / (b"z" * 8), flags="MF"), "not-eligible")
        self._assert_passed(self.c2s(TCP(flags="A", **ok) / (b"z" * 8), frag=10), "not-eligible")
        self._assert_passed(self.c2s(TCP(flags="A", **ok), options=[IPOption_NOP()] * 4),
                            "not-eligible")
        far = dict(ok, seq=1000 + 300000)
        self._assert_passed(self.c2s(TCP(flags="A", **far) / b"z"), "out-of-window")
        behind = dict(ok, seq=(1000 - 200000) & 0xFFFFFFFF)
        self._assert_passed(self.c2s(TCP(flags="A", **behind) / b"z"), "out-of-window")
        badack = dict(ok, ack=2000 + 5000)
        self._assert_passed(self.c2s(TCP(flags="A", **badack)), "out-of-window")
        unknown = dict(ok, sport=CPORT + 1)
        self._assert_passed(self.c2s(TCP(flags="A", **unknown)), "miss")
        # the client's tuple arriving on the outside port
        before = self.o.stats()["wrong-port"]
        _drain(self.rx_in)
        self.tx_out.send(bytes(Ether(dst=labmod.OUTSIDE_MAC, src=labmod.OUT_MAC)
                               / IP(src=CLIENT, dst=SERVER) / TCP(flags="A", **ok)))
        time.sleep(0.2)
        self.assertEqual(self.o.stats()["wrong-port"], before + 1)
        # still forwarding what is fine
        self.assertEqual(len(self.send_c2s(self.c2s(TCP(flags="A", **ok)))), 1)

    def test_oversize_for_egress_mtu_goes_to_userspace(self):
        self.install()
        self.lab.exec("fw", ["ip", "link", "set", "outside", "mtu", "1000"], check=True)
        self.addCleanup(self.lab.exec, "fw", ["ip", "link", "set", "outside", "mtu", "1500"])
        ok = dict(sport=CPORT, dport=SPORT, seq=1000, ack=2000, window=1000, flags="A")
        self._assert_passed(self.c2s(TCP(**ok) / (b"o" * 1200)), "oversize")
        self.assertEqual(len(self.send_c2s(self.c2s(TCP(**ok) / (b"o" * 900)))), 1)

    # --- with the socket filter (cbac's AF_PACKET socket) ------------------------

    def test_socket_filter_takes_the_decision(self):
        """Offloaded frames never reach the port's AF_PACKET socket; frames
        needing a decision reach it and are not forwarded by the kernel."""
        self.install()
        self.o.set_standalone(False)
        sock = _raw(self.lab.fw_ns, "inside")
        self.addCleanup(sock.close)
        self.o.attach_socket(sock)
        _drain(sock)
        ok = dict(sport=CPORT, dport=SPORT, seq=1000, ack=2000, window=1000)
        mine = _is_ip_between(CLIENT, SERVER)
        got = self.send_c2s(self.c2s(TCP(flags="A", **ok) / (b"d" * 10)))
        self.assertEqual(len(got), 1)
        self.assertEqual(_collect(sock, mine, 0.2), [])
        for flags in ("FA", "R", "S"):
            got = self.send_c2s(self.c2s(TCP(flags=flags, **ok)), timeout=0.3)
            self.assertEqual(got, [])
            self.assertEqual(len(_collect(sock, mine, 0.3)), 1, flags)
        far = dict(ok, seq=1000 + 300000)
        self.assertEqual(self.send_c2s(self.c2s(TCP(flags="A", **far))), [])
        self.assertEqual(len(_collect(sock, mine, 0.3)), 1)
        st = self.o.stats()
        self.assertEqual(st["socket-filter-dropped"], st["forwarded"])
        # without a socket filter note (standalone off) tc forwards nothing
        sock2 = _raw(self.lab.fw_ns, "outside")
        self.addCleanup(sock2.close)
        got = self.send_s2c(self.s2c(TCP(sport=SPORT, dport=GPORT, flags="A", seq=2000,
                                         ack=1010, window=1000)))
        self.assertEqual(got, [])

    def test_delete_and_flush(self):
        kc, ks = self.install()
        self.assertEqual(len(self.o.dump_flows()), 2)
        self.assertTrue(self.o.delete_flow(kc))
        ok = dict(sport=CPORT, dport=SPORT, seq=1000, ack=2000, window=1000, flags="A")
        self.assertEqual(self.send_c2s(self.c2s(TCP(**ok))), [])
        self.assertEqual(self.o.flush_flows(), 1)
        self.assertEqual(self.o.dump_flows(), [])

    def test_map_update_costs_microseconds(self):
        kc, _ = self.install()
        v = self.o.get_flow(kc)
        packed = off.FLOW_VAL.pack(*v)
        t = time.perf_counter()
        for _ in range(2000):
            self.o.put_flow(kc, packed)
        per = (time.perf_counter() - t) / 2000
        self.assertLess(per, 100e-6)


class OffloadUnavailableTest(unittest.TestCase):
    def test_missing_object_is_a_reason_not_a_crash(self):
        o, why = off.open_offload(path="/nonexistent/fastpath.bpf.o")
        self.assertIsNone(o)
        self.assertIn("not built", why)


class BuildObjectTest(unittest.TestCase):
    """Building the object when it is missing (as offload_skip_reason does)
    is safe while another process builds it too (trial -j2 workers)."""

    def test_concurrent_builds_all_succeed_atomically(self):
        import shutil
        import threading
        if shutil.which("clang") is None:
            raise unittest.SkipTest("clang is not installed (make test installs it as root)")
        d = self.mktemp()
        os.makedirs(d)
        out = os.path.join(d, off.OBJECT_NAME)
        results = []
        threads = [threading.Thread(target=lambda: results.append(off.build_object(out)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [None] * 4)
        with open(out, "rb") as f:
            self.assertEqual(f.read(4), b"\x7fELF")
        self.assertEqual(os.listdir(d), [off.OBJECT_NAME])
