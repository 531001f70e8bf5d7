"""``python -m bench.gpu_window``: the command; the code is :mod:`bench.probes.gpu_window`."""

from bench.probes.gpu_window import main

if __name__ == "__main__":
    raise SystemExit(main())
