"""The zarr v3 interest-point and correspondence store (layout: see the package docstring).

Atomicity uses a completion marker, not a rename: S3 has no rename, and one
mechanism for local and S3 keeps the two paths identical. Every write first sets
``complete: false`` on the group's attributes, then writes the arrays, then writes
the attributes with ``complete: true`` last. Each attribute write replaces one
object (zarr's ``zarr.json``): a temp-file-and-replace locally, a single PUT on S3,
so a reader sees either the old or the new marker, never half of one. A group
whose marker is missing or false is treated as absent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
import zarr.errors

from . import batched
from .cache import READ_CACHE, frozen
from .create import create_root_if_absent, looks_half_created
from .layout import (
    SCHEMA_VERSION,
    STORE_ATTR,
    CorrespondencesNotFoundError,
    PointsNotFoundError,
    PointStoreError,
    ViewId,
    as_view_id,
    check_label,
    label_path,
    parse_view_key,
    view_key,
)
from .records import Correspondences, StoredPoints

__all__ = ["PointStore"]

# Rows per zarr chunk: one chunk holds a typical view's points (a few 1e4 to 1e5),
# and a 1e6-point view still splits into a handful of objects.
_ROWS_PER_CHUNK = 1 << 18

# BigStitcher's attributes on a view's `interestpoints` group (InterestPointsN5),
# copied so the zarr group reads like the N5 group it is exported to.
_BIGSTITCHER_IP_ATTRS = {"pointcloud": "1.0.0", "type": "list", "list version": "1.0.0"}
_BIGSTITCHER_CORR_ATTRS = {"correspondences": "1.0.0"}

_POINT_ARRAYS = ("id", "loc", "intensities", "dog")


def _points_key(uri: str, view: ViewId, label: str, token: str) -> tuple:
    return ("points", uri, view, label, token)


def _half_key(uri: str, own: ViewId, other: ViewId, label: str, pair_token: str) -> tuple:
    return ("corr", uri, own, other, label, pair_token)


def _nbytes(*arrays: np.ndarray) -> int:
    return sum(int(a.nbytes) for a in arrays)


def _pair_problem_of(
    a: ViewId, b: ViewId, A: dict[str, Any] | None, B: dict[str, Any] | None,
    points_a: dict[str, Any], points_b: dict[str, Any],
) -> str | None:
    """Why a pair is unusable given its halves' attributes (None: half absent) and its
    views' complete-points attributes (empty: no complete points); None if usable."""
    if A is None and B is None:
        return "never written"
    if A is None or B is None:
        missing = a if A is None else b
        return (
            f"view {missing}'s half is missing "
            "(its points were re-detected after matching?)"
        )
    if A.get("complete") is not True or B.get("complete") is not True:
        return "the last write did not complete"
    if A.get("pair_token") != B.get("pair_token"):
        return "the two halves come from different matching runs"
    for v, own_attrs, other_attrs, pts in ((a, A, B, points_a), (b, B, A, points_b)):
        current = pts.get("token")
        if current is None:
            return f"view {v} has no complete points"
        recorded = (own_attrs.get("points_token"), other_attrs.get("other_points_token"))
        if recorded != (current, current):
            return f"view {v}'s points were rewritten after matching"
    return None


async def _commit(root: zarr.AsyncGroup, path: str, attrs: dict[str, Any]) -> None:
    """Write a group's attributes with ``complete: true``: the last step of every write."""
    await batched.put_group_attrs(root, path, {**attrs, "complete": True})


async def _invalidate(root: zarr.AsyncGroup, path: str, attrs: dict[str, Any], parents: Iterable[str] = ()) -> None:
    """Mark a group incomplete before touching its arrays; ``parents`` (group paths
    that may be absent) are created with it."""
    await batched.put_group_attrs(root, path, {**attrs, "complete": False}, parents)


def _chunks(n_rows: int, n_cols: int | None) -> tuple[int, ...]:
    rows = max(1, min(n_rows, _ROWS_PER_CHUNK))
    return (rows,) if n_cols is None else (rows, n_cols)


def _as_index(values: Any, name: str, n_max: int, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise PointStoreError(f"{where}: {name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise PointStoreError(f"{where}: {name} must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=True)
    if arr.size and (arr.min() < 0 or arr.max() >= n_max):
        raise PointStoreError(
            f"{where}: {name} must index the view's {n_max} points, "
            f"got values in [{arr.min()}, {arr.max()}]"
        )
    return arr


class PointStore:
    """Interest points and correspondences of a dataset, in a zarr v3 hierarchy.

    Parameters
    ----------
    uri : str or path
        Location of the store, local path, ``file://`` or ``s3://`` (any fsspec URL).
        Convention: ``<dataset folder>/interestpoints.zarr``.
    storage_options : dict, optional
        Passed to fsspec for remote URIs (e.g. ``{"endpoint_url": ..., "key": ...}``
        for s3fs). Ignored for local paths. Default None.
    mode : {"r", "a"}
        ``"r"`` reads an existing store; ``"a"`` reads and writes, creating the store
        if absent. Default ``"r"``.

    Notes
    -----
    Writes of one view/label (points) or one view pair/label (correspondences) are
    atomic through a completion marker (module docstring). Different views and
    different pairs touch disjoint objects, so parallel tasks may write them
    concurrently; two tasks writing the *same* view/label or pair must not overlap.
    """

    def __init__(
        self,
        uri: str | Path,
        storage_options: dict[str, Any] | None = None,
        mode: Literal["r", "a"] = "r",
    ) -> None:
        if mode not in ("r", "a"):
            raise PointStoreError(f"mode must be 'r' or 'a', got {mode!r}")
        self.uri = str(uri)
        self.mode = mode
        self.storage_options = dict(storage_options) if storage_options else None
        self._root = self._open_root()
        self._aroot = zarr.AsyncGroup(metadata=self._root.metadata, store_path=self._root.store_path)

    # ------------------------------------------------------------------ opening
    def _open_root(self) -> zarr.Group:
        target: str = self.uri
        if target.startswith("file://"):
            target = target[len("file://") :]
        remote = "://" in target
        kwargs: dict[str, Any] = {}
        if remote and self.storage_options:
            kwargs["storage_options"] = self.storage_options
        if self.mode == "a":
            # Created whole (identity attribute included) and only if absent, so tasks
            # creating one store at once all open the same complete root.
            try:
                create_root_if_absent(self.uri, self.storage_options)
            except NotADirectoryError:
                raise PointStoreError(f"{self.uri}: is a file, not a point store") from None
        try:
            root = zarr.open_group(store=target, mode="r+" if self.mode == "a" else "r", zarr_format=3, **kwargs)
        except (FileNotFoundError, zarr.errors.NodeNotFoundError, KeyError):
            raise PointStoreError(f"{self.uri}: no point store here (opened read-only)") from None
        except zarr.errors.ContainsArrayError:
            raise PointStoreError(f"{self.uri}: is a zarr array, not a point store") from None
        info = root.attrs.get(STORE_ATTR)
        if info is None:
            children = list(root.keys())
            if self.mode == "a" and looks_half_created(children):
                # Empty, or only view groups: a root whose identity write was lost (an
                # interrupted or raced create by an earlier version). Its view groups keep
                # their own completion markers, so restoring the identity is safe.
                root.attrs.update({STORE_ATTR: {"schema_version": SCHEMA_VERSION}})
                return root
            raise PointStoreError(
                f"{self.uri}: not a point store (root attribute {STORE_ATTR!r} missing"
                + (f"; it holds {', '.join(sorted(children)[:3])}" if children else "") + ")"
            )
        version = info.get("schema_version") if isinstance(info, dict) else None
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise PointStoreError(
                f"{self.uri}: point store schema_version {version!r} is not readable by this "
                f"version (reads <= {SCHEMA_VERSION})"
            )
        return root

    # Tasks may ship a store handle to workers: pickle the address, reopen there.
    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "storage_options": self.storage_options, "mode": self.mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.uri = state["uri"]
        self.storage_options = state["storage_options"]
        self.mode = state["mode"]
        self._root = self._open_root()
        self._aroot = zarr.AsyncGroup(metadata=self._root.metadata, store_path=self._root.store_path)

    def __repr__(self) -> str:
        return f"PointStore({self.uri!r}, mode={self.mode!r})"

    def _require_writable(self) -> None:
        if self.mode != "a":
            raise PointStoreError(f"{self.uri}: opened read-only (mode='r'); open with mode='a'")

    def _group(self, path: str) -> zarr.Group | None:
        try:
            node = self._root[path]
        except KeyError:
            return None
        return node if isinstance(node, zarr.Group) else None

    @staticmethod
    def _attrs(group: zarr.Group | None) -> dict[str, Any]:
        return {} if group is None else dict(group.attrs)

    # ------------------------------------------------------------------ points
    def write_points(
        self,
        view: Any,
        label: str,
        ids: Any,
        loc_xyz: Any,
        intensity: Any = None,
        dog: Any = None,
        params: str = "",
        border_margin_xyz: Any = None,
    ) -> None:
        """Store (or replace) the interest points of one view and label.

        Replacing a view's points also removes that view's correspondences for the
        label (as BigStitcher's detection does); the partner views' halves then no
        longer validate, so the pair reads as absent until matching is re-run.

        Parameters
        ----------
        view : (int, int)
            ``(timepoint, setup)``.
        label : str
            Interest point label, e.g. ``"beads"``.
        ids : (N,) integer array
            Point ids, unique within the view. BigStitcher export needs ``0 <= id < 2**31``.
        loc_xyz : (N, 3) float array
            Positions in full-resolution view-voxel coordinates, x y z order (voxel).
        intensity, dog : (N,) float arrays, optional
            Image intensity and DoG response per point; None stores NaN. Default None.
        params : str
            Detection parameters for the XML ``params`` attribute. Default ``""``.
        border_margin_xyz : three floats, optional
            See :attr:`StoredPoints.border_margin_xyz`. Default None (not recorded).
        """
        self._require_writable()
        v = as_view_id(view)
        check_label(label)
        where = f"{self.uri}: points of view {v} label {label!r}"
        ids_a = np.asarray(ids)
        if ids_a.ndim != 1:
            raise PointStoreError(f"{where}: ids must be 1-D, got shape {ids_a.shape}")
        if ids_a.size and ids_a.dtype.kind not in "iu":
            raise PointStoreError(f"{where}: ids must be integers, got dtype {ids_a.dtype}")
        if ids_a.dtype.kind == "u" and ids_a.size and ids_a.max() > np.iinfo(np.int64).max:
            raise PointStoreError(f"{where}: ids exceed the int64 range")
        ids_a = ids_a.astype(np.int64)
        n = ids_a.shape[0]
        if np.unique(ids_a).size != n:
            raise PointStoreError(f"{where}: ids must be unique within a view")
        loc = np.asarray(loc_xyz, dtype=np.float64)
        if loc.shape != (n, 3):
            raise PointStoreError(f"{where}: loc_xyz must have shape ({n}, 3), got {loc.shape}")
        if not np.isfinite(loc).all():
            raise PointStoreError(f"{where}: loc_xyz contains NaN or infinite values")
        per_point = {}
        for name, values in (("intensity", intensity), ("dog", dog)):
            arr = (
                np.full(n, np.nan, dtype=np.float32)
                if values is None
                else np.asarray(values, dtype=np.float32)
            )
            if arr.shape != (n,):
                raise PointStoreError(f"{where}: {name} must have shape ({n},), got {arr.shape}")
            per_point[name] = arr
        if not isinstance(params, str):
            raise PointStoreError(f"{where}: params must be a string, got {type(params).__name__}")
        margin = None
        if border_margin_xyz is not None:
            margin = [float(m) for m in np.asarray(border_margin_xyz, dtype=np.float64).ravel()]
            if len(margin) != 3 or not all(np.isfinite(m) and m >= 0 for m in margin):
                raise PointStoreError(f"{where}: border_margin_xyz must be 3 finite values >= 0, got {margin}")

        lpath = label_path(v, label)
        ip_path = f"{lpath}/interestpoints"
        attrs = {
            **_BIGSTITCHER_IP_ATTRS,
            "token": uuid.uuid4().hex,
            "n_points": int(n),
            "params": params,
            **({"border_margin_xyz": margin} if margin is not None else {}),
        }
        arrays = {
            "id": (ids_a, _chunks(n, None)),
            "loc": (loc, _chunks(n, 3)),
            "intensities": (per_point["intensity"], _chunks(n, None)),
            "dog": (per_point["dog"], _chunks(n, None)),
        }

        async def write() -> None:
            # Marked incomplete (view and label groups created if absent) before anything
            # else; old correspondences and the arrays then go concurrently; marked complete last.
            await _invalidate(self._aroot, ip_path, _BIGSTITCHER_IP_ATTRS, parents=(view_key(v), lpath))
            await batched.gather([batched.delete_tree(self._aroot, f"{lpath}/correspondences"),
                                  batched.write_arrays(self._aroot, ip_path, arrays)])
            await _commit(self._aroot, ip_path, attrs)

        # Not put in the read cache: the process that detects is rarely the one that
        # reads (a Ray worker would hold points it never reads again).
        batched.run(write())

    def _cache_points(self, p: StoredPoints) -> None:
        if p.token:
            READ_CACHE.put(_points_key(self.uri, p.view, p.label, p.token), p,
                           _nbytes(p.ids, p.loc_xyz, p.intensity, p.dog))

    async def _apoints_attrs(self, view: ViewId, label: str) -> dict[str, Any]:
        attrs = await batched.node_attrs(self._aroot, f"{label_path(view, label)}/interestpoints")
        return attrs if attrs is not None and attrs.get("complete") is True else {}

    def _points_attrs(self, view: ViewId, label: str) -> dict[str, Any]:
        return batched.run(self._apoints_attrs(view, label))

    def point_info(self, view: Any, label: str) -> dict[str, Any]:
        """``{"n_points", "params", "token"}`` of a view's points without reading arrays.

        Raises
        ------
        PointsNotFoundError
            If absent or incomplete.
        """
        v = as_view_id(view)
        attrs = self._points_attrs(v, check_label(label))
        if not attrs:
            raise PointsNotFoundError(
                f"{self.uri}: no interest points for view {v} label {label!r} "
                "(never written, or the last write did not complete)"
            )
        return {
            "n_points": int(attrs["n_points"]),
            "params": str(attrs.get("params", "")),
            "token": str(attrs.get("token", "")),
        }

    def has_points(self, view: Any, label: str) -> bool:
        """True if complete interest points exist for the view and label."""
        return bool(self._points_attrs(as_view_id(view), check_label(label)))

    def read_points(self, view: Any, label: str) -> StoredPoints:
        """Read one view's interest points for a label.

        The arrays are read-only: repeated reads of the same write share them through
        the process-wide cache (:mod:`rhapso_core.pointstore.cache`); copy to modify.

        Raises
        ------
        PointsNotFoundError
            (a KeyError) if absent or if the last write did not complete.
        """
        v = as_view_id(view)
        check_label(label)
        return batched.run(self._aread_points(v, label))

    async def _aread_points(self, v: ViewId, label: str) -> StoredPoints:
        path = f"{label_path(v, label)}/interestpoints"
        attrs = await self._apoints_attrs(v, label)
        if not attrs:
            raise PointsNotFoundError(
                f"{self.uri}: no interest points for view {v} label {label!r} "
                "(never written, or the last write did not complete)"
            )
        token = str(attrs.get("token", ""))
        # The token names this write's content (renewed by every write), so the arrays
        # of an earlier read of the same token are these arrays.
        cached = READ_CACHE.get(_points_key(self.uri, v, label, token)) if token else None
        if cached is not None:
            return cached
        n = int(attrs["n_points"])
        try:
            data = await batched.read_arrays(self._aroot, path, _POINT_ARRAYS)
        except KeyError as exc:
            raise PointStoreError(
                f"{self.uri}/{path}: array {exc} missing in a complete group"
            ) from None
        expected = {"id": (n,), "loc": (n, 3), "intensities": (n,), "dog": (n,)}
        for name, shape in expected.items():
            if data[name].shape != shape:
                raise PointStoreError(
                    f"{self.uri}/{path}/{name}: shape {data[name].shape}, marker says {shape}"
                )
        points = StoredPoints(
            view=v,
            label=label,
            ids=frozen(data["id"].astype(np.int64, copy=False)),
            loc_xyz=frozen(data["loc"].astype(np.float64, copy=False)),
            intensity=frozen(data["intensities"].astype(np.float32, copy=False)),
            dog=frozen(data["dog"].astype(np.float32, copy=False)),
            params=str(attrs.get("params", "")),
            token=token,
            border_margin_xyz=(tuple(float(m) for m in attrs["border_margin_xyz"])
                               if attrs.get("border_margin_xyz") is not None else None),
        )
        self._cache_points(points)
        return points

    def delete_points(self, view: Any, label: str) -> None:
        """Remove a view's label group (points and correspondences); no error if absent."""
        self._require_writable()
        v = as_view_id(view)
        vg = self._group(view_key(v))
        if vg is not None and check_label(label) in vg:
            del vg[label]
        # Unreachable already (no token left to look up); dropped to give the memory back.
        # Keys: ("points", uri, view, label, token), ("corr", uri, own, other, label, pair_token).
        READ_CACHE.discard(lambda k: k[1] == self.uri and k[-2] == label
                           and (k[2] == v or (k[0] == "corr" and k[3] == v)))

    def _view_groups(self) -> Iterable[tuple[ViewId, zarr.Group]]:
        for name, group in self._root.groups():
            v = parse_view_key(name)
            if v is not None:
                yield v, group

    def list_views(self, label: str | None = None) -> list[ViewId]:
        """Views with complete points for ``label`` (any label if None), sorted."""
        if label is not None:
            check_label(label)
        out = []
        for v, _ in self._view_groups():
            labels = [label] if label is not None else self.list_labels(v)
            if any(self.has_points(v, lab) for lab in labels):
                out.append(v)
        return sorted(out)

    def list_labels(self, view: Any | None = None) -> list[str]:
        """Labels with complete points for ``view`` (for any view if None), sorted."""
        views = (
            [(as_view_id(view), self._group(view_key(view)))]
            if view is not None
            else list(self._view_groups())
        )
        labels: set[str] = set()
        for v, vg in views:
            if vg is None:
                continue
            for lab in vg.group_keys():
                if self._points_attrs(v, lab):
                    labels.add(lab)
        return sorted(labels)

    # ---------------------------------------------------------- correspondences
    @staticmethod
    def _corr_path(own: ViewId, other: ViewId, label: str) -> str:
        return f"{label_path(own, label)}/correspondences/{label_path(other, label)}"

    def write_correspondences(
        self,
        view_a: Any,
        view_b: Any,
        label: str,
        idx_a: Any,
        idx_b: Any,
        params: str = "",
    ) -> None:
        """Store (or replace) the correspondences of a view pair for a label.

        Both directions are written, each under its own view (BigStitcher keeps one
        list per view). A re-run replaces the pair; it never appends.

        Parameters
        ----------
        view_a, view_b : (int, int)
            The two views, ``(timepoint, setup)``; must differ.
        label : str
            Interest point label of both views' points.
        idx_a, idx_b : (M,) integer arrays
            Row ``k`` matches point ``idx_a[k]`` of ``view_a`` with point ``idx_b[k]``
            of ``view_b``; indices into the arrays of :meth:`read_points`.
        params : str
            Matching parameters, kept for provenance. Default ``""``.
        """
        self._require_writable()
        a, b = as_view_id(view_a), as_view_id(view_b)
        check_label(label)
        where = f"{self.uri}: correspondences {a}-{b} label {label!r}"
        if a == b:
            raise PointStoreError(f"{where}: a view cannot correspond with itself")
        if not isinstance(params, str):
            raise PointStoreError(f"{where}: params must be a string")
        batched.run(self._awrite_correspondences(a, b, label, idx_a, idx_b, params, where))

    async def _aids(self, v: ViewId, label: str, attrs: dict[str, Any]) -> np.ndarray:
        """The point ids of a view whose complete-points attributes are ``attrs``."""
        token = str(attrs.get("token", ""))
        cached = READ_CACHE.get(_points_key(self.uri, v, label, token)) if token else None
        if cached is not None:
            return cached.ids
        return (await batched.read_arrays(self._aroot, f"{label_path(v, label)}/interestpoints", ["id"]))["id"]

    async def _awrite_correspondences(
        self, a: ViewId, b: ViewId, label: str, idx_a: Any, idx_b: Any, params: str, where: str
    ) -> None:
        pa, pb = await batched.gather([self._apoints_attrs(a, label), self._apoints_attrs(b, label)])
        for v, attrs in ((a, pa), (b, pb)):
            if not attrs:
                raise PointsNotFoundError(
                    f"{where}: view {v} has no complete points for label {label!r}; "
                    "write points before correspondences"
                )
        ia = _as_index(idx_a, "idx_a", int(pa["n_points"]), where)
        ib = _as_index(idx_b, "idx_b", int(pb["n_points"]), where)
        if ia.shape != ib.shape:
            raise PointStoreError(
                f"{where}: idx_a and idx_b differ in length ({ia.size} vs {ib.size})"
            )
        all_ids_a, all_ids_b = await batched.gather([self._aids(a, label, pa), self._aids(b, label, pb)])
        ids_a = all_ids_a.astype(np.int64, copy=False)[ia]
        ids_b = all_ids_b.astype(np.int64, copy=False)[ib]

        pair_token = uuid.uuid4().hex
        m = ia.shape[0]
        sides = [
            (a, b, np.stack([ia, ib], axis=1), np.stack([ids_a, ids_b], axis=1), pa, pb),
            (b, a, np.stack([ib, ia], axis=1), np.stack([ids_b, ids_a], axis=1), pb, pa),
        ]
        paths = [self._corr_path(own, other, label) for own, other, *_ in sides]
        # Both halves marked incomplete (groups created if absent), then all four arrays,
        # then both marked complete: each step waits for the previous one to land.
        # The views' label groups exist (their points were just read); below them the
        # correspondences group and the partner's group may not.
        await batched.gather(
            _invalidate(self._aroot, path, {}, parents=(f"{label_path(own, label)}/correspondences",
                                                        f"{label_path(own, label)}/correspondences/{view_key(other)}"))
            for path, (own, other, *_) in zip(paths, sides)
        )
        await batched.gather(
            batched.write_arrays(self._aroot, path, {"ids": (ids, _chunks(m, 2)), "indices": (indices, _chunks(m, 2))})
            for path, (_, _, indices, ids, _, _) in zip(paths, sides)
        )
        await batched.gather(
            _commit(
                self._aroot,
                path,
                {
                    "view": list(own),
                    "other_view": list(other),
                    "label": label,
                    "other_label": label,
                    "n": int(m),
                    "pair_token": pair_token,
                    "points_token": own_pts["token"],
                    "other_points_token": other_pts["token"],
                    "params": params,
                },
            )
            for path, (own, other, _, _, own_pts, other_pts) in zip(paths, sides)
        )

    def _cache_half(self, c: Correspondences, pair_token: str) -> None:
        if pair_token:
            READ_CACHE.put(_half_key(self.uri, c.view_a, c.view_b, c.label, pair_token), c,
                           _nbytes(c.idx_a, c.idx_b, c.ids_a, c.ids_b))

    async def _apair_state(
        self, pairs: list[tuple[ViewId, ViewId]], label: str
    ) -> tuple[dict[tuple[ViewId, ViewId], dict[str, Any] | None], dict[ViewId, dict[str, Any]]]:
        """Every half's attributes (None: absent) and every view's complete-points
        attributes, each object read once and all concurrently."""
        halves = sorted({h for a, b in pairs for h in ((a, b), (b, a))})
        views = sorted({v for pair in pairs for v in pair})
        results = await batched.gather(
            [batched.node_attrs(self._aroot, self._corr_path(own, other, label)) for own, other in halves]
            + [self._apoints_attrs(v, label) for v in views]
        )
        return dict(zip(halves, results[: len(halves)])), dict(zip(views, results[len(halves):]))

    async def _apair_problems(self, pairs: list[tuple[ViewId, ViewId]], label: str) -> tuple[list[str | None], dict]:
        half_attrs, point_attrs = await self._apair_state(pairs, label)
        problems = [
            _pair_problem_of(a, b, half_attrs[(a, b)], half_attrs[(b, a)], point_attrs[a], point_attrs[b])
            for a, b in pairs
        ]
        return problems, half_attrs

    def _pair_problem(self, a: ViewId, b: ViewId, label: str) -> str | None:
        """Why the pair's correspondences are not usable, or None if they are."""
        return batched.run(self._apair_problems([(a, b)], label))[0][0]

    def has_correspondences(self, view_a: Any, view_b: Any, label: str) -> bool:
        """True if complete, current correspondences exist for the pair and label."""
        a, b = as_view_id(view_a), as_view_id(view_b)
        return self._pair_problem(a, b, check_label(label)) is None

    def read_correspondences(self, view_a: Any, view_b: Any, label: str) -> Correspondences:
        """Read a pair's correspondences, oriented ``view_a -> view_b`` (read-only arrays,
        shared through the process-wide cache as :meth:`read_points`'s).

        Raises
        ------
        CorrespondencesNotFoundError
            (a KeyError) if never written, interrupted, or stale because either
            view's points were rewritten after matching; the message says which.
        """
        a, b = as_view_id(view_a), as_view_id(view_b)
        check_label(label)

        async def read() -> Correspondences:
            (problem,), half_attrs = await self._apair_problems([(a, b)], label)
            if problem is not None:
                raise CorrespondencesNotFoundError(
                    f"{self.uri}: no usable correspondences for views {a} and {b} "
                    f"label {label!r}: {problem}"
                )
            return await self._aread_half(a, b, label, half_attrs[(a, b)])

        return batched.run(read())

    async def _aread_half(self, a: ViewId, b: ViewId, label: str, attrs: dict[str, Any]) -> Correspondences:
        token = str(attrs.get("pair_token") or "")
        cached = READ_CACHE.get(_half_key(self.uri, a, b, label, token)) if token else None
        if cached is not None:
            return cached
        m = int(attrs["n"])
        data = await batched.read_arrays(self._aroot, self._corr_path(a, b, label), ["indices", "ids"])
        indices = data["indices"].astype(np.int64, copy=False).reshape(m, 2)
        ids = data["ids"].astype(np.int64, copy=False).reshape(m, 2)
        half = Correspondences(
            view_a=a,
            view_b=b,
            label=label,
            idx_a=frozen(indices[:, 0].copy()),
            idx_b=frozen(indices[:, 1].copy()),
            ids_a=frozen(ids[:, 0].copy()),
            ids_b=frozen(ids[:, 1].copy()),
            params=str(attrs.get("params", "")),
        )
        self._cache_half(half, token)
        return half

    async def _acorrespondence_pairs(self, label: str) -> list[tuple[ViewId, ViewId]]:
        # Names from directory listings, then one metadata read per half found: the
        # same pairs as walking the groups, without opening each group on the way.
        views = [v for v in map(parse_view_key, await batched.list_names(self._aroot, "")) if v is not None]
        partner_lists = await batched.gather(
            batched.list_names(self._aroot, f"{label_path(v, label)}/correspondences") for v in views
        )
        candidates = [
            (v, w) for v, names in zip(views, partner_lists)
            for w in map(parse_view_key, names) if w is not None and w != v
        ]
        present = await batched.gather(
            batched.node_exists(self._aroot, self._corr_path(v, w, label)) for v, w in candidates
        )
        return sorted({(min(v, w), max(v, w)) for (v, w), ok in zip(candidates, present) if ok})

    def correspondence_pairs(self, label: str) -> list[tuple[ViewId, ViewId]]:
        """Every pair ``(a, b)`` with ``a < b`` that has either half stored, usable or not."""
        check_label(label)
        return batched.run(self._acorrespondence_pairs(label))

    def read_all_correspondences(
        self, label: str, on_invalid: Literal["raise", "skip"] = "raise"
    ) -> list[Correspondences]:
        """All usable pairs of a label for the solver, each once with ``view_a < view_b``.

        Parameters
        ----------
        label : str
            Interest point label.
        on_invalid : {"raise", "skip"}
            A stored pair that is interrupted or stale raises (default, so a solve
            never silently loses links) or is left out with ``"skip"``.
        """
        if on_invalid not in ("raise", "skip"):
            raise PointStoreError(f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
        check_label(label)

        async def read() -> tuple[list[Correspondences], list[str]]:
            pairs = await self._acorrespondence_pairs(label)
            problems, half_attrs = await self._apair_problems(pairs, label)
            usable = [pair for pair, problem in zip(pairs, problems) if problem is None]
            out = await batched.gather(self._aread_half(a, b, label, half_attrs[(a, b)]) for a, b in usable)
            return out, [f"{a}-{b}: {p}" for (a, b), p in zip(pairs, problems) if p is not None]

        out, problems = batched.run(read())
        if problems and on_invalid == "raise":
            shown = "; ".join(problems[:5])
            if len(problems) > 5:
                shown += f"; ... ({len(problems)} in all)"
            raise PointStoreError(
                f"{self.uri}: unusable correspondences for label {label!r}: {shown}. "
                "Re-run matching for these pairs, or pass on_invalid='skip'"
            )
        return out

    def delete_correspondences(self, view_a: Any, view_b: Any, label: str) -> None:
        """Remove both halves of a pair's correspondences; no error if absent."""
        self._require_writable()
        a, b = as_view_id(view_a), as_view_id(view_b)
        check_label(label)
        for own, other in ((a, b), (b, a)):
            cg = self._group(f"{label_path(own, label)}/correspondences")
            key = label_path(other, label)
            if cg is not None and key in cg:
                del cg[key]
