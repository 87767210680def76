"""The split dataset's XML: new setups, BigStitcher's ``split.viewerimgloader`` and registrations.

BigStitcher (``SplittingTools.splitImages``) gives every sub-view

* a new ViewSetup of the sub-view's size, with the parent's voxel size, channel,
  illumination and angle, and a new tile ``old_tile * max_pieces + local_index``
  whose location is the parent tile's location plus the sub-view's offset;
* a ``SetupIdDefinition`` (NewId, OldId, inclusive min / max in parent voxels) in a
  ``split.viewerimgloader`` that wraps the original loader and the original
  ``SequenceDescription`` (without its loader);
* the parent's registration with a translation by the sub-view's offset *appended*
  (XML order: listed last, so applied first, in view voxels):
  ``view_to_world(sub) = view_to_world(parent) @ translation(offset)``, which maps
  sub-view voxel 0 onto parent voxel ``offset``.

Missing views follow their parents; bounding boxes (world frame) are kept; stitching
results, point-spread functions and intensity adjustments, which name old setups,
are emptied (as BigStitcher does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import lcm

import numpy as np

from rhapso_core import transforms
from rhapso_core.spimdata import (
    AttributeGroup,
    Entity,
    Preserved,
    RawElement,
    SetupIdDefinition,
    SpimData,
    SplitImageLoader,
    ViewId,
    ViewSetup,
    ViewTransform,
)
from rhapso_core.spimdata.xml_write import to_element

from .intervals import SplitGeometryError, axis_intervals
from .params import SplitParams

__all__ = [
    "SPLIT_TRANSFORM_NAME",
    "SubView",
    "SplitPlan",
    "plan_split",
    "split_spimdata",
    "pyramid_step_xyz",
    "split_parents",
]

SPLIT_TRANSFORM_NAME = "Image Splitting"  # BigStitcher's name for the offset transform
_EMPTIED_SECTIONS = ("PointSpreadFunctions", "StitchingResults", "IntensityAdjustments")


@dataclass(frozen=True)
class SubView:
    """One sub-view: the inclusive box ``[min_xyz, max_xyz]`` (parent view voxels, x y z) of a parent setup.

    Attributes
    ----------
    setup : int
        New setup id.
    parent_setup : int
        The setup it is cut from (BigStitcher's OldId).
    index : int
        Position among the parent's sub-views (x fastest, then y, then z).
    grid_index : (int, int, int)
        Position along x, y, z in the parent's grid of sub-views.
    tile : int
        New tile attribute id.
    """

    setup: int
    parent_setup: int
    index: int
    grid_index: tuple[int, int, int]
    min_xyz: tuple[int, int, int]
    max_xyz: tuple[int, int, int]
    tile: int

    @property
    def offset_xyz(self) -> tuple[int, int, int]:
        """Parent voxel of the sub-view's voxel (0, 0, 0) (x y z)."""
        return self.min_xyz

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return tuple(int(b) - int(a) + 1 for a, b in zip(self.min_xyz, self.max_xyz))  # type: ignore[return-value]

    def overlap_with(self, other: SubView) -> tuple[np.ndarray, np.ndarray] | None:
        """Inclusive box ``(lo, hi)`` (parent voxels, x y z) shared with another sub-view of the same parent."""
        lo = np.maximum(self.min_xyz, other.min_xyz)
        hi = np.minimum(self.max_xyz, other.max_xyz)
        return None if np.any(lo > hi) else (lo, hi)


@dataclass(frozen=True)
class SplitPlan:
    """All sub-views of a dataset, and the step their offsets are aligned to."""

    subviews: tuple[SubView, ...]
    step_xyz: tuple[int, int, int]
    max_pieces: int
    _by_setup: dict[int, SubView] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_setup.update({s.setup: s for s in self.subviews})

    def subview(self, setup: int) -> SubView:
        return self._by_setup[int(setup)]

    def children(self, parent_setup: int) -> list[SubView]:
        """Sub-views of one parent setup, in index order."""
        return [s for s in self.subviews if s.parent_setup == int(parent_setup)]

    def parents(self) -> list[int]:
        return sorted({s.parent_setup for s in self.subviews})

    def neighbour_pairs(self, parent_setup: int) -> list[tuple[SubView, SubView]]:
        """Pairs ``(a, b)`` of one parent's sub-views whose boxes overlap (a before b)."""
        kids = self.children(parent_setup)
        return [(a, b) for i, a in enumerate(kids) for b in kids[i + 1 :] if a.overlap_with(b) is not None]


def pyramid_step_xyz(factors_zyx: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """Per axis (x y z), the least common multiple of pyramid factors (each given z y x).

    Offsets that are multiples of it are whole voxels on every level, so each
    level of a sub-view is an exact crop of the parent's level.
    """
    step = [1, 1, 1]
    for f in factors_zyx:
        for axis in range(3):
            step[axis] = lcm(step[axis], int(f[2 - axis]))
    return (step[0], step[1], step[2])


def plan_split(sd: SpimData, params: SplitParams, step_xyz: Sequence[int] = (1, 1, 1)) -> SplitPlan:
    """Cut every setup of ``sd`` into sub-views.

    Parameters
    ----------
    sd : SpimData
    params : SplitParams
        ``target_image_size``, ``target_overlap``, ``optimize``, ``assign_ids``.
    step_xyz : 3 ints, default (1, 1, 1)
        Alignment of offsets and sizes (view voxels), normally :func:`pyramid_step_xyz`
        of the data (or ``params.min_step_size``).

    Raises
    ------
    SplitGeometryError
        A setup has no size, or the sizes cannot be aligned to the step.
    """
    step = tuple(int(v) for v in step_xyz)
    per_setup: dict[int, list[list[tuple[int, int]]]] = {}
    for sid in sorted(sd.setups):
        size = sd.setups[sid].size
        if size is None:
            raise SplitGeometryError(f"{sd.source_uri or '<new SpimData>'}: <ViewSetup id={sid}> has no <size>")
        per_setup[sid] = axis_intervals(size, params.target_image_size, params.target_overlap, step, params.optimize)
    counts = {sid: len(a[0]) * len(a[1]) * len(a[2]) for sid, a in per_setup.items()}
    max_pieces = max(counts.values(), default=1)
    subviews = []
    next_id = 0
    for sid, axes in per_setup.items():
        old_tile = sd.setups[sid].tile or 0
        index = 0
        for k, iz in enumerate(axes[2]):
            for j, iy in enumerate(axes[1]):
                for i, ix in enumerate(axes[0]):
                    new_id = next_id if params.assign_ids == "sequential" else sid * max_pieces + index
                    subviews.append(
                        SubView(
                            setup=new_id,
                            parent_setup=sid,
                            index=index,
                            grid_index=(i, j, k),
                            min_xyz=(ix[0], iy[0], iz[0]),
                            max_xyz=(ix[1], iy[1], iz[1]),
                            tile=old_tile * max_pieces + index,
                        )
                    )
                    index += 1
                    next_id += 1
    return SplitPlan(tuple(subviews), step, max_pieces)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- XML


def _location(ent: Entity | None) -> np.ndarray:
    if ent is not None:
        for _, raw in ent.raw.children:
            node = raw.to_node()
            if node.tag == "location" and node.text and node.text.strip():
                try:
                    vals = [float(v) for v in node.text.split()]
                except ValueError:
                    break
                if len(vals) == 3:
                    return np.asarray(vals)
    return np.zeros(3)


def _tile_entity(new_id: int, location: np.ndarray) -> Entity:
    from rhapso_core.spimdata import format_double

    loc = " ".join(format_double(v) for v in location)
    return Entity(
        "Tile", int(new_id), str(int(new_id)),
        raw=Preserved(children=((2, RawElement(f"<location>{loc}</location>".encode())),)),
    )


def _attribute_groups(sd: SpimData, plan: SplitPlan) -> tuple[AttributeGroup, ...]:
    old_tiles = sd.attribute_defs.get("tile", {})
    tiles: dict[int, Entity] = {}
    for s in plan.subviews:
        if s.tile not in tiles:
            parent_tile = sd.setups[s.parent_setup].tile
            loc = _location(old_tiles.get(parent_tile) if parent_tile is not None else None)
            tiles[s.tile] = _tile_entity(s.tile, loc + np.asarray(s.min_xyz, dtype=np.float64))
    groups = []
    seen_tile = False
    for g in sd.attribute_groups:
        if g.name == "tile":
            groups.append(AttributeGroup("tile", tuple(tiles[t] for t in sorted(tiles)), g.raw))
            seen_tile = True
        else:
            groups.append(g)
    if not seen_tile:
        groups.append(AttributeGroup("tile", tuple(tiles[t] for t in sorted(tiles))))
    return tuple(groups)


def _inner_sequence(sd: SpimData) -> RawElement:
    """The original ``<SequenceDescription>`` without its loader (BigStitcher's ``oldSD``)."""
    root = to_element(sd.replace(image_loader=None))
    seq = root.find("SequenceDescription")
    assert seq is not None
    return RawElement.from_node(seq)


def _root_raw(sd: SpimData) -> dict[str, Preserved]:
    raw = dict(sd.raw)
    if "SpimData" in raw:
        p = raw["SpimData"]
        kids = []
        for idx, el in p.children:
            tag = el.tag
            kids.append((idx, RawElement(f"<{tag}/>".encode()) if tag in _EMPTIED_SECTIONS else el))
        raw["SpimData"] = Preserved(p.attrib, tuple(kids), p.order, p.hints)
    for section in ("ViewSetups", "ViewRegistrations", "ViewInterestPoints"):
        if section in raw:
            p = raw[section]
            # Unmodelled children of these sections describe old setups: not carried.
            raw[section] = Preserved(p.attrib, (), p.order, p.hints)
    return raw


def split_spimdata(sd: SpimData, plan: SplitPlan) -> SpimData:
    """The split dataset's SpimData (BigStitcher's split layout); ``sd`` is not changed.

    The result keeps ``sd``'s base path and ``source_uri`` so relative paths still
    resolve; :func:`rhapso_core.spimdata.save_xml` rebases them when saved elsewhere.
    Interest-point entries are not set here (see :func:`rhapso_core.split.split_dataset`).
    """
    if sd.image_loader is None:
        raise SplitGeometryError(f"{sd.source_uri or '<new SpimData>'}: <SequenceDescription>: no <ImageLoader> to wrap")
    setups: dict[int, ViewSetup] = {}
    for s in plan.subviews:
        parent = sd.setups[s.parent_setup]
        attrs = dict(parent.attributes)
        attrs["tile"] = s.tile
        setups[s.setup] = ViewSetup(
            id=s.setup,
            name=f"{parent.name if parent.name is not None else parent.id}-{s.index}",
            size=s.size_xyz,
            voxel_size=parent.voxel_size,
            voxel_unit=parent.voxel_unit,
            attributes=attrs,
            voxel_raw=parent.voxel_raw,
        )
    tps = sd.timepoints.ids if sd.timepoints is not None else []
    regs: dict[ViewId, tuple[ViewTransform, ...]] = {}
    for t in tps:
        for s in plan.subviews:
            parent_view = (t, s.parent_setup)
            if parent_view in sd.registrations:
                shift = ViewTransform(SPLIT_TRANSFORM_NAME, transforms.translation(s.offset_xyz))
                regs[(t, s.setup)] = tuple(sd.registrations[parent_view]) + (shift,)
    missing_old = set(sd.missing_views)
    missing = tuple(
        sorted((t, s.setup) for (t, old) in missing_old for s in plan.subviews if s.parent_setup == old)
    )
    defs = tuple(
        SetupIdDefinition(s.setup, s.parent_setup, s.min_xyz, s.max_xyz)
        for s in sorted(plan.subviews, key=lambda v: v.setup)
    )
    loader = SplitImageLoader(
        inner=sd.image_loader,
        setup_ids=defs,
        # The wrapped SequenceDescription sits between the inner loader and SetupIds.
        raw=Preserved(children=((1, _inner_sequence(sd)),)),
    )
    return sd.replace(
        image_loader=loader,
        setups=dict(sorted(setups.items())),
        attribute_groups=_attribute_groups(sd, plan),
        missing=missing,
        registrations=dict(sorted(regs.items())),
        interest_points=(),
        raw=_root_raw(sd),
        registration_raw={},
        issues=(),
    )


def split_parents(sd: SpimData) -> dict[int, int]:
    """``{setup: parent setup}`` of a split dataset (empty if ``sd`` is not split).

    Useful to leave pairs of sub-views of one tile out of matching, since fake
    correspondences already tie them.
    """
    loader = sd.image_loader
    if not isinstance(loader, SplitImageLoader):
        return {}
    return {d.new_id: d.old_id for d in loader.setup_ids}
