"""A pair's phase link joined to its point matches axis by axis.

The solver weighs every match alike along x, y and z (one weight per match), but a pair's
two estimates of its translation are not equally good along every axis: the points may
slide along fibres in x and y while the phase correlation is pulled toward the integer
voxel along a coarsely sampled z (:mod:`rhapso_core.stitching.peak_fit`). One weight for
the link cannot express that; the link's target can. With the pair's ``n`` matches
(weight 1 each; their mean ``t_p``, standard error ``se_p`` per axis) and the phase shift
``t_f`` (standard error ``se_f``), the best combination per axis is the inverse-variance
mean ``t_i = t_p + rho_i / (1 + rho_i) (t_f - t_p)``, ``rho_i = se_p^2 / se_f^2``. The link
gets the weight its most precise axis earns (``W = n max(rho)``, as 8 corner matches) and,
per axis, the target at which ``n`` matches at ``t_p`` and weight ``W`` at the target
average to ``t_i``: the phase shift itself on that axis, and nearer the points on axes
where the phase knows less. Within the pair this is exact; in the whole solve the links
of neighbouring pairs enter as well, as they do for the matches.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fuse_per_axis"]


def fuse_per_axis(n_matches: int, points_xyz, points_se_xyz, phase_xyz, phase_se_xyz) -> tuple[tuple, float]:
    """(link target shift (world x, y, z), weight of each of its 8 corner matches); see the module docstring.

    Axes with no standard error on either side (a single plane's flat axis) take the phase's value; an
    axis whose phase error is unknown (not finite) or infinite keeps the points' mean. Without any axis
    where both are known, the link is the phase shift and weighs what the matches do.
    """
    tp = np.asarray(points_xyz, dtype=np.float64)
    tf = np.asarray(phase_xyz, dtype=np.float64)
    vp = np.square(np.asarray(points_se_xyz, dtype=np.float64))
    vf = np.square(np.asarray(phase_se_xyz, dtype=np.float64))
    known = np.isfinite(vf) & (vp > 0)
    rho = np.zeros(3)
    rho[known] = np.where(vf[known] > 0, vp[known] / np.maximum(vf[known], 1e-300), np.inf)
    if not np.any(known & (rho > 0)):
        return tuple(float(v) for v in tf), n_matches / 8.0
    # A phase error of 0 where the points scatter: the phase holds that axis outright; its weight is capped by
    # the largest finite ratio (or the matches' own where all are infinite) so the solve stays conditioned.
    finite = rho[known & np.isfinite(rho)]
    rmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    share = np.where(np.isinf(rho), 1.0, rho / (1.0 + rho))  # of (t_f - t_p) in the best combination
    target = tp + (1.0 + rmax) / rmax * np.minimum(share, rmax / (1.0 + rmax)) * (tf - tp)
    target = np.where(known, target, np.where(np.isfinite(vf) & (vp == 0) & (vf == 0), tf, tp))
    return tuple(float(v) for v in target), n_matches * rmax / 8.0
