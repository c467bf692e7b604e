"""Lab benchmarks: cbac against the Linux kernel forwarding the same traffic.

Each figure is measured three times in the same run, in the same namespace
lab: with the kernel as the router (``Lab(mode="kernel")``: ip_forward,
nftables conntrack, masquerade and the static SMTP DNAT, so it keeps state
and translates like cbac), and with cbac running the shipped seed
configuration (TCP/UDP/ICMP inspection, PAT, ACL 101, SMTP inspection) with
the kernel fast path off (``CBAC_OFFLOAD=0``: every packet in Python) and on
(established sessions offloaded to the eBPF program).  The ratios
cbac/kernel are what holds on a noisy machine.

The new-connection rate is measured with a C client (ApacheBench, ``ab``,
HTTP/1.0: one TCP connection per request) against nginx outside, in
batches, so a rate that collapses after the first thousands (PAT ports
meeting the server's TIME_WAIT) shows; failed requests and the median and
99th percentile connection time are reported next to the rate.

Run: ``python -m bench lab`` (or ``make bench``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from cbac.lab import Lab

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(HERE, "etc", "router.conf")

#: Added to the seed for the benchmarks: every client of the lab is one
#: inside host talking to one server, standing for many; the per-host and
#: per-destination limits (4,096 / 8,192 sessions, 4,096 translations) and
#: the table sizes (25,000) would otherwise measure the policy, not the
#: data path (SYNs refused, a second's retransmission each; the 100,000
#: flows of the memory figure refused).  The kernel has no such limits.
BENCH_LIMITS = """cbac session-limit 200000
cbac session-limit host 200000
cbac session-limit destination 200000
ip nat translation max-entries 200000
ip nat translation max-entries all-host 200000
"""


#: the memory figure holds every flow at once: UDP sessions (and their
#: translations) outlive the whole run instead of the 30 s default, so the
#: table holds all of them when the RSS is read
MEMORY_CONFIG = """ip inspect udp idle-time 3600
ip nat translation udp-timeout 3600
"""
#: the seed's PAT rule (removed for the memory figure without translation)
PAT_LINE = "ip nat inside source list 1 interface Ethernet2/0 overload"
#: UDP ports one global address has for PAT (1024-65535: PAT keeps the
#: port's IOS range), so at most this many UDP flows of one inside host to
#: one server through PAT at once
PAT_UDP_PORTS = 65535 - 1024 + 1


def bench_config(tmp, extra="", pat=True):
    """The seed configuration with :data:`BENCH_LIMITS` (and ``extra``),
    written to ``tmp``; without the PAT rule if not ``pat``."""
    with open(SEED) as f:
        text = f.read()
    if not pat:
        assert PAT_LINE in text
        text = text.replace(PAT_LINE + "\n", "")
    head, sep, tail = text.rpartition("\nend")
    path = os.path.join(tmp, "router.conf")
    limits = BENCH_LIMITS + extra
    with open(path, "w") as f:
        f.write(head + "\n!\n" + limits + sep + tail if sep else text + limits)
    return path

TCP_RR = r"""
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
out = []
for i in range(n):
    t = time.perf_counter(); s.sendall(b"x"); s.recv(1); out.append(time.perf_counter() - t)
print(" ".join("%.9f" % x for x in out))
"""

ECHO_SERVER = r"""
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1024)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = srv.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

CONNECT_RATE = r"""
import socket, sys, time, threading
host, port, secs, nthreads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
count = [0] * nthreads; fail = [0] * nthreads
end = time.monotonic() + secs
def run(i):
    while time.monotonic() < end:
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(b"x"); s.recv(1); s.close(); count[i] += 1
        except OSError:
            fail[i] += 1
ts = [threading.Thread(target=run, args=(i,)) for i in range(nthreads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sum(count) / secs, sum(fail))
"""

UDP_FLOWS = r"""
import socket, sys, time
n, dst = int(sys.argv[1]), sys.argv[2]
socks = []
sent = 0
for base in range(0, n, 20):
    for i in range(base, min(n, base + 20)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # a distinct 4-tuple for each of up to 50,000 x 100 flows
        s.bind(("10.10.10.2", 20000 + i // 50000))
        s.sendto(b"x", (dst, 10000 + i % 50000))
        s.close(); sent += 1
    time.sleep(0.01)    # at most 2,000 new flows per second in bursts of 20: cbac keeps up
                        # (500 at once overflowed its receive ring, 5,000/s its CPU)
print(sent)
"""

SMTP_LOAD = r"""
import smtplib, sys, time
host, secs, size = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
body = ("Subject: bench\r\n\r\n" + ("x" * 76 + "\r\n") * (size // 78)).encode()
n = 0; end = time.monotonic() + secs
s = smtplib.SMTP(host, 25, timeout=10)
while time.monotonic() < end:
    s.sendmail("a@out.test", ["b@in.test"], body); n += 1
s.quit()
print(n / secs)
"""


NGINX_CONF = """
worker_processes 2;
daemon off;
user root;
pid %(tmp)s/nginx.pid;
error_log %(tmp)s/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(tmp)s/nginx-body;
    proxy_temp_path %(tmp)s/nginx-proxy;
    fastcgi_temp_path %(tmp)s/nginx-fastcgi;
    uwsgi_temp_path %(tmp)s/nginx-uwsgi;
    scgi_temp_path %(tmp)s/nginx-scgi;
    keepalive_timeout 0;
    server {
        listen 172.22.1.1:8080 backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
"""

#: counts SYNs arriving at the inside mail host (the flood's target behind
#: the static NAT of 172.22.1.16:25)
#: the memory figure's datagrams are answered by the outside host (one echo
#: socket behind a redirect), so each flow is a whole UDP session (a flow
#: without a reply is half-open, and max-incomplete keeps at most 400 of
#: those); the inside host swallows the answers (its sockets are closed: a
#: port unreachable would end the session)
NFT_UDP_REFLECT = """
table ip benchreflect {
    chain pre {
        type nat hook prerouting priority -100;
        udp dport 10000-59999 redirect to :9999
    }
}
"""
NFT_UDP_SWALLOW = """
table inet benchswallow {
    chain in {
        type filter hook input priority 0; policy accept;
        udp sport 10000-59999 drop
    }
}
"""
UDP_ECHO = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", 9999))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""

NFT_SYN_COUNTER = """
table netdev benchcount {
    chain in {
        type filter hook ingress device "eth0" priority 0; policy accept;
        tcp dport 25 tcp flags & (syn | ack) == syn counter
    }
}
"""

SMTP_LISTENER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.10.10.25", 25)); s.listen(128)
while True:
    c, _ = s.accept(); c.sendall(b"220 bench ESMTP\r\n"); c.close()
"""


#: runs its arguments (wrk) and prints the CPU time they used (user, system
#: seconds) on the last line: whether the client is the bottleneck
CPU_OF = r"""
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print("CPU %.3f %.3f" % (u.ru_utime, u.ru_stime))
sys.exit(r.returncode)
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text):
    """wrk's '4.90ms' / '812.00us' / '1.02s' in milliseconds."""
    for unit in ("us", "ms", "s", "m"):
        if text.endswith(unit) and text[:-len(unit)].replace(".", "", 1).isdigit():
            return float(text[:-len(unit)]) * _UNITS[unit]
    return None


def parse_wrk(out):
    """Requests, rate, p50/p99 latency (ms), socket errors and non-2xx
    responses from ``wrk --latency`` output."""
    res = {"requests": 0, "rate": 0.0, "p50_ms": None, "p99_ms": None, "errors": 0,
           "error_kinds": "", "non2xx": 0, "wrk_cpu_s": None}
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "50%":
            res["p50_ms"] = _ms(parts[1])
        elif parts[0] == "99%":
            res["p99_ms"] = _ms(parts[1])
        elif len(parts) > 2 and parts[1] == "requests" and parts[2] == "in":
            res["requests"] = int(parts[0])
        elif line.startswith("Requests/sec:"):
            res["rate"] = float(parts[1])
        elif line.strip().startswith("Socket errors:"):
            # "Socket errors: connect 0, read 12, write 0, timeout 3"
            kinds = line.split(":", 1)[1].replace(",", "").split()
            counts = dict(zip(kinds[0::2], (int(x) for x in kinds[1::2])))
            res["errors"] = sum(counts.values())
            res["error_kinds"] = " ".join("%s %d" % kv for kv in counts.items() if kv[1])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            res["non2xx"] = int(parts[-1])
        elif parts[0] == "CPU" and len(parts) == 3:
            res["wrk_cpu_s"] = float(parts[1]) + float(parts[2])
    return res


def _proc_cpu(pid):
    """(CPU seconds, voluntary + involuntary context switches, system CPU
    seconds) of ``pid``."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tck
    switches = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    return cpu, switches, int(fields[12]) / tck


def _rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _twistd_pid(lab) -> int | None:
    r = subprocess.run(["ip", "netns", "pids", lab.fw_ns], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if b"cbac" in f.read():
                    return int(pid)
        except OSError:
            pass
    return None


class Bench:
    def __init__(self, mode: str, secs: float = 5.0, quick: bool = False, offload: bool = True,
                 extra_config="", pat=True):
        self.extra_config = extra_config
        self.pat = pat
        self.mode = mode
        self.offload = offload
        self.secs = secs
        self.quick = quick
        self.lab = Lab(mode=mode)
        self.tmp = tempfile.mkdtemp(prefix="cbac-bench-")
        self.proc = None

    def __enter__(self):
        self.lab.up()
        if self.mode == "cbac":
            log = open(os.path.join(self.tmp, "cbac.log"), "w")
            self.logpath = log.name
            env = dict(os.environ, CBAC_OFFLOAD="1" if self.offload else "0")
            self.proc = self.lab.spawn_cbac(bench_config(self.tmp, self.extra_config, self.pat), ["--state-dir", os.path.join(self.tmp, "state"),
                                                   "--listen", "tcp:2222:interface=127.0.0.1"],
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp,
                                            env=env)
            for _ in range(40):
                if self.lab.exec("in", ["ping", "-c1", "-W1", "10.10.10.1"]).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                raise RuntimeError("cbac did not come up: " + open(log.name).read()[-2000:])
        self.lab.popen("out", ["iperf3", "-s", "-B", "172.22.1.1"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        self.lab.popen("out", [sys.executable, "-c", ECHO_SERVER, "172.22.1.1", "7000"])
        with open(os.path.join(self.tmp, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF % {"tmp": self.tmp})
        self.lab.popen("out", ["nginx", "-c", os.path.join(self.tmp, "nginx.conf")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.lab.popen("in", [sys.executable, "-c", SMTP_LISTENER])
        r = self.lab.exec("in", ["nft", "-f", "-"], input=NFT_SYN_COUNTER)
        if r.returncode != 0:
            raise RuntimeError("nft counter: " + r.stderr)
        for ns, rules in (("out", NFT_UDP_REFLECT), ("in", NFT_UDP_SWALLOW)):
            r = self.lab.exec(ns, ["nft", "-f", "-"], input=rules)
            if r.returncode != 0:
                raise RuntimeError("nft: " + r.stderr)
        self.lab.popen("out", [sys.executable, "-c", UDP_ECHO])
        time.sleep(0.5)
        return self

    def console(self, command):
        """One console command over OpenSSH (cbac modes)."""
        askpass = os.path.join(self.tmp, "askpass.sh")
        with open(askpass, "w") as f:
            f.write("#!/bin/sh\necho cisco\n")
        os.chmod(askpass, 0o700)
        env = dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        r = self.lab.exec("fw", ["ssh", "-p", "2222", "-o", "StrictHostKeyChecking=no",
                                 "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                 "-o", "PreferredAuthentications=password",
                                 "-o", "NumberOfPasswordPrompts=1", "admin@127.0.0.1", command],
                          env=env, timeout=30, stdin=subprocess.DEVNULL)
        return r.stdout

    def __exit__(self, *exc):
        self.lab.down()
        return False

    def iperf(self, parallel=1, udp=False):
        argv = ["iperf3", "-c", "172.22.1.1", "-t", str(self.secs), "-J", "-P", str(parallel)]
        if udp:
            argv += ["-u", "-b", "0", "-l", "64"]
        try:
            r = self.lab.exec("in", argv, timeout=self.secs * 4 + 20)
            data = json.loads(r.stdout)
            end = data["end"]
            if "sum" not in end and "sum_received" not in end:
                raise ValueError(data.get("error", "no result"))
        except (subprocess.TimeoutExpired, ValueError, KeyError) as e:
            # a run that does not finish (e.g. during the flood) counts as 0
            # (subprocess.run has killed the client on the timeout)
            if udp:
                return {"pps": 0.0, "offered_pps": 0.0, "loss": 100.0, "error": str(e)[:100]}
            return {"gbps": 0.0, "error": str(e)[:100]}
        if udp:
            s = end["sum"]
            return {"pps": s["packets"] / s["seconds"] * (1 - s["lost_percent"] / 100.0),
                    "offered_pps": s["packets"] / s["seconds"], "loss": s["lost_percent"]}
        return {"gbps": end["sum_received"]["bits_per_second"] / 1e9}

    def ping_latency(self):
        r = self.lab.exec("in", ["ping", "-c", "200" if not self.quick else "50", "-i", "0.005",
                                 "172.22.1.1"], timeout=30)
        rtts = [float(line.split("time=")[1].split()[0]) * 1000 for line in r.stdout.splitlines()
                if "time=" in line]
        return _pcts(rtts)

    def tcp_rr(self):
        r = self.lab.exec("in", [sys.executable, "-c", TCP_RR, "172.22.1.1", "7000",
                                 "2000" if not self.quick else "300"], timeout=60)
        rtts = [float(x) * 1e6 for x in r.stdout.split()]
        return _pcts(rtts)

    def connect_rate(self):
        r = self.lab.exec("in", [sys.executable, "-c", CONNECT_RATE, "172.22.1.1", "7000",
                                 str(self.secs), "8"], timeout=self.secs * 4 + 30)
        rate, fail = r.stdout.split()
        return {"conn_per_s": float(rate), "failed": int(fail)}

    def ab_rate(self, total, batches=3, concurrency=32):
        """Sustained new connections: ``ab`` (C, HTTP/1.0, one connection
        per request) against nginx outside, ``batches`` runs of
        ``total // batches`` requests back to back."""
        out = []
        for _ in range(batches):
            n = total // batches
            r = self.lab.exec("in", ["ab", "-q", "-s", "10", "-n", str(n), "-c", str(concurrency),
                                     "http://172.22.1.1:8080/"], timeout=600)
            res = {"requests": n, "rate": 0.0, "failed": n, "median_ms": None, "p99_ms": None,
                   "non2xx": 0}
            for line in r.stdout.splitlines():
                parts = line.split()
                if line.startswith("Requests per second:"):
                    res["rate"] = float(parts[3])
                elif line.startswith("Failed requests:"):
                    res["failed"] = int(parts[2])
                elif line.startswith("Non-2xx responses:"):
                    res["non2xx"] = int(parts[2])
                elif line.strip().startswith("50%"):
                    res["median_ms"] = float(parts[1])
                elif line.strip().startswith("99%"):
                    res["p99_ms"] = float(parts[1])
            if r.returncode != 0 and not res["rate"]:
                res["error"] = (r.stderr or r.stdout).strip()[-200:]
            out.append(res)
        return out

    def _frames_in(self):
        """Frames that reached cbac's Python (the ports' packets input)."""
        n = 0
        for line in self.console("show interfaces").splitlines():
            if "packets input" in line:
                n += int(line.split()[0])
        return n

    def wrk_rate(self, batches=3, secs=10, threads=2, connections=32, cost=True):
        """Sustained new connections with ``wrk`` (C, epoll; ``Connection:
        close``: one TCP connection per request) against nginx outside,
        ``batches`` runs of ``secs`` seconds back to back.  Per batch: rate,
        p50/p99 latency (wrk's: from the request's write to the response,
        without the connect), wrk's socket errors and non-2xx responses,
        wrk's own CPU time; for cbac also its CPU time, context switches
        (wake-ups) and the frames that reached Python, per connection."""
        pid = _twistd_pid(self.lab) if self.mode == "cbac" else None
        out = []
        for _ in range(batches):
            frames0 = self._frames_in() if (pid and cost) else None
            cpu0 = _proc_cpu(pid) if pid else None
            t0 = time.monotonic()
            r = self.lab.exec("in", [sys.executable, "-c", CPU_OF, "wrk", "-t", str(threads),
                                     "-c", str(connections), "-d", "%ds" % secs, "--latency",
                                     "--timeout", "5s", "-H", "Connection: close",
                                     "http://172.22.1.1:8080/"], timeout=secs + 60)
            wall = time.monotonic() - t0
            res = parse_wrk(r.stdout)
            res["threads"], res["connections"], res["secs"] = threads, connections, secs
            if res["wrk_cpu_s"] is not None:
                res["wrk_cpu_pct"] = 100.0 * res["wrk_cpu_s"] / wall
            if cpu0 is not None:
                cpu1 = _proc_cpu(pid)
                n = max(1, res["requests"])
                res["cbac_cpu_pct"] = 100.0 * (cpu1[0] - cpu0[0]) / wall
                res["cbac_us_per_conn"] = 1e6 * (cpu1[0] - cpu0[0]) / n
                res["cbac_sys_us_per_conn"] = 1e6 * (cpu1[2] - cpu0[2]) / n
                res["switches_per_conn"] = (cpu1[1] - cpu0[1]) / n
                if frames0 is not None:
                    res["frames_per_conn"] = (self._frames_in() - frames0) / n
            if r.returncode != 0 and not res["rate"]:
                res["error"] = (r.stderr or r.stdout).strip()[-200:]
            out.append(res)
        return out

    def _syn_count(self):
        r = self.lab.exec("in", ["nft", "list", "table", "netdev", "benchcount"])
        for line in r.stdout.splitlines():
            if "counter packets" in line:
                return int(line.split("counter packets")[1].split()[0])
        return 0

    def flood_throughput(self):
        """One bulk TCP transfer running for 3 x ``secs``: alone for the
        first third, then a spoofed SYN flood from the outside (``hping3 -S
        --flood --rand-source`` to 172.22.1.16:25, the static NAT of the
        inside mail host, where a server listens) for ``secs``: the
        throughput during the flood as a fraction of before it (iperf3's
        0.5 s intervals), the flood packets hping3 sent and the SYNs that
        reached the server, and (cbac) the half-open defence:
        %FW-4-ALERT_ON in the log and the half-open count during the flood."""
        secs = self.secs
        syn0 = self._syn_count()
        bulk = self.lab.popen("in", ["iperf3", "-c", "172.22.1.1", "-J", "-i", "0.5", "-t",
                                     str(3 * secs)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
        time.sleep(secs)
        flood = self.lab.popen("out", ["timeout", "-s", "INT", str(secs), "hping3", "-S",
                                       "--flood", "--rand-source", "-p", "25", "172.22.1.16"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        half_open = None
        try:
            time.sleep(secs / 2)
            if self.mode == "cbac":
                stats = self.console("show ip inspect statistics")
                for line in stats.splitlines():
                    if line.startswith("Half-open sessions:"):
                        half_open = int(line.split(":")[1].split()[0])
        finally:
            text = flood.communicate(timeout=secs + 15)[0]
            try:
                out = bulk.communicate(timeout=2 * secs + 30)[0]
            except subprocess.TimeoutExpired:
                bulk.kill()
                out = bulk.communicate()[0]
        alone = during = 0.0
        error = None
        try:
            iv = [i["sum"] for i in json.loads(out)["intervals"]]
            a = [i["bits_per_second"] for i in iv if i["end"] <= secs + 0.01]
            d = [i["bits_per_second"] for i in iv
                 if i["start"] >= secs + 0.49 and i["end"] <= 2 * secs + 0.01]
            alone = statistics.mean(a) / 1e9 if a else 0.0
            during = statistics.mean(d) / 1e9 if d else 0.0
        except (ValueError, KeyError) as e:
            error = str(e)[:100]
        sent = 0
        for line in text.splitlines():
            if "packets transmitted" in line:
                sent = int(line.split()[0])
        arrived = self._syn_count() - syn0
        alerts = 0
        if self.mode == "cbac":
            with open(self.logpath) as f:
                alerts = f.read().count("%FW-4-ALERT_ON")
        return {"alone_gbps": alone, "flood_gbps": during, "kept": during / alone if alone else 0,
                "flood_sent": sent, "flood_arrived": arrived, "alert_on": alerts,
                "half_open": half_open, "error": error}

    def fastpath(self):
        if self.mode != "cbac":
            return None
        return self.console("show cbac fastpath")

    def session_memory(self, n=100000):
        """RSS growth of a fresh daemon over ``n`` answered UDP flows from
        the inside, all held at once (:data:`MEMORY_CONFIG`), divided by the
        sessions in the table at the end."""
        pid = _twistd_pid(self.lab) if self.mode == "cbac" else None
        before = _rss_kb(pid) if pid else 0
        t0 = time.monotonic()
        self.lab.exec("in", [sys.executable, "-c", UDP_FLOWS, str(n), "172.22.1.1"], timeout=900)
        time.sleep(2.0)
        after = _rss_kb(pid) if pid else 0
        res = {"flows": n, "rss_before_kb": before, "rss_after_kb": after, "sessions": None,
               "peak": None, "translations": None, "bytes_per_session": None, "pat": self.pat,
               "secs": time.monotonic() - t0}
        if pid:
            import re
            st = self.console("show ip inspect statistics")
            m = re.search(r"Session table: (\d+) sessions \(limit \d+\), peak (\d+)", st)
            if m:
                res["sessions"], res["peak"] = int(m.group(1)), int(m.group(2))
            m = re.search(r"Total active translations: (\d+)",
                          self.console("show ip nat statistics"))
            res["translations"] = int(m.group(1)) if m else None
            if res["sessions"]:
                res["bytes_per_session"] = (after - before) * 1024.0 / res["sessions"]
        return res


def _pcts(values):
    if not values:
        return {"median_us": None, "p99_us": None}
    values = sorted(values)
    return {"median_us": statistics.median(values),
            "p99_us": values[min(len(values) - 1, int(len(values) * 0.99))]}


#: (result name, Lab mode, kernel fast path on)
MODES = (("kernel", "kernel", False), ("cbac-python", "cbac", False), ("cbac", "cbac", True))


#: the parts of a run, in order (``--parts`` picks some)
PARTS = ("tcp", "udp", "latency", "connect", "ab", "wrk", "flood", "memory")


def run(quick=False, secs=None, parts=PARTS):
    secs = secs or (2.0 if quick else 5.0)
    results = {"load": [os.getloadavg()]}
    for name, mode, offload in MODES:
        res = results[name] = {}
        if set(parts) - {"memory"}:
            with Bench(mode, secs, quick, offload=offload) as b:
                if "tcp" in parts:
                    res["tcp_1"] = b.iperf(1)
                    res["tcp_8"] = b.iperf(8)
                if "udp" in parts:
                    res["udp64"] = b.iperf(1, udp=True)
                if "latency" in parts:
                    res["ping"] = b.ping_latency()
                    res["tcp_rr"] = b.tcp_rr()
                if "connect" in parts:
                    res["connect"] = b.connect_rate()
                if "ab" in parts:
                    res["ab"] = b.ab_rate(9000 if quick else 30000)
                if "wrk" in parts:
                    res["wrk"] = b.wrk_rate(2 if quick else 3, 3 if quick else 10)
                    if mode == "kernel":
                        # the client's own limit: the same with twice the
                        # connections (a client-bound figure would not move)
                        res["wrk_more"] = b.wrk_rate(1, 3 if quick else 10, connections=128)
                if "flood" in parts:
                    res["flood"] = b.flood_throughput()
                res["fastpath"] = b.fastpath()
        res["memory"] = []
        if "memory" in parts and mode == "cbac":
            # a fresh daemon each: after the other benchmarks the RSS
            # growth hides in memory they freed.  Through PAT one global
            # address has PAT_UDP_PORTS ports for one server's flows
            n = 20000 if quick else 100000
            for pat, flows in ((True, min(n, 60000)), (False, n)):
                with Bench(mode, secs, quick, offload=offload, extra_config=MEMORY_CONFIG,
                           pat=pat) as b:
                    res["memory"].append(b.session_memory(flows))
        results["load"].append(os.getloadavg())
    return results


def table(results) -> str:
    k, p, c = results["kernel"], results["cbac-python"], results["cbac"]

    def row(name, get, unit, fmt="%12.3f"):
        vals = []
        for r in (k, p, c):
            try:
                vals.append(get(r))
            except (KeyError, TypeError, IndexError):
                vals.append(None)
        if all(v is None for v in vals):
            return None
        kv = vals[0]
        cells = [(fmt % v) if v is not None else "%12s" % "-" for v in vals]
        ratios = ["%6.2f" % (v / kv) if (v is not None and kv) else "%6s" % "-" for v in vals[1:]]
        return "%-40s %s %s %s  %s %s  %s" % (name, cells[0], cells[1], cells[2], ratios[0],
                                             ratios[1], unit)

    lines = ["no CPU pinning; the kernel and cbac (fast path off / on) measured in the same run",
             "machine load average (1/5/15 min) at the start and after each column: " + "; ".join(
                 "%.2f %.2f %.2f" % la for la in results.get("load", ())),
             "%-40s %12s %12s %12s  %6s %6s" % ("benchmark", "kernel", "cbac-python", "cbac-offload",
                                                "py/k", "off/k")]
    lines.append(row("bulk TCP, 1 flow", lambda r: r["tcp_1"]["gbps"], "Gbit/s"))
    lines.append(row("bulk TCP, 8 flows", lambda r: r["tcp_8"]["gbps"], "Gbit/s"))
    lines.append(row("64-byte UDP received", lambda r: r["udp64"]["pps"] / 1e3, "kpps"))
    lines.append(row("64-byte UDP offered by iperf3", lambda r: r["udp64"]["offered_pps"] / 1e3, "kpps"))
    lines.append(row("64-byte UDP loss", lambda r: r["udp64"]["loss"], "%"))
    lines.append(row("new TCP sessions (8 Python clients)", lambda r: r["connect"]["conn_per_s"],
                     "per s"))
    lines.append(row("  failed connections", lambda r: r["connect"]["failed"], "", "%12d"))
    nb = len(k.get("ab", ()))
    for i in range(nb):
        lines.append(row("ab -c 32 batch %d of %d: rate" % (i + 1, nb), lambda r: r["ab"][i]["rate"],
                         "conn/s"))
        lines.append(row("  median / p99 connection time", lambda r: r["ab"][i]["median_ms"], "ms",
                         "%12.0f"))
        lines.append(row("", lambda r: r["ab"][i]["p99_ms"], "ms (p99)", "%12.0f"))
        lines.append(row("  failed requests", lambda r: r["ab"][i]["failed"] + r["ab"][i]["non2xx"],
                         "of %d" % k["ab"][i]["requests"], "%12d"))
    nw = len(k.get("wrk", ()))
    for i in range(nw):
        w = k["wrk"][i]
        lines.append(row("wrk -t%d -c%d %ds batch %d of %d: rate" % (
            w["threads"], w["connections"], w["secs"], i + 1, nw),
            lambda r: r["wrk"][i]["rate"], "conn/s"))
        lines.append(row("  latency p50 / p99 (without connect)", lambda r: r["wrk"][i]["p50_ms"],
                         "ms", "%12.2f"))
        lines.append(row("", lambda r: r["wrk"][i]["p99_ms"], "ms (p99)", "%12.2f"))
        lines.append(row("  connections", lambda r: r["wrk"][i]["requests"], "", "%12d"))
        lines.append(row("  failed: socket errors", lambda r: r["wrk"][i]["errors"], "", "%12d"))
        lines.append(row("  failed: non-2xx responses", lambda r: r["wrk"][i]["non2xx"], "",
                         "%12d"))
        lines.append(row("  wrk's CPU", lambda r: r["wrk"][i]["wrk_cpu_pct"], "% of a core",
                         "%12.0f"))
        lines.append(row("  cbac's CPU", lambda r: r["wrk"][i]["cbac_cpu_pct"], "% of a core",
                         "%12.0f"))
        lines.append(row("  cbac's CPU per connection", lambda r: r["wrk"][i]["cbac_us_per_conn"],
                         "us", "%12.0f"))
        lines.append(row("    of which system (kernel) time", lambda r: r["wrk"][i]["cbac_sys_us_per_conn"],
                         "us", "%12.0f"))
        lines.append(row("  frames reaching Python per connection",
                         lambda r: r["wrk"][i]["frames_per_conn"], "", "%12.2f"))
        lines.append(row("  cbac context switches per connection",
                         lambda r: r["wrk"][i]["switches_per_conn"], "", "%12.2f"))
    if k.get("wrk_more"):
        w = k["wrk_more"][0]
        lines.append("kernel with wrk -t%d -c%d (client check): %.0f conn/s, wrk's CPU %.0f%% of a "
                     "core, p99 %s ms, %d failed" % (
                         w["threads"], w["connections"], w["rate"], w.get("wrk_cpu_pct") or 0,
                         "%.2f" % w["p99_ms"] if w["p99_ms"] is not None else "?",
                         w["errors"] + w["non2xx"]))
    for name, r in (("kernel", k), ("cbac-python", p), ("cbac", c)):
        for i, w in enumerate(r.get("wrk", ())):
            if w.get("error_kinds"):
                lines.append("%s wrk batch %d socket errors: %s" % (name, i + 1, w["error_kinds"]))
    lines.append(row("ping RTT median", lambda r: r["ping"]["median_us"], "us"))
    lines.append(row("ping RTT p99", lambda r: r["ping"]["p99_us"], "us"))
    lines.append(row("TCP round trip median", lambda r: r["tcp_rr"]["median_us"], "us"))
    lines.append(row("TCP round trip p99", lambda r: r["tcp_rr"]["p99_us"], "us"))
    lines.append(row("one bulk TCP transfer, before the flood", lambda r: r["flood"]["alone_gbps"],
                     "Gbit/s"))
    lines.append(row("  the same transfer during a SYN flood", lambda r: r["flood"]["flood_gbps"],
                     "Gbit/s"))
    lines.append(row("  kept", lambda r: r["flood"]["kept"] * 100, "% of alone"))
    lines.append(row("  flood SYNs sent (hping3)", lambda r: r["flood"]["flood_sent"], "", "%12d"))
    lines.append(row("  flood SYNs reaching the server", lambda r: r["flood"]["flood_arrived"], "",
                     "%12d"))
    lines.append(row("  %FW-4-ALERT_ON logged", lambda r: r["flood"]["alert_on"], "", "%12d"))
    lines.append(row("  half-open sessions during the flood", lambda r: r["flood"]["half_open"], "",
                     "%12d"))
    for name, r in (("cbac-python", p), ("cbac", c)):
        if "ping" not in r or "tcp_rr" not in r:
            continue
        lines.append("latency added by %s (median): ping %.0f us, TCP round trip %.0f us" % (
            name, (r["ping"]["median_us"] or 0) - (k["ping"]["median_us"] or 0),
            (r["tcp_rr"]["median_us"] or 0) - (k["tcp_rr"]["median_us"] or 0)))
    for name, r in (("cbac-python", p), ("cbac", c)):
        for mem in r.get("memory", ()):
            lines.append("memory per session (%s, %s, %d UDP flows held, %s sessions and %s "
                         "translations in the table at the end, peak %s): %s bytes (RSS %d -> %d KB)"
                         % (name, "with PAT" if mem["pat"] else "no NAT", mem["flows"],
                            mem["sessions"], mem["translations"], mem["peak"],
                            "%.0f" % mem["bytes_per_session"] if mem["bytes_per_session"] else "?",
                            mem["rss_before_kb"], mem["rss_after_kb"]))
    for name, r in (("kernel", k), ("cbac-python", p), ("cbac", c)):
        for what, v in r.items():
            if isinstance(v, dict) and v.get("error"):
                lines.append("%s %s: measurement failed (counted as 0): %s" % (name, what, v["error"]))
    if c.get("fastpath"):
        lines.append("show cbac fastpath (offload run, at the end):")
        lines.extend("  " + x for x in c["fastpath"].splitlines())
    return "\n".join(x for x in lines if x is not None)


def main(argv):
    """``python -m bench.lab_bench [--quick] [--parts wrk,memory,...]``:
    some parts only (see :data:`PARTS`), the table printed and written to
    bench/results/ like ``python -m bench lab``."""
    import argparse
    import datetime
    from bench.__main__ import machine
    ap = argparse.ArgumentParser(prog="python -m bench.lab_bench")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma-separated, of: " + ", ".join(PARTS))
    a = ap.parse_args(argv)
    parts = [x for x in a.parts.split(",") if x]
    bad = set(parts) - set(PARTS)
    if bad:
        ap.error("unknown parts: " + ", ".join(sorted(bad)))
    text = "%s\n\n== lab (%s%s) ==\n%s" % (machine(), ",".join(parts),
                                         ", quick" if a.quick else "",
                                         table(run(quick=a.quick, parts=parts)))
    print(text)
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, datetime.datetime.utcnow().strftime("%Y%m%d-%H%M") + "-lab.txt")
    with open(path, "w") as f:
        f.write(text + "\n")
    print("\nresults written to %s" % os.path.relpath(path))


if __name__ == "__main__":
    main(sys.argv[1:])
