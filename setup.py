"""cbac: a CBAC-style stateful firewall appliance on Twisted."""
from setuptools import setup

setup(
    name="cbac",
    version="0.1.0",
    description="Stateful firewall appliance modelled on Cisco IOS Firewall CBAC",
    license="MIT",
    python_requires=">=3.11",
    packages=[
        "cbac",
        "cbac.config",
        "cbac.packet",
        "cbac.acl",
        "cbac.nat",
        "cbac.inspect",
        "cbac.dataplane",
        "cbac.console",
        "cbac.log",
        "cbac.continuity",
        "cbac.privsep",
        "cbac.mgmt",
        "twisted.plugins",
    ],
    package_data={"twisted.plugins": ["cbac_plugin.py"],
                  # the kernel fast path (built by make bpf / debian/rules)
                  "cbac.dataplane": ["bpf/fastpath.bpf.c", "bpf/fastpath.bpf.o"]},
    install_requires=[
        "twisted>=22.4",
        "zope.interface",
        "pyopenssl",
        "service-identity",
        "cryptography",
        "bcrypt",
    ],
    extras_require={
        "test": ["hypothesis", "scapy", "aiosmtpd", "pyftpdlib", "google-re2"],
        "re2": ["google-re2"],
    },
    entry_points={
        "console_scripts": [
            "cbac-replay = cbac.replay:main",
        ],
    },
)
