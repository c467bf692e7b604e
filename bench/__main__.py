"""Run the benchmarks, print a table, keep the results in bench/results/.

    python -m bench [--quick] [engine] [lab] [acl] [sessions] [nat] [config] [attack]

With no names, all run.  Each result file starts with a description of the
machine, since figures only compare within one machine and one run.
"""

import datetime
import io
import os
import platform
import subprocess
import sys
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import twisted
    return "\n".join([
        "date: %s" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        "machine: %s, %d cores, %s" % (cpu, os.cpu_count() or 0, platform.platform()),
        "python: %s %s (%s)" % (platform.python_implementation(), platform.python_version(), sys.executable),
        "twisted: %s" % twisted.__version__,
        "commit: %s" % subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                                      capture_output=True, text=True).stdout.strip(),
    ])


def main(argv):
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")] or ["engine", "acl", "sessions", "nat", "config",
                                                          "attack",
                                                          "lab"]
    out = io.StringIO()
    print(machine(), file=out)
    for name in names:
        print("\n== %s ==" % name, file=out)
        buf = io.StringIO()
        with redirect_stdout(buf):
            if name == "lab":
                from bench import lab_bench
                print(lab_bench.table(lab_bench.run(quick=quick)))
            elif name == "engine":
                from bench import bench_engine
                bench_engine.main(quick=quick)
            elif name == "acl":
                from bench import bench_acl
                bench_acl.main(["--seconds", "0.2" if quick else "0.5"])
            elif name == "config":
                from bench import bench_config
                bench_config.main(quick=quick)
            elif name == "sessions":
                from bench import bench_sessions
                bench_sessions.main(quick=quick)
            elif name == "nat":
                from bench import bench_nat
                bench_nat.main(quick=quick)
            elif name == "attack":
                from bench import bench_attack
                bench_attack.main(quick=quick)
            else:
                print("unknown benchmark %r" % name)
        print(buf.getvalue().rstrip(), file=out)
        sys.stdout.write("\n== %s ==\n%s\n" % (name, buf.getvalue().rstrip()))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", datetime.datetime.utcnow().strftime("%Y%m%d-%H%M.txt"))
    with open(path, "w") as f:
        f.write(out.getvalue())
    print("\nresults written to %s" % os.path.relpath(path))


if __name__ == "__main__":
    main(sys.argv[1:])
