"""Affine rounds: each matched face pair's relative affine measured from its overlap's voxels.

For every pair whose interest points matched, the relative affine is fitted to the overlap's intensities
(:func:`rhapso_core.stitching.overlap_affine.fit_overlap_affine`, from the current
registrations). A fit is used only when it is checked: it converged, it made the overlaps
agree at least as well as the registrations it started from, and the pair's own point
matches do not contradict it (below). A used fit stands in the round's solve for the pair's
point matches, as virtual matches on a grid over the overlap, weighted so that the pair pulls
exactly as hard as its matches did: what changes is the shape (scale, shear and rotation
across the overlap, which the matches measure poorly), not the balance between pairs.

An automatic model and lambda (:mod:`rhapso_core.solver.select`) are chosen on the fits and
the point matches they replace together. The fits alone: their 27 virtual matches share one
error, and held out among themselves they made an affine look necessary on translation-only
data (affine, lambda 0.5 chosen on the base cell and on thin tiles: 0.006-0.008 voxel RMS
against 0.003-0.004). The points alone: too noisy to see the affine the fits measure
(lambda 0.5 on the real-texture affine cell cut to the repository's crop: 0.291, against
0.085 with both; the whole cell 0.139 against 0.103).

The points' check: the pair's solved matches (the matches the solve would use,
:func:`~rhapso_core.pipeline.border_matches.solved_matches`) must not contradict the fit. They
contradict it when the fit explains them worse than the affine fitted to them would, beyond
chance (an F test at p = 0.001 over the 12 affine parameters) *and* beyond their own scatter:
the fit moves them, on average, farther from their own affine than they scatter about it
(F > n / 4 for n matches). Both, because points can be biased: on fibres, DoG points slide
along the fibres (measured on 3 x 2 tiles of fibres only: the pairs' matches off the truth by
0.3-1.4 voxels on average, the overlap fits within 0.03 at the overlap's centre and 0.06-0.14
at its corners, and the F test alone refused two of those fits). A fit that slid to another
correlation peak (a voxel or more) fails both and the pair keeps its points.

Links are stored in the point round's anchors as ``{"xml": ..., "links": [], "affine_links":
[...]}``: voxel-frame correspondences do not depend on registrations, so a later solve maps
them with its own.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

from rhapso_core import transforms
from rhapso_core.image_source import level_to_level0
from rhapso_core.overlap import overlap_box, world_box_in_view
from rhapso_core.pipeline.border_matches import solved_matches
from rhapso_core.pipeline.dataset import load_dataset, open_view, view_geometry
from rhapso_core.pipeline.match import PairRecord
from rhapso_core.pipeline.in_threads import available_cores, in_threads
from rhapso_core.pointstore import PointStore
from rhapso_core.solver.records import Link
from rhapso_core.spimdata import ViewId
from rhapso_core.stitching.overlap_affine import OverlapAffineFit, fit_overlap_affine

__all__ = ["AFFINE_LINK_LABEL", "round_fits_affines", "measure_overlap_affines", "phase_held", "affine_solver_links", "replaced_pairs",
           "without_pairs", "with_fit_steps", "pair_key", "unfitted_pairs", "merged_records"]

AFFINE_LINK_LABEL = "overlap_affine"
#: Significance of the points' F test (see the module docstring).
POINTS_ALPHA = 0.001


def round_fits_affines(solver, params) -> bool:
    """Whether a round with these solver parameters measures overlap affines: enabled, and its model is
    an affine (given, or among the automatic choice's candidates). A rigid round gains nothing from them."""
    from rhapso_core.solver.select import candidates

    return bool(params.enabled) and any(m == "affine" for m, _ in candidates(solver))


def _choose_level(source, box0_xyz: np.ndarray, max_crop_voxels: int) -> int:
    size0 = np.maximum(box0_xyz[1] - box0_xyz[0] + 1.0, 1.0)
    for level in range(source.n_levels):
        f = np.asarray(source.level_factors(level), dtype=np.float64)[::-1]
        if float(np.prod(np.maximum(size0 / f, 1.0))) <= max_crop_voxels:
            return level
    return source.n_levels - 1


def _read_box(source, level: int, lo_xyz, hi_xyz) -> tuple[np.ndarray, np.ndarray]:
    """The level's voxels covering [lo, hi] (x y z, clipped to the level): array (z y x) and its origin (x y z)."""
    shape = np.asarray(source.level_shape(level))[::-1]
    lo = np.clip(np.floor(lo_xyz).astype(int), 0, shape - 1)
    hi = np.clip(np.ceil(hi_xyz).astype(int), 0, shape - 1)
    box = ((int(lo[2]), int(hi[2]) + 1), (int(lo[1]), int(hi[1]) + 1), (int(lo[0]), int(hi[0]) + 1))
    return np.asarray(source.read(box, level)), lo.astype(np.float64)


def _points_f_test(pa: np.ndarray, pb: np.ndarray, matrix: np.ndarray) -> tuple[float, float]:
    """(F statistic, critical value) of the matches pa -> pb (voxels) under ``matrix`` against their own affine."""
    n = len(pa)
    x = np.c_[pa, np.ones(n)]
    own, *_ = np.linalg.lstsq(x, pb, rcond=None)
    ssr_own = float(np.sum((pb - x @ own) ** 2))
    ssr_fit = float(np.sum((pb - transforms.apply(matrix, pa)) ** 2))
    dof = 3 * n - 12
    if dof <= 0 or ssr_own <= 0:
        return float("nan"), float("nan")
    from scipy.special import fdtri  # the F quantile without importing scipy.stats (2-3 s)

    stat = ((ssr_fit - ssr_own) / 12.0) / (ssr_own / dof)
    return float(stat), float(fdtri(12, dof, 1.0 - POINTS_ALPHA))


def phase_held(anchor_sets: Sequence[dict | None], faces: set[frozenset] | None = None) -> dict[frozenset, float]:
    """Pairs held by phase-correlation links in a round's anchors, with the total weight of each link
    (8 corner matches of its weight, 1 unless the anchors give one); given ``faces``
    (:func:`~rhapso_core.pipeline.phase_fallback.face_pairs`), only those: a point round drops the
    phase links of a grid's corner contacts (:func:`~rhapso_core.pipeline.phase_fallback.anchors_of_unmatched`)."""
    out: dict[frozenset, float] = {}
    for a in anchor_sets:
        if not a:
            continue
        weights = a.get("weights") or [1.0] * len(a.get("links", ()))
        for k, w in zip(a.get("links", ()), weights):
            pair = frozenset((tuple(k["view_a"]), tuple(k["view_b"])))
            if k.get("status", "ok") == "ok" and (faces is None or pair in faces):
                out[pair] = 8.0 * float(w)
    return out


def measure_overlap_affines(
    xml_uri: str, store_uri: str, records: Sequence[PairRecord], label: str, params, min_matches: int,
    storage_options=None, held: dict[frozenset, float] | None = None,
) -> tuple[dict | None, list[dict]]:
    """Fit and check the overlap affine of every point-matched pair of ``records``, and of every pair
    of ``held`` (:func:`phase_held`: pairs whose points did not match, held by a phase link).

    A held pair has no points to check its fit against: the correlation check alone decides,
    and the fit replaces the phase link with the link's weight. Its translation was measured
    by the link over the same overlap; the fit adds the rotation, scale and shear across it that
    the link's blocks measure coarsely (measured on real single planes of ch1 where points matched
    1-2 of 11 pairs, 1 % affine truth: 0.469 -> 0.271 and 0.249 -> 0.164 pixel RMS; on generated
    3-D tiles that points could not match, translation truth: 0.033 -> 0.005 and 0.028 -> 0.007).
    But unwitnessed fits also failed where nothing could see it (sparse single planes: 0.073 ->
    2.7), so the pipeline passes ``held`` only when ``phase_held_pairs`` asks for it.

    Corner contacts of a grid too: their small box measures the affine poorly, but it is fitted
    at the box's own corners only and the points' test guards it, while their 10-20 point
    matches are what they replace (measured on 3 x 2 real-texture tiles with 1 % affine truth:
    0.229 voxel RMS with face pairs only, 0.195 with the corner contacts' fits as well).

    ``params``: :class:`~rhapso_core.stitching.params.OverlapAffineParams`. Returns the round's
    anchors ``{"xml", "links": [], "affine_links": [...]}`` (None if no fit passed) and one report
    entry per pair tried (JSON-able): status, correlations before and after, the points' test.
    """
    held = held or {}
    # canonical order: records come in the order their batches finished (runner-dependent), and the
    # solve's sums, hence its last bits, follow the links' order
    ok = sorted((r for r in records if r.ok or pair_key(r) in held), key=lambda r: (tuple(r.view_a), tuple(r.view_b)))
    if not ok:
        return None, []
    sd = load_dataset(xml_uri, storage_options)
    views: list[ViewId] = sorted({tuple(v) for r in ok for v in (r.view_a, r.view_b)})
    geometry = view_geometry(sd, views)
    store = PointStore(store_uri, storage_options=storage_options, mode="r")
    # each view opened and its points read once, for all its pairs
    source = functools.cache(lambda v: open_view(sd, v, storage_options))
    stored = functools.cache(lambda v: store.read_points(v, label))

    # First what each pair needs, in order (reads of the store); then the fits, the expensive part, in
    # threads: scipy's filters and resampling release the GIL, so pairs overlap on the cores a loop
    # leaves idle; results come back in order, so the links and the report do not depend on the threads.
    report, jobs = [], []
    for r in ok:
        a, b = tuple(r.view_a), tuple(r.view_b)
        entry = {"view_a": list(a), "view_b": list(b), "held_by": "points" if r.ok else "phase link"}
        report.append(entry)
        c = None
        if r.ok:
            try:
                c = store.read_correspondences(a, b, label)
            except KeyError:
                entry.update(status="skipped", reason="no stored matches")
                continue
        (ra, sa), (rb, sb) = geometry[a], geometry[b]
        world = overlap_box(ra, sa, rb, sb)
        box0 = None if world is None else world_box_in_view(ra, sa, *world)
        if box0 is None:
            entry.update(status="skipped", reason="the views do not overlap")
            continue
        source(a), source(b)  # opened here, not by the threads below
        jobs.append((r, entry, c, np.asarray(box0, dtype=np.float64)))

    def fit_job(job):
        r, _, _, box0 = job
        a, b = tuple(r.view_a), tuple(r.view_b)
        try:
            return _fit_pair(source(a), source(b), geometry[a][0], geometry[b][0], box0, params)
        except ValueError as exc:  # a crop the overlap does not fit in: the pair keeps what it had
            return exc

    links = []
    for (r, entry, c, box0), got in zip(jobs, in_threads(fit_job, jobs, workers=_fit_workers(params))):
        a, b = tuple(r.view_a), tuple(r.view_b)
        (ra, sa), (rb, sb) = geometry[a], geometry[b]
        if isinstance(got, ValueError):
            entry.update(status="skipped", reason=str(got))
            continue
        fit, matrix0 = got
        entry.update(status=fit.status, reason=fit.reason, iterations=fit.iterations, samples=fit.n_samples,
                     ncc_before=_round(fit.ncc_before), ncc_after=_round(fit.ncc_after),
                     corner_se=_round(fit.corner_se))
        if not fit.ok:
            continue
        if not fit.ncc_after >= max(fit.ncc_before - params.ncc_tolerance, params.min_ncc):
            entry.update(status="rejected", reason=f"correlation {fit.ncc_before:.3f} -> {fit.ncc_after:.3f} "
                                                   f"(must not fall by more than {params.ncc_tolerance} and reach "
                                                   f"{params.min_ncc})")
            continue
        if c is None:
            entry["status"] = "used"
            links.append(_link_dict(a, b, box0, matrix0, held[pair_key(r)]))
            continue
        pa_w = transforms.apply(ra, stored(a).loc_xyz[c.idx_a])
        pb_w = transforms.apply(rb, stored(b).loc_xyz[c.idx_b])
        use = solved_matches(stored(a), stored(b), c.idx_a, c.idx_b, sa, sb, min_matches, pa_w, pb_w)
        pa, pb = stored(a).loc_xyz[c.idx_a][use], stored(b).loc_xyz[c.idx_b][use]
        n = int(len(pa))
        if n < max(min_matches, 5):
            entry.update(status="rejected", reason=f"{n} solved matches: too few to check the fit against")
            continue
        stat, crit = _points_f_test(pa, pb, matrix0)
        entry.update(points=n, points_f=_round(stat), points_f_critical=_round(crit))
        if not stat <= max(crit, n / 4.0):
            entry.update(status="rejected", reason=f"the pair's {n} matches contradict the fit (F {stat:.2f} > "
                                                   f"{crit:.2f} at p {POINTS_ALPHA}, and > n/4 = {n / 4.0:.2f}: "
                                                   f"beyond their own scatter)")
            continue
        entry["status"] = "used"
        links.append(_link_dict(a, b, box0, matrix0, float(n)))
    return ({"xml": xml_uri, "links": [], "affine_links": links} if links else None), report


#: A pair's fit holds about six float32 arrays the size of its larger crop (the crops, their smoothed
#: copies, the spline coefficients, the gradient); ``max_crop_voxels`` bounds the crop.
_FIT_ARRAYS = 6


def _fit_workers(params) -> int:
    """Pairs fitted at once: the cores, fewer where half the available memory would not hold that many
    pairs' working sets at their largest (the task's memory stays bounded by the crop bound, not the pairs)."""
    import psutil

    per_pair = _FIT_ARRAYS * 4 * int(params.max_crop_voxels)
    return max(1, min(available_cores(), int(0.5 * psutil.virtual_memory().available // per_pair)))


def _link_dict(a, b, box0, matrix0, weight: float) -> dict:
    return {"view_a": list(a), "view_b": list(b), "box_min_xyz": [float(x) for x in box0[0]],
            "box_max_xyz": [float(x) for x in box0[1]], "matrix": np.asarray(matrix0).tolist(), "weight": weight}


def _round(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 4)


def _fit_pair(src_a, src_b, ra, rb, box0: np.ndarray, params) -> tuple[OverlapAffineFit, np.ndarray]:
    """Fit at the finest level whose overlap crop fits ``params.max_crop_voxels``; the result in level-0 voxels."""
    flat = (box0[1] - box0[0]) < 2.0
    inner = box0.copy()
    inner[0, ~flat] += params.margin_voxels
    inner[1, ~flat] -= params.margin_voxels
    a_to_b0 = transforms.invert(rb) @ ra
    level = min(_choose_level(src_a, inner, params.max_crop_voxels), _choose_level(src_b, inner, params.max_crop_voxels))
    sa_l, sb_l = level_to_level0(src_a.level_factors(level)), level_to_level0(src_b.level_factors(level))
    a_to_b = transforms.invert(sb_l) @ a_to_b0 @ sa_l
    box = transforms.apply(transforms.invert(sa_l), inner)
    sigma = (float(params.sigma),) * 3
    pad = int(math.ceil(3.0 * max(sigma))) + 1
    fixed, fo = _read_box(src_a, level, box[0] - pad, box[1] + pad)
    corners_b = transforms.apply(a_to_b, transforms.box_corners(box[0], box[1]))
    reach = pad + params.reach_voxels
    moving, mo = _read_box(src_b, level, corners_b.min(axis=0) - reach, corners_b.max(axis=0) + reach)
    fit = fit_overlap_affine(fixed, fo, moving, mo, a_to_b, box, sigma_zyx=sigma, max_samples=params.max_samples)
    return fit, sb_l @ fit.matrix @ transforms.invert(sa_l)


def replaced_pairs(anchor_sets: Sequence[dict]) -> set[frozenset]:
    """Pairs whose point matches an overlap-affine link stands in for."""
    return {frozenset((tuple(k["view_a"]), tuple(k["view_b"]))) for a in anchor_sets for k in a.get("affine_links", ())}


def pair_key(r) -> frozenset:
    return frozenset((tuple(r.view_a), tuple(r.view_b)))


def unfitted_pairs(records: Sequence[PairRecord], fitted: dict | None) -> list[PairRecord]:
    """The records the image check still has to look at: a pair whose overlap affine is used
    was checked against its images by the fit itself."""
    skip = replaced_pairs([fitted]) if fitted else set()
    return [r for r in records if pair_key(r) not in skip]


def merged_records(records: Sequence[PairRecord], updated: Sequence[PairRecord]) -> list[PairRecord]:
    """``records`` in their order, each replaced by its pair's record in ``updated`` when there is one."""
    by_pair = {pair_key(r): r for r in updated}
    return [by_pair.get(pair_key(r), r) for r in records]


def with_fit_steps(records: Sequence[PairRecord], report: Sequence[dict]) -> list[PairRecord]:
    """``records`` with an ``overlap_affine`` step on every pair whose overlap affine is used. The fit compared
    the whole overlap's voxels, and its F test the pair's points against them: the translation check of
    :mod:`rhapso_core.pipeline.pair_check` is not run on those pairs."""
    used = {frozenset((tuple(e["view_a"]), tuple(e["view_b"]))): e for e in report if e.get("status") == "used"}
    out = []
    for r in records:
        e = used.get(pair_key(r))
        if e is None:
            out.append(r)
            continue
        detail = f"correlation {e['ncc_before']} -> {e['ncc_after']}"
        if "points" in e:
            detail += f", points F {e['points_f']} <= max({e['points_f_critical']}, n/4)"
            reason = f"the overlap's affine fit stands in for the pair's {e['points']} matches"
        else:
            reason = "the overlap's affine fit stands in for the pair's phase link"
        step = {"step": "overlap_affine", "status": "used", "added_points": 0, "detail": detail, "reason": reason}
        out.append(dataclasses.replace(r, escalations=tuple(r.escalations) + (step,)))
    return out


def without_pairs(anchors: dict, pairs: set[frozenset]) -> dict:
    """``anchors`` less its phase links (and their weights) between any of ``pairs``."""
    keep = [frozenset((tuple(k["view_a"]), tuple(k["view_b"]))) not in pairs for k in anchors.get("links", ())]
    if all(keep):
        return anchors
    out = {**anchors, "links": [k for k, x in zip(anchors["links"], keep) if x]}
    if anchors.get("weights") is not None:
        out["weights"] = [w for w, x in zip(anchors["weights"], keep) if x]
    return out


def affine_solver_links(anchors: dict, geometry, grid: int = 3) -> list[Link]:
    """The anchors' overlap-affine links as solver links (world coordinates under ``geometry``).

    Each link becomes ``grid`` virtual matches per axis over its box (one along a flat axis),
    every one weighted ``weight / count``: the pair pulls as hard as the matches it replaces.
    """
    out = []
    for k in anchors.get("affine_links", ()):
        a, b = tuple(k["view_a"]), tuple(k["view_b"])
        if a not in geometry or b not in geometry:
            continue
        lo, hi = np.asarray(k["box_min_xyz"]), np.asarray(k["box_max_xyz"])
        axes = [np.linspace(lo[i], hi[i], grid) if hi[i] - lo[i] >= 2.0 else np.array([0.5 * (lo[i] + hi[i])])
                for i in range(3)]
        g = np.stack([x.ravel() for x in np.meshgrid(*axes, indexing="ij")], axis=1)
        pb = transforms.apply(np.asarray(k["matrix"], dtype=np.float64), g)
        w = np.full(len(g), float(k["weight"]) / len(g))
        out.append(Link(a, b, transforms.apply(geometry[a][0], g), transforms.apply(geometry[b][0], pb), weight=w,
                        label=AFFINE_LINK_LABEL))
    return out
