"""``python -m bench.cache_throughput``: the command; the code is :mod:`bench.probes.cache_throughput`."""

from bench.probes.cache_throughput import main

if __name__ == "__main__":
    raise SystemExit(main())
