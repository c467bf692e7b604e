"""``python3 -m cbac.continuity.notify [--state-dir DIR] STATE ...``
``python3 -m cbac.continuity.notify [--state-dir DIR] --check``

keepalived's notify script for cbac (docs/continuity.md): tells the cbac
of this box its VRRP state (MASTER, BACKUP, FAULT; STOP counts as FAULT).
keepalived's generic ``notify`` appends ``INSTANCE NAME STATE PRIORITY``;
the first word that is a state is taken.  Writes ``DIR/redundancy.state``
(read by cbac at start) and sends the state to ``DIR/redundancy.sock``.
Exit status 0 when cbac got it, 1 when only the file was written (cbac not
running: it reads the file when it starts), 2 on a usage error.

``--check`` (keepalived's ``vrrp_script``): exit 0 when cbac is running
and listening, 1 otherwise; a failing check puts the VRRP instance in
FAULT, so a dead cbac hands the traffic to its peer.

FAULT when cbac cannot be told (it is not running) also removes the kernel
fast path's tc program from the ports cbac claimed (``python3 -m
cbac.dataplane.claim detach DIR``): nothing may go on forwarding for a dead
cbac.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from cbac.continuity.vrrp import SOCKET, STATE_FILE, parse


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    state_dir = "/var/lib/cbac"
    if len(argv) >= 2 and argv[0] == "--state-dir":
        state_dir = argv[1]
        argv = argv[2:]
    if argv == ["--check"]:
        # keepalived's vrrp_script: is cbac alive (listening)?  A dead
        # process's socket file refuses the datagram.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.sendto(b"PING\n", os.path.join(state_dir, SOCKET))
        except OSError:
            return 1
        finally:
            s.close()
        return 0
    role = parse(" ".join(argv).encode("ascii", "replace"))
    if role is None:
        sys.stderr.write("usage: python3 -m cbac.continuity.notify [--state-dir DIR] "
                         "MASTER|BACKUP|FAULT\n")
        return 2
    tmp = os.path.join(state_dir, STATE_FILE + ".tmp")
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(role + "\n")
        os.replace(tmp, os.path.join(state_dir, STATE_FILE))
    except OSError as e:
        sys.stderr.write("cbac notify: cannot write the state file: %s\n" % e)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(role.encode() + b"\n", os.path.join(state_dir, SOCKET))
    except OSError:
        if role == "FAULT":
            detach_fastpath(state_dir)
        return 1
    finally:
        s.close()
    return 0


def detach_fastpath(state_dir) -> None:
    """FAULT with no cbac to tell (killed, crashed): the kernel fast path's
    tc program may still be on the ports it claimed, forwarding the flows it
    was given with nobody left to time them out.  Remove it (the ports stay
    claimed: closed to the kernel) with ``python3 -m cbac.dataplane.claim
    detach``, which the systemd unit's ExecStopPost release does too."""
    try:
        subprocess.run([sys.executable, "-m", "cbac.dataplane.claim", "detach", state_dir],
            stdin=subprocess.DEVNULL, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        sys.stderr.write("cbac notify: cannot remove the kernel fast path: %s\n" % e)


if __name__ == "__main__":
    sys.exit(main())
