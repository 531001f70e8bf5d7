"""``python -m bench.sampler_accuracy``: the command; the code is :mod:`bench.probes.sampler_accuracy`."""

from bench.probes.sampler_accuracy import main

if __name__ == "__main__":
    raise SystemExit(main())
