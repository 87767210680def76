"""Views that move together, and which timepoints are registered to which.

A microscope acquires the channels and illuminations of a tile at one stage position,
so they share one registration: BigStitcher merges views that differ only in a grouped
attribute into one solver tile (``--groupChannels --groupIllums``). Here a group is
keyed by the timepoint and every non-grouped attribute; its representative is its
lowest (timepoint, setup). Matches of any member become links of the representative,
and the solved correction is applied to every member.

Timepoints (BigStitcher-Spark's ``--registrationTP``): individually (pairs within a
timepoint), to a reference timepoint, all to all, or all to all within a range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rhapso_core.pipeline.view_selection import ATTRIBUTES, view_attributes
from rhapso_core.spimdata import SpimData, ViewId

__all__ = ["view_groups", "pair_attributes", "timepoints_linked", "reference_timepoint"]

TIMEPOINT_MODES = ("individually", "reference", "all_to_all", "all_to_all_range")


def view_groups(sd: SpimData, views: Iterable[ViewId], grouping: Sequence[str]) -> dict[ViewId, ViewId]:
    """``{view: its group's representative}`` for views differing only in ``grouping`` attributes."""
    bad = [g for g in grouping if g not in ATTRIBUTES]
    if bad:
        raise ValueError(f"alignment.grouping: unknown attribute(s) {bad} (use {list(ATTRIBUTES)})")
    keys: dict[ViewId, tuple] = {}
    for v in views:
        a = view_attributes(sd, v)
        keys[tuple(v)] = (a["timepoint"],) + tuple(a[n] for n in ATTRIBUTES if n not in grouping)
    rep: dict[tuple, ViewId] = {}
    for v in sorted(keys):
        rep.setdefault(keys[v], v)
    return {v: rep[k] for v, k in keys.items()}


def pair_attributes(grouping: Sequence[str], group_by: Sequence[str] = ()) -> tuple[str, ...]:
    """Attributes two views must share to be matched: ``group_by`` and the grouped ones except
    tile (members of different groups image different content per channel, and the same content
    under another illumination only duplicates the pair)."""
    return tuple(dict.fromkeys([*group_by, *[g for g in grouping if g != "tile"]]))


def reference_timepoint(timepoints: Iterable[int], reference: int | None) -> int:
    tps = sorted(set(int(t) for t in timepoints))
    if reference is None:
        return tps[0]
    if reference not in tps:
        raise ValueError(f"alignment.reference_timepoint={reference} is not among the timepoints {tps}")
    return int(reference)


def timepoints_linked(t1: int, t2: int, mode: str, reference: int, timepoint_range: int = 5) -> bool:
    """Whether views of timepoints ``t1`` and ``t2`` are matched under ``mode``."""
    if t1 == t2:
        return True
    if mode == "individually":
        return False
    if mode == "reference":
        return reference in (t1, t2)
    if mode == "all_to_all":
        return True
    if mode == "all_to_all_range":
        return abs(t1 - t2) <= timepoint_range
    raise ValueError(f"alignment.timepoints: unknown mode {mode!r} (use {list(TIMEPOINT_MODES)})")
