"""TFTP inspection (``ip inspect name NAME tftp``, RFC 1350, options RFC 2347/2348).

The request (RRQ or WRQ) goes from the client to UDP port 69; the server
answers from a **new** port (its transfer ID), so the reply never matches
the request's session.  cbac checks the request (:func:`parse_request`)
and opens one pinhole: UDP from the server's address, any source port, to
the client's address and port as the server sees them (through PAT: the
client's PAT port, reserved with ``nat_map`` so the inbound datagram is
translated back).  The data channel is a child session (``tftp-data``)
carrying a :class:`DataGuard`, fed every datagram by
:func:`cbac.inspect.udp.udp_process`.

Transitions of :class:`DataGuard` (direction 0 = the server, which opened
the data channel; ``blksize`` is 512 or the value of the server's OACK):

==========  =========================================  =======  ==========================
state       event                                      verdict  next state
==========  =========================================  =======  ==========================
TRANSFER    DATA (opcode 3) of blksize bytes           PASS     TRANSFER
TRANSFER    DATA shorter than blksize (last block N)   PASS     LAST (N)
TRANSFER    ACK (4), OACK (6, first datagram only)     PASS     TRANSFER (OACK: blksize)
LAST (N)    ACK of block N                             DONE     DONE (session closes)
LAST (N)    DATA N again (retransmission), ACK < N     PASS     LAST (N)
any         ERROR (5)                                  DONE     DONE (session closes)
any         RRQ/WRQ, unknown opcode, short, DATA
            above blksize                              DROP     unchanged
DONE        anything                                   DROP     DONE
==========  =========================================  =======  ==========================

A request is refused (dropped, counter ``tftp-bad-request``) unless it is
opcode 1 or 2, a non-empty file name and a mode of ``netascii``, ``octet``
or ``mail`` (case-insensitive), each NUL-terminated, then option pairs.
"""

from __future__ import annotations

PASS = "pass"
DROP = "drop"
DONE = "answered"              # same word as the DNS guard's ANSWERED_V

TRANSFER = "TRANSFER"
LAST = "LAST"
FINISHED = "DONE"

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
MODES = (b"netascii", b"octet", b"mail")
#: lifetime of the data-channel pinhole when the server never answers
DATA_TIMEOUT = 30.0


def parse_request(data):
    """``(opcode, filename, mode, options)`` of a RRQ/WRQ, or None."""
    if len(data) < 4 or len(data) > 512 or data[0] != 0 or data[1] not in (RRQ, WRQ):
        return None
    if data[-1] != 0:
        return None
    fields = bytes(data[2:-1]).split(b"\0")
    if len(fields) < 2 or len(fields) % 2:
        return None
    name, mode = fields[0], fields[1].lower()
    if not name or mode not in MODES:
        return None
    opts = {}
    for i in range(2, len(fields), 2):
        opts[fields[i].lower()] = fields[i + 1]
    return data[1], name, mode, opts


class DataGuard:
    """The data channel's state machine (see the module's table)."""

    __slots__ = ("state", "blksize", "last", "blocks", "first")

    def __init__(self):
        self.state = TRANSFER
        self.blksize = 512
        self.last = None
        self.blocks = 0
        self.first = True

    def datagram(self, direction, data):
        first, self.first = self.first, False
        if self.state == FINISHED or len(data) < 4 or data[0] != 0:
            return DROP, "tftp-bad-packet"
        op = data[1]
        block = (data[2] << 8) | data[3]
        if op == ERROR:
            self.state = FINISHED
            return DONE, ""
        if op == OACK:
            if not first or direction != 0:
                return DROP, "tftp-bad-packet"
            fields = bytes(data[2:]).split(b"\0")
            for i in range(0, len(fields) - 1, 2):
                if fields[i].lower() == b"blksize":
                    try:
                        n = int(fields[i + 1])
                    except ValueError:
                        return DROP, "tftp-bad-packet"
                    if not 8 <= n <= 65464:
                        return DROP, "tftp-bad-packet"
                    self.blksize = n
            return PASS, ""
        if op == DATA:
            n = len(data) - 4
            if n > self.blksize:
                return DROP, "tftp-bad-packet"
            if self.state == LAST and block != self.last:
                return DROP, "tftp-bad-packet"
            self.blocks += 1
            if n < self.blksize:
                self.state = LAST
                self.last = block
            return PASS, ""
        if op == ACK:
            if self.state == LAST and block == self.last:
                self.state = FINISHED
                return DONE, ""
            return PASS, ""
        return DROP, "tftp-bad-packet"

    def state_summary(self):
        if self.state == LAST:
            return "TFTP last block %d, %d data blocks" % (self.last, self.blocks)
        return "TFTP %s, %d data blocks" % (self.state.lower(), self.blocks)


__all__ = ["parse_request", "DataGuard", "PASS", "DROP", "DONE", "DATA_TIMEOUT"]
