"""cbac benchmarks (run with ``python -m bench``; see docs/performance.md)."""
