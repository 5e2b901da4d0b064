"""Generate N toy 'conformers' of a small chain molecule (dihedral angles) into a JSON file."""
import argparse, json, math, os, random

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", required=True)
a = p.parse_args()
rng = random.Random(a.seed)
conformers = [{"id": i, "dihedrals": [rng.uniform(-math.pi, math.pi) for _ in range(6)]} for i in range(a.n)]
os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
with open(a.out, "w") as f:
    json.dump(conformers, f)
print(f"generated {a.n} conformers -> {a.out}")
