"""The same dataset in the layout the published Rhapso 0.4.5 reads (runs in this project's venv).

Rhapso 0.4.5 reads OME-Zarr tiles as 5-D ``(t, c, z, y, x)`` arrays whose group
name carries the channel (``..._ch_<c>.zarr``: it parses the channel from the
path and refuses a path without one), and it takes pyramid level ``k`` to be a
factor ``2**k`` on every axis. Our synthetic tiles are 3-D ``(z, y, x)`` with an
anisotropic pyramid, so the benchmark gives Rhapso a converted copy: the same
voxels (level 0 only, same chunking and compressor), 5-D, renamed, and an XML
identical to ours except for the ``zgroup`` paths. Conversion is not timed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import zarr

from rhapso_core.pipeline.dataset import load_dataset, open_view
from rhapso_core.spimdata import load_xml

__all__ = ["rhapso_copy", "rhapso_tile_name"]

LAYOUT_VERSION = 2  # levels 0 and 1


def rhapso_tile_name(path: str, channel: int = 0) -> str:
    """``tile_x_0000.zarr`` -> ``tile_x_0000_ch_0.zarr`` (Rhapso needs ``_ch_`` in the path)."""
    stem = path[:-5] if path.endswith(".zarr") else path
    return f"{stem}_ch_{channel}.zarr"


def _write_tile(dst: Path, data_zyx: np.ndarray, voxel_zyx, chunks_zyx) -> None:
    group = zarr.open_group(str(dst), mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
                 {"name": "z", "type": "space", "unit": "micrometer"},
                 {"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, *[float(v) * 2**k for v in voxel_zyx]]}]} for k in range(2)],
    }]
    nz, ny, nx = (n // 2 for n in data_zyx.shape)
    half = data_zyx[: 2 * nz, : 2 * ny, : 2 * nx].reshape(nz, 2, ny, 2, nx, 2).mean(axis=(1, 3, 5))
    for k, level in enumerate((data_zyx, np.rint(half).astype(data_zyx.dtype))):
        arr = group.create_array(str(k), shape=(1, 1, *level.shape), chunks=(1, 1, *chunks_zyx),
                                 dtype=level.dtype, chunk_key_encoding={"name": "v2", "separator": "/"})
        arr[0, 0] = level


def rhapso_copy(xml_path: str | Path, out_dir: str | Path) -> dict:
    """Write the Rhapso-readable copy of a ``bdv.multimg.zarr`` dataset into ``out_dir``.

    Returns ``{"xml": ..., "image_prefix": ...}``: Rhapso opens ``image_prefix + zgroup path``.
    Reuses an existing copy (marker file written last).
    """
    out = Path(out_dir).resolve()
    marker = out / "COPIED.json"
    if marker.exists() and json.loads(marker.read_text()).get("layout") == LAYOUT_VERSION:
        return json.loads(marker.read_text())
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    sd = load_dataset(str(xml_path))
    images = out / "images"
    for v in sd.views():
        src = open_view(sd, v)
        loc = sd.image_location(v)
        name = rhapso_tile_name(loc.dataset.rstrip("/"))
        setup = sd.setup_of(v)
        vox = setup.voxel_size or (1.0, 1.0, 1.0)
        data = np.asarray(src.read(tuple((0, n) for n in src.level_shape(0)), 0))
        _write_tile(images / name, data, tuple(vox[::-1]), tuple(min(c, n) for c, n in zip((64, 128, 128), data.shape)))
    # Same XML text, only the zgroup paths renamed (so registrations are byte-identical).
    text = Path(xml_path).read_text()
    text = re.sub(r"<path>([^<]+?)</path>", lambda m: f"<path>{rhapso_tile_name(m.group(1))}</path>", text)
    text = re.sub(r'(<zgroup[^>]*\spath=")([^"]+)(")', lambda m: m.group(1) + rhapso_tile_name(m.group(2)) + m.group(3),
                  text)
    xml_out = out / "dataset.xml"
    xml_out.write_text(text)
    load_xml(str(xml_out))  # still a valid dataset for our loader (the score reads Rhapso's output XML)
    info = {"xml": str(xml_out), "image_prefix": str(images) + "/", "layout": LAYOUT_VERSION}
    marker.write_text(json.dumps(info))
    return info
