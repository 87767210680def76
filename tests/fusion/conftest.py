"""Fixtures for fusion tests (ground-truth helpers live in fusion_truth.py)."""

from __future__ import annotations

import pytest
from fusion_truth import make_specimen, render_tile, tile_poses


@pytest.fixture(scope="session")
def tiled_dataset():
    """(specimen, poses, tiles (float32), tile_xyz) for a 2x2x1 grid with small rotations."""
    specimen = make_specimen()
    tile_xyz = (84, 84, 36)
    poses = tile_poses(tile_xyz=tile_xyz)
    tiles = [render_tile(specimen, p, tile_xyz) for p in poses]
    return specimen, poses, tiles, tile_xyz
