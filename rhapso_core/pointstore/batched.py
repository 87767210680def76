"""Zarr operations of the point store as coroutines, so one store call is one trip to zarr's loop.

zarr's synchronous API runs every operation (open a node, put its attributes,
create an array, read it) as a separate round trip to zarr's own event loop
thread, one after another: a pair write made about sixteen of them, a read of a
view's points ten. Here a whole store call is one coroutine, handed to zarr's
loop once (:func:`run`), and the operations that do not depend on each other run
concurrently inside it (``asyncio.gather``): the arrays of one view, the two
halves of a pair, the attributes of every pair of a solve.

Only what the layout's atomicity needs is ordered (see ``store.py``): a group is
marked incomplete before any of its arrays is written and marked complete after
all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import zarr
from zarr.core.buffer import Buffer, default_buffer_prototype
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.group import GroupMetadata
from zarr.core.sync import sync
from zarr.storage import MemoryStore, StorePath

ZARR_JSON = "zarr.json"

T = TypeVar("T")

__all__ = [
    "run", "gather", "node_attrs", "node_exists", "read_arrays", "put_group_attrs", "write_arrays", "delete_tree",
    "list_names",
]


def run(coro: Awaitable[T]) -> T:
    """Run ``coro`` on zarr's event loop (the one its synchronous API uses) and return its result."""
    return sync(coro)


async def gather(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Await all of ``aws`` concurrently; raise the first error only once all have ended.

    ``asyncio.gather`` raises as soon as one fails and leaves the others running, so a
    failed step could still be writing after the store call returned (or while the
    next step starts).
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return list(results)


async def node_attrs(root: zarr.AsyncGroup, path: str) -> dict[str, Any] | None:
    """The attributes of the group at ``path``; None if nothing is there (or an array is)."""
    try:
        node = await root.getitem(path)
    except KeyError:
        return None
    return dict(node.attrs) if isinstance(node, zarr.AsyncGroup) else None


async def node_exists(root: zarr.AsyncGroup, path: str) -> bool:
    """True if a group or array is at ``path``."""
    try:
        await root.getitem(path)
    except KeyError:
        return False
    return True


async def _read_one(root: zarr.AsyncGroup, path: str) -> np.ndarray:
    node = await root.getitem(path)
    if not isinstance(node, zarr.AsyncArray):
        raise KeyError(path)
    return np.asarray(await node.getitem(...))


async def read_arrays(root: zarr.AsyncGroup, group: str, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the group at ``group``, read whole and concurrently.

    Raises KeyError naming the first missing array.
    """
    names = list(names)
    results = await asyncio.gather(*(_read_one(root, f"{group}/{n}") for n in names), return_exceptions=True)
    # A missing array first (the caller names it in its message), then any other error.
    for name, r in zip(names, results):
        if isinstance(r, KeyError):
            raise KeyError(name)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return dict(zip(names, results))


def _group_document(attrs: dict[str, Any] | None = None) -> Buffer:
    # The bytes zarr writes for a v3 group (its zarr.json), from zarr's own metadata class.
    docs = GroupMetadata(attributes=dict(attrs or {}), zarr_format=3).to_buffer_dict(default_buffer_prototype())
    return docs[ZARR_JSON]


async def put_group_attrs(
    root: zarr.AsyncGroup, path: str, attrs: dict[str, Any], parents: Iterable[str] = ()
) -> None:
    """Replace the attributes of the group at ``path`` with ``attrs``: one object written.

    The object zarr's ``group.attrs.put`` writes (the group's ``zarr.json``), without
    reading the group first. ``parents``: group paths that may not exist yet, created
    empty if absent (as ``require_group`` creates them) and left alone otherwise.
    zarr's own ``ensure_parents`` would instead read and try to create every
    ancestor up to the root, twice as many store operations as the write itself.
    """
    await gather(
        [(root.store_path / path / ZARR_JSON).set(_group_document(attrs))]
        + [(root.store_path / p / ZARR_JSON).set_if_not_exists(_group_document()) for p in parents]
    )


# zarr's array metadata for each (dtype, trailing shape), as create_array derives it
# from the data: only the shape and the chunk shape vary between writes, and deriving
# the rest (dtype, codecs, fill value) is most of create_array's cost on small arrays.
_TEMPLATES: dict[tuple[str, tuple[int, ...]], ArrayV3Metadata] = {}


async def _template(dtype: np.dtype, trailing: tuple[int, ...]) -> ArrayV3Metadata:
    key = (dtype.str, trailing)
    meta = _TEMPLATES.get(key)
    if meta is None:
        scratch = zarr.AsyncGroup(metadata=GroupMetadata(zarr_format=3), store_path=StorePath(MemoryStore()))
        sample = np.zeros((1, *trailing), dtype=dtype)
        meta = (await scratch.create_array("t", data=sample, chunks=sample.shape, overwrite=True)).metadata
        _TEMPLATES[key] = meta  # a racing thread stores an equal value
    return meta


async def _encoded(data: np.ndarray, chunks: tuple[int, ...]) -> dict[str, Buffer]:
    """The objects (metadata and chunks, keyed relative to the array) that zarr's
    ``create_array(data=data, chunks=chunks)`` with its defaults would write.

    Encoded by zarr itself, into memory: its metadata of the same dtype with this
    shape and chunk shape, and its chunk writer.
    """
    meta = replace(await _template(data.dtype, tuple(data.shape[1:])), shape=data.shape,
                   chunk_grid=RegularChunkGrid(chunk_shape=chunks))
    objects: dict[str, Buffer] = {}
    await zarr.AsyncArray(metadata=meta, store_path=StorePath(MemoryStore(objects))).setitem(..., data)
    objects.update(meta.to_buffer_dict(default_buffer_prototype()))
    return objects


async def write_arrays(
    root: zarr.AsyncGroup, group: str, arrays: dict[str, tuple[np.ndarray, tuple[int, ...]]]
) -> None:
    """Create (replacing) the arrays ``{name: (data, chunks)}`` of an existing group, concurrently.

    Writes the same objects as ``Group.create_array(name, data=..., chunks=...,
    overwrite=True)`` with zarr's defaults (encoded by that very call, into memory):
    the old array removed, then its metadata and chunks. Not the parent checks that
    call makes on every ancestor: the caller has just written the group.
    """

    async def one(name: str, data: np.ndarray, chunks: tuple[int, ...]) -> None:
        objects, _ = await asyncio.gather(_encoded(data, chunks), delete_tree(root, f"{group}/{name}"))
        target = root.store_path / group / name
        await gather((target / key).set(buf) for key, buf in objects.items())

    await gather(one(name, data, chunks) for name, (data, chunks) in arrays.items())


async def delete_tree(root: zarr.AsyncGroup, path: str) -> None:
    """Remove everything under ``path``; nothing happens if it is absent."""
    await (root.store_path / path).delete_dir()


async def list_names(root: zarr.AsyncGroup, path: str) -> list[str]:
    """Names directly under ``path`` (child nodes and metadata files alike); empty if absent."""
    sp = root.store_path / path
    return [n async for n in sp.store.list_dir(sp.path)]
