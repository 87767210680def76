"""The planner tests' dataset: 3 x 2 x 2 tiles with a 2-level pyramid, small enough to plan and run in seconds."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    from rhapso_core.synthetic import SyntheticParams, write_dataset

    root = tmp_path_factory.mktemp("planner_ds")
    params = SyntheticParams(grid=(3, 2, 2), tile_size_xyz=(96, 80, 40), blob_count=200, fibre_count=0,
                             n_levels=2, chunk_size_xyz=(32, 32, 16), overlap=0.2)
    return write_dataset(root / "data", params)
