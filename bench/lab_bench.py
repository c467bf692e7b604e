"""Lab benchmarks: cbac against the Linux kernel forwarding the same traffic.

Each figure is measured twice in the same run, in the same namespace lab:
once with the kernel as the router (``Lab(mode="kernel")``: ip_forward,
nftables conntrack, masquerade and the static SMTP DNAT, so it keeps state
and translates like cbac) and once with cbac running the shipped seed
configuration (TCP/UDP/ICMP inspection, PAT, ACL 101, SMTP inspection).
The ratio cbac/kernel is what holds on a noisy machine.

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
for base in range(0, n, 500):
    for i in range(base, min(n, base + 500)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("10.10.10.2", 0))
        s.sendto(b"x", (dst, 10000 + i % 50000))
        s.close(); sent += 1
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
    def __init__(self, mode: str, secs: float = 5.0, quick: bool = False):
        self.mode = mode
        self.secs = secs
        self.quick = quick
        self.lab = Lab(mode=mode)
        self.tmp = tempfile.mkdtemp(prefix="cbac-bench-")
        self.proc = None

    def __enter__(self):
        self.lab.up()
        if self.mode == "cbac":
            log = open(os.path.join(self.tmp, "cbac.log"), "w")
            self.proc = self.lab.spawn_cbac(SEED, ["--state-dir", os.path.join(self.tmp, "state")],
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
            for _ in range(40):
                if self.lab.exec("in", ["ping", "-c1", "-W1", "10.10.10.1"]).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                raise RuntimeError("cbac did not come up: " + open(log.name).read()[-2000:])
        self.lab.popen("out", ["iperf3", "-s", "-B", "172.22.1.1"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        self.lab.popen("out", [sys.executable, "-c", ECHO_SERVER, "172.22.1.1", "7000"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.lab.down()
        return False

    def iperf(self, parallel=1, udp=False):
        argv = ["iperf3", "-c", "172.22.1.1", "-t", str(self.secs), "-J", "-P", str(parallel)]
        if udp:
            argv += ["-u", "-b", "0", "-l", "64"]
        r = self.lab.exec("in", argv, timeout=self.secs * 4 + 20)
        data = json.loads(r.stdout)
        end = data["end"]
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

    def flood_throughput(self):
        """Bulk TCP alone, then with a spoofed SYN flood from the outside
        (hping3 --flood --rand-source to 172.22.1.16:25, bounded by
        ``timeout``) running at the same time: the fraction kept."""
        alone = self.iperf(1)["gbps"]
        flood = self.lab.popen("out", ["timeout", str(self.secs + 2), "hping3", "-q", "-S", "--flood",
                                       "--rand-source", "-p", "25", "172.22.1.16"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            during = self.iperf(1)["gbps"]
        finally:
            flood.wait(timeout=self.secs + 10)
        return {"alone_gbps": alone, "flood_gbps": during, "kept": during / alone if alone else 0}

    def session_memory(self, n=100000):
        pid = _twistd_pid(self.lab) if self.mode == "cbac" else None
        before = _rss_kb(pid) if pid else 0
        self.lab.exec("in", [sys.executable, "-c", UDP_FLOWS, str(n), "172.22.1.1"], timeout=600)
        time.sleep(1.0)
        after = _rss_kb(pid) if pid else 0
        return {"flows": n, "rss_before_kb": before, "rss_after_kb": after,
                "bytes_per_session": (after - before) * 1024.0 / n if pid else None}


def _pcts(values):
    if not values:
        return {"median_us": None, "p99_us": None}
    values = sorted(values)
    return {"median_us": statistics.median(values),
            "p99_us": values[min(len(values) - 1, int(len(values) * 0.99))]}


def run(quick=False, secs=None):
    secs = secs or (2.0 if quick else 5.0)
    results = {}
    for mode in ("kernel", "cbac"):
        with Bench(mode, secs, quick) as b:
            res = results[mode] = {}
            res["tcp_1"] = b.iperf(1)
            res["tcp_8"] = b.iperf(8)
            res["udp64"] = b.iperf(1, udp=True)
            res["ping"] = b.ping_latency()
            res["tcp_rr"] = b.tcp_rr()
            res["connect"] = b.connect_rate()
            res["flood"] = b.flood_throughput()
            res["memory"] = b.session_memory(20000 if quick else 100000)
    return results


def table(results) -> str:
    k, c = results["kernel"], results["cbac"]

    def row(name, kv, cv, unit, higher_better=True):
        if kv is None or cv is None:
            return "%-38s %12s %12s %8s" % (name, kv, cv, "-")
        ratio = cv / kv if kv else float("nan")
        return "%-38s %12.3f %12.3f %8.2f  %s" % (name, kv, cv, ratio, unit)

    lines = ["no CPU pinning; cbac and the kernel reference measured in the same run",
             "%-38s %12s %12s %8s" % ("benchmark", "kernel", "cbac", "ratio")]
    lines.append(row("bulk TCP, 1 flow", k["tcp_1"]["gbps"], c["tcp_1"]["gbps"], "Gbit/s"))
    lines.append(row("bulk TCP, 8 flows", k["tcp_8"]["gbps"], c["tcp_8"]["gbps"], "Gbit/s"))
    lines.append(row("64-byte UDP forwarded", k["udp64"]["pps"] / 1e3, c["udp64"]["pps"] / 1e3, "kpps"))
    lines.append("%-38s %12.3f %12.3f %8s  %%" % ("64-byte UDP loss", k["udp64"]["loss"],
                                                  c["udp64"]["loss"], "-"))
    lines.append(row("new TCP sessions", k["connect"]["conn_per_s"], c["connect"]["conn_per_s"], "per s"))
    lines.append(row("ping RTT median", k["ping"]["median_us"], c["ping"]["median_us"], "us"))
    lines.append(row("ping RTT p99", k["ping"]["p99_us"], c["ping"]["p99_us"], "us"))
    lines.append(row("TCP round trip median", k["tcp_rr"]["median_us"], c["tcp_rr"]["median_us"], "us"))
    lines.append(row("TCP round trip p99", k["tcp_rr"]["p99_us"], c["tcp_rr"]["p99_us"], "us"))
    lines.append(row("bulk TCP during a SYN flood, kept", k["flood"]["kept"] * 100,
                     c["flood"]["kept"] * 100, "% of alone"))
    lines.append("latency added by cbac (median): ping %.0f us, TCP round trip %.0f us" % (
        (c["ping"]["median_us"] or 0) - (k["ping"]["median_us"] or 0),
        (c["tcp_rr"]["median_us"] or 0) - (k["tcp_rr"]["median_us"] or 0)))
    mem = c["memory"]
    lines.append("memory per session (cbac, %d UDP flows): %s bytes (RSS %d -> %d KB)" % (
        mem["flows"], "%.0f" % mem["bytes_per_session"] if mem["bytes_per_session"] else "?",
        mem["rss_before_kb"], mem["rss_after_kb"]))
    return "\n".join(lines)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    res = run(quick=quick)
    print(table(res))
