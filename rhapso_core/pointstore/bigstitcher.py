"""BigStitcher interop: ``interestpoints.n5`` export/import and the XML's point entries.

What BigStitcher writes and reads (multiview-reconstruction ``InterestPointsN5``,
BigStitcher-Spark ``SparkInterestPointDetection``), per view and label, under the
container ``<dataset folder>/interestpoints.n5`` (root attribute ``"n5": "4.0.0"``):

``tpId_{t}_viewSetupId_{s}/{label}/interestpoints``
    group attributes ``pointcloud: "1.0.0"``, ``type: "list"``, ``list version: "1.0.0"``;
    ``id``: uint64, dimensions ``[1, N]``, blockSize ``[1, 300000]``;
    ``loc``: float64, dimensions ``[3, N]`` (x y z, full-resolution view voxels),
    blockSize ``[3, 300000]``;
    ``intensities`` (optional): float32, dimensions ``[1, N]``, blockSize ``[1, 300000]``;
    an empty list is declared with dimensions ``[0]`` and blockSize ``[1]``; gzip blocks.
``tpId_{t}_viewSetupId_{s}/{label}/correspondences``
    group attributes ``correspondences: "1.0.0"`` and ``idMap`` mapping
    ``"{t},{s},{label}"`` of each partner view to an integer;
    ``data``: uint64, dimensions ``[3, M]``, blockSize ``[1, 300000]``, each row
    (own point id, partner point id, partner's idMap value); absent when M = 0
    (then ``idMap`` is ``{}``).

BigStitcher reads ids as Java ints, so export requires ``0 <= id < 2**31``. We also
write our DoG values as an extra ``dog`` dataset (float32, like ``intensities``),
which BigStitcher ignores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .layout import PointStoreError, ViewId, check_label, label_path, parse_view_key, view_key
from .n5 import N5Container
from .records import Correspondences, StoredPoints, ViewInterestPointsEntry
from .store import PointStore

__all__ = [
    "BIGSTITCHER_BLOCK_SIZE",
    "N5Contents",
    "export_n5",
    "read_n5",
    "view_interest_points_entries",
]

#: BigStitcher's ``InterestPointsN5.defaultBlockSize`` (points per N5 block).
BIGSTITCHER_BLOCK_SIZE = 300_000

_IP_ATTRS = {"pointcloud": "1.0.0", "type": "list", "list version": "1.0.0"}
_CORR_ATTRS = {"correspondences": "1.0.0"}
_JAVA_INT_MAX = 2**31 - 1


def _protocol(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def _id_map_key(view: ViewId, label: str) -> str:
    return f"{view[0]},{view[1]},{label}"


def _parse_id_map_key(key: str, where: str) -> tuple[ViewId, str]:
    # BigStitcher splits at the first two commas; the label may itself contain commas.
    parts = key.split(",", 2)
    try:
        return (int(parts[0]), int(parts[1])), parts[2]
    except (IndexError, ValueError):
        raise PointStoreError(
            f"{where}: idMap key {key!r} is not 'timepoint,setup,label'"
        ) from None


def view_interest_points_entries(
    store: PointStore, label: str | None = None
) -> list[ViewInterestPointsEntry]:
    """What the XML's ``<ViewInterestPoints>`` section should list for the store.

    One entry per view and label with complete points (``label`` None: all labels),
    sorted by label, timepoint, setup. ``path`` is BigStitcher's element text, e.g.
    ``tpId_0_viewSetupId_0/beads``, relative to ``interestpoints.n5`` next to the XML.
    """
    labels = [check_label(label)] if label is not None else store.list_labels()
    entries = []
    for lab in labels:
        for v in store.list_views(lab):
            info = store.point_info(v, lab)
            entries.append(
                ViewInterestPointsEntry(v[0], v[1], lab, info["params"], label_path(v, lab))
            )
    return entries


def _write_list(
    n5: N5Container, path: str, values: np.ndarray, width: int, block: int, compression: str
) -> None:
    """Write an (N, width) table as BigStitcher's [width, N] dataset (``[0]`` if empty)."""
    if values.shape[0] == 0:
        n5.write_dataset(path, values.reshape(0), [1], dimensions=[0], compression=compression)
    else:
        n5.write_dataset(path, values.reshape(-1, width), [width, block], compression=compression)


def export_n5(
    store: PointStore,
    out_uri: str,
    storage_options: dict[str, Any] | None = None,
    *,
    labels: list[str] | None = None,
    block_size: int = BIGSTITCHER_BLOCK_SIZE,
    compression: str = "gzip",
    include_dog: bool = True,
    on_invalid: Literal["raise", "skip"] = "raise",
) -> list[ViewInterestPointsEntry]:
    """Write the store's points and correspondences in BigStitcher's ``interestpoints.n5`` layout.

    Each exported view/label group is replaced as a whole (as BigStitcher does);
    other groups in the container are left alone. The export is not atomic: re-run
    it after an interruption.

    Parameters
    ----------
    store : PointStore
        Source store.
    out_uri : str
        N5 container, normally ``<dataset folder>/interestpoints.n5`` (local or s3://).
    storage_options : dict, optional
        fsspec options for ``out_uri``; default: the store's own when both are
        remote with the same protocol, else none.
    labels : list of str, optional
        Labels to export; default all labels with points.
    block_size : int
        Points per N5 block. Default 300000 (BigStitcher's).
    compression : {"gzip", "raw"}
        Block compression. Default ``"gzip"`` (BigStitcher's).
    include_dog : bool
        Also write the ``dog`` dataset (ignored by BigStitcher). Default True.
    on_invalid : {"raise", "skip"}
        What to do with stale or interrupted correspondences (see
        :meth:`PointStore.read_all_correspondences`). Default ``"raise"``.

    Returns
    -------
    list of ViewInterestPointsEntry
        The XML entries matching what was written.
    """
    if block_size < 1:
        raise PointStoreError(f"block_size must be >= 1, got {block_size}")
    opts = storage_options
    if opts is None and _protocol(out_uri) == _protocol(store.uri) != "file":
        opts = store.storage_options  # same remote kind: reuse the store's credentials
    n5 = N5Container(out_uri, opts)
    n5.create_root()
    labels = [check_label(x) for x in labels] if labels is not None else store.list_labels()
    entries: list[ViewInterestPointsEntry] = []
    for label in labels:
        views = store.list_views(label)
        # Per view: partner -> (own ids, partner ids), built from each pair's a->b half.
        links: dict[ViewId, dict[tuple[ViewId, str], tuple[np.ndarray, np.ndarray]]] = {}
        for c in store.read_all_correspondences(label, on_invalid=on_invalid):
            links.setdefault(c.view_a, {})[(c.view_b, label)] = (c.ids_a, c.ids_b)
            links.setdefault(c.view_b, {})[(c.view_a, label)] = (c.ids_b, c.ids_a)
        for v in views:
            pts = store.read_points(v, label)
            where = f"{out_uri}: view {v} label {label!r}"
            if pts.ids.size and (pts.ids.min() < 0 or pts.ids.max() > _JAVA_INT_MAX):
                raise PointStoreError(f"{where}: BigStitcher needs point ids in [0, 2**31 - 1]")
            base = label_path(v, label)
            n5.create_group(view_key(v))
            n5.create_group(base)
            ip = f"{base}/interestpoints"
            n5.remove(ip)
            n5.create_group(ip, dict(_IP_ATTRS))
            tables = [
                ("id", pts.ids.astype(np.uint64), 1),
                ("loc", pts.loc_xyz.astype(np.float64), 3),
                ("intensities", pts.intensity.astype(np.float32), 1),
            ]
            if include_dog:
                tables.append(("dog", pts.dog.astype(np.float32), 1))
            for name, values, width in tables:
                _write_list(n5, f"{ip}/{name}", values, width, block_size, compression)

            partners = sorted(links.get(v, {}))
            id_map = {_id_map_key(w, lab): k for k, (w, lab) in enumerate(partners)}
            cg = f"{base}/correspondences"
            n5.remove(cg)
            n5.create_group(cg, {**_CORR_ATTRS, "idMap": id_map})
            rows = [
                np.stack(
                    [own, other, np.full(own.shape, id_map[_id_map_key(w, lab)], dtype=np.int64)],
                    axis=1,
                )
                for (w, lab) in partners
                for own, other in [links[v][(w, lab)]]
            ]
            data = np.concatenate(rows).astype(np.uint64) if rows else np.zeros((0, 3), np.uint64)
            if data.shape[0]:
                # BigStitcher: dimensions [3, M] with one column per block ([1, blockSize]).
                n5.write_dataset(f"{cg}/data", data, [1, block_size], compression=compression)
            entries.append(ViewInterestPointsEntry(v[0], v[1], label, pts.params, base))
    return entries


@dataclass
class N5Contents:
    """What :func:`read_n5` found.

    ``points[(view, label)]`` holds the points (``dog`` NaN if not stored);
    ``correspondences[(view, label)][(other_view, other_label)]`` holds
    ``(own ids, other ids)`` int64 arrays in stored order.
    """

    points: dict[tuple[ViewId, str], StoredPoints] = field(default_factory=dict)
    correspondences: dict[
        tuple[ViewId, str], dict[tuple[ViewId, str], tuple[np.ndarray, np.ndarray]]
    ] = field(default_factory=dict)

    def correspondences_between(
        self, view_a: ViewId, view_b: ViewId, label: str
    ) -> Correspondences:
        """A pair's ids as a :class:`Correspondences` (indices resolved through the ids)."""
        own, other = self.correspondences[(view_a, label)][(view_b, label)]
        pa, pb = self.points[(view_a, label)], self.points[(view_b, label)]
        return Correspondences(
            view_a=view_a,
            view_b=view_b,
            label=label,
            idx_a=_index_of(pa.ids, own),
            idx_b=_index_of(pb.ids, other),
            ids_a=own,
            ids_b=other,
        )


def _index_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of ``wanted`` ids in ``ids`` (ids unique within a view)."""
    if wanted.size == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.clip(np.searchsorted(ids, wanted, sorter=order), 0, max(ids.size - 1, 0))
    if ids.size == 0 or not np.array_equal(ids[order[pos]], wanted):
        raise PointStoreError("correspondences refer to point ids that the view does not have")
    return order[pos].astype(np.int64)


def read_n5(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    labels: list[str] | None = None,
) -> N5Contents:
    """Read a BigStitcher ``interestpoints.n5`` container (ours or BigStitcher's).

    Parameters
    ----------
    uri : str
        Container root (local path or fsspec URL).
    storage_options : dict, optional
        fsspec options. Default None.
    labels : list of str, optional
        Labels to read; default all found.
    """
    n5 = N5Container(uri, storage_options)
    if not n5.exists("attributes.json") and not n5.exists(""):
        raise PointStoreError(f"{uri}: no N5 container here")
    out = N5Contents()
    for vkey in n5.list(""):
        v = parse_view_key(vkey)
        if v is None:
            continue
        for label in n5.list(vkey):
            if labels is not None and label not in labels:
                continue
            base = f"{vkey}/{label}"
            ip = f"{base}/interestpoints"
            attrs = n5.get_attributes(ip)
            if attrs.get("type") != "list":
                continue
            ids = n5.read_dataset(f"{ip}/id").reshape(-1).astype(np.int64)
            n = ids.size
            loc = n5.read_dataset(f"{ip}/loc").reshape(n, 3).astype(np.float64)
            children = set(n5.list(ip))
            intensity = (
                n5.read_dataset(f"{ip}/intensities").reshape(n).astype(np.float32)
                if "intensities" in children
                else np.full(n, np.nan, np.float32)
            )
            dog = (
                n5.read_dataset(f"{ip}/dog").reshape(n).astype(np.float32)
                if "dog" in children
                else np.full(n, np.nan, np.float32)
            )
            out.points[(v, label)] = StoredPoints(v, label, ids, loc, intensity, dog)

            cg = f"{base}/correspondences"
            cattrs = n5.get_attributes(cg)
            id_map = cattrs.get("idMap") or {}
            partners: dict[tuple[ViewId, str], tuple[np.ndarray, np.ndarray]] = {}
            if id_map and "data" in n5.list(cg):
                data = n5.read_dataset(f"{cg}/data").reshape(-1, 3).astype(np.int64)
                for key, code in id_map.items():
                    rows = data[:, 2] == int(round(float(code)))
                    partners[_parse_id_map_key(key, f"{uri}/{cg}")] = (data[rows, 0], data[rows, 1])
            out.correspondences[(v, label)] = partners
    return out
