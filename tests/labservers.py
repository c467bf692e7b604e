"""Servers the lab integration tests run inside the lab's namespaces.

Run as a script (``python tests/labservers.py KIND ...``; ``--help``).
Every server appends one JSON object per line to its record file (bytes
as latin-1 strings, so a test sees exactly what arrived) and writes
``READY`` to stdout once it listens:

``smtp HOST PORT RECORD [--size N]``
    aiosmtpd; offers SIZE, 8BITMIME, AUTH PLAIN/LOGIN (password
    ``secret``); records ``{"ev": "line", "peer", "data"}`` for every line
    it reads (command lines with their terminator), ``{"ev": "reply"}``
    for every reply and ``{"ev": "msg", "from", "to", "data"}`` for every
    message (dot-unstuffed, as received).
``rawsmtp HOST PORT RECORD``
    a small asyncio SMTP server that advertises PIPELINING, SIZE, 8BITMIME,
    CHUNKING, AUTH PLAIN and an invented ``XSHADY`` and handles BDAT (aiosmtpd has no CHUNKING);
    same records; messages received by BDAT carry ``"bdat": true``.
``ftp HOST PORT RECORD ROOT``
    pyftpdlib, user ``ftptest`` / ``ftptest`` (read/write in ROOT),
    passive ports 40200-40300; records every command line
    (``{"ev": "line", "peer", "data"}``).
``web HOST PORT RECORD ROOT``
    HTTP/1.1 with keep-alive; records every request line with its peer
    (``{"ev": "request", "peer", "line"}``); GET serves files of ROOT; a
    body is read by Content-Length, else (``Transfer-Encoding: chunked``)
    by a *lenient* chunked reader (leading hex digits, like many old
    back ends), so smuggling payloads reach it as they would a naive
    server.
``udpecho HOST PORT RECORD``
    echoes every datagram prefixed with ``echo:``; records the peer.
``listen HOST PORT RECORD``
    a TCP listener that records every accepted peer and closes.
"""

import argparse
import asyncio
import base64
import json
import os
import socket
import socketserver
import sys
import threading


class Recorder:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def __call__(self, ev, **kw):
        kw["ev"] = ev
        for k, v in list(kw.items()):
            if isinstance(v, (bytes, bytearray)):
                kw[k] = bytes(v).decode("latin-1")
            elif isinstance(v, (list, tuple)):
                kw[k] = [bytes(x).decode("latin-1") if isinstance(x, (bytes, bytearray)) else x for x in v]
        with self.lock:
            self.f.write(json.dumps(kw) + "\n")
            self.f.flush()


def ready():
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def _peer(t):
    return "%s:%d" % (t[0], t[1]) if t else "?"


# --- aiosmtpd ----------------------------------------------------------------


def run_smtp(args):
    import aiosmtpd.smtp
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    # aiosmtpd hangs up after 5 unrecognized commands; the masking tests
    # send more than that (every masked verb is unrecognized)
    aiosmtpd.smtp.BOGUS_LIMIT = 1000

    rec = Recorder(args.record)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            rec("msg", peer=_peer(session.peer), **{"from": envelope.mail_from},
                to=list(envelope.rcpt_tos), data=envelope.original_content,
                auth=bool(session.authenticated))
            return "250 OK stored"

    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=isinstance(auth_data, LoginPassword) and auth_data.password == b"secret")

    class RecordingSMTP(SMTP):
        def _cb_client_connected(self, reader, writer):
            orig = reader.readuntil
            proto = self

            async def readuntil(separator=b"\n"):
                line = await orig(separator)
                sess = getattr(proto, "session", None)
                rec("line", peer=_peer(getattr(sess, "peer", None)), data=line)
                return line

            reader.readuntil = readuntil
            super()._cb_client_connected(reader, writer)

        async def push(self, status):
            rec("reply", data=status if isinstance(status, bytes) else status.encode("utf-8", "replace"))
            return await super().push(status)

    class C(Controller):
        def factory(self):
            return RecordingSMTP(self.handler, data_size_limit=args.size or None, enable_SMTPUTF8=False,
                                 auth_require_tls=False, authenticator=authenticator,
                                 hostname="mail.lab.test")

    c = C(Handler(), hostname=args.host, port=args.port, ready_timeout=10)
    c.start()
    ready()
    threading.Event().wait()


# --- raw SMTP with PIPELINING / CHUNKING ----------------------------------------


def run_rawsmtp(args):
    rec = Recorder(args.record)
    ehlo = [b"250-mail.lab.test", b"250-PIPELINING", b"250-SIZE 10485760", b"250-8BITMIME",
            b"250-CHUNKING", b"250-XSHADY", b"250 AUTH PLAIN"]

    async def client(reader, writer):
        peer = _peer(writer.get_extra_info("peername"))
        mail_from, rcpts, bdat = None, [], bytearray()

        async def reply(*lines):
            for line in lines:
                rec("reply", data=line)
            writer.write(b"".join(line + b"\r\n" for line in lines))
            await writer.drain()

        await reply(b"220 mail.lab.test ESMTP raw")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                rec("line", peer=peer, data=line)
                text = line.rstrip(b"\r\n")
                verb, _, arg = text.partition(b" ")
                verb = verb.upper()
                if verb == b"EHLO":
                    await reply(*ehlo)
                elif verb == b"HELO":
                    await reply(b"250 mail.lab.test")
                elif verb == b"AUTH":
                    ok = base64.b64decode(arg.split()[-1] + b"==")[-6:] == b"secret" if b" " in arg else False
                    await reply(b"235 2.7.0 Authentication successful" if ok else b"535 5.7.8 failed")
                elif verb == b"MAIL":
                    mail_from, rcpts, bdat = arg, [], bytearray()
                    await reply(b"250 OK")
                elif verb == b"RCPT":
                    rcpts.append(arg)
                    await reply(b"250 OK")
                elif verb == b"DATA":
                    await reply(b"354 End data with <CR><LF>.<CR><LF>")
                    body = bytearray()
                    while True:
                        d = await reader.readline()
                        if not d:
                            return
                        if d == b".\r\n":
                            break
                        body += d[1:] if d.startswith(b".") else d
                    rec("msg", peer=peer, **{"from": mail_from}, to=rcpts, data=body)
                    await reply(b"250 OK stored")
                elif verb == b"BDAT":
                    parts = arg.split()
                    n = int(parts[0])
                    chunk = await reader.readexactly(n)
                    bdat += chunk
                    if len(parts) > 1 and parts[1].upper() == b"LAST":
                        rec("msg", peer=peer, **{"from": mail_from}, to=rcpts, data=bdat, bdat=True)
                        await reply(b"250 OK %d bytes stored" % len(bdat))
                        bdat = bytearray()
                    else:
                        await reply(b"250 OK %d bytes received" % n)
                elif verb in (b"RSET", b"NOOP"):
                    await reply(b"250 OK")
                elif verb == b"QUIT":
                    await reply(b"221 Bye")
                    break
                else:
                    await reply(b'500 Error: command "%s" not recognized' % verb[:40])
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(client, args.host, args.port, limit=1 << 20)
        ready()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- FTP ---------------------------------------------------------------------------


def run_ftp(args):
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer
    import logging

    logging.basicConfig(level=logging.WARNING)
    rec = Recorder(args.record)
    auth = DummyAuthorizer()
    auth.add_user("ftptest", "ftptest", args.root, perm="elradfmwMT")
    auth.add_anonymous(args.root)

    class H(FTPHandler):
        def found_terminator(self):
            rec("line", peer="%s:%d" % (self.remote_ip, self.remote_port), data=b"".join(self._in_buffer))
            return super().found_terminator()

    H.authorizer = auth
    H.passive_ports = range(40200, 40301)
    server = FTPServer((args.host, args.port), H)
    ready()
    server.serve_forever()


# --- web ---------------------------------------------------------------------------


def run_web(args):
    rec = Recorder(args.record)
    root = os.path.abspath(args.root)

    class Handler(socketserver.StreamRequestHandler):
        timeout = 30

        def handle(self):
            peer = _peer(self.client_address)
            rfile, wfile = self.rfile, self.wfile
            while True:
                line = rfile.readline(65537)
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    continue
                rec("request", peer=peer, line=line.rstrip(b"\r\n"))
                headers = {}
                while True:
                    h = rfile.readline(65537)
                    if not h or h in (b"\r\n", b"\n"):
                        break
                    k, _, v = h.partition(b":")
                    headers.setdefault(k.strip().lower(), v.strip())
                parts = line.split()
                method = parts[0] if parts else b""
                path = parts[1] if len(parts) > 1 else b"/"
                body = b""
                if b"content-length" in headers:
                    try:
                        body = rfile.read(int(headers[b"content-length"]))
                    except ValueError:
                        body = b""
                elif headers.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
                    body = self.lenient_chunked(rfile)
                if method == b"GET":
                    fn = os.path.normpath(os.path.join(root, path.decode("latin-1").lstrip("/")))
                    if fn.startswith(root) and os.path.isfile(fn):
                        with open(fn, "rb") as f:
                            data = f.read()
                        status = b"200 OK"
                    else:
                        data, status = b"not found\n", b"404 Not Found"
                else:
                    data, status = b"got %d bytes\n" % len(body), b"200 OK"
                wfile.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\nContent-Type: application/octet-stream"
                            b"\r\n\r\n" % (status, len(data)) + data)
                wfile.flush()
                if headers.get(b"connection", b"").lower() == b"close":
                    return

        @staticmethod
        def lenient_chunked(rfile):
            body = bytearray()
            while True:
                size_line = rfile.readline(65537)
                if not size_line:
                    return bytes(body)
                digits = b""
                for c in size_line.strip():
                    if chr(c) in "0123456789abcdefABCDEF":
                        digits += bytes([c])
                    else:
                        break
                n = int(digits, 16) if digits else 0
                if n == 0:
                    while True:
                        t = rfile.readline(65537)
                        if not t or t in (b"\r\n", b"\n"):
                            return bytes(body)
                body += rfile.read(n)
                rfile.readline(65537)

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 64

    srv = Server((args.host, args.port), Handler)
    ready()
    srv.serve_forever()


# --- UDP echo, TCP listener ------------------------------------------------------------------


def run_udpecho(args):
    rec = Recorder(args.record)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args.host, args.port))
    ready()
    while True:
        data, peer = s.recvfrom(65535)
        rec("datagram", peer=_peer(peer), data=data)
        s.sendto(b"echo:" + data, peer)


def run_listen(args):
    rec = Recorder(args.record)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.host, args.port))
    s.listen(1024)
    ready()
    while True:
        c, peer = s.accept()
        rec("accept", peer=_peer(peer))
        c.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    for kind in ("smtp", "rawsmtp", "ftp", "web", "udpecho", "listen"):
        q = sub.add_parser(kind)
        q.add_argument("host")
        q.add_argument("port", type=int)
        q.add_argument("record")
        if kind in ("ftp", "web"):
            q.add_argument("root")
        if kind == "smtp":
            q.add_argument("--size", type=int, default=0, help="SIZE limit (0: none)")
    args = p.parse_args(argv)
    {"smtp": run_smtp, "rawsmtp": run_rawsmtp, "ftp": run_ftp, "web": run_web,
     "udpecho": run_udpecho, "listen": run_listen}[args.kind](args)


if __name__ == "__main__":
    main()
