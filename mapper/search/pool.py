"""The K best distinct candidates seen so far, as arrays (cheap to merge across workers)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Pool:
    k: int
    values: np.ndarray          # [m] objective, ascending
    factors: np.ndarray         # [m, slots, 8]
    orders: np.ndarray          # [m, storages, 8]
    keep: np.ndarray            # [m, storages, 3]

    @classmethod
    def empty(cls, k: int, slots: int, storages: int) -> "Pool":
        return cls(k, np.zeros(0), np.zeros((0, slots, 8), np.int64), np.zeros((0, storages, 8), np.int64),
                   np.zeros((0, storages, 3), bool))

    @property
    def best(self) -> float:
        return float(self.values[0]) if len(self.values) else float("inf")

    def add(self, values, factors, orders, keep) -> "Pool":
        """Merge candidates in; ties keep the earlier one, so results are deterministic."""
        v = np.concatenate([self.values, values])
        f = np.concatenate([self.factors, factors])
        o = np.concatenate([self.orders, orders])
        kp = np.concatenate([self.keep, keep])
        idx = np.argsort(v, kind="stable")
        # Drop repeats of the same candidate (same factors, order and keep).
        rows = np.concatenate([f.reshape(len(v), -1), o.reshape(len(v), -1), kp.reshape(len(v), -1)], axis=1)
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
        return Pool(self.k, v[chosen], f[chosen], o[chosen], kp[chosen])

    def merge(self, other: "Pool") -> "Pool":
        return self.add(other.values, other.factors, other.orders, other.keep)
