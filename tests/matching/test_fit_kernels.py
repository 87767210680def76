"""The compiled model fits (rhapso_core._fit_kernels) against textbook formulas.

The references below are the plain NumPy/LAPACK formulas (Kabsch with the reflection
fix, normal equations for the affine). Tolerances: well-conditioned samples agree to
1e-11 relative to the largest entry (round-off of two different but stable algorithms,
times the sample's condition, is far below); degenerate samples are NaN in both.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.models import AffineModel, InterpolatedModel, RigidModel, TranslationModel, make_model

REL = 1e-11  # relative to the largest |entry| of the sample's reference affine
DEG = 1e-9  # the degeneracy rule (smallest relevant singular value / largest)


def ref_fit(kind: str, p, q, w):
    """One weighted fit by the textbook formula (NaN when the rule calls it degenerate)."""
    wsum = w.sum()
    if wsum <= 0:
        return np.full((4, 4), np.nan)
    pc, qc = w @ p / wsum, w @ q / wsum
    dp, dq = p - pc, q - qc
    if kind == "translation":
        lin = np.eye(3)
    elif kind == "rigid":
        u, s, vt = np.linalg.svd((dp * w[:, None]).T @ dq)
        if s[1] <= DEG * max(s[0], 1e-300):
            return np.full((4, 4), np.nan)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        lin = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    else:
        cpp = (dp * w[:, None]).T @ dp
        s = np.linalg.svd(cpp, compute_uv=False)
        if s[2] <= DEG * max(s[0], 1e-300):
            return np.full((4, 4), np.nan)
        lin = np.linalg.solve(cpp.T, ((dq * w[:, None]).T @ dp).T).T
    out = np.eye(4)
    out[:3, :3] = lin
    out[:3, 3] = qc - lin @ pc
    return out


MODELS = {"translation": TranslationModel(), "rigid": RigidModel(), "affine": AffineModel()}


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def samples(rng, b, n, noise):
    p = rng.uniform(-100, 100, size=(b, n, 3))
    rot = np.stack([random_rotation(rng) for _ in range(b)])
    q = np.einsum("bij,bnj->bni", rot, p) + rng.normal(0, 50, size=(b, 1, 3)) + rng.normal(0, noise, size=(b, n, 3))
    w = rng.uniform(0.2, 2.0, size=(b, n))
    return p, q, w


def well_conditioned(p, w, kind):
    """Samples whose spread is far from degenerate (so 1e-11 is a fair tolerance)."""
    if kind == "translation":
        return np.ones(len(p), dtype=bool)
    dp = p - np.einsum("bn,bnk->bk", w, p)[:, None] / w.sum(axis=1)[:, None, None]
    s = np.linalg.svd(np.einsum("bn,bni,bnj->bij", w, dp, dp), compute_uv=False)
    k = 1 if kind == "rigid" else 2
    return s[:, k] > 1e-3 * s[:, 0]


@pytest.mark.parametrize("kind,n", [(k, n) for k in ("translation", "rigid", "affine") for n in (3, 4, 7, 40)
                                     if n >= MODELS[k].min_matches])
def test_kernel_matches_the_reference_on_random_samples(kind, n):
    model = MODELS[kind]
    rng = np.random.default_rng(n)
    p, q, w = samples(rng, 400, n, noise=2.0)
    got = model.fit_batch(p, q, w)
    ref = np.stack([ref_fit(kind, p[b], q[b], w[b]) for b in range(len(p))])
    ok = well_conditioned(p, w, kind)
    assert ok.sum() > 300
    scale = np.abs(ref[ok]).max(axis=(1, 2))
    assert np.all(np.abs(got[ok] - ref[ok]).max(axis=(1, 2)) <= REL * scale)
    # Finite exactly where the reference is (no random sample here is near the threshold).
    assert np.array_equal(np.isfinite(got).all(axis=(1, 2)), np.isfinite(ref).all(axis=(1, 2)))
    if kind == "rigid":
        lin = got[:, :3, :3]
        assert np.allclose(np.einsum("bji,bjk->bik", lin, lin), np.eye(3), atol=1e-13)
        assert np.allclose(np.linalg.det(lin), 1.0, atol=1e-13)


def test_interpolated_kernel_is_the_blend_of_the_two_fits():
    rng = np.random.default_rng(5)
    p, q, w = samples(rng, 300, 5, noise=3.0)
    for lam in (0.0, 0.1, 1.0):
        got = InterpolatedModel(main=AffineModel(), regularizer=RigidModel(), lam=lam).fit_batch(p, q, w)
        ref = np.stack([(1 - lam) * ref_fit("affine", p[b], q[b], w[b]) + lam * ref_fit("rigid", p[b], q[b], w[b])
                        for b in range(len(p))])
        ok = well_conditioned(p, w, "affine")
        scale = np.abs(ref[ok]).max(axis=(1, 2))
        assert np.all(np.abs(got[ok] - ref[ok]).max(axis=(1, 2)) <= REL * scale)


def test_a_reflected_point_set_gets_the_best_proper_rotation_not_the_mirror():
    """Points mirrored through a plane: the least-squares orthogonal map is the mirror (det -1); the rigid fit
    must be a rotation (Kabsch's fix), and for a planar sample the mirror through its own plane is a rotation."""
    rng = np.random.default_rng(0)
    p = rng.uniform(-10, 10, size=(20, 3))
    mirror = np.diag([1.0, 1.0, -1.0])
    q = p @ mirror.T
    fit = RigidModel().fit(p, q)
    assert np.isclose(np.linalg.det(fit[:3, :3]), 1.0, atol=1e-12)
    np.testing.assert_allclose(fit, ref_fit("rigid", p, q, np.ones(20)), atol=1e-11)
    # Coplanar points (z = 0) mirrored in z: the identity maps them exactly, and is proper.
    p2 = p.copy()
    p2[:, 2] = 0.0
    fit2 = RigidModel().fit(p2, p2 @ mirror.T)
    np.testing.assert_allclose(fit2, np.eye(4), atol=1e-12)
    # Three points (always coplanar) under a proper rotation: recovered exactly.
    rot = random_rotation(rng)
    fit3 = RigidModel().fit(p[:3], p[:3] @ rot.T + [1.0, 2.0, 3.0])
    np.testing.assert_allclose(fit3[:3, :3], rot, atol=1e-12)
    np.testing.assert_allclose(fit3[:3, 3], [1.0, 2.0, 3.0], atol=1e-10)


def test_degenerate_samples_are_nan_and_near_degenerate_ones_are_fitted():
    rng = np.random.default_rng(3)
    line = np.outer(rng.uniform(-5, 5, 6), [1.0, 2.0, -1.0]) + [3.0, 0.0, 1.0]
    plane = np.c_[rng.uniform(-5, 5, (6, 2)), np.zeros(6)] @ random_rotation(rng).T
    rot = random_rotation(rng)
    cases = {
        "collinear": (line, np.ones(6), {"translation": True, "rigid": False, "affine": False}),
        "coplanar": (plane, np.ones(6), {"translation": True, "rigid": True, "affine": False}),
        "coincident": (np.tile([1.0, 2.0, 3.0], (6, 1)), np.ones(6),
                       {"translation": True, "rigid": False, "affine": False}),
        "zero weights": (rng.normal(size=(6, 3)), np.zeros(6), {"translation": False, "rigid": False, "affine": False}),
        # Weight only on two points: the rest do not count, so the sample is a line for rigid and affine.
        "two weighted": (rng.normal(size=(6, 3)), np.array([1.0, 1.0, 0, 0, 0, 0]),
                         {"translation": True, "rigid": False, "affine": False}),
        # Spread 1e-3 off the line relative to its length: singular-value ratio ~1e-6 (covariances go with
        # the square), above the 1e-9 rule, so fitted; 1e-6 off gives ~1e-12, below it.
        "nearly collinear": (line + 1e-3 * rng.normal(size=line.shape) * np.abs(line).max(), np.ones(6),
                             {"translation": True, "rigid": True, "affine": True}),
        "collinear to 1e-6": (line + 1e-6 * rng.normal(size=line.shape) * np.abs(line).max(), np.ones(6),
                              {"translation": True, "rigid": False, "affine": False}),
    }
    for name, (p, w, finite) in cases.items():
        q = p @ rot.T + 4.0
        for kind, expect in finite.items():
            got = MODELS[kind].fit_batch(p[None], q[None], w[None])[0]
            ref = ref_fit(kind, p, q, w)
            assert np.isfinite(got).all() == expect, (name, kind)
            assert np.isfinite(ref).all() == expect, (name, kind)
            if expect:
                # Near-degenerate: round-off grows like eps / (singular-value ratio 1e-6): 1e-8 allowed there.
                tol = 1e-8 if name == "nearly collinear" else 1e-11
                np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max())
    # Nearly collinear exact data: the true map is recovered (to the same round-off bound).
    p = cases["nearly collinear"][0]
    for kind in ("rigid", "affine"):
        got = MODELS[kind].fit(p, p @ rot.T + 4.0)
        np.testing.assert_allclose(got[:3, :3], rot, atol=1e-8)


def test_zero_weight_padding_changes_nothing():
    """The solver pads batches with zero-weight points: the fit must not depend on them."""
    rng = np.random.default_rng(8)
    p, q, w = samples(rng, 50, 6, noise=1.0)
    pad_p = np.concatenate([p, rng.normal(0, 1e3, size=(50, 4, 3))], axis=1)
    pad_q = np.concatenate([q, rng.normal(0, 1e3, size=(50, 4, 3))], axis=1)
    pad_w = np.concatenate([w, np.zeros((50, 4))], axis=1)
    for kind in ("translation", "rigid", "affine"):
        a = MODELS[kind].fit_batch(p, q, w)
        b = MODELS[kind].fit_batch(pad_p, pad_q, pad_w)
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.abs(a).max())
    assert make_model("affine", 0.1).kernel_spec() is not None
