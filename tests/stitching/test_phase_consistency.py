"""The global solve of phase links leaves out links that disagree with the others.

Links are built by hand on 2-D grids of 256 x 256 single-plane tiles with 51-pixel overlaps
(world = pixels), as the phase round measures them: a correct link is the true relative
shift plus up to 0.02 pixel of noise. The wrong links are the two kinds measured on
generated mosaics: a weak peak (r 0.35) 2.2 pixels off, and a strong one (r 0.93) 134
pixels off that compares 14 % of the overlap. Tolerance: every view within 0.05 pixel of
its true position (gauge: view 0 held) once the wrong link is out.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.solver import SolverParams
from rhapso_core.stitching import PhaseLink, consistent_links, solve_phase_links

TILE, OVERLAP = 256, 51


def _grid(nx, ny, seed=0):
    """True positions (x, y) of a grid's tiles; stage positions 4 pixels off at most."""
    rng = np.random.default_rng(seed)
    step = TILE - OVERLAP
    nominal, true = {}, {}
    for j in range(ny):
        for i in range(nx):
            v = (0, j * nx + i)
            nominal[v] = np.array([i * step, j * step, 0.0])
            true[v] = nominal[v] + np.r_[rng.uniform(-4, 4, 2), 0.0]
    return nominal, true


def _link(a, b, nominal, true, r=0.97, error=(0.0, 0.0), rng=None):
    """b must move by the difference of the stage errors (plus ``error``) to match a."""
    lo = np.maximum(nominal[a], nominal[b])
    hi = np.minimum(nominal[a], nominal[b]) + np.array([TILE - 1, TILE - 1, 0.0])
    noise = np.zeros(3) if rng is None else np.r_[rng.normal(0, 0.01, 2), 0.0]
    shift = (true[b] - nominal[b]) - (true[a] - nominal[a]) + np.r_[error, 0.0] + noise
    crop = tuple(int(v) for v in (hi - lo + 1))
    return PhaseLink(a, b, tuple(map(float, shift)), r, tuple(map(float, lo)), tuple(map(float, hi)), 0.0,
                     0, None, crop, "ok")


def _pairs(nx, ny):
    out = []
    for j in range(ny):
        for i in range(nx):
            v = j * nx + i
            if i + 1 < nx:
                out.append(((0, v), (0, v + 1)))
            if j + 1 < ny:
                out.append(((0, v), (0, v + nx)))
            if i + 1 < nx and j + 1 < ny:
                out.append(((0, v), (0, v + nx + 1)))
    return out


def _views(nominal):
    return {v: (transforms.translation(p), (TILE, TILE, 1)) for v, p in nominal.items()}


def _worst_error(result, nominal, true):
    got = {v: result.corrections[v][:3, 3] for v in nominal}
    want = {v: true[v] - nominal[v] for v in nominal}
    ref = got[(0, 0)] - want[(0, 0)]
    return max(float(np.abs(got[v] - want[v] - ref).max()) for v in nominal)


@pytest.mark.parametrize("case", ["weak_peak_2x2", "strong_alias_2x2", "alias_3x3"])
def test_a_wrong_link_is_left_out(case):
    nx, ny = (3, 3) if case == "alias_3x3" else (2, 2)
    nominal, true = _grid(nx, ny, seed=1)
    rng = np.random.default_rng(2)
    bad = ((0, 0), (0, 2)) if nx == 2 else ((0, 3), (0, 7))
    links = []
    for a, b in _pairs(nx, ny):
        if (a, b) != bad:
            links.append(_link(a, b, nominal, true, rng=rng))
        elif case == "weak_peak_2x2":
            links.append(_link(a, b, nominal, true, r=0.354, error=(2.19, -0.32)))
        else:  # a strong peak far off: it compares a small part of the overlap
            links.append(_link(a, b, nominal, true, r=0.93, error=(-134.0, 36.0)))
    result = solve_phase_links(links, SolverParams(), views=_views(nominal))
    removed = {(a, b) for a, b, _ in result.report.removed_links}
    assert bad in removed, removed
    assert _worst_error(result, nominal, true) <= 0.05


def test_links_between_distorted_tiles_all_stay():
    """Tiles that are really scaled (1 %) make every translation link disagree by about the same
    amount (a few pixels over 256): none of them is a wrong peak, so none is dropped."""
    nominal, true = _grid(3, 3, seed=3)
    rng = np.random.default_rng(4)
    links = [_link(a, b, nominal, true, error=rng.normal(0, 1.5, 2)) for a, b in _pairs(3, 3)]
    kept, dropped = consistent_links(links, SolverParams(), _views(nominal))
    assert dropped == [] and len(kept) == len(links)


def test_a_link_on_no_cycle_is_never_dropped():
    """Three tiles in a row: two links, no redundancy, nothing to check a link against."""
    nominal, true = _grid(3, 1, seed=5)
    links = [_link((0, 0), (0, 1), nominal, true), _link((0, 1), (0, 2), nominal, true, r=0.3, error=(9.0, 0.0))]
    kept, dropped = consistent_links(links, SolverParams(), _views(nominal))
    assert dropped == [] and len(kept) == 2
