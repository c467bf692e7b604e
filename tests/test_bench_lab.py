"""The lab benchmark's own pieces that need no lab: the configuration it
runs cbac with (the seed, limits lifted, the memory figure's long UDP
timeouts, with and without PAT) and its reading of wrk's output."""

import os

from twisted.trial import unittest

from bench import lab_bench
from cbac.config.errors import ERROR
from cbac.config.parser import parse_config

WRK_OUTPUT = """Running 10s test @ http://172.22.1.1:8080/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.21ms   20.10ms 538.59ms   97.21%
    Req/Sec   524.33    168.50     1.01k    55.17%
  Latency Distribution
     50%  812.00us
     75%   14.18ms
     90%   20.83ms
     99%    1.02s
  10487 requests in 10.10s, 1.45MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:   1038.40
Transfer/sec:    146.81KB
CPU 0.500 0.250
"""


class BenchConfigTests(unittest.TestCase):
    def config(self, **kw):
        tmp = self.mktemp()
        os.makedirs(tmp)
        with open(lab_bench.bench_config(tmp, **kw)) as f:
            text = f.read()
        model, diags = parse_config(text)
        errors = [d for d in diags if d.severity == ERROR]
        self.assertEqual(errors, [], text)
        return text, model

    def test_seed_with_the_limits_lifted(self):
        text, model = self.config()
        self.assertEqual(model.session_limit, 200000)
        self.assertEqual(model.session_limit_host, 200000)
        dyn = [d for d in model.nat.dynamics if d.side == "inside"]
        self.assertEqual([(d.acl, d.interface, d.overload) for d in dyn],
                         [("1", "Ethernet2/0", True)])
        self.assertEqual(model.inspect.udp_idle_time, 30)

    def test_memory_config_holds_every_flow_and_drops_only_pat(self):
        text, model = self.config(extra=lab_bench.MEMORY_CONFIG, pat=False)
        self.assertEqual(model.inspect.udp_idle_time, 3600)
        self.assertEqual(model.nat.timeouts.udp_timeout, 3600)
        self.assertEqual([d for d in model.nat.dynamics if d.side == "inside"], [])
        self.assertNotIn(lab_bench.PAT_LINE, text)
        # the rest of the seed stays: the static SMTP translation, the ACL
        self.assertEqual(len(model.nat.statics), 1)
        self.assertIn("access-list 101 permit tcp any host 172.22.1.16 eq smtp", text)

    def test_wrk_output(self):
        res = lab_bench.parse_wrk(WRK_OUTPUT)
        self.assertEqual(res["requests"], 10487)
        self.assertEqual(res["rate"], 1038.40)
        self.assertAlmostEqual(res["p50_ms"], 0.812)
        self.assertEqual(res["p99_ms"], 1020.0)
        self.assertEqual(res["errors"], 15)
        self.assertEqual(res["error_kinds"], "read 12 timeout 3")
        self.assertEqual(res["non2xx"], 5)
        self.assertEqual(res["wrk_cpu_s"], 0.75)

    def test_wrk_output_of_a_failed_run(self):
        res = lab_bench.parse_wrk("unable to connect to 172.22.1.1:8080 Connection refused\n")
        self.assertEqual((res["requests"], res["rate"], res["p99_ms"]), (0, 0.0, None))
