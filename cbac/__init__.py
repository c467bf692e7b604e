"""cbac: a stateful firewall appliance modelled on Cisco IOS Firewall CBAC."""

__version__ = "0.1.0"
