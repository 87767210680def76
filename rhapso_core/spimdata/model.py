"""The typed SpimData model: frozen dataclasses, changed only by making new objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import transforms
from . import uris
from .errors import SpimDataError
from .loaders import ImageLoader, ImageLocation, locate
from .preserve import EMPTY, Preserved

ViewId = tuple[int, int]
"""A view: ``(timepoint, setup)``."""

__all__ = [
    "ViewId",
    "ViewTransform",
    "ViewSetup",
    "Entity",
    "AttributeGroup",
    "Timepoints",
    "InterestPointsFile",
    "SpimData",
    "parse_integer_pattern",
]

NEW_SOURCE = "<new SpimData>"


def _as_affine(value: np.ndarray | Sequence[float]) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape == (12,):
        a = transforms.from_xml_values(a)
    elif a.shape == (3, 4):
        a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
    if a.shape != (4, 4):
        raise SpimDataError(f"{NEW_SOURCE}: <ViewTransform>: affine must be 4x4, 3x4 or 12 numbers, got shape {a.shape}")
    if not np.array_equal(a[3], [0.0, 0.0, 0.0, 1.0]):
        raise SpimDataError(f"{NEW_SOURCE}: <ViewTransform>: affine's last row must be 0 0 0 1, got {a[3].tolist()}")
    if not np.all(np.isfinite(a)):
        raise SpimDataError(f"{NEW_SOURCE}: <ViewTransform>: affine has non-finite values")
    a = a.copy()
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ViewTransform:
    """One named ``<ViewTransform type="affine">``; ``affine`` is a read-only 4x4 on (x, y, z, 1)."""

    name: str | None
    affine: np.ndarray
    type: str = "affine"
    raw: Preserved = EMPTY

    def __post_init__(self) -> None:
        object.__setattr__(self, "affine", _as_affine(self.affine))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ViewTransform):
            return NotImplemented
        return (
            self.name == other.name
            and self.type == other.type
            and self.raw == other.raw
            and np.array_equal(self.affine, other.affine)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ViewSetup:
    """One ``<ViewSetup>``. Sizes and voxel sizes are x, y, z.

    ``attributes`` maps attribute names (``illumination``, ``channel``, ``tile``,
    ``angle``, ...) to entity ids defined in :attr:`SpimData.attribute_groups`.
    """

    id: int
    name: str | None = None
    size: tuple[int, int, int] | None = None
    voxel_size: tuple[float, float, float] | None = None
    voxel_unit: str | None = None
    attributes: Mapping[str, int] = field(default_factory=dict)
    raw: Preserved = EMPTY
    voxel_raw: Preserved = EMPTY

    @property
    def tile(self) -> int | None:
        return self.attributes.get("tile")

    @property
    def channel(self) -> int | None:
        return self.attributes.get("channel")

    @property
    def illumination(self) -> int | None:
        return self.attributes.get("illumination")

    @property
    def angle(self) -> int | None:
        return self.attributes.get("angle")


@dataclass(frozen=True)
class Entity:
    """An attribute value definition (``<Tile>``, ``<Channel>``, ...): id, name, and any
    other children (a tile's ``location``, an angle's ``axis``) preserved in ``raw``."""

    kind: str
    id: int
    name: str | None = None
    raw: Preserved = EMPTY


@dataclass(frozen=True)
class AttributeGroup:
    """``<Attributes name="tile">`` and its entities."""

    name: str
    entities: tuple[Entity, ...] = ()
    raw: Preserved = EMPTY


def parse_integer_pattern(text: str) -> list[int]:
    """Timepoints of a BDV ``integerpattern``: ``"0"``, ``"0-9"``, ``"0-9:3"``, ``"1,4,7-9"``."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        step = 1
        if ":" in part:
            part, step_s = part.split(":", 1)
            step = int(step_s)
        head, dash, tail = part[1:].partition("-")
        if dash:
            a, b = int(part[0] + head), int(tail)
            if step <= 0:
                raise ValueError(f"step must be positive in {text!r}")
            out.extend(range(a, b + 1, step))
        else:
            out.append(int(part))
    return out


@dataclass(frozen=True)
class Timepoints:
    """``<Timepoints type="range|pattern|list">``; iterate it (or use :attr:`ids`) for the ids."""

    type: str
    first: int | None = None
    last: int | None = None
    pattern: str | None = None
    listed: tuple[int, ...] = ()
    raw: Preserved = EMPTY

    @classmethod
    def from_ids(cls, ids: Iterable[int]) -> Timepoints:
        """A ``range`` for consecutive ids, else a ``list``."""
        ids = sorted({int(i) for i in ids})
        if ids and ids == list(range(ids[0], ids[-1] + 1)):
            return cls("range", first=ids[0], last=ids[-1])
        return cls("list", listed=tuple(ids))

    @property
    def ids(self) -> list[int]:
        if self.type == "range":
            return list(range(int(self.first), int(self.last) + 1))  # type: ignore[arg-type]
        if self.type == "pattern":
            return parse_integer_pattern(self.pattern or "")
        return list(self.listed)

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, t: object) -> bool:
        return t in self.ids


@dataclass(frozen=True)
class InterestPointsFile:
    """One ``<ViewInterestPointsFile timepoint= setup= label= params=>path</...>``.

    ``path`` is BigStitcher's location of the points relative to the interest-point
    store under the base path (``interestpoints.n5/{path}`` in current BigStitcher).
    """

    timepoint: int
    setup: int
    label: str
    params: str = ""
    path: str = ""
    raw: Preserved = EMPTY

    @property
    def view(self) -> ViewId:
        return (self.timepoint, self.setup)


def _view(v: Sequence[int]) -> ViewId:
    if len(v) != 2:
        raise SpimDataError(f"{NEW_SOURCE}: a view is (timepoint, setup), got {v!r}")
    return (int(v[0]), int(v[1]))


def _views_arg(view_or_views: ViewId | Iterable[ViewId]) -> list[ViewId]:
    if isinstance(view_or_views, tuple) and len(view_or_views) == 2 and all(
        isinstance(x, (int, np.integer)) for x in view_or_views
    ):
        return [_view(view_or_views)]
    return [_view(v) for v in view_or_views]  # type: ignore[union-attr]


def _nonempty(m: Mapping) -> dict:
    return {k: v for k, v in m.items() if v != EMPTY}


@dataclass(frozen=True, eq=False)
class SpimData:
    """A BigStitcher / BigDataViewer SpimData document.

    Build one with :meth:`new` (or :func:`~rhapso_core.spimdata.make_spimdata`), read
    one with :func:`~rhapso_core.spimdata.load_xml`. The object is immutable: the
    ``with_*`` methods return new objects and leave the original untouched.

    Attributes
    ----------
    base_path_text, base_path_type : str
        ``<BasePath type=...>`` as written; see :attr:`base_path` for the resolved one.
    image_loader : ImageLoader or None
    setups : dict[int, ViewSetup]
        By setup id, in document order.
    attribute_groups : tuple[AttributeGroup, ...]
        The ``<Attributes>`` definitions (illumination, channel, tile, angle, ...).
    timepoints : Timepoints or None
    missing : tuple[ViewId, ...]
        ``<MissingViews>`` in document order (see :attr:`missing_views`).
    registrations : dict[ViewId, tuple[ViewTransform, ...]]
        Per view, the transforms in XML order (view-voxel -> world is their product
        ``T1 @ T2 @ ... @ Tn``).
    interest_points : tuple[InterestPointsFile, ...]
    source_uri : str or None
        Where it was loaded from (absolute path or URI); not part of equality.
    raw : dict[str, Preserved]
        Unmodelled content per section element (``SpimData``, ``SequenceDescription``,
        ``ViewSetups``, ``MissingViews``, ``ViewRegistrations``, ``ViewInterestPoints``,
        ``BasePath``).
    registration_raw : dict[ViewId, Preserved]
        Unmodelled content of each ``<ViewRegistration>``.
    issues : tuple[str, ...]
        Problems tolerated by a ``strict=False`` load; not part of equality.
    """

    base_path_text: str = "."
    base_path_type: str = "relative"
    image_loader: ImageLoader | None = None
    setups: dict[int, ViewSetup] = field(default_factory=dict)
    attribute_groups: tuple[AttributeGroup, ...] = ()
    timepoints: Timepoints | None = None
    missing: tuple[ViewId, ...] = ()
    registrations: dict[ViewId, tuple[ViewTransform, ...]] = field(default_factory=dict)
    interest_points: tuple[InterestPointsFile, ...] = ()
    source_uri: str | None = field(default=None, compare=False)
    raw: Mapping[str, Preserved] = field(default_factory=dict)
    registration_raw: Mapping[ViewId, Preserved] = field(default_factory=dict)
    issues: tuple[str, ...] = field(default=(), compare=False)

    def __eq__(self, other: object) -> bool:
        """Equal content: everything but ``source_uri``, ``issues`` and layout hints
        (a section without preserved content equals one that was never read)."""
        if not isinstance(other, SpimData):
            return NotImplemented
        for f in dataclasses.fields(self):
            if not f.compare:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("raw", "registration_raw"):
                a, b = _nonempty(a), _nonempty(b)
            if a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ construction

    @classmethod
    def new(cls, **kwargs) -> SpimData:
        """Same as :func:`rhapso_core.spimdata.make_spimdata`."""
        from .build import make_spimdata

        return make_spimdata(**kwargs)

    def replace(self, **changes) -> SpimData:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def with_source_uri(self, uri: str | None) -> SpimData:
        """A copy that resolves relative paths as if loaded from ``uri``."""
        return dataclasses.replace(self, source_uri=None if uri is None else uris.normalize(str(uri)))

    # ------------------------------------------------------------------ queries

    @property
    def _name(self) -> str:
        return self.source_uri or NEW_SOURCE

    @property
    def base_path(self) -> str:
        """``<BasePath>`` resolved against the XML's folder: an absolute path or URI."""
        text = self.base_path_text.strip() or "."
        if self.base_path_type == "absolute" or uris.is_url(text):
            return uris.normalize(text)
        if self.source_uri is None:
            raise SpimDataError(
                f"{NEW_SOURCE}: <BasePath type=\"relative\">: cannot resolve {text!r} without a source_uri "
                "(use with_source_uri() or an absolute base path)"
            )
        return uris.join(uris.parent(self.source_uri), text)

    @property
    def missing_views(self) -> frozenset[ViewId]:
        return frozenset(self.missing)

    @property
    def attribute_defs(self) -> dict[str, dict[int, Entity]]:
        """``{attribute name: {id: Entity}}``, e.g. ``attribute_defs["tile"][3].name``."""
        return {g.name: {e.id: e for e in g.entities} for g in self.attribute_groups}

    def views(self) -> list[ViewId]:
        """All (timepoint, setup) pairs minus missing views, sorted."""
        tps = self.timepoints.ids if self.timepoints is not None else []
        missing = self.missing_views
        return sorted((t, s) for t in tps for s in self.setups if (t, s) not in missing)

    def setup_of(self, view: ViewId) -> ViewSetup:
        try:
            return self.setups[int(view[1])]
        except KeyError:
            raise SpimDataError(f"{self._name}: <ViewSetups>: no <ViewSetup> with id {view[1]}") from None

    def view_to_world(self, view: ViewId) -> np.ndarray:
        """The 4x4 view-voxel -> world affine ``T1 @ T2 @ ... @ Tn`` of the view's
        registration (XML order: the first listed is applied last)."""
        v = _view(view)
        if v not in self.registrations:
            raise SpimDataError(f"{self._name}: <ViewRegistrations>: no <ViewRegistration> for timepoint={v[0]} setup={v[1]}")
        return transforms.compose(t.affine for t in self.registrations[v])

    def image_location(self, view: ViewId) -> ImageLocation:
        """Where the view's pixels are (container, dataset inside it, split crop)."""
        if self.image_loader is None:
            raise SpimDataError(f"{self._name}: <SequenceDescription>: no <ImageLoader>")
        return locate(self.image_loader, _view(view), self.base_path, self._name)

    def interest_points_for(self, view: ViewId) -> list[InterestPointsFile]:
        v = _view(view)
        return [p for p in self.interest_points if p.view == v]

    # ------------------------------------------------------------------ derived copies

    def with_prepended_transform(
        self,
        view_or_views: ViewId | Iterable[ViewId],
        name: str,
        affine: np.ndarray | Mapping[ViewId, np.ndarray],
    ) -> SpimData:
        """A copy where each given view's registration starts with a new transform.

        Parameters
        ----------
        view_or_views : ViewId or iterable of ViewId
            Views to change; each must be a view of this dataset.
        name : str
            The transform's ``<Name>`` (e.g. ``"AffineModel3D regularized ..."``).
        affine : (4, 4) array or mapping ViewId -> (4, 4) array
            World-frame correction (x, y, z), one for all views or one per view.
            Being prepended, it is applied after the existing transforms.
        """
        views = _views_arg(view_or_views)
        known = set(self.views()) | set(self.registrations)
        regs = dict(self.registrations)
        for v in views:
            if v not in known:
                raise SpimDataError(f"{self._name}: <ViewRegistrations>: timepoint={v[0]} setup={v[1]} is not a view of this dataset")
            a = affine[v] if isinstance(affine, Mapping) else affine
            regs[v] = (ViewTransform(name, a),) + tuple(regs.get(v, ()))
        return dataclasses.replace(self, registrations=regs)

    def with_registrations(
        self, registrations: Mapping[ViewId, Sequence[ViewTransform]], replace_all: bool = False
    ) -> SpimData:
        """A copy with the given views' transform lists replaced (others kept unless ``replace_all``)."""
        regs = {} if replace_all else dict(self.registrations)
        for v, ts in registrations.items():
            ts = tuple(ts)
            if not all(isinstance(t, ViewTransform) for t in ts):
                raise SpimDataError(f"{self._name}: <ViewRegistration timepoint={v[0]} setup={v[1]}>: transforms must be ViewTransform objects")
            regs[_view(v)] = ts
        return dataclasses.replace(self, registrations=regs)

    def with_interest_points(self, files: Iterable[InterestPointsFile], replace_all: bool = False) -> SpimData:
        """A copy with interest-point entries added; an entry replaces one with the same view and label."""
        new = list(files)
        keys = {(f.view, f.label) for f in new}
        kept = [] if replace_all else [f for f in self.interest_points if (f.view, f.label) not in keys]
        return dataclasses.replace(self, interest_points=tuple(kept + new))

    def with_image_loader(self, loader: ImageLoader) -> SpimData:
        return dataclasses.replace(self, image_loader=loader)

    def with_setups(self, setups: Iterable[ViewSetup]) -> SpimData:
        """A copy with setups replaced (by id) or added."""
        d = dict(self.setups)
        for s in setups:
            d[s.id] = s
        return dataclasses.replace(self, setups=d)
