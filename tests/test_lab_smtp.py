"""SMTP / ESMTP inspection end to end in the namespace lab.

The mail server runs on the inside host (10.10.10.25:25) and is published
by the seed's static translation on 172.22.1.16:25; the clients (Python
smtplib, swaks, raw sockets) run on the outside host.  The server records
every line and message it receives (tests/labservers.py), so a test sees
exactly what arrived.

Each mixin runs against the kernel as the router (``...KernelReference``:
no inspection, so illegal verbs arrive unchanged -- proof that the record
would show a change) and against cbac (``...Cbac``: the verbs arrive
masked as ``x`` runs, alerts in the daemon log).
"""

import json
import os
import re

from twisted.trial import unittest

from tests.labrun import LabCase, records, seed_variant, skip_reason, wait_for, zbf_variant

#: A message with dot lines (dot-stuffing), a long line and a final CRLF.
MESSAGE = (b"From: a@out.test\r\nTo: b@lab.test\r\nSubject: lab test\r\n\r\n"
           b"first line\r\n.starts with a dot\r\n..two dots\r\n.\r\n" + b"y" * 900 + b"\r\n"
           b"last line\r\n")
#: 8-bit body (BODY=8BITMIME).
MESSAGE_8BIT = (b"From: a@out.test\r\nTo: b@lab.test\r\nSubject: 8bit\r\n"
                b"Content-Type: text/plain; charset=latin-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                + bytes(range(0xa0, 0x100)) + b"\r\n\xe9t\xe9\r\n")

SMTPLIB_SEND = r"""
import json, smtplib, sys
msg = bytes.fromhex(sys.argv[1])
opts = json.loads(sys.argv[2])
s = smtplib.SMTP("172.22.1.16", 25, timeout=15)
out = {"port": s.sock.getsockname()[1]}
try:
    s.ehlo_or_helo_if_needed()
    out["esmtp"] = s.does_esmtp
    out["features"] = sorted(s.esmtp_features)
    if opts.get("login"):
        s.login("user", "secret")
    refused = s.sendmail("a@out.test", ["b@lab.test"], msg, mail_options=opts.get("mail_options", []))
    out["refused"] = refused
    out["ok"] = True
    s.quit()
except Exception as e:
    out["ok"] = False
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
"""

VERBS_CLIENT = r"""
import json, smtplib, sys
s = smtplib.SMTP("172.22.1.16", 25, timeout=15)
out = {"port": s.sock.getsockname()[1], "replies": []}
for line in json.loads(sys.argv[1]):
    code, text = s.docmd(line)
    out["replies"].append([line, code, text.decode("latin-1")])
s.quit()
print(json.dumps(out))
"""

RAW_CLIENT = r"""
import json, socket, sys
s = socket.create_connection(("172.22.1.16", 25), timeout=15)
f = s.makefile("rb")
out = {"port": s.getsockname()[1], "replies": []}
def reply():
    lines = []
    while True:
        l = f.readline()
        if not l:
            raise EOFError("connection closed")
        lines.append(l.decode("latin-1").rstrip("\r\n"))
        if len(l) < 4 or l[3:4] != b"-":
            out["replies"].append(lines)
            return lines
try:
    reply()
    for chunk, nreplies in json.loads(sys.argv[1]):
        s.sendall(bytes.fromhex(chunk))
        for i in range(nreplies):
            reply()
    out["ok"] = True
except Exception as e:
    out["ok"] = False
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
"""

ILLEGAL = ["VRFY postmaster", "EXPN staff-list", "DEBUG", "WIZ", "TURN", "XYZZY plugh"]


class _SmtpBase(LabCase):
    server_kind = "smtp"
    server_args = ("--size", "10485760")

    @classmethod
    def setUpLab(cls):
        cls.record = cls.env.labserver("in", cls.server_kind, "10.10.10.25", 25, *cls.server_args)

    def run_json(self, code, *args, timeout=40):
        r = self.env.python("out", code, *args, timeout=timeout)
        self.assertEqual(r.returncode, 0, r.stderr + self.env.log()[-3000:])
        return json.loads(r.stdout)

    def smtplib_send(self, msg, **opts):
        return self.run_json(SMTPLIB_SEND, msg.hex(), json.dumps(opts))

    def raw_session(self, steps):
        """``steps``: [(bytes to send, number of replies to read)]."""
        return self.run_json(RAW_CLIENT, json.dumps([[b.hex(), n] for b, n in steps]))

    def lines_from(self, port):
        peer = "172.22.1.1:%d" % port
        return [r["data"].encode("latin-1") for r in records(self.record, "line") if r["peer"] == peer]

    def messages(self):
        return [r for r in records(self.record, "msg") if r["peer"].startswith("172.22.1.1:")]

    def assertDelivered(self, msg, result=None):
        got = wait_for(lambda: [m for m in self.messages() if m["data"].encode("latin-1") == msg], 5)
        self.assertTrue(got, "message not received byte-identical; result %r, got %r; log:\n%s"
                        % (result, [m["data"][:200] for m in self.messages()], self.env.log()[-3000:]))
        return got[-1]


# ---------------------------------------------------------------------------
# seed configuration: OUT-IN smtp, aiosmtpd (SIZE, 8BITMIME, AUTH)


class SmtpMixin(_SmtpBase):
    def test_smtplib_message_byte_identical(self):
        res = self.smtplib_send(MESSAGE)
        self.assertTrue(res["ok"], res)
        self.assertEqual(res["refused"], {})
        self.assertDelivered(MESSAGE, res)

    def test_swaks_message_byte_identical(self):
        path = os.path.join(self.env.tmp, "swaks-msg.eml")
        with open(path, "wb") as f:
            f.write(MESSAGE)
        r = self.env.exec("out", ["swaks", "--server", "172.22.1.16:25", "--from", "a@out.test",
                                  "--to", "b@lab.test", "--helo", "client.out.test", "--timeout", "15",
                                  "--data", path], timeout=40)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr)
        self.assertIn("<-  250 OK stored", r.stdout)
        self.assertDelivered(MESSAGE, r.stdout[-2000:])

    def test_illegal_verbs(self):
        res = self.run_json(VERBS_CLIENT, json.dumps(ILLEGAL))
        arrived = self.lines_from(res["port"])
        for (line, code, text) in res["replies"]:
            sent = line.encode() + b"\r\n"
            self.assertVerbHandled(sent, code, text, arrived)

    def test_oversized_message(self):
        big = MESSAGE + (b"z" * 78 + b"\r\n") * 700
        res = self.smtplib_send(big)
        self.assertOversize(res, big)


class SmtpKernelReference(SmtpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"

    def assertVerbHandled(self, sent, code, text, arrived):
        self.assertIn(sent, arrived)

    def assertOversize(self, res, big):
        self.assertTrue(res["ok"], res)
        self.assertDelivered(big, res)


SMTP_INVALID = re.compile(r"%FW-3-SMTP_INVALID_COMMAND: Invalid SMTP command from initiator "
                          r"\(172\.22\.1\.1:(\d+)\)")


class SmtpCbac(SmtpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"

    def assertVerbHandled(self, sent, code, text, arrived):
        self.assertNotIn(sent, arrived)
        masked = b"x" * (len(sent) - 2) + b"\r\n"
        self.assertIn(masked, arrived, "%r did not arrive as %r: %r" % (sent, masked, arrived))
        self.assertGreaterEqual(code, 500, text)
        self.assertLess(code, 600, text)

    def test_ehlo_masked_client_falls_back_to_helo(self):
        """``smtp`` (not ``esmtp``) allows only the RFC 821 verbs: EHLO arrives
        masked, the client gets 500 and uses HELO."""
        res = self.smtplib_send(MESSAGE)
        self.assertTrue(res["ok"], res)
        self.assertFalse(res["esmtp"])
        arrived = self.lines_from(res["port"])
        self.assertRegex(arrived[0], rb"^x{8,}\r\n$")   # "ehlo NAME", all masked
        self.assertTrue(arrived[1].upper().startswith(b"HELO "), arrived)

    def test_invalid_command_alert_in_ios_format(self):
        res = self.run_json(VERBS_CLIENT, json.dumps(["WIZ"]))
        log = self.wait_log("(172.22.1.1:%d)" % res["port"])
        ports = [int(p) for p in SMTP_INVALID.findall(log)]
        self.assertIn(res["port"], ports, log[-3000:])
        # and in the buffer (``logging buffered`` in the seed), as IOS shows it
        r = self.env.console("show logging")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("%%FW-3-SMTP_INVALID_COMMAND: Invalid SMTP command from initiator (172.22.1.1:%d)"
                      % res["port"], r.stdout)

    def test_debug_ip_inspect_smtp(self):
        r = self.env.console("debug ip inspect smtp")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        try:
            res = self.run_json(VERBS_CLIENT, json.dumps(["NOOP", "TURN"]))
            log = self.wait_log("CBAC SMTP:")
            self.assertIn("CBAC SMTP: INVALID COMMAND - verb:TURN, masked len:4", log)
            self.assertTrue(res["replies"])
        finally:
            self.env.console("undebug all")

    def assertOversize(self, res, big):
        raise AssertionError("not used: the default max-data is 20 MB")

    def test_oversized_message(self):
        """Below the default max-data (20,000,000 bytes) a big message passes."""
        big = MESSAGE + (b"z" * 78 + b"\r\n") * 700
        res = self.smtplib_send(big)
        self.assertTrue(res["ok"], res)
        self.assertDelivered(big, res)


class SmtpZbf(SmtpCbac):
    """The same with the ZBF seed (etc/router-zbf.conf): class WAN-LAN-MAIL
    ``match protocol smtp`` inspected from zone WAN to zone LAN."""

    config = zbf_variant()


# ---------------------------------------------------------------------------
# max-data 10000


MAXDATA_CONFIG = seed_variant(replace=[("ip inspect name OUT-IN smtp", "ip inspect name OUT-IN smtp max-data 10000")])


class MaxDataMixin(_SmtpBase):
    def test_message_below_max_data_passes(self):
        res = self.smtplib_send(MESSAGE)
        self.assertTrue(res["ok"], res)
        self.assertDelivered(MESSAGE, res)

    def test_message_above_max_data(self):
        big = MESSAGE + (b"z" * 78 + b"\r\n") * 400
        self.assertGreater(len(big), 30000)
        res = self.smtplib_send(big)
        self.assertOversize(res, big)


class MaxDataKernelReference(MaxDataMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"

    def assertOversize(self, res, big):
        self.assertTrue(res["ok"], res)
        self.assertDelivered(big, res)


class MaxDataCbac(MaxDataMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"
    config = MAXDATA_CONFIG

    def assertOversize(self, res, big):
        self.assertFalse(res["ok"], res)
        self.assertRegex(res["error"], r"SMTPServerDisconnected|Connection(Reset|Aborted)Error|BrokenPipe|"
                                       r"SMTPDataError|timed out")
        self.assertFalse([m for m in self.messages() if m["data"].encode("latin-1") == big])
        log = self.wait_log("SMTP_MAX_DATA")
        self.assertRegex(log, r"%FW-4-SMTP_MAX_DATA: ")


# ---------------------------------------------------------------------------
# esmtp: raw server with PIPELINING, SIZE, 8BITMIME, CHUNKING, AUTH


class MaxDataZbf(MaxDataCbac):
    """max-data in ZBF terms: a layer 7 SMTP policy (``match data-length
    gt 10000``, ``reset``) under the inspected mail class."""

    config = zbf_variant(
        ["class-map type inspect smtp match-any SMTP-BIG",
         " match data-length gt 10000",
         "!",
         "policy-map type inspect smtp SMTP-L7",
         " class type inspect smtp SMTP-BIG",
         "  reset",
         "  log"],
        replace=[(" class type inspect WAN-LAN-MAIL\n  inspect\n",
                  " class type inspect WAN-LAN-MAIL\n  inspect\n  service-policy smtp SMTP-L7\n")])


ESMTP_CONFIG = seed_variant(replace=[("ip inspect name OUT-IN smtp", "ip inspect name OUT-IN esmtp")])

BDAT1 = b"From: a@out.test\r\nSubject: bdat\r\n\r\nfirst chunk\r\n.\r\n"
BDAT2 = b"second chunk, no dot-stuffing\r\n.\r\n"


class EsmtpMixin(_SmtpBase):
    server_kind = "rawsmtp"
    server_args = ()

    def test_ehlo_auth_8bitmime_size(self):
        res = self.smtplib_send(MESSAGE_8BIT, login=True, mail_options=["BODY=8BITMIME"])
        self.assertTrue(res["ok"], res)
        self.assertTrue(res["esmtp"])
        for kw in ("pipelining", "size", "8bitmime", "chunking", "auth"):
            self.assertIn(kw, res["features"])
        self.assertDelivered(MESSAGE_8BIT, res)
        arrived = self.lines_from(res["port"])
        self.assertTrue(any(line.startswith(b"AUTH PLAIN ") for line in arrived), arrived)
        mail = [line for line in arrived if line.upper().startswith(b"MAIL FROM:")]
        self.assertEqual(mail, [b"mail FROM:<a@out.test> size=%d BODY=8BITMIME\r\n" % len(MESSAGE_8BIT)])

    def test_swaks_pipelining_and_auth(self):
        r = self.env.exec("out", ["swaks", "--server", "172.22.1.16:25", "--from", "a@out.test",
                                  "--to", "b@lab.test", "--ehlo", "client.out.test", "--pipeline",
                                  "--auth", "PLAIN", "--auth-user", "user", "--auth-password", "secret",
                                  "--timeout", "15", "--body", "pipelined body"], timeout=40)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr)
        self.assertIn("235 2.7.0 Authentication successful", r.stdout)
        self.assertIn("250 OK stored", r.stdout)
        self.assertTrue(any(b"pipelined body" in m["data"].encode("latin-1") for m in self.messages()))

    def test_raw_pipelined_burst(self):
        body = b"Subject: pipelined\r\n\r\nburst body\r\n"
        res = self.raw_session([
            (b"EHLO raw.out.test\r\n", 1),
            (b"MAIL FROM:<a@out.test>\r\nRCPT TO:<b@lab.test>\r\nRCPT TO:<c@lab.test>\r\nDATA\r\n", 4),
            (body + b".\r\n", 1),
            (b"QUIT\r\n", 1)])
        self.assertTrue(res["ok"], res)
        codes = [r[-1][:3] for r in res["replies"]]
        self.assertEqual(codes, ["220", "250", "250", "250", "250", "354", "250", "221"], res)
        self.assertDelivered(body, res)

    def test_bdat_chunks(self):
        res = self.raw_session([
            (b"EHLO bdat.out.test\r\n", 1),
            (b"MAIL FROM:<a@out.test>\r\nRCPT TO:<b@lab.test>\r\n", 2),
            (b"BDAT %d\r\n" % len(BDAT1) + BDAT1, 1),
            (b"BDAT %d LAST\r\n" % len(BDAT2) + BDAT2, 1),
            (b"QUIT\r\n", 1)])
        self.assertTrue(res["ok"], res)
        self.assertEqual(res["replies"][-2], ["250 OK %d bytes stored" % (len(BDAT1) + len(BDAT2))])
        m = self.assertDelivered(BDAT1 + BDAT2, res)
        self.assertTrue(m.get("bdat"))

    def test_ehlo_reply(self):
        res = self.raw_session([(b"EHLO look.out.test\r\n", 1), (b"QUIT\r\n", 1)])
        self.assertTrue(res["ok"], res)
        self.assertEhloFiltered(res["replies"][1])


class EsmtpKernelReference(EsmtpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "kernel"

    def assertEhloFiltered(self, lines):
        self.assertIn("250-XSHADY", lines)


class EsmtpCbac(EsmtpMixin, unittest.TestCase):
    skip = skip_reason()
    mode = "cbac"
    config = ESMTP_CONFIG

    def assertEhloFiltered(self, lines):
        """An extension cbac does not inspect is masked (same length)."""
        self.assertNotIn("250-XSHADY", lines)
        self.assertIn("250-XXXXXX", lines)
        for kw in ("PIPELINING", "SIZE 10485760", "8BITMIME", "CHUNKING"):
            self.assertIn("250-" + kw, lines)

    def test_illegal_verbs_masked_in_esmtp(self):
        res = self.run_json(VERBS_CLIENT, json.dumps(ILLEGAL))
        arrived = self.lines_from(res["port"])
        for (line, code, text) in res["replies"]:
            sent = line.encode() + b"\r\n"
            self.assertNotIn(sent, arrived)
            self.assertIn(b"x" * (len(sent) - 2) + b"\r\n", arrived)
            self.assertEqual(code, 500, text)


class EsmtpZbf(EsmtpCbac):
    """ESMTP inspection in ZBF terms: ``match protocol smtp extended``."""

    config = zbf_variant(replace=[(" match protocol smtp\n", " match protocol smtp extended\n")])


VERB_RESET_CLIENT = r"""
import json, smtplib
s = smtplib.SMTP("172.22.1.16", 25, timeout=15)
out = {"port": s.sock.getsockname()[1]}
out["helo"] = s.docmd("HELO out.test")[0]
try:
    out["vrfy"] = s.docmd("VRFY root")[0]
except Exception as e:
    out["error"] = type(e).__name__
print(json.dumps(out))
"""


class SmtpVerbPolicyZbf(_SmtpBase, unittest.TestCase):
    """A layer 7 smtp policy (``match cmd verb VRFY``, ``reset``, ``log``):
    the VRFY line never reaches the server, the session is reset."""

    skip = skip_reason()
    mode = "cbac"
    config = zbf_variant(
        ["class-map type inspect smtp match-any SMTP-VERBS",
         " match cmd verb VRFY",
         "!",
         "policy-map type inspect smtp SMTP-L7",
         " class type inspect smtp SMTP-VERBS",
         "  reset",
         "  log"],
        replace=[(" class type inspect WAN-LAN-MAIL\n  inspect\n",
                  " class type inspect WAN-LAN-MAIL\n  inspect\n  service-policy smtp SMTP-L7\n")])

    def test_vrfy_resets_the_session(self):
        res = self.run_json(VERB_RESET_CLIENT)
        self.assertEqual(res["helo"], 250)
        self.assertIn("error", res, res)
        arrived = self.lines_from(res["port"])
        self.assertTrue(arrived[0].upper().startswith(b"HELO "), arrived)
        self.assertFalse([x for x in arrived if b"VRFY" in x.upper() or x.startswith(b"xxxx")],
                         arrived)
        log = self.wait_log("SMTP_L7_POLICY")
        self.assertIn("%%FW-4-SMTP_L7_POLICY: SMTP command VRFY from initiator (172.22.1.1:%d) "
                      "-- session reset by layer 7 policy" % res["port"], log)
