"""SIP inspection end to end in the namespace lab with a real UA pair
(Debian's ``sip-tester``, i.e. SIPp): ``ip inspect name IN-OUT sip`` added
to the seed (PAT for the inside, ACL 101 admits no UDP from the outside).

A SIPp UAS on the outside host (172.22.1.1:5060, media on 6000) answers
a SIPp UAC on the inside host (10.10.10.2:5060) that announces its media
on 10.10.10.2:7000; after the ACK the UAS plays an RTP stream (the
package's g711a.pcap) to the media address of the offer.  The call
completes only if the INVITE's Via/Contact/SDP were rewritten to the PAT
address (the UAS answers to the Via), and the UAS's RTP reaches the UAC
only through the RTP pinhole opened from the 200 OK's SDP (the ACL drops
any other UDP).  After the BYE the media channels are closed."""

import os
import shutil
import time

from twisted.trial import unittest

from tests.labrun import LabCase, seed_variant, skip_reason, wait_for

SIPP = shutil.which("sipp")
PCAP = "/usr/share/sip-tester/g711a.pcap"

#: the seed with SIP inspection added to the inside's rule
SIP_RULE = ("ip inspect name IN-OUT udp\n",
            "ip inspect name IN-OUT udp\nip inspect name IN-OUT sip audit-trail on\n")
CONFIG = seed_variant(replace=[SIP_RULE])


def _send(lines, retrans=False):
    """A SIPp <send> of one message: its lines (an empty one between the
    headers and the body) in CDATA, indented as in SIPp's own scenarios."""
    return ('  <send%s>\n    <![CDATA[\n\n' % (' retrans="500"' if retrans else "")
            + "".join("      %s\n" % ln if ln else "\n" for ln in lines)
            + "\n    ]]>\n  </send>\n")


def _scenario(name, steps):
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
            '<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
            '<scenario name="%s">\n%s</scenario>\n' % (name, "".join(steps)))


#: the offer (UAC) and the answer (UAS): one PCMA stream on SIPp's media port
SDP = ["v=0",
       "o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]",
       "s=-",
       "c=IN IP[media_ip_type] [media_ip]",
       "t=0 0",
       "m=audio [media_port] RTP/AVP 8",
       "a=rtpmap:8 PCMA/8000"]


def _request(method, cseq, to_tag="", extra=(), body=()):
    """A UAC request in the dialog (``to_tag``: SIPp's [peer_tag_param])."""
    return (["%s sip:[service]@[remote_ip]:[remote_port] SIP/2.0" % method,
             "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
             "From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]",
             "To: [service] <sip:[service]@[remote_ip]:[remote_port]>" + to_tag,
             "Call-ID: [call_id]",
             "CSeq: %s" % cseq,
             "Contact: sip:sipp@[local_ip]:[local_port]",
             "Max-Forwards: 70"]
            + list(extra)
            + (["Content-Type: application/sdp", "Content-Length: [len]", ""] + list(body)
               if body else ["Content-Length: 0"]))


def _response(status, to_tag=True, body=()):
    """A UAS response to the last request (``to_tag``: the UAS's tag added)."""
    return (["SIP/2.0 %s" % status,
             "[last_Via:]",
             "[last_From:]",
             "[last_To:]" + (";tag=[pid]SIPpTag01[call_number]" if to_tag else ""),
             "[last_Call-ID:]",
             "[last_CSeq:]",
             "Contact: <sip:[local_ip]:[local_port];transport=[transport]>"]
            + (["Content-Type: application/sdp", "Content-Length: [len]", ""] + list(body)
               if body else ["Content-Length: 0"]))


#: INVITE with the offer, ACK, four seconds of the call, BYE
UAC = _scenario("cbac UAC with media", [
    _send(_request("INVITE", "1 INVITE", extra=["Subject: cbac lab"], body=SDP), retrans=True),
    '  <recv response="100" optional="true"></recv>\n'
    '  <recv response="180" optional="true"></recv>\n'
    '  <recv response="200" rtd="true"></recv>\n',
    _send(_request("ACK", "1 ACK", to_tag="[peer_tag_param]")),
    '  <pause milliseconds="4000"/>\n',
    _send(_request("BYE", "2 BYE", to_tag="[peer_tag_param]"), retrans=True),
    '  <recv response="200"></recv>\n'])

#: 180, 200 with the answer, the pcap's RTP after the ACK, 200 to the BYE
UAS = _scenario("cbac UAS with media", [
    '  <recv request="INVITE"></recv>\n',
    _send(_response("180 Ringing")),
    _send(_response("200 OK", body=SDP), retrans=True),
    '  <recv request="ACK"></recv>\n'
    '  <nop>\n'
    '    <action>\n'
    '      <exec play_pcap_audio="%(pcap)s"/>\n'
    '    </action>\n'
    '  </nop>\n'
    '  <recv request="BYE"></recv>\n',
    _send(_response("200 OK", to_tag=False)),
    '  <timewait milliseconds="4000"/>\n'])


class SipLabTests(LabCase, unittest.TestCase):
    skip = skip_reason() or (None if SIPP and os.path.exists(PCAP)
                             else "sipp (Debian sip-tester, requirements-apt-test.txt) is not installed")
    config = CONFIG
    timeout = 120

    @classmethod
    def setUpLab(cls):
        env = cls.env
        cls.dir = os.path.join(env.tmp, "sipp")
        os.makedirs(cls.dir)
        cls.scenario = os.path.join(cls.dir, "uac.xml")
        with open(cls.scenario, "w") as f:
            f.write(UAC)
        uas = os.path.join(cls.dir, "uas.xml")
        with open(uas, "w") as f:
            f.write(UAS % {"pcap": PCAP})
        env.server("out", [SIPP, "-sf", uas, "-i", "172.22.1.1", "-p", "5060",
                           "-t", cls.transport,
                           "-mi", "172.22.1.1", "-mp", "6000", "-nostdin",
                           "-trace_err", "-error_file", os.path.join(cls.dir, "uas-err.log")],
                   cwd=cls.dir)
        time.sleep(1)

    sip = True
    transport = "u1"             # SIPp: UDP, one socket
    me = "172.22.1.16"           # the UAC as the UAS sees it (PAT)

    def check_media(self, got, sent):
        # the UAS sent its RTP to the address in the rewritten SDP (the PAT
        # address), and the pinhole let it in to the UAC's real port
        self.assertGreater(len(sent), 20, sent[:5])
        self.assertTrue(all("> %s.7000" % self.me in ln for ln in sent), sent[:5])
        self.assertGreater(len(got), 20, (len(sent), got[:5]))
        self.assertTrue(all("> 10.10.10.2.7000" in ln for ln in got), got[:5])

    def test_call_with_media_through_pat(self):
        cap_in = self.env.capture("in", "eth0", "udp and src host 172.22.1.1 and dst port 7000")
        cap_out = self.env.capture("out", "eth0", "udp and dst port 7000")
        r = self.env.exec("in", [SIPP, "172.22.1.1:5060", "-sf", self.scenario, "-m", "1",
                                 "-t", self.transport,
                                 "-i", "10.10.10.2", "-p", "5060", "-mi", "10.10.10.2",
                                 "-mp", "7000", "-timeout", "40s", "-nostdin",
                                 "-trace_err", "-error_file", os.path.join(self.dir, "uac-err.log")],
                          timeout=60, cwd=self.dir)
        got = cap_in.stop()
        sent = cap_out.stop()
        err = ""
        for name in ("uac-err.log", "uas-err.log"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p) as f:
                    err += f.read()[-2000:]
        self.assertEqual(r.returncode, 0, (r.stdout[-1500:], r.stderr[-1500:], err,
                                           self.env.log()[-3000:]))
        self.check_media(got, sent)
        if not self.sip:
            return
        # the BYE closed the media channels; the audit trail names them
        out = {}

        def gone():
            out["s"] = self.env.console("show ip inspect sessions").stdout
            return "sip-rtp" not in out["s"]
        self.assertTrue(wait_for(gone, 5, 0.5), out.get("s"))
        log = self.env.log()
        self.assertIn("Start sip session", log)
        self.assertIn("Start sip-rtp session", log)


class SipLabWithoutSipInspection(SipLabTests):
    """The same call with the seed's generic ``udp`` inspection only: the
    signalling passes (the UAC sends first from its SIP port), but the SDP
    keeps the inside address, so the UAS's RTP goes to 10.10.10.2 and never
    arrives: what the SIP inspector's rewrite and pinhole fix."""

    config = seed_variant()
    sip = False

    def check_media(self, got, sent):
        self.assertEqual(got, [])
        self.assertFalse(any("> 172.22.1.16.7000" in ln for ln in sent), sent[:5])


class SipLabTcpTests(SipLabTests):
    """The same call with SIP over TCP (SIPp ``-t t1``): the INVITE and the
    200 OK grow or shrink under PAT on a real TCP connection (sequence
    numbers moved by the stream engine), the SDP carried over TCP opens
    the UDP media pinhole."""

    transport = "t1"


class SipLabNoNatTests(SipLabTests):
    """The same call without NAT (the seed's PAT rule removed): nothing is
    rewritten, the UAS's RTP reaches 10.10.10.2 through the pinhole."""

    config = seed_variant(replace=[
        SIP_RULE, ("ip nat inside source list 1 interface Ethernet2/0 overload\n", "")])
    me = "10.10.10.2"
