"""Link events from the kernel: a ``NETLINK_ROUTE`` socket subscribed to
``RTMGRP_LINK``, read by the reactor.

The kernel multicasts an ``RTM_NEWLINK`` message whenever a device changes
(administratively up or down, carrier gained or lost, renamed, MTU or MAC
changed) and ``RTM_DELLINK`` when it goes away.  :class:`LinkMonitor` turns
them into calls ``callback(flags)`` for the devices someone watches
(``flags`` are the ``IFF_*`` flags of ``struct ifinfomsg``; 0 for a deleted
device).  When the socket overflows (``ENOBUFS``: events were lost) every
watcher is called with ``None``: "re-read the state yourself".

:func:`parse_link_messages` is the sans-I/O part (bytes in, events out);
nothing here raises into the reactor.
"""

from __future__ import annotations

import errno
import socket
import struct

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
NLMSG_ERROR = 2
NLMSG_DONE = 3
IFLA_IFNAME = 3
IFLA_OPERSTATE = 16

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")

log = Logger(namespace="cbac.netlink")


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_link_messages(data) -> list:
    """``[(msg_type, ifindex, ifname, flags), ...]`` for the link messages
    in one netlink datagram; anything malformed ends the parse (what was
    read so far is returned)."""
    events = []
    off = 0
    n = len(data)
    while off + _NLMSGHDR.size <= n:
        length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > n:
            break
        if mtype in (RTM_NEWLINK, RTM_DELLINK) and length >= _NLMSGHDR.size + _IFINFOMSG.size:
            body = off + _NLMSGHDR.size
            _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, body)
            name = None
            a = body + _IFINFOMSG.size
            end = off + length
            while a + _RTATTR.size <= end:
                alen, atype = _RTATTR.unpack_from(data, a)
                if alen < _RTATTR.size or a + alen > end:
                    break
                if atype == IFLA_IFNAME:
                    name = bytes(data[a + 4:a + alen]).split(b"\0", 1)[0].decode("utf-8", "replace")
                a += _align(alen)
            events.append((mtype, index, name, flags))
        off += _align(length)
    return events


@implementer(IReadDescriptor)
class LinkMonitor:
    """Watch devices' link state (see the module docstring).

    ``netns`` opens the socket in another network namespace (tests).
    ``watch(device, callback)`` registers ``callback(flags)``."""

    def __init__(self, reactor=None, netns=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.netns = netns
        self.watchers: dict = {}
        self.events = 0
        self.overflows = 0
        self._sock = None

    def watch(self, device: str, callback) -> None:
        self.watchers.setdefault(device, []).append(callback)

    def start(self) -> bool:
        """Open the socket and start reading; False (logged) if netlink is
        unavailable: the ports then notice changes by polling."""
        if self._sock is not None:
            return True
        from cbac.dataplane.linux import in_netns
        try:
            with in_netns(self.netns):
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.bind((0, RTMGRP_LINK))
                s.setblocking(False)
            except OSError:
                s.close()
                raise
        except OSError as e:
            log.warn("link events unavailable ({error}); ports poll their state instead", error=e)
            return False
        self._sock = s
        self.reactor.addReader(self)
        return True

    def stop(self) -> None:
        if self._sock is not None:
            self.reactor.removeReader(self)
            self._sock.close()
            self._sock = None

    # IReadDescriptor

    def fileno(self):
        return self._sock.fileno() if self._sock is not None else -1

    def logPrefix(self):
        return "LinkMonitor"

    def connectionLost(self, reason):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        self._notify_all(None)

    def doRead(self):
        sock = self._sock
        for _ in range(64):
            if sock is None:
                return None
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.overflows += 1
                    self._notify_all(None)
                    continue
                return None
            for mtype, _index, name, flags in parse_link_messages(data):
                callbacks = self.watchers.get(name)
                if not callbacks:
                    continue
                self.events += 1
                self._call(callbacks, 0 if mtype == RTM_DELLINK else flags)
        return None

    def _notify_all(self, flags):
        for callbacks in list(self.watchers.values()):
            self._call(callbacks, flags)

    def _call(self, callbacks, flags):
        for cb in list(callbacks):
            try:
                cb(flags)
            except Exception:  # noqa: BLE001 - never raise into the reactor
                log.failure("link event handler failed")


__all__ = ["LinkMonitor", "parse_link_messages"]


def monitor_service(monitor):
    """A Twisted service that starts and stops ``monitor``."""
    from twisted.application import service

    class _LinkMonitorService(service.Service):
        name = "link-monitor"

        def startService(self):
            service.Service.startService(self)
            monitor.start()

        def stopService(self):
            service.Service.stopService(self)
            monitor.stop()

    return _LinkMonitorService()
