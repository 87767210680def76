"""Every key of Rhapso's own parameter files (``Rhapso/pipelines/ray/param/*.yml``) and what it becomes here.

Rhapso's files are flat: stage parameters share one namespace (``sigma``,
``min_matches``), and each alignment round repeats the matching parameters with a
suffix (``search_radius_rigid``, ``inlier_factor_affine``, ``..._split_affine``).
:func:`rhapso_key` says, for one key, whether it

* maps to a parameter of a stage (plain keys are routed by field name in
  :mod:`rhapso_core.param_files`; the ones here need a rule),
* maps to a per-round matching parameter (``alignment.matching_per_round``),
* is not a parameter here (input/output locations, cluster and evaluation
  settings), with the reason, or
* is refused (a value this service cannot honour), with the reason.

Rhapso passes the per-round RANSAC values positionally
(``Rhapso/pipelines/ray/interest_point_matching.py`` -> ``RansacMatching``), so
``inlier_factor_*`` is RANSAC's max epsilon and ``lambda_value_*`` its minimum
inlier ratio; ``regularization_weight_*`` is the affine/rigid interpolation weight
(``(1 - w) * affine + w * rigid`` in ``Rhapso/matching/ransac_matching.py``), which
is ``lambda_value`` here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["RhapsoKey", "ROUND_SUFFIXES", "PER_ROUND_FIELDS", "rhapso_key", "parse_view"]

# Longest suffix first: "_split_affine" also ends with "_affine".
ROUND_SUFFIXES: tuple[tuple[str, str], ...] = (("_split_affine", "split_affine"), ("_rigid", "rigid"), ("_affine", "affine"))

# Rhapso per-round name -> MatchingParams field.
PER_ROUND_FIELDS: dict[str, str] = {
    "num_neighbors": "num_neighbors",
    "redundancy": "redundancy",
    "significance": "significance",
    "search_radius": "search_radius",
    "num_required_neighbors": "num_required_neighbors",
    "model_min_matches": "model_min_matches",
    "inlier_factor": "max_epsilon",
    "lambda_value": "min_inlier_ratio",
    "num_iterations": "num_iterations",
    "regularization_weight": "lambda_value",
}

# The model each round's match_type_* / run_type_solver_* must name.
_ROUND_MODEL = {"rigid": "rigid", "affine": "affine", "split_affine": "split-affine"}

_IO = "an input/output location: this service takes it as a command argument or derives it from --out"
_NOT_PARAMETERS: dict[str, str] = {
    **{k: _IO for k in (
        "xml_file_path_detection", "image_file_prefix", "xml_output_file_path", "n5_output_file_prefix",
        "n5_input_path", "n5_matching_output_path", "metrics_output_path", "xml_file_path_split",
        "xml_output_file_path_split", "n5_path_split", "xml_file", "base_path", "file_path",
    )},
    "detection_run_type": "the execution backend: set runtime.use_ray / runtime.ray_address instead",
    "file_type": "the image format comes from the XML's <ImageLoader> (every BigStitcher format is read)",
    "input_type": "the image format comes from the XML's <ImageLoader> (every BigStitcher format is read)",
    **{k: "a setting of Rhapso's evaluation step; the qc section and QC report replace it" for k in (
        "args", "KDE_type", "bandwidth", "view_id", "pair", "plot", "thresholding", "min_alignment",
        "max_alignment", "minimum_points", "maximum_points", "minimum_total_matches", "maximum_total_matches",
        "max_kde", "min_kde", "max_cv", "min_cv",
    )},
}


@dataclass(frozen=True)
class RhapsoKey:
    """What one key of a Rhapso parameter file becomes.

    ``action`` is ``"stage"`` (``target`` = ``"solver.fixed_views"``, value converted),
    ``"round"`` (``round`` and ``target`` = MatchingParams field), ``"check"`` (a
    value that must equal ``expected``; nothing to set), ``"ignore"`` (``reason``)
    or ``"refuse"`` (``reason``). None from :func:`rhapso_key` means the key is not
    special: route it by field name.
    """

    key: str
    action: str
    target: str | None = None
    round: str | None = None
    value: Any = None
    expected: Any = None
    reason: str = ""


_VIEW = re.compile(r"^\s*timepoint\s*:\s*(-?\d+)\s*,\s*setup\s*:\s*(-?\d+)\s*$")


def parse_view(text: Any) -> tuple[int, int] | None:
    """Rhapso's view strings ``"timepoint: 0, setup: 3"`` -> ``(0, 3)``; None if not one."""
    m = _VIEW.match(str(text))
    return (int(m.group(1)), int(m.group(2))) if m else None


def _views(key: str, value: Any) -> RhapsoKey:
    items = value if isinstance(value, list) else [value]
    views = [parse_view(v) for v in items]
    if any(v is None for v in views):
        return RhapsoKey(key, "refuse", reason=f"expected views like 'timepoint: 0, setup: 0', got {value!r}")
    return RhapsoKey(key, "stage", target="solver.fixed_views", value=views)


def rhapso_key(key: str, value: Any) -> RhapsoKey | None:
    """The rule for one top-level key of a Rhapso parameter file (None: route by field name)."""
    if key in _NOT_PARAMETERS:
        return RhapsoKey(key, "ignore", reason=_NOT_PARAMETERS[key])
    if key == "fixed_views":
        return _views(key, value)
    if key == "chunks_per_bound" and value == 0:
        # Rhapso: 0 turns sub-region chunking off, one chunk per bound (Rhapso/detection/metadata_builder.py).
        return RhapsoKey(key, "stage", target="detection.chunks_per_bound", value=1)
    if key == "fixed_tile":
        # Rhapso: False = no fixed tile chosen by the user; else the view string of the one fixed tile.
        if value is False or value is None:
            return RhapsoKey(key, "ignore", reason="False: the solver's default fixed views apply")
        return _views(key, value)
    for suffix, rnd in ROUND_SUFFIXES:
        if not key.endswith(suffix):
            continue
        base = key[: -len(suffix)]
        if base in PER_ROUND_FIELDS:
            return RhapsoKey(key, "round", target=PER_ROUND_FIELDS[base], round=rnd, value=value)
        if base in ("match_type", "run_type_solver"):
            want = _ROUND_MODEL[rnd]
            if str(value) != want:
                return RhapsoKey(
                    key, "refuse",
                    reason=f"the {rnd} round's model is fixed by its name here ({want!r}); got {value!r} "
                    "(choose the rounds with alignment.rounds)",
                )
            return RhapsoKey(key, "check", expected=want)
        if base in ("xml_file_path_matching", "xml_file_path_solver", "xml_file_path_output"):
            return RhapsoKey(key, "ignore", reason=_IO)
        return None
    return None
