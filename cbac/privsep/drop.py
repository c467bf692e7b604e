"""Dropping root for good (standard library only: runs before Twisted is
imported in the management process).

:func:`drop_privileges` empties the capability bounding set (when it
may: CAP_SETPCAP), the
supplementary groups, sets real/effective/saved gid and uid, sets
``PR_SET_NO_NEW_PRIVS`` (no set-uid program or file capability can give
anything back), then checks ``/proc/self/status``: any uid or gid 0 or any
capability left is an error (fail closed: the caller exits).
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
CAP_LAST = 63


class DropError(Exception):
    pass


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def status_fields(pid="self") -> dict:
    """Uid, Gid, Groups, CapInh/Prm/Eff/Bnd/Amb, NoNewPrivs of a process."""
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                     "NoNewPrivs"):
                out[k] = v.split()
    return out


def drop_privileges(uid: int, gid: int) -> None:
    if uid == 0 or gid == 0:
        raise DropError("refusing to 'drop' to uid/gid 0")
    libc = _libc()
    if os.geteuid() == 0:
        for cap in range(CAP_LAST + 1):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                e = ctypes.get_errno()
                if e in (errno.EINVAL, errno.EPERM):
                    # EINVAL: past the kernel's last capability; EPERM: no
                    # CAP_SETPCAP (the systemd unit does not give it): the
                    # bounding set stays, harmless once uid 0 and every
                    # permitted capability are gone and no_new_privs is set
                    break
                raise DropError("PR_CAPBSET_DROP %d: %s" % (cap, os.strerror(e)))
        os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # the engine's death ends this process at once (the setting does not
    # survive the change of credentials above, so it is made here)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        raise DropError("the engine is gone")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise DropError("PR_SET_NO_NEW_PRIVS: %s" % os.strerror(ctypes.get_errno()))
    check_dropped()


def check_dropped() -> None:
    st = status_fields()
    if "0" in st.get("Uid", ["0"]) or "0" in st.get("Gid", ["0"]):
        raise DropError("still uid/gid 0: %s" % st)
    for k in ("CapPrm", "CapEff", "CapAmb"):
        if k in st and int(st[k][0], 16) != 0:
            raise DropError("%s is %s after the drop" % (k, st[k][0]))
    if st.get("Groups") and "0" in st["Groups"]:
        raise DropError("still in group 0")


def resolve_user(name: str):
    """(uid, gid, warning or None) for the management user: ``name`` if it
    exists, else nobody/nogroup (65534) with a warning."""
    import pwd
    try:
        pw = pwd.getpwnam(name)
        if pw.pw_uid != 0 and pw.pw_gid != 0:
            return pw.pw_uid, pw.pw_gid, None
        why = "user %s is uid/gid 0" % name
    except KeyError:
        why = "user %s does not exist" % name
    try:
        pw = pwd.getpwnam("nobody")
        uid, gid = pw.pw_uid, pw.pw_gid
    except KeyError:
        uid, gid = 65534, 65534
    return uid, gid, "%s: the management process runs as uid %d gid %d (nobody) instead" % (
        why, uid, gid)
