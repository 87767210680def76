"""The compiled sweep of the iterative optimiser equals its generic (``fit_batch``) sweep.

The generic path runs for models without compiled fits (in-plane models, extensions); a
subclass that overrides ``fit_batch`` (here: only to call the parent) forces it. Both must
give the same iterations, convergence flag and models: tolerance 1e-10 world units on the
affines' entries (the two paths sum the same terms in a different order: round-off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from rhapso_core.models import AffineModel, InterpolatedModel, RigidModel, TranslationModel, compiled_spec
from rhapso_core.solver.graph import TileLink
from rhapso_core.solver.iterative import optimise_iterative
from rhapso_core.solver.synthetic import make_grid


@dataclass(frozen=True)
class _GenericRigid(RigidModel):
    def fit_batch(self, p, q, w=None):
        return super().fit_batch(p, q, w)


@dataclass(frozen=True)
class _GenericAffine(AffineModel):
    def fit_batch(self, p, q, w=None):
        return super().fit_batch(p, q, w)


@dataclass(frozen=True)
class _GenericTranslation(TranslationModel):
    def fit_batch(self, p, q, w=None):
        return super().fit_batch(p, q, w)


def _tile_links(kind, seed):
    g = make_grid((3, 2, 2), kind, seed=seed)
    index = {v: i for i, v in enumerate(sorted(g.views))}
    rng = np.random.default_rng(seed)
    links = []
    for lk in g.links:
        w = rng.uniform(0.5, 1.5, lk.pa.shape[0])  # uneven weights exercise the weighted fits
        links.append(TileLink(index[lk.a], index[lk.b], lk.pa, lk.pb, w))
    return len(index), links


@pytest.mark.parametrize("fast,generic,kind", [
    (TranslationModel(), _GenericTranslation(), "translation"),
    (RigidModel(), _GenericRigid(), "rigid"),
    (InterpolatedModel(main=AffineModel(), regularizer=RigidModel(), lam=0.1),
     InterpolatedModel(main=_GenericAffine(), regularizer=_GenericRigid(), lam=0.1), "affine"),
])
def test_compiled_sweep_equals_the_generic_sweep(fast, generic, kind):
    assert compiled_spec(fast) is not None and compiled_spec(generic) is None
    n, links = _tile_links(kind, seed=4)
    fixed = np.zeros(n, dtype=bool)
    fixed[0] = True
    kw = dict(damp=0.9, max_iterations=400, max_allowed_error=np.inf, max_plateauwidth=50)
    m_fast, i_fast = optimise_iterative(n, links, fixed, fast, **kw)
    m_gen, i_gen = optimise_iterative(n, links, fixed, generic, **kw)
    assert i_fast.iterations == i_gen.iterations and i_fast.converged == i_gen.converged
    assert i_fast.iterations > 50  # the sweep really ran
    np.testing.assert_allclose(m_fast, m_gen, rtol=0, atol=1e-10)
    assert abs(i_fast.error - i_gen.error) <= 1e-10
    # and the solve did something: tiles moved off the identity
    assert np.abs(m_fast[1:] - np.eye(4)).max() > 1e-3
