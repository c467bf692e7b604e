"""keepalived integration: the notify socket cbac listens on, and the
keepalived configuration the docs and the lab use.

keepalived (VRRP) elects the MASTER of the pair and runs its notify
scripts on every change; cbac's is ``python3 -m cbac.continuity.notify
--state-dir DIR STATE`` (:mod:`cbac.continuity.notify`), which

* writes the state to ``DIR/redundancy.state`` (so a cbac that starts, or
  restarts, while keepalived is already MASTER knows it), and
* sends it as one datagram to ``DIR/redundancy.sock``, the Unix socket
  :class:`NotifyListener` reads (mode 0600, in cbac's own state
  directory: only root can tell cbac to forward).

Only ``MASTER``, ``BACKUP``, ``FAULT`` and ``STOP`` (keepalived stopping:
treated as FAULT) are understood; anything else is logged and ignored (the
role does not change).
"""

from __future__ import annotations

import os
import time

from twisted.internet import protocol
from twisted.logger import Logger

log = Logger(namespace="cbac.redundancy")

SOCKET = "redundancy.sock"
STATE_FILE = "redundancy.state"
STATES = {"MASTER": "MASTER", "BACKUP": "BACKUP", "FAULT": "FAULT", "STOP": "FAULT"}


def parse(data: bytes):
    """The role in a notify message (or keepalived's argument list), or None."""
    try:
        words = data.decode("ascii").split()
    except UnicodeDecodeError:
        return None
    for w in words:
        if w.upper() in STATES:
            return STATES[w.upper()]
    return None


def read_state(state_dir: str, max_age: float = None):
    """The last role keepalived told (the state file), or None."""
    try:
        with open(os.path.join(state_dir, STATE_FILE), "rb") as f:
            data = f.read(256)
        if max_age is not None and \
                time.time() - os.path.getmtime(os.path.join(state_dir, STATE_FILE)) > max_age:
            return None
    except OSError:
        return None
    return parse(data)


class _Datagrams(protocol.DatagramProtocol):
    def __init__(self, deliver):
        self.deliver = deliver

    def datagramReceived(self, data, addr=None):
        if data.strip() == b"PING":
            return                  # notify --check: alive
        role = parse(data[:256])
        if role is None:
            log.warn("redundancy: notify message {data!r} not understood; role unchanged",
                     data=data[:64])
            return
        self.deliver(role)


class NotifyListener:
    """Listens on ``state_dir/redundancy.sock`` and calls ``deliver(role)``."""

    def __init__(self, reactor, state_dir: str, deliver):
        self.reactor = reactor
        self.path = os.path.join(state_dir, SOCKET)
        self.deliver = deliver
        self.port = None

    def start(self) -> None:
        d = os.path.dirname(self.path)
        os.makedirs(d, mode=0o700, exist_ok=True)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            self.port = self.reactor.listenUNIXDatagram(self.path, _Datagrams(self.deliver))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    def stop(self) -> None:
        if self.port is not None:
            self.port.stopListening()
            self.port = None


def keepalived_conf(instance: str, interface: str, router_id: int, priority: int,
                    src: str, peer: str, notify: str, advert: float = 0.2,
                    vip: str = None, check: str = None, script_security: bool = True) -> str:
    """A keepalived.conf for one box of the pair: VRRP (version 3, unicast,
    on ``interface``: a link between the two boxes, best not the sync link
    itself, so that a cut sync link does not split the election) elects the
    MASTER; ``notify`` is the command keepalived runs with the new state
    appended (cbac.continuity.notify); ``check`` (``notify --check``) a
    health check run every second whose failure (twice) puts this box in
    FAULT;
    keepalived wants one virtual address: ``vip`` (e.g. a management
    address of the active box on ``interface``).
    Both boxes start as BACKUP (no preemption: a box that comes back does
    not take the traffic back and cut it again)."""
    vips = ("    virtual_ipaddress {\n        %s\n    }\n" % vip) if vip else ""
    sec = ("    enable_script_security\n" if script_security else "") + "    script_user root\n"
    chk = ""
    track = ""
    if check:
        # a Python start can take a second on a busy box: two failures in
        # a row, each with 3 s to answer, before FAULT
        chk = ("vrrp_script cbac_alive {\n    script \"%s\"\n    interval 1\n    timeout 3\n"
               "    fall 2\n    rise 2\n    weight 0\n}\n" % check)
        track = "    track_script {\n        cbac_alive\n    }\n"
    return """global_defs {
    router_id %(instance)s
%(sec)s}
%(chk)svrrp_instance %(instance)s {
    version 3
    state BACKUP
    nopreempt
    interface %(interface)s
    virtual_router_id %(vrid)d
    priority %(priority)d
    advert_int %(advert)s
    unicast_src_ip %(src)s
    unicast_peer {
        %(peer)s
    }
%(vips)s%(track)s    notify "%(notify)s"
}
""" % {"instance": instance, "interface": interface, "vrid": router_id,
       "priority": priority, "advert": advert, "src": src, "peer": peer,
       "notify": notify, "vips": vips, "sec": sec, "chk": chk, "track": track}


__all__ = ["NotifyListener", "parse", "read_state", "keepalived_conf", "SOCKET", "STATE_FILE"]
