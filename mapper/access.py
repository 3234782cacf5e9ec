"""A mapping's access terms per keep pattern: the chain walk, written once.

For each tensor the storage levels that keep it form a chain from the outermost level
inward; each *link* joins a parent level to its child (the next level keeping the tensor,
or the MACs). Every access count the cost model charges is a sum of terms, each

    coefficient x copies x quantity

where *copies* counts how many times a per-copy quantity happens in the whole machine and
*quantity* is a per-copy word count of one tile:

  copies    DISTINCT  distinct child tiles: the parent's instances times the distinct tiles
                      the fan-outs between create (multicast, under the network modes)
            CHILD     instances of the child level
            PARENT    instances of the parent level
            MACS      every MAC unit in use
  quantity  OPS       temporal iterations (one word per MAC per operand)
            FETCHED   words a child instance fetches over the run (the fills closed form)
            TOUCHED   distinct words a level's instance touches (an Outputs tile's first
                      fill needs no read of the parent: partial sums start at zero)

The coefficient carries the sparse factors (stored fraction, effectual operands) and signs.
`batch.py` evaluates these terms with numpy and the CP-SAT formulation builds its exact
integer products from them; `model.py` derives the same counts on its own (the reference
both are tested against). A change to how tiles are counted (remainder tiles, say)
changes the quantities' evaluators, not this walk.
"""
from __future__ import annotations

from dataclasses import dataclass

from .arch import Arch, Fanout
from .model import Sparse
from .problem import TENSORS

# copies
DISTINCT, CHILD, PARENT, MACS = "distinct", "child", "parent", "macs"
# quantities
OPS, FETCHED, TOUCHED = "ops", "fetched", "touched"
# what a term counts
READS, FILLS, UPDATES = "reads", "fills", "updates"


@dataclass(frozen=True)
class Term:
    """coefficient x copies x quantity, the quantity of the tile held at storage `at`
    (None for OPS)."""

    copies: str
    quantity: str
    at: int | None
    coefficient: float = 1.0


@dataclass(frozen=True)
class Count:
    """A term charged as `kind` (reads, fills, updates) of the link's tensor at `storage`."""

    kind: str
    storage: int
    term: Term


@dataclass(frozen=True)
class Link:
    """One parent-child pair of a tensor's chain and everything it costs."""

    tensor: int                       # index into TENSORS
    parent: int                       # storage index (order of Encoding.storage_levels)
    child: int | None                 # storage index, None for the MACs
    parent_level: int                 # arch level indices; the child's is len(levels) for the MACs
    child_level: int
    fanouts: tuple[int, ...]          # arch level indices of the fan-outs between
    counts: tuple[Count, ...]         # reads, fills and updates the link causes
    words: tuple[Term, ...]           # words carried over each fan-out between (network energy)
    down: tuple[Term, ...]            # words sent down from the parent (fan-out bandwidth)


def links(arch: Arch, storage_levels: tuple[int, ...], keep, sparse: Sparse) -> tuple[Link, ...]:
    """Every link of one keep pattern (keep[storage][tensor] booleans), tensors in TENSORS
    order, each chain outermost first."""
    out = []
    n_levels = len(arch.levels)
    for ti, t in enumerate(TENSORS):
        chain = [si for si in range(len(storage_levels)) if keep[si][ti]]
        for k, p in enumerate(chain):
            c = chain[k + 1] if k + 1 < len(chain) else None
            p_level = storage_levels[p]
            c_level = n_levels if c is None else storage_levels[c]
            fanouts = tuple(i for i in range(p_level + 1, c_level) if isinstance(arch.levels[i], Fanout))
            if c is None:
                counts, words, down = _to_macs(t, p, sparse)
            else:
                counts, words, down = _to_child(t, p, c, arch.levels[p_level].name,
                                                arch.levels[c_level].name, sparse)
            out.append(Link(ti, p, c, p_level, c_level, fanouts, counts, words, down))
    return tuple(out)


def _to_macs(t: str, p: int, sparse: Sparse):
    """The innermost level keeping t serves every MAC: one operand per MAC iteration (the
    effectual ones under sparsity); an output is read back and updated per MAC, except its
    first touch (which starts from zero)."""
    work = sparse.operand(t)
    per_mac = Term(DISTINCT, OPS, None, work)
    if t == "Outputs":
        counts = (Count(UPDATES, p, per_mac), Count(READS, p, per_mac),
                  Count(READS, p, Term(PARENT, TOUCHED, p, -work)))
        down = (Term(DISTINCT, OPS, None, 2 * work),)
    else:
        counts = (Count(READS, p, per_mac),)
        down = (per_mac,)
    return counts, (Term(MACS, OPS, None, work),), down


def _to_child(t: str, p: int, c: int, p_name: str, c_name: str, sparse: Sparse):
    """Parent p refills child c: the parent is read once per distinct child tile (multicast),
    every child instance is filled; partial sums go back up (updates) and come down again
    except on their first touch."""
    if t == "Outputs":
        fetched, touched = Term(DISTINCT, FETCHED, c), Term(DISTINCT, TOUCHED, c, -1.0)
        counts = (Count(READS, p, fetched), Count(READS, p, touched),
                  Count(FILLS, c, Term(CHILD, FETCHED, c)), Count(FILLS, c, Term(CHILD, TOUCHED, c, -1.0)),
                  Count(UPDATES, p, fetched))
        words = (Term(CHILD, FETCHED, c, 2.0), Term(CHILD, TOUCHED, c, -1.0))
        down = (Term(DISTINCT, FETCHED, c, 2.0), touched)
        return counts, words, down
    at_p, at_c = sparse.stored(p_name, t), sparse.stored(c_name, t)
    counts = (Count(READS, p, Term(DISTINCT, FETCHED, c, at_p)), Count(FILLS, c, Term(CHILD, FETCHED, c, at_c)))
    return counts, (Term(CHILD, FETCHED, c, at_c),), (Term(DISTINCT, FETCHED, c, at_p),)
