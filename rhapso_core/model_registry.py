"""The transform-model registry: every model name a parameter, CLI flag or solver accepts.

A model is one :class:`ModelSpec`: its name, a factory returning a fresh
:class:`~rhapso_core.models.Model`, and its degrees of freedom in 3-D, which order the
models from simplest to most flexible (the solver's ``model: auto`` validates the simpler
ones first, ``max_model`` caps the order). The built-in models (translation, rigid,
affine) register themselves in :mod:`rhapso_core.models`, imported on first lookup.

Parameters name a model through :data:`ModelName` (or :func:`model_name_type` with extra
literal values such as ``"none"`` or ``"auto"``), so a registered model is accepted by
``matching.model``, ``solver.model`` and the CLI without touching them. Adding a model:
``docs/extending.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, WithJsonSchema

from rhapso_core._registry import Registry

if TYPE_CHECKING:
    from rhapso_core.models import Model

__all__ = [
    "BUILTIN_MODEL_MODULES",
    "ModelSpec",
    "ModelName",
    "model_name_type",
    "register_model",
    "get_model_spec",
    "model_names",
    "check_model_name",
]

BUILTIN_MODEL_MODULES: tuple[str, ...] = ("rhapso_core.models",)


@dataclass(frozen=True)
class ModelSpec:
    """One transform model.

    Attributes
    ----------
    name : str
        The name parameters use (``"rigid"``).
    factory : callable
        Returns the :class:`~rhapso_core.models.Model` (fits ``(B, N, 3)`` point sets, x y z).
    dof : int
        Degrees of freedom in 3-D (translation 3, rigid 6, affine 12): simplest first.
    description : str
        One line for error messages and docs.
    """

    name: str
    factory: Callable[[], "Model"]
    dof: int
    description: str = ""


_REGISTRY: Registry[ModelSpec] = Registry(BUILTIN_MODEL_MODULES)
_MODELS = _REGISTRY.entries


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add (or replace, for the same name) a model; returns it."""
    return _REGISTRY.register(spec.name, spec)


def _ensure_loaded() -> None:
    _REGISTRY.ensure_loaded()


def model_names() -> list[str]:
    """Every registered name, simplest (fewest degrees of freedom) first."""
    _ensure_loaded()
    return [s.name for s in sorted(_MODELS.values(), key=lambda s: s.dof)]


def get_model_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; an unknown name is a one-line ValueError listing the known ones."""
    _ensure_loaded()
    spec = _MODELS.get(name)
    if spec is None:
        raise ValueError(f"unknown model {name!r} (expected {', '.join(model_names())})")
    return spec


def check_model_name(name: str, extra: tuple[str, ...] = ()) -> str:
    """``name`` if it is a registered model or one of ``extra``; else a one-line ValueError."""
    if name in extra:
        return name
    _ensure_loaded()
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r} (expected {', '.join((*extra, *model_names()))})")
    return name


def model_name_type(*extra: str):
    """A pydantic string type accepting a registered model name or one of ``extra`` literals."""
    return Annotated[
        str,
        AfterValidator(lambda v: check_model_name(v, extra)),
        WithJsonSchema({"type": "string", "description": "a registered transform model"
                        + (f" or one of {', '.join(extra)}" if extra else "")}),
    ]


ModelName = model_name_type()
"""A registered transform model's name (validated at parse time, after registration)."""
