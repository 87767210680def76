"""write_dataset: tiles, XML and ground truth read back through the project's XML model and readers."""

import json

import numpy as np
import pytest

from rhapso_core import transforms as tf
from rhapso_core.synthetic import (
    GroundTruth,
    SyntheticParams,
    acquire_tile,
    make_specimen,
    pyramid_steps,
    score,
    tile_grid,
    write_dataset,
)
from rhapso_core import io, spimdata  # a missing or renamed API fails these tests, never skips them


def _params(**kw):
    return SyntheticParams(
        **{"grid": (2, 2, 1), "tile_size_xyz": (64, 48, 16), "overlap": 0.25, "n_levels": 3,
           "chunk_size_xyz": (32, 32, 16), "rotation_deg": 0.5, "seed": 2, **kw}
    )


@pytest.mark.parametrize("ngff_version", ["0.4", "0.5"])
def test_2x2_dataset_reads_back_through_the_xml_model(tmp_path, ngff_version):
    p = _params(ngff_version=ngff_version)
    paths = write_dataset(tmp_path / "ds", p)
    sd = spimdata.load_xml(str(paths.xml))
    truth = GroundTruth.load(paths.ground_truth)
    spec = make_specimen(p)
    tiles = tile_grid(p)
    assert sd.views() == [(0, s) for s in range(4)]
    assert [v.view_id for v in truth.views] == sd.views()
    for tile in tiles:
        view = (0, tile.setup)
        setup = sd.setup_of(view)
        assert setup.size == (64, 48, 16) and setup.voxel_size == (0.5, 0.5, 2.0)
        names = [t.name for t in sd.registrations[view]]
        assert names == ["Translation to Regular Grid", "calibration"]
        # The XML holds the NOMINAL pose, exactly; the truth holds the true one.
        assert np.array_equal(sd.view_to_world(view), tile.nominal_affine)
        assert np.allclose(sd.registrations[view][1].affine, tf.scaling([1.0, 1.0, 4.0]))
        assert np.array_equal(truth.view(view).true_affine, tile.true_affine)
        assert np.array_equal(truth.view(view).nominal_affine, tile.nominal_affine)
        # Pixels: the loader's location opens to the very bytes the renderer makes, with a pyramid.
        img = io.open_image(sd.image_location(view).dataset_uri)
        assert img.n_levels == 3 and img.dtype == np.uint16
        assert [img.level_factors(i) for i in range(3)] == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]
        assert tuple(img.voxel_size_zyx) == (2.0, 0.5, 0.5)
        level0 = img.read(((0, 16), (0, 48), (0, 64)), 0)
        assert level0.tobytes() == acquire_tile(spec, tile, p).tobytes()
        level1 = img.read(((0, 16), (0, 24), (0, 32)), 1)
        want = level0.astype(np.float64).reshape(16, 24, 2, 32, 2).mean(axis=(2, 4))
        assert np.abs(level1 - want).max() <= 0.5, "level 1 is the 2x2 (y, x) mean of level 0, rounded"
    # Blob ground truth comes back from the files alone.
    centres, sigma, amp = truth.blobs()
    assert np.allclose(centres, spec.blob_centres_um, rtol=0, atol=1e-12) and np.array_equal(amp, spec.blob_amplitude)
    vb = truth.view_blobs((0, 3), margin_voxels=1)
    assert len(vb.index) >= 1 and np.all(vb.centres_xyz >= 1) and np.all(vb.centres_xyz <= np.array([62, 46, 14]))
    direct = tf.apply(tf.invert(tiles[3].true_affine), spec.blob_centres_um[vb.index] / p.world_unit_um)
    assert np.allclose(vb.centres_xyz, direct, atol=1e-9), "centres are the true inverse pose of the blob list"
    # Scoring the written XML scores the nominal poses.
    s = score(paths.ground_truth, paths.xml, gauge="none")
    assert abs(s.rms_um - s.nominal_rms_um) < 1e-12 and s.rms_um > 0.1
    assert json.loads((tmp_path / "ds" / "ground_truth.json").read_text())["world_unit_um"] == 0.5


def test_existing_dataset_is_not_overwritten_silently(tmp_path):
    p = _params(grid=(2, 1, 1), n_levels=1)
    write_dataset(tmp_path, p)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dataset(tmp_path, p)
    paths = write_dataset(tmp_path, p.model_copy(update={"grid": (1, 1, 1)}), overwrite=True)
    assert len(paths.tiles) == 1
    assert sorted(q.name for q in paths.images_root.iterdir()) == ["tile_x_0000_y_0000_z_0000.zarr"]


def test_pyramid_steps_make_voxels_isotropic_first():
    assert pyramid_steps((0.5, 0.5, 2.0), (256, 256, 64), 4) == [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert pyramid_steps((1.0, 1.0, 1.0), (64, 64, 1), 3) == [(1, 2, 2), (1, 2, 2)]
    assert pyramid_steps((0.5, 0.5, 2.0), (256, 256, 64), 1) == []


def test_a_user_volume_is_written_without_a_blob_list(tmp_path):
    from rhapso_core.synthetic import VolumeSpecimen

    p = _params(grid=(2, 1, 1), n_levels=1, noise=False, camera_offset=0.0, jitter_voxels=(0.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    data = rng.uniform(100, 1000, size=(40, 80, 160)).astype(np.float32)
    spec = VolumeSpecimen.centred_on_grid(data, (2.0, 0.5, 0.5), p)
    paths = write_dataset(tmp_path, p, specimen=spec)
    truth = GroundTruth.load(paths.ground_truth)
    assert paths.blobs_csv is None and truth.blobs_csv is None and truth.blobs()[0].shape == (0, 3)
    img = io.open_image(str(paths.tiles[(0, 1)]))
    assert img.read(((0, 16), (0, 48), (0, 64)), 0).tobytes() == acquire_tile(spec, tile_grid(p)[1], p).tobytes()
