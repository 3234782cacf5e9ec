"""Why mappings are invalid, grouped by reason with one example each (as Timeloop's mapper
diagnostics report capacity and fan-out failures per level).

Two samples of random candidates are classified by `mapping.problems_of`, the checker
every mapping goes through: the raw space (every dimension's factors spread over every
level and fan-out axis, constraints ignored: which constraint or capacity rules each
out), and the pruned space the search samples (constraints and single-dimension overflows
already removed: which joint capacity or fan-out limit rules it out). A candidate with
several problems counts once under each of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..arch import Arch
from ..mapping import Mapping, problems_of
from ..problem import DIMS, Layer
from .space import Space, space_of


@dataclass(frozen=True)
class Reason:
    key: str                # the kind of problem, e.g. "level GLB: capacity (Inputs + Outputs)"
    count: int              # candidates with this problem
    example: str            # the first such candidate's message, with its numbers
    mapping: str            # that candidate, in one line


@dataclass(frozen=True)
class Diagnosis:
    space: str              # "raw" or "pruned"
    sampled: int
    valid: int
    reasons: tuple[Reason, ...]     # most frequent first


def reason_key(field: str, message: str) -> str:
    """The kind of a problem: its level and rule, without the candidate's numbers."""
    m = re.match(r"(X|Y) factors multiply to", message)
    if m:
        return f"{field}: {m.group(1)} fan-out overflow (spatial factors exceed the array)"
    m = re.match(r"tiles need \d+ words \((.*?)\) but the capacity is", message)
    if m:
        tensors = " + ".join(part.rsplit(" ", 1)[0] for part in m.group(1).split(" + "))
        return f"{field}: capacity overflow ({tensors})"
    m = re.match(r"tiles need \d+ columns \((\w+) columns along (\w)\)", message)
    if m:
        return f"{field}: column overflow ({m.group(1)} along {m.group(2)})"
    m = re.match(r"dim (\w) unrolled on (X|Y) would need spatial reduction", message)
    if m:
        return f"{field}: {m.group(1)} unrolled on {m.group(2)} (no spatial reduction of Outputs along {m.group(2)})"
    m = re.match(r"dim (\w) may not have a temporal factor", message)
    if m:
        return f"{field}: temporal loop over {m.group(1)} (not in its temporal_dims)"
    m = re.match(r"dim (\w) may not be unrolled on (X|Y)", message)
    if m:
        return f"{field}: {m.group(1)} unrolled on {m.group(2)} (not in its spatial_dims)"
    return f"{field}: " + re.sub(r"\d+", "#", message.split(" (", 1)[0])


def one_line(mapping: Mapping) -> str:
    """A mapping as `level[.axis]: dim factor ...` groups, outermost first."""
    groups: dict[str, list[str]] = {}
    for l in mapping.loops:
        groups.setdefault(l.level + (f".{l.spatial}" if l.spatial else ""), []).append(f"{l.dim}{l.factor}")
    return "; ".join(f"{k}: {' '.join(v)}" for k, v in groups.items())


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


def raw_sample(space: Space, rng: np.random.Generator, n: int):
    """n candidates with each prime factor of each dimension on a random slot (any level or
    fan-out axis), identity loop orders and a random allowed keep pattern."""
    enc = space.enc
    factors = np.ones((n, enc.n_slots, len(DIMS)), dtype=np.int64)
    for d, dim in enumerate(DIMS):
        for p in _primes(space.layer.dims[dim]):
            slot = rng.integers(0, enc.n_slots, n)
            factors[np.arange(n), slot, d] *= p
    orders = np.tile(np.arange(len(DIMS)), (n, len(enc.storage_levels), 1))
    keep = space.keeps[rng.integers(0, len(space.keeps), n)]
    return factors, orders, keep


def diagnose(layer: Layer, arch: Arch, samples: int = 2000, seed: int = 0) -> list[Diagnosis]:
    """The raw and pruned spaces' invalid candidates among `samples` of each, by reason."""
    from .random import sample
    space = space_of(layer, arch)
    rng = np.random.default_rng(seed)
    out = []
    for name in ("raw", "pruned"):
        if name == "raw":
            f, o, k = raw_sample(space, rng, samples)
        else:
            f, o, k = sample(space, rng, samples)
        counts: dict[str, int] = {}
        examples: dict[str, tuple[str, str]] = {}
        valid = 0
        quick = space.valid(f, k)
        for i in range(samples):
            if name == "pruned" and quick[i]:
                valid += 1
                continue
            m = space.enc.decode(f[i], o[i], k[i])
            problems = problems_of(m, layer, arch)
            if not problems:
                valid += 1
                continue
            seen = set()
            for field_, message in problems:
                key = reason_key(field_, message)
                if key in seen:
                    continue
                seen.add(key)
                counts[key] = counts.get(key, 0) + 1
                examples.setdefault(key, (f"{field_}: {message}", one_line(m)))
        reasons = tuple(Reason(key, c, *examples[key]) for key, c in
                        sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        out.append(Diagnosis(name, samples, valid, reasons))
    return out


def diagnosis_text(diags: list[Diagnosis]) -> str:
    """Each sample's valid share and its reasons: count, share, example and its mapping."""
    from ..report import table
    lines = []
    for d in diags:
        what = ("raw space: factors anywhere, constraints ignored" if d.space == "raw" else
                "pruned space: what the search samples")
        lines.append(f"{d.space} ({what}): {d.valid:,} of {d.sampled:,} sampled candidates valid "
                     f"({100 * d.valid / d.sampled:.1f}%)")
        if d.reasons:
            rows = [("reason", "candidates", "share")]
            rows += [(r.key, f"{r.count:,}", f"{100 * r.count / d.sampled:.1f}%") for r in d.reasons]
            lines += table(rows, right={1, 2})
            lines.append("examples (one per reason):")
            for r in d.reasons:
                lines.append(f"  {r.example}")
                lines.append(f"    mapping: {r.mapping}")
        lines.append("")
    lines.append("a candidate with several problems counts under each; capacity is checked only for "
                 "candidates that meet every constraint and fan-out")
    return "\n".join(lines)
