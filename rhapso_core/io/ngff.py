"""OME-NGFF ``multiscales`` metadata (v0.4 and v0.5): build and parse.

Pure dict <-> record functions; no storage access. Geometry follows
:mod:`rhapso_core.image_source`: level ``l`` with cumulative factor ``f`` (per
axis) has ``scale = voxel_size * f`` and, because a level voxel is the mean of an
``f``-block whose centre sits at level-0 voxel ``f * i + (f - 1) / 2``,
``translation = origin + (f - 1) / 2 * voxel_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ImageIOError

__all__ = [
    "NgffMultiscale",
    "level_scale_translation",
    "build_multiscales_attrs",
    "parse_multiscales",
    "has_multiscales",
]

_SPACE_NAMES = ("z", "y", "x")


def level_scale_translation(
    voxel_size_zyx: Sequence[float], origin_zyx: Sequence[float], factors_zyx: Sequence[int]
) -> tuple[list[float], list[float]]:
    """NGFF ``scale`` and ``translation`` (z, y, x; physical units) of a level.

    Parameters
    ----------
    voxel_size_zyx : sequence of float
        Level-0 voxel size (physical unit per voxel).
    origin_zyx : sequence of float
        Physical position of level-0 voxel (0, 0, 0)'s centre.
    factors_zyx : sequence of int
        Cumulative downsampling factor of the level relative to level 0.
    """
    v = np.asarray(voxel_size_zyx, dtype=np.float64)
    o = np.asarray(origin_zyx, dtype=np.float64)
    f = np.asarray(factors_zyx, dtype=np.float64)
    return (v * f).tolist(), (o + (f - 1.0) / 2.0 * v).tolist()


def build_multiscales_attrs(
    *,
    version: str,
    paths: Sequence[str],
    voxel_size_zyx: Sequence[float],
    origin_zyx: Sequence[float],
    factors_zyx: Sequence[Sequence[int]],
    unit: str | None = "micrometer",
    name: str | None = None,
) -> dict[str, Any]:
    """Group attributes of a 3D (z, y, x) OME-Zarr image.

    Returns the full attribute dict: ``{"multiscales": [...]}`` for v0.4,
    ``{"ome": {"version": "0.5", "multiscales": [...]}}`` for v0.5.
    """
    if version not in ("0.4", "0.5"):
        raise ValueError(f"ngff_version must be '0.4' or '0.5', got {version!r}")
    axes = []
    for n in _SPACE_NAMES:
        ax: dict[str, Any] = {"name": n, "type": "space"}
        if unit:
            ax["unit"] = unit
        axes.append(ax)
    datasets = []
    for path, f in zip(paths, factors_zyx, strict=True):
        scale, translation = level_scale_translation(voxel_size_zyx, origin_zyx, f)
        datasets.append(
            {
                "path": str(path),
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation},
                ],
            }
        )
    ms: dict[str, Any] = {"axes": axes, "datasets": datasets}
    if name is not None:
        ms["name"] = name
    # Mean downsampling is what our writer does; tools show it to users.
    ms["type"] = "mean"
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **ms}]}
    return {"ome": {"version": "0.5", "multiscales": [ms]}}


def with_time_channel_axes(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes of :func:`build_multiscales_attrs` turned into a t, c, z, y, x image's
    (time and channel axes first, scale 1 and translation 0 on them)."""
    import copy

    out = copy.deepcopy(attrs)
    ms = out["multiscales"][0] if "multiscales" in out else out["ome"]["multiscales"][0]
    ms["axes"] = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + ms["axes"]
    for ds in ms["datasets"]:
        for t in ds["coordinateTransformations"]:
            key = t["type"]
            t[key] = ([1.0, 1.0] if key == "scale" else [0.0, 0.0]) + list(t[key])
    return out


@dataclass(frozen=True)
class NgffMultiscale:
    """The first ``multiscales`` entry of an image group, transforms resolved.

    ``scales`` / ``translations`` are per dataset, one number per array axis,
    with any multiscale-level (global) transform already folded in.
    """

    version: str
    name: str | None
    axes: list[dict[str, Any]]
    paths: list[str]
    scales: list[tuple[float, ...]]
    translations: list[tuple[float, ...]]

    @property
    def ndim(self) -> int:
        return len(self.axes)

    def spatial_indices(self) -> tuple[int | None, int, int]:
        """Array-axis indices of z, y, x (z is None for a 2D image)."""
        names = [a["name"].lower() for a in self.axes]
        space = [i for i, a in enumerate(self.axes) if a.get("type") == "space"]
        if all(n in names for n in ("y", "x")):
            z = names.index("z") if "z" in names else None
            return z, names.index("y"), names.index("x")
        if len(space) >= 3:
            return space[-3], space[-2], space[-1]
        if len(space) == 2:
            return None, space[0], space[1]
        raise ImageIOError(f"multiscales axes {names} have no two or three space axes")

    def axis_index(self, kind: str) -> int | None:
        """Index of the ``"time"`` or ``"channel"`` axis, if any."""
        short = {"time": "t", "channel": "c"}[kind]
        for i, a in enumerate(self.axes):
            if a.get("type") == kind or a["name"].lower() == short:
                return i
        return None

    def unit(self) -> str | None:
        z, y, x = self.spatial_indices()
        for i in (z, y, x):
            if i is not None and self.axes[i].get("unit"):
                return str(self.axes[i]["unit"])
        return None


def has_multiscales(attrs: dict[str, Any]) -> bool:
    ome = attrs.get("ome")
    return bool(attrs.get("multiscales")) or (isinstance(ome, dict) and bool(ome.get("multiscales")))


def _norm_axes(axes: Any, ndim: int) -> list[dict[str, Any]]:
    if axes is None:  # v0.1/0.2 had no axes: always t, c, z, y, x trimmed to ndim
        axes = ["t", "c", "z", "y", "x"][-ndim:]
    out = []
    for a in axes:
        if isinstance(a, str):  # v0.3 wrote plain names
            a = {"name": a}
        a = dict(a)
        n = str(a["name"]).lower()
        a.setdefault("type", {"t": "time", "c": "channel"}.get(n, "space" if n in ("z", "y", "x") else None))
        out.append(a)
    return out


def _resolve(transforms: list[dict[str, Any]] | None, ndim: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    scale = np.ones(ndim)
    trans = np.zeros(ndim)
    for t in transforms or []:
        kind = t.get("type")
        if kind == "identity":
            continue
        if kind == "scale" and "scale" in t:
            s = np.asarray(t["scale"], dtype=np.float64)
            if s.shape != (ndim,):
                raise ImageIOError(f"{where}: scale has {s.size} values for {ndim} axes")
            scale, trans = scale * s, trans * s
        elif kind == "translation" and "translation" in t:
            v = np.asarray(t["translation"], dtype=np.float64)
            if v.shape != (ndim,):
                raise ImageIOError(f"{where}: translation has {v.size} values for {ndim} axes")
            trans = trans + v
        else:
            raise ImageIOError(f"{where}: unsupported coordinateTransformation {t!r}")
    return scale, trans


def parse_multiscales(attrs: dict[str, Any], *, uri: str = "", ndim: int | None = None) -> NgffMultiscale:
    """Read the first ``multiscales`` entry of OME-Zarr group attributes.

    Parameters
    ----------
    attrs : dict
        Group attributes (``.zattrs`` content, or ``zarr.json``'s ``attributes``).
    uri : str
        Named in error messages.
    ndim : int, optional
        Array dimensionality, needed only for metadata without ``axes``.
    """
    if isinstance(attrs.get("ome"), dict) and attrs["ome"].get("multiscales"):
        version = str(attrs["ome"].get("version", "0.5"))
        ms = attrs["ome"]["multiscales"][0]
    elif attrs.get("multiscales"):
        ms = attrs["multiscales"][0]
        version = str(ms.get("version", "0.4"))
    else:
        raise ImageIOError(f"{uri}: no OME-NGFF 'multiscales' metadata")
    try:
        datasets = ms["datasets"]
        paths = [str(d["path"]) for d in datasets]
    except (KeyError, TypeError):
        raise ImageIOError(f"{uri}: multiscales entry has no datasets with paths") from None
    if not paths:
        raise ImageIOError(f"{uri}: multiscales entry lists no datasets")
    if ms.get("axes") is None and ndim is None:
        raise ImageIOError(f"{uri}: multiscales without axes needs the array rank")
    axes = _norm_axes(ms.get("axes"), ndim or 0)
    n = len(axes)
    g_scale, g_trans = _resolve(ms.get("coordinateTransformations"), n, f"{uri} multiscales")
    scales, translations = [], []
    for d in datasets:
        s, t = _resolve(d.get("coordinateTransformations"), n, f"{uri} dataset {d['path']!r}")
        # world = g_s * (s * i + t) + g_t
        scales.append(tuple((g_scale * s).tolist()))
        translations.append(tuple((g_scale * t + g_trans).tolist()))
    return NgffMultiscale(
        version=version, name=ms.get("name"), axes=axes, paths=paths, scales=scales, translations=translations
    )
