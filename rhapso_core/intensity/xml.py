"""BigStitcher's ``<IntensityAdjustments>``: one affine intensity model per view, in the XML.

Layout (mvr ``XmlIoIntensityAdjustments``)::

    <IntensityAdjustments>
      <IntensityAdjustments timepoint="0" setup="3"><model>a b</model></IntensityAdjustments>
      ...
    </IntensityAdjustments>

``y = a x + b`` is applied to a view's values at fusion. The element is a child of
``<SpimData>`` that :mod:`rhapso_core.spimdata` keeps verbatim (so it survives any
load / save); this module reads it and writes a new one in its place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from lxml import etree

from rhapso_core.spimdata import SpimData
from rhapso_core.spimdata.preserve import Preserved, RawElement, format_double
from rhapso_core.spimdata.xml_write import FRESH_RAW

__all__ = ["TAG", "read_intensity_adjustments", "with_intensity_adjustments"]

TAG = "IntensityAdjustments"


def _root_raw(sd: SpimData) -> Preserved:
    return sd.raw.get("SpimData", FRESH_RAW["SpimData"])


def read_intensity_adjustments(sd: SpimData) -> dict[tuple[int, int], tuple[float, float]]:
    """``{(timepoint, setup): (a, b)}`` from the XML's ``<IntensityAdjustments>`` (empty if none)."""
    where = sd.source_uri or "XML"
    out: dict[tuple[int, int], tuple[float, float]] = {}
    for _, raw in _root_raw(sd).children:
        if raw.tag != TAG:
            continue
        for e in raw.to_node().findall(TAG):
            try:
                view = (int(e.get("timepoint")), int(e.get("setup")))
                a, b = (float(v) for v in (e.findtext("model") or "").split())
            except (TypeError, ValueError):
                raise ValueError(
                    f"{where}: <IntensityAdjustments timepoint={e.get('timepoint')!r} setup={e.get('setup')!r}>: "
                    "needs integer ids and <model>a b</model>"
                ) from None
            out[view] = (a, b)
    return out


def with_intensity_adjustments(sd: SpimData, models: Mapping[tuple[int, int], tuple[float, float]]) -> SpimData:
    """A copy whose ``<IntensityAdjustments>`` holds ``models`` (views sorted; replaces any present)."""
    node = etree.Element(TAG)
    for (t, s) in sorted(models):
        a, b = models[(t, s)]
        e = etree.SubElement(node, TAG, timepoint=str(int(t)), setup=str(int(s)))
        etree.SubElement(e, "model").text = f"{format_double(float(a))} {format_double(float(b))}"
    new = RawElement.from_node(node)
    pres = _root_raw(sd)
    children = list(pres.children)
    at = [k for k, (_, raw) in enumerate(children) if raw.tag == TAG]
    if at:
        children[at[0]] = (children[at[0]][0], new)
        children = [c for k, c in enumerate(children) if k not in at[1:]]
    else:
        last = max((i for i, _ in children), default=len(pres.order) - 1)
        children.append((last + 1, new))
    raw = dict(sd.raw)
    raw["SpimData"] = dataclasses.replace(pres, children=tuple(children))
    return dataclasses.replace(sd, raw=raw)
