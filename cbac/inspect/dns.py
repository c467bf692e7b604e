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
"0x20" encoding, and servers echo it).  DNS over TCP (truncated answers
retried over TCP) is inspected as generic TCP on port 53 under the same
``dns`` line; the guard applies to UDP only.
"""

from __future__ import annotations

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


def parse_question(data):
    """``(id, qr, opcode, (qname, qtype, qclass))`` of a DNS message with
    exactly one question, or None when it is not one (malformed, no or
    several questions, a compression pointer in the question)."""
    n = len(data)
    if n < 12 or n > MAX_UDP_MESSAGE:
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


__all__ = ["DnsGuard", "parse_question", "PASS", "DROP", "ANSWERED_V", "MAX_OUTSTANDING"]
