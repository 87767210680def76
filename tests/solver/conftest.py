"""Shared fixtures for the solver tests: synthetic grids with known truth."""

import pytest

from rhapso_core.solver.synthetic import make_grid


@pytest.fixture(scope="session")
def grids():
    """4 x 3 x 2 tiles, 50 matches per face link, 0.2 voxel noise, one grid per truth model."""
    return {kind: make_grid((4, 3, 2), kind, seed=1) for kind in ("translation", "rigid", "affine")}
