"""Ground-truth records: JSON round trip, clear errors, blob list files."""

import numpy as np
import pytest

from rhapso_core.synthetic import (
    GroundTruth,
    SyntheticParams,
    ViewTruth,
    load_blobs_csv,
    make_specimen,
    save_blobs_csv,
    tile_grid,
)
from rhapso_core.synthetic.specimen import specimen_box_um
from rhapso_core.synthetic.truth import GroundTruthError


def test_json_round_trip_is_exact(tmp_path):
    p = SyntheticParams(grid=(2, 2, 2), tile_size_xyz=(64, 64, 32), rotation_deg=2.0, shear=0.01)
    gt = GroundTruth(
        views=tuple(ViewTruth.from_tile(t) for t in tile_grid(p)), world_unit_um=p.world_unit_um,
        params=p.model_dump(mode="json"), blobs_csv="blobs.csv",
    )
    gt.save(tmp_path / "gt.json")
    back = GroundTruth.load(tmp_path / "gt.json")
    assert back.root == tmp_path and back.path("blobs.csv") == tmp_path / "blobs.csv"
    assert SyntheticParams(**back.params) == p, "params come back valid and equal"
    for a, b in zip(gt.views, back.views):
        assert a.view_id == b.view_id and a.name == b.name and a.grid_index == b.grid_index
        assert np.array_equal(a.true_affine, b.true_affine), "floats survive JSON bit for bit"
        assert np.array_equal(a.nominal_affine, b.nominal_affine)
        assert np.array_equal(a.jitter_world, b.jitter_world)


def test_malformed_truth_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GroundTruthError, match="bad.json"):
        GroundTruth.load(bad)
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(GroundTruthError, match="not a synthetic ground truth"):
        GroundTruth.load(bad)
    bad.write_text('{"format": "rhapso-synthetic-ground-truth", "world_unit_um": 1, "views": [{"setup": 0}]}')
    with pytest.raises(GroundTruthError, match="lacks the field"):
        GroundTruth.load(bad)


def test_blob_list_round_trip_and_specimen_statistics(tmp_path):
    p = SyntheticParams(blob_count=2000, seed=4)
    spec = make_specimen(p)
    assert spec.n_blobs == 2000, "blob_count is honoured despite the hard core"
    lo, hi = specimen_box_um(p)
    assert np.all(spec.blob_centres_um >= lo) and np.all(spec.blob_centres_um <= hi)
    assert spec.blob_sigma_um.min() >= 1.5 and spec.blob_sigma_um.max() <= 3.0
    assert spec.blob_amplitude.min() >= 300.0 and spec.blob_amplitude.max() <= 3000.0
    # Hard core: no two blobs closer than 1.5 x the sum of their sigmas.
    c, s = spec.blob_centres_um, spec.blob_sigma_um
    d = np.linalg.norm(c[:, None] - c[None], axis=-1) / (s[:, None] + s[None])
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 1.5
    # Default density: blob_density per 10^6 um^3 of the specimen box.
    dens = make_specimen(SyntheticParams(fibre_count=0))
    assert abs(dens.n_blobs - 300.0 * np.prod(hi - lo) / 1e6) <= 1
    save_blobs_csv(tmp_path / "blobs.csv", spec)
    c2, s2, a2 = load_blobs_csv(tmp_path / "blobs.csv")
    assert np.array_equal(c2, c) and np.array_equal(s2, s) and np.array_equal(a2, spec.blob_amplitude)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="x.csv"):
        load_blobs_csv(tmp_path / "x.csv")


def test_streams_are_independent():
    a = make_specimen(SyntheticParams(seed=9))
    b = make_specimen(SyntheticParams(seed=9, fibre_count=3, background_modulation=0.1))
    assert np.array_equal(a.blob_centres_um, b.blob_centres_um), "fibres / background do not move the blobs"
    ta, tb = tile_grid(SyntheticParams(seed=9)), tile_grid(SyntheticParams(seed=9, rotation_deg=1.0))
    assert all(np.array_equal(x.jitter_world, y.jitter_world) for x, y in zip(ta, tb))
