"""Packets the session table makes: the RSTs that reset both ends of a TCP
session, and the segments the stream engine re-emits.

Pure functions of a session (or a packet): they build IPv4 packets
(``bytearray``) and send nothing; the session table hands them to its
injected ``send`` callable.
"""

from __future__ import annotations

from cbac.inspect.api import CLIENT, SERVER
from cbac.inspect.tcp import M32, SYN_RECV, build_tcp, fix_ip_header, fix_tcp_checksum
from cbac.packet.view import ACK, FIN, RST


def session_rsts(s):
    """The RSTs that reset both ends of TCP session ``s`` (each as the end
    receives it: departure form, acceptable sequence numbers)."""
    t = s.tcp
    st = s.stream
    out = []
    cs, cd, csp, cdp = s.c_out
    ss, sd, ssp, sdp = s.s_out
    if st is not None and st.dirs[SERVER].isn is not None:
        ack_s = st.ack_for(SERVER)
        ack_c = st.ack_for(CLIENT)
        for seq in st.rst_seqs(CLIENT):
            out.append(build_tcp(cs, cd, csp, cdp, seq, ack_s, RST | ACK))
        for seq in st.rst_seqs(SERVER):
            out.append(build_tcp(ss, sd, ssp, sdp, seq, ack_c, RST | ACK))
        return out
    if t.state >= SYN_RECV:
        out.append(build_tcp(cs, cd, csp, cdp, t.end0, t.end1, RST | ACK))
        out.append(build_tcp(ss, sd, ssp, sdp, t.end1, t.end0, RST | ACK))
    else:
        out.append(build_tcp(cs, cd, csp, cdp, t.end0, 0, RST))
        out.append(build_tcp(ss, sd, ssp, sdp, 0, t.end0, RST | ACK))
    return out


def clone_segment(pkt, seq, data, fin):
    """A copy of TCP segment ``pkt`` (headers as they leave) carrying
    ``data`` at ``seq``, with or without FIN: the stream engine's extra
    segments."""
    frame = pkt.frame
    l3 = pkt.l3
    p = pkt.payload
    out = bytearray(frame[l3:p])
    out += data
    l4 = pkt.l4 - l3
    out[l4 + 4:l4 + 8] = (seq & M32).to_bytes(4, "big")
    if fin:
        out[l4 + 13] |= FIN
    else:
        out[l4 + 13] &= ~FIN & 0xFF
    fix_ip_header(out, 0, pkt.ihl, len(out))
    fix_tcp_checksum(out, 0, l4, len(out), False)
    return out


__all__ = ["session_rsts", "clone_segment"]
