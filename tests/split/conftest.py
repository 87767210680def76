"""A small synthetic tiled dataset with a point store, split once per test module."""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.pointstore import PointStore
from rhapso_core.split import SplitParams, split_dataset
from rhapso_core.synthetic import SyntheticParams, write_dataset

SYNTH = SyntheticParams(
    grid=(2, 1, 1), tile_size_xyz=(96, 80, 64), n_levels=3, fibre_count=2, chunk_size_xyz=(64, 64, 32), seed=3
)
SPLIT = SplitParams(
    target_image_size=(64, 64, 32), target_overlap=(8, 8, 8), point_density=2000.0, min_points=6,
    max_points=40, error=0.5, exclude_radius=4.0, seed=11,
)
N_REAL = 300


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """``(paths, real points per parent view)``: beads at random positions, some on sub-view borders."""
    root = tmp_path_factory.mktemp("split-synth")
    paths = write_dataset(root / "data", SYNTH)
    store = PointStore(root / "data" / "interestpoints.zarr", mode="a")
    rng = np.random.default_rng(5)
    real = {}
    size = np.array(SYNTH.tile_size_xyz, dtype=np.float64)
    for setup in range(2):
        loc = rng.uniform(0, size - 1, (N_REAL, 3))
        loc[:10, 2] = 19.0  # exactly on a sub-view's first z plane (inclusive boxes)
        ids = rng.permutation(10_000)[:N_REAL]
        store.write_points((0, setup), "beads", ids, loc, rng.uniform(0, 1, N_REAL), rng.uniform(0, 1, N_REAL), params="test")
        real[(0, setup)] = (ids, loc)
    return paths, real


@pytest.fixture(scope="module")
def split(dataset, tmp_path_factory):
    paths, _ = dataset
    out = tmp_path_factory.mktemp("split-out") / "split.xml"
    return split_dataset(str(paths.xml), str(out), SPLIT)


@pytest.fixture(scope="module")
def split_params() -> SplitParams:
    return SPLIT
