"""The grid engine: presets, the plan of steps, their keys, the runner, cost, dry run, external test sets."""
