"""A pair's phase link joined to its points per axis (rhapso_core.pipeline.axis_fusion)."""

import numpy as np
import pytest

from rhapso_core.pipeline.axis_fusion import fuse_per_axis


def test_pair_local_combination_is_the_inverse_variance_mean_per_axis():
    """n matches at t_p (weight 1 each) and the link (weight 8 w at its target) average, per axis, to the
    inverse-variance mean of the two estimates. Exact to rounding."""
    n, tp, sp = 30, np.array([0.4, -1.0, 0.9]), np.array([0.3, 0.2, 0.05])
    tf, sf = np.array([1.0, -0.7, 0.4]), np.array([0.05, 0.1, 0.25])
    target, w = fuse_per_axis(n, tp, sp, tf, sf)
    best = (tp / sp**2 + tf / sf**2) / (1 / sp**2 + 1 / sf**2)
    assert np.allclose((n * tp + 8 * w * np.asarray(target)) / (n + 8 * w), best)
    assert 8 * w == pytest.approx(n * np.max(sp**2 / sf**2))
    assert target[0] == pytest.approx(tf[0])  # the most precise axis is the phase's own


def test_a_coarse_z_phase_does_not_override_good_points_along_z():
    """Real texture: points agree to 0.04 in x, y and 0.08 in z; the phase is better in x and y (0.02) but
    pulled 0.36 world units toward zero in z (its measured error 0.26). One weight for all axes must choose:
    the least favourable axis's ratio (the code before) gives up the phase's precision in x and y (the pair
    would sit at x -0.54), the most favourable one lets the phase's z win. Per axis the pair's z stays near
    the points' (within 0.05) while x and y follow the phase (within 0.025)."""
    n, tp, sp = 166, np.array([-0.53, 0.81, 0.72]), np.array([0.04, 0.04, 0.08])
    tf, sf = np.array([-0.63, 0.84, 0.36]), np.array([0.02, 0.02, 0.26])
    target, w = fuse_per_axis(n, tp, sp, tf, sf)
    pull = (n * tp + 8 * w * np.asarray(target)) / (n + 8 * w)
    assert abs(pull[2] - tp[2]) < 0.05 and np.all(np.abs(pull[:2] - tf[:2]) < 0.025), pull


def test_unknown_or_flat_axes():
    # no measured phase error anywhere: the phase link as it is, weighing what the matches do
    t, w = fuse_per_axis(10, [0, 0, 0], [0.1, 0.1, 0.1], [1, 2, 3], [np.nan] * 3)
    assert t == (1.0, 2.0, 3.0) and w == pytest.approx(10 / 8)
    # a single plane: z flat on both sides takes the phase's (0); an unknown phase error keeps the points'
    t, w = fuse_per_axis(10, [0.5, 0.5, 0.0], [0.1, 0.1, 0.0], [1.0, 0.5, 0.0], [0.05, np.nan, 0.0])
    assert t[0] == pytest.approx(1.0) and t[1] == pytest.approx(0.5) and t[2] == 0.0 and w == pytest.approx(5.0)


def test_the_image_check_is_on_by_default():
    """docs/accuracy.md: with the per-axis phase error every re-measured cell stays within its target with it on."""
    from rhapso_core.config import PipelineParams

    assert PipelineParams().pair_retry.image_check is True
