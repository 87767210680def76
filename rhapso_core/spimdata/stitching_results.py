"""BigStitcher's ``<StitchingResults>``: pairwise shifts, their correlation and registration hash.

Layout (multiview-reconstruction ``XmlIoStitchingResults`` / ``XmlKeysStitchingResults``)::

    <StitchingResults>
      <PairwiseResult view_setup_a="0" view_setup_b="1" tp_a="0" tp_b="0">
        <shift>1.0 0.0 0.0 tx 0.0 1.0 0.0 ty 0.0 0.0 1.0 tz</shift>   (row-packed 3x4; old files: tx ty tz)
        <correlation>r</correlation>
        <hash>h</hash>                                                 (optional on read; 0.0 when absent)
        <overlap_boundingbox>minx miny minz maxx maxy maxz</overlap_boundingbox>   (optional on read)
      </PairwiseResult>
    </StitchingResults>

``view_setup_*`` / ``tp_*`` are comma-separated lists: a side may be a group of views (tiles
with several channels stitched together). ``shift`` is the world transform b's side must
undergo (with a held) to match a; ``hash`` identifies the registrations it was measured under
(:func:`rhapso_core.stitching.registration_hash`). The section is kept verbatim by the XML model
(``SpimData.raw["SpimData"]``); these functions read it and replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lxml import etree

from .errors import SpimDataError
from .model import SpimData
from .preserve import Preserved, RawElement, format_double, format_doubles

__all__ = ["PairwiseShift", "read_stitching_results", "with_stitching_results", "TAG"]

TAG = "StitchingResults"
_PAIR = "PairwiseResult"

ViewId = tuple[int, int]


@dataclass(frozen=True)
class PairwiseShift:
    """One ``<PairwiseResult>``: groups of views, world transform (4x4, x y z), r, hash, box."""

    views_a: tuple[ViewId, ...]
    views_b: tuple[ViewId, ...]
    transform: tuple[float, ...]  # 12 row-packed values of the 3x4 world transform
    correlation: float
    hash: float = 0.0
    box_min_xyz: tuple[float, float, float] | None = None
    box_max_xyz: tuple[float, float, float] | None = None

    @property
    def translation_xyz(self) -> tuple[float, float, float]:
        t = self.transform
        return (t[3], t[7], t[11])

    @property
    def affine(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :] = np.asarray(self.transform, dtype=np.float64).reshape(3, 4)
        return m

    @classmethod
    def translation(cls, views_a, views_b, shift_xyz, correlation, hash=0.0, box_min_xyz=None, box_max_xyz=None):
        x, y, z = (float(v) for v in shift_xyz)
        t = (1.0, 0.0, 0.0, x, 0.0, 1.0, 0.0, y, 0.0, 0.0, 1.0, z)
        views = [tuple((int(v[0]), int(v[1])) for v in vs) for vs in (views_a, views_b)]
        box = (None, None) if box_min_xyz is None else (tuple(map(float, box_min_xyz)), tuple(map(float, box_max_xyz)))
        return cls(views[0], views[1], t, float(correlation), float(hash), *box)


def _section(sd: SpimData) -> tuple[int, RawElement] | None:
    pres = sd.raw.get("SpimData")
    if pres is None:
        return None
    for idx, raw in pres.children:
        if raw.tag == TAG:
            return idx, raw
    return None


def _ints(text: str | None, where: str) -> list[int]:
    try:
        return [int(v) for v in (text or "").split(",")]
    except ValueError:
        raise SpimDataError(f"{where}: not a comma-separated list of integers: {text!r}") from None


def _floats(elem, tag: str, where: str, required: bool = True) -> list[float] | None:
    child = elem.find(tag)
    if child is None:
        if required:
            raise SpimDataError(f"{where}: missing <{tag}>")
        return None
    try:
        return [float(v) for v in (child.text or "").split()]
    except ValueError:
        raise SpimDataError(f"{where}: <{tag}> is not a list of numbers: {child.text!r}") from None


def read_stitching_results(sd: SpimData) -> list[PairwiseShift]:
    """The pairwise results stored in the XML (empty list when it has none)."""
    sec = _section(sd)
    if sec is None:
        return []
    name = sd.source_uri or "<new SpimData>"
    out = []
    for i, e in enumerate(sec[1].to_node().findall(_PAIR)):
        where = f"{name}: <{TAG}>/<{_PAIR}> #{i + 1}"
        sa, sb = _ints(e.get("view_setup_a"), where), _ints(e.get("view_setup_b"), where)
        ta, tb = _ints(e.get("tp_a"), where), _ints(e.get("tp_b"), where)
        if len(sa) != len(ta) or len(sb) != len(tb):
            raise SpimDataError(f"{where}: view_setup and tp lists differ in length")
        shift = _floats(e, "shift", where)
        if len(shift) == 3:
            shift = [1.0, 0.0, 0.0, shift[0], 0.0, 1.0, 0.0, shift[1], 0.0, 0.0, 1.0, shift[2]]
        elif len(shift) != 12:
            raise SpimDataError(f"{where}: <shift> has {len(shift)} values (expected 3 or 12)")
        corr = _floats(e, "correlation", where)
        h = _floats(e, "hash", where, required=False)
        box = _floats(e, "overlap_boundingbox", where, required=False)
        if box is not None and len(box) != 6:
            raise SpimDataError(f"{where}: <overlap_boundingbox> has {len(box)} values (expected 6)")
        out.append(PairwiseShift(
            tuple(zip(ta, sa)), tuple(zip(tb, sb)), tuple(shift), corr[0] if corr else float("nan"),
            h[0] if h else 0.0, None if box is None else tuple(box[:3]), None if box is None else tuple(box[3:]),
        ))
    return out


def _element(results) -> etree._Element:
    root = etree.Element(TAG)
    for r in results:
        e = etree.SubElement(root, _PAIR)
        e.set("view_setup_a", ",".join(str(v[1]) for v in r.views_a))
        e.set("view_setup_b", ",".join(str(v[1]) for v in r.views_b))
        e.set("tp_a", ",".join(str(v[0]) for v in r.views_a))
        e.set("tp_b", ",".join(str(v[0]) for v in r.views_b))
        etree.SubElement(e, "shift").text = format_doubles(r.transform)
        etree.SubElement(e, "correlation").text = format_double(r.correlation)
        etree.SubElement(e, "hash").text = format_double(r.hash)
        if r.box_min_xyz is not None:
            etree.SubElement(e, "overlap_boundingbox").text = format_doubles(tuple(r.box_min_xyz) + tuple(r.box_max_xyz))
    return root


def with_stitching_results(sd: SpimData, results, keep_existing: bool = True) -> SpimData:
    """A copy whose ``<StitchingResults>`` holds ``results``.

    With ``keep_existing``, stored results for other pairs stay; a new result replaces a stored
    one of the same pair (either order). The section keeps its place; a new one goes where
    BigStitcher writes it (before ``<IntensityAdjustments>``, else last).
    """
    results = list(results)
    pres = sd.raw.get("SpimData", Preserved())
    sec = _section(sd)
    if keep_existing and sec is not None:
        def key(r):
            return frozenset((r.views_a, r.views_b))
        new_keys = {key(r) for r in results}
        results = [r for r in read_stitching_results(sd) if key(r) not in new_keys] + results
    raw = RawElement.from_node(_element(results))
    children = list(pres.children)
    if sec is not None:
        children = [(i, raw if i == sec[0] else c) for i, c in children]
    else:
        after = [i for i, c in children if c.tag == "IntensityAdjustments"]
        if after:
            pos = after[0]
            children = [(i + 1 if i >= pos else i, c) for i, c in children] + [(pos, raw)]
        else:
            children.append((1_000_000, raw))  # appended: the writer inserts at min(index, len)
        children.sort(key=lambda p: p[0])
    new_raw = dict(sd.raw)
    new_raw["SpimData"] = Preserved(pres.attrib, tuple(children), pres.order, pres.hints)
    return sd.replace(raw=new_raw)
