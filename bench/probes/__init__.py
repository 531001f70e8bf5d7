"""Single-purpose measurements (throughput, quality, GPU checks), each a ``python -m bench.<name>`` command."""
