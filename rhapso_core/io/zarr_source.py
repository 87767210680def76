"""Read OME-Zarr (NGFF v0.4 / v0.5) and plain zarr arrays as :class:`MultiscaleImage`."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr
from zarr.storage import FsspecStore, LocalStore

from ..image_source import Box
from .chunk_io import read_region, region_chunk_keys
from .errors import ImageIOError
from .multiscale import MultiscaleImage, factors_from_scales, factors_from_shapes
from .ngff import NgffMultiscale, has_multiscales, parse_multiscales
from .uri import is_s3, normalize_uri

__all__ = ["zarr_store", "open_zarr_image", "image_from_zarr"]


def zarr_store(uri: str, storage_options: dict[str, Any] | None = None, *, read_only: bool = True):
    """A zarr 3 store for a local path or ``s3://`` URL (s3fs, async)."""
    u = normalize_uri(uri)
    if is_s3(u):
        return FsspecStore.from_url(u, storage_options=dict(storage_options or {}), read_only=read_only)
    return LocalStore(u, read_only=read_only)


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


class ZarrLevel:
    """A (z, y, x) view of a zarr array of any rank: other axes pinned to an index.

    Parameters
    ----------
    array : zarr.Array
    pinned : sequence of (int or None)
        Per array axis: the index to take, or None for a space axis kept.
    zyx_axes : (int or None, int, int)
        Array axes holding z, y, x (z None for a 2D image, read as one plane).
    """

    def __init__(self, array: zarr.Array, pinned: Sequence[int | None], zyx_axes: tuple[int | None, int, int]):
        self.array = array
        self._pinned = list(pinned)
        self._zyx = zyx_axes
        z, y, x = zyx_axes
        sh = array.shape
        self._shape = (int(sh[z]) if z is not None else 1, int(sh[y]), int(sh[x]))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def read(self, box: Box) -> np.ndarray:
        index: list[Any] = list(self._pinned)
        z, y, x = self._zyx
        kept = []
        for ax, (lo, hi) in zip((z, y, x), box):
            if ax is None:  # 2D image: the only "plane" is z = 0
                continue
            index[ax] = slice(lo, hi)
            kept.append(ax)
        try:
            out = read_region(self.array, tuple(index))
        except (RuntimeError, ValueError, TypeError, zlib.error) as e:
            # A codec rejected a stored chunk (corrupt or truncated object): permanent,
            # so it must not look like a transient I/O error; name the array and box.
            if "reshape" in str(e):
                # The decoded bytes do not fill a chunk of the declared type: the metadata's
                # data type disagrees with what was written (or the chunk was truncated).
                raise ImageIOError(
                    f"{self.array.store_path}: the stored chunk data of box (z, y, x) {tuple(box)} do not match "
                    f"the array's declared data type {self.array.dtype} and chunk shape {tuple(self.array.chunks)} "
                    f"(wrong data type in the metadata, or a truncated chunk): {_one_line(e)}"
                ) from None
            raise ImageIOError(
                f"{self.array.store_path}: cannot decode the chunk data of box (z, y, x) {tuple(box)} "
                f"(corrupt chunk?): {_one_line(e)}"
            ) from None
        # After integer indexing the kept axes remain in array order; put them in z, y, x order.
        order = np.argsort(np.argsort(kept))
        out = np.transpose(out, order) if list(order) != sorted(order) else out
        if z is None:
            out = out[np.newaxis]
        return out

    def chunk_keys(self, box: Box) -> list[tuple[str, int]] | None:
        """``(key, decoded bytes)`` of the chunks :meth:`read` of ``box`` decodes (keys as
        :class:`~rhapso_core.io.chunk_reuse.ChunkReuse` names them); None if it goes through zarr."""
        index: list[Any] = list(self._pinned)
        for ax, (lo, hi) in zip(self._zyx, box):
            if ax is not None:
                index[ax] = slice(lo, hi)
        return region_chunk_keys(self.array, tuple(index))


def _pin(
    ndim: int,
    zyx: tuple[int | None, int, int],
    channel_axis: int | None,
    time_axis: int | None,
    channel: int | None,
    timepoint: int | None,
    shape: Sequence[int],
    uri: str,
) -> list[int | None]:
    pinned: list[int | None] = [0] * ndim
    for ax in zyx:
        if ax is not None:
            pinned[ax] = None
    for ax, want, what in ((channel_axis, channel, "channel"), (time_axis, timepoint, "timepoint")):
        if want is None:
            continue
        if ax is None:
            if want != 0:
                raise ImageIOError(f"{uri}: {what} {want} requested but the image has no {what} axis")
            continue
        if not 0 <= want < shape[ax]:
            raise ImageIOError(f"{uri}: {what} {want} out of range [0, {shape[ax]})")
        pinned[ax] = int(want)
    return pinned


def _default_axes(ndim: int, uri: str) -> tuple[tuple[int | None, int, int], int | None, int | None]:
    """(zyx axes, channel axis, time axis) for arrays without NGFF axes."""
    if ndim == 2:
        return (None, 0, 1), None, None
    if ndim == 3:
        return (0, 1, 2), None, None
    if ndim == 4:  # NGFF order without t: c, z, y, x
        return (1, 2, 3), 0, None
    if ndim == 5:
        return (2, 3, 4), 1, 0
    raise ImageIOError(f"{uri}: cannot read a {ndim}-dimensional array as a 3D image")


def _from_ngff(group: zarr.Group, ms: NgffMultiscale, uri: str, channel, timepoint) -> MultiscaleImage:
    arrays = []
    for p in ms.paths:
        try:
            a = group[p]
        except KeyError:
            raise ImageIOError(f"{uri}: multiscales dataset {p!r} does not exist") from None
        if not isinstance(a, zarr.Array):
            raise ImageIOError(f"{uri}: multiscales dataset {p!r} is not an array")
        if a.ndim != ms.ndim:
            raise ImageIOError(f"{uri}: dataset {p!r} has {a.ndim} dims but multiscales has {ms.ndim} axes")
        arrays.append(a)
    zyx = ms.spatial_indices()
    c_ax, t_ax = ms.axis_index("channel"), ms.axis_index("time")
    levels = []
    for a in arrays:
        pinned = _pin(a.ndim, zyx, c_ax, t_ax, channel, timepoint, a.shape, uri)
        levels.append(ZarrLevel(a, pinned, zyx))

    def space(v: Sequence[float], fill: float) -> tuple[float, float, float]:
        return tuple(float(v[i]) if i is not None else fill for i in zyx)  # type: ignore[return-value]

    scales = [space(s, 1.0) for s in ms.scales]
    factors = factors_from_scales(scales, uri=uri)
    return MultiscaleImage(
        uri=uri,
        kind="ome-zarr",
        levels=levels,
        factors=factors,
        voxel_size_zyx=scales[0],
        unit=ms.unit(),
        origin_zyx=space(ms.translations[0], 0.0),
    )


def _level_arrays_without_metadata(group: zarr.Group) -> list[zarr.Array]:
    """Arrays named like pyramid levels (``0, 1, 2`` or ``s0, s1``) in order."""
    named = {}
    for name, a in group.arrays():
        key = name[1:] if name[:1] == "s" else name
        if key.isdigit():
            named[int(key)] = a
    return [named[k] for k in sorted(named)]


def image_from_zarr(
    node: zarr.Array | zarr.Group,
    *,
    uri: str = "",
    channel: int | None = None,
    timepoint: int | None = None,
) -> MultiscaleImage:
    """A :class:`MultiscaleImage` over an open zarr node.

    Parameters
    ----------
    node : zarr.Group or zarr.Array
        An OME-Zarr image group (v0.4 ``.zattrs`` or v0.5 ``zarr.json``/``ome``),
        a plain group of level arrays named ``0, 1, ...`` (factors from shapes),
        or a single array (one level).
    uri : str
        Recorded on the image and named in errors.
    channel, timepoint : int, optional
        Index on the channel / time axis (default 0). 4D arrays without NGFF axes
        are read as (c, z, y, x), 5D as (t, c, z, y, x).
    """
    if isinstance(node, zarr.Array):
        zyx, c_ax, t_ax = _default_axes(node.ndim, uri)
        pinned = _pin(node.ndim, zyx, c_ax, t_ax, channel, timepoint, node.shape, uri)
        return MultiscaleImage(uri=uri, kind="zarr", levels=[ZarrLevel(node, pinned, zyx)], factors=[(1, 1, 1)])
    attrs = dict(node.attrs)
    if has_multiscales(attrs):
        raw = attrs.get("multiscales") or attrs["ome"]["multiscales"]
        ndim = None
        if isinstance(raw[0], dict) and raw[0].get("axes") is None:
            # Pre-0.3 metadata has no axes: the rank comes from the first level.
            try:
                ndim = node[str(raw[0]["datasets"][0]["path"])].ndim
            except (KeyError, IndexError, TypeError):
                raise ImageIOError(f"{uri}: multiscales without axes and without a readable first dataset") from None
        ms = parse_multiscales(attrs, uri=uri, ndim=ndim)
        return _from_ngff(node, ms, uri, channel, timepoint)
    arrays = _level_arrays_without_metadata(node)
    if not arrays:
        raise ImageIOError(f"{uri}: zarr group has neither multiscales metadata nor level arrays 0, 1, ...")
    ndims = {a.ndim for a in arrays}
    if len(ndims) != 1:
        raise ImageIOError(f"{uri}: level arrays have different ranks {sorted(ndims)}")
    zyx, c_ax, t_ax = _default_axes(arrays[0].ndim, uri)
    levels = [ZarrLevel(a, _pin(a.ndim, zyx, c_ax, t_ax, channel, timepoint, a.shape, uri), zyx) for a in arrays]
    return MultiscaleImage(
        uri=uri, kind="zarr", levels=levels, factors=factors_from_shapes([lv.shape for lv in levels])
    )


def open_zarr_image(
    uri: str,
    *,
    storage_options: dict[str, Any] | None = None,
    channel: int | None = None,
    timepoint: int | None = None,
) -> MultiscaleImage:
    """Open an OME-Zarr image group, a plain level group or a zarr array at ``uri``.

    A missing or unreadable location raises :class:`ImageIOError` naming ``uri``.
    """
    u = normalize_uri(uri)
    try:
        node = zarr.open(zarr_store(u, storage_options, read_only=True), mode="r")
    except PermissionError as e:
        raise ImageIOError(f"{u}: access denied ({_one_line(e)})") from None
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise ImageIOError(f"{u}: no zarr array or group here ({_one_line(e)})") from None
    except Exception as e:  # unreachable endpoint, bad credentials config, ...: say where, keep the cause
        raise ImageIOError(f"{u}: cannot open ({_one_line(e)})") from e
    return image_from_zarr(node, uri=u, channel=channel, timepoint=timepoint)


# ---------------------------------------------------------------------- registration

_ZARR_METADATA = (".zarray", ".zgroup", "zarr.json")


def _is_zarr_folder(names) -> bool:
    # A folder with N5's attributes.json and no zarr 3 metadata is N5 (see bdv_n5).
    if "attributes.json" in names and "zarr.json" not in names:
        return False
    return any(n in _ZARR_METADATA for n in names)


def _open_zarr_kind(uri, dataset, *, files, storage_options, channel, timepoint) -> MultiscaleImage:
    from .uri import join_uri

    return open_zarr_image(join_uri(uri, dataset), storage_options=storage_options, channel=channel, timepoint=timepoint)


def _open_ome_zarr_kind(uri, dataset, *, files, storage_options, channel, timepoint) -> MultiscaleImage:
    img = _open_zarr_kind(
        uri, dataset, files=files, storage_options=storage_options, channel=channel, timepoint=timepoint
    )
    if img.kind != "ome-zarr":
        raise ImageIOError(f"{img.uri}: kind 'ome-zarr' requested but the group has no OME-NGFF multiscales metadata")
    return img


def _register() -> None:
    from .registry import ImageFormat, register_format

    register_format(ImageFormat("ome-zarr", _open_ome_zarr_kind, description="OME-Zarr (NGFF 0.4 / 0.5) image group"))
    register_format(
        ImageFormat(
            "zarr",
            _open_zarr_kind,
            suffixes=(".zarr",),
            sniff=_is_zarr_folder,
            description="zarr array or group (OME metadata read when present)",
        )
    )


_register()
