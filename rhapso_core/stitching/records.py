"""Typed records of phase-correlation stitching (one per pair, one per round)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rhapso_core.stitching.blocks import PhaseBlock

__all__ = ["PhaseLink", "PhaseRoundRecord", "registration_hash"]

ViewId = tuple[int, int]


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def registration_hash(affine_a, affine_b) -> float:
    """BigStitcher's hash of two views' registrations: sum of ``A_i + 13 B_i`` over the 12
    row-packed values of each view's voxel -> world affine (PairwiseStitchingResult.calculateHash).
    A stored shift whose hash no longer matches was measured under other registrations."""
    a = [float(v) for row in affine_a[:3] for v in row]
    b = [float(v) for row in affine_b[:3] for v in row]
    return float(sum(x + 13.0 * y for x, y in zip(a, b)))


@dataclass(frozen=True)
class PhaseLink:
    """The phase-correlation result of one pair of views.

    ``shift_xyz`` is the world translation (x, y, z; world units) that view ``b`` must move by,
    relative to ``a``, to match it: with ``a`` held, b's correction is ``translation(shift_xyz)``
    (BigStitcher's pairwise ``<shift>``). ``box_min_xyz`` / ``box_max_xyz``: the world overlap box
    that was compared, under the registrations of the time (``hash``). ``r``: Pearson correlation
    of the overlap at the shift. ``level``: pyramid level correlated; ``refined_level`` the finer
    level the estimate was refined at (None if not). ``status``: ``ok`` (used), ``low_r`` /
    ``high_r`` / ``too_far`` (filtered out), ``no_overlap``, ``failed`` (no verifiable peak).
    ``blocks``: the shift fitted again in parts of the overlap (:mod:`rhapso_core.stitching.blocks`;
    () when the overlap is too small to cut or the link was read from an XML).
    """

    view_a: ViewId
    view_b: ViewId
    shift_xyz: tuple[float, float, float]
    r: float
    box_min_xyz: tuple[float, float, float]
    box_max_xyz: tuple[float, float, float]
    hash: float
    level: int
    refined_level: int | None
    crop_shape_xyz: tuple[int, int, int]
    status: str
    reason: str = ""
    seconds: float = 0.0
    blocks: tuple[PhaseBlock, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def shift_length(self) -> float:
        return math.sqrt(sum(v * v for v in self.shift_xyz))

    def to_dict(self) -> dict[str, Any]:
        return {
            "view_a": list(self.view_a), "view_b": list(self.view_b),
            "shift_xyz": [_num(v) for v in self.shift_xyz], "r": _num(self.r),
            "box_min_xyz": list(self.box_min_xyz), "box_max_xyz": list(self.box_max_xyz),
            "hash": self.hash, "level": self.level, "refined_level": self.refined_level,
            "crop_shape_xyz": list(self.crop_shape_xyz), "status": self.status, "reason": self.reason,
            "seconds": self.seconds, "blocks": [k.to_dict() for k in self.blocks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PhaseLink":
        nan = float("nan")
        return cls(
            tuple(d["view_a"]), tuple(d["view_b"]),
            tuple(nan if v is None else float(v) for v in d["shift_xyz"]),
            nan if d.get("r") is None else float(d["r"]),
            tuple(d["box_min_xyz"]), tuple(d["box_max_xyz"]), float(d["hash"]), int(d["level"]),
            d.get("refined_level"), tuple(d["crop_shape_xyz"]), d["status"], d.get("reason", ""),
            float(d.get("seconds", 0.0)), tuple(PhaseBlock.from_dict(k) for k in d.get("blocks", ())),
        )


@dataclass
class PhaseRoundRecord:
    """What a phase-correlation round did: its links, the solve's report, where it wrote."""

    xml_in: str
    xml_out: str
    links: list[PhaseLink]
    solver_report: dict[str, Any]
    transform_name: str
    corrections: dict[ViewId, list[float]] = field(default_factory=dict)

    @property
    def n_ok(self) -> int:
        return sum(k.ok for k in self.links)

    def to_dict(self) -> dict[str, Any]:
        return {
            "xml_in": self.xml_in, "xml_out": self.xml_out, "links": [k.to_dict() for k in self.links],
            "n_links_used": self.n_ok, "solver_report": self.solver_report, "transform_name": self.transform_name,
            "corrections": [{"timepoint": v[0], "setup": v[1], "affine": a} for v, a in sorted(self.corrections.items())],
        }
