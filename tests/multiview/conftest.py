"""A tiny multiview dataset: 2 x 1 tiles, 2 channels (different specimens), 2 illuminations
(opposite attenuation along x), 2 timepoints (the specimen drifts between them)."""

from __future__ import annotations

import pytest

from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.write import write_dataset

MULTIVIEW = dict(
    grid=(2, 1, 1), tile_size_xyz=(112, 80, 24), overlap=0.3, voxel_size_xyz=(0.5, 0.5, 1.0),
    jitter_voxels=(3.0, 3.0, 1.0), blob_density=4000.0, blob_sigma_um=(1.0, 2.0), margin_um=6.0, fibre_count=0, n_levels=2,
    chunk_size_xyz=(48, 40, 24), seed=5,
)


@pytest.fixture(scope="session")
def multiview_params() -> SyntheticParams:
    return SyntheticParams(channels=2, illuminations=2, timepoints=2, **MULTIVIEW)


@pytest.fixture(scope="session")
def multiview_dataset(tmp_path_factory, multiview_params):
    return write_dataset(tmp_path_factory.mktemp("multiview") / "data", multiview_params)
