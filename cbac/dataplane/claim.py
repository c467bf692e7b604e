"""cbac takes its data ports from the kernel at start and gives them back.

The kernel of the machine cbac runs on must not see the data ports'
traffic: with an address on a port it answers ARP and ping and resets the
connections cbac translates (PAT), with IPv6 on it sends router
solicitations, and it would forward a second time (reference
dataplane.md, section 8).  At start, for each data port, cbac

1. adds an nftables ``netdev`` ingress chain with ``policy drop`` for it,
   in the table ``netdev cbac_ports`` (one chain per device, so several
   cbac instances can share the table; AF_PACKET sees every frame before
   that hook, the kernel's stack none);
2. removes the kernel's IPv4 and IPv6 addresses from it (the routes
   through it go with them);
3. turns IPv6 off on it (``net.ipv6.conf.DEV.disable_ipv6=1``);
4. sets it administratively up;
5. turns GRO (ingress) and TSO/GSO (egress) on, so bulk TCP passes as
   64 KiB super-frames.

What it found is written to ``STATE_DIR/ports-claimed.json`` before
anything is changed, and put back when cbac stops (addresses, the routes
through the port that were not the kernel's own, the sysctl, the link
state, the offloads; the chains are deleted, and the table with the last).  After a crash, the next start
finds the file and keeps the original state from it (claiming is
idempotent: the table is replaced, not added twice), so the stop after
that still restores what the operator had; ``python -m
cbac.dataplane.claim release STATE_DIR`` restores without starting cbac.

Steps 1 and 2 are what keeps the kernel out: if either fails, cbac does
not start (:class:`ClaimError`).  The others only log a warning.
``--no-claim-ports`` leaves all of it to the operator (docs/appliance.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.logger import Logger

log = Logger(namespace="cbac.ports")

TABLE = "cbac_ports"
STATE_FILE = "ports-claimed.json"
OFFLOADS = (("generic-receive-offload", "gro"), ("tcp-segmentation-offload", "tso"),
            ("generic-segmentation-offload", "gso"))


class ClaimError(Exception):
    """A port could not be taken from the kernel."""


def _run(argv, input=None, timeout=10.0):
    """``(returncode, stdout, stderr)``; returncode ``None`` if it cannot run."""
    try:
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return None, "", str(e)
    return r.returncode, r.stdout, r.stderr


def _sysctl_path(device):
    return "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % device


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _write(path, value):
    try:
        with open(path, "w") as f:
            f.write(value)
        return None
    except OSError as e:
        return str(e)


def chain_name(device) -> str:
    """The chain of one device: one per device in the shared table, so two
    cbac instances on one machine (other ports) never undo each other."""
    import hashlib
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in device)
    return "port_%s_%s" % (safe, hashlib.sha1(device.encode()).hexdigest()[:6])


def nft_ruleset(devices) -> str:
    """Adds the chains that hide ``devices`` from the kernel, in one
    transaction; idempotent (an existing chain of a device is replaced)."""
    lines = ["add table netdev %s" % TABLE]
    for dev in devices:
        name = chain_name(dev)
        lines.append("add chain netdev %s %s" % (TABLE, name))
        lines.append("delete chain netdev %s %s" % (TABLE, name))
        lines.append('add chain netdev %s %s { type filter hook ingress device "%s" priority -500;'
                     ' policy drop; }' % (TABLE, name, dev.replace('"', "")))
    return "\n".join(lines) + "\n"


class PortClaim:
    """Claim and release a set of devices (see the module docstring).

    ``run(argv, input=None)`` -> (code, stdout, stderr), ``read(path)`` and
    ``write(path, value)`` are injected for the unit tests."""

    def __init__(self, devices, state_dir=None, run=_run, read=_read, write=_write):
        self.devices = list(dict.fromkeys(devices))
        self.state_dir = state_dir
        self.run = run
        self.read = read
        self.write = write
        self.saved: dict = {}
        self.claimed = False
        self.warnings: list = []

    @property
    def state_path(self):
        return os.path.join(self.state_dir, STATE_FILE) if self.state_dir else None

    # --- what the port looks like now --------------------------------------

    def snapshot(self, device) -> dict:
        code, out, err = self.run(["ip", "-j", "addr", "show", "dev", device])
        if code != 0:
            raise ClaimError("%s: no such device (%s)" % (device, (err or out).strip()))
        try:
            info = json.loads(out)[0]
        except (ValueError, IndexError, TypeError) as e:
            raise ClaimError("%s: cannot read 'ip -j addr' output (%s)" % (device, e)) from e
        addrs = []
        for a in info.get("addr_info", []):
            if a.get("family") not in ("inet", "inet6") or not a.get("local"):
                continue
            if a.get("family") == "inet6" and a.get("scope") == "link":
                continue            # comes back by itself with IPv6
            addrs.append({k: a[k] for k in ("family", "local", "prefixlen", "broadcast", "scope", "label")
                          if k in a})
        routes = []
        code, out, _ = self.run(["ip", "-j", "-4", "route", "show", "dev", device])
        if code == 0:
            try:
                for r in json.loads(out or "[]"):
                    if r.get("protocol") == "kernel":
                        continue    # comes back with the address
                    routes.append({k: r[k] for k in ("dst", "gateway", "protocol", "metric", "prefsrc", "scope")
                                   if k in r})
            except (ValueError, TypeError, AttributeError):
                pass
        offloads = {}
        code, out, _ = self.run(["ethtool", "-k", device])
        if code == 0:
            for line in out.splitlines():
                name, _, value = line.partition(":")
                for long_name, short in OFFLOADS:
                    if name.strip() == long_name and value.split():
                        offloads[short] = value.split()[0]
        return {
            "up": "UP" in info.get("flags", []),
            "addresses": addrs,
            "routes": routes,
            "disable_ipv6": self.read(_sysctl_path(device)),
            "offloads": offloads,
        }

    # --- claim / release ---------------------------------------------------

    def _load_state(self):
        path = self.state_path
        if path is None or not os.path.exists(path):
            return {}
        try:
            with open(path) as f:
                data = json.load(f)
            return dict(data.get("devices", {}))
        except (OSError, ValueError, AttributeError) as e:
            self._warn("cannot read %s (%s); the ports' earlier state is lost" % (path, e))
            return {}

    def _save_state(self):
        path = self.state_path
        if path is None:
            return
        tmp = path + ".tmp"
        try:
            os.makedirs(self.state_dir, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"version": 1, "table": TABLE, "devices": self.saved}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            self._warn("cannot save the ports' state to %s (%s); a crash would leave them claimed"
                       % (path, e))

    def _warn(self, text):
        self.warnings.append(text)
        log.warn("{text}", text=text)

    def claim(self):
        """Take the ports.  Raises :class:`ClaimError` when the kernel
        cannot be kept out (nothing is left half-claimed then)."""
        earlier = self._load_state()
        if earlier:
            log.info("ports were claimed by an earlier run that did not stop cleanly: "
                     "keeping their original state from it ({devices})",
                     devices=", ".join(sorted(earlier)))
        self.saved = {}
        for dev in self.devices:
            self.saved[dev] = earlier[dev] if dev in earlier else self.snapshot(dev)
        # an earlier run's devices that are no longer data ports: give back
        for dev, state in earlier.items():
            if dev not in self.saved:
                self.saved[dev] = state
        self._save_state()
        try:
            code, out, err = self.run(["nft", "-f", "-"], input=nft_ruleset(self.devices))
            if code != 0:
                raise ClaimError("nftables: cannot add the ingress drop chains (%s)" % (err or out).strip())
            self.claimed = True
            for dev in self.devices:
                code, out, err = self.run(["ip", "addr", "flush", "dev", dev])
                if code != 0:
                    raise ClaimError("%s: cannot remove the kernel's addresses (%s)" % (dev, (err or out).strip()))
        except ClaimError:
            self.release()
            raise
        for dev in self.devices:
            if self.saved[dev].get("disable_ipv6") not in (None, "1"):
                e = self.write(_sysctl_path(dev), "1")
                if e:
                    self._warn("%s: cannot disable IPv6 (%s)" % (dev, e))
            code, out, err = self.run(["ip", "link", "set", "dev", dev, "up"])
            if code != 0:
                self._warn("%s: cannot set the device up (%s)" % (dev, (err or out).strip()))
            want = [x for _, short in OFFLOADS for x in (short, "on")
                    if self.saved[dev].get("offloads", {}).get(short) == "off"]
            if want:
                code, out, err = self.run(["ethtool", "-K", dev] + want)
                if code != 0:
                    self._warn("%s: cannot turn on %s (%s)" % (dev, " ".join(want[::2]), (err or out).strip()))
        for dev in self.devices:
            log.info("{dev}: claimed for cbac (nftables netdev {table} drop chain, kernel addresses"
                     " removed, IPv6 off, GRO/TSO on)", dev=dev, table=TABLE)

    def release(self):
        """Put back what :meth:`claim` changed (never raises)."""
        saved = self.saved or self._load_state()
        problems = []
        self.detach_fastpath(saved)
        for dev, state in saved.items():
            problems += self._restore_device(dev, state)
        code, out, err = self.run(["nft", "list", "table", "netdev", TABLE])
        if code == 0:
            mine = [chain_name(dev) for dev in saved]
            script = "".join("delete chain netdev %s %s\n" % (TABLE, c) for c in mine if c in out.split())
            if script:
                code, out2, err = self.run(["nft", "-f", "-"], input=script)
                if code != 0:
                    problems.append("cannot delete the nftables chains %s (%s)" % (
                        ", ".join(mine), (err or out2).strip()))
            code, out, err = self.run(["nft", "list", "table", "netdev", TABLE])
            if code == 0 and "chain " not in out:
                self.run(["nft", "delete", "table", "netdev", TABLE])    # the last instance out
        for p in problems:
            self._warn(p)
        if self.state_path and os.path.exists(self.state_path):
            try:
                os.unlink(self.state_path)
            except OSError:
                pass
        self.claimed = False
        if saved:
            log.info("ports given back to the kernel: {devices}", devices=", ".join(sorted(saved)))
        return problems

    def detach_fastpath(self, saved=None):
        """Remove the kernel fast path's tc program from the claimed ports,
        leaving them claimed (closed to the kernel).  If a crash left it
        attached it would go on forwarding the flows it was given, with no
        cbac left to time them out or clear them.  Its clsact qdisc goes
        with it, as the fast path's own detach does; none there is an
        error, ignored.  Returns the devices."""
        saved = saved if saved is not None else (self.saved or self._load_state())
        for dev in saved:
            self.run(["tc", "qdisc", "del", "dev", dev, "clsact"])
        return sorted(saved)

    def _restore_device(self, dev, state):
        problems = []
        ok = lambda r: r[0] == 0  # noqa: E731
        offloads = state.get("offloads", {})
        back = [x for _, short in OFFLOADS for x in (short, "off") if offloads.get(short) == "off"]
        if back and not ok(self.run(["ethtool", "-K", dev] + back)):
            problems.append("%s: cannot restore offloads %s" % (dev, " ".join(back)))
        v6 = state.get("disable_ipv6")
        if v6 is not None and self.read(_sysctl_path(dev)) not in (None, v6):
            e = self.write(_sysctl_path(dev), v6)
            if e:
                problems.append("%s: cannot restore disable_ipv6=%s (%s)" % (dev, v6, e))
        if state.get("up") is False:
            self.run(["ip", "link", "set", "dev", dev, "down"])
        for a in state.get("addresses", []):
            argv = ["ip", "-6" if a.get("family") == "inet6" else "-4", "addr", "replace",
                    "%s/%s" % (a["local"], a.get("prefixlen", 32)), "dev", dev]
            if a.get("broadcast"):
                argv += ["broadcast", a["broadcast"]]
            if a.get("scope") and a["scope"] != "global":
                argv += ["scope", a["scope"]]
            if a.get("label") and a["label"] != dev:
                argv += ["label", a["label"]]
            r = self.run(argv)
            if not ok(r):
                problems.append("%s: cannot restore address %s/%s (%s)"
                                % (dev, a["local"], a.get("prefixlen"), (r[2] or r[1]).strip()))
        for rt in state.get("routes", []):
            argv = ["ip", "-4", "route", "replace", rt.get("dst", "default")]
            if rt.get("gateway"):
                argv += ["via", rt["gateway"]]
            argv += ["dev", dev]
            for key, word in (("protocol", "proto"), ("metric", "metric"), ("prefsrc", "src"),
                              ("scope", "scope")):
                if rt.get(key) not in (None, ""):
                    argv += [word, str(rt[key])]
            r = self.run(argv)
            if not ok(r):
                problems.append("%s: cannot restore route %s (%s)"
                                % (dev, rt.get("dst"), (r[2] or r[1]).strip()))
        return problems


def claim_service(claim, check=True):
    """A Twisted service: claim at start (then log what hostcheck still
    finds), release at stop.  ``claim=None``: only the checks
    (``--no-claim-ports``).  Started first, stopped last."""
    from twisted.application import service

    class _PortClaimService(service.Service):
        name = "port-claim"

        def __init__(self, devices):
            self.devices = devices

        def startService(self):
            service.Service.startService(self)
            if claim is not None:
                try:
                    claim.claim()
                except ClaimError as e:
                    log.critical("cannot take the data ports from the kernel: {error}"
                                 " (or run with --no-claim-ports and prepare them yourself)", error=e)
                    raise
            if check:
                _log_checks(self.devices)

        def stopService(self):
            service.Service.stopService(self)
            if claim is not None and claim.claimed:
                claim.release()

    return _PortClaimService


def _log_checks(bindings):
    try:
        from cbac.dataplane.hostcheck import check_device
    except ImportError:
        return
    for ifname, device in bindings.items():
        for warning in check_device(device):
            log.warn("{ifname} ({device}): {warning}", ifname=ifname, device=device, warning=warning)


def make_service(bindings, state_dir, claim_ports=True):
    """The service for ``bindings`` (IOS name -> device)."""
    claim = PortClaim(list(bindings.values()), state_dir) if claim_ports and bindings else None
    return claim_service(claim)(bindings)


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("release", "detach"):
        print("usage: python -m cbac.dataplane.claim release|detach STATE_DIR\n"
              "  release: give back the ports a cbac that did not stop cleanly left claimed\n"
              "  detach:  only remove the kernel fast path from them (they stay claimed)",
              file=sys.stderr)
        return 2
    c = PortClaim([], args[1])
    if not os.path.exists(c.state_path):
        print("%s: nothing to %s" % (c.state_path, args[0]))
        return 0
    if args[0] == "detach":
        devices = c.detach_fastpath()
        print("kernel fast path removed from %s" % (", ".join(devices) or "no port"))
        return 0
    problems = c.release()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
