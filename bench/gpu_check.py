"""``python -m bench.gpu_check``: the command; the code is :mod:`bench.probes.gpu_check`."""

from bench.probes.gpu_check import main

if __name__ == "__main__":
    raise SystemExit(main())
