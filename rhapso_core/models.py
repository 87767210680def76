"""Geometric models shared by RANSAC (matching) and the global solver.

One small interface, as in mpicbg: a model knows its minimum number of matches
and fits a 4x4 affine (x, y, z frame, see :mod:`rhapso_core.transforms`) that maps
points ``p`` onto points ``q`` in the weighted least-squares sense::

    argmin_T  sum_i  w_i * || T(p_i) - q_i ||^2

Every fit is batched: ``fit_batch(p, q, w)`` takes ``(B, N, 3)`` point sets and
returns ``(B, 4, 4)`` affines, so RANSAC fits thousands of minimal samples in one
call. A sample whose points do not determine the model (collinear for rigid,
coplanar for affine) gives an all-NaN affine rather than an exception, so a
batch never fails as a whole; :meth:`Model.fit` raises :class:`IllDefinedFit`.

The interpolated model is BigStitcher's ``InterpolatedAffineModel3D``: fit both
models on the same matches and blend entry-wise, ``(1 - lambda) * A + lambda * B``.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from rhapso_core.fit_codes import AFFINE, DEGENERATE, NO_KIND, RIGID, TRANSLATION
from rhapso_core.model_registry import ModelSpec, get_model_spec, register_model

__all__ = [
    "IllDefinedFit",
    "Model",
    "TranslationModel",
    "RigidModel",
    "AffineModel",
    "InterpolatedModel",
    "make_model",
    "residuals",
]

# Relative size of the smallest singular value below which a fit is ill-defined (the kernels' rule;
# in-plane models use it too).
_DEGENERATE = DEGENERATE


class IllDefinedFit(ValueError):
    """The matches do not determine the model (too few, or degenerate geometry)."""


def as_batches(p, q, w=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``p``, ``q`` as (B, N, 3) float64 batches (one set: B = 1) and the weights as (B, N) (None: ones)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.ndim == 2:
        p, q = p[None], q[None]
    if p.shape != q.shape or p.shape[-1] != 3:
        raise ValueError(f"point sets must both be (B, N, 3); got {p.shape} and {q.shape}")
    w = np.ones(p.shape[:2]) if w is None else np.broadcast_to(np.asarray(w, dtype=np.float64), p.shape[:2])
    return p, q, w


def _prepare(p: np.ndarray, q: np.ndarray, w: np.ndarray | None):
    """Batches, weighted centroids and weight sums: for models written in NumPy (extensions)."""
    p, q, w = as_batches(p, q, w)
    wsum = w.sum(axis=1)
    safe = np.where(wsum > 0, wsum, 1.0)
    pc = np.einsum("bn,bnk->bk", w, p) / safe[:, None]
    qc = np.einsum("bn,bnk->bk", w, q) / safe[:, None]
    return p, q, w, pc, qc, wsum


def _assemble(linear: np.ndarray, pc: np.ndarray, qc: np.ndarray) -> np.ndarray:
    """4x4 affines from linear parts that map centroid ``pc`` onto ``qc`` (see :func:`_prepare`)."""
    out = np.zeros((linear.shape[0], 4, 4))
    out[:, :3, :3] = linear
    out[:, :3, 3] = qc - np.einsum("bij,bj->bi", linear, pc)
    out[:, 3, 3] = 1.0
    return out


@dataclass(frozen=True)
class Model:
    """Base class: subclasses give a :meth:`kernel_spec` (the compiled fits) or implement :meth:`fit_batch`."""

    name: str = "model"
    min_matches: int = 1

    def kernel_spec(self) -> tuple[int, int, float] | None:
        """``(main kind, regulariser kind, lambda)`` of the compiled fit (:mod:`rhapso_core._fit_kernels`),
        or None where this model has none (then it overrides :meth:`fit_batch`)."""
        return None

    def fit_batch(self, p: np.ndarray, q: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Fit every sample of ``(B, N, 3)`` matches (weights ``(B, N)``, default ones): ``(B, 4, 4)``,
        all-NaN rows where the sample does not determine the model or its weights sum to <= 0."""
        spec = self.kernel_spec()
        if spec is None:
            raise NotImplementedError(f"{type(self).__name__} has no fit")
        from rhapso_core._fit_kernels import fit_samples  # numba: not at import (the CLI's parameter checks import this module)

        p, q, w = as_batches(p, q, w)
        return fit_samples(np.ascontiguousarray(p), np.ascontiguousarray(q), np.ascontiguousarray(w), *spec)

    def fit(self, p: np.ndarray, q: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Fit one model to ``(N, 3)`` matches; raise :class:`IllDefinedFit` if impossible."""
        p = np.asarray(p, dtype=np.float64)
        if p.shape[0] < self.min_matches:
            raise IllDefinedFit(
                f"{self.name} model needs at least {self.min_matches} matches, got {p.shape[0]}"
            )
        out = self.fit_batch(p[None], np.asarray(q, dtype=np.float64)[None], None if w is None else np.asarray(w)[None])[0]
        if not np.all(np.isfinite(out)):
            raise IllDefinedFit(f"{self.name} model is ill-defined by these {p.shape[0]} matches")
        return out


@dataclass(frozen=True)
class TranslationModel(Model):
    name: str = "translation"
    min_matches: int = 1

    def kernel_spec(self):
        return (TRANSLATION, NO_KIND, 0.0)


@dataclass(frozen=True)
class RigidModel(Model):
    """Rotation + translation (Kabsch / Horn, reflections excluded)."""

    name: str = "rigid"
    min_matches: int = 3

    def kernel_spec(self):
        return (RIGID, NO_KIND, 0.0)


@dataclass(frozen=True)
class AffineModel(Model):
    name: str = "affine"
    min_matches: int = 4

    def kernel_spec(self):
        return (AFFINE, NO_KIND, 0.0)


@dataclass(frozen=True)
class InterpolatedModel(Model):
    """``(1 - lam) * main + lam * regularizer``, fitted on the same matches (BigStitcher's)."""

    main: Model = AffineModel()
    regularizer: Model = RigidModel()
    lam: float = 0.1
    name: str = "interpolated"
    min_matches: int = 4

    def __post_init__(self):
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1], got {self.lam}")
        object.__setattr__(self, "min_matches", max(self.main.min_matches, self.regularizer.min_matches))
        object.__setattr__(self, "name", f"{self.main.name}+{self.regularizer.name}(lambda={self.lam:g})")

    def kernel_spec(self):
        main, reg = compiled_spec(self.main), compiled_spec(self.regularizer)
        # One compiled blend where both are plain compiled fits (not blends, not overridden).
        if main is None or reg is None or main[1] != NO_KIND or reg[1] != NO_KIND:
            return None
        return (main[0], reg[0], float(self.lam))

    def fit_batch(self, p, q, w=None):
        if self.kernel_spec() is not None:
            return super().fit_batch(p, q, w)
        a = self.main.fit_batch(p, q, w)
        if self.lam == 0.0:
            return a
        b = self.regularizer.fit_batch(p, q, w)
        return (1.0 - self.lam) * a + self.lam * b


def compiled_spec(model: Model) -> tuple[int, int, float] | None:
    """``model.kernel_spec()`` where ``model.fit_batch`` is that compiled fit (not overridden by a
    subclass), else None: callers that run the kernels directly (the iterative solver) check here."""
    spec = model.kernel_spec()
    if spec is None or type(model).fit_batch not in (Model.fit_batch, InterpolatedModel.fit_batch):
        return None
    return spec


# Any registered model name (rhapso_core.model_registry): validated where parameters are parsed.
ModelKind = str


def make_model(kind: ModelKind, lam: float = 0.0, regularizer: ModelKind = "rigid") -> Model:
    """The model for a stage parameter: ``kind`` regularised toward ``regularizer`` by ``lam``."""
    main = get_model_spec(kind).factory()
    if lam == 0.0 or kind == regularizer:
        return main
    return InterpolatedModel(main=main, regularizer=get_model_spec(regularizer).factory(), lam=lam)


register_model(ModelSpec("translation", TranslationModel, dof=3, description="shift"))
register_model(ModelSpec("rigid", RigidModel, dof=6, description="rotation + shift"))
register_model(ModelSpec("affine", AffineModel, dof=12, description="general linear map + shift"))


def residuals(affine: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Distances ``|T(p) - q|`` for one ``(4, 4)`` or a batch ``(B, 4, 4)`` of affines."""
    a = np.asarray(affine, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if a.ndim == 2:
        return np.linalg.norm(p @ a[:3, :3].T + a[:3, 3] - q, axis=-1)
    moved = np.einsum("bij,nj->bni", a[:, :3, :3], p) + a[:, None, :3, 3]
    return np.linalg.norm(moved - q[None], axis=-1)
