"""Typed records of a parameter resolution: each value, where it came from and why."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["ResolvedValue", "PrealignmentDecision", "Resolution"]


@dataclass(frozen=True)
class ResolvedValue:
    """One parameter after resolution.

    ``source`` is ``"user"`` when the value was set (a user-set value always wins),
    ``"auto"`` when it was derived from the dataset, ``"fallback"`` when it was left on
    auto but the dataset gave nothing to derive it from.
    """

    stage: str
    name: str
    value: Any
    source: Literal["user", "auto", "fallback"]
    reason: str

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.name}"


@dataclass(frozen=True)
class PrealignmentDecision:
    """Whether a coarse image-based prealignment runs before matching, and why.

    ``chosen``: a phase-correlation round (``rhapso_core.stitching``) runs before the
    point rounds (:func:`rhapso_core.pipeline.prealign.alignment_rounds`). ``cause``:
    comma-separated ``stage_uncertainty`` (the user's, beyond the bridge),
    ``measured_stage_error`` (phase correlation of sampled overlaps measured more),
    ``few_points`` (overlaps too poor in points to match), ``single_plane`` (every overlap is
    between single planes), ``user`` (alignment.prealign=on).
    """

    chosen: bool
    stage_uncertainty: float  # world units
    bridgeable: float  # world units: largest relative error the matcher can bridge
    reason: str
    cause: str = ""


@dataclass(frozen=True)
class Resolution:
    """Every resolved parameter of a dataset, with the facts they were derived from.

    ``params`` is the concrete :class:`~rhapso_core.config.PipelineParams` (no ``auto``
    left in the resolved stages); ``facts`` are the measured quantities (overlap widths,
    feature size, noise) in JSON-able form; ``seconds`` is the time the resolution took.
    """

    xml: str
    params: Any  # PipelineParams (typed loosely to keep this module import-light)
    values: tuple[ResolvedValue, ...]
    prealignment: PrealignmentDecision
    facts: dict = field(default_factory=dict)
    seconds: float = 0.0

    def value(self, key: str) -> ResolvedValue:
        for v in self.values:
            if v.key == key:
                return v
        raise KeyError(f"no resolved parameter {key!r}")

    def to_dict(self) -> dict:
        return {
            "xml": self.xml,
            "seconds": round(self.seconds, 3),
            "parameters": [asdict(v) for v in self.values],
            "prealignment": asdict(self.prealignment),
            "facts": self.facts,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_jsonable)

    def summary(self) -> dict:
        """``{"stage.name": value}`` of every resolved parameter (the CLI summary)."""
        return {v.key: v.value for v in self.values}

    def table(self) -> str:
        """A plain-text table: parameter, value, source, reason (``rhapso align --explain``)."""
        rows = [(v.key, _fmt(v.value), v.source, v.reason) for v in self.values]
        w0 = max([len(r[0]) for r in rows] + [9])
        w1 = max([len(r[1]) for r in rows] + [5])
        lines = [f"{'parameter':<{w0}}  {'value':<{w1}}  source    reason"]
        lines += [f"{a:<{w0}}  {b:<{w1}}  {c:<8}  {d}" for a, b, c, d in rows]
        p = self.prealignment
        lines.append("")
        lines.append(f"prealignment: {'chosen' if p.chosen else 'not needed'}: {p.reason}")
        lines.append(f"resolved in {self.seconds:.2f} s")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _jsonable(v: Any):
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(v)
