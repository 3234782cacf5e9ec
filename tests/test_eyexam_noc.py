"""Eyexam names the network bandwidth where a flat single-network array loses (issue 11).

Two toy archs with the same 8 PEs and buffers differ only in their network: `flat` is
Eyeriss v1-like (one broadcast network per tensor, one port of one word per cycle), `mesh`
is Eyeriss v2-like (unicast streams, one per PE, with two such ports per tensor). For a
depthwise and an FC layer the step-6 (average bandwidth) bound is derived by hand below:
an upper bound from the words that must cross the network at least once, and a mapping
that attains it, evaluated with the model. The search is exhaustive (no time limit), so
the bound it finds is the true optimum whatever the machine's speed.
"""
from __future__ import annotations

import pytest
import yaml

from mapper.arch import parse_arch
from mapper.eyexam import EyexamResult, binding_bandwidth, eyexam, format_table, network_summary
from mapper.mapping import Loop, normalize
from mapper.model import evaluate
from mapper.problem import layer_from_dims

PES = 8
REG = 64

BASE = """
name: NAME
mac: {energy: 1.0}
levels:
  - {name: DRAM, keeps: [Weights, Inputs, Outputs], energy: 100.0}
  - name: array
    fanout: {X: 4, Y: 2}
    spatial_dims: {X: [G, M], Y: [G, M]}
NETWORK
  - {name: reg, capacity: 64, keeps: [Weights, Inputs, Outputs], energy: 1.0}
"""
# v1-like: one network per tensor, one 1-word port: 1 word/cycle per tensor.
FLAT = """    modes: {Weights: [broadcast], Inputs: [broadcast], Outputs: [broadcast]}
    port_words: {Weights: 1, Inputs: 1, Outputs: 1}"""
# v2-like: each PE may get its own stream, 2 ports of 1 word each: 8 x 2 = 16 words/cycle.
MESH = """    modes: {Weights: [unicast, broadcast], Inputs: [unicast, broadcast], Outputs: [unicast]}
    ports: {Weights: 2, Inputs: 2, Outputs: 2}
    port_words: 1"""


def arch(name: str):
    text = BASE.replace("NAME", name).replace("NETWORK", {"flat": FLAT, "mesh": MESH}[name])
    return parse_arch(yaml.safe_load(text), name)


# Depthwise: 8 channels, 4 x 4 outputs, 3 x 3 filters, no padding: inputs 6 x 6 per channel.
DW = layer_from_dims("dw", G=8, P=4, Q=4, R=3, S=3)
DW_WORDS = {"Inputs": 8 * 6 * 6, "Weights": 8 * 3 * 3, "Outputs": 8 * 4 * 4}   # 288, 72, 128
DW_MACS = 8 * 4 * 4 * 3 * 3                                                    # 1,152
# FC: 16 inputs, 8 outputs: 128 weights, each used by one MAC.
FC = layer_from_dims("fc", C=16, M=8)
FC_WORDS = {"Inputs": 16, "Weights": 16 * 8, "Outputs": 8}
FC_MACS = 16 * 8

# layer, MACs, words per tensor, the tensor with the most words (the flat arch's bottleneck)
CASES = {"dw": (DW, DW_MACS, DW_WORDS, "Inputs"), "fc": (FC, FC_MACS, FC_WORDS, "Weights")}


def by_hand_mapping(layer, a, mode):
    """Every PE its own channel (dw) or output (fc), the rest of the layer in its register:
    each word crosses the network once. The per-PE tile: dw 36 + 9 + 16 = 61, fc 16 + 16 + 1
    = 33 words, both within the register's 64."""
    spread = "G" if layer.dims["G"] > 1 else "M"
    loops = [Loop("array", spread, 4, "X"), Loop("array", spread, 2, "Y")]
    loops += [Loop("reg", d, n, None) for d, n in layer.dims.items() if d != spread and n > 1]
    network = {"array": {"Weights": mode, "Inputs": mode if mode == "unicast" else "broadcast",
                         "Outputs": "unicast" if a.name == "mesh" else "broadcast"}}
    return normalize(loops, a, network=network)


def hand_bounds(name: str, case: str) -> tuple[float, float]:
    """(step 5, step 6) in MACs/cycle, by hand. Step 5: all 8 PEs busy (the tile fits).
    Step 6: every word a PE uses crosses the network at least once, so the cycles are at
    least max(compute, words / words-per-cycle per tensor); the flat arch moves 1 word per
    cycle, the mesh 16 (unicast) or 2 (broadcast, one stream x 2 ports)."""
    _, macs, words, _ = CASES[case]
    compute = macs / PES
    per_cycle = 1 if name == "flat" else 16
    cycles = max([compute] + [w / per_cycle for w in words.values()])
    return macs / compute, macs / cycles


@pytest.mark.parametrize("name", ["flat", "mesh"])
@pytest.mark.parametrize("case", ["dw", "fc"])
def test_the_hand_mapping_attains_the_hand_bound(name, case):
    layer, macs, words, busiest = CASES[case]
    a = arch(name)
    m = by_hand_mapping(layer, a, "broadcast" if name == "flat" else "unicast")
    cost = evaluate(layer, a, m)
    _, b6 = hand_bounds(name, case)
    assert cost.compute_cycles == macs // PES
    assert cost.cycles == pytest.approx(macs / b6)
    if name == "flat":          # the busiest network takes one cycle per word
        assert cost.level_cycles[f"array {busiest}"] == pytest.approx(words[busiest])


@pytest.fixture(scope="module")
def results():
    return {(n, c): eyexam(CASES[c][0], arch(n), objective="delay", algorithm="exhaustive", time_limit=None)
            for n in ("flat", "mesh") for c in CASES}


@pytest.mark.parametrize("case", ["dw", "fc"])
def test_flat_network_loses_at_the_bandwidth_step(results, case):
    r = results[("flat", case)]
    b5, b6 = hand_bounds("flat", case)
    busiest = CASES[case][3]
    assert r.step(4).bound == PES
    assert r.step(5).bound == pytest.approx(b5) == PES
    assert r.step(6).bound == pytest.approx(b6)
    assert b6 <= PES / 2                      # dw: 4, fc: 1 MAC/cycle of 8
    assert r.biggest_loss == 6
    binding = r.step(6).detail["binding"]
    assert binding["name"] == f"array {busiest} network"
    assert binding["kind"] == "network" and binding["words_per_cycle"] == 1
    assert binding["mode"] == "broadcast" and binding["streams"] == 1
    assert f"array {busiest} network: 1 words/cycle" in r.step(6).note
    assert "=> biggest loss: step 6 (average bandwidth)" in format_table(r)


@pytest.mark.parametrize("case", ["dw", "fc"])
def test_mesh_network_does_not_lose_there(results, case):
    r = results[("mesh", case)]
    b5, b6 = hand_bounds("mesh", case)
    assert r.step(5).bound == pytest.approx(b5) == PES
    assert r.step(6).bound == pytest.approx(b6) == PES
    assert r.step(6).loss == 0 and r.step(6).peak_loss_pct == 0
    assert r.step(6).detail["binding"] is None
    assert r.biggest_loss != 6
    assert r.step(6).note.startswith("no loss")


def test_the_reason_survives_json_and_the_network_note_names_it(results):
    flat = [EyexamResult.from_dict(results[("flat", c)].to_dict()) for c in CASES]
    assert flat[0].step(6).detail["binding"]["name"] == "array Inputs network"
    summary = network_summary(flat)
    note = summary["steps"][5]["note"]
    # added cycles at step 6, by hand: dw 288 - 144 = 144 (Inputs), fc 128 - 16 = 112 (Weights)
    assert note.startswith("most cycles added by dw (+144 cycles)")
    assert "by bandwidth: array Inputs network +144 cycles in 1 layer, array Weights network +112 cycles in 1 layer" \
        in note
    mesh = network_summary([results[("mesh", c)] for c in CASES])
    assert "network" not in mesh["steps"][5]["note"]


def test_storage_bandwidth_is_named_with_its_limit():
    """A level's own bandwidth: the FC layer's 128 weights at 4 words/cycle of DRAM reads
    take 32 cycles, more than the 16 compute cycles."""
    text = BASE.replace("NAME", "slow_dram").replace("NETWORK", "").replace(
        "energy: 100.0}", "energy: 100.0, bandwidth: {read: 4, write: 8}}")
    a = parse_arch(yaml.safe_load(text), "slow_dram")
    m = by_hand_mapping(FC, a, "broadcast")
    cost = evaluate(FC, a, m)
    b = binding_bandwidth(cost, m, a)
    assert b["name"] == "DRAM read bandwidth" and b["words_per_cycle"] == 4
    assert b["cycles"] == pytest.approx((FC_WORDS["Weights"] + FC_WORDS["Inputs"]) / 4)


def test_a_per_instance_level_bandwidth_names_its_instances():
    """The register at 1 write per cycle: per PE the FC layer fills 16 weights and 16 inputs
    and updates its output once per MAC (16), 48 writes, 48 cycles; 8 instances."""
    text = BASE.replace("NAME", "slow_reg").replace("NETWORK", "").replace(
        "Outputs], energy: 1.0}", "Outputs], energy: 1.0, bandwidth: {write: 1}}")
    a = parse_arch(yaml.safe_load(text), "slow_reg")
    m = by_hand_mapping(FC, a, "broadcast")
    b = binding_bandwidth(evaluate(FC, a, m), m, a)
    assert b["name"] == "reg write bandwidth" and b["instances"] == PES
    assert b["cycles"] == pytest.approx(16 + 16 + 16)
    assert b["text"] == "reg write bandwidth: 1 words/cycle per instance (8 instances)"
