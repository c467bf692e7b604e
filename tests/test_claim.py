"""cbac takes its ports from the kernel and gives them back
(cbac.dataplane.claim), against a simulated ``ip``/``nft``/``ethtool``.
The real thing runs in tests/test_lab_claim.py."""

import json
import os
import tempfile

from twisted.trial import unittest

from cbac.dataplane.claim import TABLE, ClaimError, PortClaim, chain_name, nft_ruleset


class FakeHost:
    """Just enough of a Linux host for the claim: addresses, routes, the
    IPv6 sysctl, link state, GRO/TSO/GSO and nftables tables."""

    def __init__(self):
        self.dev = {
            "eth1": {"up": False, "addrs": [("inet", "192.0.2.1", 24, "192.0.2.255")],
                     "routes": [{"dst": "192.0.2.0/24", "protocol": "kernel", "scope": "link"},
                                {"dst": "198.51.100.0/24", "gateway": "192.0.2.254", "protocol": "boot"}],
                     "v6": "0", "gro": "off", "tso": "on", "gso": "on"},
        }
        self.tables = {}
        self.clsact = set()            # devices with a clsact qdisc (the fast path's tc hook)
        self.log = []
        self.fail = set()

    def run(self, argv, input=None):
        self.log.append(argv)
        cmd = argv[0]
        if cmd in self.fail:
            return 1, "", "%s: simulated failure" % cmd
        if argv[:3] == ["ip", "-j", "addr"]:
            d = self.dev.get(argv[-1])
            if d is None:
                return 1, "", 'Device "%s" does not exist.' % argv[-1]
            flags = ["BROADCAST"] + (["UP", "LOWER_UP"] if d["up"] else [])
            info = [{"family": f, "local": a, "prefixlen": p, "broadcast": b, "scope": "global",
                     "label": argv[-1]} for f, a, p, b in d["addrs"]]
            return 0, json.dumps([{"ifname": argv[-1], "flags": flags, "addr_info": info}]), ""
        if argv[:4] == ["ip", "-j", "-4", "route"]:
            return 0, json.dumps(self.dev[argv[-1]]["routes"]), ""
        if argv[:3] == ["ip", "addr", "flush"]:
            d = self.dev[argv[-1]]
            d["addrs"] = []
            d["routes"] = []
            return 0, "", ""
        if argv[:3] == ["ip", "link", "set"]:
            self.dev[argv[4]]["up"] = argv[5] == "up"
            return 0, "", ""
        if argv[0] == "ip" and argv[2:4] == ["addr", "replace"]:
            d = self.dev[argv[argv.index("dev") + 1]]
            local, plen = argv[4].split("/")
            bcast = argv[argv.index("broadcast") + 1] if "broadcast" in argv else None
            if ("inet", local, int(plen), bcast) not in d["addrs"]:
                d["addrs"].append(("inet", local, int(plen), bcast))
                d["routes"].append({"dst": "192.0.2.0/24", "protocol": "kernel", "scope": "link"})
            return 0, "", ""
        if argv[:4] == ["ip", "-4", "route", "replace"]:
            d = self.dev[argv[argv.index("dev") + 1]]
            r = {"dst": argv[4]}
            if "via" in argv:
                r["gateway"] = argv[argv.index("via") + 1]
            if "proto" in argv:
                r["protocol"] = argv[argv.index("proto") + 1]
            d["routes"] = [x for x in d["routes"] if x["dst"] != r["dst"]] + [r]
            return 0, "", ""
        if cmd == "ethtool" and argv[1] == "-k":
            d = self.dev[argv[2]]
            return 0, ("generic-receive-offload: %s\ntcp-segmentation-offload: %s\n"
                       "generic-segmentation-offload: %s\n" % (d["gro"], d["tso"], d["gso"])), ""
        if cmd == "ethtool" and argv[1] == "-K":
            d = self.dev[argv[2]]
            for k, v in zip(argv[3::2], argv[4::2]):
                d[k] = v
            return 0, "", ""
        if argv[:2] == ["nft", "-f"]:
            for line in input.splitlines():
                w = line.split()
                if w[:3] == ["add", "table", "netdev"]:
                    self.tables.setdefault(w[3], set())
                elif w[:3] == ["add", "chain", "netdev"]:
                    self.tables[w[3]].add(w[4])
                elif w[:3] == ["delete", "chain", "netdev"]:
                    self.tables[w[3]].discard(w[4])
            return 0, "", ""
        if argv[:3] == ["nft", "list", "table"]:
            if argv[4] not in self.tables:
                return 1, "", "No such file"
            return 0, "table netdev %s {\n%s}\n" % (argv[4], "".join(
                "\tchain %s {\n\t}\n" % c for c in sorted(self.tables[argv[4]]))), ""
        if argv[:3] == ["tc", "qdisc", "del"]:
            if argv[4] not in self.clsact:
                return 2, "", "Error: Cannot find specified qdisc on specified device."
            self.clsact.discard(argv[4])
            return 0, "", ""
        if argv[:3] == ["nft", "delete", "table"]:
            self.tables.pop(argv[4], None)
            return 0, "", ""
        raise AssertionError(argv)

    def read(self, path):
        return self.dev["eth1"]["v6"] if path.endswith("/eth1/disable_ipv6") else None

    def write(self, path, value):
        self.dev["eth1"]["v6"] = value
        return None

    def claim(self, state_dir):
        return PortClaim(["eth1"], state_dir, run=self.run, read=self.read, write=self.write)

    def state(self):
        d = self.dev["eth1"]
        return (d["up"], sorted(d["addrs"]), sorted(json.dumps(r, sort_keys=True) for r in d["routes"]),
                d["v6"], d["gro"], d["tso"], d["gso"], sorted(self.tables))

    def chains(self):
        return self.tables.get(TABLE, set())


class PortClaimTests(unittest.TestCase):
    def setUp(self):
        self.host = FakeHost()
        self.dir = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, self.dir, True)
        self.before = self.host.state()

    def test_claim_hides_the_port_and_release_gives_it_back(self):
        c = self.host.claim(self.dir)
        c.claim()
        d = self.host.dev["eth1"]
        self.assertEqual(self.host.chains(), {chain_name("eth1")})
        self.assertEqual((d["addrs"], d["v6"], d["up"], d["gro"]), ([], "1", True, "on"))
        self.assertTrue(os.path.exists(os.path.join(self.dir, "ports-claimed.json")))
        c.release()
        self.assertEqual(self.host.state(), self.before)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "ports-claimed.json")))

    def test_state_saved_before_anything_changes(self):
        seen = []
        run = self.host.run

        def spy(argv, input=None):
            if argv[:2] == ["nft", "-f"]:
                seen.append(os.path.exists(os.path.join(self.dir, "ports-claimed.json")))
            return run(argv, input)
        self.host.run = spy
        self.host.claim(self.dir).claim()
        self.assertEqual(seen, [True])

    def test_restart_after_a_crash_keeps_the_original_state(self):
        self.host.claim(self.dir).claim()          # ... and the daemon is killed
        again = self.host.claim(self.dir)
        again.claim()                              # sees the claimed port now
        self.assertEqual(self.host.chains(), {chain_name("eth1")})
        again.release()
        self.assertEqual(self.host.state(), self.before)

    def test_release_after_a_crash_detaches_the_fast_path(self):
        """A crashed cbac leaves its tc program on the port (the kernel fast
        path would go on forwarding the flows it had): release removes it."""
        self.host.claim(self.dir).claim()
        self.host.clsact.add("eth1")               # attached, then the daemon is killed
        # what `python -m cbac.dataplane.claim release STATE_DIR` does
        after = PortClaim([], self.dir, run=self.host.run, read=self.host.read,
                          write=self.host.write)
        self.assertEqual(after.release(), [])
        self.assertEqual(self.host.clsact, set())
        self.assertEqual(self.host.state(), self.before)

    def test_detach_removes_only_the_fast_path(self):
        """keepalived's FAULT with cbac dead (cbac.continuity.notify) runs
        `claim detach`: the tc program goes, the port stays claimed."""
        self.host.claim(self.dir).claim()
        self.host.clsact.add("eth1")               # attached, then the daemon is killed
        after = PortClaim([], self.dir, run=self.host.run, read=self.host.read,
                          write=self.host.write)
        self.assertEqual(after.detach_fastpath(), ["eth1"])
        self.assertEqual(self.host.clsact, set())
        self.assertEqual(self.host.chains(), {chain_name("eth1")})    # still closed
        self.assertEqual(self.host.dev["eth1"]["addrs"], [])
        self.assertTrue(os.path.exists(os.path.join(self.dir, "ports-claimed.json")))

    def test_no_drop_chain_no_start(self):
        self.host.fail.add("nft")
        with self.assertRaises(ClaimError) as cm:
            self.host.claim(self.dir).claim()
        self.assertIn("nftables", str(cm.exception))
        self.assertFalse([a for a in self.host.log if a[:3] == ["ip", "addr", "flush"]])
        self.assertEqual(self.host.dev["eth1"]["addrs"], [("inet", "192.0.2.1", 24, "192.0.2.255")])

    def test_missing_device(self):
        c = PortClaim(["nosuch"], self.dir, run=self.host.run, read=self.host.read, write=self.host.write)
        with self.assertRaises(ClaimError) as cm:
            c.claim()
        self.assertIn("nosuch", str(cm.exception))

    def test_optional_steps_only_warn(self):
        self.host.fail.add("ethtool")
        c = self.host.claim(self.dir)
        c.claim()
        self.assertEqual(self.host.chains(), {chain_name("eth1")})
        c.release()

    def test_ruleset_is_idempotent_and_quoted(self):
        text = nft_ruleset(["eth1", 'we"ird'])
        c = chain_name("eth1")
        self.assertTrue(text.startswith("add table netdev %s\nadd chain netdev %s %s\n"
                                        "delete chain netdev %s %s\n" % (TABLE, TABLE, c, TABLE, c)))
        self.assertIn('device "eth1" priority -500; policy drop;', text)
        self.assertIn('device "weird"', text)
        self.assertRegex(chain_name('we"ird.0'), r"^port_we_ird_0_[0-9a-f]{6}$")

    def test_two_instances_share_the_table(self):
        self.host.dev["eth2"] = dict(self.host.dev["eth1"], addrs=[], routes=[])
        a = self.host.claim(self.dir)
        b = PortClaim(["eth2"], self.dir + "-b", run=self.host.run, read=self.host.read,
                      write=self.host.write)
        self.addCleanup(__import__("shutil").rmtree, self.dir + "-b", True)
        a.claim()
        b.claim()
        self.assertEqual(self.host.chains(), {chain_name("eth1"), chain_name("eth2")})
        b.release()
        self.assertEqual(self.host.chains(), {chain_name("eth1")})
        a.release()
        self.assertNotIn(TABLE, self.host.tables)


class ReleaseCommandTests(unittest.TestCase):
    def test_nothing_to_release(self):
        from cbac.dataplane.claim import main
        d = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, d, True)
        self.assertEqual(main(["release", d]), 0)
        self.assertEqual(main(["detach", d]), 0)
        self.assertEqual(main(["bogus"]), 2)
