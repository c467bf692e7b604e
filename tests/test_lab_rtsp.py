"""RTSP inspection end to end in the namespace lab with a real server and
client (Debian's GStreamer: gst-rtsp-server through python3-gi on the
outside host, 172.22.1.1:554; ``gst-launch-1.0 rtspsrc protocols=udp`` on
the inside host): ``ip inspect name IN-OUT rtsp`` in place of the seed's
``udp`` line (PAT for the inside; ACL 101 admits no UDP from the outside).  The audio stream
arrives over UDP only through the RTP pinhole the SETUP exchange opened
(a twin class without rtsp inspection shows it does not), and the
client's TEARDOWN closes the media channels."""

import os
import shutil
import sys

from twisted.trial import unittest

from tests.labrun import LabCase, seed_variant, skip_reason, wait_for

GST = shutil.which("gst-launch-1.0")
SYS_PYTHON = "/usr/bin/python3"

# Without the seed's generic ``udp`` line: rtspsrc sends a packet from its
# RTP/RTCP ports to the server's first (NAT hole punching), which generic
# UDP inspection would answer for; here only the rtsp pinholes can.
CONFIG = seed_variant(replace=[("ip inspect name IN-OUT udp\n",
                                "ip inspect name IN-OUT rtsp audit-trail on\n")])

SERVER = r"""
import gi, sys
gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
Gst.init(None)
srv = GstRtspServer.RTSPServer()
srv.set_address("172.22.1.1")
srv.set_service("554")
f = GstRtspServer.RTSPMediaFactory()
f.set_launch("( audiotestsrc is-live=true ! audioconvert ! audioresample ! "
             "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay0 pt=0 )")
f.set_shared(True)
f.set_protocols(GstRtsp.RTSPLowerTrans.UDP)
srv.get_mount_points().add_factory("/test", f)
srv.attach(None)
print("READY", flush=True)
GLib.MainLoop().run()
"""


def _gst_ok():
    if GST is None or not os.path.exists(SYS_PYTHON):
        return False
    import subprocess
    r = subprocess.run([SYS_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                       capture_output=True)
    return r.returncode == 0


class RtspLabTests(LabCase, unittest.TestCase):
    skip = skip_reason() or (None if _gst_ok() else
                             "GStreamer RTSP (gir1.2-gst-rtsp-server-1.0, gstreamer1.0-tools, "
                             "requirements-apt-test.txt) is not installed")
    config = CONFIG
    timeout = 120
    rtsp = True

    @classmethod
    def setUpLab(cls):
        cls.env.server("out", [SYS_PYTHON, "-c", SERVER])

    def test_udp_stream_through_pat(self):
        out = os.path.join(self.env.tmp, "audio-%s.raw" % type(self).__name__)
        got = {}

        def play():
            if os.path.exists(out):
                os.unlink(out)
            r = self.env.exec("in", ["timeout", "-s", "INT", "8", GST, "-e", "rtspsrc",
                                     "location=rtsp://172.22.1.1:554/test", "protocols=udp",
                                     "latency=0", "!", "rtppcmudepay", "!", "filesink",
                                     "location=" + out], timeout=30)
            got["r"] = r
            got["size"] = os.path.getsize(out) if os.path.exists(out) else 0
            if self.rtsp:
                return got["size"] > 0
            return "Sent PLAY request" in r.stdout     # the control exchange went through
        # the server (GStreamer under python3-gi) may take long to start on a
        # loaded machine: tries for up to 45 s
        wait_for(play, 45, 0.5)
        r = got["r"]
        if not self.rtsp:
            self.assertIn("Sent PLAY request", r.stdout)
            self.assertEqual(got["size"], 0, r.stdout[-1000:])
            return
        # 8000 bytes of mu-law per second for several seconds
        self.assertGreater(got["size"], 8000, (r.stdout[-1500:], r.stderr[-1500:],
                                               self.env.log()[-2000:]))
        log = self.env.log()
        self.assertIn("Start rtsp session", log)
        self.assertIn("Start rtsp-rtp session", log)
        out_s = {}

        def gone():
            out_s["s"] = self.env.console("show ip inspect sessions").stdout
            return "rtsp-rtp" not in out_s["s"]
        self.assertTrue(wait_for(gone, 10, 0.5), out_s.get("s"))


class RtspLabWithoutRtspInspection(RtspLabTests):
    """The same stream with the seed's generic tcp inspection only (no udp
    line, as in RtspLabTests): the SETUP succeeds, but no UDP media gets in."""

    config = seed_variant(replace=[("ip inspect name IN-OUT udp\n", "")])
    rtsp = False


class RtspLabNoNatTests(RtspLabTests):
    """The same stream without NAT (the seed's PAT rule removed)."""

    config = seed_variant(replace=[("ip inspect name IN-OUT udp\n",
                                    "ip inspect name IN-OUT rtsp audit-trail on\n"),
                                   ("ip nat inside source list 1 interface Ethernet2/0 overload\n", "")])
