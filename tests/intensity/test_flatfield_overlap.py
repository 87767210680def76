"""The flat field refined by overlaps, and the overlap sampling it needs (bins across thin overlaps)."""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.intensity.flatfield import ContentEstimate
from rhapso_core.intensity.flatfield_overlap import refine_flatfield
from rhapso_core.intensity.model import FlatField, normalised_position
from rhapso_core.intensity.sampling import PairSamples, SampledView, _binned

SIZE = (100, 100, 10)  # x y z voxels
STEP = 88.0  # tile pitch (12 % overlap)
DARK = 100.0
TRUE = (-0.15, 0.01, -0.12)  # u^2, u w, w^2


def _tiles(nx=3, ny=2):
    views = []
    for j in range(ny):
        for i in range(nx):
            t = np.eye(4)
            t[:2, 3] = (i * STEP, j * STEP)
            views.append(SampledView((0, j * nx + i), None, t, SIZE, (0, 0, 0), 0))
    return views


def _pairs(views, gains, noise, rng):
    """Exact overlap samples (plus relative noise) of a specimen with structure at every scale."""
    ff = FlatField(2, TRUE, DARK)

    def specimen(world):
        return 300 + 150 * np.sin(world[:, 0] / 7.0) * np.cos(world[:, 1] / 11.0) + 0.5 * world[:, 0]

    out = []
    for a in range(len(views)):
        for b in range(a + 1, len(views)):
            ta, tb = views[a].view_to_world[:3, 3], views[b].view_to_world[:3, 3]
            lo = np.maximum(ta, tb)
            hi = np.minimum(ta, tb) + np.asarray(SIZE) - 1
            if np.any(hi <= lo):
                continue
            world = rng.uniform(lo, hi, (400, 3))
            pa, pb = world - ta, world - tb
            s = specimen(world)

            def seen(p, g):
                f = ff.evaluate(normalised_position(p[:, 0], SIZE[0]), normalised_position(p[:, 1], SIZE[1]))
                return DARK + g * f * s * (1 + noise * rng.standard_normal(len(s)))

            out.append(PairSamples(views[a].view_id, views[b].view_id, pa, pb, seen(pa, gains[a]), seen(pb, gains[b])))
    return out


@pytest.mark.parametrize("grid", [(3, 2), (3, 1)])
def test_overlaps_correct_a_biased_content_estimate(grid):
    """A content estimate off by 0.03 per term (what six tiles of real structure give) is pulled to the
    truth within 0.004 by the overlaps; a term the overlaps barely see (w^2 in one row of tiles: it
    cancels in x-overlaps but for the non-linearity of log F) moves at most to the truth, never past it."""
    rng = np.random.default_rng(3)
    views = _tiles(*grid)
    gains = rng.uniform(0.85, 1.15, len(views))
    samples = _pairs(views, gains, 0.01, rng)
    off = np.array(TRUE) + np.array([0.03, -0.03, 0.03])
    content = ContentEstimate(FlatField(2, tuple(off), DARK), np.diag([0.02 ** 2] * 3), 6)
    got = np.array(refine_flatfield(views, samples, content).coefficients)
    if grid[1] > 1:
        np.testing.assert_allclose(got, TRUE, atol=0.004)
    else:
        np.testing.assert_allclose(got[:2], TRUE[:2], atol=0.004)
        assert min(off[2], TRUE[2]) - 0.004 <= got[2] <= max(off[2], TRUE[2]) + 0.004


def test_without_overlaps_the_content_estimate_stands():
    views = _tiles(1, 1)
    content = ContentEstimate(FlatField(2, (-0.1, 0.0, -0.1), DARK), None, 1)
    assert refine_flatfield(views, [], content) == content.flatfield


def test_bins_resolve_a_thin_overlap():
    """An overlap 10 voxels thin along x keeps at least 4 bins across it (cubes would leave 1)."""
    rng = np.random.default_rng(0)
    p = np.column_stack([rng.uniform(90, 99, 5000), rng.uniform(0, 99, 5000), rng.uniform(0, 47, 5000)])
    ps = PairSamples((0, 0), (0, 1), p, p, np.ones(5000), np.ones(5000))
    binned = _binned(ps, 200, (2.0, 2.0, 2.0))
    assert len(np.unique(np.round(binned.points_a[:, 0]))) >= 4
    assert binned.n <= 400  # still about the requested number


def test_dark_level_from_the_overlaps():
    """A percentile guess of the dark level 40 counts too high (tiles without empty space) is replaced
    by the level under which the overlaps agree: within 3 counts of the truth (signal 150-600 counts
    above it, 1 % noise)."""
    from rhapso_core.intensity.flatfield_overlap import fit_dark_level

    rng = np.random.default_rng(5)
    views = _tiles(3, 2)
    gains = rng.uniform(0.85, 1.15, len(views))
    samples = _pairs(views, gains, 0.01, rng)
    content = ContentEstimate(FlatField(2, TRUE, DARK + 40.0), np.diag([0.02 ** 2] * 3), 6)
    assert fit_dark_level(views, samples, content) == pytest.approx(DARK, abs=3.0)


def test_grid_model_does_not_drift_along_world_trends():
    """Per-cell maps (4 x 4 per view) on a 3 x 2 mosaic with the true flat field and 2 % noise: every
    cell's map times its view's gain is the same within 2.5 % (measured 1.5 %; 8.4 % before each view's
    mean was held at its one-map fit: a trend over world position, which overlaps cannot see)."""
    from rhapso_core.intensity import IntensityParams, solve_intensities

    rng = np.random.default_rng(7)
    views = _tiles(3, 2)
    gains = rng.uniform(0.85, 1.15, len(views))
    samples = _pairs(views, gains, 0.02, rng)
    sol = solve_intensities(views, samples, IntensityParams(model="grid", dark_level=DARK),
                            {0: FlatField(2, TRUE, DARK)})
    eff = np.concatenate([sol.maps[v.view_id].a.ravel() * g for v, g in zip(views, gains)])
    assert np.ptp(eff) / eff.mean() < 0.025, np.ptp(eff) / eff.mean()


def test_bins_of_single_plane_views_average_in_plane():
    """Single-plane views (all z equal): boxes cut x and y only, still about the requested number."""
    rng = np.random.default_rng(1)
    p = np.column_stack([rng.uniform(90, 99, 5000), rng.uniform(0, 99, 5000), np.zeros(5000)])
    binned = _binned(PairSamples((0, 0), (0, 1), p, p, np.ones(5000), np.ones(5000)), 200, (2.0, 2.0, 2.0))
    assert 100 <= binned.n <= 400
    assert len(np.unique(np.round(binned.points_a[:, 0]))) >= 4


def test_single_plane_views_overlap_and_are_sampled():
    """Two single-plane views side by side in one plane are a pair, and the grid over their overlap
    (no depth) holds about the requested number of points, not one per 1e-9 of depth."""
    from rhapso_core.intensity.sampling import overlapping_pairs
    from rhapso_core.qc.fusion import overlap_grid

    a = np.eye(4)
    b = np.eye(4)
    b[0, 3] = 88.0
    views = [SampledView((0, 0), None, a, (100, 100, 1), (0, 0, 0), 0),
             SampledView((0, 1), None, b, (100, 100, 1), (0, 0, 0), 0)]
    assert overlapping_pairs(views) == [(0, 1)]
    pts = overlap_grid(np.array([88.0, 0.0, 0.0]), np.array([99.0, 99.0, 0.0]), 5000)
    assert 2500 <= len(pts) <= 5000 and np.all(pts[:, 2] == 0.0)
