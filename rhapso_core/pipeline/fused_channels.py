"""OME-NGFF ``omero`` channel metadata of a fused t, c, z, y, x image.

Channel labels are the XML's channel names (recorded at planning in the fusion grid
record); each display window spans the 0.1 and 99.9 percentiles of the channel's
non-zero voxels on the coarsest level (zero is the fusion's "no view here" value), so a
viewer opens every channel with a usable contrast. Written after the pyramid exists.
"""

from __future__ import annotations

import numpy as np
import zarr

__all__ = ["write_channel_metadata", "channel_windows"]

# Colours a viewer gives channels 0, 1, ... (green, magenta, cyan, yellow, red, blue).
_COLOURS = ("00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF")
_PERCENTILES = (0.1, 99.9)


def _ms(attrs: dict) -> tuple[dict, dict]:
    """(the dict holding ``multiscales``, its first entry)."""
    holder = attrs["ome"] if isinstance(attrs.get("ome"), dict) and "multiscales" in attrs["ome"] else attrs
    return holder, holder["multiscales"][0]


def channel_windows(array: zarr.Array) -> list[tuple[float, float]]:
    """(start, end) per channel of a t, c, z, y, x array (percentiles of non-zero voxels)."""
    out = []
    for c in range(array.shape[1]):
        data = np.asarray(array[:, c])
        nz = data[data != 0]
        if nz.size == 0:
            out.append((0.0, 1.0))
            continue
        lo, hi = np.percentile(nz.astype(np.float64), _PERCENTILES)
        out.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))
    return out


def write_channel_metadata(out_uri: str, storage_options=None) -> dict | None:
    """Add ``omero`` channels to a fused image; returns them (None for a 3-D image or one without
    the fusion grid record)."""
    from rhapso_core.pipeline.fuse import GRID_ATTR

    group = zarr.open_group(out_uri, mode="a", storage_options=storage_options)
    attrs = group.attrs.asdict()
    record = attrs.get(GRID_ATTR)
    if not record or "channels" not in record:
        return None
    holder, ms = _ms(attrs)
    coarsest = group[str(ms["datasets"][-1]["path"])]
    if coarsest.ndim != 5:
        return None
    dt = np.dtype(coarsest.dtype)
    lo_hi = (float(np.iinfo(dt).min), float(np.iinfo(dt).max)) if dt.kind in "iu" else None
    channels = []
    for c, (name, (start, end)) in enumerate(zip(record["channel_names"], channel_windows(coarsest))):
        mn, mx = lo_hi if lo_hi is not None else (min(start, 0.0), end)
        channels.append({
            "label": str(name), "color": _COLOURS[c % len(_COLOURS)], "active": True,
            "coefficient": 1.0, "family": "linear", "inverted": False,
            "window": {"start": start, "end": end, "min": mn, "max": mx},
        })
    holder["omero"] = {"channels": channels, "rdefs": {"defaultT": 0, "defaultZ": int(coarsest.shape[2]) // 2,
                                                       "model": "color" if len(channels) > 1 else "greyscale"}}
    group.attrs.put(attrs)
    return holder["omero"]
