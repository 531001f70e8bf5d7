"""``python -m bench.compare_cells``: the command; the code is :mod:`bench.report.compare_cells`."""

from bench.report.compare_cells import main

if __name__ == "__main__":
    raise SystemExit(main())
