"""Resolve a run's ``auto`` parameters for one dataset, before detection.

Reads the XML (tile sizes, voxel sizes, nominal overlaps), the coarsest pyramid level
of a few views (intensity range), full-resolution crops of a few overlaps (feature
size, noise, DoG peak values) and a phase correlation of a few overlaps (the stage
error, :mod:`.probe`), all bounded in size whatever the dataset's size. A value
the user set always wins and is reported as such.
"""

from __future__ import annotations

import hashlib
import time

from rhapso_core.autoparams.detection import INTENSITY_PERCENTILES, resolve_detection
from rhapso_core.autoparams.matching import resolve_matching
from rhapso_core.autoparams.probe import probe_stage_error
from rhapso_core.autoparams.records import Resolution
from rhapso_core.autoparams.sample import coarse_percentiles, evenly, overlap_crops
from rhapso_core.autoparams.survey import survey_dataset
from rhapso_core.pipeline.dataset import load_dataset, view_geometry, xml_digest
from rhapso_core.pipeline.in_threads import in_threads
from rhapso_core.planar_rounds import choose_rounds

__all__ = ["resolve_parameters", "resolved_for", "has_auto", "SAMPLED_OVERLAPS", "SAMPLED_VIEWS", "CROP_VOXELS"]

SAMPLED_OVERLAPS = 3  # overlaps cropped for feature size, noise and DoG peaks
SAMPLED_VIEWS = 8  # views whose coarsest level gives the intensity percentiles
CROP_VOXELS = 300_000  # full-resolution voxels per overlap crop (1.2 MB of float32)


def has_auto(params) -> bool:
    """Whether a PipelineParams (or a stage's params) still holds ``auto`` values to resolve."""
    from rhapso_core.config import PipelineParams

    if isinstance(params, PipelineParams):
        return bool(params.detection.auto_fields() or params.matching.auto_fields())
    return bool(params.auto_fields())


def resolve_parameters(xml_uri: str, params, storage_options=None, read_pixels: bool = True) -> Resolution:
    """Every ``auto`` detection and matching parameter of ``params`` derived for ``xml_uri``.

    Parameters
    ----------
    xml_uri : str
        The dataset (BigStitcher XML, local or s3://).
    params : PipelineParams
        The run's parameters; values other than ``auto`` are kept.
    read_pixels : bool
        False: from the XML alone (the grid the overlaps allow; fallbacks for the values that
        need pixels), for callers whose images are absent or not needed.

    Returns
    -------
    Resolution
        ``params`` with concrete detection and matching sections, each value with its
        source and reason, the prealignment decision and the measured facts.
    """
    t0 = time.perf_counter()
    sd = load_dataset(xml_uri, storage_options)
    survey = survey_dataset(xml_uri, sd, storage_options)
    d, m = params.detection, params.matching
    facts: dict = {"dataset": survey.to_facts()}
    d_auto = d.auto_fields()
    need_pixels = read_pixels and (bool(d_auto) or m.model_min_matches == "auto")
    intensity = None
    sources: dict = {}  # each view opened once, shared by the samples and the probe
    if read_pixels and any(n in d_auto for n in ("min_intensity", "max_intensity")):
        views = evenly([v.view for v in survey.views], SAMPLED_VIEWS)
        lo, hi, _ = coarse_percentiles(sd, views, INTENSITY_PERCENTILES, storage_options, sources)
        intensity = (lo, hi, len(views))
    crops = overlap_crops(sd, survey, SAMPLED_OVERLAPS, CROP_VOXELS, storage_options, sources) if need_pixels else []
    facts["sampled_overlaps"] = [
        {"view": list(c.view), "crop_xyz": c.crop_xyz.tolist(), "volume_fraction": round(c.volume_fraction, 4)}
        for c in crops
    ]
    mode = getattr(getattr(params, "alignment", None), "prealign", "auto")
    wants_probe = bool(read_pixels and mode == "auto" and m.stage_uncertainty == "auto" and survey.pairs)

    def probe_stage() -> tuple[list, float]:
        t_probe = time.perf_counter()
        return probe_stage_error(sd, survey, SAMPLED_OVERLAPS, storage_options, sources), time.perf_counter() - t_probe

    # The detection values and the stage-error probe are independent (different crops, no shared
    # state but the opened views, which only the probe adds to): side by side, results as in sequence.
    parts = [lambda: resolve_detection(survey, d, crops, intensity)] + ([probe_stage] if wants_probe else [])
    got = in_threads(lambda part: part(), parts)
    det, d_rec, d_facts = got[0]
    facts["detection"] = dict(d_facts)
    probe = []
    if wants_probe:
        probe, probe_s = got[1]
        facts["stage_error_probe_seconds"] = round(probe_s, 3)
    mat, m_rec, pre, m_facts = resolve_matching(
        survey, m, det, list(d_facts.get("expected_points_per_overlap") or []), m.stage_uncertainty,
        probe=probe, prealign=mode)
    facts["matching"] = m_facts
    resolved = params.model_copy(update={"detection": det, "matching": mat})
    # 2-D mosaics whose overlaps hold too few points start image-based (rhapso_core.planar_rounds).
    r_rec = choose_rounds(view_geometry(sd), det, int(mat.model_min_matches), facts,
                          list(params.alignment.rounds), "rounds" in params.alignment.model_fields_set)
    if r_rec is not None:
        resolved = resolved.model_copy(
            update={"alignment": resolved.alignment.model_copy(update={"rounds": list(r_rec.value)})})
    return Resolution(xml_uri, resolved, tuple(d_rec + m_rec + ([r_rec] if r_rec else [])), pre, facts,
                      time.perf_counter() - t0)


_CACHE: dict[tuple[str, str, str, bool], Resolution] = {}
_CACHE_SIZE = 16


def resolved_for(xml_uri: str, params, storage_options=None, read_pixels: bool = True) -> Resolution:
    """:func:`resolve_parameters`, remembered per XML content and parameters in this process.

    Stage functions called on their own with ``auto`` values use this, so every call on
    the same dataset sees the same resolved values without reading pixels again.
    """
    if storage_options:
        return resolve_parameters(xml_uri, params, storage_options, read_pixels)
    key = (xml_uri, xml_digest(xml_uri), params.model_dump_json(), read_pixels)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = resolve_parameters(xml_uri, params, read_pixels=read_pixels)
    return _CACHE[key]


def params_digest(params) -> str:
    return hashlib.sha256(params.model_dump_json().encode()).hexdigest()[:16]
