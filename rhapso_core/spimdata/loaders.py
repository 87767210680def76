"""Image loaders (where a view's pixels live) and :class:`ImageLocation`.

One frozen dataclass per ``<ImageLoader format="...">`` seen in BigStitcher files:

==============================  ==========================================================
``bdv.multimg.zarr``            :class:`ZarrImageLoader`: one OME-Zarr group per view under a
                                ``<zarr>`` root (optionally inside ``<s3bucket>``)
``bdv.n5``                      :class:`N5ImageLoader`: BDV N5 layout ``setup{s}/timepoint{t}``
``bdv.hdf5``                    :class:`Hdf5ImageLoader`: BDV HDF5 layout ``t{t:05d}/s{s:02d}``
``spimreconstruction.filemap2`` :class:`FileMapImageLoader`: one (TIFF) file per view, with
                                Bio-Formats series and channel
``split.viewerimgloader``       :class:`SplitImageLoader`: new setups that are boxes of the
                                setups of a wrapped loader
``spimreconstruction.wrapped.   :class:`FlatFieldImageLoader`: a wrapped loader whose views are
flatfield.default`` / ``...     corrected by bright and dark images (BigStitcher's flat-field
.multiresolution``              correction)
==============================  ==========================================================

:func:`locate` turns a loader and a view into an :class:`ImageLocation`, the small
record image readers need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar, Union

from . import uris
from .errors import SpimDataError
from .preserve import EMPTY, Preserved, RawElement

ViewId = tuple[int, int]

__all__ = [
    "ImageLocation",
    "ZGroup",
    "ZarrImageLoader",
    "N5ImageLoader",
    "Hdf5ImageLoader",
    "Hdf5Partition",
    "FileMapping",
    "FileMapImageLoader",
    "SetupIdDefinition",
    "SplitImageLoader",
    "FlatFieldFiles",
    "FlatFieldImageLoader",
    "UnknownImageLoader",
    "ImageLoader",
    "LOADER_FORMATS",
    "locate",
]


@dataclass(frozen=True)
class ImageLocation:
    """Where one view's pixels are.

    Attributes
    ----------
    kind : {"ome-zarr", "n5", "hdf5", "tiff"}
        Container format.
    uri : str
        Absolute local path or URI (``s3://...`` kept) of the container (the zarr
        root, the ``.n5``/``.h5`` file, or the TIFF file).
    dataset : str
        Path inside the container: the zgroup path (``tile_000.zarr``), the BDV N5
        group ``setup0/timepoint0``, the BDV HDF5 group ``t00000/s00``; ``""`` for TIFF.
    files : tuple of str
        For a file map: the file(s) holding the view (absolute).
    series, channel : int or None
        For a file map: Bio-Formats series and channel of the view in ``files``.
    parent : ViewId or None
        For a split loader: the (timepoint, old setup) view whose pixels are cropped.
        ``kind``/``uri``/``dataset``/``files`` then describe the parent's container.
    offset_xyz, size_xyz : tuple of 3 int or None
        For a split loader: the crop's min corner (parent view voxels, x y z) and size.
        Reading a split view means reading the parent box ``[offset, offset + size)``.
    inner : ImageLocation or None
        For a split loader: the parent's own location (itself possibly a split).
    indices : tuple of int or None
        For a BigStitcher 2.x zarr loader (``indicies``): the index on each axis beyond
        x, y, z in BigStitcher's (x, y, z, c, t) order, i.e. ``(channel, timepoint)``
        of a 4D/5D OME-Zarr image; None or ``()`` when the image is 3D (or its extra
        axes have size 1).
    flatfield : FlatFieldFiles or None
        For an active flat-field loader: the bright and dark images (absolute) that
        correct this view's pixels; the other fields describe the wrapped loader's view.
    """

    kind: str
    uri: str
    dataset: str = ""
    files: tuple[str, ...] = ()
    series: int | None = None
    channel: int | None = None
    parent: ViewId | None = None
    offset_xyz: tuple[int, int, int] | None = None
    size_xyz: tuple[int, int, int] | None = None
    inner: ImageLocation | None = None
    indices: tuple[int, ...] | None = None
    flatfield: FlatFieldFiles | None = None

    @property
    def dataset_uri(self) -> str:
        """``uri`` joined with ``dataset`` (the group holding the view's pyramid)."""
        if not self.dataset:
            return self.uri
        return self.uri.rstrip("/") + "/" + self.dataset.strip("/")


def _resolve(path: str, path_type: str, base_path: str) -> str:
    if path_type == "absolute":
        return uris.normalize(path)
    return uris.join(base_path, path)


@dataclass(frozen=True)
class ZGroup:
    """One ``<zgroup>``: ``setup= timepoint=`` with a ``<path>`` child (loader version 1.0), or
    ``setup= tp= path= indicies=`` attributes (BigStitcher 2.x, loader version 2.0 / 3.0).

    ``indices`` is BigStitcher's ``indicies`` attribute (its spelling in the XML):
    None when absent, ``()`` for ``"[]"``, else the (channel, timepoint) indices.
    """

    timepoint: int
    setup: int
    path: str
    timepoint_attr: str = "timepoint"  # some writers use "tp"; written back the same way
    raw: Preserved = EMPTY
    path_attr: bool = False  # the path is an attribute (BigStitcher 2.x), not a <path> child
    indices: tuple[int, ...] | None = None

    @property
    def view(self) -> ViewId:
        return (self.timepoint, self.setup)


@dataclass(frozen=True)
class ZarrImageLoader:
    """``bdv.multimg.zarr``: an OME-Zarr group per view, under one root.

    The container is ``s3://{s3bucket}/{root}`` when ``s3bucket`` is set
    (BigStitcher's convention), else ``root`` (``root_type="absolute"``) or
    ``root`` relative to the base path.
    """

    format: ClassVar[str] = "bdv.multimg.zarr"
    root: str
    zgroups: tuple[ZGroup, ...] = ()
    root_type: str = "absolute"
    s3bucket: str | None = None
    version: str | None = "1.0"
    raw: Preserved = EMPTY
    zgroups_raw: Preserved = EMPTY

    @classmethod
    def from_paths(
        cls, root: str, paths: Mapping[ViewId, str], root_type: str = "absolute", s3bucket: str | None = None
    ) -> ZarrImageLoader:
        """Build from ``{(timepoint, setup): group path}``."""
        groups = tuple(ZGroup(t, s, p) for (t, s), p in sorted(paths.items(), key=lambda kv: (kv[0][1], kv[0][0])))
        return cls(root=root, zgroups=groups, root_type=root_type, s3bucket=s3bucket)

    @classmethod
    def bigstitcher2(
        cls,
        root: str,
        groups: Mapping[ViewId, tuple[str, tuple[int, ...]]],
        root_type: str = "relative",
    ) -> ZarrImageLoader:
        """The loader BigStitcher 2.x writes (version 3.0): ``{(timepoint, setup): (path, indices)}``."""
        zgs = tuple(
            ZGroup(t, s, p, timepoint_attr="tp", path_attr=True, indices=tuple(int(i) for i in idx))
            for (t, s), (p, idx) in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        )
        return cls(root=root, zgroups=zgs, root_type=root_type, version="3.0")

    def container_uri(self, base_path: str) -> str:
        if self.s3bucket:
            return f"s3://{self.s3bucket.strip().strip('/')}/{self.root.strip().strip('/')}"
        return _resolve(self.root, self.root_type, base_path)


@dataclass(frozen=True)
class N5ImageLoader:
    """``bdv.n5``: BDV N5 container, view data at ``setup{s}/timepoint{t}/s{level}``."""

    format: ClassVar[str] = "bdv.n5"
    path: str
    path_type: str = "relative"
    version: str | None = "1.0"
    raw: Preserved = EMPTY


@dataclass(frozen=True)
class Hdf5Partition:
    """One ``<partition>``: a file holding some timepoints x setups of a BDV HDF5 dataset.

    ``timepoints_mapped`` / ``setups_mapped`` are the ids inside the partition file
    (equal to the sequence ids when the XML has no ``*Mapped`` element).
    """

    path: str
    path_type: str
    timepoints: tuple[int, ...]
    setups: tuple[int, ...]
    timepoints_mapped: tuple[int, ...]
    setups_mapped: tuple[int, ...]

    def mapped(self, view: ViewId) -> ViewId | None:
        """The view's (timepoint, setup) inside this partition, or None if it is not here."""
        t, s = view
        if t not in self.timepoints or s not in self.setups:
            return None
        return self.timepoints_mapped[self.timepoints.index(t)], self.setups_mapped[self.setups.index(s)]


def _int_list(text: str | None, what: str, source: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in (text or "").split())
    except ValueError:
        raise SpimDataError(f"{source}: <partition>: <{what}> is not a list of integers: {text!r}") from None


@dataclass(frozen=True)
class Hdf5ImageLoader:
    """``bdv.hdf5``: BDV HDF5 file, view data at ``t{t:05d}/s{s:02d}/{level}/cells``.

    ``<partition>`` children are kept verbatim (in ``raw``, so they round-trip as
    written) and read by :meth:`partitions`; :func:`locate` points a view that a
    partition holds at the partition file and its mapped ids.
    """

    format: ClassVar[str] = "bdv.hdf5"
    path: str
    path_type: str = "relative"
    raw: Preserved = EMPTY

    def partitions(self, source: str = "<new SpimData>") -> tuple[Hdf5Partition, ...]:
        """The ``<partition>`` elements (bigdataviewer-core ``XmlIoHdf5ImageLoader``)."""
        out = []
        for _, raw in self.raw.children:
            node = raw.to_node()
            if node.tag != "partition":
                continue
            path_e = node.find("path")
            if path_e is None or not (path_e.text or "").strip():
                raise SpimDataError(f"{source}: <ImageLoader format=\"bdv.hdf5\">: <partition> without <path>")
            tps = _int_list(node.findtext("timepoints"), "timepoints", source)
            sus = _int_list(node.findtext("setups"), "setups", source)
            tpm = _int_list(node.findtext("timepointsMapped"), "timepointsMapped", source) if node.find(
                "timepointsMapped") is not None else tps
            sum_ = _int_list(node.findtext("setupsMapped"), "setupsMapped", source) if node.find(
                "setupsMapped") is not None else sus
            if len(tpm) != len(tps) or len(sum_) != len(sus):
                raise SpimDataError(
                    f"{source}: <partition> {path_e.text.strip()!r}: mapped ids do not pair with the sequence ids"
                )
            out.append(Hdf5Partition(path_e.text.strip(), path_e.get("type", "relative"), tps, sus, tpm, sum_))
        return tuple(out)


@dataclass(frozen=True)
class FileMapping:
    """One ``<FileMapping view_setup= timepoint= series= channel=><file>..</file>``."""

    timepoint: int
    setup: int
    file: str
    series: int = 0
    channel: int = 0
    file_type: str = "relative"
    raw: Preserved = EMPTY

    @property
    def view(self) -> ViewId:
        return (self.timepoint, self.setup)


@dataclass(frozen=True)
class FileMapImageLoader:
    """``spimreconstruction.filemap2``: one file (TIFF) per view, plus series and channel."""

    format: ClassVar[str] = "spimreconstruction.filemap2"
    files: tuple[FileMapping, ...] = ()
    zgrouped: str | None = "false"
    raw: Preserved = EMPTY
    files_raw: Preserved = EMPTY


@dataclass(frozen=True)
class SetupIdDefinition:
    """A split setup: ``new_id`` is the box ``[min, max]`` (inclusive, x y z voxels) of ``old_id``."""

    new_id: int
    old_id: int
    min: tuple[int, ...]
    max: tuple[int, ...]
    raw: Preserved = EMPTY


@dataclass(frozen=True)
class SplitImageLoader:
    """``split.viewerimgloader``: wraps another loader; setups are boxes of its setups.

    The wrapped ``<SequenceDescription>`` of the original setups is preserved verbatim
    (in ``raw``) but not modelled.
    """

    format: ClassVar[str] = "split.viewerimgloader"
    inner: ImageLoader
    setup_ids: tuple[SetupIdDefinition, ...] = ()
    raw: Preserved = EMPTY
    setup_ids_raw: Preserved = EMPTY

    def definition(self, new_setup: int) -> SetupIdDefinition | None:
        for d in self.setup_ids:
            if d.new_id == new_setup:
                return d
        return None


@dataclass(frozen=True)
class FlatFieldFiles:
    """One ``<FlatField Timepoint= ViewSetup=>``: the bright and dark images of a view.

    ``bright`` / ``dark`` are the paths as written (None where the element is absent), with
    their ``type`` attribute; in an :class:`ImageLocation` they are resolved (absolute).
    ``timepoint_attr`` / ``setup_attr``: the attribute names as read (BigStitcher writes
    ``Timepoint`` and ``ViewSetup``; ``timepoint`` and ``setup`` are read too) and written back.
    """

    timepoint: int
    setup: int
    bright: str | None = None
    bright_type: str = "relative"
    dark: str | None = None
    dark_type: str = "relative"
    timepoint_attr: str = "Timepoint"
    setup_attr: str = "ViewSetup"
    raw: Preserved = EMPTY


@dataclass(frozen=True)
class FlatFieldImageLoader:
    """BigStitcher's flat-field correction: ``spimreconstruction.wrapped.flatfield.default``
    (or ``.multiresolution``, the same XML) wrapping another loader.

    A view with a ``<FlatField>`` entry is read as ``(x - dark) * mean(bright - dark) /
    (bright - dark)`` (:mod:`rhapso_core.io.flatfield_source`) while ``active``; other views,
    and every view when ``active`` is false, as the wrapped loader gives them.
    """

    inner: ImageLoader
    format: str = "spimreconstruction.wrapped.flatfield.multiresolution"
    active: bool = True
    cached: str | None = "true"
    flatfields: tuple[FlatFieldFiles, ...] = ()
    raw: Preserved = EMPTY
    flatfields_raw: Preserved = EMPTY

    def files(self, view: ViewId) -> FlatFieldFiles | None:
        t, s = int(view[0]), int(view[1])
        for f in self.flatfields:
            if f.timepoint == t and f.setup == s:
                return f
        return None


FLATFIELD_FORMATS = ("spimreconstruction.wrapped.flatfield.default",
                     "spimreconstruction.wrapped.flatfield.multiresolution")


@dataclass(frozen=True)
class UnknownImageLoader:
    """A loader format this package does not know (kept verbatim; only in non-strict loads)."""

    format: str
    element: RawElement


ImageLoader = Union[
    ZarrImageLoader, N5ImageLoader, Hdf5ImageLoader, FileMapImageLoader, SplitImageLoader, FlatFieldImageLoader,
    UnknownImageLoader,
]

LOADER_FORMATS: dict[str, type] = {
    **{c.format: c for c in (ZarrImageLoader, N5ImageLoader, Hdf5ImageLoader, FileMapImageLoader, SplitImageLoader)},
    **{f: FlatFieldImageLoader for f in FLATFIELD_FORMATS},
}


def locate(loader: ImageLoader, view: ViewId, base_path: str, source: str = "<new SpimData>") -> ImageLocation:
    """Where ``view`` = (timepoint, setup) is stored, for a loader and a resolved base path.

    Raises
    ------
    SpimDataError
        The loader has no entry for the view, or its format is not supported.
    """
    t, s = int(view[0]), int(view[1])
    if isinstance(loader, ZarrImageLoader):
        for g in loader.zgroups:
            if g.timepoint == t and g.setup == s:
                return ImageLocation("ome-zarr", loader.container_uri(base_path), g.path.strip(), indices=g.indices)
        raise SpimDataError(f"{source}: <ImageLoader format=\"{loader.format}\">: no <zgroup> for view timepoint={t} setup={s}")
    if isinstance(loader, N5ImageLoader):
        return ImageLocation("n5", _resolve(loader.path, loader.path_type, base_path), f"setup{s}/timepoint{t}")
    if isinstance(loader, Hdf5ImageLoader):
        for part in loader.partitions(source):
            mapped = part.mapped((t, s))
            if mapped is not None:
                return ImageLocation(
                    "hdf5", _resolve(part.path, part.path_type, base_path), f"t{mapped[0]:05d}/s{mapped[1]:02d}"
                )
        return ImageLocation("hdf5", _resolve(loader.path, loader.path_type, base_path), f"t{t:05d}/s{s:02d}")
    if isinstance(loader, FileMapImageLoader):
        for m in loader.files:
            if m.timepoint == t and m.setup == s:
                f = _resolve(m.file, m.file_type, base_path)
                return ImageLocation("tiff", f, "", files=(f,), series=m.series, channel=m.channel)
        raise SpimDataError(f"{source}: <ImageLoader format=\"{loader.format}\">: no <FileMapping> for view timepoint={t} setup={s}")
    if isinstance(loader, SplitImageLoader):
        d = loader.definition(s)
        if d is None:
            raise SpimDataError(f"{source}: <ImageLoader format=\"{loader.format}\">: no <SetupIdDefinition> with NewId {s}")
        parent_view = (t, d.old_id)
        inner = locate(loader.inner, parent_view, base_path, source)
        lo = tuple(int(v) for v in d.min[:3])
        size = tuple(int(b) - int(a) + 1 for a, b in zip(d.min[:3], d.max[:3]))
        # A flat field of the parent view stays with ``inner`` (applied before the crop).
        return replace(inner, parent=parent_view, offset_xyz=lo, size_xyz=size, inner=inner,  # type: ignore[arg-type]
                       flatfield=None)
    if isinstance(loader, FlatFieldImageLoader):
        inner = locate(loader.inner, view, base_path, source)
        entry = loader.files(view)
        if not loader.active or entry is None or (entry.bright is None and entry.dark is None):
            return inner
        files = replace(
            entry,
            bright=None if entry.bright is None else _resolve(entry.bright, entry.bright_type, base_path),
            bright_type="absolute",
            dark=None if entry.dark is None else _resolve(entry.dark, entry.dark_type, base_path),
            dark_type="absolute",
            raw=EMPTY,
        )
        return replace(inner, flatfield=files)
    fmt = getattr(loader, "format", type(loader).__name__)
    raise SpimDataError(
        f"{source}: <ImageLoader format=\"{fmt}\">: unsupported image loader format "
        f"(supported: {', '.join(sorted(LOADER_FORMATS))})"
    )
