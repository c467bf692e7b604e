"""``python3 -m cbac.mgmt``: drop privileges first, then run the console."""

import sys

#: scheduling niceness of the management process (the engine keeps 0)
NICE = 10


def _early_args(argv):
    uid = gid = None
    for i, a in enumerate(argv):
        if a == "--uid":
            uid = int(argv[i + 1])
        elif a == "--gid":
            gid = int(argv[i + 1])
    return uid, gid


def main(argv):
    uid, gid = _early_args(argv)
    # Everything the console may import is imported before the drop: the
    # interpreter's own files may not be readable by the unprivileged user
    # (a Python under /root in development); Debian's are.
    import os
    # The engine wins the CPU: the console's work (SSH crypto, filters,
    # rendering) runs at a lower priority than forwarding.
    try:
        os.nice(NICE)
    except OSError:
        pass
    from cbac.mgmt.main import preload
    preload()
    if uid is not None:
        from cbac.privsep.drop import DropError, drop_privileges
        try:
            drop_privileges(uid, gid if gid is not None else uid)
        except (DropError, OSError) as e:
            sys.stderr.write("cbac.mgmt: cannot drop privileges: %s; not starting\n" % e)
            sys.stderr.flush()
            return 2
    from cbac.mgmt.main import run
    return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
