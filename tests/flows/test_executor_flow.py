"""A small fusion run with the default runtime: the planner's rule puts its tasks in threads (no
Ray started), the run says so, and the fused image equals the one of a --no-ray run."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_small_fusion_runs_in_threads_by_default(prefect_harness, tmp_path):
    import ray
    import zarr

    from flows.fusion import fusion
    from rhapso_core.synthetic import SyntheticParams, write_dataset

    paths = write_dataset(tmp_path / "data", SyntheticParams(grid=(2, 2, 1), tile_size_xyz=(96, 96, 24), n_levels=2,
                                                             seed=5))
    auto = fusion(str(paths.xml), str(tmp_path / "auto" / "fused.ome.zarr"))
    ex = auto["executor"]
    assert ex["use_ray"] is False and ex["where"] == "threads of this process", ex
    assert 0 < ex["planned_cpu_s"] <= 30 and "local_threads_max_cpu_s" in ex["reason"]
    assert not ray.is_initialized()  # no local Ray was started for it
    threads = fusion(str(paths.xml), str(tmp_path / "threads" / "fused.ome.zarr"), overrides=["runtime.use_ray=false"])
    assert threads["executor"]["reason"].startswith("runtime.use_ray is false")
    a = zarr.open_group(str(tmp_path / "auto" / "fused.ome.zarr"), mode="r")
    b = zarr.open_group(str(tmp_path / "threads" / "fused.ome.zarr"), mode="r")
    assert sorted(a.array_keys()) == sorted(b.array_keys())
    for key in a.array_keys():
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key
