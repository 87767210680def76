"""``split_dataset``: XML in, split XML and its point store out.

Interest points of a parent view are carried into every sub-view whose box holds
them (a point in an overlap goes to each sub-view there), at ``loc - offset``
under the same label, keeping the parent's point ids (as BigStitcher does): ids
stay unique within a sub-view, and ``(parent view, id)`` maps a point back.
Correspondences of the input are not carried over; the split dataset is matched anew.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from rhapso_core.io import fs_for
from rhapso_core.pointstore import PointStore, view_interest_points_entries
from rhapso_core.spimdata import InterestPointsFile, SpimData, load_xml, save_xml, uris

from .layout import SplitPlan, plan_split, pyramid_step_xyz, split_spimdata
from .params import SplitParams
from .points import draw_fake_points, fake_point_count, fake_rng, in_box, jitter_pair

__all__ = ["SplitError", "SplitResult", "split_dataset", "default_split_store", "data_step_xyz", "write_split_points"]

STORE_NAME = "interestpoints.zarr"


class SplitError(ValueError):
    """The split cannot be made (message names the file, view or parameter)."""


@dataclass(frozen=True)
class SplitResult:
    """What :func:`split_dataset` wrote (small; no point arrays).

    Attributes
    ----------
    xml, store : str
        The split XML and its point store (``store`` None when nothing was written to it).
    source_xml, source_store : str or None
        The inputs.
    new_setups : dict[int, tuple[int, ...]]
        Parent setup id -> its sub-views' setup ids.
    parent_of : dict[int, int]
        Sub-view setup id -> parent setup id.
    offset_xyz : dict[int, tuple[int, int, int]]
        Sub-view setup id -> its voxel (0, 0, 0) in parent voxels (x y z).
    step_xyz : (int, int, int)
        Alignment of offsets and sizes used (view voxels).
    points_moved : dict[str, int]
        Per label, points written into sub-views (a point in an overlap counts once per sub-view).
    fake_points : int
        Fake correspondences written (each one point in each of two sub-views).
    fake_pairs : int
        Sub-view pairs tied by fake correspondences.
    labels : tuple[str, ...]
        Labels stored for the split dataset, the fake label included when written.
    label_weights : dict[str, float]
        What ``SolverParams.label_weights`` should hold for a split-affine solve.
    """

    xml: str
    store: str | None
    source_xml: str
    source_store: str | None
    new_setups: dict[int, tuple[int, ...]]
    parent_of: dict[int, int]
    offset_xyz: dict[int, tuple[int, int, int]]
    step_xyz: tuple[int, int, int]
    points_moved: dict[str, int] = field(default_factory=dict)
    fake_points: int = 0
    fake_pairs: int = 0
    labels: tuple[str, ...] = ()
    label_weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able form (dict keys as strings)."""
        return {
            "xml": self.xml, "store": self.store, "source_xml": self.source_xml,
            "source_store": self.source_store,
            "new_setups": {str(k): list(v) for k, v in self.new_setups.items()},
            "parent_of": {str(k): v for k, v in self.parent_of.items()},
            "offset_xyz": {str(k): list(v) for k, v in self.offset_xyz.items()},
            "step_xyz": list(self.step_xyz), "points_moved": dict(self.points_moved),
            "fake_points": self.fake_points, "fake_pairs": self.fake_pairs,
            "labels": list(self.labels), "label_weights": dict(self.label_weights),
        }


def default_split_store(out_xml_uri: str) -> str:
    """``<folder>/<out stem>.interestpoints.zarr`` beside the split XML (never the input's store)."""
    base = os.fspath(out_xml_uri)
    stem = uris.normalize(base)
    stem = stem[:-4] if stem.endswith(".xml") else stem
    return f"{stem}.{STORE_NAME}"


def data_step_xyz(sd: SpimData, storage_options: dict | None = None) -> tuple[int, int, int]:
    """Per axis (x y z), the least common multiple of every view's pyramid factors.

    One present view per setup is opened (metadata only).

    Raises
    ------
    SplitError
        An image cannot be opened; the message suggests ``min_step_size``.
    """
    from rhapso_core.pipeline.dataset import open_view

    factors = []
    done: set[int] = set()
    for v in sd.views():
        if v[1] in done:
            continue
        try:
            src = open_view(sd, v, storage_options)
        except Exception as exc:
            raise SplitError(
                f"{sd.source_uri}: view (timepoint {v[0]}, setup {v[1]}): cannot read its pyramid ({exc}); "
                "set min_step_size to split without opening the images"
            ) from None
        factors += [src.level_factors(lvl) for lvl in range(src.n_levels)]
        done.add(v[1])
    return pyramid_step_xyz(factors)


def _same(a: str, b: str) -> bool:
    return uris.normalize(os.fspath(a)).rstrip("/") == uris.normalize(os.fspath(b)).rstrip("/")


def _exists(uri: str, storage_options: dict | None) -> bool:
    fs, path = fs_for(uri, storage_options)
    return bool(fs.exists(path))


def write_split_points(
    sd: SpimData,
    plan: SplitPlan,
    params: SplitParams,
    out_store: PointStore,
    in_store: PointStore | None = None,
) -> tuple[dict[str, int], int, int]:
    """Move real points into the sub-views and write fake correspondences.

    Parameters
    ----------
    sd : SpimData
        The *input* (unsplit) dataset.
    plan : SplitPlan
    params : SplitParams
    out_store : PointStore
        Opened with ``mode="a"``; receives points per sub-view and label.
    in_store : PointStore, optional
        The input's points (parent views); None: only fake points are written.

    Returns
    -------
    (points_moved per label, fake correspondences, fake pairs)
    """
    moved: dict[str, int] = {}
    n_fake = n_pairs = 0
    fake_params = (
        f"split fake points: density={params.point_density} min={params.min_points} max={params.max_points} "
        f"error={params.error} exclude_radius={params.exclude_radius} seed={params.seed}"
    )
    for parent_view in sd.views():
        t, parent = parent_view
        kids = plan.children(parent)
        real_xyz = []
        if in_store is not None:
            labels = params.labels if params.labels is not None else in_store.list_labels(parent_view)
            for label in labels:
                if label == params.fake_label or not in_store.has_points(parent_view, label):
                    continue
                pts = in_store.read_points(parent_view, label)
                real_xyz.append(pts.loc_xyz)
                for sub in kids:
                    m = in_box(pts.loc_xyz, sub.min_xyz, sub.max_xyz)
                    out_store.write_points(
                        (t, sub.setup), label, pts.ids[m],
                        pts.loc_xyz[m] - np.asarray(sub.offset_xyz, dtype=np.float64),
                        pts.intensity[m], pts.dog[m], params=pts.params,
                    )
                    moved[label] = moved.get(label, 0) + int(m.sum())
        real = np.concatenate(real_xyz) if real_xyz else np.zeros((0, 3))

        pairs = plan.neighbour_pairs(parent)
        if not pairs:
            continue
        voxel_step = np.linalg.norm(sd.view_to_world(parent_view)[:3, :3], axis=0)
        fake: dict[int, list[np.ndarray]] = {s.setup: [] for s in kids}
        counts = {s.setup: 0 for s in kids}
        links = []
        for a, b in pairs:
            lo, hi = a.overlap_with(b)  # type: ignore[misc]
            rng = fake_rng(params.seed, t, a.setup, b.setup)
            n = fake_point_count(lo, hi, params.point_density, params.min_points, params.max_points)
            centres = draw_fake_points(lo, hi, n, rng, real, params.exclude_radius, params.min_points)
            end_a, end_b = jitter_pair(centres, params.error, rng, voxel_step)
            k = len(centres)
            idx_a = np.arange(counts[a.setup], counts[a.setup] + k)
            idx_b = np.arange(counts[b.setup], counts[b.setup] + k)
            fake[a.setup].append(end_a - np.asarray(a.offset_xyz, dtype=np.float64))
            fake[b.setup].append(end_b - np.asarray(b.offset_xyz, dtype=np.float64))
            counts[a.setup] += k
            counts[b.setup] += k
            links.append(((t, a.setup), (t, b.setup), idx_a, idx_b))
        # Points first: writing a view's points clears its correspondences.
        for setup, parts in fake.items():
            loc = np.concatenate(parts) if parts else np.zeros((0, 3))
            out_store.write_points((t, setup), params.fake_label, np.arange(len(loc)), loc, params=fake_params)
        for va, vb, ia, ib in links:
            out_store.write_correspondences(va, vb, params.fake_label, ia, ib, params=fake_params)
            n_fake += len(ia)
            n_pairs += 1
    return moved, n_fake, n_pairs


def split_dataset(
    xml_uri: str,
    out_xml_uri: str,
    params: SplitParams | None = None,
    store_uri: str | None = None,
    out_store_uri: str | None = None,
    *,
    storage_options: dict | None = None,
) -> SplitResult:
    """Split every view into sub-views; write the split XML and its interest points.

    Parameters
    ----------
    xml_uri : str
        Input BigStitcher XML (local path or URI); never modified.
    out_xml_uri : str
        Where the split XML goes (must differ from ``xml_uri``).
    params : SplitParams, optional
        Defaults if None.
    store_uri : str, optional
        The input's point store; default ``interestpoints.zarr`` beside the input XML
        when it exists (else no real points are moved).
    out_store_uri : str, optional
        The split dataset's point store; default :func:`default_split_store`. Must
        differ from ``store_uri``; points of the same views and labels there are replaced.
    storage_options : dict, optional
        fsspec options for every URI.

    Returns
    -------
    SplitResult

    Raises
    ------
    SplitError, SplitGeometryError
        Output equals input, sizes cannot be aligned, images cannot be opened (for the step).
    """
    params = params or SplitParams()
    if _same(xml_uri, out_xml_uri):
        raise SplitError(f"{out_xml_uri}: the split XML would overwrite the input XML")
    sd = load_xml(xml_uri, storage_options)
    step = tuple(params.min_step_size) if params.min_step_size is not None else data_step_xyz(sd, storage_options)
    plan = plan_split(sd, params, step)
    split = split_spimdata(sd, plan)

    if store_uri is None:
        candidate = uris.join(uris.parent(uris.normalize(os.fspath(xml_uri))), STORE_NAME)
        store_uri = candidate if _exists(candidate, storage_options) else None
    in_store = PointStore(store_uri, storage_options=storage_options, mode="r") if store_uri is not None else None
    out_store_uri = out_store_uri or default_split_store(out_xml_uri)
    if store_uri is not None and _same(store_uri, out_store_uri):
        raise SplitError(f"{out_store_uri}: the split point store would overwrite the input's point store")

    moved: dict[str, int] = {}
    n_fake = n_pairs = 0
    wrote = in_store is not None or any(plan.neighbour_pairs(p) for p in plan.parents())
    if wrote:
        out_store = PointStore(out_store_uri, storage_options=storage_options, mode="a")
        moved, n_fake, n_pairs = write_split_points(sd, plan, params, out_store, in_store)
        # Only this split's views and labels: a reused store may hold others from an earlier run.
        written = set(moved) | {params.fake_label}
        views = set(split.views())
        entries = [
            e for e in view_interest_points_entries(out_store)
            if e.label in written and (e.timepoint, e.setup) in views
        ]
        split = split.with_interest_points(
            [InterestPointsFile(e.timepoint, e.setup, e.label, e.params, e.path) for e in entries], replace_all=True
        )
    saved = save_xml(split, out_xml_uri, storage_options=storage_options)

    new_setups: dict[int, tuple[int, ...]] = {p: tuple(s.setup for s in plan.children(p)) for p in plan.parents()}
    labels = tuple(sorted(moved)) + ((params.fake_label,) if n_pairs else ())
    return SplitResult(
        xml=saved.source_uri or uris.normalize(os.fspath(out_xml_uri)),
        store=out_store_uri if wrote else None,
        source_xml=uris.normalize(os.fspath(xml_uri)),
        source_store=store_uri,
        new_setups=new_setups,
        parent_of={s.setup: s.parent_setup for s in plan.subviews},
        offset_xyz={s.setup: s.offset_xyz for s in plan.subviews},
        step_xyz=plan.step_xyz,
        points_moved=moved,
        fake_points=n_fake,
        fake_pairs=n_pairs,
        labels=labels,
        label_weights=params.label_weights(),
    )

