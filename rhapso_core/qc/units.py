"""How long one world unit is, for the report's figures (BigStitcher's world frame is
whatever its calibration makes it: often the finest voxel, sometimes one micrometre)."""

from __future__ import annotations

import numpy as np

_MICRONS = {"um", "µm", "μm", "micron", "microns", "micrometer", "micrometre", "micrometers", "micrometres"}


def um_per_world_unit(sd) -> float | None:
    """Micrometres per world unit, from each view's voxel size (um) over the length of its
    view-to-world affine's pixel axes (world units per pixel, input registrations); the
    median over views and axes. None when voxel sizes are missing or not in micrometres."""
    ratios = []
    for view in sd.views():
        setup = sd.setup_of(view)
        unit = (setup.voxel_unit or "").strip().lower()
        if setup.voxel_size is None or unit not in _MICRONS:
            continue
        a = np.asarray(sd.view_to_world(view), dtype=float)[:3, :3]
        lengths = np.linalg.norm(a, axis=0)  # world units per pixel step along x, y, z
        ratios += [vs / ln for vs, ln in zip(setup.voxel_size, lengths) if ln > 0 and vs > 0]
    return float(np.median(ratios)) if ratios else None


def unit_note(um: float | None) -> str:
    if um is None:
        return "Distances are in world units (the XML's voxel sizes do not say micrometres)."
    return f"Distances are in world units: 1 world unit = {um:.4g} um."
