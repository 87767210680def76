"""How sure an overlap's NCC is, and when its fall counts (the QC verdict and the round check share it).

Kept apart from :mod:`rhapso_core.qc.fusion` (which reads images, through scipy): the verdict imports
this, and the parameter check of every command imports the verdict before anything heavy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NCC_BLOCKS_PER_AXIS", "UNKNOWN_ERROR", "ncc_standard_error", "ncc_fell"]


#: Blocks per axis of the sampled overlap box for the NCC's jackknife standard error (27 in all).
NCC_BLOCKS_PER_AXIS = 3

#: The error of an NCC that cannot be estimated: the width of the NCC's range, so that no drop counts.
#: Finite, so that it survives the reports' JSON (where a non-finite number becomes null, read as 0).
UNKNOWN_ERROR = 2.0


def _ncc_from_sums(s: np.ndarray) -> float:
    n, sa, sb, saa, sbb, sab = s
    var_a, var_b = saa - sa * sa / n, sbb - sb * sb / n
    return float((sab - sa * sb / n) / np.sqrt(var_a * var_b)) if var_a > 0 and var_b > 0 else float("nan")


def ncc_standard_error(a: np.ndarray, b: np.ndarray, block: np.ndarray) -> float:
    """Delete-one-block jackknife standard error of the NCC (:func:`rhapso_core.qc.fusion.ncc`) of
    ``a`` and ``b``, whose samples fall in the spatial blocks ``block`` (ints). :data:`UNKNOWN_ERROR`
    with fewer than two blocks or a block whose removal leaves a constant sample.

    Why: the samples of an overlap are not independent (neighbouring points see the same structure),
    so the NCC's uncertainty is set by how many structures the overlap holds, which blocks of space
    measure and a sample count does not. An overlap whose correlation one blob in one corner carries
    (a small diagonal overlap of a 3-D grid, the rest background and noise) moved its NCC from 0.56
    at stage positions 3 voxels off to 0.43 at the true registration, with an error of 0.30-0.35 here;
    a textured overlap's is under 0.015 (``docs/robustness.md``).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean()
    b = b - b.mean()
    terms = np.stack([np.ones_like(a), a, b, a * a, b * b, a * b], axis=1)
    labels, inverse = np.unique(np.asarray(block), return_inverse=True)
    per = np.zeros((len(labels), 6))
    np.add.at(per, inverse.ravel(), terms)
    k = len(per)
    if k < 2:
        return UNKNOWN_ERROR
    total = per.sum(axis=0)
    loo = np.array([_ncc_from_sums(total - row) for row in per])
    if not np.all(np.isfinite(loo)):
        return UNKNOWN_ERROR
    return float(np.sqrt((k - 1) / k * np.sum((loo - loo.mean()) ** 2)))


def ncc_fell(before: float | None, after: float | None, se_before: float | None, se_after: float | None,
             max_drop: float, sigmas: float) -> bool:
    """Whether an overlap's NCC fell from ``before`` to ``after``: by more than ``max_drop`` and by
    more than ``sigmas`` standard errors of the difference (the two errors combined as independent).
    An unknown error (None) counts as 0: the fixed bound alone, as before errors were measured."""
    if before is None or after is None:
        return False
    se = float(np.hypot(se_before or 0.0, se_after or 0.0))
    return bool(after < before - max(max_drop, sigmas * se))
