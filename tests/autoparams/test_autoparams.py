"""Parameters resolved from the data: each derivation checked on data whose answer is known.

Small generated datasets (seconds each). Tolerances are stated per test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rhapso_core.autoparams import resolve_parameters
from rhapso_core.autoparams.detection import dog_noise_gain, min_overlap_working_voxels
from rhapso_core.autoparams.features import feature_sigma
from rhapso_core.autoparams.matching import min_inliers_against_chance
from rhapso_core.config import PipelineParams
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.write import write_dataset

SMALL = dict(grid=(2, 2, 1), tile_size_xyz=(128, 128, 32), n_levels=2, jitter_voxels=(2.0, 2.0, 0.5), seed=3,
             chunk_size_xyz=(64, 64, 32))


def _dataset(tmp_path, name, **kw):
    return write_dataset(tmp_path / name, SyntheticParams(**{**SMALL, **kw}))


def _blobs(sigma, shape=(40, 96, 96), n=24, seed=0, amp=1000.0, bg=100.0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    img = np.full(shape, bg, np.float64)
    for _ in range(n):
        c = rng.uniform([8, 10, 10], [shape[0] - 8, shape[1] - 10, shape[2] - 10])
        img += amp * np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * sigma * sigma))
    return rng.poisson(img).astype(np.float32)


@pytest.mark.parametrize("sigma", [1.5, 2.5, 4.0])
def test_feature_sigma_recovers_blob_size(sigma):
    # Within 20 %: the scale search samples ratios of 1.5 and refines by a parabola.
    # 10 blobs in the crop: separate enough that none merge into a larger one
    est, _ = feature_sigma([_blobs(sigma, n=10)], anisotropy=1.0)
    assert est == pytest.approx(sigma, rel=0.2)


def test_the_scale_blurs_are_scipy_s_bit_for_bit():
    # The blurs moved from scipy to rhapso_core.exact_gaussian; the resolved feature size must
    # not change (tolerance: none). reflect mode, truncate 3, z skipped below 0.3 voxel.
    from scipy import ndimage

    from rhapso_core.autoparams.features import _blur

    rng = np.random.default_rng(4)
    a = (rng.random((71, 23, 69)) * 900 - 300).astype(np.float32)
    for sigma in [(0.0, 0.6667, 0.6667), (0.84375, 3.375, 3.375), (2.85, 11.39, 11.39)]:
        want = ndimage.gaussian_filter(a, sigma, mode="reflect", truncate=3.0)
        assert np.array_equal(_blur(a, sigma).view(np.uint32), want.view(np.uint32))


def test_dog_noise_gain_matches_filtered_white_noise():
    # The kernel norm predicts the DoG's sd on white noise to within 5 %.
    from rhapso_core.detection.dog import dog_response

    rng = np.random.default_rng(1)
    noise = rng.normal(size=(48, 64, 64)).astype(np.float32)
    measured = float(dog_response(noise.copy(), 1.8)[10:-10, 10:-10, 10:-10].std())
    assert measured == pytest.approx(dog_noise_gain(1.8), rel=0.05)


def test_min_inliers_against_chance_grows_with_points_and_error():
    base = min_inliers_against_chance(100, 5.0, 1e6, 10_000)
    assert min_inliers_against_chance(1000, 5.0, 1e6, 10_000) >= base
    assert min_inliers_against_chance(100, 15.0, 1e6, 10_000) > base
    assert base >= 5  # an affine minimal sample plus one


def test_thin_overlaps_get_a_finer_grid_than_wide_ones(tmp_path):
    thin = _dataset(tmp_path, "thin", overlap=0.1, blob_sigma_um=(2.5, 3.5))
    wide = _dataset(tmp_path, "wide", overlap=0.4, blob_sigma_um=(2.5, 3.5), grid=(2, 1, 1))
    r_thin = resolve_parameters(str(thin.xml), PipelineParams())
    r_wide = resolve_parameters(str(wide.xml), PipelineParams())
    # 12.8-voxel overlaps cannot hold the 17 working voxels the DoG's border bands need at any dsxy > 1;
    # 51-voxel overlaps allow 3, and 5-7 voxel blobs allow 2.
    assert min_overlap_working_voxels(1.8) == 17
    assert r_thin.params.detection.dsxy == 1
    assert r_wide.params.detection.dsxy == 2
    # z voxels are 4x xy: a cubic working voxel needs no z downsampling below dsxy 4
    assert r_wide.params.detection.dsz == 1
    for r in (r_thin, r_wide):
        d = r.params.detection
        assert not d.auto_fields() and not r.params.matching.auto_fields()
        assert d.max_intensity > d.min_intensity
        # the RANSAC error scales with the working voxel: 3 x |0.5 * (ds, ds, 4 dsz)| world units
        eps = 3 * math.sqrt(2 * (0.5 * d.dsxy) ** 2 + (0.5 * 4 * d.dsz) ** 2)
        assert r.params.matching.max_epsilon == pytest.approx(eps, abs=1e-3)
        assert r.params.matching.search_radius > r.facts["dataset"]["max_overlap_width_world"]


def test_threshold_targets_points_per_overlap_and_respects_the_noise_floor(tmp_path, monkeypatch):
    from rhapso_core.autoparams import detection as det

    dense = _dataset(tmp_path, "dense", blob_density=1500.0, margin_um=4.0, overlap=0.3)
    r = resolve_parameters(str(dense.xml), PipelineParams())
    f = r.facts["detection"]
    floor = 5.0 * f["dog_noise_sd"]
    assert r.params.detection.threshold >= floor * (1 - 1e-3)
    # a target this specimen holds above the noise floor: the poorest sampled overlap gets it (+-1 point)
    monkeypatch.setattr(det, "TARGET_POINTS", 15)
    r = resolve_parameters(str(dense.xml), PipelineParams())
    assert r.params.detection.threshold > 5.0 * r.facts["detection"]["dog_noise_sd"]
    assert min(r.facts["detection"]["expected_points_per_overlap"]) == pytest.approx(15, abs=1.5)

    sparse = _dataset(tmp_path, "sparse", blob_density=30.0, fibre_count=0)
    rs = resolve_parameters(str(sparse.xml), PipelineParams())
    # too few features: the threshold sits on the noise floor, never below it
    assert rs.params.detection.threshold == pytest.approx(5.0 * rs.facts["detection"]["dog_noise_sd"], rel=1e-3)
    assert rs.params.detection.threshold < r.params.detection.threshold


def test_user_values_win_and_are_reported(tmp_path):
    ds = _dataset(tmp_path, "user")
    p = PipelineParams.model_validate({"detection": {"dsxy": 3, "threshold": 0.02, "min_intensity": None},
                                       "matching": {"max_epsilon": 4.0}})
    r = resolve_parameters(str(ds.xml), p)
    assert (r.params.detection.dsxy, r.params.detection.threshold, r.params.matching.max_epsilon) == (3, 0.02, 4.0)
    assert r.params.detection.min_intensity is None
    assert r.value("detection.dsxy").source == "user"
    assert r.value("detection.threshold").source == "user"
    assert r.value("matching.max_epsilon").source == "user"
    assert r.value("detection.dsz").source == "auto" and r.value("detection.dsz").reason
    d = json.loads(r.to_json())
    assert {x["name"] for x in d["parameters"]} >= {"dsxy", "dsz", "sigma", "threshold", "search_radius",
                                                    "max_epsilon", "model_min_matches"}
    assert "prealignment" in d and "facts" in d


def test_stage_uncertainty_beyond_the_overlap_records_prealignment(tmp_path):
    ds = _dataset(tmp_path, "pre", overlap=0.2)
    r = resolve_parameters(str(ds.xml), PipelineParams())
    # The probe measures the stage error (jitter +-2 voxels: relative errors up to about 4 world
    # units, within 10 %) and finds it within the bridge (25-voxel overlaps less the 17 detection needs).
    assert "stage_uncertainty" not in r.prealignment.cause and "measured_stage_error" not in r.prealignment.cause
    assert 0.5 < r.prealignment.stage_uncertainty < r.prealignment.bridgeable
    big = PipelineParams.model_validate({"matching": {"stage_uncertainty": 60.0}})
    r2 = resolve_parameters(str(ds.xml), big)
    assert r2.prealignment.chosen and "stage_uncertainty" in r2.prealignment.cause
    assert "prealignment" in r2.prealignment.reason and "60" in r2.prealignment.reason
    assert r2.prealignment.stage_uncertainty == 60.0
    # The phase round removes the error: the matcher's radius keeps to the nominal overlap.
    assert r2.params.matching.search_radius < 60.0 and "prealignment" in r2.value("matching.search_radius").reason
    off = PipelineParams.model_validate({"matching": {"stage_uncertainty": 60.0}, "alignment": {"prealign": "off"}})
    r3 = resolve_parameters(str(ds.xml), off)
    assert not r3.prealignment.chosen and r3.params.matching.search_radius >= 60.0


def test_stage_functions_resolve_auto_on_their_own(tmp_path):
    # Direct callers of the stage functions get the same values the resolver gives.
    from rhapso_core.pipeline import detect

    ds = _dataset(tmp_path, "direct")
    plans = detect.plan_views(str(ds.xml), PipelineParams().detection)
    r = resolve_parameters(str(ds.xml), PipelineParams())
    assert plans[0].params.dsxy == r.params.detection.dsxy
    assert plans[0].params.threshold == r.params.detection.threshold
