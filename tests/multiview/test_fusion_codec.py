"""The fused image's codec follows ``FusionParams.compressor`` / ``clevel`` (issue 21).

Default blosc lz4 level 5 with bitshuffle; ``zstd`` and ``none`` on request. Exact
metadata comparison (no tolerance).
"""

from __future__ import annotations

import pytest
import zarr

from rhapso_core.fusion import FusionParams
from rhapso_core.pipeline import fuse


def _codec(out):
    arr = zarr.open_group(str(out), mode="r")["0"]
    comps = arr.compressors
    if not comps:
        return None
    cfg = comps[0].get_config()  # the fused OME-Zarr 0.4 image is zarr v2: a numcodecs codec
    return cfg["cname"], cfg["clevel"], cfg["shuffle"]


@pytest.mark.parametrize("kw,want", [
    ({}, ("lz4", 5, 2)),
    ({"compressor": "zstd", "clevel": 3}, ("zstd", 3, 2)),
    ({"compressor": "none"}, None),
])
def test_fused_codec_follows_params(multiview_dataset, tmp_path, kw, want):
    params = FusionParams(block_size=(64, 64, 32), chunks=(32, 32, 16), **kw)
    out = tmp_path / "fused.ome.zarr"
    fuse.plan_fusion(str(multiview_dataset.xml), str(out), params)
    assert _codec(out) == want  # shuffle 2 = bitshuffle (zarr v2 / numcodecs Blosc)


def test_clevel_out_of_range_is_refused():
    with pytest.raises(ValueError, match="clevel"):
        FusionParams(clevel=0)
