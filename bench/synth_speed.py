"""``python -m bench.synth_speed``: the command; the code is :mod:`bench.probes.synth_speed`."""

from bench.probes.synth_speed import main

if __name__ == "__main__":
    raise SystemExit(main())
