"""The K best distinct candidates seen so far, as arrays (cheap to merge across workers),
each with the name of the phase that found it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Pool:
    k: int
    storage_slots: tuple[int, ...]   # slot of each storage level in the encoding
    values: np.ndarray          # [m] objective, ascending
    factors: np.ndarray         # [m, slots, 8]
    orders: np.ndarray          # [m, storages, 8]
    keep: np.ndarray            # [m, storages, 3]
    modes: np.ndarray           # [m, mode fan-outs, 3]
    found_by: tuple[str, ...] = ()   # [m] the phase that offered each candidate first

    @classmethod
    def empty(cls, k: int, enc) -> "Pool":
        storages = len(enc.storage_levels)
        return cls(k, tuple(enc.storage_slot), np.zeros(0), np.zeros((0, enc.n_slots, 8), np.int64),
                   np.zeros((0, storages, 8), np.int64), np.zeros((0, storages, 3), bool),
                   np.zeros((0, len(enc.mode_fans), 3), np.int64))

    @property
    def best(self) -> float:
        return float(self.values[0]) if len(self.values) else float("inf")

    def add(self, values, factors, orders, keep, modes, by: str | Sequence[str] = "") -> "Pool":
        """Merge candidates in, found by `by` (one name for all, or one each); ties keep the
        earlier one (and its finder), so results are deterministic."""
        labels = self.found_by + ((by,) * len(values) if isinstance(by, str) else tuple(by))
        v = np.concatenate([self.values, values])
        f = np.concatenate([self.factors, factors])
        o = np.concatenate([self.orders, orders])
        kp = np.concatenate([self.keep, keep])
        md = np.concatenate([self.modes, modes])
        idx = np.argsort(v, kind="stable")
        # Drop repeats of the same candidate (same factors, order, keep and modes). The
        # orders are compared in canonical form but kept as given: they are rows of the
        # space's order lists, which CP-SAT hints refer to.
        same_order = canonical_orders(f, o, self.storage_slots)
        rows = np.concatenate([f.reshape(len(v), -1), same_order.reshape(len(v), -1), kp.reshape(len(v), -1),
                               md.reshape(len(v), -1)], axis=1)
        chosen, seen = [], set()
        for i in idx:
            key = rows[i].tobytes()
            if key in seen:
                continue
            seen.add(key)
            chosen.append(i)
            if len(chosen) == self.k:
                break
        chosen = np.array(chosen, dtype=np.int64)
        return Pool(self.k, self.storage_slots, v[chosen], f[chosen], o[chosen], kp[chosen], md[chosen],
                    tuple(labels[i] for i in chosen))

    def merge(self, other: "Pool", by: str | None = None) -> "Pool":
        """`other`'s candidates merged in, found by `by` (default: as `other` says)."""
        return self.add(other.values, other.factors, other.orders, other.keep, other.modes,
                        other.found_by if by is None else by)


def canonical_orders(factors: np.ndarray, orders: np.ndarray, storage_slots) -> np.ndarray:
    """Orders with the loops of factor 1 moved behind the others (in dimension order): such
    loops have no order, so two rows that differ only there are the same mapping."""
    out = orders.copy()
    nd = orders.shape[2] if orders.ndim == 3 else 0
    for si, slot in enumerate(storage_slots):
        f = np.take_along_axis(factors[:, slot, :], orders[:, si, :], axis=1)        # factor by position
        key = np.where(f > 1, np.arange(nd)[None, :], nd + orders[:, si, :])         # >1 first, in order
        out[:, si, :] = np.take_along_axis(orders[:, si, :], np.argsort(key, axis=1, kind="stable"), axis=1)
    return out
