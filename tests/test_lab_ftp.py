"""FTP inspection end to end in the namespace lab.

Seed configuration (``ip inspect name IN-OUT ftp``, PAT for the inside on
Ethernet2/0): curl and Python ftplib on the inside host fetch and upload
files byte-identical from a pyftpdlib server on the outside host
(172.22.1.1:21) in all four modes (PASV, EPSV, PORT, EPRT).  The PORT/EPRT
rewrite changes the payload length (``10,10,10,2`` -> ``172,22,1,16``).
A config variant publishes an inside FTP server by static NAT.

``...KernelReference`` runs the same bodies with the kernel as the router
(nftables masquerade + the conntrack FTP helper); ``...Cbac`` runs them
through ``twistd cbac`` and also checks the ``%FW-3-FTP_*`` alerts.
"""

import hashlib
import json
import os
import re
import select
import subprocess
import sys
import time

from twisted.trial import unittest

from tests.labrun import (NFT_FTP_HELPER, zbf_variant, LabCase, nft_static_tcp, records, seed_variant,
                          skip_reason)

BLOB = os.urandom(3 * 1024 * 1024 + 17)
SMALL = b"small file\r\n" * 100
UPLOAD = os.urandom(700 * 1024 + 3)

FTPLIB_CLIENT = r"""
import ftplib, hashlib, io, json, sys
host, mode, upload_name = sys.argv[1], sys.argv[2], sys.argv[3]
up = bytes.fromhex(open(sys.argv[4]).read()) if len(sys.argv) > 4 else b""
f = ftplib.FTP(timeout=15)
f.connect(host, 21)
f.login("ftptest", "ftptest")
if mode == "pasv":
    f.set_pasv(True)
elif mode == "port":
    f.set_pasv(False)
elif mode == "epsv":
    f.set_pasv(True); f.af = 10        # ftplib sends EPSV only for IPv6: force it
elif mode == "eprt":
    f.set_pasv(False); f.sendport = f.sendeprt
buf = io.BytesIO()
f.retrbinary("RETR blob.bin", buf.write)
f.storbinary("STOR " + upload_name, io.BytesIO(up))
small = io.BytesIO()
f.retrbinary("RETR small.txt", small.write)
f.quit()
print(json.dumps({"blob": hashlib.sha256(buf.getvalue()).hexdigest(),
                  "small": hashlib.sha256(small.getvalue()).hexdigest()}))
"""

BAD_PORT_CLIENT = r"""
import ftplib, json, sys
f = ftplib.FTP(timeout=15)
f.connect(sys.argv[1], 21)
f.login("ftptest", "ftptest")
out = {"port": f.sock.getsockname()[1], "replies": []}
for cmd in json.loads(sys.argv[2]):
    try:
        out["replies"].append([cmd, f.sendcmd(cmd)])
    except ftplib.Error as e:
        out["replies"].append([cmd, str(e)])
# the session is still usable
out["after"] = f.sendcmd("NOOP")
f.quit()
print(json.dumps(out))
"""

PINHOLE_CLIENT = r"""
import ftplib, socket, sys
f = ftplib.FTP(timeout=15)
f.connect("172.22.1.1", 21)
f.login("ftptest", "ftptest")
l = socket.socket(); l.bind(("10.10.10.2", 0)); l.listen(5); l.settimeout(10)
p = l.getsockname()[1]
print(f.sendcmd("PORT 10,10,10,2,%d,%d" % (p >> 8, p & 255)), flush=True)
sys.stdin.readline()                    # the test probes the pinhole meanwhile
f.putcmd("RETR small.txt")
print(f.getline(), flush=True)          # 150
c, peer = l.accept()
data = b""
while True:
    b = c.recv(65536)
    if not b:
        break
    data += b
c.close()
print(f.getresp(), flush=True)          # 226
print("%s %d" % (peer[0], len(data)), flush=True)
f.quit()
"""


def sha(b):
    return hashlib.sha256(b).hexdigest()


class _FtpBase(LabCase):
    @classmethod
    def makeRoot(cls):
        root = os.path.join(cls.env.tmp, "ftproot")
        os.makedirs(root)
        os.chmod(root, 0o777)
        with open(os.path.join(root, "blob.bin"), "wb") as f:
            f.write(BLOB)
        with open(os.path.join(root, "small.txt"), "wb") as f:
            f.write(SMALL)
        cls.root = root
        cls.upload_src = os.path.join(cls.env.tmp, "upload.bin")
        with open(cls.upload_src, "wb") as f:
            f.write(UPLOAD)
        cls.upload_hex = os.path.join(cls.env.tmp, "upload.hex")
        with open(cls.upload_hex, "w") as f:
            f.write(UPLOAD.hex())

    def curl(self, ns, url, *opts, timeout=40):
        r = self.env.exec(ns, ["curl", "-sS", "--max-time", str(timeout - 10), "-u", "ftptest:ftptest"]
                          + list(opts) + [url], text=False, timeout=timeout)
        self.assertEqual(r.returncode, 0, "%s\nthe server received: %r\n%s" % (
            r.stderr.decode(errors="replace"), self.lines()[-6:], self.env.log()[-2000:]))
        return r.stdout

    def lines(self, verb=None):
        out = [r["data"] for r in records(self.record, "line")]
        if verb:
            out = [line for line in out if line.upper().startswith(verb)]
        return out

    def uploaded(self, name):
        with open(os.path.join(self.root, name), "rb") as f:
            return f.read()


# ---------------------------------------------------------------------------
# seed configuration: inside client, outside server


class FtpMixin(_FtpBase):
    announced_client = "172.22.1.16"      # what PORT says after PAT
    @classmethod
    def setUpLab(cls):
        cls.makeRoot()
        cls.record = cls.env.labserver("out", "ftp", "172.22.1.1", 21, cls.root)
        cls.l_inside = cls.env.labserver("in", "listen", "10.10.10.25", 51210)
        cls.l_outside = cls.env.labserver("out", "listen", "172.22.1.3", 51210)

    def fetch(self, *opts):
        return self.curl("in", "ftp://172.22.1.1/blob.bin", *opts)

    def test_curl_epsv(self):
        self.assertEqual(sha(self.fetch()), sha(BLOB))
        self.assertTrue(self.lines("EPSV"))

    def test_curl_pasv(self):
        self.assertEqual(sha(self.fetch("--disable-epsv")), sha(BLOB))
        self.assertTrue(self.lines("PASV"))

    def test_curl_eprt(self):
        self.assertEqual(sha(self.fetch("--ftp-port", "-")), sha(BLOB))
        eprt = self.lines("EPRT")
        self.assertTrue(eprt)
        # PAT: the server is told the global address
        self.assertRegex(eprt[-1], r"^EPRT \|1\|172\.22\.1\.16\|\d+\|$")

    def test_curl_port_rewrite_changes_length(self):
        """``PORT 10,10,10,2,..`` becomes ``PORT 172,22,1,16,..`` (3 bytes
        longer); two transfers on the same control connection after it."""
        out_small = os.path.join(self.env.tmp, "small-port.txt")
        out_blob = os.path.join(self.env.tmp, "blob-port.bin")
        self.curl("in", "ftp://172.22.1.1/small.txt", "--ftp-port", "-", "--disable-eprt",
                  "-o", out_blob, "ftp://172.22.1.1/blob.bin", "-o", out_small)
        with open(out_blob, "rb") as f:
            self.assertEqual(sha(f.read()), sha(BLOB))
        with open(out_small, "rb") as f:
            self.assertEqual(f.read(), SMALL)
        ports = self.lines("PORT")
        self.assertGreaterEqual(len(ports), 2)
        for line in ports[-2:]:
            self.assertRegex(line, r"^PORT 172,22,1,16,\d+,\d+$")

    def test_curl_upload_passive_and_active(self):
        self.curl("in", "ftp://172.22.1.1/up-pasv.bin", "-T", self.upload_src)
        self.assertEqual(sha(self.uploaded("up-pasv.bin")), sha(UPLOAD))
        self.curl("in", "ftp://172.22.1.1/up-port.bin", "-T", self.upload_src, "--ftp-port", "-",
                  "--disable-eprt")
        self.assertEqual(sha(self.uploaded("up-port.bin")), sha(UPLOAD))

    def test_ftplib_all_modes(self):
        for mode in ("pasv", "port", "epsv", "eprt"):
            r = self.env.python("in", FTPLIB_CLIENT, "172.22.1.1", mode, "ftplib-%s.bin" % mode,
                                self.upload_hex, timeout=60)
            self.assertEqual(r.returncode, 0, "%s: %s\n%s" % (mode, r.stderr[-2000:], self.env.log()[-2000:]))
            res = json.loads(r.stdout)
            self.assertEqual(res["blob"], sha(BLOB), mode)
            self.assertEqual(res["small"], sha(SMALL), mode)
            self.assertEqual(sha(self.uploaded("ftplib-%s.bin" % mode)), sha(UPLOAD), mode)

    def bad_ports(self):
        cmds = ["PORT 10,10,10,25,200,10",      # a third (inside) host
                "PORT 172,22,1,3,200,10",       # a third (outside) host
                "PORT 10,10,10,2,0,21"]         # the FTP control port
        r = self.env.python("in", BAD_PORT_CLIENT, "172.22.1.1", json.dumps(cmds), timeout=40)
        self.assertEqual(r.returncode, 0, r.stderr)
        res = json.loads(r.stdout)
        for cmd, reply in res["replies"]:
            self.assertRegex(reply, r"^5\d\d", "%s: %s" % (cmd, reply))
        self.assertTrue(res["after"].startswith("200"), res)
        time.sleep(0.5)
        self.assertEqual(records(self.l_inside, "accept"), [])
        self.assertEqual(records(self.l_outside, "accept"), [])
        return res

    def test_port_to_third_host_or_control_port_refused(self):
        self.bad_ports()

    def test_pinhole_not_usable_by_another_host(self):
        p = self.env.lab.popen("in", [sys.executable, "-c", PINHOLE_CLIENT],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = self._readline(p)
            self.assertTrue(first.startswith("200"), first + p.stderr.read() if p.poll() is not None else first)
            port_line = self.lines("PORT")[-1]
            m = re.match(r"PORT (\d+),(\d+),(\d+),(\d+),(\d+),(\d+)$", port_line)
            self.assertIsNotNone(m, port_line)
            addr = ".".join(m.group(1, 2, 3, 4))
            gport = int(m.group(5)) * 256 + int(m.group(6))
            self.assertEqual(addr, self.announced_client)
            probe = self.env.python("out", "import socket,sys\ns=socket.socket();s.settimeout(2)\n"
                                    "s.bind(('172.22.1.2',0))\n"
                                    "try:\n s.connect(('%s',%d));print('connected')\n"
                                    "except OSError as e:\n print('failed', e)\n" % (addr, gport),
                                    timeout=15)
            self.assertTrue(probe.stdout.startswith("failed"), probe.stdout + probe.stderr)
            p.stdin.write("go\n")
            p.stdin.flush()
            rest = [self._readline(p) for _ in range(3)]
            self.assertRegex(rest[0], r"^1(25|50) ", rest)
            self.assertTrue(rest[1].startswith("226"), rest)
            self.assertEqual(rest[2], "172.22.1.1 %d" % len(SMALL))
            p.wait(15)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)

    def _readline(self, p, timeout=20):
        r, _, _ = select.select([p.stdout], [], [], timeout)
        self.assertTrue(r, "client did not answer in %d s" % timeout)
        return p.stdout.readline().strip()


class FtpKernelReference(FtpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"
    nft_extra = NFT_FTP_HELPER


class FtpCbac(FtpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"

    def test_port_to_third_host_or_control_port_refused(self):
        res = self.bad_ports()
        # masked: the server got x runs of the same length, not the PORT lines
        lines = [r["data"] for r in records(self.record, "line")]
        for cmd, _ in res["replies"]:
            self.assertNotIn(cmd, lines)
            self.assertIn("x" * len(cmd), lines)
        log = self.env.log()
        self.assertRegex(log, r"%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 10\.10\.10\.25 used in PORT")
        self.assertRegex(log, r"%FW-3-FTP_NON_MATCHING_IP_ADDR: Non-matching address 172\.22\.1\.3 used in PORT")
        self.assertRegex(log, r"%FW-3-FTP_PRIV_PORT: Privileged port 21 used in PORT")
        self.assertIn("-- FTP client 10.10.10.2 FTP server 172.22.1.1", log)


class FtpZbf(FtpCbac):
    """The same transfers (passive, active, EPSV, EPRT) and refusals with
    the ZBF seed: ``match protocol ftp`` inspected from zone LAN to WAN;
    the data pinholes bypass the zone policy as IOS's do."""

    config = zbf_variant()


class FtpCbacWithoutNat(FtpMixin, unittest.TestCase):
    """The same transfers through cbac without PAT: the inside address is
    routed, PORT/EPRT pass unchanged and still open the data pinholes."""

    skip = skip_reason()
    mode = "cbac"
    config = seed_variant(replace=[("ip nat inside source list 1 interface Ethernet2/0 overload\n", "")])
    announced_client = "10.10.10.2"

    def test_curl_eprt(self):
        self.assertEqual(sha(self.fetch("--ftp-port", "-")), sha(BLOB))
        self.assertRegex(self.lines("EPRT")[-1], r"^EPRT \|1\|10\.10\.10\.2\|\d+\|$")

    def test_curl_port_rewrite_changes_length(self):
        self.assertEqual(sha(self.fetch("--ftp-port", "-", "--disable-eprt")), sha(BLOB))
        self.assertRegex(self.lines("PORT")[-1], r"^PORT 10,10,10,2,\d+,\d+$")


# ---------------------------------------------------------------------------
# an inside FTP server published by static NAT, passive mode from outside

INSIDE_SERVER_CONFIG = seed_variant([
    "ip nat inside source static tcp 10.10.10.2 21 172.22.1.16 21 extendable",
    "access-list 101 permit tcp any host 172.22.1.16 eq ftp",
    "ip inspect name OUT-IN ftp",
])


class InsideServerMixin(_FtpBase):
    @classmethod
    def setUpLab(cls):
        cls.makeRoot()
        cls.record = cls.env.labserver("in", "ftp", "10.10.10.2", 21, cls.root)

    def test_outside_client_passive(self):
        got = self.curl("out", "ftp://172.22.1.16/blob.bin", "--disable-epsv")
        self.assertEqual(sha(got), sha(BLOB))

    def test_outside_client_epsv_and_upload(self):
        got = self.curl("out", "ftp://172.22.1.16/small.txt")
        self.assertEqual(got, SMALL)
        self.curl("out", "ftp://172.22.1.16/from-outside.bin", "-T", self.upload_src)
        self.assertEqual(sha(self.uploaded("from-outside.bin")), sha(UPLOAD))

    def test_server_sees_the_outside_client(self):
        self.curl("out", "ftp://172.22.1.16/small.txt", "--disable-epsv")
        peers = {r["peer"].split(":")[0] for r in records(self.record, "line")}
        self.assertEqual(peers, {"172.22.1.1"})


class InsideServerKernelReference(InsideServerMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"
    nft_extra = NFT_FTP_HELPER + nft_static_tcp(21, inside="10.10.10.2")


class InsideServerCbac(InsideServerMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"
    config = INSIDE_SERVER_CONFIG
