"""Keeping what the model does not understand, and writing numbers like BigStitcher.

Every modelled XML element (a *record*: ``ViewSetup``, ``ViewRegistration``,
``ImageLoader``, ...) carries a :class:`Preserved` with

* the attributes the model does not read,
* the children it does not read (:class:`RawElement`, serialised verbatim) with
  their index among the element's children, so a save puts them back at the
  same place,
* the order in which the known children appeared (used where real files differ,
  e.g. ``MissingViews`` before ``Timepoints``),
* *hints*: the original text of leaf values. A writer uses a hint only while it
  still parses to the model's value, so ``1.0 0 0 0`` stays ``1.0 0 0 0`` after a
  load/save round trip, and a changed value is written afresh.

Leaf elements (text only, like ``<zarr type="absolute">``) keep their text and
modelled attributes; unknown attributes on a leaf are not kept, nor are extra
children of ``<Timepoint>`` (list timepoints) and ``<MissingView>``, which keep
only their ids. Comments and processing instructions before or after the root
element are not kept (BigStitcher writes none).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from lxml import etree

__all__ = [
    "RawElement",
    "Preserved",
    "EMPTY",
    "split_children",
    "finish",
    "arrange",
    "text_or_hint",
    "format_double",
    "format_doubles",
]


@dataclass(frozen=True)
class RawElement:
    """An XML node (element or comment) kept verbatim, serialised without its tail."""

    xml: bytes

    @classmethod
    def from_node(cls, node: etree._Element) -> RawElement:
        c = copy.copy(node)
        c.tail = None
        return cls(etree.tostring(c, encoding="utf-8", xml_declaration=False))

    def to_node(self) -> etree._Element:
        # Parsed inside a wrapper so comments and processing instructions work too.
        return etree.fromstring(b"<w>" + self.xml + b"</w>")[0]

    @property
    def tag(self) -> str:
        node = self.to_node()
        return node.tag if isinstance(node.tag, str) else "#comment"


@dataclass(frozen=True)
class Preserved:
    """What a record keeps from its source element beyond the modelled values."""

    attrib: tuple[tuple[str, str], ...] = ()
    children: tuple[tuple[int, RawElement], ...] = ()
    order: tuple[str, ...] = field(default=(), compare=False)  # layout, not content
    hints: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def hint(self, key: str) -> str | None:
        return self.hints.get(key)


EMPTY = Preserved()


def split_children(
    elem: etree._Element,
    known: Collection[str],
    known_attrib: Collection[str] = (),
    singletons: Collection[str] = (),
) -> tuple[dict[str, list[etree._Element]], Preserved, list[str]]:
    """Sort an element's children into known ones (by tag) and preserved ones.

    Returns ``(known_children_by_tag, preserved, duplicates)``; ``duplicates``
    lists singleton tags seen more than once (the extra copies are preserved raw).
    """
    found: dict[str, list[etree._Element]] = {}
    raw: list[tuple[int, RawElement]] = []
    order: list[str] = []
    dups: list[str] = []
    for i, child in enumerate(elem):
        tag = child.tag if isinstance(child.tag, str) else None
        if tag is not None and tag in known:
            if tag in singletons and tag in found:
                dups.append(tag)
                raw.append((i, RawElement.from_node(child)))
                continue
            found.setdefault(tag, []).append(child)
            if tag not in order:
                order.append(tag)
        else:
            raw.append((i, RawElement.from_node(child)))
    attrib = tuple((k, v) for k, v in elem.attrib.items() if k not in known_attrib)
    return found, Preserved(attrib=attrib, children=tuple(raw), order=tuple(order)), dups


def finish(elem: etree._Element, preserved: Preserved) -> etree._Element:
    """Add a record's preserved attributes and children back to a freshly written element."""
    for k, v in preserved.attrib:
        if k not in elem.attrib:
            elem.set(k, v)
    # Inserting in ascending source index restores every raw child to its original
    # position as long as the known children are the same in number.
    for idx, raw in sorted(preserved.children, key=lambda p: p[0]):
        elem.insert(min(idx, len(elem)), raw.to_node())
    return elem


def arrange(
    parts: Mapping[str, etree._Element | None], order: Sequence[str], canonical: Sequence[str]
) -> list[etree._Element]:
    """Known children in their source order; new ones after their canonical predecessor."""
    out: list[str] = [t for t in order if parts.get(t) is not None]
    for i, tag in enumerate(canonical):
        if parts.get(tag) is None or tag in out:
            continue
        pos = 0
        for prev in reversed(canonical[:i]):
            if prev in out:
                pos = out.index(prev) + 1
                break
        out.insert(pos, tag)
    return [parts[t] for t in out]  # type: ignore[misc]


def text_or_hint(formatted: Callable[[], str], hint: str | None, same: Callable[[str], bool]) -> str:
    """The original text if it still means the same value, else a freshly formatted one."""
    if hint is not None:
        try:
            if same(hint):
                return hint
        except (ValueError, TypeError):
            pass
    return formatted()


def format_double(x: float) -> str:
    """Format a float like Java's ``Double.toString`` (what BigStitcher writes).

    Plain notation for ``1e-3 <= |x| < 1e7`` (always with a fractional part,
    ``1.0``), computerised scientific notation otherwise (``3.6E-4``, ``1.0E7``);
    digits are the shortest that round-trip.
    """
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        s = repr(x)  # Python uses plain notation throughout this range
        return s if "." in s else s + ".0"
    d = Decimal(repr(x))
    sign, digits, _ = d.as_tuple()
    mant = "".join(str(v) for v in digits).rstrip("0") or "0"
    return ("-" if sign else "") + mant[0] + "." + (mant[1:] or "0") + "E" + str(d.adjusted())


def format_doubles(values: Sequence[float]) -> str:
    return " ".join(format_double(v) for v in values)
