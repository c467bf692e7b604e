"""RTSP inspection (``ip inspect name NAME rtsp``; RFC 2326), TCP 554.

An :class:`~cbac.inspect.api.IStreamInspector` on the control connection.
Messages (requests and responses, both directions) are framed by their
header section and ``Content-Length`` whatever the segmentation; each is
held until complete, then released (with one Edit when NAT changed it).
Interleaved binary data (RFC 2326 10.12: ``$``, channel, 16-bit length,
data) passes between messages without being held.

Transitions (per control connection; ``pending`` maps the CSeq of a
SETUP to the client ports it asked for):

===========  ==============================================  =======  ===========================
state        event                                           verdict  next state / action
===========  ==============================================  =======  ===========================
any          client SETUP, Transport ``client_port=a-b``     PASS     pending[CSeq] = (a, b);
                                                                      under NAT a-b rewritten to
                                                                      the ports PAT reserved
any          client SETUP, interleaved (RTP/AVP/TCP)         PASS     nothing to open
any          server 2xx to a pending SETUP, Transport        PASS     UDP pinholes: server -> client
             ``client_port`` (+ ``server_port``)                      a and b (RTP, RTCP); client ->
                                                                      server ports; client_port
                                                                      rewritten back; grouped by
                                                                      the RTSP Session id
any          other response to a pending SETUP               PASS     pending entry dropped
any          TEARDOWN (Session id)                           PASS     that session's pinholes and
                                                                      media sessions closed
any          ``$`` frame                                     PASS     skipped (interleaved data)
any          malformed (below)                               RESET    both ends reset, alert
===========  ==============================================  =======  ===========================

Malformed (alert ``%FW-3-RTSP_MALFORMED``, connection reset): a start
line that is neither ``METHOD URI RTSP/1.0`` nor ``RTSP/1.0 NNN``; a
folded, colon-less or CR/LF-damaged header line; a header section over
:data:`MAX_HEADER` bytes; a repeated or non-numeric ``Content-Length`` or
one over :data:`MAX_BODY`; a SETUP whose Transport cbac cannot parse
(a ``client_port`` that is not ``a`` or ``a-b`` or is below 1024,
``destination=`` naming
another host: media would go somewhere cbac was not asked to open); more
than :data:`MAX_PENDING` SETUPs awaiting their answer or :data:`MAX_CHANNELS`
media pinholes in the connection's life.
"""

from __future__ import annotations

import re

from zope.interface import implementer, provider

from cbac.inspect.api import (CLIENT, SERVER, Edit, Expectation, IInspectorFactory,
                              IStreamInspector, Verdict, alert)

MAX_HEADER = 8192
MAX_BODY = 65536
MAX_PENDING = 16
MAX_SESSIONS = 32
MEDIA_TIMEOUT = 120.0
#: media pinholes one control connection may open in its life
MAX_CHANNELS = 128

_REQUEST = re.compile(rb"([A-Z_]+) (\S+) RTSP/1\.0\Z")
_STATUS = re.compile(rb"RTSP/1\.0 ([1-5]\d\d)( [^\r\n]*)?\Z")
_TOKEN = re.compile(rb"[A-Za-z0-9.!%*_+`'~-]+\Z")
_DIGITS = re.compile(rb"\s*(\d{1,10})\s*\Z")
_PORTS = re.compile(rb"(\d{1,5})(?:-(\d{1,5}))?\Z")
_IPV4 = re.compile(rb"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\Z")


class Malformed(Exception):
    pass


def ntoa(addr):
    return "%d.%d.%d.%d" % ((addr >> 24) & 255, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255)


def aton(b):
    a, b2, c, d = (int(x) for x in b.split(b"."))
    return (a << 24) | (b2 << 16) | (c << 8) | d


def _parse_head(head):
    if len(head) > MAX_HEADER:
        raise Malformed("rtsp-header-too-long")
    lines = head[:-4].split(b"\r\n")
    if any(b"\r" in ln or b"\n" in ln or b"\0" in ln for ln in lines):
        raise Malformed("rtsp-bad-line")
    rq = _REQUEST.match(lines[0])
    st = None if rq else _STATUS.match(lines[0])
    if rq is None and st is None:
        raise Malformed("rtsp-bad-start-line")
    headers = []
    clen = None
    for ln in lines[1:]:
        if ln[:1] in (b" ", b"\t"):
            raise Malformed("rtsp-folded-header")
        name, colon, value = ln.partition(b":")
        name = name.rstrip(b" \t")
        if not colon or not _TOKEN.match(name):
            raise Malformed("rtsp-bad-header")
        key = name.lower()
        headers.append([key, name, value])
        if key == b"content-length":
            d = _DIGITS.match(value)
            if clen is not None or d is None:
                raise Malformed("rtsp-bad-content-length")
            clen = int(d.group(1))
            if clen > MAX_BODY:
                raise Malformed("rtsp-body-too-long")
    method = rq.group(1) if rq else None
    code = int(st.group(1)) if st else None
    return method, code, headers, clen or 0


def _get(headers, key):
    for h in headers:
        if h[0] == key:
            return h
    return None


def _params(spec):
    """Transport spec -> list of [key, value-or-None] (order kept)."""
    out = []
    for p in spec.split(b";"):
        k, eq, v = p.partition(b"=")
        out.append([k.strip().lower(), v.strip() if eq else None, p])
    return out


def _ports(v):
    m = _PORTS.match(v or b"")
    if m is None:
        raise Malformed("rtsp-bad-transport")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) else None
    if not 0 < a <= 65535 or (b is not None and not 0 < b <= 65535):
        raise Malformed("rtsp-bad-transport")
    return a, b


@implementer(IStreamInspector)
class RtspInspector:
    name = "rtsp"

    def __init__(self, ctx):
        self.ctx = ctx
        self._buf = [bytearray(), bytearray()]
        self._start = [0, 0]
        self._rel = [0, 0]
        self._skip = [0, 0]              # interleaved bytes still to pass
        self.pending = {}                # CSeq -> [(own a, own b, mapped a, mapped b)]
        self.groups = {}                 # RTSP Session id -> [pinholes, sessions]
        self.channels = 0
        self.frames = 0
        self.last = "idle"

    # -- IStreamInspector ---------------------------------------------------

    def data_received(self, direction, data):
        v = Verdict()
        d = direction
        buf = self._buf[d]
        if self._skip[d]:
            n = min(self._skip[d], len(data))
            self._skip[d] -= n
            self._start[d] += n
            data = data[n:]
        buf += data
        while buf:
            if buf[0] == 0x24:                   # '$' interleaved frame
                if len(buf) < 4:
                    break
                n = 4 + ((buf[2] << 8) | buf[3])
                self.frames += 1
                if len(buf) >= n:
                    del buf[:n]
                    self._start[d] += n
                    continue
                self._skip[d] = n - len(buf)
                self._start[d] += len(buf)
                del buf[:]
                break
            if buf[:2] == b"\r\n":
                del buf[:2]
                self._start[d] += 2
                continue
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > MAX_HEADER:
                    return self._bad(v, d, "rtsp-header-too-long")
                break
            end = i + 4
            try:
                method, code, headers, clen = _parse_head(bytes(buf[:end]))
            except Malformed as e:
                return self._bad(v, d, str(e))
            if len(buf) < end + clen:
                break
            head = bytes(buf[:end])
            self._start_line = head.split(b"\r\n", 1)[0]
            try:
                new_head = self._message(d, method, code, headers, head, v)
            except Malformed as e:
                return self._bad(v, d, str(e))
            if new_head is not None and new_head != head:
                v.edits.append(Edit(self._start[d], end, new_head))
            total = end + clen
            del buf[:total]
            self._start[d] += total
        v.release = self._rel[d] = self._start[d]
        return v

    def connection_closed(self, direction):
        return None

    def state_summary(self):
        return "RTSP %s, %d media channels, %d interleaved frames" % (
            self.last, self.channels, self.frames)

    # -- messages -------------------------------------------------------------

    def _message(self, d, method, code, headers, head, v):
        cseq = _get(headers, b"cseq")
        cseq = cseq[2].strip() if cseq is not None else None
        if method is not None:
            self.last = method.decode()
        else:
            self.last = "%d" % code
        if method == b"SETUP" and d == CLIENT:
            return self._setup(headers, cseq, v)
        if method == b"TEARDOWN":
            sess = _get(headers, b"session")
            sid = sess[2].split(b";")[0].strip() if sess is not None else None
            groups = [self.groups.pop(sid)] if sid in self.groups else \
                (list(self.groups.values()) if sid is None else [])
            if sid is None:
                self.groups.clear()
            for g in groups:
                v.close.append(g)
            return None
        if code is not None and d == SERVER and cseq in self.pending:
            asked = self.pending.pop(cseq)
            if 200 <= code < 300:
                return self._setup_reply(headers, asked, v)
        return None

    def _setup(self, headers, cseq, v):
        tr = _get(headers, b"transport")
        if tr is None:
            raise Malformed("rtsp-bad-transport")
        if len(self.pending) >= MAX_PENDING:
            raise Malformed("rtsp-too-many-setups")
        asked = []
        specs = tr[2].split(b",")
        out = []
        for spec in specs:
            ps = _params(spec)
            for p in ps:
                if p[0] == b"destination" and p[1] is not None:
                    if not _IPV4.match(p[1]) or aton(p[1]) != self.ctx.client_addr:
                        raise Malformed("rtsp-bad-transport")
                    p[2] = b"destination=" + ntoa(self._map_addr()).encode()
                elif p[0] == b"client_port":
                    a, b = _ports(p[1])
                    if a < 1024 or (b is not None and b < 1024):
                        raise Malformed("rtsp-privileged-port")
                    ma = self._map_port(a)
                    mb = self._map_port(b) if b is not None else None
                    if ma is None or (b is not None and mb is None):
                        raise Malformed("rtsp-nat-failed")
                    asked.append((a, b, ma, mb))
                    p[2] = b"client_port=%d" % ma + (b"-%d" % mb if mb is not None else b"")
            out.append(b";".join(p[2] for p in ps))
        if cseq is not None and asked:
            self.pending[cseq] = asked
        new = b",".join(out)
        if new == tr[2]:
            return None
        tr[2] = new
        return self._serialize(headers)

    def _setup_reply(self, headers, asked, v):
        tr = _get(headers, b"transport")
        sess = _get(headers, b"session")
        sid = sess[2].split(b";")[0].strip() if sess is not None else b""
        if tr is None:
            return None
        ps = _params(tr[2].split(b",")[0])
        cp = sp = None
        src = self._server_own()
        for p in ps:
            if p[0] == b"client_port":
                cp = _ports(p[1])
                mine = [x for x in asked if x[2] == cp[0]]
                if not mine:
                    raise Malformed("rtsp-bad-transport")   # ports nobody asked for
                a, b, ma, mb = mine[0]
                if (a, b) != (ma, mb):
                    p[2] = b"client_port=%d" % a + (b"-%d" % b if b is not None else b"")
                cp = (a, b, ma, mb)
            elif p[0] == b"server_port":
                sp = _ports(p[1])
            elif p[0] == b"source" and p[1] is not None:
                if not _IPV4.match(p[1]):
                    raise Malformed("rtsp-bad-transport")
                src = aton(p[1])
        if cp is None:
            return None          # interleaved or multicast: nothing to open
        if sid not in self.groups and len(self.groups) >= MAX_SESSIONS:
            raise Malformed("rtsp-too-many-sessions")
        if self.channels >= MAX_CHANNELS:
            raise Malformed("rtsp-too-many-channels")
        group = self.groups.setdefault(sid, [])
        a, b, ma, mb = cp
        caddr = self._map_addr()
        for port, label in ((ma, "rtsp-rtp"), (mb, "rtsp-rtcp")):
            if port is not None:
                self._open(v, Expectation("udp", src, None, caddr, port, MEDIA_TIMEOUT, label),
                           group)
        if sp is not None:
            for port, label in ((sp[0], "rtsp-rtp"), (sp[1], "rtsp-rtcp")):
                if port is not None:
                    self._open(v, Expectation("udp", self.ctx.client_addr, None,
                                              self.ctx.server_addr, port, MEDIA_TIMEOUT, label),
                               group)
        if (a, b) == (ma, mb):
            return None
        tr[2] = b";".join(p[2] for p in ps)
        return self._serialize(headers)

    def _open(self, v, e, group):
        e.group = group
        v.expect.append(e)
        self.channels += 1
        if self.ctx.debug:
            v.debug.append("CBAC RTSP: media channel %s -> %s:%d (%s) opened" % (
                ntoa(e.src) if e.src is not None else "any", ntoa(e.dst), e.dst_port, e.label))

    def _serialize(self, headers):
        return b"\r\n".join([self._start_line] + [h[1] + b":" + h[2] for h in headers]) \
            + b"\r\n\r\n"

    # -- NAT ------------------------------------------------------------------

    def _server_own(self):
        o = getattr(self.ctx, "server_own_addr", None)
        return o if o is not None else self.ctx.server_addr

    def _map_addr(self):
        seen = getattr(self.ctx, "client_seen", None)
        if seen is not None:
            return seen[0]
        return self.ctx.nat_map(CLIENT, "udp", self.ctx.client_addr, self.ctx.client_port)[0]

    def _map_port(self, port):
        # media may come from another address than the control connection's
        # (Transport source=): a PAT door any remote may use, the pinhole
        # checks the source
        nat_map = getattr(self.ctx, "nat_map_any", None) or self.ctx.nat_map
        try:
            maddr, mport = nat_map(CLIENT, "udp", self.ctx.client_addr, port)
            mport = int(mport)
        except Exception:
            return None
        return mport if 0 < mport <= 65535 else None

    # -- refusal --------------------------------------------------------------

    def _bad(self, v, d, why):
        v.release = self._rel[d]
        v.edits = []
        v.expect = []
        v.close = []
        c = self.ctx
        v.log.append(alert(3, "RTSP_MALFORMED",
                      "Malformed RTSP message (%s) -- initiator %s:%d responder %s:%d"
                      % (why, ntoa(c.client_addr), c.client_port, ntoa(c.server_addr),
                         c.server_port)))
        v.reset = True
        v.reason = why
        return v


@provider(IInspectorFactory)
def factory(ctx):
    """The ``rtsp`` inspector factory (IInspectorFactory)."""
    return RtspInspector(ctx)


factory.name = "rtsp"
