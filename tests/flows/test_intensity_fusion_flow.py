"""The fusion flow's intensity step (intensity.enabled): estimated from the input's overlaps, written
beside the output (never beside the input), applied to the fused image."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_fusion_flow_estimates_and_applies_intensity(prefect_harness, tmp_path):
    import zarr

    from flows.fusion import fusion, intensity_xml_path
    from rhapso_core.intensity.store import default_container
    from rhapso_core.intensity.xml import read_intensity_adjustments
    from rhapso_core.spimdata import load_xml
    from rhapso_core.synthetic import GroundTruth, SyntheticParams, write_dataset

    # No stage error: the nominal positions are the true ones (this checks intensity, not registration).
    sp = SyntheticParams(
        grid=(3, 2, 1), tile_size_xyz=(96, 96, 24), voxel_size_xyz=(1.0, 1.0, 2.0), n_levels=2, seed=3,
        jitter_voxels=(0.0, 0.0, 0.0), tile_gain_spread=0.15, vignetting=0.15, blob_count=0, fibre_count=0)
    paths = write_dataset(tmp_path / "data", sp)
    before = _tree_digest(tmp_path / "data")
    out = str(tmp_path / "out" / "fused.ome.zarr")
    result = fusion(str(paths.xml), out, overrides=["runtime.use_ray=false", "intensity.enabled=true",
                                                    "intensity.dark_level=100", "fusion.output_dtype=float32"])
    # Written beside the output; the input dataset is byte-identical.
    corrected = intensity_xml_path(out)
    assert result["intensity"]["xml"] == corrected and Path(default_container(corrected)).is_dir()
    assert _tree_digest(tmp_path / "data") == before
    # The fitted gains undo the true ones: a_k g_k equal across views within 1.5 % (gauge: mean brightness).
    truth = GroundTruth.load(paths.ground_truth)
    adj = read_intensity_adjustments(load_xml(corrected))
    eff = [adj[v.view_id][0] * v.intensity_gain for v in truth.views]
    assert (max(eff) - min(eff)) / np.mean(eff) < 0.015, eff
    # The fused image is corrected: against the specimen's photons (render of the noise-free truth on the
    # fused grid), 12 x 12 voxel columns agree within 2 % after one global scale (measured in the
    # acceptance tests: 0.7 %); as acquired the worst block is off by ~20 %.
    from rhapso_core import transforms as tf
    from rhapso_core.pipeline.fuse import GRID_ATTR
    from rhapso_core.synthetic import make_specimen, render_tile

    group = zarr.open_group(out, mode="r")
    grid = group.attrs[GRID_ATTR]
    fused = np.asarray(group["0"])[0, 0].astype(np.float64)
    to_um = tf.scaling([sp.world_unit_um] * 3) @ tf.translation(grid["origin_xyz"]) @ tf.scaling(grid["voxel_size_xyz"])
    truth_img = render_tile(make_specimen(sp), to_um, fused.shape[::-1]).astype(np.float64)
    nz, ny, nx = fused.shape
    b = 12
    def blocks(a):
        return a[:, : ny // b * b, : nx // b * b].reshape(nz, ny // b, b, nx // b, b).mean(axis=(0, 2, 4))
    inside = (fused > 0).astype(np.float64)
    covered = blocks(inside) >= 0.9
    ratio = (blocks((fused - 100.0) * inside) / blocks(truth_img * inside))[covered]
    ratio /= np.median(ratio)
    assert np.abs(ratio - 1.0).max() <= 0.02, np.abs(ratio - 1.0).max()
