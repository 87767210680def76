"""The stitch flow on a multiview dataset (2 channels x 2 illuminations x 2 timepoints), on a local Ray
with a real Prefect API: fusion tasks per (timepoint, channel), one registration per tile, the
fused XML with one setup per channel. Tolerance: 0.3 voxel RMS against the ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from rhapso_core.spimdata import load_xml
from rhapso_core.synthetic.scoring import score

pytestmark = pytest.mark.slow


@pytest.mark.heavy
def test_stitch_flow_multiview(prefect_harness, multiview_dataset, tmp_path):
    from flows.stitch import stitch

    out = tmp_path / "out"
    result = stitch(str(multiview_dataset.xml), str(out), ground_truth=str(multiview_dataset.ground_truth),
                    overrides=["runtime.num_cpus=2", "alignment.timepoints=reference", "fusion.illumination=brightest",
                               "fusion.block_size=[64,64,32]", "fusion.chunks=[32,32,16]"])
    s = score(multiview_dataset.ground_truth, result["aligned_xml"], gauge="affine")
    assert s.rms_voxels <= 0.3, s.summary()
    sd = load_xml(result["aligned_xml"])
    by = {}
    for v in sd.views():
        by.setdefault((v[0], sd.setup_of(v).tile), []).append(sd.view_to_world(v))
    for key, mats in by.items():
        assert all(np.array_equal(m, mats[0]) for m in mats), key
    f = result["fusion"]
    assert f["timepoints"] == [0, 1] and f["channels"] == [0, 1]
    assert zarr.open_group(result["fused"], mode="r")["0"].shape[:2] == (2, 2)
    fused_sd = load_xml(f["xml"])
    assert len(fused_sd.setups) == 2 and len(fused_sd.views()) == 4
