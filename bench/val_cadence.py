"""``python -m bench.val_cadence``: the command; the code is :mod:`bench.probes.val_cadence`."""

from bench.probes.val_cadence import main

if __name__ == "__main__":
    raise SystemExit(main())
