"""``python -m bench.seed_plan``: the command; the code is :mod:`bench.report.seed_plan`."""

from bench.report.seed_plan import main

if __name__ == "__main__":
    raise SystemExit(main())
