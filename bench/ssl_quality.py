"""``python -m bench.ssl_quality``: the command; the code is :mod:`bench.probes.ssl_quality`."""

from bench.probes.ssl_quality import main

if __name__ == "__main__":
    raise SystemExit(main())
