"""Detection parameters of a dataset: downsampling, DoG sigma, intensity range, threshold.

Derivations (working grid = the downsampled grid detection runs on):

* **Border band.** A DoG value within about ``2 s2`` working voxels of a view's edge
  (``s2`` the larger Gaussian) depends on the edge handling, so points there are lost or
  biased. An overlap lies at the edge of both its views, each losing a band at its own
  edge: to keep at least half of an overlap's width usable it must span
  ``MIN_WIDTH_BANDS = 4`` bands, ``4 * 2 * s2`` working voxels (17 at sigma 1.8).
  The biased ones are left out of the solve where a pair can spare them
  (:mod:`rhapso_core.pipeline.border_matches`).
* **Feature size.** BigStitcher's DoG at sigma 1.8 working voxels responds most to blobs
  of sigma ``1.8 / peak_scale_ratio(2^(1/4))`` (about 2.4 working voxels). Downsampling
  further than that blurs the features into the kernel; so ``ds <= feature sigma / 2.4``.
* **Anisotropy.** The DoG is isotropic in the working grid, so ``dsz`` makes the working
  voxel as close to cubic as the z overlap and tile depth allow.
* **Threshold.** A target of ``TARGET_POINTS`` points per overlap (enough for descriptors
  and RANSAC, few enough to keep matching cheap), read off the DoG peak values found in
  crops of a few overlaps with the resolved grid and sigma, and never below
  ``NOISE_K`` times the standard deviation the camera noise gives the DoG.
"""

from __future__ import annotations

import math

import numpy as np

from rhapso_core.autoparams.features import feature_sigma, peak_scale_ratio
from rhapso_core.autoparams.records import ResolvedValue
from rhapso_core.autoparams.sample import OverlapCrop
from rhapso_core.autoparams.survey import DatasetSurvey
from rhapso_core.detection import DetectionParams, detect_chunk, plan_detection
from rhapso_core.detection.dog import K, dog_response, dog_sigmas
from rhapso_core.detection.params import AUTO, FALLBACKS

__all__ = [
    "resolve_detection", "min_overlap_working_voxels", "dog_noise_gain", "DetectionFacts",
    "TARGET_POINTS", "NOISE_K", "INTENSITY_PERCENTILES",
]

DEFAULT_SIGMA = 1.8  # BigStitcher's DoG sigma (working voxels)
MIN_WIDTH_BANDS = 4
TARGET_POINTS = 200  # per overlap: ~half found in both views, ~half of those survive matching
NOISE_K = 5.0  # a smooth Gaussian field exceeds 5 sd about once per 10^6 voxels
INTENSITY_PERCENTILES = (0.1, 99.99)
SIGMA_RANGE = (1.0, 1.8)  # working voxels: below 1 the DoG under-samples; never wider than the default


def min_overlap_working_voxels(sigma: float) -> int:
    """Working voxels an overlap must span so that half its width is usable (see module doc)."""
    _, s2, _ = dog_sigmas(sigma)
    return int(math.ceil(MIN_WIDTH_BANDS * 2.0 * s2))


def dog_noise_gain(sigma: float) -> float:
    """Standard deviation of the DoG of unit white noise (the kernel's L2 norm), working grid."""
    s1, _, sinc = dog_sigmas(sigma)
    r = int(math.ceil(4.0 * (s1 + sinc))) + 2
    delta = np.zeros((2 * r + 1,) * 3, np.float32)
    delta[r, r, r] = 1.0
    h = dog_response(delta, sigma)
    return float(np.sqrt(np.sum(h.astype(np.float64) ** 2)))


def _noise_sd(crops: list[OverlapCrop]) -> float | None:
    """Camera noise sd (image units) from the median absolute difference of x-neighbours."""
    sds = []
    for c in crops:
        a = c.data_zyx
        if a.shape[2] < 2:
            continue
        d = np.abs(np.diff(a, axis=2)).ravel()[::7]  # a strided subsample holds the median
        sds.append(1.4826 * float(np.median(d)) / math.sqrt(2.0))
    sds = [s for s in sds if s > 0]
    return float(np.median(sds)) if sds else None


class DetectionFacts(dict):
    """The measurements behind the detection values (JSON-able)."""


def resolve_detection(
    survey: DatasetSurvey,
    params: DetectionParams,
    crops: list[OverlapCrop],
    intensity: tuple[float, float, int] | None,
) -> tuple[DetectionParams, list[ResolvedValue], DetectionFacts]:
    """Replace every ``auto`` in ``params``; user-set values are kept and reported as such.

    ``crops``: full-resolution crops of a few overlaps; ``intensity``: pooled coarse-level
    percentiles ``INTENSITY_PERCENTILES`` and the number of views read (None when no pixels
    were read).
    """
    facts = DetectionFacts()
    out: dict[str, object] = {}
    rec: list[ResolvedValue] = []

    def put(name, value, source, reason):
        out[name] = value
        rec.append(ResolvedValue("detection", name, value, source, reason))

    def user(name):
        v = getattr(params, name)
        if v != AUTO:
            put(name, v, "user", "set by the user")
            return True
        return False

    # --- intensity range ---------------------------------------------------------------
    for name, i in (("min_intensity", 0), ("max_intensity", 1)):
        if user(name):
            continue
        if intensity is None:
            put(name, FALLBACKS[name], "fallback", "no pixels read: each view's own range")
        else:
            put(name, round(float(intensity[i]), 4), "auto",
                f"{INTENSITY_PERCENTILES[i]:g}th percentile of the coarsest pyramid level of "
                f"{intensity[2]} view(s): robust to hot pixels and empty borders")
    lo, hi = out["min_intensity"], out["max_intensity"]
    if lo is not None and hi is not None and not hi > lo:
        out["max_intensity"] = hi = float(lo) + 1.0
        rec[-1] = ResolvedValue("detection", "max_intensity", hi, rec[-1].source,
                                rec[-1].reason + "; constant image: range set to 1")

    # --- feature size, overlap widths, anisotropy -> dsxy, dsz ------------------------------
    aniso = survey.anisotropy
    need_features = any(getattr(params, n) == AUTO for n in ("dsxy", "dsz", "sigma"))
    feat, scores = (feature_sigma([c.data_zyx for c in crops], aniso) if need_features and crops
                    else (None, []))
    facts["feature_sigma_xy_voxels"] = None if feat is None else round(feat, 3)
    facts["feature_scale_scores"] = [round(s, 3) for s in scores]
    blob_per_working = DEFAULT_SIGMA / peak_scale_ratio(K)  # blob sigma the default DoG fits best
    w_min = min_overlap_working_voxels(DEFAULT_SIGMA)
    facts["min_overlap_working_voxels"] = w_min
    mo = survey.min_overlap_voxels()
    tile_xy, tile_z = survey.min_tile_voxels()
    span_xy = min(mo[0], tile_xy) if mo else tile_xy
    span_z = min(mo[1], tile_z) if mo else tile_z

    if not user("dsxy"):
        ds_overlap = max(1, int(span_xy // w_min))
        why_o = (f"narrowest xy overlap {span_xy:.0f} voxels / {w_min} working voxels it must span"
                 if mo else f"no overlaps: smallest tile {tile_xy} voxels / {w_min}")
        if feat is None:
            ds_feat, why_f = FALLBACKS["dsxy"], "feature size unknown (fallback 2)"
        else:
            ds_feat = max(1, int(feat // blob_per_working))
            why_f = f"feature sigma {feat:.2f} voxels / {blob_per_working:.2f} (the blob the DoG at 1.8 fits)"
        ds = min(ds_overlap, ds_feat)
        put("dsxy", ds, "auto" if feat is not None or mo else "fallback",
            f"min(overlap: {ds_overlap}, features: {ds_feat}); {why_o}; {why_f}")
    dsxy = int(out["dsxy"])

    if not user("dsz"):
        iso = dsxy / aniso
        dz = max(1, int(round(iso))) if iso >= 1 else 1
        limits = [f"cubic working voxel: {dsxy} x {aniso:.2f} anisotropy -> {dz}"]
        cap_z = max(1, int(span_z // w_min))
        if cap_z < dz:
            limits.append(f"z overlap / tile depth {span_z:.0f} voxels allows {cap_z}")
            dz = cap_z
        if feat is not None:
            cap_f = max(1, int((feat / aniso) // blob_per_working))
            if cap_f < dz:
                limits.append(f"feature sigma in z {feat / aniso:.2f} voxels allows {cap_f}")
                dz = cap_f
        put("dsz", dz, "auto", "; ".join(limits))
    dsz = int(out["dsz"])

    # --- sigma ---------------------------------------------------------------------------------
    if not user("sigma"):
        if feat is None:
            put("sigma", FALLBACKS["sigma"], "fallback", "feature size unknown: BigStitcher's 1.8")
        else:
            fit = feat / dsxy * peak_scale_ratio(K)  # DoG sigma that fits the features on this grid
            if fit < DEFAULT_SIGMA / 1.25:
                # features finer than the default DoG even at this grid: a narrower DoG keeps them apart
                # and localises them on their own scale
                s = float(max(SIGMA_RANGE[0], fit))
                put("sigma", round(s, 3), "auto",
                    f"features fit sigma {fit:.2f} working voxels, finer than the default 1.8 (floor "
                    f"{SIGMA_RANGE[0]:g})")
            else:
                # a DoG narrower than the features still peaks at their centres; a wider one would widen
                # the border band every overlap loses
                put("sigma", DEFAULT_SIGMA, "auto",
                    f"features fit sigma {fit:.2f} working voxels: the default 1.8 is within 25 % of that or finer")
    sigma = float(out["sigma"])

    # --- threshold -------------------------------------------------------------------------------
    if not user("threshold"):
        thr, why, src = _threshold(crops, dsxy, dsz, sigma, lo, hi, facts)
        put("threshold", thr, src, why)
    else:
        facts["expected_points_per_overlap"] = _expected_counts(crops, params, out, float(params.threshold))

    ordered = {k: out[k] for k in FALLBACKS}
    resolved = params.model_copy(update=ordered)
    order = {k: i for i, k in enumerate(("dsxy", "dsz", "sigma", "min_intensity", "max_intensity", "threshold"))}
    rec.sort(key=lambda r: order.get(r.name, 99))
    return resolved, rec, facts


def _peak_values(crop: OverlapCrop, params: DetectionParams) -> np.ndarray:
    """|DoG| of every peak above ``params.threshold`` in the crop, as detection would find them."""
    plan = plan_detection(crop.source, params, region_xyz=crop.crop_xyz)
    vals = [np.abs(detect_chunk(crop.source, t.level, t.in_memory_factor, t.core_box, plan.params).dog)
            for t in plan.tasks]
    return np.sort(np.concatenate(vals))[::-1] if vals else np.zeros(0)


def _threshold(crops, dsxy, dsz, sigma, lo, hi, facts) -> tuple[float, str, str]:
    if not crops:
        facts["expected_points_per_overlap"] = []
        return FALLBACKS["threshold"], "no pixels read (fallback 0.008)", "fallback"
    noise = _noise_sd(crops)
    lo_c = float(min(c.data_zyx.min() for c in crops)) if lo is None else float(lo)
    hi_c = float(max(c.data_zyx.max() for c in crops)) if hi is None else float(hi)
    scale = max(hi_c - lo_c, 1e-12)
    gain = dog_noise_gain(sigma)
    if noise is not None:
        dog_sd = noise / math.sqrt(dsxy * dsxy * dsz) / scale * gain
    else:
        dog_sd = 1e-6  # noise-free image: any peak is a feature
    floor = NOISE_K * dog_sd
    facts["noise_sd_image_units"] = None if noise is None else round(noise, 4)
    facts["dog_noise_sd"] = round(dog_sd, 6)
    trial = DetectionParams(dsxy=dsxy, dsz=dsz, sigma=sigma, threshold=floor,
                            min_intensity=lo_c, max_intensity=hi_c)
    per = []
    for c in crops:
        v = _peak_values(c, trial)
        need = TARGET_POINTS * c.volume_fraction
        k = max(1, int(round(need)))
        t = float(v[k - 1]) if v.size >= k else floor
        per.append((t, v, c.volume_fraction))
    thr = max(floor, min(t for t, _, _ in per))
    counts = [round(float(np.sum(v >= thr)) / f, 1) for _, v, f in per]
    facts["expected_points_per_overlap"] = counts
    facts["threshold_per_sampled_overlap"] = [round(t, 6) for t, _, _ in per]
    bound = "the noise floor" if thr <= floor * (1 + 1e-9) else f"the sampled overlap with fewest peaks"
    why = (f"{TARGET_POINTS} points per overlap in {len(crops)} sampled overlap(s), set by {bound} "
           f"(noise floor {NOISE_K:g} x DoG noise sd {dog_sd:.2e} = {floor:.2e}); expected points per "
           f"overlap {counts}")
    return float(f"{thr:.4g}"), why, "auto"


def _expected_counts(crops, params, out, thr) -> list[float]:
    if not crops:
        return []
    lo_c = out["min_intensity"] if out["min_intensity"] is not None else float(min(c.data_zyx.min() for c in crops))
    hi_c = out["max_intensity"] if out["max_intensity"] is not None else float(max(c.data_zyx.max() for c in crops))
    p = DetectionParams(dsxy=out["dsxy"], dsz=out["dsz"], sigma=out["sigma"], threshold=thr,
                        min_intensity=lo_c, max_intensity=hi_c)
    return [round(float(_peak_values(c, p).size) / c.volume_fraction, 1) for c in crops]
