"""Write 3D (z, y, x) OME-Zarr images (NGFF v0.4 on zarr v2, v0.5 on zarr v3).

The group metadata (``.zattrs`` + ``.zgroup`` for v0.4, the group ``zarr.json``
for v0.5) is written last and atomically, after every level array exists: a
reader polling the URI either finds no image or a complete one, never
multiscales metadata that points at missing arrays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from .downsample import downsample_mean, downsampled_shape
from .errors import ImageIOError
from .multiscale import MultiscaleImage, factors_from_scales
from .ngff import build_multiscales_attrs, level_scale_translation, parse_multiscales, with_time_channel_axes
from .uri import atomic_write_bytes, fs_for, holds_data, is_s3, join_uri, normalize_uri, read_bytes
from .zarr_source import zarr_store

__all__ = ["LevelInfo", "OmeZarrWriter", "RootMetadata", "create_ome_zarr", "read_root", "write_ome_zarr"]

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class LevelInfo:
    """Layout and geometry of one written level (all tuples z, y, x)."""

    path: str
    shape_zyx: Triple
    chunks_zyx: Triple
    shards_zyx: Triple | None
    factors_zyx: Triple  # cumulative, relative to level 0
    scale_zyx: tuple[float, float, float]  # physical voxel size
    translation_zyx: tuple[float, float, float]  # physical centre of voxel (0, 0, 0)


def _triple(v: Any, name: str, *, cast=int, positive: bool = True) -> tuple:
    try:
        t = tuple(cast(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three numbers (z, y, x), got {v!r}") from None
    if len(t) != 3:
        raise ValueError(f"{name} must be three numbers (z, y, x), got {v!r}")
    if positive and any(x <= 0 for x in t):
        raise ValueError(f"{name} must be positive, got {v!r}")
    return t


def _step_factors(scale_factors_zyx, n_levels: int) -> list[Triple]:
    """Per-step factors (level l relative to l - 1) for levels 1..n_levels-1."""
    if scale_factors_zyx is None:
        return [(2, 2, 2)] * (n_levels - 1)
    sf = list(scale_factors_zyx)
    if len(sf) == 3 and all(np.isscalar(x) for x in sf):
        return [_triple(sf, "scale_factors_zyx")] * (n_levels - 1)
    if len(sf) != n_levels - 1:
        raise ValueError(
            f"scale_factors_zyx lists {len(sf)} steps but n_levels={n_levels} needs {n_levels - 1}"
        )
    return [_triple(s, f"scale_factors_zyx[{i}]") for i, s in enumerate(sf)]


def _compressor(version: str, compressor: str | None, clevel: int, shuffle: str):
    if compressor is None:
        return None
    if shuffle not in ("bitshuffle", "shuffle", "noshuffle"):
        raise ValueError(f"shuffle must be 'bitshuffle', 'shuffle' or 'noshuffle', got {shuffle!r}")
    if version == "0.4":
        code = {"bitshuffle": numcodecs.Blosc.BITSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE,
                "noshuffle": numcodecs.Blosc.NOSHUFFLE}[shuffle]
        return numcodecs.Blosc(cname=compressor, clevel=int(clevel), shuffle=code)
    return BloscCodec(cname=compressor, clevel=int(clevel), shuffle=shuffle)


def _level_layout(n: int, chunk: int, shard: int | None) -> tuple[int, int | None]:
    c = min(chunk, n)
    if shard is None:
        return c, None
    if n <= chunk:
        return c, c
    return c, min(shard, -(-n // c) * c)


class OmeZarrWriter:
    """Handle on a created (or reopened) OME-Zarr image for block writes.

    Blocks written concurrently from several processes must not share a chunk
    (or, for sharded v0.5 arrays, a shard): align write boxes to
    ``levels[l].shards_zyx or levels[l].chunks_zyx``.
    """

    def __init__(
        self,
        uri: str,
        levels: list[LevelInfo],
        arrays: list[zarr.Array],
        *,
        ngff_version: str,
        voxel_size_zyx: Sequence[float],
        origin_zyx: Sequence[float],
        unit: str | None,
        storage_options: dict[str, Any] | None = None,
    ):
        self.uri = uri
        self._levels = list(levels)
        self._arrays = list(arrays)
        self.ngff_version = ngff_version
        self.voxel_size_zyx = tuple(float(v) for v in voxel_size_zyx)
        self.origin_zyx = tuple(float(v) for v in origin_zyx)
        self.unit = unit
        self.storage_options = storage_options

    @property
    def levels(self) -> list[LevelInfo]:
        return list(self._levels)

    @property
    def n_levels(self) -> int:
        return len(self._levels)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._arrays[0].dtype)

    def _check_level(self, level: int) -> None:
        if not 0 <= level < len(self._levels):
            raise ImageIOError(f"{self.uri}: level {level} out of range [0, {len(self._levels)})")

    def array(self, level: int) -> zarr.Array:
        """The writable zarr array of a level (3-D, or 5-D t, c, z, y, x for a time-channel image)."""
        self._check_level(level)
        return self._arrays[level]

    @property
    def tc_shape(self) -> tuple[int, int] | None:
        """(timepoints, channels) of a t, c, z, y, x image; None for a 3-D one."""
        a = self._arrays[0]
        return (int(a.shape[0]), int(a.shape[1])) if a.ndim == 5 else None

    def slot(self, level: int, t: int = 0, c: int = 0):
        """A level's (z, y, x) array of one timepoint and channel (the level itself when 3-D)."""
        from .slots import space_slot

        self._check_level(level)
        return space_slot(self._arrays[level], t, c)

    def write(self, level: int, box_zyx_start: Sequence[int], array: np.ndarray) -> None:
        """Write ``array`` (z, y, x) into a level with its first voxel at ``box_zyx_start``.

        The array's dtype must cast to the image dtype with ``same_kind`` rules
        (e.g. float data for a uint16 image must be rounded and clipped by the
        caller first: a silent wrap-around would corrupt intensities).
        """
        self._check_level(level)
        if self.tc_shape is not None:
            raise ImageIOError(f"{self.uri}: a t, c, z, y, x image is written through slot(level, t, c)")
        a = np.asarray(array)
        start = _triple(box_zyx_start, "box_zyx_start", positive=False)
        shape = self._levels[level].shape_zyx
        if a.ndim != 3:
            raise ImageIOError(f"{self.uri}: level {level} write needs a 3D (z, y, x) array, got {a.ndim}D")
        stop = tuple(s + n for s, n in zip(start, a.shape))
        if any(s < 0 for s in start) or any(e > n for e, n in zip(stop, shape)):
            raise ImageIOError(
                f"{self.uri}: level {level} box {list(zip(start, stop))} exceeds the level shape {shape}"
            )
        if not np.can_cast(a.dtype, self.dtype, "same_kind"):
            raise ImageIOError(f"{self.uri}: cannot write {a.dtype} data into a {self.dtype} image without a cast")
        self._arrays[level][tuple(slice(s, e) for s, e in zip(start, stop))] = a.astype(self.dtype, copy=False)

    def downsample_level(self, level: int, box: Sequence[Sequence[int]] | None = None) -> None:
        """Compute ``level`` (or the part ``box`` of it, in its own voxel grid) from ``level - 1``.

        Mean downsampling, block by block (blocks = the level's shards or
        chunks, so parallel calls on disjoint blocks are safe); a partial edge
        block averages only the voxels it has.
        """
        self._check_level(level)
        if level == 0:
            raise ImageIOError(f"{self.uri}: level 0 is written, not downsampled")
        prev, cur = self._levels[level - 1], self._levels[level]
        step = tuple(c // p for c, p in zip(cur.factors_zyx, prev.factors_zyx))
        block = cur.shards_zyx or cur.chunks_zyx
        if box is None:
            box = tuple((0, n) for n in cur.shape_zyx)
        lo = [max(0, int(a)) // b * b for (a, _), b in zip(box, block)]
        hi = [min(int(e), n) for (_, e), n in zip(box, cur.shape_zyx)]
        blocks = [
            tuple((t, min(t + b, n)) for t, b, n in zip((z, y, x), block, cur.shape_zyx))
            for z in range(lo[0], hi[0], block[0])
            for y in range(lo[1], hi[1], block[1])
            for x in range(lo[2], hi[2], block[2])
        ]
        # One implementation of block-wise mean downsampling: the multiscale stage's.
        from rhapso_core.multiscale.downsample import downsample_level

        downsample_level(self._arrays[level - 1], self._arrays[level], step, blocks=blocks,
                         skip_existing=False, mark=False)

    def build_pyramid(self) -> None:
        """Fill levels 1.. from level 0, one level after the other."""
        for level in range(1, self.n_levels):
            self.downsample_level(level)

    def image(self) -> MultiscaleImage:
        """The image as a reader (:class:`MultiscaleImage`)."""
        from .zarr_source import open_zarr_image

        return open_zarr_image(self.uri, storage_options=self.storage_options)

    @classmethod
    def open(cls, uri: str, *, storage_options: dict[str, Any] | None = None) -> OmeZarrWriter:
        """Reopen an existing 3D OME-Zarr image for writing (e.g. in a worker process)."""
        u = normalize_uri(uri)
        try:
            group = zarr.open_group(zarr_store(u, storage_options, read_only=False), mode="r+")
        except (FileNotFoundError, KeyError, ValueError, OSError) as e:
            raise ImageIOError(f"{u}: no OME-Zarr group to write to ({type(e).__name__})") from None
        ms = parse_multiscales(dict(group.attrs), uri=u)
        names = [a["name"].lower() for a in ms.axes]
        if names not in (["z", "y", "x"], ["t", "c", "z", "y", "x"]):
            raise ImageIOError(f"{u}: writer needs axes z, y, x or t, c, z, y, x, found {names}")
        arrays = [group[p] for p in ms.paths]
        scales = [tuple(s[-3:]) for s in ms.scales]
        translations = [tuple(t[-3:]) for t in ms.translations]
        factors = factors_from_scales(scales, uri=u)
        levels = []
        for p, a, f, s, t in zip(ms.paths, arrays, factors, scales, translations):
            shards = getattr(a, "shards", None)
            levels.append(
                LevelInfo(p, tuple(a.shape[-3:]), tuple(a.chunks[-3:]), tuple(shards[-3:]) if shards else None,
                          f, s, t)
            )
        return cls(
            u, levels, arrays, ngff_version=ms.version[:3], voxel_size_zyx=scales[0],
            origin_zyx=translations[0], unit=ms.unit(), storage_options=storage_options,
        )


def _prepare_target(u: str, storage_options, overwrite: bool) -> None:
    if not holds_data(u, storage_options):
        return
    if not overwrite:
        raise ImageIOError(f"{u}: already exists; pass overwrite=True to replace it")
    fs, path = fs_for(u, storage_options)
    fs.rm(path, recursive=True)
    if is_s3(u):
        fs.invalidate_cache(path)


def _write_root(u: str, ngff_version: str, attrs: dict, storage_options, final: bool) -> None:
    """The image group's root metadata; ``final`` False writes attributes without the group."""
    if ngff_version == "0.4":
        # .zattrs before .zgroup: until .zgroup lands there is no group to find.
        atomic_write_bytes(join_uri(u, ".zattrs"), json.dumps(attrs, indent=2).encode(), storage_options)
        if final:
            atomic_write_bytes(join_uri(u, ".zgroup"), json.dumps({"zarr_format": 2}).encode(), storage_options)
        return
    # zarr v3 keeps a group's attributes in its zarr.json: a claim written before the arrays is
    # a group without NGFF metadata, which no reader takes for an image.
    doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
    atomic_write_bytes(join_uri(u, "zarr.json"), json.dumps(doc, indent=2).encode(), storage_options)


@dataclass(frozen=True)
class RootMetadata:
    """What an image path's root metadata says, read without opening it as a zarr group.

    ``complete`` is False for a creation that stopped before its finished group was
    written (see :func:`create_ome_zarr`'s ``attributes``).
    """

    attributes: dict
    complete: bool


def read_root(uri: str, storage_options: dict[str, Any] | None = None) -> RootMetadata | None:
    """The root attributes at ``uri`` (zarr v2 ``.zattrs`` or v3 ``zarr.json``), None without any.

    Unlike ``zarr.open_group`` this also reads an unfinished creation's attributes.
    """
    u = normalize_uri(uri)
    for name in ("zarr.json", ".zattrs"):
        try:
            doc = json.loads(read_bytes(join_uri(u, name), storage_options))
        except (FileNotFoundError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        if name == "zarr.json":
            attrs = doc.get("attributes") or {}
            return RootMetadata(attrs, doc.get("node_type") == "group" and "ome" in attrs)
        fs, path = fs_for(join_uri(u, ".zgroup"), storage_options)
        return RootMetadata(doc, fs.exists(path))
    return None


def create_ome_zarr(
    uri: str,
    shape_zyx: Sequence[int],
    dtype: Any,
    *,
    chunks_zyx: Sequence[int],
    voxel_size_zyx: Sequence[float],
    origin_zyx: Sequence[float] = (0.0, 0.0, 0.0),
    unit: str | None = "micrometer",
    n_levels: int = 1,
    scale_factors_zyx: Sequence[int] | Sequence[Sequence[int]] | None = None,
    ngff_version: str = "0.4",
    shards_zyx: Sequence[int] | None = None,
    compressor: str | None = "zstd",
    clevel: int = 5,
    shuffle: str = "bitshuffle",
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    fill_value: Any = 0,
    name: str | None = None,
    tc_shape: Sequence[int] | None = None,
    attributes: dict[str, Any] | None = None,
) -> OmeZarrWriter:
    """Create an empty 3D OME-Zarr image with all its pyramid levels.

    Parameters
    ----------
    uri : str
        Local path or ``s3://`` URL of the image group.
    shape_zyx : (int, int, int)
        Level-0 shape (voxels).
    dtype : numpy dtype-like
    chunks_zyx : (int, int, int)
        Chunk shape (voxels); clipped to each level's shape.
    voxel_size_zyx : (float, float, float)
        Level-0 voxel size (``unit`` per voxel).
    origin_zyx : (float, float, float), default (0, 0, 0)
        Physical position of level-0 voxel (0, 0, 0)'s centre (NGFF translation).
    unit : str or None, default "micrometer"
        NGFF unit of the space axes.
    n_levels : int, default 1
        Number of pyramid levels.
    scale_factors_zyx : (int, int, int) or list of them, optional
        Factor of each level relative to the previous one: one triple for every
        step, or one triple per step (``n_levels - 1``). Default (2, 2, 2).
    ngff_version : {"0.4", "0.5"}, default "0.4"
        0.4 writes zarr v2 (``/`` chunk keys), 0.5 writes zarr v3.
    shards_zyx : (int, int, int), optional
        Shard shape (voxels, a multiple of ``chunks_zyx``); v0.5 only.
    compressor : str or None, default "zstd"
        Blosc internal codec (``"zstd"``, ``"lz4"``, ...); None stores raw chunks.
    clevel : int, default 5
        Blosc compression level.
    shuffle : {"bitshuffle", "shuffle", "noshuffle"}, default "bitshuffle"
    storage_options : dict, optional
        s3fs options for ``s3://`` URIs.
    overwrite : bool, default False
        Replace existing data at ``uri``; otherwise existing data raises
        :class:`ImageIOError`.
    fill_value : scalar, default 0
        Value of chunks never written.
    name : str, optional
        NGFF multiscales ``name``.
    tc_shape : (int, int), optional
        (timepoints, channels): the image gets axes t, c, z, y, x (chunks and shards one
        timepoint and one channel deep; the pyramid downsamples z, y, x only). Default: 3-D.
    attributes : dict, optional
        More root attributes (JSON values), beside the NGFF ones. They are written
        before anything else at ``uri`` and again with the finished group, so a
        creation stopped at any point leaves them readable by :func:`read_root`.

    Returns
    -------
    OmeZarrWriter
        Level ``l`` has shape ``ceil(shape / F_l)``, scale ``voxel_size * F_l``
        and translation ``origin + (F_l - 1) / 2 * voxel_size`` for cumulative
        factor ``F_l``.
    """
    shape = _triple(shape_zyx, "shape_zyx")
    chunks = _triple(chunks_zyx, "chunks_zyx")
    voxel = _triple(voxel_size_zyx, "voxel_size_zyx", cast=float)
    origin = _triple(origin_zyx, "origin_zyx", cast=float, positive=False)
    if int(n_levels) < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    n_levels = int(n_levels)
    if ngff_version not in ("0.4", "0.5"):
        raise ValueError(f"ngff_version must be '0.4' or '0.5', got {ngff_version!r}")
    shards = None
    if shards_zyx is not None:
        if ngff_version != "0.5":
            raise ValueError("shards_zyx needs ngff_version='0.5' (sharding is a zarr v3 feature)")
        shards = _triple(shards_zyx, "shards_zyx")
        if any(s % c for s, c in zip(shards, chunks)):
            raise ValueError(f"shards_zyx {shards} must be a multiple of chunks_zyx {chunks}")
    steps = _step_factors(scale_factors_zyx, n_levels)
    dt = np.dtype(dtype)
    u = normalize_uri(uri)
    _prepare_target(u, storage_options, overwrite)
    extra = dict(attributes or {})
    if extra:
        # The caller's claim on the path first: a creation stopped before its group is
        # finished (killed, disk full) still says whose it is (see read_root).
        _write_root(u, ngff_version, extra, storage_options, final=False)

    cumulative: list[Triple] = [(1, 1, 1)]
    for s in steps:
        cumulative.append(tuple(a * b for a, b in zip(cumulative[-1], s)))  # type: ignore[arg-type]
    levels, arrays = [], []
    lead: tuple[int, ...] = ()
    if tc_shape is not None:
        lead = tuple(int(n) for n in tc_shape)
        if len(lead) != 2 or min(lead) < 1:
            raise ValueError(f"tc_shape must be (timepoints >= 1, channels >= 1), got {tc_shape!r}")
    one = (1,) * len(lead)
    comp = _compressor(ngff_version, compressor, clevel, shuffle)
    for i, f in enumerate(cumulative):
        lshape = downsampled_shape(shape, f)
        layout = [_level_layout(n, c, s) for n, c, s in zip(lshape, chunks, shards or (None,) * 3)]
        lchunks = tuple(c for c, _ in layout)
        lshards = tuple(s for _, s in layout) if shards else None
        kwargs: dict[str, Any] = dict(shape=lead + lshape, dtype=dt, chunks=one + lchunks, fill_value=fill_value)
        if ngff_version == "0.4":
            kwargs.update(zarr_format=2, compressors=comp, chunk_key_encoding={"name": "v2", "separator": "/"})
        else:
            kwargs.update(zarr_format=3, compressors=comp, shards=None if lshards is None else one + lshards,
                          dimension_names=(["t", "c"] if lead else []) + ["z", "y", "x"])
        if comp is None:
            kwargs["compressors"] = None
        store = zarr_store(join_uri(u, str(i)), storage_options, read_only=False)
        try:
            arrays.append(zarr.create_array(store, **kwargs))
        except OSError as e:
            if e.errno is None:
                raise ImageIOError(f"{join_uri(u, str(i))}: cannot create level array ({type(e).__name__}: {e})") from e
            # The system's reason (disk full, permission, quota) stays an OSError, so callers and the
            # CLI treat it as one; named by the level, not by zarr's temporary file.
            raise OSError(e.errno, e.strerror, join_uri(u, str(i))) from e
        except ValueError as e:
            raise ImageIOError(f"{join_uri(u, str(i))}: cannot create level array ({type(e).__name__}: {e})") from None
        scale, trans = level_scale_translation(voxel, origin, f)
        levels.append(LevelInfo(str(i), lshape, lchunks, lshards, f, tuple(scale), tuple(trans)))  # type: ignore[arg-type]

    attrs = build_multiscales_attrs(
        version=ngff_version, paths=[lv.path for lv in levels], voxel_size_zyx=voxel,
        origin_zyx=origin, factors_zyx=cumulative, unit=unit, name=name,
    )
    if lead:
        attrs = with_time_channel_axes(attrs)
    _write_root(u, ngff_version, {**attrs, **extra}, storage_options, final=True)
    return OmeZarrWriter(
        u, levels, arrays, ngff_version=ngff_version, voxel_size_zyx=voxel, origin_zyx=origin,
        unit=unit, storage_options=storage_options,
    )


def write_ome_zarr(
    uri: str,
    array_zyx: np.ndarray,
    voxel_size_zyx: Sequence[float],
    *,
    origin_zyx: Sequence[float] = (0.0, 0.0, 0.0),
    unit: str | None = "micrometer",
    n_levels: int = 1,
    scale_factors_zyx: Sequence[int] | Sequence[Sequence[int]] | None = None,
    chunks_zyx: Sequence[int] = (64, 64, 64),
    ngff_version: str = "0.4",
    shards_zyx: Sequence[int] | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    name: str | None = None,
) -> OmeZarrWriter:
    """Write a small in-memory (z, y, x) volume with a mean-downsampled pyramid.

    Parameters are those of :func:`create_ome_zarr`; the pyramid is computed in
    memory with :func:`~rhapso_core.io.downsample.downsample_mean` (each level from
    the previous one, partial edge blocks averaged over the voxels they have).
    """
    a = np.asarray(array_zyx)
    if a.ndim != 3:
        raise ValueError(f"array_zyx must be 3D (z, y, x), got shape {a.shape}")
    w = create_ome_zarr(
        uri, a.shape, a.dtype, chunks_zyx=chunks_zyx, voxel_size_zyx=voxel_size_zyx, origin_zyx=origin_zyx,
        unit=unit, n_levels=n_levels, scale_factors_zyx=scale_factors_zyx, ngff_version=ngff_version,
        shards_zyx=shards_zyx, storage_options=storage_options, overwrite=overwrite, name=name,
    )
    level = a
    for i, info in enumerate(w.levels):
        if i > 0:
            prev = w.levels[i - 1].factors_zyx
            level = downsample_mean(level, [c // p for c, p in zip(info.factors_zyx, prev)])
        w.write(i, (0, 0, 0), level)
    return w
