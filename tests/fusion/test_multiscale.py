"""Pyramid levels equal a direct mean-downsample, edges included; metadata geometry."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from rhapso_core.io.ngff import build_multiscales_attrs, parse_multiscales
from rhapso_core.multiscale import (
    MultiscaleParams,
    add_levels_to_attrs,
    build_pyramid,
    downsample_level,
    mean_downsample,
    plan_level_blocks,
)


def direct_mean(a: np.ndarray, f) -> np.ndarray:
    """Reference: loop over output voxels, mean of the voxels present in each window."""
    out_shape = tuple(-(-n // k) for n, k in zip(a.shape, f))
    out = np.empty(out_shape)
    for idx in np.ndindex(*out_shape):
        win = a[tuple(slice(i * k, (i + 1) * k) for i, k in zip(idx, f))]
        out[idx] = win.astype(np.float64).mean()
    return out


@pytest.mark.parametrize("f", [(2, 2, 2), (1, 3, 2), (3, 1, 1)])
def test_mean_downsample_matches_direct_mean(f):
    a = np.random.default_rng(0).random((7, 11, 13)) * 1000
    np.testing.assert_allclose(mean_downsample(a, f), direct_mean(a, f), rtol=1e-12)
    u = (a * 60).astype(np.uint16)
    np.testing.assert_array_equal(mean_downsample(u, f), np.rint(direct_mean(u, f)).astype(np.uint16))


class CountingArray:
    def __init__(self, a):
        self.a, self.reads = a, 0
        self.shape, self.dtype = a.shape, a.dtype

    def __getitem__(self, key):
        self.reads += 1
        return self.a[key]


@pytest.mark.parametrize("shape,f", [((37, 45, 51), (2, 2, 2)), ((20, 33, 65), (1, 2, 4))])
def test_level_written_blockwise_equals_direct_mean(tmp_path, shape, f):
    rng = np.random.default_rng(1)
    src = CountingArray((rng.random(shape) * 4000).astype(np.uint16))
    dst_shape = tuple(-(-n // k) for n, k in zip(shape, f))
    dst = zarr.create_array(str(tmp_path / "l1.zarr"), shape=dst_shape, chunks=(4, 8, 8), dtype="uint16")
    blocks = plan_level_blocks(dst_shape, (4, 8, 8), f, 2, target_block_size_mb=0.01)
    assert len(blocks) > 4, "small target must give many blocks"
    written = downsample_level(src, dst, f, blocks=blocks)
    assert len(written) == len(blocks)
    np.testing.assert_array_equal(dst[...], np.rint(direct_mean(src.a, f)).astype(np.uint16))
    reads = src.reads
    assert downsample_level(src, dst, f, blocks=blocks) == [] and src.reads == reads


def _ome_group(path, version, data, voxel=(2.0, 0.5, 0.5), origin=(10.0, 20.0, 30.0)):
    fmt = 2 if version == "0.4" else 3
    g = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    g.create_array("0", shape=data.shape, chunks=(8, 16, 16), dtype=data.dtype)[...] = data
    g.attrs.put(build_multiscales_attrs(version=version, paths=["0"], voxel_size_zyx=voxel,
                                        origin_zyx=origin, factors_zyx=[(1, 1, 1)]))
    return g


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_build_pyramid_levels_and_metadata(tmp_path, version):
    data = (np.random.default_rng(2).random((19, 41, 53)) * 1000).astype(np.uint16)
    g = _ome_group(tmp_path / "img.ome.zarr", version, data)
    params = MultiscaleParams(n_lvls=4, scale_factor=[(1, 2, 2), (2, 2, 2), (2, 2, 2)],
                              multiscale_chunk_size=(8, 8, 8), target_block_size_mb=0.05)
    paths = build_pyramid(g, params)
    assert paths == ["1", "2", "3"]
    prev = data
    for p, f in zip(paths, params.level_factors()):
        want = np.rint(direct_mean(prev, f)).astype(np.uint16)
        np.testing.assert_array_equal(g[p][...], want, err_msg=f"level {p}")
        prev = want
    ms = parse_multiscales(g.attrs.asdict())
    assert ms.paths == ["0", "1", "2", "3"] and ms.version == version
    # Level 2 has cumulative factor (2, 4, 4): scale = voxel * F, translation = origin +
    # (F - 1) / 2 * voxel (level voxel centre = mean of its window's centres).
    np.testing.assert_allclose(ms.scales[2], [4.0, 2.0, 2.0])
    np.testing.assert_allclose(ms.translations[2], [10 + 0.5 * 2, 20 + 1.5 * 0.5, 30 + 1.5 * 0.5])
    # Re-run: nothing recomputed, metadata not duplicated.
    build_pyramid(g, params)
    assert parse_multiscales(g.attrs.asdict()).paths == ["0", "1", "2", "3"]


def test_add_levels_keeps_input_unchanged_and_refuses_unknown_base():
    attrs = build_multiscales_attrs(version="0.4", paths=["0"], voxel_size_zyx=(1, 1, 1),
                                    origin_zyx=(0, 0, 0), factors_zyx=[(1, 1, 1)])
    before = repr(attrs)
    new = add_levels_to_attrs(attrs, "0", ["1"], [(2, 2, 2)])
    assert repr(attrs) == before
    assert [d["path"] for d in new["multiscales"][0]["datasets"]] == ["0", "1"]
    with pytest.raises(ValueError, match="no dataset 's0'"):
        add_levels_to_attrs(attrs, "s0", ["s1"], [(2, 2, 2)])


def test_multiscale_params_validate():
    with pytest.raises(ValueError, match="scale_factor"):
        MultiscaleParams(n_lvls=3, scale_factor=[(2, 2, 2)])
    with pytest.raises(ValueError, match="n_lvls"):
        MultiscaleParams(n_lvls=0)
    assert MultiscaleParams(n_lvls=3, scale_factor=[2, 2, 2]).level_factors() == [(2, 2, 2)] * 2
