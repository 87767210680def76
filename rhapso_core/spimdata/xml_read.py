"""Parse SpimData XML (bytes) into the model; every failure is a one-line SpimDataError."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
from lxml import etree

from .. import transforms
from .errors import SpimDataError
from .loaders import (
    FLATFIELD_FORMATS,
    LOADER_FORMATS,
    FileMapImageLoader,
    FlatFieldFiles,
    FlatFieldImageLoader,
    FileMapping,
    Hdf5ImageLoader,
    ImageLoader,
    N5ImageLoader,
    SetupIdDefinition,
    SplitImageLoader,
    UnknownImageLoader,
    ZarrImageLoader,
    ZGroup,
)
from .model import (
    AttributeGroup,
    Entity,
    InterestPointsFile,
    SpimData,
    Timepoints,
    ViewId,
    ViewSetup,
    ViewTransform,
    parse_integer_pattern,
)
from .preserve import Preserved, RawElement, split_children

__all__ = ["parse_spimdata"]

T = TypeVar("T")

ROOT_KNOWN = ("BasePath", "SequenceDescription", "ViewRegistrations", "ViewInterestPoints")
SEQ_KNOWN = ("ImageLoader", "ViewSetups", "Timepoints", "MissingViews")


def _describe(elem: etree._Element) -> str:
    tag = elem.tag if isinstance(elem.tag, str) else "#comment"
    attrs = " ".join(f"{k}={v}" for k, v in elem.attrib.items())
    return f"<{tag}{' ' + attrs if attrs else ''}>"


class _Ctx:
    """File name, strictness, and the problems a non-strict load tolerated."""

    def __init__(self, source: str, strict: bool):
        self.source = source
        self.strict = strict
        self.issues: list[str] = []

    def message(self, where: etree._Element | str, msg: str, line: int | None = None) -> str:
        if not isinstance(where, str):
            line = line or where.sourceline
            where = _describe(where)
        return f"{self.source}: {where}: {msg}" + (f" (line {line})" if line else "")

    def fail(self, where: etree._Element | str, msg: str, line: int | None = None) -> SpimDataError:
        return SpimDataError(self.message(where, msg, line))

    def problem(self, where: etree._Element | str, msg: str, line: int | None = None) -> None:
        """A problem strict loads refuse and non-strict loads record."""
        if self.strict:
            raise self.fail(where, msg, line)
        self.issues.append(self.message(where, msg, line))


# ---------------------------------------------------------------------- leaf readers


def _text(elem: etree._Element) -> str:
    return elem.text or ""


def _int(ctx: _Ctx, where: etree._Element | str, text: str | None, what: str, line: int | None = None) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        raise ctx.fail(where, f"{what} is not an integer: {text!r}", line) from None


def _attr_int(ctx: _Ctx, elem: etree._Element, name: str) -> int:
    if name not in elem.attrib:
        raise ctx.fail(elem, f"missing attribute {name!r}")
    return _int(ctx, elem, elem.get(name), f"attribute {name!r}")


def _numbers(
    ctx: _Ctx,
    where: etree._Element | str,
    text: str,
    what: str,
    conv: Callable[[str], T],
    n: int | None,
    line: int | None = None,
) -> tuple[T, ...]:
    parts = text.split()
    try:
        vals = tuple(conv(p) for p in parts)
    except ValueError:
        bad = next(p for p in parts if not _ok(conv, p))
        raise ctx.fail(where, f"{what} has a non-numeric value {bad!r}", line) from None
    if n is not None and len(vals) != n:
        raise ctx.fail(where, f"{what} has {len(vals)} numbers, expected {n}", line)
    return vals


def _ok(conv: Callable[[str], object], p: str) -> bool:
    try:
        conv(p)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------- image loaders


def _req(ctx: _Ctx, elem: etree._Element, tag: str) -> etree._Element:
    """The required child ``tag`` of ``elem``."""
    c = elem.find(tag)
    if c is None:
        raise ctx.fail(elem, f"missing <{tag}>")
    return c


def _path_leaf(ctx: _Ctx, loader: etree._Element, tag: str, hints: dict[str, str]) -> tuple[str, str]:
    e = _req(ctx, loader, tag)
    hints[tag] = _text(e)
    return _text(e).strip(), e.get("type", "relative")


def _indices(ctx: _Ctx, g: etree._Element) -> tuple[int, ...] | None:
    """A zgroup's ``indicies``: ``"[]"`` -> ``()``, ``"0 1"`` -> ``(0, 1)``, absent -> None."""
    text = g.get("indicies")
    if text is None:
        return None
    if text.strip() in ("[]", ""):
        return ()
    vals = _numbers(ctx, g, text, "attribute 'indicies'", int, None)
    if len(vals) > 2 or any(v < 0 for v in vals):
        raise ctx.fail(g, f"attribute 'indicies' must be at most two non-negative indices (channel, timepoint), got {text!r}")
    return vals


def _zarr_loader(ctx: _Ctx, elem: etree._Element) -> ZarrImageLoader:
    known = ("s3bucket", "zarr", "zgroups")
    kids, pres, _ = split_children(elem, known, ("format", "version"), known)
    hints: dict[str, str] = {}
    root, root_type = _path_leaf(ctx, elem, "zarr", hints)
    bucket = kids["s3bucket"][0] if "s3bucket" in kids else None
    if bucket is not None:
        hints["s3bucket"] = _text(bucket)
    groups: list[ZGroup] = []
    zg_pres = Preserved()
    if "zgroups" in kids:
        zkids, zg_pres, _ = split_children(kids["zgroups"][0], ("zgroup",))
        for g in zkids.get("zgroup", []):
            tp_attr = "timepoint" if "timepoint" in g.attrib else "tp"
            if "path" in g.attrib:
                # BigStitcher 2.x (loader version 2.0 / 3.0): setup= tp= path= indicies= attributes
                # (multiview-reconstruction XmlIoAllenOMEZarrLoader).
                _, gp, _ = split_children(g, (), ("setup", tp_attr, "path", "indicies"))
                groups.append(
                    ZGroup(
                        timepoint=_attr_int(ctx, g, tp_attr),
                        setup=_attr_int(ctx, g, "setup"),
                        path=g.get("path", "").strip(),
                        timepoint_attr=tp_attr,
                        raw=Preserved(
                            gp.attrib, gp.children, gp.order,
                            {"path": g.get("path", ""), **({"indicies": g.get("indicies")} if "indicies" in g.attrib else {})},
                        ),
                        path_attr=True,
                        indices=_indices(ctx, g),
                    )
                )
                continue
            _, gp, _ = split_children(g, ("path",), ("setup", tp_attr), ("path",))
            path_e = _req(ctx, g, "path")
            groups.append(
                ZGroup(
                    timepoint=_attr_int(ctx, g, tp_attr),
                    setup=_attr_int(ctx, g, "setup"),
                    path=_text(path_e).strip(),
                    timepoint_attr=tp_attr,
                    raw=Preserved(gp.attrib, gp.children, gp.order, {"path": _text(path_e)}),
                )
            )
    else:
        ctx.problem(elem, "missing <zgroups>")
    return ZarrImageLoader(
        root=root,
        zgroups=tuple(groups),
        root_type=root_type,
        s3bucket=_text(bucket).strip() if bucket is not None else None,
        version=elem.get("version"),
        raw=Preserved(pres.attrib, pres.children, pres.order, hints),
        zgroups_raw=zg_pres,
    )


def _n5_loader(ctx: _Ctx, elem: etree._Element) -> N5ImageLoader:
    _, pres, _ = split_children(elem, ("n5",), ("format", "version"), ("n5",))
    hints: dict[str, str] = {}
    path, ptype = _path_leaf(ctx, elem, "n5", hints)
    raw = Preserved(pres.attrib, pres.children, pres.order, hints)
    return N5ImageLoader(path=path, path_type=ptype, version=elem.get("version"), raw=raw)


def _hdf5_loader(ctx: _Ctx, elem: etree._Element) -> Hdf5ImageLoader:
    _, pres, _ = split_children(elem, ("hdf5",), ("format",), ("hdf5",))
    hints: dict[str, str] = {}
    path, ptype = _path_leaf(ctx, elem, "hdf5", hints)
    return Hdf5ImageLoader(path=path, path_type=ptype, raw=Preserved(pres.attrib, pres.children, pres.order, hints))


def _filemap_loader(ctx: _Ctx, elem: etree._Element) -> FileMapImageLoader:
    kids, pres, _ = split_children(elem, ("ZGrouped", "files"), ("format",), ("ZGrouped", "files"))
    zgrouped = _text(kids["ZGrouped"][0]) if "ZGrouped" in kids else None
    maps: list[FileMapping] = []
    files_pres = Preserved()
    if "files" in kids:
        fk, files_pres, _ = split_children(kids["files"][0], ("FileMapping",))
        for m in fk.get("FileMapping", []):
            _, mp, _ = split_children(m, ("file",), ("view_setup", "timepoint", "series", "channel"), ("file",))
            f = _req(ctx, m, "file")
            maps.append(
                FileMapping(
                    timepoint=_attr_int(ctx, m, "timepoint"),
                    setup=_attr_int(ctx, m, "view_setup"),
                    file=_text(f).strip(),
                    series=_attr_int(ctx, m, "series") if "series" in m.attrib else 0,
                    channel=_attr_int(ctx, m, "channel") if "channel" in m.attrib else 0,
                    file_type=f.get("type", "relative"),
                    raw=Preserved(mp.attrib, mp.children, mp.order, {"file": _text(f)}),
                )
            )
    else:
        ctx.problem(elem, "missing <files>")
    return FileMapImageLoader(files=tuple(maps), zgrouped=zgrouped, raw=pres, files_raw=files_pres)


def _split_loader(ctx: _Ctx, elem: etree._Element) -> SplitImageLoader:
    kids, pres, _ = split_children(elem, ("ImageLoader", "SetupIds"), ("format",), ("ImageLoader", "SetupIds"))
    inner = _loader(ctx, _req(ctx, elem, "ImageLoader"))
    defs: list[SetupIdDefinition] = []
    ids_pres = Preserved()
    if "SetupIds" in kids:
        dk, ids_pres, _ = split_children(kids["SetupIds"][0], ("SetupIdDefinition",))
        for d in dk.get("SetupIdDefinition", []):
            known = ("NewId", "OldId", "min", "max")
            _, dp, _ = split_children(d, known, (), known)
            h = {k: _text(_req(ctx, d, k)) for k in known}
            defs.append(
                SetupIdDefinition(
                    new_id=_int(ctx, d, h["NewId"], "<NewId>"),
                    old_id=_int(ctx, d, h["OldId"], "<OldId>"),
                    min=_numbers(ctx, d, h["min"], "<min>", int, 3),
                    max=_numbers(ctx, d, h["max"], "<max>", int, 3),
                    raw=Preserved(dp.attrib, dp.children, dp.order, h),
                )
            )
    else:
        ctx.problem(elem, "missing <SetupIds>")
    return SplitImageLoader(inner=inner, setup_ids=tuple(defs), raw=pres, setup_ids_raw=ids_pres)


def _bool_attr(ctx: _Ctx, elem: etree._Element, name: str, default: bool) -> bool:
    text = elem.get(name)
    if text is None:
        return default
    if text.strip().lower() not in ("true", "false"):
        ctx.problem(elem, f"attribute {name!r} must be true or false, got {text!r}")
        return default
    return text.strip().lower() == "true"


def _flatfield_loader(ctx: _Ctx, elem: etree._Element) -> FlatFieldImageLoader:
    """BigStitcher's ``XmlIoFlatfieldCorrectedWrappedImgLoader``: ``Active`` / ``Cached``
    attributes, ``<WrappedImgLoader><ImageLoader .../></WrappedImgLoader>``, and
    ``<FlatFields>`` of ``<FlatField Timepoint= ViewSetup=>`` (mpicbg's ``XmlKeys``; the
    lower-case ``timepoint`` / ``setup`` of hand-made files are read too) with ``<BrightImg>``
    and ``<DarkImg>`` paths (either may be absent)."""
    kids, pres, _ = split_children(elem, ("WrappedImgLoader", "FlatFields"), ("format", "Active", "Cached"),
                                   ("WrappedImgLoader", "FlatFields"))
    wrapped = _req(ctx, elem, "WrappedImgLoader")
    inner = _loader(ctx, _req(ctx, wrapped, "ImageLoader"))
    entries: list[FlatFieldFiles] = []
    ff_pres = Preserved()
    if "FlatFields" in kids:
        fk, ff_pres, _ = split_children(kids["FlatFields"][0], ("FlatField",))
        for f in fk.get("FlatField", []):
            known = ("BrightImg", "DarkImg")
            t_attr = "Timepoint" if f.get("Timepoint") is not None else "timepoint"
            s_attr = "ViewSetup" if f.get("ViewSetup") is not None else "setup"
            fkids, fp, _ = split_children(f, known, (t_attr, s_attr), known)
            hints: dict[str, str] = {}
            paths = {}
            for tag in known:
                if tag in fkids:
                    paths[tag] = _path_leaf(ctx, f, tag, hints)
            bright, bright_type = paths.get("BrightImg", (None, "relative"))
            dark, dark_type = paths.get("DarkImg", (None, "relative"))
            entries.append(FlatFieldFiles(
                timepoint=_int(ctx, f, f.get(t_attr), f"attribute '{t_attr}'"),
                setup=_int(ctx, f, f.get(s_attr), f"attribute '{s_attr}'"),
                bright=bright or None, bright_type=bright_type, dark=dark or None, dark_type=dark_type,
                timepoint_attr=t_attr, setup_attr=s_attr,
                raw=Preserved(fp.attrib, fp.children, fp.order, hints),
            ))
    else:
        ctx.problem(elem, "missing <FlatFields>")
    return FlatFieldImageLoader(
        inner=inner, format=str(elem.get("format")), active=_bool_attr(ctx, elem, "Active", True),
        cached=elem.get("Cached"), flatfields=tuple(entries), raw=pres, flatfields_raw=ff_pres,
    )


_LOADER_READERS: dict[str, Callable[[_Ctx, etree._Element], ImageLoader]] = {
    ZarrImageLoader.format: _zarr_loader,
    N5ImageLoader.format: _n5_loader,
    Hdf5ImageLoader.format: _hdf5_loader,
    FileMapImageLoader.format: _filemap_loader,
    SplitImageLoader.format: _split_loader,
    **{f: _flatfield_loader for f in FLATFIELD_FORMATS},
}


def _loader(ctx: _Ctx, elem: etree._Element) -> ImageLoader:
    fmt = elem.get("format")
    reader = _LOADER_READERS.get(str(fmt))
    if reader is None:
        msg = f"unknown image loader format {fmt!r} (supported: {', '.join(sorted(LOADER_FORMATS))})"
        ctx.problem(elem, msg)
        return UnknownImageLoader(format=str(fmt), element=RawElement.from_node(elem))
    return reader(ctx, elem)


# ---------------------------------------------------------------------- sequence description


def _setup(ctx: _Ctx, elem: etree._Element) -> ViewSetup:
    known = ("id", "name", "size", "voxelSize", "attributes")
    kids, pres, dups = split_children(elem, known, (), known)
    if dups:
        raise ctx.fail(elem, f"more than one <{dups[0]}>")
    if "id" not in kids:
        raise ctx.fail(elem, "missing <id>")
    hints: dict[str, str] = {"id": _text(kids["id"][0])}
    sid = _int(ctx, elem, hints["id"], "<id>", kids["id"][0].sourceline)
    where = f"<ViewSetup id={sid}>"
    name = _text(kids["name"][0]) if "name" in kids else None
    size = None
    if "size" in kids:
        hints["size"] = _text(kids["size"][0])
        size = _numbers(ctx, where, hints["size"], "<size>", int, 3, kids["size"][0].sourceline)
    else:
        ctx.problem(where, "missing <size>", elem.sourceline)
    vsize = vunit = None
    vpres = Preserved()
    if "voxelSize" in kids:
        vk, vp, _ = split_children(kids["voxelSize"][0], ("unit", "size"), (), ("unit", "size"))
        vh: dict[str, str] = {}
        if "unit" in vk:
            vunit = _text(vk["unit"][0])
        if "size" in vk:
            vh["size"] = _text(vk["size"][0])
            vsize = _numbers(ctx, where, vh["size"], "<voxelSize> <size>", float, 3, vk["size"][0].sourceline)
            if vsize is not None and not all(np.isfinite(v) and v > 0 for v in vsize):
                # Quoted as written: a derived value (an inverse, a ratio) would not be found in the file.
                ctx.problem(where, f"<voxelSize> <size> {vh['size'].strip()!r}: voxel sizes must be positive, "
                            "finite numbers", vk["size"][0].sourceline)
        vpres = Preserved(vp.attrib, vp.children, vp.order, vh)
    attrs: dict[str, int] = {}
    if "attributes" in kids:
        for a in kids["attributes"][0]:
            if not isinstance(a.tag, str):
                continue
            hints["attr:" + a.tag] = _text(a)
            attrs[a.tag] = _int(ctx, where, _text(a), f"<attributes> <{a.tag}>", a.sourceline)
    return ViewSetup(
        id=sid,
        name=name,
        size=size,
        voxel_size=vsize,
        voxel_unit=vunit,
        attributes=attrs,
        raw=Preserved(pres.attrib, pres.children, pres.order, hints),
        voxel_raw=vpres,
    )


def _attribute_group(ctx: _Ctx, elem: etree._Element) -> AttributeGroup:
    ents: list[Entity] = []
    children = [c for c in elem if isinstance(c.tag, str)]
    kinds = {c.tag for c in children}
    _, gpres, _ = split_children(elem, kinds, ("name",))
    for c in children:
        ck, cp, _ = split_children(c, ("id", "name"), (), ("id", "name"))
        if "id" not in ck:
            raise ctx.fail(c, "missing <id>")
        idt = _text(ck["id"][0])
        ents.append(
            Entity(
                kind=c.tag,
                id=_int(ctx, c, idt, "<id>", ck["id"][0].sourceline),
                name=_text(ck["name"][0]) if "name" in ck else None,
                raw=Preserved(cp.attrib, cp.children, cp.order, {"id": idt}),
            )
        )
    return AttributeGroup(name=elem.get("name", ""), entities=tuple(ents), raw=gpres)


def _timepoints(ctx: _Ctx, elem: etree._Element) -> Timepoints:
    ttype = elem.get("type")
    if ttype == "range":
        kids, pres, _ = split_children(elem, ("first", "last"), ("type",), ("first", "last"))
        f, l = _req(ctx, elem, "first"), _req(ctx, elem, "last")
        h = {"first": _text(f), "last": _text(l)}
        return Timepoints(
            "range",
            first=_int(ctx, elem, h["first"], "<first>", f.sourceline),
            last=_int(ctx, elem, h["last"], "<last>", l.sourceline),
            raw=Preserved(pres.attrib, pres.children, pres.order, h),
        )
    if ttype == "pattern":
        kids, pres, _ = split_children(elem, ("integerpattern",), ("type",), ("integerpattern",))
        p = _req(ctx, elem, "integerpattern")
        text = _text(p)
        try:
            parse_integer_pattern(text)
        except ValueError as e:
            raise ctx.fail(p, f"bad integer pattern {text!r}: {e}") from None
        return Timepoints("pattern", pattern=text, raw=pres)
    if ttype == "list":
        kids, pres, _ = split_children(elem, ("Timepoint",), ("type",))
        ids = []
        h = {}
        for i, tp in enumerate(kids.get("Timepoint", [])):
            e = _req(ctx, tp, "id")
            h[f"id{i}"] = _text(e)
            ids.append(_int(ctx, elem, h[f"id{i}"], "<Timepoint> <id>", tp.sourceline))
        return Timepoints("list", listed=tuple(ids), raw=Preserved(pres.attrib, pres.children, pres.order, h))
    raise ctx.fail(elem, f"unknown Timepoints type {ttype!r} (expected range, pattern or list)")


def _missing(ctx: _Ctx, elem: etree._Element) -> tuple[tuple[ViewId, ...], Preserved]:
    kids, pres, _ = split_children(elem, ("MissingView",))
    views = tuple((_attr_int(ctx, m, "timepoint"), _attr_int(ctx, m, "setup")) for m in kids.get("MissingView", []))
    return views, pres


# ---------------------------------------------------------------------- registrations


def _registration(ctx: _Ctx, elem: etree._Element) -> tuple[ViewId, tuple[ViewTransform, ...], Preserved]:
    view = (_attr_int(ctx, elem, "timepoint"), _attr_int(ctx, elem, "setup"))
    kids, pres, _ = split_children(elem, ("ViewTransform",), ("timepoint", "setup"))
    out: list[ViewTransform] = []
    where = f"<ViewRegistration timepoint={view[0]} setup={view[1]}>"
    for vt in kids.get("ViewTransform", []):
        vtype = vt.get("type", "affine")
        if vtype != "affine":
            raise ctx.fail(where, f"unsupported ViewTransform type {vtype!r} (only 'affine')", vt.sourceline)
        vk, vp, dups = split_children(vt, ("Name", "affine"), ("type",), ("Name", "affine"))
        if "affine" not in vk:
            raise ctx.fail(where, f"<ViewTransform> {len(out) + 1} has no <affine>", vt.sourceline)
        aff = vk["affine"][0]
        text = _text(aff)
        vals = _numbers(ctx, where, text, "affine", float, 12, aff.sourceline)
        if not all(np.isfinite(vals)):
            raise ctx.fail(where, "affine has non-finite values", aff.sourceline)
        linear = np.asarray(vals, dtype=np.float64).reshape(3, 4)[:, :3]
        if not np.isfinite(np.linalg.cond(linear)) or np.linalg.cond(linear) > 1e12:
            # A singular transform maps the view onto a plane or a point: nothing downstream
            # (fusion bounds, the solve, the inverse for reading) is defined for it.
            ctx.problem(where, f"<ViewTransform> {len(out) + 1} affine {text.strip()!r} is singular "
                        f"(its 3x3 part has determinant {np.linalg.det(linear):.3g})", aff.sourceline)
        out.append(
            ViewTransform(
                name=_text(vk["Name"][0]) if "Name" in vk else None,
                affine=transforms.from_xml_values(vals),
                type=vtype,
                raw=Preserved(vp.attrib, vp.children, vp.order, {"affine": text}),
            )
        )
    return view, tuple(out), pres


def _interest_points(ctx: _Ctx, elem: etree._Element) -> tuple[tuple[InterestPointsFile, ...], Preserved]:
    kids, pres, _ = split_children(elem, ("ViewInterestPointsFile",))
    out = []
    for f in kids.get("ViewInterestPointsFile", []):
        _, fp, _ = split_children(f, (), ("timepoint", "setup", "label", "params"))
        text = _text(f)
        out.append(
            InterestPointsFile(
                timepoint=_attr_int(ctx, f, "timepoint"),
                setup=_attr_int(ctx, f, "setup"),
                label=f.get("label", ""),
                params=f.get("params", ""),
                path=text.strip(),
                raw=Preserved(fp.attrib, fp.children, fp.order, {"path": text}),
            )
        )
    return tuple(out), pres


# ---------------------------------------------------------------------- document


def _parse_xml(data: bytes, source: str) -> etree._Element:
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True, huge_tree=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        msg = str(e).splitlines()[0] if str(e) else "empty or unreadable document"
        msg = msg.split(" (<string>,")[0]
        raise SpimDataError(f"{source}: malformed or truncated XML: {msg}") from None
    if root is None:
        raise SpimDataError(f"{source}: malformed or truncated XML: empty document")
    if root.tag != "SpimData":
        raise SpimDataError(f"{source}: <{root.tag}>: root element is not <SpimData>")
    for ent in root.iter(etree.Entity):
        # Entities are never expanded (no entity bombs, no external files): a reference
        # would silently read as an empty value, so it is refused by name.
        parent = ent.getparent()
        where = f"<{parent.tag}>" if parent is not None else "document"
        raise SpimDataError(f"{source}: {where}: unresolved XML entity {ent.text} (line {ent.sourceline}): "
                            "entities are not expanded; write the value itself")
    return root


def parse_spimdata(data: bytes, source: str, strict: bool = True) -> SpimData:
    """Parse SpimData XML bytes; ``source`` names the file in error messages.

    With ``strict=False`` missing sections, views without a registration, bad
    affines and unknown loader formats are tolerated (listed in ``SpimData.issues``;
    unparsable registrations are kept verbatim) so partial files still round-trip.
    """
    ctx = _Ctx(source, strict)
    root = _parse_xml(data, source)
    raw: dict[str, Preserved] = {}
    kids, raw["SpimData"], dups = split_children(root, ROOT_KNOWN, (), ROOT_KNOWN)
    for d in dups:
        ctx.problem(root, f"more than one <{d}>")

    base_text, base_type = ".", "relative"
    if "BasePath" in kids:
        bp = kids["BasePath"][0]
        base_text, base_type = _text(bp), bp.get("type", "relative")
        _, bpres, _ = split_children(bp, (), ("type",))
        raw["BasePath"] = bpres
    else:
        ctx.problem(root, "missing <BasePath>")

    loader = None
    setups: dict[int, ViewSetup] = {}
    groups: list[AttributeGroup] = []
    timepoints = None
    missing: tuple[ViewId, ...] = ()
    if "SequenceDescription" in kids:
        seq = kids["SequenceDescription"][0]
        skids, raw["SequenceDescription"], sdups = split_children(seq, SEQ_KNOWN, (), SEQ_KNOWN)
        for d in sdups:
            ctx.problem(seq, f"more than one <{d}>")
        if "ImageLoader" in skids:
            loader = _loader(ctx, skids["ImageLoader"][0])
        else:
            ctx.problem(seq, "missing <ImageLoader>")
        if "ViewSetups" in skids:
            vs = skids["ViewSetups"][0]
            vkids, raw["ViewSetups"], _ = split_children(vs, ("ViewSetup", "Attributes"))
            for e in vkids.get("ViewSetup", []):
                s = _setup(ctx, e)
                if s.id in setups:
                    raise ctx.fail(e, f"duplicate ViewSetup id {s.id}")
                setups[s.id] = s
            groups = [_attribute_group(ctx, e) for e in vkids.get("Attributes", [])]
        else:
            ctx.problem(seq, "missing <ViewSetups>")
        if "Timepoints" in skids:
            timepoints = _timepoints(ctx, skids["Timepoints"][0])
        else:
            ctx.problem(seq, "missing <Timepoints>")
        if "MissingViews" in skids:
            missing, raw["MissingViews"] = _missing(ctx, skids["MissingViews"][0])
    else:
        ctx.problem(root, "missing <SequenceDescription>")

    regs: dict[ViewId, tuple[ViewTransform, ...]] = {}
    reg_raw: dict[ViewId, Preserved] = {}
    if "ViewRegistrations" in kids:
        vr = kids["ViewRegistrations"][0]
        rkids, rpres, _ = split_children(vr, ("ViewRegistration",))
        kept_raw = list(rpres.children)
        for i, e in enumerate(vr):
            if e.tag != "ViewRegistration":
                continue
            try:
                view, ts, pres = _registration(ctx, e)
            except SpimDataError as err:
                if ctx.strict:
                    raise
                ctx.issues.append(str(err))
                kept_raw.append((i, RawElement.from_node(e)))  # kept verbatim, in place
                continue
            if view in regs:
                ctx.problem(e, f"duplicate registration for timepoint={view[0]} setup={view[1]}")
                kept_raw.append((i, RawElement.from_node(e)))
                continue
            regs[view], reg_raw[view] = ts, pres
        raw["ViewRegistrations"] = Preserved(rpres.attrib, tuple(sorted(kept_raw, key=lambda p: p[0])), rpres.order)
    else:
        ctx.problem(root, "missing <ViewRegistrations>")

    interest: tuple[InterestPointsFile, ...] = ()
    if "ViewInterestPoints" in kids:
        interest, raw["ViewInterestPoints"] = _interest_points(ctx, kids["ViewInterestPoints"][0])

    sd = SpimData(
        base_path_text=base_text,
        base_path_type=base_type,
        image_loader=loader,
        setups=setups,
        attribute_groups=tuple(groups),
        timepoints=timepoints,
        missing=missing,
        registrations=regs,
        interest_points=interest,
        source_uri=source,
        raw=raw,
        registration_raw=reg_raw,
    )
    check_registrations(sd, ctx)
    return sd.replace(issues=tuple(ctx.issues))


def check_registrations(sd: SpimData, ctx: _Ctx | None = None) -> None:
    """Every non-missing view must have a registration (a problem for strict loads)."""
    ctx = ctx or _Ctx(sd.source_uri or "<new SpimData>", True)
    lacking = [v for v in sd.views() if v not in sd.registrations]
    if lacking:
        t, s = lacking[0]
        more = f" ({len(lacking)} views lack one)" if len(lacking) > 1 else ""
        ctx.problem("<ViewRegistrations>", f"no <ViewRegistration> for timepoint={t} setup={s}{more}")
