"""Each matched pair's interest points checked against its images.

A pair's point matches imply a relative translation of its two views: the mean of the
matches' displacements ``p_a - p_b`` (world, under the current registrations). Phase
correlation of the pair's overlap measures the same translation from every voxel
(:mod:`rhapso_core.stitching`). Where the points are well localised the two agree within
their errors; where they are not (DoG peaks along fibres slide along the fibre, and do so
differently in two views near their borders) the matches are consistent with each other,
pass RANSAC, and still carry a bias that no residual shows: on the accuracy matrix's
``fibres`` cell the two differed by 0.3-1.3 world units, against 0.03-0.09 on nuclei.

The check runs on the matched pairs only, with one phase correlation at the automatic
(coarse) level and no finer refinement (:func:`rhapso_core.stitching.precision.phase_shift_with_precision`),
verifying only peaks within ``max_epsilon`` of the matches' translation. Both estimates
come with a standard error measured on the data: the matches' covariance over their
count (their localisation error / sqrt(n), both views' errors included) and the spread
of the phase shift over blocks of the overlap; each at least the error that the grid's
loops show for it (:func:`loop_closure_sd`: the residual of the pairwise translations
placed by least squares), which catches errors every match or every block of an overlap
shares (points sliding along fibres), and the phase's at least its sub-voxel fit's pull
toward the integer shift, measured by resampling the crop half a voxel
(:mod:`rhapso_core.stitching.peak_fit`): the pull no loop shows (it shrinks every link alike;
along the coarsely sampled z of the ``real-ch0`` cell 0.1-0.55 world units where the blocks
agreed to 0.03). Then:

* **Agreement test.** ``t_points - t_phase`` against its covariance (the sum of both),
  Hotelling's T^2 (the matches' covariance is estimated from the n matches) with one degree
  of freedom per measured axis, at ``ALPHA`` (the two-sided tail of 3 standard deviations,
  the rule the resolver uses for RANSAC's error). A pair beyond it disagrees: its matches
  are dropped from the store (the solve and the after-solve check no longer see them) and
  its phase link holds it instead (measured again with the run's stitching settings where
  those refine further); the record says why (an ``image_check`` step, status
  ``image_link``). A pair whose phase link is not usable (low r, no peak) keeps its points.
* **Weighting.** An agreeing pair keeps its matches and its phase link joins them in the
  solve as the translation at the overlap's centre (its box collapsed to the centre: phase
  correlation says nothing about how the views turn), combined with them per axis by the two
  estimates' precisions (:mod:`rhapso_core.pipeline.axis_fusion`: the link weighs what its
  most precise axis earns, and its target on the other axes lies nearer the points). The test
  alone cannot separate biased matches where they are few and poorly localised: on the
  ``fibres`` cell the biased pairs lie 2-3 standard errors from the phase shift, no further
  than the nuclei pairs of the ``base`` cell (whose points are biased by 0.02-0.08 world
  units, their phase shifts by under 0.01). Weighting needs no such separation: where the
  phase measures the translation 3-10 times more precisely (fibres) it dominates; the
  points keep the rotation and the affine part, which phase correlation does not measure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
# The normal and F quantiles from scipy.special, as scipy.stats computes them (norm.sf(x) is
# ndtr(-x), f.isf(q, a, b) is fdtri(a, b, 1 - q): the same bits), without importing scipy.stats,
# whose distributions' docstrings alone take 0.3-0.45 s of every align and stitch command's start.
from scipy.special import fdtri, ndtr

from rhapso_core import transforms
from rhapso_core.pipeline.axis_fusion import fuse_per_axis
from rhapso_core.pipeline.border_matches import solved_matches
from rhapso_core.pipeline.dataset import load_dataset, open_view, view_geometry
from rhapso_core.pipeline.in_threads import in_threads
from rhapso_core.pipeline.match import PairRecord
from rhapso_core.pipeline.residual_fields import residual_linear_parts, translation_at
from rhapso_core.pointstore import PointStore
from rhapso_core.solver.params import SolverParams
from rhapso_core.spimdata import ViewId

__all__ = ["ALPHA", "IMAGE_LINK", "PointsVsPhase", "compare_points_with_phase", "loop_closure_sd",
           "check_pairs_against_images"]

ALPHA = 2.0 * ndtr(-3.0)  # 0.0027: a consistent pair is flagged this rarely
IMAGE_LINK = "image_link"  # status of a pair whose points were replaced by its phase link
DROPPED = "dropped by the image check"  # start of the stored correspondences' description once dropped


@dataclass(frozen=True)
class PointsVsPhase:
    """The translation a pair's matches imply against its phase-correlation shift (world x, y, z).

    ``statistic``: squared Mahalanobis distance of the difference under the combined
    covariance; ``threshold``: the chi-square quantile it is compared with (``dof`` axes).
    """

    n_matches: int
    points_xyz: tuple[float, float, float]
    points_se_xyz: tuple[float, float, float]
    phase_xyz: tuple[float, float, float]
    phase_se_xyz: tuple[float, float, float]
    statistic: float
    threshold: float
    dof: int

    @property
    def corner_weight(self) -> float:
        """Solver weight of each of the phase link's 8 corner matches, for its precision next to the points'.

        Every point match weighs 1 in the solve, so the pair's matches carry ``n`` for a
        translation known to ``se_points``; the phase link's total weight is ``n se_points^2 /
        se_phase^2`` (inverse variances, mean over the measured axes). Without a measured phase
        precision the link weighs what the matches do (``n``).
        """
        vp = np.square(np.asarray(self.points_se_xyz, dtype=np.float64))
        vf = np.square(np.asarray(self.phase_se_xyz, dtype=np.float64))
        axes = (vp > 0) & (vf > 0)
        if not np.any(axes):
            return self.n_matches / 8.0
        # One weight for all axes: the ratio its least precise axis earns (the phase along a coarsely
        # sampled z must not pull as hard as along x and y).
        return self.n_matches * float(np.min(vp[axes] / vf[axes])) / 8.0

    @property
    def disagree(self) -> bool:
        return bool(self.statistic > self.threshold)

    def to_dict(self) -> dict:
        r = lambda v: [round(float(x), 4) for x in v]  # noqa: E731
        return {"n_matches": self.n_matches, "points_xyz": r(self.points_xyz), "points_se_xyz": r(self.points_se_xyz),
                "phase_xyz": r(self.phase_xyz), "phase_se_xyz": r(self.phase_se_xyz),
                "statistic": round(float(self.statistic), 3), "threshold": round(float(self.threshold), 3),
                "dof": self.dof, "disagree": self.disagree}


def loop_closure_sd(links: Sequence[tuple]) -> np.ndarray:
    """Per-link error (sd, world x y z) of pairwise translations, from how well they close the graph's loops.

    ``links``: ``(view_a, view_b, t)`` with ``t`` the translation b must move by relative to a.
    The least-squares placement of the views leaves residuals on links that close loops; their
    sum of squares over the loops' count (links - views + components) estimates the variance of
    one link. Zeros where the links close no loop (a chain or a tree says nothing).
    """
    views = sorted({v for a, b, _ in links for v in (a, b)})
    if len(links) < 2 or not views:
        return np.zeros(3)
    index = {v: i for i, v in enumerate(views)}
    g = np.zeros((len(links), len(views)))
    t = np.zeros((len(links), 3))
    for k, (a, b, shift) in enumerate(links):
        g[k, index[a]], g[k, index[b]] = -1.0, 1.0
        t[k] = shift
    x, _, rank, _ = np.linalg.lstsq(g, t, rcond=None)
    loops = len(links) - rank
    if loops <= 0:
        return np.zeros(3)
    res = t - g @ x
    return np.sqrt(np.sum(res**2, axis=0) / loops)


def compare_points_with_phase(displacements: np.ndarray, phase_xyz, phase_se_xyz, points_floor_xyz=None,
                              alpha: float = ALPHA) -> PointsVsPhase:
    """Test whether matches' displacements ``p_a - p_b`` (n, 3) agree with a phase shift of known precision.

    ``points_floor_xyz``: a lower bound of the matches' mean's standard error per axis (an error
    the matches share, measured elsewhere: :func:`loop_closure_sd`); None: their scatter alone.

    Axes the phase did not measure (standard error 0 and no spread of the matches: a
    single plane) are left out. Needs at least 2 matches; a phase standard error that
    is not finite counts as unknown, and the test then uses the matches' error alone.
    """
    d = np.asarray(displacements, dtype=np.float64).reshape(-1, 3)
    n = len(d)
    if n < 2:
        raise ValueError(f"compare_points_with_phase: {n} matches; the test needs at least 2")
    t = d.mean(axis=0)
    cov = np.cov(d, rowvar=False, ddof=1) / n
    if points_floor_xyz is not None:
        floor = np.square(np.nan_to_num(np.asarray(points_floor_xyz, dtype=np.float64)))
        cov[np.diag_indices(3)] = np.maximum(np.diag(cov), floor)
    se_p = np.asarray(phase_se_xyz, dtype=np.float64)
    se_p = np.where(np.isfinite(se_p), se_p, 0.0)
    c = cov + np.diag(se_p**2)
    diff = t - np.asarray(phase_xyz, dtype=np.float64)
    axes = [i for i in range(3) if c[i, i] > 0]
    if not axes:
        stat = 0.0 if np.allclose(diff, 0.0) else math.inf
        k = 0
    else:
        sub = c[np.ix_(axes, axes)]
        stat = float(diff[axes] @ np.linalg.pinv(sub) @ diff[axes])
        k = len(axes)
    # Hotelling's T^2: the matches' covariance is estimated from the n matches themselves, so the
    # quantile is F's (exact for the points' part; the phase's error enters as known).
    k1 = max(k, 1)
    if n > k1:
        thr = float(k1 * (n - 1) / (n - k1) * fdtri(k1, n - k1, 1.0 - alpha))
    else:
        thr = math.inf
    return PointsVsPhase(n, tuple(t), tuple(np.sqrt(np.diag(cov))), tuple(float(v) for v in phase_xyz),
                         tuple(float(v) for v in se_p), stat, thr, k)


def _at_centre(link: dict) -> dict:
    """The link's box collapsed to its centre: in the solve its 8 matches then carry the translation at
    the centre only. The box's corners would also say that the views do not turn against each other
    across the box, which phase correlation does not measure and which the points beside it do
    (rigid and affine truth: 0.06 -> 0.37 voxel RMS on the accuracy matrix's rigid cell with corners)."""
    centre = [(lo + hi) / 2.0 for lo, hi in zip(link["box_min_xyz"], link["box_max_xyz"])]
    return {**link, "box_min_xyz": centre, "box_max_xyz": list(centre)}


def _loop_floors(measured) -> tuple[np.ndarray, np.ndarray]:
    """Per-link error (sd, world x y z) of the matches' mean translations and of the phase shifts, from the
    grid's loops (:func:`loop_closure_sd`).

    Each pair's two translations are measured in different places (the matches' centroid, the overlap's
    centre), and the views may still turn and scale (:mod:`rhapso_core.pipeline.residual_fields`): the
    loops are closed once with the translations moved to one common place by the residual fields'
    linear parts that the matches' spread shows, and once as measured. The linear parts come from the
    spread within each pair, the loops from between pairs, so the loops test the correction on data it
    was not fitted to: it is kept only where the loops close better with it. Poorly localised points
    (along fibres: 3 x 2 tiles, loops 0.1-0.3 world units as measured and 0.3-0.8 moved) make the
    linear parts noise; a mosaic left with 1 % of affine after a rigid round (3 x 3 single planes:
    0.19-0.31 pixel as measured, 0.01-0.08 moved, the matches' means right to 0.03) needs them.
    """
    ok = [(tuple(r.view_a), tuple(r.view_b), d, ph, x) for r, d, ph, x in measured if ph.link.ok]
    as_measured = (loop_closure_sd([(a, b, d.mean(axis=0)) for a, b, d, _, _ in ok]),
                   loop_closure_sd([(a, b, np.asarray(ph.link.shift_xyz)) for a, b, _, ph, _ in ok]))
    if not ok:
        return as_measured
    origin = np.mean([x.mean(axis=0) for _, _, _, _, x in ok], axis=0)
    linear = residual_linear_parts([(a, b, x, d) for a, b, d, _, x in ok], origin)
    moved = (loop_closure_sd([(a, b, translation_at(d.mean(axis=0), x.mean(axis=0), a, b, linear, origin))
                              for a, b, d, _, x in ok]),
             loop_closure_sd([(a, b, translation_at(ph.link.shift_xyz, _box_centre(ph.link), a, b, linear, origin))
                              for a, b, _, ph, _ in ok]))
    ss = lambda pair: float(sum(np.sum(np.square(v)) for v in pair))  # noqa: E731
    return moved if ss(moved) < ss(as_measured) else as_measured


def _box_centre(link) -> np.ndarray:
    return (np.asarray(link.box_min_xyz, dtype=np.float64) + np.asarray(link.box_max_xyz, dtype=np.float64)) / 2.0


def _key(r: PairRecord) -> frozenset:
    return frozenset((tuple(r.view_a), tuple(r.view_b)))


def check_pairs_against_images(
    xml_uri: str, store_uri: str, records: Sequence[PairRecord], label: str, stitching, reach: float | None,
    storage_options=None, min_matches: int = SolverParams.model_fields["min_matches"].default,
) -> tuple[list[PairRecord], dict | None, list[dict]]:
    """Check every matched pair's points against its overlap's phase shift (module docstring).

    ``stitching``: the run's :class:`~rhapso_core.stitching.StitchingParams` (its filters;
    the check correlates at its automatic level without refinement). ``reach``: only phase
    peaks within this distance of the matches' mean displacement are verified (world units;
    the matching's ``max_epsilon``: a true match lies within it, so a translation further
    off is another hypothesis, not a bias of these matches; None: every peak). The matches compared are
    those the solve uses (:func:`~rhapso_core.pipeline.border_matches.solved_matches`, with the solver's
    ``min_matches``). Returns every record
    (the checked ones with an ``image_check`` step), the round's extra anchors ``{"xml": xml_uri,
    "links": [PhaseLink.to_dict()], "weights": [per-match weight]}`` (links that replace dropped
    points, and the centre links that join agreeing points; None if none), and the per-pair
    checks (JSON-able) for the round's report.
    """
    from rhapso_core.pipeline.phase import stitch_pairs
    from rhapso_core.stitching.precision import phase_shift_with_precision

    ok = [r for r in records if r.ok]
    if not ok:
        return list(records), None, []
    sd = load_dataset(xml_uri, storage_options)
    views: list[ViewId] = sorted({tuple(v) for r in ok for v in (r.view_a, r.view_b)})
    geometry = view_geometry(sd, views)
    store = PointStore(store_uri, storage_options=storage_options, mode="a")
    # As the resolver's stage-error probe: BigStitcher's 5 verified peaks at the automatic level, no refinement.
    coarse = stitching.model_copy(update={"refine_level": None, "level": "auto",
                                          "peaks_to_check": min(stitching.peaks_to_check, 5)})
    sources: dict = {}
    points: dict = {}

    def source(v):
        if v not in sources:
            sources[v] = open_view(sd, v, storage_options)
        return sources[v]

    def stored(v):
        if v not in points:
            points[v] = store.read_points(v, label)
        return points[v]

    def world(v, idx):
        return transforms.apply(geometry[v][0], stored(v).loc_xyz[idx])

    checks: dict[frozenset, tuple[PointsVsPhase | None, object]] = {}
    report, again, jobs = [], [], []
    for r in ok:
        a, b = tuple(r.view_a), tuple(r.view_b)
        try:
            c = store.read_correspondences(a, b, label)
        except KeyError:
            continue
        if len(c.idx_a) < 2:
            if c.params.startswith(DROPPED):  # an interrupted earlier attempt dropped them: hold the pair again
                again.append(r)
            continue
        pa, pb = world(a, c.idx_a), world(b, c.idx_b)
        use = solved_matches(stored(a), stored(b), c.idx_a, c.idx_b, geometry[a][1], geometry[b][1], min_matches,
                             pa, pb)
        pa, pb = pa[use], pb[use]
        jobs.append((r, a, b, pa - pb, (pa + pb) / 2.0))

    def phase(job):
        _, a, b, disp, _ = job
        return phase_shift_with_precision(a, source(a), geometry[a][0], geometry[a][1],
                                          b, source(b), geometry[b][0], geometry[b][1], coarse,
                                          near_xyz=disp.mean(axis=0), reach=reach)

    for _, a, b, _, _ in jobs:  # opened here, not by the threads below
        source(a), source(b)
    shifts = in_threads(phase, jobs)
    measured = [(r, disp, ph, mid) for (r, _, _, disp, mid), ph in zip(jobs, shifts)]
    # Errors that every block of an overlap shares (the sub-voxel fit along a coarsely sampled axis, the
    # points' slide along fibres) show where the pairs close loops of the grid, once each translation is
    # moved from where it was measured to one common place (the views may still turn and scale).
    loop_points, loop_phase = _loop_floors(measured)
    for r, disp, ph, _ in measured:
        a, b = tuple(r.view_a), tuple(r.view_b)
        # The phase's error: its blocks' spread, its loops', and its sub-voxel fit's pull, which every block shares.
        se_phase = np.fmax(np.fmax(ph.sd_xyz, loop_phase), ph.lock_xyz)
        cmp = (compare_points_with_phase(disp, ph.link.shift_xyz, se_phase, loop_points)
               if ph.link.ok else None)
        checks[_key(r)] = (cmp, ph)
        report.append({"view_a": list(a), "view_b": list(b), "phase_status": ph.link.status,
                       "phase_r": None if not np.isfinite(ph.link.r) else round(ph.link.r, 4),
                       "phase_level": ph.link.level, "phase_blocks": ph.n_blocks,
                       "phase_block_se_xyz": [round(float(x), 4) for x in ph.sd_xyz],
                       "phase_bias_xyz": [round(float(x), 4) for x in ph.bias_xyz],
                       "phase_lock_xyz": [round(float(x), 4) for x in ph.lock_xyz],
                       "loop_sd_points_xyz": [round(float(x), 4) for x in loop_points],
                       "loop_sd_phase_xyz": [round(float(x), 4) for x in loop_phase],
                       **(cmp.to_dict() if cmp is not None else {})})
    drop = [r for r in ok if _key(r) in checks and checks[_key(r)][0] is not None and checks[_key(r)][0].disagree]
    # The replacing links: measured again with the run's own settings where they refine further.
    if drop and stitching.refine_level is not None:
        fine = {frozenset((k.view_a, k.view_b)): k
                for k in stitch_pairs(xml_uri, [(tuple(r.view_a), tuple(r.view_b)) for r in drop], stitching,
                                      storage_options)}
    else:
        fine = {_key(r): checks[_key(r)][1].link for r in drop}
    out, links, weights = [], [], []
    for r in records:
        if _key(r) not in checks:
            out.append(r)
            continue
        cmp, ph = checks[_key(r)]
        if cmp is None:
            step = {"step": "image_check", "status": "skipped", "added_points": 0, "detail": "",
                    "reason": f"phase correlation {ph.link.status}" + (f" ({ph.link.reason})" if ph.link.reason else "")
                    + ": points kept"}
            out.append(dataclasses.replace(r, escalations=tuple(r.escalations) + (step,)))
            continue
        detail = (f"points {[round(v, 2) for v in cmp.points_xyz]} +- {[round(v, 2) for v in cmp.points_se_xyz]}, "
                  f"phase {[round(v, 2) for v in cmp.phase_xyz]} +- {[round(v, 2) for v in cmp.phase_se_xyz]} "
                  f"world units; distance^2 {cmp.statistic:.1f} vs {cmp.threshold:.1f} (Hotelling, {cmp.dof} axes, "
                  f"p {ALPHA:.4f})")
        link = fine.get(_key(r)) if cmp.disagree else None
        if not cmp.disagree:
            step = {"step": "image_check", "status": "ok", "added_points": 0, "detail": detail,
                    "reason": "points agree with the image shift"}
            target, w = fuse_per_axis(cmp.n_matches, cmp.points_xyz, cmp.points_se_xyz, cmp.phase_xyz,
                                      cmp.phase_se_xyz)
            links.append({**_at_centre(ph.link.to_dict()), "shift_xyz": list(target)})
            weights.append(w)
            step["reason"] += (f"; the phase link joins them (weight {8 * w:.1f} vs {cmp.n_matches}, "
                               f"target {[round(v, 2) for v in target]})")
            out.append(dataclasses.replace(r, escalations=tuple(r.escalations) + (step,)))
        elif link is None or not link.ok:
            why = "no link" if link is None else f"{link.status}" + (f" ({link.reason})" if link.reason else "")
            step = {"step": "image_check", "status": "disagree", "added_points": 0, "detail": detail,
                    "reason": f"points disagree with the image shift, but the refined phase link is unusable ({why}): "
                              "points kept"}
            out.append(dataclasses.replace(r, escalations=tuple(r.escalations) + (step,)))
        else:
            store.write_correspondences(r.view_a, r.view_b, label, np.zeros(0, np.int64), np.zeros(0, np.int64),
                                        params=f"{DROPPED}: {detail}")
            links.append(link.to_dict())
            weights.append(cmp.corner_weight)
            step = {"step": "image_check", "status": IMAGE_LINK, "added_points": 0, "detail": detail,
                    "reason": f"points disagree with the image shift: {r.n_inliers} matches dropped, held by the "
                              f"phase link (shift {[round(v, 2) for v in link.shift_xyz]}, r {link.r:.3f})"}
            out.append(dataclasses.replace(
                r, status=IMAGE_LINK, escalations=tuple(r.escalations) + (step,),
                reason=(r.reason + "; " if r.reason else "") + step["reason"]))
    if again:  # their points are gone from the store: the phase link alone, weighted as the matches were
        redo = {frozenset((k.view_a, k.view_b)): k
                for k in stitch_pairs(xml_uri, [(tuple(r.view_a), tuple(r.view_b)) for r in again], stitching,
                                      storage_options)}
        for i, r in enumerate(out):
            k = redo.get(_key(r))
            if k is None or not k.ok:
                continue
            links.append(k.to_dict())
            weights.append(max(r.n_inliers, 1) / 8.0)
            step = {"step": "image_check", "status": IMAGE_LINK, "added_points": 0, "detail": "",
                    "reason": "points dropped by an earlier attempt of this check; held by the phase link"}
            out[i] = dataclasses.replace(r, status=IMAGE_LINK, escalations=tuple(r.escalations) + (step,),
                                         reason=(r.reason + "; " if r.reason else "") + step["reason"])
    return out, ({"xml": xml_uri, "links": links, "weights": weights} if links else None), report
