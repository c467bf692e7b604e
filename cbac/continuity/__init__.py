"""Continuity: sessions and translations survive a restart of cbac
(:mod:`cbac.continuity.restart`) and, with a standby box, the failure of the
active one (:mod:`cbac.continuity.sync`, :mod:`cbac.continuity.vrrp`).

* :mod:`cbac.continuity.state`: the versioned records (encode/decode) of
  sessions, NAT translations (with their PAT ports) and host blocks, and
  how they are installed in the engines;
* :mod:`cbac.continuity.journal`: the append-only journal with periodic
  compaction and batched fsync in ``--state-dir``;
* :mod:`cbac.continuity.resume`: what a restored session does with its
  first packets (TCP window re-learning, reset-on-next-packet);
* :mod:`cbac.continuity.restart`: the observer the engines call on state
  changes, and the restore at start.

The design is in docs/continuity.md.
"""
