"""Whole-chunk reads and writes of local zarr arrays, without zarr's asynchronous pipeline.

Why: ``zarr.Array.__getitem__`` / ``__setitem__`` run every chunk through an event loop in
another thread, ``asyncio.to_thread`` per codec, buffer wrappers and a fresh allocation per
decoded chunk; on the pyramid's lz4 chunks that halved the read speed of the same bytes
(660 MB/s against 1,460 MB/s decoding the chunk files directly, one core). Here a chunk
file is read with one ``read``, decoded by the same numcodecs codec zarr would use (into
a buffer reused from chunk to chunk) and copied once into place; a write encodes each
chunk exactly as zarr does (same codec, same padding of edge chunks with the fill value,
same deletion of chunks that hold only the fill value) and replaces the file atomically.

Only what is certain to match zarr byte for byte takes this path: a :class:`LocalStore`,
no sharding, C order, a native-endian numeric dtype, and codecs among zarr 2's compressors (no
filters) or zarr 3's ``bytes`` followed by ``blosc``, ``zstd`` or ``gzip``. Any other array
(S3 and other fsspec stores, sharded arrays, other codecs) and any selection that is not a
box of whole-array steps goes through zarr itself; :func:`general_path_only` forces that
path (benchmarks compare the two; tests check they agree).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np
from numcodecs.compat import ensure_ndarray_like
import zarr
from zarr.storage import LocalStore

from .chunk_cache import active_cache, keep as keep_decoded
from .chunk_reuse import active_reuse
from .slots import SpaceSlot

__all__ = [
    "DirectChunks",
    "direct_chunks",
    "general_path_only",
    "read_region",
    "write_region",
    "iter_region_chunks",
    "is_fill",
    "region_chunk_keys",
]

_ENABLED: ContextVar[bool] = ContextVar("rhapso_direct_chunk_io", default=True)


@contextmanager
def general_path_only():
    """Within this block (this thread / task), every read and write goes through zarr."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _v3_bytes_codec(codec) -> Any | None:
    """The numcodecs codec equal to a zarr 3 bytes-to-bytes codec, or None if not supported."""
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    cfg = codec.to_dict().get("configuration", {})
    if isinstance(codec, BloscCodec):
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[str(cfg["shuffle"])]
        return numcodecs.Blosc(cname=str(cfg["cname"]), clevel=int(cfg["clevel"]), shuffle=shuffle,
                               blocksize=int(cfg.get("blocksize", 0)), typesize=int(cfg["typesize"]))
    if isinstance(codec, ZstdCodec):
        return numcodecs.Zstd(level=int(cfg["level"]), checksum=bool(cfg.get("checksum", False)))
    if isinstance(codec, GzipCodec):
        return numcodecs.GZip(level=int(cfg["level"]))
    return None


@dataclass(frozen=True)
class DirectChunks:
    """How to find, decode and encode the chunks of one local zarr array (see module doc).

    Attributes
    ----------
    directory : str
        The array's folder; a chunk's file is ``directory/<chunk key>``.
    shape, chunks : tuple of int
        Array and chunk shape (all axes, array order).
    dtype : numpy dtype
        Native-endian element type.
    fill : numpy scalar
        The value of voxels no chunk holds (zarr 2's ``null`` fill value reads as 0).
    codecs : tuple
        numcodecs codecs applied in order on encode (reverse order on decode).
    bytes_view : bool
        True (zarr 3) when the codecs see the chunk as flat bytes, False (zarr 2) when they
        see the typed array (blosc's shuffle width comes from it).
    write_empty_chunks : bool
        zarr's array config: False deletes a chunk that holds only the fill value.
    """

    directory: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill: Any
    codecs: tuple
    bytes_view: bool
    write_empty_chunks: bool
    _key: Any  # metadata.encode_chunk_key

    def chunk_path(self, index: Sequence[int]) -> str:
        return os.path.join(self.directory, self._key(tuple(int(i) for i in index)))

    @property
    def chunk_nbytes(self) -> int:
        return int(np.prod(self.chunks)) * self.dtype.itemsize

    # ------------------------------------------------------------------ decode / encode
    def decode(self, raw: bytes, out: np.ndarray | None = None) -> np.ndarray:
        """A chunk's file bytes -> the chunk (shape ``chunks``, writable), in ``out`` (C
        contiguous, that shape) when given, else in a new array."""
        n = self.chunk_nbytes
        if out is None:
            out = np.empty(self.chunks, self.dtype)
        flat_out = out.reshape(-1).view(np.uint8)
        if len(self.codecs) == 1 and _frame_nbytes(self.codecs[0], raw) == n:
            # In place only when the frame's header says it fills the buffer exactly: the
            # codecs accept a larger destination and would leave its tail stale.
            self.codecs[0].decode(raw, out=flat_out)
            return out
        data: Any = raw
        for codec in reversed(self.codecs):
            data = codec.decode(data)
        flat = ensure_ndarray_like(data).reshape(-1).view(np.uint8)
        if flat.nbytes != n:
            # zarr's wording, which the image readers turn into a message about the dtype.
            raise ValueError(
                f"cannot reshape array of size {flat.nbytes // self.dtype.itemsize} into shape {self.chunks}"
            )
        flat_out[:] = flat
        return out

    def encode(self, chunk: np.ndarray) -> bytes:
        """A full chunk (C contiguous, shape ``chunks``) -> the bytes zarr would store."""
        data: Any = chunk.reshape(-1).view(np.uint8) if self.bytes_view else chunk
        for codec in self.codecs:
            data = codec.encode(data)
        if isinstance(data, np.ndarray):
            data = data.tobytes()
        return bytes(data) if not isinstance(data, bytes) else data

    # ------------------------------------------------------------------ files
    def read_chunk_bytes(self, index: Sequence[int], scratch: "_Scratch | None" = None):
        """The chunk file's bytes (a view of ``scratch``'s buffer when given, valid until
        its next read); None when the file does not exist (all fill value)."""
        path = self.chunk_path(index)
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return None
        with f:
            if scratch is None:
                return f.read()
            # One read into a buffer sized from the file: FileIO.readall grows its result
            # by reallocation, which cost a third of the decode time of lz4 chunks.
            return scratch.read_all(f)

    def write_chunk_bytes(self, index: Sequence[int], data: bytes | None) -> None:
        """Replace a chunk's file atomically (a reader sees the old or the new chunk), or
        delete it (``data`` None)."""
        path = self.chunk_path(index)
        if data is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        try:
            f = open(tmp, "wb")
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            f = open(tmp, "wb")
        try:
            with f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


class _Scratch:
    """A byte buffer reused from one chunk file read to the next."""

    def __init__(self):
        self._buf = bytearray(0)

    def read_all(self, f) -> memoryview:
        size = os.fstat(f.fileno()).st_size
        if size > len(self._buf):
            self._buf = bytearray(size)
        view = memoryview(self._buf)[:size]
        got = 0
        while got < size:  # a short read is legal (and then the next one returns the rest)
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
        return view[:got]


def _frame_nbytes(codec, raw) -> int:
    """Decoded size a blosc or zstd frame's header declares; -1 if unknown (other codecs,
    a zstd frame without its content size, several frames, too short to tell)."""
    if isinstance(codec, numcodecs.Blosc):
        # blosc 1 header: version, versionlz, flags, typesize, then nbytes (little-endian).
        return int.from_bytes(raw[4:8], "little") if len(raw) >= 16 else -1
    if isinstance(codec, numcodecs.Zstd) and len(raw) >= 6 and bytes(raw[:4]) == b"\x28\xb5\x2f\xfd":
        # RFC 8878 frame header: descriptor byte, [window byte], [dictionary id], content size.
        d = raw[4]
        single = (d >> 5) & 1
        fcs_size = (0 if not single else 1, 2, 4, 8)[d >> 6]
        pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[d & 3]
        if fcs_size == 0 or len(raw) < pos + fcs_size:
            return -1
        size = int.from_bytes(raw[pos:pos + fcs_size], "little")
        return size + 256 if fcs_size == 2 else size
    return -1


def _unwrap(array) -> tuple[Any, tuple]:
    """(zarr array, leading integer indices) of a zarr array or a :class:`SpaceSlot`."""
    if isinstance(array, SpaceSlot):
        return array.array, (array.t, array.c)
    return array, ()


def direct_chunks(array) -> DirectChunks | None:
    """The direct accessor of a zarr array, or None when it must go through zarr."""
    if not _ENABLED.get() or not isinstance(array, zarr.Array):
        return None
    store = array.store
    if type(store) is not LocalStore:
        return None
    md = array.metadata
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biufc" or not dtype.isnative or array.config.order != "C":
        return None
    if md.zarr_format == 2:
        if md.filters or md.order != "C":
            return None
        codecs: tuple = () if md.compressor is None else (md.compressor,)
        bytes_view = False
    else:
        from zarr.codecs import BytesCodec

        if getattr(array, "shards", None) is not None or not md.codecs:
            return None
        first, rest = md.codecs[0], md.codecs[1:]
        if not isinstance(first, BytesCodec):
            return None
        if first.endian is not None and first.endian.value != sys.byteorder and dtype.itemsize > 1:
            return None
        codecs = tuple(_v3_bytes_codec(c) for c in rest)
        if any(c is None for c in codecs):
            return None
        bytes_view = True
    fill = md.fill_value
    fill = dtype.type(0) if fill is None else dtype.type(fill)
    return DirectChunks(
        directory=os.path.join(str(store.root), array.path) if array.path else str(store.root),
        shape=tuple(int(n) for n in array.shape),
        chunks=tuple(int(c) for c in array.chunks),
        dtype=dtype,
        fill=fill,
        codecs=codecs,
        bytes_view=bytes_view,
        write_empty_chunks=bool(array.config.write_empty_chunks),
        _key=md.encode_chunk_key,
    )


def _normalise(sel, shape: Sequence[int]) -> list[tuple[int, int, bool]] | None:
    """Per axis ``(start, stop, keep)``: a slice of step 1 (kept) or an integer (dropped);
    None for anything else (steps, arrays, Ellipsis)."""
    sel = sel if isinstance(sel, tuple) else (sel,)
    if len(sel) > len(shape):
        return None
    sel = sel + (slice(None),) * (len(shape) - len(sel))
    out = []
    for s, n in zip(sel, shape):
        if isinstance(s, slice):
            a, b, step = s.indices(n)
            if step != 1:
                return None
            out.append((a, max(a, b), True))
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            i = int(s) + (n if s < 0 else 0)
            if not 0 <= i < n:
                return None
            out.append((i, i + 1, False))
        else:
            return None
    return out


def _chunk_ranges(axes, chunks):
    return [range(a // c, -(-b // c)) if b > a else range(0) for (a, b, _), c in zip(axes, chunks)]


def iter_region_chunks(array, selection) -> Iterator[tuple[tuple[slice, ...], np.ndarray]] | None:
    """Decoded chunks of a box, one at a time, without assembling the box.

    Yields ``(where, data)``: ``data`` is the part of one chunk inside the box (a view of
    a buffer reused for the next chunk: use it before asking for the next; a read-only
    broadcast of the fill value, :func:`is_fill`, for a chunk that is not stored),
    ``where`` its place in the box (slices over the kept axes). None (not an iterator)
    when the array must go through zarr; then read the box with :func:`read_region`.
    """
    found = _direct_axes(array, selection)
    return None if found is None else _iter(*found)


def _direct_axes(array, selection):
    """(direct chunks, normalised selection axes) of a read, or None when it must go through zarr."""
    z, lead = _unwrap(array)
    dc = direct_chunks(z)
    if dc is None:
        return None
    axes = _normalise(lead + (selection if isinstance(selection, tuple) else (selection,)), dc.shape)
    return None if axes is None else (dc, axes)


def _iter(dc: DirectChunks, axes) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    import itertools

    reuse = active_reuse()
    buf = np.empty(dc.chunks, dc.dtype)
    scratch = _Scratch()
    for idx in itertools.product(*_chunk_ranges(axes, dc.chunks)):
        in_chunk, where = [], []
        for i, c, (a, b, keep) in zip(idx, dc.chunks, axes):
            lo, hi = max(a, i * c), min(b, i * c + c)
            in_chunk.append(slice(lo - i * c, hi - i * c) if keep else lo - i * c)
            if keep:
                where.append(slice(lo - a, hi - a))
        key = dc.chunk_path(idx)
        chunk = None if reuse is None else reuse.get(key)
        if chunk is None:
            cache = active_cache()
            if cache is None:
                raw, ident = dc.read_chunk_bytes(idx, scratch), None
            else:
                raw, ident, chunk = _read_through(dc, idx, scratch, cache)
        if chunk is None:
            if raw is None:  # never written (or all fill value): no bytes to decode
                shape = tuple(s.stop - s.start for s in in_chunk if isinstance(s, slice))
                yield tuple(where), np.broadcast_to(np.asarray(dc.fill, dc.dtype), shape)
                continue
            # A chunk a later read needs gets its own array; others reuse one buffer.
            own = ident is not None or (reuse is not None and reuse.wants(key))
            chunk = dc.decode(raw, None if own else buf)
            if ident is not None:
                keep_decoded(cache, ident, chunk)
            if reuse is not None:
                reuse.offer(key, chunk)
        yield tuple(where), chunk[tuple(in_chunk)]


def _read_through(dc: DirectChunks, idx, scratch: _Scratch, cache):
    """``(raw bytes, identity, cached chunk)`` of one chunk file: the decoded chunk when the
    cache holds this very file (same path, inode, size and mtime), else its bytes to decode;
    ``(None, None, None)`` when no file is stored."""
    path = dc.chunk_path(idx)
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        return None, None, None
    with f:
        st = os.fstat(f.fileno())
        ident = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        hit = cache.get(ident)
        if hit is not None:
            return None, ident, hit
        return scratch.read_all(f), ident, None


def is_fill(part: np.ndarray) -> bool:
    """Whether a part from :func:`iter_region_chunks` is a chunk that is not stored (every
    voxel the fill value, a zero-stride broadcast)."""
    return part.size > 0 and not any(part.strides)


def region_chunk_keys(array, selection) -> list[tuple[str, int]] | None:
    """``(key, decoded bytes)`` of each chunk a read of ``selection`` decodes, keys as
    :class:`~rhapso_core.io.chunk_reuse.ChunkReuse` names them (the chunk files); None
    when the read would go through zarr."""
    import itertools

    found = _direct_axes(array, selection)
    if found is None:
        return None
    dc, axes = found
    n = dc.chunk_nbytes
    return [(dc.chunk_path(idx), n) for idx in itertools.product(*_chunk_ranges(axes, dc.chunks))]


def read_region(array, selection) -> np.ndarray:
    """``np.asarray(array[selection])`` for a zarr array or :class:`SpaceSlot` (or anything
    indexable); direct for local arrays, with integers and step-1 slices (module doc)."""
    parts = iter_region_chunks(array, selection)
    if parts is None:
        return np.asarray(array[selection])
    z, lead = _unwrap(array)
    axes = _normalise(lead + (selection if isinstance(selection, tuple) else (selection,)), z.shape)
    out = np.empty(tuple(b - a for a, b, keep in axes if keep), np.dtype(z.dtype))
    for where, part in parts:
        out[where] = part
    return out


def write_region(array, selection: Sequence[slice], data) -> None:
    """``array[selection] = data`` for a box of whole chunks (chunks at the array's far
    edge may end there); direct for local arrays, through zarr otherwise or when the box
    cuts a chunk (zarr then merges with the stored chunk)."""
    z, lead = _unwrap(array)
    # A read-only store refuses through zarr, with zarr's error.
    dc = None if getattr(getattr(z, "store", None), "read_only", True) else direct_chunks(z)
    sel = tuple(selection)
    axes = None if dc is None else _normalise(lead + sel, dc.shape)
    data = np.asarray(data)
    aligned = axes is not None and all(
        a % c == 0 and (b % c == 0 or b == n) for (a, b, _), c, n in zip(axes, dc.chunks, dc.shape)
    )
    want = None if axes is None else tuple(b - a for a, b, keep in axes if keep)
    if not aligned or data.shape != want:
        array[sel] = data
        return
    import itertools

    full = data.reshape(tuple(b - a for a, b, _ in axes)).astype(dc.dtype, copy=False)
    buf = np.empty(dc.chunks, dc.dtype)
    for idx in itertools.product(*_chunk_ranges(axes, dc.chunks)):
        src = tuple(slice(i * c - a, min(i * c + c, n) - a) for i, c, (a, _, _), n in zip(idx, dc.chunks, axes, dc.shape))
        piece = full[src]
        if piece.shape == dc.chunks:
            chunk = piece if piece.flags.c_contiguous else np.ascontiguousarray(piece)
        else:  # the array's far edge: zarr pads the chunk with the fill value
            buf[...] = dc.fill
            buf[tuple(slice(0, s) for s in piece.shape)] = piece
            chunk = buf
        if not dc.write_empty_chunks and _all_equal(chunk, dc.fill):
            dc.write_chunk_bytes(idx, None)
        else:
            dc.write_chunk_bytes(idx, dc.encode(chunk))


def _all_equal(chunk: np.ndarray, fill) -> bool:
    """zarr's test for a chunk it does not store (``NDBuffer.all_equal``): zeros of a float
    type compare by bit pattern (-0.0 is kept), NaN equals a NaN fill."""
    if chunk.dtype.kind in "uib":
        return not chunk.any() if fill == 0 else bool((chunk == fill).all())
    if chunk.dtype.kind == "f" and fill == 0:
        u = np.dtype(f"u{chunk.dtype.itemsize}")
        bits = np.asarray(fill, chunk.dtype).view(u)
        return not chunk.view(u).any() if bits == 0 else bool((chunk.view(u) == bits).all())
    return bool(np.array_equal(chunk, np.broadcast_to(np.asarray(fill, chunk.dtype), chunk.shape),
                               equal_nan=chunk.dtype.kind in "fc"))
