"""View ids in QC records: ``{"timepoint": t, "setup": s}`` as in the solver report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

ViewId = tuple[int, int]


def vid(v: Sequence[int]) -> dict[str, int]:
    return {"timepoint": int(v[0]), "setup": int(v[1])}


def parse_vid(value: Any) -> ViewId:
    """A view from a report's ``{"timepoint", "setup"}`` dict or a ``[t, s]`` pair."""
    if isinstance(value, Mapping):
        return (int(value["timepoint"]), int(value["setup"]))
    return (int(value[0]), int(value[1]))


def name(v: Sequence[int]) -> str:
    """Short text for a view: ``t0 s3``."""
    return f"t{int(v[0])} s{int(v[1])}"


def num(x: Any) -> float | None:
    """A float for JSON (None for NaN / inf / None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
