"""Random valid mappings with remainders (imperfect factorization) for the oracle tests."""
from __future__ import annotations

import math
import random

from mapper.arch import Storage
from mapper.mapping import problems_of

from test_oracle import mapping_of_factors


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
        mapping = mapping_of_factors(arch, factor, rng)
        if not problems_of(mapping, layer, arch) and not mapping.is_perfect(layer):
            return mapping
    return None
