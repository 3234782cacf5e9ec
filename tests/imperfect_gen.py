"""Random valid mappings with remainders (imperfect factorization) for the oracle tests."""
from __future__ import annotations

import math
import random

from mapper.arch import Storage
from mapper.mapping import Loop, normalize, problems_of
from mapper.problem import DIMS, TENSORS


def random_imperfect_mapping(layer, arch, rng: random.Random, tries: int = 200):
    """Each dimension gets 1-3 loops on random allowed slots; the inner ones random factors
    (2..4), the outermost ceil(size / their product), so every dimension is covered once
    with its remainder on the last tile of each loop. None if nothing valid came out."""
    slots = []
    for lv in arch.levels:
        if isinstance(lv, Storage):
            slots.append((lv.name, None, lv.temporal_dims, math.inf))
        else:
            slots.append((lv.name, "X", lv.x_dims, lv.X))
            slots.append((lv.name, "Y", lv.y_dims, lv.Y))
    for _ in range(tries):
        factor = {}
        for d, size in layer.dims.items():
            if size == 1:
                continue
            allowed = [s for s in slots if d in s[2]]
            k = min(len(allowed), rng.choice((1, 2, 2, 3)))
            chosen = sorted(rng.sample(range(len(allowed)), k))
            inner = []
            for _j in chosen[1:]:
                f = rng.randint(2, max(2, min(4, size - 1)))
                if math.prod(inner) * f >= size:
                    break
                inner.append(f)
            chosen = chosen[:1 + len(inner)]
            outer = -(-size // math.prod(inner))
            for s, f in zip(chosen, [outer] + inner):
                if f > 1:
                    sl = allowed[s]
                    factor[sl[0], sl[1], d] = f
        if any(math.prod(f for (lv, ax, _), f in factor.items() if (lv, ax) == (s[0], s[1])) > s[3]
               for s in slots):
            continue
        loops = []
        for lv in arch.levels:
            for axis in ((None,) if isinstance(lv, Storage) else ("X", "Y")):
                dims = [d for d in DIMS if (lv.name, axis, d) in factor]
                rng.shuffle(dims)
                loops += [Loop(lv.name, d, factor[lv.name, axis, d], axis) for d in dims]
        keep = {s.name: [t for t in s.keeps if t not in s.may_bypass or rng.random() < 0.5]
                for s in arch.storages}
        network = {f.name: {t: rng.choice(f.modes_of(t)) for t in TENSORS} for f in arch.fanouts if f.modes}
        mapping = normalize(loops, arch, keep, network)
        if not problems_of(mapping, layer, arch) and not mapping.is_perfect(layer):
            return mapping
    return None
