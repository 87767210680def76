"""Build a new SpimData in memory (synthetic datasets, the split tool, tests)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from . import uris
from .errors import SpimDataError
from .loaders import ImageLoader
from .model import NEW_SOURCE, AttributeGroup, Entity, InterestPointsFile, SpimData, Timepoints, ViewId, ViewSetup, ViewTransform
from .xml_read import check_registrations
from .xml_write import FRESH_RAW

__all__ = ["make_spimdata", "STANDARD_ATTRIBUTES"]

STANDARD_ATTRIBUTES = ("illumination", "channel", "tile", "angle")


def _transform(v: ViewId, t: ViewTransform | tuple[str, np.ndarray]) -> ViewTransform:
    if isinstance(t, ViewTransform):
        return t
    if isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str):
        return ViewTransform(t[0], t[1])
    raise SpimDataError(
        f"{NEW_SOURCE}: <ViewRegistration timepoint={v[0]} setup={v[1]}>: "
        "each transform must be a ViewTransform or a (name, 4x4 affine) pair"
    )


def make_spimdata(
    *,
    setups: Iterable[ViewSetup],
    registrations: Mapping[ViewId, Sequence[ViewTransform | tuple[str, np.ndarray]]],
    image_loader: ImageLoader | None,
    timepoints: Iterable[int] | Timepoints = (0,),
    base_path: str = ".",
    missing_views: Iterable[ViewId] = (),
    interest_points: Iterable[InterestPointsFile] = (),
    attribute_names: Mapping[str, Mapping[int, str]] | None = None,
    source_uri: str | os.PathLike | None = None,
) -> SpimData:
    """A new SpimData with BigStitcher's full layout.

    Parameters
    ----------
    setups : iterable of ViewSetup
        Each with ``id`` and ``size`` (x y z voxels); ``voxel_size`` (x y z) and
        ``voxel_unit`` recommended. Missing standard attributes (illumination,
        channel, tile, angle) are set to 0, as BigStitcher expects all four.
    registrations : mapping (timepoint, setup) -> sequence of transforms
        For every view, its transforms in XML order (first listed applied last);
        each a :class:`ViewTransform` or a ``(name, 4x4 affine)`` pair.
    image_loader : ImageLoader or None
        Where pixels live (e.g. ``ZarrImageLoader.from_paths(...)``).
    timepoints : iterable of int or Timepoints, default (0,)
        Consecutive ids become a ``range``, others a ``list``.
    base_path : str, default "."
        ``<BasePath>``; relative paths are relative to the XML's folder (type
        "relative"), absolute paths and URIs get type "absolute".
    missing_views : iterable of ViewId
    interest_points : iterable of InterestPointsFile
    attribute_names : mapping, optional
        ``{"tile": {0: "tile_x0_y0", ...}, "channel": {...}}``; default names are the ids.
    source_uri : str or path-like, optional
        Where the XML will live; needed to resolve a relative base path before saving.

    Raises
    ------
    SpimDataError
        Duplicate setup ids, a setup without a size, a registration for an unknown
        view, or a non-missing view without a registration.
    """
    names = attribute_names or {}
    sd_setups: dict[int, ViewSetup] = {}
    for s in setups:
        if s.id in sd_setups:
            raise SpimDataError(f"{NEW_SOURCE}: <ViewSetups>: duplicate ViewSetup id {s.id}")
        if s.size is None:
            raise SpimDataError(f"{NEW_SOURCE}: <ViewSetup id={s.id}>: missing <size>")
        attrs = {k: int(s.attributes.get(k, 0)) for k in STANDARD_ATTRIBUTES}
        attrs.update({k: int(v) for k, v in s.attributes.items() if k not in attrs})
        sd_setups[s.id] = ViewSetup(
            id=int(s.id),
            name=s.name if s.name is not None else str(s.id),
            size=tuple(int(v) for v in s.size),  # type: ignore[arg-type]
            voxel_size=None if s.voxel_size is None else tuple(float(v) for v in s.voxel_size),  # type: ignore[arg-type]
            voxel_unit=s.voxel_unit,
            attributes=attrs,
        )

    kinds: list[str] = []
    for s in sd_setups.values():
        kinds += [k for k in s.attributes if k not in kinds]
    groups = []
    for k in kinds:
        ids = sorted({s.attributes[k] for s in sd_setups.values() if k in s.attributes})
        ents = tuple(Entity(k.capitalize(), i, names.get(k, {}).get(i, str(i))) for i in ids)
        groups.append(AttributeGroup(k, ents))

    tps = timepoints if isinstance(timepoints, Timepoints) else Timepoints.from_ids(timepoints)
    tp_ids = set(tps.ids)
    regs: dict[ViewId, tuple[ViewTransform, ...]] = {}
    for v, ts in sorted(registrations.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        v = (int(v[0]), int(v[1]))
        if v[1] not in sd_setups or v[0] not in tp_ids:
            raise SpimDataError(f"{NEW_SOURCE}: <ViewRegistration timepoint={v[0]} setup={v[1]}>: not a view of this dataset")
        regs[v] = tuple(_transform(v, t) for t in ts)

    text = str(base_path)
    absolute = uris.is_url(text) or os.path.isabs(text)
    sd = SpimData(
        base_path_text=text,
        base_path_type="absolute" if absolute else "relative",
        image_loader=image_loader,
        setups=sd_setups,
        attribute_groups=tuple(groups),
        timepoints=tps,
        missing=tuple(sorted((int(t), int(s)) for t, s in missing_views)),
        registrations=regs,
        interest_points=tuple(interest_points),
        source_uri=None if source_uri is None else uris.normalize(os.fspath(source_uri)),
        raw=dict(FRESH_RAW),
    )
    check_registrations(sd)
    return sd
