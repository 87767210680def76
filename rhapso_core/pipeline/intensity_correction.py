"""Intensity correction of a dataset: per-view maps (and flat fields) fitted to its overlaps
under its registrations, stored with a copy of its XML (:func:`correct_intensity`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["IntensityOutcome", "correct_intensity"]


@dataclass
class IntensityOutcome:
    """What :func:`correct_intensity` wrote and how well the overlaps agree.

    ``xml`` carries the ``<IntensityAdjustments>``, ``container`` their coefficients;
    ``rms_before`` / ``rms_after`` are the worst overlap's intensity RMS before and after the
    correction (None without a fitted overlap); ``gain_min`` / ``gain_max`` the range of the
    views' mean gains; ``flatfields`` per channel (``FlatField.to_dict()``).
    """

    xml: str
    container: str
    rms_before: float | None
    rms_after: float | None
    views: int
    pairs: int
    gain_min: float
    gain_max: float
    flatfields: dict[str, dict] = field(default_factory=dict)
    views_without_overlap: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"xml": self.xml, "container": self.container, "rms_before": self.rms_before,
                "rms_after": self.rms_after, "views": self.views, "pairs": self.pairs, "gain_min": self.gain_min,
                "gain_max": self.gain_max, "flatfields": self.flatfields,
                "views_without_overlap": self.views_without_overlap}


def correct_intensity(xml_uri: str, params, selection=None, out_xml: str | None = None) -> IntensityOutcome:
    """Fit the maps to ``xml_uri``'s overlaps under its registrations; write the coefficients
    container beside ``out_xml`` (default ``xml_uri``: the alignment's own output) and that
    XML, a copy of ``xml_uri`` with (one model per view) ``<IntensityAdjustments>``.

    ``params``: :class:`~rhapso_core.intensity.IntensityParams`; ``selection`` the views to
    fit (default all). Idempotent: a rerun recomputes from the same XML and replaces both outputs.
    """
    from rhapso_core.intensity.dataset import estimate_intensity, save_intensity
    from rhapso_core.intensity.store import default_container
    from rhapso_core.pipeline.dataset import load_dataset
    from rhapso_core.pipeline.view_selection import select_views
    from rhapso_core.spimdata import load_xml, save_xml

    sd = load_xml(xml_uri)
    views = select_views(load_dataset(xml_uri), selection) if selection is not None else None
    sol = estimate_intensity(sd, params, views)
    out_xml = out_xml or xml_uri
    save_xml(save_intensity(sd, out_xml, sol, params), out_xml)
    gains = [float(m.a.mean()) for m in sol.maps.values()]
    fits = [f for f in sol.pairs if f.rms_after == f.rms_after]
    return IntensityOutcome(
        out_xml, default_container(out_xml),
        max((f.rms_before for f in fits), default=None), max((f.rms_after for f in fits), default=None),
        len(sol.maps), len(sol.pairs), min(gains), max(gains),
        {str(c): f.to_dict() for c, f in sol.flatfields.items()},
        [list(v) for v in sol.views_without_overlap],
    )
