"""Combine the illuminations of a tile: keep one (by id, brightest, sharpest) or all.

BigStitcher's illumination selection groups the views that differ only in their
illumination and keeps the best by mean intensity or mean gradient magnitude, measured
on the coarsest pyramid level (``algorithm/illuminationselection``); the other views are
left out. ``"blend"`` keeps them all, so fusion averages them with its blending weights.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rhapso_core.pipeline.dataset import DatasetError, open_view
from rhapso_core.pipeline.view_selection import view_attributes
from rhapso_core.spimdata import SpimData, ViewId

__all__ = ["illumination_groups", "choose_illuminations", "view_quality"]


def illumination_groups(sd: SpimData, views) -> dict[tuple, list[ViewId]]:
    """Views that differ only in illumination: ``{(timepoint, channel, tile, angle): [views]}``."""
    groups: dict[tuple, list[ViewId]] = defaultdict(list)
    for v in views:
        a = view_attributes(sd, v)
        groups[(a["timepoint"], a["channel"], a["tile"], a["angle"])].append(tuple(v))
    return dict(groups)


def view_quality(sd: SpimData, view: ViewId, rule: str, storage_options=None) -> float:
    """Mean intensity (``brightest``) or mean gradient magnitude (``gradient``) of the coarsest level."""
    src = open_view(sd, view, storage_options)
    level = src.n_levels - 1
    img = np.asarray(src.read(tuple((0, n) for n in src.level_shape(level)), level), dtype=np.float64)
    if rule == "brightest":
        return float(img.mean())
    grads = np.gradient(img) if min(img.shape) > 1 else np.gradient(np.squeeze(img))
    grads = grads if isinstance(grads, (list, tuple)) else [grads]
    return float(np.sqrt(sum(g * g for g in grads)).mean())


def choose_illuminations(sd: SpimData, views, rule: str | int, storage_options=None) -> list[ViewId]:
    """The views fusion uses under ``fusion.illumination``: all (``"blend"``), or one per group."""
    views = [tuple(v) for v in views]
    if rule == "blend":
        return sorted(views)
    out = []
    for key, members in sorted(illumination_groups(sd, views).items()):
        if isinstance(rule, int) and not isinstance(rule, bool):
            keep = [v for v in members if view_attributes(sd, v)["illumination"] == rule]
            if not keep:
                have = sorted({view_attributes(sd, v)["illumination"] for v in members})
                raise DatasetError(
                    f"{sd.source_uri}: fusion.illumination={rule}: timepoint {key[0]}, channel {key[1]}, tile {key[2]}, "
                    f"angle {key[3]} has only illuminations {have}"
                )
            out += keep
        elif rule in ("brightest", "gradient"):
            if len(members) == 1:
                out += members
                continue
            scores = [view_quality(sd, v, rule, storage_options) for v in members]
            out.append(members[int(np.argmax(scores))])  # ties: the lowest setup id, as listed first
        else:
            raise DatasetError(f"fusion.illumination: unknown rule {rule!r} (blend, brightest, gradient or an id)")
    return sorted(out)
