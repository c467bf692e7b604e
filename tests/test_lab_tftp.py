"""TFTP inspection end to end in the namespace lab: ``ip inspect name IN-OUT
tftp`` added to the seed (PAT for the inside, ACL 101 admits no UDP from the
outside), a tftpy server on the outside host (172.22.1.1:69; it answers from
a new port, RFC 1350) and the tftpy client on the inside host: a download
(several blocks, the last short) and an upload arrive byte-identical, which
needs the data-channel pinhole through PAT."""

import hashlib
import json
import os
import sys

from twisted.trial import unittest

from tests.labrun import LabCase, seed_variant, skip_reason, wait_for

try:
    import tftpy  # noqa: F401
except ImportError:                      # requirements-test.txt
    tftpy = None

CONFIG = seed_variant(replace=[("ip inspect name IN-OUT udp\n",
                                "ip inspect name IN-OUT udp\nip inspect name IN-OUT tftp\n")])

SERVER = r"""
import logging, sys, tftpy
logging.disable(logging.CRITICAL)
s = tftpy.TftpServer(sys.argv[1])
print("READY", flush=True)
s.listen("172.22.1.1", 69)
"""

CLIENT = r"""
import hashlib, json, logging, sys, tftpy
logging.disable(logging.CRITICAL)
c = tftpy.TftpClient("172.22.1.1", 69)
c.download("blob.bin", sys.argv[1] + "/got.bin", timeout=3)
c.upload("up.bin", sys.argv[1] + "/up-src.bin", timeout=3)
print(json.dumps({"got": hashlib.sha256(open(sys.argv[1] + "/got.bin", "rb").read()).hexdigest()}))
"""

BLOB = os.urandom(512 * 40 + 77)
UP = os.urandom(512 * 7 + 5)


class TftpLabTests(LabCase, unittest.TestCase):
    skip = skip_reason() or (None if tftpy else "tftpy is not installed (requirements-test.txt)")
    config = CONFIG
    timeout = 120

    @classmethod
    def setUpLab(cls):
        env = cls.env
        cls.root = os.path.join(env.tmp, "tftproot")
        cls.cdir = os.path.join(env.tmp, "tftpclient")
        os.makedirs(cls.root)
        os.makedirs(cls.cdir)
        with open(os.path.join(cls.root, "blob.bin"), "wb") as f:
            f.write(BLOB)
        with open(os.path.join(cls.cdir, "up-src.bin"), "wb") as f:
            f.write(UP)
        env.server("out", [sys.executable, "-c", SERVER, cls.root])

    def test_download_and_upload_through_pat(self):
        r = None
        for _ in range(3):                 # the server may still be starting
            r = self.env.python("in", CLIENT, self.cdir, timeout=60)
            if r.returncode == 0:
                break
        self.assertEqual(r.returncode, 0, r.stderr[-2000:] + self.env.log())
        self.assertEqual(json.loads(r.stdout)["got"], hashlib.sha256(BLOB).hexdigest())
        with open(os.path.join(self.root, "up.bin"), "rb") as f:
            self.assertEqual(f.read(), UP)
        # both transfers ended at their last block: their data channels and
        # requests are deleted at the next timer tick, not after the idle time
        out = {}

        def gone():
            out["s"] = self.env.console("show ip inspect sessions").stdout
            return "tftp" not in out["s"]
        self.assertTrue(wait_for(gone, 5, 0.5), out.get("s"))
