"""``python -m bench.resident_throughput``: the command; the code is :mod:`bench.probes.resident_throughput`."""

from bench.probes.resident_throughput import main

if __name__ == "__main__":
    raise SystemExit(main())
