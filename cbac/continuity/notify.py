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
"""

from __future__ import annotations

import os
import socket
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
        return 1
    finally:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
