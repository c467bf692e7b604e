"""twistd plugin: ``twistd cbac -c /etc/cbac/router.conf``.

ServiceMaker imports ``cbac.tap`` lazily, so plugin discovery stays cheap.
"""
from twisted.application.service import ServiceMaker

cbac = ServiceMaker(
    "cbac",
    "cbac.tap",
    "Stateful firewall modelled on Cisco IOS Firewall CBAC.",
    "cbac",
)
