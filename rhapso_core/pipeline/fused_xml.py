"""A BigStitcher XML whose views are fused images, so the fusion opens like any dataset.

Each fused OME-Zarr becomes one view setup of timepoint ``timepoint``, read through a
``bdv.multimg.zarr`` image loader. Its registration is
``[Translation to fusion origin, calibration]`` so that
``view_to_world(fused voxel (i, j, k)) = origin_xyz + voxel_size_xyz * (i, j, k)``:
exactly the fusion grid (``rhapso_fusion_grid``, world units of the input XML), so the
fused image overlays the input views in BigStitcher and in every stage here.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from collections.abc import Sequence

import numpy as np
import zarr

from rhapso_core import transforms as tf
from rhapso_core.io import ImageIOError, open_image
from rhapso_core.pipeline.dataset import DatasetError
from rhapso_core.pipeline.fuse import GRID_ATTR
from rhapso_core.spimdata import SpimData, ViewSetup, ViewTransform, ZarrImageLoader, make_spimdata, save_xml
from rhapso_core.spimdata import uris

__all__ = ["FusedXmlError", "ORIGIN_TRANSFORM_NAME", "CALIBRATION_NAME", "fused_grid", "write_fused_xml"]

ORIGIN_TRANSFORM_NAME = "Translation to fusion origin"
CALIBRATION_NAME = "calibration"

# NGFF unit names -> the short forms BigStitcher writes in <voxelSize><unit>.
_XML_UNIT = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "meter": "m", "angstrom": "Å"}
# Tolerance (relative) for the NGFF metadata agreeing with the recorded grid: both are
# written from the same float64 numbers, so only JSON round-off separates them.
_AGREE_RTOL = 1e-9


class FusedXmlError(DatasetError):
    """A fused image the XML cannot describe (message names the image)."""


def fused_grid(fused_uri: str, storage_options: dict | None = None) -> dict:
    """The fused image's grid in world units of the dataset it was fused from.

    Parameters
    ----------
    fused_uri : str
        OME-Zarr image group written by :func:`rhapso_core.pipeline.fuse.plan_fusion`.
    storage_options : dict, optional
        fsspec / s3fs options.

    Returns
    -------
    dict
        ``origin_xyz`` (world of voxel 0's centre), ``voxel_size_xyz`` (world units),
        ``shape_zyx`` (voxels), ``physical_voxel_size_xyz`` (NGFF scale), ``unit``
        (NGFF unit or None) and ``from_grid_attr`` (False when the group has no
        ``rhapso_fusion_grid``: world is then the NGFF physical frame itself).

    Raises
    ------
    FusedXmlError
        The image does not open, or its NGFF scale / translation disagree with its
        ``rhapso_fusion_grid`` record (not one world-unit conversion on all axes).
    """
    try:
        img = open_image(fused_uri, kind="ome-zarr", storage_options=storage_options)
        attrs = zarr.open_group(fused_uri, mode="r", storage_options=storage_options).attrs.asdict()
    except (ImageIOError, FileNotFoundError, ValueError) as exc:
        raise FusedXmlError(f"{fused_uri}: cannot open the fused image ({exc})") from None
    shape_zyx = tuple(int(n) for n in img.shape)
    phys_vox = np.asarray(img.voxel_size_zyx[::-1], np.float64)
    phys_org = np.asarray(img.origin_zyx[::-1], np.float64)
    rec = attrs.get(GRID_ATTR)
    if rec is None:
        origin, vox, from_attr = phys_org, phys_vox, False
    else:
        try:
            origin = np.asarray(rec["origin_xyz"], np.float64).reshape(3)
            vox = np.asarray(rec["voxel_size_xyz"], np.float64).reshape(3)
            rec_shape = tuple(int(n) for n in rec["shape_zyx"])
        except (KeyError, TypeError, ValueError):
            raise FusedXmlError(f"{fused_uri}: attribute {GRID_ATTR} is malformed") from None
        if rec_shape != shape_zyx:
            raise FusedXmlError(
                f"{fused_uri}: {GRID_ATTR} shape (z y x) {rec_shape} differs from level 0 {shape_zyx}"
            )
        if np.any(vox <= 0):
            raise FusedXmlError(f"{fused_uri}: {GRID_ATTR} voxel_size_xyz {vox.tolist()} is not positive")
        per_world = phys_vox / vox
        if not np.allclose(per_world, per_world[0], rtol=_AGREE_RTOL, atol=0) or not np.allclose(
            phys_org, origin * per_world[0], rtol=_AGREE_RTOL, atol=_AGREE_RTOL * np.abs(phys_vox).max()
        ):
            raise FusedXmlError(
                f"{fused_uri}: NGFF scale {phys_vox.tolist()} / translation {phys_org.tolist()} (x y z) "
                f"disagree with {GRID_ATTR} voxel_size_xyz {vox.tolist()} / origin_xyz {origin.tolist()}"
            )
        from_attr = True
    return {
        "origin_xyz": tuple(float(v) for v in origin),
        "voxel_size_xyz": tuple(float(v) for v in vox),
        "shape_zyx": shape_zyx,
        "physical_voxel_size_xyz": tuple(float(v) for v in phys_vox),
        "unit": img.unit,
        "from_grid_attr": from_attr,
    }


def _split_container(fused_uris: Sequence[str]) -> tuple[str, list[str]]:
    """Common parent folder (the loader's root) and each image's path below it."""
    norm = [uris.normalize(u.rstrip("/")) for u in fused_uris]
    if all(uris.is_url(u) for u in norm):
        schemes = {u.split("://", 1)[0] for u in norm}
        if len(schemes) != 1:
            raise FusedXmlError(f"fused images on different storage systems: {sorted(schemes)}")
        scheme = schemes.pop()
        rests = [u.split("://", 1)[1] for u in norm]
        root = posixpath.dirname(rests[0]) if len(rests) == 1 else posixpath.commonpath(rests)
        if len(rests) > 1 and root in rests:
            root = posixpath.dirname(root)
        return f"{scheme}://{root}", [posixpath.relpath(r, root) for r in rests]
    if any(uris.is_url(u) for u in norm):
        raise FusedXmlError("fused images mix local paths and URIs; keep them on one storage system")
    root = os.path.dirname(norm[0]) if len(norm) == 1 else os.path.commonpath(norm)
    if len(norm) > 1 and root in norm:
        root = os.path.dirname(root)
    return root, [os.path.relpath(u, root).replace(os.sep, "/") for u in norm]


def _loader(root: str, paths: list[str], timepoint: int, out_xml: str) -> ZarrImageLoader:
    views = {(timepoint, i): p for i, p in enumerate(paths)}
    if uris.is_url(root):
        scheme, rest = root.split("://", 1)
        if scheme == "s3":
            # BigStitcher's S3 convention: <s3bucket> plus the key prefix as an absolute root.
            bucket, _, prefix = rest.partition("/")
            return ZarrImageLoader.from_paths(prefix, views, root_type="absolute", s3bucket=bucket)
        return ZarrImageLoader.from_paths(root, views, root_type="absolute")
    xml_dir = uris.parent(uris.normalize(out_xml))
    if uris.is_url(xml_dir):
        return ZarrImageLoader.from_paths(root, views, root_type="absolute")
    rel = uris.relative_to(root, xml_dir)
    # Relative (portable with the XML) when the images sit in the XML's folder tree.
    if rel is not None and not rel.startswith(".."):
        return ZarrImageLoader.from_paths(rel.replace(os.sep, "/"), views, root_type="relative")
    return ZarrImageLoader.from_paths(root, views, root_type="absolute")


def _tc_layout(fused_uri: str, storage_options) -> dict | None:
    """Timepoints, channels and channel names of a t, c, z, y, x fusion output (None for a 3-D image)."""
    try:
        group = zarr.open_group(fused_uri, mode="r", storage_options=storage_options)
        attrs = group.attrs.asdict()
    except Exception:
        return None
    rec = attrs.get(GRID_ATTR) or {}
    if "channels" not in rec or "timepoints" not in rec:
        return None
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if not ms or len(ms[0].get("axes") or []) != 5:
        return None
    return {"timepoints": [int(t) for t in rec["timepoints"]], "channels": [int(c) for c in rec["channels"]],
            "names": list(rec.get("channel_names") or [f"channel {c}" for c in rec["channels"]])}


def _write_tc_xml(fused_uri, g, root, path, layout, out_xml, storage_options) -> SpimData:
    """One setup per fused channel (setup id = its index on the c axis), one view per timepoint,
    read through BigStitcher 2.x zarr zgroups whose ``indicies`` pick (channel, timepoint)."""
    unit = g["unit"]
    setups, registrations, groups = [], {}, {}
    for ci, (channel, name) in enumerate(zip(layout["channels"], layout["names"])):
        setups.append(ViewSetup(
            id=ci, name=str(name), size=tuple(int(n) for n in g["shape_zyx"][::-1]),  # type: ignore[arg-type]
            voxel_size=g["physical_voxel_size_xyz"], voxel_unit=_XML_UNIT.get(unit, unit) if unit else "pixel",
            attributes={"illumination": 0, "channel": channel, "tile": 0, "angle": 0},
        ))
        for ti, tp in enumerate(layout["timepoints"]):
            registrations[(tp, ci)] = (
                ViewTransform(ORIGIN_TRANSFORM_NAME, tf.translation(g["origin_xyz"])),
                ViewTransform(CALIBRATION_NAME, tf.scaling(g["voxel_size_xyz"])),
            )
            groups[(tp, ci)] = (path, (ci, ti))
    plain = _loader(root, [path], layout["timepoints"][0], out_xml)
    loader = ZarrImageLoader.bigstitcher2(plain.root, groups, root_type=plain.root_type)
    if plain.s3bucket:
        loader = dataclasses.replace(loader, s3bucket=plain.s3bucket)
    sd = make_spimdata(
        setups=setups, registrations=registrations, image_loader=loader, timepoints=tuple(layout["timepoints"]),
        base_path=".", attribute_names={"channel": {c: str(n) for c, n in zip(layout["channels"], layout["names"])}},
        source_uri=out_xml,
    )
    return save_xml(sd, out_xml, storage_options)


def write_fused_xml(
    fused_uri: str | Sequence[str],
    out_xml: str,
    *,
    names: Sequence[str] | None = None,
    channels: Sequence[int] | None = None,
    timepoint: int = 0,
    storage_options: dict | None = None,
) -> SpimData:
    """Write a BigStitcher XML with one view setup per fused OME-Zarr image.

    Parameters
    ----------
    fused_uri : str or sequence of str
        Fused image group(s) (local paths or URIs on one storage system), as written
        by :func:`rhapso_core.pipeline.fuse.plan_fusion` / ``fuse_unit`` /
        ``build_levels``. Setup ``i`` is the ``i``-th image.
    out_xml : str
        Where to write the XML (local path or URI); written atomically.
    names : sequence of str, optional
        Setup names; default: each image's folder name without ``.zarr`` / ``.ome.zarr``.
    channels : sequence of int, optional
        Channel id of each setup (e.g. the channel that was fused); default ``0, 1, ...``.
    timepoint : int, default 0
        Timepoint id of every view.
    storage_options : dict, optional
        fsspec / s3fs options for reading the images and writing the XML.

    A single fusion output with axes t, c, z, y, x (what :func:`plan_fusion` writes) gets
    one setup per channel (setup id = the channel's index on the c axis, ``channel``
    attribute and name from the fused XML) and one view per timepoint, read through
    BigStitcher 2.x zarr zgroups (``indicies`` = channel index, timepoint index).

    Returns
    -------
    SpimData
        The written document (``source_uri`` = ``out_xml``). Each setup's ``size``
        is the fused shape (x y z), its ``voxelSize`` the NGFF level-0 scale and unit;
        its registration maps fused voxel ``(i, j, k)`` to world
        ``origin_xyz + voxel_size_xyz * (i, j, k)`` (the ``rhapso_fusion_grid``
        record, world units of the XML that was fused). Images without that
        record fall back to their NGFF scale and translation (world = physical units).

    Raises
    ------
    FusedXmlError
        An image does not open or its metadata disagree; ``names`` / ``channels``
        have the wrong length.
    """
    uri_list = [fused_uri] if isinstance(fused_uri, (str, os.PathLike)) else list(fused_uri)
    uri_list = [os.fspath(u) for u in uri_list]
    if not uri_list:
        raise FusedXmlError(f"{out_xml}: no fused image given")
    for label, seq in (("names", names), ("channels", channels)):
        if seq is not None and len(seq) != len(uri_list):
            raise FusedXmlError(f"{out_xml}: {label} has {len(seq)} entries for {len(uri_list)} fused images")
    grids = [fused_grid(u, storage_options) for u in uri_list]
    root, paths = _split_container(uri_list)
    if len(uri_list) == 1 and names is None and channels is None:
        layout = _tc_layout(uri_list[0], storage_options)
        if layout is not None:
            return _write_tc_xml(uri_list[0], grids[0], root, paths[0], layout, out_xml, storage_options)

    setups, registrations = [], {}
    for i, (u, g) in enumerate(zip(uri_list, grids)):
        base = posixpath.basename(u.rstrip("/"))
        for ext in (".ome.zarr", ".zarr"):
            if base.endswith(ext) and len(base) > len(ext):
                base = base[: -len(ext)]
                break
        unit = g["unit"]
        setups.append(ViewSetup(
            id=i,
            name=names[i] if names is not None else base,
            size=tuple(int(n) for n in g["shape_zyx"][::-1]),  # type: ignore[arg-type]
            voxel_size=g["physical_voxel_size_xyz"],
            voxel_unit=_XML_UNIT.get(unit, unit) if unit else "pixel",
            attributes={"illumination": 0, "channel": int(channels[i]) if channels is not None else i,
                        "tile": 0, "angle": 0},
        ))
        registrations[(timepoint, i)] = (
            ViewTransform(ORIGIN_TRANSFORM_NAME, tf.translation(g["origin_xyz"])),
            ViewTransform(CALIBRATION_NAME, tf.scaling(g["voxel_size_xyz"])),
        )
    sd = make_spimdata(
        setups=setups,
        registrations=registrations,
        image_loader=_loader(root, paths, timepoint, out_xml),
        timepoints=(timepoint,),
        base_path=".",
        attribute_names={"channel": {s.attributes["channel"]: s.name or str(s.id) for s in setups}}
        if names is not None else None,
        source_uri=out_xml,
    )
    return save_xml(sd, out_xml, storage_options)
