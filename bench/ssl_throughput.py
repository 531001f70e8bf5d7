"""``python -m bench.ssl_throughput``: the command; the code is :mod:`bench.probes.ssl_throughput`."""

from bench.probes.ssl_throughput import main

if __name__ == "__main__":
    raise SystemExit(main())
