"""Which views a command works on: BigStitcher-Spark's selection flags.

``--angleId``, ``--tileId``, ``--illuminationId``, ``--channelId`` and ``--timepointId``
each take ids; a view is selected when it matches every given attribute (AND), as in
BigStitcher-Spark (``AbstractSelectableViews``). Missing views are never selected; an
empty selection is an error naming the XML and the selection.
"""

from __future__ import annotations

from pydantic import Field

from rhapso_core.params import StageParams
from rhapso_core.spimdata import SpimData, ViewId

__all__ = ["ViewSelection", "ViewSelectionError", "select_views", "ATTRIBUTES"]

ATTRIBUTES = ("channel", "illumination", "tile", "angle")

_Ids = list[int] | None


class ViewSelectionError(ValueError):
    """A selection that matches no view (message names the XML and the selection)."""


class ViewSelection(StageParams):
    """Views to process, by attribute ids (None: every id). Ids are those of the XML's
    ``<Channel>``, ``<Illumination>``, ``<Tile>``, ``<Angle>`` and ``<Timepoints>``."""

    channels: _Ids = Field(None, description="Channel ids to process (--channelId); None: all.")
    illuminations: _Ids = Field(None, description="Illumination ids to process (--illuminationId); None: all.")
    tiles: _Ids = Field(None, description="Tile ids to process (--tileId); None: all.")
    angles: _Ids = Field(None, description="Angle ids to process (--angleId); None: all.")
    timepoints: _Ids = Field(None, description="Timepoint ids to process (--timepointId); None: all.")

    @property
    def is_all(self) -> bool:
        return all(getattr(self, n) is None for n in ("channels", "illuminations", "tiles", "angles", "timepoints"))

    def describe(self) -> str:
        parts = [f"{n}={getattr(self, n)}" for n in ("channels", "illuminations", "tiles", "angles", "timepoints")
                 if getattr(self, n) is not None]
        return ", ".join(parts) or "all views"


def _attr(sd: SpimData, view: ViewId, name: str) -> int:
    # BigStitcher requires all four attributes; an XML without one has a single (implicit) id 0.
    value = sd.setup_of(view).attributes.get(name)
    return 0 if value is None else int(value)


def select_views(sd: SpimData, selection: ViewSelection | None = None, views=None) -> list[ViewId]:
    """The views of ``sd`` (or of ``views``) that ``selection`` keeps, sorted."""
    selection = selection or ViewSelection()
    pool = sd.views() if views is None else sorted(tuple(v) for v in views)
    out = []
    for v in pool:
        if selection.timepoints is not None and v[0] not in selection.timepoints:
            continue
        wanted = {"channel": selection.channels, "illumination": selection.illuminations,
                  "tile": selection.tiles, "angle": selection.angles}
        if any(ids is not None and _attr(sd, v, name) not in ids for name, ids in wanted.items()):
            continue
        out.append(v)
    if not out:
        raise ViewSelectionError(f"{sd.source_uri}: no view matches the selection ({selection.describe()})")
    return out


def view_attributes(sd: SpimData, view: ViewId) -> dict[str, int]:
    """``{timepoint, channel, illumination, tile, angle}`` of a view (0 for an attribute the XML lacks)."""
    return {"timepoint": int(view[0]), **{n: _attr(sd, view, n) for n in ATTRIBUTES}}
