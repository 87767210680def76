"""The relative affine of two views measured from every voxel of their overlap.

A pair's interest points measure its relative transform only where points are, with each
point's localisation error (0.2-0.5 voxel per axis on real texture): across an overlap slab a
few dozen voxels wide, the relative scale and shear that the slab's matches imply are poorly
determined, and an affine solve extrapolates them across the whole tile (measured on 3 x 2
real-texture tiles of 220 x 200 x 26 voxels with 1 % affine truth: the affine fitted to one
pair's 48-136 point matches is off by 0.9-3.0 voxels at the tile's far corners). Every voxel of
the overlap constrains the same 12 numbers: this module fits them by intensity registration,
as multiview-stitcher does with its ANTs / elastix affine pairwise registration, and as
BigStitcher's ICP refinement does with points.

Method: inverse-compositional Gauss-Newton (Lucas-Kanade; Baker & Matthews 2004) of the
smoothed fixed crop against the smoothed moving crop, starting from the views' current
relative transform. The Jacobian and its normal matrix come from the fixed image alone, so an
iteration is one cubic-spline resampling of the moving crop (``scipy.ndimage.map_coordinates``)
and a 12-column least squares. A gain and an offset between the two views' intensities are
re-estimated every iteration by linear regression (tiles of one channel differ by illumination).
Written here rather than taken from a registration package: SimpleITK / ANTs are heavy
dependencies that re-read whole volumes, while this needs the overlap crops the pipeline
already reads and a few dozen lines of NumPy.

Frames: every coordinate is a voxel coordinate (x, y, z) of the crop's pyramid level; arrays
are (z, y, x). ``fixed_to_moving`` maps fixed-view voxels to moving-view voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhapso_core import transforms

__all__ = ["OverlapAffineFit", "fit_overlap_affine", "sample_grid"]


@dataclass(frozen=True)
class OverlapAffineFit:
    """Result of one overlap's fit.

    ``matrix``: fixed voxel -> moving voxel (x, y, z; 4 x 4) of the crops' level. ``status``:
    "ok", "not_converged", "too_small" (too few voxels or a degenerate box) or "outside" (the
    fit left the moving crop). ``ncc_before`` / ``ncc_after``: normalised cross-correlation of
    the smoothed samples under the initial and the fitted transform. ``corner_se``: standard
    error of the fitted transform at the box's corners from the fit's normal matrix and
    residual (voxels; correlated residuals make it an underestimate, so it ranks fits rather
    than bounding them).
    """

    matrix: np.ndarray
    status: str
    iterations: int
    n_samples: int
    ncc_before: float
    ncc_after: float
    corner_se: float
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def sample_grid(box_xyz: np.ndarray, max_samples: int) -> np.ndarray:
    """Integer voxel positions (N, 3; x y z) covering ``box_xyz`` ((2, 3), inclusive), at most
    about ``max_samples``: the longest axes are strided first, so a thin axis keeps every plane."""
    lo = np.ceil(np.asarray(box_xyz[0], dtype=np.float64)).astype(int)
    hi = np.floor(np.asarray(box_xyz[1], dtype=np.float64)).astype(int)
    n = np.maximum(hi - lo + 1, 0)
    step = np.ones(3, dtype=int)
    while int(np.prod(np.ceil(n / step))) > max_samples:
        step[int(np.argmax(n / step))] += 1
    axes = [np.arange(lo[i], hi[i] + 1, step[i]) for i in range(3)]
    g = np.meshgrid(*axes, indexing="ij")
    return np.stack([a.ravel() for a in g], axis=1)


def _smooth(a: np.ndarray, sigma_zyx) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if not any(s > 0 for s in sigma_zyx):
        return a
    if a.ndim != 3:
        from scipy import ndimage

        return ndimage.gaussian_filter(a, sigma_zyx, mode="nearest")
    # scipy's gaussian_filter(mode="nearest") bit for bit, 1.9-4.2x faster on these crops
    # (bench/bench_alignment_filters.py).
    from rhapso_core.exact_gaussian import gaussian_filter, scipy_radius

    return gaussian_filter(np.ascontiguousarray(a), sigma_zyx, [scipy_radius(s) for s in sigma_zyx], "nearest")


#: The moving crop is resampled with cubic B-splines: linear interpolation between the voxels of a
#: smoothed image still pulls the fit toward whole voxels along a coarsely sampled axis (measured with
#: linear interpolation on tiles with z voxels 5x the xy voxels, translation truth: 0.029 voxel RMS,
#: against 0.008 from the points alone; cubic: 0.004; on the base cell 0.017 -> 0.003).
SPLINE_ORDER = 3


def _sample(coefficients: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.map_coordinates(coefficients, [xyz[:, 2], xyz[:, 1], xyz[:, 0]], order=SPLINE_ORDER,
                                   mode="nearest", prefilter=False)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of products, the same bits whatever the BLAS threads: a threaded BLAS splits a long
    reduction by its thread count, and the fits (then the solve, then the fused volume's metadata)
    would differ in their last bits between a Ray worker and a thread of the main process."""
    return float(np.einsum("i,i->", a, b))


def _gram(j: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ik->jk", j, j)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = float(np.sqrt(_dot(a, a) * _dot(b, b)))
    return _dot(a, b) / d if d > 0 else float("nan")


def fit_overlap_affine(
    fixed: np.ndarray, fixed_origin_xyz, moving: np.ndarray, moving_origin_xyz, fixed_to_moving: np.ndarray,
    box_xyz: np.ndarray, *, sigma_zyx=(1.0, 1.0, 1.0), max_samples: int = 30_000, max_iterations: int = 60,
    tolerance: float = 5e-3, min_samples: int = 1000,
) -> OverlapAffineFit:
    """Fit the affine mapping ``fixed``'s voxels in ``box_xyz`` onto ``moving``.

    Parameters
    ----------
    fixed, moving : (z, y, x) arrays
        Crops of the two views at one pyramid level; ``*_origin_xyz`` is the level voxel of each
        crop's first element.
    fixed_to_moving : (4, 4)
        Initial fixed voxel -> moving voxel transform (level voxels, x y z), e.g. from the
        current registrations. Must be within a voxel or two of the truth: this is a local fit.
    box_xyz : (2, 3)
        The region to compare, fixed level voxels (x y z, inclusive), inside ``fixed``'s crop.
        An axis on which it is less than 2 voxels thick (a single plane) keeps its row and
        column of the initial transform: nothing there measures them.
    sigma_zyx : smoothing of both crops before the fit (voxels per array axis); it widens the
        fit's reach and removes the noise the gradient would amplify.
    max_samples : most fixed voxels compared (the box is strided beyond that).
    tolerance : convergence, the largest change of the box's corners in one iteration (voxels).
    """
    init = np.asarray(fixed_to_moving, dtype=np.float64)
    fo = np.asarray(fixed_origin_xyz, dtype=np.float64)
    mo = np.asarray(moving_origin_xyz, dtype=np.float64)
    box = np.asarray(box_xyz, dtype=np.float64)

    def failed(status, reason, n=0):
        return OverlapAffineFit(init, status, 0, n, float("nan"), float("nan"), float("inf"), reason)

    pts = sample_grid(box, max_samples).astype(np.float64)
    if len(pts) < min_samples:
        return failed("too_small", f"{len(pts)} voxels in the overlap (fewest {min_samples})", len(pts))
    fs = _smooth(fixed, sigma_zyx)
    from scipy import ndimage

    ms = ndimage.spline_filter(_smooth(moving, sigma_zyx), order=SPLINE_ORDER, mode="nearest", output=np.float32)
    # the samples are whole voxels of the fixed crop: read by index, not interpolated
    local = (pts - fo).astype(np.intp)
    if np.any(local < 0) or np.any(local >= np.array(fs.shape[::-1])):
        raise ValueError(f"box_xyz {box.tolist()} is not inside the fixed crop (origin {fo.tolist()}, "
                         f"shape zyx {list(fs.shape)})")
    at = (local[:, 2], local[:, 1], local[:, 0])
    template = fs[at].astype(np.float64)
    # np.gradient needs two samples along an axis: a single plane has no gradient across it.
    grad = np.zeros((len(pts), 3))
    for axis_zyx in range(3):
        if fs.shape[axis_zyx] >= 2:
            grad[:, 2 - axis_zyx] = np.gradient(fs, axis=axis_zyx)[at]
    centre = 0.5 * (box[0] + box[1])
    extent = np.maximum(0.5 * (box[1] - box[0]), 1e-9)
    q = (pts - centre) / extent  # in [-1, 1]: the 12 parameters on one scale
    # Parameters: row i, column j of the linear change (per unit of q_j), then the shift. A flat
    # axis k measures neither row k (motion along it) nor column k (change along it).
    flat = (box[1] - box[0]) < 2.0
    active = np.array([not (flat[i] or flat[j]) for i in range(3) for j in range(3)] + [not f for f in flat])
    jac = np.concatenate([(grad[:, :, None] * q[:, None, :]).reshape(-1, 9), grad], axis=1)[:, active]
    corners = transforms.box_corners(box[0], box[1])

    def delta_warp(dp):
        full = np.zeros(12)
        full[active] = dp
        d = np.eye(4)
        d[:3, :3] += full[:9].reshape(3, 3) / extent[None, :]
        d[:3, 3] = full[9:] - d[:3, :3] @ centre + centre
        return d

    shape_m = np.array(moving.shape[::-1], dtype=np.float64)

    def moving_samples(w):
        at = pts @ w[:3, :3].T + (w[:3, 3] - mo)
        inside = np.all((at >= 0.0) & (at <= shape_m - 1.0), axis=1)
        return _sample(ms, at if inside.all() else at[inside]).astype(np.float64), inside

    w = init.copy()
    y0, in0 = moving_samples(w)
    if in0.sum() < min_samples:
        return failed("outside", f"{int(in0.sum())} of {len(pts)} overlap voxels map into the moving crop", len(pts))
    ncc_before = _ncc(template[in0], y0)
    converged, it, step, h_all = False, 0, float("inf"), None
    for it in range(1, max_iterations + 1):
        y, inside = moving_samples(w)
        if inside.sum() < max(min_samples, 0.5 * in0.sum()):
            return OverlapAffineFit(init, "outside", it, int(inside.sum()), ncc_before, float("nan"), float("inf"),
                                    "the fit left the moving crop")
        t = template if inside.all() else template[inside]
        tc = t - t.mean()
        var = _dot(tc, tc)
        if var <= 0:
            return failed("too_small", "the fixed overlap is uniform", len(pts))
        gain = _dot(tc, y - y.mean()) / var
        if not np.isfinite(gain) or gain <= 0:
            return OverlapAffineFit(init, "not_converged", it, int(inside.sum()), ncc_before, float("nan"),
                                    float("inf"), "the overlaps' intensities are not positively correlated")
        r = (y - y.mean()) / gain - tc
        all_in = bool(inside.all())
        j = jac if all_in else jac[inside]
        if h_all is None or not all_in:
            h = _gram(j)
            # a tiny ridge: a direction the texture does not measure stays where it is instead of blowing up
            h += 1e-9 * np.trace(h) / len(h) * np.eye(len(h))
            if all_in:
                h_all = h
        else:
            h = h_all
        dp = np.linalg.solve(h, np.einsum("ij,i->j", j, r))
        d = delta_warp(dp)
        w = w @ transforms.invert(d)
        step = float(np.max(np.linalg.norm(transforms.apply(d, corners) - corners, axis=1)))
        if step < tolerance:
            converged = True
            break
    y, inside = moving_samples(w)
    ncc_after = _ncc(template[inside], y)
    j = jac[inside]
    t = template[inside]
    gain = _dot(t - t.mean(), y - y.mean()) / max(_dot(t - t.mean(), t - t.mean()), 1e-30)
    res = (y - y.mean()) / gain - (t - t.mean())
    dof = max(len(res) - j.shape[1] - 2, 1)
    cov = _dot(res, res) / dof * np.linalg.pinv(_gram(j))
    # The corners' displacement per parameter: the same basis as the Jacobian, at q = +-1.
    qc = (corners - centre) / extent
    se = 0.0
    for c in qc:
        basis = np.zeros((3, 12))
        for i in range(3):
            basis[i, 3 * i:3 * i + 3] = c
            basis[i, 9 + i] = 1.0
        b = basis[:, active]
        se = max(se, float(np.sqrt(max(np.trace(b @ cov @ b.T), 0.0))))
    status = "ok" if converged else "not_converged"
    reason = "" if converged else f"the corners still moved {step:.2g} voxel after {it} iterations"
    return OverlapAffineFit(w, status, it, int(inside.sum()), ncc_before, ncc_after, se, reason)
