"""Eyexam results: the steps' names, one step's bound and loss (`Step`), one layer's seven
steps (`EyexamResult`), the shares of the peak each step loses, and their JSON files."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..result import write_json
from ..spec import MapperError
from ..spec import load_json as read_json

CONSTRAINTS = {
    1: "layer shape",
    2: "dataflow",
    3: "number of PEs",
    4: "physical dimensions",
    5: "storage capacity",
    6: "average bandwidth",
    # 7: "best <objective> mapping"
}


def constraint_name(step: int, objective: str) -> str:
    return CONSTRAINTS[step] if step in CONSTRAINTS else f"best {objective} mapping"


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Step:
    """One Eyexam step: its upper bound on MACs/cycle and what it lost against the previous."""

    step: int
    constraint: str
    bound: float                   # MACs/cycle after this step (clamped to the previous bound)
    raw_bound: float               # before clamping
    loss: float                    # previous bound - bound (MACs/cycle); 0 for step 1
    loss_pct: float                # 100 * loss / previous bound
    note: str                      # what limits it (and whether clamping happened)
    status: str | None = None      # search status (optimal | feasible | budget) for steps 5-7
    clamped: bool = False
    peak_loss_pct: float = 0.0     # share of the peak (one MAC per PE per cycle) lost here, %
    detail: dict = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "constraint": self.constraint, "bound": self.bound,
                "raw_bound": self.raw_bound, "loss": self.loss, "loss_pct": self.loss_pct,
                "peak_loss_pct": self.peak_loss_pct, "note": self.note, "status": self.status,
                "clamped": self.clamped, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Step":
        return cls(step=int(data["step"]), constraint=str(data["constraint"]), bound=float(data["bound"]),
                   raw_bound=float(data.get("raw_bound", data["bound"])), loss=float(data.get("loss", 0.0)),
                   loss_pct=float(data.get("loss_pct", 0.0)), note=str(data.get("note", "")),
                   status=data.get("status"), clamped=bool(data.get("clamped", False)),
                   peak_loss_pct=float(data.get("peak_loss_pct", 0.0)), detail=dict(data.get("detail") or {}))


@dataclass(frozen=True)
class EyexamResult:
    """The seven steps for one layer on one architecture (plain data: JSON round-trips)."""

    layer: dict = field(hash=False)          # Layer.describe()
    arch: dict = field(hash=False)           # Arch.describe()
    settings: dict = field(hash=False)
    steps: tuple[Step, ...]
    inputs_sha256: str
    version: str = __version__

    @property
    def macs(self) -> int:
        return int(self.layer["macs"])

    @property
    def layer_name(self) -> str:
        return str(self.layer["name"])

    @property
    def arch_name(self) -> str:
        return str(self.arch["name"])

    @property
    def bounds(self) -> list[float]:
        return [s.bound for s in self.steps]

    @property
    def pes(self) -> int:
        return int(self.arch["pes"])

    @property
    def biggest_loss(self) -> int | None:
        """The step losing the largest share of the peak (None when nothing is lost)."""
        return biggest_loss([s.bound for s in self.steps], self.pes)

    def step(self, k: int) -> Step:
        return self.steps[k - 1]

    def to_dict(self) -> dict[str, Any]:
        big = self.biggest_loss
        return {
            "version": self.version,
            "inputs_sha256": self.inputs_sha256,
            "layer": self.layer,
            "arch": self.arch,
            "settings": self.settings,
            "macs": self.macs,
            "steps": [s.to_dict() for s in self.steps],
            "biggest_loss": None if big is None else {"step": big, "constraint": self.steps[big - 1].constraint},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "eyexam result") -> "EyexamResult":
        try:
            steps = tuple(Step.from_dict(s) for s in data["steps"])
            if [s.step for s in steps] != list(range(1, 8)):
                raise ValueError("expected steps 1 to 7 in order")
            if not all(math.isfinite(s.bound) and s.bound > 0 for s in steps):
                raise ValueError("every step's bound must be a positive number")
            # fields the tables and plots read (a missing one is a KeyError below)
            if not (float(data["layer"]["macs"]) > 0 and float(data["arch"]["pes"]) > 0
                    and data["layer"]["name"] and data["arch"]["name"]):
                raise ValueError("layer.macs and arch.pes must be positive, layer and arch named")
            return cls(layer=dict(data["layer"]), arch=dict(data["arch"]), settings=dict(data["settings"]),
                       steps=steps, inputs_sha256=str(data["inputs_sha256"]),
                       version=str(data.get("version", __version__)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise MapperError(f"{source}: not an Eyexam result ({what})") from None


def peak_losses(bounds: Sequence[float], peak: float) -> list[float]:
    """MACs/cycle of the peak each step loses: min(b_{k-1}, peak) - min(b_k, peak), with
    b_0 = peak. They add up to peak - min(b_last, peak)."""
    out, prev = [], peak
    for b in bounds:
        cur = min(b, prev, peak)
        out.append(prev - cur)
        prev = cur
    return out


def biggest_loss(bounds: Sequence[float], peak: float) -> int | None:
    """Step (1-based) losing the largest share of the peak; the earliest on ties; None if none loses."""
    losses = peak_losses(bounds, peak)
    top = max(losses)
    if top <= peak * 1e-12:
        return None
    return next(k for k, x in enumerate(losses, start=1) if x >= top * (1 - 1e-12))


def save_json(path: str | Path, results: EyexamResult | Sequence[EyexamResult]) -> None:
    """Write one result (a JSON object) or per-layer results (a JSON list) atomically."""
    if isinstance(results, EyexamResult):
        write_json(path, results.to_dict())
    else:
        write_json(path, [r.to_dict() for r in results])


def load_json(path: str | Path) -> EyexamResult | list[EyexamResult]:
    """Read what `save_json` wrote: one result, or a list of per-layer results."""
    path = Path(path)
    data = read_json(path, "Eyexam JSON")
    if isinstance(data, list):
        if not data:
            raise MapperError(f"{path}: an empty list, expected Eyexam results")
        return [EyexamResult.from_dict(d, f"{path}[{i}]") for i, d in enumerate(data)]
    return EyexamResult.from_dict(data, str(path))
