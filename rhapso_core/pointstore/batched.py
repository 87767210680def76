"""Zarr operations of the point store as coroutines, so one store call is one trip to zarr's loop.

zarr's synchronous API runs every operation (open a node, put its attributes,
create an array, read it) as a separate round trip to zarr's own event loop
thread, one after another. A pair write was about fifteen of them, a read of a
view's points nine. Here a whole store call is one coroutine, handed to zarr's
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
from typing import Any, TypeVar

import numpy as np
import zarr
from zarr.core.group import GroupMetadata
from zarr.core.sync import sync

T = TypeVar("T")

__all__ = ["run", "gather", "node_attrs", "read_arrays", "put_group_attrs", "write_arrays", "delete_tree", "list_names"]


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
    # KeyError first: the message names the missing array, whatever else failed.
    for name, r in zip(names, results):
        if isinstance(r, KeyError):
            raise KeyError(name)
        if isinstance(r, BaseException):
            raise r
    return dict(zip(names, results))


async def put_group_attrs(
    root: zarr.AsyncGroup, path: str, attrs: dict[str, Any], ensure_parents: bool = False
) -> None:
    """Replace the group at ``path``'s attributes with ``attrs`` in one metadata write.

    The same object zarr's ``group.attrs.put`` writes (the group's ``zarr.json``),
    without reading the group first. With ``ensure_parents`` the group and any
    missing parent group are created, as ``require_group`` would; its children are
    left alone.
    """
    group = zarr.AsyncGroup(
        metadata=GroupMetadata(attributes=dict(attrs), zarr_format=3),
        store_path=root.store_path / path,
    )
    # zarr's own metadata writer (what require_group and attrs.put call); private but
    # the one place parents are created without first reading the node.
    await group._save_metadata(ensure_parents=ensure_parents)


async def write_arrays(
    root: zarr.AsyncGroup, group: str, arrays: dict[str, tuple[np.ndarray, tuple[int, ...]]]
) -> None:
    """Create (replacing) the arrays ``{name: (data, chunks)}`` under ``group``, concurrently.

    The same metadata and chunks as ``Group.create_array(name, data=..., chunks=...,
    overwrite=True)`` with zarr's defaults.
    """
    parent = zarr.AsyncGroup(metadata=GroupMetadata(zarr_format=3), store_path=root.store_path / group)
    await gather(
        parent.create_array(name, data=data, chunks=chunks, overwrite=True) for name, (data, chunks) in arrays.items()
    )


async def delete_tree(root: zarr.AsyncGroup, path: str) -> None:
    """Remove everything under ``path``; nothing happens if it is absent."""
    await (root.store_path / path).delete_dir()


async def list_names(root: zarr.AsyncGroup, path: str) -> list[str]:
    """Names directly under ``path`` (child nodes and metadata files alike); empty if absent."""
    sp = root.store_path / path
    return [n async for n in sp.store.list_dir(sp.path)]
