"""Intensity correction of a dataset: estimate from its views, save, and load for fusion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rhapso_core.intensity.model import ViewIntensity
from rhapso_core.intensity.params import IntensityParams
from rhapso_core.intensity.store import default_container, read_coefficients, write_coefficients
from rhapso_core.intensity.xml import read_intensity_adjustments, with_intensity_adjustments
from rhapso_core.io import fs_for
from rhapso_core.pipeline.dataset import open_view, view_geometry
from rhapso_core.pipeline.view_selection import view_attributes
from rhapso_core.spimdata import SpimData, ViewId

# The estimation's modules (scipy.ndimage, the solver, the QC's records: 0.4-0.6 s of imports) are
# imported by the functions that estimate: every fusion task calls load_intensity, which needs none.
if TYPE_CHECKING:
    from rhapso_core.intensity.sampling import SampledView
    from rhapso_core.intensity.solve import IntensitySolution

__all__ = ["sampled_views", "estimate_intensity", "save_intensity", "load_intensity"]


def sampled_views(sd: SpimData, views: Sequence[ViewId] | None = None, storage_options=None) -> list[SampledView]:
    """The views with pixels and current registrations; paired within (timepoint, channel, illumination)."""
    from rhapso_core.intensity.sampling import SampledView

    views = list(views) if views is not None else list(sd.views())
    geo = view_geometry(sd, views)
    out = []
    for v in views:
        at = view_attributes(sd, v)
        out.append(SampledView(tuple(v), open_view(sd, v, storage_options), geo[v][0], geo[v][1],
                               (int(v[0]), at["channel"], at["illumination"]), at["channel"]))
    return out


def estimate_intensity(
    sd: SpimData, params: IntensityParams, views: Sequence[ViewId] | None = None, storage_options=None,
) -> IntensitySolution:
    """Flat fields per channel (if ``params.flatfield``: from all the channel's tiles, refined by the
    overlaps, :mod:`.flatfield_overlap`), then the per-view maps from the overlaps."""
    from rhapso_core.intensity.flatfield import content_flatfield
    from rhapso_core.intensity.flatfield_overlap import fit_dark_level, refine_flatfield
    from rhapso_core.intensity.sampling import sample_pairs
    from rhapso_core.intensity.solve import solve_intensities

    sv = sampled_views(sd, views, storage_options)
    samples = sample_pairs(sv, params.samples_per_pair, params.max_voxels, params.min_samples)
    flatfields = {}
    if params.flatfield:
        for ch in sorted({v.channel for v in sv}):
            of_channel = [v for v in sv if v.channel == ch]
            content = content_flatfield(of_channel, params.flatfield_degree, params.dark_level)
            if params.dark_level is None:
                # The content estimate was made above a percentile guess of the dark level (too high
                # where tiles hold no empty space): once more above the level the overlaps agree on.
                dark = fit_dark_level(of_channel, samples, content, params.outlier_mad)
                content = content_flatfield(of_channel, params.flatfield_degree, dark)
            flatfields[ch] = refine_flatfield(of_channel, samples, content, params.outlier_mad)
    return solve_intensities(sv, samples, params, flatfields)


def save_intensity(sd: SpimData, out_xml: str, solution: IntensitySolution, params: IntensityParams,
                   storage_options=None) -> SpimData:
    """Write the coefficients container beside ``out_xml``; returns ``sd`` with ``<IntensityAdjustments>``
    set (one model per view) for the caller to save as ``out_xml``.

    The XML models are the per-view maps without the flat field (BigStitcher's model has
    no place for one); the container holds both, and fusion prefers it.
    """
    from rhapso_core.qc.intensity import FIT_ATTR

    fit = {"pairs": [{"pair": f"t{f.a[0]} s{f.a[1]} - t{f.b[0]} s{f.b[1]}", "n": f.n_samples,
                      "rms_before": f.rms_before, "rms_after": f.rms_after,
                      "ratio_before": f.ratio_before, "ratio_after": f.ratio_after} for f in solution.pairs],
           "n_samples": solution.n_samples, "n_outliers": solution.n_outliers, "model": params.model}
    write_coefficients(default_container(out_xml), solution.maps, storage_options=storage_options,
                       root_attrs={FIT_ATTR: _finite(fit)})
    if params.model != "view":
        return sd
    models = {tuple(v): (float(m.a.ravel()[0]), float(m.b.ravel()[0])) for v, m in solution.maps.items()}
    return with_intensity_adjustments(sd, models)


def _finite(x):
    """JSON-safe: NaN (a pair without inliers) becomes None."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def load_intensity(sd: SpimData, xml_uri: str, views: Sequence[ViewId], storage_options=None) -> dict[ViewId, ViewIntensity]:
    """Corrections the dataset carries for ``views``: the coefficients container beside the XML
    (BigStitcher-Spark's layout) if there is one, else the XML's ``<IntensityAdjustments>``; empty if neither."""
    geo = view_geometry(sd, views)
    sizes = {tuple(v): geo[v][1] for v in views}
    container = default_container(xml_uri)
    fs, path = fs_for(container, storage_options)
    if fs.exists(path):
        found = read_coefficients(container, [tuple(v) for v in views], sizes, storage_options=storage_options)
    else:
        adj = read_intensity_adjustments(sd)
        found = {tuple(v): ViewIntensity.affine(sizes[tuple(v)], *adj[tuple(v)]) for v in views if tuple(v) in adj}
    return {v: m for v, m in found.items() if not m.is_identity()}
