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


def _commit(group: zarr.Group, attrs: dict[str, Any]) -> None:
    """Write a group's attributes with ``complete: true``: the last step of every write."""
    group.attrs.put({**attrs, "complete": True})


def _invalidate(group: zarr.Group, attrs: dict[str, Any]) -> None:
    """Mark a group incomplete before touching its arrays."""
    group.attrs.put({**attrs, "complete": False})


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

        label_group = self._root.require_group(label_path(v, label))
        ip = label_group.require_group("interestpoints")
        _invalidate(ip, _BIGSTITCHER_IP_ATTRS)
        if "correspondences" in label_group:
            del label_group["correspondences"]
        ip.create_array("id", data=ids_a, chunks=_chunks(n, None), overwrite=True)
        ip.create_array("loc", data=loc, chunks=_chunks(n, 3), overwrite=True)
        ip.create_array(
            "intensities", data=per_point["intensity"], chunks=_chunks(n, None), overwrite=True
        )
        ip.create_array("dog", data=per_point["dog"], chunks=_chunks(n, None), overwrite=True)
        _commit(
            ip,
            {
                **_BIGSTITCHER_IP_ATTRS,
                "token": uuid.uuid4().hex,
                "n_points": int(n),
                "params": params,
                **({"border_margin_xyz": margin} if margin is not None else {}),
            },
        )

    def _points_attrs(self, view: ViewId, label: str) -> dict[str, Any]:
        attrs = self._attrs(self._group(f"{label_path(view, label)}/interestpoints"))
        return attrs if attrs.get("complete") is True else {}

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

        Raises
        ------
        PointsNotFoundError
            (a KeyError) if absent or if the last write did not complete.
        """
        v = as_view_id(view)
        check_label(label)
        path = f"{label_path(v, label)}/interestpoints"
        attrs = self._points_attrs(v, label)
        if not attrs:
            raise PointsNotFoundError(
                f"{self.uri}: no interest points for view {v} label {label!r} "
                "(never written, or the last write did not complete)"
            )
        group = self._group(path)
        assert group is not None
        n = int(attrs["n_points"])
        try:
            data = {name: group[name][...] for name in _POINT_ARRAYS}
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
        return StoredPoints(
            view=v,
            label=label,
            ids=data["id"].astype(np.int64, copy=False),
            loc_xyz=data["loc"].astype(np.float64, copy=False),
            intensity=data["intensities"].astype(np.float32, copy=False),
            dog=data["dog"].astype(np.float32, copy=False),
            params=str(attrs.get("params", "")),
            token=str(attrs.get("token", "")),
            border_margin_xyz=(tuple(float(m) for m in attrs["border_margin_xyz"])
                               if attrs.get("border_margin_xyz") is not None else None),
        )

    def delete_points(self, view: Any, label: str) -> None:
        """Remove a view's label group (points and correspondences); no error if absent."""
        self._require_writable()
        v = as_view_id(view)
        vg = self._group(view_key(v))
        if vg is not None and check_label(label) in vg:
            del vg[label]

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
        pa, pb = self._points_attrs(a, label), self._points_attrs(b, label)
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
        if not isinstance(params, str):
            raise PointStoreError(f"{where}: params must be a string")
        ids_a = self._root[f"{label_path(a, label)}/interestpoints/id"][...][ia]
        ids_b = self._root[f"{label_path(b, label)}/interestpoints/id"][...][ib]

        pair_token = uuid.uuid4().hex
        sides = [
            (a, b, np.stack([ia, ib], axis=1), np.stack([ids_a, ids_b], axis=1), pa, pb),
            (b, a, np.stack([ib, ia], axis=1), np.stack([ids_b, ids_a], axis=1), pb, pa),
        ]
        groups = []
        for own, other, *_ in sides:
            g = self._root.require_group(self._corr_path(own, other, label))
            _invalidate(g, {})
            groups.append(g)
        m = ia.shape[0]
        for g, (_, _, indices, ids, _, _) in zip(groups, sides):
            g.create_array(
                "ids", data=ids.astype(np.int64), chunks=_chunks(m, 2), overwrite=True
            )
            g.create_array("indices", data=indices, chunks=_chunks(m, 2), overwrite=True)
        for g, (own, other, _, _, own_pts, other_pts) in zip(groups, sides):
            _commit(
                g,
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

    def _pair_problem(self, a: ViewId, b: ViewId, label: str) -> str | None:
        """Why the pair's correspondences are not usable, or None if they are."""
        ga = self._group(self._corr_path(a, b, label))
        gb = self._group(self._corr_path(b, a, label))
        if ga is None and gb is None:
            return "never written"
        if ga is None or gb is None:
            missing = a if ga is None else b
            return (
                f"view {missing}'s half is missing "
                "(its points were re-detected after matching?)"
            )
        A, B = self._attrs(ga), self._attrs(gb)
        if A.get("complete") is not True or B.get("complete") is not True:
            return "the last write did not complete"
        if A.get("pair_token") != B.get("pair_token"):
            return "the two halves come from different matching runs"
        for v, own_attrs, other_attrs in ((a, A, B), (b, B, A)):
            current = self._points_attrs(v, label).get("token")
            if current is None:
                return f"view {v} has no complete points"
            recorded = (own_attrs.get("points_token"), other_attrs.get("other_points_token"))
            if recorded != (current, current):
                return f"view {v}'s points were rewritten after matching"
        return None

    def has_correspondences(self, view_a: Any, view_b: Any, label: str) -> bool:
        """True if complete, current correspondences exist for the pair and label."""
        a, b = as_view_id(view_a), as_view_id(view_b)
        return self._pair_problem(a, b, check_label(label)) is None

    def read_correspondences(self, view_a: Any, view_b: Any, label: str) -> Correspondences:
        """Read a pair's correspondences, oriented ``view_a -> view_b``.

        Raises
        ------
        CorrespondencesNotFoundError
            (a KeyError) if never written, interrupted, or stale because either
            view's points were rewritten after matching; the message says which.
        """
        a, b = as_view_id(view_a), as_view_id(view_b)
        check_label(label)
        problem = self._pair_problem(a, b, label)
        if problem is not None:
            raise CorrespondencesNotFoundError(
                f"{self.uri}: no usable correspondences for views {a} and {b} "
                f"label {label!r}: {problem}"
            )
        return self._read_half(a, b, label)

    def _read_half(self, a: ViewId, b: ViewId, label: str) -> Correspondences:
        g = self._group(self._corr_path(a, b, label))
        assert g is not None
        attrs = self._attrs(g)
        m = int(attrs["n"])
        indices = g["indices"][...].astype(np.int64, copy=False).reshape(m, 2)
        ids = g["ids"][...].astype(np.int64, copy=False).reshape(m, 2)
        return Correspondences(
            view_a=a,
            view_b=b,
            label=label,
            idx_a=indices[:, 0].copy(),
            idx_b=indices[:, 1].copy(),
            ids_a=ids[:, 0].copy(),
            ids_b=ids[:, 1].copy(),
            params=str(attrs.get("params", "")),
        )

    def correspondence_pairs(self, label: str) -> list[tuple[ViewId, ViewId]]:
        """Every pair ``(a, b)`` with ``a < b`` that has either half stored, usable or not."""
        check_label(label)
        pairs: set[tuple[ViewId, ViewId]] = set()
        for v, vg in self._view_groups():
            cg = self._group(f"{view_key(v)}/{label}/correspondences")
            if cg is None:
                continue
            for name, other_group in cg.groups():
                w = parse_view_key(name)
                if w is not None and w != v and label in other_group:
                    pairs.add((min(v, w), max(v, w)))
        return sorted(pairs)

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
        out: list[Correspondences] = []
        problems: list[str] = []
        for a, b in self.correspondence_pairs(label):
            problem = self._pair_problem(a, b, label)
            if problem is None:
                out.append(self._read_half(a, b, label))
            else:
                problems.append(f"{a}-{b}: {problem}")
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
