"""The intensity task: estimate per-view maps (and flat fields) on the solved XML and store them."""

from __future__ import annotations

from prefect import task

from rhapso_core.intensity import IntensityParams
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="intensity", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def correct_intensity(xml_uri: str, params: IntensityParams, selection=None, out_xml: str | None = None) -> dict:
    """Fit the maps to ``xml_uri``'s overlaps under its registrations; write the coefficients
    container beside ``out_xml`` (default ``xml_uri``: the alignment's own output) and that
    XML, a copy of ``xml_uri`` with (one model per view) ``<IntensityAdjustments>``.

    Idempotent: a retry recomputes from the same XML and replaces both outputs.
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
    return {
        "xml": out_xml,
        "container": default_container(out_xml),
        "rms_before": max((f.rms_before for f in fits), default=None),
        "rms_after": max((f.rms_after for f in fits), default=None),
        "views": len(sol.maps),
        "pairs": len(sol.pairs),
        "gain_min": min(gains),
        "gain_max": max(gains),
        "flatfields": {str(c): f.to_dict() for c, f in sol.flatfields.items()},
        "views_without_overlap": [list(v) for v in sol.views_without_overlap],
    }
