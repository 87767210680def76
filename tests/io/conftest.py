"""Shared data of the chunk-reading tests: a small local zarr array in 16^3 chunks."""

from __future__ import annotations

import numpy as np
import pytest
import zarr


@pytest.fixture
def chunked(tmp_path):
    """``(array, data)``: a (16, 64, 64) uint16 zarr array of 16^3 chunks and the values it holds."""
    g = zarr.open_group(str(tmp_path / "r"), mode="w")
    a = g.create_array("a", shape=(16, 64, 64), chunks=(16, 16, 16), dtype="uint16")
    data = np.random.default_rng(0).integers(1, 1000, size=a.shape).astype(np.uint16)
    a[...] = data
    return a, data
