"""Write the model back to SpimData XML, pretty-printed the way BigStitcher does.

Known elements are written from the model in BigStitcher's order (or the source's
order where the source differed); preserved attributes and unknown children go
back where they were (see :mod:`rhapso_core.spimdata.preserve`).
"""

from __future__ import annotations

import numpy as np
from lxml import etree

from .. import transforms
from .loaders import (
    FileMapImageLoader,
    Hdf5ImageLoader,
    ImageLoader,
    N5ImageLoader,
    SplitImageLoader,
    FlatFieldImageLoader,
    UnknownImageLoader,
    ZarrImageLoader,
)
from .model import AttributeGroup, Entity, SpimData, Timepoints, ViewSetup, ViewTransform
from .preserve import EMPTY, Preserved, RawElement, arrange, finish, format_doubles, text_or_hint

__all__ = ["to_xml_bytes", "to_element", "CANON_ROOT", "CANON_SEQ", "FRESH_RAW"]

CANON_ROOT = ("BasePath", "SequenceDescription", "ViewRegistrations", "ViewInterestPoints")
CANON_SEQ = ("ImageLoader", "ViewSetups", "Timepoints", "MissingViews")

# What a SpimData built in memory writes: BigStitcher's full layout, including the
# empty sections this package does not model.
FRESH_RAW: dict[str, Preserved] = {
    "SpimData": Preserved(
        attrib=(("version", "0.2"),),
        children=tuple(
            (4 + i, RawElement(f"<{t}/>".encode()))
            for i, t in enumerate(("BoundingBoxes", "PointSpreadFunctions", "StitchingResults", "IntensityAdjustments"))
        ),
        order=CANON_ROOT,
    ),
    "SequenceDescription": Preserved(order=CANON_SEQ),
}


def _leaf(parent: etree._Element, tag: str, text: str, **attrib: str) -> etree._Element:
    e = etree.SubElement(parent, tag, attrib)
    e.text = text
    return e


def _int_text(value: int, hint: str | None) -> str:
    return text_or_hint(lambda: str(int(value)), hint, lambda h: int(h) == int(value))


def _ints_text(values, hint: str | None) -> str:
    vals = tuple(int(v) for v in values)
    return text_or_hint(lambda: " ".join(map(str, vals)), hint, lambda h: tuple(int(x) for x in h.split()) == vals)


def _floats_text(values, hint: str | None) -> str:
    vals = tuple(float(v) for v in values)
    return text_or_hint(lambda: format_doubles(vals), hint, lambda h: tuple(float(x) for x in h.split()) == vals)


def _str_text(value: str, hint: str | None) -> str:
    """Stripped string values keep their source whitespace while unchanged."""
    return text_or_hint(lambda: value, hint, lambda h: h.strip() == value)


# ---------------------------------------------------------------------- loaders


def _indices_text(indices: tuple[int, ...], hint: str | None) -> str:
    """BigStitcher writes ``[]`` for no indices, else space-separated integers."""

    def same(h: str) -> bool:
        return (() if h.strip() in ("[]", "") else tuple(int(x) for x in h.split())) == tuple(indices)

    return text_or_hint(lambda: " ".join(str(int(i)) for i in indices) if indices else "[]", hint, same)


def _loader(loader: ImageLoader) -> etree._Element:
    if isinstance(loader, UnknownImageLoader):
        return loader.element.to_node()
    e = etree.Element("ImageLoader", format=loader.format)
    h = getattr(loader, "raw", EMPTY).hints
    if isinstance(loader, ZarrImageLoader):
        if loader.version is not None:
            e.set("version", loader.version)
        if loader.s3bucket is not None:
            _leaf(e, "s3bucket", _str_text(loader.s3bucket, h.get("s3bucket")))
        _leaf(e, "zarr", _str_text(loader.root, h.get("zarr")), type=loader.root_type)
        zgs = etree.SubElement(e, "zgroups")
        for g in loader.zgroups:
            ge = etree.SubElement(zgs, "zgroup")
            ge.set("setup", str(int(g.setup)))
            ge.set(g.timepoint_attr, str(int(g.timepoint)))
            if g.path_attr:
                ge.set("path", _str_text(g.path, g.raw.hints.get("path")))
                if g.indices is not None:
                    ge.set("indicies", _indices_text(g.indices, g.raw.hints.get("indicies")))
            else:
                _leaf(ge, "path", _str_text(g.path, g.raw.hints.get("path")))
            finish(ge, g.raw)
        finish(zgs, loader.zgroups_raw)
    elif isinstance(loader, (N5ImageLoader, Hdf5ImageLoader)):
        tag = "n5" if isinstance(loader, N5ImageLoader) else "hdf5"
        if isinstance(loader, N5ImageLoader) and loader.version is not None:
            e.set("version", loader.version)
        _leaf(e, tag, _str_text(loader.path, h.get(tag)), type=loader.path_type)
    elif isinstance(loader, FileMapImageLoader):
        if loader.zgrouped is not None:
            _leaf(e, "ZGrouped", loader.zgrouped)
        files = etree.SubElement(e, "files")
        for m in loader.files:
            me = etree.SubElement(files, "FileMapping")
            for k, v in (("view_setup", m.setup), ("timepoint", m.timepoint), ("series", m.series), ("channel", m.channel)):
                me.set(k, str(int(v)))
            _leaf(me, "file", _str_text(m.file, m.raw.hints.get("file")), type=m.file_type)
            finish(me, m.raw)
        finish(files, loader.files_raw)
    elif isinstance(loader, SplitImageLoader):
        e.append(_loader(loader.inner))
        ids = etree.SubElement(e, "SetupIds")
        for d in loader.setup_ids:
            de = etree.SubElement(ids, "SetupIdDefinition")
            dh = d.raw.hints
            _leaf(de, "NewId", _int_text(d.new_id, dh.get("NewId")))
            _leaf(de, "OldId", _int_text(d.old_id, dh.get("OldId")))
            _leaf(de, "min", _ints_text(d.min, dh.get("min")))
            _leaf(de, "max", _ints_text(d.max, dh.get("max")))
            finish(de, d.raw)
        finish(ids, loader.setup_ids_raw)
    elif isinstance(loader, FlatFieldImageLoader):
        e.set("Active", "true" if loader.active else "false")
        if loader.cached is not None:
            e.set("Cached", loader.cached)
        etree.SubElement(e, "WrappedImgLoader").append(_loader(loader.inner))
        ffs = etree.SubElement(e, "FlatFields")
        for f in loader.flatfields:
            fe = etree.SubElement(ffs, "FlatField", {f.timepoint_attr: str(int(f.timepoint)),
                                                      f.setup_attr: str(int(f.setup))})
            for tag, path, ptype in (("BrightImg", f.bright, f.bright_type), ("DarkImg", f.dark, f.dark_type)):
                if path is not None:
                    _leaf(fe, tag, _str_text(path, f.raw.hints.get(tag)), type=ptype)
            finish(fe, f.raw)
        finish(ffs, loader.flatfields_raw)
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"not an image loader: {type(loader).__name__}")
    return finish(e, loader.raw)


# ---------------------------------------------------------------------- sequence description


def _setup(s: ViewSetup) -> etree._Element:
    e = etree.Element("ViewSetup")
    h = s.raw.hints
    _leaf(e, "id", _int_text(s.id, h.get("id")))
    if s.name is not None:
        _leaf(e, "name", s.name)
    if s.size is not None:
        _leaf(e, "size", _ints_text(s.size, h.get("size")))
    if s.voxel_size is not None or s.voxel_unit is not None:
        v = etree.SubElement(e, "voxelSize")
        if s.voxel_unit is not None:
            _leaf(v, "unit", s.voxel_unit)
        if s.voxel_size is not None:
            _leaf(v, "size", _floats_text(s.voxel_size, s.voxel_raw.hints.get("size")))
        finish(v, s.voxel_raw)
    if s.attributes:
        a = etree.SubElement(e, "attributes")
        for k, val in s.attributes.items():
            _leaf(a, k, _int_text(val, h.get("attr:" + k)))
    return finish(e, s.raw)


def _entity(ent: Entity) -> etree._Element:
    e = etree.Element(ent.kind)
    _leaf(e, "id", _int_text(ent.id, ent.raw.hints.get("id")))
    if ent.name is not None:
        _leaf(e, "name", ent.name)
    return finish(e, ent.raw)


def _group(g: AttributeGroup) -> etree._Element:
    e = etree.Element("Attributes", name=g.name)
    for ent in g.entities:
        e.append(_entity(ent))
    return finish(e, g.raw)


def _timepoints(tp: Timepoints) -> etree._Element:
    e = etree.Element("Timepoints", type=tp.type)
    h = tp.raw.hints
    if tp.type == "range":
        _leaf(e, "first", _int_text(tp.first, h.get("first")))  # type: ignore[arg-type]
        _leaf(e, "last", _int_text(tp.last, h.get("last")))  # type: ignore[arg-type]
    elif tp.type == "pattern":
        _leaf(e, "integerpattern", tp.pattern or "")
    else:
        for i, t in enumerate(tp.listed):
            _leaf(etree.SubElement(e, "Timepoint"), "id", _int_text(t, h.get(f"id{i}")))
    return finish(e, tp.raw)


def _sequence(sd: SpimData) -> etree._Element:
    pres = sd.raw.get("SequenceDescription", FRESH_RAW["SequenceDescription"])
    parts: dict[str, etree._Element | None] = dict.fromkeys(CANON_SEQ)
    if sd.image_loader is not None:
        parts["ImageLoader"] = _loader(sd.image_loader)
    if sd.setups or sd.attribute_groups or "ViewSetups" in pres.order:
        vs = etree.Element("ViewSetups")
        for s in sd.setups.values():
            vs.append(_setup(s))
        for g in sd.attribute_groups:
            vs.append(_group(g))
        parts["ViewSetups"] = finish(vs, sd.raw.get("ViewSetups", EMPTY))
    if sd.timepoints is not None:
        parts["Timepoints"] = _timepoints(sd.timepoints)
    if sd.missing or "MissingViews" in pres.order:
        mv = etree.Element("MissingViews")
        for t, s in sd.missing:
            etree.SubElement(mv, "MissingView", timepoint=str(int(t)), setup=str(int(s)))
        parts["MissingViews"] = finish(mv, sd.raw.get("MissingViews", EMPTY))
    e = etree.Element("SequenceDescription")
    for child in arrange(parts, pres.order, CANON_SEQ):
        e.append(child)
    return finish(e, pres)


# ---------------------------------------------------------------------- registrations, points


def _affine_text(t: ViewTransform) -> str:
    return text_or_hint(
        lambda: format_doubles(transforms.to_xml_values(t.affine)),
        t.raw.hints.get("affine"),
        lambda h: np.array_equal(transforms.from_xml_values(h), t.affine),
    )


def _registrations(sd: SpimData) -> etree._Element:
    e = etree.Element("ViewRegistrations")
    for (tp, setup), ts in sd.registrations.items():
        r = etree.SubElement(e, "ViewRegistration", timepoint=str(int(tp)), setup=str(int(setup)))
        for t in ts:
            vt = etree.SubElement(r, "ViewTransform", type=t.type)
            if t.name is not None:
                _leaf(vt, "Name", t.name)
            _leaf(vt, "affine", _affine_text(t))
            finish(vt, t.raw)
        finish(r, sd.registration_raw.get((tp, setup), EMPTY))
    pres = sd.raw.get("ViewRegistrations", EMPTY)
    # A registration kept verbatim by a non-strict load is dropped once the model has one.
    kept = tuple((i, r) for i, r in pres.children if _raw_registration_view(r) not in sd.registrations)
    return finish(e, Preserved(pres.attrib, kept, pres.order))


def _raw_registration_view(raw: RawElement) -> tuple[int, int] | None:
    node = raw.to_node()
    if node.tag != "ViewRegistration":
        return None
    try:
        return (int(node.get("timepoint", "")), int(node.get("setup", "")))
    except ValueError:
        return None


def _interest_points(sd: SpimData) -> etree._Element:
    e = etree.Element("ViewInterestPoints")
    for f in sd.interest_points:
        fe = etree.SubElement(
            e,
            "ViewInterestPointsFile",
            timepoint=str(int(f.timepoint)),
            setup=str(int(f.setup)),
            label=f.label,
            params=f.params,
        )
        fe.text = _str_text(f.path, f.raw.hints.get("path"))
        finish(fe, f.raw)
    return finish(e, sd.raw.get("ViewInterestPoints", EMPTY))


def to_element(sd: SpimData) -> etree._Element:
    """The ``<SpimData>`` element tree (not indented)."""
    pres = sd.raw.get("SpimData", FRESH_RAW["SpimData"])
    root = etree.Element("SpimData")
    bp = etree.Element("BasePath", type=sd.base_path_type)
    bp.text = sd.base_path_text
    parts: dict[str, etree._Element | None] = {
        "BasePath": finish(bp, sd.raw.get("BasePath", EMPTY)),
        "SequenceDescription": _sequence(sd),
        "ViewRegistrations": _registrations(sd),
        "ViewInterestPoints": _interest_points(sd) if (sd.interest_points or "ViewInterestPoints" in pres.order) else None,
    }
    for child in arrange(parts, pres.order, CANON_ROOT):
        root.append(child)
    return finish(root, pres)


def to_xml_bytes(sd: SpimData) -> bytes:
    """UTF-8 XML with BigStitcher's declaration and two-space indentation."""
    root = to_element(sd)
    etree.indent(root, space="  ")
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"
