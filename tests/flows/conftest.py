import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """A 3x2 grid of 160x160x48 tiles, 20 % overlap, known true poses (jitter up to 3 voxels)."""
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    root = tmp_path_factory.mktemp("flows") / "data"
    return write_dataset(root, SyntheticParams(grid=(3, 2, 1), tile_size_xyz=(160, 160, 48), overlap=0.2, n_levels=2, seed=7))
