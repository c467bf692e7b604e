"""The management process (``python3 -m cbac.mgmt``): the SSH console, CLI
and manhole, as an unprivileged user, talking to the engine over AMP.

Spawned and supervised by the engine (:mod:`cbac.privsep.engine`); see
docs/architecture.md, "Two processes".  Not meant to be started by hand.
"""
