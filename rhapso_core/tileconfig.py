"""Fiji Grid/Collection stitching's ``TileConfiguration.txt``: read into a BigStitcher XML, write back.

The format (Fiji's ``Stitching_Pairwise`` / ``Grid/Collection stitching`` plugins)::

    # Define the number of dimensions we are working on
    dim = 2

    # Define the image coordinates
    tile_1.tif; ; (0.0, 0.0)
    tile_2.tif; ; (921.6, 0.0)

One line per image: file name (relative to the configuration's folder), an optional
series, and the position of the image's first pixel in pixels, ``(x, y)`` for ``dim = 2``
or ``(x, y, z)`` for ``dim = 3``. Lines starting with ``#`` and blank lines are comments.

:func:`import_tileconfig` builds a SpimData (loader ``spimreconstruction.filemap2``, one
TIFF per view) whose registration is BigStitcher's pair ``[Translation to Regular Grid,
calibration]``; world units are pixels of the finest axis. :func:`export_tileconfig`
writes the registered position of every view's first pixel back in the same format
(Fiji's ``TileConfiguration.registered.txt``), in pixels.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhapso_core import transforms as tf

__all__ = ["TileConfigError", "TileEntry", "TileConfiguration", "read_tileconfig", "write_tileconfig",
           "import_tileconfig", "export_tileconfig"]

_DIM = re.compile(r"^\s*dim\s*=\s*(\d+)\s*$", re.IGNORECASE)
_COORDS = re.compile(r"^\(\s*([^)]*)\)\s*$")


class TileConfigError(ValueError):
    """A malformed TileConfiguration file (the message names the file and line)."""


@dataclass(frozen=True)
class TileEntry:
    file: str
    series: int | None
    position: tuple[float, ...]  # x, y[, z] pixels


@dataclass(frozen=True)
class TileConfiguration:
    dim: int
    entries: tuple[TileEntry, ...]


def read_tileconfig(path: str | os.PathLike) -> TileConfiguration:
    """Parse a ``TileConfiguration.txt``; raises :class:`TileConfigError` naming the line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise TileConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    dim = None
    entries = []
    for i, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _DIM.match(line)
        if m:
            dim = int(m.group(1))
            if dim not in (2, 3):
                raise TileConfigError(f"{path}:{i}: dim = {dim}; only 2 and 3 are supported")
            continue
        parts = [p.strip() for p in line.split(";")]
        if len(parts) != 3:
            raise TileConfigError(f"{path}:{i}: expected 'file; series; (x, y[, z])', got {raw!r}")
        if dim is None:
            raise TileConfigError(f"{path}:{i}: image line before the 'dim = 2|3' line")
        c = _COORDS.match(parts[2])
        try:
            pos = tuple(float(v) for v in c.group(1).split(",")) if c else ()
        except ValueError:
            pos = ()
        if len(pos) != dim or not all(np.isfinite(pos)):
            raise TileConfigError(f"{path}:{i}: position {parts[2]!r} is not {dim} numbers in parentheses")
        if not parts[0]:
            raise TileConfigError(f"{path}:{i}: empty file name")
        try:
            series = int(parts[1]) if parts[1] else None
        except ValueError:
            raise TileConfigError(f"{path}:{i}: series {parts[1]!r} is not an integer") from None
        entries.append(TileEntry(parts[0], series, pos))
    if dim is None:
        raise TileConfigError(f"{path}: no 'dim = 2|3' line")
    if not entries:
        raise TileConfigError(f"{path}: no image lines")
    return TileConfiguration(dim, tuple(entries))


def write_tileconfig(path: str | os.PathLike, config: TileConfiguration) -> None:
    """Write ``config`` in Fiji's format, atomically."""
    path = Path(path)
    out = ["# Define the number of dimensions we are working on", f"dim = {config.dim}", "",
           "# Define the image coordinates"]
    for e in config.entries:
        pos = ", ".join(repr(float(v)) for v in e.position)
        out.append(f"{e.file}; {'' if e.series is None else e.series}; ({pos})")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(out) + "\n")
    os.replace(tmp, path)


def _image_shape_zyx(file: Path) -> tuple[int, int, int]:
    from rhapso_core.io import open_image

    if not file.is_file():
        raise TileConfigError(f"{file}: image file not found")
    img = open_image(str(file))
    return tuple(int(n) for n in img.level_shape(0))  # type: ignore[return-value]


def import_tileconfig(
    path: str | os.PathLike, out_xml: str | os.PathLike, voxel_size_xyz: Sequence[float] = (1.0, 1.0, 1.0),
    voxel_unit: str = "pixel",
) -> Path:
    """Write a BigStitcher XML for a TileConfiguration and its TIFF images.

    Parameters
    ----------
    path : path
        The ``TileConfiguration.txt``; image files are relative to its folder.
    out_xml : path
        The XML to write (refused if it exists); its loader refers to the images by
        paths relative to the XML's folder.
    voxel_size_xyz : three floats, default (1, 1, 1)
        Pixel size (x, y, z) in ``voxel_unit``; positions in the file are in pixels.
    voxel_unit : str, default "pixel"

    Returns
    -------
    Path of the written XML.
    """
    from rhapso_core.spimdata import FileMapImageLoader, FileMapping, ViewSetup, ViewTransform, make_spimdata, save_xml

    path = Path(path).resolve()
    out_xml = Path(out_xml).resolve()
    if out_xml.exists():
        raise FileExistsError(f"{out_xml}: output XML already exists")
    config = read_tileconfig(path)
    vox = np.asarray(voxel_size_xyz, dtype=np.float64)
    if vox.shape != (3,) or not np.all(vox > 0):
        raise TileConfigError(f"voxel_size_xyz must be three positive numbers, got {list(voxel_size_xyz)}")
    calib = tf.scaling(vox / vox.min())
    setups, regs, maps, names = [], {}, [], {}
    for s, e in enumerate(config.entries):
        file = (path.parent / e.file).resolve()
        nz, ny, nx = _image_shape_zyx(file)
        pos_px = np.zeros(3)
        pos_px[: config.dim] = e.position
        # Positions are in pixels of each axis; the world frame is in pixels of the finest axis.
        stage = pos_px * vox / vox.min()
        setups.append(ViewSetup(id=s, name=Path(e.file).stem, size=(nx, ny, nz), voxel_size=tuple(vox),
                                voxel_unit=voxel_unit,
                                attributes={"illumination": 0, "channel": 0, "tile": s, "angle": 0}))
        regs[(0, s)] = (ViewTransform("Translation to Regular Grid", tf.translation(stage)),
                        ViewTransform("calibration", calib))
        maps.append(FileMapping(timepoint=0, setup=s, file=os.path.relpath(file, out_xml.parent),
                                series=e.series or 0))
        names[s] = Path(e.file).stem
    sd = make_spimdata(setups=setups, registrations=regs, image_loader=FileMapImageLoader(files=tuple(maps)),
                       timepoints=(0,), base_path=".", attribute_names={"tile": names})
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    save_xml(sd, str(out_xml))
    return out_xml


def export_tileconfig(xml: str | os.PathLike, out: str | os.PathLike, dim: int | None = None) -> TileConfiguration:
    """Write the registered position of every view's first pixel as a ``TileConfiguration``.

    Positions are in pixels of each view's own axes (world / calibration), as Fiji writes
    ``TileConfiguration.registered.txt``. A rotation or affine part of a registration has
    no place in the format: only where the first pixel lands is written. ``dim``: 2 or
    3; default 2 when every view is a single plane.
    """
    from rhapso_core.spimdata import FileMapImageLoader, load_xml

    sd = load_xml(str(xml))
    views = sorted(sd.views())
    if dim is None:
        dim = 2 if all(int(sd.setup_of(v).size[2]) == 1 for v in views) else 3
    files = {}
    if isinstance(sd.image_loader, FileMapImageLoader):
        base = Path(xml).resolve().parent
        out_dir = Path(out).resolve().parent
        files = {m.view: (os.path.relpath(base / m.file, out_dir), m.series) for m in sd.image_loader.files}
    entries = []
    for v in views:
        setup = sd.setup_of(v)
        vox = np.asarray(setup.voxel_size or (1.0, 1.0, 1.0), dtype=np.float64)
        origin_world = tf.apply(sd.view_to_world(v), np.zeros((1, 3)))[0]
        pos = origin_world * vox.min() / vox
        name, series = files.get(v, (setup.name or f"setup{v[1]}", None))
        entries.append(TileEntry(name, series or None, tuple(float(x) for x in pos[:dim])))
    config = TileConfiguration(dim, tuple(entries))
    write_tileconfig(out, config)
    return config
