"""Transition tables for the application inspectors' state machines.

Each inspector states its states and the transitions between them in one
table at the top of its file (as h11's ``_state.py`` does), and every
change of state goes through :func:`go`, which refuses a transition the
table does not list: the inspector raises :class:`IllegalTransition`, and
the session engine resets the connection (an inspector that fails is
never passed through: cbac fails closed).
"""

from __future__ import annotations


class IllegalTransition(RuntimeError):
    """A state change its inspector's transition table does not allow."""


def go(protocol: str, table: dict, old, new):
    """``new`` if ``table[old]`` allows it, else raise IllegalTransition."""
    if new not in table.get(old, ()):
        raise IllegalTransition("%s: %s -> %s is not in the transition table" % (
            protocol, old, new))
    return new


def check_table(table: dict) -> dict:
    """A table whose every target is a state of its own (at import)."""
    for old, targets in table.items():
        for new in targets:
            if new not in table:
                raise ValueError("transition %s -> %s: no state %s" % (old, new, new))
    return table
