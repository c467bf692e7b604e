"""The namespace lab: the seed's topology in three network namespaces.

::

    cbac-in-X                       cbac-fw-X                         cbac-out-X
    eth0 10.10.10.2/24   <veth>  inside        outside   <veth>  eth0 172.22.1.1/24
         10.10.10.25/24          (Ethernet2/1) (Ethernet2/0)          172.22.1.2-5/24
    02:00:0a:0a:0a:02     02:00:0a:0a:0a:01    02:00:ac:16:01:10   02:00:ac:16:01:01
    default via 10.10.10.1                                         default via 172.22.1.16

Modes:

- ``"cbac"``: the fw namespace's kernel is isolated from the ports (no
  addresses, ``ip_forward=0``, IPv6 off, an nftables netdev ingress chain
  with ``policy drop`` on each port: AF_PACKET still sees every frame, the
  kernel nothing), GRO on at ingress; cbac does ARP, routing, NAT.
- ``"kernel"``: the benchmark reference.  The ports get 10.10.10.1/24 and
  172.22.1.16/24, ``ip_forward=1`` and nftables does what cbac does:
  conntrack, PAT on outside (masquerade), ``ct state established,related``
  return traffic, static NAT of 172.22.1.16:25 to 10.10.10.25:25.

Only namespaces this module creates (``cbac-{in,fw,out}-SUFFIX``) are
touched; the host's interfaces never are.  Usage from Python::

    with Lab(mode="kernel") as lab:
        lab.run("in", ["ping", "-c1", "172.22.1.1"], check=True)

From the shell: ``python -m cbac.lab {up,down,list,run,shell} ...``
(``--help``).
"""

import argparse
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

IN_MAC = "02:00:0a:0a:0a:02"
INSIDE_MAC = "02:00:0a:0a:0a:01"
OUTSIDE_MAC = "02:00:ac:16:01:10"
OUT_MAC = "02:00:ac:16:01:01"

INSIDE_GW = "10.10.10.1"
CLIENT_IP = "10.10.10.2"
MAIL_IP = "10.10.10.25"
OUTSIDE_IP = "172.22.1.16"
OUT_HOST_IP = "172.22.1.1"
OUT_EXTRA_IPS = ("172.22.1.2", "172.22.1.3", "172.22.1.4", "172.22.1.5")

CONSOLE_PORT = 2222
DEMO_WEB_PORT = 8080
PORT_ARGS = ("--port", "Ethernet2/1=inside", "--port", "Ethernet2/0=outside")

MODES = ("cbac", "kernel", "bare")

NFT_CBAC = """
table netdev cbac_lab {
    chain inside_ingress {
        type filter hook ingress device "inside" priority -500; policy drop;
    }
    chain outside_ingress {
        type filter hook ingress device "outside" priority -500; policy drop;
    }
}
"""

NFT_KERNEL = """
table ip cbac_lab {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "outside" ip daddr 172.22.1.16 tcp dport 25 dnat to 10.10.10.25:25
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "outside" masquerade
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "inside" oifname "outside" accept
        iifname "outside" oifname "inside" ct status dnat accept
    }
}
"""


class LabError(Exception):
    pass


def _ip_netns_available():
    """``None`` if the lab can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the namespace lab needs root (network namespaces, veth, nftables)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    try:
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return "'ip netns' does not work: %s" % (e,)
    if r.returncode != 0:
        return "'ip netns' does not work: %s" % r.stderr.decode(errors="replace").strip()
    return None


def unavailable_reason():
    """Why the lab cannot run on this machine, or ``None``."""
    reason = _ip_netns_available()
    if reason is None and shutil.which("nft") is None:
        reason = "nftables ('nft') is not installed"
    return reason


def list_labs():
    """Suffixes of the cbac labs that exist now (any owner)."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    suffixes = set()
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        for role in ("in", "fw", "out"):
            prefix = "cbac-%s-" % role
            if name.startswith(prefix):
                suffixes.add(name[len(prefix):])
    return sorted(suffixes)


class CbacProcess:
    """A cbac daemon started by :meth:`Lab.spawn_cbac`."""

    def __init__(self, popen, argv):
        self.popen = popen
        self.argv = argv

    @property
    def pid(self):
        return self.popen.pid

    def poll(self):
        return self.popen.poll()

    def wait(self, timeout=None):
        return self.popen.wait(timeout)

    def stop(self, timeout=5.0):
        """SIGTERM (twistd shuts down cleanly), SIGKILL after ``timeout``.
        Returns the exit status."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait()


class Lab:
    """The three-namespace lab (see the module docstring)."""

    def __init__(self, suffix=None, mode="cbac", gro=True):
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % (MODES,))
        if suffix is None:
            suffix = secrets.token_hex(3)
        # "cbac-out-" + suffix must fit a netns name comfortably; keep short.
        if not suffix or len(suffix) > 12 or not all(c.isalnum() or c in "_" for c in suffix):
            raise ValueError("lab suffix must be 1-12 letters/digits: %r" % (suffix,))
        self.suffix = suffix
        self.mode = mode
        self.gro = gro
        self.in_ns = "cbac-in-" + suffix
        self.fw_ns = "cbac-fw-" + suffix
        self.out_ns = "cbac-out-" + suffix
        self.namespaces = (self.in_ns, self.fw_ns, self.out_ns)
        self.is_up = False
        self._children = []

    # --- helpers -----------------------------------------------------------

    def ns(self, which):
        """Full namespace name from ``"in"``, ``"fw"``, ``"out"`` or a full name."""
        short = {"in": self.in_ns, "fw": self.fw_ns, "out": self.out_ns}
        if which in short:
            return short[which]
        if which in self.namespaces:
            return which
        raise ValueError("not a namespace of this lab: %r" % (which,))

    def argv(self, ns, argv):
        return ["ip", "netns", "exec", self.ns(ns)] + list(argv)

    def exec(self, ns, argv, **kw):
        """Run ``argv`` in namespace ``ns``; ``subprocess.run`` keywords;
        returns the ``CompletedProcess``."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(ns, argv), **kw)

    run = exec

    def sh(self, ns, script, **kw):
        """Run a shell script in namespace ``ns``."""
        return self.exec(ns, ["sh", "-ec", script], **kw)

    def popen(self, ns, argv, **kw):
        """Start a server in namespace ``ns`` (``subprocess.Popen``); it is
        stopped by :meth:`down` if still running."""
        p = subprocess.Popen(self.argv(ns, argv), **kw)
        self._children.append(p)
        return p

    def _must(self, argv, what):
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError("%s failed (%s): %s" % (what, " ".join(argv), (r.stderr or r.stdout).strip()))
        return r

    def _ip(self, ns, *args):
        return self._must(["ip", "-n", self.ns(ns)] + list(args), "ip " + " ".join(args))

    def _sysctl(self, ns, **values):
        script = "; ".join(
            "echo %s > /proc/sys/%s" % (v, k.replace("__", "/").replace(".", "/")) for k, v in values.items()
        )
        self._must(self.argv(ns, ["sh", "-ec", script]), "sysctl in %s" % ns)

    def _nft(self, ns, ruleset):
        r = subprocess.run(self.argv(ns, ["nft", "-f", "-"]), input=ruleset, capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError("nft in %s failed: %s" % (ns, r.stderr.strip()))

    # --- life cycle --------------------------------------------------------

    def up(self):
        """Create the lab (removing leftovers of the same suffix first).
        On failure everything created is removed again and the error raised."""
        self.down()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        self.is_up = True
        return self

    def _build(self):
        for ns in self.namespaces:
            self._must(["ip", "netns", "add", ns], "ip netns add")
            # "ip netns exec" bind-mounts /etc/netns/NS/resolv.conf: no DNS
            # server is reachable from the lab, so name lookups (Python's
            # http.server does a reverse lookup at start) fail at once
            # against 127.0.0.1 instead of waiting for the host's resolver.
            os.makedirs("/etc/netns/" + ns, exist_ok=True)
            with open("/etc/netns/%s/resolv.conf" % ns, "w") as f:
                f.write("# cbac lab: no DNS in the lab\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            # before any device exists, so no device ever gets an IPv6 address
            # (bare mode: the firewall's ports are left as Linux makes them)
            if self.mode == "bare" and ns == self.fw_ns:
                self._ip(ns, "link", "set", "lo", "up")
                continue
            self._sysctl(
                ns,
                **{
                    "net.ipv6.conf.all.disable_ipv6": 1,
                    "net.ipv6.conf.default.disable_ipv6": 1,
                },
            )
            self._ip(ns, "link", "set", "lo", "up")
        self._ip("fw", "link", "add", "inside", "address", INSIDE_MAC, "type", "veth",
                 "peer", "name", "eth0", "address", IN_MAC, "netns", self.in_ns)
        self._ip("fw", "link", "add", "outside", "address", OUTSIDE_MAC, "type", "veth",
                 "peer", "name", "eth0", "address", OUT_MAC, "netns", self.out_ns)

        self._ip("in", "addr", "add", CLIENT_IP + "/24", "dev", "eth0")
        self._ip("in", "addr", "add", MAIL_IP + "/24", "dev", "eth0")
        self._ip("in", "link", "set", "eth0", "up")
        self._ip("in", "route", "add", "default", "via", INSIDE_GW)

        self._ip("out", "addr", "add", OUT_HOST_IP + "/24", "dev", "eth0")
        for extra in OUT_EXTRA_IPS:
            self._ip("out", "addr", "add", extra + "/24", "dev", "eth0")
        self._ip("out", "link", "set", "eth0", "up")
        self._ip("out", "route", "add", "default", "via", OUTSIDE_IP)

        if self.mode == "cbac":
            self._sysctl("fw", **{"net.ipv4.ip_forward": 0})
            self._nft("fw", NFT_CBAC)
            if self.gro:
                self.set_gro(True)
        elif self.mode == "bare":
            self._build_bare()
        else:
            self._ip("fw", "addr", "add", INSIDE_GW + "/24", "dev", "inside")
            self._ip("fw", "addr", "add", OUTSIDE_IP + "/24", "dev", "outside")
            self._sysctl("fw", **{"net.ipv4.ip_forward": 1})
            self._nft("fw", NFT_KERNEL)
        self._ip("fw", "link", "set", "inside", "up")
        self._ip("fw", "link", "set", "outside", "up")
        self._wait_carrier()

    def _build_bare(self):
        """Bare mode: the firewall's ports as an ordinary Linux machine has
        them (kernel addresses, IPv6 on, no nftables, veth offloads as
        created, ip_forward 0): cbac takes them itself at start
        (cbac.dataplane.claim) and gives them back when it stops."""
        self._ip("fw", "addr", "add", INSIDE_GW + "/24", "dev", "inside")
        self._ip("fw", "addr", "add", OUTSIDE_IP + "/24", "dev", "outside")

    def _wait_carrier(self, timeout=5.0):
        """Wait until all four veth ends report carrier (linkwatch is lazy),
        so the first packet of a test is not lost."""
        ends = [("fw", "inside"), ("fw", "outside"), ("in", "eth0"), ("out", "eth0")]
        deadline = time.monotonic() + timeout
        while ends:
            ends = [
                (ns, dev)
                for ns, dev in ends
                if " state UP " not in subprocess.run(
                    ["ip", "-n", self.ns(ns), "-o", "link", "show", "dev", dev], capture_output=True, text=True
                ).stdout
            ]
            if ends and time.monotonic() > deadline:
                raise LabError("no carrier on %s after %.0f s" % (ends, timeout))
            if ends:
                time.sleep(0.02)

    def set_gro(self, on=True):
        """GRO on the firewall's ingress ports (``ethtool -K dev gro on``):
        the kernel hands AF_PACKET 64 KiB super-frames (reference, gotcha 3)."""
        if shutil.which("ethtool") is None:
            return False
        ok = True
        for dev in ("inside", "outside"):
            r = self.exec("fw", ["ethtool", "-K", dev, "gro", "on" if on else "off"])
            ok = ok and r.returncode == 0
        return ok

    def down(self):
        """Remove the lab: stop our processes in it, delete the namespaces
        (the veths go with them).  Idempotent; never raises."""
        for p in self._children:
            _terminate(p)
        self._children = []
        for ns in self.namespaces:
            try:
                r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
                pids = [int(x) for x in r.stdout.split() if x.isdigit()] if r.returncode == 0 else []
                # "ip netns exec NS ..." not yet inside NS (it would enter it
                # after it is gone and run on, detached)
                pids += [p for p in _entering(ns) if p not in pids]
                for pid in pids:
                    _kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 2.0
                while pids and time.monotonic() < deadline:
                    pids = [pid for pid in pids if _alive(pid)]
                    if pids:
                        time.sleep(0.02)
                for pid in pids:
                    _kill(pid, signal.SIGKILL)
                if os.path.exists("/run/netns/" + ns):
                    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
                shutil.rmtree("/etc/netns/" + ns, ignore_errors=True)
            except Exception:  # noqa: BLE001 - down always works
                pass
        self.is_up = False

    def exists(self):
        """Which of the lab's namespaces exist now."""
        return [ns for ns in self.namespaces if os.path.exists("/run/netns/" + ns)]

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()
        return False

    # --- cbac --------------------------------------------------------------

    def cbac_argv(self, config_path, extra_args=()):
        """``twistd -n --pidfile= cbac -c CONFIG --port ...`` with this
        Python (the venv's), run inside the fw namespace."""
        twistd = [sys.executable, "-c",
                  "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]
        return self.argv("fw", twistd + ["-n", "--pidfile=", "cbac", "-c", os.path.abspath(config_path)]
                         + list(PORT_ARGS) + list(extra_args))

    def spawn_cbac(self, config_path, extra_args=(), **popen_kw):
        """Start cbac in the fw namespace; returns a :class:`CbacProcess`
        (``stop()``, ``wait()``, ``poll()``)."""
        argv = self.cbac_argv(config_path, extra_args)
        p = subprocess.Popen(argv, **popen_kw)
        self._children.append(p)
        return CbacProcess(p, argv)

    # --- demo servers --------------------------------------------------------

    def start_demo(self, workdir):
        """Start the demo servers of ``run`` (logs and files in ``workdir``):
        a mail server on the inside (aiosmtpd on 10.10.10.25:25, published
        as 172.22.1.16:25 by the seed's static NAT), a web server
        (172.22.1.1:8080) and an anonymous FTP server (172.22.1.1:21) on the
        outside.  They are stopped by :meth:`down`.  Returns when all three
        accept connections; raises :class:`LabError` if one does not."""
        web = os.path.join(workdir, "www")
        ftp = os.path.join(workdir, "ftp")
        os.makedirs(web, exist_ok=True)
        os.makedirs(ftp, exist_ok=True)
        with open(os.path.join(web, "index.html"), "w") as f:
            f.write("<html><body>Hello from the outside web server %s</body></html>\n" % OUT_HOST_IP)
        with open(os.path.join(ftp, "hello.txt"), "w") as f:
            f.write("Hello from the outside FTP server %s\n" % OUT_HOST_IP)
        py = [sys.executable, "-u"]
        servers = [
            ("in", MAIL_IP, 25, "mail.log", py + ["-m", "aiosmtpd", "-n", "-l", "%s:25" % MAIL_IP]),
            ("out", OUT_HOST_IP, DEMO_WEB_PORT, "web.log",
             py + ["-m", "http.server", "-b", OUT_HOST_IP, "-d", web, str(DEMO_WEB_PORT)]),
            ("out", OUT_HOST_IP, 21, "ftp.log", py + ["-m", "pyftpdlib", "-i", OUT_HOST_IP, "-p", "21", "-d", ftp]),
        ]
        for ns, host, port, logname, argv in servers:
            with open(os.path.join(workdir, logname), "ab") as log:
                self.popen(ns, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
        for ns, host, port, logname, argv in servers:
            if not self.wait_listening(ns, host, port):
                raise LabError("demo server %s did not start (see %s)" % (
                    " ".join(argv[2:]), os.path.join(workdir, logname)))

    def wait_listening(self, ns, host, port, timeout=15.0):
        """Wait until something in ``ns`` accepts TCP connections on host:port."""
        script = ("import socket, sys, time\n"
                  "end = time.monotonic() + %r\n"
                  "while True:\n"
                  "    try:\n"
                  "        socket.create_connection((%r, %d), 1).close(); sys.exit(0)\n"
                  "    except OSError:\n"
                  "        if time.monotonic() > end: sys.exit(1)\n"
                  "        time.sleep(0.1)\n" % (timeout, host, port))
        try:
            return self.exec(ns, [sys.executable, "-c", script], timeout=timeout + 10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def describe(self, config_path=None, workdir=None):
        """How to use the lab (printed by ``python -m cbac.lab up/run``).
        With ``workdir`` (``run``) the demo servers are running.  Every
        command line works pasted into a root shell in any directory."""
        lab = "%s -m cbac.lab" % sys.executable
        running = workdir is not None
        user, password = _console_login(config_path) if config_path else (None, None)
        lines = [
            "cbac lab %s (mode %s)" % (self.suffix, self.mode),
            "  inside  host  %s: eth0 %s, %s (mail)  default via %s"
            % (self.in_ns, CLIENT_IP, MAIL_IP, INSIDE_GW),
            "  firewall      %s: inside (Ethernet2/1) %s, outside (Ethernet2/0) %s"
            % (self.fw_ns, INSIDE_GW if self.mode == "kernel" else "no address",
               OUTSIDE_IP if self.mode == "kernel" else "no address"),
            "  outside host  %s: eth0 %s (+ %s)  default via %s"
            % (self.out_ns, OUT_HOST_IP, ", ".join(OUT_EXTRA_IPS), OUTSIDE_IP),
            "",
        ]
        if running:
            lines += [
                "Demo servers (logs in %s):" % workdir,
                "  mail %s:25 (aiosmtpd) in %s, published as %s:25; received mail: %s"
                % (MAIL_IP, self.in_ns, OUTSIDE_IP, os.path.join(workdir, "mail.log")),
                "  web  http://%s:%d/ and ftp://%s/ (anonymous) in %s"
                % (OUT_HOST_IP, DEMO_WEB_PORT, OUT_HOST_IP, self.out_ns),
                "",
            ]
        lines += ["Traffic:", "  ip netns exec %s ping -c3 %s" % (self.in_ns, OUT_HOST_IP)]
        if not running:
            lines.append("  ip netns exec %s %s -m http.server -b %s -d /tmp %d &"
                         % (self.out_ns, sys.executable, OUT_HOST_IP, DEMO_WEB_PORT))
            lines.append("  ip netns exec %s %s -m aiosmtpd -n -l %s:25 &   # mail server"
                         % (self.in_ns, sys.executable, MAIL_IP))
        lines.append("  ip netns exec %s curl http://%s:%d/" % (self.in_ns, OUT_HOST_IP, DEMO_WEB_PORT))
        if running:
            lines.append("  ip netns exec %s curl ftp://%s/hello.txt" % (self.in_ns, OUT_HOST_IP))
        lines.append("  ip netns exec %s swaks --server %s --to user@example.com"
                     % (self.out_ns, OUTSIDE_IP))
        smtp_rules = _smtp_rules(config_path) if config_path else []
        if smtp_rules:
            lines += [
                "  # swaks connects to %s:25 (static NAT to the mail server %s), inspected by"
                % (OUTSIDE_IP, MAIL_IP),
                "  # 'ip inspect name %s smtp': as on IOS only RFC 821 commands pass, so EHLO"
                % smtp_rules[0],
                "  # reaches the server masked as 'xxxx' and is answered '500'; swaks falls back",
                "  # to HELO and the mail goes through.  With 'esmtp' instead of 'smtp', EHLO and",
                "  # the ESMTP extensions pass (docs/smtp.md)%s" % (
                    "; this applies that variant of the file:" if running else "."),
            ]
            if running:
                lines.append("  ip netns exec %s ssh -p %d %s@127.0.0.1 configure replace %s force"
                             % (self.fw_ns, CONSOLE_PORT, user or "admin", os.path.join(workdir, "router-esmtp.conf")))
        lines.append("  ip netns exec %s traceroute -n %s" % (self.in_ns, OUT_HOST_IP))
        if not running and self.mode == "cbac":
            twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
            lines += [
                "cbac ('up' does not start it; 'run' does):",
                "  ip netns exec %s %s -n --pidfile= cbac -c %s %s --listen tcp:%d:interface=127.0.0.1"
                % (self.fw_ns, twistd if os.path.exists(twistd) else "twistd",
                   os.path.abspath(config_path or "etc/router.conf"), " ".join(PORT_ARGS), CONSOLE_PORT),
            ]
        lines.append("Console (SSH on 127.0.0.1:%d in %s%s):" % (
            CONSOLE_PORT, self.fw_ns,
            "; user %s, password %s, from %s" % (user, password, config_path) if user else ""))
        lines += [
            "  ip netns exec %s ssh -p %d %s@127.0.0.1" % (self.fw_ns, CONSOLE_PORT, user or "admin"),
            "  ip netns exec %s ssh -p %d %s@127.0.0.1 show ip inspect sessions"
            % (self.fw_ns, CONSOLE_PORT, user or "admin"),
        ]
        metrics = _metrics_urls(config_path) if config_path else []
        if metrics:
            lines.append("Metrics (cbac metrics listen):")
            lines += ["  ip netns exec %s curl -s %s" % (self.fw_ns, url) for url in metrics]
        lines += [
            "Shell in a namespace:",
            "  %s shell %s {in,fw,out}" % (lab, self.suffix),
            "Remove:",
            "  %s down %s" % (lab, self.suffix),
        ]
        return "\n".join(lines)


def _smtp_rules(config_path):
    """Names of the inspection rules of ``config_path`` that inspect smtp
    (not esmtp)."""
    try:
        with open(config_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    return re.findall(r"(?m)^\s*ip inspect name (\S+) smtp\b", text)


def esmtp_variant(config_text):
    """The configuration with every ``ip inspect name X smtp`` as ``esmtp``."""
    return re.sub(r"(?m)^(\s*ip inspect name \S+) smtp\b", r"\1 esmtp", config_text)


def _metrics_urls(config_path):
    """``http://ADDR:PORT/metrics`` of the configuration's ``cbac metrics
    listen`` lines."""
    try:
        from cbac.config.parser import parse_file
        model, _ = parse_file(config_path)
    except Exception:  # noqa: BLE001 - only a hint
        return []
    out = []
    for desc in getattr(model, "metrics_listen", []):
        m = re.fullmatch(r"tcp:(\d+):interface=([0-9.]+)", desc)
        if m:
            out.append("http://%s:%s/metrics" % (m.group(2), m.group(1)))
    return out


def _console_login(config_path):
    """(user, password) of the most privileged user of ``config_path``
    whose password can be shown (written in clear or as type 7), else
    (user, None) or (None, None).  Read from the file's text: the parser
    keeps a secret entered in clear only as its hash (type 9)."""
    import re
    try:
        from cbac.console.auth import type7_decode
        with open(config_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except Exception:  # noqa: BLE001 - only a hint
        return None, None
    pat = re.compile(r"^\s*username\s+(\S+)((?:\s+\S+)*?)\s+(secret|password)"
                     r"(?:\s+([0-9]))?\s+(\S+)\s*$")
    users, shown = [], []
    for line in lines:
        m = pat.match(line)
        if not m:
            continue
        name, opts, _, kind, value = m.groups()
        pm = re.search(r"privilege\s+(\d+)", opts or "")
        priv = int(pm.group(1)) if pm else 1
        users.append((priv, name))
        if kind in (None, "0"):
            shown.append((priv, name, value))
        elif kind == "7":
            try:
                shown.append((priv, name, type7_decode(value)))
            except Exception:  # noqa: BLE001
                pass
    if shown:
        _, name, value = max(shown, key=lambda t: t[0])
        return name, value
    return (max(users)[1], "(see the configuration)") if users else (None, None)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours counts as gone
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _entering(ns):
    """Pids of ``ip netns exec NS ...`` processes that have not exec'd yet."""
    out = []
    want = ["ip", "netns", "exec", ns]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if [a.decode(errors="replace") for a in argv[:4]] == want or (
                len(argv) > 0 and argv[0].endswith(b"/ip") and
                [a.decode(errors="replace") for a in argv[1:4]] == want[1:]):
            out.append(int(d))
    return out


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _terminate(p, timeout=2.0):
    if p.poll() is not None:
        return
    try:
        p.terminate()
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    except OSError:
        pass


# --- trial helper ----------------------------------------------------------


def lab_fixture(testcase, mode="cbac", **kw):
    """Create a lab for a trial ``TestCase``: ``addCleanup(lab.down)`` is
    registered before anything is created; skips (``SkipTest``) with the
    reason only when this machine cannot run namespaces at all."""
    from twisted.trial.unittest import SkipTest

    reason = unavailable_reason()
    if reason is not None:
        raise SkipTest(reason)
    lab = Lab(mode=mode, **kw)
    testcase.addCleanup(lab.down)
    lab.up()
    return lab


# --- command line ----------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m cbac.lab",
        description="The cbac namespace lab (inside host, firewall, outside host).",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)

    p_up = sub.add_parser("up", help="create a lab and leave it up")
    p_up.add_argument("--mode", choices=MODES, default="cbac")
    p_up.add_argument("--suffix", help="namespace suffix (default: random)")
    p_up.add_argument("--no-gro", action="store_true", help="leave GRO off on the firewall ports")

    p_down = sub.add_parser("down", help="remove a lab")
    p_down.add_argument("suffix")

    sub.add_parser("list", help="list existing labs (suffixes)")

    p_run = sub.add_parser("run", help="create a lab, run cbac in it in the foreground; Ctrl-C removes it")
    p_run.add_argument("-c", "--config", default="etc/router.conf")
    p_run.add_argument("--suffix")
    p_run.add_argument("--no-gro", action="store_true")
    p_run.add_argument("--mode", choices=("bare", "cbac"), default="bare",
                       help="bare (default): the firewall's ports as Linux makes them, cbac takes"
                            " them at start and gives them back at exit; cbac: prepared by the lab")
    p_run.add_argument("--state-dir", default="lab-state",
                       help="cbac's state directory (SSH host key), kept between runs so the "
                            "host key stays the same (default: ./lab-state)")
    p_run.add_argument("--no-demo", action="store_true",
                       help="do not start the demo servers (mail inside, web and FTP outside)")
    p_run.add_argument("extra", nargs="*", help="more cbac plugin options (after --)")

    p_shell = sub.add_parser("shell", help="a shell in one of a lab's namespaces")
    p_shell.add_argument("suffix")
    p_shell.add_argument("ns", choices=("in", "fw", "out"))

    args = parser.parse_args(argv)

    if args.cmd == "list":
        for s in list_labs():
            print(s)
        return 0

    reason = unavailable_reason()
    if reason is not None:
        print("cbac.lab: %s" % reason, file=sys.stderr)
        return 2

    if args.cmd == "down":
        Lab(args.suffix).down()
        print("lab %s removed" % args.suffix)
        return 0

    if args.cmd == "shell":
        lab = Lab(args.suffix)
        if lab.ns(args.ns) not in lab.exists():
            print("no namespace %s" % lab.ns(args.ns), file=sys.stderr)
            return 1
        shell = os.environ.get("SHELL", "/bin/bash")
        os.execvp("ip", lab.argv(args.ns, [shell]))

    if args.cmd == "up":
        lab = Lab(args.suffix, mode=args.mode, gro=not args.no_gro)
        try:
            lab.up()
        except LabError as e:
            print("cbac.lab: %s" % e, file=sys.stderr)
            return 1
        print(lab.describe())
        return 0

    # run
    if not os.path.exists(args.config):
        print("cbac.lab: no such config file: %s" % args.config, file=sys.stderr)
        return 1
    config = os.path.abspath(args.config)
    lab = Lab(args.suffix, mode=args.mode, gro=not args.no_gro)
    status = 1
    workdir = None

    def interrupted(signum, frame):
        raise KeyboardInterrupt()

    # Ctrl-C, and also SIGTERM (kill, systemd), tear the lab down, even
    # while it is being built
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        try:
            lab.up()
            if not args.no_demo:
                workdir = tempfile.mkdtemp(prefix="cbac-lab-%s-" % lab.suffix)
                os.chmod(workdir, 0o755)
                with open(config, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                with open(os.path.join(workdir, "router-esmtp.conf"), "w") as f:
                    f.write(esmtp_variant(text))
                lab.start_demo(workdir)
        except LabError as e:
            print("cbac.lab: %s" % e, file=sys.stderr)
            return 1
        # The console on 127.0.0.1 inside the fw namespace (docs/lab.md),
        # besides the router's interface addresses (in-band).
        # Its own state directory (not an installed appliance's /var/lib/cbac),
        # kept between runs: the host key, and so known_hosts, stay valid.
        extra = ["--listen", "tcp:%d:interface=127.0.0.1" % CONSOLE_PORT,
                 "--state-dir", os.path.abspath(args.state_dir)] + list(args.extra)
        print(lab.describe(config, workdir))
        print("\nStarting cbac in %s (Ctrl-C stops it and removes the lab) ...\n" % lab.fw_ns, flush=True)
        proc = lab.spawn_cbac(config, extra, start_new_session=True)
        try:
            status = proc.wait()
            print("\ncbac exited with status %s" % status, file=sys.stderr)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            proc.stop()
            status = 0
    except KeyboardInterrupt:
        status = 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        lab.down()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        print("lab %s removed" % lab.suffix, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
