"""The session table's side of the kernel fast path, against a fake map.

The appliance runs the seed configuration on memory ports (as in
tests/test_fastpath.py); the eBPF maps are replaced by a dictionary, so
these tests run anywhere and check what cbac writes into the maps and what
it does with what the kernel reports: entries per direction with the NAT
rewrite, state taken back before Python judges a packet the kernel passed
up, counters and last-seen feeding the idle timer, flushes on reload,
clear and debug, a full map, and the ``show cbac fastpath`` output.
(tests/test_offload.py and tests/test_lab_offload.py run the real
program.)"""

import errno
import socket
import struct
import time

from scapy.all import ICMP, IP, TCP, Ether
from twisted.trial import unittest

from cbac.dataplane import offload as off
from cbac.dataplane import flowoffload
from cbac.dataplane.flowoffload import FlowOffloader
from tests.test_fastpath import FastPathTests, IcmpFastPathTests, H_IN, H_OUT, R_IN, R_OUT


class FakeOffload:
    slots = 1000

    def __init__(self):
        self.flows = {}
        self.tcp = {}
        self.full = False
        self.closed = False

    def put_flow(self, key, value):
        if self.full:
            raise OSError(errno.E2BIG, "full")
        self.flows[key] = list(off.FLOW_VAL.unpack(value))

    def delete_flow(self, key):
        return self.flows.pop(key, None) is not None

    def get_flow(self, key):
        v = self.flows.get(key)
        return tuple(v) if v else None

    def counters(self, keys):
        return {k: (self.flows[k][12], self.flows[k][13], self.flows[k][14])
                for k in keys if k in self.flows}

    def dump_flows(self):
        return [(k, tuple(v)) for k, v in self.flows.items()]

    def put_tcp_state(self, slot, end, maxend, maxwin, scale):
        self.tcp[slot] = [list(end), list(maxend), list(maxwin), list(scale)]

    def get_tcp_state(self, slot):
        e, m, w, _s = self.tcp[slot]
        return tuple(e), tuple(m), tuple(w)

    def get_tcp_dir(self, slot, d):
        e, m, w, sc = self.tcp[slot]
        return e[d], m[1 - d], w[d], sc[d]

    def put_tcp_dir(self, slot, d, end, maxend_peer, maxwin, scale):
        e, m, w, sc = self.tcp[slot]
        e[d], m[1 - d], w[d], sc[d] = end, maxend_peer, maxwin, scale

    def stats(self):
        return {n: 0 for n in off.STAT_NAMES}

    def close(self):
        self.closed = True


def _key(src, dst, sp, dp, proto=6):
    return off.flow_key(socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sp, dp),
                        proto)


KC = _key("10.10.10.2", "172.22.1.1", 40000, 8080)
KS = _key("172.22.1.1", "172.22.1.16", 8080, 40000)


class FlowOffloaderTests(FastPathTests):
    """Reuses FastPathTests' appliance; its own tests run too, with the
    offloader attached (the Python fast path must behave the same)."""

    def setUp(self):
        FastPathTests.setUp(self)
        self.patch(flowoffload, "MIN_PACKETS", 3)
        self.fake = FakeOffload()
        self.fo = FlowOffloader(self.fake, self.r, self.app.sessions, self.clock)
        self.fo._ifindex = {"Ethernet2/1": 11, "Ethernet2/0": 12}
        self.app.sessions.offload = self.fo
        self.r.offload = self.fo
        self.app.offloader = self.fo

    def offload_flow(self):
        self.establish()
        for i in range(3):
            self.inject(self.pin, self.c2s("PA", 101 + 5 * i, 5001, b"hello"))
        self.sent(self.pout)
        [s] = self.app.sessions.sessions.values()
        return s

    def test_established_session_gets_an_entry_per_direction(self):
        s = self.offload_flow()
        self.assertIn(s, self.fo.flows)
        self.assertEqual(set(self.fake.flows), {KC, KS})
        c = self.fake.flows[KC]
        # rewrite to the PAT address, client->server, egress outside
        self.assertEqual((socket.inet_ntoa(c[0]), socket.inet_ntoa(c[1])), ("172.22.1.16", "172.22.1.1"))
        self.assertEqual(struct.unpack("!HH", c[2] + c[3]), (40000, 8080))
        self.assertEqual((c[4], c[5]), (11, 12))
        self.assertEqual((c[6], c[7], c[8]), (bytes.fromhex(R_IN.replace(":", "")),
                                              bytes.fromhex(H_OUT.replace(":", "")),
                                              bytes.fromhex(R_OUT.replace(":", ""))))
        self.assertEqual((c[9], c[10] & off.F_TCP), (0, off.F_TCP))
        v = self.fake.flows[KS]
        self.assertEqual(socket.inet_ntoa(v[1]), "10.10.10.2")
        self.assertEqual((v[4], v[5], v[9]), (12, 11, 1))
        e, m, w, _sc = self.fake.tcp[c[11]]
        self.assertEqual(e, s.tcp.v[2:4])
        self.assertEqual(m, s.tcp.v[4:6])

    def test_fin_after_kernel_forwarding_is_judged_on_the_kernels_window(self):
        """The kernel forwarded 100 KB; the client's FIN beyond what Python
        saw must be accepted (Python takes the kernel's window first)."""
        s = self.offload_flow()
        slot = self.fo.flows[s].slot
        end, maxend, maxwin, sc = self.fake.tcp[slot]
        end[0] += 100000
        maxend[0] += 100000
        maxend[1] += 100000
        end[1] += 0
        fin_seq = end[0]
        self.inject(self.pin, self.c2s("FA", fin_seq, 5001))
        [f] = self.sent(self.pout)
        self.assertTrue(Ether(f)[TCP].flags & 1)
        self.assertNotIn(s, self.fo.flows)
        self.assertEqual(self.fake.flows, {})
        self.assertEqual(self.fo.reclaim_reasons, {"slow-path": 1})

    def test_out_of_window_segment_passed_up_is_dropped(self):
        s = self.offload_flow()
        self.inject(self.pin, self.c2s("PA", (101 + 10 ** 6) & 0xFFFFFFFF, 5001, b"x"))
        self.assertEqual(self.sent(self.pout), [])
        self.assertNotIn(s, self.fo.flows)

    def test_frame_queued_before_the_offload_is_forwarded_and_window_pushed(self):
        s = self.offload_flow()
        slot = self.fo.flows[s].slot
        self.inject(self.pin, self.c2s("PA", 116, 5001, b"queued"))
        self.assertEqual(len(self.sent(self.pout)), 1)
        self.assertIn(s, self.fo.flows)                    # still offloaded
        self.assertEqual(self.fake.tcp[slot][0][0], 116 + 6)  # the kernel knows the bytes

    def test_kernel_counters_keep_the_session_alive_and_counted(self):
        s = self.offload_flow()
        idle = s.idle
        pk0 = s.pkts[0]
        for _ in range(int(idle) + 5):
            self.fake.flows[KC][12] += 10
            self.fake.flows[KC][13] += 1000
            self.fake.flows[KC][14] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            self.clock.advance(1.0)
        self.assertFalse(s.dead)
        self.assertEqual(s.pkts[0], pk0 + 10 * (int(idle) + 5))
        # the kernel stops forwarding: the idle timer runs out and the
        # entries are removed with the session
        self.clock.advance(idle + 5)
        self.assertTrue(s.dead)
        self.assertEqual(self.fake.flows, {})

    def test_clear_reload_and_debug_flush(self):
        s = self.offload_flow()
        self.app.apply(self.app.model)
        self.assertEqual(self.fake.flows, {})
        self.assertFalse(s.dead)
        # routes are relearnt (a reload rebuilds interfaces): one packet
        # each way and the session is offloaded again
        self.inject(self.pin, self.c2s("PA", 116, 5001, b"again"))
        self.assertNotIn(s, self.fo.flows)
        self.inject(self.pout, self.s2c("A", 5001, 121))
        self.inject(self.pin, self.c2s("PA", 121, 5001, b"again"))
        self.assertIn(s, self.fo.flows)
        self.app.debug("tcp", True)
        self.addCleanup(self.app.undebug_all)
        self.assertEqual(self.fake.flows, {})
        self.app.undebug_all()
        self.inject(self.pin, self.c2s("PA", 126, 5001, b"again"))
        self.assertIn(s, self.fo.flows)
        self.app.clear("ip inspect sessions")
        self.assertEqual(self.fake.flows, {})
        self.assertTrue(s.dead)

    def test_map_full_keeps_the_session_in_python(self):
        self.fake.full = True
        s = self.offload_flow()
        self.assertNotIn(s, self.fo.flows)
        self.assertEqual(self.fake.flows, {})
        self.assertGreater(self.fo.refused_full, 0)
        self.inject(self.pin, self.c2s("PA", 116, 5001, b"more"))
        self.assertEqual(len(self.sent(self.pout)), 1)

    def test_icmp_echo_session_gets_an_entry_per_direction(self):
        """Keyed by addresses + identifier (dport 0), the identifier's PAT
        rewrite, the type each direction carries in the slot field; a reply
        from the initiator's side reaches Python, which takes the session
        back and drops it."""
        ping, pong = IcmpFastPathTests.ping, IcmpFastPathTests.pong
        self.inject(self.pin, ping(self, 0x1234, 1))
        [f] = self.sent(self.pout)
        nat_id = Ether(f)[ICMP].id
        for seq in range(1, 4):
            if seq > 1:
                self.inject(self.pin, ping(self, 0x1234, seq))
            self.inject(self.pout, pong(self, nat_id, seq))
        [s] = self.app.sessions.sessions.values()
        self.assertIn(s, self.fo.flows)
        kc = _key("10.10.10.2", "172.22.1.1", 0x1234, 0, 1)
        ks = _key("172.22.1.1", "172.22.1.16", nat_id, 0, 1)
        self.assertEqual(set(self.fake.flows), {kc, ks})
        c, v = self.fake.flows[kc], self.fake.flows[ks]
        self.assertEqual((socket.inet_ntoa(c[0]), socket.inet_ntoa(c[1])), ("172.22.1.16", "172.22.1.1"))
        self.assertEqual(struct.unpack("!HH", c[2] + c[3]), (nat_id, 0))
        self.assertEqual((c[9], c[10] & off.F_TCP, c[11]), (0, 0, 8))
        self.assertEqual(struct.unpack("!HH", v[2] + v[3]), (0x1234, 0))
        self.assertEqual((socket.inet_ntoa(v[1]), v[9], v[11]), ("10.10.10.2", 1, 0))
        self.sent(self.pin)
        self.sent(self.pout)
        self.inject(self.pin, ping(self, 0x1234, 9, typ=0))
        self.assertEqual(self.sent(self.pout), [])
        self.assertNotIn(s, self.fo.flows)
        self.assertEqual(self.fake.flows, {})

    def test_application_inspected_session_is_not_offloaded(self):
        s = self.offload_flow()
        self.fo.flush()
        s.stream = object()
        self.clock.advance(10)
        self.assertFalse(self.fo.consider(s))
        s.stream = None

    def test_no_cbac_fastpath_offload(self):
        self.fo.set_enabled(False)
        s = self.offload_flow()
        self.assertNotIn(s, self.fo.flows)
        self.assertIn("disabled", self.app.show_cbac_fastpath())

    def test_show_cbac_fastpath(self):
        self.offload_flow()
        out = self.app.show_cbac_fastpath()
        self.assertIn("Offloaded sessions: 1 (2 flow entries)", out)
        self.assertIn("Installed 1", out)
