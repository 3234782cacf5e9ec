"""Writes the hostile-input corpus next to this file (run it after changing a case).

Every case is a small file in a folder named for the reader it attacks (problem, arch,
mapping, result, eyexam, summary, timeloop) and an entry in expect.json: the words the
one-line error must contain (the field, or what is wrong). Large inputs (bombs, deep
nesting, huge integers, oversized files, FIFOs) are made inside tests/test_hostile.py
instead of being stored.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAYER = "{name: a, type: conv, C: 8, M: 8, H: 8, W: 8, R: 3, S: 3}"
ARCH_HEAD = "name: mini\nmac: {energy: 1.0}\n"
DRAM = "  - {name: DRAM, keeps: [Weights, Inputs, Outputs], energy: 200.0}\n"
BUF = "  - {name: buf, keeps: [Weights, Inputs, Outputs], capacity: 4096, energy: 6.0}\n"
ARRAY = "  - {name: array, fanout: {X: 4, Y: 4}, energy: 2.0}\n"
RF = "  - {name: rf, keeps: [Weights], capacity: 16, energy: 1.0}\n"
MODES = "modes: {Weights: [broadcast], Inputs: [broadcast], Outputs: [unicast]}"


def problem(layers: str, head: str = "name: net\n") -> str:
    return head + "layers:\n" + layers


def one(layer: str, head: str = "name: net\n") -> str:
    return problem(f"  - {layer}\n", head)


def arch(*levels: str, head: str = ARCH_HEAD) -> str:
    return head + "levels:\n" + "".join(levels)


def with_field(**fields) -> str:
    body = LAYER[1:-1]
    for k, v in fields.items():
        body += f", {k}: {v}"
    return "{" + body + "}"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdef", "bcdefg")) + "layers: [*g]\n"

CASES: dict[str, tuple[str | bytes, list[str]]] = {
    # ---- problem files (mapper layers FILE)
    "problem/top_list.yaml": ("- a\n- b\n", ["top level", "mapping"]),
    "problem/top_scalar.yaml": ("just a string\n", ["top level"]),
    "problem/empty.yaml": ("", ["top level"]),
    "problem/comment_only.yaml": ("# nothing here\n", ["top level"]),
    "problem/no_name.yaml": ("layers:\n  - " + LAYER + "\n", ["name", "missing"]),
    "problem/no_layers.yaml": ("name: net\n", ["layers", "missing"]),
    "problem/layers_mapping.yaml": ("name: net\nlayers: {a: 1}\n", ["layers"]),
    "problem/layers_empty.yaml": ("name: net\nlayers: []\n", ["layers"]),
    "problem/layers_string.yaml": ("name: net\nlayers: conv1\n", ["layers"]),
    "problem/layer_scalar.yaml": (problem("  - 42\n"), ["layers[0]"]),
    "problem/layer_null.yaml": (problem("  - null\n"), ["layers[0]"]),
    "problem/layer_list.yaml": (problem("  - [1, 2]\n"), ["layers[0]"]),
    "problem/unknown_field.yaml": (one(with_field(chanels=3)), ["chanels", "unknown field"]),
    "problem/unknown_top.yaml": ("name: net\nlayerz: []\nlayers:\n  - " + LAYER + "\n", ["layerz"]),
    "problem/dup_key.yaml": ("name: net\nname: other\nlayers:\n  - " + LAYER + "\n", ["name", "twice"]),
    "problem/dup_layer_key.yaml": (one("{name: a, name: b, type: fc, C: 4, M: 4}"), ["twice"]),
    "problem/dup_layer_name.yaml": (problem(f"  - {LAYER}\n  - {LAYER}\n"), ["layers[1].name", "duplicate"]),
    "problem/c_negative.yaml": (one(LAYER.replace("C: 8", "C: -8")), ["layers[0].C", "at least"]),
    "problem/c_zero.yaml": (one(LAYER.replace("C: 8", "C: 0")), ["layers[0].C"]),
    "problem/c_fraction.yaml": (one(LAYER.replace("C: 8", "C: 3.5")), ["layers[0].C", "whole"]),
    "problem/c_string.yaml": (one(LAYER.replace("C: 8", "C: eight")), ["layers[0].C"]),
    "problem/c_bool.yaml": (one(LAYER.replace("C: 8", "C: true")), ["layers[0].C"]),
    "problem/c_inf.yaml": (one(LAYER.replace("C: 8", "C: .inf")), ["layers[0].C"]),
    "problem/c_nan.yaml": (one(LAYER.replace("C: 8", "C: .nan")), ["layers[0].C"]),
    "problem/c_1e30.yaml": (one(LAYER.replace("C: 8", "C: 1.0e+30")), ["layers[0].C", "at most"]),
    "problem/c_1e308.yaml": (one(LAYER.replace("C: 8", "C: 1.0e+308")), ["layers[0].C", "at most"]),
    "problem/c_2p62.yaml": (one(LAYER.replace("C: 8", f"C: {2 ** 62}")), ["layers[0].C", "at most"]),
    "problem/c_mersenne61.yaml": (one(LAYER.replace("C: 8", f"C: {2 ** 61 - 1}")), ["layers[0].C"]),
    "problem/c_prime_over_dim.yaml": (one(f"{{name: a, type: fc, C: 16777259, M: 4}}"), ["layers[0].C", "limit"]),
    "problem/m_over_dim.yaml": (one(f"{{name: a, type: fc, C: 4, M: {2 ** 30}}}"), ["layers[0].M", "limit"]),
    "problem/macs_over.yaml": (one("{name: a, type: conv, C: 4000000, M: 4000000, H: 300, W: 300, R: 1, S: 1}"),
                               ["MACs", "limit"]),
    "problem/batch_over.yaml": ("name: net\nbatch: 20000000\nlayers:\n  - " + LAYER + "\n", ["limit"]),
    "problem/batch_zero.yaml": ("name: net\nbatch: 0\nlayers:\n  - " + LAYER + "\n", ["batch"]),
    "problem/batch_string.yaml": ("name: net\nbatch: many\nlayers:\n  - " + LAYER + "\n", ["batch"]),
    "problem/n_zero.yaml": (one(with_field(N=0)), ["layers[0].N"]),
    "problem/h_small.yaml": (one(LAYER.replace("H: 8", "H: 2")), ["layers[0]"]),
    "problem/h_missing.yaml": (one("{name: a, type: conv, C: 8, M: 8, W: 8, R: 3, S: 3}"), ["layers[0].H"]),
    "problem/h_null.yaml": (one(LAYER.replace("H: 8", "H: null")), ["layers[0].H"]),
    "problem/r_list.yaml": (one(LAYER.replace("R: 3", "R: [3, 3]")), ["layers[0].R"]),
    "problem/stride_zero.yaml": (one(with_field(stride=0)), ["layers[0].stride"]),
    "problem/stride_three.yaml": (one(with_field(stride="[1, 2, 3]")), ["layers[0].stride"]),
    "problem/stride_string.yaml": (one(with_field(stride="two")), ["layers[0].stride"]),
    "problem/stride_huge.yaml": (one(with_field(stride=2 ** 50)), ["layers[0].stride"]),
    "problem/dilation_negative.yaml": (one(with_field(dilation=-1)), ["layers[0].dilation"]),
    "problem/pad_word.yaml": (one(with_field(pad="valid")), ["layers[0].pad"]),
    "problem/pad_negative.yaml": (one(with_field(pad=-1)), ["layers[0].pad"]),
    "problem/groups_zero.yaml": (one(with_field(groups=0)), ["layers[0].groups"]),
    "problem/groups_indivisible.yaml": (one(with_field(groups=3)), ["layers[0].groups"]),
    "problem/depthwise_groups.yaml": (one("{name: a, type: depthwise, C: 8, H: 8, W: 8, R: 3, S: 3, groups: 2}"),
                                      ["layers[0].groups"]),
    "problem/type_unknown.yaml": (one(LAYER.replace("type: conv", "type: convolution")), ["layers[0].type"]),
    "problem/type_list.yaml": (one(LAYER.replace("type: conv", "type: [conv]")), ["layers[0].type"]),
    "problem/fc_kernel.yaml": (one("{name: a, type: fc, C: 8, M: 8, R: 3}"), ["layers[0].R"]),
    "problem/fc_pad.yaml": (one("{name: a, type: fc, C: 8, M: 8, pad: 1}"), ["layers[0].pad"]),
    "problem/density_high.yaml": (one(with_field(density="{weights: 1.5}")), ["density.weights"]),
    "problem/density_zero.yaml": (one(with_field(density="{inputs: 0}")), ["density.inputs"]),
    "problem/density_nan.yaml": (one(with_field(density="{inputs: .nan}")), ["density.inputs"]),
    "problem/density_key.yaml": (one(with_field(density="{outputs: 0.5}")), ["density.outputs"]),
    "problem/density_list.yaml": (one(with_field(density="[0.5]")), ["density"]),
    "problem/presets_list.yaml": (one(LAYER) + "density_presets: [a, b]\n", ["density_presets", "mapping"]),
    "problem/presets_string.yaml": (one(LAYER) + "density_presets: published\n", ["density_presets"]),
    "problem/presets_number.yaml": (one(LAYER) + "density_presets: 3\n", ["density_presets"]),
    "problem/preset_unknown_layer.yaml": (one(LAYER) + "density_presets: {p: {zz: {weights: 0.5}}}\n",
                                          ["density_presets.p.zz"]),
    "problem/preset_not_mapping.yaml": (one(LAYER) + "density_presets: {p: [1]}\n", ["density_presets.p"]),
    "problem/name_list.yaml": (one(LAYER.replace("name: a", "name: [a, b]")), ["layers[0].name"]),
    "problem/name_map.yaml": (one(LAYER.replace("name: a", "name: {x: 1}")), ["layers[0].name"]),
    "problem/net_name_list.yaml": (one(LAYER, head="name: [x]\n"), ["name"]),
    "problem/key_list.yaml": ("? [a, b]\n: 1\nname: net\n", ["field name", "list or mapping"]),
    "problem/key_map.yaml": ("name: net\n{a: 1}: 2\n", ["field name"]),
    "problem/layer_key_list.yaml": (problem("  - {? [C]: 3, name: a}\n"), ["field name"]),
    "problem/python_apply.yaml": ("name: !!python/object/apply:os.system ['touch pwned']\nlayers: []\n",
                                  ["malformed YAML"]),
    "problem/python_name.yaml": ("name: !!python/name:os.system\nlayers: []\n", ["malformed YAML"]),
    "problem/custom_tag.yaml": ("name: !evil x\nlayers: []\n", ["malformed YAML"]),
    "problem/unclosed.yaml": ("name: net\nlayers: [ {name: a\n", ["malformed YAML"]),
    "problem/tab_indent.yaml": ("name: net\nlayers:\n\t- {name: a}\n", ["malformed YAML"]),
    "problem/two_docs.yaml": ("name: a\n---\nname: b\n", ["malformed YAML"]),
    "problem/bad_indent.yaml": ("name: net\n  layers: x\n", ["malformed YAML"]),
    "problem/bomb.yaml": (BOMB, ["aliases", "limit"]),
    "problem/int_5000_digits.yaml": ("name: net\nbatch: " + "9" * 5000 + "\nlayers: []\n", ["digits", "limit"]),
    "problem/int_in_layer.yaml": (one(LAYER.replace("C: 8", "C: " + "1" * 400)), ["digits"]),
    "problem/long_key.yaml": (one(with_field(**{"x" * 1000: 1})), ["unknown field", "..."]),
    "problem/merge_unknown.yaml": ("base: &b {C: 8}\nname: net\nlayers:\n  - {<<: *b, name: a}\n", ["base"]),
    "problem/latin1.yaml": ("name: caf\xe9\nlayers: []\n".encode("latin-1"), ["UTF-8"]),
    "problem/utf16.yaml": (one(LAYER).encode("utf-16"), ["UTF-8"]),
    "problem/utf32.yaml": (one(LAYER).encode("utf-32"), ["UTF-8"]),
    "problem/binary.yaml": (bytes(range(256)) * 4, ["UTF-8"]),
    "problem/nul_byte.yaml": (b"name: net\x00\nlayers: []\n", ["NUL"]),
    "problem/gzip_magic.yaml": (b"\x1f\x8b\x08\x00" + bytes(60), ["UTF-8"]),
    "problem/matmul_no_k.yaml": (one("{name: q, type: matmul, M: 128, N: 768}"), ["layers[0].K", "missing"]),
    "problem/matmul_k_negative.yaml": (one("{name: q, type: matmul, M: 128, N: 768, K: -3}"),
                                       ["layers[0].K", "at least"]),
    "problem/matmul_b_role.yaml": (one("{name: q, type: matmul, M: 8, N: 8, K: 8, b_role: weight}"),
                                   ["layers[0].b_role", "did you mean 'weights'"]),
    "problem/matmul_conv_field.yaml": (one("{name: q, type: matmul, M: 8, N: 8, K: 8, R: 3}"),
                                       ["layers[0].R", "unknown field"]),
    "problem/matmul_macs_over.yaml": (one(f"{{name: q, type: matmul, M: {2 ** 24}, N: {2 ** 24}, K: {2 ** 24}}}"),
                                      ["layers[0]", "MACs", "limit"]),
    "problem/matmul_batch_over.yaml": ("name: net\nbatch: 2000000\nlayers:\n  - {name: q, type: matmul, M: 8, "
                                       "N: 8, K: 8, batch: 12, b_role: activations}\n",
                                       ["layers[0].batch", "G = 24,000,000", "limit"]),
    "problem/timeloop_problem.yaml": ("problem:\n  shape: {name: CNN_Layer}\n  instance: {C: 3, M: 96}\n",
                                      ["problem", "Timeloop problem", "mapper convert timeloop-problem"]),
    "problem/type_case.yaml": (one("{name: q, type: MatMul, M: 8, N: 8, K: 8}"),
                               ["layers[0].type", "did you mean 'matmul'"]),
    # ---- architecture files (mapper space -a FILE -p alexnet -l fc8)
    "arch/keeps_empty.yaml": (arch(DRAM, "  - {name: buf, keeps: [], capacity: 64, energy: 1.0}\n"),
                              ["levels[1].keeps", "at least one"]),
    "arch/keeps_null.yaml": (arch(DRAM, "  - {name: buf, keeps: null, capacity: 64, energy: 1.0}\n"),
                             ["levels[1].keeps"]),
    "arch/keeps_missing.yaml": (arch(DRAM, "  - {name: buf, capacity: 64, energy: 1.0}\n"), ["levels[1].keeps"]),
    "arch/keeps_unknown.yaml": (arch(DRAM, "  - {name: buf, keeps: [Psums], capacity: 64, energy: 1.0}\n"),
                                ["levels[1].keeps", "Psums"]),
    "arch/keeps_string_bad.yaml": (arch(DRAM, "  - {name: buf, keeps: all, capacity: 64, energy: 1.0}\n"),
                                   ["levels[1].keeps"]),
    "arch/bypass_not_kept.yaml": (arch(DRAM, "  - {name: buf, keeps: [Inputs], may_bypass: [Weights], "
                                       "capacity: 64, energy: 1.0}\n"), ["levels[1].may_bypass"]),
    "arch/capacity_negative.yaml": (arch(DRAM, BUF.replace("4096", "-1")), ["levels[1].capacity"]),
    "arch/capacity_2p62.yaml": (arch(DRAM, BUF.replace("4096", str(2 ** 62))), ["levels[1].capacity", "at most"]),
    "arch/capacity_1e30.yaml": (arch(DRAM, BUF.replace("4096", "1.0e+30")), ["levels[1].capacity"]),
    "arch/capacity_string.yaml": (arch(DRAM, BUF.replace("4096", "big")), ["levels[1].capacity"]),
    "arch/capacity_inf.yaml": (arch(DRAM, BUF.replace("4096", ".inf")), ["levels[1].capacity"]),
    "arch/capacity_part_tensor.yaml": (arch(DRAM, BUF.replace("4096", "{Psums: 10, Weights+Inputs+Outputs: 9}")),
                                       ["capacity.Psums"]),
    "arch/capacity_part_missing.yaml": (arch(DRAM, BUF.replace("4096", "{Weights: 10}")), ["levels[1].capacity"]),
    "arch/capacity_part_twice.yaml": (arch(DRAM, BUF.replace("4096", "{Weights: 10, Weights+Inputs: 5, "
                                                                     "Outputs: 3}")), ["two partitions"]),
    "arch/energy_nan.yaml": (arch(DRAM.replace("200.0", ".nan")), ["levels[0].energy"]),
    "arch/energy_1e300.yaml": (arch(DRAM.replace("200.0", "1.0e+300")), ["levels[0].energy", "at most"]),
    "arch/energy_1e30.yaml": (arch(DRAM.replace("200.0", "1.0e+30")), ["levels[0].energy", "at most"]),
    "arch/energy_negative.yaml": (arch(DRAM.replace("200.0", "-1.0")), ["levels[0].energy"]),
    "arch/energy_list.yaml": (arch(DRAM.replace("200.0", "[1, 2]")), ["levels[0].energy"]),
    "arch/mac_energy_inf.yaml": (arch(DRAM, head="name: mini\nmac: {energy: .inf}\n"), ["mac.energy"]),
    "arch/mac_missing.yaml": (arch(DRAM, head="name: mini\n"), ["mac"]),
    "arch/fanout_zero.yaml": (arch(DRAM, BUF, ARRAY.replace("X: 4", "X: 0")), ["levels[2]", "X"]),
    "arch/fanout_huge.yaml": (arch(DRAM, BUF, ARRAY.replace("X: 4", f"X: {2 ** 30}")), ["levels[2]", "X", "at most"]),
    "arch/fanout_string.yaml": (arch(DRAM, BUF, ARRAY.replace("Y: 4", "Y: wide")), ["levels[2]", "Y"]),
    "arch/fanout_product.yaml": (arch(DRAM, BUF, ARRAY.replace("X: 4, Y: 4", "X: 1048576, Y: 1048576"),
                                      ARRAY.replace("array", "array2").replace("X: 4, Y: 4", "X: 1048576, Y: 4")),
                                 ["levels[3].fanout", "limit"]),
    "arch/fanout_multicast.yaml": (arch(DRAM, BUF, ARRAY.replace("energy: 2.0", "energy: 2.0, multicast: always")),
                                   ["levels[2].multicast"]),
    "arch/levels_empty.yaml": (arch(), ["levels"]),
    "arch/levels_missing.yaml": (ARCH_HEAD, ["levels", "missing"]),
    "arch/levels_mapping.yaml": (ARCH_HEAD + "levels: {DRAM: 1}\n", ["levels"]),
    "arch/level_scalar.yaml": (arch(DRAM, "  - 7\n"), ["levels[1]"]),
    "arch/first_not_dram.yaml": (arch(BUF), ["levels[0]"]),
    "arch/dram_capacity.yaml": (arch(DRAM.replace("energy: 200.0", "energy: 200.0, capacity: 100")),
                                ["levels[0].capacity"]),
    "arch/dup_level.yaml": (arch(DRAM, BUF, BUF), ["levels[2].name", "duplicate"]),
    "arch/unknown_level_field.yaml": (arch(DRAM, BUF.replace("energy: 6.0", "energy: 6.0, capacty: 4")),
                                      ["capacty", "did you mean"]),
    "arch/unknown_top.yaml": (arch(DRAM, head=ARCH_HEAD + "clock: 200\n"), ["clock"]),
    "arch/clock_zero.yaml": (arch(DRAM, head=ARCH_HEAD + "clock_mhz: 0\n"), ["clock_mhz"]),
    "arch/clock_inf.yaml": (arch(DRAM, head=ARCH_HEAD + "clock_mhz: .inf\n"), ["clock_mhz"]),
    "arch/word_bits_huge.yaml": (arch(DRAM, head=ARCH_HEAD + "word_bits: 1000000\n"), ["word_bits", "at most"]),
    "arch/word_bits_zero.yaml": (arch(DRAM, head=ARCH_HEAD + "word_bits: 0\n"), ["word_bits"]),
    "arch/temporal_unknown.yaml": (arch(DRAM, BUF.replace("energy: 6.0", "energy: 6.0, temporal_dims: [K]")),
                                   ["levels[1].temporal_dims", "K"]),
    "arch/bandwidth_negative.yaml": (arch(DRAM, BUF.replace("energy: 6.0", "energy: 6.0, bandwidth: {read: -2}")),
                                     ["bandwidth.read"]),
    "arch/bandwidth_huge.yaml": (arch(DRAM, BUF.replace("energy: 6.0", "energy: 6.0, bandwidth: {read: 1.0e+200}")),
                                 ["bandwidth.read", "at most"]),
    "arch/leakage_string.yaml": (arch(DRAM, BUF.replace("energy: 6.0", "energy: 6.0, leakage: lots")),
                                 ["levels[1].leakage"]),
    "arch/name_list.yaml": (arch(DRAM, head="name: [a]\nmac: {energy: 1.0}\n"), ["name"]),
    "arch/top_list.yaml": ("- DRAM\n", ["top level"]),
    "arch/key_map.yaml": (arch(DRAM) + "{x: 1}: 2\n", ["field name"]),
    "arch/bomb.yaml": (BOMB.replace("layers", "levels"), ["aliases"]),
    "arch/latin1.yaml": (arch(DRAM).replace("mini", "m\xefni").encode("latin-1"), ["UTF-8"]),
    "arch/utf16.yaml": (arch(DRAM).encode("utf-16"), ["UTF-8"]),
    "arch/python_tag.yaml": ("name: !!python/object/new:os.system [ls]\n", ["malformed YAML"]),
    "arch/big_int.yaml": (arch(DRAM, BUF.replace("4096", "7" * 3000)), ["digits"]),
    "arch/ports_without_words.yaml": (arch(DRAM, BUF, ARRAY.replace("energy: 2.0", f"energy: 2.0, {MODES}, "
                                                                   "ports: {Inputs: 2}")), ["levels[2].ports", "port_words"]),
    "arch/ports_words_of_other.yaml": (arch(DRAM, BUF, ARRAY.replace("energy: 2.0", f"energy: 2.0, {MODES}, ports: "
                                                                     "{Inputs: 2}, port_words: {Weights: 2}")),
                                       ["levels[2].ports", "Inputs", "port_words"]),
    "arch/ports_negative.yaml": (arch(DRAM, BUF, ARRAY.replace("energy: 2.0", f"energy: 2.0, {MODES}, ports: "
                                                               "{Inputs: -1}, port_words: 2")), ["ports.Inputs"]),
    "arch/reduction_z.yaml": (arch(DRAM, BUF, ARRAY.replace("energy: 2.0", "energy: 2.0, reduction: [Z]")),
                              ["levels[2].reduction", "X, Y"]),
    "arch/capacity_unit_bytes.yaml": (arch(DRAM, BUF, RF.replace("energy: 1.0", "energy: 1.0, capacity_unit: bytes")),
                                      ["levels[2].capacity_unit", "bytes"]),
    "arch/columns_list.yaml": (arch(DRAM, BUF, RF.replace("energy: 1.0", "energy: 1.0, columns: [16]")),
                               ["levels[2].columns"]),
    "arch/columns_no_along.yaml": (arch(DRAM, BUF, RF.replace("energy: 1.0", "energy: 1.0, columns: "
                                                              "{Weights: {max: 16}}")), ["columns.Weights.along"]),
    "arch/columns_not_kept.yaml": (arch(DRAM, BUF, RF.replace("energy: 1.0", "energy: 1.0, columns: "
                                                              "{Inputs: {max: 16, along: C}}")), ["columns.Inputs"]),
    "arch/cycle_energy_negative.yaml": (arch(DRAM, head=ARCH_HEAD + "cycle_energy: -1\n"), ["cycle_energy"]),
    "arch/skip_cycles_sometimes.yaml": (arch(DRAM) + "sparsity: {skip_zero_macs: true, skip_cycles: sometimes}\n",
                                        ["sparsity.skip_cycles", "sometimes"]),
    "arch/energy_unit_number.yaml": (arch(DRAM, head=ARCH_HEAD + "energy_unit: 5\n"), ["energy_unit"]),
    "arch/energy_unit_calibrated.yaml": (arch(DRAM, head=ARCH_HEAD + "energy_unit: {name: pJ, calibrated: maybe}\n"),
                                         ["energy_unit.calibrated"]),
    "arch/energy_unit_escape.yaml": (arch(DRAM, head=ARCH_HEAD + 'energy_unit: "pJ\\u001b[31m"\n'),
                                     ["energy_unit.name", "printable"]),
    "arch/energy_unit_long.yaml": (arch(DRAM, head=ARCH_HEAD + "energy_unit: " + "u" * 5000 + "\n"),
                                   ["energy_unit.name", "at most 32"]),
    # ---- mapping files (mapper evaluate -a eyeriss_v1 -p alexnet -l conv3 -m FILE)
    "mapping/top_string.yaml": ("loops\n", ["mapping"]),
    "mapping/top_list.yaml": ("- 1\n- 2\n", ["mapping"]),
    "mapping/empty.yaml": ("", ["mapping"]),
    "mapping/loops_mapping.yaml": ("loops: {a: 1}\n", ["loops"]),
    "mapping/loop_scalar.yaml": ("loops: [3]\n", ["loops[0]"]),
    "mapping/factor_zero.yaml": ("loops:\n  - {level: DRAM, dim: M, factor: 0}\n", ["factor"]),
    "mapping/factor_huge.yaml": (f"loops:\n  - {{level: DRAM, dim: M, factor: {2 ** 62}}}\n", ["factor", "at most"]),
    "mapping/factor_inf.yaml": ("loops:\n  - {level: DRAM, dim: M, factor: .inf}\n", ["factor"]),
    "mapping/factor_string.yaml": ("loops:\n  - {level: DRAM, dim: M, factor: many}\n", ["factor"]),
    "mapping/level_unknown.yaml": ("loops:\n  - {level: L9, dim: M, factor: 384}\n", ["level", "L9"]),
    "mapping/dim_unknown.yaml": ("loops:\n  - {level: DRAM, dim: K, factor: 384}\n", ["dim", "K"]),
    "mapping/spatial_bad.yaml": ("loops:\n  - {level: array, dim: M, factor: 2, spatial: Z}\n", ["spatial"]),
    "mapping/product_wrong.yaml": ("loops:\n  - {level: DRAM, dim: M, factor: 2}\n", ["M"]),
    "mapping/keep_unknown.yaml": ("loops: []\nkeep: {GLB: [Psums]}\n", ["keep"]),
    "mapping/keep_list.yaml": ("loops: []\nkeep: [GLB]\n", ["keep"]),
    "mapping/dup_key.yaml": ("loops: []\nloops: []\n", ["twice"]),
    "mapping/bad_yaml.yaml": ("loops: [\n", ["malformed YAML"]),
    "mapping/key_list.yaml": ("? [loops]\n: []\n", ["field name"]),
    "mapping/latin1.yaml": ("loops: [] # caf\xe9\n".encode("latin-1"), ["UTF-8"]),
    "mapping/int_digits.yaml": ("loops:\n  - {level: DRAM, dim: M, factor: " + "3" * 1000 + "}\n", ["digits"]),
    "mapping/json_nan.json": ('{"loops": [{"level": "DRAM", "dim": "M", "factor": NaN}]}\n', ["factor"]),
    "mapping/bomb.yaml": (BOMB.replace("layers", "loops"), ["aliases"]),
    # ---- result documents (mapper export timeloop FILE -o out/map.yaml)
    "result/empty_list.json": ("[]\n", ["empty"]),
    "result/string.json": ('"a result"\n', ["mapping"]),
    "result/number.json": ("42\n", ["mapping"]),
    "result/no_mapping.json": ('{"arch": {"name": "eyeriss_v1"}}\n', ["mapping"]),
    "result/arch_dev_zero.json": ('{"arch": {"name": "/dev/zero"}, "mapping": {"loops": []}}\n',
                                  ["arch.name", "built-in", "--arch"]),
    "result/arch_path.json": ('{"arch": {"name": "../../arch/eyeriss_v1.yaml"}, "mapping": {"loops": []}}\n',
                              ["arch.name", "--arch"]),
    "result/arch_fifo_path.json": ('{"arch": {"name": "/tmp/fifo.yaml"}, "mapping": {"loops": []}}\n',
                                   ["arch.name"]),
    "result/arch_unknown.json": ('{"arch": {"name": "nosuch"}, "mapping": {"loops": []}}\n', ["arch.name"]),
    "result/arch_list.json": ('{"arch": ["eyeriss_v1"], "mapping": {"loops": []}}\n', ["arch"]),
    "result/arch_name_number.json": ('{"arch": {"name": 7}, "mapping": {"loops": []}}\n', ["arch.name"]),
    "result/mapping_string.json": ('{"arch": {"name": "eyeriss_v1"}, "mapping": "loops"}\n', ["mapping"]),
    "result/loops_bad.json": ('{"arch": {"name": "eyeriss_v1"}, "mapping": {"loops": [{"level": "DRAM"}]}}\n',
                              ["loops[0]"]),
    "result/nan.json": ('{"arch": {"name": "eyeriss_v1"}, "mapping": {"loops": [{"level": "DRAM", "dim": "M", '
                        '"factor": NaN}]}}\n', ["NaN"]),
    "result/infinity.json": ('{"x": Infinity}\n', ["Infinity"]),
    "result/malformed.json": ('{"mapping": \n', ["malformed JSON"]),
    "result/trailing.json": ('{"mapping": {}} x\n', ["malformed JSON"]),
    "result/int_digits.json": ('{"mapping": ' + "1" * 5000 + "}\n", ["digits"]),
    "result/latin1.json": ('{"arch": "caf\xe9"}\n'.encode("latin-1"), ["UTF-8"]),
    "result/utf16.json": ('{"mapping": {}}\n'.encode("utf-16"), ["UTF-8"]),
    "result/binary.json": (bytes(range(128, 256)), ["UTF-8"]),
    # ---- Eyexam JSON (mapper plot --eyexam FILE -o out/w.png)
    "eyexam/list_empty.json": ("[]\n", ["empty"]),
    "eyexam/string.json": ('"eyexam"\n', ["eyexam"]),
    "eyexam/missing.json": ("{}\n", ["eyexam"]),
    "eyexam/malformed.json": ("{\n", ["malformed JSON"]),
    "eyexam/nan.json": ('{"steps": [NaN]}\n', ["NaN"]),
    "eyexam/int_digits.json": ('{"steps": ' + "9" * 4400 + "}\n", ["digits"]),
    "eyexam/latin1.json": ('{"layer": "\xff"}\n'.encode("latin-1"), ["UTF-8"]),
    "eyexam/list_of_numbers.json": ("[1, 2, 3]\n", ["[0]"]),
    # ---- sweep summary CSV (mapper plot DIR -o out/p.png, the file copied to DIR/summary.csv)
    "summary/empty.csv": ("", ["summary"]),
    "summary/no_columns.csv": ("a,b,c\n1,2,3\n", ["missing column"]),
    "summary/header_only.csv": ("network,arch,layer,energy_pj,energy_DRAM_pj\n", ["no rows"]),
    "summary/more_cells.csv": ("network,arch,layer,energy_pj\nn,a,l,1,2\n", ["row 2"]),
    "summary/fewer_cells.csv": ("network,arch,layer,energy_pj\nn,a\n", ["row 2"]),
    "summary/energy_word.csv": ("network,arch,layer,energy_pj\nn,a,l,lots\n", ["energy_pj"]),
    "summary/energy_nan.csv": ("network,arch,layer,energy_pj\nn,a,l,nan\n", ["energy_pj"]),
    "summary/latin1.csv": ("network,arch,layer,energy_pj\nn,\xe9,l,1\n".encode("latin-1"), ["UTF-8"]),
    "summary/nul.csv": (b"network,arch,layer,energy_pj\nn,a,l,1\x00\n", ["NUL"]),
    "summary/utf16.csv": ("network,arch,layer,energy_pj\n".encode("utf-16"), ["UTF-8"]),
    "summary/empty_arch.csv": ("network,arch,layer,energy_pj\nn,,l,1\n", ["empty arch"]),
    # ---- Timeloop problems (mapper convert timeloop-problem FILE -o out/p.yaml)
    "timeloop/top_list.yaml": ("- problem\n", ["top level"]),
    "timeloop/no_problem.yaml": ("shape: {}\n", ["problem"]),
    "timeloop/problem_string.yaml": ("problem: CNN_Layer\n", ["problem"]),
    "timeloop/bad_yaml.yaml": ("problem: {shape: [\n", ["malformed YAML"]),
    "timeloop/key_list.yaml": ("problem:\n  ? [a]\n  : 1\n", ["field name"]),
    "timeloop/bomb.yaml": (BOMB.replace("layers", "problem"), ["aliases"]),
    "timeloop/int_digits.yaml": ("problem: {instance: {C: " + "5" * 2000 + "}}\n", ["digits"]),
    "timeloop/latin1.yaml": ("problem: {shape: {name: \xe9}}\n".encode("latin-1"), ["UTF-8"]),
    "timeloop/python_tag.yaml": ("problem: !!python/object/apply:os.system [id]\n", ["malformed YAML"]),
    "timeloop/dup_key.yaml": ("problem: {}\nproblem: {}\n", ["twice"]),
}


def main() -> None:
    expect = {}
    for name, (content, fragments) in sorted(CASES.items()):
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        expect[name] = fragments
    (HERE / "expect.json").write_text(json.dumps(expect, indent=1, sort_keys=True) + "\n")
    print(f"{len(expect)} cases")


if __name__ == "__main__":
    main()
