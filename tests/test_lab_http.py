"""HTTP inspection end to end in the namespace lab.

Config variant of the seed: an inside web server (10.10.10.2:80) published
by static NAT on 172.22.1.16:80, ACL 101 permitting it, and
``ip inspect name OUT-IN http``.  curl on the outside host uses it
normally; request-smuggling payloads sent raw from outside (CL+TE,
conflicting Content-Lengths, a bad chunk size) are refused by cbac: the
connection is reset, the smuggled request never reaches the server (the
server records every request line) and the violation is logged.

The web server (tests/labservers.py) is deliberately naive (first
Content-Length wins, lenient chunk sizes), so with the kernel as the router
(``...KernelReference``) every payload does smuggle its second request:
proof that the cbac assertions can fail.
"""

import hashlib
import json
import os

from twisted.trial import unittest

from tests.labrun import LabCase, nft_static_tcp, records, seed_variant, skip_reason, wait_for

HTTP_CONFIG = seed_variant([
    "ip nat inside source static tcp 10.10.10.2 80 172.22.1.16 80",
    "access-list 101 permit tcp any host 172.22.1.16 eq www",
    "ip inspect name OUT-IN http",
])

BLOB = os.urandom(3 * 1024 * 1024 + 5)
POSTED = os.urandom(200 * 1024)

RAW_CLIENT = r"""
import json, socket, sys
s = socket.create_connection(("172.22.1.16", 80), timeout=5)
s.sendall(bytes.fromhex(sys.argv[1]))
data, out = b"", {"reset": False, "eof": False, "timeout": False}
s.settimeout(3)
try:
    while True:
        b = s.recv(65536)
        if not b:
            out["eof"] = True
            break
        data += b
except ConnectionResetError:
    out["reset"] = True
except socket.timeout:
    out["timeout"] = True
out["responses"] = data.count(b"HTTP/1.1 ")
out["head"] = data[:200].decode("latin-1")
print(json.dumps(out))
"""

SMUGGLE = {
    "clte": (b"POST /first-clte HTTP/1.1\r\nHost: lab\r\nContent-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
             b"GET /smuggled-clte HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"),
    "clcl": (b"POST /first-clcl HTTP/1.1\r\nHost: lab\r\nContent-Length: 0\r\nContent-Length: 61\r\n\r\n"
             b"GET /smuggled-clcl HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"),
    "chunk": (b"POST /first-chunk HTTP/1.1\r\nHost: lab\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"-0\r\n\r\n"
              b"GET /smuggled-chunk HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"),
}


def sha(b):
    return hashlib.sha256(b).hexdigest()


class HttpMixin(LabCase):
    @classmethod
    def setUpLab(cls):
        www = os.path.join(cls.env.tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "blob.bin"), "wb") as f:
            f.write(BLOB)
        with open(os.path.join(www, "index.html"), "wb") as f:
            f.write(b"<html>lab</html>\n")
        cls.posted = os.path.join(cls.env.tmp, "posted.bin")
        with open(cls.posted, "wb") as f:
            f.write(POSTED)
        cls.record = cls.env.labserver("in", "web", "10.10.10.2", 80, www)

    def curl(self, *args, timeout=30):
        r = self.env.exec("out", ["curl", "-sS", "--max-time", str(timeout - 5)] + list(args),
                          text=False, timeout=timeout)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + self.env.log()[-3000:])
        return r.stdout

    def requests(self):
        return [r["line"] for r in records(self.record, "request")]

    def test_curl_get_byte_identical(self):
        got = self.curl("http://172.22.1.16/blob.bin")
        self.assertEqual(sha(got), sha(BLOB))
        reqs = records(self.record, "request")
        self.assertEqual(reqs[-1]["line"], "GET /blob.bin HTTP/1.1")
        self.assertTrue(reqs[-1]["peer"].startswith("172.22.1.1:"), reqs[-1])

    def test_keepalive_post_and_chunked_upload(self):
        index = os.path.join(self.env.tmp, "index.out")
        out = self.curl("http://172.22.1.16/index.html", "-o", index, "http://172.22.1.16/blob.bin",
                        "-o", "/dev/null", "-w", "%{num_connects}\n")
        self.assertEqual(out, b"1\n0\n")          # the second request reused the connection
        with open(index, "rb") as f:
            self.assertEqual(f.read(), b"<html>lab</html>\n")
        got = self.curl("--data-binary", "@" + self.posted, "http://172.22.1.16/post")
        self.assertEqual(got, b"got %d bytes\n" % len(POSTED))
        got = self.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" + self.posted,
                        "http://172.22.1.16/chunked")
        self.assertEqual(got, b"got %d bytes\n" % len(POSTED))
        self.assertIn("POST /chunked HTTP/1.1", self.requests())

    def smuggle(self, kind):
        r = self.env.python("out", RAW_CLIENT, SMUGGLE[kind].hex(), timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_smuggling_cl_te(self):
        self.assertSmuggling("clte", self.smuggle("clte"))

    def test_smuggling_conflicting_content_lengths(self):
        self.assertSmuggling("clcl", self.smuggle("clcl"))

    def test_smuggling_bad_chunk_size(self):
        self.assertSmuggling("chunk", self.smuggle("chunk"))


class HttpKernelReference(HttpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"
    nft_extra = nft_static_tcp(80, inside="10.10.10.2")

    def assertSmuggling(self, kind, res):
        """Without inspection the naive server does parse the smuggled
        request."""
        self.assertTrue(wait_for(lambda: "GET /smuggled-%s HTTP/1.1" % kind in self.requests(), 3),
                        self.requests())
        self.assertEqual(res["responses"], 2, res)


class HttpCbac(HttpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"
    config = HTTP_CONFIG

    REASONS = {"clte": "both Content-Length and Transfer-Encoding",
               "clcl": "conflicting Content-Length values",
               "chunk": "invalid chunk size line"}

    def assertSmuggling(self, kind, res):
        self.assertTrue(res["reset"] or res["eof"], res)
        self.assertLess(res["responses"], 2, res)
        log = self.wait_log(self.REASONS[kind])
        self.assertRegex(log, r"%%FW-3-HTTP_PROTOCOL_VIOLATION: HTTP protocol violation \(%s\) from "
                              r"initiator \(172\.22\.1\.1:\d+\) responder \((?:172\.22\.1\.16|10\.10\.10\.2):80\) -- session reset"
                         % self.REASONS[kind])
        self.assertNotIn("GET /smuggled-%s HTTP/1.1" % kind, self.requests())
