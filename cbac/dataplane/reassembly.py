"""Virtual fragment reassembly (IOS ``ip virtual-reassembly``), for real.

The router hands every IPv4 fragment to :meth:`Reassembly.add` before any
lookup, ACL, NAT or inspection: those stages then see one whole datagram
(ports, the complete TCP segment, the complete UDP datagram), and egress
fragments it again to the outgoing MTU.  Sans-I/O: time comes from the
injected clock; the router's sweeper calls :meth:`expire`.

Per ingress interface, with IOS's defaults and names (``ip
virtual-reassembly [max-reassemblies N] [max-fragments N] [timeout S]
[drop-fragments]`` on the interface):

* at most ``max-reassemblies`` (16) datagrams in progress; a fragment of
  a new datagram beyond that is dropped (``vfr-table-full``,
  ``%IP_VFR-4-FRAG_TABLE_OVERFLOW``);
* at most ``max-fragments`` (32) fragments per datagram
  (``vfr-too-many-fragments``, ``%IP_VFR-4-TOO_MANY_FRAGMENTS``);
* a datagram not complete after ``timeout`` (3) seconds is discarded
  (``vfr-timeout``);
* ``drop-fragments``: every fragment is dropped (``vfr-drop-fragments``);
* overlapping fragments (RFC 5722, as Linux does for IPv4): the whole
  datagram is discarded, and so are its later fragments until the
  timeout (``vfr-overlap``, ``%IP_VFR-3-OVERLAP_FRAGMENTS``); an exact
  duplicate is ignored;
* a first fragment that does not hold the whole transport header (TCP 20
  bytes or its data offset, UDP and ICMP 8) is a tiny fragment: the
  datagram is discarded (``vfr-tiny-fragment``,
  ``%IP_VFR-4-TINY_FRAGMENTS``); a datagram longer than 65,535 bytes is
  discarded (``vfr-too-long``).

Memory is bounded by max-reassemblies x 64 KiB per interface.
"""

from __future__ import annotations

from cbac.log import ios
from cbac.packet.checksum import checksum
from cbac.packet.view import ip_str

MAX_REASSEMBLIES = 16
MAX_FRAGMENTS = 32
TIMEOUT = 3
#: at most one IP_VFR log line of a kind per this many seconds
LOG_INTERVAL = 1.0

_MIN_HEADER = {6: 20, 17: 8, 1: 8}


class Settings:
    __slots__ = ("max_reassemblies", "max_fragments", "timeout", "drop_fragments")

    def __init__(self, max_reassemblies=MAX_REASSEMBLIES, max_fragments=MAX_FRAGMENTS,
                 timeout=TIMEOUT, drop_fragments=False):
        self.max_reassemblies = max_reassemblies
        self.max_fragments = max_fragments
        self.timeout = timeout
        self.drop_fragments = drop_fragments


def settings_from_interface(model) -> Settings:
    """The ``ip virtual-reassembly`` options of an interface model (kept as
    a verbatim line by the parser); IOS defaults when absent."""
    st = Settings()
    for x in getattr(model, "extra", ()) or ():
        w = str(getattr(x, "text", x)).split()
        if w[:2] != ["ip", "virtual-reassembly"]:
            continue
        i = 2
        while i < len(w):
            k = w[i]
            try:
                if k == "max-reassemblies" and i + 1 < len(w):
                    st.max_reassemblies = max(1, min(int(w[i + 1]), 8192))
                    i += 2
                    continue
                if k == "max-fragments" and i + 1 < len(w):
                    st.max_fragments = max(1, min(int(w[i + 1]), 64))
                    i += 2
                    continue
                if k == "timeout" and i + 1 < len(w):
                    st.timeout = max(1, min(int(w[i + 1]), 30))
                    i += 2
                    continue
            except ValueError:
                pass
            if k == "drop-fragments":
                st.drop_fragments = True
            i += 1
    return st


class _Datagram:
    __slots__ = ("parts", "head", "total", "deadline", "dead", "size")

    def __init__(self, deadline):
        self.parts = []          # (offset, bytes), in arrival order
        self.head = None         # IP header of the first fragment
        self.total = None        # payload length, known from the last fragment
        self.deadline = deadline
        self.dead = False        # refused: swallow the rest until the deadline
        self.size = 0


class Reassembly:
    """Fragment tables of every interface of one router."""

    def __init__(self, clock):
        self.clock = clock
        self.tables = {}         # ifname -> {key: _Datagram}
        self.settings = {}       # ifname -> Settings
        self.reassembled = 0
        self._logged = {}

    def configure(self, ifname, settings: Settings) -> None:
        self.settings[ifname] = settings

    def in_progress(self, ifname=None) -> int:
        if ifname is not None:
            return sum(1 for d in self.tables.get(ifname, {}).values() if not d.dead)
        return sum(self.in_progress(n) for n in self.tables)

    def _log(self, kind, severity, mnemonic, text) -> None:
        now = self.clock.seconds()
        last = self._logged.get(kind)
        if last is not None and now - last < LOG_INTERVAL:
            return
        self._logged[kind] = now
        ios.message("IP_VFR", severity, mnemonic, text)

    def add(self, ifname, pkt):
        """Take one fragment (a parsed packet).  Returns the whole datagram
        (``bytearray``, IP header first) when this fragment completed it,
        None while it is incomplete, or a drop reason (str)."""
        st = self.settings.get(ifname)
        if st is None:
            st = self.settings[ifname] = Settings()
        if st.drop_fragments:
            return "vfr-drop-fragments"
        now = self.clock.seconds()
        table = self.tables.get(ifname)
        if table is None:
            table = self.tables[ifname] = {}
        frame = pkt.frame
        l3 = pkt.l3
        key = (pkt.src, pkt.dst, pkt.proto, pkt.ip_id)
        dg = table.get(key)
        if dg is not None and dg.deadline <= now:
            del table[key]
            dg = None
        if dg is None:
            live = sum(1 for d in table.values() if d.deadline > now)
            if live >= st.max_reassemblies:
                self._expire_table(table, now)
                if len(table) >= st.max_reassemblies:
                    self._log("overflow", 4, "FRAG_TABLE_OVERFLOW",
                              "%s: the fragment table has reached its maximum threshold %d"
                              % (ifname, st.max_reassemblies))
                    return "vfr-table-full"
            dg = table[key] = _Datagram(now + st.timeout)
        if dg.dead:
            return "vfr-refused-datagram"
        off = pkt.frag
        data = bytes(frame[l3 + pkt.ihl:l3 + pkt.ip_len])
        end = off + len(data)
        reason = None
        if pkt.mf and len(data) % 8:
            reason = "vfr-bad-length"
        elif end > 65535 - pkt.ihl:
            reason = "vfr-too-long"
        elif off == 0 and len(data) < self._min_header(pkt.proto, data):
            reason = "vfr-tiny-fragment"
            self._log("tiny", 4, "TINY_FRAGMENTS", "%s: from the host %s destined to %s"
                      % (ifname, ip_str(pkt.src), ip_str(pkt.dst)))
        elif not pkt.mf and dg.total is not None and dg.total != end:
            reason = "vfr-overlap"
        elif dg.total is not None and end > dg.total:
            reason = "vfr-overlap"
        else:
            for o, d in dg.parts:
                if off < o + len(d) and o < end:
                    if o == off and d == data:
                        return None                  # exact duplicate: ignored
                    reason = "vfr-overlap"
                    break
            if reason == "vfr-overlap":
                self._log("overlap", 3, "OVERLAP_FRAGMENTS", "%s: from the host %s destined "
                          "to %s" % (ifname, ip_str(pkt.src), ip_str(pkt.dst)))
        if reason is None and len(dg.parts) >= st.max_fragments:
            reason = "vfr-too-many-fragments"
            self._log("many", 4, "TOO_MANY_FRAGMENTS", "%s: Too many fragments per datagram "
                      "(more than %d) - sent by %s, destined to %s" % (
                          ifname, st.max_fragments, ip_str(pkt.src), ip_str(pkt.dst)))
        if reason is not None:
            dg.dead = True
            dg.parts = []
            dg.head = None
            return reason
        dg.parts.append((off, data))
        dg.size += len(data)
        if off == 0:
            dg.head = bytes(frame[l3:l3 + pkt.ihl])
        if not pkt.mf:
            dg.total = end
        if dg.head is None or dg.total is None or dg.size != dg.total:
            return None
        # complete (no overlaps, so the sizes add up only without holes)
        del table[key]
        dg.parts.sort()
        ihl = len(dg.head)
        out = bytearray(dg.head)
        for _o, d in dg.parts:
            out += d
        tot = len(out)
        out[2] = tot >> 8
        out[3] = tot & 0xFF
        out[6] &= 0x40                   # keep DF; clear MF and the offset
        out[7] = 0
        out[10] = out[11] = 0
        c = checksum(out, 0, ihl)
        out[10] = c >> 8
        out[11] = c & 0xFF
        self.reassembled += 1
        return out

    @staticmethod
    def _min_header(proto, data) -> int:
        need = _MIN_HEADER.get(proto, 0)
        if proto == 6 and len(data) >= 13:
            need = max(need, (data[12] >> 4) * 4)
        return need

    @staticmethod
    def _expire_table(table, now) -> int:
        n = 0
        for key in [k for k, d in table.items() if d.deadline <= now]:
            dg = table.pop(key)
            if not dg.dead:
                n += 1
        return n

    def expire(self, now=None) -> dict:
        """Discard datagrams past their timeout; returns {interface: number
        of incomplete datagrams discarded} (only non-zero entries)."""
        if now is None:
            now = self.clock.seconds()
        out = {}
        for name, table in self.tables.items():
            if table:
                n = self._expire_table(table, now)
                if n:
                    out[name] = n
        return out


__all__ = ["Reassembly", "Settings", "settings_from_interface", "MAX_REASSEMBLIES",
           "MAX_FRAGMENTS", "TIMEOUT"]
