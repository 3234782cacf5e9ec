"""CP-SAT search: the mapspace as a constraint program with the model's exact cost.

Formulation (see README "Search"). The dimensions fall into six groups, N, G, M, C,
(P, R) and (Q, S); pairing P with R and Q with S makes every input tile extent, halo and
multicast count a constant of one group's choice. Each group chooses one *option*: a
complete assignment of its dimensions' factors to the slots (temporal loops of each
storage level, X and Y of each fan-out), precomputed from the pruned factorizations.
Each storage level chooses one canonical loop order, and the run fixes one keep pattern
per model (a model per pattern).

Every access count of the model is a product over groups of a per-group integer, so it
is an exact product of CP-SAT integer variables:
* tile sizes, instance counts, distinct-tile (multicast) counts and MAC counts are
  per-option constants;
* a buffer's fills are the tile times, for each loop outside it, its bound if the loop
  counts and 1 otherwise. A relevant loop always counts; an irrelevant one counts iff it
  sits outside the innermost relevant loop with factor > 1 ("r"), which boolean variables
  derive from the factors (s = factor > 1) and the order choice; when r slides (an input
  halo), r's group contributes E + (b_r - 1) * min(E, shift) instead of E * b_r. Steps
  that bring back exactly the held input tile save a whole tile each: one more product
  per candidate loop (its group's axis moves cancel, no other relevant loop iterates
  inside it), subtracted.
Capacities and fan-outs are exact integer constraints on products. Energies are integers
after scaling (floored, so CP-SAT's bound stays a valid lower bound of the true cost);
with the built-in archs' energies the scaling is exact. The objective is the model's
energy, cycles (max of compute and every level's bandwidth cycles) or their product;
the cycles' domain starts at the analytic cycles bound (`mapper.search.bound`), which
holds for every mapping, so an EDP cutoff bounds the energy before anything is fixed.

Which access terms a keep pattern charges (the chain walk) comes from `mapper.access`, as
for the batch model. The package: `groups` (the decision groups and their options), `expressions` (exact
integer expressions in CP-SAT), `formulation` (the model of one keep pattern: `Builder`,
`pinned`), `solving` (`solve`: every pattern solved, each proof checked).
"""
from .expressions import Expressions, assignments
from .formulation import Builder, energy_scale, pinned
from .groups import GROUPS, Group, build_groups
from .solving import PatternResult, _edp_shift, solve

__all__ = ["GROUPS", "Builder", "Expressions", "Group", "PatternResult", "assignments", "build_groups",
           "energy_scale", "pinned", "solve"]
