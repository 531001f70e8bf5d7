"""``python -m bench.synth_quality``: the command; the code is :mod:`bench.probes.synth_quality`."""

from bench.probes.synth_quality import main

if __name__ == "__main__":
    raise SystemExit(main())
