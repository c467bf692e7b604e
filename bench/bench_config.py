"""Configuration size benchmark: parse, check and render time for large
configurations (issue 17: parsing was quadratic, 30,000 routes took 156 s),
and the time to build the engines from it and to apply it again (a reload).

    python -m bench config [--quick]
"""

import time

from cbac.config.check import check
from cbac.config.parser import parse_config
from cbac.config.render import render

HEAD = ("hostname fw\ninterface Ethernet0\n ip address 192.0.2.1 255.255.255.0\n ip nat outside\n"
        "interface Ethernet1\n ip address 10.0.0.1 255.255.0.0\n ip nat inside\n")


def config(n_routes: int, n_aces: int) -> str:
    """``n_routes`` static routes, ``n_aces`` entries in a named extended
    list and ``n_aces`` in a numbered one."""
    lines = [HEAD]
    for i in range(n_routes):
        lines.append("ip route 10.%d.%d.%d 255.255.255.252 192.0.2.2\n"
                     % (100 + (i >> 14 & 63), i >> 6 & 255, (i & 63) << 2))
    lines.append("ip access-list extended BIG\n")
    for i in range(n_aces):
        lines.append(" permit tcp host 10.1.%d.%d any eq %d\n" % (i >> 8 & 255, i & 255, 1 + i % 60000))
    for i in range(n_aces):
        lines.append("access-list 101 permit udp host 10.2.%d.%d any eq %d\n"
                     % (i >> 8 & 255, i & 255, 1 + i % 60000))
    lines.append("interface Ethernet0\n ip access-group BIG in\n"
                 "interface Ethernet1\n ip access-group 101 out\n")
    return "".join(lines)


def measure(n_routes: int, n_aces: int) -> dict:
    text = config(n_routes, n_aces)
    t0 = time.perf_counter()
    router, diags = parse_config(text)
    t1 = time.perf_counter()
    diags += check(router)
    t2 = time.perf_counter()
    out = render(router)
    t3 = time.perf_counter()
    from twisted.internet.task import Clock
    from cbac.app import Appliance
    app = Appliance(router, Clock(), {}, engines=True)
    t4 = time.perf_counter()
    app.apply(router)                    # what a reload does with it
    t5 = time.perf_counter()
    assert not [d for d in diags if d.is_error], diags[:3]
    assert len(router.routes) == n_routes
    return {"routes": n_routes, "aces": 2 * n_aces, "lines": text.count("\n"),
            "parse": t1 - t0, "check": t2 - t1, "render": t3 - t2, "bytes": len(out),
            "build": t4 - t3, "apply": t5 - t4}


def main(quick: bool = False) -> None:
    sizes = [(1000, 500), (8000, 4000)] + ([] if quick else [(30000, 10000), (30000, 20000)])
    print("%8s %8s %8s %9s %9s %9s %9s %9s  (seconds)" % (
        "routes", "ACEs", "lines", "parse", "check", "render", "build", "apply"))
    for nr, na in sizes:
        m = measure(nr, na)
        print("%8d %8d %8d %9.2f %9.2f %9.2f %9.2f %9.2f" % (
            m["routes"], m["aces"], m["lines"], m["parse"], m["check"], m["render"],
            m["build"], m["apply"]))


if __name__ == "__main__":
    import sys
    main(quick="--quick" in sys.argv)
