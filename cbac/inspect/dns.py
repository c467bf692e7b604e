"""DNS inspection over UDP (``ip inspect name NAME dns``): the DNS guard.

A sans-I/O state machine, one per UDP session to port 53, fed each
datagram's payload by :func:`cbac.inspect.udp.udp_process`.  It returns
``(verdict, reason)``: ``PASS`` forwards the datagram, ``DROP`` drops it
(``reason`` is the drop counter in ``show ip inspect statistics``),
``ANSWERED`` forwards it and tells the engine every query has been
answered, so the session closes now instead of living out its timer.

Transitions (``outstanding`` is the set of ``(id, qname, qtype, qclass)``
of the queries sent and not yet answered, at most :data:`MAX_OUTSTANDING`):

===========  =====================================  ==========  =========================
state        event                                  verdict     next state
===========  =====================================  ==========  =========================
QUERYING     client: valid query (QR=0, QUERY,      PASS        QUERYING (key added; a
             one question)                                      retransmission is one key)
QUERYING     client: anything else (response,       DROP        QUERYING
             other opcode, 0 or >1 questions,
             malformed, > MAX_OUTSTANDING)
QUERYING     server: response whose (id, question)  PASS        QUERYING (key removed)
             is outstanding, others remain
QUERYING     server: response whose (id, question)  ANSWERED    ANSWERED (key removed)
             is outstanding, none remain
QUERYING     server: response not outstanding,      DROP        QUERYING
             query, malformed
ANSWERED     client: valid query                    PASS        QUERYING (same socket
                                                                reused within the second)
ANSWERED     server: anything                       DROP        ANSWERED (one response
                                                                per query: DNS guard)
===========  =====================================  ==========  =========================

The question is compared case-insensitively (resolvers randomise the case,
"0x20" encoding, and servers echo it).

DNS over TCP (port 53, RFC 1035 4.2.2 / RFC 7766; e.g. a truncated UDP
answer retried over TCP) is inspected by :class:`DnsTcpInspector`, an
:class:`~cbac.inspect.api.IStreamInspector`: messages are framed by their
two-byte length whatever the segmentation, each held until complete and
judged as above (the same table, several queries may be pipelined, at
most :data:`MAX_OUTSTANDING`); a zone transfer (AXFR/IXFR) question may
get several response messages (the later ones with the same ID and no or
the same question) until the connection closes.  Anything the guard
would drop resets the connection (fail closed: a stream cannot skip a
message), with the reason as the reset reason.
"""

from __future__ import annotations

from zope.interface import implementer

from cbac.inspect.api import IStreamInspector

QUERYING = "QUERYING"
ANSWERED = "ANSWERED"

PASS = "pass"
DROP = "drop"
ANSWERED_V = "answered"

#: queries one UDP session may have outstanding (glibc sends two, A and
#: AAAA; a stub retrying adds a few)
MAX_OUTSTANDING = 32
#: largest DNS message over UDP accepted (EDNS0 buffers are at most 4096
#: in practice; RFC 6891 allows 65535 but nobody sends it)
MAX_UDP_MESSAGE = 4096


def parse_question(data, limit=MAX_UDP_MESSAGE):
    """``(id, qr, opcode, (qname, qtype, qclass))`` of a DNS message with
    exactly one question, or None when it is not one (malformed, no or
    several questions, a compression pointer in the question)."""
    n = len(data)
    if n < 12 or n > limit:
        return None
    ident = (data[0] << 8) | data[1]
    flags = data[2]
    qr = flags >> 7
    opcode = (flags >> 3) & 15
    qd = (data[4] << 8) | data[5]
    if qd != 1:
        return None
    i = 12
    labels = []
    total = 0
    while True:
        if i >= n:
            return None
        ln = data[i]
        if ln == 0:
            i += 1
            break
        if ln & 0xC0:
            return None                  # pointer or reserved label type in a question
        i += 1
        if i + ln > n:
            return None
        total += ln + 1
        if total + 1 > 255:              # RFC 1035 2.3.4: 255 octets with the root's 0
            return None
        labels.append(bytes(data[i:i + ln]).lower())
        i += ln
    if i + 4 > n:
        return None
    qtype = (data[i] << 8) | data[i + 1]
    qclass = (data[i + 2] << 8) | data[i + 3]
    return ident, qr, opcode, (b".".join(labels), qtype, qclass)


class DnsGuard:
    """The per-session state machine (see the module's table)."""

    __slots__ = ("state", "outstanding", "answered")

    def __init__(self):
        self.state = QUERYING
        self.outstanding = {}
        self.answered = 0

    def datagram(self, direction, data):
        """``(verdict, reason)`` for one datagram; direction 0 = client."""
        q = parse_question(data)
        if direction == 0:
            if q is None:
                return DROP, "dns-bad-query"
            ident, qr, opcode, question = q
            if qr or opcode != 0:
                return DROP, "dns-bad-query"
            key = (ident,) + question
            if key not in self.outstanding:
                if len(self.outstanding) >= MAX_OUTSTANDING:
                    return DROP, "dns-too-many-queries"
                self.outstanding[key] = None
            self.state = QUERYING
            return PASS, ""
        if q is None:
            return DROP, "dns-bad-response"
        ident, qr, opcode, question = q
        if not qr:
            return DROP, "dns-bad-response"
        key = (ident,) + question
        if key not in self.outstanding:
            return DROP, "dns-unmatched-response"
        del self.outstanding[key]
        self.answered += 1
        if self.outstanding:
            return PASS, ""
        self.state = ANSWERED
        return ANSWERED_V, ""

    def state_summary(self):
        return "DNS %s, %d outstanding, %d answered" % (
            self.state.lower(), len(self.outstanding), self.answered)


_ZONE_TRANSFER = (251, 252)          # IXFR, AXFR


@implementer(IStreamInspector)
class DnsTcpInspector:
    """DNS over TCP (see the module docstring)."""

    name = "dns"

    def __init__(self, ctx):
        self.ctx = ctx
        self._buf = [bytearray(), bytearray()]
        self._start = [0, 0]
        self._rel = [0, 0]
        self.outstanding = {}
        self.transfers = set()         # ids of AXFR/IXFR answered at least once
        self.answered = 0
        self.queries = 0

    def data_received(self, direction, data):
        from cbac.inspect.api import Verdict
        v = Verdict()
        d = direction
        buf = self._buf[d]
        buf += data
        while len(buf) >= 2:
            n = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + n:
                break
            why = self._message(d, bytes(buf[2:2 + n]))
            if why:
                v.release = self._rel[d]
                v.reset = True
                v.reason = why
                if self.ctx.debug:
                    v.debug.append("CBAC DNS: TCP %s refused (%s): connection reset"
                                   % ("query" if d == 0 else "response", why))
                return v
            del buf[:2 + n]
            self._start[d] += 2 + n
        v.release = self._rel[d] = self._start[d]
        return v

    def _message(self, d, msg):
        q = parse_question(msg, 65535)
        if d == 0:
            if q is None or q[1] or q[2] != 0:
                return "dns-bad-query"
            key = (q[0],) + q[3]
            if key not in self.outstanding:
                if len(self.outstanding) >= MAX_OUTSTANDING:
                    return "dns-too-many-queries"
                self.outstanding[key] = None
            self.queries += 1
            return ""
        if q is None:
            # a later message of a zone transfer may carry no question
            if len(msg) >= 12 and msg[2] & 0x80 and msg[4] == 0 and msg[5] == 0 \
                    and ((msg[0] << 8) | msg[1]) in self.transfers:
                return ""
            return "dns-bad-response"
        if not q[1]:
            return "dns-bad-response"
        key = (q[0],) + q[3]
        if key not in self.outstanding:
            return "dns-unmatched-response"
        if q[3][1] in _ZONE_TRANSFER:
            self.transfers.add(q[0])           # more messages may follow
        else:
            del self.outstanding[key]
        self.answered += 1
        return ""

    def connection_closed(self, direction):
        return None

    def state_summary(self):
        return "DNS over TCP, %d queries, %d outstanding, %d answered" % (
            self.queries, len(self.outstanding), self.answered)


def tcp_factory(ctx):
    """The ``dns`` inspector factory for TCP 53."""
    return DnsTcpInspector(ctx)


tcp_factory.name = "dns"


__all__ = ["DnsGuard", "DnsTcpInspector", "parse_question", "PASS", "DROP", "ANSWERED_V", "MAX_OUTSTANDING"]
