"""Toy torsional energy of a slice of conformers: E = sum k (1 + cos(3 phi)) per dihedral."""
import argparse, json, math, os

p = argparse.ArgumentParser()
p.add_argument("conformers")
p.add_argument("--shard", type=int, required=True)
p.add_argument("--shards", type=int, required=True)
p.add_argument("--k", type=float, default=1.2)
p.add_argument("--out", required=True)
a = p.parse_args()
with open(a.conformers) as f:
    conformers = json.load(f)
mine = [c for c in conformers if c["id"] % a.shards == a.shard]
energies = {c["id"]: sum(a.k * (1 + math.cos(3 * phi)) for phi in c["dihedrals"]) for c in mine}
os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
with open(a.out, "w") as f:
    json.dump(energies, f)
print(f"shard {a.shard}: {len(energies)} energies")
