"""Start-up checks of a data port's Linux device.

cbac owns the data ports: it answers ARP, routes and translates.  The
kernel of the machine (or namespace) cbac runs in must stay out of the way,
otherwise it answers pings, sends RSTs for the NAT address or forwards
everything a second time (reference dataplane.md, gotchas 8 and 9).
:func:`check_device` returns one warning per problem (a sentence with the
fix in parentheses, without the device name); the daemon logs them at start.  Nothing here raises.

Run by hand in the firewall's namespace::

    python -m cbac.dataplane.hostcheck inside outside
"""

import json
import re
import shutil
import subprocess
import sys


def _run(argv, timeout=5.0):
    """``(returncode, stdout)``; ``(None, reason)`` if it cannot run."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    return r.returncode, r.stdout if r.returncode == 0 else (r.stderr or r.stdout)


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


_TABLE_RE = re.compile(r"^\s*table\s+(\S+)\s+(\S+)\s*\{")
_CHAIN_RE = re.compile(r"^\s*chain\s+(\S+)\s*\{")
_POLICY_DROP_RE = re.compile(r"\bpolicy\s+drop\s*;")
_DEVICE_RE = re.compile(r'hook\s+ingress\s+(?:device\s+"?([^";\s]+)"?|devices\s*=\s*\{([^}]*)\})')


def ingress_drop_devices(ruleset_text):
    """Devices that have an nftables ``netdev`` ingress chain with
    ``policy drop``, from ``nft list ruleset`` output."""
    found = set()
    family = None
    chain = None  # [devices, policy drop] of the chain being read
    depth = 0
    for line in ruleset_text.splitlines():
        if depth == 0:
            m = _TABLE_RE.match(line)
            if m:
                family = m.group(1)
        elif depth == 1:
            if _CHAIN_RE.match(line):
                chain = [set(), False]
        elif depth == 2 and chain is not None:
            d = _DEVICE_RE.search(line)
            if d:
                if d.group(1):
                    chain[0].add(d.group(1))
                else:
                    chain[0].update(x.strip().strip('"') for x in d.group(2).split(",") if x.strip())
            if _POLICY_DROP_RE.search(line):
                chain[1] = True
        depth = max(0, depth + line.count("{") - line.count("}"))
        if depth < 2 and chain is not None:
            if family == "netdev" and chain[1]:
                found.update(chain[0])
            chain = None
    return found


def check_device(device, run=_run, read=_read):
    """Warnings about ``device`` in the current network namespace (each a
    sentence without the device name, which the caller puts in front).

    - the device does not exist or is down;
    - it has kernel IPv4/IPv6 addresses (the kernel would answer ARP, ping,
      send RSTs for the NAT address);
    - IPv6 is not disabled on it (router solicitations, MLD, DAD noise);
    - ``net.ipv4.ip_forward`` is on (every packet forwarded twice);
    - no nftables ``netdev`` ingress ``policy drop`` chain for it (the
      kernel still sees every frame; AF_PACKET taps run before the hook);
    - GRO is off (performance hint: ``ethtool -K DEV gro on``).
    """
    warnings = []
    if shutil.which("ip") is None and run is _run:
        return ["cannot check the device: iproute2 ('ip') is not installed"]
    code, out = run(["ip", "-j", "addr", "show", "dev", device])
    if code != 0:
        return ["no such device in this network namespace (%s)" % (out or "").strip()]
    try:
        info = json.loads(out)[0]
    except (ValueError, IndexError, TypeError, KeyError):
        return ["cannot parse 'ip -j addr' output"]

    flags = info.get("flags", [])
    if "UP" not in flags:
        warnings.append("device is administratively down (ip link set %s up)" % device)
    elif "LOWER_UP" not in flags:
        warnings.append("device is up but has no carrier")

    addrs = [a for a in info.get("addr_info", []) if a.get("family") in ("inet", "inet6")]
    if addrs:
        warnings.append(
            "kernel addresses %s on a data port: the kernel will answer ARP/ping and reset connections"
            " (ip addr flush dev %s)"
            % (", ".join("%s/%s" % (a.get("local"), a.get("prefixlen")) for a in addrs), device)
        )

    v6 = read("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % device)
    if v6 is not None and v6 != "1":
        warnings.append("IPv6 is enabled on the device (sysctl -w net.ipv6.conf.%s.disable_ipv6=1)" % device)

    hidden = False
    code, out = run(["nft", "list", "ruleset"])
    if code is None:
        warnings.append("cannot check nftables (%s); the kernel may answer on this port" % out)
    elif code != 0:
        warnings.append("'nft list ruleset' failed (%s)" % (out or "").strip())
    elif device not in ingress_drop_devices(out):
        warnings.append(
            "no nftables netdev ingress drop chain: the kernel sees this port's traffic"
            " (nft add table netdev cbac; nft add chain netdev cbac %s"
            " '{ type filter hook ingress device \"%s\" priority -500; policy drop; }')" % (device, device)
        )
    else:
        hidden = True

    # with the drop chain the kernel never sees the port's packets to forward
    if not hidden and read("/proc/sys/net/ipv4/ip_forward") == "1":
        warnings.append("net.ipv4.ip_forward=1: the kernel forwards too (sysctl -w net.ipv4.ip_forward=0)")

    code, out = run(["ethtool", "-k", device])
    if code == 0 and re.search(r"^generic-receive-offload:\s*off", out, re.M):
        warnings.append("GRO is off; bulk TCP is faster with it on (ethtool -K %s gro on)" % device)
    return warnings


def main(argv=None):
    devices = sys.argv[1:] if argv is None else argv
    if not devices:
        print("usage: python -m cbac.dataplane.hostcheck DEVICE...", file=sys.stderr)
        return 2
    n = 0
    for dev in devices:
        for w in check_device(dev):
            print("%s: %s" % (dev, w))
            n += 1
    if n == 0:
        print("%s: no problems found" % ", ".join(devices))
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
