"""The detector registry: each interest-point detector is one module that registers a :class:`Detector`.

:func:`~rhapso_core.detection.view.detect_chunk` owns everything a detector need not know:
choosing the pyramid level, reading one chunk plus its halo, block-averaging it to the
working grid, mapping the found peaks back to full-resolution view voxels and reading
their intensities. A detector gets the working-grid block and says where its points are.
``detection.method`` names the detector; its halo keeps results independent of chunking.

Built-in detectors are named in :data:`BUILTIN_DETECTORS` with their module, so a
parameter file is validated without importing the detector (numba, for the DoG); the
module is imported on first lookup and registers itself. Adding one: ``docs/extending.md``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from rhapso_core.detection.params import DetectionParams

__all__ = ["BUILTIN_DETECTORS", "Detector", "register_detector", "get_detector", "detector_names",
           "check_detector_name"]

# name -> module that registers it (imported on first use)
BUILTIN_DETECTORS: dict[str, str] = {"dog": "rhapso_core.detection.dog_detector"}


@dataclass(frozen=True)
class Detector:
    """One interest-point detector.

    Attributes
    ----------
    name : str
        The value of ``detection.method``.
    find : callable
        ``find(values, vscale, lo, hi, core, params, two_d) -> (loc, val, peak)``:
        ``values`` is the working-grid block (z, y, x) read with :attr:`halo` around the
        chunk's core; ``values * vscale`` is the mean intensity, mapped to 0..1 by
        ``(I - lo) / (hi - lo)``; ``core`` is the half-open ((z0, z1), (y0, y1), (x0, x1))
        box, relative to the block, whose points this chunk owns (a point belongs to the
        chunk holding its integer peak). Returns sub-voxel positions ``loc`` (n, 3) z y x
        in block voxels, a response ``val`` (n,) (signed; its magnitude ranks points), and
        the integer peaks ``peak`` (n, 3) where the intensity is read. ``two_d``: detect
        every plane on its own.
    halo : callable
        ``halo(params) -> (z, y, x)`` working voxels around the core that make a chunk's
        result the same as the whole view's.
    description : str
        One line for error messages and docs.
    border_margin : callable, optional
        ``border_margin(params) -> float``: working voxels from the view's border within which
        the detector's localisation reads voxels past the border (mirrored) and is biased.
        Detection stores it with each view's points and the solve leaves matches there out
        where a pair can spare them (:mod:`rhapso_core.pipeline.border_matches`,
        ``detection.exclude_border``). None: no such reach.
    """

    name: str
    find: Callable[..., tuple["np.ndarray", "np.ndarray", "np.ndarray"]]
    halo: Callable[["DetectionParams"], tuple[int, int, int]]
    description: str = ""
    border_margin: Callable[["DetectionParams"], float] | None = None


_DETECTORS: dict[str, Detector] = {}
_lock = threading.Lock()


def register_detector(det: Detector) -> Detector:
    """Add (or replace, for the same name) a detector; returns it."""
    _DETECTORS[det.name] = det
    return det


def detector_names() -> list[str]:
    """Built-in names first, then the ones registered since."""
    return list(dict.fromkeys([*BUILTIN_DETECTORS, *_DETECTORS]))


def check_detector_name(name: Any) -> Any:
    """``name`` if a detector is known by it; else a one-line ValueError listing the known ones."""
    if name not in BUILTIN_DETECTORS and name not in _DETECTORS:
        raise ValueError(f"unknown detector {name!r} (expected {', '.join(detector_names())})")
    return name


def get_detector(name: str) -> Detector:
    """The detector named ``name``, importing its built-in module on first use."""
    det = _DETECTORS.get(name)
    if det is None and name in BUILTIN_DETECTORS:
        with _lock:
            importlib.import_module(BUILTIN_DETECTORS[name])
        det = _DETECTORS.get(name)
    if det is None:
        check_detector_name(name)
        raise ValueError(f"detector module {BUILTIN_DETECTORS[name]} did not register {name!r}")
    return det
