"""Split-affine through the stitch flow: split layout out, fused from parent tiles without seams."""

from __future__ import annotations

import pytest

import numpy as np

from rhapso_core.io import open_image
from rhapso_core.spimdata import SplitImageLoader, load_xml


@pytest.mark.heavy  # 40 s: split-affine accuracy is tested in-process (synthetic_warp/, split/) in CI
def test_stitch_with_split_affine(prefect_harness, small_dataset, tmp_path):
    from flows.stitch import stitch

    overrides = [
        "runtime.num_cpus=2",
        "alignment.split_affine=true",
        # 160x160x48 tiles -> 2x2x1 pieces of about 96x96x48 with 32 voxels of overlap.
        "split.target_image_size=[96,96,48]",
        "split.target_overlap=[32,32,16]",
        "split.exclude_radius=8",
    ]
    result = stitch(str(small_dataset.xml), str(tmp_path / "out"), overrides=overrides)
    rounds = result["alignment"]["rounds"]
    assert len(rounds) == 3 and rounds[-1]["transform"].startswith("rhapso affine")
    sd = load_xml(result["aligned_xml"])
    assert isinstance(sd.image_loader, SplitImageLoader)
    assert len(sd.views()) > 6

    # The fusion flow reads every sub-view from its parent tile (through the split
    # loader) and writes a pyramid with content. Seams between sub-views are measured
    # against the specimen in tests/synthetic_warp/test_split_affine_warp.py.
    fused_split = open_image(result["fused"])
    assert fused_split.n_levels > 1
    a = fused_split.read(((0, fused_split.level_shape(0)[0]), (0, fused_split.level_shape(0)[1]),
                          (0, fused_split.level_shape(0)[2]))).astype(np.float64)
    assert a.mean() > 0
    qc = result["qc"]
    assert qc["verdict"] in ("pass", "warn"), qc["reasons"]
