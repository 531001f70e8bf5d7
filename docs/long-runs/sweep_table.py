"""Table of the 1% schedule sweep (sweep_1pct.sh): best validation balanced accuracy per candidate and seed (the
choice), test and CPU time beside. Usage: python sweep_table.py [SWEEP_FOLDER]"""
import json, pathlib, re, statistics, sys
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path.home() / "dermkit-runs/sweep-1pct")
rows = {}
for m in sorted(root.glob("*/metrics.json")):
    name, seed = re.match(r"(.+)-s(\d+)$", m.parent.name).groups()
    d = json.loads(m.read_text())
    cpu = d.get("cpu_seconds", {}).get("total", float("nan"))
    ep = re.search(r"epoch(\d+)", d.get("best_checkpoint") or "")
    rows.setdefault(name, {})[int(seed)] = (d["best_val_balanced_accuracy"], d["balanced_accuracy"], ep.group(1) if ep else "?", cpu)
print("| candidate | validation s0 / s1 / s2 | mean validation | test mean | best epochs | CPU-s per run |")
print("|---|---|---|---|---|---|")
for name, seeds in sorted(rows.items(), key=lambda kv: -statistics.mean(v[0] for v in kv[1].values())):
    vals = [seeds[s][0] for s in sorted(seeds)]
    print(f"| {name} | {' / '.join(f'{v:.3f}' for v in vals)} | {statistics.mean(vals):.3f} | "
          f"{statistics.mean(seeds[s][1] for s in seeds):.3f} | {', '.join(seeds[s][2] for s in sorted(seeds))} | "
          f"{statistics.mean(seeds[s][3] for s in seeds):.0f} |")
