"""Sample what overlapping views see at the same world points.

For each pair, world points on a regular grid over the intersection of the two views'
world boxes (current registrations) are mapped into both views and kept where both
contain them, away from the edge by one voxel of the sampled level (where trilinear
interpolation would clamp). Each view is sampled at the finest pyramid level with at
most ``max_voxels`` voxels, read once and kept for all its pairs.

The samples of a pair are then averaged over ``bins`` boxes of the overlap (points and
values): two views see a world point at different sub-voxel phases, and trilinear
interpolation flattens a sharp structure by an amount that depends on that phase, so
single samples differ systematically with brightness (the fit would read that as a
gain); interpolation keeps local means, so the means over a box of several voxels agree.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rhapso_core import transforms as tf
from rhapso_core.image_source import ImageSource
from rhapso_core.overlap import world_overlap
from rhapso_core.qc.fusion import overlap_grid
from rhapso_core.qc.sampling import choose_level, read_level, to_level_zyx

__all__ = ["SampledView", "PairSamples", "overlapping_pairs", "sample_pairs"]

_ACROSS = 4  # fewest boxes along an axis of an overlap (where boxes of the minimum width fit)


@dataclass(frozen=True)
class SampledView:
    """A view to sample: its pixels, registration (view voxel x y z -> world), size (x y z) and
    group (views are paired only within a group, e.g. one timepoint, channel and illumination)."""

    view_id: Hashable
    source: ImageSource
    view_to_world: np.ndarray
    size_xyz: tuple[int, int, int]
    group: Hashable
    channel: Hashable = 0  # views of one channel share a flat field


@dataclass(frozen=True)
class PairSamples:
    """Values two views see at the same world points; points are each view's voxels (N, 3) x y z."""

    a: Hashable
    b: Hashable
    points_a: np.ndarray
    points_b: np.ndarray
    values_a: np.ndarray
    values_b: np.ndarray

    @property
    def n(self) -> int:
        return int(self.values_a.shape[0])


def overlapping_pairs(views: Sequence[SampledView]) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of views of one group whose world boxes intersect."""
    boxes = [tf.view_bounding_box(v.view_to_world, v.size_xyz) for v in views]
    out = []
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            if views[i].group != views[j].group:
                continue
            lo = np.maximum(boxes[i][0], boxes[j][0])
            hi = np.minimum(boxes[i][1], boxes[j][1])
            # Single-plane views have boxes without depth: there touching planes overlap.
            flat = (boxes[i][1] - boxes[i][0] <= 0) | (boxes[j][1] - boxes[j][0] <= 0)
            if np.all((hi > lo) | (flat & (hi >= lo))):
                out.append((i, j))
    return out


class _LevelCache:
    def __init__(self, max_voxels: int):
        self.max_voxels = max_voxels
        self.data: dict[Hashable, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, view: SampledView) -> tuple[np.ndarray, np.ndarray]:
        if view.view_id not in self.data:
            level = choose_level(view.source, self.max_voxels)
            self.data[view.view_id] = (read_level(view.source, level), np.asarray(view.source.level_factors(level), np.float64))
        return self.data[view.view_id]


def _inside(p: np.ndarray, size_xyz, margin_xyz: np.ndarray) -> np.ndarray:
    top = np.asarray(size_xyz, np.float64) - 1.0 - margin_xyz
    return np.all((p >= margin_xyz) & (p <= top), axis=1)


def sample_pairs(
    views: Sequence[SampledView],
    samples_per_pair: int,
    max_voxels: int,
    min_samples: int,
    bins: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> list[PairSamples]:
    """Samples of every overlapping pair (pairs with fewer than ``min_samples`` points are left out)."""
    cache = _LevelCache(max_voxels)
    pairs = overlapping_pairs(views)
    out = []
    for k, (i, j) in enumerate(pairs):
        va, vb = views[i], views[j]
        la, fa = cache.get(va)
        lb, fb = cache.get(vb)
        world = overlap_grid(*world_overlap(va.view_to_world, va.size_xyz, vb.view_to_world, vb.size_xyz),
                             samples_per_pair)
        pa = tf.apply(tf.invert(va.view_to_world), world)
        pb = tf.apply(tf.invert(vb.view_to_world), world)
        # A thin view (few planes) keeps its planes: the margin never exceeds a third of an axis.
        ma = np.minimum(fa[::-1], (np.asarray(va.size_xyz) - 1) / 3.0)
        mb = np.minimum(fb[::-1], (np.asarray(vb.size_xyz) - 1) / 3.0)
        keep = _inside(pa, va.size_xyz, ma) & _inside(pb, vb.size_xyz, mb)
        if progress is not None:
            progress(k + 1, len(pairs))
        if int(keep.sum()) < min_samples:
            continue
        pa, pb = pa[keep], pb[keep]
        xa = ndimage.map_coordinates(la, to_level_zyx(pa, fa).T, order=1, mode="nearest").astype(np.float64)
        xb = ndimage.map_coordinates(lb, to_level_zyx(pb, fb).T, order=1, mode="nearest").astype(np.float64)
        # Bins at least two sampled voxels wide (of the finer of the two levels) along each axis.
        out.append(_binned(PairSamples(va.view_id, vb.view_id, pa, pb, xa, xb), bins, 2.0 * np.minimum(fa, fb)[::-1]))
    return out


def _binned(ps: PairSamples, bins: int, min_width_xyz=(0.0, 0.0, 0.0)) -> PairSamples:
    """Means of points and values over about ``bins`` boxes of the pair's sample extent.

    Boxes are cubes where the extent allows, but never fewer than ``_ACROSS`` along an
    axis that is wide enough for that many boxes of ``min_width_xyz`` (view voxels): an
    overlap is thin across the border, and that is the direction in which the two views'
    vignetting differs most (one view's edge against the other's far edge), which the
    flat-field fit reads (:mod:`.flatfield_overlap`); cubes would leave one box across it.
    """
    if bins <= 0 or ps.n <= bins:
        return ps
    lo, hi = ps.points_a.min(axis=0), ps.points_a.max(axis=0)
    ext = np.maximum(hi - lo, 1e-9)
    min_width = np.asarray(min_width_xyz, np.float64)
    # An axis no wider than one box (the planes of a single-plane or thin view) is not cut.
    wide = ext > np.maximum(min_width, 1e-6)
    if not wide.any():
        return ps
    width = ext.copy()
    step = (float(np.prod(ext[wide])) / bins) ** (1.0 / int(wide.sum()))
    width[wide] = np.minimum(step, np.maximum(ext[wide] / _ACROSS, min_width[wide]))
    thin = wide & (width < step)
    free = wide & ~thin
    if thin.any() and free.any():
        # The other axes' cubes grow so that the number of boxes stays about ``bins``.
        fixed = float(np.prod(ext[thin] / width[thin]))
        width[free] = (float(np.prod(ext[free])) * fixed / bins) ** (1.0 / int(free.sum()))
    counts = np.maximum(np.floor(ext / np.maximum(width, 1e-9)).astype(np.int64), 1)
    cell = np.minimum(((ps.points_a - lo) / ext * counts).astype(np.int64), counts - 1)
    key = (cell[:, 2] * counts[1] + cell[:, 1]) * counts[0] + cell[:, 0]
    uniq, inv, num = np.unique(key, return_inverse=True, return_counts=True)

    def mean(v):
        v = v.reshape(ps.n, -1)
        out = np.zeros((uniq.size, v.shape[1]))
        np.add.at(out, inv, v)
        return out / num[:, None]

    return PairSamples(ps.a, ps.b, mean(ps.points_a), mean(ps.points_b), mean(ps.values_a)[:, 0], mean(ps.values_b)[:, 0])
