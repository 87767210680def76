"""Input and output records of the global solve.

Frames: every point and every affine here is in the *world* frame, x, y, z
order, as produced by the views' current registrations (see
:mod:`rhapso_core.transforms`). A correction ``M_v`` is a 4x4 world -> world
affine; the integrator prepends it to view ``v``'s registration, so the new
view-voxel -> world transform is ``M_v @ (old view_to_world)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rhapso_core import transforms

__all__ = ["ViewId", "Link", "LinkResidual", "SolveReport", "SolveResult", "SolverInputError"]

#: A view is named by ``(timepoint, setup)``, as in BigStitcher's ``ViewId``.
ViewId = tuple[int, int]


class SolverInputError(ValueError):
    """The links, views or parameters given to the solver are inconsistent."""


@dataclass(frozen=True, eq=False)
class Link:
    """Matched points between two views, already mapped to world coordinates.

    Parameters
    ----------
    a, b : ViewId
        The two views ``(timepoint, setup)``; ``a != b``.
    pa, pb : (N, 3) float arrays
        World coordinates (x, y, z; world units, normally full-resolution
        voxels) of the matched points of ``a`` and of ``b`` under the views'
        current registrations; row ``i`` of ``pa`` matches row ``i`` of ``pb``.
    weight : float or (N,) array, default 1.0
        Per-match weight (>= 0), multiplied by the label weight of
        :class:`~rhapso_core.solver.params.SolverParams.label_weights`.
    label : str, default "beads"
        Interest point label the matches came from.
    units : (N,) int array, optional
        Matches measured together (the corners of one image block of a phase-correlation
        link share one shift): the model validation holds out a unit's matches together.
        None: every match is its own unit.
    """

    a: ViewId
    b: ViewId
    pa: np.ndarray
    pb: np.ndarray
    weight: float | np.ndarray = 1.0
    label: str = "beads"
    units: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            v = getattr(self, name)
            try:
                vid = (int(v[0]), int(v[1]))
                if len(v) != 2:
                    raise TypeError
            except (TypeError, ValueError, IndexError):
                raise SolverInputError(f"link {name}={v!r} is not a (timepoint, setup) pair") from None
            object.__setattr__(self, name, vid)
        if self.a == self.b:
            raise SolverInputError(f"link between view {self.a} and itself")
        pa = np.array(self.pa, dtype=np.float64)
        pb = np.array(self.pb, dtype=np.float64)
        if pa.ndim != 2 or pa.shape[1] != 3 or pa.shape != pb.shape:
            raise SolverInputError(
                f"link {self.a}-{self.b} ({self.label}): pa and pb must both be (N, 3); got {pa.shape} and {pb.shape}"
            )
        if not (np.all(np.isfinite(pa)) and np.all(np.isfinite(pb))):
            raise SolverInputError(f"link {self.a}-{self.b} ({self.label}): non-finite point coordinates")
        w = np.array(np.broadcast_to(np.asarray(self.weight, dtype=np.float64), (pa.shape[0],)))
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise SolverInputError(f"link {self.a}-{self.b} ({self.label}): weights must be finite and >= 0")
        for arr in (pa, pb, w):
            arr.setflags(write=False)
        object.__setattr__(self, "pa", pa)
        object.__setattr__(self, "pb", pb)
        object.__setattr__(self, "weight", w)
        if self.units is not None:
            u = np.asarray(self.units, dtype=np.int64)
            if u.shape != (pa.shape[0],):
                raise SolverInputError(f"link {self.a}-{self.b} ({self.label}): units must be one id per match")
            u.setflags(write=False)
            object.__setattr__(self, "units", u)

    @property
    def n(self) -> int:
        return int(self.pa.shape[0])


@dataclass(frozen=True)
class LinkResidual:
    """Per-link match distances (world units) before and after the solve."""

    a: ViewId
    b: ViewId
    label: str
    n_matches: int
    mean_before: float
    max_before: float
    mean_after: float
    max_after: float
    status: str  # "used", "removed" (outlier), "dropped" (too few matches / zero weight)


def _num(x: float) -> float | None:
    """JSON has no inf / nan."""
    return float(x) if math.isfinite(x) else None


def _vid(v: ViewId) -> dict[str, int]:
    return {"timepoint": int(v[0]), "setup": int(v[1])}


@dataclass
class SolveReport:
    """What the solve did; every distance is in world units (normally voxels).

    ``tile_errors`` is each view's mean match distance after the solve (views
    without active links are absent); ``final_error`` is their mean (mpicbg's
    ``TileConfiguration.getError``), ``max_error`` their max. ``iterations`` is
    the total number of optimiser iterations (iterative solver) or of
    regulariser rounds (sparse solver) over all re-solves. ``converged`` is true
    when the last optimiser run converged and, for the iterative-removal methods,
    the relative / absolute thresholds were met.
    """

    model: str
    lambda_value: float
    method: str
    solver: str
    fixed_views: list[ViewId]
    gauge_fixed_views: list[ViewId]
    tile_errors: dict[ViewId, float]
    links: list[LinkResidual]
    removed_links: list[tuple[ViewId, ViewId, str]]
    iterations: int
    solves: int
    final_error: float
    max_error: float
    converged: bool
    unconnected_views: list[ViewId] = field(default_factory=list)
    weak_links: int = 0
    rounds: list[dict[str, Any]] = field(default_factory=list)
    model_selection: dict[str, Any] | None = None  # the held-out validation's choice (model / lambda auto)
    # Flatness of the matched points (rhapso_core.planar.Planarity.to_dict()); planar: in-plane model used.
    plane: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (views as ``{"timepoint", "setup"}``; inf / nan as null)."""
        return {
            "model": self.model,
            "lambda_value": self.lambda_value,
            "method": self.method,
            "solver": self.solver,
            "fixed_views": [_vid(v) for v in self.fixed_views],
            "gauge_fixed_views": [_vid(v) for v in self.gauge_fixed_views],
            "unconnected_views": [_vid(v) for v in self.unconnected_views],
            "tile_errors": [{**_vid(v), "error": _num(e)} for v, e in sorted(self.tile_errors.items())],
            "links": [
                {
                    "a": _vid(r.a),
                    "b": _vid(r.b),
                    "label": r.label,
                    "n_matches": r.n_matches,
                    "mean_before": _num(r.mean_before),
                    "max_before": _num(r.max_before),
                    "mean_after": _num(r.mean_after),
                    "max_after": _num(r.max_after),
                    "status": r.status,
                }
                for r in self.links
            ],
            "removed_links": [{"a": _vid(a), "b": _vid(b), "label": lab} for a, b, lab in self.removed_links],
            "iterations": self.iterations,
            "solves": self.solves,
            "final_error": _num(self.final_error),
            "max_error": _num(self.max_error),
            "converged": self.converged,
            "weak_links": self.weak_links,
            "rounds": self.rounds,
            "model_selection": self.model_selection,
            "plane": self.plane,
        }


@dataclass
class SolveResult:
    """Corrections per view plus the report.

    ``corrections[v]`` is the 4x4 world -> world affine (x, y, z) to prepend to
    view ``v``'s registration under the name ``transform_name``.
    """

    corrections: dict[ViewId, np.ndarray]
    transform_name: str
    report: SolveReport

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; each correction as BigStitcher's 12 row-major numbers."""
        return {
            "transform_name": self.transform_name,
            "corrections": [
                {**_vid(v), "affine": transforms.to_xml_values(m)} for v, m in sorted(self.corrections.items())
            ],
            "report": self.report.to_dict(),
        }
