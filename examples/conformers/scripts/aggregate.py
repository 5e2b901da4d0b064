"""Collect every shard's energies and report the lowest-energy conformers."""
import json, sys

energies = {}
for path in sys.argv[1:]:
    with open(path) as f:
        energies.update(json.load(f))
best = sorted(energies.items(), key=lambda kv: kv[1])[:3]
print(f"{len(energies)} conformers; lowest energies:")
for cid, e in best:
    print(f"  conformer {cid}: {e:.3f} kcal/mol")
