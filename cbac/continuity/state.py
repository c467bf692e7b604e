"""The continuity records: sessions, NAT translations, host blocks.

A record is a small dict (JSON in the journal and on the sync link):

``S`` (session, upsert by ``id``), ``D`` (session gone), ``T``
(translation, upsert by ``id``), ``X`` (translation gone), ``B`` (host
blocked until), ``U`` (host unblocked).

:data:`VERSION` is the record format.  A reader accepts every version up to
its own (older records are upgraded by :func:`upgrade`) and refuses newer
ones (:class:`StateError`: the file is moved aside and cbac starts empty).

What is kept of a session: its keys on both sides of NAT (``c_in``,
``c_out``), protocol, rule, interfaces, timers' state (SIS state, idle,
ages), counters, TCP window tracking, the NAT translation it holds, and
the application inspector's state when it can be resumed
(:mod:`cbac.continuity.resume`).  Times are stored as ages relative to the
moment the record was made, so a restore does not depend on the clock of
the process that wrote it.
"""

from __future__ import annotations

from cbac.nat.translation import FLOW, Translation, flow_key, make_rewrites
from cbac.inspect.session import SIS_CLOSING, SIS_OPEN, SIS_OPENING
from cbac.inspect.tcp import CLOSING, ESTABLISHED, SYN_SENT
from cbac.log import ios

#: the record format this cbac writes
VERSION = 1


class StateError(ValueError):
    """A record (or file) cbac cannot read with certainty."""


def upgrade(rec: dict, version: int) -> dict:
    """A record of an older ``version`` in today's form (version 1 is the
    first: nothing to do yet)."""
    if version > VERSION or version < 1:
        raise StateError("state format version %r is not supported (this cbac reads 1..%d)"
                         % (version, VERSION))
    return rec


# ---------------------------------------------------------------------------
# checks (fail closed: a record with a wrong type is refused, not guessed)

def _int(v, lo=0, hi=0xFFFFFFFF):
    if type(v) is not int or not lo <= v <= hi:
        raise StateError("bad integer %r" % (v,))
    return v


def _num(v):
    if type(v) not in (int, float) or v != v or v < 0 or v > 1e12:
        raise StateError("bad number %r" % (v,))
    return float(v)


def _str(v, none=False):
    if v is None and none:
        return None
    if type(v) is not str or len(v) > 256:
        raise StateError("bad string %r" % (v,))
    return v


def _tuple4(v):
    if type(v) is not list or len(v) != 4:
        raise StateError("bad 4-tuple %r" % (v,))
    return (_int(v[0]), _int(v[1]), _int(v[2], 0, 0xFFFF), _int(v[3], 0, 0xFFFF))


def _pair(v):
    if v is None:
        return None
    if type(v) is not list or len(v) != 2:
        raise StateError("bad address pair %r" % (v,))
    return (_int(v[0]), None if v[1] is None else _int(v[1], 0, 0xFFFF))


# ---------------------------------------------------------------------------
# sessions

def encode_session(s, now: float, tid=None, app=None) -> dict:
    """The ``S`` record of a live session.  ``tid``: the id of its NAT
    translation record; ``app``: its inspector state (resume.snapshot) or
    ``"reset"`` for an inspector that cannot be resumed."""
    rec = {"k": "S", "id": s.sid, "p": s.proto, "pr": s.protocol, "rn": s.rule_name,
           "ci": list(s.c_in), "co": list(s.c_out), "ii": s.in_if, "oi": s.out_if,
           "sis": s.sis, "ac": round(max(0.0, now - s.created), 3),
           "al": round(max(0.0, now - s.last), 3), "idle": s.idle,
           "by": list(s.bytes), "pk": list(s.pkts), "dns": bool(s.dns), "ir": s.icmp_req,
           "as": s.app_state if isinstance(s.app_state, str) else "", "tr": tid}
    t = s.tcp
    if t is not None:
        rec["tcp"] = {"st": t.state, "v": list(t.v), "fin": t.fin, "mss": t.mss}
    if app is not None:
        rec["app"] = app
    return rec


def decode_session(rec: dict) -> dict:
    """Check an ``S`` record; returns it with tuples (raises StateError)."""
    out = dict(rec)
    out["id"] = _int(rec["id"], 1, 1 << 62)
    p = out["p"] = _int(rec["p"], 0, 255)
    if p not in (1, 6, 17):
        raise StateError("bad protocol %r" % (p,))
    out["pr"] = _str(rec["pr"])
    out["rn"] = _str(rec.get("rn"), none=True)
    out["ci"] = _tuple4(rec["ci"])
    out["co"] = _tuple4(rec["co"])
    out["ii"] = _str(rec.get("ii"), none=True)
    out["oi"] = _str(rec.get("oi"), none=True)
    if rec["sis"] not in (SIS_OPENING, SIS_OPEN, SIS_CLOSING):
        raise StateError("bad SIS state %r" % (rec["sis"],))
    out["ac"] = _num(rec["ac"])
    out["al"] = _num(rec["al"])
    out["idle"] = _num(rec["idle"])
    by, pk = rec["by"], rec["pk"]
    if type(by) is not list or len(by) != 2 or type(pk) is not list or len(pk) != 2:
        raise StateError("bad counters")
    out["by"] = [_int(by[0], 0, 1 << 62), _int(by[1], 0, 1 << 62)]
    out["pk"] = [_int(pk[0], 0, 1 << 62), _int(pk[1], 0, 1 << 62)]
    out["ir"] = _int(rec.get("ir", 0), 0, 255)
    out["as"] = _str(rec.get("as", ""))[:256]
    tcp = rec.get("tcp")
    if p == 6:
        if type(tcp) is not dict or type(tcp.get("v")) is not list or len(tcp["v"]) != 12:
            raise StateError("TCP session without window tracking")
        st = _int(tcp["st"], 1, 5)
        v = [int(x) if type(x) is int and -1 <= x <= 0xFFFFFFFF else _int(x)
             for x in tcp["v"]]
        out["tcp"] = {"st": st, "v": v, "fin": _int(tcp["fin"], 0, 3),
                      "mss": _int(tcp["mss"], 0, 0xFFFF)}
    tr = rec.get("tr")
    if tr is not None:
        _int(tr, 0, 1 << 62)
    return out


# ---------------------------------------------------------------------------
# translations

def _rule_sig(rule):
    if rule is None:
        return None
    return {"acl": rule.acl, "pool": rule.pool, "if": rule.interface,
            "ov": bool(rule.overload), "side": rule.side}


def encode_translation(t, tid: int, now: float, owner_sid=None) -> dict:
    """The ``T`` record of a flow translation (kind FLOW, registered)."""
    return {"k": "T", "id": tid, "p": t.proto,
            "il": list(t.inside_local), "ig": list(t.inside_global),
            "ol": list(t.outside_local), "og": list(t.outside_global),
            "rule": _rule_sig(t.rule),
            "pk": list(t.pat_key) if t.pat_key is not None else None,
            "ow": owner_sid, "to": t.timeout, "ts": t.tcp_state,
            "al": round(max(0.0, now - t.last_use), 3),
            "ac": round(max(0.0, now - t.created), 3)}


def _find_rule(nat, sig, ig):
    if sig is None:
        return None
    rules = nat.out_rules if sig.get("side") == "outside" else nat.rules
    for r in rules:
        if (r.acl == sig.get("acl") and r.pool == sig.get("pool")
                and r.interface == sig.get("if") and bool(r.overload) == bool(sig.get("ov"))
                and ig in r.addresses):
            return r
    raise StateError("the NAT rule of this translation is no longer configured")


def install_translation(nat, rec, now: float):
    """Re-create a flow translation (with its PAT port) in ``nat``.
    Returns the Translation; raises StateError when it cannot be made as it
    was (its rule or global address is gone, the port is taken)."""
    proto = _int(rec["p"], 0, 255)
    il, ig, ol, og = (_pair(rec[k]) for k in ("il", "ig", "ol", "og"))
    if None in (il, ig, ol, og):
        raise StateError("incomplete translation")
    rule = _find_rule(nat, rec.get("rule"), ig[0])
    if rule is not None and not rule.overload:
        raise StateError("translations of dynamic pools without overload are not restored")
    ilp, igp, olp, ogp = il[1] or 0, ig[1] or 0, ol[1] or 0, og[1] or 0
    if proto == 1:
        in_key, out_key = flow_key(1, il[0], ilp, ol[0], 0), flow_key(1, og[0], igp, ig[0], 0)
    elif proto in (6, 17):
        in_key = flow_key(proto, il[0], ilp, ol[0], olp)
        out_key = flow_key(proto, og[0], ogp, ig[0], igp)
    else:
        raise StateError("translation of protocol %d not restored" % proto)
    if in_key in nat.flows_in or out_key in nat.flows_out:
        raise StateError("translation collides with an existing one")
    pat_key = None
    if rule is not None:
        pk = rec.get("pk")
        if type(pk) is not list or len(pk) not in (4, 5):
            raise StateError("PAT translation without its port key")
        pat_key = tuple(pk)
        k = (proto, ig[0], igp)
        held = nat.ports.get(k)
        if held is None:
            nat.ports[k] = [il[0], ilp, 1]
            nat._portmap(proto, ig[0]).take(igp)
        elif held[0] == il[0] and held[1] == ilp and held[2] >= 0:
            held[2] += 1
        else:
            raise StateError("PAT port %d is held by another inside address" % igp)
        if len(pat_key) == 4:
            nat.pat_by_local.setdefault(pat_key, k)
    else:
        # a static: its global side must still be configured as it was
        if ig[0] != il[0] and not nat.is_global_address(ig[0]):
            raise StateError("the static translation is no longer configured")
    t = Translation(FLOW, proto, il, ig, ol, og, now - _num(rec.get("ac", 0)))
    t.forward, t.reverse = make_rewrites(proto, il[0], ilp, ig[0], igp, ol[0], olp, og[0], ogp)
    t.rule = rule
    t.pat_key = pat_key
    t.last_use = now
    ts = rec.get("ts", 0)
    t.tcp_state = ts if ts in (0, 1, 2) else 0
    if rule is not None:
        t.host = il[0]
        nat.host_count[il[0]] = nat.host_count.get(il[0], 0) + 1
        rule.refcount += 1
    to = rec.get("to")
    t.timeout = None if to is None else _num(to)
    nat.flows_in[in_key] = t
    nat.flows_out[out_key] = t
    nat.entries[t] = t
    nat._schedule(t)
    nat._note_peak(now)
    return t


# ---------------------------------------------------------------------------
# installing a session

_NO_CACHE_DOC = """A session's route cache that caches nothing: the router's
fast path (which needs a cached route) leaves the session to the slow path,
where :mod:`cbac.continuity.resume` sees its first packets."""


class NoRouteCache(list):
    __doc__ = _NO_CACHE_DOC

    def __setitem__(self, i, v):
        pass


def install_session(table, rec: dict, translation, now: float, owned: bool = False):
    """Re-create a session in ``table`` from a decoded ``S`` record.

    ``owned``: the session owns ``translation`` (it made it; they die
    together).  The application inspector, if any, is the caller's
    (:mod:`cbac.continuity.resume`).  Returns the Session; raises
    StateError when it cannot be installed (a key collision, an inspect
    rule gone)."""
    proto = rec["p"]
    c_in, c_out = rec["ci"], rec["co"]
    tab = table.proto_table(proto)
    if tab is None:
        raise StateError("protocol %r is not inspected" % (proto,))
    kc, ks = table.keys_of(proto, c_in, c_out)
    if kc in tab or ks in tab:
        raise StateError("key collision")
    sid = rec["id"]
    if sid in table.sessions:
        raise StateError("session id in use")
    rule_name = rec["rn"]
    rules = table.model.inspect_rules
    rule = rules.get(rule_name) if rule_name is not None else None
    if rule_name is not None and rule is None:
        raise StateError("inspect rule %s is no longer configured" % rule_name)
    protocol = rec["pr"]
    rp = rule.get(protocol) if rule is not None else None
    g = table.model.inspect
    s = table.build_session(sid, proto, protocol, rule_name, rp, now, c_in, c_out, (kc, ks),
                            translation, c_in[1], None, rec["ii"], rec["oi"])
    if sid > table._seq:
        table._seq = sid
    s.created = now - rec["ac"]
    s.bytes = list(rec["by"])
    s.pkts = list(rec["pk"])
    s.app_state = rec["as"]
    if proto != 6:                   # (a TCP session has neither: False, 0)
        s.dns = bool(rec.get("dns"))
        s.icmp_req = rec["ir"]
    s.idle = rec["idle"]
    s.sis = rec["sis"]
    s.half_open = s.sis == SIS_OPENING and proto != 1
    if proto == 6:
        tr = rec["tcp"]
        t = s.tcp                        # a TcpSession is its own tracker
        t.state = tr["st"]
        t.v[:] = tr["v"]
        t.fin = tr["fin"]
        t.mss = tr["mss"] or 536
        if t.state < ESTABLISHED:
            w = rp.synwait if rp is not None and rp.synwait is not None \
                else g.tcp_synwait_time
            s.fixed = now + w
        elif t.state >= CLOSING:
            s.fixed = now + (rp.finwait if rp is not None and rp.finwait is not None
                             else g.tcp_finwait_time)
    tab[kc] = s                      # the key dicts' values are the sessions
    tab[ks] = s
    table.sessions[sid] = s
    src, dst = c_in[0], c_out[1]
    th = table.thresholds
    th.count(src, dst)
    if rule_name is not None and ":" in rule_name and \
            getattr(rule, "sessions_maximum", None) is not None:
        table._rule_live[rule_name] = table._rule_live.get(rule_name, 0) + 1
    if s.half_open:
        th.add_half(s)
    if translation is not None and table.nat is not None and owned:
        table.nat.adopt(translation, s)
    n = len(table.sessions)
    if n > table.stats.peak:
        table.stats.peak = n
    table.schedule(s)
    return s


def session_order(records):
    """``S`` records in creation order (the table lists oldest first)."""
    return sorted(records, key=lambda r: r["id"])


def log_restore(text: str, *args) -> None:
    ios.message("FW", 6, "STATE_RESTORE", text % args if args else text)


__all__ = ["VERSION", "StateError", "upgrade", "encode_session", "decode_session",
           "encode_translation", "install_translation", "install_session", "NoRouteCache",
           "SYN_SENT"]
