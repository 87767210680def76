"""Intensity coefficients where BigStitcher-Spark keeps them: an N5 container beside the XML.

Layout (mvr ``IntensityCorrection`` / ``CoefficientsIO``; Spark ``solve-intensities
--intensityN5Path P --intensityN5Group G --intensityN5Dataset intensity``): per view the
dataset ``{G}/setup{s}/timepoint{t}/intensity``, FLOAT64, N5 dimensions
``[cx, cy, cz, 2]`` with block size ``[cx, cy, cz, 1]`` (one block per coefficient:
``a`` then ``b``), raw compression, attribute ``"coefficients version": "1.0"``.
Cell ``(i, j, k)``'s map ``y = a x + b`` sits at the cell's centre and is interpolated
linearly in between (:mod:`rhapso_core.intensity.model`).

A flat field has no place in that layout: it is stored as the dataset attribute
``"rhapso_flatfield": {"degree", "coefficients", "dark"}``, which this service applies
and BigStitcher-Spark ignores (it then applies the per-cell maps alone).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np

from rhapso_core.intensity.model import FlatField, ViewIntensity
from rhapso_core.pointstore.n5 import N5Container

__all__ = ["DATASET", "FLATFIELD_ATTR", "coefficients_path", "default_container", "write_coefficients", "read_coefficients"]

DATASET = "intensity"
FLATFIELD_ATTR = "rhapso_flatfield"
CONTAINER_SUFFIX = "-intensity.n5"


def coefficients_path(setup: int, timepoint: int, group: str = "", dataset: str = DATASET) -> str:
    """``{group}/setup{s}/timepoint{t}/{dataset}`` (mvr ``getCoefficientsDatasetPath``)."""
    path = f"setup{int(setup)}/timepoint{int(timepoint)}/{dataset}"
    return f"{group.strip('/')}/{path}" if group.strip("/") else path


def default_container(xml_uri: str) -> str:
    """The container this service writes for an XML: ``<xml without .xml>-intensity.n5`` beside it.

    A run's staged XML (``.NAME.staged.xml``, published when the run completes) names its
    container after the published XML, so the two still match after publication.
    """
    from rhapso_core.pipeline.publish import published_name

    xml_uri = published_name(xml_uri)
    base = xml_uri[:-4] if xml_uri.lower().endswith(".xml") else xml_uri
    return base + CONTAINER_SUFFIX


def _write(container: N5Container, maps: Mapping[Hashable, ViewIntensity], group: str, root_attrs) -> None:
    container.create_root()
    if root_attrs:
        container.set_attributes("", dict(root_attrs))
    for (t, s), m in sorted(maps.items()):
        path = coefficients_path(s, t, group)
        cx, cy, cz = m.cells_xyz
        container.write_dataset(path, np.stack([m.a, m.b]).astype(np.float64), [cx, cy, cz, 1],
                                dimensions=[cx, cy, cz, 2], compression="raw")
        attrs = {"coefficients version": "1.0"}
        if m.flatfield is not None:
            attrs[FLATFIELD_ATTR] = m.flatfield.to_dict()
        container.set_attributes(path, attrs)


def write_coefficients(uri: str, maps: Mapping[tuple[int, int], ViewIntensity], group: str = "",
                       storage_options: dict | None = None, root_attrs: Mapping | None = None) -> None:
    """Write every view's map (keys ``(timepoint, setup)``), replacing the container.

    A local container is written beside its place and renamed into it, so a reader never
    sees half of one.
    """
    if "://" in uri and not uri.startswith("file://"):
        tmp = N5Container(uri, storage_options)
        tmp.remove("")
        _write(tmp, maps, group, root_attrs)
        return
    final = Path(uri.removeprefix("file://"))
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    _write(N5Container(str(staging)), maps, group, root_attrs)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def read_coefficients(uri: str, views, sizes: Mapping, group: str = "",
                      storage_options: dict | None = None) -> dict[tuple[int, int], ViewIntensity]:
    """Maps of those ``views`` (``(timepoint, setup)``) that have a coefficients dataset.

    ``sizes``: each view's size (x, y, z), which places the cells.
    """
    container = N5Container(uri, storage_options)
    out = {}
    for t, s in views:
        path = coefficients_path(s, t, group)
        if not container.exists(f"{path}/attributes.json"):
            continue
        arr = container.read_dataset(path)
        if arr.ndim != 4 or arr.shape[0] < 2:
            raise ValueError(f"{uri}/{path}: intensity coefficients must have N5 dimensions [cx, cy, cz, 2], "
                             f"got {list(arr.shape[::-1])}")
        attrs = container.get_attributes(path)
        ff = attrs.get(FLATFIELD_ATTR)
        out[(t, s)] = ViewIntensity(tuple(sizes[(t, s)]), arr[0], arr[1],
                                    None if ff is None else FlatField.from_dict(ff, f"{uri}/{path}"))
    return out
