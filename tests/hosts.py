"""Simulated Linux end hosts around a whole cbac appliance on memory ports.

:class:`Net` builds the appliance from a configuration text on two memory
ports (``Ethernet2/1`` inside 10.10.10.0/24, ``Ethernet2/0`` outside
172.22.1.0/24) and pumps frames between the router and the hosts until
the network is quiet (no re-entrancy: hosts queue what they send).

:class:`LinuxHost` behaves like a Linux end host where it matters for
inspection evasion:

* IP and TCP/UDP checksums are verified; a damaged packet is discarded
  (``csum_errors``);
* IPv4 fragments are reassembled; a datagram with overlapping fragments
  is discarded whole (Linux >= 4.19);
* TCP follows RFC 5961: an RST is accepted only at exactly RCV.NXT; an
  RST elsewhere in the window, and a SYN on an established connection,
  are answered with a challenge ACK;
* the urgent byte (BSD semantics: the byte before the urgent pointer) is
  removed from the in-band data unless ``oobinline`` (SO_OOBINLINE);
* out-of-order segments are dropped (the sender retransmits).

An application object (``connected(conn)``, ``received(conn, data)``)
gets the in-band bytes: :class:`SmtpServer` records what it executes;
:class:`FramedServer` and :class:`LineServer` cut the bytes into the
messages a test server answers.
Tests craft hostile segments with :meth:`Conn.raw`.
"""

from __future__ import annotations

from scapy.all import ARP, IP, TCP, UDP, Ether, raw
from twisted.internet.task import Clock

from cbac.app import Appliance
from cbac.config.parser import parse_config
from cbac.dataplane.port import MemoryPort
from cbac.packet.checksum import checksum, fold, ones_sum, pseudo_header_sum

R_IN, R_OUT = "02:00:0a:0a:0a:01", "02:00:ac:16:01:10"
INSIDE, OUTSIDE = "Ethernet2/1", "Ethernet2/0"

_BASE = """hostname cbac
ip inspect name IN-OUT tcp
ip inspect name IN-OUT udp
ip inspect name IN-OUT ftp
ip inspect name IN-OUT http
ip inspect name IN-OUT icmp
ip inspect name OUT-IN smtp
ip inspect name OUT-IN ftp
ip inspect name OUT-IN http
interface Ethernet2/0
 ip address 172.22.1.16 255.255.255.0
 ip access-group 101 in
{nat_out}
 ip inspect OUT-IN in
 ip virtual-reassembly
interface Ethernet2/1
 ip address 10.10.10.1 255.255.255.0
{nat_in}
 ip inspect IN-OUT in
ip route 0.0.0.0 0.0.0.0 172.22.1.1
{nat_rules}
access-list 1 permit 10.10.10.0 0.0.0.255
{acl}
{extra}
end
"""

#: the seed configuration's shape: PAT for the inside, the mail, FTP and
#: web servers 10.10.10.25 published on 172.22.1.16 ports 25, 21, 80
NAT_CONFIG = _BASE.format(
    nat_out=" ip nat outside", nat_in=" ip nat inside",
    nat_rules="ip nat inside source list 1 interface Ethernet2/0 overload\n"
              "ip nat inside source static tcp 10.10.10.25 25 172.22.1.16 25 extendable\n"
              "ip nat inside source static tcp 10.10.10.25 21 172.22.1.16 21 extendable\n"
              "ip nat inside source static tcp 10.10.10.25 80 172.22.1.16 80 extendable",
    acl="access-list 101 permit tcp any host 172.22.1.16 eq smtp\n"
        "access-list 101 permit tcp any host 172.22.1.16 eq ftp\n"
        "access-list 101 permit tcp any host 172.22.1.16 eq www",
    extra="{extra}")
#: the same without NAT: the servers are reached on 10.10.10.25
PLAIN_CONFIG = _BASE.format(
    nat_out="", nat_in="", nat_rules="",
    acl="access-list 101 permit tcp any host 10.10.10.25 eq smtp\n"
        "access-list 101 permit tcp any host 10.10.10.25 eq ftp\n"
        "access-list 101 permit tcp any host 10.10.10.25 eq www",
    extra="{extra}")

SERVER_IP = "10.10.10.25"
CLIENT_IP = "172.22.1.1"          # the outside host (also the default next hop)
INSIDE_CLIENT_IP = "10.10.10.2"


def _mac(i: int) -> str:
    return "02:00:00:00:00:%02x" % i


class Net:
    """The appliance and its hosts; ``nat`` selects NAT_CONFIG/PLAIN_CONFIG."""

    def __init__(self, nat=True, extra="", config=None):
        text = config or (NAT_CONFIG if nat else PLAIN_CONFIG).format(extra=extra)
        model, diags = parse_config(text)
        errors = [d for d in diags if getattr(d, "severity", "error") == "error"]
        if errors:
            raise ValueError("config: %r" % (errors,))
        self.nat = nat
        self.clock = Clock()
        self.ports = {INSIDE: MemoryPort(INSIDE, R_IN), OUTSIDE: MemoryPort(OUTSIDE, R_OUT)}
        self.app = Appliance(model, self.clock, dict(self.ports))
        self.router = self.app.router
        self.router.start()
        self.hosts = {INSIDE: [], OUTSIDE: []}
        self.queue = []
        self.frames = {INSIDE: [], OUTSIDE: []}     # everything the router sent, per port

    @property
    def server_addr(self):
        """The address an outside client uses for the inside server."""
        return "172.22.1.16" if self.nat else SERVER_IP

    def stop(self):
        self.router.stop()
        self.app.sessions.stop()

    def host(self, side, ip, n, **kw):
        h = LinuxHost(self, side, ip, _mac(n), R_IN if side == INSIDE else R_OUT, **kw)
        self.hosts[side].append(h)
        return h

    def emit(self, side, frame):
        self.queue.append((side, bytes(frame)))

    def pump(self, limit=100000):
        for _ in range(limit):
            moved = False
            for side, port in self.ports.items():
                while port.sent:
                    f, v = port.sent.pop(0)
                    self.frames[side].append(f)
                    moved = True
                    for h in list(self.hosts[side]):
                        h.frame_received(f)
            if self.queue:
                side, f = self.queue.pop(0)
                self.ports[side].inject(bytearray(f))
                moved = True
            if not moved:
                return
        raise AssertionError("network never quiet")

    def advance(self, seconds, step=1.0):
        t = 0.0
        while t < seconds:
            self.clock.advance(step)
            t += step
            for side in self.hosts:
                for h in self.hosts[side]:
                    h.tick()
            self.pump()

    def show(self, what="statistics"):
        return self.app.show_ip_inspect(what)


class Conn:
    """One TCP connection of a :class:`LinuxHost`."""

    def __init__(self, host, lport, raddr, rport, iss):
        self.host = host
        self.lport, self.raddr, self.rport = lport, raddr, rport
        self.iss = iss
        self.snd_una = self.snd_nxt = iss
        self.rcv_nxt = None
        self.state = "CLOSED"
        self.data = bytearray()            # in-band bytes the application got
        self.oob = bytearray()
        self.reset = False
        self.fin = False
        self.challenge_acks = 0
        self.peer_mss = 536
        self.rcv_wnd = 65535
        self.app = None
        self.unacked = []                  # (seq, data, flags) for retransmission
        self.options = []                  # TCP options of every non-SYN segment
        self.received_segments = []        # (seq, len, flags) as they arrived

    # -- sending --------------------------------------------------------------
    def segment(self, flags, seq=None, ack=None, data=b"", urg=0, options=None,
                bad_checksum=False, frags=None, window=None):
        """Build and send one segment (the raw tool of the tests).  ``frags``:
        a list of (offset, length) byte ranges of the IP payload to send as
        fragments (overlaps allowed), in that order."""
        h = self.host
        seq = self.snd_nxt if seq is None else seq
        if ack is None:
            ack = self.rcv_nxt or 0
        t = TCP(sport=self.lport, dport=self.rport, flags=flags, seq=seq & 0xFFFFFFFF,
                ack=ack & 0xFFFFFFFF, window=self.rcv_wnd if window is None else window,
                urgptr=urg, options=options if options is not None else self.options)
        pkt = IP(src=h.ip, dst=self.raddr, id=h.next_id(), flags=0 if frags else "DF") / t / data
        b = bytearray(raw(pkt))
        if bad_checksum:
            ihl = (b[0] & 15) * 4
            b[ihl + 16] ^= 0x5A
        h.send_ip(b, frags)

    def raw(self, data=b"", flags="PA", off=0, **kw):
        """A crafted segment at snd_nxt + off, not remembered for
        retransmission and not advancing snd_nxt."""
        self.segment(flags, seq=self.snd_nxt + off, data=data, **kw)

    def send(self, data, flags="PA", mss=None, frags=None):
        opts = len(raw(TCP(options=self.options))) - 20
        mss = mss or min(self.peer_mss, 1460) - opts
        while data:
            chunk, data = data[:mss], data[mss:]
            self.unacked.append((self.snd_nxt, bytes(chunk), flags))
            self.segment(flags, data=chunk, frags=frags)
            self.snd_nxt += len(chunk)

    def retransmit(self):
        for seq, chunk, flags in list(self.unacked):
            if seq + len(chunk) > self.snd_una:
                self.segment(flags, seq=seq, data=chunk)

    def close(self):
        self.segment("FA")
        self.snd_nxt += 1

    # -- receiving ------------------------------------------------------------
    def _ack(self):
        self.segment("A")

    def input(self, t, payload):
        flags = int(t.flags)
        seq = t.seq
        self.received_segments.append((seq, len(payload), flags))
        if self.state == "SYN_SENT":
            if flags & 0x12 == 0x12 and t.ack == self.iss + 1:
                self.rcv_nxt = seq + 1
                self.snd_una = self.snd_nxt = self.iss + 1
                self.peer_mss = _mss(t) or 536
                self.state = "ESTABLISHED"
                self._ack()
                if self.app:
                    self.app.connected(self)
            elif flags & 4 and t.ack == self.iss + 1:
                self.reset = True
                self.state = "CLOSED"
            return
        if self.state == "CLOSED":
            return
        if flags & 4:                              # RST, RFC 5961 3.2
            if seq == self.rcv_nxt:
                self.reset = True
                self.state = "CLOSED"
            elif 0 <= (seq - self.rcv_nxt) % (1 << 32) < self.rcv_wnd:
                self.challenge_acks += 1
                self._ack()
            return
        if flags & 2:                              # SYN
            if self.state == "SYN_RECV" and seq + 1 == self.rcv_nxt:
                self.segment("SA", seq=self.iss, options=[("MSS", 1460)])
                return
            self.challenge_acks += 1               # RFC 5961 4.2
            self._ack()
            return
        if not flags & 0x10:
            return
        if self.state == "SYN_RECV":
            if t.ack != self.iss + 1:
                return
            self.state = "ESTABLISHED"
            self.snd_una = self.snd_nxt = self.iss + 1
            if self.app:
                self.app.connected(self)
        a = t.ack
        if 0 < (a - self.snd_una) % (1 << 32) <= (self.snd_nxt - self.snd_una) % (1 << 32):
            self.snd_una = a
            self.unacked = [u for u in self.unacked if u[0] + len(u[1]) > a]
        if payload or flags & 1:
            rel = (seq - self.rcv_nxt) % (1 << 32)
            if rel >= (1 << 31):                     # starts before rcv_nxt
                skip = (1 << 32) - rel
                if skip >= len(payload) + (flags & 1):
                    self._ack()
                    return
                urg_at = t.urgptr - 1 - skip if flags & 0x20 and t.urgptr else None
                payload = payload[skip:]
            elif rel > 0:
                self._ack()                          # out of order: dropped
                return
            else:
                urg_at = t.urgptr - 1 if flags & 0x20 and t.urgptr else None
            self.rcv_nxt += len(payload)
            if urg_at is not None and 0 <= urg_at < len(payload):
                self.oob.append(payload[urg_at])
                if not self.host.oobinline:
                    payload = payload[:urg_at] + payload[urg_at + 1:]
            if flags & 1:
                self.rcv_nxt += 1
                self.fin = True
            self._ack()
            if payload:
                self.data += payload
                if self.app:
                    self.app.received(self, bytes(payload))


def _mss(t):
    for o in t.options:
        if o[0] == "MSS":
            return o[1]
    return None


class LinuxHost:
    def __init__(self, net, side, ip, mac, gw_mac, oobinline=False):
        self.net = net
        self.side = side
        self.ip = ip
        self.mac = mac
        self.gw_mac = gw_mac
        self.oobinline = oobinline
        self.listeners = {}
        self.conns = {}
        self.csum_errors = 0
        self.frags = {}                    # (src, id, proto) -> {"parts": [...], "bad": bool}
        self.udp = []                      # (src, sport, dport, payload)
        self.ip_packets = []               # every IP packet delivered (after reassembly)
        self._id = 1000
        self._iss = 9000

    def next_id(self):
        self._id += 1
        return self._id

    def listen(self, port, app_factory):
        self.listeners[port] = app_factory

    def connect(self, dst, dport, sport=40000, app=None, options=None):
        c = Conn(self, sport, dst, dport, 1000)
        c.state = "SYN_SENT"
        c.app = app
        self.conns[(sport, dst, dport)] = c
        c.segment("S", seq=c.iss, ack=0, options=options or [("MSS", 1460)])
        c.snd_nxt = c.iss + 1
        return c

    def tick(self):
        pass

    # -- wire -------------------------------------------------------------------
    def send_ip(self, b, frags=None):
        if not frags:
            self.net.emit(self.side, raw(Ether(src=self.mac, dst=self.gw_mac, type=0x0800)) + bytes(b))
            return
        ihl = (b[0] & 15) * 4
        payload = bytes(b[ihl:])
        for off, length in frags:
            piece = payload[off:off + length]
            more = off + len(piece) < len(payload)
            h = bytearray(b[:ihl])
            tot = ihl + len(piece)
            h[2:4] = tot.to_bytes(2, "big")
            h[6:8] = ((0x2000 if more else 0) | (off // 8)).to_bytes(2, "big")
            h[10:12] = b"\0\0"
            c = checksum(h)
            h[10:12] = c.to_bytes(2, "big")
            self.net.emit(self.side, raw(Ether(src=self.mac, dst=self.gw_mac, type=0x0800)) + bytes(h) + piece)

    def send_udp(self, dst, sport, dport, data, frags=None):
        b = bytearray(raw(IP(src=self.ip, dst=dst, id=self.next_id(), flags=0) /
                          UDP(sport=sport, dport=dport) / data))
        if frags is None and len(b) > 1500:
            frags = [(o, 1480) for o in range(0, len(b) - 20, 1480)]
        self.send_ip(b, frags)

    def frame_received(self, f):
        e = Ether(f)
        if e.dst not in (self.mac, "ff:ff:ff:ff:ff:ff"):
            return
        if ARP in e:
            a = e[ARP]
            if a.op == 1 and a.pdst == self.ip:
                self.net.emit(self.side, raw(Ether(src=self.mac, dst=a.hwsrc) /
                                             ARP(op=2, hwsrc=self.mac, psrc=self.ip,
                                                 hwdst=a.hwsrc, pdst=a.psrc)))
            return
        b = bytes(f[14:])
        if len(b) < 20 or b[0] >> 4 != 4:
            return
        ihl = (b[0] & 15) * 4
        tot = int.from_bytes(b[2:4], "big")
        b = b[:tot]
        if fold(ones_sum(b, 0, ihl)) not in (0, 0xFFFF):
            self.csum_errors += 1
            return
        if socket_ip(b[16:20]) != self.ip:
            return
        fo = int.from_bytes(b[6:8], "big")
        if fo & 0x3FFF:
            b = self._reassemble(b, ihl, fo)
            if b is None:
                return
        self.ip_packets.append(b)
        proto = b[9]
        src = socket_ip(b[12:16])
        l4 = b[ihl:]
        if proto in (6, 17):
            if proto == 17 and l4[6:8] == b"\0\0":
                pass
            elif fold(ones_sum(l4) + pseudo_header_sum(int.from_bytes(b[12:16], "big"),
                                                       int.from_bytes(b[16:20], "big"),
                                                       proto, len(l4))) != 0xFFFF:
                self.csum_errors += 1
                return
        if proto == 17:
            u = UDP(l4)
            self.udp.append((src, u.sport, u.dport, bytes(l4[8:])))
        elif proto == 6:
            self._tcp(src, TCP(l4))

    def _reassemble(self, b, ihl, fo):
        key = (b[12:16], b[4:6], b[9])
        q = self.frags.setdefault(key, {"parts": [], "bad": False, "last": None})
        off = (fo & 0x1FFF) * 8
        data = b[ihl:]
        end = off + len(data)
        for o, d in q["parts"]:
            if off < o + len(d) and o < end:
                q["bad"] = True                 # overlap: the datagram is discarded
        if q["bad"]:
            return None
        q["parts"].append((off, data))
        if off == 0:
            q["head"] = b[:ihl]
        if not fo & 0x2000:
            q["last"] = end
        if q["last"] is None or "head" not in q:
            return None
        parts = sorted(q["parts"])
        pos = 0
        for o, d in parts:
            if o != pos:
                return None
            pos += len(d)
        if pos != q["last"]:
            return None
        del self.frags[key]
        payload = b"".join(d for _, d in parts)
        h = bytearray(q["head"])
        h[2:4] = (ihl + len(payload)).to_bytes(2, "big")
        h[6:8] = b"\0\0"
        return bytes(h) + payload

    def _tcp(self, src, t):
        key = (t.dport, src, t.sport)
        c = self.conns.get(key)
        payload = bytes(t.payload)
        if c is None:
            flags = int(t.flags)
            if flags & 0x17 == 0x02 and t.dport in self.listeners:
                c = Conn(self, t.dport, src, t.sport, self._iss)
                c.rcv_nxt = t.seq + 1
                c.peer_mss = _mss(t) or 536
                c.state = "SYN_RECV"
                c.app = self.listeners[t.dport]()
                self.conns[key] = c
                c.segment("SA", seq=c.iss, options=[("MSS", 1460)])
                c.snd_nxt = c.iss + 1
            elif not flags & 4:
                # closed port: RST (RFC 793)
                c = Conn(self, t.dport, src, t.sport, 0)
                if flags & 0x10:
                    c.segment("R", seq=t.ack, ack=0)
                else:
                    c.segment("RA", seq=0, ack=t.seq + len(payload) + (flags & 3 and 1))
            return
        c.input(t, payload)


def socket_ip(b):
    return "%d.%d.%d.%d" % tuple(b)


class FramedServer:
    """A server application that cuts the byte stream it gets into
    messages: ``frame_length(buf)`` is the length of the whole message at
    the start of ``buf`` (None while it is incomplete), ``message(conn,
    m)`` handles each in order.  ``greeting`` (if any) is sent when the
    connection is established; ``conn`` is the connection."""

    greeting = None

    def __init__(self):
        self.buf = bytearray()
        self.conn = None

    def connected(self, conn):
        self.conn = conn
        if self.greeting is not None:
            conn.send(self.greeting)

    def received(self, conn, data):
        self.buf += data
        while True:
            n = self.frame_length(self.buf)
            if n is None:
                return
            m = bytes(self.buf[:n])
            del self.buf[:n]
            self.message(conn, m)

    def frame_length(self, buf):
        raise NotImplementedError

    def message(self, conn, m):
        raise NotImplementedError


class LineServer(FramedServer):
    """A :class:`FramedServer` whose messages end in ``terminator`` (each
    given with it)."""

    terminator = b"\n"

    def frame_length(self, buf):
        i = buf.find(self.terminator)
        return None if i < 0 else i + len(self.terminator)


class SmtpServer(LineServer):
    """A tiny SMTP server: records every command it executes (lines
    outside DATA) and every message body."""

    greeting = b"220 mx.example.com ESMTP\r\n"

    def __init__(self, log):
        super().__init__()
        self.log = log
        self.in_data = False
        self.body = bytearray()

    def message(self, conn, line):
        if self.in_data:
            if line.rstrip(b"\r\n") == b".":
                self.in_data = False
                self.log.append(("BODY", bytes(self.body)))
                self.body = bytearray()
                conn.send(b"250 2.0.0 queued\r\n")
            else:
                self.body += line
            return
        verb = line.split(b" ", 1)[0].strip().upper()
        self.log.append(("CMD", verb.decode("latin-1")))
        if verb == b"DATA":
            self.in_data = True
            conn.send(b"354 go ahead\r\n")
        elif verb == b"QUIT":
            conn.send(b"221 bye\r\n")
        elif verb in (b"HELO", b"EHLO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            conn.send(b"250 ok\r\n")
        else:
            conn.send(b"500 unknown command\r\n")


def smtp_server(log):
    return lambda: SmtpServer(log)


class Recorder:
    """An application that only records what it got."""

    def __init__(self):
        self.data = bytearray()

    def connected(self, conn):
        pass

    def received(self, conn, data):
        self.data += data


class FtpServer(LineServer):
    """A tiny FTP control channel: records the verbs it executes; PASV
    answers with ``pasv`` (address, port) of the server; ``lpsv_reply``
    makes it answer PASV with a 228 (RFC 1639) reply instead."""

    greeting = b"220 ftp ready\r\n"

    def __init__(self, log, pasv=("10.10.10.25", 50000), lpsv_reply=False):
        super().__init__()
        self.log = log
        self.pasv = pasv
        self.lpsv_reply = lpsv_reply

    def message(self, conn, line):
        verb = line.split(b" ", 1)[0].strip().upper().decode("latin-1")
        self.log.append((verb, line.strip().decode("latin-1")))
        a, p = self.pasv
        nums = a.split(".") + [str(p >> 8), str(p & 255)]
        if verb == "USER":
            conn.send(b"331 password please\r\n")
        elif verb == "PASS":
            conn.send(b"230 logged in\r\n")
        elif verb == "PASV" and self.lpsv_reply:
            conn.send(("228 Entering Long Passive Mode (4,4,%s,2,%s,%s)\r\n"
                       % (",".join(a.split(".")), p >> 8, p & 255)).encode())
        elif verb == "PASV":
            conn.send(("227 Entering Passive Mode (%s)\r\n" % ",".join(nums)).encode())
        elif verb in ("PORT", "EPRT", "LPRT", "LPSV", "TYPE", "NOOP"):
            conn.send(b"200 ok\r\n")
        else:
            conn.send(b"500 unknown\r\n")


def ftp_server(log, **kw):
    return lambda: FtpServer(log, **kw)
