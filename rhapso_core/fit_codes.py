"""The codes naming the compiled fits (:mod:`rhapso_core._fit_kernels`) and their degeneracy rule.

Apart from the kernels so that ``rhapso_core.models``, which the command line reads for its
parameter names before any work starts, names them without importing numba (and scipy with it).
"""

from __future__ import annotations

__all__ = ["NO_KIND", "TRANSLATION", "RIGID", "AFFINE", "DEGENERATE"]

NO_KIND = -1  # no regulariser
TRANSLATION = 0
RIGID = 1
AFFINE = 2

# Relative size of the smallest singular value that still determines a fit (rigid: the middle
# one of H; affine: the smallest of cov_pp); below it the fit is ill-defined.
DEGENERATE = 1e-9
