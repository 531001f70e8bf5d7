"""``python -m bench.ssl_curve``: the command; the code is :mod:`bench.probes.ssl_curve`."""

from bench.probes.ssl_curve import main

if __name__ == "__main__":
    raise SystemExit(main())
