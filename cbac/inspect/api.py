"""The application-inspector contract (SMTP, FTP, HTTP plug in here).

Inspectors are sans-I/O state machines in the spirit of h11.  The TCP
stream engine of the session table (:mod:`cbac.inspect.stream`) feeds each
inspector the **in-order, never repeated** payload bytes of each direction
of one TCP connection and applies what the inspector returns:

* Directions: ``CLIENT`` (initiator -> responder) and ``SERVER``
  (responder -> initiator).
* Stream offsets are absolute and per direction: offset 0 is the first
  payload byte after the SYN of that direction, in the sender's numbering
  (before any length-changing edit).
* ``data_received(direction, data)`` is called with the next bytes of that
  direction; the engine never delivers a byte twice nor out of order.  The
  inspector returns a :class:`Verdict`.
* ``release``: the absolute offset up to which the bytes fed so far may be
  forwarded.  It only grows.  Bytes past it are **held** by the engine (not
  forwarded; the engine keeps them; the sender will retransmit and the
  engine forwards them, as inspected, once released).  An inspector must
  release bytes it holds as soon as it can decide (e.g. when the line is
  complete).  ``None`` means "everything fed so far".  After a verdict
  for one direction, the engine calls ``data_received(other, b"")`` when
  the other direction has held bytes, since a reply can decide what held
  bytes are (SMTP: body or commands after DATA).
* ``edits``: :class:`Edit` replacements in the stream of that direction,
  at offsets >= the release point before this call (bytes already
  forwarded cannot change).  Same-length edits (SMTP masking) never move
  sequence numbers.  Length-changing edits (FTP NAT rewrite) make the
  engine adjust the TCP sequence numbers of this direction and the
  acknowledgement numbers of the other for the rest of the connection
  (SACK blocks too).  Retransmissions of edited bytes are sent with the
  same edited bytes: what the receiver gets is always what was inspected.
* ``reset``: the engine resets both ends (RST with the right sequence
  numbers) and deletes the session.
* ``opaque``: stop inspecting (after STARTTLS); the engine forwards the
  rest of the connection like plain ``tcp`` inspection.
* ``expect``: pinholes (child sessions) to open, see :class:`Expectation`.
* ``close``: groups of pinholes/child sessions to close (SIP BYE).
* ``log``: IOS messages to emit, each a :class:`LogEvent` (``facility,
  severity, mnemonic, text``; :func:`alert` makes an ``FW`` one); the
  session table emits them through :func:`cbac.log.ios.message`
  (respecting the rule's ``alert``/``audit-trail`` settings for ``FW``
  alerts).  Anything else in ``log`` is an inspector failure: the session
  is reset.
* ``debug``: debug lines (``CBAC SMTP: ...``) to emit when the inspector's
  debug category is on; inspectors only produce them when
  ``ctx.debug`` is true.

Inspectors never touch the reactor, sockets, the clock or the logger.
Time, if needed, comes as ``ctx.now()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

from zope.interface import Attribute, Interface

CLIENT = 0
SERVER = 1


@dataclass
class Edit:
    offset: int          # absolute stream offset in the direction's input numbering
    length: int          # number of original bytes replaced
    data: bytes          # replacement; len(data) == length for masking


@dataclass
class Expectation:
    """A pinhole: admit one connection matching this through the ACLs and
    make it a child session of the current one.  ``None`` = wildcard.

    Addresses are ints (network order value of the IPv4 address) as seen
    on the side where the connection will be *initiated*; when NAT
    applies, the inspector has already asked ``ctx.nat_map`` for the
    translated form.
    """

    protocol: str                 # "tcp" / "udp"
    src: Optional[int]
    src_port: Optional[int]
    dst: int
    dst_port: int
    timeout: float = 30.0
    label: str = ""               # e.g. "ftp-data"
    #: a list the inspector owns (SIP: one per call): the pinhole and the
    #: session made through it are appended, and a verdict's ``close``
    #: naming the list closes them all (cbac.inspect.sip.close_group)
    group: Optional[list] = None


class LogEvent(NamedTuple):
    """An IOS message an inspector asks for (``%FACILITY-SEVERITY-MNEMONIC:
    text``); the session table logs it.  A tuple with named fields and no
    instance dictionary."""

    facility: str
    severity: int
    mnemonic: str
    text: str


def alert(severity: int, mnemonic: str, text: str) -> LogEvent:
    """A firewall (``FW``) message."""
    return LogEvent("FW", severity, mnemonic, text)


@dataclass
class Verdict:
    release: Optional[int] = None
    edits: list[Edit] = field(default_factory=list)
    reset: bool = False
    reason: str = ""
    opaque: bool = False
    expect: list[Expectation] = field(default_factory=list)
    log: list[LogEvent] = field(default_factory=list)
    debug: list[str] = field(default_factory=list)
    #: groups (see Expectation.group) to close: unused pinholes consumed,
    #: sessions made through them deleted (SIP BYE/CANCEL)
    close: list = field(default_factory=list)


@dataclass
class InspectContext:
    """What an inspector knows about its connection.

    Addresses are ints; ``client``/``server`` as each side sees the other
    is not needed for SMTP; FTP uses ``nat_map`` to translate an address
    announced by one side into the form the other side must use.
    """

    client_addr: int
    client_port: int
    server_addr: int
    server_port: int
    rule: object = None                       # the model.InspectProtocol
    options: object = None                    # model.SmtpOptions etc.
    debug: bool = False
    now: Callable[[], float] = lambda: 0.0
    # nat_map(direction, proto, addr, port) -> (addr, port): the form of
    # an endpoint announced by `direction`'s sender as the receiver must
    # see it; creates the translation if needed.  Identity without NAT.
    nat_map: Callable = lambda direction, proto, addr, port: (addr, port)
    # the same for a media port whose first packet may come from any remote
    # (SIP/RTSP: the pinhole checks the source); None = use nat_map
    nat_map_any: Optional[Callable] = None
    # The server's own address (behind NAT: its inside-local address), for
    # FTP active-mode pinholes whose SYN comes from the server itself.
    server_own_addr: Optional[int] = None
    # (address, port) of the client as the server sees it, and of the
    # server as the client sees it (SIP's own signalling address under NAT)
    client_seen: Optional[tuple] = None
    server_seen: Optional[tuple] = None


class IStreamInspector(Interface):
    """One application inspector instance per TCP connection."""

    name = Attribute("protocol keyword: 'smtp', 'esmtp', 'ftp', 'http'")

    def data_received(direction, data):
        """Feed in-order bytes of one direction; return a Verdict."""

    def connection_closed(direction):
        """The sender of `direction` closed (FIN); return a Verdict or None."""

    def state_summary():
        """One line for ``show ip inspect sessions detail``."""


class IInspectorFactory(Interface):
    name = Attribute("protocol keyword")

    def __call__(ctx):
        """Return a new IStreamInspector for a connection."""
