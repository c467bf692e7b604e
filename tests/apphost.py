"""The appliance harness of the application-protocol tests (test_protocols,
test_sip, test_rtsp, test_pptp): a whole cbac on memory ports with
simulated Linux end hosts (tests/hosts.py), configured with one
inspection rule on the inside port.

* :func:`cbac_config`: ``ip inspect name IN-OUT ...`` lines applied
  inbound on the inside port ``Ethernet2/1``, ACL 101 denying everything
  from the outside, and PAT for the inside on ``172.22.1.16`` (``nat``)
  or no NAT;
* :func:`zbf_config`: the same traffic policy as a zone-based firewall:
  ``match protocol P`` in a LAN-WAN zone pair, nothing WAN-LAN, PAT;
* :class:`ApplianceCase`: a test case whose ``setUp`` builds the
  appliance from :meth:`~ApplianceCase.config` and the end hosts named in
  ``hosts``, with helpers for the exchanges the tests make (one UDP
  datagram or IP packet and what arrived of it, a TCP connection set up,
  a drop counter).
"""

from twisted.trial import unittest

from tests.hosts import INSIDE, INSIDE_CLIENT_IP, OUTSIDE, Net

REMOTE = "172.22.1.1"       # the outside host the inside talks to (the next hop)
GLOBAL = "172.22.1.16"      # the outside interface: the PAT address
EVE = "172.22.1.66"         # a third host outside

PAT_RULE = "ip nat inside source list 1 interface Ethernet2/0 overload"

_CBAC = """hostname cbac
{inspect}interface Ethernet2/0
 ip address 172.22.1.16 255.255.255.0
 ip access-group 101 in
{nat_out}
interface Ethernet2/1
 ip address 10.10.10.1 255.255.255.0
{nat_in}
 ip inspect IN-OUT in
ip route 0.0.0.0 0.0.0.0 172.22.1.1
{nat_rules}
access-list 1 permit 10.10.10.0 0.0.0.255
access-list 101 deny ip any any
end
"""

_ZBF = """hostname cbac
class-map type inspect match-any LAN-WAN
 match protocol %s
policy-map type inspect LAN-WAN-POLICY
 class type inspect LAN-WAN
  inspect
 class class-default
  drop
zone security LAN
zone security WAN
zone-pair security LAN-WAN source LAN destination WAN
 service-policy type inspect LAN-WAN-POLICY
interface Ethernet2/0
 ip address 172.22.1.16 255.255.255.0
 ip nat outside
 zone-member security WAN
interface Ethernet2/1
 ip address 10.10.10.1 255.255.255.0
 ip nat inside
 zone-member security LAN
ip route 0.0.0.0 0.0.0.0 172.22.1.1
ip nat inside source list 1 interface Ethernet2/0 overload
access-list 1 permit 10.10.10.0 0.0.0.255
end
"""


def cbac_config(inspect, nat=True):
    """The appliance with ``inspect`` (configuration lines, each ending in
    a newline: ``ip inspect name IN-OUT ...`` and global ``ip inspect``
    settings) applied inbound on the inside port; ACL 101 in on the
    outside port denies everything; ``nat``: PAT for 10.10.10.0/24 on the
    outside address."""
    if nat:
        return _CBAC.format(inspect=inspect, nat_out=" ip nat outside",
                            nat_in=" ip nat inside", nat_rules=PAT_RULE)
    return _CBAC.format(inspect=inspect, nat_out="", nat_in="", nat_rules="")


def zbf_config(protocol):
    """``match protocol <protocol>`` inspected from zone LAN (inside) to
    zone WAN (outside), everything else dropped, no WAN-LAN zone pair; PAT."""
    return _ZBF % protocol


class ApplianceCase(unittest.TestCase):
    """``setUp`` builds the appliance (``self.net``, a :class:`tests.hosts.Net`)
    from :meth:`config` and one simulated host per entry of ``hosts``
    (attribute name: (side, address, MAC number)); ``self.me`` is the
    inside client's address as the outside sees it.

    Subclasses set ``inspect`` (the lines for :func:`cbac_config`), or
    ``zbf`` (a protocol for :func:`zbf_config`), or override
    :meth:`config`; ``nat = False`` runs the same tests without NAT."""

    nat = True
    zbf = None
    inspect = None
    hosts = {"client": (INSIDE, INSIDE_CLIENT_IP, 2),
             "server": (OUTSIDE, REMOTE, 1)}

    def config(self):
        if self.zbf:
            return zbf_config(self.zbf)
        return cbac_config(self.inspect, self.nat)

    def setUp(self):
        self.net = Net(config=self.config())
        self.addCleanup(self.net.stop)
        for name, (side, ip, n) in self.hosts.items():
            setattr(self, name, self.net.host(side, ip, n))
        self.me = GLOBAL if self.nat else INSIDE_CLIENT_IP

    # -- exchanges --------------------------------------------------------------
    def udp(self, sender, dst, sport, dport, data, receiver):
        """``sender`` sends one datagram; the datagrams ``receiver`` got
        since, as ``(src, sport, dport, payload)``."""
        n = len(receiver.udp)
        sender.send_udp(dst, sport, dport, data)
        self.net.pump()
        return receiver.udp[n:]

    def ip(self, sender, packet, receiver):
        """``sender`` sends one IP packet (bytes); the packets ``receiver``
        got since (after reassembly)."""
        n = len(receiver.ip_packets)
        sender.send_ip(packet)
        self.net.pump()
        return receiver.ip_packets[n:]

    def connect(self, host, dst, dport, sport, app=None):
        """A TCP connection from ``host``, its handshake run (or refused)."""
        c = host.connect(dst, dport, sport=sport, app=app)
        self.net.pump()
        return c

    def drops(self, reason):
        """How many packets the sessions dropped for ``reason``."""
        return self.net.app.sessions.stats.drops.get(reason, 0)
