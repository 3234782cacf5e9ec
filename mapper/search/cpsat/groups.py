"""CP-SAT's decision groups: the dimensions chosen jointly and every option of each.

Each sliding pair (P, R) and (Q, S) is one group, every other dimension a group of its
own, so an input tile extent, halo or multicast count is a constant of one group's choice.
An *option* is a complete assignment of the group's factors to the slots.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ...arch import Storage
from ...problem import DIMS, SLIDING_DIMS, SLIDING_PAIRS, tensor_axes
from ..space import Space

#: Dimensions chosen jointly: each sliding pair (an input axis's two dimensions) is one
#: group, every other dimension one on its own.
GROUPS = tuple((d,) for d in DIMS if d not in SLIDING_DIMS) + SLIDING_PAIRS


@dataclass
class Group:
    dims: tuple[int, ...]           # dim indices
    factors: np.ndarray             # [options, slots, len(dims)] factor per slot
    x: list = field(default_factory=list)      # one-hot literals (None when a single option)

    @property
    def n(self) -> int:
        return len(self.factors)


def build_groups(space: Space) -> list[Group]:
    groups = []
    for names in GROUPS:
        dims = tuple(DIMS.index(d) for d in names)
        per = []
        for d in dims:
            full = np.ones((len(space.factorizations[d]), space.enc.n_slots), dtype=np.int64)
            if space.dim_slots[d]:
                full[:, list(space.dim_slots[d])] = space.factorizations[d]
            per.append(full)
        combos = np.array(list(itertools.product(*[range(len(p)) for p in per])), dtype=np.int64)
        fac = np.stack([per[j][combos[:, j]] for j in range(len(dims))], axis=2)
        if len(dims) == 2:
            fac = fac[_joint_fits(space, dims, fac)]
        groups.append(Group(dims, fac))
    return groups


def _joint_fits(space: Space, dims, fac) -> np.ndarray:
    """Options of a (P, R) or (Q, S) group whose input tile alone fits every buffer that
    must keep Inputs (the per-dimension check cannot see the combined halo)."""
    ok = np.ones(len(fac), dtype=bool)
    layer, arch, enc = space.layer, space.arch, space.enc
    axis = [a for a in tensor_axes(layer, "Inputs") if len(a) == 2 and DIMS.index(a[0][0]) in dims][0]
    coef = {DIMS.index(d): c for d, c in axis}
    for si, li in enumerate(enc.storage_levels):
        level: Storage = arch.levels[li]
        part = level.partition_of("Inputs")
        if part is None or "Inputs" in level.may_bypass:
            continue
        slot = enc.storage_slot[si]
        extent = 1 + sum(coef[d] * (np.prod(fac[:, slot:, j], axis=1) - 1) for j, d in enumerate(dims))
        ok &= extent <= part[1]
    return ok
