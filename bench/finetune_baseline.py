"""``python -m bench.finetune_baseline``: the command; the code is :mod:`bench.probes.finetune_baseline`."""

from bench.probes.finetune_baseline import main

if __name__ == "__main__":
    raise SystemExit(main())
