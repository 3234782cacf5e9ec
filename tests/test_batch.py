"""The numpy batch model (`mapper.batch`) against the scalar model (`mapper.model`).

Candidates are drawn the way search draws them (`mapper.search.random.sample` from the
pruned `Space`, filtered by `space.valid`), decoded to `Mapping`s, and evaluated both ways:
every storage level's reads, fills and updates per tensor must be identical, energy equal
to 1e-12 relative, cycles identical. Layers: real ones (AlexNet conv1/conv2/fc6, MobileNet
dw2/pw1) and tiny ones with stride 2, dilation 2, batch 2 and depthwise, on both Eyeriss
level structures. Also: encode/decode round trips, and `space.valid` / `capacity_ok` agree
with `problems_of(...) == []`.
"""
from __future__ import annotations

import dataclasses
import zlib
from functools import lru_cache

import numpy as np
import pytest
import yaml

from mapper.arch import load_arch, parse_arch
from mapper.batch import Encoding, capacity_ok, evaluate_batch
from mapper.mapping import Loop, normalize, problems_of
from mapper.model import evaluate
from mapper.problem import DIMS, TENSORS, layer_from_dims, load_network
from mapper.search.random import sample
from mapper.search.space import Space

ARCHS = ("eyeriss_v1", "eyeriss_v2")
PER_CASE = 240           # valid candidates compared per (arch, layer): >= 200 everywhere


def _real(problem, name):
    return lambda: load_network(problem).layer(name)


LAYERS = {
    "alexnet.conv1": _real("alexnet", "conv1"),       # stride 4, 11x11
    "alexnet.conv2": _real("alexnet", "conv2"),       # 2 groups
    "alexnet.fc6": _real("alexnet", "fc6"),
    "mobilenet.dw2": _real("mobilenet_v1", "dw2"),    # depthwise, stride 2
    "mobilenet.pw1": _real("mobilenet_v1", "pw1"),
    "tiny.stride2": lambda: layer_from_dims("stride2", M=4, C=3, P=5, Q=6, R=3, S=3, stride=(2, 2)),
    "tiny.dilation2": lambda: layer_from_dims("dilation2", M=4, C=2, P=6, Q=4, R=3, S=3, dilation=(2, 2)),
    "tiny.batch2": lambda: layer_from_dims("batch2", N=2, M=6, C=4, P=4, Q=4, R=3, S=3),
    "tiny.dw_stride21": lambda: layer_from_dims("dw", G=8, P=6, Q=6, R=3, S=3, stride=(2, 1)),
    "tiny.mixed": lambda: layer_from_dims("mixed", N=2, G=2, M=3, C=2, P=4, Q=3, R=2, S=3, stride=(1, 2),
                                          dilation=(2, 1)),
}
CASES = [(a, l) for a in ARCHS for l in LAYERS]
# Eyeriss v2's structure with every arch-format feature of issue 11 (per-cycle energy,
# per-tensor ports, reduction axes, column limits, non-zero capacities, a SIMD fan-out)
CASES += [("features", l) for l in ("mobilenet.dw2", "mobilenet.pw1", "tiny.stride2", "tiny.dw_stride21",
                                    "tiny.mixed")]


@lru_cache(maxsize=None)
def arch_of(name):
    if name == "features":
        from test_arch_features import FEATURES
        return parse_arch(yaml.safe_load(FEATURES), "<features>")
    return load_arch(name)


@lru_cache(maxsize=None)
def layer_of(name):
    return LAYERS[name]()


@lru_cache(maxsize=None)
def space_of(arch_name, layer_name) -> Space:
    return Space.build(layer_of(layer_name), arch_of(arch_name))


def seed_of(*names) -> int:
    return zlib.crc32("/".join(names).encode())


@lru_cache(maxsize=None)
def valid_candidates(arch_name, layer_name, n=PER_CASE):
    """n valid candidates (factors, orders, keep), sampled with a fixed seed."""
    space = space_of(arch_name, layer_name)
    rng = np.random.default_rng(seed_of(arch_name, layer_name))
    parts, have = [], 0
    for _ in range(200):
        f, o, k = sample(space, rng, 4096)
        ok = space.valid(f, k)
        parts.append((f[ok], o[ok], k[ok]))
        have += int(ok.sum())
        if have >= n:
            break
    f, o, k = (np.concatenate([p[i] for p in parts])[:n] for i in range(3))
    assert len(f) == n, f"only {len(f)} valid candidates of {layer_name} on {arch_name}"
    return f, o, k


def scalar_counts(cost, enc: Encoding, arch):
    """[storages, 3 tensors, 3 (reads, fills, updates)] from a scalar Cost (0 if not kept)."""
    out = np.zeros((len(enc.storage_levels), 3, 3), dtype=np.int64)
    for si, li in enumerate(enc.storage_levels):
        per = cost.levels[arch.levels[li].name]
        for ti, t in enumerate(TENSORS):
            if t in per:
                c = per[t]
                out[si, ti] = (c.reads, c.fills, c.updates)
    return out


def differences(arch_name, layer_name, limit=3):
    arch, layer = arch_of(arch_name), layer_of(layer_name)
    space = space_of(arch_name, layer_name)
    enc = space.enc
    f, o, k = valid_candidates(arch_name, layer_name)
    batch = evaluate_batch(enc, f, o, k, with_counts=True)
    assert batch.counts.shape == (len(f), len(enc.storage_levels), 3, 3)
    bad = []
    for j in range(len(f)):
        mapping = enc.decode(f[j], o[j], k[j], batch.modes[j])   # the network modes the batch chose
        cost = evaluate(layer, arch, mapping)       # validates the mapping too
        want = scalar_counts(cost, enc, arch)
        got = batch.counts[j]
        problems = []
        if not np.array_equal(got, want):
            for si, ti, a in zip(*np.nonzero(got != want)):
                level = arch.levels[enc.storage_levels[si]].name
                what = ("reads", "fills", "updates")[a]
                problems.append(f"{level}.{TENSORS[ti]}.{what}: batch {got[si, ti, a]:g} scalar {want[si, ti, a]}")
        if batch.energy_pj[j] != pytest.approx(cost.energy_pj, rel=1e-12, abs=0):
            problems.append(f"energy: batch {batch.energy_pj[j]!r} scalar {cost.energy_pj!r}")
        if batch.cycles[j] != cost.cycles:
            problems.append(f"cycles: batch {batch.cycles[j]} scalar {cost.cycles}")
        if batch.compute_cycles[j] != cost.compute_cycles:
            problems.append(f"compute cycles: batch {batch.compute_cycles[j]} scalar {cost.compute_cycles}")
        if problems:
            bad.append(f"candidate {j} {mapping.to_dict()}: " + "; ".join(problems))
    return bad, len(f)


@pytest.mark.parametrize("arch_name, layer_name", CASES)
def test_batch_equals_scalar(arch_name, layer_name):
    bad, n = differences(arch_name, layer_name)
    assert n >= 200
    assert not bad, f"{len(bad)} of {n} candidates differ:\n" + "\n".join(bad[:3])


def test_comparison_covers_interesting_cases():
    """The candidates compared above include both keep patterns of Eyeriss v1 (GLB keeps or
    bypasses Weights), spatial loops on every fan-out axis, and Eyeriss v2 candidates with
    more than two exact-multicast progressions on one input axis (the non-closed-form path)."""
    keeps = set()
    many_progressions = 0
    axes_used = set()
    for arch_name, layer_name in CASES:
        space = space_of(arch_name, layer_name)
        f, o, k = valid_candidates(arch_name, layer_name)
        arch = arch_of(arch_name)
        glb = space.enc.storage_levels.index(arch.index("GLB"))
        if arch_name == "eyeriss_v1":
            keeps |= {bool(x) for x in k[:, glb, TENSORS.index("Weights")]}
        for s, (li, kind) in enumerate(space.enc.slots):
            if kind != "T" and (f[:, s, :] > 1).any():
                axes_used.add((arch_name, arch.levels[li].name, kind))
        layer = layer_of(layer_name)
        # input rows combine P and R; count non-trivial P/R factors on one fan-out's X and Y
        for li, level in enumerate(arch.levels):
            slots = [s for s, (lj, kind) in enumerate(space.enc.slots) if lj == li and kind != "T"]
            if len(slots) == 2 and (layer.R > 1 or layer.S > 1):
                pr = [(f[:, s, DIMS.index(d)] > 1) for s in slots for d in "PR"]
                qs = [(f[:, s, DIMS.index(d)] > 1) for s in slots for d in "QS"]
                many_progressions += int(((np.sum(pr, axis=0) > 2) | (np.sum(qs, axis=0) > 2)).sum())
    assert keeps == {True, False}
    assert {("eyeriss_v1", "array", "X"), ("eyeriss_v1", "array", "Y"), ("eyeriss_v2", "cluster_array", "X"),
            ("eyeriss_v2", "cluster_array", "Y"), ("eyeriss_v2", "pe_cluster", "X"),
            ("eyeriss_v2", "pe_cluster", "Y")} <= axes_used
    assert many_progressions > 0


def test_comparison_covers_unchanged_input_tiles():
    """Many compared candidates have a step outside the innermost relevant loop that brings
    an input tile back onto the rows or columns its buffer holds (fetching nothing), so the
    equality above pins the batch's count of those steps."""
    from mapper.arch import Storage
    from mapper.model import _Nest
    from mapper.problem import RELEVANT
    hits = 0
    for arch_name, layer_name in CASES:
        arch, layer = arch_of(arch_name), layer_of(layer_name)
        enc = space_of(arch_name, layer_name).enc
        f, o, k = valid_candidates(arch_name, layer_name)
        for j in range(len(f)):
            mapping = enc.decode(f[j], o[j], k[j])
            nest = _Nest(layer, arch, mapping)
            for li, level in enumerate(arch.levels):
                if not isinstance(level, Storage) or "Inputs" not in mapping.kept(level.name):
                    continue
                outer = [x for x in nest.outer_temporal(li) if nest.loops[x][1] in RELEVANT["Inputs"]]
                if any(nest.unchanged("Inputs", li, x) for x in outer[:-1]):
                    hits += 1
                    break
    assert hits >= 20, hits


def _with_array(arch, **changes):
    """`arch` with its array fan-out changed (a variant no arch file has)."""
    return dataclasses.replace(arch, name=arch.name + "+variant", levels=tuple(
        dataclasses.replace(level, **changes) if level.name == "array" else level for level in arch.levels))


NETWORK_VARIANTS = {
    # no network energy: the batch skips the words carried (they would add exactly 0.0)
    "no energy": dict(energy=(("Weights", 0.0), ("Inputs", 0.0), ("Outputs", 0.0))),
    # some tensors free and unlimited, others charged and limited by ports
    "mixed": dict(energy=(("Weights", 0.0), ("Inputs", 2.0), ("Outputs", 0.0)),
                  port_words=(("Inputs", 1.0), ("Outputs", 2.0)), port_counts=(("Inputs", 2),)),
}


@pytest.mark.parametrize("variant", NETWORK_VARIANTS)
def test_batch_equals_scalar_network_variants(variant):
    """The batch model evaluates a fan-out's carried words only where it charges energy, and
    its demand only where it has a bandwidth limit: with and without each, it still equals the
    scalar model (Eyeriss v1 with its array changed; both keep patterns in one batch)."""
    arch = _with_array(arch_of("eyeriss_v1"), **NETWORK_VARIANTS[variant])
    for layer in (layer_of("tiny.stride2"), layer_of("alexnet.conv2")):
        space = Space.build(layer, arch)
        f, o, k = sample(space, np.random.default_rng(seed_of(variant, layer.name)), 4096)
        ok = space.valid(f, k)
        f, o, k = f[ok][:120], o[ok][:120], k[ok][:120]
        assert len(set(map(bytes, k))) > 1
        batch = evaluate_batch(space.enc, f, o, k, with_counts=True)
        for j in range(len(f)):
            cost = evaluate(layer, arch, space.enc.decode(f[j], o[j], k[j]))
            assert np.array_equal(batch.counts[j], scalar_counts(cost, space.enc, arch)), (variant, layer.name, j)
            assert batch.energy_pj[j] == pytest.approx(cost.energy_pj, rel=1e-12, abs=0)
            assert batch.cycles[j] == cost.cycles


# ---------------------------------------------------------------------------------------
# A hand-derived case with an irrelevant loop at a level inside the one holding the
# innermost relevant loop (a working-tree version of batch.py multiplied the sweeps by it,
# giving psum_spad fills of 2600 instead of 800; fixed in 8de9ff2).

def hand_case():
    """Layer: N1 G1 M4 C3 P5 Q5 R3 S3, stride 2, on Eyeriss v1. Loops, outermost first:
    DRAM P5 S3 | GLB Q5 R3 M4 | weights_spad C3; GLB bypasses Weights."""
    layer = layer_from_dims("hand", M=4, C=3, P=5, Q=5, R=3, S=3, stride=(2, 2))
    arch = arch_of("eyeriss_v1")
    loops = [Loop("DRAM", "P", 5), Loop("DRAM", "S", 3), Loop("GLB", "Q", 5), Loop("GLB", "R", 3),
             Loop("GLB", "M", 4), Loop("weights_spad", "C", 3)]
    mapping = normalize(loops, arch, {"GLB": ["Inputs", "Outputs"]})
    return layer, arch, mapping


# psum_spad holds one output point (its tile: no loops below it). The loops outside it are
# P5 S3 Q5 R3 M4 C3; the innermost one relevant to Outputs (N G M P Q) is M (bound 4), and
# C3 inside it leaves the point resident. Sweeps = product of the loops outside M =
# 5*3*5*3 = 225; each sweep fetches 1 + (4-1)*1 = 4 points: 900 tile visits. The first touch
# of each of the 4*5*5 = 100 outputs is not fetched: fills = 900 - 100 = 800. Every visit is
# written back to GLB: 900 updates there, and GLB sends 800 partial sums back down (reads).
# psum_spad itself: one update per MAC (4*3*5*5*3*3 = 2700) and a read for all but the
# first touch of each point: 2700 - 100 = 2600.
HAND = {("psum_spad", "Outputs"): (2600, 800, 2700), ("GLB", "Outputs"): (800, 0, 900)}


def test_hand_derived_psum_fills_scalar():
    layer, arch, mapping = hand_case()
    assert problems_of(mapping, layer, arch) == []
    cost = evaluate(layer, arch, mapping)
    for (level, t), (reads, fills, updates) in HAND.items():
        c = cost.levels[level][t]
        assert (c.reads, c.fills, c.updates) == (reads, fills, updates), (level, t)


def test_hand_derived_psum_fills_batch():
    layer, arch, mapping = hand_case()
    enc = Encoding.of(layer, arch)
    f, o, k = enc.encode(mapping)
    batch = evaluate_batch(enc, f[None], o[None], k[None], enc.encode_modes(mapping)[None], with_counts=True)
    for (level, t), want in HAND.items():
        si = enc.storage_levels.index(arch.index(level))
        got = tuple(batch.counts[0, si, TENSORS.index(t)])
        assert got == want, (level, t, got, want)


# ---------------------------------------------------------------------------------------
# Internal consistency of the batch path (independent of the scalar model)

def test_batch_size_does_not_change_results():
    """One call on 9000 candidates (more than any internal block size) equals 9 calls of 1000
    and 9000 calls of one; mixed keep patterns in one call equal separate calls."""
    arch_name, layer_name = "eyeriss_v1", "alexnet.conv2"
    space = space_of(arch_name, layer_name)
    rng = np.random.default_rng(7)
    parts = []
    have = 0
    while have < 9000:
        f, o, k = sample(space, rng, 8192)
        ok = space.valid(f, k)
        parts.append((f[ok], o[ok], k[ok]))
        have += int(ok.sum())
    f, o, k = (np.concatenate([p[i] for p in parts])[:9000] for i in range(3))
    whole = evaluate_batch(space.enc, f, o, k, with_counts=True)
    pieces = [evaluate_batch(space.enc, f[i:i + 1000], o[i:i + 1000], k[i:i + 1000], with_counts=True)
              for i in range(0, 9000, 1000)]
    assert np.array_equal(whole.energy_pj, np.concatenate([p.energy_pj for p in pieces]))
    assert np.array_equal(whole.cycles, np.concatenate([p.cycles for p in pieces]))
    assert np.array_equal(whole.counts, np.concatenate([p.counts for p in pieces]))
    for j in range(0, 9000, 997):
        one = evaluate_batch(space.enc, f[j:j + 1], o[j:j + 1], k[j:j + 1], with_counts=True)
        assert one.energy_pj[0] == pytest.approx(whole.energy_pj[j], rel=1e-12)
        assert one.cycles[0] == whole.cycles[j]
        assert np.array_equal(one.counts[0], whole.counts[j])
    # without counts: same energies
    plain = evaluate_batch(space.enc, f[:2000], o[:2000], k[:2000])
    assert plain.counts is None
    assert np.array_equal(plain.energy_pj, whole.energy_pj[:2000])


# ---------------------------------------------------------------------------------------
# Encoding round trips

@pytest.mark.parametrize("arch_name, layer_name", CASES)
def test_encode_decode_round_trip(arch_name, layer_name):
    space = space_of(arch_name, layer_name)
    enc = space.enc
    layer = layer_of(layer_name)
    f, o, k = valid_candidates(arch_name, layer_name)
    for j in range(len(f)):
        mapping = enc.decode(f[j], o[j], k[j])
        # the decoded mapping schedules the whole layer
        product = {d: 1 for d in DIMS}
        for loop in mapping.loops:
            product[loop.dim] *= loop.factor
            assert loop.factor > 1
        assert product == layer.dims
        f2, o2, k2 = enc.encode(mapping)
        assert np.array_equal(f2, f[j])
        assert np.array_equal(k2, k[j])
        assert enc.decode(f2, o2, k2, enc.encode_modes(mapping)) == mapping
        # the order of loops with factor > 1 survives
        for si in range(len(enc.storage_levels)):
            slot = enc.storage_slot[si]
            moving = [d for d in o[j, si] if f[j, slot, d] > 1]
            assert [d for d in o2[si] if f2[slot, d] > 1] == moving
            assert sorted(o2[si].tolist()) == list(range(len(DIMS)))     # a permutation


# ---------------------------------------------------------------------------------------
# Validity: the fast checks agree with problems_of

@pytest.mark.parametrize("arch_name, layer_name", CASES)
def test_valid_agrees_with_problems_of(arch_name, layer_name):
    space = space_of(arch_name, layer_name)
    enc = space.enc
    layer, arch = layer_of(layer_name), arch_of(arch_name)
    rng = np.random.default_rng(seed_of("valid", arch_name, layer_name))
    seen = {True: 0, False: 0}
    for _ in range(50):
        f, o, k = sample(space, rng, 300)
        valid = space.valid(f, k)
        fits = capacity_ok(enc, f, k)
        for j in range(len(f)):
            problems = problems_of(enc.decode(f[j], o[j], k[j]), layer, arch)
            assert (problems == []) == bool(valid[j]), (j, problems)
            if not valid[j]:
                text = " ".join(m for _, m in problems)
                if not fits[j]:
                    # problems_of reports capacity only once the fan-outs fit
                    assert "capacity" in text or "fan-out has" in text, problems
                else:
                    assert "fan-out has" in text and "capacity" not in text, problems
            seen[bool(valid[j])] += 1
        if seen[True] >= 20 and seen[False] >= 20:
            break
    assert seen[True] > 0 and seen[False] > 0, seen
