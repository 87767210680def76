"""In-plane models and the coplanarity test (rhapso_core.planar).

Tolerances: fits of noise-free matches recover the transform to 1e-9; the normal row
and column stay identity exactly (1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.models import AffineModel, IllDefinedFit, InterpolatedModel
from rhapso_core.planar import InPlaneModel, choose_model, planarity
from rhapso_core.synthetic.geometry import rotation_matrix


def _plane_points(n=60, z=3.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(0, 200, (n, 2)), np.full(n, z)]


def _in_plane(theta, scale=(1.0, 1.0), shear=0.0, t=(0.0, 0.0)):
    m = np.eye(4)
    r = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    m[:2, :2] = r @ np.diag(scale) @ np.array([[1.0, shear], [0.0, 1.0]])
    m[:2, 3] = t
    return m


def _apply(m, p):
    return p @ m[:3, :3].T + m[:3, 3]


@pytest.mark.parametrize(
    "kind, truth",
    [
        ("translation", _in_plane(0.0, t=(5.0, -3.0))),
        ("rigid", _in_plane(0.2, t=(5.0, -3.0))),
        ("similarity", _in_plane(0.2, scale=(1.02, 1.02), t=(5.0, -3.0))),
        ("affine", _in_plane(0.2, scale=(1.01, 0.99), shear=0.01, t=(5.0, -3.0))),
    ],
)
def test_in_plane_fit_recovers_the_transform_and_keeps_z(kind, truth):
    p = _plane_points()
    q = _apply(truth, p)
    m = InPlaneModel(kind=kind).fit(p, q)
    assert np.allclose(m, truth, atol=1e-9)
    assert np.allclose(m[2], [0, 0, 1, 0], atol=1e-12) and np.allclose(m[:3, 2], [0, 0, 1], atol=1e-12)


def test_in_plane_fit_on_a_tilted_plane_keeps_its_normal():
    rot = np.eye(4)
    rot[:3, :3] = rotation_matrix(np.array([1.0, 2.0, 0.0]), 0.4)
    truth = rot @ _in_plane(0.1, scale=(1.01, 0.995), t=(4.0, 1.0)) @ np.linalg.inv(rot)
    p = _apply(rot, _plane_points())
    q = _apply(truth, p)
    plane = planarity(np.vstack([p, q]))
    assert plane.planar
    m = choose_model("affine", plane=plane).fit(p, q)
    assert np.allclose(_apply(m, p), q, atol=1e-9)
    n = np.asarray(plane.normal)
    assert np.allclose(m[:3, :3] @ n, n, atol=1e-9)


def test_degenerate_samples_are_nan_not_errors():
    p = np.array([[0.0, 0, 0], [1.0, 1, 0], [2.0, 2, 0]])  # collinear
    assert np.all(np.isnan(InPlaneModel(kind="affine").fit_batch(p[None], p[None])))
    with pytest.raises(IllDefinedFit):
        InPlaneModel(kind="rigid").fit(p[:1], p[:1])
    # Two points determine an in-plane rotation (a 3-D rigid fit would need three).
    m = InPlaneModel(kind="rigid").fit(p[:2], p[:2] + [1.0, 0, 0])
    assert np.allclose(m[:3, 3], [1, 0, 0])


def test_planarity_reads_the_point_cloud_not_a_flag():
    rng = np.random.default_rng(1)
    flat = _plane_points(100)
    assert planarity(flat).planar and planarity(flat).thickness_voxels == pytest.approx(0.0, abs=1e-9)
    # A three-plane stack whose points sit in its middle plane, spread only by sub-voxel noise:
    # z voxels of 4 world units (2 um vs 0.5 um), noise 0.3 plane.
    calib = np.diag([1.0, 1.0, 4.0, 1.0])
    noisy = flat.copy()
    noisy[:, 2] = 4.0 * (1.0 + rng.normal(0, 0.3, 100))
    assert planarity(noisy, [calib]).planar
    # The same numbers without the views' voxel size (world units as voxels) are not flat.
    assert not planarity(noisy).planar
    # A stack with points over 8 planes is 3-D.
    deep = flat.copy()
    deep[:, 2] = 4.0 * rng.uniform(0, 7, 100)
    assert not planarity(deep, [calib]).planar


def test_choose_model_is_the_one_place_the_model_is_picked():
    flat = planarity(_plane_points())
    assert isinstance(choose_model("affine"), AffineModel)
    assert isinstance(choose_model("affine", plane=flat), InPlaneModel)
    reg = choose_model("affine", 0.1, "rigid", flat)
    assert isinstance(reg, InterpolatedModel) and isinstance(reg.main, InPlaneModel)
    assert reg.min_matches == 3
    with pytest.raises(ValueError, match="similarity"):
        choose_model("similarity")
