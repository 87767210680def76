"""Pyramids built chunk by chunk through the direct chunk I/O equal those built through zarr.

Every level array must be equal and every chunk file byte-identical to the pyramid that
zarr's own read and write path builds from the same level 0 (rhapso_core.multiscale.chunked,
rhapso_core.io.chunk_io), for level-0 chunks that are and are not multiples of the factor
(the latter take the assembled-box route), odd shapes (partial windows), zarr 2 and 3,
3-D and t, c, z, y, x images. Tolerance: none.
"""

from __future__ import annotations

import filecmp
import os

import numpy as np
import pytest
import zarr

from rhapso_core.io.chunk_io import general_path_only
from rhapso_core.io.ngff import build_multiscales_attrs
from rhapso_core.io.slots import SpaceSlot
from rhapso_core.multiscale import MultiscaleParams, build_pyramid
from rhapso_core.multiscale.chunked import downsample_box
from rhapso_core.multiscale.downsample import mean_downsample


def _group(path, version, data, chunks):
    g = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    lead = data.shape[:-3]
    a = g.create_array("0", shape=data.shape, chunks=(1,) * len(lead) + chunks, dtype=data.dtype)
    a[...] = data
    g.attrs.put(build_multiscales_attrs(version=version, paths=["0"], voxel_size_zyx=(1.0, 1.0, 1.0),
                                        origin_zyx=(0.0, 0.0, 0.0), factors_zyx=[(1, 1, 1)]))
    return g


def _chunk_files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            if not n.startswith((".z", "zarr.json")) and ".rhapso" not in d:
                out[os.path.relpath(os.path.join(d, n), root)] = os.path.join(d, n)
    return out


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("chunks", [(8, 16, 16), (5, 12, 9)], ids=["even-chunks", "odd-chunks"])
@pytest.mark.parametrize("lead,dtype", [((), "uint16"), ((1, 2), "uint16"), ((), "float32")],
                         ids=["zyx", "tczyx", "zyx-float32"])
def test_pyramid_identical_to_zarr_path(tmp_path, version, chunks, lead, dtype):
    rng = np.random.default_rng(4)
    data = (rng.random(lead + (21, 43, 37)) * 60000).astype(dtype)
    data[..., :8, :16, :16] = 0  # an all-fill region: its chunks are not stored
    params = MultiscaleParams(n_lvls=4, scale_factor=[(1, 2, 2), (2, 2, 2), (2, 3, 2)],
                              multiscale_chunk_size=(8, 8, 8), target_block_size_mb=0.05)
    direct = _group(tmp_path / "d.zarr", version, data, chunks)
    build_pyramid(direct, params)
    with general_path_only():
        ref = _group(tmp_path / "r.zarr", version, data, chunks)
        build_pyramid(ref, params)
        want = {p: ref[p][...] for p in ("1", "2", "3")}
    for p in ("1", "2", "3"):
        np.testing.assert_array_equal(direct[p][...], want[p], err_msg=f"level {p}")
    got, exp = _chunk_files(tmp_path / "d.zarr"), _chunk_files(tmp_path / "r.zarr")
    assert sorted(got) == sorted(exp)
    assert all(filecmp.cmp(got[k], exp[k], shallow=False) for k in got)


def test_chunk_by_chunk_means_equal_the_whole_box(tmp_path):
    g = zarr.open_group(str(tmp_path / "b.zarr"), mode="w")
    data = (np.random.default_rng(1).random((2, 1, 20, 34, 30)) * 5000).astype(np.uint16)
    a = g.create_array("0", shape=data.shape, chunks=(1, 1, 4, 8, 6), dtype="uint16")
    a[...] = data
    slot = SpaceSlot(a, 1, 0)
    pieces = []

    def mean(block, f):
        pieces.append(block.shape)
        return mean_downsample(block, f)

    box = ((4, 20), (8, 34), (6, 30))  # ends at the far edge on y and x: partial windows
    got = downsample_box(slot, box, (2, 2, 2), mean)
    assert len(pieces) > 1, "the box was split into chunks"
    np.testing.assert_array_equal(got, mean_downsample(data[1, 0, 4:20, 8:34, 6:30], (2, 2, 2)))
