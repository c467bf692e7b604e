"""POP3 and IMAP inspection end to end in the namespace lab: ``ip inspect
name IN-OUT pop3`` and ``imap`` added to the seed (PAT for the inside); on
the outside host a small threaded POP3/IMAP server (RFC 1939/3501 subset,
below), on the inside host Python's own poplib and imaplib clients: a login
and a message retrieved (the IMAP body as a literal that contains a fake
tagged reply) pass unchanged, and commands cbac refuses reach the client
as the server's ``-ERR`` / ``TAG BAD``."""

import json
import sys

from twisted.trial import unittest

from tests.labrun import LabCase, seed_variant, skip_reason

CONFIG = seed_variant(replace=[("ip inspect name IN-OUT udp\n",
                                "ip inspect name IN-OUT udp\nip inspect name IN-OUT pop3\n"
                                "ip inspect name IN-OUT imap\n")])

MSG = "Subject: hi\r\n\r\na2 OK not a reply\r\n.dot line\r\nend\r\n"

SERVER = r"""
import socketserver, sys, threading
MSG = %r.encode()
class Pop(socketserver.StreamRequestHandler):
    def handle(self):
        w = self.wfile.write
        w(b"+OK ready\r\n")
        for line in self.rfile:
            v = line.split()[0].upper() if line.split() else b""
            if v in (b"USER", b"PASS", b"NOOP"):
                w(b"+OK\r\n")
            elif v == b"RETR":
                body = MSG.replace(b"\r\n.", b"\r\n..")
                w(b"+OK\r\n" + body + b".\r\n")
            elif v == b"QUIT":
                w(b"+OK bye\r\n"); return
            else:
                w(b"-ERR unknown\r\n")
class Imap(socketserver.StreamRequestHandler):
    def handle(self):
        w = self.wfile.write
        w(b"* OK IMAP4rev1 ready\r\n")
        for line in self.rfile:
            p = line.split()
            tag, v = p[0], (p[1].upper() if len(p) > 1 else b"")
            if v == b"CAPABILITY":
                w(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
            elif v in (b"LOGIN", b"NOOP"):
                w(tag + b" OK done\r\n")
            elif v == b"SELECT":
                w(b"* 1 EXISTS\r\n" + tag + b" OK [READ-WRITE] done\r\n")
            elif v == b"FETCH":
                w(b"* 1 FETCH (RFC822 {%%d}\r\n" %% len(MSG) + MSG + b")\r\n" + tag + b" OK done\r\n")
            elif v == b"LOGOUT":
                w(b"* BYE\r\n" + tag + b" OK bye\r\n"); return
            else:
                w(tag + b" BAD unknown command\r\n")
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
a, b = S(("172.22.1.1", 110), Pop), S(("172.22.1.1", 143), Imap)
threading.Thread(target=a.serve_forever, daemon=True).start()
print("READY", flush=True)
b.serve_forever()
""" % MSG

CLIENT = r"""
import imaplib, json, poplib
out = {}
p = poplib.POP3("172.22.1.1", 110, timeout=10)
p.user("alice"); p.pass_("secret")
out["pop_retr"] = b"\r\n".join(p.retr(1)[1]).decode()
try:
    p._shortcmd("XTND XMIT")
except poplib.error_proto as e:
    out["pop_bad"] = e.args[0].decode()
out["pop_noop"] = p.noop().decode()
p.quit()
m = imaplib.IMAP4("172.22.1.1", 143, timeout=10)
m.login("alice", "secret")
m.select("INBOX")
typ, data = m.fetch("1", "(RFC822)")
out["imap_fetch"] = data[0][1].decode()
try:
    m.xatom("XYZZY")
except imaplib.IMAP4.error as e:
    out["imap_bad"] = str(e)
out["imap_noop"] = m.noop()[0]
m.logout()
print(json.dumps(out))
"""


class MailLabTests(LabCase, unittest.TestCase):
    skip = skip_reason()
    config = CONFIG
    timeout = 120

    @classmethod
    def setUpLab(cls):
        cls.env.server("out", [sys.executable, "-c", SERVER])

    def test_poplib_and_imaplib_through_pat(self):
        r = None
        for _ in range(3):
            r = self.env.python("in", CLIENT, timeout=60)
            if r.returncode == 0:
                break
        self.assertEqual(r.returncode, 0, r.stderr[-2000:] + self.env.log())
        out = json.loads(r.stdout)
        self.assertEqual(out["pop_retr"] + "\r\n", MSG)
        self.assertTrue(out["pop_bad"].startswith("-ERR"), out)
        self.assertTrue(out["pop_noop"].startswith("+OK"), out)
        self.assertEqual(out["imap_fetch"], MSG)
        self.assertIn("BAD [b'unknown command']", out["imap_bad"])
        self.assertEqual(out["imap_noop"], "OK")
        log = self.env.log()
        self.assertIn("%FW-3-POP3_INVALID_COMMAND: Invalid POP3 command from initiator "
                      "(10.10.10.2:", log)
        self.assertIn("%FW-3-IMAP_INVALID_COMMAND: Invalid IMAP command from initiator "
                      "(10.10.10.2:", log)
