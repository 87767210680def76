"""Global translation solve of phase-correlation links with the project's solver.

Each usable link becomes, as in BigStitcher (ImageCorrelationPointMatchCreator), 8 point
matches: the corners ``c`` of the compared world overlap box on a's side and ``c - shift`` on
b's, so that the solve finds corrections with ``M_a(c) = M_b(c - shift)``.

Before the solver's own link removal (``SolverParams.method``, relative / absolute thresholds
on the mean tile error, tuned for interest points), links are checked against each other
(:func:`consistent_links`). A phase link is either the right peak, good to a small fraction
of a voxel, or a wrong one (an alias, a peak of a few shared blobs), off by one voxel or
more; the solver's thresholds (7 world units absolute) let a link 27 voxels off stand when
the other links of a 3 x 3 mosaic agreed to 0.03.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rhapso_core import transforms
from rhapso_core.solver import Link, SolveResult, SolverParams, solve
from rhapso_core.solver.records import LinkResidual
from rhapso_core.stitching.blocks import information
from rhapso_core.stitching.records import PhaseLink

__all__ = ["PHASE_LABEL", "solver_links", "solve_phase_links", "anchor_links", "consistent_links", "link_weight"]

#: Label of phase-correlation links in the solver's report.
PHASE_LABEL = "phase-correlation"


def link_weight(k: PhaseLink) -> float:
    """Weight of a phase link in the solve: the information its overlap carries about the shift.

    For two noisy records of one signal, Pearson's r of the shared pixels is var_s / (var_s +
    var_n), so r / (1 - r) is their signal-to-noise ratio; the variance of a correlation
    peak's position falls with that ratio and with the number of pixels compared. So the
    weight is ``shared volume * r / (1 - r)``: a link whose overlap barely correlates (r 0.35
    on a few blobs), or whose shift leaves a small part of its overlap compared (a 134-voxel
    shift across a 256-voxel overlap, r 0.93 on 14 % of it), gives way where it disagrees
    with links that compare whole overlaps at r 0.95. The volume is in world units (the
    same for a link measured here and one read from an XML's stitching results; only
    ratios between links matter); r is clipped to [0.01, 0.999] (a perfect r would make one
    link absolute).
    """
    extent = np.abs(np.asarray(k.box_max_xyz, dtype=np.float64) - np.asarray(k.box_min_xyz, dtype=np.float64))
    shared = np.maximum(extent - np.abs(np.asarray(k.shift_xyz, dtype=np.float64)), 1e-3 * extent)
    return information(shared, k.r)


def solver_links(links: Sequence[PhaseLink], weighted: bool = True) -> list[Link]:
    """Solver links (8 box-corner matches each, x y z world) of the ``ok`` phase links.

    ``weighted``: each link weighted by :func:`link_weight` relative to their mean (else 1).
    """
    ok = [k for k in links if k.ok]
    # Weights relative to the mean: the solver's figures stay in the units of one link.
    scale = float(np.mean([link_weight(k) for k in ok])) if ok and weighted else 1.0
    out = []
    for k in ok:
        corners = transforms.box_corners(k.box_min_xyz, k.box_max_xyz)
        out.append(Link(k.view_a, k.view_b, corners, corners - np.asarray(k.shift_xyz), label=PHASE_LABEL,
                        weight=link_weight(k) / scale if weighted else 1.0))
    return out


def _voxel_world(k: PhaseLink) -> np.ndarray:
    """World extent (x, y, z) of one voxel of the crops the link was measured on; inf on an axis
    the crops do not resolve (a single plane), so that no disagreement is counted along it."""
    extent = np.asarray(k.box_max_xyz, dtype=np.float64) - np.asarray(k.box_min_xyz, dtype=np.float64)
    crop = np.asarray(k.crop_shape_xyz, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        vox = np.where(crop > 1, np.abs(extent) / np.maximum(crop, 1.0), np.inf)
    return np.where(np.isfinite(vox) & (vox > 0), vox, np.inf)


def _residuals(links: Sequence[PhaseLink], corrections: Mapping[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Each link's disagreement with the solve, in voxels of its own crops (largest axis).

    The solve places ``M_a(c)`` and ``M_b(c - shift)`` at the box centre ``c``; their
    difference is what the link asked for and did not get.
    """
    out = np.zeros(len(links))
    eye = np.eye(4)
    for i, k in enumerate(links):
        c = 0.5 * (np.asarray(k.box_min_xyz, dtype=np.float64) + np.asarray(k.box_max_xyz, dtype=np.float64))
        pa = transforms.apply(np.asarray(corrections.get(k.view_a, eye)), c[None])[0]
        pb = transforms.apply(np.asarray(corrections.get(k.view_b, eye)), (c - np.asarray(k.shift_xyz))[None])[0]
        out[i] = float(np.max(np.abs(pa - pb) / _voxel_world(k)))
    return out


def consistent_links(
    links: Sequence[PhaseLink], params: SolverParams | None = None,
    views: Mapping[tuple[int, int], tuple[np.ndarray, Sequence[float]]] | None = None,
) -> tuple[list[PhaseLink], list[tuple[PhaseLink, float]]]:
    """The ``ok`` links that agree with the others, and those dropped with their disagreement.

    Repeatedly solves the weighted translations (one round, no removal) and drops the link
    that disagrees most with the solution while it disagrees by more than one voxel of its
    own crops (a different correlation peak, not an imprecise one) and by more than
    ``params.relative_threshold`` times the median disagreement (so that translation links
    between tiles that are really distorted, which all disagree by a similar amount, stay).
    A link on no cycle cannot disagree and is never dropped.
    """
    params = SolverParams(model="translation") if params is None else params
    one = params.model_copy(update={"model": "translation", "lambda_value": 0.0, "method": "one_round",
                                    "min_matches": min(params.min_matches, 8)})
    kept = [k for k in links if k.ok]
    dropped: list[tuple[PhaseLink, float]] = []
    while len(kept) > 2:
        result = solve(solver_links(kept), one, views=views)
        res = _residuals(kept, result.corrections)
        worst = int(np.argmax(res))
        if res[worst] <= max(1.0, params.relative_threshold * float(np.median(res))):
            break
        dropped.append((kept.pop(worst), float(res[worst])))
    return kept, dropped


def solve_phase_links(
    links: Sequence[PhaseLink], params: SolverParams | None = None,
    views: Mapping[tuple[int, int], tuple[np.ndarray, Sequence[float]]] | None = None,
) -> SolveResult:
    """Translation corrections per view (world -> world 4x4) from the usable links.

    ``params``' model is forced to translation (a shift constrains nothing else) and
    ``min_matches`` to at most 8 (one link is 8 corner matches). Links that disagree with
    the others (:func:`consistent_links`) are left out and listed in the report as removed,
    before the solver's own removal runs on the rest. ``views``: as
    :func:`rhapso_core.solver.solve` (views without links keep an identity correction).
    """
    params = SolverParams(model="translation") if params is None else params
    params = params.model_copy(update={"model": "translation", "lambda_value": 0.0,
                                       "min_matches": min(params.min_matches, 8)})
    kept, dropped = consistent_links(links, params, views)
    result = solve(solver_links(kept), params, views=views)
    report = result.report
    for k, _ in dropped:
        report.removed_links.append((k.view_a, k.view_b, PHASE_LABEL))
        report.links.append(LinkResidual(k.view_a, k.view_b, PHASE_LABEL, 8, float("nan"), float("nan"),
                                         float("nan"), float("nan"), "removed"))
    return result


def anchor_links(
    links: Sequence[PhaseLink], then: Mapping[tuple[int, int], np.ndarray], now: Mapping[tuple[int, int], np.ndarray],
    weights: Sequence[float] | None = None,
) -> list[Link]:
    """The ``ok`` phase links re-expressed under later registrations, for a later round's solve.

    ``then``: each view's voxel -> world affine when the links were measured; ``now``: the
    current ones. The correction a view received since, ``now @ inv(then)``, maps the link's
    points: a later point round solved with these keeps the phase-correlation constraint on
    pairs whose interest points are too few to match (or match badly). ``weights``: per link, the
    weight of each of its 8 corner matches (default 1). A link measured in blocks
    (``PhaseLink.blocks``) gives 8 corner matches per block at the block's shift (one solver
    link per phase link), their weights sharing the link's. The corners are pulled toward
    each box's centre (:data:`ANCHOR_LEVER`): the shift is measured, the relative rotation
    inside a box is not.
    """
    out = []
    for i, k in enumerate(links):
        if not k.ok or not all(v in then and v in now for v in (k.view_a, k.view_b)):
            continue
        ca = np.asarray(now[k.view_a]) @ transforms.invert(np.asarray(then[k.view_a]))
        cb = np.asarray(now[k.view_b]) @ transforms.invert(np.asarray(then[k.view_b]))
        w = 1.0 if weights is None else float(weights[i])
        pa, pb, pw, units = [], [], [], []
        for u, (box_min, box_max, shift, share) in enumerate(_anchor_parts(k)):
            c = _lever_corners(box_min, box_max)
            pa.append(transforms.apply(ca, c))
            pb.append(transforms.apply(cb, c - np.asarray(shift)))
            pw.append(np.full(len(c), w * share))
            units.append(np.full(len(c), u))
        out.append(Link(k.view_a, k.view_b, np.concatenate(pa), np.concatenate(pb), weight=np.concatenate(pw),
                        label=PHASE_LABEL, units=np.concatenate(units)))
    return out


#: An anchor's 8 matches sit at its box's corners pulled toward the box centre to this fraction
#: of the box. A shift measured over a box is the mean displacement there: it says nothing of
#: the two views' relative rotation or scale inside the box, and matches at the full corners
#: would claim there is none (measured on 4 x 4 single-plane mosaics with 1 % affine truth: the
#: corner links of diagonal neighbours took the result from 0.12 to 0.26 pixel RMS). Near the
#: centre the rotational pull falls with the lever's square (1 % here) but stays positive, so a
#: view that nothing else constrains still cannot turn freely.
ANCHOR_LEVER = 0.1


def _lever_corners(box_min, box_max) -> np.ndarray:
    lo, hi = np.asarray(box_min, dtype=np.float64), np.asarray(box_max, dtype=np.float64)
    c, half = 0.5 * (lo + hi), 0.5 * ANCHOR_LEVER * (hi - lo)
    return transforms.box_corners(c - half, c + half)


def _anchor_parts(k: PhaseLink) -> list[tuple[tuple, tuple, tuple, float]]:
    """(box min, box max, shift, share of the link's weight) of each part a link anchors.

    A link with blocks anchors each block at its own shift, weighted by its information, so
    that a rigid or affine round sees the relative rotation and scale along the overlap; the
    shares sum to 1 (the link pulls as hard as a one-translation link).
    """
    if len(k.blocks) < 2:
        return [(k.box_min_xyz, k.box_max_xyz, k.shift_xyz, 1.0)]
    info = np.array([b.information for b in k.blocks])
    info = info / info.sum()
    return [(b.box_min_xyz, b.box_max_xyz, b.shift_xyz, float(s)) for b, s in zip(k.blocks, info)]
