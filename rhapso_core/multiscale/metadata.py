"""NGFF ``multiscales`` metadata for added pyramid levels.

:mod:`rhapso_core.io.ngff` builds and parses whole ``multiscales`` blocks but has no
"append levels" function, so this module adds one; it uses the io package's
:func:`~rhapso_core.io.ngff.level_scale_translation` geometry (mean downsampling:
``scale = s * F``, ``translation = t + (F - 1) / 2 * s`` with ``F`` the cumulative
factor from the base level), applied to the base dataset's own transforms so any
multiscale-level (global) transform still applies unchanged on top.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import zarr

from rhapso_core.io.ngff import level_scale_translation

__all__ = ["MetadataError", "add_levels_to_attrs", "add_levels_to_group"]


class MetadataError(ValueError):
    """OME-Zarr attributes that cannot take new levels (named in the message)."""


def _multiscale_entry(attrs: dict[str, Any]) -> dict[str, Any]:
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        return ome["multiscales"][0]
    if attrs.get("multiscales"):
        return attrs["multiscales"][0]
    raise MetadataError("group attributes have no OME-NGFF 'multiscales' entry")


def _scale_translation(ds: dict[str, Any], ndim: int) -> tuple[list[float], list[float]]:
    scale, trans = [1.0] * ndim, [0.0] * ndim
    for t in ds.get("coordinateTransformations") or []:
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation":
            trans = [float(v) for v in t["translation"]]
    return scale, trans


def add_levels_to_attrs(
    attrs: dict[str, Any],
    base_path: str,
    new_paths: Sequence[str],
    factors_from_base_zyx: Sequence[Sequence[int]],
) -> dict[str, Any]:
    """Return a copy of OME-Zarr group attributes (v0.4 or v0.5) with levels added.

    Parameters
    ----------
    attrs : dict
        Group attributes with a ``multiscales`` entry listing ``base_path``.
    base_path : str
        Dataset path of the level the new ones were computed from.
    new_paths : sequence of str
        Dataset paths of the new levels, finest first; an existing entry with the same
        path is replaced (so a re-run does not duplicate levels).
    factors_from_base_zyx : sequence of (3,) ints
        Cumulative factor (z, y, x) of each new level relative to ``base_path``.

    Returns
    -------
    dict
        New attributes; ``attrs`` is not modified.
    """
    out = copy.deepcopy(attrs)
    ms = _multiscale_entry(out)
    datasets = ms.get("datasets") or []
    by_path = {str(d.get("path")): d for d in datasets}
    if base_path not in by_path:
        raise MetadataError(
            f"multiscales lists no dataset {base_path!r} (has {sorted(by_path)})"
        )
    axes = ms.get("axes") or [{"name": n, "type": "space"} for n in ("z", "y", "x")]
    names = [a["name"] if isinstance(a, dict) else a for a in axes]
    ndim = len(names)
    space = [i for i, n in enumerate(names) if str(n).lower() in ("z", "y", "x")]
    if len(space) != 3:
        raise MetadataError(f"multiscales axes {names} do not have z, y and x")
    s_base, t_base = _scale_translation(by_path[base_path], ndim)
    for path, f in zip(new_paths, factors_from_base_zyx, strict=True):
        s_sp, t_sp = level_scale_translation(
            [s_base[i] for i in space], [t_base[i] for i in space], f
        )
        scale, trans = list(s_base), list(t_base)
        for k, i in enumerate(space):
            scale[i], trans[i] = s_sp[k], t_sp[k]
        entry = {
            "path": str(path),
            "coordinateTransformations": [
                {"type": "scale", "scale": scale},
                {"type": "translation", "translation": trans},
            ],
        }
        if str(path) in by_path:
            datasets[datasets.index(by_path[str(path)])] = entry
        else:
            datasets.append(entry)
        by_path[str(path)] = entry
    ms["datasets"] = datasets
    return out


def add_levels_to_group(
    group: zarr.Group,
    base_path: str,
    new_paths: Sequence[str],
    factors_from_base_zyx: Sequence[Sequence[int]],
) -> None:
    """Update a zarr group's NGFF metadata in place (see :func:`add_levels_to_attrs`).

    The whole attribute document is rewritten in one store write (zarr writes
    ``.zattrs`` / ``zarr.json`` as one object).
    """
    new = add_levels_to_attrs(group.attrs.asdict(), base_path, new_paths, factors_from_base_zyx)
    group.attrs.put(new)
