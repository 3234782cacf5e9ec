"""Timeloop interoperability: problems, architectures (with energy tables and constraints),
mappings and result export.

Plain functions, no global state. Every user error is a `SpecError` naming the file and
the part of it that is wrong.

Conventions (Timeloop's, as its documentation and source define them):

* Problems (`CNN_Layer`): dimensions map to ours by identical names (N, G, C, M, P, Q, R, S).
  Timeloop's Inputs projection pairs P with R through Wstride/Wdilation and Q with S through
  Hstride/Hdilation; ours pairs P with R through stride[0]/dilation[0] and Q with S through
  stride[1]/dilation[1]. So our stride = (Wstride, Hstride), dilation = (Wdilation,
  Hdilation), and we write H = (P-1)*Wstride + (R-1)*Wdilation + 1 (W likewise) with pad 0,
  so P and Q come out exactly. Our C and M are totals: a Timeloop problem with G > 1 and
  C = 1 is our depthwise layer (C = G, M = G*M); with C > 1 a grouped conv (C*G, M*G, groups G).
* Architectures (v0.4 processed tree, `subtree`/`local`, or the nested v0.3 tree): storage
  levels in tree order, outermost first. Instances come from name ranges (`PE[0..167]`);
  meshX/meshY default to (instances, 1) as in Timeloop. Between consecutive storage levels
  the growth of meshX and meshY is a fan-out {X, Y}. Its spatial loops belong, in Timeloop,
  to the outer level; so a fan-out below a `dummy_storage` level takes that level's name
  (the dummy itself holds nothing and disappears as storage; a dummy with no growth below
  it becomes a 1 x 1 fan-out so that every Timeloop level keeps a counterpart), and a
  fan-out below a real storage level S is named `S_spatial`. Capacity = depth * width /
  datawidth words (divided by multiple_buffering); energy per word = ERT energy per action
  / (width / datawidth); leakage = the ERT's `leak` energy per cycle per instance.
* Mappings: `permutation` lists a level's loops innermost first; in a spatial directive
  the loops at permutation index < `split` are on X, the rest on Y (default split: all X).
  Missing factors are 1, missing permutation dimensions are appended (outermost), missing
  datatype directives keep every tensor: Timeloop's defaults (src/mapping/parser.cpp).

Modules: `common` (shared helpers), `problem`, `arch` and `mapping` (with result export);
this package re-exports their public functions.
"""
from __future__ import annotations

from .arch import arch_from_timeloop, arch_yaml, write_arch
from .common import TIMELOOP_DIMS, VERSIONS
from .mapping import (export_result, is_timeloop_mapping, mapping_from_timeloop, mapping_to_timeloop, mapping_yaml,
                      read_results, result_to_timeloop)
from .problem import problem_dims, problem_from_timeloop, write_problem

__all__ = ["TIMELOOP_DIMS", "VERSIONS", "arch_from_timeloop", "arch_yaml", "export_result", "is_timeloop_mapping",
           "mapping_from_timeloop", "mapping_to_timeloop", "mapping_yaml", "problem_dims", "problem_from_timeloop",
           "read_results", "result_to_timeloop", "write_arch", "write_problem"]
