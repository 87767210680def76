"""A dataset as the stages see it: its XML, its views' pixels and their world boxes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from rhapso_core.image_source import Box, ImageSource, clip_box
from rhapso_core.io import fs_for, open_image
from rhapso_core.overlap import overlap_box, world_box_in_view
from rhapso_core.spimdata import ImageLocation, SpimData, ViewId, load_xml


class DatasetError(ValueError):
    """A dataset the stages cannot use (message names the XML and the view)."""


def xml_digest(xml_uri: str, storage_options: dict | None = None) -> str:
    """SHA-256 of the XML's bytes: what cache keys use to say 'the same input'."""
    fs, path = fs_for(xml_uri, storage_options)
    with fs.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@lru_cache(maxsize=8)
def _load_cached(xml_uri: str, digest: str) -> SpimData:
    return load_xml(xml_uri)


def load_dataset(xml_uri: str, storage_options: dict | None = None) -> SpimData:
    """Load an XML; within one worker process the parsed model is reused while the file is unchanged."""
    if storage_options:
        return load_xml(xml_uri, storage_options=storage_options)
    return _load_cached(xml_uri, xml_digest(xml_uri))


class CroppedSource:
    """A split view: the box ``[offset, offset + size)`` (x y z) of its parent's pixels.

    Only pyramid levels whose factors divide the offset are exposed, so a crop
    never needs resampling.
    """

    def __init__(self, parent: ImageSource, offset_xyz, size_xyz):
        self.parent = parent
        self.offset_zyx = tuple(int(v) for v in offset_xyz[::-1])
        self.size_zyx = tuple(int(v) for v in size_xyz[::-1])
        self._levels = [
            lvl
            for lvl in range(parent.n_levels)
            if all(o % f == 0 for o, f in zip(self.offset_zyx, parent.level_factors(lvl)))
        ]

    @property
    def dtype(self):
        return self.parent.dtype

    @property
    def n_levels(self) -> int:
        return len(self._levels)

    def level_factors(self, level: int):
        return self.parent.level_factors(self._levels[level])

    def level_shape(self, level: int):
        f = self.level_factors(level)
        return tuple(-(-n // k) for n, k in zip(self.size_zyx, f))

    def read(self, box: Box, level: int = 0) -> np.ndarray:
        box = clip_box(box, self.level_shape(level))
        f = self.level_factors(level)
        shifted = tuple((a + o // k, b + o // k) for (a, b), o, k in zip(box, self.offset_zyx, f))
        return self.parent.read(shifted, self._levels[level])


def open_location(loc: ImageLocation, storage_options: dict | None = None, channel: int | None = None) -> ImageSource:
    if loc.flatfield is not None:
        from dataclasses import replace

        from rhapso_core.io.flatfield_source import FlatFieldCorrectedSource, read_field_image

        ff = loc.flatfield
        inner = open_location(replace(loc, flatfield=None), storage_options, channel)
        return FlatFieldCorrectedSource(
            inner,
            None if ff.bright is None else read_field_image(ff.bright, storage_options),
            None if ff.dark is None else read_field_image(ff.dark, storage_options),
            name=f"view (timepoint {ff.timepoint}, setup {ff.setup})",
        )
    if loc.parent is not None:
        inner = open_location(loc.inner, storage_options, channel) if loc.inner is not None else None
        if inner is None:
            raise DatasetError(f"split view of {loc.parent} has no parent location")
        return CroppedSource(inner, loc.offset_xyz, loc.size_xyz)
    kind = {"ome-zarr": "ome-zarr", "tiff": "tiff", "n5": "n5", "hdf5": "hdf5"}.get(loc.kind, loc.kind)
    if kind == "tiff":
        files = list(loc.files)
        uri = files[0] if len(files) == 1 else loc.uri
        return open_image(uri, kind="tiff", files=files if len(files) > 1 else None,
                          storage_options=storage_options, channel=loc.channel)
    timepoint = None
    if loc.indices:  # BigStitcher 2.x zarr: (channel, timepoint) of a 4D/5D image
        channel = loc.indices[0]
        timepoint = loc.indices[1] if len(loc.indices) > 1 else None
    return open_image(loc.uri, kind=kind, dataset=loc.dataset or None,
                      storage_options=storage_options, channel=channel, timepoint=timepoint)


def supported_dtype(dtype) -> bool:
    """Pixel types the stages compute on: integers (signed or not) and float32 / float64.

    float16 has no kernels in NumPy's fast paths or numba; complex, bool and
    structured types are not intensities.
    """
    dt = np.dtype(dtype)
    return dt.kind in "iu" or dt in (np.dtype(np.float32), np.dtype(np.float64))


def open_view(sd: SpimData, view: ViewId, storage_options: dict | None = None) -> ImageSource:
    """The view's pixels as a lazy multiscale :class:`ImageSource` (z, y, x)."""
    try:
        loc = sd.image_location(view)
    except Exception as exc:  # the XML model's error already names file and element
        raise DatasetError(str(exc)) from None
    source = open_location(loc, storage_options)
    if not supported_dtype(source.dtype):
        raise DatasetError(
            f"{sd.source_uri}: view (timepoint {view[0]}, setup {view[1]}): pixel type {np.dtype(source.dtype)} "
            "is not supported (use an integer type, float32 or float64)"
        )
    return source


def view_geometry(sd: SpimData, views=None) -> dict[ViewId, tuple[np.ndarray, tuple[int, int, int]]]:
    """``{view: (view_to_world 4x4, size_xyz)}`` under the current registrations."""
    out = {}
    for v in views if views is not None else sd.views():
        setup = sd.setup_of(v)
        if setup.size is None:
            raise DatasetError(f"{sd.source_uri}: <ViewSetup id={v[1]}> has no <size>")
        out[v] = (sd.view_to_world(v), tuple(int(s) for s in setup.size))
    return out


def overlap_boxes_in_view(
    geometry: Mapping[ViewId, tuple[np.ndarray, Any]], view: ViewId
) -> list[np.ndarray]:
    """Boxes ``(2, 3)`` in ``view``'s voxel frame (x y z) where it overlaps other views of its timepoint."""
    affine, size = geometry[view]
    out = []
    for other, (a2, s2) in sorted(geometry.items()):
        if other == view or other[0] != view[0]:
            continue
        box = overlap_box(affine, size, a2, s2)
        in_view = None if box is None else world_box_in_view(affine, size, *box)
        if in_view is not None:
            out.append(in_view)
    return out
