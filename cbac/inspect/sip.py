"""SIP inspection (``ip inspect name NAME sip``; RFC 3261, SDP RFC 4566).

One sans-I/O core (:class:`SipCore`) judges and rewrites whole SIP
messages; two thin wrappers feed it:

* :class:`SipGuard` over UDP (port 5060): one message per datagram, fed by
  :func:`cbac.inspect.udp.udp_process` like the DNS and TFTP guards; a
  rewritten message replaces the datagram's payload (UDP/IP lengths and
  checksums recomputed).
* :class:`SipStreamInspector` over TCP (port 5060), an
  :class:`~cbac.inspect.api.IStreamInspector`: messages are framed by
  their ``Content-Length`` whatever the segmentation; each message is held
  until complete, then released with one :class:`~cbac.inspect.api.Edit`
  when NAT changed it (the stream engine moves the sequence numbers).

Per message the core (transitions per Call-ID; "offer" and "answer" are
SDP bodies, RFC 3264, in any message of the dialog: INVITE, 183, 200,
ACK, UPDATE, PRACK):

=============  ===========================================  =======  =====================
call state     event                                        verdict  next state / action
=============  ===========================================  =======  =====================
(none)         message with SDP from side A                 PASS     OFFERED (A's media)
OFFERED        SDP from A again (retransmission, new offer) PASS     OFFERED (replaced)
OFFERED        SDP from B (answer: 183, 200, ACK)           PASS     ANSWERED: RTP+RTCP
                                                                     pinholes toward each
                                                                     side's media from the
                                                                     other's c= address
ANSWERED       SDP from either side (re-INVITE)             PASS     OFFERED (pinholes kept
                                                                     until the new answer:
                                                                     the same media keeps
                                                                     them, other media
                                                                     replaces them)
any            2xx to INVITE                                PASS     confirmed (keeps the
                                                                     signalling session)
any            BYE or CANCEL                                PASS     gone: pinholes closed,
                                                                     media sessions deleted
unconfirmed    final response >= 300 to INVITE              PASS     gone (as BYE)
any            REGISTER / 2xx to REGISTER with expiry E     PASS     signalling session (and
                                                                     its PAT entry) kept E s
any            malformed (see below)                        DROP     unchanged (UDP: dropped;
                                                                     TCP: both ends reset)
=============  ===========================================  =======  =====================

Malformed, dropped and counted (``show ip inspect statistics``), alert
``%FW-3-SIP_MALFORMED``: a start line that is neither a request nor a
``SIP/2.0`` status line; a header line without a colon or a bare CR/LF;
a **folded** header line (continuation starting with a blank: cbac does
not unfold, so it cannot be sure what a UA will read); a header section
over :data:`MAX_HEADER` bytes or :data:`MAX_HEADERS` lines; a missing
Via, From, To, Call-ID or CSeq; a ``Content-Length`` missing (TCP),
repeated, not a number, over :data:`MAX_BODY` or (UDP) different from
the datagram's body; a multipart body (SDP inside it could not be
checked); an SDP body cbac cannot parse (a c= or m= line it does not
understand, a port range ``m=audio 5000/2``); a media port below 1024;
a media address that is not the sender's own address when the sender is
the session's initiator or a side NAT translates (a pinhole toward
another host of the protected side); more than :data:`MAX_MEDIA` media
lines.  A signalling session tracks at most :data:`MAX_CALLS` calls: a
new one evicts the oldest (its media closed).

Under NAT, a message's sender's own address (and ports) in the top Via's
sent-by, in Contact URIs and in SDP ``o=``, ``c=`` and ``m=`` (plus the
RTCP port, ``a=rtcp``) is rewritten to the form the receiver must use
(``ctx.nat_map``: PAT reserves the port, keeping it when free), and the
``Content-Length`` recomputed.  Going the other way, a Request-URI or Via
sent-by naming an address:port cbac rewrote is rewritten back.  When PAT
cannot keep RTCP next to RTP, an ``a=rtcp:PORT`` line is added (RFC 3605).
"""

from __future__ import annotations

import re

from zope.interface import implementer, provider

from cbac.inspect.api import (CLIENT, SERVER, Edit, Expectation, IInspectorFactory,
                              IStreamInspector, Verdict, alert)

PASS = "pass"
DROP = "drop"
EDIT = "edit"

#: largest header section (start line to the empty line), bytes
MAX_HEADER = 8192
#: most header lines in one message
MAX_HEADERS = 100
#: largest body (Content-Length)
MAX_BODY = 16384
#: media lines of one SDP body that open pinholes
MAX_MEDIA = 8
#: calls (Call-IDs with media) one signalling session tracks
MAX_CALLS = 64
#: addresses cbac rewrote that it remembers (to rewrite them back)
MAX_LEARNED = 256
#: lifetime of a media pinhole nobody uses (s)
MEDIA_TIMEOUT = 120.0
#: a confirmed call keeps the signalling session at least this long idle (s)
CALL_KEEP = 3600
#: a registration keeps the signalling session at most this long (s)
MAX_REGISTRATION = 7200
DEFAULT_REGISTRATION = 3600

_COMPACT = {b"v": b"via", b"m": b"contact", b"l": b"content-length", b"c": b"content-type",
            b"i": b"call-id", b"f": b"from", b"t": b"to", b"e": b"content-encoding",
            b"k": b"supported", b"s": b"subject"}
_REQUIRED = (b"via", b"from", b"to", b"call-id", b"cseq")
_TOKEN = re.compile(rb"[A-Za-z0-9.!%*_+`'~-]+\Z")
_REQUEST = re.compile(rb"([A-Z][A-Z0-9_.!%*+`'~-]*) (\S+) SIP/2\.0\Z")
_STATUS = re.compile(rb"SIP/2\.0 ([1-6]\d\d) [^\r\n]*\Z")
_CSEQ = re.compile(rb"\s*(\d{1,10})\s+([A-Za-z]+)\s*\Z")
_DIGITS = re.compile(rb"\s*(\d{1,10})\s*\Z")
_IPV4 = rb"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
# a SIP URI's host:port when the host is a dotted quad
_URI_HOST = re.compile(rb"(sips?:(?:[^@;>,\s\"]*@)?)(" + _IPV4 + rb")(?::(\d{1,5}))?(?![\d.])", re.I)
# the top Via's sent-by
_VIA = re.compile(rb"(\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+)(" + _IPV4 + rb")(?::(\d{1,5}))?(?=[\s;,]|\Z)", re.I)
_EXPIRES_PARAM = re.compile(rb";\s*expires\s*=\s*(\d{1,10})", re.I)
_C_LINE = re.compile(rb"IN IP4 (" + _IPV4 + rb")(/\d+(?:/\d+)?)?\Z")
_O_LINE = re.compile(rb"(\S+ \d+ \d+ IN IP4 )(" + _IPV4 + rb")\Z")
_M_LINE = re.compile(rb"([a-z]+) (\d{1,5}) (\S+)( .*)?\Z")
_RTCP = re.compile(rb"rtcp:(\d{1,5})( IN IP4 (" + _IPV4 + rb"))?\Z")


class Malformed(Exception):
    pass


def aton(b: bytes) -> int:
    a, b2, c, d = (int(x) for x in b.split(b"."))
    return (a << 24) | (b2 << 16) | (c << 8) | d


def ntoa(addr: int) -> str:
    return "%d.%d.%d.%d" % ((addr >> 24) & 255, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255)


class Message:
    """A parsed SIP message: start line, header lines, body."""

    __slots__ = ("start", "method", "code", "uri", "headers", "body", "cseq_method",
                 "call_id", "clen_index", "ctype")

    def header_values(self, name):
        return [v for n, v in self.headers if n == name]

    def first(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def serialize(self) -> bytes:
        out = [self.start]
        for n, v in self.headers:
            out.append(v[0] + b":" + v[1])
        return b"\r\n".join(out) + b"\r\n\r\n" + self.body


def split_head(data: bytes):
    """Index of the end of the header section (after CRLFCRLF), or -1."""
    i = data.find(b"\r\n\r\n")
    return i + 4 if i >= 0 else -1


def parse_message(head: bytes, body: bytes, over_tcp: bool) -> Message:
    """Parse one message; ``head`` ends with CRLFCRLF.  Raises Malformed."""
    if len(head) > MAX_HEADER:
        raise Malformed("sip-header-too-long")
    lines = head[:-4].split(b"\r\n")
    if any(b"\r" in ln or b"\n" in ln or b"\0" in ln for ln in lines):
        raise Malformed("sip-bad-line")
    if len(lines) > MAX_HEADERS + 1:
        raise Malformed("sip-too-many-headers")
    m = Message()
    m.start = lines[0]
    m.method = m.code = m.uri = None
    rq = _REQUEST.match(lines[0])
    if rq is not None:
        m.method = rq.group(1)
        m.uri = rq.group(2)
    else:
        st = _STATUS.match(lines[0])
        if st is None:
            raise Malformed("sip-bad-start-line")
        m.code = int(st.group(1))
    m.headers = []
    clen = None
    for ln in lines[1:]:
        if ln[:1] in (b" ", b"\t"):
            raise Malformed("sip-folded-header")
        name, colon, value = ln.partition(b":")
        name = name.rstrip(b" \t")
        if not colon or not _TOKEN.match(name):
            raise Malformed("sip-bad-header")
        key = name.lower()
        key = _COMPACT.get(key, key)
        m.headers.append((key, [name, value]))
        if key == b"content-length":
            if clen is not None:
                raise Malformed("sip-bad-content-length")
            d = _DIGITS.match(value)
            if d is None:
                raise Malformed("sip-bad-content-length")
            clen = int(d.group(1))
            m.clen_index = len(m.headers) - 1
    have = {k for k, _ in m.headers}
    for r in _REQUIRED:
        if r not in have:
            raise Malformed("sip-missing-header")
    cs = _CSEQ.match(m.first(b"cseq")[1])
    if cs is None:
        raise Malformed("sip-bad-cseq")
    m.cseq_method = cs.group(2).upper()
    if m.method is not None and m.cseq_method != m.method and m.method != b"ACK" \
            and m.method != b"CANCEL":
        raise Malformed("sip-bad-cseq")
    m.call_id = m.first(b"call-id")[1].strip()
    if not m.call_id:
        raise Malformed("sip-missing-header")
    if clen is None:
        if over_tcp:
            raise Malformed("sip-bad-content-length")
        m.clen_index = None
    else:
        if clen > MAX_BODY:
            raise Malformed("sip-body-too-long")
        if not over_tcp and clen != len(body):
            raise Malformed("sip-bad-content-length")
    if len(body) > MAX_BODY:
        raise Malformed("sip-body-too-long")
    m.body = body
    ct = m.first(b"content-type")
    m.ctype = ct[1].split(b";")[0].strip().lower() if ct is not None else b""
    if body and m.ctype.startswith(b"multipart/"):
        raise Malformed("sip-unsupported-body")
    if body and ct is None:
        raise Malformed("sip-bad-body")
    return m


class Media:
    """One m= line: as written by its sender and as the receiver sees it."""

    __slots__ = ("addr", "port", "rtcp", "maddr", "mport", "mrtcp")

    def key(self):
        return (self.maddr, self.mport, self.mrtcp)


def _sdp(core, d, body, out_media):
    """Parse (and for NAT rewrite) an SDP body; returns the new body.
    ``out_media`` receives the :class:`Media` of each usable m= line."""
    if b"\r" in body.replace(b"\r\n", b""):
        raise Malformed("sip-bad-sdp")
    ends = body.endswith(b"\n")
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    if ends:
        lines.pop()
    session_c = None
    media = []          # [line index, Media, c addr or None, explicit rtcp index]
    cur = None
    for i, ln in enumerate(lines):
        if len(ln) < 2 or ln[1:2] != b"=":
            raise Malformed("sip-bad-sdp")
        t, v = ln[:1], ln[2:]
        if t == b"c":
            if v.startswith(b"IN IP6"):
                addr = None
            else:
                cm = _C_LINE.match(v)
                if cm is None:
                    raise Malformed("sip-bad-sdp")
                addr = aton(cm.group(1))
                mapped = core.map_addr(d, addr)
                if mapped != addr:
                    lines[i] = b"c=IN IP4 " + ntoa(mapped).encode() + (cm.group(2) or b"")
            if cur is None:
                session_c = addr
            else:
                cur[2] = addr
                cur[4] = True
        elif t == b"o":
            om = _O_LINE.match(v)
            if om is not None:
                mapped = core.map_addr(d, aton(om.group(2)))
                lines[i] = b"o=" + om.group(1) + ntoa(mapped).encode()
        elif t == b"m":
            mm = _M_LINE.match(v)
            if mm is None:
                raise Malformed("sip-bad-sdp")
            port = int(mm.group(2))
            if port > 65535:
                raise Malformed("sip-bad-sdp")
            md = Media()
            md.port = port
            md.rtcp = port + 1 if port else 0
            cur = [i, md, session_c, None, False]
            media.append(cur)
            if len(media) > MAX_MEDIA:
                raise Malformed("sip-too-many-media")
        elif t == b"a" and cur is not None and v.startswith(b"rtcp:"):
            rm = _RTCP.match(v)
            if rm is None or int(rm.group(1)) > 65535:
                raise Malformed("sip-bad-sdp")
            cur[1].rtcp = int(rm.group(1))
            cur[3] = i
    inserts = []
    for idx, md, addr, rtcp_i, _ in media:
        md.addr = addr
        if addr is None or addr == 0 or md.port == 0 or md.port > 65534 or md.rtcp == 0:
            md.maddr = None
            continue
        if md.port < 1024 or md.rtcp < 1024:
            raise Malformed("sip-privileged-port")
        if addr != core.own(d) and core.restricted(d):
            raise Malformed("sip-non-matching-address")
        md.maddr = core.map_addr(d, addr)
        md.mport = core.map_port(d, addr, md.port, media=True)
        md.mrtcp = core.map_port(d, addr, md.rtcp, media=True)
        if md.mport is None or md.mrtcp is None:
            raise Malformed("sip-nat-failed")
        if md.mport != md.port:
            mm = _M_LINE.match(lines[idx][2:])
            lines[idx] = b"m=%s %d %s%s" % (mm.group(1), md.mport, mm.group(3), mm.group(4) or b"")
        if rtcp_i is not None:
            if md.mrtcp != md.rtcp or md.maddr != addr:
                rm = _RTCP.match(lines[rtcp_i][2:])
                lines[rtcp_i] = b"a=rtcp:%d" % md.mrtcp + (
                    b" IN IP4 " + ntoa(core.map_addr(d, aton(rm.group(3)))).encode()
                    if rm.group(2) else b"")
        elif md.mrtcp != md.mport + 1:
            inserts.append((idx, b"a=rtcp:%d" % md.mrtcp))
        out_media.append(md)
    for idx, line in reversed(inserts):
        lines.insert(idx + 1, line)
    return b"\r\n".join(lines) + (b"\r\n" if ends or lines else b"")


class Call:
    __slots__ = ("offer", "offer_side", "answered", "confirmed", "group", "keys")

    def __init__(self):
        self.offer = None
        self.offer_side = None
        self.answered = False
        self.confirmed = False
        self.group = []          # pinholes and media sessions (closed together)
        self.keys = set()


class SipCore:
    """The per-signalling-session state machine (see the module's table).

    ``ctx``: :class:`~cbac.inspect.api.InspectContext`; ``transport``:
    ``"udp"`` or ``"tcp"``.  ``ctx.client_seen`` / ``ctx.server_seen``
    (optional): the client's and the server's transport address as the
    other side sees them."""

    def __init__(self, ctx, transport):
        self.ctx = ctx
        self.transport = transport
        self.calls = {}
        self.learned = {}            # (mapped addr, port) -> (own addr, port)
        self.reg_until = None
        self.messages = 0
        self.dropped = 0
        self.last = ""

    # -- NAT mapping --------------------------------------------------------

    def own(self, d):
        c = self.ctx
        if d == CLIENT:
            return c.client_addr
        o = getattr(c, "server_own_addr", None)
        return o if o is not None else c.server_addr

    def restricted(self, d):
        """Must media announced by side ``d`` be at its own address?  The
        session's initiator's always, the responder's when NAT translates
        it (a pinhole toward another host of a protected side is refused)."""
        if d == CLIENT:
            return True
        o = getattr(self.ctx, "server_own_addr", None)
        return o is not None and o != self.ctx.server_addr

    def map_addr(self, d, addr):
        if addr != self.own(d):
            return addr
        seen = getattr(self.ctx, "client_seen" if d == CLIENT else "server_seen", None)
        if seen is not None:
            return seen[0]
        r = self.ctx.nat_map(d, self.transport, addr, self.ctx.client_port if d == CLIENT
                             else self.ctx.server_port)
        return r[0]

    def map_port(self, d, addr, port, proto="udp", media=False):
        """The port the receiver must use for ``addr:port`` of the sender;
        None when NAT could not provide one."""
        if addr != self.own(d):
            return port
        own_port = self.ctx.client_port if d == CLIENT else self.ctx.server_port
        seen = getattr(self.ctx, "client_seen" if d == CLIENT else "server_seen", None)
        if proto == self.transport and port == own_port and seen is not None:
            return seen[1]
        nat_map = self.ctx.nat_map
        if media:
            nat_map = getattr(self.ctx, "nat_map_any", None) or nat_map
        try:
            maddr, mport = nat_map(d, proto, addr, port)
            mport = int(mport)
        except Exception:
            return None
        if not 0 < mport <= 65535:
            return None
        return mport

    def _learn(self, mapped, own):
        if mapped != own and len(self.learned) < MAX_LEARNED:
            self.learned[mapped] = own

    # -- messages -----------------------------------------------------------

    def message(self, d, head, body, v):
        """Judge one message; returns its bytes as they must be forwarded.
        Raises Malformed.  Side effects (pinholes, closes, logs) go to v."""
        m = parse_message(head, body, self.transport == "tcp")
        self.messages += 1
        changed = False
        default = 5061 if self.transport == "tls" else 5060
        # sender's own addresses -> the receiver's view
        for key, hv in m.headers:
            if key == b"via":
                vm = _VIA.match(hv[1])
                if vm is None:
                    continue
                addr = aton(vm.group(3))
                port = int(vm.group(4)) if vm.group(4) else default
                if addr == self.own(d):
                    new = self._map_hostport(d, addr, port, vm.group(2).lower().decode())
                    if new is None:
                        raise Malformed("sip-nat-failed")
                    if new != (addr, port):
                        hv[1] = hv[1][:vm.start(3)] + self._hp(new, vm.group(4), default) \
                            + hv[1][vm.end():]
                        changed = True
                elif (addr, port) in self.learned:
                    own = self.learned[(addr, port)]
                    hv[1] = hv[1][:vm.start(3)] + self._hp(own, vm.group(4), default) \
                        + hv[1][vm.end():]
                    changed = True
                break           # the top Via only
        for key, hv in m.headers:
            if key == b"contact":
                new = self._rewrite_uris(d, hv[1], default)
                if new != hv[1]:
                    hv[1] = new
                    changed = True
        if m.method is not None and self.learned:
            new = self._rewrite_back(m.uri, default)
            if new != m.uri:
                m.start = m.method + b" " + new + b" SIP/2.0"
                m.uri = new
                changed = True
        media = None
        if m.body and m.ctype == b"application/sdp":
            media = []
            nb = _sdp(self, d, m.body, media)
            if nb != m.body:
                m.body = nb
                changed = True
        if changed and m.clen_index is not None:
            hv = m.headers[m.clen_index][1]
            if int(hv[1]) != len(m.body):
                hv[1] = b" %d" % len(m.body)
        self._dialog(d, m, media, v)
        if not changed:
            return head + body
        return m.serialize()

    @staticmethod
    def _hp(ap, had_port, default):
        addr, port = ap
        s = ntoa(addr).encode()
        if had_port or port != default:
            s += b":%d" % port
        return s

    def _map_hostport(self, d, addr, port, proto):
        if proto not in ("udp", "tcp"):
            proto = self.transport
        maddr = self.map_addr(d, addr)
        mport = self.map_port(d, addr, port, proto)
        if mport is None:
            return None
        self._learn((maddr, mport), (addr, port))
        return maddr, mport

    def _rewrite_uris(self, d, value, default):
        def sub(mo):
            addr = aton(mo.group(2))
            port = int(mo.group(3)) if mo.group(3) else default
            if addr == self.own(d):
                new = self._map_hostport(d, addr, port, self.transport)
                if new is None:
                    raise Malformed("sip-nat-failed")
            elif (addr, port) in self.learned:
                new = self.learned[(addr, port)]
            else:
                return mo.group(0)
            return mo.group(1) + self._hp(new, mo.group(3), default)
        return _URI_HOST.sub(sub, value)

    def _rewrite_back(self, uri, default):
        def sub(mo):
            addr = aton(mo.group(2))
            port = int(mo.group(3)) if mo.group(3) else default
            own = self.learned.get((addr, port))
            if own is None:
                return mo.group(0)
            return mo.group(1) + self._hp(own, mo.group(3), default)
        return _URI_HOST.sub(sub, uri)

    # -- dialogs, media, registrations -------------------------------------

    def _dialog(self, d, m, media, v):
        cid = m.call_id
        call = self.calls.get(cid)
        if m.method in (b"BYE", b"CANCEL"):
            self.last = m.method.decode()
            if call is not None:
                self._end(cid, call, v, m.method.decode())
            return
        if m.code is not None:
            self.last = "%d %s" % (m.code, m.cseq_method.decode())
        else:
            self.last = m.method.decode()
        if m.method == b"REGISTER" or (m.code is not None and 200 <= m.code < 300
                                        and m.cseq_method == b"REGISTER"):
            self._registration(m)
        if media is not None:
            if call is None:
                if len(self.calls) >= MAX_CALLS:
                    # bounded: the oldest call (whose BYE cbac never saw)
                    # gives way, its media closed
                    old = next(iter(self.calls))
                    self._end(old, self.calls[old], v, "evicted")
                call = self.calls[cid] = Call()
            if call.offer is None or call.offer_side == d or call.answered:
                call.offer = media
                call.offer_side = d
                call.answered = False
            else:
                self._open(call, call.offer, media, v)
                call.answered = True
        if call is not None and m.code is not None and m.cseq_method == b"INVITE":
            if 200 <= m.code < 300:
                call.confirmed = True
            elif m.code >= 300 and not call.confirmed:
                self._end(cid, call, v, "%d" % m.code)

    def _open(self, call, offer, answer, v):
        want = set()
        for a, b in ((offer, answer), (answer, offer)):
            srcs = {x.addr for x in b if x.maddr is not None}
            if len(srcs) == 1:
                src = next(iter(srcs))
                want.update((src, md.maddr, p) for md in a if md.maddr is not None
                            for p in (md.mport, md.mrtcp))
        if call.keys and want != call.keys:
            # a new answer with other media (re-INVITE): the old channels
            # go (bounded: a call holds one generation of pinholes)
            v.close.append(call.group)
            call.group = []
            call.keys = set()
        for a, b in ((offer, answer), (answer, offer)):
            # media toward each of a's streams comes from b's address
            srcs = {x.addr for x in b if x.maddr is not None}
            src = srcs.pop() if len(srcs) == 1 else None
            if src is None:
                continue         # no (or several) peer media addresses: nothing opened
            for md in a:
                if md.maddr is None:
                    continue
                for port, label in ((md.mport, "sip-rtp"), (md.mrtcp, "sip-rtcp")):
                    key = (src, md.maddr, port)
                    if key in call.keys:
                        continue
                    call.keys.add(key)
                    e = Expectation("udp", src, None, md.maddr, port, MEDIA_TIMEOUT, label)
                    e.group = call.group
                    v.expect.append(e)
                    if self.ctx.debug:
                        v.debug.append("CBAC SIP: media channel %s -> %s:%d (%s) opened"
                                       % (ntoa(src), ntoa(md.maddr), port, label))

    def _end(self, cid, call, v, why):
        del self.calls[cid]
        if call.group or call.keys:
            v.close.append(call.group)
            if self.ctx.debug:
                v.debug.append("CBAC SIP: %s: media channels of the call closed" % why)

    def _registration(self, m):
        exp = None
        for c in m.header_values(b"contact"):
            em = _EXPIRES_PARAM.search(c[1])
            if em is not None:
                exp = int(em.group(1))
                break
        if exp is None:
            e = m.first(b"expires")
            if e is not None:
                dm = _DIGITS.match(e[1])
                if dm is not None:
                    exp = int(dm.group(1))
        if exp is None:
            exp = DEFAULT_REGISTRATION
        now = self.ctx.now()
        self.reg_until = now + min(exp, MAX_REGISTRATION) if exp else None

    def keep(self, now):
        """Seconds the signalling session must at least stay (registrations,
        confirmed calls)."""
        k = 0
        if self.reg_until is not None and self.reg_until > now:
            k = self.reg_until - now
        if any(c.confirmed for c in self.calls.values()):
            k = max(k, CALL_KEEP)
        return k

    def state_summary(self):
        return "SIP %s, %d calls, %d messages%s" % (
            self.last or "idle", len(self.calls), self.messages,
            ", registered" if self.reg_until is not None else "")

    def alert(self, v, why):
        self.dropped += 1
        c = self.ctx
        v.log.append(alert(3, "SIP_MALFORMED",
                           "Malformed SIP message (%s) dropped -- initiator %s:%d responder %s:%d"
                           % (why, ntoa(c.client_addr), c.client_port, ntoa(c.server_addr),
                              c.server_port)))


def close_group(table, group) -> None:
    """Close a call's media: unused pinholes and the sessions made through
    them (the session table's side of a verdict's ``close``)."""
    for x in list(group):
        if hasattr(x, "used"):
            table._consume_pinhole(x)
        elif not x.dead:
            table.delete(x, "sip-bye")
    del group[:]


def apply_effects(table, s, v) -> None:
    """Apply a UDP guard's side effects (pinholes, closes, logs, debug)."""
    for line in v.debug:
        table.debug_line("sip", line)
    for event in v.log:
        table.emit_log(s, event)
    for e in v.expect:
        table.add_pinhole(s, e)
    for g in v.close:
        close_group(table, g)


class SipGuard:
    """SIP over UDP: one message per datagram (see the module's table).

    ``datagram`` returns ``(verdict, reason)``; for ``EDIT`` the new
    payload is in :attr:`out`; side effects of the last datagram are in
    :attr:`effects` (a Verdict)."""

    def __init__(self, ctx):
        self.core = SipCore(ctx, "udp")
        self.out = None
        self.effects = None
        self.state = "SIP"
        self.base_idle = None

    def datagram(self, direction, data):
        v = self.effects = Verdict()
        self.out = None
        data = bytes(data)
        if not data.strip(b"\r\n"):
            return PASS, ""               # CRLF keep-alive (RFC 5626)
        end = split_head(data)
        try:
            if end < 0:
                raise Malformed("sip-bad-message" if len(data) <= MAX_HEADER
                                else "sip-header-too-long")
            new = self.core.message(direction, data[:end], data[end:], v)
        except Exception as e:
            # Malformed, or a bug on hostile input: dropped either way
            why = str(e) if isinstance(e, Malformed) else "sip-inspector-error"
            v.expect.clear()
            v.close.clear()
            self.core.alert(v, why)
            return DROP, why
        if new != data:
            self.out = new
            return EDIT, ""
        return PASS, ""

    def keep(self, now):
        return self.core.keep(now)

    def state_summary(self):
        return self.core.state_summary()


@implementer(IStreamInspector)
class SipStreamInspector:
    """SIP over TCP: messages framed by Content-Length, each held until
    complete, then released (with one Edit when NAT changed it).  A
    malformed message resets the connection (alert ``SIP_MALFORMED``)."""

    name = "sip"

    def __init__(self, ctx):
        self.ctx = ctx
        self.core = SipCore(ctx, "tcp")
        self._buf = [bytearray(), bytearray()]
        self._start = [0, 0]          # absolute offset of _buf[d][0]
        self._rel = [0, 0]            # release point returned so far

    def data_received(self, direction, data):
        v = Verdict()
        buf = self._buf[direction]
        buf += data
        while True:
            # CRLF keep-alives between messages
            n = 0
            while buf[n:n + 2] == b"\r\n":
                n += 2
            if n:
                del buf[:n]
                self._start[direction] += n
            if not buf or buf == b"\r":
                break
            end = split_head(buf)
            if end < 0:
                if len(buf) > MAX_HEADER:
                    return self._bad(v, "sip-header-too-long", direction)
                break
            head = bytes(buf[:end])
            try:
                m_len = self._content_length(head)
            except Malformed as e:
                return self._bad(v, str(e), direction)
            if len(buf) < end + m_len:
                break
            body = bytes(buf[end:end + m_len])
            try:
                new = self.core.message(direction, head, body, v)
            except Malformed as e:
                return self._bad(v, str(e), direction)
            total = end + m_len
            if new != head + body:
                v.edits.append(Edit(self._start[direction], total, new))
            del buf[:total]
            self._start[direction] += total
        v.release = self._rel[direction] = self._start[direction]
        return v

    @staticmethod
    def _content_length(head):
        n = None
        for ln in head[:-4].split(b"\r\n")[1:]:
            name, colon, value = ln.partition(b":")
            k = name.rstrip(b" \t").lower()
            if colon and k in (b"content-length", b"l"):
                d = _DIGITS.match(value)
                if n is not None or d is None:
                    raise Malformed("sip-bad-content-length")
                n = int(d.group(1))
        if n is None:
            raise Malformed("sip-bad-content-length")
        if n > MAX_BODY:
            raise Malformed("sip-body-too-long")
        return n

    def _bad(self, v, why, direction):
        v.release = self._rel[direction]       # nothing more: the connection is reset
        v.edits = []
        v.expect = []
        v.close = []
        self.core.alert(v, why)
        v.reset = True
        v.reason = why
        return v

    def connection_closed(self, direction):
        return None

    def state_summary(self):
        return self.core.state_summary()


@provider(IInspectorFactory)
def factory(ctx):
    """The ``sip`` inspector factory for TCP (IInspectorFactory)."""
    return SipStreamInspector(ctx)


factory.name = "sip"
