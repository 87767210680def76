"""Phase-correlation rounds on written datasets, measured against ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from rhapso_core import transforms
from rhapso_core.image_source import ArraySource
from rhapso_core.pipeline.phase import TRANSFORM_NAME, phase_round, prealign_by_phase_correlation
from rhapso_core.spimdata import load_xml
from rhapso_core.spimdata.stitching_results import read_stitching_results
from rhapso_core.stitching import StitchingParams, choose_level, correlate_views, registration_hash
from rhapso_core.synthetic.mosaic import mosaic_error, write_mosaic
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.scoring import score
from rhapso_core.synthetic.specimen import load_tiff_planes
from rhapso_core.synthetic.write import write_dataset

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """2x2 tiles, 20 % overlap, stage error up to 8 voxels in x and y, anisotropic voxels (0.5, 0.5, 2 um)."""
    p = SyntheticParams(grid=(2, 2, 1), tile_size_xyz=(96, 96, 24), overlap=0.2, jitter_voxels=(8.0, 8.0, 2.0),
                        voxel_size_xyz=(0.5, 0.5, 2.0), n_levels=2, seed=11)
    return write_dataset(tmp_path_factory.mktemp("synth"), p)


def test_synthetic_translation_dataset_to_half_a_voxel(synth, tmp_path):
    before = Path(synth.xml).read_bytes()
    out = tmp_path / "phase.xml"
    rec = phase_round(str(synth.xml), str(out))
    assert Path(synth.xml).read_bytes() == before
    assert rec.n_ok >= 3  # the 4 edge pairs; corner pairs may be filtered
    s = score(synth.ground_truth, str(out), gauge="translation")
    assert s.nominal_rms_voxels > 3.0
    assert s.rms_voxels <= 0.5, s.summary()
    sd_in, sd = load_xml(str(synth.xml)), load_xml(str(out))
    for v in sd.views():
        assert sd.registrations[v][0].name == TRANSFORM_NAME
        assert sd.registrations[v][1:] == sd_in.registrations[v]
    stored = read_stitching_results(sd)
    assert len(stored) == rec.n_ok
    for r in stored:
        a, b = r.views_a[0], r.views_b[0]
        assert r.hash == pytest.approx(registration_hash(sd_in.view_to_world(a), sd_in.view_to_world(b)))
        assert 0.3 <= r.correlation <= 1.0


def test_max_shift_filters_links(synth, tmp_path):
    """Every true shift here exceeds 3 voxels: with a 0.5 limit no link may report one beyond it."""
    rec = phase_round(str(synth.xml), str(tmp_path / "x.xml"), StitchingParams(max_shift_total=0.5))
    assert rec.n_ok < len(rec.links)
    assert all(k.shift_length <= 0.5 for k in rec.links if k.ok)
    sd = load_xml(str(tmp_path / "x.xml"))
    for v in sd.views():
        assert np.abs(sd.registrations[v][0].affine[:3, 3]).max() <= 1.0


@pytest.mark.parametrize("grid,tile,overlap,err", [((3, 3), (200, 160), 0.15, 10.0), ((2, 3), (300, 150), 0.1, 6.0)])
def test_single_plane_mosaic_to_a_fifth_of_a_pixel(tmp_path, cellfinder_plane, grid, tile, overlap, err):
    """2-D tiles cut from one real plane, independent noise per tile: <= 0.2 px RMS by phase alone."""
    plane = tifffile.imread(cellfinder_plane)
    truth = write_mosaic(tmp_path, plane, grid, tile, overlap, (err, err, 0.0), seed=3, noise_sigma=20.0)
    rec = prealign_by_phase_correlation(str(truth.xml), str(tmp_path / "out.xml"))
    assert all(k.shift_xyz[2] == 0.0 for k in rec.links if k.ok)
    e = mosaic_error(truth, tmp_path / "out.xml")
    assert e["nominal_rms"] > 3.0
    assert e["rms"] <= 0.2, e


def test_anisotropic_real_stack_mosaic(tmp_path, cellfinder_ch0):
    """3-D tiles of a real stack (voxel 2 x 2 x 5 um), z error too: <= 0.5 voxel RMS.
    Tiles sized to the in-repository crop (24 planes, 256 x 384); measured 0.009-0.017 over seeds 2-4,
    as 300 x 240 tiles of the whole 30-plane volume with the same overlap and errors (0.012-0.014)."""
    stack = load_tiff_planes(cellfinder_ch0)
    truth = write_mosaic(tmp_path, stack, (2, 2), (192, 124), 0.12, (10.0, 10.0, 2.0), voxel_size_xyz=(2, 2, 5),
                         seed=2, noise_sigma=20.0)
    phase_round(str(truth.xml), str(tmp_path / "out.xml"))
    e = mosaic_error(truth, tmp_path / "out.xml")
    assert e["rms"] <= 0.5, e


def test_automatic_level_keeps_enough_voxels_across():
    img = np.zeros((32, 256, 256), np.uint16)
    src = ArraySource([img, img[::2, ::2, ::2], img[::4, ::4, ::4]], [(1, 1, 1), (2, 2, 2), (4, 4, 4)])
    a2w = np.eye(4)
    # overlap 128 wide in x, 256 in y, 32 deep: z must stay at full resolution (32 < 2 * 32)
    assert choose_level(src, a2w, [0, 0, 0], [127, 255, 31], 32) == 0
    src2 = ArraySource([img, img[:, ::2, ::2], img[:, ::4, ::4]], [(1, 1, 1), (1, 2, 2), (1, 4, 4)])
    assert choose_level(src2, a2w, [0, 0, 0], [127, 255, 31], 32) == 2
    assert choose_level(src2, a2w, [0, 0, 0], [40, 255, 31], 32) == 0


def test_views_on_different_grids_are_resampled():
    """b has twice a's voxel size (its own calibration): crops are resampled, the shift still found."""
    rng = np.random.default_rng(0)
    world = ndi.gaussian_filter(rng.normal(size=(1, 200, 300)), (0, 3, 3)).astype(np.float32)
    a = world[:, :, :160]
    b_full = world[:, :, 100:]  # b starts at world x = 100
    b = b_full[:, ::2, ::2]  # b's voxel i is world 100 + 2 i (x)
    a2w = np.eye(4)
    wrong = transforms.translation([104.0, -3.0, 0.0])  # stage says x = 104, y = -3
    b2w = wrong @ transforms.scaling([2.0, 2.0, 1.0])
    link = correlate_views((0, 0), ArraySource([a]), a2w, (160, 200, 1), (0, 1), ArraySource([b]), b2w,
                           (b.shape[2], b.shape[1], 1), StitchingParams(level=0, min_r=0.0))
    assert link.ok
    np.testing.assert_allclose(link.shift_xyz, [-4.0, 3.0, 0.0], atol=0.15)


def test_stored_results_solve_like_the_round_and_go_stale(synth, tmp_path):
    """Results written under the input's registrations (as Fiji's pairwise step leaves them) solve to the
    same registrations; in the solved XML (registrations changed) they are stale."""
    from rhapso_core.pipeline.phase import solve_phase_round, stored_links
    from rhapso_core.spimdata import save_xml
    from rhapso_core.spimdata.stitching_results import PairwiseShift, with_stitching_results

    rec = phase_round(str(synth.xml), str(tmp_path / "direct.xml"))
    sd = load_xml(str(synth.xml))
    pending = with_stitching_results(sd, [PairwiseShift.translation([k.view_a], [k.view_b], k.shift_xyz, k.r, k.hash,
                                                                    k.box_min_xyz, k.box_max_xyz) for k in rec.links if k.ok])
    save_xml(pending, str(tmp_path / "pending.xml"))
    links = stored_links(str(tmp_path / "pending.xml"))
    assert [k.status for k in links] == ["ok"] * rec.n_ok
    solve_phase_round(str(tmp_path / "pending.xml"), links, str(tmp_path / "from_stored.xml"))
    a, b = load_xml(str(tmp_path / "direct.xml")), load_xml(str(tmp_path / "from_stored.xml"))
    for v in a.views():
        np.testing.assert_allclose(a.view_to_world(v), b.view_to_world(v), atol=1e-6)
    assert {k.status for k in stored_links(str(tmp_path / "direct.xml"))} == {"stale"}


def test_single_planes_at_fractional_z_still_overlap():
    """Two 2-D tiles whose recorded z differ by 0.3: linked in-plane, no z shift invented."""
    rng = np.random.default_rng(1)
    world = ndi.gaussian_filter(rng.normal(size=(1, 120, 260)), (0, 2, 2)).astype(np.float32)
    a, b = world[:, :, :150], world[:, :, 110:]
    b2w = transforms.translation([112.0, 1.0, 0.3])  # truth: x = 110, y = 0, same plane
    link = correlate_views((0, 0), ArraySource([a]), np.eye(4), (150, 120, 1), (0, 1), ArraySource([b]), b2w,
                           (150, 120, 1), StitchingParams())
    assert link.ok
    np.testing.assert_allclose(link.shift_xyz, [-2.0, -1.0, 0.0], atol=0.1)


def test_crop_cap_bounds_what_is_read():
    """An overlap box larger than max_crop_voxels is cut around its centre; the shift is still found."""
    rng = np.random.default_rng(2)
    world = ndi.gaussian_filter(rng.normal(size=(1, 300, 260)), (0, 2, 2)).astype(np.float32)
    a, b = world[:, :, :150], world[:, :, 110:]
    b2w = transforms.translation([113.0, 2.0, 0.0])
    link = correlate_views((0, 0), ArraySource([a]), np.eye(4), (150, 300, 1), (0, 1), ArraySource([b]), b2w,
                           (150, 300, 1), StitchingParams(max_crop_voxels=4000))
    assert np.prod(link.crop_shape_xyz) <= 4000
    assert link.crop_shape_xyz[0] == 37  # the thin axis (x: 150 - 113) is kept whole
    np.testing.assert_allclose(link.shift_xyz, [-3.0, -2.0, 0.0], atol=0.1)
