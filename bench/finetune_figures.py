"""``python -m bench.finetune_figures``: the command; the code is :mod:`bench.probes.finetune_figures`."""

from bench.probes.finetune_figures import main

if __name__ == "__main__":
    raise SystemExit(main())
